/* One Raft node on libraft 0.22 (see raft_node.h). Owns the struct raft,
 * its libuv disk I/O (raft_uv) and TCP transport (raft_uv_tcp); wraps the
 * application's FSM so that libraft only ever sees framed, padded entries
 * and an apply that cannot fail. The frame (16 bytes, little endian):
 *
 *   0  "LMQR"            magic
 *   4  u8  version = 1
 *   5  u8  flags   = 0   (reserved: decoders refuse other values)
 *   6  u16 reserved = 0
 *   8  u32 payload length
 *  12  u32 CRC-32C of the payload
 *  16  payload, then zero bytes up to a multiple of 8
 *
 * libraft has no state-change callback: a timer polls state, term and
 * leader every heartbeat interval and reports changes (on_state). */
#include "cluster/raft_node.h"

#include "cluster/raft_tcp.h"
#include "cluster/raft_tls.h"
#include "util/crc32c.h"
#include "util/log.h"

#include <raft.h>
#include <raft/uv.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define RN__MAGIC "LMQR"
#define RN__VERSION 1

struct lmq_raft_node {
    uv_loop_t *loop;
    struct raft raft;
    struct raft_io io;
    struct raft_uv_transport transport;
    struct raft_fsm rfsm;
    uv_timer_t poll;
    struct lmq_raft_node_options o; /* members/dir point into the copies below */
    struct lmq_raft_member members[LMQ_RAFT_MAX_MEMBERS];
    char dir[PATH_MAX];
    char address[LMQ_RAFT_ADDRESS_MAX];
    bool tls; /* transport is cluster/raft_tls, else raft_uv_tcp */
    size_t inflight;
    bool stopping;
    /* last reported state */
    int rep_state;
    uint64_t rep_term, rep_leader;
    uint64_t frame_errors;
    void (*done)(void *);
    void *done_ctx;
};

/* One proposal in flight. */
struct rn__proposal {
    struct raft_apply req; /* req.data = this */
    struct lmq_raft_node *n;
    lmq_raft_propose_cb cb;
    void *ctx;
};

/* ------------------------------------------------------------------ */
/* Frame codec. */

static void rn__put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t rn__get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

size_t lmq_raft_frame_len(size_t len)
{
    if (len > LMQ_RAFT_MAX_PAYLOAD)
        return 0;
    return (LMQ_RAFT_FRAME_HEADER + len + 7) & ~(size_t)7;
}

void lmq_raft_frame_encode(uint8_t *out, const void *data, size_t len)
{
    size_t total = lmq_raft_frame_len(len);
    memcpy(out, RN__MAGIC, 4);
    out[4] = RN__VERSION;
    out[5] = 0;
    out[6] = out[7] = 0;
    rn__put32(out + 8, (uint32_t)len);
    rn__put32(out + 12, lmq_crc32c(0, data, len));
    if (len > 0)
        memcpy(out + LMQ_RAFT_FRAME_HEADER, data, len);
    memset(out + LMQ_RAFT_FRAME_HEADER + len, 0, total - LMQ_RAFT_FRAME_HEADER - len);
}

int lmq_raft_frame_decode(const uint8_t *buf, size_t len, const uint8_t **payload,
                          size_t *payload_len)
{
    if (len < LMQ_RAFT_FRAME_HEADER || len % 8 != 0 || memcmp(buf, RN__MAGIC, 4) != 0 ||
        buf[4] != RN__VERSION || buf[5] != 0 || buf[6] != 0 || buf[7] != 0)
        return LMQ_RAFT_ERR_FRAME;
    uint32_t plen = rn__get32(buf + 8);
    if (plen > LMQ_RAFT_MAX_PAYLOAD || lmq_raft_frame_len(plen) != len)
        return LMQ_RAFT_ERR_FRAME;
    for (size_t i = LMQ_RAFT_FRAME_HEADER + plen; i < len; i++)
        if (buf[i] != 0)
            return LMQ_RAFT_ERR_FRAME;
    if (lmq_crc32c(0, buf + LMQ_RAFT_FRAME_HEADER, plen) != rn__get32(buf + 12))
        return LMQ_RAFT_ERR_FRAME;
    *payload = buf + LMQ_RAFT_FRAME_HEADER;
    *payload_len = plen;
    return 0;
}

