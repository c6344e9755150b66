/* Forwarding of ledger batches to the Raft leader (see raft_forward.h).
 * The follower keeps its one forwarded batch as a ready FORWARD frame and
 * a timer that serves both as retry delay and as the batch's deadline;
 * the leader keeps one struct fw__req per forwarded batch it proposed,
 * answered from the proposal's callback. */
#include "cluster/raft_forward.h"

#include "cluster/channel.h"
#include "cluster/raft_batch.h"
#include "util/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FW__RETRY_MS 50 /* after a refusal a retry may cure, or without a leader */

/* A forwarded batch the leader proposed (or, on the follower, its own
 * batch proposed here after it became leader: peer 0). */
struct fw__req {
    struct lmq_raft_forward *fw;
    struct fw__req *next, *prev; /* leader side: in fw->reqs */
    uint64_t conn, peer, seq;
    struct lmq_channel_result_item *items; /* the apply's per-record results */
    uint32_t n_items;
};

struct lmq_raft_forward {
    uv_loop_t *loop;
    struct lmq_raft_node *node; /* NULL once stopping */
    struct lmq_channel *ch;
    struct lmq_raft_forward_options o;
    uv_timer_t timer;
    bool timer_open, ch_open, free_asked;
    unsigned n_reqs;      /* leader side: proposed, unanswered */
    struct fw__req *reqs; /* those */
    /* follower side: the batch in flight (frame NULL: none) */
    uint64_t seq;
    uint8_t *frame;
    size_t frame_len;
    uint64_t sent_to;  /* the leader it went to last (0: not sent) */
    uint64_t target;   /* the last node it was sent to or proposed on */
    bool accepted;     /* the leader answered OK, or it was proposed here */
    uint64_t deadline; /* uv_now */
    char why[160];     /* the last reason it is not done yet */
};

static void fw__try(struct lmq_raft_forward *fw);

static void fw__maybe_free(struct lmq_raft_forward *fw)
{
    if (fw->free_asked && !fw->timer_open && !fw->ch_open) {
        free(fw->frame);
        free(fw);
    }
}

static void fw__clear(struct lmq_raft_forward *fw)
{
    free(fw->frame);
    fw->frame = NULL;
    fw->frame_len = 0;
    fw->seq = 0;
    fw->sent_to = fw->target = 0;
    fw->accepted = false;
    if (fw->timer_open)
        uv_timer_stop(&fw->timer);
}

static void fw__timer_cb(uv_timer_t *t)
{
    fw__try(t->data);
}

static void fw__arm(struct lmq_raft_forward *fw, uint64_t ms)
{
    uint64_t now = uv_now(fw->loop);
    if (now + ms > fw->deadline)
        ms = fw->deadline > now ? fw->deadline - now : 0;
    uv_timer_start(&fw->timer, fw__timer_cb, ms, 0);
}

/* Batch in flight refused with the last reason (TIMED_OUT: the deadline
 * passed, else a final answer or the stop). */
static void fw__give_up(struct lmq_raft_forward *fw, bool timed_out)
{
    uint64_t seq = fw->seq;
    char why[sizeof fw->why + 64];
    if (timed_out)
        snprintf(why, sizeof why, "forwarding to the leader failed within %u ms: %s",
                 fw->o.timeout_ms, fw->why);
    else
        snprintf(why, sizeof why, "forwarding to the leader failed: %s", fw->why);
    if (fw->sent_to && !fw->accepted && fw->ch)
        lmq_channel_drop(fw->ch, fw->sent_to); /* it may hang: the next batch connects anew */
    LMQ_NOTICE("cluster: batch %" PRIu64 " not confirmed: %s", seq, why);
    fw__clear(fw);
    fw->o.failed(fw->o.ctx, seq, why);
}

/* ------------------------------------------------------------------ */
/* the follower's batch proposed here (this node became leader) */

static void fw__self_cb(void *ctx, int status, uint64_t index, int result)
{
    struct fw__req *r = ctx;
    struct lmq_raft_forward *fw = r->fw;
    (void)index;
    (void)result;
    bool ours = fw->frame && fw->seq == r->seq;
    free(r);
    if (!ours || !fw->node)
        return;
    if (status == 0) {
        /* applied here: answered already unless the apply skipped it */
        if (fw->o.pending(fw->o.ctx, fw->seq)) {
            snprintf(fw->why, sizeof fw->why, "its entry was applied without it");
            fw__give_up(fw, false);
        } else {
            fw__clear(fw);
        }
        return;
    }
    snprintf(fw->why, sizeof fw->why, "%s", lmq_raft_strerror(status));
    fw->accepted = false;
    fw__arm(fw, FW__RETRY_MS);
}

