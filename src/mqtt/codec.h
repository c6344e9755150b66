/* The MQTT 3.1.1 and 5.0 packet codec: a framer for streamed bytes, a
 * decoder per packet type, an encoder per packet type and the MQTT 5
 * property block. Pure: no I/O, no allocation, no global state; every
 * function may be called on any thread.
 * Invariant: a decoded struct never owns memory. Its strings, binary data,
 * payloads, property blocks and entry lists point into the caller's packet
 * buffer (zero-copy) and are valid only while that buffer is unchanged.
 * Decoders validate everything the specifications require a receiver to
 * check and return a distinct negative code per defect (enum mqtt_err);
 * mqtt_err_reason() maps a code to the MQTT 5 reason code to send.
 *
 * Typical broker read loop:
 *     struct mqtt_frame f;
 *     while ((rc = mqtt_frame(buf + off, len - off, max_packet, &f)) == MQTT_OK) {
 *         struct mqtt_packet pkt;
 *         rc = mqtt_decode(buf + off, f.total_len, version, &pkt);
 *         ... handle pkt (pointers into buf) ...
 *         off += f.total_len;
 *     }
 *     if (rc == MQTT_NEED_MORE) keep the tail [off, len) and read more;
 *     else protocol failure: mqtt_err_reason(rc), mqtt_err_str(rc).
 */
#ifndef LMQ_MQTT_CODEC_H
#define LMQ_MQTT_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Protocol levels (the CONNECT "protocol level" byte). */
#define MQTT_V311 4
#define MQTT_V5 5

/* Largest remaining length a 4-byte variable byte integer can carry. */
#define MQTT_MAX_REMAINING_LENGTH 268435455u
/* Largest whole packet: 1 type byte + 4 length bytes + remaining length. */
#define MQTT_MAX_PACKET_SIZE (MQTT_MAX_REMAINING_LENGTH + 5u)
/* Largest encoded fixed header. */
#define MQTT_MAX_FIXED_HEADER 5u

enum mqtt_type {
    MQTT_CONNECT = 1,
    MQTT_CONNACK = 2,
    MQTT_PUBLISH = 3,
    MQTT_PUBACK = 4,
    MQTT_PUBREC = 5,
    MQTT_PUBREL = 6,
    MQTT_PUBCOMP = 7,
    MQTT_SUBSCRIBE = 8,
    MQTT_SUBACK = 9,
    MQTT_UNSUBSCRIBE = 10,
    MQTT_UNSUBACK = 11,
    MQTT_PINGREQ = 12,
    MQTT_PINGRESP = 13,
    MQTT_DISCONNECT = 14,
    MQTT_AUTH = 15, /* MQTT 5 only */
};

/* Return codes. MQTT_OK and MQTT_NEED_MORE are not errors; every other
 * value is negative and names one defect. */
enum mqtt_err {
    MQTT_OK = 0,
    MQTT_NEED_MORE = 1, /* framer / varint decoder: not enough bytes yet */

    /* framing (malformed packet, except TOO_LARGE) */
    MQTT_E_VARINT = -1,          /* variable byte integer longer than 4 bytes */
    MQTT_E_TOO_LARGE = -2,       /* packet exceeds the caller's maximum size */
    MQTT_E_PACKET_TYPE = -3,     /* type 0, or AUTH under MQTT 3.1.1 */
    MQTT_E_FIXED_FLAGS = -4,     /* reserved fixed-header flag bits wrong */
    MQTT_E_SHORT = -5,           /* packet ends inside a field */
    MQTT_E_TRAILING = -6,        /* bytes left over after the last field */
    MQTT_E_UTF8 = -7,            /* string is not well-formed UTF-8 or holds U+0000 */
    MQTT_E_WRONG_TYPE = -8,      /* a per-type decoder got another packet type */
    MQTT_E_BAD_VERSION_ARG = -9, /* caller passed a version other than 4 or 5 */

    /* CONNECT */
    MQTT_E_PROTOCOL_NAME = -20,    /* protocol name is not "MQTT" */
    MQTT_E_PROTOCOL_LEVEL = -21,   /* unsupported level: CONNACK 0x01 (3.1.1) / 0x84 (5) */
    MQTT_E_CONNECT_RESERVED = -22, /* CONNECT flags bit 0 set */
    MQTT_E_WILL_QOS = -23,         /* will QoS 3, or non-zero without the will flag */
    MQTT_E_WILL_RETAIN = -24,      /* will retain without the will flag */
    MQTT_E_PASSWORD_FLAG = -25,    /* 3.1.1: password flag without username flag */

