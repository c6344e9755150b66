/* MQTT 3.1.1 / 5.0 packet codec (see codec.h for the contract). Decoding
 * walks the packet once with a bounds-checked cursor (struct rd) whose
 * helpers are static inline, so the hot path makes no calls through
 * pointers and copies nothing. Encoders compute the exact size first, check
 * it against the caller's capacity once, and then write without checks.
 * Invariant: every decoded slice lies inside [pkt, pkt + len). */
#include "mqtt/codec.h"

#include <string.h>

/* ------------------------------------------------------------------ */
/* UTF-8 */

#define ONES8 0x0101010101010101ull
#define HIGH8 0x8080808080808080ull
/* Non-zero iff some byte of V is zero (exact for the test, see Hacker's
 * Delight 6-1: false positives only above a true zero byte). */
#define HAS_ZERO(v) (((v)-ONES8) & ~(v)&HIGH8)
#define HAS_BYTE(v, b) HAS_ZERO((v) ^ (ONES8 * (uint8_t)(b)))

/* Validates MQTT UTF-8; with NO_WILD also rejects '+' and '#' (returning
 * MQTT_E_TOPIC_NAME). */
static inline int utf8_scan(const uint8_t *s, size_t len, bool no_wild)
{
    size_t i = 0;
    while (i < len) {
        if (len - i >= 8) {
            uint64_t v;
            memcpy(&v, s + i, 8);
            if (!(v & HIGH8) && !HAS_ZERO(v) &&
                (!no_wild || (!HAS_BYTE(v, '+') && !HAS_BYTE(v, '#')))) {
                i += 8;
                continue;
            }
        }
        uint8_t c = s[i];
        if (c < 0x80) {
            if (c == 0)
                return MQTT_E_UTF8;
            if (no_wild && (c == '+' || c == '#'))
                return MQTT_E_TOPIC_NAME;
            i++;
            continue;
        }
        if (c < 0xC2)
            return MQTT_E_UTF8; /* continuation byte or overlong 2-byte */
        if (c < 0xE0) {
            if (len - i < 2 || (s[i + 1] & 0xC0) != 0x80)
                return MQTT_E_UTF8;
            i += 2;
        } else if (c < 0xF0) {
            if (len - i < 3)
                return MQTT_E_UTF8;
            uint8_t c1 = s[i + 1];
            uint8_t lo = c == 0xE0 ? 0xA0 : 0x80; /* overlong */
            uint8_t hi = c == 0xED ? 0x9F : 0xBF; /* surrogates */
            if (c1 < lo || c1 > hi || (s[i + 2] & 0xC0) != 0x80)
                return MQTT_E_UTF8;
            i += 3;
        } else if (c < 0xF5) {
            if (len - i < 4)
                return MQTT_E_UTF8;
            uint8_t c1 = s[i + 1];
            uint8_t lo = c == 0xF0 ? 0x90 : 0x80; /* overlong */
            uint8_t hi = c == 0xF4 ? 0x8F : 0xBF; /* > U+10FFFF */
            if (c1 < lo || c1 > hi || (s[i + 2] & 0xC0) != 0x80 || (s[i + 3] & 0xC0) != 0x80)
                return MQTT_E_UTF8;
            i += 4;
        } else {
            return MQTT_E_UTF8;
        }
    }
    return MQTT_OK;
}

int mqtt_utf8_check(const uint8_t *s, size_t len)
{
    return utf8_scan(s, len, false);
}

/* ------------------------------------------------------------------ */
/* Variable byte integers */

int mqtt_varint_decode(const uint8_t *p, size_t len, uint32_t *value)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        if ((size_t)i >= len)
            return 0;
        v |= (uint32_t)(p[i] & 0x7F) << (7 * i);
        if (!(p[i] & 0x80)) {
            *value = v;
            return i + 1;
        }
    }
    return MQTT_E_VARINT;
}

int mqtt_varint_size(uint32_t v)
{
    if (v < 128u)
        return 1;
    if (v < 16384u)
        return 2;
    if (v < 2097152u)
        return 3;
    if (v <= MQTT_MAX_REMAINING_LENGTH)
        return 4;
    return 0;
}

int mqtt_varint_encode(uint8_t *out, uint32_t v)
{
    int n = 0;
    do {
        uint8_t b = v & 0x7F;
        v >>= 7;
        if (v)
            b |= 0x80;
        out[n++] = b;
    } while (v && n < 4);
    return n;
}

/* ------------------------------------------------------------------ */
/* Framer */

int mqtt_frame(const uint8_t *buf, size_t len, uint32_t max_packet, struct mqtt_frame *f)
{
    f->type = 0;
    f->flags = 0;
    f->header_len = 0;
    f->remaining_len = 0;
    f->total_len = 0;
    if (len == 0)
        return MQTT_NEED_MORE;
    f->type = buf[0] >> 4;
    f->flags = buf[0] & 0x0F;
    uint32_t rl;
    int n = mqtt_varint_decode(buf + 1, len - 1, &rl);
    if (n < 0)
        return n;
    if (n == 0)
        return MQTT_NEED_MORE;
    uint32_t total = 1u + (uint32_t)n + rl;
    if (max_packet == 0)
        max_packet = MQTT_MAX_PACKET_SIZE;
    f->header_len = (uint8_t)(1 + n);
    f->remaining_len = rl;
    f->total_len = total;
    if (total > max_packet)
        return MQTT_E_TOO_LARGE;
    return len >= total ? MQTT_OK : MQTT_NEED_MORE;
}

/* ------------------------------------------------------------------ */
/* Bounds-checked reader */

struct rd {
    const uint8_t *p, *end;
};

static inline size_t rd_left(const struct rd *r)
{
    return (size_t)(r->end - r->p);
}

static inline int rd_u8(struct rd *r, uint8_t *v)
{
    if (r->p >= r->end)
        return MQTT_E_SHORT;
    *v = *r->p++;
    return MQTT_OK;
}

static inline int rd_u16(struct rd *r, uint16_t *v)
{
    if (rd_left(r) < 2)
        return MQTT_E_SHORT;
    *v = (uint16_t)((r->p[0] << 8) | r->p[1]);
    r->p += 2;
    return MQTT_OK;
}

static inline int rd_bin(struct rd *r, struct mqtt_bin *b)
{
    uint16_t n;
    if (rd_u16(r, &n) < 0 || rd_left(r) < n)
        return MQTT_E_SHORT;
    b->ptr = r->p;
    b->len = n;
    r->p += n;
    return MQTT_OK;
}

static inline int rd_str(struct rd *r, struct mqtt_str *s)
{
    struct mqtt_bin b;
    int rc = rd_bin(r, &b);
    if (rc < 0)
        return rc;
    rc = utf8_scan(b.ptr, b.len, false);
    if (rc < 0)
        return rc;
    s->ptr = (const char *)b.ptr;
    s->len = b.len;
    return MQTT_OK;
}

/* Parses the fixed header of PKT (exactly LEN bytes), checks the type, and
 * leaves R on the body. */
static inline int rd_fixed(const uint8_t *pkt, size_t len, unsigned type, struct rd *r,
                           uint8_t *flags)
{
    if (len < 2)
        return MQTT_E_SHORT;
    if ((unsigned)(pkt[0] >> 4) != type)
        return MQTT_E_WRONG_TYPE;
    *flags = pkt[0] & 0x0F;
    uint32_t rl;
    int n = mqtt_varint_decode(pkt + 1, len - 1, &rl);
    if (n < 0)
        return n;
    if (n == 0)
        return MQTT_E_SHORT;
    size_t need = 1 + (size_t)n + rl;
    if (len < need)
        return MQTT_E_SHORT;
    if (len > need)
        return MQTT_E_TRAILING;
    r->p = pkt + 1 + n;
    r->end = pkt + len;
    return MQTT_OK;
}

static inline int check_version(uint8_t v)
{
    return (v == MQTT_V311 || v == MQTT_V5) ? MQTT_OK : MQTT_E_BAD_VERSION_ARG;
}

/* ------------------------------------------------------------------ */
/* Properties */

enum { K_NONE, K_BYTE, K_U16, K_U32, K_VARINT, K_STR, K_BIN, K_PAIR };

#define PROP_MAX_ID 0x2A
#define C(t) (1u << (t))
#define C_WILL 1u
#define C_ACKS (C(MQTT_PUBACK) | C(MQTT_PUBREC) | C(MQTT_PUBREL) | C(MQTT_PUBCOMP))
#define C_ALL 0xFFFFu

static const uint8_t prop_kind[PROP_MAX_ID + 1] = {
    [MQTT_PROP_PAYLOAD_FORMAT] = K_BYTE,
    [MQTT_PROP_MESSAGE_EXPIRY] = K_U32,
    [MQTT_PROP_CONTENT_TYPE] = K_STR,
    [MQTT_PROP_RESPONSE_TOPIC] = K_STR,
    [MQTT_PROP_CORRELATION_DATA] = K_BIN,
    [MQTT_PROP_SUBSCRIPTION_ID] = K_VARINT,
    [MQTT_PROP_SESSION_EXPIRY] = K_U32,
    [MQTT_PROP_ASSIGNED_CLIENT_ID] = K_STR,
    [MQTT_PROP_SERVER_KEEP_ALIVE] = K_U16,
    [MQTT_PROP_AUTH_METHOD] = K_STR,
    [MQTT_PROP_AUTH_DATA] = K_BIN,
    [MQTT_PROP_REQUEST_PROBLEM_INFO] = K_BYTE,
    [MQTT_PROP_WILL_DELAY] = K_U32,
    [MQTT_PROP_REQUEST_RESPONSE_INFO] = K_BYTE,
    [MQTT_PROP_RESPONSE_INFO] = K_STR,
    [MQTT_PROP_SERVER_REFERENCE] = K_STR,
    [MQTT_PROP_REASON_STRING] = K_STR,
    [MQTT_PROP_RECEIVE_MAXIMUM] = K_U16,
    [MQTT_PROP_TOPIC_ALIAS_MAXIMUM] = K_U16,
    [MQTT_PROP_TOPIC_ALIAS] = K_U16,
    [MQTT_PROP_MAXIMUM_QOS] = K_BYTE,
    [MQTT_PROP_RETAIN_AVAILABLE] = K_BYTE,
    [MQTT_PROP_USER] = K_PAIR,
    [MQTT_PROP_MAXIMUM_PACKET_SIZE] = K_U32,
    [MQTT_PROP_WILDCARD_SUB_AVAILABLE] = K_BYTE,
    [MQTT_PROP_SUB_ID_AVAILABLE] = K_BYTE,
    [MQTT_PROP_SHARED_SUB_AVAILABLE] = K_BYTE,
};

