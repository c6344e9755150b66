/* The MQTT broker core (see broker.h): packet handling per connection,
 * sessions (hash table by client id), the topic tree, retained messages,
 * wills, QoS 1/2 state with an inflight window and offline queues, and the
 * write-ahead of persistent state into the store.
 *
 * Invariants:
 * - Output is only written by lmq_broker_flush(), after the iteration's
 *   store batch is committed; so every ack (PUBACK, PUBREC, PUBCOMP,
 *   SUBACK, CONNACK with a stored session) follows the state it confirms.
 * - A session's queue holds at most max_queued_messages entries and
 *   max_queued_bytes bytes beyond its inflight window; a slow consumer's
 *   unwritten output never exceeds BK_SLOW_CONSUMER_BYTES for QoS 0.
 * - Persistent sessions (clean session 0) mirror their subscriptions, queue
 *   and incoming QoS 2 ids in the store; clean sessions never touch it. */
#include "broker/broker.h"

#include "broker/auth.h"
#include "broker/ledger_glue.h"
#include "broker/ledger_api.h"
#include "broker/msg.h"
#include "broker/store.h"
#include "broker/topictree.h"
#include "identity/acl.h"
#include "identity/authn.h"
#include "identity/pwfile.h"
#include "mqtt/codec.h"
#include "mqtt/topic.h"
#include "util/log.h"
#include "util/workpool.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
#include <malloc.h>
#define BK_HAVE_MALLINFO2 1
#endif
#include <math.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* Unwritten bytes beyond which QoS 0 messages to a client are dropped. */
#define BK_SLOW_CONSUMER_BYTES (4u * 1024 * 1024)
/* Seconds without an ack after which a congested subscriber stops pausing
 * its publishers. */
#define BK_STALL_S 2
/* Topic aliases (MQTT 5): config's max_topic_alias is both the Topic Alias
 * Maximum the broker announces (inbound aliases 1..max resolved per
 * connection) and the most outbound aliases it uses per connection (fewer if
 * the client's maximum is lower), reused round-robin. */
/* MQTT 5 subscription option bits kept per subscription in the tree. */
#define BK_OPT_NO_LOCAL 0x04
#define BK_OPT_RAP 0x08 /* retain as published */
/* The properties the broker itself sets or strips when forwarding. */
#define BK_PROPS_STRIP                                                                     \
    (MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS) | MQTT_PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID) |      \
     MQTT_PROP_BIT(MQTT_PROP_MESSAGE_EXPIRY) | MQTT_PROP_BIT(MQTT_PROP_WILL_DELAY))

enum bk_qstate { BK_QUEUED = 0, BK_AWAIT_ACK = 1, BK_AWAIT_COMP = 2 };

/* A shared subscription group "$share/{group}/{filter}": its members in
 * subscription order, served round-robin. Groups live until the broker is
 * freed (entries point at the group they were delivered through). */
struct bk_member {
    struct bk_session *s;
    uint8_t qos;
};
struct bk_group {
    struct bk_group *next;
    char *key;              /* "{group}/{filter}", NUL-terminated */
    size_t key_len;
    const char *filter;     /* points into key */
    size_t filter_len;
    struct bk_member *m;
    uint32_t n, cap, rr;
};

/* One message in a session's inflight list or queue. */
struct bk_entry {
    struct bk_entry *next;
    struct bk_group *grp;   /* delivered through this shared group, or NULL */
    struct lmq_msg *msg;    /* NULL once PUBREL was sent */
    uint64_t msg_id;        /* its body in the store (persistent sessions), 0 = none */
    uint64_t seq;
    uint16_t pkid;
    uint8_t qos;
    uint8_t state;
    bool dup;
    bool retain;            /* RETAIN flag to send it with */
};

struct bk_sub {
    char *filter;
    uint16_t len;
    uint8_t qos;
    uint8_t opts;           /* BK_OPT_* */
    uint32_t sub_id;        /* MQTT 5 subscription identifier, 0 = none */
};

/* An MQTT 5 delayed will waiting with its offline session (out of line:
 * only sessions with one pay for it). */
struct bk_dwill {
    struct lmq_msg *msg;
    uint64_t at;                /* unix seconds */
    uint32_t expiry;            /* its message expiry interval, 0 = none */
};

struct bk_session {
    /* Laid out without padding: an idle connection's session is most of
     * what it costs. */
    struct bk_session *hnext;
    struct lmq_client *client;  /* online connection, or NULL */
    struct bk_sub *subs;
    struct bk_entry *inf_head, *inf_tail;
    struct bk_entry *q_head, *q_tail;
    uint16_t *qos2_in;
    struct bk_dwill *will;      /* MQTT 5 delayed will, or NULL */
    uint32_t expiry;            /* session expiry interval (s); UINT32_MAX = never */
    uint32_t max_out;           /* client's Maximum Packet Size, 0 = none */
    uint64_t q_bytes;
    uint64_t next_seq;
    uint32_t disconnected_at;   /* unix seconds (to 2106), 0 while online */
    uint32_t hash;
    uint32_t nsubs, scap;
    uint32_t n_subids;          /* subscriptions with an identifier */
    uint32_t n_inflight;
    uint32_t n_queued;
    uint32_t n_qos2_in, cap_qos2_in;
    uint32_t dropped;
    uint32_t last_progress;     /* monotonic s of its last ack (flow control) */
    uint16_t recv_max;          /* client's Receive Maximum, 0 = none */
    uint16_t id_len;
    uint16_t next_pkid;
    bool persistent;            /* clean session 0 */
    bool stored;                /* has a record in the store */
    bool congested;             /* online and its queue is above the high mark */
    bool pkid_scan;             /* inflight ids may be out of order (loaded) */
    uint8_t proto;
    char id[];                  /* client id, NUL-terminated */
};

/* BK_C_AUTH: an MQTT 5 CONNECT waits for enhanced authentication (AUTH). */
/* BK_C_CHECK: the CONNECT is held while a credential check runs on the
 * worker pool (input paused). */
enum bk_cstate {
    BK_C_NEW = 0,
    BK_C_CONNECTED = 1,
    BK_C_CLOSING = 2,
    BK_C_AUTH = 3,
    BK_C_CHECK = 4,
};
struct bk_authjob;

/* The MQTT 5 state of a client that most connections never use (topic
 * aliases, enhanced authentication, will delay/expiry): kept out of line
 * so an idle client stays small; allocated by bk__x the first time any of
 * it is needed, freed with the client. */
struct bk_client_x {
    char **alias_in;                    /* MQTT 5 inbound topic aliases, or NULL */
    const struct lmq_auth_method *auth; /* enhanced authentication method, or NULL */
    char *principal;                    /* authenticated user name or device id, or NULL */
    struct bk_authjob *job;             /* credential check in flight (BK_C_CHECK) */
    void *auth_state;                   /* the method's */
    uint8_t *pending;                   /* the CONNECT waiting for BK_C_AUTH to end */
    char **alias_out;                   /* outbound aliases 1..alias_out_max, or NULL */
    uint32_t pending_len;
    uint16_t alias_out_max;             /* min(client's maximum, max_topic_alias) */
    uint16_t alias_out_next;            /* slot to reuse next (1-based) */
    uint32_t will_delay;                /* MQTT 5 will delay interval */
    uint32_t will_expiry;               /* its message expiry interval, 0 = none */
    bool reauth;                        /* a re-authentication (AUTH 0x19) is running */
};

struct lmq_client {
    struct lmq_broker *b;
    void *tctx;
    struct lmq_outq out;
    struct bk_session *sess;
    struct lmq_client *prev, *next;     /* all clients */
    struct lmq_client *dirty_next;      /* clients with output this iteration */
    struct lmq_client *paused_next;
    struct lmq_msg *will;
    struct bk_client_x *x;              /* rarely used MQTT 5 state, or NULL */
    void *lp;                           /* ledger pipeline state (ledger_pipe.c), or NULL */
    uint32_t last_rx;                   /* monotonic seconds */
    uint32_t created;
    uint16_t keepalive;
    uint16_t peer_port;
    uint8_t state;
    uint8_t proto;
    bool dirty;
    bool lost;                          /* disconnect handling done */
    bool want_close;                    /* close after the flush */
    bool paused;                        /* input paused: it published to a
                                           congested session */
    bool anonymous_ok;                  /* its listener's allow_anonymous */
    bool expiry0;                       /* v5 CONNECT had session expiry 0 */
    bool authed;                        /* authentication done (CONNECT may proceed) */
    uint8_t pkind;                      /* enum bk_principal_kind of x->principal */
    uint8_t auth_methods;               /* its listener's LMQ_AUTH_M_* */
    uint8_t peer_family;                /* AF_INET, AF_INET6, or 0: unknown */
    uint8_t peer_addr[16];              /* network order; printed by bk__peer */
};

struct lmq_broker {
    const struct lmq_config *cfg;
    struct lmq_transport tr;
    struct lmq_store *store;
    bool batch_open;
    bool batch_failed;
    struct lmq_tree *tree;
    struct lmq_match_set matches;
    struct lmq_tree *shared;            /* shared groups by their inner filter */
    struct bk_group *groups;
    struct bk_group *cur_grp;           /* group of the delivery in progress */
    struct bk_session **sessions;
    size_t n_sessions, sess_cap;
    struct lmq_client *clients;
    size_t n_clients;
    struct lmq_client *dirty;
    uint64_t now;                       /* monotonic seconds */
    uint64_t last_sync;
    uint64_t last_sys;
    uint64_t last_expire;
    uint64_t started;
    uint64_t id_counter;
    struct lmq_broker_stats st;
    bool shutting_down;
    bool freeing;
    bool v5_expiry;                     /* a session with a finite expiry exists */
    uint32_t n_wills;                   /* sessions with a delayed will */
    /* $SYS: the most clients connected at once, and load averages (per
     * minute, over 1, 5 and 15 minutes) with the counters they were last
     * computed from. */
    size_t max_connected;
    size_t heap_max;
    struct bk_load_avg {
        double v[3];
        uint64_t prev;
    } load[5];
    uint64_t conns_total;               /* connections accepted */
    /* Publisher flow control: a publisher whose QoS 1/2 message lands in an
     * online session's queue above half its limit is paused (no more input
     * read) until some congested session drains below a quarter, or a tick
     * passes; so fast publishers meet the pace of their subscribers instead
     * of overflowing their queues. */
    uint32_t n_congested;
    bool hit_congested;
    bool resume_pending;
    struct lmq_client *paused;
    struct lmq_broker_services svc;     /* ledger, registry, worker pool */
    /* Authentication and access control (see "authentication" below). */
    struct acl *acl;                    /* acl_file's rules, or NULL: all allowed */
    struct bk_pwref *pw;                /* password_file, or NULL */
    struct authn_replay *replay;        /* accepted tokens until their exp */
    uint64_t started_unix;              /* tokens issued before are refused */
    uint32_t auth_pending;              /* credential checks in flight */
    uint64_t auth_refused;              /* CONNECTs refused by authentication */
    uint64_t acl_denied;                /* PUBLISH/SUBSCRIBE denied by the ACL */
    struct lmq_ledger_api *lapi;        /* the $ledger/ topics, NULL without a ledger */
    struct bk_lp *lp;                   /* ledgered topics (ledger_pipe.c), NULL without */
};

static void bk__close(struct lmq_client *c);
static bool bk__acl_read_ok(const struct lmq_broker *b, const struct bk_session *s,
                            const struct lmq_msg *m);
static void bk__pump(struct lmq_broker *b, struct bk_session *s);
static void bk__decongest(struct lmq_broker *b, struct bk_session *s);

/* ------------------------------------------------------------------ */
/* time, logging */

static uint64_t bk__mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec;
}

static uint64_t bk__unix(void)
{
    return (uint64_t)time(NULL);
}

/* "a.b.c.d:port" or "[v6]:port" ("?" when unknown) for log lines, in one
 * of four buffers used in turn: a log line may print two addresses. */
static const char *bk__addr_str(int family, const uint8_t *addr, uint16_t port)
{
    static _Thread_local char buf[4][INET6_ADDRSTRLEN + 8];
    static _Thread_local unsigned next;
    char ip[INET6_ADDRSTRLEN];
    if ((family != AF_INET && family != AF_INET6) || !inet_ntop(family, addr, ip, sizeof ip))
        return "?";
    char *p = buf[next++ & 3];
    snprintf(p, sizeof buf[0], family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, (unsigned)port);
    return p;
}

/* The client's address for log lines (kept binary: an idle connection
 * should cost little). Valid until the fourth call after it. */
static const char *bk__peer(const struct lmq_client *c)
{
    return bk__addr_str(c->peer_family, c->peer_addr, c->peer_port);
}

/* Printable name of a client for log lines: its id, else its address. */
static const char *bk__name(const struct lmq_client *c)
{
    return c->sess ? c->sess->id : bk__peer(c);
}

/* ------------------------------------------------------------------ */
/* store batch */

/* Opens the iteration's batch on the first change. Returns the store, or
 * NULL if the store failed in this batch (the change is then not made and
 * the acks of the batch are not sent). */
static struct lmq_store *bk__st(struct lmq_broker *b)
{
    if (!b->store || b->batch_failed)
        return NULL;
    if (!b->batch_open) {
        if (lmq_store_begin(b->store) < 0) {
            b->batch_failed = true;
            return NULL;
        }
        b->batch_open = true;
    }
    return b->store;
}

static void bk__st_check(struct lmq_broker *b, int rc, const char *what)
{
    if (rc == 0 || rc == LMQ_STORE_ENOTFOUND)
        return;
    LMQ_ERROR("store: %s: %s", what, lmq_store_strerror(rc));
    /* Even a single refused change (EFULL) means an ack of this batch
     * could confirm something that is not on disk: the whole batch goes,
     * its clients are closed unacknowledged and resend after reconnecting. */
    b->batch_failed = true;
}

/* ------------------------------------------------------------------ */
/* output */

static void bk__dirty(struct lmq_client *c)
{
    if (!c->dirty) {
        c->dirty = true;
        c->dirty_next = c->b->dirty;
        c->b->dirty = c;
    }
}

static void bk__out(struct lmq_client *c, const void *p, size_t n)
{
    if (c->state == BK_C_CLOSING && !c->want_close)
        return;
    if (lmq_outq_copy(&c->out, p, n) < 0) {
        LMQ_ERROR("client %s: out of memory queueing output; closing", bk__name(c));
        bk__close(c);
        return;
    }
    bk__dirty(c);
}

static void bk__send_ack_rc(struct lmq_client *c, uint8_t type, uint16_t pkid, uint8_t reason)
{
    uint8_t buf[8];
    int n = mqtt_encode_ack_simple(buf, sizeof buf, c->proto, type, pkid,
                                   c->proto == MQTT_V5 ? reason : 0);
    if (n > 0)
        bk__out(c, buf, (size_t)n);
}

static void bk__send_ack(struct lmq_client *c, uint8_t type, uint16_t pkid)
{
    bk__send_ack_rc(c, type, pkid, 0);
}

/* CONNACK; PROPS (MQTT 5 only) may be NULL. */
static void bk__send_connack(struct lmq_client *c, uint8_t version, bool present, uint8_t rc,
                             const struct mqtt_props *props)
{
    struct mqtt_connack ca;
    memset(&ca, 0, sizeof ca);
    ca.session_present = present;
    ca.reason = rc;
    if (props && version == MQTT_V5)
        ca.props = *props;
    uint8_t buf[512];
    int n = mqtt_encode_connack(buf, sizeof buf, version, &ca);
    if (n > 0)
        bk__out(c, buf, (size_t)n);
}

/* MQTT 5: tells C why the broker closes its connection (nothing under
 * 3.1.1 or before CONNACK). */
static void bk__send_disconnect(struct lmq_client *c, uint8_t reason)
{
    if (c->proto != MQTT_V5 || c->state != BK_C_CONNECTED)
        return;
    struct mqtt_disconnect d;
    memset(&d, 0, sizeof d);
    d.reason = reason;
    uint8_t buf[8];
    int n = mqtt_encode_disconnect(buf, sizeof buf, MQTT_V5, &d);
    if (n > 0)
        bk__out(c, buf, (size_t)n);
}

static bool bk__msg_expired(const struct lmq_msg *m, uint64_t now_unix)
{
    return m && m->expiry_at && now_unix >= m->expiry_at;
}

/* The PUBLISH of M to C, without payload bytes (P->payload.len is set). */
static void bk__fill_publish(const struct lmq_client *c, const struct lmq_msg *m, uint8_t qos,
                             uint16_t pkid, bool dup, bool retain, struct mqtt_publish *p)
{
    memset(p, 0, sizeof *p);
    p->qos = qos;
    p->dup = dup;
    p->retain = retain;
    p->packet_id = pkid;
    p->topic.ptr = m->topic;
    p->topic.len = m->topic_len;
    p->payload.len = m->payload_len;
    if (c->proto == MQTT_V5) {
        /* The stored properties lack alias, subscription ids and expiry;
         * the remaining expiry interval is written fresh. */
        p->props.extra.ptr = m->props;
        p->props.extra.len = m->props_len;
        if (m->expiry_at) {
            uint64_t now = bk__unix();
            p->props.present |= MQTT_PROP_BIT(MQTT_PROP_MESSAGE_EXPIRY);
            p->props.message_expiry = m->expiry_at > now ? (uint32_t)(m->expiry_at - now) : 0;
        }
    }
}

/* Whether M at QOS would exceed the Maximum Packet Size of session S's
 * client (MQTT 5): such a message is dropped for it, not sent. */
static bool bk__too_big(const struct bk_session *s, const struct lmq_msg *m, uint8_t qos)
{
    if (!s->max_out || !s->client)
        return false;
    struct mqtt_publish p;
    bk__fill_publish(s->client, m, qos, qos ? 1 : 0, false, false, &p);
    int n = mqtt_encode_publish_header(NULL, 0, MQTT_V5, &p);
    return n < 0 || (uint64_t)n + m->payload_len > s->max_out;
}

/* C's MQTT 5 extension state, allocated on first use; NULL if out of
 * memory. */
static struct bk_client_x *bk__x(struct lmq_client *c)
{
    if (!c->x)
        c->x = calloc(1, sizeof *c->x);
    return c->x;
}

/* MQTT 5 outbound topic alias for P: a topic already sent under an alias
 * goes out as that alias with an empty topic; a new topic takes the next
 * slot (round-robin) and goes out in full with it. */
static void bk__alias_out(struct lmq_client *c, struct mqtt_publish *p)
{
    struct bk_client_x *x = c->x;
    if (!x->alias_out) {
        x->alias_out = calloc((size_t)x->alias_out_max + 1, sizeof(char *));
        if (!x->alias_out)
            return;
    }
    for (uint16_t i = 1; i <= x->alias_out_max; i++) {
        const char *t = x->alias_out[i];
        if (t && strlen(t) == p->topic.len && memcmp(t, p->topic.ptr, p->topic.len) == 0) {
            p->props.present |= MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS);
            p->props.topic_alias = i;
            p->topic.len = 0;
            return;
        }
    }
    char *t = malloc(p->topic.len + 1);
    if (!t)
        return;
    memcpy(t, p->topic.ptr, p->topic.len);
    t[p->topic.len] = '\0';
    uint16_t slot = x->alias_out_next ? x->alias_out_next : 1;
    x->alias_out_next = (uint16_t)(slot % x->alias_out_max + 1);
    free(x->alias_out[slot]);
    x->alias_out[slot] = t;
    p->props.present |= MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS);
    p->props.topic_alias = slot;
}

/* Queues one PUBLISH of M to C. */
static void bk__send_publish(struct lmq_client *c, struct lmq_msg *m, uint8_t qos, uint16_t pkid,
                             bool dup, bool retain)
{
    struct mqtt_publish p;
    bk__fill_publish(c, m, qos, pkid, dup, retain, &p);
    /* MQTT 5 subscription identifiers: one delivery carries the id of
     * every subscription of the session that matches the topic now. */
    uint8_t small[256];
    uint8_t *props = NULL;
    struct bk_session *s = c->sess;
    if (c->proto == MQTT_V5 && s && s->n_subids) {
        size_t pcap = (size_t)m->props_len + 5u * s->n_subids;
        props = pcap <= sizeof small ? small : malloc(pcap);
        if (!props)
            goto fail;
        memcpy(props, m->props, m->props_len);
        size_t pn = m->props_len;
        for (uint32_t i = 0; i < s->nsubs; i++) {
            const struct bk_sub *sb = &s->subs[i];
            if (!sb->sub_id || !mqtt_topic_matches(sb->filter, sb->len, m->topic, m->topic_len))
                continue;
            int k = mqtt_prop_encode_sub_id(props + pn, pcap - pn, sb->sub_id);
            if (k > 0)
                pn += (size_t)k;
        }
        p.props.extra.ptr = props;
        p.props.extra.len = pn;
    }
    if (c->x && c->x->alias_out_max)
        bk__alias_out(c, &p);
    size_t cap = (size_t)m->topic_len + 16;
    if (c->proto == MQTT_V5)
        cap += (size_t)p.props.extra.len + 16;
    bool copy = m->payload_len <= LMQ_OUTQ_COPY_MAX;
    if (copy)
        cap += m->payload_len;
    uint8_t *d = lmq_outq_reserve(&c->out, cap);
    if (!d) {
        if (props && props != small)
            free(props);
        goto fail;
    }
    int n = mqtt_encode_publish_header(d, cap, c->proto == MQTT_V5 ? MQTT_V5 : MQTT_V311, &p);
    if (props && props != small)
        free(props);
    if (n < 0) {
        lmq_outq_unreserve(&c->out, cap);
        LMQ_ERROR("client %s: cannot encode PUBLISH to %s: %s", bk__name(c), m->topic,
                  mqtt_err_str(n));
        return;
    }
    if (copy) {
        memcpy(d + n, m->payload, m->payload_len);
        n += (int)m->payload_len;
        lmq_outq_unreserve(&c->out, cap - (size_t)n);
    } else {
        lmq_outq_unreserve(&c->out, cap - (size_t)n);
        if (lmq_outq_ref(&c->out, m, m->payload, m->payload_len) < 0)
            goto fail;
    }
    c->b->st.msgs_out++;
    bk__dirty(c);
    return;
fail:
    LMQ_ERROR("client %s: out of memory queueing output; closing", bk__name(c));
    bk__close(c);
}

