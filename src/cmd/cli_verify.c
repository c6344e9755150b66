/* `ledgermq verify-receipt` and `ledgermq verify-consistency`: offline
 * checks that need nothing but files and verifier keys (no data dir). A
 * failed check exits 1; input that cannot be read or parsed exits 2. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cli.h"
#include "crypto/hash.h"
#include "ledger/checkpoint.h"
#include "ledger/merkle.h"
#include "ledger/receipt.h"

#define MAX_KEYS 32

struct key_opts {
    char *keys[MAX_KEYS];
    size_t n_keys;
    uint64_t quorum;
    const char *origin;
};

/* Consumes --key/--quorum/--origin at argv[*i]; 1 if not one of them. */
static int key_opt(int argc, char **argv, int *i, struct key_opts *k)
{
    if (strcmp(argv[*i], "--key") == 0 && *i + 1 < argc) {
        if (k->n_keys == MAX_KEYS)
            return cli_error(CLI_ERR, "at most %d --key options", MAX_KEYS);
        k->keys[k->n_keys++] = argv[++*i];
        return 0;
    }
    if (strcmp(argv[*i], "--quorum") == 0 && *i + 1 < argc) {
        if (cli_parse_u64(argv[++*i], &k->quorum) || k->quorum == 0)
            return cli_error(CLI_ERR, "--quorum: a positive number");
        return 0;
    }
    if (strcmp(argv[*i], "--origin") == 0 && *i + 1 < argc) {
        k->origin = argv[++*i];
        return 0;
    }
    return 1;
}

static int keys_ready(struct key_opts *k, struct note_verifier *v)
{
    if (k->n_keys == 0)
        return cli_error(CLI_ERR, "at least one --key VKEY is required (see `ledgermq key show`)");
    if (k->quorum > k->n_keys)
        return cli_error(CLI_ERR, "--quorum %llu exceeds the %zu keys given",
                         (unsigned long long)k->quorum, k->n_keys);
    return cli_parse_keys(k->keys, k->n_keys, v);
}

static const char *verify_reason(int rc)
{
    switch (rc) {
    case NOTE_ERR_BAD_SIGNATURE:
        return "a checkpoint signature is invalid";
    case NOTE_ERR_UNVERIFIED:
        return "the checkpoint is not signed by any of the given keys";
    case NOTE_ERR_QUORUM:
        return "the checkpoint is signed by fewer keys than the quorum";
    case NOTE_ERR_MALFORMED:
        return "the checkpoint note is malformed";
    case CHECKPOINT_ERR_MALFORMED:
        return "the checkpoint body is malformed";
    case CHECKPOINT_ERR_ORIGIN:
        return "the checkpoint origin is not the expected one";
    case RECEIPT_ERR_SIZE:
        return "tree_size differs from the checkpoint's size";
    case RECEIPT_ERR_PROOF:
        return "the inclusion proof does not lead to the checkpoint root";
    case RECEIPT_ERR_MALFORMED:
        return "the receipt is malformed";
    case MERKLE_ERR_ARGS:
        return "index or sizes out of range";
    case MERKLE_ERR_PROOF_SIZE:
        return "the proof has the wrong number of hashes";
    case MERKLE_ERR_MISMATCH:
        return "the proof does not reproduce the roots";
    default:
        return "verification failed";
    }
}

/* One receipt file: 0 verified (line on stdout), else the exit code. */
static int verify_receipt_file(const char *file, struct key_opts *k, const struct note_verifier *v)
{
    char *json;
    size_t len;
    int rc = cli_read_file(file, &json, &len);
    if (rc)
        return cli_error(CLI_ERR, "%s: %s", file, strerror(-rc));
    uint8_t *scratch = malloc(len + 1);
    struct receipt r;
    rc = scratch ? receipt_parse(json, len, scratch, len + 1, &r) : -ENOMEM;
    if (rc) {
        free(scratch);
        free(json);
        return cli_error(CLI_ERR, "%s: not a receipt (%s)", file, verify_reason(rc));
    }
    struct checkpoint cp;
    rc = receipt_verify(&r, v, k->n_keys, k->quorum, k->origin, &cp);
    if (rc) {
        free(scratch);
        free(json);
        return cli_error(rc == RECEIPT_ERR_MALFORMED || rc == NOTE_ERR_MALFORMED ? CLI_ERR
                                                                                 : CLI_FAIL,
                         "%s: NOT verified: %s", file, verify_reason(rc));
    }
    char root[65];
    cli_hex(cp.root, 32, root);
    uint8_t leaf[32];
    char lh[65];
    merkle_leaf_hash(r.record, r.record_len, leaf);
    cli_hex(leaf, 32, lh);
    printf("verified: record %llu (leaf %s) is in the log %.*s at tree size %llu, root %s\n",
           (unsigned long long)r.index, lh, (int)cp.origin_len, cp.origin,
           (unsigned long long)cp.size, root);
    free(scratch);
    free(json);
    return CLI_OK;
}

/* Several files: each is checked and reported; the exit code is the worst
 * (2 over 1 over 0). */
