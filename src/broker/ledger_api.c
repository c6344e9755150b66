/* The $ledger/... topics (see ledger_api.h; formats in docs/FORMATS.md
 * "Ledger topics").
 *
 * Work that reads the log (receipts, proofs, the leaf-hash index) runs as
 * jobs on the worker pool, serialised by api->mu, which guards the
 * read-only ledger handle and the LMDB leaf-hash index. A job carries
 * copies of everything it needs and leaves its results (topic + payload)
 * in a list that its DONE publishes on the loop thread. Receipt jobs form
 * one chain in commit order: at most one runs, the next commit events
 * accumulate into one pending job, so receipts go out in commit order and
 * a burst of commits costs one refresh. Checkpoints and block headers are
 * published straight from the commit event (they are in it). */
#include "broker/ledger_api.h"

#include "broker/ledger_pipe.h"
#include "crypto/hash.h"
#include "identity/registry.h"
#include "identity/registry_json.h"
#include "ledger/batch.h"
#include "ledger/block.h"
#include "ledger/log.h"
#include "ledger/merkle.h"
#include "ledger/proof_json.h"
#include "ledger/receipt.h"
#include "ledger/record.h"
#include "util/log.h"
#include "util/workpool.h"

#include <errno.h>
#include <inttypes.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define LAPI_INDEX_DIR "leafindex"
#define LAPI_INDEX_MAP (1ull << 36) /* 64 GiB of address space; the file is sparse */
#define LAPI_INDEX_STEP 65536       /* leaf hashes per catch-up step (mutex held) */
/* Leaf hashes per index write transaction. Keys are random, so each one
 * dirties a different B-tree leaf page once the table is large, and LMDB
 * mallocs every dirty page and keeps the freed ones on its own free list
 * until the environment closes: the biggest transaction ever written stays
 * in the heap. 65536 per transaction grew that to ~256 MB (4 KiB times the
 * leaf pages touched, more as the log grows); 2048 caps it near 8 MB. */
#define LAPI_INDEX_TXN 2048
#define LAPI_INDEX_KEY 8 /* bytes of the leaf hash used as the index key */
#define LAPI_INDEX_LAG                                                                             \
    4096 /* records committed without a receipts job before an                                     \
            index job keeps the leaf-hash index up */
#define LAPI_CHECKPOINT_TOPIC "$ledger/checkpoint"
#define LAPI_BLOCKS_TOPIC "$ledger/blocks"
#define LAPI_REGISTRY_PAGE_BYTES                                                                   \
    (256 * 1024) /* a $ledger/registry list page ends after the device that                        \
                    reaches this many bytes of JSON */

enum lapi_kind {
    LAPI_RECEIPTS,
    LAPI_PROOF,
    LAPI_CONSISTENCY,
    LAPI_INDEX,
    LAPI_ADMIN,
    LAPI_REGISTRY
};

/* One message to publish when the job is done. */
struct lapi_out {
    struct lapi_out *next;
    char *topic;
    char *payload;
    size_t len;
    uint8_t *corr;
    size_t corr_len;
    uint8_t qos;
};

struct lapi_target {
    uint64_t index;
    char *client_id;
};

struct lapi_job {
    struct lmq_work w;
    struct lmq_ledger_api *api;
    enum lapi_kind kind;
    uint64_t size; /* the log is at least this big (committed) */
    /* receipts */
    struct lapi_target *t;
    size_t nt, capt;
    /* requests */
    char *req;
    size_t req_len;
    char *resp_topic;
    uint8_t *corr;
    size_t corr_len;
    uint8_t qos;
    char client[64]; /* for log lines */
    struct lapi_out *out_head, *out_tail;
};

struct lmq_ledger_api {
    struct lmq_broker *b;
    const struct lmq_config *cfg;
    struct lmq_workpool *pool;
    pthread_mutex_t mu; /* guards ro, env and the index state */
    struct ledger *ro;
    struct registry *reg; /* lookups on any thread, no lock; NULL: none */
    MDB_env *env;         /* NULL: no index (lookups by hash answer "unavailable") */
    MDB_dbi dbi_leaf, dbi_meta;
    uint64_t committed;          /* tree size of the last commit event (loop thread) */
    struct lapi_job *rc_running; /* receipts job on the pool */
    struct lapi_job *rc_pending; /* the next one, collecting targets */
    uint32_t n_requests;         /* request jobs in flight */
    uint64_t receipts_dropped;   /* over ledger_queue_messages waiting */
    uint64_t indexed_at;         /* committed size when the index was last caught up */
    bool index_running;          /* an index job is on the pool */
    bool freeing;
};

/* ------------------------------------------------------------------ */
/* small helpers */

static char *lapi__strndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

/* Appends a result to JOB (on any thread: the job is owned by one thread
 * at a time). Takes PAYLOAD (malloc'd). */
static void lapi__out(struct lapi_job *job, const char *topic, char *payload, size_t len,
                      const uint8_t *corr, size_t corr_len, uint8_t qos)
{
    struct lapi_out *o = calloc(1, sizeof *o);
    if (!o || !(o->topic = strdup(topic)) ||
        (corr && !(o->corr = malloc(corr_len ? corr_len : 1)))) {
        LMQ_ERROR("ledger api: out of memory queueing a reply on %s", topic);
        if (o) {
            free(o->topic);
            free(o);
        }
        free(payload);
        return;
    }
    if (corr && corr_len)
        memcpy(o->corr, corr, corr_len);
    o->corr_len = corr_len;
    o->payload = payload;
    o->len = len;
    o->qos = qos;
    if (job->out_tail)
        job->out_tail->next = o;
    else
        job->out_head = o;
    job->out_tail = o;
}

/* The JSON error reply {"error": CODE, "reason": "..."}; malloc'd. */
static char *lapi__err_json(size_t *len, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static char *lapi__err_json(size_t *len, const char *code, const char *fmt, ...)
{
    char reason[512], esc[1100];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    size_t n = 0;
    for (const char *p = reason; *p && n + 8 < sizeof esc; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            esc[n++] = '\\';
            esc[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(esc + n, sizeof esc - n, "\\u%04x", c);
        } else {
            esc[n++] = (char)c;
        }
    }
    esc[n] = '\0';
    size_t cap = n + strlen(code) + 40;
    char *out = malloc(cap);
    if (out)
        *len = (size_t)snprintf(out, cap, "{\"error\": \"%s\", \"reason\": \"%s\"}", code, esc);
    return out;
}

static void lapi__reply_err(struct lapi_job *job, const char *code, const char *reason)
{
    size_t len;
    char *p = lapi__err_json(&len, code, "%s", reason);
    if (p)
        lapi__out(job, job->resp_topic, p, len, job->corr, job->corr_len, job->qos);
}

/* ------------------------------------------------------------------ */
/* the leaf-hash index (worker thread, under mu) */

struct lapi_meta {
    uint64_t size;
    uint8_t root[32];
};

static int lapi__index_open(struct lmq_ledger_api *a)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/" LAPI_INDEX_DIR, a->cfg->data_dir);
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return -errno;
    MDB_txn *txn = NULL;
    int rc = mdb_env_create(&a->env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(a->env, 2);
    if (rc == 0)
        rc = mdb_env_set_mapsize(a->env, LAPI_INDEX_MAP);
    /* Derived data: a crash may lose its tail, which the next catch-up
     * writes again; a damaged or foreign index is found by its root. */
    if (rc == 0)
        rc = mdb_env_open(a->env, path, MDB_NOSYNC | MDB_NOMETASYNC | MDB_NOTLS, 0600);
    if (rc == 0)
        rc = mdb_txn_begin(a->env, NULL, 0, &txn);
    if (rc == 0)
        rc = mdb_dbi_open(txn, "leaf8", MDB_CREATE | MDB_DUPSORT | MDB_DUPFIXED, &a->dbi_leaf);
    if (rc == 0)
        rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &a->dbi_meta);
    if (rc == 0)
        rc = mdb_txn_commit(txn);
    else if (txn)
        mdb_txn_abort(txn);
    if (rc != 0) {
        LMQ_ERROR("ledger api: %s: %s; lookups by hash are unavailable", path, mdb_strerror(rc));
        if (a->env)
            mdb_env_close(a->env);
        a->env = NULL;
        return rc;
    }
    return 0;
}

