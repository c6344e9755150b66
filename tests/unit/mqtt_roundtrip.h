/* Shared by tests/unit/test_codec.c and fuzz/fuzz_mqtt_packet.c: re-encode
 * a decoded packet with the public encoders, and compare two decoded
 * packets field by field. Test-only helper (static functions, no state). */
#ifndef LMQ_TESTS_MQTT_ROUNDTRIP_H
#define LMQ_TESTS_MQTT_ROUNDTRIP_H

#include <stdbool.h>
#include <string.h>

#include "mqtt/codec.h"

#define RT_MAX_ENTRIES 4096

/* Turns decoded properties into encodable ones: every field except user
 * properties and subscription identifiers from the fields, those two
 * (in wire order) copied from RAW into SCRATCH as EXTRA. */
static inline int rt_props_prepare(struct mqtt_props *p, uint8_t *scratch, size_t cap)
{
    const uint64_t keep = MQTT_PROP_BIT(MQTT_PROP_USER) | MQTT_PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID);
    int n = mqtt_props_copy(scratch, cap, p->raw, ~keep);
    if (n < 0)
        return n;
    p->present &= ~keep;
    p->extra.ptr = scratch;
    p->extra.len = (size_t)n;
    return 0;
}

/* Re-encodes decoded packet PK (VERSION) into BUF. SCRATCH holds the
 * extra property bytes (needs 2 * packet size). Returns the length or a
 * negative error. */
static inline int rt_encode(struct mqtt_packet *pk, uint8_t version, uint8_t *buf, size_t cap,
                            uint8_t *scratch, size_t scap)
{
    static struct mqtt_sub_entry ents[RT_MAX_ENTRIES];
    static struct mqtt_str filts[RT_MAX_ENTRIES];
    size_t half = scap / 2;
    int rc;
    switch (pk->type) {
    case MQTT_CONNECT: {
        struct mqtt_connect c = pk->u.connect;
        if ((rc = rt_props_prepare(&c.props, scratch, half)) < 0 ||
            (rc = rt_props_prepare(&c.will_props, scratch + half, scap - half)) < 0)
            return rc;
        return mqtt_encode_connect(buf, cap, &c);
    }
    case MQTT_CONNACK: {
        struct mqtt_connack c = pk->u.connack;
        if ((rc = rt_props_prepare(&c.props, scratch, scap)) < 0)
            return rc;
        return mqtt_encode_connack(buf, cap, version, &c);
    }
    case MQTT_PUBLISH: {
        struct mqtt_publish p = pk->u.publish;
        if ((rc = rt_props_prepare(&p.props, scratch, scap)) < 0)
            return rc;
        return mqtt_encode_publish(buf, cap, version, &p);
    }
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP: {
        struct mqtt_ack a = pk->u.ack;
        if ((rc = rt_props_prepare(&a.props, scratch, scap)) < 0)
            return rc;
        return mqtt_encode_ack(buf, cap, version, &a);
    }
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE: {
        struct mqtt_subscribe s = pk->u.subscribe;
        if ((rc = rt_props_prepare(&s.props, scratch, scap)) < 0)
            return rc;
        struct mqtt_entry_iter it;
        size_t n = 0;
        mqtt_sub_iter_init(&it, &s);
        if (pk->type == MQTT_SUBSCRIBE) {
            while (n < RT_MAX_ENTRIES && mqtt_sub_next(&it, &ents[n]))
                n++;
            if (n != s.count)
                return MQTT_E_INVALID;
            return mqtt_encode_subscribe(buf, cap, version, &s, ents, n);
        }
        while (n < RT_MAX_ENTRIES && mqtt_unsub_next(&it, &filts[n]))
            n++;
        if (n != s.count)
            return MQTT_E_INVALID;
        return mqtt_encode_unsubscribe(buf, cap, version, &s, filts, n);
    }
    case MQTT_SUBACK:
    case MQTT_UNSUBACK: {
        struct mqtt_suback s = pk->u.suback;
        if ((rc = rt_props_prepare(&s.props, scratch, scap)) < 0)
            return rc;
        return pk->type == MQTT_SUBACK ? mqtt_encode_suback(buf, cap, version, &s)
                                       : mqtt_encode_unsuback(buf, cap, version, &s);
    }
    case MQTT_PINGREQ:
        return mqtt_encode_pingreq(buf, cap);
    case MQTT_PINGRESP:
        return mqtt_encode_pingresp(buf, cap);
    case MQTT_DISCONNECT: {
        struct mqtt_disconnect d = pk->u.disconnect;
        if ((rc = rt_props_prepare(&d.props, scratch, scap)) < 0)
            return rc;
        return mqtt_encode_disconnect(buf, cap, version, &d);
    }
    case MQTT_AUTH: {
        struct mqtt_auth a = pk->u.auth;
        if ((rc = rt_props_prepare(&a.props, scratch, scap)) < 0)
            return rc;
        return mqtt_encode_auth(buf, cap, &a);
    }
    default:
        return MQTT_E_INVALID;
    }
}

