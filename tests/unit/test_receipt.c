/* Tests of src/ledger/checkpoint.c and src/ledger/receipt.c: a ledger of
 * five records checkpointed and signed by three nodes (quorum policy), a
 * receipt written, parsed back and verified, every tampering detected,
 * strict parsing of checkpoint bodies, receipt JSON and tlog-proof text.
 * With LMQ_FORMAT_EXAMPLES_DIR=<dir> it writes the examples (receipt JSON,
 * checkpoint note, node verifier keys, tlog-proof, records) there for the
 * independent Python check; with LMQ_PRINT_EXAMPLES=1 it prints them. */
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
#include "ledger/checkpoint.h"
#include "ledger/merkle.h"
#include "ledger/receipt.h"
#include "ledger/record.h"

#define ORIGIN "ledger.example/plant1"
#define NREC 5
#define DASH "\xe2\x80\x94"

static uint8_t records[NREC][256];
static size_t record_len[NREC];
static uint8_t nodes[8][NREC][32]; /* complete nodes by level */
static uint8_t pk[3][32], sk[3][64];
static struct note_verifier vk[3];
static char cp_note[4096];
static size_t cp_note_len;
static uint8_t root[32];

static int get_node(void *ctx, unsigned level, uint64_t index, uint8_t out[32])
{
    (void)ctx;
    memcpy(out, nodes[level][index], 32);
    return 0;
}

static void emit(void *ctx, unsigned level, uint64_t index, const uint8_t h[32])
{
    (void)ctx;
    memcpy(nodes[level][index], h, 32);
}

static void write_example(const char *name, const void *data, size_t len)
{
    const char *dir = getenv("LMQ_FORMAT_EXAMPLES_DIR");
    if (getenv("LMQ_PRINT_EXAMPLES"))
        printf("----- %s\n%.*s\n", name, (int)len, (const char *)data);
    if (dir == NULL)
        return;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    static const char *const topics[NREC] = {"plant1/line1/temp", "plant1/line2/temp",
                                             "plant1/line3/temp", "plant1/line3/pressure",
                                             "plant1/line4/temp"};
    struct merkle_frontier f;
    merkle_frontier_init(&f);
    for (int i = 0; i < NREC; i++) {
        struct ledger_record r;
        char payload[32];
        memset(&r, 0, sizeof r);
        r.kind = LEDGER_KIND_MESSAGE;
        r.msg.topic = (struct ledger_bytes){(const uint8_t *)topics[i], strlen(topics[i])};
        snprintf(payload, sizeof payload, "{\"t\":%d.5}", 20 + i);
        r.msg.payload = (struct ledger_bytes){(const uint8_t *)payload, strlen(payload)};
        r.msg.publisher = (struct ledger_bytes){(const uint8_t *)"meter-0042", 10};
        r.msg.client_id = r.msg.publisher;
        r.msg.broker_time_ms = 1767225600000ull + (uint64_t)i;
        r.msg.ingress_node = (struct ledger_bytes){(const uint8_t *)"node-a", 6};
        assert_int_equal(ledger_record_encode(&r, records[i], sizeof records[i], &record_len[i]),
                         0);
        uint8_t leaf[32];
        merkle_leaf_hash(records[i], record_len[i], leaf);
        assert_int_equal(merkle_frontier_append(&f, leaf, emit, NULL), 0);
    }
    merkle_frontier_root(&f, root);

    for (int i = 0; i < 3; i++) {
        uint8_t seed[32];
        memset(seed, i + 1, sizeof seed);
        assert_int_equal(crypto_ed25519_seed_keypair(pk[i], sk[i], seed), 0);
        assert_int_equal(note_verifier_init(&vk[i], ORIGIN, pk[i]), 0);
    }
    struct checkpoint cp;
    memset(&cp, 0, sizeof cp);
    cp.origin = ORIGIN;
    cp.origin_len = strlen(ORIGIN);
    cp.size = NREC;
    memcpy(cp.root, root, 32);
    cp.has_block = true;
    cp.block_height = 2;
    crypto_sha256("block 2 header", 14, cp.block_hash);
    char n1[4096], n2[4096];
    ssize_t l = checkpoint_sign(&cp, sk[0], pk[0], n1, sizeof n1);
    assert_true(l > 0);
    l = note_add_signature(n1, (size_t)l, ORIGIN, sk[1], pk[1], n2, sizeof n2);
    assert_true(l > 0);
    l = note_add_signature(n2, (size_t)l, ORIGIN, sk[2], pk[2], cp_note, sizeof cp_note);
    assert_true(l > 0);
    cp_note_len = (size_t)l;
    return 0;
}

