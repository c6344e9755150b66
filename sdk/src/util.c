/* SDK internals: CBOR writer/reader, base64, SHA-256 (see sdk_int.h). */
#include "sdk_int.h"

#include <string.h>

#include <sodium.h>

const char *lmq_sdk_strerror(int err)
{
    switch (err) {
    case LMQ_SDK_OK: return "ok";
    case LMQ_SDK_ERR_ARGS: return "invalid argument";
    case LMQ_SDK_ERR_SPACE: return "buffer too small";
    case LMQ_SDK_ERR_RNG: return "random number generator failed";
    case LMQ_SDK_ERR_CRYPTO: return "crypto library failure";
    case LMQ_SDK_ERR_MALFORMED: return "malformed input";
    case LMQ_SDK_ERR_ALG: return "unsupported algorithm or missing header";
    case LMQ_SDK_ERR_SIGNATURE: return "signature does not verify";
    case LMQ_SDK_ERR_UNSIGNED: return "checkpoint not signed by the log key";
    case LMQ_SDK_ERR_SIZE: return "tree size or index mismatch";
    case LMQ_SDK_ERR_PROOF: return "inclusion proof does not verify";
    case LMQ_SDK_ERR_ORIGIN: return "checkpoint origin mismatch";
    default: return "unknown error";
    }
}

int lmq_sdk_init(void)
{
    return sodium_init() < 0 ? LMQ_SDK_ERR_CRYPTO : 0;
}

void lmqsdk__w_init(struct lmqsdk__w *w, uint8_t *buf, size_t cap)
{
    w->buf = buf;
    w->cap = cap;
    w->len = 0;
    w->err = 0;
}

void lmqsdk__raw(struct lmqsdk__w *w, const void *p, size_t n)
{
    if (w->buf != NULL) {
        if (w->err != 0 || n > w->cap - w->len) {
            w->err = LMQ_SDK_ERR_SPACE;
            return;
        }
        if (n > 0)
            memmove(w->buf + w->len, p, n);
    }
    w->len += n;
}

size_t lmqsdk__head_len(uint64_t v)
{
    return v < 24 ? 1 : v <= 0xff ? 2 : v <= 0xffff ? 3 : v <= 0xffffffffu ? 5 : 9;
}

void lmqsdk__head(struct lmqsdk__w *w, unsigned major, uint64_t v)
{
    uint8_t h[9];
    size_t n = lmqsdk__head_len(v), i;
    unsigned ai = n == 1 ? (unsigned)v : n == 2 ? 24 : n == 3 ? 25 : n == 5 ? 26 : 27;
    h[0] = (uint8_t)(major << 5 | ai);
    for (i = 1; i < n; i++)
        h[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
    lmqsdk__raw(w, h, n);
}

void lmqsdk__int(struct lmqsdk__w *w, int64_t v)
{
    if (v >= 0)
        lmqsdk__head(w, 0, (uint64_t)v);
    else
        lmqsdk__head(w, 1, (uint64_t)(-(v + 1)));
}

void lmqsdk__bstr(struct lmqsdk__w *w, const void *p, size_t n)
{
    lmqsdk__head(w, 2, n);
    lmqsdk__raw(w, p, n);
}

void lmqsdk__tstr(struct lmqsdk__w *w, const char *p, size_t n)
{
    lmqsdk__head(w, 3, n);
    lmqsdk__raw(w, p, n);
}

int lmqsdk__rhead(const uint8_t **pp, const uint8_t *end, unsigned *major, uint64_t *v)
{
    const uint8_t *p = *pp;
    unsigned ai, n, i;
    if (p >= end)
        return -1;
    *major = p[0] >> 5;
    ai = p[0] & 31;
    p++;
    if (ai < 24) {
        *v = ai;
    } else if (ai <= 27) {
        n = 1u << (ai - 24);
        if ((size_t)(end - p) < n)
            return -1;
        *v = 0;
        for (i = 0; i < n; i++)
            *v = *v << 8 | p[i];
        p += n;
    } else {
        return -1; /* reserved or indefinite */
    }
    *pp = p;
    return 0;
}

int lmqsdk__skip(const uint8_t **pp, const uint8_t *end, unsigned depth)
{
    unsigned major;
    uint64_t v, i;
    const uint8_t *p = *pp;
    if (lmqsdk__rhead(&p, end, &major, &v) != 0)
        return -1;
    switch (major) {
    case 0:
    case 1:
    case 7: break;
    case 2:
    case 3:
        if (v > (uint64_t)(end - p))
            return -1;
        p += v;
        break;
    case 4:
    case 5:
        if (depth == 0 || v > (uint64_t)(end - p))
            return -1;
        if (major == 5)
            v *= 2;
        for (i = 0; i < v; i++)
            if (lmqsdk__skip(&p, end, depth - 1) != 0)
                return -1;
        break;
    default: /* tag */
        if (depth == 0 || lmqsdk__skip(&p, end, depth - 1) != 0)
            return -1;
        break;
    }
    *pp = p;
    return 0;
}

static int lmqsdk__b64v(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

long lmqsdk__b64_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
    size_t i, o = 0;
    if (len % 4 != 0)
        return -1;
    for (i = 0; i < len; i += 4) {
        int v[4], k, pad = 0;
        for (k = 0; k < 4; k++) {
            char c = in[i + (size_t)k];
            if (c == '=' && i + 4 == len && k >= 2) {
                v[k] = 0;
                pad++;
                continue;
            }
            if (pad > 0)
                return -1;
            v[k] = lmqsdk__b64v(c);
            if (v[k] < 0)
                return -1;
        }
        if (pad == 2 && (v[1] & 15) != 0)
            return -1;
        if (pad == 1 && (v[2] & 3) != 0)
            return -1;
        if (cap - o < (size_t)(3 - pad) || o > cap)
            return -1;
        /* read all four before writing: safe for out == in */
        uint32_t t = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[o++] = (uint8_t)(t >> 16);
        if (pad < 2)
            out[o++] = (uint8_t)(t >> 8);
        if (pad < 1)
            out[o++] = (uint8_t)t;
    }
    return (long)o;
}

void lmqsdk__sha256_2(const void *a, size_t alen, const void *b, size_t blen, uint8_t out[32])
{
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, (const unsigned char *)a, alen);
    if (blen > 0)
        crypto_hash_sha256_update(&st, (const unsigned char *)b, blen);
    crypto_hash_sha256_final(&st, out);
}
