/* Leveled logging to stderr; see log.h. The level is read without a lock
 * (an int, set once at start and on SIGHUP). */
#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static volatile int lmq__log_level = LMQ_LOG_INFO;

static const char *const lmq__level_names[] = {"debug", "info", "notice", "warning", "error"};

void lmq_log_set_level(enum lmq_log_level level)
{
    lmq__log_level = (int)level;
}

enum lmq_log_level lmq_log_get_level(void)
{
    return (enum lmq_log_level)lmq__log_level;
}

int lmq_log_level_parse(const char *name)
{
    for (int i = 0; i < 5; i++)
        if (strcmp(name, lmq__level_names[i]) == 0)
            return i;
    if (strcmp(name, "warn") == 0)
        return LMQ_LOG_WARNING;
    return -1;
}

void lmq_log(enum lmq_log_level level, const char *fmt, ...)
{
    if ((int)level < lmq__log_level)
        return;
    char line[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %-7s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (int)(tv.tv_usec / 1000), lmq__level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    flockfile(stderr);
    fwrite(line, 1, len, stderr);
    funlockfile(stderr);
}
