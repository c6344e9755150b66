/* Tests of src/cluster/raft_node.c: the entry frame codec, and real
 * three-node clusters on loopback TCP driven by one libuv loop (libraft's
 * own disk I/O and transport, data in a temporary directory): one leader
 * is elected, proposals are applied on every node in the same order with
 * exactly the proposed bytes, a follower's proposal is refused with the
 * leader's address to forward to, the cluster goes on after its leader
 * stops, and a restarted follower catches up by log replication and by
 * snapshot + log; over the TLS transport (cluster/raft_tls.c, certificates
 * made with the openssl command) the same works, and a node whose
 * certificate is from another CA or names a non-member never receives an
 * entry. Every wait is bounded (WAIT_MS); a test that runs out of time
 * fails. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "cluster/raft_node.h"
#include "util/crc32c.h"
#include "util/log.h"

#define WAIT_MS 30000
#define N_NODES 3
#define MAX_APPLIED 2048

/* LeakSanitizer (make asan): libraft 0.22.1 sometimes leaks buffers it
 * allocated itself in a libuv read callback (every frame of those reports
 * is inside libraft.so or libuv; whether it happens depends on timing
 * between the in-process nodes, not on this code). Leaks whose stack
 * passes through libraft are suppressed; that would also hide a leak made
 * by a callback libraft calls (apply, snapshot), so those stay simple. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libraft.so\n";
}

/* ------------------------------------------------------------------ */
/* Frame codec and addresses. */

static void test_frame_roundtrip(void **state)
{
    (void)state;
    uint8_t data[100], buf[200];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 7 + 1);
    for (size_t len = 0; len <= sizeof data; len++) {
        size_t flen = lmq_raft_frame_len(len);
        assert_int_equal(flen % 8, 0);
        assert_true(flen >= LMQ_RAFT_FRAME_HEADER + len && flen < LMQ_RAFT_FRAME_HEADER + len + 8);
        memset(buf, 0xAA, sizeof buf);
        lmq_raft_frame_encode(buf, data, len);
        const uint8_t *p;
        size_t plen;
        assert_int_equal(lmq_raft_frame_decode(buf, flen, &p, &plen), 0);
        assert_int_equal(plen, len);
        assert_ptr_equal(p, buf + LMQ_RAFT_FRAME_HEADER);
        assert_memory_equal(p, data, len);
    }
    assert_int_equal(lmq_raft_frame_len(LMQ_RAFT_MAX_PAYLOAD + 1), 0);
}

static void test_frame_defects(void **state)
{
    (void)state;
    uint8_t data[13] = "hello, world";
    uint8_t buf[64];
    size_t flen = lmq_raft_frame_len(sizeof data);
    assert_int_equal(flen, 32);
    const uint8_t *p;
    size_t plen;
    /* Each defect on its own: magic, version, flags, reserved, length,
     * CRC, payload, padding, short or unpadded buffer. */
    size_t flip[] = {0, 4, 5, 6, 8, 12, 16, 29, 31};
    for (size_t i = 0; i < sizeof flip / sizeof flip[0]; i++) {
        lmq_raft_frame_encode(buf, data, sizeof data);
        buf[flip[i]] ^= 0x01;
        assert_int_equal(lmq_raft_frame_decode(buf, flen, &p, &plen), LMQ_RAFT_ERR_FRAME);
    }
    lmq_raft_frame_encode(buf, data, sizeof data);
    assert_int_equal(lmq_raft_frame_decode(buf, flen - 8, &p, &plen), LMQ_RAFT_ERR_FRAME);
    assert_int_equal(lmq_raft_frame_decode(buf, flen - 1, &p, &plen), LMQ_RAFT_ERR_FRAME);
    assert_int_equal(lmq_raft_frame_decode(buf, 8, &p, &plen), LMQ_RAFT_ERR_FRAME);
    memset(buf + flen, 0, 8);
    assert_int_equal(lmq_raft_frame_decode(buf, flen + 8, &p, &plen), LMQ_RAFT_ERR_FRAME);
    assert_int_equal(lmq_raft_frame_decode(buf, flen, &p, &plen), 0);
}

static void test_address_check(void **state)
{
    (void)state;
    assert_int_equal(lmq_raft_address_check("127.0.0.1:9001"), 0);
    assert_int_equal(lmq_raft_address_check("node-a.example:65535"), 0);
    assert_int_equal(lmq_raft_address_check("127.0.0.1"), -1);
    assert_int_equal(lmq_raft_address_check(":9001"), -1);
    assert_int_equal(lmq_raft_address_check("127.0.0.1:"), -1);
    assert_int_equal(lmq_raft_address_check("127.0.0.1:0"), -1);
    assert_int_equal(lmq_raft_address_check("127.0.0.1:65536"), -1);
    assert_int_equal(lmq_raft_address_check("127.0.0.1:9x"), -1);
    assert_int_equal(lmq_raft_address_check("::1:9001"), -1);
    assert_int_equal(lmq_raft_address_check("a b:9001"), -1);
}

/* ------------------------------------------------------------------ */
/* A test cluster. */

struct applied {
    uint64_t index;
    uint8_t *data;
    size_t len;
};

