/* Ed25519 through libsodium, and the node key file. A key file appears at
 * its final path only complete and fsync'd (written to a temporary name
 * created O_EXCL with mode 0600, then link()ed into place, which fails if
 * another process won the race), and is never read if anyone but its
 * owner may read it. Format: docs/FORMATS.md "Key files". */
#include "crypto/sign.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "crypto/hash.h"
#include "util/log.h"

#define KEY__SECRET_HEADER "ledgermq-ed25519-secret-key-v1\n"
#define KEY__PUBLIC_HEADER "ledgermq-ed25519-public-key-v1\n"
#define KEY__FILE_MAX 512

static pthread_once_t sodium__once = PTHREAD_ONCE_INIT;
static int sodium__status;

static void sodium__init_once(void)
{
    sodium__status = sodium_init() < 0 ? -EIO : 0;
}

int crypto_init(void)
{
    pthread_once(&sodium__once, sodium__init_once);
    return sodium__status;
}

int crypto_ed25519_keypair(uint8_t pk[32], uint8_t sk[64])
{
    if (crypto_init() != 0)
        return -EIO;
    return crypto_sign_ed25519_keypair(pk, sk) == 0 ? 0 : -EIO;
}

int crypto_ed25519_seed_keypair(uint8_t pk[32], uint8_t sk[64], const uint8_t seed[32])
{
    if (crypto_init() != 0)
        return -EIO;
    return crypto_sign_ed25519_seed_keypair(pk, sk, seed) == 0 ? 0 : -EIO;
}

void crypto_ed25519_sign(uint8_t sig[64], const void *msg, size_t len, const uint8_t sk[64])
{
    (void)crypto_init();
    crypto_sign_ed25519_detached(sig, NULL, msg, len, sk);
}

int crypto_ed25519_verify(const uint8_t sig[64], const void *msg, size_t len, const uint8_t pk[32])
{
    if (crypto_init() != 0)
        return -EIO;
    return crypto_sign_ed25519_verify_detached(sig, msg, len, pk) == 0 ? 0 : -EBADMSG;
}

/* ---- key files ---- */

static int key__read_all(int fd, char *buf, size_t cap, size_t *len)
{
    size_t n = 0;
    for (;;) {
        if (n == cap)
            return -EINVAL; /* larger than any valid key file */
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    *len = n;
    return 0;
}

/* Matches "<word> <44 base64 chars>\n" at *p and decodes 32 bytes. */
static int key__line(const char **p, const char *end, const char *word, uint8_t out[32])
{
    size_t wl = strlen(word);
    const char *s = *p;
    if ((size_t)(end - s) < wl + 1 + 44 + 1 || memcmp(s, word, wl) != 0 || s[wl] != ' ' ||
        s[wl + 1 + 44] != '\n')
        return -EINVAL;
    if (crypto_b64_decode(s + wl + 1, 44, out, 32) != 32)
        return -EINVAL;
    *p = s + wl + 1 + 44 + 1;
    return 0;
}

/* Opens and reads a key file. want_secret: enforce owner-only mode. */
static int key__read_file(const char *path, int want_secret, char *buf, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -errno;
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        goto out_close;
    }
    if (!S_ISREG(st.st_mode)) {
        LMQ_ERROR("key file %s is not a regular file", path);
        rc = -EPERM;
        goto out_close;
    }
    if (want_secret && (st.st_mode & 077) != 0) {
        LMQ_ERROR("key file %s is accessible by group or others (mode %04o); refusing to use it "
                  "(chmod 600 it, and consider the key compromised if others could read it)",
                  path, (unsigned)(st.st_mode & 07777));
        rc = -EPERM;
        goto out_close;
    }
    rc = key__read_all(fd, buf, KEY__FILE_MAX, len);
out_close:
    close(fd);
    return rc;
}

static int key__parse_secret(const char *buf, size_t len, uint8_t pk[32], uint8_t sk[64])
{
    const char *p = buf, *end = buf + len;
    uint8_t stored_pk[32], seed[32], derived_pk[32];
    int rc = -EINVAL;
    size_t hl = strlen(KEY__SECRET_HEADER);
    if (len < hl || memcmp(p, KEY__SECRET_HEADER, hl) != 0)
        goto out;
    p += hl;
    if (key__line(&p, end, "public", stored_pk) != 0 || key__line(&p, end, "seed", seed) != 0 ||
        p != end)
        goto out;
    if (crypto_ed25519_seed_keypair(derived_pk, sk, seed) != 0) {
        rc = -EIO;
        goto out;
    }
    if (sodium_memcmp(derived_pk, stored_pk, 32) != 0) {
        sodium_memzero(sk, 64);
        goto out;
    }
    memcpy(pk, derived_pk, 32);
    rc = 0;
out:
    sodium_memzero(seed, sizeof seed);
    return rc;
}

int crypto_key_load(const char *path, uint8_t pk[32], uint8_t sk[64])
{
    char buf[KEY__FILE_MAX];
    size_t len = 0;
    int rc = crypto_init();
    if (rc != 0)
        return rc;
    rc = key__read_file(path, 1, buf, &len);
    if (rc == 0) {
        rc = key__parse_secret(buf, len, pk, sk);
        if (rc == -EINVAL)
            LMQ_ERROR("key file %s is malformed (see docs/FORMATS.md, Key files)", path);
    }
    sodium_memzero(buf, sizeof buf);
    return rc;
}