/* Where each property may appear: bit per packet type, bit 0 = will. */
static const uint16_t prop_ctx[PROP_MAX_ID + 1] = {
    [MQTT_PROP_PAYLOAD_FORMAT] = C(MQTT_PUBLISH) | C_WILL,
    [MQTT_PROP_MESSAGE_EXPIRY] = C(MQTT_PUBLISH) | C_WILL,
    [MQTT_PROP_CONTENT_TYPE] = C(MQTT_PUBLISH) | C_WILL,
    [MQTT_PROP_RESPONSE_TOPIC] = C(MQTT_PUBLISH) | C_WILL,
    [MQTT_PROP_CORRELATION_DATA] = C(MQTT_PUBLISH) | C_WILL,
    [MQTT_PROP_SUBSCRIPTION_ID] = C(MQTT_PUBLISH) | C(MQTT_SUBSCRIBE),
    [MQTT_PROP_SESSION_EXPIRY] = C(MQTT_CONNECT) | C(MQTT_CONNACK) | C(MQTT_DISCONNECT),
    [MQTT_PROP_ASSIGNED_CLIENT_ID] = C(MQTT_CONNACK),
    [MQTT_PROP_SERVER_KEEP_ALIVE] = C(MQTT_CONNACK),
    [MQTT_PROP_AUTH_METHOD] = C(MQTT_CONNECT) | C(MQTT_CONNACK) | C(MQTT_AUTH),
    [MQTT_PROP_AUTH_DATA] = C(MQTT_CONNECT) | C(MQTT_CONNACK) | C(MQTT_AUTH),
    [MQTT_PROP_REQUEST_PROBLEM_INFO] = C(MQTT_CONNECT),
    [MQTT_PROP_WILL_DELAY] = C_WILL,
    [MQTT_PROP_REQUEST_RESPONSE_INFO] = C(MQTT_CONNECT),
    [MQTT_PROP_RESPONSE_INFO] = C(MQTT_CONNACK),
    [MQTT_PROP_SERVER_REFERENCE] = C(MQTT_CONNACK) | C(MQTT_DISCONNECT),
    [MQTT_PROP_REASON_STRING] = C(MQTT_CONNACK) | C_ACKS | C(MQTT_SUBACK) | C(MQTT_UNSUBACK) |
                                C(MQTT_DISCONNECT) | C(MQTT_AUTH),
    [MQTT_PROP_RECEIVE_MAXIMUM] = C(MQTT_CONNECT) | C(MQTT_CONNACK),
    [MQTT_PROP_TOPIC_ALIAS_MAXIMUM] = C(MQTT_CONNECT) | C(MQTT_CONNACK),
    [MQTT_PROP_TOPIC_ALIAS] = C(MQTT_PUBLISH),
    [MQTT_PROP_MAXIMUM_QOS] = C(MQTT_CONNACK),
    [MQTT_PROP_RETAIN_AVAILABLE] = C(MQTT_CONNACK),
    [MQTT_PROP_USER] = C_ALL & ~(C(MQTT_PINGREQ) | C(MQTT_PINGRESP)),
    [MQTT_PROP_MAXIMUM_PACKET_SIZE] = C(MQTT_CONNECT) | C(MQTT_CONNACK),
    [MQTT_PROP_WILDCARD_SUB_AVAILABLE] = C(MQTT_CONNACK),
    [MQTT_PROP_SUB_ID_AVAILABLE] = C(MQTT_CONNACK),
    [MQTT_PROP_SHARED_SUB_AVAILABLE] = C(MQTT_CONNACK),
};

/* Reads one property at *PP (bounded by END) without semantic checks.
 * Returns MQTT_OK, MQTT_E_PROP_UNKNOWN, MQTT_E_PROP_LENGTH or MQTT_E_VARINT. */
static inline int prop_read(const uint8_t **pp, const uint8_t *end, struct mqtt_prop *o)
{
    const uint8_t *p = *pp;
    uint32_t id;
    int n = mqtt_varint_decode(p, (size_t)(end - p), &id);
    if (n <= 0)
        return n == 0 ? MQTT_E_PROP_LENGTH : n;
    p += n;
    if (id > PROP_MAX_ID || prop_kind[id] == K_NONE)
        return MQTT_E_PROP_UNKNOWN;
    o->id = (uint8_t)id;
    o->value = 0;
    o->bin.ptr = o->value2.ptr = NULL;
    o->bin.len = o->value2.len = 0;
    size_t left = (size_t)(end - p);
    switch (prop_kind[id]) {
    case K_BYTE:
        if (left < 1)
            return MQTT_E_PROP_LENGTH;
        o->value = p[0];
        p += 1;
        break;
    case K_U16:
        if (left < 2)
            return MQTT_E_PROP_LENGTH;
        o->value = (uint32_t)(p[0] << 8 | p[1]);
        p += 2;
        break;
    case K_U32:
        if (left < 4)
            return MQTT_E_PROP_LENGTH;
        o->value = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        p += 4;
        break;
    case K_VARINT:
        n = mqtt_varint_decode(p, left, &o->value);
        if (n <= 0)
            return n == 0 ? MQTT_E_PROP_LENGTH : n;
        p += n;
        break;
    case K_PAIR:
    case K_STR:
    case K_BIN: {
        if (left < 2)
            return MQTT_E_PROP_LENGTH;
        size_t l = (size_t)(p[0] << 8 | p[1]);
        if (left - 2 < l)
            return MQTT_E_PROP_LENGTH;
        o->bin.ptr = p + 2;
        o->bin.len = l;
        p += 2 + l;
        if (prop_kind[id] == K_PAIR) {
            left = (size_t)(end - p);
            if (left < 2)
                return MQTT_E_PROP_LENGTH;
            l = (size_t)(p[0] << 8 | p[1]);
            if (left - 2 < l)
                return MQTT_E_PROP_LENGTH;
            o->value2.ptr = p + 2;
            o->value2.len = l;
            p += 2 + l;
        }
        break;
    }
    default:
        return MQTT_E_PROP_UNKNOWN;
    }
    *pp = p;
    return MQTT_OK;
}

static inline struct mqtt_str bin_str(struct mqtt_bin b)
{
    struct mqtt_str s = {(const char *)b.ptr, b.len};
    return s;
}

