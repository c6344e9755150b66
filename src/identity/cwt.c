/* CWT device tokens (see cwt.h). The claims map is the COSE payload; it is
 * read, never re-encoded, and the signature covers it as received. */
#include "identity/cwt.h"

#include <string.h>

#include "util/cbor.h"

const char *cwt_strerror(int err)
{
    switch (err) {
    case CWT_ERR_CLAIMS: return "malformed CWT claims";
    case CWT_ERR_MISSING: return "required CWT claim missing";
    case CWT_ERR_SUBJECT: return "CWT subject/issuer does not match the key id";
    case CWT_ERR_EXPIRED: return "token expired";
    case CWT_ERR_NOT_YET_VALID: return "token not yet valid";
    case CWT_ERR_AUDIENCE: return "token is for another audience";
    case CWT_ERR_LIFETIME: return "token lifetime not allowed";
    case CWT_ERR_TAG: return "unexpected CBOR tag around the token";
    default: return cose_strerror(err);
    }
}

int cwt_make(const char *device_id, const char *aud, int64_t iat, int64_t exp, const uint8_t *cti,
             size_t cti_len, const uint8_t sk[64], uint8_t *out, size_t cap, size_t *out_len)
{
    uint8_t prot[COSE_KID_MAX + 16];
    uint8_t claims[2 * COSE_KID_MAX + 512 + CWT_CTI_MAX];
    struct cbor_writer w;
    size_t plen, clen, id_len, aud_len;

    if (device_id == NULL || aud == NULL || cti == NULL || cti_len == 0 || cti_len > CWT_CTI_MAX)
        return COSE_ERR_ARGS;
    id_len = strlen(device_id);
    aud_len = strlen(aud);
    if (id_len == 0 || id_len > COSE_KID_MAX || aud_len > 512 - 32)
        return COSE_ERR_ARGS;

    cbor_writer_init(&w, prot, sizeof(prot));
    cbor_put_map(&w, 2);
    cbor_put_uint(&w, COSE_HDR_ALG);
    cbor_put_int(&w, COSE_ALG_EDDSA);
    cbor_put_uint(&w, COSE_HDR_KID);
    cbor_put_bstr(&w, device_id, id_len);
    if (cbor_writer_finish(&w, &plen) != 0)
        return COSE_ERR_ARGS;

    cbor_writer_init(&w, claims, sizeof(claims));
    cbor_put_map(&w, 6);
    cbor_put_uint(&w, CWT_CLAIM_ISS);
    cbor_put_tstr(&w, device_id, id_len);
    cbor_put_uint(&w, CWT_CLAIM_SUB);
    cbor_put_tstr(&w, device_id, id_len);
    cbor_put_uint(&w, CWT_CLAIM_AUD);
    cbor_put_tstr(&w, aud, aud_len);
    cbor_put_uint(&w, CWT_CLAIM_EXP);
    cbor_put_int(&w, exp);
    cbor_put_uint(&w, CWT_CLAIM_IAT);
    cbor_put_int(&w, iat);
    cbor_put_uint(&w, CWT_CLAIM_CTI);
    cbor_put_bstr(&w, cti, cti_len);
    if (cbor_writer_finish(&w, &clen) != 0)
        return COSE_ERR_ARGS;
    return cose_sign1_sign(prot, plen, NULL, 0, NULL, 0, claims, clen, sk, true, out, cap, out_len);
}

static int cwt__tstr(struct cbor_reader *r, const char **p, size_t *len)
{
    return cbor_get_tstr(r, p, len) == 0 ? 0 : CWT_ERR_CLAIMS;
}

