/* The broker's durable state in LMDB (<data_dir>/store/): tables, keys,
 * group-commit batches, map growth, load with record-by-record repair.
 * docs/STORE.md describes the tables and the crash/damage behaviour.
 *
 * Invariants: (1) every change of a batch is also kept in an in-memory op
 * log, so that when LMDB reports MDB_MAP_FULL the transaction can be
 * aborted, the map grown and the batch replayed: map growth is invisible to
 * the broker; (2) a message body's refs record counts exactly the queue
 * entries naming it (lmq_store_load recounts and repairs); (3) every key
 * that names a client starts with the same self-delimiting client prefix,
 * so one session's records in any table are one cursor range. */
#include "broker/store.h"
#include "util/crc32c.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <lmdb.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "broker/store_record.h"
#include "util/log.h"

#define MIB ((uint64_t)1024 * 1024)
#define STORE_FORMAT 1u

/* Key budgets (LMDB's default maximum key is 511 bytes): a name longer than
 * its budget is keyed by its first budget-32 bytes and a BLAKE2b-256 hash of
 * the whole name; the full name is always in the value. */
#define CID_BUDGET 200
#define FILTER_BUDGET 280
#define TOPIC_BUDGET 480
#define HASH_LEN 32
#define KEY_MAX 511

enum store__table {
    T_META,
    T_RETAINED,
    T_MSGS,
    T_REFS,
    T_SESSIONS,
    T_SUBS,
    T_QUEUE,
    T_QOS2IN,
    T_COUNT
};

static const char *const table_names[T_COUNT] = {
    "meta", "retained", "msgs", "refs", "sessions", "subs", "queue", "qos2in",
};

enum store__op_kind {
    OP_RET_PUT,
    OP_RET_DEL,
    OP_SESS_PUT,
    OP_SESS_DEL,
    OP_SUB_PUT,
    OP_SUB_DEL,
    OP_MSG_ADD,
    OP_Q_PUT,
    OP_Q_DEL,
    OP_Q2_PUT,
    OP_Q2_DEL,
};

/* One logged change; strings live in the arena at off[i] (offsets, because
 * the arena moves when it grows). */
struct store__op {
    uint8_t kind;
    uint8_t b0, b1, b2;
    uint16_t u16;
    uint32_t u32, u32b;
    uint64_t u64a, u64b;
    size_t off[4], len[4]; /* 0 client id, 1 topic/filter, 2 payload, 3 props */
};

struct lmq_store {
    MDB_env *env;
    MDB_dbi dbi[T_COUNT];
    MDB_txn *txn; /* the batch's write txn, opened by its first change */
    bool in_batch;
    bool batch_failed;
    struct lmq_store_options opt;
    uint64_t map_size;
    uint64_t next_msg_id;
    int lock_fd;
    char dir[PATH_MAX]; /* <data_dir>/store */

    struct store__op *ops;
    size_t n_ops, cap_ops;
    uint8_t *arena;
    size_t arena_len, arena_cap;
};

const char *lmq_store_strerror(int rc)
{
    switch (rc) {
    case 0: return "success";
    case LMQ_STORE_EFULL: return "store full (map size limit reached)";
    case LMQ_STORE_ELOCKED: return "data directory locked by another process";
    case LMQ_STORE_EIO: return "store I/O error";
    case LMQ_STORE_ENOMEM: return "out of memory";
    case LMQ_STORE_EINVAL: return "invalid argument";
    case LMQ_STORE_ENOTFOUND: return "not found";
    case LMQ_STORE_ENOMSG: return "message body not stored";
    case LMQ_STORE_REC_ESHORT: return "value shorter than its fixed part";
    case LMQ_STORE_REC_EVERSION: return "unknown format version";
    case LMQ_STORE_REC_EKIND: return "wrong record kind";
    case LMQ_STORE_REC_ECRC: return "CRC32C mismatch";
    case LMQ_STORE_REC_ELENGTH: return "length fields disagree with the value size";
    case LMQ_STORE_REC_EFIELD: return "field out of range";
    default: return "unknown error";
    }
}

void lmq_store_options_default(struct lmq_store_options *opt)
{
    opt->sync = LMQ_SYNC_ALWAYS;
    opt->map_size_initial = 64 * MIB;
    opt->map_size_max = 4096 * MIB;
}

uint64_t lmq_store_session_expires_at(const struct lmq_store_session *sess, uint64_t now)
{
    if (sess->expiry_interval == UINT32_MAX)
        return UINT64_MAX;
    uint64_t at = sess->disconnected_at ? sess->disconnected_at : now;
    return at + sess->expiry_interval;
}

/* ---- keys ---- */

static void be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static void be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}
static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

/* u16 BE length, then the name, or its head and hash if over BUDGET. */
static size_t key__name(uint8_t *out, const char *name, size_t len, size_t budget)
{
    be16(out, (uint16_t)len);
    if (len <= budget) {
        memcpy(out + 2, name, len);
        return 2 + len;
    }
    memcpy(out + 2, name, budget - HASH_LEN);
    crypto_generichash(out + 2 + budget - HASH_LEN, HASH_LEN, (const unsigned char *)name, len,
                       NULL, 0);
    return 2 + budget;
}

/* Length of the name part at the start of KEY, or 0 if it does not fit. */
static size_t key__name_len(const uint8_t *key, size_t klen, size_t budget)
{
    if (klen < 2)
        return 0;
    size_t n = ((size_t)key[0] << 8) | key[1];
    size_t part = 2 + (n <= budget ? n : budget);
    return part <= klen ? part : 0;
}

static void esc(char *out, size_t outlen, const uint8_t *p, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 < outlen; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' && p[i] != '\\')
            out[o++] = (char)p[i];
        else
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", p[i]);
    }
    out[o < outlen ? o : outlen - 1] = 0;
}

/* Printable description of KEY of table T for log lines. */
static void key__describe(int t, const uint8_t *k, size_t kl, char *out, size_t outlen)
{
    char a[256], b[256];
    size_t np;
    switch (t) {
    case T_MSGS:
    case T_REFS:
        if (kl == 8) {
            snprintf(out, outlen, "message id %" PRIu64, get_be64(k));
            return;
        }
        break;
    case T_RETAINED:
        if ((np = key__name_len(k, kl, TOPIC_BUDGET)) == kl) {
            esc(a, sizeof a, k + 2, np - 2);
            snprintf(out, outlen, "topic \"%s\"%s", a, np - 2 < (((size_t)k[0] << 8) | k[1]) ? " (hashed)" : "");
            return;
        }
        break;
    default:
        if ((np = key__name_len(k, kl, CID_BUDGET)) == 0)
            break;
        esc(a, sizeof a, k + 2, np - 2);
        if (t == T_SESSIONS && np == kl) {
            snprintf(out, outlen, "client \"%s\"", a);
            return;
        }
        if (t == T_QUEUE && kl == np + 8) {
            snprintf(out, outlen, "client \"%s\" seq %" PRIu64, a, get_be64(k + np));
            return;
        }
        if (t == T_QOS2IN && kl == np + 2) {
            snprintf(out, outlen, "client \"%s\" packet id %u", a, (k[np] << 8) | k[np + 1]);
            return;
        }
        if (t == T_SUBS) {
            size_t fp = key__name_len(k + np, kl - np, FILTER_BUDGET);
            if (fp && np + fp == kl) {
                esc(b, sizeof b, k + np + 2, fp - 2);
                snprintf(out, outlen, "client \"%s\" filter \"%s\"", a, b);
                return;
            }
        }
        break;
    }
    esc(a, sizeof a, k, kl);
    snprintf(out, outlen, "raw \"%s\"", a);
}

/* ---- small LMDB helpers ---- */

/* Values' CRCs cover their key (see broker/store_record.h). */
static uint32_t kcrc(const void *k, size_t kl)
{
    return lmq_crc32c(0, k, kl);
}
#define KCRC(mdbval) kcrc((mdbval)->mv_data, (mdbval)->mv_size)

static MDB_val mval(const void *p, size_t n)
{
    MDB_val v = {n, (void *)p};
    return v;
}

/* Maps an LMDB/errno failure to a store code, logging it. */
#define IS_STORE_CODE(rc) ((rc) <= -4000 && (rc) > -5000)

static int store__fail(const char *what, int rc)
{
    if (rc == MDB_MAP_FULL || IS_STORE_CODE(rc))
        return rc; /* a store code was logged where it arose */
    LMQ_ERROR("store: %s: %s", what, mdb_strerror(rc));
    return rc == ENOMEM ? LMQ_STORE_ENOMEM : LMQ_STORE_EIO;
}

/* Puts a value reserved in place and returns where to encode it. */
static int put_reserve(struct lmq_store *s, int t, const uint8_t *k, size_t kl, size_t vl,
                       uint8_t **where, unsigned flags)
{
    MDB_val key = mval(k, kl), val = mval(NULL, vl);
    int rc = mdb_put(s->txn, s->dbi[t], &key, &val, MDB_RESERVE | flags);
    if (rc)
        return rc;
    *where = val.mv_data;
    return 0;
}

/* ---- reference counts ---- */

static int ref__get(struct lmq_store *s, uint64_t id, uint32_t *count, uint32_t *size)
{
    uint8_t k[8];
    be64(k, id);
    MDB_val key = mval(k, 8), val;
    int rc = mdb_get(s->txn, s->dbi[T_REFS], &key, &val);
    if (rc)
        return rc;
    rc = lmq_store_rec_ref_decode(kcrc(k, 8), val.mv_data, val.mv_size, count, size);
    if (rc) {
        LMQ_ERROR("store: damaged record in table refs, key message id %" PRIu64 ": %s",
                  id, lmq_store_strerror(rc));
        return MDB_NOTFOUND;
    }
    return 0;
}

static int ref__set(struct lmq_store *s, uint64_t id, uint32_t count, uint32_t size)
{
    uint8_t k[8], *w;
    be64(k, id);
    int rc = put_reserve(s, T_REFS, k, 8, LMQ_STORE_REC_REF_SIZE, &w, 0);
    if (rc)
        return rc;
    lmq_store_rec_ref_encode(kcrc(k, 8), count, size, w);
    return 0;
}