struct tnode {
    struct lmq_raft_node *rn; /* NULL while stopped */
    uint64_t id;
    char dir[300];
    struct applied applied[MAX_APPLIED];
    size_t n_applied;
    uint64_t last_index; /* last applied index seen (monotonic check) */
    int snapshots, restores;
    bool stopped_done;
    bool no_snapshots; /* never snapshot locally (see follower_restart) */
    bool join;         /* start as a node joining an existing cluster */
};

struct cluster {
    bool tls; /* cluster traffic over cluster/raft_tls, files in root */
    char cert[N_NODES][300], key[N_NODES][300], ca[300];
    uv_loop_t loop;
    uv_timer_t tick;
    char root[256];
    struct lmq_raft_member members[N_NODES];
    struct tnode nodes[N_NODES];
    unsigned snapshot_threshold, snapshot_trailing;
};

/* A completed proposal. */
struct prop {
    int done;
    int status;
    uint64_t index;
    int result;
};

static void tnode_reset_applied(struct tnode *t)
{
    for (size_t i = 0; i < t->n_applied; i++)
        free(t->applied[i].data);
    t->n_applied = 0;
    t->last_index = 0;
}

/* The FSM: keeps every command; the result is the command's length so the
 * proposer can see it came from apply. */
static int fsm_apply(void *ctx, uint64_t index, const uint8_t *data, size_t len)
{
    struct tnode *t = ctx;
    assert_true(index > t->last_index);
    assert_int_equal((uintptr_t)data % 8, 0);
    t->last_index = index;
    assert_true(t->n_applied < MAX_APPLIED);
    struct applied *a = &t->applied[t->n_applied++];
    a->index = index;
    a->len = len;
    a->data = malloc(len);
    assert_non_null(a->data);
    memcpy(a->data, data, len);
    return (int)len;
}

/* Snapshot format of the test FSM: n, then per command u64 index, u64 len,
 * bytes. */
static int fsm_snapshot(void *ctx, uint8_t **out, size_t *outlen)
{
    struct tnode *t = ctx;
    size_t len = 8;
    for (size_t i = 0; i < t->n_applied; i++)
        len += 16 + t->applied[i].len;
    uint8_t *b = malloc(len), *p = b;
    assert_non_null(b);
    uint64_t n = t->n_applied;
    memcpy(p, &n, 8);
    p += 8;
    for (size_t i = 0; i < t->n_applied; i++) {
        uint64_t l = t->applied[i].len;
        memcpy(p, &t->applied[i].index, 8);
        memcpy(p + 8, &l, 8);
        memcpy(p + 16, t->applied[i].data, l);
        p += 16 + l;
    }
    *out = b;
    *outlen = len;
    t->snapshots++;
    return 0;
}

static int fsm_restore(void *ctx, const uint8_t *data, size_t len)
{
    struct tnode *t = ctx;
    tnode_reset_applied(t);
    uint64_t n;
    assert_true(len >= 8);
    memcpy(&n, data, 8);
    size_t off = 8;
    for (uint64_t i = 0; i < n; i++) {
        struct applied *a = &t->applied[t->n_applied++];
        uint64_t l;
        assert_true(off + 16 <= len);
        memcpy(&a->index, data + off, 8);
        memcpy(&l, data + off + 8, 8);
        assert_true(off + 16 + l <= len);
        a->len = l;
        a->data = malloc(l);
        memcpy(a->data, data + off + 16, l);
        off += 16 + l;
        t->last_index = a->index;
    }
    t->restores++;
    return 0;
}

static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t sl = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static void tick_cb(uv_timer_t *t)
{
    (void)t;
}

static void node_start(struct cluster *c, int i)
{
    struct tnode *t = &c->nodes[i];
    unsigned threshold = t->no_snapshots ? 1u << 30 : c->snapshot_threshold;
    struct lmq_raft_node_options o = {
        .id = t->id,
        .dir = t->dir,
        .members = c->members,
        .n_members = N_NODES,
        .election_timeout_ms = 1000,
        .heartbeat_timeout_ms = 100,
        .snapshot_threshold = threshold,
        .snapshot_trailing = c->snapshot_trailing,
        .fsm = {.apply = fsm_apply, .snapshot = fsm_snapshot, .restore = fsm_restore},
        .fsm_ctx = t,
        .join = t->join,
    };
    if (c->tls) {
        o.tls_handshake_ms = 500;
        o.tls_certfile = c->cert[i];
        o.tls_keyfile = c->key[i];
        o.tls_cafile = c->ca;
    }
    tnode_reset_applied(t);
    t->stopped_done = false;
    assert_int_equal(lmq_raft_node_start(&c->loop, &o, &t->rn), 0);
}

static void stop_done(void *ctx)
{
    ((struct tnode *)ctx)->stopped_done = true;
}

static uint64_t now_ms(struct cluster *c)
{
    uv_update_time(&c->loop);
    return uv_now(&c->loop);
}

/* Runs the loop until PRED(c, arg) holds; fails after WAIT_MS. */
static void run_until(struct cluster *c, bool (*pred)(struct cluster *, void *), void *arg,
                      const char *what)
{
    uint64_t deadline = now_ms(c) + WAIT_MS;
    while (!pred(c, arg)) {
        if (now_ms(c) > deadline)
            fail_msg("timed out waiting for %s", what);
        uv_run(&c->loop, UV_RUN_ONCE);
    }
}

static bool pred_stopped(struct cluster *c, void *arg)
{
    (void)c;
    return ((struct tnode *)arg)->stopped_done;
}

