/* Tests of the device SDK (sdk/src, compiled into this test by #include
 * so the SDK keeps building on its own) against the broker's own code:
 * device ids agree, SDK envelopes and tokens verify with src/crypto/cose.c
 * and src/identity/cwt.c (and are byte-identical to the broker's
 * encoding), broker envelopes verify with the SDK, and receipts made with
 * src/ledger/merkle.c + src/crypto/note.c verify with the SDK, each
 * defect refused with its own code. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "../../sdk/src/envelope.c"
#include "../../sdk/src/key.c"
#include "../../sdk/src/receipt.c"
#include "../../sdk/src/util.c"

#include "crypto/cose.h"
#include "crypto/hash.h"
#include "crypto/note.h"
#include "crypto/sign.h"
#include "identity/cwt.h"
#include "identity/device_id.h"
#include "ledger/merkle.h"

static int fixed_rng(void *ctx, uint8_t *buf, size_t len)
{
    uint8_t *v = ctx;
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(*v + i);
    return 0;
}

static int failing_rng(void *ctx, uint8_t *buf, size_t len)
{
    (void)ctx;
    (void)buf;
    (void)len;
    return -1;
}

static struct lmq_sdk_key key;

static int setup(void **state)
{
    (void)state;
    uint8_t v = 9;
    if (lmq_sdk_init() != 0)
        return -1;
    return lmq_sdk_key_generate(&key, fixed_rng, &v);
}

static void test_keys(void **state)
{
    (void)state;
    char id[DEVICE_ID_LEN + 1];
    device_id_from_pk(key.pk, id);
    assert_string_equal(id, key.device_id);
    uint8_t seed[32], pk[32], sk[64];
    lmq_sdk_key_seed(&key, seed);
    assert_int_equal(crypto_ed25519_seed_keypair(pk, sk, seed), 0);
    assert_memory_equal(pk, key.pk, 32);
    assert_memory_equal(sk, key.sk, 64);
    struct lmq_sdk_key k2;
    assert_int_equal(lmq_sdk_key_generate(&k2, failing_rng, NULL), LMQ_SDK_ERR_RNG);
    assert_int_equal(lmq_sdk_key_generate(&k2, lmq_sdk_rng_system, NULL), 0);
    assert_memory_not_equal(k2.pk, key.pk, 32);
    lmq_sdk_key_wipe(&k2);
    assert_int_equal(k2.sk[0] | k2.sk[63], 0);
    assert_string_equal(lmq_sdk_strerror(LMQ_SDK_ERR_PROOF), "inclusion proof does not verify");
}

static void test_envelopes_interop(void **state)
{
    (void)state;
    const uint8_t payload[] = "{\"kwh\":1000.250}";
    size_t plen = sizeof(payload) - 1;
    uint8_t a[256], b[256], scratch[512];
    size_t alen, blen;
    /* SDK -> broker */
    assert_int_equal(lmq_sdk_envelope_sign(&key, 77, 1767225600123ull, payload, plen, a, sizeof(a), &alen), 0);
    assert_true(alen <= LMQ_SDK_ENVELOPE_MAX(plen));
    struct cose_sign1 m;
    assert_int_equal(cose_envelope_verify(a, alen, key.pk, &m), 0);
    assert_int_equal(m.seq, 77);
    assert_int_equal(m.time_ms, 1767225600123ull);
    assert_memory_equal(m.kid, key.device_id, LMQ_SDK_DEVICE_ID_LEN);
    assert_memory_equal(m.payload, payload, plen);
    /* broker encoding is the same bytes */
    assert_int_equal(cose_envelope_sign(key.device_id, LMQ_SDK_DEVICE_ID_LEN, 77, 1767225600123ull,
                                        payload, plen, key.sk, b, sizeof(b), &blen),
                     0);
    assert_int_equal(alen, blen);
    assert_memory_equal(a, b, alen);
    /* broker -> SDK */
    assert_int_equal(cose_envelope_sign(key.device_id, LMQ_SDK_DEVICE_ID_LEN, UINT64_MAX, 5, payload,
                                        plen, key.sk, b, sizeof(b), &blen),
                     0);
    struct lmq_sdk_envelope e;
    assert_int_equal(lmq_sdk_envelope_verify(b, blen, key.pk, scratch, sizeof(scratch), &e), 0);
    assert_true(e.seq == UINT64_MAX);
    assert_int_equal(e.time_ms, 5);
    assert_int_equal(e.payload_len, plen);
    assert_memory_equal(e.kid, key.device_id, e.kid_len);
    /* SDK verify refusals */
    b[blen - 1] ^= 1;
    assert_int_equal(lmq_sdk_envelope_verify(b, blen, key.pk, scratch, sizeof(scratch), &e),
                     LMQ_SDK_ERR_SIGNATURE);
    assert_int_equal(lmq_sdk_envelope_verify(b, blen - 1, key.pk, scratch, sizeof(scratch), &e),
                     LMQ_SDK_ERR_MALFORMED);
    assert_int_equal(lmq_sdk_envelope_verify(b + 1, blen - 1, key.pk, scratch, sizeof(scratch), &e),
                     LMQ_SDK_ERR_MALFORMED);
    assert_int_equal(lmq_sdk_envelope_verify(a, alen, key.pk, scratch, 10, &e), LMQ_SDK_ERR_SPACE);
    /* a token is not an envelope (no seq/time) */
    uint8_t tok[256];
    size_t tlen;
    uint8_t v = 1;
    assert_int_equal(lmq_sdk_token_make(&key, "x", 1, 2, fixed_rng, &v, tok, sizeof(tok), &tlen), 0);
    assert_int_equal(lmq_sdk_envelope_verify(tok, tlen, key.pk, scratch, sizeof(scratch), &e),
                     LMQ_SDK_ERR_ALG);
    /* duplicate label in the protected header (the broker refuses it as
     * non-deterministic; the SDK as malformed) */
    {
        static const uint8_t dup[] = {0xa5, 0x01, 0x27, 0x04, 0x41, 0x61, 0x3a, 0x00, 0x01, 0x00, 0x00, 0x01,
                                      0x3a, 0x00, 0x01, 0x00, 0x00, 0x02, 0x3a, 0x00, 0x01, 0x00, 0x01, 0x03};
        assert_int_equal(cose_sign1_sign(dup, sizeof(dup), NULL, 0, NULL, 0, "x", 1, key.sk, true, b,
                                         sizeof(b), &blen),
                         0);
        assert_int_equal(lmq_sdk_envelope_verify(b, blen, key.pk, scratch, sizeof(scratch), &e),
                         LMQ_SDK_ERR_MALFORMED);
        assert_int_equal(cose_envelope_verify(b, blen, key.pk, NULL), COSE_ERR_NONCANONICAL);
    }
    /* empty payload, output too small at every size */
    assert_int_equal(lmq_sdk_envelope_sign(&key, 1, 1, NULL, 0, a, sizeof(a), &alen), 0);
    assert_int_equal(cose_envelope_verify(a, alen, key.pk, NULL), 0);
    for (size_t cap = 0; cap < alen; cap++)
        assert_int_equal(lmq_sdk_envelope_sign(&key, 1, 1, NULL, 0, a, cap, &blen), LMQ_SDK_ERR_SPACE);
    /* large payload */
    static uint8_t big[70000], out[70200];
    memset(big, 'z', sizeof(big));
    assert_int_equal(lmq_sdk_envelope_sign(&key, 3, 4, big, sizeof(big), out, sizeof(out), &alen), 0);
    assert_int_equal(cose_envelope_verify(out, alen, key.pk, &m), 0);
    assert_int_equal(m.payload_len, sizeof(big));
}