    /* CONNACK and acks */
    MQTT_E_CONNACK_FLAGS = -30, /* reserved acknowledge flags, or session present
                                 * with a non-zero return code */
    MQTT_E_REASON_CODE = -31,   /* reason/return code not allowed for this packet */

    /* PUBLISH */
    MQTT_E_QOS = -40,        /* PUBLISH QoS 3 */
    MQTT_E_DUP_QOS0 = -41,   /* DUP set on a QoS 0 PUBLISH */
    MQTT_E_PACKET_ID = -42,  /* packet identifier 0 where one is required */
    MQTT_E_TOPIC_NAME = -43, /* PUBLISH topic holds '+' or '#' (0x90) */
    MQTT_E_NO_TOPIC = -44,   /* empty PUBLISH topic: always under 3.1.1,
                              * without a topic alias under 5 (0x82) */

    /* SUBSCRIBE / UNSUBSCRIBE / SUBACK */
    MQTT_E_NO_FILTERS = -50,      /* SUBSCRIBE/UNSUBSCRIBE without a topic filter,
                                   * or SUBACK without a reason code */
    MQTT_E_SUB_OPTIONS = -51,     /* reserved subscription option bits set */
    MQTT_E_SUB_QOS = -52,         /* requested QoS 3 */
    MQTT_E_RETAIN_HANDLING = -53, /* retain handling 3 */

    /* MQTT 5 properties */
    MQTT_E_PROP_UNKNOWN = -60,     /* unknown property identifier (malformed) */
    MQTT_E_PROP_NOT_ALLOWED = -61, /* property not allowed in this packet (malformed) */
    MQTT_E_PROP_DUPLICATE = -62,   /* property present twice (protocol error) */
    MQTT_E_PROP_VALUE = -63,       /* forbidden value: 0 receive maximum / topic alias /
                                    * maximum packet size / subscription identifier,
                                    * a boolean not 0 or 1, maximum QoS > 1, wildcard
                                    * in response topic (protocol error) */
    MQTT_E_PROP_LENGTH = -64,      /* property length runs past the packet (malformed) */
    MQTT_E_AUTH_DATA = -65,        /* authentication data without a method */

    /* payload checks on request (mqtt_payload_check) */
    MQTT_E_PAYLOAD_FORMAT = -70, /* payload format indicator 1 but not UTF-8 */

    /* topic names and filters (mqtt/topic.h) */
    MQTT_E_TOPIC_EMPTY = -80,    /* zero-length topic name or filter */
    MQTT_E_TOPIC_TOO_LONG = -81, /* longer than the caller's limit */
    MQTT_E_TOPIC_TOO_DEEP = -82, /* more levels than the caller's limit */
    MQTT_E_TOPIC_WILDCARD = -83, /* '+' or '#' in a topic name */
    MQTT_E_FILTER_HASH = -84,    /* '#' not alone in the last level */
    MQTT_E_FILTER_PLUS = -85,    /* '+' not alone in its level */
    MQTT_E_SHARE_GROUP = -86,    /* $share/ with an empty group or a group holding
                                  * '+', '#' */
    MQTT_E_SHARE_FILTER = -87,   /* $share/group without "/filter" */

    /* encoders */
    MQTT_E_BUFFER = -90,  /* output buffer too small */
    MQTT_E_INVALID = -91, /* argument out of range (string > 65535 bytes,
                           * packet > 268435455, QoS > 2, ...) */
};

