/* Ledger records: deterministic CBOR maps with small unsigned integer keys
 * (key 0 = kind, key 1 = version). Field tables and hex examples of every
 * kind: docs/FORMATS.md "Ledger records". The decoder accepts only
 * deterministic encodings (RFC 8949 §4.2.1) so that one record has one
 * byte string and one leaf hash. Decoded fields are views into the
 * caller's buffer, valid as long as it is. Pure, no allocation, any thread.
 *
 * Known kind + known version: every key must be one this file knows
 * (unknown keys are rejected: all nodes must give a record the same
 * meaning, so adding a field means bumping the version). Unknown kind, or
 * a known kind with a newer version: decoded generically (rec->known =
 * false; the map is still validated as deterministic CBOR with uint keys). */
#ifndef LMQ_LEDGER_RECORD_H
#define LMQ_LEDGER_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LEDGER_RECORD_VERSION 1
#define LEDGER_MAX_NODE_KEYS 32
#define LEDGER_PAYLOAD_DIGEST_LEN 32

enum ledger_record_kind {
    LEDGER_KIND_MESSAGE = 1,
    LEDGER_KIND_CONFIG = 2,
    LEDGER_KIND_DEVICE_REGISTRATION = 3,
    LEDGER_KIND_DEVICE_REVOCATION = 4,
    LEDGER_KIND_KEY_ROTATION = 5,
};

/* Registry records (kinds 3-5): limits checked by encoder and decoder. */
#define LEDGER_DEVICE_ID_LEN 34     /* "d-" + 32 base32 characters */
#define LEDGER_REG_NAME_MAX 256     /* bytes of a device name (>= 1) */
#define LEDGER_REG_MAX_ATTRS 32     /* attribute pairs */
#define LEDGER_REG_ATTR_KEY_MAX 64  /* bytes of an attribute name (>= 1) */
#define LEDGER_REG_ATTR_VAL_MAX 256 /* bytes of an attribute value */
#define LEDGER_REG_REASON_MAX 256   /* bytes of a revocation reason */
/* The operator signs SIG_DOMAIN || the record encoded without key 15
 * (ledger_registry_signed_bytes). */
#define LEDGER_REG_SIG_DOMAIN "ledgermq registry record v1"
#define LEDGER_REG_SIG_LEN 64

/* Map keys. 0 and 1 are common to all kinds. */
enum ledger_record_key {
    LEDGER_KEY_KIND = 0,
    LEDGER_KEY_VERSION = 1,
    /* kind 1, message */
    LEDGER_MSG_TOPIC = 2,          /* tstr, required */
    LEDGER_MSG_PAYLOAD = 3,        /* bstr; exactly one of 3 and 4 */
    LEDGER_MSG_PAYLOAD_DIGEST = 4, /* bstr(32) = SHA-256(salt || payload) */
    LEDGER_MSG_PUBLISHER = 5,      /* tstr, required */
    LEDGER_MSG_CLIENT_ID = 6,      /* tstr, required */
    LEDGER_MSG_DEVICE_SEQ = 7,     /* uint, optional */
    LEDGER_MSG_DEVICE_TIME = 8,    /* uint ms since epoch, optional */
    LEDGER_MSG_BROKER_TIME = 9,    /* uint ms since epoch, required */
    LEDGER_MSG_INGRESS_NODE = 10,  /* tstr, required */
    LEDGER_MSG_COSE = 11,          /* bstr COSE_Sign1, optional */
    /* kind 2, ledger configuration */
    LEDGER_CFG_ORIGIN = 2,    /* tstr, required */
    LEDGER_CFG_NODE_KEYS = 3, /* array of tstr Ed25519 verifier keys named <origin>, 1..32 */
    LEDGER_CFG_QUORUM = 4,    /* uint, optional (cosignatures needed) */
    LEDGER_CFG_PARAMS = 5,    /* tstr, optional free text */
    /* kinds 3 registration, 4 revocation, 5 key rotation (one key space) */
    LEDGER_REG_DEVICE_ID = 2,  /* tstr device id, required in 3, 4, 5 */
    LEDGER_REG_PUBLIC_KEY = 3, /* bstr(32): 3 the device key, 5 the new key; required there */
    LEDGER_REG_NAME = 4,       /* tstr, kind 3, required, 1..LEDGER_REG_NAME_MAX bytes */
    LEDGER_REG_ATTRS = 5,      /* map tstr -> tstr, kind 3, optional, non-empty */
    LEDGER_REG_TIME = 6,       /* uint ms since epoch, required in 3, 4, 5 */
    LEDGER_REG_REASON = 7,     /* tstr, kind 4, optional */
    LEDGER_REG_OPERATOR = 14,  /* tstr Ed25519 verifier key of the signing operator, required */
    LEDGER_REG_SIGNATURE = 15, /* bstr(64) Ed25519 signature, required, always the last key */
};

