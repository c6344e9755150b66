/* `ledgermq device ...` and `ledgermq operator keygen`: device and
 * operator keys, and the device registry on a stopped node's data dir.
 * register/revoke/rotate build a registry record (docs/FORMATS.md
 * "Registry records"), sign it with the operator key, check it against the
 * registry index (brought up to date with the ledger first) and append it
 * with ledger_append_batch, which takes the ledger lock (a running broker
 * holds it, so they refuse). list/show read the index under
 * <datadir>/registry/; with --trust they first bring it up to date.
 *
 * Trusted operator keys: the index applies only records signed by the
 * operator keys it is built with. The CLI builds it with the operator_key
 * lines of -c CONFIG and every --trust VKEY plus, for register/revoke/
 * rotate, the signing operator's key; give it the node's config (-c) so
 * that the CLI's view matches the broker's (a different set makes the
 * index rebuild). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sodium.h>

#include "cmd/cli.h"
#include "cmd/cli_mqtt.h"
#include "crypto/hash.h"
#include "crypto/sign.h"
#include "identity/device_id.h"
#include "identity/registry.h"
#include "identity/registry_json.h"
#include "ledger/record.h"

#define DEV__MAX_TRUST 16
#define DEV__MAX_OPS (DEV__MAX_TRUST + LMQ_MAX_OPERATOR_KEYS + 1)
#define DEV__DEFAULT_OPERATOR_NAME "operator"

static uint64_t dev__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A public key given as 64 hex digits, 44 base64 characters, or a key
 * file (public or secret; only the public line is read). */
int cli_parse_pubkey(const char *s, uint8_t pk[32])
{
    size_t n = strlen(s);
    if (n == 64 && crypto_hex_decode(s, n, pk, 32) == 32)
        return 0;
    if (n == 44 && crypto_b64_decode(s, n, pk, 32) == 32)
        return 0;
    if (crypto_pubkey_load(s, pk) == 0)
        return 0;
    return cli_error(CLI_ERR,
                     "%s: not a public key (64 hex digits, 44 base64 characters or a "
                     "key file)",
                     s);
}

/* Writes a new secret key file; refuses an existing path. */
static int dev__keygen(const char *out, uint8_t pk[32])
{
    uint8_t sk[64];
    struct stat st;
    int created = 0;
    if (lstat(out, &st) == 0)
        return cli_error(CLI_ERR, "%s exists; refusing to overwrite a key", out);
    int rc = crypto_key_load_or_create(out, pk, sk, &created);
    sodium_memzero(sk, sizeof sk);
    if (rc != 0)
        return cli_error(CLI_ERR, "%s: cannot create the key: %s", out, strerror(-rc));
    if (!created)
        return cli_error(CLI_ERR, "%s appeared meanwhile; refusing to overwrite a key", out);
    return 0;
}

int cli_device_keygen(struct cli *c, int argc, char **argv)
{
    (void)c;
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
            out = argv[++i];
        else
            return cli_error(CLI_ERR, "device keygen: unexpected argument '%s'", argv[i]);
    }
    if (out == NULL)
        return cli_error(CLI_ERR, "device keygen: --out KEYFILE is required");
    uint8_t pk[32];
    int rc = dev__keygen(out, pk);
    if (rc)
        return rc;
    char id[DEVICE_ID_LEN + 1], b64[45], hex[65];
    device_id_from_pk(pk, id);
    crypto_b64_encode(pk, 32, b64, sizeof b64);
    cli_hex(pk, 32, hex);
    printf("id: %s\npublic: %s\npublic_hex: %s\n", id, b64, hex);
    return CLI_OK;
}

