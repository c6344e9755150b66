/* SDK receipt verification: a strict little JSON reader for the five
 * receipt members, the C2SP signed-note checkpoint (Ed25519 signature
 * line of the log key), and the RFC 9162 inclusion proof. No allocation:
 * the record and the checkpoint text are decoded into the caller's
 * scratch buffer. */
#include "sdk_int.h"

#include <string.h>

#include <sodium.h>

int lmq_sdk_verify_inclusion(uint64_t index, uint64_t size, const uint8_t leaf_hash[32],
                             const uint8_t (*proof)[32], size_t n, const uint8_t root[32])
{
    uint8_t r[32], buf[65];
    uint64_t fn = index, sn;
    size_t i;
    if (index >= size || (n > 0 && proof == NULL))
        return LMQ_SDK_ERR_PROOF;
    sn = size - 1;
    memcpy(r, leaf_hash, 32);
    buf[0] = 0x01;
    for (i = 0; i < n; i++) {
        if (sn == 0)
            return LMQ_SDK_ERR_PROOF;
        if ((fn & 1) || fn == sn) {
            memcpy(buf + 1, proof[i], 32);
            memcpy(buf + 33, r, 32);
            lmqsdk__sha256_2(buf, sizeof(buf), NULL, 0, r);
            if (!(fn & 1))
                while (!(fn & 1) && fn != 0) {
                    fn >>= 1;
                    sn >>= 1;
                }
        } else {
            memcpy(buf + 1, r, 32);
            memcpy(buf + 33, proof[i], 32);
            lmqsdk__sha256_2(buf, sizeof(buf), NULL, 0, r);
        }
        fn >>= 1;
        sn >>= 1;
    }
    if (sn != 0 || sodium_memcmp(r, root, 32) != 0)
        return LMQ_SDK_ERR_PROOF;
    return 0;
}

/* ---- JSON ---- */

struct lmqsdk__json {
    const char *p, *end;
};

static void lmqsdk__ws(struct lmqsdk__json *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int lmqsdk__lit(struct lmqsdk__json *j, char c)
{
    lmqsdk__ws(j);
    if (j->p >= j->end || *j->p != c)
        return -1;
    j->p++;
    return 0;
}

static int lmqsdk__hex4(const char *p, unsigned *v)
{
    int i;
    *v = 0;
    for (i = 0; i < 4; i++) {
        char c = p[i];
        unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
                     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                     : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10)
                                            : 16u;
        if (d > 15)
            return -1;
        *v = *v << 4 | d;
    }
    return 0;
}

/* Reads a JSON string, unescaped into out (UTF-8). Returns length or -1. */
static long lmqsdk__string(struct lmqsdk__json *j, char *out, size_t cap)
{
    size_t o = 0;
    if (lmqsdk__lit(j, '"') != 0)
        return -1;
    while (j->p < j->end) {
        unsigned char c = (unsigned char)*j->p++;
        unsigned cp;
        if (c == '"')
            return (long)o;
        if (c < 0x20)
            return -1;
        if (c != '\\') {
            if (o >= cap)
                return -1;
            out[o++] = (char)c;
            continue;
        }
        if (j->p >= j->end)
            return -1;
        c = (unsigned char)*j->p++;
        switch (c) {
        case '"': case '\\': case '/': cp = c; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
            if (j->end - j->p < 4 || lmqsdk__hex4(j->p, &cp) != 0)
                return -1;
            j->p += 4;
            if (cp >= 0xdc00 && cp <= 0xdfff)
                return -1;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                unsigned lo;
                if (j->end - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u' ||
                    lmqsdk__hex4(j->p + 2, &lo) != 0 || lo < 0xdc00 || lo > 0xdfff)
                    return -1;
                j->p += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            break;
        default: return -1;
        }
        if (cap - o < 4)
            return -1;
        if (cp < 0x80) {
            out[o++] = (char)cp;
        } else if (cp < 0x800) {
            out[o++] = (char)(0xc0 | cp >> 6);
            out[o++] = (char)(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            out[o++] = (char)(0xe0 | cp >> 12);
            out[o++] = (char)(0x80 | ((cp >> 6) & 0x3f));
            out[o++] = (char)(0x80 | (cp & 0x3f));
        } else {
            out[o++] = (char)(0xf0 | cp >> 18);
            out[o++] = (char)(0x80 | ((cp >> 12) & 0x3f));
            out[o++] = (char)(0x80 | ((cp >> 6) & 0x3f));
            out[o++] = (char)(0x80 | (cp & 0x3f));
        }
    }
    return -1;
}

static int lmqsdk__uint(struct lmqsdk__json *j, uint64_t *v)
{
    lmqsdk__ws(j);
    if (j->p >= j->end || *j->p < '0' || *j->p > '9')
        return -1;
    if (*j->p == '0' && j->end - j->p > 1 && j->p[1] >= '0' && j->p[1] <= '9')
        return -1; /* leading zero */
    *v = 0;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        unsigned d = (unsigned)(*j->p - '0');
        if (*v > (UINT64_MAX - d) / 10)
            return -1;
        *v = *v * 10 + d;
        j->p++;
    }
    return 0;
}

