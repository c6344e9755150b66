/* libFuzzer target: the broker store's value decoders (broker/store_record.h)
 * on arbitrary bytes. The first input byte picks the decoder, the rest is
 * the value. Whatever a decoder accepts must re-encode to the same bytes
 * (the decoders accept exactly what the encoders produce), so the fuzzer
 * also checks the encoders. With the first byte's top bit set the CRC is
 * recomputed before decoding. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "broker/store_record.h"
#include "util/crc32c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t out[1 << 20];

static void same(const uint8_t *v, size_t n, size_t enc_n)
{
    if (enc_n != n || memcmp(out, v, n) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size - 1 > sizeof out)
        return 0;
    uint8_t which = data[0] % 6;
    /* Copy so that reads past the value are caught by ASan. */
    size_t n = size - 1;
    uint8_t *v = malloc(n ? n : 1);
    if (!v)
        return 0;
    memcpy(v, data + 1, n);
    /* With the top bit set, fix the CRC up first, so that the fuzzer gets
     * past it to the length and field checks. */
    if ((data[0] & 0x80) && n >= 4) {
        uint32_t c = lmq_crc32c(0, v, n - 4);
        for (int i = 0; i < 4; i++)
            v[n - 4 + i] = (uint8_t)(c >> (8 * i));
    }
    switch (which) {
    case 0:
    case 1: {
        uint8_t kind = which == 0 ? LMQ_STORE_KIND_MESSAGE : LMQ_STORE_KIND_RETAINED;
        struct lmq_store_message m;
        if (lmq_store_rec_message_decode(0, kind, v, n, &m) == 0) {
            lmq_store_rec_message_encode(0, kind, &m, out);
            same(v, n, lmq_store_rec_message_size(&m));
        }
        break;
    }
    case 2: {
        struct lmq_store_session s;
        if (lmq_store_rec_session_decode(0, v, n, &s) == 0) {
            lmq_store_rec_session_encode(0, &s, out);
            same(v, n, lmq_store_rec_session_size(&s));
        }
        break;
    }
    case 3: {
        struct lmq_store_sub s;
        if (lmq_store_rec_sub_decode(0, v, n, &s) == 0) {
            lmq_store_rec_sub_encode(0, &s, out);
            same(v, n, lmq_store_rec_sub_size(&s));
        }
        break;
    }
    case 4: {
        struct lmq_store_entry e;
        if (lmq_store_rec_entry_decode(0, v, n, &e) == 0) {
            lmq_store_rec_entry_encode(0, &e, out);
            same(v, n, LMQ_STORE_REC_ENTRY_SIZE);
        }
        break;
    }
    case 5: {
        uint32_t count, msize;
        if (lmq_store_rec_ref_decode(0, v, n, &count, &msize) == 0) {
            lmq_store_rec_ref_encode(0, count, msize, out);
            same(v, n, LMQ_STORE_REC_REF_SIZE);
        }
        if (lmq_store_rec_qos2in_decode(0, v, n) == 0) {
            lmq_store_rec_qos2in_encode(0, out);
            same(v, n, LMQ_STORE_REC_QOS2IN_SIZE);
        }
        break;
    }
    }
    free(v);
    return 0;
}
