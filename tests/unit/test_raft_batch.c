/* Tests of src/cluster/raft_batch.c: a batch of records round-trips with
 * its origin, sequence and per-record flags (version 2), a version 1
 * command still decodes (flags 0), every defect of a command is refused
 * with its own code before any record is handed out, and the encoder
 * refuses what the decoder would. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cluster/raft_batch.h"

static const uint8_t rec_a[] = {0xa1, 0x01, 0x02};
static uint8_t rec_b[300];
static const uint8_t rec_c[] = {0x42};

static void chain(struct lmq_batch_item *it, size_t n)
{
    const uint8_t *recs[] = {rec_a, rec_b, rec_c};
    size_t lens[] = {sizeof rec_a, sizeof rec_b, sizeof rec_c};
    memset(it, 0, n * sizeof *it);
    for (size_t i = 0; i < n; i++) {
        it[i].rec = recs[i % 3];
        it[i].len = lens[i % 3];
        it[i].flags = i == 1 ? LMQ_BATCH_F_DUP : 0;
        it[i].next = i + 1 < n ? &it[i + 1] : NULL;
    }
}

static void test_roundtrip(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof rec_b; i++)
        rec_b[i] = (uint8_t)i;
    struct lmq_batch_item it[3];
    chain(it, 3);
    uint8_t *buf;
    size_t len;
    assert_int_equal(lmq_raft_batch_encode(7, 0x0102030405060708ull, it, 3, &buf, &len), 0);
    assert_int_equal(len, LMQ_RAFT_BATCH_HEADER + 3 * 5 + sizeof rec_a + sizeof rec_b + 1);
    assert_memory_equal(buf,
                        "LMQB\x02\0\0\0\x07\0\0\0\0\0\0\0\x08\x07\x06\x05\x04\x03\x02\x01"
                        "\x03\0\0\0\0\0\0\0"
                        "\x03\0\0\0\x00\xa1\x01\x02" /* record a, flags 0 */
                        "\x2c\x01\0\0\x01\x00\x01",  /* record b (300 bytes), DUP */
                        32 + 8 + 7);
    struct lmq_raft_batch b;
    assert_int_equal(lmq_raft_batch_open(&b, buf, len), 0);
    assert_int_equal(b.version, 2);
    assert_int_equal(b.origin, 7);
    assert_int_equal(b.seq, 0x0102030405060708ull);
    assert_int_equal(b.n, 3);
    const uint8_t *r;
    size_t rl;
    for (size_t i = 0; i < 3; i++) {
        assert_true(lmq_raft_batch_next(&b, &r, &rl));
        assert_int_equal(rl, it[i].len);
        assert_memory_equal(r, it[i].rec, rl);
        assert_int_equal(b.flags, i == 1 ? LMQ_BATCH_F_DUP : 0);
    }
    assert_false(lmq_raft_batch_next(&b, &r, &rl));
    free(buf);
}

/* A version 1 command (the first slice: no flags byte) as a node of
 * before version 2 wrote it into the Raft log: still applied, DUP 0. */
static void test_version1(void **state)
{
    (void)state;
    static const uint8_t v1[] = {'L', 'M', 'Q', 'B', 1, 0, 0,    0,    2,    0, 0, 0, 0, 0,   0,
                                 0,   9,   0,   0,   0, 0, 0,    0,    0,    2, 0, 0, 0, 0,   0,
                                 0,   0,   3,   0,   0, 0, 0xa1, 0x01, 0x02, 1, 0, 0, 0, 0x42};
    struct lmq_raft_batch b;
    assert_int_equal(lmq_raft_batch_open(&b, v1, sizeof v1), 0);
    assert_int_equal(b.version, 1);
    assert_int_equal(b.origin, 2);
    assert_int_equal(b.seq, 9);
    assert_int_equal(b.n, 2);
    const uint8_t *r;
    size_t rl;
    assert_true(lmq_raft_batch_next(&b, &r, &rl));
    assert_int_equal(rl, 3);
    assert_memory_equal(r, rec_a, 3);
    assert_int_equal(b.flags, 0);
    assert_true(lmq_raft_batch_next(&b, &r, &rl));
    assert_int_equal(rl, 1);
    assert_int_equal(r[0], 0x42);
    assert_int_equal(b.flags, 0);
    assert_false(lmq_raft_batch_next(&b, &r, &rl));
    /* the same bytes read as version 2 do not parse (flags byte 0xa1) */
    uint8_t v2[sizeof v1];
    memcpy(v2, v1, sizeof v1);
    v2[4] = 2;
    assert_int_not_equal(lmq_raft_batch_open(&b, v2, sizeof v2), 0);
    /* version 3 is refused */
    v2[4] = 3;
    assert_int_equal(lmq_raft_batch_open(&b, v2, sizeof v2), LMQ_RAFT_BATCH_ERR_MAGIC);
}

