/* Tests for src/mqtt/codec.c: byte-exact round trips of every packet type
 * in MQTT 3.1.1 and 5.0 (vectors written by hand from the OASIS specs),
 * every malformed case the decoders must catch with its own error code,
 * framing at every split point, remaining-length edges, properties (every
 * id in every packet type), UTF-8 edge cases and the encoders' sizing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mqtt/codec.h"
#include "mqtt_roundtrip.h"

/* Parses "10 0a 'MQTT' 04": hex byte pairs and 'quoted' ASCII. */
static size_t hx(const char *s, uint8_t *out, size_t cap)
{
    size_t n = 0;
    while (*s) {
        if (*s == ' ') {
            s++;
        } else if (*s == '\'') {
            s++;
            while (*s && *s != '\'') {
                assert_true(n < cap);
                out[n++] = (uint8_t)*s++;
            }
            assert_int_equal(*s, '\'');
            s++;
        } else {
            unsigned v;
            assert_int_equal(sscanf(s, "%2x", &v), 1);
            assert_true(n < cap);
            out[n++] = (uint8_t)v;
            s += 2;
        }
    }
    return n;
}

#define BUF 4096
static uint8_t pkt[BUF];

static size_t P(const char *s)
{
    return hx(s, pkt, sizeof pkt);
}

/* Decodes HEX under VERSION, checks MQTT_OK, frames it, re-encodes it and
 * checks that the bytes are identical, that the NULL-buffer size matches,
 * and that every smaller capacity gives MQTT_E_BUFFER. */
static void roundtrip_into(const char *hex, uint8_t version, struct mqtt_packet *out)
{
    size_t n = P(hex);
    struct mqtt_frame f;
    assert_int_equal(mqtt_frame(pkt, n, 0, &f), MQTT_OK);
    assert_int_equal(f.total_len, n);
    int rc = mqtt_decode(pkt, n, version, out);
    if (rc != MQTT_OK)
        fail_msg("decode %s: %s", hex, mqtt_err_str(rc));
    static uint8_t enc[BUF], scratch[2 * BUF];
    struct mqtt_packet copy = *out;
    int len = rt_encode(&copy, version, enc, sizeof enc, scratch, sizeof scratch);
    if (len < 0)
        fail_msg("encode %s: %s", hex, mqtt_err_str(len));
    assert_int_equal((size_t)len, n);
    assert_memory_equal(enc, pkt, n);
    struct mqtt_packet again;
    assert_int_equal(mqtt_decode(enc, (size_t)len, version, &again), MQTT_OK);
    if (!rt_packet_eq(out, &again))
        fail_msg("re-decoded %s differs", hex);
    copy = *out;
    assert_int_equal(rt_encode(&copy, version, NULL, 0, scratch, sizeof scratch), len);
    copy = *out;
    assert_int_equal(rt_encode(&copy, version, enc, (size_t)len - 1, scratch, sizeof scratch),
                     MQTT_E_BUFFER);
}

static void roundtrip(const char *hex, uint8_t version)
{
    struct mqtt_packet p;
    roundtrip_into(hex, version, &p);
}

static void expect_err(const char *hex, uint8_t version, int err)
{
    size_t n = P(hex);
    struct mqtt_packet p;
    int rc = mqtt_decode(pkt, n, version, &p);
    if (rc != err)
        fail_msg("%s (v%u): got %d (%s), want %d (%s)", hex, version, rc, mqtt_err_str(rc), err,
                 mqtt_err_str(err));
}

