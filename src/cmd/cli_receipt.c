/* `ledgermq receipt` and `ledgermq watch`: the CLI side of a running
 * broker's $ledger topics (docs/FORMATS.md "Ledger topics"). Nothing the
 * broker sends is trusted: a receipt is verified (inclusion proof against
 * its checkpoint, and the checkpoint's signatures with --key) before it is
 * printed or saved; every checkpoint `watch` sees is verified and proven
 * consistent with the previous one through $ledger/consistency.
 * Exit codes as everywhere: 0 verified, 1 verification failed (or the
 * broker does not have the record), 2 usage, connection or I/O error. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd/cli.h"
#include "cmd/cli_mqtt.h"
#include "crypto/hash.h"
#include "ledger/checkpoint.h"
#include "ledger/merkle.h"
#include "ledger/proof_json.h"
#include "ledger/receipt.h"

#define RC__MAX_KEYS 32

struct rc__keys {
    char *keys[RC__MAX_KEYS];
    size_t n;
    uint64_t quorum;
    const char *origin;
    struct note_verifier v[RC__MAX_KEYS];
};

/* --key/--quorum/--origin at argv[*i]: 1 consumed, 0 not ours, -CLI_ERR. */
static int rc__key_opt(struct rc__keys *k, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    if (strcmp(a, "--key") && strcmp(a, "--quorum") && strcmp(a, "--origin"))
        return 0;
    if (*i + 1 >= argc)
        return -cli_error(CLI_ERR, "%s needs a value", a);
    const char *v = argv[++*i];
    if (strcmp(a, "--key") == 0) {
        if (k->n == RC__MAX_KEYS)
            return -cli_error(CLI_ERR, "at most %d --key options", RC__MAX_KEYS);
        k->keys[k->n++] = (char *)v;
    } else if (strcmp(a, "--quorum") == 0) {
        if (cli_parse_u64(v, &k->quorum) || k->quorum == 0)
            return -cli_error(CLI_ERR, "--quorum: a positive number");
    } else {
        k->origin = v;
    }
    return 1;
}

static int rc__keys_ready(struct rc__keys *k)
{
    if (k->quorum > k->n)
        return cli_error(CLI_ERR, "--quorum %llu exceeds the %zu keys given",
                         (unsigned long long)k->quorum, k->n);
    return cli_parse_keys(k->keys, k->n, k->v);
}

/* An error reply {"error": ..., "reason": ...}: prints it; 1 if it was one. */
static int rc__error_reply(const struct cli_mqtt_msg *m, int *code)
{
    if (m->len < 9 || memcmp(m->payload, "{\"error\":", 9) != 0)
        return 0;
    bool not_found = strstr((const char *)m->payload, "\"not_found\"") != NULL;
    *code = cli_error(not_found ? CLI_FAIL : CLI_ERR, "the broker answered: %.*s", (int)m->len,
                      (const char *)m->payload);
    return 1;
}

/* Verifies a parsed receipt: with keys fully (receipt_verify); without,
 * only that the proof leads to the checkpoint's root (said on stderr). */
static int rc__verify(const struct receipt *r, struct rc__keys *k, struct checkpoint *cp)
{
    if (k->n)
        return receipt_verify(r, k->v, k->n, k->quorum, k->origin, cp);
    const char *text;
    size_t tl, ns;
    int rc = note_split(r->checkpoint, r->checkpoint_len, &text, &tl, &ns);
    if (rc == 0)
        rc = checkpoint_parse(text, tl, cp);
    if (rc)
        return rc;
    if (k->origin &&
        (cp->origin_len != strlen(k->origin) || memcmp(cp->origin, k->origin, cp->origin_len) != 0))
        return CHECKPOINT_ERR_ORIGIN;
    if (cp->size != r->tree_size || r->index >= r->tree_size)
        return RECEIPT_ERR_SIZE;
    uint8_t leaf[32];
    merkle_leaf_hash(r->record, r->record_len, leaf);
    rc = merkle_verify_inclusion(r->index, r->tree_size, leaf, MERKLE_CPROOF(r->proof), r->n_proof,
                                 cp->root);
    return rc ? RECEIPT_ERR_PROOF : 0;
}

