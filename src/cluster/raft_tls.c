/* The TLS transport for libraft (see raft_tls.h). One struct rt__conn per
 * TCP connection, in both roles; its life:
 *
 *   client: getaddrinfo -> TCP connect -> TLS handshake -> check the
 *           server's CN -> socketpair -> connect callback(stream)
 *   server: accept -> TLS handshake -> peer id from the client's CN ->
 *           socketpair -> accept callback(id, address, stream)
 *   then:   relay  TCP --decrypt--> pipe (libraft reads)
 *                  pipe --encrypt--> TCP (libraft writes)
 *
 * Any error, EOF on either side or the transport closing closes the
 * connection; a client whose callback has not run yet gets it with
 * RAFT_NOCONNECTION (or RAFT_CANCELED on close). A connection is freed
 * when its handles are closed and no getaddrinfo is outstanding. */
#include "cluster/raft_tls.h"

#include "cluster/raft_tcp.h"
#include "util/log.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define RT__QUEUE_MAX (4u * 1024 * 1024) /* bytes queued on one side before the other pauses */
#define RT__READ_CHUNK 65536
#define RT__MAX_PENDING 64 /* incoming connections in their handshake at once */

struct rt__conn;

struct rt {
    uv_loop_t *loop;
    SSL_CTX *ctx;
    struct lmq_raft_member members[LMQ_RAFT_MAX_MEMBERS];
    size_t n_members;
    char bind_address[LMQ_RAFT_ADDRESS_MAX];
    raft_id id;
    char address[LMQ_RAFT_ADDRESS_MAX];
    uv_tcp_t listener;
    bool listening;
    bool listener_open;
    raft_uv_accept_cb accept_cb;
    struct rt__conn *conns; /* every connection not yet freed */
    unsigned pending;       /* incoming connections not yet established */
    unsigned handshake_ms;
    unsigned stuck_ms; /* TCP_USER_TIMEOUT of every connection (raft_tcp.h) */
    bool closing;
    raft_uv_transport_close_cb close_cb;
    struct raft_uv_transport *t;
};

struct rt__conn {
    struct rt *rt;
    struct rt__conn *next, *prev;
    bool server;
    raft_id peer;                       /* client: dialled; server: from the certificate */
    char address[LMQ_RAFT_ADDRESS_MAX]; /* the peer's member address */
    struct raft_uv_connect *req;        /* client, until its callback ran */
    raft_uv_connect_cb cb;
    uv_getaddrinfo_t gai;
    bool gai_pending;
    uv_connect_t connect;
    uv_tcp_t tcp;
    uv_timer_t timer; /* connect + handshake deadline */
    uv_pipe_t pipe;   /* our end of the socketpair */
    bool tcp_open, pipe_open;
    int handles; /* open handles (uv_close pending counts) */
    SSL *ssl;
    BIO *rbio, *wbio; /* network side of the TLS session */
    bool established;
    bool closing;
    bool tcp_paused, pipe_paused; /* reads stopped for backpressure */
    bool timer_open;
    bool counted; /* in rt->pending */
};

struct rt__write {
    uv_write_t req;
    struct rt__conn *c;
    size_t len;
    char data[];
};

static void rt__close_conn(struct rt__conn *c);

/* ------------------------------------------------------------------ */
/* Helpers. */

static void rt__ssl_errors(char *buf, size_t len)
{
    unsigned long e = ERR_get_error();
    if (e == 0)
        snprintf(buf, len, "no OpenSSL error");
    else
        ERR_error_string_n(e, buf, len);
    ERR_clear_error();
}

/* Splits "HOST:PORT" (checked by lmq_raft_address_check). */
static int rt__split(const char *address, char *host, size_t hostlen, char *port, size_t portlen)
{
    if (lmq_raft_address_check(address) != 0)
        return -1;
    const char *colon = strrchr(address, ':');
    size_t hl = (size_t)(colon - address);
    if (hl >= hostlen || strlen(colon + 1) >= portlen)
        return -1;
    memcpy(host, address, hl);
    host[hl] = '\0';
    snprintf(port, portlen, "%s", colon + 1);
    return 0;
}