int lmq_raft_address_check(const char *address)
{
    size_t len = strlen(address);
    const char *colon = strrchr(address, ':');
    if (len == 0 || len >= LMQ_RAFT_ADDRESS_MAX || colon == NULL || colon == address ||
        memchr(address, ':', (size_t)(colon - address)) != NULL)
        return -1;
    const char *p = colon + 1;
    if (*p == '\0' || strlen(p) > 5)
        return -1;
    unsigned long port = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        port = port * 10 + (unsigned long)(*p - '0');
    }
    if (port < 1 || port > 65535)
        return -1;
    for (p = address; p < colon; p++)
        if (*p <= ' ' || *p == '/' || (unsigned char)*p >= 0x7f)
            return -1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Names and errors. */

const char *lmq_raft_strerror(int err)
{
    switch (err) {
    case 0:
        return "ok";
    case LMQ_RAFT_ERR_NOT_LEADER:
        return "not the leader";
    case LMQ_RAFT_ERR_LOST:
        return "leadership lost before commit (outcome unknown)";
    case LMQ_RAFT_ERR_TOO_BIG:
        return "command too big";
    case LMQ_RAFT_ERR_SHUTDOWN:
        return "node shutting down";
    case LMQ_RAFT_ERR_BUSY:
        return "too many proposals in flight";
    case LMQ_RAFT_ERR_CONFIG:
        return "bad cluster configuration";
    case LMQ_RAFT_ERR_NOMEM:
        return "out of memory";
    case LMQ_RAFT_ERR_IO:
        return "raft I/O error";
    case LMQ_RAFT_ERR_FRAME:
        return "malformed raft entry";
    case LMQ_RAFT_ERR_BADID:
        return "unknown node id, or already a member";
    case LMQ_RAFT_ERR_CHANGE:
        return "another membership change is in progress";
    case LMQ_RAFT_ERR_TRANSFER:
        return "leadership did not move to the node asked for";
    default:
        return "unknown raft error";
    }
}

const char *lmq_raft_state_name(int state)
{
    switch (state) {
    case LMQ_RAFT_FOLLOWER:
        return "follower";
    case LMQ_RAFT_CANDIDATE:
        return "candidate";
    case LMQ_RAFT_LEADER:
        return "leader";
    default:
        return "unavailable";
    }
}

/* libraft's error codes to ours. */
static int rn__err(int rv)
{
    switch (rv) {
    case 0:
        return 0;
    case RAFT_NOTLEADER:
        return LMQ_RAFT_ERR_NOT_LEADER;
    case RAFT_LEADERSHIPLOST:
        return LMQ_RAFT_ERR_LOST;
    case RAFT_SHUTDOWN:
    case RAFT_CANCELED:
        return LMQ_RAFT_ERR_SHUTDOWN;
    case RAFT_NOMEM:
        return LMQ_RAFT_ERR_NOMEM;
    case RAFT_TOOBIG:
        return LMQ_RAFT_ERR_TOO_BIG;
    case RAFT_BADID:
    case RAFT_DUPLICATEID:
    case RAFT_DUPLICATEADDRESS:
    case RAFT_NOTFOUND:
    case RAFT_BADROLE:
        return LMQ_RAFT_ERR_BADID;
    case RAFT_CANTCHANGE:
        return LMQ_RAFT_ERR_CHANGE;
    default:
        return LMQ_RAFT_ERR_IO;
    }
}

/* ------------------------------------------------------------------ */
/* The FSM libraft sees. */