static void node_stop(struct cluster *c, int i)
{
    struct tnode *t = &c->nodes[i];
    lmq_raft_node_stop(t->rn, stop_done, t);
    t->rn = NULL;
    run_until(c, pred_stopped, t, "node stop");
}

/* Certificates with the openssl command: an Ed25519 cluster CA and one
 * certificate per node with CN ledgermq-node-<id>; keys mode 0600. */
static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (system(cmd) != 0)
        fail_msg("command failed: %s", cmd);
}

/* A CA named NAME in the cluster's root, and a certificate of it for CN. */
static void make_ca(struct cluster *c, const char *name)
{
    sh("cd '%s' && openssl genpkey -algorithm ed25519 -out %s.key 2>/dev/null && "
       "openssl req -x509 -new -key %s.key -subj /CN=%s -days 2 -out %s.crt 2>/dev/null",
       c->root, name, name, name, name);
}

static void make_cert(struct cluster *c, const char *ca, const char *cn, char *cert, char *key)
{
    sh("cd '%s' && openssl genpkey -algorithm ed25519 -out %s.key 2>/dev/null && "
       "chmod 600 %s.key && openssl req -new -key %s.key -subj /CN=%s -out %s.csr 2>/dev/null && "
       "openssl x509 -req -in %s.csr -CA %s.crt -CAkey %s.key -CAcreateserial -days 2 "
       "-out %s.crt 2>/dev/null",
       c->root, cn, cn, cn, cn, cn, cn, ca, ca, cn);
    snprintf(cert, 300, "%s/%s.crt", c->root, cn);
    snprintf(key, 300, "%s/%s.key", c->root, cn);
}

static void make_certs(struct cluster *c)
{
    make_ca(c, "ca");
    snprintf(c->ca, sizeof c->ca, "%s/ca.crt", c->root);
    for (int i = 0; i < N_NODES; i++) {
        char cn[64];
        snprintf(cn, sizeof cn, "ledgermq-node-%d", i + 1);
        make_cert(c, "ca", cn, c->cert[i], c->key[i]);
    }
}

static void cluster_init_tls(struct cluster *c, bool tls, unsigned threshold, unsigned trailing);

static void cluster_init(struct cluster *c, unsigned threshold, unsigned trailing)
{
    cluster_init_tls(c, false, threshold, trailing);
}

static void cluster_init_tls(struct cluster *c, bool tls, unsigned threshold, unsigned trailing)
{
    memset(c, 0, sizeof *c);
    c->tls = tls;
    snprintf(c->root, sizeof c->root, "/tmp/lmq_raft_XXXXXX");
    assert_non_null(mkdtemp(c->root));
    assert_int_equal(uv_loop_init(&c->loop), 0);
    /* A tick keeps UV_RUN_ONCE from blocking for long between checks. */
    uv_timer_init(&c->loop, &c->tick);
    uv_timer_start(&c->tick, tick_cb, 10, 10);
    c->snapshot_threshold = threshold;
    c->snapshot_trailing = trailing;
    for (int i = 0; i < N_NODES; i++) {
        c->members[i].id = (uint64_t)i + 1;
        snprintf(c->members[i].address, sizeof c->members[i].address, "127.0.0.1:%u", free_port());
        c->nodes[i].id = (uint64_t)i + 1;
        snprintf(c->nodes[i].dir, sizeof c->nodes[i].dir, "%s/n%d/raft", c->root, i + 1);
    }
    if (c->tls)
        make_certs(c);
    for (int i = 0; i < N_NODES; i++)
        node_start(c, i);
}

static void walk_cb(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void cluster_free(struct cluster *c)
{
    for (int i = 0; i < N_NODES; i++)
        if (c->nodes[i].rn != NULL)
            node_stop(c, i);
    uv_walk(&c->loop, walk_cb, NULL);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&c->loop), 0);
    for (int i = 0; i < N_NODES; i++)
        tnode_reset_applied(&c->nodes[i]);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", c->root);
    assert_int_equal(system(cmd), 0);
}

/* The index of the one running node in MASK that is leader, with every
 * other running node in MASK agreeing on it, or -1. */
static int agreed_leader_in(struct cluster *c, unsigned mask)
{
    int leader = -1;
    for (int i = 0; i < N_NODES; i++) {
        if (c->nodes[i].rn == NULL || !(mask & (1u << i)))
            continue;
        if (lmq_raft_state(c->nodes[i].rn) == LMQ_RAFT_LEADER) {
            if (leader >= 0)
                return -1;
            leader = i;
        }
    }
    if (leader < 0)
        return -1;
    for (int i = 0; i < N_NODES; i++) {
        uint64_t id;
        if (c->nodes[i].rn == NULL || !(mask & (1u << i)))
            continue;
        lmq_raft_leader(c->nodes[i].rn, &id, NULL);
        if (id != c->nodes[leader].id)
            return -1;
    }
    return leader;
}

static int agreed_leader(struct cluster *c)
{
    return agreed_leader_in(c, 7);
}

/* ARG: the unsigned mask of nodes that must agree, or NULL for all. */
static bool pred_leader(struct cluster *c, void *arg)
{
    return agreed_leader_in(c, arg != NULL ? *(unsigned *)arg : 7) >= 0;
}

static int wait_leader(struct cluster *c)
{
    run_until(c, pred_leader, NULL, "an agreed leader");
    return agreed_leader(c);
}