/* ------------------------------------------------------------------ */
/* sessions */

static uint32_t bk__hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 16777619u;
    }
    return h;
}

static struct bk_session *bk__sess_find(struct lmq_broker *b, const char *id, size_t len)
{
    if (!b->sess_cap)
        return NULL;
    uint32_t h = bk__hash(id, len);
    for (struct bk_session *s = b->sessions[h & (b->sess_cap - 1)]; s; s = s->hnext)
        if (s->hash == h && s->id_len == len && memcmp(s->id, id, len) == 0)
            return s;
    return NULL;
}

static int bk__sess_table_grow(struct lmq_broker *b)
{
    size_t cap = b->sess_cap ? b->sess_cap * 2 : 1024;
    struct bk_session **t = calloc(cap, sizeof *t);
    if (!t)
        return -ENOMEM;
    for (size_t i = 0; i < b->sess_cap; i++) {
        struct bk_session *s = b->sessions[i];
        while (s) {
            struct bk_session *nx = s->hnext;
            s->hnext = t[s->hash & (cap - 1)];
            t[s->hash & (cap - 1)] = s;
            s = nx;
        }
    }
    free(b->sessions);
    b->sessions = t;
    b->sess_cap = cap;
    return 0;
}

static struct bk_session *bk__sess_new(struct lmq_broker *b, const char *id, size_t len)
{
    /* Chains of two on average: the table costs 4 bytes per session. */
    if (b->n_sessions + 1 > 2 * b->sess_cap && bk__sess_table_grow(b) < 0)
        return NULL;
    /* The id starts in the struct's tail padding. */
    size_t sz = offsetof(struct bk_session, id) + len + 1;
    struct bk_session *s = calloc(1, sz > sizeof *s ? sz : sizeof *s);
    if (!s)
        return NULL;
    memcpy(s->id, id, len);
    s->id[len] = '\0';
    s->id_len = (uint16_t)len;
    s->hash = bk__hash(id, len);
    s->next_pkid = 1;
    s->next_seq = 1;
    s->proto = MQTT_V311;
    size_t i = s->hash & (b->sess_cap - 1);
    s->hnext = b->sessions[i];
    b->sessions[i] = s;
    b->n_sessions++;
    return s;
}

static void bk__entry_free(struct bk_entry *e)
{
    lmq_msg_unref(e->msg);
    free(e);
}

static void bk__publish(struct lmq_broker *b, const struct bk_session *from, const char *topic,
                        size_t tlen, const void *payload, size_t plen, const void *props,
                        size_t props_len, uint8_t qos, bool retain, uint64_t expiry_at);

/* Publishes a will message W (MQTT 5 message expiry interval EXPIRY, 0 =
 * none) and drops the reference to it. */
static void bk__publish_will(struct lmq_broker *b, struct lmq_msg *w, uint32_t expiry)
{
    if (b->lp && bk_lp_ledgered(b->lp, w->topic, w->topic_len)) {
        /* A will never goes through the ledger pipeline (nobody to verify
         * or attest it when it fires): not published on a ledgered topic. */
        LMQ_NOTICE("will on ledgered topic %s not published", w->topic);
        lmq_msg_unref(w);
        return;
    }
    bk__publish(b, NULL, w->topic, w->topic_len, w->payload, w->payload_len, w->props,
                w->props_len, w->qos, w->retain, expiry ? bk__unix() + expiry : 0);
    lmq_msg_unref(w);
}

static void bk__sess_store_put(struct lmq_broker *b, struct bk_session *s);

/* The session's delayed will is due (or the session ends or resumes):
 * publish it if PUBLISH, and drop it from the session's store record. */
static void bk__sess_will_fire(struct lmq_broker *b, struct bk_session *s, bool publish)
{
    struct bk_dwill *dw = s->will;
    if (!dw)
        return;
    s->will = NULL;
    b->n_wills--;
    struct lmq_msg *w = dw->msg;
    uint32_t expiry = dw->expiry;
    free(dw);
    if (s->stored && !b->freeing && !b->shutting_down)
        bk__sess_store_put(b, s);
    if (publish && !b->freeing && !b->shutting_down)
        bk__publish_will(b, w, expiry);
    else
        lmq_msg_unref(w);
}

/* The shared group of "$share/{group}/{filter}" (SH from
 * mqtt_topic_share_parse), created if CREATE. */
static struct bk_group *bk__group_find(struct lmq_broker *b, const struct mqtt_share *sh,
                                       bool create)
{
    size_t klen = sh->group.len + 1 + sh->filter.len;
    for (struct bk_group *g = b->groups; g; g = g->next)
        if (g->key_len == klen && memcmp(g->key, sh->group.ptr, klen) == 0)
            return g;
    if (!create)
        return NULL;
    struct bk_group *g = calloc(1, sizeof *g);
    if (!g || !(g->key = malloc(klen + 1))) {
        free(g);
        return NULL;
    }
    memcpy(g->key, sh->group.ptr, klen); /* "{group}/{filter}" is contiguous */
    g->key[klen] = '\0';
    g->key_len = klen;
    g->filter = g->key + sh->group.len + 1;
    g->filter_len = sh->filter.len;
    g->next = b->groups;
    b->groups = g;
    return g;
}

/* Adds S's subscription to FILTER (QoS, options) to the tree, or to its
 * shared group for "$share/..." filters. Returns 0 or -ENOMEM. */
static int bk__tree_sub(struct lmq_broker *b, struct bk_session *s, const char *f, size_t len,
                        uint8_t qos, uint8_t opts)
{
    struct mqtt_share sh;
    if (mqtt_topic_share_parse(f, len, &sh) != 1)
        return lmq_tree_subscribe(b->tree, f, len, s, qos, opts, NULL);
    struct bk_group *g = bk__group_find(b, &sh, true);
    if (!g)
        return -ENOMEM;
    for (uint32_t i = 0; i < g->n; i++) {
        if (g->m[i].s == s) {
            g->m[i].qos = qos;
            return 0;
        }
    }
    if (g->n == g->cap) {
        uint32_t cap = g->cap ? g->cap * 2 : 4;
        struct bk_member *v = realloc(g->m, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        g->m = v;
        g->cap = cap;
    }
    if (g->n == 0 && lmq_tree_subscribe(b->shared, g->filter, g->filter_len, g, 2, 0, NULL) < 0)
        return -ENOMEM;
    g->m[g->n++] = (struct bk_member){s, qos};
    return 0;
}

static void bk__tree_unsub(struct lmq_broker *b, struct bk_session *s, const char *f, size_t len)
{
    struct mqtt_share sh;
    if (mqtt_topic_share_parse(f, len, &sh) != 1) {
        lmq_tree_unsubscribe(b->tree, f, len, s);
        return;
    }
    struct bk_group *g = bk__group_find(b, &sh, false);
    if (!g)
        return;
    for (uint32_t i = 0; i < g->n; i++) {
        if (g->m[i].s == s) {
            memmove(&g->m[i], &g->m[i + 1], (g->n - i - 1) * sizeof g->m[0]);
            g->n--;
            if (g->rr > i)
                g->rr--;
            break;
        }
    }
    if (g->n == 0)
        lmq_tree_unsubscribe(b->shared, g->filter, g->filter_len, g);
}

static void bk__group_deliver(struct lmq_broker *b, struct bk_group *g, struct lmq_msg *m,
                              const struct bk_session *exclude);

/* Removes S from the table and frees it with its subscriptions and queue.
 * Deletes its store record when it has one. */
static void bk__sess_destroy(struct lmq_broker *b, struct bk_session *s)
{
    /* A delayed will goes out when its session ends (MQTT 5 3.1.3.2.2). */
    bk__sess_will_fire(b, s, true);
    size_t i = s->hash & (b->sess_cap - 1);
    struct bk_session **pp = &b->sessions[i];
    while (*pp != s)
        pp = &(*pp)->hnext;
    *pp = s->hnext;
    b->n_sessions--;
    for (uint32_t k = 0; k < s->nsubs; k++) {
        bk__tree_unsub(b, s, s->subs[k].filter, s->subs[k].len);
        free(s->subs[k].filter);
    }
    free(s->subs);
    /* Unacknowledged messages of a shared subscription go to another
     * member of the group when the session ends. */
    bool redeliver = !b->freeing && !b->shutting_down;
    for (struct bk_entry *e = s->inf_head, *nx; e; e = nx) {
        nx = e->next;
        if (redeliver && e->grp && e->msg && e->state == BK_AWAIT_ACK)
            bk__group_deliver(b, e->grp, e->msg, s);
        bk__entry_free(e);
    }
    for (struct bk_entry *e = s->q_head, *nx; e; e = nx) {
        nx = e->next;
        if (redeliver && e->grp && e->msg)
            bk__group_deliver(b, e->grp, e->msg, s);
        bk__entry_free(e);
    }
    free(s->qos2_in);
    bk__decongest(b, s);
    if (s->stored) {
        struct lmq_store *st = bk__st(b);
        if (st)
            bk__st_check(b, lmq_store_session_del(st, s->id, s->id_len), "delete session");
    }
    if (s->client)
        s->client->sess = NULL;
    free(s);
}

/* An offline persistent session not resumed within its expiry interval
 * (MQTT 5 session expiry, else persistent_client_expiration). */
static bool bk__sess_expired(const struct lmq_broker *b, const struct bk_session *s,
                             uint64_t now)
{
    (void)b;
    uint32_t exp = s->expiry;
    return exp != UINT32_MAX && !s->client && s->disconnected_at && now > s->disconnected_at &&
           now - s->disconnected_at > exp;
}

/* The expiry interval of a 3.1.1 persistent session. */
static uint32_t bk__v4_expiry(const struct lmq_broker *b)
{
    uint32_t exp = b->cfg->persistent_client_expiration;
    return exp ? exp : UINT32_MAX;
}

static void bk__sess_store_put(struct lmq_broker *b, struct bk_session *s)
{
    struct lmq_store *st = bk__st(b);
    if (!st)
        return;
    struct lmq_store_session rec = {
        .client_id = s->id,
        .client_id_len = s->id_len,
        .protocol_version = s->proto,
        .expiry_interval = s->expiry,
        .disconnected_at = s->disconnected_at,
    };
    if (s->will) { /* a delayed will waits with the session, across restarts */
        const struct lmq_msg *w = s->will->msg;
        rec.has_will = true;
        rec.will = (struct lmq_store_message){
            .topic = w->topic,
            .topic_len = w->topic_len,
            .payload = w->payload,
            .payload_len = w->payload_len,
            .props = w->props,
            .props_len = w->props_len,
            .qos = w->qos,
            .retain = w->retain,
        };
        rec.will_at = s->will->at;
        rec.will_expiry = s->will->expiry;
    }
    int rc = lmq_store_session_put(st, &rec);
    bk__st_check(b, rc, "put session");
    if (rc == 0)
        s->stored = true;
}

static void bk__entry_store(struct lmq_broker *b, struct bk_session *s, struct bk_entry *e)
{
    struct lmq_store *st = bk__st(b);
    if (!st)
        return;
    struct lmq_msg *m = e->msg;
    /* A routed message's body is stored once for all the sessions it is
     * queued for (they are all queued in this one batch). A retained
     * message is delivered again at later subscriptions, when the body
     * stored the first time may be gone: each delivery stores its own. */
    if (m && !e->msg_id && m->store_id && !m->retain)
        e->msg_id = m->store_id;
    if (m && !e->msg_id) {
        struct lmq_store_message sm = {
            .topic = m->topic,
            .topic_len = m->topic_len,
            .payload = m->payload,
            .payload_len = m->payload_len,
            .props = m->props,
            .props_len = m->props_len,
            .qos = m->qos,
            .retain = m->retain,
            .expiry_at = m->expiry_at,
        };
        uint64_t id = 0;
        int rc = lmq_store_msg_add(st, &sm, &id);
        bk__st_check(b, rc, "add message");
        if (rc < 0)
            return;
        e->msg_id = id;
        if (!m->retain)
            m->store_id = id;
    }
    struct lmq_store_entry se = {
        .seq = e->seq,
        .msg_id = m ? e->msg_id : 0,
        .qos = e->qos,
        .state = e->state,
        .packet_id = e->state == BK_QUEUED ? 0 : e->pkid,
        .dup = e->dup,
    };
    bk__st_check(b, lmq_store_qmsg_put(st, s->id, s->id_len, &se), "put queue entry");
}

static void bk__entry_unstore(struct lmq_broker *b, struct bk_session *s, struct bk_entry *e)
{
    struct lmq_store *st = bk__st(b);
    if (st)
        bk__st_check(b, lmq_store_qmsg_del(st, s->id, s->id_len, e->seq), "delete queue entry");
}

/* ------------------------------------------------------------------ */
/* delivery */

static bool bk__pkid_used(const struct bk_session *s, uint16_t id)
{
    for (const struct bk_entry *e = s->inf_head; e; e = e->next)
        if (e->pkid == id)
            return true;
    return false;
}

/* Packet ids are handed out in sequence and the inflight list is in send
 * order, so every id in use lies in the cyclic range from the head's id
 * to the tail's: an id outside it is free without a scan. Entries loaded
 * from the store may not be in that order: then (pkid_scan) we scan until
 * the list has been empty once. */
static bool bk__pkid_maybe_used(const struct bk_session *s, uint16_t id)
{
    if (!s->inf_head)
        return false;
    if (s->pkid_scan)
        return true;
    uint16_t h = s->inf_head->pkid, t = s->inf_tail->pkid;
    return (uint16_t)(id - h) <= (uint16_t)(t - h);
}

static uint16_t bk__next_pkid(struct bk_session *s)
{
    if (!s->inf_head)
        s->pkid_scan = false;
    for (;;) {
        uint16_t id = s->next_pkid++;
        if (s->next_pkid == 0)
            s->next_pkid = 1;
        if (id != 0 && (!bk__pkid_maybe_used(s, id) || !bk__pkid_used(s, id)))
            return id;
    }
}

/* The congestion marks of a session's queue. The high mark is half the
 * queue limit, and no more than one inflight window: a deeper queue adds
 * latency, not throughput, when its publishers can be slowed down. */
static uint32_t bk__high_mark(const struct lmq_config *cfg)
{
    uint32_t h = cfg->max_queued_messages ? (cfg->max_queued_messages + 1) / 2 : UINT32_MAX;
    return h < cfg->max_inflight_messages ? h : cfg->max_inflight_messages;
}

static bool bk__over_high(const struct lmq_broker *b, const struct bk_session *s)
{
    const struct lmq_config *cfg = b->cfg;
    return s->n_queued >= bk__high_mark(cfg) ||
           (cfg->max_queued_bytes && s->q_bytes >= cfg->max_queued_bytes / 2);
}

static bool bk__under_low(const struct lmq_broker *b, const struct bk_session *s)
{
    const struct lmq_config *cfg = b->cfg;
    return s->n_queued <= bk__high_mark(cfg) / 2 &&
           (!cfg->max_queued_bytes || s->q_bytes <= cfg->max_queued_bytes / 4);
}

static void bk__decongest(struct lmq_broker *b, struct bk_session *s)
{
    if (s->congested) {
        s->congested = false;
        b->n_congested--;
        b->resume_pending = true;
    }
}

static void bk__inflight_append(struct bk_session *s, struct bk_entry *e)
{
    e->next = NULL;
    if (s->inf_tail)
        s->inf_tail->next = e;
    else
        s->inf_head = e;
    s->inf_tail = e;
    s->n_inflight++;
}

/* Sends E (QUEUED) now: assigns a packet id, moves it inflight, persists
 * the new state for persistent sessions. */
static void bk__send_entry(struct lmq_broker *b, struct bk_session *s, struct bk_entry *e)
{
    e->pkid = bk__next_pkid(s);
    e->state = BK_AWAIT_ACK;
    bk__inflight_append(s, e);
    if (s->persistent)
        bk__entry_store(b, s, e);
    bk__send_publish(s->client, e->msg, e->qos, e->pkid, false, e->retain);
}

/* The session's outbound inflight window: max_inflight_messages, or the
 * client's MQTT 5 Receive Maximum if smaller. */
static uint32_t bk__window(const struct lmq_broker *b, const struct bk_session *s)
{
    uint32_t w = b->cfg->max_inflight_messages;
    return s->recv_max && s->recv_max < w ? s->recv_max : w;
}

/* Counts a message dropped for a client's Maximum Packet Size. */
static void bk__drop_too_big(struct lmq_broker *b, struct bk_session *s, const struct lmq_msg *m)
{
    if (b->st.dropped_too_large++ % 1000 == 0)
        LMQ_WARN("client %s: message on %s exceeds its maximum packet size %" PRIu32
                 "; dropped (%" PRIu64 " in all)",
                 s->id, m->topic, s->max_out, b->st.dropped_too_large);
}

/* Moves queued messages into the inflight window while it has room;
 * expired messages and those too large for the client are dropped. */
static void bk__pump(struct lmq_broker *b, struct bk_session *s)
{
    uint64_t now = 0;
    while (s->client && s->client->state == BK_C_CONNECTED && s->q_head &&
           s->n_inflight < bk__window(b, s)) {
        struct bk_entry *e = s->q_head;
        s->q_head = e->next;
        if (!s->q_head)
            s->q_tail = NULL;
        s->n_queued--;
        s->q_bytes -= lmq_msg_size(e->msg);
        if (e->msg->expiry_at && !now)
            now = bk__unix();
        bool expired = bk__msg_expired(e->msg, now);
        if (expired || bk__too_big(s, e->msg, e->qos)) {
            if (!expired)
                bk__drop_too_big(b, s, e->msg);
            if (s->persistent)
                bk__entry_unstore(b, s, e);
            bk__entry_free(e);
            continue;
        }
        bk__send_entry(b, s, e);
    }
    if (s->congested && bk__under_low(b, s))
        bk__decongest(b, s);
}

/* Delivers M to session S at QoS (already min of message and grant) with
 * the RETAIN flag RETAIN. */
static void bk__deliver(struct lmq_broker *b, struct bk_session *s, struct lmq_msg *m, uint8_t qos,
                        bool retain)
{
    struct lmq_client *c = s->client;
    bool online = c && c->state == BK_C_CONNECTED;
    if (m->expiry_at && bk__msg_expired(m, bk__unix()))
        return;
    if (!bk__acl_read_ok(b, s, m))
        return;
    if (online && bk__too_big(s, m, qos)) {
        bk__drop_too_big(b, s, m);
        return;
    }
    if (qos == 0) {
        if (!online)
            return; /* QoS 0 is not queued for offline sessions */
        if (c->out.bytes > BK_SLOW_CONSUMER_BYTES) {
            if (b->st.dropped_qos0++ % 10000 == 0)
                LMQ_WARN("client %s: slow consumer, dropping QoS 0 messages (%" PRIu64
                         " dropped in all)",
                         bk__name(c), b->st.dropped_qos0);
            return;
        }
        bk__send_publish(c, m, 0, 0, false, retain);
        return;
    }
    if (online && !s->q_head && s->n_inflight < bk__window(b, s)) {
        struct bk_entry *e = calloc(1, sizeof *e);
        if (!e)
            goto drop;
        e->msg = lmq_msg_ref(m);
        e->retain = retain;
        e->grp = b->cur_grp;
        e->qos = qos;
        e->seq = s->next_seq++;
        bk__send_entry(b, s, e);
        return;
    }
    size_t sz = lmq_msg_size(m);
    if ((b->cfg->max_queued_messages && s->n_queued >= b->cfg->max_queued_messages) ||
        (b->cfg->max_queued_bytes && s->q_bytes + sz > b->cfg->max_queued_bytes) ||
        b->cfg->max_queued_messages == 0)
        goto drop;
    struct bk_entry *e = calloc(1, sizeof *e);
    if (!e)
        goto drop;
    e->msg = lmq_msg_ref(m);
    e->retain = retain;
    e->grp = b->cur_grp;
    e->qos = qos;
    e->seq = s->next_seq++;
    e->state = BK_QUEUED;
    if (s->q_tail)
        s->q_tail->next = e;
    else
        s->q_head = e;
    s->q_tail = e;
    s->n_queued++;
    s->q_bytes += sz;
    if (s->persistent)
        bk__entry_store(b, s, e);
    if (online && !s->congested && bk__over_high(b, s)) {
        s->congested = true;
        s->last_progress = (uint32_t)b->now;
        b->n_congested++;
    }
    /* A subscriber that acknowledges nothing for BK_STALL_S seconds no
     * longer slows its publishers down: its queue overflows and drops. */
    if (s->congested && (uint32_t)b->now - s->last_progress < BK_STALL_S)
        b->hit_congested = true;
    return;
drop:
    s->dropped++;
    b->st.dropped_queue_full++;
    if (s->dropped == 1 || s->dropped % 1000 == 0)
        LMQ_WARN("session %s: queue full (%u messages, %" PRIu64
                 " bytes), dropping QoS %u message on %s (%" PRIu32 " dropped)",
                 s->id, s->n_queued, s->q_bytes, qos, m->topic, s->dropped);
}

/* Delivers M to one member of shared group G, round-robin: the next online
 * member, else the next member with a persistent session; never EXCLUDE. */
static void bk__group_deliver(struct lmq_broker *b, struct bk_group *g, struct lmq_msg *m,
                              const struct bk_session *exclude)
{
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t k = 0; k < g->n; k++) {
            uint32_t i = (g->rr + k) % g->n;
            struct bk_session *s = g->m[i].s;
            bool online = s->client && s->client->state == BK_C_CONNECTED;
            if (s == exclude || (pass == 0 ? !online : !s->persistent))
                continue;
            g->rr = i + 1;
            uint8_t qos = g->m[i].qos < m->qos ? g->m[i].qos : m->qos;
            b->cur_grp = g;
            bk__deliver(b, s, m, qos, false);
            b->cur_grp = NULL;
            return;
        }
    }
}

