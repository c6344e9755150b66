/* Tests of src/crypto/hash.c and src/crypto/sign.c: SHA-256 and CRC-32C
 * known answers, strict base64 (RFC 4648 §10 vectors and rejections), hex,
 * UTF-8, Ed25519 (RFC 8032 §7.1 test 1), and the key file rules (mode
 * 0600 whatever the umask, refusal of group/world-readable files). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "crypto/hash.h"
#include "util/crc32c.h"
#include "util/utf8.h"
#include "crypto/sign.h"

static void hex32(const char *hex, uint8_t out[32])
{
    assert_int_equal(crypto_hex_decode(hex, 64, out, 32), 32);
}

static void test_sha256(void **state)
{
    (void)state;
    uint8_t got[32], want[32];
    crypto_sha256("", 0, got);
    hex32("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", want);
    assert_memory_equal(got, want, 32);
    crypto_sha256("abc", 3, got);
    hex32("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", want);
    assert_memory_equal(got, want, 32);
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    crypto_sha256(m, strlen(m), got);
    hex32("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1", want);
    assert_memory_equal(got, want, 32);

    /* streaming and parts agree with one-shot */
    crypto_sha256_ctx c;
    assert_int_equal(crypto_sha256_init(&c), 0);
    crypto_sha256_update(&c, m, 10);
    crypto_sha256_update(&c, m + 10, strlen(m) - 10);
    crypto_sha256_final(&c, got);
    assert_memory_equal(got, want, 32);
    const void *parts[3] = {m, m + 5, m + 20};
    size_t lens[3] = {5, 15, strlen(m) - 20};
    crypto_sha256_parts(parts, lens, 3, got);
    assert_memory_equal(got, want, 32);
    assert_int_equal(crypto_sha256_init(&c), 0);
    crypto_sha256_free(&c); /* abandoning a context is allowed */
}

