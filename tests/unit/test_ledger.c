/* Tests for the ledger store (src/ledger/log.c, segment.c, block.c, audit.c):
 * append/read round trips, proofs at every size checked with
 * merkle_verify_*, reopen, the block chain, checkpoint signatures, the
 * lock, torn tails cut at every byte offset of the last batch, damage
 * refused with the file and offset named, an append refused rather than a
 * checkpoint signed that does not extend the last one, inconsistent but
 * validly signed checkpoints named by the auditor, and sync=batch recovery
 * after a power loss dropped unsynced segment data. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto/hash.h"
#include "crypto/note.h"
#include "ledger/audit.h"
#include "ledger/block.h"
#include "ledger/checkpoint.h"
#include "ledger/log.h"
#include "ledger/merkle.h"
#include "ledger/store_int.h"
#include "crypto/sign.h"
#include "util/log.h"

static char errbuf[1024];

static void make_dir(char *dir, size_t cap)
{
    snprintf(dir, cap, "/tmp/lmq-test-ledger-XXXXXX");
    assert_non_null(mkdtemp(dir));
}

static void run(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    assert_int_equal(system(cmd), 0);
}

static struct ledger *open_rw(const char *dir)
{
    struct ledger_options o;
    ledger_options_default(&o);
    o.origin = "example.com/test-log";
    struct ledger *l = NULL;
    int rc = ledger_open(dir, &o, &l, errbuf, sizeof errbuf);
    if (rc)
        fprintf(stderr, "ledger_open: %d %s\n", rc, errbuf);
    assert_int_equal(rc, 0);
    return l;
}

static int try_open(const char *dir, bool ro, struct ledger **l)
{
    struct ledger_options o;
    ledger_options_default(&o);
    o.origin = NULL;
    o.read_only = ro;
    errbuf[0] = 0;
    return ledger_open(dir, &o, l, errbuf, sizeof errbuf);
}

/* Record i: deterministic bytes of varying length (0..300). */
static size_t make_record(uint64_t i, uint8_t *buf)
{
    size_t len = (size_t)((i * 37) % 301);
    for (size_t k = 0; k < len; k++)
        buf[k] = (uint8_t)(i * 131 + k * 7);
    return len;
}

static void append_n(struct ledger *l, size_t n, uint64_t time_ms)
{
    static uint8_t bufs[64][512];
    struct ledger_record_buf recs[64];
    assert_true(n <= 64);
    uint64_t first = ledger_size(l);
    for (size_t k = 0; k < n; k++) {
        recs[k].data = bufs[k];
        recs[k].len = make_record(first + k, bufs[k]);
    }
    struct ledger_commit cm;
    assert_int_equal(ledger_append_batch(l, recs, n, time_ms, &cm), 0);
    assert_int_equal(cm.first_index, first);
    assert_int_equal(cm.count, n);
    assert_int_equal(cm.tree_size, first + n);
    assert_int_equal(ledger_size(l), first + n);
}

/* The tree root recomputed independently from the records. */
static void naive_root(struct ledger *l, uint64_t size, uint8_t out[32])
{
    struct merkle_frontier f;
    merkle_frontier_init(&f);
    uint8_t rec[512], leaf[32];
    for (uint64_t i = 0; i < size; i++) {
        size_t len = make_record(i, rec);
        merkle_leaf_hash(rec, len, leaf);
        assert_int_equal(merkle_frontier_append(&f, leaf, NULL, NULL), 0);
    }
    (void)l;
    merkle_frontier_root(&f, out);
}

struct scan_check {
    uint64_t next, stop_at;
};

/* ledger_scan callback: records arrive in order with make_record's bytes. */
static int scan_check_one(void *ctx, uint64_t index, const uint8_t *rec, size_t len)
{
    struct scan_check *sc = ctx;
    uint8_t exp[512];
    assert_int_equal(index, sc->next);
    size_t elen = make_record(index, exp);
    assert_int_equal(len, elen);
    assert_memory_equal(rec, exp, len);
    sc->next++;
    return index == sc->stop_at ? 7 : 0;
}

