/* ACL file parsing and checking (see acl.h, docs/FORMATS.md "ACL file").
 * Rules are kept in file order in one array; a check scans the rules that
 * apply to the client twice: deny rules first (any match denies), then
 * grants. Filters are compared level by level without allocation except
 * for pattern substitution. */
#include "identity/acl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum acl__kind { ACL__ANON, ACL__USER, ACL__DEVICE, ACL__PATTERN };

struct acl__rule {
    enum acl__kind kind;
    int access;        /* ACL_READ | ACL_WRITE bits; 0 = deny */
    const char *owner; /* section name (user / device), else NULL */
    char *topic;
    int line;
};

struct acl {
    struct acl__rule *rules;
    size_t n, cap;
    char **names; /* section names, owned */
    size_t n_names, cap_names;
    bool has_patterns;
};

void acl_free(struct acl *acl)
{
    if (acl == NULL)
        return;
    for (size_t i = 0; i < acl->n; i++)
        free(acl->rules[i].topic);
    for (size_t i = 0; i < acl->n_names; i++)
        free(acl->names[i]);
    free(acl->rules);
    free(acl->names);
    free(acl);
}

size_t acl_rule_count(const struct acl *acl) { return acl ? acl->n : 0; }

/* ---- filter relations ---- */

struct acl__lv {
    const char *p;
    size_t len;
    bool end;
};

/* Next level of *s (a NUL-terminated filter); *done after the last. */
static struct acl__lv acl__next(const char **s, bool *done)
{
    struct acl__lv lv = {*s, 0, *done};
    if (*done)
        return lv;
    const char *slash = strchr(*s, '/');
    if (slash == NULL) {
        lv.len = strlen(*s);
        *s += lv.len;
        *done = true;
    } else {
        lv.len = (size_t)(slash - *s);
        *s = slash + 1;
    }
    return lv;
}

static bool acl__is(const struct acl__lv *l, char c) { return !l->end && l->len == 1 && l->p[0] == c; }
static bool acl__dollar(const struct acl__lv *l) { return !l->end && l->len > 0 && l->p[0] == '$'; }
static bool acl__wild(const struct acl__lv *l) { return acl__is(l, '+') || acl__is(l, '#'); }

int acl_filter_covers(const char *outer, const char *inner)
{
    bool ad = false, bd = false;
    for (unsigned i = 0;; i++) {
        struct acl__lv a = acl__next(&outer, &ad), b = acl__next(&inner, &bd);
        if (a.end)
            return b.end;
        if (acl__is(&a, '#'))
            return !(i == 0 && acl__dollar(&b));
        if (b.end || acl__is(&b, '#'))
            return 0;
        if (acl__is(&a, '+')) {
            if (i == 0 && acl__dollar(&b))
                return 0;
            continue;
        }
        if (acl__is(&b, '+') || a.len != b.len || memcmp(a.p, b.p, a.len) != 0)
            return 0;
    }
}

int acl_filter_intersects(const char *x, const char *y)
{
    bool ad = false, bd = false;
    for (unsigned i = 0;; i++) {
        struct acl__lv a = acl__next(&x, &ad), b = acl__next(&y, &bd);
        if (a.end && b.end)
            return 1;
        if (a.end)
            return acl__is(&b, '#');
        if (b.end)
            return acl__is(&a, '#');
        if (i == 0 && ((acl__wild(&a) && acl__dollar(&b)) || (acl__wild(&b) && acl__dollar(&a))))
            return 0;
        if (acl__is(&a, '#') || acl__is(&b, '#'))
            return 1;
        if (acl__is(&a, '+') || acl__is(&b, '+'))
            continue;
        if (a.len != b.len || memcmp(a.p, b.p, a.len) != 0)
            return 0;
    }
}

/* MQTT filter syntax: '#' only as the whole last level, '+' only as a
 * whole level; non-empty. */
static bool acl__filter_ok(const char *f, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (f[i] == '+' || f[i] == '#') {
            if (i > 0 && f[i - 1] != '/')
                return false;
            if (i + 1 < len && f[i + 1] != '/')
                return false;
            if (f[i] == '#' && i + 1 != len)
                return false;
        }
    }
    return true;
}

/* ---- parsing ---- */

