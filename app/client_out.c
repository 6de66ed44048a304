/* spanprof query: output (see client_internal.h): durations and times for people, aligned
 * tables, the span tree of a trace, the top functions computed from a folded profile, and -o
 * files written whole or not at all (invariant 2 of client.c). */
#include "client_internal.h"

#include "../common/profile.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- formatting and tables -------------------------------------------------------------------
 */

/* Bytes with terminal control characters replaced (a span name must not drive the terminal). */
char *clean(sp_arena *a, const char *s, size_t n)
{
    char *o = sp_arena_alloc(a, n + 1);
    if (!o)
        return NULL;
    for (size_t i = 0; i < n; i++)
        o[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    o[n] = 0;
    return o;
}

/* ns for people: "0s", "750ns", "12.5us", "900ms", "1.25s", "1m05s", "2h03m". */
void fmt_dur(int64_t ns, char *out, size_t cap)
{
    static const struct {
        const char *unit;
        double ns;
    } units[] = {{"us", 1e3}, {"ms", 1e6}, {"s", 1e9}};
    if (ns < 0) {
        out[0] = '-';
        fmt_dur(ns == INT64_MIN ? INT64_MAX : -ns, out + 1, cap - 1);
        return;
    }
    if (ns < 1000) {
        snprintf(out, cap, "%" PRId64 "%s", ns, ns ? "ns" : "s");
        return;
    }
    for (int i = 0; i < 3; i++) {
        double v = (double)ns / units[i].ns;
        if (i < 2 && v >= 999.5)
            continue;
        if (i == 2 && v >= 59.995)
            break;
        /* three significant digits, trailing zeros dropped */
        snprintf(out, cap, "%.*f", v >= 99.95 ? 0 : v >= 9.995 ? 1 : 2, v);
        if (strchr(out, '.')) {
            char *e = out + strlen(out);
            while (e[-1] == '0')
                *--e = 0;
            if (e[-1] == '.')
                *--e = 0;
        }
        snprintf(out + strlen(out), cap - strlen(out), "%s", units[i].unit);
        return;
    }
    int64_t s = (ns + SEC_NS / 2) / SEC_NS, m = (s + 30) / 60;
    if (s < 3600)
        snprintf(out, cap, "%" PRId64 "m%02" PRId64 "s", s / 60, s % 60);
    else
        snprintf(out, cap, "%" PRId64 "h%02" PRId64 "m", m / 60, m % 60);
}

/* A value in the profile's unit: durations for nanoseconds, else the number. */
void fmt_value(int64_t v, int ns, char *out, size_t cap)
{
    if (ns)
        fmt_dur(v, out, cap);
    else
        snprintf(out, cap, "%" PRId64, v);
}

void fmt_time(int64_t unix_ns, const char *fmt, char *out, size_t cap)
{
    time_t t = (time_t)(unix_ns / SEC_NS);
    struct tm tm;
    if (!localtime_r(&t, &tm) || !strftime(out, cap, fmt, &tm))
        snprintf(out, cap, "%" PRId64, unix_ns);
}

int table_row(table *t, ...)
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 64;
        const char **cells = sp_arena_alloc(t->a, cap * t->ncols * sizeof *cells);
        if (!cells)
            return -1;
        if (t->nrows)
            memcpy(cells, t->cells, t->nrows * t->ncols * sizeof *cells);
        t->cells = cells;
        t->cap = cap;
    }
    va_list ap;
    va_start(ap, t);
    int rc = 0;
    for (size_t i = 0; i < t->ncols; i++) {
        const char *s = va_arg(ap, const char *);
        const char *c = clean(t->a, s, strlen(s));
        rc |= !c;
        t->cells[t->nrows * t->ncols + i] = c ? c : "";
    }
    va_end(ap);
    t->nrows++;
    return rc;
}

static size_t width(const char *s) /* in characters (UTF-8 code points) */
{
    size_t w = 0;
    for (; *s; s++)
        w += ((unsigned char)*s & 0xc0) != 0x80;
    return w;
}

