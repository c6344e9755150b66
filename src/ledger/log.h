/* The ledger as a library: an append-only RFC 9162 Merkle log stored under
 * <datadir>/ledger/ (segments with CRC-framed records and commit frames,
 * an offset index, every complete Merkle node, a block index), with
 * hash-chained blocks and one signed C2SP checkpoint per committed batch.
 * Formats: docs/FORMATS.md "Ledger data directory" and the sections after
 * it. No dependency on the broker or the network.
 *
 * Durability: a batch is ONE write to the current segment (its record
 * frames followed by a commit frame that carries the block header and the
 * signed checkpoint) and, under LEDGER_SYNC_ALWAYS, ONE fdatasync of that
 * segment. The commit frame is the commit point; the index, node and block
 * files are derived from the segments, written after the commit and synced
 * lazily, and rebuilt from the segments on open when they lag. On open a
 * torn tail after the last commit frame is cut off (and reported); any
 * other damage makes ledger_open fail naming the file and byte offset.
 *
 * Threads: a struct ledger is used by one thread at a time (the caller
 * serialises; no internal locks). Read-only handles (opts.read_only) take
 * no lock and may be opened while a writer runs, in another process or on
 * another thread; they see the log as of their open or last
 * ledger_refresh. Memory use does not grow with the log (node files are
 * read through shared mappings: page cache, not heap). */
#ifndef LMQ_LEDGER_LOG_H
#define LMQ_LEDGER_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ledger/block.h"
#include "ledger/merkle.h"
#include "ledger/receipt.h"

#define LEDGER_DEFAULT_ORIGIN "ledgermq.local/default"
#define LEDGER_MAX_BATCH 100000       /* records per ledger_append_batch */
#define LEDGER_MAX_RECORD (16u << 20) /* bytes of one record */
#define LEDGER_MAX_CHECKPOINT 8192    /* bytes of one signed checkpoint note */

enum ledger_sync {
    LEDGER_SYNC_ALWAYS = 0, /* fdatasync every batch before it counts as committed */
    LEDGER_SYNC_BATCH = 1,  /* no fdatasync per batch (the OS writes back);
                               a power failure may lose recent batches */
};

enum ledger_err {
    LEDGER_ERR_CORRUPT = -400,      /* damaged log: open refuses, err names file/offset */
    LEDGER_ERR_LOCKED = -401,       /* another process holds <datadir>/ledger/LOCK */
    LEDGER_ERR_FAILED = -402,       /* an earlier write/sync failed: handle is unusable */
    LEDGER_ERR_ORIGIN = -403,       /* options origin differs from the stored one */
    LEDGER_ERR_READONLY = -404,     /* append on a read-only handle */
    LEDGER_ERR_INCONSISTENT = -405, /* new tree does not extend the last signed one */
    LEDGER_ERR_NOCHECKPOINT = -406, /* no checkpoint at that tree size */
    LEDGER_ERR_UNCREATED = -407,    /* no_create: creation was interrupted before META */
};

struct ledger_options {
    /* Log origin (checkpoint first line and key name). When creating a
     * log it is stored in META; when opening one it must match unless it
     * is NULL (= use the stored origin). Default LEDGER_DEFAULT_ORIGIN. */
    const char *origin;
    enum ledger_sync sync; /* default LEDGER_SYNC_ALWAYS */
    const char *key_path;  /* node key; NULL = <datadir>/node.key */
    bool read_only;        /* no lock, no recovery, no key creation */
    uint64_t segment_max;  /* roll segments at this size; default 256 MiB */
    /* Read-write open of an existing ledger only: never creates the data
     * dir, META or the node key. A ledger dir whose creation was
     * interrupted before META was written (nothing committed) gives
     * LEDGER_ERR_UNCREATED and is left as it is; no ledger dir, -ENOENT. */
    bool no_create;
};

struct ledger;

/* One record to append (the caller's bytes; not retained). */
struct ledger_record_buf {
    const uint8_t *data;
    size_t len;
};

/* What a committed batch became. */
struct ledger_commit {
    uint64_t height;
    uint64_t first_index;
    uint64_t count;
    uint64_t tree_size;
    uint8_t root[32];
    uint8_t block_hash[32];
};

void ledger_options_default(struct ledger_options *o);
const char *ledger_strerror(int err);

/* Opens (read-write: creating if needed, taking the LOCK flock, creating
 * the node key with mode 0600 on first use, recovering a torn tail) the
 * ledger in <datadir>/ledger/. On failure returns a negative code and a
 * one-line reason (file and byte offset for corruption) in err. The caller
 * owns *out and releases it with ledger_close.
 * Creation is crash-safe: META (synced) comes before the node key, which
 * comes before the first segment. A ledger dir without META and without
 * a segment is a creation interrupted by a crash (nothing committed): a
 * read-write open completes it (logged), a read-only open sees an empty
 * ledger (logged; origin "" unless opts.origin). A segment without META,
 * or without the node key, is reported (LEDGER_ERR_CORRUPT); a missing
 * key is then never replaced by a new one. */
int ledger_open(const char *datadir, const struct ledger_options *opts, struct ledger **out,
                char *err, size_t errlen);
