/* A small deterministic-CBOR (RFC 8949 §4.2.1) writer and reader. The
 * writer emits shortest-form heads and definite lengths only; the caller
 * writes map entries in key order (for small unsigned keys, ascending
 * numeric order is the bytewise order of their encodings). The reader is a
 * cursor with typed getters that reject anything that is not
 * deterministic, each defect with its own error code. No allocation, every
 * read bounds-checked; strings are returned as views into the input.
 * Supported: uint, negint, bstr, tstr, array, map, tag, false/true/null.
 * Floats, undefined and other simple values are CBOR_ERR_UNSUPPORTED. */
#ifndef LMQ_UTIL_CBOR_H
#define LMQ_UTIL_CBOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CBOR_MAX_DEPTH 16 /* nesting of arrays, maps and tags */

enum cbor_err {
    CBOR_OK = 0,
    CBOR_ERR_TRUNCATED = -1,    /* item runs past the end of the input */
    CBOR_ERR_TYPE = -2,         /* item has a different major type / simple value */
    CBOR_ERR_NONCANONICAL = -3, /* argument not in shortest form */
    CBOR_ERR_INDEFINITE = -4,   /* indefinite length (additional info 31) */
    CBOR_ERR_DEPTH = -5,        /* nesting deeper than CBOR_MAX_DEPTH */
    CBOR_ERR_TRAILING = -6,     /* bytes after the top-level item */
    CBOR_ERR_SPACE = -7,        /* writer: output buffer too small */
    CBOR_ERR_MALFORMED = -8,    /* reserved additional info 28..30 */
    CBOR_ERR_UNSUPPORTED = -9,  /* floats, undefined, other simple values */
    CBOR_ERR_MAP_ORDER = -10,   /* map keys not strictly ascending bytewise (or duplicate) */
    CBOR_ERR_UTF8 = -11,        /* text string is not valid UTF-8 */
    CBOR_ERR_RANGE = -12,       /* value does not fit the requested C type */
};

enum cbor_type {
    CBOR_TYPE_UINT = 0,
    CBOR_TYPE_NEGINT = 1,
    CBOR_TYPE_BSTR = 2,
    CBOR_TYPE_TSTR = 3,
    CBOR_TYPE_ARRAY = 4,
    CBOR_TYPE_MAP = 5,
    CBOR_TYPE_TAG = 6,
    CBOR_TYPE_SIMPLE = 7,
};

const char *cbor_strerror(int err);

/* ---- writer: errors are sticky; check once with cbor_writer_finish. ---- */
struct cbor_writer {
    uint8_t *buf;
    size_t cap;
    size_t len;
    int err;
};
void cbor_writer_init(struct cbor_writer *w, uint8_t *buf, size_t cap);
void cbor_put_uint(struct cbor_writer *w, uint64_t v);
void cbor_put_negint(struct cbor_writer *w, uint64_t n); /* encodes -1 - n */
void cbor_put_int(struct cbor_writer *w, int64_t v);
void cbor_put_bstr(struct cbor_writer *w, const void *p, size_t len);
void cbor_put_tstr(struct cbor_writer *w, const char *p, size_t len); /* caller ensures UTF-8 */
void cbor_put_cstr(struct cbor_writer *w, const char *s);
void cbor_put_array(struct cbor_writer *w, uint64_t n);
void cbor_put_map(struct cbor_writer *w, uint64_t n_pairs);
void cbor_put_tag(struct cbor_writer *w, uint64_t tag);
void cbor_put_bool(struct cbor_writer *w, bool b);
void cbor_put_null(struct cbor_writer *w);
/* Appends already-encoded CBOR bytes verbatim (caller vouches for them). */
void cbor_put_raw(struct cbor_writer *w, const void *p, size_t len);
/* Returns w->err (0 or CBOR_ERR_SPACE) and the length written. */
int cbor_writer_finish(const struct cbor_writer *w, size_t *len);

/* ---- reader: a cursor; on error the cursor does not advance. ---- */
struct cbor_reader {
    const uint8_t *p;
    const uint8_t *end;
};
void cbor_reader_init(struct cbor_reader *r, const uint8_t *buf, size_t len);
size_t cbor_reader_remaining(const struct cbor_reader *r);
/* Type of the next item without consuming it. */
int cbor_peek_type(const struct cbor_reader *r, enum cbor_type *t);
int cbor_get_uint(struct cbor_reader *r, uint64_t *v);
int cbor_get_negint(struct cbor_reader *r, uint64_t *n); /* value is -1 - n */
int cbor_get_int(struct cbor_reader *r, int64_t *v);     /* uint or negint fitting int64 */
int cbor_get_bstr(struct cbor_reader *r, const uint8_t **p, size_t *len);
int cbor_get_tstr(struct cbor_reader *r, const char **p, size_t *len); /* validates UTF-8 */
int cbor_get_array(struct cbor_reader *r, uint64_t *n);
int cbor_get_map(struct cbor_reader *r, uint64_t *n_pairs);
int cbor_get_tag(struct cbor_reader *r, uint64_t *tag);
int cbor_get_bool(struct cbor_reader *r, bool *b);
int cbor_get_null(struct cbor_reader *r);
/* Consumes one whole item (nested items included), validating that it is
 * deterministic exactly like cbor_validate_deterministic; optionally
 * returns a view of its bytes. */
int cbor_skip(struct cbor_reader *r, const uint8_t **item, size_t *item_len);
/* CBOR_ERR_TRAILING if bytes remain, else 0. */
int cbor_reader_end(const struct cbor_reader *r);

/* 0 if buf[0:len] is exactly one well-formed deterministic item: shortest
 * heads, definite lengths, map keys strictly ascending by their encoded
 * bytes, valid UTF-8 text, depth <= CBOR_MAX_DEPTH, supported simple
 * values only, no trailing bytes. */
int cbor_validate_deterministic(const uint8_t *buf, size_t len);

#endif
