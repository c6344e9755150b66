/* Tests of src/ledger/record.c: the documented example records (their hex
 * is pinned here and in docs/FORMATS.md), round trips, generic decoding of
 * unknown kinds and versions, and one rejection per rule. With
 * LMQ_PRINT_EXAMPLES=1 it prints the examples' hex (to refresh the docs);
 * with LMQ_FORMAT_EXAMPLES_DIR=<dir> it writes them there as .cbor files
 * for the independent Python check (tests/integration/test_formats_python.py). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crypto/hash.h"
#include "crypto/note.h"
#include "crypto/sign.h"
#include "util/cbor.h"
#include "ledger/record.h"

#define B(s) ((struct ledger_bytes){(const uint8_t *)(s), sizeof(s) - 1})

static uint8_t cose_example[18 + 64];
static uint8_t digest_example[32];
static char vkeys[3][NOTE_VKEY_MAX];

static void make_fixtures(void)
{
    /* A COSE_Sign1 shape: 18([h'a10127' (alg EdDSA), {4: 'truck7'}, nil, sig]) */
    static const uint8_t head[15] = {0xd2, 0x84, 0x43, 0xa1, 0x01, 0x27, 0xa1, 0x04,
                                     0x46, 't',  'r',  'u',  'c',  'k',  '7'};
    memcpy(cose_example, head, sizeof head);
    cose_example[15] = 0xf6;
    cose_example[16] = 0x58;
    cose_example[17] = 0x40;
    memset(cose_example + 18, 0xab, sizeof cose_example - 18);
    /* digest = SHA-256(salt || payload), salt = 32 x 0x11 */
    uint8_t salt[32];
    memset(salt, 0x11, sizeof salt);
    const char payload[] = "{\"lat\":48.1374,\"lon\":11.5755}";
    const void *parts[2] = {salt, payload};
    size_t lens[2] = {32, sizeof payload - 1};
    crypto_sha256_parts(parts, lens, 2, digest_example);
    for (int i = 0; i < 3; i++) {
        uint8_t seed[32], pk[32], sk[64];
        memset(seed, i + 1, sizeof seed);
        assert_int_equal(crypto_ed25519_seed_keypair(pk, sk, seed), 0);
        struct note_verifier v;
        assert_int_equal(note_verifier_init(&v, "ledger.example/plant1", pk), 0);
        assert_true(note_verifier_format(&v, vkeys[i], sizeof vkeys[i]) > 0);
    }
}

static void example_message(struct ledger_record *r)
{
    memset(r, 0, sizeof *r);
    r->kind = LEDGER_KIND_MESSAGE;
    r->msg.topic = B("plant1/line3/temp");
    r->msg.payload = B("{\"t\":21.5}");
    r->msg.publisher = B("meter-0042");
    r->msg.client_id = B("meter-0042");
    r->msg.broker_time_ms = 1767225600123ull;
    r->msg.ingress_node = B("node-a");
}

static void example_signed_message(struct ledger_record *r)
{
    memset(r, 0, sizeof *r);
    r->kind = LEDGER_KIND_MESSAGE;
    r->msg.topic = B("fleet/truck7/gps");
    r->msg.payload_digest = (struct ledger_bytes){digest_example, 32};
    r->msg.publisher = B("truck7");
    r->msg.client_id = B("truck7-modem");
    r->msg.has_device_seq = true;
    r->msg.device_seq = 42;
    r->msg.has_device_time = true;
    r->msg.device_time_ms = 1767225599000ull;
    r->msg.broker_time_ms = 1767225600456ull;
    r->msg.ingress_node = B("node-b");
    r->msg.cose = (struct ledger_bytes){cose_example, sizeof cose_example};
}

static void example_config(struct ledger_record *r)
{
    memset(r, 0, sizeof *r);
    r->kind = LEDGER_KIND_CONFIG;
    r->config.origin = B("ledger.example/plant1");
    r->config.n_node_keys = 3;
    for (int i = 0; i < 3; i++)
        r->config.node_keys[i] = (struct ledger_bytes){(const uint8_t *)vkeys[i], strlen(vkeys[i])};
    r->config.has_quorum = true;
    r->config.quorum = 2;
    r->config.params = B("batch_ms=10");
}

static const char want_message_hex[] =
    "a8000101010271706c616e74312f6c696e65332f74656d70034a7b2274223a32312e357d056a6d657465722d303034"
    "32"
    "066a6d657465722d30303432091b0000019b76daa87b0a666e6f64652d61";