static bool str_is(struct mqtt_str s, const char *want)
{
    return s.ptr && s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

static bool bin_is(struct mqtt_bin s, const char *want)
{
    return s.ptr && s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

/* ------------------------------------------------------------------ */
/* MQTT 3.1.1 */

static void test_v4_connect(void **state)
{
    (void)state;
    struct mqtt_packet p;
    roundtrip_into("10 10 00 04 'MQTT' 04 02 00 3C 00 04 'test'", 4, &p);
    struct mqtt_connect *c = &p.u.connect;
    assert_int_equal(c->version, 4);
    assert_true(c->clean_start);
    assert_false(c->will);
    assert_int_equal(c->keep_alive, 60);
    assert_true(str_is(c->client_id, "test"));
    assert_null(c->username.ptr);
    assert_null(c->password.ptr);

    roundtrip_into("10 1D 00 04 'MQTT' 04 EE 00 0A 00 01 'c' 00 03 'a/b' 00 02 'hi' 00 01 'u' "
                   "00 02 'pw'",
                   4, &p);
    assert_true(c->will);
    assert_int_equal(c->will_qos, 1);
    assert_true(c->will_retain);
    assert_true(str_is(c->will_topic, "a/b"));
    assert_true(bin_is(c->will_payload, "hi"));
    assert_true(str_is(c->username, "u"));
    assert_true(bin_is(c->password, "pw"));

    /* empty client id with a username only */
    roundtrip_into("10 0F 00 04 'MQTT' 04 80 00 00 00 00 00 01 'u'", 4, &p);
    assert_non_null(c->client_id.ptr);
    assert_int_equal(c->client_id.len, 0);
    assert_false(c->clean_start);
}

static void test_v4_others(void **state)
{
    (void)state;
    struct mqtt_packet p;
    roundtrip_into("20 02 01 00", 4, &p);
    assert_true(p.u.connack.session_present);
    roundtrip("20 02 00 05", 4);

    roundtrip_into("30 0A 00 03 'a/b' 'hello'", 4, &p);
    assert_int_equal(p.u.publish.qos, 0);
    assert_true(str_is(p.u.publish.topic, "a/b"));
    assert_true(bin_is(p.u.publish.payload, "hello"));
    roundtrip_into("3B 09 00 03 'a/b' 00 07 'hi'", 4, &p);
    assert_int_equal(p.u.publish.qos, 1);
    assert_true(p.u.publish.dup);
    assert_true(p.u.publish.retain);
    assert_int_equal(p.u.publish.packet_id, 7);
    roundtrip_into("34 07 00 01 'x' 12 34 'zz'", 4, &p);
    assert_int_equal(p.u.publish.qos, 2);
    assert_int_equal(p.u.publish.packet_id, 0x1234);
    roundtrip("30 05 00 03 'a/b'", 4); /* empty payload */

    roundtrip_into("40 02 00 01", 4, &p);
    assert_int_equal(p.u.ack.type, MQTT_PUBACK);
    assert_int_equal(p.u.ack.packet_id, 1);
    roundtrip("50 02 00 02", 4);
    roundtrip("62 02 00 03", 4);
    roundtrip("70 02 FF FF", 4);

    roundtrip_into("82 0C 00 0A 00 03 'a/b' 01 00 01 '#' 02", 4, &p);
    assert_int_equal(p.u.subscribe.packet_id, 10);
    assert_int_equal(p.u.subscribe.count, 2);
    struct mqtt_entry_iter it;
    struct mqtt_sub_entry e;
    mqtt_sub_iter_init(&it, &p.u.subscribe);
    assert_true(mqtt_sub_next(&it, &e));
    assert_true(str_is(e.filter, "a/b"));
    assert_int_equal(e.qos, 1);
    assert_true(mqtt_sub_next(&it, &e));
    assert_true(str_is(e.filter, "#"));
    assert_int_equal(e.qos, 2);
    assert_false(mqtt_sub_next(&it, &e));

    roundtrip_into("90 04 00 0A 01 80", 4, &p);
    assert_int_equal(p.u.suback.reasons.len, 2);
    assert_int_equal(p.u.suback.reasons.ptr[1], 0x80);

    roundtrip_into("A2 0A 00 0B 00 03 'a/b' 00 01 '#'", 4, &p);
    assert_int_equal(p.u.subscribe.count, 2);
    struct mqtt_str f;
    mqtt_sub_iter_init(&it, &p.u.subscribe);
    assert_true(mqtt_unsub_next(&it, &f));
    assert_true(str_is(f, "a/b"));
    assert_true(mqtt_unsub_next(&it, &f));
    assert_true(str_is(f, "#"));
    assert_false(mqtt_unsub_next(&it, &f));

    roundtrip("B0 02 00 0B", 4);
    roundtrip("C0 00", 4);
    roundtrip("D0 00", 4);
    roundtrip("E0 00", 4);
}

/* ------------------------------------------------------------------ */
/* MQTT 5.0 */

static void test_v5_connect(void **state)
{
    (void)state;
    struct mqtt_packet p;
    roundtrip_into("10 36 00 04 'MQTT' 05 C6 00 3C "
                   "12 11 00 00 00 78 21 00 0A 22 00 05 26 00 01 'k' 00 01 'v' "
                   "00 02 'id' "
                   "07 01 01 18 00 00 00 05 "
                   "00 01 't' 00 02 'ok' 00 01 'u' 00 01 'p'",
                   5, &p);
    struct mqtt_connect *c = &p.u.connect;
    assert_int_equal(c->version, 5);
    assert_true(mqtt_props_has(&c->props, MQTT_PROP_SESSION_EXPIRY));
    assert_int_equal(c->props.session_expiry, 120);
    assert_int_equal(c->props.receive_maximum, 10);
    assert_int_equal(c->props.topic_alias_maximum, 5);
    assert_int_equal(c->props.user_count, 1);
    assert_false(mqtt_props_has(&c->props, MQTT_PROP_MAXIMUM_PACKET_SIZE));
    struct mqtt_prop_iter it;
    struct mqtt_str k, v;
    mqtt_prop_iter_init(&it, &c->props);
    assert_true(mqtt_prop_next_user(&it, &k, &v));
    assert_true(str_is(k, "k") && str_is(v, "v"));
    assert_false(mqtt_prop_next_user(&it, &k, &v));
    assert_int_equal(c->will_props.payload_format, 1);
    assert_int_equal(c->will_props.will_delay, 5);
    assert_true(str_is(c->will_topic, "t"));
    assert_true(str_is(c->client_id, "id"));

    /* 5.0 allows a password without a username */
    roundtrip("10 10 00 04 'MQTT' 05 40 00 00 00 00 00 00 01 'p'", 5);
    /* enhanced auth */
    roundtrip("10 19 00 04 'MQTT' 05 02 00 00 0C 15 00 04 'SCRA' 16 00 02 01 02 00 00", 5);
}

static void test_v5_connack(void **state)
{
    (void)state;
    struct mqtt_packet p;
    roundtrip_into("20 1E 00 00 1B 12 00 03 'abc' 13 00 1E 21 00 14 24 01 25 00 27 00 00 10 00 "
                   "28 01 29 01 2A 00",
                   5, &p);
    struct mqtt_props *pr = &p.u.connack.props;
    assert_true(str_is(pr->assigned_client_id, "abc"));
    assert_int_equal(pr->server_keep_alive, 30);
    assert_int_equal(pr->receive_maximum, 20);
    assert_int_equal(pr->maximum_qos, 1);
    assert_true(mqtt_props_has(pr, MQTT_PROP_RETAIN_AVAILABLE));
    assert_int_equal(pr->retain_available, 0);
    assert_int_equal(pr->maximum_packet_size, 4096);
    assert_int_equal(pr->shared_sub_available, 0);
    roundtrip("20 03 00 84 00", 5);
    roundtrip("20 14 00 9C 11 1C 00 06 'host:1' 1F 00 05 'moved'", 5);
}

static void test_v5_publish(void **state)
{
    (void)state;
    struct mqtt_packet p;
    roundtrip_into("32 30 00 03 'a/b' 00 05 26 "
                   "01 01 02 00 00 00 3C 03 00 04 'text' 08 00 01 'r' 09 00 02 01 02 23 00 01 "
                   "26 00 01 'a' 00 01 'b' 0B 01 0B 80 01 "
                   "'hi'",
                   5, &p);
    struct mqtt_publish *pb = &p.u.publish;
    assert_int_equal(pb->qos, 1);
    assert_int_equal(pb->packet_id, 5);
    assert_int_equal(pb->props.payload_format, 1);
    assert_int_equal(pb->props.message_expiry, 60);
    assert_true(str_is(pb->props.content_type, "text"));
    assert_true(str_is(pb->props.response_topic, "r"));
    assert_int_equal(pb->props.correlation_data.len, 2);
    assert_int_equal(pb->props.topic_alias, 1);
    assert_int_equal(pb->props.sub_id_count, 2);
    assert_int_equal(pb->props.subscription_id, 1);
    assert_true(bin_is(pb->payload, "hi"));
    struct mqtt_prop_iter it;
    uint32_t id;
    mqtt_prop_iter_init(&it, &pb->props);
    assert_true(mqtt_prop_next_sub_id(&it, &id));
    assert_int_equal(id, 1);
    assert_true(mqtt_prop_next_sub_id(&it, &id));
    assert_int_equal(id, 128);
    assert_false(mqtt_prop_next_sub_id(&it, &id));
    assert_int_equal(mqtt_payload_check(&pb->props, pb->payload), MQTT_OK);

    /* empty topic with a topic alias */
    roundtrip_into("30 07 00 00 03 23 00 05 'x'", 5, &p);
    assert_int_equal(p.u.publish.topic.len, 0);
    assert_int_equal(p.u.publish.props.topic_alias, 5);
    roundtrip("30 05 00 01 't' 00 'x'", 5);
}

static void test_v5_acks(void **state)
{
    (void)state;
    struct mqtt_packet p;
    roundtrip("40 02 00 01", 5);
    roundtrip_into("40 03 00 01 10", 5, &p);
    assert_int_equal(p.u.ack.reason, 0x10);
    roundtrip_into("40 10 00 01 97 0C 1F 00 03 'bad' 26 00 01 'k' 00 00", 5, &p);
    assert_int_equal(p.u.ack.reason, 0x97);
    assert_true(str_is(p.u.ack.props.reason_string, "bad"));
    roundtrip("50 03 00 09 80", 5);
    roundtrip("62 03 00 01 92", 5);
    roundtrip("70 02 00 05", 5);
    /* reason 0 with properties keeps the reason byte */
    roundtrip("70 08 00 05 00 04 1F 00 01 'x'", 5);

    /* rl 3 with reason 0 is accepted and decodes as the short form */
    size_t n = P("40 03 00 01 00");
    struct mqtt_ack a;
    assert_int_equal(mqtt_decode_ack(pkt, n, 5, &a), MQTT_OK);
    assert_int_equal(a.reason, 0);
}

static void test_v5_subscribe(void **state)
{
    (void)state;
    struct mqtt_packet p;
    roundtrip_into("82 16 00 01 09 0B 05 26 00 01 'a' 00 01 'b' 00 03 'a/b' 2D 00 01 '#' 00", 5,
                   &p);
    struct mqtt_subscribe *s = &p.u.subscribe;
    assert_int_equal(s->count, 2);
    assert_int_equal(s->props.subscription_id, 5);
    struct mqtt_entry_iter it;
    struct mqtt_sub_entry e;
    mqtt_sub_iter_init(&it, s);
    assert_true(mqtt_sub_next(&it, &e));
    assert_int_equal(e.qos, 1);
    assert_true(e.no_local);
    assert_true(e.retain_as_published);
    assert_int_equal(e.retain_handling, 2);
    assert_true(mqtt_sub_next(&it, &e));
    assert_int_equal(e.options, 0);

    roundtrip_into("90 0E 00 01 05 1F 00 02 'ok' 00 01 02 80 8F A2", 5, &p);
    assert_int_equal(p.u.suback.reasons.len, 6);
    roundtrip("A2 08 00 02 00 00 03 'a/b'", 5);
    roundtrip("B0 05 00 02 00 00 11", 5);
}

static void test_v5_disconnect_auth(void **state)
{
    (void)state;
    struct mqtt_packet p;
    roundtrip("E0 00", 5);
    roundtrip_into("E0 01 04", 5, &p);
    assert_int_equal(p.u.disconnect.reason, 4);
    roundtrip_into("E0 0F 8B 0D 11 00 00 00 00 1C 00 01 's' 1F 00 01 'r'", 5, &p);
    assert_int_equal(p.u.disconnect.reason, 0x8B);
    assert_true(str_is(p.u.disconnect.props.server_reference, "s"));
    roundtrip("F0 00", 5);
    roundtrip_into("F0 0E 18 0C 15 00 04 'SCRA' 16 00 02 01 02", 5, &p);
    assert_int_equal(p.u.auth.reason, 0x18);
    assert_true(str_is(p.u.auth.props.auth_method, "SCRA"));
    roundtrip("C0 00", 5);
    roundtrip("D0 00", 5);
}

/* ------------------------------------------------------------------ */
/* Malformed packets, one error code each */

static void test_fixed_header_errors(void **state)
{
    (void)state;
    expect_err("00 00", 4, MQTT_E_PACKET_TYPE);
    expect_err("F0 00", 4, MQTT_E_PACKET_TYPE); /* AUTH in 3.1.1 */
    expect_err("11 10 00 04 'MQTT' 04 02 00 3C 00 04 'test'", 4, MQTT_E_FIXED_FLAGS);
    expect_err("21 02 00 00", 4, MQTT_E_FIXED_FLAGS);
    expect_err("42 02 00 01", 4, MQTT_E_FIXED_FLAGS);
    expect_err("52 02 00 01", 5, MQTT_E_FIXED_FLAGS);
    expect_err("60 02 00 01", 4, MQTT_E_FIXED_FLAGS); /* PUBREL must be 0x62 */
    expect_err("72 02 00 01", 4, MQTT_E_FIXED_FLAGS);
    expect_err("80 06 00 01 00 01 'a' 00", 4, MQTT_E_FIXED_FLAGS); /* SUBSCRIBE must be 0x82 */
    expect_err("83 06 00 01 00 01 'a' 00", 4, MQTT_E_FIXED_FLAGS);
    expect_err("91 03 00 01 00", 4, MQTT_E_FIXED_FLAGS);
    expect_err("A0 05 00 01 00 01 'a'", 4, MQTT_E_FIXED_FLAGS);
    expect_err("B1 02 00 01", 4, MQTT_E_FIXED_FLAGS);
    expect_err("C1 00", 4, MQTT_E_FIXED_FLAGS);
    expect_err("D8 00", 4, MQTT_E_FIXED_FLAGS);
    expect_err("E2 00", 5, MQTT_E_FIXED_FLAGS);
    expect_err("F1 00", 5, MQTT_E_FIXED_FLAGS);
    /* length disagreements */
    expect_err("40 03 00 01", 4, MQTT_E_SHORT);
    expect_err("40 01 00 01", 4, MQTT_E_TRAILING);
    expect_err("40", 4, MQTT_E_SHORT);
    expect_err("40 FF FF FF FF 01", 4, MQTT_E_VARINT);
    /* per-type decoder on the wrong type */
    size_t n = P("40 02 00 01");
    struct mqtt_publish pub;
    assert_int_equal(mqtt_decode_publish(pkt, n, 4, &pub), MQTT_E_WRONG_TYPE);
    assert_int_equal(mqtt_decode_publish(pkt, n, 3, &pub), MQTT_E_BAD_VERSION_ARG);
}

static void test_connect_errors(void **state)
{
    (void)state;
    struct mqtt_connect c;
    size_t n;
    expect_err("10 10 00 04 'MQTX' 04 02 00 3C 00 04 'test'", 4, MQTT_E_PROTOCOL_NAME);
    n = P("10 10 00 04 'MQTT' 03 02 00 3C 00 04 'test'");
    assert_int_equal(mqtt_decode_connect(pkt, n, &c), MQTT_E_PROTOCOL_LEVEL);
    assert_int_equal(c.version, 3);
    n = P("10 10 00 04 'MQTT' 06 02 00 3C 00 04 'test'");
    assert_int_equal(mqtt_decode_connect(pkt, n, &c), MQTT_E_PROTOCOL_LEVEL);
    assert_int_equal(c.version, 6);
    n = P("10 12 00 06 'MQIsdp' 03 02 00 3C 00 04 'test'");
    assert_int_equal(mqtt_decode_connect(pkt, n, &c), MQTT_E_PROTOCOL_LEVEL);
    assert_int_equal(c.version, 3);
    assert_int_equal(mqtt_err_reason(MQTT_E_PROTOCOL_LEVEL), 0x84);
    /* the version is known on later errors too */
    n = P("10 0E 00 04 'MQTT' 05 1E 00 3C 00 00 01 'c'");
    assert_int_equal(mqtt_decode_connect(pkt, n, &c), MQTT_E_WILL_QOS);
    assert_int_equal(c.version, 5);
    n = P("10 07 00 04 'MQTT'");
    assert_int_equal(mqtt_decode_connect(pkt, n, &c), MQTT_E_SHORT);
    assert_int_equal(c.version, 0);

    expect_err("10 10 00 04 'MQTT' 04 03 00 3C 00 04 'test'", 4, MQTT_E_CONNECT_RESERVED);
    expect_err("10 11 00 04 'MQTT' 05 01 00 3C 00 00 04 'test'", 5, MQTT_E_CONNECT_RESERVED);
    /* will QoS 3 */
    expect_err("10 14 00 04 'MQTT' 04 1E 00 3C 00 01 'c' 00 01 't' 00 02 'hi'", 4, MQTT_E_WILL_QOS);
    /* will QoS 1 without will flag */
    expect_err("10 0D 00 04 'MQTT' 04 0A 00 3C 00 01 'c'", 4, MQTT_E_WILL_QOS);
    /* will retain without will flag */
    expect_err("10 0D 00 04 'MQTT' 04 22 00 3C 00 01 'c'", 4, MQTT_E_WILL_RETAIN);
    /* password without username in 3.1.1 */
    expect_err("10 11 00 04 'MQTT' 04 42 00 3C 00 01 'c' 00 02 'pw'", 4, MQTT_E_PASSWORD_FLAG);
    /* truncated: username flag but no username */
    expect_err("10 0D 00 04 'MQTT' 04 82 00 3C 00 01 'c'", 4, MQTT_E_SHORT);
    /* trailing byte */
    expect_err("10 0E 00 04 'MQTT' 04 02 00 3C 00 01 'c' 00", 4, MQTT_E_TRAILING);
    /* bad UTF-8 in the client id, in the will topic, in the username */
    expect_err("10 0D 00 04 'MQTT' 04 02 00 3C 00 01 00", 4, MQTT_E_UTF8);
    expect_err("10 14 00 04 'MQTT' 04 06 00 3C 00 01 'c' 00 01 FF 00 02 'hi'", 4, MQTT_E_UTF8);
    expect_err("10 11 00 04 'MQTT' 04 82 00 3C 00 01 'c' 00 02 C0 80", 4, MQTT_E_UTF8);
    /* v5: bad property in CONNECT, bad will property */
    expect_err("10 10 00 04 'MQTT' 05 02 00 3C 03 23 00 01 00 00", 5, MQTT_E_PROP_NOT_ALLOWED);
    expect_err("10 15 00 04 'MQTT' 05 06 00 3C 00 00 00 02 11 00 00 01 't' 00 00", 5,
               MQTT_E_PROP_LENGTH);
    expect_err("10 16 00 04 'MQTT' 05 06 00 3C 00 00 00 03 21 00 01 00 01 't' 00 00", 5,
               MQTT_E_PROP_NOT_ALLOWED);
    expect_err("10 15 00 04 'MQTT' 05 06 00 3C 00 00 00 02 01 02 00 01 't' 00 00", 5,
               MQTT_E_PROP_VALUE);
}

static void test_connack_errors(void **state)
{
    (void)state;
    expect_err("20 02 02 00", 4, MQTT_E_CONNACK_FLAGS);
    expect_err("20 02 01 05", 4, MQTT_E_CONNACK_FLAGS);
    expect_err("20 02 00 06", 4, MQTT_E_REASON_CODE);
    expect_err("20 03 00 00 00", 4, MQTT_E_TRAILING);
    expect_err("20 03 00 01 00", 5, MQTT_E_REASON_CODE);
    expect_err("20 02 00 00", 5, MQTT_E_SHORT);
    expect_err("20 05 00 00 02 24 02", 5, MQTT_E_PROP_VALUE);
}

static void test_publish_errors(void **state)
{
    (void)state;
    expect_err("36 07 00 01 'x' 00 01 'zz'", 4, MQTT_E_QOS);
    expect_err("38 05 00 01 'x' 'zz'", 4, MQTT_E_DUP_QOS0);
    expect_err("38 06 00 01 'x' 00 'zz'", 5, MQTT_E_DUP_QOS0);
    expect_err("32 05 00 01 'x' 00 00", 4, MQTT_E_PACKET_ID);
    expect_err("34 06 00 01 'x' 00 00 00", 5, MQTT_E_PACKET_ID);
    expect_err("30 05 00 03 'a/+'", 4, MQTT_E_TOPIC_NAME);
    expect_err("30 03 00 01 '#'", 4, MQTT_E_TOPIC_NAME);
    expect_err("30 0C 00 0A 'abcdefgh/#'", 4, MQTT_E_TOPIC_NAME);
    expect_err("30 02 00 00", 4, MQTT_E_NO_TOPIC);
    expect_err("30 03 00 00 00", 5, MQTT_E_NO_TOPIC);
    expect_err("30 03 00 05 'a'", 4, MQTT_E_SHORT);
    expect_err("32 04 00 01 'x' 00", 4, MQTT_E_SHORT);
    expect_err("30 03 00 01 'x'", 5, MQTT_E_SHORT); /* no property length */
    expect_err("30 05 00 01 00 'zz'", 4, MQTT_E_UTF8);
    expect_err("30 05 00 02 ED A0 'z'", 4, MQTT_E_UTF8);
    expect_err("30 05 00 01 'x' 05 'z'", 5, MQTT_E_PROP_LENGTH);
    expect_err("30 06 00 01 'x' 01 05 'z'", 5, MQTT_E_PROP_UNKNOWN);
    expect_err("30 07 00 01 'x' 03 23 00 00", 5, MQTT_E_PROP_VALUE);
    expect_err("30 09 00 01 'x' 05 08 00 02 'a#'", 5, MQTT_E_PROP_VALUE);
    expect_err("30 0A 00 01 'x' 06 23 00 01 23 00 02", 5, MQTT_E_PROP_DUPLICATE);
    expect_err("30 06 00 01 'x' 02 0B 00", 5, MQTT_E_PROP_VALUE);
    expect_err("30 08 00 01 'x' 04 03 00 01 FF", 5, MQTT_E_UTF8);

    /* payload format indicator 1 with a non-UTF-8 payload */
    size_t n = P("30 08 00 01 'x' 02 01 01 C0 80");
    struct mqtt_publish pb;
    assert_int_equal(mqtt_decode_publish(pkt, n, 5, &pb), MQTT_OK);
    assert_int_equal(mqtt_payload_check(&pb.props, pb.payload), MQTT_E_PAYLOAD_FORMAT);
    assert_int_equal(mqtt_err_reason(MQTT_E_PAYLOAD_FORMAT), 0x99);
    /* no indicator (or 0): binary payloads are not checked */
    n = P("30 06 00 01 'x' 00 C0 80");
    assert_int_equal(mqtt_decode_publish(pkt, n, 5, &pb), MQTT_OK);
    assert_int_equal(mqtt_payload_check(&pb.props, pb.payload), MQTT_OK);
    assert_int_equal(mqtt_payload_check(NULL, pb.payload), MQTT_OK);
    /* empty response topic */
    expect_err("30 07 00 01 'x' 03 08 00 00", 5, MQTT_E_PROP_VALUE);
    struct mqtt_packet any;
    assert_int_equal(mqtt_decode(pkt, 0, 5, &any), MQTT_E_SHORT);
}

static void test_ack_errors(void **state)
{
    (void)state;
    expect_err("40 02 00 00", 4, MQTT_E_PACKET_ID);
    expect_err("62 02 00 00", 5, MQTT_E_PACKET_ID);
    expect_err("40 03 00 01 00", 4, MQTT_E_TRAILING);
    expect_err("40 01 00", 4, MQTT_E_SHORT);
    expect_err("40 03 00 01 05", 5, MQTT_E_REASON_CODE);
    expect_err("62 03 00 01 10", 5, MQTT_E_REASON_CODE);
    expect_err("40 05 00 01 00 01 02", 5, MQTT_E_PROP_LENGTH);
    expect_err("40 08 00 01 00 04 15 00 01 'a'", 5, MQTT_E_PROP_NOT_ALLOWED);
    expect_err("40 0C 00 01 00 08 1F 00 01 'a' 1F 00 01 'b'", 5, MQTT_E_PROP_DUPLICATE);
    expect_err("B0 03 00 01 00", 4, MQTT_E_TRAILING);
    expect_err("B0 03 00 01 00", 5, MQTT_E_NO_FILTERS);
    expect_err("B0 04 00 01 00 05", 5, MQTT_E_REASON_CODE);
    expect_err("90 02 00 01", 4, MQTT_E_NO_FILTERS);
    expect_err("90 03 00 01 03", 4, MQTT_E_REASON_CODE);
    expect_err("90 03 00 01 8F", 4, MQTT_E_REASON_CODE);
    expect_err("90 04 00 01 00 8F", 5, MQTT_OK);
    expect_err("90 04 00 01 00 03", 5, MQTT_E_REASON_CODE);
    expect_err("C0 01 00", 4, MQTT_E_TRAILING);
    expect_err("D0 01 00", 5, MQTT_E_TRAILING);
    expect_err("E0 01 00", 4, MQTT_E_TRAILING);
    expect_err("E0 01 01", 5, MQTT_E_REASON_CODE);
    expect_err("E0 03 00 01 24", 5, MQTT_E_PROP_LENGTH);
    expect_err("E0 04 00 02 12 00", 5, MQTT_E_PROP_LENGTH);
    expect_err("E0 06 00 04 12 00 01 'a'", 5, MQTT_E_PROP_NOT_ALLOWED);
    expect_err("F0 01 05", 5, MQTT_E_REASON_CODE);
    expect_err("F0 06 18 04 16 00 01 01", 5, MQTT_E_AUTH_DATA);
}

static void test_subscribe_errors(void **state)
{
    (void)state;
    expect_err("82 02 00 01", 4, MQTT_E_NO_FILTERS);
    expect_err("82 03 00 01 00", 5, MQTT_E_NO_FILTERS);
    expect_err("A2 02 00 01", 4, MQTT_E_NO_FILTERS);
    expect_err("A2 03 00 01 00", 5, MQTT_E_NO_FILTERS);
    expect_err("82 06 00 00 00 01 'a' 00", 4, MQTT_E_PACKET_ID);
    expect_err("A2 05 00 00 00 01 'a'", 4, MQTT_E_PACKET_ID);
    expect_err("82 06 00 01 00 01 'a' 04", 4, MQTT_E_SUB_OPTIONS); /* no-local in 3.1.1 */
    expect_err("82 06 00 01 00 01 'a' 80", 4, MQTT_E_SUB_OPTIONS);
    expect_err("82 07 00 01 00 00 01 'a' 40", 5, MQTT_E_SUB_OPTIONS);
    expect_err("82 06 00 01 00 01 'a' 03", 4, MQTT_E_SUB_QOS);
    expect_err("82 07 00 01 00 00 01 'a' 03", 5, MQTT_E_SUB_QOS);
    expect_err("82 07 00 01 00 00 01 'a' 30", 5, MQTT_E_RETAIN_HANDLING);
    expect_err("82 05 00 01 00 01 'a'", 4, MQTT_E_SHORT); /* missing options byte */
    expect_err("82 05 00 01 00 03 'a'", 4, MQTT_E_SHORT);
    expect_err("82 06 00 01 00 01 00 00", 4, MQTT_E_UTF8);
    expect_err("A2 05 00 01 00 01 C1", 4, MQTT_E_UTF8);
    expect_err("A2 05 00 01 00 02 'a'", 4, MQTT_E_SHORT);
    expect_err("82 0B 00 01 04 0B 01 0B 02 00 01 'a' 00", 5, MQTT_E_PROP_DUPLICATE);
    expect_err("82 09 00 01 02 0B 00 00 01 'a' 00", 5, MQTT_E_PROP_VALUE);
    expect_err("A2 08 00 01 02 0B 01 00 01 'a'", 5, MQTT_E_PROP_NOT_ALLOWED);
}

/* ------------------------------------------------------------------ */
/* Properties: every id in every packet type */

/* Independent restatement of MQTT 5.0 §2.2.2.2's table. 0 = will. */
static bool spec_allows(unsigned id, unsigned ctx)
{
    switch (id) {
    case 0x01:
    case 0x02:
    case 0x03:
    case 0x08:
    case 0x09:
        return ctx == MQTT_PUBLISH || ctx == 0;
    case 0x0B:
        return ctx == MQTT_PUBLISH || ctx == MQTT_SUBSCRIBE;
    case 0x11:
        return ctx == MQTT_CONNECT || ctx == MQTT_CONNACK || ctx == MQTT_DISCONNECT;
    case 0x12:
    case 0x13:
    case 0x1A:
    case 0x24:
    case 0x25:
    case 0x28:
    case 0x29:
    case 0x2A:
        return ctx == MQTT_CONNACK;
    case 0x15:
    case 0x16:
        return ctx == MQTT_CONNECT || ctx == MQTT_CONNACK || ctx == MQTT_AUTH;
    case 0x17:
    case 0x19:
        return ctx == MQTT_CONNECT;
    case 0x18:
        return ctx == 0;
    case 0x1C:
        return ctx == MQTT_CONNACK || ctx == MQTT_DISCONNECT;
    case 0x1F:
        return ctx == MQTT_CONNACK || (ctx >= MQTT_PUBACK && ctx <= MQTT_PUBCOMP) ||
               ctx == MQTT_SUBACK || ctx == MQTT_UNSUBACK || ctx == MQTT_DISCONNECT ||
               ctx == MQTT_AUTH;
    case 0x21:
    case 0x22:
    case 0x27:
        return ctx == MQTT_CONNECT || ctx == MQTT_CONNACK;
    case 0x23:
        return ctx == MQTT_PUBLISH;
    case 0x26:
        return ctx != MQTT_PINGREQ && ctx != MQTT_PINGRESP;
    default:
        return false;
    }
}

/* Writes one property with a valid value; returns its size (0 = unknown). */
static size_t prop_sample(unsigned id, uint8_t *b)
{
    b[0] = (uint8_t)id;
    switch (id) {
    case 0x01:
    case 0x17:
    case 0x19:
    case 0x24:
    case 0x25:
    case 0x28:
    case 0x29:
    case 0x2A:
        b[1] = 1;
        return 2;
    case 0x13:
    case 0x21:
    case 0x22:
    case 0x23:
        b[1] = 0;
        b[2] = 7;
        return 3;
    case 0x02:
    case 0x11:
    case 0x18:
    case 0x27:
        memcpy(b + 1, "\0\0\1\0", 4);
        return 5;
    case 0x0B:
        b[1] = 0x81;
        b[2] = 0x01;
        return 3;
    case 0x03:
    case 0x08:
    case 0x09:
    case 0x12:
    case 0x15:
    case 0x16:
    case 0x1A:
    case 0x1C:
    case 0x1F:
        memcpy(b + 1, "\0\2ab", 4);
        return 5;
    case 0x26:
        memcpy(b + 1, "\0\1k\0\1v", 6);
        return 7;
    default:
        return 0;
    }
}

static void test_props_every_id(void **state)
{
    (void)state;
    uint8_t b[32], b2[64];
    struct mqtt_props pr;
    int known = 0;
    for (unsigned id = 0; id < 0x80; id++) {
        size_t n = prop_sample(id, b);
        if (n == 0) {
            b[1] = 0;
            assert_int_equal(mqtt_props_parse(b, 2, MQTT_PUBLISH, &pr), MQTT_E_PROP_UNKNOWN);
            continue;
        }
        known++;
        for (unsigned ctx = 0; ctx <= 15; ctx++) {
            if (ctx == MQTT_PINGREQ || ctx == MQTT_PINGRESP)
                continue;
            int rc = mqtt_props_parse(b, n, ctx, &pr);
            if (spec_allows(id, ctx)) {
                if (rc != MQTT_OK && !(id == 0x16 && rc == MQTT_E_AUTH_DATA))
                    fail_msg("id 0x%02x in %u: %s", id, ctx, mqtt_err_str(rc));
                if (rc == MQTT_OK) {
                    assert_true(mqtt_props_has(&pr, id));
                    /* field encoder reproduces the bytes (user: via extra) */
                    if (id != 0x26) {
                        assert_int_equal(mqtt_props_encode(b2, sizeof b2, &pr), (int)(n + 1));
                        assert_int_equal(b2[0], n);
                        assert_memory_equal(b2 + 1, b, n);
                    }
                }
                /* duplicates: only user properties and PUBLISH sub ids */
                memcpy(b + n, b, n);
                rc = mqtt_props_parse(b, 2 * n, ctx, &pr);
                if (id == 0x26 || (id == 0x0B && ctx == MQTT_PUBLISH))
                    assert_int_equal(rc, MQTT_OK);
                else if (id != 0x16)
                    assert_int_equal(rc, MQTT_E_PROP_DUPLICATE);
            } else {
                if (rc != MQTT_E_PROP_NOT_ALLOWED)
                    fail_msg("id 0x%02x in %u: got %s", id, ctx, mqtt_err_str(rc));
            }
            /* every truncation is a length error */
            for (size_t cut = 1; cut < n; cut++)
                assert_int_equal(mqtt_props_parse(b, cut, ctx, &pr), MQTT_E_PROP_LENGTH);
        }
    }
    assert_int_equal(known, 27);
    assert_int_equal(mqtt_err_reason(MQTT_E_PROP_NOT_ALLOWED), 0x81);
    assert_int_equal(mqtt_err_reason(MQTT_E_PROP_DUPLICATE), 0x82);
}

static void test_props_values(void **state)
{
    (void)state;
    struct mqtt_props pr;
    uint8_t b[16];
    /* zero where not allowed */
    size_t n = hx("21 00 00", b, sizeof b);
    assert_int_equal(mqtt_props_parse(b, n, MQTT_CONNECT, &pr), MQTT_E_PROP_VALUE);
    n = hx("27 00 00 00 00", b, sizeof b);
    assert_int_equal(mqtt_props_parse(b, n, MQTT_CONNACK, &pr), MQTT_E_PROP_VALUE);
    n = hx("23 00 00", b, sizeof b);
    assert_int_equal(mqtt_props_parse(b, n, MQTT_PUBLISH, &pr), MQTT_E_PROP_VALUE);
    n = hx("0B 00", b, sizeof b);
    assert_int_equal(mqtt_props_parse(b, n, MQTT_SUBSCRIBE, &pr), MQTT_E_PROP_VALUE);
    /* zero allowed */
    n = hx("22 00 00 11 00 00 00 00", b, sizeof b);
    assert_int_equal(mqtt_props_parse(b, n, MQTT_CONNECT, &pr), MQTT_OK);
    /* booleans must be 0/1; maximum QoS 0/1 */
    const char *bad_bytes[] = {"01 02", "17 02", "19 FF", "24 02",
                               "25 02", "28 02", "29 02", "2A 02"};
    const unsigned ctx[] = {MQTT_PUBLISH, MQTT_CONNECT, MQTT_CONNECT, MQTT_CONNACK,
                            MQTT_CONNACK, MQTT_CONNACK, MQTT_CONNACK, MQTT_CONNACK};
    for (size_t i = 0; i < sizeof ctx / sizeof ctx[0]; i++) {
        n = hx(bad_bytes[i], b, sizeof b);
        assert_int_equal(mqtt_props_parse(b, n, ctx[i], &pr), MQTT_E_PROP_VALUE);
    }
    /* sub id largest value, 5-byte varint */
    n = hx("0B FF FF FF 7F", b, sizeof b);
    assert_int_equal(mqtt_props_parse(b, n, MQTT_PUBLISH, &pr), MQTT_OK);
    assert_int_equal(pr.subscription_id, 268435455);
    n = hx("0B FF FF FF FF 01", b, sizeof b);
    assert_int_equal(mqtt_props_parse(b, n, MQTT_PUBLISH, &pr), MQTT_E_VARINT);
    /* bad UTF-8 in a user property value */
    n = hx("26 00 01 'k' 00 01 00", b, sizeof b);
    assert_int_equal(mqtt_props_parse(b, n, MQTT_PUBLISH, &pr), MQTT_E_UTF8);
    /* binary data may hold anything */
    n = hx("09 00 02 00 FF", b, sizeof b);
    assert_int_equal(mqtt_props_parse(b, n, MQTT_PUBLISH, &pr), MQTT_OK);
    /* auth data needs a method */
    n = hx("16 00 00", b, sizeof b);
    assert_int_equal(mqtt_props_parse(b, n, MQTT_CONNECT, &pr), MQTT_E_AUTH_DATA);
}

static void test_props_encode_copy(void **state)
{
    (void)state;
    uint8_t user[64], out[128], cp[64];
    int u1 = mqtt_prop_encode_user(user, sizeof user, "a", 1, "1", 1);
    assert_int_equal(u1, 7);
    assert_int_equal(mqtt_prop_encode_user(NULL, 0, "bb", 2, "", 0), 7);
    int u2 = mqtt_prop_encode_user(user + u1, sizeof user - (size_t)u1, "bb", 2, "", 0);
    int s1 = mqtt_prop_encode_sub_id(user + u1 + u2, 8, 300);
    assert_int_equal(s1, 3);
    assert_int_equal(mqtt_prop_encode_sub_id(user, 8, 0), MQTT_E_INVALID);
    assert_int_equal(mqtt_prop_encode_user(user, 3, "a", 1, "1", 1), MQTT_E_BUFFER);

    struct mqtt_props p;
    memset(&p, 0, sizeof p);
    p.present = MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS) | MQTT_PROP_BIT(MQTT_PROP_MESSAGE_EXPIRY);
    p.topic_alias = 3;
    p.message_expiry = 10;
    p.extra.ptr = user;
    p.extra.len = (size_t)(u1 + u2 + s1);
    int n = mqtt_props_encode(out, sizeof out, &p);
    uint8_t want[64];
    size_t wn = hx("19 02 00 00 00 0A 23 00 03 26 00 01 'a' 00 01 '1' 26 00 02 'bb' 00 00 0B AC 02",
                   want, sizeof want);
    assert_int_equal(n, (int)wn);
    assert_memory_equal(out, want, wn);
    assert_int_equal(mqtt_props_encode(NULL, 0, &p), n);
    assert_int_equal(mqtt_props_encode(out, (size_t)n - 1, &p), MQTT_E_BUFFER);

    struct mqtt_props d;
    assert_int_equal(mqtt_props_parse(out + 1, (size_t)n - 1, MQTT_PUBLISH, &d), MQTT_OK);
    assert_int_equal(d.user_count, 2);
    assert_int_equal(d.sub_id_count, 1);
    assert_int_equal(d.subscription_id, 300);
    /* forward without topic alias and sub ids */
    int c = mqtt_props_copy(cp, sizeof cp, d.raw,
                            MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS) |
                                MQTT_PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID));
    assert_int_equal(c, 5 + 7 + 7);
    assert_int_equal(mqtt_props_copy(NULL, 0, d.raw,
                                     MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS) |
                                         MQTT_PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID)),
                     c);
    assert_memory_equal(cp, want + 1, 5);
    assert_memory_equal(cp + 5, want + 9, 14);
    assert_int_equal(mqtt_props_copy(cp, 3, d.raw, 0), MQTT_E_BUFFER);

    /* iterate every property in order */
    struct mqtt_prop_iter it;
    struct mqtt_prop pr;
    unsigned ids[8], k = 0;
    mqtt_prop_iter_init(&it, &d);
    while (k < 8 && mqtt_prop_next(&it, &pr))
        ids[k++] = pr.id;
    assert_int_equal(k, 5);
    assert_int_equal(ids[0], 0x02);
    assert_int_equal(ids[1], 0x23);
    assert_int_equal(ids[2], 0x26);
    assert_int_equal(ids[3], 0x26);
    assert_int_equal(ids[4], 0x0B);

    /* NULL / empty blocks */
    assert_int_equal(mqtt_props_encode(out, 1, NULL), 1);
    assert_int_equal(out[0], 0);
    memset(&p, 0, sizeof p);
    p.present = MQTT_PROP_BIT(4); /* not a property */
    assert_int_equal(mqtt_props_size(&p), MQTT_E_INVALID);
    memset(&p, 0, sizeof p);
    p.present = MQTT_PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID);
    assert_int_equal(mqtt_props_size(&p), MQTT_E_INVALID); /* id 0 */
}

