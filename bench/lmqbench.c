/* lmqbench: MQTT 3.1.1 load generator for comparing ledgermqd with other
 * brokers (see docs/BENCHMARKS.md). It is deliberately self-contained: its
 * own tiny MQTT encoder/decoder, one epoll thread, non-blocking sockets, one
 * write() per connection per loop iteration and big reads, so that the
 * broker, not the generator, is the bottleneck.
 *
 * Every PUBLISH payload starts with a 20-byte header (send time in
 * CLOCK_MONOTONIC ns, a run tag, publisher index, sequence number), so the
 * subscribers measure publish->deliver latency and check delivery exactly:
 * each (subscriber, publisher) pair keeps a bitmap of the sequence numbers
 * seen. The key invariant checked at the end: for QoS 1 and 2, messages
 * delivered (unique) == messages published x matching subscribers and no
 * duplicates; otherwise an ERROR line is printed and the exit code is 2.
 *
 * Output: one line starting with "RESULT " of key=value pairs on stdout.
 * Modes: load (default), --idle N (hold N idle connections; prints
 * "IDLE_READY ..." once connected, then holds until --hold expires or
 * SIGTERM), --probe (exit 0 once a CONNACK is received).
 * Transports: plain TCP (default), TLS (--tls CAFILE: OpenSSL on the
 * non-blocking socket, server certificate verified against CAFILE) and
 * MQTT over WebSocket (--ws: an Upgrade with subprotocol mqtt, then each
 * flush is one masked binary frame with mask key 0, so no payload is
 * copied to mask it); --tls --ws is MQTT over WebSocket over TLS.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "crypto/cose.h"
#include "crypto/sign.h"
#include "identity/device_id.h"

#define HDR_LEN 20u           /* payload header: ts(8) tag(4) pub(4) seq(4) */
#define MAX_PACKET (1u << 24) /* refuse incoming packets above 16 MiB */
#define PID_SPACE 65536u
#define FILL_CAP 1024u        /* max PUBLISHes generated per pub per turn */
#define OUT_HIGH (1u << 20)   /* stop generating above 1 MiB unsent */

enum role { ROLE_PUB, ROLE_SUB, ROLE_IDLE, ROLE_PROBE };
enum cstate { CS_CONNECTING, CS_TLS, CS_UPGRADE, CS_CONNACK, CS_SUBACK, CS_READY, CS_DEAD };
enum phase { PH_SETUP, PH_RUN, PH_DRAIN, PH_DONE };

struct buf {
    uint8_t *p;
    size_t off, len, cap;
};

struct track { /* one subscriber's view of one publisher */
    uint8_t *bits;
    size_t nbytes;
    int64_t max_seq;
    uint64_t unique;
};

struct conn {
    int fd;
    int idx;
    enum role role;
    enum cstate state;
    bool dirty, want_out;
    uint32_t ev; /* registered epoll events */
    struct buf in, out;
    SSL *ssl;             /* --tls */
    struct buf raw, wire; /* --ws: received frames, framed output */
    uint64_t last_tx;
    /* publisher */
    char topic[128];
    size_t topic_len;
    uint64_t sent, acked;
    uint32_t inflight;
    uint16_t next_pid;
    uint8_t *pid_state; /* 0 free, 1 wait PUBACK/PUBREC, 2 wait PUBCOMP */
    uint64_t *sent_at;  /* --ack-latency: send time per packet id */
    uint8_t *envs;      /* --sign-keys: pre-signed device envelopes, back to back */
    size_t *env_off;    /* [n_envs + 1] */
    uint64_t n_envs;
    uint64_t e2e_base, stall_since;
    /* subscriber */
    struct track *tracks; /* [npubs] */
    uint8_t *rel_pending; /* QoS 2 ids awaiting PUBREL */
    uint64_t delivered, dups, ooo, foreign;
};

struct opts {
    const char *host, *port, *prefix, *filter, *scenario, *idprefix, *tls_ca;
    int pubs, subs, qos, keepalive;
    size_t payload;
    uint32_t window, e2e_window;
    double rate, duration, hold, drain_timeout, setup_timeout;
    uint64_t count;
    int idle, coalesce_us;
    uint64_t coalesce_min;
    bool probe, ws;
    bool ack_latency;        /* latency and rate from PUBACK/PUBCOMP, not deliveries */
    const char *sign_keys;   /* publisher i signs with device key PREFIX.i */
};

static struct opts o = {
    .host = "127.0.0.1", .port = "1883", .prefix = "lmqbench/t",
    .filter = NULL, .scenario = "custom", .idprefix = "lmqb",
    .pubs = 1, .subs = 1, .qos = 0, .keepalive = -1, .payload = 64,
    .window = 100, .e2e_window = 1000, .rate = 0, .duration = 10,
    .hold = 30, .drain_timeout = 10, .setup_timeout = 30, .count = 0,
    .idle = 0, .coalesce_us = 50, .coalesce_min = 16, .probe = false,
};

static struct conn *conns;
static int nconns;
static struct conn **pubc, **subc;
static bool *match; /* [pub * subs + sub] */
static int ep = -1;
static SSL_CTX *tls_ctx; /* --tls */
static struct conn **dirty;
static int ndirty;
static uint32_t run_tag;
static volatile sig_atomic_t stop_flag;
static const char *fatal_msg;
static char fatal_buf[256];
static struct sockaddr_storage addr;
static socklen_t addrlen;

/* latency histogram: log-linear, 64 sub-buckets per power of two (<1.6% error) */
#define HBUCKETS (64 * 60)
static uint64_t hist[HBUCKETS];
static uint64_t hist_n, lat_max;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void fail(const char *fmt, const char *arg)
{
    if (fatal_msg)
        return;
    snprintf(fatal_buf, sizeof fatal_buf, fmt, arg ? arg : "");
    fatal_msg = fatal_buf;
}

static unsigned hbucket(uint64_t v)
{
    if (v < 64)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* e >= 6 */
    unsigned idx = (e - 5u) * 64u + (unsigned)((v >> (e - 6u)) & 63u);
    return idx < HBUCKETS ? idx : HBUCKETS - 1;
}

static double hvalue(unsigned idx) /* midpoint of a bucket, ns */
{
    if (idx < 64)
        return idx;
    unsigned e = idx / 64u + 5u, sub = idx % 64u;
    double lo = (double)((64ull + sub) << (e - 6u));
    return lo + (double)(1ull << (e - 6u)) / 2.0;
}