/* Sends (or proposes) the batch in flight to the leader known now. */
static void fw__try(struct lmq_raft_forward *fw)
{
    if (!fw->frame || !fw->node)
        return;
    if (!fw->o.pending(fw->o.ctx, fw->seq)) {
        fw__clear(fw);
        return;
    }
    if (uv_now(fw->loop) >= fw->deadline) {
        fw__give_up(fw, true);
        return;
    }
    if (fw->accepted) { /* wait for the local apply, up to the deadline */
        fw__arm(fw, UINT32_MAX);
        return;
    }
    uint64_t leader = 0;
    const char *addr = NULL;
    lmq_raft_leader(fw->node, &leader, &addr);
    if (leader == fw->o.id && lmq_raft_state(fw->node) == LMQ_RAFT_LEADER) {
        struct fw__req *r = malloc(sizeof *r);
        const uint8_t *cmd = fw->frame + LMQ_CHANNEL_HEADER;
        int rv = r ? 0 : LMQ_RAFT_ERR_NOMEM;
        if (r) {
            memset(r, 0, sizeof *r);
            r->fw = fw;
            r->seq = fw->seq;
            rv =
                lmq_raft_propose(fw->node, cmd, fw->frame_len - LMQ_CHANNEL_HEADER, fw__self_cb, r);
        }
        if (rv == 0) {
            if (fw->target)
                LMQ_INFO("cluster: batch %" PRIu64 " proposed here, now the leader (%s)", fw->seq,
                         fw->why);
            fw->target = fw->sent_to = fw->o.id;
            fw->accepted = true;
            fw__arm(fw, UINT32_MAX);
            return;
        }
        free(r);
        snprintf(fw->why, sizeof fw->why, "proposing here: %s", lmq_raft_strerror(rv));
    } else if (leader == 0 || leader == fw->o.id) {
        snprintf(fw->why, sizeof fw->why, "no leader known");
    } else if (lmq_channel_send(fw->ch, leader, fw->frame, fw->frame_len) == 0) {
        if (fw->target && fw->target != leader)
            LMQ_INFO("cluster: batch %" PRIu64 " forwarded again, to node %" PRIu64 " (%s)",
                     fw->seq, leader, fw->why);
        fw->target = fw->sent_to = leader;
        fw__arm(fw, UINT32_MAX); /* the answer, a failure or the deadline comes first */
        return;
    } else {
        snprintf(fw->why, sizeof fw->why, "cannot send to node %" PRIu64, leader);
    }
    fw->sent_to = 0;
    fw__arm(fw, FW__RETRY_MS);
}

int lmq_raft_forward_submit(struct lmq_raft_forward *fw, uint64_t seq, const uint8_t *cmd,
                            size_t len)
{
    fw__clear(fw);
    if (lmq_channel_encode_forward(seq, cmd, len, &fw->frame, &fw->frame_len) != 0)
        return LMQ_RAFT_ERR_NOMEM;
    fw->seq = seq;
    fw->deadline = uv_now(fw->loop) + fw->o.timeout_ms;
    snprintf(fw->why, sizeof fw->why, "no answer from the leader");
    /* the deadline is in the future: fw__try does not give up now */
    fw__try(fw);
    return 0;
}

void lmq_raft_forward_state(struct lmq_raft_forward *fw)
{
    if (!fw || !fw->frame || fw->accepted || !fw->node)
        return;
    uint64_t leader = 0;
    const char *addr = NULL;
    lmq_raft_leader(fw->node, &leader, &addr);
    if (leader != 0 && leader != fw->sent_to)
        fw__try(fw);
}

/* ------------------------------------------------------------------ */
/* frames */

static void fw__reply(struct lmq_raft_forward *fw, uint64_t conn, uint64_t seq, int32_t status,
                      uint64_t index, const struct lmq_channel_result_item *items, uint32_t n)
{
    uint8_t *out;
    size_t len;
    if (!fw->ch || lmq_channel_encode_result(seq, status, index, items, n, &out, &len) != 0)
        return;
    lmq_channel_reply(fw->ch, conn, out, len); /* the forwarder may be gone: it retries */
    free(out);
}