/* ---- signed note ---- */

static int lmqsdk__parse_u64(const char *p, size_t len, uint64_t *v)
{
    size_t i;
    if (len == 0 || len > 20 || (p[0] == '0' && len > 1))
        return -1;
    *v = 0;
    for (i = 0; i < len; i++) {
        unsigned d;
        if (p[i] < '0' || p[i] > '9')
            return -1;
        d = (unsigned)(p[i] - '0');
        if (*v > (UINT64_MAX - d) / 10)
            return -1;
        *v = *v * 10 + d;
    }
    return 0;
}

/* Verifies the note's signature lines by (name, pks[i]) — at least quorum
 * distinct keys must verify — and parses the checkpoint body into out. */
static int lmqsdk__checkpoint(const char *note, size_t len, const char *name,
                              const uint8_t (*pks)[32], size_t n_keys, size_t quorum,
                              uint64_t *size, struct lmq_sdk_receipt *out)
{
    static const char dash[] = "\xe2\x80\x94 "; /* U+2014 and a space */
    const char *split = NULL, *s, *p, *e, *end = note + len;
    size_t text_len, name_len = strlen(name), i, k, n_ok = 0;
    uint8_t kid_in[256 + 2 + 32], kids[LMQ_SDK_MAX_KEYS][4];
    unsigned char ok[LMQ_SDK_MAX_KEYS];

    /* text / signatures split at the last blank line */
    for (s = note; s + 1 < end; s++)
        if (s[0] == '\n' && s[1] == '\n')
            split = s;
    if (split == NULL || len == 0 || end[-1] != '\n' || name_len == 0 || name_len > 256)
        return LMQ_SDK_ERR_MALFORMED;
    text_len = (size_t)(split - note) + 1;

    for (k = 0; k < n_keys; k++) {
        uint8_t h[32];
        memcpy(kid_in, name, name_len);
        kid_in[name_len] = '\n';
        kid_in[name_len + 1] = 0x01;
        memcpy(kid_in + name_len + 2, pks[k], 32);
        lmqsdk__sha256_2(kid_in, name_len + 34, NULL, 0, h);
        memcpy(kids[k], h, 4);
        ok[k] = 0;
    }

    for (p = split + 2; p < end; p = e + 1) {
        uint8_t sig[4 + 64 + 16];
        const char *sp, *b64;
        long n;
        e = memchr(p, '\n', (size_t)(end - p));
        if (e == NULL || (size_t)(e - p) < sizeof(dash) || memcmp(p, dash, sizeof(dash) - 1) != 0)
            return LMQ_SDK_ERR_MALFORMED;
        sp = memchr(p + sizeof(dash) - 1, ' ', (size_t)(e - p - (long)(sizeof(dash) - 1)));
        if (sp == NULL)
            return LMQ_SDK_ERR_MALFORMED;
        b64 = sp + 1;
        if ((size_t)(sp - (p + sizeof(dash) - 1)) != name_len ||
            memcmp(p + sizeof(dash) - 1, name, name_len) != 0)
            continue; /* another signer */
        if ((size_t)(e - b64) > 4 * ((sizeof(sig) + 2) / 3))
            continue; /* some other (longer) signature type */
        n = lmqsdk__b64_decode(b64, (size_t)(e - b64), sig, sizeof(sig));
        if (n < 5)
            return LMQ_SDK_ERR_MALFORMED;
        if (n != 4 + 64)
            continue; /* another signature type */
        for (k = 0; k < n_keys; k++) {
            if (memcmp(sig, kids[k], 4) != 0)
                continue;
            if (crypto_sign_ed25519_verify_detached(sig + 4, (const unsigned char *)note, text_len,
                                                    pks[k]) != 0)
                return LMQ_SDK_ERR_SIGNATURE;
            if (!ok[k]) {
                size_t j;
                ok[k] = 1;
                for (j = 0; j < k && !(ok[j] && memcmp(pks[j], pks[k], 32) == 0); j++)
                    ;
                if (j == k) /* a key listed twice still counts once */
                    n_ok++;
            }
        }
    }
    if (n_ok == 0 || n_ok < quorum)
        return LMQ_SDK_ERR_UNSIGNED;

    /* body: origin, size, base64 root, optional extension lines */
    p = note;
    e = memchr(p, '\n', text_len);
    if (e == NULL || e == p)
        return LMQ_SDK_ERR_MALFORMED;
    out->origin = p;
    out->origin_len = (size_t)(e - p);
    p = e + 1;
    e = memchr(p, '\n', (size_t)(note + text_len - p));
    if (e == NULL || lmqsdk__parse_u64(p, (size_t)(e - p), size) != 0)
        return LMQ_SDK_ERR_MALFORMED;
    p = e + 1;
    e = memchr(p, '\n', (size_t)(note + text_len - p));
    {
        uint8_t root[33];
        if (e == NULL || e - p != 44 || lmqsdk__b64_decode(p, 44, root, sizeof(root)) != 32)
            return LMQ_SDK_ERR_MALFORMED;
        memcpy(out->root, root, 32);
    }
    for (i = 0; i < out->origin_len; i++)
        if ((unsigned char)out->origin[i] < 0x20)
            return LMQ_SDK_ERR_MALFORMED;
    return 0;
}

