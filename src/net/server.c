/* libuv loop, TCP listeners and connections (see server.h).
 * Invariant: a connection is in exactly one of three states: open (reading,
 * fed to the broker), closing (no more input; waiting for its last write),
 * or handle-closed (uv_close issued; freed in its close callback, which is
 * the only place lmq_broker_client_free is called). */
#include "net/server.h"

#include "broker/broker.h"
#include "net/tls.h"
#include "net/transport.h"
#include "net/ws.h"
#include "util/log.h"
#include "util/workpool.h"

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
#define NET_FILTER_CHUNK (64 * 1024) /* plaintext encoded per filter write */

struct net__listener {
    uv_tcp_t tcp;
    struct lmq_server *srv;
    const struct lmq_listener_config *cfg;
    struct lmq_tls_ctx *tls; /* certfile set: the listener's TLS context */
    uint16_t port;           /* the bound port (the OS's choice for port 0) */
    bool open;
};

/* A uv_write in progress and the bytes it owns; allocated only while a
 * socket is full, so an idle connection does not carry it. */
struct net__write {
    uv_write_t req;
    struct lmq_outq q;
    uint8_t *wire; /* filtered connections: the filter's wire bytes */
};

/* The unfinished tail of the input (a partial packet). */
struct net__rest {
    uint32_t len, cap;
    uint8_t data[];
};

/* Laid out to fit a 288-byte malloc chunk (at most 280 bytes): 10,000
 * idle connections are mostly this struct. The server is found from the
 * handle's loop, the connection from its handle (tcp comes first) and the
 * broker's client is the handle's data pointer (net__client). Only the
 * closing connections are listed (lmq_server.closing), not all. */
struct net__conn {
    uv_tcp_t tcp;
    struct net__rest *rest; /* unfinished packet bytes, or NULL */
    struct lmq_filter *f;   /* TLS and/or WebSocket, or NULL: plain TCP */
    struct net__write *w;   /* the pending uv_write, or NULL */
    uint32_t closing_at;    /* 1 + its index in the server's closing list, 0: not listed */
    uint16_t lport;         /* the listener's port, for log lines */
    bool writing : 1;
    bool paused : 1;  /* flow control: not reading */
    bool closing : 1; /* no more input; close after the write */
    bool handle_closed : 1;
    bool tls_logged : 1; /* the handshake's log line is written */
};

static inline struct lmq_client *net__client(const struct net__conn *c)
{
    return c->tcp.data;
}

/* A closing connection and the tick count when it started closing. */
struct net__closing {
    struct net__conn *c;
    uint32_t since;
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
    uv_signal_t sigpipe, sighup;
    /* The worker pool (util/workpool.h) and the async handle its workers
     * wake the loop with; unreferenced, so it never keeps the loop alive,
     * and closed only after the pool is gone (lmq_server_free). */
    struct lmq_workpool *pool;
    uv_async_t pool_async;
    struct lmq_broker_services svc;
    struct net__closing *closing; /* closing connections not yet freed */
    uint32_t n_closing, cap_closing;
    size_t n_conns; /* connections not yet freed */
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

/* Marks C closing (no more input) and lists it: the tick closes its handle
 * NET_CLOSE_GRACE_S after this if its last write is still stuck. Without
 * memory for the list it stays unlisted and closes when the write ends. */
static void net__closing(struct net__conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    struct lmq_server *s = net__srv(c);
    if (s->n_closing == s->cap_closing) {
        uint32_t cap = s->cap_closing ? s->cap_closing * 2 : 64;
        struct net__closing *v = realloc(s->closing, cap * sizeof *v);
        if (!v) {
            LMQ_ERROR("out of memory listing a closing connection; it closes after its write");
            return;
        }
        s->closing = v;
        s->cap_closing = cap;
    }
    s->closing[s->n_closing] = (struct net__closing){c, s->ticks};
    c->closing_at = ++s->n_closing;
}

static void net__closing_unlist(struct net__conn *c)
{
    if (!c->closing_at)
        return;
    struct lmq_server *s = net__srv(c);
    uint32_t i = c->closing_at - 1;
    s->closing[i] = s->closing[--s->n_closing];
    if (i < s->n_closing)
        s->closing[i].c->closing_at = i + 1;
    c->closing_at = 0;
}

/* ---- writing ---- */

static void net__write_cb(uv_write_t *req, int status);

static void net__flush_filtered(struct net__conn *c, bool outq_too);

static void net__flush(struct net__conn *c)
{
    if (c->f) {
        net__flush_filtered(c, true);
        return;
    }
    if (c->writing || c->handle_closed)
        return;
    struct lmq_outq *q = lmq_broker_client_outq(net__client(c));
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
                lmq_broker_client_lost(net__client(c), uv_strerror(r));
            lmq_outq_consume(q, q->bytes);
            net__closing(c);
            net__close(c);
            return;
        }
        lmq_outq_consume(q, (size_t)r);
        lmq_broker_client_wrote(net__client(c), (size_t)r);
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
            lmq_broker_client_lost(net__client(c), "out of memory");
        net__closing(c);
        net__close(c);
        return;
    }
    w->q = *q;
    w->wire = NULL;
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
            lmq_broker_client_lost(net__client(c), uv_strerror(r));
        net__closing(c);
        net__close(c);
        return;
    }
    c->writing = true;
}

