/* Tests of src/identity/verify.c: each refusal of a device envelope on a
 * signed topic (malformed, unknown, revoked, wrong device, bad signature,
 * clock skew) against a real registry on a real ledger, the sequence rule,
 * and the reason codes the broker answers with. */
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

#include "crypto/cose.h"
#include "crypto/note.h"
#include "crypto/sign.h"
#include "identity/device_id.h"
#include "identity/registry.h"
#include "identity/verify.h"
#include "ledger/log.h"
#include "ledger/record.h"
#include "util/log.h"

#define T0 1767225600000ull

struct keypair {
    uint8_t pk[32], sk[64];
    char id[DEVICE_ID_LEN + 1];
    char vkey[NOTE_VKEY_MAX];
    struct note_verifier v;
};

static struct keypair op, dev1, dev2, dev3;
static char dir[128];
static struct ledger *led;
static struct registry *reg;

static void seeded(struct keypair *k, uint8_t b, const char *op_name)
{
    uint8_t seed[32];
    memset(seed, b, sizeof seed);
    assert_int_equal(crypto_ed25519_seed_keypair(k->pk, k->sk, seed), 0);
    device_id_from_pk(k->pk, k->id);
    if (op_name) {
        assert_int_equal(note_verifier_init(&k->v, op_name, k->pk), 0);
        assert_true(note_verifier_format(&k->v, k->vkey, sizeof k->vkey) > 0);
    }
}

static void append_reg(uint64_t kind, const struct keypair *d)
{
    struct ledger_record r;
    uint8_t buf[2048], sig[64];
    size_t len;
    memset(&r, 0, sizeof r);
    r.kind = kind;
    r.reg.device_id = (struct ledger_bytes){(const uint8_t *)d->id, DEVICE_ID_LEN};
    if (kind == LEDGER_KIND_DEVICE_REGISTRATION) {
        r.reg.public_key = (struct ledger_bytes){d->pk, 32};
        r.reg.name = (struct ledger_bytes){(const uint8_t *)"meter", 5};
    }
    r.reg.time_ms = T0;
    assert_int_equal(registry_sign_record(&r, op.vkey, op.sk, sig, buf, sizeof buf, &len), 0);
    struct ledger_record_buf rb = {buf, len};
    assert_int_equal(ledger_append_batch(led, &rb, 1, T0, NULL), 0);
}