/* MQTT 5 reason codes (and the 3.1.1 CONNACK return codes 0x01..0x05). */
enum mqtt_rc {
    MQTT_RC_SUCCESS = 0x00, /* also normal disconnection, granted QoS 0 */
    MQTT_RC_GRANTED_QOS1 = 0x01,
    MQTT_RC_GRANTED_QOS2 = 0x02,
    MQTT_RC_DISCONNECT_WITH_WILL = 0x04,
    MQTT_RC_NO_MATCHING_SUBSCRIBERS = 0x10,
    MQTT_RC_NO_SUBSCRIPTION_EXISTED = 0x11,
    MQTT_RC_CONTINUE_AUTH = 0x18,
    MQTT_RC_REAUTHENTICATE = 0x19,
    MQTT_RC_UNSPECIFIED = 0x80,
    MQTT_RC_MALFORMED = 0x81,
    MQTT_RC_PROTOCOL_ERROR = 0x82,
    MQTT_RC_IMPL_SPECIFIC = 0x83,
    MQTT_RC_UNSUPPORTED_VERSION = 0x84,
    MQTT_RC_CLIENT_ID_INVALID = 0x85,
    MQTT_RC_BAD_USER_OR_PASSWORD = 0x86,
    MQTT_RC_NOT_AUTHORIZED = 0x87,
    MQTT_RC_SERVER_UNAVAILABLE = 0x88,
    MQTT_RC_SERVER_BUSY = 0x89,
    MQTT_RC_BANNED = 0x8A,
    MQTT_RC_SERVER_SHUTTING_DOWN = 0x8B,
    MQTT_RC_BAD_AUTH_METHOD = 0x8C,
    MQTT_RC_KEEP_ALIVE_TIMEOUT = 0x8D,
    MQTT_RC_SESSION_TAKEN_OVER = 0x8E,
    MQTT_RC_TOPIC_FILTER_INVALID = 0x8F,
    MQTT_RC_TOPIC_NAME_INVALID = 0x90,
    MQTT_RC_PACKET_ID_IN_USE = 0x91,
    MQTT_RC_PACKET_ID_NOT_FOUND = 0x92,
    MQTT_RC_RECEIVE_MAX_EXCEEDED = 0x93,
    MQTT_RC_TOPIC_ALIAS_INVALID = 0x94,
    MQTT_RC_PACKET_TOO_LARGE = 0x95,
    MQTT_RC_MESSAGE_RATE_TOO_HIGH = 0x96,
    MQTT_RC_QUOTA_EXCEEDED = 0x97,
    MQTT_RC_ADMIN_ACTION = 0x98,
    MQTT_RC_PAYLOAD_FORMAT_INVALID = 0x99,
    MQTT_RC_RETAIN_NOT_SUPPORTED = 0x9A,
    MQTT_RC_QOS_NOT_SUPPORTED = 0x9B,
    MQTT_RC_USE_ANOTHER_SERVER = 0x9C,
    MQTT_RC_SERVER_MOVED = 0x9D,
    MQTT_RC_SHARED_SUBS_NOT_SUPPORTED = 0x9E,
    MQTT_RC_CONNECTION_RATE_EXCEEDED = 0x9F,
    MQTT_RC_MAX_CONNECT_TIME = 0xA0,
    MQTT_RC_SUB_IDS_NOT_SUPPORTED = 0xA1,
    MQTT_RC_WILDCARD_SUBS_NOT_SUPPORTED = 0xA2,
};

/* MQTT 3.1.1 CONNACK return codes. */
enum mqtt_connack_v4 {
    MQTT_CONNACK_ACCEPTED = 0x00,
    MQTT_CONNACK_BAD_PROTOCOL = 0x01,
    MQTT_CONNACK_ID_REJECTED = 0x02,
    MQTT_CONNACK_SERVER_UNAVAILABLE = 0x03,
    MQTT_CONNACK_BAD_USER_OR_PASSWORD = 0x04,
    MQTT_CONNACK_NOT_AUTHORIZED = 0x05,
};

/* MQTT 5 reason code for a decoder/topic error: 0x81 malformed (framing,
 * flags, lengths, UTF-8, QoS 3, DUP on QoS 0, unknown or misplaced
 * properties), 0x82 protocol error (packet id 0, empty SUBSCRIBE, duplicate
 * or zero-valued properties, retain handling 3, subscription QoS 3, reason
 * code not allowed), 0x84 unsupported protocol version / name, 0x95 packet
 * too large, 0x99 payload format invalid, 0x90 topic name errors (incl.
 * TOPIC_EMPTY/TOO_LONG/TOO_DEEP: use 0x8F yourself when checking a filter),
 * 0x8F filter-only errors, 0x83 for encoder/argument errors. Returns 0x00
 * for MQTT_OK and 0x80 for anything unknown. */
uint8_t mqtt_err_reason(int err);
/* Static, human-readable description of ERR for logs; never NULL. */
const char *mqtt_err_str(int err);
/* Static name of a reason code ("Malformed Packet"); never NULL. */
const char *mqtt_reason_str(uint8_t rc);
/* Static name of a packet type ("PUBLISH"); "?" for unknown. */
const char *mqtt_type_str(unsigned type);

/* ------------------------------------------------------------------ */
/* Slices into the caller's buffer. ptr == NULL means "absent"; a present
 * empty string has a non-NULL ptr and len 0. Strings are NOT NUL-terminated. */