static void prop_cb(void *ctx, int status, uint64_t index, int result)
{
    struct prop *p = ctx;
    p->done++;
    p->status = status;
    p->index = index;
    p->result = result;
}

struct props {
    struct prop *p;
    size_t n;
};

static bool pred_props(struct cluster *c, void *arg)
{
    (void)c;
    struct props *ps = arg;
    for (size_t i = 0; i < ps->n; i++)
        if (!ps->p[i].done)
            return false;
    return true;
}

/* Command number K: K % 37 + 1 bytes (most not a multiple of 8), derived
 * from K so that every node's copy can be checked. */
static size_t cmd_make(unsigned k, uint8_t *out)
{
    size_t len = k % 37 + 1;
    for (size_t j = 0; j < len; j++)
        out[j] = (uint8_t)(k * 31 + j * 7);
    out[0] = (uint8_t)k;
    return len;
}

/* Proposes commands FIRST..FIRST+N-1 on the leader L, waits for all their
 * results and checks them. */
static void propose_range(struct cluster *c, int l, unsigned first, unsigned n)
{
    struct prop *p = calloc(n, sizeof *p);
    assert_non_null(p);
    for (unsigned k = 0; k < n; k++) {
        uint8_t cmd[64];
        size_t len = cmd_make(first + k, cmd);
        assert_int_equal(lmq_raft_propose(c->nodes[l].rn, cmd, len, prop_cb, &p[k]), 0);
    }
    struct props ps = {p, n};
    run_until(c, pred_props, &ps, "proposal results");
    uint64_t prev = 0;
    for (unsigned k = 0; k < n; k++) {
        uint8_t cmd[64];
        assert_int_equal(p[k].done, 1);
        assert_int_equal(p[k].status, 0);
        assert_int_equal(p[k].result, (int)cmd_make(first + k, cmd));
        assert_true(p[k].index > prev);
        prev = p[k].index;
    }
    free(p);
}

struct want {
    int node;
    size_t n;
};

static bool pred_applied(struct cluster *c, void *arg)
{
    struct want *w = arg;
    return c->nodes[w->node].n_applied >= w->n;
}

/* Node I applied exactly commands 0..N-1 in order, each with its bytes. */
static void check_applied(struct cluster *c, int i, unsigned n)
{
    struct want w = {i, n};
    run_until(c, pred_applied, &w, "commands applied");
    struct tnode *t = &c->nodes[i];
    assert_int_equal(t->n_applied, n);
    for (unsigned k = 0; k < n; k++) {
        uint8_t cmd[64];
        size_t len = cmd_make(k, cmd);
        assert_int_equal(t->applied[k].len, len);
        assert_memory_equal(t->applied[k].data, cmd, len);
    }
}

/* Every node listed in MASK applied commands 0..N-1 (waiting for it),
 * at the same indices. */
static void check_same_indices(struct cluster *c, unsigned mask, unsigned n)
{
    int ref = -1;
    for (int i = 0; i < N_NODES; i++) {
        if (!(mask & (1u << i)))
            continue;
        check_applied(c, i, n);
        if (ref < 0) {
            ref = i;
            continue;
        }
        for (unsigned k = 0; k < n; k++)
            assert_int_equal(c->nodes[i].applied[k].index, c->nodes[ref].applied[k].index);
    }
}

/* ------------------------------------------------------------------ */
/* Cluster tests. */

static void test_elect_replicate_forward(void **state)
{
    (void)state;
    struct cluster c;
    cluster_init(&c, 0, 0);
    int l = wait_leader(&c);
    int f = (l + 1) % N_NODES;

    /* A follower refuses and names the leader to forward to. */
    struct prop p = {0};
    assert_int_equal(lmq_raft_propose(c.nodes[f].rn, "x", 1, prop_cb, &p), LMQ_RAFT_ERR_NOT_LEADER);
    uint64_t lid;
    const char *laddr;
    lmq_raft_leader(c.nodes[f].rn, &lid, &laddr);
    assert_int_equal(lid, c.nodes[l].id);
    assert_string_equal(laddr, c.members[l].address);
    assert_int_equal(lmq_raft_state(c.nodes[f].rn), LMQ_RAFT_FOLLOWER);
    /* Empty and oversized commands are refused on the leader too. */
    assert_int_equal(lmq_raft_propose(c.nodes[l].rn, "x", 0, prop_cb, &p), LMQ_RAFT_ERR_TOO_BIG);

    propose_range(&c, l, 0, 200);
    for (int i = 0; i < N_NODES; i++)
        check_applied(&c, i, 200);
    check_same_indices(&c, 7, 200);
    assert_int_equal(p.done, 0);

    /* A barrier (leader only) takes a Raft index the FSM never sees. */
    assert_int_equal(lmq_raft_barrier(c.nodes[f].rn), LMQ_RAFT_ERR_NOT_LEADER);
    assert_int_equal(lmq_raft_barrier(c.nodes[l].rn), 0);
    propose_range(&c, l, 200, 1);
    for (int i = 0; i < N_NODES; i++)
        check_applied(&c, i, 201);
    check_same_indices(&c, 7, 201);
    assert_int_equal(c.nodes[l].applied[200].index, c.nodes[l].applied[199].index + 2);
    assert_int_equal(lmq_raft_inflight(c.nodes[l].rn), 0);
    cluster_free(&c);
}

