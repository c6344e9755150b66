/* Tests of src/crypto/cose.c (COSE_Sign1, device envelopes),
 * src/identity/cwt.c (device tokens) and src/identity/device_id.c: the
 * cose-wg/Examples EdDSA vectors (sig-01 reproduced byte for byte and
 * verified; sig-02 is Ed448 and must be refused as such), envelope round
 * trips, every decoder error, and token time/audience checks.
 *
 * Helper modes for tests/integration/test_cose_python.py (instead of the
 * suite, when the variable is set):
 *   LMQ_COSE_VERIFY_FILE=path LMQ_COSE_VERIFY_PUB=hex32 [LMQ_COSE_VERIFY_MODE=
 *     envelope|sign1|cwt] [LMQ_CWT_AUD=aud LMQ_CWT_NOW=secs]
 *     verifies the file; prints "ok kid=.. seq=.. time=.." or the error;
 *     exit 0 if valid, 1 if not, 2 on usage errors.
 *   LMQ_COSE_SIGN_OUT=path LMQ_COSE_SIGN_SEED=hex32 LMQ_COSE_SIGN_SEQ=n
 *     LMQ_COSE_SIGN_TIME=ms LMQ_COSE_SIGN_PAYLOAD=text
 *     writes a device envelope (kid = the key's device id) to path. */
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
#include "crypto/hash.h"
#include "crypto/sign.h"
#include "identity/cwt.h"
#include "identity/device_id.h"
#include "util/cbor.h"

/* ---- tiny purpose-specific JSON extraction ---- */

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = malloc(1 << 20);
    size_t n = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    if (buf)
        buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

/* Value of the first string member "key" at or after `from`; copies it
 * (no escapes in these files) into out. */
static const char *json_str(const char *json, const char *key, char *out, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\"", key);
    const char *p = strstr(json, pat);
    assert_non_null(p);
    p += strlen(pat);
    while (*p == ' ' || *p == ':')
        p++;
    assert_true(*p == '"');
    p++;
    const char *e = strchr(p, '"');
    assert_non_null(e);
    assert_true((size_t)(e - p) < cap);
    memcpy(out, p, (size_t)(e - p));
    out[e - p] = '\0';
    return e;
}

static size_t json_hex(const char *json, const char *key, uint8_t *out, size_t cap)
{
    static char tmp[4096];
    json_str(json, key, tmp, sizeof(tmp));
    ssize_t n = crypto_hex_decode(tmp, strlen(tmp), out, cap);
    assert_true(n >= 0);
    return (size_t)n;
}

static char *load_vector(const char *name)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/cose/%s", LMQ_TESTDATA_DIR, name);
    char *json = read_file(path, NULL);
    assert_non_null(json);
    return json;
}

/* ---- the cose-wg vectors ---- */

