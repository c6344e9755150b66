/* Tests of src/crypto/ed25519_batch.c: RFC 8032 §7.1 vectors (and every
 * single-bit flip of them, alone and inside a batch), differential tests
 * against libsodium over random keys, messages and mutations, batches of
 * 1..130 items with invalid ones at random places, and the edge cases of
 * the header: S >= L, non-canonical encodings, small-order keys and R, and
 * the one intentional difference from libsodium (mixed-order R), and a
 * pair of invalid signatures whose errors cancel in an unweighted sum;
 * two threads verifying at once. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "crypto/ed25519_batch.h"
#include "crypto/hash.h"
#include "crypto/sign.h"

struct vector {
    const char *seed, *pk, *msg, *sig;
};

/* RFC 8032 §7.1: TEST 1, 2, 3 and TEST 1024 (a 1023-byte message) */
static const struct vector rfc8032[] = {
    {"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9"
     "b46bd25bf5f0595bbe24655141438e7a100b"},
    {"4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f1"
     "1d8c387b2eaeb4302aeeb00d291612bb0c00"},
    {"c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984d"
     "c6594a7c15e9716ed28dc027beceea1ec40a"},
    {"f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
     "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e",
     "08b8b2b733424243760fe426a4b54908632110a66c2f6591eabd3345e3e4eb98fa6e264bf09efe12ee50f8f54e9f7"
     "7b1"
     "e355f6c50544e23fb1433ddf73be84d879de7c0046dc4996d9e773f4bc9efe5738829adb26c81b37c93a1b270b203"
     "29d"
     "658675fc6ea534e0810a4432826bf58c941efb65d57a338bbd2e26640f89ffbc1a858efcb8550ee3a5e1998bd177e"
     "93a"
     "7363c344fe6b199ee5d02e82d522c4feba15452f80288a821a579116ec6dad2b3b310da903401aa62100ab5d1a365"
     "53e"
     "06203b33890cc9b832f79ef80560ccb9a39ce767967ed628c6ad573cb116dbefefd75499da96bd68a8a97b928a8bb"
     "c10"
     "3b6621fcde2beca1231d206be6cd9ec7aff6f6c94fcd7204ed3455c68c83f4a41da4af2b74ef5c53f1d8ac70bdcb7"
     "ed1"
     "85ce81bd84359d44254d95629e9855a94a7c1958d1f8ada5d0532ed8a5aa3fb2d17ba70eb6248e594e1a2297acbbb"
     "39d"
     "502f1a8c6eb6f1ce22b3de1a1f40cc24554119a831a9aad6079cad88425de6bde1a9187ebb6092cf67bf2b13fd65f"
     "270"
     "88d78b7e883c8759d2c4f5c65adb7553878ad575f9fad878e80a0c9ba63bcbcc2732e69485bbc9c90bfbd62481d90"
     "89b"
     "eccf80cfe2df16a2cf65bd92dd597b0707e0917af48bbb75fed413d238f5555a7a569d80c3414a8d0859dc65a4612"
     "8ba"
     "b27af87a71314f318c782b23ebfe808b82b0ce26401d2e22f04d83d1255dc51addd3b75a2b1ae0784504df543af89"
     "69b"
     "e3ea7082ff7fc9888c144da2af58429ec96031dbcad3dad9af0dcbaaaf268cb8fcffead94f3c7ca495e056a9b47ac"
     "db7"
     "51fb73e666c6c655ade8297297d07ad1ba5e43f1bca32301651339e22904cc8c42f58c30c04aafdb038dda0847dd9"
     "88d"
     "cda6f3bfd15c4b4c4525004aa06eeff8ca61783aacec57fb3d1f92b0fe2fd1a85f6724517b65e614ad6808d6f6ee3"
     "4df"
     "f7310fdc82aebfd904b01e1dc54b2927094b2db68d6f903b68401adebf5a7e08d78ff4ef5d63653a65040cf9bfd4a"
     "ca7"
     "984a74d37145986780fc0b16ac451649de6188a7dbdf191f64b5fc5e2ab47b57f7f7276cd419c17a3ca8e1b939ae4"
     "9e4"
     "88acba6b965610b5480109c8b17b80e1b7b750dfc7598d5d5011fd2dcc5600a32ef5b52a1ecc820e308aa342721aa"
     "c09"
     "43bf6686b64b2579376504ccc493d97e6aed3fb0f9cd71a43dd497f01f17c0e2cb3797aa2a2f256656168e6c496af"
     "c5f"
     "b93246f6b1116398a346f1a641f3b041e989f7914f90cc2c7fff357876e506b50d334ba77c225bc307ba537152f3f"
     "161"
     "0e4eafe595f6d9d90d11faa933a15ef1369546868a7f3a45a96768d40fd9d03412c091c6315cf4fde7cb686069373"
     "80d"
     "b2eaaa707b4c4185c32eddcdd306705e4dc1ffc872eeee475a64dfac86aba41c0618983f8741c5ef68d3a101e8a3b"
     "8ca"
     "c60c905c15fc910840b94c00a0b9d0",
     "0aab4c900501b3e24d7cdf4663326a3a87df5e4843b2cbdb67cbf6e460fec350aa5371b1508f9f4528ecea23c436d"
     "9"
     "4b5e8fcd4f681e30a6ac00a9704a188a03"},
};
#define N_RFC (sizeof rfc8032 / sizeof rfc8032[0])

