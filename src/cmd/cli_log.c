/* `ledgermq key ...` and `ledgermq log ...`: inspect a ledger data dir,
 * import records into a stopped node's ledger, and export proofs. Reads use
 * read-only handles (no lock: safe beside a running broker); `log append`
 * and `log recover` take the ledger lock and refuse if a broker holds it. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmd/cli.h"
#include "crypto/hash.h"
#include "ledger/block.h"
#include "ledger/receipt.h"
#include "ledger/record.h"

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Exit code of a failed ledger call: 1 when the log is damaged or does not
 * extend what it signed (tampering or corruption), 2 for I/O and usage. */
static int fail_code(int rc)
{
    return rc == LEDGER_ERR_CORRUPT || rc == LEDGER_ERR_INCONSISTENT ? CLI_FAIL : CLI_ERR;
}

static int extra_arg(const char *a)
{
    return cli_error(CLI_ERR, "unexpected argument '%s' (see ledgermq --help)", a);
}

int cli_key_show(struct cli *c, int argc, char **argv)
{
    if (argc > 1)
        return extra_arg(argv[1]);
    struct ledger *l;
    int rc = cli_open_ledger(c, true, NULL, &l);
    if (rc)
        return rc;
    char vkey[NOTE_VKEY_MAX];
    ssize_t n = ledger_verifier_key(l, vkey, sizeof vkey);
    ledger_close(l);
    if (n < 0)
        return cli_error(CLI_ERR, "%s/node.key: cannot read the node public key", c->datadir);
    printf("%s\n", vkey);
    return CLI_OK;
}

int cli_log_info(struct cli *c, int argc, char **argv)
{
    if (argc > 1)
        return extra_arg(argv[1]);
    struct ledger *l;
    int rc = cli_open_ledger(c, true, NULL, &l);
    if (rc)
        return rc;
    uint8_t root[32];
    char hex[65];
    ledger_root(l, root);
    cli_hex(root, 32, hex);
    printf("origin: %s\nsize: %llu\nroot: %s\nblocks: %llu\n", ledger_origin(l),
           (unsigned long long)ledger_size(l), hex, (unsigned long long)ledger_height(l));
    char vkey[NOTE_VKEY_MAX];
    if (ledger_verifier_key(l, vkey, sizeof vkey) > 0)
        printf("key: %s\n", vkey);
    char note[LEDGER_MAX_CHECKPOINT];
    size_t len;
    if (ledger_latest_checkpoint(l, note, sizeof note, &len) == 0)
        printf("checkpoint:\n%s", note);
    ledger_close(l);
    return CLI_OK;
}

/* 1 if p[0:n] is valid UTF-8 (no overlongs, surrogates or > U+10FFFF). */
static int utf8_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t b = p[i];
        size_t k;
        uint32_t cp;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xe0) == 0xc0) {
            k = 1;
            cp = b & 0x1f;
        } else if ((b & 0xf0) == 0xe0) {
            k = 2;
            cp = b & 0x0f;
        } else if ((b & 0xf8) == 0xf0) {
            k = 3;
            cp = b & 0x07;
        } else {
            return 0;
        }
        if (n - i <= k)
            return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((p[i + j] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (p[i + j] & 0x3f);
        }
        if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += k + 1;
    }
    return 1;
}

/* JSON string of bytes that are valid UTF-8 text without NUL; else -1. */
static int json_str(FILE *f, const uint8_t *p, size_t n)
{
    if (!utf8_valid(p, n) || memchr(p, 0, n))
        return -1;
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        uint8_t ch = p[i];
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch == '\n')
            fputs("\\n", f);
        else if (ch < 0x20 || ch == 0x7f)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
    return 0;
}

static void json_b64(FILE *f, const uint8_t *p, size_t n)
{
    size_t cap = CRYPTO_B64_ENCODED_LEN(n) + 1;
    char *b = malloc(cap);
    if (!b)
        return;
    crypto_b64_encode(p, n, b, cap);
    fprintf(f, "\"%s\"", b);
    free(b);
}

static void field_text(const char *name, struct ledger_bytes v)
{
    if (!v.ptr)
        return;
    printf(",\n  \"%s\": ", name);
    if (json_str(stdout, v.ptr, v.len) != 0) {
        printf("null,\n  \"%s_base64\": ", name);
        json_b64(stdout, v.ptr, v.len);
    }
}