static void test_vector_sig01(void **state)
{
    (void)state;
    char *json = load_vector("eddsa-sig-01.json");
    uint8_t seed[32], pk[32], sk[64], x[32], expect[512], out[512];
    char plaintext[128], kid[16], alg[16];
    size_t out_len;

    assert_int_equal(json_hex(json, "d_hex", seed, sizeof(seed)), 32);
    assert_int_equal(json_hex(json, "x_hex", x, sizeof(x)), 32);
    size_t expect_len = json_hex(json, "cbor", expect, sizeof(expect));
    json_str(json, "plaintext", plaintext, sizeof(plaintext));
    json_str(strstr(json, "\"unprotected\""), "kid", kid, sizeof(kid));
    json_str(strstr(json, "\"protected\""), "alg", alg, sizeof(alg));
    assert_string_equal(alg, "EdDSA");
    assert_int_equal(crypto_ed25519_seed_keypair(pk, sk, seed), 0);
    assert_memory_equal(pk, x, 32);

    /* protected {1: -8 (alg EdDSA), 3: 0 (ctyp)}, unprotected {4: kid} */
    uint8_t prot[16], unprot[32];
    size_t plen, ulen;
    struct cbor_writer w;
    cbor_writer_init(&w, prot, sizeof(prot));
    cbor_put_map(&w, 2);
    cbor_put_uint(&w, COSE_HDR_ALG);
    cbor_put_int(&w, COSE_ALG_EDDSA);
    cbor_put_uint(&w, COSE_HDR_CTY);
    cbor_put_uint(&w, 0);
    assert_int_equal(cbor_writer_finish(&w, &plen), 0);
    cbor_writer_init(&w, unprot, sizeof(unprot));
    cbor_put_map(&w, 1);
    cbor_put_uint(&w, COSE_HDR_KID);
    cbor_put_bstr(&w, kid, strlen(kid));
    assert_int_equal(cbor_writer_finish(&w, &ulen), 0);

    assert_int_equal(cose_sign1_sign(prot, plen, unprot, ulen, NULL, 0, plaintext, strlen(plaintext),
                                     sk, true, out, sizeof(out), &out_len),
                     0);
    assert_int_equal(out_len, expect_len);
    assert_memory_equal(out, expect, expect_len);

    struct cose_sign1 m;
    assert_int_equal(cose_sign1_verify(expect, expect_len, 0, NULL, 0, pk, &m), 0);
    assert_true(m.tagged);
    assert_int_equal(m.alg, COSE_ALG_EDDSA);
    assert_int_equal(m.kid_len, 2);
    assert_memory_equal(m.kid, "11", 2);
    assert_false(m.kid_protected);
    assert_int_equal(m.payload_len, strlen(plaintext));
    /* kid is unprotected here: fine for a generic Sign1, not an envelope */
    assert_int_equal(cose_envelope_decode(expect, expect_len, &m), COSE_ERR_NO_KID);
    /* external_aad is part of what was signed */
    assert_int_equal(cose_sign1_verify(expect, expect_len, 0, "x", 1, pk, NULL),
                     COSE_ERR_BAD_SIGNATURE);
    /* every payload / protected / signature byte matters */
    for (size_t i = 3; i < expect_len; i++) {
        if (i >= 8 && i < 14)
            continue; /* unprotected header: not signed (changing kid is allowed) */
        uint8_t t[512];
        memcpy(t, expect, expect_len);
        t[i] ^= 0x01;
        int rc = cose_sign1_verify(t, expect_len, 0, NULL, 0, pk, NULL);
        assert_int_not_equal(rc, 0);
    }
    free(json);
}

static void test_vector_sig02_ed448(void **state)
{
    (void)state;
    char *json = load_vector("eddsa-sig-02.json");
    uint8_t msg[512], pk[32] = {0};
    size_t len = json_hex(json, "cbor", msg, sizeof(msg));
    struct cose_sign1 m;
    assert_int_equal(cose_sign1_decode(msg, len, 0, &m), 0);
    assert_int_equal(m.alg, COSE_ALG_EDDSA);
    assert_int_equal(m.signature_len, 114);
    assert_int_equal(cose_sign1_verify_sig(&m, NULL, 0, pk), COSE_ERR_SIG_LEN);
    free(json);
}

/* ---- envelopes ---- */

static uint8_t t_pk[32], t_sk[64];
static char t_id[DEVICE_ID_LEN + 1];

static int setup_key(void **state)
{
    (void)state;
    uint8_t seed[32];
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)(i * 7 + 1);
    if (crypto_ed25519_seed_keypair(t_pk, t_sk, seed) != 0)
        return -1;
    device_id_from_pk(t_pk, t_id);
    return 0;
}

