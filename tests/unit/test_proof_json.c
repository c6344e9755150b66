/* Tests of src/ledger/proof_json.c: the consistency proof JSON of
 * $ledger/consistency written and parsed back, real proofs from a small
 * tree verified after the round trip, and every malformed shape refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ledger/merkle.h"
#include "ledger/proof_json.h"

static uint8_t leaves[13][32];

static int get_node(void *ctx, unsigned level, uint64_t index, uint8_t out[32])
{
    (void)ctx;
    if (level == 0) {
        memcpy(out, leaves[index], 32);
        return 0;
    }
    uint8_t l[32], r[32];
    get_node(ctx, level - 1, 2 * index, l);
    get_node(ctx, level - 1, 2 * index + 1, r);
    merkle_node_hash(l, r, out);
    return 0;
}

static void test_roundtrip_and_verify(void **state)
{
    (void)state;
    for (int i = 0; i < 13; i++) {
        uint8_t rec[1] = {(uint8_t)i};
        merkle_leaf_hash(rec, 1, leaves[i]);
    }
    for (uint64_t old = 1; old <= 13; old++) {
        for (uint64_t nw = old; nw <= 13; nw++) {
            uint8_t proof[MERKLE_MAX_PROOF][32], back[MERKLE_MAX_PROOF][32];
            size_t n = 0, n2;
            if (old < nw)
                assert_int_equal(merkle_consistency_proof(old, nw, get_node, NULL, proof, &n), 0);
            char json[4096];
            ssize_t w =
                proof_json_write_consistency(old, nw, MERKLE_CPROOF(proof), n, json, sizeof json);
            assert_true(w > 0);
            assert_int_equal((size_t)w, strlen(json));
            uint64_t o2, n2s;
            assert_int_equal(proof_json_parse_consistency(json, (size_t)w, &o2, &n2s, back, &n2),
                             0);
            assert_true(o2 == old && n2s == nw && n2 == n);
            uint8_t r1[32], r2[32];
            assert_int_equal(merkle_root(old, get_node, NULL, r1), 0);
            assert_int_equal(merkle_root(nw, get_node, NULL, r2), 0);
            assert_int_equal(merkle_verify_consistency(old, nw, r1, r2, MERKLE_CPROOF(back), n2),
                             0);
        }
    }
}

static void test_exact_form_and_space(void **state)
{
    (void)state;
    uint8_t proof[1][32];
    memset(proof, 0, sizeof proof);
    char json[256];
    ssize_t w = proof_json_write_consistency(3, 7, MERKLE_CPROOF(proof), 1, json, sizeof json);
    assert_string_equal(json, "{\"old_size\": 3, \"new_size\": 7, \"proof\": "
                              "[\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"]}");
    assert_int_equal(w, (ssize_t)strlen(json));
    for (size_t cap = 0; cap < (size_t)w + 1; cap++)
        assert_int_equal(proof_json_write_consistency(3, 7, MERKLE_CPROOF(proof), 1, json, cap),
                         PROOF_JSON_ERR_SPACE);
}

static void test_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "{}",
        "[]",
        "{\"old_size\": 3, \"new_size\": 7}",
        "{\"old_size\": 3, \"proof\": []}",
        "{\"old_size\": 3, \"new_size\": 7, \"proof\": [], \"x\": 1}",
        "{\"old_size\": 3, \"old_size\": 3, \"new_size\": 7, \"proof\": []}",
        "{\"old_size\": 03, \"new_size\": 7, \"proof\": []}",
        "{\"old_size\": -3, \"new_size\": 7, \"proof\": []}",
        "{\"old_size\": 3.0, \"new_size\": 7, \"proof\": []}",
        "{\"old_size\": 18446744073709551616, \"new_size\": 7, \"proof\": []}",
        "{\"old_size\": 3, \"new_size\": 7, \"proof\": [\"AAAA\"]}",
        "{\"old_size\": 3, \"new_size\": 7, \"proof\": "
        "[\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=\"]}",
        "{\"old_size\": 3, \"new_size\": 7, \"proof\": [,]}",
        "{\"old_size\": 3, \"new_size\": 7, \"proof\": []} x",
        "{\"old_size\": 3, \"new_size\": 7, \"proof\": []",
        "{\"old\\u005fsize\": 3, \"new_size\": 7, \"proof\": []}",
        "{\"error\": \"not_found\", \"reason\": \"x\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t proof[MERKLE_MAX_PROOF][32];
        uint64_t o, n;
        size_t k;
        assert_int_equal(proof_json_parse_consistency(bad[i], strlen(bad[i]), &o, &n, proof, &k),
                         PROOF_JSON_ERR_MALFORMED);
    }
    /* 65 hashes: more than any proof has */
    char big[65 * 48 + 64];
    size_t len =
        (size_t)snprintf(big, sizeof big, "{\"old_size\": 1, \"new_size\": 2, \"proof\": [");
    for (int i = 0; i < 65; i++)
        len += (size_t)snprintf(big + len, sizeof big - len, "%s\"%s\"", i ? "," : "",
                                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    len += (size_t)snprintf(big + len, sizeof big - len, "]}");
    uint8_t proof[MERKLE_MAX_PROOF][32];
    uint64_t o, n;
    size_t k;
    assert_int_equal(proof_json_parse_consistency(big, len, &o, &n, proof, &k),
                     PROOF_JSON_ERR_MALFORMED);
    /* whitespace and member order are free */
    const char *ok = " {\n\"proof\" : [ ] ,\t\"new_size\":5 ,\"old_size\":5 }\r\n";
    assert_int_equal(proof_json_parse_consistency(ok, strlen(ok), &o, &n, proof, &k), 0);
    assert_true(o == 5 && n == 5 && k == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_and_verify),
        cmocka_unit_test(test_exact_form_and_space),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