/* Routes M (published by session FROM, NULL for the broker's own, with
 * RETAIN set when it was published retained) to every matching
 * subscription, once per session at the highest granted QoS. The options
 * of a session's overlapping subscriptions are merged (OR): one No Local
 * or Retain As Published subscription decides for all of them. */
static void bk__route(struct lmq_broker *b, struct lmq_msg *m, const struct bk_session *from,
                      bool retain)
{
    if (lmq_tree_match(b->tree, m->topic, m->topic_len, &b->matches) < 0) {
        LMQ_ERROR("out of memory routing a message on %s", m->topic);
        return;
    }
    for (size_t i = 0; i < b->matches.n; i++) {
        struct lmq_match *mt = &b->matches.v[i];
        if ((mt->opts & BK_OPT_NO_LOCAL) && mt->owner == from)
            continue;
        uint8_t qos = mt->qos < m->qos ? mt->qos : m->qos;
        bk__deliver(b, mt->owner, m, qos, retain && (mt->opts & BK_OPT_RAP));
    }
    if (!b->groups)
        return;
    if (lmq_tree_match(b->shared, m->topic, m->topic_len, &b->matches) < 0) {
        LMQ_ERROR("out of memory routing a message on %s", m->topic);
        return;
    }
    for (size_t i = 0; i < b->matches.n; i++)
        bk__group_deliver(b, b->matches.v[i].owner, m, NULL);
}

/* Sets or deletes the retained message of M's topic (memory and store). */
static void bk__retain(struct lmq_broker *b, const char *topic, size_t tlen, const void *payload,
                       size_t plen, const void *props, size_t props_len, uint8_t qos,
                       uint64_t expiry_at)
{
    if (plen == 0) {
        int delta;
        if (lmq_tree_retained(b->tree, topic, tlen)) {
            lmq_tree_retain(b->tree, topic, tlen, NULL, &delta);
            struct lmq_store *st = bk__st(b);
            if (st)
                bk__st_check(b, lmq_store_retained_del(st, topic, tlen), "delete retained");
        }
        return;
    }
    if (!lmq_tree_retained(b->tree, topic, tlen) &&
        lmq_tree_retained_count(b->tree) >= b->cfg->max_retained_messages) {
        LMQ_WARN("max_retained_messages (%u) reached: message on %.*s not retained",
                 b->cfg->max_retained_messages, (int)tlen, topic);
        return;
    }
    struct lmq_msg *r = lmq_msg_new(topic, tlen, payload, plen, props, props_len, qos, true);
    if (!r) {
        LMQ_ERROR("out of memory retaining a message on %.*s", (int)tlen, topic);
        return;
    }
    r->expiry_at = expiry_at;
    int delta;
    if (lmq_tree_retain(b->tree, topic, tlen, r, &delta) < 0)
        LMQ_ERROR("out of memory retaining a message on %.*s", (int)tlen, topic);
    lmq_msg_unref(r);
    /* $SYS topics are the broker's own status, republished every
     * sys_interval: not worth a disk write. */
    /* Nor is $ledger/checkpoint: it is set from the ledger at every start. */
    bool own = (tlen >= 5 && memcmp(topic, "$SYS/", 5) == 0) ||
               (tlen >= 8 && memcmp(topic, LMQ_LEDGER_TOPIC_PREFIX, 8) == 0);
    struct lmq_store *st = own ? NULL : bk__st(b);
    if (st) {
        struct lmq_store_message sm = {
            .topic = topic,
            .topic_len = tlen,
            .payload = payload,
            .payload_len = plen,
            .props = props,
            .props_len = props_len,
            .qos = qos,
            .retain = true,
            .expiry_at = expiry_at,
        };
        bk__st_check(b, lmq_store_retained_put(st, &sm), "put retained");
    }
}

/* A message published (by session FROM, or as a will or by the broker
 * with FROM NULL). PROPS are MQTT 5 properties to forward (without those
 * in BK_PROPS_STRIP); EXPIRY_AT is its message expiry (unix s, 0 = none). */
static void bk__publish(struct lmq_broker *b, const struct bk_session *from, const char *topic,
                        size_t tlen, const void *payload, size_t plen, const void *props,
                        size_t props_len, uint8_t qos, bool retain, uint64_t expiry_at)
{
    b->st.msgs_in++;
    if (retain)
        bk__retain(b, topic, tlen, payload, plen, props, props_len, qos, expiry_at);
    struct lmq_msg *m = lmq_msg_new(topic, tlen, payload, plen, props, props_len, qos, false);
    if (!m) {
        LMQ_ERROR("out of memory routing a message on %.*s", (int)tlen, topic);
        return;
    }
    m->expiry_at = expiry_at;
    bk__route(b, m, from, retain);
    lmq_msg_unref(m);
}

/* ------------------------------------------------------------------ */
/* connection lifecycle */

/* Detaches C from its session: a clean session ends, a persistent one goes
 * offline. Publishes the will if SEND_WILL. */
static void bk__disconnect(struct lmq_client *c, bool send_will)
{
    struct lmq_broker *b = c->b;
    if (c->lost)
        return;
    c->lost = true;
    struct lmq_msg *will = c->will;
    c->will = NULL;
    struct bk_client_x *x = c->x;
    if (x) {
        free(x->pending);
        x->pending = NULL;
        if (x->auth) {
            x->auth->done(x->auth_state);
            x->auth_state = NULL;
        }
        if (x->alias_in) {
            for (unsigned i = 0; i <= c->b->cfg->max_topic_alias; i++)
                free(x->alias_in[i]);
            free(x->alias_in);
            x->alias_in = NULL;
        }
        if (x->alias_out) {
            for (unsigned i = 0; i <= x->alias_out_max; i++)
                free(x->alias_out[i]);
            free(x->alias_out);
            x->alias_out = NULL;
        }
    }
    uint32_t will_delay = x ? x->will_delay : 0;
    uint32_t will_expiry = x ? x->will_expiry : 0;
    if (!send_will || b->shutting_down) {
        lmq_msg_unref(will);
        will = NULL;
    }
    struct bk_session *s = c->sess;
    if (s) {
        c->sess = NULL;
        s->client = NULL;
        bk__decongest(b, s);
        if (s->persistent) {
            s->disconnected_at = (uint32_t)bk__unix();
            /* MQTT 5 will delay: the will waits with the session, and is
             * dropped if the session resumes first. */
            /* (Out of memory for it: the will goes now.) */
            struct bk_dwill *dw = will && will_delay ? malloc(sizeof *dw) : NULL;
            if (dw) {
                bk__sess_will_fire(b, s, false);
                dw->msg = will;
                dw->expiry = will_expiry;
                uint32_t d = will_delay < s->expiry ? will_delay : s->expiry;
                dw->at = s->disconnected_at + d;
                s->will = dw;
                b->n_wills++;
                will = NULL;
            }
            if (!b->shutting_down)
                bk__sess_store_put(b, s);
        } else {
            bk__sess_destroy(b, s);
        }
    }
    if (will)
        bk__publish_will(b, will, will_expiry);
}

/* Closes C after a protocol error or on the broker's decision. The will is
 * sent (any close that is not a DISCONNECT from the client). */
static void bk__close(struct lmq_client *c)
{
    if (c->state == BK_C_CLOSING)
        return;
    bk__disconnect(c, true);
    c->state = BK_C_CLOSING;
    c->want_close = true;
    bk__dirty(c);
}

/* Closes C like bk__close, telling an MQTT 5 client REASON first. */
static void bk__close_rc(struct lmq_client *c, uint8_t reason)
{
    if (c->state == BK_C_CLOSING)
        return;
    bk__send_disconnect(c, reason);
    bk__disconnect(c, true);
    c->state = BK_C_CLOSING;
    c->want_close = true;
    bk__dirty(c);
}

/* Closes C for a defect: ERR (an enum mqtt_err, or 0) names it in the log;
 * an MQTT 5 client gets DISCONNECT with REASON. */
static void bk__fail(struct lmq_client *c, uint8_t reason, const char *what, int err)
{
    LMQ_WARN("client %s (%s): %s%s%s; closing connection", bk__name(c), bk__peer(c), what,
             err ? ": " : "", err ? mqtt_err_str(err) : "");
    bk__close_rc(c, reason);
}

static void bk__protocol_error(struct lmq_client *c, const char *what, int err)
{
    bk__fail(c, err ? mqtt_err_reason(err) : MQTT_RC_PROTOCOL_ERROR, what, err);
}

/* ------------------------------------------------------------------ */
/* packet handlers */

/* The Receive Maximum the broker announces: max_inflight_messages. */
static uint16_t bk__recv_max(const struct lmq_broker *b)
{
    uint32_t rm = b->cfg->max_inflight_messages;
    return (uint16_t)(rm && rm < UINT16_MAX ? rm : UINT16_MAX);
}

/* Copies the properties of a validated block RAW minus BK_PROPS_STRIP into
 * a new buffer *OUT (NULL when there are none; free() it). Returns its
 * length, or -1 when out of memory. */
static int bk__props_forward(struct mqtt_bin raw, uint8_t **out)
{
    *out = NULL;
    if (!raw.ptr || !raw.len)
        return 0;
    int n = mqtt_props_copy(NULL, 0, raw, BK_PROPS_STRIP);
    if (n <= 0)
        return n < 0 ? -1 : 0;
    *out = malloc((size_t)n);
    if (!*out)
        return -1;
    return mqtt_props_copy(*out, (size_t)n, raw, BK_PROPS_STRIP) == n ? n : -1;
}

/* Refuses a CONNECT: CONNACK with V4 (3.1.1 return code) or V5 (reason
 * code), then close. Returns -1. */
static int bk__refuse(struct lmq_client *c, uint8_t v4, uint8_t v5)
{
    bk__send_connack(c, c->proto, false, c->proto == MQTT_V5 ? v5 : v4, NULL);
    bk__close(c);
    return -1;
}

/* AUTH with REASON (0x18 continue authentication, 0x00 re-authenticated)
 * with C's method and DATA/N. */
static void bk__send_auth(struct lmq_client *c, uint8_t reason, const uint8_t *data, size_t n)
{
    struct mqtt_auth a;
    memset(&a, 0, sizeof a);
    a.reason = reason;
    a.props.present = MQTT_PROP_BIT(MQTT_PROP_AUTH_METHOD);
    a.props.auth_method.ptr = c->x->auth->name;
    a.props.auth_method.len = strlen(c->x->auth->name);
    if (n) {
        a.props.present |= MQTT_PROP_BIT(MQTT_PROP_AUTH_DATA);
        a.props.auth_data.ptr = data;
        a.props.auth_data.len = n;
    }
    uint8_t buf[LMQ_AUTH_OUT_MAX + 128];
    int k = mqtt_encode_auth(buf, sizeof buf, &a);
    if (k > 0)
        bk__out(c, buf, (size_t)k);
}

static int bk__parse_will(struct lmq_client *c, const struct mqtt_connect *ct)
{
    struct lmq_broker *b = c->b;
    if (!ct->will)
        return 0;
    int rc = mqtt_topic_name_check(ct->will_topic.ptr, ct->will_topic.len,
                                   b->cfg->max_topic_length, b->cfg->max_topic_levels);
    if (rc < 0) {
        LMQ_WARN("client %s: invalid will topic: %s; refused", bk__peer(c), mqtt_err_str(rc));
        return bk__refuse(c, MQTT_CONNACK_ID_REJECTED, MQTT_RC_TOPIC_NAME_INVALID);
    }
    uint8_t *props = NULL;
    int plen = 0;
    if (c->proto == MQTT_V5) {
        if (mqtt_payload_check(&ct->will_props, ct->will_payload) < 0) {
            LMQ_WARN("client %s: will payload is not UTF-8 as its format says; refused",
                     bk__peer(c));
            return bk__refuse(c, MQTT_CONNACK_ID_REJECTED, MQTT_RC_PAYLOAD_FORMAT_INVALID);
        }
        plen = bk__props_forward(ct->will_props.raw, &props);
        uint32_t wd = mqtt_props_has(&ct->will_props, MQTT_PROP_WILL_DELAY)
                          ? ct->will_props.will_delay
                          : 0;
        uint32_t we = mqtt_props_has(&ct->will_props, MQTT_PROP_MESSAGE_EXPIRY)
                          ? ct->will_props.message_expiry
                          : 0;
        if (wd || we) {
            if (!bk__x(c)) {
                free(props);
                LMQ_ERROR("client %s: out of memory storing the will", bk__peer(c));
                return bk__refuse(c, MQTT_CONNACK_SERVER_UNAVAILABLE,
                                  MQTT_RC_SERVER_UNAVAILABLE);
            }
            if (wd)
                c->x->will_delay = wd;
            if (we)
                c->x->will_expiry = we;
        }
    }
    if (plen >= 0)
        c->will = lmq_msg_new(ct->will_topic.ptr, ct->will_topic.len, ct->will_payload.ptr,
                              ct->will_payload.len, props, (size_t)plen, ct->will_qos,
                              ct->will_retain);
    free(props);
    if (!c->will) {
        LMQ_ERROR("client %s: out of memory storing the will", bk__peer(c));
        return bk__refuse(c, MQTT_CONNACK_SERVER_UNAVAILABLE, MQTT_RC_SERVER_UNAVAILABLE);
    }
    return 0;
}

/* Resends the inflight messages of a resumed session (DUP=1), or PUBREL
 * for those waiting for PUBCOMP, then fills the window from the queue. */
static void bk__resume(struct lmq_broker *b, struct bk_session *s)
{
    struct lmq_client *c = s->client;
    for (struct bk_entry *e = s->inf_head; e; e = e->next) {
        if (e->state == BK_AWAIT_COMP) {
            uint8_t buf[8];
            int n = mqtt_encode_ack_simple(buf, sizeof buf, c->proto, MQTT_PUBREL, e->pkid, 0);
            if (n > 0)
                bk__out(c, buf, (size_t)n);
        } else {
            if (!e->dup && s->persistent) {
                e->dup = true;
                bk__entry_store(b, s, e);
            }
            e->dup = true;
            bk__send_publish(c, e->msg, e->qos, e->pkid, true, e->retain);
        }
    }
    bk__pump(b, s);
}

/* ------------------------------------------------------------------ */
/* authentication and access control (docs/BROKER.md "Authentication",
 * "Access control").
 *
 * A CONNECT whose credentials take real work to check (Ed25519, a
 * password hash, a registry read) is held: the client goes to
 * BK_C_CHECK with its input paused, the check runs as a job on the
 * worker pool, and the job's DONE (loop thread) either refuses the client
 * or handles the kept CONNECT again, now authenticated. A client that
 * goes away meanwhile leaves its job orphaned (job->c = NULL); DONE then
 * only frees it. */

/* The loaded password file, shared with the jobs verifying against it:
 * reference counted on the loop thread, so a reload never frees it under
 * a running job. */
struct bk_pwref {
    struct pwfile *pw;
    uint32_t refs;
};

enum bk_aj_kind {
    BK_AJ_TOKEN = 0,
    BK_AJ_PASSWORD = 1,
    BK_AJ_CERT = 2,
    BK_AJ_ENHANCED = 3, /* a method's verify at CONNECT */
    BK_AJ_REAUTH = 4,   /* a method's verify during MQTT 5 re-authentication */
};

static int bk__handle_connect(struct lmq_client *c, const uint8_t *pkt, size_t len);

static const char *const bk__aj_method[] = {"token", "password", "certificate", "enhanced",
                                             "re-authentication"};

#define BK_PRINCIPAL_MAX (PWFILE_USER_MAX + 1)

struct bk_authjob {
    struct lmq_work w;              /* first: the pool hands back &w */
    struct lmq_broker *b;
    struct lmq_client *c;           /* NULL once the client is gone */
    uint8_t kind;                   /* enum bk_aj_kind */
    bool inline_run;                /* no pool: ran inside bk__handle_connect */
    uint8_t *connect;               /* the held CONNECT packet */
    size_t connect_len;
    uint8_t *secret;                /* token or password (wiped before free) */
    size_t secret_len;
    char *user;                     /* password: the username */
    struct bk_pwref *pw;            /* password: the file it is checked against */
    const struct lmq_auth_method *am; /* enhanced: the method and its state */
    void *am_state;
    struct authn_token_opts topts;
    uint8_t pk[32];                 /* certificate: the client's key */
    /* Results (worker thread). */
    int rc;                         /* 0 or an AUTHN_ERR_* / CWT / COSE / PWFILE error */
    const char *why;
    char principal[BK_PRINCIPAL_MAX];
    uint8_t replay_key[AUTHN_REPLAY_KEY_LEN];
    int64_t exp;
};

const char *bk_client_identity(const struct lmq_client *c, enum bk_principal_kind *kind)
{
    const char *p = c->x ? c->x->principal : NULL;
    if (kind)
        *kind = p ? (enum bk_principal_kind)c->pkind : BK_PRINCIPAL_ANONYMOUS;
    return p;
}

static void bk__pw_unref(struct bk_pwref *r)
{
    if (r && --r->refs == 0) {
        pwfile_free(r->pw);
        free(r);
    }
}

/* One log line per refused CONNECT (client, peer, method, reason; never
 * the secret), counted for $SYS; then CONNACK V4 / V5 and close. */
static int bk__auth_refuse(struct lmq_client *c, const char *cid, size_t cidlen,
                           const char *method, const char *why, uint8_t v4, uint8_t v5)
{
    c->b->auth_refused++;
    LMQ_NOTICE("client %.*s from %s: authentication refused (method %s): %s; CONNACK 0x%02x",
               (int)(cidlen > 128 ? 128 : cidlen), cid ? cid : "", bk__peer(c), method, why,
               c->proto == MQTT_V5 ? v5 : v4);
    return bk__refuse(c, v4, v5);
}

/* ACCESS to TOPIC (NUL-terminated) for C under the ACL in force. */
static bool bk__acl_ok(const struct lmq_client *c, const char *topic, int access)
{
    const struct acl *acl = c->b->acl;
    if (!acl)
        return true;
    enum bk_principal_kind k;
    const char *who = bk_client_identity(c, &k);
    return acl_check(acl, k == BK_PRINCIPAL_USER ? who : NULL, c->sess ? c->sess->id : NULL,
                     k == BK_PRINCIPAL_DEVICE ? who : NULL, topic, access) == 0;
}

/* The will topic under the ACL (write), checked at CONNECT as Mosquitto
 * does: a will the client could not publish itself refuses the
 * connection. ID[0:IDLEN] is the client id (no session yet). */
static bool bk__acl_will_ok(struct lmq_client *c, const char *id, size_t idlen,
                            const struct mqtt_connect *ct)
{
    const struct acl *acl = c->b->acl;
    if (!acl || !ct->will)
        return true;
    char *cid = strndup(id, idlen);
    char *t = strndup(ct->will_topic.ptr, ct->will_topic.len);
    bool ok = false;
    if (cid && t) {
        enum bk_principal_kind k;
        const char *who = bk_client_identity(c, &k);
        ok = acl_check(acl, k == BK_PRINCIPAL_USER ? who : NULL, cid,
                       k == BK_PRINCIPAL_DEVICE ? who : NULL, t, ACL_WRITE) == 0;
    }
    if (!ok) {
        c->b->acl_denied++;
        LMQ_NOTICE("client %.*s from %s: will topic '%.*s' denied by the ACL; CONNACK 0x%02x",
                   (int)(idlen > 128 ? 128 : idlen), id, bk__peer(c),
                   (int)(ct->will_topic.len > 256 ? 256 : ct->will_topic.len), ct->will_topic.ptr,
                   c->proto == MQTT_V5 ? MQTT_RC_NOT_AUTHORIZED : MQTT_CONNACK_NOT_AUTHORIZED);
    }
    free(cid);
    free(t);
    return ok;
}