static void test_leader_stops(void **state)
{
    (void)state;
    struct cluster c;
    cluster_init(&c, 0, 0);
    int l = wait_leader(&c);
    propose_range(&c, l, 0, 50);
    uint64_t term = lmq_raft_term(c.nodes[l].rn);
    node_stop(&c, l);

    int l2 = wait_leader(&c);
    assert_int_not_equal(l2, l);
    assert_true(lmq_raft_term(c.nodes[l2].rn) > term);
    propose_range(&c, l2, 50, 50);
    unsigned mask = 0;
    for (int i = 0; i < N_NODES; i++)
        if (i != l) {
            check_applied(&c, i, 100);
            mask |= 1u << i;
        }
    check_same_indices(&c, mask, 100);

    /* The old leader comes back as a follower and catches up. */
    node_start(&c, l);
    check_applied(&c, l, 100);
    check_same_indices(&c, 7, 100);
    cluster_free(&c);
}

/* The leader stops with proposals in flight: every callback runs exactly
 * once, with 0 (committed and applied before the stop) or a shutdown /
 * lost status, never anything else; what was reported committed is in the
 * survivors' logs, at the reported index, in order. */
static void test_stop_with_inflight(void **state)
{
    (void)state;
    struct cluster c;
    cluster_init(&c, 0, 0);
    int l = wait_leader(&c);
    propose_range(&c, l, 0, 10);
    enum { N = 200 };
    struct prop *p = calloc(N, sizeof *p);
    assert_non_null(p);
    for (unsigned k = 0; k < N; k++) {
        uint8_t cmd[64];
        size_t len = cmd_make(10 + k, cmd);
        assert_int_equal(lmq_raft_propose(c.nodes[l].rn, cmd, len, prop_cb, &p[k]), 0);
    }
    assert_int_equal(lmq_raft_inflight(c.nodes[l].rn), N);
    /* Let some commit, then stop with the rest in flight. */
    struct props first = {p, 20};
    run_until(&c, pred_props, &first, "the first results");
    assert_true(lmq_raft_inflight(c.nodes[l].rn) < N);
    node_stop(&c, l); /* runs the loop until the node is gone */
    unsigned committed = 0;
    for (unsigned k = 0; k < N; k++) {
        assert_int_equal(p[k].done, 1);
        if (p[k].status == 0)
            committed++;
        else if (p[k].status != LMQ_RAFT_ERR_SHUTDOWN && p[k].status != LMQ_RAFT_ERR_LOST)
            fail_msg("proposal %u: status %d", k, p[k].status);
    }
    assert_true(committed >= 20);
    /* Committed ones form a prefix (the log is ordered). */
    for (unsigned k = 0; k < committed; k++)
        assert_int_equal(p[k].status, 0);
    int l2 = wait_leader(&c);
    propose_range(&c, l2, 1000, 1); /* the new leader commits its term */
    for (int i = 0; i < N_NODES; i++) {
        if (i == l)
            continue;
        struct want w = {i, 10 + committed};
        run_until(&c, pred_applied, &w, "the committed proposals");
        for (unsigned k = 0; k < committed; k++) {
            uint8_t cmd[64];
            size_t len = cmd_make(10 + k, cmd);
            assert_int_equal(c.nodes[i].applied[10 + k].index, p[k].index);
            assert_int_equal(c.nodes[i].applied[10 + k].len, len);
            assert_memory_equal(c.nodes[i].applied[10 + k].data, cmd, len);
        }
    }
    free(p);
    cluster_free(&c);
}

/* A follower stopped while the leader goes on, restarted with the same
 * directory: it applies everything again from its log and catches up on
 * what it missed. With SNAP, the leader has snapshotted past what the
 * follower holds, so the catch-up goes through InstallSnapshot and
 * restore. */
static void follower_restart(bool snap)
{
    struct cluster c;
    if (snap)
        cluster_init(&c, 32, 8);
    else
        cluster_init(&c, 0, 0);
    int l = wait_leader(&c);
    int f = (l + 1) % N_NODES;
    propose_range(&c, l, 0, 40);
    check_applied(&c, f, 40);
    node_stop(&c, f);

    unsigned total = 40;
    if (snap) {
        /* Go on until the leader has completed a snapshot taken after the
         * follower stopped (a second one starts only when the first one
         * is stored and the log truncated behind it): the entries the
         * follower lacks are then gone from the leader's log. */
        int s0 = c.nodes[l].snapshots;
        while (c.nodes[l].snapshots < s0 + 2) {
            assert_true(total + 20 <= MAX_APPLIED / 2);
            propose_range(&c, l, total, 20);
            total += 20;
        }
    } else {
        propose_range(&c, l, total, 60);
        total += 60;
    }
    /* libraft 0.22.1 can crash a follower whose own snapshot overlaps an
     * InstallSnapshot (DESIGN.md): the restarted follower takes none, so
     * every restore it does comes from the leader's InstallSnapshot. */
    c.nodes[f].no_snapshots = true;
    node_start(&c, f);
    check_applied(&c, f, total);
    check_applied(&c, l, total);
    check_same_indices(&c, 7, total);
    if (snap)
        assert_true(c.nodes[f].restores > 0);
    else
        assert_int_equal(c.nodes[f].restores, 0);
    /* And it keeps up with new commands. */
    propose_range(&c, l, total, 10);
    for (int i = 0; i < N_NODES; i++)
        check_applied(&c, i, total + 10);
    cluster_free(&c);
}