static void check_all(struct ledger *l)
{
    uint64_t size = ledger_size(l);
    uint8_t root[32], want[32];
    ledger_root(l, root);
    naive_root(l, size, want);
    assert_memory_equal(root, want, 32);
    uint8_t buf[512], exp[512];
    for (uint64_t i = 0; i < size; i++) {
        size_t len, elen = make_record(i, exp);
        assert_int_equal(ledger_get(l, i, buf, sizeof buf, &len), 0);
        assert_int_equal(len, elen);
        assert_memory_equal(buf, exp, len);
    }
    assert_int_equal(ledger_get(l, size, buf, sizeof buf, &(size_t){0}), -ERANGE);
    /* The sequential scan yields the same records, from any start. */
    for (uint64_t from = 0; from <= size; from += size / 5 + 1) {
        struct scan_check sc = {.next = from, .stop_at = UINT64_MAX};
        assert_int_equal(ledger_scan(l, from, size, scan_check_one, &sc), 0);
        assert_int_equal(sc.next, size);
    }
    assert_int_equal(ledger_scan(l, 0, size + 1, scan_check_one, &(struct scan_check){0}), -ERANGE);
    /* Inclusion proofs at many sizes, consistency between many pairs. */
    uint8_t proof[MERKLE_MAX_PROOF][32];
    size_t n;
    for (uint64_t s = 1; s <= size; s += (s < 40 ? 1 : 7)) {
        uint8_t r[32];
        assert_int_equal(ledger_root_at(l, s, r), 0);
        naive_root(l, s, want);
        assert_memory_equal(r, want, 32);
        for (uint64_t i = 0; i < s; i += (s < 20 ? 1 : 3)) {
            uint8_t leaf[32];
            size_t len = make_record(i, exp);
            merkle_leaf_hash(exp, len, leaf);
            assert_int_equal(ledger_inclusion_proof(l, i, s, proof, &n), 0);
            assert_int_equal(merkle_verify_inclusion(i, s, leaf, (const uint8_t(*)[32])proof, n, r),
                             0);
        }
        for (uint64_t o = 1; o <= s; o += (o < 10 ? 1 : 5)) {
            uint8_t ro[32];
            assert_int_equal(ledger_root_at(l, o, ro), 0);
            assert_int_equal(ledger_consistency_proof(l, o, s, proof, &n), 0);
            assert_int_equal(merkle_verify_consistency(o, s, ro, r, (const uint8_t(*)[32])proof, n),
                             0);
        }
    }
}

static void check_chain_and_checkpoints(struct ledger *l)
{
    uint8_t pk[32];
    ledger_public_key(l, pk);
    struct note_verifier v;
    assert_int_equal(note_verifier_init(&v, ledger_origin(l), pk), 0);
    char vkey[NOTE_VKEY_MAX];
    assert_true(ledger_verifier_key(l, vkey, sizeof vkey) > 0);
    struct note_verifier v2;
    assert_int_equal(note_verifier_parse(vkey, strlen(vkey), &v2), 0);
    assert_int_equal(v2.key_id, v.key_id);

    uint8_t prev[32] = {0};
    uint64_t next_first = 0;
    for (uint64_t h = 0; h < ledger_height(l); h++) {
        struct ledger_block b;
        assert_int_equal(ledger_block(l, h, &b), 0);
        assert_int_equal(b.height, h);
        assert_memory_equal(b.prev_hash, prev, 32);
        assert_int_equal(b.first_index, next_first);
        assert_int_equal(b.signer_key_id, v.key_id);
        uint8_t r[32];
        assert_int_equal(ledger_root_at(l, b.tree_size, r), 0);
        assert_memory_equal(r, b.root, 32);
        char note[LEDGER_MAX_CHECKPOINT];
        size_t len;
        assert_int_equal(ledger_block_checkpoint(l, h, note, sizeof note, &len), 0);
        struct checkpoint cp;
        assert_int_equal(checkpoint_verify(note, len, &v, 1, 1, ledger_origin(l), NULL, &cp), 0);
        assert_int_equal(cp.size, b.tree_size);
        assert_memory_equal(cp.root, b.root, 32);
        assert_true(cp.has_block);
        assert_int_equal(cp.block_height, h);
        assert_memory_equal(cp.block_hash, b.hash, 32);
        uint64_t hh;
        assert_int_equal(ledger_block_at_size(l, b.tree_size, &hh), 0);
        assert_int_equal(hh, h);
        assert_int_equal(ledger_block_of_index(l, b.first_index, &hh), 0);
        assert_int_equal(hh, h);
        assert_int_equal(ledger_block_of_index(l, b.tree_size - 1, &hh), 0);
        assert_int_equal(hh, h);
        memcpy(prev, b.hash, 32);
        next_first = b.tree_size;
    }
    assert_int_equal(next_first, ledger_size(l));
}

static void audit_ok(const char *dir)
{
    struct ledger_audit_stats st;
    char err[256];
    int rc = ledger_audit(dir, NULL, NULL, NULL, NULL, &st, err, sizeof err);
    assert_int_equal(rc, 0);
    assert_int_equal(st.problems, 0);
}

