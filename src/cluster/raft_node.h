/* Replication of opaque commands through Raft (libraft 0.22, the cowsql
 * fork, with its libuv disk I/O and TCP transport), independent of the
 * ledger: one node of a statically configured cluster runs on the caller's
 * libuv loop, the leader proposes byte strings, and every node's apply
 * callback sees each committed command once per process lifetime, in log
 * order, with exactly the bytes that were proposed.
 *
 * Invariants kept here so that callers need not know libraft's hazards
 * (DESIGN.md, dependencies):
 *  - every entry handed to libraft is a 16-byte frame header followed by the
 *    payload and zero padding to a multiple of 8 bytes, in an 8-byte aligned
 *    buffer; the apply side checks the frame and passes on only the payload;
 *  - libraft's FSM apply never returns non-zero (that would stall the state
 *    machine forever): a frame that does not decode is skipped identically
 *    on every node and logged, and the application's own rejections travel
 *    in the int result of its apply callback;
 *  - snapshot threshold and trailing default high (0.22.1 can crash a
 *    follower when a local snapshot and an InstallSnapshot overlap).
 *
 * Forwarding: libraft has none. lmq_raft_propose on a node that is not the
 * leader fails with LMQ_RAFT_ERR_NOT_LEADER at once; the caller asks
 * lmq_raft_leader for the leader's id and address and forwards there
 * itself (docs/CLUSTER.md: the forwarding channel).
 *
 * Threads: every function and every callback runs on the loop thread given
 * to lmq_raft_node_start. */
#ifndef LMQ_CLUSTER_RAFT_NODE_H
#define LMQ_CLUSTER_RAFT_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#define LMQ_RAFT_MAX_MEMBERS 16
#define LMQ_RAFT_ADDRESS_MAX 128 /* HOST:PORT, NUL included */
#define LMQ_RAFT_FRAME_HEADER 16
#define LMQ_RAFT_MAX_PAYLOAD (64u * 1024 * 1024) /* hard ceiling of one command */

/* Error codes (negative, distinct from libuv's and the ledger's). */
enum lmq_raft_err {
    LMQ_RAFT_ERR_NOT_LEADER = -3200, /* propose on a non-leader: forward (lmq_raft_leader) */
    LMQ_RAFT_ERR_LOST = -3201,       /* leadership lost before the entry committed: the
                                        outcome is unknown, it may still be applied */
    LMQ_RAFT_ERR_TOO_BIG = -3202,    /* payload over max_payload */
    LMQ_RAFT_ERR_SHUTDOWN = -3203,   /* the node is stopping */
    LMQ_RAFT_ERR_BUSY = -3204,       /* too many proposals in flight (max_inflight) */
    LMQ_RAFT_ERR_CONFIG = -3205,     /* bad options (reason logged) */
    LMQ_RAFT_ERR_NOMEM = -3206,
    LMQ_RAFT_ERR_IO = -3207,       /* libraft (disk, transport) failed; reason logged */
    LMQ_RAFT_ERR_FRAME = -3208,    /* a committed entry did not decode (never applied) */
    LMQ_RAFT_ERR_BADID = -3209,    /* membership: unknown id, or already a member */
    LMQ_RAFT_ERR_CHANGE = -3210,   /* membership: another change is still in progress */
    LMQ_RAFT_ERR_TRANSFER = -3211, /* leadership did not move to the node asked for */
};

/* One static member of the cluster (config `cluster_node ID HOST:PORT`). */
struct lmq_raft_member {
    uint64_t id;                        /* >= 1, unique */
    char address[LMQ_RAFT_ADDRESS_MAX]; /* HOST:PORT of its Raft port, unique */
};

/* The state machine. All callbacks on the loop thread. */
struct lmq_raft_fsm {
    /* Applies the committed command DATA[0:LEN] at Raft log INDEX (strictly
     * increasing). Called on every node, once per process lifetime per
     * entry; after a restart the entries after the last snapshot are
     * applied again, so an FSM whose state is durable on its own (the
     * ledger) must skip indices it already holds (keep the last applied
     * index with the state). DATA is 8-byte aligned and valid only during
     * the call. Must be deterministic: the same commands give the same
     * results on every node. The int returned (any value, e.g. 0 or an
     * application rejection code) is handed to the proposer's callback on
     * the node that proposed it. Cannot fail the log: there is no error
     * path back into Raft. */
    int (*apply)(void *ctx, uint64_t index, const uint8_t *data, size_t len);
    /* Captures the state up to the last applied index into *DATA (malloc'd,
     * taken and freed by this layer) / *LEN. Return 0, or < 0 to skip this
     * snapshot (it is retried at the next threshold). May be NULL: then no
     * snapshot is ever taken and the Raft log grows without bound. */
    int (*snapshot)(void *ctx, uint8_t **data, size_t *len);
    /* Replaces the state with a snapshot taken by another node's snapshot
     * callback (catch-up of a node that is too far behind). DATA is valid
     * only during the call. Return 0, or < 0 if it cannot be installed
     * (libraft then treats the node as failed). May be NULL only if
     * snapshot is NULL on every node. */
    int (*restore)(void *ctx, const uint8_t *data, size_t len);
};

