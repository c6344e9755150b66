/* Unit tests of the broker's pure parts: the topic tree (matching, `$`
 * rule, overlapping subscriptions deduplicated at the highest QoS,
 * unsubscribe and pruning, retained messages matched by wildcard filters)
 * and the outgoing byte queue, the MQTT 5 subscription options kept per
 * match, and the authentication method registry. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "broker/auth.h"
#include "broker/msg.h"
#include "broker/outq.h"
#include "broker/topictree.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S(x) x, strlen(x)

static int A, B, C; /* owners */

static int find(const struct lmq_match_set *s, void *owner)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].owner == owner)
            return s->v[i].qos;
    return -1;
}

static size_t match(struct lmq_tree *t, const char *topic, struct lmq_match_set *s)
{
    assert_int_equal(lmq_tree_match(t, S(topic), s), 0);
    return s->n;
}

static void test_exact_and_wildcards(void **state)
{
    (void)state;
    struct lmq_tree *t = lmq_tree_new();
    struct lmq_match_set s = {0};
    assert_int_equal(lmq_tree_subscribe(t, S("a/b/c"), &A, 0, 0, NULL), 0);
    assert_int_equal(lmq_tree_subscribe(t, S("a/+/c"), &B, 1, 0, NULL), 0);
    assert_int_equal(lmq_tree_subscribe(t, S("a/#"), &C, 2, 0, NULL), 0);

    assert_int_equal(match(t, "a/b/c", &s), 3);
    assert_int_equal(find(&s, &A), 0);
    assert_int_equal(find(&s, &B), 1);
    assert_int_equal(find(&s, &C), 2);

    assert_int_equal(match(t, "a/x/c", &s), 2);
    assert_int_equal(find(&s, &A), -1);
    /* "a/#" matches the parent level "a" too. */
    assert_int_equal(match(t, "a", &s), 1);
    assert_int_equal(find(&s, &C), 2);
    assert_int_equal(match(t, "a/b/c/d", &s), 1);
    assert_int_equal(match(t, "b", &s), 0);
    /* '+' matches an empty level. */
    assert_int_equal(match(t, "a//c", &s), 2);

    lmq_match_set_free(&s);
    lmq_tree_free(t);
}

static void test_dollar_rule(void **state)
{
    (void)state;
    struct lmq_tree *t = lmq_tree_new();
    struct lmq_match_set s = {0};
    lmq_tree_subscribe(t, S("#"), &A, 0, 0, NULL);
    lmq_tree_subscribe(t, S("+/x"), &B, 0, 0, NULL);
    lmq_tree_subscribe(t, S("$SYS/#"), &C, 0, 0, NULL);
    assert_int_equal(match(t, "$SYS/x", &s), 1);
    assert_int_equal(find(&s, &C), 0);
    assert_int_equal(match(t, "sys/x", &s), 2);
    assert_int_equal(find(&s, &C), -1);
    /* Only a leading wildcard is affected. */
    lmq_tree_subscribe(t, S("a/+"), &C, 1, 0, NULL);
    assert_int_equal(match(t, "a/$x", &s), 2);
    lmq_match_set_free(&s);
    lmq_tree_free(t);
}

static void test_overlap_dedupe(void **state)
{
    (void)state;
    struct lmq_tree *t = lmq_tree_new();
    struct lmq_match_set s = {0};
    lmq_tree_subscribe(t, S("x/y"), &A, 0, 0, NULL);
    lmq_tree_subscribe(t, S("x/+"), &A, 2, 0, NULL);
    lmq_tree_subscribe(t, S("#"), &A, 1, 0, NULL);
    lmq_tree_subscribe(t, S("x/#"), &B, 1, 0, NULL);
    assert_int_equal(match(t, "x/y", &s), 2);
    assert_int_equal(find(&s, &A), 2);
    assert_int_equal(find(&s, &B), 1);
    /* Re-subscribing replaces the QoS. */
    bool existed = false;
    lmq_tree_subscribe(t, S("x/+"), &A, 0, 0, &existed);
    assert_true(existed);
    assert_int_equal(match(t, "x/y", &s), 2);
    assert_int_equal(find(&s, &A), 1);
    lmq_match_set_free(&s);
    lmq_tree_free(t);
}

static void test_many_owners(void **state)
{
    (void)state;
    struct lmq_tree *t = lmq_tree_new();
    struct lmq_match_set s = {0};
    static char owners[5000];
    for (int i = 0; i < 5000; i++) {
        lmq_tree_subscribe(t, S("f/#"), &owners[i], 0, 0, NULL);
        lmq_tree_subscribe(t, S("f/+"), &owners[i], 1, 0, NULL);
    }
    assert_int_equal(match(t, "f/g", &s), 5000);
    for (int i = 0; i < 5000; i++)
        assert_int_equal(find(&s, &owners[i]), 1);
    assert_int_equal(match(t, "f/g/h", &s), 5000);
    assert_int_equal(match(t, "q", &s), 0);
    lmq_match_set_free(&s);
    lmq_tree_free(t);
}