static void test_round_trip_and_reopen(void **state)
{
    (void)state;
    char dir[64];
    make_dir(dir, sizeof dir);
    struct ledger *l = open_rw(dir);
    assert_int_equal(ledger_size(l), 0);
    assert_int_equal(ledger_height(l), 0);
    char note[LEDGER_MAX_CHECKPOINT];
    size_t len;
    assert_int_equal(ledger_latest_checkpoint(l, note, sizeof note, &len), -ENOENT);
    for (size_t b = 1; b <= 20; b++)
        append_n(l, b % 9 + 1, 1000 + b);
    assert_int_equal(ledger_height(l), 20);
    check_all(l);
    check_chain_and_checkpoints(l);
    uint8_t root[32];
    ledger_root(l, root);
    uint64_t size = ledger_size(l);
    ledger_close(l);

    /* Key file exists with mode 0600. */
    char kp[128];
    snprintf(kp, sizeof kp, "%s/node.key", dir);
    struct stat st;
    assert_int_equal(stat(kp, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    l = open_rw(dir);
    assert_int_equal(ledger_size(l), size);
    uint8_t root2[32];
    ledger_root(l, root2);
    assert_memory_equal(root, root2, 32);
    append_n(l, 5, 5000);
    check_all(l);
    check_chain_and_checkpoints(l);

    /* Second writer is refused; a reader is fine. */
    struct ledger *l2 = NULL;
    assert_int_equal(try_open(dir, false, &l2), LEDGER_ERR_LOCKED);
    assert_non_null(strstr(errbuf, "LOCK"));
    assert_int_equal(try_open(dir, true, &l2), 0);
    assert_int_equal(ledger_size(l2), ledger_size(l));
    /* A reader handle catches up with the writer through ledger_refresh. */
    uint64_t before = ledger_size(l2);
    append_n(l, 3, 6000);
    assert_int_equal(ledger_size(l2), before);
    assert_int_equal(ledger_refresh(l2), 0);
    assert_int_equal(ledger_size(l2), ledger_size(l));
    assert_int_equal(ledger_height(l2), ledger_height(l));
    check_all(l2);
    check_chain_and_checkpoints(l2);
    assert_int_equal(
        ledger_append_batch(l2, &(struct ledger_record_buf){(const uint8_t *)"x", 1}, 1, 1, NULL),
        LEDGER_ERR_READONLY);
    ledger_close(l2);
    ledger_close(l);

    /* A different origin is refused. */
    struct ledger_options o;
    ledger_options_default(&o);
    o.origin = "example.com/other";
    assert_int_equal(ledger_open(dir, &o, &l2, errbuf, sizeof errbuf), LEDGER_ERR_ORIGIN);

    audit_ok(dir);
    run("rm -rf %s", dir);
}

/* A cluster passes the leader's time and key ID: the block carries them,
 * the node still signs, and open and audit accept the block. */
static void test_proposer_key(void **state)
{
    (void)state;
    char dir[64];
    make_dir(dir, sizeof dir);
    struct ledger *l = open_rw(dir);
    append_n(l, 2, 1);
    struct ledger_batch_info info = {.time_ms = 42, .proposer_key_id = 0x12345678};
    struct ledger_record_buf r = {(const uint8_t *)"abc", 3};
    struct ledger_commit cm;
    assert_int_equal(ledger_append_batch_ex(l, &r, 1, &info, &cm), 0);
    assert_int_equal(ledger_append_batch_ex(l, &r, 1, NULL, &cm), -EINVAL);
    struct ledger_block b;
    assert_int_equal(ledger_block(l, 1, &b), 0);
    assert_int_equal(b.signer_key_id, 0x12345678);
    assert_int_equal(b.time_ms, 42);
    assert_memory_equal(b.hash, cm.block_hash, 32);
    ledger_close(l);
    l = open_rw(dir);
    assert_int_equal(ledger_size(l), 3);
    ledger_close(l);
    audit_ok(dir);
    run("rm -rf %s", dir);
}

/* A new ledger in dir with 4 KiB segments and 40 batches of 7 records:
 * 280 records over several segments. */
static struct ledger *open_rolled(const char *dir, struct ledger_options *o)
{
    ledger_options_default(o);
    o->segment_max = 4096;
    struct ledger *l;
    assert_int_equal(ledger_open(dir, o, &l, errbuf, sizeof errbuf), 0);
    for (int b = 0; b < 40; b++)
        append_n(l, 7, (uint64_t)b);
    return l;
}

static void test_segment_roll(void **state)
{
    (void)state;
    char dir[64];
    make_dir(dir, sizeof dir);
    struct ledger_options o;
    struct ledger *l = open_rolled(dir, &o);
    ledger_close(l);
    char p[128];
    snprintf(p, sizeof p, "%s/ledger/seg-00000003", dir);
    assert_int_equal(access(p, F_OK), 0);
    assert_int_equal(ledger_open(dir, &o, &l, errbuf, sizeof errbuf), 0);
    check_all(l);
    check_chain_and_checkpoints(l);
    ledger_close(l);
    audit_ok(dir);
    /* Derived files deleted: rebuilt from the segments on open. */
    run("rm -rf %s/ledger/index %s/ledger/blocks %s/ledger/nodes/*", dir, dir, dir);
    assert_int_equal(ledger_open(dir, &o, &l, errbuf, sizeof errbuf), 0);
    assert_int_equal(ledger_size(l), 280);
    check_all(l);
    check_chain_and_checkpoints(l);
    ledger_close(l);
    audit_ok(dir);
    run("rm -rf %s", dir);
}

/* ledger_scan stops where its callback says, and a record whose bytes
 * changed on disk under an open ledger is LEDGER_ERR_CORRUPT (CRC), with
 * every record before it delivered. */
static void test_scan_stop_and_damage(void **state)
{
    (void)state;
    char dir[64];
    make_dir(dir, sizeof dir);
    struct ledger_options o;
    struct ledger *l = open_rolled(dir, &o);
    struct scan_check sc = {.next = 3, .stop_at = 100};
    assert_int_equal(ledger_scan(l, 3, 280, scan_check_one, &sc), 7);
    assert_int_equal(sc.next, 101);
    assert_int_equal(ledger_scan(l, 280, 280, scan_check_one, &sc), 0);
    /* Damage one byte in the middle of segment 1. */
    char p[128];
    snprintf(p, sizeof p, "%s/ledger/seg-00000001", dir);
    int fd = open(p, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    off_t at = lseek(fd, 0, SEEK_END) / 2;
    assert_true(at > SEG_HEADER_LEN);
    assert_int_equal(pread(fd, &b, 1, at), 1);
    b ^= 0x40;
    assert_int_equal(pwrite(fd, &b, 1, at), 1);
    close(fd);
    sc = (struct scan_check){.next = 0, .stop_at = UINT64_MAX};
    assert_int_equal(ledger_scan(l, 0, 280, scan_check_one, &sc), LEDGER_ERR_CORRUPT);
    assert_true(sc.next > 0 && sc.next < 280);
    ledger_close(l);
    run("rm -rf %s", dir);
}

static off_t file_len(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

static void flip_byte(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, off), 1);
    b ^= 0x40;
    assert_int_equal(pwrite(fd, &b, 1, off), 1);
    close(fd);
}

/* A crash while writing the last batch leaves the derived files as they
 * were before it and any prefix of the batch's segment write. Every such
 * prefix must open as the log before the batch (or, for the whole write,
 * after it) and audit clean. */
static void test_torn_tail_every_offset(void **state)
{
    (void)state;
    char dir[64], base[80], seg[128];
    make_dir(dir, sizeof dir);
    snprintf(base, sizeof base, "%s-base", dir);
    struct ledger *l = open_rw(dir);
    for (int b = 0; b < 4; b++)
        append_n(l, 3, (uint64_t)b);
    uint64_t size0 = ledger_size(l);
    uint8_t root0[32];
    ledger_root(l, root0);
    ledger_close(l);
    run("cp -a %s %s", dir, base);
    snprintf(seg, sizeof seg, "%s/ledger/seg-00000000", dir);
    off_t s0 = file_len(seg);
    l = open_rw(dir);
    append_n(l, 3, 99);
    uint8_t root1[32];
    ledger_root(l, root1);
    ledger_close(l);
    off_t s1 = file_len(seg);
    run("cp %s %s-full", seg, base);
    lmq_log_set_level(LMQ_LOG_ERROR);
    for (off_t t = s0; t <= s1; t++) {
        char tdir[128];
        snprintf(tdir, sizeof tdir, "%s-t", dir);
        run("rm -rf %s && cp -a %s %s && cp %s-full %s/ledger/seg-00000000 && truncate -s %lld "
            "%s/ledger/seg-00000000",
            tdir, base, tdir, base, tdir, (long long)t, tdir);
        struct ledger *lt;
        int rc = try_open(tdir, false, &lt);
        if (rc)
            fprintf(stderr, "cut at %lld: %s\n", (long long)t, errbuf);
        assert_int_equal(rc, 0);
        uint8_t r[32];
        ledger_root(lt, r);
        if (t == s1) {
            assert_int_equal(ledger_size(lt), size0 + 3);
            assert_memory_equal(r, root1, 32);
        } else {
            assert_int_equal(ledger_size(lt), size0);
            assert_memory_equal(r, root0, 32);
        }
        /* The recovered log accepts appends and stays auditable. */
        append_n(lt, 2, 7);
        ledger_close(lt);
        audit_ok(tdir);
        char s[160];
        snprintf(s, sizeof s, "%s/ledger/seg-00000000", tdir);
        if (t < s1)
            assert_int_equal(file_len(s), s0 + (file_len(s) - s0)); /* cut then regrown */
    }
    /* Garbage after the last commit (a torn write of junk) is cut too. */
    run("rm -rf %s-t && cp -a %s %s-t && head -c 100 /dev/urandom >> %s-t/ledger/seg-00000000", dir,
        base, dir, dir);
    char tdir[128];
    snprintf(tdir, sizeof tdir, "%s-t", dir);
    struct ledger *lt;
    assert_int_equal(try_open(tdir, false, &lt), 0);
    assert_int_equal(ledger_size(lt), size0);
    ledger_close(lt);
    lmq_log_set_level(LMQ_LOG_INFO);
    run("rm -rf %s %s %s-full %s-t", dir, base, base, dir);
}

static void test_damage_refused(void **state)
{
    (void)state;
    char dir[64], seg[128], path[160];
    make_dir(dir, sizeof dir);
    struct ledger *l = open_rw(dir);
    for (int b = 0; b < 5; b++)
        append_n(l, 4, (uint64_t)b);
    ledger_close(l);
    snprintf(seg, sizeof seg, "%s/ledger/seg-00000000", dir);
    char cp[128];
    snprintf(cp, sizeof cp, "%s-c", dir);
    lmq_log_set_level(LMQ_LOG_ERROR);

    /* 1. A byte of a record in the last block: open refuses naming it. */
    run("rm -rf %s && cp -a %s %s", cp, dir, cp);
    snprintf(path, sizeof path, "%s/ledger/seg-00000000", cp);
    off_t len = file_len(path);
    /* the last block's commit frame is at the end; its records before it.
     * Find record 19 (the last) through the index. */
    snprintf(path, sizeof path, "%s/ledger/index", cp);
    int fd = open(path, O_RDONLY);
    uint8_t e[16];
    assert_int_equal(pread(fd, e, 16, 19 * 16), 16);
    close(fd);
    uint32_t off19 =
        (uint32_t)e[0] | (uint32_t)e[1] << 8 | (uint32_t)e[2] << 16 | (uint32_t)e[3] << 24;
    snprintf(path, sizeof path, "%s/ledger/seg-00000000", cp);
    flip_byte(path, off19 + 12 + 1);
    struct ledger *x;
    assert_int_equal(try_open(cp, false, &x), LEDGER_ERR_CORRUPT);
    char want[64];
    snprintf(want, sizeof want, "seg-00000000 offset %u", off19);
    assert_non_null(strstr(errbuf, want));
    assert_non_null(strstr(errbuf, "record 19"));
    (void)len;

    /* 2. A record in the middle of the log, with derived files lost so the
     * replay reads it: refused (committed data follows), not truncated. */
    run("rm -rf %s && cp -a %s %s && rm -rf %s/ledger/index %s/ledger/blocks %s/ledger/nodes/*", cp,
        dir, cp, cp, cp, cp);
    snprintf(path, sizeof path, "%s/ledger/seg-00000000", cp);
    flip_byte(path, 28 + 12 + 3); /* record 1 (record 0 is empty) */
    assert_int_equal(try_open(cp, false, &x), LEDGER_ERR_CORRUPT);
    if (!strstr(errbuf, "seg-00000000 offset 28"))
        fprintf(stderr, "got: %s\n", errbuf);
    assert_non_null(strstr(errbuf, "seg-00000000 offset 28"));
    assert_int_equal(file_len(path), file_len(seg)); /* nothing cut */

    /* 3. A stored node of the last block. */
    run("rm -rf %s && cp -a %s %s", cp, dir, cp);
    snprintf(path, sizeof path, "%s/ledger/nodes/00", cp);
    flip_byte(path, 18 * 32 + 5);
    assert_int_equal(try_open(cp, false, &x), LEDGER_ERR_CORRUPT);
    assert_non_null(strstr(errbuf, "nodes/00 offset 576"));

    /* 4. The block chain: the last block entry changed (CRC still valid
     * would need a forger; a flipped byte fails its CRC and the entry is
     * rebuilt from the segment — the segment is the truth). Flip the last
     * commit frame's checkpoint instead: refused. */
    run("rm -rf %s && cp -a %s %s", cp, dir, cp);
    snprintf(path, sizeof path, "%s/ledger/seg-00000000", cp);
    flip_byte(path, file_len(path) - 10);
    assert_int_equal(try_open(cp, false, &x), LEDGER_ERR_CORRUPT);
    assert_non_null(strstr(errbuf, "seg-00000000 offset"));
    assert_non_null(strstr(errbuf, "block 4"));

    /* The auditor names each of these too. */
    struct ledger_audit_stats st;
    char err[256];
    assert_int_equal(ledger_audit(cp, NULL, NULL, NULL, NULL, &st, err, sizeof err),
                     LEDGER_ERR_CORRUPT);
    assert_true(st.problems > 0);
    run("rm -rf %s && cp -a %s %s", cp, dir, cp);
    snprintf(path, sizeof path, "%s/ledger/nodes/01", cp);
    flip_byte(path, 3 * 32);
    assert_int_equal(ledger_audit(cp, NULL, NULL, NULL, NULL, &st, err, sizeof err),
                     LEDGER_ERR_CORRUPT);
    assert_int_equal(st.problems, 1);
    run("rm -rf %s && cp -a %s %s", cp, dir, cp);
    snprintf(path, sizeof path, "%s/ledger/blocks", cp);
    flip_byte(path, 128 * 2 + 50);
    assert_int_equal(ledger_audit(cp, NULL, NULL, NULL, NULL, &st, err, sizeof err),
                     LEDGER_ERR_CORRUPT);
    lmq_log_set_level(LMQ_LOG_INFO);
    run("rm -rf %s %s", dir, cp);
}

/* Offset of the commit frame of block height in a single-segment log. */
static off_t commit_frame_of(const char *seg, uint64_t height, uint32_t *plen)
{
    int fd = open(seg, O_RDONLY);
    assert_true(fd >= 0);
    off_t off = SEG_HEADER_LEN, end = lseek(fd, 0, SEEK_END);
    uint64_t h = 0;
    while (off + FRAME_HEADER_LEN <= end) {
        uint8_t hdr[FRAME_HEADER_LEN];
        assert_int_equal(pread(fd, hdr, sizeof hdr, off), FRAME_HEADER_LEN);
        uint32_t n = le32_get(hdr);
        if (hdr[4] == FRAME_COMMIT && h++ == height) {
            close(fd);
            *plen = n;
            return off;
        }
        off += FRAME_HEADER_LEN + (off_t)n;
    }
    close(fd);
    fail_msg("no commit frame of block %llu in %s", (unsigned long long)height, seg);
    return -1;
}

/* "The log never signs two inconsistent checkpoints": stored nodes that a
 * disk fault (or a stray writer) changes under a running writer no longer
 * give the root of the last signed checkpoint, and the next append is
 * refused with LEDGER_ERR_INCONSISTENT: nothing written, nothing signed. */
static void test_inconsistent_never_signed(void **state)
{
    (void)state;
    char dir[64], seg[128], node2[128];
    make_dir(dir, sizeof dir);
    snprintf(seg, sizeof seg, "%s/ledger/seg-00000000", dir);
    snprintf(node2, sizeof node2, "%s/ledger/nodes/02", dir);
    struct ledger *l = open_rw(dir);
    append_n(l, 4, 1); /* records 0..3: completes node (2, 0) */
    append_n(l, 1, 2); /* record 4: the signed tree of size 5 uses node (2, 0) */
    char before[LEDGER_MAX_CHECKPOINT], after[LEDGER_MAX_CHECKPOINT];
    size_t blen, alen;
    assert_int_equal(ledger_latest_checkpoint(l, before, sizeof before, &blen), 0);
    off_t seg_len = file_len(seg);

    flip_byte(node2, 7); /* the fault, while the writer holds the log open */
    lmq_log_set_level(LMQ_LOG_ERROR);
    struct ledger_record_buf r = {(const uint8_t *)"after the fault", 15};
    struct ledger_commit cm;
    assert_int_equal(ledger_append_batch(l, &r, 1, 3, &cm), LEDGER_ERR_INCONSISTENT);
    assert_int_equal(ledger_append_batch(l, &r, 1, 4, &cm), LEDGER_ERR_INCONSISTENT);
    lmq_log_set_level(LMQ_LOG_INFO);
    assert_int_equal(ledger_size(l), 5);
    assert_int_equal(ledger_height(l), 2);
    assert_int_equal(file_len(seg), seg_len); /* not one byte written */
    assert_int_equal(ledger_latest_checkpoint(l, after, sizeof after, &alen), 0);
    assert_int_equal(alen, blen);
    assert_memory_equal(after, before, blen);
    ledger_close(l);

    /* The damage is refused on open too; undone, the log is as it was. */
    lmq_log_set_level(LMQ_LOG_ERROR);
    struct ledger *x;
    assert_int_equal(try_open(dir, false, &x), LEDGER_ERR_CORRUPT);
    lmq_log_set_level(LMQ_LOG_INFO);
    flip_byte(node2, 7);
    l = open_rw(dir);
    assert_int_equal(ledger_size(l), 5);
    append_n(l, 3, 5);
    check_all(l);
    check_chain_and_checkpoints(l);
    ledger_close(l);
    audit_ok(dir);
    run("rm -rf %s", dir);
}

struct findings {
    char text[8192];
    unsigned problems;
};

static void collect(void *ctx, bool problem, const char *line)
{
    struct findings *f = ctx;
    if (problem)
        f->problems++;
    size_t used = strlen(f->text);
    snprintf(f->text + used, sizeof f->text - used, "%s: %s\n", problem ? "PROBLEM" : "warning",
             line);
}

/* A compromised node (it holds the node key) replaces block 1's checkpoint
 * with one for another tree of the same size, validly signed: each
 * checkpoint verifies on its own, but the auditor must find that block 1's
 * does not extend block 0's and that block 2's does not extend block 1's. */
static void test_audit_inconsistent_checkpoints(void **state)
{
    (void)state;
    char dir[64], seg[128], keypath[128];
    make_dir(dir, sizeof dir);
    snprintf(seg, sizeof seg, "%s/ledger/seg-00000000", dir);
    snprintf(keypath, sizeof keypath, "%s/node.key", dir);
    struct ledger *l = open_rw(dir);
    for (int b = 0; b < 3; b++)
        append_n(l, 4, (uint64_t)b);
    uint8_t pk[32];
    ledger_public_key(l, pk);
    struct note_verifier v;
    assert_int_equal(note_verifier_init(&v, ledger_origin(l), pk), 0);
    ledger_close(l);
    audit_ok(dir);

    uint32_t plen;
    off_t fo = commit_frame_of(seg, 1, &plen);
    uint8_t *frame = malloc(FRAME_HEADER_LEN + plen);
    assert_non_null(frame);
    int fd = open(seg, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, frame, FRAME_HEADER_LEN + plen, fo), FRAME_HEADER_LEN + plen);
    char *note = (char *)frame + FRAME_HEADER_LEN + LEDGER_BLOCK_HEADER_LEN;
    size_t note_len = plen - LEDGER_BLOCK_HEADER_LEN;
    struct checkpoint cp;
    assert_int_equal(checkpoint_verify(note, note_len, &v, 1, 1, NULL, NULL, &cp), 0);
    assert_int_equal(cp.size, 8);
    cp.root[0] ^= 1; /* another tree of 8 records */
    uint8_t fpk[32], fsk[64];
    int created = 0;
    assert_int_equal(crypto_key_load_or_create(keypath, fpk, fsk, &created), 0);
    assert_int_equal(created, 0);
    char forged[LEDGER_MAX_CHECKPOINT];
    ssize_t flen = checkpoint_sign(&cp, fsk, fpk, forged, sizeof forged);
    assert_int_equal(flen, (ssize_t)note_len); /* same length: a drop-in */
    struct checkpoint fcp;
    assert_int_equal(checkpoint_verify(forged, (size_t)flen, &v, 1, 1, NULL, NULL, &fcp), 0);
    memcpy(note, forged, note_len);
    store_frame_header(frame, FRAME_COMMIT, frame + FRAME_HEADER_LEN, plen); /* CRC fixed */
    assert_int_equal(pwrite(fd, frame, FRAME_HEADER_LEN + plen, fo), FRAME_HEADER_LEN + plen);
    close(fd);
    free(frame);

    struct findings f = {0};
    struct ledger_audit_stats st;
    char err[256];
    assert_int_equal(ledger_audit(dir, NULL, collect, NULL, &f, &st, err, sizeof err),
                     LEDGER_ERR_CORRUPT);
    char want[256];
    snprintf(want, sizeof want,
             "PROBLEM: ledger/seg-00000000 offset %lld: checkpoint of block 1 (size 8) is not "
             "consistent with the previous checkpoint (size 4)",
             (long long)fo);
    if (!strstr(f.text, want))
        fprintf(stderr, "audit said:\n%s", f.text);
    assert_non_null(strstr(f.text, want));
    uint32_t plen2;
    off_t fo2 = commit_frame_of(seg, 2, &plen2);
    snprintf(want, sizeof want,
             "PROBLEM: ledger/seg-00000000 offset %lld: checkpoint of block 2 (size 12) is not "
             "consistent with the previous checkpoint (size 8)",
             (long long)fo2);
    assert_non_null(strstr(f.text, want));
    run("rm -rf %s", dir);
}

/* sync=batch: batches are not synced one by one, so a power loss may drop
 * segment data that the (later synced) derived files describe. Reopening
 * steps back to the last block whose commit frame survived, cuts the rest,
 * and the log audits clean and takes appends again. */
static void test_sync_batch_loss(void **state)
{
    (void)state;
    char dir[64], seg[160], cp[96];
    make_dir(dir, sizeof dir);
    snprintf(cp, sizeof cp, "%s-c", dir);
    struct ledger_options o;
    ledger_options_default(&o);
    o.origin = "example.com/test-log";
    o.sync = LEDGER_SYNC_BATCH;
    struct ledger *l;
    assert_int_equal(ledger_open(dir, &o, &l, errbuf, sizeof errbuf), 0);
    uint8_t roots[6][32];
    uint64_t sizes[6];
    for (int b = 0; b < 6; b++) {
        append_n(l, 5, (uint64_t)b);
        ledger_root(l, roots[b]);
        sizes[b] = ledger_size(l);
    }
    check_all(l);
    check_chain_and_checkpoints(l);
    ledger_close(l);
    audit_ok(dir);
    assert_int_equal(ledger_open(dir, &o, &l, errbuf, sizeof errbuf), 0);
    assert_int_equal(ledger_size(l), 30);
    ledger_close(l);

    /* The segment loses everything after block 2's commit frame, cut at
     * that boundary, inside block 3's records, inside block 4's commit
     * frame header and inside its payload; or the segment file is gone. */
    snprintf(seg, sizeof seg, "%s/ledger/seg-00000000", cp);
    uint32_t p2, p4;
    char segd[160];
    snprintf(segd, sizeof segd, "%s/ledger/seg-00000000", dir);
    off_t end2 = commit_frame_of(segd, 2, &p2);
    end2 += FRAME_HEADER_LEN + p2;
    off_t c4 = commit_frame_of(segd, 4, &p4);
    struct {
        off_t len;
        int keep; /* blocks that survive */
    } cuts[] = {{end2, 3}, {end2 + 20, 3}, {c4 + 5, 4}, {c4 + FRAME_HEADER_LEN + 50, 4}, {-1, 0}};
    lmq_log_set_level(LMQ_LOG_ERROR);
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        run("rm -rf %s && cp -a %s %s", cp, dir, cp);
        if (cuts[i].len >= 0)
            run("truncate -s %lld %s", (long long)cuts[i].len, seg);
        else
            run("rm %s", seg);
        /* sync=always promises that nothing committed is lost: refused. */
        struct ledger *x;
        assert_int_equal(try_open(cp, false, &x), LEDGER_ERR_CORRUPT);
        assert_int_equal(ledger_open(cp, &o, &l, errbuf, sizeof errbuf), 0);
        int keep = cuts[i].keep;
        uint8_t r[32];
        ledger_root(l, r);
        if (keep) {
            assert_int_equal(ledger_size(l), sizes[keep - 1]);
            assert_memory_equal(r, roots[keep - 1], 32);
        } else {
            assert_int_equal(ledger_size(l), 0);
        }
        assert_int_equal(ledger_height(l), keep);
        append_n(l, 3, 100);
        check_all(l);
        check_chain_and_checkpoints(l);
        ledger_close(l);
        audit_ok(cp);
    }
    lmq_log_set_level(LMQ_LOG_INFO);
    run("rm -rf %s %s", dir, cp);
}

