/* `ledgermq cluster status`: a running node's view of its cluster, read
 * from the $SYS/ledger/cluster/... topics it publishes every sys_interval
 * (retained, so they arrive at once after the SUBSCRIBE).
 * `ledgermq cluster add|remove|transfer`: a membership request on
 * $ledger/admin/cluster of the leader (docs/CLUSTER.md "Membership"),
 * answered with a JSON reply; exit 1 when the cluster refused the change
 * (unknown or duplicate id, not the leader any more, transfer failed), 2
 * for usage, connection, timeout and PUBACK refusals (not the leader:
 * 0x97 naming it; not an operator: 0x87). */
#include "cmd/cli.h"
#include "cmd/cli_mqtt.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CL_PREFIX "$SYS/ledger/cluster/"

static const char *const cl__keys[] = {"role",           "node",          "term",   "leader",
                                       "leader_address", "applied_index", "members"};
#define CL_NKEYS (sizeof cl__keys / sizeof cl__keys[0])

int cli_cluster_status(struct cli *c, int argc, char **argv)
{
    (void)c;
    struct cli_mqtt_opts mo = {0};
    for (int i = 1; i < argc; i++) {
        int r = cli_mqtt_opt(&mo, argc, argv, &i);
        if (r < 0)
            return -r;
        if (r == 0)
            return cli_error(CLI_ERR, "cluster status: unexpected argument '%s'", argv[i]);
    }
    if (!mo.broker)
        return cli_error(CLI_ERR, "cluster status --broker HOST:PORT [CONN]");
    struct cli_mqtt *m;
    int rc = cli_mqtt_connect(&mo, &m);
    if (rc)
        return rc;
    uint8_t sr;
    char *vals[CL_NKEYS] = {0};
    size_t have = 0;
    if ((rc = cli_mqtt_subscribe(m, CL_PREFIX "#", 0, &sr)) != 0)
        goto out;
    if (sr >= 0x80) {
        rc = cli_error(CLI_ERR, "subscribing to " CL_PREFIX "# refused: 0x%02x", sr);
        goto out;
    }
    int wait_ms = mo.timeout_ms > 0 ? mo.timeout_ms : 10000;
    while (have < CL_NKEYS) {
        struct cli_mqtt_msg *msg;
        rc = cli_mqtt_next(m, wait_ms, &msg);
        if (rc == 1) {
            rc = cli_error(CLI_FAIL,
                           "no cluster status from %s within %d ms (not a cluster node, or "
                           "sys_interval 0)",
                           mo.broker, wait_ms);
            goto out;
        }
        if (rc)
            goto out;
        const char *k = msg->topic + (strncmp(msg->topic, CL_PREFIX, strlen(CL_PREFIX)) == 0
                                          ? strlen(CL_PREFIX)
                                          : strlen(msg->topic));
        for (size_t i = 0; i < CL_NKEYS; i++) {
            if (strcmp(k, cl__keys[i]) != 0 || vals[i])
                continue;
            vals[i] = malloc(msg->len + 1);
            if (vals[i]) {
                memcpy(vals[i], msg->payload, msg->len);
                vals[i][msg->len] = '\0';
                have++;
            }
        }
        free(msg);
    }
    for (size_t i = 0; i < CL_NKEYS; i++) {
        if (strcmp(cl__keys[i], "members") != 0) {
            printf("%s: %s\n", cl__keys[i], vals[i]);
            continue;
        }
        /* "ID HOST:PORT ROLE" lines -> "member ID: HOST:PORT ROLE" */
        for (char *line = strtok(vals[i], "\n"); line; line = strtok(NULL, "\n")) {
            char *sp = strchr(line, ' ');
            if (sp) {
                *sp = '\0';
                printf("member %s: %s\n", line, sp + 1);
            }
        }
    }
    rc = CLI_OK;
out:
    for (size_t i = 0; i < CL_NKEYS; i++)
        free(vals[i]);
    cli_mqtt_close(m);
    return rc;
}

/* ------------------------------------------------------------------ */
/* add, remove, transfer */

/* The string value of "KEY": "..." in our replies (the broker's JSON:
 * escapes only \" and \\), malloc'd; NULL if absent. */
static char *cl__str(const char *json, const char *key)
{
    char pat[40];
    snprintf(pat, sizeof pat, "\"%s\": \"", key);
    const char *p = strstr(json, pat);
    if (!p)
        return NULL;
    p += strlen(pat);
    char *out = malloc(strlen(p) + 1);
    size_t n = 0;
    if (!out)
        return NULL;
    for (; *p && *p != '"'; p++) {
        if (*p == '\\' && p[1])
            p++;
        out[n++] = *p;
    }
    out[n] = '\0';
    return out;
}

