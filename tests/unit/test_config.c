/* Tests for src/util/config.c: defaults, every value type, limits, listener
 * scoping, and the file:line error messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/config.h"
#include "util/log.h"

static char err[1024];

static int write_conf(char *path, size_t cap, const char *text)
{
    snprintf(path, cap, "/tmp/lmq-test-config-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    size_t len = strlen(text);
    if (write(fd, text, len) != (ssize_t)len) {
        close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

static void test_defaults(void **state)
{
    (void)state;
    struct lmq_config c;
    lmq_config_defaults(&c);
    assert_int_equal(lmq_config_finish(&c, 0, NULL, err, sizeof err), 0);
    assert_int_equal(c.n_listeners, 1);
    assert_int_equal(c.listeners[0].port, 1883);
    assert_string_equal(c.listeners[0].addr, "127.0.0.1");
    assert_string_equal(c.data_dir, "./data");
    assert_true(c.max_packet_size > 0);
}

static void test_overrides(void **state)
{
    (void)state;
    struct lmq_config c;
    lmq_config_defaults(&c);
    assert_int_equal(lmq_config_finish(&c, 1999, "/tmp/x", err, sizeof err), 0);
    assert_int_equal(c.listeners[0].port, 1999);
    assert_string_equal(c.data_dir, "/tmp/x");
}

static void test_file_ok(void **state)
{
    (void)state;
    char path[64];
    assert_int_equal(write_conf(path, sizeof path,
                                "# a comment\n"
                                "\n"
                                "max_connections 10   # trailing comment\n"
                                "listener 1884\n"
                                "listener 1885 ::1\n"
                                "allow_anonymous false\n"
                                "log_level debug\n"
                                "ledger_sync batch\n"
                                "max_queued_bytes 1099511627776\n"
                                "allow_zero_length_clientid false\n"
                                "ledger_origin ledgermq.example/plant-7\n"),
                     0);
    struct lmq_config c;
    lmq_config_defaults(&c);
    assert_int_equal(lmq_config_load(&c, path, err, sizeof err), 0);
    assert_int_equal(lmq_config_finish(&c, 0, NULL, err, sizeof err), 0);
    unlink(path);
    assert_int_equal(c.max_connections, 10);
    assert_int_equal(c.n_listeners, 2);
    assert_int_equal(c.listeners[0].port, 1884);
    assert_true(c.listeners[0].allow_anonymous);
    assert_string_equal(c.listeners[1].addr, "::1");
    assert_false(c.listeners[1].allow_anonymous);
    assert_int_equal(c.log_level, LMQ_LOG_DEBUG);
    assert_int_equal(c.ledger_sync, LMQ_SYNC_BATCH);
    assert_true(c.max_queued_bytes == (uint64_t)1 << 40);
    assert_false(c.allow_zero_length_clientid);
    assert_string_equal(c.ledger_origin, "ledgermq.example/plant-7");
}

/* Each bad line must fail with "path:LINE: <reason containing WANT>". */
static void expect_bad(const char *text, unsigned line, const char *want)
{
    char path[64];
    assert_int_equal(write_conf(path, sizeof path, text), 0);
    struct lmq_config c;
    lmq_config_defaults(&c);
    int rc = lmq_config_load(&c, path, err, sizeof err);
    unlink(path);
    assert_int_equal(rc, -1);
    char prefix[128];
    snprintf(prefix, sizeof prefix, "%s:%u: ", path, line);
    if (strncmp(err, prefix, strlen(prefix)) != 0 || !strstr(err, want))
        fail_msg("error '%s' lacks '%s' or '%s'", err, prefix, want);
}

static void test_file_errors(void **state)
{
    (void)state;
    expect_bad("bogus_key 1\n", 1, "unknown key 'bogus_key'");
    expect_bad("# ok\nmax_connections 0\n", 2, "max_connections");
    expect_bad("max_connections abc\n", 1, "whole number");
    expect_bad("max_connections -5\n", 1, "whole number");
    expect_bad("max_connections 99999999999999999999\n", 1, "whole number");
    expect_bad("max_connections\n", 1, "exactly one value");
    expect_bad("max_connections 1 2\n", 1, "exactly one value");
    expect_bad("allow_zero_length_clientid yes\n", 1, "true or false");
    expect_bad("listener 70000\n", 1, "listener port");
    expect_bad("listener 1883 localhost\n", 1, "numeric");
    expect_bad("listener\n", 1, "PORT");
    expect_bad("allow_anonymous true\n", 1, "after a 'listener' line");
    expect_bad("listener 1 127.0.0.1\nprotocol carrier-pigeon\n", 2, "mqtt or websockets");
    expect_bad("log_level loud\n", 1, "log_level");
    expect_bad("ledger_sync sometimes\n", 1, "always or batch");
    expect_bad("max_packet_size 1\n", 1, "from 64");
    expect_bad("data_dir /tmp\x01x\n", 1, "control character");
}

