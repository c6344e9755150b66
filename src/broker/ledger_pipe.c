/* The ledger pipeline (see ledger_pipe.h for the flow and ledger_glue.h
 * for the calls into broker.c).
 *
 * Objects: one struct lp_msg per ledgered PUBLISH (and per record given to
 * bk_ledger_submit), in one allocation with its topic, payload and
 * properties. It is in its publisher's FIFO (struct lp_client) from the
 * PUBLISH until it is answered; the FIFO is what keeps a connection's
 * records, acks and deliveries in the order it published them:
 *   - a message is proposed to the batcher only when every message before
 *     it in the FIFO was proposed or refused (verification jobs finish in
 *     any order);
 *   - a message is answered (ack or refusal, then routing) only at the head
 *     of the FIFO, so a refusal never overtakes an earlier message's ack.
 * A publisher that goes away leaves its messages behind: the ones proposed
 * are still committed and delivered (no ack), the others are dropped.
 *
 * The state machine run by the committer thread (lp__fsm_*) re-validates
 * at the single ordering point: device sequence numbers (a cache of the
 * last accepted sequence per device in front of the registry's replay
 * slots, see lp__dev), revocations, and registry records (registry_check,
 * one registry record per batch position via LMQ_FSM_BARRIER, then
 * registry_sync after the batch). */
#include "broker/ledger_pipe.h"

#include "broker/ledger_api.h"
#include "broker/ledger_glue.h"
#include "broker/paystore.h"
#include "crypto/ed25519_batch.h"
#include "crypto/hash.h"
#include "identity/registry.h"
#include "identity/verify.h"
#include "ledger/batch.h"
#include "ledger/log.h"
#include "ledger/record.h"
#include "mqtt/topic.h"
#include "util/log.h"
#include "util/workpool.h"

#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum lp_kind { LP_SIGNED = 1, LP_ATTESTED = 2, LP_SUBMIT = 3 };
enum lp_state {
    LP_VERIFYING = 0, /* verification job on the pool */
    LP_READY = 1,     /* record built, not proposed yet */
    LP_REFUSED = 2,   /* refused before the apply stage (vres) */
    LP_PROPOSED = 3,  /* in the batcher */
    LP_DONE = 4,      /* back from the batcher (item.status) */
};

/* A refusal of the pipeline itself (beside enum verify_result). */
#define LP_UNAVAILABLE 9
#define LP_TOO_LARGE 10 /* the record would exceed LEDGER_MAX_RECORD */

#define LP_RING 8 /* recent (seq, index) pairs kept per device for DUP resends */

#define LP_DK_PENDING UINT64_MAX /* lp_dk.index of a record of the batch being applied */

struct lp_client;

/* A verification job: the signed messages that arrived while the previous
 * jobs were queued or running, up to ED25519_BATCH_MAX, verified together
 * on a worker (one registry read transaction, one ed25519_verify_batch),
 * one completion wakeup for all. At most one job per worker thread is in
 * flight, so an idle broker verifies a lone message at once and a busy one
 * gets fewer, bigger jobs. */
#define LP_VJOBS_MAX 8

struct lp_vjob {
    struct lmq_work work;
    struct bk_lp *lp;
    unsigned slot; /* in lp->vjobs */
    size_t n;
    struct lp_msg *m[ED25519_BATCH_MAX];
    struct verify_req req[ED25519_BATCH_MAX];
    struct verify_prep vp[ED25519_BATCH_MAX];
};

struct lp_msg {
    struct lmq_batch_item item;
    struct bk_lp *lp;
    struct lmq_client *c; /* publisher, NULL when gone (or a submit) */
    struct lp_client *lc;
    struct lp_msg *next; /* in lc's FIFO */
    /* in lp's queue of signed messages waiting for a verification job */
    struct lp_msg *vnext;
    const struct lmq_ledger_topic *pol;
    bk_submit_cb cb;
    void *cb_ctx;
    uint8_t kind;
    uint8_t state;
    uint8_t qos;
    bool retain;
    bool dup;
    bool has_expect;
    bool has_pe;
    bool in_batch; /* in the batch being answered */
    bool answered;
    uint16_t pkid;
    int vres;        /* enum verify_result of a refusal */
    int apply_err;   /* registry/record error of a refused submit */
    uint64_t now_ms; /* broker time of the PUBLISH */
    uint64_t expiry_at;
    uint64_t seq; /* signed: device sequence */
    size_t cost;  /* bytes charged to the ingest queue */
    char device[DEVICE_ID_LEN + 1];
    char expect[DEVICE_ID_LEN + 1];
    uint8_t leaf[32]; /* set by the committer for appended records */
    uint8_t dkey[32]; /* attested: lp__dkey of (client id, topic, payload) */
    struct paystore_entry pe;
    uint8_t *rec; /* the record (malloc) */
    size_t rec_len;
    char *client_id;  /* NUL-terminated, in data[] */
    char *principal;  /* attested: the publisher identity, in data[] */
    char *topic;      /* in data[] */
    uint8_t *payload; /* in data[] */
    uint8_t *props;   /* forwarded MQTT 5 properties, in data[] */
    uint32_t tlen, plen, props_len;
    uint8_t data[];
};

struct lp_client {
    struct lmq_client *c;
    struct lp_msg *head, *tail;
    struct lp_msg *prop; /* first message not proposed or skipped yet */
    uint32_t n_acked;    /* QoS 1/2 messages waiting for their ack */
    bool paused;
    struct lp_client *paused_next;
};

/* The committer's view of a device (lp__dev). */
struct lp_dev {
    char id[DEVICE_ID_LEN + 1]; /* "" = free slot */
    bool active;
    bool has_last;
    uint8_t ring_n, ring_pos;
    uint64_t last;
    uint64_t rseq[LP_RING], ridx[LP_RING];
};

#define LP_DEV_CAP_MAX 65536

/* What begin_records found for one envelope of the entry being applied. */
struct lp_pre {
    const uint8_t *rec; /* the record (in the replicated entry) */
    int res;            /* verify_envelope's result for its envelope */
    struct verify_info vi;
};

/* One remembered attested record (lp__dk_*): a ring of the last
 * ledger_dup_window ones (plus a batch), chained per hash bucket. */
struct lp_dk {
    uint8_t key[32];
    uint64_t index; /* LP_DK_PENDING while its batch is being applied */
    int32_t next;   /* in its bucket, -1 = end */
    uint32_t pos;   /* pending: its place among the records the batch appends */
};

struct bk_lp {
    struct lmq_broker *b;
    const struct lmq_config *cfg;
    struct ledger *ledger;
    struct registry *reg;
    struct lmq_workpool *pool;
    const struct lmq_committer_ops *ops; /* the ordering/commit service */
    void *bt;                            /* its handle, NULL when not running */
    struct lmq_paystore *ps;
    struct lmq_work wake;
    atomic_bool wake_posted;
    bool stopped;
    /* ingest queue accounting (loop thread): messages between the PUBLISH
     * and their answer, verifications included */
    uint64_t q_msgs, q_bytes;
    struct lp_client *paused;
    /* committer thread: the state machine */
    struct lp_dev *devs;
    size_t dev_cap, dev_n;
    bool reg_in_batch;
    uint32_t seg_n; /* records accepted by check/check_record since the last end */
    /* begin_records: the envelope verdicts of the entry being applied,
     * judged in batches against the registry as at its start (dropped
     * when a registry record changes the registry) */
    struct lp_pre *pre;
    size_t pre_n, pre_cap, pre_at;
    struct verify_req *pre_req; /* ED25519_BATCH_MAX */
    struct verify_prep *pre_vp; /* ED25519_BATCH_MAX */
    struct registry_device *scratch;
    /* committer thread (and bk_lp_new before it starts): recent attested
     * records, for DUP resends after a lost ack */
    struct lp_dk *dk;
    int32_t *dk_bucket;
    uint32_t dk_cap, dk_mask, dk_w, dk_n, dk_pend;
    /* counters (loop thread) */
    uint64_t n_records, n_batches, n_dups, tree_size, last_batch, max_batch;
    uint64_t commit_us_last, commit_us_max, latency_us_last, latency_us_max;
    uint64_t n_refused, refused[11];
    uint64_t n_io_failed, n_paused_total, n_paused;
    /* verification (loop thread): signed messages waiting for a job, and
     * the jobs (one per worker thread, allocated on first use) */
    struct lp_msg *vq_head, *vq_tail;
    struct lp_vjob *vjobs[LP_VJOBS_MAX];
    bool vjob_busy[LP_VJOBS_MAX];
    uint64_t n_vjobs, n_vjob_msgs, max_vjob; /* counters */
};

static uint64_t lp__wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ------------------------------------------------------------------ */
/* policies */

static const struct lmq_ledger_topic *lp__match(const struct bk_lp *lp, const char *topic,
                                                size_t tlen)
{
    const struct lmq_config *cfg = lp->cfg;
    for (size_t i = 0; i < cfg->n_ledger_topics; i++) {
        const struct lmq_ledger_topic *t = &cfg->ledger_topics[i];
        if (mqtt_topic_matches(t->filter, t->filter_len, topic, tlen))
            return t;
    }
    return NULL;
}

