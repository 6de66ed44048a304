/* Structured logs: one line per event, `ts=... level=... msg="..." key=value`, on stderr. */
#ifndef SP_LOG_H
#define SP_LOG_H

enum { SP_LOG_DEBUG, SP_LOG_INFO, SP_LOG_WARN, SP_LOG_ERROR };

void sp_log_set_level(int level);
void sp_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define sp_debug(...) sp_log(SP_LOG_DEBUG, __VA_ARGS__)
#define sp_info(...)  sp_log(SP_LOG_INFO, __VA_ARGS__)
#define sp_warn(...)  sp_log(SP_LOG_WARN, __VA_ARGS__)
#define sp_error(...) sp_log(SP_LOG_ERROR, __VA_ARGS__)

#include <stdint.h>

/* A rate limit for one kind of log line (one static per call site): sp_ratelimit_ok() says
 * whether a line may be written now (at most one per interval) and, when it may, how many were
 * held back since the last one, so the line can say so. Thread-safe (atomics). */
typedef struct sp_ratelimit {
    _Atomic int64_t next_ms;
    _Atomic uint64_t held;
} sp_ratelimit;

int sp_ratelimit_ok(sp_ratelimit *r, int64_t interval_ms, uint64_t *held_back);

#endif
