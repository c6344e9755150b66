/* Ed25519 verification of many signatures at once (RFC 8032 §5.1.7 with
 * the cofactored equation [8][S]B = [8]R + [8][k]A, which §5.1.7 names as
 * sufficient), for the broker's signed ledgered topics: one device
 * envelope per message, one verify each is the throughput limit.
 *
 * Acceptance is the same whether a signature is checked alone
 * (ed25519_verify_one) or in a batch of any size and composition
 * (ed25519_verify_batch): a batch that does not verify as a whole is split
 * and each signature judged alone, so a node's verdict on a signature never
 * depends on what else was in its batch. Both reject, before any curve
 * arithmetic: S not below the group order L, a public key or R that is not
 * a canonical encoding of a curve point, a public key or R of small order
 * (libsodium rejects both too).
 *
 * The one intentional difference from libsodium's crypto_sign_verify_detached
 * (cofactorless: it checks [S]B - [k]A == R exactly): a signature whose R, or
 * whose public key, is a point of mixed order (a prime-order point plus a
 * nonzero small-order one) can hold under the cofactored equation, which
 * ignores small-order parts, while failing libsodium's. Honest signers never
 * produce such R or keys (R = [r]B, A = [a]B); a batch equation can only be
 * made independent of the batch with the cofactored form, so we accept them.
 *
 * Thread-safe, no allocation beyond the caller's arrays (the batch works
 * on the stack, about 210 KiB of it, for up to ED25519_BATCH_MAX items;
 * larger batches are cut). Items signed by the same key cost much less
 * than items with distinct keys (the key is decoded once per batch and its
 * terms merge), so a caller gains by batching a busy device's messages.
 * Verification of public data: variable-time arithmetic is fine here. */
#ifndef LMQ_CRYPTO_ED25519_BATCH_H
#define LMQ_CRYPTO_ED25519_BATCH_H

#include <stddef.h>
#include <stdint.h>

#define ED25519_BATCH_MAX 64

struct ed25519_batch_item {
    const uint8_t *pk;  /* 32 bytes */
    const uint8_t *sig; /* 64 bytes: R || S */
    const uint8_t *msg; /* the signed bytes (for COSE: the Sig_structure) */
    size_t msg_len;
};

/* 0 if sig is valid for msg under pk by the rules above, -EBADMSG if not. */
int ed25519_verify_one(const uint8_t sig[64], const void *msg, size_t len, const uint8_t pk[32]);

/* 0 if p is the canonical encoding of a curve point not of small order
 * (what a public key must be here), -EINVAL if it is not a canonical
 * encoding of a curve point (y not below 2^255 - 19, no x for y, or x = 0
 * with the sign bit set), -ERANGE if the point has small order. A device
 * key that fails this can never verify. Any thread. */
int ed25519_point_check(const uint8_t p[32]);

/* Verifies items[0..n): ok[i] = 1 if item i is valid, 0 if not. Returns
 * the number of valid items. n may be any size (processed in batches of
 * ED25519_BATCH_MAX). */
size_t ed25519_verify_batch(const struct ed25519_batch_item *items, size_t n, uint8_t *ok);

#endif
