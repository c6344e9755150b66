/* libuv loop, TCP listeners and connections (see server.h).
 * Invariant: a connection is in exactly one of three states: open (reading,
 * fed to the broker), closing (no more input; waiting for its last write),
 * or handle-closed (uv_close issued; freed in its close callback, which is
 * the only place lmq_broker_client_free is called). */
#include "net/server.h"

#include "broker/broker.h"
#include "util/log.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define NET_READ_BUF (64 * 1024)
#define NET_MAX_IOV 1024
#define NET_CLOSE_GRACE_S 5

struct net__listener {
    uv_tcp_t tcp;
    struct lmq_server *srv;
    const struct lmq_listener_config *cfg;
    bool open;
};

/* A uv_write in progress and the bytes it owns; allocated only while a
 * socket is full, so an idle connection does not carry it. */
struct net__write {
    uv_write_t req;
    struct lmq_outq q;
};

/* The unfinished tail of the input (a partial packet). */
struct net__rest {
    uint32_t len, cap;
    uint8_t data[];
};

/* Laid out to fit a 304-byte malloc chunk: 10,000 idle connections are
 * mostly this struct. The server is found from the handle's loop. */
struct net__conn {
    uv_tcp_t tcp;
    struct lmq_client *client;
    struct net__conn *prev, *next;
    struct net__rest *rest;     /* unfinished packet bytes, or NULL */
    struct net__write *w;       /* the pending uv_write, or NULL */
    uint32_t closing_since;     /* tick count when close was requested */
    bool writing;
    bool paused;                /* flow control: not reading */
    bool closing;               /* no more input; close after the write */
    bool handle_closed;
};

struct lmq_server {
    uv_loop_t loop;
    const struct lmq_config *cfg;
    struct lmq_broker *broker;
    struct net__listener listeners[LMQ_MAX_LISTENERS];
    size_t n_listeners;
    uv_prepare_t prepare;
    uv_check_t check;
    uv_timer_t tick;
    uv_signal_t sigint, sigterm;
    uv_signal_t sigpipe;
    struct net__conn *conns;    /* all connections not yet freed */
    size_t n_conns;
    uint32_t ticks;
    bool stopping;
    bool handles_closed;
    uint8_t readbuf[NET_READ_BUF];
};

static void net__close(struct net__conn *c);

static struct lmq_server *net__srv(const struct net__conn *c)
{
    return (struct lmq_server *)((char *)c->tcp.loop - offsetof(struct lmq_server, loop));
}

/* ---- writing ---- */

static void net__write_cb(uv_write_t *req, int status);

static void net__flush(struct net__conn *c)
{
    if (c->writing || c->handle_closed)
        return;
    struct lmq_outq *q = lmq_broker_client_outq(c->client);
    struct iovec iov[NET_MAX_IOV];
    while (q->bytes > 0) {
        size_t n = lmq_outq_iov(q, iov, NET_MAX_IOV);
        size_t want = 0;
        for (size_t i = 0; i < n; i++)
            want += iov[i].iov_len;
        int r = uv_try_write((uv_stream_t *)&c->tcp, (const uv_buf_t *)iov, (unsigned)n);
        if (r == UV_EAGAIN || r == UV_ENOSYS)
            r = 0;
        if (r < 0) {
            if (!c->closing)
                lmq_broker_client_lost(c->client, uv_strerror(r));
            lmq_outq_consume(q, q->bytes);
            c->closing = true;
            net__close(c);
            return;
        }
        lmq_outq_consume(q, (size_t)r);
        lmq_broker_client_wrote(c->client, (size_t)r);
        if ((size_t)r < want)
            break;
    }
    if (q->bytes == 0) {
        /* Small buffers go back to the allocator at once (the next
         * connection reuses them), so idle connections hold none. */
        if (q->cap <= 4096)
            lmq_outq_trim(q);
        if (c->closing)
            net__close(c);
        return;
    }
    /* The socket is full: hand the rest to uv_write, which owns it until
     * the callback; the broker keeps appending to a fresh queue. */
    struct net__write *w = malloc(sizeof *w);
    size_t nseg = q->nsegs - q->head;
    uv_buf_t small[64];
    uv_buf_t *bufs = nseg <= 64 ? small : malloc(nseg * sizeof *bufs);
    if (!bufs || !w) {
        if (bufs != small)
            free(bufs);
        free(w);
        lmq_outq_consume(q, q->bytes);
        if (!c->closing)
            lmq_broker_client_lost(c->client, "out of memory");
        c->closing = true;
        net__close(c);
        return;
    }
    w->q = *q;
    memset(q, 0, sizeof *q);
    w->req.data = c;
    c->w = w;
    size_t n = lmq_outq_iov(&w->q, (struct iovec *)bufs, nseg);
    int r = uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, (unsigned)n, net__write_cb);
    if (bufs != small)
        free(bufs);
    if (r < 0) {
        c->w = NULL;
        lmq_outq_free(&w->q);
        free(w);
        if (!c->closing)
            lmq_broker_client_lost(c->client, uv_strerror(r));
        c->closing = true;
        net__close(c);
        return;
    }
    c->writing = true;
}

