/* Tests of src/cluster/channel.c over libraft's plain TCP transport on
 * loopback, two members in one process and one loop: frames go both ways
 * (FORWARD out, RESULT back on the connection it came on), a 1 MiB frame
 * arrives whole, a frame above the receiver's max_frame closes the stream
 * (the sender sees on_down), sending to a non-member fails at once and to
 * a member that does not listen ends in on_down; both stop cleanly and
 * the loop closes with nothing left on it. (The TLS transport and its
 * refusal of non-members: test_raft_node.c and test_cluster_forward.py.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "cluster/channel.h"

struct end {
    struct lmq_channel *ch;
    uint64_t id;
    int frames, results, downs, stopped;
    uint64_t last_conn, last_peer, last_seq;
    size_t last_len;
    uint8_t last_first;
    int32_t last_status;
};

static uv_loop_t loop;

/* A port P with P-1 free too: the member's "Raft port" P-1, channel P. */
static uint16_t free_channel_port(void)
{
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(fd >= 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        socklen_t sl = sizeof sa;
        assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
        close(fd);
        uint16_t p = ntohs(sa.sin_port);
        if (p > 1024)
            return p;
    }
}

static void on_frame(void *ctx, uint64_t conn, uint64_t peer, const struct lmq_channel_frame *f)
{
    struct end *e = ctx;
    e->last_conn = conn;
    e->last_peer = peer;
    e->last_seq = f->seq;
    if (f->type == LMQ_CHANNEL_FORWARD) {
        e->frames++;
        e->last_len = f->body_len;
        e->last_first = f->body[0];
    } else {
        e->results++;
        e->last_status = f->status;
    }
}

static void on_down(void *ctx, uint64_t peer)
{
    struct end *e = ctx;
    (void)peer;
    e->downs++;
}

static void stopped(void *ctx)
{
    ((struct end *)ctx)->stopped++;
}

static void run_until(int *counter, int want)
{
    for (int i = 0; i < 2000 && *counter < want; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    assert_int_equal(*counter, want);
}

static void start(struct end *e, uint64_t id, const struct lmq_raft_member *m, size_t n,
                  size_t max_frame)
{
    memset(e, 0, sizeof *e);
    e->id = id;
    struct lmq_channel_options o = {
        .id = id,
        .members = m,
        .n_members = n,
        .port_offset = 1,
        .max_frame = max_frame,
        .max_queue = 4u << 20, /* for sending 1 MiB also with a small max_frame */
        .on_frame = on_frame,
        .on_down = on_down,
        .ctx = e,
    };
    assert_int_equal(lmq_channel_start(&loop, &o, &e->ch), 0);
}

static void test_frames_both_ways(void **state)
{
    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct lmq_raft_member m[3];
    for (int i = 0; i < 3; i++) {
        m[i].id = (uint64_t)i + 1;
        snprintf(m[i].address, sizeof m[i].address, "127.0.0.1:%u", free_channel_port() - 1);
    }
    char a[LMQ_RAFT_ADDRESS_MAX];
    assert_int_equal(lmq_channel_address(&m[0], 1, a, sizeof a), 0);
    struct lmq_raft_member big = {.id = 9, .address = "127.0.0.1:65535"};
    assert_int_equal(lmq_channel_address(&big, 1, a, sizeof a), -1);

    struct end e1, e2;
    start(&e1, 1, m, 3, 0);
    start(&e2, 2, m, 3, 4096); /* node 2 takes frames of at most 4 KiB */

    /* 2 -> 1: a 1 MiB FORWARD, answered on its connection */
    size_t n = 1u << 20;
    uint8_t *body = malloc(n), *frame;
    size_t flen;
    assert_non_null(body);
    memset(body, 0x5a, n);
    body[0] = 0x42;
    assert_int_equal(lmq_channel_encode_forward(7, body, n, &frame, &flen), 0);
    assert_int_equal(lmq_channel_send(e2.ch, 1, frame, flen), 0);
    free(frame);
    run_until(&e1.frames, 1);
    assert_int_equal(e1.last_peer, 2);
    assert_int_equal(e1.last_seq, 7);
    assert_int_equal(e1.last_len, n);
    assert_int_equal(e1.last_first, 0x42);
    assert_int_equal(
        lmq_channel_encode_result(7, LMQ_CHANNEL_REFUSED_BUSY, 0, NULL, 0, &frame, &flen), 0);
    assert_int_equal(lmq_channel_reply(e1.ch, e1.last_conn, frame, flen), 0);
    free(frame);
    run_until(&e2.results, 1);
    assert_int_equal(e2.last_peer, 1);
    assert_int_equal(e2.last_status, LMQ_CHANNEL_REFUSED_BUSY);
    assert_int_equal(lmq_channel_reply(e1.ch, 999, body, 16), -1); /* no such connection */

    /* 1 -> 2: too big for node 2: its stream closes, node 1 sees on_down */
    assert_int_equal(lmq_channel_encode_forward(8, body, 8192, &frame, &flen), 0);
    assert_int_equal(lmq_channel_send(e1.ch, 2, frame, flen), 0);
    free(frame);
    run_until(&e1.downs, 1);
    assert_int_equal(e2.frames, 0);
    /* a small one goes on a new connection */
    assert_int_equal(lmq_channel_encode_forward(9, body, 100, &frame, &flen), 0);
    assert_int_equal(lmq_channel_send(e1.ch, 2, frame, flen), 0);
    run_until(&e2.frames, 1);
    assert_int_equal(e2.last_seq, 9);

    /* not a member, itself: refused at once; node 3 does not listen */
    assert_int_equal(lmq_channel_send(e1.ch, 4, frame, flen), -1);
    assert_int_equal(lmq_channel_send(e1.ch, 1, frame, flen), -1);
    assert_int_equal(lmq_channel_send(e1.ch, 3, frame, flen), 0);
    run_until(&e1.downs, 2);
    free(frame);
    free(body);

    lmq_channel_stop(e1.ch, stopped, &e1);
    lmq_channel_stop(e2.ch, stopped, &e2);
    run_until(&e1.stopped, 1);
    run_until(&e2.stopped, 1);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frames_both_ways),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
