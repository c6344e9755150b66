/* COSE_Sign1 (RFC 9052 §4.2, CBOR tag 18) with EdDSA (alg -8, Ed25519
 * only), and the ledgermq device envelope built on it: protected header
 * {1: -8, 4: kid, -65537: seq, -65538: time_ms}, empty unprotected header
 * (docs/FORMATS.md "Device envelope (COSE_Sign1)").
 *
 * Invariant: the signature is always checked over the protected header
 * bytes exactly as received (the bstr contents), never over a re-encoding.
 * The decoder accepts only deterministically encoded CBOR (RFC 8949
 * §4.2.1), including inside the protected header, so one envelope has one
 * byte string. Pure: no I/O; decoded fields are views into the caller's
 * buffer. Only cose_sign1_verify_sig and cose_sign1_sign may allocate, and
 * only for messages larger than an internal stack buffer. Any thread. */
#ifndef LMQ_CRYPTO_COSE_H
#define LMQ_CRYPTO_COSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define COSE_TAG_SIGN1 18
#define COSE_ALG_EDDSA (-8)
#define COSE_HDR_ALG 1
#define COSE_HDR_CRIT 2
#define COSE_HDR_CTY 3
#define COSE_HDR_KID 4
/* Private-use labels (RFC 9052 §11.1: integers below -65536). */
#define COSE_HDR_DEVICE_SEQ (-65537)  /* uint: device sequence number */
#define COSE_HDR_DEVICE_TIME (-65538) /* uint: device time, ms since the Unix epoch */
#define COSE_MAX_HEADERS 32           /* labels per header bucket */
#define COSE_KID_MAX 255

enum cose_err {
    COSE_ERR_MALFORMED = -2000,     /* not a well-formed COSE_Sign1 (CBOR or structure) */
    COSE_ERR_NONCANONICAL = -2001,  /* CBOR not deterministically encoded */
    COSE_ERR_TAG = -2002,           /* missing tag 18, or another tag */
    COSE_ERR_HEADER = -2003,        /* bad header: wrong value type, label in both buckets,
                                       seq/time unprotected, too many labels */
    COSE_ERR_ALG = -2004,           /* alg missing, not protected, or not EdDSA (-8) */
    COSE_ERR_NO_KID = -2005,        /* kid missing (envelope: not in the protected header) */
    COSE_ERR_DETACHED = -2006,      /* payload is nil (detached content unsupported) */
    COSE_ERR_SIG_LEN = -2007,       /* signature is not 64 bytes (e.g. Ed448) */
    COSE_ERR_BAD_SIGNATURE = -2008, /* Ed25519 verification failed */
    COSE_ERR_SPACE = -2009,         /* output buffer too small */
    COSE_ERR_NO_SEQ = -2010,        /* envelope without a protected sequence number */
    COSE_ERR_NO_TIME = -2011,       /* envelope without a protected timestamp */
    COSE_ERR_CRIT = -2012,          /* crit lists a label this code does not understand */
    COSE_ERR_ARGS = -2013,          /* invalid argument (NULL, kid too long, ...) */
    COSE_ERR_NOMEM = -2014,         /* allocation for a large Sig_structure failed */
};

const char *cose_strerror(int err);

/* A decoded COSE_Sign1. All pointers view the decoded buffer. */
struct cose_sign1 {
    bool tagged;                  /* tag 18 was present */
    const uint8_t *protected_hdr; /* bstr contents as received (may be empty) */
    size_t protected_len;
    const uint8_t *unprotected; /* the encoded unprotected map */
    size_t unprotected_len;
    const uint8_t *payload;
    size_t payload_len;
    const uint8_t *signature;
    size_t signature_len;
    bool has_alg; /* alg in the protected header */
    int64_t alg;
    const uint8_t *kid; /* NULL if absent */
    size_t kid_len;
    bool kid_protected;
    bool has_seq; /* protected COSE_HDR_DEVICE_SEQ */
    uint64_t seq;
    bool has_time; /* protected COSE_HDR_DEVICE_TIME */
    uint64_t time_ms;
};

