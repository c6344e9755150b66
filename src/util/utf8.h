/* Strict UTF-8 (no overlong forms, no surrogates, <= U+10FFFF). */
#ifndef LMQ_UTIL_UTF8_H
#define LMQ_UTIL_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Decodes one code point at p[0:len] into *cp and returns its length in
 * bytes, or -1 if the sequence is invalid or truncated. */
int lmq_utf8_next(const uint8_t *p, size_t len, uint32_t *cp);
/* 1 if p[0:len] is entirely valid UTF-8, else 0. */
int lmq_utf8_valid(const void *p, size_t len);

#endif