int cli_operator_keygen(struct cli *c, int argc, char **argv)
{
    (void)c;
    const char *out = NULL, *name = DEV__DEFAULT_OPERATOR_NAME;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
            out = argv[++i];
        else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc)
            name = argv[++i];
        else
            return cli_error(CLI_ERR, "operator keygen: unexpected argument '%s'", argv[i]);
    }
    if (out == NULL)
        return cli_error(CLI_ERR, "operator keygen: --out FILE is required (FILE.vkey gets the "
                                  "verifier key)");
    struct note_verifier v;
    uint8_t zero[32] = {0};
    if (note_verifier_init(&v, name, zero) != 0)
        return cli_error(CLI_ERR, "--name %s: not a valid key name", name);
    uint8_t pk[32];
    int rc = dev__keygen(out, pk);
    if (rc)
        return rc;
    char vkey[NOTE_VKEY_MAX + 1], path[4096];
    ssize_t n;
    if (note_verifier_init(&v, name, pk) != 0 ||
        (n = note_verifier_format(&v, vkey, sizeof vkey - 1)) < 0)
        return cli_error(CLI_ERR, "cannot format the verifier key");
    /* the verifier key beside the key (names the signer in records) */
    FILE *f = NULL;
    int ok = 0;
    if (snprintf(path, sizeof path, "%s.vkey", out) < (int)sizeof path)
        f = fopen(path, "wx");
    if (f != NULL) {
        ok = fprintf(f, "%s\n", vkey) > 0;
        ok = fclose(f) == 0 && ok;
    }
    if (!ok)
        fprintf(stderr, "ledgermq: warning: could not write %s.vkey\n", out);
    printf("%s\n", vkey);
    return CLI_OK;
}

/* Reads <keyfile>.vkey (one verifier key line) if it names pk. */
static int dev__sidecar_vkey(const char *keyfile, const uint8_t pk[32], struct note_verifier *v)
{
    char path[4096], *buf = NULL;
    size_t len;
    if (snprintf(path, sizeof path, "%s.vkey", keyfile) >= (int)sizeof path ||
        cli_read_file(path, &buf, &len) != 0)
        return -1;
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        len--;
    int rc = note_verifier_parse(buf, len, v) == 0 && v->type == NOTE_SIG_ED25519 &&
                     memcmp(v->pk, pk, 32) == 0
                 ? 0
                 : -1;
    free(buf);
    return rc;
}

/* ---- JSON output ---- */

static void dev__print(const struct registry_device *d, const char *indent)
{
    registry_device_json(stdout, d, indent);
}

/* ---- opening the index ---- */

struct dev__opts {
    const char *op_key_path;
    const char *op_name;
    char *trust[DEV__MAX_TRUST];
    size_t n_trust;
    bool has_time;
    uint64_t time_ms;
};

/* Consumes a common option at argv[*i]; 1 if consumed, 0 if not ours, <0
 * (an exit code, negated) on error. */
static int dev__common_opt(struct dev__opts *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    if (*i + 1 >= argc)
        return 0;
    if (strcmp(a, "--operator-key") == 0) {
        o->op_key_path = argv[++*i];
    } else if (strcmp(a, "--operator-name") == 0) {
        o->op_name = argv[++*i];
    } else if (strcmp(a, "--trust") == 0) {
        if (o->n_trust == DEV__MAX_TRUST)
            return -cli_error(CLI_ERR, "at most %d --trust keys", DEV__MAX_TRUST);
        o->trust[o->n_trust++] = argv[++*i];
    } else if (strcmp(a, "--time") == 0) {
        if (cli_parse_u64(argv[++*i], &o->time_ms))
            return -cli_error(CLI_ERR, "--time: milliseconds since the epoch");
        o->has_time = true;
    } else {
        return 0;
    }
    return 1;
}

static void dev__on_refused(void *ctx, uint64_t index, int err)
{
    (void)ctx;
    fprintf(stderr, "ledgermq: note: registry record %llu has no effect: %s\n",
            (unsigned long long)index, registry_strerror(err));
}

/* The trusted operator keys: -c CONFIG's operator_key lines, then every
 * --trust VKEY. ops holds DEV__MAX_OPS. */
static int dev__trusted(const struct cli *c, const struct dev__opts *o, struct note_verifier *ops,
                        size_t *n)
{
    *n = 0;
    for (size_t i = 0; c->config && i < c->config->n_operator_keys; i++) {
        const char *k = c->config->operator_keys[i];
        if (note_verifier_parse(k, strlen(k), &ops[*n]) != 0 || ops[*n].type != NOTE_SIG_ED25519)
            return cli_error(CLI_ERR, "%s: operator_key %s: not a valid Ed25519 verifier key",
                             c->config->source, k);
        (*n)++;
    }
    int rc = cli_parse_keys((char **)o->trust, o->n_trust, ops + *n);
    if (rc)
        return rc;
    *n += o->n_trust;
    return 0;
}

