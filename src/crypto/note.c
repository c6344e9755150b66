/* C2SP signed notes. A note is split at its last blank line into text and
 * signature block; every signature line is checked for syntax even when
 * its key is unknown, so a malformed note is rejected the same way by
 * every verifier whatever keys it holds. Formats: docs/FORMATS.md. */
#include "crypto/note.h"
#include "util/utf8.h"

#include <stdio.h>
#include <string.h>

#include "crypto/hash.h"
#include "crypto/sign.h"

#define NOTE__DASH "\xe2\x80\x94" /* U+2014 EM DASH */
#define NOTE__DASH_LEN 3
#define NOTE__MAX_SIG_BYTES 8192  /* decoded signature incl. key ID */
#define NOTE__COSIG_MAX_TEXT 8192 /* cosignature/v1 messages are built on the stack */
#define NOTE__COSIG_HEADER "cosignature/v1\ntime "

struct note__sig {
    const char *line; /* start of the "— " */
    size_t line_len;  /* including '\n' */
    const char *name;
    size_t name_len;
    const char *b64;
    size_t b64_len;
    uint32_t key_id;
};

static int note__is_unicode_space(uint32_t c)
{
    switch (c) {
    case 0x09:
    case 0x0a:
    case 0x0b:
    case 0x0c:
    case 0x0d:
    case 0x20:
    case 0x85:
    case 0xa0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202f:
    case 0x205f:
    case 0x3000:
        return 1;
    default:
        return c >= 0x2000 && c <= 0x200a;
    }
}

int note_name_valid(const char *name, size_t len)
{
    const uint8_t *p = (const uint8_t *)name;
    if (name == NULL || len == 0 || len > NOTE_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len;) {
        uint32_t c;
        int n = lmq_utf8_next(p + i, len - i, &c);
        if (n < 0 || c < 0x20 || c == 0x7f || c == '+' || note__is_unicode_space(c))
            return 0;
        i += (size_t)n;
    }
    return 1;
}

/* Valid note text: UTF-8, no control characters other than '\n'. */
static int note__text_chars_valid(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 && c != '\n')
            return 0;
    }
    return lmq_utf8_valid(s, len);
}

