/* A small blocking MQTT 5 client for the `ledgermq` commands that talk to a
 * running broker (`receipt`, `watch`, `device ... --broker`): TCP (or TLS
 * with OpenSSL) to HOST:PORT, CONNECT with optional username/password,
 * SUBSCRIBE, PUBLISH QoS 0/1 with a response topic and correlation data,
 * and waiting for messages with a timeout. Packets are built and parsed
 * with src/mqtt/codec. Messages that arrive while the client waits for
 * something else (a SUBACK, a reply) are kept in arrival order and
 * returned by the next cli_mqtt_next.
 *
 * Errors are printed ("ledgermq: --broker HOST:PORT: connection refused",
 * "... CONNACK 0x87 Not authorized", "... no reply within 5000 ms") and the
 * functions return CLI_ERR; nothing is printed on success. One thread. */
#ifndef LMQ_CMD_CLI_MQTT_H
#define LMQ_CMD_CLI_MQTT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cli_mqtt_opts {
    const char *broker;    /* "HOST:PORT" or "[V6ADDR]:PORT" */
    const char *client_id; /* NULL: "ledgermq-cli-<pid>-<random>" */
    const char *username;  /* NULL: none */
    const char *password;  /* NULL: none (needs username) */
    const char *cafile;    /* TLS when cafile or cert is set */
    const char *cert;      /* client certificate (PEM) */
    const char *key;       /* its private key (PEM; --tls-key) */
    int timeout_ms;        /* connect, acks and replies; 0 = 10000 */
};

/* Consumes a connection option at argv[*i] (--broker, --cafile, --cert,
 * --tls-key, --username, --password, --client-id, --timeout MS): 1 if
 * consumed, 0 if not one of them, -CLI_ERR (printed) for a bad value. */
int cli_mqtt_opt(struct cli_mqtt_opts *o, int argc, char **argv, int *i);

/* One received PUBLISH: a single allocation, release with free(). */
struct cli_mqtt_msg {
    char *topic; /* NUL-terminated */
    uint8_t *payload;
    size_t len;
    uint8_t *corr; /* correlation data, NULL if absent */
    size_t corr_len;
    bool retain;
};

struct cli_mqtt;

/* Connects and completes CONNECT/CONNACK (MQTT 5, clean start, keep-alive
 * 60 s). 0 with *out set, or CLI_ERR after printing why. */
int cli_mqtt_connect(const struct cli_mqtt_opts *o, struct cli_mqtt **out);
/* The client id in use (the generated one if none was given). */
const char *cli_mqtt_client_id(const struct cli_mqtt *m);
/* SUBSCRIBE to one filter at QOS (0/1) and wait for the SUBACK; its reason
 * code goes to *reason. 0 (even when the reason refuses: check it), or
 * CLI_ERR on a connection error or timeout. */
int cli_mqtt_subscribe(struct cli_mqtt *m, const char *filter, uint8_t qos, uint8_t *reason);
/* PUBLISH at QOS 0 or 1 (QoS 1 waits for the PUBACK and stores its reason
 * in *reason, which may be NULL). resp_topic/corr may be NULL. */
int cli_mqtt_publish(struct cli_mqtt *m, const char *topic, const void *payload, size_t len,
                     uint8_t qos, const char *resp_topic, const void *corr, size_t corr_len,
                     uint8_t *reason);
/* The next message (kept ones first) within TIMEOUT_MS (< 0: forever).
 * 0 with *msg (free() it), 1 on timeout (nothing printed), CLI_ERR when the
 * connection fails or the broker disconnects. */
int cli_mqtt_next(struct cli_mqtt *m, int timeout_ms, struct cli_mqtt_msg **msg);
/* MQTT 5 request/response: subscribes (once) to the client's reply topic
 * "ledgermq-cli/<client id>/reply", publishes PAYLOAD to TOPIC at QoS 1
 * with that response topic and fresh correlation data, and waits for the
 * reply carrying the same correlation data (other messages are kept).
 * 0 with *reply, or CLI_ERR (refused PUBACK, printed with its reason
 * string, e.g. "PUBACK 0x97 Quota exceeded: not the leader: node 2 at
 * HOST:PORT"; timeout; connection). */
int cli_mqtt_request(struct cli_mqtt *m, const char *topic, const void *payload, size_t len,
                     struct cli_mqtt_msg **reply);
/* DISCONNECT (normal) and free. NULL is allowed. */
void cli_mqtt_close(struct cli_mqtt *m);

#endif