/* Opens the ledger (read-write when writing) and the registry with the
 * trusted keys (+ signer when given), brought up to date. */
static int dev__open(struct cli *c, bool write, const struct note_verifier *ops, size_t n_ops,
                     struct ledger **l, struct registry **r)
{
    char err[512];
    struct registry_options ro = {.operators = ops, .n_operators = n_ops};
    int rc = cli_open_ledger(c, !write, NULL, l);
    if (rc)
        return rc;
    rc = registry_open(c->datadir, &ro, r, err, sizeof err);
    if (rc) {
        ledger_close(*l);
        return cli_error(CLI_ERR, "%s/registry: %s", c->datadir, err);
    }
    struct registry_sync_result res;
    rc = registry_sync(*r, *l, &res, dev__on_refused, NULL);
    if (rc) {
        registry_close(*r);
        ledger_close(*l);
        return cli_error(CLI_ERR, "%s/registry: cannot bring the index up to date: %s", c->datadir,
                         rc < -1000 ? registry_strerror(rc) : ledger_strerror(rc));
    }
    return 0;
}

/* --broker: publishes the signed record to $ledger/admin/{register,
 * revoke,rotate} (MQTT 5 request/response) and prints the broker's answer:
 * {"index": N} (exit 0) or its refusal (exit 1). */
static int dev__submit_online(const struct cli_mqtt_opts *mo, const struct ledger_record *rec,
                              const uint8_t *buf, size_t len)
{
    static const char *const topic[] = {"$ledger/admin/register", "$ledger/admin/revoke",
                                        "$ledger/admin/rotate"};
    struct cli_mqtt *m;
    struct cli_mqtt_msg *reply;
    int rc = cli_mqtt_connect(mo, &m);
    if (rc)
        return rc;
    rc = cli_mqtt_request(m, topic[rec->kind - LEDGER_KIND_DEVICE_REGISTRATION], buf, len, &reply);
    cli_mqtt_close(m);
    if (rc)
        return rc;
    if (reply->len >= 9 && memcmp(reply->payload, "{\"index\":", 9) == 0) {
        printf("%.*s\n", (int)reply->len, (const char *)reply->payload);
        rc = CLI_OK;
    } else {
        bool refused = strstr((const char *)reply->payload, "\"refused\"") != NULL;
        rc = cli_error(refused ? CLI_FAIL : CLI_ERR, "%s: the broker answered: %.*s",
                       (const char *)rec->reg.device_id.ptr, (int)reply->len,
                       (const char *)reply->payload);
    }
    free(reply);
    return rc;
}

/* register/revoke/rotate: sign rec with the operator key, check, append,
 * print the device (or, with --broker, hand the record to a running
 * broker). */
