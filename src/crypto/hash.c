/* SHA-256 through OpenSSL EVP (one fetched EVP_MD, one reusable context per
 * thread, so the hot path neither fetches nor allocates), CRC-32C with a
 * hardware path, and the strict base64/hex codecs. Invariant: the base64
 * decoder accepts exactly one encoding per byte string. */
#include "crypto/hash.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define CRYPTO__HAVE_SSE42_PATH 1
#endif

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

/* ---- CRC-32C ---- */

static uint32_t crc__table[256];
static pthread_once_t crc__once = PTHREAD_ONCE_INIT;
static int crc__hw;

static void crc__init_once(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc__table[i] = c;
    }
#ifdef CRYPTO__HAVE_SSE42_PATH
    __builtin_cpu_init();
    crc__hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#endif
}

static uint32_t crc__sw(uint32_t c, const uint8_t *p, size_t len)
{
    while (len--)
        c = crc__table[(c ^ *p++) & 0xff] ^ (c >> 8);
    return c;
}

#ifdef CRYPTO__HAVE_SSE42_PATH
__attribute__((target("sse4.2"))) static uint32_t crc__hw32(uint32_t c, const uint8_t *p,
                                                            size_t len)
{
    uint64_t c64 = c;
    while (len > 0 && ((uintptr_t)p & 7) != 0) {
        c64 = _mm_crc32_u8((uint32_t)c64, *p++);
        len--;
    }
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c64 = _mm_crc32_u64(c64, v);
        p += 8;
        len -= 8;
    }
    while (len > 0) {
        c64 = _mm_crc32_u8((uint32_t)c64, *p++);
        len--;
    }
    return (uint32_t)c64;
}
#endif

uint32_t crypto_crc32c(uint32_t crc, const void *data, size_t len)
{
    pthread_once(&crc__once, crc__init_once);
    uint32_t c = ~crc;
#ifdef CRYPTO__HAVE_SSE42_PATH
    if (crc__hw)
        return ~crc__hw32(c, data, len);
#endif
    return ~crc__sw(c, data, len);
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

/* ---- UTF-8 ---- */

int crypto_utf8_next(const uint8_t *p, size_t len, uint32_t *cp)
{
    if (len == 0)
        return -1;
    uint8_t b = p[0];
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    int n;
    uint32_t c, min;
    if ((b & 0xe0) == 0xc0) {
        n = 2;
        c = b & 0x1f;
        min = 0x80;
    } else if ((b & 0xf0) == 0xe0) {
        n = 3;
        c = b & 0x0f;
        min = 0x800;
    } else if ((b & 0xf8) == 0xf0) {
        n = 4;
        c = b & 0x07;
        min = 0x10000;
    } else {
        return -1;
    }
    if (len < (size_t)n)
        return -1;
    for (int i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return -1;
        c = (c << 6) | (p[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return -1;
    *cp = c;
    return n;
}

int crypto_utf8_valid(const void *data, size_t len)
{
    const uint8_t *p = data;
    size_t i = 0;
    while (i < len) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        int n = crypto_utf8_next(p + i, len - i, &cp);
        if (n < 0)
            return 0;
        i += (size_t)n;
    }
    return 1;
}
