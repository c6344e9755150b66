/* MQTT 5 enhanced authentication: a registry of authentication methods
 * (CONNECT's Authentication Method property) and the contract each method
 * implements. The broker drives the exchange (CONNECT -> AUTH 0x18 ... ->
 * CONNACK); a method only judges the data it is given. "ledgermq-ed25519"
 * (docs/FORMATS.md) proves a registered device key: the broker sends a
 * random nonce, the device answers with its id and a signature, which is
 * verified on a worker thread (LMQ_AUTH_VERIFY); "ledgermq-test-echo" exists to test
 * the flow and is registered only when the environment variable
 * LEDGERMQ_TEST_AUTH_ECHO is 1 (a config key is pending).
 * Loop thread only. */
#ifndef LMQ_BROKER_AUTH_H
#define LMQ_BROKER_AUTH_H

#include <stddef.h>
#include <stdint.h>

enum lmq_auth_result {
    LMQ_AUTH_SUCCESS = 0,  /* authenticated: CONNACK 0x00 */
    LMQ_AUTH_CONTINUE = 1, /* send AUTH 0x18 with the output data, wait for AUTH */
    LMQ_AUTH_FAIL = -1,    /* CONNACK 0x87 (not authorized) */
    LMQ_AUTH_VERIFY = 2,   /* run the method's verify on a worker thread, which
                              then says SUCCESS or FAIL */
};

struct registry;

/* What a method's verify may use (borrowed from the broker). */
struct lmq_auth_env {
    struct registry *registry; /* NULL when the node has none */
    const char *origin;        /* the broker's ledger_origin */
};

/* Room a method may use for its output data per step. */
#define LMQ_AUTH_OUT_MAX 512

struct lmq_auth_method {
    const char *name;
    /* First step with CONNECT's Authentication Data (IN may be NULL when
     * absent). May set *STATE (freed by done). Writes up to OUT_CAP bytes
     * of data for the client to OUT and their count to *OUT_LEN. Returns an
     * enum lmq_auth_result. */
    int (*start)(void **state, const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                 size_t *out_len);
    /* Each later step with an AUTH packet's data; same contract. */
    int (*step)(void **state, const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                size_t *out_len);
    /* Frees STATE (may be NULL). */
    void (*done)(void *state);
    /* After start or step returned LMQ_AUTH_VERIFY: the expensive check,
     * on a worker thread (STATE is not touched by anyone else meanwhile).
     * Returns LMQ_AUTH_SUCCESS and the authenticated principal (a device
     * id) in PRINCIPAL[0:CAP], or LMQ_AUTH_FAIL and a static reason in
     * *WHY. NULL for methods that never return LMQ_AUTH_VERIFY. */
    int (*verify)(void *state, const struct lmq_auth_env *env, char *principal, size_t cap,
                  const char **why);
};

/* The registered method called NAME/LEN, or NULL. */
const struct lmq_auth_method *lmq_auth_find(const char *name, size_t len);

/* ------------------------------------------------------------------ */
/* Who a connected client is, for the rest of the broker (implemented in
 * broker.c; docs/BROKER.md "Authentication"). */

struct lmq_client;

enum bk_principal_kind {
    BK_PRINCIPAL_ANONYMOUS = 0, /* no credentials (or unchecked ones where allowed) */
    BK_PRINCIPAL_USER = 1,      /* username/password from password_file */
    BK_PRINCIPAL_DEVICE = 2,    /* a registered device: token, certificate or ed25519 */
};

/* The authenticated principal of C: NULL for anonymous, else the
 * username or the device id ("d-..."), NUL-terminated and valid as long
 * as C. Sets *KIND (may be NULL). Cheap: no lookup. */
const char *bk_client_identity(const struct lmq_client *c, enum bk_principal_kind *kind);

/* Whether C may publish to TOPIC[0:LEN] under the ACL in force: 0
 * allowed (always when there is no acl_file), -1 denied (logged and
 * counted here; the caller answers the client: v5 PUBACK/PUBREC 0x87,
 * 3.1.1 ack and drop). Call before the message is routed or handed to
 * the ledger pipeline. */
int bk_acl_check_publish(struct lmq_client *c, const char *topic, size_t len);

#endif
