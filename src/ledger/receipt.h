/* Receipts: what a publisher or auditor keeps to prove, offline, that a
 * record is in the ledger. JSON form (DESIGN.md, docs/FORMATS.md
 * "Receipts"):
 *   {"index": N, "tree_size": M, "record": "<base64>",
 *    "proof": ["<base64 hash>", ...], "checkpoint": "<signed note>"}
 * and the C2SP tlog-proof@v1 text form. The JSON parser is strict and
 * small: exactly these five members (any order, each once), no other
 * members. Pure, no allocation; any thread. */
#ifndef LMQ_LEDGER_RECEIPT_H
#define LMQ_LEDGER_RECEIPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "crypto/note.h"
#include "ledger/checkpoint.h"
#include "ledger/merkle.h"

#define RECEIPT_MAX_JSON (8 << 20)

enum receipt_err {
    RECEIPT_ERR_MALFORMED = -300, /* JSON or member value malformed */
    RECEIPT_ERR_SPACE = -301,
    RECEIPT_ERR_SIZE = -302,  /* tree_size differs from the checkpoint size */
    RECEIPT_ERR_PROOF = -303, /* inclusion proof does not lead to the root */
    RECEIPT_ERR_ARGS = -304,
};

struct receipt {
    uint64_t index;
    uint64_t tree_size;
    const uint8_t *record; /* record bytes (parse: in the scratch buffer) */
    size_t record_len;
    uint8_t proof[MERKLE_MAX_PROOF][32];
    size_t n_proof;
    const char *checkpoint; /* signed note text (parse: in the scratch buffer) */
    size_t checkpoint_len;
};

/* Writes the JSON (NUL-terminated, one line, followed by no newline).
 * Returns its length or RECEIPT_ERR_SPACE. */
ssize_t receipt_write(const struct receipt *r, char *out, size_t cap);

/* Parses JSON; the decoded record and unescaped checkpoint are stored in
 * scratch (needs about len bytes), which must outlive r. 0 or
 * RECEIPT_ERR_MALFORMED / RECEIPT_ERR_SPACE. */
int receipt_parse(const char *json, size_t len, uint8_t *scratch, size_t scratch_cap,
                  struct receipt *r);

/* Checks: the checkpoint verifies with at least quorum of the verifiers
 * (quorum 0 = at least one), its size equals tree_size, index < size, and
 * the inclusion proof of SHA-256(0x00 || record) leads to its root. If
 * origin != NULL the checkpoint origin must equal it. cp (may be NULL)
 * receives the parsed checkpoint. 0 or the first error found. */
int receipt_verify(const struct receipt *r, const struct note_verifier *verifiers,
                   size_t n_verifiers, size_t quorum, const char *origin, struct checkpoint *cp);

/* C2SP tlog-proof@v1 (https://c2sp.org/tlog-proof): header line, optional
 * "extra <base64>" line (extra may be NULL), "index N", proof hashes, an
 * empty line, the checkpoint note verbatim. Returns length or
 * RECEIPT_ERR_SPACE. */
ssize_t receipt_write_tlog_proof(const struct receipt *r, const uint8_t *extra, size_t extra_len,
                                 char *out, size_t cap);

/* Parses a tlog-proof@v1 text. Fills index, n_proof/proof, checkpoint
 * (a view into text) and tree_size (from the checkpoint body, not yet
 * verified); record stays NULL (a tlog-proof does not carry it: the
 * verifier has the record). The optional extra data is returned as a view
 * of its base64 (may be NULL). 0 or RECEIPT_ERR_MALFORMED. */
int receipt_parse_tlog_proof(const char *text, size_t len, struct receipt *r,
                             const char **extra_b64, size_t *extra_b64_len);

#endif