/* Filtered connections (see docs/TRANSPORTS.md, "Write path"): the
 * filter's wire bytes go first; only once the socket took them all is more
 * of the outq encoded, at most NET_FILTER_CHUNK at a time, so backpressure
 * stays in the broker's queue. OUTQ_TOO false sends only what the filter
 * already holds (handshake replies, pongs, alerts): the broker's output may
 * have to wait for the store commit of this iteration. A closing
 * connection encodes all of its outq, then the filter's close (close frame
 * and/or close_notify), and closes once the wire bytes are out. */
static void net__flush_filtered(struct net__conn *c, bool outq_too)
{
    if (c->writing || c->handle_closed)
        return;
    struct lmq_outq *q = lmq_broker_client_outq(net__client(c));
    struct iovec iov[NET_MAX_IOV];
    for (;;) {
        size_t wl;
        const uint8_t *wire = lmq_filter_wire(c->f, &wl);
        if (wl) {
            uv_buf_t b = uv_buf_init((char *)wire, (unsigned)wl);
            int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
            if (r == UV_EAGAIN || r == UV_ENOSYS)
                r = 0;
            if (r < 0) {
                if (!c->closing)
                    lmq_broker_client_lost(net__client(c), uv_strerror(r));
                lmq_outq_consume(q, q->bytes);
                net__closing(c);
                net__close(c);
                return;
            }
            lmq_filter_wire_consume(c->f, (size_t)r);
            if ((size_t)r < wl)
                break;
        }
        if (!outq_too && !c->closing)
            break;
        if (q->bytes == 0) {
            if (c->closing && lmq_filter_shutdown(c->f) == 0) {
                lmq_filter_wire(c->f, &wl);
                if (wl)
                    continue;
            }
            break;
        }
        size_t n = lmq_outq_iov(q, iov, NET_MAX_IOV);
        size_t want = 0, k = 0;
        while (k < n && want < NET_FILTER_CHUNK)
            want += iov[k++].iov_len;
        if (lmq_filter_write(c->f, iov, k) < 0) {
            /* ESTATE (closed or failed) or ENOMEM: nothing more goes out. */
            lmq_outq_consume(q, q->bytes);
            if (!c->closing)
                lmq_broker_client_lost(net__client(c), lmq_filter_reason(c->f)[0]
                                                      ? lmq_filter_reason(c->f)
                                                      : "out of memory");
            net__closing(c);
            continue; /* what the filter holds still goes out */
        }
        lmq_outq_consume(q, want);
        lmq_broker_client_wrote(net__client(c), want);
    }
    size_t wl;
    lmq_filter_wire(c->f, &wl);
    if (wl == 0) {
        if (q->bytes == 0 && q->cap <= 4096)
            lmq_outq_trim(q);
        if (c->closing && q->bytes == 0)
            net__close(c);
        return;
    }
    /* The socket is full: uv_write owns the filter's buffer until the
     * callback; new wire bytes accumulate in a fresh one. */
    struct net__write *w = calloc(1, sizeof *w);
    if (!w) {
        lmq_outq_consume(q, q->bytes);
        if (!c->closing)
            lmq_broker_client_lost(net__client(c), "out of memory");
        net__closing(c);
        net__close(c);
        return;
    }
    size_t len;
    lmq_filter_wire_take(c->f, &w->wire, &len);
    w->req.data = c;
    c->w = w;
    uv_buf_t b = uv_buf_init((char *)w->wire, (unsigned)len);
    int r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, net__write_cb);
    if (r < 0) {
        c->w = NULL;
        free(w->wire);
        free(w);
        if (!c->closing)
            lmq_broker_client_lost(net__client(c), uv_strerror(r));
        net__closing(c);
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
    size_t n = w->q.bytes; /* plaintext; a filter's bytes were counted */
    lmq_outq_free(&w->q);
    free(w->wire);
    free(w);
    if (c->handle_closed)
        return;
    if (status < 0) {
        if (!c->closing)
            lmq_broker_client_lost(net__client(c), uv_strerror(status));
        net__closing(c);
        net__close(c);
        return;
    }
    lmq_broker_client_wrote(net__client(c), n);
    /* What the broker queued meanwhile may wait for this iteration's store
     * commit: let lmq_broker_flush() write it. A closing connection gets no
     * new output, so its rest can go now. */
    if (c->closing) {
        net__flush(c);
        return;
    }
    if (c->f)
        net__flush_filtered(c, false); /* pongs etc. held meanwhile */
    lmq_broker_client_kick(net__client(c));
}