int mqtt_props_parse(const uint8_t *block, size_t len, unsigned type, struct mqtt_props *out)
{
    memset(out, 0, sizeof *out);
    out->raw.ptr = block;
    out->raw.len = len;
    if (len == 0)
        return MQTT_OK;
    const uint8_t *p = block, *end = block + len;
    const uint16_t ctx = (uint16_t)(1u << (type & 15));
    while (p < end) {
        struct mqtt_prop pr;
        int rc = prop_read(&p, end, &pr);
        if (rc < 0)
            return rc;
        if (!(prop_ctx[pr.id] & ctx))
            return MQTT_E_PROP_NOT_ALLOWED;
        uint64_t bit = MQTT_PROP_BIT(pr.id);
        if ((out->present & bit) && pr.id != MQTT_PROP_USER &&
            !(pr.id == MQTT_PROP_SUBSCRIPTION_ID && type == MQTT_PUBLISH))
            return MQTT_E_PROP_DUPLICATE;
        out->present |= bit;
        uint8_t kind = prop_kind[pr.id];
        if (kind == K_BYTE && pr.value > 1)
            return MQTT_E_PROP_VALUE;
        if (kind == K_STR || kind == K_PAIR) {
            rc = utf8_scan(pr.bin.ptr, pr.bin.len, pr.id == MQTT_PROP_RESPONSE_TOPIC);
            if (rc < 0)
                return rc == MQTT_E_TOPIC_NAME ? MQTT_E_PROP_VALUE : rc;
            if (kind == K_PAIR && (rc = utf8_scan(pr.value2.ptr, pr.value2.len, false)) < 0)
                return rc;
        }
        switch (pr.id) {
        case MQTT_PROP_PAYLOAD_FORMAT:
            out->payload_format = (uint8_t)pr.value;
            break;
        case MQTT_PROP_MESSAGE_EXPIRY:
            out->message_expiry = pr.value;
            break;
        case MQTT_PROP_CONTENT_TYPE:
            out->content_type = bin_str(pr.bin);
            break;
        case MQTT_PROP_RESPONSE_TOPIC:
            if (pr.bin.len == 0)
                return MQTT_E_PROP_VALUE;
            out->response_topic = bin_str(pr.bin);
            break;
        case MQTT_PROP_CORRELATION_DATA:
            out->correlation_data = pr.bin;
            break;
        case MQTT_PROP_SUBSCRIPTION_ID:
            if (pr.value == 0)
                return MQTT_E_PROP_VALUE;
            if (out->sub_id_count++ == 0)
                out->subscription_id = pr.value;
            break;
        case MQTT_PROP_SESSION_EXPIRY:
            out->session_expiry = pr.value;
            break;
        case MQTT_PROP_ASSIGNED_CLIENT_ID:
            out->assigned_client_id = bin_str(pr.bin);
            break;
        case MQTT_PROP_SERVER_KEEP_ALIVE:
            out->server_keep_alive = (uint16_t)pr.value;
            break;
        case MQTT_PROP_AUTH_METHOD:
            out->auth_method = bin_str(pr.bin);
            break;
        case MQTT_PROP_AUTH_DATA:
            out->auth_data = pr.bin;
            break;
        case MQTT_PROP_REQUEST_PROBLEM_INFO:
            out->request_problem_info = (uint8_t)pr.value;
            break;
        case MQTT_PROP_WILL_DELAY:
            out->will_delay = pr.value;
            break;
        case MQTT_PROP_REQUEST_RESPONSE_INFO:
            out->request_response_info = (uint8_t)pr.value;
            break;
        case MQTT_PROP_RESPONSE_INFO:
            out->response_info = bin_str(pr.bin);
            break;
        case MQTT_PROP_SERVER_REFERENCE:
            out->server_reference = bin_str(pr.bin);
            break;
        case MQTT_PROP_REASON_STRING:
            out->reason_string = bin_str(pr.bin);
            break;
        case MQTT_PROP_RECEIVE_MAXIMUM:
            if (pr.value == 0)
                return MQTT_E_PROP_VALUE;
            out->receive_maximum = (uint16_t)pr.value;
            break;
        case MQTT_PROP_TOPIC_ALIAS_MAXIMUM:
            out->topic_alias_maximum = (uint16_t)pr.value;
            break;
        case MQTT_PROP_TOPIC_ALIAS:
            if (pr.value == 0)
                return MQTT_E_PROP_VALUE;
            out->topic_alias = (uint16_t)pr.value;
            break;
        case MQTT_PROP_MAXIMUM_QOS:
            out->maximum_qos = (uint8_t)pr.value;
            break;
        case MQTT_PROP_RETAIN_AVAILABLE:
            out->retain_available = (uint8_t)pr.value;
            break;
        case MQTT_PROP_USER:
            out->user_count++;
            break;
        case MQTT_PROP_MAXIMUM_PACKET_SIZE:
            if (pr.value == 0)
                return MQTT_E_PROP_VALUE;
            out->maximum_packet_size = pr.value;
            break;
        case MQTT_PROP_WILDCARD_SUB_AVAILABLE:
            out->wildcard_sub_available = (uint8_t)pr.value;
            break;
        case MQTT_PROP_SUB_ID_AVAILABLE:
            out->sub_id_available = (uint8_t)pr.value;
            break;
        case MQTT_PROP_SHARED_SUB_AVAILABLE:
            out->shared_sub_available = (uint8_t)pr.value;
            break;
        default:
            return MQTT_E_PROP_UNKNOWN;
        }
    }
    if ((out->present & MQTT_PROP_BIT(MQTT_PROP_AUTH_DATA)) &&
        !(out->present & MQTT_PROP_BIT(MQTT_PROP_AUTH_METHOD)))
        return MQTT_E_AUTH_DATA;
    return MQTT_OK;
}

/* Reads a length-prefixed property block at R for packet TYPE. */
static inline int rd_props(struct rd *r, unsigned type, struct mqtt_props *out)
{
    uint32_t plen;
    int n = mqtt_varint_decode(r->p, rd_left(r), &plen);
    if (n < 0)
        return n;
    if (n == 0)
        return MQTT_E_SHORT;
    r->p += n;
    if (rd_left(r) < plen)
        return MQTT_E_PROP_LENGTH;
    const uint8_t *block = r->p;
    r->p += plen;
    return mqtt_props_parse(block, plen, type, out);
}

static inline void props_empty(struct mqtt_props *p)
{
    memset(p, 0, sizeof *p);
}

void mqtt_prop_iter_init(struct mqtt_prop_iter *it, const struct mqtt_props *props)
{
    it->p = props->raw.ptr;
    it->end = props->raw.ptr ? props->raw.ptr + props->raw.len : NULL;
}

bool mqtt_prop_next(struct mqtt_prop_iter *it, struct mqtt_prop *out)
{
    if (!it->p || it->p >= it->end)
        return false;
    if (prop_read(&it->p, it->end, out) < 0) {
        it->p = it->end;
        return false;
    }
    return true;
}

bool mqtt_prop_next_user(struct mqtt_prop_iter *it, struct mqtt_str *key, struct mqtt_str *value)
{
    struct mqtt_prop pr;
    while (mqtt_prop_next(it, &pr)) {
        if (pr.id == MQTT_PROP_USER) {
            *key = bin_str(pr.bin);
            *value = bin_str(pr.value2);
            return true;
        }
    }
    return false;
}

bool mqtt_prop_next_sub_id(struct mqtt_prop_iter *it, uint32_t *id)
{
    struct mqtt_prop pr;
    while (mqtt_prop_next(it, &pr)) {
        if (pr.id == MQTT_PROP_SUBSCRIPTION_ID) {
            *id = pr.value;
            return true;
        }
    }
    return false;
}

/* Size of property ID's encoding from P's fields, or MQTT_E_INVALID. */
static long prop_field_size(const struct mqtt_props *p, unsigned id)
{
    switch (prop_kind[id]) {
    case K_BYTE:
        return 2;
    case K_U16:
        return 3;
    case K_U32:
        return 5;
    case K_VARINT: {
        int n = mqtt_varint_size(p->subscription_id);
        if (n == 0 || p->subscription_id == 0)
            return MQTT_E_INVALID;
        return 1 + n;
    }
    default:
        break;
    }
    size_t l;
    switch (id) {
    case MQTT_PROP_CONTENT_TYPE:
        l = p->content_type.len;
        break;
    case MQTT_PROP_RESPONSE_TOPIC:
        l = p->response_topic.len;
        break;
    case MQTT_PROP_CORRELATION_DATA:
        l = p->correlation_data.len;
        break;
    case MQTT_PROP_ASSIGNED_CLIENT_ID:
        l = p->assigned_client_id.len;
        break;
    case MQTT_PROP_AUTH_METHOD:
        l = p->auth_method.len;
        break;
    case MQTT_PROP_AUTH_DATA:
        l = p->auth_data.len;
        break;
    case MQTT_PROP_RESPONSE_INFO:
        l = p->response_info.len;
        break;
    case MQTT_PROP_SERVER_REFERENCE:
        l = p->server_reference.len;
        break;
    case MQTT_PROP_REASON_STRING:
        l = p->reason_string.len;
        break;
    default:
        return MQTT_E_INVALID;
    }
    if (l > 65535)
        return MQTT_E_INVALID;
    return 3 + (long)l;
}

/* The ids the field encoder writes: every known id except USER. */
static inline uint64_t props_field_mask(const struct mqtt_props *p)
{
    uint64_t m = p->present & ~MQTT_PROP_BIT(MQTT_PROP_USER);
    return m & ((MQTT_PROP_BIT(PROP_MAX_ID) << 1) - 1);
}

int mqtt_props_size(const struct mqtt_props *p)
{
    if (!p)
        return 0;
    long total = 0;
    uint64_t m = props_field_mask(p);
    while (m) {
        unsigned id = (unsigned)__builtin_ctzll(m);
        m &= m - 1;
        if (prop_kind[id] == K_NONE)
            return MQTT_E_INVALID;
        long s = prop_field_size(p, id);
        if (s < 0)
            return (int)s;
        total += s;
    }
    if (p->extra.len > MQTT_MAX_REMAINING_LENGTH)
        return MQTT_E_INVALID;
    total += (long)p->extra.len;
    if (total > (long)MQTT_MAX_REMAINING_LENGTH)
        return MQTT_E_INVALID;
    return (int)total;
}

static inline uint8_t *put_u16(uint8_t *w, uint32_t v)
{
    w[0] = (uint8_t)(v >> 8);
    w[1] = (uint8_t)v;
    return w + 2;
}

static inline uint8_t *put_u32(uint8_t *w, uint32_t v)
{
    w[0] = (uint8_t)(v >> 24);
    w[1] = (uint8_t)(v >> 16);
    w[2] = (uint8_t)(v >> 8);
    w[3] = (uint8_t)v;
    return w + 4;
}

static inline uint8_t *put_bytes(uint8_t *w, const void *src, size_t n)
{
    if (n)
        memcpy(w, src, n);
    return w + n;
}

static inline uint8_t *put_lstr(uint8_t *w, const void *src, size_t n)
{
    w = put_u16(w, (uint32_t)n);
    return put_bytes(w, src, n);
}

