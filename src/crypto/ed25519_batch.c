/* Ed25519 verification with our own curve arithmetic (crypto/ed25519_batch.h):
 * the cofactored equation [8][S]B = [8]R + [8][k]A, alone or for a batch
 * at once as [8]([sum z_i S_i]B - sum [z_i]R_i - sum [z_i k_i]A_i) = 0
 * with random 128-bit z_i, one Straus multi-scalar multiplication sharing
 * the doublings (w-NAF tables per point, a static w = 8 table of B); the
 * items signed by one key share one A term, [sum z_i k_i]A.
 * A batch that fails is halved until the halves pass; a failing part of
 * four or fewer (or of 32 or fewer whose halves both fail) is judged item
 * by item with the equation of one item, whose verdict is exactly
 * ed25519_verify_one's, so a verdict never depends on the batch. Field
 * arithmetic: crypto/ed25519_field.h; scalars mod L and SHA-512:
 * libsodium. Variable time: public data only. */
#include "crypto/ed25519_batch.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <string.h>

#include "crypto/ed25519_field.h"
#include "crypto/sign.h"

/* Extended coordinates: x = X/Z, y = Y/Z, x*y = T/Z; all reduced (see
 * crypto/ed25519_field.h), as are those of ge_p2. */
typedef struct {
    fe X, Y, Z, T;
} ge_p3;

/* Projective: x = X/Z, y = Y/Z (what a doubling needs). */
typedef struct {
    fe X, Y, Z;
} ge_p2;

/* Completed, the result of an addition or doubling before its last
 * products: x = X/Z, y = Y/T. */
typedef struct {
    fe X, Y, Z, T;
} ge_p1p1;

/* A point prepared as the second operand of additions. */
typedef struct {
    fe YplusX, YminusX, Z, T2d;
} ge_cached;

#define ED__WA 5    /* w-NAF width for the A_i (253-bit scalars) */
#define ED__WR 4    /* for the R_i (128-bit scalars) */
#define ED__WB 8    /* for the base point (static table) */
#define ED__NAF 256 /* digits of a scalar below 2^255 */

static pthread_once_t ed__once = PTHREAD_ONCE_INIT;
static int ed__ready; /* 1 once the constants below are set and libsodium initialised */
static fe ed__d, ed__d2, ed__sqrtm1;
static ge_cached ed__base[1 << (ED__WB - 2)]; /* B, 3B, 5B, ..., 127B */

/* the group order L = 2^252 + 27742317777372353535851937790883648493 */
static const uint8_t ed__L[32] = {0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7,
                                  0xa2, 0xde, 0xf9, 0xde, 0x14, 0,    0,    0,    0,    0,    0,
                                  0,    0,    0,    0,    0,    0,    0,    0,    0,    0x10};

/* ---- group operations (twisted Edwards, a = -1; Hisil et al. 2008) ---- */

static void ge_identity(ge_p2 *p)
{
    fe_set_small(&p->X, 0);
    fe_set_small(&p->Y, 1);
    fe_set_small(&p->Z, 1);
}

static void ge_p1p1_to_p2(ge_p2 *r, const ge_p1p1 *p)
{
    fe_mul(&r->X, &p->X, &p->T);
    fe_mul(&r->Y, &p->Y, &p->Z);
    fe_mul(&r->Z, &p->Z, &p->T);
}

static void ge_p1p1_to_p3(ge_p3 *r, const ge_p1p1 *p)
{
    fe_mul(&r->X, &p->X, &p->T);
    fe_mul(&r->Y, &p->Y, &p->Z);
    fe_mul(&r->Z, &p->Z, &p->T);
    fe_mul(&r->T, &p->X, &p->Y);
}

static void ge_p3_to_p2(ge_p2 *r, const ge_p3 *p)
{
    r->X = p->X;
    r->Y = p->Y;
    r->Z = p->Z;
}

static void ge_p3_to_cached(ge_cached *c, const ge_p3 *p)
{
    fe_add(&c->YplusX, &p->Y, &p->X);
    fe_sub(&c->YminusX, &p->Y, &p->X);
    c->Z = p->Z;
    fe_mul(&c->T2d, &p->T, &ed__d2);
}

