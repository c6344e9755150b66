/* MQTT 5 enhanced authentication: a registry of authentication methods
 * (CONNECT's Authentication Method property) and the contract each method
 * implements. The broker drives the exchange (CONNECT -> AUTH 0x18 ... ->
 * CONNACK); a method only judges the data it is given. The device-key
 * method comes with the identity issue; "ledgermq-test-echo" exists to test
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
};

/* The registered method called NAME/LEN, or NULL. */
const struct lmq_auth_method *lmq_auth_find(const char *name, size_t len);

#endif
