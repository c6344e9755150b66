/* libFuzzer target: Ed25519 verification (crypto/ed25519_batch.c) against
 * libsodium. The first byte picks how the signature is made:
 *   0: public key, signature and message are the input's bytes as they are;
 *   1: a key from a 32-byte seed signs the message, then a 96-byte mask
 *      is XORed onto public key || signature (an all-zero mask: valid);
 *   2: as 1, but with R = [r]B + T, T of small order picked by a byte, and
 *      S = r + k a: valid under the cofactored equation only.
 * Invariants: ed25519_verify_one agrees with crypto_sign_verify_detached,
 * except that it may accept what libsodium rejects when R or the key is
 * not in the prime-order subgroup (the documented difference); and a batch
 * holding the signature among valid ones gives each item _one's verdict. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "crypto/ed25519_batch.h"
#include "crypto/sign.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define GOOD 2
static uint8_t good_pk[GOOD][32], good_sig[GOOD][64];
static const uint8_t good_msg[] = "a device envelope";
static int ready;

/* a point of order 8 (its multiples: every small-order point) */
static const uint8_t order8[32] = {0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b,
                                   0x76, 0x0d, 0x10, 0x67, 0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39,
                                   0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a};

static void init(void)
{
    if (crypto_init() != 0)
        abort();
    for (int i = 0; i < GOOD; i++) {
        uint8_t seed[32], sk[64];
        memset(seed, 0x21 + i, sizeof seed);
        crypto_sign_seed_keypair(good_pk[i], sk, seed);
        crypto_sign_detached(good_sig[i], NULL, good_msg, sizeof good_msg, sk);
    }
    ready = 1;
}

/* R = [r]B + [j]T, S = r + k a for the key of SEED: 0, or -1 if r is 0 */
static int sign_mixed(uint8_t sig[64], const uint8_t pk[32], const uint8_t seed[32],
                      const uint8_t *msg, size_t len, unsigned j)
{
    uint8_t h[64], a[32], r[32], rb[32], t[32], k[32];
    crypto_hash_sha512(h, seed, 32);
    h[0] &= 248;
    h[31] &= 127;
    h[31] |= 64;
    memset(h + 32, 0, 32);
    crypto_core_ed25519_scalar_reduce(a, h);
    crypto_hash_sha512(h, msg, len);
    crypto_core_ed25519_scalar_reduce(r, h);
    if (crypto_scalarmult_ed25519_base_noclamp(rb, r) != 0)
        return -1;
    memcpy(t, order8, 32);
    for (unsigned i = 1; i < (j & 7); i++) /* t = [j]T; [0]T stays T */
        if (crypto_core_ed25519_add(t, t, order8) != 0)
            return -1;
    if (crypto_core_ed25519_add(sig, rb, t) != 0)
        return -1;
    crypto_hash_sha512_state st;
    crypto_hash_sha512_init(&st);
    crypto_hash_sha512_update(&st, sig, 32);
    crypto_hash_sha512_update(&st, pk, 32);
    crypto_hash_sha512_update(&st, msg, len);
    crypto_hash_sha512_final(&st, h);
    crypto_core_ed25519_scalar_reduce(k, h);
    crypto_core_ed25519_scalar_mul(sig + 32, k, a);
    crypto_core_ed25519_scalar_add(sig + 32, sig + 32, r);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ready)
        init();
    if (size < 1)
        return 0;
    uint8_t mode = data[0] % 3, pk[32], sig[64];
    const uint8_t *msg;
    size_t len;
    if (mode == 0) {
        if (size < 1 + 96)
            return 0;
        memcpy(pk, data + 1, 32);
        memcpy(sig, data + 33, 64);
        msg = data + 97;
        len = size - 97;
    } else {
        if (size < 1 + 32 + 96 + 1)
            return 0;
        const uint8_t *seed = data + 1, *mask = data + 33;
        uint8_t sk[64];
        msg = data + 129 + 1;
        len = size - 130;
        crypto_sign_seed_keypair(pk, sk, seed);
        if (mode == 1)
            crypto_sign_detached(sig, NULL, msg, len, sk);
        else if (sign_mixed(sig, pk, seed, msg, len, data[129]) != 0)
            return 0;
        for (int i = 0; i < 32; i++)
            pk[i] ^= mask[i];
        for (int i = 0; i < 64; i++)
            sig[i] ^= mask[32 + i];
    }

    int ours = ed25519_verify_one(sig, msg, len, pk) == 0;
    int theirs = crypto_sign_verify_detached(sig, msg, len, pk) == 0;
    if (ours != theirs && (theirs || (crypto_core_ed25519_is_valid_point(sig) &&
                                      crypto_core_ed25519_is_valid_point(pk))))
        abort(); /* a difference other than the documented one */

    struct ed25519_batch_item items[4] = {
        {pk, sig, msg, len},
        {good_pk[0], good_sig[0], good_msg, sizeof good_msg},
        {good_pk[1], good_sig[1], good_msg, sizeof good_msg},
        {pk, sig, msg, len},
    };
    uint8_t ok[4];
    size_t n = ed25519_verify_batch(items, 4, ok);
    if (ok[0] != ours || ok[1] != 1 || ok[2] != 1 || ok[3] != ours || n != 2 + 2 * (size_t)ours)
        abort(); /* a batch verdict that is not _one's */
    if (ed25519_verify_batch(items, 1, ok) != (size_t)ours || ok[0] != ours)
        abort();
    return 0;
}
