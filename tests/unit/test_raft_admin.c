/* Tests of src/cluster/raft_admin.c without a Raft node: the request
 * parser takes the three ops in any key order and refuses each defect with
 * its own reason; a queued request is answered exactly once, a malformed
 * one at once with bad_request, queued ones with shutdown when the node
 * stops; the replies are valid JSON strings (quotes in reasons escaped).
 * The requests against real nodes run in
 * tests/integration/test_cluster_admin.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cluster/raft_admin.h"

static int parse(const char *s, struct lmq_raft_admin_req *r, char *err, size_t cap)
{
    return lmq_raft_admin_parse((const uint8_t *)s, strlen(s), r, err, cap);
}

static void test_parse_ok(void **state)
{
    (void)state;
    struct lmq_raft_admin_req r;
    char err[256];
    assert_int_equal(
        parse("{\"op\": \"add\", \"id\": 4, \"address\": \"127.0.0.1:7004\"}", &r, err, sizeof err),
        0);
    assert_int_equal(r.op, LMQ_RAFT_ADMIN_ADD);
    assert_int_equal(r.id, 4);
    assert_string_equal(r.address, "127.0.0.1:7004");
    assert_int_equal(
        parse(" {\"address\":\"n5.example:1\",\"id\":5,\"op\":\"add\"}\n", &r, err, sizeof err), 0);
    assert_int_equal(r.id, 5);
    assert_string_equal(r.address, "n5.example:1");
    assert_int_equal(
        parse("{\"op\": \"remove\", \"id\": 9223372036854775807}", &r, err, sizeof err), 0);
    assert_int_equal(r.op, LMQ_RAFT_ADMIN_REMOVE);
    assert_true(r.id == 9223372036854775807ull);
    assert_string_equal(r.address, "");
    assert_int_equal(parse("{\"op\": \"transfer\"}", &r, err, sizeof err), 0);
    assert_int_equal(r.op, LMQ_RAFT_ADMIN_TRANSFER);
    assert_int_equal(r.id, 0);
    assert_int_equal(parse("{\"id\": 3, \"op\": \"transfer\"}", &r, err, sizeof err), 0);
    assert_int_equal(r.id, 3);
}

static void test_parse_defects(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"", "not a JSON object"},
        {"[]", "not a JSON object"},
        {"{}", "op: expected"},
        {"{\"op\": \"frob\"}", "op: expected"},
        {"{\"op\": 1}", "op: expected"},
        {"{\"op\": \"remove\"}", "remove: needs \"id\""},
        {"{\"op\": \"add\", \"id\": 4}", "add: needs \"address\""},
        {"{\"op\": \"add\", \"id\": 4, \"address\": \"nocolon\"}", "add: needs \"address\""},
        {"{\"op\": \"add\", \"id\": 4, \"address\": \"h:0\"}", "add: needs \"address\""},
        {"{\"op\": \"remove\", \"id\": 2, \"address\": \"h:1\"}", "remove: takes no \"address\""},
        {"{\"op\": \"remove\", \"id\": 0}", "id: expected a node id"},
        {"{\"op\": \"remove\", \"id\": 02}", "id: expected a node id"},
        {"{\"op\": \"remove\", \"id\": -2}", "id: expected a node id"},
        {"{\"op\": \"remove\", \"id\": 2.5}", "expected ',' or '}'"},
        {"{\"op\": \"remove\", \"id\": 9223372036854775808}", "id: expected a node id"},
        {"{\"op\": \"remove\", \"id\": \"2\"}", "id: expected a node id"},
        {"{\"op\": \"remove\", \"id\": 2, \"id\": 3}", "\"id\" given twice"},
        {"{\"op\": \"remove\", \"op\": \"add\"}", "\"op\" given twice"},
        {"{\"op\": \"remove\", \"id\": 2, \"force\": true}", "unknown key \"force\""},
        {"{\"op\": \"rem\\u006fve\", \"id\": 2}", "op: expected"},
        {"{\"op\": \"remove\", \"id\": 2} x", "trailing bytes"},
        {"{\"op\": \"remove\", \"id\": 2", "expected ',' or '}'"},
        {"{\"op\" \"remove\"}", "expected ':'"},
        {"{\"op\": \"remove\",}", "expected a key"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct lmq_raft_admin_req r;
        char err[256] = "";
        if (parse(cases[i][0], &r, err, sizeof err) != -1 || !strstr(err, cases[i][1]))
            fail_msg("'%s': error '%s', want '%s'", cases[i][0], err, cases[i][1]);
    }
    /* NUL inside: refused, not cut short */
    struct lmq_raft_admin_req r;
    char err[256];
    static const uint8_t nul[] = "{\"op\": \"transfer\"}\0";
    assert_int_equal(lmq_raft_admin_parse(nul, sizeof nul - 1, &r, err, sizeof err), -1);
}

struct answer {
    struct lmq_committer_admin adm;
    int calls;
};

static void answered(struct lmq_committer_admin *r)
{
    ((struct answer *)r)->calls++;
}

static void test_queue_answers_once(void **state)
{
    (void)state;
    struct lmq_raft_admin *q = lmq_raft_admin_new(NULL, NULL);
    assert_non_null(q);
    struct answer bad = {.adm.done = answered};
    static const char req_bad[] = "{\"op\": \"add\", \"id\": 4, \"address\": \"a\\\"b:1\"}";
    lmq_raft_admin_submit(q, (const uint8_t *)req_bad, strlen(req_bad), &bad.adm);
    assert_int_equal(bad.calls, 1); /* at once */
    assert_non_null(strstr(bad.adm.result, "{\"error\": \"bad_request\", \"reason\": "
                                           "\"address: expected \\\"HOST:PORT\\\""));
    struct answer a = {.adm.done = answered}, b = {.adm.done = answered};
    static const char req_a[] = "{\"op\": \"remove\", \"id\": 2}";
    static const char req_b[] = "{\"op\": \"transfer\"}";
    lmq_raft_admin_submit(q, (const uint8_t *)req_a, strlen(req_a), &a.adm);
    lmq_raft_admin_submit(q, (const uint8_t *)req_b, strlen(req_b), &b.adm);
    assert_int_equal(a.calls + b.calls, 0); /* queued for the raft thread */
    lmq_raft_admin_cancel(q);
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 1);
    assert_non_null(strstr(a.adm.result, "\"error\": \"shutdown\""));
    lmq_raft_admin_cancel(q); /* nothing left: nobody is answered twice */
    assert_int_equal(a.calls + b.calls + bad.calls, 3);
    lmq_raft_admin_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_ok),
        cmocka_unit_test(test_parse_defects),
        cmocka_unit_test(test_queue_answers_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
