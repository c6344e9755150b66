/* Ed25519 signing and verification (libsodium) and the node's signing key
 * file. Key file format: docs/FORMATS.md "Key files". Secret key bytes are
 * never logged. All functions may be called from any thread; libsodium is
 * initialised once (crypto_init, called implicitly by every function). */
#ifndef LMQ_CRYPTO_SIGN_H
#define LMQ_CRYPTO_SIGN_H

#include <stddef.h>
#include <stdint.h>

#define CRYPTO_ED25519_PK_LEN 32
#define CRYPTO_ED25519_SK_LEN 64 /* libsodium layout: seed(32) || pk(32) */
#define CRYPTO_ED25519_SEED_LEN 32
#define CRYPTO_ED25519_SIG_LEN 64

/* Initialises libsodium exactly once (thread-safe). 0 or -EIO. */
int crypto_init(void);

/* Fresh random key pair. 0 or -EIO. */
int crypto_ed25519_keypair(uint8_t pk[32], uint8_t sk[64]);
/* Deterministic key pair from a 32-byte seed (tests, key files). */
int crypto_ed25519_seed_keypair(uint8_t pk[32], uint8_t sk[64], const uint8_t seed[32]);
/* sig = Ed25519(sk, msg) (pure Ed25519, RFC 8032). */
void crypto_ed25519_sign(uint8_t sig[64], const void *msg, size_t len, const uint8_t sk[64]);
/* 0 if sig is a valid signature of msg under pk, -EBADMSG otherwise. */
int crypto_ed25519_verify(const uint8_t sig[64], const void *msg, size_t len, const uint8_t pk[32]);

/* Loads the secret key file at path, or creates it (O_CREAT|O_EXCL, mode
 * 0600 enforced with fchmod regardless of umask, fsync'd, then the
 * directory fsync'd) if it does not exist. *created (may be NULL) is set to
 * 1 when a new key was written. Refuses (-EPERM, with a logged reason) a
 * key file that is not a regular file or whose mode grants any permission
 * to group or others. Other errors: -errno of the failing call, -EINVAL for
 * a malformed file (including a public key that does not match the seed).
 * The caller owns pk/sk; wipe sk with sodium_memzero when done. */
int crypto_key_load_or_create(const char *path, uint8_t pk[32], uint8_t sk[64], int *created);
/* Like crypto_key_load_or_create but never creates (-ENOENT). */
int crypto_key_load(const char *path, uint8_t pk[32], uint8_t sk[64]);
/* Reads only the public key, from a secret key file or a public key file
 * (see docs/FORMATS.md); no permission check since nothing secret is
 * returned (the secret line of a key file is not even decoded). */
int crypto_pubkey_load(const char *path, uint8_t pk[32]);
/* Writes a public key file (mode 0644, O_EXCL, fsync'd). */
int crypto_pubkey_write(const char *path, const uint8_t pk[32]);

#endif
