/* libFuzzer target: the config file parser on arbitrary file contents. The
 * input goes through a memfd (read back via /proc/self/fd), so a run leaves
 * no files behind. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util/config.h"
#include "util/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[64];
    static int fd = -1;
    if (fd < 0) {
        lmq_log_set_level(LMQ_LOG_ERROR);
        fd = memfd_create("lmq-fuzz-config", 0);
        if (fd < 0)
            abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        abort();
    static struct lmq_config c;
    char err[512];
    lmq_config_defaults(&c);
    if (lmq_config_load(&c, path, err, sizeof err) == 0)
        (void)lmq_config_finish(&c, 0, NULL, err, sizeof err);
    return 0;
}