/* r = p + q ("add-2008-hwcd-3"), or p - q if NEG: the addition with q
 * negated (x -> -x swaps Y+X and Y-X and negates T, so G and F swap) */
static void ge_add(ge_p1p1 *r, const ge_p3 *p, const ge_cached *q, int neg)
{
    fe a, b, c, d, t;
    fe_sub(&t, &p->Y, &p->X);
    fe_mul(&a, &t, neg ? &q->YplusX : &q->YminusX);
    fe_add(&t, &p->Y, &p->X);
    fe_mul(&b, &t, neg ? &q->YminusX : &q->YplusX);
    fe_mul(&c, &p->T, &q->T2d);
    fe_mul(&d, &p->Z, &q->Z);
    fe_add(&d, &d, &d);
    fe_sub(&r->X, &b, &a); /* E */
    fe_add(&r->Y, &b, &a); /* H */
    if (neg) {
        fe_sub(&r->Z, &d, &c);
        fe_add(&r->T, &d, &c);
    } else {
        fe_add(&r->Z, &d, &c); /* G */
        fe_sub(&r->T, &d, &c); /* F */
    }
}

/* r = 2p ("dbl-2008-hwcd" with E, F, G, H all negated, which leaves the
 * point unchanged and saves the negations) */
static void ge_dbl(ge_p1p1 *r, const ge_p2 *p)
{
    fe a, b, c, aa, t;
    fe_sq(&a, &p->X);
    fe_sq(&b, &p->Y);
    fe_sq(&c, &p->Z);
    fe_add(&c, &c, &c);
    fe_add(&t, &p->X, &p->Y);
    fe_sq(&aa, &t);
    fe_add(&r->Y, &a, &b);     /* -H = A + B */
    fe_sub(&r->X, &r->Y, &aa); /* -E */
    fe_sub(&r->Z, &a, &b);     /* -G */
    fe_add(&r->T, &c, &r->Z);  /* -F = C - G (below 2^51 + 2^53 + 2^52.1) */
}

static int ge_is_identity(const ge_p2 *p)
{
    return fe_iszero(&p->X) && fe_equal(&p->Y, &p->Z);
}

/* [8]p == identity: p has small order (or is the identity) */
static int ge_small_order(const ge_p3 *p)
{
    ge_p2 q;
    ge_p1p1 t;
    ge_p3_to_p2(&q, p);
    for (int i = 0; i < 3; i++) {
        ge_dbl(&t, &q);
        ge_p1p1_to_p2(&q, &t);
    }
    return ge_is_identity(&q);
}

/* The canonical encodings of the eight points of small order (the
 * identity, the point of order 2, two of order 4, four of order 8): once
 * an encoding has decoded (canonical, and x = 0 only with the sign bit
 * clear), it is of a small-order point iff it is one of these. Checked
 * against the arithmetic at start (ed__init_once). */