static void fw__forwarded_cb(void *ctx, int status, uint64_t index, int result)
{
    struct fw__req *r = ctx;
    struct lmq_raft_forward *fw = r->fw;
    (void)result;
    fw->n_reqs--;
    if (r->prev)
        r->prev->next = r->next;
    else
        fw->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    int32_t st = status == 0                       ? LMQ_CHANNEL_OK
                 : status == LMQ_RAFT_ERR_LOST     ? LMQ_CHANNEL_REFUSED_LOST
                 : status == LMQ_RAFT_ERR_SHUTDOWN ? LMQ_CHANNEL_REFUSED_UNAVAILABLE
                                                   : LMQ_CHANNEL_REFUSED_LOST;
    fw__reply(fw, r->conn, r->seq, st, status == 0 ? index : 0, status == 0 ? r->items : NULL,
              status == 0 ? r->n_items : 0);
    /* The follower acks once it applied the entry: tell it the commit now
     * unless other entries in flight will carry it. */
    if (status == 0 && fw->node && lmq_raft_inflight(fw->node) == 0)
        lmq_raft_barrier(fw->node);
    free(r->items);
    free(r);
}

void lmq_raft_forward_applied(struct lmq_raft_forward *fw, uint64_t origin, uint64_t seq,
                              const int *status, const uint64_t *index, size_t n)
{
    if (!fw || origin == fw->o.id)
        return;
    for (struct fw__req *r = fw->reqs; r; r = r->next) {
        if (r->peer != origin || r->seq != seq || r->items)
            continue;
        r->items = calloc(n ? n : 1, sizeof *r->items);
        if (!r->items)
            return; /* the answer goes without them */
        for (size_t i = 0; i < n; i++) {
            r->items[i].status = status[i];
            r->items[i].index = index[i];
        }
        r->n_items = (uint32_t)n;
        return;
    }
}

/* The leader's side: a follower's batch. */
static void fw__on_forward(struct lmq_raft_forward *fw, uint64_t conn, uint64_t peer,
                           const struct lmq_channel_frame *f)
{
    struct lmq_raft_batch b;
    int rv = lmq_raft_batch_open(&b, f->body, f->body_len);
    if (rv < 0 || b.origin != peer || b.seq != f->seq) {
        LMQ_NOTICE("cluster: node %" PRIu64 " forwarded a batch that is not its own or does "
                   "not decode (%s); refused",
                   peer, rv < 0 ? lmq_raft_batch_strerror(rv) : "origin or seq differ");
        fw__reply(fw, conn, f->seq, LMQ_CHANNEL_REFUSED_BAD, 0, NULL, 0);
        return;
    }
    if (!fw->node) {
        fw__reply(fw, conn, f->seq, LMQ_CHANNEL_REFUSED_UNAVAILABLE, 0, NULL, 0);
        return;
    }
    if (lmq_raft_state(fw->node) != LMQ_RAFT_LEADER) {
        fw__reply(fw, conn, f->seq, LMQ_CHANNEL_REFUSED_NOT_LEADER, 0, NULL, 0);
        return;
    }
    for (struct fw__req *q = fw->reqs; q; q = q->next)
        if (q->peer == peer && q->seq == f->seq) {
            /* sent again (its connection failed): one proposal, answered
             * on the connection it came on last */
            q->conn = conn;
            return;
        }
    if (fw->n_reqs >= fw->o.max_inflight) {
        fw__reply(fw, conn, f->seq, LMQ_CHANNEL_REFUSED_BUSY, 0, NULL, 0);
        return;
    }
    struct fw__req *r = malloc(sizeof *r);
    if (!r) {
        fw__reply(fw, conn, f->seq, LMQ_CHANNEL_REFUSED_BUSY, 0, NULL, 0);
        return;
    }
    r->fw = fw;
    r->conn = conn;
    r->peer = peer;
    r->seq = f->seq;
    r->items = NULL;
    r->n_items = 0;
    rv = lmq_raft_propose(fw->node, f->body, f->body_len, fw__forwarded_cb, r);
    if (rv < 0) {
        free(r);
        fw__reply(fw, conn, f->seq,
                  rv == LMQ_RAFT_ERR_NOT_LEADER ? LMQ_CHANNEL_REFUSED_NOT_LEADER
                  : rv == LMQ_RAFT_ERR_BUSY     ? LMQ_CHANNEL_REFUSED_BUSY
                                                : LMQ_CHANNEL_REFUSED_UNAVAILABLE,
                  0, NULL, 0);
        return;
    }
    fw->n_reqs++;
    r->prev = NULL;
    r->next = fw->reqs;
    if (fw->reqs)
        fw->reqs->prev = r;
    fw->reqs = r;
}

