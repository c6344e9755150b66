/* Raft-backed committer (see raft_committer.h). The raft thread runs its
 * own libuv loop: the Raft node, a uv_async the broker's thread wakes for
 * new proposals and for stop, and the batch timer. The leader has at most
 * one batch in flight: cut (check each record) -> encode -> propose ->
 * apply (append) -> result; records proposed meanwhile wait and form the
 * next batch. */
#include "cluster/raft_committer.h"

#include "cluster/batcher.h"

#include "cluster/raft_admin.h"
#include "cluster/raft_batch.h"
#include "cluster/raft_forward.h"
#include "identity/registry.h"
#include "identity/verify.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RC_BATCH_BYTES (64u << 20) /* one Raft command stays below max_payload */
#define RC_META "ledger-applied"

struct rc__origin {
    uint64_t id, seq;
};

/* What the ledger holds of the Raft log (the ledger-applied file). */
struct rc__meta {
    uint64_t index; /* last Raft index applied (or skipped) */
    uint64_t size;  /* ledger size after it */
    struct rc__origin origins[LMQ_RAFT_MAX_MEMBERS * 4];
    size_t n_origins;
};

struct rc {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    /* shared, under mu */
    struct lmq_batch_item *q_head, *q_tail;
    size_t q_count;
    struct lmq_batch *r_head, *r_tail;
    bool stopping;
    int started; /* 0 starting, 1 running, -1 failed */
    char why[200];
    struct lmq_committer_status st; /* role strings are static */
    /* raft thread */
    uv_loop_t loop;
    uv_async_t async;
    uv_timer_t timer;
    struct lmq_raft_node *node;
    bool node_stopping;
    struct ledger *l;
    struct registry *reg;
    struct lmq_batcher_options o;
    struct lmq_fsm_ops fsm;
    void *fsm_ctx;
    void (*notify)(void *);
    void *nctx;
    struct ledger_record_buf *recs;
    struct lmq_batch_item **app;
    size_t n_app;
    struct lmq_batch *inflight;
    uint64_t inflight_seq;
    uint64_t own_index; /* Raft index of our last batch that rc__apply answered */
    uint64_t next_seq;
    struct rc__meta meta;
    char meta_path[PATH_MAX];
    bool broken; /* an append failed: this ledger no longer follows the log */
    struct lmq_raft_forward *fwd; /* a follower's batches to the leader; NULL: refused */
    struct lmq_raft_admin *admin; /* $ledger/admin/cluster requests (raft_admin.h) */
};

static struct lmq_raft_committer_config rc__cfg;
static struct lmq_raft_member rc__members[LMQ_RAFT_MAX_MEMBERS];
static char rc__dir[PATH_MAX], rc__cert[PATH_MAX], rc__key[PATH_MAX], rc__ca[PATH_MAX],
    rc__bind[LMQ_RAFT_ADDRESS_MAX];
static bool rc__configured;

static int rc__copy(char *dst, size_t cap, const char *src, const char **out)
{
    if (!src) {
        *out = NULL;
        return 0;
    }
    if (strlen(src) >= cap)
        return -1;
    strcpy(dst, src);
    *out = dst;
    return 0;
}

int lmq_raft_committer_setup(const struct lmq_raft_committer_config *c)
{
    if (c->node.n_members == 0 || c->node.n_members > LMQ_RAFT_MAX_MEMBERS || !c->node.dir)
        return -1;
    rc__cfg = *c;
    memcpy(rc__members, c->node.members, c->node.n_members * sizeof *rc__members);
    rc__cfg.node.members = rc__members;
    if (rc__copy(rc__dir, sizeof rc__dir, c->node.dir, &rc__cfg.node.dir) < 0 ||
        rc__copy(rc__cert, sizeof rc__cert, c->node.tls_certfile, &rc__cfg.node.tls_certfile) < 0 ||
        rc__copy(rc__key, sizeof rc__key, c->node.tls_keyfile, &rc__cfg.node.tls_keyfile) < 0 ||
        rc__copy(rc__ca, sizeof rc__ca, c->node.tls_cafile, &rc__cfg.node.tls_cafile) < 0 ||
        rc__copy(rc__bind, sizeof rc__bind, c->node.bind_address, &rc__cfg.node.bind_address) < 0)
        return -1;
    rc__configured = true;
    return 0;
}

static uint64_t rc__wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t rc__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------ */
/* the ledger-applied file */