static void test_token_interop(void **state)
{
    (void)state;
    uint8_t tok[256];
    size_t tlen;
    uint8_t v = 3;
    const char *aud = "lmq://meters.example.net";
    assert_int_equal(lmq_sdk_token_make(&key, aud, 1767225600, 1767225900, fixed_rng, &v, tok,
                                        sizeof(tok), &tlen),
                     0);
    assert_true(tlen <= LMQ_SDK_TOKEN_MAX(strlen(aud)));
    struct cwt_token t;
    assert_int_equal(cwt_decode(tok, tlen, &t), 0);
    assert_int_equal(cwt_verify(&t, key.pk, aud, 1767225700, 30, 3600), 0);
    assert_int_equal(cwt_verify(&t, key.pk, aud, 1767225930, 30, 3600), CWT_ERR_EXPIRED);
    assert_int_equal(t.cti_len, LMQ_SDK_CTI_LEN);
    assert_int_equal(t.cti[0], 3);
    /* same bytes as the broker's maker with the same cti */
    uint8_t b[256];
    size_t blen;
    assert_int_equal(cwt_make(key.device_id, aud, 1767225600, 1767225900, t.cti, t.cti_len, key.sk, b,
                              sizeof(b), &blen),
                     0);
    assert_int_equal(blen, tlen);
    assert_memory_equal(b, tok, tlen);
    assert_int_equal(lmq_sdk_token_make(&key, aud, 1, 2, failing_rng, NULL, tok, sizeof(tok), &tlen),
                     LMQ_SDK_ERR_RNG);
    assert_int_equal(lmq_sdk_token_make(&key, aud, 1, 2, fixed_rng, &v, tok, 100, &tlen),
                     LMQ_SDK_ERR_SPACE);
}

