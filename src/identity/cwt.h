/* CBOR Web Tokens (RFC 8392) that a device presents as its MQTT password:
 * a COSE_Sign1 (tag 18, optionally inside CWT tag 61) signed with the
 * device key, protected header {1: -8, 4: device id}, payload the claims
 * map {1 iss, 2 sub, 3 aud, 4 exp, 5 nbf, 6 iat, 7 cti} with iss = sub =
 * kid = the device id (docs/FORMATS.md "Device token (CWT)"). Decoding
 * is strict (deterministic CBOR, known claim types); replay detection is
 * the caller's: remember cti until exp. Pure, no allocation except inside
 * cose_sign1_verify_sig for large tokens. Any thread. */
#ifndef LMQ_IDENTITY_CWT_H
#define LMQ_IDENTITY_CWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/cose.h"

#define CWT_TAG 61
#define CWT_CLAIM_ISS 1
#define CWT_CLAIM_SUB 2
#define CWT_CLAIM_AUD 3
#define CWT_CLAIM_EXP 4
#define CWT_CLAIM_NBF 5
#define CWT_CLAIM_IAT 6
#define CWT_CLAIM_CTI 7
#define CWT_CTI_MAX 64
#define CWT_MAX_CLAIMS 32

enum cwt_err {
    CWT_ERR_CLAIMS = -2100,        /* payload is not a valid claims map / claim type wrong */
    CWT_ERR_MISSING = -2101,       /* a required claim (sub, aud, exp, iat, cti) is absent */
    CWT_ERR_SUBJECT = -2102,       /* sub != kid, or iss present and != sub */
    CWT_ERR_EXPIRED = -2103,       /* now >= exp + skew */
    CWT_ERR_NOT_YET_VALID = -2104, /* iat or nbf later than now + skew */
    CWT_ERR_AUDIENCE = -2105,      /* aud differs from the expected audience */
    CWT_ERR_LIFETIME = -2106,      /* exp - iat exceeds the allowed lifetime, or exp <= iat */
    CWT_ERR_TAG = -2107,           /* an outer tag other than 61 */
};

const char *cwt_strerror(int err); /* also knows the COSE_ERR_* codes */

struct cwt_token {
    struct cose_sign1 cose; /* cose.kid is the device id */
    const char *iss;        /* views into the token; NULL if absent */
    size_t iss_len;
    const char *sub;
    size_t sub_len;
    const char *aud;
    size_t aud_len;
    int64_t exp, iat;
    bool has_nbf;
    int64_t nbf;
    const uint8_t *cti;
    size_t cti_len;
};

/* Makes a token: kid = iss = sub = device_id, the given audience, iat,
 * exp and cti (1..CWT_CTI_MAX bytes, random per token). Not wrapped in tag
 * 61. 0 and *out_len, or COSE_ERR_ARGS / COSE_ERR_SPACE. */
int cwt_make(const char *device_id, const char *aud, int64_t iat, int64_t exp, const uint8_t *cti,
             size_t cti_len, const uint8_t sk[64], uint8_t *out, size_t cap, size_t *out_len);

/* Parses a token (optional tag 61, then a tagged COSE_Sign1 whose
 * protected header has alg EdDSA and kid) and its claims; checks that the
 * required claims are present and that sub == kid (and iss == sub if
 * present). No signature or time check: look the key up by t->sub first.
 * 0, a COSE_ERR_* or a CWT_ERR_*. */
int cwt_decode(const uint8_t *buf, size_t len, struct cwt_token *t);

/* Verifies the signature with pk, then the audience (exact byte match with
 * the NUL-terminated aud), then the times against now (seconds since the
 * epoch) with a clock skew allowance: expired if now >= exp + skew, not
 * yet valid if iat > now + skew or nbf > now + skew, and if max_lifetime >
 * 0, exp - iat must be in (0, max_lifetime]. 0 or the first error. */
int cwt_verify(const struct cwt_token *t, const uint8_t pk[32], const char *aud, int64_t now,
               int64_t skew, int64_t max_lifetime);

#endif