uint32_t note_key_id(const char *name, size_t name_len, uint8_t type, const uint8_t pk[32])
{
    static const uint8_t nl = '\n';
    uint8_t h[32];
    const void *parts[4] = {name, &nl, &type, pk};
    size_t lens[4] = {name_len, 1, 1, 32};
    crypto_sha256_parts(parts, lens, 4, h);
    return (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
}

int note_verifier_init_type(struct note_verifier *v, const char *name, uint8_t type,
                            const uint8_t pk[32])
{
    size_t len = name ? strlen(name) : 0;
    if (!note_name_valid(name, len) || (type != NOTE_SIG_ED25519 && type != NOTE_SIG_COSIGNATURE))
        return NOTE_ERR_ARGS;
    memset(v, 0, sizeof *v);
    memcpy(v->name, name, len);
    v->name_len = len;
    v->type = type;
    memcpy(v->pk, pk, 32);
    v->key_id = note_key_id(name, len, type, pk);
    return 0;
}

int note_verifier_init(struct note_verifier *v, const char *name, const uint8_t pk[32])
{
    return note_verifier_init_type(v, name, NOTE_SIG_ED25519, pk);
}

ssize_t note_verifier_format(const struct note_verifier *v, char *out, size_t cap)
{
    uint8_t key[33];
    char b64[64];
    if (!note_name_valid(v->name, v->name_len))
        return NOTE_ERR_ARGS;
    key[0] = v->type;
    memcpy(key + 1, v->pk, 32);
    crypto_b64_encode(key, sizeof key, b64, sizeof b64);
    int n = snprintf(out, cap, "%.*s+%08x+%s", (int)v->name_len, v->name, (unsigned)v->key_id, b64);
    if (n < 0 || (size_t)n >= cap)
        return NOTE_ERR_SPACE;
    return n;
}

int note_verifier_parse(const char *vkey, size_t len, struct note_verifier *v)
{
    const char *p1 = memchr(vkey, '+', len);
    if (p1 == NULL)
        return NOTE_ERR_ARGS;
    size_t name_len = (size_t)(p1 - vkey);
    const char *rest = p1 + 1;
    size_t rest_len = len - name_len - 1;
    if (rest_len < 9 || rest[8] != '+' || !note_name_valid(vkey, name_len))
        return NOTE_ERR_ARGS;
    uint8_t idb[4];
    for (int i = 0; i < 8; i++) { /* lowercase hex only: one spelling per key */
        char c = rest[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return NOTE_ERR_ARGS;
    }
    if (crypto_hex_decode(rest, 8, idb, 4) != 4)
        return NOTE_ERR_ARGS;
    uint8_t key[33];
    if (crypto_b64_decode(rest + 9, rest_len - 9, key, sizeof key) != 33)
        return NOTE_ERR_ARGS;
    memset(v, 0, sizeof *v);
    memcpy(v->name, vkey, name_len);
    v->name_len = name_len;
    v->type = key[0];
    memcpy(v->pk, key + 1, 32);
    if (v->type != NOTE_SIG_ED25519 && v->type != NOTE_SIG_COSIGNATURE)
        return NOTE_ERR_ARGS;
    v->key_id = note_key_id(v->name, name_len, v->type, v->pk);
    uint32_t want =
        (uint32_t)idb[0] << 24 | (uint32_t)idb[1] << 16 | (uint32_t)idb[2] << 8 | idb[3];
    if (want != v->key_id)
        return NOTE_ERR_ARGS;
    return 0;
}

/* Parses and checks the whole note; fills sigs (NOTE_MAX_SIGS entries). */
static int note__parse(const char *note, size_t len, const char **text, size_t *text_len,
                       struct note__sig *sigs, size_t *n_sigs)
{
    if (note == NULL || len < 2 || len > NOTE_MAX_SIZE || note[len - 1] != '\n')
        return NOTE_ERR_MALFORMED;
    if (!note__text_chars_valid(note, len))
        return NOTE_ERR_MALFORMED;
    /* The text ends at the last "\n\n". */
    size_t split = len;
    for (size_t i = len - 1; i-- > 0;) {
        if (note[i] == '\n' && note[i + 1] == '\n') {
            split = i;
            break;
        }
    }
    if (split == len)
        return NOTE_ERR_MALFORMED;
    *text = note;
    *text_len = split + 1;
    const char *p = note + split + 2, *end = note + len;
    size_t n = 0;
    if (p == end)
        return NOTE_ERR_MALFORMED; /* at least one signature */
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        /* eol exists: the note ends in '\n' */
        size_t ll = (size_t)(eol - p);
        if (n == NOTE_MAX_SIGS || ll < NOTE__DASH_LEN + 1 ||
            memcmp(p, NOTE__DASH " ", NOTE__DASH_LEN + 1) != 0)
            return NOTE_ERR_MALFORMED;
        const char *name = p + NOTE__DASH_LEN + 1;
        const char *sp = memchr(name, ' ', (size_t)(eol - name));
        if (sp == NULL)
            return NOTE_ERR_MALFORMED;
        struct note__sig *s = &sigs[n];
        s->line = p;
        s->line_len = ll + 1;
        s->name = name;
        s->name_len = (size_t)(sp - name);
        s->b64 = sp + 1;
        s->b64_len = (size_t)(eol - s->b64);
        if (!note_name_valid(s->name, s->name_len))
            return NOTE_ERR_MALFORMED;
        /* The whole signature must be canonical base64 of at least 5 bytes
         * (key ID and something), even when the key is unknown. */
        if (s->b64_len < 8 || s->b64_len % 4 != 0 ||
            s->b64_len > CRYPTO_B64_ENCODED_LEN(NOTE__MAX_SIG_BYTES))
            return NOTE_ERR_MALFORMED;
        static _Thread_local uint8_t scratch[NOTE__MAX_SIG_BYTES];
        ssize_t dl = crypto_b64_decode(s->b64, s->b64_len, scratch, sizeof scratch);
        if (dl < 5)
            return NOTE_ERR_MALFORMED;
        s->key_id = (uint32_t)scratch[0] << 24 | (uint32_t)scratch[1] << 16 |
                    (uint32_t)scratch[2] << 8 | scratch[3];
        n++;
        p = eol + 1;
    }
    *n_sigs = n;
    return 0;
}

int note_split(const char *note, size_t note_len, const char **text, size_t *text_len,
               size_t *n_sigs)
{
    struct note__sig sigs[NOTE_MAX_SIGS];
    size_t n = 0;
    const char *t;
    size_t tl;
    int rc = note__parse(note, note_len, &t, &tl, sigs, &n);
    if (rc != 0)
        return rc;
    if (text)
        *text = t;
    if (text_len)
        *text_len = tl;
    if (n_sigs)
        *n_sigs = n;
    return 0;
}

static int note__verify_one(const struct note_verifier *v, const struct note__sig *s,
                            const char *text, size_t text_len)
{
    uint8_t sig[NOTE__MAX_SIG_BYTES];
    ssize_t dl = crypto_b64_decode(s->b64, s->b64_len, sig, sizeof sig);
    if (v->type == NOTE_SIG_ED25519) {
        if (dl != 4 + 64)
            return NOTE_ERR_BAD_SIGNATURE;
        return crypto_ed25519_verify(sig + 4, text, text_len, v->pk) == 0 ? 0
                                                                          : NOTE_ERR_BAD_SIGNATURE;
    }
    /* tlog-cosignature/v1: keyid(4) || timestamp(8, big-endian) || sig(64)
     * over "cosignature/v1\ntime <ts>\n" || text. */
    if (dl != 4 + 8 + 64 || text_len > NOTE__COSIG_MAX_TEXT)
        return NOTE_ERR_BAD_SIGNATURE;
    uint64_t ts = 0;
    for (int i = 0; i < 8; i++)
        ts = ts << 8 | sig[4 + i];
    if (ts > INT64_MAX)
        return NOTE_ERR_BAD_SIGNATURE;
    char msg[64 + NOTE__COSIG_MAX_TEXT];
    int hl = snprintf(msg, sizeof msg, NOTE__COSIG_HEADER "%llu\n", (unsigned long long)ts);
    memcpy(msg + hl, text, text_len);
    return crypto_ed25519_verify(sig + 12, msg, (size_t)hl + text_len, v->pk) == 0
               ? 0
               : NOTE_ERR_BAD_SIGNATURE;
}

int note_verify(const char *note, size_t note_len, const struct note_verifier *verifiers,
                size_t n_verifiers, bool *signed_by, struct note_verified *out)
{
    struct note__sig sigs[NOTE_MAX_SIGS];
    size_t n = 0;
    const char *text;
    size_t text_len;
    if (signed_by != NULL)
        memset(signed_by, 0, n_verifiers * sizeof *signed_by);
    if (out != NULL)
        memset(out, 0, sizeof *out);
    int rc = note__parse(note, note_len, &text, &text_len, sigs, &n);
    if (rc != 0)
        return rc;
    size_t verified = 0;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        bool counted = false; /* a key listed twice still counts once */
        for (size_t j = 0; j < n_verifiers; j++) {
            const struct note_verifier *v = &verifiers[j];
            if (v->key_id != sigs[i].key_id || v->name_len != sigs[i].name_len ||
                memcmp(v->name, sigs[i].name, v->name_len) != 0)
                continue;
            /* A known key may sign once. */
            for (size_t k = 0; k < i; k++) {
                if (sigs[k].key_id == sigs[i].key_id && sigs[k].name_len == sigs[i].name_len &&
                    memcmp(sigs[k].name, sigs[i].name, sigs[i].name_len) == 0)
                    return NOTE_ERR_MALFORMED;
            }
            if (note__verify_one(v, &sigs[i], text, text_len) != 0) {
                bad = 1;
                continue;
            }
            if (!counted)
                verified++;
            counted = true;
            if (signed_by != NULL)
                signed_by[j] = true;
        }
    }
    if (out != NULL) {
        out->text = text;
        out->text_len = text_len;
        out->n_sigs = n;
        out->n_verified = verified;
    }
    if (bad)
        return NOTE_ERR_BAD_SIGNATURE;
    return verified > 0 ? 0 : NOTE_ERR_UNVERIFIED;
}