void table_print(const table *t, FILE *f)
{
    size_t w[16] = {0};
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t i = 0; i < t->ncols; i++) {
            size_t cw = width(t->cells[r * t->ncols + i]);
            w[i] = cw > w[i] ? cw : w[i];
        }
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t i = 0; i < t->ncols; i++) {
            const char *s = t->cells[r * t->ncols + i];
            size_t pad = w[i] - width(s);
            int last = i + 1 == t->ncols;
            if (t->right[i] == 'r')
                fprintf(f, "%*s%s", (int)pad, "", s);
            else
                fprintf(f, "%s%*s", s, last ? 0 : (int)pad, "");
            fputs(last ? "\n" : "  ", f);
        }
    }
}

/* The answer as it came, ending in a newline: --output json. */
void print_raw(const answer *ans)
{
    fwrite(ans->body.data, 1, ans->body.len, stdout);
    if (!ans->body.len || ans->body.data[ans->body.len - 1] != '\n')
        putchar('\n');
}

/* An integer member, also when sent as a string (Unix nanoseconds exceed 2^53). */
int64_t jint(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    if (json_is_integer(v))
        return json_integer_value(v);
    if (json_is_real(v))
        return (int64_t)json_real_value(v);
    if (json_is_string(v))
        return strtoll(json_string_value(v), NULL, 10);
    return 0;
}

const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* ---- the span tree of a trace ----------------------------------------------------------------
 */

/* The order the tree prints the spans in: each span after its parent and its earlier siblings
 * (the server sends them by start time). A span whose parent is not in the trace starts a tree;
 * spans in a parent cycle (bad input) are printed from the first of them. */
typedef struct span_ref {
    const char *id;
    size_t i;
} span_ref;

static int ref_cmp(const void *pa, const void *pb)
{
    return strcmp(((const span_ref *)pa)->id, ((const span_ref *)pb)->id);
}

int span_tree(const json_t *spans, sp_arena *a, size_t *order, int *depth)
{
    size_t n = json_array_size(spans);
    size_t *parent = sp_arena_alloc(a, (n + 1) * sizeof *parent);
    size_t *first = sp_arena_alloc(a, (n + 1) * sizeof *first);
    size_t *next = sp_arena_alloc(a, (n + 1) * sizeof *next);
    size_t *last = sp_arena_alloc(a, (n + 1) * sizeof *last);
    size_t *stack = sp_arena_alloc(a, (n + 1) * sizeof *stack);
    span_ref *by_id = sp_arena_alloc(a, (n + 1) * sizeof *by_id);
    char *done = sp_arena_calloc(a, n + 1, 1);
    if (!parent || !first || !next || !last || !stack || !by_id || !done)
        return -1;
    for (size_t i = 0; i < n; i++)
        by_id[i] = (span_ref){jstr(json_array_get(spans, i), "span_id"), i};
    qsort(by_id, n, sizeof *by_id, ref_cmp); /* parents by id, so a large trace costs n log n */
    for (size_t i = 0; i < n; i++) {
        first[i] = last[i] = next[i] = parent[i] = SIZE_MAX;
        span_ref key = {jstr(json_array_get(spans, i), "parent_span_id"), 0};
        const span_ref *p = *key.id ? bsearch(&key, by_id, n, sizeof *by_id, ref_cmp) : NULL;
        if (p && p->i != i)
            parent[i] = p->i;
    }
    for (size_t i = 0; i < n; i++) { /* children lists, in start order */
        size_t p = parent[i];
        if (p == SIZE_MAX)
            continue;
        if (first[p] == SIZE_MAX)
            first[p] = i;
        else
            next[last[p]] = i;
        last[p] = i;
    }
    size_t k = 0;
    for (int pass = 0; pass < 2; pass++)
        for (size_t r = 0; r < n; r++) {
            if (done[r] || (pass == 0 && parent[r] != SIZE_MAX))
                continue;
            /* depth-first, iteratively: a deep chain of spans does not recurse */
            size_t sp = 0;
            stack[sp++] = r;
            depth[r] = 0;
            while (sp) {
                size_t s = stack[--sp];
                if (done[s])
                    continue;
                done[s] = 1;
                order[k++] = s;
                size_t nkids = 0;
                for (size_t ch = first[s]; ch != SIZE_MAX; ch = next[ch])
                    nkids += !done[ch];
                /* the last child pushed first, so the first child comes out next */
                size_t at = sp + nkids;
                for (size_t ch = first[s]; ch != SIZE_MAX; ch = next[ch])
                    if (!done[ch]) {
                        stack[--at] = ch;
                        depth[ch] = depth[s] + 1;
                    }
                sp += nkids;
            }
        }
    return 0;
}