/* ---- closing ---- */

static void net__close_cb(uv_handle_t *h)
{
    struct net__conn *c = (struct net__conn *)h;
    struct lmq_server *s = net__srv(c);
    if (net__client(c))
        lmq_broker_client_free(net__client(c));
    net__closing_unlist(c);
    s->n_conns--;
    lmq_filter_free(c->f);
    free(c->rest);
    free(c);
}

/* Closes the handle now unless a write is pending (then the write callback
 * calls us again). */
static void net__close(struct net__conn *c)
{
    if (c->handle_closed)
        return;
    net__closing(c);
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
    net__closing(c);
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
static int net__feed_app(struct net__conn *c);

static void net__tr_resume(void *tctx)
{
    struct net__conn *c = tctx;
    if (!c->paused || c->closing || c->handle_closed)
        return;
    c->paused = false;
    if (c->f) {
        if (net__feed_app(c) < 0 || c->paused)
            return; /* closed by the broker, or paused again */
    } else if (c->rest && c->rest->len) {
        size_t used = 0;
        if (lmq_broker_input(net__client(c), c->rest->data, c->rest->len, &used) < 0)
            return; /* the broker closes it */
        if (net__keep_rest(c, c->rest->data + used, c->rest->len - used) < 0) {
            lmq_broker_client_lost(net__client(c), "out of memory");
            net__close(c);
            return;
        }
        if (c->paused)
            return;
    }
    int r = uv_read_start((uv_stream_t *)&c->tcp, net__alloc_cb, net__read_cb);
    if (r < 0) {
        lmq_broker_client_lost(net__client(c), uv_strerror(r));
        net__close(c);
    }
}

/* For the broker's certificate authentication (transport.peer_ed25519). */
static int net__tr_peer_ed25519(void *tctx, uint8_t pk[32])
{
    uint8_t kb[32];
    size_t kl = 0;
    int kt = lmq_server_peer_key(tctx, kb, sizeof kb, &kl);
    if (kt == LMQ_TLS_KEY_ED25519 && kl == 32) {
        memcpy(pk, kb, 32);
        return 0;
    }
    return kt == -1 ? -1 : 1; /* another key type (or too big for kb) */
}

static const struct lmq_transport net__transport = {
    .flush = net__tr_flush,
    .close = net__tr_close,
    .pause = net__tr_pause,
    .resume = net__tr_resume,
    .peer_ed25519 = net__tr_peer_ed25519,
};

/* ---- reading ---- */

static void net__alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct net__conn *c = (struct net__conn *)h;
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

/* "ADDR:PORT" of the peer (or "?") into BUF. */
static void net__peer_name(uv_tcp_t *tcp, char *buf, size_t len)
{
    struct sockaddr_storage sa;
    int salen = sizeof sa;
    char ip[64] = "?";
    snprintf(buf, len, "?");
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&sa, &salen) != 0)
        return;
    if (sa.ss_family == AF_INET) {
        uv_ip4_name((struct sockaddr_in *)&sa, ip, sizeof ip);
        snprintf(buf, len, "%s:%d", ip, ntohs(((struct sockaddr_in *)&sa)->sin_port));
    } else if (sa.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&sa, ip, sizeof ip);
        snprintf(buf, len, "[%s]:%d", ip, ntohs(((struct sockaddr_in6 *)&sa)->sin6_port));
    }
}

/* Hands the filter's MQTT bytes to the broker; the filter keeps the
 * unfinished packet. -1 when the broker closed the connection. */
