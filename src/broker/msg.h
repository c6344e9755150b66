/* An application message as the broker routes it: topic, payload, QoS,
 * retain flag and (for MQTT 5 later) the raw v5 property bytes, in one
 * reference-counted allocation. A message is created once per inbound
 * PUBLISH and shared by every session that queues it, so fan-out never
 * copies the payload per subscriber.
 * Invariant: a message is immutable after lmq_msg_new(); only refcnt and
 * store_id change. Loop thread only. */
#ifndef LMQ_BROKER_MSG_H
#define LMQ_BROKER_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lmq_msg {
    uint32_t refcnt;
    uint8_t qos;            /* QoS the publisher sent it with */
    bool retain;
    uint16_t topic_len;
    uint32_t payload_len;
    uint32_t props_len;     /* raw MQTT 5 properties (0 for 3.1.1) */
    uint64_t store_id;      /* id of the body in the store; 0 = not stored */
    uint64_t expiry_at;     /* MQTT 5 message expiry (unix seconds); 0 = none */
    char *topic;            /* NUL-terminated, points into data[] */
    uint8_t *payload;       /* points into data[] */
    uint8_t *props;         /* points into data[] */
    uint8_t data[];
};

/* Copies TOPIC, PAYLOAD and PROPS into one new message with refcnt 1.
 * Returns NULL when out of memory. */
struct lmq_msg *lmq_msg_new(const char *topic, size_t topic_len, const void *payload,
                            size_t payload_len, const void *props, size_t props_len, uint8_t qos,
                            bool retain);

static inline struct lmq_msg *lmq_msg_ref(struct lmq_msg *m)
{
    m->refcnt++;
    return m;
}

/* Drops one reference; frees the message at zero. NULL is ignored. */
void lmq_msg_unref(struct lmq_msg *m);

/* Approximate memory a queued message costs, for max_queued_bytes. */
static inline size_t lmq_msg_size(const struct lmq_msg *m)
{
    return (size_t)m->topic_len + m->payload_len + m->props_len;
}

#endif