/* Appends the text, blank line and existing signatures minus those of
 * (name, key_id) to out; returns bytes written or an error. */
static ssize_t note__copy_without(const char *text, size_t text_len, const struct note__sig *sigs,
                                  size_t n, const char *name, size_t name_len, uint32_t key_id,
                                  char *out, size_t cap)
{
    size_t o = 0;
    if (text_len + 1 > cap)
        return NOTE_ERR_SPACE;
    memcpy(out, text, text_len);
    o = text_len;
    out[o++] = '\n';
    for (size_t i = 0; i < n; i++) {
        if (sigs[i].key_id == key_id && sigs[i].name_len == name_len &&
            memcmp(sigs[i].name, name, name_len) == 0)
            continue;
        if (o + sigs[i].line_len > cap)
            return NOTE_ERR_SPACE;
        memcpy(out + o, sigs[i].line, sigs[i].line_len);
        o += sigs[i].line_len;
    }
    return (ssize_t)o;
}

static ssize_t note__append_line(char *out, size_t o, size_t cap, const char *name, size_t name_len,
                                 const uint8_t *sig, size_t sig_len)
{
    char b64[CRYPTO_B64_ENCODED_LEN(4 + 8 + 64) + 1];
    ssize_t bl = crypto_b64_encode(sig, sig_len, b64, sizeof b64);
    size_t need = NOTE__DASH_LEN + 1 + name_len + 1 + (size_t)bl + 1;
    if (bl < 0 || o + need + 1 > cap)
        return NOTE_ERR_SPACE;
    memcpy(out + o, NOTE__DASH " ", NOTE__DASH_LEN + 1);
    o += NOTE__DASH_LEN + 1;
    memcpy(out + o, name, name_len);
    o += name_len;
    out[o++] = ' ';
    memcpy(out + o, b64, (size_t)bl);
    o += (size_t)bl;
    out[o++] = '\n';
    out[o] = '\0';
    return (ssize_t)o;
}

