/* Batcher and committer thread (see batcher.h). One mutex guards the
 * proposal queue and the result list; the committer waits on a condition
 * variable (monotonic clock) for the first record and then for the batch
 * to fill or its time to pass. */
#include "cluster/batcher.h"

#include "util/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BT_BATCH_BYTES (256u << 20)

struct lmq_batcher {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    struct lmq_batch_item *q_head, *q_tail; /* proposed, not taken */
    size_t q_count;
    struct lmq_batch *r_head, *r_tail; /* processed, not polled */
    size_t outstanding;                /* owner's thread: proposed - polled */
    bool stopping;
    bool waiting; /* committer in its timed wait */
    struct ledger *l;
    struct lmq_batcher_options o;
    struct lmq_fsm_ops fsm;
    void *fsm_ctx;
    void (*notify)(void *);
    void *nctx;
    /* committer thread only */
    struct ledger_record_buf *recs;
    struct lmq_batch_item **app;
};

static uint64_t bt__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t bt__wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

struct lmq_batch_item *lmq_fsm_check_items(const struct lmq_fsm_ops *fsm, void *fsm_ctx,
                                           struct ledger *l, struct lmq_batch_item *items,
                                           struct ledger_record_buf *recs,
                                           struct lmq_batch_item **app, size_t *n_app,
                                           size_t *n_taken)
{
    size_t na = 0, nt = 0;
    struct lmq_batch_item *it = items, *last = NULL, *rest = NULL;
    for (; it; last = it, it = it->next) {
        uint64_t dup = 0;
        int rc = fsm->check(fsm_ctx, l, it, na == 0, &dup);
        if (rc == LMQ_FSM_BARRIER && na > 0) {
            rest = it;
            break;
        }
        nt++;
        if (rc == LMQ_FSM_DUPLICATE) {
            it->status = LMQ_BATCH_DUPLICATE;
            it->index = dup;
        } else if (rc < 0) {
            it->status = rc;
        } else {
            it->status = LMQ_BATCH_APPENDED;
            recs[na].data = it->rec;
            recs[na].len = it->len;
            app[na++] = it;
        }
    }
    if (last && rest)
        last->next = NULL;
    *n_app = na;
    *n_taken = nt;
    return rest;
}

/* Applies the items list (n items, taken off the queue). Returns the
 * items it did not get to (after a barrier), to be put back in front. */
static struct lmq_batch_item *bt__apply(struct lmq_batcher *bt, struct lmq_batch_item *items,
                                        struct lmq_batch *res)
{
    size_t n_app, n_taken;
    struct lmq_batch_item *rest = lmq_fsm_check_items(&bt->fsm, bt->fsm_ctx, bt->l, items, bt->recs,
                                                      bt->app, &n_app, &n_taken);
    res->items = items;
    res->n_items = n_taken;
    if (n_app == 0) {
        bt->fsm.end(bt->fsm_ctx, bt->l, NULL, 0, NULL, false);
        return rest;
    }
    uint64_t t0 = bt__now_ns();
    int rc = bt->fsm.prepare ? bt->fsm.prepare(bt->fsm_ctx, bt->app, n_app) : 0;
    bool prepared = rc == 0;
    if (rc == 0)
        rc = ledger_append_batch(bt->l, bt->recs, n_app, bt__wall_ms(), &res->commit);
    uint64_t t1 = bt__now_ns();
    res->commit_us = (t1 - t0) / 1000;
    uint64_t first_q = UINT64_MAX;
    for (size_t i = 0; i < n_app; i++)
        if (bt->app[i]->queued_ns < first_q)
            first_q = bt->app[i]->queued_ns;
    res->latency_us = first_q <= t1 ? (t1 - first_q) / 1000 : 0;
    if (rc < 0) {
        LMQ_ERROR("ledger: appending a batch of %zu records failed: %s", n_app,
                  prepared ? ledger_strerror(rc) : "preparing its records failed");
        res->status = rc;
        for (size_t i = 0; i < n_app; i++)
            bt->app[i]->status = LMQ_BATCH_ERR_IO;
        bt->fsm.end(bt->fsm_ctx, bt->l, NULL, 0, NULL, true);
        return rest;
    }
    res->n_appended = n_app;
    for (size_t i = 0; i < n_app; i++)
        bt->app[i]->index = res->commit.first_index + i;
    struct ledger_block blk;
    if (ledger_block(bt->l, res->commit.height, &blk) == 0)
        ledger_block_encode(&blk, res->header);
    char *cp = malloc(LEDGER_MAX_CHECKPOINT);
    size_t cl = 0;
    if (cp &&
        ledger_block_checkpoint(bt->l, res->commit.height, cp, LEDGER_MAX_CHECKPOINT, &cl) == 0) {
        res->checkpoint = cp;
        res->checkpoint_len = cl;
    } else {
        free(cp);
    }
    bt->fsm.end(bt->fsm_ctx, bt->l, bt->app, n_app, &res->commit, false);
    return rest;
}