bool bk_lp_ledgered(const struct bk_lp *lp, const char *topic, size_t tlen)
{
    return lp && lp__match(lp, topic, tlen) != NULL;
}

/* ------------------------------------------------------------------ */
/* records (any thread) */

/* The resend key of an attested message: what a DUP resend repeats (not
 * the broker time). Also computed from the log's records at start. */
static void lp__dkey(const char *cid, size_t cl, const char *topic, size_t tl,
                     const uint8_t *payload, size_t pl, uint8_t out[32])
{
    crypto_generichash_state st;
    uint64_t lens[3] = {cl, tl, pl};
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, (const uint8_t *)lens, sizeof lens);
    crypto_generichash_update(&st, (const uint8_t *)cid, cl);
    crypto_generichash_update(&st, (const uint8_t *)topic, tl);
    if (pl)
        crypto_generichash_update(&st, payload, pl);
    crypto_generichash_final(&st, out, 32);
}

/* Builds M's message record. For a signed message VI is its verified
 * envelope (the record keeps the payload inside it, the device's sequence
 * and time, and the envelope itself); for an attested one VI is NULL. A
 * private topic's record holds SHA-256(salt || payload) instead, and the
 * payload (the envelope for signed) goes to the payload store. */
static int lp__build(struct lp_msg *m, const struct verify_info *vi)
{
    struct bk_lp *lp = m->lp;
    struct ledger_record r;
    memset(&r, 0, sizeof r);
    r.kind = LEDGER_KIND_MESSAGE;
    r.version = LEDGER_RECORD_VERSION;
    static const uint8_t empty[1] = {0};
    r.msg.topic.ptr = (const uint8_t *)m->topic;
    r.msg.topic.len = m->tlen;
    const uint8_t *pl = vi ? vi->cose.payload : m->payload;
    size_t pll = vi ? vi->cose.payload_len : m->plen;
    if (!pl)
        pl = empty;
    if (m->pol && m->pol->private_payload) {
        randombytes_buf(m->pe.salt, sizeof m->pe.salt);
        const void *parts[2] = {m->pe.salt, pl};
        size_t lens[2] = {sizeof m->pe.salt, pll};
        crypto_sha256_parts(parts, lens, 2, m->pe.digest);
        m->pe.kind = vi ? PAYSTORE_ENVELOPE : PAYSTORE_PAYLOAD;
        m->pe.data = m->payload;
        m->pe.len = m->plen;
        m->has_pe = true;
        r.msg.payload_digest.ptr = m->pe.digest;
        r.msg.payload_digest.len = 32;
    } else {
        r.msg.payload.ptr = pl;
        r.msg.payload.len = pll;
        if (vi) {
            r.msg.cose.ptr = m->payload;
            r.msg.cose.len = m->plen;
        }
    }
    if (!vi)
        lp__dkey(m->client_id, strlen(m->client_id), m->topic, m->tlen, m->payload, m->plen,
                 m->dkey);
    const char *pub = vi ? m->device : m->principal;
    r.msg.publisher.ptr = (const uint8_t *)pub;
    r.msg.publisher.len = strlen(pub);
    r.msg.client_id.ptr = (const uint8_t *)m->client_id;
    r.msg.client_id.len = strlen(m->client_id);
    if (vi) {
        r.msg.has_device_seq = true;
        r.msg.device_seq = vi->seq;
        r.msg.has_device_time = true;
        r.msg.device_time_ms = vi->time_ms;
    }
    r.msg.broker_time_ms = m->now_ms;
    r.msg.ingress_node.ptr = (const uint8_t *)lp->cfg->ledger_node_id;
    r.msg.ingress_node.len = strlen(lp->cfg->ledger_node_id);
    size_t cap = (size_t)m->tlen + 2 * (size_t)m->plen + strlen(pub) + strlen(m->client_id) +
                 r.msg.ingress_node.len + 128;
    m->rec = malloc(cap);
    if (!m->rec)
        return -ENOMEM;
    int rc = ledger_record_encode(&r, m->rec, cap, &m->rec_len);
    if (rc == 0 && m->rec_len > LEDGER_MAX_RECORD)
        rc = -EMSGSIZE; /* refused alone, not failing its whole batch */
    if (rc < 0) {
        free(m->rec);
        m->rec = NULL;
        return rc;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* verification job */

static void lp__advance(struct bk_lp *lp, struct lp_client *lc);
static void lp__msg_free(struct bk_lp *lp, struct lp_msg *m);

/* Worker thread: the verdicts of a job's messages, and the records of
 * the verified ones. */
static void lp__vjob_work(struct lmq_work *w)
{
    struct lp_vjob *j = (struct lp_vjob *)((char *)w - offsetof(struct lp_vjob, work));
    struct bk_lp *lp = j->lp;
    uint64_t skew = (uint64_t)lp->cfg->ledger_clock_skew * 1000u;
    for (size_t i = 0; i < j->n; i++) {
        struct lp_msg *m = j->m[i];
        j->req[i] = (struct verify_req){.env = m->payload,
                                        .len = m->plen,
                                        .now_ms = m->now_ms,
                                        .skew_ms = m->pol->late_uploads ? UINT64_MAX : skew,
                                        .expect_device = m->has_expect ? m->expect : NULL};
    }
    verify_prepare_many(lp->reg, j->req, j->n, j->vp);
    verify_signatures(j->vp, j->n);
    for (size_t i = 0; i < j->n; i++) {
        struct lp_msg *m = j->m[i];
        const struct verify_info *vi = &j->vp[i].info;
        int res = j->vp[i].res;
        if (vi->device_id[0])
            memcpy(m->device, vi->device_id, sizeof m->device);
        if (res == VERIFY_OK) {
            m->seq = vi->seq;
            int rc = lp__build(m, vi);
            if (rc < 0)
                res = rc == -EMSGSIZE ? LP_TOO_LARGE : VERIFY_REGISTRY;
        }
        m->vres = res;
    }
}

/* M's verification is over (vres set): READY or REFUSED, then on. */
static void lp__verified(struct bk_lp *lp, struct lp_msg *m)
{
    m->state = m->vres == VERIFY_OK ? LP_READY : LP_REFUSED;
    if (!m->lc) {
        /* Publisher gone before its message was proposed: dropped. */
        lp__msg_free(lp, m);
        return;
    }
    lp__advance(lp, m->lc);
}

static void lp__vjob_done(struct lmq_work *w);

/* Gives the waiting signed messages to the free jobs; after bk_lp_stop
 * (no more jobs: the pool may be going) refuses them instead. */
static void lp__vkick(struct bk_lp *lp)
{
    unsigned nj = lp->pool ? lmq_workpool_threads(lp->pool) : 0;
    if (nj > LP_VJOBS_MAX)
        nj = LP_VJOBS_MAX;
    while (lp->vq_head) {
        struct lp_vjob *j = NULL;
        bool busy = false;
        for (unsigned k = 0; k < nj && !lp->stopped; k++) {
            if (lp->vjob_busy[k]) {
                busy = true;
                continue;
            }
            if (!lp->vjobs[k]) {
                lp->vjobs[k] = malloc(sizeof *lp->vjobs[k]);
                if (!lp->vjobs[k])
                    continue;
                lp->vjobs[k]->lp = lp;
                lp->vjobs[k]->slot = k;
                lp->vjobs[k]->work.work = lp__vjob_work;
                lp->vjobs[k]->work.done = lp__vjob_done;
            }
            j = lp->vjobs[k];
            break;
        }
        if (!j && busy)
            return; /* the next job to finish takes them */
        if (!j) {
            /* Stopped, or no memory for any job: refused. */
            while (lp->vq_head) {
                struct lp_msg *m = lp->vq_head;
                lp->vq_head = m->vnext;
                m->vnext = NULL;
                m->vres = LP_UNAVAILABLE;
                lp__verified(lp, m);
            }
            lp->vq_tail = NULL;
            return;
        }
        j->n = 0;
        while (lp->vq_head && j->n < ED25519_BATCH_MAX) {
            struct lp_msg *m = lp->vq_head;
            lp->vq_head = m->vnext;
            m->vnext = NULL;
            j->m[j->n++] = m;
        }
        if (!lp->vq_head)
            lp->vq_tail = NULL;
        lp->vjob_busy[j->slot] = true;
        lp->n_vjobs++;
        lp->n_vjob_msgs += j->n;
        if (j->n > lp->max_vjob)
            lp->max_vjob = j->n;
        lmq_workpool_submit(lp->pool, &j->work);
    }
}

static void lp__vjob_done(struct lmq_work *w)
{
    struct lp_vjob *j = (struct lp_vjob *)((char *)w - offsetof(struct lp_vjob, work));
    struct bk_lp *lp = j->lp;
    size_t n = j->n;
    struct lp_msg *ms[ED25519_BATCH_MAX];
    memcpy(ms, j->m, n * sizeof ms[0]);
    j->n = 0;
    lp->vjob_busy[j->slot] = false;
    lp__vkick(lp); /* the workers first */
    /* One message at a time, as each was verified alone: the job's later
     * messages are still VERIFYING, so no advance frees them before their
     * turn (a FIFO stops at a VERIFYING message). */
    for (size_t i = 0; i < n; i++)
        lp__verified(lp, ms[i]);
}

/* ------------------------------------------------------------------ */
/* queue accounting and flow control */

static bool lp__full(const struct bk_lp *lp)
{
    return lp->q_msgs >= lp->cfg->ledger_queue_messages ||
           lp->q_bytes >= lp->cfg->ledger_queue_bytes;
}

static bool lp__low(const struct bk_lp *lp)
{
    return lp->q_msgs <= (uint64_t)lp->cfg->ledger_queue_messages * 3 / 4 &&
           lp->q_bytes <= lp->cfg->ledger_queue_bytes * 3 / 4;
}

static void lp__resume_all(struct bk_lp *lp)
{
    struct lp_client *l = lp->paused;
    lp->paused = NULL;
    lp->n_paused = 0;
    while (l) {
        struct lp_client *next = l->paused_next;
        l->paused_next = NULL;
        l->paused = false;
        if (l->c)
            bk_lp_pause(l->c, false);
        l = next;
    }
}

static void lp__msg_free(struct bk_lp *lp, struct lp_msg *m)
{
    lp->q_msgs--;
    lp->q_bytes -= m->cost;
    free(m->rec);
    free(m);
    if (lp->paused && lp__low(lp))
        lp__resume_all(lp);
}

/* ------------------------------------------------------------------ */
/* answers (loop thread) */

static void lp__log_refusal(struct bk_lp *lp, struct lp_msg *m, const char *reason)
{
    size_t n;
    const char *cid = m->c ? bk_client_id(m->c, &n) : m->client_id;
    LMQ_NOTICE("ledger: refused PUBLISH from client %s (device %s) on %.*s: %s", cid,
               m->device[0] ? m->device : "-", (int)m->tlen, m->topic, reason);
    lp->n_refused++;
    if (m->vres > 0 && m->vres < (int)(sizeof lp->refused / sizeof lp->refused[0]))
        lp->refused[m->vres]++;
}

static void lp__refuse(struct bk_lp *lp, struct lp_msg *m, uint8_t code, const char *reason)
{
    lp__log_refusal(lp, m, reason);
    if (!m->c)
        return;
    if (bk_client_proto(m->c) != MQTT_V5) {
        /* MQTT 3.1.1 has no negative acknowledgement. */
        bk_lp_close(m->c, code, reason);
        return;
    }
    if (m->qos > 0)
        bk_lp_ack(m->c, m->qos == 1 ? MQTT_PUBACK : MQTT_PUBREC, m->pkid, code, reason);
}

static void lp__ack(struct lp_msg *m)
{
    if (!m->c || m->qos == 0)
        return;
    if (m->qos == 2 && bk_lp_qos2_add(m->c, m->pkid) < 0) {
        bk_lp_close(m->c, 0x80, "out of memory");
        return;
    }
    bk_lp_ack(m->c, m->qos == 1 ? MQTT_PUBACK : MQTT_PUBREC, m->pkid, 0, NULL);
}

static void lp__route(struct bk_lp *lp, struct lp_msg *m)
{
    char idx[24];
    int il = snprintf(idx, sizeof idx, "%" PRIu64, m->item.index);
    uint8_t small[512];
    size_t need = (size_t)m->props_len + 16 + 12 + (size_t)il;
    uint8_t *props = need <= sizeof small ? small : malloc(need);
    if (!props) {
        LMQ_ERROR("ledger: out of memory routing record %" PRIu64, m->item.index);
        return;
    }
    if (m->props_len)
        memcpy(props, m->props, m->props_len);
    int n = mqtt_prop_encode_user(props + m->props_len, need - m->props_len, "ledger-index", 12,
                                  idx, (size_t)il);
    size_t plen = m->props_len + (n > 0 ? (size_t)n : 0);
    bk_lp_route(lp->b, m->c, m->topic, m->tlen, m->payload, m->plen, props, plen, m->qos, m->retain,
                m->expiry_at);
    if (props != small)
        free(props);
}

/* Answers M (at the head of its FIFO, or a submit). */
static void lp__answer(struct bk_lp *lp, struct lp_msg *m)
{
    if (m->kind == LP_SUBMIT) {
        int st = 0;
        char reason[160] = "";
        if (m->item.status == LMQ_BATCH_ERR_IO) {
            st = BK_SUBMIT_ERR_IO;
            snprintf(reason, sizeof reason, "ledger append failed");
        } else if (m->item.status == LMQ_BATCH_ERR_NOT_LEADER) {
            st = BK_SUBMIT_ERR_REFUSED;
            snprintf(reason, sizeof reason, "not the leader");
            if (lp->ops->refusal && lp->bt)
                lp->ops->refusal(lp->bt, reason, sizeof reason);
        } else if (m->item.status < 0) {
            st = BK_SUBMIT_ERR_REFUSED;
            snprintf(reason, sizeof reason, "%s",
                     m->apply_err <= -2400 && m->apply_err >= -2499
                         ? registry_strerror(m->apply_err)
                         : ledger_record_strerror(m->apply_err));
        }
        if (m->cb)
            m->cb(m->cb_ctx, st, m->item.index, reason);
        return;
    }
    if (m->state == LP_REFUSED) {
        if (m->vres == LP_UNAVAILABLE)
            lp__refuse(lp, m, 0x80, "ledger unavailable");
        else if (m->vres == LP_TOO_LARGE)
            lp__refuse(lp, m, 0x83, "ledger record too large");
        else
            lp__refuse(lp, m, verify_reason_code(m->vres), verify_strerror(m->vres));
        return;
    }
    switch (m->item.status) {
    case LMQ_BATCH_APPENDED:
        lp__ack(m);
        lp__route(lp, m);
        break;
    case LMQ_BATCH_DUPLICATE:
        /* A resend of a committed message: its ack, not a second record
         * nor a second delivery. */
        lp->n_dups++;
        lp__ack(m);
        break;
    case LMQ_BATCH_ERR_NOT_LEADER: {
        char why[200] = "not the leader";
        if (lp->ops->refusal && lp->bt)
            lp->ops->refusal(lp->bt, why, sizeof why);
        m->vres = LP_UNAVAILABLE;
        lp__refuse(lp, m, 0x97, why);
        break;
    }
    case LMQ_BATCH_ERR_IO:
        lp->n_io_failed++;
        LMQ_ERROR("ledger: record of client %s on %.*s not committed (ledger failure); closing",
                  m->client_id, (int)m->tlen, m->topic);
        if (m->c)
            bk_lp_close(m->c, 0x80, "ledger failure");
        break;
    default:
        m->vres = -m->item.status;
        lp__refuse(lp, m, verify_reason_code(m->vres), verify_strerror(m->vres));
        break;
    }
}

/* Proposes what can be proposed, answers what can be answered. */
static void lp__advance(struct bk_lp *lp, struct lp_client *lc)
{
    while (lc->prop) {
        struct lp_msg *m = lc->prop;
        if (m->state == LP_VERIFYING)
            break;
        if (m->state == LP_READY) {
            if (lp->stopped || !lp->bt) {
                m->state = LP_REFUSED;
                m->vres = LP_UNAVAILABLE;
            } else {
                m->state = LP_PROPOSED;
                m->item.rec = m->rec;
                m->item.len = m->rec_len;
                m->item.flags = m->dup ? LMQ_BATCH_F_DUP : 0;
                m->item.arg = m;
                lp->ops->propose(lp->bt, &m->item);
            }
        }
        lc->prop = m->next;
    }
    while (lc->head && (lc->head->state == LP_DONE || lc->head->state == LP_REFUSED)) {
        struct lp_msg *m = lc->head;
        lc->head = m->next;
        if (!lc->head)
            lc->tail = NULL;
        if (m->qos > 0)
            lc->n_acked--;
        lp__answer(lp, m);
        lp__msg_free(lp, m);
    }
}

/* ------------------------------------------------------------------ */
/* commit results (loop thread) */

static void lp__event(struct bk_lp *lp, struct lmq_batch *bb)
{
    if (bb->n_appended == 0 || bb->status != 0)
        return;
    struct bk_commit_record *recs = calloc(bb->n_appended, sizeof *recs);
    if (!recs) {
        LMQ_ERROR("ledger: out of memory for the commit event of block %" PRIu64,
                  bb->commit.height);
        return;
    }
    size_t k = 0;
    for (struct lmq_batch_item *it = bb->items; it; it = it->next) {
        if (it->status != LMQ_BATCH_APPENDED || k == bb->n_appended)
            continue;
        struct lp_msg *m = it->arg;
        recs[k].index = it->index;
        recs[k].record = m->rec;
        recs[k].record_len = m->rec_len;
        memcpy(recs[k].leaf_hash, m->leaf, 32);
        recs[k].client_id = m->client_id ? m->client_id : "";
        recs[k].kind = m->rec_len > 2 ? m->rec[2] : 0; /* a1/a8.. 00 <kind> */
        k++;
    }
    struct bk_commit_event ev;
    memset(&ev, 0, sizeof ev);
    ev.height = bb->commit.height;
    memcpy(ev.block_header, bb->header, sizeof ev.block_header);
    memcpy(ev.block_hash, bb->commit.block_hash, 32);
    ev.checkpoint = bb->checkpoint ? bb->checkpoint : "";
    ev.checkpoint_len = bb->checkpoint_len;
    ev.tree_size = bb->commit.tree_size;
    memcpy(ev.root, bb->commit.root, 32);
    ev.first_index = bb->commit.first_index;
    ev.recs = recs;
    ev.n_recs = k;
    bk_ledger_committed(lp->b, &ev);
    free(recs);
}

static void lp__batch(struct bk_lp *lp, struct lmq_batch *bb)
{
    if (bb->n_appended && bb->status == 0) {
        lp->n_batches++;
        lp->n_records += bb->n_appended;
        lp->tree_size = bb->commit.tree_size;
        lp->last_batch = bb->n_appended;
        if (bb->n_appended > lp->max_batch)
            lp->max_batch = bb->n_appended;
        lp->commit_us_last = bb->commit_us;
        if (bb->commit_us > lp->commit_us_max)
            lp->commit_us_max = bb->commit_us;
        lp->latency_us_last = bb->latency_us;
        if (bb->latency_us > lp->latency_us_max)
            lp->latency_us_max = bb->latency_us;
    }
    for (struct lmq_batch_item *it = bb->items; it; it = it->next) {
        struct lp_msg *m = it->arg;
        m->state = LP_DONE;
        m->in_batch = true;
    }
    /* Answers: per publisher in FIFO order (every message before one of
     * this batch is final by now: proposed earlier, or refused). The
     * batch's own messages stay allocated until the event was given. */
    for (struct lmq_batch_item *it = bb->items; it; it = it->next) {
        struct lp_msg *m = it->arg;
        if (m->answered)
            continue;
        if (m->kind == LP_SUBMIT || !m->lc) {
            m->answered = true;
            if (m->kind == LP_SUBMIT)
                lp__answer(lp, m);
            else if (m->item.status == LMQ_BATCH_APPENDED)
                lp__route(lp, m); /* publisher gone: delivered, no ack */
            continue;
        }
        struct lp_client *lc = m->lc;
        while (lc->head && (lc->head->state == LP_DONE || lc->head->state == LP_REFUSED)) {
            struct lp_msg *h = lc->head;
            lc->head = h->next;
            if (!lc->head)
                lc->tail = NULL;
            if (lc->prop == h)
                lc->prop = h->next;
            if (h->qos > 0)
                lc->n_acked--;
            h->answered = true;
            lp__answer(lp, h);
            if (!h->in_batch)
                lp__msg_free(lp, h); /* a refusal waiting behind this batch's messages */
        }
    }
    lp__event(lp, bb);
    struct lmq_batch_item *it = bb->items;
    while (it) {
        struct lmq_batch_item *next = it->next;
        lp__msg_free(lp, it->arg);
        it = next;
    }
}

static void lp__poll(struct bk_lp *lp)
{
    struct lmq_batch *bb = lp->ops->poll(lp->bt);
    while (bb) {
        struct lmq_batch *next = bb->next;
        lp__batch(lp, bb);
        lp->ops->batch_free(bb);
        bb = next;
    }
}

static void lp__wake_done(struct lmq_work *w)
{
    struct bk_lp *lp = (struct bk_lp *)((char *)w - offsetof(struct bk_lp, wake));
    atomic_store(&lp->wake_posted, false);
    if (lp->bt)
        lp__poll(lp);
}

/* Committer thread: results are ready. */
static void lp__notify(void *ctx)
{
    struct bk_lp *lp = ctx;
    if (!atomic_exchange(&lp->wake_posted, true))
        lmq_workpool_post(lp->pool, &lp->wake);
}

/* ------------------------------------------------------------------ */
/* the state machine (committer thread) */

static uint32_t lp__hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static void lp__dev_clear(struct bk_lp *lp)
{
    if (lp->devs)
        memset(lp->devs, 0, lp->dev_cap * sizeof *lp->devs);
    lp->dev_n = 0;
}

/* The device's state as of the records checked so far: from the cache, or
 * from the registry (whose replay slots are current for every device not
 * in the cache: the cache is only cleared right after a registry_sync).
 * NULL: unknown device or no memory. */
static struct lp_dev *lp__dev(struct bk_lp *lp, struct ledger *l, const char *id)
{
    if (lp->dev_n * 10 >= lp->dev_cap * 7) {
        if (lp->dev_cap >= LP_DEV_CAP_MAX) {
            /* Full: make the registry current, start over. */
            registry_sync(lp->reg, l, NULL, NULL, NULL);
            lp__dev_clear(lp);
        } else {
            size_t ncap = lp->dev_cap ? lp->dev_cap * 2 : 1024;
            struct lp_dev *nd = calloc(ncap, sizeof *nd);
            if (!nd)
                return NULL;
            for (size_t i = 0; i < lp->dev_cap; i++) {
                if (!lp->devs[i].id[0])
                    continue;
                size_t j = lp__hash(lp->devs[i].id) & (ncap - 1);
                while (nd[j].id[0])
                    j = (j + 1) & (ncap - 1);
                nd[j] = lp->devs[i];
            }
            free(lp->devs);
            lp->devs = nd;
            lp->dev_cap = ncap;
        }
    }
    size_t mask = lp->dev_cap - 1;
    size_t j = lp__hash(id) & mask;
    while (lp->devs[j].id[0]) {
        if (strcmp(lp->devs[j].id, id) == 0)
            return &lp->devs[j];
        j = (j + 1) & mask;
    }
    if (!lp->scratch && !(lp->scratch = malloc(sizeof *lp->scratch)))
        return NULL;
    if (registry_lookup(lp->reg, id, strlen(id), lp->scratch) < 0)
        return NULL;
    struct lp_dev *d = &lp->devs[j];
    memset(d, 0, sizeof *d);
    memcpy(d->id, id, sizeof d->id);
    d->active = lp->scratch->status == REGISTRY_ACTIVE;
    d->has_last = lp->scratch->has_last_seq;
    d->last = lp->scratch->last_seq;
    if (d->has_last) {
        d->rseq[0] = d->last;
        d->ridx[0] = lp->scratch->last_seq_index;
        d->ring_n = 1;
        d->ring_pos = 1;
    }
    lp->dev_n++;
    return d;
}

/* Recent attested records (ledger_dup_window of them; 0 = off). */

static uint32_t lp__dk_bucket(const struct bk_lp *lp, const uint8_t key[32])
{
    uint32_t h;
    memcpy(&h, key, sizeof h);
    return h & lp->dk_mask;
}

static int lp__dk_init(struct bk_lp *lp, uint32_t window, uint32_t batch_max)
{
    if (!window)
        return 0;
    uint32_t cap = window + batch_max; /* a whole batch can be pending */
    uint32_t nb = 1;
    while (nb < cap)
        nb <<= 1;
    lp->dk = malloc((size_t)cap * sizeof *lp->dk);
    lp->dk_bucket = malloc((size_t)nb * sizeof *lp->dk_bucket);
    if (!lp->dk || !lp->dk_bucket) {
        free(lp->dk);
        free(lp->dk_bucket);
        lp->dk = NULL;
        lp->dk_bucket = NULL;
        return -ENOMEM;
    }
    memset(lp->dk_bucket, 0xff, (size_t)nb * sizeof *lp->dk_bucket);
    lp->dk_cap = cap;
    lp->dk_mask = nb - 1;
    return 0;
}

static void lp__dk_unlink(struct bk_lp *lp, uint32_t pos)
{
    int32_t *pp = &lp->dk_bucket[lp__dk_bucket(lp, lp->dk[pos].key)];
    while (*pp >= 0 && (uint32_t)*pp != pos)
        pp = &lp->dk[*pp].next;
    if (*pp >= 0)
        *pp = lp->dk[pos].next;
}

/* Remembers KEY (the oldest one goes when the ring is full). */
static void lp__dk_add(struct bk_lp *lp, const uint8_t key[32], uint64_t index)
{
    uint32_t pos = lp->dk_w;
    if (lp->dk_n == lp->dk_cap)
        lp__dk_unlink(lp, pos);
    else
        lp->dk_n++;
    memcpy(lp->dk[pos].key, key, 32);
    lp->dk[pos].index = index;
    lp->dk[pos].pos = lp->seg_n;
    uint32_t b = lp__dk_bucket(lp, key);
    lp->dk[pos].next = lp->dk_bucket[b];
    lp->dk_bucket[b] = (int32_t)pos;
    lp->dk_w = (pos + 1) % lp->dk_cap;
}

/* The newest entry with KEY, or NULL. */
static struct lp_dk *lp__dk_find(struct bk_lp *lp, const uint8_t key[32])
{
    for (int32_t p = lp->dk_bucket[lp__dk_bucket(lp, key)]; p >= 0; p = lp->dk[p].next)
        if (memcmp(lp->dk[p].key, key, 32) == 0)
            return &lp->dk[p];
    return NULL;
}

/* The newest entry with KEY that a check of the record at log index AT
 * may answer from (the record-bytes check, identical on every node): a
 * pending one, or one at most ledger_dup_window records back, which is
 * exactly what lp__dk_load finds after a restart. */
static struct lp_dk *lp__dk_find_within(struct bk_lp *lp, const uint8_t key[32], uint64_t at)
{
    struct lp_dk *e = lp__dk_find(lp, key);
    if (e && e->index != LP_DK_PENDING &&
        (e->index >= at || at - e->index > lp->cfg->ledger_dup_window))
        return NULL;
    return e;
}

/* After a batch: the pending entries get their records' indices (FIRST,
 * the batch's first index, plus their place in it), or go if nothing
 * was appended (OK false). */
static void lp__dk_end(struct bk_lp *lp, uint64_t first, bool ok)
{
    if (!lp->dk || !lp->dk_pend)
        return;
    if (ok) {
        uint32_t pos = (lp->dk_w + lp->dk_cap - lp->dk_pend) % lp->dk_cap;
        for (; lp->dk_pend; lp->dk_pend--, pos = (pos + 1) % lp->dk_cap)
            lp->dk[pos].index = first + lp->dk[pos].pos;
        return;
    }
    while (lp->dk_pend) {
        lp->dk_w = (lp->dk_w + lp->dk_cap - 1) % lp->dk_cap;
        lp__dk_unlink(lp, lp->dk_w);
        lp->dk_n--;
        lp->dk_pend--;
    }
}

struct lp__dk_scan {
    struct bk_lp *lp;
    uint64_t n;
};

static int lp__dk_scan_one(void *ctx, uint64_t index, const uint8_t *p, size_t len)
{
    struct lp__dk_scan *sc = ctx;
    struct ledger_record r;
    if (ledger_record_decode(p, len, &r) < 0 || r.kind != LEDGER_KIND_MESSAGE ||
        r.msg.has_device_seq || r.msg.cose.ptr || !r.msg.payload.ptr)
        return 0;
    uint8_t key[32];
    lp__dkey((const char *)r.msg.client_id.ptr, r.msg.client_id.len, (const char *)r.msg.topic.ptr,
             r.msg.topic.len, r.msg.payload.ptr, r.msg.payload.len, key);
    lp__dk_add(sc->lp, key, index);
    sc->n++;
    return 0;
}

/* At start: the attested records among the last ledger_dup_window of the
 * log (not the private ones: their payload is not in the record). */
static void lp__dk_load(struct bk_lp *lp, uint32_t window)
{
    uint64_t size = ledger_size(lp->ledger);
    uint64_t from = size > window ? size - window : 0;
    struct lp__dk_scan sc = {.lp = lp};
    int rc = ledger_scan(lp->ledger, from, size, lp__dk_scan_one, &sc);
    if (rc != 0)
        LMQ_WARN("ledger: reading the last %" PRIu64 " records for the DUP window stopped: %s",
                 size - from, ledger_strerror(rc));
    if (sc.n)
        LMQ_INFO("ledger: %" PRIu64 " attested records of the last %" PRIu64
                 " remembered for DUP resends",
                 sc.n, size - from);
}

static int lp__fsm_check_item(struct bk_lp *lp, struct ledger *l, struct lmq_batch_item *it,
                              bool first, uint64_t *dup_index)
{
    struct lp_msg *m = it->arg;
    if (m->kind == LP_ATTESTED) {
        if (!lp->dk)
            return LMQ_FSM_APPEND;
        if (m->dup) {
            /* A resend whose first copy is committed (its ack was lost):
             * the existing index. Only DUP=1 messages: a repeated reading
             * sent anew is recorded again. */
            struct lp_dk *e = lp__dk_find(lp, m->dkey);
            if (e && e->index != LP_DK_PENDING) {
                *dup_index = e->index;
                return LMQ_FSM_DUPLICATE;
            }
            if (e && !first)
                return LMQ_FSM_BARRIER; /* its first copy is in this batch */
        }
        lp__dk_add(lp, m->dkey, LP_DK_PENDING);
        lp->dk_pend++;
        return LMQ_FSM_APPEND;
    }
    if (m->kind == LP_SUBMIT) {
        struct ledger_record rec;
        int rc = ledger_record_decode(m->rec, m->rec_len, &rec);
        if (rc < 0) {
            m->apply_err = rc;
            return -VERIFY_REGISTRY;
        }
        if (rec.kind < LEDGER_KIND_DEVICE_REGISTRATION || rec.kind > LEDGER_KIND_KEY_ROTATION)
            return LMQ_FSM_APPEND;
        if (lp->reg_in_batch && !first)
            return LMQ_FSM_BARRIER;
        rc = lp->reg ? registry_check(lp->reg, m->rec, m->rec_len) : REGISTRY_ERR_DB;
        if (rc < 0) {
            m->apply_err = rc;
            return -VERIFY_REGISTRY;
        }
        lp->reg_in_batch = true;
        return LMQ_FSM_APPEND;
    }
    /* Signed: revocation and sequence at the ordering point. */
    struct lp_dev *d = lp__dev(lp, l, m->device);
    if (!d)
        return -VERIFY_UNKNOWN;
    if (!d->active)
        return -VERIFY_REVOKED;
    if (verify_seq(d->has_last, d->last, m->seq) != VERIFY_OK) {
        if (m->dup) {
            for (unsigned i = 0; i < d->ring_n; i++)
                if (d->rseq[i] == m->seq) {
                    *dup_index = d->ridx[i];
                    return LMQ_FSM_DUPLICATE;
                }
        }
        return -VERIFY_REPLAY;
    }
    d->has_last = true;
    d->last = m->seq;
    return LMQ_FSM_APPEND;
}

static int lp__fsm_check(void *ctx, struct ledger *l, struct lmq_batch_item *it, bool first,
                         uint64_t *dup_index)
{
    struct bk_lp *lp = ctx;
    int rc = lp__fsm_check_item(lp, l, it, first, dup_index);
    if (rc == LMQ_FSM_APPEND)
        lp->seg_n++;
    return rc;
}

/* begin_records: the envelopes of an entry's signed records verified
 * ED25519_BATCH_MAX at a time (verify_prepare_many + verify_signatures,
 * whose results are verify_envelope's for each envelope alone), against
 * the registry as it is now; lp__check_record uses a verdict while no
 * registry record of the entry has been applied (lp__fsm_end_records
 * drops them), else verifies alone. Without memory: no verdicts. */
static void lp__fsm_begin_records(void *ctx, struct ledger *l, const struct ledger_record_buf *recs,
                                  size_t n)
{
    struct bk_lp *lp = ctx;
    (void)l;
    lp->pre_n = lp->pre_at = 0;
    if (!lp->reg || n == 0)
        return;
    if (!lp->pre_vp) {
        lp->pre_req = malloc(ED25519_BATCH_MAX * sizeof *lp->pre_req);
        lp->pre_vp = malloc(ED25519_BATCH_MAX * sizeof *lp->pre_vp);
        if (!lp->pre_req || !lp->pre_vp) {
            free(lp->pre_req);
            free(lp->pre_vp);
            lp->pre_req = NULL;
            lp->pre_vp = NULL;
            return;
        }
    }
    if (n > lp->pre_cap) {
        struct lp_pre *np = realloc(lp->pre, n * sizeof *np);
        if (!np)
            return;
        lp->pre = np;
        lp->pre_cap = n;
    }
    size_t k = 0, idx[ED25519_BATCH_MAX];
    for (size_t i = 0; i <= n; i++) {
        struct ledger_record r;
        if (i < n && ledger_record_decode(recs[i].data, recs[i].len, &r) == 0 &&
            r.kind == LEDGER_KIND_MESSAGE && r.msg.has_device_seq && r.msg.cose.ptr) {
            lp->pre_req[k] = (struct verify_req){.env = r.msg.cose.ptr,
                                                 .len = r.msg.cose.len,
                                                 .now_ms = r.msg.broker_time_ms,
                                                 .skew_ms = UINT64_MAX};
            idx[k++] = i;
        }
        if (k == ED25519_BATCH_MAX || (i == n && k)) {
            verify_prepare_many(lp->reg, lp->pre_req, k, lp->pre_vp);
            verify_signatures(lp->pre_vp, k);
            for (size_t j = 0; j < k; j++) {
                struct lp_pre *p = &lp->pre[lp->pre_n++];
                p->rec = recs[idx[j]].data;
                p->res = lp->pre_vp[j].res;
                p->vi = lp->pre_vp[j].info;
            }
            k = 0;
        }
    }
}

/* The verdict begin_records left for REC, or NULL (records are checked in
 * order; the first of a block after a BARRIER is checked twice). */
static const struct lp_pre *lp__pre_find(struct bk_lp *lp, const uint8_t *rec)
{
    for (size_t i = lp->pre_at ? lp->pre_at - 1 : 0; i < lp->pre_n; i++)
        if (lp->pre[i].rec == rec) {
            lp->pre_at = i + 1;
            return &lp->pre[i];
        }
    return NULL;
}

/* The record-bytes check (check_record: a cluster's apply, on every node
 * in log order; docs/CLUSTER.md "Re-validation"). The same rules as
 * lp__fsm_check_item, decided from the record and its flags alone:
 *  - a device envelope is verified again (verify_envelope without the
 *    skew check: the ingress node judged the clock, the record carries the
 *    time it accepted) and must say what the record says (device,
 *    sequence, time, payload); a private signed record carries no
 *    envelope, so only its device's registry state is checked;
 *  - the sequence rule and revocation against this node's registry;
 *  - a registry record: registry_check; it ends its batch (BARRIER), so
 *    each record is checked against exactly the log before it (which
 *    also makes the replay after a crash between append and
 *    ledger-applied decide as the first run did);
 *  - an attested record with DUP: the window of recent attested records,
 *    bounded by log position (lp__dk_find_within), so every node answers
 *    alike whatever it remembered before a restart. */
static int lp__check_record(struct bk_lp *lp, struct ledger *l, const uint8_t *rec, size_t len,
                            uint8_t flags, bool first, uint64_t *dup_index)
{
    struct ledger_record r;
    int rc = ledger_record_decode(rec, len, &r);
    if (rc < 0 || !r.known)
        return -VERIFY_MALFORMED;
    if (lp->reg_in_batch && !first)
        return LMQ_FSM_BARRIER; /* a registry record ends its batch: what follows sees it */
    if (r.kind >= LEDGER_KIND_DEVICE_REGISTRATION && r.kind <= LEDGER_KIND_KEY_ROTATION) {
        rc = lp->reg ? registry_check(lp->reg, rec, len) : REGISTRY_ERR_DB;
        if (rc < 0)
            return rc;
        lp->reg_in_batch = true;
        return LMQ_FSM_APPEND;
    }
    if (r.kind != LEDGER_KIND_MESSAGE)
        return LMQ_FSM_APPEND;
    if (!r.msg.has_device_seq) {
        /* attested */
        if (!lp->dk || !r.msg.payload.ptr)
            return LMQ_FSM_APPEND;
        if (lp->dk_pend >= lp->dk_cap - lp->cfg->ledger_dup_window && !first)
            return LMQ_FSM_BARRIER; /* the window holds one batch of pending records */
        uint8_t key[32];
        lp__dkey((const char *)r.msg.client_id.ptr, r.msg.client_id.len,
                 (const char *)r.msg.topic.ptr, r.msg.topic.len, r.msg.payload.ptr,
                 r.msg.payload.len, key);
        if (flags & LMQ_BATCH_F_DUP) {
            struct lp_dk *e = lp__dk_find_within(lp, key, ledger_size(l) + lp->seg_n);
            if (e && e->index != LP_DK_PENDING) {
                *dup_index = e->index;
                return LMQ_FSM_DUPLICATE;
            }
            if (e && !first)
                return LMQ_FSM_BARRIER; /* its first copy is in this batch */
        }
        lp__dk_add(lp, key, LP_DK_PENDING);
        lp->dk_pend++;
        return LMQ_FSM_APPEND;
    }
    /* signed */
    if (!lp->reg)
        return -VERIFY_REGISTRY;
    char dev[DEVICE_ID_LEN + 1];
    if (r.msg.publisher.len != DEVICE_ID_LEN)
        return -VERIFY_MALFORMED;
    memcpy(dev, r.msg.publisher.ptr, DEVICE_ID_LEN);
    dev[DEVICE_ID_LEN] = '\0';
    if (r.msg.cose.ptr) {
        struct verify_info vi;
        const struct lp_pre *pre = lp__pre_find(lp, rec);
        int res = pre ? pre->res
                      : verify_envelope(lp->reg, r.msg.cose.ptr, r.msg.cose.len,
                                        r.msg.broker_time_ms, UINT64_MAX, NULL, &vi);
        if (pre)
            vi = pre->vi;
        if (res != VERIFY_OK)
            return -res;
        const uint8_t *pl = vi.cose.payload;
        size_t pll = vi.cose.payload_len;
        if (strcmp(vi.device_id, dev) != 0 || vi.seq != r.msg.device_seq ||
            !r.msg.has_device_time || vi.time_ms != r.msg.device_time_ms || !r.msg.payload.ptr ||
            r.msg.payload.len != pll || (pll && memcmp(r.msg.payload.ptr, pl, pll) != 0))
            return -VERIFY_MALFORMED; /* the record does not say what its envelope says */
    }
    struct lp_dev *d = lp__dev(lp, l, dev);
    if (!d)
        return -VERIFY_UNKNOWN;
    if (!d->active)
        return -VERIFY_REVOKED;
    if (verify_seq(d->has_last, d->last, r.msg.device_seq) != VERIFY_OK) {
        if (flags & LMQ_BATCH_F_DUP) {
            for (unsigned i = 0; i < d->ring_n; i++)
                if (d->rseq[i] == r.msg.device_seq) {
                    *dup_index = d->ridx[i];
                    return LMQ_FSM_DUPLICATE;
                }
        }
        return -VERIFY_REPLAY;
    }
    d->has_last = true;
    d->last = r.msg.device_seq;
    return LMQ_FSM_APPEND;
}

static int lp__fsm_check_record(void *ctx, struct ledger *l, const uint8_t *rec, size_t len,
                                uint8_t flags, bool first, uint64_t *dup_index)
{
    struct bk_lp *lp = ctx;
    int rc = lp__check_record(lp, l, rec, len, flags, first, dup_index);
    if (rc == LMQ_FSM_APPEND)
        lp->seg_n++;
    return rc;
}

/* A signed record appended at INDEX: its (sequence, index) in the
 * device's ring, for DUP resends. */
static void lp__ring_add(struct bk_lp *lp, struct ledger *l, const char *device, uint64_t seq,
                         uint64_t index)
{
    struct lp_dev *d = lp__dev(lp, l, device);
    if (!d)
        return;
    d->rseq[d->ring_pos] = seq;
    d->ridx[d->ring_pos] = index;
    d->ring_pos = (uint8_t)((d->ring_pos + 1) % LP_RING);
    if (d->ring_n < LP_RING)
        d->ring_n++;
}

/* After a batch of registry records (or a failed one): lookups (workers)
 * must see new, revoked or rotated devices before any later message is
 * verified, and the device cache starts again from the registry. */
static void lp__reg_sync(struct bk_lp *lp, struct ledger *l, uint64_t height)
{
    int rc = registry_sync(lp->reg, l, NULL, NULL, NULL);
    if (rc < 0)
        LMQ_ERROR("ledger: registry sync after block %" PRIu64 " failed: %s", height,
                  registry_strerror(rc));
    lp__dev_clear(lp);
}

static void lp__fsm_end_records(void *ctx, struct ledger *l, const struct ledger_record_buf *recs,
                                size_t n, const struct ledger_commit *commit, bool failed)
{
    struct bk_lp *lp = ctx;
    bool ok = !failed && commit;
    lp__dk_end(lp, ok ? commit->first_index : 0, ok);
    lp->seg_n = 0;
    if (failed && lp->reg) {
        /* the cache holds tentative sequence numbers of records that are
         * not in the log: back to the registry (synced first, so it also
         * holds what earlier batches appended) */
        lp__reg_sync(lp, l, 0);
    } else if (ok) {
        for (size_t i = 0; i < n; i++) {
            struct ledger_record r;
            if (ledger_record_decode(recs[i].data, recs[i].len, &r) < 0 ||
                r.kind != LEDGER_KIND_MESSAGE || !r.msg.has_device_seq ||
                r.msg.publisher.len != DEVICE_ID_LEN)
                continue;
            char dev[DEVICE_ID_LEN + 1];
            memcpy(dev, r.msg.publisher.ptr, DEVICE_ID_LEN);
            dev[DEVICE_ID_LEN] = '\0';
            lp__ring_add(lp, l, dev, r.msg.device_seq, commit->first_index + i);
        }
        if (lp->reg_in_batch && lp->reg)
            lp__reg_sync(lp, l, commit->height);
    }
    if (lp->reg_in_batch || failed)
        lp->pre_n = 0; /* judged against a registry that has changed since */
    lp->reg_in_batch = false;
}

/* The leaf hash of M's record, for the commit event. */
static void lp__leaf(struct lp_msg *m)
{
    uint8_t pre = 0x00;
    const void *parts[2] = {&pre, m->rec};
    size_t lens[2] = {1, m->rec_len};
    crypto_sha256_parts(parts, lens, 2, m->leaf);
}

static void lp__fsm_items_done(void *ctx, struct lmq_batch_item *const *items, size_t n)
{
    (void)ctx;
    for (size_t i = 0; i < n; i++) {
        struct lp_msg *m = items[i]->arg;
        int st = items[i]->status;
        if (st == LMQ_BATCH_APPENDED)
            lp__leaf(m);
        else if (m->kind == LP_SUBMIT && st < 0 && st != LMQ_BATCH_ERR_IO &&
                 st != LMQ_BATCH_ERR_NOT_LEADER)
            m->apply_err = st; /* a registry (or record) error of lp__check_record */
    }
}

static int lp__fsm_prepare(void *ctx, struct lmq_batch_item *const *items, size_t n)
{
    struct bk_lp *lp = ctx;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += ((struct lp_msg *)items[i]->arg)->has_pe;
    if (!k)
        return 0;
    if (!lp->ps)
        return -EIO;
    struct paystore_entry *e = malloc(k * sizeof *e);
    if (!e)
        return -ENOMEM;
    k = 0;
    for (size_t i = 0; i < n; i++) {
        struct lp_msg *m = items[i]->arg;
        if (m->has_pe)
            e[k++] = m->pe;
    }
    int rc = paystore_put(lp->ps, e, k);
    free(e);
    if (rc < 0)
        LMQ_ERROR("ledger: payload store write failed (%d): the batch is not committed", rc);
    return rc;
}

static void lp__fsm_end(void *ctx, struct ledger *l, struct lmq_batch_item *const *items, size_t n,
                        const struct ledger_commit *commit, bool failed)
{
    struct bk_lp *lp = ctx;
    bool ok = !failed && commit;
    lp__dk_end(lp, ok ? commit->first_index : 0, ok);
    lp->seg_n = 0;
    if (failed) {
        lp__dev_clear(lp);
        lp->reg_in_batch = false;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        struct lp_msg *m = items[i]->arg;
        lp__leaf(m);
        if (m->kind == LP_SIGNED)
            lp__ring_add(lp, l, m->device, m->seq, items[i]->index);
    }
    if (lp->reg_in_batch && commit) {
        /* New, revoked or rotated devices: lookups (workers) must see them
         * before any later message is verified. */
        lp__reg_sync(lp, l, commit->height);
    }
    lp->reg_in_batch = false;
}

/* ------------------------------------------------------------------ */
/* PUBLISH */

static struct lp_client *lp__client(struct lmq_client *c)
{
    struct lp_client *lc = bk_client_lp(c);
    if (!lc) {
        lc = calloc(1, sizeof *lc);
        if (!lc)
            return NULL;
        lc->c = c;
        bk_client_set_lp(c, lc);
    }
    return lc;
}

static struct lp_msg *lp__msg_new(struct bk_lp *lp, const char *cid, const char *principal,
                                  const char *topic, size_t tlen, const uint8_t *payload,
                                  size_t plen, const uint8_t *props, size_t props_len)
{
    size_t cl = strlen(cid), pl = principal ? strlen(principal) : 0;
    size_t sz = sizeof(struct lp_msg) + cl + 1 + pl + 1 + tlen + 1 + plen + props_len;
    struct lp_msg *m = malloc(sz);
    if (!m)
        return NULL;
    memset(m, 0, sizeof *m);
    m->lp = lp;
    char *p = (char *)m->data;
    m->client_id = p;
    memcpy(p, cid, cl + 1);
    p += cl + 1;
    m->principal = p;
    if (pl)
        memcpy(p, principal, pl);
    p[pl] = '\0';
    p += pl + 1;
    m->topic = p;
    memcpy(p, topic, tlen);
    p[tlen] = '\0';
    p += tlen + 1;
    m->tlen = (uint32_t)tlen;
    m->payload = (uint8_t *)p;
    if (plen)
        memcpy(p, payload, plen);
    p += plen;
    m->plen = (uint32_t)plen;
    m->props = (uint8_t *)p;
    if (props_len)
        memcpy(p, props, props_len);
    m->props_len = (uint32_t)props_len;
    /* What it costs while queued: the message, and its record (about the
     * payload again, twice for signed ones that keep the envelope). */
    m->cost = sz + 2 * plen + 256;
    lp->q_msgs++;
    lp->q_bytes += m->cost;
    return m;
}

int bk_lp_publish(struct bk_lp *lp, struct lmq_client *c, const struct mqtt_publish *p,
                  const uint8_t *props, size_t plen, uint64_t expiry_at)
{
    const struct lmq_ledger_topic *pol = lp__match(lp, p->topic.ptr, p->topic.len);
    if (!pol)
        return 1;
    bool v5 = bk_client_proto(c) == MQTT_V5;
    size_t cidlen;
    const char *cid = bk_client_id(c, &cidlen);
    if (p->qos == 2 && bk_lp_qos2_has(c, p->packet_id)) {
        /* Resent before PUBREL: committed already, its PUBREC again. */
        bk_lp_ack(c, MQTT_PUBREC, p->packet_id, 0, NULL);
        return 0;
    }
    struct lp_client *lc = lp__client(c);
    if (!lc) {
        bk_lp_close(c, 0x80, "out of memory");
        return -1;
    }
    if (p->qos > 0) {
        for (struct lp_msg *m = lc->head; m; m = m->next)
            if (m->qos > 0 && m->pkid == p->packet_id) {
                /* A resend of a message still in the pipeline: its ack
                 * comes when it is committed. */
                return 0;
            }
        uint32_t rm = lp->cfg->max_inflight_messages;
        if (rm > UINT16_MAX)
            rm = UINT16_MAX;
        if (v5 && lc->n_acked + bk_lp_qos2_count(c) >= rm) {
            /* Held acks count as in flight (MQTT 5 Receive Maximum). */
            bk_lp_close(c, 0x93, "receive maximum exceeded");
            return -1;
        }
    }
    bool is_device = false;
    const char *principal = bk_client_principal(c, &is_device);
    struct lp_msg *m = lp__msg_new(lp, cid, principal, p->topic.ptr, p->topic.len, p->payload.ptr,
                                   p->payload.len, props, plen);
    if (!m) {
        bk_lp_close(c, 0x80, "out of memory");
        return -1;
    }
    m->c = c;
    m->lc = lc;
    m->pol = pol;
    m->qos = p->qos;
    m->retain = p->retain;
    m->dup = p->dup;
    m->pkid = p->packet_id;
    m->now_ms = lp__wall_ms();
    m->expiry_at = expiry_at;
    if (is_device && principal && strlen(principal) == DEVICE_ID_LEN) {
        memcpy(m->expect, principal, DEVICE_ID_LEN + 1);
        m->has_expect = true;
    }
    if (lc->tail)
        lc->tail->next = m;
    else
        lc->head = m;
    lc->tail = m;
    if (!lc->prop)
        lc->prop = m;
    if (m->qos > 0)
        lc->n_acked++;
    if (!lp->bt || lp->stopped) {
        m->state = LP_REFUSED;
        m->vres = LP_UNAVAILABLE;
    } else if (pol->mode == LMQ_LEDGER_SIGNED) {
        m->kind = LP_SIGNED;
        m->state = LP_VERIFYING;
        if (lp->vq_tail)
            lp->vq_tail->vnext = m;
        else
            lp->vq_head = m;
        lp->vq_tail = m;
        lp__vkick(lp);
    } else {
        m->kind = LP_ATTESTED;
        int rc = lp__build(m, NULL);
        m->state = rc == 0 ? LP_READY : LP_REFUSED;
        if (rc < 0)
            m->vres = rc == -EMSGSIZE ? LP_TOO_LARGE : LP_UNAVAILABLE;
    }
    lp__advance(lp, lc);
    if (lp__full(lp) && !lc->paused) {
        /* Shock absorber: stop reading this ledgered publisher until the
         * queue is below its low-water mark. */
        lc->paused = true;
        lc->paused_next = lp->paused;
        lp->paused = lc;
        lp->n_paused_total++;
        lp->n_paused++;
        bk_lp_pause(c, true);
    }
    return 0;
}

bool bk_lp_client_paused(const struct lmq_client *c)
{
    const struct lp_client *lc = bk_client_lp(c);
    return lc && lc->paused;
}

void bk_lp_client_gone(struct bk_lp *lp, struct lmq_client *c)
{
    struct lp_client *lc = bk_client_lp(c);
    if (!lp || !lc)
        return;
    bk_client_set_lp(c, NULL);
    if (lc->paused) {
        struct lp_client **pp = &lp->paused;
        while (*pp && *pp != lc)
            pp = &(*pp)->paused_next;
        if (*pp) {
            *pp = lc->paused_next;
            lp->n_paused--;
        }
    }
    struct lp_msg *m = lc->head;
    while (m) {
        struct lp_msg *next = m->next;
        m->c = NULL;
        m->lc = NULL;
        m->next = NULL;
        if (m->state == LP_READY || m->state == LP_REFUSED)
            lp__msg_free(lp, m); /* never proposed: dropped */
        /* VERIFYING: freed by its DONE; PROPOSED/DONE: by its batch */
        m = next;
    }
    free(lc);
}

/* ------------------------------------------------------------------ */
/* submit */

int bk_ledger_submit(struct lmq_broker *b, const uint8_t *rec, size_t len, const char *client_id,
                     bk_submit_cb cb, void *ctx)
{
    struct bk_lp *lp = bk_broker_lp(b);
    if (!lp || !lp->bt || lp->stopped)
        return BK_SUBMIT_ERR_UNAVAILABLE;
    if (lp__full(lp))
        return BK_SUBMIT_ERR_FULL;
    struct ledger_record r;
    if (len == 0 || len > LEDGER_MAX_RECORD || ledger_record_decode(rec, len, &r) < 0 || !r.known ||
        (r.kind != LEDGER_KIND_MESSAGE &&
         (r.kind < LEDGER_KIND_DEVICE_REGISTRATION || r.kind > LEDGER_KIND_KEY_ROTATION)))
        return BK_SUBMIT_ERR_RECORD;
    struct lp_msg *m = lp__msg_new(lp, client_id ? client_id : "", NULL, "", 0, NULL, 0, NULL, 0);
    if (!m)
        return BK_SUBMIT_ERR_UNAVAILABLE;
    m->rec = malloc(len);
    if (!m->rec) {
        lp__msg_free(lp, m);
        return BK_SUBMIT_ERR_UNAVAILABLE;
    }
    memcpy(m->rec, rec, len);
    m->rec_len = len;
    m->cost += len;
    lp->q_bytes += len;
    m->kind = LP_SUBMIT;
    m->cb = cb;
    m->cb_ctx = ctx;
    m->state = LP_PROPOSED;
    m->item.rec = m->rec;
    m->item.len = m->rec_len;
    m->item.arg = m;
    lp->ops->propose(lp->bt, &m->item);
    return 0;
}

int bk_ledger_cluster_admin(struct lmq_broker *b, const uint8_t *req, size_t len,
                            struct lmq_committer_admin *r, char *why, size_t cap)
{
    struct bk_lp *lp = bk_broker_lp(b);
    if (!lp || !lp->bt || lp->stopped || !lp->ops->admin)
        return BK_SUBMIT_ERR_UNAVAILABLE;
    return lp->ops->admin(lp->bt, req, len, r, why, cap);
}

/* Default commit hook until src/broker/ledger_api.c provides one. */
__attribute__((weak)) void bk_ledger_committed(struct lmq_broker *b,
                                               const struct bk_commit_event *ev)
{
    (void)b;
    (void)ev;
}

/* ------------------------------------------------------------------ */
/* life cycle */

/* The ordering/commit service (bk_ledger_set_committer), process-wide. */
static const struct lmq_committer_ops *lp__committer;

void bk_ledger_set_committer(const struct lmq_committer_ops *ops)
{
    lp__committer = ops;
}

struct bk_lp *bk_lp_new(struct lmq_broker *b, const struct lmq_config *cfg,
                        const struct lmq_broker_services *svc)
{
    /* with an open ledger the pipeline runs even without a ledger_topic:
     * bk_ledger_submit (registry records) needs its committer */
    if (!cfg->n_ledger_topics && !svc->ledger)
        return NULL;
    struct bk_lp *lp = calloc(1, sizeof *lp);
    if (!lp)
        return NULL;
    if (sodium_init() < 0) {
        free(lp);
        return NULL;
    }
    lp->b = b;
    lp->cfg = cfg;
    lp->ledger = svc->ledger;
    lp->reg = svc->registry;
    lp->pool = svc->pool;
    lp->wake.done = lp__wake_done;
    atomic_init(&lp->wake_posted, false);
    lp->ops = lp__committer;
    if (!lp->ledger || !lp->pool || !lp->ops)
        return lp; /* ledgered messages are refused ("ledger unavailable") */
    bool need_ps = false;
    for (size_t i = 0; i < cfg->n_ledger_topics; i++)
        need_ps |= cfg->ledger_topics[i].private_payload;
    if (need_ps) {
        char err[512];
        if (paystore_open(cfg->data_dir, cfg->ledger_sync == LMQ_SYNC_BATCH, &lp->ps, err,
                          sizeof err) < 0)
            LMQ_ERROR("ledger: %s: messages on private topics are not committed", err);
    }
    struct lmq_batcher_options o = {.batch_max = cfg->ledger_batch_max,
                                    .batch_ms = cfg->ledger_batch_ms};
    static const struct lmq_fsm_ops ops = {
        .check = lp__fsm_check,
        .prepare = lp__fsm_prepare,
        .end = lp__fsm_end,
        .check_record = lp__fsm_check_record,
        .begin_records = lp__fsm_begin_records,
        .end_records = lp__fsm_end_records,
        .items_done = lp__fsm_items_done,
    };
    lp->tree_size = ledger_size(lp->ledger);
    bool attested = false;
    for (size_t i = 0; i < cfg->n_ledger_topics; i++)
        attested |= cfg->ledger_topics[i].mode == LMQ_LEDGER_ATTESTED;
    if (attested && lp__dk_init(lp, cfg->ledger_dup_window, cfg->ledger_batch_max) < 0)
        LMQ_ERROR("ledger: out of memory for ledger_dup_window: DUP resends of attested "
                  "messages are recorded again");
    if (lp->dk)
        lp__dk_load(lp, cfg->ledger_dup_window);
    lp->bt = lp->ops->start(lp->ledger, &o, &ops, lp, lp__notify, lp);
    if (!lp->bt)
        LMQ_ERROR("ledger: cannot start the committer thread: %s", strerror(errno));
    else
        LMQ_INFO("ledger: %zu ledgered topic filter(s); batches of up to %u records or %u ms",
                 cfg->n_ledger_topics, o.batch_max, o.batch_ms);
    return lp;
}

bool bk_lp_running(const struct bk_lp *lp)
{
    return lp && lp->bt && !lp->stopped;
}

static void lp__drain_cb(void *ctx, struct lmq_batch *bb)
{
    lp__batch(ctx, bb);
}

void bk_lp_stop(struct bk_lp *lp)
{
    if (!lp || lp->stopped)
        return;
    lp->stopped = true;
    if (lp->bt) {
        /* Everything proposed is committed; the results are answered here
         * (the lp__wake posted meanwhile finds nothing). */
        lp->ops->stop(lp->bt, lp__drain_cb, lp);
        lp->bt = NULL;
    }
}

void bk_lp_free(struct bk_lp *lp)
{
    if (!lp)
        return;
    bk_lp_stop(lp);
    paystore_close(lp->ps);
    free(lp->devs);
    free(lp->scratch);
    for (unsigned k = 0; k < LP_VJOBS_MAX; k++)
        free(lp->vjobs[k]);
    free(lp->dk);
    free(lp->dk_bucket);
    free(lp->pre);
    free(lp->pre_req);
    free(lp->pre_vp);
    free(lp);
}

void bk_lp_sys(struct bk_lp *lp)
{
    if (!lp)
        return;
    static const char *const names[] = {
        [VERIFY_MALFORMED] = "malformed",
        [VERIFY_UNKNOWN] = "unknown_device",
        [VERIFY_REVOKED] = "revoked",
        [VERIFY_WRONG_DEVICE] = "wrong_device",
        [VERIFY_BAD_SIGNATURE] = "bad_signature",
        [VERIFY_SKEW] = "clock_skew",
        [VERIFY_REPLAY] = "replay",
        [VERIFY_REGISTRY] = "registry",
        [LP_UNAVAILABLE] = "unavailable",
        [LP_TOO_LARGE] = "too_large",
    };
    char v[32];
#define LP_SYS(topic, val)                                                                         \
    do {                                                                                           \
        snprintf(v, sizeof v, "%" PRIu64, (uint64_t)(val));                                        \
        bk_sys_publish(lp->b, "$SYS/ledger/" topic, v);                                            \
    } while (0)
    LP_SYS("queue/messages", lp->q_msgs);
    LP_SYS("queue/bytes", lp->q_bytes);
    LP_SYS("queue/paused_publishers", lp->n_paused);
    LP_SYS("queue/pauses", lp->n_paused_total);
    LP_SYS("records", lp->n_records);
    LP_SYS("tree_size", lp->tree_size);
    LP_SYS("batches", lp->n_batches);
    LP_SYS("batch/last_size", lp->last_batch);
    LP_SYS("batch/max_size", lp->max_batch);
    LP_SYS("commit/last_us", lp->commit_us_last);
    LP_SYS("commit/max_us", lp->commit_us_max);
    LP_SYS("latency/last_us", lp->latency_us_last);
    LP_SYS("latency/max_us", lp->latency_us_max);
    LP_SYS("duplicates", lp->n_dups);
    LP_SYS("verify/jobs", lp->n_vjobs);
    LP_SYS("verify/messages", lp->n_vjob_msgs);
    LP_SYS("verify/max_job", lp->max_vjob);
    LP_SYS("refused", lp->n_refused);
    for (size_t i = 1; i < sizeof names / sizeof names[0]; i++) {
        char t[64];
        snprintf(t, sizeof t, "$SYS/ledger/refused/%s", names[i]);
        snprintf(v, sizeof v, "%" PRIu64, lp->refused[i]);
        bk_sys_publish(lp->b, t, v);
    }
    if (lp->bt && lp->ops->status) {
        struct lmq_committer_status cs;
        memset(&cs, 0, sizeof cs);
        lp->ops->status(lp->bt, &cs);
        bk_sys_publish(lp->b, "$SYS/ledger/cluster/role", cs.role ? cs.role : "unavailable");
        LP_SYS("cluster/node", cs.node_id);
        LP_SYS("cluster/term", cs.term);
        LP_SYS("cluster/leader", cs.leader_id);
        bk_sys_publish(lp->b, "$SYS/ledger/cluster/leader_address",
                       cs.leader_address[0] ? cs.leader_address : "-");
        LP_SYS("cluster/applied_index", cs.applied_index);
        /* one "ID HOST:PORT ROLE" line per member: longer than the 64
         * bytes bk_sys_publish takes */
        const char *mt = "$SYS/ledger/cluster/members";
        bk_publish_internal(lp->b, mt, strlen(mt), cs.members[0] ? cs.members : "-",
                            cs.members[0] ? strlen(cs.members) : 1, NULL, 0, 0, true);
    }
#undef LP_SYS
}
