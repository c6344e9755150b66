/* Cluster membership from the outside: the requests of `ledgermq cluster
 * add|remove|transfer`, received on $ledger/admin/cluster (docs/CLUSTER.md
 * "Membership"), parsed on the broker's loop thread, queued, started on
 * the raft thread against the leader's Raft node (cluster/raft_node.h
 * lmq_raft_add / _remove / _transfer), and answered with a JSON reply
 * through struct lmq_committer_admin (ledger/batch.h).
 *
 * Invariant: every request handed to lmq_raft_admin_submit is answered
 * exactly once (its done called): by its change callback, by a refusal
 * when it starts, or by lmq_raft_admin_cancel when the node stops.
 *
 * Threads: lmq_raft_admin_submit on any thread (the broker's loop);
 * _run, _cancel, _members and the CHANGED callback on the raft thread;
 * lmq_raft_admin_parse is pure. */
#ifndef LMQ_CLUSTER_RAFT_ADMIN_H
#define LMQ_CLUSTER_RAFT_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#include "cluster/raft_node.h"
#include "ledger/batch.h"

enum lmq_raft_admin_op {
    LMQ_RAFT_ADMIN_ADD = 1,
    LMQ_RAFT_ADMIN_REMOVE = 2,
    LMQ_RAFT_ADMIN_TRANSFER = 3,
};

/* A request as parsed: {"op": "add", "id": N, "address": "HOST:PORT"},
 * {"op": "remove", "id": N}, {"op": "transfer"[, "id": N]}. */
struct lmq_raft_admin_req {
    int op;      /* enum lmq_raft_admin_op */
    uint64_t id; /* transfer: 0 = any voter */
    char address[LMQ_RAFT_ADDRESS_MAX];
};

/* Parses a request body P[0:LEN] (outside bytes: a flat JSON object with
 * the keys op, id, address, in any order, no others, no repeats; numbers
 * 1..2^63-1 in decimal; strings without escapes). 0 and *OUT, or -1 with
 * a one-line reason in ERR[0:CAP]. */
int lmq_raft_admin_parse(const uint8_t *p, size_t len, struct lmq_raft_admin_req *out, char *err,
                         size_t cap);

struct lmq_raft_admin;

/* A request queue; CHANGED(CTX) runs on the raft thread after a change
 * committed (the caller refreshes what it shows). NULL if out of memory. */
struct lmq_raft_admin *lmq_raft_admin_new(void (*changed)(void *ctx), void *ctx);
/* After lmq_raft_admin_cancel (nothing may be pending). NULL is allowed. */
void lmq_raft_admin_free(struct lmq_raft_admin *q);

/* Parses REQ[0:LEN] and queues it for the raft thread (wake it after
 * this). Always takes R: a malformed request is answered at once (done
 * runs before this returns) with {"error": "bad_request", ...}. */
void lmq_raft_admin_submit(struct lmq_raft_admin *q, const uint8_t *req, size_t len,
                           struct lmq_committer_admin *r);

/* Raft thread: starts every queued request on N (its leader checks,
 * duplicate/unknown ids against the configuration, then lmq_raft_*); a
 * request that cannot start is answered at once. */
void lmq_raft_admin_run(struct lmq_raft_admin *q, struct lmq_raft_node *n);

/* Raft thread, once N is stopped (no more change callbacks): answers
 * every queued or running request with {"error": "shutdown", ...}. */
void lmq_raft_admin_cancel(struct lmq_raft_admin *q);

/* The configuration N knows as "ID HOST:PORT ROLE\n" lines into
 * BUF[0:CAP] (NUL-terminated, truncated at a line), for $SYS. */
void lmq_raft_admin_members(struct lmq_raft_node *n, char *buf, size_t cap);

#endif
