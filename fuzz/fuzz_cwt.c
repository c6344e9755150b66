/* libFuzzer target for the credentials a client sends at CONNECT, as the
 * broker's authentication reads them (src/identity/authn.c,
 * src/broker/auth.c): the first byte picks the path, the rest is the
 * client's bytes.
 *   0: a device token (MQTT password): authn_token with no registry
 *      (cwt_decode, the subject's device id syntax), then cwt_verify of a
 *      decoded token against a fixed key and audience at several clocks;
 *   1: ledgermq-ed25519 AUTH data: authn_ed25519_decode, the signed
 *      message built for the decoded id, and the method's start/step/done
 *      through the registry of methods;
 *   2: the replay cache fed with keys and expiry times from the input.
 * fuzz_cose covers the COSE layer beneath (cwt_decode too). Seeds:
 * fuzz/corpus/fuzz_cwt/. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "broker/auth.h"
#include "identity/authn.h"
#include "identity/cwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fz__token(const uint8_t *d, size_t n)
{
    static const uint8_t pk[32] = {0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe,
                                   0xd3, 0xc9, 0x64, 0x07, 0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6,
                                   0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a};
    struct authn_token_opts o = {"lmq://broker.example", 1767225700, 30, 3600, 1767225600};
    char id[DEVICE_ID_LEN + 1];
    uint8_t key[AUTHN_REPLAY_KEY_LEN];
    int64_t exp;
    int rc = authn_token(NULL, d, n, &o, id, key, &exp);
    if (rc == 0)
        abort(); /* nothing passes without a registry */
    struct cwt_token t;
    if (cwt_decode(d, n, &t) == 0) {
        static const int64_t clocks[] = {INT64_MIN, -1, 0, 1767225700, INT64_MAX};
        for (size_t i = 0; i < sizeof clocks / sizeof clocks[0]; i++)
            (void)cwt_verify(&t, pk, o.audience, clocks[i], 30, 3600);
        (void)authn_strerror(rc);
    }
}

static void fz__ed25519(const uint8_t *d, size_t n)
{
    char id[DEVICE_ID_LEN + 1];
    const uint8_t *sig;
    if (authn_ed25519_decode(d, n, id, &sig) == 0) {
        uint8_t msg[AUTHN_ED25519_MSG_MAX], nonce[AUTHN_NONCE_LEN] = {0};
        if (sig != d + DEVICE_ID_LEN || strlen(id) != DEVICE_ID_LEN)
            abort();
        if (authn_ed25519_message("lmq://broker.example", nonce, id, msg, sizeof msg) <= 0)
            abort();
    }
    const struct lmq_auth_method *m =
        lmq_auth_find(AUTHN_ED25519_METHOD, strlen(AUTHN_ED25519_METHOD));
    if (!m)
        abort();
    void *st = NULL;
    uint8_t out[LMQ_AUTH_OUT_MAX];
    size_t on = 0;
    if (m->start(&st, d, n, out, sizeof out, &on) == LMQ_AUTH_CONTINUE) {
        if (on != AUTHN_NONCE_LEN)
            abort();
        int r = m->step(&st, d, n, out, sizeof out, &on);
        if (r == LMQ_AUTH_VERIFY) {
            struct lmq_auth_env env = {NULL, "lmq://broker.example"};
            char principal[64];
            const char *why = NULL;
            if (m->verify(st, &env, principal, sizeof principal, &why) != LMQ_AUTH_FAIL || !why)
                abort(); /* no registry: never authenticated */
        } else if (r != LMQ_AUTH_FAIL) {
            abort();
        }
    }
    m->done(st);
}

static void fz__replay(const uint8_t *d, size_t n)
{
    struct authn_replay *rc = authn_replay_new(8);
    if (!rc)
        return;
    /* records of 17 bytes: 16 key bytes and an expiry offset */
    for (size_t i = 0; i + 17 <= n; i += 17)
        (void)authn_replay_add(rc, d + i, (int64_t)d[i + 16], (int64_t)(i / 17));
    if (authn_replay_count(rc) > 8 * 2)
        abort();
    authn_replay_free(rc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    switch (data[0] % 3) {
    case 0:
        fz__token(data + 1, size - 1);
        break;
    case 1:
        fz__ed25519(data + 1, size - 1);
        break;
    default:
        fz__replay(data + 1, size - 1);
        break;
    }
    return 0;
}
