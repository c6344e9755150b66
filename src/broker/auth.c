/* The authentication method registry (see auth.h): "ledgermq-ed25519"
 * (identity/authn.h does the cryptography) and the test-only
 * "ledgermq-test-echo" method: CONNECT data "ok" succeeds at once; any
 * other data gets the challenge "challenge:" + that data, which the client
 * must answer with AUTH data "response:" + the same data. */
#include "broker/auth.h"

#include "identity/authn.h"

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
    "ledgermq-test-echo", au__echo_start, au__echo_step, au__echo_done, NULL,
};

/* ledgermq-ed25519: start sends a fresh nonce (whatever CONNECT's data),
 * step keeps the device's answer (id || signature) for verify. */
struct au__ed {
    uint8_t nonce[AUTHN_NONCE_LEN];
    uint8_t resp[AUTHN_ED25519_RESPONSE_LEN];
    size_t resp_len;
};

static int au__ed_start(void **state, const uint8_t *in, size_t in_len, uint8_t *out,
                        size_t out_cap, size_t *out_len)
{
    (void)in;
    (void)in_len;
    *out_len = 0;
    if (out_cap < AUTHN_NONCE_LEN)
        return LMQ_AUTH_FAIL;
    struct au__ed *st = *state ? *state : calloc(1, sizeof *st);
    if (!st)
        return LMQ_AUTH_FAIL;
    *state = st;
    st->resp_len = 0;
    authn_nonce(st->nonce);
    memcpy(out, st->nonce, AUTHN_NONCE_LEN);
    *out_len = AUTHN_NONCE_LEN;
    return LMQ_AUTH_CONTINUE;
}

static int au__ed_step(void **state, const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                       size_t *out_len)
{
    (void)out;
    (void)out_cap;
    *out_len = 0;
    struct au__ed *st = *state;
    if (!st || !in || in_len != AUTHN_ED25519_RESPONSE_LEN)
        return LMQ_AUTH_FAIL;
    memcpy(st->resp, in, in_len);
    st->resp_len = in_len;
    return LMQ_AUTH_VERIFY;
}

static int au__ed_verify(void *state, const struct lmq_auth_env *env, char *principal, size_t cap,
                         const char **why)
{
    struct au__ed *st = state;
    char id[DEVICE_ID_LEN + 1];
    if (!st || cap < sizeof id) {
        *why = "internal error";
        return LMQ_AUTH_FAIL;
    }
    int rc =
        authn_ed25519_verify(env->registry, env->origin, st->nonce, st->resp, st->resp_len, id);
    /* A nonce answers once. */
    authn_nonce(st->nonce);
    if (rc != 0) {
        *why = authn_strerror(rc);
        return LMQ_AUTH_FAIL;
    }
    memcpy(principal, id, sizeof id);
    return LMQ_AUTH_SUCCESS;
}

static void au__ed_done(void *state)
{
    free(state);
}

static const struct lmq_auth_method au__ed25519 = {
    AUTHN_ED25519_METHOD, au__ed_start, au__ed_step, au__ed_done, au__ed_verify,
};

const struct lmq_auth_method *lmq_auth_find(const char *name, size_t len)
{
    static const struct lmq_auth_method *const methods[] = {&au__ed25519, &au__echo};
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