static int dev__submit(struct cli *c, struct dev__opts *o, struct ledger_record *rec,
                       const struct cli_mqtt_opts *mo)
{
    uint8_t pk[32], sk[64], sig[64];
    struct note_verifier ops[DEV__MAX_OPS];
    char vkey[NOTE_VKEY_MAX];
    int rc;
    if (o->op_key_path == NULL)
        return cli_error(CLI_ERR, "--operator-key OPKEY is required");
    size_t n_ops;
    if ((rc = dev__trusted(c, o, ops, &n_ops)) != 0)
        return rc;
    rc = crypto_key_load(o->op_key_path, pk, sk);
    if (rc)
        return cli_error(CLI_ERR, "%s: cannot load the operator key: %s", o->op_key_path,
                         rc == -EINVAL ? "malformed key file" : strerror(-rc));
    /* the signer's name: --operator-name, else a trusted key (config or
     * --trust) with this public key, else OPKEY.vkey (written by operator
     * keygen), else "operator" */
    const char *name = o->op_name ? o->op_name : DEV__DEFAULT_OPERATOR_NAME;
    int signer = -1;
    for (size_t i = 0; i < n_ops && !o->op_name; i++)
        if (memcmp(ops[i].pk, pk, 32) == 0 && ops[i].type == NOTE_SIG_ED25519)
            signer = (int)i;
    if (signer < 0 && !o->op_name && dev__sidecar_vkey(o->op_key_path, pk, &ops[n_ops]) == 0)
        signer = (int)n_ops++;
    if (signer < 0) {
        if (note_verifier_init(&ops[n_ops], name, pk) != 0) {
            rc = cli_error(CLI_ERR, "--operator-name %s: not a valid key name", name);
            goto out_wipe;
        }
        signer = (int)n_ops++;
    }
    note_verifier_format(&ops[signer], vkey, sizeof vkey);

    if (mo->broker) {
        uint8_t *rb = malloc(REGISTRY_RECORD_MAX);
        size_t rlen;
        rec->reg.time_ms = o->has_time ? o->time_ms : dev__now_ms();
        if (!rb)
            rc = cli_error(CLI_ERR, "out of memory");
        else if ((rc = registry_sign_record(rec, vkey, sk, sig, rb, REGISTRY_RECORD_MAX, &rlen)))
            rc = cli_error(CLI_ERR, "cannot build the record: %s", ledger_record_strerror(rc));
        else
            rc = dev__submit_online(mo, rec, rb, rlen);
        free(rb);
        goto out_wipe;
    }

    struct ledger *l;
    struct registry *r;
    if ((rc = dev__open(c, true, ops, n_ops, &l, &r)) != 0)
        goto out_wipe;
    rec->reg.time_ms = o->has_time ? o->time_ms : dev__now_ms();
    uint8_t *buf = malloc(REGISTRY_RECORD_MAX);
    struct registry_device *dev = malloc(sizeof *dev);
    size_t len;
    if (buf == NULL || dev == NULL) {
        rc = cli_error(CLI_ERR, "out of memory");
        goto out_close;
    }
    rc = registry_sign_record(rec, vkey, sk, sig, buf, REGISTRY_RECORD_MAX, &len);
    if (rc) {
        rc = cli_error(CLI_ERR, "cannot build the record: %s", ledger_record_strerror(rc));
        goto out_close;
    }
    rc = registry_check(r, buf, len);
    if (rc) {
        rc = cli_error(CLI_FAIL, "refused: %.*s: %s", (int)rec->reg.device_id.len,
                       (const char *)rec->reg.device_id.ptr, registry_strerror(rc));
        goto out_close;
    }
    struct ledger_record_buf b = {buf, len};
    struct ledger_commit commit;
    rc = ledger_append_batch(l, &b, 1, dev__now_ms(), &commit);
    if (rc) {
        rc = cli_error(CLI_ERR, "append: %s", ledger_strerror(rc));
        goto out_close;
    }
    rc = registry_sync(r, l, NULL, dev__on_refused, NULL);
    if (rc == 0)
        rc = registry_lookup(r, (const char *)rec->reg.device_id.ptr, rec->reg.device_id.len, dev);
    if (rc) {
        rc = cli_error(CLI_ERR, "record %llu appended, but the index failed: %s",
                       (unsigned long long)commit.first_index, registry_strerror(rc));
        goto out_close;
    }
    printf("{\n  \"index\": %llu,\n  \"device\":\n", (unsigned long long)commit.first_index);
    dev__print(dev, "  ");
    printf("\n}\n");
    rc = CLI_OK;
out_close:
    free(buf);
    free(dev);
    registry_close(r);
    ledger_close(l);
out_wipe:
    sodium_memzero(sk, sizeof sk);
    return rc;
}

static int dev__bad_arg(const char *cmd, const char *a)
{
    return cli_error(CLI_ERR, "device %s: unexpected argument '%s' (see ledgermq --help)", cmd, a);
}

/* register, revoke and rotate: one parser; each kind allows its options
 * (FORMATS.md: which fields each kind carries). */