/* ---- receipts ---- */

#define NREC 11
static uint8_t leaves[NREC][32];
static char records[NREC][32];

static int get_node(void *ctx, unsigned level, uint64_t index, uint8_t out[32])
{
    (void)ctx;
    if (level == 0) {
        memcpy(out, leaves[index], 32);
        return 0;
    }
    uint8_t l[32], r[32];
    get_node(NULL, level - 1, 2 * index, l);
    get_node(NULL, level - 1, 2 * index + 1, r);
    merkle_node_hash(l, r, out);
    return 0;
}

static uint8_t log_pk[32], log_sk[64];
static const char log_name[] = "ledger.example/log";

/* JSON-escapes s into out; em dash as \u2014 when uescape. */
static void json_escape(const char *s, size_t len, char *out, bool uescape)
{
    char *o = out;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\n') {
            *o++ = '\\';
            *o++ = 'n';
        } else if (uescape && (unsigned char)s[i] == 0xe2 && i + 2 < len) {
            o += sprintf(o, "\\u2014");
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
}

static size_t make_receipt(uint64_t index, uint64_t size, uint64_t claimed_size, const char *record,
                           const char *origin, bool uescape, char *out, size_t cap)
{
    uint8_t proof[MERKLE_MAX_PROOF][32], root[32];
    size_t n;
    char root64[48], text[256], note[1024], esc[2048], rec64[128], p64[48];
    assert_int_equal(merkle_root(size, get_node, NULL, root), 0);
    assert_int_equal(merkle_inclusion_proof(index, size, get_node, NULL, proof, &n), 0);
    assert_true(crypto_b64_encode(root, 32, root64, sizeof(root64)) > 0);
    snprintf(text, sizeof(text), "%s\n%llu\n%s\n", origin, (unsigned long long)size, root64);
    ssize_t nl = note_sign(text, strlen(text), log_name, log_sk, log_pk, note, sizeof(note));
    assert_true(nl > 0);
    json_escape(note, (size_t)nl, esc, uescape);
    assert_true(crypto_b64_encode(record, strlen(record), rec64, sizeof(rec64)) > 0);
    int off = snprintf(out, cap, "{\"index\": %llu, \"tree_size\": %llu, \"record\": \"%s\", \"proof\": [",
                       (unsigned long long)index, (unsigned long long)claimed_size, rec64);
    for (size_t i = 0; i < n; i++) {
        assert_true(crypto_b64_encode(proof[i], 32, p64, sizeof(p64)) > 0);
        off += snprintf(out + off, cap - (size_t)off, "%s\"%s\"", i ? ", " : "", p64);
    }
    off += snprintf(out + off, cap - (size_t)off, "], \"checkpoint\": \"%s\"}", esc);
    return (size_t)off;
}