static int net__feed_app(struct net__conn *c)
{
    size_t n;
    const uint8_t *app = lmq_filter_app(c->f, &n);
    if (n == 0)
        return 0;
    size_t used = 0;
    if (lmq_broker_input(net__client(c), app, n, &used) < 0)
        return -1;
    lmq_filter_app_consume(c->f, used);
    return 0;
}

/* Once per TLS connection, when its handshake is done: one line with the
 * peer, protocol, cipher and client certificate. */
static void net__log_tls(struct net__conn *c)
{
    struct lmq_filter *t = lmq_filter_layer(c->f, "tls");
    if (!t) {
        c->tls_logged = true;
        return;
    }
    if (!lmq_tls_version(t)[0])
        return;
    c->tls_logged = true;
    char peer[80], subject[256] = "none", key[80] = "";
    net__peer_name(&c->tcp, peer, sizeof peer);
    if (lmq_server_peer_subject(c, subject, sizeof subject) != 0)
        snprintf(subject, sizeof subject, "none");
    /* The key as the authentication layer will see it: a raw Ed25519 key
     * in full (what the device registry stores), else its DER size. */
    uint8_t kb[1024];
    size_t kl = 0;
    int kt = lmq_server_peer_key(c, kb, sizeof kb, &kl);
    if (kt == LMQ_TLS_KEY_ED25519 && kl == 32) {
        memcpy(key, " (Ed25519 key ", 14);
        for (size_t i = 0; i < 32; i++)
            snprintf(key + 14 + 2 * i, 3, "%02x", kb[i]);
        memcpy(key + 78, ")", 2);
    } else if (kt == LMQ_TLS_KEY_SPKI) {
        snprintf(key, sizeof key, " (SPKI key, %zu bytes)", kl);
    }
    LMQ_INFO("connection from %s: %s %s%s, client certificate: %s%s", peer, lmq_tls_version(t),
             lmq_tls_cipher(t), lmq_tls_resumed(t) ? " (resumed)" : "", subject, key);
}

/* A filtered connection's input (docs/TRANSPORTS.md, "Read path"). */
static void net__read_filtered(struct net__conn *c, const uint8_t *data, size_t len)
{
    int r = lmq_filter_feed(c->f, data, len);
    /* Whatever happened, the filter may have bytes to send (handshake
     * reply, pong, alert, HTTP error page, close frame). */
    net__flush_filtered(c, false);
    if (c->closing || c->handle_closed)
        return;
    if (!c->tls_logged)
        net__log_tls(c);
    if (net__feed_app(c) < 0)
        return; /* the broker called transport->close */
    unsigned st = lmq_filter_state(c->f);
    if (r < 0 || (st & LMQ_FILTER_PEER_CLOSED)) {
        const char *why = lmq_filter_reason(c->f);
        if (r < 0) {
            char peer[80];
            net__peer_name(&c->tcp, peer, sizeof peer);
            LMQ_NOTICE("connection from %s on %s port %u refused: %s", peer, lmq_filter_name(c->f),
                       c->lport, why);
        }
        lmq_broker_client_lost(net__client(c), why);
        struct lmq_outq *q = lmq_broker_client_outq(net__client(c));
        lmq_outq_consume(q, q->bytes);
        net__closing(c);
        uv_read_stop((uv_stream_t *)&c->tcp);
        net__flush_filtered(c, true); /* the filter's last words, then close */
    }
}