static void test_follower_restart_log(void **state)
{
    (void)state;
    follower_restart(false);
}

static void test_follower_restart_snapshot(void **state)
{
    (void)state;
    follower_restart(true);
}

struct change {
    int done;
    int status;
};

static void change_cb(void *ctx, int status)
{
    struct change *ch = ctx;
    ch->done++;
    ch->status = status;
}

static bool pred_change(struct cluster *c, void *arg)
{
    (void)c;
    return ((struct change *)arg)->done > 0;
}

static bool has_member(struct lmq_raft_node *n, uint64_t id, size_t want_n)
{
    struct lmq_raft_member_info m[LMQ_RAFT_MAX_MEMBERS];
    size_t k = lmq_raft_members(n, m, LMQ_RAFT_MAX_MEMBERS);
    assert_int_equal(k, want_n);
    for (size_t i = 0; i < k; i++)
        if (m[i].id == id) {
            assert_int_equal(m[i].role, 1); /* voter */
            return true;
        }
    return false;
}

/* Leadership transfer to a chosen node, removal of a member, and a new
 * node (id 4, fresh directory, join) added: it catches up from the log
 * and takes part in commits. Refusals: not the leader, duplicate id,
 * unknown id. */
static void test_membership(void **state)
{
    (void)state;
    struct cluster c;
    cluster_init(&c, 0, 0);
    int l = wait_leader(&c);
    int f = (l + 1) % N_NODES;
    propose_range(&c, l, 0, 10);

    struct change ch = {0};
    assert_int_equal(lmq_raft_transfer(c.nodes[f].rn, 0, change_cb, &ch), LMQ_RAFT_ERR_NOT_LEADER);
    assert_int_equal(lmq_raft_transfer(c.nodes[l].rn, c.nodes[f].id, change_cb, &ch), 0);
    run_until(&c, pred_change, &ch, "the transfer");
    assert_int_equal(ch.done, 1);
    assert_int_equal(ch.status, 0);
    assert_int_equal(wait_leader(&c), f);

    int r = (f + 1) % N_NODES;
    memset(&ch, 0, sizeof ch);
    assert_int_equal(lmq_raft_remove(c.nodes[f].rn, 99, change_cb, &ch), LMQ_RAFT_ERR_BADID);
    assert_int_equal(lmq_raft_remove(c.nodes[f].rn, c.nodes[r].id, change_cb, &ch), 0);
    run_until(&c, pred_change, &ch, "the removal");
    assert_int_equal(ch.status, 0);
    assert_false(has_member(c.nodes[f].rn, c.nodes[r].id, 2));
    node_stop(&c, r);
    propose_range(&c, f, 10, 10); /* the two left commit alone */

    /* Node 4 in slot r: new id, address and directory. */
    c.members[r].id = 4;
    snprintf(c.members[r].address, sizeof c.members[r].address, "127.0.0.1:%u", free_port());
    c.nodes[r].id = 4;
    snprintf(c.nodes[r].dir, sizeof c.nodes[r].dir, "%s/n4/raft", c.root);
    c.nodes[r].join = true;
    node_start(&c, r);
    memset(&ch, 0, sizeof ch);
    assert_int_equal(lmq_raft_add(c.nodes[f].rn, c.nodes[f].id, "127.0.0.1:1", change_cb, &ch),
                     LMQ_RAFT_ERR_BADID);
    assert_int_equal(lmq_raft_add(c.nodes[f].rn, 4, c.members[r].address, change_cb, &ch), 0);
    run_until(&c, pred_change, &ch, "the addition");
    assert_int_equal(ch.done, 1);
    assert_int_equal(ch.status, 0);
    assert_true(has_member(c.nodes[f].rn, 4, 3));
    check_applied(&c, r, 20);
    propose_range(&c, f, 20, 10);
    for (int i = 0; i < N_NODES; i++)
        check_applied(&c, i, 30);
    check_same_indices(&c, 7, 30);
    cluster_free(&c);
}

/* The same cluster over mutual TLS: election and replication work. */
static void test_tls_cluster(void **state)
{
    (void)state;
    struct cluster c;
    cluster_init_tls(&c, true, 0, 0);
    int l = wait_leader(&c);
    propose_range(&c, l, 0, 100);
    for (int i = 0; i < N_NODES; i++)
        check_applied(&c, i, 100);
    check_same_indices(&c, 7, 100);
    cluster_free(&c);
}

static void tick_stop(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

static bool pred_flag(struct cluster *c, void *arg)
{
    (void)c;
    return *(bool *)arg;
}

/* Runs the loop for MS milliseconds. */
static void run_for(struct cluster *c, unsigned ms)
{
    bool done = false;
    uv_timer_t t;
    uv_timer_init(&c->loop, &t);
    t.data = &done;
    uv_timer_start(&t, tick_stop, ms, 0);
    run_until(c, pred_flag, &done, "a pause");
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&c->loop, UV_RUN_NOWAIT);
}

struct raw {
    int fd;
    bool closed;
};

