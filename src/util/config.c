/* Config file parser: a table of keys with type, limits and where the value
 * lives. Listener-scoped keys apply to the most recent `listener` line; they
 * are an error before the first one. */
#include "util/config.h"

#include "util/log.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <unistd.h>

enum cfg__type { T_U32, T_U64, T_U16, T_BOOL, T_STR, T_PATH, T_LOGLEVEL, T_SYNC, T_PROTO };

struct cfg__key {
    const char *name;
    enum cfg__type type;
    bool per_listener;
    size_t offset;
    uint64_t min, max;
};

#define G(name, type, field, min, max)                                                             \
    {name, type, false, offsetof(struct lmq_config, field), min, max}
#define L(name, type, field, min, max)                                                             \
    {name, type, true, offsetof(struct lmq_listener_config, field), min, max}

static const struct cfg__key cfg__keys[] = {
    G("data_dir", T_PATH, data_dir, 0, 0),
    G("log_level", T_LOGLEVEL, log_level, 0, 0),
    G("max_connections", T_U32, max_connections, 1, 1000000),
    G("max_packet_size", T_U32, max_packet_size, 64, 268435460),
    G("max_inflight_messages", T_U32, max_inflight_messages, 1, 65535),
    G("max_queued_messages", T_U32, max_queued_messages, 0, 10000000),
    G("max_queued_bytes", T_U64, max_queued_bytes, 0, (uint64_t)1 << 40),
    G("max_topic_length", T_U32, max_topic_length, 1, 65535),
    G("max_topic_levels", T_U32, max_topic_levels, 1, 1024),
    G("max_retained_messages", T_U32, max_retained_messages, 0, 100000000),
    G("max_subscriptions_per_client", T_U32, max_subscriptions_per_client, 1, 1000000),
    G("max_client_id_length", T_U32, max_client_id_length, 23, 65535),
    G("max_keepalive", T_U16, max_keepalive, 10, 65535),
    G("max_topic_alias", T_U32, max_topic_alias, 0, 1024),
    G("connect_timeout", T_U32, connect_timeout, 1, 3600),
    G("allow_zero_length_clientid", T_BOOL, allow_zero_length_clientid, 0, 1),
    G("persistent_client_expiration", T_U32, persistent_client_expiration, 0, UINT32_MAX),
    G("store_sync", T_SYNC, store_sync, 0, 0),
    G("sys_interval", T_U32, sys_interval, 0, 86400),
    G("ledger_origin", T_STR, ledger_origin, 1, LMQ_CONFIG_STR - 1),
    G("ledger_sync", T_SYNC, ledger_sync, 0, 0),
    G("ledger_batch_max", T_U32, ledger_batch_max, 1, 100000),
    G("ledger_batch_ms", T_U32, ledger_batch_ms, 0, 10000),
    G("ledger_queue_messages", T_U32, ledger_queue_messages, 1, 10000000),
    G("ledger_queue_bytes", T_U64, ledger_queue_bytes, 65536, (uint64_t)1 << 36),
    G("ledger_clock_skew", T_U32, ledger_clock_skew, 1, 31536000),
    G("ledger_dup_window", T_U32, ledger_dup_window, 0, 10000000),
    G("ledger_api_max_requests", T_U32, ledger_api_max_requests, 1, 1000000),
    G("ledger_node_id", T_STR, ledger_node_id, 1, LMQ_CONFIG_STR - 1),
    L("protocol", T_PROTO, protocol, 0, 0),
    L("allow_anonymous", T_BOOL, allow_anonymous, 0, 1),
    L("certfile", T_PATH, certfile, 0, 0),
    L("keyfile", T_PATH, keyfile, 0, 0),
    L("cafile", T_PATH, cafile, 0, 0),
    L("require_certificate", T_BOOL, require_certificate, 0, 1),
    G("password_file", T_PATH, password_file, 0, 0),
    G("acl_file", T_PATH, acl_file, 0, 0),
    G("token_clock_skew", T_U32, token_clock_skew, 0, 3600),
    G("token_max_lifetime", T_U32, token_max_lifetime, 1, 86400),
    G("token_replay_max", T_U32, token_replay_max, 1, 10000000),
    G("max_auth_pending", T_U32, max_auth_pending, 1, 1000000),
    G("cluster_self", T_U64, cluster_self, 1, (uint64_t)INT64_MAX),
    G("cluster_election_ms", T_U32, cluster_election_ms, 100, 60000),
    G("cluster_heartbeat_ms", T_U32, cluster_heartbeat_ms, 10, 30000),
    G("cluster_forward", T_BOOL, cluster_forward, 0, 1),
    G("cluster_channel_port_offset", T_U32, cluster_channel_port_offset, 1, 65534),
    G("cluster_forward_timeout_ms", T_U32, cluster_forward_timeout_ms, 100, 600000),
    G("cluster_forward_max", T_U32, cluster_forward_max, 1, 65536),
    G("cluster_snapshot_threshold", T_U32, cluster_snapshot_threshold, 1024, 100000000),
    G("cluster_snapshot_trailing", T_U32, cluster_snapshot_trailing, 1024, 100000000),
    G("cluster_tls_cert", T_PATH, cluster_tls_cert, 0, 0),
    G("cluster_tls_key", T_PATH, cluster_tls_key, 0, 0),
    G("cluster_tls_ca", T_PATH, cluster_tls_ca, 0, 0),
    G("cluster_join", T_BOOL, cluster_join, 0, 1),
};