static int acl__err(char *err, size_t errlen, const char *name, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int acl__err(char *err, size_t errlen, const char *name, int line, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        int n = snprintf(err, errlen, "%s:%d: ", name, line);
        if (n >= 0 && (size_t)n < errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return ACL_ERR_SYNTAX;
}

static bool acl__space(char c) { return c == ' ' || c == '\t'; }

static const char *acl__skip(const char *p, const char *e)
{
    while (p < e && acl__space(*p))
        p++;
    return p;
}

static const char *acl__word_end(const char *p, const char *e)
{
    while (p < e && !acl__space(*p))
        p++;
    return p;
}

static bool acl__eq(const char *p, size_t len, const char *word)
{
    return strlen(word) == len && memcmp(p, word, len) == 0;
}

static int acl__add_name(struct acl *acl, const char *p, size_t len, const char **out)
{
    if (acl->n_names == acl->cap_names) {
        size_t cap = acl->cap_names ? acl->cap_names * 2 : 8;
        char **n = realloc(acl->names, cap * sizeof(*n));
        if (n == NULL)
            return ACL_ERR_NOMEM;
        acl->names = n;
        acl->cap_names = cap;
    }
    char *s = strndup(p, len);
    if (s == NULL)
        return ACL_ERR_NOMEM;
    acl->names[acl->n_names++] = s;
    *out = s;
    return 0;
}

static int acl__add_rule(struct acl *acl, enum acl__kind kind, int access, const char *owner,
                         const char *p, size_t len, int line)
{
    if (acl->n == acl->cap) {
        size_t cap = acl->cap ? acl->cap * 2 : 16;
        struct acl__rule *r = realloc(acl->rules, cap * sizeof(*r));
        if (r == NULL)
            return ACL_ERR_NOMEM;
        acl->rules = r;
        acl->cap = cap;
    }
    char *t = strndup(p, len);
    if (t == NULL)
        return ACL_ERR_NOMEM;
    acl->rules[acl->n++] = (struct acl__rule){kind, access, owner, t, line};
    if (kind == ACL__PATTERN)
        acl->has_patterns = true;
    return 0;
}

int acl_parse(const char *text, size_t len, const char *name, struct acl **out, char *err,
              size_t errlen)
{
    struct acl *acl;
    enum acl__kind section = ACL__ANON;
    const char *owner = NULL;
    const char *p = text, *end = text + len;
    int line = 0, rc = 0;

    if ((text == NULL && len > 0) || out == NULL)
        return ACL_ERR_ARGS;
    if (name == NULL)
        name = "acl";
    acl = calloc(1, sizeof(*acl));
    if (acl == NULL)
        return ACL_ERR_NOMEM;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *next = nl ? nl + 1 : end;
        line++;
        if ((size_t)(le - p) >= ACL_LINE_MAX) {
            rc = acl__err(err, errlen, name, line, "line too long");
            goto fail_free_acl;
        }
        if (memchr(p, '\0', (size_t)(le - p)) != NULL) {
            rc = acl__err(err, errlen, name, line, "NUL byte in line");
            goto fail_free_acl;
        }
        while (le > p && (le[-1] == '\r' || acl__space(le[-1])))
            le--;
        p = acl__skip(p, le);
        if (p == le || *p == '#') {
            p = next;
            continue;
        }
        const char *we = acl__word_end(p, le);
        size_t wl = (size_t)(we - p);
        const char *arg = acl__skip(we, le);
        if (acl__eq(p, wl, "user") || acl__eq(p, wl, "device")) {
            bool dev = p[0] == 'd';
            if (arg == le) {
                rc = acl__err(err, errlen, name, line, "%s needs a name", dev ? "device" : "user");
                goto fail_free_acl;
            }
            rc = acl__add_name(acl, arg, (size_t)(le - arg), &owner);
            if (rc != 0)
                goto fail_free_acl;
            section = dev ? ACL__DEVICE : ACL__USER;
        } else if (acl__eq(p, wl, "topic") || acl__eq(p, wl, "pattern")) {
            bool pattern = p[0] == 'p';
            int access = ACL_READ | ACL_WRITE;
            const char *ae = acl__word_end(arg, le);
            size_t al = (size_t)(ae - arg);
            if (acl__eq(arg, al, "read") || acl__eq(arg, al, "write") ||
                acl__eq(arg, al, "readwrite") || acl__eq(arg, al, "deny")) {
                access = arg[0] == 'd' ? 0 : acl__eq(arg, al, "read") ? ACL_READ
                                            : acl__eq(arg, al, "write") ? ACL_WRITE
                                                                        : ACL_READ | ACL_WRITE;
                arg = acl__skip(ae, le);
            }
            if (arg == le) {
                rc = acl__err(err, errlen, name, line, "%s needs a topic filter",
                              pattern ? "pattern" : "topic");
                goto fail_free_acl;
            }
            if (!acl__filter_ok(arg, (size_t)(le - arg))) {
                rc = acl__err(err, errlen, name, line, "invalid topic filter '%.*s'",
                              (int)(le - arg), arg);
                goto fail_free_acl;
            }
            rc = acl__add_rule(acl, pattern ? ACL__PATTERN : section, access,
                               pattern ? NULL : owner, arg, (size_t)(le - arg), line);
            if (rc != 0)
                goto fail_free_acl;
        } else {
            rc = acl__err(err, errlen, name, line, "unknown keyword '%.*s'", (int)wl, p);
            goto fail_free_acl;
        }
        p = next;
    }
    *out = acl;
    return 0;

fail_free_acl:
    if (rc == ACL_ERR_NOMEM && err != NULL && errlen > 0)
        snprintf(err, errlen, "%s:%d: out of memory", name, line);
    acl_free(acl);
    return rc;
}

int acl_load(const char *path, struct acl **out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc;
    if (f == NULL) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return ACL_ERR_IO;
    }
    for (;;) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 4096;
            char *n = realloc(buf, ncap);
            if (n == NULL) {
                rc = ACL_ERR_NOMEM;
                goto fail_close;
            }
            buf = n;
            cap = ncap;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "%s: read error", path);
        rc = ACL_ERR_IO;
        goto fail_close;
    }
    fclose(f);
    rc = acl_parse(buf, len, path, out, err, errlen);
    free(buf);
    return rc;

