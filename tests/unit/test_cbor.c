/* Tests of src/util/cbor.c: RFC 8949 Appendix A encodings (writer and
 * reader), the §4.2.1 key order example, and one test per error code. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crypto/hash.h"
#include "util/cbor.h"

static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
    ssize_t n = crypto_hex_decode(hex, strlen(hex), out, cap);
    assert_true(n >= 0);
    return (size_t)n;
}

static void expect_written(struct cbor_writer *w, const char *hex)
{
    uint8_t want[64];
    size_t n = unhex(hex, want, sizeof want), len = 0;
    assert_int_equal(cbor_writer_finish(w, &len), 0);
    if (len != n || memcmp(w->buf, want, n) != 0) {
        char got[200];
        crypto_hex_encode(w->buf, len, got, sizeof got);
        fail_msg("wrote %s, want %s", got, hex);
    }
}

static void test_rfc8949_uints(void **state)
{
    (void)state;
    static const struct {
        uint64_t v;
        const char *hex;
    } cases[] = {
        {0, "00"},
        {1, "01"},
        {10, "0a"},
        {23, "17"},
        {24, "1818"},
        {25, "1819"},
        {100, "1864"},
        {1000, "1903e8"},
        {1000000, "1a000f4240"},
        {1000000000000ull, "1b000000e8d4a51000"},
        {UINT64_MAX, "1bffffffffffffffff"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t buf[16];
        struct cbor_writer w;
        cbor_writer_init(&w, buf, sizeof buf);
        cbor_put_uint(&w, cases[i].v);
        expect_written(&w, cases[i].hex);
        struct cbor_reader r;
        uint64_t v;
        cbor_reader_init(&r, buf, w.len);
        assert_int_equal(cbor_get_uint(&r, &v), 0);
        assert_true(v == cases[i].v);
        assert_int_equal(cbor_reader_end(&r), 0);
        assert_int_equal(cbor_validate_deterministic(buf, w.len), 0);
    }
}

static void test_rfc8949_others(void **state)
{
    (void)state;
    uint8_t buf[64];
    struct cbor_writer w;
    static const struct {
        int64_t v;
        const char *hex;
    } ints[] = {{-1, "20"},
                {-10, "29"},
                {-100, "3863"},
                {-1000, "3903e7"},
                {INT64_MIN, "3b7fffffffffffffff"}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        cbor_writer_init(&w, buf, sizeof buf);
        cbor_put_int(&w, ints[i].v);
        expect_written(&w, ints[i].hex);
        struct cbor_reader r;
        int64_t v;
        cbor_reader_init(&r, buf, w.len);
        assert_int_equal(cbor_get_int(&r, &v), 0);
        assert_true(v == ints[i].v);
    }
    cbor_writer_init(&w, buf, sizeof buf);
    cbor_put_bstr(&w, "", 0);
    expect_written(&w, "40");
    cbor_writer_init(&w, buf, sizeof buf);
    cbor_put_bstr(&w, "\x01\x02\x03\x04", 4);
    expect_written(&w, "4401020304");
    cbor_writer_init(&w, buf, sizeof buf);
    cbor_put_cstr(&w, "IETF");
    expect_written(&w, "6449455446");
    cbor_writer_init(&w, buf, sizeof buf);
    cbor_put_cstr(&w, "\xc3\xbc");
    expect_written(&w, "62c3bc");
    cbor_writer_init(&w, buf, sizeof buf);
    cbor_put_array(&w, 3);
    cbor_put_uint(&w, 1);
    cbor_put_uint(&w, 2);
    cbor_put_uint(&w, 3);
    expect_written(&w, "83010203");
    cbor_writer_init(&w, buf, sizeof buf);
    cbor_put_map(&w, 2);
    cbor_put_uint(&w, 1);
    cbor_put_uint(&w, 2);
    cbor_put_uint(&w, 3);
    cbor_put_uint(&w, 4);
    expect_written(&w, "a201020304");
    cbor_writer_init(&w, buf, sizeof buf);
    cbor_put_bool(&w, false);
    cbor_put_bool(&w, true);
    cbor_put_null(&w);
    expect_written(&w, "f4f5f6");
    cbor_writer_init(&w, buf, sizeof buf);
    cbor_put_tag(&w, 1);
    cbor_put_uint(&w, 1363896240);
    expect_written(&w, "c11a514b67b0");

    /* read a nested structure back with the typed getters */
    cbor_writer_init(&w, buf, sizeof buf);
    cbor_put_map(&w, 3);
    cbor_put_uint(&w, 1);
    cbor_put_cstr(&w, "a");
    cbor_put_uint(&w, 2);
    cbor_put_array(&w, 2);
    cbor_put_bool(&w, true);
    cbor_put_null(&w);
    cbor_put_uint(&w, 3);
    cbor_put_tag(&w, 18);
    cbor_put_bstr(&w, "xy", 2);
    size_t len;
    assert_int_equal(cbor_writer_finish(&w, &len), 0);
    assert_int_equal(cbor_validate_deterministic(buf, len), 0);
    struct cbor_reader r;
    uint64_t n, k, tag;
    const char *s;
    const uint8_t *b;
    size_t sl;
    bool bv;
    enum cbor_type t;
    cbor_reader_init(&r, buf, len);
    assert_int_equal(cbor_peek_type(&r, &t), 0);
    assert_int_equal(t, CBOR_TYPE_MAP);
    assert_int_equal(cbor_get_map(&r, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(cbor_get_uint(&r, &k), 0);
    assert_int_equal(cbor_get_tstr(&r, &s, &sl), 0);
    assert_int_equal(sl, 1);
    assert_int_equal(s[0], 'a');
    assert_int_equal(cbor_get_uint(&r, &k), 0);
    assert_int_equal(cbor_get_uint(&r, &k), CBOR_ERR_TYPE); /* an array is next */
    assert_int_equal(cbor_get_array(&r, &n), 0);
    assert_int_equal(cbor_get_null(&r), CBOR_ERR_TYPE);
    assert_int_equal(cbor_get_bool(&r, &bv), 0);
    assert_true(bv);
    assert_int_equal(cbor_get_bool(&r, &bv), CBOR_ERR_TYPE);
    assert_int_equal(cbor_get_null(&r), 0);
    assert_int_equal(cbor_get_uint(&r, &k), 0);
    assert_int_equal(cbor_reader_end(&r), CBOR_ERR_TRAILING);
    assert_int_equal(cbor_get_tag(&r, &tag), 0);
    assert_int_equal(tag, 18);
    assert_int_equal(cbor_get_bstr(&r, &b, &sl), 0);
    assert_int_equal(sl, 2);
    assert_int_equal(cbor_reader_end(&r), 0);

    /* skip returns the item's bytes */
    cbor_reader_init(&r, buf, len);
    const uint8_t *item;
    size_t il;
    assert_int_equal(cbor_skip(&r, &item, &il), 0);
    assert_ptr_equal(item, buf);
    assert_int_equal(il, len);
}

static void test_key_order(void **state)
{
    (void)state;
    uint8_t buf[64];
    /* RFC 8949 §4.2.1: 10, 100, -1, "z", "aa", [100], [-1], false */
    size_t n = unhex("a80a001864002000617a006261610081186400812000f400", buf, sizeof buf);
    assert_int_equal(cbor_validate_deterministic(buf, n), 0);
    /* swap "z" and "aa" (length-first order, as RFC 7049 had it, is not ours) */
    n = unhex("a80a00186400200062616100617a0081186400812000f400", buf, sizeof buf);
    assert_int_equal(cbor_validate_deterministic(buf, n), CBOR_ERR_MAP_ORDER);
    n = unhex("a202000100", buf, sizeof buf);
    assert_int_equal(cbor_validate_deterministic(buf, n), CBOR_ERR_MAP_ORDER);
    n = unhex("a201000100", buf, sizeof buf); /* duplicate key */
    assert_int_equal(cbor_validate_deterministic(buf, n), CBOR_ERR_MAP_ORDER);
    n = unhex("a201000200", buf, sizeof buf);
    assert_int_equal(cbor_validate_deterministic(buf, n), 0);
}

static void test_errors(void **state)
{
    (void)state;
    static const struct {
        const char *hex;
        int err;
    } cases[] = {
        {"", CBOR_ERR_TRUNCATED},
        {"1800", CBOR_ERR_NONCANONICAL},
        {"1817", CBOR_ERR_NONCANONICAL},
        {"190017", CBOR_ERR_NONCANONICAL},
        {"1900ff", CBOR_ERR_NONCANONICAL},
        {"1a0000ffff", CBOR_ERR_NONCANONICAL},
        {"1b00000000ffffffff", CBOR_ERR_NONCANONICAL},
        {"3800", CBOR_ERR_NONCANONICAL},
        {"5801ff", CBOR_ERR_NONCANONICAL},
        {"9800", CBOR_ERR_NONCANONICAL},
        {"d800", CBOR_ERR_NONCANONICAL},
        {"5f4100ff", CBOR_ERR_INDEFINITE},
        {"7fff", CBOR_ERR_INDEFINITE},
        {"9fff", CBOR_ERR_INDEFINITE},
        {"bfff", CBOR_ERR_INDEFINITE},
        {"1f", CBOR_ERR_MALFORMED},
        {"1c", CBOR_ERR_MALFORMED},
        {"5d", CBOR_ERR_MALFORMED},
        {"ff", CBOR_ERR_MALFORMED},
        {"f810", CBOR_ERR_MALFORMED},
        {"f7", CBOR_ERR_UNSUPPORTED},
        {"f0", CBOR_ERR_UNSUPPORTED},
        {"f820", CBOR_ERR_UNSUPPORTED},
        {"f93c00", CBOR_ERR_UNSUPPORTED},
        {"fa47c35000", CBOR_ERR_UNSUPPORTED},
        {"fb3ff199999999999a", CBOR_ERR_UNSUPPORTED},
        {"19", CBOR_ERR_TRUNCATED},
        {"1901", CBOR_ERR_TRUNCATED},
        {"6261", CBOR_ERR_TRUNCATED},
        {"4201", CBOR_ERR_TRUNCATED},
        {"8301", CBOR_ERR_TRUNCATED},
        {"a1", CBOR_ERR_TRUNCATED},
        {"a101", CBOR_ERR_TRUNCATED},
        {"c1", CBOR_ERR_TRUNCATED},
        {"9bffffffffffffffff00", CBOR_ERR_TRUNCATED},
        {"bbffffffffffffffff00", CBOR_ERR_TRUNCATED},
        {"5bffffffffffffffff00", CBOR_ERR_TRUNCATED},
        {"0101", CBOR_ERR_TRAILING},
        {"62c328", CBOR_ERR_UTF8},
        {"63eda080", CBOR_ERR_UTF8},
    };
    uint8_t buf[64];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = unhex(cases[i].hex, buf, sizeof buf);
        int rc = cbor_validate_deterministic(n ? buf : (const uint8_t *)"", n);
        if (rc != cases[i].err)
            fail_msg("%s: got %d (%s), want %d", cases[i].hex, rc, cbor_strerror(rc), cases[i].err);
    }

    /* nesting: 16 levels are fine, 17 are not */
    uint8_t deep[40];
    memset(deep, 0x81, sizeof deep);
    deep[16] = 0x00;
    assert_int_equal(cbor_validate_deterministic(deep, 17), 0);
    deep[16] = 0x81;
    deep[17] = 0x00;
    assert_int_equal(cbor_validate_deterministic(deep, 18), CBOR_ERR_DEPTH);
    memset(deep, 0xc1, sizeof deep); /* tags count as nesting too */
    deep[39] = 0x00;
    assert_int_equal(cbor_validate_deterministic(deep, 40), CBOR_ERR_DEPTH);

    /* typed getters: type, range, cursor unchanged on error */
    struct cbor_reader r;
    uint64_t v;
    int64_t iv;
    size_t n = unhex("1b8000000000000000", buf, sizeof buf);
    cbor_reader_init(&r, buf, n);
    assert_int_equal(cbor_get_int(&r, &iv), CBOR_ERR_RANGE);
    assert_int_equal(cbor_reader_remaining(&r), n);
    assert_int_equal(cbor_get_uint(&r, &v), 0);
    n = unhex("20", buf, sizeof buf);
    cbor_reader_init(&r, buf, n);
    assert_int_equal(cbor_get_uint(&r, &v), CBOR_ERR_TYPE);
    assert_int_equal(cbor_get_negint(&r, &v), 0);
    assert_int_equal(v, 0);
    n = unhex("62c328", buf, sizeof buf);
    cbor_reader_init(&r, buf, n);
    const char *s;
    size_t sl;
    assert_int_equal(cbor_get_tstr(&r, &s, &sl), CBOR_ERR_UTF8);
    assert_int_equal(cbor_reader_remaining(&r), 3);
    n = unhex("1800", buf, sizeof buf);
    cbor_reader_init(&r, buf, n);
    assert_int_equal(cbor_get_uint(&r, &v), CBOR_ERR_NONCANONICAL);

    /* writer out of space is sticky */
    struct cbor_writer w;
    cbor_writer_init(&w, buf, 3);
    cbor_put_uint(&w, 1000);
    cbor_put_uint(&w, 1);
    size_t len;
    assert_int_equal(cbor_writer_finish(&w, &len), CBOR_ERR_SPACE);
    assert_int_equal(len, 3);
    for (int e = 0; e >= -12; e--)
        assert_non_null(cbor_strerror(e));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc8949_uints),
        cmocka_unit_test(test_rfc8949_others),
        cmocka_unit_test(test_key_order),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