static void test_envelope_roundtrip(void **state)
{
    (void)state;
    uint8_t env[512];
    size_t len;
    const char payload[] = "{\"kwh\": 12.5}";
    assert_int_equal(cose_envelope_sign(t_id, strlen(t_id), 42, 1767225600123ull, payload,
                                        strlen(payload), t_sk, env, sizeof(env), &len),
                     0);
    assert_true(len <= COSE_ENVELOPE_MAX(strlen(t_id), strlen(payload)));
    /* fixed prefix: tag 18, array 4, bstr protected, map 4, alg -8, kid */
    assert_int_equal(env[0], 0xd2);
    assert_int_equal(env[1], 0x84);
    struct cose_sign1 m;
    assert_int_equal(cose_envelope_verify(env, len, t_pk, &m), 0);
    assert_int_equal(m.seq, 42);
    assert_int_equal(m.time_ms, 1767225600123ull);
    assert_int_equal(m.kid_len, DEVICE_ID_LEN);
    assert_memory_equal(m.kid, t_id, DEVICE_ID_LEN);
    assert_true(m.kid_protected);
    assert_int_equal(m.unprotected_len, 1);
    assert_memory_equal(m.payload, payload, strlen(payload));
    assert_int_equal(cbor_validate_deterministic(env, len), 0);

    /* wrong key */
    uint8_t pk2[32], sk2[64];
    assert_int_equal(crypto_ed25519_keypair(pk2, sk2), 0);
    assert_int_equal(cose_envelope_verify(env, len, pk2, NULL), COSE_ERR_BAD_SIGNATURE);
    /* payload tampered (last payload byte is just before the 0x58 0x40 sig head) */
    uint8_t t[512];
    memcpy(t, env, len);
    t[len - 64 - 2 - 1] ^= 1;
    assert_int_equal(cose_envelope_verify(t, len, t_pk, NULL), COSE_ERR_BAD_SIGNATURE);
    /* sequence number tampered inside the protected header (42 = 0x18 0x2a) */
    memcpy(t, env, len);
    uint8_t *p = memchr(t, 0x2a, len);
    assert_non_null(p);
    *p = 0x2b;
    assert_int_equal(cose_envelope_verify(t, len, t_pk, NULL), COSE_ERR_BAD_SIGNATURE);
    /* too small an output buffer */
    assert_int_equal(cose_envelope_sign(t_id, strlen(t_id), 1, 1, payload, strlen(payload), t_sk,
                                        env, 40, &len),
                     COSE_ERR_SPACE);
    assert_int_equal(cose_envelope_sign(t_id, 0, 1, 1, payload, 1, t_sk, env, sizeof(env), &len),
                     COSE_ERR_ARGS);
}

static void test_envelope_large_payload(void **state)
{
    (void)state;
    size_t plen = 100000, cap = COSE_ENVELOPE_MAX(DEVICE_ID_LEN, plen), len;
    uint8_t *payload = malloc(plen), *env = malloc(cap);
    assert_non_null(payload);
    assert_non_null(env);
    memset(payload, 'x', plen);
    assert_int_equal(cose_envelope_sign(t_id, DEVICE_ID_LEN, UINT64_MAX, 0, payload, plen, t_sk,
                                        env, cap, &len),
                     0);
    struct cose_sign1 m;
    assert_int_equal(cose_envelope_verify(env, len, t_pk, &m), 0);
    assert_int_equal(m.seq, UINT64_MAX);
    assert_int_equal(m.payload_len, plen);
    free(payload);
    free(env);
}

/* Builds a Sign1 from explicit header maps (given as hex) for error tests. */
static size_t build(const char *prot_hex, const char *unprot_hex, uint8_t *out, size_t cap)
{
    uint8_t prot[256], unprot[256];
    ssize_t pl = crypto_hex_decode(prot_hex, strlen(prot_hex), prot, sizeof(prot));
    ssize_t ul = crypto_hex_decode(unprot_hex, strlen(unprot_hex), unprot, sizeof(unprot));
    assert_true(pl >= 0 && ul > 0);
    size_t len;
    assert_int_equal(cose_sign1_sign(prot, (size_t)pl, unprot, (size_t)ul, NULL, 0, "hi", 2, t_sk,
                                     true, out, cap, &len),
                     0);
    return len;
}

static int decode_hex(const char *hex, unsigned flags)
{
    uint8_t b[512];
    ssize_t n = crypto_hex_decode(hex, strlen(hex), b, sizeof(b));
    assert_true(n >= 0);
    struct cose_sign1 m;
    return cose_sign1_decode(b, (size_t)n, flags, &m);
}