static int setup(void **state)
{
    (void)state;
    seeded(&op, 0x0a, "operator-a");
    seeded(&dev1, 0x31, NULL);
    seeded(&dev2, 0x32, NULL);
    seeded(&dev3, 0x33, NULL);
    snprintf(dir, sizeof dir, "/tmp/lmq-test-verify-XXXXXX");
    assert_non_null(mkdtemp(dir));
    struct ledger_options lo;
    ledger_options_default(&lo);
    lo.sync = LEDGER_SYNC_BATCH;
    char err[512];
    assert_int_equal(ledger_open(dir, &lo, &led, err, sizeof err), 0);
    struct registry_options ro = {.operators = &op.v, .n_operators = 1};
    assert_int_equal(registry_open(dir, &ro, &reg, err, sizeof err), 0);
    append_reg(LEDGER_KIND_DEVICE_REGISTRATION, &dev1);
    append_reg(LEDGER_KIND_DEVICE_REGISTRATION, &dev2);
    append_reg(LEDGER_KIND_DEVICE_REVOCATION, &dev2);
    assert_int_equal(registry_sync(reg, led, NULL, NULL, NULL), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    registry_close(reg);
    ledger_close(led);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static size_t envelope(const struct keypair *k, uint64_t seq, uint64_t t, uint8_t *out, size_t cap)
{
    size_t n;
    assert_int_equal(
        cose_envelope_sign(k->id, DEVICE_ID_LEN, seq, t, "{\"kwh\":1}", 9, k->sk, out, cap, &n), 0);
    return n;
}

static void test_valid(void **state)
{
    (void)state;
    uint8_t env[512];
    size_t n = envelope(&dev1, 7, T0, env, sizeof env);
    struct verify_info vi;
    assert_int_equal(verify_envelope(reg, env, n, T0 + 1000, 300000, NULL, &vi), VERIFY_OK);
    assert_string_equal(vi.device_id, dev1.id);
    assert_int_equal(vi.seq, 7);
    assert_int_equal(vi.time_ms, T0);
    assert_int_equal(vi.cose.payload_len, 9);
    /* bound to its own device */
    assert_int_equal(verify_envelope(reg, env, n, T0, 300000, dev1.id, NULL), VERIFY_OK);
}

static void test_refusals(void **state)
{
    (void)state;
    uint8_t env[512];
    size_t n = envelope(&dev1, 7, T0, env, sizeof env);
    /* malformed: garbage, truncated, untagged */
    assert_int_equal(verify_envelope(reg, (const uint8_t *)"hello", 5, T0, 1000, NULL, NULL),
                     VERIFY_MALFORMED);
    assert_int_equal(verify_envelope(reg, env, n - 1, T0, 1000, NULL, NULL), VERIFY_MALFORMED);
    assert_int_equal(verify_envelope(reg, env + 1, n - 1, T0, 1000, NULL, NULL), VERIFY_MALFORMED);
    /* another session's device */
    assert_int_equal(verify_envelope(reg, env, n, T0, 1000, dev3.id, NULL), VERIFY_WRONG_DEVICE);
    /* forged: last signature byte flipped */
    env[n - 1] ^= 1;
    struct verify_info vi;
    assert_int_equal(verify_envelope(reg, env, n, T0, 1000, NULL, &vi), VERIFY_BAD_SIGNATURE);
    assert_int_equal(vi.cose_err, COSE_ERR_BAD_SIGNATURE);
    env[n - 1] ^= 1;
    /* payload changed after signing */
    uint8_t *pl = memmem(env, n, "kwh", 3);
    assert_non_null(pl);
    pl[0] = 'K';
    assert_int_equal(verify_envelope(reg, env, n, T0, 1000, NULL, NULL), VERIFY_BAD_SIGNATURE);
    pl[0] = 'k';
    /* clock skew both ways, and late uploads */
    assert_int_equal(verify_envelope(reg, env, n, T0 + 1001, 1000, NULL, NULL), VERIFY_SKEW);
    assert_int_equal(verify_envelope(reg, env, n, T0 - 1001, 1000, NULL, NULL), VERIFY_SKEW);
    assert_int_equal(verify_envelope(reg, env, n, T0 + 1000, 1000, NULL, NULL), VERIFY_OK);
    assert_int_equal(verify_envelope(reg, env, n, T0 + 86400000, UINT64_MAX, NULL, NULL),
                     VERIFY_OK);
    /* unknown device (well-formed, signed by its own key) */
    n = envelope(&dev3, 1, T0, env, sizeof env);
    assert_int_equal(verify_envelope(reg, env, n, T0, 1000, NULL, NULL), VERIFY_UNKNOWN);
    /* revoked device */
    n = envelope(&dev2, 1, T0, env, sizeof env);
    assert_int_equal(verify_envelope(reg, env, n, T0, 1000, NULL, NULL), VERIFY_REVOKED);
    /* a kid that cannot be a device id */
    size_t m;
    assert_int_equal(cose_envelope_sign("meter-1", 7, 1, T0, "x", 1, dev1.sk, env, sizeof env, &m),
                     0);
    assert_int_equal(verify_envelope(reg, env, m, T0, 1000, NULL, NULL), VERIFY_UNKNOWN);
    /* dev1's envelope signed by dev3's key */
    assert_int_equal(
        cose_envelope_sign(dev1.id, DEVICE_ID_LEN, 1, T0, "x", 1, dev3.sk, env, sizeof env, &m), 0);
    assert_int_equal(verify_envelope(reg, env, m, T0, 1000, NULL, NULL), VERIFY_BAD_SIGNATURE);
    /* no registry */
    n = envelope(&dev1, 7, T0, env, sizeof env);
    assert_int_equal(verify_envelope(NULL, env, n, T0, 1000, NULL, NULL), VERIFY_REGISTRY);
}

/* verify_prepare_many + verify_signatures on one envelope: the split
 * steps, the Sig_structure inline or malloc'd, the same result as
 * verify_envelope. */
static void test_prepare_split(void **state)
{
    (void)state;
    static uint8_t env[4096], big[3000];
    struct verify_prep *vp = malloc(2 * sizeof *vp);
    assert_non_null(vp);
    size_t n = envelope(&dev1, 9, T0, env, sizeof env);
    size_t bn;
    memset(big, 'z', sizeof big);
    static uint8_t benv[4096];
    assert_int_equal(cose_envelope_sign(dev1.id, DEVICE_ID_LEN, 10, T0, big, sizeof big, dev1.sk,
                                        benv, sizeof benv, &bn),
                     0);
    struct verify_req rq[2] = {{env, n, T0, 1000, dev1.id}, {benv, bn, T0, 1000, NULL}};
    assert_int_equal(verify_prepare_many(reg, rq, 2, vp), 2);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(vp[i].res, VERIFY_OK);
        assert_true(vp[i].sig_pending);
        assert_false(vp[i].skewed);
        assert_memory_equal(vp[i].pk, dev1.pk, 32);
        assert_string_equal(vp[i].info.device_id, dev1.id);
    }
    assert_ptr_equal(vp[0].tbs, vp[0].tbs_buf);
    assert_true(vp[1].tbs != vp[1].tbs_buf); /* bigger than VERIFY_TBS_INLINE */
    assert_true(vp[1].tbs_len > sizeof big);
    /* the bytes signed: the signature verifies over them alone */
    assert_int_equal(
        crypto_ed25519_verify(vp[0].info.cose.signature, vp[0].tbs, vp[0].tbs_len, dev1.pk), 0);
    assert_int_equal(verify_signatures(vp, 2), 2);
    assert_int_equal(vp[0].info.seq, 9);
    assert_int_equal(vp[1].info.seq, 10);
    assert_int_equal(vp[1].info.cose.payload_len, sizeof big);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(vp[i].res, VERIFY_OK);
        assert_false(vp[i].sig_pending);
        assert_null(vp[i].tbs); /* released */
    }
    /* refused before the signature: final after prepare, nothing pending */
    rq[0].expect_device = dev3.id;
    assert_int_equal(verify_prepare_many(reg, rq, 1, vp), 0);
    assert_int_equal(vp[0].res, VERIFY_WRONG_DEVICE);
    assert_false(vp[0].sig_pending);
    assert_int_equal(verify_signatures(vp, 1), 0);
    assert_int_equal(vp[0].res, VERIFY_WRONG_DEVICE);
    /* skewed: known after prepare, reported after the signature */
    rq[0].expect_device = NULL;
    rq[0].now_ms = T0 + 5000;
    assert_int_equal(verify_prepare_many(reg, rq, 1, vp), 1);
    assert_true(vp[0].skewed);
    assert_int_equal(verify_signatures(vp, 1), 0);
    assert_int_equal(vp[0].res, VERIFY_SKEW);
    free(vp);
}