static void net__write_cb(uv_write_t *req, int status)
{
    struct net__conn *c = req->data;
    struct net__write *w = c->w;
    c->writing = false;
    c->w = NULL;
    size_t n = w->q.bytes;
    lmq_outq_free(&w->q);
    free(w);
    if (c->handle_closed)
        return;
    if (status < 0) {
        if (!c->closing)
            lmq_broker_client_lost(c->client, uv_strerror(status));
        c->closing = true;
        net__close(c);
        return;
    }
    lmq_broker_client_wrote(c->client, n);
    /* What the broker queued meanwhile may wait for this iteration's store
     * commit: let lmq_broker_flush() write it. A closing connection gets no
     * new output, so its rest can go now. */
    if (c->closing)
        net__flush(c);
    else
        lmq_broker_client_kick(c->client);
}

/* ---- closing ---- */

static void net__close_cb(uv_handle_t *h)
{
    struct net__conn *c = h->data;
    struct lmq_server *s = net__srv(c);
    if (c->client)
        lmq_broker_client_free(c->client);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->n_conns--;
    free(c->rest);
    free(c);
}

/* Closes the handle now unless a write is pending (then the write callback
 * calls us again). */
static void net__close(struct net__conn *c)
{
    if (c->handle_closed)
        return;
    if (!c->closing) {
        c->closing = true;
        c->closing_since = net__srv(c)->ticks;
    }
    uv_read_stop((uv_stream_t *)&c->tcp);
    if (c->writing)
        return;
    c->handle_closed = true;
    uv_close((uv_handle_t *)&c->tcp, net__close_cb);
}

/* transport->close: write what is queued, then close. */
static void net__tr_close(void *tctx)
{
    struct net__conn *c = tctx;
    if (c->closing || c->handle_closed)
        return;
    c->closing = true;
    c->closing_since = net__srv(c)->ticks;
    uv_read_stop((uv_stream_t *)&c->tcp);
    net__flush(c);
    if (!c->writing)
        net__close(c);
}

static void net__tr_flush(void *tctx)
{
    net__flush(tctx);
}

static void net__tr_pause(void *tctx)
{
    struct net__conn *c = tctx;
    if (c->closing || c->handle_closed)
        return;
    c->paused = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
}

static void net__read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);
static void net__alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static int net__keep_rest(struct net__conn *c, const uint8_t *p, size_t n);

static void net__tr_resume(void *tctx)
{
    struct net__conn *c = tctx;
    if (!c->paused || c->closing || c->handle_closed)
        return;
    c->paused = false;
    if (c->rest && c->rest->len) {
        size_t used = 0;
        if (lmq_broker_input(c->client, c->rest->data, c->rest->len, &used) < 0)
            return; /* the broker closes it */
        if (net__keep_rest(c, c->rest->data + used, c->rest->len - used) < 0) {
            lmq_broker_client_lost(c->client, "out of memory");
            net__close(c);
            return;
        }
        if (c->paused)
            return;
    }
    int r = uv_read_start((uv_stream_t *)&c->tcp, net__alloc_cb, net__read_cb);
    if (r < 0) {
        lmq_broker_client_lost(c->client, uv_strerror(r));
        net__close(c);
    }
}

static const struct lmq_transport net__transport = {
    .flush = net__tr_flush,
    .close = net__tr_close,
    .pause = net__tr_pause,
    .resume = net__tr_resume,
};

/* ---- reading ---- */

static void net__alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct net__conn *c = h->data;
    buf->base = (char *)net__srv(c)->readbuf;
    buf->len = sizeof net__srv(c)->readbuf;
}

static int net__keep_rest(struct net__conn *c, const uint8_t *p, size_t n)
{
    if (n == 0) {
        free(c->rest);
        c->rest = NULL;
        return 0;
    }
    if (!c->rest || n > c->rest->cap) {
        size_t cap = 256;
        while (cap < n)
            cap *= 2;
        if (cap > UINT32_MAX)
            return -1;
        struct net__rest *r = malloc(sizeof *r + cap);
        if (!r)
            return -1;
        r->cap = (uint32_t)cap;
        r->len = 0;
        memcpy(r->data, p, n); /* P may point into the old buffer */
        free(c->rest);
        c->rest = r;
    } else {
        memmove(c->rest->data, p, n);
    }
    c->rest->len = (uint32_t)n;
    return 0;
}

