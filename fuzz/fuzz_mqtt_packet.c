/* libFuzzer target: the MQTT framer and every decoder, under both protocol
 * versions, on arbitrary bytes. Whatever decodes is re-encoded with the
 * public encoders, which must accept it, and the result must frame to its
 * own length and decode to the same content (round trip). Also exercises
 * the property and entry iterators and the topic functions. Aborts on any
 * disagreement; ASan/UBSan catch the rest. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/unit/mqtt_roundtrip.h"
#include "mqtt/codec.h"
#include "mqtt/topic.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static volatile size_t sink;

static void walk_props(const struct mqtt_props *p)
{
    struct mqtt_prop_iter it;
    struct mqtt_prop pr;
    struct mqtt_str k, v;
    uint32_t id;
    unsigned users = 0, subs = 0;
    mqtt_prop_iter_init(&it, p);
    while (mqtt_prop_next(&it, &pr))
        sink += pr.id + pr.value + pr.bin.len + pr.value2.len;
    mqtt_prop_iter_init(&it, p);
    while (mqtt_prop_next_user(&it, &k, &v))
        users++;
    mqtt_prop_iter_init(&it, p);
    while (mqtt_prop_next_sub_id(&it, &id))
        subs++;
    CHECK(users == p->user_count);
    CHECK(subs == p->sub_id_count);
}

static void walk(const struct mqtt_packet *pk)
{
    switch (pk->type) {
    case MQTT_CONNECT:
        walk_props(&pk->u.connect.props);
        walk_props(&pk->u.connect.will_props);
        if (pk->u.connect.will)
            sink += (size_t)mqtt_topic_name_check(pk->u.connect.will_topic.ptr,
                                                  pk->u.connect.will_topic.len, 0, 0);
        break;
    case MQTT_CONNACK:
        walk_props(&pk->u.connack.props);
        break;
    case MQTT_PUBLISH: {
        const struct mqtt_publish *p = &pk->u.publish;
        walk_props(&p->props);
        sink += (size_t)mqtt_payload_check(&p->props, p->payload);
        if (p->topic.len)
            CHECK(mqtt_topic_name_check(p->topic.ptr, p->topic.len, 0, 0) == MQTT_OK);
        break;
    }
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE: {
        const struct mqtt_subscribe *s = &pk->u.subscribe;
        walk_props(&s->props);
        struct mqtt_entry_iter it;
        struct mqtt_sub_entry e;
        struct mqtt_str f;
        uint32_t n = 0;
        mqtt_sub_iter_init(&it, s);
        if (pk->type == MQTT_SUBSCRIBE) {
            while (mqtt_sub_next(&it, &e)) {
                n++;
                struct mqtt_share sh;
                sink += (size_t)mqtt_topic_filter_check(e.filter.ptr, e.filter.len, 0, 8);
                sink += (size_t)mqtt_topic_share_parse(e.filter.ptr, e.filter.len, &sh);
            }
        } else {
            while (mqtt_unsub_next(&it, &f))
                n++;
        }
        CHECK(n == s->count);
        break;
    }
    default:
        break;
    }
}

/* Decodes PKT (one framed packet) under VERSION; on success re-encodes,
 * re-frames and re-decodes it and compares. */