/* Deletes body and refs record of ID (either may be missing). */
static int msg__drop(struct lmq_store *s, uint64_t id)
{
    uint8_t k[8];
    be64(k, id);
    MDB_val key = mval(k, 8);
    int rc = mdb_del(s->txn, s->dbi[T_REFS], &key, NULL);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    rc = mdb_del(s->txn, s->dbi[T_MSGS], &key, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int ref__dec(struct lmq_store *s, uint64_t id)
{
    uint32_t count, size;
    int rc = ref__get(s, id, &count, &size);
    if (rc == MDB_NOTFOUND)
        return msg__drop(s, id);
    if (rc)
        return rc;
    if (count <= 1)
        return msg__drop(s, id);
    return ref__set(s, id, count - 1, size);
}

/* ---- the changes, executed inside s->txn. They return 0, MDB_MAP_FULL,
 * LMQ_STORE_EINVAL / LMQ_STORE_ENOTFOUND (having changed nothing), or
 * another LMDB error. ---- */

static int do_ret_put(struct lmq_store *s, const struct lmq_store_message *m)
{
    uint8_t k[KEY_MAX], *w;
    size_t kl = key__name(k, m->topic, m->topic_len, TOPIC_BUDGET);
    struct lmq_store_message r = *m;
    r.retain = true;
    int rc = put_reserve(s, T_RETAINED, k, kl, lmq_store_rec_message_size(&r), &w, 0);
    if (rc)
        return rc;
    lmq_store_rec_message_encode(kcrc(k, kl), LMQ_STORE_KIND_RETAINED, &r, w);
    return 0;
}

static int do_del(struct lmq_store *s, int t, const uint8_t *k, size_t kl)
{
    MDB_val key = mval(k, kl);
    int rc = mdb_del(s->txn, s->dbi[t], &key, NULL);
    return rc == MDB_NOTFOUND ? LMQ_STORE_ENOTFOUND : rc;
}

static int do_sess_put(struct lmq_store *s, const struct lmq_store_session *sess)
{
    uint8_t k[KEY_MAX], *w;
    size_t kl = key__name(k, sess->client_id, sess->client_id_len, CID_BUDGET);
    int rc = put_reserve(s, T_SESSIONS, k, kl, lmq_store_rec_session_size(sess), &w, 0);
    if (rc)
        return rc;
    lmq_store_rec_session_encode(kcrc(k, kl), sess, w);
    return 0;
}

/* Deletes every record of table T whose key starts with PREFIX; for the
 * queue also drops the bodies' references. *N counts deletions. */
static int range_del(struct lmq_store *s, int t, const uint8_t *prefix, size_t plen, bool decref,
                     size_t *n)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(s->txn, s->dbi[t], &c);
    if (rc)
        return rc;
    for (;;) {
        MDB_val key = mval(prefix, plen), val;
        rc = mdb_cursor_get(c, &key, &val, MDB_SET_RANGE);
        if (rc == MDB_NOTFOUND || key.mv_size < plen || memcmp(key.mv_data, prefix, plen)) {
            rc = 0;
            break;
        }
        if (rc)
            break;
        uint64_t mid = 0;
        if (decref) {
            struct lmq_store_entry e;
            if (lmq_store_rec_entry_decode(kcrc(key.mv_data, key.mv_size), val.mv_data, val.mv_size, &e) == 0)
                mid = e.msg_id;
        }
        rc = mdb_cursor_del(c, 0);
        if (rc)
            break;
        (*n)++;
        if (mid && (rc = ref__dec(s, mid)) != 0)
            break;
    }
    mdb_cursor_close(c);
    return rc;
}

static int do_sess_del(struct lmq_store *s, const char *cid, size_t cl)
{
    uint8_t k[KEY_MAX];
    size_t kl = key__name(k, cid, cl, CID_BUDGET), n = 0;
    MDB_val key = mval(k, kl);
    int rc = mdb_del(s->txn, s->dbi[T_SESSIONS], &key, NULL);
    if (rc == 0)
        n++;
    else if (rc != MDB_NOTFOUND)
        return rc;
    if ((rc = range_del(s, T_SUBS, k, kl, false, &n)) || (rc = range_del(s, T_QUEUE, k, kl, true, &n)) ||
        (rc = range_del(s, T_QOS2IN, k, kl, false, &n)))
        return rc;
    return n ? 0 : LMQ_STORE_ENOTFOUND;
}

static size_t key__sub(uint8_t *k, const char *cid, size_t cl, const char *f, size_t fl)
{
    size_t kl = key__name(k, cid, cl, CID_BUDGET);
    return kl + key__name(k + kl, f, fl, FILTER_BUDGET);
}

static int do_sub_put(struct lmq_store *s, const char *cid, size_t cl, const struct lmq_store_sub *sub)
{
    uint8_t k[KEY_MAX], *w;
    size_t kl = key__sub(k, cid, cl, sub->filter, sub->filter_len);
    int rc = put_reserve(s, T_SUBS, k, kl, lmq_store_rec_sub_size(sub), &w, 0);
    if (rc)
        return rc;
    lmq_store_rec_sub_encode(kcrc(k, kl), sub, w);
    return 0;
}

static int do_msg_add(struct lmq_store *s, uint64_t id, const struct lmq_store_message *m)
{
    uint8_t k[8], *w;
    be64(k, id);
    int rc = put_reserve(s, T_MSGS, k, 8, lmq_store_rec_message_size(m), &w, MDB_NOOVERWRITE);
    if (rc)
        return rc;
    lmq_store_rec_message_encode(kcrc(k, 8), LMQ_STORE_KIND_MESSAGE, m, w);
    return ref__set(s, id, 0, (uint32_t)(m->topic_len + m->payload_len + m->props_len));
}

static size_t key__queue(uint8_t *k, const char *cid, size_t cl, uint64_t seq)
{
    size_t kl = key__name(k, cid, cl, CID_BUDGET);
    be64(k + kl, seq);
    return kl + 8;
}

static int do_q_put(struct lmq_store *s, const char *cid, size_t cl, const struct lmq_store_entry *in)
{
    uint8_t k[KEY_MAX], *w;
    size_t kl = key__queue(k, cid, cl, in->seq);
    struct lmq_store_entry e = *in, old;
    uint64_t old_mid = 0;
    uint32_t count = 0, size = 0;
    MDB_val key = mval(k, kl), val;
    int rc = mdb_get(s->txn, s->dbi[T_QUEUE], &key, &val);
    if (rc == 0 && lmq_store_rec_entry_decode(kcrc(k, kl), val.mv_data, val.mv_size, &old) == 0)
        old_mid = old.msg_id;
    else if (rc && rc != MDB_NOTFOUND)
        return rc;
    e.msg_size = 0;
    if (e.msg_id) {
        rc = ref__get(s, e.msg_id, &count, &size);
        if (rc == MDB_NOTFOUND)
            return LMQ_STORE_ENOMSG;
        if (rc)
            return rc;
        e.msg_size = size;
        if (e.msg_id != old_mid && (rc = ref__set(s, e.msg_id, count + 1, size)) != 0)
            return rc;
    }
    if (old_mid && old_mid != e.msg_id && (rc = ref__dec(s, old_mid)) != 0)
        return rc;
    if ((rc = put_reserve(s, T_QUEUE, k, kl, LMQ_STORE_REC_ENTRY_SIZE, &w, 0)) != 0)
        return rc;
    lmq_store_rec_entry_encode(kcrc(k, kl), &e, w);
    return 0;
}

static int do_q_del(struct lmq_store *s, const char *cid, size_t cl, uint64_t seq)
{
    uint8_t k[KEY_MAX];
    size_t kl = key__queue(k, cid, cl, seq);
    struct lmq_store_entry e;
    uint64_t mid = 0;
    MDB_val key = mval(k, kl), val;
    int rc = mdb_get(s->txn, s->dbi[T_QUEUE], &key, &val);
    if (rc == MDB_NOTFOUND)
        return LMQ_STORE_ENOTFOUND;
    if (rc)
        return rc;
    if (lmq_store_rec_entry_decode(kcrc(k, kl), val.mv_data, val.mv_size, &e) == 0)
        mid = e.msg_id;
    if ((rc = mdb_del(s->txn, s->dbi[T_QUEUE], &key, NULL)) != 0)
        return rc;
    return mid ? ref__dec(s, mid) : 0;
}

static size_t key__qos2(uint8_t *k, const char *cid, size_t cl, uint16_t pid)
{
    size_t kl = key__name(k, cid, cl, CID_BUDGET);
    be16(k + kl, pid);
    return kl + 2;
}

static int do_q2_put(struct lmq_store *s, const char *cid, size_t cl, uint16_t pid)
{
    uint8_t k[KEY_MAX], *w;
    size_t kl = key__qos2(k, cid, cl, pid);
    int rc = put_reserve(s, T_QOS2IN, k, kl, LMQ_STORE_REC_QOS2IN_SIZE, &w, 0);
    if (rc)
        return rc;
    lmq_store_rec_qos2in_encode(kcrc(k, kl), w);
    return 0;
}

/* ---- op log, batches, map growth ---- */

static const char *A(const struct lmq_store *s, const struct store__op *op, int i)
{
    return (const char *)s->arena + op->off[i];
}

static int op__exec(struct lmq_store *s, const struct store__op *op)
{
    const char *cid = A(s, op, 0);
    size_t cl = op->len[0];
    uint8_t k[KEY_MAX];
    struct lmq_store_message m = {
        .topic = A(s, op, 1), .topic_len = op->len[1], .payload = A(s, op, 2),
        .payload_len = op->len[2], .props = A(s, op, 3), .props_len = op->len[3],
        .qos = op->b0, .retain = op->b1, .expiry_at = op->u64b,
    };
    switch (op->kind) {
    case OP_RET_PUT:
        return do_ret_put(s, &m);
    case OP_RET_DEL:
        return do_del(s, T_RETAINED, k, key__name(k, m.topic, m.topic_len, TOPIC_BUDGET));
    case OP_SESS_PUT: {
        /* b1: has a delayed will (topic, payload, props in 1-3, b2 its
         * qos | retain << 2, u64b due, u32b its message expiry interval) */
        struct lmq_store_session sess = {
            .client_id = cid, .client_id_len = cl, .protocol_version = op->b0,
            .expiry_interval = op->u32, .disconnected_at = op->u64a, .has_will = op->b1,
            .will_at = op->u64b, .will_expiry = op->u32b,
        };
        if (sess.has_will) {
            sess.will = m;
            sess.will.qos = op->b2 & 3;
            sess.will.retain = (op->b2 & 4) != 0;
            sess.will.expiry_at = 0;
        }
        return do_sess_put(s, &sess);
    }
    case OP_SESS_DEL:
        return do_sess_del(s, cid, cl);
    case OP_SUB_PUT: {
        struct lmq_store_sub sub = {m.topic, m.topic_len, op->b0, op->u32};
        return do_sub_put(s, cid, cl, &sub);
    }
    case OP_SUB_DEL:
        return do_del(s, T_SUBS, k, key__sub(k, cid, cl, m.topic, m.topic_len));
    case OP_MSG_ADD:
        return do_msg_add(s, op->u64a, &m);
    case OP_Q_PUT: {
        struct lmq_store_entry e = {op->u64a, op->u64b, op->b0, op->b1, op->u16, op->b2, 0};
        return do_q_put(s, cid, cl, &e);
    }
    case OP_Q_DEL:
        return do_q_del(s, cid, cl, op->u64a);
    case OP_Q2_PUT:
        return do_q2_put(s, cid, cl, op->u16);
    case OP_Q2_DEL:
        return do_del(s, T_QOS2IN, k, key__qos2(k, cid, cl, op->u16));
    }
    return LMQ_STORE_EINVAL;
}

static void log__reset(struct lmq_store *s)
{
    s->n_ops = 0;
    s->arena_len = 0;
}

/* Doubles the map up to the limit; LMQ_STORE_EFULL at the limit. No txn
 * may be open. */
static int store__grow(struct lmq_store *s)
{
    if (s->map_size >= s->opt.map_size_max)
        return LMQ_STORE_EFULL;
    uint64_t n = s->map_size * 2;
    if (n > s->opt.map_size_max)
        n = s->opt.map_size_max;
    int rc = mdb_env_set_mapsize(s->env, (size_t)n);
    if (rc) {
        LMQ_ERROR("store: growing the map to %" PRIu64 " MiB failed: %s", n / MIB, mdb_strerror(rc));
        return LMQ_STORE_EFULL;
    }
    MDB_envinfo info;
    rc = mdb_env_info(s->env, &info);
    if (rc) {
        LMQ_ERROR("store: reading the map size failed: %s", mdb_strerror(rc));
        return LMQ_STORE_EFULL;
    }
    LMQ_INFO("store: map grown from %" PRIu64 " to %" PRIu64 " MiB (limit %" PRIu64 " MiB)",
             s->map_size / MIB, (uint64_t)info.me_mapsize / MIB, s->opt.map_size_max / MIB);
    s->map_size = info.me_mapsize;
    return 0;
}

/* Opens the batch's write txn if needed, growing the map first when it is
 * more than 3/4 used, so that MDB_MAP_FULL stays rare. */
static int store__txn(struct lmq_store *s)
{
    if (s->txn)
        return 0;
    MDB_envinfo info;
    MDB_stat st;
    if (mdb_env_info(s->env, &info) == 0 && mdb_env_stat(s->env, &st) == 0 &&
        ((uint64_t)info.me_last_pgno + 1) * st.ms_psize > s->map_size / 4 * 3)
        (void)store__grow(s);
    int rc = mdb_txn_begin(s->env, NULL, 0, &s->txn);
    if (rc) {
        s->txn = NULL;
        return store__fail("begin transaction", rc);
    }
    return 0;
}

static void store__txn_abort(struct lmq_store *s)
{
    if (s->txn)
        mdb_txn_abort(s->txn);
    s->txn = NULL;
}

/* Re-executes the first N logged ops in a fresh txn, growing the map as
 * needed. Returns 0, LMQ_STORE_EFULL or LMQ_STORE_EIO. */
static int store__replay(struct lmq_store *s, size_t n)
{
    for (;;) {
        store__txn_abort(s);
        int rc = store__txn(s);
        if (rc)
            return rc == MDB_MAP_FULL ? LMQ_STORE_EFULL : rc;
        size_t i;
        for (i = 0; i < n; i++) {
            rc = op__exec(s, &s->ops[i]);
            if (rc == LMQ_STORE_EINVAL || rc == LMQ_STORE_ENOTFOUND || rc == LMQ_STORE_ENOMSG)
                rc = 0;
            if (rc)
                break;
        }
        if (i == n)
            return 0;
        store__txn_abort(s);
        if (rc != MDB_MAP_FULL)
            return store__fail("replaying the batch", rc);
        if ((rc = store__grow(s)) != 0)
            return rc;
    }
}

static void store__batch_fail(struct lmq_store *s)
{
    store__txn_abort(s);
    log__reset(s);
    s->batch_failed = true;
}

static int arena__add(struct lmq_store *s, const void *p, size_t n, size_t *off)
{
    if (s->arena_cap - s->arena_len < n) {
        size_t cap = s->arena_cap ? s->arena_cap : 4096;
        while (cap - s->arena_len < n) {
            if (cap > SIZE_MAX / 2)
                return LMQ_STORE_ENOMEM;
            cap *= 2;
        }
        uint8_t *a = realloc(s->arena, cap);
        if (!a)
            return LMQ_STORE_ENOMEM;
        s->arena = a;
        s->arena_cap = cap;
    }
    *off = s->arena_len;
    if (n)
        memcpy(s->arena + s->arena_len, p, n);
    s->arena_len += n;
    return 0;
}

/* Logs OP (copying its strings S0..S3 into the arena) and executes it. */
static int store__apply(struct lmq_store *s, struct store__op *op, const void *s0, const void *s1,
                        const void *s2, const void *s3)
{
    const void *str[4] = {s0, s1, s2, s3};
    if (!s->in_batch || s->batch_failed)
        return LMQ_STORE_EINVAL;
    if (s->n_ops == s->cap_ops) {
        size_t cap = s->cap_ops ? s->cap_ops * 2 : 64;
        struct store__op *o = realloc(s->ops, cap * sizeof *o);
        if (!o)
            return LMQ_STORE_ENOMEM;
        s->ops = o;
        s->cap_ops = cap;
    }
    size_t arena_mark = s->arena_len;
    for (int i = 0; i < 4; i++) {
        if (arena__add(s, str[i], str[i] ? op->len[i] : 0, &op->off[i])) {
            s->arena_len = arena_mark;
            return LMQ_STORE_ENOMEM;
        }
    }
    s->ops[s->n_ops++] = *op;
    for (;;) {
        int rc = store__txn(s);
        if (rc == 0)
            rc = op__exec(s, &s->ops[s->n_ops - 1]);
        if (rc == 0)
            return 0;
        if (rc == LMQ_STORE_EINVAL || rc == LMQ_STORE_ENOTFOUND || rc == LMQ_STORE_ENOMSG) {
            s->n_ops--;
            s->arena_len = arena_mark;
            return rc;
        }
        if (rc != MDB_MAP_FULL) {
            rc = store__fail("write", rc);
            store__batch_fail(s);
            return rc == LMQ_STORE_ENOMEM ? rc : LMQ_STORE_EIO;
        }
        store__txn_abort(s);
        int grown = store__grow(s);
        if (grown) { /* at the limit: the batch without this op */
            s->n_ops--;
            s->arena_len = arena_mark;
        }
        rc = store__replay(s, s->n_ops - (grown ? 0 : 1));
        if (rc) {
            store__batch_fail(s);
            return rc;
        }
        if (grown) {
            LMQ_WARN("store: full (limit %" PRIu64 " MiB): change refused", s->opt.map_size_max / MIB);
            return LMQ_STORE_EFULL;
        }
    }
}

int lmq_store_begin(struct lmq_store *s)
{
    if (s->in_batch)
        return LMQ_STORE_EINVAL;
    s->in_batch = true;
    s->batch_failed = false;
    log__reset(s);
    return 0;
}

void lmq_store_abort(struct lmq_store *s)
{
    store__txn_abort(s);
    log__reset(s);
    s->in_batch = false;
    s->batch_failed = false;
}

/* Drops the bodies added in this batch that no entry references. */
static int store__drop_unreferenced(struct lmq_store *s)
{
    for (size_t i = 0; i < s->n_ops; i++) {
        if (s->ops[i].kind != OP_MSG_ADD)
            continue;
        uint32_t count, size;
        int rc = ref__get(s, s->ops[i].u64a, &count, &size);
        if (rc == MDB_NOTFOUND)
            continue;
        if (rc)
            return rc;
        if (count == 0 && (rc = msg__drop(s, s->ops[i].u64a)) != 0)
            return rc;
    }
    return 0;
}

int lmq_store_commit(struct lmq_store *s)
{
    if (!s->in_batch)
        return LMQ_STORE_EINVAL;
    s->in_batch = false;
    if (s->batch_failed) {
        s->batch_failed = false;
        return LMQ_STORE_EIO;
    }
    if (!s->txn) {
        log__reset(s);
        return 0;
    }
    int rc;
    for (;;) {
        rc = store__drop_unreferenced(s);
        if (rc == 0) {
            rc = mdb_txn_commit(s->txn);
            s->txn = NULL;
        }
        if (rc != MDB_MAP_FULL)
            break;
        store__txn_abort(s);
        if ((rc = store__grow(s)) != 0 || (rc = store__replay(s, s->n_ops)) != 0) {
            LMQ_ERROR("store: commit failed, batch lost: %s", lmq_store_strerror(rc));
            store__txn_abort(s);
            log__reset(s);
            return rc;
        }
    }
    log__reset(s);
    if (rc == ENOSPC || rc == EDQUOT) {
        store__txn_abort(s);
        LMQ_ERROR("store: commit failed, batch lost: %s (disk full)", strerror(rc));
        return LMQ_STORE_EFULL;
    }
    if (rc) {
        store__txn_abort(s);
        store__fail("commit", rc);
        return LMQ_STORE_EIO;
    }
    /* LMQ_SYNC_ALWAYS: LMDB's synchronous commit already wrote the data
     * pages, fdatasync'ed, wrote the meta page and fdatasync'ed again, in
     * that order (see docs/STORE.md for why not MDB_NOSYNC + one sync). */
    return 0;
}

int lmq_store_flush(struct lmq_store *s)
{
    if (s->in_batch)
        return LMQ_STORE_EINVAL;
    int rc = mdb_env_sync(s->env, 1);
    return rc ? store__fail("sync", rc) : 0;
}

/* ---- public changes: validate, then log and execute ---- */

static bool name_ok(const void *p, size_t n)
{
    return p && n >= 1 && n <= 65535;
}

static bool msg_ok(const struct lmq_store_message *m)
{
    return m && name_ok(m->topic, m->topic_len) && m->qos <= 2 &&
           m->payload_len <= 268435455u && (m->payload || !m->payload_len) &&
           m->props_len <= 268435455u && (m->props || !m->props_len);
}

int lmq_store_retained_put(struct lmq_store *s, const struct lmq_store_message *m)
{
    if (!msg_ok(m))
        return LMQ_STORE_EINVAL;
    struct store__op op = {.kind = OP_RET_PUT, .b0 = m->qos, .b1 = 1, .u64b = m->expiry_at,
                           .len = {0, m->topic_len, m->payload_len, m->props_len}};
    return store__apply(s, &op, NULL, m->topic, m->payload, m->props);
}

int lmq_store_retained_del(struct lmq_store *s, const char *topic, size_t topic_len)
{
    if (!name_ok(topic, topic_len))
        return LMQ_STORE_EINVAL;
    struct store__op op = {.kind = OP_RET_DEL, .len = {0, topic_len, 0, 0}};
    return store__apply(s, &op, NULL, topic, NULL, NULL);
}

int lmq_store_session_put(struct lmq_store *s, const struct lmq_store_session *sess)
{
    if (!sess || !name_ok(sess->client_id, sess->client_id_len) || sess->protocol_version < 3 ||
        sess->protocol_version > 5)
        return LMQ_STORE_EINVAL;
    const struct lmq_store_message *w = &sess->will;
    if (sess->has_will && !msg_ok(w))
        return LMQ_STORE_EINVAL;
    struct store__op op = {.kind = OP_SESS_PUT, .b0 = sess->protocol_version,
                           .u32 = sess->expiry_interval, .u64a = sess->disconnected_at,
                           .len = {sess->client_id_len, 0, 0, 0}};
    if (!sess->has_will)
        return store__apply(s, &op, sess->client_id, NULL, NULL, NULL);
    op.b1 = 1;
    op.b2 = (uint8_t)(w->qos | (w->retain ? 4 : 0));
    op.u64b = sess->will_at;
    op.u32b = sess->will_expiry;
    op.len[1] = w->topic_len;
    op.len[2] = w->payload_len;
    op.len[3] = w->props_len;
    return store__apply(s, &op, sess->client_id, w->topic, w->payload, w->props);
}

int lmq_store_session_del(struct lmq_store *s, const char *client_id, size_t client_id_len)
{
    if (!name_ok(client_id, client_id_len))
        return LMQ_STORE_EINVAL;
    struct store__op op = {.kind = OP_SESS_DEL, .len = {client_id_len, 0, 0, 0}};
    return store__apply(s, &op, client_id, NULL, NULL, NULL);
}

int lmq_store_sub_put(struct lmq_store *s, const char *client_id, size_t client_id_len,
                      const struct lmq_store_sub *sub)
{
    if (!name_ok(client_id, client_id_len) || !sub || !name_ok(sub->filter, sub->filter_len) ||
        (sub->options & 3) == 3 || (sub->options & 0xC0) || sub->sub_id > 268435455u)
        return LMQ_STORE_EINVAL;
    struct store__op op = {.kind = OP_SUB_PUT, .b0 = sub->options, .u32 = sub->sub_id,
                           .len = {client_id_len, sub->filter_len, 0, 0}};
    return store__apply(s, &op, client_id, sub->filter, NULL, NULL);
}

int lmq_store_sub_del(struct lmq_store *s, const char *client_id, size_t client_id_len,
                      const char *filter, size_t filter_len)
{
    if (!name_ok(client_id, client_id_len) || !name_ok(filter, filter_len))
        return LMQ_STORE_EINVAL;
    struct store__op op = {.kind = OP_SUB_DEL, .len = {client_id_len, filter_len, 0, 0}};
    return store__apply(s, &op, client_id, filter, NULL, NULL);
}

int lmq_store_msg_add(struct lmq_store *s, const struct lmq_store_message *m, uint64_t *id)
{
    if (!msg_ok(m) || !id || m->topic_len + m->payload_len + m->props_len > UINT32_MAX)
        return LMQ_STORE_EINVAL;
    struct store__op op = {.kind = OP_MSG_ADD, .b0 = m->qos, .b1 = m->retain,
                           .u64a = s->next_msg_id, .u64b = m->expiry_at,
                           .len = {0, m->topic_len, m->payload_len, m->props_len}};
    int rc = store__apply(s, &op, NULL, m->topic, m->payload, m->props);
    if (rc == 0)
        *id = s->next_msg_id++;
    return rc;
}

int lmq_store_qmsg_put(struct lmq_store *s, const char *client_id, size_t client_id_len,
                       const struct lmq_store_entry *e)
{
    if (!name_ok(client_id, client_id_len) || !e)
        return LMQ_STORE_EINVAL;
    /* Accept exactly what the decoder accepts. */
    uint8_t buf[LMQ_STORE_REC_ENTRY_SIZE];
    struct lmq_store_entry chk;
    lmq_store_rec_entry_encode(0, e, buf);
    if (lmq_store_rec_entry_decode(0, buf, sizeof buf, &chk) != 0)
        return LMQ_STORE_EINVAL;
    struct store__op op = {.kind = OP_Q_PUT, .b0 = e->qos, .b1 = e->state, .b2 = e->dup,
                           .u16 = e->packet_id, .u64a = e->seq, .u64b = e->msg_id,
                           .len = {client_id_len, 0, 0, 0}};
    return store__apply(s, &op, client_id, NULL, NULL, NULL);
}

int lmq_store_qmsg_put_msg(struct lmq_store *s, const char *client_id, size_t client_id_len,
                           const struct lmq_store_entry *e, const struct lmq_store_message *m,
                           uint64_t *msg_id)
{
    if (!e || !msg_id || (!m && e->state != LMQ_STORE_AWAIT_COMP))
        return LMQ_STORE_EINVAL;
    struct lmq_store_entry x = *e;
    x.msg_id = m ? *msg_id : 0;
    if (!m) /* AWAIT_COMP without body */
        return lmq_store_qmsg_put(s, client_id, client_id_len, &x);
    int rc = LMQ_STORE_ENOMSG;
    if (x.msg_id)
        rc = lmq_store_qmsg_put(s, client_id, client_id_len, &x);
    if (rc != LMQ_STORE_ENOMSG)
        return rc;
    if ((rc = lmq_store_msg_add(s, m, &x.msg_id)) != 0)
        return rc;
    *msg_id = x.msg_id;
    return lmq_store_qmsg_put(s, client_id, client_id_len, &x);
}

int lmq_store_qmsg_del(struct lmq_store *s, const char *client_id, size_t client_id_len,
                       uint64_t seq)
{
    if (!name_ok(client_id, client_id_len))
        return LMQ_STORE_EINVAL;
    struct store__op op = {.kind = OP_Q_DEL, .u64a = seq, .len = {client_id_len, 0, 0, 0}};
    return store__apply(s, &op, client_id, NULL, NULL, NULL);
}

int lmq_store_qos2_in_put(struct lmq_store *s, const char *client_id, size_t client_id_len,
                          uint16_t packet_id)
{
    if (!name_ok(client_id, client_id_len) || packet_id == 0)
        return LMQ_STORE_EINVAL;
    struct store__op op = {.kind = OP_Q2_PUT, .u16 = packet_id, .len = {client_id_len, 0, 0, 0}};
    return store__apply(s, &op, client_id, NULL, NULL, NULL);
}

int lmq_store_qos2_in_del(struct lmq_store *s, const char *client_id, size_t client_id_len,
                          uint16_t packet_id)
{
    if (!name_ok(client_id, client_id_len) || packet_id == 0)
        return LMQ_STORE_EINVAL;
    struct store__op op = {.kind = OP_Q2_DEL, .u16 = packet_id, .len = {client_id_len, 0, 0, 0}};
    return store__apply(s, &op, client_id, NULL, NULL, NULL);
}

/* ---- open / close ---- */

static int mkdir_p(const char *path)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
        return -ENAMETOOLONG;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(tmp, 0700) && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, 0700) && errno != EEXIST)
        return -errno;
    return 0;
}