int lmq_sdk_vkey_parse(const char *vkey, size_t len, char *name, size_t name_cap,
                       uint8_t pk[LMQ_SDK_PK_LEN])
{
    const char *plus1, *plus2;
    uint8_t raw[36], kid_in[256 + 34], h[32];
    unsigned hi, lo;
    size_t nl;
    if (vkey == NULL || name == NULL || pk == NULL)
        return LMQ_SDK_ERR_ARGS;
    plus1 = memchr(vkey, '+', len);
    if (plus1 == NULL)
        return LMQ_SDK_ERR_MALFORMED;
    nl = (size_t)(plus1 - vkey);
    plus2 = plus1 + 9;
    if (nl == 0 || nl > 256 || len != nl + 1 + 8 + 1 + 44 || *plus2 != '+')
        return LMQ_SDK_ERR_MALFORMED;
    if (lmqsdk__hex4(plus1 + 1, &hi) != 0 || lmqsdk__hex4(plus1 + 5, &lo) != 0)
        return LMQ_SDK_ERR_MALFORMED;
    if (lmqsdk__b64_decode(plus2 + 1, 44, raw, sizeof(raw)) != 33 || raw[0] != 0x01)
        return LMQ_SDK_ERR_MALFORMED;
    memcpy(kid_in, vkey, nl);
    kid_in[nl] = '\n';
    kid_in[nl + 1] = 0x01;
    memcpy(kid_in + nl + 2, raw + 1, 32);
    lmqsdk__sha256_2(kid_in, nl + 34, NULL, 0, h);
    if (((uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3]) !=
        ((uint32_t)hi << 16 | lo))
        return LMQ_SDK_ERR_MALFORMED;
    if (name_cap < nl + 1)
        return LMQ_SDK_ERR_SPACE;
    memcpy(name, vkey, nl);
    name[nl] = '\0';
    memcpy(pk, raw + 1, 32);
    return 0;
}

int lmq_sdk_receipt_verify(const char *json, size_t json_len, const char *log_name,
                           const uint8_t log_pk[LMQ_SDK_PK_LEN], const char *origin,
                           uint8_t *scratch, size_t scratch_cap, struct lmq_sdk_receipt *out)
{
    if (log_pk == NULL)
        return LMQ_SDK_ERR_ARGS;
    return lmq_sdk_receipt_verify_quorum(json, json_len, log_name, (const uint8_t(*)[32])log_pk, 1,
                                         1, origin, scratch, scratch_cap, out);
}