static inline bool rt_bin_eq(struct mqtt_bin a, struct mqtt_bin b)
{
    if ((a.ptr == NULL) != (b.ptr == NULL) || a.len != b.len)
        return false;
    return a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0;
}

static inline bool rt_str_eq(struct mqtt_str a, struct mqtt_str b)
{
    struct mqtt_bin x = {(const uint8_t *)a.ptr, a.len}, y = {(const uint8_t *)b.ptr, b.len};
    return rt_bin_eq(x, y);
}

#define RT_HAS(p, id) (((p)->present & MQTT_PROP_BIT(id)) != 0)

/* Same properties (fields, user properties and subscription ids in order). */
static inline bool rt_props_eq(const struct mqtt_props *a, const struct mqtt_props *b)
{
    if (a->present != b->present || a->user_count != b->user_count ||
        a->sub_id_count != b->sub_id_count)
        return false;
#define F(id, field)                                                                               \
    if (RT_HAS(a, id) && a->field != b->field)                                                     \
        return false;
#define S(id, field)                                                                               \
    if (RT_HAS(a, id) && !rt_str_eq(a->field, b->field))                                           \
        return false;
#define B(id, field)                                                                               \
    if (RT_HAS(a, id) && !rt_bin_eq(a->field, b->field))                                           \
        return false;
    F(MQTT_PROP_PAYLOAD_FORMAT, payload_format)
    F(MQTT_PROP_MESSAGE_EXPIRY, message_expiry)
    S(MQTT_PROP_CONTENT_TYPE, content_type)
    S(MQTT_PROP_RESPONSE_TOPIC, response_topic)
    B(MQTT_PROP_CORRELATION_DATA, correlation_data)
    F(MQTT_PROP_SUBSCRIPTION_ID, subscription_id)
    F(MQTT_PROP_SESSION_EXPIRY, session_expiry)
    S(MQTT_PROP_ASSIGNED_CLIENT_ID, assigned_client_id)
    F(MQTT_PROP_SERVER_KEEP_ALIVE, server_keep_alive)
    S(MQTT_PROP_AUTH_METHOD, auth_method)
    B(MQTT_PROP_AUTH_DATA, auth_data)
    F(MQTT_PROP_REQUEST_PROBLEM_INFO, request_problem_info)
    F(MQTT_PROP_WILL_DELAY, will_delay)
    F(MQTT_PROP_REQUEST_RESPONSE_INFO, request_response_info)
    S(MQTT_PROP_RESPONSE_INFO, response_info)
    S(MQTT_PROP_SERVER_REFERENCE, server_reference)
    S(MQTT_PROP_REASON_STRING, reason_string)
    F(MQTT_PROP_RECEIVE_MAXIMUM, receive_maximum)
    F(MQTT_PROP_TOPIC_ALIAS_MAXIMUM, topic_alias_maximum)
    F(MQTT_PROP_TOPIC_ALIAS, topic_alias)
    F(MQTT_PROP_MAXIMUM_QOS, maximum_qos)
    F(MQTT_PROP_RETAIN_AVAILABLE, retain_available)
    F(MQTT_PROP_MAXIMUM_PACKET_SIZE, maximum_packet_size)
    F(MQTT_PROP_WILDCARD_SUB_AVAILABLE, wildcard_sub_available)
    F(MQTT_PROP_SUB_ID_AVAILABLE, sub_id_available)
    F(MQTT_PROP_SHARED_SUB_AVAILABLE, shared_sub_available)
#undef F
#undef S
#undef B
    struct mqtt_prop_iter ia, ib;
    struct mqtt_prop pa, pb;
    mqtt_prop_iter_init(&ia, a);
    mqtt_prop_iter_init(&ib, b);
    for (;;) {
        bool ha, hb;
        do
            ha = mqtt_prop_next(&ia, &pa);
        while (ha && pa.id != MQTT_PROP_USER && pa.id != MQTT_PROP_SUBSCRIPTION_ID);
        do
            hb = mqtt_prop_next(&ib, &pb);
        while (hb && pb.id != MQTT_PROP_USER && pb.id != MQTT_PROP_SUBSCRIPTION_ID);
        if (ha != hb)
            return false;
        if (!ha)
            return true;
        if (pa.id != pb.id || pa.value != pb.value)
            return false;
        if (pa.id == MQTT_PROP_USER &&
            (!rt_bin_eq(pa.bin, pb.bin) || !rt_bin_eq(pa.value2, pb.value2)))
            return false;
    }
}