static void test_decode_errors(void **state)
{
    (void)state;
    uint8_t b[512];
    size_t n;
    struct cose_sign1 m;
    char s[64];
    /* minimal valid untagged: [h'', {}, h'', h''] */
    assert_int_equal(decode_hex("8440a04040", COSE_DECODE_UNTAGGED_OK), 0);
    assert_int_equal(decode_hex("8440a04040", 0), COSE_ERR_TAG);
    assert_int_equal(decode_hex("d18440a04040", 0), COSE_ERR_TAG);   /* tag 17 */
    assert_int_equal(decode_hex("d28340a040", 0), COSE_ERR_MALFORMED); /* 3 items */
    assert_int_equal(decode_hex("d28440a040", 0), COSE_ERR_MALFORMED); /* truncated */
    assert_int_equal(decode_hex("d28440a0404000", 0), COSE_ERR_MALFORMED); /* trailing */
    assert_int_equal(decode_hex("d2844040404040", 0), COSE_ERR_MALFORMED); /* unprot not map */
    assert_int_equal(decode_hex("d28440a0f640", 0), COSE_ERR_DETACHED);
    assert_int_equal(decode_hex("d2845800a04040", 0), COSE_ERR_NONCANONICAL); /* long head */
    assert_int_equal(decode_hex("d29f40a04040ff", 0), COSE_ERR_NONCANONICAL); /* indefinite */
    assert_int_equal(decode_hex("d28441a0a04040", 0), 0);                     /* prot {} */
    assert_int_equal(decode_hex("d2844101a04040", 0), COSE_ERR_HEADER);       /* prot not map */
    assert_int_equal(decode_hex("d28443a10127a04040", 0), 0);
    assert_int_equal(decode_hex("d28443a10126a04040", 0), 0); /* alg -7: decodes... */
    n = (size_t)crypto_hex_decode("d28443a10126a04040", 18, b, sizeof(b));
    assert_int_equal(cose_sign1_decode(b, n, 0, &m), 0);
    assert_int_equal(cose_sign1_verify_sig(&m, NULL, 0, t_pk), COSE_ERR_ALG); /* ...but no */
    assert_int_equal(decode_hex("d28445a203270127a04040", 0), COSE_ERR_NONCANONICAL); /* order */
    assert_int_equal(decode_hex("d28443a10140a04040", 0), COSE_ERR_HEADER); /* alg bstr */
    assert_int_equal(decode_hex("d28443a10401a04040", 0), COSE_ERR_HEADER); /* kid uint */
    assert_int_equal(decode_hex("d28443a10127a101274040", 0), COSE_ERR_HEADER); /* in both */
    assert_int_equal(decode_hex("d28440a1f6404040", 0), COSE_ERR_HEADER); /* label null */

    /* generic messages signed with t_sk */
    n = build("", "a0", b, sizeof(b)); /* no alg */
    assert_int_equal(cose_sign1_verify(b, n, 0, NULL, 0, t_pk, NULL), COSE_ERR_ALG);
    n = build("a0", "a10127", b, sizeof(b)); /* alg only unprotected */
    assert_int_equal(cose_sign1_verify(b, n, 0, NULL, 0, t_pk, NULL), COSE_ERR_ALG);
    n = build("a10127", "a0", b, sizeof(b));
    assert_int_equal(cose_sign1_verify(b, n, 0, NULL, 0, t_pk, NULL), 0);
    assert_int_equal(cose_envelope_decode(b, n, &m), COSE_ERR_NO_KID);
    n = build("a20127044131", "a0", b, sizeof(b)); /* alg, kid: no seq */
    assert_int_equal(cose_envelope_decode(b, n, &m), COSE_ERR_NO_SEQ);
    n = build("a301270441313a0001000001", "a0", b, sizeof(b)); /* no time */
    assert_int_equal(cose_envelope_decode(b, n, &m), COSE_ERR_NO_TIME);
    n = build("a401270441313a00010000013a0001000102", "a0", b, sizeof(b));
    assert_int_equal(cose_envelope_verify(b, n, t_pk, &m), 0);
    assert_int_equal(m.seq, 1);
    assert_int_equal(m.time_ms, 2);
    n = build("a20127044131", "a13a0001000001", b, sizeof(b)); /* seq unprotected */
    assert_int_equal(cose_sign1_decode(b, n, 0, &m), COSE_ERR_HEADER);
    n = build("a3012702810404413f", "a0", b, sizeof(b)); /* crit [4]: understood */
    assert_int_equal(cose_sign1_verify(b, n, 0, NULL, 0, t_pk, NULL), 0);
    n = build("a201270281182a", "a0", b, sizeof(b)); /* crit [42]: unknown */
    assert_int_equal(cose_sign1_decode(b, n, 0, &m), COSE_ERR_CRIT);
    n = build("a10127", "a10281182a", b, sizeof(b)); /* crit unprotected */
    assert_int_equal(cose_sign1_decode(b, n, 0, &m), COSE_ERR_HEADER);
    n = build("a2012763666f6f01", "a0", b, sizeof(b)); /* text label: ignored */
    assert_int_equal(cose_sign1_verify(b, n, 0, NULL, 0, t_pk, NULL), 0);
    n = build("a101654564343438", "a0", b, sizeof(b)); /* alg "Ed448" text */
    assert_int_equal(cose_sign1_verify(b, n, 0, NULL, 0, t_pk, NULL), COSE_ERR_ALG);
    /* a 63-byte signature */
    n = build("a10127", "a0", b, sizeof(b));
    b[n - 65] = 0x3f; /* bstr head 0x58 0x40 -> 0x58 0x3f */
    assert_int_equal(cose_sign1_decode(b, n - 1, 0, &m), 0);
    assert_int_equal(cose_sign1_verify_sig(&m, NULL, 0, t_pk), COSE_ERR_SIG_LEN);
    snprintf(s, sizeof(s), "%s", cose_strerror(COSE_ERR_CRIT));
    assert_true(strlen(s) > 0);
}