int cli_log_get(struct cli *c, int argc, char **argv)
{
    const char *idx_s = NULL;
    bool raw = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--raw") == 0)
            raw = true;
        else if (!idx_s)
            idx_s = argv[i];
        else
            return extra_arg(argv[i]);
    }
    uint64_t index;
    if (!idx_s || cli_parse_u64(idx_s, &index))
        return cli_error(CLI_ERR, "log get: INDEX must be a record number");
    struct ledger *l;
    int rc = cli_open_ledger(c, true, NULL, &l);
    if (rc)
        return rc;
    size_t cap = 1 << 16, len;
    uint8_t *buf = malloc(cap);
    rc = buf ? ledger_get(l, index, buf, cap, &len) : -ENOMEM;
    if (rc == -ENOSPC) {
        free(buf);
        cap = len;
        buf = malloc(cap ? cap : 1);
        rc = buf ? ledger_get(l, index, buf, cap, &len) : -ENOMEM;
    }
    if (rc) {
        int code = fail_code(rc);
        if (rc == -ERANGE)
            cli_error(code, "log get %llu: no such record (log size is %llu)",
                      (unsigned long long)index, (unsigned long long)ledger_size(l));
        else
            cli_error(code, "log get %llu: %s", (unsigned long long)index, ledger_strerror(rc));
        free(buf);
        ledger_close(l);
        return code;
    }
    if (raw) {
        char *hex = malloc(2 * len + 1);
        if (hex) {
            cli_hex(buf, len, hex);
            printf("%s\n", hex);
        }
        free(hex);
        free(buf);
        ledger_close(l);
        return hex ? CLI_OK : CLI_ERR;
    }
    uint8_t leaf[32];
    char lh[65] = "";
    if (ledger_leaf_hash(l, index, leaf) == 0)
        cli_hex(leaf, 32, lh);
    uint64_t height = 0;
    ledger_block_of_index(l, index, &height);
    printf("{\n  \"index\": %llu,\n  \"block\": %llu,\n  \"leaf_hash\": \"%s\",\n  \"size\": %zu",
           (unsigned long long)index, (unsigned long long)height, lh, len);
    struct ledger_record rec;
    rc = ledger_record_decode(buf, len, &rec);
    if (rc) {
        printf(",\n  \"decode_error\": \"%s\",\n  \"cbor_base64\": ", ledger_record_strerror(rc));
        json_b64(stdout, buf, len);
    } else if (!rec.known) {
        printf(
            ",\n  \"kind\": %llu,\n  \"version\": %llu,\n  \"known\": false,\n  \"cbor_base64\": ",
            (unsigned long long)rec.kind, (unsigned long long)rec.version);
        json_b64(stdout, buf, len);
    } else if (rec.kind == LEDGER_KIND_MESSAGE) {
        const struct ledger_message *m = &rec.msg;
        printf(",\n  \"kind\": \"message\",\n  \"version\": %llu", (unsigned long long)rec.version);
        field_text("topic", m->topic);
        field_text("payload", m->payload);
        if (m->payload_digest.ptr) {
            char dh[65];
            cli_hex(m->payload_digest.ptr, m->payload_digest.len < 32 ? m->payload_digest.len : 32,
                    dh);
            printf(",\n  \"payload_digest\": \"%s\"", dh);
        }
        field_text("publisher", m->publisher);
        field_text("client_id", m->client_id);
        if (m->has_device_seq)
            printf(",\n  \"device_seq\": %llu", (unsigned long long)m->device_seq);
        if (m->has_device_time)
            printf(",\n  \"device_time_ms\": %llu", (unsigned long long)m->device_time_ms);
        printf(",\n  \"broker_time_ms\": %llu", (unsigned long long)m->broker_time_ms);
        field_text("ingress_node", m->ingress_node);
        if (m->cose.ptr) {
            printf(",\n  \"cose_base64\": ");
            json_b64(stdout, m->cose.ptr, m->cose.len);
        }
    } else if (rec.kind == LEDGER_KIND_CONFIG) {
        const struct ledger_config *cf = &rec.config;
        printf(",\n  \"kind\": \"configuration\",\n  \"version\": %llu",
               (unsigned long long)rec.version);
        field_text("origin", cf->origin);
        printf(",\n  \"node_keys\": [");
        for (size_t i = 0; i < cf->n_node_keys; i++) {
            printf(i ? ", " : "");
            if (json_str(stdout, cf->node_keys[i].ptr, cf->node_keys[i].len) != 0)
                printf("null");
        }
        printf("]");
        if (cf->has_quorum)
            printf(",\n  \"quorum\": %llu", (unsigned long long)cf->quorum);
        field_text("params", cf->params);
    } else {
        /* kinds 3-5, the device registry (docs/FORMATS.md "Registry records") */
        const struct ledger_registry *g = &rec.reg;
        static const char *const names[] = {"device_registration", "device_revocation",
                                            "key_rotation"};
        printf(",\n  \"kind\": \"%s\",\n  \"version\": %llu", names[rec.kind - 3],
               (unsigned long long)rec.version);
        field_text("device_id", g->device_id);
        if (g->public_key.ptr) {
            printf(",\n  \"public_key\": ");
            json_b64(stdout, g->public_key.ptr, g->public_key.len);
        }
        field_text("name", g->name);
        if (g->n_attrs) {
            printf(",\n  \"attributes\": {");
            for (size_t i = 0; i < g->n_attrs; i++) {
                printf(i ? ", " : "");
                if (json_str(stdout, g->attr_keys[i].ptr, g->attr_keys[i].len) != 0)
                    printf("\"\\ufffd\""); /* a name with NUL: not representable */
                printf(": ");
                if (json_str(stdout, g->attr_values[i].ptr, g->attr_values[i].len) != 0)
                    printf("null");
            }
            printf("}");
        }
        printf(",\n  \"time_ms\": %llu", (unsigned long long)g->time_ms);
        field_text("reason", g->reason);
        field_text("operator", g->operator_key);
        printf(",\n  \"signature_base64\": ");
        json_b64(stdout, g->signature.ptr, g->signature.len);
    }
    printf("\n}\n");
    free(buf);
    ledger_close(l);
    return CLI_OK;
}