/* Same decoded content (pointers may differ). */
static inline bool rt_packet_eq(const struct mqtt_packet *x, const struct mqtt_packet *y)
{
    if (x->type != y->type)
        return false;
    switch (x->type) {
    case MQTT_CONNECT: {
        const struct mqtt_connect *a = &x->u.connect, *b = &y->u.connect;
        return a->version == b->version && a->clean_start == b->clean_start && a->will == b->will &&
               a->will_qos == b->will_qos && a->will_retain == b->will_retain &&
               a->keep_alive == b->keep_alive && rt_props_eq(&a->props, &b->props) &&
               rt_str_eq(a->client_id, b->client_id) &&
               rt_props_eq(&a->will_props, &b->will_props) &&
               rt_str_eq(a->will_topic, b->will_topic) &&
               rt_bin_eq(a->will_payload, b->will_payload) && rt_str_eq(a->username, b->username) &&
               rt_bin_eq(a->password, b->password);
    }
    case MQTT_CONNACK: {
        const struct mqtt_connack *a = &x->u.connack, *b = &y->u.connack;
        return a->session_present == b->session_present && a->reason == b->reason &&
               rt_props_eq(&a->props, &b->props);
    }
    case MQTT_PUBLISH: {
        const struct mqtt_publish *a = &x->u.publish, *b = &y->u.publish;
        return a->qos == b->qos && a->dup == b->dup && a->retain == b->retain &&
               a->packet_id == b->packet_id && rt_str_eq(a->topic, b->topic) &&
               rt_props_eq(&a->props, &b->props) && rt_bin_eq(a->payload, b->payload);
    }
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP: {
        const struct mqtt_ack *a = &x->u.ack, *b = &y->u.ack;
        return a->type == b->type && a->packet_id == b->packet_id && a->reason == b->reason &&
               rt_props_eq(&a->props, &b->props);
    }
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE: {
        const struct mqtt_subscribe *a = &x->u.subscribe, *b = &y->u.subscribe;
        return a->packet_id == b->packet_id && a->count == b->count &&
               rt_props_eq(&a->props, &b->props) && rt_bin_eq(a->entries, b->entries);
    }
    case MQTT_SUBACK:
    case MQTT_UNSUBACK: {
        const struct mqtt_suback *a = &x->u.suback, *b = &y->u.suback;
        return a->packet_id == b->packet_id && rt_props_eq(&a->props, &b->props) &&
               rt_bin_eq(a->reasons, b->reasons);
    }
    case MQTT_DISCONNECT:
        return x->u.disconnect.reason == y->u.disconnect.reason &&
               rt_props_eq(&x->u.disconnect.props, &y->u.disconnect.props);
    case MQTT_AUTH:
        return x->u.auth.reason == y->u.auth.reason &&
               rt_props_eq(&x->u.auth.props, &y->u.auth.props);
    default:
        return true;
    }
}

#endif
