/* C2SP tlog-checkpoint bodies (https://c2sp.org/tlog-checkpoint) and their
 * signing/verification as signed notes. Body:
 *   <origin>\n<size decimal>\n<base64 root>\n[extension lines\n]
 * ledgermq puts one extension line "block <height> <64 hex>" naming the
 * block header hash covering this tree size (docs/FORMATS.md "Checkpoints").
 * Pure, no allocation; parsed strings are views into the input. */
#ifndef LMQ_LEDGER_CHECKPOINT_H
#define LMQ_LEDGER_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "crypto/note.h"

#define CHECKPOINT_MAX_BODY 4096

enum checkpoint_err {
    CHECKPOINT_ERR_MALFORMED = -200, /* body does not follow the grammar */
    CHECKPOINT_ERR_SPACE = -201,
    CHECKPOINT_ERR_ARGS = -202,
    CHECKPOINT_ERR_ORIGIN = -203, /* verified, but the origin is not the expected one */
};

struct checkpoint {
    const char *origin; /* not NUL-terminated after parse */
    size_t origin_len;
    uint64_t size;
    uint8_t root[32];
    bool has_block; /* the "block <height> <hex>" extension line */
    uint64_t block_height;
    uint8_t block_hash[32];
    /* Other extension lines, verbatim, each ending in '\n' (may be NULL/0).
     * On format they are written after the block line; on parse this view
     * covers all extension lines other than the block line. */
    const char *ext;
    size_t ext_len;
};

/* Writes the body (NUL-terminated) into out; returns its length or
 * CHECKPOINT_ERR_*. The origin must be a valid note key name (it is the
 * log's key name too). */
ssize_t checkpoint_format(const struct checkpoint *cp, char *out, size_t cap);
/* Strict parse: non-empty origin without control chars, size decimal
 * without leading zeros (except "0"), root exactly 32 bytes of canonical
 * base64, extension lines non-empty, at most one block line and it must be
 * well-formed. 0 or CHECKPOINT_ERR_MALFORMED. */
int checkpoint_parse(const char *body, size_t len, struct checkpoint *cp);

/* Formats and signs with the log key (name = origin). Returns note length. */
ssize_t checkpoint_sign(const struct checkpoint *cp, const uint8_t sk[64], const uint8_t pk[32],
                        char *out, size_t cap);

/* Verifies the signed note with the verifiers, requires at least quorum
 * of them to have signed (quorum 0 = at least one), parses the body into
 * cp (views into note), and if origin != NULL requires that origin.
 * signed_by may be NULL (else n_verifiers entries). Returns 0, a NOTE_ERR_*
 * or CHECKPOINT_ERR_*. */
int checkpoint_verify(const char *note, size_t note_len, const struct note_verifier *verifiers,
                      size_t n_verifiers, size_t quorum, const char *origin, bool *signed_by,
                      struct checkpoint *cp);

#endif
