/* Batching and apply for a single node: records proposed by the owner's
 * thread (the broker's loop) are cut into batches (at most batch_max
 * records, closed batch_ms after the first record of the batch arrived)
 * and applied in order by ONE committer thread that owns the read-write
 * ledger handle: per record the state machine's check (re-validation:
 * sequence numbers, registry rules), then one ledger_append_batch (one
 * write + one fdatasync, a block and a signed checkpoint), then the state
 * machine's end-of-batch hook. Results go back to the owner in batch order
 * through NOTIFY + lmq_batcher_poll.
 *
 * Why a dedicated committer thread rather than commit jobs on the shared
 * worker pool: a batch spends most of its time waiting (for batch_ms to
 * pass, then in fdatasync); on the pool that wait would take a worker away
 * from envelope verification, which is the CPU bound of signed topics. A
 * thread of its own waits without costing a core, and being the only user
 * of the read-write handle it needs no lock around the ledger.
 *
 * The cluster issue puts Raft between "batch" and "apply": the leader's
 * batch becomes one raft_apply entry and every node runs the same
 * check/append/end sequence (struct lmq_fsm_ops) on the committed entry;
 * the owner-facing API (propose, poll) does not change.
 *
 * Threads: lmq_batcher_new/propose/poll/free on the owner's thread; the
 * lmq_fsm_ops callbacks and NOTIFY on the committer thread. */
#ifndef LMQ_CLUSTER_BATCHER_H
#define LMQ_CLUSTER_BATCHER_H

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
    void *arg;          /* owner's */
    uint64_t queued_ns; /* set by propose (monotonic) */
    /* Results, valid after the item came back in a polled batch: */
    int status;     /* LMQ_BATCH_APPENDED, LMQ_BATCH_DUPLICATE, or < 0:
                       refused by check (its code) or LMQ_BATCH_ERR_IO */
    uint64_t index; /* appended: its index; duplicate: the existing one */
};

#define LMQ_BATCH_APPENDED 0
#define LMQ_BATCH_DUPLICATE 1
#define LMQ_BATCH_ERR_IO (-3100) /* the append failed; nothing of the batch is in the log */

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

struct lmq_batcher;

/* Starts the committer thread. L is the read-write ledger, used only by
 * the committer from now on until lmq_batcher_free. NOTIFY(NCTX) is
 * called on the committer thread when results go from none to some.
 * NULL with errno on failure. */
struct lmq_batcher *lmq_batcher_new(struct ledger *l, const struct lmq_batcher_options *o,
                                    const struct lmq_fsm_ops *fsm, void *fsm_ctx,
                                    void (*notify)(void *nctx), void *nctx);

/* Queues IT (rec, len, arg set) at the end of the next batch. */
void lmq_batcher_propose(struct lmq_batcher *bt, struct lmq_batch_item *it);

/* Takes the processed batches in order (a list linked by next), or NULL. */
struct lmq_batch *lmq_batcher_poll(struct lmq_batcher *bt);
void lmq_batch_free(struct lmq_batch *b);

/* Items proposed and not yet polled back. */
size_t lmq_batcher_pending(const struct lmq_batcher *bt);

/* Processes everything proposed, stops the thread; the batches not polled
 * yet are freed after calling DRAIN_CB (if not NULL) on each. The ledger
 * is the caller's again. */
void lmq_batcher_free(struct lmq_batcher *bt, void (*drain_cb)(void *ctx, struct lmq_batch *b),
                      void *ctx);

#endif
