/* Tests of src/ledger/merkle.c: every transparency-dev test vector in
 * LMQ_TESTDATA_DIR/merkle (happy paths verify, every mutation is rejected),
 * generated proofs for trees of 1..300 leaves against a direct recursive
 * transcription of RFC 9162 §2.1, the O(log n) bound on get_node calls, and
 * the frontier. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crypto/hash.h"
#include "ledger/merkle.h"

/* ---- a minimal reader for the flat JSON of the vectors ---- */

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static const char *json_value(const char *doc, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = strstr(doc, pat);
    assert_non_null(p);
    p = strchr(p + strlen(pat), ':');
    assert_non_null(p);
    p++;
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
        p++;
    return p;
}

static uint64_t json_u64(const char *doc, const char *key)
{
    return strtoull(json_value(doc, key), NULL, 10);
}

static int json_bool(const char *doc, const char *key)
{
    return strncmp(json_value(doc, key), "true", 4) == 0;
}

/* Decodes a base64 string value into out (zero-padded to 32); returns the
 * decoded length, or -1 if it is not valid base64. */
static long b64_at(const char *p, uint8_t out[32], const char **endp)
{
    assert_true(*p == '"');
    const char *q = strchr(p + 1, '"');
    assert_non_null(q);
    uint8_t tmp[256];
    memset(out, 0, 32);
    ssize_t n = crypto_b64_decode(p + 1, (size_t)(q - p - 1), tmp, sizeof tmp);
    if (endp)
        *endp = q + 1;
    if (n < 0)
        return -1;
    memcpy(out, tmp, n < 32 ? (size_t)n : 32);
    return (long)n;
}

static long json_hash(const char *doc, const char *key, uint8_t out[32])
{
    return b64_at(json_value(doc, key), out, NULL);
}

/* Returns the number of proof hashes, sets *bad if one is not 32 bytes. */
static size_t json_proof(const char *doc, uint8_t proof[][32], size_t cap, int *bad)
{
    const char *p = json_value(doc, "proof");
    size_t n = 0;
    *bad = 0;
    if (strncmp(p, "null", 4) == 0)
        return 0;
    assert_true(*p == '[');
    p++;
    for (;;) {
        while (*p == ' ' || *p == '\n' || *p == ',' || *p == '\r' || *p == '\t')
            p++;
        if (*p == ']')
            break;
        uint8_t h[32];
        long len = b64_at(p, h, &p);
        if (len != 32)
            *bad = 1;
        if (n < cap)
            memcpy(proof[n], h, 32);
        n++;
    }
    if (n > cap)
        *bad = 1;
    return n;
}

/* The API takes fixed 32-byte hashes: a leaf hash or proof entry of any
 * other length cannot be passed in (the receipt parser rejects it first),
 * so such cases count as rejected. Roots of other lengths are zero-padded
 * and passed in, since only equality is ever asked of them. */
static int run_inclusion(const char *doc)
{
    uint8_t root[32], leaf[32], proof[MERKLE_MAX_PROOF + 8][32];
    int bad = 0;
    long rl = json_hash(doc, "root", root);
    long ll = json_hash(doc, "leafHash", leaf);
    size_t n = json_proof(doc, proof, MERKLE_MAX_PROOF + 8, &bad);
    if (ll != 32 || bad || rl < 0)
        return -1;
    return merkle_verify_inclusion(json_u64(doc, "leafIdx"), json_u64(doc, "treeSize"), leaf,
                                   MERKLE_CPROOF(proof), n, root);
}

static int run_consistency(const char *doc)
{
    uint8_t r1[32], r2[32], proof[MERKLE_MAX_PROOF + 8][32];
    int bad = 0;
    long l1 = json_hash(doc, "root1", r1);
    long l2 = json_hash(doc, "root2", r2);
    size_t n = json_proof(doc, proof, MERKLE_MAX_PROOF + 8, &bad);
    if (bad || l1 < 0 || l2 < 0)
        return -1;
    return merkle_verify_consistency(json_u64(doc, "size1"), json_u64(doc, "size2"), r1, r2,
                                     MERKLE_CPROOF(proof), n);
}