static int rn__fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    struct lmq_raft_node *n = fsm->data;
    /* libraft sets last_applied after this returns: this entry's index is
     * the next one. */
    uint64_t index = (uint64_t)raft_last_applied(&n->raft) + 1;
    const uint8_t *payload;
    size_t plen;
    int rc = lmq_raft_frame_decode(buf->base, buf->len, &payload, &plen);
    if (rc != 0) {
        /* Never return non-zero to libraft (that stalls the FSM forever):
         * skip, and say so loudly. */
        n->frame_errors++;
        LMQ_ERROR("raft: node %llu: entry %llu is not a valid frame (%zu bytes); skipped",
                  (unsigned long long)n->o.id, (unsigned long long)index, buf->len);
        *result = (void *)(intptr_t)LMQ_RAFT_ERR_FRAME;
        return 0;
    }
    int res = n->o.fsm.apply(n->o.fsm_ctx, index, payload, plen);
    *result = (void *)(intptr_t)res;
    return 0;
}

static int rn__fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct lmq_raft_node *n = fsm->data;
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = n->o.fsm.snapshot(n->o.fsm_ctx, &data, &len);
    if (rc != 0) {
        free(data);
        return RAFT_BUSY;
    }
    /* libraft frees what it is given with raft_free: copy into its heap. */
    struct raft_buffer *b = raft_malloc(sizeof *b);
    void *base = raft_malloc(len > 0 ? len : 1);
    if (b == NULL || base == NULL) {
        raft_free(b);
        raft_free(base);
        free(data);
        return RAFT_NOMEM;
    }
    if (len > 0)
        memcpy(base, data, len);
    free(data);
    b->base = base;
    b->len = len;
    *bufs = b;
    *n_bufs = 1;
    LMQ_INFO("raft: node %llu: snapshot at index %llu (%zu bytes)", (unsigned long long)n->o.id,
             (unsigned long long)raft_last_applied(&n->raft), len);
    return 0;
}

static int rn__fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    struct lmq_raft_node *n = fsm->data;
    if (n->o.fsm.restore == NULL) {
        LMQ_ERROR("raft: node %llu: got a snapshot but the state machine cannot restore one",
                  (unsigned long long)n->o.id);
        return RAFT_INVALID;
    }
    int rc = n->o.fsm.restore(n->o.fsm_ctx, buf->base, buf->len);
    if (rc != 0) {
        LMQ_ERROR("raft: node %llu: snapshot restore failed (%d)", (unsigned long long)n->o.id, rc);
        return RAFT_CORRUPT;
    }
    /* On success the buffer is ours to free. */
    raft_free(buf->base);
    return 0;
}

/* ------------------------------------------------------------------ */
/* State reporting. */

static int rn__state_of(struct lmq_raft_node *n)
{
    if (n->stopping)
        return LMQ_RAFT_UNAVAILABLE;
    switch (raft_state(&n->raft)) {
    case RAFT_FOLLOWER:
        return LMQ_RAFT_FOLLOWER;
    case RAFT_CANDIDATE:
        return LMQ_RAFT_CANDIDATE;
    case RAFT_LEADER:
        return LMQ_RAFT_LEADER;
    default:
        return LMQ_RAFT_UNAVAILABLE;
    }
}

static void rn__poll_cb(uv_timer_t *t)
{
    struct lmq_raft_node *n = t->data;
    int st = rn__state_of(n);
    uint64_t term = raft_current_term(&n->raft);
    uint64_t leader;
    lmq_raft_leader(n, &leader, NULL);
    if (st == n->rep_state && term == n->rep_term && leader == n->rep_leader)
        return;
    if (st != n->rep_state || leader != n->rep_leader)
        LMQ_INFO("raft: node %llu: %s, term %llu, leader %llu", (unsigned long long)n->o.id,
                 lmq_raft_state_name(st), (unsigned long long)term, (unsigned long long)leader);
    n->rep_state = st;
    n->rep_term = term;
    n->rep_leader = leader;
    if (n->o.on_state != NULL)
        n->o.on_state(n->o.state_ctx, st, term, leader);
}