static int dev__write(struct cli *c, int argc, char **argv, uint64_t kind)
{
    static const char *const cmd[] = {"register", "revoke", "rotate"};
    const char *what = cmd[kind - LEDGER_KIND_DEVICE_REGISTRATION];
    struct dev__opts o = {0};
    struct cli_mqtt_opts mo = {0};
    struct ledger_record rec;
    struct ledger_registry *g = &rec.reg;
    const char *id = NULL;
    char derived[DEVICE_ID_LEN + 1];
    uint8_t pk[32];
    bool has_pk = false, is_reg = kind == LEDGER_KIND_DEVICE_REGISTRATION;
    memset(&rec, 0, sizeof rec);
    rec.kind = kind;
    for (int i = 1; i < argc; i++) {
        int k = dev__common_opt(&o, argc, argv, &i);
        if (k == 0)
            k = cli_mqtt_opt(&mo, argc, argv, &i);
        if (k < 0)
            return -k;
        if (k)
            continue;
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v && !is_reg && strcmp(a, "--id") == 0) {
            id = v;
        } else if (v && kind != LEDGER_KIND_DEVICE_REVOCATION &&
                   (strcmp(a, "--pub") == 0 || strcmp(a, "--key") == 0)) {
            if (cli_parse_pubkey(v, pk))
                return CLI_ERR;
            has_pk = true;
        } else if (v && is_reg && strcmp(a, "--name") == 0) {
            g->name = (struct ledger_bytes){(const uint8_t *)v, strlen(v)};
        } else if (v && is_reg && strcmp(a, "--attr") == 0) {
            const char *eq = strchr(v, '=');
            if (eq == NULL || eq == v)
                return cli_error(CLI_ERR, "--attr %s: expected NAME=VALUE", v);
            if (g->n_attrs == LEDGER_REG_MAX_ATTRS)
                return cli_error(CLI_ERR, "at most %d attributes", LEDGER_REG_MAX_ATTRS);
            g->attr_keys[g->n_attrs] = (struct ledger_bytes){(const uint8_t *)v, (size_t)(eq - v)};
            g->attr_values[g->n_attrs++] =
                (struct ledger_bytes){(const uint8_t *)eq + 1, strlen(eq + 1)};
        } else if (v && kind == LEDGER_KIND_DEVICE_REVOCATION && strcmp(a, "--reason") == 0) {
            g->reason = (struct ledger_bytes){(const uint8_t *)v, strlen(v)};
        } else {
            return dev__bad_arg(what, a);
        }
        i++;
    }
    if (is_reg) {
        if (!has_pk || g->name.ptr == NULL)
            return cli_error(CLI_ERR, "device register: --pub PUBKEY (or --key DEVKEY) and --name "
                                      "NAME are required");
        device_id_from_pk(pk, derived);
        id = derived;
    } else if (id == NULL || !device_id_valid(id, strlen(id)) ||
               (kind == LEDGER_KIND_KEY_ROTATION && !has_pk)) {
        return cli_error(CLI_ERR, "device %s: --id DEVICEID (d-...)%s required", what,
                         kind == LEDGER_KIND_KEY_ROTATION ? " and --pub NEWPUB are" : " is");
    }
    g->device_id = (struct ledger_bytes){(const uint8_t *)id, strlen(id)};
    if (has_pk)
        g->public_key = (struct ledger_bytes){pk, 32};
    return dev__submit(c, &o, &rec, &mo);
}

int cli_device_register(struct cli *c, int argc, char **argv)
{
    return dev__write(c, argc, argv, LEDGER_KIND_DEVICE_REGISTRATION);
}

int cli_device_revoke(struct cli *c, int argc, char **argv)
{
    return dev__write(c, argc, argv, LEDGER_KIND_DEVICE_REVOCATION);
}

int cli_device_rotate(struct cli *c, int argc, char **argv)
{
    return dev__write(c, argc, argv, LEDGER_KIND_KEY_ROTATION);
}

/* list/show: with --trust, bring the index up to date first (opens the
 * ledger read-only); without, read the index as it is. */
