/* The cluster channel (see channel.h): connections over a libraft
 * transport (raft_tls or libraft's TCP), each a byte stream of frames.
 * One struct ch__conn per connection in either direction; it is freed in
 * the close callback of its stream, or in the connect callback when it
 * was dropped or failed before a stream existed. The channel itself is
 * freed once it stops, every connection is freed and the transport has
 * closed. */
#include "cluster/channel.h"

#include "cluster/raft_tcp.h"
#include "cluster/raft_tls.h"
#include "util/log.h"

#include <raft.h>
#include <raft/uv.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CH__READ_CHUNK 65536

struct ch__out {
    struct ch__out *next;
    size_t len;
    uint8_t data[];
};

struct ch__conn {
    struct lmq_channel *ch;
    struct ch__conn *next, *prev;
    uint64_t cid;
    uint64_t peer;
    bool outgoing;
    bool closing; /* no more frames in or out; freed by a callback */
    struct raft_uv_connect req;
    uv_stream_t *s; /* from the transport (raft_malloc'd), once connected */
    uint8_t *rbuf;
    size_t rlen, rcap;
    struct ch__out *q_head, *q_tail; /* queued while connecting */
    size_t q_bytes;                  /* queued + being written */
};

struct ch__write {
    uv_write_t req;
    struct ch__conn *c;
    size_t len;
    uint8_t data[];
};

struct lmq_channel {
    uv_loop_t *loop;
    struct raft_uv_transport t;
    bool tls;
    bool t_open; /* transport initialised and not yet closed */
    struct lmq_raft_member members[LMQ_RAFT_MAX_MEMBERS]; /* channel addresses */
    size_t n_members;
    struct lmq_channel_options o;
    struct ch__conn *conns;
    uint64_t next_cid;
    bool stopping;
    void (*done)(void *ctx);
    void *done_ctx;
};

static void ch__close_conn(struct ch__conn *c, bool notify);
static void ch__maybe_done(struct lmq_channel *ch);

int lmq_channel_address(const struct lmq_raft_member *m, unsigned offset, char *out, size_t cap)
{
    if (lmq_raft_address_check(m->address) != 0)
        return -1;
    const char *colon = strrchr(m->address, ':');
    unsigned long port = strtoul(colon + 1, NULL, 10) + offset;
    if (offset == 0 || port > 65535)
        return -1;
    int n = snprintf(out, cap, "%.*s:%lu", (int)(colon - m->address), m->address, port);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

static const struct lmq_raft_member *ch__member(struct lmq_channel *ch, uint64_t id)
{
    for (size_t i = 0; i < ch->n_members; i++)
        if (ch->members[i].id == id)
            return &ch->members[i];
    return NULL;
}

static struct ch__conn *ch__conn_new(struct lmq_channel *ch, uint64_t peer, bool outgoing)
{
    struct ch__conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->ch = ch;
    c->cid = ++ch->next_cid;
    c->peer = peer;
    c->outgoing = outgoing;
    c->next = ch->conns;
    if (ch->conns)
        ch->conns->prev = c;
    ch->conns = c;
    return c;
}

static void ch__conn_free(struct ch__conn *c)
{
    struct lmq_channel *ch = c->ch;
    if (c->prev)
        c->prev->next = c->next;
    else
        ch->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    while (c->q_head) {
        struct ch__out *o = c->q_head;
        c->q_head = o->next;
        free(o);
    }
    free(c->rbuf);
    free(c);
    ch__maybe_done(ch);
}

/* ------------------------------------------------------------------ */
/* writing */

static void ch__write_cb(uv_write_t *req, int status)
{
    struct ch__write *w = (struct ch__write *)req;
    struct ch__conn *c = w->c;
    c->q_bytes -= w->len;
    free(w);
    if (status < 0 && !c->closing) {
        LMQ_NOTICE("channel: node %" PRIu64 ": writing to node %" PRIu64 " failed: %s", c->ch->o.id,
                   c->peer, uv_strerror(status));
        ch__close_conn(c, true);
    }
}

/* Writes on a connected C; LEN already counted in q_bytes. */
static int ch__write(struct ch__conn *c, const uint8_t *data, size_t len)
{
    struct ch__write *w = malloc(sizeof *w + len);
    if (w == NULL)
        return -1;
    w->c = c;
    w->len = len;
    memcpy(w->data, data, len);
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)len);
    int rv = uv_write(&w->req, c->s, &b, 1, ch__write_cb);
    if (rv != 0) {
        free(w);
        return -1;
    }
    return 0;
}

