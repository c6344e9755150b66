/* The payload store of private ledgered topics (`ledger_topic ... private`):
 * the ledger record of such a message holds only SHA-256(salt || payload)
 * (docs/FORMATS.md "Kind 1: message", key 4); the salt and the payload live
 * here, in an LMDB environment under <datadir>/payloads/, keyed by that
 * digest. Deleting one entry (redaction, a later issue) erases the payload
 * and its salt without touching the log: the record stays verifiable in
 * the Merkle tree, and whoever kept payload and salt can still prove what
 * it was. Layout: docs/FORMATS.md "Payload store".
 *
 * An entry is written (and synced, unless ledger_sync is batch) before the
 * batch holding its record is appended, so a committed digest always has
 * its payload unless it was deleted on purpose; an entry whose record never
 * made it into the log (crash between the two) is harmless garbage.
 *
 * Threads: one writer thread at a time (the ledger committer); get and
 * delete from any thread (LMDB transactions of their own). */
#ifndef LMQ_BROKER_PAYSTORE_H
#define LMQ_BROKER_PAYSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PAYSTORE_SALT_LEN 32
#define PAYSTORE_VERSION 1

enum paystore_kind {
    PAYSTORE_PAYLOAD = 1,  /* the PUBLISH payload of an attested message */
    PAYSTORE_ENVELOPE = 2, /* the COSE_Sign1 envelope of a signed message (its payload
                              is the one the digest covers) */
};

struct lmq_paystore;

struct paystore_entry {
    uint8_t digest[32]; /* SHA-256(salt || payload): the key */
    uint8_t salt[PAYSTORE_SALT_LEN];
    uint8_t kind; /* enum paystore_kind */
    const uint8_t *data;
    size_t len;
};

/* Opens (creating) <datadir>/payloads/. NOSYNC: leave syncing to the OS. */
int paystore_open(const char *datadir, bool nosync, struct lmq_paystore **out, char *err,
                  size_t errlen);
void paystore_close(struct lmq_paystore *ps);

/* Writes N entries in one transaction (durable on return unless nosync).
 * 0 or a negative errno / LMDB code. */
int paystore_put(struct lmq_paystore *ps, const struct paystore_entry *e, size_t n);

/* Copies the entry of DIGEST: salt, kind, and the data into buf (cap
 * bytes; *len = its size; -ENOSPC if cap is too small). 0, -ENOENT. */
int paystore_get(struct lmq_paystore *ps, const uint8_t digest[32], uint8_t salt[32], uint8_t *kind,
                 uint8_t *buf, size_t cap, size_t *len);

/* Deletes the entry of DIGEST. 0, -ENOENT, or an error. */
int paystore_delete(struct lmq_paystore *ps, const uint8_t digest[32]);

#endif