static int dev__open_read(struct cli *c, struct dev__opts *o, struct registry **r)
{
    struct note_verifier ops[DEV__MAX_OPS];
    size_t n_ops;
    struct ledger *l = NULL;
    char err[512], path[4096];
    struct stat st;
    int rc;
    if ((rc = dev__trusted(c, o, ops, &n_ops)) != 0)
        return rc;
    if (n_ops > 0) {
        if ((rc = dev__open(c, false, ops, n_ops, &l, r)) != 0)
            return rc;
        ledger_close(l);
        return 0;
    }
    snprintf(path, sizeof path, "%s/registry", c->datadir);
    if (stat(path, &st) != 0)
        return cli_error(CLI_ERR, "%s: no registry index (pass --trust VKEY to build it)", path);
    struct registry_options ro = {0};
    rc = registry_open(c->datadir, &ro, r, err, sizeof err);
    if (rc)
        return cli_error(CLI_ERR, "%s: %s", path, err);
    /* say so when the index lags the ledger */
    struct ledger_options lo;
    ledger_options_default(&lo);
    lo.read_only = true;
    lo.origin = NULL;
    if (ledger_open(c->datadir, &lo, &l, err, sizeof err) == 0) {
        uint64_t have = registry_ledger_size(*r), size = ledger_size(l);
        if (have != size)
            fprintf(stderr,
                    "ledgermq: warning: the registry index reflects %llu of %llu ledger "
                    "records (pass --trust VKEY to bring it up to date)\n",
                    (unsigned long long)have, (unsigned long long)size);
        ledger_close(l);
    }
    return 0;
}

static int dev__list_one(void *ctx, const struct registry_device *d)
{
    int *n = ctx;
    printf("%s\n", (*n)++ ? "," : "");
    dev__print(d, "  ");
    return 0;
}

/* One $ledger/registry request (list/show --broker): 0 and *reply (the
 * broker's answer, malloc'd), or a CLI_* exit code (reported). */
static int dev__ask(struct cli_mqtt *m, const char *req, struct cli_mqtt_msg **reply)
{
    return cli_mqtt_request(m, "$ledger/registry", req, strlen(req), reply);
}

/* An error reply ({"error": ...}): reported, CLI_FAIL for not_found. */
static int dev__ask_err(const char *cmd, const struct cli_mqtt_msg *reply)
{
    bool nf = strstr((const char *)reply->payload, "\"not_found\"") != NULL;
    return cli_error(nf ? CLI_FAIL : CLI_ERR, "device %s: the broker answered: %.*s", cmd,
                     (int)reply->len, (const char *)reply->payload);
}

/* list --broker: pages of up to DEV__PAGE devices until an empty one,
 * spliced into the offline output ("[\n  {...},\n  {...}\n]"). */
#define DEV__PAGE 100
#define DEV__ID_LINE "\n    \"id\": \""

static int dev__list_online(const struct cli_mqtt_opts *mo, int page)
{
    struct cli_mqtt *m;
    int rc = cli_mqtt_connect(mo, &m);
    if (rc)
        return rc;
    char after[DEVICE_ID_LEN + 1] = "", req[64];
    size_t n = 0;
    for (;;) {
        struct cli_mqtt_msg *reply;
        snprintf(req, sizeof req, "list %s%s%d", after, after[0] ? " " : "", page);
        if ((rc = dev__ask(m, req, &reply)) != 0)
            break;
        const char *p = (const char *)reply->payload;
        size_t len = reply->len;
        if (len < 2 || p[0] != '[' || p[len - 1] != ']') {
            rc = dev__ask_err("list", reply);
            free(reply);
            break;
        }
        if (len == 2) { /* "[]": the end */
            free(reply);
            break;
        }
        /* the last device's id, for the next page */
        const char *last = NULL;
        size_t il = strlen(DEV__ID_LINE);
        for (const char *q = p; (q = memmem(q, len - (size_t)(q - p), DEV__ID_LINE, il)) != NULL;
             q += il)
            last = q + il;
        if (!last || (size_t)(p + len - last) < DEVICE_ID_LEN ||
            !device_id_valid(last, DEVICE_ID_LEN)) {
            rc = cli_error(CLI_ERR, "device list: the broker's page is malformed");
            free(reply);
            break;
        }
        memcpy(after, last, DEVICE_ID_LEN);
        after[DEVICE_ID_LEN] = '\0';
        /* "[" INNER "\n]": INNER is "\n  {...}" devices joined by "," */
        printf("%s%.*s", n++ ? "," : "[", (int)(len - 3), p + 1);
        free(reply);
    }
    cli_mqtt_close(m);
    if (rc)
        return rc;
    printf("%s]\n", n ? "\n" : "[");
    return CLI_OK;
}