/* Brings the index up to the read-only handle's size, indexing at most MAX
 * records (0 = all). Under mu. 0 when up to date, 1 when MAX were indexed
 * and more remain, or an error. */
static int lapi__index_catch_up(struct lmq_ledger_api *a, uint64_t max)
{
    if (!a->env)
        return -ENOENT;
    uint64_t size = ledger_size(a->ro);
    MDB_txn *txn;
    MDB_val k = {5, "leaf8"}, v; /* the state of the "leaf8" table */
    struct lapi_meta meta = {0};
    int rc = mdb_txn_begin(a->env, NULL, 0, &txn);
    if (rc)
        goto fail;
    rc = mdb_get(txn, a->dbi_meta, &k, &v);
    if (rc == 0 && v.mv_size == sizeof meta)
        memcpy(&meta, v.mv_data, sizeof meta);
    else if (rc != MDB_NOTFOUND && rc != 0)
        goto fail_abort;
    uint8_t root[32];
    if (meta.size > size || (meta.size > 0 && (ledger_root_at(a->ro, meta.size, root) != 0 ||
                                               memcmp(root, meta.root, 32) != 0))) {
        LMQ_NOTICE("ledger api: the leaf-hash index does not match the log; rebuilding it");
        if ((rc = mdb_drop(txn, a->dbi_leaf, 0)) != 0)
            goto fail_abort;
        meta.size = 0;
    }
    uint64_t start = meta.size;
    uint64_t stop = max && size - meta.size > max ? meta.size + max : size;
    while (meta.size < stop) {
        uint8_t h[32];
        uint64_t idx = meta.size;
        rc = ledger_leaf_hash(a->ro, idx, h);
        if (rc) {
            LMQ_ERROR("ledger api: leaf hash %" PRIu64 ": %s", idx, ledger_strerror(rc));
            mdb_txn_abort(txn);
            return rc;
        }
        /* Key: the first 8 bytes of the leaf hash; value: the index (all
         * of them when prefixes collide; the lookup checks the full hash
         * against the log). A quarter of the size of full-hash keys. */
        MDB_val hk = {LAPI_INDEX_KEY, h}, hv = {sizeof idx, &idx};
        rc = mdb_put(txn, a->dbi_leaf, &hk, &hv, MDB_NODUPDATA);
        if (rc != 0 && rc != MDB_KEYEXIST)
            goto fail_abort;
        meta.size++;
        if ((meta.size - start) % LAPI_INDEX_TXN == 0 || meta.size == stop) {
            if ((rc = ledger_root_at(a->ro, meta.size, meta.root)) != 0) {
                mdb_txn_abort(txn);
                return rc;
            }
            MDB_val mv = {sizeof meta, &meta};
            if ((rc = mdb_put(txn, a->dbi_meta, &k, &mv, 0)) != 0)
                goto fail_abort;
            if ((rc = mdb_txn_commit(txn)) != 0)
                goto fail;
            if (meta.size < stop && (rc = mdb_txn_begin(a->env, NULL, 0, &txn)) != 0)
                goto fail;
            if (meta.size == stop)
                return stop < size ? 1 : 0;
        }
    }
    mdb_txn_abort(txn);
    return 0;
fail_abort:
    mdb_txn_abort(txn);
fail:
    LMQ_ERROR("ledger api: leaf-hash index: %s", mdb_strerror(rc));
    return -EIO;
}

/* Index of the record with leaf hash H. 0, -ENOENT, or another error. */
static int lapi__index_lookup(struct lmq_ledger_api *a, const uint8_t h[32], uint64_t *index)
{
    int rc = lapi__index_catch_up(a, 0);
    if (rc)
        return rc < 0 ? rc : -EIO;
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k = {LAPI_INDEX_KEY, (void *)h}, v;
    if (mdb_txn_begin(a->env, NULL, MDB_RDONLY, &txn) != 0)
        return -EIO;
    if (mdb_cursor_open(txn, a->dbi_leaf, &cur) != 0) {
        mdb_txn_abort(txn);
        return -EIO;
    }
    /* every index under the prefix whose full leaf hash matches; a record
     * logged twice (same bytes) is found at its first index */
    bool found = false;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP)) {
        uint64_t idx;
        uint8_t lh[32];
        if (v.mv_size != sizeof idx)
            continue;
        memcpy(&idx, v.mv_data, sizeof idx);
        if (ledger_leaf_hash(a->ro, idx, lh) == 0 && memcmp(lh, h, 32) == 0 &&
            (!found || idx < *index)) {
            *index = idx;
            found = true;
        }
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    if (found)
        return 0;
    return rc == MDB_NOTFOUND ? -ENOENT : -EIO;
}

/* ------------------------------------------------------------------ */
/* building replies (worker thread, under mu) */

/* Refreshes the read-only handle until it holds SIZE records. */
static int lapi__refresh(struct lmq_ledger_api *a, uint64_t size)
{
    if (ledger_size(a->ro) >= size)
        return 0;
    int rc = ledger_refresh(a->ro);
    if (rc)
        LMQ_ERROR("ledger api: refreshing the read-only ledger: %s", ledger_strerror(rc));
    return rc;
}

/* The signed checkpoint of the block that ends at tree size SIZE, in a
 * malloc'd *CP. 0, LEDGER_ERR_NOCHECKPOINT or another ledger error. */
static int lapi__checkpoint_at(struct lmq_ledger_api *a, uint64_t size, char **cp, size_t *len)
{
    uint64_t height;
    int rc = ledger_block_at_size(a->ro, size, &height);
    if (rc)
        return rc == -ENOENT ? LEDGER_ERR_NOCHECKPOINT : rc;
    *cp = malloc(LEDGER_MAX_CHECKPOINT);
    if (!*cp)
        return -ENOMEM;
    rc = ledger_block_checkpoint(a->ro, height, *cp, LEDGER_MAX_CHECKPOINT, len);
    if (rc) {
        free(*cp);
        *cp = NULL;
    }
    return rc;
}

/* The receipt JSON of record INDEX (< SIZE) at tree size SIZE whose signed
 * checkpoint is CP; malloc'd into *out. 0 or an error. */