static void test_crc32c(void **state)
{
    (void)state;
    assert_int_equal(lmq_crc32c(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(lmq_crc32c(0, "", 0), 0);
    uint8_t zeros[32] = {0}, ones[32];
    memset(ones, 0xff, sizeof ones);
    /* RFC 3720 B.4 (bytes aa 36 91 8a / 43 ab a8 62 as sent, little-endian) */
    assert_int_equal(lmq_crc32c(0, zeros, 32), 0x8A9136AAu);
    assert_int_equal(lmq_crc32c(0, ones, 32), 0x62A8AB43u);
    /* chaining at every split point and alignment equals one call */
    uint8_t buf[301];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 7 + 3);
    uint32_t whole = lmq_crc32c(0, buf, sizeof buf);
    for (size_t split = 0; split <= sizeof buf; split++)
        assert_int_equal(
            lmq_crc32c(lmq_crc32c(0, buf, split), buf + split, sizeof buf - split), whole);
    /* bitwise reference */
    for (size_t off = 0; off < 16; off++) {
        uint32_t c = 0xffffffffu;
        for (size_t i = off; i < sizeof buf; i++) {
            c ^= buf[i];
            for (int k = 0; k < 8; k++)
                c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        }
        assert_int_equal(lmq_crc32c(0, buf + off, sizeof buf - off), ~c);
    }
}

static void test_base64(void **state)
{
    (void)state;
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const enc[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                      "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    char out[64];
    uint8_t dec[64];
    for (size_t i = 0; i < 7; i++) {
        assert_int_equal(crypto_b64_encode(plain[i], strlen(plain[i]), out, sizeof out),
                         (ssize_t)strlen(enc[i]));
        assert_string_equal(out, enc[i]);
        assert_int_equal(crypto_b64_decode(enc[i], strlen(enc[i]), dec, sizeof dec),
                         (ssize_t)strlen(plain[i]));
        assert_memory_equal(dec, plain[i], strlen(plain[i]));
    }
    static const char *const bad[] = {"Zg=",      "Zh==", "Zm9=", "Zm9v\n", "Z===", "=Zg=",
                                      "Zg==Zg==", "Zm-_", "Zm9 ", "====",   "Zm=v", "Z"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(crypto_b64_decode(bad[i], strlen(bad[i]), dec, sizeof dec), -EINVAL);
    assert_int_equal(crypto_b64_encode("foo", 3, out, 4), -ENOSPC); /* no room for NUL */
    assert_int_equal(crypto_b64_decode("Zm9vYmFy", 8, dec, 5), -ENOSPC);
    /* all byte values round-trip */
    uint8_t all[256];
    char big[400];
    uint8_t back[256];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    for (size_t n = 0; n <= 256; n += 17) {
        ssize_t el = crypto_b64_encode(all, n, big, sizeof big);
        assert_int_equal(el, (ssize_t)CRYPTO_B64_ENCODED_LEN(n));
        assert_int_equal(crypto_b64_decode(big, (size_t)el, back, sizeof back), (ssize_t)n);
        assert_memory_equal(back, all, n);
    }
}

static void test_hex_utf8(void **state)
{
    (void)state;
    char out[16];
    uint8_t b[8];
    assert_int_equal(crypto_hex_encode("\x01\xab\xff", 3, out, sizeof out), 6);
    assert_string_equal(out, "01abff");
    assert_int_equal(crypto_hex_decode("01ABff", 6, b, sizeof b), 3);
    assert_memory_equal(b, "\x01\xab\xff", 3);
    assert_int_equal(crypto_hex_decode("0", 1, b, sizeof b), -EINVAL);
    assert_int_equal(crypto_hex_decode("0g", 2, b, sizeof b), -EINVAL);
    assert_int_equal(crypto_hex_decode("0102", 4, b, 1), -ENOSPC);

    assert_true(lmq_utf8_valid("plain ascii", 11));
    assert_true(lmq_utf8_valid("\xe2\x80\x94 \xf0\x9f\x98\x80", 8));
    assert_false(lmq_utf8_valid("\xc0\xaf", 2));         /* overlong */
    assert_false(lmq_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    assert_false(lmq_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    assert_false(lmq_utf8_valid("\xe2\x80", 2));         /* truncated */
    assert_false(lmq_utf8_valid("\x80", 1));
    assert_int_equal(crypto_memeq("abc", "abc", 3), 0);
    assert_int_not_equal(crypto_memeq("abc", "abd", 3), 0);
}

static void test_ed25519(void **state)
{
    (void)state;
    uint8_t seed[32], pk[32], sk[64], want_pk[32], sig[64], want_sig[64];
    hex32("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", seed);
    hex32("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", want_pk);
    assert_int_equal(
        crypto_hex_decode(
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590"
            "a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
            128, want_sig, 64),
        64);
    assert_int_equal(crypto_ed25519_seed_keypair(pk, sk, seed), 0);
    assert_memory_equal(pk, want_pk, 32);
    crypto_ed25519_sign(sig, "", 0, sk);
    assert_memory_equal(sig, want_sig, 64);
    assert_int_equal(crypto_ed25519_verify(sig, "", 0, pk), 0);
    assert_int_equal(crypto_ed25519_verify(sig, "x", 1, pk), -EBADMSG);
    sig[0] ^= 1;
    assert_int_equal(crypto_ed25519_verify(sig, "", 0, pk), -EBADMSG);

    uint8_t pk2[32], sk2[64];
    assert_int_equal(crypto_ed25519_keypair(pk2, sk2), 0);
    crypto_ed25519_sign(sig, "hello", 5, sk2);
    assert_int_equal(crypto_ed25519_verify(sig, "hello", 5, pk2), 0);
    assert_int_equal(crypto_ed25519_verify(sig, "hello", 5, pk), -EBADMSG);
}

static void write_file(const char *path, const char *content, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

static void test_key_files(void **state)
{
    (void)state;
    char dir[] = "/tmp/lmq-test-keys-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], pubpath[256], bad[256];
    snprintf(path, sizeof path, "%s/node.key", dir);
    snprintf(pubpath, sizeof pubpath, "%s/node.pub", dir);
    snprintf(bad, sizeof bad, "%s/bad.key", dir);

    uint8_t pk[32], sk[64], pk2[32], sk2[64], pk3[32];
    int created = -1;
    /* a stale temporary file of a crashed creator with our pid is replaced */
    char stale[300];
    snprintf(stale, sizeof stale, "%s.tmp.%ld", path, (long)getpid());
    write_file(stale, "junk", 0644);
    mode_t old = umask(0); /* a careless umask must not leak the key */
    assert_int_equal(crypto_key_load(path, pk, sk), -ENOENT);
    assert_int_equal(crypto_key_load_or_create(path, pk, sk, &created), 0);
    umask(old);
    assert_int_equal(created, 1);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(access(stale, F_OK), -1);

    /* loading again yields the same key, and it signs */
    assert_int_equal(crypto_key_load_or_create(path, pk2, sk2, &created), 0);
    assert_int_equal(created, 0);
    assert_memory_equal(pk, pk2, 32);
    assert_memory_equal(sk, sk2, 64);
    uint8_t sig[64];
    crypto_ed25519_sign(sig, "m", 1, sk2);
    assert_int_equal(crypto_ed25519_verify(sig, "m", 1, pk), 0);
    assert_int_equal(crypto_pubkey_load(path, pk3), 0);
    assert_memory_equal(pk3, pk, 32);

    /* public key file */
    assert_int_equal(crypto_pubkey_write(pubpath, pk), 0);
    assert_int_equal(crypto_pubkey_write(pubpath, pk), -EEXIST);
    memset(pk3, 0, 32);
    assert_int_equal(crypto_pubkey_load(pubpath, pk3), 0);
    assert_memory_equal(pk3, pk, 32);
    assert_int_equal(crypto_key_load(pubpath, pk2, sk2), -EPERM); /* 0644, and not a secret key */

    /* group/world readable: refused, even though the content is fine */
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(crypto_key_load(path, pk2, sk2), -EPERM);
    assert_int_equal(crypto_key_load_or_create(path, pk2, sk2, &created), -EPERM);
    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(crypto_key_load(path, pk2, sk2), -EPERM);
    assert_int_equal(chmod(path, 0400), 0);
    assert_int_equal(crypto_key_load(path, pk2, sk2), 0);

    /* malformed files */
    write_file(bad, "ledgermq-ed25519-secret-key-v1\npublic AAAA\nseed AAAA\n", 0600);
    assert_int_equal(crypto_key_load(bad, pk2, sk2), -EINVAL);
    unlink(bad);
    /* a public key that does not match the seed */
    char content[256], b64pk[64], b64seed[64];
    uint8_t seed[32] = {1};
    crypto_b64_encode(pk, 32, b64pk, sizeof b64pk);
    crypto_b64_encode(seed, 32, b64seed, sizeof b64seed);
    snprintf(content, sizeof content, "ledgermq-ed25519-secret-key-v1\npublic %s\nseed %s\n", b64pk,
             b64seed);
    write_file(bad, content, 0600);
    assert_int_equal(crypto_key_load(bad, pk2, sk2), -EINVAL);
    unlink(bad);
    /* trailing garbage */
    crypto_ed25519_seed_keypair(pk2, sk2, seed);
    crypto_b64_encode(pk2, 32, b64pk, sizeof b64pk);
    snprintf(content, sizeof content, "ledgermq-ed25519-secret-key-v1\npublic %s\nseed %s\nx\n",
             b64pk, b64seed);
    write_file(bad, content, 0600);
    assert_int_equal(crypto_key_load(bad, pk2, sk2), -EINVAL);
    unlink(bad);
    snprintf(content, sizeof content, "ledgermq-ed25519-secret-key-v1\npublic %s\nseed %s\n", b64pk,
             b64seed);
    write_file(bad, content, 0600);
    assert_int_equal(crypto_key_load(bad, pk3, sk2), 0);
    assert_memory_equal(pk3, pk2, 32);
    unlink(bad);

    /* a directory is not a key file */
    assert_int_equal(crypto_key_load(dir, pk2, sk2), -EPERM);

    unlink(path);
    unlink(pubpath);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256),  cmocka_unit_test(test_crc32c),
        cmocka_unit_test(test_base64),  cmocka_unit_test(test_hex_utf8),
        cmocka_unit_test(test_ed25519), cmocka_unit_test(test_key_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
