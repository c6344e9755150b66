/* Tests of src/broker/ledger_api.c's pure part: which SUBSCRIBE filters a
 * client may hold as far as the $ledger topics go (only its own
 * $ledger/receipts/{client id}, never a filter that could match another
 * client's, also behind $share/GROUP/). The topics themselves are tested
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_may_subscribe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
