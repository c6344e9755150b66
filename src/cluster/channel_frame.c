/* Codec of the cluster channel's frames (see channel_frame.h for the
 * format). */
#include "cluster/channel_frame.h"

#include <stdlib.h>
#include <string.h>

#define CF__VERSION 1

static void cf__put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void cf__put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t cf__get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t cf__get64(const uint8_t *p)
{
    return (uint64_t)cf__get32(p) | (uint64_t)cf__get32(p + 4) << 32;
}

/* A frame of TYPE with BODY_LEN bytes of body, header filled in. */
static uint8_t *cf__alloc(uint8_t type, uint64_t seq, size_t body_len, size_t *out_len)
{
    size_t total = LMQ_CHANNEL_HEADER + body_len;
    uint8_t *p = malloc(total);
    if (p == NULL)
        return NULL;
    cf__put32(p, (uint32_t)(total - 4));
    p[4] = type;
    p[5] = CF__VERSION;
    p[6] = p[7] = 0;
    cf__put64(p + 8, seq);
    *out_len = total;
    return p;
}

int lmq_channel_encode_forward(uint64_t seq, const uint8_t *cmd, size_t len, uint8_t **out,
                               size_t *out_len)
{
    if (seq == 0)
        return LMQ_CHANNEL_ERR_SEQ;
    if (len == 0 || len > LMQ_CHANNEL_MAX_FRAME - LMQ_CHANNEL_HEADER)
        return LMQ_CHANNEL_ERR_BODY;
    uint8_t *p = cf__alloc(LMQ_CHANNEL_FORWARD, seq, len, out_len);
    if (p == NULL)
        return LMQ_CHANNEL_ERR_NOMEM;
    memcpy(p + LMQ_CHANNEL_HEADER, cmd, len);
    *out = p;
    return 0;
}

int lmq_channel_encode_result(uint64_t seq, int32_t status, uint64_t raft_index,
                              const struct lmq_channel_result_item *items, uint32_t n,
                              uint8_t **out, size_t *out_len)
{
    if (seq == 0)
        return LMQ_CHANNEL_ERR_SEQ;
    if (n > (LMQ_CHANNEL_MAX_FRAME - LMQ_CHANNEL_HEADER - LMQ_CHANNEL_RESULT_HEAD) /
                LMQ_CHANNEL_RESULT_ITEM ||
        (n > 0 && items == NULL))
        return LMQ_CHANNEL_ERR_BODY;
    size_t body = LMQ_CHANNEL_RESULT_HEAD + (size_t)n * LMQ_CHANNEL_RESULT_ITEM;
    uint8_t *p = cf__alloc(LMQ_CHANNEL_RESULT, seq, body, out_len);
    if (p == NULL)
        return LMQ_CHANNEL_ERR_NOMEM;
    uint8_t *b = p + LMQ_CHANNEL_HEADER;
    cf__put32(b, (uint32_t)status);
    cf__put32(b + 4, n);
    cf__put64(b + 8, raft_index);
    b += LMQ_CHANNEL_RESULT_HEAD;
    for (uint32_t i = 0; i < n; i++, b += LMQ_CHANNEL_RESULT_ITEM) {
        cf__put32(b, (uint32_t)items[i].status);
        cf__put32(b + 4, 0);
        cf__put64(b + 8, items[i].index);
    }
    *out = p;
    return 0;
}

