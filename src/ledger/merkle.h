/* RFC 9162 §2.1 Merkle tree math: leaf and node hashes, tree roots,
 * inclusion and consistency proofs (generation and verification), and the
 * right-edge frontier that appenders keep in memory. Pure: storage supplies
 * complete subtree hashes through merkle_get_node_fn and persists the nodes
 * that merkle_frontier_append emits. No allocation; any thread (the
 * functions keep no state besides what the caller passes). */
#ifndef LMQ_LEDGER_MERKLE_H
#define LMQ_LEDGER_MERKLE_H

#include <stddef.h>
#include <stdint.h>

#define MERKLE_HASH_LEN 32
#define MERKLE_MAX_PROOF 64 /* hashes in any inclusion or consistency proof */

enum merkle_err {
    MERKLE_ERR_ARGS = -1000,       /* index/size out of range, NULL output */
    MERKLE_ERR_PROOF_SIZE = -1001, /* proof has the wrong number of hashes */
    MERKLE_ERR_MISMATCH = -1002,   /* recomputed root differs */
    MERKLE_ERR_FULL = -1003,       /* tree would exceed 2^64 - 1 leaves */
};

/* SHA-256(0x00 || rec) */
void merkle_leaf_hash(const uint8_t *rec, size_t len, uint8_t out[32]);
/* SHA-256(0x01 || l || r) */
void merkle_node_hash(const uint8_t l[32], const uint8_t r[32], uint8_t out[32]);

/* Returns in out the hash of the COMPLETE aligned subtree at (level,
 * index): level 0 = leaf hashes; node (level, i) covers leaves
 * [i << level, (i + 1) << level). Only ever asked for subtrees that lie
 * entirely inside the tree size passed to the calling function. Returns 0,
 * or a negative error that the caller propagates unchanged. */
typedef int (*merkle_get_node_fn)(void *ctx, unsigned level, uint64_t index, uint8_t out[32]);

/* MTH(D[0:size]) from at most 64 complete subtrees (size 0 -> SHA-256("")). */
int merkle_root(uint64_t size, merkle_get_node_fn get, void *ctx, uint8_t out[32]);

/* PATH(index, D[0:size]) of RFC 9162 §2.1.3.1, leaf sibling first. proof
 * must hold MERKLE_MAX_PROOF hashes; *n receives the count. At most
 * 2 * 64 get_node calls, no subtree is recomputed. */
int merkle_inclusion_proof(uint64_t index, uint64_t size, merkle_get_node_fn get, void *ctx,
                           uint8_t proof[][32], size_t *n);

/* PROOF(old_size, D[0:new_size]) of RFC 9162 §2.1.4.1, for
 * 0 < old_size <= new_size (old_size == new_size gives an empty proof). */
int merkle_consistency_proof(uint64_t old_size, uint64_t new_size, merkle_get_node_fn get,
                             void *ctx, uint8_t proof[][32], size_t *n);

/* ISO C before C23 does not convert uint8_t (*)[32] to const uint8_t (*)[32]
 * implicitly (-Wpedantic errors): pass a non-const proof array to the
 * verifiers below as MERKLE_CPROOF(proof). */
#define MERKLE_CPROOF(p) ((const uint8_t(*)[32])(p))

/* RFC 9162 §2.1.3.2. 0 if valid, MERKLE_ERR_* otherwise. */
int merkle_verify_inclusion(uint64_t index, uint64_t size, const uint8_t leaf_hash[32],
                            const uint8_t proof[][32], size_t n, const uint8_t root[32]);

/* RFC 9162 §2.1.4.2, plus: old_size == new_size needs an empty proof and
 * equal roots; old_size == 0 is always rejected (MERKLE_ERR_ARGS: a proof
 * from the empty tree is meaningless, every tree extends it; the caller
 * decides that case). 0 if valid, MERKLE_ERR_* otherwise. */
int merkle_verify_consistency(uint64_t old_size, uint64_t new_size, const uint8_t old_root[32],
                              const uint8_t new_root[32], const uint8_t proof[][32], size_t n);

/* The right edge of a tree: for every set bit k of size, the hash of the
 * complete subtree at level k that sits at that position (the compact
 * range [0, size)). Plain data: may be copied, saved, and restored. */
struct merkle_frontier {
    uint64_t size;
    uint8_t hash[64][32]; /* hash[k] valid iff bit k of size is set */
};

/* Called once per complete node that becomes known: the leaf itself
 * (level 0) and every parent completed by the append, lowest level first. */
typedef void (*merkle_emit_fn)(void *ctx, unsigned level, uint64_t index, const uint8_t hash[32]);

void merkle_frontier_init(struct merkle_frontier *f);
/* Appends one leaf hash (already SHA-256(0x00 || record)). emit may be
 * NULL. 0 or MERKLE_ERR_FULL. */
int merkle_frontier_append(struct merkle_frontier *f, const uint8_t leaf_hash[32],
                           merkle_emit_fn emit, void *ctx);
/* Root of the first f->size leaves (SHA-256("") when empty). */
void merkle_frontier_root(const struct merkle_frontier *f, uint8_t out[32]);
/* Rebuilds the frontier of a stored tree of the given size (<= 64 get calls). */
int merkle_frontier_load(struct merkle_frontier *f, uint64_t size, merkle_get_node_fn get,
                         void *ctx);
/* get_node over a frontier: answers only the nodes the frontier holds, and
 * MERKLE_ERR_ARGS for others. Handy to compose with storage lookups. */
int merkle_frontier_get(const struct merkle_frontier *f, unsigned level, uint64_t index,
                        uint8_t out[32]);

#endif
