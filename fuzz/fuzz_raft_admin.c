/* libFuzzer target: the $ledger/admin/cluster request parser
 * (cluster/raft_admin.c), which reads what an MQTT client publishes.
 * Invariants: a parsed request is one of the three ops with an id in
 * 1..2^63-1 (transfer: or 0), an add has an address that passes
 * lmq_raft_address_check and the others none; written back as canonical
 * JSON it parses to the same request; a refusal has a reason. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/raft_admin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lmq_raft_admin_req r, again;
    char err[256];
    err[0] = '\0';
    if (lmq_raft_admin_parse(data, size, &r, err, sizeof err) != 0) {
        if (err[0] == '\0' || strlen(err) >= sizeof err)
            abort();
        return 0;
    }
    if (r.op < LMQ_RAFT_ADMIN_ADD || r.op > LMQ_RAFT_ADMIN_TRANSFER || r.id > (uint64_t)INT64_MAX ||
        (r.id == 0 && r.op != LMQ_RAFT_ADMIN_TRANSFER))
        abort();
    if ((r.op == LMQ_RAFT_ADMIN_ADD) != (r.address[0] != '\0'))
        abort();
    if (r.op == LMQ_RAFT_ADMIN_ADD && lmq_raft_address_check(r.address) != 0)
        abort();
    static const char *const ops[] = {"", "add", "remove", "transfer"};
    char json[LMQ_RAFT_ADDRESS_MAX + 96];
    int n;
    if (r.op == LMQ_RAFT_ADMIN_ADD)
        n = snprintf(json, sizeof json, "{\"op\":\"add\",\"id\":%" PRIu64 ",\"address\":\"%s\"}",
                     r.id, r.address);
    else if (r.id)
        n = snprintf(json, sizeof json, "{\"op\":\"%s\",\"id\":%" PRIu64 "}", ops[r.op], r.id);
    else
        n = snprintf(json, sizeof json, "{\"op\":\"%s\"}", ops[r.op]);
    if (n < 0 || (size_t)n >= sizeof json)
        abort();
    if (lmq_raft_admin_parse((const uint8_t *)json, (size_t)n, &again, err, sizeof err) != 0 ||
        again.op != r.op || again.id != r.id || strcmp(again.address, r.address) != 0)
        abort();
    return 0;
}
