/* A connection's outgoing bytes, queued between loop iterations so that one
 * writev per connection per iteration sends everything. Small pieces
 * (headers, acks, small payloads) are copied into one growing buffer;
 * large payloads are referenced (the queue holds a message reference), so
 * a fan-out to N subscribers never copies a big payload N times.
 * Invariant: bytes == sum of the lengths of the segments from head on.
 * Loop thread only. */
#ifndef LMQ_BROKER_OUTQ_H
#define LMQ_BROKER_OUTQ_H

#include "broker/msg.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Payloads up to this size are copied; larger ones are referenced. */
#define LMQ_OUTQ_COPY_MAX 512

struct lmq_outseg {
    struct lmq_msg *ref;    /* NULL: bytes at buf + off */
    const uint8_t *ptr;     /* when ref != NULL */
    size_t off;
    size_t len;
};

struct lmq_outq {
    uint8_t *buf;
    struct lmq_outseg *segs;
    size_t bytes;           /* bytes not yet written */
    uint32_t len, cap;      /* copy buffer (bounded by the broker's limits) */
    uint32_t nsegs, scap;
    uint32_t head;          /* first segment not fully written */
    uint32_t head_off;      /* bytes of segs[head] already written */
};

/* Reserves N bytes at the end of the copy buffer and returns where to
 * write them (NULL when out of memory). The bytes count as queued. */
uint8_t *lmq_outq_reserve(struct lmq_outq *q, size_t n);
/* Gives back the last N bytes of the latest lmq_outq_reserve (when fewer
 * were used than reserved). */
void lmq_outq_unreserve(struct lmq_outq *q, size_t n);
int lmq_outq_copy(struct lmq_outq *q, const void *p, size_t n);
/* Queues N bytes at P that belong to M (takes a reference). */
int lmq_outq_ref(struct lmq_outq *q, struct lmq_msg *m, const void *p, size_t n);

/* Fills up to MAX iovecs with the unwritten bytes; returns how many. */
size_t lmq_outq_iov(const struct lmq_outq *q, struct iovec *iov, size_t max);
/* Marks N bytes as written; resets the queue when all are. */
void lmq_outq_consume(struct lmq_outq *q, size_t n);
/* Drops everything and frees the buffers. */
void lmq_outq_free(struct lmq_outq *q);
/* Releases the buffers of the queue if it is empty. */
void lmq_outq_trim(struct lmq_outq *q);
/* Frees the released buffers kept for reuse (at shutdown; the queues may
 * still be used afterwards). */
void lmq_outq_spares_free(void);

#endif