static void cfg__err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void cfg__err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

void lmq_config_defaults(struct lmq_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->source, sizeof cfg->source, "(defaults)");
    snprintf(cfg->data_dir, sizeof cfg->data_dir, "./data");
    cfg->log_level = LMQ_LOG_INFO;
    cfg->max_connections = 100000;
    cfg->max_packet_size = 1048576;
    cfg->max_inflight_messages = 100;
    cfg->max_queued_messages = 1000;
    cfg->max_queued_bytes = 16u * 1024 * 1024;
    cfg->max_topic_length = 1024;
    cfg->max_topic_levels = 32;
    cfg->max_retained_messages = 100000;
    cfg->max_subscriptions_per_client = 1000;
    cfg->max_client_id_length = 256;
    cfg->max_keepalive = 65535;
    cfg->max_topic_alias = 10;
    cfg->connect_timeout = 10;
    cfg->allow_zero_length_clientid = true;
    cfg->persistent_client_expiration = 0;
    cfg->store_sync = LMQ_SYNC_ALWAYS;
    cfg->sys_interval = 10;
    snprintf(cfg->ledger_origin, sizeof cfg->ledger_origin, "ledgermq.local/default");
    cfg->ledger_sync = LMQ_SYNC_ALWAYS;
    cfg->ledger_batch_max = 1000;
    cfg->ledger_batch_ms = 5;
    cfg->ledger_queue_messages = 100000;
    cfg->ledger_queue_bytes = 64u * 1024 * 1024;
    cfg->ledger_clock_skew = 300;
    cfg->ledger_dup_window = 65536;
    cfg->ledger_api_max_requests = 1024;
    cfg->token_clock_skew = 30;
    cfg->token_max_lifetime = 3600;
    cfg->token_replay_max = 100000;
    cfg->max_auth_pending = 10000;
    cfg->cluster_election_ms = 1000;
    cfg->cluster_heartbeat_ms = 100;
    cfg->cluster_forward = true;
    cfg->cluster_channel_port_offset = 1;
    cfg->cluster_forward_timeout_ms = 5000;
    cfg->cluster_forward_max = 64;
    cfg->cluster_snapshot_threshold = 65536;
    cfg->cluster_snapshot_trailing = 32768;
}

/* `auth METHOD[,METHOD...]` after a listener line: the credentials it
 * accepts at CONNECT (token, certificate, ed25519, password). */
