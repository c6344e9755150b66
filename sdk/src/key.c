/* SDK keys and device ids (see ledgermq_sdk.h). */
#include "sdk_int.h"

#include <string.h>

#include <sodium.h>

int lmq_sdk_rng_system(void *ctx, uint8_t *buf, size_t len)
{
    (void)ctx;
    if (sodium_init() < 0)
        return -1;
    randombytes_buf(buf, len);
    return 0;
}

void lmq_sdk_device_id(const uint8_t pk[LMQ_SDK_PK_LEN], char out[LMQ_SDK_DEVICE_ID_LEN + 1])
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
    static const char domain[] = "ledgermq device v1";
    uint8_t h[32];
    size_t i;
    lmqsdk__sha256_2(domain, sizeof(domain) - 1, pk, LMQ_SDK_PK_LEN, h);
    out[0] = 'd';
    out[1] = '-';
    for (i = 0; i < 32; i++) {
        size_t bit = i * 5, byte = bit / 8, shift = bit % 8;
        unsigned v = (unsigned)h[byte] << 8 | (byte + 1 < 20 ? h[byte + 1] : 0u);
        out[2 + i] = alphabet[(v >> (11 - shift)) & 31];
    }
    out[LMQ_SDK_DEVICE_ID_LEN] = '\0';
}

int lmq_sdk_key_from_seed(struct lmq_sdk_key *key, const uint8_t seed[LMQ_SDK_SEED_LEN])
{
    if (key == NULL || seed == NULL)
        return LMQ_SDK_ERR_ARGS;
    if (sodium_init() < 0 || crypto_sign_ed25519_seed_keypair(key->pk, key->sk, seed) != 0)
        return LMQ_SDK_ERR_CRYPTO;
    lmq_sdk_device_id(key->pk, key->device_id);
    return 0;
}

int lmq_sdk_key_generate(struct lmq_sdk_key *key, lmq_sdk_rng_fn rng, void *rng_ctx)
{
    uint8_t seed[LMQ_SDK_SEED_LEN];
    int rc;
    if (key == NULL || rng == NULL)
        return LMQ_SDK_ERR_ARGS;
    if (rng(rng_ctx, seed, sizeof(seed)) != 0)
        return LMQ_SDK_ERR_RNG;
    rc = lmq_sdk_key_from_seed(key, seed);
    sodium_memzero(seed, sizeof(seed));
    return rc;
}

void lmq_sdk_key_seed(const struct lmq_sdk_key *key, uint8_t seed[LMQ_SDK_SEED_LEN])
{
    memcpy(seed, key->sk, LMQ_SDK_SEED_LEN);
}

void lmq_sdk_key_wipe(struct lmq_sdk_key *key)
{
    if (key != NULL)
        sodium_memzero(key, sizeof(*key));
}
