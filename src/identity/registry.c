/* Device registry index (see registry.h for the rules). LMDB layout, all
 * under <datadir>/registry/:
 *   "devices": device id (34 bytes) -> value, a CBOR array
 *       [status, current key bstr(32), registered index, updated index,
 *        rotations, rotated-at ms, revoked index, revoked-at ms,
 *        reason tstr / null, last seq uint / null, last seq index,
 *        the registration record bstr]
 *   "keys":    public key (32 bytes) -> device id, for every key a device
 *              ever had (so a key can never be registered twice)
 *   "meta":    "state" -> size u64 LE || root[32] || operator set hash[32]
 * Invariant: meta.state is written in the same transaction as the effects
 * of the records it counts, so the index always reflects exactly the first
 * meta.size ledger records. */
#include "identity/registry.h"

#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto/hash.h"
#include "crypto/sign.h"
#include "util/cbor.h"
#include "util/log.h"

#define REG__CHUNK 4096               /* ledger records per write transaction */
#define REG__MAP_INITIAL (1ull << 30) /* address space; the file grows with use */
#define REG__MAP_MAX_DEFAULT (64ull << 30)
#define REG__STATE_LEN (8 + 32 + 32)
#define REG__VALUE_MAX (REGISTRY_RECORD_MAX + 512)
#define REG__SIG_UNCHECKED 1 /* registry_verify_signature not run yet */
#define REG__VERIFY_THREADS_MAX 8
#define REG__PARALLEL_MIN 64 /* registry records in a chunk worth threads for */

struct registry {
    MDB_env *env;
    MDB_dbi devices, keys, meta;
    uint64_t map_size, map_max;
    size_t n_ops;
    struct note_verifier ops[REGISTRY_MAX_OPERATORS];
    uint8_t ops_hash[32];
};

/* One device's value, fields viewing the encoded value or a record. */
struct reg__entry {
    uint64_t status;
    uint8_t pk[32];
    uint64_t reg_index, upd_index, n_rot, rot_at, rev_index, rev_at;
    struct ledger_bytes reason;
    bool has_seq;
    uint64_t last_seq, last_seq_index;
    struct ledger_bytes record;
};

const char *registry_strerror(int err)
{
    switch (err) {
    case REGISTRY_ERR_NOT_REGISTRY:
        return "not a registry record";
    case REGISTRY_ERR_OPERATOR:
        return "signed by a key that is not a configured operator key";
    case REGISTRY_ERR_SIGNATURE:
        return "operator signature does not verify";
    case REGISTRY_ERR_ID_MISMATCH:
        return "device id is not the id of the public key";
    case REGISTRY_ERR_EXISTS:
        return "device id is already registered";
    case REGISTRY_ERR_KEY_IN_USE:
        return "public key is or was the key of a registered device";
    case REGISTRY_ERR_UNKNOWN:
        return "device id is not registered";
    case REGISTRY_ERR_REVOKED:
        return "device is revoked";
    case REGISTRY_ERR_DB:
        return "registry index error (LMDB)";
    case REGISTRY_ERR_ARGS:
        return "invalid argument";
    case -ENOENT:
        return "no such device";
    default:
        return ledger_record_strerror(err);
    }
}

/* ---- signatures (pure) ---- */

int registry_sign_record(struct ledger_record *rec, const char *op_vkey, const uint8_t sk[64],
                         uint8_t sig_buf[64], uint8_t *buf, size_t cap, size_t *len)
{
    size_t n;
    rec->version = LEDGER_RECORD_VERSION;
    rec->reg.operator_key.ptr = (const uint8_t *)op_vkey;
    rec->reg.operator_key.len = strlen(op_vkey);
    /* the body is encoded into buf first, signed, then overwritten */
    int rc = ledger_registry_signed_bytes(rec, buf, cap, &n);
    if (rc != 0)
        return rc;
    crypto_ed25519_sign(sig_buf, buf, n, sk);
    rec->reg.signature.ptr = sig_buf;
    rec->reg.signature.len = LEDGER_REG_SIG_LEN;
    return ledger_record_encode(rec, buf, cap, len);
}

static int reg__is_registry(uint64_t kind)
{
    return kind == LEDGER_KIND_DEVICE_REGISTRATION || kind == LEDGER_KIND_DEVICE_REVOCATION ||
           kind == LEDGER_KIND_KEY_ROTATION;
}

