/* The broker's durable state: retained messages, persistent sessions, their
 * subscriptions, queued and inflight QoS 1/2 messages and the incoming QoS 2
 * packet ids not yet released, kept in LMDB under <data_dir>/store/.
 * Tables, key and value encodings and the crash/damage behaviour are in
 * docs/STORE.md.
 *
 * Invariant: what lmq_store_commit() returned 0 for survives kill -9 (and,
 * with LMQ_SYNC_ALWAYS, a power loss); a damaged record never stops the
 * broker from starting: it is reported, skipped and deleted, the rest kept.
 *
 * Threads: a struct lmq_store belongs to ONE thread (the event loop). No
 * function here may be called concurrently on the same store; different
 * stores (different data dirs) are independent.
 *
 * Group commit: the broker calls lmq_store_begin() once per event-loop
 * iteration, makes every change of that iteration, then lmq_store_commit(),
 * and only after commit returns 0 sends the acks (PUBACK, PUBREC, PUBCOMP,
 * SUBACK...) that the batch covers. A batch without changes costs nothing:
 * the LMDB write transaction is opened lazily by the first change.
 *
 * Strings (client ids, topics, filters) are byte strings with an explicit
 * length, not NUL-terminated; every pointer a function takes is only read
 * during the call (the store copies what it keeps). */
#ifndef LMQ_BROKER_STORE_H
#define LMQ_BROKER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/config.h"

/* Error codes (all negative; 0 is success). */
enum lmq_store_error {
    LMQ_STORE_EFULL = -4001,     /* the store reached options.map_size_max: refuse
                                    this change (e.g. the PUBLISH, reason code
                                    0x97 quota exceeded / no PUBACK); the batch
                                    stays usable without this one change */
    LMQ_STORE_ELOCKED = -4002,   /* another process holds <data_dir>/store/LOCK */
    LMQ_STORE_EIO = -4003,       /* I/O or LMDB failure; the details were logged */
    LMQ_STORE_ENOMEM = -4004,
    LMQ_STORE_EINVAL = -4005,    /* bad argument: no batch open, a batch already
                                    open, qos/state out of range, bad lengths */
    LMQ_STORE_ENOTFOUND = -4006, /* the record to delete does not exist */
    LMQ_STORE_ENOMSG = -4007,    /* lmq_store_qmsg_put: msg_id names no stored body
                                    (it went with its last reference, or its batch
                                    failed): add the body again */
};

/* A short constant English description of an lmq_store_error code, of a
 * decoder code from broker/store_record.h, or "unknown error". */
const char *lmq_store_strerror(int rc);

/* How the store is opened. */
struct lmq_store_options {
    /* LMQ_SYNC_ALWAYS: a commit is on disk (fdatasync) when lmq_store_commit
     * returns. LMQ_SYNC_BATCH: commits are written to the OS (they survive
     * kill -9 of the broker, not a power loss) and flushed by
     * lmq_store_flush(), which the broker calls on a timer and at shutdown. */
    enum lmq_sync_policy sync;
    uint64_t map_size_initial;   /* bytes; 0 = 64 MiB */
    uint64_t map_size_max;       /* bytes; 0 = 4 GiB. The map doubles on demand
                                    up to this; beyond it changes fail with
                                    LMQ_STORE_EFULL */
};

/* Fills OPT with the defaults (LMQ_SYNC_ALWAYS, 64 MiB, 4 GiB). */
void lmq_store_options_default(struct lmq_store_options *opt);

struct lmq_store;

