/* Framing of the ledger's files: segment headers and frames, index and
 * block entries, and the small I/O helpers they share. Every fixed-size
 * entry carries its own CRC-32C so a torn or flipped entry is found
 * without reading anything else. Formats: docs/FORMATS.md. */
#include "ledger/store_int.h"
#include "util/crc32c.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>


void store_frame_header(uint8_t hdr[FRAME_HEADER_LEN], uint8_t type, const void *payload,
                        size_t len)
{
    le32_put(hdr, (uint32_t)len);
    hdr[4] = type;
    hdr[5] = hdr[6] = hdr[7] = 0;
    uint32_t crc = lmq_crc32c(0, hdr, 8);
    crc = lmq_crc32c(crc, payload, len);
    le32_put(hdr + 8, crc);
}

int store_frame_check(const uint8_t *buf, size_t avail, uint8_t *type, uint32_t *len)
{
    if (avail < FRAME_HEADER_LEN)
        return -EAGAIN;
    uint32_t n = le32_get(buf);
    if (buf[4] != FRAME_RECORD && buf[4] != FRAME_COMMIT)
        return -EBADMSG;
    if (buf[5] | buf[6] | buf[7])
        return -EBADMSG;
    if (n > FRAME_MAX_PAYLOAD)
        return -EBADMSG;
    if (avail - FRAME_HEADER_LEN < n)
        return -EAGAIN;
    uint32_t crc = lmq_crc32c(0, buf, 8);
    crc = lmq_crc32c(crc, buf + FRAME_HEADER_LEN, n);
    if (crc != le32_get(buf + 8))
        return -EBADMSG;
    *type = buf[4];
    *len = n;
    return 0;
}

long store_find_commit(const uint8_t *buf, size_t len)
{
    for (size_t off = 0; off + FRAME_HEADER_LEN + LEDGER_BLOCK_HEADER_LEN <= len; off++) {
        const uint8_t *p = buf + off;
        if (p[4] != FRAME_COMMIT || (p[5] | p[6] | p[7]) ||
            memcmp(p + FRAME_HEADER_LEN, LEDGER_BLOCK_MAGIC, 4) != 0)
            continue;
        uint8_t type;
        uint32_t n;
        struct ledger_block b;
        if (store_frame_check(p, len - off, &type, &n) == 0 && n > LEDGER_BLOCK_HEADER_LEN &&
            ledger_block_decode(p + FRAME_HEADER_LEN, &b) == 0)
            return (long)off;
    }
    return -1;
}

void store_seg_header(uint8_t hdr[SEG_HEADER_LEN], uint32_t seg)
{
    memcpy(hdr, SEG_MAGIC, 8);
    le32_put(hdr + 8, seg);
    le32_put(hdr + 12, lmq_crc32c(0, hdr, 12));
}

int store_seg_header_check(const uint8_t hdr[SEG_HEADER_LEN], uint32_t seg)
{
    if (memcmp(hdr, SEG_MAGIC, 8) != 0 || le32_get(hdr + 8) != seg ||
        le32_get(hdr + 12) != lmq_crc32c(0, hdr, 12))
        return -EBADMSG;
    return 0;
}

void store_index_entry(uint8_t e[INDEX_ENTRY_LEN], uint64_t pos, uint32_t len)
{
    le64_put(e, pos);
    le32_put(e + 8, len);
    le32_put(e + 12, lmq_crc32c(0, e, 12));
}

int store_index_entry_parse(const uint8_t e[INDEX_ENTRY_LEN], uint64_t *pos, uint32_t *len)
{
    if (le32_get(e + 12) != lmq_crc32c(0, e, 12))
        return -EBADMSG;
    *pos = le64_get(e);
    *len = le32_get(e + 8);
    return 0;
}

void store_block_entry(uint8_t e[BLOCK_ENTRY_LEN], const uint8_t header[LEDGER_BLOCK_HEADER_LEN],
                       uint64_t commit_pos)
{
    memcpy(e, header, LEDGER_BLOCK_HEADER_LEN);
    le64_put(e + 112, commit_pos);
    le32_put(e + 120, 0);
    le32_put(e + 124, lmq_crc32c(0, e, 124));
}

int store_block_entry_parse(const uint8_t e[BLOCK_ENTRY_LEN], struct ledger_block *b,
                            uint64_t *commit_pos)
{
    if (le32_get(e + 124) != lmq_crc32c(0, e, 124) || le32_get(e + 120) != 0)
        return -EBADMSG;
    if (ledger_block_decode(e, b) != 0)
        return -EBADMSG;
    *commit_pos = le64_get(e + 112);
    return 0;
}

int store_path(char *buf, size_t cap, const char *ledgerdir, const char *name)
{
    int n = snprintf(buf, cap, "%s/%s", ledgerdir, name);
    return (n < 0 || (size_t)n >= cap) ? -ENAMETOOLONG : 0;
}

int store_seg_path(char *buf, size_t cap, const char *ledgerdir, uint32_t seg)
{
    int n = snprintf(buf, cap, "%s/" SEG_NAME_FMT, ledgerdir, seg);
    return (n < 0 || (size_t)n >= cap) ? -ENAMETOOLONG : 0;
}

int store_node_path(char *buf, size_t cap, const char *ledgerdir, unsigned level)
{
    int n = snprintf(buf, cap, "%s/" STORE_NODES_DIR "/%02u", ledgerdir, level);
    return (n < 0 || (size_t)n >= cap) ? -ENAMETOOLONG : 0;
}

ssize_t store_pread_upto(int fd, void *buf, size_t len, off_t off)
{
    uint8_t *p = buf;
    size_t got = 0;
    while (got < len) {
        ssize_t r = pread(fd, p + got, len - got, off + (off_t)got);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

int store_pread_full(int fd, void *buf, size_t len, off_t off)
{
    ssize_t got = store_pread_upto(fd, buf, len, off);
    if (got < 0)
        return (int)got;
    return (size_t)got == len ? 0 : -EIO;
}

int store_pwrite_full(int fd, const void *buf, size_t len, off_t off)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t r = pwrite(fd, p, len, off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += r;
        len -= (size_t)r;
        off += r;
    }
    return 0;
}

int store_fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

int store_meta_read(const char *ledgerdir, char *origin, size_t cap)
{
    char path[4096];
    int rc = store_path(path, sizeof path, ledgerdir, STORE_META);
    if (rc)
        return rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    char buf[1024];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    int err = errno;
    close(fd);
    if (n < 0)
        return -err;
    buf[n] = 0;
    size_t ml = strlen(STORE_META_MAGIC);
    if ((size_t)n < ml || memcmp(buf, STORE_META_MAGIC, ml) != 0 ||
        strncmp(buf + ml, "origin ", 7) != 0)
        return -EINVAL;
    const char *o = buf + ml + 7;
    const char *nl = strchr(o, '\n');
    if (!nl || nl == o || (size_t)(nl - o) >= cap)
        return -EINVAL;
    memcpy(origin, o, (size_t)(nl - o));
    origin[nl - o] = 0;
    return 0;
}