static double percentile_ms(double p)
{
    if (hist_n == 0)
        return 0;
    uint64_t want = (uint64_t)(p * (double)hist_n);
    if (want < 1)
        want = 1;
    uint64_t cum = 0;
    for (unsigned i = 0; i < HBUCKETS; i++) {
        cum += hist[i];
        if (cum >= want)
            return hvalue(i) / 1e6;
    }
    return (double)lat_max / 1e6;
}

/* ---------- buffers ---------- */

static int buf_reserve(struct buf *b, size_t extra)
{
    if (b->off > 0 && b->off == b->len)
        b->off = b->len = 0;
    if (b->cap - b->len >= extra)
        return 0;
    if (b->off > 0) {
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->cap - b->len >= extra)
            return 0;
    }
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap - b->len < extra)
        ncap *= 2;
    uint8_t *np = realloc(b->p, ncap);
    if (!np) {
        fail("out of memory%s", NULL);
        return -1;
    }
    b->p = np;
    b->cap = ncap;
    return 0;
}

static void mark_dirty(struct conn *c)
{
    if (!c->dirty) {
        c->dirty = true;
        dirty[ndirty++] = c;
    }
}

static void put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static size_t put_remlen(uint8_t *p, size_t v)
{
    size_t n = 0;
    do {
        uint8_t b = (uint8_t)(v % 128);
        v /= 128;
        if (v)
            b |= 0x80;
        p[n++] = b;
    } while (v);
    return n;
}

static uint8_t *out_alloc(struct conn *c, size_t n)
{
    if (buf_reserve(&c->out, n) < 0)
        return NULL;
    uint8_t *p = c->out.p + c->out.len;
    c->out.len += n;
    mark_dirty(c);
    return p;
}

static void send_ack(struct conn *c, uint8_t type, unsigned pid)
{
    uint8_t *p = out_alloc(c, 4);
    if (!p)
        return;
    p[0] = type;
    p[1] = 2;
    put16(p + 2, pid);
}

static void send_connect(struct conn *c)
{
    char id[64];
    int idl = snprintf(id, sizeof id, "%s-%d-%d", o.idprefix, (int)getpid(), c->idx);
    size_t rl = 10 + 2 + (size_t)idl;
    uint8_t *p = out_alloc(c, 5 + rl);
    if (!p)
        return;
    size_t k = 0;
    p[k++] = 0x10;
    k += put_remlen(p + k, rl);
    put16(p + k, 4);
    memcpy(p + k + 2, "MQTT", 4);
    k += 6;
    p[k++] = 4;    /* protocol level 3.1.1 */
    p[k++] = 0x02; /* clean session */
    put16(p + k, (unsigned)o.keepalive);
    k += 2;
    put16(p + k, (unsigned)idl);
    memcpy(p + k + 2, id, (size_t)idl);
    k += 2 + (size_t)idl;
    c->out.len -= (5 + rl) - k; /* give back what the remaining length didn't use */
}

static void send_subscribe(struct conn *c)
{
    size_t fl = strlen(o.filter);
    size_t rl = 2 + 2 + fl + 1;
    uint8_t *p = out_alloc(c, 5 + rl);
    if (!p)
        return;
    size_t k = 0;
    p[k++] = 0x82;
    k += put_remlen(p + k, rl);
    put16(p + k, 1);
    put16(p + k + 2, (unsigned)fl);
    memcpy(p + k + 4, o.filter, fl);
    k += 4 + fl;
    p[k++] = (uint8_t)o.qos;
    c->out.len -= (5 + rl) - k; /* give back what the remaining length didn't use */
}

/* ---------- topic matching (MQTT 3.1.1 section 4.7) ---------- */

static bool topic_match(const char *f, const char *t)
{
    if ((f[0] == '+' || f[0] == '#') && t[0] == '$')
        return false;
    for (;;) {
        if (f[0] == '#')
            return true;
        const char *fe = strchr(f, '/'), *te = strchr(t, '/');
        size_t fl = fe ? (size_t)(fe - f) : strlen(f);
        size_t tl = te ? (size_t)(te - t) : strlen(t);
        if (!(fl == 1 && f[0] == '+') && (fl != tl || memcmp(f, t, fl) != 0))
            return false;
        if (!fe && !te)
            return true;
        if (!te) /* "a/#" matches "a" */
            return fe && strcmp(fe + 1, "#") == 0;
        if (!fe)
            return false;
        f = fe + 1;
        t = te + 1;
    }
}

/* ---------- connections ---------- */

static void ep_set(struct conn *c, uint32_t ev)
{
    if (c->ev == ev)
        return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e) < 0)
        fail("epoll_ctl: %s", strerror(errno));
    c->ev = ev;
}

static void conn_close(struct conn *c, const char *why)
{
    if (c->state == CS_DEAD)
        return;
    if (c->role == ROLE_PUB || c->role == ROLE_SUB || c->role == ROLE_PROBE) {
        if (why)
            fail("connection lost: %s", why);
    }
    if (c->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = CS_DEAD;
    SSL_free(c->ssl);
    c->ssl = NULL;
    free(c->in.p);
    free(c->out.p);
    free(c->raw.p);
    free(c->wire.p);
    memset(&c->in, 0, sizeof c->in);
    memset(&c->out, 0, sizeof c->out);
    memset(&c->raw, 0, sizeof c->raw);
    memset(&c->wire, 0, sizeof c->wire);
}

static int conn_open(struct conn *c)
{
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fail("socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->state = CS_CONNECTING;
    c->ev = EPOLLOUT;
    struct epoll_event e = {.events = c->ev, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) < 0) {
        fail("epoll_ctl: %s", strerror(errno));
        close(fd);
        c->fd = -1;
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&addr, addrlen) < 0 && errno != EINPROGRESS) {
        conn_close(c, strerror(errno));
        return -1;
    }
    return 0;
}

/* read()/write() through TLS when --tls: the same return conventions
 * (EAGAIN when the socket must become readable or writable first). */
static ssize_t tr_recv(struct conn *c, void *p, size_t n)
{
    if (!c->ssl)
        return read(c->fd, p, n);
    int r = SSL_read(c->ssl, p, n > (1u << 30) ? (1 << 30) : (int)n);
    if (r > 0)
        return r;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_ZERO_RETURN)
        return 0;
    errno = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? EAGAIN : EPROTO;
    return -1;
}

static ssize_t tr_send(struct conn *c, const void *p, size_t n)
{
    if (!c->ssl)
        return write(c->fd, p, n);
    int r = SSL_write(c->ssl, p, n > (1u << 30) ? (1 << 30) : (int)n);
    if (r > 0)
        return r;
    int e = SSL_get_error(c->ssl, r);
    errno = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? EAGAIN : EPROTO;
    return -1;
}