enum ledger_record_err {
    LEDGER_REC_ERR_MISSING = -100, /* a required field is absent */
    LEDGER_REC_ERR_UNKNOWN = -101, /* unknown key in a known kind/version */
    LEDGER_REC_ERR_FIELD = -102,   /* field has the wrong type or value */
    LEDGER_REC_ERR_KIND = -103,    /* cannot encode this kind / not a record map */
    LEDGER_REC_ERR_PAYLOAD = -104, /* both or neither of payload and digest */
};

/* A byte view. ptr == NULL means "absent" for optional fields; a present
 * but empty string has a non-NULL ptr and len 0. */
struct ledger_bytes {
    const uint8_t *ptr;
    size_t len;
};

struct ledger_message {
    struct ledger_bytes topic;
    struct ledger_bytes payload;        /* absent when payload_digest is used */
    struct ledger_bytes payload_digest; /* 32 bytes when present */
    struct ledger_bytes publisher;
    struct ledger_bytes client_id;
    bool has_device_seq;
    uint64_t device_seq;
    bool has_device_time;
    uint64_t device_time_ms;
    uint64_t broker_time_ms;
    struct ledger_bytes ingress_node;
    struct ledger_bytes cose; /* optional */
};

struct ledger_config {
    struct ledger_bytes origin;
    size_t n_node_keys;
    struct ledger_bytes node_keys[LEDGER_MAX_NODE_KEYS]; /* verifier key strings */
    bool has_quorum;
    uint64_t quorum;
    struct ledger_bytes params; /* optional */
};

/* Kinds 3, 4, 5. Attributes: on encode any order (the encoder sorts them
 * into deterministic order and refuses duplicates); on decode in encoded
 * order. signature.ptr == NULL is allowed only by
 * ledger_registry_signed_bytes. */
struct ledger_registry {
    struct ledger_bytes device_id;
    struct ledger_bytes public_key; /* kinds 3 and 5 */
    struct ledger_bytes name;       /* kind 3 */
    size_t n_attrs;                 /* kind 3 */
    struct ledger_bytes attr_keys[LEDGER_REG_MAX_ATTRS];
    struct ledger_bytes attr_values[LEDGER_REG_MAX_ATTRS];
    uint64_t time_ms;
    struct ledger_bytes reason;       /* kind 4, optional */
    struct ledger_bytes operator_key; /* verifier key string */
    struct ledger_bytes signature;    /* 64 bytes */
};

struct ledger_record {
    uint64_t kind;
    uint64_t version;
    bool known;                  /* decode: typed fields below are filled */
    struct ledger_bytes raw;     /* decode: the whole record */
    size_t n_fields;             /* decode: number of map entries */
    struct ledger_message msg;   /* kind 1 */
    struct ledger_config config; /* kind 2 */
    struct ledger_registry reg;  /* kinds 3, 4, 5 */
};

const char *ledger_record_strerror(int err);

/* Encodes a kind 1..5 record (rec->version must be LEDGER_RECORD_VERSION
 * or 0 meaning current) into buf. Returns 0 and *len, CBOR_ERR_SPACE, or a
 * LEDGER_REC_ERR_* for missing/invalid fields. */
int ledger_record_encode(const struct ledger_record *rec, uint8_t *buf, size_t cap, size_t *len);

/* Decodes and validates buf[0:len] (see the file comment). Returns 0, a
 * CBOR_ERR_* for non-deterministic or malformed CBOR, or LEDGER_REC_ERR_*. */
int ledger_record_decode(const uint8_t *buf, size_t len, struct ledger_record *rec);

/* The bytes an operator signs for a registry record (kinds 3-5):
 * LEDGER_REG_SIG_DOMAIN (no NUL) followed by the record's deterministic
 * CBOR without the signature (key 15); rec->reg.signature is ignored. For
 * a decoded record this equals the stored bytes minus key 15 (the decoder
 * accepts only the one deterministic encoding). 0 and *len,
 * CBOR_ERR_SPACE or a LEDGER_REC_ERR_*. */
int ledger_registry_signed_bytes(const struct ledger_record *rec, uint8_t *buf, size_t cap,
                                 size_t *len);

#endif
