/* Tests of src/identity/acl.c: parsing (every error names file:line),
 * anonymous / user / device sections, patterns with %c %u %d, deny
 * precedence, subscription filters covered by rule filters (Mosquitto
 * semantics, '$' topics), partial denies, and the filter relations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

#include "identity/acl.h"

#define R ACL_READ
#define W ACL_WRITE
#define S ACL_SUBSCRIBE

static struct acl *parse(const char *text)
{
    struct acl *acl = NULL;
    char err[256] = "";
    int rc = acl_parse(text, strlen(text), "t.acl", &acl, err, sizeof(err));
    if (rc != 0)
        fail_msg("parse failed: %s", err);
    return acl;
}

static void expect_error(const char *text, const char *msg)
{
    struct acl *acl = NULL;
    char err[256] = "";
    assert_int_equal(acl_parse(text, strlen(text), "t.acl", &acl, err, sizeof(err)), ACL_ERR_SYNTAX);
    assert_null(acl);
    if (strstr(err, msg) == NULL)
        fail_msg("error '%s' does not contain '%s'", err, msg);
}

static void test_parse_errors(void **state)
{
    (void)state;
    expect_error("topic read a\nbogus x\n", "t.acl:2: unknown keyword 'bogus'");
    expect_error("user\n", "t.acl:1: user needs a name");
    expect_error("# c\n\ntopic read\n", "t.acl:3: topic needs a topic filter");
    expect_error("pattern deny\n", "t.acl:1: pattern needs");
    expect_error("topic read a/#/b\n", "t.acl:1: invalid topic filter 'a/#/b'");
    expect_error("topic a+\n", "invalid topic filter");
    expect_error("topic\tread\t\n", "needs a topic filter");
    const char nul[] = "topic a\0b\n";
    struct acl *acl = NULL;
    char err[128];
    assert_int_equal(acl_parse(nul, sizeof(nul) - 1, "t.acl", &acl, err, sizeof(err)), ACL_ERR_SYNTAX);
    assert_int_equal(acl_load("/nonexistent/x.acl", &acl, err, sizeof(err)), ACL_ERR_IO);
    assert_non_null(strstr(err, "/nonexistent/x.acl"));
}

static const char example[] =
    "# anonymous clients\n"
    "topic read public/#\n"
    "\n"
    "user alice\r\n"
    "topic readwrite home/alice/#\n"
    "topic deny home/alice/secret\n"
    "  topic read $SYS/#\n"
    "topic write cmd/+/set\n"
    "user bob smith\n"
    "topic home/bob/#\n"
    "device d-fpw3htgaiwfgjohixoaid7fvofdxsvrk\n"
    "topic write meters/readings\n"
    "pattern write devices/%d/up\n"
    "pattern read devices/%d/down/#\n"
    "pattern readwrite clients/%c/#\n"
    "pattern read users/%u/inbox\n"
    "pattern deny clients/%c/locked\n";

#define DEV "d-fpw3htgaiwfgjohixoaid7fvofdxsvrk"

static void test_check(void **state)
{
    (void)state;
    struct acl *acl = parse(example);
    assert_int_equal(acl_rule_count(acl), 12);
    /* anonymous */
    assert_int_equal(acl_check(acl, NULL, "c1", NULL, "public/x", R), 0);
    assert_int_equal(acl_check(acl, NULL, "c1", NULL, "public/x", W), ACL_ERR_DENIED);
    assert_int_equal(acl_check(acl, NULL, "c1", NULL, "public/#", S), 0);
    assert_int_equal(acl_check(acl, NULL, "c1", NULL, "public", S), 0); /* public/# covers public */
    assert_int_equal(acl_check(acl, NULL, "c1", NULL, "#", S), ACL_ERR_DENIED);
    assert_int_equal(acl_check(acl, "alice", "c1", NULL, "public/x", R), ACL_ERR_DENIED);
    /* user alice */
    assert_int_equal(acl_check(acl, "alice", "c1", NULL, "home/alice/temp", W), 0);
    assert_int_equal(acl_check(acl, "alice", "c1", NULL, "home/alice/temp", R), 0);
    assert_int_equal(acl_check(acl, "alice", "c1", NULL, "home/alice/secret", R), ACL_ERR_DENIED);
    assert_int_equal(acl_check(acl, "alice", "c1", NULL, "home/alice/secret", S), ACL_ERR_DENIED);
    assert_int_equal(acl_check(acl, "alice", "c1", NULL, "home/alice/+", S), 0);
    assert_int_equal(acl_subscribe_partial(acl, "alice", "c1", NULL, "home/alice/+"), 1);
    assert_int_equal(acl_subscribe_partial(acl, "alice", "c1", NULL, "home/alice/temp"), 0);
    assert_int_equal(acl_check(acl, "alice", "c1", NULL, "home/bob/x", R), ACL_ERR_DENIED);
    assert_int_equal(acl_check(acl, "alice", "c1", NULL, "$SYS/broker/load", R), 0);
    assert_int_equal(acl_check(acl, "alice", "c1", NULL, "cmd/lamp/set", W), 0);
    assert_int_equal(acl_check(acl, "alice", "c1", NULL, "cmd/lamp/set", R), ACL_ERR_DENIED);
    assert_int_equal(acl_check(acl, "alice", "c1", NULL, "cmd/+/set", W), ACL_ERR_DENIED); /* wildcard name */
    /* user names may contain spaces; default access readwrite */
    assert_int_equal(acl_check(acl, "bob smith", "c2", NULL, "home/bob/x", W), 0);
    assert_int_equal(acl_check(acl, "bob", "c2", NULL, "home/bob/x", W), ACL_ERR_DENIED);
    /* device section and %d patterns */
    assert_int_equal(acl_check(acl, NULL, "m1", DEV, "meters/readings", W), 0);
    assert_int_equal(acl_check(acl, NULL, "m1", DEV, "devices/" DEV "/up", W), 0);
    assert_int_equal(acl_check(acl, NULL, "m1", DEV, "devices/" DEV "/down/fw", R), 0);
    assert_int_equal(acl_check(acl, NULL, "m1", DEV, "devices/" DEV "/down/#", S), 0);
    assert_int_equal(acl_check(acl, NULL, "m1", DEV, "devices/+/down/#", S), ACL_ERR_DENIED);
    assert_int_equal(acl_check(acl, NULL, "m1", DEV, "devices/d-other/up", W), ACL_ERR_DENIED);
    assert_int_equal(acl_check(acl, NULL, "m1", DEV, "public/x", R), ACL_ERR_DENIED); /* not anonymous */
    assert_int_equal(acl_check(acl, NULL, "m1", NULL, "devices/" DEV "/up", W), ACL_ERR_DENIED);
    /* %c and %u, pattern deny */
    assert_int_equal(acl_check(acl, NULL, "m1", NULL, "clients/m1/a/b", W), 0);
    assert_int_equal(acl_check(acl, NULL, "m1", NULL, "clients/m2/a", W), ACL_ERR_DENIED);
    assert_int_equal(acl_check(acl, NULL, "m1", NULL, "clients/m1/locked", W), ACL_ERR_DENIED);
    assert_int_equal(acl_check(acl, "carol", "x", NULL, "users/carol/inbox", R), 0);
    assert_int_equal(acl_check(acl, NULL, "x", NULL, "users//inbox", R), ACL_ERR_DENIED);
    /* identities with wildcards are refused when patterns exist */
    assert_int_equal(acl_check(acl, NULL, "m+", NULL, "clients/m+/a", W), ACL_ERR_DENIED);
    assert_int_equal(acl_check(acl, "#", "m1", NULL, "clients/m1/a", W), ACL_ERR_DENIED);
    /* long substitution (heap path) */
    char cid[2000], topic[2100];
    memset(cid, 'k', sizeof(cid) - 1);
    cid[sizeof(cid) - 1] = '\0';
    snprintf(topic, sizeof(topic), "clients/%s/z", cid);
    assert_int_equal(acl_check(acl, NULL, cid, NULL, topic, W), 0);
    /* bad access / filters */
    assert_int_equal(acl_check(acl, NULL, "m1", NULL, "clients/m1/a", 3), ACL_ERR_DENIED);
    assert_int_equal(acl_check(acl, NULL, "m1", NULL, "clients/m1/#/x", S), ACL_ERR_DENIED);
    assert_int_equal(acl_check(acl, NULL, "m1", NULL, "", W), ACL_ERR_DENIED);
    acl_free(acl);
}