int registry_verify_signature(const struct ledger_record *rec, const struct note_verifier *ops,
                              size_t n_ops)
{
    if (!rec->known || !reg__is_registry(rec->kind) || rec->reg.signature.len != 64)
        return REGISTRY_ERR_NOT_REGISTRY;
    struct note_verifier v;
    const struct ledger_bytes *ok = &rec->reg.operator_key;
    if (note_verifier_parse((const char *)ok->ptr, ok->len, &v) != 0)
        return REGISTRY_ERR_NOT_REGISTRY;
    const struct note_verifier *op = NULL;
    for (size_t i = 0; i < n_ops && op == NULL; i++)
        if (ops[i].type == v.type && ops[i].key_id == v.key_id && ops[i].name_len == v.name_len &&
            memcmp(ops[i].name, v.name, v.name_len) == 0 && memcmp(ops[i].pk, v.pk, 32) == 0)
            op = &ops[i];
    if (op == NULL)
        return REGISTRY_ERR_OPERATOR;
    size_t cap = rec->raw.len + sizeof(LEDGER_REG_SIG_DOMAIN), n;
    uint8_t *body = malloc(cap);
    if (body == NULL)
        return -ENOMEM;
    int rc = ledger_registry_signed_bytes(rec, body, cap, &n);
    if (rc == 0)
        rc = crypto_ed25519_verify(rec->reg.signature.ptr, body, n, op->pk) == 0
                 ? 0
                 : REGISTRY_ERR_SIGNATURE;
    else
        rc = REGISTRY_ERR_NOT_REGISTRY;
    free(body);
    return rc;
}

/* ---- values ---- */

static int reg__encode_entry(const struct reg__entry *e, uint8_t *buf, size_t cap, size_t *len)
{
    struct cbor_writer w;
    cbor_writer_init(&w, buf, cap);
    cbor_put_array(&w, 12);
    cbor_put_uint(&w, e->status);
    cbor_put_bstr(&w, e->pk, 32);
    cbor_put_uint(&w, e->reg_index);
    cbor_put_uint(&w, e->upd_index);
    cbor_put_uint(&w, e->n_rot);
    cbor_put_uint(&w, e->rot_at);
    cbor_put_uint(&w, e->rev_index);
    cbor_put_uint(&w, e->rev_at);
    if (e->reason.ptr != NULL)
        cbor_put_tstr(&w, (const char *)e->reason.ptr, e->reason.len);
    else
        cbor_put_null(&w);
    if (e->has_seq)
        cbor_put_uint(&w, e->last_seq);
    else
        cbor_put_null(&w);
    cbor_put_uint(&w, e->last_seq_index);
    cbor_put_bstr(&w, e->record.ptr, e->record.len);
    return cbor_writer_finish(&w, len);
}

static int reg__decode_entry(const uint8_t *buf, size_t len, struct reg__entry *e)
{
    struct cbor_reader r;
    uint64_t n;
    const uint8_t *pk;
    size_t pk_len;
    enum cbor_type t;
    memset(e, 0, sizeof *e);
    cbor_reader_init(&r, buf, len);
    if (cbor_get_array(&r, &n) != 0 || n != 12 || cbor_get_uint(&r, &e->status) != 0 ||
        cbor_get_bstr(&r, &pk, &pk_len) != 0 || pk_len != 32 ||
        cbor_get_uint(&r, &e->reg_index) != 0 || cbor_get_uint(&r, &e->upd_index) != 0 ||
        cbor_get_uint(&r, &e->n_rot) != 0 || cbor_get_uint(&r, &e->rot_at) != 0 ||
        cbor_get_uint(&r, &e->rev_index) != 0 || cbor_get_uint(&r, &e->rev_at) != 0 ||
        cbor_peek_type(&r, &t) != 0)
        return REGISTRY_ERR_DB;
    memcpy(e->pk, pk, 32);
    if (t == CBOR_TYPE_TSTR) {
        const char *p;
        if (cbor_get_tstr(&r, &p, &e->reason.len) != 0)
            return REGISTRY_ERR_DB;
        e->reason.ptr = (const uint8_t *)p;
    } else if (cbor_get_null(&r) != 0) {
        return REGISTRY_ERR_DB;
    }
    if (cbor_peek_type(&r, &t) != 0)
        return REGISTRY_ERR_DB;
    if (t == CBOR_TYPE_UINT) {
        e->has_seq = true;
        if (cbor_get_uint(&r, &e->last_seq) != 0)
            return REGISTRY_ERR_DB;
    } else if (cbor_get_null(&r) != 0) {
        return REGISTRY_ERR_DB;
    }
    if (cbor_get_uint(&r, &e->last_seq_index) != 0 ||
        cbor_get_bstr(&r, &e->record.ptr, &e->record.len) != 0 || cbor_reader_end(&r) != 0)
        return REGISTRY_ERR_DB;
    return 0;
}

static int reg__db(int rc, const char *what)
{
    LMQ_ERROR("registry: %s: %s", what, mdb_strerror(rc));
    return REGISTRY_ERR_DB;
}

/* 0 and *e viewing the LMDB page (valid until the txn ends), -ENOENT or
 * REGISTRY_ERR_DB. */
static int reg__get(struct registry *r, MDB_txn *txn, const void *id, size_t id_len,
                    struct reg__entry *e)
{
    MDB_val k = {id_len, (void *)id}, v;
    int rc = mdb_get(txn, r->devices, &k, &v);
    if (rc == MDB_NOTFOUND)
        return -ENOENT;
    if (rc != 0)
        return reg__db(rc, "get device");
    return reg__decode_entry(v.mv_data, v.mv_size, e);
}

