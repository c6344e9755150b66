/* The contract between the code that proposes ledger records (the
 * broker's ledger pipeline, broker/ledger_pipe.c) and the code that orders
 * and applies them (cluster/batcher.c for a single node; a Raft-backed
 * implementation later): the proposal item, the state machine hooks run
 * at apply time, what comes back per batch, and the function table the
 * broker calls through (it may not include cluster/). Types only. */
#ifndef LMQ_LEDGER_BATCH_H
#define LMQ_LEDGER_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ledger/block.h"
#include "ledger/log.h"

/* One proposed record; embedded in the owner's object, which must stay
 * alive until its batch was polled. */
struct lmq_batch_item {
    struct lmq_batch_item *next; /* the batcher's while queued, then the batch's list */
    const uint8_t *rec;          /* record bytes (owner's, read by the committer) */
    size_t len;
    uint8_t flags;      /* LMQ_BATCH_F_*, set by the owner (replicated with the record) */
    void *arg;          /* owner's */
    uint64_t queued_ns; /* set by propose (monotonic) */
    /* Results, valid after the item came back in a polled batch: */
    int status;     /* LMQ_BATCH_APPENDED, LMQ_BATCH_DUPLICATE, or < 0:
                       refused by check (its code) or LMQ_BATCH_ERR_IO */
    uint64_t index; /* appended: its index; duplicate: the existing one */
};

/* Item flags: what the state machine needs besides the record bytes. */
#define LMQ_BATCH_F_DUP 0x01 /* the PUBLISH carried the MQTT DUP flag (a resend) */
#define LMQ_BATCH_F_ALL 0x01

#define LMQ_BATCH_APPENDED 0
#define LMQ_BATCH_DUPLICATE 1
#define LMQ_BATCH_ERR_IO (-3100) /* the append failed; nothing of the batch is in the log */
#define LMQ_BATCH_ERR_NOT_LEADER                                                                   \
    (-3101) /* not ordered here (a cluster node that is not the leader, or                         \
               leadership lost first): refused, the publisher may retry (refusal) */

/* What check returns besides a negative refusal code. */
#define LMQ_FSM_APPEND 0
#define LMQ_FSM_DUPLICATE 1 /* already in the log: *index set, not appended again */
#define LMQ_FSM_BARRIER                                                                            \
    2 /* commit the records before this one first (e.g. a second                                   \
         registry record that must see the first one applied) */

/* The state machine (ledger apply rules), run on the committer thread. */
struct lmq_fsm_ops {
    /* Called for each record in order before the append. FIRST says the
     * record would be the first of the batch (BARRIER is then treated as
     * APPEND). May keep tentative state for the records it accepted. */
    int (*check)(void *ctx, struct ledger *l, struct lmq_batch_item *it, bool first,
                 uint64_t *dup_index);
    /* Called with the records about to be appended (e.g. to make private
     * payloads durable before their digest is). A negative return fails
     * the batch like an I/O error. May be NULL. */
    int (*prepare)(void *ctx, struct lmq_batch_item *const *items, size_t n);
    /* After the batch: COMMIT non-NULL when records were appended (then
     * items/n are them, with their indices set), NULL when nothing was
     * appended or the append failed (FAILED true: drop tentative state). */
    void (*end)(void *ctx, struct ledger *l, struct lmq_batch_item *const *items, size_t n,
                const struct ledger_commit *commit, bool failed);

    /* The same state machine from the record bytes alone, for a committer
     * that applies records which may come from another node (a cluster:
     * every node runs these on every replicated record, in log order, so
     * all decide alike). May be NULL (a committer needing them refuses to
     * start). check_record: REC[0:LEN] with its item FLAGS; the results
     * as check's (APPEND, DUPLICATE with *DUP_INDEX, BARRIER, or a
     * negative refusal code that goes back to the proposer as the item's
     * status); it must depend only on the log so far and the records
     * checked since the last end_records. end_records: after the records
     * it accepted were appended at COMMIT (RECS/N, in order), or with
     * COMMIT NULL when nothing was appended, or FAILED true when the
     * append failed or the log holds records the state machine did not
     * see (found after a crash): then it starts again from the log. */
    int (*check_record)(void *ctx, struct ledger *l, const uint8_t *rec, size_t len, uint8_t flags,
                        bool first, uint64_t *dup_index);
    /* Before check_record runs on RECS/N (the records of one replicated
     * entry, in order, the same pointers check_record then gets): work
     * for all of them at once (signatures in batches). Must not change
     * any decision. May be NULL. */
    void (*begin_records)(void *ctx, struct ledger *l, const struct ledger_record_buf *recs,
                          size_t n);
    void (*end_records)(void *ctx, struct ledger *l, const struct ledger_record_buf *recs, size_t n,
                        const struct ledger_commit *commit, bool failed);
    /* The proposer's own items came back from such a committer with their
     * results (ITEMS/N in proposal order): per-item bookkeeping of the
     * owner that is not state machine state. May be NULL. */
    void (*items_done)(void *ctx, struct lmq_batch_item *const *items, size_t n);
};

