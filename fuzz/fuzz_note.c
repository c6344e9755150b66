/* libFuzzer target: signed-note parser and verifier, verifier-key parser,
 * checkpoint body parser, receipt JSON parser and tlog-proof parser, all
 * fed the same bytes. Invariants: a checkpoint body that parses (with a
 * valid origin) formats back to the same bytes; a receipt that parses
 * writes back to JSON that parses to the same receipt. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/note.h"
#include "crypto/sign.h"
#include "ledger/checkpoint.h"
#include "ledger/receipt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct note_verifier verifiers[3];
static int ready;

static void init(void)
{
    /* the keys of the seed corpus: the Go sumdb example key, and the
     * ledger.example/plant1 node keys of tests/unit/test_receipt.c */
    static const char go_vkey[] =
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    if (note_verifier_parse(go_vkey, strlen(go_vkey), &verifiers[0]) != 0)
        abort();
    for (int i = 0; i < 2; i++) {
        uint8_t seed[32], pk[32], sk[64];
        memset(seed, i + 1, sizeof seed);
        if (crypto_ed25519_seed_keypair(pk, sk, seed) != 0 ||
            note_verifier_init(&verifiers[1 + i], "ledger.example/plant1", pk) != 0)
            abort();
    }
    ready = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    if (!ready)
        init();

    bool signed_by[3];
    struct note_verified res;
    (void)note_verify(text, size, verifiers, 3, signed_by, &res);
    const char *body;
    size_t body_len, n_sigs;
    if (note_split(text, size, &body, &body_len, &n_sigs) == 0) {
        struct checkpoint cp;
        (void)checkpoint_parse(body, body_len, &cp);
    }
    struct note_verifier v;
    (void)note_verifier_parse(text, size, &v);

    struct checkpoint cp;
    if (checkpoint_parse(text, size, &cp) == 0 && note_name_valid(cp.origin, cp.origin_len)) {
        char out[CHECKPOINT_MAX_BODY + 1];
        ssize_t n = checkpoint_format(&cp, out, sizeof out);
        if (n != (ssize_t)size || memcmp(out, text, size) != 0)
            abort(); /* parse and format must be inverse */
    }

    uint8_t *scratch = malloc(size + 1);
    if (scratch == NULL)
        return 0;
    struct receipt r;
    if (receipt_parse(text, size, scratch, size + 1, &r) == 0) {
        size_t cap = 4 * size + 4096;
        char *json = malloc(cap);
        uint8_t *scratch2 = malloc(cap);
        struct receipt r2;
        if (json != NULL && scratch2 != NULL) {
            ssize_t n = receipt_write(&r, json, cap);
            if (n < 0 || receipt_parse(json, (size_t)n, scratch2, cap, &r2) != 0 ||
                r2.index != r.index || r2.tree_size != r.tree_size ||
                r2.record_len != r.record_len || r2.n_proof != r.n_proof ||
                r2.checkpoint_len != r.checkpoint_len ||
                (r.record_len && memcmp(r2.record, r.record, r.record_len) != 0) ||
                memcmp(r2.proof, r.proof, 32 * r.n_proof) != 0 ||
                (r.checkpoint_len && memcmp(r2.checkpoint, r.checkpoint, r.checkpoint_len) != 0))
                abort(); /* write(parse(x)) must parse to the same receipt */
            (void)receipt_verify(&r, verifiers, 3, 1, NULL, NULL);
        }
        free(json);
        free(scratch2);
    }
    free(scratch);

    const char *extra;
    size_t extra_len;
    if (receipt_parse_tlog_proof(text, size, &r, &extra, &extra_len) == 0)
        (void)receipt_verify(&r, verifiers, 3, 1, NULL, NULL);
    return 0;
}