/* The eight canonical encodings of points of small order: the identity,
 * the point of order 2, two of order 4 and four of order 8. */
static const char *small_order[8] = {
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
};

/* the group order L, little-endian */
static const uint8_t order_l[32] = {
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0x10};

/* One signed message with its own copies of everything (items point in). */
struct signed_msg {
    uint8_t pk[32], sig[64], msg[1024];
    size_t len;
};

static void unhex(const char *hex, uint8_t *out, size_t len)
{
    assert_int_equal(strlen(hex), 2 * len);
    assert_int_equal(crypto_hex_decode(hex, 2 * len, out, len), (ssize_t)len);
}

static void load_vector(const struct vector *v, struct signed_msg *m)
{
    m->len = strlen(v->msg) / 2;
    unhex(v->pk, m->pk, 32);
    unhex(v->sig, m->sig, 64);
    if (m->len)
        unhex(v->msg, m->msg, m->len);
}

static struct ed25519_batch_item item_of(const struct signed_msg *m)
{
    return (struct ed25519_batch_item){m->pk, m->sig, m->msg, m->len};
}

static int sodium_ok(const struct signed_msg *m)
{
    return crypto_sign_verify_detached(m->sig, m->msg, m->len, m->pk) == 0;
}

static int one_ok(const struct signed_msg *m)
{
    int rc = ed25519_verify_one(m->sig, m->msg, m->len, m->pk);
    assert_true(rc == 0 || rc == -EBADMSG);
    return rc == 0;
}

/* A random key signs a random message of up to 300 bytes. */
static void make_signed(struct signed_msg *m, uint8_t sk[64])
{
    uint8_t own_sk[64];
    if (sk == NULL)
        sk = own_sk;
    assert_int_equal(crypto_sign_keypair(m->pk, sk), 0);
    m->len = randombytes_uniform(301);
    randombytes_buf(m->msg, m->len);
    assert_int_equal(crypto_sign_detached(m->sig, NULL, m->msg, m->len, sk), 0);
}

/* Flips one random bit of the signature, the key or the message. */
static void mutate(struct signed_msg *m)
{
    uint32_t what = randombytes_uniform(m->len ? 3 : 2);
    uint8_t *buf = what == 0 ? m->sig : what == 1 ? m->pk : m->msg;
    size_t len = what == 0 ? 64 : what == 1 ? 32 : m->len;
    buf[randombytes_uniform((uint32_t)len)] ^= (uint8_t)(1u << randombytes_uniform(8));
}