static int cl__request(int argc, char **argv, int first, const char *what, char *req)
{
    struct cli_mqtt_opts mo = {0};
    for (int i = first; i < argc; i++) {
        int r = cli_mqtt_opt(&mo, argc, argv, &i);
        if (r < 0)
            return -r;
        if (r == 0)
            return cli_error(CLI_ERR, "cluster %s: unexpected argument '%s'", what, argv[i]);
    }
    if (!mo.broker)
        return cli_error(CLI_ERR,
                         "cluster %s: --broker HOST:PORT (the leader's MQTT listener) "
                         "is required",
                         what);
    struct cli_mqtt *m;
    int rc = cli_mqtt_connect(&mo, &m);
    if (rc)
        return rc;
    struct cli_mqtt_msg *reply = NULL;
    rc = cli_mqtt_request(m, "$ledger/admin/cluster", req, strlen(req), &reply);
    cli_mqtt_close(m);
    if (rc)
        return rc;
    char *json = malloc(reply->len + 1);
    if (!json) {
        free(reply);
        return cli_error(CLI_ERR, "out of memory");
    }
    memcpy(json, reply->payload, reply->len);
    json[reply->len] = '\0';
    free(reply);
    if (strncmp(json, "{\"ok\": true", 11) != 0) {
        char *err = cl__str(json, "error"), *why = cl__str(json, "reason");
        rc =
            cli_error(CLI_FAIL, "cluster %s: %s (%s)", what, why ? why : json, err ? err : "error");
        free(err);
        free(why);
        free(json);
        return rc;
    }
    uint64_t leader = 0;
    const char *l = strstr(json, "\"leader\": ");
    if (l)
        leader = strtoull(l + 10, NULL, 10);
    printf("%s: done; leader: %" PRIu64 "\n", what, leader);
    /* {"id": N, "address": "A", "role": "R"} per member */
    for (const char *p = strstr(json, "\"members\": ["); p && (p = strstr(p, "{\"id\": "));) {
        uint64_t id = strtoull(p + 7, NULL, 10);
        char *addr = cl__str(p, "address"), *role = cl__str(p, "role");
        printf("member %" PRIu64 ": %s %s\n", id, addr ? addr : "?", role ? role : "?");
        free(addr);
        free(role);
        p++;
    }
    free(json);
    return CLI_OK;
}

static int cl__id(const char *s, const char *what, uint64_t *id)
{
    if (cli_parse_u64(s, id) != 0 || *id == 0 || *id > (uint64_t)INT64_MAX)
        return cli_error(CLI_ERR, "cluster %s: '%s' is not a node id (1..2^63-1)", what, s);
    return 0;
}

int cli_cluster_add(struct cli *c, int argc, char **argv)
{
    (void)c;
    uint64_t id;
    char req[256];
    if (argc < 3 || argv[1][0] == '-' || argv[2][0] == '-')
        return cli_error(CLI_ERR, "cluster add ID HOST:PORT --broker LEADER [CONN]");
    int rc = cl__id(argv[1], "add", &id);
    if (rc)
        return rc;
    const char *a = argv[2];
    const char *colon = strrchr(a, ':');
    if (!colon || colon == a || !colon[1] || strlen(a) >= 128 || strpbrk(a, "\"\\ "))
        return cli_error(CLI_ERR,
                         "cluster add: '%s' is not HOST:PORT (the new node's Raft "
                         "address, as in its cluster_node line)",
                         a);
    snprintf(req, sizeof req, "{\"op\": \"add\", \"id\": %" PRIu64 ", \"address\": \"%s\"}", id, a);
    return cl__request(argc, argv, 3, "add", req);
}

int cli_cluster_remove(struct cli *c, int argc, char **argv)
{
    (void)c;
    uint64_t id;
    char req[96];
    if (argc < 2 || argv[1][0] == '-')
        return cli_error(CLI_ERR, "cluster remove ID --broker LEADER [CONN]");
    int rc = cl__id(argv[1], "remove", &id);
    if (rc)
        return rc;
    snprintf(req, sizeof req, "{\"op\": \"remove\", \"id\": %" PRIu64 "}", id);
    return cl__request(argc, argv, 2, "remove", req);
}

int cli_cluster_transfer(struct cli *c, int argc, char **argv)
{
    (void)c;
    uint64_t id = 0;
    char req[96];
    int first = 1;
    if (argc >= 2 && argv[1][0] != '-') {
        int rc = cl__id(argv[1], "transfer", &id);
        if (rc)
            return rc;
        first = 2;
    }
    if (id)
        snprintf(req, sizeof req, "{\"op\": \"transfer\", \"id\": %" PRIu64 "}", id);
    else
        snprintf(req, sizeof req, "{\"op\": \"transfer\"}");
    return cl__request(argc, argv, first, "transfer", req);
}
