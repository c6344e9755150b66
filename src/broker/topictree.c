/* Topic tree for subscriptions and retained messages (see topictree.h).
 * Each node keeps its literal children in an open-addressing table keyed by
 * the level string, and its `+` and `#` children in two direct pointers, so
 * matching a topic costs one hash probe per level plus the wildcard
 * branches. Empty nodes are pruned bottom-up after every removal. */
#include "broker/topictree.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct tsub {
    void *owner;
    uint8_t qos;
    uint8_t opts;
};

struct tnode {
    struct tnode *parent;
    struct tnode **kids;        /* open addressing, linear probing; NULL = empty */
    uint32_t nkids, kcap;
    struct tnode *plus, *hash;
    struct tsub *subs;
    uint32_t nsubs, scap;
    struct lmq_msg *retained;
    uint32_t h;
    uint16_t len;
    char level[];
};

struct lmq_tree {
    struct tnode *root;
    size_t n_retained;
    size_t n_nodes;
};

static uint32_t tt__hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 16777619u;
    }
    return h;
}

static struct tnode *tt__node_new(struct lmq_tree *t, struct tnode *parent, const char *lvl,
                                  size_t len)
{
    struct tnode *n = calloc(1, sizeof *n + len + 1);
    if (!n)
        return NULL;
    n->parent = parent;
    n->len = (uint16_t)len;
    memcpy(n->level, lvl, len);
    n->h = tt__hash(lvl, len);
    t->n_nodes++;
    return n;
}

static struct tnode *tt__kid_find(const struct tnode *n, const char *lvl, size_t len, uint32_t h)
{
    if (!n->kcap)
        return NULL;
    uint32_t mask = n->kcap - 1;
    for (uint32_t i = h & mask;; i = (i + 1) & mask) {
        struct tnode *k = n->kids[i];
        if (!k)
            return NULL;
        if (k->h == h && k->len == len && memcmp(k->level, lvl, len) == 0)
            return k;
    }
}

static void tt__kid_put(struct tnode **kids, uint32_t cap, struct tnode *k)
{
    uint32_t mask = cap - 1;
    uint32_t i = k->h & mask;
    while (kids[i])
        i = (i + 1) & mask;
    kids[i] = k;
}

static int tt__kid_add(struct tnode *n, struct tnode *k)
{
    if ((n->nkids + 1) * 2 > n->kcap) {
        uint32_t cap = n->kcap ? n->kcap * 2 : 4;
        struct tnode **kids = calloc(cap, sizeof *kids);
        if (!kids)
            return -ENOMEM;
        for (uint32_t i = 0; i < n->kcap; i++)
            if (n->kids[i])
                tt__kid_put(kids, cap, n->kids[i]);
        free(n->kids);
        n->kids = kids;
        n->kcap = cap;
    }
    tt__kid_put(n->kids, n->kcap, k);
    n->nkids++;
    return 0;
}

/* Removes K with backward-shift deletion (no tombstones). */
static void tt__kid_del(struct tnode *n, struct tnode *k)
{
    uint32_t mask = n->kcap - 1;
    uint32_t i = k->h & mask;
    while (n->kids[i] != k)
        i = (i + 1) & mask;
    n->kids[i] = NULL;
    n->nkids--;
    for (uint32_t j = (i + 1) & mask; n->kids[j]; j = (j + 1) & mask) {
        struct tnode *m = n->kids[j];
        uint32_t home = m->h & mask;
        /* Move M into the hole if its home slot is not in (i, j]. */
        bool between = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
        if (!between) {
            n->kids[i] = m;
            n->kids[j] = NULL;
            i = j;
        }
    }
    if (n->nkids == 0) {
        free(n->kids);
        n->kids = NULL;
        n->kcap = 0;
    }
}

static bool tt__is_plus(const char *lvl, size_t len)
{
    return len == 1 && lvl[0] == '+';
}

static bool tt__is_hash(const char *lvl, size_t len)
{
    return len == 1 && lvl[0] == '#';
}

/* Returns the child of N for level LVL, creating it when CREATE. */
static struct tnode *tt__child(struct lmq_tree *t, struct tnode *n, const char *lvl, size_t len,
                               bool create)
{
    if (tt__is_plus(lvl, len) || tt__is_hash(lvl, len)) {
        struct tnode **slot = lvl[0] == '+' ? &n->plus : &n->hash;
        if (!*slot && create)
            *slot = tt__node_new(t, n, lvl, len);
        return *slot;
    }
    uint32_t h = tt__hash(lvl, len);
    struct tnode *k = tt__kid_find(n, lvl, len, h);
    if (k || !create)
        return k;
    k = tt__node_new(t, n, lvl, len);
    if (!k)
        return NULL;
    if (tt__kid_add(n, k) < 0) {
        free(k);
        t->n_nodes--;
        return NULL;
    }
    return k;
}

/* Walks (or builds) the path of NAME; NULL if absent (or out of memory). */
static struct tnode *tt__path(struct lmq_tree *t, const char *name, size_t len, bool create)
{
    struct tnode *n = t->root;
    size_t i = 0;
    for (;;) {
        size_t j = i;
        while (j < len && name[j] != '/')
            j++;
        n = tt__child(t, n, name + i, j - i, create);
        if (!n || j >= len)
            return n;
        i = j + 1;
    }
}

