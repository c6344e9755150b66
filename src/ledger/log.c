/* The ledger store: appends batches as one segment write + one fdatasync,
 * derives the index, node and block files from the segments, recovers a
 * torn tail on open and refuses anything else damaged. Invariant: the
 * segments are the truth. A batch is committed exactly when its commit
 * frame (block header + signed checkpoint) is whole in a segment; the
 * derived files never describe more than the segments hold after open,
 * and every stored node is a complete subtree of the committed tree.
 * Formats: docs/FORMATS.md "Ledger data directory". */
#include "ledger/log.h"
#include "util/crc32c.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto/hash.h"
#include "crypto/note.h"
#include "crypto/sign.h"
#include "ledger/checkpoint.h"
#include "ledger/store_int.h"
#include "util/log.h"

#define SEG_CACHE 16
#define COMMIT_MAX (LEDGER_BLOCK_HEADER_LEN + LEDGER_MAX_CHECKPOINT)
#define DERIVED_SYNC_EVERY 256 /* batches between fdatasyncs of derived files */

struct seg_slot {
    uint32_t seg;
    int fd;
};

struct replay_rec {
    uint64_t pos;
    const uint8_t *data;
    uint32_t len;
};

struct ledger {
    char dir[PATH_MAX]; /* <datadir>/ledger */
    char origin[NOTE_NAME_MAX + 1];
    enum ledger_sync sync;
    uint64_t segment_max;
    bool ro;
    bool failed;
    int lock_fd;
    bool have_pk, have_sk;
    uint8_t pk[32];
    uint8_t sk[64];
    struct note_verifier verifier;

    int index_fd;
    int blocks_fd;
    int node_fd[STORE_MAX_LEVELS];
    uint8_t *node_map[STORE_MAX_LEVELS]; /* read mappings, possibly past EOF */
    size_t node_map_len[STORE_MAX_LEVELS];
    struct seg_slot segs[SEG_CACHE];
    uint32_t cur_seg; /* segment appends go to */
    uint32_t cur_off; /* its committed length (0: file not created yet) */
    int cur_fd;

    /* Committed state. */
    uint64_t size;
    uint64_t height;
    uint8_t root[32];
    uint8_t last_block_hash[32];
    struct merkle_frontier frontier;
    char ckpt[LEDGER_MAX_CHECKPOINT];
    size_t ckpt_len;
    uint64_t ckpt_size;
    uint8_t ckpt_root[32];

    /* Staging of one batch (reused). */
    uint8_t *wbuf;
    size_t wcap;
    uint8_t *ibuf;
    size_t icap, ilen;
    uint8_t *nbuf[STORE_MAX_LEVELS];
    size_t ncap[STORE_MAX_LEVELS], nlen[STORE_MAX_LEVELS];
    int stage_err;
    unsigned batches_unsynced;

    char *err;
    size_t errlen;
};

static void seterr(struct ledger *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void seterr(struct ledger *l, const char *fmt, ...)
{
    if (!l->err || l->errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->err, l->errlen, fmt, ap);
    va_end(ap);
}

void ledger_options_default(struct ledger_options *o)
{
    memset(o, 0, sizeof *o);
    o->origin = LEDGER_DEFAULT_ORIGIN;
    o->sync = LEDGER_SYNC_ALWAYS;
    o->key_path = NULL;
    o->read_only = false;
    o->segment_max = SEG_DEFAULT_MAX;
}

const char *ledger_strerror(int err)
{
    switch (err) {
    case 0:
        return "ok";
    case LEDGER_ERR_CORRUPT:
        return "ledger is corrupt";
    case LEDGER_ERR_LOCKED:
        return "ledger is locked by another process";
    case LEDGER_ERR_FAILED:
        return "ledger handle failed after an I/O error";
    case LEDGER_ERR_ORIGIN:
        return "origin differs from the stored origin";
    case LEDGER_ERR_READONLY:
        return "ledger opened read-only";
    case LEDGER_ERR_INCONSISTENT:
        return "new tree is not an extension of the last signed checkpoint";
    case LEDGER_ERR_NOCHECKPOINT:
        return "no checkpoint at that tree size";
    case LEDGER_ERR_UNCREATED:
        return "ledger creation was interrupted before META was written";
    default:
        if (err < 0 && err > -4096)
            return strerror(-err);
        return "unknown error";
    }
}

/* ---- file handles ---- */

static int seg_fd(struct ledger *l, uint32_t seg)
{
    if (seg == l->cur_seg && l->cur_fd >= 0)
        return l->cur_fd;
    struct seg_slot *s = &l->segs[seg % SEG_CACHE];
    if (s->fd >= 0 && s->seg == seg)
        return s->fd;
    char path[PATH_MAX];
    int rc = store_seg_path(path, sizeof path, l->dir, seg);
    if (rc)
        return rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (s->fd >= 0)
        close(s->fd);
    s->fd = fd;
    s->seg = seg;
    return fd;
}

static int node_fd(struct ledger *l, unsigned level, bool create)
{
    if (level >= STORE_MAX_LEVELS)
        return -EINVAL;
    if (l->node_fd[level] >= 0)
        return l->node_fd[level];
    char path[PATH_MAX];
    int rc = store_node_path(path, sizeof path, l->dir, level);
    if (rc)
        return rc;
    int fd;
    if (l->ro)
        fd = open(path, O_RDONLY | O_CLOEXEC);
    else
        fd = open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0600);
    if (fd < 0)
        return -errno;
    l->node_fd[level] = fd;
    return fd;
}

static uint64_t file_size(int fd)
{
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        return 0;
    return (uint64_t)st.st_size;
}

/* ---- node access ---- */

static void unmap_nodes(struct ledger *l)
{
    for (unsigned k = 0; k < STORE_MAX_LEVELS; k++) {
        if (l->node_map[k])
            munmap(l->node_map[k], l->node_map_len[k]);
        l->node_map[k] = NULL;
        l->node_map_len[k] = 0;
    }
}

/* Nodes are read through a shared mapping of each level file that is made
 * larger than the file (twice its size, at least 1 MiB), so that nodes the
 * writer appends later are reachable without remapping; only nodes below
 * the committed size, which the file always holds, are ever touched. */
int ledger_get_node(void *ctx, unsigned level, uint64_t index, uint8_t out[32])
{
    struct ledger *l = ctx;
    if (level >= STORE_MAX_LEVELS || index >= (l->size >> level))
        return MERKLE_ERR_ARGS;
    uint64_t end = (index + 1) * NODE_LEN;
    if (end > l->node_map_len[level]) {
        int fd = node_fd(l, level, false);
        if (fd < 0)
            return fd;
        uint64_t want = end * 2 > (1u << 20) ? end * 2 : (1u << 20);
        want = (want + 0xfffff) & ~(uint64_t)0xfffff;
        void *m = mmap(NULL, want, PROT_READ, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED)
            return store_pread_full(fd, out, NODE_LEN, (off_t)(index * NODE_LEN));
        if (l->node_map[level])
            munmap(l->node_map[level], l->node_map_len[level]);
        l->node_map[level] = m;
        l->node_map_len[level] = want;
    }
    memcpy(out, l->node_map[level] + index * NODE_LEN, NODE_LEN);
    return 0;
}

/* get_node over stored nodes plus the nodes staged by the current batch. */
static int staged_get_node(void *ctx, unsigned level, uint64_t index, uint8_t out[32])
{
    struct ledger *l = ctx;
    uint64_t stored = level < STORE_MAX_LEVELS ? l->size >> level : 0;
    if (index < stored)
        return ledger_get_node(ctx, level, index, out);
    uint64_t k = index - stored;
    if (level >= STORE_MAX_LEVELS || (k + 1) * NODE_LEN > l->nlen[level])
        return MERKLE_ERR_ARGS;
    memcpy(out, l->nbuf[level] + k * NODE_LEN, NODE_LEN);
    return 0;
}

/* ---- staging a batch ---- */