static const struct lmq_raft_member *rt__member(struct rt *rt, raft_id id)
{
    for (size_t i = 0; i < rt->n_members; i++)
        if (rt->members[i].id == id)
            return &rt->members[i];
    return NULL;
}

/* The member id in the verified peer certificate's CN, or 0. */
static raft_id rt__peer_id(struct rt__conn *c)
{
    if (SSL_get_verify_result(c->ssl) != X509_V_OK)
        return 0;
    X509 *cert = SSL_get1_peer_certificate(c->ssl);
    if (cert == NULL)
        return 0;
    char cn[128];
    int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
    X509_free(cert);
    size_t plen = strlen(LMQ_RAFT_TLS_CN_PREFIX);
    if (n <= (int)plen || (size_t)n >= sizeof cn || strncmp(cn, LMQ_RAFT_TLS_CN_PREFIX, plen) != 0)
        return 0;
    raft_id id = 0;
    for (const char *p = cn + plen; *p; p++) {
        if (*p < '0' || *p > '9' || id > (raft_id)INT64_MAX / 10)
            return 0;
        id = id * 10 + (raft_id)(*p - '0');
    }
    return id;
}

/* ------------------------------------------------------------------ */
/* Writes. */

static void rt__resume(struct rt__conn *c);

static void rt__write_cb(uv_write_t *req, int status)
{
    struct rt__write *w = (struct rt__write *)req;
    struct rt__conn *c = w->c;
    free(w);
    if (status < 0) {
        rt__close_conn(c);
        return;
    }
    rt__resume(c);
}

static int rt__write(struct rt__conn *c, uv_stream_t *s, const char *data, size_t len)
{
    struct rt__write *w = malloc(sizeof *w + len);
    if (w == NULL)
        return -1;
    w->c = c;
    w->len = len;
    memcpy(w->data, data, len);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
    if (uv_write(&w->req, s, &b, 1, rt__write_cb) != 0) {
        free(w);
        return -1;
    }
    return 0;
}

/* Sends what the TLS session has for the network. */
static int rt__flush(struct rt__conn *c)
{
    char buf[RT__READ_CHUNK];
    int n;
    while ((n = BIO_read(c->wbio, buf, sizeof buf)) > 0)
        if (rt__write(c, (uv_stream_t *)&c->tcp, buf, (size_t)n) != 0)
            return -1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Reading: TCP -> TLS -> pipe, pipe -> TLS -> TCP. */

static void rt__alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    buf->base = malloc(RT__READ_CHUNK);
    buf->len = buf->base != NULL ? RT__READ_CHUNK : 0;
}

static void rt__pipe_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);
static void rt__tcp_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

/* Restarts the reads paused for backpressure once the queues drained. */
static void rt__resume(struct rt__conn *c)
{
    if (c->closing)
        return;
    if (c->tcp_paused && c->pipe_open &&
        uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) < RT__QUEUE_MAX / 2) {
        c->tcp_paused = false;
        uv_read_start((uv_stream_t *)&c->tcp, rt__alloc, rt__tcp_read);
    }
    if (c->pipe_paused &&
        uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) < RT__QUEUE_MAX / 2) {
        c->pipe_paused = false;
        uv_read_start((uv_stream_t *)&c->pipe, rt__alloc, rt__pipe_read);
    }
}

/* Decrypted bytes to libraft's end. */
static int rt__decrypt(struct rt__conn *c)
{
    char buf[RT__READ_CHUNK];
    for (;;) {
        int n = SSL_read(c->ssl, buf, sizeof buf);
        if (n > 0) {
            if (rt__write(c, (uv_stream_t *)&c->pipe, buf, (size_t)n) != 0)
                return -1;
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ)
            break;
        return -1; /* close_notify or an error */
    }
    if (rt__flush(c) != 0)
        return -1;
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) > RT__QUEUE_MAX) {
        c->tcp_paused = true;
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
    return 0;
}

static void rt__free_raft_handle(uv_handle_t *h)
{
    raft_free(h);
}

