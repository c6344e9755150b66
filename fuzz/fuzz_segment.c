/* libFuzzer target: the ledger's segment reader and crash recovery (the
 * replay in ledger_open) and the auditor, on fuzzed segment contents. The
 * first input byte picks how the segment file is made:
 *   0: the rest of the input is the whole file;
 *   1: a valid segment (3 signed batches, made at start-up with this
 *      process's key) with input bytes written over it at a 16-bit offset;
 *   2: that valid segment cut at a 16-bit offset, the input appended.
 * Modes 1 and 2 reach the deep paths (signed commits, torn tails, damage
 * before a commit). Nothing may crash; results are ignored. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ledger/audit.h"
#include "ledger/log.h"
#include "util/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];
static char ldir[96];
static uint8_t *base;
static size_t base_len;

/* Removes the segments and derived files of the previous run. */
static void clean(void)
{
    static const char *names[] = {"index", "blocks", "seg-00000000", "seg-00000001"};
    char path[200];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", ldir, names[i]);
        unlink(path);
    }
    for (unsigned k = 0; k < 64; k++) {
        snprintf(path, sizeof path, "%s/nodes/%02u", ldir, k);
        if (unlink(path) != 0)
            break;
    }
}

static void remove_dir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz_segment: could not remove %s\n", dir);
}

static void setup(void)
{
    lmq_log_set_level(LMQ_LOG_ERROR + 1);
    snprintf(dir, sizeof dir, "/tmp/lmq-fuzz-segment-XXXXXX");
    if (!mkdtemp(dir))
        abort();
    snprintf(ldir, sizeof ldir, "%s/ledger", dir);
    atexit(remove_dir);
    struct ledger *l;
    char err[256];
    if (ledger_open(dir, NULL, &l, err, sizeof err) != 0)
        abort();
    for (int b = 0; b < 3; b++) {
        uint8_t recs[5][24];
        struct ledger_record_buf rb[5];
        for (int i = 0; i < 5; i++) {
            memset(recs[i], 'a' + b * 5 + i, sizeof recs[i]);
            rb[i] = (struct ledger_record_buf){recs[i], (size_t)(4 + i * 5)};
        }
        if (ledger_append_batch(l, rb, 5, 1000 + (uint64_t)b, NULL) != 0)
            abort();
    }
    ledger_close(l);
    char path[160];
    snprintf(path, sizeof path, "%s/seg-00000000", ldir);
    FILE *f = fopen(path, "rb");
    if (!f)
        abort();
    base = malloc(1 << 16);
    base_len = fread(base, 1, 1 << 16, f);
    fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!base)
        setup();
    if (size < 1 || size > (1 << 20))
        return 0;
    uint8_t mode = data[0] % 3;
    data++;
    size--;
    clean();

    uint8_t *seg = malloc(base_len + size + 4);
    size_t seg_len = 0;
    if (mode == 0) {
        memcpy(seg, data, size);
        seg_len = size;
    } else if (size >= 2) {
        size_t off = ((size_t)data[0] << 8 | data[1]) % (base_len + 1);
        data += 2;
        size -= 2;
        memcpy(seg, base, base_len);
        seg_len = base_len;
        if (mode == 1) {
            size_t n = off + size > base_len ? base_len - off : size;
            memcpy(seg + off, data, n);
        } else {
            memcpy(seg + off, data, size);
            seg_len = off + size;
        }
    } else {
        free(seg);
        return 0;
    }
    char path[160];
    snprintf(path, sizeof path, "%s/seg-00000000", ldir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, seg, seg_len) != (ssize_t)seg_len)
        abort();
    close(fd);
    free(seg);

    char err[512];
    struct ledger_audit_stats st;
    (void)ledger_audit(dir, NULL, NULL, NULL, NULL, &st, err, sizeof err);
    struct ledger *l;
    if (ledger_open(dir, NULL, &l, err, sizeof err) == 0) {
        uint8_t buf[256];
        size_t len;
        for (uint64_t i = 0; i < ledger_size(l) && i < 32; i++)
            (void)ledger_get(l, i, buf, sizeof buf, &len);
        ledger_close(l);
    }
    return 0;
}