int lmq_sdk_receipt_verify_quorum(const char *json, size_t json_len, const char *log_name,
                                  const uint8_t (*log_pks)[LMQ_SDK_PK_LEN], size_t n_keys,
                                  size_t quorum, const char *origin, uint8_t *scratch,
                                  size_t scratch_cap, struct lmq_sdk_receipt *out)
{
    struct lmqsdk__json j;
    uint8_t proof[LMQ_SDK_MAX_PROOF][32], leaf[32];
    size_t n_proof = 0, used = 0;
    unsigned seen = 0;
    const char *note = NULL;
    size_t note_len = 0;
    uint64_t cp_size;
    int rc;

    if (json == NULL || log_name == NULL || log_pks == NULL || n_keys == 0 ||
        n_keys > LMQ_SDK_MAX_KEYS || quorum > n_keys || scratch == NULL || out == NULL)
        return LMQ_SDK_ERR_ARGS;
    memset(out, 0, sizeof(*out));
    if (scratch_cap < json_len)
        return LMQ_SDK_ERR_SPACE; /* decoded members never exceed the JSON */
    j.p = json;
    j.end = json + json_len;
    if (lmqsdk__lit(&j, '{') != 0)
        return LMQ_SDK_ERR_MALFORMED;
    for (;;) {
        char key[16];
        long kl = lmqsdk__string(&j, key, sizeof(key));
        unsigned bit;
        if (kl < 0 || lmqsdk__lit(&j, ':') != 0)
            return LMQ_SDK_ERR_MALFORMED;
        if (kl == 5 && memcmp(key, "index", 5) == 0) {
            bit = 1;
            if (lmqsdk__uint(&j, &out->index) != 0)
                return LMQ_SDK_ERR_MALFORMED;
        } else if (kl == 9 && memcmp(key, "tree_size", 9) == 0) {
            bit = 2;
            if (lmqsdk__uint(&j, &out->tree_size) != 0)
                return LMQ_SDK_ERR_MALFORMED;
        } else if (kl == 6 && memcmp(key, "record", 6) == 0) {
            long sl, rl;
            bit = 4;
            sl = lmqsdk__string(&j, (char *)scratch + used, scratch_cap - used);
            if (sl < 0)
                return LMQ_SDK_ERR_MALFORMED;
            rl = lmqsdk__b64_decode((const char *)scratch + used, (size_t)sl, scratch + used,
                                    (size_t)sl);
            if (rl < 0)
                return LMQ_SDK_ERR_MALFORMED;
            out->record = scratch + used;
            out->record_len = (size_t)rl;
            used += (size_t)rl;
        } else if (kl == 5 && memcmp(key, "proof", 5) == 0) {
            bit = 8;
            if (lmqsdk__lit(&j, '[') != 0)
                return LMQ_SDK_ERR_MALFORMED;
            lmqsdk__ws(&j);
            if (j.p < j.end && *j.p == ']') {
                j.p++;
            } else {
                for (;;) {
                    char h64[48];
                    uint8_t h[34];
                    long sl = lmqsdk__string(&j, h64, sizeof(h64));
                    if (sl != 44 || n_proof >= LMQ_SDK_MAX_PROOF ||
                        lmqsdk__b64_decode(h64, 44, h, sizeof(h)) != 32)
                        return LMQ_SDK_ERR_MALFORMED;
                    memcpy(proof[n_proof++], h, 32);
                    lmqsdk__ws(&j);
                    if (j.p < j.end && *j.p == ',') {
                        j.p++;
                        continue;
                    }
                    if (lmqsdk__lit(&j, ']') != 0)
                        return LMQ_SDK_ERR_MALFORMED;
                    break;
                }
            }
        } else if (kl == 10 && memcmp(key, "checkpoint", 10) == 0) {
            long sl;
            bit = 16;
            sl = lmqsdk__string(&j, (char *)scratch + used, scratch_cap - used);
            if (sl < 0)
                return LMQ_SDK_ERR_MALFORMED;
            note = (const char *)scratch + used;
            note_len = (size_t)sl;
            used += (size_t)sl;
        } else {
            return LMQ_SDK_ERR_MALFORMED;
        }
        if (seen & bit)
            return LMQ_SDK_ERR_MALFORMED; /* duplicate member */
        seen |= bit;
        lmqsdk__ws(&j);
        if (j.p < j.end && *j.p == ',') {
            j.p++;
            continue;
        }
        if (lmqsdk__lit(&j, '}') != 0)
            return LMQ_SDK_ERR_MALFORMED;
        break;
    }
    lmqsdk__ws(&j);
    if (j.p != j.end || seen != 31)
        return LMQ_SDK_ERR_MALFORMED;

    rc = lmqsdk__checkpoint(note, note_len, log_name, log_pks, n_keys, quorum, &cp_size, out);
    if (rc != 0)
        return rc;
    if (origin != NULL &&
        (strlen(origin) != out->origin_len || memcmp(origin, out->origin, out->origin_len) != 0))
        return LMQ_SDK_ERR_ORIGIN;
    if (cp_size != out->tree_size || out->index >= out->tree_size)
        return LMQ_SDK_ERR_SIZE;
    {
        uint8_t zero = 0x00;
        lmqsdk__sha256_2(&zero, 1, out->record, out->record_len, leaf);
    }
    return lmq_sdk_verify_inclusion(out->index, out->tree_size, leaf,
                                    (const uint8_t(*)[32])proof, n_proof, out->root);
}
