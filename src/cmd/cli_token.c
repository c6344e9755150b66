/* `ledgermq token` and `ledgermq passwd`: credentials for ledgermqd's
 * CONNECT authentication (docs/BROKER.md "Authentication").
 * token writes a CWT device token (docs/FORMATS.md "Device token (CWT)"),
 * the MQTT password of a device, signed with its key; passwd adds or
 * replaces a user in a password file (argon2id, salted; mode 0600). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "cmd/cli.h"
#include "crypto/sign.h"
#include "identity/cwt.h"
#include "identity/device_id.h"
#include "identity/pwfile.h"

int cli_token(struct cli *c, int argc, char **argv)
{
    const char *key = NULL, *aud = c->origin, *kid = NULL;
    uint64_t ttl = 300, iat = 0;
    bool has_iat = false, hex = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--key") == 0 && i + 1 < argc) {
            key = argv[++i];
        } else if (strcmp(argv[i], "--aud") == 0 && i + 1 < argc) {
            aud = argv[++i];
        } else if (strcmp(argv[i], "--ttl") == 0 && i + 1 < argc) {
            if (cli_parse_u64(argv[++i], &ttl) || ttl == 0 || ttl > 86400 * 366)
                return cli_error(CLI_ERR, "--ttl: seconds from 1 to 31622400");
        } else if (strcmp(argv[i], "--iat") == 0 && i + 1 < argc) {
            if (cli_parse_u64(argv[++i], &iat) || iat > (uint64_t)INT64_MAX / 2)
                return cli_error(CLI_ERR, "--iat: seconds since the epoch");
            has_iat = true;
        } else if (strcmp(argv[i], "--id") == 0 && i + 1 < argc) {
            kid = argv[++i];
        } else if (strcmp(argv[i], "--hex") == 0) {
            hex = true;
        } else {
            return cli_error(CLI_ERR, "token: unexpected argument '%s'", argv[i]);
        }
    }
    if (key == NULL || aud == NULL)
        return cli_error(CLI_ERR, "token: --key KEYFILE and --aud ORIGIN (or -c CONFIG for its "
                                  "ledger_origin) are required");
    if (kid != NULL && !device_id_valid(kid, strlen(kid)))
        return cli_error(CLI_ERR, "--id %s: not a device id", kid);
    if (!has_iat)
        iat = (uint64_t)time(NULL);
    uint8_t pk[32], sk[64];
    int rc = crypto_key_load(key, pk, sk);
    if (rc)
        return cli_error(CLI_ERR, "%s: cannot load the key: %s", key,
                         rc == -EINVAL ? "malformed key file" : strerror(-rc));
    char id[DEVICE_ID_LEN + 1];
    device_id_from_pk(pk, id);
    if (kid == NULL)
        kid = id; /* after a key rotation, pass the device's id with --id */
    uint8_t cti[16], out[1024];
    size_t n;
    randombytes_buf(cti, sizeof cti);
    rc = cwt_make(kid, aud, (int64_t)iat, (int64_t)(iat + ttl), cti, sizeof cti, sk, out,
                  sizeof out, &n);
    sodium_memzero(sk, sizeof sk);
    if (rc)
        return cli_error(CLI_ERR, "token: %s", cwt_strerror(rc));
    if (hex) {
        for (size_t i = 0; i < n; i++)
            printf("%02x", out[i]);
        printf("\n");
    } else if (fwrite(out, 1, n, stdout) != n) {
        return cli_error(CLI_ERR, "stdout: write failed");
    }
    return fflush(stdout) == 0 ? CLI_OK : cli_error(CLI_ERR, "stdout: write failed");
}

/* Reads one line (the password) from stdin, without its newline. */
static int cli__read_password(char *buf, size_t cap, size_t *len)
{
    if (!fgets(buf, (int)cap, stdin))
        return -1;
    size_t n = strlen(buf);
    if (n && buf[n - 1] == '\n')
        buf[--n] = '\0';
    else if (n == cap - 1)
        return -1; /* too long */
    if (n && buf[n - 1] == '\r')
        buf[--n] = '\0';
    *len = n;
    return 0;
}

int cli_passwd(struct cli *c, int argc, char **argv)
{
    (void)c;
    const char *file = NULL, *user = NULL;
    bool del = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--file") == 0 && i + 1 < argc)
            file = argv[++i];
        else if (strcmp(argv[i], "--delete") == 0)
            del = true;
        else if (argv[i][0] != '-' && !user)
            user = argv[i];
        else
            return cli_error(CLI_ERR, "passwd: unexpected argument '%s'", argv[i]);
    }
    if (!file || !user)
        return cli_error(CLI_ERR, "passwd: --file FILE and USER are required");
    char line[1024];
    char pw[1024];
    size_t pwlen = 0;
    if (!del) {
        if (cli__read_password(pw, sizeof pw, &pwlen) != 0 || pwlen == 0)
            return cli_error(CLI_ERR, "passwd: give the password on one line of stdin "
                                      "(1 to 1022 bytes)");
        ssize_t ln = pwfile_make_line(user, pw, pwlen, 0, 0, line, sizeof line);
        sodium_memzero(pw, sizeof pw);
        if (ln < 0)
            return cli_error(CLI_ERR,
                             "passwd: user name '%s' not allowed (no ':', control "
                             "characters or leading '#'; 1 to 256 bytes)",
                             user);
    }
    /* The old file minus USER's line, then the new line: written to a
     * temporary file (0600) and renamed over the old one. */
    char *old = NULL;
    size_t oldlen = 0;
    int rc = cli_read_file(file, &old, &oldlen);
    if (rc && rc != -ENOENT)
        return cli_error(CLI_ERR, "%s: %s", file, strerror(-rc));
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", file) >= (int)sizeof tmp) {
        free(old);
        return cli_error(CLI_ERR, "%s: path too long", file);
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        if (fd >= 0)
            close(fd);
        free(old);
        return cli_error(CLI_ERR, "%s: %s", tmp, strerror(errno));
    }
    size_t ul = strlen(user);
    bool found = false;
    for (char *p = old; p && *p;) {
        char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) + 1 : strlen(p);
        if (n > ul && strncmp(p, user, ul) == 0 && p[ul] == ':')
            found = true;
        else
            fwrite(p, 1, n, f);
        if (n && p[n - 1] != '\n')
            fputc('\n', f);
        p += n;
    }
    free(old);
    if (!del)
        fputs(line, f);
    sodium_memzero(line, sizeof line);
    if (fflush(f) != 0 || fsync(fileno(f)) != 0 || fclose(f) != 0) {
        unlink(tmp);
        return cli_error(CLI_ERR, "%s: write failed", tmp);
    }
    if (rename(tmp, file) != 0) {
        unlink(tmp);
        return cli_error(CLI_ERR, "%s: %s", file, strerror(errno));
    }
    if (del && !found)
        return cli_error(CLI_FAIL, "passwd: no user '%s' in %s", user, file);
    fprintf(stderr, "%s user '%s' in %s\n",
            del     ? "deleted"
            : found ? "updated"
                    : "added",
            user, file);
    return CLI_OK;
}