/* The follower's side: the leader's answer. */
static void fw__on_result(struct lmq_raft_forward *fw, uint64_t peer,
                          const struct lmq_channel_frame *f)
{
    if (!fw->frame || f->seq != fw->seq || peer != fw->sent_to || fw->accepted)
        return; /* an answer to an earlier send */
    if (f->status == LMQ_CHANNEL_OK) {
        fw->accepted = true;
        snprintf(fw->why, sizeof fw->why,
                 "node %" PRIu64 " committed it at Raft index %" PRIu64 ", not yet applied here",
                 peer, f->raft_index);
        fw__arm(fw, UINT32_MAX);
        return;
    }
    snprintf(fw->why, sizeof fw->why, "node %" PRIu64 ": %s", peer,
             lmq_channel_status_name(f->status));
    if (f->status == LMQ_CHANNEL_REFUSED_BAD) {
        fw__give_up(fw, false);
        return;
    }
    fw->sent_to = 0;
    fw__arm(fw, FW__RETRY_MS);
}

static void fw__on_frame(void *ctx, uint64_t conn, uint64_t peer, const struct lmq_channel_frame *f)
{
    struct lmq_raft_forward *fw = ctx;
    if (f->type == LMQ_CHANNEL_FORWARD)
        fw__on_forward(fw, conn, peer, f);
    else if (f->type == LMQ_CHANNEL_RESULT)
        fw__on_result(fw, peer, f);
}

static void fw__on_down(void *ctx, uint64_t peer)
{
    struct lmq_raft_forward *fw = ctx;
    if (!fw->frame || fw->accepted || peer != fw->sent_to)
        return;
    snprintf(fw->why, sizeof fw->why, "connection to node %" PRIu64 " failed", peer);
    fw->sent_to = 0;
    fw__arm(fw, FW__RETRY_MS);
}

/* ------------------------------------------------------------------ */
/* start and stop */

int lmq_raft_forward_start(uv_loop_t *loop, struct lmq_raft_node *node,
                           const struct lmq_raft_forward_options *o, struct lmq_raft_forward **out)
{
    if (!o->pending || !o->failed || o->timeout_ms == 0 || o->max_inflight == 0)
        return -1;
    struct lmq_raft_forward *fw = calloc(1, sizeof *fw);
    if (!fw)
        return -1;
    fw->loop = loop;
    fw->node = node;
    fw->o = *o;
    fw->o.members = NULL;
    struct lmq_channel_options co = {
        .id = o->id,
        .members = o->members,
        .n_members = o->n_members,
        .port_offset = o->port_offset,
        .tls_certfile = o->tls_certfile,
        .tls_keyfile = o->tls_keyfile,
        .tls_cafile = o->tls_cafile,
        .handshake_ms = o->handshake_ms,
        .stuck_ms = node ? lmq_raft_node_stuck_ms(node) : 0,
        .on_frame = fw__on_frame,
        .on_down = fw__on_down,
        .ctx = fw,
    };
    if (lmq_channel_start(loop, &co, &fw->ch) != 0) {
        free(fw);
        return -1;
    }
    fw->ch_open = true;
    uv_timer_init(loop, &fw->timer);
    fw->timer.data = fw;
    fw->timer_open = true;
    *out = fw;
    return 0;
}

static void fw__ch_done(void *ctx)
{
    struct lmq_raft_forward *fw = ctx;
    fw->ch_open = false;
    fw__maybe_free(fw);
}

static void fw__timer_closed(uv_handle_t *h)
{
    struct lmq_raft_forward *fw = h->data;
    fw->timer_open = false;
    fw__maybe_free(fw);
}

void lmq_raft_forward_stop(struct lmq_raft_forward *fw)
{
    if (!fw || !fw->node)
        return;
    if (fw->frame && fw->o.pending(fw->o.ctx, fw->seq)) {
        /* never left unanswered: refused (it may still be committed) */
        snprintf(fw->why, sizeof fw->why, "node stopping");
        fw__give_up(fw, false);
    }
    fw->node = NULL;
    fw__clear(fw);
    struct lmq_channel *ch = fw->ch;
    fw->ch = NULL;
    lmq_channel_stop(ch, fw__ch_done, fw);
    uv_close((uv_handle_t *)&fw->timer, fw__timer_closed);
}

void lmq_raft_forward_free(struct lmq_raft_forward *fw)
{
    if (!fw)
        return;
    lmq_raft_forward_stop(fw);
    fw->free_asked = true;
    fw__maybe_free(fw);
}