static int rc__meta_load(struct rc *rc)
{
    memset(&rc->meta, 0, sizeof rc->meta);
    FILE *f = fopen(rc->meta_path, "r");
    if (!f) {
        if (errno != ENOENT)
            return -1;
        /* First start in a cluster: whatever the ledger holds already is
         * the common starting point (normally nothing). */
        rc->meta.size = ledger_size(rc->l);
        return 0;
    }
    char line[128];
    int rv = 0;
    if (!fgets(line, sizeof line, f) || strcmp(line, "ledgermq-raft-applied 1\n") != 0)
        rv = -1;
    while (rv == 0 && fgets(line, sizeof line, f)) {
        uint64_t a, b;
        if (sscanf(line, "index %" SCNu64, &a) == 1) {
            rc->meta.index = a;
        } else if (sscanf(line, "size %" SCNu64, &a) == 1) {
            rc->meta.size = a;
        } else if (sscanf(line, "origin %" SCNu64 " %" SCNu64, &a, &b) == 2 &&
                   rc->meta.n_origins < sizeof rc->meta.origins / sizeof rc->meta.origins[0]) {
            rc->meta.origins[rc->meta.n_origins].id = a;
            rc->meta.origins[rc->meta.n_origins++].seq = b;
        } else {
            rv = -1;
        }
    }
    fclose(f);
    return rv;
}

static int rc__meta_save(struct rc *rc)
{
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", rc->meta_path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    char buf[4096];
    int n =
        snprintf(buf, sizeof buf, "ledgermq-raft-applied 1\nindex %" PRIu64 "\nsize %" PRIu64 "\n",
                 rc->meta.index, rc->meta.size);
    for (size_t i = 0; i < rc->meta.n_origins && n > 0 && (size_t)n < sizeof buf; i++)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "origin %" PRIu64 " %" PRIu64 "\n",
                      rc->meta.origins[i].id, rc->meta.origins[i].seq);
    int rv = -1;
    if (n > 0 && (size_t)n < sizeof buf && write(fd, buf, (size_t)n) == n && fdatasync(fd) == 0)
        rv = 0;
    close(fd);
    if (rv == 0 && rename(tmp, rc->meta_path) != 0)
        rv = -1;
    if (rv < 0)
        LMQ_ERROR("cluster: writing %s failed: %s", rc->meta_path, strerror(errno));
    return rv;
}

static struct rc__origin *rc__origin(struct rc *rc, uint64_t id, bool add)
{
    for (size_t i = 0; i < rc->meta.n_origins; i++)
        if (rc->meta.origins[i].id == id)
            return &rc->meta.origins[i];
    if (!add || rc->meta.n_origins == sizeof rc->meta.origins / sizeof rc->meta.origins[0])
        return NULL;
    struct rc__origin *o = &rc->meta.origins[rc->meta.n_origins++];
    o->id = id;
    o->seq = 0;
    return o;
}

/* ------------------------------------------------------------------ */
/* results (raft thread -> broker's thread) */

static void rc__emit(struct rc *rc, struct lmq_batch *res)
{
    pthread_mutex_lock(&rc->mu);
    bool was_empty = rc->r_head == NULL;
    if (rc->r_tail)
        rc->r_tail->next = res;
    else
        rc->r_head = res;
    rc->r_tail = res;
    pthread_mutex_unlock(&rc->mu);
    if (was_empty && rc->notify)
        rc->notify(rc->nctx);
}

/* Every item of LIST comes back with STATUS, nothing appended. */
static void rc__refuse_all(struct rc *rc, struct lmq_batch_item *list, int status)
{
    if (!list)
        return;
    struct lmq_batch *res = calloc(1, sizeof *res);
    if (!res) {
        LMQ_ERROR("cluster: out of memory for a batch result");
        return; /* the items stay unanswered: their publishers time out */
    }
    size_t n = 0;
    for (struct lmq_batch_item *it = list; it; it = it->next, n++) {
        it->status = status;
        it->index = 0;
    }
    res->items = list;
    res->n_items = n;
    rc__emit(rc, res);
}

static void rc__set_why(struct rc *rc)
{
    uint64_t id = 0;
    const char *addr = NULL;
    char why[sizeof rc->why];
    if (rc->node && !rc->node_stopping) /* no calls on a node being stopped */
        lmq_raft_leader(rc->node, &id, &addr);
    if (rc->node_stopping)
        snprintf(why, sizeof why, "not the leader: node stopping");
    else if (id && addr && id != rc__cfg.node.id)
        snprintf(why, sizeof why, "not the leader: node %" PRIu64 " at %s", id, addr);
    else if (id == rc__cfg.node.id)
        snprintf(why, sizeof why, "leadership changed, retry");
    else
        snprintf(why, sizeof why, "not the leader: no leader known");
    pthread_mutex_lock(&rc->mu);
    memcpy(rc->why, why, sizeof why);
    pthread_mutex_unlock(&rc->mu);
}

/* The status that $SYS shows, refreshed on state changes and applies. */
static void rc__set_status(struct rc *rc)
{
    struct lmq_committer_status st;
    memset(&st, 0, sizeof st);
    st.node_id = rc__cfg.node.id;
    st.applied_index = rc->meta.index;
    if (rc->node && !rc->node_stopping) {
        const char *addr = NULL;
        st.role = lmq_raft_state_name(lmq_raft_state(rc->node));
        st.term = lmq_raft_term(rc->node);
        lmq_raft_leader(rc->node, &st.leader_id, &addr);
        if (addr)
            snprintf(st.leader_address, sizeof st.leader_address, "%s", addr);
        lmq_raft_admin_members(rc->node, st.members, sizeof st.members);
    } else {
        st.role = "unavailable";
    }
    pthread_mutex_lock(&rc->mu);
    rc->st = st;
    pthread_mutex_unlock(&rc->mu);
}