int cwt_decode(const uint8_t *buf, size_t len, struct cwt_token *t)
{
    struct cbor_reader r;
    enum cbor_type ty;
    uint64_t n;
    bool has_exp = false, has_iat = false;
    int rc;

    if (buf == NULL || t == NULL)
        return COSE_ERR_ARGS;
    memset(t, 0, sizeof(*t));
    /* Optional CWT tag 61 (RFC 8392 §6) in front of the COSE tag 18. */
    cbor_reader_init(&r, buf, len);
    if (cbor_peek_type(&r, &ty) == 0 && ty == CBOR_TYPE_TAG) {
        uint64_t tag;
        if (cbor_get_tag(&r, &tag) != 0)
            return COSE_ERR_MALFORMED;
        if (tag == CWT_TAG) {
            buf = r.p;
            len = cbor_reader_remaining(&r);
        } else if (tag != COSE_TAG_SIGN1) {
            return CWT_ERR_TAG;
        }
    }
    rc = cose_sign1_decode(buf, len, 0, &t->cose);
    if (rc != 0)
        return rc;
    if (!t->cose.has_alg || t->cose.alg != COSE_ALG_EDDSA)
        return COSE_ERR_ALG;
    if (t->cose.kid == NULL || !t->cose.kid_protected || t->cose.kid_len == 0)
        return COSE_ERR_NO_KID;

    /* Claims: deterministic map with int keys (text-keyed private claims
     * are skipped). */
    if (t->cose.payload_len == 0 || cbor_validate_deterministic(t->cose.payload, t->cose.payload_len) != 0)
        return CWT_ERR_CLAIMS;
    cbor_reader_init(&r, t->cose.payload, t->cose.payload_len);
    if (cbor_get_map(&r, &n) != 0 || n > CWT_MAX_CLAIMS)
        return CWT_ERR_CLAIMS;
    for (uint64_t i = 0; i < n; i++) {
        int64_t key;
        if (cbor_peek_type(&r, &ty) != 0)
            return CWT_ERR_CLAIMS;
        if (ty == CBOR_TYPE_TSTR) {
            if (cbor_skip(&r, NULL, NULL) != 0 || cbor_skip(&r, NULL, NULL) != 0)
                return CWT_ERR_CLAIMS;
            continue;
        }
        if (cbor_get_int(&r, &key) != 0)
            return CWT_ERR_CLAIMS;
        switch (key) {
        case CWT_CLAIM_ISS: rc = cwt__tstr(&r, &t->iss, &t->iss_len); break;
        case CWT_CLAIM_SUB: rc = cwt__tstr(&r, &t->sub, &t->sub_len); break;
        case CWT_CLAIM_AUD: rc = cwt__tstr(&r, &t->aud, &t->aud_len); break;
        case CWT_CLAIM_EXP:
            rc = cbor_get_int(&r, &t->exp) == 0 ? 0 : CWT_ERR_CLAIMS;
            has_exp = true;
            break;
        case CWT_CLAIM_NBF:
            rc = cbor_get_int(&r, &t->nbf) == 0 ? 0 : CWT_ERR_CLAIMS;
            t->has_nbf = true;
            break;
        case CWT_CLAIM_IAT:
            rc = cbor_get_int(&r, &t->iat) == 0 ? 0 : CWT_ERR_CLAIMS;
            has_iat = true;
            break;
        case CWT_CLAIM_CTI:
            rc = cbor_get_bstr(&r, &t->cti, &t->cti_len) == 0 ? 0 : CWT_ERR_CLAIMS;
            if (rc == 0 && (t->cti_len == 0 || t->cti_len > CWT_CTI_MAX))
                rc = CWT_ERR_CLAIMS;
            break;
        default: rc = cbor_skip(&r, NULL, NULL) == 0 ? 0 : CWT_ERR_CLAIMS; break;
        }
        if (rc != 0)
            return rc;
    }
    if (t->sub == NULL || t->aud == NULL || !has_exp || !has_iat || t->cti == NULL)
        return CWT_ERR_MISSING;
    if (t->sub_len != t->cose.kid_len || memcmp(t->sub, t->cose.kid, t->sub_len) != 0)
        return CWT_ERR_SUBJECT;
    if (t->iss != NULL && (t->iss_len != t->sub_len || memcmp(t->iss, t->sub, t->sub_len) != 0))
        return CWT_ERR_SUBJECT;
    return 0;
}

int cwt_verify(const struct cwt_token *t, const uint8_t pk[32], const char *aud, int64_t now,
               int64_t skew, int64_t max_lifetime)
{
    if (t == NULL || pk == NULL || aud == NULL || skew < 0)
        return COSE_ERR_ARGS;
    int rc = cose_sign1_verify_sig(&t->cose, NULL, 0, pk);
    if (rc != 0)
        return rc;
    size_t aud_len = strlen(aud);
    if (t->aud_len != aud_len || memcmp(t->aud, aud, aud_len) != 0)
        return CWT_ERR_AUDIENCE;
    /* Saturating comparisons: token times are attacker-chosen int64. */
    if (t->exp <= INT64_MAX - skew ? now >= t->exp + skew : false)
        return CWT_ERR_EXPIRED;
    if (now <= INT64_MAX - skew ? (t->iat > now + skew || (t->has_nbf && t->nbf > now + skew)) : false)
        return CWT_ERR_NOT_YET_VALID;
    if (max_lifetime > 0) {
        if (t->exp <= t->iat)
            return CWT_ERR_LIFETIME;
        /* exp > iat here; the difference may overflow int64 -> compare as uint64 */
        if ((uint64_t)t->exp - (uint64_t)t->iat > (uint64_t)max_lifetime)
            return CWT_ERR_LIFETIME;
    }
    return 0;
}