int bk_acl_check_publish(struct lmq_client *c, const char *topic, size_t len)
{
    struct lmq_broker *b = c->b;
    if (!b->acl)
        return 0;
    char small[256];
    char *t = len < sizeof small ? small : malloc(len + 1);
    if (!t)
        return -1;
    memcpy(t, topic, len);
    t[len] = '\0';
    bool ok = bk__acl_ok(c, t, ACL_WRITE);
    if (t != small)
        free(t);
    if (ok)
        return 0;
    b->acl_denied++;
    enum bk_principal_kind k;
    const char *who = bk_client_identity(c, &k);
    LMQ_NOTICE("client %s (%s): PUBLISH to '%.*s' denied by the ACL", bk__name(c),
               who ? who : "anonymous", (int)(len > 256 ? 256 : len), topic);
    return -1;
}

/* SUBSCRIBE to FILTER[0:LEN] ("$share/group/" prefix stripped here). */
static bool bk__acl_sub_ok(struct lmq_client *c, const char *filter, size_t len)
{
    struct lmq_broker *b = c->b;
    if (!b->acl)
        return true;
    if (len >= 7 && memcmp(filter, "$share/", 7) == 0) {
        const char *g = memchr(filter + 7, '/', len - 7);
        if (g) {
            len -= (size_t)(g + 1 - filter);
            filter = g + 1;
        }
    }
    char small[256];
    char *t = len < sizeof small ? small : malloc(len + 1);
    if (!t)
        return false;
    memcpy(t, filter, len);
    t[len] = '\0';
    bool ok = bk__acl_ok(c, t, ACL_SUBSCRIBE);
    if (t != small)
        free(t);
    if (!ok) {
        b->acl_denied++;
        enum bk_principal_kind k;
        const char *who = bk_client_identity(c, &k);
        LMQ_NOTICE("client %s (%s): SUBSCRIBE to '%.*s' denied by the ACL", bk__name(c),
                   who ? who : "anonymous", (int)(len > 256 ? 256 : len), filter);
    }
    return ok;
}

/* Read access for delivering M to S's online client (subscriptions were
 * checked when made; this also catches rules changed by a reload and
 * deny rules that cover part of a filter). Offline sessions are checked
 * when the message was matched against their subscription only. */
static bool bk__acl_read_ok(const struct lmq_broker *b, const struct bk_session *s,
                            const struct lmq_msg *m)
{
    if (!b->acl || !s->client)
        return true;
    return bk__acl_ok(s->client, m->topic, ACL_READ);
}

static void bk__aj_work(struct lmq_work *w)
{
    struct bk_authjob *j = (struct bk_authjob *)w;
    struct lmq_broker *b = j->b;
    char id[DEVICE_ID_LEN + 1];
    j->why = NULL;
    switch (j->kind) {
    case BK_AJ_TOKEN:
        j->rc = authn_token(b->svc.registry, j->secret, j->secret_len, &j->topts, id,
                            j->replay_key, &j->exp);
        if (j->rc == 0)
            memcpy(j->principal, id, sizeof id);
        break;
    case BK_AJ_PASSWORD:
        j->rc = pwfile_verify(j->pw->pw, j->user, (const char *)j->secret, j->secret_len);
        if (j->rc == 0)
            snprintf(j->principal, sizeof j->principal, "%s", j->user);
        else
            j->why = j->rc == PWFILE_ERR_NO_USER ? "unknown user" : "wrong password";
        break;
    case BK_AJ_CERT:
        j->rc = authn_device_key(b->svc.registry, j->pk, id);
        if (j->rc == 0)
            memcpy(j->principal, id, sizeof id);
        break;
    case BK_AJ_ENHANCED:
    case BK_AJ_REAUTH: {
        struct lmq_auth_env env = {b->svc.registry, b->cfg->ledger_origin};
        int r = j->am->verify(j->am_state, &env, j->principal, sizeof j->principal, &j->why);
        j->rc = r == LMQ_AUTH_SUCCESS ? 0 : -1;
        break;
    }
    }
    if (j->rc != 0 && !j->why)
        j->why = authn_strerror(j->rc);
}

static void bk__aj_free(struct bk_authjob *j)
{
    if (j->secret) {
        sodium_memzero(j->secret, j->secret_len);
        free(j->secret);
    }
    free(j->user);
    free(j->connect);
    bk__pw_unref(j->pw);
    free(j);
}

/* The check's verdict on the loop thread: refuse, or handle the CONNECT
 * again as authenticated. Returns what bk__handle_connect returns (or -1
 * when refused). */
static int bk__aj_finish(struct bk_authjob *j)
{
    struct lmq_broker *b = j->b;
    struct lmq_client *c = j->c;
    const char *method = j->kind == BK_AJ_ENHANCED ? j->am->name : bk__aj_method[j->kind];
    struct mqtt_connect ct;
    /* The client id, for the log line (the packet decoded before). */
    const char *cid = "";
    size_t cidlen = 0;
    if (mqtt_decode_connect(j->connect, j->connect_len, &ct) == 0) {
        cid = ct.client_id.ptr;
        cidlen = ct.client_id.len;
    }
    c->x->job = NULL;
    if (j->kind == BK_AJ_ENHANCED) {
        c->x->auth_state = j->am_state;
        j->am_state = NULL;
    }
    enum bk_principal_kind kind = j->kind == BK_AJ_PASSWORD ? BK_PRINCIPAL_USER
                                                            : BK_PRINCIPAL_DEVICE;
    if (j->rc == 0 && j->kind == BK_AJ_TOKEN && j->user && strcmp(j->user, j->principal) != 0)
        return bk__auth_refuse(c, cid, cidlen, method,
                               "user name is not the token's device id",
                               MQTT_CONNACK_BAD_USER_OR_PASSWORD, MQTT_RC_BAD_USER_OR_PASSWORD);
    if (j->rc == 0 && j->kind == BK_AJ_TOKEN) {
        /* Replay: on the loop thread, so two connections racing with one
         * token cannot both pass. Remembered until exp + skew (when the
         * token stops being accepted anyway). */
        int r = authn_replay_add(b->replay, j->replay_key, j->exp + j->topts.skew, j->topts.now);
        if (r == AUTHN_ERR_REPLAY_FULL || r == AUTHN_ERR_NOMEM)
            return bk__auth_refuse(c, cid, cidlen, method, authn_strerror(r),
                                   MQTT_CONNACK_SERVER_UNAVAILABLE, MQTT_RC_SERVER_BUSY);
        if (r != 0)
            return bk__auth_refuse(c, cid, cidlen, method, authn_strerror(r),
                                   MQTT_CONNACK_BAD_USER_OR_PASSWORD,
                                   MQTT_RC_BAD_USER_OR_PASSWORD);
    }
    if (j->rc != 0) {
        uint8_t v4 = MQTT_CONNACK_BAD_USER_OR_PASSWORD, v5 = MQTT_RC_BAD_USER_OR_PASSWORD;
        if (j->rc == AUTHN_ERR_NO_REGISTRY || j->rc == AUTHN_ERR_REGISTRY ||
            j->rc == AUTHN_ERR_NOMEM) {
            v4 = MQTT_CONNACK_SERVER_UNAVAILABLE;
            v5 = MQTT_RC_SERVER_UNAVAILABLE;
        } else if (j->kind == BK_AJ_CERT && j->rc == AUTHN_ERR_UNKNOWN_DEVICE &&
                   c->anonymous_ok) {
            /* A certificate that is not a device's: an anonymous client
             * where anonymous clients are allowed. */
            kind = BK_PRINCIPAL_ANONYMOUS;
        } else if (j->rc == AUTHN_ERR_REVOKED || j->kind == BK_AJ_CERT ||
                   j->kind == BK_AJ_ENHANCED) {
            v4 = MQTT_CONNACK_NOT_AUTHORIZED;
            v5 = MQTT_RC_NOT_AUTHORIZED;
        }
        if (kind != BK_PRINCIPAL_ANONYMOUS)
            return bk__auth_refuse(c, cid, cidlen, method, j->why, v4, v5);
    }
    if (kind != BK_PRINCIPAL_ANONYMOUS) {
        char *p = strdup(j->principal);
        if (!p)
            return bk__auth_refuse(c, cid, cidlen, method, "out of memory",
                                   MQTT_CONNACK_SERVER_UNAVAILABLE, MQTT_RC_SERVER_UNAVAILABLE);
        free(c->x->principal);
        c->x->principal = p;
        c->pkind = (uint8_t)kind;
        LMQ_INFO("client %.*s from %s: authenticated as %s %s (%s)", (int)cidlen, cid, bk__peer(c),
                 kind == BK_PRINCIPAL_USER ? "user" : "device", p, method);
    }
    c->authed = true;
    c->state = BK_C_NEW;
    int rc = bk__handle_connect(c, j->connect, j->connect_len);
    if (rc == 0 && !j->inline_run && c->state == BK_C_CONNECTED && b->tr.resume)
        b->tr.resume(c->tctx);
    return rc;
}

static void bk__aj_done(struct lmq_work *w);

/* The verdict of a re-authentication check (connected client): AUTH 0x00,
 * or DISCONNECT 0x87 when it failed or proved another identity. */
static int bk__reauth_finish(struct bk_authjob *j)
{
    struct lmq_client *c = j->c;
    struct bk_client_x *x = c->x;
    x->job = NULL;
    x->auth_state = j->am_state;
    j->am_state = NULL;
    x->reauth = false;
    const char *why = j->rc != 0 ? j->why : NULL;
    if (!why && (!x->principal || strcmp(x->principal, j->principal) != 0))
        why = "authenticated as another device";
    if (why) {
        c->b->auth_refused++;
        LMQ_NOTICE("client %s from %s: re-authentication refused (method %s): %s; DISCONNECT "
                   "0x87",
                   bk__name(c), bk__peer(c), j->am->name, why);
        bk__close_rc(c, MQTT_RC_NOT_AUTHORIZED);
        return -1;
    }
    LMQ_INFO("client %s re-authenticated as device %s (%s)", bk__name(c), x->principal,
             j->am->name);
    bk__send_auth(c, MQTT_RC_SUCCESS, NULL, 0);
    return 0;
}

/* Re-authentication whose method said LMQ_AUTH_VERIFY: the check runs on
 * the pool while the session carries on. Returns 0, or -1 when the
 * connection is being closed. */
static int bk__reauth_verify(struct lmq_client *c)
{
    struct lmq_broker *b = c->b;
    struct bk_client_x *x = c->x;
    if (x->job) {
        bk__fail(c, MQTT_RC_PROTOCOL_ERROR, "AUTH while the previous one is being checked", 0);
        return -1;
    }
    struct bk_authjob *j = calloc(1, sizeof *j);
    if (!j) {
        bk__fail(c, MQTT_RC_UNSPECIFIED, "out of memory", 0);
        return -1;
    }
    j->b = b;
    j->c = c;
    j->kind = BK_AJ_REAUTH;
    j->am = x->auth;
    j->am_state = x->auth_state;
    x->auth_state = NULL;
    j->w.work = bk__aj_work;
    j->w.done = bk__aj_done;
    x->job = j;
    b->auth_pending++;
    if (b->svc.pool) {
        lmq_workpool_submit(b->svc.pool, &j->w);
        return 0;
    }
    j->inline_run = true;
    bk__aj_work(&j->w);
    b->auth_pending--;
    int rc = bk__reauth_finish(j);
    if (j->am_state)
        j->am->done(j->am_state);
    bk__aj_free(j);
    return rc;
}

static void bk__aj_done(struct lmq_work *w)
{
    struct bk_authjob *j = (struct bk_authjob *)w;
    struct lmq_client *c = j->c;
    j->b->auth_pending--;
    if (c && c->x)
        c->x->job = NULL;
    if (j->kind == BK_AJ_REAUTH) {
        if (c && !c->lost && c->state == BK_C_CONNECTED && c->x)
            bk__reauth_finish(j);
    } else if (c && !c->lost && c->state == BK_C_CHECK) {
        bk__aj_finish(j);
    }
    if (j->am_state)
        j->am->done(j->am_state);
    bk__aj_free(j);
}

/* A job for C holding the CONNECT PKT[0:LEN]; NULL (and a refusal sent)
 * when over max_auth_pending or out of memory. */
static struct bk_authjob *bk__aj_new(struct lmq_client *c, uint8_t kind, const uint8_t *pkt,
                                     size_t len)
{
    struct lmq_broker *b = c->b;
    if (b->auth_pending >= b->cfg->max_auth_pending) {
        struct mqtt_connect ct;
        bool named = pkt && mqtt_decode_connect(pkt, len, &ct) == 0;
        bk__auth_refuse(c, named ? ct.client_id.ptr : "", named ? ct.client_id.len : 0,
                        bk__aj_method[kind], "max_auth_pending credential checks already waiting",
                        MQTT_CONNACK_SERVER_UNAVAILABLE, MQTT_RC_SERVER_BUSY);
        return NULL;
    }
    struct bk_authjob *j = calloc(1, sizeof *j);
    if (j && pkt && (j->connect = malloc(len)) != NULL) {
        memcpy(j->connect, pkt, len);
        j->connect_len = len;
    }
    if (!j || !bk__x(c) || (pkt && !j->connect)) {
        if (j)
            bk__aj_free(j);
        bk__auth_refuse(c, "", 0, bk__aj_method[kind], "out of memory",
                        MQTT_CONNACK_SERVER_UNAVAILABLE, MQTT_RC_SERVER_UNAVAILABLE);
        return NULL;
    }
    j->b = b;
    j->c = c;
    j->kind = kind;
    j->w.work = bk__aj_work;
    j->w.done = bk__aj_done;
    return j;
}

/* Runs J: on the pool (C held in BK_C_CHECK, input paused; returns 0) or,
 * without a pool (unit tests), at once (returns bk__aj_finish's result). */
static int bk__aj_submit(struct bk_authjob *j)
{
    struct lmq_broker *b = j->b;
    struct lmq_client *c = j->c;
    c->state = BK_C_CHECK;
    c->x->job = j;
    b->auth_pending++;
    if (b->svc.pool) {
        if (b->tr.pause)
            b->tr.pause(c->tctx);
        lmq_workpool_submit(b->svc.pool, &j->w);
        return 0;
    }
    j->inline_run = true;
    bk__aj_work(&j->w);
    b->auth_pending--;
    int rc = bk__aj_finish(j);
    if (j->am_state)
        j->am->done(j->am_state);
    bk__aj_free(j);
    return rc;
}

/* A password that is a CBOR-tagged COSE_Sign1 (tag 18, or CWT tag 61):
 * a device token. */
static bool bk__is_token(const struct mqtt_bin *pw)
{
    const uint8_t *p = (const uint8_t *)pw->ptr;
    return pw->len > 2 && (p[0] == 0xD2 || (p[0] == 0xD8 && p[1] == 61));
}

/* Authentication of a plain CONNECT (no enhanced method): picks the
 * method from the credentials and the listener's `auth` list. Returns 0
 * to go on (anonymous, where allowed), 1 when the CONNECT is held for a
 * check, -1 when refused; without a pool the check runs at once and its
 * result is returned (0 connected / -1). */
static int bk__authn_begin(struct lmq_client *c, const struct mqtt_connect *ct,
                           const uint8_t *pkt, size_t len)
{
    struct lmq_broker *b = c->b;
    const char *cid = ct->client_id.ptr;
    size_t cidlen = ct->client_id.len;
    uint8_t m = c->auth_methods;
    bool has_pw = ct->password.ptr != NULL, has_user = ct->username.ptr != NULL;
    struct bk_authjob *j;
    if (has_pw && (m & LMQ_AUTH_M_TOKEN) && bk__is_token(&ct->password)) {
        if (has_user && (ct->username.len != DEVICE_ID_LEN ||
                         !device_id_valid(ct->username.ptr, ct->username.len)))
            return bk__auth_refuse(c, cid, cidlen, "token",
                                   "user name given with a token is not a device id",
                                   MQTT_CONNACK_BAD_USER_OR_PASSWORD,
                                   MQTT_RC_BAD_USER_OR_PASSWORD);
        if (!(j = bk__aj_new(c, BK_AJ_TOKEN, pkt, len)))
            return -1;
        j->secret = malloc(ct->password.len);
        if (!j->secret) {
            bk__aj_free(j);
            return bk__auth_refuse(c, cid, cidlen, "token", "out of memory",
                                   MQTT_CONNACK_SERVER_UNAVAILABLE, MQTT_RC_SERVER_UNAVAILABLE);
        }
        memcpy(j->secret, ct->password.ptr, ct->password.len);
        j->secret_len = ct->password.len;
        if (has_user && !(j->user = strndup(ct->username.ptr, ct->username.len))) {
            bk__aj_free(j);
            return bk__auth_refuse(c, cid, cidlen, "token", "out of memory",
                                   MQTT_CONNACK_SERVER_UNAVAILABLE, MQTT_RC_SERVER_UNAVAILABLE);
        }
        j->topts.audience = b->cfg->ledger_origin;
        j->topts.now = (int64_t)bk__unix();
        j->topts.skew = b->cfg->token_clock_skew;
        j->topts.max_lifetime = b->cfg->token_max_lifetime;
        j->topts.issued_after = (int64_t)b->started_unix;
        int rc = bk__aj_submit(j);
        return b->svc.pool ? 1 : rc;
    }
    if (has_pw || has_user) {
        if (!(m & LMQ_AUTH_M_PASSWORD) || !b->pw) {
            if (c->anonymous_ok) {
                /* Mosquitto without a password file: credentials are
                 * not checked; the client is anonymous (its user name
                 * grants nothing in the ACL). */
                LMQ_DEBUG("client %.*s from %s: user name/password not checked (%s); anonymous",
                          (int)cidlen, cid, bk__peer(c),
                          b->pw ? "password not accepted on this listener" : "no password_file");
                return 0;
            }
            return bk__auth_refuse(c, cid, cidlen, "password",
                                   b->pw ? "password authentication not accepted on this "
                                           "listener"
                                         : "no password_file",
                                   MQTT_CONNACK_BAD_USER_OR_PASSWORD,
                                   MQTT_RC_BAD_USER_OR_PASSWORD);
        }
        if (!has_user || !has_pw || ct->username.len == 0 ||
            ct->username.len > PWFILE_USER_MAX)
            return bk__auth_refuse(c, cid, cidlen, "password",
                                   has_user ? "no password" : "password without a user name",
                                   MQTT_CONNACK_BAD_USER_OR_PASSWORD,
                                   MQTT_RC_BAD_USER_OR_PASSWORD);
        if (!(j = bk__aj_new(c, BK_AJ_PASSWORD, pkt, len)))
            return -1;
        j->user = malloc(ct->username.len + 1);
        j->secret = malloc(ct->password.len ? ct->password.len : 1);
        if (!j->user || !j->secret) {
            bk__aj_free(j);
            return bk__auth_refuse(c, cid, cidlen, "password", "out of memory",
                                   MQTT_CONNACK_SERVER_UNAVAILABLE, MQTT_RC_SERVER_UNAVAILABLE);
        }
        memcpy(j->user, ct->username.ptr, ct->username.len);
        j->user[ct->username.len] = '\0';
        if (ct->password.len)
            memcpy(j->secret, ct->password.ptr, ct->password.len);
        j->secret_len = ct->password.len;
        j->pw = b->pw;
        b->pw->refs++;
        int rc = bk__aj_submit(j);
        return b->svc.pool ? 1 : rc;
    }
    if ((m & LMQ_AUTH_M_CERT) && b->tr.peer_ed25519) {
        uint8_t pk[32];
        int k = b->tr.peer_ed25519(c->tctx, pk);
        if (k == 0) {
            if (!(j = bk__aj_new(c, BK_AJ_CERT, pkt, len)))
                return -1;
            memcpy(j->pk, pk, 32);
            int rc = bk__aj_submit(j);
            return b->svc.pool ? 1 : rc;
        }
        if (k > 0 && !c->anonymous_ok)
            return bk__auth_refuse(c, cid, cidlen, "certificate",
                                   "client certificate key is not Ed25519 (no device key)",
                                   MQTT_CONNACK_NOT_AUTHORIZED, MQTT_RC_NOT_AUTHORIZED);
    }
    if (!c->anonymous_ok)
        return bk__auth_refuse(c, cid, cidlen, "anonymous",
                               "no credentials and allow_anonymous is false",
                               MQTT_CONNACK_NOT_AUTHORIZED, MQTT_RC_NOT_AUTHORIZED);
    return 0;
}

/* An enhanced method said LMQ_AUTH_VERIFY: its verify runs on the pool
 * with the CONNECT PKT[0:LEN] held. Same returns as bk__authn_begin. */
