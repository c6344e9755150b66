/* Tests of src/broker/paystore.c: entries written in one transaction come
 * back with their salt and kind, a short buffer is -ENOSPC, a deleted
 * entry is gone while the others stay, and the store survives a reopen. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker/paystore.h"

static void entry(struct paystore_entry *e, uint8_t tag, const char *data)
{
    memset(e, 0, sizeof *e);
    memset(e->digest, tag, sizeof e->digest);
    memset(e->salt, tag ^ 0xff, sizeof e->salt);
    e->kind = tag & 1 ? PAYSTORE_PAYLOAD : PAYSTORE_ENVELOPE;
    e->data = (const uint8_t *)data;
    e->len = strlen(data);
}

static void test_put_get_delete(void **state)
{
    (void)state;
    char dir[] = "/tmp/lmq-test-paystore-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char err[256];
    struct lmq_paystore *ps;
    assert_int_equal(paystore_open(dir, true, &ps, err, sizeof err), 0);
    struct paystore_entry e[3];
    entry(&e[0], 0x01, "first payload");
    entry(&e[1], 0x02, "second");
    entry(&e[2], 0x03, "");
    assert_int_equal(paystore_put(ps, e, 3), 0);
    paystore_close(ps);
    assert_int_equal(paystore_open(dir, false, &ps, err, sizeof err), 0);

    uint8_t salt[32], kind, buf[64];
    size_t len;
    assert_int_equal(paystore_get(ps, e[0].digest, salt, &kind, buf, sizeof buf, &len), 0);
    assert_int_equal(len, 13);
    assert_memory_equal(buf, "first payload", 13);
    assert_memory_equal(salt, e[0].salt, 32);
    assert_int_equal(kind, PAYSTORE_PAYLOAD);
    assert_int_equal(paystore_get(ps, e[1].digest, salt, &kind, buf, 3, &len), -ENOSPC);
    assert_int_equal(len, 6);
    assert_int_equal(paystore_get(ps, e[1].digest, NULL, &kind, buf, sizeof buf, &len), 0);
    assert_int_equal(kind, PAYSTORE_ENVELOPE);
    assert_int_equal(paystore_get(ps, e[2].digest, salt, NULL, buf, sizeof buf, &len), 0);
    assert_int_equal(len, 0);

    assert_int_equal(paystore_delete(ps, e[0].digest), 0);
    assert_int_equal(paystore_get(ps, e[0].digest, salt, &kind, buf, sizeof buf, &len), -ENOENT);
    assert_int_equal(paystore_delete(ps, e[0].digest), -ENOENT);
    assert_int_equal(paystore_get(ps, e[1].digest, salt, &kind, buf, sizeof buf, &len), 0);
    paystore_close(ps);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_delete),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
