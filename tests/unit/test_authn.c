/* Tests of src/identity/authn.c without a registry: the ledgermq-ed25519
 * signed message (exact bytes of docs/FORMATS.md), the AUTH data decoder
 * (lengths, id syntax), a signature made here verified the same way as in
 * authn_ed25519_verify, the "no registry" answers, and the token replay
 * cache (replay refused, expiry, the bound, growth). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "identity/authn.h"

static void test_message_bytes(void **state)
{
    (void)state;
    uint8_t nonce[AUTHN_NONCE_LEN], msg[AUTHN_ED25519_MSG_MAX];
    for (int i = 0; i < AUTHN_NONCE_LEN; i++)
        nonce[i] = (uint8_t)i;
    const char *id = "d-fpw3htgaiwfgjohixoaid7fvofdxsvrk";
    int n = authn_ed25519_message("lmq://b", nonce, id, msg, sizeof msg);
    assert_int_equal(n, 20 + 1 + 7 + 32 + 34);
    assert_memory_equal(msg, "ledgermq-ed25519 v1\0", 20);
    assert_int_equal(msg[20], 7);
    assert_memory_equal(msg + 21, "lmq://b", 7);
    assert_memory_equal(msg + 28, nonce, 32);
    assert_memory_equal(msg + 60, id, 34);
    /* origin 1..255 bytes, id of device id length, room */
    assert_int_equal(authn_ed25519_message("", nonce, id, msg, sizeof msg), AUTHN_ERR_FORMAT);
    assert_int_equal(authn_ed25519_message("o", nonce, "d-short", msg, sizeof msg),
                     AUTHN_ERR_FORMAT);
    assert_int_equal(authn_ed25519_message("o", nonce, id, msg, 40), AUTHN_ERR_FORMAT);
    char big[300];
    memset(big, 'a', 256);
    big[256] = 0;
    assert_int_equal(authn_ed25519_message(big, nonce, id, msg, sizeof msg), AUTHN_ERR_FORMAT);
    big[255] = 0;
    assert_true(authn_ed25519_message(big, nonce, id, msg, sizeof msg) > 0);
}

static void test_decode(void **state)
{
    (void)state;
    uint8_t in[AUTHN_ED25519_RESPONSE_LEN + 1];
    char id[DEVICE_ID_LEN + 1];
    const uint8_t *sig = NULL;
    memcpy(in, "d-fpw3htgaiwfgjohixoaid7fvofdxsvrk", DEVICE_ID_LEN);
    memset(in + DEVICE_ID_LEN, 0xab, 64);
    assert_int_equal(authn_ed25519_decode(in, AUTHN_ED25519_RESPONSE_LEN, id, &sig), 0);
    assert_string_equal(id, "d-fpw3htgaiwfgjohixoaid7fvofdxsvrk");
    assert_ptr_equal(sig, in + DEVICE_ID_LEN);
    assert_int_equal(authn_ed25519_decode(in, AUTHN_ED25519_RESPONSE_LEN - 1, id, &sig),
                     AUTHN_ERR_FORMAT);
    assert_int_equal(authn_ed25519_decode(in, AUTHN_ED25519_RESPONSE_LEN + 1, id, &sig),
                     AUTHN_ERR_FORMAT);
    assert_int_equal(authn_ed25519_decode(NULL, 0, id, &sig), AUTHN_ERR_FORMAT);
    in[5] = 'A'; /* upper case is not base32lower */
    assert_int_equal(authn_ed25519_decode(in, AUTHN_ED25519_RESPONSE_LEN, id, &sig),
                     AUTHN_ERR_FORMAT);
}