static int cfg__auth(struct lmq_config *cfg, char **w, size_t n, char *err, size_t errlen)
{
    static const struct {
        const char *name;
        uint8_t bit;
    } m[] = {{"token", LMQ_AUTH_M_TOKEN},
             {"certificate", LMQ_AUTH_M_CERT},
             {"ed25519", LMQ_AUTH_M_ED25519},
             {"password", LMQ_AUTH_M_PASSWORD}};
    if (cfg->n_listeners == 0) {
        cfg__err(err, errlen, "'auth' applies to a listener: put it after a 'listener' line");
        return -1;
    }
    if (n != 2) {
        cfg__err(err, errlen, "'auth' takes one comma-separated list of token, certificate, "
                              "ed25519, password");
        return -1;
    }
    uint8_t bits = 0;
    for (const char *p = w[1]; *p;) {
        size_t len = strcspn(p, ",");
        size_t i;
        for (i = 0; i < sizeof m / sizeof m[0]; i++)
            if (strlen(m[i].name) == len && strncmp(m[i].name, p, len) == 0)
                break;
        if (i == sizeof m / sizeof m[0]) {
            cfg__err(err, errlen,
                     "'auth' method '%.*s' unknown (token, certificate, ed25519, password)",
                     (int)len, p);
            return -1;
        }
        bits |= m[i].bit;
        p += len;
        if (*p == ',' && p[1])
            p++;
        else if (*p == ',') {
            cfg__err(err, errlen, "'auth' list ends with a comma");
            return -1;
        }
    }
    cfg->listeners[cfg->n_listeners - 1].auth_methods = bits;
    return 0;
}

/* `ledger_topic FILTER signed|attested [late_uploads] [private]`
 * (repeatable, file order = precedence). The filter is checked here the
 * way mqtt/topic.c checks a subscription filter ('#' only as the last
 * level, '+' only as a whole level); util/ may not use mqtt/. */
static int cfg__ledger_topic(struct lmq_config *cfg, const char *line, char *err, size_t errlen)
{
    char buf[PATH_MAX + 64];
    snprintf(buf, sizeof buf, "%s", line);
    char *w[8];
    size_t n = 0;
    char *save = NULL;
    for (char *p = strtok_r(buf, " \t\r\n", &save); p; p = strtok_r(NULL, " \t\r\n", &save)) {
        if (n == 8) {
            cfg__err(err, errlen, "too many values for 'ledger_topic'");
            return -1;
        }
        w[n++] = p;
    }
    if (n < 3) {
        cfg__err(err, errlen,
                 "'ledger_topic' takes FILTER signed|attested [late_uploads] [private]");
        return -1;
    }
    const char *f = w[1];
    size_t flen = strlen(f);
    if (flen >= LMQ_CONFIG_STR || flen > 65535) {
        cfg__err(err, errlen, "ledger_topic filter longer than %d bytes", LMQ_CONFIG_STR - 1);
        return -1;
    }
    if (strncmp(f, "$share/", 7) == 0) {
        cfg__err(err, errlen, "ledger_topic filter '%s' is a shared subscription", f);
        return -1;
    }
    for (size_t i = 0; i < flen; i++) {
        bool start = i == 0 || f[i - 1] == '/';
        bool end = i + 1 == flen || f[i + 1] == '/';
        if ((f[i] == '#' && !(start && i + 1 == flen)) || (f[i] == '+' && !(start && end))) {
            cfg__err(err, errlen,
                     "ledger_topic filter '%s' is not a valid topic filter ('#' only as the "
                     "last level, '+' only as a whole level)",
                     f);
            return -1;
        }
    }
    struct lmq_ledger_topic t;
    memset(&t, 0, sizeof t);
    memcpy(t.filter, f, flen + 1);
    t.filter_len = (uint16_t)flen;
    if (strcmp(w[2], "signed") == 0)
        t.mode = LMQ_LEDGER_SIGNED;
    else if (strcmp(w[2], "attested") == 0)
        t.mode = LMQ_LEDGER_ATTESTED;
    else {
        cfg__err(err, errlen, "ledger_topic mode must be signed or attested, not '%s'", w[2]);
        return -1;
    }
    for (size_t i = 3; i < n; i++) {
        if (strcmp(w[i], "late_uploads") == 0 && t.mode == LMQ_LEDGER_SIGNED)
            t.late_uploads = true;
        else if (strcmp(w[i], "private") == 0)
            t.private_payload = true;
        else if (strcmp(w[i], "late_uploads") == 0) {
            cfg__err(err, errlen, "ledger_topic option late_uploads applies to signed topics only");
            return -1;
        } else {
            cfg__err(err, errlen,
                     "ledger_topic option must be late_uploads or private, not '%s'", w[i]);
            return -1;
        }
    }
    for (size_t i = 0; i < cfg->n_ledger_topics; i++)
        if (strcmp(cfg->ledger_topics[i].filter, t.filter) == 0) {
            cfg__err(err, errlen, "ledger_topic filter '%s' is defined twice", t.filter);
            return -1;
        }
    if (cfg->n_ledger_topics == LMQ_MAX_LEDGER_TOPICS) {
        cfg__err(err, errlen, "more than %d ledger_topic lines", LMQ_MAX_LEDGER_TOPICS);
        return -1;
    }
    cfg->ledger_topics[cfg->n_ledger_topics++] = t;
    return 0;
}

