/* libFuzzer target: the cluster channel's frame decoder
 * (cluster/channel_frame.c), which reads a byte stream from other nodes.
 * Invariants: frames are taken out of the input one by one, each inside
 * the input and of the size it says; a decoded frame encodes again to the
 * same bytes; a stream is either a sequence of whole frames, an error, or
 * a valid prefix (PARTIAL). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/channel_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        struct lmq_channel_frame f;
        size_t used;
        /* a small maximum so that the length checks are reached */
        int rv = lmq_channel_frame_decode(data + off, size - off, 1 << 16, &f, &used);
        if (rv == LMQ_CHANNEL_ERR_PARTIAL) {
            if (used != 0 && used <= size - off)
                abort();
            return 0;
        }
        if (rv != 0)
            return 0;
        if (used < LMQ_CHANNEL_HEADER || used > size - off)
            abort();
        uint8_t *again = NULL;
        size_t again_len = 0;
        if (f.type == LMQ_CHANNEL_FORWARD) {
            if (f.body + f.body_len != data + off + used)
                abort();
            rv = lmq_channel_encode_forward(f.seq, f.body, f.body_len, &again, &again_len);
        } else {
            struct lmq_channel_result_item *items = calloc(f.n_items + 1, sizeof *items);
            if (items == NULL)
                abort();
            for (uint32_t i = 0; i < f.n_items; i++)
                lmq_channel_result_item(&f, i, &items[i]);
            rv = lmq_channel_encode_result(f.seq, f.status, f.raft_index, items, f.n_items, &again,
                                           &again_len);
            free(items);
        }
        if (rv != 0 || again_len != used || memcmp(again, data + off, used) != 0)
            abort();
        free(again);
        off += used;
    }
    return 0;
}