int cli_log_blocks(struct cli *c, int argc, char **argv)
{
    uint64_t from = 0, count = UINT64_MAX;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--from") == 0 && i + 1 < argc) {
            if (cli_parse_u64(argv[++i], &from))
                return cli_error(CLI_ERR, "--from: not a number");
        } else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
            if (cli_parse_u64(argv[++i], &count))
                return cli_error(CLI_ERR, "--count: not a number");
        } else {
            return extra_arg(argv[i]);
        }
    }
    struct ledger *l;
    int rc = cli_open_ledger(c, true, NULL, &l);
    if (rc)
        return rc;
    printf("# height first_index count tree_size time_ms signer root block_hash\n");
    for (uint64_t h = from; h < ledger_height(l) && count > 0; h++, count--) {
        struct ledger_block b;
        rc = ledger_block(l, h, &b);
        if (rc) {
            ledger_close(l);
            return cli_error(fail_code(rc), "block %llu: %s (ledger/blocks offset %llu)",
                             (unsigned long long)h, ledger_strerror(rc),
                             (unsigned long long)(h * 128));
        }
        char root[65], hash[65];
        cli_hex(b.root, 32, root);
        cli_hex(b.hash, 32, hash);
        printf("%llu %llu %llu %llu %llu %08x %s %s\n", (unsigned long long)b.height,
               (unsigned long long)b.first_index, (unsigned long long)b.count,
               (unsigned long long)b.tree_size, (unsigned long long)b.time_ms, b.signer_key_id,
               root, hash);
    }
    ledger_close(l);
    return CLI_OK;
}

/* Pending records of `log append`: encoded into one arena. */
struct pending {
    uint8_t *arena;
    size_t cap, len;
    size_t *off, *rlen;
    size_t n, ncap;
};