static int ch__queue(struct ch__conn *c, const uint8_t *data, size_t len)
{
    struct lmq_channel *ch = c->ch;
    if (c->closing || len > ch->o.max_queue || c->q_bytes > ch->o.max_queue - len)
        return -1;
    if (c->s) {
        if (ch__write(c, data, len) != 0)
            return -1;
        c->q_bytes += len;
        return 0;
    }
    struct ch__out *o = malloc(sizeof *o + len);
    if (o == NULL)
        return -1;
    o->next = NULL;
    o->len = len;
    memcpy(o->data, data, len);
    if (c->q_tail)
        c->q_tail->next = o;
    else
        c->q_head = o;
    c->q_tail = o;
    c->q_bytes += len;
    return 0;
}

/* ------------------------------------------------------------------ */
/* reading */

static void ch__alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct ch__conn *c = h->data;
    (void)suggested;
    size_t cap_max = c->ch->o.max_frame + CH__READ_CHUNK;
    if (c->rcap - c->rlen < CH__READ_CHUNK && c->rcap < cap_max) {
        size_t want = c->rcap ? c->rcap * 2 : CH__READ_CHUNK;
        if (want < c->rlen + CH__READ_CHUNK)
            want = c->rlen + CH__READ_CHUNK;
        if (want > cap_max)
            want = cap_max;
        uint8_t *p = realloc(c->rbuf, want);
        if (p) {
            c->rbuf = p;
            c->rcap = want;
        }
    }
    *buf = uv_buf_init((char *)c->rbuf + c->rlen, (unsigned)(c->rcap - c->rlen));
}

static void ch__read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct ch__conn *c = s->data;
    struct lmq_channel *ch = c->ch;
    (void)buf;
    if (nread == 0 || c->closing)
        return;
    if (nread < 0) {
        if (nread != UV_EOF)
            LMQ_NOTICE("channel: node %" PRIu64 ": connection with node %" PRIu64 ": %s", ch->o.id,
                       c->peer, uv_strerror((int)nread));
        ch__close_conn(c, true);
        return;
    }
    c->rlen += (size_t)nread;
    size_t off = 0;
    while (!c->closing) {
        struct lmq_channel_frame f;
        size_t used;
        int rv = lmq_channel_frame_decode(c->rbuf + off, c->rlen - off, ch->o.max_frame, &f, &used);
        if (rv == LMQ_CHANNEL_ERR_PARTIAL)
            break;
        if (rv < 0) {
            LMQ_NOTICE("channel: node %" PRIu64 ": node %" PRIu64 " sent a bad frame (%s); "
                       "connection closed",
                       ch->o.id, c->peer, lmq_channel_strerror(rv));
            ch__close_conn(c, true);
            return;
        }
        off += used;
        ch->o.on_frame(ch->o.ctx, c->cid, c->peer, &f);
    }
    if (c->closing)
        return;
    memmove(c->rbuf, c->rbuf + off, c->rlen - off);
    c->rlen -= off;
    if (c->rlen == 0 && c->rcap > 4 * CH__READ_CHUNK) { /* after a big frame */
        free(c->rbuf);
        c->rbuf = NULL;
        c->rcap = 0;
    }
}

/* ------------------------------------------------------------------ */
/* connections */

static void ch__stream_free(uv_handle_t *h)
{
    raft_free(h);
}

static void ch__stream_closed(uv_handle_t *h)
{
    struct ch__conn *c = h->data;
    raft_free(h);
    ch__conn_free(c);
}

static void ch__close_conn(struct ch__conn *c, bool notify)
{
    if (c->closing)
        return;
    c->closing = true;
    if (notify && c->outgoing && !c->ch->stopping && c->ch->o.on_down)
        c->ch->o.on_down(c->ch->o.ctx, c->peer);
    if (c->s) {
        uv_read_stop(c->s);
        uv_close((uv_handle_t *)c->s, ch__stream_closed);
    }
    /* else: connecting; the connect callback frees it */
}