/* Runs the batch and checks ok[] against want[] and the count. */
static void check_batch(const struct signed_msg *m, size_t n, const uint8_t *want)
{
    struct ed25519_batch_item *items = calloc(n, sizeof *items);
    uint8_t *ok = malloc(n);
    assert_non_null(items);
    assert_non_null(ok);
    size_t good = 0;
    for (size_t i = 0; i < n; i++) {
        items[i] = item_of(&m[i]);
        good += want[i];
    }
    memset(ok, 0xaa, n);
    assert_int_equal(ed25519_verify_batch(items, n, ok), good);
    for (size_t i = 0; i < n; i++)
        if (ok[i] != want[i])
            fail_msg("batch of %zu: item %zu got %u, want %u", n, i, ok[i], want[i]);
    free(items);
    free(ok);
}

static void test_rfc8032_vectors(void **state)
{
    (void)state;
    struct signed_msg m[N_RFC];
    uint8_t want[N_RFC];
    for (size_t v = 0; v < N_RFC; v++) {
        load_vector(&rfc8032[v], &m[v]);
        /* the typed-in data is the RFC's: libsodium derives the same key
         * and signature from the seed */
        uint8_t seed[32], pk[32], sk[64], sig[64];
        unhex(rfc8032[v].seed, seed, 32);
        assert_int_equal(crypto_sign_seed_keypair(pk, sk, seed), 0);
        assert_memory_equal(pk, m[v].pk, 32);
        crypto_sign_detached(sig, NULL, m[v].msg, m[v].len, sk);
        assert_memory_equal(sig, m[v].sig, 64);
        assert_int_equal(ed25519_verify_one(m[v].sig, m[v].msg, m[v].len, m[v].pk), 0);
        assert_int_equal(ed25519_point_check(m[v].pk), 0);
        want[v] = 1;
    }
    assert_int_equal(m[3].len, 1023);
    check_batch(m, N_RFC, want);
}

/* Every single-bit flip of sig, pk and msg of every vector is rejected,
 * alone and in batches of 64 where every 16th item is the valid vector. */
static void test_rfc8032_bit_flips(void **state)
{
    (void)state;
    struct signed_msg *m = malloc(64 * sizeof *m);
    uint8_t want[64];
    assert_non_null(m);
    size_t flips = 0;
    for (size_t v = 0; v < N_RFC; v++) {
        struct signed_msg orig;
        load_vector(&rfc8032[v], &orig);
        size_t bits = 8 * (64 + 32 + orig.len), next = 0;
        while (next < bits) {
            size_t n = 0;
            for (; n < 64 && next < bits; n++) {
                m[n] = orig;
                want[n] = n % 16 == 0;
                if (want[n])
                    continue;
                size_t bit = next++;
                uint8_t *buf = bit < 512 ? m[n].sig : bit < 768 ? m[n].pk : m[n].msg;
                size_t at = bit < 512 ? bit : bit < 768 ? bit - 512 : bit - 768;
                buf[at / 8] ^= (uint8_t)(1u << (at % 8));
                if (one_ok(&m[n]))
                    fail_msg("vector %zu bit %zu: flipped and still valid", v, bit);
                flips++;
            }
            check_batch(m, n, want);
        }
    }
    assert_int_equal(flips, N_RFC * (64 + 32) * 8 + 8 * (0 + 1 + 2 + 1023));
    free(m);
}

/* Random keys and messages signed by libsodium: the same verdicts, for the
 * valid signatures and for random one-bit mutations; then the same set in
 * batches. */
static void test_differential_libsodium(void **state)
{
    (void)state;
    enum { N = 2000 };
    struct signed_msg *m = malloc(N * sizeof *m);
    uint8_t *want = malloc(N);
    assert_non_null(m);
    assert_non_null(want);
    size_t valid = 0;
    for (size_t i = 0; i < N; i++) {
        make_signed(&m[i], NULL);
        assert_true(one_ok(&m[i]));
        if (i % 2)
            mutate(&m[i]);
        want[i] = (uint8_t)sodium_ok(&m[i]);
        if (one_ok(&m[i]) != want[i])
            fail_msg("item %zu: ours %d, libsodium %d", i, !want[i], want[i]);
        valid += want[i];
    }
    assert_true(valid >= N / 2 && valid < N);
    check_batch(m, N, want);
    free(m);
    free(want);
}