static void net__read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct net__conn *c = st->data;
    if (c->closing || c->handle_closed)
        return;
    if (nread < 0) {
        lmq_broker_client_lost(c->client, nread == UV_EOF ? "connection closed by peer"
                                                          : uv_strerror((int)nread));
        lmq_outq_free(lmq_broker_client_outq(c->client));
        c->closing = true;
        net__close(c);
        return;
    }
    if (nread == 0)
        return;
    const uint8_t *data = (const uint8_t *)buf->base;
    size_t len = (size_t)nread;
    if (c->rest) {
        /* Append to the unfinished packet. */
        size_t total = (size_t)c->rest->len + len;
        if (total > c->rest->cap) {
            size_t cap = c->rest->cap;
            while (cap < total)
                cap *= 2;
            struct net__rest *r =
                cap <= UINT32_MAX ? realloc(c->rest, sizeof *r + cap) : NULL;
            if (!r) {
                LMQ_ERROR("out of memory buffering input; closing connection");
                lmq_broker_client_lost(c->client, "out of memory");
                net__close(c);
                return;
            }
            c->rest = r;
            c->rest->cap = (uint32_t)cap;
        }
        memcpy(c->rest->data + c->rest->len, data, len);
        c->rest->len = (uint32_t)total;
        data = c->rest->data;
        len = total;
    }
    size_t used = 0;
    if (lmq_broker_input(c->client, data, len, &used) < 0)
        return; /* the broker called transport->close */
    if (net__keep_rest(c, data + used, len - used) < 0) {
        lmq_broker_client_lost(c->client, "out of memory");
        net__close(c);
    }
}

/* ---- accepting ---- */

static void net__accept_cb(uv_stream_t *ls, int status)
{
    struct net__listener *l = ls->data;
    struct lmq_server *s = l->srv;
    if (status < 0) {
        LMQ_WARN("accept on port %u: %s", l->cfg->port, uv_strerror(status));
        return;
    }
    struct net__conn *c = calloc(1, sizeof *c);
    if (!c) {
        LMQ_ERROR("out of memory accepting a connection");
        return;
    }
    c->tcp.data = c;
    uv_tcp_init(&s->loop, &c->tcp);
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->n_conns++;
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) < 0) {
        c->handle_closed = true;
        uv_close((uv_handle_t *)&c->tcp, net__close_cb);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    char peer[80] = "?";
    struct sockaddr_storage sa;
    int salen = sizeof sa;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &salen) == 0) {
        char ip[64] = "?";
        int port = 0;
        if (sa.ss_family == AF_INET) {
            uv_ip4_name((struct sockaddr_in *)&sa, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in *)&sa)->sin_port);
            snprintf(peer, sizeof peer, "%s:%d", ip, port);
        } else if (sa.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&sa, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
            snprintf(peer, sizeof peer, "[%s]:%d", ip, port);
        }
    }
    c->client = s->stopping ? NULL : lmq_broker_client_new(s->broker, c, l->cfg, peer);
    if (!c->client) {
        c->handle_closed = true;
        uv_close((uv_handle_t *)&c->tcp, net__close_cb);
        return;
    }
    int r = uv_read_start((uv_stream_t *)&c->tcp, net__alloc_cb, net__read_cb);
    if (r < 0) {
        lmq_broker_client_lost(c->client, uv_strerror(r));
        net__close(c);
    }
}

/* ---- loop housekeeping ---- */

static void net__close_handles(struct lmq_server *s)
{
    if (s->handles_closed)
        return;
    s->handles_closed = true;
    uv_close((uv_handle_t *)&s->prepare, NULL);
    uv_close((uv_handle_t *)&s->check, NULL);
    uv_close((uv_handle_t *)&s->tick, NULL);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    uv_close((uv_handle_t *)&s->sigpipe, NULL);
}

static void net__iteration(struct lmq_server *s)
{
    lmq_broker_flush(s->broker);
    if (s->stopping && s->n_conns == 0)
        net__close_handles(s);
}

static void net__prepare_cb(uv_prepare_t *h)
{
    net__iteration(h->data);
}

static void net__check_cb(uv_check_t *h)
{
    net__iteration(h->data);
}

static void net__tick_cb(uv_timer_t *t)
{
    struct lmq_server *s = t->data;
    s->ticks++;
    if (!s->stopping)
        lmq_broker_tick(s->broker);
    /* Connections stuck closing behind a peer that does not read. */
    for (struct net__conn *c = s->conns; c; c = c->next) {
        if (c->closing && !c->handle_closed &&
            (s->stopping || s->ticks - c->closing_since > NET_CLOSE_GRACE_S)) {
            c->handle_closed = true;
            uv_close((uv_handle_t *)&c->tcp, net__close_cb);
        }
    }
}