/* ------------------------------------------------------------------ */
/* the leader's side: cut, check, propose */

static void rc__cut(struct rc *rc);

/* The batch in flight comes back with STATUS; a refusal's reason string
 * is WHY, or (NULL) what rc__set_why says now. */
static void rc__inflight_fail_why(struct rc *rc, int status, const char *why)
{
    struct lmq_batch *res = rc->inflight;
    rc->inflight = NULL;
    for (size_t i = 0; i < rc->n_app; i++)
        rc->app[i]->status = status;
    rc->n_app = 0;
    if (why) {
        pthread_mutex_lock(&rc->mu);
        snprintf(rc->why, sizeof rc->why, "%s", why);
        pthread_mutex_unlock(&rc->mu);
    } else {
        rc__set_why(rc);
    }
    rc__emit(rc, res);
}

static void rc__inflight_fail(struct rc *rc, int status)
{
    rc__inflight_fail_why(rc, status, NULL);
}

static void rc__propose_cb(void *ctx, int status, uint64_t index, int result)
{
    struct rc *rc = ctx;
    (void)result;
    /* Applied, and answered by rc__apply. libraft may call this after the
     * loop ran again, when the next batch is in flight already: that one
     * is not this callback's. */
    if (!rc->inflight || (status == 0 && index != 0 && index == rc->own_index))
        return;
    /* Lost or shut down before it was applied here: the outcome is
     * unknown (it may still commit), so never an ack. */
    LMQ_NOTICE("cluster: batch %" PRIu64 " not confirmed: %s", rc->inflight_seq,
               status == 0 ? "applied elsewhere in the log" : lmq_raft_strerror(status));
    rc__inflight_fail(rc, status == 0 ? LMQ_BATCH_ERR_IO : LMQ_BATCH_ERR_NOT_LEADER);
    rc__cut(rc);
}

/* Takes the next batch off the queue and proposes it (leader), or refuses
 * the queue (not the leader). Only when nothing is in flight. */
static void rc__cut(struct rc *rc)
{
    if (rc->inflight || rc->node_stopping)
        return;
    pthread_mutex_lock(&rc->mu);
    struct lmq_batch_item *items = rc->q_head;
    if (!items) {
        pthread_mutex_unlock(&rc->mu);
        return;
    }
    bool leader = !rc->broken && lmq_raft_state(rc->node) == LMQ_RAFT_LEADER;
    if (!leader && (rc->broken || !rc->fwd)) { /* else forwarded to the leader */
        rc->q_head = rc->q_tail = NULL;
        rc->q_count = 0;
        pthread_mutex_unlock(&rc->mu);
        rc__set_why(rc);
        rc__refuse_all(rc, items, LMQ_BATCH_ERR_NOT_LEADER);
        return;
    }
    struct lmq_batch_item *it = items;
    size_t n = 1;
    uint64_t bytes = it->len;
    while (n < rc->o.batch_max && it->next && bytes + it->next->len <= RC_BATCH_BYTES) {
        it = it->next;
        bytes += it->len;
        n++;
    }
    rc->q_head = it->next;
    if (!rc->q_head)
        rc->q_tail = NULL;
    it->next = NULL;
    rc->q_count -= n;
    pthread_mutex_unlock(&rc->mu);

    struct lmq_batch *res = calloc(1, sizeof *res);
    if (!res) {
        LMQ_ERROR("cluster: out of memory for a batch; its records are refused");
        rc__refuse_all(rc, items, LMQ_BATCH_ERR_IO);
        return;
    }
    /* No checks here: every node (this one included) runs the state
     * machine on the committed entry (rc__apply), so the command carries
     * every record taken, with its flags. */
    size_t n_app = 0;
    for (struct lmq_batch_item *x = items; x; x = x->next)
        rc->app[n_app++] = x;
    res->items = items;
    res->n_items = n_app;
    rc->n_app = n_app;
    rc->inflight = res;
    int rv = rc->fsm.prepare ? rc->fsm.prepare(rc->fsm_ctx, rc->app, n_app) : 0;
    if (rv < 0) {
        LMQ_ERROR("cluster: preparing a batch of %zu records failed", n_app);
        rc__inflight_fail(rc, LMQ_BATCH_ERR_IO);
        uv_async_send(&rc->async);
        return;
    }
    uint8_t *cmd = NULL;
    size_t cmd_len = 0;
    uint64_t seq = rc->next_seq++;
    rv = lmq_raft_batch_encode(rc__cfg.node.id, seq, items, n_app, &cmd, &cmd_len);
    if (rv == 0) {
        rc->inflight_seq = seq;
        rv = leader ? lmq_raft_propose(rc->node, cmd, cmd_len, rc__propose_cb, rc)
                    : lmq_raft_forward_submit(rc->fwd, seq, cmd, cmd_len);
        free(cmd);
        if (rv == 0)
            return;
        LMQ_NOTICE("cluster: proposing batch %" PRIu64 " (%zu records) failed: %s", seq, n_app,
                   lmq_raft_strerror(rv));
        rc__inflight_fail(rc, rv == LMQ_RAFT_ERR_NOT_LEADER || rv == LMQ_RAFT_ERR_SHUTDOWN
                                  ? LMQ_BATCH_ERR_NOT_LEADER
                                  : LMQ_BATCH_ERR_IO);
    } else {
        LMQ_ERROR("cluster: encoding a batch failed: %s", lmq_raft_batch_strerror(rv));
        rc__inflight_fail(rc, LMQ_BATCH_ERR_IO);
    }
    uv_async_send(&rc->async);
}

