/* Outgoing byte queue of one connection (see outq.h). */
#include "broker/outq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Starting sizes of the copy buffer and of the segment array. */
#define OQ__BUF0 256
#define OQ__SEGS0 8
/* Released buffers of the starting sizes are kept here for the next queue
 * rather than freed: every connection needs both for its CONNACK, for one
 * loop iteration. Freed, they would leave holes between the long-lived
 * structs of the connections accepted meanwhile, and with glibc the next
 * connection's structs leave 64 bytes of each hole unusable. Loop thread
 * only, like the queues; at most OQ__SPARE_MAX of each (136 KiB). */
#define OQ__SPARE_MAX 128
static void *oq__spare_buf[OQ__SPARE_MAX], *oq__spare_segs[OQ__SPARE_MAX];
static unsigned oq__n_spare_buf, oq__n_spare_segs;

static void *oq__take(void **spare, unsigned *n, size_t size)
{
    return *n ? spare[--*n] : malloc(size);
}

static void oq__give(void **spare, unsigned *n, void *p)
{
    if (p && *n < OQ__SPARE_MAX)
        spare[(*n)++] = p;
    else
        free(p);
}

static void oq__release(struct lmq_outq *q)
{
    if (q->cap == OQ__BUF0)
        oq__give(oq__spare_buf, &oq__n_spare_buf, q->buf);
    else
        free(q->buf);
    if (q->scap == OQ__SEGS0)
        oq__give(oq__spare_segs, &oq__n_spare_segs, q->segs);
    else
        free(q->segs);
    memset(q, 0, sizeof *q);
}

void lmq_outq_spares_free(void)
{
    while (oq__n_spare_buf)
        free(oq__spare_buf[--oq__n_spare_buf]);
    while (oq__n_spare_segs)
        free(oq__spare_segs[--oq__n_spare_segs]);
}

static int oq__seg(struct lmq_outq *q)
{
    if (q->nsegs == q->scap) {
        uint32_t cap = q->scap ? q->scap * 2 : OQ__SEGS0;
        struct lmq_outseg *s =
            q->scap ? realloc(q->segs, cap * sizeof *s)
                    : oq__take(oq__spare_segs, &oq__n_spare_segs, cap * sizeof *s);
        if (!s)
            return -ENOMEM;
        q->segs = s;
        q->scap = cap;
    }
    return 0;
}

uint8_t *lmq_outq_reserve(struct lmq_outq *q, size_t n)
{
    if ((size_t)q->len + n > q->cap) {
        size_t cap = q->cap ? q->cap : OQ__BUF0;
        while (cap < (size_t)q->len + n)
            cap *= 2;
        if (cap > UINT32_MAX)
            return NULL;
        uint8_t *b = q->cap || cap != OQ__BUF0
                         ? realloc(q->buf, cap)
                         : oq__take(oq__spare_buf, &oq__n_spare_buf, OQ__BUF0);
        if (!b)
            return NULL;
        q->buf = b;
        q->cap = (uint32_t)cap;
    }
    struct lmq_outseg *last = q->nsegs ? &q->segs[q->nsegs - 1] : NULL;
    if (last && !last->ref && last->off + last->len == q->len) {
        last->len += n;
    } else {
        if (oq__seg(q) < 0)
            return NULL;
        q->segs[q->nsegs++] = (struct lmq_outseg){NULL, NULL, q->len, n};
    }
    uint8_t *p = q->buf + q->len;
    q->len += (uint32_t)n;
    q->bytes += n;
    return p;
}

void lmq_outq_unreserve(struct lmq_outq *q, size_t n)
{
    struct lmq_outseg *last = &q->segs[q->nsegs - 1];
    last->len -= n;
    q->len -= (uint32_t)n;
    q->bytes -= n;
    if (last->len == 0)
        q->nsegs--;
}

int lmq_outq_copy(struct lmq_outq *q, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    uint8_t *d = lmq_outq_reserve(q, n);
    if (!d)
        return -ENOMEM;
    memcpy(d, p, n);
    return 0;
}

int lmq_outq_ref(struct lmq_outq *q, struct lmq_msg *m, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (oq__seg(q) < 0)
        return -ENOMEM;
    q->segs[q->nsegs++] = (struct lmq_outseg){lmq_msg_ref(m), p, 0, n};
    q->bytes += n;
    return 0;
}

size_t lmq_outq_iov(const struct lmq_outq *q, struct iovec *iov, size_t max)
{
    size_t k = 0;
    for (uint32_t i = q->head; i < q->nsegs && k < max; i++, k++) {
        const struct lmq_outseg *s = &q->segs[i];
        const uint8_t *base = s->ref ? s->ptr : q->buf + s->off;
        size_t skip = i == q->head ? q->head_off : 0;
        iov[k].iov_base = (void *)(base + skip);
        iov[k].iov_len = s->len - skip;
    }
    return k;
}

static void oq__reset(struct lmq_outq *q)
{
    for (uint32_t i = 0; i < q->nsegs; i++)
        lmq_msg_unref(q->segs[i].ref);
    q->nsegs = 0;
    q->len = 0;
    q->head = 0;
    q->head_off = 0;
    q->bytes = 0;
}

void lmq_outq_consume(struct lmq_outq *q, size_t n)
{
    if (n >= q->bytes) {
        oq__reset(q);
        return;
    }
    q->bytes -= n;
    while (n > 0) {
        struct lmq_outseg *s = &q->segs[q->head];
        size_t left = s->len - q->head_off;
        if (n < left) {
            q->head_off += (uint32_t)n;
            return;
        }
        n -= left;
        lmq_msg_unref(s->ref);
        s->ref = NULL;
        q->head++;
        q->head_off = 0;
    }
}

void lmq_outq_free(struct lmq_outq *q)
{
    oq__reset(q);
    oq__release(q);
}

void lmq_outq_trim(struct lmq_outq *q)
{
    if (q->bytes == 0 && q->nsegs == 0)
        oq__release(q);
}