static int store__lock(struct lmq_store *s, char *err, size_t errlen)
{
    char path[PATH_MAX + 8];
    snprintf(path, sizeof path, "%s/LOCK", s->dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return LMQ_STORE_EIO;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = 0;
        pid[strcspn(pid, "\n")] = 0;
        if (e == EWOULDBLOCK)
            snprintf(err, errlen, "%s is locked by another ledgermqd (pid %s): two daemons cannot share a data directory",
                     path, pid[0] ? pid : "unknown");
        else
            snprintf(err, errlen, "%s: flock: %s", path, strerror(e));
        close(fd);
        return e == EWOULDBLOCK ? LMQ_STORE_ELOCKED : LMQ_STORE_EIO;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n)
        LMQ_WARN("store: cannot write pid into %s: %s", path, strerror(errno));
    s->lock_fd = fd;
    return 0;
}

/* LMDB errors that mean "these files are not a usable environment". */
static bool env_damaged(int rc)
{
    return rc == MDB_INVALID || rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND ||
           rc == MDB_VERSION_MISMATCH || rc == MDB_INCOMPATIBLE || rc == MDB_BAD_DBI;
}

#define DAMAGED_FORMAT (-1)
#define DAMAGED_TRUNCATED (-2)
#define DAMAGED_BOUNDS (-3)