/* A batch larger than ED25519_BATCH_MAX mixing valid envelopes with every
 * refusal: each gets its own result and cose_err, those verify_envelope
 * gives it alone. */
static void test_batch_mixed(void **state)
{
    (void)state;
    enum { N = 150 };
    static uint8_t env[N][600];
    static struct verify_req rq[N];
    static int want[N];
    struct verify_prep *vp = malloc(N * sizeof *vp);
    assert_non_null(vp);
    size_t n_ok = 0;
    for (int i = 0; i < N; i++) {
        size_t n = envelope(&dev1, 100 + (uint64_t)i, T0, env[i], sizeof env[i]);
        rq[i] = (struct verify_req){env[i], n, T0, 1000, NULL};
        want[i] = VERIFY_OK;
        switch (i % 10) {
        case 1: /* forged */
            env[i][n - 5] ^= 0x40;
            want[i] = VERIFY_BAD_SIGNATURE;
            break;
        case 3: /* truncated */
            rq[i].len = n - 3;
            want[i] = VERIFY_MALFORMED;
            break;
        case 4: /* unknown device */
            rq[i].len = envelope(&dev3, 1, T0, env[i], sizeof env[i]);
            want[i] = VERIFY_UNKNOWN;
            break;
        case 5: /* revoked device */
            rq[i].len = envelope(&dev2, 1, T0, env[i], sizeof env[i]);
            want[i] = VERIFY_REVOKED;
            break;
        case 6: /* another session's */
            rq[i].expect_device = dev3.id;
            want[i] = VERIFY_WRONG_DEVICE;
            break;
        case 7: /* skewed */
            rq[i].now_ms = T0 + 2000;
            want[i] = VERIFY_SKEW;
            break;
        case 8: /* skewed and forged: the signature is reported */
            rq[i].now_ms = T0 - 2000;
            env[i][n - 40] ^= 1;
            want[i] = VERIFY_BAD_SIGNATURE;
            break;
        default:
            if (i % 20 == 9) { /* no clock check (late uploads) */
                rq[i].now_ms = T0 + 86400000;
                rq[i].skew_ms = UINT64_MAX;
            }
            break;
        }
        n_ok += want[i] == VERIFY_OK;
    }
    verify_prepare_many(reg, rq, N, vp);
    assert_int_equal(verify_signatures(vp, N), n_ok);
    for (int i = 0; i < N; i++) {
        struct verify_info vi;
        int alone = verify_envelope(reg, rq[i].env, rq[i].len, rq[i].now_ms, rq[i].skew_ms,
                                    rq[i].expect_device, &vi);
        if (vp[i].res != want[i] || alone != want[i] || vp[i].info.cose_err != vi.cose_err)
            fail_msg("envelope %d: batch %d (cose %d), alone %d (cose %d), want %d", i, vp[i].res,
                     vp[i].info.cose_err, alone, vi.cose_err, want[i]);
        if (want[i] == VERIFY_OK)
            assert_int_equal(vp[i].info.seq, 100 + (uint64_t)i);
        if (want[i] == VERIFY_BAD_SIGNATURE)
            assert_int_equal(vp[i].info.cose_err, COSE_ERR_BAD_SIGNATURE);
        if (want[i] == VERIFY_MALFORMED)
            assert_true(vp[i].info.cose_err < 0);
    }
    free(vp);
}

