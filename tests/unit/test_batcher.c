/* Tests of src/cluster/batcher.c: records come back in proposal order
 * with contiguous indices and are in the log; a batch never exceeds
 * batch_max; check's verdicts (refuse, duplicate, barrier) are honoured;
 * the end hook sees what was appended; a batch waits for batch_ms before
 * it is cut; free commits what is still queued. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cluster/batcher.h"
#include "ledger/log.h"
#include "util/log.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int notified;

static void notify(void *ctx)
{
    (void)ctx;
    pthread_mutex_lock(&mu);
    notified++;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}

struct rec {
    struct lmq_batch_item it;
    int verdict; /* what check returns */
    uint8_t bytes[16];
    int seen_end;
};

struct fsm {
    int checks, ends, appended_total, batches_with_records, prepares;
    bool barrier_first_seen;
};

static int f_check(void *ctx, struct ledger *l, struct lmq_batch_item *it, bool first,
                   uint64_t *dup)
{
    (void)l;
    struct fsm *f = ctx;
    struct rec *r = it->arg;
    f->checks++;
    if (r->verdict == LMQ_FSM_BARRIER && first)
        f->barrier_first_seen = true;
    if (r->verdict == LMQ_FSM_DUPLICATE)
        *dup = 4242;
    return r->verdict;
}

static int f_prepare(void *ctx, struct lmq_batch_item *const *items, size_t n)
{
    (void)items;
    (void)n;
    ((struct fsm *)ctx)->prepares++;
    return 0;
}

static void f_end(void *ctx, struct ledger *l, struct lmq_batch_item *const *items, size_t n,
                  const struct ledger_commit *c, bool failed)
{
    struct fsm *f = ctx;
    assert_false(failed);
    f->ends++;
    if (c) {
        assert_int_equal(c->count, n);
        assert_int_equal(ledger_size(l), c->tree_size);
        f->appended_total += (int)n;
        f->batches_with_records++;
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(items[i]->index, c->first_index + i);
            ((struct rec *)items[i]->arg)->seen_end++;
        }
    }
}

static const struct lmq_fsm_ops ops = {.check = f_check, .prepare = f_prepare, .end = f_end};

static char dir[128];

static struct ledger *open_ledger(void)
{
    snprintf(dir, sizeof dir, "/tmp/lmq-test-batcher-XXXXXX");
    assert_non_null(mkdtemp(dir));
    struct ledger_options lo;
    ledger_options_default(&lo);
    lo.sync = LEDGER_SYNC_BATCH;
    struct ledger *l;
    char err[512];
    assert_int_equal(ledger_open(dir, &lo, &l, err, sizeof err), 0);
    return l;
}

