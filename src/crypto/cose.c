/* COSE_Sign1 with EdDSA and the ledgermq device envelope (see cose.h and
 * docs/FORMATS.md "Device envelope (COSE_Sign1)"). The protected header is
 * kept as the received byte view and fed unchanged into Sig_structure; it
 * is parsed only to read alg, kid, seq and time. */
#include "crypto/cose.h"

#include <stdlib.h>
#include <string.h>

#include "crypto/sign.h"
#include "util/cbor.h"

#define COSE__STACK_TBS 2048 /* Sig_structures up to this size avoid malloc */

const char *cose_strerror(int err)
{
    switch (err) {
    case 0: return "ok";
    case COSE_ERR_MALFORMED: return "malformed COSE_Sign1";
    case COSE_ERR_NONCANONICAL: return "COSE_Sign1 is not deterministically encoded CBOR";
    case COSE_ERR_TAG: return "missing or wrong CBOR tag (COSE_Sign1 is tag 18)";
    case COSE_ERR_HEADER: return "invalid COSE header parameter";
    case COSE_ERR_ALG: return "algorithm missing, unprotected or not EdDSA";
    case COSE_ERR_NO_KID: return "key id (kid) missing from the protected header";
    case COSE_ERR_DETACHED: return "detached payload not supported";
    case COSE_ERR_SIG_LEN: return "signature is not an Ed25519 signature (64 bytes)";
    case COSE_ERR_BAD_SIGNATURE: return "signature does not verify";
    case COSE_ERR_SPACE: return "output buffer too small";
    case COSE_ERR_NO_SEQ: return "sequence number missing from the protected header";
    case COSE_ERR_NO_TIME: return "timestamp missing from the protected header";
    case COSE_ERR_CRIT: return "critical header parameter not understood";
    case COSE_ERR_ARGS: return "invalid argument";
    case COSE_ERR_NOMEM: return "out of memory";
    default: return "unknown COSE error";
    }
}

static int cose__map_cbor_err(int rc)
{
    switch (rc) {
    case CBOR_ERR_NONCANONICAL:
    case CBOR_ERR_INDEFINITE:
    case CBOR_ERR_MAP_ORDER: return COSE_ERR_NONCANONICAL;
    default: return COSE_ERR_MALFORMED;
    }
}

struct cose__keys {
    size_t n;
    const uint8_t *p[COSE_MAX_HEADERS];
    size_t len[COSE_MAX_HEADERS];
};

static bool cose__label_known(int64_t label)
{
    return label == COSE_HDR_ALG || label == COSE_HDR_CTY || label == COSE_HDR_KID ||
           label == COSE_HDR_DEVICE_SEQ || label == COSE_HDR_DEVICE_TIME;
}

static int cose__parse_crit(struct cbor_reader *r)
{
    uint64_t n;
    if (cbor_get_array(r, &n) != 0 || n == 0)
        return COSE_ERR_HEADER;
    for (uint64_t i = 0; i < n; i++) {
        int64_t label;
        enum cbor_type t;
        if (cbor_peek_type(r, &t) != 0)
            return COSE_ERR_HEADER;
        if (t == CBOR_TYPE_TSTR) {
            if (cbor_skip(r, NULL, NULL) != 0)
                return COSE_ERR_HEADER;
            return COSE_ERR_CRIT;
        }
        int rc = cbor_get_int(r, &label);
        if (rc == CBOR_ERR_RANGE)
            return COSE_ERR_CRIT;
        if (rc != 0)
            return COSE_ERR_HEADER;
        if (!cose__label_known(label))
            return COSE_ERR_CRIT;
    }
    return 0;
}

/* Parses one header map (already validated as deterministic CBOR). keys
 * receives the encoded labels; other holds the labels of the other bucket
 * (a label in both is an error, RFC 9052 §3). */
static int cose__parse_bucket(const uint8_t *map, size_t len, bool prot, struct cose_sign1 *m,
                              struct cose__keys *keys, const struct cose__keys *other)
{
    struct cbor_reader r;
    uint64_t n;
    keys->n = 0;
    if (len == 0)
        return 0; /* zero-length protected bstr = empty map */
    cbor_reader_init(&r, map, len);
    if (cbor_get_map(&r, &n) != 0)
        return COSE_ERR_HEADER;
    if (n > COSE_MAX_HEADERS)
        return COSE_ERR_HEADER;
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *kp;
        size_t kl;
        enum cbor_type t;
        int rc;
        if (cbor_peek_type(&r, &t) != 0 || (t != CBOR_TYPE_UINT && t != CBOR_TYPE_NEGINT &&
                                             t != CBOR_TYPE_TSTR))
            return COSE_ERR_HEADER; /* labels are int / tstr */
        if (cbor_skip(&r, &kp, &kl) != 0)
            return COSE_ERR_MALFORMED;
        if (other != NULL) {
            for (size_t j = 0; j < other->n; j++)
                if (other->len[j] == kl && memcmp(other->p[j], kp, kl) == 0)
                    return COSE_ERR_HEADER;
        }
        keys->p[keys->n] = kp;
        keys->len[keys->n] = kl;
        keys->n++;

