/* The device registry: the state of every device as the ledger's registry
 * records (kinds 3 registration, 4 revocation, 5 key rotation; layouts in
 * docs/FORMATS.md "Registry records") define it, applied in ledger order
 * by deterministic rules, so that every node computing it from the same
 * ledger and the same operator keys gets the same registry:
 *   - the operator signature must verify, and the operator's verifier key
 *     string must be one of the configured operator keys (exact match);
 *   - registration: the device id must be the id of the public key, the id
 *     must not be registered yet and the key must not be (or have been) the
 *     key of any device;
 *   - revocation: the device must be registered and not revoked;
 *   - rotation: the device must be registered and not revoked, the new key
 *     must never have been used by any device; the device id does not
 *     change (it stays the id of the first key).
 * A record breaking a rule stays in the ledger but has no effect.
 * Message records (kind 1) of an active device that carry a device
 * sequence number advance its last accepted sequence number (the replay
 * slot).
 *
 * The index is an LMDB environment in <datadir>/registry/ (devices by id,
 * device id by public key, and meta: the ledger size and root it reflects
 * and a fingerprint of the operator key set). It is derived data:
 * registry_sync catches up with the ledger, and rebuilds from record 0
 * when the index is missing, reflects a ledger that is not a prefix of
 * this one, or was built with other operator keys. At 1M devices it holds
 * about 1M x ~0.5 KB values; lookups are O(log n) B-tree reads from the
 * page cache, nothing is loaded into the heap on open.
 *
 * Threads: one struct registry per process; lookups (registry_lookup*,
 * registry_foreach, registry_check) may run on any thread concurrently
 * (each uses its own read transaction); registry_sync on one thread at a
 * time (it starts short-lived threads of its own to verify operator
 * signatures when a chunk holds many registry records). Other processes
 * may sync the same index: LMDB serialises their writes and a sync that
 * finds the index moved under it starts over.
 *
 * Cost: a rebuild is bound by Ed25519 verification of the registry
 * records (measured 17k records/s on this 2-core machine, so ~1 min per
 * 1M devices); the index takes ~850 bytes per device on disk; a lookup
 * ~2-3 us. */
#ifndef LMQ_IDENTITY_REGISTRY_H
#define LMQ_IDENTITY_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/note.h"
#include "identity/device_id.h"
#include "ledger/log.h"
#include "ledger/record.h"

#define REGISTRY_MAX_OPERATORS 128
#define REGISTRY_RECORD_MAX 16384 /* bytes of one registry record */

enum registry_status {
    REGISTRY_ACTIVE = 1,
    REGISTRY_REVOKED = 2,
};

enum registry_err {
    REGISTRY_ERR_NOT_REGISTRY = -2400, /* not a (decodable) registry record */
    REGISTRY_ERR_OPERATOR = -2401,     /* signed by a key that is not a configured operator key */
    REGISTRY_ERR_SIGNATURE = -2402,    /* operator signature does not verify */
    REGISTRY_ERR_ID_MISMATCH = -2403,  /* registration: id is not the id of the public key */
    REGISTRY_ERR_EXISTS = -2404,       /* registration of an already registered id */
    REGISTRY_ERR_KEY_IN_USE = -2405,   /* key is or was the key of a device */
    REGISTRY_ERR_UNKNOWN = -2406,      /* revocation or rotation of an unknown id */
    REGISTRY_ERR_REVOKED = -2407,      /* revocation or rotation of a revoked device */
    REGISTRY_ERR_DB = -2408,           /* LMDB failure (reason logged) */
    REGISTRY_ERR_ARGS = -2409,         /* bad argument (too many operators, ...) */
};

const char *registry_strerror(int err);

struct registry_options {
    /* Trusted operator verifier keys (Ed25519, type 0x01), e.g. the
     * config's operator_key lines. Copied by registry_open. */
    const struct note_verifier *operators;
    size_t n_operators;
    uint64_t map_size_max; /* LMDB map limit in bytes; 0 = 64 GiB */
};

struct registry;

/* A device as the registry knows it. registration views storage. */
struct registry_device {
    char id[DEVICE_ID_LEN + 1];
    enum registry_status status;
    uint8_t public_key[32];    /* current key (after rotations) */
    uint64_t registered_index; /* ledger index of the registration record */
    uint64_t updated_index;    /* ledger index of the last record that changed it */
    uint64_t n_rotations;
    uint64_t rotated_at_ms; /* time of the last rotation (0 if none) */
    uint64_t revoked_index; /* valid when status == REGISTRY_REVOKED */
    uint64_t revoked_at_ms;
    struct ledger_bytes reason; /* revocation reason (views storage; ptr NULL if none) */
    bool has_last_seq;          /* replay slot: highest device sequence number */
    uint64_t last_seq;          /* accepted on the ledger for this device */
    uint64_t last_seq_index;
    struct ledger_record registration; /* the decoded kind 3 record: name, attributes,
                                          registered-at time, operator */
    uint8_t storage[REGISTRY_RECORD_MAX + 512];
};