static const char want_signed_hex[] = "ab000101010270666c6565742f747275636b372f67707304582005cc1ee7"
                                      "c4da6496ebc8de6ffd3eab003d0c1b8ac2c0"
                                      "1d3655e8bb99526acc260566747275636b37066c747275636b372d6d6f64"
                                      "656d07182a081b0000019b76daa418091b00"
                                      "00019b76daa9c80a666e6f64652d620b5852d28443a10127a10446747275"
                                      "636b37f65840abababababababababababab"
                                      "abababababababababababababababababababababababababababababab"
                                      "abababababababababababababababababab"
                                      "abababab";
static const char want_config_hex[] =
    "a60002010102756c65646765722e6578616d706c652f706c616e74310383784b6c65646765722e6578616d706c652f"
    "70"
    "6c616e74312b34326461626462342b4159714934393130436647562f564c624c54793658584c4b5a776d2f485a5153"
    "47"
    "2f4e306941473044323963784b6c65646765722e6578616d706c652f706c616e74312b34353037333331342b415945"
    "35"
    "6477366f6652646656714e555a734e4d66737a4c6a597152744f34336f6c33324431755079624f55784b6c65646765"
    "72"
    "2e6578616d706c652f706c616e74312b30653836646537322b4165314a4b4d596f30634c4736756b444f4a425a6c57"
    "45"
    "7057536336584750354e6a624252685373687a66520402056b62617463685f6d733d3130";

static void emit_example(const char *name, const uint8_t *buf, size_t len, const char *want)
{
    char hex[4096];
    crypto_hex_encode(buf, len, hex, sizeof hex);
    if (getenv("LMQ_PRINT_EXAMPLES"))
        printf("%s %s\n", name, hex);
    const char *dir = getenv("LMQ_FORMAT_EXAMPLES_DIR");
    if (dir != NULL) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s.cbor", dir, name);
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(buf, 1, len, f), len);
        fclose(f);
    }
    if (want[0] != '\0' && strcmp(hex, want) != 0)
        fail_msg("%s changed: %s (update docs/FORMATS.md if intended)", name, hex);
}

static void test_examples_roundtrip(void **state)
{
    (void)state;
    make_fixtures();
    uint8_t buf[1024], buf2[1024];
    size_t len, len2;
    struct ledger_record r, d;

    example_message(&r);
    assert_int_equal(ledger_record_encode(&r, buf, sizeof buf, &len), 0);
    assert_int_equal(cbor_validate_deterministic(buf, len), 0);
    emit_example("record-message", buf, len, want_message_hex);
    assert_int_equal(ledger_record_decode(buf, len, &d), 0);
    assert_true(d.known);
    assert_int_equal(d.kind, 1);
    assert_int_equal(d.version, 1);
    assert_int_equal(d.n_fields, 8);
    assert_int_equal(d.msg.topic.len, 17);
    assert_memory_equal(d.msg.topic.ptr, "plant1/line3/temp", 17);
    assert_memory_equal(d.msg.payload.ptr, "{\"t\":21.5}", 10);
    assert_null(d.msg.payload_digest.ptr);
    assert_null(d.msg.cose.ptr);
    assert_false(d.msg.has_device_seq);
    assert_true(d.msg.broker_time_ms == 1767225600123ull);
    assert_int_equal(ledger_record_encode(&d, buf2, sizeof buf2, &len2), 0);
    assert_int_equal(len2, len);
    assert_memory_equal(buf2, buf, len);

    example_signed_message(&r);
    assert_int_equal(ledger_record_encode(&r, buf, sizeof buf, &len), 0);
    emit_example("record-message-signed", buf, len, want_signed_hex);
    assert_int_equal(ledger_record_decode(buf, len, &d), 0);
    assert_int_equal(d.n_fields, 11);
    assert_true(d.msg.has_device_seq && d.msg.device_seq == 42);
    assert_true(d.msg.has_device_time && d.msg.device_time_ms == 1767225599000ull);
    assert_int_equal(d.msg.payload_digest.len, 32);
    assert_null(d.msg.payload.ptr);
    assert_int_equal(d.msg.cose.len, sizeof cose_example);
    assert_int_equal(ledger_record_encode(&d, buf2, sizeof buf2, &len2), 0);
    assert_memory_equal(buf2, buf, len);

    example_config(&r);
    assert_int_equal(ledger_record_encode(&r, buf, sizeof buf, &len), 0);
    emit_example("record-config", buf, len, want_config_hex);
    assert_int_equal(ledger_record_decode(buf, len, &d), 0);
    assert_int_equal(d.kind, LEDGER_KIND_CONFIG);
    assert_int_equal(d.config.n_node_keys, 3);
    assert_true(d.config.has_quorum && d.config.quorum == 2);
    assert_memory_equal(d.config.origin.ptr, "ledger.example/plant1", 21);
    assert_int_equal(ledger_record_encode(&d, buf2, sizeof buf2, &len2), 0);
    assert_memory_equal(buf2, buf, len);

    /* an empty payload is present, not absent */
    example_message(&r);
    r.msg.payload = (struct ledger_bytes){(const uint8_t *)"", 0};
    assert_int_equal(ledger_record_encode(&r, buf, sizeof buf, &len), 0);
    assert_int_equal(ledger_record_decode(buf, len, &d), 0);
    assert_non_null(d.msg.payload.ptr);
    assert_int_equal(d.msg.payload.len, 0);

    assert_int_equal(ledger_record_encode(&r, buf, 10, &len), CBOR_ERR_SPACE);
}