/* True once the peer closed RAW (read returns 0 or an error). */
static bool pred_raw_closed(struct cluster *c, void *arg)
{
    (void)c;
    struct raw *r = arg;
    char buf[256];
    ssize_t n = recv(r->fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
        r->closed = true;
    return r->closed;
}

static int raw_connect(const char *address)
{
    unsigned port = (unsigned)atoi(strrchr(address, ':') + 1);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

/* A TCP peer that never completes a handshake is dropped after the
 * handshake deadline (500 ms here); one that sends libraft's plain-TCP
 * preamble or garbage is dropped at once; the cluster goes on. */
static void test_tls_handshake_deadline(void **state)
{
    (void)state;
    struct cluster c;
    cluster_init_tls(&c, true, 0, 0);
    int l = wait_leader(&c);
    struct raw idle = {raw_connect(c.members[l].address), false};
    struct raw junk = {raw_connect(c.members[l].address), false};
    uint8_t preamble[64] = {1, 0, 0, 0, 0, 0, 0, 0, 9}; /* version 1, id 9, ... */
    assert_int_equal(send(junk.fd, preamble, sizeof preamble, 0), (ssize_t)sizeof preamble);
    run_until(&c, pred_raw_closed, &junk, "the junk connection to be closed");
    /* Without the deadline it would stay open and this wait fail. */
    run_until(&c, pred_raw_closed, &idle, "the idle connection to be closed");
    close(idle.fd);
    close(junk.fd);
    propose_range(&c, wait_leader(&c), 0, 10);
    for (int i = 0; i < N_NODES; i++)
        check_applied(&c, i, 10);
    cluster_free(&c);
}

/* Node 3 is not a member in the eyes of the others: with ROGUE_CA its
 * certificate comes from another CA (CN ledgermq-node-3), else from the
 * cluster CA but for id 9. Nodes 1 and 2 elect a leader and commit
 * without it; node 3 never receives an entry nor becomes leader. */
static void intruder(bool rogue_ca)
{
    struct cluster c;
    cluster_init_tls(&c, true, 0, 0);
    /* Restart node 3 with the intruder's credentials (same id, address
     * and empty log). */
    node_stop(&c, 2);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", c.nodes[2].dir);
    assert_int_equal(system(cmd), 0);
    if (rogue_ca) {
        make_ca(&c, "rogue");
        make_cert(&c, "rogue", "ledgermq-node-3", c.cert[2], c.key[2]);
        snprintf(c.ca, sizeof c.ca, "%s/ca.crt", c.root); /* it trusts the real CA */
    } else {
        make_cert(&c, "ca", "ledgermq-node-9", c.cert[2], c.key[2]);
    }
    node_start(&c, 2);
    unsigned two = 3;
    run_until(&c, pred_leader, &two, "a leader of nodes 1 and 2");
    int l = agreed_leader_in(&c, two);
    assert_true(l == 0 || l == 1);
    propose_range(&c, l, 0, 20);
    check_applied(&c, 1 - l, 20);
    run_for(&c, 2500); /* more than two election timeouts */
    assert_int_equal(c.nodes[2].n_applied, 0);
    assert_int_not_equal(lmq_raft_state(c.nodes[2].rn), LMQ_RAFT_LEADER);
    uint64_t lid;
    lmq_raft_leader(c.nodes[2].rn, &lid, NULL);
    assert_int_equal(lid, 0);
    cluster_free(&c);
}

static void test_tls_rogue_ca(void **state)
{
    (void)state;
    intruder(true);
}

static void test_tls_not_a_member(void **state)
{
    (void)state;
    intruder(false);
}

/* ------------------------------------------------------------------ */
/* kill -9: a follower in a child process (this program again, exec'd
 * with LMQ_RAFT_CHILD set) is killed with SIGKILL while the leader
 * commits, restarted on the same directory, and must end with the same
 * commands at the same indices. The child writes one line per applied
 * command ("INDEX LEN CRC32C") to its output file, which it truncates at
 * start: after a restart it applies its whole log again. */

extern char **environ;

static FILE *child_out;
static pid_t child_pid; /* running child, killed by the teardown if a check failed */

static int child_apply(void *ctx, uint64_t index, const uint8_t *data, size_t len)
{
    (void)ctx;
    fprintf(child_out, "%llu %zu %08x\n", (unsigned long long)index, len, lmq_crc32c(0, data, len));
    fflush(child_out);
    return (int)len;
}

/* LMQ_RAFT_CHILD="ID DIR OUT ID1 ADDR1 ID2 ADDR2 ID3 ADDR3". */
static int child_main(const char *spec)
{
    char dir[300], out[300], addr[N_NODES][LMQ_RAFT_ADDRESS_MAX];
    unsigned long long id, ids[N_NODES];
    if (sscanf(spec, "%llu %299s %299s %llu %127s %llu %127s %llu %127s", &id, dir, out, &ids[0],
               addr[0], &ids[1], addr[1], &ids[2], addr[2]) != 9)
        return 2;
    /* Never outlive the test. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1)
        return 2;
    child_out = fopen(out, "w");
    if (child_out == NULL)
        return 2;
    struct lmq_raft_member m[N_NODES];
    for (int i = 0; i < N_NODES; i++) {
        m[i].id = ids[i];
        snprintf(m[i].address, sizeof m[i].address, "%s", addr[i]);
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct lmq_raft_node_options o = {
        .id = id,
        .dir = dir,
        .members = m,
        .n_members = N_NODES,
        .election_timeout_ms = 1000,
        .heartbeat_timeout_ms = 100,
        .fsm = {.apply = child_apply},
    };
    struct lmq_raft_node *n;
    if (lmq_raft_node_start(&loop, &o, &n) != 0)
        return 3;
    uv_run(&loop, UV_RUN_DEFAULT); /* until killed */
    return 0;
}

static pid_t child_spawn(struct cluster *c, int i, const char *out)
{
    char spec[1024], env[1100];
    snprintf(spec, sizeof spec, "%llu %s %s %llu %s %llu %s %llu %s",
             (unsigned long long)c->nodes[i].id, c->nodes[i].dir, out,
             (unsigned long long)c->members[0].id, c->members[0].address,
             (unsigned long long)c->members[1].id, c->members[1].address,
             (unsigned long long)c->members[2].id, c->members[2].address);
    snprintf(env, sizeof env, "LMQ_RAFT_CHILD=%s", spec);
    char *argv[] = {(char *)"test_raft_node", NULL};
    char *envp[] = {env, NULL};
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, envp), 0);
    child_pid = pid;
    return pid;
}