/* ------------------------------------------------------------------ */
/* Framing */

static void test_varint_edges(void **state)
{
    (void)state;
    static const struct {
        uint32_t v;
        const char *hex;
    } cases[] = {
        {0, "00"},
        {127, "7F"},
        {128, "80 01"},
        {16383, "FF 7F"},
        {16384, "80 80 01"},
        {2097151, "FF FF 7F"},
        {2097152, "80 80 80 01"},
        {268435455, "FF FF FF 7F"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t want[8], got[8];
        size_t n = hx(cases[i].hex, want, sizeof want);
        assert_int_equal(mqtt_varint_size(cases[i].v), (int)n);
        assert_int_equal(mqtt_varint_encode(got, cases[i].v), (int)n);
        assert_memory_equal(got, want, n);
        uint32_t v = 99;
        assert_int_equal(mqtt_varint_decode(want, n, &v), (int)n);
        assert_int_equal(v, cases[i].v);
        /* every prefix needs more */
        for (size_t k = 0; k < n; k++)
            assert_int_equal(mqtt_varint_decode(want, k, &v), 0);

        /* framer on a header announcing this remaining length */
        uint8_t hdr[8] = {0x30};
        memcpy(hdr + 1, want, n);
        struct mqtt_frame f;
        int rc = mqtt_frame(hdr, 1 + n, 0, &f);
        assert_int_equal(rc, cases[i].v == 0 ? MQTT_OK : MQTT_NEED_MORE);
        assert_int_equal(f.remaining_len, cases[i].v);
        assert_int_equal(f.header_len, 1 + n);
        assert_int_equal(f.total_len, 1 + n + cases[i].v);
        if (cases[i].v > 0) {
            assert_int_equal(mqtt_frame(hdr, 1 + n, (uint32_t)(n + cases[i].v), &f),
                             MQTT_E_TOO_LARGE);
            assert_int_equal(mqtt_frame(hdr, 1 + n, (uint32_t)(1 + n + cases[i].v), &f),
                             MQTT_NEED_MORE);
        }
    }
    assert_int_equal(mqtt_varint_size(268435456), 0);
    uint8_t five[] = {0xFF, 0xFF, 0xFF, 0xFF, 0x01};
    uint32_t v;
    assert_int_equal(mqtt_varint_decode(five, 5, &v), MQTT_E_VARINT);
    uint8_t hdr5[] = {0x30, 0x80, 0x80, 0x80, 0x80, 0x01};
    struct mqtt_frame f;
    assert_int_equal(mqtt_frame(hdr5, sizeof hdr5, 0, &f), MQTT_E_VARINT);
    assert_int_equal(mqtt_frame(hdr5, 5, 0, &f), MQTT_E_VARINT); /* known after 4 length bytes */
    assert_int_equal(mqtt_frame(hdr5, 4, 0, &f), MQTT_NEED_MORE);
    assert_int_equal(mqtt_err_reason(MQTT_E_VARINT), 0x81);
    /* non-minimal encoding is accepted */
    uint8_t nm[] = {0xC0, 0x80, 0x00};
    assert_int_equal(mqtt_frame(nm, sizeof nm, 0, &f), MQTT_OK);
    assert_int_equal(f.total_len, 3);
    assert_int_equal(mqtt_decode_ping(nm, sizeof nm, 4), MQTT_OK);
    /* too large beats incomplete */
    uint8_t big[] = {0x30, 0xFF, 0x7F};
    assert_int_equal(mqtt_frame(big, sizeof big, 1024, &f), MQTT_E_TOO_LARGE);
    assert_int_equal(mqtt_err_reason(MQTT_E_TOO_LARGE), 0x95);
    assert_int_equal(mqtt_frame(big, 0, 1024, &f), MQTT_NEED_MORE);
    assert_int_equal(mqtt_frame(big, 1, 1024, &f), MQTT_NEED_MORE);
    assert_int_equal(f.total_len, 0);
}

static const char *stream_pkts[] = {
    "10 10 00 04 'MQTT' 04 02 00 3C 00 04 'test'",
    "30 0B 00 03 'a/b' 00 'hello'",
    "C0 00",
    ("32 30 00 03 'a/b' 00 05 26 01 01 02 00 00 00 3C 03 00 04 'text' 08 00 01 'r' 09 00 02 01 "
     "02 23 00 01 26 00 01 'a' 00 01 'b' 0B 01 0B 80 01 'hi'"),
    "62 02 00 03",
    "E0 00",
};

/* Feeds STREAM to a streaming reader in chunks of CHUNK bytes (0 = one
 * split at SPLIT), checking that it yields exactly the packets above. */
static void feed(const uint8_t *stream, size_t len, size_t chunk, size_t split, const size_t *lens,
                 size_t npk)
{
    uint8_t rbuf[BUF];
    size_t have = 0, pos = 0, got = 0, off_expect = 0;
    while (pos < len || have) {
        size_t take = chunk ? chunk : (pos == 0 ? split : len - pos);
        if (take > len - pos)
            take = len - pos;
        memcpy(rbuf + have, stream + pos, take);
        have += take;
        pos += take;
        size_t off = 0;
        struct mqtt_frame f;
        int rc;
        while ((rc = mqtt_frame(rbuf + off, have - off, 1024, &f)) == MQTT_OK) {
            assert_true(got < npk);
            assert_int_equal(f.total_len, lens[got]);
            assert_memory_equal(rbuf + off, stream + off_expect, f.total_len);
            struct mqtt_packet p;
            assert_int_equal(mqtt_decode(rbuf + off, f.total_len, 5, &p), MQTT_OK);
            off_expect += f.total_len;
            off += f.total_len;
            got++;
        }
        assert_int_equal(rc, MQTT_NEED_MORE);
        memmove(rbuf, rbuf + off, have - off);
        have -= off;
        if (pos == len && have) {
            fail_msg("leftover %zu bytes", have);
        }
    }
    assert_int_equal(got, npk);
}

static void test_framing_splits(void **state)
{
    (void)state;
    uint8_t stream[BUF];
    size_t lens[8], len = 0, npk = sizeof stream_pkts / sizeof stream_pkts[0];
    for (size_t i = 0; i < npk; i++) {
        lens[i] = hx(stream_pkts[i], stream + len, sizeof stream - len);
        len += lens[i];
    }
    /* CONNECT is v4 but mqtt_decode reads CONNECT's own level */
    for (size_t split = 1; split < len; split++)
        feed(stream, len, 0, split, lens, npk);
    for (size_t chunk = 1; chunk <= 8; chunk++)
        feed(stream, len, chunk, 0, lens, npk);
    feed(stream, len, len, 0, lens, npk);
}

/* A packet whose remaining length needs 2 and 3 bytes still decodes. */
static void test_large_packets(void **state)
{
    (void)state;
    static uint8_t big[2100000], payload[2097152];
    memset(payload, 'x', sizeof payload);
    struct mqtt_publish p;
    memset(&p, 0, sizeof p);
    p.topic.ptr = "t";
    p.topic.len = 1;
    for (size_t plen = 100; plen <= 2000000; plen *= 10) {
        p.payload.ptr = payload;
        p.payload.len = plen;
        int n = mqtt_encode_publish(big, sizeof big, 4, &p);
        assert_true(n > 0);
        struct mqtt_frame f;
        assert_int_equal(mqtt_frame(big, (size_t)n, 0, &f), MQTT_OK);
        assert_int_equal(f.remaining_len, 3 + plen);
        struct mqtt_publish d;
        assert_int_equal(mqtt_decode_publish(big, (size_t)n, 4, &d), MQTT_OK);
        assert_int_equal(d.payload.len, plen);
        assert_int_equal(mqtt_frame(big, (size_t)n, (uint32_t)n - 1, &f), MQTT_E_TOO_LARGE);
    }
    p.payload.len = MQTT_MAX_REMAINING_LENGTH; /* + topic > limit */
    assert_int_equal(mqtt_encode_publish_header(NULL, 0, 4, &p), MQTT_E_INVALID);
}

/* ------------------------------------------------------------------ */
/* UTF-8 */

static void test_utf8(void **state)
{
    (void)state;
    static const char *ok[] = {
        "",
        "'abc'",
        "'abcdefghijklmnopqrstuvwxyz/0123456789'",
        "01 7F",       /* controls may be accepted */
        "C2 80",       /* U+0080 */
        "DF BF",       /* U+07FF */
        "E0 A0 80",    /* U+0800 */
        "ED 9F BF",    /* U+D7FF */
        "EE 80 80",    /* U+E000 */
        "EF BF BF",    /* U+FFFF non-character: MAY accept */
        "EF BB BF",    /* BOM U+FEFF must not be stripped */
        "F0 90 80 80", /* U+10000 */
        "F4 8F BF BF", /* U+10FFFF */
        "'aaaaaaaa' F0 9F 98 80 'bbbbbbbbbbbb'",
    };
    static const char *bad[] = {
        "00",
        "'abcdefg' 00", /* U+0000 inside the 8-byte fast path */
        "'abcdefghijk' 00 'zzzz'",
        "80", /* lone continuation */
        "BF",
        "C0 80",    /* overlong U+0000 */
        "C1 BF",    /* overlong */
        "E0 80 80", /* overlong 3-byte */
        "E0 9F BF",
        "F0 80 80 80", /* overlong 4-byte */
        "F0 8F BF BF",
        "ED A0 80",    /* U+D800 surrogate */
        "ED BF BF",    /* U+DFFF */
        "F4 90 80 80", /* U+110000 */
        "F5 80 80 80",
        "FE",
        "FF",
        "C2", /* truncated */
        "E2 82",
        "F0 9F 98",
        "C2 41", /* bad continuation */
        "E2 28 A1",
        "F0 9F 28 80",
        "F0 9F 98 28",
        "'aaaaaaa' C3",
    };
    uint8_t b[64];
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        size_t n = hx(ok[i], b, sizeof b);
        if (mqtt_utf8_check(b, n) != MQTT_OK)
            fail_msg("rejected %s", ok[i]);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t n = hx(bad[i], b, sizeof b);
        if (mqtt_utf8_check(b, n) != MQTT_E_UTF8)
            fail_msg("accepted %s", bad[i]);
    }
    /* exhaustive 2- and 3-byte sequences against a reference decoder */
    for (unsigned c0 = 0x80; c0 < 0x100; c0++)
        for (unsigned c1 = 0; c1 < 0x100; c1++) {
            b[0] = (uint8_t)c0;
            b[1] = (uint8_t)c1;
            b[2] = 0x80;
            bool two = c0 >= 0xC2 && c0 <= 0xDF && (c1 & 0xC0) == 0x80;
            assert_int_equal(mqtt_utf8_check(b, 2) == MQTT_OK, two);
            unsigned cp = ((c0 & 0x0F) << 12) | ((c1 & 0x3F) << 6);
            bool three = c0 >= 0xE0 && c0 <= 0xEF && (c1 & 0xC0) == 0x80 && cp >= 0x800 &&
                         !(cp >= 0xD800 && cp <= 0xDFFF);
            assert_int_equal(mqtt_utf8_check(b, 3) == MQTT_OK, three);
        }
}