/* Batches of sizes 1..130 (every STEP-th) with no invalid item, one, and
 * several, at random positions: ok[] exact. KEYS distinct keys sign the
 * messages in turn (0: each its own key). */
static void batch_sizes(size_t keys, size_t step)
{
    enum { N = 130 };
    struct signed_msg *good = malloc(N * sizeof *good), *m = malloc(N * sizeof *m);
    uint8_t want[N], sk[4][64];
    assert_true(keys <= 4);
    assert_non_null(good);
    assert_non_null(m);
    for (size_t i = 0; i < N; i++) {
        if (keys == 0 || i < keys) {
            make_signed(&good[i], keys ? sk[i] : NULL);
            continue;
        }
        memcpy(good[i].pk, good[i % keys].pk, 32);
        good[i].len = randombytes_uniform(301);
        randombytes_buf(good[i].msg, good[i].len);
        crypto_sign_detached(good[i].sig, NULL, good[i].msg, good[i].len, sk[i % keys]);
    }
    for (size_t n = 1; n <= N; n += step) {
        for (int bad = 0; bad < 3; bad++) {
            memcpy(m, good, n * sizeof *m);
            memset(want, 1, n);
            size_t n_bad = bad == 0 ? 0 : bad == 1 ? 1 : 2 + randombytes_uniform(5);
            for (size_t b = 0; b < n_bad; b++) {
                size_t at = randombytes_uniform((uint32_t)n);
                if (!want[at])
                    continue;
                mutate(&m[at]);
                want[at] = 0;
                assert_false(sodium_ok(&m[at]));
            }
            check_batch(m, n, want);
        }
    }
    free(good);
    free(m);
}

static void test_batch_sizes(void **state)
{
    (void)state;
    batch_sizes(0, 1);
}

/* The same with four keys (each signing about a quarter of a batch, whose
 * A terms merge): as a few busy devices send. */
static void test_batch_sizes_shared_keys(void **state)
{
    (void)state;
    batch_sizes(4, 5);
    batch_sizes(1, 9);
}

static void add_scalar_l(uint8_t s[32])
{
    unsigned c = 0;
    for (int i = 0; i < 32; i++) {
        c += (unsigned)s[i] + order_l[i];
        s[i] = (uint8_t)c;
        c >>= 8;
    }
    assert_int_equal(c, 0);
}

static void test_s_not_below_l(void **state)
{
    (void)state;
    struct signed_msg m[3];
    uint8_t want[3] = {1, 0, 1};
    for (int i = 0; i < 3; i++)
        make_signed(&m[i], NULL);
    add_scalar_l(m[1].sig + 32); /* S + L: the same scalar mod L */
    assert_false(one_ok(&m[1]));
    assert_false(sodium_ok(&m[1]));
    check_batch(m, 3, want);
    memcpy(m[1].sig + 32, order_l, 32); /* S = L */
    assert_false(one_ok(&m[1]));
    check_batch(m, 3, want);
}

static void test_noncanonical_encodings(void **state)
{
    (void)state;
    /* y = 3 is on the curve (not small order); y = p + 3 encodes it too */
    uint8_t y3[32] = {3}, y3p[32];
    memset(y3p, 0xff, 32);
    y3p[0] = 0xf0;
    y3p[31] = 0x7f;
    assert_int_equal(ed25519_point_check(y3), 0);
    assert_int_equal(ed25519_point_check(y3p), -EINVAL);
    uint8_t y2[32] = {2}; /* y = 2: no x */
    assert_int_equal(ed25519_point_check(y2), -EINVAL);
    uint8_t neg_zero[32] = {1}; /* the identity with the sign bit: x = 0 */
    neg_zero[31] = 0x80;
    assert_int_equal(ed25519_point_check(neg_zero), -EINVAL);
    uint8_t y_p[32]; /* y = p */
    memset(y_p, 0xff, 32);
    y_p[0] = 0xed;
    y_p[31] = 0x7f;
    assert_int_equal(ed25519_point_check(y_p), -EINVAL);

    struct signed_msg m[3];
    uint8_t want[3] = {1, 0, 1};
    for (int i = 0; i < 3; i++)
        make_signed(&m[i], NULL);
    struct signed_msg keep = m[1];
    memcpy(m[1].pk, y3p, 32);
    assert_false(one_ok(&m[1]));
    assert_false(sodium_ok(&m[1]));
    check_batch(m, 3, want);
    m[1] = keep;
    memcpy(m[1].sig, y3p, 32);
    assert_false(one_ok(&m[1]));
    assert_false(sodium_ok(&m[1]));
    check_batch(m, 3, want);
}