struct mqtt_str {
    const char *ptr;
    size_t len;
};
struct mqtt_bin {
    const uint8_t *ptr;
    size_t len;
};

/* Checks an MQTT UTF-8 string: well-formed UTF-8 (no overlong forms, no
 * surrogates, nothing above U+10FFFF) and no U+0000. The MAY-reject code
 * points (controls, non-characters) are accepted. Returns MQTT_OK or
 * MQTT_E_UTF8. */
int mqtt_utf8_check(const uint8_t *s, size_t len);

/* Variable byte integer. mqtt_varint_decode reads at most 4 bytes of
 * [p, p+len): returns the number of bytes used (1..4) with *value set,
 * 0 when LEN ran out before the last byte (need more), or MQTT_E_VARINT
 * when a 4th byte still has the continuation bit. Non-minimal encodings
 * are accepted. */
int mqtt_varint_decode(const uint8_t *p, size_t len, uint32_t *value);
/* Bytes needed to encode V (1..4), or 0 if V > MQTT_MAX_REMAINING_LENGTH. */
int mqtt_varint_size(uint32_t v);
/* Writes V (<= MQTT_MAX_REMAINING_LENGTH) to OUT (room for 4 bytes);
 * returns the number of bytes written. */
int mqtt_varint_encode(uint8_t *out, uint32_t v);

/* ------------------------------------------------------------------ */
/* Framer. */
struct mqtt_frame {
    uint8_t type;           /* enum mqtt_type (0 possible: decoders reject it) */
    uint8_t flags;          /* low nibble of byte 0 */
    uint8_t header_len;     /* fixed header bytes: 2..5 */
    uint32_t remaining_len; /* bytes after the fixed header */
    uint32_t total_len;     /* header_len + remaining_len */
};

/* Looks at the start of BUF (LEN bytes available) for one packet.
 * Returns MQTT_OK with *F filled when the whole packet (f->total_len bytes)
 * is in BUF; MQTT_NEED_MORE when more bytes are needed (F is filled as far
 * as known: when the fixed header is complete, f->total_len says how many
 * bytes the packet will need, otherwise f->total_len is 0); MQTT_E_VARINT
 * for a remaining length longer than 4 bytes; MQTT_E_TOO_LARGE as soon as
 * the fixed header shows the whole packet would exceed MAX_PACKET bytes
 * (0 = MQTT_MAX_PACKET_SIZE), before the body has arrived, with F filled
 * (the broker answers an oversize MQTT 5 CONNECT with CONNACK 0x95 after
 * looking at its protocol level past the header). Does not check
 * the packet type or flags (the decoders do). Reads only BUF; cheap enough
 * to call once per buffered packet. */
int mqtt_frame(const uint8_t *buf, size_t len, uint32_t max_packet, struct mqtt_frame *f);

