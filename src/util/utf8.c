/* Strict UTF-8 validation (RFC 3629): no overlong forms, no surrogates,
 * nothing above U+10FFFF. Shared by the CBOR codec, signed notes and
 * checkpoints. */
#include "util/utf8.h"

int lmq_utf8_next(const uint8_t *p, size_t len, uint32_t *cp)
{
    if (len == 0)
        return -1;
    uint8_t b = p[0];
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    int n;
    uint32_t c, min;
    if ((b & 0xe0) == 0xc0) {
        n = 2;
        c = b & 0x1f;
        min = 0x80;
    } else if ((b & 0xf0) == 0xe0) {
        n = 3;
        c = b & 0x0f;
        min = 0x800;
    } else if ((b & 0xf8) == 0xf0) {
        n = 4;
        c = b & 0x07;
        min = 0x10000;
    } else {
        return -1;
    }
    if (len < (size_t)n)
        return -1;
    for (int i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return -1;
        c = (c << 6) | (p[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return -1;
    *cp = c;
    return n;
}

int lmq_utf8_valid(const void *data, size_t len)
{
    const uint8_t *p = data;
    size_t i = 0;
    while (i < len) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        int n = lmq_utf8_next(p + i, len - i, &cp);
        if (n < 0)
            return 0;
        i += (size_t)n;
    }
    return 1;
}
