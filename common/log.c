#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static int min_level = SP_LOG_INFO;
static int log_format = SP_LOG_LOGFMT;

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

void sp_log_set_format(int format)
{
    log_format = format == SP_LOG_JSON ? SP_LOG_JSON : SP_LOG_LOGFMT;
}

/* A bounded writer: once something does not fit, nothing more is written. */
typedef struct {
    char *p;
    size_t len, cap;
    int full;
} jw;

static void put(jw *w, const char *s, size_t n)
{
    if (w->full || w->len + n >= w->cap) {
        w->full = 1;
        return;
    }
    memcpy(w->p + w->len, s, n);
    w->len += n;
}

static void put_escaped(jw *w, const char *s, size_t n)
{
    put(w, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '\\' && i + 1 < n && s[i + 1] == '"')
            continue; /* logfmt's \" is a quote in the value */
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            put(w, esc, 2);
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            put(w, esc, 6);
        } else {
            put(w, (const char *)&c, 1);
        }
    }
    put(w, "\"", 1);
}

/* A key starts here: [A-Za-z_][A-Za-z0-9_.]* followed by '='. */
static int key_at(const char *s)
{
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
        return 0;
    while ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
           *s == '_' || *s == '.')
        s++;
    return *s == '=';
}

/* The end of a quoted value starting after its opening quote: the quote followed by the end of
 * the line or by " key=". Callers interpolate messages that may hold quotes of their own, so a
 * quote elsewhere is part of the value. */
static const char *quoted_end(const char *s)
{
    for (const char *q = s; *q; q++) {
        if (*q == '\\' && q[1]) {
            q++;
            continue;
        }
        if (*q == '"' && (q[1] == 0 || (q[1] == ' ' && key_at(q + 2))))
            return q;
    }
    return s + strlen(s); /* unterminated: the rest of the line */
}

size_t sp_log_logfmt_to_json(const char *line, char *out, size_t n)
{
    if (n < 3) {
        if (n)
            out[0] = 0;
        return 0;
    }
    jw w = {.p = out, .cap = n - 1}; /* room for the closing brace */
    put(&w, "{", 1);
    int first = 1;
    for (const char *s = line; *s && !w.full;) {
        while (*s == ' ')
            s++;
        if (!*s)
            break;
        const char *k = s;
        while (*s && *s != '=' && *s != ' ')
            s++;
        size_t klen = (size_t)(s - k);
        const char *v = NULL;
        size_t vlen = 0;
        if (*s == '=') {
            s++;
            if (*s == '"') {
                v = s + 1;
                s = quoted_end(v);
                vlen = (size_t)(s - v);
                if (*s)
                    s++;
            } else {
                v = s;
                while (*s && *s != ' ')
                    s++;
                vlen = (size_t)(s - v);
            }
        }
        size_t mark = w.len;
        if (!first)
            put(&w, ",", 1);
        put_escaped(&w, k, klen);
        put(&w, ":", 1);
        if (v)
            put_escaped(&w, v, vlen); /* values stay strings: logfmt has no types */
        else
            put(&w, "true", 4);
        if (w.full)
            w.len = mark; /* a field that does not fit is left out whole */
        first = 0;
    }
    out[w.len++] = '}';
    out[w.len] = 0;
    return w.len;
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
    if (log_format == SP_LOG_JSON) {
        char json[2048];
        sp_log_logfmt_to_json(line, json, sizeof json);
        fprintf(stderr, "%s\n", json);
        return;
    }
    fprintf(stderr, "%s\n", line); /* one fprintf per line keeps lines whole across threads */
}