/* ------------------------------------------------------------------ */
/* MQTT 5 properties. */
enum mqtt_prop_id {
    MQTT_PROP_PAYLOAD_FORMAT = 0x01,         /* byte: PUBLISH, will */
    MQTT_PROP_MESSAGE_EXPIRY = 0x02,         /* u32: PUBLISH, will */
    MQTT_PROP_CONTENT_TYPE = 0x03,           /* string: PUBLISH, will */
    MQTT_PROP_RESPONSE_TOPIC = 0x08,         /* string: PUBLISH, will */
    MQTT_PROP_CORRELATION_DATA = 0x09,       /* binary: PUBLISH, will */
    MQTT_PROP_SUBSCRIPTION_ID = 0x0B,        /* varint: PUBLISH (repeatable), SUBSCRIBE */
    MQTT_PROP_SESSION_EXPIRY = 0x11,         /* u32: CONNECT, CONNACK, DISCONNECT */
    MQTT_PROP_ASSIGNED_CLIENT_ID = 0x12,     /* string: CONNACK */
    MQTT_PROP_SERVER_KEEP_ALIVE = 0x13,      /* u16: CONNACK */
    MQTT_PROP_AUTH_METHOD = 0x15,            /* string: CONNECT, CONNACK, AUTH */
    MQTT_PROP_AUTH_DATA = 0x16,              /* binary: CONNECT, CONNACK, AUTH */
    MQTT_PROP_REQUEST_PROBLEM_INFO = 0x17,   /* byte 0/1: CONNECT */
    MQTT_PROP_WILL_DELAY = 0x18,             /* u32: will */
    MQTT_PROP_REQUEST_RESPONSE_INFO = 0x19,  /* byte 0/1: CONNECT */
    MQTT_PROP_RESPONSE_INFO = 0x1A,          /* string: CONNACK */
    MQTT_PROP_SERVER_REFERENCE = 0x1C,       /* string: CONNACK, DISCONNECT */
    MQTT_PROP_REASON_STRING = 0x1F,          /* string: acks, CONNACK, DISCONNECT, AUTH */
    MQTT_PROP_RECEIVE_MAXIMUM = 0x21,        /* u16 != 0: CONNECT, CONNACK */
    MQTT_PROP_TOPIC_ALIAS_MAXIMUM = 0x22,    /* u16: CONNECT, CONNACK */
    MQTT_PROP_TOPIC_ALIAS = 0x23,            /* u16 != 0: PUBLISH */
    MQTT_PROP_MAXIMUM_QOS = 0x24,            /* byte 0/1: CONNACK */
    MQTT_PROP_RETAIN_AVAILABLE = 0x25,       /* byte 0/1: CONNACK */
    MQTT_PROP_USER = 0x26,                   /* string pair: every packet (repeatable) */
    MQTT_PROP_MAXIMUM_PACKET_SIZE = 0x27,    /* u32 != 0: CONNECT, CONNACK */
    MQTT_PROP_WILDCARD_SUB_AVAILABLE = 0x28, /* byte 0/1: CONNACK */
    MQTT_PROP_SUB_ID_AVAILABLE = 0x29,       /* byte 0/1: CONNACK */
    MQTT_PROP_SHARED_SUB_AVAILABLE = 0x2A,   /* byte 0/1: CONNACK */
};

/* Bit for property ID in mqtt_props.present. */
#define MQTT_PROP_BIT(id) ((uint64_t)1 << (id))

/* The property block of one packet (or of a will), as optional fields.
 * A field is meaningful only when its bit (MQTT_PROP_BIT(id)) is set in
 * PRESENT. User properties (and, in PUBLISH, the possibly repeated
 * subscription identifiers) are not copied out: iterate RAW with
 * mqtt_prop_iter_*. SUBSCRIPTION_ID holds the first subscription identifier.
 *
 * Decoding fills PRESENT, the fields, RAW (the whole block, without its
 * length prefix), USER_COUNT and SUB_ID_COUNT; EXTRA is set empty.
 * Encoding writes the fields whose bits are set in PRESENT (USER and
 * SUBSCRIPTION_ID bits aside: SUBSCRIPTION_ID writes one identifier, USER is
 * ignored), then appends EXTRA verbatim: already-encoded properties, e.g.
 * user properties built with mqtt_prop_encode_user(), or the RAW block of a
 * decoded packet filtered with mqtt_props_copy(). RAW is ignored. */
struct mqtt_props {
    uint64_t present;
    uint32_t message_expiry;
    uint32_t subscription_id;
    uint32_t session_expiry;
    uint32_t will_delay;
    uint32_t maximum_packet_size;
    uint16_t server_keep_alive;
    uint16_t receive_maximum;
    uint16_t topic_alias_maximum;
    uint16_t topic_alias;
    uint16_t user_count;
    uint16_t sub_id_count;
    uint8_t payload_format;
    uint8_t request_problem_info;
    uint8_t request_response_info;
    uint8_t maximum_qos;
    uint8_t retain_available;
    uint8_t wildcard_sub_available;
    uint8_t sub_id_available;
    uint8_t shared_sub_available;
    struct mqtt_str content_type;
    struct mqtt_str response_topic;
    struct mqtt_bin correlation_data;
    struct mqtt_str assigned_client_id;
    struct mqtt_str auth_method;
    struct mqtt_bin auth_data;
    struct mqtt_str response_info;
    struct mqtt_str server_reference;
    struct mqtt_str reason_string;
    struct mqtt_bin raw;   /* decode: the validated block */
    struct mqtt_bin extra; /* encode: appended verbatim */
};

static inline bool mqtt_props_has(const struct mqtt_props *p, unsigned id)
{
    return (p->present & MQTT_PROP_BIT(id)) != 0;
}

/* One property as the iterator yields it. */
struct mqtt_prop {
    uint8_t id;
    uint32_t value;         /* byte, u16, u32 and varint properties */
    struct mqtt_bin bin;    /* string and binary properties; user property key */
    struct mqtt_bin value2; /* user property value */
};