static const uint8_t ed__small_order[8][32] = {
    {0x01},
    {0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
    {0x00},
    {[31] = 0x80},
    {0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b,
     0x76, 0x0d, 0x10, 0x67, 0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39,
     0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a},
    {0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b,
     0x76, 0x0d, 0x10, 0x67, 0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39,
     0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0xfa},
    {0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4,
     0x89, 0xf2, 0xef, 0x98, 0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6,
     0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05},
    {0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4,
     0x89, 0xf2, 0xef, 0x98, 0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6,
     0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x85},
};

static int ed__small_order_enc(const uint8_t s[32])
{
    for (int i = 0; i < 8; i++)
        if (memcmp(s, ed__small_order[i], 32) == 0)
            return 1;
    return 0;
}

/* y of the encoding below p = 2^255 - 19 (the sign bit aside) */
static int ed__canonical_y(const uint8_t s[32])
{
    if ((s[31] & 0x7f) != 0x7f)
        return 1;
    for (int i = 30; i > 0; i--)
        if (s[i] != 0xff)
            return 1;
    return s[0] < 0xed;
}

/* Decodes s per RFC 8032 §5.1.3 into p (Z = 1), negated if NEGATE: -1 if
 * y is not below p, y is not on the curve, or x = 0 with the sign bit set. */
static int ge_frombytes(ge_p3 *p, const uint8_t s[32], int negate)
{
    if (!ed__canonical_y(s))
        return -1;
    int sign = s[31] >> 7;
    fe one, y2, u, v, v3, t;
    fe_set_small(&one, 1);
    fe_frombytes(&p->Y, s);
    p->Z = one;
    fe_sq(&y2, &p->Y);
    fe_sub(&u, &y2, &one);
    fe_mul(&v, &y2, &ed__d);
    fe_add(&v, &v, &one);
    fe_sq(&v3, &v);
    fe_mul(&v3, &v3, &v); /* v^3 */
    fe_sq(&t, &v3);
    fe_mul(&t, &t, &v);
    fe_mul(&t, &t, &u); /* u v^7 */
    fe_pow22523(&t, &t);
    fe_mul(&t, &t, &v3);
    fe_mul(&p->X, &t, &u); /* u v^3 (u v^7)^((p-5)/8) */
    fe_sq(&t, &p->X);
    fe_mul(&t, &t, &v); /* v x^2 */
    if (!fe_equal(&t, &u)) {
        fe_add(&t, &t, &u);
        if (!fe_iszero(&t))
            return -1; /* u/v is not a square */
        fe_mul(&p->X, &p->X, &ed__sqrtm1);
    }
    int odd = fe_isodd(&p->X);
    if (sign && !odd && fe_iszero(&p->X))
        return -1;
    if (odd != (sign ^ negate))
        fe_neg(&p->X, &p->X);
    fe_mul(&p->T, &p->X, &p->Y);
    return 0;
}

/* table[i] = (2i + 1) p for i < n */
static void ge_odd_multiples(ge_cached *table, int n, const ge_p3 *p)
{
    ge_p3 p2, q;
    ge_p1p1 t;
    ge_p2 pp;
    ge_p3_to_cached(&table[0], p);
    if (n == 1)
        return;
    ge_p3_to_p2(&pp, p);
    ge_dbl(&t, &pp);
    ge_p1p1_to_p3(&p2, &t);
    for (int i = 1; i < n; i++) {
        ge_add(&t, &p2, &table[i - 1], 0);
        ge_p1p1_to_p3(&q, &t);
        ge_p3_to_cached(&table[i], &q);
    }
}

/* ---- scalars ---- */

static int sc_canonical(const uint8_t s[32])
{
    for (int i = 31; i >= 0; i--) {
        if (s[i] < ed__L[i])
            return 1;
        if (s[i] > ed__L[i])
            return 0;
    }
    return 0; /* s == L */
}

/* Width-w non-adjacent form of s < 2^255: odd digits |d| < 2^(w-1) with at
 * least w - 1 zeros between nonzero ones. Returns 1 + the index of the
 * highest nonzero digit (0 for s = 0). */
static int sc_wnaf(int8_t naf[ED__NAF], const uint8_t s[32], int w)
{
    uint64_t x[5] = {0, 0, 0, 0, 0};
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 8; j++)
            x[i] |= (uint64_t)s[8 * i + j] << (8 * j);
    memset(naf, 0, ED__NAF);
    const uint64_t width = UINT64_C(1) << w, mask = width - 1;
    uint64_t carry = 0;
    int pos = 0, top = 0;
    while (pos < ED__NAF) {
        int word = pos / 64, bit = pos % 64;
        uint64_t buf = x[word] >> bit;
        if (bit > 64 - w)
            buf |= x[word + 1] << (64 - bit);
        uint64_t window = carry + (buf & mask);
        if ((window & 1) == 0) {
            if (carry == 0) /* skip the run of zeros */
                pos += buf ? __builtin_ctzll(buf) : 64 - bit;
            else
                pos++;
            continue;
        }
        if (window < width / 2) {
            carry = 0;
            naf[pos] = (int8_t)window;
        } else {
            carry = 1;
            naf[pos] = (int8_t)((int)window - (int)width);
        }
        top = pos + 1;
        pos += w;
    }
    return top;
}

/* ---- constants ---- */

