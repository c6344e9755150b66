/* libFuzzer target: the replicated batch decoder (cluster/raft_batch.c),
 * which reads commands other nodes proposed (version 2 with a flags byte
 * per record, and version 1 without). Invariant: a command that opens
 * hands out exactly n records inside the input with only known flags, and
 * encoding them again with its origin and sequence gives the same bytes
 * (version 2) or decodes to the same records with flags 0 (version 1). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/raft_batch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lmq_raft_batch b;
    if (lmq_raft_batch_open(&b, data, size) != 0)
        return 0;
    struct lmq_batch_item *items = calloc(b.n, sizeof *items);
    if (items == NULL)
        abort();
    const uint8_t *rec;
    size_t len, k = 0;
    while (lmq_raft_batch_next(&b, &rec, &len)) {
        if (k >= b.n || rec < data || rec + len > data + size)
            abort();
        if ((b.flags & ~LMQ_BATCH_F_ALL) || (b.version == 1 && b.flags))
            abort();
        items[k].rec = rec;
        items[k].len = len;
        items[k].flags = b.flags;
        if (k > 0)
            items[k - 1].next = &items[k];
        k++;
    }
    if (k != b.n)
        abort();
    uint8_t *again;
    size_t again_len;
    if (lmq_raft_batch_encode(b.origin, b.seq, items, k, &again, &again_len) != 0)
        abort();
    if (b.version == 2 && (again_len != size || memcmp(again, data, size) != 0))
        abort();
    if (b.version == 1) {
        struct lmq_raft_batch b2;
        if (again_len != size + k || lmq_raft_batch_open(&b2, again, again_len) != 0 || b2.n != k)
            abort();
        for (size_t i = 0; i < k; i++)
            if (!lmq_raft_batch_next(&b2, &rec, &len) || b2.flags || len != items[i].len ||
                memcmp(rec, items[i].rec, len) != 0)
                abort();
    }
    free(again);
    free(items);
    return 0;
}
