/* The ledger's MQTT face: the broker's own `$ledger/...` topics
 * (docs/FORMATS.md "Ledger topics"):
 *   $ledger/checkpoint          retained: the latest signed checkpoint
 *   $ledger/blocks              each committed block header (JSON)
 *   $ledger/receipts/{client}   the receipt of each committed message of
 *                               that client (only it may subscribe)
 *   $ledger/proof               MQTT 5 request: index or leaf hash -> receipt
 *   $ledger/consistency         MQTT 5 request: "OLD NEW" -> consistency proof
 *   $ledger/registry            MQTT 5 request: "show DEVICEID" or "list
 *                               [AFTER_ID] [LIMIT]" -> the device / a page
 *                               of devices (JSON of `ledgermq device
 *                               show|list`), read from the registry index
 *   $ledger/admin/register|revoke|rotate
 *                               MQTT 5 request: an operator-signed registry
 *                               record -> {"index": N} or the refusal
 *   $ledger/admin/cluster       MQTT 5 request from a password_file user:
 *                               a membership change ({"op": "add", ...},
 *                               cluster/raft_admin.h) -> the committer's
 *                               JSON reply; 0x97 on a follower
 * Clients may not publish to any other $ledger/ topic.
 *
 * The log is read through a read-only handle of its own (the read-write one
 * belongs to the pipeline's committer thread), refreshed after each commit
 * event. Proofs and receipts are built on the worker pool (inline without
 * one), under one mutex that guards that handle and the leaf-hash index
 * (<data_dir>/leafindex/, LMDB, derived from the log and rebuilt when it
 * does not match it); replies are published on the loop thread in the
 * jobs' DONE. Receipt jobs run one at a time, in commit order.
 *
 * Loop thread only, unless a comment says otherwise. */
#ifndef LMQ_BROKER_LEDGER_API_H
#define LMQ_BROKER_LEDGER_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/broker.h"
#include "identity/device_id.h"
#include "mqtt/codec.h"

#define LMQ_LEDGER_TOPIC_PREFIX "$ledger/"
#define LMQ_LEDGER_RECEIPTS_PREFIX "$ledger/receipts/"

struct lmq_ledger_api;

/* Opens the read-only ledger handle and the leaf-hash index under
 * CFG->data_dir, publishes the latest checkpoint (retained) and starts
 * bringing the index up to date on the pool. SVC->ledger must be non-NULL.
 * NULL (logged) if the log cannot be opened read-only. */
struct lmq_ledger_api *lmq_ledger_api_new(struct lmq_broker *b, const struct lmq_config *cfg,
                                          const struct lmq_broker_services *svc);
/* The pool changed (the server sets NULL before freeing it: work runs
 * inline from then on). */
void lmq_ledger_api_set_pool(struct lmq_ledger_api *a, struct lmq_workpool *pool);
/* After the pool is gone. NULL is allowed. */
void lmq_ledger_api_free(struct lmq_ledger_api *a);

/* A PUBLISH from a client to a topic starting with "$ledger/". */
struct lmq_ledger_api_req {
    const char *client_id; /* NUL-terminated */
    struct mqtt_str topic;
    struct mqtt_bin payload;
    const struct mqtt_props *props; /* MQTT 5 properties, NULL under 3.1.1 */
    uint8_t qos;
    bool device; /* the session's principal is a device (never an operator) */
    bool user;   /* the session logged in as a password_file user (an operator) */
    char *why;   /* NULL, or where a refusal's MQTT 5 reason string goes */
    size_t why_cap;
};

/* Handles it: 0 when accepted (a reply follows on the request's Response
 * Topic), else the reason code to refuse it with (MQTT 5 PUBACK/PUBREC;
 * a 3.1.1 publisher's message is just dropped): 0x87 for a topic clients
 * may not publish to, 0x83 for a request without a usable Response Topic,
 * 0x97 when config ledger_api_max_requests are pending, 0x87 for a device
 * session on $ledger/admin/... and for any session but a password_file
 * user's on $ledger/admin/cluster, 0x97 with R->why "not the leader: node
 * N at HOST:PORT" for that topic on a follower. Logs refusals. A NULL
 * A (no ledger served) answers requests with the error "unavailable". */
uint8_t lmq_ledger_api_publish(struct lmq_ledger_api *a, struct lmq_broker *b,
                               const struct lmq_ledger_api_req *r);

/* Whether client CLIENT_ID may subscribe to FILTER as far as the $ledger
 * topics go: false when the filter could match another client's receipts
 * topic ($ledger/#, $ledger/+/..., $ledger/receipts/+, another id, ...).
 * Any thread (pure). */
bool lmq_ledger_api_may_subscribe(const char *client_id, const char *filter, size_t len);

/* Request payloads (pure, any thread; outside bytes, fuzzed). A
 * $ledger/proof query is a decimal index (no sign, no leading zeros) or a
 * 64-digit hex leaf hash (either case), trailing blanks allowed: returns 1
 * (index in *INDEX), 2 (hash in HASH) or 0 (malformed). A
 * $ledger/consistency query is "OLD NEW": two such decimals separated by
 * blanks, blanks around allowed: 0 or -1. */
int lmq_ledger_api_parse_proof_query(const uint8_t *p, size_t len, uint64_t *index,
                                     uint8_t hash[32]);
int lmq_ledger_api_parse_consistency_query(const uint8_t *p, size_t len, uint64_t *old_size,
                                           uint64_t *new_size);

/* A $ledger/registry query: "show DEVICEID" or "list [AFTER_ID] [LIMIT]"
 * (tokens separated by blanks, blanks around allowed; DEVICEID/AFTER_ID
 * with a device id's syntax, LIMIT a decimal 1..PAGE_MAX, default
 * PAGE_MAX). 0 with *Q filled, or -1 (malformed). */
#define LMQ_LEDGER_REGISTRY_PAGE_MAX 100
enum { LMQ_LEDGER_REGISTRY_SHOW = 1, LMQ_LEDGER_REGISTRY_LIST = 2 };
struct lmq_ledger_registry_query {
    int kind;                   /* LMQ_LEDGER_REGISTRY_SHOW or _LIST */
    bool has_id;                /* show: always; list: AFTER_ID given */
    char id[DEVICE_ID_LEN + 1]; /* NUL-terminated */
    uint32_t limit;             /* list: devices per page */
};
int lmq_ledger_api_parse_registry_query(const uint8_t *p, size_t len,
                                        struct lmq_ledger_registry_query *q);

/* ------------------------------------------------------------------ */
/* Provided by broker.c for this file (loop thread). */

/* The broker's ledger API, or NULL when no ledger is served. */
struct lmq_ledger_api *bk_ledger_api(struct lmq_broker *b);
/* Publishes a message as the broker (no publisher session): routed to the
 * matching subscriptions; RETAIN also sets the retained message. PROPS are
 * raw MQTT 5 properties (no length prefix) forwarded to v5 subscribers. */
void bk_publish_internal(struct lmq_broker *b, const char *topic, size_t tlen, const void *payload,
                         size_t plen, const void *props, size_t props_len, uint8_t qos,
                         bool retain);
/* Whether any session subscribes to a filter matching TOPIC. */
bool bk_has_subscriber(struct lmq_broker *b, const char *topic, size_t tlen);
/* Whether lmq_broker_shutdown has run (the worker pool is about to go). */
bool bk_shutting_down(const struct lmq_broker *b);

#endif