static int bk__authn_enhanced(struct lmq_client *c, const uint8_t *pkt, size_t len)
{
    struct lmq_broker *b = c->b;
    struct bk_client_x *x = c->x;
    struct bk_authjob *j = bk__aj_new(c, BK_AJ_ENHANCED, pkt, len);
    if (!j)
        return -1;
    j->am = x->auth;
    j->am_state = x->auth_state;
    x->auth_state = NULL;
    int rc = bk__aj_submit(j);
    return b->svc.pool ? 1 : rc;
}

/* Loads password_file and acl_file at start. */
static int bk__authn_init(struct lmq_broker *b, char *err, size_t errlen)
{
    const struct lmq_config *cfg = b->cfg;
    b->started_unix = bk__unix();
    b->replay = authn_replay_new(cfg->token_replay_max);
    if (!b->replay) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (cfg->password_file[0]) {
        struct pwfile *pw;
        if (pwfile_load(cfg->password_file, &pw, err, errlen) != 0)
            return -1;
        b->pw = calloc(1, sizeof *b->pw);
        if (!b->pw) {
            pwfile_free(pw);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        b->pw->pw = pw;
        b->pw->refs = 1;
        LMQ_INFO("password file %s: %zu users", cfg->password_file, pwfile_count(pw));
    }
    if (cfg->acl_file[0]) {
        if (acl_load(cfg->acl_file, &b->acl, err, errlen) != 0)
            return -1;
        LMQ_INFO("ACL file %s: %zu rules", cfg->acl_file, acl_rule_count(b->acl));
    }
    return 0;
}

static void bk__authn_free(struct lmq_broker *b)
{
    authn_replay_free(b->replay);
    b->replay = NULL;
    bk__pw_unref(b->pw);
    b->pw = NULL;
    acl_free(b->acl);
    b->acl = NULL;
}

/* The client goes: its job (if any) is orphaned, its principal freed. */
static void bk__authn_client_free(struct lmq_client *c)
{
    if (!c->x)
        return;
    if (c->x->job)
        c->x->job->c = NULL;
    free(c->x->principal);
    c->x->principal = NULL;
}

void lmq_broker_reload(struct lmq_broker *b)
{
    const struct lmq_config *cfg = b->cfg;
    char err[PATH_MAX + 256];
    LMQ_NOTICE("SIGHUP: reloading (%s)", cfg->source);
    if (cfg->password_file[0]) {
        struct pwfile *pw;
        struct bk_pwref *r = NULL;
        if (pwfile_load(cfg->password_file, &pw, err, sizeof err) != 0) {
            LMQ_ERROR("SIGHUP: %s; keeping the password file in force (%zu users)", err,
                      b->pw ? pwfile_count(b->pw->pw) : (size_t)0);
        } else if (!(r = calloc(1, sizeof *r))) {
            pwfile_free(pw);
            LMQ_ERROR("SIGHUP: out of memory; keeping the password file in force");
        } else {
            r->pw = pw;
            r->refs = 1;
            LMQ_NOTICE("SIGHUP: password file %s: %zu users (was %zu)", cfg->password_file,
                       pwfile_count(pw), b->pw ? pwfile_count(b->pw->pw) : (size_t)0);
            bk__pw_unref(b->pw);
            b->pw = r;
        }
    }
    if (cfg->acl_file[0]) {
        struct acl *acl;
        if (acl_load(cfg->acl_file, &acl, err, sizeof err) != 0) {
            LMQ_ERROR("SIGHUP: %s; keeping the ACL in force (%zu rules)", err,
                      b->acl ? acl_rule_count(b->acl) : (size_t)0);
        } else {
            LMQ_NOTICE("SIGHUP: ACL file %s: %zu rules (was %zu)", cfg->acl_file,
                       acl_rule_count(acl), b->acl ? acl_rule_count(b->acl) : (size_t)0);
            acl_free(b->acl);
            b->acl = acl;
        }
    }
}

static int bk__handle_connect(struct lmq_client *c, const uint8_t *pkt, size_t len)
{
    struct lmq_broker *b = c->b;
    struct mqtt_connect ct;
    int rc = mqtt_decode_connect(pkt, len, &ct);
    if (rc == MQTT_E_PROTOCOL_LEVEL) {
        LMQ_WARN("client %s: unsupported protocol level %u; refused", bk__peer(c), ct.version);
        bk__send_connack(c, MQTT_V311, false, MQTT_CONNACK_BAD_PROTOCOL, NULL);
        bk__close(c);
        return -1;
    }
    if (rc < 0) {
        if (ct.version == MQTT_V5) {
            c->proto = MQTT_V5;
            bk__send_connack(c, MQTT_V5, false, mqtt_err_reason(rc), NULL);
        }
        bk__protocol_error(c, "malformed CONNECT", rc);
        return -1;
    }
    c->proto = ct.version;
    bool v5 = c->proto == MQTT_V5;
    struct mqtt_props ack;
    memset(&ack, 0, sizeof ack);

    if (v5 && mqtt_props_has(&ct.props, MQTT_PROP_AUTH_METHOD) && !c->authed) {
        /* Enhanced authentication (auth.h): the method's first step. */
        const struct lmq_auth_method *am =
            lmq_auth_find(ct.props.auth_method.ptr, ct.props.auth_method.len);
        if (am && am->verify && !(c->auth_methods & LMQ_AUTH_M_ED25519))
            am = NULL; /* not accepted on this listener (`auth`) */
        if (!am) {
            char why[160];
            snprintf(why, sizeof why, "method '%.*s' not supported on this listener",
                     (int)(ct.props.auth_method.len > 64 ? 64 : ct.props.auth_method.len),
                     ct.props.auth_method.ptr);
            return bk__auth_refuse(c, ct.client_id.ptr, ct.client_id.len, "enhanced", why,
                                   MQTT_CONNACK_NOT_AUTHORIZED, MQTT_RC_BAD_AUTH_METHOD);
        }
        struct bk_client_x *x = bk__x(c);
        if (!x)
            return bk__refuse(c, MQTT_CONNACK_SERVER_UNAVAILABLE, MQTT_RC_SERVER_UNAVAILABLE);
        x->auth = am;
        uint8_t out[LMQ_AUTH_OUT_MAX];
        size_t on = 0;
        int r = am->start(&x->auth_state, ct.props.auth_data.ptr, ct.props.auth_data.len, out,
                          sizeof out, &on);
        if (r == LMQ_AUTH_CONTINUE) {
            x->pending = malloc(len);
            if (!x->pending)
                return bk__refuse(c, MQTT_CONNACK_SERVER_UNAVAILABLE,
                                  MQTT_RC_SERVER_UNAVAILABLE);
            memcpy(x->pending, pkt, len);
            x->pending_len = (uint32_t)len;
            c->state = BK_C_AUTH;
            bk__send_auth(c, MQTT_RC_CONTINUE_AUTH, out, on);
            return 0;
        }
        if (r == LMQ_AUTH_VERIFY)
            return bk__authn_enhanced(c, pkt, len) < 0 ? -1 : 0;
        if (r != LMQ_AUTH_SUCCESS)
            return bk__auth_refuse(c, ct.client_id.ptr, ct.client_id.len, am->name,
                                   "authentication failed", MQTT_CONNACK_NOT_AUTHORIZED,
                                   MQTT_RC_NOT_AUTHORIZED);
        c->authed = true;
    }

    char idbuf[64];
    const char *id = ct.client_id.ptr;
    size_t idlen = ct.client_id.len;
    if (idlen == 0) {
        if ((!v5 && !ct.clean_start) || !b->cfg->allow_zero_length_clientid) {
            LMQ_WARN("client %s: empty client id %s; refused (identifier rejected)", bk__peer(c),
                     ct.clean_start || v5 ? "not allowed" : "with clean session 0");
            return bk__refuse(c, MQTT_CONNACK_ID_REJECTED, MQTT_RC_CLIENT_ID_INVALID);
        }
        int n = snprintf(idbuf, sizeof idbuf, "auto-%016" PRIx64 "-%" PRIu64,
                         (uint64_t)bk__unix() * 2654435761u, ++b->id_counter);
        id = idbuf;
        idlen = (size_t)n;
        if (v5) {
            ack.present |= MQTT_PROP_BIT(MQTT_PROP_ASSIGNED_CLIENT_ID);
            ack.assigned_client_id.ptr = id;
            ack.assigned_client_id.len = idlen;
        }
    }
    if (idlen > b->cfg->max_client_id_length) {
        LMQ_WARN("client %s: client id of %zu bytes exceeds max_client_id_length %u; refused",
                 bk__peer(c), idlen, b->cfg->max_client_id_length);
        return bk__refuse(c, MQTT_CONNACK_ID_REJECTED, MQTT_RC_CLIENT_ID_INVALID);
    }
    /* Authentication (token, password, certificate, anonymous): may hold
     * the CONNECT for a check on the worker pool. */
    if (!c->authed) {
        int r = bk__authn_begin(c, &ct, pkt, len);
        if (r < 0)
            return -1;
        if (r > 0 || c->state != BK_C_NEW)
            return 0;
    }
    if (!bk__acl_will_ok(c, id, idlen, &ct))
        return bk__refuse(c, MQTT_CONNACK_NOT_AUTHORIZED, MQTT_RC_NOT_AUTHORIZED);
    if (bk__parse_will(c, &ct) < 0)
        return -1;
    c->keepalive = ct.keep_alive;
    if (b->cfg->max_keepalive < UINT16_MAX &&
        (ct.keep_alive == 0 || ct.keep_alive > b->cfg->max_keepalive)) {
        if (v5) {
            /* MQTT 5 lets the server set the keep-alive instead. */
            c->keepalive = b->cfg->max_keepalive;
            ack.present |= MQTT_PROP_BIT(MQTT_PROP_SERVER_KEEP_ALIVE);
            ack.server_keep_alive = b->cfg->max_keepalive;
        } else {
            /* 3.1.1 cannot tell a client to use a shorter keep-alive, so,
             * like Mosquitto, refuse one above max_keepalive (0 = infinite
             * is above). */
            LMQ_WARN("client %s: keep-alive %u exceeds max_keepalive %u; refused (identifier "
                     "rejected)",
                     bk__peer(c), ct.keep_alive, b->cfg->max_keepalive);
            return bk__refuse(c, MQTT_CONNACK_ID_REJECTED, MQTT_RC_CLIENT_ID_INVALID);
        }
    }

    /* Session expiry: MQTT 5 from the CONNECT (capped by
     * persistent_client_expiration), 3.1.1 from clean session. */
    uint32_t expiry;
    if (v5) {
        expiry = mqtt_props_has(&ct.props, MQTT_PROP_SESSION_EXPIRY) ? ct.props.session_expiry
                                                                     : 0;
        c->expiry0 = expiry == 0;
        uint32_t cap = b->cfg->persistent_client_expiration;
        if (cap && expiry > cap) {
            expiry = cap;
            ack.present |= MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY);
            ack.session_expiry = expiry;
        }
    } else {
        expiry = ct.clean_start ? 0 : bk__v4_expiry(b);
    }

    /* Session takeover / resumption. */
    bool present = false;
    struct bk_session *s = bk__sess_find(b, id, idlen);
    if (s && s->client) {
        struct lmq_client *old = s->client;
        LMQ_NOTICE("client %.*s: taken over by a new connection from %s (old: %s)", (int)idlen,
                   id, bk__peer(c), bk__peer(old));
        /* Detach first so the old connection does not end the session. */
        bk__send_disconnect(old, MQTT_RC_SESSION_TAKEN_OVER);
        s->client = NULL;
        old->sess = NULL;
        bk__close(old);
        s->disconnected_at = (uint32_t)bk__unix();
    }
    if (s && bk__sess_expired(b, s, bk__unix())) {
        LMQ_INFO("session %s expired", s->id);
        bk__sess_destroy(b, s);
        s = NULL;
    }
    if (s && (ct.clean_start || !s->persistent)) {
        bk__sess_destroy(b, s);
        s = NULL;
    }
    if (s) {
        present = true;
        bk__sess_will_fire(b, s, false); /* resumed before its will delay */
    } else {
        s = bk__sess_new(b, id, idlen);
        if (!s) {
            LMQ_ERROR("client %s: out of memory creating a session", bk__peer(c));
            return bk__refuse(c, MQTT_CONNACK_SERVER_UNAVAILABLE, MQTT_RC_SERVER_UNAVAILABLE);
        }
    }
    s->expiry = expiry;
    s->persistent = expiry != 0;
    if (expiry && expiry != UINT32_MAX)
        b->v5_expiry = true;
    s->recv_max = v5 && mqtt_props_has(&ct.props, MQTT_PROP_RECEIVE_MAXIMUM)
                      ? ct.props.receive_maximum
                      : 0;
    s->max_out = v5 && mqtt_props_has(&ct.props, MQTT_PROP_MAXIMUM_PACKET_SIZE)
                     ? ct.props.maximum_packet_size
                     : 0;
    if (v5 && mqtt_props_has(&ct.props, MQTT_PROP_TOPIC_ALIAS_MAXIMUM)) {
        uint16_t am = ct.props.topic_alias_maximum < b->cfg->max_topic_alias
                          ? ct.props.topic_alias_maximum
                          : (uint16_t)b->cfg->max_topic_alias;
        /* Without memory for the extension, outbound aliases are not
         * used (they are optional for the sender). */
        if (am && bk__x(c))
            c->x->alias_out_max = am;
    }
    s->client = c;
    s->proto = c->proto;
    s->disconnected_at = 0;
    c->sess = s;
    c->state = BK_C_CONNECTED;
    if (s->persistent)
        bk__sess_store_put(b, s);
    LMQ_INFO("client %s connected from %s (%s, clean %s %d, keep-alive %u%s)", s->id, bk__peer(c),
             v5 ? "MQTT 5" : "MQTT 3.1.1", v5 ? "start" : "session", ct.clean_start,
             c->keepalive, present ? ", session resumed" : "");
    if (v5) {
        ack.present |= MQTT_PROP_BIT(MQTT_PROP_RECEIVE_MAXIMUM) |
                       MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS_MAXIMUM);
        ack.receive_maximum = bk__recv_max(b);
        ack.topic_alias_maximum = (uint16_t)b->cfg->max_topic_alias;
        if (b->cfg->max_packet_size) {
            ack.present |= MQTT_PROP_BIT(MQTT_PROP_MAXIMUM_PACKET_SIZE);
            ack.maximum_packet_size = b->cfg->max_packet_size;
        }
        if (c->x && c->x->auth) {
            ack.present |= MQTT_PROP_BIT(MQTT_PROP_AUTH_METHOD);
            ack.auth_method.ptr = c->x->auth->name;
            ack.auth_method.len = strlen(c->x->auth->name);
        }
    }
    bk__send_connack(c, c->proto, present, MQTT_CONNACK_ACCEPTED, &ack);
    if (present)
        bk__resume(b, s);
    return 0;
}

/* The incoming QoS 2 packet ids awaiting PUBREL: an open-addressing set
 * (0 = empty slot; packet ids are never 0), so a window of hundreds costs
 * one probe per PUBLISH and PUBREL. */
static uint32_t bk__q2_slot(uint16_t id, uint32_t cap)
{
    return ((uint32_t)id * 40503u) & (cap - 1);
}

static bool bk__qos2_has(const struct bk_session *s, uint16_t id)
{
    if (!s->cap_qos2_in)
        return false;
    uint32_t mask = s->cap_qos2_in - 1;
    for (uint32_t i = bk__q2_slot(id, s->cap_qos2_in); s->qos2_in[i]; i = (i + 1) & mask)
        if (s->qos2_in[i] == id)
            return true;
    return false;
}

static void bk__q2_put(uint16_t *v, uint32_t cap, uint16_t id)
{
    uint32_t i = bk__q2_slot(id, cap);
    while (v[i])
        i = (i + 1) & (cap - 1);
    v[i] = id;
}

/* Adds ID (not present). */
static int bk__qos2_add(struct bk_session *s, uint16_t id)
{
    if ((s->n_qos2_in + 1) * 2 > s->cap_qos2_in) {
        uint32_t cap = s->cap_qos2_in ? s->cap_qos2_in * 2 : 16;
        uint16_t *v = calloc(cap, sizeof *v);
        if (!v)
            return -ENOMEM;
        for (uint32_t i = 0; i < s->cap_qos2_in; i++)
            if (s->qos2_in[i])
                bk__q2_put(v, cap, s->qos2_in[i]);
        free(s->qos2_in);
        s->qos2_in = v;
        s->cap_qos2_in = cap;
    }
    bk__q2_put(s->qos2_in, s->cap_qos2_in, id);
    s->n_qos2_in++;
    return 0;
}

static bool bk__qos2_del(struct bk_session *s, uint16_t id)
{
    if (!s->cap_qos2_in)
        return false;
    uint32_t mask = s->cap_qos2_in - 1;
    uint32_t i = bk__q2_slot(id, s->cap_qos2_in);
    while (s->qos2_in[i] != id) {
        if (!s->qos2_in[i])
            return false;
        i = (i + 1) & mask;
    }
    s->qos2_in[i] = 0;
    s->n_qos2_in--;
    /* Backward-shift the cluster after the hole. */
    for (uint32_t j = (i + 1) & mask; s->qos2_in[j]; j = (j + 1) & mask) {
        uint32_t home = bk__q2_slot(s->qos2_in[j], s->cap_qos2_in);
        bool between = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
        if (!between) {
            s->qos2_in[i] = s->qos2_in[j];
            s->qos2_in[j] = 0;
            i = j;
        }
    }
    return true;
}

/* A PUBLISH to a $ledger/ topic: handled by ledger_api.c, never routed as
 * sent. A refusal is the PUBACK/PUBREC reason code under MQTT 5 (a refused
 * QoS 2 flow ends there); a 3.1.1 publisher's message is dropped (logged)
 * and acknowledged as usual, that protocol having no negative ack. */
static int bk__ledger_publish(struct lmq_client *c, const struct mqtt_publish *p)
{
    struct lmq_broker *b = c->b;
    struct bk_session *s = c->sess;
    bool v5 = c->proto == MQTT_V5;
    enum bk_principal_kind kind;
    bk_client_identity(c, &kind);
    char why[200] = "";
    struct lmq_ledger_api_req r = {s->id,
                                   p->topic,
                                   p->payload,
                                   v5 ? &p->props : NULL,
                                   p->qos,
                                   kind == BK_PRINCIPAL_DEVICE,
                                   kind == BK_PRINCIPAL_USER,
                                   why,
                                   sizeof why};
    uint8_t rc = lmq_ledger_api_publish(b->lapi, b, &r);
    if (p->qos == 2 && rc >= 0x80 && v5 && bk__qos2_del(s, p->packet_id) && s->persistent) {
        struct lmq_store *st = bk__st(b);
        if (st)
            bk__st_check(b, lmq_store_qos2_in_del(st, s->id, s->id_len, p->packet_id),
                         "delete incoming QoS 2 id");
    }
    if (p->qos)
        bk_lp_ack(c, p->qos == 1 ? MQTT_PUBACK : MQTT_PUBREC, p->packet_id, rc,
                  rc && why[0] ? why : NULL);
    return 0;
}