/* Iterates a property block that a decoder has validated (props->raw), in
 * wire order. Not for unvalidated bytes: it stops at the first defect. */
struct mqtt_prop_iter {
    const uint8_t *p, *end;
};
void mqtt_prop_iter_init(struct mqtt_prop_iter *it, const struct mqtt_props *props);
/* Next property of any id; false at the end. */
bool mqtt_prop_next(struct mqtt_prop_iter *it, struct mqtt_prop *out);
/* Next user property; false at the end. */
bool mqtt_prop_next_user(struct mqtt_prop_iter *it, struct mqtt_str *key, struct mqtt_str *value);
/* Next subscription identifier; false at the end. */
bool mqtt_prop_next_sub_id(struct mqtt_prop_iter *it, uint32_t *id);

/* Parses and validates a property block body (BLOCK, LEN bytes, without
 * the length prefix) for packet TYPE (enum mqtt_type; 0 = will properties)
 * into *OUT. Decoders call this; exposed for tests and tools. */
int mqtt_props_parse(const uint8_t *block, size_t len, unsigned type, struct mqtt_props *out);

/* Size of the encoded property block body (without its length prefix), or
 * negative MQTT_E_INVALID (a string over 65535 bytes, a value out of range). */
int mqtt_props_size(const struct mqtt_props *p);
/* Writes the length prefix and the block; returns bytes written or a
 * negative error. A NULL P writes an empty block (one 0 byte). */
int mqtt_props_encode(uint8_t *buf, size_t cap, const struct mqtt_props *p);

/* Writes one user property (0x26, key, value) to BUF; returns bytes
 * written or a negative error. With BUF NULL returns the size needed. */
int mqtt_prop_encode_user(uint8_t *buf, size_t cap, const char *key, size_t key_len,
                          const char *value, size_t value_len);
/* Writes one subscription identifier property (1..268435455). */
int mqtt_prop_encode_sub_id(uint8_t *buf, size_t cap, uint32_t id);
/* Copies the properties of a validated block RAW whose ids are NOT in
 * EXCLUDE (a mask of MQTT_PROP_BIT()s) to BUF, e.g. to forward a PUBLISH's
 * properties minus topic alias and subscription identifiers. Returns bytes
 * written (no length prefix) or a negative error; BUF NULL = size only.
 * Forwarding a v5 PUBLISH to one subscriber, for example:
 *     n = mqtt_props_copy(tmp, cap, in->props.raw,
 *                         MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS) |
 *                         MQTT_PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID));
 *     n += mqtt_prop_encode_sub_id(tmp + n, cap - n, sub_id);   (if any)
 *     out.props = (struct mqtt_props){.extra = {tmp, n}};
 *     h = mqtt_encode_publish_header(hdr, sizeof hdr, MQTT_V5, &out);
 *     writev(fd, {hdr, h}, {shared payload}) */
int mqtt_props_copy(uint8_t *buf, size_t cap, struct mqtt_bin raw, uint64_t exclude);

/* ------------------------------------------------------------------ */
/* Packets. Fields absent in MQTT 3.1.1 are zero/empty there. */

struct mqtt_connect {
    uint8_t version;  /* protocol level: 4 or 5. Set as soon as it is
                       * read, so it is valid on MQTT_E_PROTOCOL_LEVEL and
                       * on every later error: answer in the client's
                       * dialect (0 if the packet ended before it) */
    bool clean_start; /* 3.1.1 "clean session" */
    bool will;
    uint8_t will_qos;
    bool will_retain;
    uint16_t keep_alive;
    struct mqtt_props props;
    struct mqtt_str client_id; /* may be empty: the broker decides (3.1.1:
                                * CONNACK 0x02 if !clean_start) */
    struct mqtt_props will_props;
    struct mqtt_str will_topic; /* UTF-8 checked only; check the name with
                                 * mqtt_topic_name_check() */
    struct mqtt_bin will_payload;
    struct mqtt_str username; /* ptr NULL if absent */
    struct mqtt_bin password; /* ptr NULL if absent */
};

struct mqtt_connack {
    bool session_present;
    uint8_t reason; /* 3.1.1 return code or MQTT 5 reason code */
    struct mqtt_props props;
};

struct mqtt_publish {
    uint8_t qos;
    bool dup;
    bool retain;
    uint16_t packet_id;    /* 0 for QoS 0 */
    struct mqtt_str topic; /* UTF-8 checked, no wildcards; empty only with a
                            * v5 topic alias */
    struct mqtt_props props;
    struct mqtt_bin payload;
};