static int grow(uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 4096;
    while (n < need)
        n *= 2;
    uint8_t *p = realloc(*buf, n);
    if (!p)
        return -ENOMEM;
    *buf = p;
    *cap = n;
    return 0;
}

static void stage_emit(void *ctx, unsigned level, uint64_t index, const uint8_t hash[32])
{
    struct ledger *l = ctx;
    (void)index;
    if (l->stage_err)
        return;
    if (grow(&l->nbuf[level], &l->ncap[level], l->nlen[level] + NODE_LEN)) {
        l->stage_err = -ENOMEM;
        return;
    }
    memcpy(l->nbuf[level] + l->nlen[level], hash, NODE_LEN);
    l->nlen[level] += NODE_LEN;
}

static void stage_reset(struct ledger *l)
{
    l->ilen = 0;
    for (unsigned k = 0; k < STORE_MAX_LEVELS; k++)
        l->nlen[k] = 0;
    l->stage_err = 0;
}

static int stage_record(struct ledger *l, struct merkle_frontier *f, const uint8_t *data,
                        size_t len, uint64_t pos)
{
    if (grow(&l->ibuf, &l->icap, l->ilen + INDEX_ENTRY_LEN))
        return -ENOMEM;
    store_index_entry(l->ibuf + l->ilen, pos, (uint32_t)len);
    l->ilen += INDEX_ENTRY_LEN;
    uint8_t leaf[32];
    merkle_leaf_hash(data, len, leaf);
    int rc = merkle_frontier_append(f, leaf, stage_emit, l);
    if (rc)
        return rc;
    return l->stage_err;
}

/* Writes the staged index entries, nodes and the block entry (in that
 * order, so a block entry implies the rest for a process crash). */
static int write_derived(struct ledger *l, const uint8_t header[LEDGER_BLOCK_HEADER_LEN],
                         uint64_t commit_pos)
{
    int rc = store_pwrite_full(l->index_fd, l->ibuf, l->ilen, (off_t)(l->size * INDEX_ENTRY_LEN));
    if (rc)
        return rc;
    for (unsigned k = 0; k < STORE_MAX_LEVELS; k++) {
        if (l->nlen[k] == 0)
            continue;
        int fd = node_fd(l, k, true);
        if (fd < 0)
            return fd;
        rc = store_pwrite_full(fd, l->nbuf[k], l->nlen[k], (off_t)((l->size >> k) * NODE_LEN));
        if (rc)
            return rc;
    }
    uint8_t e[BLOCK_ENTRY_LEN];
    store_block_entry(e, header, commit_pos);
    return store_pwrite_full(l->blocks_fd, e, sizeof e, (off_t)(l->height * BLOCK_ENTRY_LEN));
}

static int sync_derived(struct ledger *l)
{
    int rc = 0;
    if (l->index_fd >= 0 && fdatasync(l->index_fd) != 0)
        rc = -errno;
    for (unsigned k = 0; k < STORE_MAX_LEVELS; k++)
        if (l->node_fd[k] >= 0 && fdatasync(l->node_fd[k]) != 0)
            rc = -errno;
    if (l->blocks_fd >= 0 && fdatasync(l->blocks_fd) != 0)
        rc = -errno;
    l->batches_unsynced = 0;
    return rc;
}

/* Adopts a committed block as the current state. */
static void adopt_block(struct ledger *l, const struct ledger_block *b,
                        const struct merkle_frontier *f, const char *note, size_t note_len)
{
    l->size = b->tree_size;
    l->height = b->height + 1;
    memcpy(l->root, b->root, 32);
    memcpy(l->last_block_hash, b->hash, 32);
    l->frontier = *f;
    memcpy(l->ckpt, note, note_len);
    l->ckpt[note_len] = 0;
    l->ckpt_len = note_len;
    l->ckpt_size = b->tree_size;
    memcpy(l->ckpt_root, b->root, 32);
}

/* Checks a commit payload's signed checkpoint against its block. */
static int check_checkpoint(struct ledger *l, const struct ledger_block *b, const char *note,
                            size_t note_len, const char **why)
{
    struct checkpoint cp;
    if (note_len == 0 || note_len >= LEDGER_MAX_CHECKPOINT) {
        *why = "checkpoint note has a bad length";
        return -1;
    }
    if (l->have_pk) {
        if (checkpoint_verify(note, note_len, &l->verifier, 1, 1, l->origin, NULL, &cp) != 0) {
            *why = "checkpoint signature does not verify with the node key";
            return -1;
        }
    } else {
        const char *text;
        size_t text_len, nsig;
        if (note_split(note, note_len, &text, &text_len, &nsig) != 0 ||
            checkpoint_parse(text, text_len, &cp) != 0) {
            *why = "checkpoint note is malformed";
            return -1;
        }
    }
    if (cp.size != b->tree_size || memcmp(cp.root, b->root, 32) != 0 || !cp.has_block ||
        cp.block_height != b->height || memcmp(cp.block_hash, b->hash, 32) != 0) {
        *why = "checkpoint does not match its block header";
        return -1;
    }
    return 0;
}

/* ---- append ---- */

int ledger_append_batch(struct ledger *l, const struct ledger_record_buf *recs, size_t n,
                        uint64_t time_ms, struct ledger_commit *out)
{
    struct ledger_batch_info info = {.time_ms = time_ms, .proposer_key_id = 0};
    return ledger_append_batch_ex(l, recs, n, &info, out);
}

