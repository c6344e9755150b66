/* C2SP tlog-checkpoint bodies and their signed-note wrapping. The parser
 * accepts exactly one spelling of each value (decimal without leading
 * zeros, canonical base64 of 32 bytes, lowercase hex in the block line),
 * so a body and its parse are in one-to-one correspondence. Format:
 * docs/FORMATS.md "Checkpoints". */
#include "ledger/checkpoint.h"
#include "util/utf8.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "crypto/hash.h"

#define CP__BLOCK_PREFIX "block "
#define CP__BLOCK_PREFIX_LEN 6

/* Parses a decimal uint64 without sign or leading zeros. */
static int cp__parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 20 || (len > 1 && s[0] == '0'))
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int cp__line_chars_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20)
            return 0;
    return lmq_utf8_valid(s, len);
}

/* "block <height> <64 lowercase hex>" without the newline. */
static int cp__parse_block(const char *s, size_t len, uint64_t *height, uint8_t hash[32])
{
    if (len < CP__BLOCK_PREFIX_LEN || memcmp(s, CP__BLOCK_PREFIX, CP__BLOCK_PREFIX_LEN) != 0)
        return -1;
    s += CP__BLOCK_PREFIX_LEN;
    len -= CP__BLOCK_PREFIX_LEN;
    const char *sp = memchr(s, ' ', len);
    if (sp == NULL)
        return -1;
    size_t hl = (size_t)(sp - s);
    if (cp__parse_u64(s, hl, height) != 0)
        return -1;
    const char *hex = sp + 1;
    if (len - hl - 1 != 64)
        return -1;
    for (int i = 0; i < 64; i++)
        if (!((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f')))
            return -1;
    return crypto_hex_decode(hex, 64, hash, 32) == 32 ? 0 : -1;
}

/* Validates extension lines: each non-empty, '\n'-terminated, no control
 * characters; none is a block line. */
static int cp__ext_ok(const char *ext, size_t len)
{
    const char *p = ext, *end = ext + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL || eol == p || !cp__line_chars_ok(p, (size_t)(eol - p)))
            return 0;
        if ((size_t)(eol - p) >= CP__BLOCK_PREFIX_LEN &&
            memcmp(p, CP__BLOCK_PREFIX, CP__BLOCK_PREFIX_LEN) == 0)
            return 0;
        p = eol + 1;
    }
    return 1;
}

ssize_t checkpoint_format(const struct checkpoint *cp, char *out, size_t cap)
{
    if (cp == NULL || cp->origin == NULL || !note_name_valid(cp->origin, cp->origin_len) ||
        (cp->ext_len > 0 && (cp->ext == NULL || !cp__ext_ok(cp->ext, cp->ext_len))))
        return CHECKPOINT_ERR_ARGS;
    char root64[45], hex[65];
    crypto_b64_encode(cp->root, 32, root64, sizeof root64);
    int n = snprintf(out, cap, "%.*s\n%" PRIu64 "\n%s\n", (int)cp->origin_len, cp->origin, cp->size,
                     root64);
    if (n < 0 || (size_t)n >= cap)
        return CHECKPOINT_ERR_SPACE;
    size_t o = (size_t)n;
    if (cp->has_block) {
        crypto_hex_encode(cp->block_hash, 32, hex, sizeof hex);
        n = snprintf(out + o, cap - o, CP__BLOCK_PREFIX "%" PRIu64 " %s\n", cp->block_height, hex);
        if (n < 0 || (size_t)n >= cap - o)
            return CHECKPOINT_ERR_SPACE;
        o += (size_t)n;
    }
    if (cp->ext_len > 0) {
        if (cp->ext_len + 1 > cap - o)
            return CHECKPOINT_ERR_SPACE;
        memcpy(out + o, cp->ext, cp->ext_len);
        o += cp->ext_len;
        out[o] = '\0';
    }
    return (ssize_t)o;
}

int checkpoint_parse(const char *body, size_t len, struct checkpoint *cp)
{
    const char *p = body, *end = body + len, *eol;
    memset(cp, 0, sizeof *cp);
    if (body == NULL || len == 0 || len > CHECKPOINT_MAX_BODY || body[len - 1] != '\n')
        return CHECKPOINT_ERR_MALFORMED;
    /* origin */
    eol = memchr(p, '\n', (size_t)(end - p));
    if (eol == p || !cp__line_chars_ok(p, (size_t)(eol - p)))
        return CHECKPOINT_ERR_MALFORMED;
    cp->origin = p;
    cp->origin_len = (size_t)(eol - p);
    p = eol + 1;
    /* size */
    if (p == end || (eol = memchr(p, '\n', (size_t)(end - p))) == NULL ||
        cp__parse_u64(p, (size_t)(eol - p), &cp->size) != 0)
        return CHECKPOINT_ERR_MALFORMED;
    p = eol + 1;
    /* root */
    if (p == end || (eol = memchr(p, '\n', (size_t)(end - p))) == NULL || eol - p != 44 ||
        crypto_b64_decode(p, 44, cp->root, 32) != 32)
        return CHECKPOINT_ERR_MALFORMED;
    p = eol + 1;
    /* optional block line, first among the extension lines */
    if (p < end) {
        eol = memchr(p, '\n', (size_t)(end - p));
        size_t ll = (size_t)(eol - p);
        if (ll >= CP__BLOCK_PREFIX_LEN && memcmp(p, CP__BLOCK_PREFIX, CP__BLOCK_PREFIX_LEN) == 0) {
            if (cp__parse_block(p, ll, &cp->block_height, cp->block_hash) != 0)
                return CHECKPOINT_ERR_MALFORMED;
            cp->has_block = true;
            p = eol + 1;
        }
    }
    if (!cp__ext_ok(p, (size_t)(end - p)))
        return CHECKPOINT_ERR_MALFORMED;
    cp->ext = p < end ? p : NULL;
    cp->ext_len = (size_t)(end - p);
    return 0;
}

ssize_t checkpoint_sign(const struct checkpoint *cp, const uint8_t sk[64], const uint8_t pk[32],
                        char *out, size_t cap)
{
    char body[CHECKPOINT_MAX_BODY + 1], name[NOTE_NAME_MAX + 1];
    ssize_t bl = checkpoint_format(cp, body, sizeof body);
    if (bl < 0)
        return bl == CHECKPOINT_ERR_SPACE ? CHECKPOINT_ERR_ARGS
                                          : bl; /* body too long for any checkpoint */
    memcpy(name, cp->origin, cp->origin_len);   /* format checked origin_len <= NOTE_NAME_MAX */
    name[cp->origin_len] = '\0';
    ssize_t n = note_sign(body, (size_t)bl, name, sk, pk, out, cap);
    if (n == NOTE_ERR_SPACE)
        return CHECKPOINT_ERR_SPACE;
    return n < 0 ? CHECKPOINT_ERR_ARGS : n;
}

int checkpoint_verify(const char *note, size_t note_len, const struct note_verifier *verifiers,
                      size_t n_verifiers, size_t quorum, const char *origin, bool *signed_by,
                      struct checkpoint *cp)
{
    struct note_verified res;
    struct checkpoint local;
    if (cp == NULL)
        cp = &local;
    memset(cp, 0, sizeof *cp);
    int rc = note_verify(note, note_len, verifiers, n_verifiers, signed_by, &res);
    if (rc != 0)
        return rc;
    if (quorum > 0 && res.n_verified < quorum)
        return NOTE_ERR_QUORUM;
    rc = checkpoint_parse(res.text, res.text_len, cp);
    if (rc != 0)
        return rc;
    if (origin != NULL &&
        (strlen(origin) != cp->origin_len || memcmp(origin, cp->origin, cp->origin_len) != 0))
        return CHECKPOINT_ERR_ORIGIN;
    return 0;
}