static int reg__put(struct registry *r, MDB_txn *txn, const void *id, const struct reg__entry *e)
{
    uint8_t *buf = malloc(REG__VALUE_MAX);
    size_t len;
    if (buf == NULL)
        return -ENOMEM;
    int rc = reg__encode_entry(e, buf, REG__VALUE_MAX, &len);
    if (rc != 0) {
        free(buf);
        return REGISTRY_ERR_DB;
    }
    MDB_val k = {DEVICE_ID_LEN, (void *)id}, v = {len, buf};
    rc = mdb_put(txn, r->devices, &k, &v, 0);
    free(buf);
    return rc == 0 ? 0 : rc == MDB_MAP_FULL ? MDB_MAP_FULL : reg__db(rc, "put device");
}

static int reg__key_known(struct registry *r, MDB_txn *txn, const uint8_t *pk)
{
    MDB_val k = {32, (void *)pk}, v;
    int rc = mdb_get(txn, r->keys, &k, &v);
    if (rc == MDB_NOTFOUND)
        return 0;
    return rc == 0 ? 1 : reg__db(rc, "get key");
}

/* ---- rules ---- */

/* Checks rec (decoded, a registry kind) against the state in txn. sig_rc
 * is the operator signature check's result if already known, else
 * REG__SIG_UNCHECKED. On 0, *cur holds the device's entry for
 * revocation/rotation. */
static int reg__rules(struct registry *r, MDB_txn *txn, const struct ledger_record *rec, int sig_rc,
                      struct reg__entry *cur)
{
    const struct ledger_registry *g = &rec->reg;
    int rc;
    if (rec->raw.len > REGISTRY_RECORD_MAX)
        return REGISTRY_ERR_NOT_REGISTRY;
    rc = sig_rc == REG__SIG_UNCHECKED ? registry_verify_signature(rec, r->ops, r->n_ops) : sig_rc;
    if (rc != 0)
        return rc;
    rc = reg__get(r, txn, g->device_id.ptr, g->device_id.len, cur);
    if (rc != 0 && rc != -ENOENT)
        return rc;
    if (rec->kind == LEDGER_KIND_DEVICE_REGISTRATION) {
        if (!device_id_matches((const char *)g->device_id.ptr, g->device_id.len, g->public_key.ptr))
            return REGISTRY_ERR_ID_MISMATCH;
        if (rc == 0)
            return REGISTRY_ERR_EXISTS;
    } else {
        if (rc == -ENOENT)
            return REGISTRY_ERR_UNKNOWN;
        if (cur->status == REGISTRY_REVOKED)
            return REGISTRY_ERR_REVOKED;
    }
    if (rec->kind != LEDGER_KIND_DEVICE_REVOCATION) {
        rc = reg__key_known(r, txn, g->public_key.ptr);
        if (rc < 0)
            return rc;
        if (rc == 1)
            return REGISTRY_ERR_KEY_IN_USE;
    }
    return 0;
}

/* Applies record index (decoded) in txn. 1 if it changed the registry, 0
 * if it had no effect (*refused set for a refused registry record), or
 * < 0: REGISTRY_ERR_DB, -ENOMEM or MDB_MAP_FULL (negative in LMDB). */
static int reg__apply(struct registry *r, MDB_txn *txn, uint64_t index,
                      const struct ledger_record *rec, int sig_rc, int *refused)
{
    struct reg__entry e;
    int rc;
    *refused = 0;
    if (rec->kind == LEDGER_KIND_MESSAGE) {
        const struct ledger_message *m = &rec->msg;
        if (!m->has_device_seq ||
            !device_id_valid((const char *)m->publisher.ptr, m->publisher.len))
            return 0;
        rc = reg__get(r, txn, m->publisher.ptr, m->publisher.len, &e);
        if (rc == -ENOENT)
            return 0;
        if (rc != 0)
            return rc;
        if (e.status != REGISTRY_ACTIVE || (e.has_seq && m->device_seq <= e.last_seq))
            return 0;
        e.has_seq = true;
        e.last_seq = m->device_seq;
        e.last_seq_index = index;
        rc = reg__put(r, txn, m->publisher.ptr, &e);
        return rc == 0 ? 1 : rc;
    }
    if (!reg__is_registry(rec->kind) || !rec->known)
        return 0;
    rc = reg__rules(r, txn, rec, sig_rc, &e);
    if (rc == REGISTRY_ERR_DB || rc == -ENOMEM)
        return rc;
    if (rc != 0) {
        *refused = rc;
        return 0;
    }
    const struct ledger_registry *g = &rec->reg;
    if (rec->kind == LEDGER_KIND_DEVICE_REGISTRATION) {
        memset(&e, 0, sizeof e);
        e.status = REGISTRY_ACTIVE;
        memcpy(e.pk, g->public_key.ptr, 32);
        e.reg_index = e.upd_index = index;
        e.record = rec->raw;
    } else if (rec->kind == LEDGER_KIND_DEVICE_REVOCATION) {
        e.status = REGISTRY_REVOKED;
        e.upd_index = e.rev_index = index;
        e.rev_at = g->time_ms;
        e.reason = g->reason;
    } else {
        memcpy(e.pk, g->public_key.ptr, 32);
        e.upd_index = index;
        e.n_rot++;
        e.rot_at = g->time_ms;
    }
    /* e may view the LMDB page being replaced: reg__put encodes first. */
    rc = reg__put(r, txn, g->device_id.ptr, &e);
    if (rc != 0)
        return rc;
    if (rec->kind != LEDGER_KIND_DEVICE_REVOCATION) {
        MDB_val k = {32, (void *)g->public_key.ptr}, v = {DEVICE_ID_LEN, (void *)g->device_id.ptr};
        rc = mdb_put(txn, r->keys, &k, &v, 0);
        if (rc != 0)
            return rc == MDB_MAP_FULL ? MDB_MAP_FULL : reg__db(rc, "put key");
    }
    return 1;
}