int ledger_append_batch_ex(struct ledger *l, const struct ledger_record_buf *recs, size_t n,
                           const struct ledger_batch_info *info, struct ledger_commit *out)
{
    if (!info)
        return -EINVAL;
    if (l->ro)
        return LEDGER_ERR_READONLY;
    if (l->failed)
        return LEDGER_ERR_FAILED;
    if (n == 0 || n > LEDGER_MAX_BATCH || !recs)
        return -EINVAL;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!recs[i].data && recs[i].len)
            return -EINVAL;
        if (recs[i].len > LEDGER_MAX_RECORD)
            return -EMSGSIZE;
        total += FRAME_HEADER_LEN + recs[i].len;
    }
    total += FRAME_HEADER_LEN + LEDGER_BLOCK_HEADER_LEN + LEDGER_MAX_CHECKPOINT + SEG_HEADER_LEN;
    if (total > (1u << 30))
        return -E2BIG;

    /* Where the batch goes: a batch never spans segments. */
    uint32_t seg = l->cur_seg;
    bool new_seg = l->cur_off == 0;
    if (!new_seg && l->cur_off + total > l->segment_max && l->cur_off > SEG_HEADER_LEN) {
        seg++;
        new_seg = true;
    }
    if (grow(&l->wbuf, &l->wcap, total))
        return -ENOMEM;
    size_t w = 0;
    uint32_t base = new_seg ? 0 : l->cur_off;
    if (new_seg) {
        store_seg_header(l->wbuf, seg);
        w = SEG_HEADER_LEN;
    }

    stage_reset(l);
    struct merkle_frontier f = l->frontier;
    for (size_t i = 0; i < n; i++) {
        uint64_t pos = POS_MAKE(seg, base + w);
        store_frame_header(l->wbuf + w, FRAME_RECORD, recs[i].data, recs[i].len);
        if (recs[i].len)
            memcpy(l->wbuf + w + FRAME_HEADER_LEN, recs[i].data, recs[i].len);
        w += FRAME_HEADER_LEN + recs[i].len;
        int rc = stage_record(l, &f, recs[i].data, recs[i].len, pos);
        if (rc)
            return rc;
    }

    struct ledger_block b = {
        .height = l->height,
        .first_index = l->size,
        .count = n,
        .tree_size = l->size + n,
        .time_ms = info->time_ms,
        .signer_key_id = info->proposer_key_id ? info->proposer_key_id : l->verifier.key_id,
    };
    memcpy(b.prev_hash, l->last_block_hash, 32);
    merkle_frontier_root(&f, b.root);
    uint8_t *payload = l->wbuf + w + FRAME_HEADER_LEN;
    ledger_block_encode(&b, payload);

    /* Never sign a tree that does not extend the last signed one. */
    if (l->ckpt_size > 0) {
        uint8_t proof[MERKLE_MAX_PROOF][32];
        size_t np = 0;
        int rc = l->ckpt_size == l->size ? 0 : LEDGER_ERR_INCONSISTENT;
        if (!rc)
            rc =
                merkle_consistency_proof(l->ckpt_size, b.tree_size, staged_get_node, l, proof, &np);
        if (!rc)
            rc = merkle_verify_consistency(l->ckpt_size, b.tree_size, l->ckpt_root, b.root,
                                           (const uint8_t(*)[32])proof, np);
        if (rc) {
            LMQ_ERROR("ledger: refusing to sign size %llu: not consistent with the checkpoint at "
                      "size %llu (%d)",
                      (unsigned long long)b.tree_size, (unsigned long long)l->ckpt_size, rc);
            return LEDGER_ERR_INCONSISTENT;
        }
    }

    struct checkpoint cp = {
        .origin = l->origin,
        .origin_len = strlen(l->origin),
        .size = b.tree_size,
        .has_block = true,
        .block_height = b.height,
    };
    memcpy(cp.root, b.root, 32);
    memcpy(cp.block_hash, b.hash, 32);
    char *note = (char *)payload + LEDGER_BLOCK_HEADER_LEN;
    ssize_t note_len = checkpoint_sign(&cp, l->sk, l->pk, note, LEDGER_MAX_CHECKPOINT);
    if (note_len <= 0 || note_len >= LEDGER_MAX_CHECKPOINT)
        return -EINVAL;
    size_t plen = LEDGER_BLOCK_HEADER_LEN + (size_t)note_len;
    uint64_t commit_pos = POS_MAKE(seg, base + w);
    store_frame_header(l->wbuf + w, FRAME_COMMIT, payload, plen);
    w += FRAME_HEADER_LEN + plen;

    /* The one write and the one sync. */
    int fd = l->cur_fd;
    if (new_seg) {
        char path[PATH_MAX];
        int rc = store_seg_path(path, sizeof path, l->dir, seg);
        if (rc)
            return rc;
        fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) {
            rc = -errno;
            LMQ_ERROR("ledger: cannot create %s: %s", path, strerror(-rc));
            return rc;
        }
        if (l->cur_fd >= 0)
            close(l->cur_fd);
        l->cur_fd = fd;
        l->cur_seg = seg;
        l->cur_off = 0;
    }
    int rc = store_pwrite_full(fd, l->wbuf, w, (off_t)base);
    if (!rc && l->sync == LEDGER_SYNC_ALWAYS && fdatasync(fd) != 0)
        rc = -errno;
    if (!rc && new_seg && l->sync == LEDGER_SYNC_ALWAYS)
        rc = store_fsync_dir(l->dir);
    if (rc) {
        LMQ_ERROR("ledger: writing segment " SEG_NAME_FMT " failed: %s; handle disabled", seg,
                  strerror(-rc));
        l->failed = true;
        return LEDGER_ERR_FAILED;
    }
    l->cur_off = base + (uint32_t)w;

    rc = write_derived(l, payload, commit_pos);
    if (rc) {
        LMQ_ERROR("ledger: writing derived files failed: %s; handle disabled", strerror(-rc));
        l->failed = true;
        return LEDGER_ERR_FAILED;
    }
    adopt_block(l, &b, &f, note, (size_t)note_len);
    if (new_seg || ++l->batches_unsynced >= DERIVED_SYNC_EVERY) {
        if (l->sync == LEDGER_SYNC_ALWAYS && sync_derived(l) != 0) {
            l->failed = true;
            return LEDGER_ERR_FAILED;
        }
    }
    if (out) {
        out->height = b.height;
        out->first_index = b.first_index;
        out->count = b.count;
        out->tree_size = b.tree_size;
        memcpy(out->root, b.root, 32);
        memcpy(out->block_hash, b.hash, 32);
    }
    return 0;
}

/* ---- reads ---- */

uint64_t ledger_size(const struct ledger *l)
{
    return l->size;
}
uint64_t ledger_height(const struct ledger *l)
{
    return l->height;
}
void ledger_root(const struct ledger *l, uint8_t out[32])
{
    memcpy(out, l->root, 32);
}
const char *ledger_origin(const struct ledger *l)
{
    return l->origin;
}
void ledger_public_key(const struct ledger *l, uint8_t pk[32])
{
    memcpy(pk, l->pk, 32);
}

ssize_t ledger_verifier_key(const struct ledger *l, char *out, size_t cap)
{
    if (!l->have_pk)
        return -ENOENT;
    return note_verifier_format(&l->verifier, out, cap);
}

/* Reads frame header + payload at pos into buf (payload only). */
static int read_frame(struct ledger *l, uint64_t pos, uint8_t want_type, uint8_t *buf, size_t cap,
                      size_t *len)
{
    int fd = seg_fd(l, POS_SEG(pos));
    if (fd < 0)
        return fd;
    uint8_t hdr[FRAME_HEADER_LEN];
    int rc = store_pread_full(fd, hdr, sizeof hdr, (off_t)POS_OFF(pos));
    if (rc)
        return rc;
    uint32_t n = le32_get(hdr);
    if (hdr[4] != want_type || n > FRAME_MAX_PAYLOAD)
        return LEDGER_ERR_CORRUPT;
    *len = n;
    if (n > cap)
        return -ENOSPC;
    rc = store_pread_full(fd, buf, n, (off_t)POS_OFF(pos) + FRAME_HEADER_LEN);
    if (rc)
        return rc;
    uint32_t crc = lmq_crc32c(0, hdr, 8);
    crc = lmq_crc32c(crc, buf, n);
    if (crc != le32_get(hdr + 8))
        return LEDGER_ERR_CORRUPT;
    return 0;
}

static int index_entry(struct ledger *l, uint64_t index, uint64_t *pos, uint32_t *len)
{
    uint8_t e[INDEX_ENTRY_LEN];
    int rc = store_pread_full(l->index_fd, e, sizeof e, (off_t)(index * INDEX_ENTRY_LEN));
    if (rc)
        return rc;
    return store_index_entry_parse(e, pos, len) ? LEDGER_ERR_CORRUPT : 0;
}

int ledger_get(struct ledger *l, uint64_t index, uint8_t *buf, size_t cap, size_t *len)
{
    if (index >= l->size)
        return -ERANGE;
    uint64_t pos;
    uint32_t n;
    int rc = index_entry(l, index, &pos, &n);
    if (rc)
        return rc;
    *len = n;
    if (n > cap)
        return -ENOSPC;
    size_t got;
    rc = read_frame(l, pos, FRAME_RECORD, buf, cap, &got);
    if (!rc && got != n)
        rc = LEDGER_ERR_CORRUPT;
    return rc;
}

#define SCAN_INDEX_ENTRIES 4096u /* index entries per read (64 KiB) */
#define SCAN_WINDOW (1u << 20)    /* segment bytes per read, at least */

struct scan_window {
    uint8_t *buf;
    size_t cap, len;
    uint32_t seg;
    uint64_t off; /* segment offset of buf[0] */
    bool valid;
};

/* Makes [off, off + need) of segment seg readable in w; its address or
 * NULL with *err set. */
static const uint8_t *scan_window_at(struct ledger *l, struct scan_window *w, uint32_t seg,
                                     uint64_t off, size_t need, int *err)
{
    if (w->valid && w->seg == seg && off >= w->off && off + need <= w->off + w->len)
        return w->buf + (off - w->off);
    size_t want = need > SCAN_WINDOW ? need : SCAN_WINDOW;
    if (want > w->cap) {
        uint8_t *nb = realloc(w->buf, want);
        if (nb == NULL) {
            *err = -ENOMEM;
            return NULL;
        }
        w->buf = nb;
        w->cap = want;
    }
    w->valid = false;
    int fd = seg_fd(l, seg);
    if (fd < 0) {
        *err = fd;
        return NULL;
    }
    ssize_t got = store_pread_upto(fd, w->buf, want, (off_t)off);
    if (got < 0) {
        *err = (int)got;
        return NULL;
    }
    if ((size_t)got < need) {
        *err = LEDGER_ERR_CORRUPT; /* the index points past the segment's end */
        return NULL;
    }
    w->seg = seg;
    w->off = off;
    w->len = (size_t)got;
    w->valid = true;
    return w->buf;
}

