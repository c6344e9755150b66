/* Internals shared by the SDK sources: a minimal CBOR writer (counts when
 * buf is NULL) and reader, strict base64 and SHA-256 helpers. Names carry
 * the lmqsdk__ prefix so that the sources can be compiled into one
 * translation unit (the unit test does) next to the broker's headers. */
#ifndef LEDGERMQ_SDK_INT_H
#define LEDGERMQ_SDK_INT_H

#include <stddef.h>
#include <stdint.h>

#include "../include/ledgermq_sdk.h"

struct lmqsdk__w {
    uint8_t *buf; /* NULL: only count */
    size_t cap;
    size_t len;
    int err;
};
void lmqsdk__w_init(struct lmqsdk__w *w, uint8_t *buf, size_t cap);
void lmqsdk__head(struct lmqsdk__w *w, unsigned major, uint64_t v);
void lmqsdk__int(struct lmqsdk__w *w, int64_t v);
void lmqsdk__raw(struct lmqsdk__w *w, const void *p, size_t n);
void lmqsdk__bstr(struct lmqsdk__w *w, const void *p, size_t n);
void lmqsdk__tstr(struct lmqsdk__w *w, const char *p, size_t n);
size_t lmqsdk__head_len(uint64_t v);

/* Reads one head at *p (definite lengths only). 0 or -1. */
int lmqsdk__rhead(const uint8_t **p, const uint8_t *end, unsigned *major, uint64_t *v);
/* Skips one item, nested to at most depth levels. 0 or -1. */
int lmqsdk__skip(const uint8_t **p, const uint8_t *end, unsigned depth);

/* Strict RFC 4648 base64 (padded). Decoding may be done in place
 * (out == in). Returns bytes written or -1. */
long lmqsdk__b64_decode(const char *in, size_t len, uint8_t *out, size_t cap);

void lmqsdk__sha256_2(const void *a, size_t alen, const void *b, size_t blen, uint8_t out[32]);

#endif