/* Writes the block body (no length prefix); sizes already checked. */
static uint8_t *props_write_body(uint8_t *w, const struct mqtt_props *p)
{
    uint64_t m = props_field_mask(p);
    while (m) {
        unsigned id = (unsigned)__builtin_ctzll(m);
        m &= m - 1;
        *w++ = (uint8_t)id;
        switch (id) {
        case MQTT_PROP_PAYLOAD_FORMAT:
            *w++ = p->payload_format;
            break;
        case MQTT_PROP_MESSAGE_EXPIRY:
            w = put_u32(w, p->message_expiry);
            break;
        case MQTT_PROP_CONTENT_TYPE:
            w = put_lstr(w, p->content_type.ptr, p->content_type.len);
            break;
        case MQTT_PROP_RESPONSE_TOPIC:
            w = put_lstr(w, p->response_topic.ptr, p->response_topic.len);
            break;
        case MQTT_PROP_CORRELATION_DATA:
            w = put_lstr(w, p->correlation_data.ptr, p->correlation_data.len);
            break;
        case MQTT_PROP_SUBSCRIPTION_ID:
            w += mqtt_varint_encode(w, p->subscription_id);
            break;
        case MQTT_PROP_SESSION_EXPIRY:
            w = put_u32(w, p->session_expiry);
            break;
        case MQTT_PROP_ASSIGNED_CLIENT_ID:
            w = put_lstr(w, p->assigned_client_id.ptr, p->assigned_client_id.len);
            break;
        case MQTT_PROP_SERVER_KEEP_ALIVE:
            w = put_u16(w, p->server_keep_alive);
            break;
        case MQTT_PROP_AUTH_METHOD:
            w = put_lstr(w, p->auth_method.ptr, p->auth_method.len);
            break;
        case MQTT_PROP_AUTH_DATA:
            w = put_lstr(w, p->auth_data.ptr, p->auth_data.len);
            break;
        case MQTT_PROP_REQUEST_PROBLEM_INFO:
            *w++ = p->request_problem_info;
            break;
        case MQTT_PROP_WILL_DELAY:
            w = put_u32(w, p->will_delay);
            break;
        case MQTT_PROP_REQUEST_RESPONSE_INFO:
            *w++ = p->request_response_info;
            break;
        case MQTT_PROP_RESPONSE_INFO:
            w = put_lstr(w, p->response_info.ptr, p->response_info.len);
            break;
        case MQTT_PROP_SERVER_REFERENCE:
            w = put_lstr(w, p->server_reference.ptr, p->server_reference.len);
            break;
        case MQTT_PROP_REASON_STRING:
            w = put_lstr(w, p->reason_string.ptr, p->reason_string.len);
            break;
        case MQTT_PROP_RECEIVE_MAXIMUM:
            w = put_u16(w, p->receive_maximum);
            break;
        case MQTT_PROP_TOPIC_ALIAS_MAXIMUM:
            w = put_u16(w, p->topic_alias_maximum);
            break;
        case MQTT_PROP_TOPIC_ALIAS:
            w = put_u16(w, p->topic_alias);
            break;
        case MQTT_PROP_MAXIMUM_QOS:
            *w++ = p->maximum_qos;
            break;
        case MQTT_PROP_RETAIN_AVAILABLE:
            *w++ = p->retain_available;
            break;
        case MQTT_PROP_MAXIMUM_PACKET_SIZE:
            w = put_u32(w, p->maximum_packet_size);
            break;
        case MQTT_PROP_WILDCARD_SUB_AVAILABLE:
            *w++ = p->wildcard_sub_available;
            break;
        case MQTT_PROP_SUB_ID_AVAILABLE:
            *w++ = p->sub_id_available;
            break;
        case MQTT_PROP_SHARED_SUB_AVAILABLE:
            *w++ = p->shared_sub_available;
            break;
        default:
            break;
        }
    }
    return put_bytes(w, p->extra.ptr, p->extra.len);
}

int mqtt_props_encode(uint8_t *buf, size_t cap, const struct mqtt_props *p)
{
    int body = mqtt_props_size(p);
    if (body < 0)
        return body;
    int total = mqtt_varint_size((uint32_t)body) + body;
    if (!buf)
        return total;
    if (cap < (size_t)total)
        return MQTT_E_BUFFER;
    uint8_t *w = buf + mqtt_varint_encode(buf, (uint32_t)body);
    if (p)
        props_write_body(w, p);
    return total;
}

int mqtt_prop_encode_user(uint8_t *buf, size_t cap, const char *key, size_t key_len,
                          const char *value, size_t value_len)
{
    if (key_len > 65535 || value_len > 65535)
        return MQTT_E_INVALID;
    int total = (int)(5 + key_len + value_len);
    if (!buf)
        return total;
    if (cap < (size_t)total)
        return MQTT_E_BUFFER;
    uint8_t *w = buf;
    *w++ = MQTT_PROP_USER;
    w = put_lstr(w, key, key_len);
    put_lstr(w, value, value_len);
    return total;
}

int mqtt_prop_encode_sub_id(uint8_t *buf, size_t cap, uint32_t id)
{
    int n = mqtt_varint_size(id);
    if (id == 0 || n == 0)
        return MQTT_E_INVALID;
    if (!buf)
        return 1 + n;
    if (cap < (size_t)(1 + n))
        return MQTT_E_BUFFER;
    buf[0] = MQTT_PROP_SUBSCRIPTION_ID;
    mqtt_varint_encode(buf + 1, id);
    return 1 + n;
}

int mqtt_props_copy(uint8_t *buf, size_t cap, struct mqtt_bin raw, uint64_t exclude)
{
    const uint8_t *p = raw.ptr, *end = raw.ptr ? raw.ptr + raw.len : NULL;
    size_t total = 0;
    /* Size pass, then copy pass: both walk the validated block. */
    for (int pass = 0; pass < 2; pass++) {
        p = raw.ptr;
        size_t off = 0;
        while (p && p < end) {
            const uint8_t *start = p;
            struct mqtt_prop pr;
            if (prop_read(&p, end, &pr) < 0)
                return MQTT_E_INVALID;
            size_t n = (size_t)(p - start);
            if (exclude & MQTT_PROP_BIT(pr.id))
                continue;
            if (pass == 1)
                memcpy(buf + off, start, n);
            off += n;
        }
        if (pass == 0) {
            total = off;
            if (total > MQTT_MAX_REMAINING_LENGTH)
                return MQTT_E_INVALID;
            if (!buf)
                return (int)total;
            if (cap < total)
                return MQTT_E_BUFFER;
        }
    }
    return (int)total;
}

/* ------------------------------------------------------------------ */
/* Reason code tables */

static const uint8_t rc_connack5[] = {0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86,
                                      0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
                                      0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F};
static const uint8_t rc_puback[] = {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99};
static const uint8_t rc_pubrel[] = {0x00, 0x92};
static const uint8_t rc_suback5[] = {0x00, 0x01, 0x02, 0x80, 0x83, 0x87,
                                     0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2};
static const uint8_t rc_suback4[] = {0x00, 0x01, 0x02, 0x80};
static const uint8_t rc_unsuback[] = {0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91};
static const uint8_t rc_disconnect[] = {0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D,
                                        0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
                                        0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2};
static const uint8_t rc_auth[] = {0x00, 0x18, 0x19};

#define RC_OK(tbl, rc) (memchr((tbl), (rc), sizeof(tbl)) != NULL)

/* ------------------------------------------------------------------ */
/* Decoders */

int mqtt_decode_connect(const uint8_t *pkt, size_t len, struct mqtt_connect *out)
{
    struct rd r;
    uint8_t flags;
    out->version = 0;
    int rc = rd_fixed(pkt, len, MQTT_CONNECT, &r, &flags);
    if (rc < 0)
        return rc;
    if (flags != 0)
        return MQTT_E_FIXED_FLAGS;
    memset(out, 0, sizeof *out);
    struct mqtt_bin name;
    if ((rc = rd_bin(&r, &name)) < 0)
        return rc;
    uint8_t level;
    if ((rc = rd_u8(&r, &level)) < 0)
        return rc;
    out->version = level;
    if (name.len == 6 && memcmp(name.ptr, "MQIsdp", 6) == 0)
        return MQTT_E_PROTOCOL_LEVEL; /* MQTT 3.1: answer "unacceptable protocol" */
    if (name.len != 4 || memcmp(name.ptr, "MQTT", 4) != 0)
        return MQTT_E_PROTOCOL_NAME;
    if (level != MQTT_V311 && level != MQTT_V5)
        return MQTT_E_PROTOCOL_LEVEL;
    uint8_t cf;
    if ((rc = rd_u8(&r, &cf)) < 0)
        return rc;
    if (cf & 0x01)
        return MQTT_E_CONNECT_RESERVED;
    out->clean_start = (cf & 0x02) != 0;
    out->will = (cf & 0x04) != 0;
    out->will_qos = (cf >> 3) & 3;
    out->will_retain = (cf & 0x20) != 0;
    bool has_password = (cf & 0x40) != 0;
    bool has_username = (cf & 0x80) != 0;
    if (out->will_qos == 3 || (!out->will && out->will_qos))
        return MQTT_E_WILL_QOS;
    if (!out->will && out->will_retain)
        return MQTT_E_WILL_RETAIN;
    if (level == MQTT_V311 && has_password && !has_username)
        return MQTT_E_PASSWORD_FLAG;
    if ((rc = rd_u16(&r, &out->keep_alive)) < 0)
        return rc;
    if (level == MQTT_V5 && (rc = rd_props(&r, MQTT_CONNECT, &out->props)) < 0)
        return rc;
    if ((rc = rd_str(&r, &out->client_id)) < 0)
        return rc;
    if (out->will) {
        if (level == MQTT_V5 && (rc = rd_props(&r, 0, &out->will_props)) < 0)
            return rc;
        if ((rc = rd_str(&r, &out->will_topic)) < 0)
            return rc;
        if ((rc = rd_bin(&r, &out->will_payload)) < 0)
            return rc;
    }
    if (has_username && (rc = rd_str(&r, &out->username)) < 0)
        return rc;
    if (has_password && (rc = rd_bin(&r, &out->password)) < 0)
        return rc;
    if (rd_left(&r))
        return MQTT_E_TRAILING;
    return MQTT_OK;
}

int mqtt_decode_connack(const uint8_t *pkt, size_t len, uint8_t version, struct mqtt_connack *out)
{
    struct rd r;
    uint8_t flags;
    int rc = check_version(version);
    if (rc < 0 || (rc = rd_fixed(pkt, len, MQTT_CONNACK, &r, &flags)) < 0)
        return rc;
    if (flags != 0)
        return MQTT_E_FIXED_FLAGS;
    uint8_t af;
    if ((rc = rd_u8(&r, &af)) < 0 || (rc = rd_u8(&r, &out->reason)) < 0)
        return rc;
    if (af & 0xFE)
        return MQTT_E_CONNACK_FLAGS;
    out->session_present = af & 1;
    if (version == MQTT_V5) {
        if (!RC_OK(rc_connack5, out->reason))
            return MQTT_E_REASON_CODE;
        if ((rc = rd_props(&r, MQTT_CONNACK, &out->props)) < 0)
            return rc;
    } else {
        props_empty(&out->props);
        if (out->reason > MQTT_CONNACK_NOT_AUTHORIZED)
            return MQTT_E_REASON_CODE;
    }
    if (out->session_present && out->reason != 0)
        return MQTT_E_CONNACK_FLAGS;
    if (rd_left(&r))
        return MQTT_E_TRAILING;
    return MQTT_OK;
}