static void test_checkpoint_quorum(void **state)
{
    (void)state;
    bool sb[3];
    struct checkpoint cp;
    assert_int_equal(checkpoint_verify(cp_note, cp_note_len, vk, 3, 3, ORIGIN, sb, &cp), 0);
    assert_true(sb[0] && sb[1] && sb[2]);
    assert_int_equal(cp.size, NREC);
    assert_memory_equal(cp.root, root, 32);
    assert_true(cp.has_block);
    assert_int_equal(cp.block_height, 2);
    assert_int_equal(cp.ext_len, 0);
    assert_int_equal(checkpoint_verify(cp_note, cp_note_len, vk, 3, 4, NULL, NULL, NULL),
                     NOTE_ERR_QUORUM);
    assert_int_equal(checkpoint_verify(cp_note, cp_note_len, &vk[1], 1, 2, NULL, NULL, NULL),
                     NOTE_ERR_QUORUM);
    assert_int_equal(checkpoint_verify(cp_note, cp_note_len, &vk[1], 1, 1, NULL, NULL, NULL), 0);
    assert_int_equal(
        checkpoint_verify(cp_note, cp_note_len, vk, 3, 2, "ledger.example/other", NULL, NULL),
        CHECKPOINT_ERR_ORIGIN);
    /* a note whose text is not a checkpoint */
    char other[512];
    ssize_t l = note_sign("just text\n", 10, ORIGIN, sk[0], pk[0], other, sizeof other);
    assert_true(l > 0);
    assert_int_equal(checkpoint_verify(other, (size_t)l, vk, 3, 1, NULL, NULL, NULL),
                     CHECKPOINT_ERR_MALFORMED);

    char vkey[NOTE_VKEY_MAX], all[3 * NOTE_VKEY_MAX + 3] = "";
    for (int i = 0; i < 3; i++) {
        assert_true(note_verifier_format(&vk[i], vkey, sizeof vkey) > 0);
        strcat(all, vkey);
        strcat(all, "\n");
    }
    write_example("node-vkeys.txt", all, strlen(all));
    write_example("checkpoint.note", cp_note, cp_note_len);
}

/* Quorum over notes carrying 1, 2 and 3 of the node signatures (made with
 * crypto/note.c): K distinct given keys must have signed; a key given twice
 * counts once, a stranger's signature line is ignored. */
