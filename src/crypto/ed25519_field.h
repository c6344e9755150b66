/* Arithmetic in GF(2^255 - 19) for crypto/ed25519_batch.c (private to the
 * crypto module): five 51-bit limbs, products in unsigned __int128,
 * variable time (only public data is verified with it).
 *
 * Limb bounds, the invariant every function keeps: fe_mul and fe_sq
 * return limbs below 2^51 + 2^15 ("reduced"); fe_add and fe_sub do not
 * carry: fe_add returns the plain sum, fe_sub f + 4p - g, which needs g
 * below 2^53 - 76 and, for f below 2^53, is below 2^54. fe_mul and fe_sq
 * accept limbs below 2^54; fe_tobytes any limbs. So a product may take
 * sums and differences of reduced values, and a difference may take a sum
 * of two reduced values as minuend, never a difference as subtrahend. */
#ifndef LMQ_CRYPTO_ED25519_FIELD_H
#define LMQ_CRYPTO_ED25519_FIELD_H

#include <stdint.h>
#include <string.h>

__extension__ typedef unsigned __int128 fe__u128;

typedef struct {
    uint64_t v[5];
} fe;

#define FE__MASK ((UINT64_C(1) << 51) - 1)

/* the hot products: inlined into the point formulas */
#define FE__HOT static inline __attribute__((always_inline))

static inline void fe_set_small(fe *h, uint64_t x)
{
    h->v[0] = x;
    h->v[1] = h->v[2] = h->v[3] = h->v[4] = 0;
}

static inline void fe_add(fe *h, const fe *f, const fe *g)
{
    for (int i = 0; i < 5; i++)
        h->v[i] = f->v[i] + g->v[i];
}

/* Propagates carries from limb 0 up to limb 4 (which keeps its own). */
static inline void fe__propagate(uint64_t t[5])
{
    for (int i = 0; i < 4; i++) {
        t[i + 1] += t[i] >> 51;
        t[i] &= FE__MASK;
    }
}

/* Propagates carries so every limb is below 2^51 + 2^15 (the top carry
 * wraps around times 19). */
static inline void fe__carry(uint64_t t[5])
{
    fe__propagate(t);
    t[0] += 19 * (t[4] >> 51);
    t[4] &= FE__MASK;
}

/* h = f - g, computed as f + 4p - g so no limb goes negative. */
static inline void fe_sub(fe *h, const fe *f, const fe *g)
{
    h->v[0] = f->v[0] + (UINT64_C(1) << 53) - 76 - g->v[0];
    for (int i = 1; i < 5; i++)
        h->v[i] = f->v[i] + (UINT64_C(1) << 53) - 4 - g->v[i];
}

/* h = -f, reduced (so it may be stored as a point coordinate) */
static inline void fe_neg(fe *h, const fe *f)
{
    fe zero;
    fe_set_small(&zero, 0);
    fe_sub(h, &zero, f);
    fe__carry(h->v);
}

/* Reduces the five 128-bit column sums of a product to limbs. */
FE__HOT void fe__reduce_wide(fe *h, fe__u128 r0, fe__u128 r1, fe__u128 r2, fe__u128 r3, fe__u128 r4)
{
    r1 += (uint64_t)(r0 >> 51);
    r2 += (uint64_t)(r1 >> 51);
    r3 += (uint64_t)(r2 >> 51);
    r4 += (uint64_t)(r3 >> 51);
    uint64_t h0 = ((uint64_t)r0 & FE__MASK) + 19 * (uint64_t)(r4 >> 51);
    uint64_t h1 = ((uint64_t)r1 & FE__MASK) + (h0 >> 51);
    h->v[0] = h0 & FE__MASK;
    h->v[1] = h1;
    h->v[2] = (uint64_t)r2 & FE__MASK;
    h->v[3] = (uint64_t)r3 & FE__MASK;
    h->v[4] = (uint64_t)r4 & FE__MASK;
}