int cli_receipt(struct cli *c, int argc, char **argv)
{
    (void)c;
    struct cli_mqtt_opts mo = {0};
    struct rc__keys k = {0};
    const char *hash = NULL, *out = NULL, *index_s = NULL, *format = "json";
    uint64_t index = 0;
    for (int i = 1; i < argc; i++) {
        int r = cli_mqtt_opt(&mo, argc, argv, &i);
        if (r == 0)
            r = rc__key_opt(&k, argc, argv, &i);
        if (r < 0)
            return -r;
        if (r)
            continue;
        if (strcmp(argv[i], "--hash") == 0 && i + 1 < argc)
            hash = argv[++i];
        else if ((strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--out") == 0) && i + 1 < argc)
            out = argv[++i];
        else if (strcmp(argv[i], "--format") == 0 && i + 1 < argc)
            format = argv[++i];
        else if (!index_s && cli_parse_u64(argv[i], &index) == 0)
            index_s = argv[i];
        else
            return cli_error(CLI_ERR, "receipt: unexpected argument '%s'", argv[i]);
    }
    if (!mo.broker || (!hash) == (!index_s))
        return cli_error(CLI_ERR,
                         "receipt --broker HOST:PORT (INDEX | --hash HEX) [--key VKEY] [-o FILE]");
    bool tlog = strcmp(format, "tlog-proof") == 0;
    if (!tlog && strcmp(format, "json") != 0)
        return cli_error(CLI_ERR, "--format: json or tlog-proof");
    uint8_t want[32];
    if (hash && (strlen(hash) != 64 || crypto_hex_decode(hash, 64, want, 32) != 32))
        return cli_error(CLI_ERR, "--hash: the record's leaf hash, 64 hex digits");
    int rc = rc__keys_ready(&k);
    if (rc)
        return rc;
    struct cli_mqtt *m;
    if ((rc = cli_mqtt_connect(&mo, &m)) != 0)
        return rc;
    struct cli_mqtt_msg *reply = NULL;
    const char *q = hash ? hash : index_s;
    rc = cli_mqtt_request(m, "$ledger/proof", q, strlen(q), &reply);
    cli_mqtt_close(m);
    if (rc)
        return rc;
    int code = CLI_OK;
    uint8_t *scratch = NULL;
    char *tlog_text = NULL;
    if (rc__error_reply(reply, &code))
        goto done;
    struct receipt r;
    scratch = malloc(reply->len + 1);
    rc = scratch
             ? receipt_parse((const char *)reply->payload, reply->len, scratch, reply->len + 1, &r)
             : -ENOMEM;
    if (rc) {
        code =
            cli_error(CLI_FAIL, "the broker's reply is not a receipt (%s)", cli_verify_reason(rc));
        goto done;
    }
    uint8_t leaf[32];
    merkle_leaf_hash(r.record, r.record_len, leaf);
    if (hash ? memcmp(leaf, want, 32) != 0 : r.index != index) {
        code = cli_error(CLI_FAIL, "the broker sent the receipt of another record (index %llu)",
                         (unsigned long long)r.index);
        goto done;
    }
    struct checkpoint cp;
    rc = rc__verify(&r, &k, &cp);
    if (rc) {
        code = cli_error(CLI_FAIL, "receipt of record %llu NOT verified: %s",
                         (unsigned long long)r.index, cli_verify_reason(rc));
        goto done;
    }
    /* what to write: the broker's JSON as received, or the same evidence
     * as a C2SP tlog-proof (the record is not part of it) */
    const char *text = (const char *)reply->payload;
    size_t tlen = reply->len;
    if (tlog) {
        size_t cap = reply->len + 4096;
        ssize_t n =
            (tlog_text = malloc(cap)) ? receipt_write_tlog_proof(&r, NULL, 0, tlog_text, cap) : -1;
        if (n < 0) {
            code = cli_error(CLI_ERR, "cannot write the tlog-proof");
            goto done;
        }
        text = tlog_text;
        tlen = (size_t)n;
    }
    if (out) {
        FILE *f = fopen(out, "w");
        bool ok = f && fwrite(text, 1, tlen, f) == tlen && (tlog || fputc('\n', f) != EOF);
        if (f && fclose(f) != 0)
            ok = false;
        if (!ok) {
            code = cli_error(CLI_ERR, "%s: %s", out, strerror(errno));
            goto done;
        }
    } else {
        fwrite(text, 1, tlen, stdout);
        if (!tlog)
            fputc('\n', stdout);
    }
    char lh[65], root[65];
    cli_hex(leaf, 32, lh);
    cli_hex(cp.root, 32, root);
    fprintf(out ? stdout : stderr,
            "verified: record %llu (leaf %s) is in the log %.*s at tree size %llu, root %s%s\n",
            (unsigned long long)r.index, lh, (int)cp.origin_len, cp.origin,
            (unsigned long long)cp.size, root,
            k.n ? "" : " (checkpoint signature NOT checked: pass --key VKEY)");
done:
    free(tlog_text);
    free(scratch);
    free(reply);
    return code;
}

/* ---- watch ---- */

static volatile sig_atomic_t w__stop;

static void w__on_signal(int sig)
{
    (void)sig;
    w__stop = 1;
}

int cli_watch(struct cli *c, int argc, char **argv)
{
    (void)c;
    struct cli_mqtt_opts mo = {0};
    struct rc__keys k = {0};
    uint64_t count = 0, idle_s = 0;
    for (int i = 1; i < argc; i++) {
        int r = cli_mqtt_opt(&mo, argc, argv, &i);
        if (r == 0)
            r = rc__key_opt(&k, argc, argv, &i);
        if (r < 0)
            return -r;
        if (r)
            continue;
        if (strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
            if (cli_parse_u64(argv[++i], &count) || count == 0)
                return cli_error(CLI_ERR, "--count: a positive number of checkpoints");
        } else if (strcmp(argv[i], "--idle") == 0 && i + 1 < argc) {
            if (cli_parse_u64(argv[++i], &idle_s) || idle_s == 0)
                return cli_error(CLI_ERR, "--idle: a positive number of seconds");
        } else {
            return cli_error(CLI_ERR, "watch: unexpected argument '%s'", argv[i]);
        }
    }
    if (!mo.broker || k.n == 0)
        return cli_error(CLI_ERR,
                         "watch --broker HOST:PORT --key VKEY [--key VKEY2 ... --quorum K] "
                         "[--count N] [--idle S]");
    int rc = rc__keys_ready(&k);
    if (rc)
        return rc;
    struct cli_mqtt *m;
    if ((rc = cli_mqtt_connect(&mo, &m)) != 0)
        return rc;
    uint8_t sr;
    if ((rc = cli_mqtt_subscribe(m, "$ledger/checkpoint", 1, &sr)) != 0)
        goto out;
    if (sr >= 0x80) {
        rc = cli_error(CLI_ERR, "subscribing to $ledger/checkpoint refused: 0x%02x", sr);
        goto out;
    }
    signal(SIGINT, w__on_signal);
    signal(SIGTERM, w__on_signal);
    struct cli_mqtt_msg *prev = NULL; /* the last verified checkpoint (pcp views it) */
    struct checkpoint pcp;
    uint64_t seen = 0;
    while (!w__stop && (!count || seen < count)) {
        struct cli_mqtt_msg *msg;
        rc = cli_mqtt_next(m, idle_s ? (int)(idle_s * 1000) : 1000, &msg);
        if (rc == 1) {
            if (idle_s) {
                rc = cli_error(CLI_ERR, "no new checkpoint within %llu s",
                               (unsigned long long)idle_s);
                break;
            }
            rc = 0;
            continue;
        }
        if (rc)
            break;
        if (strcmp(msg->topic, "$ledger/checkpoint") != 0) {
            free(msg);
            continue;
        }
        struct checkpoint cp;
        rc = checkpoint_verify((const char *)msg->payload, msg->len, k.v, k.n, k.quorum, k.origin,
                               NULL, &cp);
        if (rc) {
            rc = cli_error(CLI_FAIL, "checkpoint NOT verified: %s:\n%.*s", cli_verify_reason(rc),
                           (int)msg->len, (const char *)msg->payload);
            free(msg);
            break;
        }
        char root[45];
        crypto_b64_encode(cp.root, 32, root, sizeof root);
        const char *how = "first";
        char howbuf[96];
        if (prev) {
            if (cp.size < pcp.size) {
                rc = cli_error(CLI_FAIL, "INCONSISTENT: tree size went back from %llu to %llu",
                               (unsigned long long)pcp.size, (unsigned long long)cp.size);
                free(msg);
                break;
            }
            if (cp.size == pcp.size) {
                if (memcmp(cp.root, pcp.root, 32) != 0) {
                    rc = cli_error(CLI_FAIL,
                                   "INCONSISTENT: two checkpoints of tree size %llu with "
                                   "different roots",
                                   (unsigned long long)cp.size);
                    free(msg);
                    break;
                }
                how = "same tree";
            } else {
                char req[48];
                struct cli_mqtt_msg *reply;
                snprintf(req, sizeof req, "%llu %llu", (unsigned long long)pcp.size,
                         (unsigned long long)cp.size);
                if ((rc = cli_mqtt_request(m, "$ledger/consistency", req, strlen(req), &reply))) {
                    free(msg);
                    break;
                }
                uint64_t os, ns;
                uint8_t proof[MERKLE_MAX_PROOF][32];
                size_t n;
                int code;
                if (rc__error_reply(reply, &code)) {
                    rc = code;
                    free(reply);
                    free(msg);
                    break;
                }
                if (proof_json_parse_consistency((const char *)reply->payload, reply->len, &os, &ns,
                                                 proof, &n) != 0 ||
                    os != pcp.size || ns != cp.size) {
                    rc = cli_error(CLI_FAIL, "the broker's consistency proof is malformed: %.*s",
                                   (int)reply->len, (const char *)reply->payload);
                    free(reply);
                    free(msg);
                    break;
                }
                free(reply);
                rc = merkle_verify_consistency(pcp.size, cp.size, pcp.root, cp.root,
                                               MERKLE_CPROOF(proof), n);
                if (rc) {
                    rc = cli_error(CLI_FAIL,
                                   "INCONSISTENT: the checkpoint at tree size %llu does not "
                                   "extend the one at %llu: %s",
                                   (unsigned long long)cp.size, (unsigned long long)pcp.size,
                                   cli_verify_reason(rc));
                    free(msg);
                    break;
                }
                snprintf(howbuf, sizeof howbuf, "consistent with %llu",
                         (unsigned long long)pcp.size);
                how = howbuf;
            }
        }
        if (cp.has_block)
            printf("checkpoint size %llu root %s block %llu: verified, %s\n",
                   (unsigned long long)cp.size, root, (unsigned long long)cp.block_height, how);
        else
            printf("checkpoint size %llu root %s: verified, %s\n", (unsigned long long)cp.size,
                   root, how);
        fflush(stdout);
        seen++;
        free(prev);
        prev = msg;
        pcp = cp;
    }
    free(prev);
out:
    cli_mqtt_close(m);
    return rc;
}