static void store__env_close(struct lmq_store *s)
{
    if (s->env)
        mdb_env_close(s->env);
    s->env = NULL;
}

/* Opens the environment and its tables. Returns 0, an LMDB error, or
 * DAMAGED_FORMAT / DAMAGED_TRUNCATED. */
static int store__env_open(struct lmq_store *s)
{
    unsigned flags = MDB_NOTLS;
    if (s->opt.sync == LMQ_SYNC_BATCH)
        flags |= MDB_NOSYNC | MDB_NOMETASYNC;
    int rc = mdb_env_create(&s->env);
    if (rc)
        return rc;
    if ((rc = mdb_env_set_maxdbs(s->env, T_COUNT)) ||
        (rc = mdb_env_set_mapsize(s->env, (size_t)s->opt.map_size_initial)) ||
        (rc = mdb_env_open(s->env, s->dir, flags, 0600)))
        goto fail;
    int dead = 0;
    mdb_reader_check(s->env, &dead);

    /* A data.mdb shorter than its meta page says would SIGBUS on access. */
    MDB_envinfo info;
    MDB_stat st;
    struct stat fst;
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/data.mdb", s->dir);
    if ((rc = mdb_env_info(s->env, &info)) || (rc = mdb_env_stat(s->env, &st)))
        goto fail;
    if (stat(path, &fst) == 0 &&
        ((uint64_t)info.me_last_pgno + 1) * st.ms_psize > (uint64_t)fst.st_size) {
        rc = DAMAGED_TRUNCATED;
        goto fail;
    }
    s->map_size = info.me_mapsize;

    MDB_txn *txn;
    if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn)))
        goto fail;
    for (int t = 0; t < T_COUNT; t++) {
        if ((rc = mdb_dbi_open(txn, table_names[t], MDB_CREATE, &s->dbi[t]))) {
            mdb_txn_abort(txn);
            goto fail;
        }
    }
    MDB_val key = mval("format", 6), val;
    rc = mdb_get(txn, s->dbi[T_META], &key, &val);
    if (rc == MDB_NOTFOUND) {
        uint8_t v[4] = {STORE_FORMAT, 0, 0, 0};
        val = mval(v, 4);
        rc = mdb_put(txn, s->dbi[T_META], &key, &val, 0);
    } else if (rc == 0 && (val.mv_size != 4 || ((const uint8_t *)val.mv_data)[0] != STORE_FORMAT)) {
        rc = DAMAGED_FORMAT;
    }
    if (rc) {
        mdb_txn_abort(txn);
        goto fail;
    }
    /* Next message id: after the last body or refs record. */
    for (int t = T_MSGS; t <= T_REFS; t++) {
        MDB_cursor *c;
        if ((rc = mdb_cursor_open(txn, s->dbi[t], &c))) {
            mdb_txn_abort(txn);
            goto fail;
        }
        rc = mdb_cursor_get(c, &key, &val, MDB_LAST);
        if (rc == 0 && key.mv_size == 8 && get_be64(key.mv_data) >= s->next_msg_id)
            s->next_msg_id = get_be64(key.mv_data) + 1;
        mdb_cursor_close(c);
        if (rc && rc != MDB_NOTFOUND) {
            mdb_txn_abort(txn);
            goto fail;
        }
    }
    if (s->next_msg_id == 0)
        s->next_msg_id = 1;
    if ((rc = mdb_txn_commit(txn)))
        goto fail;
    return 0;