/* a = the secret scalar of a libsodium secret key (seed || pk), mod L */
static void secret_scalar(uint8_t a[32], const uint8_t sk[64])
{
    uint8_t h[64];
    crypto_hash_sha512(h, sk, 32);
    h[0] &= 248;
    h[31] &= 127;
    h[31] |= 64;
    memset(h + 32, 0, 32);
    crypto_core_ed25519_scalar_reduce(a, h);
}

/* k = SHA-512(R || A || M) mod L */
static void challenge(uint8_t k[32], const struct signed_msg *m)
{
    crypto_hash_sha512_state st;
    uint8_t h[64];
    crypto_hash_sha512_init(&st);
    crypto_hash_sha512_update(&st, m->sig, 32);
    crypto_hash_sha512_update(&st, m->pk, 32);
    crypto_hash_sha512_update(&st, m->msg, m->len);
    crypto_hash_sha512_final(&st, h);
    crypto_core_ed25519_scalar_reduce(k, h);
}

/* A public key of small order with R = [S]B satisfies the cofactored
 * equation for any message: only the small-order check rejects it. */
static void test_small_order_key(void **state)
{
    (void)state;
    struct signed_msg m[3];
    uint8_t want[3] = {1, 0, 1};
    for (int i = 0; i < 3; i++)
        make_signed(&m[i], NULL);
    for (int j = 0; j < 8; j++) {
        uint8_t t[32];
        unhex(small_order[j], t, 32);
        assert_int_equal(ed25519_point_check(t), -ERANGE);
        memcpy(m[1].pk, t, 32);
        crypto_core_ed25519_scalar_random(m[1].sig + 32);
        assert_int_equal(crypto_scalarmult_ed25519_base_noclamp(m[1].sig, m[1].sig + 32), 0);
        assert_false(one_ok(&m[1]));
        assert_false(sodium_ok(&m[1]));
        check_batch(m, 3, want);
    }
}

/* R of small order with S = k a satisfies the cofactored equation: only
 * the small-order check on R rejects it (as libsodium does). */
static void test_small_order_r(void **state)
{
    (void)state;
    struct signed_msg m[3];
    uint8_t want[3] = {1, 0, 1}, sk[64], a[32], k[32];
    for (int i = 0; i < 3; i++)
        make_signed(&m[i], i == 1 ? sk : NULL);
    secret_scalar(a, sk);
    for (int j = 0; j < 8; j++) {
        unhex(small_order[j], m[1].sig, 32);
        challenge(k, &m[1]);
        crypto_core_ed25519_scalar_mul(m[1].sig + 32, k, a);
        assert_false(one_ok(&m[1]));
        assert_false(sodium_ok(&m[1]));
        check_batch(m, 3, want);
    }
}

/* R = [r]B + T with T of order 8 and S = r + k a: the cofactored equation
 * holds, libsodium's does not. Accepted alone and in any batch. */
static void test_mixed_order_r(void **state)
{
    (void)state;
    enum { N = 9 };
    struct signed_msg m[N];
    uint8_t sk[64], a[32], k[32], r[32], rb[32], t[32], want[N];
    for (int i = 0; i < N; i++)
        make_signed(&m[i], i == 4 ? sk : NULL);
    secret_scalar(a, sk);
    crypto_core_ed25519_scalar_random(r);
    assert_int_equal(crypto_scalarmult_ed25519_base_noclamp(rb, r), 0);
    unhex(small_order[4], t, 32);
    assert_int_equal(crypto_core_ed25519_add(m[4].sig, rb, t), 0);
    challenge(k, &m[4]);
    crypto_core_ed25519_scalar_mul(m[4].sig + 32, k, a);
    crypto_core_ed25519_scalar_add(m[4].sig + 32, m[4].sig + 32, r);
    assert_false(sodium_ok(&m[4]));
    assert_true(one_ok(&m[4]));
    assert_int_equal(ed25519_point_check(m[4].sig), 0);

    memset(want, 1, N);
    check_batch(m, N, want);     /* among valid ones */
    check_batch(&m[4], 1, want); /* alone */
    mutate(&m[1]);
    mutate(&m[7]);
    want[1] = want[7] = 0;
    check_batch(m, N, want); /* among invalid ones too */
}

