/* SDK COSE_Sign1 envelopes and CWT tokens, built without allocation: the
 * Sig_structure is written into the output buffer, signed, and then
 * rearranged in place into the COSE_Sign1 (the payload moves 10 bytes
 * towards the front, the signature is appended). */
#include "sdk_int.h"

#include <string.h>

#include <sodium.h>

/* Encoded protected header {1: -8, 4: kid[, -65537: seq, -65538: time]}. */
static size_t lmqsdk__protected(uint8_t *buf, size_t cap, const char *kid, int with_seq,
                                uint64_t seq, uint64_t time_ms)
{
    struct lmqsdk__w w;
    lmqsdk__w_init(&w, buf, cap);
    lmqsdk__head(&w, 5, with_seq ? 4 : 2);
    lmqsdk__head(&w, 0, 1);
    lmqsdk__int(&w, LMQ_SDK_COSE_ALG_EDDSA);
    lmqsdk__head(&w, 0, 4);
    lmqsdk__bstr(&w, kid, strlen(kid));
    if (with_seq) {
        lmqsdk__int(&w, LMQ_SDK_HDR_DEVICE_SEQ);
        lmqsdk__head(&w, 0, seq);
        lmqsdk__int(&w, LMQ_SDK_HDR_DEVICE_TIME);
        lmqsdk__head(&w, 0, time_ms);
    }
    return w.err ? 0 : w.len;
}

/* Sig_structure prefix up to the payload bytes:
 * 84 6a "Signature1" bstr(prot) 40 head(payload). */
static size_t lmqsdk__tbs_prefix(uint8_t *out, size_t cap, const uint8_t *prot, size_t plen,
                                 size_t payload_len)
{
    struct lmqsdk__w w;
    lmqsdk__w_init(&w, out, cap);
    lmqsdk__head(&w, 4, 4);
    lmqsdk__tstr(&w, "Signature1", 10);
    lmqsdk__bstr(&w, prot, plen);
    lmqsdk__head(&w, 2, 0);
    lmqsdk__head(&w, 2, payload_len);
    return w.err ? 0 : w.len;
}

/* out[0:pre] holds the Sig_structure prefix and out[pre:pre+payload_len]
 * the payload: sign, then rewrite as d2 84 bstr(prot) a0 bstr(payload) sig. */
static int lmqsdk__finish(const struct lmq_sdk_key *key, const uint8_t *prot, size_t plen,
                          uint8_t *out, size_t cap, size_t pre, size_t payload_len, size_t *out_len)
{
    uint8_t sig[LMQ_SDK_SIG_LEN];
    struct lmqsdk__w w;
    size_t newpre;
    crypto_sign_ed25519_detached(sig, NULL, out, pre + payload_len, key->sk);
    newpre = 2 + lmqsdk__head_len(plen) + plen + 1 + lmqsdk__head_len(payload_len);
    if (cap < newpre + payload_len + 2 + LMQ_SDK_SIG_LEN)
        return LMQ_SDK_ERR_SPACE;
    /* The prologue shrinks (newpre = pre - 10), so payload bytes are not
     * overwritten before they are moved. */
    memmove(out + newpre, out + pre, payload_len);
    lmqsdk__w_init(&w, out, newpre);
    lmqsdk__head(&w, 6, LMQ_SDK_COSE_TAG_SIGN1);
    lmqsdk__head(&w, 4, 4);
    lmqsdk__bstr(&w, prot, plen);
    lmqsdk__head(&w, 5, 0);
    lmqsdk__head(&w, 2, payload_len);
    if (w.err || w.len != newpre)
        return LMQ_SDK_ERR_SPACE;
    lmqsdk__w_init(&w, out + newpre + payload_len, cap - newpre - payload_len);
    lmqsdk__bstr(&w, sig, sizeof(sig));
    if (w.err)
        return LMQ_SDK_ERR_SPACE;
    *out_len = newpre + payload_len + w.len;
    return 0;
}

