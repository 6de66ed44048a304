/* libFuzzer target: the query API's parameter parsers (query/params.c) and folded output
 * (query/folded.c). Byte 0 % 4 picks one, the rest is its input:
 * 0 - from/until times (query_time_parse): the input as text must give -1 or 0, an all-digit
 *     value that parses is exact (no overflow), "now" alone is now; and from the first bytes a
 *     time written as Unix s, ms, µs and ns, as YYYYMMDD and as now-<n><unit> must read back.
 * 1 - trace and span ids (query_hex_id): parse iff 2 * nbytes hex digits and not all zero, the
 *     error names what; a parsed id prints back as the input in lower case.
 * 2 - span id lists (query_span_ids_parse, the input split on ','): parse iff every element is 16
 *     hex digits, the error names the first bad element; and profile type ids (query_type_parse):
 *     strict parsing succeeds iff 5 or 6 ':'-separated parts with a name, id = the first five.
 * 3 - folded output of stacks built from the input: one line per stack with a value > 0 and
 *     frames, sorted, frames root first joined by ';', no line break inside a line, the values
 *     add up.
 */
#include "query/folded.h"
#include "query/params.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "fuzz_check.h"

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static char *cstr(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    memcpy(s, p, n);
    s[n] = 0;
    return s;
}

static void times(const uint8_t *p, size_t n)
{
    const int64_t now = 1700000000123456789LL;
    char *s = cstr(p, n);
    int64_t out = 0;
    int rc = query_time_parse(s, now, &out);
    CHECK(rc == 0 || rc == -1);
    size_t k = strlen(s);
    if (!rc && k == n && k && strspn(s, "0123456789") == k && k != 8) {
        /* exact: told apart by size, never wrapped */
        unsigned __int128 v = 0;
        for (size_t i = 0; i < k; i++)
            v = v * 10 + (unsigned)(s[i] - '0');
        unsigned __int128 want = v > 100000000000000000ULL ? v
                                 : v > 100000000000000ULL  ? v * 1000
                                 : v > 100000000000ULL     ? v * 1000000
                                                           : v * 1000000000;
        CHECK(want <= INT64_MAX && (unsigned __int128)out == want);
    }
    if (strcmp(s, "now") == 0)
        CHECK(!rc && out == now);
    free(s);
    if (n < 8)
        return;

    /* Unix times between 1973 and 2262 in each unit (9..19 digits: never a YYYYMMDD). */
    uint64_t r = le(p, 8);
    int64_t t = 100000001LL + (int64_t)(r % (9200000000ULL - 100000001ULL)); /* seconds */
    int64_t sub = (int64_t)((r >> 40) % 1000000000);
    char b[64];
    int64_t got;
    snprintf(b, sizeof b, "%" PRId64, t);
    CHECK(query_time_parse(b, now, &got) == 0 && got == t * 1000000000);
    snprintf(b, sizeof b, "%" PRId64 "%03" PRId64, t, sub / 1000000);
    CHECK(query_time_parse(b, now, &got) == 0 && got == t * 1000000000 + sub / 1000000 * 1000000);
    snprintf(b, sizeof b, "%" PRId64 "%06" PRId64, t, sub / 1000);
    CHECK(query_time_parse(b, now, &got) == 0 && got == t * 1000000000 + sub / 1000 * 1000);
    if (t < 9223372036LL) {
        snprintf(b, sizeof b, "%" PRId64 "%09" PRId64, t, sub);
        CHECK(query_time_parse(b, now, &got) == 0 && got == t * 1000000000 + sub);
    }

    /* YYYYMMDD: midnight UTC of that day */
    time_t day = (time_t)(t - t % 86400);
    struct tm tm;
    CHECK(gmtime_r(&day, &tm));
    if (tm.tm_year + 1900 <= 9999) {
        CHECK(strftime(b, sizeof b, "%Y%m%d", &tm) == 8);
        CHECK(query_time_parse(b, now, &got) == 0 && got == (int64_t)day * 1000000000);
    }

    /* now-<n><unit> */
    static const struct {
        const char *u;
        int64_t ns;
    } units[] = {{"ms", 1000000LL},           {"s", 1000000000LL},       {"sec", 1000000000LL},
                 {"m", 60000000000LL},        {"min", 60000000000LL},    {"minutes", 60000000000LL},
                 {"h", 3600000000000LL},      {"hour", 3600000000000LL}, {"d", 86400000000000LL},
                 {"days", 86400000000000LL},  {"w", 604800000000000LL},  {"M", 2592000000000000LL},
                 {"mon", 2592000000000000LL}, {"y", 31536000000000000LL}};
    size_t ui = (r >> 20) % (sizeof units / sizeof units[0]);
    int64_t num = (int64_t)(r % 1000);
    if (num > now / units[ui].ns) /* keeps now - offset within int64 */
        num = now / units[ui].ns;
    snprintf(b, sizeof b, "now-%" PRId64 "%s", num, units[ui].u);
    CHECK(query_time_parse(b, now, &got) == 0 && got == now - num * units[ui].ns);
    snprintf(b, sizeof b, "-%" PRId64 "%s", num, units[ui].u);
    CHECK(query_time_parse(b, now, &got) == 0 && got == now - num * units[ui].ns);
}

