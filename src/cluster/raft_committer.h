/* The ledger's ordering/commit service for a cluster (struct
 * lmq_committer_ops, ledger/batch.h) backed by Raft (cluster/raft_node):
 * the leader cuts batches of the records the broker proposes and proposes
 * each batch, every record with its flags (the MQTT DUP flag), as ONE Raft
 * command (cluster/raft_batch); once a majority committed it, every node
 * runs the ledger state machine on each record from its bytes (struct
 * lmq_fsm_ops check_record/end_records: envelope, registry, sequence,
 * duplicates), in log order, and appends the accepted ones to its own
 * ledger (ledger_append_batch; a BARRIER starts another block), so all
 * nodes decide alike and hold the same records, size and root; a refused
 * record is appended nowhere and comes back to the proposer with its
 * code. The proposer's items come back through poll only after the entry
 * is committed AND appended (fdatasync) locally and recorded in
 * ledger-applied, so an ack means "durable on a majority and in this
 * node's log".
 *
 * Invariants:
 *  - one thread (the "raft thread", with its own libuv loop) runs the Raft
 *    node, the state machine hooks and every ledger write: it owns the
 *    read-write ledger from start to stop, like the batcher's committer;
 *  - an entry is applied at most once per ledger: <raft dir>/ledger-applied
 *    holds the last applied Raft index, the ledger size it produced and
 *    the last batch sequence per origin, written (fdatasync + rename)
 *    after each entry; an entry at or below that index is skipped, and an
 *    entry whose records are already in the ledger (a crash between the
 *    append and the meta write) is recognised by its records;
 *  - a batch whose (origin, seq) is not above the last one applied from
 *    that origin is a no-op on every node.
 * First slice (docs/CLUSTER.md status): only the leader orders; a
 * follower refuses ledgered publishes with LMQ_BATCH_ERR_NOT_LEADER (the
 * broker answers 0x97 "not the leader: node N at HOST:PORT"); one batch
 * in flight at a time; no Raft snapshots.
 *
 * Threads: lmq_raft_committer_setup before the broker starts the
 * committer; the ops on the broker's loop thread as ledger/batch.h says. */
#ifndef LMQ_CLUSTER_RAFT_COMMITTER_H
#define LMQ_CLUSTER_RAFT_COMMITTER_H

#include "cluster/raft_node.h"
#include "ledger/batch.h"

struct registry;

struct lmq_raft_committer_config {
    /* Node options: id, dir, members, timeouts, TLS files (copied, with
     * the members and strings). fsm and on_state are set here; join
     * (config cluster_join) makes a new node wait for `cluster add`. */
    struct lmq_raft_node_options node;
    /* Brought up to the ledger after records ordered by another node were
     * appended (replay slots, devices), on the raft thread. May be NULL. */
    struct registry *registry;
    /* Forwarding (cluster/raft_forward.h): a follower sends its batches
     * to the leader over the cluster channel (Raft port + port_offset, the
     * node's TLS files) instead of refusing them. */
    struct {
        bool enabled;
        unsigned port_offset;  /* 1..65534 */
        unsigned timeout_ms;   /* a forwarded batch's bound, then refused */
        unsigned max_inflight; /* forwarded batches a leader proposes at once */
    } forward;
};

/* Stores the configuration lmq_raft_committer's start uses. 0, or -1 if
 * something does not fit (a string too long, too many members). */
int lmq_raft_committer_setup(const struct lmq_raft_committer_config *c);

extern const struct lmq_committer_ops lmq_raft_committer;

#endif
