/* ledgermq device SDK: what a device firmware needs to take part in a
 * ledgermq deployment. Portable C99, no allocation, no I/O, no global
 * state besides libsodium's one-time initialisation; every output goes to
 * a caller buffer and every parsed value is a view into a caller buffer.
 * Cryptography: libsodium (crypto_sign_ed25519_*, crypto_hash_sha256).
 *
 *  - keys: Ed25519 key pair from a 32-byte seed drawn from a pluggable RNG;
 *    the device id derived from the public key;
 *  - envelopes: COSE_Sign1 (RFC 9052, tag 18, EdDSA) with the device id,
 *    sequence number and timestamp in the protected header;
 *  - tokens: CWT (RFC 8392) to present as the MQTT password;
 *  - receipts: RFC 9162 inclusion proof + C2SP signed-note checkpoint.
 * Formats: docs/FORMATS.md in the ledgermq repository ("Device id",
 * "Device envelope (COSE_Sign1)", "Device token (CWT)", "Receipts").
 *
 * Thread safety: functions are reentrant; lmq_sdk_init must have returned
 * before any other call runs. */
#ifndef LEDGERMQ_SDK_H
#define LEDGERMQ_SDK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LMQ_SDK_PK_LEN 32
#define LMQ_SDK_SK_LEN 64
#define LMQ_SDK_SEED_LEN 32
#define LMQ_SDK_SIG_LEN 64
#define LMQ_SDK_HASH_LEN 32
#define LMQ_SDK_DEVICE_ID_LEN 34 /* "d-" + 32 base32 characters */
#define LMQ_SDK_CTI_LEN 16       /* random token id made by lmq_sdk_token_make */
#define LMQ_SDK_MAX_PROOF 64
#define LMQ_SDK_MAX_KEYS 32 /* node keys per quorum check */

/* Header labels and claims (identical to the broker's). */
#define LMQ_SDK_COSE_TAG_SIGN1 18
#define LMQ_SDK_COSE_ALG_EDDSA (-8)
#define LMQ_SDK_HDR_DEVICE_SEQ (-65537)
#define LMQ_SDK_HDR_DEVICE_TIME (-65538)

/* Output size bounds. */
#define LMQ_SDK_ENVELOPE_MAX(payload_len) ((size_t)(payload_len) + 160)
#define LMQ_SDK_TOKEN_MAX(aud_len) ((size_t)(aud_len) + 256)

enum lmq_sdk_err {
    LMQ_SDK_OK = 0,
    LMQ_SDK_ERR_ARGS = -1,       /* NULL pointer, bad length or name */
    LMQ_SDK_ERR_SPACE = -2,      /* output or scratch buffer too small */
    LMQ_SDK_ERR_RNG = -3,        /* the RNG callback failed */
    LMQ_SDK_ERR_CRYPTO = -4,     /* libsodium could not be initialised / key derivation failed */
    LMQ_SDK_ERR_MALFORMED = -5,  /* envelope / receipt / note not well-formed */
    LMQ_SDK_ERR_ALG = -6,        /* not EdDSA, or kid/seq/time missing */
    LMQ_SDK_ERR_SIGNATURE = -7,  /* a signature does not verify */
    LMQ_SDK_ERR_UNSIGNED = -8,   /* checkpoint carries no signature of the given key */
    LMQ_SDK_ERR_SIZE = -9,       /* receipt tree_size != checkpoint size, or index >= size */
    LMQ_SDK_ERR_PROOF = -10,     /* inclusion proof does not lead to the checkpoint root */
    LMQ_SDK_ERR_ORIGIN = -11,    /* checkpoint origin differs from the expected one */
};

const char *lmq_sdk_strerror(int err);

/* Initialises libsodium (idempotent). 0 or LMQ_SDK_ERR_CRYPTO. */
int lmq_sdk_init(void);

/* Fills buf[0:len] with random bytes; 0 on success. A firmware plugs its
 * hardware TRNG here; hosts may use lmq_sdk_rng_system. */
typedef int (*lmq_sdk_rng_fn)(void *ctx, uint8_t *buf, size_t len);
/* libsodium's randombytes_buf (ctx unused). */
int lmq_sdk_rng_system(void *ctx, uint8_t *buf, size_t len);

struct lmq_sdk_key {
    uint8_t pk[LMQ_SDK_PK_LEN];
    uint8_t sk[LMQ_SDK_SK_LEN]; /* libsodium layout: seed || pk */
    char device_id[LMQ_SDK_DEVICE_ID_LEN + 1];
};

/* New key from LMQ_SDK_SEED_LEN bytes of rng output. Persist the seed
 * (lmq_sdk_key_seed) in protected storage; wipe the key when done. */
int lmq_sdk_key_generate(struct lmq_sdk_key *key, lmq_sdk_rng_fn rng, void *rng_ctx);
int lmq_sdk_key_from_seed(struct lmq_sdk_key *key, const uint8_t seed[LMQ_SDK_SEED_LEN]);
void lmq_sdk_key_seed(const struct lmq_sdk_key *key, uint8_t seed[LMQ_SDK_SEED_LEN]);
void lmq_sdk_key_wipe(struct lmq_sdk_key *key);