/* Frees N and its empty ancestors. */
static void tt__prune(struct lmq_tree *t, struct tnode *n)
{
    while (n != t->root && n->nsubs == 0 && !n->retained && n->nkids == 0 && !n->plus &&
           !n->hash) {
        struct tnode *p = n->parent;
        if (p->plus == n)
            p->plus = NULL;
        else if (p->hash == n)
            p->hash = NULL;
        else
            tt__kid_del(p, n);
        free(n->subs);
        free(n);
        t->n_nodes--;
        n = p;
    }
}

struct lmq_tree *lmq_tree_new(void)
{
    struct lmq_tree *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->root = calloc(1, sizeof *t->root);
    if (!t->root) {
        free(t);
        return NULL;
    }
    return t;
}

static void tt__free_node(struct tnode *n)
{
    for (uint32_t i = 0; i < n->kcap; i++)
        if (n->kids[i])
            tt__free_node(n->kids[i]);
    if (n->plus)
        tt__free_node(n->plus);
    if (n->hash)
        tt__free_node(n->hash);
    lmq_msg_unref(n->retained);
    free(n->kids);
    free(n->subs);
    free(n);
}

void lmq_tree_free(struct lmq_tree *t)
{
    if (!t)
        return;
    tt__free_node(t->root);
    free(t);
}

int lmq_tree_subscribe(struct lmq_tree *t, const char *filter, size_t len, void *owner,
                       uint8_t qos, uint8_t opts, bool *existed)
{
    struct tnode *n = tt__path(t, filter, len, true);
    if (!n)
        return -ENOMEM;
    for (uint32_t i = 0; i < n->nsubs; i++) {
        if (n->subs[i].owner == owner) {
            n->subs[i].qos = qos;
            n->subs[i].opts = opts;
            if (existed)
                *existed = true;
            return 0;
        }
    }
    if (n->nsubs == n->scap) {
        uint32_t cap = n->scap ? n->scap * 2 : 2;
        struct tsub *s = realloc(n->subs, cap * sizeof *s);
        if (!s) {
            tt__prune(t, n);
            return -ENOMEM;
        }
        n->subs = s;
        n->scap = cap;
    }
    n->subs[n->nsubs++] = (struct tsub){owner, qos, opts};
    if (existed)
        *existed = false;
    return 0;
}

int lmq_tree_unsubscribe(struct lmq_tree *t, const char *filter, size_t len, void *owner)
{
    struct tnode *n = tt__path(t, filter, len, false);
    if (!n)
        return -ENOENT;
    for (uint32_t i = 0; i < n->nsubs; i++) {
        if (n->subs[i].owner == owner) {
            n->subs[i] = n->subs[--n->nsubs];
            if (n->nsubs == 0) {
                free(n->subs);
                n->subs = NULL;
                n->scap = 0;
            }
            tt__prune(t, n);
            return 0;
        }
    }
    return -ENOENT;
}

/* ---- match set ---- */

static uint32_t tt__ptr_hash(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (uint32_t)x;
}

static void ms__clear(struct lmq_match_set *s)
{
    if (s->n * 4 < s->index_cap) {
        /* Few entries in a big index: zero just their slots. The probe looks
         * for the entry's own value, so slots zeroed before do not stop it. */
        size_t mask = s->index_cap - 1;
        for (size_t k = 0; k < s->n; k++) {
            size_t i = tt__ptr_hash(s->v[k].owner) & mask;
            while (s->index[i] != k + 1)
                i = (i + 1) & mask;
            s->index[i] = 0;
        }
    } else if (s->index_cap) {
        memset(s->index, 0, s->index_cap * sizeof *s->index);
    }
    s->n = 0;
}

static int ms__grow_index(struct lmq_match_set *s)
{
    size_t cap = s->index_cap ? s->index_cap * 2 : 64;
    uint32_t *idx = calloc(cap, sizeof *idx);
    if (!idx)
        return -ENOMEM;
    for (size_t k = 0; k < s->n; k++) {
        size_t i = tt__ptr_hash(s->v[k].owner) & (cap - 1);
        while (idx[i])
            i = (i + 1) & (cap - 1);
        idx[i] = (uint32_t)(k + 1);
    }
    free(s->index);
    s->index = idx;
    s->index_cap = cap;
    return 0;
}