static void walk(const char *dir, int (*run)(const char *), int *n_happy, int *n_bad)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t l = strlen(e->d_name);
        if (l > 5 && strcmp(e->d_name + l - 5, ".json") == 0) {
            char *doc = read_file(path);
            assert_non_null(doc);
            int want_err = json_bool(doc, "wantErr");
            int rc = run(doc);
            if (want_err && rc == 0)
                fail_msg("accepted a mutated case: %s", path);
            if (!want_err && rc != 0)
                fail_msg("rejected a happy path (%d): %s", rc, path);
            if (want_err)
                (*n_bad)++;
            else
                (*n_happy)++;
            free(doc);
        } else {
            walk(path, run, n_happy, n_bad);
        }
    }
    closedir(d);
}

static void test_vectors_inclusion(void **state)
{
    (void)state;
    int happy = 0, bad = 0;
    walk(LMQ_TESTDATA_DIR "/merkle/inclusion", run_inclusion, &happy, &bad);
    assert_true(happy >= 5);
    assert_true(bad >= 50);
}

static void test_vectors_consistency(void **state)
{
    (void)state;
    int happy = 0, bad = 0;
    walk(LMQ_TESTDATA_DIR "/merkle/consistency", run_consistency, &happy, &bad);
    assert_true(happy >= 5);
    assert_true(bad >= 50);
}

/* ---- the reference tree of the vectors' README ---- */

static const char *const ref_leaves_hex[8] = {"",
                                              "00",
                                              "10",
                                              "2021",
                                              "3031",
                                              "40414243",
                                              "5051525354555657",
                                              "606162636465666768696a6b6c6d6e6f"};
