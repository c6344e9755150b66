/* Receipts: the JSON writer and strict parser, verification, and the
 * C2SP tlog-proof@v1 text form. The JSON parser knows exactly one object
 * shape (five members, each once, any order) and decodes strings with the
 * standard JSON escapes; anything else is RECEIPT_ERR_MALFORMED. Format:
 * docs/FORMATS.md "Receipts" and "tlog-proof". */
#include "ledger/receipt.h"
#include "util/utf8.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "crypto/hash.h"

#define TLOG_PROOF_HEADER "c2sp.org/tlog-proof@v1\n"

/* ---- writer ---- */

struct rc__out {
    char *buf;
    size_t cap, len;
    int err;
};

static void rc__put(struct rc__out *o, const char *s, size_t n)
{
    if (o->err)
        return;
    if (n + 1 > o->cap - o->len) {
        o->err = RECEIPT_ERR_SPACE;
        return;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

static void rc__puts(struct rc__out *o, const char *s)
{
    rc__put(o, s, strlen(s));
}

static void rc__put_b64(struct rc__out *o, const uint8_t *p, size_t n)
{
    if (o->err)
        return;
    ssize_t w = crypto_b64_encode(p, n, o->buf + o->len, o->cap - o->len);
    if (w < 0)
        o->err = RECEIPT_ERR_SPACE;
    else
        o->len += (size_t)w;
}

static void rc__put_json_string(struct rc__out *o, const char *s, size_t n)
{
    rc__put(o, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '"')
            rc__put(o, "\\\"", 2);
        else if (c == '\\')
            rc__put(o, "\\\\", 2);
        else if (c == '\n')
            rc__put(o, "\\n", 2);
        else if (c == '\r')
            rc__put(o, "\\r", 2);
        else if (c == '\t')
            rc__put(o, "\\t", 2);
        else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            rc__put(o, esc, 6);
        } else
            rc__put(o, (const char *)&s[i], 1);
    }
    rc__put(o, "\"", 1);
}

ssize_t receipt_write(const struct receipt *r, char *out, size_t cap)
{
    struct rc__out o = {out, cap, 0, 0};
    char num[32];
    if (r->n_proof > MERKLE_MAX_PROOF || (r->record == NULL && r->record_len > 0) ||
        r->checkpoint == NULL)
        return RECEIPT_ERR_ARGS;
    if (cap == 0)
        return RECEIPT_ERR_SPACE;
    out[0] = '\0';
    snprintf(num, sizeof num, "%" PRIu64, r->index);
    rc__puts(&o, "{\"index\": ");
    rc__puts(&o, num);
    snprintf(num, sizeof num, "%" PRIu64, r->tree_size);
    rc__puts(&o, ", \"tree_size\": ");
    rc__puts(&o, num);
    rc__puts(&o, ", \"record\": \"");
    rc__put_b64(&o, r->record, r->record_len);
    rc__puts(&o, "\", \"proof\": [");
    for (size_t i = 0; i < r->n_proof; i++) {
        if (i > 0)
            rc__puts(&o, ", ");
        rc__puts(&o, "\"");
        rc__put_b64(&o, r->proof[i], 32);
        rc__puts(&o, "\"");
    }
    rc__puts(&o, "], \"checkpoint\": ");
    rc__put_json_string(&o, r->checkpoint, r->checkpoint_len);
    rc__puts(&o, "}");
    return o.err ? o.err : (ssize_t)o.len;
}

ssize_t receipt_write_tlog_proof(const struct receipt *r, const uint8_t *extra, size_t extra_len,
                                 char *out, size_t cap)
{
    struct rc__out o = {out, cap, 0, 0};
    char num[32];
    if (r->n_proof > MERKLE_MAX_PROOF || r->checkpoint == NULL)
        return RECEIPT_ERR_ARGS;
    if (cap == 0)
        return RECEIPT_ERR_SPACE;
    out[0] = '\0';
    rc__puts(&o, TLOG_PROOF_HEADER);
    if (extra != NULL) {
        rc__puts(&o, "extra ");
        rc__put_b64(&o, extra, extra_len);
        rc__puts(&o, "\n");
    }
    snprintf(num, sizeof num, "index %" PRIu64 "\n", r->index);
    rc__puts(&o, num);
    for (size_t i = 0; i < r->n_proof; i++) {
        rc__put_b64(&o, r->proof[i], 32);
        rc__puts(&o, "\n");
    }
    rc__puts(&o, "\n");
    rc__put(&o, r->checkpoint, r->checkpoint_len);
    return o.err ? o.err : (ssize_t)o.len;
}