static void test_encode_rejects(void **state)
{
    (void)state;
    make_fixtures();
    uint8_t buf[1024];
    size_t len;
    struct ledger_record r;
    example_message(&r);
    r.msg.payload_digest = (struct ledger_bytes){digest_example, 32};
    assert_int_equal(ledger_record_encode(&r, buf, sizeof buf, &len), LEDGER_REC_ERR_PAYLOAD);
    r.msg.payload.ptr = NULL;
    r.msg.payload_digest.len = 31;
    assert_int_equal(ledger_record_encode(&r, buf, sizeof buf, &len), LEDGER_REC_ERR_FIELD);
    example_message(&r);
    r.msg.topic.ptr = NULL;
    assert_int_equal(ledger_record_encode(&r, buf, sizeof buf, &len), LEDGER_REC_ERR_MISSING);
    example_message(&r);
    r.msg.topic = B("bad\xff");
    assert_int_equal(ledger_record_encode(&r, buf, sizeof buf, &len), LEDGER_REC_ERR_FIELD);
    example_message(&r);
    r.kind = 6;
    assert_int_equal(ledger_record_encode(&r, buf, sizeof buf, &len), LEDGER_REC_ERR_KIND);
    example_message(&r);
    r.version = 2;
    assert_int_equal(ledger_record_encode(&r, buf, sizeof buf, &len), LEDGER_REC_ERR_KIND);
    example_config(&r);
    r.config.quorum = 4;
    assert_int_equal(ledger_record_encode(&r, buf, sizeof buf, &len), LEDGER_REC_ERR_FIELD);
    example_config(&r);
    r.config.node_keys[1] = B("not a key");
    assert_int_equal(ledger_record_encode(&r, buf, sizeof buf, &len), LEDGER_REC_ERR_FIELD);
    example_config(&r);
    r.config.origin = B("ledger.example/other"); /* node keys named differently */
    assert_int_equal(ledger_record_encode(&r, buf, sizeof buf, &len), LEDGER_REC_ERR_FIELD);
    example_config(&r);
    r.config.origin = B("has space");
    assert_int_equal(ledger_record_encode(&r, buf, sizeof buf, &len), LEDGER_REC_ERR_FIELD);
}

/* Builds a message-like map from (key, uint value or text) pairs. */
static size_t build(uint8_t *buf, size_t cap, const char *spec)
{
    /* spec: space-separated hex bytes, written verbatim */
    size_t n = 0;
    for (const char *p = spec; *p;) {
        if (*p == ' ') {
            p++;
            continue;
        }
        assert_true(n < cap);
        assert_int_equal(crypto_hex_decode(p, 2, buf + n, 1), 1);
        n++;
        p += 2;
    }
    return n;
}

