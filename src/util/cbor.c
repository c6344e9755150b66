/* Deterministic CBOR (RFC 8949 §4.2.1) writer and reader. Every head is
 * decoded by one function (cbor__head) that rejects non-shortest
 * arguments, reserved and indefinite forms, so the typed getters and the
 * validator agree on what "deterministic" means. The validator recurses at
 * most CBOR_MAX_DEPTH levels. */
#include "util/cbor.h"
#include "util/utf8.h"

#include <string.h>


const char *cbor_strerror(int err)
{
    switch (err) {
    case CBOR_OK:
        return "ok";
    case CBOR_ERR_TRUNCATED:
        return "truncated CBOR item";
    case CBOR_ERR_TYPE:
        return "unexpected CBOR type";
    case CBOR_ERR_NONCANONICAL:
        return "non-shortest CBOR encoding";
    case CBOR_ERR_INDEFINITE:
        return "indefinite-length CBOR item";
    case CBOR_ERR_DEPTH:
        return "CBOR nesting too deep";
    case CBOR_ERR_TRAILING:
        return "trailing bytes after CBOR item";
    case CBOR_ERR_SPACE:
        return "CBOR output buffer too small";
    case CBOR_ERR_MALFORMED:
        return "malformed CBOR";
    case CBOR_ERR_UNSUPPORTED:
        return "unsupported CBOR item (float or simple value)";
    case CBOR_ERR_MAP_ORDER:
        return "CBOR map keys not in canonical order or duplicated";
    case CBOR_ERR_UTF8:
        return "CBOR text string is not valid UTF-8";
    case CBOR_ERR_RANGE:
        return "CBOR value out of range";
    default:
        return "unknown CBOR error";
    }
}

/* ---- writer ---- */

void cbor_writer_init(struct cbor_writer *w, uint8_t *buf, size_t cap)
{
    w->buf = buf;
    w->cap = cap;
    w->len = 0;
    w->err = 0;
}

static void cbor__put(struct cbor_writer *w, const void *p, size_t n)
{
    if (w->err)
        return;
    if (n > w->cap - w->len) {
        w->err = CBOR_ERR_SPACE;
        return;
    }
    if (n > 0)
        memcpy(w->buf + w->len, p, n);
    w->len += n;
}

static void cbor__put_head(struct cbor_writer *w, unsigned major, uint64_t v)
{
    uint8_t h[9];
    size_t n;
    uint8_t mt = (uint8_t)(major << 5);
    if (v < 24) {
        h[0] = (uint8_t)(mt | v);
        n = 1;
    } else if (v <= 0xff) {
        h[0] = mt | 24;
        h[1] = (uint8_t)v;
        n = 2;
    } else if (v <= 0xffff) {
        h[0] = mt | 25;
        h[1] = (uint8_t)(v >> 8);
        h[2] = (uint8_t)v;
        n = 3;
    } else if (v <= 0xffffffffu) {
        h[0] = mt | 26;
        for (int i = 0; i < 4; i++)
            h[1 + i] = (uint8_t)(v >> (24 - 8 * i));
        n = 5;
    } else {
        h[0] = mt | 27;
        for (int i = 0; i < 8; i++)
            h[1 + i] = (uint8_t)(v >> (56 - 8 * i));
        n = 9;
    }
    cbor__put(w, h, n);
}

void cbor_put_uint(struct cbor_writer *w, uint64_t v)
{
    cbor__put_head(w, CBOR_TYPE_UINT, v);
}
void cbor_put_negint(struct cbor_writer *w, uint64_t n)
{
    cbor__put_head(w, CBOR_TYPE_NEGINT, n);
}

void cbor_put_int(struct cbor_writer *w, int64_t v)
{
    if (v >= 0)
        cbor__put_head(w, CBOR_TYPE_UINT, (uint64_t)v);
    else
        cbor__put_head(w, CBOR_TYPE_NEGINT, (uint64_t)(-(v + 1)));
}

void cbor_put_bstr(struct cbor_writer *w, const void *p, size_t len)
{
    cbor__put_head(w, CBOR_TYPE_BSTR, len);
    cbor__put(w, p, len);
}

void cbor_put_tstr(struct cbor_writer *w, const char *p, size_t len)
{
    cbor__put_head(w, CBOR_TYPE_TSTR, len);
    cbor__put(w, p, len);
}

void cbor_put_cstr(struct cbor_writer *w, const char *s)
{
    cbor_put_tstr(w, s, strlen(s));
}
void cbor_put_array(struct cbor_writer *w, uint64_t n)
{
    cbor__put_head(w, CBOR_TYPE_ARRAY, n);
}
void cbor_put_map(struct cbor_writer *w, uint64_t n_pairs)
{
    cbor__put_head(w, CBOR_TYPE_MAP, n_pairs);
}
void cbor_put_tag(struct cbor_writer *w, uint64_t tag)
{
    cbor__put_head(w, CBOR_TYPE_TAG, tag);
}

void cbor_put_bool(struct cbor_writer *w, bool b)
{
    uint8_t v = b ? 0xf5 : 0xf4;
    cbor__put(w, &v, 1);
}