        int64_t label = 0;
        bool int_label = false;
        if (t != CBOR_TYPE_TSTR) {
            struct cbor_reader kr;
            cbor_reader_init(&kr, kp, kl);
            int_label = cbor_get_int(&kr, &label) == 0; /* out of int64: unknown */
        }
        if (!int_label) {
            if (cbor_skip(&r, NULL, NULL) != 0)
                return COSE_ERR_MALFORMED;
            continue;
        }
        switch (label) {
        case COSE_HDR_ALG:
            if (cbor_peek_type(&r, &t) != 0)
                return COSE_ERR_MALFORMED;
            if (t == CBOR_TYPE_UINT || t == CBOR_TYPE_NEGINT) {
                int64_t alg;
                rc = cbor_get_int(&r, &alg);
                if (rc == CBOR_ERR_RANGE) {
                    alg = 0; /* no such algorithm: unsupported */
                    rc = cbor_skip(&r, NULL, NULL);
                }
                if (rc != 0)
                    return COSE_ERR_HEADER;
                if (prot) {
                    m->has_alg = true;
                    m->alg = alg;
                }
            } else if (t == CBOR_TYPE_TSTR) {
                if (cbor_skip(&r, NULL, NULL) != 0)
                    return COSE_ERR_MALFORMED;
                if (prot) {
                    m->has_alg = true;
                    m->alg = 0; /* text algorithm names: unsupported */
                }
            } else {
                return COSE_ERR_HEADER;
            }
            break;
        case COSE_HDR_CRIT:
            if (!prot)
                return COSE_ERR_HEADER; /* RFC 9052 §3.1: crit MUST be protected */
            rc = cose__parse_crit(&r);
            if (rc != 0)
                return rc;
            break;
        case COSE_HDR_CTY:
            if (cbor_peek_type(&r, &t) != 0)
                return COSE_ERR_MALFORMED;
            if (t != CBOR_TYPE_UINT && t != CBOR_TYPE_TSTR)
                return COSE_ERR_HEADER;
            if (cbor_skip(&r, NULL, NULL) != 0)
                return COSE_ERR_MALFORMED;
            break;
        case COSE_HDR_KID:
            if (cbor_get_bstr(&r, &m->kid, &m->kid_len) != 0)
                return COSE_ERR_HEADER;
            m->kid_protected = prot;
            break;
        case COSE_HDR_DEVICE_SEQ:
            if (!prot || cbor_get_uint(&r, &m->seq) != 0)
                return COSE_ERR_HEADER;
            m->has_seq = true;
            break;
        case COSE_HDR_DEVICE_TIME:
            if (!prot || cbor_get_uint(&r, &m->time_ms) != 0)
                return COSE_ERR_HEADER;
            m->has_time = true;
            break;
        default:
            if (cbor_skip(&r, NULL, NULL) != 0)
                return COSE_ERR_MALFORMED;
            break;
        }
    }
    if (cbor_reader_end(&r) != 0)
        return COSE_ERR_HEADER;
    return 0;
}

