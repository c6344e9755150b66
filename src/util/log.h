/* Leveled logging to stderr. One line per call, prefixed with an ISO-8601
 * UTC timestamp and the level. Thread-safe: each line is written with one
 * locked stdio call, so lines from worker threads never interleave.
 * Secrets (private keys, passwords) must never be passed to these calls. */
#ifndef LMQ_UTIL_LOG_H
#define LMQ_UTIL_LOG_H

enum lmq_log_level {
    LMQ_LOG_DEBUG = 0,
    LMQ_LOG_INFO = 1,
    LMQ_LOG_NOTICE = 2,
    LMQ_LOG_WARNING = 3,
    LMQ_LOG_ERROR = 4,
};

/* Sets the lowest level that is printed (default LMQ_LOG_INFO). */
void lmq_log_set_level(enum lmq_log_level level);
enum lmq_log_level lmq_log_get_level(void);
/* Parses "debug", "info", "notice", "warning", "error"; -1 if unknown. */
int lmq_log_level_parse(const char *name);

void lmq_log(enum lmq_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define LMQ_DEBUG(...)                                                                             \
    do {                                                                                           \
        if (lmq_log_get_level() <= LMQ_LOG_DEBUG)                                                  \
            lmq_log(LMQ_LOG_DEBUG, __VA_ARGS__);                                                   \
    } while (0)
#define LMQ_INFO(...) lmq_log(LMQ_LOG_INFO, __VA_ARGS__)
#define LMQ_NOTICE(...) lmq_log(LMQ_LOG_NOTICE, __VA_ARGS__)
#define LMQ_WARN(...) lmq_log(LMQ_LOG_WARNING, __VA_ARGS__)
#define LMQ_ERROR(...) lmq_log(LMQ_LOG_ERROR, __VA_ARGS__)

#endif