static void test_checkpoint_quorum_1_to_3_signatures(void **state)
{
    (void)state;
    char notes[3][4096];
    size_t len[3];
    const char *text;
    size_t text_len;
    size_t n_sigs;
    assert_int_equal(note_split(cp_note, cp_note_len, &text, &text_len, &n_sigs), 0);
    ssize_t l = note_sign(text, text_len, ORIGIN, sk[0], pk[0], notes[0], sizeof notes[0]);
    assert_true(l > 0);
    len[0] = (size_t)l;
    for (int k = 1; k < 3; k++) {
        l = note_add_signature(notes[k - 1], len[k - 1], ORIGIN, sk[k], pk[k], notes[k],
                               sizeof notes[k]);
        assert_true(l > 0);
        len[k] = (size_t)l;
    }
    for (int sigs = 1; sigs <= 3; sigs++)
        for (size_t quorum = 1; quorum <= 3; quorum++)
            assert_int_equal(checkpoint_verify(notes[sigs - 1], len[sigs - 1], vk, 3, quorum,
                                               ORIGIN, NULL, NULL),
                             (int)quorum <= sigs ? 0 : NOTE_ERR_QUORUM);
    /* one key given twice: one signer, not two */
    struct note_verifier twice[3] = {vk[0], vk[0], vk[1]};
    bool sb[3];
    assert_int_equal(checkpoint_verify(notes[0], len[0], twice, 2, 2, NULL, sb, NULL),
                     NOTE_ERR_QUORUM);
    assert_int_equal(checkpoint_verify(notes[1], len[1], twice, 3, 2, NULL, sb, NULL), 0);
    assert_true(sb[0] && sb[1] && sb[2]);
    struct note_verified res;
    assert_int_equal(note_verify(notes[1], len[1], twice, 3, NULL, &res), 0);
    assert_int_equal(res.n_verified, 2);
    /* a stranger's signature (a key not given) is ignored */
    uint8_t spk[32], ssk[64], seed[32];
    memset(seed, 9, sizeof seed);
    assert_int_equal(crypto_ed25519_seed_keypair(spk, ssk, seed), 0);
    char withs[4096];
    l = note_add_signature(notes[0], len[0], "stranger.example", ssk, spk, withs, sizeof withs);
    assert_true(l > 0);
    assert_int_equal(checkpoint_verify(withs, (size_t)l, vk, 3, 1, ORIGIN, NULL, NULL), 0);
    assert_int_equal(checkpoint_verify(withs, (size_t)l, vk, 3, 2, ORIGIN, NULL, NULL),
                     NOTE_ERR_QUORUM);
}

static void test_checkpoint_format_parse(void **state)
{
    (void)state;
    struct checkpoint cp, back;
    char body[1024];
    memset(&cp, 0, sizeof cp);
    cp.origin = "example.com/log";
    cp.origin_len = 15;
    cp.size = 0;
    crypto_sha256("", 0, cp.root);
    ssize_t l = checkpoint_format(&cp, body, sizeof body);
    assert_int_equal(
        l, (ssize_t)strlen("example.com/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"));
    assert_string_equal(body, "example.com/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n");
    assert_int_equal(checkpoint_parse(body, (size_t)l, &back), 0);
    assert_int_equal(back.size, 0);
    assert_false(back.has_block);

    cp.size = UINT64_MAX;
    cp.has_block = true;
    cp.block_height = 7;
    memset(cp.block_hash, 0xab, 32);
    cp.ext = "other extension\n";
    cp.ext_len = 16;
    l = checkpoint_format(&cp, body, sizeof body);
    assert_true(l > 0);
    assert_string_equal(
        body,
        "example.com/log\n18446744073709551615\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
        "block 7 abababababababababababababababababababababababababababababababab\n"
        "other extension\n");
    assert_int_equal(checkpoint_parse(body, (size_t)l, &back), 0);
    assert_true(back.size == UINT64_MAX && back.has_block && back.block_height == 7);
    assert_memory_equal(back.block_hash, cp.block_hash, 32);
    assert_int_equal(back.ext_len, 16);
    assert_memory_equal(back.ext, "other extension\n", 16);

    cp.ext = "block 8 00\n";
    cp.ext_len = 11;
    assert_int_equal(checkpoint_format(&cp, body, sizeof body), CHECKPOINT_ERR_ARGS);
    cp.ext = NULL;
    cp.ext_len = 0;
    cp.origin = "bad origin";
    cp.origin_len = 10;
    assert_int_equal(checkpoint_format(&cp, body, sizeof body), CHECKPOINT_ERR_ARGS);
    cp.origin = "example.com/log";
    cp.origin_len = 15;
    assert_int_equal(checkpoint_format(&cp, body, 20), CHECKPOINT_ERR_SPACE);

#define R "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
#define H "abababababababababababababababababababababababababababababababab"
    static const char *const bad[] = {
        "",
        "o\n5\n" R,       /* no final newline */
        "\n5\n" R "\n",   /* empty origin */
        "o\n05\n" R "\n", /* leading zero */
        "o\n+5\n" R "\n",
        "o\n-1\n" R "\n",
        "o\n5 \n" R "\n",
        "o\n18446744073709551616\n" R "\n", /* 2^64 */
        "o\n\n" R "\n",
        "o\n5\n",
        "o\n5\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuA==\n", /* 31 bytes */
        "o\n5\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFV=\n", /* non-canonical */
        "o\n5\n" R "\n\n",                                      /* empty extension line */
        "o\n5\n" R "\nblock 1\n",
        "o\n5\n" R "\nblock 01 " H "\n",
        "o\n5\n" R "\nblock 1 " H "0\n",
        "o\n5\n" R "\nblock 1 ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB\n",
        "o\n5\n" R "\nblock 1 " H "\nblock 2 " H "\n", /* two block lines */
        "o\n5\n" R "\nx\nblock 1 " H "\n",             /* block line not first */
        "o\n5\n" R "\nx\ty\n",                         /* control character */
        "o\x01\n5\n" R "\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = checkpoint_parse(bad[i], strlen(bad[i]), &back);
        if (rc != CHECKPOINT_ERR_MALFORMED)
            fail_msg("case %zu accepted: %s", i, bad[i]);
    }
    const char *ok = "o p\n5\n" R "\nblock 1 " H "\nx\n";
    assert_int_equal(checkpoint_parse(ok, strlen(ok), &back), 0);
    assert_int_equal(back.origin_len, 3);
    assert_int_equal(back.ext_len, 2);
#undef R
#undef H
}