/* ------------------------------------------------------------------ */
/* Encoders */

static void test_encoders(void **state)
{
    (void)state;
    uint8_t out[256], want[256];
    size_t wn;

    /* PUBLISH header + payload == whole PUBLISH, for writev fan-out */
    struct mqtt_publish p;
    memset(&p, 0, sizeof p);
    p.topic.ptr = "a/b";
    p.topic.len = 3;
    p.qos = 1;
    p.packet_id = 7;
    p.payload.ptr = (const uint8_t *)"hello";
    p.payload.len = 5;
    int h = mqtt_encode_publish_header(out, sizeof out, 4, &p);
    wn = hx("32 0C 00 03 'a/b' 00 07", want, sizeof want);
    assert_int_equal(h, (int)wn);
    assert_memory_equal(out, want, wn);
    assert_int_equal(mqtt_encode_publish_header(NULL, 0, 4, &p), h);
    assert_int_equal(mqtt_encode_publish_header(out, (size_t)h - 1, 4, &p), MQTT_E_BUFFER);
    int full = mqtt_encode_publish(out, sizeof out, 4, &p);
    assert_int_equal(full, h + 5);
    assert_memory_equal(out + h, "hello", 5);
    h = mqtt_encode_publish_header(out, sizeof out, 5, &p);
    wn = hx("32 0D 00 03 'a/b' 00 07 00", want, sizeof want);
    assert_int_equal(h, (int)wn);
    assert_memory_equal(out, want, wn);
    p.qos = 3;
    assert_int_equal(mqtt_encode_publish(out, sizeof out, 4, &p), MQTT_E_INVALID);
    p.qos = 1;
    p.packet_id = 0;
    assert_int_equal(mqtt_encode_publish(out, sizeof out, 4, &p), MQTT_E_INVALID);
    p.qos = 0;
    p.dup = true;
    assert_int_equal(mqtt_encode_publish(out, sizeof out, 4, &p), MQTT_E_INVALID);

    /* simple acks */
    assert_int_equal(mqtt_encode_ack_simple(out, sizeof out, 4, MQTT_PUBACK, 0x1234, 0x80), 4);
    wn = hx("40 02 12 34", want, sizeof want);
    assert_memory_equal(out, want, wn);
    assert_int_equal(mqtt_encode_ack_simple(out, sizeof out, 5, MQTT_PUBREL, 1, 0), 4);
    wn = hx("62 02 00 01", want, sizeof want);
    assert_memory_equal(out, want, wn);
    assert_int_equal(mqtt_encode_ack_simple(out, sizeof out, 5, MQTT_PUBREC, 1, 0x10), 5);
    wn = hx("50 03 00 01 10", want, sizeof want);
    assert_memory_equal(out, want, wn);
    assert_int_equal(mqtt_encode_ack_simple(out, sizeof out, 5, MQTT_PUBACK, 0, 0), MQTT_E_INVALID);
    assert_int_equal(mqtt_encode_ack_simple(out, sizeof out, 5, MQTT_SUBACK, 1, 0), MQTT_E_INVALID);
    assert_int_equal(mqtt_encode_ack_simple(out, 3, 4, MQTT_PUBACK, 1, 0), MQTT_E_BUFFER);

    /* CONNACK, PING, DISCONNECT */
    struct mqtt_connack ca;
    memset(&ca, 0, sizeof ca);
    ca.session_present = true;
    assert_int_equal(mqtt_encode_connack(out, sizeof out, 4, &ca), 4);
    wn = hx("20 02 01 00", want, sizeof want);
    assert_memory_equal(out, want, wn);
    ca.session_present = false;
    ca.reason = 0x84;
    ca.props.present = MQTT_PROP_BIT(MQTT_PROP_RECEIVE_MAXIMUM);
    ca.props.receive_maximum = 100;
    assert_int_equal(mqtt_encode_connack(out, sizeof out, 5, &ca), 8);
    wn = hx("20 06 00 84 03 21 00 64", want, sizeof want);
    assert_memory_equal(out, want, wn);
    assert_int_equal(mqtt_encode_pingreq(out, sizeof out), 2);
    assert_int_equal(out[0], 0xC0);
    assert_int_equal(mqtt_encode_pingresp(out, sizeof out), 2);
    assert_int_equal(out[0], 0xD0);
    assert_int_equal(mqtt_encode_pingresp(out, 1), MQTT_E_BUFFER);
    assert_int_equal(mqtt_encode_disconnect(out, sizeof out, 5, NULL), 2);
    wn = hx("E0 00", want, sizeof want);
    assert_memory_equal(out, want, wn);
    struct mqtt_disconnect d;
    memset(&d, 0, sizeof d);
    d.reason = 0x8E;
    assert_int_equal(mqtt_encode_disconnect(out, sizeof out, 5, &d), 3);
    assert_int_equal(mqtt_encode_disconnect(out, sizeof out, 4, &d), 2); /* no reason in 3.1.1 */

    /* client-side SUBSCRIBE / UNSUBSCRIBE */
    struct mqtt_subscribe s;
    memset(&s, 0, sizeof s);
    s.packet_id = 10;
    struct mqtt_sub_entry e[2];
    memset(e, 0, sizeof e);
    e[0].filter.ptr = "a/b";
    e[0].filter.len = 3;
    e[0].qos = 1;
    e[1].filter.ptr = "#";
    e[1].filter.len = 1;
    e[1].qos = 2;
    assert_int_equal(mqtt_encode_subscribe(out, sizeof out, 4, &s, e, 2), 14);
    wn = hx("82 0C 00 0A 00 03 'a/b' 01 00 01 '#' 02", want, sizeof want);
    assert_memory_equal(out, want, wn);
    e[0].no_local = true;
    assert_int_equal(mqtt_encode_subscribe(out, sizeof out, 4, &s, e, 2), MQTT_E_INVALID);
    assert_int_equal(mqtt_encode_subscribe(out, sizeof out, 5, &s, e, 2), 15);
    assert_int_equal(mqtt_encode_subscribe(out, sizeof out, 5, &s, e, 0), MQTT_E_INVALID);
    struct mqtt_str fl[1] = {{"x/y", 3}};
    assert_int_equal(mqtt_encode_unsubscribe(out, sizeof out, 4, &s, fl, 1), 9);
    wn = hx("A2 07 00 0A 00 03 'x/y'", want, sizeof want);
    assert_memory_equal(out, want, wn);

    /* SUBACK / UNSUBACK */
    struct mqtt_suback sa;
    memset(&sa, 0, sizeof sa);
    sa.packet_id = 10;
    sa.reasons.ptr = (const uint8_t *)"\x01\x80";
    sa.reasons.len = 2;
    assert_int_equal(mqtt_encode_suback(out, sizeof out, 4, &sa), 6);
    assert_int_equal(mqtt_encode_unsuback(out, sizeof out, 4, &sa), 4);
    assert_int_equal(mqtt_encode_unsuback(out, sizeof out, 5, &sa), 7);
    sa.reasons.len = 0;
    assert_int_equal(mqtt_encode_suback(out, sizeof out, 4, &sa), MQTT_E_INVALID);

    /* CONNECT */
    struct mqtt_connect c;
    memset(&c, 0, sizeof c);
    c.version = 4;
    c.clean_start = true;
    c.keep_alive = 60;
    c.client_id.ptr = "test";
    c.client_id.len = 4;
    assert_int_equal(mqtt_encode_connect(out, sizeof out, &c), 18);
    wn = hx("10 10 00 04 'MQTT' 04 02 00 3C 00 04 'test'", want, sizeof want);
    assert_memory_equal(out, want, wn);
    c.password.ptr = (const uint8_t *)"";
    assert_int_equal(mqtt_encode_connect(out, sizeof out, &c), MQTT_E_INVALID);
    c.version = 5;
    assert_true(mqtt_encode_connect(out, sizeof out, &c) > 0);
    c.version = 3;
    assert_int_equal(mqtt_encode_connect(out, sizeof out, &c), MQTT_E_INVALID);

    /* AUTH */
    struct mqtt_auth a;
    memset(&a, 0, sizeof a);
    assert_int_equal(mqtt_encode_auth(out, sizeof out, &a), 2);
    a.reason = 0x19;
    assert_int_equal(mqtt_encode_auth(out, sizeof out, &a), 4);
    wn = hx("F0 02 19 00", want, sizeof want);
    assert_memory_equal(out, want, wn);
}

