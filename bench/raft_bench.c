/* Raft replication benchmark (cluster/raft_node): three nodes in ONE
 * process on ONE libuv loop (so all three nodes' CPU work shares one core:
 * a pessimistic bound for three processes), each with its own Raft
 * directory under DIR (same disk: three fsync streams), plain TCP or
 * mutual TLS on loopback. The leader proposes ENTRIES commands of SIZE
 * bytes with at most INFLIGHT outstanding; prints entries/s, MB/s and the
 * propose -> applied-on-leader latency (p50/p99/max).
 *
 *   raft_bench [-n ENTRIES] [-s SIZE] [-i INFLIGHT] [-t] [-d DIR]
 *
 * -t makes an Ed25519 CA and node certificates with the openssl command.
 * DIR (default: a new directory under /tmp) is removed afterwards. */
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "cluster/raft_node.h"
#include "util/log.h"

#define NODES 3

struct bench {
    uv_loop_t loop;
    struct lmq_raft_node *n[NODES];
    struct lmq_raft_member members[NODES];
    uint64_t applied[NODES];
    unsigned total, size, inflight_max;
    unsigned proposed, done, failed;
    unsigned leader_changes;
    uint8_t *payload;
    uint64_t *lat_us;
    int leader;
    uint64_t t0_us;
    uv_idle_t pump;
};

struct req {
    struct bench *b;
    uint64_t start_us;
};

static uint64_t now_us(void)
{
    return uv_hrtime() / 1000;
}

static int fsm_apply(void *ctx, uint64_t index, const uint8_t *data, size_t len)
{
    (void)index;
    (void)data;
    (*(uint64_t *)ctx)++;
    return (int)len;
}

static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        perror("free port");
        exit(1);
    }
    close(fd);
    return ntohs(sa.sin_port);
}

static void pump_cb(uv_idle_t *h);

static void prop_cb(void *ctx, int status, uint64_t index, int result)
{
    (void)index;
    (void)result;
    struct req *r = ctx;
    struct bench *b = r->b;
    if (status != 0)
        b->failed++;
    else
        b->lat_us[b->done] = now_us() - r->start_us;
    b->done++;
    free(r);
    if (b->proposed < b->total)
        uv_idle_start(&b->pump, pump_cb);
}

