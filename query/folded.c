/* Folded stacks text (see folded.h). */
#include "folded.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

typedef struct line {
    const char *text; /* "a;b;c", NUL-terminated */
    size_t len;
    int64_t value;
} line;

static int line_cmp(const void *pa, const void *pb)
{
    const line *x = pa, *y = pb;
    int c = strcmp(x->text, y->text);
    return c ? c : (x->value < y->value ? -1 : x->value > y->value);
}

static int nomem(sp_err *err)
{
    return sp_fail(err, SP_ETOOBIG, "profile too large for the query budget; narrow the query");
}

int query_folded_encode(const store_stacks *s, sp_arena *a, sp_buf *out, sp_err *err)
{
    line *v = sp_arena_alloc(a, (s->nstacks + 1) * sizeof *v);
    if (!v)
        return nomem(err);
    size_t n = 0;
    for (size_t i = 0; i < s->nstacks; i++) {
        const store_stack *st = &s->stacks[i];
        if (st->value <= 0 || !st->nframes)
            continue;
        size_t len = 0;
        for (uint32_t k = 0; k < st->nframes; k++) {
            if (st->frames[k] >= s->nnames)
                return sp_fail(err, SP_EINTERNAL, "stack %zu: frame name out of range", i);
            len += strlen(s->names[st->frames[k]]) + 1;
        }
        char *t = sp_arena_alloc(a, len);
        if (!t)
            return nomem(err);
        size_t p = 0;
        for (uint32_t k = st->nframes; k-- > 0;) { /* the store gives leaf first */
            for (const char *c = s->names[st->frames[k]]; *c; c++)
                t[p++] = *c == '\n' || *c == '\r' ? ' ' : *c;
            t[p++] = k ? ';' : 0;
        }
        v[n++] = (line){t, p - 1, st->value};
    }
    qsort(v, n, sizeof *v, line_cmp);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        rc = sp_buf_append(out, v[i].text, v[i].len);
        if (!rc)
            rc = sp_buf_printf(out, " %" PRId64 "\n", v[i].value);
    }
    return rc ? nomem(err) : 0;
}