/* `operator_key NAME+KEYID+BASE64` (repeatable): the shape of a verifier
 * key (8 lowercase hex digits, 44 base64 characters); identity/registry.c
 * checks the key ID when it parses the key. */
static int cfg__operator_key(struct lmq_config *cfg, char **w, size_t n, char *err, size_t errlen)
{
    const char *v = n == 2 ? w[1] : "";
    const char *p1 = strchr(v, '+'), *p2 = p1 ? strchr(p1 + 1, '+') : NULL;
    size_t len = strlen(v);
    int ok = n == 2 && p1 && p2 && p1 > v && p2 - p1 == 9 && strlen(p2 + 1) == 44 &&
             len <= LMQ_OPERATOR_KEY_MAX;
    for (const char *q = p1 ? p1 + 1 : v; ok && q < p2; q++)
        ok = (*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'f');
    if (!ok) {
        cfg__err(err, errlen, "'operator_key' takes one verifier key NAME+KEYID+BASE64 "
                              "(from `ledgermq operator keygen`)");
        return -1;
    }
    for (size_t i = 0; i < cfg->n_operator_keys; i++)
        if (strcmp(cfg->operator_keys[i], v) == 0)
            return 0; /* listed twice: once is enough */
    if (cfg->n_operator_keys == LMQ_MAX_OPERATOR_KEYS) {
        cfg__err(err, errlen, "more than %d operator keys", LMQ_MAX_OPERATOR_KEYS);
        return -1;
    }
    memcpy(cfg->operator_keys[cfg->n_operator_keys++], v, len + 1);
    return 0;
}

static int cfg__parse_u64(const char *s, uint64_t *out);

/* `cluster_node ID HOST:PORT` (repeatable): a static Raft member. HOST is
 * an IPv4 address or a host name (libraft's transport takes no IPv6). */