static bool exists(const char *dir, const char *name)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

/* A creation interrupted by a crash at each of its steps: no META (only
 * the dirs, LOCK and a torn META.tmp), then META without the node key.
 * Nothing is committed in either: read-only opens see an empty ledger,
 * the auditor warns and passes, a no_create open leaves it alone, a
 * read-write open completes it. Once a segment exists a missing META or
 * node key is corruption and no new key is created. */
static void test_interrupted_creation(void **state)
{
    (void)state;
    char dir[64];
    make_dir(dir, sizeof dir);
    run("mkdir -p %s/ledger/nodes && touch %s/ledger/LOCK && printf 'ledgermq le' > "
        "%s/ledger/META.tmp",
        dir, dir, dir);
    struct ledger *l = NULL;
    assert_int_equal(try_open(dir, true, &l), 0);
    assert_int_equal(ledger_size(l), 0);
    assert_int_equal(ledger_height(l), 0);
    assert_string_equal(ledger_origin(l), "");
    ledger_close(l);
    struct ledger_audit_stats st;
    char err[256];
    assert_int_equal(ledger_audit(dir, NULL, NULL, NULL, NULL, &st, err, sizeof err), 0);
    assert_int_equal(st.problems, 0);
    assert_int_equal(st.warnings, 1);
    struct ledger_options o;
    ledger_options_default(&o);
    o.origin = NULL;
    o.no_create = true;
    assert_int_equal(ledger_open(dir, &o, &l, errbuf, sizeof errbuf), LEDGER_ERR_UNCREATED);
    assert_non_null(strstr(errbuf, "interrupted before META"));
    assert_false(exists(dir, "ledger/META"));
    assert_false(exists(dir, "node.key"));

    /* Completed with the origin of the next read-write open. */
    l = open_rw(dir);
    assert_string_equal(ledger_origin(l), "example.com/test-log");
    ledger_close(l);
    assert_true(exists(dir, "ledger/META"));
    assert_true(exists(dir, "node.key"));

    /* META written, key not yet: still nothing committed. */
    run("rm %s/node.key", dir);
    assert_int_equal(ledger_audit(dir, NULL, NULL, NULL, NULL, &st, err, sizeof err), 0);
    assert_int_equal(st.problems, 0);
    assert_int_equal(st.warnings, 1);
    assert_int_equal(try_open(dir, true, &l), 0);
    assert_int_equal(ledger_size(l), 0);
    ledger_close(l);
    l = open_rw(dir);
    append_n(l, 3, 1);
    ledger_close(l);
    audit_ok(dir);

    /* With a segment, a missing key is refused and not replaced. */
    run("mv %s/node.key %s/node.key.saved", dir, dir);
    assert_int_equal(try_open(dir, false, &l), LEDGER_ERR_CORRUPT);
    assert_non_null(strstr(errbuf, "node.key is missing but"));
    assert_false(exists(dir, "node.key"));
    assert_int_not_equal(ledger_audit(dir, NULL, NULL, NULL, NULL, &st, err, sizeof err), 0);
    run("mv %s/node.key.saved %s/node.key", dir, dir);

    /* With a segment, a missing META is refused read-write and read-only. */
    run("mv %s/ledger/META %s/META.saved", dir, dir);
    assert_int_equal(try_open(dir, false, &l), LEDGER_ERR_CORRUPT);
    assert_non_null(strstr(errbuf, "META is missing but"));
    assert_int_equal(try_open(dir, true, &l), LEDGER_ERR_CORRUPT);
    assert_false(exists(dir, "ledger/META"));
    assert_int_not_equal(ledger_audit(dir, NULL, NULL, NULL, NULL, &st, err, sizeof err), 0);
    run("mv %s/META.saved %s/ledger/META", dir, dir);
    l = open_rw(dir);
    assert_int_equal(ledger_size(l), 3);
    check_all(l);
    ledger_close(l);
    run("rm -rf %s", dir);
}