/* Opens (creating if needed) the store in <DATA_DIR>/store/, creating
 * DATA_DIR too. Takes an exclusive flock on <DATA_DIR>/store/LOCK and writes
 * our pid into it: if another process holds it, fails with LMQ_STORE_ELOCKED
 * and ERR names that process's pid.
 *
 * Never refuses to start because of damage: if the LMDB environment itself
 * cannot be opened or is inconsistent (garbage or truncated data.mdb,
 * unknown format), its files are moved to <DATA_DIR>/store/damaged-<UTC
 * time>/, an ERROR line says so and that every retained message, persistent
 * session and queued message in it is lost (the files are kept there for
 * forensics), and an empty store is opened. A broker that starts empty
 * serves its clients, which reconnect and resubscribe; a broker that refuses
 * to start serves nobody and needs an operator anyway. Every table is then
 * walked once (LMDB does not checksum pages): if a B-tree is damaged, the
 * readable records are salvaged into a fresh environment that replaces it
 * (the damaged files go to damaged-<time>/ too), with ERROR lines saying
 * what was lost. Damage inside individual records is handled record by
 * record by lmq_store_load(). Call it at startup (it may take a while on a
 * big store: the walk reads everything once).
 *
 * Returns 0 and *OUT (free with lmq_store_close), or a negative code with a
 * reason in ERR (ERRLEN may be 0). Failures other than ELOCKED are
 * environment problems (permissions, disk full, out of memory). */
int lmq_store_open(const char *data_dir, const struct lmq_store_options *opt,
                   struct lmq_store **out, char *err, size_t errlen);

/* Aborts any open batch (its changes are lost), flushes to disk, releases the
 * lock and frees S. NULL is ignored. */
void lmq_store_close(struct lmq_store *s);

/* ---- Records ---- */

/* A message body. On input (lmq_store_msg_add, lmq_store_retained_put) the
 * caller owns the buffers; on output (lmq_store_load callbacks) the pointers
 * are into the store and valid only during the callback. */
struct lmq_store_message {
    const char *topic;
    size_t topic_len;            /* 1..65535 */
    const void *payload;
    size_t payload_len;          /* 0..268435455 */
    const void *props;           /* MQTT 5 PUBLISH properties, encoded as on the
                                    wire (without the length prefix); opaque here */
    size_t props_len;
    uint8_t qos;                 /* 0..2 */
    bool retain;
    uint64_t expiry_at;          /* unix seconds after which the message is dropped
                                    (v5 message expiry); 0 = never */
};

/* A persistent session's metadata. */
struct lmq_store_session {
    const char *client_id;
    size_t client_id_len;        /* 1..65535 */
    uint8_t protocol_version;    /* 3 (3.1), 4 (3.1.1) or 5 */
    uint32_t expiry_interval;    /* seconds; UINT32_MAX = never expires */
    uint64_t disconnected_at;    /* unix seconds; 0 = connected when written
                                    (after a crash: treat the restart time as
                                    the disconnect time) */
    /* An MQTT 5 delayed will waiting with the offline session (its will
     * delay interval running): has_will, and then the will message (topic,
     * payload, props, qos, retain; its expiry_at is not stored: 0), when it
     * is due and its message expiry interval. Owned like client_id. */
    bool has_will;
    struct lmq_store_message will;
    uint64_t will_at;            /* unix seconds the will is due */
    uint32_t will_expiry;        /* its message expiry interval (s), 0 = none */
};

/* The session expires at disconnected_at + expiry_interval; returns
 * UINT64_MAX for "never", and uses NOW as disconnect time when
 * disconnected_at is 0. */
uint64_t lmq_store_session_expires_at(const struct lmq_store_session *sess, uint64_t now);

/* One subscription of a session. */
struct lmq_store_sub {
    const char *filter;
    size_t filter_len;           /* 1..65535 */
    uint8_t options;             /* MQTT 5 subscription options byte: bits 0-1
                                    QoS, 2 no local, 3 retain as published, 4-5
                                    retain handling; 3.1.1: the granted QoS */
    uint32_t sub_id;             /* v5 subscription identifier, 0 = none */
};

/* State of a message in a session's queue. */
enum lmq_store_qstate {
    LMQ_STORE_QUEUED = 0,        /* not yet sent */
    LMQ_STORE_AWAIT_ACK = 1,     /* PUBLISH sent with packet_id; awaiting PUBACK
                                    (QoS 1) or PUBREC (QoS 2) */
    LMQ_STORE_AWAIT_COMP = 2,    /* QoS 2: PUBREL sent, awaiting PUBCOMP */
};