/* Lines of the child's output file, or -1 if one does not match the
 * leader's applied command at that position. */
static long child_lines(struct cluster *c, int l, const char *out)
{
    FILE *f = fopen(out, "r");
    if (f == NULL)
        return 0;
    unsigned long long idx;
    size_t len;
    unsigned crc;
    long k = 0;
    while (fscanf(f, "%llu %zu %x", &idx, &len, &crc) == 3) {
        struct applied *a = &c->nodes[l].applied[k];
        if ((size_t)k >= c->nodes[l].n_applied || a->index != idx || a->len != len ||
            lmq_crc32c(0, a->data, a->len) != crc) {
            fclose(f);
            return -1;
        }
        k++;
    }
    fclose(f);
    return k;
}

struct child_want {
    int l;
    const char *out;
    long n;
};

static bool pred_child(struct cluster *c, void *arg)
{
    struct child_want *w = arg;
    long k = child_lines(c, w->l, w->out);
    if (k < 0)
        fail_msg("the child applied something else than the leader");
    return k >= w->n;
}

static void child_kill(pid_t pid)
{
    int st;
    kill(pid, SIGKILL);
    child_pid = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
}

static int child_teardown(void **state)
{
    (void)state;
    if (child_pid > 0) {
        kill(child_pid, SIGKILL);
        waitpid(child_pid, NULL, 0);
        child_pid = 0;
    }
    return 0;
}

static void test_follower_kill9(void **state)
{
    (void)state;
    struct cluster c;
    cluster_init(&c, 0, 0);
    int l = wait_leader(&c);
    int f = (l + 1) % N_NODES;
    propose_range(&c, l, 0, 20);
    node_stop(&c, f);
    char out[320];
    snprintf(out, sizeof out, "%s/child.out", c.root);
    pid_t pid = child_spawn(&c, f, out);
    struct child_want w = {l, out, 20};
    run_until(&c, pred_child, &w, "the child to apply the first commands");

    /* Under load: 300 proposals in flight, the child killed after the
     * first 100 results, the rest committed by the two others. */
    enum { N = 300 };
    struct prop *p = calloc(N, sizeof *p);
    assert_non_null(p);
    for (unsigned k = 0; k < N; k++) {
        uint8_t cmd[64];
        size_t len = cmd_make(20 + k, cmd);
        assert_int_equal(lmq_raft_propose(c.nodes[l].rn, cmd, len, prop_cb, &p[k]), 0);
    }
    struct props first = {p, 100};
    run_until(&c, pred_props, &first, "the first results");
    child_kill(pid);
    struct props all = {p, N};
    run_until(&c, pred_props, &all, "all results");
    for (unsigned k = 0; k < N; k++)
        assert_int_equal(p[k].status, 0);
    free(p);
    propose_range(&c, l, 20 + N, 30);

    pid = child_spawn(&c, f, out);
    w.n = 20 + N + 30;
    run_until(&c, pred_child, &w, "the restarted child to catch up");
    assert_int_equal(child_lines(&c, l, out), 20 + N + 30);
    child_kill(pid);
    cluster_free(&c);
}

int main(void)
{
    if (getenv("LMQ_RAFT_CHILD") != NULL) {
        lmq_log_set_level(LMQ_LOG_ERROR);
        signal(SIGPIPE, SIG_IGN);
        return child_main(getenv("LMQ_RAFT_CHILD"));
    }
    lmq_log_set_level(LMQ_LOG_WARNING);
    /* libraft writes to peers that may have gone: like the daemon, take
     * EPIPE rather than the signal. */
    signal(SIGPIPE, SIG_IGN);
    if (getenv("LMQ_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("LMQ_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_roundtrip),
        cmocka_unit_test(test_frame_defects),
        cmocka_unit_test(test_address_check),
        cmocka_unit_test(test_elect_replicate_forward),
        cmocka_unit_test(test_leader_stops),
        cmocka_unit_test(test_stop_with_inflight),
        cmocka_unit_test(test_follower_restart_log),
        cmocka_unit_test(test_follower_restart_snapshot),
        cmocka_unit_test_teardown(test_follower_kill9, child_teardown),
        cmocka_unit_test(test_membership),
        cmocka_unit_test(test_tls_cluster),
        cmocka_unit_test(test_tls_handshake_deadline),
        cmocka_unit_test(test_tls_rogue_ca),
        cmocka_unit_test(test_tls_not_a_member),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
