/* RFC 9162 §2.1 Merkle tree math over complete aligned subtrees. Every
 * subtree that the RFC's recursive definitions name is either complete
 * (2^k leaves starting at a multiple of 2^k) or a right-edge range [a, n)
 * whose start is aligned to the largest power of two not above its length;
 * such a range is a left-to-right run of at most 64 complete subtrees, so
 * roots and proofs need O(log n) get_node calls and no recomputation. */
#include "ledger/merkle.h"

#include <string.h>

#include "crypto/hash.h"

static const uint8_t merkle__empty_root[32] = {
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55};

void merkle_leaf_hash(const uint8_t *rec, size_t len, uint8_t out[32])
{
    static const uint8_t prefix = 0x00;
    const void *parts[2] = {&prefix, rec};
    size_t lens[2] = {1, len};
    crypto_sha256_parts(parts, lens, 2, out);
}

void merkle_node_hash(const uint8_t l[32], const uint8_t r[32], uint8_t out[32])
{
    uint8_t buf[65];
    buf[0] = 0x01;
    memcpy(buf + 1, l, 32);
    memcpy(buf + 33, r, 32);
    crypto_sha256(buf, sizeof buf, out);
}

/* Largest k with 2^k < n, for n >= 2. */
static unsigned merkle__split_level(uint64_t n)
{
    return 63u - (unsigned)__builtin_clzll(n - 1);
}

/* MTH(D[lo:hi]) for a range that is complete or right-edge (see above). */
static int merkle__range_hash(uint64_t lo, uint64_t hi, merkle_get_node_fn get, void *ctx,
                              uint8_t out[32])
{
    unsigned levels[64];
    uint64_t idx[64];
    size_t n = 0;
    if (lo >= hi)
        return MERKLE_ERR_ARGS;
    while (lo < hi) {
        uint64_t len = hi - lo;
        unsigned k = 63u - (unsigned)__builtin_clzll(len); /* largest 2^k <= len */
        if (lo != 0) {
            unsigned a = (unsigned)__builtin_ctzll(lo);
            if (a < k)
                k = a;
        }
        if (n == 64)
            return MERKLE_ERR_ARGS;
        levels[n] = k;
        idx[n] = lo >> k;
        n++;
        lo += (uint64_t)1 << k;
        if (lo == 0) /* wrapped: only possible for hi = 2^64 */
            break;
    }
    int rc = get(ctx, levels[n - 1], idx[n - 1], out);
    if (rc != 0)
        return rc;
    for (size_t i = n - 1; i-- > 0;) {
        uint8_t left[32];
        rc = get(ctx, levels[i], idx[i], left);
        if (rc != 0)
            return rc;
        merkle_node_hash(left, out, out);
    }
    return 0;
}

int merkle_root(uint64_t size, merkle_get_node_fn get, void *ctx, uint8_t out[32])
{
    if (out == NULL || get == NULL)
        return MERKLE_ERR_ARGS;
    if (size == 0) {
        memcpy(out, merkle__empty_root, 32);
        return 0;
    }
    return merkle__range_hash(0, size, get, ctx, out);
}

static void merkle__reverse(uint8_t proof[][32], size_t n)
{
    for (size_t i = 0, j = n; i + 1 < j; i++, j--) {
        uint8_t t[32];
        memcpy(t, proof[i], 32);
        memcpy(proof[i], proof[j - 1], 32);
        memcpy(proof[j - 1], t, 32);
    }
}