static void test_block_encoding(void **state)
{
    (void)state;
    struct ledger_block b = {.height = 7,
                             .first_index = 100,
                             .count = 5,
                             .tree_size = 105,
                             .time_ms = 1700000000000ull,
                             .signer_key_id = 0xdeadbeef};
    memset(b.prev_hash, 0xaa, 32);
    memset(b.root, 0x55, 32);
    uint8_t hdr[LEDGER_BLOCK_HEADER_LEN];
    ledger_block_encode(&b, hdr);
    assert_memory_equal(hdr, "LMB1", 4);
    assert_int_equal(hdr[11], 7);
    assert_int_equal(hdr[108], 0xde);
    uint8_t h[32];
    crypto_sha256(hdr, sizeof hdr, h);
    assert_memory_equal(h, b.hash, 32);
    struct ledger_block d;
    assert_int_equal(ledger_block_decode(hdr, &d), 0);
    assert_int_equal(d.tree_size, 105);
    assert_memory_equal(d.hash, b.hash, 32);
    hdr[63]++; /* tree_size no longer first + count */
    assert_int_equal(ledger_block_decode(hdr, &d), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_block_encoding),
        cmocka_unit_test(test_round_trip_and_reopen),
        cmocka_unit_test(test_proposer_key),
        cmocka_unit_test(test_segment_roll),
        cmocka_unit_test(test_scan_stop_and_damage),
        cmocka_unit_test(test_torn_tail_every_offset),
        cmocka_unit_test(test_damage_refused),
        cmocka_unit_test(test_inconsistent_never_signed),
        cmocka_unit_test(test_audit_inconsistent_checkpoints),
        cmocka_unit_test(test_sync_batch_loss),
        cmocka_unit_test(test_interrupted_creation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
