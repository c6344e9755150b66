/* Tests of src/cluster/channel_frame.c: FORWARD and RESULT frames
 * round-trip, frames come out of a byte stream one by one (a prefix is
 * PARTIAL with the size needed once the length is there), and every
 * defect is refused with its own code, a bad header as soon as the header
 * is there. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cluster/channel_frame.h"

static const uint8_t cmd[] = "LMQB a command, opaque to the channel";

static void test_forward_roundtrip(void **state)
{
    (void)state;
    uint8_t *buf;
    size_t len, used;
    assert_int_equal(lmq_channel_encode_forward(9, cmd, sizeof cmd, &buf, &len), 0);
    assert_int_equal(len, LMQ_CHANNEL_HEADER + sizeof cmd);
    struct lmq_channel_frame f;
    assert_int_equal(lmq_channel_frame_decode(buf, len, 0, &f, &used), 0);
    assert_int_equal(used, len);
    assert_int_equal(f.type, LMQ_CHANNEL_FORWARD);
    assert_int_equal(f.seq, 9);
    assert_int_equal(f.body_len, sizeof cmd);
    assert_memory_equal(f.body, cmd, sizeof cmd);
    /* every prefix is PARTIAL; once the length is there it says how much */
    for (size_t k = 0; k < len; k++) {
        assert_int_equal(lmq_channel_frame_decode(buf, k, 0, &f, &used), LMQ_CHANNEL_ERR_PARTIAL);
        assert_int_equal(used, k < 4 ? 0 : len);
    }
    free(buf);
    assert_int_equal(lmq_channel_encode_forward(0, cmd, sizeof cmd, &buf, &len),
                     LMQ_CHANNEL_ERR_SEQ);
    assert_int_equal(lmq_channel_encode_forward(1, cmd, 0, &buf, &len), LMQ_CHANNEL_ERR_BODY);
}

static void test_result_roundtrip_and_stream(void **state)
{
    (void)state;
    struct lmq_channel_result_item items[2] = {{0, 100}, {1, 5}};
    uint8_t *ok, *no;
    size_t ok_len, no_len, used;
    assert_int_equal(lmq_channel_encode_result(3, LMQ_CHANNEL_OK, 42, items, 2, &ok, &ok_len), 0);
    assert_int_equal(ok_len,
                     LMQ_CHANNEL_HEADER + LMQ_CHANNEL_RESULT_HEAD + 2 * LMQ_CHANNEL_RESULT_ITEM);
    assert_int_equal(
        lmq_channel_encode_result(4, LMQ_CHANNEL_REFUSED_BUSY, 0, NULL, 0, &no, &no_len), 0);
    uint8_t stream[256];
    memcpy(stream, ok, ok_len);
    memcpy(stream + ok_len, no, no_len);
    struct lmq_channel_frame f;
    assert_int_equal(lmq_channel_frame_decode(stream, ok_len + no_len, 0, &f, &used), 0);
    assert_int_equal(used, ok_len);
    assert_int_equal(f.type, LMQ_CHANNEL_RESULT);
    assert_int_equal(f.seq, 3);
    assert_int_equal(f.status, LMQ_CHANNEL_OK);
    assert_int_equal(f.raft_index, 42);
    assert_int_equal(f.n_items, 2);
    struct lmq_channel_result_item it;
    lmq_channel_result_item(&f, 1, &it);
    assert_int_equal(it.status, 1);
    assert_int_equal(it.index, 5);
    lmq_channel_result_item(&f, 0, &it);
    assert_int_equal(it.status, 0);
    assert_int_equal(it.index, 100);
    assert_int_equal(lmq_channel_frame_decode(stream + used, no_len, 0, &f, &used), 0);
    assert_int_equal(f.seq, 4);
    assert_int_equal(f.status, LMQ_CHANNEL_REFUSED_BUSY);
    assert_int_equal(f.n_items, 0);
    assert_string_equal(lmq_channel_status_name(f.status), "leader busy");
    free(ok);
    free(no);
}

/* A copy of a valid RESULT frame with byte AT set to V: its decode. */
static int mutated(size_t at, uint8_t v)
{
    uint8_t *buf;
    size_t len, used;
    struct lmq_channel_result_item item = {0, 7};
    assert_int_equal(lmq_channel_encode_result(5, LMQ_CHANNEL_OK, 11, &item, 1, &buf, &len), 0);
    buf[at] = v;
    struct lmq_channel_frame f;
    int rv = lmq_channel_frame_decode(buf, len, 0, &f, &used);
    free(buf);
    return rv;
}

static void test_defects(void **state)
{
    (void)state;
    uint8_t hdr[LMQ_CHANNEL_HEADER] = {12, 0, 0, 0, LMQ_CHANNEL_FORWARD, 1, 0, 0, 1};
    struct lmq_channel_frame f;
    size_t used;
    /* a FORWARD without a body */
    assert_int_equal(lmq_channel_frame_decode(hdr, sizeof hdr, 0, &f, &used), LMQ_CHANNEL_ERR_BODY);
    /* lengths below the header and above the maximum (checked from 4 bytes) */
    hdr[0] = 11;
    assert_int_equal(lmq_channel_frame_decode(hdr, 4, 0, &f, &used), LMQ_CHANNEL_ERR_LENGTH);
    hdr[0] = 0xf0;
    hdr[1] = 0xff;
    assert_int_equal(lmq_channel_frame_decode(hdr, 4, 1000, &f, &used), LMQ_CHANNEL_ERR_LENGTH);
    hdr[0] = 0xff;
    hdr[3] = 0xff;
    assert_int_equal(lmq_channel_frame_decode(hdr, 4, 0, &f, &used), LMQ_CHANNEL_ERR_LENGTH);
    /* a bad header is refused before the body arrived */
    hdr[0] = 100;
    hdr[1] = hdr[3] = 0;
    hdr[4] = 9;
    assert_int_equal(lmq_channel_frame_decode(hdr, 8, 0, &f, &used), LMQ_CHANNEL_ERR_HEADER);
    /* in a RESULT: type, version, reserved, seq, status, count, item padding */
    assert_int_equal(mutated(4, 3), LMQ_CHANNEL_ERR_HEADER);
    assert_int_equal(mutated(5, 2), LMQ_CHANNEL_ERR_HEADER);
    assert_int_equal(mutated(7, 1), LMQ_CHANNEL_ERR_HEADER);
    assert_int_equal(mutated(8, 0), LMQ_CHANNEL_ERR_SEQ);
    assert_int_equal(mutated(16, 1), LMQ_CHANNEL_ERR_BODY);    /* status > 0 */
    assert_int_equal(mutated(16, 0xfa), LMQ_CHANNEL_ERR_BODY); /* unknown refusal */
    assert_int_equal(mutated(16, 0xff), LMQ_CHANNEL_ERR_BODY); /* refused with an index */
    assert_int_equal(mutated(24, 0), LMQ_CHANNEL_ERR_BODY);    /* OK without an index */
    assert_int_equal(mutated(20, 2), LMQ_CHANNEL_ERR_BODY);    /* count */
    assert_int_equal(mutated(36, 1), LMQ_CHANNEL_ERR_BODY);    /* item reserved */
    assert_int_equal(mutated(36, 0), 0);
    assert_string_equal(lmq_channel_strerror(LMQ_CHANNEL_ERR_HEADER),
                        "unknown frame type or version");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_roundtrip),
        cmocka_unit_test(test_result_roundtrip_and_stream),
        cmocka_unit_test(test_defects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
