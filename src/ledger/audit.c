/* The auditor: one sequential pass over the segments, recomputing the tree
 * from the records with a frontier and comparing every result with what
 * the derived files store (index entries, every node at every level, the
 * block entries) and with what was signed (block headers in commit frames,
 * checkpoints). Stored nodes are read through per-level sequential buffers
 * so the pass is bounded by hashing, not by syscalls. */
#include "ledger/audit.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crypto/sign.h"
#include "ledger/block.h"
#include "ledger/checkpoint.h"
#include "ledger/log.h"
#include "ledger/merkle.h"
#include "ledger/store_int.h"

#define NODE_BUF_NODES 2048
#define MAX_REPORTED 50

struct node_reader {
    int fd;
    uint64_t n;         /* nodes in the file */
    uint64_t buf_first; /* index of buf[0] */
    uint64_t buf_n;     /* nodes in buf */
    uint8_t *buf;
};

struct audit {
    char dir[PATH_MAX];
    ledger_audit_report_fn report;
    ledger_audit_progress_fn progress;
    void *ctx;
    struct ledger_audit_stats *st;
    struct note_verifier key;
    const char *origin;

    int index_fd, blocks_fd;
    uint64_t index_n, blocks_n;
    uint8_t *ibuf; /* sequential window of the index file */
    uint64_t ibuf_first, ibuf_n;
    struct node_reader nodes[STORE_MAX_LEVELS];
    uint64_t lag_reported; /* derived files end: warn once */
    bool other_signer_reported; /* block proposed by another key: warn once */
    uint64_t cur_record;   /* record being hashed (for emit reports) */
    uint64_t tree_size;    /* size of the tree recomputed so far */
};

