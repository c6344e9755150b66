/* Tests of the apply path of src/cluster/raft_committer.c on a one-node
 * cluster (a real Raft node on loopback that elects itself; the committer
 * allows one instance per process): the state machine's record-bytes
 * hooks decide each record of a committed entry (append, refusal with its
 * code, duplicate with the existing index, barrier = a second block), the
 * DUP flag of each item reaches check_record, the proposer's items come
 * back with those results (one result per block); a restart skips the
 * applied entries, and an entry whose records are in the ledger but not in
 * ledger-applied (a kill between the two) is recognised by its records and
 * not appended or checked again. */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "cluster/raft_committer.h"
#include "ledger/log.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int notified;

static void notify(void *ctx)
{
    (void)ctx;
    pthread_mutex_lock(&mu);
    notified = 1;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}

/* A record is the CBOR text "V-NN": V says what the fake state machine
 * decides (A append, R refuse, D duplicate if sent with DUP, B barrier). */
struct rec {
    struct lmq_batch_item it;
    uint8_t bytes[16];
};

struct fsm {
    int checks, dup_flags_seen, ends, appended, items_done, resets;
};

static int f_check_record(void *ctx, struct ledger *l, const uint8_t *rec, size_t len,
                          uint8_t flags, bool first, uint64_t *dup)
{
    (void)l;
    (void)len;
    (void)first;
    struct fsm *f = ctx;
    f->checks++;
    if (flags & LMQ_BATCH_F_DUP)
        f->dup_flags_seen++;
    switch (rec[1]) {
    case 'R':
        return -7;
    case 'D':
        if (flags & LMQ_BATCH_F_DUP) {
            *dup = 4242;
            return LMQ_FSM_DUPLICATE;
        }
        return LMQ_FSM_APPEND;
    case 'B':
        return LMQ_FSM_BARRIER;
    default:
        return LMQ_FSM_APPEND;
    }
}

static void f_end_records(void *ctx, struct ledger *l, const struct ledger_record_buf *recs,
                          size_t n, const struct ledger_commit *c, bool failed)
{
    struct fsm *f = ctx;
    f->ends++;
    if (failed) { /* only the recovery below: the log moved under the state machine */
        assert_null(c);
        f->resets++;
    } else if (c) {
        assert_int_equal(c->count, n);
        assert_int_equal(ledger_size(l), c->tree_size);
        for (size_t i = 0; i < n; i++)
            assert_true(recs[i].data[1] != 'R');
        f->appended += (int)n;
    } else {
        assert_int_equal(n, 0);
    }
}

static void f_items_done(void *ctx, struct lmq_batch_item *const *items, size_t n)
{
    (void)items;
    ((struct fsm *)ctx)->items_done += (int)n;
}

static int f_check_unused(void *ctx, struct ledger *l, struct lmq_batch_item *it, bool first,
                          uint64_t *dup)
{
    (void)ctx;
    (void)l;
    (void)it;
    (void)first;
    (void)dup;
    fail_msg("the Raft committer must not run the item check");
    return -1;
}

static void f_end_unused(void *ctx, struct ledger *l, struct lmq_batch_item *const *items, size_t n,
                         const struct ledger_commit *c, bool failed)
{
    (void)ctx;
    (void)l;
    (void)items;
    (void)n;
    (void)c;
    (void)failed;
    fail_msg("the Raft committer must not run the item end hook");
}

static const struct lmq_fsm_ops ops = {
    .check = f_check_unused,
    .end = f_end_unused,
    .check_record = f_check_record,
    .end_records = f_end_records,
    .items_done = f_items_done,
};

static char dir[128], raft_dir[160];

static void make(struct rec *r, char verdict, int i, bool dup)
{
    memset(r, 0, sizeof *r);
    int n = snprintf((char *)r->bytes + 1, sizeof r->bytes - 1, "%c-%02d", verdict, i);
    r->bytes[0] = (uint8_t)(0x60 + n);
    r->it.rec = r->bytes;
    r->it.len = (size_t)n + 1;
    r->it.flags = dup ? LMQ_BATCH_F_DUP : 0;
    r->it.arg = r;
}

/* Waits (bounded) until results come back; returns them in order. */
static size_t collect(void *h, size_t n, struct lmq_batch **out, size_t cap)
{
    size_t got = 0, nb = 0;
    while (got < n) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 20;
        pthread_mutex_lock(&mu);
        while (!notified)
            assert_int_equal(pthread_cond_timedwait(&cv, &mu, &ts), 0);
        notified = 0;
        pthread_mutex_unlock(&mu);
        for (struct lmq_batch *b = lmq_raft_committer.poll(h); b;) {
            struct lmq_batch *next = b->next;
            b->next = NULL;
            assert_true(nb < cap);
            out[nb++] = b;
            got += b->n_items;
            b = next;
        }
    }
    return nb;
}

/* Starts the committer on L and waits until it leads (a probe record
 * appended). */
static void *start(struct ledger *l, struct fsm *f)
{
    struct lmq_batcher_options o = {.batch_max = 100, .batch_ms = 200};
    void *h = lmq_raft_committer.start(l, &o, &ops, f, notify, NULL);
    assert_non_null(h);
    static struct rec probe;
    for (int tries = 0; tries < 100; tries++) {
        make(&probe, 'A', 99, false);
        lmq_raft_committer.propose(h, &probe.it);
        struct lmq_batch *b;
        assert_int_equal(collect(h, 1, &b, 1), 1);
        int st = b->items->status;
        lmq_raft_committer.batch_free(b);
        if (st == LMQ_BATCH_APPENDED)
            return h;
        assert_int_equal(st, LMQ_BATCH_ERR_NOT_LEADER);
        usleep(100 * 1000);
    }
    fail_msg("the one-node cluster never led");
    return NULL;
}

