/* Offline audit of a ledger data directory: recomputes every leaf hash and
 * every stored Merkle node, every block hash and chain link, verifies every
 * checkpoint signature, and checks each checkpoint consistent with the one
 * before it. Reads the files directly (never through ledger_open, which
 * would refuse a damaged log), takes no lock and writes nothing, so it can
 * run beside a live writer. Memory does not grow with the log. */
#ifndef LMQ_LEDGER_AUDIT_H
#define LMQ_LEDGER_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/note.h"

struct ledger_audit_stats {
    uint64_t records;   /* records recomputed */
    uint64_t blocks;    /* blocks (and checkpoints) verified */
    uint64_t bytes;     /* segment bytes read */
    uint64_t problems;  /* mismatches found (0 = verified) */
    uint64_t warnings;  /* benign findings (uncommitted tail, lagging derived files) */
    uint64_t tree_size; /* size of the last verified checkpoint */
    uint8_t root[32];   /* its root */
};

/* Called once per finding. problem = true for tampering/damage, false for
 * a warning. line names the file (relative to the data dir) and the byte
 * offset, and the record index or block height where there is one. */
typedef void (*ledger_audit_report_fn)(void *ctx, bool problem, const char *line);
/* Called about once a second: records done and the expected total. */
typedef void (*ledger_audit_progress_fn)(void *ctx, uint64_t done, uint64_t total);

/* Audits <datadir>/ledger. key: the verifier to check checkpoints with
 * (NULL = the public key in <datadir>/node.key; its name must equal the
 * ledger origin). Returns 0 if everything verified, LEDGER_ERR_CORRUPT
 * (log.h) if any problem was reported, or a negative errno if the ledger
 * could not be read at all (err then says why). Callbacks may be NULL.
 * Single-threaded; any thread. */
int ledger_audit(const char *datadir, const struct note_verifier *key,
                 ledger_audit_report_fn report, ledger_audit_progress_fn progress, void *ctx,
                 struct ledger_audit_stats *stats, char *err, size_t errlen);

#endif
