/* The ledgermqd configuration: defaults, limits and the parser for the
 * Mosquitto-style config file (`key value` lines, `#` comments,
 * `listener PORT [ADDR]` opening a listener block whose per-listener keys
 * follow it). Every key, its default and its limits are documented in
 * docs/CONFIG.md; a key added here must be added there too.
 * Invariant: a struct lmq_config that lmq_config_load() accepted has every
 * value within its documented limits, so the rest of the broker may trust it. */
#ifndef LMQ_UTIL_CONFIG_H
#define LMQ_UTIL_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LMQ_MAX_LISTENERS 16
#define LMQ_MAX_LEDGER_TOPICS 64
#define LMQ_CONFIG_STR 256
#define LMQ_MAX_OPERATOR_KEYS 64
#define LMQ_OPERATOR_KEY_MAX 311 /* NOTE_VKEY_MAX: name(255)+'+'+8 hex+'+'+44 base64+NUL */
#define LMQ_MAX_CLUSTER_NODES 16
#define LMQ_CLUSTER_ADDRESS_MAX 128 /* HOST:PORT with its NUL (= LMQ_RAFT_ADDRESS_MAX) */

/* A static Raft member (`cluster_node ID HOST:PORT`, docs/CLUSTER.md). */
struct lmq_cluster_node {
    uint64_t id;                           /* >= 1, unique */
    char address[LMQ_CLUSTER_ADDRESS_MAX]; /* its Raft port, unique */
    unsigned line;                         /* config file line, 0 = from lmq_config_apply */
};

enum lmq_listener_protocol {
    LMQ_PROTO_MQTT = 0,
    LMQ_PROTO_WEBSOCKETS = 1,
};

struct lmq_listener_config {
    unsigned line;                  /* config file line of its `listener`; 0 = default/-p */
    uint16_t port;
    char addr[64];                  /* numeric IPv4/IPv6 address to bind */
    enum lmq_listener_protocol protocol;
    bool allow_anonymous;
    char certfile[PATH_MAX];        /* TLS (later issue); empty = plain */
    char keyfile[PATH_MAX];
    char cafile[PATH_MAX];
    bool require_certificate;
    uint8_t auth_methods;           /* LMQ_AUTH_M_* accepted at CONNECT (`auth` key) */
};

/* Authentication methods a listener accepts (`auth token,certificate,...`). */
#define LMQ_AUTH_M_TOKEN 0x01       /* CWT device token as the MQTT password */
#define LMQ_AUTH_M_CERT 0x02        /* TLS client certificate with a registered device key */
#define LMQ_AUTH_M_ED25519 0x04     /* MQTT 5 enhanced authentication ledgermq-ed25519 */
#define LMQ_AUTH_M_PASSWORD 0x08    /* username/password from password_file */
#define LMQ_AUTH_M_ALL 0x0f

/* A ledgered topic policy (`ledger_topic FILTER signed|attested
 * [late_uploads] [private]`). */
enum lmq_ledger_mode {
    LMQ_LEDGER_SIGNED = 1,          /* payload is a device COSE_Sign1 envelope */
    LMQ_LEDGER_ATTESTED = 2,        /* the broker attests the session's publish */
};

struct lmq_ledger_topic {
    char filter[LMQ_CONFIG_STR];    /* MQTT topic filter */
    uint16_t filter_len;
    uint8_t mode;                   /* enum lmq_ledger_mode */
    bool late_uploads;              /* signed: no clock skew check */
    bool private_payload;           /* record holds a salted digest; payload in the payload store */
    unsigned line;                  /* config file line, 0 = from lmq_config_apply */
};

enum lmq_sync_policy {
    LMQ_SYNC_ALWAYS = 0,            /* fdatasync before acknowledging */
    LMQ_SYNC_BATCH = 1,             /* ledger: sync per batch window; store: leave to the OS */
};

struct lmq_config {
    char source[PATH_MAX];          /* file it came from, or "(defaults)" */
    char data_dir[PATH_MAX];
    int log_level;                  /* enum lmq_log_level */

    struct lmq_listener_config listeners[LMQ_MAX_LISTENERS];
    size_t n_listeners;