int crypto_pubkey_load(const char *path, uint8_t pk[32])
{
    char buf[KEY__FILE_MAX];
    size_t len = 0;
    int rc = key__read_file(path, 0, buf, &len);
    if (rc != 0)
        goto out;
    const char *p = buf, *end = buf + len;
    size_t sl = strlen(KEY__SECRET_HEADER), pl = strlen(KEY__PUBLIC_HEADER);
    rc = -EINVAL;
    if (len >= sl && memcmp(p, KEY__SECRET_HEADER, sl) == 0) {
        p += sl;
        if (key__line(&p, end, "public", pk) == 0)
            rc = 0; /* the seed line is left undecoded */
    } else if (len >= pl && memcmp(p, KEY__PUBLIC_HEADER, pl) == 0) {
        p += pl;
        if (key__line(&p, end, "public", pk) == 0 && p == end)
            rc = 0;
    }
out:
    sodium_memzero(buf, sizeof buf);
    return rc;
}

static int key__write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

static int key__fsync_dir(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        strcpy(dir, ".");
    } else if (slash == path) {
        strcpy(dir, "/");
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof dir)
            return -ENAMETOOLONG;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) != 0 ? -errno : 0;
    close(fd);
    return rc;
}

/* Removes "<path>.tmp.<pid>" files of processes that no longer exist: a
 * process killed between creating its temp file and unlinking it leaves
 * one (a key, for a secret key file: never left lying around). */
static void key__sweep_stale(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t dlen = slash ? (size_t)(slash - path) : 1;
    if (dlen == 0)
        dlen = 1; /* "/name" */
    if (dlen >= sizeof dir)
        return;
    memcpy(dir, slash ? path : ".", dlen);
    dir[dlen] = '\0';
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    size_t blen = strlen(base);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (strncmp(n, base, blen) != 0 || strncmp(n + blen, ".tmp.", 5) != 0)
            continue;
        char *end;
        errno = 0;
        long pid = strtol(n + blen + 5, &end, 10);
        if (errno || *end || end == n + blen + 5 || pid <= 0 || pid == (long)getpid())
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue; /* alive (or not ours to judge): its writer may still be at work */
        if (unlinkat(dirfd(d), n, 0) == 0)
            LMQ_INFO("removed %s/%s, left by a process killed while writing a key file", dir, n);
    }
    closedir(d);
}

/* Writes content into a fresh file at path: temp file (O_EXCL, mode), fsync,
 * link into place (EEXIST if path exists), unlink temp, fsync directory. */
static int key__publish(const char *path, const char *content, size_t len, mode_t mode)
{
    char tmp[PATH_MAX];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof tmp)
        return -ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 && errno == EEXIST) {
        /* Left by a crashed process that had our pid: nobody alive owns it. */
        unlink(tmp);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    }
    if (fd < 0)
        return -errno;
    int rc = 0;
    if (fchmod(fd, mode) != 0) { /* umask-proof */
        rc = -errno;
        goto fail_unlink;
    }
    rc = key__write_all(fd, content, len);
    if (rc != 0)
        goto fail_unlink;
    if (fsync(fd) != 0) {
        rc = -errno;
        goto fail_unlink;
    }
    if (close(fd) != 0) {
        fd = -1;
        rc = -errno;
        goto fail_unlink;
    }
    fd = -1;
    if (link(tmp, path) != 0) {
        rc = -errno;
        goto fail_unlink;
    }
    unlink(tmp);
    return key__fsync_dir(path);
fail_unlink:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return rc;
}

int crypto_key_load_or_create(const char *path, uint8_t pk[32], uint8_t sk[64], int *created)
{
    if (created != NULL)
        *created = 0;
    key__sweep_stale(path);
    int rc = crypto_key_load(path, pk, sk);
    if (rc != -ENOENT)
        return rc;

    uint8_t seed[32];
    char content[KEY__FILE_MAX];
    char pk64[45], seed64[45];
    randombytes_buf(seed, sizeof seed);
    rc = crypto_ed25519_seed_keypair(pk, sk, seed);
    if (rc != 0)
        goto out;
    crypto_b64_encode(pk, 32, pk64, sizeof pk64);
    crypto_b64_encode(seed, 32, seed64, sizeof seed64);
    int n = snprintf(content, sizeof content, "%spublic %s\nseed %s\n", KEY__SECRET_HEADER, pk64,
                     seed64);
    rc = key__publish(path, content, (size_t)n, 0600);
    if (rc == -EEXIST) {
        /* Another process created it first: use theirs. */
        sodium_memzero(sk, 64);
        rc = crypto_key_load(path, pk, sk);
    } else if (rc == 0) {
        if (created != NULL)
            *created = 1;
    } else {
        LMQ_ERROR("cannot create key file %s: %s", path, strerror(-rc));
        sodium_memzero(sk, 64);
    }
out:
    sodium_memzero(seed, sizeof seed);
    sodium_memzero(seed64, sizeof seed64);
    sodium_memzero(content, sizeof content);
    return rc;
}

int crypto_pubkey_write(const char *path, const uint8_t pk[32])
{
    char content[KEY__FILE_MAX], pk64[45];
    crypto_b64_encode(pk, 32, pk64, sizeof pk64);
    int n = snprintf(content, sizeof content, "%spublic %s\n", KEY__PUBLIC_HEADER, pk64);
    return key__publish(path, content, (size_t)n, 0644);
}