/* The handshake is done and the peer checked: give libraft its stream. */
static int rt__establish(struct rt__conn *c)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return -1;
    uv_pipe_t *theirs = raft_malloc(sizeof *theirs);
    if (theirs == NULL) {
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    uv_pipe_init(c->rt->loop, theirs, 0);
    uv_pipe_init(c->rt->loop, &c->pipe, 0);
    c->pipe.data = c;
    c->pipe_open = true;
    c->handles++;
    if (uv_pipe_open(theirs, sv[0]) != 0 || uv_pipe_open(&c->pipe, sv[1]) != 0) {
        /* theirs was never given to libraft: close and free it here. */
        uv_close((uv_handle_t *)theirs, rt__free_raft_handle);
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    c->established = true;
    uv_timer_stop(&c->timer);
    if (c->counted) {
        c->counted = false;
        c->rt->pending--;
    }
    uv_read_start((uv_stream_t *)&c->pipe, rt__alloc, rt__pipe_read);
    if (c->server) {
        LMQ_DEBUG("raft tls: node %llu connected from node %llu", (unsigned long long)c->rt->id,
                  (unsigned long long)c->peer);
        c->rt->accept_cb(c->rt->t, c->peer, c->address, (uv_stream_t *)theirs);
    } else {
        struct raft_uv_connect *req = c->req;
        c->req = NULL;
        LMQ_DEBUG("raft tls: node %llu connected to node %llu", (unsigned long long)c->rt->id,
                  (unsigned long long)c->peer);
        c->cb(req, (uv_stream_t *)theirs, 0);
    }
    return 0;
}

static int rt__handshake(struct rt__conn *c)
{
    int rc = SSL_do_handshake(c->ssl);
    if (rt__flush(c) != 0)
        return -1;
    if (rc != 1) {
        int e = SSL_get_error(c->ssl, rc);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return 0;
        char why[256];
        rt__ssl_errors(why, sizeof why);
        LMQ_NOTICE("raft tls: node %llu: handshake with %s failed: %s",
                   (unsigned long long)c->rt->id, c->server ? "a peer" : c->address, why);
        return -1;
    }
    raft_id peer = rt__peer_id(c);
    if (c->server) {
        const struct lmq_raft_member *m = peer != 0 ? rt__member(c->rt, peer) : NULL;
        if (m == NULL || peer == c->rt->id) {
            LMQ_NOTICE("raft tls: node %llu: refused a peer whose certificate names no other "
                       "member (id %llu)",
                       (unsigned long long)c->rt->id, (unsigned long long)peer);
            return -1;
        }
        c->peer = peer;
        snprintf(c->address, sizeof c->address, "%s", m->address);
    } else if (peer != c->peer) {
        LMQ_NOTICE("raft tls: node %llu: %s presented the certificate of node %llu, not %llu",
                   (unsigned long long)c->rt->id, c->address, (unsigned long long)peer,
                   (unsigned long long)c->peer);
        return -1;
    }
    if (rt__establish(c) != 0)
        return -1;
    /* Application data may have come with the last handshake flight. */
    return rt__decrypt(c);
}

static void rt__tcp_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct rt__conn *c = s->data;
    if (n > 0 && !c->closing) {
        int ok = BIO_write(c->rbio, buf->base, (int)n) == (int)n;
        free(buf->base);
        if (!ok || (c->established ? rt__decrypt(c) : rt__handshake(c)) != 0)
            rt__close_conn(c);
        return;
    }
    free(buf->base);
    if (n < 0)
        rt__close_conn(c);
}

static void rt__pipe_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct rt__conn *c = s->data;
    if (n > 0 && !c->closing) {
        int w = SSL_write(c->ssl, buf->base, (int)n);
        free(buf->base);
        if (w != (int)n || rt__flush(c) != 0) {
            rt__close_conn(c);
            return;
        }
        if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > RT__QUEUE_MAX) {
            c->pipe_paused = true;
            uv_read_stop((uv_stream_t *)&c->pipe);
        }
        return;
    }
    free(buf->base);
    if (n < 0)
        rt__close_conn(c); /* libraft closed its end */
}

/* ------------------------------------------------------------------ */
/* Connection life. */

/* A peer that has not completed its handshake in time (or a connect that
 * hangs) is dropped: the cluster port cannot be held by idle sockets. */