/* ---- open / close ---- */

static int reg__cmp_vkey(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* SHA-256 of the sorted distinct operator verifier key strings, each +
 * '\n'. */
static int reg__ops_hash(struct registry *r)
{
    char(*s)[NOTE_VKEY_MAX] = calloc(r->n_ops ? r->n_ops : 1, sizeof *s);
    char **p = calloc(r->n_ops ? r->n_ops : 1, sizeof *p);
    const void *parts[2 * REGISTRY_MAX_OPERATORS];
    size_t lens[2 * REGISTRY_MAX_OPERATORS];
    int rc = 0;
    if (s == NULL || p == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < r->n_ops; i++) {
        if (note_verifier_format(&r->ops[i], s[i], sizeof s[i]) < 0) {
            rc = REGISTRY_ERR_ARGS;
            goto out;
        }
        p[i] = s[i];
    }
    qsort(p, r->n_ops, sizeof *p, reg__cmp_vkey);
    size_t n = 0; /* distinct keys: a key listed twice is the same set */
    for (size_t i = 0; i < r->n_ops; i++) {
        if (i > 0 && strcmp(p[i], p[i - 1]) == 0)
            continue;
        parts[2 * n] = p[i];
        lens[2 * n] = strlen(p[i]);
        parts[2 * n + 1] = "\n";
        lens[2 * n + 1] = 1;
        n++;
    }
    crypto_sha256_parts(parts, lens, 2 * n, r->ops_hash);
out:
    free(s);
    free(p);
    return rc;
}

int registry_open(const char *datadir, const struct registry_options *opts, struct registry **out,
                  char *err, size_t errlen)
{
    char dir[4096];
    MDB_txn *txn = NULL;
    int rc;
    *out = NULL;
    if (err && errlen)
        err[0] = '\0';
    if (opts->n_operators > REGISTRY_MAX_OPERATORS) {
        snprintf(err, errlen, "more than %d operator keys", REGISTRY_MAX_OPERATORS);
        return REGISTRY_ERR_ARGS;
    }
    for (size_t i = 0; i < opts->n_operators; i++)
        if (opts->operators[i].type != NOTE_SIG_ED25519) {
            snprintf(err, errlen, "operator key %s is not an Ed25519 (type 0x01) key",
                     opts->operators[i].name);
            return REGISTRY_ERR_ARGS;
        }
    struct registry *r = calloc(1, sizeof *r);
    if (r == NULL)
        return -ENOMEM;
    r->n_ops = opts->n_operators;
    if (r->n_ops)
        memcpy(r->ops, opts->operators, r->n_ops * sizeof r->ops[0]);
    r->map_max = opts->map_size_max ? opts->map_size_max : REG__MAP_MAX_DEFAULT;
    r->map_size = REG__MAP_INITIAL < r->map_max ? REG__MAP_INITIAL : r->map_max;
    if ((rc = reg__ops_hash(r)) != 0) {
        snprintf(err, errlen, "cannot format the operator keys");
        goto fail_free;
    }
    if (snprintf(dir, sizeof dir, "%s/registry", datadir) >= (int)sizeof dir) {
        rc = -ENAMETOOLONG;
        snprintf(err, errlen, "data dir path too long");
        goto fail_free;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        goto fail_free;
    }
    if ((rc = mdb_env_create(&r->env)) != 0) {
        snprintf(err, errlen, "mdb_env_create: %s", mdb_strerror(rc));
        rc = REGISTRY_ERR_DB;
        goto fail_free;
    }
    if ((rc = mdb_env_set_maxdbs(r->env, 3)) != 0 ||
        (rc = mdb_env_set_mapsize(r->env, (size_t)r->map_size)) != 0 ||
        (rc = mdb_env_open(r->env, dir, MDB_NOTLS, 0600)) != 0) {
        snprintf(err, errlen, "%s: %s", dir, mdb_strerror(rc));
        rc = REGISTRY_ERR_DB;
        goto fail_close_env;
    }
    if ((rc = mdb_txn_begin(r->env, NULL, 0, &txn)) != 0 ||
        (rc = mdb_dbi_open(txn, "devices", MDB_CREATE, &r->devices)) != 0 ||
        (rc = mdb_dbi_open(txn, "keys", MDB_CREATE, &r->keys)) != 0 ||
        (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &r->meta)) != 0 ||
        (rc = mdb_txn_commit(txn)) != 0) {
        if (txn && rc != 0)
            mdb_txn_abort(txn);
        snprintf(err, errlen, "%s: opening the databases: %s", dir, mdb_strerror(rc));
        rc = REGISTRY_ERR_DB;
        goto fail_close_env;
    }
    *out = r;
    return 0;
fail_close_env:
    mdb_env_close(r->env);
fail_free:
    free(r);
    return rc;
}