static int ishexstr(const char *s, size_t want)
{
    if (strlen(s) != want)
        return 0;
    for (size_t i = 0; i < want; i++)
        if (!isxdigit((unsigned char)s[i]))
            return 0;
    return 1;
}

static void hex_ids(const uint8_t *p, size_t n)
{
    char *s = cstr(p, n);
    for (size_t nbytes = 8; nbytes <= 16; nbytes += 8) {
        uint8_t id[16];
        sp_err err = {0};
        int rc = query_hex_id(s, nbytes, "trace id", id, &err);
        int ok = ishexstr(s, 2 * nbytes) && strspn(s, "0") != 2 * nbytes;
        CHECK((rc == 0) == ok);
        if (rc) {
            CHECK(rc == SP_EINVAL && strncmp(err.msg, "trace id", 8) == 0);
            continue;
        }
        char back[33];
        query_hex_encode(id, nbytes, back);
        for (size_t i = 0; i < 2 * nbytes; i++)
            CHECK(back[i] == tolower((unsigned char)s[i]));
    }
    free(s);
}

static void lists(const uint8_t *p, size_t n)
{
    char *s = cstr(p, n);
    sp_arena *a = sp_arena_new(1 << 20);
    char *parts[64];
    size_t np = 0;
    for (char *q = s; np < 64;) {
        parts[np++] = q;
        char *c = strchr(q, ',');
        if (!c)
            break;
        *c = 0;
        q = c + 1;
    }
    uint8_t(*ids)[8];
    sp_err err = {0};
    int rc = query_span_ids_parse(parts, np, "span_id", a, &ids, &err);
    size_t bad = np;
    for (size_t i = 0; i < np && bad == np; i++)
        if (!ishexstr(parts[i], 16))
            bad = i;
    CHECK((rc == 0) == (bad == np));
    if (rc) {
        char want[32];
        snprintf(want, sizeof want, "span_id[%zu] ", bad);
        CHECK(rc == SP_EINVAL && strncmp(err.msg, want, strlen(want)) == 0);
    } else {
        for (size_t i = 0; i < np; i++) {
            char back[17];
            query_hex_encode(ids[i], 8, back);
            CHECK(strncasecmp(back, parts[i], 16) == 0);
        }
    }
    free(s);

    /* profile type ids: the whole input */
    s = cstr(p, n);
    size_t colons = 0;
    for (const char *c = s; *c; c++)
        colons += *c == ':';
    query_type t;
    rc = query_type_parse(s, "profile_typeID", 1, a, &t, &err);
    int ok = (colons == 4 || colons == 5) && s[0] != ':' && s[0];
    CHECK((rc == 0) == ok);
    if (!rc) {
        char joined[1024];
        int jl = snprintf(joined, sizeof joined, "%s:%s:%s:%s:%s", t.name, t.sample_type,
                          t.sample_unit, t.period_type, t.period_unit);
        if (jl > 0 && (size_t)jl < sizeof joined)
            CHECK(strcmp(joined, t.id) == 0 && strncmp(s, t.id, strlen(t.id)) == 0);
        CHECK(!strchr(t.name, ':') && !strchr(t.period_unit, ':'));
    } else {
        CHECK(strstr(err.msg, "profile_typeID") != NULL);
    }
    rc = query_type_parse(s, "x", 0, a, &t, &err);
    CHECK(rc == 0 && t.name && t.period_unit && t.id);
    free(s);
    sp_arena_free(a);
}