static void rt__deadline(uv_timer_t *t)
{
    struct rt__conn *c = t->data;
    LMQ_NOTICE("raft tls: node %llu: %s did not complete its TLS handshake in %u ms",
               (unsigned long long)c->rt->id, c->server ? "a peer" : c->address,
               c->rt->handshake_ms);
    rt__close_conn(c);
}

static struct rt__conn *rt__conn_new(struct rt *rt, bool server)
{
    struct rt__conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->rt = rt;
    c->server = server;
    c->ssl = SSL_new(rt->ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (c->ssl == NULL || c->rbio == NULL || c->wbio == NULL) {
        SSL_free(c->ssl);
        BIO_free(c->rbio);
        BIO_free(c->wbio);
        free(c);
        return NULL;
    }
    SSL_set_bio(c->ssl, c->rbio, c->wbio); /* the session owns both now */
    if (server)
        SSL_set_accept_state(c->ssl);
    else
        SSL_set_connect_state(c->ssl);
    uv_tcp_init(rt->loop, &c->tcp);
    c->tcp.data = c;
    c->tcp_open = true;
    uv_timer_init(rt->loop, &c->timer);
    c->timer.data = c;
    c->timer_open = true;
    uv_timer_start(&c->timer, rt__deadline, rt->handshake_ms, 0);
    c->handles = 2;
    if (server) {
        c->counted = true;
        rt->pending++;
    }
    c->next = rt->conns;
    if (rt->conns != NULL)
        rt->conns->prev = c;
    rt->conns = c;
    return c;
}

static void rt__maybe_closed(struct rt *rt)
{
    if (rt->closing && rt->conns == NULL && !rt->listener_open && rt->close_cb != NULL) {
        raft_uv_transport_close_cb cb = rt->close_cb;
        rt->close_cb = NULL;
        cb(rt->t);
    }
}

static void rt__maybe_free(struct rt__conn *c)
{
    if (c->handles > 0 || c->gai_pending)
        return;
    struct rt *rt = c->rt;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        rt->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    SSL_free(c->ssl);
    free(c);
    rt__maybe_closed(rt);
}

static void rt__handle_closed(uv_handle_t *h)
{
    struct rt__conn *c = h->data;
    c->handles--;
    rt__maybe_free(c);
}

static void rt__close_conn(struct rt__conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    if (c->req != NULL) {
        struct raft_uv_connect *req = c->req;
        c->req = NULL;
        c->cb(req, NULL, c->rt->closing ? RAFT_CANCELED : RAFT_NOCONNECTION);
    }
    if (c->gai_pending)
        uv_cancel((uv_req_t *)&c->gai);
    if (c->tcp_open) {
        c->tcp_open = false;
        uv_close((uv_handle_t *)&c->tcp, rt__handle_closed);
    }
    if (c->pipe_open) {
        c->pipe_open = false;
        uv_close((uv_handle_t *)&c->pipe, rt__handle_closed);
    }
    if (c->timer_open) {
        c->timer_open = false;
        uv_close((uv_handle_t *)&c->timer, rt__handle_closed);
    }
    if (c->counted) {
        c->counted = false;
        c->rt->pending--;
    }
}

/* A connection whose peer is cut off is closed after rt->stuck_ms
 * instead of waiting in TCP's retransmission backoff (raft_tcp.h). */
static void rt__set_stuck_timeout(struct rt__conn *c)
{
    if (lmq_tcp_set_stuck_timeout(&c->tcp, c->rt->stuck_ms) != 0)
        LMQ_WARN("raft tls: node %llu: cannot set TCP_USER_TIMEOUT/keepalive: %s",
                 (unsigned long long)c->rt->id, strerror(errno));
}

/* ------------------------------------------------------------------ */
/* Client side. */

static void rt__connected(uv_connect_t *req, int status)
{
    struct rt__conn *c = req->data;
    if (c->closing)
        return;
    if (status != 0 || uv_read_start((uv_stream_t *)&c->tcp, rt__alloc, rt__tcp_read) != 0 ||
        rt__handshake(c) != 0)
        rt__close_conn(c);
}

static void rt__resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct rt__conn *c = req->data;
    c->gai_pending = false;
    if (c->closing || status != 0 || res == NULL) {
        if (res != NULL)
            uv_freeaddrinfo(res);
        if (!c->closing)
            rt__close_conn(c);
        rt__maybe_free(c);
        return;
    }
    c->connect.data = c;
    /* Our own socket, so that the options hold for the connect too: a SYN
     * to a cut-off peer fails after rt->stuck_ms instead of backing off. */
    int rc = UV_EMFILE;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && (rc = uv_tcp_open(&c->tcp, fd)) != 0)
        close(fd);
    if (rc == 0) {
        rt__set_stuck_timeout(c);
        rc = uv_tcp_connect(&c->connect, &c->tcp, res->ai_addr, rt__connected);
    }
    uv_freeaddrinfo(res);
    if (rc != 0)
        rt__close_conn(c);
}