int mqtt_decode_publish(const uint8_t *pkt, size_t len, uint8_t version, struct mqtt_publish *out)
{
    struct rd r;
    uint8_t flags;
    int rc = check_version(version);
    if (rc < 0 || (rc = rd_fixed(pkt, len, MQTT_PUBLISH, &r, &flags)) < 0)
        return rc;
    out->qos = (flags >> 1) & 3;
    out->dup = (flags & 0x08) != 0;
    out->retain = (flags & 0x01) != 0;
    if (out->qos == 3)
        return MQTT_E_QOS;
    if (out->dup && out->qos == 0)
        return MQTT_E_DUP_QOS0;
    struct mqtt_bin t;
    if ((rc = rd_bin(&r, &t)) < 0)
        return rc;
    if ((rc = utf8_scan(t.ptr, t.len, true)) < 0)
        return rc;
    out->topic.ptr = (const char *)t.ptr;
    out->topic.len = t.len;
    out->packet_id = 0;
    if (out->qos) {
        if ((rc = rd_u16(&r, &out->packet_id)) < 0)
            return rc;
        if (out->packet_id == 0)
            return MQTT_E_PACKET_ID;
    }
    if (version == MQTT_V5) {
        if ((rc = rd_props(&r, MQTT_PUBLISH, &out->props)) < 0)
            return rc;
        if (t.len == 0 && !(out->props.present & MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS)))
            return MQTT_E_NO_TOPIC;
    } else {
        props_empty(&out->props);
        if (t.len == 0)
            return MQTT_E_NO_TOPIC;
    }
    out->payload.ptr = r.p;
    out->payload.len = rd_left(&r);
    return MQTT_OK;
}

int mqtt_decode_ack(const uint8_t *pkt, size_t len, uint8_t version, struct mqtt_ack *out)
{
    int rc = check_version(version);
    if (rc < 0)
        return rc;
    if (len < 1)
        return MQTT_E_SHORT;
    unsigned type = pkt[0] >> 4;
    if (type < MQTT_PUBACK || type > MQTT_PUBCOMP)
        return MQTT_E_WRONG_TYPE;
    struct rd r;
    uint8_t flags;
    if ((rc = rd_fixed(pkt, len, type, &r, &flags)) < 0)
        return rc;
    if (flags != (type == MQTT_PUBREL ? 2 : 0))
        return MQTT_E_FIXED_FLAGS;
    out->type = (uint8_t)type;
    out->reason = 0;
    props_empty(&out->props);
    if ((rc = rd_u16(&r, &out->packet_id)) < 0)
        return rc;
    if (out->packet_id == 0)
        return MQTT_E_PACKET_ID;
    if (version == MQTT_V5 && rd_left(&r)) {
        rd_u8(&r, &out->reason);
        bool ok =
            type <= MQTT_PUBREC ? RC_OK(rc_puback, out->reason) : RC_OK(rc_pubrel, out->reason);
        if (!ok)
            return MQTT_E_REASON_CODE;
        if (rd_left(&r) && (rc = rd_props(&r, type, &out->props)) < 0)
            return rc;
    }
    if (rd_left(&r))
        return MQTT_E_TRAILING;
    return MQTT_OK;
}

static int decode_sub_common(const uint8_t *pkt, size_t len, uint8_t version, unsigned type,
                             struct mqtt_subscribe *out, struct rd *r)
{
    uint8_t flags;
    int rc = check_version(version);
    if (rc < 0 || (rc = rd_fixed(pkt, len, type, r, &flags)) < 0)
        return rc;
    if (flags != 2)
        return MQTT_E_FIXED_FLAGS;
    if ((rc = rd_u16(r, &out->packet_id)) < 0)
        return rc;
    if (out->packet_id == 0)
        return MQTT_E_PACKET_ID;
    if (version == MQTT_V5)
        rc = rd_props(r, type, &out->props);
    else
        props_empty(&out->props);
    if (rc < 0)
        return rc;
    out->entries.ptr = r->p;
    out->entries.len = rd_left(r);
    out->count = 0;
    if (rd_left(r) == 0)
        return MQTT_E_NO_FILTERS;
    return MQTT_OK;
}

int mqtt_decode_subscribe(const uint8_t *pkt, size_t len, uint8_t version,
                          struct mqtt_subscribe *out)
{
    struct rd r;
    int rc = decode_sub_common(pkt, len, version, MQTT_SUBSCRIBE, out, &r);
    if (rc < 0)
        return rc;
    const uint8_t reserved = version == MQTT_V5 ? 0xC0 : 0xFC;
    while (rd_left(&r)) {
        struct mqtt_str f;
        uint8_t o;
        if ((rc = rd_str(&r, &f)) < 0 || (rc = rd_u8(&r, &o)) < 0)
            return rc;
        if (o & reserved)
            return MQTT_E_SUB_OPTIONS;
        if ((o & 3) == 3)
            return MQTT_E_SUB_QOS;
        if (((o >> 4) & 3) == 3)
            return MQTT_E_RETAIN_HANDLING;
        out->count++;
    }
    return MQTT_OK;
}

int mqtt_decode_unsubscribe(const uint8_t *pkt, size_t len, uint8_t version,
                            struct mqtt_subscribe *out)
{
    struct rd r;
    int rc = decode_sub_common(pkt, len, version, MQTT_UNSUBSCRIBE, out, &r);
    if (rc < 0)
        return rc;
    while (rd_left(&r)) {
        struct mqtt_str f;
        if ((rc = rd_str(&r, &f)) < 0)
            return rc;
        out->count++;
    }
    return MQTT_OK;
}

void mqtt_sub_iter_init(struct mqtt_entry_iter *it, const struct mqtt_subscribe *s)
{
    it->p = s->entries.ptr;
    it->end = s->entries.ptr ? s->entries.ptr + s->entries.len : NULL;
}

bool mqtt_sub_next(struct mqtt_entry_iter *it, struct mqtt_sub_entry *out)
{
    struct rd r = {it->p, it->end};
    struct mqtt_bin b;
    if (!r.p || rd_bin(&r, &b) < 0 || rd_u8(&r, &out->options) < 0) {
        it->p = it->end;
        return false;
    }
    out->filter.ptr = (const char *)b.ptr;
    out->filter.len = b.len;
    out->qos = out->options & 3;
    out->no_local = (out->options & 0x04) != 0;
    out->retain_as_published = (out->options & 0x08) != 0;
    out->retain_handling = (out->options >> 4) & 3;
    it->p = r.p;
    return true;
}

bool mqtt_unsub_next(struct mqtt_entry_iter *it, struct mqtt_str *filter)
{
    struct rd r = {it->p, it->end};
    struct mqtt_bin b;
    if (!r.p || rd_bin(&r, &b) < 0) {
        it->p = it->end;
        return false;
    }
    filter->ptr = (const char *)b.ptr;
    filter->len = b.len;
    it->p = r.p;
    return true;
}

static int decode_suback_common(const uint8_t *pkt, size_t len, uint8_t version, unsigned type,
                                struct mqtt_suback *out, struct rd *r)
{
    uint8_t flags;
    int rc = check_version(version);
    if (rc < 0 || (rc = rd_fixed(pkt, len, type, r, &flags)) < 0)
        return rc;
    if (flags != 0)
        return MQTT_E_FIXED_FLAGS;
    if ((rc = rd_u16(r, &out->packet_id)) < 0)
        return rc;
    if (out->packet_id == 0)
        return MQTT_E_PACKET_ID;
    if (version == MQTT_V5)
        rc = rd_props(r, type, &out->props);
    else
        props_empty(&out->props);
    if (rc < 0)
        return rc;
    out->reasons.ptr = r->p;
    out->reasons.len = rd_left(r);
    return MQTT_OK;
}

int mqtt_decode_suback(const uint8_t *pkt, size_t len, uint8_t version, struct mqtt_suback *out)
{
    struct rd r;
    int rc = decode_suback_common(pkt, len, version, MQTT_SUBACK, out, &r);
    if (rc < 0)
        return rc;
    if (out->reasons.len == 0)
        return MQTT_E_NO_FILTERS;
    for (size_t i = 0; i < out->reasons.len; i++) {
        uint8_t c = out->reasons.ptr[i];
        if (version == MQTT_V5 ? !RC_OK(rc_suback5, c) : !RC_OK(rc_suback4, c))
            return MQTT_E_REASON_CODE;
    }
    return MQTT_OK;
}

int mqtt_decode_unsuback(const uint8_t *pkt, size_t len, uint8_t version, struct mqtt_suback *out)
{
    struct rd r;
    int rc = decode_suback_common(pkt, len, version, MQTT_UNSUBACK, out, &r);
    if (rc < 0)
        return rc;
    if (version == MQTT_V311) {
        if (out->reasons.len)
            return MQTT_E_TRAILING;
        return MQTT_OK;
    }
    if (out->reasons.len == 0)
        return MQTT_E_NO_FILTERS;
    for (size_t i = 0; i < out->reasons.len; i++)
        if (!RC_OK(rc_unsuback, out->reasons.ptr[i]))
            return MQTT_E_REASON_CODE;
    return MQTT_OK;
}

