/* A libraft transport (struct raft_uv_transport, raft/uv.h) over mutual
 * TLS 1.3, so that cluster nodes authenticate each other and encrypt
 * (docs/CLUSTER.md "Authenticated cluster traffic"). Every node holds a
 * certificate of the cluster CA whose subject CN is "ledgermq-node-<ID>".
 *
 * Invariant: libraft only ever gets a stream whose peer proved, in a TLS
 * handshake verified against the cluster CA, that it is the member whose
 * id libraft is told: on connect the server's CN must name the dialled id;
 * on accept the peer id is taken from the client's certificate (never
 * from anything the peer says) and must be a configured member.
 *
 * libraft reads and writes a plain uv_stream_t: after the handshake the
 * transport makes a socketpair, hands one end to libraft as a uv_pipe_t
 * (raft_malloc'd: libraft closes and frees it) and relays between the
 * other end and the TLS session, with bounded write queues. A connection
 * must finish its handshake within handshake_ms, and at most 64 incoming
 * ones may be in their handshake at once (more are accepted and closed).
 *
 * Threads: the loop thread of lmq_raft_tls_init only. */
#ifndef LMQ_CLUSTER_RAFT_TLS_H
#define LMQ_CLUSTER_RAFT_TLS_H

#include <stddef.h>

#include <raft/uv.h>

#include "cluster/raft_node.h"

#define LMQ_RAFT_TLS_CN_PREFIX "ledgermq-node-"

struct lmq_raft_tls_options {
    const char *certfile; /* PEM: this node's certificate (chain may follow) */
    const char *keyfile;  /* PEM: its private key; must not be group/other accessible */
    const char *cafile;   /* PEM: the cluster CA */
    const struct lmq_raft_member *members; /* copied */
    size_t n_members;
    const char *bind_address; /* HOST:PORT to listen on; NULL = the address libraft gives */
    unsigned handshake_ms;    /* connect + handshake must finish within; 0 = 10000 */
    unsigned stuck_ms;        /* TCP_USER_TIMEOUT + keepalive (cluster/raft_tcp.h); 0 = 4000 */
};

/* Fills T with the TLS transport on LOOP (T->version, impl and the
 * methods). Returns 0, or -1 with a reason (naming the file that failed)
 * in ERR. */
int lmq_raft_tls_init(struct raft_uv_transport *t, uv_loop_t *loop,
                      const struct lmq_raft_tls_options *o, char *err, size_t errlen);

/* Frees what lmq_raft_tls_init allocated; call once libraft has closed
 * the transport (in raft_close's callback, like raft_uv_tcp_close). */
void lmq_raft_tls_close(struct raft_uv_transport *t);

#endif