/* One entry of a session's queue (queued or inflight), ordered by seq. */
struct lmq_store_entry {
    uint64_t seq;                /* per-session sequence number chosen by the
                                    broker, strictly increasing in queue order;
                                    load reports max_seq so the broker resumes
                                    at max_seq + 1 */
    uint64_t msg_id;             /* from lmq_store_msg_add; may be 0 only in
                                    state AWAIT_COMP (the body is no longer
                                    needed once PUBREL was sent) */
    uint8_t qos;                 /* 1 or 2: the QoS of this delivery */
    uint8_t state;               /* enum lmq_store_qstate */
    uint16_t packet_id;          /* 0 while QUEUED, else 1..65535 */
    bool dup;                    /* send with DUP set (it was sent before) */
    uint32_t msg_size;           /* output only (load): the body's size in bytes
                                    (topic + payload + properties) */
};

/* ---- Batches ---- */

/* Opens a batch. Costs nothing until the first change. EINVAL if a batch is
 * already open. */
int lmq_store_begin(struct lmq_store *s);

/* Ends the batch: commits its changes and, with LMQ_SYNC_ALWAYS, makes them
 * durable (fdatasync) before returning. Free if the batch made no change.
 * Message bodies added in the batch that no queue entry references are
 * dropped. Returns 0, LMQ_STORE_EFULL (the map limit was reached while
 * committing, or the disk is full: the WHOLE batch is lost; the broker must
 * not send its acks and should disconnect the clients concerned), or
 * LMQ_STORE_EIO (same, logged).
 * The batch is closed in every case. */
int lmq_store_commit(struct lmq_store *s);

/* Drops the open batch's changes (nothing was written). No-op without one. */
void lmq_store_abort(struct lmq_store *s);

/* Forces everything committed so far to disk (fdatasync). For
 * LMQ_SYNC_BATCH: call on a timer and at shutdown. Cheap with
 * LMQ_SYNC_ALWAYS. Must not be called with a batch open (EINVAL). */
int lmq_store_flush(struct lmq_store *s);

/* ---- Changes (only inside a batch; EINVAL otherwise) ----
 * Each returns 0, LMQ_STORE_EFULL (this one change was not made; the rest of
 * the batch is intact), EINVAL, ENOMEM or EIO (the batch is then aborted and
 * further changes fail with EINVAL until commit/abort). */

/* Sets (replaces) the retained message of M->topic. M->retain is ignored. */
int lmq_store_retained_put(struct lmq_store *s, const struct lmq_store_message *m);
/* Deletes the retained message of TOPIC (ENOTFOUND if none). */
int lmq_store_retained_del(struct lmq_store *s, const char *topic, size_t topic_len);

/* Creates or replaces a session's metadata (subscriptions and queue kept). */
int lmq_store_session_put(struct lmq_store *s, const struct lmq_store_session *sess);
/* Deletes a session with all its subscriptions, queue entries (message
 * bodies lose a reference) and incoming QoS 2 ids. ENOTFOUND if nothing was
 * stored for it. */
int lmq_store_session_del(struct lmq_store *s, const char *client_id, size_t client_id_len);

/* Adds or replaces (same filter) a subscription. */
int lmq_store_sub_put(struct lmq_store *s, const char *client_id, size_t client_id_len,
                      const struct lmq_store_sub *sub);
int lmq_store_sub_del(struct lmq_store *s, const char *client_id, size_t client_id_len,
                      const char *filter, size_t filter_len);

/* Stores one message body once, whatever the number of sessions it is
 * queued for, and returns its id (never 0) in *ID. The body lives as long
 * as a queue entry references it; if no entry of this batch references it
 * by commit, it is dropped. Ids are never reused while the store is open
 * (a restart may reuse the id of a body deleted before it; in-memory
 * caches of ids are rebuilt from lmq_store_load anyway). */
int lmq_store_msg_add(struct lmq_store *s, const struct lmq_store_message *m, uint64_t *id);

/* Adds or replaces (same seq) a session queue entry: new message queued,
 * sent (AWAIT_ACK + packet_id, dup), PUBREC received (AWAIT_COMP, msg_id
 * may become 0). Maintains the bodies' reference counts. E->msg_size is
 * ignored. ENOMSG if E->msg_id is not a stored body (nothing changed). */
