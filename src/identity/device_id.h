/* Device ids: the printable name of a device, derived from its Ed25519
 * public key so that an id can never point at a different key:
 *   "d-" || base32lower_nopad(SHA-256("ledgermq device v1" || pk)[0:20])
 * always 34 characters (docs/FORMATS.md "Device id"). Pure, any thread. */
#ifndef LMQ_IDENTITY_DEVICE_ID_H
#define LMQ_IDENTITY_DEVICE_ID_H

#include <stddef.h>
#include <stdint.h>

#define DEVICE_ID_LEN 34 /* characters, without NUL */
#define DEVICE_ID_DOMAIN "ledgermq device v1"

/* Writes the id of pk and a NUL into out. */
void device_id_from_pk(const uint8_t pk[32], char out[DEVICE_ID_LEN + 1]);

/* 1 if id[0:len] has the syntax of a device id ("d-" and 32 characters of
 * [a-z2-7]), else 0. */
int device_id_valid(const char *id, size_t len);

/* 1 if id[0:len] is the id of pk (constant-time compare), else 0. */
int device_id_matches(const char *id, size_t len, const uint8_t pk[32]);

#endif