fail:
    store__env_close(s);
    return rc;
}

/* Moves data.mdb and lock.mdb to <store>/damaged-<UTC time>/. */
static int store__move_aside(struct lmq_store *s, const char *why, bool salvaged)
{
    char dd[PATH_MAX + 64], from[PATH_MAX + 16], to[PATH_MAX + 96];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    for (int i = 0;; i++) {
        if (i == 0)
            snprintf(dd, sizeof dd, "%s/damaged-%s", s->dir, stamp);
        else
            snprintf(dd, sizeof dd, "%s/damaged-%s-%d", s->dir, stamp, i);
        if (mkdir(dd, 0700) == 0)
            break;
        if (errno != EEXIST || i > 1000) {
            LMQ_ERROR("store: cannot create %s: %s", dd, strerror(errno));
            return LMQ_STORE_EIO;
        }
    }
    struct stat st;
    long long size = -1;
    static const char *const files[] = {"data.mdb", "lock.mdb"};
    for (int i = 0; i < 2; i++) {
        snprintf(from, sizeof from, "%s/%s", s->dir, files[i]);
        snprintf(to, sizeof to, "%s/%s", dd, files[i]);
        if (i == 0 && stat(from, &st) == 0)
            size = (long long)st.st_size;
        if (rename(from, to) != 0 && errno != ENOENT) {
            LMQ_ERROR("store: cannot move %s to %s: %s", from, to, strerror(errno));
            return LMQ_STORE_EIO;
        }
    }
    if (salvaged)
        LMQ_ERROR("store: the LMDB environment in %s is damaged (%s); moved data.mdb (%lld bytes) to "
                  "%s and continuing with the records salvaged from it (logged above)",
                  s->dir, why, size, dd);
    else
        LMQ_ERROR("store: the LMDB environment in %s cannot be opened (%s); moved data.mdb (%lld "
                  "bytes) to %s and starting with an EMPTY store: every retained message, "
                  "persistent session, subscription and queued message stored in it is lost",
                  s->dir, why, size, dd);
    return 0;
}

/* Reads every record of every table once (keys, values, overflow pages):
 * LMDB does not checksum pages, so a damaged B-tree shows only when walked.
 * Returns 0, or the structural LMDB error and the table in *BAD. */
struct map_bounds {
    const uint8_t *lo, *hi;
};

/* The part of the map that holds pages (beyond it: SIGBUS or SIGSEGV).
 * LMDB does not export its map address (me_mapaddr is only set with
 * MDB_FIXEDMAP), so it is looked up in /proc/self/maps; {NULL, NULL} if it
 * cannot be found, and then nothing is checked. */
static struct map_bounds map_bounds(struct lmq_store *s)
{
    struct map_bounds b = {NULL, NULL};
    MDB_envinfo info;
    MDB_stat st;
    char path[PATH_MAX + 16], real[PATH_MAX], line[PATH_MAX + 256];
    snprintf(path, sizeof path, "%s/data.mdb", s->dir);
    if (mdb_env_info(s->env, &info) || mdb_env_stat(s->env, &st) || !realpath(path, real))
        return b;
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f)
        return b;
    size_t rl = strlen(real);
    while (fgets(line, sizeof line, f)) {
        size_t n = strlen(line);
        while (n && (line[n - 1] == '\n' || line[n - 1] == ' '))
            line[--n] = 0;
        unsigned long lo, hi;
        if (n < rl || strcmp(line + n - rl, real) != 0 || (n > rl && line[n - rl - 1] != ' ') ||
            sscanf(line, "%lx-%lx", &lo, &hi) != 2)
            continue;
        size_t used = ((size_t)info.me_last_pgno + 1) * st.ms_psize;
        if (used > hi - lo)
            used = hi - lo;
        b.lo = (const uint8_t *)(uintptr_t)lo;
        b.hi = b.lo + used;
        break;
    }
    fclose(f);
    return b;
}

/* A damaged node can claim a size that runs past the data (LMDB only
 * checks page numbers): such a key or value must never be read. */
static bool in_map(const struct map_bounds *b, const MDB_val *v)
{
    const uint8_t *p = v->mv_data;
    if (!b->lo || v->mv_size == 0)
        return true;
    return p >= b->lo && p <= b->hi && v->mv_size <= (size_t)(b->hi - p);
}

static int store__preflight(struct lmq_store *s, int *bad)
{
    struct map_bounds mb = map_bounds(s);
    for (int t = 0; t < T_COUNT; t++) {
        MDB_txn *txn;
        MDB_cursor *c;
        MDB_val k, v;
        int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
        if (rc)
            return rc;
        if ((rc = mdb_cursor_open(txn, s->dbi[t], &c)) == 0) {
            for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
                 rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
                if (!in_map(&mb, &k) || !in_map(&mb, &v)) {
                    rc = DAMAGED_BOUNDS;
                    break;
                }
            }
            mdb_cursor_close(c);
        }
        mdb_txn_abort(txn);
        if (rc != MDB_NOTFOUND) {
            *bad = t;
            return rc;
        }
    }
    return 0;
}

/* LMDB's default key order. */
static int key_cmp(const MDB_val *a, const MDB_val *b)
{
    size_t n = a->mv_size < b->mv_size ? a->mv_size : b->mv_size;
    int c = n ? memcmp(a->mv_data, b->mv_data, n) : 0;
    return c ? c : (a->mv_size > b->mv_size) - (a->mv_size < b->mv_size);
}

/* Copies the readable records of table T into NTXN/NDBI: forwards from the
 * first until an error, then backwards from the last down to where the
 * forward walk stopped. */
static int salvage_table(struct lmq_store *s, int t, MDB_txn *ntxn, MDB_dbi ndbi)
{
    uint8_t last[KEY_MAX];
    MDB_val lastk = {0, last};
    bool have_last = false;
    size_t kept = 0, skipped = 0;
    struct map_bounds mb = map_bounds(s);
    int err = 0;
    for (int dir = 0; dir < 2; dir++) {
        MDB_txn *txn;
        MDB_cursor *c;
        MDB_val k, v;
        int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
        if (rc)
            return rc;
        if ((rc = mdb_cursor_open(txn, s->dbi[t], &c)) == 0) {
            for (rc = mdb_cursor_get(c, &k, &v, dir ? MDB_LAST : MDB_FIRST); rc == 0;
                 rc = mdb_cursor_get(c, &k, &v, dir ? MDB_PREV : MDB_NEXT)) {
                if (!in_map(&mb, &k) || k.mv_size > KEY_MAX) {
                    rc = MDB_CORRUPTED; /* cannot even tell where we are */
                    break;
                }
                if (dir && have_last && key_cmp(&k, &lastk) <= 0) {
                    rc = MDB_NOTFOUND;
                    break;
                }
                if (!in_map(&mb, &v)) {
                    char d[600];
                    key__describe(t, k.mv_data, k.mv_size, d, sizeof d);
                    LMQ_ERROR("store: table %s, key %s: the value's size runs past the data "
                              "(%zu bytes); record lost",
                              table_names[t], d, v.mv_size);
                    skipped++;
                    continue;
                }
                int prc = mdb_put(ntxn, ndbi, &k, &v, 0);
                if (prc) {
                    rc = prc;
                    break;
                }
                kept++;
                if (!dir && k.mv_size <= KEY_MAX) {
                    memcpy(last, k.mv_data, k.mv_size);
                    lastk.mv_size = k.mv_size;
                    have_last = true;
                }
            }
            mdb_cursor_close(c);
        }
        mdb_txn_abort(txn);
        if (rc == MDB_NOTFOUND)
            break; /* the walk finished: nothing (more) lost */
        if (!env_damaged(rc) && rc != MDB_BAD_TXN)
            return rc; /* our side failed (e.g. the new map is full) */
        err = rc;
    }
    if (err)
        LMQ_ERROR("store: table %s: an unreadable part of the B-tree is lost (%s); %zu records "
                  "around it salvaged",
                  table_names[t], mdb_strerror(err), kept);
    else if (skipped)
        LMQ_ERROR("store: table %s: %zu records salvaged, %zu lost", table_names[t], kept, skipped);
    return 0;
}