static void finding(struct audit *a, bool problem, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void finding(struct audit *a, bool problem, const char *fmt, ...)
{
    if (problem)
        a->st->problems++;
    else
        a->st->warnings++;
    if (!a->report || (problem && a->st->problems > MAX_REPORTED))
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (problem && a->st->problems == MAX_REPORTED)
        strncat(line, " (further problems are counted, not listed)",
                sizeof line - strlen(line) - 1);
    a->report(a->ctx, problem, line);
}

/* 1 and the node if stored, 0 if the file ends before it, <0 on error. */
static int node_read(struct node_reader *r, uint64_t idx, uint8_t out[32])
{
    if (r->fd < 0 || idx >= r->n)
        return 0;
    if (idx < r->buf_first || idx >= r->buf_first + r->buf_n) {
        uint64_t n = r->n - idx < NODE_BUF_NODES ? r->n - idx : NODE_BUF_NODES;
        int rc = store_pread_full(r->fd, r->buf, n * NODE_LEN, (off_t)(idx * NODE_LEN));
        if (rc)
            return rc;
        r->buf_first = idx;
        r->buf_n = n;
    }
    memcpy(out, r->buf + (idx - r->buf_first) * NODE_LEN, NODE_LEN);
    return 1;
}

static void audit_emit(void *ctx, unsigned level, uint64_t index, const uint8_t hash[32])
{
    struct audit *a = ctx;
    uint8_t stored[32];
    int rc = node_read(&a->nodes[level], index, stored);
    if (rc == 0) {
        if (!a->lag_reported) {
            a->lag_reported = 1;
            finding(a, false,
                    "ledger/nodes/%02u ends at node %llu (record %llu): derived files lag the "
                    "segments; the next read-write open rebuilds them",
                    level, (unsigned long long)index, (unsigned long long)a->cur_record);
        }
        return;
    }
    if (rc < 0) {
        finding(a, true, "ledger/nodes/%02u offset %llu: read error: %s", level,
                (unsigned long long)(index * NODE_LEN), strerror(-rc));
        return;
    }
    if (memcmp(stored, hash, 32) != 0) {
        if (level == 0)
            finding(a, true,
                    "ledger/nodes/00 offset %llu: stored leaf hash of record %llu differs from "
                    "the hash of the record",
                    (unsigned long long)(index * NODE_LEN), (unsigned long long)index);
        else
            finding(a, true,
                    "ledger/nodes/%02u offset %llu: stored node (level %u, index %llu, records "
                    "%llu..%llu) differs from its recomputation",
                    level, (unsigned long long)(index * NODE_LEN), level, (unsigned long long)index,
                    (unsigned long long)(index << level),
                    (unsigned long long)(((index + 1) << level) - 1));
    }
}

/* Index entry i through a sequential window; 0, or <0 on a read error. */
static int index_read(struct audit *a, uint64_t i, uint8_t e[INDEX_ENTRY_LEN])
{
    if (i < a->ibuf_first || i >= a->ibuf_first + a->ibuf_n) {
        uint64_t n = a->index_n - i < NODE_BUF_NODES * 2 ? a->index_n - i : NODE_BUF_NODES * 2;
        int rc = store_pread_full(a->index_fd, a->ibuf, n * INDEX_ENTRY_LEN,
                                  (off_t)(i * INDEX_ENTRY_LEN));
        if (rc)
            return rc;
        a->ibuf_first = i;
        a->ibuf_n = n;
    }
    memcpy(e, a->ibuf + (i - a->ibuf_first) * INDEX_ENTRY_LEN, INDEX_ENTRY_LEN);
    return 0;
}

/* get_node over the stored node files (already compared in this pass). */
static int audit_get_node(void *ctx, unsigned level, uint64_t index, uint8_t out[32])
{
    struct audit *a = ctx;
    if (level >= STORE_MAX_LEVELS || index >= (a->tree_size >> level))
        return MERKLE_ERR_ARGS;
    struct node_reader *r = &a->nodes[level];
    if (r->fd < 0 || index >= r->n)
        return -ENOENT;
    return store_pread_full(r->fd, out, NODE_LEN, (off_t)(index * NODE_LEN));
}

static uint64_t fsize_of(int fd)
{
    struct stat st;
    return fd >= 0 && fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

struct chain {
    uint64_t height; /* blocks seen */
    uint8_t prev_hash[32];
    uint64_t ckpt_size; /* last checkpoint */
    uint8_t ckpt_root[32];
};

static void check_commit(struct audit *a, struct chain *c, struct merkle_frontier *f,
                         uint64_t batch_first, uint64_t batch_n, uint32_t seg, uint32_t off,
                         const uint8_t *payload, uint32_t plen)
{
    char where[64];
    snprintf(where, sizeof where, "ledger/" SEG_NAME_FMT " offset %u", seg, off);
    struct ledger_block b;
    uint64_t h = c->height;
    if (plen <= LEDGER_BLOCK_HEADER_LEN || ledger_block_decode(payload, &b) != 0) {
        finding(a, true, "%s: commit frame of block %llu: malformed block header", where,
                (unsigned long long)h);
        goto next;
    }
    if (b.height != h)
        finding(a, true, "%s: block header says height %llu, expected %llu", where,
                (unsigned long long)b.height, (unsigned long long)h);
    if (memcmp(b.prev_hash, c->prev_hash, 32) != 0)
        finding(a, true, "%s: block %llu does not chain to block %llu (previous hash differs)",
                where, (unsigned long long)h, (unsigned long long)(h ? h - 1 : 0));
    if (b.first_index != batch_first || b.count != batch_n)
        finding(a, true, "%s: block %llu claims records %llu+%llu, the segment holds %llu+%llu",
                where, (unsigned long long)h, (unsigned long long)b.first_index,
                (unsigned long long)b.count, (unsigned long long)batch_first,
                (unsigned long long)batch_n);
    uint8_t root[32];
    merkle_frontier_root(f, root);
    if (memcmp(root, b.root, 32) != 0)
        finding(a, true,
                "%s: block %llu root differs from the root recomputed from records %llu..%llu",
                where, (unsigned long long)h, (unsigned long long)batch_first,
                (unsigned long long)(batch_first + batch_n - 1));
    if (b.signer_key_id != a->key.key_id && !a->other_signer_reported) {
        a->other_signer_reported = true;
        finding(a, false,
                "%s: block %llu was proposed by key ID %08x, not the audit key %08x "
                "(a replicated log)",
                where, (unsigned long long)h, b.signer_key_id, a->key.key_id);
    }

    /* The checkpoint: signature, body, and consistency with the last one. */
    const char *note = (const char *)payload + LEDGER_BLOCK_HEADER_LEN;
    size_t note_len = plen - LEDGER_BLOCK_HEADER_LEN;
    struct checkpoint cp;
    int rc = checkpoint_verify(note, note_len, &a->key, 1, 1, a->origin, NULL, &cp);
    if (rc) {
        finding(a, true, "%s: checkpoint of block %llu (at byte offset %u) %s", where,
                (unsigned long long)h, off + FRAME_HEADER_LEN + LEDGER_BLOCK_HEADER_LEN,
                rc == NOTE_ERR_BAD_SIGNATURE || rc == NOTE_ERR_UNVERIFIED
                    ? "signature does not verify"
                : rc == CHECKPOINT_ERR_ORIGIN ? "has a different origin"
                                              : "is malformed");
    } else {
        if (cp.size != b.tree_size || memcmp(cp.root, b.root, 32) != 0 || !cp.has_block ||
            cp.block_height != b.height || memcmp(cp.block_hash, b.hash, 32) != 0)
            finding(a, true, "%s: checkpoint of block %llu does not match the block header", where,
                    (unsigned long long)h);
        else
            a->st->blocks++;
        if (c->ckpt_size > 0 && cp.size >= c->ckpt_size) {
            uint8_t proof[MERKLE_MAX_PROOF][32];
            size_t np = 0;
            a->tree_size = cp.size;
            rc = merkle_consistency_proof(c->ckpt_size, cp.size, audit_get_node, a, proof, &np);
            if (rc == 0)
                rc = merkle_verify_consistency(c->ckpt_size, cp.size, c->ckpt_root, cp.root,
                                               (const uint8_t(*)[32])proof, np);
            if (rc && rc != -ENOENT)
                finding(a, true,
                        "%s: checkpoint of block %llu (size %llu) is not consistent with the "
                        "previous checkpoint (size %llu)",
                        where, (unsigned long long)h, (unsigned long long)cp.size,
                        (unsigned long long)c->ckpt_size);
        } else if (c->ckpt_size > cp.size) {
            finding(a, true, "%s: checkpoint of block %llu shrinks the tree", where,
                    (unsigned long long)h);
        }
        c->ckpt_size = cp.size;
        memcpy(c->ckpt_root, cp.root, 32);
        a->st->tree_size = cp.size;
        memcpy(a->st->root, cp.root, 32);
    }

    /* The block entry in ledger/blocks. */
    if (h < a->blocks_n) {
        uint8_t e[BLOCK_ENTRY_LEN];
        uint64_t eoff = h * BLOCK_ENTRY_LEN;
        struct ledger_block eb;
        uint64_t cpos;
        if (store_pread_full(a->blocks_fd, e, sizeof e, (off_t)eoff) != 0)
            finding(a, true, "ledger/blocks offset %llu: cannot read block %llu entry",
                    (unsigned long long)eoff, (unsigned long long)h);
        else if (store_block_entry_parse(e, &eb, &cpos) != 0)
            finding(a, true, "ledger/blocks offset %llu: block %llu entry is damaged (CRC)",
                    (unsigned long long)eoff, (unsigned long long)h);
        else if (memcmp(e, payload, LEDGER_BLOCK_HEADER_LEN) != 0)
            finding(a, true,
                    "ledger/blocks offset %llu: block %llu header differs from the one in %s",
                    (unsigned long long)eoff, (unsigned long long)h, where);
        else if (cpos != POS_MAKE(seg, off))
            finding(a, true,
                    "ledger/blocks offset %llu: block %llu points to the wrong commit frame",
                    (unsigned long long)eoff, (unsigned long long)h);
    } else if (!a->lag_reported) {
        a->lag_reported = 1;
        finding(a, false,
                "ledger/blocks ends at block %llu: derived files lag the segments; the next "
                "read-write open rebuilds them",
                (unsigned long long)h);
    }
    memcpy(c->prev_hash, b.hash, 32);
next:
    c->height++;
}

int ledger_audit(const char *datadir, const struct note_verifier *key,
                 ledger_audit_report_fn report, ledger_audit_progress_fn progress, void *ctx,
                 struct ledger_audit_stats *stats, char *err, size_t errlen)
{
    struct ledger_audit_stats dummy;
    if (!stats)
        stats = &dummy;
    memset(stats, 0, sizeof *stats);
    struct audit *a = calloc(1, sizeof *a);
    if (!a)
        return -ENOMEM;
    a->report = report;
    a->progress = progress;
    a->ctx = ctx;
    a->st = stats;
    a->index_fd = a->blocks_fd = -1;
    for (unsigned k = 0; k < STORE_MAX_LEVELS; k++)
        a->nodes[k].fd = -1;
    int rc = 0;
    char origin[NOTE_NAME_MAX + 1];
    char path[PATH_MAX + 64];

    if (strlen(datadir) > PATH_MAX - 128) {
        rc = -ENAMETOOLONG;
        goto out;
    }
    snprintf(a->dir, sizeof a->dir, "%s/" STORE_DIR, datadir);
    /* Creation writes META, then the node key, then the first segment:
     * without a segment nothing is committed, and a missing META or key
     * is a creation interrupted by a crash, not damage. */
    snprintf(path, sizeof path, "%s/" SEG_NAME_FMT, a->dir, 0u);
    bool have_seg = access(path, F_OK) == 0;
    rc = store_meta_read(a->dir, origin, sizeof origin);
    if (rc == -ENOENT && !have_seg && access(a->dir, F_OK) == 0) {
        finding(a, false,
                "ledger/" STORE_META ": missing: the ledger's creation was interrupted before "
                "it was written; no segment, nothing committed (the next append or daemon "
                "start completes it)");
        rc = 0;
        goto out;
    }
    if (rc) {
        snprintf(err, errlen, "%s/" STORE_META ": %s", a->dir,
                 rc == -ENOENT   ? "missing (no ledger here)"
                 : rc == -EINVAL ? "malformed"
                                 : strerror(-rc));
        goto out;
    }
    a->origin = origin;
    if (key) {
        a->key = *key;
    } else {
        uint8_t pk[32];
        snprintf(path, sizeof path, "%s/node.key", datadir);
        rc = crypto_pubkey_load(path, pk);
        if (rc == -ENOENT && !have_seg) {
            finding(a, false,
                    "node.key: missing: the ledger's creation was interrupted before the node "
                    "key was written; no segment, nothing signed (the next append or daemon "
                    "start creates it)");
            rc = 0;
            goto out;
        }
        if (rc) {
            snprintf(err, errlen, "%s: cannot read the node public key: %s (pass --key)", path,
                     strerror(-rc));
            goto out;
        }
        if (note_verifier_init(&a->key, origin, pk) != 0) {
            rc = -EINVAL;
            snprintf(err, errlen, "origin \"%s\" is not a valid key name", origin);
            goto out;
        }
    }
    if (strcmp(a->key.name, origin) != 0) {
        rc = -EINVAL;
        snprintf(err, errlen, "key name \"%s\" is not the ledger origin \"%s\"", a->key.name,
                 origin);
        goto out;
    }

    snprintf(path, sizeof path, "%s/" STORE_INDEX, a->dir);
    a->index_fd = open(path, O_RDONLY | O_CLOEXEC);
    snprintf(path, sizeof path, "%s/" STORE_BLOCKS, a->dir);
    a->blocks_fd = open(path, O_RDONLY | O_CLOEXEC);
    uint64_t isz = fsize_of(a->index_fd), bsz = fsize_of(a->blocks_fd);
    a->index_n = isz / INDEX_ENTRY_LEN;
    a->ibuf = malloc(NODE_BUF_NODES * 2 * INDEX_ENTRY_LEN);
    if (!a->ibuf) {
        rc = -ENOMEM;
        goto out;
    }
    a->blocks_n = bsz / BLOCK_ENTRY_LEN;
    for (unsigned k = 0; k < STORE_MAX_LEVELS; k++) {
        snprintf(path, sizeof path, "%s/" STORE_NODES_DIR "/%02u", a->dir, k);
        struct node_reader *r = &a->nodes[k];
        r->fd = open(path, O_RDONLY | O_CLOEXEC);
        if (r->fd < 0)
            continue;
        uint64_t sz = fsize_of(r->fd);
        r->n = sz / NODE_LEN;
        r->buf = malloc(NODE_BUF_NODES * NODE_LEN);
        if (!r->buf) {
            rc = -ENOMEM;
            goto out;
        }
        if (sz % NODE_LEN)
            finding(a, false, "ledger/nodes/%02u: %llu trailing bytes (torn write)", k,
                    (unsigned long long)(sz % NODE_LEN));
    }
    if (isz % INDEX_ENTRY_LEN)
        finding(a, false, "ledger/index: %llu trailing bytes (torn write)",
                (unsigned long long)(isz % INDEX_ENTRY_LEN));
    if (bsz % BLOCK_ENTRY_LEN)
        finding(a, false, "ledger/blocks: %llu trailing bytes (torn write)",
                (unsigned long long)(bsz % BLOCK_ENTRY_LEN));
    uint64_t total = a->index_n;

    struct merkle_frontier f;
    merkle_frontier_init(&f);
    struct chain c = {0};
    uint64_t committed_records = 0;
    double t_last = now_s();
    bool stop = false;
    for (uint32_t seg = 0; !stop; seg++) {
        snprintf(path, sizeof path, "%s/" SEG_NAME_FMT, a->dir, seg);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            if (errno != ENOENT) {
                finding(a, true, "ledger/" SEG_NAME_FMT ": cannot open: %s", seg, strerror(errno));
            }
            break;
        }
        uint64_t fsz = fsize_of(fd);
        snprintf(path, sizeof path, "%s/" SEG_NAME_FMT, a->dir, seg + 1);
        bool next = access(path, F_OK) == 0;
        uint8_t *map = NULL;
        if (fsz > 0) {
            map = mmap(NULL, fsz, PROT_READ, MAP_PRIVATE, fd, 0);
            if (map == MAP_FAILED) {
                close(fd);
                finding(a, true, "ledger/" SEG_NAME_FMT ": cannot map: %s", seg, strerror(errno));
                break;
            }
            madvise(map, fsz, MADV_SEQUENTIAL);
        }
        close(fd);
        a->st->bytes += fsz;
        if (fsz < SEG_HEADER_LEN || store_seg_header_check(map, seg) != 0) {
            finding(a, next || a->blocks_n > c.height, "ledger/" SEG_NAME_FMT " offset 0: %s", seg,
                    next || a->blocks_n > c.height ? "bad segment header"
                                                   : "torn segment header (uncommitted)");
            if (map)
                munmap(map, fsz);
            break;
        }
        uint64_t off = SEG_HEADER_LEN;
        uint64_t batch_first = a->tree_size, batch_n = 0;
        uint64_t last_commit_end = off;
        uint64_t dropped = 0;
        while (off < fsz) {
            uint8_t type;
            uint32_t len;
            int fr = store_frame_check(map + off, fsz - off, &type, &len);
            if (fr) {
                /* Damage before a later commit is tampering; after the
                 * last commit it is an uncommitted (torn) tail. */
                bool committed_after = next || a->blocks_n > c.height ||
                                       store_find_commit(map + off + 1, fsz - off - 1) >= 0;
                if (committed_after)
                    finding(a, true,
                            "ledger/" SEG_NAME_FMT " offset %llu: %s frame (record %llu, block "
                            "%llu): %s",
                            seg, (unsigned long long)off,
                            off + FRAME_HEADER_LEN <= fsz
                                ? (map[off + 4] == FRAME_COMMIT ? "commit" : "record")
                                : "truncated",
                            (unsigned long long)a->tree_size, (unsigned long long)c.height,
                            fr == -EAGAIN ? "truncated" : "CRC mismatch or bad header");
                else
                    finding(a, false,
                            "ledger/" SEG_NAME_FMT " offset %llu: uncommitted tail of %llu bytes "
                            "(torn write; the next read-write open cuts it)",
                            seg, (unsigned long long)last_commit_end,
                            (unsigned long long)(fsz - last_commit_end));
                stop = true;
                break;
            }
            const uint8_t *p = map + off + FRAME_HEADER_LEN;
            if (type == FRAME_RECORD) {
                uint64_t i = a->tree_size;
                if (i < a->index_n) {
                    uint8_t e[INDEX_ENTRY_LEN];
                    uint64_t pos;
                    uint32_t elen;
                    if (index_read(a, i, e) || store_index_entry_parse(e, &pos, &elen))
                        finding(a, true,
                                "ledger/index offset %llu: entry of record %llu is damaged",
                                (unsigned long long)(i * INDEX_ENTRY_LEN), (unsigned long long)i);
                    else if (pos != POS_MAKE(seg, off) || elen != len)
                        finding(
                            a, true,
                            "ledger/index offset %llu: entry of record %llu points to " SEG_NAME_FMT
                            " offset %u length %u, the record is at offset %llu "
                            "length %u",
                            (unsigned long long)(i * INDEX_ENTRY_LEN), (unsigned long long)i,
                            POS_SEG(pos), POS_OFF(pos), elen, (unsigned long long)off, len);
                }
                uint8_t leaf[32];
                merkle_leaf_hash(p, len, leaf);
                a->cur_record = i;
                merkle_frontier_append(&f, leaf, audit_emit, a);
                a->tree_size++;
                batch_n++;
                a->st->records++;
                if ((a->st->records & 0xffff) == 0 && progress) {
                    double t = now_s();
                    if (t - t_last >= 1.0) {
                        t_last = t;
                        progress(ctx, a->st->records, total);
                    }
                }
            } else {
                check_commit(a, &c, &f, batch_first, batch_n, seg, (uint32_t)off, p, len);
                committed_records = a->tree_size;
                batch_first = a->tree_size;
                batch_n = 0;
                last_commit_end = off + FRAME_HEADER_LEN + len;
            }
            off += FRAME_HEADER_LEN + len;
            /* Keep the resident set small: drop mapped pages behind us. */
            if (off - dropped >= (16u << 20)) {
                uint64_t upto = off & ~(uint64_t)((1u << 20) - 1);
                madvise(map + dropped, upto - dropped, MADV_DONTNEED);
                dropped = upto;
            }
        }
        if (!stop && batch_n > 0) {
            if (next)
                finding(a, true,
                        "ledger/" SEG_NAME_FMT " offset %llu: records %llu..%llu have no commit "
                        "frame but later segments exist",
                        seg, (unsigned long long)last_commit_end, (unsigned long long)batch_first,
                        (unsigned long long)(a->tree_size - 1));
            else
                finding(a, false,
                        "ledger/" SEG_NAME_FMT " offset %llu: uncommitted tail of %llu records "
                        "(the next read-write open cuts it)",
                        seg, (unsigned long long)last_commit_end, (unsigned long long)batch_n);
            stop = true;
        }
        if (map)
            munmap(map, fsz);
        if (!next)
            break;
    }

    /* Derived files must not claim more than the segments committed. */
    if (a->blocks_n > c.height)
        finding(a, true,
                "ledger/blocks offset %llu: %llu block entries beyond the last commit frame in "
                "the segments (segment data missing or damaged)",
                (unsigned long long)(c.height * BLOCK_ENTRY_LEN),
                (unsigned long long)(a->blocks_n - c.height));
    if (a->index_n > committed_records && a->blocks_n > 0)
        finding(a, a->blocks_n > c.height,
                "ledger/index offset %llu: %llu entries beyond the last committed record",
                (unsigned long long)(committed_records * INDEX_ENTRY_LEN),
                (unsigned long long)(a->index_n - committed_records));
    if (progress)
        progress(ctx, a->st->records, total);
    rc = stats->problems ? LEDGER_ERR_CORRUPT : 0;

out:
    if (a->index_fd >= 0)
        close(a->index_fd);
    if (a->blocks_fd >= 0)
        close(a->blocks_fd);
    for (unsigned k = 0; k < STORE_MAX_LEVELS; k++) {
        if (a->nodes[k].fd >= 0)
            close(a->nodes[k].fd);
        free(a->nodes[k].buf);
    }
    free(a->ibuf);
    free(a);
    return rc;
}