static int lapi__receipt(struct lmq_ledger_api *a, uint64_t index, uint64_t size, const char *cp,
                         size_t cp_len, char **out, size_t *out_len)
{
    struct receipt *r = malloc(sizeof *r);
    size_t cap = 4096, rlen;
    uint8_t *rec = malloc(cap);
    char *json = NULL;
    int rc = r && rec ? ledger_get(a->ro, index, rec, cap, &rlen) : -ENOMEM;
    if (rc == -ENOSPC) {
        uint8_t *nr = realloc(rec, rlen);
        rc = nr ? ledger_get(a->ro, index, (rec = nr), rlen, &rlen) : -ENOMEM;
    }
    if (rc == 0) {
        memset(r, 0, sizeof *r);
        r->index = index;
        r->tree_size = size;
        r->record = rec;
        r->record_len = rlen;
        r->checkpoint = cp;
        r->checkpoint_len = cp_len;
        rc = ledger_inclusion_proof(a->ro, index, size, r->proof, &r->n_proof);
    }
    if (rc == 0) {
        size_t jcap = rlen / 3 * 4 + 8 + 2 * cp_len + r->n_proof * 48 + 256;
        ssize_t n = (json = malloc(jcap)) ? receipt_write(r, json, jcap) : -ENOMEM;
        if (n < 0) {
            rc = n == -ENOMEM ? -ENOMEM : -ENOSPC;
            free(json);
        } else {
            *out = json;
            *out_len = (size_t)n;
        }
    }
    free(rec);
    free(r);
    return rc;
}

static const char *lapi__strerror(int rc)
{
    return rc <= -300 ? ledger_strerror(rc) : strerror(-rc);
}

static void lapi__receipts_work(struct lapi_job *job)
{
    struct lmq_ledger_api *a = job->api;
    char *cp = NULL;
    size_t cp_len = 0;
    int rc = lapi__refresh(a, job->size);
    /* keep the leaf-hash index close behind, a bounded step per job */
    if (rc == 0 && a->env)
        lapi__index_catch_up(a, LAPI_INDEX_STEP);
    /* one checkpoint for every receipt of the job */
    if (rc == 0 && (rc = lapi__checkpoint_at(a, job->size, &cp, &cp_len)) != 0)
        LMQ_ERROR("ledger api: checkpoint at size %" PRIu64 ": %s; receipts not sent", job->size,
                  lapi__strerror(rc));
    for (size_t i = 0; rc == 0 && i < job->nt; i++) {
        char *json, topic[600];
        size_t len;
        int r = lapi__receipt(a, job->t[i].index, job->size, cp, cp_len, &json, &len);
        if (r) {
            LMQ_ERROR("ledger api: receipt of record %" PRIu64 " at size %" PRIu64 ": %s",
                      job->t[i].index, job->size, lapi__strerror(r));
            continue;
        }
        snprintf(topic, sizeof topic, LMQ_LEDGER_RECEIPTS_PREFIX "%s", job->t[i].client_id);
        lapi__out(job, topic, json, len, NULL, 0, 1);
    }
    free(cp);
}

/* ---- request payloads (pure; fuzzed by fuzz/fuzz_ledger_request.c) ---- */

