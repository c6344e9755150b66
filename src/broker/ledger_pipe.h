/* The ledger pipeline as the broker sees it: ledgered topics (config
 * `ledger_topic`), the verification of signed envelopes on the worker pool,
 * the bounded ingest queue, and what comes back on the loop thread after a
 * batch is committed (acks, delivery, the commit event below).
 *
 *   PUBLISH on a ledgered topic (loop thread, broker.c)
 *     -> signed: verify job on the worker pool (identity/verify.h: decode,
 *        registry lookup, Ed25519 over the protected header as received,
 *        clock skew); attested: record built on the loop thread
 *     -> per-publisher FIFO (acks and records keep each connection's order)
 *     -> ingest queue (bounded in messages and bytes, config
 *        ledger_queue_messages / ledger_queue_bytes; full = the sockets of
 *        ledgered publishers are paused)
 *     -> the committer (ledger/batch.h; cluster/batcher.h): batch
 *        (ledger_batch_max records or ledger_batch_ms) -> apply on the
 *        committer thread (sequence and replay check, append, fdatasync,
 *        block, signed checkpoint)
 *     -> loop thread: PUBACK / PUBREC per publisher in order, then routing
 *        to subscribers (MQTT 5 user property "ledger-index"), then the
 *        commit event (bk_ledger_committed).
 *
 * Loop thread only, except where a comment says otherwise. The read-write
 * ledger handle belongs to the committer thread from the moment the
 * pipeline starts: other code (receipts, proofs) reads the log through a
 * read-only handle of its own (ledger_options.read_only + ledger_refresh
 * after each commit event). */
#ifndef LMQ_BROKER_LEDGER_PIPE_H
#define LMQ_BROKER_LEDGER_PIPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ledger/block.h"

struct lmq_broker;
struct lmq_client;

/* ------------------------------------------------------------------ */
/* The commit event (for the $ledger/... topics: receipts, checkpoint,
 * blocks). */

/* One record committed in the batch. */
struct bk_commit_record {
    uint64_t index;        /* its ledger index */
    const uint8_t *record; /* the record bytes exactly as in the log */
    size_t record_len;
    uint8_t leaf_hash[32]; /* RFC 9162 leaf hash SHA-256(0x00 || record) */
    const char *client_id; /* NUL-terminated MQTT client id of the publisher
                              (or of the bk_ledger_submit caller); "" if none */
    uint8_t kind;          /* enum ledger_record_kind */
};

/* One committed batch (= one block and one signed checkpoint). Every
 * pointer is valid only during the bk_ledger_committed call. */
struct bk_commit_event {
    uint64_t height;                               /* block height */
    uint8_t block_header[LEDGER_BLOCK_HEADER_LEN]; /* the 112 header bytes */
    uint8_t block_hash[32];                        /* SHA-256 of the header */
    const char *checkpoint;                        /* signed note text, NUL-terminated */
    size_t checkpoint_len;
    uint64_t tree_size;                  /* after the batch */
    uint8_t root[32];                    /* root at tree_size */
    uint64_t first_index;                /* = recs[0].index */
    const struct bk_commit_record *recs; /* in index order */
    size_t n_recs;
};

/* Called on the loop thread after each committed batch, after the acks of
 * its records were queued and its messages routed (so a receipt published
 * from here reaches a subscriber after the message's PUBACK). The
 * receipts engineer implements it in src/broker/ledger_api.c; until then a
 * weak no-op default in ledger_pipe.c is linked. */
void bk_ledger_committed(struct lmq_broker *b, const struct bk_commit_event *ev);

/* ------------------------------------------------------------------ */
/* Submitting an already-built record (e.g. an operator-signed registry
 * record received on $ledger/admin/...). */

enum bk_submit_err {
    BK_SUBMIT_ERR_UNAVAILABLE = -3000, /* no ledger (damaged or absent) or shutting down */
    BK_SUBMIT_ERR_FULL = -3001,        /* the ingest queue is full: try again later */
    BK_SUBMIT_ERR_RECORD = -3002,      /* not a decodable record of a kind accepted here */
    BK_SUBMIT_ERR_REFUSED = -3003,     /* the apply stage refused it (reason says why,
                                          e.g. the registry rule it breaks) */
    BK_SUBMIT_ERR_IO = -3004,          /* the ledger append failed */
};

/* Completion of bk_ledger_submit, on the loop thread: STATUS 0 and the
 * record's INDEX, or a BK_SUBMIT_ERR_* and a one-line REASON (NUL-terminated,
 * valid during the call). */
typedef void (*bk_submit_cb)(void *ctx, int status, uint64_t index, const char *reason);

/* Queues REC[0:LEN] (copied) for the next batch. Registry records (kinds
 * 3-5) are checked at the apply stage against the registry synced with
 * every batch before it (identity/registry.h registry_check) and refused
 * when they would have no effect; after a batch holding registry records
 * commits, the registry index is synced before any later verification
 * sees it. Message records are appended as given. CLIENT_ID (may be NULL)
 * names the submitter in the commit event. CB runs exactly once unless
 * this returns < 0 (then nothing was queued and CB never runs): 0 or
 * BK_SUBMIT_ERR_UNAVAILABLE / _FULL / _RECORD. */
int bk_ledger_submit(struct lmq_broker *b, const uint8_t *rec, size_t len, const char *client_id,
                     bk_submit_cb cb, void *ctx);

/* A $ledger/admin/cluster request handed to the ordering service
 * (lmq_committer_ops.admin, ledger/batch.h; REQ[0:LEN] is read during the
 * call). 0 when taken (R->done runs once, on the committer's thread), > 0
 * an MQTT 5 reason code to refuse it with (WHY[0:CAP] says why), or
 * BK_SUBMIT_ERR_UNAVAILABLE: not a cluster node, or its pipeline is not
 * running. Loop thread. */
struct lmq_committer_admin;
int bk_ledger_cluster_admin(struct lmq_broker *b, const uint8_t *req, size_t len,
                            struct lmq_committer_admin *r, char *why, size_t cap);

/* ------------------------------------------------------------------ */
/* Wiring (cmd/ledgermqd.c): the ordering/commit service ledgered topics
 * use (ledger/batch.h; cluster/batcher.h's lmq_batcher_committer for a
 * single node). Process-wide; set before the broker gets its services.
 * Without one, ledgered messages are refused ("ledger unavailable"). */
struct lmq_committer_ops;
void bk_ledger_set_committer(const struct lmq_committer_ops *ops);

#endif