/* One defect at a time on a good two-record command. */
static void expect(const uint8_t *buf, size_t len, int want)
{
    struct lmq_raft_batch b;
    assert_int_equal(lmq_raft_batch_open(&b, buf, len), want);
}

static void test_defects(void **state)
{
    (void)state;
    struct lmq_batch_item it[2];
    chain(it, 2);
    uint8_t *good, tmp[400];
    size_t len;
    assert_int_equal(lmq_raft_batch_encode(1, 1, it, 2, &good, &len), 0);
    assert_true(len + 8 <= sizeof tmp);
    expect(good, len, 0);
    expect(good, 31, LMQ_RAFT_BATCH_ERR_SHORT);
    expect(good, len - 1, LMQ_RAFT_BATCH_ERR_SHORT);
    expect(good, 32 + 5 + sizeof rec_a + 2, LMQ_RAFT_BATCH_ERR_SHORT);
    expect(good, 32 + 5 + sizeof rec_a + 4, LMQ_RAFT_BATCH_ERR_SHORT); /* no flags byte */
    size_t magic_bytes[] = {0, 3, 4, 5, 6, 7, 28, 31};
    for (size_t i = 0; i < sizeof magic_bytes / sizeof magic_bytes[0]; i++) {
        memcpy(tmp, good, len);
        tmp[magic_bytes[i]] ^= 0x10;
        expect(tmp, len, LMQ_RAFT_BATCH_ERR_MAGIC);
    }
    memcpy(tmp, good, len);
    tmp[8] = 0; /* origin 0 */
    expect(tmp, len, LMQ_RAFT_BATCH_ERR_ID);
    memcpy(tmp, good, len);
    tmp[16] = 0; /* seq 0 */
    expect(tmp, len, LMQ_RAFT_BATCH_ERR_ID);
    memcpy(tmp, good, len);
    tmp[24] = 0; /* n 0 */
    expect(tmp, len, LMQ_RAFT_BATCH_ERR_COUNT);
    memcpy(tmp, good, len);
    tmp[27] = 0x7f; /* n huge */
    expect(tmp, len, LMQ_RAFT_BATCH_ERR_COUNT);
    memcpy(tmp, good, len);
    tmp[24] = 1; /* n 1: the second record is trailing */
    expect(tmp, len, LMQ_RAFT_BATCH_ERR_TRAILING);
    memcpy(tmp, good, len);
    tmp[24] = 3; /* n 3: a third record is missing */
    expect(tmp, len, LMQ_RAFT_BATCH_ERR_SHORT);
    memcpy(tmp, good, len);
    memset(tmp + 32, 0, 4); /* first record length 0 */
    expect(tmp, len, LMQ_RAFT_BATCH_ERR_LENGTH);
    memcpy(tmp, good, len);
    tmp[35] = 0x7f; /* first record length beyond LEDGER_MAX_RECORD */
    expect(tmp, len, LMQ_RAFT_BATCH_ERR_LENGTH);
    for (unsigned bit = 1; bit < 8; bit++) { /* unknown record flag bits */
        memcpy(tmp, good, len);
        tmp[36] = (uint8_t)(1u << bit);
        expect(tmp, len, LMQ_RAFT_BATCH_ERR_FLAGS);
    }
    memcpy(tmp, good, len);
    tmp[len] = 0;
    expect(tmp, len + 1, LMQ_RAFT_BATCH_ERR_TRAILING);
    free(good);
}

static void test_encode_refusals(void **state)
{
    (void)state;
    struct lmq_batch_item it[2];
    chain(it, 2);
    uint8_t *buf = NULL;
    size_t len;
    assert_int_equal(lmq_raft_batch_encode(0, 1, it, 2, &buf, &len), LMQ_RAFT_BATCH_ERR_ID);
    assert_int_equal(lmq_raft_batch_encode(1, 0, it, 2, &buf, &len), LMQ_RAFT_BATCH_ERR_ID);
    assert_int_equal(lmq_raft_batch_encode(1, 1, it, 0, &buf, &len), LMQ_RAFT_BATCH_ERR_COUNT);
    assert_int_equal(lmq_raft_batch_encode(1, 1, it, 3, &buf, &len), LMQ_RAFT_BATCH_ERR_COUNT);
    it[1].flags = 0x80;
    assert_int_equal(lmq_raft_batch_encode(1, 1, it, 2, &buf, &len), LMQ_RAFT_BATCH_ERR_FLAGS);
    it[1].flags = 0;
    it[1].len = 0;
    assert_int_equal(lmq_raft_batch_encode(1, 1, it, 2, &buf, &len), LMQ_RAFT_BATCH_ERR_LENGTH);
    assert_null(buf);
    assert_string_equal(lmq_raft_batch_strerror(LMQ_RAFT_BATCH_ERR_TRAILING),
                        "bytes after the last record");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_version1),
        cmocka_unit_test(test_defects),
        cmocka_unit_test(test_encode_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
