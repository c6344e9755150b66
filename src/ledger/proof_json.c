/* Consistency proof JSON (see proof_json.h): a writer and a strict parser
 * that knows exactly one object shape. */
#include "ledger/proof_json.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "crypto/hash.h"

ssize_t proof_json_write_consistency(uint64_t old_size, uint64_t new_size,
                                     const uint8_t proof[][32], size_t n, char *out, size_t cap)
{
    int w =
        snprintf(out, cap, "{\"old_size\": %" PRIu64 ", \"new_size\": %" PRIu64 ", \"proof\": [",
                 old_size, new_size);
    if (w < 0 || (size_t)w >= cap)
        return PROOF_JSON_ERR_SPACE;
    size_t len = (size_t)w;
    for (size_t i = 0; i < n; i++) {
        if (cap - len < 44 + 5)
            return PROOF_JSON_ERR_SPACE;
        if (i) {
            out[len++] = ',';
            out[len++] = ' ';
        }
        out[len++] = '"';
        ssize_t b = crypto_b64_encode(proof[i], 32, out + len, cap - len);
        if (b < 0)
            return PROOF_JSON_ERR_SPACE;
        len += (size_t)b;
        out[len++] = '"';
    }
    if (cap - len < 3)
        return PROOF_JSON_ERR_SPACE;
    out[len++] = ']';
    out[len++] = '}';
    out[len] = '\0';
    return (ssize_t)len;
}

struct pj__in {
    const char *p, *end;
};

static void pj__ws(struct pj__in *in)
{
    while (in->p < in->end && (*in->p == ' ' || *in->p == '\t' || *in->p == '\n' || *in->p == '\r'))
        in->p++;
}

static bool pj__lit(struct pj__in *in, char c)
{
    pj__ws(in);
    if (in->p < in->end && *in->p == c) {
        in->p++;
        return true;
    }
    return false;
}

/* A string without escapes (member names and base64 never need them). */
static bool pj__str(struct pj__in *in, const char **s, size_t *n)
{
    if (!pj__lit(in, '"'))
        return false;
    const char *start = in->p;
    while (in->p < in->end && *in->p != '"') {
        if (*in->p == '\\' || (unsigned char)*in->p < 0x20)
            return false;
        in->p++;
    }
    if (in->p >= in->end)
        return false;
    *s = start;
    *n = (size_t)(in->p - start);
    in->p++;
    return true;
}

static bool pj__uint(struct pj__in *in, uint64_t *v)
{
    pj__ws(in);
    const char *s = in->p;
    uint64_t x = 0;
    while (in->p < in->end && *in->p >= '0' && *in->p <= '9') {
        unsigned d = (unsigned)(*in->p - '0');
        if (x > (UINT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
        in->p++;
    }
    size_t n = (size_t)(in->p - s);
    if (n == 0 || (n > 1 && *s == '0'))
        return false;
    *v = x;
    return true;
}

int proof_json_parse_consistency(const char *json, size_t len, uint64_t *old_size,
                                 uint64_t *new_size, uint8_t proof[][32], size_t *n)
{
    struct pj__in in = {json, json + len};
    bool have_old = false, have_new = false, have_proof = false;
    if (!pj__lit(&in, '{'))
        return PROOF_JSON_ERR_MALFORMED;
    for (;;) {
        const char *k;
        size_t kl;
        if (!pj__str(&in, &k, &kl) || !pj__lit(&in, ':'))
            return PROOF_JSON_ERR_MALFORMED;
        if (kl == 8 && memcmp(k, "old_size", 8) == 0 && !have_old) {
            if (!pj__uint(&in, old_size))
                return PROOF_JSON_ERR_MALFORMED;
            have_old = true;
        } else if (kl == 8 && memcmp(k, "new_size", 8) == 0 && !have_new) {
            if (!pj__uint(&in, new_size))
                return PROOF_JSON_ERR_MALFORMED;
            have_new = true;
        } else if (kl == 5 && memcmp(k, "proof", 5) == 0 && !have_proof) {
            if (!pj__lit(&in, '['))
                return PROOF_JSON_ERR_MALFORMED;
            *n = 0;
            if (!pj__lit(&in, ']')) {
                do {
                    const char *b;
                    size_t bl;
                    if (*n == MERKLE_MAX_PROOF || !pj__str(&in, &b, &bl) || bl != 44 ||
                        crypto_b64_decode(b, bl, proof[*n], 32) != 32)
                        return PROOF_JSON_ERR_MALFORMED;
                    (*n)++;
                } while (pj__lit(&in, ','));
                if (!pj__lit(&in, ']'))
                    return PROOF_JSON_ERR_MALFORMED;
            }
            have_proof = true;
        } else {
            return PROOF_JSON_ERR_MALFORMED;
        }
        if (pj__lit(&in, '}'))
            break;
        if (!pj__lit(&in, ','))
            return PROOF_JSON_ERR_MALFORMED;
    }
    pj__ws(&in);
    if (in.p != in.end || !have_old || !have_new || !have_proof)
        return PROOF_JSON_ERR_MALFORMED;
    return 0;
}