/* Input: names separated by 0xff (up to 255), then stacks of [u8 nframes, i32 value, frames as
 * u8 name indices (out-of-range ones wrap)]. */
static void folded(const uint8_t *p, size_t n)
{
    const char *names[256];
    char *name_mem = malloc(n + 1);
    uint32_t nn = 0;
    size_t i = 0, m = 0;
    while (nn < 255 && i <= n) {
        names[nn++] = name_mem + m;
        while (i < n && p[i] != 0xff && p[i] != 0)
            name_mem[m++] = (char)p[i++];
        name_mem[m++] = 0;
        if (i >= n || p[i] == 0) {
            i++;
            break;
        }
        i++;
    }
    store_stack stacks[128];
    uint32_t frames[128][255];
    size_t ns = 0;
    int64_t sum = 0;
    size_t lines = 0;
    while (ns < 128 && i + 5 <= n) {
        uint32_t nf = p[i];
        int64_t v = (int32_t)le(p + i + 1, 4);
        i += 5;
        uint32_t k = 0;
        for (; k < nf && i < n; k++, i++)
            frames[ns][k] = p[i] % nn;
        stacks[ns] = (store_stack){.frames = frames[ns], .nframes = k, .value = v};
        if (v > 0 && k) {
            sum += v;
            lines++;
        }
        ns++;
    }
    store_stacks s = {.names = names, .nnames = nn, .stacks = stacks, .nstacks = ns};
    sp_arena *a = sp_arena_new(1 << 24);
    sp_buf out;
    sp_buf_init(&out, 0);
    sp_err err = {0};
    CHECK(query_folded_encode(&s, a, &out, &err) == 0);
    /* parse the lines back */
    size_t got_lines = 0;
    int64_t got_sum = 0;
    const char *prev = NULL;
    size_t prevlen = 0;
    for (size_t at = 0; at < out.len;) {
        const char *l = (const char *)out.data + at;
        const char *nl = memchr(l, '\n', out.len - at);
        CHECK(nl);
        const char *sp = nl;
        while (sp > l && sp[-1] != ' ')
            sp--;
        CHECK(sp > l);
        char num[32];
        size_t dl = (size_t)(nl - sp);
        CHECK(dl > 0 && dl < sizeof num);
        memcpy(num, sp, dl);
        num[dl] = 0;
        CHECK(strspn(num, "0123456789") == dl);
        got_sum += strtoll(num, NULL, 10);
        size_t tl = (size_t)(sp - 1 - l);
        CHECK(!memchr(l, '\r', tl));
        if (prev) { /* sorted by stack text */
            size_t c = prevlen < tl ? prevlen : tl;
            int cmp = memcmp(prev, l, c);
            CHECK(cmp < 0 || (cmp == 0 && prevlen <= tl));
        }
        prev = l;
        prevlen = tl;
        got_lines++;
        at = (size_t)(nl - (const char *)out.data) + 1;
    }
    CHECK(got_lines == lines && got_sum == sum);
    sp_buf_free(&out);
    sp_arena_free(a);
    free(name_mem);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    switch (data[0] % 4) {
    case 0:
        times(p, n);
        break;
    case 1:
        hex_ids(p, n);
        break;
    case 2:
        lists(p, n);
        break;
    default:
        folded(p, n);
    }
    return 0;
}