/* --ws: what is in c->out becomes one masked binary frame in c->wire (mask
 * key 0, so the payload is copied as is). Only when c->wire is empty, so
 * that unsent bytes stay in c->out, where OUT_HIGH sees them. */
static int ws_frame_out(struct conn *c)
{
    size_t n = c->out.len - c->out.off;
    if (n == 0 || c->wire.off < c->wire.len)
        return 0;
    if (buf_reserve(&c->wire, n + 14) < 0)
        return -1;
    uint8_t *h = c->wire.p + c->wire.len;
    size_t hl = 2;
    h[0] = 0x82;
    if (n < 126) {
        h[1] = (uint8_t)(0x80 | n);
    } else if (n < 65536) {
        h[1] = 0x80 | 126;
        put16(h + 2, (unsigned)n);
        hl = 4;
    } else {
        h[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
        hl = 10;
    }
    memset(h + hl, 0, 4);
    hl += 4;
    memcpy(h + hl, c->out.p + c->out.off, n);
    c->wire.len += hl + n;
    c->out.off = c->out.len = 0;
    return 0;
}

static void conn_flush(struct conn *c)
{
    c->dirty = false;
    if (c->state == CS_DEAD || c->state == CS_CONNECTING || c->state == CS_TLS)
        return;
    bool framed = o.ws && c->state != CS_UPGRADE;
    for (;;) {
        if (framed && ws_frame_out(c) < 0)
            return;
        struct buf *b = framed ? &c->wire : &c->out;
        if (b->off >= b->len)
            break;
        ssize_t n = tr_send(c, b->p + b->off, b->len - b->off);
        if (n > 0) {
            b->off += (size_t)n;
            if (b->off == b->len)
                b->off = b->len = 0;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ep_set(c, EPOLLIN | EPOLLOUT);
            return;
        }
        conn_close(c, n < 0 ? strerror(errno) : "write returned 0");
        return;
    }
    c->out.off = c->out.len = 0;
    c->wire.off = c->wire.len = 0;
    c->last_tx = now_ns();
    ep_set(c, EPOLLIN);
}

/* ---------- load phase bookkeeping ---------- */

static enum phase phase = PH_SETUP;
static uint64_t t_setup, t_run, t_stop, t_last_rx, t_last_deliver;
static int nready;
static uint64_t turn_packets; /* packets received in this loop iteration */

static void record_delivery(struct conn *c, const uint8_t *pl, size_t len, uint64_t now)
{
    if (len < HDR_LEN) {
        c->foreign++;
        return;
    }
    uint64_t ts;
    uint32_t tag, pub, seq;
    memcpy(&ts, pl, 8);
    memcpy(&tag, pl + 8, 4);
    memcpy(&pub, pl + 12, 4);
    memcpy(&seq, pl + 16, 4);
    if (tag != run_tag || pub >= (uint32_t)o.pubs) {
        c->foreign++;
        return;
    }
    struct track *t = &c->tracks[pub];
    size_t byte = seq / 8;
    if (byte >= t->nbytes) {
        size_t nb = t->nbytes ? t->nbytes : 4096;
        while (nb <= byte)
            nb *= 2;
        uint8_t *np = realloc(t->bits, nb);
        if (!np) {
            fail("out of memory%s", NULL);
            return;
        }
        memset(np + t->nbytes, 0, nb - t->nbytes);
        t->bits = np;
        t->nbytes = nb;
    }
    uint8_t bit = (uint8_t)(1u << (seq % 8));
    if (t->bits[byte] & bit) {
        c->dups++;
        return;
    }
    t->bits[byte] |= bit;
    t->unique++;
    c->delivered++;
    if ((int64_t)seq < t->max_seq)
        c->ooo++;
    else
        t->max_seq = seq;
    uint64_t lat = now > ts ? now - ts : 0;
    hist[hbucket(lat)]++;
    hist_n++;
    if (lat > lat_max)
        lat_max = lat;
    t_last_deliver = now;
}

static void on_ready(struct conn *c)
{
    c->state = CS_READY;
    nready++;
}

static int handle_packet(struct conn *c, uint8_t h, const uint8_t *b, size_t n, uint64_t now)
{
    unsigned type = h >> 4;
    unsigned pid = n >= 2 ? ((unsigned)b[0] << 8 | b[1]) : 0;
    switch (type) {
    case 2: /* CONNACK */
        if (c->state != CS_CONNACK || n < 2)
            return -1;
        if (b[1] != 0) {
            fail("CONNACK refused (rc=%s)", b[1] == 5 ? "5 not authorized" : "nonzero");
            return -1;
        }
        if (c->role == ROLE_SUB) {
            send_subscribe(c);
            c->state = CS_SUBACK;
        } else {
            on_ready(c);
        }
        return 0;
    case 9: /* SUBACK */
        if (c->state != CS_SUBACK || n < 3)
            return -1;
        if (b[2] == 0x80) {
            fail("SUBSCRIBE refused%s", NULL);
            return -1;
        }
        if (b[2] != (uint8_t)o.qos)
            fprintf(stderr, "lmqbench: note: granted QoS %u, asked %d\n", b[2], o.qos);
        on_ready(c);
        return 0;
    case 3: { /* PUBLISH */
        unsigned q = (h >> 1) & 3;
        if (n < 2)
            return -1;
        size_t tl = (size_t)b[0] << 8 | b[1];
        size_t k = 2 + tl;
        unsigned ppid = 0;
        if (q > 0) {
            if (k + 2 > n)
                return -1;
            ppid = (unsigned)b[k] << 8 | b[k + 1];
            k += 2;
        }
        if (k > n || q == 3)
            return -1;
        if (c->role != ROLE_SUB)
            return 0;
        if (q == 2 && c->rel_pending[ppid]) {
            c->dups++; /* redelivery of a QoS 2 id we already have */
        } else {
            record_delivery(c, b + k, n - k, now);
        }
        if (q == 1)
            send_ack(c, 0x40, ppid);
        else if (q == 2) {
            c->rel_pending[ppid] = 1;
            send_ack(c, 0x50, ppid);
        }
        return 0;
    }
    case 4: /* PUBACK */
    case 7: /* PUBCOMP */
        if (c->role != ROLE_PUB || !c->pid_state || n < 2)
            return -1;
        if (c->pid_state[pid] != (type == 4 ? 1 : 2)) {
            fail("unexpected PUBACK/PUBCOMP%s", NULL);
            return -1;
        }
        c->pid_state[pid] = 0;
        c->inflight--;
        c->acked++;
        if (c->sent_at) {
            uint64_t lat = now > c->sent_at[pid] ? now - c->sent_at[pid] : 0;
            hist[hbucket(lat)]++;
            hist_n++;
            if (lat > lat_max)
                lat_max = lat;
            t_last_deliver = now;
        }
        return 0;
    case 5: /* PUBREC */
        if (c->role != ROLE_PUB || !c->pid_state || n < 2 || c->pid_state[pid] != 1) {
            fail("unexpected PUBREC%s", NULL);
            return -1;
        }
        c->pid_state[pid] = 2;
        send_ack(c, 0x62, pid);
        return 0;
    case 6: /* PUBREL */
        if (c->role != ROLE_SUB || n < 2)
            return -1;
        c->rel_pending[pid] = 0;
        send_ack(c, 0x70, pid);
        return 0;
    case 13: /* PINGRESP */
        return 0;
    default:
        return -1;
    }
}

/* --ws: the Upgrade answer, then the server's frames from c->raw into
 * the MQTT stream in c->in. -1 when the connection was closed. */
static int ws_input(struct conn *c)
{
    struct buf *r = &c->raw;
    if (c->state == CS_UPGRADE) {
        const uint8_t *e = memmem(r->p + r->off, r->len - r->off, "\r\n\r\n", 4);
        if (!e) {
            if (r->len - r->off > 8192) {
                conn_close(c, "bad WebSocket answer");
                return -1;
            }
            return 0;
        }
        if (r->len - r->off < 12 || memcmp(r->p + r->off, "HTTP/1.1 101", 12) != 0) {
            conn_close(c, "WebSocket upgrade refused");
            return -1;
        }
        r->off = (size_t)(e + 4 - r->p);
        c->state = CS_CONNACK;
        send_connect(c);
    }
    while (r->len - r->off >= 2) {
        const uint8_t *p = r->p + r->off;
        size_t avail = r->len - r->off, hl = 2;
        uint64_t n = p[1] & 127;
        if (p[1] & 0x80) {
            conn_close(c, "masked server frame");
            return -1;
        }
        if (n == 126) {
            if (avail < 4)
                break;
            n = (uint64_t)p[2] << 8 | p[3];
            hl = 4;
        } else if (n == 127) {
            if (avail < 10)
                break;
            n = 0;
            for (int i = 0; i < 8; i++)
                n = n << 8 | p[2 + i];
            hl = 10;
        }
        if (n > MAX_PACKET) {
            conn_close(c, "WebSocket frame too large");
            return -1;
        }
        if (avail < hl + n)
            break;
        unsigned op = p[0] & 15;
        if (op == 8) {
            conn_close(c, "WebSocket close from broker");
            return -1;
        }
        if (op == 0 || op == 2) {
            if (buf_reserve(&c->in, (size_t)n) < 0)
                return -1;
            memcpy(c->in.p + c->in.len, r->p + r->off + hl, (size_t)n);
            c->in.len += (size_t)n;
        }
        r->off += hl + (size_t)n;
    }
    if (r->off == r->len)
        r->off = r->len = 0;
    return 0;
}

static void conn_read(struct conn *c)
{
    size_t budget = 4u << 20;
    while (budget > 0 && c->state != CS_DEAD) {
        size_t want = c->role == ROLE_IDLE ? 512 : 256 * 1024;
        struct buf *rb = o.ws ? &c->raw : &c->in;
        if (buf_reserve(rb, want) < 0)
            return;
        ssize_t r = tr_recv(c, rb->p + rb->len, rb->cap - rb->len);
        if (r == 0) {
            conn_close(c, "closed by broker");
            return;
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                conn_close(c, strerror(errno));
            return;
        }
        rb->len += (size_t)r;
        budget = (size_t)r < budget ? budget - (size_t)r : 0;
        if (o.ws && ws_input(c) < 0)
            return;
        uint64_t now = now_ns();
        t_last_rx = now;
        /* parse every complete packet */
        while (c->in.len - c->in.off >= 2) {
            const uint8_t *p = c->in.p + c->in.off;
            size_t avail = c->in.len - c->in.off, rl = 0, k = 1;
            unsigned mul = 1;
            bool complete = false;
            while (k < avail && k <= 4) {
                rl += (size_t)(p[k] & 127) * mul;
                mul *= 128;
                if (!(p[k++] & 128)) {
                    complete = true;
                    break;
                }
            }
            if (!complete) {
                if (k > 4) {
                    conn_close(c, "bad remaining length");
                    return;
                }
                break;
            }
            if (rl > MAX_PACKET) {
                conn_close(c, "packet too large");
                return;
            }
            if (avail < k + rl)
                break;
            turn_packets++;
            if (handle_packet(c, p[0], p + k, rl, now) < 0) {
                conn_close(c, "protocol error");
                return;
            }
            if (c->state == CS_DEAD)
                return;
            c->in.off += k + rl;
        }
        if (c->role == ROLE_IDLE && c->in.off == c->in.len) {
            free(c->in.p); /* idle connections keep no buffers between packets */
            memset(&c->in, 0, sizeof c->in);
        }
        if ((size_t)r < want / 2 && !c->ssl)
            return; /* probably drained; epoll will tell us (TLS: read on
                     * to EAGAIN, a record is at most 16 KiB) */
    }
}

/* TCP (and TLS) is up: the WebSocket Upgrade, or CONNECT. */
static void conn_transport_up(struct conn *c)
{
    ep_set(c, EPOLLIN);
    if (!o.ws) {
        c->state = CS_CONNACK;
        send_connect(c);
        return;
    }
    c->state = CS_UPGRADE;
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET /mqtt HTTP/1.1\r\nHost: %.200s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n",
                     o.host);
    uint8_t *p = out_alloc(c, (size_t)n);
    if (p)
        memcpy(p, req, (size_t)n);
}