static void ch__start_stream(struct ch__conn *c, uv_stream_t *s)
{
    c->s = s;
    s->data = c;
    int rv = uv_read_start(s, ch__alloc, ch__read_cb);
    if (rv != 0) {
        LMQ_NOTICE("channel: node %" PRIu64 ": cannot read from node %" PRIu64 ": %s", c->ch->o.id,
                   c->peer, uv_strerror(rv));
        ch__close_conn(c, true);
    }
}

static void ch__connect_cb(struct raft_uv_connect *req, uv_stream_t *s, int status)
{
    struct ch__conn *c = req->data;
    struct lmq_channel *ch = c->ch;
    if (c->closing || ch->stopping || status != 0) {
        if (s) {
            s->data = c;
            uv_close((uv_handle_t *)s, ch__stream_closed); /* frees c */
        } else {
            if (status != 0 && !c->closing && !ch->stopping) {
                LMQ_NOTICE("channel: node %" PRIu64 ": cannot connect to node %" PRIu64 ": %s",
                           ch->o.id, c->peer, raft_strerror(status));
                c->closing = true;
                if (ch->o.on_down)
                    ch->o.on_down(ch->o.ctx, c->peer);
            }
            ch__conn_free(c);
        }
        return;
    }
    ch__start_stream(c, s);
    while (!c->closing && c->q_head) {
        struct ch__out *o = c->q_head;
        c->q_head = o->next;
        if (!c->q_head)
            c->q_tail = NULL;
        int rv = ch__write(c, o->data, o->len);
        if (rv != 0) {
            c->q_bytes -= o->len;
            free(o);
            ch__close_conn(c, true);
            return;
        }
        free(o);
    }
}

static void ch__accept_cb(struct raft_uv_transport *t, raft_id id, const char *address,
                          uv_stream_t *s)
{
    struct lmq_channel *ch = t->data;
    struct ch__conn *c = NULL;
    if (!ch->stopping && id != ch->o.id && ch__member(ch, id))
        c = ch__conn_new(ch, id, false);
    else if (!ch->stopping)
        LMQ_NOTICE("channel: node %" PRIu64 ": refused a connection from %s claiming id %" PRIu64
                   " (not another member)",
                   ch->o.id, address ? address : "?", (uint64_t)id);
    if (c == NULL) {
        uv_close((uv_handle_t *)s, ch__stream_free);
        return;
    }
    ch__start_stream(c, s);
}

static struct ch__conn *ch__outgoing(struct lmq_channel *ch, uint64_t peer)
{
    for (struct ch__conn *c = ch->conns; c; c = c->next)
        if (c->outgoing && !c->closing && c->peer == peer)
            return c;
    return NULL;
}

int lmq_channel_send(struct lmq_channel *ch, uint64_t peer, const uint8_t *frame, size_t len)
{
    if (ch->stopping || peer == ch->o.id)
        return -1;
    const struct lmq_raft_member *m = ch__member(ch, peer);
    if (m == NULL)
        return -1;
    struct ch__conn *c = ch__outgoing(ch, peer);
    if (c == NULL) {
        c = ch__conn_new(ch, peer, true);
        if (c == NULL)
            return -1;
        c->req.data = c;
        int rv = ch->t.connect(&ch->t, &c->req, peer, m->address, ch__connect_cb);
        if (rv != 0) {
            LMQ_NOTICE("channel: node %" PRIu64 ": cannot connect to node %" PRIu64 " at %s: %s",
                       ch->o.id, peer, m->address, raft_strerror(rv));
            c->closing = true;
            ch__conn_free(c);
            return -1;
        }
    }
    return ch__queue(c, frame, len);
}

int lmq_channel_reply(struct lmq_channel *ch, uint64_t conn, const uint8_t *frame, size_t len)
{
    if (ch->stopping)
        return -1;
    for (struct ch__conn *c = ch->conns; c; c = c->next)
        if (c->cid == conn)
            return ch__queue(c, frame, len);
    return -1;
}

void lmq_channel_drop(struct lmq_channel *ch, uint64_t peer)
{
    struct ch__conn *c = ch__outgoing(ch, peer);
    if (c)
        ch__close_conn(c, false);
}

/* ------------------------------------------------------------------ */
/* start and stop */

