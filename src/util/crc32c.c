/* CRC-32C (Castagnoli) for on-disk framing: the ledger's segments and the
 * broker store's values. SSE4.2's crc32 instruction when the CPU has it
 * (checked once), a table otherwise; both give the same results. */
#include "util/crc32c.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define LMQ__HAVE_SSE42_PATH 1
#endif

static uint32_t crc__table[256];
static pthread_once_t crc__once = PTHREAD_ONCE_INIT;
static int crc__hw;

static void crc__init_once(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc__table[i] = c;
    }
#ifdef LMQ__HAVE_SSE42_PATH
    __builtin_cpu_init();
    crc__hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#endif
}

static uint32_t crc__sw(uint32_t c, const uint8_t *p, size_t len)
{
    while (len--)
        c = crc__table[(c ^ *p++) & 0xff] ^ (c >> 8);
    return c;
}

#ifdef LMQ__HAVE_SSE42_PATH
__attribute__((target("sse4.2"))) static uint32_t crc__hw32(uint32_t c, const uint8_t *p,
                                                            size_t len)
{
    uint64_t c64 = c;
    while (len > 0 && ((uintptr_t)p & 7) != 0) {
        c64 = _mm_crc32_u8((uint32_t)c64, *p++);
        len--;
    }
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c64 = _mm_crc32_u64(c64, v);
        p += 8;
        len -= 8;
    }
    while (len > 0) {
        c64 = _mm_crc32_u8((uint32_t)c64, *p++);
        len--;
    }
    return (uint32_t)c64;
}
#endif

uint32_t lmq_crc32c(uint32_t crc, const void *data, size_t len)
{
    pthread_once(&crc__once, crc__init_once);
    uint32_t c = ~crc;
#ifdef LMQ__HAVE_SSE42_PATH
    if (crc__hw)
        return ~crc__hw32(c, data, len);
#endif
    return ~crc__sw(c, data, len);
}
