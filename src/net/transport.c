/* The filter functions common to every transport, the byte buffers they
 * share, and the stack that chains two filters (see transport.h).
 * Invariant of a stack: after every call, the outer filter's application
 * bytes have all been fed to the inner filter and the inner filter's wire
 * bytes have all been written through the outer one, so the reader and the
 * writer only ever see the inner app buffer and the outer wire buffer. */
#include "net/transport.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Empty buffers bigger than this go back to the allocator, so an idle
 * connection holds little. */
#define FBUF_KEEP 4096

/* ---- buffers ---- */

uint8_t *lmq_fbuf_reserve(struct lmq_fbuf *b, size_t n)
{
    if (n > SIZE_MAX / 2 - b->len)
        return NULL;
    if (b->cap - b->off - b->len >= n)
        return b->data + b->off + b->len;
    if (b->cap - b->len >= n) {
        memmove(b->data, b->data + b->off, b->len);
        b->off = 0;
        return b->data + b->len;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n)
        cap *= 2;
    if (b->off) {
        memmove(b->data, b->data + b->off, b->len);
        b->off = 0;
    }
    uint8_t *d = realloc(b->data, cap);
    if (!d)
        return NULL;
    b->data = d;
    b->cap = cap;
    return b->data + b->len;
}

void lmq_fbuf_commit(struct lmq_fbuf *b, size_t n)
{
    b->len += n;
}

int lmq_fbuf_append(struct lmq_fbuf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    uint8_t *d = lmq_fbuf_reserve(b, n);
    if (!d)
        return LMQ_FILTER_ENOMEM;
    memcpy(d, p, n);
    b->len += n;
    return 0;
}

void lmq_fbuf_consume(struct lmq_fbuf *b, size_t n)
{
    if (n >= b->len) {
        b->off = b->len = 0;
        if (b->cap > FBUF_KEEP)
            lmq_fbuf_free(b);
        return;
    }
    b->off += n;
    b->len -= n;
}

void lmq_fbuf_free(struct lmq_fbuf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* ---- the common head ---- */

void lmq_filter__init(struct lmq_filter *f, const struct lmq_filter_ops *ops)
{
    memset(f, 0, sizeof *f);
    f->ops = ops;
    f->app_src = f;
    f->wire_src = f;
}

void lmq_filter__fini(struct lmq_filter *f)
{
    lmq_fbuf_free(&f->app);
    lmq_fbuf_free(&f->wire);
}

int lmq_filter__fail(struct lmq_filter *f, int code, const char *fmt, ...)
{
    /* The first reason wins: later ones are consequences. */
    if (!(f->state & LMQ_FILTER_ERROR)) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(f->reason, sizeof f->reason, fmt, ap);
        va_end(ap);
    }
    f->state |= LMQ_FILTER_ERROR;
    return code;
}

/* ---- the public functions ---- */

int lmq_filter_feed(struct lmq_filter *f, const uint8_t *wire, size_t len)
{
    if (f->state & LMQ_FILTER_ERROR)
        return LMQ_FILTER_ESTATE;
    if (len == 0 || (f->state & LMQ_FILTER_PEER_CLOSED))
        return 0;
    return f->ops->feed(f, wire, len);
}

const uint8_t *lmq_filter_app(const struct lmq_filter *f, size_t *len)
{
    const struct lmq_fbuf *b = &f->app_src->app;
    *len = b->len;
    return b->len ? b->data + b->off : NULL;
}

void lmq_filter_app_consume(struct lmq_filter *f, size_t n)
{
    lmq_fbuf_consume(&f->app_src->app, n);
}

int lmq_filter_write(struct lmq_filter *f, const struct iovec *iov, size_t n)
{
    unsigned st = lmq_filter_state(f);
    if (!(st & LMQ_FILTER_OPEN) || (st & (LMQ_FILTER_ERROR | LMQ_FILTER_CLOSE_SENT)))
        return LMQ_FILTER_ESTATE;
    return f->ops->write(f, iov, n);
}

const uint8_t *lmq_filter_wire(const struct lmq_filter *f, size_t *len)
{
    const struct lmq_fbuf *b = &f->wire_src->wire;
    *len = b->len;
    return b->len ? b->data + b->off : NULL;
}

void lmq_filter_wire_consume(struct lmq_filter *f, size_t n)
{
    lmq_fbuf_consume(&f->wire_src->wire, n);
}

void lmq_filter_wire_take(struct lmq_filter *f, uint8_t **buf, size_t *len)
{
    struct lmq_fbuf *b = &f->wire_src->wire;
    *len = b->len;
    if (b->len == 0) {
        *buf = NULL;
        return;
    }
    if (b->off)
        memmove(b->data, b->data + b->off, b->len);
    *buf = b->data;
    memset(b, 0, sizeof *b);
}

int lmq_filter_shutdown(struct lmq_filter *f)
{
    if (f->state & (LMQ_FILTER_ERROR | LMQ_FILTER_CLOSE_SENT))
        return 0;
    return f->ops->shutdown(f);
}

unsigned lmq_filter_state(const struct lmq_filter *f)
{
    return f->state;
}

const char *lmq_filter_reason(const struct lmq_filter *f)
{
    return f->reason;
}

