/* Request parameter parsing for the query API (see params.h). */
#include "params.h"
#include "../otlp/pprof.h"

#include <ctype.h>
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
    if (strict && (n < 5 || strchr(p, ':') || !lens[0]))
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
        if (otlp_hex_decode(h, (*out)[i], 8) != 0)
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
    return ms >= INT64_MAX / NS_PER_MS - 1 ? 0 : (ms + 1) * NS_PER_MS;
}

int64_t query_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int query_time_parse(const char *s, int64_t now_ns, int64_t *out)
{
    while (*s == ' ')
        s++;
    if (strncmp(s, "now", 3) == 0) {
        const char *p = s + 3;
        if (!*p) {
            *out = now_ns;
            return 0;
        }
        if (*p != '-' && *p != '+')
            return -1;
        int sign = *p == '-' ? -1 : 1;
        char *end;
        long long v = strtoll(p + 1, &end, 10);
        if (end == p + 1 || v < 0)
            return -1;
        static const struct {
            const char *unit;
            int64_t ns;
        } units[] = {{"ms", 1000000LL},         {"s", 1000000000LL},     {"m", 60000000000LL},
                     {"h", 3600000000000LL},    {"d", 86400000000000LL}, {"w", 604800000000000LL},
                     {"y", 31536000000000000LL}};
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
            if (strcmp(end, units[i].unit) == 0) {
                if (v > INT64_MAX / units[i].ns)
                    return -1;
                *out = now_ns + sign * v * units[i].ns;
                return 0;
            }
        return -1;
    }
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || v < 0)
        return -1;
    if (v > 100000000000000000LL) /* > year 5138 in µs: nanoseconds */
        *out = v;
    else if (v > 100000000000000LL) /* microseconds */
        *out = v * 1000LL;
    else if (v > 100000000000LL) /* milliseconds */
        *out = v * 1000000LL;
    else
        *out = v * 1000000000LL;
    return 0;
}