/* PUBACK, PUBREC, PUBREL, PUBCOMP. */
struct mqtt_ack {
    uint8_t type; /* MQTT_PUBACK .. MQTT_PUBCOMP */
    uint16_t packet_id;
    uint8_t reason; /* 0 when absent */
    struct mqtt_props props;
};

/* SUBSCRIBE and UNSUBSCRIBE: the entries stay on the wire, validated;
 * walk them with mqtt_sub_iter / mqtt_unsub_iter. */
struct mqtt_subscribe {
    uint16_t packet_id;
    struct mqtt_props props;
    struct mqtt_bin entries; /* raw payload */
    uint32_t count;          /* number of topic filters (>= 1) */
};

/* One SUBSCRIBE entry. For encoding only FILTER and the option fields are
 * read (OPTIONS is ignored). */
struct mqtt_sub_entry {
    struct mqtt_str filter; /* UTF-8 checked only: validate with
                             * mqtt_topic_filter_check() and reject per
                             * entry in the SUBACK (0x80 / 0x8F) */
    uint8_t qos;
    bool no_local;            /* 5 only */
    bool retain_as_published; /* 5 only */
    uint8_t retain_handling;  /* 5 only: 0, 1, 2 */
    uint8_t options;          /* the raw options byte */
};

struct mqtt_entry_iter {
    const uint8_t *p, *end;
};
void mqtt_sub_iter_init(struct mqtt_entry_iter *it, const struct mqtt_subscribe *s);
bool mqtt_sub_next(struct mqtt_entry_iter *it, struct mqtt_sub_entry *out);
/* For an UNSUBSCRIBE decoded into struct mqtt_subscribe. */
bool mqtt_unsub_next(struct mqtt_entry_iter *it, struct mqtt_str *filter);

/* SUBACK and UNSUBACK (3.1.1 UNSUBACK carries no reason codes). */
struct mqtt_suback {
    uint16_t packet_id;
    struct mqtt_props props;
    struct mqtt_bin reasons; /* one byte per topic filter */
};

struct mqtt_disconnect {
    uint8_t reason; /* 0 when absent */
    struct mqtt_props props;
};

/* MQTT 5 only. */
struct mqtt_auth {
    uint8_t reason; /* 0 when absent */
    struct mqtt_props props;
};

/* Any packet. */
struct mqtt_packet {
    uint8_t type;
    uint8_t flags;
    union {
        struct mqtt_connect connect;
        struct mqtt_connack connack;
        struct mqtt_publish publish;
        struct mqtt_ack ack;             /* PUBACK, PUBREC, PUBREL, PUBCOMP */
        struct mqtt_subscribe subscribe; /* SUBSCRIBE, UNSUBSCRIBE */
        struct mqtt_suback suback;       /* SUBACK, UNSUBACK */
        struct mqtt_disconnect disconnect;
        struct mqtt_auth auth;
    } u;
};

/* ------------------------------------------------------------------ */
/* Decoders. PKT/LEN is exactly one whole packet, fixed header included, as
 * delimited by mqtt_frame(). VERSION is the session's protocol level (4 or
 * 5) from its CONNECT. Each returns MQTT_OK or a negative enum mqtt_err;
 * on error *OUT is unspecified. Checks that depend on session state (topic
 * alias range, receive maximum, packet ids in use) and on direction
 * (a client must not send a subscription identifier in PUBLISH; no-local
 * on a shared subscription) are the caller's. */

/* The only decoder that needs no version: it reads it from the packet. */
int mqtt_decode_connect(const uint8_t *pkt, size_t len, struct mqtt_connect *out);
int mqtt_decode_connack(const uint8_t *pkt, size_t len, uint8_t version, struct mqtt_connack *out);
int mqtt_decode_publish(const uint8_t *pkt, size_t len, uint8_t version, struct mqtt_publish *out);
/* PUBACK, PUBREC, PUBREL, PUBCOMP. */
int mqtt_decode_ack(const uint8_t *pkt, size_t len, uint8_t version, struct mqtt_ack *out);
int mqtt_decode_subscribe(const uint8_t *pkt, size_t len, uint8_t version,
                          struct mqtt_subscribe *out);
int mqtt_decode_unsubscribe(const uint8_t *pkt, size_t len, uint8_t version,
                            struct mqtt_subscribe *out);