static int rt__connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                       const char *address, raft_uv_connect_cb cb)
{
    struct rt *rt = t->impl;
    char host[LMQ_RAFT_ADDRESS_MAX], port[8];
    if (rt->closing)
        return RAFT_CANCELED;
    if (rt__split(address, host, sizeof host, port, sizeof port) != 0)
        return RAFT_INVALID;
    struct rt__conn *c = rt__conn_new(rt, false);
    if (c == NULL)
        return RAFT_NOMEM;
    c->peer = id;
    snprintf(c->address, sizeof c->address, "%s", address);
    c->req = req;
    c->cb = cb;
    c->gai.data = c;
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    c->gai_pending = true;
    if (uv_getaddrinfo(rt->loop, &c->gai, rt__resolved, host, port, &hints) != 0) {
        c->gai_pending = false;
        c->req = NULL; /* failed synchronously: libraft sees the return code */
        rt__close_conn(c);
        return RAFT_NOCONNECTION;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Server side. */

static void rt__incoming(uv_stream_t *server, int status)
{
    struct rt *rt = server->data;
    if (status != 0 || rt->closing)
        return;
    struct rt__conn *c = rt__conn_new(rt, true);
    if (c == NULL)
        return;
    if (rt->pending > RT__MAX_PENDING) {
        /* Accept and drop: too many handshakes in progress. */
        LMQ_NOTICE("raft tls: node %llu: more than %d handshakes at once; connection dropped",
                   (unsigned long long)rt->id, RT__MAX_PENDING);
        (void)uv_accept(server, (uv_stream_t *)&c->tcp);
        rt__close_conn(c);
        return;
    }
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        rt__close_conn(c);
        return;
    }
    rt__set_stuck_timeout(c);
    if (uv_read_start((uv_stream_t *)&c->tcp, rt__alloc, rt__tcp_read) != 0)
        rt__close_conn(c);
}

static int rt__listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
    struct rt *rt = t->impl;
    char host[LMQ_RAFT_ADDRESS_MAX], port[8];
    const char *bind = rt->bind_address[0] ? rt->bind_address : rt->address;
    if (rt__split(bind, host, sizeof host, port, sizeof port) != 0) {
        snprintf(t->errmsg, sizeof t->errmsg, "bad address %s", bind);
        return RAFT_INVALID;
    }
    struct addrinfo hints = {.ai_family = AF_INET,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE},
                    *res;
    if (getaddrinfo(host, port, &hints, &res) != 0) {
        snprintf(t->errmsg, sizeof t->errmsg, "cannot resolve %s", bind);
        return RAFT_IOERR;
    }
    uv_tcp_init(rt->loop, &rt->listener);
    rt->listener.data = rt;
    rt->listener_open = true;
    int rc = uv_tcp_bind(&rt->listener, res->ai_addr, 0);
    freeaddrinfo(res);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&rt->listener, 128, rt__incoming);
    if (rc != 0) {
        snprintf(t->errmsg, sizeof t->errmsg, "listen on %s: %s", bind, uv_strerror(rc));
        return RAFT_IOERR;
    }
    rt->listening = true;
    rt->accept_cb = cb;
    return 0;
}

