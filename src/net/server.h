/* The network side of ledgermqd: one libuv loop, the TCP listeners of the
 * config, and one connection object per socket that feeds received bytes to
 * the broker and writes its queued output with one writev per iteration.
 * Reads go into one shared 64 KiB buffer per loop; a connection keeps only
 * the unfinished tail of a packet, so an idle connection costs little.
 * Listeners may speak TLS and/or WebSocket through a per-connection
 * transport filter (net/transport.h, docs/TRANSPORTS.md).
 * Loop thread only. */
#ifndef LMQ_NET_SERVER_H
#define LMQ_NET_SERVER_H

#include "util/config.h"

#include <stddef.h>
#include <stdint.h>

struct lmq_server;
struct ledger;
struct registry;

/* Creates the loop and the broker (which opens and loads the store). CFG is
 * borrowed and must outlive the server. NULL with a reason in ERR. */
struct lmq_server *lmq_server_new(const struct lmq_config *cfg, char *err, size_t errlen);

/* Binds every listener and logs "listening on ADDR:PORT" for each (with the
 * port the OS chose for port 0). Returns 0 or -1 with a reason in ERR. */
int lmq_server_listen(struct lmq_server *s, char *err, size_t errlen);

/* Hands the node's ledger and device registry (borrowed; either may be
 * NULL) to the broker, with the server's worker pool. Before run. */
void lmq_server_set_ledger(struct lmq_server *s, struct ledger *ledger, struct registry *registry);

/* Runs until SIGINT/SIGTERM (SIGHUP: lmq_broker_reload), then stops accepting, flushes, commits the
 * store and returns 0. */
int lmq_server_run(struct lmq_server *s);

void lmq_server_free(struct lmq_server *s);

/* For the authentication layer, on the loop thread: TCTX is the transport
 * context the broker got in lmq_broker_client_new(). On a TLS listener
 * (also under WebSocket) with a cafile, after the handshake (any time
 * from CONNECT on), the client certificate's subject as one RFC 2253 line
 * and its public key (LMQ_TLS_KEY_ED25519: raw 32 bytes, the form the
 * device registry stores; LMQ_TLS_KEY_SPKI: DER) -- verified against the
 * listener's cafile. -1 when the connection has no client certificate
 * (plain TCP, no cafile, none sent); LMQ_FILTER_ELIMIT when the buffer is
 * too small. See net/tls.h. */
int lmq_server_peer_subject(const void *tctx, char *buf, size_t len);
int lmq_server_peer_key(const void *tctx, uint8_t *buf, size_t cap, size_t *len);

#endif