int mqtt_decode_ping(const uint8_t *pkt, size_t len, uint8_t version)
{
    int rc = check_version(version);
    if (rc < 0)
        return rc;
    if (len < 1)
        return MQTT_E_SHORT;
    unsigned type = pkt[0] >> 4;
    if (type != MQTT_PINGREQ && type != MQTT_PINGRESP)
        return MQTT_E_WRONG_TYPE;
    struct rd r;
    uint8_t flags;
    if ((rc = rd_fixed(pkt, len, type, &r, &flags)) < 0)
        return rc;
    if (flags != 0)
        return MQTT_E_FIXED_FLAGS;
    if (rd_left(&r))
        return MQTT_E_TRAILING;
    return MQTT_OK;
}

/* DISCONNECT and AUTH share a layout: [reason [props]]. */
static int decode_reason_props(const uint8_t *pkt, size_t len, uint8_t version, unsigned type,
                               uint8_t *reason, struct mqtt_props *props)
{
    struct rd r;
    uint8_t flags;
    int rc = check_version(version);
    if (rc < 0)
        return rc;
    if (type == MQTT_AUTH && version != MQTT_V5)
        return MQTT_E_PACKET_TYPE;
    if ((rc = rd_fixed(pkt, len, type, &r, &flags)) < 0)
        return rc;
    if (flags != 0)
        return MQTT_E_FIXED_FLAGS;
    *reason = 0;
    props_empty(props);
    if (version == MQTT_V5 && rd_left(&r)) {
        rd_u8(&r, reason);
        bool ok = type == MQTT_AUTH ? RC_OK(rc_auth, *reason) : RC_OK(rc_disconnect, *reason);
        if (!ok)
            return MQTT_E_REASON_CODE;
        if (rd_left(&r) && (rc = rd_props(&r, type, props)) < 0)
            return rc;
    }
    if (rd_left(&r))
        return MQTT_E_TRAILING;
    return MQTT_OK;
}

int mqtt_decode_disconnect(const uint8_t *pkt, size_t len, uint8_t version,
                           struct mqtt_disconnect *out)
{
    return decode_reason_props(pkt, len, version, MQTT_DISCONNECT, &out->reason, &out->props);
}

int mqtt_decode_auth(const uint8_t *pkt, size_t len, uint8_t version, struct mqtt_auth *out)
{
    return decode_reason_props(pkt, len, version, MQTT_AUTH, &out->reason, &out->props);
}

int mqtt_decode(const uint8_t *pkt, size_t len, uint8_t version, struct mqtt_packet *out)
{
    if (len < 1)
        return MQTT_E_SHORT;
    out->type = pkt[0] >> 4;
    out->flags = pkt[0] & 0x0F;
    switch (out->type) {
    case MQTT_CONNECT:
        return mqtt_decode_connect(pkt, len, &out->u.connect);
    case MQTT_CONNACK:
        return mqtt_decode_connack(pkt, len, version, &out->u.connack);
    case MQTT_PUBLISH:
        return mqtt_decode_publish(pkt, len, version, &out->u.publish);
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        return mqtt_decode_ack(pkt, len, version, &out->u.ack);
    case MQTT_SUBSCRIBE:
        return mqtt_decode_subscribe(pkt, len, version, &out->u.subscribe);
    case MQTT_SUBACK:
        return mqtt_decode_suback(pkt, len, version, &out->u.suback);
    case MQTT_UNSUBSCRIBE:
        return mqtt_decode_unsubscribe(pkt, len, version, &out->u.subscribe);
    case MQTT_UNSUBACK:
        return mqtt_decode_unsuback(pkt, len, version, &out->u.suback);
    case MQTT_PINGREQ:
    case MQTT_PINGRESP:
        return mqtt_decode_ping(pkt, len, version);
    case MQTT_DISCONNECT:
        return mqtt_decode_disconnect(pkt, len, version, &out->u.disconnect);
    case MQTT_AUTH:
        return mqtt_decode_auth(pkt, len, version, &out->u.auth);
    default:
        return MQTT_E_PACKET_TYPE;
    }
}

int mqtt_payload_check(const struct mqtt_props *props, struct mqtt_bin payload)
{
    if (!props || !(props->present & MQTT_PROP_BIT(MQTT_PROP_PAYLOAD_FORMAT)) ||
        props->payload_format != 1)
        return MQTT_OK;
    return utf8_scan(payload.ptr, payload.len, false) < 0 ? MQTT_E_PAYLOAD_FORMAT : MQTT_OK;
}

/* ------------------------------------------------------------------ */
/* Encoders */

/* Size of a property block with its length prefix under VERSION (0 under
 * 3.1.1), or a negative error. */
static inline long props_wire_size(uint8_t version, const struct mqtt_props *p)
{
    if (version != MQTT_V5)
        return 0;
    int body = mqtt_props_size(p);
    if (body < 0)
        return body;
    return mqtt_varint_size((uint32_t)body) + body;
}

static inline bool props_nonempty(const struct mqtt_props *p)
{
    return p && ((p->present & ~MQTT_PROP_BIT(MQTT_PROP_USER)) || p->extra.len);
}

static inline uint8_t *put_props(uint8_t *w, const struct mqtt_props *p)
{
    int body = mqtt_props_size(p);
    w += mqtt_varint_encode(w, (uint32_t)body);
    return p ? props_write_body(w, p) : w;
}

/* Checks REMAINING, computes the packet size, and checks BUF/CAP.
 * Returns the total size, or a negative error; *GO tells whether to write. */
static inline long frame_size(size_t remaining, const uint8_t *buf, size_t cap, bool *go)
{
    *go = false;
    if (remaining > MQTT_MAX_REMAINING_LENGTH)
        return MQTT_E_INVALID;
    long total = 1 + mqtt_varint_size((uint32_t)remaining) + (long)remaining;
    if (!buf)
        return total;
    if (cap < (size_t)total)
        return MQTT_E_BUFFER;
    *go = true;
    return total;
}

static inline uint8_t *put_fixed(uint8_t *w, uint8_t byte0, size_t remaining)
{
    *w++ = byte0;
    return w + mqtt_varint_encode(w, (uint32_t)remaining);
}

int mqtt_encode_connect(uint8_t *buf, size_t cap, const struct mqtt_connect *c)
{
    uint8_t v = c->version;
    if (check_version(v) < 0 || c->will_qos > 2 || (!c->will && (c->will_qos || c->will_retain)))
        return MQTT_E_INVALID;
    if (v == MQTT_V311 && c->password.ptr && !c->username.ptr)
        return MQTT_E_INVALID;
    if (c->client_id.len > 65535 || c->username.len > 65535 || c->password.len > 65535)
        return MQTT_E_INVALID;
    size_t rl = 2 + 4 + 1 + 1 + 2 + 2 + c->client_id.len;
    long ps = props_wire_size(v, &c->props);
    if (ps < 0)
        return (int)ps;
    rl += (size_t)ps;
    long wps = 0;
    if (c->will) {
        if (c->will_topic.len > 65535 || c->will_payload.len > 65535)
            return MQTT_E_INVALID;
        wps = props_wire_size(v, &c->will_props);
        if (wps < 0)
            return (int)wps;
        rl += (size_t)wps + 2 + c->will_topic.len + 2 + c->will_payload.len;
    }
    if (c->username.ptr)
        rl += 2 + c->username.len;
    if (c->password.ptr)
        rl += 2 + c->password.len;
    bool go;
    long total = frame_size(rl, buf, cap, &go);
    if (!go)
        return (int)total;
    uint8_t *w = put_fixed(buf, MQTT_CONNECT << 4, rl);
    w = put_lstr(w, "MQTT", 4);
    *w++ = v;
    *w++ = (uint8_t)((c->username.ptr ? 0x80 : 0) | (c->password.ptr ? 0x40 : 0) |
                     (c->will_retain ? 0x20 : 0) | (c->will_qos << 3) | (c->will ? 0x04 : 0) |
                     (c->clean_start ? 0x02 : 0));
    w = put_u16(w, c->keep_alive);
    if (v == MQTT_V5)
        w = put_props(w, &c->props);
    w = put_lstr(w, c->client_id.ptr, c->client_id.len);
    if (c->will) {
        if (v == MQTT_V5)
            w = put_props(w, &c->will_props);
        w = put_lstr(w, c->will_topic.ptr, c->will_topic.len);
        w = put_lstr(w, c->will_payload.ptr, c->will_payload.len);
    }
    if (c->username.ptr)
        w = put_lstr(w, c->username.ptr, c->username.len);
    if (c->password.ptr)
        w = put_lstr(w, c->password.ptr, c->password.len);
    return (int)total;
}

int mqtt_encode_connack(uint8_t *buf, size_t cap, uint8_t version, const struct mqtt_connack *c)
{
    if (check_version(version) < 0)
        return MQTT_E_INVALID;
    long ps = props_wire_size(version, &c->props);
    if (ps < 0)
        return (int)ps;
    size_t rl = 2 + (size_t)ps;
    bool go;
    long total = frame_size(rl, buf, cap, &go);
    if (!go)
        return (int)total;
    uint8_t *w = put_fixed(buf, MQTT_CONNACK << 4, rl);
    *w++ = c->session_present ? 1 : 0;
    *w++ = c->reason;
    if (version == MQTT_V5)
        put_props(w, &c->props);
    return (int)total;
}

static long publish_header_rl(uint8_t version, const struct mqtt_publish *p, size_t *rl)
{
    if (check_version(version) < 0 || p->qos > 2 || (p->qos && !p->packet_id) ||
        (p->dup && !p->qos) || p->topic.len > 65535)
        return MQTT_E_INVALID;
    long ps = props_wire_size(version, &p->props);
    if (ps < 0)
        return ps;
    size_t hdr = 2 + p->topic.len + (p->qos ? 2 : 0) + (size_t)ps;
    *rl = hdr + p->payload.len;
    return (long)hdr;
}

