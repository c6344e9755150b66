/* The cluster channel: framed messages between cluster members that are
 * not Raft traffic (cluster/channel_frame.h), today the forwarding of a
 * follower's ledger batches to the leader (docs/CLUSTER.md "Forwarding").
 *
 * Each member listens on its channel address: the host of its
 * `cluster_node` line and that port plus the configured offset. Streams
 * come from a libraft transport: with TLS files it is cluster/raft_tls
 * (mutual TLS 1.3, the peer's id taken from its verified certificate of
 * the cluster CA, a dialled node must present the certificate of the id
 * dialled, a certificate naming no configured member is refused), else
 * libraft's plain TCP transport (the peer says who it is: trusted
 * networks and tests only, as for Raft traffic). A process that is not a
 * configured member therefore cannot open a channel stream with TLS.
 *
 * Invariant: every frame handed to on_frame was decoded whole from a
 * stream whose peer id the transport established; a stream that sends a
 * frame that does not decode, or more than max_frame bytes in one frame,
 * is closed. Outgoing frames to a peer go over one connection per peer,
 * opened on demand; frames queued while it connects are bounded by
 * max_queue bytes.
 *
 * Threads: everything on the loop of lmq_channel_start. */
#ifndef LMQ_CLUSTER_CHANNEL_H
#define LMQ_CLUSTER_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "cluster/channel_frame.h"
#include "cluster/raft_node.h"

struct lmq_channel;

struct lmq_channel_options {
    uint64_t id;                           /* this member */
    const struct lmq_raft_member *members; /* Raft addresses (copied) */
    size_t n_members;
    unsigned port_offset; /* channel port = Raft port + this (1..65534) */
    const char *tls_certfile, *tls_keyfile, *tls_cafile; /* all or none */
    unsigned handshake_ms;                               /* 0 = 10000 */
    unsigned stuck_ms;                                   /* raft_tcp.h; 0 = 4000 */
    size_t max_frame;                                    /* 0 = LMQ_CHANNEL_MAX_FRAME */
    size_t max_queue; /* bytes queued for one peer before send fails; 0 = 2 max_frame */
    /* A whole frame from PEER on connection CONN (an id for
     * lmq_channel_reply). F's views are valid only during the call. */
    void (*on_frame)(void *ctx, uint64_t conn, uint64_t peer, const struct lmq_channel_frame *f);
    /* The outgoing connection to PEER failed or closed: frames sent to it
     * and not answered may be lost. May be NULL. */
    void (*on_down)(void *ctx, uint64_t peer);
    void *ctx;
};

/* The channel address of member M (its Raft host, port + OFFSET) into
 * OUT. 0, or -1 if the address is not HOST:PORT or the port overflows. */
int lmq_channel_address(const struct lmq_raft_member *m, unsigned offset, char *out, size_t cap);

/* Starts listening on this member's channel address. 0, or -1 with the
 * reason logged. */
int lmq_channel_start(uv_loop_t *loop, const struct lmq_channel_options *o,
                      struct lmq_channel **out);

/* Sends FRAME[0:LEN] (copied) to member PEER on the outgoing connection
 * to it (connecting first if there is none). 0, or -1 if PEER is not a
 * member, the queue is full or the channel is stopping. Delivery is not
 * confirmed: answers come as frames, a failure as on_down. */
int lmq_channel_send(struct lmq_channel *ch, uint64_t peer, const uint8_t *frame, size_t len);

/* Sends FRAME[0:LEN] (copied) back on connection CONN (from on_frame).
 * 0, or -1 if that connection is gone. */
int lmq_channel_reply(struct lmq_channel *ch, uint64_t conn, const uint8_t *frame, size_t len);

/* Closes the outgoing connection to PEER, if any (e.g. it stopped
 * answering); the next send opens a new one. on_down is not called. */
void lmq_channel_drop(struct lmq_channel *ch, uint64_t peer);

/* Closes every connection and the listener; DONE(CTX) (may be NULL) runs
 * once all are closed and CH is freed. No other call on CH after this. */
void lmq_channel_stop(struct lmq_channel *ch, void (*done)(void *ctx), void *ctx);

#endif
