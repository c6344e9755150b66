/* Device id derivation (see device_id.h). */
#include "identity/device_id.h"

#include <string.h>

#include "crypto/hash.h"

static const char device__b32[] = "abcdefghijklmnopqrstuvwxyz234567";

void device_id_from_pk(const uint8_t pk[32], char out[DEVICE_ID_LEN + 1])
{
    const void *parts[2] = {DEVICE_ID_DOMAIN, pk};
    const size_t lens[2] = {sizeof(DEVICE_ID_DOMAIN) - 1, 32};
    uint8_t h[CRYPTO_SHA256_LEN];
    crypto_sha256_parts(parts, lens, 2, h);
    out[0] = 'd';
    out[1] = '-';
    /* 20 bytes = 160 bits = 32 groups of 5 bits, no padding needed. */
    for (size_t i = 0; i < 32; i++) {
        size_t bit = i * 5, byte = bit / 8, shift = bit % 8;
        unsigned v = (unsigned)h[byte] << 8 | (byte + 1 < 20 ? h[byte + 1] : 0);
        out[2 + i] = device__b32[(v >> (11 - shift)) & 31];
    }
    out[DEVICE_ID_LEN] = '\0';
}

int device_id_valid(const char *id, size_t len)
{
    if (id == NULL || len != DEVICE_ID_LEN || id[0] != 'd' || id[1] != '-')
        return 0;
    for (size_t i = 2; i < len; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '2' && c <= '7')))
            return 0;
    }
    /* The last character carries the final 5 bits of byte 19: any value is
     * possible, so no trailing-bit rule applies. */
    return 1;
}

int device_id_matches(const char *id, size_t len, const uint8_t pk[32])
{
    char want[DEVICE_ID_LEN + 1];
    if (!device_id_valid(id, len))
        return 0;
    device_id_from_pk(pk, want);
    return crypto_memeq(want, id, DEVICE_ID_LEN) == 0;
}