static void make_receipt(struct receipt *r, uint64_t index)
{
    memset(r, 0, sizeof *r);
    r->index = index;
    r->tree_size = NREC;
    r->record = records[index];
    r->record_len = record_len[index];
    assert_int_equal(merkle_inclusion_proof(index, NREC, get_node, NULL, r->proof, &r->n_proof), 0);
    r->checkpoint = cp_note;
    r->checkpoint_len = cp_note_len;
}

static void test_receipt_roundtrip(void **state)
{
    (void)state;
    for (uint64_t idx = 0; idx < NREC; idx++) {
        struct receipt r, p;
        char json[8192];
        static uint8_t scratch[8192];
        make_receipt(&r, idx);
        ssize_t l = receipt_write(&r, json, sizeof json);
        assert_true(l > 0);
        assert_int_equal(strlen(json), (size_t)l);
        assert_int_equal(receipt_parse(json, (size_t)l, scratch, (size_t)l, &p), 0);
        assert_int_equal(p.index, idx);
        assert_int_equal(p.tree_size, NREC);
        assert_int_equal(p.record_len, record_len[idx]);
        assert_memory_equal(p.record, records[idx], p.record_len);
        assert_int_equal(p.n_proof, r.n_proof);
        assert_memory_equal(p.proof, r.proof, 32 * r.n_proof);
        assert_int_equal(p.checkpoint_len, cp_note_len);
        assert_memory_equal(p.checkpoint, cp_note, cp_note_len);
        struct checkpoint cp;
        assert_int_equal(receipt_verify(&p, vk, 3, 2, ORIGIN, &cp), 0);
        assert_int_equal(cp.size, NREC);
        if (idx == 3) {
            write_example("receipt.json", json, (size_t)l);
            char tp[8192];
            static const uint8_t extra[] = "ledgermq receipt";
            ssize_t tl = receipt_write_tlog_proof(&r, extra, sizeof extra - 1, tp, sizeof tp);
            assert_true(tl > 0);
            write_example("receipt.tlog-proof", tp, (size_t)tl);
            write_example("record-3.cbor", records[3], record_len[3]);
            struct receipt q;
            const char *eb;
            size_t ebl;
            assert_int_equal(receipt_parse_tlog_proof(tp, (size_t)tl, &q, &eb, &ebl), 0);
            assert_int_equal(q.index, 3);
            assert_int_equal(q.tree_size, NREC);
            assert_int_equal(q.n_proof, r.n_proof);
            assert_memory_equal(q.proof, r.proof, 32 * r.n_proof);
            assert_int_equal(q.checkpoint_len, cp_note_len);
            uint8_t ex[64];
            assert_int_equal(crypto_b64_decode(eb, ebl, ex, sizeof ex),
                             (ssize_t)(sizeof extra - 1));
            q.record = records[3];
            q.record_len = record_len[3];
            assert_int_equal(receipt_verify(&q, vk, 3, 3, ORIGIN, NULL), 0);
            assert_int_equal(strncmp(tp, "c2sp.org/tlog-proof@v1\nextra ", 29), 0);
            /* without extra */
            tl = receipt_write_tlog_proof(&r, NULL, 0, tp, sizeof tp);
            assert_int_equal(strncmp(tp, "c2sp.org/tlog-proof@v1\nindex 3\n", 31), 0);
            assert_int_equal(receipt_parse_tlog_proof(tp, (size_t)tl, &q, &eb, &ebl), 0);
            assert_null(eb);
            tp[24] = 'X'; /* "index" -> "iXdex" */
            assert_int_equal(receipt_parse_tlog_proof(tp, (size_t)tl, &q, NULL, NULL),
                             RECEIPT_ERR_MALFORMED);
        }
    }
}