/* ------------------------------------------------------------------ */
/* apply: every node, in log order */

/* One block of our in-flight batch was appended at COMMIT (NULL: the
 * records ITEMS..LAST were all refused or duplicates): their results, as
 * one lmq_batch (RES, or a new one), are linked at **TAIL, to be emitted
 * (rc__emit_all) once the entry is recorded in ledger-applied. */
static void rc__own_result(struct rc *rc, struct lmq_batch *res, struct lmq_batch_item **items,
                           size_t n, const struct ledger_commit *commit, uint64_t commit_us,
                           struct lmq_batch ***tail)
{
    if (!res && !(res = calloc(1, sizeof *res))) {
        LMQ_ERROR("cluster: out of memory for a batch result");
        return; /* the items stay unanswered: their publishers time out */
    }
    for (size_t i = 0; i < n; i++)
        items[i]->next = i + 1 < n ? items[i + 1] : NULL;
    res->items = n ? items[0] : NULL;
    res->n_items = n;
    res->commit_us = commit_us;
    uint64_t t1 = rc__now_ns(), first_q = UINT64_MAX;
    for (size_t i = 0; i < n; i++) {
        if (items[i]->status == LMQ_BATCH_APPENDED)
            res->n_appended++;
        if (items[i]->queued_ns < first_q)
            first_q = items[i]->queued_ns;
    }
    res->latency_us = first_q <= t1 ? (t1 - first_q) / 1000 : 0;
    if (commit && res->n_appended) {
        res->commit = *commit;
        struct ledger_block blk;
        if (ledger_block(rc->l, commit->height, &blk) == 0)
            ledger_block_encode(&blk, res->header);
        char *cp = malloc(LEDGER_MAX_CHECKPOINT);
        size_t cl = 0;
        if (cp &&
            ledger_block_checkpoint(rc->l, commit->height, cp, LEDGER_MAX_CHECKPOINT, &cl) == 0) {
            res->checkpoint = cp;
            res->checkpoint_len = cl;
        } else {
            free(cp);
        }
    }
    if (rc->fsm.items_done)
        rc->fsm.items_done(rc->fsm_ctx, items, n);
    res->next = NULL;
    **tail = res;
    *tail = &res->next;
}

static void rc__emit_all(struct rc *rc, struct lmq_batch *list)
{
    while (list) {
        struct lmq_batch *next = list->next;
        list->next = NULL;
        rc__emit(rc, list);
        list = next;
    }
}

/* Why the state machine refused a record (for the log line every node
 * writes alike). */
static const char *rc__refusal_text(int code)
{
    if (code <= -2400 && code >= -2499)
        return registry_strerror(code);
    if (code < 0 && code > -100)
        return verify_strerror(-code);
    return "refused";
}

/* The records of [meta.size, have) were appended from this entry before a
 * crash that came before the ledger-applied write: they must be, in
 * order, some of the entry's records (those it accepted). Marks them in
 * DONE and returns how many of the entry's records are settled (up to the
 * last one found), or -1 if the ledger holds something else. */
struct rc__match {
    const struct ledger_record_buf *recs;
    size_t n, at;
    uint8_t *done;
    bool bad;
};

static int rc__match_one(void *ctx, uint64_t index, const uint8_t *p, size_t len)
{
    struct rc__match *m = ctx;
    (void)index;
    while (m->at < m->n && (m->recs[m->at].len != len || memcmp(m->recs[m->at].data, p, len) != 0))
        m->at++;
    if (m->at == m->n) {
        m->bad = true;
        return 1;
    }
    m->done[m->at++] = 1;
    return 0;
}

static ssize_t rc__recover(struct rc *rc, const struct ledger_record_buf *recs, size_t n,
                           uint64_t have, uint8_t *done)
{
    struct rc__match m = {.recs = recs, .n = n, .done = done};
    int rv = ledger_scan(rc->l, rc->meta.size, have, rc__match_one, &m);
    if (m.bad || (rv != 0 && rv != 1))
        return -1;
    return (ssize_t)m.at;
}