int mqtt_decode_suback(const uint8_t *pkt, size_t len, uint8_t version, struct mqtt_suback *out);
int mqtt_decode_unsuback(const uint8_t *pkt, size_t len, uint8_t version, struct mqtt_suback *out);
/* PINGREQ and PINGRESP: checks flags and an empty body. */
int mqtt_decode_ping(const uint8_t *pkt, size_t len, uint8_t version);
int mqtt_decode_disconnect(const uint8_t *pkt, size_t len, uint8_t version,
                           struct mqtt_disconnect *out);
/* MQTT 5 only. */
int mqtt_decode_auth(const uint8_t *pkt, size_t len, uint8_t version, struct mqtt_auth *out);

/* Dispatches on the type byte to the decoders above. For CONNECT, VERSION
 * is ignored. */
int mqtt_decode(const uint8_t *pkt, size_t len, uint8_t version, struct mqtt_packet *out);

/* Optional payload check for PUBLISH / will payloads: when PROPS says
 * payload format indicator 1, PAYLOAD must be valid UTF-8. Returns MQTT_OK
 * or MQTT_E_PAYLOAD_FORMAT (reason 0x99). Not done by the decoders: it
 * reads the whole payload. */
int mqtt_payload_check(const struct mqtt_props *props, struct mqtt_bin payload);

/* ------------------------------------------------------------------ */
/* Encoders. Each writes one whole packet to BUF (CAP bytes) and returns
 * the number of bytes written, or MQTT_E_BUFFER if CAP is too small
 * (nothing useful written), or MQTT_E_INVALID for an argument that cannot
 * be encoded. With BUF == NULL each returns the exact size it would write,
 * so callers size buffers exactly. VERSION is 4 or 5; under 4 the MQTT 5
 * fields (properties, reason codes beyond 3.1.1) are not written. */

int mqtt_encode_connect(uint8_t *buf, size_t cap, const struct mqtt_connect *c);
int mqtt_encode_connack(uint8_t *buf, size_t cap, uint8_t version, const struct mqtt_connack *c);

/* Writes the fixed header, topic, packet id and properties of P: the
 * remaining length counts P->payload.len bytes of payload that the caller
 * sends right after (e.g. with writev from one shared buffer). Only
 * P->payload.len is read. */
int mqtt_encode_publish_header(uint8_t *buf, size_t cap, uint8_t version,
                               const struct mqtt_publish *p);
/* Header plus a copy of the payload, in one buffer. */
int mqtt_encode_publish(uint8_t *buf, size_t cap, uint8_t version, const struct mqtt_publish *p);

/* PUBACK/PUBREC/PUBREL/PUBCOMP (A->type). Under 5, writes the short form
 * (packet id only) when the reason is 0 and there are no properties. */
int mqtt_encode_ack(uint8_t *buf, size_t cap, uint8_t version, const struct mqtt_ack *a);
/* Same without properties; TYPE is MQTT_PUBACK..MQTT_PUBCOMP. At most 4
 * bytes under 5 with a reason, 4 otherwise. */
int mqtt_encode_ack_simple(uint8_t *buf, size_t cap, uint8_t version, uint8_t type,
                           uint16_t packet_id, uint8_t reason);

/* ENTRIES/N are the topic filters with their options. S->entries and
 * S->count are ignored. */
int mqtt_encode_subscribe(uint8_t *buf, size_t cap, uint8_t version, const struct mqtt_subscribe *s,
                          const struct mqtt_sub_entry *entries, size_t n);
int mqtt_encode_unsubscribe(uint8_t *buf, size_t cap, uint8_t version,
                            const struct mqtt_subscribe *s, const struct mqtt_str *filters,
                            size_t n);
int mqtt_encode_suback(uint8_t *buf, size_t cap, uint8_t version, const struct mqtt_suback *s);
/* Under 3.1.1 S->reasons is not written. */
int mqtt_encode_unsuback(uint8_t *buf, size_t cap, uint8_t version, const struct mqtt_suback *s);
int mqtt_encode_pingreq(uint8_t *buf, size_t cap);
int mqtt_encode_pingresp(uint8_t *buf, size_t cap);
/* Under 5, writes the 2-byte form when the reason is 0 and there are no
 * properties; D may be NULL (normal disconnection). */
int mqtt_encode_disconnect(uint8_t *buf, size_t cap, uint8_t version,
                           const struct mqtt_disconnect *d);
/* MQTT 5 only; 2-byte form for reason 0 without properties. */
int mqtt_encode_auth(uint8_t *buf, size_t cap, const struct mqtt_auth *a);

#endif
