/* What the cluster replicates: one Raft command per ledger batch, the
 * verified records exactly as the ledger will store them, tagged with the
 * node that formed the batch (ORIGIN, its Raft id) and that node's batch
 * sequence number (SEQ, 1, 2, ...). Pure codec, no I/O.
 *
 *   0  "LMQB"          magic
 *   4  u8  version = 2 (decoders also take 1, see below)
 *   5  u8  flags = 0   (reserved: decoders refuse other values)
 *   6  u16 reserved = 0
 *   8  u64 origin      (>= 1)
 *  16  u64 seq         (>= 1)
 *  24  u32 n           records (1..LEDGER_MAX_BATCH)
 *  28  u32 reserved = 0
 *  32  n times: u32 length (1..LEDGER_MAX_RECORD), u8 record flags, then
 *      that many bytes of record; nothing after the last record.
 * Record flags: bit 0 (LMQ_BATCH_F_DUP) = the PUBLISH carried the MQTT DUP
 * flag (a resend: answered with the existing index when its first copy is
 * in the log, docs/BROKER.md); the other bits are 0 (refused otherwise).
 * Version 1 (the first slice) is the same without the flags byte (every
 * record DUP = 0); the encoder writes version 2 only.
 * All integers little endian. The whole command is then framed and padded
 * by raft_node (LMQR frame).
 *
 * Why ORIGIN and SEQ: the proposer matches the applied command to its
 * waiting publishers by them (also when the batch went through forwarding
 * to the leader), and the apply rule "a batch whose SEQ is not above the
 * last one applied from ORIGIN is a no-op" makes a forwarded batch that is
 * retried after a leader change (LMQ_RAFT_ERR_LOST: outcome unknown) apply
 * at most once, identically on every node (the per-origin last SEQ is
 * state derived from the log and belongs in the snapshot).
 *
 * The decoder validates the whole command before the first record is
 * handed out, so a malformed command is refused as a whole on every node. */
#ifndef LMQ_CLUSTER_RAFT_BATCH_H
#define LMQ_CLUSTER_RAFT_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ledger/batch.h"

#define LMQ_RAFT_BATCH_HEADER 32

enum lmq_raft_batch_err {
    LMQ_RAFT_BATCH_ERR_SHORT = -3300,    /* truncated header or record */
    LMQ_RAFT_BATCH_ERR_MAGIC = -3301,    /* not "LMQB" version 1 or 2 with zero flags/reserved */
    LMQ_RAFT_BATCH_ERR_ID = -3302,       /* origin or seq 0 */
    LMQ_RAFT_BATCH_ERR_COUNT = -3303,    /* n out of 1..LEDGER_MAX_BATCH */
    LMQ_RAFT_BATCH_ERR_LENGTH = -3304,   /* a record length out of 1..LEDGER_MAX_RECORD */
    LMQ_RAFT_BATCH_ERR_TRAILING = -3305, /* bytes after the last record */
    LMQ_RAFT_BATCH_ERR_NOMEM = -3306,
    LMQ_RAFT_BATCH_ERR_FLAGS = -3307, /* a record flags byte with unknown bits */
};

struct lmq_raft_batch {
    uint8_t version; /* 1 or 2 */
    uint64_t origin;
    uint64_t seq;
    uint32_t n;
    uint8_t flags; /* LMQ_BATCH_F_* of the record lmq_raft_batch_next returned last */
    /* reader state */
    const uint8_t *next;
    uint32_t left;
};

/* Encodes the N (1..LEDGER_MAX_BATCH) records of the list ITEMS (linked
 * by next, ledger/batch.h, as the committer hands them out; each with its
 * flags, LMQ_BATCH_F_*) as a version 2 command into a malloc'd buffer
 * *OUT of *OUT_LEN bytes (the caller frees it). 0 or an
 * LMQ_RAFT_BATCH_ERR_*. */
int lmq_raft_batch_encode(uint64_t origin, uint64_t seq, const struct lmq_batch_item *items,
                          size_t n, uint8_t **out, size_t *out_len);

/* Checks BUF[0:LEN] completely and prepares B to read its records. 0 or
 * an LMQ_RAFT_BATCH_ERR_*. */
int lmq_raft_batch_open(struct lmq_raft_batch *b, const uint8_t *buf, size_t len);

/* The next record (a view into the buffer given to open; its flags in
 * B->flags): true, or false after the last one. */
bool lmq_raft_batch_next(struct lmq_raft_batch *b, const uint8_t **rec, size_t *len);

const char *lmq_raft_batch_strerror(int err);

#endif