/* ---- JSON parser ---- */

struct rc__in {
    const char *p, *end;
};

static void rc__ws(struct rc__in *in)
{
    while (in->p < in->end && (*in->p == ' ' || *in->p == '\t' || *in->p == '\n' || *in->p == '\r'))
        in->p++;
}

static int rc__lit(struct rc__in *in, char c)
{
    rc__ws(in);
    if (in->p < in->end && *in->p == c) {
        in->p++;
        return 1;
    }
    return 0;
}

static int rc__hex4(const char *s, uint32_t *v)
{
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else
            return -1;
        *v = *v << 4 | d;
    }
    return 0;
}

/* Decodes a JSON string at in->p into out[0:cap] (may be NULL to only
 * validate and measure). Returns the decoded length or -1. */
static ssize_t rc__string(struct rc__in *in, char *out, size_t cap)
{
    size_t n = 0;
    rc__ws(in);
    if (in->p >= in->end || *in->p != '"')
        return -1;
    in->p++;
    for (;;) {
        if (in->p >= in->end)
            return -1;
        unsigned char c = (unsigned char)*in->p++;
        char buf[4];
        size_t bl;
        if (c == '"')
            break;
        if (c < 0x20)
            return -1;
        if (c != '\\') {
            buf[0] = (char)c;
            bl = 1;
        } else {
            if (in->p >= in->end)
                return -1;
            char e = *in->p++;
            switch (e) {
            case '"':
                buf[0] = '"';
                bl = 1;
                break;
            case '\\':
                buf[0] = '\\';
                bl = 1;
                break;
            case '/':
                buf[0] = '/';
                bl = 1;
                break;
            case 'b':
                buf[0] = '\b';
                bl = 1;
                break;
            case 'f':
                buf[0] = '\f';
                bl = 1;
                break;
            case 'n':
                buf[0] = '\n';
                bl = 1;
                break;
            case 'r':
                buf[0] = '\r';
                bl = 1;
                break;
            case 't':
                buf[0] = '\t';
                bl = 1;
                break;
            case 'u': {
                uint32_t cp, lo;
                if (in->end - in->p < 4 || rc__hex4(in->p, &cp) != 0)
                    return -1;
                in->p += 4;
                if (cp >= 0xdc00 && cp <= 0xdfff)
                    return -1;
                if (cp >= 0xd800 && cp <= 0xdbff) {
                    if (in->end - in->p < 6 || in->p[0] != '\\' || in->p[1] != 'u' ||
                        rc__hex4(in->p + 2, &lo) != 0 || lo < 0xdc00 || lo > 0xdfff)
                        return -1;
                    in->p += 6;
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                }
                if (cp < 0x80) {
                    buf[0] = (char)cp;
                    bl = 1;
                } else if (cp < 0x800) {
                    buf[0] = (char)(0xc0 | cp >> 6);
                    buf[1] = (char)(0x80 | (cp & 0x3f));
                    bl = 2;
                } else if (cp < 0x10000) {
                    buf[0] = (char)(0xe0 | cp >> 12);
                    buf[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
                    buf[2] = (char)(0x80 | (cp & 0x3f));
                    bl = 3;
                } else {
                    buf[0] = (char)(0xf0 | cp >> 18);
                    buf[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
                    buf[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
                    buf[3] = (char)(0x80 | (cp & 0x3f));
                    bl = 4;
                }
                break;
            }
            default:
                return -1;
            }
        }
        if (out != NULL) {
            if (bl > cap - n)
                return -1;
            memcpy(out + n, buf, bl);
        }
        n += bl;
    }
    return (ssize_t)n;
}

/* A JSON number that is a non-negative integer without leading zeros. */
static int rc__uint(struct rc__in *in, uint64_t *v)
{
    rc__ws(in);
    const char *s = in->p;
    uint64_t x = 0;
    while (in->p < in->end && *in->p >= '0' && *in->p <= '9') {
        unsigned d = (unsigned)(*in->p - '0');
        if (x > (UINT64_MAX - d) / 10)
            return -1;
        x = x * 10 + d;
        in->p++;
    }
    size_t n = (size_t)(in->p - s);
    if (n == 0 || (n > 1 && s[0] == '0'))
        return -1;
    if (in->p < in->end && (*in->p == '.' || *in->p == 'e' || *in->p == 'E'))
        return -1;
    *v = x;
    return 0;
}

/* A string holding canonical base64, decoded into out[0:cap]. */
static ssize_t rc__b64_string(struct rc__in *in, uint8_t *out, size_t cap)
{
    rc__ws(in);
    if (in->p >= in->end || *in->p != '"')
        return -1;
    const char *s = in->p + 1;
    const char *q = memchr(s, '"', (size_t)(in->end - s));
    if (q == NULL)
        return -1;
    ssize_t n = crypto_b64_decode(s, (size_t)(q - s), out, cap);
    if (n < 0)
        return -1;
    in->p = q + 1;
    return n;
}

int receipt_parse(const char *json, size_t len, uint8_t *scratch, size_t scratch_cap,
                  struct receipt *r)
{
    struct rc__in in = {json, json + len};
    enum { F_INDEX = 1, F_SIZE = 2, F_RECORD = 4, F_PROOF = 8, F_CP = 16 };
    unsigned seen = 0;
    size_t used = 0;
    memset(r, 0, sizeof *r);
    if (json == NULL || len > RECEIPT_MAX_JSON || !lmq_utf8_valid(json, len))
        return RECEIPT_ERR_MALFORMED;
    if (!rc__lit(&in, '{'))
        return RECEIPT_ERR_MALFORMED;
    for (int i = 0; i < 5; i++) {
        char key[16];
        if (i > 0 && !rc__lit(&in, ','))
            return RECEIPT_ERR_MALFORMED;
        ssize_t kl = rc__string(&in, key, sizeof key - 1);
        if (kl < 0 || !rc__lit(&in, ':'))
            return RECEIPT_ERR_MALFORMED;
        key[kl] = '\0';
        unsigned f;
        if (strcmp(key, "index") == 0)
            f = F_INDEX;
        else if (strcmp(key, "tree_size") == 0)
            f = F_SIZE;
        else if (strcmp(key, "record") == 0)
            f = F_RECORD;
        else if (strcmp(key, "proof") == 0)
            f = F_PROOF;
        else if (strcmp(key, "checkpoint") == 0)
            f = F_CP;
        else
            return RECEIPT_ERR_MALFORMED;
        if (seen & f)
            return RECEIPT_ERR_MALFORMED;
        seen |= f;
        if (f == F_INDEX || f == F_SIZE) {
            if (rc__uint(&in, f == F_INDEX ? &r->index : &r->tree_size) != 0)
                return RECEIPT_ERR_MALFORMED;
        } else if (f == F_RECORD) {
            ssize_t n = rc__b64_string(&in, scratch + used, scratch_cap - used);
            if (n < 0)
                return RECEIPT_ERR_MALFORMED;
            r->record = scratch + used;
            r->record_len = (size_t)n;
            used += (size_t)n;
        } else if (f == F_PROOF) {
            if (!rc__lit(&in, '['))
                return RECEIPT_ERR_MALFORMED;
            if (!rc__lit(&in, ']')) {
                do {
                    if (r->n_proof == MERKLE_MAX_PROOF)
                        return RECEIPT_ERR_MALFORMED;
                    if (rc__b64_string(&in, r->proof[r->n_proof], 32) != 32)
                        return RECEIPT_ERR_MALFORMED;
                    r->n_proof++;
                } while (rc__lit(&in, ','));
                if (!rc__lit(&in, ']'))
                    return RECEIPT_ERR_MALFORMED;
            }
        } else {
            ssize_t n = rc__string(&in, (char *)scratch + used, scratch_cap - used);
            if (n < 0)
                return RECEIPT_ERR_MALFORMED;
            r->checkpoint = (const char *)scratch + used;
            r->checkpoint_len = (size_t)n;
            used += (size_t)n;
        }
    }
    if (!rc__lit(&in, '}'))
        return RECEIPT_ERR_MALFORMED;
    rc__ws(&in);
    if (in.p != in.end)
        return RECEIPT_ERR_MALFORMED;
    return 0;
}

int receipt_verify(const struct receipt *r, const struct note_verifier *verifiers,
                   size_t n_verifiers, size_t quorum, const char *origin, struct checkpoint *cp_out)
{
    struct checkpoint cp;
    if (r == NULL || r->checkpoint == NULL || (r->record == NULL && r->record_len > 0))
        return RECEIPT_ERR_ARGS;
    int rc = checkpoint_verify(r->checkpoint, r->checkpoint_len, verifiers, n_verifiers, quorum,
                               origin, NULL, &cp);
    if (rc != 0)
        return rc;
    if (cp_out != NULL)
        *cp_out = cp;
    if (cp.size != r->tree_size)
        return RECEIPT_ERR_SIZE;
    if (r->index >= r->tree_size)
        return RECEIPT_ERR_PROOF;
    uint8_t leaf[32];
    merkle_leaf_hash(r->record, r->record_len, leaf);
    if (merkle_verify_inclusion(r->index, r->tree_size, leaf, r->proof, r->n_proof, cp.root) != 0)
        return RECEIPT_ERR_PROOF;
    return 0;
}

int receipt_parse_tlog_proof(const char *text, size_t len, struct receipt *r,
                             const char **extra_b64, size_t *extra_b64_len)
{
    const char *p = text, *end = text + len, *eol;
    struct checkpoint cp;
    const char *body;
    size_t body_len;
    memset(r, 0, sizeof *r);
    if (extra_b64 != NULL)
        *extra_b64 = NULL;
    if (extra_b64_len != NULL)
        *extra_b64_len = 0;
    size_t hl = strlen(TLOG_PROOF_HEADER);
    if (text == NULL || len < hl || memcmp(p, TLOG_PROOF_HEADER, hl) != 0)
        return RECEIPT_ERR_MALFORMED;
    p += hl;
    if ((eol = memchr(p, '\n', (size_t)(end - p))) == NULL)
        return RECEIPT_ERR_MALFORMED;
    if (eol - p >= 6 && memcmp(p, "extra ", 6) == 0) {
        uint8_t tmp[3];
        size_t el = (size_t)(eol - p) - 6;
        /* validate the base64 without storing it: decode 4 chars at a time */
        if (el % 4 != 0)
            return RECEIPT_ERR_MALFORMED;
        for (size_t i = 0; i < el; i += 4)
            if (crypto_b64_decode(p + 6 + i, 4, tmp, sizeof tmp) < 0 ||
                (i + 4 < el && p[6 + i + 3] == '='))
                return RECEIPT_ERR_MALFORMED;
        if (extra_b64 != NULL)
            *extra_b64 = p + 6;
        if (extra_b64_len != NULL)
            *extra_b64_len = el;
        p = eol + 1;
        if ((eol = memchr(p, '\n', (size_t)(end - p))) == NULL)
            return RECEIPT_ERR_MALFORMED;
    }
    if (eol - p < 7 || memcmp(p, "index ", 6) != 0)
        return RECEIPT_ERR_MALFORMED;
    struct rc__in in = {p + 6, eol};
    if (p[6] == ' ' || rc__uint(&in, &r->index) != 0 || in.p != eol)
        return RECEIPT_ERR_MALFORMED;
    p = eol + 1;
    for (;;) {
        if ((eol = memchr(p, '\n', (size_t)(end - p))) == NULL)
            return RECEIPT_ERR_MALFORMED;
        if (eol == p)
            break;
        if (r->n_proof == MERKLE_MAX_PROOF ||
            crypto_b64_decode(p, (size_t)(eol - p), r->proof[r->n_proof], 32) != 32)
            return RECEIPT_ERR_MALFORMED;
        r->n_proof++;
        p = eol + 1;
    }
    p = eol + 1;
    r->checkpoint = p;
    r->checkpoint_len = (size_t)(end - p);
    if (note_split(p, r->checkpoint_len, &body, &body_len, NULL) != 0 ||
        checkpoint_parse(body, body_len, &cp) != 0)
        return RECEIPT_ERR_MALFORMED;
    r->tree_size = cp.size;
    return 0;
}
