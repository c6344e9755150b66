/* Device envelope verification (see verify.h). */
#include "identity/verify.h"

#include "identity/registry.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

const char *verify_strerror(int res)
{
    switch (res) {
    case VERIFY_OK:
        return "ok";
    case VERIFY_MALFORMED:
        return "malformed COSE_Sign1 envelope";
    case VERIFY_UNKNOWN:
        return "unknown device";
    case VERIFY_REVOKED:
        return "revoked device";
    case VERIFY_WRONG_DEVICE:
        return "envelope of another device than the session's";
    case VERIFY_BAD_SIGNATURE:
        return "bad signature";
    case VERIFY_SKEW:
        return "clock skew";
    case VERIFY_REPLAY:
        return "replayed or out-of-order sequence number";
    case VERIFY_REGISTRY:
        return "device registry unavailable";
    }
    return "unknown verification result";
}

uint8_t verify_reason_code(int res)
{
    switch (res) {
    case VERIFY_OK:
        return 0x00;
    case VERIFY_MALFORMED:
        return 0x99; /* payload format invalid */
    case VERIFY_UNKNOWN:
    case VERIFY_REVOKED:
    case VERIFY_WRONG_DEVICE:
    case VERIFY_BAD_SIGNATURE:
        return 0x87; /* not authorized */
    case VERIFY_SKEW:
    case VERIFY_REPLAY:
        return 0x83; /* implementation specific error */
    default:
        return 0x80; /* unspecified error */
    }
}

int verify_envelope(struct registry *reg, const uint8_t *env, size_t len, uint64_t now_ms,
                    uint64_t skew_ms, const char *expect_device, struct verify_info *out)
{
    struct verify_info tmp;
    struct verify_info *vi = out ? out : &tmp;
    memset(vi, 0, sizeof *vi);
    int rc = cose_envelope_decode(env, len, &vi->cose);
    if (rc < 0) {
        vi->cose_err = rc;
        return VERIFY_MALFORMED;
    }
    if (vi->cose.kid_len != DEVICE_ID_LEN ||
        !device_id_valid((const char *)vi->cose.kid, vi->cose.kid_len))
        /* Well-formed COSE, but the kid cannot name any device. */
        return VERIFY_UNKNOWN;
    memcpy(vi->device_id, vi->cose.kid, DEVICE_ID_LEN);
    vi->device_id[DEVICE_ID_LEN] = '\0';
    vi->seq = vi->cose.seq;
    vi->time_ms = vi->cose.time_ms;
    if (expect_device && strcmp(expect_device, vi->device_id) != 0)
        return VERIFY_WRONG_DEVICE;
    if (!reg)
        return VERIFY_REGISTRY;
    /* struct registry_device holds a copy of the registration record: too
     * big for a small worker stack. */
    struct registry_device *dev = malloc(sizeof *dev);
    if (!dev)
        return VERIFY_REGISTRY;
    rc = registry_lookup(reg, vi->device_id, DEVICE_ID_LEN, dev);
    int res = VERIFY_OK;
    if (rc == -ENOENT)
        res = VERIFY_UNKNOWN;
    else if (rc < 0)
        res = VERIFY_REGISTRY;
    else if (dev->status != REGISTRY_ACTIVE)
        res = VERIFY_REVOKED;
    else {
        rc = cose_sign1_verify_sig(&vi->cose, NULL, 0, dev->public_key);
        if (rc < 0) {
            vi->cose_err = rc;
            res = rc == COSE_ERR_NOMEM ? VERIFY_REGISTRY : VERIFY_BAD_SIGNATURE;
        }
    }
    free(dev);
    if (res != VERIFY_OK)
        return res;
    if (skew_ms != UINT64_MAX) {
        uint64_t d = vi->time_ms > now_ms ? vi->time_ms - now_ms : now_ms - vi->time_ms;
        if (d > skew_ms)
            return VERIFY_SKEW;
    }
    return VERIFY_OK;
}