int lmq_sdk_envelope_sign(const struct lmq_sdk_key *key, uint64_t seq, uint64_t time_ms,
                          const uint8_t *payload, size_t payload_len, uint8_t *out, size_t cap,
                          size_t *out_len)
{
    uint8_t prot[96];
    size_t plen, pre;
    if (key == NULL || out == NULL || out_len == NULL || (payload == NULL && payload_len > 0))
        return LMQ_SDK_ERR_ARGS;
    plen = lmqsdk__protected(prot, sizeof(prot), key->device_id, 1, seq, time_ms);
    if (plen == 0)
        return LMQ_SDK_ERR_ARGS;
    pre = lmqsdk__tbs_prefix(NULL, 0, prot, plen, payload_len);
    if (cap < pre || payload_len > cap - pre)
        return LMQ_SDK_ERR_SPACE;
    lmqsdk__tbs_prefix(out, cap, prot, plen, payload_len);
    if (payload_len > 0)
        memmove(out + pre, payload, payload_len);
    return lmqsdk__finish(key, prot, plen, out, cap, pre, payload_len, out_len);
}

int lmq_sdk_token_make(const struct lmq_sdk_key *key, const char *aud, int64_t iat, int64_t exp,
                       lmq_sdk_rng_fn rng, void *rng_ctx, uint8_t *out, size_t cap, size_t *out_len)
{
    uint8_t prot[64], cti[LMQ_SDK_CTI_LEN];
    size_t plen, pre, clen, id_len = LMQ_SDK_DEVICE_ID_LEN;
    struct lmqsdk__w w;
    int pass;
    if (key == NULL || aud == NULL || rng == NULL || out == NULL || out_len == NULL)
        return LMQ_SDK_ERR_ARGS;
    if (rng(rng_ctx, cti, sizeof(cti)) != 0)
        return LMQ_SDK_ERR_RNG;
    plen = lmqsdk__protected(prot, sizeof(prot), key->device_id, 0, 0, 0);
    if (plen == 0)
        return LMQ_SDK_ERR_ARGS;
    /* pass 0 counts the claims, pass 1 writes them after the prefix */
    clen = 0;
    pre = 0;
    for (pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            pre = lmqsdk__tbs_prefix(NULL, 0, prot, plen, clen);
            if (cap < pre || clen > cap - pre)
                return LMQ_SDK_ERR_SPACE;
        }
        lmqsdk__w_init(&w, pass ? out + pre : NULL, pass ? cap - pre : 0);
        lmqsdk__head(&w, 5, 6);
        lmqsdk__head(&w, 0, 1);
        lmqsdk__tstr(&w, key->device_id, id_len);
        lmqsdk__head(&w, 0, 2);
        lmqsdk__tstr(&w, key->device_id, id_len);
        lmqsdk__head(&w, 0, 3);
        lmqsdk__tstr(&w, aud, strlen(aud));
        lmqsdk__head(&w, 0, 4);
        lmqsdk__int(&w, exp);
        lmqsdk__head(&w, 0, 6);
        lmqsdk__int(&w, iat);
        lmqsdk__head(&w, 0, 7);
        lmqsdk__bstr(&w, cti, sizeof(cti));
        if (w.err)
            return LMQ_SDK_ERR_SPACE;
        clen = w.len;
    }
    lmqsdk__tbs_prefix(out, cap, prot, plen, clen);
    return lmqsdk__finish(key, prot, plen, out, cap, pre, clen, out_len);
}