/* The fan-out recipe from codec.h: forward a v5 PUBLISH minus its topic
 * alias, with the subscriber's own subscription identifier, header and
 * payload written separately. */
static void test_forward_publish(void **state)
{
    (void)state;
    size_t n = P("32 1B 00 03 'a/b' 00 05 11 23 00 01 26 00 01 'a' 00 01 'b' 02 00 00 00 3C 0B 07 "
                 "'hi'");
    struct mqtt_publish in;
    assert_int_equal(mqtt_decode_publish(pkt, n, 5, &in), MQTT_OK);
    uint8_t tmp[64], hdr[64], whole[128];
    int k = mqtt_props_copy(tmp, sizeof tmp, in.props.raw,
                            MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS) |
                                MQTT_PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID));
    assert_int_equal(k, 7 + 5);
    k += mqtt_prop_encode_sub_id(tmp + k, sizeof tmp - (size_t)k, 42);
    struct mqtt_publish out = in;
    out.packet_id = 9;
    memset(&out.props, 0, sizeof out.props);
    out.props.extra.ptr = tmp;
    out.props.extra.len = (size_t)k;
    int h = mqtt_encode_publish_header(hdr, sizeof hdr, 5, &out);
    assert_true(h > 0);
    memcpy(whole, hdr, (size_t)h);
    memcpy(whole + h, in.payload.ptr, in.payload.len);
    struct mqtt_publish got;
    assert_int_equal(mqtt_decode_publish(whole, (size_t)h + in.payload.len, 5, &got), MQTT_OK);
    assert_int_equal(got.packet_id, 9);
    assert_false(mqtt_props_has(&got.props, MQTT_PROP_TOPIC_ALIAS));
    assert_int_equal(got.props.subscription_id, 42);
    assert_int_equal(got.props.sub_id_count, 1);
    assert_int_equal(got.props.message_expiry, 60);
    assert_int_equal(got.props.user_count, 1);
    assert_true(bin_is(got.payload, "hi"));
}

