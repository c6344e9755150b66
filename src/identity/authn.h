/* Authentication of a connecting client against the device registry and
 * the broker's own state: the checks behind ledgermqd's CONNECT methods
 * (docs/BROKER.md "Authentication"):
 *   - a CWT device token (identity/cwt.h) as the MQTT password,
 *   - a TLS client certificate whose public key is a registered key,
 *   - the MQTT 5 enhanced authentication method "ledgermq-ed25519": the
 *     broker's nonce signed by the device key over a domain-separated
 *     message (docs/FORMATS.md "ledgermq-ed25519 authentication"),
 * and the replay cache that makes a token single-use.
 *
 * authn_token, authn_device_key and authn_ed25519_verify run on worker
 * threads (Ed25519 verification, LMDB reads); they only read the registry
 * (thread-safe) and their arguments. The replay cache is not thread-safe:
 * the broker uses it on its loop thread only. */
#ifndef LMQ_IDENTITY_AUTHN_H
#define LMQ_IDENTITY_AUTHN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "identity/device_id.h"

struct registry;

enum authn_err {
    AUTHN_ERR_UNKNOWN_DEVICE = -2500, /* no registered device with this id or key */
    AUTHN_ERR_REVOKED = -2501,        /* the device is revoked */
    AUTHN_ERR_OLD_KEY = -2502,        /* the key was rotated away: not the device's current key */
    AUTHN_ERR_NO_REGISTRY = -2503,    /* the node has no registry (no or damaged ledger) */
    AUTHN_ERR_REGISTRY = -2504,       /* registry read failed */
    AUTHN_ERR_FORMAT = -2505,         /* ed25519 response: not id || signature */
    AUTHN_ERR_SIGNATURE = -2506,      /* ed25519 response: signature does not verify */
    AUTHN_ERR_BEFORE_START = -2507,   /* token issued before this broker process started */
    AUTHN_ERR_REPLAY = -2508,         /* token already used */
    AUTHN_ERR_REPLAY_FULL = -2509,    /* replay cache full of unexpired tokens */
    AUTHN_ERR_NOMEM = -2510,
};

/* A one-line reason for an AUTHN_ERR_*, CWT_ERR_* or COSE_ERR_*. */
const char *authn_strerror(int err);

/* ------------------------------------------------------------------ */
/* Tokens */

struct authn_token_opts {
    const char *audience; /* the broker's ledger_origin */
    int64_t now;          /* seconds since the epoch */
    int64_t skew;         /* clock difference allowed (token_clock_skew) */
    int64_t max_lifetime; /* exp - iat at most (token_max_lifetime) */
    int64_t issued_after; /* iat must be >= this (the broker's start time), or 0 */
};

#define AUTHN_REPLAY_KEY_LEN 16

/* Checks token TOK[0:LEN]: decodes it (cwt_decode), looks up its subject
 * in the registry (known, active), verifies signature, audience and times
 * (cwt_verify), then iat >= issued_after. On success writes the device id,
 * the replay key (the first 16 bytes of SHA-256("ledgermq token v1" 0x00
 * || sub || 0x00 || cti): the same token re-wrapped in another tag has
 * the same key) and the token's exp. Replay is the caller's
 * (authn_replay_*). 0 or an AUTHN_ERR_* / CWT_ERR_* / COSE_ERR_*. Any
 * thread. */
int authn_token(struct registry *r, const uint8_t *tok, size_t len,
                const struct authn_token_opts *o, char id[DEVICE_ID_LEN + 1],
                uint8_t replay_key[AUTHN_REPLAY_KEY_LEN], int64_t *exp);

/* The active device whose current key is PK (a TLS client certificate's
 * key): 0 and its id, AUTHN_ERR_UNKNOWN_DEVICE, _OLD_KEY, _REVOKED,
 * _NO_REGISTRY, _REGISTRY. Any thread. */
int authn_device_key(struct registry *r, const uint8_t pk[32], char id[DEVICE_ID_LEN + 1]);

/* ------------------------------------------------------------------ */
/* ledgermq-ed25519 (MQTT 5 enhanced authentication) */

#define AUTHN_ED25519_METHOD "ledgermq-ed25519"
#define AUTHN_ED25519_DOMAIN "ledgermq-ed25519 v1"
#define AUTHN_NONCE_LEN 32
#define AUTHN_ED25519_RESPONSE_LEN (DEVICE_ID_LEN + 64)
#define AUTHN_ED25519_MSG_MAX                                                                      \
    (sizeof AUTHN_ED25519_DOMAIN + 1 + 255 + AUTHN_NONCE_LEN + DEVICE_ID_LEN)

/* The bytes the device signs:
 *   "ledgermq-ed25519 v1" 0x00 || u8 len(origin) || origin || nonce(32) || device id(34)
 * origin is 1..255 bytes. Returns the length written to OUT (cap >=
 * AUTHN_ED25519_MSG_MAX) or AUTHN_ERR_FORMAT. Pure, any thread. */
int authn_ed25519_message(const char *origin, const uint8_t nonce[AUTHN_NONCE_LEN], const char *id,
                          uint8_t *out, size_t cap);

/* Splits the device's AUTH data IN[0:LEN] = device id (34 ASCII bytes) ||
 * Ed25519 signature (64 bytes): 0 with *ID (NUL-terminated copy) and *SIG
 * (a view into IN), or AUTHN_ERR_FORMAT. Pure, any thread (fuzzed). */
int authn_ed25519_decode(const uint8_t *in, size_t len, char id[DEVICE_ID_LEN + 1],
                         const uint8_t **sig);

/* The whole check: decode RESP, look the device up (active), verify the
 * signature over authn_ed25519_message(origin, nonce, id) with its
 * current key. 0 and the id in ID, or an AUTHN_ERR_*. Any thread. */
int authn_ed25519_verify(struct registry *r, const char *origin,
                         const uint8_t nonce[AUTHN_NONCE_LEN], const uint8_t *resp, size_t len,
                         char id[DEVICE_ID_LEN + 1]);

/* A fresh random nonce (libsodium randombytes). */
void authn_nonce(uint8_t nonce[AUTHN_NONCE_LEN]);

/* ------------------------------------------------------------------ */
/* The replay cache: accepted token keys until their exp, at most MAX of
 * them (memory ~ 48 bytes per entry at most). Not persisted: the broker
 * refuses tokens issued before it started instead (issued_after), so a
 * restart does not reopen a window. One thread. */

struct authn_replay;

struct authn_replay *authn_replay_new(uint32_t max);
void authn_replay_free(struct authn_replay *rc);
/* Remembers KEY until EXP: 0, AUTHN_ERR_REPLAY if it is there (and not
 * expired at NOW), AUTHN_ERR_REPLAY_FULL if MAX unexpired keys are held
 * (expired ones are dropped first), AUTHN_ERR_NOMEM. */
int authn_replay_add(struct authn_replay *rc, const uint8_t key[AUTHN_REPLAY_KEY_LEN], int64_t exp,
                     int64_t now);
/* Keys held (expired ones may still be counted until the next sweep). */
size_t authn_replay_count(const struct authn_replay *rc);

#endif