static void *bt__main(void *arg)
{
    struct lmq_batcher *bt = arg;
    pthread_mutex_lock(&bt->mu);
    for (;;) {
        while (!bt->q_head && !bt->stopping)
            pthread_cond_wait(&bt->cv, &bt->mu);
        if (!bt->q_head)
            break; /* stopping, nothing left */
        uint64_t deadline = bt->q_head->queued_ns + (uint64_t)bt->o.batch_ms * 1000000u;
        while (bt->q_count < bt->o.batch_max && !bt->stopping) {
            uint64_t now = bt__now_ns();
            if (now >= deadline)
                break;
            struct timespec ts = {.tv_sec = (time_t)(deadline / 1000000000u),
                                  .tv_nsec = (long)(deadline % 1000000000u)};
            bt->waiting = true;
            pthread_cond_timedwait(&bt->cv, &bt->mu, &ts);
            bt->waiting = false;
        }
        /* Take up to batch_max records and BT_BATCH_BYTES (one write of a
         * batch must stay well below the ledger's 1 GiB per append). */
        struct lmq_batch_item *items = bt->q_head, *it = items;
        size_t n = 1;
        uint64_t bytes = it->len;
        while (n < bt->o.batch_max && it->next && bytes + it->next->len <= BT_BATCH_BYTES) {
            it = it->next;
            bytes += it->len;
            n++;
        }
        bt->q_head = it->next;
        if (!bt->q_head)
            bt->q_tail = NULL;
        it->next = NULL;
        bt->q_count -= n;
        pthread_mutex_unlock(&bt->mu);

        struct lmq_batch *res = calloc(1, sizeof *res);
        struct lmq_batch_item *rest = NULL;
        if (!res) {
            /* Out of memory: the items cannot even be reported; retry. */
            LMQ_ERROR("ledger: out of memory for a batch result; retrying");
            rest = items;
        } else {
            rest = bt__apply(bt, items, res);
        }

        pthread_mutex_lock(&bt->mu);
        if (rest) {
            struct lmq_batch_item *t = rest;
            size_t k = 1;
            while (t->next) {
                t = t->next;
                k++;
            }
            t->next = bt->q_head;
            bt->q_head = rest;
            if (!bt->q_tail)
                bt->q_tail = t;
            bt->q_count += k;
        }
        if (res) {
            bool was_empty = bt->r_head == NULL;
            if (bt->r_tail)
                bt->r_tail->next = res;
            else
                bt->r_head = res;
            bt->r_tail = res;
            if (was_empty && bt->notify) {
                pthread_mutex_unlock(&bt->mu);
                bt->notify(bt->nctx);
                pthread_mutex_lock(&bt->mu);
            }
        } else {
            pthread_mutex_unlock(&bt->mu);
            struct timespec ts = {0, 10000000};
            nanosleep(&ts, NULL);
            pthread_mutex_lock(&bt->mu);
        }
    }
    pthread_mutex_unlock(&bt->mu);
    return NULL;
}