void cbor_put_null(struct cbor_writer *w)
{
    uint8_t v = 0xf6;
    cbor__put(w, &v, 1);
}

void cbor_put_raw(struct cbor_writer *w, const void *p, size_t len)
{
    cbor__put(w, p, len);
}

int cbor_writer_finish(const struct cbor_writer *w, size_t *len)
{
    if (len != NULL)
        *len = w->len;
    return w->err;
}

/* ---- reader ---- */

void cbor_reader_init(struct cbor_reader *r, const uint8_t *buf, size_t len)
{
    r->p = buf;
    r->end = buf == NULL ? buf : buf + len;
}

size_t cbor_reader_remaining(const struct cbor_reader *r)
{
    return (size_t)(r->end - r->p);
}

/* Decodes the head at p. For major type 7, *val is the simple value
 * (20..22 only; everything else is an error). */
static int cbor__head(const uint8_t *p, const uint8_t *end, unsigned *major, uint64_t *val,
                      size_t *hlen)
{
    if (p >= end)
        return CBOR_ERR_TRUNCATED;
    unsigned mt = p[0] >> 5, ai = p[0] & 31;
    size_t avail = (size_t)(end - p) - 1;
    uint64_t v;
    size_t extra;
    if (ai < 24) {
        v = ai;
        extra = 0;
    } else if (ai <= 27) {
        extra = (size_t)1 << (ai - 24);
        if (avail < extra)
            return CBOR_ERR_TRUNCATED;
        v = 0;
        for (size_t i = 0; i < extra; i++)
            v = v << 8 | p[1 + i];
    } else if (ai == 31) {
        return (mt >= 2 && mt <= 5) ? CBOR_ERR_INDEFINITE : CBOR_ERR_MALFORMED;
    } else {
        return CBOR_ERR_MALFORMED;
    }
    if (mt == 7) {
        if (ai == 24 && v < 32)
            return CBOR_ERR_MALFORMED; /* RFC 8949 §3.3 */
        if (ai != 20 && ai != 21 && ai != 22)
            return CBOR_ERR_UNSUPPORTED;
    } else if ((ai == 24 && v < 24) || (ai == 25 && v <= 0xff) || (ai == 26 && v <= 0xffff) ||
               (ai == 27 && v <= 0xffffffffu)) {
        return CBOR_ERR_NONCANONICAL;
    }
    *major = mt;
    *val = v;
    *hlen = 1 + extra;
    return 0;
}

int cbor_peek_type(const struct cbor_reader *r, enum cbor_type *t)
{
    unsigned mt;
    uint64_t v;
    size_t hl;
    int rc = cbor__head(r->p, r->end, &mt, &v, &hl);
    if (rc == 0)
        *t = (enum cbor_type)mt;
    return rc;
}

/* Reads a head of the wanted major type; for strings also checks the
 * payload is present. */
static int cbor__get(struct cbor_reader *r, unsigned want, uint64_t *val)
{
    unsigned mt;
    uint64_t v;
    size_t hl;
    int rc = cbor__head(r->p, r->end, &mt, &v, &hl);
    if (rc != 0)
        return rc;
    if (mt != want)
        return CBOR_ERR_TYPE;
    if ((mt == CBOR_TYPE_BSTR || mt == CBOR_TYPE_TSTR) && v > (uint64_t)(r->end - r->p) - hl)
        return CBOR_ERR_TRUNCATED;
    r->p += hl;
    *val = v;
    return 0;
}

int cbor_get_uint(struct cbor_reader *r, uint64_t *v)
{
    return cbor__get(r, CBOR_TYPE_UINT, v);
}
int cbor_get_negint(struct cbor_reader *r, uint64_t *n)
{
    return cbor__get(r, CBOR_TYPE_NEGINT, n);
}

int cbor_get_int(struct cbor_reader *r, int64_t *v)
{
    unsigned mt;
    uint64_t u;
    size_t hl;
    int rc = cbor__head(r->p, r->end, &mt, &u, &hl);
    if (rc != 0)
        return rc;
    if (mt != CBOR_TYPE_UINT && mt != CBOR_TYPE_NEGINT)
        return CBOR_ERR_TYPE;
    if (u > (uint64_t)INT64_MAX)
        return CBOR_ERR_RANGE;
    *v = mt == CBOR_TYPE_UINT ? (int64_t)u : -1 - (int64_t)u;
    r->p += hl;
    return 0;
}

int cbor_get_bstr(struct cbor_reader *r, const uint8_t **p, size_t *len)
{
    uint64_t n;
    int rc = cbor__get(r, CBOR_TYPE_BSTR, &n);
    if (rc != 0)
        return rc;
    *p = r->p;
    *len = (size_t)n;
    r->p += n;
    return 0;
}

int cbor_get_tstr(struct cbor_reader *r, const char **p, size_t *len)
{
    struct cbor_reader save = *r;
    uint64_t n;
    int rc = cbor__get(r, CBOR_TYPE_TSTR, &n);
    if (rc != 0)
        return rc;
    if (!lmq_utf8_valid(r->p, (size_t)n)) {
        *r = save;
        return CBOR_ERR_UTF8;
    }
    *p = (const char *)r->p;
    *len = (size_t)n;
    r->p += n;
    return 0;
}