static uint8_t *put_publish_header(uint8_t *w, uint8_t version, const struct mqtt_publish *p,
                                   size_t rl)
{
    w = put_fixed(
        w, (uint8_t)(MQTT_PUBLISH << 4 | (p->dup ? 8 : 0) | p->qos << 1 | (p->retain ? 1 : 0)), rl);
    w = put_lstr(w, p->topic.ptr, p->topic.len);
    if (p->qos)
        w = put_u16(w, p->packet_id);
    if (version == MQTT_V5)
        w = put_props(w, &p->props);
    return w;
}

int mqtt_encode_publish_header(uint8_t *buf, size_t cap, uint8_t version,
                               const struct mqtt_publish *p)
{
    size_t rl = 0;
    long hdr = publish_header_rl(version, p, &rl);
    if (hdr < 0)
        return (int)hdr;
    if (rl > MQTT_MAX_REMAINING_LENGTH)
        return MQTT_E_INVALID;
    int total = 1 + mqtt_varint_size((uint32_t)rl) + (int)hdr;
    if (!buf)
        return total;
    if (cap < (size_t)total)
        return MQTT_E_BUFFER;
    put_publish_header(buf, version, p, rl);
    return total;
}

int mqtt_encode_publish(uint8_t *buf, size_t cap, uint8_t version, const struct mqtt_publish *p)
{
    size_t rl = 0;
    long hdr = publish_header_rl(version, p, &rl);
    if (hdr < 0)
        return (int)hdr;
    bool go;
    long total = frame_size(rl, buf, cap, &go);
    if (!go)
        return (int)total;
    uint8_t *w = put_publish_header(buf, version, p, rl);
    put_bytes(w, p->payload.ptr, p->payload.len);
    return (int)total;
}

int mqtt_encode_ack(uint8_t *buf, size_t cap, uint8_t version, const struct mqtt_ack *a)
{
    if (check_version(version) < 0 || a->type < MQTT_PUBACK || a->type > MQTT_PUBCOMP ||
        a->packet_id == 0)
        return MQTT_E_INVALID;
    size_t rl = 2;
    long ps = 0;
    bool with_props = version == MQTT_V5 && props_nonempty(&a->props);
    bool with_reason = version == MQTT_V5 && (a->reason || with_props);
    if (with_props) {
        ps = props_wire_size(version, &a->props);
        if (ps < 0)
            return (int)ps;
    }
    rl += (with_reason ? 1 : 0) + (size_t)ps;
    bool go;
    long total = frame_size(rl, buf, cap, &go);
    if (!go)
        return (int)total;
    uint8_t *w = put_fixed(buf, (uint8_t)(a->type << 4 | (a->type == MQTT_PUBREL ? 2 : 0)), rl);
    w = put_u16(w, a->packet_id);
    if (with_reason)
        *w++ = a->reason;
    if (with_props)
        put_props(w, &a->props);
    return (int)total;
}

int mqtt_encode_ack_simple(uint8_t *buf, size_t cap, uint8_t version, uint8_t type,
                           uint16_t packet_id, uint8_t reason)
{
    struct mqtt_ack a;
    memset(&a, 0, sizeof a);
    a.type = type;
    a.packet_id = packet_id;
    a.reason = reason;
    return mqtt_encode_ack(buf, cap, version, &a);
}

int mqtt_encode_subscribe(uint8_t *buf, size_t cap, uint8_t version, const struct mqtt_subscribe *s,
                          const struct mqtt_sub_entry *entries, size_t n)
{
    if (check_version(version) < 0 || n == 0 || s->packet_id == 0)
        return MQTT_E_INVALID;
    long ps = props_wire_size(version, &s->props);
    if (ps < 0)
        return (int)ps;
    size_t rl = 2 + (size_t)ps;
    for (size_t i = 0; i < n; i++) {
        const struct mqtt_sub_entry *e = &entries[i];
        if (e->filter.len > 65535 || e->qos > 2 || e->retain_handling > 2)
            return MQTT_E_INVALID;
        if (version == MQTT_V311 && (e->no_local || e->retain_as_published || e->retain_handling))
            return MQTT_E_INVALID;
        rl += 3 + e->filter.len;
        if (rl > MQTT_MAX_REMAINING_LENGTH)
            return MQTT_E_INVALID;
    }
    bool go;
    long total = frame_size(rl, buf, cap, &go);
    if (!go)
        return (int)total;
    uint8_t *w = put_fixed(buf, MQTT_SUBSCRIBE << 4 | 2, rl);
    w = put_u16(w, s->packet_id);
    if (version == MQTT_V5)
        w = put_props(w, &s->props);
    for (size_t i = 0; i < n; i++) {
        const struct mqtt_sub_entry *e = &entries[i];
        w = put_lstr(w, e->filter.ptr, e->filter.len);
        *w++ = (uint8_t)(e->qos | (e->no_local ? 4 : 0) | (e->retain_as_published ? 8 : 0) |
                         e->retain_handling << 4);
    }
    return (int)total;
}

int mqtt_encode_unsubscribe(uint8_t *buf, size_t cap, uint8_t version,
                            const struct mqtt_subscribe *s, const struct mqtt_str *filters,
                            size_t n)
{
    if (check_version(version) < 0 || n == 0 || s->packet_id == 0)
        return MQTT_E_INVALID;
    long ps = props_wire_size(version, &s->props);
    if (ps < 0)
        return (int)ps;
    size_t rl = 2 + (size_t)ps;
    for (size_t i = 0; i < n; i++) {
        if (filters[i].len > 65535)
            return MQTT_E_INVALID;
        rl += 2 + filters[i].len;
        if (rl > MQTT_MAX_REMAINING_LENGTH)
            return MQTT_E_INVALID;
    }
    bool go;
    long total = frame_size(rl, buf, cap, &go);
    if (!go)
        return (int)total;
    uint8_t *w = put_fixed(buf, MQTT_UNSUBSCRIBE << 4 | 2, rl);
    w = put_u16(w, s->packet_id);
    if (version == MQTT_V5)
        w = put_props(w, &s->props);
    for (size_t i = 0; i < n; i++)
        w = put_lstr(w, filters[i].ptr, filters[i].len);
    return (int)total;
}

static int encode_suback_common(uint8_t *buf, size_t cap, uint8_t version, unsigned type,
                                const struct mqtt_suback *s)
{
    if (check_version(version) < 0 || s->packet_id == 0)
        return MQTT_E_INVALID;
    bool with_reasons = type == MQTT_SUBACK || version == MQTT_V5;
    if (with_reasons && s->reasons.len == 0)
        return MQTT_E_INVALID;
    long ps = props_wire_size(version, &s->props);
    if (ps < 0)
        return (int)ps;
    size_t rl = 2 + (size_t)ps + (with_reasons ? s->reasons.len : 0);
    bool go;
    long total = frame_size(rl, buf, cap, &go);
    if (!go)
        return (int)total;
    uint8_t *w = put_fixed(buf, (uint8_t)(type << 4), rl);
    w = put_u16(w, s->packet_id);
    if (version == MQTT_V5)
        w = put_props(w, &s->props);
    if (with_reasons)
        put_bytes(w, s->reasons.ptr, s->reasons.len);
    return (int)total;
}

int mqtt_encode_suback(uint8_t *buf, size_t cap, uint8_t version, const struct mqtt_suback *s)
{
    return encode_suback_common(buf, cap, version, MQTT_SUBACK, s);
}

int mqtt_encode_unsuback(uint8_t *buf, size_t cap, uint8_t version, const struct mqtt_suback *s)
{
    return encode_suback_common(buf, cap, version, MQTT_UNSUBACK, s);
}

static int encode_empty(uint8_t *buf, size_t cap, unsigned type)
{
    if (!buf)
        return 2;
    if (cap < 2)
        return MQTT_E_BUFFER;
    buf[0] = (uint8_t)(type << 4);
    buf[1] = 0;
    return 2;
}

int mqtt_encode_pingreq(uint8_t *buf, size_t cap)
{
    return encode_empty(buf, cap, MQTT_PINGREQ);
}

int mqtt_encode_pingresp(uint8_t *buf, size_t cap)
{
    return encode_empty(buf, cap, MQTT_PINGRESP);
}

/* [reason [props]] packets: DISCONNECT and AUTH (5). MIN_PROPS forces the
 * property length when a reason is written (AUTH). */
static int encode_reason_props(uint8_t *buf, size_t cap, uint8_t version, unsigned type,
                               uint8_t reason, const struct mqtt_props *props, bool min_props)
{
    if (check_version(version) < 0)
        return MQTT_E_INVALID;
    if (version == MQTT_V311)
        return encode_empty(buf, cap, type);
    bool with_props = props_nonempty(props);
    bool with_reason = reason || with_props;
    if (with_reason && min_props)
        with_props = true;
    long ps = 0;
    if (with_props) {
        ps = props_wire_size(version, props);
        if (ps < 0)
            return (int)ps;
    }
    size_t rl = (with_reason ? 1 : 0) + (size_t)ps;
    bool go;
    long total = frame_size(rl, buf, cap, &go);
    if (!go)
        return (int)total;
    uint8_t *w = put_fixed(buf, (uint8_t)(type << 4), rl);
    if (with_reason)
        *w++ = reason;
    if (with_props)
        put_props(w, props);
    return (int)total;
}

int mqtt_encode_disconnect(uint8_t *buf, size_t cap, uint8_t version,
                           const struct mqtt_disconnect *d)
{
    if (!d)
        return encode_reason_props(buf, cap, version, MQTT_DISCONNECT, 0, NULL, false);
    return encode_reason_props(buf, cap, version, MQTT_DISCONNECT, d->reason, &d->props, false);
}

