/* Payload store (see paystore.h): one LMDB database, key = 32-byte digest,
 * value = version (1 byte) | kind (1 byte) | salt (32 bytes) | data. */
#include "broker/paystore.h"

#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct lmq_paystore {
    MDB_env *env;
    MDB_dbi dbi;
};

#define PS_HDR (2 + PAYSTORE_SALT_LEN)

int paystore_open(const char *datadir, bool nosync, struct lmq_paystore **out, char *err,
                  size_t errlen)
{
    *out = NULL;
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s/payloads", datadir) >= (int)sizeof dir) {
        snprintf(err, errlen, "payload store: path too long");
        return -ENAMETOOLONG;
    }
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        int e = errno;
        snprintf(err, errlen, "payload store: mkdir %s: %s", dir, strerror(e));
        return -e;
    }
    struct lmq_paystore *ps = calloc(1, sizeof *ps);
    if (!ps)
        return -ENOMEM;
    int rc = mdb_env_create(&ps->env);
    unsigned flags = MDB_NOTLS | (nosync ? MDB_NOSYNC | MDB_NOMETASYNC : 0);
    if (rc == 0)
        rc = mdb_env_set_mapsize(ps->env, (size_t)1 << 36); /* 64 GiB of address space */
    if (rc == 0)
        rc = mdb_env_open(ps->env, dir, flags, 0600);
    MDB_txn *txn = NULL;
    if (rc == 0)
        rc = mdb_txn_begin(ps->env, NULL, 0, &txn);
    if (rc == 0)
        rc = mdb_dbi_open(txn, NULL, 0, &ps->dbi);
    if (rc == 0) {
        rc = mdb_txn_commit(txn);
        txn = NULL;
    }
    if (rc != 0) {
        if (txn)
            mdb_txn_abort(txn);
        snprintf(err, errlen, "payload store %s: %s", dir, mdb_strerror(rc));
        if (ps->env)
            mdb_env_close(ps->env);
        free(ps);
        return rc > 0 ? -rc : rc;
    }
    *out = ps;
    return 0;
}

void paystore_close(struct lmq_paystore *ps)
{
    if (!ps)
        return;
    mdb_env_close(ps->env);
    free(ps);
}

int paystore_put(struct lmq_paystore *ps, const struct paystore_entry *e, size_t n)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(ps->env, NULL, 0, &txn);
    if (rc != 0)
        return rc > 0 ? -rc : rc;
    for (size_t i = 0; i < n && rc == 0; i++) {
        MDB_val k = {32, (void *)e[i].digest};
        MDB_val v = {PS_HDR + e[i].len, NULL};
        rc = mdb_put(txn, ps->dbi, &k, &v, MDB_RESERVE);
        if (rc == 0) {
            uint8_t *p = v.mv_data;
            p[0] = PAYSTORE_VERSION;
            p[1] = e[i].kind;
            memcpy(p + 2, e[i].salt, PAYSTORE_SALT_LEN);
            if (e[i].len)
                memcpy(p + PS_HDR, e[i].data, e[i].len);
        }
    }
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc > 0 ? -rc : rc;
    }
    rc = mdb_txn_commit(txn);
    return rc > 0 ? -rc : rc;
}

int paystore_get(struct lmq_paystore *ps, const uint8_t digest[32], uint8_t salt[32], uint8_t *kind,
                 uint8_t *buf, size_t cap, size_t *len)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(ps->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0)
        return rc > 0 ? -rc : rc;
    MDB_val k = {32, (void *)digest}, v;
    rc = mdb_get(txn, ps->dbi, &k, &v);
    if (rc == MDB_NOTFOUND) {
        mdb_txn_abort(txn);
        return -ENOENT;
    }
    if (rc == 0 && (v.mv_size < PS_HDR || ((uint8_t *)v.mv_data)[0] != PAYSTORE_VERSION))
        rc = -EINVAL;
    if (rc == 0) {
        const uint8_t *p = v.mv_data;
        if (kind)
            *kind = p[1];
        if (salt)
            memcpy(salt, p + 2, PAYSTORE_SALT_LEN);
        *len = v.mv_size - PS_HDR;
        if (*len > cap)
            rc = -ENOSPC;
        else if (*len)
            memcpy(buf, p + PS_HDR, *len);
    }
    mdb_txn_abort(txn);
    return rc > 0 ? -rc : rc;
}

int paystore_delete(struct lmq_paystore *ps, const uint8_t digest[32])
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(ps->env, NULL, 0, &txn);
    if (rc != 0)
        return rc > 0 ? -rc : rc;
    MDB_val k = {32, (void *)digest};
    rc = mdb_del(txn, ps->dbi, &k, NULL);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc == MDB_NOTFOUND ? -ENOENT : (rc > 0 ? -rc : rc);
    }
    rc = mdb_txn_commit(txn);
    return rc > 0 ? -rc : rc;
}