FE__HOT void fe_mul(fe *h, const fe *f, const fe *g)
{
    const uint64_t f0 = f->v[0], f1 = f->v[1], f2 = f->v[2], f3 = f->v[3], f4 = f->v[4];
    const uint64_t g0 = g->v[0], g1 = g->v[1], g2 = g->v[2], g3 = g->v[3], g4 = g->v[4];
    const uint64_t g1_19 = 19 * g1, g2_19 = 19 * g2, g3_19 = 19 * g3, g4_19 = 19 * g4;
    fe__u128 r0 = (fe__u128)f0 * g0 + (fe__u128)f1 * g4_19 + (fe__u128)f2 * g3_19 +
                  (fe__u128)f3 * g2_19 + (fe__u128)f4 * g1_19;
    fe__u128 r1 = (fe__u128)f0 * g1 + (fe__u128)f1 * g0 + (fe__u128)f2 * g4_19 +
                  (fe__u128)f3 * g3_19 + (fe__u128)f4 * g2_19;
    fe__u128 r2 = (fe__u128)f0 * g2 + (fe__u128)f1 * g1 + (fe__u128)f2 * g0 + (fe__u128)f3 * g4_19 +
                  (fe__u128)f4 * g3_19;
    fe__u128 r3 = (fe__u128)f0 * g3 + (fe__u128)f1 * g2 + (fe__u128)f2 * g1 + (fe__u128)f3 * g0 +
                  (fe__u128)f4 * g4_19;
    fe__u128 r4 = (fe__u128)f0 * g4 + (fe__u128)f1 * g3 + (fe__u128)f2 * g2 + (fe__u128)f3 * g1 +
                  (fe__u128)f4 * g0;
    fe__reduce_wide(h, r0, r1, r2, r3, r4);
}

FE__HOT void fe_sq(fe *h, const fe *f)
{
    const uint64_t f0 = f->v[0], f1 = f->v[1], f2 = f->v[2], f3 = f->v[3], f4 = f->v[4];
    const uint64_t f0_2 = 2 * f0, f1_2 = 2 * f1;
    const uint64_t f3_19 = 19 * f3, f4_19 = 19 * f4;
    fe__u128 r0 = (fe__u128)f0 * f0 + (fe__u128)(2 * f1) * f4_19 + (fe__u128)(2 * f2) * f3_19;
    fe__u128 r1 = (fe__u128)f0_2 * f1 + (fe__u128)(2 * f2) * f4_19 + (fe__u128)f3 * f3_19;
    fe__u128 r2 = (fe__u128)f0_2 * f2 + (fe__u128)f1 * f1 + (fe__u128)(2 * f3) * f4_19;
    fe__u128 r3 = (fe__u128)f0_2 * f3 + (fe__u128)f1_2 * f2 + (fe__u128)f4 * f4_19;
    fe__u128 r4 = (fe__u128)f0_2 * f4 + (fe__u128)f1_2 * f3 + (fe__u128)f2 * f2;
    fe__reduce_wide(h, r0, r1, r2, r3, r4);
}

/* h = f^(2^n), n >= 1 */
static inline void fe_sqn(fe *h, const fe *f, int n)
{
    fe_sq(h, f);
    while (--n > 0)
        fe_sq(h, h);
}

/* Sets *z_250 = f^(2^250 - 1) and *z_11 = f^11: the common start of the
 * inversion and square-root exponents. */