static int dev__show_online(const struct cli_mqtt_opts *mo, const char *id)
{
    struct cli_mqtt *m;
    struct cli_mqtt_msg *reply;
    char req[DEVICE_ID_LEN + 16];
    if (!device_id_valid(id, strlen(id))) /* as offline: no such device */
        return cli_error(CLI_FAIL, "device show: %s is not registered", id);
    snprintf(req, sizeof req, "show %s", id);
    int rc = cli_mqtt_connect(mo, &m);
    if (rc)
        return rc;
    rc = dev__ask(m, req, &reply);
    cli_mqtt_close(m);
    if (rc)
        return rc;
    if (reply->len && reply->payload[0] == '{' &&
        !memmem(reply->payload, reply->len, "\"error\":", 8)) {
        printf("%.*s\n", (int)reply->len, (const char *)reply->payload);
    } else {
        rc = dev__ask_err("show", reply);
    }
    free(reply);
    return rc;
}

int cli_device_list(struct cli *c, int argc, char **argv)
{
    struct dev__opts o = {0};
    struct cli_mqtt_opts mo = {0};
    struct registry *r;
    int page = DEV__PAGE;
    for (int i = 1; i < argc; i++) {
        int k = dev__common_opt(&o, argc, argv, &i);
        if (k == 0)
            k = cli_mqtt_opt(&mo, argc, argv, &i);
        if (k < 0)
            return -k;
        if (!k && i + 1 < argc && strcmp(argv[i], "--page") == 0) {
            char *e;
            long v = strtol(argv[++i], &e, 10);
            if (*e || v < 1 || v > DEV__PAGE)
                return cli_error(CLI_ERR, "--page %s: expected 1-%d", argv[i], DEV__PAGE);
            page = (int)v;
            continue;
        }
        if (!k || o.op_key_path || o.op_name || o.has_time)
            return dev__bad_arg("list", argv[i]);
    }
    if (mo.broker)
        return dev__list_online(&mo, page);
    int rc = dev__open_read(c, &o, &r);
    if (rc)
        return rc;
    int n = 0;
    printf("[");
    rc = registry_foreach(r, dev__list_one, &n);
    printf("%s]\n", n ? "\n" : "");
    registry_close(r);
    if (rc)
        return cli_error(CLI_ERR, "device list: %s", registry_strerror(rc));
    return CLI_OK;
}

int cli_device_show(struct cli *c, int argc, char **argv)
{
    struct dev__opts o = {0};
    struct registry *r;
    struct cli_mqtt_opts mo = {0};
    const char *id = NULL;
    for (int i = 1; i < argc; i++) {
        int k = dev__common_opt(&o, argc, argv, &i);
        if (k == 0)
            k = cli_mqtt_opt(&mo, argc, argv, &i);
        if (k < 0)
            return -k;
        if (k && !o.op_key_path && !o.op_name && !o.has_time)
            continue;
        if (k || id)
            return dev__bad_arg("show", argv[i]);
        id = argv[i];
    }
    if (id == NULL)
        return cli_error(CLI_ERR, "device show: DEVICEID is required");
    if (mo.broker)
        return dev__show_online(&mo, id);
    int rc = dev__open_read(c, &o, &r);
    if (rc)
        return rc;
    struct registry_device *d = malloc(sizeof *d);
    rc = d ? registry_lookup(r, id, strlen(id), d) : -ENOMEM;
    registry_close(r);
    if (rc == 0) {
        dev__print(d, "");
        printf("\n");
    }
    free(d);
    if (rc == -ENOENT)
        return cli_error(CLI_FAIL, "device show: %s is not registered", id);
    if (rc)
        return cli_error(CLI_ERR, "device show: %s", registry_strerror(rc));
    return CLI_OK;
}
