/* Tests of src/cluster/raft_tcp.c: the stuck timeout derived from the
 * election timeout; the socket options it sets; and the plain transport's
 * connect deadline: a connect whose SYNs get no answer (a loopback
 * listener whose accept queue is full drops them) is reported to the
 * caller as RAFT_NOCONNECTION at its deadline, long before the kernel
 * would give up, and the transport still closes with nothing left on the
 * loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include <raft.h>

#include "cluster/raft_tcp.h"

static void test_stuck_timeout_from_election(void **state)
{
    (void)state;
    assert_int_equal(lmq_tcp_stuck_timeout_ms(0), 4000);
    assert_int_equal(lmq_tcp_stuck_timeout_ms(100), 1000);
    assert_int_equal(lmq_tcp_stuck_timeout_ms(500), 2000);
    assert_int_equal(lmq_tcp_stuck_timeout_ms(60000), 240000);
}

static int opt(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof v;
    assert_int_equal(getsockopt(fd, level, name, &v, &len), 0);
    return v;
}

static void test_socket_options(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    uv_tcp_t tcp;
    assert_int_equal(uv_tcp_init_ex(&loop, &tcp, AF_INET), 0);
    assert_int_equal(lmq_tcp_set_stuck_timeout(&tcp, 2500), 0);
    uv_os_fd_t fd;
    assert_int_equal(uv_fileno((uv_handle_t *)&tcp, &fd), 0);
    assert_int_equal(opt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), 2500);
    assert_int_equal(opt(fd, SOL_SOCKET, SO_KEEPALIVE), 1);
    assert_int_equal(opt(fd, IPPROTO_TCP, TCP_KEEPIDLE), 1);
    assert_int_equal(opt(fd, IPPROTO_TCP, TCP_KEEPINTVL), 1);
    assert_int_equal(opt(fd, IPPROTO_TCP, TCP_KEEPCNT), 3);
    uv_close((uv_handle_t *)&tcp, NULL);
    /* a handle without a socket yet: refused, not a crash */
    uv_tcp_t none;
    assert_int_equal(uv_tcp_init(&loop, &none), 0);
    assert_int_equal(lmq_tcp_set_stuck_timeout(&none, 2500), -1);
    uv_close((uv_handle_t *)&none, NULL);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

struct deadline_run {
    int calls, status;
    bool stream;
    bool timed_out, closed;
    struct raft_uv_transport t;
    uv_timer_t bound;
};

static void connected(struct raft_uv_connect *req, struct uv_stream_s *stream, int status)
{
    struct deadline_run *r = req->data;
    r->calls++;
    r->status = status;
    r->stream = stream != NULL;
    uv_timer_stop(&r->bound);
    uv_close((uv_handle_t *)&r->bound, NULL);
}

static void transport_closed(struct raft_uv_transport *t)
{
    struct deadline_run *r = t->data;
    r->closed = true;
}

static void bound_hit(uv_timer_t *t)
{
    struct deadline_run *r = t->data;
    r->timed_out = true;
    uv_close((uv_handle_t *)t, NULL);
}

static void test_connect_deadline(void **state)
{
    (void)state;
    /* a listener with a full accept queue: further SYNs are dropped */
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t alen = sizeof a;
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &alen), 0);
    assert_int_equal(listen(l, 0), 0);
    int fill[4];
    for (int i = 0; i < 4; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        (void)connect(fill[i], (struct sockaddr *)&a, sizeof a);
    }
    usleep(200 * 1000);
    char address[64];
    snprintf(address, sizeof address, "127.0.0.1:%u", (unsigned)ntohs(a.sin_port));

    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct deadline_run r = {0};
    r.t.data = &r;
    assert_int_equal(lmq_raft_tcp_init(&r.t, &loop, 300), 0);
    assert_int_equal(r.t.init(&r.t, 1, "127.0.0.1:1"), 0);
    struct raft_uv_connect req = {.data = &r};
    uv_timer_init(&loop, &r.bound);
    r.bound.data = &r;
    uv_timer_start(&r.bound, bound_hit, 20000, 0); /* the kernel: a minute or more */
    assert_int_equal(r.t.connect(&r.t, &req, 2, address, connected), 0);
    while (r.calls == 0 && !r.timed_out)
        uv_run(&loop, UV_RUN_ONCE);
    assert_false(r.timed_out);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, RAFT_NOCONNECTION);
    assert_false(r.stream);
    /* the abandoned attempt ends with the transport; no second call */
    r.t.close(&r.t, transport_closed);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_true(r.closed);
    assert_int_equal(r.calls, 1);
    lmq_raft_tcp_close(&r.t);
    assert_int_equal(uv_loop_close(&loop), 0);
    for (int i = 0; i < 4; i++)
        close(fill[i]);
    close(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stuck_timeout_from_election),
        cmocka_unit_test(test_socket_options),
        cmocka_unit_test(test_connect_deadline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