struct lmq_batcher_options {
    uint32_t batch_max; /* 1..LEDGER_MAX_BATCH */
    uint32_t batch_ms;  /* 0 = close at once */
};

/* One processed batch as poll returns it. */
struct lmq_batch {
    struct lmq_batch *next;
    struct lmq_batch_item *items; /* every item taken, in proposal order */
    size_t n_items;
    size_t n_appended;
    int status;                  /* 0 or the ledger error of a failed append */
    struct ledger_commit commit; /* when n_appended > 0 and status == 0 */
    uint8_t header[LEDGER_BLOCK_HEADER_LEN];
    char *checkpoint; /* signed note, NUL-terminated (NULL if none) */
    size_t checkpoint_len;
    uint64_t commit_us;  /* append + sync time */
    uint64_t latency_us; /* first item proposed -> committed */
};

#define LMQ_COMMITTER_MEMBERS_TEXT 2560 /* 16 members of up to 160 characters */
#define LMQ_COMMITTER_ADMIN_RESULT 4096

/* An ordering service's view of itself (a cluster node's Raft state),
 * for $SYS/ledger/cluster/... */
struct lmq_committer_status {
    const char *role; /* "leader", "follower", "candidate", "unavailable" */
    uint64_t node_id;
    uint64_t term;
    uint64_t leader_id; /* 0: none known */
    char leader_address[128];
    uint64_t applied_index; /* last Raft index the ledger holds */
    /* The configuration as the node knows it: one "ID HOST:PORT ROLE\n"
     * line per member, ROLE voter, standby or spare (empty: unknown). */
    char members[LMQ_COMMITTER_MEMBERS_TEXT];
};

/* A cluster administration request ($ledger/admin/cluster, docs/CLUSTER.md
 * "Membership"), embedded in the broker's own object, which stays alive
 * until DONE ran. */
struct lmq_committer_admin {
    /* Called exactly once with RESULT set, from any thread (the
     * committer's, or the caller's before admin returns): it may only hand
     * R to the loop thread (e.g. lmq_workpool_post). */
    void (*done)(struct lmq_committer_admin *r);
    char result[LMQ_COMMITTER_ADMIN_RESULT]; /* the JSON reply, NUL-terminated */
};

/* An ordering/commit service as a function table (cluster/batcher.h:
 * lmq_batcher_committer). The handle is the implementation's. Same
 * threads and contracts as the lmq_batcher_* functions. */
struct lmq_committer_ops {
    void *(*start)(struct ledger *l, const struct lmq_batcher_options *o,
                   const struct lmq_fsm_ops *fsm, void *fsm_ctx, void (*notify)(void *nctx),
                   void *nctx);
    void (*propose)(void *h, struct lmq_batch_item *it);
    struct lmq_batch *(*poll)(void *h);
    void (*batch_free)(struct lmq_batch *b);
    void (*stop)(void *h, void (*drain_cb)(void *ctx, struct lmq_batch *b), void *ctx);
    /* Why items came back LMQ_BATCH_ERR_NOT_LEADER (e.g. "not the leader:
     * node 2 at HOST:PORT") into BUF; loop thread. May be NULL. */
    void (*refusal)(void *h, char *buf, size_t cap);
    /* Fills ST (loop thread). May be NULL: a single node has no status. */
    void (*status)(void *h, struct lmq_committer_status *st);
    /* A request on $ledger/admin/cluster (loop thread): REQ[0:LEN] is its
     * body (outside bytes, docs/CLUSTER.md "Membership"). 0 when it was
     * taken (R->done runs once, later or before this returns, with the
     * JSON reply), or an MQTT 5 reason code to refuse it with at once and
     * WHY[0:CAP] a reason string (0x97: "not the leader: node N at
     * HOST:PORT"); R->done then never runs. May be NULL: not a cluster. */
    uint8_t (*admin)(void *h, const uint8_t *req, size_t len, struct lmq_committer_admin *r,
                     char *why, size_t cap);
};

#endif