static int bk__handle_publish(struct lmq_client *c, const uint8_t *pkt, size_t len)
{
    struct lmq_broker *b = c->b;
    struct mqtt_publish p;
    int rc = mqtt_decode_publish(pkt, len, c->proto, &p);
    if (rc < 0) {
        bk__protocol_error(c, "malformed PUBLISH", rc);
        return -1;
    }
    bool v5 = c->proto == MQTT_V5;
    if (v5 && mqtt_props_has(&p.props, MQTT_PROP_SUBSCRIPTION_ID)) {
        bk__fail(c, MQTT_RC_PROTOCOL_ERROR, "subscription identifier in PUBLISH", 0);
        return -1;
    }
    if (v5 && mqtt_props_has(&p.props, MQTT_PROP_TOPIC_ALIAS)) {
        uint16_t a = p.props.topic_alias;
        if (a == 0 || a > c->b->cfg->max_topic_alias) {
            bk__fail(c, MQTT_RC_TOPIC_ALIAS_INVALID, "topic alias out of range", 0);
            return -1;
        }
        struct bk_client_x *x = bk__x(c);
        if (!x || (!x->alias_in && !(x->alias_in = calloc((size_t)c->b->cfg->max_topic_alias + 1,
                                                           sizeof(char *))))) {
            bk__fail(c, MQTT_RC_UNSPECIFIED, "out of memory", 0);
            return -1;
        }
        if (p.topic.len == 0) {
            if (!x->alias_in[a]) {
                bk__fail(c, MQTT_RC_PROTOCOL_ERROR, "unknown topic alias", 0);
                return -1;
            }
            p.topic.ptr = x->alias_in[a];
            p.topic.len = strlen(x->alias_in[a]);
        }
    }
    rc = mqtt_topic_name_check(p.topic.ptr, p.topic.len, b->cfg->max_topic_length,
                               b->cfg->max_topic_levels);
    if (rc < 0) {
        bk__protocol_error(c, "invalid PUBLISH topic", rc);
        return -1;
    }
    if (v5 && mqtt_props_has(&p.props, MQTT_PROP_TOPIC_ALIAS) &&
        c->x->alias_in[p.props.topic_alias] != p.topic.ptr) {
        char *t = malloc(p.topic.len + 1);
        if (!t) {
            bk__fail(c, MQTT_RC_UNSPECIFIED, "out of memory", 0);
            return -1;
        }
        memcpy(t, p.topic.ptr, p.topic.len);
        t[p.topic.len] = '\0';
        free(c->x->alias_in[p.props.topic_alias]);
        c->x->alias_in[p.props.topic_alias] = t;
        p.topic.ptr = t;
    }
    struct bk_session *s = c->sess;
    if (v5 && mqtt_payload_check(&p.props, p.payload) < 0) {
        if (p.qos == 0) {
            bk__fail(c, MQTT_RC_PAYLOAD_FORMAT_INVALID, "PUBLISH payload is not UTF-8",
                     MQTT_E_PAYLOAD_FORMAT);
            return -1;
        }
        LMQ_INFO("client %s: PUBLISH on %.*s: payload is not UTF-8 as its format says; refused",
                 s->id, (int)p.topic.len, p.topic.ptr);
        bk__send_ack_rc(c, p.qos == 1 ? MQTT_PUBACK : MQTT_PUBREC, p.packet_id,
                        MQTT_RC_PAYLOAD_FORMAT_INVALID);
        return 0;
    }
    /* ACL (write): MQTT 5 gets PUBACK/PUBREC 0x87 with a reason string;
     * 3.1.1 has no negative ack, so, as Mosquitto does, the message is
     * acknowledged as usual (QoS 0: nothing) and dropped [MQTT-3.3.5-2]. */
    bool denied = bk_acl_check_publish(c, p.topic.ptr, p.topic.len) < 0;
    if (denied && v5) {
        if (p.qos) {
            static const char why[] = "not authorized by the ACL";
            struct mqtt_ack a;
            memset(&a, 0, sizeof a);
            a.type = p.qos == 1 ? MQTT_PUBACK : MQTT_PUBREC;
            a.packet_id = p.packet_id;
            a.reason = MQTT_RC_NOT_AUTHORIZED;
            a.props.present = MQTT_PROP_BIT(MQTT_PROP_REASON_STRING);
            a.props.reason_string.ptr = why;
            a.props.reason_string.len = sizeof why - 1;
            uint8_t buf[64];
            int n = mqtt_encode_ack(buf, sizeof buf, MQTT_V5, &a);
            if (n > 0)
                bk__out(c, buf, (size_t)n);
        }
        return 0;
    }
    if (!denied && b->lp && bk_lp_ledgered(b->lp, p.topic.ptr, p.topic.len)) {
        /* A ledgered topic: the pipeline acknowledges and routes it after
         * its batch is committed (ledger_pipe.h). */
        uint8_t *lprops = NULL;
        int lplen = 0;
        uint64_t lexpiry = 0;
        if (v5) {
            lplen = bk__props_forward(p.props.raw, &lprops);
            if (lplen < 0) {
                bk__fail(c, MQTT_RC_UNSPECIFIED, "out of memory", 0);
                return -1;
            }
            if (mqtt_props_has(&p.props, MQTT_PROP_MESSAGE_EXPIRY))
                lexpiry = bk__unix() + p.props.message_expiry;
        }
        int lr = bk_lp_publish(b->lp, c, &p, lprops, (size_t)lplen, lexpiry);
        free(lprops);
        return lr < 0 ? -1 : 0;
    }
    if (p.qos == 2) {
        if (bk__qos2_has(s, p.packet_id)) {
            /* A resent PUBLISH before PUBREL: acknowledge, do not route again. */
            bk__send_ack(c, MQTT_PUBREC, p.packet_id);
            return 0;
        }
        if (v5 && s->n_qos2_in >= bk__recv_max(b)) {
            bk__fail(c, MQTT_RC_RECEIVE_MAX_EXCEEDED, "receive maximum exceeded", 0);
            return -1;
        }
        if (bk__qos2_add(s, p.packet_id) < 0) {
            bk__protocol_error(c, "out of memory", 0);
            return -1;
        }
        if (s->persistent) {
            struct lmq_store *st = bk__st(b);
            if (st)
                bk__st_check(b, lmq_store_qos2_in_put(st, s->id, s->id_len, p.packet_id),
                             "put incoming QoS 2 id");
        }
    }
    if (denied) {
        /* 3.1.1: acknowledged, not routed. */
        if (p.qos == 1)
            bk__send_ack(c, MQTT_PUBACK, p.packet_id);
        else if (p.qos == 2)
            bk__send_ack(c, MQTT_PUBREC, p.packet_id);
        return 0;
    }
    if (p.topic.len >= 8 && memcmp(p.topic.ptr, LMQ_LEDGER_TOPIC_PREFIX, 8) == 0)
        return bk__ledger_publish(c, &p);
    b->hit_congested = false;
    uint8_t *props = NULL;
    int plen = 0;
    uint64_t expiry_at = 0;
    if (v5) {
        plen = bk__props_forward(p.props.raw, &props);
        if (plen < 0) {
            bk__fail(c, MQTT_RC_UNSPECIFIED, "out of memory", 0);
            return -1;
        }
        if (mqtt_props_has(&p.props, MQTT_PROP_MESSAGE_EXPIRY))
            expiry_at = bk__unix() + p.props.message_expiry;
    }
    bk__publish(b, s, p.topic.ptr, p.topic.len, p.payload.ptr, p.payload.len, props,
                (size_t)plen, p.qos, p.retain, expiry_at);
    free(props);
    /* Only a pure publisher is paused: one with messages of its own in
     * flight must keep being read for their acks, or two clients that
     * publish to each other would wait on each other. */
    if (b->hit_congested && !c->paused && b->tr.pause && s->n_inflight == 0 && !s->q_head) {
        c->paused = true;
        c->paused_next = b->paused;
        b->paused = c;
        b->tr.pause(c->tctx);
    }
    if (p.qos == 1)
        bk__send_ack(c, MQTT_PUBACK, p.packet_id);
    else if (p.qos == 2)
        bk__send_ack(c, MQTT_PUBREC, p.packet_id);
    return 0;
}

static struct bk_entry *bk__inflight_find(struct bk_session *s, uint16_t pkid,
                                          struct bk_entry **prev)
{
    struct bk_entry *pv = NULL;
    for (struct bk_entry *e = s->inf_head; e; pv = e, e = e->next) {
        if (e->pkid == pkid) {
            *prev = pv;
            return e;
        }
    }
    return NULL;
}

static void bk__inflight_remove(struct bk_session *s, struct bk_entry *e, struct bk_entry *prev)
{
    if (prev)
        prev->next = e->next;
    else
        s->inf_head = e->next;
    if (s->inf_tail == e)
        s->inf_tail = prev;
    s->n_inflight--;
}

static int bk__handle_ack(struct lmq_client *c, const uint8_t *pkt, size_t len)
{
    struct lmq_broker *b = c->b;
    struct mqtt_ack a;
    int rc = mqtt_decode_ack(pkt, len, c->proto, &a);
    if (rc < 0) {
        bk__protocol_error(c, "malformed acknowledgement", rc);
        return -1;
    }
    struct bk_session *s = c->sess;
    if (a.type == MQTT_PUBREL) {
        bool had = bk__qos2_del(s, a.packet_id);
        if (had && s->persistent) {
            struct lmq_store *st = bk__st(b);
            if (st)
                bk__st_check(b, lmq_store_qos2_in_del(st, s->id, s->id_len, a.packet_id),
                             "delete incoming QoS 2 id");
        }
        bk__send_ack_rc(c, MQTT_PUBCOMP, a.packet_id, had ? 0 : MQTT_RC_PACKET_ID_NOT_FOUND);
        return 0;
    }
    struct bk_entry *prev;
    struct bk_entry *e = bk__inflight_find(s, a.packet_id, &prev);
    if (!e) {
        LMQ_DEBUG("client %s: %s for unknown packet id %u ignored", s->id,
                  mqtt_type_str(a.type), a.packet_id);
        return 0;
    }
    switch (a.type) {
    case MQTT_PUBACK:
    case MQTT_PUBCOMP:
        if ((a.type == MQTT_PUBACK) != (e->qos == 1) ||
            (a.type == MQTT_PUBCOMP && e->state != BK_AWAIT_COMP)) {
            LMQ_DEBUG("client %s: unexpected %s for packet id %u ignored", s->id,
                      mqtt_type_str(a.type), a.packet_id);
            return 0;
        }
        bk__inflight_remove(s, e, prev);
        s->last_progress = (uint32_t)b->now;
        if (s->persistent)
            bk__entry_unstore(b, s, e);
        bk__entry_free(e);
        bk__pump(b, s);
        break;
    case MQTT_PUBREC:
        if (e->qos != 2) {
            LMQ_DEBUG("client %s: PUBREC for QoS 1 packet id %u ignored", s->id, a.packet_id);
            return 0;
        }
        if (a.reason >= 0x80 && e->state == BK_AWAIT_ACK) {
            /* MQTT 5: the receiver refused the message; its flow ends. */
            bk__inflight_remove(s, e, prev);
            s->last_progress = (uint32_t)b->now;
            if (s->persistent)
                bk__entry_unstore(b, s, e);
            bk__entry_free(e);
            bk__pump(b, s);
            break;
        }
        if (e->state == BK_AWAIT_ACK) {
            e->state = BK_AWAIT_COMP;
            lmq_msg_unref(e->msg);
            e->msg = NULL;
            if (s->persistent)
                bk__entry_store(b, s, e);
        }
        bk__send_ack(c, MQTT_PUBREL, a.packet_id);
        break;
    default:
        break;
    }
    return 0;
}

struct bk_retained_ctx {
    struct lmq_broker *b;
    struct bk_session *s;
    uint8_t qos;
};

static void bk__retained_cb(void *ctx, struct lmq_msg *m)
{
    struct bk_retained_ctx *rc = ctx;
    uint8_t qos = m->qos < rc->qos ? m->qos : rc->qos;
    bk__deliver(rc->b, rc->s, m, qos, true);
}

static int bk__sub_add(struct bk_session *s, const char *f, size_t len, uint8_t qos,
                       uint8_t opts, uint32_t sub_id)
{
    for (uint32_t i = 0; i < s->nsubs; i++) {
        if (s->subs[i].len == len && memcmp(s->subs[i].filter, f, len) == 0) {
            s->subs[i].qos = qos;
            s->subs[i].opts = opts;
            s->n_subids += (sub_id != 0) - (s->subs[i].sub_id != 0);
            s->subs[i].sub_id = sub_id;
            return 0;
        }
    }
    if (s->nsubs == s->scap) {
        uint32_t cap = s->scap ? s->scap * 2 : 4;
        struct bk_sub *v = realloc(s->subs, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        s->subs = v;
        s->scap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, f, len);
    copy[len] = '\0';
    s->subs[s->nsubs++] = (struct bk_sub){copy, (uint16_t)len, qos, opts, sub_id};
    s->n_subids += sub_id != 0;
    return 0;
}

static bool bk__sub_has(const struct bk_session *s, const char *f, size_t len)
{
    for (uint32_t i = 0; i < s->nsubs; i++)
        if (s->subs[i].len == len && memcmp(s->subs[i].filter, f, len) == 0)
            return true;
    return false;
}

static bool bk__sub_del(struct bk_session *s, const char *f, size_t len)
{
    for (uint32_t i = 0; i < s->nsubs; i++) {
        if (s->subs[i].len == len && memcmp(s->subs[i].filter, f, len) == 0) {
            s->n_subids -= s->subs[i].sub_id != 0;
            free(s->subs[i].filter);
            s->subs[i] = s->subs[--s->nsubs];
            return true;
        }
    }
    return false;
}

static int bk__handle_subscribe(struct lmq_client *c, const uint8_t *pkt, size_t len)
{
    struct lmq_broker *b = c->b;
    struct mqtt_subscribe sub;
    int rc = mqtt_decode_subscribe(pkt, len, c->proto, &sub);
    if (rc < 0) {
        bk__protocol_error(c, "malformed SUBSCRIBE", rc);
        return -1;
    }
    bool v5 = c->proto == MQTT_V5;
    uint32_t sub_id = v5 && mqtt_props_has(&sub.props, MQTT_PROP_SUBSCRIPTION_ID)
                          ? sub.props.subscription_id
                          : 0;
    struct bk_session *s = c->sess;
    /* Per filter: the reason code, then whether to send retained messages. */
    uint8_t small[128];
    uint8_t *codes = sub.count * 2 <= sizeof small ? small : malloc((size_t)sub.count * 2);
    if (!codes) {
        bk__fail(c, MQTT_RC_UNSPECIFIED, "out of memory", 0);
        return -1;
    }
    uint8_t *send_ret = codes + sub.count;
    struct mqtt_entry_iter it;
    struct mqtt_sub_entry e;
    uint32_t k = 0;
    mqtt_sub_iter_init(&it, &sub);
    while (k < sub.count && mqtt_sub_next(&it, &e)) {
        uint8_t code = MQTT_RC_UNSPECIFIED;
        uint8_t opts = v5 ? (uint8_t)(e.options & (BK_OPT_NO_LOCAL | BK_OPT_RAP)) : 0;
        bool existed = bk__sub_has(s, e.filter.ptr, e.filter.len);
        send_ret[k] = 0;
        rc = mqtt_topic_filter_check(e.filter.ptr, e.filter.len, b->cfg->max_topic_length,
                                     b->cfg->max_topic_levels);
        if (rc < 0) {
            LMQ_WARN("client %s: SUBSCRIBE to '%.*s' refused: %s", s->id, (int)e.filter.len,
                     e.filter.ptr, mqtt_err_str(rc));
            if (v5)
                code = MQTT_RC_TOPIC_FILTER_INVALID;
        } else if (v5 && e.no_local && e.filter.len >= 7 &&
                   memcmp(e.filter.ptr, "$share/", 7) == 0) {
            if (codes != small)
                free(codes);
            bk__fail(c, MQTT_RC_PROTOCOL_ERROR, "No Local on a shared subscription", 0);
            return -1;
        } else if (!lmq_ledger_api_may_subscribe(s->id, e.filter.ptr, e.filter.len)) {
            LMQ_NOTICE("client %s: SUBSCRIBE to '%.*s' refused: it could match another "
                       "client's $ledger/receipts topic",
                       s->id, (int)e.filter.len, e.filter.ptr);
            code = v5 ? MQTT_RC_NOT_AUTHORIZED : MQTT_RC_UNSPECIFIED;
        } else if (!bk__acl_sub_ok(c, e.filter.ptr, e.filter.len)) {
            /* Denied by the ACL: 3.1.1 0x80 (failure), MQTT 5 0x87. */
            if (v5)
                code = MQTT_RC_NOT_AUTHORIZED;
        } else if (!existed && s->nsubs >= b->cfg->max_subscriptions_per_client) {
            LMQ_WARN("client %s: SUBSCRIBE to '%.*s' refused: max_subscriptions_per_client "
                     "(%u) reached",
                     s->id, (int)e.filter.len, e.filter.ptr, b->cfg->max_subscriptions_per_client);
            if (v5)
                code = MQTT_RC_QUOTA_EXCEEDED;
        } else if (bk__sub_add(s, e.filter.ptr, e.filter.len, e.qos, opts, sub_id) < 0 ||
                   bk__tree_sub(b, s, e.filter.ptr, e.filter.len, e.qos, opts) < 0) {
            bk__sub_del(s, e.filter.ptr, e.filter.len);
            LMQ_ERROR("client %s: out of memory subscribing to '%.*s'", s->id,
                      (int)e.filter.len, e.filter.ptr);
        } else {
            code = e.qos;
            /* Retain handling: 0 always, 1 for a new subscription, 2 never. */
            send_ret[k] = !v5 || e.retain_handling == 0 || (e.retain_handling == 1 && !existed);
            /* No retained messages for shared subscriptions (MQTT 5 4.8.2). */
            if (e.filter.len >= 7 && memcmp(e.filter.ptr, "$share/", 7) == 0)
                send_ret[k] = 0;
            if (s->persistent) {
                struct lmq_store *st = bk__st(b);
                struct lmq_store_sub ss = {e.filter.ptr, e.filter.len,
                                           v5 ? e.options : e.qos, sub_id};
                if (st)
                    bk__st_check(b, lmq_store_sub_put(st, s->id, s->id_len, &ss),
                                 "put subscription");
            }
            LMQ_DEBUG("client %s subscribed to '%.*s' at QoS %u", s->id, (int)e.filter.len,
                      e.filter.ptr, e.qos);
        }
        codes[k++] = code;
    }
    struct mqtt_suback sa;
    memset(&sa, 0, sizeof sa);
    sa.packet_id = sub.packet_id;
    sa.reasons.ptr = codes;
    sa.reasons.len = k;
    size_t need = (size_t)k + 16;
    uint8_t *d = lmq_outq_reserve(&c->out, need);
    if (d) {
        int n = mqtt_encode_suback(d, need, c->proto, &sa);
        lmq_outq_unreserve(&c->out, n > 0 ? need - (size_t)n : need);
        bk__dirty(c);
    }
    /* Retained messages after the SUBACK. */
    mqtt_sub_iter_init(&it, &sub);
    for (uint32_t i = 0; i < k && mqtt_sub_next(&it, &e); i++) {
        if (codes[i] >= 0x80 || !send_ret[i])
            continue;
        struct bk_retained_ctx rctx = {b, s, codes[i]};
        lmq_tree_match_retained(b->tree, e.filter.ptr, e.filter.len, bk__retained_cb, &rctx);
    }
    if (codes != small)
        free(codes);
    return 0;
}

static int bk__handle_unsubscribe(struct lmq_client *c, const uint8_t *pkt, size_t len)
{
    struct lmq_broker *b = c->b;
    struct mqtt_subscribe us;
    int rc = mqtt_decode_unsubscribe(pkt, len, c->proto, &us);
    if (rc < 0) {
        bk__protocol_error(c, "malformed UNSUBSCRIBE", rc);
        return -1;
    }
    struct bk_session *s = c->sess;
    uint8_t small[64];
    uint8_t *codes = us.count <= sizeof small ? small : malloc(us.count);
    if (!codes) {
        bk__fail(c, MQTT_RC_UNSPECIFIED, "out of memory", 0);
        return -1;
    }
    struct mqtt_entry_iter it;
    struct mqtt_str f;
    uint32_t k = 0;
    mqtt_sub_iter_init(&it, &us);
    while (k < us.count && mqtt_unsub_next(&it, &f)) {
        if (!bk__sub_del(s, f.ptr, f.len)) {
            codes[k++] = MQTT_RC_NO_SUBSCRIPTION_EXISTED;
            continue;
        }
        codes[k++] = MQTT_RC_SUCCESS;
        bk__tree_unsub(b, s, f.ptr, f.len);
        if (s->persistent) {
            struct lmq_store *st = bk__st(b);
            if (st)
                bk__st_check(b, lmq_store_sub_del(st, s->id, s->id_len, f.ptr, f.len),
                             "delete subscription");
        }
    }
    struct mqtt_suback sa;
    memset(&sa, 0, sizeof sa);
    sa.packet_id = us.packet_id;
    sa.reasons.ptr = codes;
    sa.reasons.len = k;
    size_t need = (size_t)k + 16;
    uint8_t *d = lmq_outq_reserve(&c->out, need);
    if (d) {
        int n = mqtt_encode_unsuback(d, need, c->proto, &sa);
        lmq_outq_unreserve(&c->out, n > 0 ? need - (size_t)n : need);
        bk__dirty(c);
    }
    if (codes != small)
        free(codes);
    return 0;
}

/* An AUTH packet while the CONNECT waits (BK_C_AUTH): the method's next
 * step; on success the kept CONNECT is handled as if it came now. */
static int bk__handle_auth(struct lmq_client *c, const uint8_t *pkt, size_t len)
{
    struct mqtt_auth a;
    int rc = mqtt_decode_auth(pkt, len, MQTT_V5, &a);
    if (rc < 0) {
        bk__protocol_error(c, "malformed AUTH", rc);
        return -1;
    }
    struct bk_client_x *x = c->x;
    const char *name = x->auth->name;
    if (a.reason != MQTT_RC_CONTINUE_AUTH || !mqtt_props_has(&a.props, MQTT_PROP_AUTH_METHOD) ||
        a.props.auth_method.len != strlen(name) ||
        memcmp(a.props.auth_method.ptr, name, a.props.auth_method.len) != 0) {
        LMQ_WARN("client %s: AUTH with another reason or method; refused", bk__peer(c));
        return bk__refuse(c, MQTT_CONNACK_NOT_AUTHORIZED, MQTT_RC_PROTOCOL_ERROR);
    }
    uint8_t out[LMQ_AUTH_OUT_MAX];
    size_t on = 0;
    int r = x->auth->step(&x->auth_state, a.props.auth_data.ptr, a.props.auth_data.len, out,
                          sizeof out, &on);
    if (r == LMQ_AUTH_CONTINUE) {
        bk__send_auth(c, MQTT_RC_CONTINUE_AUTH, out, on);
        return 0;
    }
    if (r == LMQ_AUTH_VERIFY) {
        /* The kept CONNECT goes with the check. */
        uint8_t *connect = x->pending;
        x->pending = NULL;
        rc = bk__authn_enhanced(c, connect, x->pending_len);
        free(connect);
        return rc < 0 ? -1 : 0;
    }
    if (r != LMQ_AUTH_SUCCESS) {
        struct mqtt_connect ct;
        const char *cid = "";
        size_t cidlen = 0;
        if (mqtt_decode_connect(x->pending, x->pending_len, &ct) == 0) {
            cid = ct.client_id.ptr;
            cidlen = ct.client_id.len;
        }
        return bk__auth_refuse(c, cid, cidlen, name, "authentication failed",
                               MQTT_CONNACK_NOT_AUTHORIZED, MQTT_RC_NOT_AUTHORIZED);
    }
    c->authed = true;
    c->state = BK_C_NEW;
    uint8_t *connect = x->pending;
    x->pending = NULL;
    rc = bk__handle_connect(c, connect, x->pending_len);
    free(connect);
    return rc;
}

/* An AUTH packet from a connected MQTT 5 client: re-authentication (MQTT 5
 * 4.12.1). 0x19 starts it with the method of the CONNECT (the method's
 * start step), 0x18 continues it (step); the session carries on meanwhile.
 * Success: AUTH 0x00; failure: DISCONNECT 0x87; AUTH from a client that
 * used no method at CONNECT, or a 0x18 outside a re-authentication: 0x82;
 * another method: 0x8C. */
static int bk__handle_reauth(struct lmq_client *c, const uint8_t *pkt, size_t len)
{
    struct mqtt_auth a;
    int rc = mqtt_decode_auth(pkt, len, MQTT_V5, &a);
    if (rc < 0) {
        bk__protocol_error(c, "malformed AUTH", rc);
        return -1;
    }
    struct bk_client_x *x = c->x;
    if (!x || !x->auth) {
        bk__fail(c, MQTT_RC_PROTOCOL_ERROR, "AUTH without an authentication method at CONNECT",
                 0);
        return -1;
    }
    const char *name = x->auth->name;
    if (!mqtt_props_has(&a.props, MQTT_PROP_AUTH_METHOD) ||
        a.props.auth_method.len != strlen(name) ||
        memcmp(a.props.auth_method.ptr, name, a.props.auth_method.len) != 0) {
        bk__fail(c, MQTT_RC_BAD_AUTH_METHOD, "re-authentication with another method", 0);
        return -1;
    }
    uint8_t out[LMQ_AUTH_OUT_MAX];
    size_t on = 0;
    int r;
    if (a.reason == MQTT_RC_REAUTHENTICATE) {
        x->auth->done(x->auth_state);
        x->auth_state = NULL;
        x->reauth = true;
        r = x->auth->start(&x->auth_state, a.props.auth_data.ptr, a.props.auth_data.len, out,
                           sizeof out, &on);
    } else if (a.reason == MQTT_RC_CONTINUE_AUTH && x->reauth) {
        r = x->auth->step(&x->auth_state, a.props.auth_data.ptr, a.props.auth_data.len, out,
                          sizeof out, &on);
    } else {
        char what[64];
        snprintf(what, sizeof what, "AUTH reason 0x%02x outside a re-authentication", a.reason);
        bk__fail(c, MQTT_RC_PROTOCOL_ERROR, what, 0);
        return -1;
    }
    if (r == LMQ_AUTH_CONTINUE) {
        bk__send_auth(c, MQTT_RC_CONTINUE_AUTH, out, on);
        return 0;
    }
    if (r == LMQ_AUTH_VERIFY)
        return bk__reauth_verify(c); /* verdict later, from the worker pool */
    x->reauth = false;
    if (r != LMQ_AUTH_SUCCESS) {
        bk__fail(c, MQTT_RC_NOT_AUTHORIZED, "re-authentication failed", 0);
        return -1;
    }
    LMQ_INFO("client %s re-authenticated (%s)", bk__name(c), name);
    bk__send_auth(c, MQTT_RC_SUCCESS, out, on);
    return 0;
}

static int bk__handle_packet(struct lmq_client *c, const struct mqtt_frame *f, const uint8_t *pkt)
{
    struct lmq_broker *b = c->b;
    if (c->state == BK_C_AUTH) {
        if (f->type != MQTT_AUTH) {
            bk__protocol_error(c, "expected AUTH during authentication", 0);
            return -1;
        }
        return bk__handle_auth(c, pkt, f->total_len);
    }
    if (c->state == BK_C_NEW) {
        if (f->type != MQTT_CONNECT) {
            char what[64];
            snprintf(what, sizeof what, "first packet is %s, not CONNECT",
                     mqtt_type_str(f->type));
            bk__protocol_error(c, what, 0);
            return -1;
        }
        return bk__handle_connect(c, pkt, f->total_len);
    }
    switch (f->type) {
    case MQTT_PUBLISH:
        return bk__handle_publish(c, pkt, f->total_len);
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        return bk__handle_ack(c, pkt, f->total_len);
    case MQTT_SUBSCRIBE:
        return bk__handle_subscribe(c, pkt, f->total_len);
    case MQTT_UNSUBSCRIBE:
        return bk__handle_unsubscribe(c, pkt, f->total_len);
    case MQTT_PINGREQ: {
        int rc = mqtt_decode_ping(pkt, f->total_len, c->proto);
        if (rc < 0) {
            bk__protocol_error(c, "malformed PINGREQ", rc);
            return -1;
        }
        uint8_t buf[2];
        int n = mqtt_encode_pingresp(buf, sizeof buf);
        if (n > 0)
            bk__out(c, buf, (size_t)n);
        return 0;
    }
    case MQTT_DISCONNECT: {
        struct mqtt_disconnect d;
        int rc = mqtt_decode_disconnect(pkt, f->total_len, c->proto, &d);
        if (rc < 0) {
            bk__protocol_error(c, "malformed DISCONNECT", rc);
            return -1;
        }
        bool send_will = false;
        if (c->proto == MQTT_V5) {
            struct bk_session *s = c->sess;
            if (mqtt_props_has(&d.props, MQTT_PROP_SESSION_EXPIRY) && s) {
                uint32_t exp = d.props.session_expiry;
                if (c->expiry0 && exp != 0) {
                    bk__fail(c, MQTT_RC_PROTOCOL_ERROR,
                             "DISCONNECT sets a session expiry after CONNECT had 0", 0);
                    return -1;
                }
                uint32_t cap = b->cfg->persistent_client_expiration;
                s->expiry = cap && exp > cap ? cap : exp;
                s->persistent = s->expiry != 0;
                if (s->expiry && s->expiry != UINT32_MAX)
                    b->v5_expiry = true;
            }
            send_will = d.reason == MQTT_RC_DISCONNECT_WITH_WILL;
        }
        LMQ_INFO("client %s disconnected (reason 0x%02x)", bk__name(c), d.reason);
        bk__disconnect(c, send_will);
        c->state = BK_C_CLOSING;
        c->want_close = true;
        bk__dirty(c);
        return -1;
    }
    case MQTT_CONNECT:
        bk__protocol_error(c, "second CONNECT", 0);
        return -1;
    case MQTT_AUTH:
        /* (MQTT 3.1.1 has no AUTH: unexpected, below.) */
        if (c->proto == MQTT_V5)
            return bk__handle_reauth(c, pkt, f->total_len);
        /* fall through */
    default: {
        char what[64];
        snprintf(what, sizeof what, "unexpected packet type %u (%s)", f->type,
                 mqtt_type_str(f->type));
        bk__protocol_error(c, what, 0);
        return -1;
    }
    }
}

/* ------------------------------------------------------------------ */
/* public: clients */

struct lmq_client *lmq_broker_client_new(struct lmq_broker *b, void *tctx,
                                         const struct lmq_listener_config *lc,
                                         const struct sockaddr *peer)
{
    struct lmq_client tmp = {.peer_family = 0};
    if (peer && peer->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)peer;
        tmp.peer_family = AF_INET;
        memcpy(tmp.peer_addr, &a->sin_addr, sizeof a->sin_addr);
        tmp.peer_port = ntohs(a->sin_port);
    } else if (peer && peer->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)peer;
        tmp.peer_family = AF_INET6;
        memcpy(tmp.peer_addr, &a->sin6_addr, sizeof a->sin6_addr);
        tmp.peer_port = ntohs(a->sin6_port);
    }
    if (b->n_clients >= b->cfg->max_connections) {
        LMQ_WARN("connection from %s refused: max_connections (%u) reached", bk__peer(&tmp),
                 b->cfg->max_connections);
        return NULL;
    }
    struct lmq_client *c = calloc(1, sizeof *c);
    if (!c) {
        LMQ_ERROR("connection from %s refused: out of memory", bk__peer(&tmp));
        return NULL;
    }
    c->peer_family = tmp.peer_family;
    c->peer_port = tmp.peer_port;
    memcpy(c->peer_addr, tmp.peer_addr, sizeof c->peer_addr);
    c->b = b;
    c->tctx = tctx;
    c->anonymous_ok = !lc || lc->allow_anonymous;
    c->auth_methods = lc ? lc->auth_methods : LMQ_AUTH_M_ALL;
    c->proto = MQTT_V311;
    c->created = c->last_rx = (uint32_t)b->now;
    c->next = b->clients;
    if (b->clients)
        b->clients->prev = c;
    b->clients = c;
    b->n_clients++;
    b->conns_total++;
    LMQ_DEBUG("new connection from %s", bk__peer(c));
    return c;
}