#define COSE_DECODE_UNTAGGED_OK 1u /* accept a message without tag 18 */

/* Parses buf[0:len] as one COSE_Sign1 (nothing after it). Checks the
 * structure and the header parameters this file knows (types, crit,
 * duplicates across buckets) but no signature and no algorithm. 0 or a
 * COSE_ERR_*. */
int cose_sign1_decode(const uint8_t *buf, size_t len, unsigned flags, struct cose_sign1 *m);

/* Checks that m->alg is EdDSA in the protected header and that the
 * signature over Sig_structure ["Signature1", protected as received,
 * external_aad, payload] verifies under the Ed25519 key pk. aad may be
 * NULL when aad_len is 0. 0, COSE_ERR_ALG, COSE_ERR_SIG_LEN,
 * COSE_ERR_BAD_SIGNATURE or COSE_ERR_NOMEM. */
int cose_sign1_verify_sig(const struct cose_sign1 *m, const void *aad, size_t aad_len,
                          const uint8_t pk[32]);

/* The bytes cose_sign1_verify_sig checks the signature over, after the
 * same alg and signature length checks, for a caller that verifies many
 * signatures at once (crypto/ed25519_batch.h): Sig_structure into
 * buf[0:cap] when it fits (*tbs = buf), else into a malloc'd buffer
 * (*tbs != buf: the caller frees it). 0 and *tbs, *tbs_len, or
 * COSE_ERR_ARGS, COSE_ERR_ALG, COSE_ERR_SIG_LEN, COSE_ERR_NOMEM. */
int cose_sign1_tbs(const struct cose_sign1 *m, const void *aad, size_t aad_len, uint8_t *buf,
                   size_t cap, uint8_t **tbs, size_t *tbs_len);

/* Decode (flags as above) + verify_sig in one call; m may be NULL. */
int cose_sign1_verify(const uint8_t *buf, size_t len, unsigned flags, const void *aad,
                      size_t aad_len, const uint8_t pk[32], struct cose_sign1 *m);

/* Generic signer: writes [protected, unprotected, payload, signature]
 * (tagged with 18 if tagged) into out. protected_map is the encoded
 * protected header map (its bytes are wrapped in a bstr verbatim; len 0
 * gives an empty bstr), unprotected_map the encoded unprotected map (NULL
 * means {}). Both are caller-vouched CBOR. sk is a libsodium Ed25519
 * secret key. 0 and *out_len, COSE_ERR_SPACE, COSE_ERR_ARGS or
 * COSE_ERR_NOMEM. */
int cose_sign1_sign(const uint8_t *protected_map, size_t protected_len, const uint8_t *unprotected_map,
                    size_t unprotected_len, const void *aad, size_t aad_len, const void *payload,
                    size_t payload_len, const uint8_t sk[64], bool tagged, uint8_t *out, size_t cap,
                    size_t *out_len);

/* Upper bound of the envelope size for a kid and payload length. */
#define COSE_ENVELOPE_MAX(kid_len, payload_len) ((size_t)(kid_len) + (size_t)(payload_len) + 128)

/* Device envelope: tagged COSE_Sign1, protected {1: -8, 4: kid, -65537:
 * seq, -65538: time_ms}, unprotected {}, no external_aad. kid is the
 * device id (1..COSE_KID_MAX bytes). 0 and *out_len or an error. */
int cose_envelope_sign(const char *kid, size_t kid_len, uint64_t seq, uint64_t time_ms,
                       const void *payload, size_t payload_len, const uint8_t sk[64], uint8_t *out,
                       size_t cap, size_t *out_len);

/* Decodes a device envelope: tag 18 required, alg EdDSA, kid, seq and time
 * all in the protected header. Does NOT verify the signature: look the
 * key up by m->kid, then call cose_sign1_verify_sig(m, NULL, 0, pk). */
int cose_envelope_decode(const uint8_t *buf, size_t len, struct cose_sign1 *m);

/* cose_envelope_decode + cose_sign1_verify_sig with a known key. */
int cose_envelope_verify(const uint8_t *buf, size_t len, const uint8_t pk[32], struct cose_sign1 *m);

#endif