int lmq_sdk_envelope_verify(const uint8_t *env, size_t len, const uint8_t pk[LMQ_SDK_PK_LEN],
                            uint8_t *scratch, size_t scratch_cap, struct lmq_sdk_envelope *out)
{
    const uint8_t *p = env, *end = env + len, *prot, *pend;
    const uint8_t *payload, *sig;
    unsigned major;
    uint64_t v, n, i, plen, payload_len;
    int has_alg = 0, has_seq = 0, has_time = 0;
    struct lmq_sdk_envelope e;
    struct lmqsdk__w w;

    if (env == NULL || pk == NULL || scratch == NULL || out == NULL)
        return LMQ_SDK_ERR_ARGS;
    memset(&e, 0, sizeof(e));
    if (lmqsdk__rhead(&p, end, &major, &v) != 0 || major != 6 || v != LMQ_SDK_COSE_TAG_SIGN1)
        return LMQ_SDK_ERR_MALFORMED;
    if (lmqsdk__rhead(&p, end, &major, &v) != 0 || major != 4 || v != 4)
        return LMQ_SDK_ERR_MALFORMED;
    if (lmqsdk__rhead(&p, end, &major, &plen) != 0 || major != 2 || plen > (uint64_t)(end - p))
        return LMQ_SDK_ERR_MALFORMED;
    prot = p;
    p += plen;
    {
        const uint8_t *q = p;
        if (lmqsdk__rhead(&q, end, &major, &v) != 0 || major != 5)
            return LMQ_SDK_ERR_MALFORMED;
        if (lmqsdk__skip(&p, end, 8) != 0)
            return LMQ_SDK_ERR_MALFORMED;
    }
    if (lmqsdk__rhead(&p, end, &major, &payload_len) != 0 || major != 2 ||
        payload_len > (uint64_t)(end - p))
        return LMQ_SDK_ERR_MALFORMED;
    payload = p;
    p += payload_len;
    if (lmqsdk__rhead(&p, end, &major, &v) != 0 || major != 2 || v != LMQ_SDK_SIG_LEN ||
        (size_t)(end - p) != LMQ_SDK_SIG_LEN)
        return LMQ_SDK_ERR_MALFORMED;
    sig = p;

    /* protected header */
    p = prot;
    pend = prot + plen;
    if (plen > 0) {
        if (lmqsdk__rhead(&p, pend, &major, &n) != 0 || major != 5)
            return LMQ_SDK_ERR_MALFORMED;
        for (i = 0; i < n; i++) {
            unsigned km;
            uint64_t kv;
            if (lmqsdk__rhead(&p, pend, &km, &kv) != 0)
                return LMQ_SDK_ERR_MALFORMED;
            if (km == 3) { /* text label: skip name and value */
                if (kv > (uint64_t)(pend - p))
                    return LMQ_SDK_ERR_MALFORMED;
                p += kv;
                if (lmqsdk__skip(&p, pend, 8) != 0)
                    return LMQ_SDK_ERR_MALFORMED;
                continue;
            }
            if (km > 1)
                return LMQ_SDK_ERR_MALFORMED;
            if (km == 0 && kv == 1) {
                if (lmqsdk__rhead(&p, pend, &major, &v) != 0)
                    return LMQ_SDK_ERR_MALFORMED;
                if (major != 1 || v != 7)
                    return LMQ_SDK_ERR_ALG;
                if (has_alg)
                    return LMQ_SDK_ERR_MALFORMED; /* duplicate label */
                has_alg = 1;
            } else if (km == 0 && kv == 4) {
                if (lmqsdk__rhead(&p, pend, &major, &v) != 0 || major != 2 ||
                    v > (uint64_t)(pend - p) || e.kid != NULL)
                    return LMQ_SDK_ERR_MALFORMED;
                e.kid = p;
                e.kid_len = (size_t)v;
                p += v;
            } else if (km == 1 && (kv == 65536 || kv == 65537)) {
                if (lmqsdk__rhead(&p, pend, &major, &v) != 0 || major != 0 ||
                    (kv == 65536 ? has_seq : has_time))
                    return LMQ_SDK_ERR_MALFORMED;
                if (kv == 65536) {
                    e.seq = v;
                    has_seq = 1;
                } else {
                    e.time_ms = v;
                    has_time = 1;
                }
            } else if (km == 0 && kv == 2) {
                return LMQ_SDK_ERR_ALG; /* crit: nothing critical is understood here */
            } else if (lmqsdk__skip(&p, pend, 8) != 0) {
                return LMQ_SDK_ERR_MALFORMED;
            }
        }
        if (p != pend)
            return LMQ_SDK_ERR_MALFORMED;
    }
    if (!has_alg || e.kid == NULL || !has_seq || !has_time)
        return LMQ_SDK_ERR_ALG;

    /* Sig_structure over the protected bytes as received */
    lmqsdk__w_init(&w, scratch, scratch_cap);
    lmqsdk__head(&w, 4, 4);
    lmqsdk__tstr(&w, "Signature1", 10);
    lmqsdk__bstr(&w, prot, (size_t)plen);
    lmqsdk__head(&w, 2, 0);
    lmqsdk__bstr(&w, payload, (size_t)payload_len);
    if (w.err)
        return LMQ_SDK_ERR_SPACE;
    if (crypto_sign_ed25519_verify_detached(sig, scratch, w.len, pk) != 0)
        return LMQ_SDK_ERR_SIGNATURE;
    e.payload = payload;
    e.payload_len = (size_t)payload_len;
    *out = e;
    return 0;
}