static inline void fe__pow_2_250_1(fe *z_250, fe *z_11, const fe *f)
{
    fe z2, z9, t, z_5, z_10, z_20, z_50, z_100;
    fe_sq(&z2, f);
    fe_sqn(&t, &z2, 2);
    fe_mul(&z9, &t, f);
    fe_mul(z_11, &z9, &z2);
    fe_sq(&t, z_11);
    fe_mul(&z_5, &t, &z9); /* 2^5 - 1 */
    fe_sqn(&t, &z_5, 5);
    fe_mul(&z_10, &t, &z_5); /* 2^10 - 1 */
    fe_sqn(&t, &z_10, 10);
    fe_mul(&z_20, &t, &z_10); /* 2^20 - 1 */
    fe_sqn(&t, &z_20, 20);
    fe_mul(&t, &t, &z_20); /* 2^40 - 1 */
    fe_sqn(&t, &t, 10);
    fe_mul(&z_50, &t, &z_10); /* 2^50 - 1 */
    fe_sqn(&t, &z_50, 50);
    fe_mul(&z_100, &t, &z_50); /* 2^100 - 1 */
    fe_sqn(&t, &z_100, 100);
    fe_mul(&t, &t, &z_100); /* 2^200 - 1 */
    fe_sqn(&t, &t, 50);
    fe_mul(z_250, &t, &z_50); /* 2^250 - 1 */
}

/* h = f^(p - 2) = 1/f (0 for f = 0) */
static inline void fe_invert(fe *h, const fe *f)
{
    fe z_250, z_11;
    fe__pow_2_250_1(&z_250, &z_11, f);
    fe_sqn(&z_250, &z_250, 5);
    fe_mul(h, &z_250, &z_11); /* 2^255 - 32 + 11 = p - 2 */
}

/* h = f^((p - 5) / 8) = f^(2^252 - 3), for square roots */
static inline void fe_pow22523(fe *h, const fe *f)
{
    fe z_250, z_11;
    fe__pow_2_250_1(&z_250, &z_11, f);
    fe_sqn(&z_250, &z_250, 2);
    fe_mul(h, &z_250, f);
}

/* Canonical little-endian encoding (the value reduced below p). */
static inline void fe_tobytes(uint8_t s[32], const fe *f)
{
    uint64_t t[5];
    memcpy(t, f->v, sizeof t);
    fe__carry(t);
    fe__carry(t); /* now t < 2^255 + 2 * 19 < 2p */
    uint64_t q = (t[0] + 19) >> 51;
    q = (t[1] + q) >> 51;
    q = (t[2] + q) >> 51;
    q = (t[3] + q) >> 51;
    q = (t[4] + q) >> 51; /* q = 1 iff t >= p */
    t[0] += 19 * q;
    fe__propagate(t);
    t[4] &= FE__MASK; /* drops q * 2^255 */
    uint64_t w[4] = {t[0] | t[1] << 51, t[1] >> 13 | t[2] << 38, t[2] >> 26 | t[3] << 25,
                     t[3] >> 39 | t[4] << 12};
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 8; j++)
            s[8 * i + j] = (uint8_t)(w[i] >> (8 * j));
}

/* Loads the low 255 bits of s (the caller checks canonicity). */
static inline void fe_frombytes(fe *h, const uint8_t s[32])
{
    uint64_t w[4] = {0, 0, 0, 0};
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 8; j++)
            w[i] |= (uint64_t)s[8 * i + j] << (8 * j);
    h->v[0] = w[0] & FE__MASK;
    h->v[1] = (w[0] >> 51 | w[1] << 13) & FE__MASK;
    h->v[2] = (w[1] >> 38 | w[2] << 26) & FE__MASK;
    h->v[3] = (w[2] >> 25 | w[3] << 39) & FE__MASK;
    h->v[4] = (w[3] >> 12) & FE__MASK;
}

static inline int fe_iszero(const fe *f)
{
    uint8_t s[32], acc = 0;
    fe_tobytes(s, f);
    for (int i = 0; i < 32; i++)
        acc |= s[i];
    return acc == 0;
}

static inline int fe_equal(const fe *f, const fe *g)
{
    uint8_t a[32], b[32];
    fe_tobytes(a, f);
    fe_tobytes(b, g);
    return memcmp(a, b, 32) == 0;
}

/* The low bit of the canonical value ("negative" in RFC 8032 §5.1.3). */
static inline int fe_isodd(const fe *f)
{
    uint8_t s[32];
    fe_tobytes(s, f);
    return s[0] & 1;
}

#endif