static char *read_file(const char *path)
{
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    static char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    return strdup(buf);
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    fclose(fp);
}

static void test_apply_verdicts_restart_and_recovery(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/lmq-test-rcommit-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(raft_dir, sizeof raft_dir, "%s/raft", dir);
    /* a free loopback port for the node */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t al = sizeof a;
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &al), 0);
    close(s);
    struct lmq_raft_member m = {.id = 1};
    snprintf(m.address, sizeof m.address, "127.0.0.1:%u", (unsigned)ntohs(a.sin_port));
    struct lmq_raft_committer_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.node.id = 1;
    cfg.node.dir = raft_dir;
    cfg.node.members = &m;
    cfg.node.n_members = 1;
    cfg.node.election_timeout_ms = 200;
    cfg.node.heartbeat_timeout_ms = 50;
    assert_int_equal(lmq_raft_committer_setup(&cfg), 0);

    struct ledger_options lo;
    ledger_options_default(&lo);
    lo.sync = LEDGER_SYNC_BATCH;
    struct ledger *l;
    char err[512];
    assert_int_equal(ledger_open(dir, &lo, &l, err, sizeof err), 0);
    struct fsm f = {0};
    void *h = start(l, &f);
    uint64_t base = ledger_size(l);
    assert_int_equal(base, 1); /* the probe */
    /* results come back once ledger-applied holds their entry */
    char meta[200];
    snprintf(meta, sizeof meta, "%s/ledger-applied", raft_dir);
    char *before = read_file(meta);
    assert_non_null(strstr(before, "\nsize 1\n"));

    /* One batch: A0 appended, R1 refused, D2 (DUP) a duplicate, D3 (no
     * DUP) appended, B4 a barrier: a second block with B4 and A5. */
    static struct rec r[6];
    const char v[] = "ARDDBA";
    for (int i = 0; i < 6; i++) {
        make(&r[i], v[i], i, i == 2);
        lmq_raft_committer.propose(h, &r[i].it);
    }
    struct lmq_batch *bs[6];
    size_t nb = collect(h, 6, bs, 6);
    assert_int_equal(nb, 2);
    assert_int_equal(bs[0]->n_items, 4);
    assert_int_equal(bs[0]->n_appended, 2);
    assert_int_equal(bs[1]->n_items, 2);
    assert_int_equal(bs[1]->n_appended, 2);
    assert_int_equal(bs[1]->commit.height, bs[0]->commit.height + 1);
    assert_non_null(bs[0]->checkpoint);
    assert_ptr_equal(bs[0]->items, &r[0].it);
    assert_ptr_equal(bs[1]->items, &r[4].it);
    assert_null(r[3].it.next);
    assert_null(r[5].it.next);
    int want_status[6] = {LMQ_BATCH_APPENDED,  -7,
                          LMQ_BATCH_DUPLICATE, LMQ_BATCH_APPENDED,
                          LMQ_BATCH_APPENDED,  LMQ_BATCH_APPENDED};
    uint64_t want_index[6] = {base, 0, 4242, base + 1, base + 2, base + 3};
    for (int i = 0; i < 6; i++) {
        assert_int_equal(r[i].it.status, want_status[i]);
        assert_int_equal(r[i].it.index, want_index[i]);
    }
    for (size_t i = 0; i < nb; i++)
        lmq_raft_committer.batch_free(bs[i]);
    assert_int_equal(f.checks, 1 + 6 + 1); /* probe, the six, B4 again as first of its block */
    assert_int_equal(f.resets, 0);
    assert_int_equal(f.dup_flags_seen, 1);
    assert_int_equal(f.appended, 1 + 4);
    assert_int_equal(f.items_done, 1 + 6);
    assert_int_equal(ledger_size(l), base + 4);
    uint8_t buf[16];
    size_t len;
    const int in_log[4] = {0, 3, 4, 5};
    for (int k = 0; k < 4; k++) {
        assert_int_equal(ledger_get(l, base + (uint64_t)k, buf, sizeof buf, &len), 0);
        assert_int_equal(len, r[in_log[k]].it.len);
        assert_memory_equal(buf, r[in_log[k]].bytes, len);
    }
    lmq_raft_committer.stop(h, NULL, NULL);
    uint64_t size = ledger_size(l);
    char *after = read_file(meta);

    /* ledger-applied put back as it was before the batch (a kill after
     * the appends, before the file was written): on the restart the
     * probe's entry is skipped and the batch's entry is found in the
     * ledger by its records, neither appended nor checked again. */
    write_file(meta, before);
    free(before);
    memset(&f, 0, sizeof f);
    h = start(l, &f);
    assert_int_equal(f.checks, 1); /* the new probe only */
    assert_int_equal(f.resets, 1);
    assert_int_equal(ledger_size(l), size + 1);
    lmq_raft_committer.stop(h, NULL, NULL);
    /* and a restart on a ledger-applied that is current replays nothing */
    char *now = read_file(meta);
    assert_string_not_equal(now, after);
    memset(&f, 0, sizeof f);
    h = start(l, &f);
    assert_int_equal(f.checks, 1);
    assert_int_equal(ledger_size(l), size + 2);
    lmq_raft_committer.stop(h, NULL, NULL);
    free(after);
    free(now);
    ledger_close(l);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply_verdicts_restart_and_recovery),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