static void test_receipt_tampering(void **state)
{
    (void)state;
    struct receipt r;
    make_receipt(&r, 3);
    assert_int_equal(receipt_verify(&r, vk, 3, 3, ORIGIN, NULL), 0);
    uint8_t rec[256];
    memcpy(rec, records[3], record_len[3]);
    rec[20] ^= 1;
    r.record = rec;
    assert_int_equal(receipt_verify(&r, vk, 3, 1, ORIGIN, NULL), RECEIPT_ERR_PROOF);
    make_receipt(&r, 3);
    r.index = 2;
    assert_int_equal(receipt_verify(&r, vk, 3, 1, ORIGIN, NULL), RECEIPT_ERR_PROOF);
    make_receipt(&r, 3);
    r.tree_size = 6;
    assert_int_equal(receipt_verify(&r, vk, 3, 1, ORIGIN, NULL), RECEIPT_ERR_SIZE);
    make_receipt(&r, 3);
    r.proof[0][5] ^= 0x80;
    assert_int_equal(receipt_verify(&r, vk, 3, 1, ORIGIN, NULL), RECEIPT_ERR_PROOF);
    make_receipt(&r, 3);
    r.n_proof--;
    assert_int_equal(receipt_verify(&r, vk, 3, 1, ORIGIN, NULL), RECEIPT_ERR_PROOF);
    make_receipt(&r, 3);
    r.index = NREC;
    assert_int_equal(receipt_verify(&r, vk, 3, 1, ORIGIN, NULL), RECEIPT_ERR_PROOF);
    /* a checkpoint that a node did not sign / signed differently */
    make_receipt(&r, 3);
    char bad[4096];
    memcpy(bad, cp_note, cp_note_len);
    char *sz = strstr(bad, "\n5\n");
    sz[1] = '6';
    r.checkpoint = bad;
    r.tree_size = 6;
    assert_int_equal(receipt_verify(&r, vk, 3, 1, ORIGIN, NULL), NOTE_ERR_BAD_SIGNATURE);
    /* quorum not met with the keys the auditor trusts */
    make_receipt(&r, 3);
    assert_int_equal(receipt_verify(&r, &vk[0], 1, 2, ORIGIN, NULL), NOTE_ERR_QUORUM);
    uint8_t other_pk[32] = {9};
    struct note_verifier stranger;
    assert_int_equal(note_verifier_init(&stranger, ORIGIN, other_pk), 0);
    assert_int_equal(receipt_verify(&r, &stranger, 1, 1, ORIGIN, NULL), NOTE_ERR_UNVERIFIED);
}

