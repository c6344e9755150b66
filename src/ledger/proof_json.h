/* The consistency proof as JSON, the reply of the broker's
 * $ledger/consistency topic (docs/FORMATS.md "Ledger topics"):
 *   {"old_size": M, "new_size": N, "proof": ["<base64 hash>", ...]}
 * written on one line in this member order; the parser accepts any JSON
 * whitespace and member order but exactly these three members, each once,
 * sizes as plain decimal JSON integers and hashes as canonical base64 of
 * 32 bytes, at most MERKLE_MAX_PROOF of them. Pure, no allocation; any
 * thread. */
#ifndef LMQ_LEDGER_PROOF_JSON_H
#define LMQ_LEDGER_PROOF_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ledger/merkle.h"

enum proof_json_err {
    PROOF_JSON_ERR_MALFORMED = -310,
    PROOF_JSON_ERR_SPACE = -311,
};

/* Writes the JSON (NUL-terminated); its length or PROOF_JSON_ERR_SPACE. */
ssize_t proof_json_write_consistency(uint64_t old_size, uint64_t new_size,
                                     const uint8_t proof[][32], size_t n, char *out, size_t cap);

/* Parses it: 0 or PROOF_JSON_ERR_MALFORMED. proof holds MERKLE_MAX_PROOF. */
int proof_json_parse_consistency(const char *json, size_t len, uint64_t *old_size,
                                 uint64_t *new_size, uint8_t proof[][32], size_t *n);

#endif