int cose_sign1_decode(const uint8_t *buf, size_t len, unsigned flags, struct cose_sign1 *m)
{
    struct cbor_reader r;
    enum cbor_type t;
    uint64_t n;
    int rc;

    if (buf == NULL || m == NULL)
        return COSE_ERR_ARGS;
    memset(m, 0, sizeof(*m));
    rc = cbor_validate_deterministic(buf, len);
    if (rc != 0)
        return cose__map_cbor_err(rc);
    cbor_reader_init(&r, buf, len);
    if (cbor_peek_type(&r, &t) != 0)
        return COSE_ERR_MALFORMED;
    if (t == CBOR_TYPE_TAG) {
        uint64_t tag;
        if (cbor_get_tag(&r, &tag) != 0)
            return COSE_ERR_MALFORMED;
        if (tag != COSE_TAG_SIGN1)
            return COSE_ERR_TAG;
        m->tagged = true;
    } else if (!(flags & COSE_DECODE_UNTAGGED_OK)) {
        return COSE_ERR_TAG;
    }
    if (cbor_get_array(&r, &n) != 0 || n != 4)
        return COSE_ERR_MALFORMED;
    if (cbor_get_bstr(&r, &m->protected_hdr, &m->protected_len) != 0)
        return COSE_ERR_MALFORMED;
    if (cbor_peek_type(&r, &t) != 0 || t != CBOR_TYPE_MAP)
        return COSE_ERR_MALFORMED;
    if (cbor_skip(&r, &m->unprotected, &m->unprotected_len) != 0)
        return COSE_ERR_MALFORMED;
    if (cbor_peek_type(&r, &t) != 0)
        return COSE_ERR_MALFORMED;
    if (t == CBOR_TYPE_SIMPLE) {
        if (cbor_get_null(&r) != 0)
            return COSE_ERR_MALFORMED;
        return COSE_ERR_DETACHED;
    }
    if (cbor_get_bstr(&r, &m->payload, &m->payload_len) != 0)
        return COSE_ERR_MALFORMED;
    if (cbor_get_bstr(&r, &m->signature, &m->signature_len) != 0)
        return COSE_ERR_MALFORMED;
    if (cbor_reader_end(&r) != 0)
        return COSE_ERR_MALFORMED;

    /* The protected header is a serialized map inside the bstr; it must be
     * deterministic too, but it is only read here, never re-encoded. */
    if (m->protected_len > 0) {
        rc = cbor_validate_deterministic(m->protected_hdr, m->protected_len);
        if (rc != 0)
            return cose__map_cbor_err(rc);
    }
    struct cose__keys pkeys, ukeys;
    rc = cose__parse_bucket(m->protected_hdr, m->protected_len, true, m, &pkeys, NULL);
    if (rc != 0)
        return rc;
    rc = cose__parse_bucket(m->unprotected, m->unprotected_len, false, m, &ukeys, &pkeys);
    if (rc != 0)
        return rc;
    return 0;
}

/* Writes Sig_structure = ["Signature1", protected, external_aad, payload]. */
static size_t cose__tbs_size(size_t plen, size_t aad_len, size_t payload_len)
{
    return 1 + 11 + (9 + plen) + (9 + aad_len) + (9 + payload_len);
}

static int cose__tbs(uint8_t *buf, size_t cap, const uint8_t *prot, size_t plen, const void *aad,
                     size_t aad_len, const void *payload, size_t payload_len, size_t *len)
{
    struct cbor_writer w;
    static const uint8_t empty[1] = {0};
    cbor_writer_init(&w, buf, cap);
    cbor_put_array(&w, 4);
    cbor_put_cstr(&w, "Signature1");
    cbor_put_bstr(&w, plen ? (const void *)prot : empty, plen);
    cbor_put_bstr(&w, aad_len ? aad : empty, aad_len);
    cbor_put_bstr(&w, payload_len ? payload : empty, payload_len);
    return cbor_writer_finish(&w, len) == 0 ? 0 : COSE_ERR_SPACE;
}

int cose_sign1_tbs(const struct cose_sign1 *m, const void *aad, size_t aad_len, uint8_t *buf,
                   size_t cap, uint8_t **tbs, size_t *tbs_len)
{
    if (m == NULL || tbs == NULL || tbs_len == NULL || (aad == NULL && aad_len != 0) ||
        (buf == NULL && cap != 0))
        return COSE_ERR_ARGS;
    if (!m->has_alg || m->alg != COSE_ALG_EDDSA)
        return COSE_ERR_ALG;
    if (m->signature_len != CRYPTO_ED25519_SIG_LEN)
        return COSE_ERR_SIG_LEN;
    size_t need = cose__tbs_size(m->protected_len, aad_len, m->payload_len);
    uint8_t *out = buf;
    if (need > cap) {
        out = malloc(need);
        if (out == NULL)
            return COSE_ERR_NOMEM;
        cap = need;
    }
    int rc = cose__tbs(out, cap, m->protected_hdr, m->protected_len, aad, aad_len, m->payload,
                       m->payload_len, tbs_len);
    if (rc != 0) {
        if (out != buf)
            free(out);
        return rc;
    }
    *tbs = out;
    return 0;
}

int cose_sign1_verify_sig(const struct cose_sign1 *m, const void *aad, size_t aad_len,
                          const uint8_t pk[32])
{
    uint8_t stackbuf[COSE__STACK_TBS];
    uint8_t *tbs;
    size_t len;

    if (pk == NULL)
        return COSE_ERR_ARGS;
    int rc = cose_sign1_tbs(m, aad, aad_len, stackbuf, sizeof stackbuf, &tbs, &len);
    if (rc != 0)
        return rc;
    if (crypto_ed25519_verify(m->signature, tbs, len, pk) != 0)
        rc = COSE_ERR_BAD_SIGNATURE;
    if (tbs != stackbuf)
        free(tbs);
    return rc;
}

int cose_sign1_verify(const uint8_t *buf, size_t len, unsigned flags, const void *aad,
                      size_t aad_len, const uint8_t pk[32], struct cose_sign1 *m)
{
    struct cose_sign1 local;
    if (m == NULL)
        m = &local;
    int rc = cose_sign1_decode(buf, len, flags, m);
    if (rc != 0)
        return rc;
    return cose_sign1_verify_sig(m, aad, aad_len, pk);
}