int lmq_broker_input(struct lmq_client *c, const uint8_t *data, size_t len, size_t *consumed)
{
    struct lmq_broker *b = c->b;
    size_t off = 0;
    *consumed = 0;
    if (c->state == BK_C_CLOSING)
        return -1;
    if (c->state == BK_C_CHECK)
        return 0; /* CONNECT held for a credential check: keep the bytes */
    b->st.bytes_in += len;
    for (;;) {
        struct mqtt_frame f;
        memset(&f, 0, sizeof f);
        int rc = mqtt_frame(data + off, len - off, b->cfg->max_packet_size, &f);
        if (rc == MQTT_NEED_MORE) {
            /* Judge the type before the body arrives, so garbage does not
             * hold a connection open until the body "completes". */
            unsigned type = data[off] >> 4;
            if ((c->state == BK_C_NEW && type != MQTT_CONNECT) || type == 0 ||
                (type == MQTT_AUTH && c->proto != MQTT_V5)) {
                char what[64];
                snprintf(what, sizeof what, "%s packet type %u",
                         c->state == BK_C_NEW ? "first packet is not CONNECT:" : "invalid",
                         type);
                bk__protocol_error(c, what, 0);
                *consumed = len;
                return -1;
            }
            break;
        }
        if (rc < 0) {
            if (rc == MQTT_E_TOO_LARGE && f.remaining_len)
                LMQ_WARN("client %s (%s): %s of %" PRIu32
                         " bytes exceeds max_packet_size %u; closing connection",
                         bk__name(c), bk__peer(c), mqtt_type_str(f.type),
                         f.remaining_len + f.header_len, b->cfg->max_packet_size);
            else if (rc == MQTT_E_TOO_LARGE)
                LMQ_WARN("client %s (%s): packet exceeds max_packet_size %u; closing connection",
                         bk__name(c), bk__peer(c), b->cfg->max_packet_size);
            else
                bk__protocol_error(c, "bad fixed header", rc);
            if (rc == MQTT_E_TOO_LARGE && c->state == BK_C_NEW && data[off] >> 4 == MQTT_CONNECT &&
                len - off > (size_t)f.header_len + 6 && data[off + f.header_len + 6] == MQTT_V5) {
                /* An oversize MQTT 5 CONNECT gets CONNACK 0x95. */
                c->proto = MQTT_V5;
                bk__send_connack(c, MQTT_V5, false, MQTT_RC_PACKET_TOO_LARGE, NULL);
            }
            bk__close_rc(c, rc == MQTT_E_TOO_LARGE ? MQTT_RC_PACKET_TOO_LARGE
                                                   : MQTT_RC_MALFORMED);
            *consumed = len;
            return -1;
        }
        /* Keep-alive counts complete control packets, not bytes: a client
         * trickling a partial packet is still timed out. */
        c->last_rx = (uint32_t)b->now;
        if (bk__handle_packet(c, &f, data + off) < 0 || c->state == BK_C_CLOSING) {
            *consumed = len;
            return -1;
        }
        off += f.total_len;
        if (c->lp && bk_lp_client_paused(c))
            break; /* the ledger's ingest queue is full: keep the rest */
        if (off == len || c->paused || c->state == BK_C_CHECK)
            break;
    }
    *consumed = off;
    return 0;
}

void lmq_broker_client_lost(struct lmq_client *c, const char *why)
{
    if (c->state == BK_C_CLOSING)
        return;
    if (c->state == BK_C_CONNECTED)
        LMQ_INFO("client %s lost: %s", bk__name(c), why);
    else
        LMQ_DEBUG("connection from %s lost before CONNECT: %s", bk__peer(c), why);
    bk__disconnect(c, true);
    c->state = BK_C_CLOSING;
}

