#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

static int min_level = SP_LOG_INFO;

int sp_ratelimit_ok(sp_ratelimit *r, int64_t interval_ms, uint64_t *held_back)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    int64_t next = atomic_load(&r->next_ms);
    if (now < next || !atomic_compare_exchange_strong(&r->next_ms, &next, now + interval_ms)) {
        atomic_fetch_add(&r->held, 1);
        return 0;
    }
    uint64_t held = atomic_exchange(&r->held, 0);
    if (held_back)
        *held_back = held;
    return 1;
}

void sp_log_set_level(int level)
{
    min_level = level;
}

void sp_log(int level, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    if (level < min_level)
        return;
    char line[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, names[level & 3]);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line)
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line); /* one fprintf per line keeps lines whole across threads */
}