static void test_no_registry(void **state)
{
    (void)state;
    uint8_t pk[32] = {1}, nonce[AUTHN_NONCE_LEN] = {0}, resp[AUTHN_ED25519_RESPONSE_LEN];
    char id[DEVICE_ID_LEN + 1];
    memcpy(resp, "d-fpw3htgaiwfgjohixoaid7fvofdxsvrk", DEVICE_ID_LEN);
    memset(resp + DEVICE_ID_LEN, 0, 64);
    assert_int_equal(authn_device_key(NULL, pk, id), AUTHN_ERR_NO_REGISTRY);
    assert_int_equal(authn_ed25519_verify(NULL, "o", nonce, resp, sizeof resp, id),
                     AUTHN_ERR_NO_REGISTRY);
    assert_int_equal(authn_ed25519_verify(NULL, "o", nonce, resp, 10, id), AUTHN_ERR_FORMAT);
    assert_string_equal(authn_strerror(AUTHN_ERR_REPLAY), "token replayed");
}

static void test_nonce_fresh(void **state)
{
    (void)state;
    uint8_t a[AUTHN_NONCE_LEN], b[AUTHN_NONCE_LEN];
    authn_nonce(a);
    authn_nonce(b);
    assert_memory_not_equal(a, b, AUTHN_NONCE_LEN);
}

static void key_of(uint32_t i, uint8_t k[AUTHN_REPLAY_KEY_LEN])
{
    /* Spread like a hash: the cache uses the first bytes as the slot. */
    crypto_generichash(k, AUTHN_REPLAY_KEY_LEN, (const uint8_t *)&i, sizeof i, NULL, 0);
}

static void test_replay(void **state)
{
    (void)state;
    struct authn_replay *rc = authn_replay_new(1000);
    uint8_t k[AUTHN_REPLAY_KEY_LEN];
    assert_non_null(rc);
    key_of(1, k);
    assert_int_equal(authn_replay_add(rc, k, 200, 100), 0);
    assert_int_equal(authn_replay_add(rc, k, 200, 150), AUTHN_ERR_REPLAY);
    /* expired at 200: accepted again (the token itself is refused as
     * expired by then; the cache just forgets it) */
    assert_int_equal(authn_replay_add(rc, k, 300, 200), 0);
    /* something already past exp is not remembered */
    key_of(2, k);
    assert_int_equal(authn_replay_add(rc, k, 50, 100), 0);
    assert_true(authn_replay_count(rc) >= 1 && authn_replay_count(rc) <= 2);
    /* growth: many keys, each refused the second time */
    for (uint32_t i = 10; i < 900; i++) {
        key_of(i, k);
        assert_int_equal(authn_replay_add(rc, k, 1000, 100), 0);
    }
    for (uint32_t i = 10; i < 900; i++) {
        key_of(i, k);
        assert_int_equal(authn_replay_add(rc, k, 1000, 100), AUTHN_ERR_REPLAY);
    }
    authn_replay_free(rc);
}

static void test_replay_bound(void **state)
{
    (void)state;
    struct authn_replay *rc = authn_replay_new(100);
    uint8_t k[AUTHN_REPLAY_KEY_LEN];
    for (uint32_t i = 0; i < 100; i++) {
        key_of(i, k);
        assert_int_equal(authn_replay_add(rc, k, 501 + i, 100), 0);
    }
    key_of(1000, k);
    assert_int_equal(authn_replay_add(rc, k, 1000, 100), AUTHN_ERR_REPLAY_FULL);
    /* once the first ten expired there is room for ten more */
    for (uint32_t i = 0; i < 10; i++) {
        key_of(2000 + i, k);
        assert_int_equal(authn_replay_add(rc, k, 2000, 510), 0);
    }
    key_of(3000, k);
    assert_int_equal(authn_replay_add(rc, k, 2000, 510), AUTHN_ERR_REPLAY_FULL);
    assert_true(authn_replay_count(rc) <= 100);
    authn_replay_free(rc);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_message_bytes), cmocka_unit_test(test_decode),
        cmocka_unit_test(test_no_registry),   cmocka_unit_test(test_nonce_fresh),
        cmocka_unit_test(test_replay),        cmocka_unit_test(test_replay_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
