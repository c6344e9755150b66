/* Block headers: one per committed batch, hash-chained to the previous one
 * and named by the checkpoint signed for the batch ("block <height> <hex>"
 * extension line). The encoding is fixed-size big-endian so that any tool
 * can recompute a block hash; docs/FORMATS.md "Block headers" is the
 * normative description. Pure: no I/O, no allocation, any thread. */
#ifndef LMQ_LEDGER_BLOCK_H
#define LMQ_LEDGER_BLOCK_H

#include <stdint.h>

#define LEDGER_BLOCK_HEADER_LEN 112
#define LEDGER_BLOCK_MAGIC "LMB1"

struct ledger_block {
    uint64_t height;        /* 0 for the first block */
    uint8_t prev_hash[32];  /* hash of block height-1; zeros for height 0 */
    uint64_t first_index;   /* index of the block's first record */
    uint64_t count;         /* records in the block (>= 1) */
    uint64_t tree_size;     /* first_index + count */
    uint8_t root[32];       /* tree root at tree_size */
    uint64_t time_ms;       /* commit time, ms since the epoch */
    uint32_t signer_key_id; /* note key ID of the node that proposed (ordered) the
                               batch: the local node key unless a cluster passes
                               the leader's (ledger_append_batch_ex) */
    uint8_t hash[32];       /* decode/encode output: SHA-256(header bytes) */
};

/* Writes the 112-byte header of b into out and sets b->hash. */
void ledger_block_encode(struct ledger_block *b, uint8_t out[LEDGER_BLOCK_HEADER_LEN]);
/* Parses 112 header bytes (checks the magic and that tree_size ==
 * first_index + count without overflow) and sets b->hash. 0 or -EINVAL. */
int ledger_block_decode(const uint8_t in[LEDGER_BLOCK_HEADER_LEN], struct ledger_block *b);

#endif
