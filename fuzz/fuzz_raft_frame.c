/* libFuzzer target: the Raft entry frame decoder (cluster/raft_node.c),
 * which reads entries that come from other nodes over the network and
 * from the Raft log on disk. Invariant: whatever decodes encodes back to
 * the same bytes, and the payload view lies inside the input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/raft_node.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p;
    size_t plen;
    if (lmq_raft_frame_decode(data, size, &p, &plen) != 0)
        return 0;
    if (p < data || plen > size || p + plen > data + size || lmq_raft_frame_len(plen) != size)
        abort();
    uint8_t *again = malloc(size);
    if (again == NULL)
        abort();
    lmq_raft_frame_encode(again, p, plen);
    if (memcmp(again, data, size) != 0)
        abort();
    free(again);
    return 0;
}