static void test_decode_rejects(void **state)
{
    (void)state;
    uint8_t buf[512];
    size_t n;
    struct ledger_record d;
    /* minimal valid message: {0:1, 1:1, 2:"t", 3:h'', 5:"p", 6:"", 9:0, 10:"n"} */
    const char *ok = "a8 0001 0101 026174 0340 056170 0660 0900 0a616e";
    n = build(buf, sizeof buf, ok);
    assert_int_equal(ledger_record_decode(buf, n, &d), 0);
    static const struct {
        const char *spec;
        int err;
    } cases[] = {
        {"a8 0001 0101 026174 0340 056170 0660 0900 0a616e 00", CBOR_ERR_TRAILING},
        {"a8 0001 0101 026174 0340 056170 0660 180900 0a616e", CBOR_ERR_NONCANONICAL},
        {"a8 0001 0101 026174 0340 056170 0660 1900 00 0a616e", CBOR_ERR_NONCANONICAL},
        {"a8 0001 0101 026174 0340 0660 056170 0900 0a616e", CBOR_ERR_MAP_ORDER},
        {"a8 0101 0001 026174 0340 056170 0660 0900 0a616e", CBOR_ERR_MAP_ORDER},
        {"a7 0001 0101 026174 0340 056170 0660 0900", LEDGER_REC_ERR_MISSING}, /* no ingress */
        {"a7 0001 0101 026174 0340 056170 0660 0a616e",
         LEDGER_REC_ERR_MISSING},                                              /* no broker time */
        {"a7 0001 0101 0340 056170 0660 0900 0a616e", LEDGER_REC_ERR_MISSING}, /* no topic */
        {"a7 0001 0101 026174 056170 0660 0900 0a616e", LEDGER_REC_ERR_PAYLOAD}, /* no payload */
        {"a9 0001 0101 026174 0340 0440 056170 0660 0900 0a616e", LEDGER_REC_ERR_PAYLOAD},
        {"a8 0001 0101 026174 0440 056170 0660 0900 0a616e",
         LEDGER_REC_ERR_FIELD}, /* digest not 32 */
        {"a9 0001 0101 026174 0340 056170 0660 0900 0a616e 0c00", LEDGER_REC_ERR_UNKNOWN},
        {"a8 0001 0101 024174 0340 056170 0660 0900 0a616e",
         LEDGER_REC_ERR_FIELD}, /* topic as bstr */
        {"a8 0001 0101 026174 0340 056170 0660 0920 0a616e",
         LEDGER_REC_ERR_FIELD}, /* negative time */
        {"a8 0001 0101 026174 0340 056170 0660 0900 0a61ff", CBOR_ERR_UTF8},
        {"a8 0001 0101 0260 0340 056170 0660 0900 0a616e", LEDGER_REC_ERR_FIELD}, /* empty topic */
        {"a8 0001 0100 026174 0340 056170 0660 0900 0a616e", LEDGER_REC_ERR_FIELD}, /* version 0 */
        {"a1 0001", LEDGER_REC_ERR_MISSING},
        {"a2 0001 0201", LEDGER_REC_ERR_MISSING},
        {"a0", LEDGER_REC_ERR_MISSING},
        {"82 0001", LEDGER_REC_ERR_KIND},
        {"a2 0020 0101", LEDGER_REC_ERR_FIELD},         /* kind not uint */
        {"a3 0003 0101 6161 00", LEDGER_REC_ERR_FIELD}, /* non-uint key in an unknown kind */
        {"5f ff", CBOR_ERR_INDEFINITE},
        {"", CBOR_ERR_TRUNCATED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        n = build(buf, sizeof buf, cases[i].spec);
        int rc = ledger_record_decode(n ? buf : (const uint8_t *)"", n, &d);
        if (rc != cases[i].err)
            fail_msg("case %zu (%s): got %d (%s), want %d", i, cases[i].spec, rc,
                     ledger_record_strerror(rc), cases[i].err);
    }
}

static void test_generic_kinds(void **state)
{
    (void)state;
    uint8_t buf[256];
    size_t n;
    struct ledger_record d;
    /* kind 6 (not yet defined) with arbitrary fields */
    n = build(buf, sizeof buf, "a4 0006 0101 02a1616b6176 0383010203");
    assert_int_equal(ledger_record_decode(buf, n, &d), 0);
    assert_false(d.known);
    assert_int_equal(d.kind, 6);
    assert_int_equal(d.n_fields, 4);
    assert_ptr_equal(d.raw.ptr, buf);
    assert_int_equal(d.raw.len, n);
    /* a future version of a known kind with a field we do not know */
    n = build(buf, sizeof buf, "a3 0001 0102 1864f5");
    assert_int_equal(ledger_record_decode(buf, n, &d), 0);
    assert_false(d.known);
    assert_int_equal(d.version, 2);
    /* kind 99 */
    n = build(buf, sizeof buf, "a2 001863 0101");
    assert_int_equal(ledger_record_decode(buf, n, &d), 0);
    assert_false(d.known);
    /* generic records are still held to determinism */
    n = build(buf, sizeof buf, "a3 0003 0101 1802f5");
    assert_int_equal(ledger_record_decode(buf, n, &d), CBOR_ERR_NONCANONICAL);
    for (int e = -100; e >= -104; e--)
        assert_non_null(ledger_record_strerror(e));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_examples_roundtrip),
        cmocka_unit_test(test_encode_rejects),
        cmocka_unit_test(test_decode_rejects),
        cmocka_unit_test(test_generic_kinds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