/* Rebuilds the environment from what is readable: copies every table into
 * <store>/salvage.tmp/, moves the damaged files aside, puts the copy in
 * their place and reopens. Record-level checks follow in lmq_store_load. */
static int store__salvage(struct lmq_store *s, const char *why)
{
    char tmp[PATH_MAX + 32], a[PATH_MAX + 64], b[PATH_MAX + 64];
    snprintf(tmp, sizeof tmp, "%s/salvage.tmp", s->dir);
    snprintf(a, sizeof a, "%s/data.mdb", tmp);
    unlink(a);
    snprintf(a, sizeof a, "%s/lock.mdb", tmp);
    unlink(a);
    if (mkdir(tmp, 0700) && errno != EEXIST)
        return -errno;
    MDB_env *ne = NULL;
    MDB_txn *ntxn = NULL;
    struct stat st;
    snprintf(a, sizeof a, "%s/data.mdb", s->dir);
    uint64_t size = s->map_size;
    if (stat(a, &st) == 0 && (uint64_t)st.st_size > size)
        size = (uint64_t)st.st_size;
    size *= 2; /* a rebuilt tree can be less dense; the map is only address space */
    int rc = mdb_env_create(&ne);
    if (rc)
        return rc;
    if ((rc = mdb_env_set_maxdbs(ne, T_COUNT)) || (rc = mdb_env_set_mapsize(ne, (size_t)size)) ||
        (rc = mdb_env_open(ne, tmp, MDB_NOSYNC | MDB_NOMETASYNC, 0600)) ||
        (rc = mdb_txn_begin(ne, NULL, 0, &ntxn)))
        goto fail;
    for (int t = 0; t < T_COUNT; t++) {
        MDB_dbi ndbi;
        if ((rc = mdb_dbi_open(ntxn, table_names[t], MDB_CREATE, &ndbi)) ||
            (rc = salvage_table(s, t, ntxn, ndbi)))
            goto fail;
    }
    rc = mdb_txn_commit(ntxn);
    ntxn = NULL;
    if (rc || (rc = mdb_env_sync(ne, 1)))
        goto fail;
    mdb_env_close(ne);
    ne = NULL;
    store__env_close(s);
    if ((rc = store__move_aside(s, why, true)) != 0)
        return rc;
    snprintf(a, sizeof a, "%s/data.mdb", tmp);
    snprintf(b, sizeof b, "%s/data.mdb", s->dir);
    if (rename(a, b) != 0)
        return -errno;
    snprintf(a, sizeof a, "%s/lock.mdb", tmp);
    unlink(a);
    rmdir(tmp);
    s->next_msg_id = 0;
    return store__env_open(s);
fail:
    if (ntxn)
        mdb_txn_abort(ntxn);
    if (ne)
        mdb_env_close(ne);
    LMQ_ERROR("store: salvaging %s failed: %s", s->dir, mdb_strerror(rc));
    return rc ? rc : LMQ_STORE_EIO;
}

/* A salvage killed between moving the damaged data.mdb aside and putting
 * the (complete, synced) copy in its place leaves store/data.mdb missing and
 * salvage.tmp/data.mdb present: finish it. Any other leftover salvage.tmp is
 * an unfinished copy: removed (the walk will salvage again if needed). */
static void store__finish_salvage(struct lmq_store *s)
{
    char tmp[PATH_MAX + 32], a[PATH_MAX + 64], b[PATH_MAX + 64];
    struct stat st;
    snprintf(tmp, sizeof tmp, "%s/salvage.tmp", s->dir);
    if (stat(tmp, &st) != 0)
        return;
    snprintf(a, sizeof a, "%s/data.mdb", tmp);
    snprintf(b, sizeof b, "%s/data.mdb", s->dir);
    if (stat(b, &st) != 0 && errno == ENOENT && stat(a, &st) == 0) {
        if (rename(a, b) == 0)
            LMQ_WARN("store: completed an interrupted salvage of %s", s->dir);
        else
            LMQ_ERROR("store: cannot move %s to %s: %s", a, b, strerror(errno));
    }
    unlink(a);
    snprintf(a, sizeof a, "%s/lock.mdb", tmp);
    unlink(a);
    rmdir(tmp);
}

int lmq_store_open(const char *data_dir, const struct lmq_store_options *opt,
                   struct lmq_store **out, char *err, size_t errlen)
{
    char dummy[1];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = 0;
    *out = NULL;
    struct lmq_store *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return LMQ_STORE_ENOMEM;
    }
    s->lock_fd = -1;
    if (opt)
        s->opt = *opt;
    else
        lmq_store_options_default(&s->opt);
    if (s->opt.map_size_initial == 0)
        s->opt.map_size_initial = 64 * MIB;
    if (s->opt.map_size_max == 0)
        s->opt.map_size_max = 4096 * MIB;
    if (s->opt.map_size_max < s->opt.map_size_initial)
        s->opt.map_size_max = s->opt.map_size_initial;
    int rc;
    if (snprintf(s->dir, sizeof s->dir, "%s/store", data_dir) >= (int)sizeof s->dir) {
        snprintf(err, errlen, "%s: path too long", data_dir);
        rc = LMQ_STORE_EINVAL;
        goto fail_free;
    }
    if ((rc = mkdir_p(s->dir)) != 0) {
        snprintf(err, errlen, "cannot create %s: %s", s->dir, strerror(-rc));
        rc = LMQ_STORE_EIO;
        goto fail_free;
    }
    if ((rc = store__lock(s, err, errlen)) != 0)
        goto fail_free;
    store__finish_salvage(s);
    rc = store__env_open(s);
    if (rc == DAMAGED_FORMAT || rc == DAMAGED_TRUNCATED || env_damaged(rc)) {
        const char *why = rc == DAMAGED_FORMAT      ? "unknown store format version"
                          : rc == DAMAGED_TRUNCATED ? "data.mdb is truncated"
                                                    : mdb_strerror(rc);
        if ((rc = store__move_aside(s, why, false)) != 0) {
            snprintf(err, errlen, "damaged store in %s could not be moved aside", s->dir);
            goto fail_unlock;
        }
        s->next_msg_id = 0;
        rc = store__env_open(s);
    } else if (rc == 0) {
        int bad = 0;
        int prc = store__preflight(s, &bad);
        if (prc && (env_damaged(prc) || prc == MDB_BAD_TXN || prc == DAMAGED_BOUNDS)) {
            char why[160];
            snprintf(why, sizeof why, "table %s: %s", table_names[bad],
                     prc == DAMAGED_BOUNDS ? "a record's size runs past the data" : mdb_strerror(prc));
            LMQ_ERROR("store: %s: damaged B-tree in %s; salvaging the readable records", s->dir, why);
            if (store__salvage(s, why) != 0) {
                store__env_close(s);
                if ((rc = store__move_aside(s, why, false)) != 0) {
                    snprintf(err, errlen, "damaged store in %s could not be moved aside", s->dir);
                    goto fail_unlock;
                }
                s->next_msg_id = 0;
                rc = store__env_open(s);
            }
        } else if (prc) {
            store__env_close(s);
            rc = prc;
        }
    }
    if (rc) {
        snprintf(err, errlen, "%s: cannot open LMDB environment: %s", s->dir,
                 rc < 0 && rc > -100 ? "damaged" : mdb_strerror(rc));
        rc = rc == ENOMEM ? LMQ_STORE_ENOMEM : LMQ_STORE_EIO;
        goto fail_unlock;
    }
    *out = s;
    return 0;
fail_unlock:
    close(s->lock_fd);
fail_free:
    free(s);
    return rc;
}

void lmq_store_close(struct lmq_store *s)
{
    if (!s)
        return;
    lmq_store_abort(s);
    if (s->env) {
        int rc = mdb_env_sync(s->env, 1);
        if (rc)
            LMQ_ERROR("store: final sync at close failed: %s; the last commits may not be on disk",
                      mdb_strerror(rc));
        store__env_close(s);
    }
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    free(s->ops);
    free(s->arena);
    free(s);
}

/* ---- load ---- */

/* What load learnt about one body id. */
struct idslot {
    uint64_t id; /* 0 = empty slot */
    uint32_t actual;
    uint8_t valid;
    uint8_t ref_seen;
};

struct idmap {
    struct idslot *slot;
    size_t mask;
};

/* The slot of ID, or NULL if absent. */
static struct idslot *idmap_find(struct idmap *m, uint64_t id)
{
    size_t i = (size_t)(id * 0x9E3779B97F4A7C15ull) & m->mask;
    while (m->slot[i].id && m->slot[i].id != id)
        i = (i + 1) & m->mask;
    return m->slot[i].id ? &m->slot[i] : NULL;
}

/* The slot of ID, inserted if absent. The map is sized for every body and
 * refs record (at most half full), and only those are inserted. */
static struct idslot *idmap_get(struct idmap *m, uint64_t id)
{
    size_t i = (size_t)(id * 0x9E3779B97F4A7C15ull) & m->mask;
    while (m->slot[i].id && m->slot[i].id != id)
        i = (i + 1) & m->mask;
    m->slot[i].id = id;
    return &m->slot[i];
}

/* A repair to make after the scans (deletes, or refs rewrites). */
struct fix {
    uint8_t table;
    uint8_t kind; /* 0 delete, 1 put ref, 2 delete a session's children */
    uint16_t klen;
    uint32_t count, size;
    uint8_t key[KEY_MAX];
};