/* ---- CWT ---- */

static const uint8_t cti[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static void test_cwt(void **state)
{
    (void)state;
    uint8_t tok[512];
    size_t len;
    struct cwt_token t;
    const char *aud = "lmq://broker.example";
    int64_t now = 1767225600;
    assert_int_equal(cwt_make(t_id, aud, now, now + 300, cti, sizeof(cti), t_sk, tok, sizeof(tok),
                              &len),
                     0);
    assert_int_equal(cwt_decode(tok, len, &t), 0);
    assert_int_equal(t.sub_len, DEVICE_ID_LEN);
    assert_memory_equal(t.sub, t_id, DEVICE_ID_LEN);
    assert_int_equal(t.cti_len, 16);
    assert_int_equal(t.exp, now + 300);
    assert_int_equal(cwt_verify(&t, t_pk, aud, now, 30, 3600), 0);
    assert_int_equal(cwt_verify(&t, t_pk, aud, now + 299, 0, 3600), 0);
    assert_int_equal(cwt_verify(&t, t_pk, aud, now + 300, 0, 3600), CWT_ERR_EXPIRED);
    assert_int_equal(cwt_verify(&t, t_pk, aud, now + 329, 30, 3600), 0);
    assert_int_equal(cwt_verify(&t, t_pk, aud, now + 330, 30, 3600), CWT_ERR_EXPIRED);
    assert_int_equal(cwt_verify(&t, t_pk, aud, now - 30, 30, 3600), 0);
    assert_int_equal(cwt_verify(&t, t_pk, aud, now - 31, 30, 3600), CWT_ERR_NOT_YET_VALID);
    assert_int_equal(cwt_verify(&t, t_pk, "lmq://other", now, 30, 3600), CWT_ERR_AUDIENCE);
    assert_int_equal(cwt_verify(&t, t_pk, "lmq://broker.exampl", now, 30, 3600), CWT_ERR_AUDIENCE);
    assert_int_equal(cwt_verify(&t, t_pk, aud, now, 30, 299), CWT_ERR_LIFETIME);
    uint8_t pk2[32], sk2[64];
    assert_int_equal(crypto_ed25519_keypair(pk2, sk2), 0);
    assert_int_equal(cwt_verify(&t, pk2, aud, now, 30, 3600), COSE_ERR_BAD_SIGNATURE);

    /* wrapped in CWT tag 61 (0xd8 0x3d) */
    uint8_t tagged[520];
    tagged[0] = 0xd8;
    tagged[1] = 0x3d;
    memcpy(tagged + 2, tok, len);
    assert_int_equal(cwt_decode(tagged, len + 2, &t), 0);
    assert_int_equal(cwt_verify(&t, t_pk, aud, now, 30, 3600), 0);
    tagged[1] = 0x3e;
    assert_int_equal(cwt_decode(tagged, len + 2, &t), CWT_ERR_TAG);

    /* extreme times do not overflow */
    assert_int_equal(cwt_make(t_id, aud, INT64_MIN, INT64_MAX, cti, 1, t_sk, tok, sizeof(tok), &len), 0);
    assert_int_equal(cwt_decode(tok, len, &t), 0);
    assert_int_equal(cwt_verify(&t, t_pk, aud, now, 30, 3600), CWT_ERR_LIFETIME);
    assert_int_equal(cwt_verify(&t, t_pk, aud, INT64_MAX, INT64_MAX, 0), 0);
    assert_int_equal(cwt_make(t_id, aud, 0, 0, cti, 0, t_sk, tok, sizeof(tok), &len), COSE_ERR_ARGS);
}

/* Signs an arbitrary claims map (hex) with kid = t_id. */
static int cwt_custom(const char *claims_hex, const char *kid)
{
    uint8_t claims[512], prot[128], tok[1024];
    size_t plen, len;
    struct cbor_writer w;
    ssize_t cl = crypto_hex_decode(claims_hex, strlen(claims_hex), claims, sizeof(claims));
    assert_true(cl >= 0);
    cbor_writer_init(&w, prot, sizeof(prot));
    cbor_put_map(&w, 2);
    cbor_put_uint(&w, 1);
    cbor_put_int(&w, -8);
    cbor_put_uint(&w, 4);
    cbor_put_bstr(&w, kid, strlen(kid));
    assert_int_equal(cbor_writer_finish(&w, &plen), 0);
    assert_int_equal(cose_sign1_sign(prot, plen, NULL, 0, NULL, 0, claims, (size_t)cl, t_sk, true,
                                     tok, sizeof(tok), &len),
                     0);
    struct cwt_token t;
    return cwt_decode(tok, len, &t);
}

static void test_cwt_claims_errors(void **state)
{
    (void)state;
    /* {2: "a", 3: "b", 4: 10, 6: 1, 7: h'01'} with kid "a" */
    assert_int_equal(cwt_custom("a502616103616204" "0a" "0601" "074101", "a"), 0);
    assert_int_equal(cwt_custom("a502616103616204" "0a" "0601" "074101", "b"), CWT_ERR_SUBJECT);
    /* iss "x" != sub */
    assert_int_equal(cwt_custom("a601617802616103616204" "0a" "0601" "074101", "a"), CWT_ERR_SUBJECT);
    /* no cti */
    assert_int_equal(cwt_custom("a402616103616204" "0a" "0601", "a"), CWT_ERR_MISSING);
    /* aud as bstr */
    assert_int_equal(cwt_custom("a502616103416204" "0a" "0601" "074101", "a"), CWT_ERR_CLAIMS);
    /* exp as text */
    assert_int_equal(cwt_custom("a50261610361620461310601074101", "a"), CWT_ERR_CLAIMS);
    /* empty cti */
    assert_int_equal(cwt_custom("a502616103616204" "0a" "0601" "0740", "a"), CWT_ERR_CLAIMS);
    /* not a map */
    assert_int_equal(cwt_custom("80", "a"), CWT_ERR_CLAIMS);
    /* unknown int claim and a text-keyed claim are skipped */
    assert_int_equal(cwt_custom("a702616103616204" "0a" "0601" "074101" "1863f5" "6178f4", "a"), 0);
}

/* ---- device id ---- */

static void test_device_id(void **state)
{
    (void)state;
    uint8_t pk[32];
    char id[DEVICE_ID_LEN + 1];
    assert_int_equal(crypto_hex_decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
                                       64, pk, sizeof(pk)),
                     32);
    device_id_from_pk(pk, id);
    /* computed independently with Python's hashlib + base64.b32encode */
    assert_string_equal(id, "d-fpw3htgaiwfgjohixoaid7fvofdxsvrk");
    assert_int_equal(device_id_valid(id, strlen(id)), 1);
    assert_int_equal(device_id_matches(id, strlen(id), pk), 1);
    pk[0] ^= 1;
    assert_int_equal(device_id_matches(id, strlen(id), pk), 0);
    assert_int_equal(device_id_valid("d-fpw3htgaiwfgjohixoaid7fvofdxsvr", 33), 0);
    assert_int_equal(device_id_valid("d-fpw3htgaiwfgjohixoaid7fvofdxsvr1", 34), 0);
    assert_int_equal(device_id_valid("d-FPW3htgaiwfgjohixoaid7fvofdxsvrk", 34), 0);
    assert_int_equal(device_id_valid("x-fpw3htgaiwfgjohixoaid7fvofdxsvrk", 34), 0);
}