int cli_verify_receipt(struct cli *c, int argc, char **argv)
{
    (void)c;
    struct key_opts k = {0};
    int first = 0, nfiles = 0;
    for (int i = 1; i < argc; i++) {
        int r = key_opt(argc, argv, &i, &k);
        if (r == 0)
            continue;
        if (r != 1)
            return r;
        argv[nfiles++ + 1] = argv[i]; /* files collect in argv[1..] */
        first = 1;
    }
    if (!first)
        return cli_error(CLI_ERR, "verify-receipt FILE... --key VKEY: FILE is required");
    struct note_verifier v[MAX_KEYS];
    int rc = keys_ready(&k, v);
    if (rc)
        return rc;
    int worst = CLI_OK;
    for (int i = 1; i <= nfiles; i++) {
        rc = verify_receipt_file(argv[i], &k, v);
        if (rc > worst)
            worst = rc;
    }
    return worst;
}

/* Parses the `log consistency` output. */
static int parse_consistency(char *text, uint64_t *old_size, uint64_t *new_size,
                             uint8_t proof[][32], size_t *n)
{
    char *save = NULL;
    char *line = strtok_r(text, "\n", &save);
    if (!line || strcmp(line, "ledgermq consistency v1") != 0)
        return -1;
    line = strtok_r(NULL, "\n", &save);
    if (!line || strncmp(line, "old ", 4) != 0 || cli_parse_u64(line + 4, old_size))
        return -1;
    line = strtok_r(NULL, "\n", &save);
    if (!line || strncmp(line, "new ", 4) != 0 || cli_parse_u64(line + 4, new_size))
        return -1;
    *n = 0;
    while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
        if (*n == MERKLE_MAX_PROOF || crypto_b64_decode(line, strlen(line), proof[*n], 32) != 32)
            return -1;
        (*n)++;
    }
    return 0;
}

int cli_verify_consistency(struct cli *c, int argc, char **argv)
{
    (void)c;
    struct key_opts k = {0};
    const char *files[3];
    int nf = 0;
    for (int i = 1; i < argc; i++) {
        int r = key_opt(argc, argv, &i, &k);
        if (r == 0)
            continue;
        if (r != 1)
            return r;
        if (nf == 3)
            return cli_error(CLI_ERR, "unexpected argument '%s'", argv[i]);
        files[nf++] = argv[i];
    }
    if (nf != 3)
        return cli_error(CLI_ERR,
                         "verify-consistency OLD_CHECKPOINT NEW_CHECKPOINT PROOF --key VKEY");
    struct note_verifier v[MAX_KEYS];
    int rc = keys_ready(&k, v);
    if (rc)
        return rc;
    char *text[3] = {0};
    size_t len[3];
    int code = CLI_OK;
    for (int i = 0; i < 3; i++) {
        rc = cli_read_file(files[i], &text[i], &len[i]);
        if (rc) {
            code = cli_error(CLI_ERR, "%s: %s", files[i], strerror(-rc));
            goto out;
        }
    }
    struct checkpoint cp[2];
    for (int i = 0; i < 2; i++) {
        rc = checkpoint_verify(text[i], len[i], v, k.n_keys, k.quorum, k.origin, NULL, &cp[i]);
        if (rc) {
            code = cli_error(rc == NOTE_ERR_MALFORMED || rc == CHECKPOINT_ERR_MALFORMED ? CLI_ERR
                                                                                        : CLI_FAIL,
                             "%s: NOT verified: %s", files[i], verify_reason(rc));
            goto out;
        }
    }
    if (cp[0].origin_len != cp[1].origin_len ||
        memcmp(cp[0].origin, cp[1].origin, cp[0].origin_len) != 0) {
        code = cli_error(CLI_FAIL, "the two checkpoints are of different logs (origins differ)");
        goto out;
    }
    uint64_t old_size, new_size;
    uint8_t proof[MERKLE_MAX_PROOF][32];
    size_t n;
    if (parse_consistency(text[2], &old_size, &new_size, proof, &n) != 0) {
        code = cli_error(CLI_ERR, "%s: not a `ledgermq log consistency` proof", files[2]);
        goto out;
    }
    if (old_size != cp[0].size || new_size != cp[1].size) {
        code = cli_error(CLI_ERR,
                         "%s: proof is for sizes %llu -> %llu, the checkpoints have %llu "
                         "and %llu",
                         files[2], (unsigned long long)old_size, (unsigned long long)new_size,
                         (unsigned long long)cp[0].size, (unsigned long long)cp[1].size);
        goto out;
    }
    rc = merkle_verify_consistency(old_size, new_size, cp[0].root, cp[1].root,
                                   (const uint8_t(*)[32])proof, n);
    if (rc) {
        code = cli_error(CLI_FAIL, "NOT consistent: %s", verify_reason(rc));
        goto out;
    }
    printf("verified: the checkpoint at size %llu extends the one at size %llu (origin %.*s)\n",
           (unsigned long long)new_size, (unsigned long long)old_size, (int)cp[0].origin_len,
           cp[0].origin);
out:
    for (int i = 0; i < 3; i++)
        free(text[i]);
    return code;
}

/* For the commands that verify what a broker sends (cli_receipt.c). */
const char *cli_verify_reason(int rc)
{
    return verify_reason(rc);
}