static void test_receipt_json_strict(void **state)
{
    (void)state;
    static uint8_t scratch[8192];
    struct receipt p;
    /* hand-written receipts (with a fake but well-formed checkpoint) */
    const char *cpj =
        "\"o\\n1\\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\\n\\n\\u2014 o AAAAAAAA\\n\"";
    char json[2048];
    snprintf(json, sizeof json,
             " {\n \"checkpoint\" : %s ,\"proof\":[],\r\n\t\"record\":\"AA==\", \"tree_size\": 1, "
             "\"index\": 0 } \n",
             cpj);
    assert_int_equal(receipt_parse(json, strlen(json), scratch, sizeof scratch, &p), 0);
    assert_int_equal(p.record_len, 1);
    assert_int_equal(p.n_proof, 0);
    assert_int_equal(p.tree_size, 1);
    const char *want_cp =
        "o\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n" DASH " o AAAAAAAA\n";
    assert_int_equal(p.checkpoint_len, strlen(want_cp));
    assert_memory_equal(p.checkpoint, want_cp, p.checkpoint_len);

    /* escapes: \/ \" \\ \t and a surrogate pair */
    snprintf(json, sizeof json,
             "{\"index\": 0, \"tree_size\": 1, \"record\": \"\", \"proof\": [], \"checkpoint\": "
             "\"a\\/b\\\"c\\\\d\\te\\ud83d\\ude00\"}");
    assert_int_equal(receipt_parse(json, strlen(json), scratch, sizeof scratch, &p), 0);
    assert_int_equal(p.checkpoint_len, 13);
    assert_memory_equal(p.checkpoint, "a/b\"c\\d\te\xf0\x9f\x98\x80", 13);
    assert_int_equal(p.record_len, 0);

    static const char *const bad[] = {
        "",
        "[]",
        "{}",
        "{\"index\": 0, \"tree_size\": 1, \"record\": \"\", \"proof\": []}",
        "{\"index\": 0, \"tree_size\": 1, \"record\": \"\", \"proof\": [], \"checkpoint\": \"x\"} "
        "x",
        "{\"index\": 0, \"index\": 1, \"record\": \"\", \"proof\": [], \"checkpoint\": \"x\"}",
        "{\"index\": 0, \"tree_size\": 1, \"record\": \"\", \"proof\": [], \"checkpoint\": \"x\", "
        "\"extra\": 1}",
        "{\"index\": 0, \"tree_size\": 1, \"record\": \"\", \"proof\": [], \"note\": \"x\"}",
        "{\"index\": 00, \"tree_size\": 1, \"record\": \"\", \"proof\": [], \"checkpoint\": \"x\"}",
        "{\"index\": -1, \"tree_size\": 1, \"record\": \"\", \"proof\": [], \"checkpoint\": \"x\"}",
        "{\"index\": 1.0, \"tree_size\": 1, \"record\": \"\", \"proof\": [], \"checkpoint\": "
        "\"x\"}",
        "{\"index\": 1e3, \"tree_size\": 1, \"record\": \"\", \"proof\": [], \"checkpoint\": "
        "\"x\"}",
        "{\"index\": \"1\", \"tree_size\": 1, \"record\": \"\", \"proof\": [], \"checkpoint\": "
        "\"x\"}",
        "{\"index\": 18446744073709551616, \"tree_size\": 1, \"record\": \"\", \"proof\": [], "
        "\"checkpoint\": \"x\"}",
        "{\"index\": 0, \"tree_size\": 1, \"record\": \"A\", \"proof\": [], \"checkpoint\": \"x\"}",
        "{\"index\": 0, \"tree_size\": 1, \"record\": \"AA==\\n\", \"proof\": [], \"checkpoint\": "
        "\"x\"}",
        "{\"index\": 0, \"tree_size\": 1, \"record\": \"\", \"proof\": [\"AA==\"], \"checkpoint\": "
        "\"x\"}",
        "{\"index\": 0, \"tree_size\": 1, \"record\": \"\", \"proof\": [,], \"checkpoint\": \"x\"}",
        "{\"index\": 0, \"tree_size\": 1, \"record\": \"\", \"proof\": "
        "[\"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\",], "
        "\"checkpoint\": \"x\"}",
        "{\"index\": 0, \"tree_size\": 1, \"record\": \"\", \"proof\": [], \"checkpoint\": "
        "\"x\n\"}",
        "{\"index\": 0, \"tree_size\": 1, \"record\": \"\", \"proof\": [], \"checkpoint\": "
        "\"x\\q\"}",
        "{\"index\": 0, \"tree_size\": 1, \"record\": \"\", \"proof\": [], \"checkpoint\": "
        "\"\\ud83d\"}",
        "{\"index\": 0, \"tree_size\": 1, \"record\": \"\", \"proof\": [], \"checkpoint\": "
        "\"\\ude00\"}",
        "{\"index\": 0, \"tree_size\": 1, \"record\": \"\", \"proof\": [], \"checkpoint\": "
        "\"\\u12\"}",
        "{\"index\": 0, \"tree_size\": 1, \"record\": \"\", \"proof\": [], \"checkpoint\": \"x}",
        "{\"index\": 0, \"tree_size\": 1, \"record\": \"\", \"proof\": [], \"checkpoint\": "
        "\"\xff\"}",
        "{\"index\": 0 \"tree_size\": 1, \"record\": \"\", \"proof\": [], \"checkpoint\": \"x\"}",
        "{\"index\": 0, \"tree_size\": 1, \"record\": \"\", \"proof\": [], \"checkpoint\": \"x\"",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = receipt_parse(bad[i], strlen(bad[i]), scratch, sizeof scratch, &p);
        if (rc != RECEIPT_ERR_MALFORMED)
            fail_msg("case %zu accepted (%d): %s", i, rc, bad[i]);
    }
    /* 65 proof hashes */
    size_t o = (size_t)snprintf(json, sizeof json,
                                "{\"index\": 0, \"tree_size\": 1, \"record\": \"\", \"proof\": [");
    char big[8192];
    memcpy(big, json, o);
    for (int i = 0; i < 65; i++)
        o += (size_t)snprintf(big + o, sizeof big - o,
                              "%s\"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\"", i ? "," : "");
    o += (size_t)snprintf(big + o, sizeof big - o, "], \"checkpoint\": \"x\"}");
    assert_int_equal(receipt_parse(big, o, scratch, sizeof scratch, &p), RECEIPT_ERR_MALFORMED);
    /* scratch too small */
    const char *small = "{\"index\": 0, \"tree_size\": 1, \"record\": \"AAAA\", \"proof\": [], "
                        "\"checkpoint\": \"xyz\"}";
    assert_int_equal(receipt_parse(small, strlen(small), scratch, 4, &p), RECEIPT_ERR_MALFORMED);
    assert_int_equal(receipt_parse(small, strlen(small), scratch, 6, &p), 0);
    /* writer: out of space */
    struct receipt r;
    make_receipt(&r, 1);
    assert_int_equal(receipt_write(&r, json, 100), RECEIPT_ERR_SPACE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checkpoint_quorum),
        cmocka_unit_test(test_checkpoint_quorum_1_to_3_signatures),
        cmocka_unit_test(test_checkpoint_format_parse),
        cmocka_unit_test(test_receipt_roundtrip),
        cmocka_unit_test(test_receipt_tampering),
        cmocka_unit_test(test_receipt_json_strict),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
