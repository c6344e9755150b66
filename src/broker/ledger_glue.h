/* Private to src/broker: what broker.c and the ledger pipeline
 * (ledger_pipe.c) call of each other. broker.c keeps its structs to
 * itself; the pipeline reaches a client through these functions. Loop
 * thread only. */
#ifndef LMQ_BROKER_LEDGER_GLUE_H
#define LMQ_BROKER_LEDGER_GLUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/broker.h"
#include "mqtt/codec.h"

struct bk_lp;

/* ---- broker.c, for the pipeline ---- */

/* The session's client id (NUL-terminated) and its length. */
const char *bk_client_id(const struct lmq_client *c, size_t *len);
uint8_t bk_client_proto(const struct lmq_client *c);
/* The identity the broker attests for C: the device id when the session
 * authenticated as a device (*IS_DEVICE true), else the authenticated
 * user name, else the client id. */
const char *bk_client_principal(const struct lmq_client *c, bool *is_device);
/* The pipeline's per-client state (NULL until set). */
void *bk_client_lp(const struct lmq_client *c);
void bk_client_set_lp(struct lmq_client *c, void *lpc);
/* PUBACK/PUBREC (TYPE) with REASON and, for MQTT 5 when REASON_STR is not
 * NULL, a reason string. */
void bk_lp_ack(struct lmq_client *c, uint8_t type, uint16_t pkid, uint8_t reason,
               const char *reason_str);
/* Closes C (after what is queued; MQTT 5: DISCONNECT REASON first). */
void bk_lp_close(struct lmq_client *c, uint8_t reason, const char *why);
/* Incoming QoS 2 ids: the PUBREC of a ledgered message records its id
 * only when it is sent (after the commit). */
bool bk_lp_qos2_has(const struct lmq_client *c, uint16_t pkid);
uint32_t bk_lp_qos2_count(const struct lmq_client *c);
int bk_lp_qos2_add(struct lmq_client *c, uint16_t pkid);
/* Routes a committed message like any PUBLISH of C (C may be NULL when
 * the publisher is gone). */
void bk_lp_route(struct lmq_broker *b, struct lmq_client *c, const char *topic, size_t tlen,
                 const void *payload, size_t plen, const void *props, size_t props_len, uint8_t qos,
                 bool retain, uint64_t expiry_at);
/* Transport flow control of C's socket. */
void bk_lp_pause(struct lmq_client *c, bool pause);
/* One $SYS value (retained QoS 0). */
void bk_sys_publish(struct lmq_broker *b, const char *topic, const char *value);

/* ---- ledger_pipe.c, for broker.c ---- */

/* The pipeline for CFG's ledger_topic lines (NULL when there are none:
 * every topic is plain). */
struct bk_lp *bk_lp_new(struct lmq_broker *b, const struct lmq_config *cfg,
                        const struct lmq_broker_services *svc);
/* Whether it has a ledger and a committer (else ledgered messages are
 * refused with 0x80 "ledger unavailable"). */
bool bk_lp_running(const struct bk_lp *lp);
/* Stops the committer (everything queued is committed and answered). */
void bk_lp_stop(struct bk_lp *lp);
void bk_lp_free(struct bk_lp *lp);
/* A validated PUBLISH of C (topic resolved, PROPS/PLEN = the properties to
 * forward, EXPIRY_AT its message expiry). 1: not ledgered, the broker
 * routes it as usual; 0: the pipeline took it (or answered it); -1: C was
 * closed. */
int bk_lp_publish(struct bk_lp *lp, struct lmq_client *c, const struct mqtt_publish *p,
                  const uint8_t *props, size_t plen, uint64_t expiry_at);
/* True when TOPIC is ledgered (cheap; false when lp is NULL). */
bool bk_lp_ledgered(const struct bk_lp *lp, const char *topic, size_t tlen);
/* True while C is paused by the ingest queue's backpressure (its input
 * is then left unread). */
bool bk_lp_client_paused(const struct lmq_client *c);
/* C is going away: its messages in flight lose their publisher. */
void bk_lp_client_gone(struct bk_lp *lp, struct lmq_client *c);
/* Publishes $SYS/ledger/... */
void bk_lp_sys(struct bk_lp *lp);
/* The pipeline of B (NULL without ledgered topics). */
struct bk_lp *bk_broker_lp(struct lmq_broker *b);

#endif