static void test_missing_file(void **state)
{
    (void)state;
    struct lmq_config c;
    lmq_config_defaults(&c);
    assert_int_equal(lmq_config_load(&c, "/nonexistent/lmq.conf", err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/lmq.conf"));
}

static void test_duplicate_listener(void **state)
{
    (void)state;
    struct lmq_config c;
    lmq_config_defaults(&c);
    assert_int_equal(lmq_config_apply(&c, "listener 1900 127.0.0.1", err, sizeof err), 0);
    assert_int_equal(lmq_config_apply(&c, "listener 1900 127.0.0.1", err, sizeof err), 0);
    assert_int_equal(lmq_config_finish(&c, 0, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "twice"));
}

/* Checks made after the whole file is read still name the listener's line. */
static void test_finish_errors_name_line(void **state)
{
    (void)state;
    char path[64];
    assert_int_equal(write_conf(path, sizeof path,
                                "# two listeners on one port\n"
                                "listener 1900 127.0.0.1\n"
                                "max_connections 5\n"
                                "listener 1900 127.0.0.1\n"),
                     0);
    struct lmq_config c;
    lmq_config_defaults(&c);
    assert_int_equal(lmq_config_load(&c, path, err, sizeof err), 0);
    assert_int_equal(lmq_config_finish(&c, 0, NULL, err, sizeof err), -1);
    char want[128];
    snprintf(want, sizeof want, "%s:4: listener 127.0.0.1:1900 is defined twice (first at line 2)",
             path);
    assert_string_equal(err, want);
    unlink(path);
}

/* TLS options that cannot work together fail at finish with FILE:LINE of
 * their listener; TLS and websockets listeners are accepted. */
static void expect_finish(const char *text, const char *want)
{
    char path[64];
    assert_int_equal(write_conf(path, sizeof path, text), 0);
    struct lmq_config c;
    lmq_config_defaults(&c);
    assert_int_equal(lmq_config_load(&c, path, err, sizeof err), 0);
    int rc = lmq_config_finish(&c, 0, NULL, err, sizeof err);
    if (!want) {
        if (rc != 0)
            fail_msg("'%s' refused: %s", text, err);
    } else {
        char prefix[128];
        snprintf(prefix, sizeof prefix, "%s:2: listener 1900: %s", path, want);
        if (rc != -1 || strcmp(err, prefix) != 0)
            fail_msg("'%s': rc %d, error '%s', want '%s'", text, rc, err, prefix);
    }
    unlink(path);
}

static void test_tls_options(void **state)
{
    (void)state;
    expect_finish("# tls\nlistener 1900 127.0.0.1\ncertfile /a.crt\n", "certfile needs a keyfile");
    expect_finish("# tls\nlistener 1900 127.0.0.1\nkeyfile /a.key\n", "keyfile needs a certfile");
    expect_finish("# tls\nlistener 1900 127.0.0.1\ncafile /ca.crt\n",
                  "cafile needs a certfile and keyfile (TLS)");
    expect_finish("# tls\nlistener 1900 127.0.0.1\ncertfile /a.crt\nkeyfile /a.key\n"
                  "require_certificate true\n",
                  "require_certificate needs a cafile to verify client certificates");
    expect_finish("# tls\nlistener 1900 127.0.0.1\ncertfile /a.crt\nkeyfile /a.key\n"
                  "cafile /ca.crt\nrequire_certificate true\nprotocol websockets\n",
                  NULL);
    expect_finish("# ws\nlistener 1900 127.0.0.1\nprotocol websockets\n", NULL);
}

/* cluster_node / cluster_self / cluster_*: a good cluster, each bad line
 * with its FILE:LINE, and the cross-key checks at finish. */
static void test_cluster_keys(void **state)
{
    (void)state;
    char path[64];
    assert_int_equal(write_conf(path, sizeof path,
                                "cluster_node 1 127.0.0.1:7001\n"
                                "cluster_node 2 node-b.example:7002\n"
                                "cluster_node 3 127.0.0.1:7003\n"
                                "cluster_self 2\ncluster_election_ms 2000\n"),
                     0);
    struct lmq_config c;
    lmq_config_defaults(&c);
    assert_int_equal(c.n_cluster_nodes, 0);
    assert_int_equal(c.cluster_snapshot_threshold, 65536);
    assert_int_equal(lmq_config_load(&c, path, err, sizeof err), 0);
    assert_int_equal(lmq_config_finish(&c, 0, NULL, err, sizeof err), 0);
    unlink(path);
    assert_int_equal(c.n_cluster_nodes, 3);
    assert_int_equal(c.cluster_nodes[1].id, 2);
    assert_string_equal(c.cluster_nodes[1].address, "node-b.example:7002");
    assert_int_equal(c.cluster_nodes[2].line, 3);
    assert_int_equal(c.cluster_self, 2);
    assert_int_equal(c.cluster_election_ms, 2000);
    assert_int_equal(c.cluster_heartbeat_ms, 100);

    expect_bad("cluster_node 1\n", 1, "takes ID HOST:PORT");
    expect_bad("cluster_node 0 127.0.0.1:7001\n", 1, "takes ID HOST:PORT");
    expect_bad("cluster_node x 127.0.0.1:7001\n", 1, "takes ID HOST:PORT");
    expect_bad("cluster_node 1 127.0.0.1\n", 1, "is not HOST:PORT");
    expect_bad("cluster_node 1 ::1:7001\n", 1, "is not HOST:PORT");
    expect_bad("cluster_node 1 127.0.0.1:0\n", 1, "is not HOST:PORT");
    expect_bad("cluster_node 1 127.0.0.1:65536\n", 1, "is not HOST:PORT");
    expect_bad("cluster_node 1 :7001\n", 1, "is not HOST:PORT");
    expect_bad("cluster_node 1 a:1\ncluster_node 1 b:2\n", 2,
               "cluster_node 1 b:2: id or address already used (line 1)");
    expect_bad("cluster_node 1 a:1\ncluster_node 2 a:1\n", 2, "already used (line 1)");
    expect_bad("cluster_self 0\n", 1, "cluster_self");
    expect_bad("cluster_election_ms 50\n", 1, "from 100");

    const char *bad_finish[][2] = {
        {"cluster_self 1\n", "cluster_self and cluster_tls_* need cluster_node lines"},
        {"cluster_tls_ca /ca.crt\n", "cluster_self and cluster_tls_* need cluster_node lines"},
        {"cluster_join true\n", "as does cluster_join"},
        {"cluster_node 1 a:1\ncluster_self 1\ncluster_tls_cert /n1.crt\n",
         "cluster_tls_cert, cluster_tls_key and cluster_tls_ca go together"},
        {"cluster_node 1 a:1\n", ":1: cluster_node lines need cluster_self ID naming one of them"},
        {"cluster_node 1 a:1\ncluster_self 2\n", "(cluster_self names none)"},
        {"cluster_node 1 a:1\ncluster_self 1\ncluster_heartbeat_ms 1000\n",
         "cluster_heartbeat_ms (1000) must be below cluster_election_ms (1000)"},
    };
    for (size_t i = 0; i < sizeof bad_finish / sizeof bad_finish[0]; i++) {
        assert_int_equal(write_conf(path, sizeof path, bad_finish[i][0]), 0);
        lmq_config_defaults(&c);
        assert_int_equal(lmq_config_load(&c, path, err, sizeof err), 0);
        assert_int_equal(lmq_config_finish(&c, 0, NULL, err, sizeof err), -1);
        unlink(path);
        if (strncmp(err, path, strlen(path)) != 0 || !strstr(err, bad_finish[i][1]))
            fail_msg("'%s': error '%s', want '%s'", bad_finish[i][0], err, bad_finish[i][1]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),        cmocka_unit_test(test_overrides),
        cmocka_unit_test(test_file_ok),         cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_missing_file),    cmocka_unit_test(test_duplicate_listener),
        cmocka_unit_test(test_finish_errors_name_line), cmocka_unit_test(test_tls_options),
        cmocka_unit_test(test_cluster_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