/* ---- helper modes for the Python interoperability test ---- */

static int hex_env(const char *name, uint8_t *out, size_t len)
{
    const char *v = getenv(name);
    if (v == NULL || crypto_hex_decode(v, strlen(v), out, len) != (ssize_t)len) {
        fprintf(stderr, "%s: need %zu bytes of hex\n", name, len);
        return -1;
    }
    return 0;
}

static int helper_verify(const char *path)
{
    uint8_t pk[32];
    size_t len;
    char *buf = read_file(path, &len);
    const char *mode = getenv("LMQ_COSE_VERIFY_MODE");
    int rc;
    if (buf == NULL || hex_env("LMQ_COSE_VERIFY_PUB", pk, 32) != 0)
        return 2;
    if (mode == NULL || strcmp(mode, "envelope") == 0) {
        struct cose_sign1 m;
        rc = cose_envelope_verify((const uint8_t *)buf, len, pk, &m);
        if (rc == 0)
            printf("ok kid=%.*s seq=%llu time=%llu payload=%.*s\n", (int)m.kid_len, (const char *)m.kid,
                   (unsigned long long)m.seq, (unsigned long long)m.time_ms, (int)m.payload_len,
                   (const char *)m.payload);
    } else if (strcmp(mode, "sign1") == 0) {
        rc = cose_sign1_verify((const uint8_t *)buf, len, COSE_DECODE_UNTAGGED_OK, NULL, 0, pk, NULL);
        if (rc == 0)
            printf("ok\n");
    } else if (strcmp(mode, "cwt") == 0) {
        struct cwt_token t;
        const char *aud = getenv("LMQ_CWT_AUD"), *now = getenv("LMQ_CWT_NOW");
        if (aud == NULL || now == NULL)
            return 2;
        rc = cwt_decode((const uint8_t *)buf, len, &t);
        if (rc == 0)
            rc = cwt_verify(&t, pk, aud, strtoll(now, NULL, 10), 60, 86400);
        if (rc == 0)
            printf("ok sub=%.*s\n", (int)t.sub_len, t.sub);
    } else {
        return 2;
    }
    if (rc != 0)
        printf("error %d %s\n", rc, cwt_strerror(rc));
    free(buf);
    return rc == 0 ? 0 : 1;
}

