/* Structured logs: one line per event on stderr, as logfmt (`ts=... level=... msg="..." key=value`,
 * the default) or as one JSON object per line (sp_log_set_format(SP_LOG_JSON)). Callers always
 * write the logfmt fields; the JSON form is made from them here, so the two never differ in
 * content. Nothing here knows about secrets: callers never pass one (server/auth.c logs none). */
#ifndef SP_LOG_H
#define SP_LOG_H

#include <stddef.h>

enum { SP_LOG_DEBUG, SP_LOG_INFO, SP_LOG_WARN, SP_LOG_ERROR };

enum { SP_LOG_LOGFMT, SP_LOG_JSON };

void sp_log_set_level(int level);
/* SP_LOG_LOGFMT (default) or SP_LOG_JSON; set once at start-up, before any thread. */
void sp_log_set_format(int format);
/* The JSON object for one logfmt line (`k=v k2="quoted v"`), written to out (always
 * NUL-terminated, cut at n - 1 bytes but kept a valid object when n >= 3). A bare word without
 * `=` becomes a key with the value true. Returns the length written. */
size_t sp_log_logfmt_to_json(const char *line, char *out, size_t n);
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