static void roundtrip(const uint8_t *pkt, size_t len, uint8_t version)
{
    struct mqtt_packet a, b;
    int rc = mqtt_decode(pkt, len, version, &a);
    CHECK(rc <= 0);
    CHECK(mqtt_err_str(rc) != NULL);
    (void)mqtt_err_reason(rc);
    if (rc != MQTT_OK)
        return;
    walk(&a);
    uint8_t ev = a.type == MQTT_CONNECT ? a.u.connect.version : version;
    size_t cap = len + 16, scap = 2 * len + 16;
    uint8_t *enc = malloc(cap), *scratch = malloc(scap);
    CHECK(enc && scratch);
    struct mqtt_packet copy = a;
    int sz = rt_encode(&copy, ev, NULL, 0, scratch, scap);
    if (sz == MQTT_E_INVALID && (a.type == MQTT_SUBSCRIBE || a.type == MQTT_UNSUBSCRIBE) &&
        a.u.subscribe.count > RT_MAX_ENTRIES)
        goto out;
    if (sz < 0)
        fprintf(stderr, "re-encode size of %s failed: %s\n", mqtt_type_str(a.type),
                mqtt_err_str(sz));
    CHECK(sz > 0 && (size_t)sz <= cap);
    copy = a;
    int n = rt_encode(&copy, ev, enc, cap, scratch, scap);
    CHECK(n == sz);
    struct mqtt_frame f;
    CHECK(mqtt_frame(enc, (size_t)n, 0, &f) == MQTT_OK);
    CHECK(f.total_len == (uint32_t)n);
    rc = mqtt_decode(enc, (size_t)n, ev, &b);
    if (rc != MQTT_OK)
        fprintf(stderr, "re-decode of %s failed: %s\n", mqtt_type_str(a.type), mqtt_err_str(rc));
    CHECK(rc == MQTT_OK);
    CHECK(rt_packet_eq(&a, &b));

    if (a.type == MQTT_PUBLISH) {
        /* header + payload written separately == whole packet */
        struct mqtt_publish p = b.u.publish;
        CHECK(rt_props_prepare(&p.props, scratch, scap) == 0);
        int h = mqtt_encode_publish_header(NULL, 0, ev, &p);
        CHECK(h > 0 && (size_t)h + p.payload.len == (size_t)n);
        uint8_t *hb = malloc((size_t)h);
        CHECK(hb);
        CHECK(mqtt_encode_publish_header(hb, (size_t)h, ev, &p) == h);
        CHECK(memcmp(hb, enc, (size_t)h) == 0);
        CHECK(p.payload.len == 0 || memcmp(enc + h, p.payload.ptr, p.payload.len) == 0);
        free(hb);
    }
out:
    free(enc);
    free(scratch);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* 1. As a stream: frame packet after packet. */
    size_t off = 0;
    struct mqtt_frame f;
    int rc;
    while ((rc = mqtt_frame(data + off, size - off, 1u << 20, &f)) == MQTT_OK) {
        CHECK(f.total_len >= 2 && f.total_len <= size - off);
        CHECK(f.header_len + f.remaining_len == f.total_len);
        roundtrip(data + off, f.total_len, MQTT_V311);
        roundtrip(data + off, f.total_len, MQTT_V5);
        off += f.total_len;
    }
    CHECK(rc == MQTT_NEED_MORE || rc == MQTT_E_VARINT || rc == MQTT_E_TOO_LARGE);

    /* 2. The whole input handed to every decoder, lengths unchecked. */
    for (uint8_t v = MQTT_V311; v <= MQTT_V5; v++) {
        struct mqtt_packet p;
        sink += (size_t)mqtt_decode_connect(data, size, &p.u.connect);
        sink += (size_t)mqtt_decode_connack(data, size, v, &p.u.connack);
        sink += (size_t)mqtt_decode_publish(data, size, v, &p.u.publish);
        sink += (size_t)mqtt_decode_ack(data, size, v, &p.u.ack);
        sink += (size_t)mqtt_decode_subscribe(data, size, v, &p.u.subscribe);
        sink += (size_t)mqtt_decode_unsubscribe(data, size, v, &p.u.subscribe);
        sink += (size_t)mqtt_decode_suback(data, size, v, &p.u.suback);
        sink += (size_t)mqtt_decode_unsuback(data, size, v, &p.u.suback);
        sink += (size_t)mqtt_decode_ping(data, size, v);
        sink += (size_t)mqtt_decode_disconnect(data, size, v, &p.u.disconnect);
        sink += (size_t)mqtt_decode_auth(data, size, v, &p.u.auth);
    }

    /* 3. Property blocks in every context. */
    for (unsigned ctx = 0; ctx <= 15; ctx++) {
        struct mqtt_props pr;
        if (mqtt_props_parse(data, size, ctx, &pr) == MQTT_OK) {
            walk_props(&pr);
            int c = mqtt_props_copy(NULL, 0, pr.raw, 0);
            CHECK(c == (int)size);
        }
    }

    /* 4. Topics: split at the first 0 byte into filter and name. */
    const uint8_t *z = memchr(data, 0, size);
    size_t fl = z ? (size_t)(z - data) : size;
    const char *filter = (const char *)data, *name = (const char *)data + fl + (z ? 1 : 0);
    size_t nl = size - fl - (z ? 1 : 0);
    sink += (size_t)mqtt_utf8_check(data, size);
    int fok = mqtt_topic_filter_check(filter, fl, 0, 0);
    int nok = mqtt_topic_name_check(name, nl, 0, 0);
    if (fok == MQTT_OK && nok == MQTT_OK) {
        struct mqtt_share sh;
        if (mqtt_topic_share_parse(filter, fl, &sh) == 1)
            sink += mqtt_topic_matches(sh.filter.ptr, sh.filter.len, name, nl);
        else
            sink += mqtt_topic_matches(filter, fl, name, nl);
        /* a valid name is a filter that matches itself */
        CHECK(mqtt_topic_filter_check(name, nl, 0, 0) == MQTT_OK ||
              mqtt_topic_share_parse(name, nl, &sh) != 0);
        CHECK(mqtt_topic_matches(name, nl, name, nl));
    }
    struct mqtt_topic_iter it;
    const char *lv;
    size_t ll, levels = 0;
    mqtt_topic_iter_init(&it, filter, fl);
    while (mqtt_topic_next(&it, &lv, &ll))
        levels++;
    CHECK(levels == mqtt_topic_levels(filter, fl));
    return 0;
}
