/* Frames of the cluster channel (cluster/channel.h): node-to-node
 * messages that are not Raft traffic. Today two kinds: a follower forwards
 * a ledger batch to the leader (FORWARD) and the leader answers it once
 * the entry is applied (RESULT); the header leaves room for more kinds
 * (cosignatures, cluster-wide pub/sub) without changing the stream. Pure
 * codec, no I/O; docs/FORMATS.md "Cluster channel frames" is the format.
 *
 *   0  u32 length    bytes after this field (12 + body), 12..max
 *   4  u8  type      LMQ_CHANNEL_FORWARD, LMQ_CHANNEL_RESULT
 *   5  u8  version = 1
 *   6  u16 reserved = 0
 *   8  u64 seq       the forwarding node's batch sequence (>= 1)
 *  16  body
 *
 * FORWARD body: one raft_batch command (cluster/raft_batch.h, "LMQB"...),
 *   whose origin must be the sending node and whose seq the frame's.
 * RESULT body:
 *   0  i32 status    LMQ_CHANNEL_OK or an LMQ_CHANNEL_REFUSED_* code
 *   4  u32 n         per-record results that follow (0 when not known)
 *   8  u64 raft index of the entry (OK), else 0
 *  16  n times: i32 status (LMQ_BATCH_APPENDED / _DUPLICATE / < 0),
 *      u32 reserved = 0, u64 ledger index
 * All integers little endian. The decoder checks a whole frame before it
 * hands out its body, and takes frames out of a byte stream one by one. */
#ifndef LMQ_CLUSTER_CHANNEL_FRAME_H
#define LMQ_CLUSTER_CHANNEL_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define LMQ_CHANNEL_HEADER 16
#define LMQ_CHANNEL_RESULT_HEAD 16
#define LMQ_CHANNEL_RESULT_ITEM 16
/* Largest frame: a forwarded command of up to 64 MiB (the committer's
 * batch bound) plus the header. */
#define LMQ_CHANNEL_MAX_FRAME ((64u << 20) + 4096u)

enum lmq_channel_type {
    LMQ_CHANNEL_FORWARD = 1,
    LMQ_CHANNEL_RESULT = 2,
};

/* RESULT status: OK (applied at the raft index), or why not. All but BAD
 * leave the outcome to a retry: the forwarding node sends the same batch
 * again (to the leader it then knows), which the (origin, seq) rule at
 * apply makes safe. */
enum lmq_channel_status {
    LMQ_CHANNEL_OK = 0,
    LMQ_CHANNEL_REFUSED_NOT_LEADER = -1, /* the receiver is not (or no longer) the leader */
    LMQ_CHANNEL_REFUSED_BUSY = -2,       /* too many forwarded batches in flight there */
    LMQ_CHANNEL_REFUSED_LOST = -3,       /* leadership lost before the entry applied: unknown */
    LMQ_CHANNEL_REFUSED_BAD = -4,        /* malformed, or not the sender's own batch: final */
    LMQ_CHANNEL_REFUSED_UNAVAILABLE = -5 /* the leader cannot append (stopping, broken) */
};

enum lmq_channel_err {
    LMQ_CHANNEL_ERR_PARTIAL = -3400, /* not a whole frame yet: read more */
    LMQ_CHANNEL_ERR_LENGTH = -3401,  /* length below the header or above the maximum */
    LMQ_CHANNEL_ERR_HEADER = -3402,  /* unknown type, version or non-zero reserved */
    LMQ_CHANNEL_ERR_SEQ = -3403,     /* seq 0 */
    LMQ_CHANNEL_ERR_BODY = -3404,    /* a body that does not fit its type */
    LMQ_CHANNEL_ERR_NOMEM = -3405,
};

struct lmq_channel_result_item {
    int32_t status;
    uint64_t index;
};

/* One decoded frame: views into the buffer given to decode. */
struct lmq_channel_frame {
    uint8_t type;
    uint64_t seq;
    const uint8_t *body; /* FORWARD: the command */
    size_t body_len;
    /* RESULT */
    int32_t status;
    uint64_t raft_index;
    uint32_t n_items;
    const uint8_t *items; /* n_items * LMQ_CHANNEL_RESULT_ITEM bytes; see result_item */
};

/* Takes the first frame out of BUF[0:LEN]: 0 with *F and *CONSUMED (the
 * frame's whole size), LMQ_CHANNEL_ERR_PARTIAL when BUF holds only the
 * start of a valid frame (*CONSUMED = the size needed once the length is
 * known, else 0), or another LMQ_CHANNEL_ERR_* (the stream is bad: close
 * it). MAX bounds a frame's size (0 = LMQ_CHANNEL_MAX_FRAME). */
int lmq_channel_frame_decode(const uint8_t *buf, size_t len, size_t max,
                             struct lmq_channel_frame *f, size_t *consumed);

/* Record I (< f->n_items) of a decoded RESULT. */
void lmq_channel_result_item(const struct lmq_channel_frame *f, uint32_t i,
                             struct lmq_channel_result_item *out);

/* A malloc'd FORWARD frame carrying CMD[0:LEN] into *OUT / *OUT_LEN. */
int lmq_channel_encode_forward(uint64_t seq, const uint8_t *cmd, size_t len, uint8_t **out,
                               size_t *out_len);

/* A malloc'd RESULT frame into *OUT / *OUT_LEN (ITEMS may be NULL when N
 * is 0). */
int lmq_channel_encode_result(uint64_t seq, int32_t status, uint64_t raft_index,
                              const struct lmq_channel_result_item *items, uint32_t n,
                              uint8_t **out, size_t *out_len);

const char *lmq_channel_strerror(int err);
const char *lmq_channel_status_name(int32_t status);

#endif