static int cfg__cluster_node(struct lmq_config *cfg, char **w, size_t n, char *err, size_t errlen)
{
    uint64_t id;
    if (n != 3 || cfg__parse_u64(w[1], &id) < 0 || id < 1 || id > (uint64_t)INT64_MAX) {
        cfg__err(err, errlen, "'cluster_node' takes ID HOST:PORT (ID a whole number >= 1)");
        return -1;
    }
    const char *a = w[2], *colon = strrchr(a, ':');
    size_t hl = colon ? (size_t)(colon - a) : 0;
    uint64_t port = 0;
    int ok = colon && hl > 0 && strlen(a) < LMQ_CLUSTER_ADDRESS_MAX && !memchr(a, ':', hl) &&
             strlen(colon + 1) <= 5 && cfg__parse_u64(colon + 1, &port) == 0 && port >= 1 &&
             port <= 65535;
    for (size_t i = 0; ok && i < hl; i++)
        ok = isalnum((unsigned char)a[i]) || a[i] == '.' || a[i] == '-' || a[i] == '_';
    if (!ok) {
        cfg__err(err, errlen, "cluster_node address '%s' is not HOST:PORT (IPv4 or host name, "
                              "port 1-65535)", a);
        return -1;
    }
    for (size_t i = 0; i < cfg->n_cluster_nodes; i++)
        if (cfg->cluster_nodes[i].id == id || strcmp(cfg->cluster_nodes[i].address, a) == 0) {
            cfg__err(err, errlen, "cluster_node %llu %s: id or address already used (line %u)",
                     (unsigned long long)id, a, cfg->cluster_nodes[i].line);
            return -1;
        }
    if (cfg->n_cluster_nodes == LMQ_MAX_CLUSTER_NODES) {
        cfg__err(err, errlen, "more than %d cluster_node lines", LMQ_MAX_CLUSTER_NODES);
        return -1;
    }
    struct lmq_cluster_node *c = &cfg->cluster_nodes[cfg->n_cluster_nodes++];
    c->id = id;
    snprintf(c->address, sizeof c->address, "%s", a);
    c->line = 0;
    return 0;
}

/* Splits LINE into at most MAX whitespace-separated words (in place). */
static size_t cfg__split(char *line, char **words, size_t max)
{
    size_t n = 0;
    char *p = line;
    while (*p) {
        while (*p && isspace((unsigned char)*p))
            *p++ = '\0';
        if (!*p)
            break;
        if (n == max)
            return max + 1;
        words[n++] = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
    }
    return n;
}

