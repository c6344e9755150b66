/* Password files for operators and legacy clients (docs/FORMATS.md
 * "Password file"): one `username:hash` per line, hash a libsodium
 * crypto_pwhash_str string (argon2id, salted, parameters inside), `#`
 * comments and blank lines ignored. A loaded file is immutable: verify
 * may run on any number of worker threads at once (it is slow by design —
 * never call it on the network thread). */
#ifndef LMQ_IDENTITY_PWFILE_H
#define LMQ_IDENTITY_PWFILE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PWFILE_USER_MAX 256

enum pwfile_err {
    PWFILE_ERR_NO_USER = -2300,  /* unknown user (verify still spends the time of a hash) */
    PWFILE_ERR_MISMATCH = -2301, /* wrong password */
    PWFILE_ERR_SYNTAX = -2302,   /* load: malformed line; err names file:line */
    PWFILE_ERR_IO = -2303,
    PWFILE_ERR_NOMEM = -2304,
    PWFILE_ERR_ARGS = -2305,     /* bad user name, or hashing failed */
    PWFILE_ERR_SPACE = -2306,
};

struct pwfile;

int pwfile_parse(const char *text, size_t len, const char *name, struct pwfile **out, char *err,
                 size_t errlen);
int pwfile_load(const char *path, struct pwfile **out, char *err, size_t errlen);
void pwfile_free(struct pwfile *pw);
size_t pwfile_count(const struct pwfile *pw);

/* 0 if user exists and password[0:len] matches its hash (libsodium's
 * verification; the stored hash is compared in constant time). For an
 * unknown user a dummy hash is verified anyway so that timing does not
 * reveal which users exist. */
int pwfile_verify(const struct pwfile *pw, const char *user, const char *password, size_t len);

/* 1 if the user's hash was made with other parameters than (opslimit,
 * memlimit) and should be replaced; 0 if not; PWFILE_ERR_NO_USER. */
int pwfile_needs_rehash(const struct pwfile *pw, const char *user, unsigned long long opslimit,
                        size_t memlimit);

/* Writes "user:hash\n" (NUL-terminated) into out: a fresh salt, argon2id
 * with opslimit/memlimit (0, 0 = libsodium's INTERACTIVE defaults). Names
 * may not be empty, longer than PWFILE_USER_MAX, or contain ':', control
 * characters or start with '#'. Returns the length or an error. */
ssize_t pwfile_make_line(const char *user, const char *password, size_t len,
                         unsigned long long opslimit, size_t memlimit, char *out, size_t cap);

#endif
