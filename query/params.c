/* Request parameter parsing for the query API (see params.h). */
#include "params.h"
#include "../common/hex.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int query_type_parse(const char *id, const char *what, int strict, sp_arena *a, query_type *out,
                     sp_err *err)
{
    memset(out, 0, sizeof *out);
    const char *parts[6] = {"", "", "", "", "", ""};
    size_t lens[6] = {0};
    int n = 0;
    const char *p = id ? id : "";
    while (n < 6) {
        const char *c = strchr(p, ':');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        parts[n] = p;
        lens[n] = len;
        n++;
        if (!c)
            break;
        p = c + 1;
    }
    if (strict && (n < 5 || strchr(parts[n - 1], ':') || !lens[0])) /* 5 or 6 parts */
        return sp_fail(err, SP_EINVAL,
                       "%s \"%.200s\" is not a profile type: it must be of the form "
                       "<name>:<sample_type>:<sample_unit>:<period_type>:<period_unit>, e.g. "
                       "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
                       what, id ? id : "");
    const char **dst[5] = {&out->name, &out->sample_type, &out->sample_unit, &out->period_type,
                           &out->period_unit};
    for (int i = 0; i < 5; i++) {
        *dst[i] = sp_arena_strndup(a, parts[i], i < n ? lens[i] : 0);
        if (!*dst[i])
            return sp_fail(err, SP_ETOOBIG, "request too large for the query budget");
    }
    size_t idlen = n >= 5 ? (size_t)(parts[4] + lens[4] - id) : strlen(id ? id : "");
    out->id = sp_arena_strndup(a, id ? id : "", idlen);
    if (!out->id)
        return sp_fail(err, SP_ETOOBIG, "request too large for the query budget");
    return 0;
}

int query_selector_parse(const char *text, const char *what, sp_arena *a, store_selector *out,
                         sp_err *err)
{
    const char *t = text;
    while (t && isspace((unsigned char)*t))
        t++;
    int rc = store_parse_selector(t && *t ? t : "{}", a, out, err);
    if (rc)
        sp_err_prefix(err, "%s: ", what);
    return rc;
}

int query_span_ids_parse(char *const *hex, size_t n, const char *what, sp_arena *a,
                         uint8_t (**out)[8], sp_err *err)
{
    *out = NULL;
    if (!n)
        return 0;
    *out = sp_arena_alloc(a, n * sizeof **out);
    if (!*out)
        return sp_fail(err, SP_ETOOBIG, "request too large for the query budget");
    for (size_t i = 0; i < n; i++) {
        const char *h = hex[i] ? hex[i] : "";
        if (sp_hex_decode(h, (*out)[i], 8) != 0)
            return sp_fail(err, SP_EINVAL,
                           "%s[%zu] \"%.64s\" is not a span id: want 16 hex digits (the value "
                           "of the span attribute pyroscope.profile.id)",
                           what, i, h);
    }
    return 0;
}

#define NS_PER_MS 1000000LL

int64_t query_start_ns(int64_t ms)
{
    if (ms <= 0)
        return 0;
    return ms > INT64_MAX / NS_PER_MS ? INT64_MAX : ms * NS_PER_MS;
}

int64_t query_end_ns(int64_t ms)
{
    if (ms <= 0)
        return 0;
    return ms >= INT64_MAX / NS_PER_MS ? 0 : ms * NS_PER_MS;
}

int64_t query_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Offset units, longest spelling first where one is a prefix of another (Pyroscope's attime
 * accepts words by prefix: "min", "mon", "hour", "days"; "ms" is ours, milliseconds). */
static const struct {
    const char *unit;
    int64_t ns;
} units[] = {
    {"ms", 1000000LL},
    {"seconds", 1000000000LL},
    {"second", 1000000000LL},
    {"secs", 1000000000LL},
    {"sec", 1000000000LL},
    {"s", 1000000000LL},
    {"months", 2592000000000000LL},
    {"month", 2592000000000000LL},
    {"mon", 2592000000000000LL},
    {"M", 2592000000000000LL},
    {"minutes", 60000000000LL},
    {"minute", 60000000000LL},
    {"mins", 60000000000LL},
    {"min", 60000000000LL},
    {"m", 60000000000LL},
    {"hours", 3600000000000LL},
    {"hour", 3600000000000LL},
    {"h", 3600000000000LL},
    {"days", 86400000000000LL},
    {"day", 86400000000000LL},
    {"d", 86400000000000LL},
    {"weeks", 604800000000000LL},
    {"week", 604800000000000LL},
    {"w", 604800000000000LL},
    {"years", 31536000000000000LL},
    {"year", 31536000000000000LL},
    {"y", 31536000000000000LL},
};