static void ch__maybe_done(struct lmq_channel *ch)
{
    if (!ch->stopping || ch->conns || ch->t_open)
        return;
    void (*done)(void *) = ch->done;
    void *ctx = ch->done_ctx;
    free(ch);
    if (done)
        done(ctx);
}

static void ch__transport_closed(struct raft_uv_transport *t)
{
    struct lmq_channel *ch = t->data;
    if (ch->tls)
        lmq_raft_tls_close(t);
    else
        lmq_raft_tcp_close(t);
    ch->t_open = false;
    ch__maybe_done(ch);
}

void lmq_channel_stop(struct lmq_channel *ch, void (*done)(void *ctx), void *ctx)
{
    ch->stopping = true;
    ch->done = done;
    ch->done_ctx = ctx;
    for (struct ch__conn *c = ch->conns, *next; c; c = next) {
        next = c->next;
        ch__close_conn(c, false);
    }
    ch->t.close(&ch->t, ch__transport_closed);
}

int lmq_channel_start(uv_loop_t *loop, const struct lmq_channel_options *o,
                      struct lmq_channel **out)
{
    if (o->n_members == 0 || o->n_members > LMQ_RAFT_MAX_MEMBERS || !o->on_frame) {
        LMQ_ERROR("channel: bad options");
        return -1;
    }
    struct lmq_channel *ch = calloc(1, sizeof *ch);
    if (ch == NULL)
        return -1;
    ch->loop = loop;
    ch->o = *o;
    ch->o.members = NULL;
    if (ch->o.max_frame == 0 || ch->o.max_frame > LMQ_CHANNEL_MAX_FRAME)
        ch->o.max_frame = LMQ_CHANNEL_MAX_FRAME;
    if (ch->o.max_queue == 0)
        ch->o.max_queue = 2 * ch->o.max_frame;
    const char *self = NULL;
    for (size_t i = 0; i < o->n_members; i++) {
        ch->members[i].id = o->members[i].id;
        if (lmq_channel_address(&o->members[i], o->port_offset, ch->members[i].address,
                                sizeof ch->members[i].address) != 0) {
            LMQ_ERROR("channel: member %" PRIu64 " at %s: no channel port at offset %u",
                      o->members[i].id, o->members[i].address, o->port_offset);
            free(ch);
            return -1;
        }
        if (o->members[i].id == o->id)
            self = ch->members[i].address;
    }
    ch->n_members = o->n_members;
    if (self == NULL) {
        LMQ_ERROR("channel: node %" PRIu64 " is not a member", o->id);
        free(ch);
        return -1;
    }
    char err[256];
    int rv;
    if (o->tls_certfile) {
        struct lmq_raft_tls_options to = {
            .certfile = o->tls_certfile,
            .keyfile = o->tls_keyfile,
            .cafile = o->tls_cafile,
            .members = ch->members,
            .n_members = ch->n_members,
            .bind_address = NULL,
            .handshake_ms = o->handshake_ms,
            .stuck_ms = o->stuck_ms,
        };
        if (lmq_raft_tls_init(&ch->t, loop, &to, err, sizeof err) != 0) {
            LMQ_ERROR("channel: TLS: %s", err);
            free(ch);
            return -1;
        }
        ch->tls = true;
    } else {
        rv = lmq_raft_tcp_init(&ch->t, loop,
                               o->stuck_ms > 0 ? o->stuck_ms : lmq_tcp_stuck_timeout_ms(0));
        if (rv != 0) {
            LMQ_ERROR("channel: transport: %s", raft_strerror(rv));
            free(ch);
            return -1;
        }
    }
    ch->t.data = ch;
    ch->t_open = true;
    rv = ch->t.init(&ch->t, o->id, self);
    if (rv == 0)
        rv = ch->t.listen(&ch->t, ch__accept_cb);
    if (rv != 0) {
        LMQ_ERROR("channel: node %" PRIu64 ": cannot listen on %s: %s", o->id, self,
                  ch->t.errmsg[0] ? ch->t.errmsg : raft_strerror(rv));
        lmq_channel_stop(ch, NULL, NULL); /* freed once the transport closed */
        return -1;
    }
    LMQ_INFO("channel: node %" PRIu64 " listening on %s (%s)", o->id, self,
             ch->tls ? "TLS" : "plain TCP");
    *out = ch;
    return 0;
}
