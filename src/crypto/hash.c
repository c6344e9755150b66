/* SHA-256 through OpenSSL EVP (one fetched EVP_MD, one reusable context per
 * thread, so the hot path neither fetches nor allocates) and the strict
 * base64/hex codecs. Invariant: the base64
 * decoder accepts exactly one encoding per byte string. */
#include "crypto/hash.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

static pthread_once_t sha__once = PTHREAD_ONCE_INIT;
static EVP_MD *sha__md;
static pthread_key_t sha__key;
static _Thread_local EVP_MD_CTX *sha__tls_ctx;

static void sha__free_ctx(void *p)
{
    EVP_MD_CTX_free(p);
}

static void sha__init_once(void)
{
    sha__md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (sha__md == NULL) {
        fprintf(stderr, "ledgermq: OpenSSL provides no SHA-256\n");
        abort();
    }
    if (pthread_key_create(&sha__key, sha__free_ctx) != 0)
        abort();
}

static EVP_MD_CTX *sha__ctx(void)
{
    pthread_once(&sha__once, sha__init_once);
    if (sha__tls_ctx == NULL) {
        sha__tls_ctx = EVP_MD_CTX_new();
        if (sha__tls_ctx == NULL) {
            fprintf(stderr, "ledgermq: out of memory for a SHA-256 context\n");
            abort();
        }
        /* The key's destructor frees the context when the thread exits. */
        pthread_setspecific(sha__key, sha__tls_ctx);
    }
    return sha__tls_ctx;
}

void crypto_sha256_parts(const void *const *parts, const size_t *lens, size_t n, uint8_t out[32])
{
    EVP_MD_CTX *c = sha__ctx();
    unsigned int olen = 0;
    if (EVP_DigestInit_ex2(c, sha__md, NULL) != 1)
        abort();
    for (size_t i = 0; i < n; i++) {
        if (lens[i] > 0 && EVP_DigestUpdate(c, parts[i], lens[i]) != 1)
            abort();
    }
    if (EVP_DigestFinal_ex(c, out, &olen) != 1 || olen != 32)
        abort();
}

void crypto_sha256(const void *data, size_t len, uint8_t out[32])
{
    const void *parts[1] = {data};
    size_t lens[1] = {len};
    crypto_sha256_parts(parts, lens, 1, out);
}

int crypto_sha256_init(crypto_sha256_ctx *c)
{
    pthread_once(&sha__once, sha__init_once);
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    c->md_ctx = NULL;
    if (m == NULL)
        return -ENOMEM;
    if (EVP_DigestInit_ex2(m, sha__md, NULL) != 1) {
        EVP_MD_CTX_free(m);
        return -ENOMEM;
    }
    c->md_ctx = m;
    return 0;
}

void crypto_sha256_update(crypto_sha256_ctx *c, const void *data, size_t len)
{
    if (len > 0 && EVP_DigestUpdate(c->md_ctx, data, len) != 1)
        abort();
}

void crypto_sha256_final(crypto_sha256_ctx *c, uint8_t out[32])
{
    unsigned int olen = 0;
    if (EVP_DigestFinal_ex(c->md_ctx, out, &olen) != 1 || olen != 32)
        abort();
    crypto_sha256_free(c);
}

void crypto_sha256_free(crypto_sha256_ctx *c)
{
    EVP_MD_CTX_free(c->md_ctx);
    c->md_ctx = NULL;
}

/* ---- base64 ---- */

static const char b64__alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64__val(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+')
        return 62;
    if (ch == '/')
        return 63;
    return -1;
}

ssize_t crypto_b64_encode(const void *in, size_t len, char *out, size_t cap)
{
    const uint8_t *p = in;
    if (len > ((size_t)SSIZE_MAX / 4) * 3 - 3)
        return -ENOSPC;
    size_t need = CRYPTO_B64_ENCODED_LEN(len);
    if (cap < need + 1)
        return -ENOSPC;
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = b64__alphabet[v >> 18];
        out[o++] = b64__alphabet[(v >> 12) & 63];
        out[o++] = b64__alphabet[(v >> 6) & 63];
        out[o++] = b64__alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = b64__alphabet[v >> 18];
        out[o++] = b64__alphabet[(v >> 12) & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[o++] = b64__alphabet[v >> 18];
        out[o++] = b64__alphabet[(v >> 12) & 63];
        out[o++] = b64__alphabet[(v >> 6) & 63];
        out[o++] = '=';
    }
    out[o] = '\0';
    return (ssize_t)o;
}

ssize_t crypto_b64_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
    if (len % 4 != 0)
        return -EINVAL;
    if (len == 0)
        return 0;
    size_t pad = 0;
    if (in[len - 1] == '=')
        pad = (in[len - 2] == '=') ? 2 : 1;
    size_t outlen = len / 4 * 3 - pad;
    if (outlen > cap)
        return -ENOSPC;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        size_t last = (i + 4 == len);
        for (int k = 0; k < 4; k++) {
            unsigned char ch = (unsigned char)in[i + (size_t)k];
            if (last && ch == '=' && (size_t)k >= 4 - pad) {
                v[k] = 0;
                continue;
            }
            v[k] = b64__val(ch);
            if (v[k] < 0)
                return -EINVAL;
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        if (last && pad == 2) {
            if (w & 0xffff)
                return -EINVAL; /* non-zero unused bits */
            out[o++] = (uint8_t)(w >> 16);
        } else if (last && pad == 1) {
            if (w & 0xff)
                return -EINVAL;
            out[o++] = (uint8_t)(w >> 16);
            out[o++] = (uint8_t)(w >> 8);
        } else {
            out[o++] = (uint8_t)(w >> 16);
            out[o++] = (uint8_t)(w >> 8);
            out[o++] = (uint8_t)w;
        }
    }
    return (ssize_t)o;
}

/* ---- hex ---- */

ssize_t crypto_hex_encode(const void *in, size_t len, char *out, size_t cap)
{
    static const char digits[] = "0123456789abcdef";
    const uint8_t *p = in;
    if (len > (size_t)SSIZE_MAX / 2 || cap < 2 * len + 1)
        return -ENOSPC;
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * len] = '\0';
    return (ssize_t)(2 * len);
}

static int hex__val(unsigned char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

ssize_t crypto_hex_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
    if (len % 2 != 0)
        return -EINVAL;
    if (len / 2 > cap)
        return -ENOSPC;
    for (size_t i = 0; i < len; i += 2) {
        int hi = hex__val((unsigned char)in[i]), lo = hex__val((unsigned char)in[i + 1]);
        if (hi < 0 || lo < 0)
            return -EINVAL;
        out[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    return (ssize_t)(len / 2);
}

int crypto_memeq(const void *a, const void *b, size_t n)
{
    const volatile uint8_t *x = a, *y = b;
    uint8_t d = 0;
    for (size_t i = 0; i < n; i++)
        d |= x[i] ^ y[i];
    return d != 0;
}