int lmq_channel_frame_decode(const uint8_t *buf, size_t len, size_t max,
                             struct lmq_channel_frame *f, size_t *consumed)
{
    if (max == 0 || max > LMQ_CHANNEL_MAX_FRAME)
        max = LMQ_CHANNEL_MAX_FRAME;
    *consumed = 0;
    if (len < 4)
        return LMQ_CHANNEL_ERR_PARTIAL;
    uint64_t total = (uint64_t)cf__get32(buf) + 4;
    if (total < LMQ_CHANNEL_HEADER || total > max)
        return LMQ_CHANNEL_ERR_LENGTH;
    /* Refuse a bad header as soon as it is there, not once the body came. */
    if (len >= 8 && ((buf[4] != LMQ_CHANNEL_FORWARD && buf[4] != LMQ_CHANNEL_RESULT) ||
                     buf[5] != CF__VERSION || buf[6] != 0 || buf[7] != 0))
        return LMQ_CHANNEL_ERR_HEADER;
    if (len < total) {
        *consumed = (size_t)total;
        return LMQ_CHANNEL_ERR_PARTIAL;
    }
    memset(f, 0, sizeof *f);
    f->type = buf[4];
    f->seq = cf__get64(buf + 8);
    if (f->seq == 0)
        return LMQ_CHANNEL_ERR_SEQ;
    f->body = buf + LMQ_CHANNEL_HEADER;
    f->body_len = (size_t)total - LMQ_CHANNEL_HEADER;
    if (f->type == LMQ_CHANNEL_FORWARD) {
        if (f->body_len == 0)
            return LMQ_CHANNEL_ERR_BODY;
    } else {
        if (f->body_len < LMQ_CHANNEL_RESULT_HEAD)
            return LMQ_CHANNEL_ERR_BODY;
        f->status = (int32_t)cf__get32(f->body);
        f->n_items = cf__get32(f->body + 4);
        f->raft_index = cf__get64(f->body + 8);
        if ((f->body_len - LMQ_CHANNEL_RESULT_HEAD) / LMQ_CHANNEL_RESULT_ITEM != f->n_items ||
            (f->body_len - LMQ_CHANNEL_RESULT_HEAD) % LMQ_CHANNEL_RESULT_ITEM != 0)
            return LMQ_CHANNEL_ERR_BODY;
        if (f->status > 0 || f->status < LMQ_CHANNEL_REFUSED_UNAVAILABLE ||
            (f->status == LMQ_CHANNEL_OK) != (f->raft_index != 0))
            return LMQ_CHANNEL_ERR_BODY;
        f->items = f->body + LMQ_CHANNEL_RESULT_HEAD;
        for (uint32_t i = 0; i < f->n_items; i++)
            if (cf__get32(f->items + (size_t)i * LMQ_CHANNEL_RESULT_ITEM + 4) != 0)
                return LMQ_CHANNEL_ERR_BODY;
    }
    *consumed = (size_t)total;
    return 0;
}

void lmq_channel_result_item(const struct lmq_channel_frame *f, uint32_t i,
                             struct lmq_channel_result_item *out)
{
    const uint8_t *p = f->items + (size_t)i * LMQ_CHANNEL_RESULT_ITEM;
    out->status = (int32_t)cf__get32(p);
    out->index = cf__get64(p + 8);
}

const char *lmq_channel_strerror(int err)
{
    switch (err) {
    case 0:
        return "ok";
    case LMQ_CHANNEL_ERR_PARTIAL:
        return "incomplete frame";
    case LMQ_CHANNEL_ERR_LENGTH:
        return "frame length out of range";
    case LMQ_CHANNEL_ERR_HEADER:
        return "unknown frame type or version";
    case LMQ_CHANNEL_ERR_SEQ:
        return "frame sequence 0";
    case LMQ_CHANNEL_ERR_BODY:
        return "malformed frame body";
    case LMQ_CHANNEL_ERR_NOMEM:
        return "out of memory";
    default:
        return "unknown channel error";
    }
}

const char *lmq_channel_status_name(int32_t status)
{
    switch (status) {
    case LMQ_CHANNEL_OK:
        return "applied";
    case LMQ_CHANNEL_REFUSED_NOT_LEADER:
        return "not the leader";
    case LMQ_CHANNEL_REFUSED_BUSY:
        return "leader busy";
    case LMQ_CHANNEL_REFUSED_LOST:
        return "leadership lost, outcome unknown";
    case LMQ_CHANNEL_REFUSED_BAD:
        return "refused as malformed or not the sender's batch";
    case LMQ_CHANNEL_REFUSED_UNAVAILABLE:
        return "leader unavailable";
    default:
        return "unknown status";
    }
}