void registry_close(struct registry *r)
{
    if (r == NULL)
        return;
    mdb_env_close(r->env);
    free(r);
}

/* ---- sync ---- */

struct reg__state {
    uint64_t size;
    uint8_t root[32];
    uint8_t ops_hash[32];
};

/* 0 and *st, -ENOENT (no state: empty or lost index), REGISTRY_ERR_DB. */
static int reg__read_state(struct registry *r, MDB_txn *txn, struct reg__state *st)
{
    MDB_val k = {5, (void *)"state"}, v;
    int rc = mdb_get(txn, r->meta, &k, &v);
    if (rc == MDB_NOTFOUND)
        return -ENOENT;
    if (rc != 0)
        return reg__db(rc, "get state");
    if (v.mv_size != REG__STATE_LEN)
        return -ENOENT; /* unknown layout: rebuild */
    const uint8_t *p = v.mv_data;
    st->size = 0;
    for (int i = 7; i >= 0; i--)
        st->size = st->size << 8 | p[i];
    memcpy(st->root, p + 8, 32);
    memcpy(st->ops_hash, p + 40, 32);
    return 0;
}

static int reg__write_state(struct registry *r, MDB_txn *txn, const struct reg__state *st)
{
    uint8_t b[REG__STATE_LEN];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(st->size >> (8 * i));
    memcpy(b + 8, st->root, 32);
    memcpy(b + 40, st->ops_hash, 32);
    MDB_val k = {5, (void *)"state"}, v = {sizeof b, b};
    int rc = mdb_put(txn, r->meta, &k, &v, 0);
    return rc == 0 ? 0 : rc == MDB_MAP_FULL ? MDB_MAP_FULL : reg__db(rc, "put state");
}

uint64_t registry_ledger_size(struct registry *r)
{
    MDB_txn *txn;
    struct reg__state st = {0};
    if (mdb_txn_begin(r->env, NULL, MDB_RDONLY, &txn) != 0)
        return 0;
    if (reg__read_state(r, txn, &st) != 0)
        st.size = 0;
    mdb_txn_abort(txn);
    return st.size;
}

static int reg__grow(struct registry *r)
{
    if (r->map_size >= r->map_max)
        return REGISTRY_ERR_DB;
    uint64_t n = r->map_size * 2 < r->map_max ? r->map_size * 2 : r->map_max;
    int rc = mdb_env_set_mapsize(r->env, (size_t)n);
    if (rc != 0)
        return reg__db(rc, "grow map");
    r->map_size = n;
    return 0;
}

static int reg__wipe(struct registry *r)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(r->env, NULL, 0, &txn);
    if (rc != 0)
        return reg__db(rc, "begin");
    if ((rc = mdb_drop(txn, r->devices, 0)) != 0 || (rc = mdb_drop(txn, r->keys, 0)) != 0 ||
        (rc = mdb_drop(txn, r->meta, 0)) != 0) {
        mdb_txn_abort(txn);
        return reg__db(rc, "drop");
    }
    rc = mdb_txn_commit(txn);
    return rc == 0 ? 0 : reg__db(rc, "commit");
}

/* The operator signatures of one chunk's registry records, checked before
 * the chunk is applied and on several threads: Ed25519 verification is
 * nearly all the time a rebuild takes (~10-25k verifications/s per core).
 * Only the records that can change the registry are copied. */
struct reg__sigs {
    const struct registry *r;
    size_t n, cap;
    uint64_t *index; /* ledger index of item k, ascending */
    size_t *off;     /* item k = arena[off[k] .. off[k] + len[k]) */
    size_t *len;
    int *rc;
    uint8_t *arena;
    size_t arena_len, arena_cap;
    unsigned n_threads;
};

struct reg__sig_worker {
    struct reg__sigs *s;
    unsigned t;
    pthread_t tid;
};

static void *reg__sig_thread(void *arg)
{
    struct reg__sig_worker *w = arg;
    struct reg__sigs *s = w->s;
    for (size_t k = w->t; k < s->n; k += s->n_threads) {
        struct ledger_record rec;
        if (ledger_record_decode(s->arena + s->off[k], s->len[k], &rec) != 0)
            s->rc[k] = REGISTRY_ERR_NOT_REGISTRY;
        else if (reg__is_registry(rec.kind) && s->len[k] <= REGISTRY_RECORD_MAX)
            s->rc[k] = registry_verify_signature(&rec, s->r->ops, s->r->n_ops);
    }
    return NULL;
}