static void test_unsubscribe_prunes(void **state)
{
    (void)state;
    struct lmq_tree *t = lmq_tree_new();
    struct lmq_match_set s = {0};
    char name[32];
    for (int i = 0; i < 200; i++) {
        snprintf(name, sizeof name, "n/%d/leaf", i);
        lmq_tree_subscribe(t, S(name), &A, 1, 0, NULL);
    }
    for (int i = 0; i < 200; i += 2) {
        snprintf(name, sizeof name, "n/%d/leaf", i);
        assert_int_equal(lmq_tree_unsubscribe(t, S(name), &A), 0);
        assert_int_equal(lmq_tree_unsubscribe(t, S(name), &A), -ENOENT);
    }
    for (int i = 0; i < 200; i++) {
        snprintf(name, sizeof name, "n/%d/leaf", i);
        assert_int_equal(match(t, name, &s), i % 2 ? 1 : 0);
    }
    for (int i = 1; i < 200; i += 2) {
        snprintf(name, sizeof name, "n/%d/leaf", i);
        assert_int_equal(lmq_tree_unsubscribe(t, S(name), &A), 0);
    }
    assert_int_equal(lmq_tree_node_count(t), 0);
    assert_int_equal(lmq_tree_unsubscribe(t, S("zz"), &A), -ENOENT);
    lmq_match_set_free(&s);
    lmq_tree_free(t);
}

struct collected {
    char topics[16][32];
    int n;
};

static void collect(void *ctx, struct lmq_msg *m)
{
    struct collected *c = ctx;
    if (c->n < 16)
        snprintf(c->topics[c->n++], 32, "%s", m->topic);
}

static bool has(const struct collected *c, const char *topic)
{
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->topics[i], topic) == 0)
            return true;
    return false;
}

static void retain(struct lmq_tree *t, const char *topic, const char *payload)
{
    int delta;
    struct lmq_msg *m = payload ? lmq_msg_new(S(topic), S(payload), NULL, 0, 1, true) : NULL;
    assert_int_equal(lmq_tree_retain(t, S(topic), m, &delta), 0);
    lmq_msg_unref(m);
}

static void test_retained(void **state)
{
    (void)state;
    struct lmq_tree *t = lmq_tree_new();
    retain(t, "s/a", "1");
    retain(t, "s/b", "2");
    retain(t, "s/b/c", "3");
    retain(t, "s", "4");
    retain(t, "$SYS/x", "5");
    assert_int_equal(lmq_tree_retained_count(t), 5);
    retain(t, "s/a", "1b"); /* replace */
    assert_int_equal(lmq_tree_retained_count(t), 5);
    assert_memory_equal(lmq_tree_retained(t, S("s/a"))->payload, "1b", 2);

    struct collected c = {0};
    lmq_tree_match_retained(t, S("s/+"), collect, &c);
    assert_int_equal(c.n, 2);
    assert_true(has(&c, "s/a") && has(&c, "s/b"));

    memset(&c, 0, sizeof c);
    lmq_tree_match_retained(t, S("s/#"), collect, &c);
    assert_int_equal(c.n, 4);
    assert_true(has(&c, "s"));

    memset(&c, 0, sizeof c);
    lmq_tree_match_retained(t, S("#"), collect, &c);
    assert_int_equal(c.n, 4); /* not $SYS/x */

    memset(&c, 0, sizeof c);
    lmq_tree_match_retained(t, S("$SYS/#"), collect, &c);
    assert_int_equal(c.n, 1);

    retain(t, "s/b", NULL); /* delete */
    assert_int_equal(lmq_tree_retained_count(t), 4);
    memset(&c, 0, sizeof c);
    lmq_tree_match_retained(t, S("+/+"), collect, &c);
    assert_int_equal(c.n, 1);
    assert_true(has(&c, "s/a"));
    lmq_tree_free(t);
}

static void test_outq(void **state)
{
    (void)state;
    struct lmq_outq q = {0};
    struct lmq_msg *m = lmq_msg_new(S("t"), S("0123456789"), NULL, 0, 0, false);
    assert_int_equal(lmq_outq_copy(&q, "abc", 3), 0);
    assert_int_equal(lmq_outq_copy(&q, "de", 2), 0);
    assert_int_equal(lmq_outq_ref(&q, m, m->payload, 10), 0);
    assert_int_equal(m->refcnt, 2);
    assert_int_equal(lmq_outq_copy(&q, "fg", 2), 0);
    assert_int_equal(q.bytes, 17);
    struct iovec iov[8];
    assert_int_equal(lmq_outq_iov(&q, iov, 8), 3);
    assert_int_equal(iov[0].iov_len, 5);
    lmq_outq_consume(&q, 7);
    assert_int_equal(lmq_outq_iov(&q, iov, 8), 2);
    assert_int_equal(iov[0].iov_len, 8);
    assert_memory_equal(iov[0].iov_base, "23456789", 8);
    assert_int_equal(m->refcnt, 2);
    lmq_outq_consume(&q, 8);
    assert_int_equal(m->refcnt, 1);
    lmq_outq_consume(&q, 2);
    assert_int_equal(q.bytes, 0);
    lmq_outq_free(&q);
    lmq_msg_unref(m);
}

