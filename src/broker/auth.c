/* The authentication method registry (see auth.h) and the test-only
 * "ledgermq-test-echo" method: CONNECT data "ok" succeeds at once; any
 * other data gets the challenge "challenge:" + that data, which the client
 * must answer with AUTH data "response:" + the same data. */
#include "broker/auth.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static bool au__match(const uint8_t *in, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    return in && n == l && memcmp(in, lit, l) == 0;
}

static int au__echo_start(void **state, const uint8_t *in, size_t in_len, uint8_t *out,
                          size_t out_cap, size_t *out_len)
{
    static const char pre[] = "challenge:";
    *out_len = 0;
    if (au__match(in, in_len, "ok"))
        return LMQ_AUTH_SUCCESS;
    if (in_len + sizeof pre - 1 > out_cap)
        return LMQ_AUTH_FAIL;
    uint8_t *copy = malloc(in_len + 1);
    if (!copy)
        return LMQ_AUTH_FAIL;
    if (in_len)
        memcpy(copy, in, in_len);
    copy[in_len] = 0;
    *state = copy;
    memcpy(out, pre, sizeof pre - 1);
    if (in_len)
        memcpy(out + sizeof pre - 1, in, in_len);
    *out_len = sizeof pre - 1 + in_len;
    return LMQ_AUTH_CONTINUE;
}

static int au__echo_step(void **state, const uint8_t *in, size_t in_len, uint8_t *out,
                         size_t out_cap, size_t *out_len)
{
    static const char pre[] = "response:";
    (void)out;
    (void)out_cap;
    *out_len = 0;
    const char *want = *state;
    if (!want || !in)
        return LMQ_AUTH_FAIL;
    size_t wl = strlen(want);
    if (in_len != sizeof pre - 1 + wl || memcmp(in, pre, sizeof pre - 1) != 0 ||
        memcmp(in + sizeof pre - 1, want, wl) != 0)
        return LMQ_AUTH_FAIL;
    return LMQ_AUTH_SUCCESS;
}

static void au__echo_done(void *state)
{
    free(state);
}

static const struct lmq_auth_method au__echo = {
    "ledgermq-test-echo",
    au__echo_start,
    au__echo_step,
    au__echo_done,
};

const struct lmq_auth_method *lmq_auth_find(const char *name, size_t len)
{
    static const struct lmq_auth_method *const methods[] = {&au__echo};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        const struct lmq_auth_method *m = methods[i];
        if (strlen(m->name) != len || memcmp(m->name, name, len) != 0)
            continue;
        if (m == &au__echo) {
            const char *env = getenv("LEDGERMQ_TEST_AUTH_ECHO");
            if (!env || strcmp(env, "1") != 0)
                return NULL;
        }
        return m;
    }
    return NULL;
}