static void reg__sigs_free(struct reg__sigs *s)
{
    free(s->index);
    free(s->off);
    free(s->len);
    free(s->rc);
    free(s->arena);
}

static int reg__sigs_add(struct reg__sigs *s, uint64_t index, const uint8_t *p, size_t len)
{
    if (s->n == s->cap) {
        size_t c = s->cap ? 2 * s->cap : 256;
        uint64_t *ni = realloc(s->index, c * sizeof *ni);
        if (ni)
            s->index = ni;
        size_t *no = realloc(s->off, c * sizeof *no);
        if (no)
            s->off = no;
        size_t *nl = realloc(s->len, c * sizeof *nl);
        if (nl)
            s->len = nl;
        int *nr = realloc(s->rc, c * sizeof *nr);
        if (nr)
            s->rc = nr;
        if (!ni || !no || !nl || !nr)
            return -ENOMEM;
        s->cap = c;
    }
    if (s->arena_len + len > s->arena_cap) {
        size_t c = s->arena_cap ? s->arena_cap : 1 << 16;
        while (c < s->arena_len + len)
            c *= 2;
        uint8_t *na = realloc(s->arena, c);
        if (na == NULL)
            return -ENOMEM;
        s->arena = na;
        s->arena_cap = c;
    }
    memcpy(s->arena + s->arena_len, p, len);
    s->index[s->n] = index;
    s->off[s->n] = s->arena_len;
    s->len[s->n] = len;
    s->rc[s->n] = REG__SIG_UNCHECKED;
    s->arena_len += len;
    s->n++;
    return 0;
}

/* ledger_scan callback: keeps the records that can change the registry,
 * registry records and messages carrying a device sequence. */
static int reg__collect(void *ctx, uint64_t index, const uint8_t *p, size_t len)
{
    struct reg__sigs *s = ctx;
    struct ledger_record rec;
    if (ledger_record_decode(p, len, &rec) != 0)
        return 0; /* not a record this version understands: no effect */
    if (rec.kind == LEDGER_KIND_MESSAGE
            ? !rec.msg.has_device_seq ||
                  !device_id_valid((const char *)rec.msg.publisher.ptr, rec.msg.publisher.len)
            : !rec.known || !reg__is_registry(rec.kind))
        return 0;
    return reg__sigs_add(s, index, p, len);
}

/* Reads [from, to) in one sequential scan, collects the records that can
 * change the registry and verifies the registry records' signatures (on
 * threads when there are many). */
static int reg__sigs_check(struct reg__sigs *s, struct ledger *l, uint64_t from, uint64_t to)
{
    int rc = ledger_scan(l, from, to, reg__collect, s);
    if (rc != 0)
        return rc;
    struct reg__sig_worker w[REG__VERIFY_THREADS_MAX];
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned started = 0;
    s->n_threads = s->n < REG__PARALLEL_MIN || cpus < 2 ? 1
                   : cpus > REG__VERIFY_THREADS_MAX     ? REG__VERIFY_THREADS_MAX
                                                        : (unsigned)cpus;
    for (unsigned t = 1; t < s->n_threads; t++) {
        w[t] = (struct reg__sig_worker){.s = s, .t = t};
        if (pthread_create(&w[t].tid, NULL, reg__sig_thread, &w[t]) != 0)
            break;
        started = t;
    }
    /* items of threads that did not start are left REG__SIG_UNCHECKED and
     * verified inline when applied */
    w[0] = (struct reg__sig_worker){.s = s, .t = 0};
    reg__sig_thread(&w[0]);
    for (unsigned t = 1; t <= started; t++)
        pthread_join(w[t].tid, NULL);
    return 0;
}

/* Applies ledger records [from, to) in one write transaction. */
static int reg__chunk(struct registry *r, struct ledger *l, uint64_t from, uint64_t to,
                      struct registry_sync_result *res, registry_refused_fn on_refused, void *ctx)
{
    MDB_txn *txn;
    struct registry_sync_result part = {0};
    struct reg__state st;
    struct reg__sigs sigs = {.r = r};
    int rc = reg__sigs_check(&sigs, l, from, to);
    if (rc != 0) {
        reg__sigs_free(&sigs);
        return rc;
    }
    rc = mdb_txn_begin(r->env, NULL, 0, &txn);
    if (rc != 0) {
        reg__sigs_free(&sigs);
        return rc == MDB_MAP_RESIZED ? MDB_MAP_FULL : reg__db(rc, "begin");
    }
    /* Write transactions are serialised across processes: if another one
     * (a CLI beside a broker) moved the index since we looked, start over. */
    rc = reg__read_state(r, txn, &st);
    if ((rc == 0 && st.size != from) || (rc == -ENOENT && from != 0)) {
        rc = -EAGAIN;
        goto fail_abort;
    }
    if (rc != 0 && rc != -ENOENT)
        goto fail_abort;
    for (size_t k = 0; k < sigs.n; k++) {
        uint64_t i = sigs.index[k];
        struct ledger_record rec;
        if (ledger_record_decode(sigs.arena + sigs.off[k], sigs.len[k], &rec) != 0)
            continue; /* decoded once already in reg__collect */
        int refused;
        rc = reg__apply(r, txn, i, &rec, sigs.rc[k], &refused);
        if (rc < 0 || rc == MDB_MAP_FULL)
            goto fail_abort;
        if (refused) {
            part.refused++;
            if (on_refused)
                on_refused(ctx, i, refused);
        } else if (rc == 1) {
            if (rec.kind == LEDGER_KIND_MESSAGE)
                part.seq_updates++;
            else
                part.applied++;
        }
    }
    st.size = to;
    memcpy(st.ops_hash, r->ops_hash, 32);
    if ((rc = ledger_root_at(l, to, st.root)) != 0)
        goto fail_abort;
    if ((rc = reg__write_state(r, txn, &st)) != 0)
        goto fail_abort;
    rc = mdb_txn_commit(txn);
    reg__sigs_free(&sigs);
    if (rc != 0)
        return rc == MDB_MAP_FULL ? MDB_MAP_FULL : reg__db(rc, "commit");
    res->applied += part.applied;
    res->refused += part.refused;
    res->seq_updates += part.seq_updates;
    return 0;
fail_abort:
    mdb_txn_abort(txn);
    reg__sigs_free(&sigs);
    return rc;
}