static int ms__add(struct lmq_match_set *s, const struct tsub *sub)
{
    if ((s->n + 1) * 2 > s->index_cap && ms__grow_index(s) < 0)
        return -ENOMEM;
    size_t mask = s->index_cap - 1;
    size_t i = tt__ptr_hash(sub->owner) & mask;
    while (s->index[i]) {
        struct lmq_match *m = &s->v[s->index[i] - 1];
        if (m->owner == sub->owner) {
            if (sub->qos > m->qos)
                m->qos = sub->qos;
            m->opts |= sub->opts;
            return 0;
        }
        i = (i + 1) & mask;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        struct lmq_match *v = realloc(s->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n] = (struct lmq_match){sub->owner, sub->qos, sub->opts};
    s->index[i] = (uint32_t)(++s->n);
    return 0;
}

static int ms__add_node(struct lmq_match_set *s, const struct tnode *n)
{
    if (!n)
        return 0;
    for (uint32_t i = 0; i < n->nsubs; i++)
        if (ms__add(s, &n->subs[i]) < 0)
            return -ENOMEM;
    return 0;
}

void lmq_match_set_free(struct lmq_match_set *s)
{
    free(s->v);
    free(s->index);
    memset(s, 0, sizeof *s);
}

static int tt__match(const struct tnode *n, const char *topic, size_t len, size_t i, bool root,
                     struct lmq_match_set *s)
{
    /* N is the node for the levels before I; I == len + 1 means no levels left. */
    bool dollar = root && len > 0 && topic[0] == '$';
    if (i > len) {
        if (ms__add_node(s, n) < 0)
            return -ENOMEM;
        /* "a/#" also matches "a". */
        return n->hash ? ms__add_node(s, n->hash) : 0;
    }
    size_t j = i;
    while (j < len && topic[j] != '/')
        j++;
    if (!dollar) {
        if (n->hash && ms__add_node(s, n->hash) < 0)
            return -ENOMEM;
        if (n->plus && tt__match(n->plus, topic, len, j + 1, false, s) < 0)
            return -ENOMEM;
    }
    if (n->nkids) {
        const struct tnode *k = tt__kid_find(n, topic + i, j - i, tt__hash(topic + i, j - i));
        if (k && tt__match(k, topic, len, j + 1, false, s) < 0)
            return -ENOMEM;
    }
    return 0;
}

int lmq_tree_match(struct lmq_tree *t, const char *topic, size_t len, struct lmq_match_set *set)
{
    ms__clear(set);
    return tt__match(t->root, topic, len, 0, true, set);
}

/* ---- retained ---- */

int lmq_tree_retain(struct lmq_tree *t, const char *topic, size_t len, struct lmq_msg *msg,
                    int *delta)
{
    *delta = 0;
    struct tnode *n = tt__path(t, topic, len, msg != NULL);
    if (!n)
        return msg ? -ENOMEM : 0;
    if (msg) {
        if (!n->retained) {
            *delta = 1;
            t->n_retained++;
        }
        lmq_msg_unref(n->retained);
        n->retained = lmq_msg_ref(msg);
        return 0;
    }
    if (n->retained) {
        lmq_msg_unref(n->retained);
        n->retained = NULL;
        t->n_retained--;
        *delta = -1;
        tt__prune(t, n);
    }
    return 0;
}

struct lmq_msg *lmq_tree_retained(struct lmq_tree *t, const char *topic, size_t len)
{
    struct tnode *n = tt__path(t, topic, len, false);
    return n ? n->retained : NULL;
}

/* Every retained message at N and below (literal children only: a topic
 * name never contains a wildcard level). */
static void tt__all_retained(const struct tnode *n, lmq_tree_retained_fn fn, void *ctx)
{
    if (n->retained)
        fn(ctx, n->retained);
    for (uint32_t i = 0; i < n->kcap; i++)
        if (n->kids[i])
            tt__all_retained(n->kids[i], fn, ctx);
}

static void tt__match_retained(const struct tnode *n, const char *f, size_t len, size_t i,
                               bool root, lmq_tree_retained_fn fn, void *ctx)
{
    if (i > len) {
        if (n->retained)
            fn(ctx, n->retained);
        return;
    }
    size_t j = i;
    while (j < len && f[j] != '/')
        j++;
    if (tt__is_hash(f + i, j - i)) {
        /* "a/#" matches "a" itself and everything below. */
        if (!root && n->retained)
            fn(ctx, n->retained);
        for (uint32_t k = 0; k < n->kcap; k++) {
            const struct tnode *c = n->kids[k];
            if (c && !(root && c->len > 0 && c->level[0] == '$'))
                tt__all_retained(c, fn, ctx);
        }
        return;
    }
    if (tt__is_plus(f + i, j - i)) {
        for (uint32_t k = 0; k < n->kcap; k++) {
            const struct tnode *c = n->kids[k];
            if (c && !(root && c->len > 0 && c->level[0] == '$'))
                tt__match_retained(c, f, len, j + 1, false, fn, ctx);
        }
        return;
    }
    const struct tnode *c = tt__kid_find(n, f + i, j - i, tt__hash(f + i, j - i));
    if (c)
        tt__match_retained(c, f, len, j + 1, false, fn, ctx);
}

void lmq_tree_match_retained(struct lmq_tree *t, const char *filter, size_t len,
                             lmq_tree_retained_fn fn, void *ctx)
{
    tt__match_retained(t->root, filter, len, 0, true, fn, ctx);
}

size_t lmq_tree_retained_count(const struct lmq_tree *t)
{
    return t->n_retained;
}

size_t lmq_tree_node_count(const struct lmq_tree *t)
{
    return t->n_nodes;
}
