/* Verification of a device envelope on a signed ledgered topic, split in
 * two so that it runs where it belongs:
 *
 *  - verify_envelope: the stateless checks, on any thread (the broker runs
 *    it on its worker pool; a Raft FSM could re-run it): COSE_Sign1
 *    decoding (identity/../crypto/cose.h device envelope), the registry
 *    lookup of kid (known, not revoked), the Ed25519 signature over the
 *    protected header exactly as received, the publisher binding (a
 *    session authenticated as a device may only publish its own
 *    envelopes) and the clock skew against the caller's time;
 *  - verify_seq: the sequence rule (strictly greater than the last one
 *    accepted for the device), at the single ordering point (the apply
 *    stage), because two envelopes of one device may be in flight at once.
 *
 * Pure apart from the registry lookup (read-only, any thread). */
#ifndef LMQ_IDENTITY_VERIFY_H
#define LMQ_IDENTITY_VERIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/cose.h"
#include "identity/device_id.h"

struct registry;

/* Why an envelope is refused. Each maps to one MQTT 5 reason code
 * (verify_reason_code) and has a fixed reason string (verify_strerror). */
enum verify_result {
    VERIFY_OK = 0,
    VERIFY_MALFORMED = 1,     /* not a well-formed device envelope -> 0x99 */
    VERIFY_UNKNOWN = 2,       /* kid is not a registered device -> 0x87 */
    VERIFY_REVOKED = 3,       /* the device is revoked -> 0x87 */
    VERIFY_WRONG_DEVICE = 4,  /* the session is another device -> 0x87 */
    VERIFY_BAD_SIGNATURE = 5, /* the signature does not verify -> 0x87 */
    VERIFY_SKEW = 6,          /* device time too far from broker time -> 0x83 */
    VERIFY_REPLAY = 7,        /* sequence not above the last accepted -> 0x83 */
    VERIFY_REGISTRY = 8,      /* the registry could not be read -> 0x80 */
};

/* A short reason ("unknown device", "bad signature", ...). */
const char *verify_strerror(int res);
/* MQTT 5 PUBACK/PUBREC reason code for RES (0 for VERIFY_OK). */
uint8_t verify_reason_code(int res);

/* What a verified envelope says. */
struct verify_info {
    struct cose_sign1 cose; /* views into the envelope */
    char device_id[DEVICE_ID_LEN + 1];
    uint64_t seq;
    uint64_t time_ms;
    int cose_err; /* the COSE_ERR_* behind VERIFY_MALFORMED/BAD_SIGNATURE, else 0 */
};

/* Checks ENV[0:LEN] as a device envelope against REG. NOW_MS is the
 * broker's time; SKEW_MS the largest allowed |device time - NOW_MS|, or
 * UINT64_MAX for none (late uploads). EXPECT_DEVICE (may be NULL) is the
 * device id the session authenticated as: the envelope's kid must equal
 * it. Returns VERIFY_OK and fills OUT, or the first check that failed (in
 * the order: malformed, wrong device, unknown, revoked, bad signature,
 * skew). OUT may be NULL. The signature is judged by ed25519_verify_one
 * (crypto/ed25519_batch.h), the rule of the batches below, so a re-check
 * of an envelope always agrees with the batch that accepted it. */
int verify_envelope(struct registry *reg, const uint8_t *env, size_t len, uint64_t now_ms,
                    uint64_t skew_ms, const char *expect_device, struct verify_info *out);

/* verify_envelope in two steps, for a caller that checks many envelopes
 * with one crypto/ed25519_batch.h call (the broker's worker jobs):
 *
 *   verify_prepare_many: everything but the signature (decoding, publisher
 *     binding, one registry read for all, the skew computed but reported
 *     after the signature as verify_envelope does) and the Sig_structure
 *     bytes; res is the final refusal, or VERIFY_OK with the signature
 *     still to check;
 *   verify_signatures: checks the signatures of the pending ones at once
 *     and makes every res final (VERIFY_OK, VERIFY_BAD_SIGNATURE or
 *     VERIFY_SKEW); frees what prepare allocated.
 *
 * Results and cose_err are exactly those of verify_envelope for each
 * envelope alone, whatever else is in the batch (ed25519_verify_batch
 * judges each signature as ed25519_verify_one does, which verify_envelope
 * uses). A struct verify_prep is big (an inline Sig_structure buffer):
 * keep arrays of them off small stacks. */
#define VERIFY_TBS_INLINE 384 /* larger Sig_structures are malloc'd */

struct verify_req {
    const uint8_t *env; /* the envelope, ENV[0:LEN], alive until verify_signatures */
    size_t len;
    uint64_t now_ms;
    uint64_t skew_ms;          /* UINT64_MAX: none */
    const char *expect_device; /* may be NULL */
};

struct verify_prep {
    struct verify_info info;
    int res; /* final, or VERIFY_OK with sig_pending */
    bool sig_pending;
    bool skewed; /* refused for skew if the signature verifies */
    uint8_t pk[32];
    uint8_t *tbs; /* Sig_structure: tbs_buf or malloc'd */
    size_t tbs_len;
    uint8_t tbs_buf[VERIFY_TBS_INLINE];
};

/* Prepares REQ[0..N) into VP[0..N) (see above); returns how many wait for
 * their signature. */
size_t verify_prepare_many(struct registry *reg, const struct verify_req *req, size_t n,
                           struct verify_prep *vp);
/* Checks the pending signatures of VP[0..N) with one
 * ed25519_verify_batch; every VP[i].res is final afterwards. Returns how
 * many are VERIFY_OK. */
size_t verify_signatures(struct verify_prep *vp, size_t n);

/* The sequence rule: VERIFY_OK if SEQ is strictly greater than LAST (or
 * there is no last, HAS_LAST false), else VERIFY_REPLAY. */
static inline int verify_seq(bool has_last, uint64_t last, uint64_t seq)
{
    return !has_last || seq > last ? VERIFY_OK : VERIFY_REPLAY;
}

#endif