int lmq_store_qmsg_put(struct lmq_store *s, const char *client_id, size_t client_id_len,
                       const struct lmq_store_entry *e);

/* The convenient form for a broker that caches a body's store id on its
 * in-memory message: *MSG_ID is that cache (0 = not stored yet). If it is 0
 * or names a body that is gone (its last reference was deleted earlier,
 * e.g. a retained message queued again later), M is stored first (one
 * lmq_store_msg_add) and *MSG_ID updated; then the entry E (whose msg_id is
 * ignored) is put with it. Returns like lmq_store_qmsg_put. M may be NULL
 * only for an AWAIT_COMP entry without body (*MSG_ID then ignored). */
int lmq_store_qmsg_put_msg(struct lmq_store *s, const char *client_id, size_t client_id_len,
                           const struct lmq_store_entry *e, const struct lmq_store_message *m,
                           uint64_t *msg_id);
/* Deletes an entry (PUBACK / PUBCOMP received, message expired or dropped);
 * the body goes with its last reference. ENOTFOUND if absent. */
int lmq_store_qmsg_del(struct lmq_store *s, const char *client_id, size_t client_id_len,
                       uint64_t seq);

/* Incoming QoS 2: PACKET_ID was received from the client and PUBREC sent;
 * kept until the client's PUBREL (then _del) so a resent PUBLISH is not
 * delivered twice, across restarts. */
int lmq_store_qos2_in_put(struct lmq_store *s, const char *client_id, size_t client_id_len,
                          uint16_t packet_id);
int lmq_store_qos2_in_del(struct lmq_store *s, const char *client_id, size_t client_id_len,
                          uint16_t packet_id);

/* ---- Startup ---- */

/* Counts of one session's stored state, given with its session callback. */
struct lmq_store_session_stats {
    uint32_t n_subs;
    uint32_t n_msgs;             /* queue entries, every state */
    uint32_t n_inflight;         /* of which AWAIT_ACK or AWAIT_COMP */
    uint64_t bytes;              /* sum of msg_size of the entries */
    uint64_t max_seq;            /* 0 if the queue is empty */
    uint32_t n_qos2_in;
};

/* Return values of a visitor callback. */
#define LMQ_STORE_VISIT_KEEP 0   /* keep the record */
#define LMQ_STORE_VISIT_DROP 1   /* delete the record (expired); for a session:
                                    the whole session, none of its children
                                    are visited */

/* Load callbacks; any may be NULL. Pointers are valid only during the call.
 * A callback returns KEEP, DROP, or a negative value that stops the load
 * (returned by lmq_store_load). Callbacks must not call the store. */
struct lmq_store_visitor {
    int (*retained)(void *ctx, const struct lmq_store_message *m);
    int (*session)(void *ctx, const struct lmq_store_session *sess,
                   const struct lmq_store_session_stats *stats);
    int (*sub)(void *ctx, const struct lmq_store_session *sess, const struct lmq_store_sub *sub);
    /* M is NULL when E->msg_id is 0 (AWAIT_COMP without body). */
    int (*session_msg)(void *ctx, const struct lmq_store_session *sess,
                       const struct lmq_store_entry *e, const struct lmq_store_message *m);
    int (*qos2_in)(void *ctx, const struct lmq_store_session *sess, uint16_t packet_id);
};

/* Reads everything back, once, after lmq_store_open and before the first
 * batch: every retained message (topic order); then per session (client id
 * order): the session, its subscriptions, its queue entries in seq order,
 * its incoming QoS 2 ids. Damaged or undecodable records (and children of a
 * missing or damaged session, entries whose body is missing or damaged,
 * wrong reference counts) are logged with table, printable key and defect,
 * skipped, and repaired (deleted or recounted) in one transaction that is
 * committed at the end; an INFO line sums up what was loaded. Returns 0, a
 * callback's negative value, or a negative lmq_store_error. */
int lmq_store_load(struct lmq_store *s, const struct lmq_store_visitor *v, void *ctx);

#endif