static int rc__apply(void *ctx, uint64_t index, const uint8_t *data, size_t len)
{
    struct rc *rc = ctx;
    if (index <= rc->meta.index)
        return 0; /* in the ledger already (replay after a restart) */
    struct lmq_raft_batch b;
    int rv = lmq_raft_batch_open(&b, data, len);
    if (rv < 0) {
        LMQ_ERROR("cluster: entry %" PRIu64 " is not a ledger batch (%s); skipped", index,
                  lmq_raft_batch_strerror(rv));
        goto skipped;
    }
    struct rc__origin *o = rc__origin(rc, b.origin, true);
    if (!o) {
        LMQ_ERROR("cluster: entry %" PRIu64 ": too many origins; skipped", index);
        goto skipped;
    }
    if (b.seq <= o->seq) {
        LMQ_NOTICE("cluster: entry %" PRIu64 ": batch %" PRIu64 " of node %" PRIu64
                   " applied before; no-op",
                   index, b.seq, b.origin);
        goto skipped;
    }
    if (rc->broken)
        return -1;
    bool own = b.origin == rc__cfg.node.id && rc->inflight && b.seq == rc->inflight_seq;
    if (own && rc->n_app != b.n) {
        LMQ_ERROR("cluster: entry %" PRIu64 ": our batch %" PRIu64 " has %" PRIu32
                  " records, %zu proposed",
                  index, b.seq, b.n, rc->n_app);
        own = false;
    }
    struct ledger_record_buf *recs = calloc(b.n, sizeof *recs);
    struct ledger_record_buf *seg = calloc(b.n, sizeof *seg);
    uint8_t *flags = calloc(b.n, 1), *done = calloc(b.n, 1);
    int *st = calloc(b.n, sizeof *st);
    uint64_t *ix = calloc(b.n, sizeof *ix);
    if (!recs || !seg || !flags || !done || !st || !ix) {
        LMQ_ERROR("cluster: out of memory applying entry %" PRIu64, index);
        rc->broken = true;
        rv = -1;
        goto out;
    }
    size_t n = 0;
    const uint8_t *rec;
    size_t rl;
    while (lmq_raft_batch_next(&b, &rec, &rl)) {
        recs[n].data = rec;
        recs[n].len = rl;
        flags[n++] = b.flags;
    }
    size_t i = 0;
    uint64_t have = ledger_size(rc->l);
    if (have != rc->meta.size) {
        ssize_t k = have > rc->meta.size ? rc__recover(rc, recs, n, have, done) : -1;
        if (k < 0) {
            LMQ_ERROR("cluster: the ledger holds %" PRIu64 " records, %s says %" PRIu64
                      ": it no longer follows the Raft log; ledgered publishes are refused",
                      have, rc->meta_path, rc->meta.size);
            rc->broken = true;
            rv = -1;
            goto out;
        }
        /* Appended before a crash that came before the meta write: the
         * rest of the entry is checked against the log as it is now, as
         * it was then (each record is checked against the log before it). */
        LMQ_NOTICE("cluster: entry %" PRIu64 " was in the ledger already (records %" PRIu64
                   "..%" PRIu64 ")",
                   index, rc->meta.size, have - 1);
        if (rc->reg)
            registry_sync(rc->reg, rc->l, NULL, NULL, NULL);
        rc->fsm.end_records(rc->fsm_ctx, rc->l, NULL, 0, NULL, true);
        i = (size_t)k;
        own = false;
    }
    /* The state machine on every record, in order; a BARRIER closes a
     * block (several blocks per entry are possible). */
    size_t from = i;
    struct lmq_batch *done_list = NULL, **done_tail = &done_list;
    if (rc->fsm.begin_records)
        rc->fsm.begin_records(rc->fsm_ctx, rc->l, recs + i, n - i);
    while (i < n) {
        size_t na = 0, seg_from = i;
        for (; i < n; i++) {
            uint64_t dup = 0;
            int r = rc->fsm.check_record(rc->fsm_ctx, rc->l, recs[i].data, recs[i].len, flags[i],
                                         na == 0, &dup);
            if (r == LMQ_FSM_BARRIER && na > 0)
                break;
            if (r == LMQ_FSM_DUPLICATE) {
                st[i] = LMQ_BATCH_DUPLICATE;
                ix[i] = dup;
            } else if (r < 0) {
                st[i] = r;
                LMQ_NOTICE("cluster: entry %" PRIu64 " record %zu (batch %" PRIu64
                           " of node %" PRIu64 ") refused: %s (%d)",
                           index, i, b.seq, b.origin, rc__refusal_text(r), r);
            } else {
                st[i] = LMQ_BATCH_APPENDED;
                seg[na++] = recs[i];
            }
        }
        struct ledger_commit commit;
        memset(&commit, 0, sizeof commit);
        uint64_t t0 = rc__now_ns(), us = 0;
        if (na) {
            rv = ledger_append_batch(rc->l, seg, na, rc__wall_ms(), &commit);
            if (rv < 0) {
                LMQ_ERROR("cluster: appending entry %" PRIu64 " (%zu records) failed: %s; "
                          "ledgered publishes are refused until restart",
                          index, na, ledger_strerror(rv));
                rc->fsm.end_records(rc->fsm_ctx, rc->l, NULL, 0, NULL, true);
                rc->broken = true;
                if (own) {
                    for (size_t k = seg_from; k < n; k++)
                        rc->app[k]->status = LMQ_BATCH_ERR_IO;
                    rc__own_result(rc, seg_from == from ? rc->inflight : NULL, rc->app + seg_from,
                                   n - seg_from, NULL, 0, &done_tail);
                    rc->inflight = NULL;
                    rc->n_app = 0;
                }
                rc__emit_all(rc, done_list);
                rv = -1;
                goto out;
            }
            us = (rc__now_ns() - t0) / 1000;
            for (size_t k = seg_from, a = 0; k < i; k++)
                if (st[k] == LMQ_BATCH_APPENDED)
                    ix[k] = commit.first_index + a++;
        }
        rc->fsm.end_records(rc->fsm_ctx, rc->l, na ? seg : NULL, na, na ? &commit : NULL, false);
        if (own) {
            for (size_t k = seg_from; k < i; k++) {
                rc->app[k]->status = st[k];
                rc->app[k]->index = ix[k];
            }
            struct lmq_batch *res = seg_from == from ? rc->inflight : NULL;
            rc__own_result(rc, res, rc->app + seg_from, i - seg_from, na ? &commit : NULL, us,
                           &done_tail);
        }
    }
    lmq_raft_forward_applied(rc->fwd, b.origin, b.seq, st, ix, n); /* a follower's batch */
    o->seq = b.seq;
    rc->meta.index = index;
    rc->meta.size = ledger_size(rc->l);
    rc__meta_save(rc);
    rc__set_status(rc);
    rc__emit_all(rc, done_list); /* acks once ledger-applied says so too */
    if (own) {
        rc->inflight = NULL;
        rc->n_app = 0;
        rc->own_index = index;
        uv_async_send(&rc->async);
    }
    rv = 0;
out:
    free(recs);
    free(seg);
    free(flags);
    free(done);
    free(st);
    free(ix);
    return rv;
skipped:
    rc->meta.index = index;
    rc__meta_save(rc);
    return 0;
}