static void test_receipts(void **state)
{
    (void)state;
    char json[8192];
    uint8_t scratch[8192];
    struct lmq_sdk_receipt r;
    const char *origin = "ledger.example/log";
    assert_int_equal(crypto_ed25519_keypair(log_pk, log_sk), 0);
    for (int i = 0; i < NREC; i++) {
        snprintf(records[i], sizeof(records[i]), "record-%d", i);
        merkle_leaf_hash((const uint8_t *)records[i], strlen(records[i]), leaves[i]);
    }
    for (uint64_t size = 1; size <= NREC; size++) {
        for (uint64_t idx = 0; idx < size; idx++) {
            size_t len = make_receipt(idx, size, size, records[idx], origin, idx % 2, json, sizeof(json));
            int rc = lmq_sdk_receipt_verify(json, len, log_name, log_pk, origin, scratch,
                                            sizeof(scratch), &r);
            if (rc != 0)
                fail_msg("size %llu index %llu: %s\n%s", (unsigned long long)size,
                         (unsigned long long)idx, lmq_sdk_strerror(rc), json);
            assert_int_equal(r.index, idx);
            assert_int_equal(r.record_len, strlen(records[idx]));
            assert_memory_equal(r.record, records[idx], r.record_len);
        }
    }
    size_t len;
    /* wrong record for the index */
    len = make_receipt(3, 7, 7, records[4], origin, false, json, sizeof(json));
    assert_int_equal(lmq_sdk_receipt_verify(json, len, log_name, log_pk, origin, scratch, sizeof(scratch), &r),
                     LMQ_SDK_ERR_PROOF);
    /* claimed size differs from the checkpoint */
    len = make_receipt(3, 7, 8, records[3], origin, false, json, sizeof(json));
    assert_int_equal(lmq_sdk_receipt_verify(json, len, log_name, log_pk, origin, scratch, sizeof(scratch), &r),
                     LMQ_SDK_ERR_SIZE);
    /* origin */
    len = make_receipt(3, 7, 7, records[3], "other/log", false, json, sizeof(json));
    assert_int_equal(lmq_sdk_receipt_verify(json, len, log_name, log_pk, origin, scratch, sizeof(scratch), &r),
                     LMQ_SDK_ERR_ORIGIN);
    assert_int_equal(lmq_sdk_receipt_verify(json, len, log_name, log_pk, NULL, scratch, sizeof(scratch), &r), 0);
    /* another key / another name */
    uint8_t pk2[32], sk2[64];
    assert_int_equal(crypto_ed25519_keypair(pk2, sk2), 0);
    len = make_receipt(3, 7, 7, records[3], origin, false, json, sizeof(json));
    assert_int_equal(lmq_sdk_receipt_verify(json, len, log_name, pk2, origin, scratch, sizeof(scratch), &r),
                     LMQ_SDK_ERR_UNSIGNED);
    assert_int_equal(lmq_sdk_receipt_verify(json, len, "other", log_pk, origin, scratch, sizeof(scratch), &r),
                     LMQ_SDK_ERR_UNSIGNED);
    assert_int_equal(lmq_sdk_receipt_verify(json, len, log_name, log_pk, origin, scratch, 100, &r),
                     LMQ_SDK_ERR_SPACE);
    /* tampered tree size in the signed text: signature fails */
    char *p = strstr(json, "\\n7\\n");
    assert_non_null(p);
    p[2] = '8';
    assert_int_equal(lmq_sdk_receipt_verify(json, len, log_name, log_pk, origin, scratch, sizeof(scratch), &r),
                     LMQ_SDK_ERR_SIGNATURE);
    /* malformed JSON */
    const char *bad[] = {
        "", "{}", "[]", "{\"index\": 01, \"tree_size\": 1, \"record\": \"\", \"proof\": [], \"checkpoint\": \"\"}",
        "{\"index\": 0, \"index\": 0}", "{\"index\": 0, \"extra\": 1}",
        "{\"index\": 0, \"tree_size\": 1, \"record\": \"A\", \"proof\": [], \"checkpoint\": \"x\"}",
        "{\"index\": 99999999999999999999}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(lmq_sdk_receipt_verify(bad[i], strlen(bad[i]), log_name, log_pk, NULL, scratch,
                                                sizeof(scratch), &r),
                         LMQ_SDK_ERR_MALFORMED);
    /* verifier key strings from the broker's formatter */
    struct note_verifier nv;
    char vkey[NOTE_VKEY_MAX], name[64];
    uint8_t pk[32];
    assert_int_equal(note_verifier_init(&nv, log_name, log_pk), 0);
    ssize_t vl = note_verifier_format(&nv, vkey, sizeof(vkey));
    assert_true(vl > 0);
    assert_int_equal(lmq_sdk_vkey_parse(vkey, (size_t)vl, name, sizeof(name), pk), 0);
    assert_string_equal(name, log_name);
    assert_memory_equal(pk, log_pk, 32);
    vkey[strlen(log_name) + 3] ^= 1; /* key id digit */
    assert_int_equal(lmq_sdk_vkey_parse(vkey, (size_t)vl, name, sizeof(name), pk), LMQ_SDK_ERR_MALFORMED);
}

/* The example receipt of docs/FORMATS.md "Receipts" (written by the
 * broker's receipt_write, checkpoint signed by three node keys under the
 * origin's name) and the three verifier keys of "Ledger records". */