    /* Broker limits. */
    uint32_t max_connections;
    uint32_t max_packet_size;
    uint32_t max_inflight_messages;
    uint32_t max_queued_messages;
    uint64_t max_queued_bytes;
    uint32_t max_topic_length;
    uint32_t max_topic_levels;
    uint32_t max_retained_messages;
    uint32_t max_subscriptions_per_client;
    uint32_t max_client_id_length;
    uint16_t max_keepalive;
    uint32_t max_topic_alias;       /* MQTT 5 topic aliases per connection and direction */
    uint32_t connect_timeout;       /* seconds allowed between accept and CONNECT */
    bool allow_zero_length_clientid;
    uint32_t persistent_client_expiration; /* seconds; 0 = never expire */
    enum lmq_sync_policy store_sync;
    uint32_t sys_interval;          /* seconds between $SYS updates; 0 = off */

    /* Ledger. */
    char ledger_origin[LMQ_CONFIG_STR];
    enum lmq_sync_policy ledger_sync;
    uint32_t ledger_batch_max;
    uint32_t ledger_batch_ms;
    /* Ledgered topics: the first policy (in file order) whose filter
     * matches a topic name applies. */
    struct lmq_ledger_topic ledger_topics[LMQ_MAX_LEDGER_TOPICS];
    size_t n_ledger_topics;
    uint32_t ledger_queue_messages; /* ingest queue bound (incl. pending verifications) */
    uint64_t ledger_queue_bytes;
    uint32_t ledger_clock_skew;     /* seconds a signed timestamp may differ from broker time */
    uint32_t ledger_dup_window; /* attested records remembered for DUP resends; 0 = off */
    uint32_t ledger_api_max_requests; /* $ledger/ requests worked on at once */
    char ledger_node_id[LMQ_CONFIG_STR]; /* ingress node in records; empty = host name */

    /* Device registry: trusted operator verifier keys (repeatable
     * `operator_key VKEY`; syntax checked here, key ID by the registry). */
    char operator_keys[LMQ_MAX_OPERATOR_KEYS][LMQ_OPERATOR_KEY_MAX + 1];
    size_t n_operator_keys;

    /* Cluster (docs/CLUSTER.md): no cluster_node line = a single node
     * without Raft, exactly as before. */
    struct lmq_cluster_node cluster_nodes[LMQ_MAX_CLUSTER_NODES];
    size_t n_cluster_nodes;
    uint64_t cluster_self;               /* this node's id; 0 = unset */
    uint32_t cluster_election_ms;        /* Raft election timeout */
    uint32_t cluster_heartbeat_ms;       /* Raft heartbeat interval, < election */
    bool cluster_forward;                /* followers forward ledgered batches to the leader */
    uint32_t cluster_channel_port_offset; /* cluster channel port = Raft port + this */
    uint32_t cluster_forward_timeout_ms; /* a forwarded batch's bound, then 0x97 */
    uint32_t cluster_forward_max;        /* forwarded batches a leader holds at once */
    uint32_t cluster_snapshot_threshold; /* Raft entries between snapshots */
    uint32_t cluster_snapshot_trailing;  /* Raft entries kept behind a snapshot */
    char cluster_tls_cert[PATH_MAX];     /* mutual TLS between nodes: all three or none */
    char cluster_tls_key[PATH_MAX];
    char cluster_tls_ca[PATH_MAX];
    bool cluster_join; /* join a running cluster (`cluster add`), never bootstrap */

    /* Authentication and access control (docs/BROKER.md). */
    char password_file[PATH_MAX];   /* empty = none */
    char acl_file[PATH_MAX];        /* empty = everything allowed */
    uint32_t token_clock_skew;      /* seconds of clock difference allowed for token times */
    uint32_t token_max_lifetime;    /* seconds: a token's exp - iat at most */
    uint32_t token_replay_max;      /* accepted token ids remembered until their exp */
    uint32_t max_auth_pending;      /* CONNECTs waiting for a credential check at once */
};

/* Fills every field with its default (no listener: lmq_config_finish adds
 * 127.0.0.1:1883 when the file named none). */
void lmq_config_defaults(struct lmq_config *cfg);

/* Reads PATH into CFG (which must hold defaults). On error returns -1 and
 * writes "PATH:LINE: reason" into ERR. Unknown keys and bad values are
 * errors. */
int lmq_config_load(struct lmq_config *cfg, const char *path, char *err, size_t errlen);

/* Applies one `key value...` line (no comment, already trimmed); used by the
 * file loader and by tests. Returns -1 with the reason in ERR. */
int lmq_config_apply(struct lmq_config *cfg, const char *line, char *err, size_t errlen);

/* Applies command-line overrides (port > 0 replaces the first listener's
 * port, data_dir non-NULL replaces data_dir), adds the default listener if
 * none, and checks cross-key constraints. Returns -1 with a reason in ERR. */
int lmq_config_finish(struct lmq_config *cfg, int port, const char *data_dir, char *err,
                      size_t errlen);

#endif
