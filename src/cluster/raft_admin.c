/* Membership requests on the leader (see raft_admin.h). A request lives in
 * the broker's struct lmq_committer_admin; this file keeps a small record
 * around it: queued under the mutex until the raft thread starts it, then
 * on the running list until its change callback (or the stop) answers. */
#include "cluster/raft_admin.h"

#include "util/log.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ra__item {
    struct ra__item *next, *prev;
    struct lmq_raft_admin *q;
    struct lmq_committer_admin *r;
    struct lmq_raft_admin_req req;
};

struct lmq_raft_admin {
    pthread_mutex_t mu;
    struct ra__item *queued, *queued_tail; /* under mu */
    struct ra__item *running;              /* raft thread: started, callback pending */
    struct lmq_raft_node *node;            /* raft thread: the node of the running ones */
    void (*changed)(void *ctx);
    void *ctx;
};

static const char *const ra__ops[] = {NULL, "add", "remove", "transfer"};

/* ------------------------------------------------------------------ */
/* the request body */

static const uint8_t *ra__ws(const uint8_t *p, const uint8_t *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* A JSON string without escapes or control characters into OUT[0:CAP]. */
static int ra__str(const uint8_t **pp, const uint8_t *e, char *out, size_t cap)
{
    const uint8_t *p = *pp;
    if (p >= e || *p != '"')
        return -1;
    size_t n = 0;
    for (p++; p < e && *p != '"'; p++) {
        if (*p < 0x20 || *p == '\\' || *p >= 0x7f || n + 1 >= cap)
            return -1;
        out[n++] = (char)*p;
    }
    if (p >= e)
        return -1;
    out[n] = '\0';
    *pp = p + 1;
    return 0;
}

/* A decimal 1..2^63-1 without sign, fraction or leading zeros. */
static int ra__num(const uint8_t **pp, const uint8_t *e, uint64_t *v)
{
    const uint8_t *p = *pp;
    uint64_t x = 0;
    if (p >= e || *p < '1' || *p > '9')
        return -1;
    for (; p < e && *p >= '0' && *p <= '9'; p++) {
        if (x > ((uint64_t)INT64_MAX - (uint64_t)(*p - '0')) / 10)
            return -1;
        x = x * 10 + (uint64_t)(*p - '0');
    }
    *v = x;
    *pp = p;
    return 0;
}

static int ra__bad(char *err, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int ra__bad(char *err, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
    return -1;
}

int lmq_raft_admin_parse(const uint8_t *p, size_t len, struct lmq_raft_admin_req *out, char *err,
                         size_t cap)
{
    const uint8_t *e = p + len;
    char op[16] = "";
    bool have_op = false, have_id = false, have_addr = false;
    memset(out, 0, sizeof *out);
    p = ra__ws(p, e);
    if (p >= e || *p != '{')
        return ra__bad(err, cap, "the request is not a JSON object");
    p = ra__ws(p + 1, e);
    if (p < e && *p == '}') {
        p++;
    } else {
        for (;;) {
            char key[16];
            if (ra__str(&p, e, key, sizeof key) < 0)
                return ra__bad(err, cap, "expected a key (op, id or address)");
            p = ra__ws(p, e);
            if (p >= e || *p != ':')
                return ra__bad(err, cap, "expected ':' after \"%s\"", key);
            p = ra__ws(p + 1, e);
            if (strcmp(key, "op") == 0 && !have_op) {
                if (ra__str(&p, e, op, sizeof op) < 0)
                    return ra__bad(err, cap, "op: expected \"add\", \"remove\" or \"transfer\"");
                have_op = true;
            } else if (strcmp(key, "id") == 0 && !have_id) {
                if (ra__num(&p, e, &out->id) < 0)
                    return ra__bad(err, cap, "id: expected a node id 1..%" PRId64, INT64_MAX);
                have_id = true;
            } else if (strcmp(key, "address") == 0 && !have_addr) {
                if (ra__str(&p, e, out->address, sizeof out->address) < 0)
                    return ra__bad(err, cap, "address: expected \"HOST:PORT\" (under %d bytes)",
                                   LMQ_RAFT_ADDRESS_MAX);
                have_addr = true;
            } else if (strcmp(key, "op") == 0 || strcmp(key, "id") == 0 ||
                       strcmp(key, "address") == 0) {
                return ra__bad(err, cap, "\"%s\" given twice", key);
            } else {
                return ra__bad(err, cap, "unknown key \"%s\" (op, id, address)", key);
            }
            p = ra__ws(p, e);
            if (p < e && *p == ',') {
                p = ra__ws(p + 1, e);
                continue;
            }
            if (p < e && *p == '}') {
                p++;
                break;
            }
            return ra__bad(err, cap, "expected ',' or '}'");
        }
    }
    if (ra__ws(p, e) != e)
        return ra__bad(err, cap, "trailing bytes after the object");
    for (int i = LMQ_RAFT_ADMIN_ADD; i <= LMQ_RAFT_ADMIN_TRANSFER; i++)
        if (have_op && strcmp(op, ra__ops[i]) == 0)
            out->op = i;
    if (!out->op)
        return ra__bad(err, cap, "op: expected \"add\", \"remove\" or \"transfer\"");
    if (out->op != LMQ_RAFT_ADMIN_TRANSFER && !have_id)
        return ra__bad(err, cap, "%s: needs \"id\"", op);
    if (out->op == LMQ_RAFT_ADMIN_ADD) {
        if (!have_addr || lmq_raft_address_check(out->address) != 0)
            return ra__bad(err, cap,
                           "add: needs \"address\": \"HOST:PORT\" (IPv4 or host name, "
                           "port 1-65535)");
    } else if (have_addr) {
        return ra__bad(err, cap, "%s: takes no \"address\"", op);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* replies */

static void ra__vreply(struct lmq_committer_admin *r, const char *code, const char *fmt, va_list ap)
{
    char reason[512], esc[1024];
    size_t n = 0;
    vsnprintf(reason, sizeof reason, fmt, ap);
    for (const char *c = reason; *c && n + 2 < sizeof esc; c++) {
        if (*c == '"' || *c == '\\')
            esc[n++] = '\\';
        esc[n++] = (unsigned char)*c < 0x20 ? ' ' : *c;
    }
    esc[n] = '\0';
    snprintf(r->result, sizeof r->result, "{\"error\": \"%s\", \"reason\": \"%s\"}", code, esc);
}

static void ra__fail(struct lmq_committer_admin *r, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void ra__fail(struct lmq_committer_admin *r, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ra__vreply(r, code, fmt, ap);
    va_end(ap);
    r->done(r);
}

static const char *ra__role(int role)
{
    return role == 1 ? "voter" : role == 0 ? "standby" : role == 2 ? "spare" : "unknown";
}

static void ra__ok(struct lmq_raft_node *n, const struct ra__item *it)
{
    struct lmq_raft_member_info m[LMQ_RAFT_MAX_MEMBERS];
    size_t k = lmq_raft_members(n, m, LMQ_RAFT_MAX_MEMBERS);
    uint64_t leader = 0;
    lmq_raft_leader(n, &leader, NULL);
    char *b = it->r->result;
    size_t cap = sizeof it->r->result, o = 0;
    o += (size_t)snprintf(b, cap,
                          "{\"ok\": true, \"op\": \"%s\", \"id\": %" PRIu64 ", \"leader\": %" PRIu64
                          ", \"members\": [",
                          ra__ops[it->req.op], it->req.id, leader);
    for (size_t i = 0; i < k && i < LMQ_RAFT_MAX_MEMBERS && o < cap; i++)
        o += (size_t)snprintf(b + o, cap - o,
                              "%s{\"id\": %" PRIu64 ", \"address\": \"%s\", \"role\": \"%s\"}",
                              i ? ", " : "", m[i].id, m[i].address, ra__role(m[i].role));
    if (o < cap)
        snprintf(b + o, cap - o, "]}");
    it->r->done(it->r);
}

/* ------------------------------------------------------------------ */
/* the queue */

struct lmq_raft_admin *lmq_raft_admin_new(void (*changed)(void *ctx), void *ctx)
{
    struct lmq_raft_admin *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    pthread_mutex_init(&q->mu, NULL);
    q->changed = changed;
    q->ctx = ctx;
    return q;
}

void lmq_raft_admin_free(struct lmq_raft_admin *q)
{
    if (!q)
        return;
    pthread_mutex_destroy(&q->mu);
    free(q);
}

void lmq_raft_admin_submit(struct lmq_raft_admin *q, const uint8_t *req, size_t len,
                           struct lmq_committer_admin *r)
{
    struct ra__item *it = calloc(1, sizeof *it);
    char err[256];
    if (!it) {
        ra__fail(r, "io_error", "out of memory");
        return;
    }
    if (lmq_raft_admin_parse(req, len, &it->req, err, sizeof err) < 0) {
        free(it);
        ra__fail(r, "bad_request", "%s", err);
        return;
    }
    it->q = q;
    it->r = r;
    pthread_mutex_lock(&q->mu);
    if (q->queued_tail)
        q->queued_tail->next = it;
    else
        q->queued = it;
    q->queued_tail = it;
    pthread_mutex_unlock(&q->mu);
}

static void ra__unlink(struct ra__item *it)
{
    struct lmq_raft_admin *q = it->q;
    if (it->prev)
        it->prev->next = it->next;
    else
        q->running = it->next;
    if (it->next)
        it->next->prev = it->prev;
}

/* Whether ID is in N's configuration without a vote. */
static bool ra__is_spare(struct lmq_raft_node *n, uint64_t id)
{
    struct lmq_raft_member_info m[LMQ_RAFT_MAX_MEMBERS];
    size_t k = lmq_raft_members(n, m, LMQ_RAFT_MAX_MEMBERS);
    for (size_t i = 0; i < k && i < LMQ_RAFT_MAX_MEMBERS; i++)
        if (m[i].id == id)
            return m[i].role != 1;
    return false;
}

static void ra__change_cb(void *ctx, int status)
{
    struct ra__item *it = ctx;
    struct lmq_raft_admin *q = it->q;
    ra__unlink(it);
    const struct lmq_raft_admin_req *rq = &it->req;
    if (status == 0) {
        LMQ_NOTICE("cluster: %s of node %" PRIu64 " done", ra__ops[rq->op], rq->id);
        ra__ok(q->node, it);
        if (q->changed)
            q->changed(q->ctx);
    } else if (status == LMQ_RAFT_ERR_TRANSFER) {
        if (rq->id)
            ra__fail(it->r, "transfer_failed",
                     "leadership did not move to node %" PRIu64 " within the election timeout",
                     rq->id);
        else
            ra__fail(it->r, "transfer_failed",
                     "leadership did not move within the election timeout");
    } else if (status == LMQ_RAFT_ERR_LOST) {
        ra__fail(it->r, "leadership_lost",
                 "leadership was lost before the change committed (it may still take effect: "
                 "see `ledgermq cluster status`)");
    } else if (status == LMQ_RAFT_ERR_SHUTDOWN) {
        ra__fail(it->r, "shutdown", "the node is stopping");
    } else if (rq->op == LMQ_RAFT_ADMIN_ADD && ra__is_spare(q->node, rq->id)) {
        /* raft_add committed, the promotion's catch-up rounds failed */
        ra__fail(it->r, "catchup_failed",
                 "node %" PRIu64 " was added as a spare but did not catch up (%s): is it "
                 "running at %s with cluster_join? It stays a spare (no vote) until removed",
                 rq->id, lmq_raft_strerror(status), rq->address);
    } else {
        ra__fail(it->r, "failed", "%s of node %" PRIu64 " failed: %s", ra__ops[rq->op], rq->id,
                 lmq_raft_strerror(status));
    }
    if (status != 0) {
        LMQ_NOTICE("cluster: %s of node %" PRIu64 " failed: %s", ra__ops[rq->op], rq->id,
                   lmq_raft_strerror(status));
        if (q->changed && status != LMQ_RAFT_ERR_SHUTDOWN)
            q->changed(q->ctx); /* a failed add may leave a spare */
    }
    free(it);
}

/* Starts IT on N, or answers it. */
static void ra__start(struct lmq_raft_admin *q, struct lmq_raft_node *n, struct ra__item *it)
{
    const struct lmq_raft_admin_req *rq = &it->req;
    struct lmq_raft_member_info m[LMQ_RAFT_MAX_MEMBERS];
    size_t k = lmq_raft_members(n, m, LMQ_RAFT_MAX_MEMBERS);
    const struct lmq_raft_member_info *same_id = NULL, *same_addr = NULL;
    for (size_t i = 0; i < k && i < LMQ_RAFT_MAX_MEMBERS; i++) {
        if (m[i].id == rq->id)
            same_id = &m[i];
        if (strcmp(m[i].address, rq->address) == 0)
            same_addr = &m[i];
    }
    uint64_t self = lmq_raft_id(n);
    int rv = 0;
    if (lmq_raft_state(n) != LMQ_RAFT_LEADER) {
        rv = LMQ_RAFT_ERR_NOT_LEADER;
    } else if (rq->op == LMQ_RAFT_ADMIN_ADD) {
        if (same_id) {
            ra__fail(it->r, "duplicate_id", "node %" PRIu64 " is a member already (%s, %s)", rq->id,
                     same_id->address, ra__role(same_id->role));
            goto answered;
        }
        if (same_addr) {
            ra__fail(it->r, "duplicate_address", "%s is the address of node %" PRIu64, rq->address,
                     same_addr->id);
            goto answered;
        }
        if (k >= LMQ_RAFT_MAX_MEMBERS) {
            ra__fail(it->r, "too_many", "the cluster has %d members already", LMQ_RAFT_MAX_MEMBERS);
            goto answered;
        }
        rv = lmq_raft_add(n, rq->id, rq->address, ra__change_cb, it);
    } else if (rq->id && !same_id) {
        ra__fail(it->r, "unknown_id", "node %" PRIu64 " is not a member", rq->id);
        goto answered;
    } else if (rq->op == LMQ_RAFT_ADMIN_REMOVE) {
        rv = lmq_raft_remove(n, rq->id, ra__change_cb, it);
    } else if (rq->id == self) {
        q->node = n;
        ra__ok(n, it); /* leads already: nothing to move */
        goto answered;
    } else if (rq->id && same_id->role != 1) {
        ra__fail(it->r, "not_voter", "node %" PRIu64 " is a %s, not a voter", rq->id,
                 ra__role(same_id->role));
        goto answered;
    } else {
        rv = lmq_raft_transfer(n, rq->id, ra__change_cb, it);
    }
    if (rv == 0) {
        LMQ_NOTICE("cluster: %s of node %" PRIu64 "%s%s started", ra__ops[rq->op], rq->id,
                   rq->op == LMQ_RAFT_ADMIN_ADD ? " at " : "", rq->address);
        q->node = n;
        it->prev = NULL;
        it->next = q->running;
        if (q->running)
            q->running->prev = it;
        q->running = it;
        return;
    }
    if (rv == LMQ_RAFT_ERR_NOT_LEADER) {
        uint64_t lid = 0;
        const char *addr = NULL;
        lmq_raft_leader(n, &lid, &addr);
        if (lid && addr && lid != self)
            ra__fail(it->r, "not_leader", "not the leader: node %" PRIu64 " at %s", lid, addr);
        else
            ra__fail(it->r, "not_leader", "not the leader: no leader known");
    } else if (rv == LMQ_RAFT_ERR_CHANGE) {
        ra__fail(it->r, "busy", "another membership change is in progress: try again");
    } else if (rv == LMQ_RAFT_ERR_BADID) {
        ra__fail(it->r, "bad_request", "%s of node %" PRIu64 " refused by Raft: %s",
                 ra__ops[rq->op], rq->id, lmq_raft_strerror(rv));
    } else if (rv == LMQ_RAFT_ERR_SHUTDOWN) {
        ra__fail(it->r, "shutdown", "the node is stopping");
    } else {
        ra__fail(it->r, "failed", "%s of node %" PRIu64 " failed: %s", ra__ops[rq->op], rq->id,
                 lmq_raft_strerror(rv));
    }
answered:
    free(it);
}

void lmq_raft_admin_run(struct lmq_raft_admin *q, struct lmq_raft_node *n)
{
    pthread_mutex_lock(&q->mu);
    struct ra__item *list = q->queued;
    q->queued = q->queued_tail = NULL;
    pthread_mutex_unlock(&q->mu);
    while (list) {
        struct ra__item *it = list;
        list = it->next;
        it->next = NULL;
        ra__start(q, n, it);
    }
}

void lmq_raft_admin_cancel(struct lmq_raft_admin *q)
{
    pthread_mutex_lock(&q->mu);
    struct ra__item *list = q->queued;
    q->queued = q->queued_tail = NULL;
    pthread_mutex_unlock(&q->mu);
    while (q->running) {
        struct ra__item *it = q->running;
        q->running = it->next;
        it->next = list;
        list = it;
    }
    while (list) {
        struct ra__item *it = list;
        list = it->next;
        ra__fail(it->r, "shutdown", "the node stopped before the change was confirmed");
        free(it);
    }
}

void lmq_raft_admin_members(struct lmq_raft_node *n, char *buf, size_t cap)
{
    struct lmq_raft_member_info m[LMQ_RAFT_MAX_MEMBERS];
    size_t k = lmq_raft_members(n, m, LMQ_RAFT_MAX_MEMBERS), o = 0;
    if (cap == 0)
        return;
    buf[0] = '\0';
    for (size_t i = 0; i < k && i < LMQ_RAFT_MAX_MEMBERS; i++) {
        char line[LMQ_RAFT_ADDRESS_MAX + 48];
        int l = snprintf(line, sizeof line, "%" PRIu64 " %s %s\n", m[i].id, m[i].address,
                         ra__role(m[i].role));
        if (l < 0 || o + (size_t)l >= cap)
            break;
        memcpy(buf + o, line, (size_t)l + 1);
        o += (size_t)l;
    }
}