int merkle_inclusion_proof(uint64_t index, uint64_t size, merkle_get_node_fn get, void *ctx,
                           uint8_t proof[][32], size_t *n)
{
    if (index >= size || get == NULL || proof == NULL || n == NULL)
        return MERKLE_ERR_ARGS;
    uint64_t lo = 0, hi = size;
    size_t count = 0;
    /* Walk from the root down, collecting siblings top-down. */
    while (hi - lo > 1) {
        unsigned k = merkle__split_level(hi - lo);
        uint64_t mid = lo + ((uint64_t)1 << k);
        int rc;
        if (count == MERKLE_MAX_PROOF)
            return MERKLE_ERR_ARGS;
        if (index < mid) {
            rc = merkle__range_hash(mid, hi, get, ctx, proof[count]);
            hi = mid;
        } else {
            rc = get(ctx, k, lo >> k, proof[count]);
            lo = mid;
        }
        if (rc != 0)
            return rc;
        count++;
    }
    merkle__reverse(proof, count);
    *n = count;
    return 0;
}

int merkle_consistency_proof(uint64_t old_size, uint64_t new_size, merkle_get_node_fn get,
                             void *ctx, uint8_t proof[][32], size_t *n)
{
    if (old_size == 0 || old_size > new_size || get == NULL || proof == NULL || n == NULL)
        return MERKLE_ERR_ARGS;
    uint64_t lo = 0, hi = new_size;
    int complete_old = 1; /* the RFC's "b" */
    size_t count = 0;
    int rc;
    /* siblings are collected top-down into proof[], the terminal hash (if
     * any) is appended last; reversing gives the RFC's order. */
    while (old_size != hi) {
        unsigned k = merkle__split_level(hi - lo);
        uint64_t mid = lo + ((uint64_t)1 << k);
        if (count == MERKLE_MAX_PROOF)
            return MERKLE_ERR_ARGS;
        if (old_size <= mid) {
            rc = merkle__range_hash(mid, hi, get, ctx, proof[count]);
            hi = mid;
        } else {
            rc = get(ctx, k, lo >> k, proof[count]);
            lo = mid;
            complete_old = 0;
        }
        if (rc != 0)
            return rc;
        count++;
    }
    if (!complete_old) {
        if (count == MERKLE_MAX_PROOF)
            return MERKLE_ERR_ARGS;
        rc = merkle__range_hash(lo, hi, get, ctx, proof[count]);
        if (rc != 0)
            return rc;
        count++;
    }
    merkle__reverse(proof, count);
    *n = count;
    return 0;
}

