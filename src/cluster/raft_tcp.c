/* libraft's plain TCP transport with stuck connections closed (see
 * raft_tcp.h): an outer struct raft_uv_transport whose methods call the
 * inner raft_uv_tcp one and set the socket options on each stream its
 * connect and accept callbacks deliver, before passing it on.
 *
 * The inner transport's connect is out of reach until it calls back, and
 * a SYN to a cut-off peer backs off like data (1, 2, 4 ... s): so each
 * connect has a deadline (stuck_ms) after which libraft is told
 * RAFT_NOCONNECTION (it tries again a second later, with a fresh SYN);
 * the abandoned attempt runs on until the inner transport calls back (its
 * SYN retries exhausted, the peer back, or the transport closing), and a
 * stream it then delivers is closed. */
#include "cluster/raft_tcp.h"

#include "util/log.h"

#include <raft.h>

#include <errno.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define RTCP__KEEPALIVE_S 1 /* idle time before the first probe, and between probes */

unsigned lmq_tcp_stuck_timeout_ms(unsigned election_ms)
{
    if (election_ms == 0)
        election_ms = 1000;
    unsigned ms = election_ms > 0x3fffffffu ? 0xffffffffu : 4 * election_ms;
    return ms < 1000 ? 1000 : ms;
}

int lmq_tcp_set_stuck_timeout(uv_tcp_t *tcp, unsigned ms)
{
    uv_os_fd_t fd;
    if (uv_fileno((const uv_handle_t *)tcp, &fd) != 0) {
        errno = EBADF;
        return -1;
    }
    unsigned timeout = ms;
    int on = 1;
    int idle = RTCP__KEEPALIVE_S;
    int count = (int)(ms / 1000 / RTCP__KEEPALIVE_S) + 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout, sizeof timeout) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &idle, sizeof idle) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count) != 0)
        return -1;
    return 0;
}

struct rtcp {
    struct raft_uv_transport inner; /* raft_uv_tcp; inner.data = this */
    struct raft_uv_transport *outer;
    uv_loop_t *loop;
    unsigned stuck_ms;
    raft_uv_accept_cb accept_cb;
    raft_uv_transport_close_cb close_cb;
};

struct rtcp__connect {
    struct raft_uv_connect req; /* given to the inner transport */
    struct raft_uv_connect *outer_req;
    raft_uv_connect_cb cb;
    struct rtcp *r;
    uv_timer_t deadline;
    bool answered;   /* cb called: by the deadline, or with the inner result */
    bool inner_done; /* the inner transport called back */
    bool timer_open;
};

static void rtcp__set(struct rtcp *r, struct uv_stream_s *stream)
{
    if (lmq_tcp_set_stuck_timeout((uv_tcp_t *)stream, r->stuck_ms) != 0)
        LMQ_WARN("raft tcp: cannot set TCP_USER_TIMEOUT/keepalive: %s", strerror(errno));
}

static void rtcp__copy_errmsg(struct rtcp *r)
{
    memcpy(r->outer->errmsg, r->inner.errmsg, sizeof r->outer->errmsg);
}

static int rtcp__init(struct raft_uv_transport *t, raft_id id, const char *address)
{
    struct rtcp *r = t->impl;
    int rv = r->inner.init(&r->inner, id, address);
    if (rv != 0)
        rtcp__copy_errmsg(r);
    return rv;
}

static void rtcp__accepted(struct raft_uv_transport *inner, raft_id id, const char *address,
                           struct uv_stream_s *stream)
{
    struct rtcp *r = inner->data;
    rtcp__set(r, stream);
    r->accept_cb(r->outer, id, address, stream);
}

static int rtcp__listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
    struct rtcp *r = t->impl;
    r->accept_cb = cb;
    int rv = r->inner.listen(&r->inner, rtcp__accepted);
    if (rv != 0)
        rtcp__copy_errmsg(r);
    return rv;
}

static void rtcp__connect_free(struct rtcp__connect *w)
{
    if (w->inner_done && !w->timer_open)
        free(w);
}