static int pending_add(struct pending *p, const char *topic, const uint8_t *line, size_t n)
{
    size_t need = n + strlen(topic) + 256;
    if (p->len + need > p->cap) {
        size_t nc = p->cap ? p->cap : (1 << 20);
        while (nc < p->len + need)
            nc *= 2;
        uint8_t *a = realloc(p->arena, nc);
        if (!a)
            return -ENOMEM;
        p->arena = a;
        p->cap = nc;
    }
    if (p->n == p->ncap) {
        size_t nc = p->ncap ? p->ncap * 2 : 1024;
        size_t *o = realloc(p->off, nc * sizeof *o);
        if (!o)
            return -ENOMEM;
        p->off = o;
        size_t *r = realloc(p->rlen, nc * sizeof *r);
        if (!r)
            return -ENOMEM;
        p->rlen = r;
        p->ncap = nc;
    }
    static const char who[] = "ledgermq-cli";
    static const char node[] = "offline-import";
    struct ledger_record rec;
    memset(&rec, 0, sizeof rec);
    rec.kind = LEDGER_KIND_MESSAGE;
    rec.version = LEDGER_RECORD_VERSION;
    rec.msg.topic = (struct ledger_bytes){(const uint8_t *)topic, strlen(topic)};
    rec.msg.payload = (struct ledger_bytes){n ? line : (const uint8_t *)"", n};
    rec.msg.publisher = (struct ledger_bytes){(const uint8_t *)who, sizeof who - 1};
    rec.msg.client_id = (struct ledger_bytes){(const uint8_t *)who, sizeof who - 1};
    rec.msg.broker_time_ms = now_ms();
    rec.msg.ingress_node = (struct ledger_bytes){(const uint8_t *)node, sizeof node - 1};
    size_t len;
    int rc = ledger_record_encode(&rec, p->arena + p->len, p->cap - p->len, &len);
    if (rc)
        return rc;
    p->off[p->n] = p->len;
    p->rlen[p->n] = len;
    p->n++;
    p->len += len;
    return 0;
}

static int pending_commit(struct ledger *l, struct pending *p)
{
    if (p->n == 0)
        return 0;
    struct ledger_record_buf *recs = malloc(p->n * sizeof *recs);
    if (!recs)
        return -ENOMEM;
    for (size_t i = 0; i < p->n; i++)
        recs[i] = (struct ledger_record_buf){p->arena + p->off[i], p->rlen[i]};
    struct ledger_commit cm;
    int rc = ledger_append_batch(l, recs, p->n, now_ms(), &cm);
    free(recs);
    if (rc)
        return rc;
    char root[65];
    cli_hex(cm.root, 32, root);
    printf("committed height=%llu first=%llu count=%llu size=%llu root=%s\n",
           (unsigned long long)cm.height, (unsigned long long)cm.first_index,
           (unsigned long long)cm.count, (unsigned long long)cm.tree_size, root);
    fflush(stdout);
    p->n = 0;
    p->len = 0;
    return 0;
}