int cbor_get_array(struct cbor_reader *r, uint64_t *n)
{
    return cbor__get(r, CBOR_TYPE_ARRAY, n);
}
int cbor_get_map(struct cbor_reader *r, uint64_t *n)
{
    return cbor__get(r, CBOR_TYPE_MAP, n);
}
int cbor_get_tag(struct cbor_reader *r, uint64_t *tag)
{
    return cbor__get(r, CBOR_TYPE_TAG, tag);
}

int cbor_get_bool(struct cbor_reader *r, bool *b)
{
    uint64_t v;
    struct cbor_reader save = *r;
    int rc = cbor__get(r, CBOR_TYPE_SIMPLE, &v);
    if (rc != 0)
        return rc;
    if (v != 20 && v != 21) {
        *r = save;
        return CBOR_ERR_TYPE;
    }
    *b = v == 21;
    return 0;
}

int cbor_get_null(struct cbor_reader *r)
{
    uint64_t v;
    struct cbor_reader save = *r;
    int rc = cbor__get(r, CBOR_TYPE_SIMPLE, &v);
    if (rc != 0)
        return rc;
    if (v != 22) {
        *r = save;
        return CBOR_ERR_TYPE;
    }
    return 0;
}

/* Validates one item at *pp, advancing *pp past it. */
static int cbor__validate(const uint8_t **pp, const uint8_t *end, unsigned depth)
{
    const uint8_t *p = *pp;
    unsigned mt;
    uint64_t v;
    size_t hl;
    int rc = cbor__head(p, end, &mt, &v, &hl);
    if (rc != 0)
        return rc;
    p += hl;
    size_t left = (size_t)(end - p);
    switch (mt) {
    case CBOR_TYPE_UINT:
    case CBOR_TYPE_NEGINT:
    case CBOR_TYPE_SIMPLE:
        break;
    case CBOR_TYPE_BSTR:
    case CBOR_TYPE_TSTR:
        if (v > left)
            return CBOR_ERR_TRUNCATED;
        if (mt == CBOR_TYPE_TSTR && !lmq_utf8_valid(p, (size_t)v))
            return CBOR_ERR_UTF8;
        p += v;
        break;
    case CBOR_TYPE_ARRAY:
        if (depth >= CBOR_MAX_DEPTH)
            return CBOR_ERR_DEPTH;
        if (v > left) /* every item takes at least one byte */
            return CBOR_ERR_TRUNCATED;
        for (uint64_t i = 0; i < v; i++) {
            rc = cbor__validate(&p, end, depth + 1);
            if (rc != 0)
                return rc;
        }
        break;
    case CBOR_TYPE_MAP: {
        if (depth >= CBOR_MAX_DEPTH)
            return CBOR_ERR_DEPTH;
        if (v > left / 2)
            return CBOR_ERR_TRUNCATED;
        const uint8_t *prev = NULL;
        size_t prev_len = 0;
        for (uint64_t i = 0; i < v; i++) {
            const uint8_t *key = p;
            rc = cbor__validate(&p, end, depth + 1);
            if (rc != 0)
                return rc;
            size_t key_len = (size_t)(p - key);
            if (prev != NULL) {
                size_t m = prev_len < key_len ? prev_len : key_len;
                int c = memcmp(prev, key, m);
                if (c > 0 || (c == 0 && prev_len >= key_len))
                    return CBOR_ERR_MAP_ORDER;
            }
            prev = key;
            prev_len = key_len;
            rc = cbor__validate(&p, end, depth + 1);
            if (rc != 0)
                return rc;
        }
        break;
    }
    case CBOR_TYPE_TAG:
        if (depth >= CBOR_MAX_DEPTH)
            return CBOR_ERR_DEPTH;
        rc = cbor__validate(&p, end, depth + 1);
        if (rc != 0)
            return rc;
        break;
    default:
        return CBOR_ERR_MALFORMED;
    }
    *pp = p;
    return 0;
}

int cbor_skip(struct cbor_reader *r, const uint8_t **item, size_t *item_len)
{
    const uint8_t *p = r->p;
    int rc = cbor__validate(&p, r->end, 0);
    if (rc != 0)
        return rc;
    if (item != NULL)
        *item = r->p;
    if (item_len != NULL)
        *item_len = (size_t)(p - r->p);
    r->p = p;
    return 0;
}

int cbor_reader_end(const struct cbor_reader *r)
{
    return r->p == r->end ? 0 : CBOR_ERR_TRAILING;
}

int cbor_validate_deterministic(const uint8_t *buf, size_t len)
{
    const uint8_t *p = buf;
    if (buf == NULL || len == 0)
        return CBOR_ERR_TRUNCATED;
    int rc = cbor__validate(&p, buf + len, 0);
    if (rc != 0)
        return rc;
    return p == buf + len ? 0 : CBOR_ERR_TRAILING;
}