void lmq_filter_free(struct lmq_filter *f)
{
    if (f)
        f->ops->destroy(f);
}

/* ---- the stack ---- */

struct filter__stack {
    struct lmq_filter head;
    struct lmq_filter *outer, *inner;
    char name[32];
};

/* Recomputes the head's state and reason from the layers. */
static void stack__sync(struct filter__stack *s)
{
    unsigned o = s->outer->state, i = s->inner->state;
    unsigned st = (o | i) & ~LMQ_FILTER_OPEN;
    if ((o & LMQ_FILTER_OPEN) && (i & LMQ_FILTER_OPEN))
        st |= LMQ_FILTER_OPEN;
    /* Our close is only out once the inner close went through the outer
     * layer; the outer close alone (close_notify) also ends the stream. */
    s->head.state = st;
    if (!s->head.reason[0]) {
        if (s->outer->reason[0])
            snprintf(s->head.reason, sizeof s->head.reason, "%s", s->outer->reason);
        else if (s->inner->reason[0])
            snprintf(s->head.reason, sizeof s->head.reason, "%s", s->inner->reason);
    }
}

/* Moves the outer filter's application bytes into the inner filter and
 * the inner filter's wire bytes out through the outer one. */
static int stack__pump(struct filter__stack *s)
{
    int rc = 0;
    size_t n;
    const uint8_t *p = lmq_filter_app(s->outer, &n);
    if (n) {
        rc = lmq_filter_feed(s->inner, p, n);
        lmq_filter_app_consume(s->outer, n);
    }
    p = lmq_filter_wire(s->inner, &n);
    if (n) {
        unsigned os = s->outer->state;
        if ((os & LMQ_FILTER_OPEN) && !(os & (LMQ_FILTER_ERROR | LMQ_FILTER_CLOSE_SENT))) {
            struct iovec v = {(void *)p, n};
            int r = lmq_filter_write(s->outer, &v, 1);
            if (r < 0 && rc == 0)
                rc = r;
        }
        lmq_filter_wire_consume(s->inner, n);
    }
    /* The inner layer ended (closed by the peer or failed): end the outer
     * one too, after the inner layer's last words. */
    if (s->inner->state & (LMQ_FILTER_ERROR | LMQ_FILTER_PEER_CLOSED | LMQ_FILTER_CLOSE_SENT))
        lmq_filter_shutdown(s->outer);
    return rc;
}

static int stack__feed(struct lmq_filter *f, const uint8_t *wire, size_t len)
{
    struct filter__stack *s = (struct filter__stack *)f;
    int ro = lmq_filter_feed(s->outer, wire, len);
    int ri = stack__pump(s);
    stack__sync(s);
    return ro < 0 ? ro : ri;
}

static int stack__write(struct lmq_filter *f, const struct iovec *iov, size_t n)
{
    struct filter__stack *s = (struct filter__stack *)f;
    int r = lmq_filter_write(s->inner, iov, n);
    int rp = stack__pump(s);
    stack__sync(s);
    return r < 0 ? r : rp;
}

static int stack__shutdown(struct lmq_filter *f)
{
    struct filter__stack *s = (struct filter__stack *)f;
    lmq_filter_shutdown(s->inner);
    stack__pump(s);
    lmq_filter_shutdown(s->outer);
    stack__sync(s);
    return 0;
}

static void stack__destroy(struct lmq_filter *f)
{
    struct filter__stack *s = (struct filter__stack *)f;
    lmq_filter_free(s->inner);
    lmq_filter_free(s->outer);
    lmq_filter__fini(f);
    free(s);
}

static const struct lmq_filter_ops stack__ops = {
    .name = "stack",
    .feed = stack__feed,
    .write = stack__write,
    .shutdown = stack__shutdown,
    .destroy = stack__destroy,
};

const char *lmq_filter_name(const struct lmq_filter *f)
{
    if (f->ops == &stack__ops)
        return ((const struct filter__stack *)f)->name;
    return f->ops->name;
}

struct lmq_filter *lmq_filter_layer(struct lmq_filter *f, const char *name)
{
    if (!f)
        return NULL;
    if (f->ops == &stack__ops) {
        struct filter__stack *s = (struct filter__stack *)f;
        struct lmq_filter *l = lmq_filter_layer(s->outer, name);
        return l ? l : lmq_filter_layer(s->inner, name);
    }
    return strcmp(f->ops->name, name) == 0 ? f : NULL;
}

struct lmq_filter *lmq_filter_stack(struct lmq_filter *outer, struct lmq_filter *inner)
{
    struct filter__stack *s = outer && inner ? malloc(sizeof *s) : NULL;
    if (!s) {
        lmq_filter_free(inner);
        lmq_filter_free(outer);
        return NULL;
    }
    lmq_filter__init(&s->head, &stack__ops);
    s->outer = outer;
    s->inner = inner;
    s->head.app_src = inner->app_src;
    s->head.wire_src = outer->wire_src;
    if (snprintf(s->name, sizeof s->name, "%s+%s", lmq_filter_name(inner),
                 lmq_filter_name(outer)) >= (int)sizeof s->name)
        s->name[sizeof s->name - 1] = '\0'; /* a long name is only cut short in logs */
    stack__sync(s);
    return &s->head;
}