int cli_log_append(struct cli *c, int argc, char **argv)
{
    const char *topic = NULL, *origin = c->origin;
    uint64_t batch = 1000;
    enum ledger_sync sync = c->sync;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--topic") == 0 && i + 1 < argc)
            topic = argv[++i];
        else if (strcmp(argv[i], "--origin") == 0 && i + 1 < argc)
            origin = argv[++i];
        else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) {
            if (cli_parse_u64(argv[++i], &batch) || batch == 0 || batch > LEDGER_MAX_BATCH)
                return cli_error(CLI_ERR, "--batch: 1..%d", LEDGER_MAX_BATCH);
        } else if (strcmp(argv[i], "--sync") == 0 && i + 1 < argc) {
            i++;
            if (strcmp(argv[i], "always") == 0)
                sync = LEDGER_SYNC_ALWAYS;
            else if (strcmp(argv[i], "batch") == 0)
                sync = LEDGER_SYNC_BATCH;
            else
                return cli_error(CLI_ERR, "--sync: always or batch");
        } else
            return extra_arg(argv[i]);
    }
    if (!topic || !*topic)
        return cli_error(CLI_ERR, "log append: --topic TOPIC is required");
    struct ledger_options o;
    ledger_options_default(&o);
    o.origin = origin;
    o.sync = sync;
    char err[512];
    struct ledger *l;
    int rc = ledger_open(c->datadir, &o, &l, err, sizeof err);
    if (rc)
        return cli_error(fail_code(rc), "%s: %s", c->datadir, err[0] ? err : ledger_strerror(rc));

    struct pending p = {0};
    size_t cap = 1 << 20, have = 0;
    uint8_t *in = malloc(cap);
    int code = CLI_OK;
    if (!in) {
        code = cli_error(CLI_ERR, "out of memory");
        goto done;
    }
    for (;;) {
        if (have == cap) {
            if (cap >= LEDGER_MAX_RECORD) {
                code = cli_error(CLI_ERR, "input line longer than %u bytes", LEDGER_MAX_RECORD);
                goto done;
            }
            uint8_t *b = realloc(in, cap * 2);
            if (!b) {
                code = cli_error(CLI_ERR, "out of memory");
                goto done;
            }
            in = b;
            cap *= 2;
        }
        ssize_t r = read(0, in + have, cap - have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            code = cli_error(CLI_ERR, "reading stdin: %s", strerror(errno));
            goto done;
        }
        bool eof = r == 0;
        have += (size_t)r;
        size_t start = 0;
        for (size_t i = 0; i < have; i++) {
            if (in[i] != '\n')
                continue;
            size_t n = i - start;
            if (n && in[start + n - 1] == '\r')
                n--;
            rc = pending_add(&p, topic, in + start, n);
            if (rc) {
                code = cli_error(CLI_ERR, "encoding record: %s", ledger_record_strerror(rc));
                goto done;
            }
            start = i + 1;
            if (p.n >= batch && (rc = pending_commit(l, &p))) {
                code = cli_error(fail_code(rc), "append: %s", ledger_strerror(rc));
                goto done;
            }
        }
        memmove(in, in + start, have - start);
        have -= start;
        if (eof && have > 0) { /* last line without newline */
            rc = pending_add(&p, topic, in, have);
            if (rc) {
                code = cli_error(CLI_ERR, "encoding record: %s", ledger_record_strerror(rc));
                goto done;
            }
            have = 0;
        }
        /* Commit what we have when no more input is ready right now. */
        struct pollfd pf = {.fd = 0, .events = POLLIN};
        if (eof || p.n >= batch || poll(&pf, 1, 0) == 0) {
            if ((rc = pending_commit(l, &p))) {
                code = cli_error(fail_code(rc), "append: %s", ledger_strerror(rc));
                goto done;
            }
        }
        if (eof)
            break;
    }
done:
    free(in);
    free(p.arena);
    free(p.off);
    free(p.rlen);
    ledger_close(l);
    return code;
}

int cli_log_recover(struct cli *c, int argc, char **argv)
{
    if (argc > 1)
        return extra_arg(argv[1]);
    /* Recovery never creates a ledger: an interrupted creation (nothing
     * committed) is reported and left for the next append or daemon start,
     * which know the origin. */
    struct ledger_options o;
    ledger_options_default(&o);
    o.origin = c->origin;
    o.sync = c->sync;
    o.no_create = true;
    char err[512];
    struct ledger *l;
    int rc = ledger_open(c->datadir, &o, &l, err, sizeof err);
    if (rc == LEDGER_ERR_UNCREATED) {
        fprintf(stderr, "ledgermq: warning: %s\n", err);
        printf("ok size=0 blocks=0\n");
        return CLI_OK;
    }
    if (rc)
        return cli_error(fail_code(rc), "%s: %s", c->datadir, err[0] ? err : ledger_strerror(rc));
    printf("ok size=%llu blocks=%llu\n", (unsigned long long)ledger_size(l),
           (unsigned long long)ledger_height(l));
    ledger_close(l);
    return CLI_OK;
}

static int size_opt(int argc, char **argv, int *i, uint64_t *size)
{
    if (strcmp(argv[*i], "--size") == 0 && *i + 1 < argc) {
        if (cli_parse_u64(argv[++*i], size) || *size == 0)
            return cli_error(CLI_ERR, "--size: a positive tree size");
        return 0;
    }
    return 1;
}

int cli_log_checkpoint(struct cli *c, int argc, char **argv)
{
    uint64_t size = 0;
    for (int i = 1; i < argc; i++) {
        int r = size_opt(argc, argv, &i, &size);
        if (r == 1)
            return extra_arg(argv[i]);
        if (r)
            return r;
    }
    struct ledger *l;
    int rc = cli_open_ledger(c, true, NULL, &l);
    if (rc)
        return rc;
    uint64_t h = 0;
    if (ledger_height(l) == 0 || ledger_block_at_size(l, size ? size : ledger_size(l), &h) != 0) {
        ledger_close(l);
        return cli_error(CLI_ERR, "no checkpoint at tree size %llu", (unsigned long long)size);
    }
    char note[LEDGER_MAX_CHECKPOINT];
    size_t len;
    rc = ledger_block_checkpoint(l, h, note, sizeof note, &len);
    ledger_close(l);
    if (rc)
        return cli_error(fail_code(rc), "checkpoint of block %llu: %s", (unsigned long long)h,
                         ledger_strerror(rc));
    fwrite(note, 1, len, stdout);
    return CLI_OK;
}