int cose_sign1_sign(const uint8_t *protected_map, size_t protected_len, const uint8_t *unprotected_map,
                    size_t unprotected_len, const void *aad, size_t aad_len, const void *payload,
                    size_t payload_len, const uint8_t sk[64], bool tagged, uint8_t *out, size_t cap,
                    size_t *out_len)
{
    static const uint8_t empty_map[1] = {0xa0};
    static const uint8_t empty[1] = {0};
    uint8_t stackbuf[COSE__STACK_TBS];
    uint8_t sig[CRYPTO_ED25519_SIG_LEN];
    uint8_t *tbs = stackbuf;
    size_t tcap, tlen;
    int rc;

    if (sk == NULL || out == NULL || out_len == NULL || (protected_map == NULL && protected_len) ||
        (aad == NULL && aad_len) || (payload == NULL && payload_len))
        return COSE_ERR_ARGS;
    if (unprotected_map == NULL || unprotected_len == 0) {
        unprotected_map = empty_map;
        unprotected_len = 1;
    }
    tcap = cose__tbs_size(protected_len, aad_len, payload_len);
    if (tcap > sizeof(stackbuf)) {
        tbs = malloc(tcap);
        if (tbs == NULL)
            return COSE_ERR_NOMEM;
    }
    rc = cose__tbs(tbs, tcap, protected_map, protected_len, aad, aad_len, payload, payload_len,
                   &tlen);
    if (rc == 0)
        crypto_ed25519_sign(sig, tbs, tlen, sk);
    if (tbs != stackbuf)
        free(tbs);
    if (rc != 0)
        return rc;

    struct cbor_writer w;
    cbor_writer_init(&w, out, cap);
    if (tagged)
        cbor_put_tag(&w, COSE_TAG_SIGN1);
    cbor_put_array(&w, 4);
    cbor_put_bstr(&w, protected_len ? (const void *)protected_map : empty, protected_len);
    cbor_put_raw(&w, unprotected_map, unprotected_len);
    cbor_put_bstr(&w, payload_len ? payload : empty, payload_len);
    cbor_put_bstr(&w, sig, sizeof(sig));
    return cbor_writer_finish(&w, out_len) == 0 ? 0 : COSE_ERR_SPACE;
}

int cose_envelope_sign(const char *kid, size_t kid_len, uint64_t seq, uint64_t time_ms,
                       const void *payload, size_t payload_len, const uint8_t sk[64], uint8_t *out,
                       size_t cap, size_t *out_len)
{
    uint8_t prot[COSE_KID_MAX + 48];
    struct cbor_writer w;
    size_t plen;

    if (kid == NULL || kid_len == 0 || kid_len > COSE_KID_MAX)
        return COSE_ERR_ARGS;
    /* Keys in deterministic order: 0x01, 0x04, 0x3a00010000, 0x3a00010001. */
    cbor_writer_init(&w, prot, sizeof(prot));
    cbor_put_map(&w, 4);
    cbor_put_uint(&w, COSE_HDR_ALG);
    cbor_put_int(&w, COSE_ALG_EDDSA);
    cbor_put_uint(&w, COSE_HDR_KID);
    cbor_put_bstr(&w, kid, kid_len);
    cbor_put_int(&w, COSE_HDR_DEVICE_SEQ);
    cbor_put_uint(&w, seq);
    cbor_put_int(&w, COSE_HDR_DEVICE_TIME);
    cbor_put_uint(&w, time_ms);
    if (cbor_writer_finish(&w, &plen) != 0)
        return COSE_ERR_ARGS;
    return cose_sign1_sign(prot, plen, NULL, 0, NULL, 0, payload, payload_len, sk, true, out, cap,
                           out_len);
}

int cose_envelope_decode(const uint8_t *buf, size_t len, struct cose_sign1 *m)
{
    int rc = cose_sign1_decode(buf, len, 0, m);
    if (rc != 0)
        return rc;
    if (!m->has_alg || m->alg != COSE_ALG_EDDSA)
        return COSE_ERR_ALG;
    if (m->kid == NULL || !m->kid_protected || m->kid_len == 0)
        return COSE_ERR_NO_KID;
    if (!m->has_seq)
        return COSE_ERR_NO_SEQ;
    if (!m->has_time)
        return COSE_ERR_NO_TIME;
    return 0;
}

int cose_envelope_verify(const uint8_t *buf, size_t len, const uint8_t pk[32], struct cose_sign1 *m)
{
    struct cose_sign1 local;
    if (m == NULL)
        m = &local;
    int rc = cose_envelope_decode(buf, len, m);
    if (rc != 0)
        return rc;
    return cose_sign1_verify_sig(m, NULL, 0, pk);
}