static void net__read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct net__conn *c = (struct net__conn *)st;
    if (c->closing || c->handle_closed)
        return;
    if (nread < 0) {
        lmq_broker_client_lost(net__client(c), nread == UV_EOF ? "connection closed by peer"
                                                          : uv_strerror((int)nread));
        lmq_outq_free(lmq_broker_client_outq(net__client(c)));
        net__closing(c);
        net__close(c);
        return;
    }
    if (nread == 0)
        return;
    if (c->f) {
        net__read_filtered(c, (const uint8_t *)buf->base, (size_t)nread);
        return;
    }
    const uint8_t *data = (const uint8_t *)buf->base;
    size_t len = (size_t)nread;
    if (c->rest) {
        /* Append to the unfinished packet. */
        size_t total = (size_t)c->rest->len + len;
        if (total > c->rest->cap) {
            size_t cap = c->rest->cap;
            while (cap < total)
                cap *= 2;
            struct net__rest *r = cap <= UINT32_MAX ? realloc(c->rest, sizeof *r + cap) : NULL;
            if (!r) {
                LMQ_ERROR("out of memory buffering input; closing connection");
                lmq_broker_client_lost(net__client(c), "out of memory");
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
    if (lmq_broker_input(net__client(c), data, len, &used) < 0)
        return; /* the broker called transport->close */
    if (net__keep_rest(c, data + used, len - used) < 0) {
        lmq_broker_client_lost(net__client(c), "out of memory");
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
    uv_tcp_init(&s->loop, &c->tcp);
    s->n_conns++;
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) < 0) {
        c->handle_closed = true;
        uv_close((uv_handle_t *)&c->tcp, net__close_cb);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    struct sockaddr_storage peer;
    int peerlen = sizeof peer;
    bool have_peer = uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&peer, &peerlen) == 0;
    c->lport = l->port;
    if (l->tls || l->cfg->protocol == LMQ_PROTO_WEBSOCKETS) {
        /* lmq_filter_stack owns both layers, also when one is NULL. */
        if (l->tls && l->cfg->protocol == LMQ_PROTO_WEBSOCKETS)
            c->f = lmq_filter_stack(lmq_tls_filter_new(l->tls),
                                    lmq_ws_filter_new(s->cfg->max_packet_size));
        else if (l->tls)
            c->f = lmq_tls_filter_new(l->tls);
        else
            c->f = lmq_ws_filter_new(s->cfg->max_packet_size);
        if (!c->f) {
            LMQ_ERROR("out of memory accepting a connection");
            c->handle_closed = true;
            uv_close((uv_handle_t *)&c->tcp, net__close_cb);
            return;
        }
    }
    c->tcp.data = s->stopping ? NULL
                              : lmq_broker_client_new(s->broker, c, l->cfg,
                                                      have_peer ? (struct sockaddr *)&peer : NULL);
    if (!c->tcp.data) {
        c->handle_closed = true;
        uv_close((uv_handle_t *)&c->tcp, net__close_cb);
        return;
    }
    int r = uv_read_start((uv_stream_t *)&c->tcp, net__alloc_cb, net__read_cb);
    if (r < 0) {
        lmq_broker_client_lost(net__client(c), uv_strerror(r));
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
    uv_close((uv_handle_t *)&s->sighup, NULL);
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
    for (uint32_t i = 0; i < s->n_closing; i++) {
        struct net__conn *c = s->closing[i].c;
        if (!c->handle_closed &&
            (s->stopping || s->ticks - s->closing[i].since > NET_CLOSE_GRACE_S)) {
            c->handle_closed = true;
            uv_close((uv_handle_t *)&c->tcp, net__close_cb);
        }
    }
}

/* A worker finished a job: run the DONE callbacks here, on the loop
 * thread; the output they queue goes out in this iteration's
 * lmq_broker_flush (check phase). */
static void net__pool_async_cb(uv_async_t *h)
{
    struct lmq_server *s = h->data;
    lmq_workpool_drain(s->pool);
}

/* Called by a worker thread (util/workpool.h notify). */
static void net__pool_notify(void *ctx)
{
    struct lmq_server *s = ctx;
    uv_async_send(&s->pool_async);
}

static void net__signal_cb(uv_signal_t *h, int signum)
{
    struct lmq_server *s = h->data;
    if (signum == SIGPIPE)
        return;
    if (signum == SIGHUP) {
        if (!s->stopping)
            lmq_broker_reload(s->broker);
        return;
    }
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
    r = uv_async_init(&s->loop, &s->pool_async, net__pool_async_cb);
    if (r < 0) {
        snprintf(err, errlen, "uv_async_init: %s", uv_strerror(r));
        goto fail_broker;
    }
    s->pool_async.data = s;
    uv_unref((uv_handle_t *)&s->pool_async);
    s->pool = lmq_workpool_new(0, net__pool_notify, s);
    if (!s->pool) {
        snprintf(err, errlen, "worker threads: %s", strerror(errno));
        uv_close((uv_handle_t *)&s->pool_async, NULL);
        uv_run(&s->loop, UV_RUN_NOWAIT);
        goto fail_broker;
    }
    s->svc.pool = s->pool;
    lmq_broker_set_services(s->broker, &s->svc);
    uv_prepare_init(&s->loop, &s->prepare);
    uv_check_init(&s->loop, &s->check);
    uv_timer_init(&s->loop, &s->tick);
    uv_signal_init(&s->loop, &s->sigint);
    uv_signal_init(&s->loop, &s->sigterm);
    uv_signal_init(&s->loop, &s->sigpipe);
    uv_signal_init(&s->loop, &s->sighup);
    s->prepare.data = s->check.data = s->tick.data = s;
    s->sigint.data = s->sigterm.data = s->sigpipe.data = s->sighup.data = s;
    return s;

fail_broker:
    lmq_broker_free(s->broker);
fail_loop:
    uv_loop_close(&s->loop);
fail_free:
    free(s);
    return NULL;
}

int lmq_server_listen(struct lmq_server *s, char *err, size_t errlen)
{
    /* Signals are caught from before the first "listening on" line: a
     * SIGTERM sent as soon as a client can connect (before the loop runs)
     * waits in libuv for lmq_server_run and ends in a clean shutdown,
     * instead of killing the process with the default action. */
    uv_signal_start(&s->sigint, net__signal_cb, SIGINT);
    uv_signal_start(&s->sigterm, net__signal_cb, SIGTERM);
    uv_signal_start(&s->sigpipe, net__signal_cb, SIGPIPE);
    uv_signal_start(&s->sighup, net__signal_cb, SIGHUP);
    for (size_t i = 0; i < s->cfg->n_listeners; i++) {
        const struct lmq_listener_config *lc = &s->cfg->listeners[i];
        struct net__listener *l = &s->listeners[i];
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
        if (lc->certfile[0]) {
            l->tls = lmq_tls_ctx_new(lc, err, errlen);
            if (!l->tls)
                return -1;
            s->n_listeners = i + 1; /* freed by lmq_server_free */
        }
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
        l->port = (uint16_t)port;
        LMQ_NOTICE("listening on %s:%d%s%s", lc->addr, port,
                   lc->protocol == LMQ_PROTO_WEBSOCKETS ? " (websockets)" : "",
                   lc->certfile[0] ? (lc->cafile[0] ? (lc->require_certificate
                                                           ? " (TLS, client certificate required)"
                                                           : " (TLS, client certificate optional)")
                                                    : " (TLS)")
                                   : "");
    }
    return 0;
}

static struct lmq_filter *net__tls_layer(const void *tctx)
{
    const struct net__conn *c = tctx;
    return c && c->f ? lmq_filter_layer(c->f, "tls") : NULL;
}

int lmq_server_peer_subject(const void *tctx, char *buf, size_t len)
{
    struct lmq_filter *t = net__tls_layer(tctx);
    return t ? lmq_tls_peer_subject(t, buf, len) : -1;
}

int lmq_server_peer_key(const void *tctx, uint8_t *buf, size_t cap, size_t *len)
{
    struct lmq_filter *t = net__tls_layer(tctx);
    return t ? lmq_tls_peer_key(t, buf, cap, len) : -1;
}

void lmq_server_set_ledger(struct lmq_server *s, struct ledger *ledger, struct registry *registry)
{
    s->svc.ledger = ledger;
    s->svc.registry = registry;
    lmq_broker_set_services(s->broker, &s->svc);
}

int lmq_server_run(struct lmq_server *s)
{
    uv_prepare_start(&s->prepare, net__prepare_cb);
    uv_check_start(&s->check, net__check_cb);
    uv_timer_start(&s->tick, net__tick_cb, 1000, 1000);
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
        /* Connections exist only inside lmq_server_run, which returns
         * once all are freed; a closing one would be listed. */
        for (uint32_t i = 0; i < s->n_closing; i++) {
            struct net__conn *c = s->closing[i].c;
            if (!c->handle_closed) {
                c->handle_closed = true;
                uv_close((uv_handle_t *)&c->tcp, net__close_cb);
            }
        }
        net__close_handles(s);
        uv_run(&s->loop, UV_RUN_DEFAULT);
    }
    /* Jobs still running finish, and their DONE callbacks run here (the
     * broker copes with clients that are gone); then what they queued is
     * committed and the async handle can go. */
    lmq_workpool_free(s->pool);
    s->pool = NULL;
    s->svc.pool = NULL;
    lmq_broker_set_services(s->broker, &s->svc);
    lmq_broker_flush(s->broker);
    uv_close((uv_handle_t *)&s->pool_async, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    lmq_broker_free(s->broker);
    for (size_t i = 0; i < s->n_listeners; i++)
        lmq_tls_ctx_free(s->listeners[i].tls);
    uv_loop_close(&s->loop);
    free(s->closing);
    free(s);
}