/* Two invalid signatures whose errors cancel in a plain sum (S1 + d and
 * S2 - d): the random z_i keep them apart, both are rejected; by two keys,
 * and by one key (whose A terms merge). */
static void test_cancelling_pair(void **state)
{
    (void)state;
    enum { N = 6 };
    struct signed_msg m[N];
    uint8_t want[N] = {1, 0, 1, 1, 0, 1}, d[32], sk[64];
    for (int i = 0; i < N; i++)
        make_signed(&m[i], i == 1 ? sk : NULL);
    for (int round = 0; round < 40; round++) {
        if (round == 20) { /* m[4] by the key of m[1] from now on */
            memcpy(m[4].pk, m[1].pk, 32);
            crypto_sign_detached(m[4].sig, NULL, m[4].msg, m[4].len, sk);
        }
        crypto_core_ed25519_scalar_random(d);
        struct signed_msg a = m[1], b = m[4];
        crypto_core_ed25519_scalar_add(m[1].sig + 32, m[1].sig + 32, d);
        crypto_core_ed25519_scalar_sub(m[4].sig + 32, m[4].sig + 32, d);
        assert_false(sodium_ok(&m[1]));
        assert_false(sodium_ok(&m[4]));
        check_batch(m, N, want);
        m[1] = a;
        m[4] = b;
    }
}

/* Batches verified on two threads at once (the static tables are set up
 * once, by whichever thread comes first: run first; nothing else is
 * shared). */
struct thread_job {
    struct signed_msg m[16];
    uint8_t want[16];
    int rounds_ok;
};

static void *thread_main(void *arg)
{
    struct thread_job *job = arg;
    struct ed25519_batch_item items[16];
    uint8_t ok[16];
    for (int i = 0; i < 16; i++)
        items[i] = item_of(&job->m[i]);
    for (int round = 0; round < 30; round++) {
        size_t good = ed25519_verify_batch(items, 16, ok);
        job->rounds_ok += good == 15 && memcmp(ok, job->want, 16) == 0;
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    struct thread_job *job = calloc(2, sizeof *job);
    pthread_t tid[2];
    assert_non_null(job);
    for (int t = 0; t < 2; t++) {
        for (int i = 0; i < 16; i++) {
            make_signed(&job[t].m[i], NULL);
            job[t].want[i] = i != 5 + t;
        }
        mutate(&job[t].m[5 + t]);
        assert_false(sodium_ok(&job[t].m[5 + t]));
    }
    for (int t = 0; t < 2; t++)
        assert_int_equal(pthread_create(&tid[t], NULL, thread_main, &job[t]), 0);
    for (int t = 0; t < 2; t++) {
        assert_int_equal(pthread_join(tid[t], NULL), 0);
        assert_int_equal(job[t].rounds_ok, 30);
    }
    free(job);
}

int main(void)
{
    assert_int_equal(crypto_init(), 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads), /* first: both threads set the tables up */
        cmocka_unit_test(test_rfc8032_vectors),
        cmocka_unit_test(test_rfc8032_bit_flips),
        cmocka_unit_test(test_differential_libsodium),
        cmocka_unit_test(test_batch_sizes),
        cmocka_unit_test(test_batch_sizes_shared_keys),
        cmocka_unit_test(test_s_not_below_l),
        cmocka_unit_test(test_noncanonical_encodings),
        cmocka_unit_test(test_small_order_key),
        cmocka_unit_test(test_small_order_r),
        cmocka_unit_test(test_mixed_order_r),
        cmocka_unit_test(test_cancelling_pair),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