static void conn_tls_step(struct conn *c)
{
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        conn_transport_up(c);
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        ep_set(c, EPOLLIN);
    } else if (e == SSL_ERROR_WANT_WRITE) {
        ep_set(c, EPOLLIN | EPOLLOUT);
    } else {
        static char why[256];
        const char *rs = ERR_reason_error_string(ERR_peek_last_error());
        snprintf(why, sizeof why, "TLS handshake: %s", rs ? rs : "failed");
        conn_close(c, why);
    }
}

static void conn_connected(struct conn *c)
{
    int err = 0;
    socklen_t el = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
        err = errno;
    if (err) {
        conn_close(c, strerror(err));
        return;
    }
    if (tls_ctx) {
        c->ssl = SSL_new(tls_ctx);
        if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) {
            conn_close(c, "SSL_new failed");
            return;
        }
        SSL_set_connect_state(c->ssl);
        c->state = CS_TLS;
        conn_tls_step(c);
        return;
    }
    conn_transport_up(c);
}

/* ---------- publishers ---------- */

static uint64_t pub_watermark(int pi) /* messages of pub pi seen by every matching sub */
{
    uint64_t wm = UINT64_MAX;
    for (int s = 0; s < o.subs; s++) {
        if (!match[pi * o.subs + s])
            continue;
        uint64_t seen = (uint64_t)(subc[s]->tracks[pi].max_seq + 1);
        if (seen < wm)
            wm = seen;
    }
    return wm;
}