static int cfg__parse_u64(const char *s, uint64_t *out)
{
    if (!isdigit((unsigned char)s[0]))
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

static int cfg__listener(struct lmq_config *cfg, char **w, size_t n, char *err, size_t errlen)
{
    if (n < 2 || n > 3) {
        cfg__err(err, errlen, "'listener' takes PORT [ADDR]");
        return -1;
    }
    uint64_t port;
    if (cfg__parse_u64(w[1], &port) < 0 || port > 65535) {
        cfg__err(err, errlen, "listener port '%s' is not a number from 0 to 65535", w[1]);
        return -1;
    }
    if (cfg->n_listeners == LMQ_MAX_LISTENERS) {
        cfg__err(err, errlen, "more than %d listeners", LMQ_MAX_LISTENERS);
        return -1;
    }
    const char *addr = n == 3 ? w[2] : "127.0.0.1";
    unsigned char tmp[16];
    if (inet_pton(AF_INET, addr, tmp) != 1 && inet_pton(AF_INET6, addr, tmp) != 1) {
        cfg__err(err, errlen, "listener address '%s' is not a numeric IPv4 or IPv6 address",
                 addr);
        return -1;
    }
    struct lmq_listener_config *l = &cfg->listeners[cfg->n_listeners++];
    memset(l, 0, sizeof *l);
    l->port = (uint16_t)port;
    snprintf(l->addr, sizeof l->addr, "%s", addr);
    l->protocol = LMQ_PROTO_MQTT;
    l->allow_anonymous = true;
    l->auth_methods = LMQ_AUTH_M_ALL;
    return 0;
}

int lmq_config_apply(struct lmq_config *cfg, const char *line_in, char *err, size_t errlen)
{
    char line[PATH_MAX + 64];
    if (strlen(line_in) >= sizeof line) {
        cfg__err(err, errlen, "line too long");
        return -1;
    }
    strcpy(line, line_in);
    {
        const char *p = line_in;
        while (*p == ' ' || *p == '\t')
            p++;
        if (strncmp(p, "ledger_topic", 12) == 0 && (p[12] == ' ' || p[12] == '\t' || !p[12]))
            return cfg__ledger_topic(cfg, p, err, errlen);
    }
    char *w[4];
    size_t n = cfg__split(line, w, 3);
    if (n == 0)
        return 0;
    if (n > 3) {
        cfg__err(err, errlen, "too many values for '%s'", w[0]);
        return -1;
    }
    if (strcmp(w[0], "listener") == 0)
        return cfg__listener(cfg, w, n, err, errlen);
    if (strcmp(w[0], "operator_key") == 0)
        return cfg__operator_key(cfg, w, n, err, errlen);
    if (strcmp(w[0], "auth") == 0)
        return cfg__auth(cfg, w, n, err, errlen);
    if (strcmp(w[0], "cluster_node") == 0)
        return cfg__cluster_node(cfg, w, n, err, errlen);

    const struct cfg__key *k = NULL;
    for (size_t i = 0; i < sizeof cfg__keys / sizeof cfg__keys[0]; i++)
        if (strcmp(cfg__keys[i].name, w[0]) == 0)
            k = &cfg__keys[i];
    if (!k) {
        cfg__err(err, errlen, "unknown key '%s'", w[0]);
        return -1;
    }
    if (n != 2) {
        cfg__err(err, errlen, "'%s' takes exactly one value", w[0]);
        return -1;
    }
    char *base;
    if (k->per_listener) {
        if (cfg->n_listeners == 0) {
            cfg__err(err, errlen, "'%s' applies to a listener: put it after a 'listener' line",
                     w[0]);
            return -1;
        }
        base = (char *)&cfg->listeners[cfg->n_listeners - 1];
    } else {
        base = (char *)cfg;
    }
    void *field = base + k->offset;
    const char *v = w[1];
    uint64_t u;
    switch (k->type) {
    case T_U16:
    case T_U32:
    case T_U64:
        if (cfg__parse_u64(v, &u) < 0 || u < k->min || u > k->max) {
            cfg__err(err, errlen, "'%s' must be a whole number from %llu to %llu, not '%s'",
                     k->name, (unsigned long long)k->min, (unsigned long long)k->max, v);
            return -1;
        }
        if (k->type == T_U16)
            *(uint16_t *)field = (uint16_t)u;
        else if (k->type == T_U32)
            *(uint32_t *)field = (uint32_t)u;
        else
            *(uint64_t *)field = u;
        return 0;
    case T_BOOL:
        if (strcmp(v, "true") == 0)
            *(bool *)field = true;
        else if (strcmp(v, "false") == 0)
            *(bool *)field = false;
        else {
            cfg__err(err, errlen, "'%s' must be true or false, not '%s'", k->name, v);
            return -1;
        }
        return 0;
    case T_STR:
        if (strlen(v) < k->min || strlen(v) > k->max) {
            cfg__err(err, errlen, "'%s' must be %llu to %llu characters", k->name,
                     (unsigned long long)k->min, (unsigned long long)k->max);
            return -1;
        }
        snprintf((char *)field, LMQ_CONFIG_STR, "%s", v);
        return 0;
    case T_PATH:
        if (strlen(v) >= PATH_MAX) {
            cfg__err(err, errlen, "'%s' path too long", k->name);
            return -1;
        }
        snprintf((char *)field, PATH_MAX, "%s", v);
        return 0;
    case T_LOGLEVEL: {
        int lv = lmq_log_level_parse(v);
        if (lv < 0) {
            cfg__err(err, errlen,
                     "'log_level' must be debug, info, notice, warning or error, not '%s'", v);
            return -1;
        }
        *(int *)field = lv;
        return 0;
    }
    case T_SYNC:
        if (strcmp(v, "always") == 0)
            *(enum lmq_sync_policy *)field = LMQ_SYNC_ALWAYS;
        else if (strcmp(v, "batch") == 0)
            *(enum lmq_sync_policy *)field = LMQ_SYNC_BATCH;
        else {
            cfg__err(err, errlen, "'%s' must be always or batch, not '%s'", k->name, v);
            return -1;
        }
        return 0;
    case T_PROTO:
        if (strcmp(v, "mqtt") == 0)
            *(enum lmq_listener_protocol *)field = LMQ_PROTO_MQTT;
        else if (strcmp(v, "websockets") == 0)
            *(enum lmq_listener_protocol *)field = LMQ_PROTO_WEBSOCKETS;
        else {
            cfg__err(err, errlen, "'protocol' must be mqtt or websockets, not '%s'", v);
            return -1;
        }
        return 0;
    }
    return -1;
}

int lmq_config_load(struct lmq_config *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        cfg__err(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    snprintf(cfg->source, sizeof cfg->source, "%s", path);
    char line[PATH_MAX + 64];
    unsigned lineno = 0;
    int rc = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            cfg__err(err, errlen, "%s:%u: line too long", path, lineno);
            rc = -1;
            break;
        }
        /* '#' starts a comment, except inside the FILTER of a ledger_topic
         * line (a topic filter may end in the '#' wildcard). */
        size_t keep_from = 0, keep_to = 0;
        size_t ws = strspn(line, " \t");
        if (strncmp(line + ws, "ledger_topic", 12) == 0 &&
            (line[ws + 12] == ' ' || line[ws + 12] == '\t')) {
            keep_from = ws + 12 + strspn(line + ws + 12, " \t");
            keep_to = keep_from + strcspn(line + keep_from, " \t\r\n");
        }
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)line[i];
            if (c == '#' && !(i >= keep_from && i < keep_to)) {
                line[i] = '\0';
                break;
            }
            if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
                cfg__err(err, errlen, "%s:%u: control character 0x%02x", path, lineno, c);
                fclose(f);
                return -1;
            }
        }
        char reason[PATH_MAX];
        size_t listeners_before = cfg->n_listeners;
        size_t ltopics_before = cfg->n_ledger_topics;
        size_t cnodes_before = cfg->n_cluster_nodes;
        if (lmq_config_apply(cfg, line, reason, sizeof reason) < 0) {
            cfg__err(err, errlen, "%s:%u: %s", path, lineno, reason);
            rc = -1;
            break;
        }
        if (cfg->n_listeners > listeners_before)
            cfg->listeners[cfg->n_listeners - 1].line = lineno;
        if (cfg->n_ledger_topics > ltopics_before)
            cfg->ledger_topics[cfg->n_ledger_topics - 1].line = lineno;
        if (cfg->n_cluster_nodes > cnodes_before)
            cfg->cluster_nodes[cfg->n_cluster_nodes - 1].line = lineno;
    }
    if (rc == 0 && ferror(f)) {
        cfg__err(err, errlen, "%s: read error: %s", path, strerror(errno));
        rc = -1;
    }
    fclose(f);
    return rc;
}