static void ed__init_once(void)
{
    if (crypto_init() != 0)
        return;
    fe num, den;
    fe_set_small(&num, 121665);
    fe_neg(&num, &num);
    fe_set_small(&den, 121666);
    fe_invert(&den, &den);
    fe_mul(&ed__d, &num, &den); /* d = -121665/121666 */
    fe_add(&ed__d2, &ed__d, &ed__d);
    fe two, t;
    fe_set_small(&two, 2);
    fe_pow22523(&t, &two);
    fe_sq(&t, &t);
    fe_mul(&ed__sqrtm1, &t, &two); /* 2^((p-1)/4), a square root of -1 */

    uint8_t enc[32];
    memset(enc, 0x66, sizeof enc);
    enc[0] = 0x58; /* B: y = 4/5, x even */
    ge_p3 b;
    if (ge_frombytes(&b, enc, 0) != 0)
        return;
    ge_odd_multiples(ed__base, 1 << (ED__WB - 2), &b);
    for (int i = 0; i < 8; i++)
        if (ge_frombytes(&b, ed__small_order[i], 0) != 0 || !ge_small_order(&b))
            return;
    ed__ready = 1;
}

static int ed__init(void)
{
    pthread_once(&ed__once, ed__init_once);
    return ed__ready ? 0 : -1;
}

/* ---- multi-scalar multiplication ---- */

struct ed__term {
    const ge_cached *table; /* odd multiples of the point */
    const int8_t *naf;      /* its scalar's w-NAF, width matching the table */
    int top;                /* 1 + index of the highest nonzero digit */
};

#define ED__TERMS_MAX (1 + 2 * ED25519_BATCH_MAX)
/* nonzero digits of a width-w NAF are at least w apart: at most 256/4 + 1 */
#define ED__DIGITS_MAX (ED__TERMS_MAX * (ED__NAF / 4 + 1))

/* r = sum of [scalar_j] P_j (Straus: one chain of doublings). The digits
 * are first sorted by position (a counting sort) so the main loop visits
 * only the nonzero ones. n <= ED__TERMS_MAX, every w-NAF of width >= 4. */
static void ed__straus(ge_p2 *r, const struct ed__term *terms, size_t n)
{
    struct digit {
        uint16_t term;
        int16_t d;
    } list[ED__DIGITS_MAX];
    uint16_t start[ED__NAF + 1];
    memset(start, 0, sizeof start);
    int top = 0;
    for (size_t j = 0; j < n; j++) {
        for (int i = 0; i < terms[j].top; i++)
            start[i + 1] += terms[j].naf[i] != 0;
        if (terms[j].top > top)
            top = terms[j].top;
    }
    for (int i = 0; i < ED__NAF; i++)
        start[i + 1] += start[i];
    uint16_t fill[ED__NAF];
    memcpy(fill, start, sizeof fill);
    for (size_t j = 0; j < n; j++)
        for (int i = 0; i < terms[j].top; i++)
            if (terms[j].naf[i] != 0)
                list[fill[i]++] = (struct digit){(uint16_t)j, terms[j].naf[i]};

    ge_identity(r);
    ge_p1p1 t;
    ge_p3 u;
    for (int i = top - 1; i >= 0; i--) {
        ge_dbl(&t, r);
        for (unsigned k = start[i]; k < start[i + 1]; k++) {
            const struct ed__term *x = &terms[list[k].term];
            int d = list[k].d;
            ge_p1p1_to_p3(&u, &t);
            ge_add(&t, &u, &x->table[(d > 0 ? d : -d) / 2], d < 0);
        }
        ge_p1p1_to_p2(r, &t);
    }
}

/* [8]p == identity */
static int ed__cofactor_zero(ge_p2 *p)
{
    ge_p1p1 t;
    for (int i = 0; i < 3; i++) {
        ge_dbl(&t, p);
        ge_p1p1_to_p2(p, &t);
    }
    return ge_is_identity(p);
}

/* ---- verification ---- */

/* The checks of a signature before the equation: S below L, R the
 * canonical encoding of a curve point not of small order. -R into neg_r;
 * 0 or -1 (reject). */
static int ed__check_sig(const uint8_t sig[64], ge_p3 *neg_r)
{
    if (!sc_canonical(sig + 32) || ed__small_order_enc(sig))
        return -1;
    return ge_frombytes(neg_r, sig, 1);
}

/* The same for a public key: -A into neg_a. */
static int ed__check_key(const uint8_t pk[32], ge_p3 *neg_a)
{
    if (ed__small_order_enc(pk))
        return -1;
    return ge_frombytes(neg_a, pk, 1);
}