static void pub_fill(struct conn *c, int pi, uint64_t now)
{
    if (c->state != CS_READY)
        return;
    uint64_t room = FILL_CAP;
    if (o.qos > 0)
        room = o.window > c->inflight ? o.window - c->inflight : 0;
    if (o.e2e_window > 0 && o.subs > 0) {
        uint64_t wm = pub_watermark(pi);
        if (wm != UINT64_MAX) {
            if (wm < c->e2e_base)
                wm = c->e2e_base;
            uint64_t outst = c->sent - wm;
            if (outst >= o.e2e_window) {
                /* QoS 0 messages may be dropped: don't wait for them forever */
                if (!c->stall_since)
                    c->stall_since = now;
                else if (o.qos == 0 && now - c->stall_since > 200000000ull) {
                    c->e2e_base = c->sent;
                    c->stall_since = 0;
                }
                return;
            }
            c->stall_since = 0;
            if (o.e2e_window - outst < room)
                room = o.e2e_window - outst;
        }
    }
    if (o.rate > 0) {
        double per = o.rate / o.pubs;
        uint64_t allowed = (uint64_t)((double)(now - t_run) / 1e9 * per) + 1;
        room = allowed > c->sent ? (allowed - c->sent < room ? allowed - c->sent : room) : 0;
    }
    if (o.count > 0)
        room = o.count - c->sent < room ? o.count - c->sent : room;
    if (room > FILL_CAP)
        room = FILL_CAP;
    if (room == 0 || c->out.len - c->out.off > OUT_HIGH)
        return;

    if (c->envs) {
        /* --sign-keys: the next pre-signed envelopes, one PUBLISH each. */
        if (c->sent + room > c->n_envs)
            room = c->n_envs - c->sent;
        uint64_t n = 0;
        for (; n < room; n++) {
            unsigned pid = 0;
            if (o.qos > 0 && c->pid_state[c->next_pid])
                break; /* id still in use: wait for its ack */
            const uint8_t *env = c->envs + c->env_off[c->sent];
            size_t el = c->env_off[c->sent + 1] - c->env_off[c->sent];
            size_t rl = 2 + c->topic_len + (o.qos ? 2 : 0) + el;
            uint8_t *q = out_alloc(c, 8 + rl);
            if (!q)
                break;
            if (o.qos > 0) {
                pid = c->next_pid;
                c->next_pid = (uint16_t)(pid == 65535 ? 1 : pid + 1);
                c->pid_state[pid] = 1;
                c->inflight++;
                if (c->sent_at)
                    c->sent_at[pid] = now;
            }
            size_t k = 0;
            q[k++] = (uint8_t)(0x30 | (o.qos << 1));
            k += put_remlen(q + k, rl);
            put16(q + k, (unsigned)c->topic_len);
            memcpy(q + k + 2, c->topic, c->topic_len);
            k += 2 + c->topic_len;
            if (o.qos > 0) {
                put16(q + k, pid);
                k += 2;
            }
            memcpy(q + k, env, el);
            c->out.len -= 8 + rl - (k + el); /* out_alloc reserved the upper bound */
            c->sent++;
        }
        if (n > 0)
            mark_dirty(c);
        return;
    }
    size_t rl = 2 + c->topic_len + (o.qos ? 2 : 0) + o.payload;
    uint8_t hdr[8];
    size_t hl = 0;
    hdr[hl++] = (uint8_t)(0x30 | (o.qos << 1));
    hl += put_remlen(hdr + hl, rl);
    size_t msz = hl + rl;
    if (buf_reserve(&c->out, msz * room) < 0)
        return;
    uint8_t *p = c->out.p + c->out.len;
    uint64_t n = 0;
    for (; n < room; n++) {
        unsigned pid = 0;
        if (o.qos > 0) {
            pid = c->next_pid;
            if (c->pid_state[pid])
                break; /* id still in use: wait for its ack */
            c->next_pid = (uint16_t)(pid == 65535 ? 1 : pid + 1);
            c->pid_state[pid] = 1;
            c->inflight++;
            if (c->sent_at)
                c->sent_at[pid] = now;
        }
        memcpy(p, hdr, hl);
        size_t k = hl;
        put16(p + k, (unsigned)c->topic_len);
        memcpy(p + k + 2, c->topic, c->topic_len);
        k += 2 + c->topic_len;
        if (o.qos > 0) {
            put16(p + k, pid);
            k += 2;
        }
        uint32_t pub = (uint32_t)pi, seq = (uint32_t)c->sent;
        memcpy(p + k, &now, 8);
        memcpy(p + k + 8, &run_tag, 4);
        memcpy(p + k + 12, &pub, 4);
        memcpy(p + k + 16, &seq, 4);
        memset(p + k + HDR_LEN, 'x', o.payload - HDR_LEN);
        p += msz;
        c->sent++;
    }
    if (n > 0) {
        c->out.len += msz * n;
        mark_dirty(c);
    }
}

/* ---------- main loop ---------- */

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void usage(void)
{
    fprintf(stderr,
        "usage: lmqbench [options]\n"
        "  --host H            broker address (127.0.0.1)\n"
        "  --port P            broker port (1883)\n"
        "  --scenario NAME     label printed in the RESULT line\n"
        "  --pubs N            publishers (1)\n"
        "  --subs N            subscribers (1)\n"
        "  --qos Q             0, 1 or 2 (0)\n"
        "  --payload B         payload bytes, >= %u (64)\n"
        "  --window N          QoS 1/2 in-flight PUBLISHes per publisher (100)\n"
        "  --e2e-window N      max messages per publisher published but not yet\n"
        "                      seen by every matching subscriber; paces publishers\n"
        "                      to what the subscribers take (1000, 0 = off)\n"
        "  --rate R            total publish rate limit in msgs/s (0 = none)\n"
        "  --duration S        publish for S seconds (10)\n"
        "  --count N           or stop after N messages per publisher\n"
        "  --topic PREFIX      publisher i publishes to PREFIX/i (lmqbench/t)\n"
        "  --filter F          subscribers subscribe to F (PREFIX/+)\n"
        "  --drain-timeout S   wait for outstanding deliveries (10)\n"
        "  --keepalive S       MQTT keepalive (60; 600 for --idle)\n"
        "  --coalesce-us U     while running, sleep U microseconds before polling\n"
        "                      when the last wakeup brought fewer than --coalesce-min\n"
        "                      packets, so that I/O happens in batches (50, 0 = off)\n"
        "  --coalesce-min N    (16)\n"
        "  --idle N            open N idle connections, print IDLE_READY, hold\n"
        "  --hold S            how long --idle holds them (30; SIGTERM ends early)\n"
        "  --probe             exit 0 once the broker answers CONNECT\n"
        "  --tls CAFILE        connect over TLS, verify the broker against CAFILE\n"
        "  --ws                MQTT over WebSocket (with --tls: over TLS)\n"
        "  --ack-latency       latency publish->PUBACK/PUBCOMP and rate from acks\n"
        "                      (for --subs 0: a ledgered topic's cost to publishers)\n"
        "  --sign-keys PREFIX  publisher i sends device envelopes (COSE_Sign1) signed\n"
        "                      before the run with the key file PREFIX.i, sequence\n"
        "                      numbers from the clock (us) up; --count of them\n"
        "                      (default 50000) each\n",
        HDR_LEN);
}