/* Read-only handles: catches up with blocks a writer (another process or
 * another thread's read-write handle) committed since the open or the last
 * refresh; checks the new last block's commit frame, checkpoint and root.
 * A read-only handle per reader thread plus ledger_refresh is how readers
 * run beside the writer. No-op (0) on read-write handles. 0,
 * LEDGER_ERR_CORRUPT or -errno. */
int ledger_refresh(struct ledger *l);
/* Syncs the derived files (read-write handles), releases the lock, frees l. */
void ledger_close(struct ledger *l);

/* Appends n (1..LEDGER_MAX_BATCH) records as one block and signs its
 * checkpoint. The records are copied; the caller keeps ownership. On
 * success the batch is committed (durable when sync is ALWAYS) and out
 * (may be NULL) describes it. On an I/O error the handle becomes unusable
 * (LEDGER_ERR_FAILED from then on; reopen to recover). */
int ledger_append_batch(struct ledger *l, const struct ledger_record_buf *recs, size_t n,
                        uint64_t time_ms, struct ledger_commit *out);

/* Block metadata that a replicated log must make identical on every node
 * (so that every node signs the same checkpoint body and the signatures
 * combine as cosignatures): the leader's batch time and key ID. */
struct ledger_batch_info {
    uint64_t time_ms;         /* block time, ms since the epoch */
    uint32_t proposer_key_id; /* block signer field; 0 = this node's key ID */
};
/* ledger_append_batch with explicit block metadata; same contract. */
int ledger_append_batch_ex(struct ledger *l, const struct ledger_record_buf *recs, size_t n,
                           const struct ledger_batch_info *info, struct ledger_commit *out);

uint64_t ledger_size(const struct ledger *l);   /* records in the log */
uint64_t ledger_height(const struct ledger *l); /* number of blocks */
void ledger_root(const struct ledger *l, uint8_t out[32]);
const char *ledger_origin(const struct ledger *l);
void ledger_public_key(const struct ledger *l, uint8_t pk[32]);
/* Writes the node's verifier key string (NUL-terminated); length or <0. */
ssize_t ledger_verifier_key(const struct ledger *l, char *out, size_t cap);

/* Copies record index into buf. 0 and *len; -ENOSPC with *len = needed
 * size if cap is too small; -ERANGE if index >= size; LEDGER_ERR_CORRUPT
 * on a CRC mismatch; -errno on I/O errors. */
int ledger_get(struct ledger *l, uint64_t index, uint8_t *buf, size_t cap, size_t *len);
/* Calls fn(ctx, index, record, len) for each record of [from, to) in
 * order, reading the index and the segments in large sequential chunks
 * (a scan of the whole log costs a few reads per MiB, not three per
 * record). Each frame's CRC is checked. The record bytes are valid only
 * during the call. 0; fn's first non-zero return (the scan stops); -ERANGE
 * if to > size; LEDGER_ERR_CORRUPT; -ENOMEM; -errno on I/O errors. */
typedef int (*ledger_scan_fn)(void *ctx, uint64_t index, const uint8_t *rec, size_t len);
int ledger_scan(struct ledger *l, uint64_t from, uint64_t to, ledger_scan_fn fn, void *ctx);
/* Stored leaf hash of record index. */
int ledger_leaf_hash(struct ledger *l, uint64_t index, uint8_t out[32]);
/* Hash of the complete subtree (level, index) (merkle_get_node_fn form;
 * ctx is a struct ledger *). Only nodes inside the current size exist. */
int ledger_get_node(void *ctx, unsigned level, uint64_t index, uint8_t out[32]);
/* Root of the first size records (size <= ledger_size). */
int ledger_root_at(struct ledger *l, uint64_t size, uint8_t out[32]);
/* Proofs from stored nodes: O(log n) reads. proof holds MERKLE_MAX_PROOF. */
int ledger_inclusion_proof(struct ledger *l, uint64_t index, uint64_t size, uint8_t proof[][32],
                           size_t *n);
int ledger_consistency_proof(struct ledger *l, uint64_t old_size, uint64_t new_size,
                             uint8_t proof[][32], size_t *n);

/* Block height (0-based, < ledger_height). */
int ledger_block(struct ledger *l, uint64_t height, struct ledger_block *out);
/* Height of the block that holds record index. */
int ledger_block_of_index(struct ledger *l, uint64_t index, uint64_t *height);
/* Height of the block whose tree size is exactly size, or -ENOENT. */
int ledger_block_at_size(struct ledger *l, uint64_t size, uint64_t *height);

/* The signed checkpoint note of a block (NUL-terminated in buf). 0 and
 * *len, -ENOSPC, -ENOENT for no blocks / bad height. */
int ledger_block_checkpoint(struct ledger *l, uint64_t height, char *buf, size_t cap, size_t *len);
int ledger_latest_checkpoint(struct ledger *l, char *buf, size_t cap, size_t *len);

/* Fills a receipt for record index at the checkpointed tree size size (0 =
 * the latest checkpoint): r->record and r->checkpoint point into scratch
 * (needs record length + LEDGER_MAX_CHECKPOINT bytes). Returns 0,
 * LEDGER_ERR_NOCHECKPOINT if no block ends at size, -ERANGE, -ENOSPC. */
int ledger_receipt(struct ledger *l, uint64_t index, uint64_t size, uint8_t *scratch,
                   size_t scratch_cap, struct receipt *r);

#endif