static void test_seq_and_codes(void **state)
{
    (void)state;
    assert_int_equal(verify_seq(false, 0, 0), VERIFY_OK);
    assert_int_equal(verify_seq(true, 5, 6), VERIFY_OK);
    assert_int_equal(verify_seq(true, 5, 5), VERIFY_REPLAY);
    assert_int_equal(verify_seq(true, 5, 4), VERIFY_REPLAY);
    assert_int_equal(verify_seq(true, UINT64_MAX, UINT64_MAX), VERIFY_REPLAY);
    assert_int_equal(verify_reason_code(VERIFY_OK), 0x00);
    assert_int_equal(verify_reason_code(VERIFY_MALFORMED), 0x99);
    assert_int_equal(verify_reason_code(VERIFY_UNKNOWN), 0x87);
    assert_int_equal(verify_reason_code(VERIFY_REVOKED), 0x87);
    assert_int_equal(verify_reason_code(VERIFY_WRONG_DEVICE), 0x87);
    assert_int_equal(verify_reason_code(VERIFY_BAD_SIGNATURE), 0x87);
    assert_int_equal(verify_reason_code(VERIFY_SKEW), 0x83);
    assert_int_equal(verify_reason_code(VERIFY_REPLAY), 0x83);
    assert_int_equal(verify_reason_code(VERIFY_REGISTRY), 0x80);
    assert_string_equal(verify_strerror(VERIFY_SKEW), "clock skew");
    assert_string_equal(verify_strerror(VERIFY_BAD_SIGNATURE), "bad signature");
}

int main(void)
{
    lmq_log_set_level(LMQ_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_prepare_split),
        cmocka_unit_test(test_batch_mixed),
        cmocka_unit_test(test_seq_and_codes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