/* k = SHA-512(R || A || M) mod L */
static void ed__challenge(uint8_t k[32], const uint8_t sig[64], const uint8_t pk[32],
                          const void *msg, size_t len)
{
    crypto_hash_sha512_state h;
    uint8_t digest[64];
    crypto_hash_sha512_init(&h);
    crypto_hash_sha512_update(&h, sig, 32);
    crypto_hash_sha512_update(&h, pk, 32);
    crypto_hash_sha512_update(&h, msg, len);
    crypto_hash_sha512_final(&h, digest);
    crypto_core_ed25519_scalar_reduce(k, digest);
}

int ed25519_verify_one(const uint8_t sig[64], const void *msg, size_t len, const uint8_t pk[32])
{
    ge_p3 neg_a, neg_r;
    uint8_t k[32];
    if (ed__init() != 0 || ed__check_sig(sig, &neg_r) != 0 || ed__check_key(pk, &neg_a) != 0)
        return -EBADMSG;
    ed__challenge(k, sig, pk, msg, len);
    ge_cached table_a[1 << (ED__WA - 2)], table_r[1];
    int8_t naf_b[ED__NAF], naf_a[ED__NAF], naf_r[ED__NAF];
    ge_odd_multiples(table_a, 1 << (ED__WA - 2), &neg_a);
    ge_p3_to_cached(&table_r[0], &neg_r);
    memset(naf_r, 0, sizeof naf_r);
    naf_r[0] = 1;
    struct ed__term terms[3] = {
        {ed__base, naf_b, sc_wnaf(naf_b, sig + 32, ED__WB)},
        {table_a, naf_a, sc_wnaf(naf_a, k, ED__WA)},
        {table_r, naf_r, 1},
    };
    ge_p2 r;
    ed__straus(&r, terms, 3); /* [S]B - [k]A - R */
    return ed__cofactor_zero(&r) ? 0 : -EBADMSG;
}

int ed25519_point_check(const uint8_t p[32])
{
    ge_p3 a;
    if (ed__init() != 0 || ge_frombytes(&a, p, 0) != 0)
        return -EINVAL;
    return ge_small_order(&a) ? -ERANGE : 0;
}

/* A distinct public key of a batch, decoded once however many items of
 * the batch it signed: their A terms merge into one, [sum z_i k_i](-A). */
struct ed__key {
    const uint8_t *pk;
    ge_cached table[1 << (ED__WA - 2)]; /* odd multiples of -A */
};

/* One item of a batch that passed the checks before the equation. */
struct ed__item {
    size_t idx;     /* into the caller's arrays */
    size_t key;     /* into the batch's keys */
    uint8_t zs[32]; /* z S mod L */
    uint8_t zk[32]; /* z k mod L */
    int top_r;
    int8_t naf_r[ED__NAF];                /* of z */
    ge_cached table_r[1 << (ED__WR - 2)]; /* odd multiples of -R */
};

/* The batch equation over it[0..n): 1 if it holds. */
static int ed__batch_holds(const struct ed__key *keys, const struct ed__item *it, size_t n)
{
    struct ed__term terms[ED__TERMS_MAX];
    uint8_t sb[32] = {0}, sa[ED25519_BATCH_MAX][32];
    int8_t naf_b[ED__NAF], naf_a[ED25519_BATCH_MAX][ED__NAF];
    int16_t slot[ED25519_BATCH_MAX]; /* key -> index into sa, or -1 */
    size_t key_of[ED25519_BATCH_MAX], nk = 0, nt = 1;
    memset(slot, -1, sizeof slot);
    for (size_t i = 0; i < n; i++) {
        crypto_core_ed25519_scalar_add(sb, sb, it[i].zs);
        size_t key = it[i].key;
        if (slot[key] < 0) {
            slot[key] = (int16_t)nk;
            key_of[nk] = key;
            memcpy(sa[nk++], it[i].zk, 32);
        } else {
            crypto_core_ed25519_scalar_add(sa[slot[key]], sa[slot[key]], it[i].zk);
        }
        terms[nt++] = (struct ed__term){it[i].table_r, it[i].naf_r, it[i].top_r};
    }
    for (size_t j = 0; j < nk; j++)
        terms[nt++] =
            (struct ed__term){keys[key_of[j]].table, naf_a[j], sc_wnaf(naf_a[j], sa[j], ED__WA)};
    terms[0] = (struct ed__term){ed__base, naf_b, sc_wnaf(naf_b, sb, ED__WB)};
    ge_p2 r;
    ed__straus(&r, terms, nt);
    return ed__cofactor_zero(&r);
}

