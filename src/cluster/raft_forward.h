/* Forwarding of a follower's ledger batches to the Raft leader over the
 * cluster channel (cluster/channel.h; docs/CLUSTER.md "Forwarding"), the
 * half of the Raft committer that libraft lacks.
 *
 * Follower side: the committer hands over its one batch in flight, already
 * encoded as a raft_batch command with this node as origin (submit). It
 * goes to the leader this node knows, or is proposed here if this node is
 * the leader by now; on a refusal that a retry may cure (not the leader,
 * busy, leadership lost), a channel failure or a leader change it is sent
 * again, to whoever leads then, until the committer's PENDING callback
 * says it was answered (its entry was applied here: the committer matches
 * applied entries to its batch by (origin, seq)) or timeout_ms passed;
 * then FAILED(ctx, seq, why) runs and the committer refuses the batch's
 * publishers (MQTT 0x97 with WHY). A retry is safe: the same command
 * applies at most once, because an entry whose seq is not above the last
 * one applied from its origin is a no-op on every node.
 *
 * Leader side: a FORWARD frame is accepted only from a member, carrying a
 * well-formed command whose origin is that member (the channel took its id
 * from its certificate with TLS); the leader proposes it unchanged (the
 * records keep their ingress node) and answers RESULT once it is applied
 * here (OK, the Raft index and each record's result), or why not. At most max_inflight forwarded
 * batches are proposed and unanswered at once (more: BUSY).
 *
 * Threads: the loop thread of the Raft node. */
#ifndef LMQ_CLUSTER_RAFT_FORWARD_H
#define LMQ_CLUSTER_RAFT_FORWARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "cluster/raft_node.h"

struct lmq_raft_forward;

struct lmq_raft_forward_options {
    uint64_t id; /* this node */
    const struct lmq_raft_member *members;
    size_t n_members;
    const char *tls_certfile, *tls_keyfile, *tls_cafile; /* all or none */
    unsigned handshake_ms;                               /* 0 = 10000 */
    unsigned port_offset;                                /* channel port = Raft port + this */
    unsigned timeout_ms;                                 /* a forwarded batch's bound (follower) */
    unsigned max_inflight; /* forwarded batches proposed at once (leader) */
    /* Is batch SEQ still waiting for its answer? */
    bool (*pending)(void *ctx, uint64_t seq);
    /* Batch SEQ gave up: refuse its items with WHY (a reason string). */
    void (*failed)(void *ctx, uint64_t seq, const char *why);
    void *ctx;
};

/* Starts the channel on LOOP next to the running NODE. 0, or -1 (reason
 * logged: e.g. the channel port is in use). */
int lmq_raft_forward_start(uv_loop_t *loop, struct lmq_raft_node *node,
                           const struct lmq_raft_forward_options *o, struct lmq_raft_forward **out);

/* Forwards the command CMD[0:LEN] (copied) of batch SEQ, the one batch
 * this node has in flight. 0 or LMQ_RAFT_ERR_NOMEM. Never calls FAILED
 * before it returns. */
int lmq_raft_forward_submit(struct lmq_raft_forward *fw, uint64_t seq, const uint8_t *cmd,
                            size_t len);

/* The leader's side: entry (ORIGIN, SEQ) was applied here with the
 * per-record results STATUS/INDEX[0:N] (LMQ_BATCH_APPENDED with the
 * record's ledger index, _DUPLICATE with the existing one, or a refusal
 * code): the RESULT of a batch ORIGIN forwarded carries them. */
void lmq_raft_forward_applied(struct lmq_raft_forward *fw, uint64_t origin, uint64_t seq,
                              const int *status, const uint64_t *index, size_t n);

/* Leadership changed (the node's on_state): a batch not yet accepted is
 * sent again to the new leader at once. */
void lmq_raft_forward_state(struct lmq_raft_forward *fw);

/* The node is being stopped: a batch still forwarded gives up (FAILED,
 * "node stopping"), no more calls on the node from here; the channel
 * closes. lmq_raft_forward_free once the node has stopped (its proposal
 * callbacks have run) frees FW when the channel has closed too. */
void lmq_raft_forward_stop(struct lmq_raft_forward *fw);
void lmq_raft_forward_free(struct lmq_raft_forward *fw);

#endif