static void close_ledger(struct ledger *l)
{
    ledger_close(l);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void make(struct rec *r, int i, int verdict)
{
    memset(r, 0, sizeof *r);
    /* a record: CBOR text "rec-NNNN" (the ledger does not decode it) */
    int n = snprintf((char *)r->bytes + 1, sizeof r->bytes - 1, "rec-%04d", i);
    r->bytes[0] = (uint8_t)(0x60 + n);
    r->it.rec = r->bytes;
    r->it.len = (size_t)n + 1;
    r->it.arg = r;
    r->verdict = verdict;
}

/* Polls until N items came back; returns the batches in order. */
static size_t collect(struct lmq_batcher *bt, size_t n, struct lmq_batch **out, size_t cap)
{
    size_t got = 0, nb = 0;
    while (got < n) {
        pthread_mutex_lock(&mu);
        while (!notified)
            pthread_cond_wait(&cv, &mu);
        notified = 0;
        pthread_mutex_unlock(&mu);
        for (struct lmq_batch *b = lmq_batcher_poll(bt); b;) {
            struct lmq_batch *next = b->next;
            assert_true(nb < cap);
            out[nb++] = b;
            got += b->n_items;
            b = next;
        }
    }
    return nb;
}

static void test_order_and_max(void **state)
{
    (void)state;
    struct ledger *l = open_ledger();
    struct fsm f = {0};
    struct lmq_batcher_options o = {.batch_max = 4, .batch_ms = 50};
    struct lmq_batcher *bt = lmq_batcher_new(l, &o, &ops, &f, notify, NULL);
    assert_non_null(bt);
    enum { N = 30 };
    static struct rec r[N];
    for (int i = 0; i < N; i++) {
        make(&r[i], i, LMQ_FSM_APPEND);
        lmq_batcher_propose(bt, &r[i].it);
    }
    assert_int_equal(lmq_batcher_pending(bt), N);
    struct lmq_batch *bs[N];
    size_t nb = collect(bt, N, bs, N);
    assert_int_equal(lmq_batcher_pending(bt), 0);
    int k = 0;
    for (size_t i = 0; i < nb; i++) {
        assert_true(bs[i]->n_items <= 4);
        assert_int_equal(bs[i]->status, 0);
        assert_int_equal(bs[i]->n_appended, bs[i]->n_items);
        assert_non_null(bs[i]->checkpoint);
        assert_non_null(strstr(bs[i]->checkpoint, "\n"));
        for (struct lmq_batch_item *it = bs[i]->items; it; it = it->next, k++) {
            assert_ptr_equal(it, &r[k].it);
            assert_int_equal(it->status, LMQ_BATCH_APPENDED);
            assert_int_equal(it->index, (uint64_t)k);
        }
        lmq_batch_free(bs[i]);
    }
    assert_int_equal(k, N);
    assert_int_equal(f.appended_total, N);
    lmq_batcher_free(bt, NULL, NULL);
    assert_int_equal(ledger_size(l), N);
    for (int i = 0; i < N; i++) {
        uint8_t buf[32];
        size_t len;
        assert_int_equal(ledger_get(l, (uint64_t)i, buf, sizeof buf, &len), 0);
        assert_int_equal(len, r[i].it.len);
        assert_memory_equal(buf, r[i].bytes, len);
        assert_int_equal(r[i].seen_end, 1);
    }
    close_ledger(l);
}

static void test_verdicts(void **state)
{
    (void)state;
    struct ledger *l = open_ledger();
    struct fsm f = {0};
    struct lmq_batcher_options o = {.batch_max = 100, .batch_ms = 1000};
    struct lmq_batcher *bt = lmq_batcher_new(l, &o, &ops, &f, notify, NULL);
    assert_non_null(bt);
    static struct rec r[6];
    make(&r[0], 0, LMQ_FSM_APPEND);
    make(&r[1], 1, -7);                /* refused */
    make(&r[2], 2, LMQ_FSM_DUPLICATE); /* already in the log */
    make(&r[3], 3, LMQ_FSM_BARRIER);   /* must start a new batch */
    make(&r[4], 4, LMQ_FSM_APPEND);
    make(&r[5], 5, -9);
    for (int i = 0; i < 6; i++)
        lmq_batcher_propose(bt, &r[i].it);
    /* The batch stays open for batch_ms: nothing can be back yet. */
    assert_null(lmq_batcher_poll(bt));
    struct lmq_batch *bs[8];
    size_t nb = collect(bt, 6, bs, 8);
    /* batch 1: r0 appended, r1 refused, r2 duplicate; barrier at r3 */
    assert_int_equal(nb, 2);
    assert_int_equal(bs[0]->n_items, 3);
    assert_int_equal(bs[0]->n_appended, 1);
    assert_int_equal(bs[1]->n_items, 3);
    assert_int_equal(bs[1]->n_appended, 2);
    assert_true(f.barrier_first_seen);
    assert_int_equal(r[0].it.status, LMQ_BATCH_APPENDED);
    assert_int_equal(r[0].it.index, 0);
    assert_int_equal(r[1].it.status, -7);
    assert_int_equal(r[2].it.status, LMQ_BATCH_DUPLICATE);
    assert_int_equal(r[2].it.index, 4242);
    assert_int_equal(r[3].it.status, LMQ_BATCH_APPENDED);
    assert_int_equal(r[3].it.index, 1);
    assert_int_equal(r[4].it.index, 2);
    assert_int_equal(r[5].it.status, -9);
    assert_int_equal(bs[1]->commit.height, 1);
    for (size_t i = 0; i < nb; i++)
        lmq_batch_free(bs[i]);
    assert_int_equal(f.prepares, 2);
    assert_int_equal(f.ends, 2);
    lmq_batcher_free(bt, NULL, NULL);
    assert_int_equal(ledger_size(l), 3);
    close_ledger(l);
}

static int drained;
static void drain_cb(void *ctx, struct lmq_batch *b)
{
    (void)ctx;
    drained += (int)b->n_items;
}

/* Free commits what is queued even inside its batch time, and hands the
 * batches nobody polled to the drain callback. */
static void test_free_commits(void **state)
{
    (void)state;
    struct ledger *l = open_ledger();
    struct fsm f = {0};
    struct lmq_batcher_options o = {.batch_max = 1000, .batch_ms = 10000};
    struct lmq_batcher *bt = lmq_batcher_new(l, &o, &ops, &f, NULL, NULL);
    assert_non_null(bt);
    static struct rec r[5];
    for (int i = 0; i < 5; i++) {
        make(&r[i], i, LMQ_FSM_APPEND);
        lmq_batcher_propose(bt, &r[i].it);
    }
    drained = 0;
    lmq_batcher_free(bt, drain_cb, NULL);
    assert_int_equal(drained, 5);
    assert_int_equal(ledger_size(l), 5);
    assert_int_equal(ledger_height(l), 1);
    close_ledger(l);
}

int main(void)
{
    lmq_log_set_level(LMQ_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_and_max),
        cmocka_unit_test(test_verdicts),
        cmocka_unit_test(test_free_commits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