/* Leadership and membership changes, for logs, $SYS and the forwarding
 * layer. May be NULL. Called after the change, on the loop thread. */
typedef void (*lmq_raft_state_cb)(void *ctx, int state, uint64_t term, uint64_t leader_id);

enum lmq_raft_state {
    LMQ_RAFT_UNAVAILABLE = 0, /* not started or stopping */
    LMQ_RAFT_FOLLOWER = 1,
    LMQ_RAFT_CANDIDATE = 2,
    LMQ_RAFT_LEADER = 3,
};

struct lmq_raft_node_options {
    uint64_t id;     /* this node's id: must be one of members */
    const char *dir; /* Raft data directory (created 0700 if missing) */
    const struct lmq_raft_member *members;
    size_t n_members;              /* 1..LMQ_RAFT_MAX_MEMBERS: the bootstrap configuration,
                                      used only when DIR holds no Raft state yet */
    const char *bind_address;      /* HOST:PORT to listen on; NULL = this member's address */
    unsigned election_timeout_ms;  /* 0 = 1000 */
    unsigned heartbeat_timeout_ms; /* 0 = 100 */
    unsigned snapshot_threshold;   /* entries between snapshots; 0 = 65536 */
    unsigned snapshot_trailing;    /* entries kept after a snapshot; 0 = 32768 */
    uint32_t max_payload;          /* 0 = 16 MiB; at most LMQ_RAFT_MAX_PAYLOAD */
    uint32_t max_inflight;         /* proposals awaiting their result; 0 = 4096 */
    struct lmq_raft_fsm fsm;
    void *fsm_ctx;
    lmq_raft_state_cb on_state; /* may be NULL */
    void *state_ctx;
    /* Cluster traffic over mutual TLS 1.3 (cluster/raft_tls.h): all three
     * PEM files, or none = libraft's plain TCP transport (no
     * authentication, no encryption: tests and trusted networks only). */
    const char *tls_certfile;  /* certificate with CN ledgermq-node-<id> */
    const char *tls_keyfile;   /* its key, mode 0600 */
    const char *tls_cafile;    /* the cluster CA */
    unsigned tls_handshake_ms; /* a peer's TLS handshake deadline; 0 = 10000 */
    /* Joining an existing cluster (`ledgermq cluster add` on its leader):
     * never bootstrap DIR; the node waits until the leader adds it. */
    bool join;
};

struct lmq_raft_node;

/* The TCP_USER_TIMEOUT of N's Raft connections (cluster/raft_tcp.h, from
 * its election timeout), for other connections between the nodes. */
unsigned lmq_raft_node_stuck_ms(const struct lmq_raft_node *n);

/* Creates and starts a node on LOOP: opens (or bootstraps) the Raft state
 * in o->dir, listens on the node's address, and starts taking part in
 * elections. Options are copied. Returns 0 and *OUT, or an LMQ_RAFT_ERR_*
 * (reason logged). */
int lmq_raft_node_start(uv_loop_t *loop, const struct lmq_raft_node_options *o,
                        struct lmq_raft_node **out);

/* Stops the node: pending proposals complete with LMQ_RAFT_ERR_SHUTDOWN
 * (or LMQ_RAFT_ERR_LOST), the transport and disk I/O close, then DONE(CTX)
 * runs (may be NULL) and the node is freed. Run the loop until DONE ran.
 * No other call on N after this one. */
void lmq_raft_node_stop(struct lmq_raft_node *n, void (*done)(void *ctx), void *ctx);

/* Completion of a proposal, exactly once unless lmq_raft_propose returned
 * < 0: STATUS 0 = committed and applied locally at INDEX, RESULT what the
 * local apply callback returned; else STATUS < 0 (LMQ_RAFT_ERR_LOST,
 * _SHUTDOWN, _IO) and INDEX/RESULT 0. */
typedef void (*lmq_raft_propose_cb)(void *ctx, int status, uint64_t index, int result);