static void test_no_patterns_allows_wild_ids(void **state)
{
    (void)state;
    struct acl *acl = parse("user a+b\ntopic x\n");
    assert_int_equal(acl_check(acl, "a+b", "c", NULL, "x", W), 0);
    acl_free(acl);
    acl = parse("");
    assert_int_equal(acl_check(acl, NULL, "c", NULL, "x", W), ACL_ERR_DENIED);
    acl_free(acl);
}

static void test_filter_relations(void **state)
{
    (void)state;
    /* covers(outer, inner) */
    assert_true(acl_filter_covers("#", "a/b"));
    assert_true(acl_filter_covers("#", "#"));
    assert_true(acl_filter_covers("a/#", "a"));
    assert_true(acl_filter_covers("a/#", "a/+/c"));
    assert_true(acl_filter_covers("a/+", "a/+"));
    assert_true(acl_filter_covers("+/+", "a/b"));
    assert_true(acl_filter_covers("a//b", "a//b"));
    assert_false(acl_filter_covers("a/+", "a/#"));
    assert_false(acl_filter_covers("a/+", "a"));
    assert_false(acl_filter_covers("a/b", "a/+"));
    assert_false(acl_filter_covers("a", "a/b"));
    assert_false(acl_filter_covers("a/b", "a"));
    assert_false(acl_filter_covers("#", "$SYS/x"));
    assert_false(acl_filter_covers("+/x", "$SYS/x"));
    assert_true(acl_filter_covers("$SYS/#", "$SYS/x"));
    assert_true(acl_filter_covers("#", "+/x")); /* '+' never matches '$' topics either */
    /* intersects */
    assert_true(acl_filter_intersects("a/+", "+/b"));
    assert_true(acl_filter_intersects("a", "a/#"));
    assert_true(acl_filter_intersects("#", "x"));
    assert_false(acl_filter_intersects("a/+", "a"));
    assert_false(acl_filter_intersects("a/b", "a/c"));
    assert_false(acl_filter_intersects("#", "$SYS/x"));
    assert_false(acl_filter_intersects("$SYS/+", "+/+"));
    assert_true(acl_filter_intersects("$SYS/+", "$SYS/#"));
}

static void test_load_file(void **state)
{
    (void)state;
    char path[] = "/tmp/lmq_acl_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, example, strlen(example)), (ssize_t)strlen(example));
    close(fd);
    struct acl *acl = NULL;
    char err[256];
    assert_int_equal(acl_load(path, &acl, err, sizeof(err)), 0);
    assert_int_equal(acl_rule_count(acl), 12);
    acl_free(acl);
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "topic a\ntopic read +x\n", 22), 22);
    close(fd);
    assert_int_equal(acl_load(path, &acl, err, sizeof(err)), ACL_ERR_SYNTAX);
    assert_non_null(strstr(err, ":2: invalid topic filter"));
    assert_non_null(strstr(err, path));
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_no_patterns_allows_wild_ids),
        cmocka_unit_test(test_filter_relations),
        cmocka_unit_test(test_load_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