struct loader {
    struct lmq_store *s;
    const struct lmq_store_visitor *v;
    void *ctx;
    struct idmap ids;
    struct fix *fix;
    size_t n_fix, cap_fix;
    size_t n_damaged;
    size_t n_dropped; /* records the visitor dropped (expired) */
    size_t n[T_COUNT];
};

static int fix_add(struct loader *L, int t, int kind, const void *k, size_t kl, uint32_t count,
                   uint32_t size)
{
    if (L->n_fix == L->cap_fix) {
        size_t cap = L->cap_fix ? L->cap_fix * 2 : 16;
        struct fix *f = realloc(L->fix, cap * sizeof *f);
        if (!f)
            return LMQ_STORE_ENOMEM;
        L->fix = f;
        L->cap_fix = cap;
    }
    struct fix *f = &L->fix[L->n_fix++];
    f->table = (uint8_t)t;
    f->kind = (uint8_t)kind;
    f->klen = (uint16_t)(kl > KEY_MAX ? KEY_MAX : kl);
    memcpy(f->key, k, f->klen);
    f->count = count;
    f->size = size;
    return 0;
}

/* Reports a damaged record and schedules its deletion. */
static int damaged(struct loader *L, int t, const MDB_val *key, const char *what)
{
    char d[600];
    key__describe(t, key->mv_data, key->mv_size, d, sizeof d);
    LMQ_ERROR("store: damaged record in table %s, key %s: %s; skipped, deleted in the repair",
              table_names[t], d, what);
    L->n_damaged++;
    return fix_add(L, t, 0, key->mv_data, key->mv_size, 0, 0);
}

/* Any other non-negative callback result means keep: a record is only
 * deleted when the visitor says DROP. */
static int visit_norm(int r)
{
    return r < 0 || r == LMQ_STORE_VISIT_DROP ? r : LMQ_STORE_VISIT_KEEP;
}

static int cb_result(struct loader *L, int t, const MDB_val *key, int r)
{
    r = visit_norm(r);
    if (r < 0)
        return r;
    if (r == LMQ_STORE_VISIT_DROP) {
        L->n_dropped++;
        return fix_add(L, t, t == T_SESSIONS ? 2 : 0, key->mv_data, key->mv_size, 0, 0);
    }
    return 0;
}

/* Iterates table T from KEY (SET_RANGE; whole table if prefix length 0)
 * while keys start with PREFIX, calling FN. Structural LMDB errors stop the
 * scan of that table with an ERROR line, keeping what was read. */
typedef int (*scan_fn)(struct loader *L, const MDB_val *key, const MDB_val *val, void *arg);

static int scan(struct loader *L, int t, const uint8_t *prefix, size_t plen, scan_fn fn, void *arg)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(L->s->txn, L->s->dbi[t], &c);
    if (rc)
        return store__fail("cursor", rc);
    MDB_val key = mval(prefix, plen), val;
    int cb = 0;
    rc = mdb_cursor_get(c, &key, &val, plen ? MDB_SET_RANGE : MDB_FIRST);
    while (rc == 0) {
        if (plen && (key.mv_size < plen || memcmp(key.mv_data, prefix, plen)))
            break;
        if ((cb = fn(L, &key, &val, arg)) != 0)
            break;
        rc = mdb_cursor_get(c, &key, &val, MDB_NEXT);
    }
    mdb_cursor_close(c);
    if (cb)
        return cb;
    if (rc == MDB_NOTFOUND || rc == 0)
        return 0;
    if (env_damaged(rc)) {
        LMQ_ERROR("store: table %s is structurally damaged (%s); the rest of it is skipped",
                  table_names[t], mdb_strerror(rc));
        L->n_damaged++;
        return 0;
    }
    return store__fail("scan", rc);
}

static int scan_retained(struct loader *L, const MDB_val *key, const MDB_val *val, void *arg)
{
    (void)arg;
    struct lmq_store_message m;
    int rc = lmq_store_rec_message_decode(KCRC(key), LMQ_STORE_KIND_RETAINED, val->mv_data, val->mv_size, &m);
    if (rc)
        return damaged(L, T_RETAINED, key, lmq_store_strerror(rc));
    L->n[T_RETAINED]++;
    return L->v && L->v->retained ? cb_result(L, T_RETAINED, key, L->v->retained(L->ctx, &m)) : 0;
}

static int scan_msgs(struct loader *L, const MDB_val *key, const MDB_val *val, void *arg)
{
    (void)arg;
    struct lmq_store_message m;
    int rc = key->mv_size == 8 ? lmq_store_rec_message_decode(KCRC(key), LMQ_STORE_KIND_MESSAGE, val->mv_data,
                                                              val->mv_size, &m)
                               : LMQ_STORE_REC_EFIELD;
    uint64_t id = key->mv_size == 8 ? get_be64(key->mv_data) : 0;
    if (rc || id == 0)
        return damaged(L, T_MSGS, key, rc ? lmq_store_strerror(rc) : "bad key");
    idmap_get(&L->ids, id)->valid = 1;
    return 0;
}

struct sess_ctx {
    struct lmq_store_session sess;
    struct lmq_store_session_stats st;
    bool counting;
};

static int scan_subs(struct loader *L, const MDB_val *key, const MDB_val *val, void *arg)
{
    struct sess_ctx *sc = arg;
    struct lmq_store_sub sub;
    int rc = lmq_store_rec_sub_decode(KCRC(key), val->mv_data, val->mv_size, &sub);
    if (sc->counting) {
        sc->st.n_subs += rc == 0;
        return 0;
    }
    if (rc)
        return damaged(L, T_SUBS, key, lmq_store_strerror(rc));
    L->n[T_SUBS]++;
    return L->v && L->v->sub ? cb_result(L, T_SUBS, key, L->v->sub(L->ctx, &sc->sess, &sub)) : 0;
}

/* Decodes a queue entry and its body; returns a defect text or NULL. */
static const char *entry_load(struct loader *L, const MDB_val *key, const MDB_val *val,
                              struct lmq_store_entry *e, struct lmq_store_message *m, bool *has_m,
                              bool need_body)
{
    int rc = lmq_store_rec_entry_decode(KCRC(key), val->mv_data, val->mv_size, e);
    if (rc)
        return lmq_store_strerror(rc);
    if (key->mv_size < 8)
        return "bad key";
    e->seq = get_be64((const uint8_t *)key->mv_data + key->mv_size - 8);
    *has_m = false;
    if (e->msg_id == 0)
        return NULL;
    struct idslot *sl = idmap_find(&L->ids, e->msg_id);
    if (!sl || !sl->valid)
        return "its message body is missing or damaged";
    if (!need_body)
        return NULL;
    uint8_t k[8];
    be64(k, e->msg_id);
    MDB_val mk = mval(k, 8), mv;
    if (mdb_get(L->s->txn, L->s->dbi[T_MSGS], &mk, &mv) ||
        lmq_store_rec_message_decode(kcrc(k, 8), LMQ_STORE_KIND_MESSAGE, mv.mv_data, mv.mv_size, m))
        return "its message body is missing or damaged";
    e->msg_size = (uint32_t)(m->topic_len + m->payload_len + m->props_len);
    *has_m = true;
    return NULL;
}

static int scan_queue(struct loader *L, const MDB_val *key, const MDB_val *val, void *arg)
{
    struct sess_ctx *sc = arg;
    struct lmq_store_entry e;
    struct lmq_store_message m;
    bool has_m = false;
    const char *bad = entry_load(L, key, val, &e, &m, &has_m, !sc->counting);
    if (sc->counting) {
        if (!bad) {
            sc->st.n_msgs++;
            sc->st.n_inflight += e.state != LMQ_STORE_QUEUED;
            sc->st.bytes += e.msg_size;
            if (e.seq > sc->st.max_seq)
                sc->st.max_seq = e.seq;
        }
        return 0;
    }
    if (bad)
        return damaged(L, T_QUEUE, key, bad);
    int r = L->v && L->v->session_msg
                ? L->v->session_msg(L->ctx, &sc->sess, &e, has_m ? &m : NULL)
                : LMQ_STORE_VISIT_KEEP;
    r = visit_norm(r);
    if (r == LMQ_STORE_VISIT_KEEP && e.msg_id)
        idmap_find(&L->ids, e.msg_id)->actual++; /* entry_load found it valid */
    L->n[T_QUEUE] += r == LMQ_STORE_VISIT_KEEP;
    return cb_result(L, T_QUEUE, key, r);
}

static int scan_qos2(struct loader *L, const MDB_val *key, const MDB_val *val, void *arg)
{
    struct sess_ctx *sc = arg;
    int rc = lmq_store_rec_qos2in_decode(KCRC(key), val->mv_data, val->mv_size);
    const uint8_t *k = key->mv_data;
    uint16_t pid = key->mv_size >= 2 ? (uint16_t)((k[key->mv_size - 2] << 8) | k[key->mv_size - 1]) : 0;
    if (!rc && pid == 0)
        rc = LMQ_STORE_REC_EFIELD;
    if (sc->counting) {
        sc->st.n_qos2_in += rc == 0;
        return 0;
    }
    if (rc)
        return damaged(L, T_QOS2IN, key, lmq_store_strerror(rc));
    L->n[T_QOS2IN]++;
    return L->v && L->v->qos2_in ? cb_result(L, T_QOS2IN, key, L->v->qos2_in(L->ctx, &sc->sess, pid))
                                 : 0;
}