/* Proposes DATA[0:LEN] (copied; LEN >= 1). Leader only: on a follower or
 * candidate returns LMQ_RAFT_ERR_NOT_LEADER at once and CB never runs;
 * also LMQ_RAFT_ERR_TOO_BIG, _BUSY, _SHUTDOWN, _NOMEM, _IO. */
int lmq_raft_propose(struct lmq_raft_node *n, const void *data, size_t len, lmq_raft_propose_cb cb,
                     void *ctx);

/* Where to forward: the current leader's id and address as this node
 * knows them (0 and NULL when none is known). The address stays valid
 * until the next loop iteration. */
void lmq_raft_leader(struct lmq_raft_node *n, uint64_t *id, const char **address);

int lmq_raft_state(struct lmq_raft_node *n); /* enum lmq_raft_state */
uint64_t lmq_raft_term(struct lmq_raft_node *n);
uint64_t lmq_raft_id(const struct lmq_raft_node *n);
uint64_t lmq_raft_last_applied(struct lmq_raft_node *n);
uint64_t lmq_raft_commit_index(struct lmq_raft_node *n);
/* Proposals awaiting their result. */
size_t lmq_raft_inflight(const struct lmq_raft_node *n);

/* Leader only: appends a barrier entry (no command: the FSM never sees
 * it). Followers learn the leader's commit index with the next entry
 * replicated to them or the next heartbeat; a barrier sends it at once,
 * so a follower applies what the leader committed without waiting up to
 * two heartbeats (forwarding: the follower acks its publishers only once
 * it applied their entry). 0, LMQ_RAFT_ERR_NOT_LEADER, _SHUTDOWN, _NOMEM
 * or _IO. */
int lmq_raft_barrier(struct lmq_raft_node *n);

/* Membership, on the leader (else LMQ_RAFT_ERR_NOT_LEADER at once; also
 * _BADID, _CHANGE, _SHUTDOWN). CB(CTX, STATUS) runs exactly once unless
 * the call returned < 0; STATUS 0 = done and committed. */
typedef void (*lmq_raft_change_cb)(void *ctx, int status);

/* Adds node ID at ADDRESS (HOST:PORT) as a voter: first as a non-voting
 * member that catches up, then promoted (libraft's catch-up rounds). The
 * new node runs with options.join. */
int lmq_raft_add(struct lmq_raft_node *n, uint64_t id, const char *address, lmq_raft_change_cb cb,
                 void *ctx);
/* Removes node ID from the configuration (the leader itself too: it
 * steps down once the change is committed). */
int lmq_raft_remove(struct lmq_raft_node *n, uint64_t id, lmq_raft_change_cb cb, void *ctx);
/* Hands leadership to voter ID (0 = the most up-to-date one). STATUS 0
 * when ID (or, for 0, another node) became leader, LMQ_RAFT_ERR_TRANSFER
 * when the election timeout passed without that. */
int lmq_raft_transfer(struct lmq_raft_node *n, uint64_t id, lmq_raft_change_cb cb, void *ctx);

/* The current configuration as this node knows it (possibly not yet
 * committed): up to CAP members into OUT with their role (voter 1,
 * standby 0, spare 2 = libraft's RAFT_VOTER/STANDBY/SPARE). Returns the
 * number of members (may exceed CAP). */
struct lmq_raft_member_info {
    uint64_t id;
    char address[LMQ_RAFT_ADDRESS_MAX];
    int role;
};
size_t lmq_raft_members(struct lmq_raft_node *n, struct lmq_raft_member_info *out, size_t cap);

const char *lmq_raft_strerror(int err);
const char *lmq_raft_state_name(int state);

/* Frame codec (pure; exposed for tests and fuzzing). lmq_raft_frame_len
 * is the padded size of a frame holding LEN payload bytes (0 if too big).
 * lmq_raft_frame_encode writes it into OUT (that many bytes). Decode checks
 * BUF[0:LEN] and returns 0 with *PAYLOAD, *PAYLOAD_LEN pointing into BUF,
 * or LMQ_RAFT_ERR_FRAME. */
size_t lmq_raft_frame_len(size_t len);
void lmq_raft_frame_encode(uint8_t *out, const void *data, size_t len);
int lmq_raft_frame_decode(const uint8_t *buf, size_t len, const uint8_t **payload,
                          size_t *payload_len);

/* Parses "HOST:PORT" for a member address: host non-empty without ':'
 * (libraft's TCP transport takes IPv4 addresses or host names), port
 * 1..65535, total below LMQ_RAFT_ADDRESS_MAX. 0 or -1. */
int lmq_raft_address_check(const char *address);

#endif