fail_close:
    fclose(f);
    free(buf);
    return rc;
}

/* ---- checking ---- */

static bool acl__applies(const struct acl__rule *r, const char *user, const char *dev)
{
    switch (r->kind) {
    case ACL__ANON: return user == NULL && dev == NULL;
    case ACL__USER: return user != NULL && strcmp(r->owner, user) == 0;
    case ACL__DEVICE: return dev != NULL && strcmp(r->owner, dev) == 0;
    case ACL__PATTERN: return true;
    }
    return false;
}

/* The rule's filter with %c/%u/%d substituted: r->topic itself, or a
 * string in buf / malloc'ed into *heap (caller frees). NULL if a
 * substituted value is absent (the rule does not apply) or on ENOMEM
 * (*nomem set). */
static const char *acl__expand(const struct acl__rule *r, const char *user, const char *cid,
                               const char *dev, char *buf, size_t cap, char **heap, bool *nomem)
{
    *heap = NULL;
    if (r->kind != ACL__PATTERN || strchr(r->topic, '%') == NULL)
        return r->topic;
    size_t need = 1;
    for (const char *s = r->topic; *s; s++) {
        const char *v = NULL;
        if (s[0] == '%' && (s[1] == 'c' || s[1] == 'u' || s[1] == 'd')) {
            v = s[1] == 'c' ? cid : s[1] == 'u' ? user : dev;
            if (v == NULL)
                return NULL;
            need += strlen(v);
            s++;
        } else {
            need++;
        }
    }
    char *o = buf;
    if (need > cap) {
        o = *heap = malloc(need);
        if (o == NULL) {
            *nomem = true;
            return NULL;
        }
    }
    char *w = o;
    for (const char *s = r->topic; *s; s++) {
        if (s[0] == '%' && (s[1] == 'c' || s[1] == 'u' || s[1] == 'd')) {
            const char *v = s[1] == 'c' ? cid : s[1] == 'u' ? user : dev;
            size_t vl = strlen(v);
            memcpy(w, v, vl);
            w += vl;
            s++;
        } else {
            *w++ = *s;
        }
    }
    *w = '\0';
    return o;
}

static bool acl__dangerous(const char *s) { return s != NULL && strpbrk(s, "+#") != NULL; }

int acl_check(const struct acl *acl, const char *username, const char *client_id,
              const char *device_id, const char *topic, int access)
{
    char buf[512];
    bool nomem = false;
    if (acl == NULL || topic == NULL)
        return ACL_ERR_DENIED;
    size_t tl = strlen(topic);
    if (access == ACL_SUBSCRIBE) {
        if (!acl__filter_ok(topic, tl))
            return ACL_ERR_DENIED;
    } else if (access == ACL_READ || access == ACL_WRITE) {
        if (tl == 0 || strpbrk(topic, "+#") != NULL)
            return ACL_ERR_DENIED;
    } else {
        return ACL_ERR_DENIED;
    }
    if (acl->has_patterns &&
        (acl__dangerous(username) || acl__dangerous(client_id) || acl__dangerous(device_id)))
        return ACL_ERR_DENIED;
    int want = access == ACL_SUBSCRIBE ? ACL_READ : access;
    /* pass 0: deny rules; pass 1: grants */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < acl->n; i++) {
            const struct acl__rule *r = &acl->rules[i];
            if ((pass == 0) != (r->access == 0) || (pass == 1 && !(r->access & want)))
                continue;
            if (!acl__applies(r, username, device_id))
                continue;
            char *heap;
            const char *f = acl__expand(r, username, client_id, device_id, buf, sizeof(buf), &heap,
                                        &nomem);
            if (f == NULL) {
                if (nomem)
                    return ACL_ERR_DENIED;
                continue;
            }
            int hit = acl_filter_covers(f, topic);
            free(heap);
            if (hit)
                return pass == 0 ? ACL_ERR_DENIED : 0;
        }
    }
    return ACL_ERR_DENIED;
}

int acl_subscribe_partial(const struct acl *acl, const char *username, const char *client_id,
                          const char *device_id, const char *filter)
{
    char buf[512];
    bool nomem = false;
    if (acl == NULL || filter == NULL)
        return 0;
    for (size_t i = 0; i < acl->n; i++) {
        const struct acl__rule *r = &acl->rules[i];
        if (r->access != 0 || !acl__applies(r, username, device_id))
            continue;
        char *heap;
        const char *f = acl__expand(r, username, client_id, device_id, buf, sizeof(buf), &heap, &nomem);
        if (f == NULL) {
            if (nomem)
                return 1;
            continue;
        }
        int hit = acl_filter_intersects(f, filter) && !acl_filter_covers(f, filter);
        free(heap);
        if (hit)
            return 1;
    }
    return 0;
}