static int parse_opts(int argc, char **argv)
{
    static const struct option lo[] = {
        {"host", 1, 0, 'h'}, {"port", 1, 0, 'p'}, {"scenario", 1, 0, 'N'},
        {"pubs", 1, 0, 'P'}, {"subs", 1, 0, 'S'}, {"qos", 1, 0, 'q'},
        {"payload", 1, 0, 's'}, {"window", 1, 0, 'w'}, {"e2e-window", 1, 0, 'W'},
        {"rate", 1, 0, 'r'}, {"duration", 1, 0, 'd'}, {"count", 1, 0, 'n'},
        {"topic", 1, 0, 't'}, {"filter", 1, 0, 'f'}, {"drain-timeout", 1, 0, 'D'},
        {"keepalive", 1, 0, 'k'}, {"idle", 1, 0, 'I'}, {"hold", 1, 0, 'H'},
        {"coalesce-us", 1, 0, 'C'}, {"coalesce-min", 1, 0, 'M'}, {"probe", 0, 0, 'X'}, {"tls", 1, 0, 'T'}, {"ws", 0, 0, 'Z'}, {"help", 0, 0, '?'},
        {"ack-latency", 0, 0, 'L'}, {"sign-keys", 1, 0, 'K'}, {0, 0, 0, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'h': o.host = optarg; break;
        case 'p': o.port = optarg; break;
        case 'N': o.scenario = optarg; break;
        case 'P': o.pubs = atoi(optarg); break;
        case 'S': o.subs = atoi(optarg); break;
        case 'q': o.qos = atoi(optarg); break;
        case 's': o.payload = (size_t)strtoul(optarg, NULL, 10); break;
        case 'w': o.window = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'W': o.e2e_window = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'r': o.rate = atof(optarg); break;
        case 'd': o.duration = atof(optarg); break;
        case 'n': o.count = strtoull(optarg, NULL, 10); break;
        case 't': o.prefix = optarg; break;
        case 'f': o.filter = optarg; break;
        case 'D': o.drain_timeout = atof(optarg); break;
        case 'k': o.keepalive = atoi(optarg); break;
        case 'I': o.idle = atoi(optarg); break;
        case 'H': o.hold = atof(optarg); break;
        case 'C': o.coalesce_us = atoi(optarg); break;
        case 'M': o.coalesce_min = strtoull(optarg, NULL, 10); break;
        case 'X': o.probe = true; break;
        case 'T': o.tls_ca = optarg; break;
        case 'Z': o.ws = true; break;
        case 'L': o.ack_latency = true; break;
        case 'K': o.sign_keys = optarg; break;
        default: usage(); return -1;
        }
    }
    if (optind != argc || o.pubs < 0 || o.subs < 0 || o.pubs > 10000 || o.subs > 10000 ||
        o.qos < 0 || o.qos > 2 || o.payload < HDR_LEN || o.payload > (1u << 20) ||
        o.window < 1 || o.window > 60000 || o.idle < 0 || o.coalesce_us < 0 ||
        o.coalesce_us > 100000 || strlen(o.prefix) > 100) {
        usage();
        return -1;
    }
    if (o.keepalive < 0)
        o.keepalive = o.idle ? 600 : 60;
    if (o.keepalive > 65535)
        o.keepalive = 65535;
    return 0;
}

static int resolve(void)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    int rc = getaddrinfo(o.host, o.port, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "lmqbench: %s:%s: %s\n", o.host, o.port, gai_strerror(rc));
        return -1;
    }
    memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
    addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

static void raise_nofile(size_t need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < need) {
        rl.rlim_cur = need < rl.rlim_max ? need : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static long rss_kib(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t fl = strlen(field);
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, fl) == 0 && line[fl] == ':')
            v = strtol(line + fl + 1, NULL, 10);
    fclose(f);
    return v;
}

static double cpu_secs(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) < 0)
        return -1;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void send_pings(uint64_t now)
{
    uint64_t period = (uint64_t)o.keepalive * 500000000ull; /* keepalive / 2 */
    if (o.keepalive == 0)
        return;
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        if (c->state == CS_READY && now - c->last_tx > period) {
            uint8_t *p = out_alloc(c, 2);
            if (p) {
                p[0] = 0xC0;
                p[1] = 0;
            }
            c->last_tx = now;
        }
    }
}

/* --sign-keys: publisher PI's envelopes, signed before the run (so the
 * generator's CPU goes to I/O while measuring). Payload: the usual header
 * and filler, --payload bytes. */
static int sign_envelopes(struct conn *c, int pi)
{
    char path[512];
    snprintf(path, sizeof path, "%s.%d", o.sign_keys, pi);
    uint8_t pk[32], sk[64];
    if (crypto_init() < 0 || crypto_key_load(path, pk, sk) < 0) {
        fprintf(stderr, "lmqbench: cannot load device key %s\n", path);
        return -1;
    }
    char id[DEVICE_ID_LEN + 1];
    device_id_from_pk(pk, id);
    uint64_t n = o.count ? o.count : 50000;
    size_t cap = COSE_ENVELOPE_MAX(DEVICE_ID_LEN, o.payload);
    c->envs = malloc(n * cap);
    c->env_off = malloc((n + 1) * sizeof *c->env_off);
    uint8_t *pl = calloc(1, o.payload);
    if (!c->envs || !c->env_off || !pl)
        return -1;
    memset(pl + HDR_LEN, 'x', o.payload - HDR_LEN);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t t_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    /* Sequence numbers from the clock in microseconds: above those of any
     * earlier run against the same registry. */
    uint64_t seq0 = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
    size_t off = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint32_t pub = (uint32_t)pi, seq = (uint32_t)i;
        memcpy(pl + 8, &run_tag, 4);
        memcpy(pl + 12, &pub, 4);
        memcpy(pl + 16, &seq, 4);
        size_t len;
        c->env_off[i] = off;
        if (cose_envelope_sign(id, DEVICE_ID_LEN, seq0 + i, t_ms, pl, o.payload, sk, c->envs + off,
                               cap, &len) != 0)
            return -1;
        off += len;
    }
    c->env_off[n] = off;
    c->n_envs = n;
    free(pl);
    return 0;
}