int ledger_scan(struct ledger *l, uint64_t from, uint64_t to, ledger_scan_fn fn, void *ctx)
{
    if (to > l->size || from > to)
        return -ERANGE;
    struct scan_window w = {0};
    uint8_t *ix = malloc((size_t)SCAN_INDEX_ENTRIES * INDEX_ENTRY_LEN);
    int rc = ix ? 0 : -ENOMEM;
    for (uint64_t i = from; rc == 0 && i < to;) {
        uint64_t n = to - i < SCAN_INDEX_ENTRIES ? to - i : SCAN_INDEX_ENTRIES;
        rc = store_pread_full(l->index_fd, ix, (size_t)n * INDEX_ENTRY_LEN,
                              (off_t)(i * INDEX_ENTRY_LEN));
        for (uint64_t k = 0; rc == 0 && k < n; k++, i++) {
            uint64_t pos;
            uint32_t len;
            if (store_index_entry_parse(ix + k * INDEX_ENTRY_LEN, &pos, &len)) {
                rc = LEDGER_ERR_CORRUPT;
                break;
            }
            const uint8_t *f = scan_window_at(l, &w, POS_SEG(pos), POS_OFF(pos),
                                              (size_t)FRAME_HEADER_LEN + len, &rc);
            if (f == NULL)
                break;
            uint32_t crc = lmq_crc32c(0, f, 8);
            crc = lmq_crc32c(crc, f + FRAME_HEADER_LEN, len);
            if (le32_get(f) != len || f[4] != FRAME_RECORD || crc != le32_get(f + 8)) {
                rc = LEDGER_ERR_CORRUPT;
                break;
            }
            rc = fn(ctx, i, f + FRAME_HEADER_LEN, len);
        }
    }
    free(ix);
    free(w.buf);
    return rc;
}

int ledger_leaf_hash(struct ledger *l, uint64_t index, uint8_t out[32])
{
    if (index >= l->size)
        return -ERANGE;
    return ledger_get_node(l, 0, index, out);
}

int ledger_root_at(struct ledger *l, uint64_t size, uint8_t out[32])
{
    if (size > l->size)
        return -ERANGE;
    if (size == l->size) {
        memcpy(out, l->root, 32);
        return 0;
    }
    return merkle_root(size, ledger_get_node, l, out);
}

int ledger_inclusion_proof(struct ledger *l, uint64_t index, uint64_t size, uint8_t proof[][32],
                           size_t *n)
{
    if (size > l->size || index >= size)
        return -ERANGE;
    return merkle_inclusion_proof(index, size, ledger_get_node, l, proof, n);
}

int ledger_consistency_proof(struct ledger *l, uint64_t old_size, uint64_t new_size,
                             uint8_t proof[][32], size_t *n)
{
    if (new_size > l->size || old_size > new_size || old_size == 0)
        return -ERANGE;
    return merkle_consistency_proof(old_size, new_size, ledger_get_node, l, proof, n);
}

static int read_block_entry(struct ledger *l, uint64_t height, struct ledger_block *b,
                            uint64_t *commit_pos)
{
    uint8_t e[BLOCK_ENTRY_LEN];
    int rc = store_pread_full(l->blocks_fd, e, sizeof e, (off_t)(height * BLOCK_ENTRY_LEN));
    if (rc)
        return rc;
    return store_block_entry_parse(e, b, commit_pos) ? LEDGER_ERR_CORRUPT : 0;
}

int ledger_block(struct ledger *l, uint64_t height, struct ledger_block *out)
{
    if (height >= l->height)
        return -ENOENT;
    uint64_t cpos;
    return read_block_entry(l, height, out, &cpos);
}

int ledger_block_of_index(struct ledger *l, uint64_t index, uint64_t *height)
{
    if (index >= l->size)
        return -ERANGE;
    uint64_t lo = 0, hi = l->height; /* answer in [lo, hi) */
    while (hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        struct ledger_block b;
        uint64_t cpos;
        int rc = read_block_entry(l, mid, &b, &cpos);
        if (rc)
            return rc;
        if (b.first_index <= index)
            lo = mid;
        else
            hi = mid;
    }
    *height = lo;
    return 0;
}

int ledger_block_at_size(struct ledger *l, uint64_t size, uint64_t *height)
{
    if (size == 0 || size > l->size)
        return -ENOENT;
    if (size == l->size) {
        *height = l->height - 1;
        return 0;
    }
    uint64_t h;
    int rc = ledger_block_of_index(l, size - 1, &h);
    if (rc)
        return rc;
    struct ledger_block b;
    uint64_t cpos;
    rc = read_block_entry(l, h, &b, &cpos);
    if (rc)
        return rc;
    if (b.tree_size != size)
        return -ENOENT;
    *height = h;
    return 0;
}

int ledger_block_checkpoint(struct ledger *l, uint64_t height, char *buf, size_t cap, size_t *len)
{
    if (height >= l->height)
        return -ENOENT;
    if (height == l->height - 1) {
        *len = l->ckpt_len;
        if (cap <= l->ckpt_len)
            return -ENOSPC;
        memcpy(buf, l->ckpt, l->ckpt_len + 1);
        return 0;
    }
    struct ledger_block b;
    uint64_t cpos;
    int rc = read_block_entry(l, height, &b, &cpos);
    if (rc)
        return rc;
    uint8_t payload[LEDGER_BLOCK_HEADER_LEN + LEDGER_MAX_CHECKPOINT];
    size_t plen;
    rc = read_frame(l, cpos, FRAME_COMMIT, payload, sizeof payload, &plen);
    if (rc == -ENOSPC)
        return LEDGER_ERR_CORRUPT;
    if (rc)
        return rc;
    if (plen <= LEDGER_BLOCK_HEADER_LEN)
        return LEDGER_ERR_CORRUPT;
    *len = plen - LEDGER_BLOCK_HEADER_LEN;
    if (cap <= *len)
        return -ENOSPC;
    memcpy(buf, payload + LEDGER_BLOCK_HEADER_LEN, *len);
    buf[*len] = 0;
    return 0;
}

int ledger_latest_checkpoint(struct ledger *l, char *buf, size_t cap, size_t *len)
{
    if (l->height == 0)
        return -ENOENT;
    return ledger_block_checkpoint(l, l->height - 1, buf, cap, len);
}

int ledger_receipt(struct ledger *l, uint64_t index, uint64_t size, uint8_t *scratch,
                   size_t scratch_cap, struct receipt *r)
{
    if (size == 0)
        size = l->size;
    if (index >= size || size > l->size)
        return -ERANGE;
    uint64_t h;
    if (ledger_block_at_size(l, size, &h) != 0)
        return LEDGER_ERR_NOCHECKPOINT;
    size_t rlen;
    int rc = ledger_get(l, index, scratch, scratch_cap, &rlen);
    if (rc)
        return rc;
    size_t clen;
    rc = ledger_block_checkpoint(l, h, (char *)scratch + rlen, scratch_cap - rlen, &clen);
    if (rc)
        return rc;
    memset(r, 0, sizeof *r);
    r->index = index;
    r->tree_size = size;
    r->record = scratch;
    r->record_len = rlen;
    r->checkpoint = (const char *)scratch + rlen;
    r->checkpoint_len = clen;
    return ledger_inclusion_proof(l, index, size, r->proof, &r->n_proof);
}

/* ---- open and recovery ---- */

static int mkdir_p1(const char *path)
{
    if (mkdir(path, 0700) == 0 || errno == EEXIST)
        return 0;
    return -errno;
}