static void note__put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

ssize_t note_sign(const char *text, size_t text_len, const char *name, const uint8_t sk[64],
                  const uint8_t pk[32], char *out, size_t cap)
{
    size_t name_len = name ? strlen(name) : 0;
    if (text == NULL || text_len == 0 || text_len > NOTE_MAX_SIZE / 2 ||
        text[text_len - 1] != '\n' || !note__text_chars_valid(text, text_len) ||
        !note_name_valid(name, name_len))
        return NOTE_ERR_ARGS;
    if (text_len + 1 > cap)
        return NOTE_ERR_SPACE;
    memcpy(out, text, text_len);
    out[text_len] = '\n';
    uint8_t sig[4 + 64];
    note__put_be32(sig, note_key_id(name, name_len, NOTE_SIG_ED25519, pk));
    crypto_ed25519_sign(sig + 4, text, text_len, sk);
    return note__append_line(out, text_len + 1, cap, name, name_len, sig, sizeof sig);
}

static ssize_t note__add(const char *note, size_t note_len, const char *name, uint8_t type,
                         uint64_t ts, const uint8_t sk[64], const uint8_t pk[32], char *out,
                         size_t cap)
{
    struct note__sig sigs[NOTE_MAX_SIGS];
    size_t n = 0, name_len = name ? strlen(name) : 0;
    const char *text;
    size_t text_len;
    if (!note_name_valid(name, name_len))
        return NOTE_ERR_ARGS;
    int rc = note__parse(note, note_len, &text, &text_len, sigs, &n);
    if (rc != 0)
        return rc;
    uintptr_t o0 = (uintptr_t)out, n0 = (uintptr_t)note;
    if (o0 < n0 + note_len && n0 < o0 + cap)
        return NOTE_ERR_ARGS; /* no overlap */
    uint32_t id = note_key_id(name, name_len, type, pk);
    uint8_t sig[4 + 8 + 64];
    size_t sig_len;
    note__put_be32(sig, id);
    if (type == NOTE_SIG_ED25519) {
        crypto_ed25519_sign(sig + 4, text, text_len, sk);
        sig_len = 4 + 64;
    } else {
        if (ts > INT64_MAX || text_len > NOTE__COSIG_MAX_TEXT)
            return NOTE_ERR_ARGS;
        char msg[64 + NOTE__COSIG_MAX_TEXT];
        int hl = snprintf(msg, sizeof msg, NOTE__COSIG_HEADER "%llu\n", (unsigned long long)ts);
        memcpy(msg + hl, text, text_len);
        for (int i = 0; i < 8; i++)
            sig[4 + i] = (uint8_t)(ts >> (56 - 8 * i));
        crypto_ed25519_sign(sig + 12, msg, (size_t)hl + text_len, sk);
        sig_len = 4 + 8 + 64;
    }
    if (n == NOTE_MAX_SIGS) {
        /* Only allowed if the new line replaces an old one. */
        size_t same = 0;
        for (size_t i = 0; i < n; i++)
            same += sigs[i].key_id == id && sigs[i].name_len == name_len &&
                    memcmp(sigs[i].name, name, name_len) == 0;
        if (same == 0)
            return NOTE_ERR_ARGS;
    }
    ssize_t o = note__copy_without(text, text_len, sigs, n, name, name_len, id, out, cap);
    if (o < 0)
        return o;
    return note__append_line(out, (size_t)o, cap, name, name_len, sig, sig_len);
}

ssize_t note_add_signature(const char *note, size_t note_len, const char *name,
                           const uint8_t sk[64], const uint8_t pk[32], char *out, size_t cap)
{
    return note__add(note, note_len, name, NOTE_SIG_ED25519, 0, sk, pk, out, cap);
}

ssize_t note_add_cosignature(const char *note, size_t note_len, const char *name,
                             uint64_t timestamp, const uint8_t sk[64], const uint8_t pk[32],
                             char *out, size_t cap)
{
    return note__add(note, note_len, name, NOTE_SIG_COSIGNATURE, timestamp, sk, pk, out, cap);
}