/* The cluster keys together: cluster_self names one of the cluster_node
 * lines (and is set exactly when there are some); heartbeats come more
 * often than election timeouts. */
static int cfg__cluster_finish(const struct lmq_config *cfg, char *err, size_t errlen)
{
    if (cfg->n_cluster_nodes == 0) {
        if (cfg->cluster_self != 0 || cfg->cluster_tls_cert[0] || cfg->cluster_tls_key[0] ||
            cfg->cluster_tls_ca[0] || cfg->cluster_join) {
            cfg__err(err, errlen,
                     "%s: cluster_self and cluster_tls_* need cluster_node lines, as does "
                     "cluster_join",
                     cfg->source);
            return -1;
        }
        return 0;
    }
    bool found = false;
    for (size_t i = 0; i < cfg->n_cluster_nodes; i++)
        found = found || cfg->cluster_nodes[i].id == cfg->cluster_self;
    if (!found) {
        cfg__err(err, errlen, "%s:%u: cluster_node lines need cluster_self ID naming one of them%s",
                 cfg->source, cfg->cluster_nodes[0].line,
                 cfg->cluster_self ? " (cluster_self names none)" : "");
        return -1;
    }
    int tls = !!cfg->cluster_tls_cert[0] + !!cfg->cluster_tls_key[0] + !!cfg->cluster_tls_ca[0];
    if (tls != 0 && tls != 3) {
        cfg__err(err, errlen, "%s: cluster_tls_cert, cluster_tls_key and cluster_tls_ca go together",
                 cfg->source);
        return -1;
    }
    if (cfg->cluster_heartbeat_ms >= cfg->cluster_election_ms) {
        cfg__err(err, errlen, "%s: cluster_heartbeat_ms (%u) must be below cluster_election_ms (%u)",
                 cfg->source, cfg->cluster_heartbeat_ms, cfg->cluster_election_ms);
        return -1;
    }
    /* Every member's cluster channel (forwarding) listens at its port +
     * cluster_channel_port_offset. */
    for (size_t i = 0; cfg->cluster_forward && i < cfg->n_cluster_nodes; i++) {
        const char *colon = strrchr(cfg->cluster_nodes[i].address, ':');
        unsigned long port = colon ? strtoul(colon + 1, NULL, 10) : 0;
        if (port + cfg->cluster_channel_port_offset > 65535) {
            cfg__err(err, errlen,
                     "%s:%u: cluster_node %s: its port %lu + cluster_channel_port_offset %u "
                     "(its cluster channel) is above 65535",
                     cfg->source, cfg->cluster_nodes[i].line, cfg->cluster_nodes[i].address, port,
                     cfg->cluster_channel_port_offset);
            return -1;
        }
    }
    return 0;
}