void lmq_broker_client_free(struct lmq_client *c)
{
    struct lmq_broker *b = c->b;
    bk__disconnect(c, true);
    if (c->lp)
        bk_lp_client_gone(b->lp, c);
    if (c->dirty) {
        struct lmq_client **pp = &b->dirty;
        while (*pp && *pp != c)
            pp = &(*pp)->dirty_next;
        if (*pp)
            *pp = c->dirty_next;
    }
    if (c->paused) {
        struct lmq_client **pp = &b->paused;
        while (*pp && *pp != c)
            pp = &(*pp)->paused_next;
        if (*pp)
            *pp = c->paused_next;
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        b->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    b->n_clients--;
    lmq_outq_free(&c->out);
    bk__authn_client_free(c);
    free(c->x);
    free(c);
}

struct lmq_outq *lmq_broker_client_outq(struct lmq_client *c)
{
    return &c->out;
}

void lmq_broker_client_kick(struct lmq_client *c)
{
    if (c->out.bytes)
        bk__dirty(c);
}

void lmq_broker_client_wrote(struct lmq_client *c, size_t n)
{
    c->b->st.bytes_out += n;
}

/* ------------------------------------------------------------------ */
/* public: loop hooks */

/* Lets the paused publishers read again (before the commit: what they
 * publish now goes into this batch). */
static void bk__resume_publishers(struct lmq_broker *b)
{
    b->resume_pending = false;
    struct lmq_client *list = b->paused;
    b->paused = NULL;
    while (list) {
        struct lmq_client *c = list;
        list = c->paused_next;
        c->paused_next = NULL;
        c->paused = false;
        if (c->state != BK_C_CLOSING)
            b->tr.resume(c->tctx);
    }
}

void lmq_broker_flush(struct lmq_broker *b)
{
    b->now = bk__mono();
    if (b->resume_pending && b->paused)
        bk__resume_publishers(b);
    if (b->batch_open) {
        b->batch_open = false;
        int rc = b->batch_failed ? LMQ_STORE_EIO : lmq_store_commit(b->store);
        if (b->batch_failed)
            lmq_store_abort(b->store);
        if (rc < 0) {
            /* Nothing of this batch is durable: its acks must not leave. The
             * clients with output are the ones it concerns; they reconnect
             * and resend. */
            LMQ_ERROR("store commit failed (%s): closing %s connections with pending acks",
                      lmq_store_strerror(rc), "the");
            for (struct lmq_client *c = b->dirty; c; c = c->dirty_next) {
                lmq_outq_consume(&c->out, c->out.bytes);
                bk__close(c);
            }
        }
    } else if (b->batch_failed) {
        for (struct lmq_client *c = b->dirty; c; c = c->dirty_next) {
            lmq_outq_consume(&c->out, c->out.bytes);
            bk__close(c);
        }
    }
    b->batch_failed = false;
    while (b->dirty) {
        struct lmq_client *c = b->dirty;
        b->dirty = c->dirty_next;
        c->dirty = false;
        c->dirty_next = NULL;
        if (c->want_close) {
            c->want_close = false;
            b->tr.close(c->tctx);
        } else if (c->out.bytes) {
            b->tr.flush(c->tctx);
        }
    }
}

static void bk__sys_pub(struct lmq_broker *b, const char *topic, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void bk__sys_pub(struct lmq_broker *b, const char *topic, const char *fmt, ...)
{
    char val[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(val, sizeof val, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof val)
        return;
    uint64_t in = b->st.msgs_in; /* $SYS messages are not client traffic */
    bk__publish(b, NULL, topic, strlen(topic), val, (size_t)n, NULL, 0, 0, true, 0);
    b->st.msgs_in = in;
}

/* Folds counter CUR into the 1/5/15-minute load averages L after DT
 * seconds, as Mosquitto does: the rate over the interval, per minute,
 * smoothed exponentially. */
static void bk__load_update(struct bk_load_avg *l, uint64_t cur, double dt)
{
    static const double minutes[3] = {1, 5, 15};
    double rate = (double)(cur - l->prev) * 60.0 / dt;
    l->prev = cur;
    for (int i = 0; i < 3; i++) {
        double e = exp(-dt / (60.0 * minutes[i]));
        l->v[i] = rate + e * (l->v[i] - rate);
    }
}

/* Publishes the broker's status under $SYS/broker/ (retained, QoS 0) in
 * Mosquitto's layout, every sys_interval seconds. */
static void bk__sys(struct lmq_broker *b, uint64_t dt)
{
    size_t connected = 0, offline = 0, subs = 0;
    for (struct lmq_client *c = b->clients; c; c = c->next)
        connected += c->state == BK_C_CONNECTED;
    for (size_t i = 0; i < b->sess_cap; i++) {
        for (struct bk_session *s = b->sessions[i]; s; s = s->hnext) {
            subs += s->nsubs;
            offline += !s->client;
        }
    }
    if (connected > b->max_connected)
        b->max_connected = connected;
    uint64_t dropped =
        b->st.dropped_qos0 + b->st.dropped_queue_full + b->st.dropped_too_large;
    bk__sys_pub(b, "$SYS/broker/version", "ledgermqd %s", LMQ_VERSION);
    bk__sys_pub(b, "$SYS/broker/uptime", "%" PRIu64 " seconds", b->now - b->started);
    bk__sys_pub(b, "$SYS/broker/clients/connected", "%zu", connected);
    bk__sys_pub(b, "$SYS/broker/clients/disconnected", "%zu", offline);
    bk__sys_pub(b, "$SYS/broker/clients/total", "%zu", b->n_sessions);
    bk__sys_pub(b, "$SYS/broker/clients/maximum", "%zu", b->max_connected);
    bk__sys_pub(b, "$SYS/broker/sessions/count", "%zu", b->n_sessions);
    bk__sys_pub(b, "$SYS/broker/subscriptions/count", "%zu", subs);
    bk__sys_pub(b, "$SYS/broker/messages/received", "%" PRIu64, b->st.msgs_in);
    bk__sys_pub(b, "$SYS/broker/messages/sent", "%" PRIu64, b->st.msgs_out);
    bk__sys_pub(b, "$SYS/broker/messages/dropped", "%" PRIu64, dropped);
    bk__sys_pub(b, "$SYS/broker/publish/messages/received", "%" PRIu64, b->st.msgs_in);
    bk__sys_pub(b, "$SYS/broker/publish/messages/sent", "%" PRIu64, b->st.msgs_out);
    bk__sys_pub(b, "$SYS/broker/publish/messages/dropped", "%" PRIu64, dropped);
    bk__sys_pub(b, "$SYS/broker/bytes/received", "%" PRIu64, b->st.bytes_in);
    bk__sys_pub(b, "$SYS/broker/bytes/sent", "%" PRIu64, b->st.bytes_out);
    bk__sys_pub(b, "$SYS/broker/retained messages/count", "%zu",
                lmq_tree_retained_count(b->tree));
    bk__sys_pub(b, "$SYS/broker/auth/refused", "%" PRIu64, b->auth_refused);
    bk__sys_pub(b, "$SYS/broker/acl/denied", "%" PRIu64, b->acl_denied);
#ifdef BK_HAVE_MALLINFO2
    /* glibc's count of bytes in use (all threads' arenas); 0 when another
     * allocator (a sanitizer's) serves malloc: then not published. */
    struct mallinfo2 mi = mallinfo2();
    size_t heap = mi.uordblks + mi.hblkhd;
    if (heap > b->heap_max)
        b->heap_max = heap;
    if (heap) {
        bk__sys_pub(b, "$SYS/broker/heap/current", "%zu", heap);
        bk__sys_pub(b, "$SYS/broker/heap/maximum", "%zu", b->heap_max);
    }
#endif
    static const char *const load_name[5] = {"messages/received", "messages/sent",
                                             "bytes/received", "bytes/sent", "connections"};
    const uint64_t load_cur[5] = {b->st.msgs_in, b->st.msgs_out, b->st.bytes_in,
                                  b->st.bytes_out, b->conns_total};
    static const char *const span[3] = {"1min", "5min", "15min"};
    for (int k = 0; k < 5; k++) {
        if (dt)
            bk__load_update(&b->load[k], load_cur[k], (double)dt);
        else
            b->load[k].prev = load_cur[k];
        for (int i = 0; i < 3; i++) {
            char topic[64];
            snprintf(topic, sizeof topic, "$SYS/broker/load/%s/%s", load_name[k], span[i]);
            bk__sys_pub(b, topic, "%.2f", b->load[k].v[i]);
        }
    }
    bk_lp_sys(b->lp);
}

void lmq_broker_tick(struct lmq_broker *b)
{
    b->now = bk__mono();
    if (b->paused)
        b->resume_pending = true;
    for (struct lmq_client *c = b->clients; c; c = c->next) {
        if (c->paused || (c->lp && bk_lp_client_paused(c)))
            c->last_rx = (uint32_t)b->now; /* we are not reading it: not its fault */
        if ((c->state == BK_C_NEW || c->state == BK_C_AUTH) &&
            (uint32_t)b->now - c->created >= b->cfg->connect_timeout) {
            LMQ_WARN("connection from %s: no CONNECT within %u s; closing", bk__peer(c),
                     b->cfg->connect_timeout);
            bk__close(c);
        } else if (c->state == BK_C_CONNECTED && c->keepalive &&
                   ((uint32_t)b->now - c->last_rx) * (uint64_t)2 > (uint64_t)c->keepalive * 3) {
            LMQ_NOTICE("client %s: keep-alive timeout (%u s); closing", bk__name(c),
                       c->keepalive);
            bk__close_rc(c, MQTT_RC_KEEP_ALIVE_TIMEOUT);
        } else if (c->out.bytes == 0 && !c->dirty) {
            lmq_outq_trim(&c->out);
        }
    }
    if (b->store && b->cfg->store_sync == LMQ_SYNC_BATCH && !b->batch_open &&
        b->now - b->last_sync >= 1) {
        b->last_sync = b->now;
        lmq_store_flush(b->store);
    }
    if (b->cfg->sys_interval && b->now - b->last_sys >= b->cfg->sys_interval) {
        bk__sys(b, b->now - (b->last_sys ? b->last_sys : b->started));
        b->last_sys = b->now;
    }
    /* Expire persistent sessions offline for too long; send delayed
     * wills. Every second while MQTT 5 sessions with an expiry or delayed
     * wills exist, else every persistent_client_expiration (at most 60 s). */
    uint32_t exp = b->cfg->persistent_client_expiration;
    uint64_t every = b->v5_expiry || b->n_wills ? 1 : exp < 60 ? exp : 60;
    if ((exp || b->v5_expiry || b->n_wills) && b->now - b->last_expire >= every) {
        b->last_expire = b->now;
        uint64_t now = bk__unix();
        for (size_t i = 0; i < b->sess_cap; i++) {
            for (struct bk_session *s = b->sessions[i], *nx; s; s = nx) {
                nx = s->hnext;
                if (s->will && now >= s->will->at)
                    bk__sess_will_fire(b, s, true);
                if (bk__sess_expired(b, s, now)) {
                    LMQ_INFO("session %s expired", s->id);
                    bk__sess_destroy(b, s);
                }
            }
        }
    }
}

void lmq_broker_shutdown(struct lmq_broker *b)
{
    /* Persistent sessions stay as they are in the store (marked connected:
     * the next start treats the restart time as their disconnect time). */
    b->shutting_down = true;
    /* What the ledger pipeline holds is committed and answered first. */
    bk_lp_stop(b->lp);
    for (struct lmq_client *c = b->clients; c; c = c->next) {
        if (c->state != BK_C_CLOSING) {
            bk__send_disconnect(c, MQTT_RC_SERVER_SHUTTING_DOWN);
            bk__disconnect(c, false);
            c->state = BK_C_CLOSING;
            c->want_close = true;
            bk__dirty(c);
        }
    }
}

void lmq_broker_set_services(struct lmq_broker *b, const struct lmq_broker_services *svc)
{
    b->svc = *svc;
    if (b->lp && !bk_lp_running(b->lp) && svc->ledger && svc->pool && !b->shutting_down) {
        bk_lp_free(b->lp); /* the ledger came after the pool */
        b->lp = NULL;
    }
    if (!b->lp && svc->pool && !b->shutting_down)
        b->lp = bk_lp_new(b, b->cfg, svc);
    else if (b->lp && !svc->pool)
        bk_lp_stop(b->lp); /* the pool goes: the committer may not post to it */
    if (b->lapi)
        lmq_ledger_api_set_pool(b->lapi, svc->pool);
    else if (svc->ledger)
        b->lapi = lmq_ledger_api_new(b, b->cfg, svc);
}

/* For ledger_api.c (declared in ledger_api.h). */
struct lmq_ledger_api *bk_ledger_api(struct lmq_broker *b)
{
    return b->lapi;
}

void bk_publish_internal(struct lmq_broker *b, const char *topic, size_t tlen, const void *payload,
                         size_t plen, const void *props, size_t props_len, uint8_t qos, bool retain)
{
    bk__publish(b, NULL, topic, tlen, payload, plen, props, props_len, qos, retain, 0);
}

bool bk_has_subscriber(struct lmq_broker *b, const char *topic, size_t tlen)
{
    if (lmq_tree_match(b->tree, topic, tlen, &b->matches) < 0)
        return true; /* out of memory: rather build a receipt for nobody */
    return b->matches.n > 0;
}

bool bk_shutting_down(const struct lmq_broker *b)
{
    return b->shutting_down;
}

void lmq_broker_get_stats(const struct lmq_broker *b, struct lmq_broker_stats *st)
{
    *st = b->st;
    st->clients = b->n_clients;
    st->sessions = b->n_sessions;
    st->retained = lmq_tree_retained_count(b->tree);
}

/* ------------------------------------------------------------------ */
/* startup: load the store */

struct bk_load {
    struct lmq_broker *b;
    struct bk_session *cur;
    uint64_t n_sessions, n_msgs, n_retained;
    /* Store message id -> loaded message, so a body queued for many
     * sessions is loaded once (open addressing; borrowed pointers). */
    struct bk_load_slot {
        uint64_t id;
        struct lmq_msg *msg;
    } *bodies;
    size_t n_bodies, cap_bodies;
};

static struct lmq_msg *bk__load_body_find(const struct bk_load *L, uint64_t id)
{
    if (!L->cap_bodies)
        return NULL;
    size_t mask = L->cap_bodies - 1;
    for (size_t i = (size_t)(id * 0x9E3779B97F4A7C15ULL) & mask; L->bodies[i].id;
         i = (i + 1) & mask)
        if (L->bodies[i].id == id)
            return L->bodies[i].msg;
    return NULL;
}

static int bk__load_body_put(struct bk_load *L, uint64_t id, struct lmq_msg *m)
{
    if ((L->n_bodies + 1) * 2 > L->cap_bodies) {
        size_t cap = L->cap_bodies ? L->cap_bodies * 2 : 1024;
        struct bk_load_slot *v = calloc(cap, sizeof *v);
        if (!v)
            return -ENOMEM;
        for (size_t k = 0; k < L->cap_bodies; k++) {
            if (!L->bodies[k].id)
                continue;
            size_t i = (size_t)(L->bodies[k].id * 0x9E3779B97F4A7C15ULL) & (cap - 1);
            while (v[i].id)
                i = (i + 1) & (cap - 1);
            v[i] = L->bodies[k];
        }
        free(L->bodies);
        L->bodies = v;
        L->cap_bodies = cap;
    }
    size_t mask = L->cap_bodies - 1;
    size_t i = (size_t)(id * 0x9E3779B97F4A7C15ULL) & mask;
    while (L->bodies[i].id)
        i = (i + 1) & mask;
    L->bodies[i].id = id;
    L->bodies[i].msg = m;
    L->n_bodies++;
    return 0;
}

static int bk__load_retained(void *ctx, const struct lmq_store_message *m)
{
    struct bk_load *L = ctx;
    struct lmq_msg *r = lmq_msg_new(m->topic, m->topic_len, m->payload, m->payload_len, m->props,
                                    m->props_len, m->qos, true);
    if (!r)
        return -ENOMEM;
    int delta;
    r->expiry_at = m->expiry_at;
    int rc = lmq_tree_retain(L->b->tree, m->topic, m->topic_len, r, &delta);
    lmq_msg_unref(r);
    L->n_retained++;
    return rc < 0 ? rc : LMQ_STORE_VISIT_KEEP;
}

static struct bk_session *bk__load_sess(struct bk_load *L, const struct lmq_store_session *ss)
{
    if (L->cur && L->cur->id_len == ss->client_id_len &&
        memcmp(L->cur->id, ss->client_id, ss->client_id_len) == 0)
        return L->cur;
    return NULL;
}

static int bk__load_session(void *ctx, const struct lmq_store_session *ss,
                            const struct lmq_store_session_stats *stats)
{
    struct bk_load *L = ctx;
    struct lmq_broker *b = L->b;
    uint64_t now = bk__unix();
    uint32_t exp = ss->protocol_version == MQTT_V5 ? ss->expiry_interval
                                                   : b->cfg->persistent_client_expiration;
    /* An expired session with a delayed will is loaded all the same: the
     * first tick publishes the will (due at the latest when the session
     * expires) and then ends the session. */
    if (exp && exp != UINT32_MAX && ss->disconnected_at && now > ss->disconnected_at &&
        now - ss->disconnected_at > exp && !ss->has_will)
        return LMQ_STORE_VISIT_DROP;
    struct bk_session *s = bk__sess_new(b, ss->client_id, ss->client_id_len);
    if (!s)
        return -ENOMEM;
    if (ss->has_will) {
        const struct lmq_store_message *w = &ss->will;
        struct bk_dwill *dw = malloc(sizeof *dw);
        struct lmq_msg *m = dw ? lmq_msg_new(w->topic, w->topic_len, w->payload, w->payload_len,
                                             w->props, w->props_len, w->qos, w->retain)
                               : NULL;
        if (!m) {
            free(dw);
            return -ENOMEM;
        }
        dw->msg = m;
        dw->at = ss->will_at;
        dw->expiry = ss->will_expiry;
        s->will = dw;
        b->n_wills++;
    }
    s->persistent = true;
    s->stored = true;
    s->proto = ss->protocol_version ? ss->protocol_version : MQTT_V311;
    s->expiry = s->proto == MQTT_V5 ? ss->expiry_interval : bk__v4_expiry(b);
    if (s->expiry == 0)
        s->expiry = UINT32_MAX; /* not written that way; keep it rather than lose it */
    if (s->expiry != UINT32_MAX)
        b->v5_expiry = s->proto == MQTT_V5 || b->v5_expiry;
    /* Past 2106 (or a damaged record) it stays unexpired. */
    uint64_t at = ss->disconnected_at ? ss->disconnected_at : now;
    s->disconnected_at = at > UINT32_MAX ? UINT32_MAX : (uint32_t)at;
    s->next_seq = stats->max_seq + 1;
    L->cur = s;
    L->n_sessions++;
    return LMQ_STORE_VISIT_KEEP;
}

static int bk__load_sub(void *ctx, const struct lmq_store_session *ss,
                        const struct lmq_store_sub *sub)
{
    struct bk_load *L = ctx;
    struct bk_session *s = bk__load_sess(L, ss);
    if (!s)
        return LMQ_STORE_VISIT_KEEP;
    uint8_t qos = sub->options & 3;
    if (qos > 2)
        qos = 2;
    uint8_t opts = sub->options & (BK_OPT_NO_LOCAL | BK_OPT_RAP);
    if (bk__sub_add(s, sub->filter, sub->filter_len, qos, opts, sub->sub_id) < 0 ||
        bk__tree_sub(L->b, s, sub->filter, sub->filter_len, qos, opts) < 0)
        return -ENOMEM;
    return LMQ_STORE_VISIT_KEEP;
}

static int bk__load_msg(void *ctx, const struct lmq_store_session *ss,
                        const struct lmq_store_entry *se, const struct lmq_store_message *m)
{
    struct bk_load *L = ctx;
    struct bk_session *s = bk__load_sess(L, ss);
    if (!s)
        return LMQ_STORE_VISIT_KEEP;
    if (!m && se->state != BK_AWAIT_COMP)
        return LMQ_STORE_VISIT_DROP;
    struct bk_entry *e = calloc(1, sizeof *e);
    if (!e)
        return -ENOMEM;
    if (m && se->state != BK_AWAIT_COMP) {
        e->msg = bk__load_body_find(L, se->msg_id);
        if (e->msg) {
            lmq_msg_ref(e->msg);
        } else {
            e->msg = lmq_msg_new(m->topic, m->topic_len, m->payload, m->payload_len, m->props,
                                 m->props_len, m->qos, m->retain);
            if (!e->msg || bk__load_body_put(L, se->msg_id, e->msg) < 0) {
                lmq_msg_unref(e->msg);
                free(e);
                return -ENOMEM;
            }
            e->msg->store_id = se->msg_id;
            e->msg->expiry_at = m->expiry_at;
        }
        e->retain = e->msg->retain;
    }
    e->msg_id = e->msg ? se->msg_id : 0;
    e->seq = se->seq;
    e->qos = se->qos;
    e->state = se->state;
    e->pkid = se->packet_id;
    e->dup = se->dup;
    if (e->state == BK_QUEUED) {
        if (s->q_tail)
            s->q_tail->next = e;
        else
            s->q_head = e;
        s->q_tail = e;
        s->n_queued++;
        s->q_bytes += lmq_msg_size(e->msg);
    } else {
        bk__inflight_append(s, e);
        s->pkid_scan = true;
    }
    if (e->pkid >= s->next_pkid)
        s->next_pkid = (uint16_t)(e->pkid + 1 ? e->pkid + 1 : 1);
    L->n_msgs++;
    return LMQ_STORE_VISIT_KEEP;
}

static int bk__load_qos2(void *ctx, const struct lmq_store_session *ss, uint16_t pkid)
{
    struct bk_load *L = ctx;
    struct bk_session *s = bk__load_sess(L, ss);
    if (!s)
        return LMQ_STORE_VISIT_KEEP;
    if (bk__qos2_has(s, pkid))
        return LMQ_STORE_VISIT_KEEP;
    return bk__qos2_add(s, pkid) < 0 ? -ENOMEM : LMQ_STORE_VISIT_KEEP;
}

/* ------------------------------------------------------------------ */
/* public: lifecycle */

struct lmq_broker *lmq_broker_new(const struct lmq_config *cfg, const struct lmq_transport *tr,
                                  char *err, size_t errlen)
{
    struct lmq_broker *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    b->cfg = cfg;
    b->tr = *tr;
    b->now = b->started = bk__mono();
    b->tree = lmq_tree_new();
    b->shared = lmq_tree_new();
    if (!b->tree || !b->shared || bk__sess_table_grow(b) < 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (bk__authn_init(b, err, errlen) < 0)
        goto fail;
    struct lmq_store_options opt;
    lmq_store_options_default(&opt);
    opt.sync = cfg->store_sync;
    int rc = lmq_store_open(cfg->data_dir, &opt, &b->store, err, errlen);
    if (rc < 0)
        goto fail;
    struct lmq_store_visitor v = {
        .retained = bk__load_retained,
        .session = bk__load_session,
        .sub = bk__load_sub,
        .session_msg = bk__load_msg,
        .qos2_in = bk__load_qos2,
    };
    struct bk_load L = {.b = b};
    rc = lmq_store_load(b->store, &v, &L);
    free(L.bodies);
    if (rc < 0) {
        snprintf(err, errlen, "loading the store: %s",
                 rc == -ENOMEM ? "out of memory" : lmq_store_strerror(rc));
        goto fail;
    }
    LMQ_INFO("loaded %" PRIu64 " persistent sessions, %" PRIu64 " queued messages, %" PRIu64
             " retained messages",
             L.n_sessions, L.n_msgs, L.n_retained);
    return b;

fail:
    bk__authn_free(b);
    lmq_store_close(b->store);
    lmq_tree_free(b->tree);
    lmq_tree_free(b->shared);
    free(b->sessions);
    free(b);
    return NULL;
}

void lmq_broker_free(struct lmq_broker *b)
{
    if (!b)
        return;
    if (b->batch_open) {
        b->batch_open = false;
        if (b->batch_failed)
            lmq_store_abort(b->store);
        else if (lmq_store_commit(b->store) < 0)
            LMQ_ERROR("store: final commit failed");
    }
    if (b->store) {
        lmq_store_flush(b->store);
        lmq_store_close(b->store);
        b->store = NULL;
    }
    b->freeing = true;
    for (size_t i = 0; i < b->sess_cap; i++) {
        while (b->sessions[i]) {
            struct bk_session *s = b->sessions[i];
            s->stored = false; /* keep it in the store */
            bk__sess_destroy(b, s);
        }
    }
    free(b->sessions);
    lmq_ledger_api_free(b->lapi);
    bk_lp_free(b->lp);
    lmq_match_set_free(&b->matches);
    lmq_tree_free(b->tree);
    lmq_tree_free(b->shared);
    bk__authn_free(b);
    while (b->groups) {
        struct bk_group *g = b->groups;
        b->groups = g->next;
        free(g->key);
        free(g->m);
        free(g);
    }
    free(b);
    lmq_outq_spares_free();
}

/* ------------------------------------------------------------------ */
/* for the ledger pipeline (broker/ledger_glue.h) */

struct bk_lp *bk_broker_lp(struct lmq_broker *b)
{
    return b->lp;
}

const char *bk_client_id(const struct lmq_client *c, size_t *len)
{
    const char *id = c->sess ? c->sess->id : "";
    *len = c->sess ? c->sess->id_len : 0;
    return id;
}

uint8_t bk_client_proto(const struct lmq_client *c)
{
    return c->proto;
}

const char *bk_client_principal(const struct lmq_client *c, bool *is_device)
{
    enum bk_principal_kind k;
    const char *p = bk_client_identity(c, &k);
    *is_device = p && k == BK_PRINCIPAL_DEVICE;
    if (p)
        return p;
    return c->sess ? c->sess->id : "";
}

void *bk_client_lp(const struct lmq_client *c)
{
    return c->lp;
}

void bk_client_set_lp(struct lmq_client *c, void *lpc)
{
    c->lp = lpc;
}

void bk_lp_ack(struct lmq_client *c, uint8_t type, uint16_t pkid, uint8_t reason,
               const char *reason_str)
{
    if (c->state != BK_C_CONNECTED)
        return;
    if (c->proto != MQTT_V5 || !reason_str) {
        bk__send_ack_rc(c, type, pkid, reason);
        return;
    }
    struct mqtt_ack a;
    memset(&a, 0, sizeof a);
    a.type = type;
    a.packet_id = pkid;
    a.reason = reason;
    a.props.present = MQTT_PROP_BIT(MQTT_PROP_REASON_STRING);
    a.props.reason_string.ptr = reason_str;
    a.props.reason_string.len = strlen(reason_str);
    uint8_t buf[256];
    int n = mqtt_encode_ack(buf, sizeof buf, c->proto, &a);
    if (n > 0)
        bk__out(c, buf, (size_t)n);
}

void bk_lp_close(struct lmq_client *c, uint8_t reason, const char *why)
{
    if (c->state == BK_C_CLOSING)
        return;
    LMQ_NOTICE("client %s (%s): %s; closing connection", bk__name(c), bk__peer(c), why);
    bk__close_rc(c, reason);
}

bool bk_lp_qos2_has(const struct lmq_client *c, uint16_t pkid)
{
    return c->sess && bk__qos2_has(c->sess, pkid);
}

uint32_t bk_lp_qos2_count(const struct lmq_client *c)
{
    return c->sess ? c->sess->n_qos2_in : 0;
}

int bk_lp_qos2_add(struct lmq_client *c, uint16_t pkid)
{
    struct bk_session *s = c->sess;
    if (!s || bk__qos2_has(s, pkid))
        return 0;
    if (bk__qos2_add(s, pkid) < 0)
        return -1;
    if (s->persistent) {
        struct lmq_store *st = bk__st(c->b);
        if (st)
            bk__st_check(c->b, lmq_store_qos2_in_put(st, s->id, s->id_len, pkid),
                         "put incoming QoS 2 id");
    }
    return 0;
}

void bk_lp_route(struct lmq_broker *b, struct lmq_client *c, const char *topic, size_t tlen,
                 const void *payload, size_t plen, const void *props, size_t props_len,
                 uint8_t qos, bool retain, uint64_t expiry_at)
{
    bk__publish(b, c ? c->sess : NULL, topic, tlen, payload, plen, props, props_len, qos, retain,
                expiry_at);
}

void bk_lp_pause(struct lmq_client *c, bool pause)
{
    struct lmq_broker *b = c->b;
    if (c->state == BK_C_CLOSING)
        return;
    if (pause && b->tr.pause)
        b->tr.pause(c->tctx);
    else if (!pause && b->tr.resume && !c->paused)
        b->tr.resume(c->tctx);
}

void bk_sys_publish(struct lmq_broker *b, const char *topic, const char *value)
{
    bk__sys_pub(b, topic, "%s", value);
}
