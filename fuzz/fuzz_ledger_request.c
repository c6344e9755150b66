/* libFuzzer target: what a client sends to the ledger's MQTT topics
 * (broker/ledger_api.c): $ledger/proof, $ledger/consistency and
 * $ledger/registry request payloads, and SUBSCRIBE filters judged against
 * the $ledger/receipts rule, all fed the same bytes. Invariants: a proof query that parses as
 * an index or a hash formats back to an equivalent query; a consistency
 * query's sizes format back to a query that parses to the same sizes; a
 * registry query formats back to one that parses to the same query; a
 * client may always subscribe to its own receipts topic. */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/ledger_api.h"
#include "crypto/hash.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t index, idx2, o, n, o2, n2;
    uint8_t hash[32], hash2[32];
    char buf[128];
    int k = lmq_ledger_api_parse_proof_query(data, size, &index, hash);
    if (k == 1) {
        int w = snprintf(buf, sizeof buf, "%" PRIu64, index);
        if (lmq_ledger_api_parse_proof_query((const uint8_t *)buf, (size_t)w, &idx2, hash2) != 1 ||
            idx2 != index)
            abort();
    } else if (k == 2) {
        crypto_hex_encode(hash, 32, buf, sizeof buf);
        if (lmq_ledger_api_parse_proof_query((const uint8_t *)buf, 64, &idx2, hash2) != 2 ||
            memcmp(hash, hash2, 32) != 0)
            abort();
    } else if (k != 0) {
        abort();
    }
    if (lmq_ledger_api_parse_consistency_query(data, size, &o, &n) == 0) {
        int w = snprintf(buf, sizeof buf, "%" PRIu64 " %" PRIu64, o, n);
        if (lmq_ledger_api_parse_consistency_query((const uint8_t *)buf, (size_t)w, &o2, &n2) !=
                0 ||
            o2 != o || n2 != n)
            abort();
    }
    struct lmq_ledger_registry_query q, q2;
    if (lmq_ledger_api_parse_registry_query(data, size, &q) == 0) {
        int w;
        if (q.kind == LMQ_LEDGER_REGISTRY_SHOW)
            w = snprintf(buf, sizeof buf, "show %s", q.id);
        else
            w = snprintf(buf, sizeof buf, "list %s%s%" PRIu32, q.has_id ? q.id : "",
                         q.has_id ? " " : "", q.limit);
        if ((q.kind == LMQ_LEDGER_REGISTRY_SHOW && !q.has_id) || q.limit == 0 ||
            q.limit > LMQ_LEDGER_REGISTRY_PAGE_MAX ||
            lmq_ledger_api_parse_registry_query((const uint8_t *)buf, (size_t)w, &q2) != 0 ||
            q2.kind != q.kind || q2.has_id != q.has_id || strcmp(q2.id, q.id) != 0 ||
            q2.limit != q.limit)
            abort();
    }
    /* as a filter, and as a client id (NUL-free prefix) */
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    (void)lmq_ledger_api_may_subscribe("client-1", s, size);
    size_t idl = strlen(s);
    if (idl && idl < 256 && !strpbrk(s, "+#")) {
        char own[300];
        int w = snprintf(own, sizeof own, "$ledger/receipts/%s", s);
        if (!lmq_ledger_api_may_subscribe(s, own, (size_t)w))
            abort();
    }
    free(s);
    return 0;
}