static int helper_sign(const char *path)
{
    uint8_t seed[32], pk[32], sk[64], env[4096];
    char id[DEVICE_ID_LEN + 1];
    const char *seq = getenv("LMQ_COSE_SIGN_SEQ"), *tm = getenv("LMQ_COSE_SIGN_TIME");
    const char *payload = getenv("LMQ_COSE_SIGN_PAYLOAD");
    size_t len;
    if (hex_env("LMQ_COSE_SIGN_SEED", seed, 32) != 0 || seq == NULL || tm == NULL ||
        payload == NULL || strlen(payload) > 2048)
        return 2;
    if (crypto_ed25519_seed_keypair(pk, sk, seed) != 0)
        return 2;
    device_id_from_pk(pk, id);
    if (cose_envelope_sign(id, strlen(id), strtoull(seq, NULL, 10), strtoull(tm, NULL, 10), payload,
                           strlen(payload), sk, env, sizeof(env), &len) != 0)
        return 1;
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(env, 1, len, f) != len || fclose(f) != 0)
        return 1;
    printf("%s\n", id);
    return 0;
}

int main(void)
{
    const char *vf = getenv("LMQ_COSE_VERIFY_FILE"), *so = getenv("LMQ_COSE_SIGN_OUT");
    if (vf != NULL)
        return helper_verify(vf);
    if (so != NULL)
        return helper_sign(so);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vector_sig01),
        cmocka_unit_test(test_vector_sig02_ed448),
        cmocka_unit_test_setup(test_envelope_roundtrip, setup_key),
        cmocka_unit_test_setup(test_envelope_large_payload, setup_key),
        cmocka_unit_test_setup(test_decode_errors, setup_key),
        cmocka_unit_test_setup(test_cwt, setup_key),
        cmocka_unit_test_setup(test_cwt_claims_errors, setup_key),
        cmocka_unit_test(test_device_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