static bool lapi__space(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* A decimal without sign or leading zeros at *p (up to end). */
static bool lapi__decimal(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    const uint8_t *s = *p;
    uint64_t x = 0;
    while (*p < end && **p >= '0' && **p <= '9') {
        unsigned d = (unsigned)(**p - '0');
        if (x > (UINT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
        (*p)++;
    }
    size_t n = (size_t)(*p - s);
    if (n == 0 || (n > 1 && s[0] == '0'))
        return false;
    *v = x;
    return true;
}

int lmq_ledger_api_parse_proof_query(const uint8_t *p, size_t len, uint64_t *index,
                                     uint8_t hash[32])
{
    while (len && lapi__space(p[len - 1]))
        len--;
    if (len == 64)
        return crypto_hex_decode((const char *)p, 64, hash, 32) == 32 ? 2 : 0;
    const uint8_t *q = p;
    return lapi__decimal(&q, p + len, index) && q == p + len ? 1 : 0;
}

int lmq_ledger_api_parse_consistency_query(const uint8_t *p, size_t len, uint64_t *old_size,
                                           uint64_t *new_size)
{
    const uint8_t *end = p + len;
    while (p < end && lapi__space(*p))
        p++;
    if (!lapi__decimal(&p, end, old_size) || p == end || !lapi__space(*p))
        return -1;
    while (p < end && lapi__space(*p))
        p++;
    if (!lapi__decimal(&p, end, new_size))
        return -1;
    while (p < end && lapi__space(*p))
        p++;
    return p == end ? 0 : -1;
}

int lmq_ledger_api_parse_registry_query(const uint8_t *p, size_t len,
                                        struct lmq_ledger_registry_query *q)
{
    const uint8_t *end = p + len, *t;
    memset(q, 0, sizeof *q);
    while (p < end && lapi__space(*p))
        p++;
    if ((size_t)(end - p) >= 4 && memcmp(p, "show", 4) == 0)
        q->kind = LMQ_LEDGER_REGISTRY_SHOW;
    else if ((size_t)(end - p) >= 4 && memcmp(p, "list", 4) == 0)
        q->kind = LMQ_LEDGER_REGISTRY_LIST;
    else
        return -1;
    p += 4;
    q->limit = LMQ_LEDGER_REGISTRY_PAGE_MAX;
    for (int arg = 0;; arg++) {
        t = p;
        while (p < end && lapi__space(*p))
            p++;
        if (p == end)
            break;
        if (p == t)
            return -1; /* no blank before the argument */
        if (end - p >= DEVICE_ID_LEN && p[0] == 'd' && p[1] == '-' && arg == 0) {
            if (!device_id_valid((const char *)p, DEVICE_ID_LEN))
                return -1;
            memcpy(q->id, p, DEVICE_ID_LEN);
            q->has_id = true;
            p += DEVICE_ID_LEN;
        } else if (q->kind == LMQ_LEDGER_REGISTRY_LIST && arg < 2) {
            uint64_t v;
            if (!lapi__decimal(&p, end, &v) || v == 0 || v > LMQ_LEDGER_REGISTRY_PAGE_MAX)
                return -1;
            q->limit = (uint32_t)v;
            arg = 1; /* nothing but blanks after the limit */
        } else {
            return -1;
        }
        if (p < end && !lapi__space(*p))
            return -1;
        if (q->kind == LMQ_LEDGER_REGISTRY_SHOW || arg == 1) {
            while (p < end && lapi__space(*p))
                p++;
            if (p != end)
                return -1;
            break;
        }
    }
    return q->kind == LMQ_LEDGER_REGISTRY_SHOW && !q->has_id ? -1 : 0;
}

/* "$ledger/registry": "show DEVICEID" -> the device as `ledgermq device
 * show` prints it; "list [AFTER_ID] [LIMIT]" -> a page of the list as
 * `ledgermq device list` prints it. Registry lookups need no lock. */
struct lapi_page {
    FILE *f;
    uint32_t n, limit;
};

static int lapi__page_one(void *ctx, const struct registry_device *d)
{
    struct lapi_page *pg = ctx;
    if (pg->n == pg->limit || ftell(pg->f) >= LAPI_REGISTRY_PAGE_BYTES)
        return 1;
    fputs(pg->n++ ? ",\n" : "\n", pg->f);
    registry_device_json(pg->f, d, "  ");
    return 0;
}

static void lapi__registry_work(struct lapi_job *job)
{
    struct lmq_ledger_registry_query q;
    if (lmq_ledger_api_parse_registry_query((const uint8_t *)job->req, job->req_len, &q) != 0) {
        lapi__reply_err(job, "bad_request",
                        "the request is \"show DEVICEID\" or \"list [AFTER_ID] [LIMIT]\" (LIMIT "
                        "1-100)");
        return;
    }
    if (!job->api->reg) {
        lapi__reply_err(job, "unavailable", "the device registry is not available");
        return;
    }
    char *buf = NULL;
    size_t blen = 0;
    int rc = -ENOMEM;
    FILE *f = open_memstream(&buf, &blen);
    if (f && q.kind == LMQ_LEDGER_REGISTRY_SHOW) {
        struct registry_device *d = malloc(sizeof *d);
        rc = d ? registry_lookup(job->api->reg, q.id, DEVICE_ID_LEN, d) : -ENOMEM;
        if (rc == 0)
            registry_device_json(f, d, "");
        free(d);
    } else if (f) {
        struct lapi_page pg = {f, 0, q.limit};
        fputc('[', f);
        rc = registry_foreach_after(job->api->reg, q.has_id ? q.id : NULL,
                                    q.has_id ? DEVICE_ID_LEN : 0, lapi__page_one, &pg);
        if (rc == 1)
            rc = 0; /* the page is full */
        fputs(pg.n ? "\n]" : "]", f);
    }
    if (f && fclose(f) != 0 && rc == 0)
        rc = -ENOMEM;
    if (rc == 0) {
        lapi__out(job, job->resp_topic, buf, blen, job->corr, job->corr_len, job->qos);
        return;
    }
    free(buf);
    if (rc == -ENOENT) {
        size_t len;
        char *p = lapi__err_json(&len, "not_found", "%s is not registered", q.id);
        if (p)
            lapi__out(job, job->resp_topic, p, len, job->corr, job->corr_len, job->qos);
        return;
    }
    LMQ_ERROR("ledger api: registry lookup for %s: %s", job->client,
              rc == -ENOMEM ? "out of memory" : registry_strerror(rc));
    lapi__reply_err(job, "unavailable", "the device registry cannot be read");
}

/* "$ledger/proof": a decimal index or a 64-hex leaf hash. */
static void lapi__proof_work(struct lapi_job *job)
{
    struct lmq_ledger_api *a = job->api;
    uint64_t index = 0;
    uint8_t h[32];
    int kind = lmq_ledger_api_parse_proof_query((const uint8_t *)job->req, job->req_len, &index, h);
    if (kind == 0) {
        lapi__reply_err(job, "bad_request",
                        "the request is a record index (decimal) or a leaf hash (64 hex digits)");
        return;
    }
    if (lapi__refresh(a, job->size) != 0) {
        lapi__reply_err(job, "unavailable", "the ledger cannot be read");
        return;
    }
    uint64_t size = ledger_size(a->ro);
    if (kind == 2) {
        int rc = lapi__index_lookup(a, h, &index);
        if (rc == -ENOENT) {
            size_t len;
            char hex[65];
            crypto_hex_encode(h, 32, hex, sizeof hex);
            char *p = lapi__err_json(
                &len, "not_found", "no record with leaf hash %s in the log (tree size %" PRIu64 ")",
                hex, size);
            if (p)
                lapi__out(job, job->resp_topic, p, len, job->corr, job->corr_len, job->qos);
            return;
        }
        if (rc) {
            lapi__reply_err(job, "unavailable", "the leaf-hash index is unavailable");
            return;
        }
    }
    if (index >= size) {
        size_t len;
        char *p = lapi__err_json(&len, "not_found",
                                 "index %" PRIu64 " is not in the log (tree size %" PRIu64 ")",
                                 index, size);
        if (p)
            lapi__out(job, job->resp_topic, p, len, job->corr, job->corr_len, job->qos);
        return;
    }
    char *json, *cp = NULL;
    size_t len, cp_len;
    int rc = lapi__checkpoint_at(a, size, &cp, &cp_len);
    if (rc == 0)
        rc = lapi__receipt(a, index, size, cp, cp_len, &json, &len);
    free(cp);
    if (rc) {
        LMQ_ERROR("ledger api: receipt of record %" PRIu64 ": %s", index, lapi__strerror(rc));
        lapi__reply_err(job, "unavailable", "the receipt could not be built");
        return;
    }
    lapi__out(job, job->resp_topic, json, len, job->corr, job->corr_len, job->qos);
}

/* "$ledger/consistency": "OLD NEW". */
static void lapi__consistency_work(struct lapi_job *job)
{
    struct lmq_ledger_api *a = job->api;
    uint64_t old_size = 0, new_size = 0;
    if (lmq_ledger_api_parse_consistency_query((const uint8_t *)job->req, job->req_len, &old_size,
                                               &new_size) != 0) {
        lapi__reply_err(job, "bad_request", "the request is two tree sizes: \"OLD NEW\"");
        return;
    }
    if (lapi__refresh(a, job->size) != 0) {
        lapi__reply_err(job, "unavailable", "the ledger cannot be read");
        return;
    }
    uint64_t size = ledger_size(a->ro);
    if (old_size == 0 || old_size > new_size || new_size > size) {
        size_t len;
        char *p = lapi__err_json(
            &len, old_size == 0 || old_size > new_size ? "bad_request" : "not_found",
            "need 1 <= OLD <= NEW <= tree size %" PRIu64 " (got %" PRIu64 " %" PRIu64 ")", size,
            old_size, new_size);
        if (p)
            lapi__out(job, job->resp_topic, p, len, job->corr, job->corr_len, job->qos);
        return;
    }
    uint8_t proof[MERKLE_MAX_PROOF][32];
    size_t n = 0;
    int rc =
        old_size == new_size ? 0 : ledger_consistency_proof(a->ro, old_size, new_size, proof, &n);
    if (rc) {
        LMQ_ERROR("ledger api: consistency proof %" PRIu64 " -> %" PRIu64 ": %s", old_size,
                  new_size, ledger_strerror(rc));
        lapi__reply_err(job, "unavailable", "the proof could not be built");
        return;
    }
    size_t cap = 128 + n * 48;
    char *json = malloc(cap);
    ssize_t w = json ? proof_json_write_consistency(old_size, new_size, (const uint8_t(*)[32])proof,
                                                    n, json, cap)
                     : -1;
    if (w < 0) {
        free(json);
        return;
    }
    lapi__out(job, job->resp_topic, json, (size_t)w, job->corr, job->corr_len, job->qos);
}

static void lapi__work(struct lmq_work *w)
{
    struct lapi_job *job = (struct lapi_job *)w;
    struct lmq_ledger_api *a = job->api;
    if (job->kind == LAPI_INDEX) {
        /* a long catch-up (a big log, a rebuilt index) in steps, so that
         * proofs and receipts get the mutex in between */
        int rc, steps = 0;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        do {
            pthread_mutex_lock(&a->mu);
            rc = lapi__refresh(a, job->size);
            if (rc == 0)
                rc = lapi__index_catch_up(a, LAPI_INDEX_STEP);
            pthread_mutex_unlock(&a->mu);
            steps++;
        } while (rc == 1);
        if (steps > 1) { /* say so when it took more than one step */
            clock_gettime(CLOCK_MONOTONIC, &t1);
            LMQ_INFO("ledger api: leaf-hash index caught up with the log (%" PRIu64
                     " records) in %.1f s",
                     ledger_size(a->ro),
                     (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
        }
        return;
    }
    if (job->kind == LAPI_REGISTRY) {
        lapi__registry_work(job);
        return;
    }
    pthread_mutex_lock(&a->mu);
    switch (job->kind) {
    case LAPI_RECEIPTS:
        lapi__receipts_work(job);
        break;
    case LAPI_PROOF:
        lapi__proof_work(job);
        break;
    case LAPI_CONSISTENCY:
        lapi__consistency_work(job);
        break;
    case LAPI_INDEX:    /* above */
    case LAPI_REGISTRY: /* above */
    case LAPI_ADMIN:    /* never on the pool: bk_ledger_submit runs it */
        break;
    }
    pthread_mutex_unlock(&a->mu);
}

/* ------------------------------------------------------------------ */
/* jobs: submit and done (loop thread) */

static void lapi__job_free(struct lapi_job *job)
{
    while (job->out_head) {
        struct lapi_out *o = job->out_head;
        job->out_head = o->next;
        free(o->topic);
        free(o->payload);
        free(o->corr);
        free(o);
    }
    for (size_t i = 0; i < job->nt; i++)
        free(job->t[i].client_id);
    free(job->t);
    free(job->req);
    free(job->resp_topic);
    free(job->corr);
    free(job);
}

/* Raw MQTT 5 properties of a reply: payload format 1 (UTF-8), content
 * type application/json, and the request's correlation data. */
static size_t lapi__reply_props(const struct lapi_out *o, uint8_t *buf, size_t cap)
{
    struct mqtt_props p;
    memset(&p, 0, sizeof p);
    p.present = MQTT_PROP_BIT(MQTT_PROP_PAYLOAD_FORMAT) | MQTT_PROP_BIT(MQTT_PROP_CONTENT_TYPE);
    p.payload_format = 1;
    p.content_type = (struct mqtt_str){"application/json", 16};
    if (o->corr) {
        p.present |= MQTT_PROP_BIT(MQTT_PROP_CORRELATION_DATA);
        p.correlation_data = (struct mqtt_bin){o->corr, o->corr_len};
    }
    int n = mqtt_props_encode(buf, cap, &p);
    if (n <= 0)
        return 0;
    /* drop the length prefix: the broker's messages keep the bare block */
    uint32_t blen;
    int k = mqtt_varint_decode(buf, (size_t)n, &blen);
    if (k <= 0)
        return 0;
    memmove(buf, buf + k, blen);
    return blen;
}

/* Publishes one result (a receipt or a reply, all JSON) as the broker. */
static void lapi__publish_out(struct lmq_broker *b, const struct lapi_out *o)
{
    uint8_t small[512], *props = small;
    size_t cap = o->corr_len + 64, pl;
    if (cap > sizeof small && !(props = malloc(cap))) {
        LMQ_ERROR("ledger api: out of memory publishing on %s", o->topic);
        return;
    }
    pl = lapi__reply_props(o, props, cap > sizeof small ? cap : sizeof small);
    bk_publish_internal(b, o->topic, strlen(o->topic), o->payload, o->len, props, pl, o->qos,
                        false);
    if (props != small)
        free(props);
}

static void lapi__submit(struct lmq_ledger_api *a, struct lapi_job *job);

static void lapi__done(struct lmq_work *w)
{
    struct lapi_job *job = (struct lapi_job *)w;
    struct lmq_ledger_api *a = job->api;
    for (struct lapi_out *o = job->out_head; o; o = o->next) {
        lapi__publish_out(a->b, o);
    }
    if (job->kind == LAPI_RECEIPTS) {
        a->rc_running = NULL;
        /* not while the broker shuts down: the pool may be draining for
         * the last time, and a job queued then would never run */
        if (a->rc_pending && bk_shutting_down(a->b)) {
            lapi__job_free(a->rc_pending);
            a->rc_pending = NULL;
        }
        if (a->rc_pending && !a->freeing) {
            struct lapi_job *next = a->rc_pending;
            a->rc_pending = NULL;
            a->rc_running = next;
            lapi__submit(a, next);
        }
    } else if (job->kind == LAPI_INDEX) {
        a->index_running = false;
    } else {
        a->n_requests--;
    }
    lapi__job_free(job);
}

static void lapi__submit(struct lmq_ledger_api *a, struct lapi_job *job)
{
    job->w.work = lapi__work;
    job->w.done = lapi__done;
    if (a->pool) {
        lmq_workpool_submit(a->pool, &job->w);
    } else {
        lapi__work(&job->w);
        lapi__done(&job->w);
    }
}

static struct lapi_job *lapi__job_new(struct lmq_ledger_api *a, enum lapi_kind kind)
{
    struct lapi_job *job = calloc(1, sizeof *job);
    if (job) {
        job->api = a;
        job->kind = kind;
        job->size = a->committed;
    }
    return job;
}

/* ------------------------------------------------------------------ */
/* the commit event */

static bool lapi__id_topic_ok(const char *id)
{
    return id[0] && !strpbrk(id, "+#");
}

static int lapi__add_target(struct lapi_job *job, uint64_t index, const char *client_id)
{
    if (job->nt == job->capt) {
        size_t cap = job->capt ? job->capt * 2 : 16;
        struct lapi_target *t = realloc(job->t, cap * sizeof *t);
        if (!t)
            return -ENOMEM;
        job->t = t;
        job->capt = cap;
    }
    char *id = strdup(client_id);
    if (!id)
        return -ENOMEM;
    job->t[job->nt++] = (struct lapi_target){index, id};
    return 0;
}

/* The block header as JSON (docs/FORMATS.md "Ledger topics"). */
static int lapi__block_json(const struct bk_commit_event *ev, char *out, size_t cap)
{
    struct ledger_block blk;
    if (ledger_block_decode(ev->block_header, &blk) != 0)
        return -1;
    char hash[65], prev[65], root[65], hdr[2 * LEDGER_BLOCK_HEADER_LEN + 1];
    crypto_hex_encode(blk.hash, 32, hash, sizeof hash);
    crypto_hex_encode(blk.prev_hash, 32, prev, sizeof prev);
    crypto_hex_encode(blk.root, 32, root, sizeof root);
    crypto_hex_encode(ev->block_header, LEDGER_BLOCK_HEADER_LEN, hdr, sizeof hdr);
    int n = snprintf(out, cap,
                     "{\"height\": %" PRIu64 ", \"hash\": \"%s\", \"prev_hash\": \"%s\", "
                     "\"first_index\": %" PRIu64 ", \"count\": %" PRIu64 ", \"tree_size\": %" PRIu64
                     ", \"root\": \"%s\", \"time_ms\": %" PRIu64 ", \"signer_key_id\": \"%08" PRIx32
                     "\", \"header\": \"%s\"}",
                     blk.height, hash, prev, blk.first_index, blk.count, blk.tree_size, root,
                     blk.time_ms, blk.signer_key_id, hdr);
    return n > 0 && (size_t)n < cap ? n : -1;
}

void bk_ledger_committed(struct lmq_broker *b, const struct bk_commit_event *ev)
{
    struct lmq_ledger_api *a = bk_ledger_api(b);
    if (!a)
        return;
    if (ev->tree_size > a->committed)
        a->committed = ev->tree_size;
    /* the checkpoint, retained, then the block */
    bk_publish_internal(b, LAPI_CHECKPOINT_TOPIC, strlen(LAPI_CHECKPOINT_TOPIC), ev->checkpoint,
                        ev->checkpoint_len, NULL, 0, 1, true);
    char blk[1024];
    int n = lapi__block_json(ev, blk, sizeof blk);
    if (n > 0)
        bk_publish_internal(b, LAPI_BLOCKS_TOPIC, strlen(LAPI_BLOCKS_TOPIC), blk, (size_t)n, NULL,
                            0, 1, false);
    else
        LMQ_ERROR("ledger api: block %" PRIu64 ": malformed header in the commit event",
                  ev->height);
    /* receipts for the records whose publisher subscribes to its topic
     * (none once the broker shuts down: its clients are gone) */
    if (bk_shutting_down(b))
        return;
    const char *last = NULL;
    bool last_sub = false;
    char topic[600];
    for (size_t i = 0; i < ev->n_recs; i++) {
        const struct bk_commit_record *r = &ev->recs[i];
        if (!r->client_id || !lapi__id_topic_ok(r->client_id))
            continue;
        if (!last || strcmp(last, r->client_id) != 0) {
            int tl = snprintf(topic, sizeof topic, LMQ_LEDGER_RECEIPTS_PREFIX "%s", r->client_id);
            last = r->client_id;
            last_sub =
                tl > 0 && (size_t)tl < sizeof topic && bk_has_subscriber(b, topic, (size_t)tl);
        }
        if (!last_sub)
            continue;
        /* Bounded like the ingest queue: receipts that the worker cannot
         * keep up with are dropped (a client can still ask $ledger/proof). */
        if (a->rc_pending && a->rc_pending->nt >= a->cfg->ledger_queue_messages) {
            if (a->receipts_dropped++ % 10000 == 0)
                LMQ_WARN("ledger api: %zu receipts wait to be built (ledger_queue_messages): "
                         "receipt of record %" PRIu64 " dropped (%" PRIu64 " so far)",
                         a->rc_pending->nt, r->index, a->receipts_dropped);
            continue;
        }
        if (!a->rc_pending && !(a->rc_pending = lapi__job_new(a, LAPI_RECEIPTS))) {
            LMQ_ERROR("ledger api: out of memory: receipts of block %" PRIu64 " not sent",
                      ev->height);
            return;
        }
        if (lapi__add_target(a->rc_pending, r->index, r->client_id) < 0) {
            LMQ_ERROR("ledger api: out of memory: receipt of record %" PRIu64 " not sent",
                      r->index);
            return;
        }
    }
    if (a->rc_pending) {
        a->rc_pending->size = a->committed;
        if (!a->rc_running) {
            a->rc_running = a->rc_pending;
            a->rc_pending = NULL;
            lapi__submit(a, a->rc_running);
        }
        a->indexed_at = a->committed; /* receipt jobs index as they go */
    } else if (a->env && !a->index_running && a->committed - a->indexed_at >= LAPI_INDEX_LAG) {
        /* nobody asks for receipts: keep the leaf-hash index up anyway, so
         * that a lookup by hash does not pay for a long catch-up */
        struct lapi_job *job = lapi__job_new(a, LAPI_INDEX);
        if (job) {
            a->index_running = true;
            a->indexed_at = a->committed;
            lapi__submit(a, job);
        }
    }
}

/* ------------------------------------------------------------------ */
/* client publishes to $ledger/... */

static bool lapi__is(const struct mqtt_str *t, const char *s)
{
    return t->len == strlen(s) && memcmp(t->ptr, s, t->len) == 0;
}

/* Queues a request job; fills the reply address from the properties. */
/* Copies the request's reply address (response topic, correlation data,
 * QoS) and client id into JOB. 0 or -ENOMEM. */
static int lapi__reply_to(struct lapi_job *job, const struct lmq_ledger_api_req *r)
{
    job->resp_topic = lapi__strndup(r->props->response_topic.ptr, r->props->response_topic.len);
    if (!job->resp_topic)
        return -ENOMEM;
    if (mqtt_props_has(r->props, MQTT_PROP_CORRELATION_DATA)) {
        job->corr_len = r->props->correlation_data.len;
        job->corr = malloc(job->corr_len ? job->corr_len : 1);
        if (!job->corr)
            return -ENOMEM;
        memcpy(job->corr, r->props->correlation_data.ptr, job->corr_len);
    }
    job->qos = r->qos ? 1 : 0;
    snprintf(job->client, sizeof job->client, "%s", r->client_id);
    return 0;
}

/* Queues a proof or consistency job. */
static uint8_t lapi__request(struct lmq_ledger_api *a, const struct lmq_ledger_api_req *r,
                             enum lapi_kind kind)
{
    if (a->n_requests >= a->cfg->ledger_api_max_requests) {
        LMQ_WARN("client %s: request on %.*s refused: %u requests pending", r->client_id,
                 (int)r->topic.len, r->topic.ptr, a->n_requests);
        return MQTT_RC_QUOTA_EXCEEDED;
    }
    struct lapi_job *job = lapi__job_new(a, kind);
    if (!job || !(job->req = lapi__strndup((const char *)r->payload.ptr, r->payload.len)) ||
        lapi__reply_to(job, r) < 0) {
        if (job)
            lapi__job_free(job);
        LMQ_ERROR("client %s: out of memory for a request on %.*s", r->client_id, (int)r->topic.len,
                  r->topic.ptr);
        return MQTT_RC_UNSPECIFIED;
    }
    job->req_len = r->payload.len;
    a->n_requests++;
    lapi__submit(a, job);
    return 0;
}

/* Answers at once on the response topic (used without a ledger). */
static void lapi__reply_now(struct lmq_broker *b, const struct lmq_ledger_api_req *r,
                            const char *code, const char *reason)
{
    struct lapi_job tmp;
    memset(&tmp, 0, sizeof tmp);
    tmp.resp_topic = lapi__strndup(r->props->response_topic.ptr, r->props->response_topic.len);
    if (!tmp.resp_topic)
        return;
    if (mqtt_props_has(r->props, MQTT_PROP_CORRELATION_DATA)) {
        tmp.corr = (uint8_t *)r->props->correlation_data.ptr;
        tmp.corr_len = r->props->correlation_data.len;
    }
    tmp.qos = r->qos ? 1 : 0;
    lapi__reply_err(&tmp, code, reason);
    for (struct lapi_out *o = tmp.out_head; o; o = o->next) {
        lapi__publish_out(b, o);
    }
    free(tmp.resp_topic);
    while (tmp.out_head) {
        struct lapi_out *o = tmp.out_head;
        tmp.out_head = o->next;
        free(o->topic);
        free(o->payload);
        free(o->corr);
        free(o);
    }
}

/* An operator-signed registry record on $ledger/admin/...: submitted to
 * the pipeline, which checks it against the registry (operator key
 * trusted, signature, the registry rules) before it is appended; the reply
 * is {"index": N} or the refusal. */
static const char *lapi__submit_code(int status)
{
    switch (status) {
    case BK_SUBMIT_ERR_REFUSED:
        return "refused";
    case BK_SUBMIT_ERR_FULL:
        return "busy";
    case BK_SUBMIT_ERR_RECORD:
        return "bad_request";
    case BK_SUBMIT_ERR_IO:
        return "io_error";
    default:
        return "unavailable";
    }
}

/* bk_ledger_submit's completion (loop thread): CTX is the LAPI_ADMIN job. */
static void lapi__admin_done(void *ctx, int status, uint64_t index, const char *reason)
{
    struct lapi_job *job = ctx;
    if (status == 0) {
        char *p = malloc(48);
        if (p) {
            int n = snprintf(p, 48, "{\"index\": %" PRIu64 "}", index);
            lapi__out(job, job->resp_topic, p, (size_t)n, job->corr, job->corr_len, job->qos);
        }
        LMQ_INFO("client %s: registry record appended at index %" PRIu64, job->client, index);
    } else {
        const char *why = reason && *reason ? reason : lapi__submit_code(status);
        lapi__reply_err(job, lapi__submit_code(status), why);
        LMQ_NOTICE("client %s: registry record refused: %s", job->client, why);
    }
    lapi__done(&job->w);
}

static uint8_t lapi__admin(struct lmq_ledger_api *a, struct lmq_broker *b,
                           const struct lmq_ledger_api_req *r, uint64_t kind)
{
    struct ledger_record rec;
    const char *bad = NULL;
    if (r->device) {
        /* registry records come from operators: a device session never
         * submits one, whatever it carries (the ACL and the record's
         * operator signature judge the others) */
        LMQ_NOTICE("client %s: PUBLISH to %.*s refused: a device session may not submit "
                   "registry records",
                   r->client_id, (int)r->topic.len, r->topic.ptr);
        return MQTT_RC_NOT_AUTHORIZED;
    }
    if (ledger_record_decode(r->payload.ptr, r->payload.len, &rec) != 0)
        bad = "the payload is not a ledger record";
    else if (rec.kind != kind)
        bad = "the record is not of the kind this topic takes (register: 3, revoke: 4, "
              "rotate: 5)";
    if (!a || bad) {
        lapi__reply_now(b, r, a ? "bad_request" : "unavailable",
                        a ? bad : "this node serves no ledger");
        return 0;
    }
    if (a->n_requests >= a->cfg->ledger_api_max_requests) {
        LMQ_WARN("client %s: request on %.*s refused: %u requests pending", r->client_id,
                 (int)r->topic.len, r->topic.ptr, a->n_requests);
        return MQTT_RC_QUOTA_EXCEEDED;
    }
    struct lapi_job *job = lapi__job_new(a, LAPI_ADMIN);
    if (!job || lapi__reply_to(job, r) < 0) {
        if (job)
            lapi__job_free(job);
        return MQTT_RC_UNSPECIFIED;
    }
    a->n_requests++;
    int rc =
        bk_ledger_submit(b, r->payload.ptr, r->payload.len, r->client_id, lapi__admin_done, job);
    if (rc < 0)
        lapi__admin_done(job, rc, 0,
                         rc == BK_SUBMIT_ERR_FULL     ? "the ingest queue is full: try again later"
                         : rc == BK_SUBMIT_ERR_RECORD ? "not a registry record"
                                                      : "the ledger is not available");
    return 0;
}

/* $ledger/admin/cluster (docs/CLUSTER.md "Membership"): a membership
 * request for the ordering service, from an operator. The committer
 * answers on its own thread; the answer comes back to the loop through
 * the pool's completion list (lmq_workpool_post), where the job publishes
 * the JSON reply. */
struct lapi_cluster {
    struct lmq_committer_admin adm; /* first: its done gets the whole back */
    struct lmq_work w;
    struct lapi_job *job;
    struct lmq_workpool *pool;
};

static void lapi__cluster_reply(struct lmq_work *w)
{
    struct lapi_cluster *cl = (struct lapi_cluster *)((char *)w - offsetof(struct lapi_cluster, w));
    struct lapi_job *job = cl->job;
    char *p = strdup(cl->adm.result);
    if (p)
        lapi__out(job, job->resp_topic, p, strlen(p), job->corr, job->corr_len, job->qos);
    LMQ_NOTICE("client %s: cluster request answered: %s", job->client, cl->adm.result);
    free(cl);
    lapi__done(&job->w);
}

/* The committer's thread (or ours, for a request answered at once). */
static void lapi__cluster_answered(struct lmq_committer_admin *r)
{
    struct lapi_cluster *cl = (struct lapi_cluster *)r;
    lmq_workpool_post(cl->pool, &cl->w);
}

static uint8_t lapi__cluster(struct lmq_ledger_api *a, struct lmq_broker *b,
                             const struct lmq_ledger_api_req *r)
{
    if (!r->user) {
        /* no signed record to judge here: only a password_file user (and
         * the ACL, checked before) may change the cluster */
        LMQ_NOTICE("client %s: PUBLISH to $ledger/admin/cluster refused: not an operator "
                   "(a password_file user)",
                   r->client_id);
        if (r->why)
            snprintf(r->why, r->why_cap, "cluster administration needs an operator login");
        return MQTT_RC_NOT_AUTHORIZED;
    }
    if (!a || !a->pool) {
        lapi__reply_now(b, r, "unavailable", "this node serves no ledger");
        return 0;
    }
    if (a->n_requests >= a->cfg->ledger_api_max_requests) {
        LMQ_WARN("client %s: request on $ledger/admin/cluster refused: %u requests pending",
                 r->client_id, a->n_requests);
        return MQTT_RC_QUOTA_EXCEEDED;
    }
    struct lapi_cluster *cl = calloc(1, sizeof *cl);
    struct lapi_job *job = cl ? lapi__job_new(a, LAPI_ADMIN) : NULL;
    if (!job || lapi__reply_to(job, r) < 0) {
        if (job)
            lapi__job_free(job);
        free(cl);
        return MQTT_RC_UNSPECIFIED;
    }
    cl->adm.done = lapi__cluster_answered;
    cl->w.done = lapi__cluster_reply;
    cl->job = job;
    cl->pool = a->pool;
    char why[200] = "";
    int rc = bk_ledger_cluster_admin(b, r->payload.ptr, r->payload.len, &cl->adm, why, sizeof why);
    if (rc == 0) {
        a->n_requests++;
        LMQ_INFO("client %s: cluster request %.*s", r->client_id,
                 (int)(r->payload.len > 300 ? 300 : r->payload.len), (const char *)r->payload.ptr);
        return 0;
    }
    lapi__job_free(job);
    free(cl);
    if (rc < 0) {
        lapi__reply_now(b, r, "unavailable",
                        "this node is not a cluster node (no cluster_node lines) or its ledger "
                        "is not served");
        return 0;
    }
    LMQ_NOTICE("client %s: cluster request refused: 0x%02x %s", r->client_id, rc, why);
    if (r->why)
        snprintf(r->why, r->why_cap, "%s", why);
    return (uint8_t)rc;
}

uint8_t lmq_ledger_api_publish(struct lmq_ledger_api *a, struct lmq_broker *b,
                               const struct lmq_ledger_api_req *r)
{
    enum lapi_kind kind = LAPI_PROOF;
    uint64_t admin = 0;
    bool cluster = false;
    if (lapi__is(&r->topic, "$ledger/proof"))
        kind = LAPI_PROOF;
    else if (lapi__is(&r->topic, "$ledger/consistency"))
        kind = LAPI_CONSISTENCY;
    else if (lapi__is(&r->topic, "$ledger/registry"))
        kind = LAPI_REGISTRY;
    else if (lapi__is(&r->topic, "$ledger/admin/register"))
        admin = LEDGER_KIND_DEVICE_REGISTRATION;
    else if (lapi__is(&r->topic, "$ledger/admin/revoke"))
        admin = LEDGER_KIND_DEVICE_REVOCATION;
    else if (lapi__is(&r->topic, "$ledger/admin/rotate"))
        admin = LEDGER_KIND_KEY_ROTATION;
    else if (lapi__is(&r->topic, "$ledger/admin/cluster"))
        cluster = true;
    else {
        LMQ_NOTICE("client %s: PUBLISH to %.*s refused: clients may not publish there",
                   r->client_id, (int)r->topic.len, r->topic.ptr);
        return MQTT_RC_NOT_AUTHORIZED;
    }
    if (!r->props || !mqtt_props_has(r->props, MQTT_PROP_RESPONSE_TOPIC)) {
        LMQ_NOTICE("client %s: request on %.*s without a Response Topic (MQTT 5 "
                   "request/response); dropped",
                   r->client_id, (int)r->topic.len, r->topic.ptr);
        return MQTT_RC_IMPL_SPECIFIC;
    }
    if (r->props->response_topic.len == 0 || r->props->response_topic.ptr[0] == '$') {
        LMQ_NOTICE("client %s: request on %.*s refused: Response Topic '%.*s' is empty or a $ "
                   "topic",
                   r->client_id, (int)r->topic.len, r->topic.ptr, (int)r->props->response_topic.len,
                   r->props->response_topic.ptr);
        return MQTT_RC_IMPL_SPECIFIC;
    }
    if (cluster)
        return lapi__cluster(a, b, r);
    if (admin)
        return lapi__admin(a, b, r, admin);
    if (!a) {
        lapi__reply_now(b, r, "unavailable", "this node serves no ledger");
        return 0;
    }
    return lapi__request(a, r, kind);
}

bool lmq_ledger_api_may_subscribe(const char *client_id, const char *filter, size_t len)
{
    /* A shared subscription is judged by its filter after $share/GROUP/. */
    if (len > 7 && memcmp(filter, "$share/", 7) == 0) {
        const char *g = memchr(filter + 7, '/', len - 7);
        if (!g)
            return true;
        len -= (size_t)(g + 1 - filter);
        filter = g + 1;
    }
    /* Only filters whose first level is literally "$ledger" can match a
     * $ledger topic (wildcards at the first level never match $ topics). */
    if (len < 8 || memcmp(filter, "$ledger/", 8) != 0)
        return true;
    const char *l1 = filter + 8, *end = filter + len;
    const char *s1 = memchr(l1, '/', (size_t)(end - l1));
    size_t n1 = (size_t)((s1 ? s1 : end) - l1);
    bool receipts = n1 == 8 && memcmp(l1, "receipts", 8) == 0;
    bool plus = n1 == 1 && l1[0] == '+';
    if (n1 == 1 && l1[0] == '#')
        return false;
    if (!receipts && !plus)
        return true; /* $ledger/checkpoint, $ledger/blocks, ... */
    if (!s1)
        return true; /* "$ledger/receipts", "$ledger/+": two levels, no receipts */
    /* the rest must be exactly the client's own id (no wildcard) */
    const char *rest = s1 + 1;
    size_t rl = (size_t)(end - rest);
    size_t il = strlen(client_id);
    if (rl == il && memcmp(rest, client_id, il) == 0 && !memchr(rest, '+', rl) &&
        !memchr(rest, '#', rl))
        return true;
    /* $ledger/receipts/other, .../+, .../#, and $ledger/+/X (which matches
     * the receipts of client X) */
    return false;
}

/* ------------------------------------------------------------------ */
/* life cycle */

struct lmq_ledger_api *lmq_ledger_api_new(struct lmq_broker *b, const struct lmq_config *cfg,
                                          const struct lmq_broker_services *svc)
{
    struct lmq_ledger_api *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->b = b;
    a->cfg = cfg;
    a->pool = svc->pool;
    a->reg = svc->registry;
    pthread_mutex_init(&a->mu, NULL);
    struct ledger_options lo;
    char err[1024];
    ledger_options_default(&lo);
    lo.read_only = true;
    lo.origin = NULL;
    int rc = ledger_open(cfg->data_dir, &lo, &a->ro, err, sizeof err);
    if (rc) {
        LMQ_ERROR("ledger api: cannot open the ledger read-only: %s; the $ledger topics are "
                  "not served",
                  err[0] ? err : ledger_strerror(rc));
        pthread_mutex_destroy(&a->mu);
        free(a);
        return NULL;
    }
    a->committed = ledger_size(a->ro);
    lapi__index_open(a);
    /* the latest checkpoint, retained */
    char *cp = malloc(LEDGER_MAX_CHECKPOINT);
    size_t cl;
    if (cp && ledger_latest_checkpoint(a->ro, cp, LEDGER_MAX_CHECKPOINT, &cl) == 0)
        bk_publish_internal(b, LAPI_CHECKPOINT_TOPIC, strlen(LAPI_CHECKPOINT_TOPIC), cp, cl, NULL,
                            0, 1, true);
    free(cp);
    LMQ_INFO("ledger api: serving $ledger/ topics (tree size %" PRIu64 ")", a->committed);
    /* bring the leaf-hash index up to date in the background */
    struct lapi_job *job = a->env ? lapi__job_new(a, LAPI_INDEX) : NULL;
    a->indexed_at = a->committed;
    if (job) {
        a->index_running = true;
        lapi__submit(a, job);
    }
    return a;
}

void lmq_ledger_api_set_pool(struct lmq_ledger_api *a, struct lmq_workpool *pool)
{
    a->pool = pool;
}

void lmq_ledger_api_free(struct lmq_ledger_api *a)
{
    if (!a)
        return;
    a->freeing = true;
    if (a->rc_pending)
        lapi__job_free(a->rc_pending);
    if (a->env)
        mdb_env_close(a->env);
    ledger_close(a->ro);
    pthread_mutex_destroy(&a->mu);
    free(a);
}