static int write_meta(struct ledger *l)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    int rc = store_path(path, sizeof path, l->dir, STORE_META);
    if (!rc)
        rc = store_path(tmp, sizeof tmp, l->dir, STORE_META ".tmp");
    if (rc)
        return rc;
    char buf[NOTE_NAME_MAX + 64];
    int n = snprintf(buf, sizeof buf, STORE_META_MAGIC "origin %s\n", l->origin);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    rc = store_pwrite_full(fd, buf, (size_t)n, 0);
    if (!rc && fsync(fd) != 0)
        rc = -errno;
    close(fd);
    if (!rc && rename(tmp, path) != 0)
        rc = -errno;
    if (!rc)
        rc = store_fsync_dir(l->dir);
    return rc;
}

/* Verifies the last derived block against its commit frame, its chain
 * link, the stored nodes and leaves of its records, and its checkpoint,
 * then adopts it. The tail is what a crash can have touched. */
static int verify_tail(struct ledger *l, uint64_t h, const struct ledger_block *b,
                       uint64_t commit_pos)
{
    char seg_name[32];
    snprintf(seg_name, sizeof seg_name, SEG_NAME_FMT, POS_SEG(commit_pos));
    uint8_t *pl = malloc(COMMIT_MAX);
    if (!pl)
        return -ENOMEM;
    size_t plen;
    int rc = read_frame(l, commit_pos, FRAME_COMMIT, pl, COMMIT_MAX, &plen);
    if (rc) {
        seterr(l, "ledger/%s offset %u: commit frame of block %llu is %s", seg_name,
               POS_OFF(commit_pos), (unsigned long long)b->height,
               rc == -EIO || rc == -ENOENT ? "missing (segment too short)" : "damaged");
        free(pl);
        return LEDGER_ERR_CORRUPT;
    }
    struct ledger_block fb;
    if (plen <= LEDGER_BLOCK_HEADER_LEN || ledger_block_decode(pl, &fb) != 0 ||
        memcmp(fb.hash, b->hash, 32) != 0) {
        seterr(l,
               "ledger/blocks offset %llu: block %llu differs from its commit frame in ledger/%s "
               "offset %u",
               (unsigned long long)(h * BLOCK_ENTRY_LEN), (unsigned long long)b->height, seg_name,
               POS_OFF(commit_pos));
        free(pl);
        return LEDGER_ERR_CORRUPT;
    }
    if (b->height != h) {
        seterr(l, "ledger/blocks offset %llu: entry holds block height %llu",
               (unsigned long long)(h * BLOCK_ENTRY_LEN), (unsigned long long)b->height);
        free(pl);
        return LEDGER_ERR_CORRUPT;
    }
    uint8_t prev[32] = {0};
    if (h > 0) {
        struct ledger_block pb;
        uint64_t pc;
        if (read_block_entry(l, h - 1, &pb, &pc) != 0) {
            seterr(l, "ledger/blocks offset %llu: block %llu entry is damaged",
                   (unsigned long long)((h - 1) * BLOCK_ENTRY_LEN), (unsigned long long)(h - 1));
            free(pl);
            return LEDGER_ERR_CORRUPT;
        }
        memcpy(prev, pb.hash, 32);
        if (pb.tree_size != b->first_index) {
            seterr(l, "ledger/blocks offset %llu: block %llu does not start where block %llu ends",
                   (unsigned long long)(h * BLOCK_ENTRY_LEN), (unsigned long long)h,
                   (unsigned long long)(h - 1));
            free(pl);
            return LEDGER_ERR_CORRUPT;
        }
    } else if (b->first_index != 0) {
        seterr(l, "ledger/blocks offset 0: block 0 does not start at index 0");
        free(pl);
        return LEDGER_ERR_CORRUPT;
    }
    if (memcmp(prev, b->prev_hash, 32) != 0) {
        seterr(l, "ledger/blocks offset %llu: block %llu does not chain to block %llu",
               (unsigned long long)(h * BLOCK_ENTRY_LEN), (unsigned long long)h,
               (unsigned long long)(h ? h - 1 : 0));
        free(pl);
        return LEDGER_ERR_CORRUPT;
    }
    const char *why = NULL;
    if (check_checkpoint(l, b, (const char *)pl + LEDGER_BLOCK_HEADER_LEN,
                         plen - LEDGER_BLOCK_HEADER_LEN, &why) != 0) {
        seterr(l, "ledger/%s offset %u: block %llu: %s", seg_name, POS_OFF(commit_pos),
               (unsigned long long)h, why);
        free(pl);
        return LEDGER_ERR_CORRUPT;
    }

    /* Recompute the block's leaves and every node they complete. */
    l->size = b->first_index;
    struct merkle_frontier f;
    rc = merkle_frontier_load(&f, b->first_index, ledger_get_node, l);
    if (rc) {
        seterr(l, "ledger/nodes: cannot load the tree frontier at size %llu (%d)",
               (unsigned long long)b->first_index, rc);
        free(pl);
        return LEDGER_ERR_CORRUPT;
    }
    stage_reset(l);
    uint8_t *rbuf = NULL;
    size_t rcap = 0;
    for (uint64_t i = b->first_index; i < b->tree_size; i++) {
        uint64_t pos;
        uint32_t n;
        if (index_entry(l, i, &pos, &n) != 0) {
            seterr(l, "ledger/index offset %llu: entry of record %llu is damaged",
                   (unsigned long long)(i * INDEX_ENTRY_LEN), (unsigned long long)i);
            rc = LEDGER_ERR_CORRUPT;
            break;
        }
        size_t got;
        if (grow(&rbuf, &rcap, n ? n : 1)) {
            rc = -ENOMEM;
            break;
        }
        if (read_frame(l, pos, FRAME_RECORD, rbuf, rcap, &got) != 0 || got != n) {
            seterr(l, "ledger/" SEG_NAME_FMT " offset %u: record %llu is damaged", POS_SEG(pos),
                   POS_OFF(pos), (unsigned long long)i);
            rc = LEDGER_ERR_CORRUPT;
            break;
        }
        rc = stage_record(l, &f, rbuf, n, pos);
        if (rc)
            break;
    }
    free(rbuf);
    if (rc) {
        free(pl);
        return rc;
    }
    uint8_t root[32];
    merkle_frontier_root(&f, root);
    if (memcmp(root, b->root, 32) != 0) {
        seterr(l, "block %llu: records %llu..%llu do not reproduce its root", (unsigned long long)h,
               (unsigned long long)b->first_index, (unsigned long long)(b->tree_size - 1));
        free(pl);
        return LEDGER_ERR_CORRUPT;
    }
    for (unsigned k = 0; k < STORE_MAX_LEVELS && !rc; k++) {
        int fd = l->nlen[k] ? node_fd(l, k, false) : 0;
        if (fd < 0) {
            rc = fd;
            break;
        }
        uint64_t first = b->first_index >> k;
        for (size_t j = 0; j < l->nlen[k] / NODE_LEN; j++) {
            uint8_t got[32];
            off_t off = (off_t)((first + j) * NODE_LEN);
            if (store_pread_full(fd, got, NODE_LEN, off) != 0 ||
                memcmp(got, l->nbuf[k] + j * NODE_LEN, NODE_LEN) != 0) {
                seterr(l,
                       "ledger/nodes/%02u offset %lld: stored node (level %u, index %llu) does "
                       "not match its recomputation",
                       k, (long long)off, k, (unsigned long long)(first + j));
                rc = LEDGER_ERR_CORRUPT;
                break;
            }
        }
    }
    if (!rc)
        adopt_block(l, b, &f, (const char *)pl + LEDGER_BLOCK_HEADER_LEN,
                    plen - LEDGER_BLOCK_HEADER_LEN);
    free(pl);
    return rc;
}

/* Finds the newest block whose derived data (index, nodes, block entry)
 * is complete; returns its height + 1 in *h (0 = none). */