static const char doc_receipt[] =
    "{\"index\": 3, \"tree_size\": 5, \"record\": \"qAABAQECdXBsYW50MS9saW5lMy9wcmVzc3VyZQNKeyJ0IjoyMy41fQVqbWV0ZXItMDA0MgZqbWV0ZXItMDA0MgkbAAABm3baqAMKZm5vZGUtYQ==\", \"proof\": [\"x/iQydf2WaESWqO2cCs1I0PK9BkkgwBlAHzAU+nIURU=\", \"qNRP5ar5uhMr2sjM33ttDN231dINoNEkeADthE0eFJI=\", \"JpTduUxCxSmbTYhdufncJFFnoR4I/xXOAcofJ7qp7oQ=\"], \"checkpoint\": \"ledger.example/plant1\\n5\\nA+/AauYA88eby9Bh7t070JDFkJ7Qo5lzcsIwDnFIrF4=\\nblock 2 f2ea80ea42085c35adefb699e8a47fe3131de68eb462d1527f7dc0d4c84338f5\\n\\n— ledger.example/plant1 Qtq9tIHiv051p5Dqk4y9LRa/qKxLREgvGV2pYOQbcCQcMy0na7UT/J2WsYZFgtoy3j8lkb/icWnw2QuyE5Seur/qdAw=\\n— ledger.example/plant1 RQczFGHNwxgOQrMmVIPqiYdzO+ObVqWgVN1xEil9Fj577d06ffVpNR1rFRqvuU4yh1APZmCl0iFBohGHfrA5UMfERQ4=\\n— ledger.example/plant1 DobecudDjPVpE3EsJN1ffys+4V0saiQjAdDa6RemjIrT++rQng0hEKwVf8+1v8wrQz+2kHc/aRSohgIyFuzL5OlNLAI=\\n\"}";
static const char *const doc_vkeys[3] = {"ledger.example/plant1+42dabdb4+AYqI4910CfGV/VLbLTy6XXLKZwm/HZQSG/N0iAG0D29c", "ledger.example/plant1+45073314+AYE5dw6ofRdfVqNUZsNMfszLjYqRtO43ol32D1uPybOU", "ledger.example/plant1+0e86de72+Ae1JKMYo0cLG6ukDOJBZlWEpWSc6XGP5NjbBRhSshzfR"};

static void test_doc_receipt_quorum(void **state)
{
    (void)state;
    uint8_t pks[3][32], scratch[2048];
    char name[64];
    struct lmq_sdk_receipt r;
    size_t len = strlen(doc_receipt);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(lmq_sdk_vkey_parse(doc_vkeys[i], strlen(doc_vkeys[i]), name, sizeof(name), pks[i]), 0);
        assert_string_equal(name, "ledger.example/plant1");
    }
    assert_int_equal(lmq_sdk_receipt_verify_quorum(doc_receipt, len, name, (const uint8_t(*)[32])pks, 3, 3,
                                                   "ledger.example/plant1", scratch, sizeof(scratch), &r),
                     0);
    assert_int_equal(r.index, 3);
    assert_int_equal(r.tree_size, 5);
    assert_int_equal(lmq_sdk_receipt_verify(doc_receipt, len, name, pks[1], NULL, scratch, sizeof(scratch), &r), 0);
    /* two of three keys listed, quorum 2: fine; quorum 3 of 2 keys: bad args */
    assert_int_equal(lmq_sdk_receipt_verify_quorum(doc_receipt, len, name, (const uint8_t(*)[32])pks + 1, 2, 2,
                                                   NULL, scratch, sizeof(scratch), &r),
                     0);
    assert_int_equal(lmq_sdk_receipt_verify_quorum(doc_receipt, len, name, (const uint8_t(*)[32])pks, 2, 3, NULL,
                                                   scratch, sizeof(scratch), &r),
                     LMQ_SDK_ERR_ARGS);
    /* an unknown fourth key in the list does not help reach quorum 4 */
    uint8_t four[4][32];
    memcpy(four, pks, sizeof(pks));
    memset(four[3], 7, 32);
    assert_int_equal(lmq_sdk_receipt_verify_quorum(doc_receipt, len, name, (const uint8_t(*)[32])four, 4, 4, NULL,
                                                   scratch, sizeof(scratch), &r),
                     LMQ_SDK_ERR_UNSIGNED);
    assert_int_equal(lmq_sdk_receipt_verify_quorum(doc_receipt, len, name, (const uint8_t(*)[32])four, 4, 3, NULL,
                                                   scratch, sizeof(scratch), &r),
                     0);
    /* one key listed twice counts once: keys 0, 0, 1 reach quorum 2, not 3 */
    uint8_t twice[3][32];
    memcpy(twice[0], pks[0], 32);
    memcpy(twice[1], pks[0], 32);
    memcpy(twice[2], pks[1], 32);
    assert_int_equal(lmq_sdk_receipt_verify_quorum(doc_receipt, len, name, (const uint8_t(*)[32])twice, 3, 3, NULL,
                                                   scratch, sizeof(scratch), &r),
                     LMQ_SDK_ERR_UNSIGNED);
    assert_int_equal(lmq_sdk_receipt_verify_quorum(doc_receipt, len, name, (const uint8_t(*)[32])twice, 3, 2, NULL,
                                                   scratch, sizeof(scratch), &r),
                     0);
}

