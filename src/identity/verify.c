/* Device envelope verification (see verify.h). */
#include "identity/verify.h"

#include "identity/registry.h"

#include "crypto/ed25519_batch.h"

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

/* Up to the registry lookup: VERIFY_OK when the device's key is needed. */
static int verify__decode(const struct verify_req *rq, struct verify_info *vi)
{
    memset(vi, 0, sizeof *vi);
    int rc = cose_envelope_decode(rq->env, rq->len, &vi->cose);
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
    if (rq->expect_device && strcmp(rq->expect_device, vi->device_id) != 0)
        return VERIFY_WRONG_DEVICE;
    return VERIFY_OK;
}

/* After the lookup (Q answered): the key's status, the Sig_structure. */
static void verify__keyed(const struct verify_req *rq, const struct registry_pk_query *q,
                          struct verify_prep *p)
{
    if (q->rc == -ENOENT) {
        p->res = VERIFY_UNKNOWN;
        return;
    }
    if (q->rc < 0) {
        p->res = VERIFY_REGISTRY;
        return;
    }
    if (q->revoked) {
        p->res = VERIFY_REVOKED;
        return;
    }
    int rc =
        cose_sign1_tbs(&p->info.cose, NULL, 0, p->tbs_buf, sizeof p->tbs_buf, &p->tbs, &p->tbs_len);
    if (rc < 0) {
        p->info.cose_err = rc;
        p->res = rc == COSE_ERR_NOMEM ? VERIFY_REGISTRY : VERIFY_BAD_SIGNATURE;
        return;
    }
    memcpy(p->pk, q->pk, 32);
    p->sig_pending = true;
    if (rq->skew_ms != UINT64_MAX) {
        uint64_t t = p->info.time_ms;
        uint64_t d = t > rq->now_ms ? t - rq->now_ms : rq->now_ms - t;
        p->skewed = d > rq->skew_ms;
    }
}

size_t verify_prepare_many(struct registry *reg, const struct verify_req *req, size_t n,
                           struct verify_prep *vp)
{
    struct registry_pk_query q[16];
    size_t pending = 0;
    for (size_t i0 = 0; i0 < n; i0 += sizeof q / sizeof q[0]) {
        size_t i1 = n - i0 < sizeof q / sizeof q[0] ? n : i0 + sizeof q / sizeof q[0];
        size_t nq = 0;
        for (size_t i = i0; i < i1; i++) {
            struct verify_prep *p = &vp[i];
            p->sig_pending = p->skewed = false;
            p->tbs = NULL;
            p->tbs_len = 0;
            p->res = verify__decode(&req[i], &p->info);
            if (p->res == VERIFY_OK && !reg)
                p->res = VERIFY_REGISTRY;
            if (p->res == VERIFY_OK)
                q[nq++].id = p->info.device_id;
        }
        if (nq)
            registry_lookup_pks(reg, q, nq);
        nq = 0;
        for (size_t i = i0; i < i1; i++) {
            if (vp[i].res != VERIFY_OK)
                continue;
            verify__keyed(&req[i], &q[nq++], &vp[i]);
            pending += vp[i].sig_pending;
        }
    }
    return pending;
}

size_t verify_signatures(struct verify_prep *vp, size_t n)
{
    struct ed25519_batch_item items[ED25519_BATCH_MAX];
    uint8_t ok[ED25519_BATCH_MAX];
    size_t idx[ED25519_BATCH_MAX];
    size_t good = 0, i = 0;
    while (i < n) {
        size_t k = 0;
        for (; i < n && k < ED25519_BATCH_MAX; i++) {
            if (!vp[i].sig_pending)
                continue;
            items[k] = (struct ed25519_batch_item){.pk = vp[i].pk,
                                                   .sig = vp[i].info.cose.signature,
                                                   .msg = vp[i].tbs,
                                                   .msg_len = vp[i].tbs_len};
            idx[k++] = i;
        }
        if (k)
            ed25519_verify_batch(items, k, ok);
        for (size_t j = 0; j < k; j++) {
            struct verify_prep *p = &vp[idx[j]];
            if (!ok[j]) {
                p->info.cose_err = COSE_ERR_BAD_SIGNATURE;
                p->res = VERIFY_BAD_SIGNATURE;
            } else if (p->skewed) {
                p->res = VERIFY_SKEW;
            }
            p->sig_pending = false;
            if (p->tbs != p->tbs_buf)
                free(p->tbs);
            p->tbs = NULL;
        }
    }
    for (i = 0; i < n; i++)
        good += vp[i].res == VERIFY_OK;
    return good;
}

int verify_envelope(struct registry *reg, const uint8_t *env, size_t len, uint64_t now_ms,
                    uint64_t skew_ms, const char *expect_device, struct verify_info *out)
{
    /* struct verify_prep holds a Sig_structure buffer: too big for a small
     * worker stack. */
    struct verify_prep *p = malloc(sizeof *p);
    if (!p) {
        if (out)
            memset(out, 0, sizeof *out);
        return VERIFY_REGISTRY;
    }
    struct verify_req rq = {env, len, now_ms, skew_ms, expect_device};
    verify_prepare_many(reg, &rq, 1, p);
    verify_signatures(p, 1);
    int res = p->res;
    if (out)
        *out = p->info;
    free(p);
    return res;
}