/* ------------------------------------------------------------------ */
/* the raft thread */

static void rc__on_state(void *ctx, int state, uint64_t term, uint64_t leader)
{
    struct rc *rc = ctx;
    (void)term;
    (void)leader;
    rc__set_why(rc);
    rc__set_status(rc);
    lmq_raft_forward_state(rc->fwd);
    if (state == LMQ_RAFT_LEADER)
        uv_async_send(&rc->async);
}

/* Forwarding (raft_forward.h): is our batch SEQ still unanswered? */
static bool rc__fwd_pending(void *ctx, uint64_t seq)
{
    struct rc *rc = ctx;
    return rc->inflight && rc->inflight_seq == seq;
}

/* Forwarding gave up on batch SEQ: its publishers get 0x97 with WHY. */
static void rc__fwd_failed(void *ctx, uint64_t seq, const char *why)
{
    struct rc *rc = ctx;
    if (!rc__fwd_pending(rc, seq))
        return;
    rc__inflight_fail_why(rc, LMQ_BATCH_ERR_NOT_LEADER, why);
    uv_async_send(&rc->async);
}

/* A membership change committed (raft_admin.h): $SYS shows the members. */
static void rc__admin_changed(void *ctx)
{
    rc__set_status(ctx);
}

static void rc__closed(uv_handle_t *h)
{
    (void)h;
}

static void rc__node_stopped(void *ctx)
{
    struct rc *rc = ctx;
    rc->node = NULL;
    lmq_raft_forward_free(rc->fwd); /* its proposals' callbacks have run */
    rc->fwd = NULL;
    pthread_mutex_lock(&rc->mu);
    struct lmq_batch_item *q = rc->q_head;
    rc->q_head = rc->q_tail = NULL;
    rc->q_count = 0;
    pthread_mutex_unlock(&rc->mu);
    rc__refuse_all(rc, q, LMQ_BATCH_ERR_NOT_LEADER);
    lmq_raft_admin_cancel(rc->admin);
    uv_close((uv_handle_t *)&rc->async, rc__closed);
    uv_close((uv_handle_t *)&rc->timer, rc__closed);
}

static void rc__timer_cb(uv_timer_t *t)
{
    rc__cut(t->data);
}