static int rt__init(struct raft_uv_transport *t, raft_id id, const char *address)
{
    struct rt *rt = t->impl;
    rt->id = id;
    if (strlen(address) >= sizeof rt->address)
        return RAFT_NAMETOOLONG;
    snprintf(rt->address, sizeof rt->address, "%s", address);
    return 0;
}

static void rt__listener_closed(uv_handle_t *h)
{
    struct rt *rt = h->data;
    rt->listener_open = false;
    rt__maybe_closed(rt);
}

static void rt__close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
    struct rt *rt = t->impl;
    rt->closing = true;
    rt->close_cb = cb;
    for (struct rt__conn *c = rt->conns; c != NULL; c = c->next)
        rt__close_conn(c);
    if (rt->listener_open)
        uv_close((uv_handle_t *)&rt->listener, rt__listener_closed);
    else
        rt__maybe_closed(rt);
}

/* ------------------------------------------------------------------ */
/* Setup. */

int lmq_raft_tls_init(struct raft_uv_transport *t, uv_loop_t *loop,
                      const struct lmq_raft_tls_options *o, char *err, size_t errlen)
{
    struct stat st;
    if (o->certfile == NULL || o->keyfile == NULL || o->cafile == NULL ||
        o->n_members > LMQ_RAFT_MAX_MEMBERS) {
        snprintf(err, errlen, "cluster TLS needs a certificate, a key and a CA file");
        return -1;
    }
    if (stat(o->keyfile, &st) != 0) {
        snprintf(err, errlen, "cluster key %s: %s", o->keyfile, strerror(errno));
        return -1;
    }
    if (st.st_mode & 077) {
        snprintf(err, errlen, "cluster key %s is readable by others (mode %03o): chmod 600 it",
                 o->keyfile, (unsigned)(st.st_mode & 0777));
        return -1;
    }
    struct rt *rt = calloc(1, sizeof *rt);
    if (rt == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    rt->loop = loop;
    rt->t = t;
    memcpy(rt->members, o->members, o->n_members * sizeof *o->members);
    rt->n_members = o->n_members;
    rt->handshake_ms = o->handshake_ms > 0 ? o->handshake_ms : 10000;
    rt->stuck_ms = o->stuck_ms > 0 ? o->stuck_ms : lmq_tcp_stuck_timeout_ms(0);
    if (o->bind_address != NULL)
        snprintf(rt->bind_address, sizeof rt->bind_address, "%s", o->bind_address);
    char why[256];
    rt->ctx = SSL_CTX_new(TLS_method());
    if (rt->ctx == NULL || SSL_CTX_set_min_proto_version(rt->ctx, TLS1_3_VERSION) != 1) {
        rt__ssl_errors(why, sizeof why);
        snprintf(err, errlen, "cluster TLS context: %s", why);
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(rt->ctx, o->certfile) != 1) {
        rt__ssl_errors(why, sizeof why);
        snprintf(err, errlen, "cluster certificate %s: %s", o->certfile, why);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(rt->ctx, o->keyfile, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(rt->ctx) != 1) {
        rt__ssl_errors(why, sizeof why);
        snprintf(err, errlen, "cluster key %s: %s", o->keyfile, why);
        goto fail;
    }
    if (SSL_CTX_load_verify_locations(rt->ctx, o->cafile, NULL) != 1) {
        rt__ssl_errors(why, sizeof why);
        snprintf(err, errlen, "cluster CA %s: %s", o->cafile, why);
        goto fail;
    }
    SSL_CTX_set_verify(rt->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_session_cache_mode(rt->ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(rt->ctx, 0);

    memset(t, 0, sizeof *t);
    t->version = 1;
    t->impl = rt;
    t->init = rt__init;
    t->listen = rt__listen;
    t->connect = rt__connect;
    t->close = rt__close;
    return 0;
fail:
    SSL_CTX_free(rt->ctx);
    free(rt);
    return -1;
}

void lmq_raft_tls_close(struct raft_uv_transport *t)
{
    struct rt *rt = t->impl;
    if (rt == NULL)
        return;
    SSL_CTX_free(rt->ctx);
    free(rt);
    t->impl = NULL;
}
