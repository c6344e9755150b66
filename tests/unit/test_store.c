/* Tests of src/broker/store.c and store_record.c: round trips of every
 * record kind, refcounted bodies, ordered load, reopen, kill -9 during
 * commits, damaged records and environments, map growth and the lock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <lmdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "broker/store.h"
#include "util/crc32c.h"
#include "broker/store_record.h"
#include "util/log.h"

/* ---- helpers ---- */

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void rm_rf(const char *dir)
{
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static char *tmpdir(void)
{
    char *d = strdup("/tmp/lmq_store_XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static struct lmq_store *open_ok(const char *dir, const struct lmq_store_options *opt)
{
    struct lmq_store *s = NULL;
    char err[512];
    int rc = lmq_store_open(dir, opt, &s, err, sizeof err);
    if (rc)
        fprintf(stderr, "open: %s (%s)\n", err, lmq_store_strerror(rc));
    assert_int_equal(rc, 0);
    return s;
}

/* Stderr capture, to check what load logs. */
static int saved_stderr = -1;
static char cap_path[64];

static void capture_start(void)
{
    fflush(stderr);
    snprintf(cap_path, sizeof cap_path, "/tmp/lmq_store_log_%d", (int)getpid());
    int fd = open(cap_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    saved_stderr = dup(2);
    dup2(fd, 2);
    close(fd);
}

static char *capture_end(void)
{
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    FILE *f = fopen(cap_path, "r");
    assert_non_null(f);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    unlink(cap_path);
    fputs(buf, stderr); /* still visible in the test output */
    return buf;
}

/* Everything a load reported, copied. */
#define MAXREC 1100
struct rec {
    char a[1100], b[1100];
    size_t alen, blen;
    uint64_t u1, u2;
    uint32_t u3;
    uint8_t x, y;
    uint16_t pid;
    bool dup;
    struct lmq_store_session_stats st;
};
struct seen {
    struct rec ret[MAXREC];
    size_t n_ret;
    struct rec sess[MAXREC];
    size_t n_sess;
    struct rec sub[MAXREC];
    size_t n_sub;
    struct rec *msg; /* grows */
    size_t n_msg, cap_msg;
    struct rec q2[MAXREC];
    size_t n_q2;
    const char *drop_session;   /* return DROP for this client */
    uint64_t drop_msg_seq;      /* return DROP for this seq */
};

static void cp(char *dst, size_t *dl, const void *src, size_t n)
{
    if (n > 1099)
        n = 1099;
    memcpy(dst, src, n);
    dst[n] = 0;
    *dl = n;
}

static int v_ret(void *ctx, const struct lmq_store_message *m)
{
    struct seen *S = ctx;
    if (S->n_ret >= MAXREC) { /* counted, not kept */
        S->n_ret++;
        return 0;
    }
    struct rec *r = &S->ret[S->n_ret++];
    cp(r->a, &r->alen, m->topic, m->topic_len);
    cp(r->b, &r->blen, m->payload, m->payload_len);
    r->x = m->qos;
    r->y = m->retain;
    r->u1 = m->expiry_at;
    r->u3 = (uint32_t)m->props_len;
    return 0;
}

static int v_sess(void *ctx, const struct lmq_store_session *sess,
                  const struct lmq_store_session_stats *st)
{
    struct seen *S = ctx;
    if (S->drop_session && strlen(S->drop_session) == sess->client_id_len &&
        !memcmp(S->drop_session, sess->client_id, sess->client_id_len))
        return LMQ_STORE_VISIT_DROP;
    if (S->n_sess == MAXREC)
        fail_msg("too many sessions for the test collector");
    struct rec *r = &S->sess[S->n_sess++];
    cp(r->a, &r->alen, sess->client_id, sess->client_id_len);
    r->x = sess->protocol_version;
    r->u3 = sess->expiry_interval;
    r->u1 = sess->disconnected_at;
    r->st = *st;
    return 0;
}

static int v_sub(void *ctx, const struct lmq_store_session *sess, const struct lmq_store_sub *sub)
{
    struct seen *S = ctx;
    if (S->n_sub == MAXREC)
        fail_msg("too many subscriptions for the test collector");
    struct rec *r = &S->sub[S->n_sub++];
    cp(r->a, &r->alen, sess->client_id, sess->client_id_len);
    cp(r->b, &r->blen, sub->filter, sub->filter_len);
    r->x = sub->options;
    r->u3 = sub->sub_id;
    return 0;
}

static int v_msg(void *ctx, const struct lmq_store_session *sess, const struct lmq_store_entry *e,
                 const struct lmq_store_message *m)
{
    struct seen *S = ctx;
    if (S->drop_msg_seq && e->seq == S->drop_msg_seq)
        return LMQ_STORE_VISIT_DROP;
    if (S->n_msg == S->cap_msg) {
        S->cap_msg = S->cap_msg ? S->cap_msg * 2 : 256;
        S->msg = realloc(S->msg, S->cap_msg * sizeof *S->msg);
        assert_non_null(S->msg);
    }
    struct rec *r = &S->msg[S->n_msg++];
    cp(r->a, &r->alen, sess->client_id, sess->client_id_len);
    if (m)
        cp(r->b, &r->blen, m->payload, m->payload_len);
    else
        r->blen = SIZE_MAX;
    r->u1 = e->seq;
    r->u2 = e->msg_id;
    r->x = e->qos;
    r->y = e->state;
    r->pid = e->packet_id;
    r->dup = e->dup;
    r->u3 = e->msg_size;
    return 0;
}

static int v_q2(void *ctx, const struct lmq_store_session *sess, uint16_t pid)
{
    struct seen *S = ctx;
    if (S->n_q2 == MAXREC)
        fail_msg("too many QoS 2 ids for the test collector");
    struct rec *r = &S->q2[S->n_q2++];
    cp(r->a, &r->alen, sess->client_id, sess->client_id_len);
    r->pid = pid;
    return 0;
}

static const struct lmq_store_visitor visitor = {v_ret, v_sess, v_sub, v_msg, v_q2};

static void seen_free(struct seen *S)
{
    if (S)
        free(S->msg);
    free(S);
}

static struct seen *load(struct lmq_store *s)
{
    struct seen *S = calloc(1, sizeof *S);
    assert_non_null(S);
    assert_int_equal(lmq_store_load(s, &visitor, S), 0);
    return S;
}

static struct seen *reload(const char *dir)
{
    struct lmq_store *s = open_ok(dir, NULL);
    struct seen *S = load(s);
    lmq_store_close(s);
    return S;
}

static struct lmq_store_message msg(const char *topic, const char *payload, uint8_t qos)
{
    struct lmq_store_message m = {topic, strlen(topic), payload, strlen(payload), NULL, 0, qos, false, 0};
    return m;
}

static struct lmq_store_session session(const char *cid)
{
    struct lmq_store_session s = {.client_id = cid, .client_id_len = strlen(cid),
                                  .protocol_version = 4, .expiry_interval = UINT32_MAX};
    return s;
}

/* Entries in a table, read with LMDB directly (store closed). */
static size_t table_entries(const char *dir, const char *table)
{
    char path[512];
    snprintf(path, sizeof path, "%s/store", dir);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_stat st;
    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 16);
    assert_int_equal(mdb_env_open(env, path, MDB_RDONLY, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, table, 0, &dbi), 0);
    assert_int_equal(mdb_stat(txn, dbi, &st), 0);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return st.ms_entries;
}

/* Flips byte OFF (from the end if negative) of the Nth value of TABLE. */
static void corrupt(const char *dir, const char *table, size_t nth, long off)
{
    char path[512];
    snprintf(path, sizeof path, "%s/store", dir);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_cursor *c;
    MDB_val k, v;
    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 16);
    assert_int_equal(mdb_env_open(env, path, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, table, 0, &dbi), 0);
    assert_int_equal(mdb_cursor_open(txn, dbi, &c), 0);
    assert_int_equal(mdb_cursor_get(c, &k, &v, MDB_FIRST), 0);
    for (size_t i = 0; i < nth; i++)
        assert_int_equal(mdb_cursor_get(c, &k, &v, MDB_NEXT), 0);
    uint8_t *copy = malloc(v.mv_size);
    memcpy(copy, v.mv_data, v.mv_size);
    size_t at = off < 0 ? v.mv_size - (size_t)(-off) : (size_t)off;
    copy[at] ^= 0x40;
    MDB_val nv = {v.mv_size, copy};
    mdb_cursor_close(c);
    assert_int_equal(mdb_put(txn, dbi, &k, &nv, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    free(copy);
}

/* Puts a copy of the Nth value of TABLE under the same key with its last 8
 * bytes (a queue seq) replaced by SEQ: a value under the wrong key. */
static void copy_value(const char *dir, const char *table, size_t nth, uint64_t seq)
{
    char path[512];
    snprintf(path, sizeof path, "%s/store", dir);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_cursor *c;
    MDB_val k, v;
    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 16);
    assert_int_equal(mdb_env_open(env, path, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, table, 0, &dbi), 0);
    assert_int_equal(mdb_cursor_open(txn, dbi, &c), 0);
    assert_int_equal(mdb_cursor_get(c, &k, &v, MDB_FIRST), 0);
    for (size_t i = 0; i < nth; i++)
        assert_int_equal(mdb_cursor_get(c, &k, &v, MDB_NEXT), 0);
    uint8_t key[512], val[512];
    memcpy(key, k.mv_data, k.mv_size);
    memcpy(val, v.mv_data, v.mv_size);
    for (int i = 0; i < 8; i++)
        key[k.mv_size - 1 - i] = (uint8_t)(seq >> (8 * i));
    MDB_val nk = {k.mv_size, key}, nv = {v.mv_size, val};
    mdb_cursor_close(c);
    assert_int_equal(mdb_put(txn, dbi, &nk, &nv, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* ---- tests ---- */

static void test_record_codec(void **state)
{
    (void)state;
    uint8_t buf[256];
    struct lmq_store_message m = msg("a/b", "hello", 2), d;
    m.props = "\x02\x00\x00\x00\x10";
    m.props_len = 5;
    m.expiry_at = 12345;
    size_t n = lmq_store_rec_message_size(&m);
    lmq_store_rec_message_encode(0, LMQ_STORE_KIND_MESSAGE, &m, buf);
    assert_int_equal(lmq_store_rec_message_decode(0, LMQ_STORE_KIND_MESSAGE, buf, n, &d), 0);
    assert_int_equal(d.topic_len, 3);
    assert_memory_equal(d.payload, "hello", 5);
    assert_int_equal(d.props_len, 5);
    assert_int_equal(d.expiry_at, 12345);
    assert_int_equal(lmq_store_rec_message_decode(0, LMQ_STORE_KIND_RETAINED, buf, n, &d),
                     LMQ_STORE_REC_EKIND);
    assert_int_equal(lmq_store_rec_message_decode(0, LMQ_STORE_KIND_MESSAGE, buf, n - 1, &d),
                     LMQ_STORE_REC_ECRC);
    assert_int_equal(lmq_store_rec_message_decode(0, LMQ_STORE_KIND_MESSAGE, buf, 5, &d),
                     LMQ_STORE_REC_ESHORT);
    buf[0] = 9;
    assert_int_equal(lmq_store_rec_message_decode(0, LMQ_STORE_KIND_MESSAGE, buf, n, &d),
                     LMQ_STORE_REC_EVERSION);
    buf[0] = 1;
    buf[10] ^= 1;
    assert_int_equal(lmq_store_rec_message_decode(0, LMQ_STORE_KIND_MESSAGE, buf, n, &d),
                     LMQ_STORE_REC_ECRC);
    /* crc32c check value */
    assert_int_equal(lmq_crc32c(0, "123456789", 9), 0xE3069283u);

    struct lmq_store_entry e = {7, 99, 2, LMQ_STORE_AWAIT_ACK, 513, true, 77}, e2;
    lmq_store_rec_entry_encode(0, &e, buf);
    assert_int_equal(lmq_store_rec_entry_decode(0, buf, LMQ_STORE_REC_ENTRY_SIZE, &e2), 0);
    assert_int_equal(e2.msg_id, 99);
    assert_int_equal(e2.packet_id, 513);
    assert_true(e2.dup);
    assert_int_equal(e2.msg_size, 77);
    e.state = LMQ_STORE_QUEUED; /* queued with a packet id is invalid */
    lmq_store_rec_entry_encode(0, &e, buf);
    assert_int_equal(lmq_store_rec_entry_decode(0, buf, LMQ_STORE_REC_ENTRY_SIZE, &e2),
                     LMQ_STORE_REC_EFIELD);

    struct lmq_store_sub sub = {"x/#", 3, 0x21, 268435455u}, sub2;
    lmq_store_rec_sub_encode(0, &sub, buf);
    assert_int_equal(lmq_store_rec_sub_decode(0, buf, lmq_store_rec_sub_size(&sub), &sub2), 0);
    assert_int_equal(sub2.sub_id, 268435455u);
    assert_int_equal(sub2.options, 0x21);

    struct lmq_store_session ss = session("dev-1"), ss2;
    ss.protocol_version = 5;
    ss.expiry_interval = 3600;
    ss.disconnected_at = 1700000000;
    lmq_store_rec_session_encode(0, &ss, buf);
    assert_int_equal(lmq_store_rec_session_decode(0, buf, lmq_store_rec_session_size(&ss), &ss2), 0);
    assert_int_equal(ss2.expiry_interval, 3600);
    assert_int_equal(ss2.disconnected_at, 1700000000);
    assert_int_equal(lmq_store_rec_session_decode(0, buf, lmq_store_rec_session_size(&ss) + 1, &ss2),
                     LMQ_STORE_REC_ECRC);
    assert_int_equal(lmq_store_session_expires_at(&ss2, 5), 1700003600);
}

/* A session with a delayed will: a version 2 record with the will, every
 * field back; one defect per check; no will: version 1 as before. */
static void test_record_session_will(void **state)
{
    (void)state;
    uint8_t buf[512];
    struct lmq_store_session ss = session("dev-w"), ss2;
    ss.protocol_version = 5;
    ss.expiry_interval = 600;
    ss.disconnected_at = 1700000000;
    lmq_store_rec_session_encode(0, &ss, buf);
    assert_int_equal(buf[0], LMQ_STORE_REC_VERSION);
    ss.has_will = true;
    ss.will = msg("w/dev-w", "gone", 1);
    ss.will.retain = true;
    ss.will.props = "\x03\x00\x01t";
    ss.will.props_len = 4;
    ss.will_at = 1700000030;
    ss.will_expiry = 77;
    size_t n = lmq_store_rec_session_size(&ss);
    assert_int_equal(n, 2 + 15 + 23 + 5 + 7 + 4 + 4 + 4);
    lmq_store_rec_session_encode(0, &ss, buf);
    assert_int_equal(buf[0], LMQ_STORE_REC_VERSION_WILL);
    assert_int_equal(lmq_store_rec_session_decode(0, buf, n, &ss2), 0);
    assert_true(ss2.has_will);
    assert_int_equal(ss2.expiry_interval, 600);
    assert_int_equal(ss2.disconnected_at, 1700000000);
    assert_int_equal(ss2.client_id_len, 5);
    assert_memory_equal(ss2.client_id, "dev-w", 5);
    assert_int_equal(ss2.will_at, 1700000030);
    assert_int_equal(ss2.will_expiry, 77);
    assert_int_equal(ss2.will.qos, 1);
    assert_true(ss2.will.retain);
    assert_int_equal(ss2.will.topic_len, 7);
    assert_memory_equal(ss2.will.topic, "w/dev-w", 7);
    assert_int_equal(ss2.will.props_len, 4);
    assert_memory_equal(ss2.will.props, "\x03\x00\x01t", 4);
    assert_int_equal(ss2.will.payload_len, 4);
    assert_memory_equal(ss2.will.payload, "gone", 4);
    /* defects: a byte more (CRC), version 1 with a will's layout, QoS 3,
     * an empty will topic (CRC fixed up so the field check is reached) */
    assert_int_equal(lmq_store_rec_session_decode(0, buf, n + 1, &ss2), LMQ_STORE_REC_ECRC);
    uint8_t bad[512];
    memcpy(bad, buf, n);
    bad[0] = LMQ_STORE_REC_VERSION;
    assert_int_not_equal(lmq_store_rec_session_decode(0, bad, n, &ss2), 0);
    ss.will.qos = 3;
    lmq_store_rec_session_encode(0, &ss, bad);
    assert_int_equal(lmq_store_rec_session_decode(0, bad, n, &ss2), LMQ_STORE_REC_EFIELD);
    ss.will.qos = 1;
    ss.will.topic_len = 0;
    lmq_store_rec_session_encode(0, &ss, bad);
    assert_int_equal(lmq_store_rec_session_decode(0, bad, n - 7, &ss2), LMQ_STORE_REC_EFIELD);
}

static int v_sess_will(void *ctx, const struct lmq_store_session *sess,
                       const struct lmq_store_session_stats *st)
{
    (void)st;
    char *out = ctx;
    if (!sess->has_will)
        snprintf(out, 128, "%.*s: none", (int)sess->client_id_len, sess->client_id);
    else
        snprintf(out, 128, "%.*s: %.*s=%.*s q%d r%d at %llu exp %u", (int)sess->client_id_len,
                 sess->client_id, (int)sess->will.topic_len, sess->will.topic,
                 (int)sess->will.payload_len, (const char *)sess->will.payload, sess->will.qos,
                 sess->will.retain, (unsigned long long)sess->will_at, sess->will_expiry);
    return 0;
}

/* The store keeps a session's delayed will (lmq_store_session_put with
 * has_will) across a close, and forgets it when the session is put again
 * without one. */
static void test_session_will(void **state)
{
    (void)state;
    char *dir = tmpdir();
    struct lmq_store *s = open_ok(dir, NULL);
    struct lmq_store_session ss = session("wc");
    ss.protocol_version = 5;
    ss.expiry_interval = 100;
    ss.disconnected_at = 1700000000;
    ss.has_will = true;
    ss.will = msg("w/t", "bye", 2);
    ss.will_at = 1700000005;
    ss.will_expiry = 9;
    assert_int_equal(lmq_store_begin(s), 0);
    assert_int_equal(lmq_store_session_put(s, &ss), 0);
    assert_int_equal(lmq_store_commit(s), 0);
    lmq_store_close(s);
    const struct lmq_store_visitor v = {.session = v_sess_will};
    char got[128] = "";
    s = open_ok(dir, NULL);
    assert_int_equal(lmq_store_load(s, &v, got), 0);
    assert_string_equal(got, "wc: w/t=bye q2 r0 at 1700000005 exp 9");
    ss.will.topic_len = 0; /* invalid will: refused, nothing changed */
    assert_int_equal(lmq_store_begin(s), 0);
    assert_int_equal(lmq_store_session_put(s, &ss), LMQ_STORE_EINVAL);
    ss.has_will = false;
    assert_int_equal(lmq_store_session_put(s, &ss), 0);
    assert_int_equal(lmq_store_commit(s), 0);
    lmq_store_close(s);
    s = open_ok(dir, NULL);
    assert_int_equal(lmq_store_load(s, &v, got), 0);
    assert_string_equal(got, "wc: none");
    lmq_store_close(s);
    rm_rf(dir);
    free(dir);
}

static void test_roundtrip(void **state)
{
    (void)state;
    char *dir = tmpdir();
    struct lmq_store *s = open_ok(dir, NULL);
    struct seen *S = load(s);
    assert_int_equal(S->n_ret + S->n_sess, 0);
    seen_free(S);

    assert_int_equal(lmq_store_begin(s), 0);
    struct lmq_store_message r1 = msg("home/temp", "21.5", 1), r2 = msg("home/hum", "40", 0);
    r1.props = "\x23\x00\x05";
    r1.props_len = 3;
    r1.expiry_at = 4000000000u;
    assert_int_equal(lmq_store_retained_put(s, &r1), 0);
    assert_int_equal(lmq_store_retained_put(s, &r2), 0);
    assert_int_equal(lmq_store_retained_put(s, &r2), 0); /* replace */
    struct lmq_store_message gone = msg("home/gone", "x", 0);
    assert_int_equal(lmq_store_retained_put(s, &gone), 0);
    assert_int_equal(lmq_store_retained_del(s, "home/gone", 9), 0);
    assert_int_equal(lmq_store_retained_del(s, "nope", 4), LMQ_STORE_ENOTFOUND);

    struct lmq_store_session ss = session("dev-1");
    ss.protocol_version = 5;
    ss.expiry_interval = 3600;
    ss.disconnected_at = 1700000000;
    assert_int_equal(lmq_store_session_put(s, &ss), 0);
    struct lmq_store_sub sub1 = {"a/+", 3, 1, 0}, sub2 = {"b/#", 3, 0x2a, 77}, sub3 = {"c", 1, 0, 0};
    assert_int_equal(lmq_store_sub_put(s, "dev-1", 5, &sub1), 0);
    assert_int_equal(lmq_store_sub_put(s, "dev-1", 5, &sub2), 0);
    assert_int_equal(lmq_store_sub_put(s, "dev-1", 5, &sub3), 0);
    assert_int_equal(lmq_store_sub_del(s, "dev-1", 5, "c", 1), 0);

    uint64_t id1, id2, id3;
    struct lmq_store_message m1 = msg("a/x", "one", 1), m2 = msg("a/y", "two", 2), m3 = msg("a/z", "three", 2);
    assert_int_equal(lmq_store_msg_add(s, &m1, &id1), 0);
    assert_int_equal(lmq_store_msg_add(s, &m2, &id2), 0);
    assert_int_equal(lmq_store_msg_add(s, &m3, &id3), 0);
    struct lmq_store_entry q1 = {1, id1, 1, LMQ_STORE_QUEUED, 0, false, 0};
    struct lmq_store_entry q2 = {2, id2, 2, LMQ_STORE_AWAIT_ACK, 10, true, 0};
    struct lmq_store_entry q3 = {3, 0, 2, LMQ_STORE_AWAIT_COMP, 11, false, 0};
    struct lmq_store_entry q4 = {4, id3, 2, LMQ_STORE_QUEUED, 0, false, 0};
    assert_int_equal(lmq_store_qmsg_put(s, "dev-1", 5, &q1), 0);
    assert_int_equal(lmq_store_qmsg_put(s, "dev-1", 5, &q2), 0);
    assert_int_equal(lmq_store_qmsg_put(s, "dev-1", 5, &q3), 0);
    assert_int_equal(lmq_store_qmsg_put(s, "dev-1", 5, &q4), 0);
    assert_int_equal(lmq_store_qmsg_del(s, "dev-1", 5, 4), 0); /* id3's body goes */
    assert_int_equal(lmq_store_qmsg_del(s, "dev-1", 5, 4), LMQ_STORE_ENOTFOUND);
    struct lmq_store_entry bad = {5, 999999, 1, LMQ_STORE_QUEUED, 0, false, 0};
    assert_int_equal(lmq_store_qmsg_put(s, "dev-1", 5, &bad), LMQ_STORE_ENOMSG);
    bad.msg_id = id1;
    bad.qos = 3;
    assert_int_equal(lmq_store_qmsg_put(s, "dev-1", 5, &bad), LMQ_STORE_EINVAL);
    assert_int_equal(lmq_store_qos2_in_put(s, "dev-1", 5, 300), 0);
    assert_int_equal(lmq_store_qos2_in_put(s, "dev-1", 5, 301), 0);
    assert_int_equal(lmq_store_qos2_in_del(s, "dev-1", 5, 301), 0);
    assert_int_equal(lmq_store_qos2_in_put(s, "dev-1", 5, 0), LMQ_STORE_EINVAL);
    assert_int_equal(lmq_store_commit(s), 0);
    /* changes outside a batch are refused */
    assert_int_equal(lmq_store_retained_put(s, &r1), LMQ_STORE_EINVAL);
    lmq_store_close(s);

    assert_int_equal(table_entries(dir, "msgs"), 2);
    S = reload(dir);
    assert_int_equal(S->n_ret, 2);
    assert_string_equal(S->ret[0].a, "home/hum"); /* topic order */
    assert_string_equal(S->ret[0].b, "40");
    assert_string_equal(S->ret[1].a, "home/temp");
    assert_string_equal(S->ret[1].b, "21.5");
    assert_int_equal(S->ret[1].x, 1);
    assert_int_equal(S->ret[1].y, 1);
    assert_int_equal(S->ret[1].u1, 4000000000u);
    assert_int_equal(S->ret[1].u3, 3);
    assert_int_equal(S->n_sess, 1);
    assert_string_equal(S->sess[0].a, "dev-1");
    assert_int_equal(S->sess[0].x, 5);
    assert_int_equal(S->sess[0].u3, 3600);
    assert_int_equal(S->sess[0].u1, 1700000000);
    assert_int_equal(S->sess[0].st.n_subs, 2);
    assert_int_equal(S->sess[0].st.n_msgs, 3);
    assert_int_equal(S->sess[0].st.n_inflight, 2);
    assert_int_equal(S->sess[0].st.max_seq, 3);
    assert_int_equal(S->sess[0].st.bytes, 3 + 3 + 3 + 3);
    assert_int_equal(S->sess[0].st.n_qos2_in, 1);
    assert_int_equal(S->n_sub, 2);
    assert_string_equal(S->sub[0].b, "a/+");
    assert_int_equal(S->sub[0].x, 1);
    assert_string_equal(S->sub[1].b, "b/#");
    assert_int_equal(S->sub[1].x, 0x2a);
    assert_int_equal(S->sub[1].u3, 77);
    assert_int_equal(S->n_msg, 3);
    assert_int_equal(S->msg[0].u1, 1);
    assert_string_equal(S->msg[0].b, "one");
    assert_int_equal(S->msg[0].y, LMQ_STORE_QUEUED);
    assert_int_equal(S->msg[1].u1, 2);
    assert_string_equal(S->msg[1].b, "two");
    assert_int_equal(S->msg[1].y, LMQ_STORE_AWAIT_ACK);
    assert_int_equal(S->msg[1].pid, 10);
    assert_true(S->msg[1].dup);
    assert_int_equal(S->msg[1].u3, 6);
    assert_int_equal(S->msg[2].u1, 3);
    assert_int_equal(S->msg[2].blen, SIZE_MAX);
    assert_int_equal(S->msg[2].y, LMQ_STORE_AWAIT_COMP);
    assert_int_equal(S->msg[2].pid, 11);
    assert_int_equal(S->n_q2, 1);
    assert_int_equal(S->q2[0].pid, 300);
    seen_free(S);

    /* state transitions: sent -> PUBREC (body released), acks, session delete */
    s = open_ok(dir, NULL);
    S = load(s);
    seen_free(S);
    assert_int_equal(lmq_store_begin(s), 0);
    struct lmq_store_entry q2c = {2, 0, 2, LMQ_STORE_AWAIT_COMP, 10, false, 0};
    assert_int_equal(lmq_store_qmsg_put(s, "dev-1", 5, &q2c), 0);
    assert_int_equal(lmq_store_commit(s), 0);
    lmq_store_close(s);
    assert_int_equal(table_entries(dir, "msgs"), 1);
    s = open_ok(dir, NULL);
    assert_int_equal(lmq_store_begin(s), 0);
    assert_int_equal(lmq_store_session_del(s, "dev-1", 5), 0);
    assert_int_equal(lmq_store_session_del(s, "dev-1", 5), LMQ_STORE_ENOTFOUND);
    assert_int_equal(lmq_store_commit(s), 0);
    lmq_store_close(s);
    assert_int_equal(table_entries(dir, "msgs"), 0);
    assert_int_equal(table_entries(dir, "refs"), 0);
    assert_int_equal(table_entries(dir, "subs"), 0);
    assert_int_equal(table_entries(dir, "queue"), 0);
    assert_int_equal(table_entries(dir, "qos2in"), 0);
    S = reload(dir);
    assert_int_equal(S->n_sess, 0);
    assert_int_equal(S->n_ret, 2);
    seen_free(S);
    rm_rf(dir);
    free(dir);
}

static void test_refcount_1000(void **state)
{
    (void)state;
    char *dir = tmpdir();
    struct lmq_store *s = open_ok(dir, NULL);
    char cid[32];
    uint64_t id;
    static char payload[4096];
    memset(payload, 'p', sizeof payload - 1);
    struct lmq_store_message m = msg("fleet/all", payload, 1);
    assert_int_equal(lmq_store_begin(s), 0);
    assert_int_equal(lmq_store_msg_add(s, &m, &id), 0);
    for (int i = 0; i < 1000; i++) {
        snprintf(cid, sizeof cid, "dev-%04d", i);
        struct lmq_store_session ss = session(cid);
        struct lmq_store_entry e = {1, id, 1, LMQ_STORE_QUEUED, 0, false, 0};
        assert_int_equal(lmq_store_session_put(s, &ss), 0);
        assert_int_equal(lmq_store_qmsg_put(s, cid, strlen(cid), &e), 0);
    }
    /* an unreferenced body added in the batch is dropped at commit */
    uint64_t lonely;
    assert_int_equal(lmq_store_msg_add(s, &m, &lonely), 0);
    assert_int_equal(lmq_store_commit(s), 0);
    lmq_store_close(s);
    assert_int_equal(table_entries(dir, "msgs"), 1);
    assert_int_equal(table_entries(dir, "queue"), 1000);

    s = open_ok(dir, NULL);
    struct seen *S = load(s);
    assert_int_equal(S->n_msg, 1000);
    for (size_t i = 0; i < S->n_msg; i++)
        assert_int_equal(S->msg[i].u2, id);
    seen_free(S);
    assert_int_equal(lmq_store_begin(s), 0);
    for (int i = 0; i < 999; i++) {
        snprintf(cid, sizeof cid, "dev-%04d", i);
        assert_int_equal(lmq_store_qmsg_del(s, cid, strlen(cid), 1), 0);
    }
    assert_int_equal(lmq_store_commit(s), 0);
    lmq_store_close(s);
    assert_int_equal(table_entries(dir, "msgs"), 1);
    s = open_ok(dir, NULL);
    assert_int_equal(lmq_store_begin(s), 0);
    assert_int_equal(lmq_store_qmsg_del(s, "dev-0999", 8, 1), 0);
    assert_int_equal(lmq_store_commit(s), 0);
    lmq_store_close(s);
    assert_int_equal(table_entries(dir, "msgs"), 0);
    assert_int_equal(table_entries(dir, "refs"), 0);

    /* a cached id whose body went with its last reference: stored again */
    s = open_ok(dir, NULL);
    uint64_t cached = id;
    struct lmq_store_entry e = {2, 0, 1, LMQ_STORE_QUEUED, 0, false, 0};
    assert_int_equal(lmq_store_begin(s), 0);
    assert_int_equal(lmq_store_qmsg_put(s, "dev-0001", 8, &(struct lmq_store_entry){2, id, 1, 0, 0, false, 0}),
                     LMQ_STORE_ENOMSG);
    assert_int_equal(lmq_store_qmsg_put_msg(s, "dev-0001", 8, &e, &m, &cached), 0);
    assert_true(cached != 0); /* ids are unique per process run; a restart may reuse one */
    uint64_t again = cached;
    e.seq = 3;
    assert_int_equal(lmq_store_qmsg_put_msg(s, "dev-0002", 8, &e, &m, &cached), 0);
    assert_int_equal(cached, again); /* still stored: reused, not added */
    struct lmq_store_entry comp = {3, 0, 2, LMQ_STORE_AWAIT_COMP, 9, false, 0};
    assert_int_equal(lmq_store_qmsg_put_msg(s, "dev-0003", 8, &comp, NULL, &cached), 0);
    assert_int_equal(cached, again);
    assert_int_equal(lmq_store_commit(s), 0);
    lmq_store_close(s);
    assert_int_equal(table_entries(dir, "msgs"), 1);
    s = open_ok(dir, NULL);
    struct seen *S2 = load(s);
    assert_int_equal(S2->n_msg, 3);
    assert_int_equal(S2->msg[0].u2, again);
    assert_int_equal(S2->msg[1].u2, again);
    seen_free(S2);
    lmq_store_close(s);
    rm_rf(dir);
    free(dir);
}

static void test_ordered_load_and_long_names(void **state)
{
    (void)state;
    char *dir = tmpdir();
    struct lmq_store *s = open_ok(dir, NULL);
    /* client ids that are prefixes of each other must not share a range;
     * long names are keyed by a hash but come back whole */
    static char long_a[1000], long_b[1000], long_topic[1025];
    memset(long_a, 'L', 999);
    memcpy(long_b, long_a, 999);
    long_b[998] = 'M';
    memset(long_topic, 't', 1024);
    const char *cids[] = {"a", "ab", "b", long_a, long_b};
    uint64_t id;
    struct lmq_store_message m = msg("x", "payload", 1);
    assert_int_equal(lmq_store_begin(s), 0);
    assert_int_equal(lmq_store_msg_add(s, &m, &id), 0);
    unsigned seed = 7;
    for (int c = 0; c < 5; c++) {
        struct lmq_store_session ss = session(cids[c]);
        assert_int_equal(lmq_store_session_put(s, &ss), 0);
        struct lmq_store_sub sub = {long_topic, 1024, 1, (uint32_t)c + 1};
        assert_int_equal(lmq_store_sub_put(s, cids[c], strlen(cids[c]), &sub), 0);
        /* seqs 1..300 inserted in a shuffled order */
        uint64_t seqs[300];
        for (int i = 0; i < 300; i++)
            seqs[i] = (uint64_t)i + 1 + (i >= 256 ? 1000 : 0); /* crosses a byte boundary */
        for (int i = 299; i > 0; i--) {
            int j = rand_r(&seed) % (i + 1);
            uint64_t t = seqs[i];
            seqs[i] = seqs[j];
            seqs[j] = t;
        }
        for (int i = 0; i < 300; i++) {
            struct lmq_store_entry e = {seqs[i], id, 1, LMQ_STORE_QUEUED, 0, false, 0};
            assert_int_equal(lmq_store_qmsg_put(s, cids[c], strlen(cids[c]), &e), 0);
        }
    }
    struct lmq_store_message rt = msg(long_topic, "r", 0);
    assert_int_equal(lmq_store_retained_put(s, &rt), 0);
    assert_int_equal(lmq_store_commit(s), 0);
    lmq_store_close(s);

    struct seen *S = reload(dir);
    assert_int_equal(S->n_sess, 5);
    assert_int_equal(S->n_msg, 1500);
    assert_int_equal(S->n_ret, 1);
    assert_int_equal(S->ret[0].alen, 1024);
    size_t k = 0;
    for (size_t c = 0; c < S->n_sess; c++) {
        assert_int_equal(S->sess[c].st.n_msgs, 300);
        assert_int_equal(S->sess[c].st.max_seq, 1300);
        for (int i = 0; i < 300; i++, k++) {
            assert_int_equal(S->msg[k].alen, S->sess[c].alen);
            assert_memory_equal(S->msg[k].a, S->sess[c].a, S->sess[c].alen);
            if (i > 0)
                assert_true(S->msg[k].u1 > S->msg[k - 1].u1);
        }
    }
    assert_int_equal(S->n_sub, 5);
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(S->sub[i].blen, 1024);
    seen_free(S);
    rm_rf(dir);
    free(dir);
}

static void test_empty_commit_and_drop(void **state)
{
    (void)state;
    char *dir = tmpdir();
    struct lmq_store *s = open_ok(dir, NULL);
    struct lmq_store_session a = session("keep"), b = session("expired");
    uint64_t id;
    struct lmq_store_message m = msg("t", "v", 1);
    assert_int_equal(lmq_store_begin(s), 0);
    assert_int_equal(lmq_store_session_put(s, &a), 0);
    assert_int_equal(lmq_store_session_put(s, &b), 0);
    assert_int_equal(lmq_store_msg_add(s, &m, &id), 0);
    for (uint64_t i = 1; i <= 3; i++) {
        struct lmq_store_entry e = {i, id, 1, LMQ_STORE_QUEUED, 0, false, 0};
        assert_int_equal(lmq_store_qmsg_put(s, "keep", 4, &e), 0);
        assert_int_equal(lmq_store_qmsg_put(s, "expired", 7, &e), 0);
    }
    assert_int_equal(lmq_store_commit(s), 0);
    lmq_store_close(s);

    /* empty batches open no transaction: the txn id does not move */
    s = open_ok(dir, NULL);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 100000; i++) {
        assert_int_equal(lmq_store_begin(s), 0);
        assert_int_equal(lmq_store_commit(s), 0);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("# timing: empty begin+commit: %.1f ns each\n", secs / 100000 * 1e9);
    lmq_store_close(s);
    char path[512];
    snprintf(path, sizeof path, "%s/store", dir);
    MDB_env *env;
    MDB_envinfo info;
    mdb_env_create(&env);
    mdb_env_set_maxdbs(env, 16);
    assert_int_equal(mdb_env_open(env, path, MDB_RDONLY, 0600), 0);
    mdb_env_info(env, &info);
    size_t txnid = info.me_last_txnid;
    mdb_env_close(env);
    s = open_ok(dir, NULL);
    assert_int_equal(lmq_store_begin(s), 0);
    assert_int_equal(lmq_store_commit(s), 0);
    lmq_store_close(s);
    mdb_env_create(&env);
    mdb_env_set_maxdbs(env, 16);
    assert_int_equal(mdb_env_open(env, path, MDB_RDONLY, 0600), 0);
    mdb_env_info(env, &info);
    assert_int_equal(info.me_last_txnid, txnid);
    mdb_env_close(env);

    /* DROP from the visitor deletes: an expired session, an expired message */
    s = open_ok(dir, NULL);
    struct seen *S = calloc(1, sizeof *S);
    S->drop_session = "expired";
    S->drop_msg_seq = 2;
    assert_int_equal(lmq_store_load(s, &visitor, S), 0);
    assert_int_equal(S->n_sess, 1);
    assert_int_equal(S->n_msg, 2);
    seen_free(S);
    lmq_store_close(s);
    S = reload(dir);
    assert_int_equal(S->n_sess, 1);
    assert_int_equal(S->n_msg, 2);
    assert_int_equal(S->msg[0].u1, 1);
    assert_int_equal(S->msg[1].u1, 3);
    seen_free(S);
    rm_rf(dir);
    free(dir);
}

static void test_commit_timing(void **state)
{
    (void)state;
    char *dir = tmpdir();
    struct lmq_store_options opt;
    lmq_store_options_default(&opt);
    for (int pass = 0; pass < 2; pass++) {
        opt.sync = pass == 0 ? LMQ_SYNC_ALWAYS : LMQ_SYNC_BATCH;
        struct lmq_store *s = open_ok(dir, &opt);
        uint64_t id;
        char cid[32];
        int n = 200;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int i = 0; i < n; i++) {
            /* a typical small batch: one QoS 1 message queued for 4 sessions */
            struct lmq_store_message m = msg("plant/line1/temp", "23.4 C ......................", 1);
            assert_int_equal(lmq_store_begin(s), 0);
            assert_int_equal(lmq_store_msg_add(s, &m, &id), 0);
            for (int c = 0; c < 4; c++) {
                snprintf(cid, sizeof cid, "sub-%d", c);
                struct lmq_store_entry e = {(uint64_t)pass * 1000 + (uint64_t)i + 1, id, 1,
                                            LMQ_STORE_QUEUED, 0, false, 0};
                assert_int_equal(lmq_store_qmsg_put(s, cid, strlen(cid), &e), 0);
            }
            assert_int_equal(lmq_store_commit(s), 0);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        printf("# timing: store_sync=%s: %d commits (1 body + 4 entries) in %.3f s = %.0f commits/s\n",
               pass == 0 ? "always" : "batch", n, secs, n / secs);
        lmq_store_close(s);
    }
    rm_rf(dir);
    free(dir);
}

/* Child of the crash test: commits batches START, START+1, ... forever,
 * writing each batch number to FD after its commit returned. */
static void crash_child(const char *dir, int fd, uint64_t start, enum lmq_sync_policy sync)
{
    struct lmq_store *s;
    struct lmq_store_options opt;
    char err[256];
    lmq_log_set_level(LMQ_LOG_ERROR);
    lmq_store_options_default(&opt);
    opt.sync = sync; /* batch: no fsync, but the page cache survives kill -9 */
    if (lmq_store_open(dir, &opt, &s, err, sizeof err))
        _exit(2);
    if (lmq_store_load(s, NULL, NULL))
        _exit(3);
    char payload[600];
    for (uint64_t b = start;; b++) {
        uint64_t id;
        memset(payload, 'a' + (int)(b % 26), sizeof payload);
        snprintf(payload, 32, "batch %llu", (unsigned long long)b);
        struct lmq_store_message m = {"crash/t", 7, payload, 200 + b % 400, NULL, 0, 1, false, 0};
        char topic[32];
        snprintf(topic, sizeof topic, "ret/%llu", (unsigned long long)(b % 50));
        struct lmq_store_message r = {topic, strlen(topic), payload, 32, NULL, 0, 1, true, 0};
        struct lmq_store_session ss = session("crash");
        ss.disconnected_at = b;
        if (lmq_store_begin(s) || lmq_store_session_put(s, &ss) || lmq_store_msg_add(s, &m, &id))
            _exit(4);
        struct lmq_store_entry e = {b, id, 1, LMQ_STORE_QUEUED, 0, false, 0};
        if (lmq_store_qmsg_put(s, "crash", 5, &e) || lmq_store_retained_put(s, &r))
            _exit(5);
        /* also churn: ack (delete) an older entry now and then */
        if (b % 3 == 0 && b > 10)
            lmq_store_qmsg_del(s, "crash", 5, b - 7);
        if (lmq_store_commit(s))
            _exit(6);
        if (write(fd, &b, sizeof b) != sizeof b)
            _exit(7);
    }
}

static void test_kill9(void **state)
{
    (void)state;
    char *dir = tmpdir();
    uint64_t next = 1, max_reported = 0;
    static uint8_t acked[1 << 20];
    unsigned seed = (unsigned)time(NULL);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int kills = 0;
    for (int round = 0; round < 25; round++) {
        int p[2];
        assert_int_equal(pipe(p), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            crash_child(dir, p[1], next, round % 2 ? LMQ_SYNC_BATCH : LMQ_SYNC_ALWAYS);
        }
        close(p[1]);
        struct timespec d = {0, (long)(5 + rand_r(&seed) % 60) * 1000000L};
        nanosleep(&d, NULL);
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        assert_true(WIFSIGNALED(st)); /* it was killed, not failing */
        kills++;
        uint64_t b;
        while (read(p[0], &b, sizeof b) == sizeof b) {
            assert_true(b < sizeof acked);
            acked[b] = 1;
            if (b > max_reported)
                max_reported = b;
        }
        close(p[0]);

        /* every acknowledged batch is there, and the store loads cleanly */
        capture_start();
        struct lmq_store *s = open_ok(dir, NULL);
        struct seen *S = load(s);
        lmq_store_close(s);
        char *log = capture_end();
        assert_null(strstr(log, "damaged"));
        /* the session's disconnected_at is the last committed batch */
        uint64_t last = S->n_sess ? S->sess[0].u1 : 0;
        assert_true(last >= max_reported);
        size_t i = 0;
        for (uint64_t x = 1; x <= last; x++) {
            uint64_t by = x + 7;
            if (by <= last && by % 3 == 0 && by > 10)
                continue; /* acknowledged (deleted) by batch x+7 */
            if (i >= S->n_msg || S->msg[i].u1 != x)
                fail_msg("batch %llu (%s) is missing after kill -9", (unsigned long long)x,
                         acked[x] ? "reported committed" : "committed");
            char want[32];
            snprintf(want, sizeof want, "batch %llu", (unsigned long long)x);
            assert_memory_equal(S->msg[i].b, want, strlen(want));
            i++;
        }
        assert_int_equal(i, S->n_msg);
        uint64_t max_seq = last;
        next = max_seq + 1;
        seen_free(S);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (t1.tv_sec - t0.tv_sec > 60)
            break;
    }
    printf("# kill -9: %d kills, %llu batches committed\n", kills, (unsigned long long)max_reported);
    assert_true(kills >= 20);
    assert_true(max_reported > 20);
    rm_rf(dir);
    free(dir);
}

static void test_damaged_records(void **state)
{
    (void)state;
    char *dir = tmpdir();
    struct lmq_store *s = open_ok(dir, NULL);
    uint64_t id[3];
    assert_int_equal(lmq_store_begin(s), 0);
    for (int i = 0; i < 3; i++) {
        char t[16];
        snprintf(t, sizeof t, "r/%d", i);
        struct lmq_store_message r = msg(t, "v", 0);
        assert_int_equal(lmq_store_retained_put(s, &r), 0);
        struct lmq_store_message m = msg("q", i == 1 ? "body-1" : "body", 1);
        assert_int_equal(lmq_store_msg_add(s, &m, &id[i]), 0);
    }
    const char *cids[] = {"c0", "c1", "c2"};
    for (int c = 0; c < 3; c++) {
        struct lmq_store_session ss = session(cids[c]);
        assert_int_equal(lmq_store_session_put(s, &ss), 0);
        struct lmq_store_sub sub = {"f", 1, 1, 0};
        assert_int_equal(lmq_store_sub_put(s, cids[c], 2, &sub), 0);
        for (int i = 0; i < 3; i++) {
            struct lmq_store_entry e = {(uint64_t)i + 1, id[i], 1, LMQ_STORE_QUEUED, 0, false, 0};
            assert_int_equal(lmq_store_qmsg_put(s, cids[c], 2, &e), 0);
        }
    }
    assert_int_equal(lmq_store_commit(s), 0);
    lmq_store_close(s);

    corrupt(dir, "retained", 1, 5);   /* r/1: payload/field byte flipped */
    corrupt(dir, "sessions", 2, 3);   /* c2: session record */
    corrupt(dir, "queue", 0, -1);     /* c0 seq 1: CRC byte */
    corrupt(dir, "msgs", 1, -3);      /* body of id[1]: referenced by c0, c1 */
    copy_value(dir, "queue", 3, 1000); /* c1 seq 1's value also under c1 seq 1000 */

    capture_start();
    struct seen *S = reload(dir);
    char *log = capture_end();
    assert_non_null(strstr(log, "table retained, key topic \"r/1\""));
    assert_non_null(strstr(log, "table sessions, key client \"c2\""));
    assert_non_null(strstr(log, "table queue, key client \"c0\" seq 1: CRC32C mismatch"));
    char want[64];
    snprintf(want, sizeof want, "table msgs, key message id %llu", (unsigned long long)id[1]);
    assert_non_null(strstr(log, want));
    assert_non_null(strstr(log, "table queue, key client \"c1\" seq 2: its message body"));
    assert_non_null(strstr(log, "table queue, key client \"c1\" seq 1000: CRC32C mismatch"));
    assert_non_null(strstr(log, "repair committed"));
    assert_int_equal(S->n_ret, 2);
    assert_string_equal(S->ret[0].a, "r/0");
    assert_string_equal(S->ret[1].a, "r/2");
    assert_int_equal(S->n_sess, 2);
    assert_string_equal(S->sess[0].a, "c0");
    assert_string_equal(S->sess[1].a, "c1");
    assert_int_equal(S->n_sub, 2);
    /* c0: seq 1 damaged, seq 2 lost its body -> seq 3; c1: seq 1, 3 */
    assert_int_equal(S->n_msg, 3);
    assert_int_equal(S->msg[0].u1, 3);
    assert_int_equal(S->msg[1].u1, 1);
    assert_int_equal(S->msg[2].u1, 3);
    seen_free(S);

    /* repaired: a second load is clean and loads the same */
    capture_start();
    S = reload(dir);
    log = capture_end();
    assert_null(strstr(log, "damaged"));
    assert_null(strstr(log, " warning "));
    assert_int_equal(S->n_msg, 3);
    assert_int_equal(S->n_sess, 2);
    seen_free(S);
    assert_int_equal(table_entries(dir, "msgs"), 2);  /* id[0] (c1 seq 1), id[2] */
    assert_int_equal(table_entries(dir, "queue"), 3);
    assert_int_equal(table_entries(dir, "subs"), 2);
    rm_rf(dir);
    free(dir);
}

static int count_damaged_dirs(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/store", dir);
    DIR *d = opendir(path);
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += strncmp(de->d_name, "damaged-", 8) == 0;
    closedir(d);
    return n;
}

static void test_garbage_env(void **state)
{
    (void)state;
    char *dir = tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/store", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/store/data.mdb", dir);
    FILE *f = fopen(path, "w");
    unsigned seed = 1;
    for (int i = 0; i < 65536; i++)
        fputc(rand_r(&seed) & 0xff, f);
    fclose(f);

    capture_start();
    struct lmq_store *s = open_ok(dir, NULL);
    struct seen *S = load(s);
    char *log = capture_end();
    assert_non_null(strstr(log, " error "));
    assert_non_null(strstr(log, "EMPTY store"));
    assert_int_equal(S->n_ret + S->n_sess, 0);
    seen_free(S);
    assert_int_equal(count_damaged_dirs(dir), 1);
    /* and it works */
    struct lmq_store_message r = msg("a", "b", 0);
    assert_int_equal(lmq_store_begin(s), 0);
    assert_int_equal(lmq_store_retained_put(s, &r), 0);
    assert_int_equal(lmq_store_commit(s), 0);
    lmq_store_close(s);
    S = reload(dir);
    assert_int_equal(S->n_ret, 1);
    seen_free(S);

    /* a truncated data.mdb is moved aside too (no SIGBUS) */
    s = open_ok(dir, NULL);
    static char big[8000];
    memset(big, 'x', sizeof big);
    assert_int_equal(lmq_store_begin(s), 0);
    for (int i = 0; i < 200; i++) {
        char t[16];
        snprintf(t, sizeof t, "big/%d", i);
        struct lmq_store_message m = {t, strlen(t), big, sizeof big, NULL, 0, 0, true, 0};
        assert_int_equal(lmq_store_retained_put(s, &m), 0);
    }
    assert_int_equal(lmq_store_commit(s), 0);
    lmq_store_close(s);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(truncate(path, st.st_size / 2), 0);
    capture_start();
    s = open_ok(dir, NULL);
    S = load(s);
    log = capture_end();
    assert_non_null(strstr(log, "truncated"));
    assert_int_equal(S->n_ret, 0);
    seen_free(S);
    lmq_store_close(s);
    assert_int_equal(count_damaged_dirs(dir), 2);
    rm_rf(dir);
    free(dir);
}

/* A B-tree branch page whose child pointer leads nowhere: LMDB reports
 * MDB_PAGE_NOTFOUND when a walk gets there. The intact records are
 * salvaged into a new environment, the rest reported lost. */
static void test_structural_damage(void **state)
{
    (void)state;
    char *dir = tmpdir();
    struct lmq_store *s = open_ok(dir, NULL);
    assert_int_equal(lmq_store_begin(s), 0);
    char t[32], pl[100];
    memset(pl, 'v', sizeof pl);
    for (int i = 0; i < 3000; i++) {
        snprintf(t, sizeof t, "r/%05d", i);
        struct lmq_store_message r = {t, strlen(t), pl, sizeof pl, NULL, 0, 0, true, 0};
        assert_int_equal(lmq_store_retained_put(s, &r), 0);
    }
    struct lmq_store_session ss = session("survivor");
    assert_int_equal(lmq_store_session_put(s, &ss), 0);
    assert_int_equal(lmq_store_commit(s), 0);
    lmq_store_close(s);

    /* find a branch page (only the retained table is big enough to have
     * them) and point its second child beyond the end of the file */
    char path[512];
    snprintf(path, sizeof path, "%s/store/data.mdb", dir);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    long psize = sysconf(_SC_PAGESIZE);
    int hit = 0;
    for (off_t off = 2 * psize; off + psize <= st.st_size && !hit; off += psize) {
        uint8_t pg[65536];
        assert_true(pread(fd, pg, (size_t)psize, off) == psize);
        uint16_t flags, lower, ptr;
        memcpy(&flags, pg + 10, 2);
        memcpy(&lower, pg + 12, 2);
        if (flags != 0x01 || (lower - 16) / 2 < 3)
            continue;
        memcpy(&ptr, pg + 16 + 2, 2); /* node 1 */
        uint16_t big = 0xFFFF;
        memcpy(pg + ptr, &big, 2);     /* mn_lo */
        memcpy(pg + ptr + 2, &big, 2); /* mn_hi */
        assert_true(pwrite(fd, pg, (size_t)psize, off) == psize);
        hit = 1;
    }
    close(fd);
    assert_true(hit);

    capture_start();
    s = open_ok(dir, NULL);
    struct seen *S = load(s);
    char *log = capture_end();
    assert_non_null(strstr(log, "damaged B-tree in table retained"));
    assert_non_null(strstr(log, "salvaged"));
    assert_true(S->n_ret > 100 && S->n_ret < 3000);
    assert_int_equal(S->n_sess, 1);
    assert_string_equal(S->sess[0].a, "survivor");
    printf("# structural damage: %zu of 3000 retained messages salvaged\n", S->n_ret);
    seen_free(S);
    /* usable, and clean on the next start */
    struct lmq_store_message r = msg("after", "x", 0);
    assert_int_equal(lmq_store_begin(s), 0);
    assert_int_equal(lmq_store_retained_put(s, &r), 0);
    assert_int_equal(lmq_store_commit(s), 0);
    lmq_store_close(s);
    capture_start();
    S = reload(dir);
    log = capture_end();
    assert_null(strstr(log, " error "));
    assert_int_equal(S->n_sess, 1);
    seen_free(S);
    assert_int_equal(count_damaged_dirs(dir), 1);

    /* a salvage killed between moving the damaged file aside and putting
     * the copy in place is finished at the next open */
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/store/salvage.tmp", dir);
    assert_int_equal(mkdir(a, 0700), 0);
    snprintf(a, sizeof a, "%s/store/salvage.tmp/data.mdb", dir);
    snprintf(b, sizeof b, "%s/store/data.mdb", dir);
    assert_int_equal(rename(b, a), 0);
    capture_start();
    S = reload(dir);
    log = capture_end();
    assert_non_null(strstr(log, "completed an interrupted salvage"));
    assert_int_equal(S->n_sess, 1);
    assert_true(S->n_ret > 100);
    seen_free(S);
    rm_rf(dir);
    free(dir);
}

/* A leaf node whose big value claims 2 GiB: reading it would run past the
 * map. Detected at open, the record is dropped in a salvage, the rest kept. */
static void test_value_past_end(void **state)
{
    (void)state;
    char *dir = tmpdir();
    struct lmq_store *s = open_ok(dir, NULL);
    static char big[10000];
    memset(big, 'b', sizeof big);
    assert_int_equal(lmq_store_begin(s), 0);
    for (int i = 0; i < 5; i++) {
        char t[16];
        snprintf(t, sizeof t, "big/%d", i);
        struct lmq_store_message r = {t, strlen(t), big, sizeof big, NULL, 0, 0, true, 0};
        assert_int_equal(lmq_store_retained_put(s, &r), 0);
    }
    assert_int_equal(lmq_store_commit(s), 0);
    lmq_store_close(s);

    char path[512];
    snprintf(path, sizeof path, "%s/store/data.mdb", dir);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    long psize = sysconf(_SC_PAGESIZE);
    int hit = 0;
    for (off_t off = 2 * psize; off + psize <= st.st_size && !hit; off += psize) {
        uint8_t pg[65536];
        assert_true(pread(fd, pg, (size_t)psize, off) == psize);
        uint16_t flags, lower;
        memcpy(&flags, pg + 10, 2);
        memcpy(&lower, pg + 12, 2);
        if (flags != 0x02)
            continue;
        for (int n = 0; n < (lower - 16) / 2 && !hit; n++) {
            uint16_t ptr, nflags;
            memcpy(&ptr, pg + 16 + 2 * n, 2);
            memcpy(&nflags, pg + ptr + 4, 2);
            if (!(nflags & 0x01) || pg[ptr + 10] != 'b') /* F_BIGDATA, key "\0\5big/.." */
                continue;
            uint16_t hi = 0x7FFF;
            memcpy(pg + ptr + 2, &hi, 2);
            assert_true(pwrite(fd, pg, (size_t)psize, off) == psize);
            hit = 1;
        }
    }
    close(fd);
    assert_true(hit);

    capture_start();
    s = open_ok(dir, NULL);
    struct seen *S = load(s);
    char *log = capture_end();
    lmq_store_close(s);
    assert_non_null(strstr(log, "runs past the data"));
    assert_int_equal(S->n_ret, 4);
    seen_free(S);
    rm_rf(dir);
    free(dir);
}

static void test_map_growth(void **state)
{
    (void)state;
    char *dir = tmpdir();
    struct lmq_store_options opt;
    lmq_store_options_default(&opt);
    opt.map_size_initial = 1 << 20;
    opt.map_size_max = 8 << 20;
    struct lmq_store *s = open_ok(dir, &opt);
    static char payload[64 * 1024];
    memset(payload, 'z', sizeof payload);
    /* one batch far larger than the initial map: grown and replayed */
    assert_int_equal(lmq_store_begin(s), 0);
    struct lmq_store_session ss = session("g");
    assert_int_equal(lmq_store_session_put(s, &ss), 0);
    uint64_t seq = 0;
    for (int i = 0; i < 40; i++) { /* ~2.6 MB */
        uint64_t id;
        struct lmq_store_message m = {"g/t", 3, payload, sizeof payload, NULL, 0, 1, false, 0};
        assert_int_equal(lmq_store_msg_add(s, &m, &id), 0);
        struct lmq_store_entry e = {++seq, id, 1, LMQ_STORE_QUEUED, 0, false, 0};
        assert_int_equal(lmq_store_qmsg_put(s, "g", 1, &e), 0);
    }
    assert_int_equal(lmq_store_commit(s), 0);
    /* then fill up to the limit: EFULL for the change, the batch survives */
    int full = 0;
    uint64_t committed = seq;
    for (int b = 0; b < 40 && !full; b++) {
        assert_int_equal(lmq_store_begin(s), 0);
        for (int i = 0; i < 10; i++) {
            uint64_t id;
            struct lmq_store_message m = {"g/t", 3, payload, sizeof payload, NULL, 0, 1, false, 0};
            int rc = lmq_store_msg_add(s, &m, &id);
            if (rc == LMQ_STORE_EFULL) {
                full = 1;
                break;
            }
            assert_int_equal(rc, 0);
            struct lmq_store_entry e = {++seq, id, 1, LMQ_STORE_QUEUED, 0, false, 0};
            rc = lmq_store_qmsg_put(s, "g", 1, &e);
            if (rc == LMQ_STORE_EFULL) {
                seq--;
                full = 1;
                break;
            }
            assert_int_equal(rc, 0);
        }
        int rc = lmq_store_commit(s);
        if (rc == LMQ_STORE_EFULL) { /* full at commit time: the batch is lost */
            full = 1;
            seq = committed;
        } else {
            assert_int_equal(rc, 0);
            committed = seq;
        }
    }
    assert_true(full);
    /* small changes (an ack, freeing space) still work */
    assert_int_equal(lmq_store_begin(s), 0);
    assert_int_equal(lmq_store_qmsg_del(s, "g", 1, 1), 0);
    assert_int_equal(lmq_store_commit(s), 0);
    lmq_store_close(s);
    s = open_ok(dir, &opt);
    struct seen *S = load(s);
    lmq_store_close(s);
    assert_int_equal(S->n_msg, committed - 1);
    assert_int_equal(S->msg[0].u1, 2);
    assert_int_equal(S->msg[S->n_msg - 1].u1, committed);
    seen_free(S);
    rm_rf(dir);
    free(dir);
}

static void test_lock(void **state)
{
    (void)state;
    char *dir = tmpdir();
    struct lmq_store *s = open_ok(dir, NULL), *s2 = NULL;
    char err[512];
    assert_int_equal(lmq_store_open(dir, NULL, &s2, err, sizeof err), LMQ_STORE_ELOCKED);
    assert_null(s2);
    char pid[32];
    snprintf(pid, sizeof pid, "pid %d", (int)getpid());
    assert_non_null(strstr(err, pid));
    lmq_store_close(s);
    s2 = open_ok(dir, NULL);
    lmq_store_close(s2);
    rm_rf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_codec),
        cmocka_unit_test(test_record_session_will),
        cmocka_unit_test(test_session_will),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_refcount_1000),
        cmocka_unit_test(test_ordered_load_and_long_names),
        cmocka_unit_test(test_empty_commit_and_drop),
        cmocka_unit_test(test_commit_timing),
        cmocka_unit_test(test_damaged_records),
        cmocka_unit_test(test_garbage_env),
        cmocka_unit_test(test_structural_damage),
        cmocka_unit_test(test_value_past_end),
        cmocka_unit_test(test_map_growth),
        cmocka_unit_test(test_lock),
        cmocka_unit_test(test_kill9),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