struct lmq_batcher *lmq_batcher_new(struct ledger *l, const struct lmq_batcher_options *o,
                                    const struct lmq_fsm_ops *fsm, void *fsm_ctx,
                                    void (*notify)(void *nctx), void *nctx)
{
    if (!l || !o || !fsm || !fsm->check || !fsm->end || o->batch_max < 1 ||
        o->batch_max > LEDGER_MAX_BATCH) {
        errno = EINVAL;
        return NULL;
    }
    struct lmq_batcher *bt = calloc(1, sizeof *bt);
    if (!bt)
        return NULL;
    bt->l = l;
    bt->o = *o;
    bt->fsm = *fsm;
    bt->fsm_ctx = fsm_ctx;
    bt->notify = notify;
    bt->nctx = nctx;
    bt->recs = calloc(o->batch_max, sizeof *bt->recs);
    bt->app = calloc(o->batch_max, sizeof *bt->app);
    if (!bt->recs || !bt->app) {
        free(bt->recs);
        free(bt->app);
        free(bt);
        errno = ENOMEM;
        return NULL;
    }
    pthread_mutex_init(&bt->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&bt->cv, &ca);
    pthread_condattr_destroy(&ca);
    int rc = pthread_create(&bt->thread, NULL, bt__main, bt);
    if (rc != 0) {
        pthread_cond_destroy(&bt->cv);
        pthread_mutex_destroy(&bt->mu);
        free(bt->recs);
        free(bt->app);
        free(bt);
        errno = rc;
        return NULL;
    }
    return bt;
}

void lmq_batcher_propose(struct lmq_batcher *bt, struct lmq_batch_item *it)
{
    it->next = NULL;
    it->status = 0;
    it->index = 0;
    it->queued_ns = bt__now_ns();
    bt->outstanding++;
    pthread_mutex_lock(&bt->mu);
    if (bt->q_tail)
        bt->q_tail->next = it;
    else
        bt->q_head = it;
    bt->q_tail = it;
    bt->q_count++;
    /* Wake the committer for the first record of a batch, and when the
     * batch is full while it waits for the batch time. */
    if (bt->q_count == 1 || (bt->waiting && bt->q_count >= bt->o.batch_max))
        pthread_cond_signal(&bt->cv);
    pthread_mutex_unlock(&bt->mu);
}

struct lmq_batch *lmq_batcher_poll(struct lmq_batcher *bt)
{
    pthread_mutex_lock(&bt->mu);
    struct lmq_batch *r = bt->r_head;
    bt->r_head = bt->r_tail = NULL;
    pthread_mutex_unlock(&bt->mu);
    for (struct lmq_batch *b = r; b; b = b->next)
        bt->outstanding -= b->n_items;
    return r;
}

void lmq_batch_free(struct lmq_batch *b)
{
    if (!b)
        return;
    free(b->checkpoint);
    free(b);
}

size_t lmq_batcher_pending(const struct lmq_batcher *bt)
{
    return bt->outstanding;
}

void lmq_batcher_free(struct lmq_batcher *bt, void (*drain_cb)(void *ctx, struct lmq_batch *b),
                      void *ctx)
{
    if (!bt)
        return;
    pthread_mutex_lock(&bt->mu);
    bt->stopping = true;
    pthread_cond_broadcast(&bt->cv);
    pthread_mutex_unlock(&bt->mu);
    pthread_join(bt->thread, NULL);
    struct lmq_batch *r = bt->r_head;
    while (r) {
        struct lmq_batch *next = r->next;
        r->next = NULL;
        if (drain_cb)
            drain_cb(ctx, r);
        lmq_batch_free(r);
        r = next;
    }
    pthread_cond_destroy(&bt->cv);
    pthread_mutex_destroy(&bt->mu);
    free(bt->recs);
    free(bt->app);
    free(bt);
}

static void *bt__start(struct ledger *l, const struct lmq_batcher_options *o,
                       const struct lmq_fsm_ops *fsm, void *fsm_ctx, void (*notify)(void *nctx),
                       void *nctx)
{
    return lmq_batcher_new(l, o, fsm, fsm_ctx, notify, nctx);
}

static void bt__propose(void *h, struct lmq_batch_item *it)
{
    lmq_batcher_propose(h, it);
}

static struct lmq_batch *bt__poll(void *h)
{
    return lmq_batcher_poll(h);
}

static void bt__stop(void *h, void (*drain_cb)(void *ctx, struct lmq_batch *b), void *ctx)
{
    lmq_batcher_free(h, drain_cb, ctx);
}

const struct lmq_committer_ops lmq_batcher_committer = {
    .start = bt__start,
    .propose = bt__propose,
    .poll = bt__poll,
    .batch_free = lmq_batch_free,
    .stop = bt__stop,
};