static void rtcp__deadline_closed(uv_handle_t *h)
{
    struct rtcp__connect *w = h->data;
    w->timer_open = false;
    rtcp__connect_free(w);
}

static void rtcp__stop_deadline(struct rtcp__connect *w)
{
    if (w->timer_open && !uv_is_closing((uv_handle_t *)&w->deadline))
        uv_close((uv_handle_t *)&w->deadline, rtcp__deadline_closed);
}

static void rtcp__deadline(uv_timer_t *t)
{
    struct rtcp__connect *w = t->data;
    rtcp__stop_deadline(w);
    if (w->answered)
        return;
    w->answered = true;
    w->cb(w->outer_req, NULL, RAFT_NOCONNECTION);
}

static void rtcp__stream_closed(uv_handle_t *h)
{
    raft_free(h);
}

static void rtcp__connected(struct raft_uv_connect *req, struct uv_stream_s *stream, int status)
{
    struct rtcp__connect *w = (struct rtcp__connect *)req;
    w->inner_done = true;
    rtcp__stop_deadline(w);
    if (w->answered) {
        /* abandoned at its deadline: libraft has moved on */
        if (status == 0 && stream != NULL)
            uv_close((uv_handle_t *)stream, rtcp__stream_closed);
        rtcp__connect_free(w);
        return;
    }
    w->answered = true;
    struct raft_uv_connect *outer_req = w->outer_req;
    raft_uv_connect_cb cb = w->cb;
    if (status == 0)
        rtcp__set(w->r, stream);
    rtcp__connect_free(w);
    cb(outer_req, stream, status);
}

static int rtcp__connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                         const char *address, raft_uv_connect_cb cb)
{
    struct rtcp *r = t->impl;
    struct rtcp__connect *w = calloc(1, sizeof *w);
    if (w == NULL)
        return RAFT_NOMEM;
    w->outer_req = req;
    w->cb = cb;
    w->r = r;
    int rv = r->inner.connect(&r->inner, &w->req, id, address, rtcp__connected);
    if (rv != 0) {
        rtcp__copy_errmsg(r);
        free(w);
        return rv;
    }
    uv_timer_init(r->loop, &w->deadline);
    w->deadline.data = w;
    w->timer_open = true;
    uv_timer_start(&w->deadline, rtcp__deadline, r->stuck_ms, 0);
    return 0;
}

static void rtcp__closed(struct raft_uv_transport *inner)
{
    struct rtcp *r = inner->data;
    if (r->close_cb)
        r->close_cb(r->outer);
}

static void rtcp__close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
    struct rtcp *r = t->impl;
    r->close_cb = cb;
    r->inner.close(&r->inner, rtcp__closed);
}

int lmq_raft_tcp_init(struct raft_uv_transport *t, uv_loop_t *loop, unsigned stuck_ms)
{
    struct rtcp *r = calloc(1, sizeof *r);
    if (r == NULL)
        return RAFT_NOMEM;
    r->inner.version = 1;
    int rv = raft_uv_tcp_init(&r->inner, loop);
    if (rv != 0) {
        free(r);
        return rv;
    }
    r->inner.data = r;
    r->outer = t;
    r->loop = loop;
    r->stuck_ms = stuck_ms > 0 ? stuck_ms : lmq_tcp_stuck_timeout_ms(0);
    t->version = 1;
    t->impl = r;
    t->errmsg[0] = '\0';
    t->init = rtcp__init;
    t->listen = rtcp__listen;
    t->connect = rtcp__connect;
    t->close = rtcp__close;
    return 0;
}

int lmq_raft_tcp_set_bind_address(struct raft_uv_transport *t, const char *address)
{
    struct rtcp *r = t->impl;
    return raft_uv_tcp_set_bind_address(&r->inner, address);
}

void lmq_raft_tcp_close(struct raft_uv_transport *t)
{
    struct rtcp *r = t->impl;
    if (r == NULL)
        return;
    raft_uv_tcp_close(&r->inner);
    free(r);
    t->impl = NULL;
}