int main(int argc, char **argv)
{
    if (parse_opts(argc, argv) < 0)
        return 64;
    if (resolve() < 0)
        return 1;
    static char deffilter[128];
    if (!o.filter) {
        snprintf(deffilter, sizeof deffilter, "%s/+", o.prefix);
        o.filter = deffilter;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    run_tag = (uint32_t)getpid() * 2654435761u ^ (uint32_t)now_ns();

    if (o.probe || o.idle)
        o.pubs = o.subs = 0;
    if (o.probe)
        nconns = 1;
    else if (o.idle)
        nconns = o.idle;
    else
        nconns = o.pubs + o.subs;
    raise_nofile((size_t)nconns + 64);
    if (o.tls_ca) {
        tls_ctx = SSL_CTX_new(TLS_client_method());
        if (!tls_ctx || SSL_CTX_load_verify_locations(tls_ctx, o.tls_ca, NULL) != 1) {
            fprintf(stderr, "lmqbench: --tls %s: cannot load the CA file\n", o.tls_ca);
            return 1;
        }
        SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_PEER, NULL);
        SSL_CTX_set_mode(tls_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    conns = calloc((size_t)nconns, sizeof *conns);
    dirty = calloc((size_t)nconns, sizeof *dirty);
    pubc = calloc((size_t)o.pubs + 1, sizeof *pubc);
    subc = calloc((size_t)o.subs + 1, sizeof *subc);
    match = calloc((size_t)o.pubs * (size_t)o.subs + 1, sizeof *match);
    if (ep < 0 || !conns || !dirty || !pubc || !subc || !match) {
        fprintf(stderr, "lmqbench: setup failed\n");
        return 1;
    }
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        c->fd = -1;
        c->idx = i;
        c->state = CS_DEAD;
        if (o.probe) {
            c->role = ROLE_PROBE;
        } else if (o.idle) {
            c->role = ROLE_IDLE;
        } else if (i < o.subs) { /* subscribers first, so they exist before anything is published */
            c->role = ROLE_SUB;
            subc[i] = c;
            c->tracks = calloc((size_t)o.pubs + 1, sizeof *c->tracks);
            c->rel_pending = calloc(PID_SPACE, 1);
            if (!c->tracks || !c->rel_pending)
                return 1;
            for (int p = 0; p < o.pubs; p++)
                c->tracks[p].max_seq = -1;
        } else {
            int pi = i - o.subs;
            c->role = ROLE_PUB;
            pubc[pi] = c;
            c->topic_len = (size_t)snprintf(c->topic, sizeof c->topic, "%s/%d", o.prefix, pi);
            c->next_pid = 1;
            if (o.qos > 0 && !(c->pid_state = calloc(PID_SPACE, 1)))
                return 1;
            if (o.qos > 0 && o.ack_latency && !(c->sent_at = calloc(PID_SPACE, sizeof *c->sent_at)))
                return 1;
            if (o.sign_keys && sign_envelopes(c, pi) < 0)
                return 1;
        }
    }
    for (int p = 0; p < o.pubs; p++)
        for (int s = 0; s < o.subs; s++)
            match[p * o.subs + s] = topic_match(o.filter, pubc[p]->topic);

    t_setup = now_ns();
    int next_open = 0, nfailed = 0;
    int pending_max = o.idle ? 128 : nconns; /* don't overflow the broker's listen backlog */
    struct epoll_event evs[512];
    uint64_t last_ping_check = t_setup, t_ready = 0;
    bool idle_announced = false;
    int exit_code = 0;

    while (phase != PH_DONE) {
        uint64_t now = now_ns();
        /* open connections, a bounded number at a time */
        int pending = 0;
        if (next_open < nconns) {
            for (int i = 0; i < next_open; i++)
                if (conns[i].state == CS_CONNECTING || conns[i].state == CS_TLS ||
                    conns[i].state == CS_UPGRADE || conns[i].state == CS_CONNACK)
                    pending++;
            /* counting is O(n) per turn only while connecting */
            while (next_open < nconns && pending < pending_max) {
                if (conn_open(&conns[next_open]) == 0)
                    pending++;
                next_open++;
            }
        }
        int timeout = 1;
        if (phase == PH_SETUP && !o.idle && !o.probe)
            timeout = 10;
        if (o.idle && idle_announced)
            timeout = 100;
        if (o.coalesce_us > 0 && (phase == PH_RUN || phase == PH_DRAIN) &&
            turn_packets < o.coalesce_min) {
            /* The last wakeup brought only a few packets: let data pile up
             * so that the next one reads and writes a batch. Without this,
             * against a broker that writes packet by packet, the generator
             * burns a core on tiny loopback segments, competing with the
             * broker for the CPUs. A broker that already sends batches
             * never triggers the nap, so it is not slowed down by it. */
            struct timespec nap = {0, (long)o.coalesce_us * 1000};
            nanosleep(&nap, NULL);
        }
        turn_packets = 0;
        int n = epoll_wait(ep, evs, 512, timeout);
        if (n < 0 && errno != EINTR) {
            fail("epoll_wait: %s", strerror(errno));
            break;
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->state == CS_CONNECTING) {
                conn_connected(c);
                continue;
            }
            if (c->state == CS_TLS) {
                conn_tls_step(c);
                continue;
            }
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                conn_read(c);
            if ((evs[i].events & EPOLLOUT) && c->state != CS_DEAD)
                mark_dirty(c);
        }
        now = now_ns();

        if (o.probe) {
            if (nready == 1) {
                printf("PROBE ok\n");
                return 0;
            }
            if (fatal_msg || conns[0].state == CS_DEAD || now - t_setup > 2000000000ull)
                return 1;
        } else if (o.idle) {
            if (!idle_announced) {
                nfailed = 0;
                for (int i = 0; i < next_open; i++)
                    nfailed += conns[i].state == CS_DEAD;
                if (nready + nfailed >= nconns ||
                    (double)(now - t_setup) / 1e9 > o.setup_timeout) {
                    t_ready = now;
                    printf("IDLE_READY connected=%d failed=%d connect_s=%.2f\n", nready,
                           nconns - nready, (double)(t_ready - t_setup) / 1e9);
                    fflush(stdout);
                    idle_announced = true;
                }
            } else if ((double)(now - t_ready) / 1e9 > o.hold) {
                phase = PH_DONE;
            }
        } else {
            if (phase == PH_SETUP) {
                if (nready == nconns) {
                    phase = PH_RUN;
                    t_run = now;
                    t_last_rx = now;
                } else if ((double)(now - t_setup) / 1e9 > o.setup_timeout) {
                    fail("setup timeout: %s connections not ready", "some");
                }
            }
            if (phase == PH_RUN) {
                bool all_done = o.count > 0;
                for (int p = 0; p < o.pubs; p++) {
                    pub_fill(pubc[p], p, now);
                    if (o.count > 0 && pubc[p]->sent < o.count)
                        all_done = false;
                }
                if (all_done || (double)(now - t_run) / 1e9 >= o.duration || stop_flag) {
                    phase = PH_DRAIN;
                    t_stop = now;
                }
            } else if (phase == PH_DRAIN) {
                uint64_t expected = 0, got = 0, inflight = 0;
                for (int p = 0; p < o.pubs; p++) {
                    inflight += pubc[p]->inflight;
                    for (int s = 0; s < o.subs; s++)
                        expected += match[p * o.subs + s] ? pubc[p]->sent : 0;
                }
                for (int s = 0; s < o.subs; s++)
                    got += subc[s]->delivered;
                if ((got >= expected && inflight == 0) ||
                    now - t_last_rx > 1000000000ull ||
                    (double)(now - t_stop) / 1e9 > o.drain_timeout || stop_flag)
                    phase = PH_DONE;
            }
        }
        if (stop_flag && (o.idle || phase == PH_SETUP))
            phase = PH_DONE;
        if (fatal_msg && !o.idle)
            phase = PH_DONE;
        if (now - last_ping_check > 1000000000ull) {
            send_pings(now);
            last_ping_check = now;
        }
        for (int i = 0; i < ndirty; i++)
            conn_flush(dirty[i]);
        ndirty = 0;
    }

    if (o.probe)
        return 1;
    if (o.idle) {
        int alive = 0;
        for (int i = 0; i < nconns; i++)
            alive += conns[i].state == CS_READY;
        printf("RESULT mode=idle scenario=%s conns=%d connected=%d failed=%d alive_at_end=%d "
               "connect_s=%.2f client_rss_kib=%ld status=%s\n",
               o.scenario, nconns, nready, nconns - nready, alive,
               t_ready ? (double)(t_ready - t_setup) / 1e9 : 0.0, rss_kib("VmRSS"),
               nready == nconns && alive == nready ? "ok" : "error");
        if (nready != nconns) {
            printf("ERROR %s: only %d of %d connections were accepted\n", o.scenario, nready,
                   nconns);
            exit_code = 2;
        } else if (alive != nready) {
            printf("ERROR %s: the broker closed %d of %d idle connections\n", o.scenario,
                   nready - alive, nready);
            exit_code = 2;
        }
        for (int i = 0; i < nconns; i++) {
            if (conns[i].state == CS_READY && !conns[i].ssl && !o.ws) {
                uint8_t d[2] = {0xE0, 0};
                if (write(conns[i].fd, d, 2) < 0) { /* best effort */
                }
            }
            conn_close(&conns[i], NULL);
        }
        return exit_code;
    }

    uint64_t sent = 0, acked = 0, expected = 0, delivered = 0, dups = 0, ooo = 0, foreign = 0;
    for (int p = 0; p < o.pubs; p++) {
        sent += pubc[p]->sent;
        acked += pubc[p]->acked;
        for (int s = 0; s < o.subs; s++)
            expected += match[p * o.subs + s] ? pubc[p]->sent : 0;
    }
    for (int s = 0; s < o.subs; s++) {
        delivered += subc[s]->delivered;
        dups += subc[s]->dups;
        ooo += subc[s]->ooo;
        foreign += subc[s]->foreign;
    }
    uint64_t t_end = t_last_deliver > t_run ? t_last_deliver : (t_stop ? t_stop : now_ns());
    double secs = t_run ? (double)(t_end - t_run) / 1e9 : 0;
    double rate = secs > 0 ? (double)(o.ack_latency ? acked : delivered) / secs : 0;
    uint64_t dropped = expected > delivered ? expected - delivered : 0;
    bool ok = !fatal_msg && phase == PH_DONE && t_run;
    if (o.qos > 0 && (delivered != expected || dups > 0 || acked != sent))
        ok = false;
    printf("RESULT mode=load scenario=%s qos=%d pubs=%d subs=%d payload=%zu window=%u "
           "e2e_window=%u rate_limit=%.0f coalesce_us=%d sent=%" PRIu64 " acked=%" PRIu64 " expected=%" PRIu64
           " delivered=%" PRIu64 " dropped=%" PRIu64 " dups=%" PRIu64 " ooo=%" PRIu64
           " foreign=%" PRIu64 " secs=%.3f msgs_per_s=%.0f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f "
           "client_rss_kib=%ld client_cpu_s=%.2f status=%s\n",
           o.scenario, o.qos, o.pubs, o.subs, o.payload, o.window, o.e2e_window, o.rate, o.coalesce_us, sent,
           acked, expected, delivered, dropped, dups, ooo, foreign, secs, rate,
           percentile_ms(0.50), percentile_ms(0.99), (double)lat_max / 1e6, rss_kib("VmHWM"),
           cpu_secs(), ok ? "ok" : "error");
    if (fatal_msg) {
        printf("ERROR %s: %s\n", o.scenario, fatal_msg);
        exit_code = 3;
    } else if (!ok) {
        printf("ERROR %s: QoS %d delivered %" PRIu64 " of %" PRIu64 " expected (sent %" PRIu64
               " x matching subscribers), %" PRIu64 " duplicates, %" PRIu64 " of %" PRIu64
               " acknowledged\n",
               o.scenario, o.qos, delivered, expected, sent, dups, acked, sent);
        exit_code = 2;
    }
    fflush(stdout);
    for (int i = 0; i < nconns; i++) {
        if (conns[i].state == CS_READY && !conns[i].ssl && !o.ws) {
            uint8_t d[2] = {0xE0, 0};
            if (write(conns[i].fd, d, 2) < 0) { /* best effort */
            }
        }
        conn_close(&conns[i], NULL);
    }
    return exit_code;
}
