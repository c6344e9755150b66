/* Codec of the replicated batch command (see raft_batch.h for the
 * format). */
#include "cluster/raft_batch.h"

#include <stdlib.h>
#include <string.h>

#define RB__MAGIC "LMQB"
#define RB__VERSION 2 /* written; 1 is still read (no record flags) */

static void rb__put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void rb__put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t rb__get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rb__get64(const uint8_t *p)
{
    return (uint64_t)rb__get32(p) | (uint64_t)rb__get32(p + 4) << 32;
}

int lmq_raft_batch_encode(uint64_t origin, uint64_t seq, const struct lmq_batch_item *items,
                          size_t n, uint8_t **out, size_t *out_len)
{
    if (origin == 0 || seq == 0)
        return LMQ_RAFT_BATCH_ERR_ID;
    if (n == 0 || n > LEDGER_MAX_BATCH)
        return LMQ_RAFT_BATCH_ERR_COUNT;
    size_t total = LMQ_RAFT_BATCH_HEADER;
    const struct lmq_batch_item *it = items;
    for (size_t i = 0; i < n; i++, it = it->next) {
        if (it == NULL)
            return LMQ_RAFT_BATCH_ERR_COUNT;
        if (it->len == 0 || it->len > LEDGER_MAX_RECORD)
            return LMQ_RAFT_BATCH_ERR_LENGTH;
        if (it->flags & ~LMQ_BATCH_F_ALL)
            return LMQ_RAFT_BATCH_ERR_FLAGS;
        total += 5 + it->len;
    }
    uint8_t *buf = malloc(total), *p = buf;
    if (buf == NULL)
        return LMQ_RAFT_BATCH_ERR_NOMEM;
    memcpy(p, RB__MAGIC, 4);
    p[4] = RB__VERSION;
    p[5] = p[6] = p[7] = 0;
    rb__put64(p + 8, origin);
    rb__put64(p + 16, seq);
    rb__put32(p + 24, (uint32_t)n);
    rb__put32(p + 28, 0);
    p += LMQ_RAFT_BATCH_HEADER;
    it = items;
    for (size_t i = 0; i < n; i++, it = it->next) {
        rb__put32(p, (uint32_t)it->len);
        p[4] = it->flags;
        memcpy(p + 5, it->rec, it->len);
        p += 5 + it->len;
    }
    *out = buf;
    *out_len = total;
    return 0;
}

int lmq_raft_batch_open(struct lmq_raft_batch *b, const uint8_t *buf, size_t len)
{
    if (len < LMQ_RAFT_BATCH_HEADER)
        return LMQ_RAFT_BATCH_ERR_SHORT;
    if (memcmp(buf, RB__MAGIC, 4) != 0 || buf[4] < 1 || buf[4] > RB__VERSION || buf[5] != 0 ||
        buf[6] != 0 || buf[7] != 0 || rb__get32(buf + 28) != 0)
        return LMQ_RAFT_BATCH_ERR_MAGIC;
    uint8_t version = buf[4];
    size_t head = version >= 2 ? 5 : 4; /* length (+ flags) before each record */
    uint64_t origin = rb__get64(buf + 8), seq = rb__get64(buf + 16);
    uint32_t n = rb__get32(buf + 24);
    if (origin == 0 || seq == 0)
        return LMQ_RAFT_BATCH_ERR_ID;
    if (n == 0 || n > LEDGER_MAX_BATCH)
        return LMQ_RAFT_BATCH_ERR_COUNT;
    size_t off = LMQ_RAFT_BATCH_HEADER;
    for (uint32_t i = 0; i < n; i++) {
        if (len - off < head)
            return LMQ_RAFT_BATCH_ERR_SHORT;
        uint32_t rl = rb__get32(buf + off);
        if (rl == 0 || rl > LEDGER_MAX_RECORD)
            return LMQ_RAFT_BATCH_ERR_LENGTH;
        if (head == 5 && (buf[off + 4] & ~LMQ_BATCH_F_ALL))
            return LMQ_RAFT_BATCH_ERR_FLAGS;
        if (len - off - head < rl)
            return LMQ_RAFT_BATCH_ERR_SHORT;
        off += head + (size_t)rl;
    }
    if (off != len)
        return LMQ_RAFT_BATCH_ERR_TRAILING;
    b->version = version;
    b->origin = origin;
    b->seq = seq;
    b->n = n;
    b->flags = 0;
    b->next = buf + LMQ_RAFT_BATCH_HEADER;
    b->left = n;
    return 0;
}

bool lmq_raft_batch_next(struct lmq_raft_batch *b, const uint8_t **rec, size_t *len)
{
    if (b->left == 0)
        return false;
    uint32_t rl = rb__get32(b->next);
    size_t head = b->version >= 2 ? 5 : 4;
    b->flags = head == 5 ? b->next[4] : 0;
    *rec = b->next + head;
    *len = rl;
    b->next += head + (size_t)rl;
    b->left--;
    return true;
}

const char *lmq_raft_batch_strerror(int err)
{
    switch (err) {
    case 0:
        return "ok";
    case LMQ_RAFT_BATCH_ERR_SHORT:
        return "truncated batch";
    case LMQ_RAFT_BATCH_ERR_MAGIC:
        return "not a version 1 or 2 batch";
    case LMQ_RAFT_BATCH_ERR_ID:
        return "batch origin or sequence is 0";
    case LMQ_RAFT_BATCH_ERR_COUNT:
        return "bad record count";
    case LMQ_RAFT_BATCH_ERR_LENGTH:
        return "bad record length";
    case LMQ_RAFT_BATCH_ERR_TRAILING:
        return "bytes after the last record";
    case LMQ_RAFT_BATCH_ERR_NOMEM:
        return "out of memory";
    case LMQ_RAFT_BATCH_ERR_FLAGS:
        return "unknown record flags";
    default:
        return "unknown batch error";
    }
}