int mqtt_encode_auth(uint8_t *buf, size_t cap, const struct mqtt_auth *a)
{
    return encode_reason_props(buf, cap, MQTT_V5, MQTT_AUTH, a->reason, &a->props, true);
}

/* ------------------------------------------------------------------ */
/* Error and reason strings */

uint8_t mqtt_err_reason(int err)
{
    switch (err) {
    case MQTT_OK:
        return MQTT_RC_SUCCESS;
    case MQTT_E_VARINT:
    case MQTT_E_PACKET_TYPE:
    case MQTT_E_FIXED_FLAGS:
    case MQTT_E_SHORT:
    case MQTT_E_TRAILING:
    case MQTT_E_UTF8:
    case MQTT_E_WRONG_TYPE:
    case MQTT_E_CONNECT_RESERVED:
    case MQTT_E_WILL_QOS:
    case MQTT_E_WILL_RETAIN:
    case MQTT_E_PASSWORD_FLAG:
    case MQTT_E_CONNACK_FLAGS:
    case MQTT_E_QOS:
    case MQTT_E_DUP_QOS0:
    case MQTT_E_SUB_OPTIONS:
    case MQTT_E_PROP_UNKNOWN:
    case MQTT_E_PROP_NOT_ALLOWED:
    case MQTT_E_PROP_LENGTH:
        return MQTT_RC_MALFORMED;
    case MQTT_E_REASON_CODE:
    case MQTT_E_SUB_QOS:
    case MQTT_E_PACKET_ID:
    case MQTT_E_NO_TOPIC:
    case MQTT_E_NO_FILTERS:
    case MQTT_E_RETAIN_HANDLING:
    case MQTT_E_PROP_DUPLICATE:
    case MQTT_E_PROP_VALUE:
    case MQTT_E_AUTH_DATA:
        return MQTT_RC_PROTOCOL_ERROR;
    case MQTT_E_PROTOCOL_NAME:
    case MQTT_E_PROTOCOL_LEVEL:
        return MQTT_RC_UNSUPPORTED_VERSION;
    case MQTT_E_TOO_LARGE:
        return MQTT_RC_PACKET_TOO_LARGE;
    case MQTT_E_PAYLOAD_FORMAT:
        return MQTT_RC_PAYLOAD_FORMAT_INVALID;
    case MQTT_E_TOPIC_NAME:
    case MQTT_E_TOPIC_EMPTY:
    case MQTT_E_TOPIC_TOO_LONG:
    case MQTT_E_TOPIC_TOO_DEEP:
    case MQTT_E_TOPIC_WILDCARD:
        return MQTT_RC_TOPIC_NAME_INVALID;
    case MQTT_E_FILTER_HASH:
    case MQTT_E_FILTER_PLUS:
    case MQTT_E_SHARE_GROUP:
    case MQTT_E_SHARE_FILTER:
        return MQTT_RC_TOPIC_FILTER_INVALID;
    case MQTT_E_BUFFER:
    case MQTT_E_INVALID:
    case MQTT_E_BAD_VERSION_ARG:
        return MQTT_RC_IMPL_SPECIFIC;
    default:
        return MQTT_RC_UNSPECIFIED;
    }
}

const char *mqtt_err_str(int err)
{
    switch (err) {
    case MQTT_OK:
        return "ok";
    case MQTT_NEED_MORE:
        return "need more bytes";
    case MQTT_E_VARINT:
        return "variable byte integer longer than 4 bytes";
    case MQTT_E_TOO_LARGE:
        return "packet larger than the maximum packet size";
    case MQTT_E_PACKET_TYPE:
        return "invalid packet type";
    case MQTT_E_FIXED_FLAGS:
        return "reserved fixed header flags are wrong";
    case MQTT_E_SHORT:
        return "packet ends inside a field";
    case MQTT_E_TRAILING:
        return "unexpected bytes after the last field";
    case MQTT_E_UTF8:
        return "invalid UTF-8 string (or U+0000)";
    case MQTT_E_WRONG_TYPE:
        return "packet type does not match the decoder";
    case MQTT_E_BAD_VERSION_ARG:
        return "protocol version argument is not 4 or 5";
    case MQTT_E_PROTOCOL_NAME:
        return "protocol name is not MQTT";
    case MQTT_E_PROTOCOL_LEVEL:
        return "unsupported protocol level";
    case MQTT_E_CONNECT_RESERVED:
        return "CONNECT reserved flag is set";
    case MQTT_E_WILL_QOS:
        return "invalid will QoS";
    case MQTT_E_WILL_RETAIN:
        return "will retain set without will flag";
    case MQTT_E_PASSWORD_FLAG:
        return "password flag without username flag";
    case MQTT_E_CONNACK_FLAGS:
        return "invalid CONNACK acknowledge flags";
    case MQTT_E_REASON_CODE:
        return "reason code not allowed in this packet";
    case MQTT_E_QOS:
        return "PUBLISH QoS 3";
    case MQTT_E_DUP_QOS0:
        return "DUP flag set on a QoS 0 PUBLISH";
    case MQTT_E_PACKET_ID:
        return "packet identifier 0";
    case MQTT_E_TOPIC_NAME:
        return "wildcard in PUBLISH topic name";
    case MQTT_E_NO_TOPIC:
        return "empty PUBLISH topic without topic alias";
    case MQTT_E_NO_FILTERS:
        return "no topic filters / reason codes";
    case MQTT_E_SUB_OPTIONS:
        return "reserved subscription option bits set";
    case MQTT_E_SUB_QOS:
        return "subscription QoS 3";
    case MQTT_E_RETAIN_HANDLING:
        return "retain handling 3";
    case MQTT_E_PROP_UNKNOWN:
        return "unknown property identifier";
    case MQTT_E_PROP_NOT_ALLOWED:
        return "property not allowed in this packet";
    case MQTT_E_PROP_DUPLICATE:
        return "property included more than once";
    case MQTT_E_PROP_VALUE:
        return "property value not allowed";
    case MQTT_E_PROP_LENGTH:
        return "property runs past its block";
    case MQTT_E_AUTH_DATA:
        return "authentication data without authentication method";
    case MQTT_E_PAYLOAD_FORMAT:
        return "payload is not UTF-8 but format indicator says so";
    case MQTT_E_TOPIC_EMPTY:
        return "empty topic";
    case MQTT_E_TOPIC_TOO_LONG:
        return "topic too long";
    case MQTT_E_TOPIC_TOO_DEEP:
        return "topic has too many levels";
    case MQTT_E_TOPIC_WILDCARD:
        return "wildcard in topic name";
    case MQTT_E_FILTER_HASH:
        return "'#' not alone in the last level";
    case MQTT_E_FILTER_PLUS:
        return "'+' not alone in its level";
    case MQTT_E_SHARE_GROUP:
        return "invalid shared subscription group";
    case MQTT_E_SHARE_FILTER:
        return "shared subscription without a filter";
    case MQTT_E_BUFFER:
        return "output buffer too small";
    case MQTT_E_INVALID:
        return "value cannot be encoded";
    default:
        return "unknown MQTT codec error";
    }
}

const char *mqtt_reason_str(uint8_t rc)
{
    switch (rc) {
    case 0x00:
        return "Success";
    case 0x01:
        return "Granted QoS 1";
    case 0x02:
        return "Granted QoS 2";
    case 0x04:
        return "Disconnect with Will Message";
    case 0x10:
        return "No matching subscribers";
    case 0x11:
        return "No subscription existed";
    case 0x18:
        return "Continue authentication";
    case 0x19:
        return "Re-authenticate";
    case 0x80:
        return "Unspecified error";
    case 0x81:
        return "Malformed Packet";
    case 0x82:
        return "Protocol Error";
    case 0x83:
        return "Implementation specific error";
    case 0x84:
        return "Unsupported Protocol Version";
    case 0x85:
        return "Client Identifier not valid";
    case 0x86:
        return "Bad User Name or Password";
    case 0x87:
        return "Not authorized";
    case 0x88:
        return "Server unavailable";
    case 0x89:
        return "Server busy";
    case 0x8A:
        return "Banned";
    case 0x8B:
        return "Server shutting down";
    case 0x8C:
        return "Bad authentication method";
    case 0x8D:
        return "Keep Alive timeout";
    case 0x8E:
        return "Session taken over";
    case 0x8F:
        return "Topic Filter invalid";
    case 0x90:
        return "Topic Name invalid";
    case 0x91:
        return "Packet Identifier in use";
    case 0x92:
        return "Packet Identifier not found";
    case 0x93:
        return "Receive Maximum exceeded";
    case 0x94:
        return "Topic Alias invalid";
    case 0x95:
        return "Packet too large";
    case 0x96:
        return "Message rate too high";
    case 0x97:
        return "Quota exceeded";
    case 0x98:
        return "Administrative action";
    case 0x99:
        return "Payload format invalid";
    case 0x9A:
        return "Retain not supported";
    case 0x9B:
        return "QoS not supported";
    case 0x9C:
        return "Use another server";
    case 0x9D:
        return "Server moved";
    case 0x9E:
        return "Shared Subscriptions not supported";
    case 0x9F:
        return "Connection rate exceeded";
    case 0xA0:
        return "Maximum connect time";
    case 0xA1:
        return "Subscription Identifiers not supported";
    case 0xA2:
        return "Wildcard Subscriptions not supported";
    default:
        return "Unknown reason code";
    }
}

const char *mqtt_type_str(unsigned type)
{
    static const char *const names[16] = {"?",         "CONNECT",  "CONNACK",     "PUBLISH",
                                          "PUBACK",    "PUBREC",   "PUBREL",      "PUBCOMP",
                                          "SUBSCRIBE", "SUBACK",   "UNSUBSCRIBE", "UNSUBACK",
                                          "PINGREQ",   "PINGRESP", "DISCONNECT",  "AUTH"};
    return type < 16 ? names[type] : "?";
}
