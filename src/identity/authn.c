/* Client authentication checks and the token replay cache (see authn.h).
 * Every check looks the device up in the registry first and verifies with
 * its current key only, so a rotated-away or revoked key proves nothing. */
#include "identity/authn.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/hash.h"
#include "identity/cwt.h"
#include "identity/registry.h"

const char *authn_strerror(int err)
{
    switch (err) {
    case AUTHN_ERR_UNKNOWN_DEVICE:
        return "unknown device";
    case AUTHN_ERR_REVOKED:
        return "device revoked";
    case AUTHN_ERR_OLD_KEY:
        return "key rotated away (not the device's current key)";
    case AUTHN_ERR_NO_REGISTRY:
        return "no device registry on this node";
    case AUTHN_ERR_REGISTRY:
        return "device registry read failed";
    case AUTHN_ERR_FORMAT:
        return "malformed ledgermq-ed25519 response";
    case AUTHN_ERR_SIGNATURE:
        return "bad signature";
    case AUTHN_ERR_BEFORE_START:
        return "token issued before the broker started";
    case AUTHN_ERR_REPLAY:
        return "token replayed";
    case AUTHN_ERR_REPLAY_FULL:
        return "token replay cache full";
    case AUTHN_ERR_NOMEM:
        return "out of memory";
    default:
        return cwt_strerror(err);
    }
}

/* The active device ID[0:LEN]: 0 and its current key, or an error. */
static int authn__device(struct registry *r, const char *id, size_t len, uint8_t pk[32])
{
    if (!r)
        return AUTHN_ERR_NO_REGISTRY;
    if (!device_id_valid(id, len))
        return AUTHN_ERR_UNKNOWN_DEVICE;
    /* struct registry_device carries a record buffer: keep it off the
     * worker's stack. */
    struct registry_device *d = malloc(sizeof *d);
    if (!d)
        return AUTHN_ERR_NOMEM;
    int rc = registry_lookup(r, id, len, d);
    if (rc == -ENOENT)
        rc = AUTHN_ERR_UNKNOWN_DEVICE;
    else if (rc < 0)
        rc = AUTHN_ERR_REGISTRY;
    else if (d->status != REGISTRY_ACTIVE)
        rc = AUTHN_ERR_REVOKED;
    else
        memcpy(pk, d->public_key, 32);
    free(d);
    return rc;
}

int authn_token(struct registry *r, const uint8_t *tok, size_t len,
                const struct authn_token_opts *o, char id[DEVICE_ID_LEN + 1],
                uint8_t replay_key[AUTHN_REPLAY_KEY_LEN], int64_t *exp)
{
    struct cwt_token t;
    uint8_t pk[32];
    int rc = cwt_decode(tok, len, &t);
    if (rc != 0)
        return rc;
    rc = authn__device(r, t.sub, t.sub_len, pk);
    if (rc != 0)
        return rc;
    rc = cwt_verify(&t, pk, o->audience, o->now, o->skew, o->max_lifetime);
    if (rc != 0)
        return rc;
    if (o->issued_after && t.iat < o->issued_after)
        return AUTHN_ERR_BEFORE_START;
    memcpy(id, t.sub, t.sub_len);
    id[t.sub_len] = '\0';
    static const char dom[] = "ledgermq token v1";
    static const uint8_t zero = 0;
    const void *parts[5] = {dom, &zero, t.sub, &zero, t.cti};
    size_t lens[5] = {sizeof dom - 1, 1, t.sub_len, 1, t.cti_len};
    uint8_t h[32];
    crypto_sha256_parts(parts, lens, 5, h);
    memcpy(replay_key, h, AUTHN_REPLAY_KEY_LEN);
    *exp = t.exp;
    return 0;
}

int authn_device_key(struct registry *r, const uint8_t pk[32], char id[DEVICE_ID_LEN + 1])
{
    uint8_t cur[32];
    if (!r)
        return AUTHN_ERR_NO_REGISTRY;
    int rc = registry_lookup_key(r, pk, id);
    if (rc == -ENOENT)
        return AUTHN_ERR_UNKNOWN_DEVICE;
    if (rc < 0)
        return AUTHN_ERR_REGISTRY;
    rc = authn__device(r, id, strlen(id), cur);
    if (rc != 0)
        return rc;
    if (crypto_memeq(cur, pk, 32) != 0)
        return AUTHN_ERR_OLD_KEY;
    return 0;
}

int authn_ed25519_message(const char *origin, const uint8_t nonce[AUTHN_NONCE_LEN], const char *id,
                          uint8_t *out, size_t cap)
{
    size_t ol = origin ? strlen(origin) : 0;
    size_t need = sizeof AUTHN_ED25519_DOMAIN + 1 + ol + AUTHN_NONCE_LEN + DEVICE_ID_LEN;
    if (ol == 0 || ol > 255 || !id || strlen(id) != DEVICE_ID_LEN || cap < need)
        return AUTHN_ERR_FORMAT;
    size_t n = 0;
    memcpy(out, AUTHN_ED25519_DOMAIN, sizeof AUTHN_ED25519_DOMAIN); /* with its NUL */
    n += sizeof AUTHN_ED25519_DOMAIN;
    out[n++] = (uint8_t)ol;
    memcpy(out + n, origin, ol);
    n += ol;
    memcpy(out + n, nonce, AUTHN_NONCE_LEN);
    n += AUTHN_NONCE_LEN;
    memcpy(out + n, id, DEVICE_ID_LEN);
    n += DEVICE_ID_LEN;
    return (int)n;
}

