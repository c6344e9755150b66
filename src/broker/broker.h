/* The MQTT broker core: sessions, subscriptions, retained messages, wills,
 * QoS flows, offline queues and routing. It knows nothing of sockets: the
 * transport (src/net) feeds it the bytes of a connection and it queues the
 * bytes to send in the connection's outq, then asks the transport to flush
 * or close through struct lmq_transport.
 *
 * Once per loop iteration the transport calls lmq_broker_flush(): it
 * commits the iteration's store transaction (group commit), then releases
 * the acks that waited for it and hands every connection with output to
 * transport->flush. So an ack never leaves before the state it confirms is
 * durable. Loop thread only. */
#ifndef LMQ_BROKER_BROKER_H
#define LMQ_BROKER_BROKER_H

#include "broker/outq.h"
#include "util/config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lmq_broker;
struct lmq_client;
struct ledger;
struct registry;
struct lmq_workpool;
struct sockaddr;

/* What the daemon hands the broker besides the config: the node's ledger
 * and device registry (either may be NULL: no ledger, or a damaged one that
 * is not served) and the worker pool for CPU work kept off the loop thread
 * (NULL in unit tests: such work then runs inline). Borrowed; they outlive
 * the broker. */
struct lmq_broker_services {
    struct ledger *ledger;
    struct registry *registry;
    struct lmq_workpool *pool;
};

/* Callbacks into the transport. TCTX is what lmq_broker_client_new got. */
struct lmq_transport {
    /* The client has bytes in its outq: write what you can now. */
    void (*flush)(void *tctx);
    /* Close the connection after writing what is queued. The transport must
     * then stop feeding input and eventually call lmq_broker_client_free. */
    void (*close)(void *tctx);
    /* Stop reading the connection (flow control). */
    void (*pause)(void *tctx);
    /* Read again: first feed the bytes kept from before the pause (through
     * lmq_broker_input, which may pause again), then resume reading. */
    void (*resume)(void *tctx);
    /* The Ed25519 public key of the client's TLS certificate (verified
     * against the listener's cafile) into PK: 0; 1 when the certificate
     * has another key type; -1 without a client certificate. May be NULL. */
    int (*peer_ed25519)(void *tctx, uint8_t pk[32]);
};

struct lmq_broker_stats {
    uint64_t msgs_in, msgs_out;
    uint64_t bytes_in, bytes_out;
    uint64_t dropped_qos0;      /* slow consumer */
    uint64_t dropped_queue_full;
    uint64_t dropped_too_large; /* over a client's MQTT 5 maximum packet size */
    uint64_t clients, sessions, retained, subscriptions;
};

/* Creates the broker for CFG (borrowed; must outlive the broker) and opens
 * and loads the store under cfg->data_dir. Returns NULL with a reason in
 * ERR on failure. */
struct lmq_broker *lmq_broker_new(const struct lmq_config *cfg, const struct lmq_transport *tr,
                                  char *err, size_t errlen);
/* Commits and closes the store and frees everything. Clients must be gone. */
void lmq_broker_free(struct lmq_broker *b);

/* A new connection on listener LC (borrowed; lives as long as the config).
 * PEER is the client's address (AF_INET or AF_INET6, copied; borrowed for
 * the call), or NULL when unknown: log lines print it. Returns NULL if the
 * broker refuses it (max_connections), after logging why. */
struct lmq_client *lmq_broker_client_new(struct lmq_broker *b, void *tctx,
                                         const struct lmq_listener_config *lc,
                                         const struct sockaddr *peer);

/* Feeds received bytes. Handles every complete packet in DATA and stores in
 * *CONSUMED how many bytes were used; the transport keeps the rest and
 * passes it again with more data. Returns 0, or -1 when the connection
 * must be closed (the broker has already called transport->close). */
int lmq_broker_input(struct lmq_client *c, const uint8_t *data, size_t len, size_t *consumed);

/* The transport lost the connection (EOF, error): publish the will etc.
 * Idempotent; lmq_broker_client_free must still follow. */
void lmq_broker_client_lost(struct lmq_client *c, const char *why);

/* The socket is closed: release the client. */
void lmq_broker_client_free(struct lmq_client *c);

/* The client's queue of bytes to send (owned by the broker). */
struct lmq_outq *lmq_broker_client_outq(struct lmq_client *c);
/* The transport wrote N bytes for the client (statistics). */
void lmq_broker_client_wrote(struct lmq_client *c, size_t n);

/* The transport can write again (its previous write completed): the client
 * is flushed by the next lmq_broker_flush(). */
void lmq_broker_client_kick(struct lmq_client *c);

/* Group commit and flush; see the file comment. */
void lmq_broker_flush(struct lmq_broker *b);

/* Once per second: keep-alive and connect timeouts, trims idle buffers,
 * expires persistent sessions. */
void lmq_broker_tick(struct lmq_broker *b);

/* Shutdown: closes every client without publishing wills (the sessions
 * and their state stay in the store for the next start). The caller then
 * runs lmq_broker_flush() so queued output and the store batch go out. */
void lmq_broker_shutdown(struct lmq_broker *b);

/* Sets the services (copied; see struct lmq_broker_services). Call before
 * the first client connects. */
void lmq_broker_set_services(struct lmq_broker *b, const struct lmq_broker_services *svc);

/* SIGHUP: re-reads the files the config names (password file, ACL file).
 * A file that does not parse keeps the rules in force, with a log line
 * naming FILE:LINE and the reason. */
void lmq_broker_reload(struct lmq_broker *b);

void lmq_broker_get_stats(const struct lmq_broker *b, struct lmq_broker_stats *st);

#endif