/* "1h30m" (one or more <digits><unit>) → ns in *out; -1 when malformed or out of range. */
static int parse_offset(const char *p, int64_t *out)
{
    int64_t total = 0;
    if (!*p)
        return -1;
    while (*p) {
        if (!isdigit((unsigned char)*p))
            return -1;
        int64_t v = 0;
        while (isdigit((unsigned char)*p)) {
            if (v > (INT64_MAX - 9) / 10)
                return -1;
            v = v * 10 + (*p++ - '0');
        }
        size_t i, len = 0;
        for (i = 0; i < sizeof units / sizeof units[0]; i++) {
            len = strlen(units[i].unit);
            if (strncmp(p, units[i].unit, len) == 0 && !isalpha((unsigned char)p[len]))
                break;
        }
        if (i == sizeof units / sizeof units[0] || v > INT64_MAX / units[i].ns ||
            total > INT64_MAX - v * units[i].ns)
            return -1;
        total += v * units[i].ns;
        p += len;
    }
    *out = total;
    return 0;
}

/* YYYYMMDD (Pyroscope's attime accepts it for 8-digit values that form a date) → midnight UTC. */
static int parse_date(const char *s, int64_t *out)
{
    int y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
    int m = (s[4] - '0') * 10 + (s[5] - '0'), d = (s[6] - '0') * 10 + (s[7] - '0');
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y <= 1900 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
        return -1;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (m == 2 && d == 29 && !leap)
        return -1;
    /* days since 1970-01-01 (civil calendar, March-based year) */
    int yy = y - (m <= 2), era = yy / 400, yoe = yy - era * 400;
    int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    int64_t days = (int64_t)era * 146097 + doe - 719468;
    if (days > INT64_MAX / (86400LL * 1000000000LL)) /* after 2262-04-11: past int64 ns */
        return -1;
    *out = days * 86400LL * 1000000000LL;
    return 0;
}

int query_time_parse(const char *s, int64_t now_ns, int64_t *out)
{
    char buf[64];
    size_t n = 0;
    for (; *s && n + 1 < sizeof buf; s++) /* attime ignores spaces, '_' and ',' */
        if (*s != ' ' && *s != '_' && *s != ',')
            buf[n++] = *s;
    if (*s)
        return -1;
    buf[n] = 0;
    const char *p = buf;
    if (!*p)
        return -1;
    if (isdigit((unsigned char)*p)) {
        size_t k = 0;
        while (isdigit((unsigned char)p[k]))
            k++;
        if (p[k])
            return -1;
        if (k == 8 && parse_date(p, out) == 0)
            return 0;
        if (k > 19)
            return -1;
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        /* Told apart by size, as attime does by digit count (13 ms, 16 µs, 19 ns, else s). */
        long long mul = v > 100000000000000000LL ? 1         /* > year 5138 in µs: nanoseconds */
                        : v > 100000000000000LL  ? 1000LL    /* microseconds */
                        : v > 100000000000LL     ? 1000000LL /* milliseconds */
                                                 : 1000000000LL;
        /* Past 2262 in nanoseconds is out of range, not a wrapped-around time. */
        if (errno == ERANGE || v > INT64_MAX / mul)
            return -1;
        *out = v * mul;
        return 0;
    }
    if (strncmp(p, "now", 3) == 0)
        p += 3;
    else if (*p != '-' && *p != '+')
        return -1;
    if (!*p) {
        *out = now_ns;
        return 0;
    }
    if (*p != '-' && *p != '+')
        return -1;
    int64_t off;
    if (parse_offset(p + 1, &off))
        return -1;
    if (*p == '-' ? now_ns < INT64_MIN + off : now_ns > INT64_MAX - off)
        return -1;
    *out = *p == '-' ? now_ns - off : now_ns + off;
    return 0;
}

int query_hex_id(const char *text, size_t nbytes, const char *what, uint8_t *out, sp_err *err)
{
    size_t len = strlen(text);
    if (len != 2 * nbytes)
        return sp_fail(err, SP_EINVAL,
                       "%s \"%.64s%s\" is malformed: want %zu hex digits, got %zu "
                       "characters",
                       what, text, len > 64 ? "..." : "", 2 * nbytes, len);
    for (size_t i = 0; i < len; i++)
        if (!isxdigit((unsigned char)text[i]))
            return sp_fail(err, SP_EINVAL,
                           "%s \"%s\" is malformed: '%c' at position %zu is not a hex digit", what,
                           text, isprint((unsigned char)text[i]) ? text[i] : '?', i + 1);
    sp_hex_decode(text, out, nbytes);
    for (size_t i = 0; i < nbytes; i++)
        if (out[i])
            return 0;
    return sp_fail(err, SP_EINVAL, "%s \"%s\" is malformed: an all-zero id is not valid", what,
                   text);
}

void query_hex_encode(const uint8_t *id, size_t nbytes, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < nbytes; i++) {
        out[2 * i] = hex[id[i] >> 4];
        out[2 * i + 1] = hex[id[i] & 15];
    }
    out[2 * nbytes] = 0;
}