int lmq_config_finish(struct lmq_config *cfg, int port, const char *data_dir, char *err,
                      size_t errlen)
{
    if (cfg->n_listeners == 0) {
        struct lmq_listener_config *l = &cfg->listeners[cfg->n_listeners++];
        memset(l, 0, sizeof *l);
        l->port = 1883;
        snprintf(l->addr, sizeof l->addr, "127.0.0.1");
        l->allow_anonymous = true;
        l->auth_methods = LMQ_AUTH_M_ALL;
    }
    if (port > 0) {
        if (port > 65535) {
            cfg__err(err, errlen, "port %d out of range", port);
            return -1;
        }
        cfg->listeners[0].port = (uint16_t)port;
    }
    if (data_dir) {
        if (strlen(data_dir) >= sizeof cfg->data_dir) {
            cfg__err(err, errlen, "data dir path too long");
            return -1;
        }
        snprintf(cfg->data_dir, sizeof cfg->data_dir, "%s", data_dir);
    }
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct lmq_listener_config *l = &cfg->listeners[i];
        /* TLS options (files are read by lmq_tls_ctx_new at listen). */
        const char *tls_err = NULL;
        if (l->certfile[0] && !l->keyfile[0])
            tls_err = "certfile needs a keyfile";
        else if (l->keyfile[0] && !l->certfile[0])
            tls_err = "keyfile needs a certfile";
        else if (l->cafile[0] && !l->certfile[0])
            tls_err = "cafile needs a certfile and keyfile (TLS)";
        else if (l->require_certificate && !l->cafile[0])
            tls_err = "require_certificate needs a cafile to verify client certificates";
        if (tls_err) {
            cfg__err(err, errlen, "%s:%u: listener %u: %s", cfg->source, l->line, l->port,
                     tls_err);
            return -1;
        }
        for (size_t j = 0; j < i; j++)
            if (cfg->listeners[j].port == l->port && l->port != 0 &&
                strcmp(cfg->listeners[j].addr, l->addr) == 0) {
                cfg__err(err, errlen, "%s:%u: listener %s:%u is defined twice (first at line %u)",
                         cfg->source, l->line, l->addr, l->port, cfg->listeners[j].line);
                return -1;
            }
    }
    if (!cfg->ledger_node_id[0]) {
        /* The ingress node named in ledger records: the host name. */
        char host[LMQ_CONFIG_STR];
        if (gethostname(host, sizeof host) < 0 || !host[0])
            snprintf(host, sizeof host, "localhost");
        host[sizeof host - 1] = '\0';
        snprintf(cfg->ledger_node_id, sizeof cfg->ledger_node_id, "%s", host);
    }
    if (cfg__cluster_finish(cfg, err, errlen) < 0)
        return -1;
    if (cfg->max_inflight_messages > cfg->max_queued_messages && cfg->max_queued_messages != 0) {
        /* Allowed: inflight messages are not counted as queued. */
    }
    return 0;
}
