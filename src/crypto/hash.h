/* Hashing and byte-encoding primitives: SHA-256 (OpenSSL EVP, which uses
 * SHA-NI where the CPU has it), CRC-32C (SSE4.2 when available), strict
 * base64 (RFC 4648 §4, standard alphabet, padded) and lowercase hex.
 * All functions are pure (no I/O), allocation-free except the streaming
 * SHA-256 context, and safe to call from any thread. */
#ifndef LMQ_CRYPTO_HASH_H
#define LMQ_CRYPTO_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CRYPTO_SHA256_LEN 32

/* out = SHA-256(data[0:len]). Any thread. Aborts the process only if
 * OpenSSL cannot provide SHA-256 at all (a broken installation). */
void crypto_sha256(const void *data, size_t len, uint8_t out[32]);

/* out = SHA-256(parts[0] || parts[1] || ... ) without copying; n <= 8. */
void crypto_sha256_parts(const void *const *parts, const size_t *lens, size_t n, uint8_t out[32]);

/* Streaming SHA-256. The struct lives on the caller's stack; _init
 * allocates the EVP context, _final and _free release it (call _free only
 * if _final is not reached). Not shared between threads. */
typedef struct crypto_sha256_ctx {
    void *md_ctx; /* EVP_MD_CTX * */
} crypto_sha256_ctx;
int crypto_sha256_init(crypto_sha256_ctx *c); /* 0 or -ENOMEM */
void crypto_sha256_update(crypto_sha256_ctx *c, const void *data, size_t len);
void crypto_sha256_final(crypto_sha256_ctx *c, uint8_t out[32]); /* also frees */
void crypto_sha256_free(crypto_sha256_ctx *c);

/* Base64, RFC 4648 §4, standard alphabet with '=' padding. */
#define CRYPTO_B64_ENCODED_LEN(n) ((((size_t)(n) + 2) / 3) * 4)
#define CRYPTO_B64_DECODED_MAX(n) ((((size_t)(n)) / 4) * 3)
/* Writes the encoding of in[0:len] and a terminating NUL into out.
 * Returns the encoded length (without NUL), or -ENOSPC if
 * cap < CRYPTO_B64_ENCODED_LEN(len) + 1. */
ssize_t crypto_b64_encode(const void *in, size_t len, char *out, size_t cap);
/* Strict decode of in[0:len]: length a multiple of 4, only the standard
 * alphabet, '=' only as final padding, unused trailing bits zero (so every
 * byte string has exactly one accepted encoding). Returns the decoded
 * length, -EINVAL on malformed input, -ENOSPC if out is too small. */
ssize_t crypto_b64_decode(const char *in, size_t len, uint8_t *out, size_t cap);

/* Lowercase hex. encode writes 2*len chars + NUL; returns 2*len or -ENOSPC. */
ssize_t crypto_hex_encode(const void *in, size_t len, char *out, size_t cap);
/* Accepts upper and lower case; odd length or non-hex -> -EINVAL; returns
 * bytes written or -ENOSPC. */
ssize_t crypto_hex_decode(const char *in, size_t len, uint8_t *out, size_t cap);

/* Constant-time comparison of n bytes: 0 if equal. */
int crypto_memeq(const void *a, const void *b, size_t n);

#endif