static int scan_sessions(struct loader *L, const MDB_val *key, const MDB_val *val, void *arg)
{
    (void)arg;
    struct sess_ctx sc;
    memset(&sc, 0, sizeof sc);
    int rc = lmq_store_rec_session_decode(KCRC(key), val->mv_data, val->mv_size, &sc.sess);
    uint8_t k[KEY_MAX];
    if (rc == 0) {
        size_t kl = key__name(k, sc.sess.client_id, sc.sess.client_id_len, CID_BUDGET);
        if (kl != key->mv_size || memcmp(k, key->mv_data, kl))
            rc = LMQ_STORE_REC_EFIELD;
    }
    if (rc) {
        char d[600];
        key__describe(T_SESSIONS, key->mv_data, key->mv_size, d, sizeof d);
        LMQ_ERROR("store: damaged record in table sessions, key %s: %s; the session, its "
                  "subscriptions, queued messages and QoS 2 state are dropped",
                  d, lmq_store_strerror(rc));
        L->n_damaged++;
        return fix_add(L, T_SESSIONS, 2, key->mv_data, key->mv_size, 0, 0);
    }
    const uint8_t *p = key->mv_data;
    size_t pl = key->mv_size;
    sc.counting = true;
    if ((rc = scan(L, T_SUBS, p, pl, scan_subs, &sc)) || (rc = scan(L, T_QUEUE, p, pl, scan_queue, &sc)) ||
        (rc = scan(L, T_QOS2IN, p, pl, scan_qos2, &sc)))
        return rc;
    sc.counting = false;
    int r = L->v && L->v->session ? L->v->session(L->ctx, &sc.sess, &sc.st) : LMQ_STORE_VISIT_KEEP;
    r = visit_norm(r);
    if (r != LMQ_STORE_VISIT_KEEP)
        return cb_result(L, T_SESSIONS, key, r);
    L->n[T_SESSIONS]++;
    if ((rc = scan(L, T_SUBS, p, pl, scan_subs, &sc)) || (rc = scan(L, T_QUEUE, p, pl, scan_queue, &sc)) ||
        (rc = scan(L, T_QOS2IN, p, pl, scan_qos2, &sc)))
        return rc;
    return 0;
}

/* Children whose session record does not exist. */
static int scan_orphans(struct loader *L, const MDB_val *key, const MDB_val *val, void *arg)
{
    (void)val;
    int t = *(int *)arg;
    size_t np = key__name_len(key->mv_data, key->mv_size, CID_BUDGET);
    if (np) {
        MDB_val sk = mval(key->mv_data, np), sv;
        if (mdb_get(L->s->txn, L->s->dbi[T_SESSIONS], &sk, &sv) == 0)
            return 0;
    }
    return damaged(L, t, key, "no session record for this client");
}

/* A recount is expected when the visitor dropped entries (expired messages
 * or sessions) and nothing was damaged; otherwise it is worth a warning. */
#define RECOUNT_LOG(L, ...)                                                                        \
    do {                                                                                           \
        if ((L)->n_damaged == 0 && (L)->n_dropped > 0)                                             \
            LMQ_DEBUG(__VA_ARGS__);                                                                \
        else                                                                                       \
            LMQ_WARN(__VA_ARGS__);                                                                 \
    } while (0)

static int scan_refs(struct loader *L, const MDB_val *key, const MDB_val *val, void *arg)
{
    (void)arg;
    uint32_t count, size;
    int rc = lmq_store_rec_ref_decode(KCRC(key), val->mv_data, val->mv_size, &count, &size);
    if (key->mv_size != 8)
        return damaged(L, T_REFS, key, "bad key");
    uint64_t id = get_be64(key->mv_data);
    struct idslot *sl = idmap_get(&L->ids, id);
    sl->ref_seen = 1;
    char d[64];
    key__describe(T_REFS, key->mv_data, key->mv_size, d, sizeof d);
    if (!sl->valid) /* body missing or damaged (reported); its entries were dropped */
        return fix_add(L, T_REFS, 0, key->mv_data, 8, 0, 0);
    if (sl->actual == 0) {
        if (rc == 0 && count != 0)
            RECOUNT_LOG(L, "store: %s is referenced by no queue entry (count said %u); body deleted", d,
                        count);
        if ((rc = fix_add(L, T_REFS, 0, key->mv_data, 8, 0, 0)))
            return rc;
        return fix_add(L, T_MSGS, 0, key->mv_data, 8, 0, 0);
    }
    if (rc || count != sl->actual) {
        RECOUNT_LOG(L, "store: %s: reference count %s, recounted as %u", d,
                 rc ? lmq_store_strerror(rc) : "wrong", sl->actual);
        uint8_t k[8];
        be64(k, id);
        MDB_val mk = mval(k, 8), mv;
        struct lmq_store_message m;
        size = 0;
        if (mdb_get(L->s->txn, L->s->dbi[T_MSGS], &mk, &mv) == 0 &&
            lmq_store_rec_message_decode(kcrc(k, 8), LMQ_STORE_KIND_MESSAGE, mv.mv_data, mv.mv_size, &m) == 0)
            size = (uint32_t)(m.topic_len + m.payload_len + m.props_len);
        return fix_add(L, T_REFS, 1, key->mv_data, 8, sl->actual, size);
    }
    return 0;
}

static int apply_fixes(struct loader *L)
{
    struct lmq_store *s = L->s;
    int rc = 0;
    for (size_t i = 0; i < L->n_fix && rc == 0; i++) {
        struct fix *f = &L->fix[i];
        MDB_val key = mval(f->key, f->klen);
        size_t n = 0;
        if (f->kind == 1) {
            rc = ref__set(s, get_be64(f->key), f->count, f->size);
        } else {
            rc = mdb_del(s->txn, s->dbi[f->table], &key, NULL);
            if (rc == MDB_NOTFOUND)
                rc = 0;
            if (rc == 0 && f->kind == 2 &&
                ((rc = range_del(s, T_SUBS, f->key, f->klen, false, &n)) == 0) &&
                ((rc = range_del(s, T_QUEUE, f->key, f->klen, false, &n)) == 0))
                rc = range_del(s, T_QOS2IN, f->key, f->klen, false, &n);
        }
    }
    return rc;
}

int lmq_store_load(struct lmq_store *s, const struct lmq_store_visitor *v, void *ctx)
{
    if (s->in_batch || s->txn)
        return LMQ_STORE_EINVAL;
    struct loader L;
    memset(&L, 0, sizeof L);
    L.s = s;
    L.v = v;
    L.ctx = ctx;
    int rc = mdb_txn_begin(s->env, NULL, 0, &s->txn);
    if (rc) {
        s->txn = NULL;
        return store__fail("begin load", rc);
    }
    MDB_stat st1, st2;
    if ((rc = mdb_stat(s->txn, s->dbi[T_MSGS], &st1)) || (rc = mdb_stat(s->txn, s->dbi[T_REFS], &st2))) {
        rc = store__fail("stat", rc);
        goto out;
    }
    size_t cap = 64;
    while (cap < 2 * (st1.ms_entries + st2.ms_entries) + 64)
        cap *= 2;
    L.ids.slot = calloc(cap, sizeof *L.ids.slot);
    L.ids.mask = cap - 1;
    if (!L.ids.slot) {
        rc = LMQ_STORE_ENOMEM;
        goto out;
    }
    int tsubs = T_SUBS, tq = T_QUEUE, tq2 = T_QOS2IN;
    if ((rc = scan(&L, T_RETAINED, NULL, 0, scan_retained, NULL)) ||
        (rc = scan(&L, T_MSGS, NULL, 0, scan_msgs, NULL)) ||
        (rc = scan(&L, T_SESSIONS, NULL, 0, scan_sessions, NULL)) ||
        (rc = scan(&L, T_SUBS, NULL, 0, scan_orphans, &tsubs)) ||
        (rc = scan(&L, T_QUEUE, NULL, 0, scan_orphans, &tq)) ||
        (rc = scan(&L, T_QOS2IN, NULL, 0, scan_orphans, &tq2)) ||
        (rc = scan(&L, T_REFS, NULL, 0, scan_refs, NULL)))
        goto out;
    /* Valid, referenced bodies that lost their refs record. */
    for (size_t i = 0; i <= L.ids.mask; i++) {
        struct idslot *sl = &L.ids.slot[i];
        if (!sl->id || sl->ref_seen || !sl->valid)
            continue;
        uint8_t k[8];
        be64(k, sl->id);
        if (sl->actual == 0) {
            LMQ_WARN("store: message id %" PRIu64 " has no refs record and no queue entry; body deleted",
                     sl->id);
            rc = fix_add(&L, T_MSGS, 0, k, 8, 0, 0);
        } else {
            LMQ_WARN("store: message id %" PRIu64 " has no refs record; recounted as %u", sl->id, sl->actual);
            MDB_val mk = mval(k, 8), mv;
            struct lmq_store_message m;
            uint32_t size = 0;
            if (mdb_get(s->txn, s->dbi[T_MSGS], &mk, &mv) == 0 &&
                lmq_store_rec_message_decode(kcrc(k, 8), LMQ_STORE_KIND_MESSAGE, mv.mv_data, mv.mv_size, &m) == 0)
                size = (uint32_t)(m.topic_len + m.payload_len + m.props_len);
            rc = fix_add(&L, T_REFS, 1, k, 8, sl->actual, size);
        }
        if (rc)
            goto out;
    }
    if (L.n_fix) {
        for (;;) {
            rc = apply_fixes(&L);
            if (rc == 0) {
                rc = mdb_txn_commit(s->txn);
                s->txn = NULL;
            }
            if (rc != MDB_MAP_FULL)
                break;
            /* Deletes need fresh pages too: grow and redo the fixes. */
            store__txn_abort(s);
            if (store__grow(s) != 0 || mdb_txn_begin(s->env, NULL, 0, &s->txn)) {
                s->txn = NULL;
                break;
            }
        }
        if (rc) {
            rc = store__fail("repair commit", rc);
            goto out;
        }
        rc = mdb_env_sync(s->env, 1);
        if (rc) {
            rc = store__fail("repair sync", rc);
            goto out;
        }
        if (L.n_damaged)
            LMQ_WARN("store: repair committed: %zu damaged records skipped, %zu repairs", L.n_damaged,
                     L.n_fix);
        else
            LMQ_INFO("store: %zu expired records dropped", L.n_dropped);
    }
    LMQ_INFO("store: loaded %zu retained messages, %zu sessions, %zu subscriptions, %zu queued "
             "messages, %zu incoming QoS 2 ids%s",
             L.n[T_RETAINED], L.n[T_SESSIONS], L.n[T_SUBS], L.n[T_QUEUE], L.n[T_QOS2IN],
             L.n_damaged ? " (after skipping the damaged records above)" : "");
out:
    store__txn_abort(s);
    free(L.ids.slot);
    free(L.fix);
    return rc;
}