static void rc__async_cb(uv_async_t *a)
{
    struct rc *rc = a->data;
    pthread_mutex_lock(&rc->mu);
    bool stopping = rc->stopping;
    size_t q = rc->q_count;
    uint64_t first = rc->q_head ? rc->q_head->queued_ns : 0;
    pthread_mutex_unlock(&rc->mu);
    if (stopping) {
        if (!rc->node_stopping && rc->node) {
            rc->node_stopping = true;
            rc__set_why(rc);
            uv_timer_stop(&rc->timer);
            lmq_raft_forward_stop(rc->fwd);
            lmq_raft_node_stop(rc->node, rc__node_stopped, rc);
        }
        return;
    }
    if (rc->node)
        lmq_raft_admin_run(rc->admin, rc->node);
    if (!q || rc->inflight)
        return;
    uint64_t now = rc__now_ns(), wait_ms = 0;
    uint64_t deadline = first + (uint64_t)rc->o.batch_ms * 1000000u;
    if (q < rc->o.batch_max && deadline > now)
        wait_ms = (deadline - now + 999999u) / 1000000u;
    if (wait_ms == 0) {
        uv_timer_stop(&rc->timer);
        rc__cut(rc);
    } else if (!uv_is_active((uv_handle_t *)&rc->timer)) {
        uv_timer_start(&rc->timer, rc__timer_cb, wait_ms, 0);
    }
}

static void *rc__main(void *arg)
{
    struct rc *rc = arg;
    uv_run(&rc->loop, UV_RUN_DEFAULT);
    uv_loop_close(&rc->loop);
    return NULL;
}

static void rc__free(struct rc *rc)
{
    pthread_cond_destroy(&rc->cv);
    pthread_mutex_destroy(&rc->mu);
    free(rc->recs);
    free(rc->app);
    lmq_raft_admin_free(rc->admin);
    free(rc);
}