static void net__signal_cb(uv_signal_t *h, int signum)
{
    struct lmq_server *s = h->data;
    if (signum == SIGPIPE)
        return;
    if (s->stopping)
        return;
    LMQ_NOTICE("received %s, shutting down", signum == SIGINT ? "SIGINT" : "SIGTERM");
    s->stopping = true;
    for (size_t i = 0; i < s->n_listeners; i++) {
        if (s->listeners[i].open) {
            s->listeners[i].open = false;
            uv_close((uv_handle_t *)&s->listeners[i].tcp, NULL);
        }
    }
    lmq_broker_shutdown(s->broker);
    lmq_broker_flush(s->broker);
    if (s->n_conns == 0)
        net__close_handles(s);
}

/* ---- public ---- */

struct lmq_server *lmq_server_new(const struct lmq_config *cfg, char *err, size_t errlen)
{
    struct lmq_server *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->cfg = cfg;
    int r = uv_loop_init(&s->loop);
    if (r < 0) {
        snprintf(err, errlen, "uv_loop_init: %s", uv_strerror(r));
        goto fail_free;
    }
    s->broker = lmq_broker_new(cfg, &net__transport, err, errlen);
    if (!s->broker)
        goto fail_loop;
    uv_prepare_init(&s->loop, &s->prepare);
    uv_check_init(&s->loop, &s->check);
    uv_timer_init(&s->loop, &s->tick);
    uv_signal_init(&s->loop, &s->sigint);
    uv_signal_init(&s->loop, &s->sigterm);
    uv_signal_init(&s->loop, &s->sigpipe);
    s->prepare.data = s->check.data = s->tick.data = s;
    s->sigint.data = s->sigterm.data = s->sigpipe.data = s;
    return s;

fail_loop:
    uv_loop_close(&s->loop);
fail_free:
    free(s);
    return NULL;
}

int lmq_server_listen(struct lmq_server *s, char *err, size_t errlen)
{
    for (size_t i = 0; i < s->cfg->n_listeners; i++) {
        const struct lmq_listener_config *lc = &s->cfg->listeners[i];
        struct net__listener *l = &s->listeners[i];
        if (lc->protocol != LMQ_PROTO_MQTT) {
            LMQ_WARN("listener %s:%u: websockets not supported yet, skipped", lc->addr, lc->port);
            continue;
        }
        struct sockaddr_storage sa;
        int r = strchr(lc->addr, ':') ? uv_ip6_addr(lc->addr, lc->port, (struct sockaddr_in6 *)&sa)
                                       : uv_ip4_addr(lc->addr, lc->port, (struct sockaddr_in *)&sa);
        if (r < 0) {
            snprintf(err, errlen, "listener address '%s': %s", lc->addr, uv_strerror(r));
            return -1;
        }
        l->srv = s;
        l->cfg = lc;
        l->tcp.data = l;
        uv_tcp_init(&s->loop, &l->tcp);
        l->open = true;
        s->n_listeners = i + 1;
        r = uv_tcp_bind(&l->tcp, (struct sockaddr *)&sa, 0);
        if (r == 0)
            r = uv_listen((uv_stream_t *)&l->tcp, 1024, net__accept_cb);
        if (r < 0) {
            snprintf(err, errlen, "listen on %s:%u: %s", lc->addr, lc->port, uv_strerror(r));
            return -1;
        }
        int salen = sizeof sa;
        int port = lc->port;
        if (uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&sa, &salen) == 0)
            port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                                  : ((struct sockaddr_in *)&sa)->sin_port);
        LMQ_NOTICE("listening on %s:%d", lc->addr, port);
    }
    return 0;
}

int lmq_server_run(struct lmq_server *s)
{
    uv_prepare_start(&s->prepare, net__prepare_cb);
    uv_check_start(&s->check, net__check_cb);
    uv_timer_start(&s->tick, net__tick_cb, 1000, 1000);
    uv_signal_start(&s->sigint, net__signal_cb, SIGINT);
    uv_signal_start(&s->sigterm, net__signal_cb, SIGTERM);
    uv_signal_start(&s->sigpipe, net__signal_cb, SIGPIPE);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    return 0;
}

void lmq_server_free(struct lmq_server *s)
{
    if (!s)
        return;
    if (!s->handles_closed) {
        for (size_t i = 0; i < s->n_listeners; i++)
            if (s->listeners[i].open)
                uv_close((uv_handle_t *)&s->listeners[i].tcp, NULL);
        for (struct net__conn *c = s->conns; c; c = c->next)
            if (!c->handle_closed) {
                c->handle_closed = true;
                uv_close((uv_handle_t *)&c->tcp, net__close_cb);
            }
        net__close_handles(s);
        uv_run(&s->loop, UV_RUN_DEFAULT);
    }
    lmq_broker_free(s->broker);
    uv_loop_close(&s->loop);
    free(s);
}