/* Keeps INFLIGHT proposals outstanding. */
static void pump_cb(uv_idle_t *h)
{
    struct bench *b = h->data;
    while (b->proposed < b->total && b->proposed - b->done < b->inflight_max) {
        struct req *r = malloc(sizeof *r);
        r->b = b;
        r->start_us = now_us();
        if (b->leader < 0)
            for (int i = 0; i < NODES; i++)
                if (lmq_raft_state(b->n[i]) == LMQ_RAFT_LEADER)
                    b->leader = i;
        int rc = b->leader >= 0 ? lmq_raft_propose(b->n[b->leader], b->payload, b->size, prop_cb, r)
                                : LMQ_RAFT_ERR_NOT_LEADER;
        if (rc == LMQ_RAFT_ERR_NOT_LEADER) {
            /* An election: keep polling until a leader is known again. */
            free(r);
            if (b->leader >= 0)
                b->leader_changes++;
            b->leader = -1;
            return;
        }
        if (rc != 0) {
            fprintf(stderr, "propose: %s\n", lmq_raft_strerror(rc));
            exit(1);
        }
        b->proposed++;
    }
    uv_idle_stop(h);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void stopped(void *ctx)
{
    (*(int *)ctx)++;
}

int main(int argc, char **argv)
{
    struct bench b = {.total = 20000, .size = 65536, .inflight_max = 64, .leader = -1};
    bool tls = false;
    char dir[256] = "";
    int opt;
    while ((opt = getopt(argc, argv, "n:s:i:td:")) != -1) {
        switch (opt) {
        case 'n':
            b.total = (unsigned)atoi(optarg);
            break;
        case 's':
            b.size = (unsigned)atoi(optarg);
            break;
        case 'i':
            b.inflight_max = (unsigned)atoi(optarg);
            break;
        case 't':
            tls = true;
            break;
        case 'd':
            snprintf(dir, sizeof dir, "%s/raft_bench_XXXXXX", optarg);
            break;
        default:
            fprintf(stderr,
                    "usage: raft_bench [-n ENTRIES] [-s SIZE] [-i INFLIGHT] [-t] [-d DIR]\n");
            return 2;
        }
    }
    if (b.total == 0 || b.size == 0 || b.inflight_max == 0) {
        fprintf(stderr, "raft_bench: -n, -s and -i must be positive\n");
        return 2;
    }
    if (!dir[0])
        snprintf(dir, sizeof dir, "/tmp/raft_bench_XXXXXX");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    lmq_log_set_level(LMQ_LOG_ERROR);
    b.payload = malloc(b.size);
    b.lat_us = calloc(b.total, sizeof *b.lat_us);
    for (unsigned i = 0; i < b.size; i++)
        b.payload[i] = (uint8_t)(i * 13);
    char cmd[2048];
    if (tls) {
        snprintf(cmd, sizeof cmd,
                 "cd '%s' && openssl genpkey -algorithm ed25519 -out ca.key && openssl req -x509 "
                 "-new -key ca.key -subj /CN=bench-ca -days 1 -out ca.crt && for i in 1 2 3; do "
                 "openssl genpkey -algorithm ed25519 -out n$i.key && chmod 600 n$i.key && "
                 "openssl req -new -key n$i.key -subj /CN=ledgermq-node-$i -out n$i.csr && "
                 "openssl x509 -req -in n$i.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
                 "-days 1 -out n$i.crt; done 2>/dev/null",
                 dir);
        if (system(cmd) != 0) {
            fprintf(stderr, "raft_bench: making certificates failed\n");
            return 1;
        }
    }
    uv_loop_init(&b.loop);
    for (int i = 0; i < NODES; i++) {
        b.members[i].id = (uint64_t)i + 1;
        snprintf(b.members[i].address, sizeof b.members[i].address, "127.0.0.1:%u", free_port());
    }
    for (int i = 0; i < NODES; i++) {
        char ndir[300], cert[300], key[300], ca[300];
        snprintf(ndir, sizeof ndir, "%s/n%d", dir, i + 1);
        snprintf(cert, sizeof cert, "%s/n%d.crt", dir, i + 1);
        snprintf(key, sizeof key, "%s/n%d.key", dir, i + 1);
        snprintf(ca, sizeof ca, "%s/ca.crt", dir);
        struct lmq_raft_node_options o = {
            .id = (uint64_t)i + 1,
            .dir = ndir,
            .members = b.members,
            .n_members = NODES,
            .fsm = {.apply = fsm_apply},
            .fsm_ctx = &b.applied[i],
            .max_inflight = b.inflight_max,
        };
        if (tls) {
            o.tls_certfile = cert;
            o.tls_keyfile = key;
            o.tls_cafile = ca;
        }
        if (lmq_raft_node_start(&b.loop, &o, &b.n[i]) != 0) {
            fprintf(stderr, "raft_bench: node %d did not start\n", i + 1);
            return 1;
        }
    }
    uint64_t deadline = now_us() + 30000000;
    while (b.leader < 0) {
        uv_run(&b.loop, UV_RUN_NOWAIT);
        for (int i = 0; i < NODES; i++)
            if (lmq_raft_state(b.n[i]) == LMQ_RAFT_LEADER)
                b.leader = i;
        if (now_us() > deadline) {
            fprintf(stderr, "raft_bench: no leader\n");
            return 1;
        }
        usleep(1000);
    }
    uv_idle_init(&b.loop, &b.pump);
    b.pump.data = &b;
    b.t0_us = now_us();
    uv_idle_start(&b.pump, pump_cb);
    /* Failed proposals (leadership lost) may still have been applied:
     * wait for every node to apply what the last leader committed. */
    while (b.done < b.total || b.applied[0] < b.done - b.failed ||
           b.applied[1] < b.done - b.failed || b.applied[2] < b.done - b.failed)
        uv_run(&b.loop, UV_RUN_ONCE);
    double secs = (double)(now_us() - b.t0_us) / 1e6;
    qsort(b.lat_us, b.total - b.failed, sizeof *b.lat_us, cmp_u64);
    size_t ok = b.total - b.failed;
    printf("raft_bench: 3 nodes, one process, %s, %u entries of %u bytes, inflight %u\n",
           tls ? "mutual TLS 1.3" : "plain TCP", b.total, b.size, b.inflight_max);
    printf("  %.0f entries/s, %.1f MB/s (all 3 applied), %u failed, %u leader changes\n",
           b.total / secs, (double)b.total * b.size / secs / 1e6, b.failed, b.leader_changes);
    if (ok > 0)
        printf("  latency propose -> applied on leader: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
               b.lat_us[ok / 2] / 1000.0, b.lat_us[ok * 99 / 100] / 1000.0,
               b.lat_us[ok - 1] / 1000.0);
    int n_stopped = 0;
    uv_close((uv_handle_t *)&b.pump, NULL);
    for (int i = 0; i < NODES; i++)
        lmq_raft_node_stop(b.n[i], stopped, &n_stopped);
    while (n_stopped < NODES)
        uv_run(&b.loop, UV_RUN_ONCE);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    uv_loop_close(&b.loop);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        return 1;
    free(b.payload);
    free(b.lat_us);
    return 0;
}
