/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): the checksum of
 * every on-disk frame and value. Thread-safe. */
#ifndef LMQ_UTIL_CRC32C_H
#define LMQ_UTIL_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* zlib-style chaining: start with crc = 0, pass the previous result to
 * continue. lmq_crc32c(0, "123456789", 9) == 0xE3069283. */
uint32_t lmq_crc32c(uint32_t crc, const void *data, size_t len);

#endif
