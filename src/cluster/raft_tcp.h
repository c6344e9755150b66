/* Stuck cluster connections get closed: a TCP connection whose peer is
 * cut off otherwise sits in TCP's exponential retransmission backoff, and
 * a healed node hears from the leader only at the next retransmission
 * (tens of seconds after a long cut; docs/CLUSTER.md "Partitions").
 *
 * lmq_tcp_set_stuck_timeout sets TCP_USER_TIMEOUT (data unacknowledged
 * for that long closes the connection with ETIMEDOUT) and keepalive
 * probes every second (so an idle connection to a vanished peer goes the
 * same way). raft_tls calls it on its own sockets; lmq_raft_tcp_init is
 * libraft's plain TCP transport (raft_uv_tcp) wrapped so that it is
 * called on every stream it connects or accepts. libraft reconnects a
 * closed connection on its own.
 *
 * Threads: the loop thread of the transport. */
#ifndef LMQ_CLUSTER_RAFT_TCP_H
#define LMQ_CLUSTER_RAFT_TCP_H

#include <uv.h>

#include <raft/uv.h>

/* The stuck timeout for ELECTION_MS (cluster_election_ms): four election
 * timeouts, at least 1000 ms; 0 -> the value for 1000. */
unsigned lmq_tcp_stuck_timeout_ms(unsigned election_ms);

/* Sets TCP_USER_TIMEOUT = MS and keepalive on TCP's socket. Returns 0, or
 * -1 (errno set) if the socket refused an option (logged by the caller). */
int lmq_tcp_set_stuck_timeout(uv_tcp_t *tcp, unsigned ms);

/* Fills T with libraft's TCP transport on LOOP wrapped as above, STUCK_MS
 * from lmq_tcp_stuck_timeout_ms. T->data stays the caller's. Returns 0 or
 * a libraft error code. */
int lmq_raft_tcp_init(struct raft_uv_transport *t, uv_loop_t *loop, unsigned stuck_ms);

/* raft_uv_tcp_set_bind_address for such a T (before its init method). */
int lmq_raft_tcp_set_bind_address(struct raft_uv_transport *t, const char *address);

/* Frees what lmq_raft_tcp_init allocated; call once libraft has closed
 * the transport (like raft_uv_tcp_close). */
void lmq_raft_tcp_close(struct raft_uv_transport *t);

#endif