static const char *const ref_roots_hex[8] = {
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"};

/* In-memory store: levels[l][i] = complete node (l, i). */
#define MAXN 300
static uint8_t store[10][MAXN][32];
static uint64_t store_size;
static unsigned get_calls;

static int store_get(void *ctx, unsigned level, uint64_t index, uint8_t out[32])
{
    (void)ctx;
    get_calls++;
    if (level >= 10 || ((index + 1) << level) > store_size)
        fail_msg("get_node outside the tree: level %u index %llu size %llu", level,
                 (unsigned long long)index, (unsigned long long)store_size);
    memcpy(out, store[level][index], 32);
    return 0;
}

static void emit_store(void *ctx, unsigned level, uint64_t index, const uint8_t h[32])
{
    (void)ctx;
    assert_true(level < 10 && index < MAXN);
    memcpy(store[level][index], h, 32);
}

static uint8_t leaves[MAXN][32];

/* RFC 9162 §2.1.1 MTH, directly. */
static void ref_mth(size_t lo, size_t hi, uint8_t out[32])
{
    size_t n = hi - lo;
    if (n == 1) {
        memcpy(out, leaves[lo], 32);
        return;
    }
    size_t k = 1;
    while (k * 2 < n)
        k *= 2;
    uint8_t l[32], r[32];
    ref_mth(lo, lo + k, l);
    ref_mth(lo + k, hi, r);
    merkle_node_hash(l, r, out);
}

/* RFC 9162 §2.1.3.1 PATH(m, D[lo:hi]). */
static void ref_path(size_t m, size_t lo, size_t hi, uint8_t out[][32], size_t *n)
{
    size_t size = hi - lo;
    if (size == 1) {
        *n = 0;
        return;
    }
    size_t k = 1;
    while (k * 2 < size)
        k *= 2;
    if (m < k) {
        ref_path(m, lo, lo + k, out, n);
        ref_mth(lo + k, hi, out[(*n)++]);
    } else {
        ref_path(m - k, lo + k, hi, out, n);
        ref_mth(lo, lo + k, out[(*n)++]);
    }
}

/* RFC 9162 §2.1.4.1 SUBPROOF(m, D[lo:hi], b). */
static void ref_subproof(size_t m, size_t lo, size_t hi, int b, uint8_t out[][32], size_t *n)
{
    size_t size = hi - lo;
    if (m == size) {
        if (!b)
            ref_mth(lo, hi, out[(*n)++]);
        return;
    }
    size_t k = 1;
    while (k * 2 < size)
        k *= 2;
    if (m <= k) {
        ref_subproof(m, lo, lo + k, b, out, n);
        ref_mth(lo + k, hi, out[(*n)++]);
    } else {
        ref_subproof(m - k, lo + k, hi, 0, out, n);
        ref_mth(lo, lo + k, out[(*n)++]);
    }
}

static unsigned log2_ceil(uint64_t n)
{
    unsigned l = 0;
    while (((uint64_t)1 << l) < n)
        l++;
    return l;
}

static void build_tree(size_t n)
{
    struct merkle_frontier f;
    merkle_frontier_init(&f);
    memset(store, 0, sizeof store);
    for (size_t i = 0; i < n; i++) {
        uint8_t data[8];
        for (int k = 0; k < 8; k++)
            data[k] = (uint8_t)(i >> (8 * k));
        merkle_leaf_hash(data, sizeof data, leaves[i]);
        assert_int_equal(merkle_frontier_append(&f, leaves[i], emit_store, NULL), 0);
    }
    store_size = n;
}

static void test_reference_roots(void **state)
{
    (void)state;
    struct merkle_frontier f;
    merkle_frontier_init(&f);
    uint8_t root[32], want[32];
    merkle_frontier_root(&f, root);
    crypto_sha256("", 0, want);
    assert_memory_equal(root, want, 32);
    store_size = 0;
    assert_int_equal(merkle_root(0, store_get, NULL, root), 0);
    assert_memory_equal(root, want, 32);

    memset(store, 0, sizeof store);
    for (int i = 0; i < 8; i++) {
        uint8_t data[16];
        ssize_t dl =
            crypto_hex_decode(ref_leaves_hex[i], strlen(ref_leaves_hex[i]), data, sizeof data);
        assert_true(dl >= 0);
        merkle_leaf_hash(data, (size_t)dl, leaves[i]);
        assert_int_equal(merkle_frontier_append(&f, leaves[i], emit_store, NULL), 0);
        store_size = (uint64_t)i + 1;
        assert_int_equal(crypto_hex_decode(ref_roots_hex[i], 64, want, 32), 32);
        merkle_frontier_root(&f, root);
        assert_memory_equal(root, want, 32);
        assert_int_equal(merkle_root(store_size, store_get, NULL, root), 0);
        assert_memory_equal(root, want, 32);
    }
}

static void test_generated_proofs(void **state)
{
    (void)state;
    static uint8_t got[MERKLE_MAX_PROOF][32], want[MERKLE_MAX_PROOF][32];
    build_tree(MAXN);
    for (size_t size = 1; size <= MAXN; size++) {
        uint8_t root[32], ref_root[32];
        store_size = size;
        get_calls = 0;
        assert_int_equal(merkle_root(size, store_get, NULL, root), 0);
        assert_true(get_calls <= log2_ceil(size) + 1);
        ref_mth(0, size, ref_root);
        assert_memory_equal(root, ref_root, 32);

        for (size_t m = 0; m < size; m++) {
            size_t n = 0, wn = 0;
            get_calls = 0;
            assert_int_equal(merkle_inclusion_proof(m, size, store_get, NULL, got, &n), 0);
            assert_true(get_calls <= 2 * log2_ceil(size) + 1);
            ref_path(m, 0, size, want, &wn);
            assert_int_equal(n, wn);
            if (n)
                assert_memory_equal(got, want, n * 32);
            assert_int_equal(
                merkle_verify_inclusion(m, size, leaves[m], MERKLE_CPROOF(got), n, root), 0);
            /* wrong index, wrong size, flipped bit, short proof all fail */
            if (size > 1)
                assert_int_not_equal(merkle_verify_inclusion((m + 1) % size, size, leaves[m],
                                                             MERKLE_CPROOF(got), n, root),
                                     0);
            /* (size + 1 may share the path's shape, e.g. index 0 of 3 and 4:
             * the root, not the size, is what binds the proof.) */
            if (n > 0) {
                got[n - 1][7] ^= 0x10;
                assert_int_not_equal(
                    merkle_verify_inclusion(m, size, leaves[m], MERKLE_CPROOF(got), n, root), 0);
                got[n - 1][7] ^= 0x10;
                assert_int_not_equal(
                    merkle_verify_inclusion(m, size, leaves[m], MERKLE_CPROOF(got), n - 1, root),
                    0);
            }
        }
        /* consistency: every old size for small trees, a stride above */
        size_t step = size <= 100 ? 1 : 7;
        for (size_t old = 1; old <= size; old += step) {
            size_t n = 0, wn = 0;
            uint8_t old_root[32];
            ref_mth(0, old, old_root);
            get_calls = 0;
            assert_int_equal(merkle_consistency_proof(old, size, store_get, NULL, got, &n), 0);
            assert_true(get_calls <= 2 * log2_ceil(size) + 2);
            ref_subproof(old, 0, size, 1, want, &wn);
            assert_int_equal(n, wn);
            if (n)
                assert_memory_equal(got, want, n * 32);
            assert_int_equal(
                merkle_verify_consistency(old, size, old_root, root, MERKLE_CPROOF(got), n), 0);
            if (n > 0) {
                got[0][0] ^= 1;
                assert_int_not_equal(
                    merkle_verify_consistency(old, size, old_root, root, MERKLE_CPROOF(got), n), 0);
                got[0][0] ^= 1;
                assert_int_not_equal(
                    merkle_verify_consistency(old, size, old_root, root, MERKLE_CPROOF(got), n - 1),
                    0);
            }
            if (old < size)
                assert_int_not_equal(
                    merkle_verify_consistency(old, size, root, old_root, MERKLE_CPROOF(got), n), 0);
        }
    }
}

static void test_args(void **state)
{
    (void)state;
    uint8_t proof[MERKLE_MAX_PROOF][32], h[32] = {0};
    size_t n;
    build_tree(10);
    assert_int_equal(merkle_inclusion_proof(10, 10, store_get, NULL, proof, &n), MERKLE_ERR_ARGS);
    assert_int_equal(merkle_consistency_proof(0, 10, store_get, NULL, proof, &n), MERKLE_ERR_ARGS);
    assert_int_equal(merkle_consistency_proof(11, 10, store_get, NULL, proof, &n), MERKLE_ERR_ARGS);
    assert_int_equal(merkle_consistency_proof(10, 10, store_get, NULL, proof, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(merkle_verify_inclusion(0, 0, h, MERKLE_CPROOF(proof), 0, h), MERKLE_ERR_ARGS);
    assert_int_equal(merkle_verify_inclusion(0, 1, h, MERKLE_CPROOF(proof), 0, h), 0);
    assert_int_not_equal(
        merkle_verify_inclusion(0, 1, h, MERKLE_CPROOF(proof), MERKLE_MAX_PROOF + 1, h), 0);
    assert_int_equal(merkle_verify_consistency(0, 0, h, h, MERKLE_CPROOF(proof), 0),
                     MERKLE_ERR_ARGS);
}

static void test_frontier(void **state)
{
    (void)state;
    build_tree(MAXN);
    for (size_t size = 0; size <= MAXN; size++) {
        struct merkle_frontier f;
        uint8_t a[32], b[32];
        store_size = size;
        assert_int_equal(merkle_frontier_load(&f, size, store_get, NULL), 0);
        merkle_frontier_root(&f, a);
        assert_int_equal(merkle_root(size, store_get, NULL, b), 0);
        assert_memory_equal(a, b, 32);
        for (unsigned k = 0; k < 64; k++) {
            uint8_t h[32];
            if ((size >> k) & 1) {
                assert_int_equal(merkle_frontier_get(&f, k, (size >> k) - 1, h), 0);
                assert_memory_equal(h, store[k][(size >> k) - 1], 32);
            } else {
                assert_int_equal(merkle_frontier_get(&f, k, 0, h), MERKLE_ERR_ARGS);
            }
        }
    }
    /* A frontier near the 2^64 limit keeps working and then refuses. */
    struct merkle_frontier f;
    merkle_frontier_init(&f);
    f.size = UINT64_MAX - 1;
    uint8_t h[32] = {1};
    assert_int_equal(merkle_frontier_append(&f, h, NULL, NULL), 0);
    assert_int_equal(merkle_frontier_append(&f, h, NULL, NULL), MERKLE_ERR_FULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors_inclusion),
        cmocka_unit_test(test_vectors_consistency),
        cmocka_unit_test(test_reference_roots),
        cmocka_unit_test(test_generated_proofs),
        cmocka_unit_test(test_args),
        cmocka_unit_test(test_frontier),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