static int reg__sync(struct registry *r, struct ledger *l, struct registry_sync_result *res,
                     registry_refused_fn on_refused, void *ctx);

int registry_sync(struct registry *r, struct ledger *l, struct registry_sync_result *res,
                  registry_refused_fn on_refused, void *ctx)
{
    int rc = -EAGAIN;
    for (int attempt = 0; attempt < 5 && rc == -EAGAIN; attempt++)
        rc = reg__sync(r, l, res, on_refused, ctx);
    return rc == -EAGAIN ? REGISTRY_ERR_DB : rc;
}

static int reg__sync(struct registry *r, struct ledger *l, struct registry_sync_result *res,
                     registry_refused_fn on_refused, void *ctx)
{
    struct registry_sync_result local;
    struct reg__state st;
    MDB_txn *txn;
    uint64_t size = ledger_size(l);
    if (res == NULL)
        res = &local;
    memset(res, 0, sizeof *res);
    int rc = mdb_txn_begin(r->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0)
        return reg__db(rc, "begin");
    rc = reg__read_state(r, txn, &st);
    mdb_txn_abort(txn);
    if (rc != 0 && rc != -ENOENT)
        return rc;
    bool rebuild = rc == -ENOENT || st.size > size || memcmp(st.ops_hash, r->ops_hash, 32) != 0;
    if (!rebuild) {
        uint8_t root[32];
        rc = ledger_root_at(l, st.size, root);
        if (rc != 0)
            return rc;
        rebuild = memcmp(root, st.root, 32) != 0;
    }
    uint64_t from = rebuild ? 0 : st.size;
    if (rebuild) {
        if (rc == 0 && st.size > 0)
            LMQ_INFO("registry: index does not match the ledger or the operator keys; rebuilding");
        if ((rc = reg__wipe(r)) != 0)
            return rc;
        res->rebuilt = true;
    }
    res->from = from;
    while (from < size || (from == 0 && rebuild)) {
        uint64_t to = size - from > REG__CHUNK ? from + REG__CHUNK : size;
        rc = reg__chunk(r, l, from, to, res, on_refused, ctx);
        if (rc == MDB_MAP_FULL) {
            if ((rc = reg__grow(r)) != 0)
                break;
            continue;
        }
        if (rc != 0)
            break;
        from = to;
        rebuild = false;
    }
    res->to = from;
    return rc;
}

int registry_rebuild(struct registry *r, struct ledger *l, struct registry_sync_result *res,
                     registry_refused_fn on_refused, void *ctx)
{
    int rc = reg__wipe(r);
    if (rc != 0)
        return rc;
    return registry_sync(r, l, res, on_refused, ctx);
}

/* ---- lookups ---- */

static int reg__fill(const char *id, const void *val, size_t len, struct registry_device *out)
{
    struct reg__entry e;
    if (len > sizeof out->storage)
        return REGISTRY_ERR_DB;
    memcpy(out->storage, val, len);
    int rc = reg__decode_entry(out->storage, len, &e);
    if (rc != 0)
        return rc;
    memcpy(out->id, id, DEVICE_ID_LEN);
    out->id[DEVICE_ID_LEN] = '\0';
    out->status = e.status == REGISTRY_REVOKED ? REGISTRY_REVOKED : REGISTRY_ACTIVE;
    memcpy(out->public_key, e.pk, 32);
    out->registered_index = e.reg_index;
    out->updated_index = e.upd_index;
    out->n_rotations = e.n_rot;
    out->rotated_at_ms = e.rot_at;
    out->revoked_index = e.rev_index;
    out->revoked_at_ms = e.rev_at;
    out->reason = e.reason;
    out->has_last_seq = e.has_seq;
    out->last_seq = e.last_seq;
    out->last_seq_index = e.last_seq_index;
    if (ledger_record_decode(e.record.ptr, e.record.len, &out->registration) != 0)
        return REGISTRY_ERR_DB;
    return 0;
}