static void *rc__start(struct ledger *l, const struct lmq_batcher_options *o,
                       const struct lmq_fsm_ops *fsm, void *fsm_ctx, void (*notify)(void *nctx),
                       void *nctx)
{
    if (!rc__configured || !l || !o || !fsm || !fsm->check_record || !fsm->end_records ||
        o->batch_max < 1 || o->batch_max > LEDGER_MAX_BATCH) {
        errno = EINVAL;
        return NULL;
    }
    struct rc *rc = calloc(1, sizeof *rc);
    if (!rc)
        return NULL;
    pthread_mutex_init(&rc->mu, NULL);
    pthread_cond_init(&rc->cv, NULL);
    rc->l = l;
    rc->reg = rc__cfg.registry;
    rc->o = *o;
    rc->fsm = *fsm;
    rc->fsm_ctx = fsm_ctx;
    rc->notify = notify;
    rc->nctx = nctx;
    rc->recs = calloc(o->batch_max, sizeof *rc->recs);
    rc->app = calloc(o->batch_max, sizeof *rc->app);
    rc->admin = lmq_raft_admin_new(rc__admin_changed, rc);
    snprintf(rc->why, sizeof rc->why, "not the leader: no leader known");
    rc->st.role = "unavailable";
    rc->st.node_id = rc__cfg.node.id;
    if (!rc->recs || !rc->app || !rc->admin)
        goto fail;
    if (mkdir(rc__cfg.node.dir, 0700) != 0 && errno != EEXIST) {
        LMQ_ERROR("cluster: cannot create %s: %s", rc__cfg.node.dir, strerror(errno));
        goto fail;
    }
    snprintf(rc->meta_path, sizeof rc->meta_path, "%s/%s", rc__cfg.node.dir, RC_META);
    if (rc__meta_load(rc) < 0) {
        LMQ_ERROR("cluster: %s is damaged; not starting the cluster node", rc->meta_path);
        goto fail;
    }
    /* Batch sequence numbers only grow, also across restarts (an entry
     * proposed before a crash may still be in the Raft log unapplied, and
     * ledger-applied may lag the ledger by one entry): from the wall clock
     * in microseconds, which no run can outpace at one batch each. */
    struct rc__origin *self = rc__origin(rc, rc__cfg.node.id, false);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t t = (uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_nsec / 1000u;
    rc->next_seq = (self && self->seq >= t ? self->seq : t) + 1;
    if (uv_loop_init(&rc->loop) != 0)
        goto fail;
    uv_async_init(&rc->loop, &rc->async, rc__async_cb);
    rc->async.data = rc;
    uv_timer_init(&rc->loop, &rc->timer);
    rc->timer.data = rc;
    struct lmq_raft_node_options no = rc__cfg.node;
    no.fsm.apply = rc__apply;
    no.fsm.snapshot = NULL;
    no.fsm.restore = NULL;
    no.fsm_ctx = rc;
    no.on_state = rc__on_state;
    no.state_ctx = rc;
    /* no.join as configured (cluster_join): a node added to a running
     * cluster waits for the leader's `cluster add` instead of bootstrapping */
    int rv = lmq_raft_node_start(&rc->loop, &no, &rc->node);
    if (rv < 0) {
        LMQ_ERROR("cluster: the Raft node did not start: %s", lmq_raft_strerror(rv));
        uv_close((uv_handle_t *)&rc->async, NULL);
        uv_close((uv_handle_t *)&rc->timer, NULL);
        uv_run(&rc->loop, UV_RUN_DEFAULT);
        uv_loop_close(&rc->loop);
        goto fail;
    }
    if (rc__cfg.forward.enabled) {
        struct lmq_raft_forward_options fo = {
            .id = rc__cfg.node.id,
            .members = rc__cfg.node.members,
            .n_members = rc__cfg.node.n_members,
            .tls_certfile = rc__cfg.node.tls_certfile,
            .tls_keyfile = rc__cfg.node.tls_keyfile,
            .tls_cafile = rc__cfg.node.tls_cafile,
            .handshake_ms = rc__cfg.node.tls_handshake_ms,
            .port_offset = rc__cfg.forward.port_offset,
            .timeout_ms = rc__cfg.forward.timeout_ms,
            .max_inflight = rc__cfg.forward.max_inflight,
            .pending = rc__fwd_pending,
            .failed = rc__fwd_failed,
            .ctx = rc,
        };
        if (lmq_raft_forward_start(&rc->loop, rc->node, &fo, &rc->fwd) != 0)
            LMQ_ERROR("cluster: no cluster channel: a follower refuses ledgered publishes");
    }
    rv = pthread_create(&rc->thread, NULL, rc__main, rc);
    if (rv != 0) {
        /* cannot happen in practice; the node is left to the OS */
        errno = rv;
        return NULL;
    }
    LMQ_INFO("cluster: node %" PRIu64 " of %zu, Raft in %s, ledger at Raft index %" PRIu64
             " (%" PRIu64 " records)",
             rc__cfg.node.id, rc__cfg.node.n_members, rc__cfg.node.dir, rc->meta.index,
             rc->meta.size);
    return rc;
fail:
    rc__free(rc);
    errno = EIO;
    return NULL;
}

static void rc__propose(void *h, struct lmq_batch_item *it)
{
    struct rc *rc = h;
    it->next = NULL;
    it->status = 0;
    it->index = 0;
    it->queued_ns = rc__now_ns();
    pthread_mutex_lock(&rc->mu);
    if (rc->q_tail)
        rc->q_tail->next = it;
    else
        rc->q_head = it;
    rc->q_tail = it;
    rc->q_count++;
    bool wake = rc->q_count == 1 || rc->q_count >= rc->o.batch_max;
    pthread_mutex_unlock(&rc->mu);
    if (wake)
        uv_async_send(&rc->async);
}

static struct lmq_batch *rc__poll(void *h)
{
    struct rc *rc = h;
    pthread_mutex_lock(&rc->mu);
    struct lmq_batch *r = rc->r_head;
    rc->r_head = rc->r_tail = NULL;
    pthread_mutex_unlock(&rc->mu);
    return r;
}

static void rc__batch_free(struct lmq_batch *b)
{
    if (!b)
        return;
    free(b->checkpoint);
    free(b);
}

static void rc__stop(void *h, void (*drain_cb)(void *ctx, struct lmq_batch *b), void *ctx)
{
    struct rc *rc = h;
    if (!rc)
        return;
    pthread_mutex_lock(&rc->mu);
    rc->stopping = true;
    pthread_mutex_unlock(&rc->mu);
    uv_async_send(&rc->async);
    pthread_join(rc->thread, NULL);
    struct lmq_batch *r = rc->r_head;
    rc->r_head = rc->r_tail = NULL;
    while (r) {
        struct lmq_batch *next = r->next;
        r->next = NULL;
        if (drain_cb)
            drain_cb(ctx, r);
        rc__batch_free(r);
        r = next;
    }
    rc__free(rc);
}

static void rc__refusal(void *h, char *buf, size_t cap)
{
    struct rc *rc = h;
    pthread_mutex_lock(&rc->mu);
    snprintf(buf, cap, "%s", rc->why);
    pthread_mutex_unlock(&rc->mu);
}

/* $ledger/admin/cluster: refused at once with 0x97 on a node that is not
 * the leader (the same reason string as a refused ledgered publish), else
 * queued for the raft thread, which answers through R->done. */
static uint8_t rc__admin(void *h, const uint8_t *req, size_t len, struct lmq_committer_admin *r,
                         char *why, size_t cap)
{
    struct rc *rc = h;
    pthread_mutex_lock(&rc->mu);
    bool leader = !rc->stopping && strcmp(rc->st.role, lmq_raft_state_name(LMQ_RAFT_LEADER)) == 0;
    if (!leader)
        snprintf(why, cap, "%s", rc->why);
    pthread_mutex_unlock(&rc->mu);
    if (!leader)
        return 0x97; /* MQTT 5 Quota exceeded: the refusal of a follower (docs/CLUSTER.md) */
    lmq_raft_admin_submit(rc->admin, req, len, r);
    uv_async_send(&rc->async);
    return 0;
}

static void rc__status(void *h, struct lmq_committer_status *st)
{
    struct rc *rc = h;
    pthread_mutex_lock(&rc->mu);
    *st = rc->st;
    pthread_mutex_unlock(&rc->mu);
}

const struct lmq_committer_ops lmq_raft_committer = {
    .start = rc__start,
    .propose = rc__propose,
    .poll = rc__poll,
    .batch_free = rc__batch_free,
    .stop = rc__stop,
    .refusal = rc__refusal,
    .status = rc__status,
    .admin = rc__admin,
};