/* ------------------------------------------------------------------ */
/* Lifecycle. */

static int rn__mkdir_p(const char *path)
{
    char tmp[PATH_MAX];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof tmp)
        return -1;
    memcpy(tmp, path, len + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

static int rn__check_options(const struct lmq_raft_node_options *o, const char **self_addr)
{
    if (o->id == 0 || o->dir == NULL || o->dir[0] == '\0' || o->members == NULL ||
        o->n_members == 0 || o->n_members > LMQ_RAFT_MAX_MEMBERS || o->fsm.apply == NULL ||
        (o->fsm.snapshot != NULL && o->fsm.restore == NULL) ||
        o->max_payload > LMQ_RAFT_MAX_PAYLOAD) {
        LMQ_ERROR("raft: invalid node options");
        return LMQ_RAFT_ERR_CONFIG;
    }
    *self_addr = NULL;
    for (size_t i = 0; i < o->n_members; i++) {
        const struct lmq_raft_member *m = &o->members[i];
        if (m->id == 0 || lmq_raft_address_check(m->address) != 0) {
            LMQ_ERROR("raft: member %llu: bad id or address '%s'", (unsigned long long)m->id,
                      m->address);
            return LMQ_RAFT_ERR_CONFIG;
        }
        for (size_t j = 0; j < i; j++)
            if (o->members[j].id == m->id || strcmp(o->members[j].address, m->address) == 0) {
                LMQ_ERROR("raft: member %llu: duplicate id or address", (unsigned long long)m->id);
                return LMQ_RAFT_ERR_CONFIG;
            }
        if (m->id == o->id)
            *self_addr = m->address;
    }
    if (*self_addr == NULL) {
        LMQ_ERROR("raft: node id %llu is not one of the %zu members (a joining node lists "
                  "itself too)",
                  (unsigned long long)o->id, o->n_members);
        return LMQ_RAFT_ERR_CONFIG;
    }
    if (o->bind_address != NULL && lmq_raft_address_check(o->bind_address) != 0) {
        LMQ_ERROR("raft: bad bind address '%s'", o->bind_address);
        return LMQ_RAFT_ERR_CONFIG;
    }
    return 0;
}

/* Bootstraps DIR with the static member list when it holds no Raft state
 * yet; a directory that does is left alone (its configuration, possibly
 * changed since by add/remove, wins). */
static int rn__bootstrap(struct lmq_raft_node *n)
{
    struct raft_configuration conf;
    raft_configuration_init(&conf);
    int rv = 0;
    for (size_t i = 0; i < n->o.n_members && rv == 0; i++)
        rv = raft_configuration_add(&conf, n->members[i].id, n->members[i].address, RAFT_VOTER);
    if (rv == 0)
        rv = raft_bootstrap(&n->raft, &conf);
    raft_configuration_close(&conf);
    if (rv == RAFT_CANTBOOTSTRAP)
        return 0;
    if (rv != 0) {
        LMQ_ERROR("raft: bootstrap in %s: %s", n->dir, raft_strerror(rv));
        return LMQ_RAFT_ERR_IO;
    }
    LMQ_INFO("raft: node %llu: bootstrapped %s with %zu members", (unsigned long long)n->o.id,
             n->dir, n->o.n_members);
    return 0;
}

static void rn__free(struct lmq_raft_node *n)
{
    void (*done)(void *) = n->done;
    void *ctx = n->done_ctx;
    free(n);
    if (done != NULL)
        done(ctx);
}

static void rn__poll_closed(uv_handle_t *h)
{
    rn__free(h->data);
}

unsigned lmq_raft_node_stuck_ms(const struct lmq_raft_node *n)
{
    return lmq_tcp_stuck_timeout_ms(n->o.election_timeout_ms);
}

static void rn__transport_free(struct lmq_raft_node *n)
{
    if (n->tls)
        lmq_raft_tls_close(&n->transport);
    else
        lmq_raft_tcp_close(&n->transport);
}

static void rn__raft_closed(struct raft *r)
{
    struct lmq_raft_node *n = r->data;
    raft_uv_close(&n->io);
    rn__transport_free(n);
    uv_close((uv_handle_t *)&n->poll, rn__poll_closed);
}

int lmq_raft_node_start(uv_loop_t *loop, const struct lmq_raft_node_options *o,
                        struct lmq_raft_node **out)
{
    const char *self_addr;
    int rc = rn__check_options(o, &self_addr);
    if (rc != 0)
        return rc;
    struct lmq_raft_node *n = calloc(1, sizeof *n);
    if (n == NULL)
        return LMQ_RAFT_ERR_NOMEM;
    n->loop = loop;
    n->o = *o;
    memcpy(n->members, o->members, o->n_members * sizeof *o->members);
    n->o.members = n->members;
    if (strlen(o->dir) >= sizeof n->dir) {
        free(n);
        return LMQ_RAFT_ERR_CONFIG;
    }
    strcpy(n->dir, o->dir);
    n->o.dir = n->dir;
    snprintf(n->address, sizeof n->address, "%s", self_addr);
    n->o.bind_address = NULL;
    if (n->o.election_timeout_ms == 0)
        n->o.election_timeout_ms = 1000;
    if (n->o.heartbeat_timeout_ms == 0)
        n->o.heartbeat_timeout_ms = 100;
    if (n->o.snapshot_threshold == 0)
        n->o.snapshot_threshold = 65536;
    if (n->o.snapshot_trailing == 0)
        n->o.snapshot_trailing = 32768;
    if (n->o.max_payload == 0)
        n->o.max_payload = 16u * 1024 * 1024;
    if (n->o.max_inflight == 0)
        n->o.max_inflight = 4096;

    if (rn__mkdir_p(n->dir) != 0) {
        LMQ_ERROR("raft: mkdir %s: %s", n->dir, strerror(errno));
        free(n);
        return LMQ_RAFT_ERR_IO;
    }
    int rv;
    if (o->tls_certfile != NULL || o->tls_keyfile != NULL || o->tls_cafile != NULL) {
        struct lmq_raft_tls_options to = {
            .certfile = o->tls_certfile,
            .keyfile = o->tls_keyfile,
            .cafile = o->tls_cafile,
            .members = n->members,
            .n_members = n->o.n_members,
            .bind_address = o->bind_address,
            .handshake_ms = o->tls_handshake_ms,
            .stuck_ms = lmq_tcp_stuck_timeout_ms(n->o.election_timeout_ms),
        };
        char err[512];
        if (lmq_raft_tls_init(&n->transport, loop, &to, err, sizeof err) != 0) {
            LMQ_ERROR("raft: %s", err);
            free(n);
            return LMQ_RAFT_ERR_CONFIG;
        }
        n->tls = true;
    } else {
        /* libraft checks the struct versions the caller fills in. */
        n->transport.version = 1;
        n->transport.data = n;
        rv = lmq_raft_tcp_init(&n->transport, loop,
                               lmq_tcp_stuck_timeout_ms(n->o.election_timeout_ms));
        if (rv != 0) {
            LMQ_ERROR("raft: transport: %s", raft_strerror(rv));
            free(n);
            return rn__err(rv);
        }
        LMQ_WARN("raft: node %llu: cluster traffic is plain TCP (no cluster TLS configured)",
                 (unsigned long long)o->id);
    }
    if (!n->tls && o->bind_address != NULL &&
        (rv = lmq_raft_tcp_set_bind_address(&n->transport, o->bind_address)) != 0) {
        LMQ_ERROR("raft: bind address %s: %s", o->bind_address, raft_strerror(rv));
        rc = LMQ_RAFT_ERR_CONFIG;
        goto fail_transport;
    }
    n->io.version = 2;
    n->io.data = n;
    rv = raft_uv_init(&n->io, loop, n->dir, &n->transport);
    if (rv != 0) {
        LMQ_ERROR("raft: disk I/O in %s: %s", n->dir, n->io.errmsg);
        rc = rn__err(rv);
        goto fail_transport;
    }
    n->rfsm.version = 1;
    n->rfsm.data = n;
    n->rfsm.apply = rn__fsm_apply;
    n->rfsm.snapshot = o->fsm.snapshot != NULL ? rn__fsm_snapshot : NULL;
    n->rfsm.restore = rn__fsm_restore;
    rv = raft_init(&n->raft, &n->io, &n->rfsm, o->id, n->address);
    if (rv != 0) {
        LMQ_ERROR("raft: init: %s", raft_strerror(rv));
        rc = rn__err(rv);
        goto fail_io;
    }
    n->raft.data = n;
    raft_set_election_timeout(&n->raft, n->o.election_timeout_ms);
    raft_set_heartbeat_timeout(&n->raft, n->o.heartbeat_timeout_ms);
    raft_set_snapshot_threshold(&n->raft, n->o.snapshot_threshold);
    raft_set_snapshot_trailing(&n->raft, n->o.snapshot_trailing);
    raft_set_pre_vote(&n->raft, true);
    if (!o->join && (rc = rn__bootstrap(n)) != 0)
        goto fail_raft;
    rv = raft_start(&n->raft);
    if (rv != 0) {
        LMQ_ERROR("raft: start in %s: %s (%s)", n->dir, raft_strerror(rv), raft_errmsg(&n->raft));
        rc = rn__err(rv);
        goto fail_raft;
    }
    uv_timer_init(loop, &n->poll);
    n->poll.data = n;
    uv_timer_start(&n->poll, rn__poll_cb, n->o.heartbeat_timeout_ms, n->o.heartbeat_timeout_ms);
    LMQ_INFO("raft: node %llu listening on %s (%s), data in %s", (unsigned long long)o->id,
             n->address, n->tls ? "TLS" : "plain TCP", n->dir);
    *out = n;
    return 0;

fail_raft:
    /* raft_close on a node that never started still closes the I/O
     * asynchronously: run the normal close path, with no done callback. */
    n->stopping = true;
    uv_timer_init(loop, &n->poll);
    n->poll.data = n;
    raft_close(&n->raft, rn__raft_closed);
    return rc;
fail_io:
    raft_uv_close(&n->io);
fail_transport:
    rn__transport_free(n);
    free(n);
    return rc;
}

void lmq_raft_node_stop(struct lmq_raft_node *n, void (*done)(void *ctx), void *ctx)
{
    n->stopping = true;
    n->done = done;
    n->done_ctx = ctx;
    uv_timer_stop(&n->poll);
    raft_close(&n->raft, rn__raft_closed);
}

/* ------------------------------------------------------------------ */
/* Proposals. */

static void rn__apply_cb(struct raft_apply *req, int status, void *result)
{
    struct rn__proposal *p = req->data;
    struct lmq_raft_node *n = p->n;
    n->inflight--;
    int st = rn__err(status);
    int res = (int)(intptr_t)result;
    if (st == 0 && res == LMQ_RAFT_ERR_FRAME)
        st = LMQ_RAFT_ERR_FRAME; /* cannot happen for our own frames */
    if (p->cb != NULL)
        p->cb(p->ctx, st, st == 0 ? (uint64_t)req->index : 0, st == 0 ? res : 0);
    free(p);
}

int lmq_raft_propose(struct lmq_raft_node *n, const void *data, size_t len, lmq_raft_propose_cb cb,
                     void *ctx)
{
    if (n->stopping)
        return LMQ_RAFT_ERR_SHUTDOWN;
    if (len == 0 || len > n->o.max_payload)
        return LMQ_RAFT_ERR_TOO_BIG;
    if (raft_state(&n->raft) != RAFT_LEADER)
        return LMQ_RAFT_ERR_NOT_LEADER;
    if (n->inflight >= n->o.max_inflight)
        return LMQ_RAFT_ERR_BUSY;
    size_t flen = lmq_raft_frame_len(len);
    struct rn__proposal *p = calloc(1, sizeof *p);
    /* raft_malloc is malloc by default: 16-byte aligned, as entries must be
     * 8-byte aligned. libraft owns the buffer once raft_apply accepted it. */
    uint8_t *frame = raft_malloc(flen);
    if (p == NULL || frame == NULL) {
        free(p);
        raft_free(frame);
        return LMQ_RAFT_ERR_NOMEM;
    }
    lmq_raft_frame_encode(frame, data, len);
    p->n = n;
    p->cb = cb;
    p->ctx = ctx;
    p->req.data = p;
    struct raft_buffer buf = {.base = frame, .len = flen};
    int rv = raft_apply(&n->raft, &p->req, &buf, 1, rn__apply_cb);
    if (rv != 0) {
        raft_free(frame);
        free(p);
        return rn__err(rv);
    }
    n->inflight++;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Queries. */

void lmq_raft_leader(struct lmq_raft_node *n, uint64_t *id, const char **address)
{
    raft_id lid = 0;
    const char *addr = NULL;
    if (!n->stopping)
        raft_leader(&n->raft, &lid, &addr);
    if (id != NULL)
        *id = lid;
    if (address != NULL)
        *address = lid != 0 ? addr : NULL;
}

int lmq_raft_state(struct lmq_raft_node *n)
{
    return rn__state_of(n);
}

uint64_t lmq_raft_term(struct lmq_raft_node *n)
{
    return raft_current_term(&n->raft);
}

uint64_t lmq_raft_id(const struct lmq_raft_node *n)
{
    return n->o.id;
}

uint64_t lmq_raft_last_applied(struct lmq_raft_node *n)
{
    return raft_last_applied(&n->raft);
}

uint64_t lmq_raft_commit_index(struct lmq_raft_node *n)
{
    return raft_commit_index(&n->raft);
}

size_t lmq_raft_inflight(const struct lmq_raft_node *n)
{
    return n->inflight;
}

static void rn__barrier_cb(struct raft_barrier *req, int status)
{
    (void)status;
    free(req);
}

int lmq_raft_barrier(struct lmq_raft_node *n)
{
    if (n->stopping)
        return LMQ_RAFT_ERR_SHUTDOWN;
    if (raft_state(&n->raft) != RAFT_LEADER)
        return LMQ_RAFT_ERR_NOT_LEADER;
    struct raft_barrier *req = malloc(sizeof *req);
    if (req == NULL)
        return LMQ_RAFT_ERR_NOMEM;
    int rv = raft_barrier(&n->raft, req, rn__barrier_cb);
    if (rv != 0) {
        free(req);
        return rn__err(rv);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Membership. */

struct rn__change {
    union {
        struct raft_change change;
        struct raft_transfer transfer;
    } u;
    struct lmq_raft_node *n;
    uint64_t id;
    bool promote; /* add: raft_add done, raft_assign(VOTER) next */
    lmq_raft_change_cb cb;
    void *ctx;
};

static void rn__change_done(struct rn__change *ch, int status)
{
    if (ch->cb != NULL)
        ch->cb(ch->ctx, status);
    free(ch);
}

static void rn__change_cb(struct raft_change *req, int status)
{
    struct rn__change *ch = req->data;
    struct lmq_raft_node *n = ch->n;
    if (status == 0 && ch->promote && !n->stopping) {
        ch->promote = false;
        memset(&ch->u, 0, sizeof ch->u);
        ch->u.change.data = ch;
        int rv = raft_assign(&n->raft, &ch->u.change, ch->id, RAFT_VOTER, rn__change_cb);
        if (rv == 0)
            return;
        status = rv;
    }
    if (status == 0)
        LMQ_INFO("raft: node %llu: membership change for node %llu committed",
                 (unsigned long long)n->o.id, (unsigned long long)ch->id);
    rn__change_done(ch, rn__err(status));
}

static struct rn__change *rn__change_new(struct lmq_raft_node *n, uint64_t id,
                                         lmq_raft_change_cb cb, void *ctx)
{
    struct rn__change *ch = calloc(1, sizeof *ch);
    if (ch == NULL)
        return NULL;
    ch->n = n;
    ch->id = id;
    ch->cb = cb;
    ch->ctx = ctx;
    ch->u.change.data = ch;
    return ch;
}

static int rn__leader_check(struct lmq_raft_node *n)
{
    if (n->stopping)
        return LMQ_RAFT_ERR_SHUTDOWN;
    if (raft_state(&n->raft) != RAFT_LEADER)
        return LMQ_RAFT_ERR_NOT_LEADER;
    return 0;
}

int lmq_raft_add(struct lmq_raft_node *n, uint64_t id, const char *address, lmq_raft_change_cb cb,
                 void *ctx)
{
    int rc = rn__leader_check(n);
    if (rc != 0)
        return rc;
    if (id == 0 || lmq_raft_address_check(address) != 0)
        return LMQ_RAFT_ERR_BADID;
    struct rn__change *ch = rn__change_new(n, id, cb, ctx);
    if (ch == NULL)
        return LMQ_RAFT_ERR_NOMEM;
    ch->promote = true;
    int rv = raft_add(&n->raft, &ch->u.change, id, address, rn__change_cb);
    if (rv != 0) {
        free(ch);
        return rn__err(rv);
    }
    return 0;
}

int lmq_raft_remove(struct lmq_raft_node *n, uint64_t id, lmq_raft_change_cb cb, void *ctx)
{
    int rc = rn__leader_check(n);
    if (rc != 0)
        return rc;
    struct rn__change *ch = rn__change_new(n, id, cb, ctx);
    if (ch == NULL)
        return LMQ_RAFT_ERR_NOMEM;
    int rv = raft_remove(&n->raft, &ch->u.change, id, rn__change_cb);
    if (rv != 0) {
        free(ch);
        return rn__err(rv);
    }
    return 0;
}

static void rn__transfer_cb(struct raft_transfer *req)
{
    struct rn__change *ch = req->data;
    raft_id leader = 0;
    const char *addr;
    if (!ch->n->stopping)
        raft_leader(&ch->n->raft, &leader, &addr);
    bool moved = ch->id != 0 ? leader == ch->id : leader != 0 && leader != ch->n->o.id;
    rn__change_done(ch, moved ? 0 : LMQ_RAFT_ERR_TRANSFER);
}

int lmq_raft_transfer(struct lmq_raft_node *n, uint64_t id, lmq_raft_change_cb cb, void *ctx)
{
    int rc = rn__leader_check(n);
    if (rc != 0)
        return rc;
    struct rn__change *ch = rn__change_new(n, id, cb, ctx);
    if (ch == NULL)
        return LMQ_RAFT_ERR_NOMEM;
    ch->u.transfer.data = ch;
    int rv = raft_transfer(&n->raft, &ch->u.transfer, id, rn__transfer_cb);
    if (rv != 0) {
        free(ch);
        return rn__err(rv);
    }
    return 0;
}

size_t lmq_raft_members(struct lmq_raft_node *n, struct lmq_raft_member_info *out, size_t cap)
{
    const struct raft_configuration *c = &n->raft.configuration;
    for (unsigned i = 0; i < c->n && i < cap; i++) {
        out[i].id = c->servers[i].id;
        snprintf(out[i].address, sizeof out[i].address, "%s", c->servers[i].address);
        out[i].role = c->servers[i].role;
    }
    return c->n;
}
