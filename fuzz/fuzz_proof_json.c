/* libFuzzer target: the consistency proof JSON parser (ledger/proof_json.c,
 * the reply of $ledger/consistency that `ledgermq watch` reads from the
 * network). Invariant: whatever parses writes back to JSON that parses to
 * the same sizes and hashes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ledger/proof_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t proof[MERKLE_MAX_PROOF][32], again[MERKLE_MAX_PROOF][32];
    static char out[64 * 50 + 128];
    uint64_t o, n, o2, n2;
    size_t k, k2;
    if (proof_json_parse_consistency((const char *)data, size, &o, &n, proof, &k) != 0)
        return 0;
    ssize_t w = proof_json_write_consistency(o, n, (const uint8_t(*)[32])proof, k, out, sizeof out);
    if (w < 0)
        abort();
    if (proof_json_parse_consistency(out, (size_t)w, &o2, &n2, again, &k2) != 0 || o2 != o ||
        n2 != n || k2 != k || memcmp(proof, again, k * 32) != 0)
        abort();
    return 0;
}