/* ---- the transparency-dev inclusion vectors, through the SDK verifier ---- */

static const char *jfind(const char *doc, const char *name)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\"", name);
    const char *p = strstr(doc, pat);
    assert_non_null(p);
    p = strchr(p + strlen(pat), ':');
    assert_non_null(p);
    p++;
    while (*p == ' ' || *p == '\n')
        p++;
    return p;
}

/* Decodes the base64 string at p (after its opening quote) into out;
 * returns the decoded length or -1; *next points past the closing quote. */
static long jb64(const char *p, uint8_t *out, size_t cap, const char **next)
{
    assert_true(*p == '"');
    const char *e = strchr(p + 1, '"');
    assert_non_null(e);
    *next = e + 1;
    return lmqsdk__b64_decode(p + 1, (size_t)(e - p - 1), out, cap);
}

static int sdk_inclusion_case(const char *doc)
{
    uint8_t root[64], leaf[64], proof[LMQ_SDK_MAX_PROOF + 8][32];
    const char *next;
    uint64_t idx = strtoull(jfind(doc, "leafIdx"), NULL, 10);
    uint64_t size = strtoull(jfind(doc, "treeSize"), NULL, 10);
    long rl = jb64(jfind(doc, "root"), root, sizeof(root), &next);
    long ll = jb64(jfind(doc, "leafHash"), leaf, sizeof(leaf), &next);
    const char *p = jfind(doc, "proof");
    size_t n = 0;
    bool bad_hash = rl != 32 || ll != 32;
    if (strncmp(p, "null", 4) != 0) {
        assert_true(*p == '[');
        p++;
        for (;;) {
            while (*p == ' ' || *p == '\n' || *p == ',')
                p++;
            if (*p == ']')
                break;
            uint8_t h[64];
            long hl = jb64(p, h, sizeof(h), &next);
            p = next;
            if (hl != 32 || n >= LMQ_SDK_MAX_PROOF) {
                bad_hash = true;
                continue;
            }
            memcpy(proof[n++], h, 32);
        }
    }
    if (bad_hash)
        return LMQ_SDK_ERR_PROOF;
    return lmq_sdk_verify_inclusion(idx, size, leaf, (const uint8_t(*)[32])proof, n, root);
}

static void walk_inclusion(const char *dir, int *happy, int *bad)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char path[1024];
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        if (S_ISDIR(st.st_mode)) {
            walk_inclusion(path, happy, bad);
            continue;
        }
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        static char doc[65536];
        size_t len = fread(doc, 1, sizeof(doc) - 1, f);
        fclose(f);
        doc[len] = '\0';
        bool want_err = strncmp(jfind(doc, "wantErr"), "true", 4) == 0;
        int rc = sdk_inclusion_case(doc);
        if (want_err != (rc != 0))
            fail_msg("%s: SDK verifier returned %d", path, rc);
        if (want_err)
            (*bad)++;
        else
            (*happy)++;
    }
    closedir(d);
}

static void test_inclusion_vectors(void **state)
{
    (void)state;
    int happy = 0, bad = 0;
    walk_inclusion(LMQ_TESTDATA_DIR "/merkle/inclusion", &happy, &bad);
    assert_true(happy >= 5);
    assert_true(bad >= 40);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_envelopes_interop),
        cmocka_unit_test(test_token_interop),
        cmocka_unit_test(test_receipts),
        cmocka_unit_test(test_inclusion_vectors),
        cmocka_unit_test(test_doc_receipt_quorum),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
