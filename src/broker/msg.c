/* Reference-counted application messages (see msg.h). */
#include "broker/msg.h"

#include <stdlib.h>
#include <string.h>

struct lmq_msg *lmq_msg_new(const char *topic, size_t topic_len, const void *payload,
                            size_t payload_len, const void *props, size_t props_len, uint8_t qos,
                            bool retain)
{
    if (topic_len > UINT16_MAX || payload_len > UINT32_MAX || props_len > UINT32_MAX)
        return NULL;
    struct lmq_msg *m = malloc(sizeof *m + topic_len + 1 + payload_len + props_len);
    if (!m)
        return NULL;
    m->refcnt = 1;
    m->qos = qos;
    m->retain = retain;
    m->topic_len = (uint16_t)topic_len;
    m->payload_len = (uint32_t)payload_len;
    m->props_len = (uint32_t)props_len;
    m->store_id = 0;
    m->expiry_at = 0;
    m->topic = (char *)m->data;
    memcpy(m->topic, topic, topic_len);
    m->topic[topic_len] = '\0';
    m->payload = m->data + topic_len + 1;
    if (payload_len)
        memcpy(m->payload, payload, payload_len);
    m->props = m->payload + payload_len;
    if (props_len)
        memcpy(m->props, props, props_len);
    return m;
}

void lmq_msg_unref(struct lmq_msg *m)
{
    if (m && --m->refcnt == 0)
        free(m);
}