/* ---- the top functions of a folded profile ---------------------------------------------------
 */

static uint64_t hash(const char *s, size_t n) /* FNV-1a */
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

static func *funcs_get(funcs *f, const char *name, size_t len)
{
    if (2 * (f->n + 1) > f->nslots) { /* grow: keep the table at most half full */
        size_t ns = f->nslots ? 2 * f->nslots : 1024;
        size_t *slots = sp_arena_alloc(f->a, ns * sizeof *slots);
        func *v = sp_arena_alloc(f->a, ns / 2 * sizeof *v);
        if (!slots || !v)
            return NULL;
        memset(slots, 0xff, ns * sizeof *slots);
        for (size_t i = 0; i < f->n; i++) {
            size_t h = hash(f->v[i].name, f->v[i].len) & (ns - 1);
            while (slots[h] != SIZE_MAX)
                h = (h + 1) & (ns - 1);
            slots[h] = i;
        }
        if (f->n)
            memcpy(v, f->v, f->n * sizeof *v);
        f->v = v, f->slots = slots, f->nslots = ns;
    }
    size_t h = hash(name, len) & (f->nslots - 1);
    for (; f->slots[h] != SIZE_MAX; h = (h + 1) & (f->nslots - 1)) {
        func *e = &f->v[f->slots[h]];
        if (e->len == len && memcmp(e->name, name, len) == 0)
            return e;
    }
    f->slots[h] = f->n;
    f->v[f->n] = (func){.name = name, .len = len};
    return &f->v[f->n++];
}

/* Self and total per function from folded text ("root;...;leaf value" lines). */
int top_from_folded(char *text, size_t len, funcs *f, int64_t *sum, size_t *nstacks, sp_err *err)
{
    size_t lineno = 0;
    *sum = 0;
    *nstacks = 0;
    for (char *line = text; line < text + len;) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line));
        char *end = nl ? nl : text + len;
        lineno++;
        char *sp = end;
        while (sp > line && sp[-1] != ' ')
            sp--;
        if (end == line) {
            line = end + 1;
            continue;
        }
        char *vend = NULL;
        long long v = sp > line ? strtoll(sp, &vend, 10) : 0;
        if (sp == line || sp - 1 == line || vend != end || v < 0)
            return sp_fail(err, SP_EUNAVAIL, "folded line %zu: not \"frames value\"", lineno);
        *sum = sp_sat_add(*sum, v);
        (*nstacks)++;
        size_t leaf = SIZE_MAX; /* an index: funcs_get() may move the array */
        for (char *fr = line; fr < sp - 1;) {
            char *semi = memchr(fr, ';', (size_t)(sp - 1 - fr));
            char *fe = semi ? semi : sp - 1;
            func *e = funcs_get(f, fr, (size_t)(fe - fr));
            if (!e)
                return sp_fail(err, SP_ENOMEM, "out of memory");
            if (e->stamp != lineno) { /* once per stack: recursion counts once */
                e->total = sp_sat_add(e->total, v);
                e->stamp = lineno;
            }
            leaf = (size_t)(e - f->v);
            fr = fe + 1;
        }
        if (leaf != SIZE_MAX)
            f->v[leaf].self = sp_sat_add(f->v[leaf].self, v);
        line = end + 1;
    }
    return 0;
}

