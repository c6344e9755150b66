/* Block header encoding and hashing (docs/FORMATS.md "Block headers"). The
 * hash covers exactly the 112 encoded bytes, magic included, so a header
 * has one encoding and one hash. */
#include "ledger/block.h"

#include <errno.h>
#include <string.h>

#include "crypto/hash.h"

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

void ledger_block_encode(struct ledger_block *b, uint8_t out[LEDGER_BLOCK_HEADER_LEN])
{
    memcpy(out, LEDGER_BLOCK_MAGIC, 4);
    put_be64(out + 4, b->height);
    memcpy(out + 12, b->prev_hash, 32);
    put_be64(out + 44, b->first_index);
    put_be64(out + 52, b->count);
    put_be64(out + 60, b->tree_size);
    memcpy(out + 68, b->root, 32);
    put_be64(out + 100, b->time_ms);
    out[108] = (uint8_t)(b->signer_key_id >> 24);
    out[109] = (uint8_t)(b->signer_key_id >> 16);
    out[110] = (uint8_t)(b->signer_key_id >> 8);
    out[111] = (uint8_t)b->signer_key_id;
    crypto_sha256(out, LEDGER_BLOCK_HEADER_LEN, b->hash);
}

int ledger_block_decode(const uint8_t in[LEDGER_BLOCK_HEADER_LEN], struct ledger_block *b)
{
    if (memcmp(in, LEDGER_BLOCK_MAGIC, 4) != 0)
        return -EINVAL;
    b->height = get_be64(in + 4);
    memcpy(b->prev_hash, in + 12, 32);
    b->first_index = get_be64(in + 44);
    b->count = get_be64(in + 52);
    b->tree_size = get_be64(in + 60);
    memcpy(b->root, in + 68, 32);
    b->time_ms = get_be64(in + 100);
    b->signer_key_id = (uint32_t)in[108] << 24 | (uint32_t)in[109] << 16 | (uint32_t)in[110] << 8 |
                       (uint32_t)in[111];
    if (b->first_index + b->count < b->first_index || b->first_index + b->count != b->tree_size)
        return -EINVAL;
    crypto_sha256(in, LEDGER_BLOCK_HEADER_LEN, b->hash);
    return 0;
}