int authn_ed25519_decode(const uint8_t *in, size_t len, char id[DEVICE_ID_LEN + 1],
                         const uint8_t **sig)
{
    if (!in || len != AUTHN_ED25519_RESPONSE_LEN ||
        !device_id_valid((const char *)in, DEVICE_ID_LEN))
        return AUTHN_ERR_FORMAT;
    memcpy(id, in, DEVICE_ID_LEN);
    id[DEVICE_ID_LEN] = '\0';
    *sig = in + DEVICE_ID_LEN;
    return 0;
}

int authn_ed25519_verify(struct registry *r, const char *origin,
                         const uint8_t nonce[AUTHN_NONCE_LEN], const uint8_t *resp, size_t len,
                         char id[DEVICE_ID_LEN + 1])
{
    const uint8_t *sig;
    uint8_t pk[32], msg[AUTHN_ED25519_MSG_MAX];
    int rc = authn_ed25519_decode(resp, len, id, &sig);
    if (rc != 0)
        return rc;
    rc = authn__device(r, id, DEVICE_ID_LEN, pk);
    if (rc != 0)
        return rc;
    int n = authn_ed25519_message(origin, nonce, id, msg, sizeof msg);
    if (n < 0)
        return n;
    if (crypto_sign_verify_detached(sig, msg, (unsigned long long)n, pk) != 0)
        return AUTHN_ERR_SIGNATURE;
    return 0;
}

void authn_nonce(uint8_t nonce[AUTHN_NONCE_LEN])
{
    randombytes_buf(nonce, AUTHN_NONCE_LEN);
}

/* ------------------------------------------------------------------ */
/* Replay cache: open addressing with linear probing over a power-of-two
 * table kept at most half full; an empty slot has exp 0. Expired entries
 * are dropped by rebuilding the table when it would grow or is full. */

struct authn__slot {
    uint8_t key[AUTHN_REPLAY_KEY_LEN];
    int64_t exp;
};

struct authn_replay {
    struct authn__slot *t;
    size_t cap, count, max;
};

struct authn_replay *authn_replay_new(uint32_t max)
{
    struct authn_replay *rc = calloc(1, sizeof *rc);
    if (!rc)
        return NULL;
    rc->max = max ? max : 1;
    rc->cap = 64;
    rc->t = calloc(rc->cap, sizeof *rc->t);
    if (!rc->t) {
        free(rc);
        return NULL;
    }
    return rc;
}

void authn_replay_free(struct authn_replay *rc)
{
    if (!rc)
        return;
    free(rc->t);
    free(rc);
}

size_t authn_replay_count(const struct authn_replay *rc)
{
    return rc->count;
}

static size_t authn__slot_of(const uint8_t *key, size_t cap)
{
    uint64_t h;
    memcpy(&h, key, sizeof h); /* the key is a hash already */
    return (size_t)(h & (cap - 1));
}

static void authn__put(struct authn__slot *t, size_t cap, const uint8_t *key, int64_t exp)
{
    size_t i = authn__slot_of(key, cap);
    while (t[i].exp != 0)
        i = (i + 1) & (cap - 1);
    memcpy(t[i].key, key, AUTHN_REPLAY_KEY_LEN);
    t[i].exp = exp;
}

/* Rebuilds into CAP slots without the entries expired at NOW. */
static int authn__rebuild(struct authn_replay *rc, size_t cap, int64_t now)
{
    struct authn__slot *t = calloc(cap, sizeof *t);
    if (!t)
        return AUTHN_ERR_NOMEM;
    size_t n = 0;
    for (size_t i = 0; i < rc->cap; i++)
        if (rc->t[i].exp != 0 && rc->t[i].exp > now) {
            authn__put(t, cap, rc->t[i].key, rc->t[i].exp);
            n++;
        }
    free(rc->t);
    rc->t = t;
    rc->cap = cap;
    rc->count = n;
    return 0;
}

int authn_replay_add(struct authn_replay *rc, const uint8_t key[AUTHN_REPLAY_KEY_LEN], int64_t exp,
                     int64_t now)
{
    for (size_t i = authn__slot_of(key, rc->cap); rc->t[i].exp != 0; i = (i + 1) & (rc->cap - 1))
        if (memcmp(rc->t[i].key, key, AUTHN_REPLAY_KEY_LEN) == 0 && rc->t[i].exp > now)
            return AUTHN_ERR_REPLAY;
    if (exp <= now)
        return 0; /* already past its validity: nothing to remember */
    if (rc->count >= rc->max || (rc->count + 1) * 2 > rc->cap) {
        /* Drop the expired first; grow only if that is not enough. */
        size_t cap = rc->cap;
        int r = authn__rebuild(rc, cap, now);
        if (r != 0)
            return r;
        if (rc->count >= rc->max)
            return AUTHN_ERR_REPLAY_FULL;
        if ((rc->count + 1) * 2 > rc->cap) {
            r = authn__rebuild(rc, cap * 2, now);
            if (r != 0)
                return r;
        }
    }
    authn__put(rc->t, rc->cap, key, exp);
    rc->count++;
    return 0;
}