/* "d-" + lowercase base32 (no padding) of the first 20 bytes of
 * SHA-256("ledgermq device v1" || pk), NUL-terminated. */
void lmq_sdk_device_id(const uint8_t pk[LMQ_SDK_PK_LEN], char out[LMQ_SDK_DEVICE_ID_LEN + 1]);

/* Signs payload as a device envelope (tagged COSE_Sign1, protected
 * {1: -8, 4: device id, -65537: seq, -65538: time_ms}, unprotected {}).
 * out must not overlap payload; cap >= LMQ_SDK_ENVELOPE_MAX(payload_len)
 * always suffices (out is also used as the signing scratch). */
int lmq_sdk_envelope_sign(const struct lmq_sdk_key *key, uint64_t seq, uint64_t time_ms,
                          const uint8_t *payload, size_t payload_len, uint8_t *out, size_t cap,
                          size_t *out_len);

struct lmq_sdk_envelope {
    const uint8_t *kid; /* views into the envelope */
    size_t kid_len;
    uint64_t seq;
    uint64_t time_ms;
    const uint8_t *payload;
    size_t payload_len;
};

/* Verifies an envelope (any deterministic or non-deterministic definite
 * CBOR encoding) under pk. scratch (>= len + 32 bytes) holds the
 * Sig_structure. 0, LMQ_SDK_ERR_MALFORMED, _ALG, _SIGNATURE or _SPACE. */
int lmq_sdk_envelope_verify(const uint8_t *env, size_t len, const uint8_t pk[LMQ_SDK_PK_LEN],
                            uint8_t *scratch, size_t scratch_cap, struct lmq_sdk_envelope *out);

/* Makes a CWT for the MQTT password: COSE_Sign1 {1: -8, 4: device id}
 * over claims {1: iss, 2: sub, 3: aud, 4: exp, 6: iat, 7: cti} with iss =
 * sub = device id and a fresh LMQ_SDK_CTI_LEN-byte cti from rng. aud is
 * the broker's origin (NUL-terminated), times in seconds since the epoch.
 * cap >= LMQ_SDK_TOKEN_MAX(strlen(aud)) always suffices. */
int lmq_sdk_token_make(const struct lmq_sdk_key *key, const char *aud, int64_t iat, int64_t exp,
                       lmq_sdk_rng_fn rng, void *rng_ctx, uint8_t *out, size_t cap, size_t *out_len);

/* Parses a verifier key "name+hexkeyid+base64(0x01 || pk)" (len bytes).
 * name receives the NUL-terminated name (name_cap >= its length + 1).
 * Checks the key id. 0, LMQ_SDK_ERR_MALFORMED or LMQ_SDK_ERR_SPACE. */
int lmq_sdk_vkey_parse(const char *vkey, size_t len, char *name, size_t name_cap,
                       uint8_t pk[LMQ_SDK_PK_LEN]);

struct lmq_sdk_receipt {
    uint64_t index;
    uint64_t tree_size;
    const uint8_t *record; /* in scratch */
    size_t record_len;
    const char *origin;    /* checkpoint origin line (in scratch, not NUL-terminated) */
    size_t origin_len;
    uint8_t root[LMQ_SDK_HASH_LEN];
};

/* Verifies a receipt JSON {"index": N, "tree_size": M, "record": b64,
 * "proof": [b64, ...], "checkpoint": "<signed note>"}: the checkpoint
 * carries a valid Ed25519 signature line by (log_name, log_pk), its size
 * equals tree_size, index < size, the RFC 9162 inclusion proof of
 * SHA-256(0x00 || record) leads to its root, and if origin != NULL the
 * checkpoint origin equals it. scratch (>= json_len bytes) receives the
 * decoded record and checkpoint. 0 or the first error found. */
int lmq_sdk_receipt_verify(const char *json, size_t json_len, const char *log_name,
                           const uint8_t log_pk[LMQ_SDK_PK_LEN], const char *origin,
                           uint8_t *scratch, size_t scratch_cap, struct lmq_sdk_receipt *out);

/* Like lmq_sdk_receipt_verify, but the checkpoint must carry valid
 * signature lines (all under log_name, the origin) by at least quorum of
 * the n_keys node keys (1 <= n_keys <= LMQ_SDK_MAX_KEYS, quorum <= n_keys;
 * quorum 0 means 1). A failing signature of a listed key is
 * LMQ_SDK_ERR_SIGNATURE; too few is LMQ_SDK_ERR_UNSIGNED. */
int lmq_sdk_receipt_verify_quorum(const char *json, size_t json_len, const char *log_name,
                                  const uint8_t (*log_pks)[LMQ_SDK_PK_LEN], size_t n_keys,
                                  size_t quorum, const char *origin, uint8_t *scratch,
                                  size_t scratch_cap, struct lmq_sdk_receipt *out);

/* RFC 9162 §2.1.3.2 inclusion proof check. 0 or LMQ_SDK_ERR_PROOF. */
int lmq_sdk_verify_inclusion(uint64_t index, uint64_t size, const uint8_t leaf_hash[32],
                             const uint8_t (*proof)[32], size_t n, const uint8_t root[32]);

#ifdef __cplusplus
}
#endif

#endif
