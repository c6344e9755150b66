/* Password file loading and verification (see pwfile.h). Hash strings are
 * kept as loaded; libsodium parses their parameters on every verify. */
#include "identity/pwfile.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "crypto/sign.h"

struct pwfile__entry {
    char *user;
    char *hash;
};

struct pwfile {
    struct pwfile__entry *e;
    size_t n, cap;
    char dummy[crypto_pwhash_STRBYTES]; /* verified for unknown users */
};

void pwfile_free(struct pwfile *pw)
{
    if (pw == NULL)
        return;
    for (size_t i = 0; i < pw->n; i++) {
        free(pw->e[i].user);
        free(pw->e[i].hash);
    }
    free(pw->e);
    sodium_memzero(pw->dummy, sizeof(pw->dummy));
    free(pw);
}

size_t pwfile_count(const struct pwfile *pw) { return pw ? pw->n : 0; }

static bool pwfile__user_ok(const char *u, size_t len)
{
    if (len == 0 || len > PWFILE_USER_MAX || u[0] == '#')
        return false;
    for (size_t i = 0; i < len; i++)
        if (u[i] == ':' || (unsigned char)u[i] < 0x20 || u[i] == 0x7f)
            return false;
    return true;
}

static int pwfile__err(char *err, size_t errlen, const char *name, int line, const char *msg)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s:%d: %s", name, line, msg);
    return PWFILE_ERR_SYNTAX;
}

int pwfile_parse(const char *text, size_t len, const char *name, struct pwfile **out, char *err,
                 size_t errlen)
{
    struct pwfile *pw;
    const char *p = text, *end = text + len;
    int line = 0, rc;

    if ((text == NULL && len > 0) || out == NULL)
        return PWFILE_ERR_ARGS;
    if (name == NULL)
        name = "passwd";
    if (crypto_init() != 0)
        return PWFILE_ERR_ARGS;
    pw = calloc(1, sizeof(*pw));
    if (pw == NULL)
        return PWFILE_ERR_NOMEM;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end, *next = nl ? nl + 1 : end;
        line++;
        if (le > p && le[-1] == '\r')
            le--;
        if (p == le || *p == '#') {
            p = next;
            continue;
        }
        const char *colon = memchr(p, ':', (size_t)(le - p));
        if (colon == NULL) {
            rc = pwfile__err(err, errlen, name, line, "expected username:hash");
            goto fail_free;
        }
        if (!pwfile__user_ok(p, (size_t)(colon - p))) {
            rc = pwfile__err(err, errlen, name, line, "invalid username");
            goto fail_free;
        }
        size_t hl = (size_t)(le - colon - 1);
        if (hl == 0 || hl >= crypto_pwhash_STRBYTES ||
            strncmp(colon + 1, crypto_pwhash_argon2id_STRPREFIX,
                    strlen(crypto_pwhash_argon2id_STRPREFIX)) != 0 ||
            memchr(colon + 1, '\0', hl) != NULL) {
            rc = pwfile__err(err, errlen, name, line, "hash is not an argon2id crypto_pwhash string");
            goto fail_free;
        }
        for (size_t i = 0; i < pw->n; i++) {
            if (strlen(pw->e[i].user) == (size_t)(colon - p) &&
                memcmp(pw->e[i].user, p, (size_t)(colon - p)) == 0) {
                rc = pwfile__err(err, errlen, name, line, "duplicate username");
                goto fail_free;
            }
        }
        if (pw->n == pw->cap) {
            size_t cap = pw->cap ? pw->cap * 2 : 16;
            struct pwfile__entry *e = realloc(pw->e, cap * sizeof(*e));
            if (e == NULL) {
                rc = PWFILE_ERR_NOMEM;
                goto fail_free;
            }
            pw->e = e;
            pw->cap = cap;
        }
        char *u = strndup(p, (size_t)(colon - p)), *h = strndup(colon + 1, hl);
        if (u == NULL || h == NULL) {
            free(u);
            free(h);
            rc = PWFILE_ERR_NOMEM;
            goto fail_free;
        }
        pw->e[pw->n++] = (struct pwfile__entry){u, h};
        p = next;
    }
    /* The dummy for unknown users costs what the first real entry costs. */
    if (pw->n > 0)
        memcpy(pw->dummy, pw->e[0].hash, strlen(pw->e[0].hash) + 1);
    *out = pw;
    return 0;

fail_free:
    pwfile_free(pw);
    return rc;
}

int pwfile_load(const char *path, struct pwfile **out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t len;
    int rc;
    if (f == NULL) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return PWFILE_ERR_IO;
    }
    buf = malloc(1 << 22);
    if (buf == NULL) {
        fclose(f);
        return PWFILE_ERR_NOMEM;
    }
    len = fread(buf, 1, 1 << 22, f);
    if (ferror(f) || !feof(f)) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "%s: read error or larger than 4 MiB", path);
        rc = PWFILE_ERR_IO;
    } else {
        rc = pwfile_parse(buf, len, path, out, err, errlen);
    }
    fclose(f);
    free(buf);
    return rc;
}

static const struct pwfile__entry *pwfile__find(const struct pwfile *pw, const char *user)
{
    for (size_t i = 0; i < pw->n; i++)
        if (strcmp(pw->e[i].user, user) == 0)
            return &pw->e[i];
    return NULL;
}

int pwfile_verify(const struct pwfile *pw, const char *user, const char *password, size_t len)
{
    if (pw == NULL || user == NULL || (password == NULL && len > 0))
        return PWFILE_ERR_ARGS;
    const struct pwfile__entry *e = pwfile__find(pw, user);
    if (e == NULL) {
        if (pw->dummy[0] != '\0' && crypto_pwhash_str_verify(pw->dummy, password ? password : "", len) == 0)
            return PWFILE_ERR_NO_USER; /* same answer either way; the call is for timing */
        return PWFILE_ERR_NO_USER;
    }
    return crypto_pwhash_str_verify(e->hash, password ? password : "", len) == 0 ? 0
                                                                                 : PWFILE_ERR_MISMATCH;
}

int pwfile_needs_rehash(const struct pwfile *pw, const char *user, unsigned long long opslimit,
                        size_t memlimit)
{
    const struct pwfile__entry *e = pw && user ? pwfile__find(pw, user) : NULL;
    if (e == NULL)
        return PWFILE_ERR_NO_USER;
    return crypto_pwhash_str_needs_rehash(e->hash, opslimit, memlimit) != 0;
}

ssize_t pwfile_make_line(const char *user, const char *password, size_t len,
                         unsigned long long opslimit, size_t memlimit, char *out, size_t cap)
{
    char hash[crypto_pwhash_STRBYTES];
    if (user == NULL || out == NULL || (password == NULL && len > 0) ||
        !pwfile__user_ok(user, strlen(user)) || crypto_init() != 0)
        return PWFILE_ERR_ARGS;
    if (opslimit == 0)
        opslimit = crypto_pwhash_OPSLIMIT_INTERACTIVE;
    if (memlimit == 0)
        memlimit = crypto_pwhash_MEMLIMIT_INTERACTIVE;
    if (crypto_pwhash_str_alg(hash, password ? password : "", len, opslimit, memlimit,
                              crypto_pwhash_ALG_ARGON2ID13) != 0)
        return PWFILE_ERR_ARGS;
    int n = snprintf(out, cap, "%s:%s\n", user, hash);
    sodium_memzero(hash, sizeof(hash));
    if (n < 0 || (size_t)n >= cap)
        return PWFILE_ERR_SPACE;
    return n;
}
