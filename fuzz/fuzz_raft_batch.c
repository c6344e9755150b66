/* libFuzzer target: the replicated batch decoder (cluster/raft_batch.c),
 * which reads commands other nodes proposed. Invariant: a command that
 * opens hands out exactly n records inside the input, and encoding them
 * again with its origin and sequence gives the same bytes. */
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
        items[k].rec = rec;
        items[k].len = len;
        if (k > 0)
            items[k - 1].next = &items[k];
        k++;
    }
    if (k != b.n)
        abort();
    uint8_t *again;
    size_t again_len;
    if (lmq_raft_batch_encode(b.origin, b.seq, items, k, &again, &again_len) != 0 ||
        again_len != size || memcmp(again, data, size) != 0)
        abort();
    free(again);
    free(items);
    return 0;
}
