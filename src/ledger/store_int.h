/* Private to the ledger storage (log.c, segment.c, audit.c): names and
 * fixed-size encodings of the files under <datadir>/ledger/. The formats
 * are described in docs/FORMATS.md "Ledger data directory" and below it;
 * keep the two in step. Local files are little-endian; the block header
 * (block.h) is big-endian because it is hashed and public. */
#ifndef LMQ_LEDGER_STORE_INT_H
#define LMQ_LEDGER_STORE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ledger/block.h"

#define STORE_DIR "ledger"
#define STORE_META "META"
#define STORE_LOCK "LOCK"
#define STORE_INDEX "index"
#define STORE_BLOCKS "blocks"
#define STORE_NODES_DIR "nodes"
#define STORE_META_MAGIC "ledgermq ledger v1\n"

/* Segment file: 16-byte header then frames. */
#define SEG_MAGIC "LMQSEG01"
#define SEG_HEADER_LEN 16
#define SEG_NAME_FMT "seg-%08u"
#define SEG_DEFAULT_MAX (256u << 20)

/* Frame: u32 payload length, u8 type, 3 zero bytes, u32 CRC-32C over the
 * first 8 header bytes followed by the payload. */
#define FRAME_HEADER_LEN 12
#define FRAME_RECORD 1
#define FRAME_COMMIT 2
#define FRAME_MAX_PAYLOAD (64u << 20)

/* Index entry: u64 frame position, u32 payload length, u32 CRC-32C of the
 * first 12 bytes. */
#define INDEX_ENTRY_LEN 16
/* Blocks file entry: 112-byte header, u64 position of the commit frame,
 * u32 zero, u32 CRC-32C of the first 124 bytes. */
#define BLOCK_ENTRY_LEN 128
#define NODE_LEN 32
#define STORE_MAX_LEVELS 64

/* A position in the log: segment number << 32 | byte offset in it. */
#define POS_MAKE(seg, off) (((uint64_t)(seg) << 32) | (uint32_t)(off))
#define POS_SEG(p) ((uint32_t)((p) >> 32))
#define POS_OFF(p) ((uint32_t)(p))

static inline void le32_put(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}
static inline uint32_t le32_get(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline void le64_put(uint8_t *p, uint64_t v)
{
    le32_put(p, (uint32_t)v);
    le32_put(p + 4, (uint32_t)(v >> 32));
}
static inline uint64_t le64_get(const uint8_t *p)
{
    return (uint64_t)le32_get(p) | (uint64_t)le32_get(p + 4) << 32;
}

/* Frame header for a payload; crc covers header[0:8] || payload. */
void store_frame_header(uint8_t hdr[FRAME_HEADER_LEN], uint8_t type, const void *payload,
                        size_t len);
/* Checks a frame at buf[0:avail]: 0 and the type and length if whole and its CRC
 * holds; -EAGAIN if buf is too short for the header or the payload (a
 * possibly torn tail); -EBADMSG for a bad CRC, a nonzero reserved byte, an
 * unknown type or a length over FRAME_MAX_PAYLOAD. */
int store_frame_check(const uint8_t *buf, size_t avail, uint8_t *type, uint32_t *len);

/* Offset of the first whole commit frame (valid CRC, decodable block
 * header) that starts anywhere in buf[0:len], or -1. Used after a damaged
 * frame to tell a torn tail (nothing committed after it) from damage in
 * committed data. Scans byte by byte; the cheap header checks reject
 * almost every position. */
long store_find_commit(const uint8_t *buf, size_t len);

void store_seg_header(uint8_t hdr[SEG_HEADER_LEN], uint32_t seg);
/* 0 if hdr is a valid header of segment number seg, else -EBADMSG. */
int store_seg_header_check(const uint8_t hdr[SEG_HEADER_LEN], uint32_t seg);

void store_index_entry(uint8_t e[INDEX_ENTRY_LEN], uint64_t pos, uint32_t len);
/* 0 and the fields, or -EBADMSG on a CRC mismatch. */
int store_index_entry_parse(const uint8_t e[INDEX_ENTRY_LEN], uint64_t *pos, uint32_t *len);

void store_block_entry(uint8_t e[BLOCK_ENTRY_LEN], const uint8_t header[LEDGER_BLOCK_HEADER_LEN],
                       uint64_t commit_pos);
int store_block_entry_parse(const uint8_t e[BLOCK_ENTRY_LEN], struct ledger_block *b,
                            uint64_t *commit_pos);

/* Paths: buf receives "<ledgerdir>/<name>"; 0 or -ENAMETOOLONG. */
int store_path(char *buf, size_t cap, const char *ledgerdir, const char *name);
int store_seg_path(char *buf, size_t cap, const char *ledgerdir, uint32_t seg);
int store_node_path(char *buf, size_t cap, const char *ledgerdir, unsigned level);

/* pread/pwrite loops: 0, -EIO on a short read (file too short), -errno. */
/* pread of up to len bytes at off, short only at end of file: bytes read
 * or -errno. */
ssize_t store_pread_upto(int fd, void *buf, size_t len, off_t off);
int store_pread_full(int fd, void *buf, size_t len, off_t off);
int store_pwrite_full(int fd, const void *buf, size_t len, off_t off);
/* fsync of a directory, 0 or -errno. */
int store_fsync_dir(const char *path);

/* Reads the META file: origin into out (NUL-terminated). 0, -ENOENT,
 * -EINVAL (malformed) or -errno. */
int store_meta_read(const char *ledgerdir, char *origin, size_t cap);

#endif