/* Sets ok[] for it[0..n) whose equation failed: each item alone for four
 * or fewer; else the halves, each either passing, or split again, or (when
 * both fail in a part of 32 or fewer: invalid items are dense) judged item
 * by item. The equation of one item is z ([8]([S]B - R - [k]A)) = 0 with
 * z below L and not 0: exactly ed25519_verify_one's verdict, not a
 * probabilistic one. */
static void ed__split(const struct ed__key *keys, const struct ed__item *it, size_t n, uint8_t *ok)
{
    size_t h = n / 2;
    int pass[2] = {0, 0};
    if (n > 4) {
        pass[0] = ed__batch_holds(keys, it, h);
        pass[1] = ed__batch_holds(keys, it + h, n - h);
    }
    if (n <= 4 || (!pass[0] && !pass[1] && n <= 32)) {
        for (size_t i = 0; i < n; i++)
            ok[it[i].idx] = n > 1 && ed__batch_holds(keys, &it[i], 1);
        return;
    }
    for (int side = 0; side < 2; side++) {
        const struct ed__item *part = side ? it + h : it;
        size_t len = side ? n - h : h;
        if (!pass[side]) {
            ed__split(keys, part, len, ok);
            continue;
        }
        for (size_t i = 0; i < len; i++)
            ok[part[i].idx] = 1;
    }
}

/* items[0..n), n <= ED25519_BATCH_MAX */
static void ed__verify_chunk(const struct ed25519_batch_item *items, size_t n, uint8_t *ok)
{
    struct ed__key keys[ED25519_BATCH_MAX];
    struct ed__item it[ED25519_BATCH_MAX];
    uint8_t z[ED25519_BATCH_MAX][16];
    size_t m = 0, nk = 0;
    randombytes_buf(z, sizeof z);
    for (size_t i = 0; i < n; i++) {
        const struct ed25519_batch_item *x = &items[i];
        ge_p3 neg_a, neg_r;
        uint8_t k[32], zz[32] = {0};
        ok[i] = 0;
        if (ed__check_sig(x->sig, &neg_r) != 0)
            continue;
        size_t key = 0;
        while (key < nk && memcmp(keys[key].pk, x->pk, 32) != 0)
            key++;
        if (key == nk) {
            if (ed__check_key(x->pk, &neg_a) != 0)
                continue;
            keys[nk].pk = x->pk;
            ge_odd_multiples(keys[nk++].table, 1 << (ED__WA - 2), &neg_a);
        }
        struct ed__item *e = &it[m++];
        e->idx = i;
        e->key = key;
        ed__challenge(k, x->sig, x->pk, x->msg, x->msg_len);
        memcpy(zz, z[i], 16);
        zz[0] |= 1; /* z != 0 */
        crypto_core_ed25519_scalar_mul(e->zs, zz, x->sig + 32);
        crypto_core_ed25519_scalar_mul(e->zk, zz, k);
        e->top_r = sc_wnaf(e->naf_r, zz, ED__WR);
        ge_odd_multiples(e->table_r, 1 << (ED__WR - 2), &neg_r);
    }
    if (m > 0 && ed__batch_holds(keys, it, m)) {
        for (size_t i = 0; i < m; i++)
            ok[it[i].idx] = 1;
    } else if (m > 0) {
        ed__split(keys, it, m, ok);
    }
}

size_t ed25519_verify_batch(const struct ed25519_batch_item *items, size_t n, uint8_t *ok)
{
    if (ed__init() != 0) {
        memset(ok, 0, n);
        return 0;
    }
    for (size_t off = 0; off < n; off += ED25519_BATCH_MAX) {
        size_t c = n - off < ED25519_BATCH_MAX ? n - off : ED25519_BATCH_MAX;
        ed__verify_chunk(items + off, c, ok + off);
    }
    size_t good = 0;
    for (size_t i = 0; i < n; i++)
        good += ok[i];
    return good;
}