/* What a registry_sync did. */
struct registry_sync_result {
    bool rebuilt;         /* the index was (re)built from record 0 */
    uint64_t from;        /* first ledger index examined */
    uint64_t to;          /* ledger size now reflected */
    uint64_t applied;     /* registry records applied */
    uint64_t refused;     /* registry records refused by the rules */
    uint64_t seq_updates; /* message records that advanced a replay slot */
};

/* Called by registry_sync for each refused registry record. */
typedef void (*registry_refused_fn)(void *ctx, uint64_t index, int err);

/* Opens (creating <datadir>/registry/ if needed) the index. Does not read
 * the ledger: call registry_sync before trusting lookups. On failure a
 * negative code and a one-line reason in err. Caller owns *out. */
int registry_open(const char *datadir, const struct registry_options *opts, struct registry **out,
                  char *err, size_t errlen);
void registry_close(struct registry *r);

/* Brings the index up to the ledger's current size (rebuilding it if it is
 * lost, ahead, of another ledger or of other operator keys). Commits every
 * few thousand records with the ledger size and root they reflect, so an
 * interrupted sync resumes. res and on_refused may be NULL. 0,
 * REGISTRY_ERR_DB, or a ledger error (negative) reading a record. */
int registry_sync(struct registry *r, struct ledger *l, struct registry_sync_result *res,
                  registry_refused_fn on_refused, void *ctx);

/* Drops the index and rebuilds it from record 0 (registry_sync after a
 * wipe). */
int registry_rebuild(struct registry *r, struct ledger *l, struct registry_sync_result *res,
                     registry_refused_fn on_refused, void *ctx);

/* Ledger size the index reflects. */
uint64_t registry_ledger_size(struct registry *r);

/* Would the registry record rec[0:len] be applied if appended now? 0, or
 * the REGISTRY_ERR_* / LEDGER_REC_ERR_* / CBOR_ERR_* it would be refused
 * with. Only meaningful on an index synced with the ledger. */
int registry_check(struct registry *r, const uint8_t *rec, size_t len);

/* 0 and *out, -ENOENT, or REGISTRY_ERR_DB. */
int registry_lookup(struct registry *r, const char *id, size_t id_len, struct registry_device *out);
/* What a signature check needs of a device (registry_lookup_pks). */
struct registry_pk_query {
    const char *id; /* DEVICE_ID_LEN characters */
    int rc;         /* 0, -ENOENT or a REGISTRY_ERR_* */
    bool revoked;
    uint8_t pk[32]; /* current key (after rotations), when rc is 0 */
};

/* Looks q[0..n) up in one read transaction, decoding only the status and
 * the current key (not the registration record registry_lookup decodes
 * too): the broker's lookups, one per signed message. Sets every q[i].rc;
 * returns 0, or the error that left them all unanswered. Any thread. */
int registry_lookup_pks(struct registry *r, struct registry_pk_query *q, size_t n);

/* The device whose current or former key is pk: 0 and its id, -ENOENT. */
int registry_lookup_key(struct registry *r, const uint8_t pk[32], char id[DEVICE_ID_LEN + 1]);

/* Calls fn for every device in id order; stops early when fn returns
 * non-zero (and returns that value). dev is valid only during the call. */
int registry_foreach(struct registry *r, int (*fn)(void *ctx, const struct registry_device *dev),
                     void *ctx);
/* The same from the first id greater than after[0:after_len] (after NULL:
 * from the first id), for paging. */
int registry_foreach_after(struct registry *r, const char *after, size_t after_len,
                           int (*fn)(void *ctx, const struct registry_device *dev), void *ctx);

/* Signs a registry record for an operator: sets rec->reg.operator_key to
 * op_vkey and rec->reg.signature, then encodes it into buf. rec->kind is
 * 3, 4 or 5 with the other fields filled. sig_buf (64 bytes) holds the
 * signature the record points at. 0 and *len or a LEDGER_REC_ERR_* /
 * CBOR_ERR_SPACE. Pure, any thread. */
int registry_sign_record(struct ledger_record *rec, const char *op_vkey, const uint8_t sk[64],
                         uint8_t sig_buf[64], uint8_t *buf, size_t cap, size_t *len);

/* Checks rec's operator signature (rec decoded by ledger_record_decode)
 * against the given operators: 0, REGISTRY_ERR_OPERATOR,
 * REGISTRY_ERR_SIGNATURE, REGISTRY_ERR_NOT_REGISTRY. Pure, any thread. */
int registry_verify_signature(const struct ledger_record *rec, const struct note_verifier *ops,
                              size_t n_ops);

#endif