int merkle_verify_inclusion(uint64_t index, uint64_t size, const uint8_t leaf_hash[32],
                            const uint8_t proof[][32], size_t n, const uint8_t root[32])
{
    if (index >= size || leaf_hash == NULL || root == NULL || (n > 0 && proof == NULL))
        return MERKLE_ERR_ARGS;
    if (n > MERKLE_MAX_PROOF)
        return MERKLE_ERR_PROOF_SIZE;
    uint64_t fn = index, sn = size - 1;
    uint8_t r[32];
    memcpy(r, leaf_hash, 32);
    for (size_t i = 0; i < n; i++) {
        if (sn == 0)
            return MERKLE_ERR_PROOF_SIZE;
        if ((fn & 1) || fn == sn) {
            merkle_node_hash(proof[i], r, r);
            if (!(fn & 1)) {
                while (!(fn & 1) && fn != 0) {
                    fn >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            merkle_node_hash(r, proof[i], r);
        }
        fn >>= 1;
        sn >>= 1;
    }
    if (sn != 0)
        return MERKLE_ERR_PROOF_SIZE;
    return crypto_memeq(r, root, 32) == 0 ? 0 : MERKLE_ERR_MISMATCH;
}

int merkle_verify_consistency(uint64_t old_size, uint64_t new_size, const uint8_t old_root[32],
                              const uint8_t new_root[32], const uint8_t proof[][32], size_t n)
{
    if (old_root == NULL || new_root == NULL || (n > 0 && proof == NULL))
        return MERKLE_ERR_ARGS;
    /* A proof from the empty tree proves nothing; callers that accept any
     * tree as an extension of the empty one decide so themselves. */
    if (old_size == 0 || old_size > new_size)
        return MERKLE_ERR_ARGS;
    if (n > MERKLE_MAX_PROOF)
        return MERKLE_ERR_PROOF_SIZE;
    if (old_size == new_size) {
        if (n != 0)
            return MERKLE_ERR_PROOF_SIZE;
        return crypto_memeq(old_root, new_root, 32) == 0 ? 0 : MERKLE_ERR_MISMATCH;
    }
    if (n == 0)
        return MERKLE_ERR_PROOF_SIZE;

    /* RFC 9162 §2.1.4.2 with the old root prepended when old_size is a power of two. */
    const uint8_t *first;
    size_t start;
    if ((old_size & (old_size - 1)) == 0) {
        first = old_root;
        start = 0;
    } else {
        first = proof[0];
        start = 1;
    }
    uint64_t fn = old_size - 1, sn = new_size - 1;
    while (fn & 1) {
        fn >>= 1;
        sn >>= 1;
    }
    uint8_t fr[32], sr[32];
    memcpy(fr, first, 32);
    memcpy(sr, first, 32);
    for (size_t i = start; i < n; i++) {
        const uint8_t *c = proof[i];
        if (sn == 0)
            return MERKLE_ERR_PROOF_SIZE;
        if ((fn & 1) || fn == sn) {
            merkle_node_hash(c, fr, fr);
            merkle_node_hash(c, sr, sr);
            while (!(fn & 1) && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        } else {
            merkle_node_hash(sr, c, sr);
        }
        fn >>= 1;
        sn >>= 1;
    }
    if (sn != 0)
        return MERKLE_ERR_PROOF_SIZE;
    if (crypto_memeq(fr, old_root, 32) != 0 || crypto_memeq(sr, new_root, 32) != 0)
        return MERKLE_ERR_MISMATCH;
    return 0;
}

/* ---- frontier ---- */

void merkle_frontier_init(struct merkle_frontier *f)
{
    memset(f, 0, sizeof *f);
}

int merkle_frontier_append(struct merkle_frontier *f, const uint8_t leaf_hash[32],
                           merkle_emit_fn emit, void *ctx)
{
    if (f->size == UINT64_MAX)
        return MERKLE_ERR_FULL;
    uint64_t pos = f->size;
    uint8_t carry[32];
    unsigned level = 0;
    memcpy(carry, leaf_hash, 32);
    if (emit != NULL)
        emit(ctx, 0, pos, carry);
    while (level < 63 && (pos >> level) & 1) {
        merkle_node_hash(f->hash[level], carry, carry);
        level++;
        if (emit != NULL)
            emit(ctx, level, pos >> level, carry);
    }
    memcpy(f->hash[level], carry, 32);
    f->size = pos + 1;
    return 0;
}

void merkle_frontier_root(const struct merkle_frontier *f, uint8_t out[32])
{
    if (f->size == 0) {
        memcpy(out, merkle__empty_root, 32);
        return;
    }
    unsigned k = (unsigned)__builtin_ctzll(f->size);
    uint8_t r[32];
    memcpy(r, f->hash[k], 32);
    for (k++; k < 64; k++) {
        if ((f->size >> k) & 1)
            merkle_node_hash(f->hash[k], r, r);
    }
    memcpy(out, r, 32);
}

int merkle_frontier_load(struct merkle_frontier *f, uint64_t size, merkle_get_node_fn get,
                         void *ctx)
{
    merkle_frontier_init(f);
    for (unsigned k = 0; k < 64; k++) {
        if ((size >> k) & 1) {
            int rc = get(ctx, k, (size >> k) - 1, f->hash[k]);
            if (rc != 0) {
                merkle_frontier_init(f);
                return rc;
            }
        }
    }
    f->size = size;
    return 0;
}

int merkle_frontier_get(const struct merkle_frontier *f, unsigned level, uint64_t index,
                        uint8_t out[32])
{
    if (level >= 64 || !((f->size >> level) & 1) || index != (f->size >> level) - 1)
        return MERKLE_ERR_ARGS;
    memcpy(out, f->hash[level], 32);
    return 0;
}