int registry_lookup(struct registry *r, const char *id, size_t id_len, struct registry_device *out)
{
    MDB_txn *txn;
    if (!device_id_valid(id, id_len))
        return -ENOENT;
    int rc = mdb_txn_begin(r->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0)
        return reg__db(rc, "begin");
    MDB_val k = {id_len, (void *)id}, v;
    rc = mdb_get(txn, r->devices, &k, &v);
    if (rc == 0)
        rc = reg__fill(id, v.mv_data, v.mv_size, out);
    else
        rc = rc == MDB_NOTFOUND ? -ENOENT : reg__db(rc, "get device");
    mdb_txn_abort(txn);
    return rc;
}

int registry_lookup_pks(struct registry *r, struct registry_pk_query *q, size_t n)
{
    MDB_txn *txn;
    int rc = n ? mdb_txn_begin(r->env, NULL, MDB_RDONLY, &txn) : 0;
    if (rc != 0) {
        rc = reg__db(rc, "begin");
        for (size_t i = 0; i < n; i++)
            q[i].rc = rc;
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        struct reg__entry e;
        MDB_val k = {DEVICE_ID_LEN, (void *)q[i].id}, v;
        q[i].revoked = false;
        if (!device_id_valid(q[i].id, DEVICE_ID_LEN)) {
            q[i].rc = -ENOENT;
            continue;
        }
        rc = mdb_get(txn, r->devices, &k, &v);
        if (rc == 0)
            rc = reg__decode_entry(v.mv_data, v.mv_size, &e);
        else
            rc = rc == MDB_NOTFOUND ? -ENOENT : reg__db(rc, "get device");
        if (rc == 0) {
            q[i].revoked = e.status == REGISTRY_REVOKED;
            memcpy(q[i].pk, e.pk, 32);
        }
        q[i].rc = rc;
    }
    if (n)
        mdb_txn_abort(txn);
    return 0;
}

int registry_lookup_key(struct registry *r, const uint8_t pk[32], char id[DEVICE_ID_LEN + 1])
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(r->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0)
        return reg__db(rc, "begin");
    MDB_val k = {32, (void *)pk}, v;
    rc = mdb_get(txn, r->keys, &k, &v);
    if (rc == 0 && v.mv_size == DEVICE_ID_LEN) {
        memcpy(id, v.mv_data, DEVICE_ID_LEN);
        id[DEVICE_ID_LEN] = '\0';
    } else {
        rc = rc == MDB_NOTFOUND ? -ENOENT : reg__db(rc ? rc : MDB_CORRUPTED, "get key");
    }
    mdb_txn_abort(txn);
    return rc;
}

int registry_foreach(struct registry *r, int (*fn)(void *ctx, const struct registry_device *dev),
                     void *ctx)
{
    return registry_foreach_after(r, NULL, 0, fn, ctx);
}

int registry_foreach_after(struct registry *r, const char *after, size_t after_len,
                           int (*fn)(void *ctx, const struct registry_device *dev), void *ctx)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    struct registry_device *dev = malloc(sizeof *dev);
    if (dev == NULL)
        return -ENOMEM;
    int rc = mdb_txn_begin(r->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) {
        free(dev);
        return reg__db(rc, "begin");
    }
    if ((rc = mdb_cursor_open(txn, r->devices, &cur)) != 0) {
        rc = reg__db(rc, "cursor");
        goto out_abort;
    }
    MDB_cursor_op first = MDB_FIRST;
    if (after) { /* the first key >= AFTER, skipped below if equal */
        k.mv_data = (void *)after;
        k.mv_size = after_len;
        first = MDB_SET_RANGE;
    }
    for (rc = mdb_cursor_get(cur, &k, &v, first); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (after && k.mv_size == after_len && memcmp(k.mv_data, after, after_len) == 0)
            continue;
        if (k.mv_size != DEVICE_ID_LEN) {
            rc = REGISTRY_ERR_DB;
            break;
        }
        rc = reg__fill(k.mv_data, v.mv_data, v.mv_size, dev);
        if (rc == 0)
            rc = fn(ctx, dev);
        if (rc != 0)
            break;
    }
    if (rc == MDB_NOTFOUND)
        rc = 0;
    mdb_cursor_close(cur);
out_abort:
    mdb_txn_abort(txn);
    free(dev);
    return rc;
}

int registry_check(struct registry *r, const uint8_t *buf, size_t len)
{
    struct ledger_record rec;
    struct reg__entry e;
    MDB_txn *txn;
    int rc = ledger_record_decode(buf, len, &rec);
    if (rc != 0)
        return rc;
    if (!rec.known || !reg__is_registry(rec.kind))
        return REGISTRY_ERR_NOT_REGISTRY;
    rc = mdb_txn_begin(r->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0)
        return reg__db(rc, "begin");
    rc = reg__rules(r, txn, &rec, REG__SIG_UNCHECKED, &e);
    mdb_txn_abort(txn);
    return rc;
}
