/* Tests of src/broker/ledger_api.c's pure part: which SUBSCRIBE filters a
 * client may hold as far as the $ledger topics go (only its own
 * $ledger/receipts/{client id}, never a filter that could match another
 * client's, also behind $share/GROUP/), and the request payload parsers of
 * $ledger/proof and $ledger/consistency. The topics themselves are tested
 * against a running broker in tests/integration/test_ledger_api*.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "broker/ledger_api.h"

static bool may(const char *id, const char *filter)
{
    return lmq_ledger_api_may_subscribe(id, filter, strlen(filter));
}

static void test_may_subscribe(void **state)
{
    (void)state;
    /* allowed */
    assert_true(may("me", "$ledger/receipts/me"));
    assert_true(may("me", "$ledger/+/me"));
    assert_true(may("a/b", "$ledger/receipts/a/b"));
    assert_true(may("me", "$ledger/checkpoint"));
    assert_true(may("me", "$ledger/blocks"));
    assert_true(may("me", "$ledger/+"));
    assert_true(may("me", "$ledger/receipts"));
    assert_true(may("me", "#"));
    assert_true(may("me", "+/receipts/other"));
    assert_true(may("me", "$SYS/#"));
    assert_true(may("me", "sensors/$ledger/receipts/other"));
    assert_true(may("me", "$share/g/$ledger/receipts/me"));
    assert_true(may("me", "$share/g/sensors/#"));
    /* refused: could match another client's receipts */
    assert_false(may("me", "$ledger/#"));
    assert_false(may("me", "$ledger/receipts/other"));
    assert_false(may("me", "$ledger/receipts/+"));
    assert_false(may("me", "$ledger/receipts/#"));
    assert_false(may("me", "$ledger/receipts/me/#"));
    assert_false(may("me", "$ledger/receipts/me/x"));
    assert_false(may("me", "$ledger/receipts/m"));
    assert_false(may("me", "$ledger/receipts/mee"));
    assert_false(may("me", "$ledger/+/other"));
    assert_false(may("me", "$ledger/+/+"));
    assert_false(may("me", "$ledger/+/#"));
    assert_false(may("a", "$ledger/receipts/a/b"));
    assert_false(may("me", "$share/g/$ledger/receipts/other"));
    assert_false(may("me", "$share/g/$ledger/#"));
    /* a client id that is itself a wildcard never matches literally */
    assert_false(may("+", "$ledger/receipts/+"));
    assert_false(may("#", "$ledger/receipts/#"));
}

static int proof_q(const char *q, uint64_t *index, uint8_t hash[32])
{
    return lmq_ledger_api_parse_proof_query((const uint8_t *)q, strlen(q), index, hash);
}

static int cons_q(const char *q, uint64_t *o, uint64_t *n)
{
    return lmq_ledger_api_parse_consistency_query((const uint8_t *)q, strlen(q), o, n);
}

static void test_request_payloads(void **state)
{
    (void)state;
    uint64_t i, o, n;
    uint8_t h[32];
    assert_int_equal(proof_q("0", &i, h), 1);
    assert_true(i == 0);
    assert_int_equal(proof_q("42\r\n", &i, h), 1);
    assert_true(i == 42);
    assert_int_equal(proof_q("18446744073709551615", &i, h), 1);
    assert_true(i == UINT64_MAX);
    assert_int_equal(
        proof_q("AB00000000000000000000000000000000000000000000000000000000000001", &i, h), 2);
    assert_true(h[0] == 0xab && h[31] == 0x01);
    static const char *const bad_proof[] = {
        "",
        " ",
        "007",
        "-1",
        "+1",
        "1 ",
        "1.0",
        " 1",
        "1a",
        "0x1",
        "18446744073709551616",
        "zz00000000000000000000000000000000000000000000000000000000000000",
        "ab0000000000000000000000000000000000000000000000000000000000001"};
    for (size_t k = 0; k < sizeof bad_proof / sizeof bad_proof[0]; k++) {
        if (strcmp(bad_proof[k], "1 ") == 0) { /* trailing blanks are fine */
            assert_int_equal(proof_q(bad_proof[k], &i, h), 1);
            continue;
        }
        assert_int_equal(proof_q(bad_proof[k], &i, h), 0);
    }
    assert_int_equal(lmq_ledger_api_parse_proof_query((const uint8_t *)"1\0", 2, &i, h), 0);
    assert_int_equal(cons_q("3 7", &o, &n), 0);
    assert_true(o == 3 && n == 7);
    assert_int_equal(cons_q(" 1\t\t18446744073709551615 \r\n", &o, &n), 0);
    assert_true(o == 1 && n == UINT64_MAX);
    static const char *const bad_cons[] = {"",      "3",    "3 ",   "37",
                                           "3 7 9", "-1 5", "3 +7", "03 7",
                                           "3 07",  "a b",  "3,7",  "3 18446744073709551616"};
    for (size_t k = 0; k < sizeof bad_cons / sizeof bad_cons[0]; k++)
        assert_int_equal(cons_q(bad_cons[k], &o, &n), -1);
    assert_int_equal(lmq_ledger_api_parse_consistency_query((const uint8_t *)"3 7\0", 4, &o, &n),
                     -1);
}

static int reg_q(const char *s, struct lmq_ledger_registry_query *q)
{
    return lmq_ledger_api_parse_registry_query((const uint8_t *)s, strlen(s), q);
}

#define ID1 "d-nil7oavuxqfz245p5g4lpksuzpbdmyux"

static void test_registry_payloads(void **state)
{
    (void)state;
    struct lmq_ledger_registry_query q;
    assert_int_equal(reg_q("list", &q), 0);
    assert_true(q.kind == LMQ_LEDGER_REGISTRY_LIST && !q.has_id &&
                q.limit == LMQ_LEDGER_REGISTRY_PAGE_MAX);
    assert_int_equal(reg_q(" list 7\n", &q), 0);
    assert_true(q.kind == LMQ_LEDGER_REGISTRY_LIST && !q.has_id && q.limit == 7);
    assert_int_equal(reg_q("list\t" ID1, &q), 0);
    assert_true(q.has_id && strcmp(q.id, ID1) == 0 && q.limit == LMQ_LEDGER_REGISTRY_PAGE_MAX);
    assert_int_equal(reg_q("list " ID1 " 100 ", &q), 0);
    assert_true(q.has_id && strcmp(q.id, ID1) == 0 && q.limit == 100);
    assert_int_equal(reg_q("show " ID1, &q), 0);
    assert_true(q.kind == LMQ_LEDGER_REGISTRY_SHOW && q.has_id && strcmp(q.id, ID1) == 0);
    static const char *const bad[] = {"",
                                      "show",
                                      "show x",
                                      "show " ID1 " 5",
                                      "show " ID1 "x",
                                      "show d-nil7oavuxqfz245p5g4lpksuzpbdmyu1",
                                      "list 0",
                                      "list 101",
                                      "list 05",
                                      "list 1 2",
                                      "list 5 " ID1,
                                      "list " ID1 " " ID1,
                                      "lists",
                                      "listing 5",
                                      "LIST",
                                      "drop"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++)
        assert_int_equal(reg_q(bad[k], &q), -1);
    assert_int_equal(lmq_ledger_api_parse_registry_query((const uint8_t *)"list\0", 5, &q), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_may_subscribe),
        cmocka_unit_test(test_request_payloads),
        cmocka_unit_test(test_registry_payloads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