static int find_derived(struct ledger *l, uint64_t *h_out, struct ledger_block *b, uint64_t *cpos)
{
    uint64_t nb = file_size(l->blocks_fd) / BLOCK_ENTRY_LEN;
    uint64_t n_index = file_size(l->index_fd) / INDEX_ENTRY_LEN;
    uint64_t h = nb;
    while (h > 0) {
        int rc = read_block_entry(l, h - 1, b, cpos);
        if (rc == LEDGER_ERR_CORRUPT) {
            h--;
            continue;
        }
        if (rc)
            return rc;
        bool ok = n_index >= b->tree_size;
        for (unsigned k = 0; ok && k < STORE_MAX_LEVELS && (b->tree_size >> k); k++) {
            int fd = node_fd(l, k, false);
            ok = fd >= 0 && file_size(fd) / NODE_LEN >= (b->tree_size >> k);
        }
        if (ok)
            break;
        h--;
    }
    if (h < nb && !l->ro)
        LMQ_WARN("ledger: derived files end at block %llu of %llu; rebuilding from the segments",
                 (unsigned long long)h, (unsigned long long)nb);
    *h_out = h;
    return 0;
}

int ledger_refresh(struct ledger *l)
{
    if (!l->ro)
        return 0;
    char path[PATH_MAX];
    if (l->index_fd < 0) {
        (void)store_path(path, sizeof path, l->dir, STORE_INDEX);
        l->index_fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    if (l->blocks_fd < 0) {
        (void)store_path(path, sizeof path, l->dir, STORE_BLOCKS);
        l->blocks_fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    if (l->index_fd < 0 || l->blocks_fd < 0)
        return 0; /* still nothing committed */
    uint64_t h, cpos;
    struct ledger_block b;
    int rc = find_derived(l, &h, &b, &cpos);
    if (rc || h <= l->height)
        return rc;
    uint8_t *pl = malloc(COMMIT_MAX);
    if (!pl)
        return -ENOMEM;
    size_t plen;
    struct ledger_block fb;
    const char *why = NULL;
    rc = read_frame(l, cpos, FRAME_COMMIT, pl, COMMIT_MAX, &plen);
    if (rc || plen <= LEDGER_BLOCK_HEADER_LEN || ledger_block_decode(pl, &fb) != 0 ||
        memcmp(fb.hash, b.hash, 32) != 0 || b.height != h - 1 ||
        (h - 1 == l->height && memcmp(b.prev_hash, l->last_block_hash, 32) != 0) ||
        check_checkpoint(l, &b, (const char *)pl + LEDGER_BLOCK_HEADER_LEN,
                         plen - LEDGER_BLOCK_HEADER_LEN, &why) != 0) {
        free(pl);
        return LEDGER_ERR_CORRUPT;
    }
    uint64_t old_size = l->size;
    uint8_t root[32];
    l->size = b.tree_size;
    rc = merkle_root(b.tree_size, ledger_get_node, l, root);
    if (rc || memcmp(root, b.root, 32) != 0) {
        l->size = old_size;
        free(pl);
        return rc ? rc : LEDGER_ERR_CORRUPT;
    }
    adopt_block(l, &b, &l->frontier, (const char *)pl + LEDGER_BLOCK_HEADER_LEN,
                plen - LEDGER_BLOCK_HEADER_LEN);
    free(pl);
    return 0;
}

static int truncate_derived(struct ledger *l)
{
    unmap_nodes(l);
    if (ftruncate(l->index_fd, (off_t)(l->size * INDEX_ENTRY_LEN)) != 0 ||
        ftruncate(l->blocks_fd, (off_t)(l->height * BLOCK_ENTRY_LEN)) != 0)
        return -errno;
    for (unsigned k = 0; k < STORE_MAX_LEVELS; k++) {
        int fd = node_fd(l, k, false);
        if (fd < 0)
            continue;
        if (ftruncate(fd, (off_t)((l->size >> k) * NODE_LEN)) != 0)
            return -errno;
    }
    return 0;
}

static bool seg_exists(struct ledger *l, uint32_t seg)
{
    char path[PATH_MAX];
    struct stat st;
    return store_seg_path(path, sizeof path, l->dir, seg) == 0 && stat(path, &st) == 0;
}

/* Validates and applies one committed batch found by replay. */
static int replay_commit(struct ledger *l, uint32_t seg, uint32_t off, const uint8_t *payload,
                         uint32_t plen, const struct replay_rec *recs, size_t n)
{
    struct ledger_block b;
    const char *why = NULL;
    if (plen <= LEDGER_BLOCK_HEADER_LEN || ledger_block_decode(payload, &b) != 0)
        why = "malformed block header";
    else if (b.height != l->height)
        why = "unexpected block height";
    else if (memcmp(b.prev_hash, l->last_block_hash, 32) != 0)
        why = "block does not chain to the previous block";
    else if (b.first_index != l->size || b.count != n || n == 0)
        why = "block does not cover the records before it";
    if (!why) {
        stage_reset(l);
        struct merkle_frontier f = l->frontier;
        for (size_t i = 0; i < n; i++) {
            int rc = stage_record(l, &f, recs[i].data, recs[i].len, recs[i].pos);
            if (rc)
                return rc;
        }
        uint8_t root[32];
        merkle_frontier_root(&f, root);
        if (memcmp(root, b.root, 32) != 0)
            why = "records do not reproduce the block root";
        else if (check_checkpoint(l, &b, (const char *)payload + LEDGER_BLOCK_HEADER_LEN,
                                  plen - LEDGER_BLOCK_HEADER_LEN, &why) == 0) {
            int rc = write_derived(l, payload, POS_MAKE(seg, off));
            if (rc) {
                seterr(l, "ledger: rebuilding derived files failed: %s", strerror(-rc));
                return rc;
            }
            adopt_block(l, &b, &f, (const char *)payload + LEDGER_BLOCK_HEADER_LEN,
                        plen - LEDGER_BLOCK_HEADER_LEN);
            return 0;
        }
    }
    seterr(l, "ledger/" SEG_NAME_FMT " offset %u: commit frame of block %llu: %s", seg, off,
           (unsigned long long)l->height, why);
    return LEDGER_ERR_CORRUPT;
}

/* Cuts an uncommitted tail at (seg, cut) reporting what was found at bad. */
static int cut_tail(struct ledger *l, uint32_t seg, uint32_t cut, uint32_t bad, uint64_t fsize,
                    const char *what, uint32_t *newlen)
{
    *newlen = cut;
    char path[PATH_MAX];
    int rc = store_seg_path(path, sizeof path, l->dir, seg);
    if (rc)
        return rc;
    LMQ_WARN("ledger: torn tail in ledger/" SEG_NAME_FMT " at offset %u (%s): cutting %llu "
             "uncommitted bytes back to offset %u",
             seg, bad, what, (unsigned long long)(fsize - cut), cut);
    if (l->ro)
        return 0;
    if (cut <= SEG_HEADER_LEN && seg > 0) {
        *newlen = 0;
        if (unlink(path) != 0)
            return -errno;
        return store_fsync_dir(l->dir);
    }
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (cut < SEG_HEADER_LEN)
        cut = *newlen = 0;
    rc = ftruncate(fd, cut) == 0 && fdatasync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

/* Replays the segments from the end of the last derived commit: applies
 * every whole batch, cuts a torn tail, refuses damage before a commit. */
static int replay(struct ledger *l, uint64_t start)
{
    uint32_t seg = POS_SEG(start), off = POS_OFF(start);
    struct replay_rec *recs = NULL;
    size_t nrec = 0, caprec = 0;
    int rc = 0;
    for (;;) {
        char path[PATH_MAX];
        rc = store_seg_path(path, sizeof path, l->dir, seg);
        if (rc)
            break;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            rc = errno == ENOENT ? 0 : -errno; /* no segment yet: a new log */
            l->cur_seg = seg;
            l->cur_off = 0;
            break;
        }
        uint64_t fsize = file_size(fd);
        uint8_t *map = NULL;
        if (fsize > 0) {
            map = mmap(NULL, fsize, PROT_READ, MAP_PRIVATE, fd, 0);
            if (map == MAP_FAILED) {
                rc = -errno;
                close(fd);
                break;
            }
        }
        close(fd);
        bool next = seg_exists(l, seg + 1);
        uint32_t last_commit = off;
        nrec = 0;
        if (off == 0) {
            if (fsize < SEG_HEADER_LEN || store_seg_header_check(map, seg) != 0) {
                if (next) {
                    seterr(l, "ledger/" SEG_NAME_FMT " offset 0: bad segment header", seg);
                    rc = LEDGER_ERR_CORRUPT;
                } else {
                    rc = cut_tail(l, seg, 0, 0, fsize, "torn segment header", &off);
                }
                l->cur_seg = seg;
                l->cur_off = 0;
                if (map)
                    munmap(map, fsize);
                break;
            }
            off = last_commit = SEG_HEADER_LEN;
        }
        bool stop = false;
        while (off < fsize) {
            uint8_t type;
            uint32_t len;
            int fr = store_frame_check(map + off, fsize - off, &type, &len);
            if (fr) {
                long later = next ? 0 : store_find_commit(map + off + 1, fsize - off - 1);
                if (next || later >= 0) {
                    seterr(l,
                           "ledger/" SEG_NAME_FMT " offset %u: damaged frame (%s) before "
                           "committed data%s",
                           seg, off, fr == -EAGAIN ? "truncated" : "bad CRC or header",
                           next ? " in later segments" : "");
                    rc = LEDGER_ERR_CORRUPT;
                } else {
                    rc = cut_tail(l, seg, last_commit, off, fsize,
                                  fr == -EAGAIN ? "short frame" : "bad frame CRC", &off);
                }
                stop = true;
                break;
            }
            if (type == FRAME_RECORD) {
                if (nrec == caprec) {
                    size_t nc = caprec ? caprec * 2 : 1024;
                    struct replay_rec *p = realloc(recs, nc * sizeof *p);
                    if (!p) {
                        rc = -ENOMEM;
                        stop = true;
                        break;
                    }
                    recs = p;
                    caprec = nc;
                }
                if (nrec >= LEDGER_MAX_BATCH) {
                    seterr(l, "ledger/" SEG_NAME_FMT " offset %u: batch has too many records", seg,
                           off);
                    rc = LEDGER_ERR_CORRUPT;
                    stop = true;
                    break;
                }
                recs[nrec++] =
                    (struct replay_rec){POS_MAKE(seg, off), map + off + FRAME_HEADER_LEN, len};
            } else {
                rc = replay_commit(l, seg, off, map + off + FRAME_HEADER_LEN, len, recs, nrec);
                if (rc) {
                    stop = true;
                    break;
                }
                nrec = 0;
                last_commit = off + FRAME_HEADER_LEN + len;
            }
            off += FRAME_HEADER_LEN + len;
        }
        if (!stop && nrec > 0) {
            if (next) {
                seterr(l,
                       "ledger/" SEG_NAME_FMT " offset %u: records without a commit frame "
                       "before later segments",
                       seg, last_commit);
                rc = LEDGER_ERR_CORRUPT;
            } else {
                rc = cut_tail(l, seg, last_commit, last_commit, fsize, "batch without commit frame",
                              &off);
            }
            stop = true;
        }
        if (map)
            munmap(map, fsize);
        l->cur_seg = seg;
        l->cur_off = off;
        if (stop || rc || !next)
            break;
        seg++;
        off = 0;
    }
    free(recs);
    if (rc == 0 && l->cur_off > 0 && !l->ro) {
        char path[PATH_MAX];
        rc = store_seg_path(path, sizeof path, l->dir, l->cur_seg);
        if (!rc) {
            l->cur_fd = open(path, O_RDWR | O_CLOEXEC);
            if (l->cur_fd < 0)
                rc = -errno;
        }
    }
    return rc;
}

int ledger_open(const char *datadir, const struct ledger_options *opts, struct ledger **out,
                char *err, size_t errlen)
{
    struct ledger_options defaults;
    if (!opts) {
        ledger_options_default(&defaults);
        opts = &defaults;
    }
    if (err && errlen)
        err[0] = 0;
    struct ledger *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    l->err = err;
    l->errlen = errlen;
    l->ro = opts->read_only;
    l->sync = opts->sync;
    l->segment_max = opts->segment_max ? opts->segment_max : SEG_DEFAULT_MAX;
    if (l->segment_max > (1u << 31))
        l->segment_max = 1u << 31;
    l->lock_fd = l->index_fd = l->blocks_fd = l->cur_fd = -1;
    for (unsigned k = 0; k < STORE_MAX_LEVELS; k++)
        l->node_fd[k] = -1;
    for (unsigned i = 0; i < SEG_CACHE; i++)
        l->segs[i].fd = -1;

    int rc;
    char path[PATH_MAX];
    if (strlen(datadir) > PATH_MAX - 128 ||
        snprintf(l->dir, sizeof l->dir, "%s/%s", datadir, STORE_DIR) >= (int)sizeof l->dir) {
        rc = -ENAMETOOLONG;
        seterr(l, "data dir path too long");
        goto fail;
    }
    struct stat dst;
    bool fresh = stat(l->dir, &dst) != 0;
    if (fresh && opts->no_create && !l->ro) {
        rc = -ENOENT;
        seterr(l, "no ledger in %s (%s missing)", datadir, l->dir);
        goto fail;
    }
    if (!l->ro) {
        if ((rc = mkdir_p1(datadir)) || (rc = mkdir_p1(l->dir)) ||
            (fresh && (rc = store_fsync_dir(datadir)))) {
            seterr(l, "cannot create %s: %s", l->dir, strerror(-rc));
            goto fail;
        }
        (void)store_path(path, sizeof path, l->dir, STORE_NODES_DIR);
        if ((rc = mkdir_p1(path))) {
            seterr(l, "cannot create %s: %s", path, strerror(-rc));
            goto fail;
        }
        (void)store_path(path, sizeof path, l->dir, STORE_LOCK);
        l->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (l->lock_fd < 0) {
            rc = -errno;
            seterr(l, "cannot open %s: %s", path, strerror(-rc));
            goto fail;
        }
        if (flock(l->lock_fd, LOCK_EX | LOCK_NB) != 0) {
            rc = errno == EWOULDBLOCK ? LEDGER_ERR_LOCKED : -errno;
            seterr(l, "%s: %s", path,
                   rc == LEDGER_ERR_LOCKED ? "data dir is in use by another process"
                                           : strerror(-rc));
            goto fail;
        }
    }

    /* META is written and synced before the node key and the first
     * segment: a ledger dir without META holds no committed record (a
     * creation interrupted by a crash) unless a segment exists. */
    bool uncreated = false;
    rc = store_meta_read(l->dir, l->origin, sizeof l->origin);
    if (rc == -ENOENT && !fresh && seg_exists(l, 0)) {
        rc = LEDGER_ERR_CORRUPT;
        seterr(l,
               "%s/" STORE_META " is missing but %s/" SEG_NAME_FMT
               " exists: the ledger's " STORE_META " was lost (restore it; see docs/FORMATS.md)",
               l->dir, l->dir, 0u);
        goto fail;
    }
    if (rc == -ENOENT && !fresh && (l->ro || opts->no_create)) {
        if (!l->ro) {
            rc = LEDGER_ERR_UNCREATED;
            seterr(l,
                   "%s: the ledger's creation was interrupted before " STORE_META
                   " was written; nothing is committed (the next append or daemon start "
                   "with its origin completes it)",
                   l->dir);
            goto fail;
        }
        LMQ_WARN("ledger: %s: creation was interrupted before " STORE_META
                 " was written; nothing is committed: opened as an empty ledger",
                 l->dir);
        uncreated = true;
        snprintf(l->origin, sizeof l->origin, "%s", opts->origin ? opts->origin : "");
        rc = 0;
    } else if (rc == -ENOENT && !l->ro) {
        const char *o = opts->origin ? opts->origin : LEDGER_DEFAULT_ORIGIN;
        if (!note_name_valid(o, strlen(o))) {
            rc = -EINVAL;
            seterr(l, "origin \"%s\" is not a valid key name", o);
            goto fail;
        }
        snprintf(l->origin, sizeof l->origin, "%s", o);
        if (!fresh)
            LMQ_WARN("ledger: %s: an earlier creation was interrupted before " STORE_META
                     " was written (nothing was committed): completing it with origin \"%s\"",
                     l->dir, o);
        rc = write_meta(l);
        if (rc) {
            seterr(l, "cannot write %s/" STORE_META ": %s", l->dir, strerror(-rc));
            goto fail;
        }
    } else if (rc) {
        seterr(l,
               rc == -ENOENT ? "no ledger in %s (%s/" STORE_META " missing)"
                             : "cannot read %s/" STORE_META ": %s",
               datadir, rc == -ENOENT ? l->dir : strerror(-rc));
        if (rc == -EINVAL)
            seterr(l, "%s/" STORE_META ": malformed", l->dir);
        goto fail;
    } else if (opts->origin && strcmp(opts->origin, l->origin) != 0) {
        rc = LEDGER_ERR_ORIGIN;
        seterr(l, "origin \"%s\" differs from the ledger's origin \"%s\"", opts->origin, l->origin);
        goto fail;
    }

    char keypath[PATH_MAX];
    if (opts->key_path)
        snprintf(keypath, sizeof keypath, "%s", opts->key_path);
    else if (snprintf(keypath, sizeof keypath, "%s/node.key", datadir) >= (int)sizeof keypath) {
        rc = -ENAMETOOLONG;
        goto fail;
    }
    if (!l->ro) {
        /* The key signed every committed checkpoint: once a segment exists
         * a missing key is reported, never replaced by a new one. */
        struct stat kst;
        if (stat(keypath, &kst) != 0 && errno == ENOENT && seg_exists(l, 0)) {
            rc = LEDGER_ERR_CORRUPT;
            seterr(l,
                   "node key %s is missing but %s/" SEG_NAME_FMT
                   " exists: restore the key that signed the ledger (a new one is not "
                   "created)",
                   keypath, l->dir, 0u);
            goto fail;
        }
        int created = 0;
        rc = crypto_key_load_or_create(keypath, l->pk, l->sk, &created);
        if (rc) {
            seterr(l, "node key %s: %s", keypath, strerror(-rc));
            goto fail;
        }
        if (created)
            LMQ_NOTICE("ledger: created node key %s", keypath);
        l->have_pk = l->have_sk = true;
    } else if (!uncreated || l->origin[0]) {
        l->have_pk = crypto_pubkey_load(keypath, l->pk) == 0;
    }
    if (l->have_pk && note_verifier_init(&l->verifier, l->origin, l->pk) != 0) {
        rc = -EINVAL;
        seterr(l, "origin \"%s\" is not a valid key name", l->origin);
        goto fail;
    }

    int oflags = l->ro ? O_RDONLY : (O_RDWR | O_CREAT);
    (void)store_path(path, sizeof path, l->dir, STORE_INDEX);
    l->index_fd = open(path, oflags | O_CLOEXEC, 0600);
    if (l->index_fd < 0 && !(l->ro && errno == ENOENT)) {
        rc = -errno;
        seterr(l, "cannot open %s: %s", path, strerror(-rc));
        goto fail;
    }
    (void)store_path(path, sizeof path, l->dir, STORE_BLOCKS);
    l->blocks_fd = open(path, oflags | O_CLOEXEC, 0600);
    if (l->blocks_fd < 0 && !(l->ro && errno == ENOENT)) {
        rc = -errno;
        seterr(l, "cannot open %s: %s", path, strerror(-rc));
        goto fail;
    }

    uint64_t start = POS_MAKE(0, 0);
    for (;;) {
        uint64_t h = 0, cpos = 0;
        struct ledger_block b;
        rc = l->blocks_fd >= 0 ? find_derived(l, &h, &b, &cpos) : 0;
        if (rc) {
            seterr(l, "cannot read %s/" STORE_BLOCKS ": %s", l->dir, strerror(-rc));
            goto fail;
        }
        l->size = l->height = 0;
        memset(l->last_block_hash, 0, 32);
        merkle_frontier_init(&l->frontier);
        merkle_frontier_root(&l->frontier, l->root);
        l->ckpt_len = l->ckpt_size = 0;
        if (h > 0) {
            rc = verify_tail(l, h - 1, &b, cpos);
            if (rc == LEDGER_ERR_CORRUPT && l->sync == LEDGER_SYNC_BATCH && !l->ro &&
                !seg_exists(l, POS_SEG(cpos) + 1)) {
                /* Under sync=batch a power loss may drop segment data the
                 * derived files had seen: if the block's commit frame is
                 * not whole in the segment (file lost or cut short, even
                 * inside the frame), step back one block and retry. A
                 * frame that is whole but wrong stays corruption. */
                uint8_t fb[FRAME_HEADER_LEN];
                int fd = seg_fd(l, POS_SEG(cpos));
                int hr = fd < 0 ? fd : store_pread_full(fd, fb, sizeof fb, (off_t)POS_OFF(cpos));
                if (fd < 0 || hr == -EIO ||
                    (hr == 0 &&
                     file_size(fd) < (uint64_t)POS_OFF(cpos) + FRAME_HEADER_LEN + le32_get(fb))) {
                    LMQ_WARN("ledger: sync=batch: segment data of block %llu lost; stepping back",
                             (unsigned long long)(h - 1));
                    if (ftruncate(l->blocks_fd, (off_t)((h - 1) * BLOCK_ENTRY_LEN)) != 0) {
                        rc = -errno;
                        goto fail;
                    }
                    continue;
                }
            }
            if (rc)
                goto fail;
            uint8_t fh[FRAME_HEADER_LEN];
            int fd = seg_fd(l, POS_SEG(cpos));
            if (fd < 0 || store_pread_full(fd, fh, sizeof fh, (off_t)POS_OFF(cpos)) != 0) {
                rc = LEDGER_ERR_CORRUPT;
                goto fail;
            }
            start = POS_MAKE(POS_SEG(cpos), POS_OFF(cpos) + FRAME_HEADER_LEN + le32_get(fh));
        }
        break;
    }
    if (!l->ro) {
        rc = truncate_derived(l);
        if (rc) {
            seterr(l, "cannot truncate derived files in %s: %s", l->dir, strerror(-rc));
            goto fail;
        }
        uint64_t derived_height = l->height;
        rc = replay(l, l->height ? start : POS_MAKE(0, 0));
        if (rc) {
            if (l->err && !l->err[0])
                seterr(l, "recovering %s: %s", l->dir, ledger_strerror(rc));
            goto fail;
        }
        if (l->height > derived_height)
            LMQ_WARN("ledger: derived files lagged the segments: rebuilt blocks %llu..%llu from "
                     "the segments",
                     (unsigned long long)derived_height, (unsigned long long)(l->height - 1));
        rc = sync_derived(l);
        if (rc) {
            seterr(l, "cannot sync derived files in %s: %s", l->dir, strerror(-rc));
            goto fail;
        }
    }
    l->err = NULL;
    l->errlen = 0;
    *out = l;
    return 0;

fail:
    l->err = NULL;
    ledger_close(l);
    return rc;
}

void ledger_close(struct ledger *l)
{
    if (!l)
        return;
    if (!l->ro && !l->failed && l->index_fd >= 0)
        sync_derived(l);
    if (l->index_fd >= 0)
        close(l->index_fd);
    if (l->blocks_fd >= 0)
        close(l->blocks_fd);
    if (l->cur_fd >= 0)
        close(l->cur_fd);
    unmap_nodes(l);
    for (unsigned k = 0; k < STORE_MAX_LEVELS; k++) {
        if (l->node_fd[k] >= 0)
            close(l->node_fd[k]);
        free(l->nbuf[k]);
    }
    for (unsigned i = 0; i < SEG_CACHE; i++)
        if (l->segs[i].fd >= 0)
            close(l->segs[i].fd);
    if (l->lock_fd >= 0)
        close(l->lock_fd); /* releases the flock */
    free(l->wbuf);
    free(l->ibuf);
    explicit_bzero(l->sk, sizeof l->sk);
    free(l);
}