int cli_log_proof(struct cli *c, int argc, char **argv)
{
    uint64_t size = 0, index;
    const char *idx_s = NULL, *format = "json";
    for (int i = 1; i < argc; i++) {
        int r = size_opt(argc, argv, &i, &size);
        if (r == 0)
            continue;
        if (r != 1)
            return r;
        if (strcmp(argv[i], "--format") == 0 && i + 1 < argc)
            format = argv[++i];
        else if (!idx_s)
            idx_s = argv[i];
        else
            return extra_arg(argv[i]);
    }
    if (!idx_s || cli_parse_u64(idx_s, &index))
        return cli_error(CLI_ERR, "log proof: INDEX must be a record number");
    bool tlog = strcmp(format, "tlog-proof") == 0;
    if (!tlog && strcmp(format, "json") != 0)
        return cli_error(CLI_ERR, "--format: json or tlog-proof");
    struct ledger *l;
    int rc = cli_open_ledger(c, true, NULL, &l);
    if (rc)
        return rc;
    size_t scap = LEDGER_MAX_RECORD + LEDGER_MAX_CHECKPOINT;
    uint8_t *scratch = malloc(scap);
    struct receipt r;
    rc = scratch ? ledger_receipt(l, index, size, scratch, scap, &r) : -ENOMEM;
    if (rc) {
        int code = fail_code(rc);
        if (rc == LEDGER_ERR_NOCHECKPOINT)
            cli_error(code,
                      "no checkpoint at tree size %llu (sizes at block ends only; see "
                      "`log blocks`)",
                      (unsigned long long)size);
        else if (rc == -ERANGE)
            cli_error(code, "record %llu is not in the tree of size %llu",
                      (unsigned long long)index,
                      (unsigned long long)(size ? size : ledger_size(l)));
        else
            cli_error(code, "proof of %llu: %s", (unsigned long long)index, ledger_strerror(rc));
        free(scratch);
        ledger_close(l);
        return code;
    }
    size_t ocap = 2 * r.record_len + 2 * r.checkpoint_len + 64 * 64 + 4096;
    char *out = malloc(ocap);
    ssize_t n = !out   ? -1
                : tlog ? receipt_write_tlog_proof(&r, NULL, 0, out, ocap)
                       : receipt_write(&r, out, ocap);
    if (n < 0) {
        free(out);
        free(scratch);
        ledger_close(l);
        return cli_error(CLI_ERR, "formatting the proof failed (%zd)", n);
    }
    fwrite(out, 1, (size_t)n, stdout);
    if (!tlog)
        fputc('\n', stdout);
    free(out);
    free(scratch);
    ledger_close(l);
    return CLI_OK;
}

int cli_log_consistency(struct cli *c, int argc, char **argv)
{
    uint64_t old_size, new_size;
    if (argc != 3 || cli_parse_u64(argv[1], &old_size) || cli_parse_u64(argv[2], &new_size) ||
        old_size == 0 || old_size > new_size)
        return cli_error(CLI_ERR, "log consistency OLD NEW: two tree sizes, 0 < OLD <= NEW");
    struct ledger *l;
    int rc = cli_open_ledger(c, true, NULL, &l);
    if (rc)
        return rc;
    uint8_t proof[MERKLE_MAX_PROOF][32];
    size_t n;
    rc = ledger_consistency_proof(l, old_size, new_size, proof, &n);
    ledger_close(l);
    if (rc)
        return cli_error(fail_code(rc), "consistency %llu -> %llu: %s%s",
                         (unsigned long long)old_size, (unsigned long long)new_size,
                         ledger_strerror(rc), rc == -ERANGE ? " (log size too small)" : "");
    printf("ledgermq consistency v1\nold %llu\nnew %llu\n", (unsigned long long)old_size,
           (unsigned long long)new_size);
    for (size_t i = 0; i < n; i++) {
        char b[48];
        crypto_b64_encode(proof[i], 32, b, sizeof b);
        printf("%s\n", b);
    }
    return CLI_OK;
}