static void test_err_strings(void **state)
{
    (void)state;
    for (int e = -100; e <= 1; e++) {
        assert_non_null(mqtt_err_str(e));
        (void)mqtt_err_reason(e);
    }
    assert_string_equal(mqtt_err_str(MQTT_E_UTF8), "invalid UTF-8 string (or U+0000)");
    assert_string_equal(mqtt_reason_str(0x81), "Malformed Packet");
    assert_string_equal(mqtt_type_str(MQTT_PUBLISH), "PUBLISH");
    assert_string_equal(mqtt_type_str(99), "?");
    assert_int_equal(mqtt_err_reason(MQTT_OK), 0);
    assert_int_equal(mqtt_err_reason(MQTT_E_FIXED_FLAGS), 0x81);
    assert_int_equal(mqtt_err_reason(MQTT_E_UTF8), 0x81);
    assert_int_equal(mqtt_err_reason(MQTT_E_NO_FILTERS), 0x82);
    assert_int_equal(mqtt_err_reason(MQTT_E_DUP_QOS0), 0x81);
    assert_int_equal(mqtt_err_reason(MQTT_E_QOS), 0x81);
    assert_int_equal(mqtt_err_reason(MQTT_E_SUB_OPTIONS), 0x81);
    assert_int_equal(mqtt_err_reason(MQTT_E_SUB_QOS), 0x82);
    assert_int_equal(mqtt_err_reason(MQTT_E_RETAIN_HANDLING), 0x82);
    assert_int_equal(mqtt_err_reason(MQTT_E_PACKET_ID), 0x82);
    assert_int_equal(mqtt_err_reason(MQTT_E_PROP_VALUE), 0x82);
    assert_int_equal(mqtt_err_reason(MQTT_E_NO_TOPIC), 0x82);
    /* every defined error has its own description */
    static const int all[] = {MQTT_E_VARINT,
                              MQTT_E_TOO_LARGE,
                              MQTT_E_PACKET_TYPE,
                              MQTT_E_FIXED_FLAGS,
                              MQTT_E_SHORT,
                              MQTT_E_TRAILING,
                              MQTT_E_UTF8,
                              MQTT_E_WRONG_TYPE,
                              MQTT_E_BAD_VERSION_ARG,
                              MQTT_E_PROTOCOL_NAME,
                              MQTT_E_PROTOCOL_LEVEL,
                              MQTT_E_CONNECT_RESERVED,
                              MQTT_E_WILL_QOS,
                              MQTT_E_WILL_RETAIN,
                              MQTT_E_PASSWORD_FLAG,
                              MQTT_E_CONNACK_FLAGS,
                              MQTT_E_REASON_CODE,
                              MQTT_E_QOS,
                              MQTT_E_DUP_QOS0,
                              MQTT_E_PACKET_ID,
                              MQTT_E_TOPIC_NAME,
                              MQTT_E_NO_TOPIC,
                              MQTT_E_NO_FILTERS,
                              MQTT_E_SUB_OPTIONS,
                              MQTT_E_SUB_QOS,
                              MQTT_E_RETAIN_HANDLING,
                              MQTT_E_PROP_UNKNOWN,
                              MQTT_E_PROP_NOT_ALLOWED,
                              MQTT_E_PROP_DUPLICATE,
                              MQTT_E_PROP_VALUE,
                              MQTT_E_PROP_LENGTH,
                              MQTT_E_AUTH_DATA,
                              MQTT_E_PAYLOAD_FORMAT,
                              MQTT_E_TOPIC_EMPTY,
                              MQTT_E_TOPIC_TOO_LONG,
                              MQTT_E_TOPIC_TOO_DEEP,
                              MQTT_E_TOPIC_WILDCARD,
                              MQTT_E_FILTER_HASH,
                              MQTT_E_FILTER_PLUS,
                              MQTT_E_SHARE_GROUP,
                              MQTT_E_SHARE_FILTER,
                              MQTT_E_BUFFER,
                              MQTT_E_INVALID};
    size_t na = sizeof all / sizeof all[0];
    for (size_t i = 0; i < na; i++) {
        assert_string_not_equal(mqtt_err_str(all[i]), "unknown MQTT codec error");
        assert_int_not_equal(mqtt_err_reason(all[i]), 0x80);
        for (size_t j = 0; j < i; j++) {
            assert_int_not_equal(all[i], all[j]);
            assert_string_not_equal(mqtt_err_str(all[i]), mqtt_err_str(all[j]));
        }
    }
    assert_int_equal(mqtt_err_reason(MQTT_E_PROTOCOL_NAME), 0x84);
    assert_int_equal(mqtt_err_reason(MQTT_E_TOPIC_NAME), 0x90);
    assert_int_equal(mqtt_err_reason(MQTT_E_FILTER_HASH), 0x8F);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v4_connect),
        cmocka_unit_test(test_v4_others),
        cmocka_unit_test(test_v5_connect),
        cmocka_unit_test(test_v5_connack),
        cmocka_unit_test(test_v5_publish),
        cmocka_unit_test(test_v5_acks),
        cmocka_unit_test(test_v5_subscribe),
        cmocka_unit_test(test_v5_disconnect_auth),
        cmocka_unit_test(test_fixed_header_errors),
        cmocka_unit_test(test_connect_errors),
        cmocka_unit_test(test_connack_errors),
        cmocka_unit_test(test_publish_errors),
        cmocka_unit_test(test_ack_errors),
        cmocka_unit_test(test_subscribe_errors),
        cmocka_unit_test(test_props_every_id),
        cmocka_unit_test(test_props_values),
        cmocka_unit_test(test_props_encode_copy),
        cmocka_unit_test(test_varint_edges),
        cmocka_unit_test(test_framing_splits),
        cmocka_unit_test(test_large_packets),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_encoders),
        cmocka_unit_test(test_forward_publish),
        cmocka_unit_test(test_err_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
