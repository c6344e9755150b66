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
 * the owner-facing API (propose, poll) does not change. The types of
 * that contract live in ledger/batch.h, so that the broker (which may not
 * include cluster/) calls this through struct lmq_committer_ops
 * (lmq_batcher_committer below, handed over by the daemon).
 *
 * Threads: lmq_batcher_new/propose/poll/free on the owner's thread; the
 * lmq_fsm_ops callbacks and NOTIFY on the committer thread. */
#ifndef LMQ_CLUSTER_BATCHER_H
#define LMQ_CLUSTER_BATCHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ledger/batch.h"
#include "ledger/block.h"
#include "ledger/log.h"

struct lmq_batcher;

/* The state machine's checks over ITEMS in order, as every committer runs
 * them before an append (single node: the batcher; cluster: the leader in
 * cluster/raft_committer.c): each item gets its status (DUPLICATE with the
 * index it already has, a refusal, or APPENDED), the accepted ones are
 * listed in APP and their bytes in RECS (room for every item), and the
 * list is cut before the first BARRIER that follows an accepted record.
 * Returns that rest (NULL when every item was taken); *N_APP and
 * *N_TAKEN count the accepted and the examined items. */
struct lmq_batch_item *lmq_fsm_check_items(const struct lmq_fsm_ops *fsm, void *fsm_ctx,
                                           struct ledger *l, struct lmq_batch_item *items,
                                           struct ledger_record_buf *recs,
                                           struct lmq_batch_item **app, size_t *n_app,
                                           size_t *n_taken);

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

/* The functions above as a struct lmq_committer_ops (what the daemon hands
 * the broker: bk_ledger_set_committer). */
extern const struct lmq_committer_ops lmq_batcher_committer;

#endif