/* A released starting-size buffer and segment array go to the next queue
 * (no malloc/free per CONNACK: see outq.c); a grown buffer is freed. */
static void test_outq_spares(void **state)
{
    (void)state;
    struct lmq_outq a = {0}, b = {0}, c = {0};
    assert_int_equal(lmq_outq_copy(&a, "ab", 2), 0);
    uint8_t *buf = a.buf;
    struct lmq_outseg *segs = a.segs;
    lmq_outq_consume(&a, 2);
    lmq_outq_trim(&a);
    assert_null(a.buf);
    assert_int_equal(a.cap, 0);
    /* Freed, they would now go to these (glibc reuses the last freed). */
    void *m1 = malloc(256), *m2 = malloc(256);
    assert_int_equal(lmq_outq_copy(&b, "cd", 2), 0);
    free(m1);
    free(m2);
    assert_ptr_equal(b.buf, buf);
    assert_ptr_equal(b.segs, segs);
    assert_int_equal(b.cap, 256);
    assert_memory_equal(b.buf, "cd", 2);
    /* Grown past the starting size, it is not kept. */
    assert_non_null(lmq_outq_reserve(&b, 1100));
    assert_int_equal(b.cap, 2048);
    lmq_outq_free(&b);
    assert_int_equal(lmq_outq_copy(&c, "e", 1), 0);
    assert_int_equal(c.cap, 256);
    assert_ptr_equal(c.segs, segs);
    lmq_outq_free(&c);
    lmq_outq_spares_free();
}

/* The options byte of a subscription reaches the match; overlapping
 * subscriptions of one owner merge theirs (OR). */
static void test_match_opts(void **state)
{
    (void)state;
    struct lmq_tree *t = lmq_tree_new();
    struct lmq_match_set s = {0};
    assert_int_equal(lmq_tree_subscribe(t, S("o/+"), &A, 1, 0x04, NULL), 0);
    assert_int_equal(lmq_tree_subscribe(t, S("o/#"), &A, 0, 0x08, NULL), 0);
    assert_int_equal(lmq_tree_subscribe(t, S("o/x"), &B, 2, 0, NULL), 0);
    assert_int_equal(match(t, "o/x", &s), 2);
    for (size_t i = 0; i < s.n; i++) {
        if (s.v[i].owner == &A)
            assert_int_equal(s.v[i].opts, 0x0C);
        else
            assert_int_equal(s.v[i].opts, 0);
    }
    lmq_match_set_free(&s);
    lmq_tree_free(t);
}

/* The test-only echo method exists only when its environment variable
 * says so, and runs its challenge/response. */
static void test_auth_registry(void **state)
{
    (void)state;
    unsetenv("LEDGERMQ_TEST_AUTH_ECHO");
    assert_null(lmq_auth_find(S("ledgermq-test-echo")));
    setenv("LEDGERMQ_TEST_AUTH_ECHO", "1", 1);
    const struct lmq_auth_method *m = lmq_auth_find(S("ledgermq-test-echo"));
    assert_non_null(m);
    assert_null(lmq_auth_find(S("ledgermq-test-ech")));
    uint8_t out[LMQ_AUTH_OUT_MAX];
    size_t n = 99;
    void *st = NULL;
    assert_int_equal(m->start(&st, (const uint8_t *)"ok", 2, out, sizeof out, &n),
                     LMQ_AUTH_SUCCESS);
    assert_int_equal(n, 0);
    m->done(st);
    st = NULL;
    assert_int_equal(m->start(&st, (const uint8_t *)"ab", 2, out, sizeof out, &n),
                     LMQ_AUTH_CONTINUE);
    assert_int_equal(n, 12);
    assert_memory_equal(out, "challenge:ab", 12);
    assert_int_equal(m->step(&st, (const uint8_t *)"response:ax", 11, out, sizeof out, &n),
                     LMQ_AUTH_FAIL);
    assert_int_equal(m->step(&st, (const uint8_t *)"response:ab", 11, out, sizeof out, &n),
                     LMQ_AUTH_SUCCESS);
    m->done(st);
    unsetenv("LEDGERMQ_TEST_AUTH_ECHO");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_and_wildcards), cmocka_unit_test(test_dollar_rule),
        cmocka_unit_test(test_overlap_dedupe),      cmocka_unit_test(test_many_owners),
        cmocka_unit_test(test_unsubscribe_prunes),  cmocka_unit_test(test_retained),
        cmocka_unit_test(test_outq),                cmocka_unit_test(test_match_opts),
        cmocka_unit_test(test_auth_registry),       cmocka_unit_test(test_outq_spares),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