int func_cmp(const void *pa, const void *pb, void *ud)
{
    const func *x = pa, *y = pb;
    int sort_total = *(const int *)ud;
    int64_t a1 = sort_total ? x->total : x->self, b1 = sort_total ? y->total : y->self;
    int64_t a2 = sort_total ? x->self : x->total, b2 = sort_total ? y->self : y->total;
    if (a1 != b1)
        return a1 > b1 ? -1 : 1;
    if (a2 != b2)
        return a2 > b2 ? -1 : 1;
    size_t m = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->name, y->name, m);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

int print_top_json(const cmdline *cl, const char *id, const char *unit, const funcs *f,
                   size_t shown, int64_t sum)
{
    json_t *list = json_array();
    json_t *doc =
        json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:o}", "span_id", id, "profile_type", cl->type_id,
                  "unit", unit, "total", (json_int_t)sum, "functions_count", (json_int_t)f->n,
                  "sort", cl->sort_total ? "total" : "self", "functions", list);
    int rc = doc ? 0 : -1;
    for (size_t i = 0; i < shown && !rc; i++) {
        json_t *name = json_stringn(f->v[i].name, f->v[i].len);
        if (!name) { /* not UTF-8: the bytes past ASCII as '?' */
            char *s = strndup(f->v[i].name, f->v[i].len);
            for (char *p = s; p && *p; p++)
                *p = *p & 0x80 ? '?' : *p;
            name = s ? json_string(s) : NULL;
            free(s);
        }
        rc = json_array_append_new(list, json_pack("{s:o?, s:I, s:I}", "name", name, "self",
                                                   (json_int_t)f->v[i].self, "total",
                                                   (json_int_t)f->v[i].total));
    }
    if (!rc)
        rc = json_dumpf(doc, stdout, JSON_COMPACT) | (putchar('\n') == EOF);
    json_decref(doc);
    return rc;
}

/* ---- -o files --------------------------------------------------------------------------------
 */

/* -o FILE: a temporary file beside FILE, made before the request, so a path that cannot be
 * written is a usage error found before anything is sent (invariant 2). */
int out_open(const char *file, sp_arena *a, char **tmp, FILE **f, sp_err *err)
{
    *tmp = NULL;
    *f = stdout;
    if (!file || strcmp(file, "-") == 0)
        return 0;
    size_t n = strlen(file);
    *tmp = sp_arena_alloc(a, n + 16);
    if (!*tmp)
        return sp_fail(err, SP_ENOMEM, "out of memory");
    snprintf(*tmp, n + 16, "%s.tmp-XXXXXX", file);
    int fd = mkstemp(*tmp);
    if (fd < 0) {
        *tmp = NULL;
        return sp_fail(err, SP_EINVAL, "cannot write %s: %s", file, strerror(errno));
    }
    mode_t mask = umask(0);
    umask(mask);
    if (fchmod(fd, 0666 & ~mask) != 0 || !(*f = fdopen(fd, "wb"))) {
        int e = errno;
        close(fd);
        unlink(*tmp);
        *tmp = NULL;
        return sp_fail(err, SP_EINTERNAL, "cannot write %s: %s", file, strerror(e));
    }
    return 0;
}

int out_close(const char *file, char *tmp, FILE *f, int ok, sp_err *err)
{
    if (!tmp) {
        if (fflush(f) != 0 && ok)
            return sp_fail(err, SP_EINTERNAL, "cannot write stdout: %s", strerror(errno));
        return 0;
    }
    int failed = ferror(f) | (fclose(f) != 0);
    if (ok && !failed && rename(tmp, file) == 0)
        return 0;
    int e = errno;
    unlink(tmp);
    return ok ? sp_fail(err, SP_EINTERNAL, "cannot write %s: %s", file, strerror(e)) : 0;
}
