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
 * skew). OUT may be NULL. */
int verify_envelope(struct registry *reg, const uint8_t *env, size_t len, uint64_t now_ms,
                    uint64_t skew_ms, const char *expect_device, struct verify_info *out);

/* The sequence rule: VERIFY_OK if SEQ is strictly greater than LAST (or
 * there is no last, HAS_LAST false), else VERIFY_REPLAY. */
static inline int verify_seq(bool has_last, uint64_t last, uint64_t seq)
{
    return !has_last || seq > last ? VERIFY_OK : VERIFY_REPLAY;
}

#endif
