#include "convert.h"
#include "../common/strtab.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef Opentelemetry__Proto__Profiles__V1development__ProfilesDictionary dict_t;
typedef Opentelemetry__Proto__Profiles__V1development__Profile profile_t;
typedef Opentelemetry__Proto__Profiles__V1development__Sample sample_t;
typedef Opentelemetry__Proto__Profiles__V1development__KeyValueAndUnit kvu_t;
typedef Opentelemetry__Proto__Common__V1__AnyValue any_t;

#define TEN_SECONDS_NS 10000000000LL

/* What one attribute_table entry means for a sample, worked out once per request: the hot loop
 * then costs an array lookup per attribute instead of string compares and interning. */
enum { ATTR_UNSEEN = 0, ATTR_SKIP, ATTR_TID, ATTR_PID, ATTR_THREAD_NAME, ATTR_LABEL, ATTR_SERVICE };

typedef struct attr_info {
    uint8_t kind;
    int64_t num;     /* ATTR_TID, ATTR_PID */
    uint32_t str;    /* ATTR_THREAD_NAME */
    sp_label label;  /* ATTR_LABEL */
    const char *svc; /* ATTR_SERVICE: its string value (NULL when not a string) */
} attr_info;

/* A stack's location ids as samples get them (sp_sample.location_ids, nlocations): its count
 * kept beside them, so a sample that reuses the stack does not load the decoded Stack again. */
typedef struct stack_ref {
    uint32_t *ids;
    uint32_t n;
} stack_ref;

/* Conversion state of one request: the shared string table (the dictionary's strings followed by
 * the ones conversion adds) and the dictionary tables converted once for every profile. */
typedef struct conv {
    sp_arena *a;
    const dict_t *d;
    sp_strtab st; /* the dictionary's strings, then the ones conversion adds */
    sp_function *funcs;
    uint32_t nfuncs, capfuncs;
    sp_location *locs;
    uint32_t nlocs;
    sp_mapping *maps;
    uint32_t nmaps;
    attr_info *attrs;       /* per attribute_table entry, filled on first use */
    uint32_t *ftypes;       /* per attribute_table entry: 0 unseen, 1 not profile.frame.type, else
                             * 2 + the string index of its value (frame_type) */
    stack_ref *stacks;      /* per stack_table entry, filled on first use */
    sp_print *prints;       /* per location (sp_location_prints()); NULL past the budget */
    sp_print *stack_prints; /* per stack_table entry, made with c->stacks[k]; NULL with prints */
    /* What synthetic_name() measured: each mapping's file basename (len + 1; 0 not yet), and the
     * last frame type's length (an eBPF request names thousands of frames of a few of each). */
    uint32_t *map_base_len;
    const char **map_base;
    uint32_t ftype_idx, ftype_len;
    int8_t sample_services; /* an attribute keyed service.name: -1 not looked yet, 0 none, 1 some */
} conv;

/* Index of s in the request's string table, adding it when new (0 on allocation failure, which
 * keeps the profile valid). */
static uint32_t intern_n(conv *c, const char *s, size_t len)
{
    return sp_strtab_intern(&c->st, s, len);
}

static uint32_t intern(conv *c, const char *s)
{
    return s ? intern_n(c, s, strlen(s)) : 0;
}

static const char *str_at(const conv *c, int32_t i)
{
    return i > 0 && (uint32_t)i < c->st.n ? c->st.s[i] : "";
}

char *otlp_label_name(sp_arena *a, const char *key)
{
    size_t n = strlen(key), lead = n && key[0] >= '0' && key[0] <= '9';
    char *out = sp_arena_alloc(a, n + lead + 1);
    if (!out)
        return NULL;
    if (lead)
        out[0] = '_';
    for (size_t i = 0; i < n; i++) {
        char ch = key[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '_';
        out[i + lead] = ok ? ch : '_';
    }
    out[n + lead] = 0;
    return out;
}

/* The string form of an attribute value, as Pyroscope reads it: strings, integers, and
 * single-element arrays of those. NULL for other types. */
static const char *any_string(conv *c, const any_t *v, char *num, size_t numsz)
{
    if (!v)
        return NULL;
    switch (v->value_case) {
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE:
        return v->string_value;
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE_STRINDEX:
        return v->string_value_strindex > 0 && (uint32_t)v->string_value_strindex < c->st.n
                   ? c->st.s[v->string_value_strindex]
                   : NULL;
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE:
        snprintf(num, numsz, "%" PRId64, v->int_value);
        return num;
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE:
        if (v->array_value && v->array_value->n_values == 1)
            return any_string(c, v->array_value->values[0], num, numsz);
        return NULL;
    default:
        return NULL;
    }
}

static int any_int(const any_t *v, int64_t *out)
{
    if (!v)
        return 0;
    if (v->value_case == OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE) {
        *out = v->int_value;
        return 1;
    }
    if (v->value_case == OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE &&
        v->string_value) {
        char *end;
        long long x = strtoll(v->string_value, &end, 10);
        if (*end == 0 && end != v->string_value) {
            *out = x;
            return 1;
        }
    }
    return 0;
}

static const kvu_t *attr(const conv *c, int32_t idx)
{
    const dict_t *d = c->d;
    if (idx <= 0 || (size_t)idx >= d->n_attribute_table)
        return NULL;
    return d->attribute_table[idx];
}

/* The value of the first attribute named key among indices[0..n). */
static const any_t *find_attr(const conv *c, const int32_t *indices, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++) {
        const kvu_t *kv = attr(c, indices[i]);
        if (kv && strcmp(str_at(c, kv->key_strindex), key) == 0)
            return kv->value;
    }
    return NULL;
}

/* The string index of a location's profile.frame.type (find_attr's first match, interned; 0
 * when it has none). Each attribute_table entry is looked at once per request: the locations
 * of one frame type share an entry, and comparing keys per location (find_attr alone was 3.7 %
 * of an ingest worker's CPU), then interning the value, was paid tens of thousands of times per
 * eBPF Export (bench/RESULTS.md, issue 19). */
static uint32_t frame_type(conv *c, const int32_t *indices, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const kvu_t *kv = attr(c, indices[i]);
        if (!kv)
            continue;
        uint32_t *memo = &c->ftypes[indices[i]];
        if (!*memo) {
            char num[32];
            *memo = strcmp(str_at(c, kv->key_strindex), "profile.frame.type") != 0
                        ? 1
                        : 2 + intern(c, any_string(c, kv->value, num, sizeof num));
        }
        if (*memo >= 2)
            return *memo - 2;
    }
    return 0;
}

static int add_function(conv *c, uint32_t name)
{
    if (c->nfuncs == c->capfuncs) {
        uint32_t cap = c->capfuncs * 2 + 16;
        sp_function *f = sp_arena_alloc(c->a, cap * sizeof *f);
        if (!f)
            return -1;
        if (c->nfuncs)
            memcpy(f, c->funcs, c->nfuncs * sizeof *f);
        c->funcs = f;
        c->capfuncs = cap;
    }
    sp_function *f = &c->funcs[c->nfuncs];
    memset(f, 0, sizeof *f);
    f->name = f->system_name = name;
    return (int)c->nfuncs++;
}

/* A frame the sender could not symbolize still needs a name in a flame graph (common/profile.h:
 * frame type, address, mapping file). For a bare location (may_defer) whose name fits
 * SP_FRAME_NAME_MAX it is left to readers (0: sp_function.made_up), who make the same name with
 * sp_location_names() when they need it: most never do (the correlator names a known location
 * by its print, the store does not keep such names), and writing one for each of an eBPF
 * request's tens of thousands of native frames was 2.5 % of the server's instructions. */
static uint32_t synthetic_name(conv *c, const sp_location *loc, int may_defer)
{
    char buf[512];
    const char *base = NULL;
    size_t base_len = 0;
    uint32_t m = loc->mapping_id;
    if (m && m < c->nmaps && c->map_base_len) {
        if (!c->map_base_len[m]) {
            c->map_base[m] = sp_frame_basename(c->st.s[c->maps[m].filename]);
            c->map_base_len[m] = 1 + (c->map_base[m] ? (uint32_t)strlen(c->map_base[m]) : 0);
        }
        base = c->map_base[m];
        base_len = c->map_base_len[m] - 1;
    } else if (m && m < c->nmaps) {
        base = sp_frame_basename(c->st.s[c->maps[m].filename]);
        base_len = base ? strlen(base) : 0;
    }
    const char *type = loc->frame_type ? c->st.s[loc->frame_type] : "";
    if (loc->frame_type != c->ftype_idx) {
        c->ftype_idx = loc->frame_type;
        c->ftype_len = (uint32_t)strlen(type);
    }
    /* Written where the table keeps it (new but for a repeated address); a name past the buffer
     * this used is cut there as before. */
    size_t n = sp_frame_name_len(c->ftype_len, loc->address, base_len);
    if (may_defer && n < SP_FRAME_NAME_MAX)
        return 0;
    if (n >= sizeof buf) {
        n = sp_frame_name_parts(buf, sizeof buf, type, c->ftype_len, loc->address, base, base_len);
        return sp_strtab_add(&c->st, buf, n);
    }
    char *room;
    uint32_t idx = sp_strtab_add_room(&c->st, n, &room);
    if (room)
        sp_frame_name_parts(room, n + 1, type, c->ftype_len, loc->address, base, base_len);
    return idx;
}

/* The locations' prints, made here on a worker so the store's one writer need not key each
 * location of every request again. Their room is added to the budget: 16 bytes per entry of
 * tables the request's budget already took, so a request that fit without prints still fits
 * (should they not, the store keys the locations as before). */
static void location_prints(conv *c)
{
    sp_arena_raise_budget(c->a,
                          ((size_t)c->nlocs + c->nfuncs + c->nmaps + 3) * sizeof(sp_print) + 256);
    sp_profile tables = {.strings = c->st.s,
                         .string_lens = c->st.len,
                         .nstrings = c->st.n,
                         .functions = c->funcs,
                         .nfunctions = c->nfuncs,
                         .locations = c->locs,
                         .nlocations = c->nlocs,
                         .mappings = c->maps,
                         .nmappings = c->nmaps};
    (void)sp_location_prints(&tables, c->a, &c->prints);
    /* A print per stack too (sp_stack_print(), made when the stack is first used): the store
     * then finds a known stack without resolving its locations. Its room is the budget's own as
     * well, raised by what it takes. */
    size_t nstacks = c->d->n_stack_table + 1;
    if (c->prints && nstacks <= UINT32_MAX) {
        sp_arena_raise_budget(c->a, nstacks * sizeof(sp_print) + 64);
        c->stack_prints = sp_arena_alloc(c->a, nstacks * sizeof(sp_print));
    }
}

/* The function table, the request's entries zeroed, with room for a function per bare location
 * (its made-up name, left to readers) at once: not a table doubled and copied as they come, tens
 * of thousands in an eBPF request. NULL when the budget has no room. */
static sp_function *function_table(conv *c)
{
    const dict_t *d = c->d;
    uint32_t bare = 0;
    for (uint32_t i = 1; i < d->n_location_table; i++)
        bare += d->location_table[i]->n_lines == 0;
    c->nfuncs = d->n_function_table ? (uint32_t)d->n_function_table : 1;
    c->capfuncs = c->nfuncs + bare + 16;
    sp_function *f = sp_arena_alloc(c->a, (size_t)c->capfuncs * sizeof *f);
    if (f) /* add_function() zeroes the rest */
        memset(f, 0, (size_t)c->nfuncs * sizeof *f);
    return f;
}

static int convert_dictionary(conv *c, sp_err *err)
{
    const dict_t *d = c->d;
    if (sp_strtab_init(&c->st, c->a, d->string_table, d->n_string_table))
        return sp_fail(err, SP_ETOOBIG, "string table too large for the request budget");

    c->nmaps = d->n_mapping_table ? (uint32_t)d->n_mapping_table : 1;
    c->maps = sp_arena_calloc(c->a, c->nmaps, sizeof *c->maps);
    c->funcs = function_table(c);
    c->nlocs = d->n_location_table ? (uint32_t)d->n_location_table : 1;
    c->locs = sp_arena_calloc(c->a, c->nlocs, sizeof *c->locs);
    c->attrs = sp_arena_calloc(c->a, d->n_attribute_table + 1, sizeof *c->attrs);
    c->ftypes = sp_arena_calloc(c->a, d->n_attribute_table + 1, sizeof *c->ftypes);
    c->stacks = sp_arena_calloc(c->a, d->n_stack_table + 1, sizeof *c->stacks);
    c->map_base_len = sp_arena_calloc(c->a, c->nmaps, sizeof *c->map_base_len);
    c->map_base = sp_arena_calloc(c->a, c->nmaps, sizeof *c->map_base);
    if (!c->map_base)
        c->map_base_len = NULL; /* measured each time instead */
    if (!c->maps || !c->funcs || !c->locs || !c->attrs || !c->ftypes || !c->stacks)
        return sp_fail(err, SP_ETOOBIG, "dictionary too large for the request budget");

    /* Every mapping interns its build id: room for them at once. Bare locations' names are
     * mostly left to readers (synthetic_name); the few too long for that grow the table. Failing
     * only leaves the table to grow as it goes. */
    sp_strtab_reserve(&c->st, (uint32_t)d->n_mapping_table, 0);
    for (uint32_t i = 1; i < d->n_mapping_table; i++) {
        const Opentelemetry__Proto__Profiles__V1development__Mapping *m = d->mapping_table[i];
        sp_mapping *o = &c->maps[i];
        o->memory_start = m->memory_start;
        o->memory_limit = m->memory_limit;
        o->file_offset = m->file_offset;
        o->filename = m->filename_strindex > 0 && (uint32_t)m->filename_strindex < c->st.n
                          ? (uint32_t)m->filename_strindex
                          : 0;
        char num[32];
        const char *bid = any_string(c,
                                     find_attr(c, m->attribute_indices, m->n_attribute_indices,
                                               "process.executable.build_id.gnu"),
                                     num, sizeof num);
        o->build_id = intern(c, bid);
    }
    for (uint32_t i = 1; i < d->n_function_table; i++) {
        const Opentelemetry__Proto__Profiles__V1development__Function *f = d->function_table[i];
        sp_function *o = &c->funcs[i];
        o->name = f->name_strindex > 0 && (uint32_t)f->name_strindex < c->st.n
                      ? (uint32_t)f->name_strindex
                      : 0;
        if (o->name && c->st.len[o->name] == 0)
            o->name = 0; /* a duplicate "" in the table is still no name */
        o->system_name = f->system_name_strindex > 0 && (uint32_t)f->system_name_strindex < c->st.n
                             ? (uint32_t)f->system_name_strindex
                             : o->name;
        o->filename = f->filename_strindex > 0 && (uint32_t)f->filename_strindex < c->st.n
                          ? (uint32_t)f->filename_strindex
                          : 0;
        o->start_line = f->start_line;
    }
    for (uint32_t i = 1; i < d->n_location_table; i++) {
        const Opentelemetry__Proto__Profiles__V1development__Location *l = d->location_table[i];
        sp_location *o = &c->locs[i];
        o->mapping_id = l->mapping_index > 0 && (uint32_t)l->mapping_index < c->nmaps
                            ? (uint32_t)l->mapping_index
                            : 0;
        o->address = l->address;
        o->frame_type = frame_type(c, l->attribute_indices, l->n_attribute_indices);
        o->nlines = (uint32_t)l->n_lines;
        o->lines = o->nlines ? sp_arena_alloc(c->a, o->nlines * sizeof *o->lines) : NULL;
        if (o->nlines && !o->lines)
            return sp_fail(err, SP_ETOOBIG, "location table too large for the request budget");
        int unnamed = o->nlines == 0;
        for (uint32_t k = 0; k < o->nlines; k++) {
            int32_t fi = l->lines[k]->function_index;
            o->lines[k].function_id =
                fi > 0 && (uint32_t)fi < d->n_function_table ? (uint32_t)fi : 0;
            o->lines[k].line = l->lines[k]->line;
            o->lines[k].column = l->lines[k]->column;
            if (!o->lines[k].function_id || !c->funcs[o->lines[k].function_id].name)
                unnamed = 1;
        }
        if (!unnamed)
            continue;
        int fid = add_function(c, synthetic_name(c, o, o->nlines == 0));
        if (fid < 0)
            return sp_fail(err, SP_ETOOBIG, "function table too large for the request budget");
        c->funcs[fid].made_up = 1; /* one function per unnamed location */
        if (o->nlines == 0) {
            o->lines = sp_arena_calloc(c->a, 1, sizeof *o->lines);
            if (!o->lines)
                return sp_fail(err, SP_ETOOBIG, "location table too large for the request budget");
            o->nlines = 1;
            o->bare = 1;
        }
        for (uint32_t k = 0; k < o->nlines; k++)
            if (!o->lines[k].function_id || !c->funcs[o->lines[k].function_id].name)
                o->lines[k].function_id = (uint32_t)fid;
    }
    /* pprof's mapping flags, derived from what the locations carry (as Pyroscope does). */
    for (uint32_t i = 1; i < c->nlocs; i++) {
        sp_location *l = &c->locs[i];
        if (!l->mapping_id)
            continue;
        sp_mapping *m = &c->maps[l->mapping_id];
        for (uint32_t k = 0; k < l->nlines; k++) {
            const sp_function *f = &c->funcs[l->lines[k].function_id];
            m->has_functions |= f->name != 0;
            m->has_filenames |= f->filename != 0;
            m->has_line_numbers |= l->lines[k].line != 0;
        }
        m->has_inline_frames |= l->nlines > 1;
    }
    location_prints(c);
    return 0;
}

/* ---- series labels ---- */

typedef struct labelset {
    sp_kv *kv;
    uint32_t n, cap;
} labelset;

static int labels_add(conv *c, labelset *ls, const char *name, const char *value)
{
    if (!name || !*name || !value)
        return 0;
    for (uint32_t i = 0; i < ls->n; i++)
        if (strcmp(ls->kv[i].name, name) == 0)
            return 0; /* first occurrence wins */
    if (ls->n == ls->cap) {
        uint32_t cap = ls->cap * 2 + 16;
        sp_kv *kv = sp_arena_alloc(c->a, cap * sizeof *kv);
        if (!kv)
            return SP_ETOOBIG;
        if (ls->n)
            memcpy(kv, ls->kv, ls->n * sizeof *kv);
        ls->kv = kv;
        ls->cap = cap;
    }
    ls->kv[ls->n].name = name;
    ls->kv[ls->n].value = value;
    ls->n++;
    return 0;
}

static int add_kv_list(conv *c, labelset *ls, Opentelemetry__Proto__Common__V1__KeyValue **kvs,
                       size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *key = NULL, *str = NULL;
        if (otlp_resolve_kv(kvs[i], (char *const *)c->st.s, c->d ? c->d->n_string_table : 0, &key,
                            &str, NULL) != 0)
            continue; /* a broken reference in a resource attribute: treat as absent */
        char num[32];
        if (!str)
            str = any_string(c, kvs[i]->value, num, sizeof num);
        if (!key || !*key || !str)
            continue;
        if (str == num)
            str = sp_arena_strndup(c->a, num, strlen(num));
        char *name = otlp_label_name(c->a, key);
        if (!name || labels_add(c, ls, name, str))
            return SP_ETOOBIG;
    }
    return 0;
}

static const char *resource_attr(conv *c, Opentelemetry__Proto__Common__V1__KeyValue **kvs,
                                 size_t n, const char *want, int64_t *num_out)
{
    for (size_t i = 0; i < n; i++) {
        const char *key = NULL, *str = NULL;
        if (otlp_resolve_kv(kvs[i], (char *const *)c->st.s, c->d ? c->d->n_string_table : 0, &key,
                            &str, NULL) != 0 ||
            !key || strcmp(key, want) != 0)
            continue;
        if (num_out && any_int(kvs[i]->value, num_out))
            return "";
        if (str)
            return str;
        static _Thread_local char num[32];
        return any_string(c, kvs[i]->value, num, sizeof num);
    }
    return NULL;
}

static int cmp_kv(const void *a, const void *b)
{
    return strcmp(((const sp_kv *)a)->name, ((const sp_kv *)b)->name);
}

/* ---- profiles ---- */

typedef struct type_rule {
    const char *name;
    uint32_t sample_type, sample_unit;
    int64_t scale;
} type_rule;

/* Pyroscope's profile type rules for OTLP (pkg/ingester/otlp/convert.go, profileType). */
static void profile_type(conv *c, const profile_t *p, type_rule *r, const char **type_id)
{
    const char *st = p->sample_type ? str_at(c, p->sample_type->type_strindex) : "";
    const char *su = p->sample_type ? str_at(c, p->sample_type->unit_strindex) : "";
    int has_period = p->period_type && p->period != 0;
    const char *pt = has_period ? str_at(c, p->period_type->type_strindex) : "";
    const char *pu = has_period ? str_at(c, p->period_type->unit_strindex) : "";
    r->sample_type = intern(c, st);
    r->sample_unit = intern(c, su);
    r->scale = 1;
    if (strcmp(st, "samples") == 0 && strcmp(su, "count") == 0 && strcmp(pt, "cpu") == 0 &&
        strcmp(pu, "nanoseconds") == 0) {
        /* eBPF CPU samples: one count is one period of CPU time. */
        r->name = "process_cpu";
        r->sample_type = intern(c, "cpu");
        r->sample_unit = intern(c, "nanoseconds");
        r->scale = p->period;
        st = "cpu";
        su = "nanoseconds";
    } else if ((strcmp(st, "itimer") == 0 || strcmp(st, "cpu") == 0 || strcmp(st, "wall") == 0) &&
               (strcmp(su, "ns") == 0 || strcmp(su, "nanoseconds") == 0)) {
        /* The Pyroscope Java agent's OTLP (async-profiler's event as the sample type, values in
         * ns): named as its JFR uploads are, so Grafana shows CPU / wall either way. */
        int wall = strcmp(st, "wall") == 0;
        r->name = wall ? "wall" : "process_cpu";
        st = pt = wall ? "wall" : "cpu";
        su = pu = "nanoseconds";
        r->sample_type = intern(c, st);
        r->sample_unit = intern(c, su);
    } else if (strcmp(st, "off_cpu") == 0 && strcmp(su, "nanoseconds") == 0 && !*pt) {
        r->name = "off_cpu";
    } else if (*pt) {
        r->name = pt;
    } else {
        /* Pyroscope would leave __name__ empty here; a series without a name is unqueryable. */
        r->name = *st ? st : "unknown";
    }
    char buf[1024];
    snprintf(buf, sizeof buf, "%s:%s:%s:%s:%s", r->name, st, su, pt, pu);
    *type_id = sp_arena_strndup(c->a, buf, strlen(buf));
}

static int link_of(conv *c, int32_t idx, sp_sample *s)
{
    const dict_t *d = c->d;
    if (idx <= 0 || (size_t)idx >= d->n_link_table)
        return 0;
    const Opentelemetry__Proto__Profiles__V1development__Link *l = d->link_table[idx];
    if (l->span_id.len != 8)
        return 0;
    static const uint8_t zero[16];
    if (memcmp(l->span_id.data, zero, 8) == 0)
        return 0;
    memcpy(s->link.span_id, l->span_id.data, 8);
    if (l->trace_id.len == 16)
        memcpy(s->link.trace_id, l->trace_id.data, 16);
    s->has_link = 1;
    return 0;
}

/* An attribute seen for the first time: what it is to the converter, kept in *ai. */
static __attribute__((noinline)) const attr_info *attr_learn(conv *c, int32_t idx, attr_info *ai)
{
    ai->kind = ATTR_SKIP;
    const kvu_t *kv = c->d->attribute_table[idx];
    const char *key = str_at(c, kv->key_strindex);
    char buf[32];
    if (strcmp(key, "thread.id") == 0 && any_int(kv->value, &ai->num)) {
        ai->kind = ATTR_TID;
    } else if (strcmp(key, "process.pid") == 0 && any_int(kv->value, &ai->num)) {
        ai->kind = ATTR_PID;
    } else if (strcmp(key, "thread.name") == 0) {
        ai->kind = ATTR_THREAD_NAME;
        ai->str = intern(c, any_string(c, kv->value, buf, sizeof buf));
    } else if (strcmp(key, "service.name") == 0) {
        ai->kind = ATTR_SERVICE; /* splits the profile instead (see convert_profile) */
        const char *v = any_string(c, kv->value, buf, sizeof buf);
        ai->svc = v == buf ? NULL : v;
    } else if (*key) {
        char *name = otlp_label_name(c->a, key);
        ai->label.key = name ? intern(c, name) : 0;
        if (kv->value &&
            kv->value->value_case == OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE) {
            ai->label.num = kv->value->int_value;
            ai->label.num_unit = kv->unit_strindex > 0 && (uint32_t)kv->unit_strindex < c->st.n
                                     ? (uint32_t)kv->unit_strindex
                                     : 0;
            ai->kind = ai->label.key ? ATTR_LABEL : ATTR_SKIP;
        } else {
            const char *v = any_string(c, kv->value, buf, sizeof buf);
            ai->label.str = v ? intern(c, v) : 0;
            /* bool, double, bytes, kvlist: no pprof label form */
            ai->kind = ai->label.key && v ? ATTR_LABEL : ATTR_SKIP;
        }
    }
    return ai;
}

/* Inline for the samples' sake: an attribute is learnt once, then read back for every sample
 * that names it (the call was a tenth of the converter's per-sample cost). */
static inline const attr_info *attr_classify(conv *c, int32_t idx)
{
    static const attr_info skip = {.kind = ATTR_SKIP};
    if (idx <= 0 || (size_t)idx >= c->d->n_attribute_table)
        return &skip;
    attr_info *ai = &c->attrs[idx];
    return ai->kind != ATTR_UNSEEN ? ai : attr_learn(c, idx, ai);
}

/* 1 when every index of a Stack names a location (0 included: "none"), as the validator found
 * for every stack a converted sample uses. */
static int indices_in_range(const int32_t *li, size_t n, uint32_t nlocs)
{
    uint32_t bad = 0;
    for (size_t k = 0; k < n; k++) /* no early exit: the compiler compares several at once */
        bad |= (uint32_t)li[k] >= nlocs;
    return !bad;
}

/* A stack's location ids, converted once and shared by every sample that uses the stack. The
 * decoded Stack's own indices serve as they are when all are in range (a negative one is not):
 * the same numbers the copy would hold, without the copy (a request's stacks hold twice as many
 * indices as it has samples). Otherwise, and for an empty stack, a copy with each index out of
 * range made 0. */
static int stack_ids(conv *c, int32_t idx, uint32_t **ids, uint32_t *n, uint32_t *stack)
{
    const dict_t *d = c->d;
    *ids = NULL;
    *n = 0;
    *stack = 0;
    if (idx <= 0 || (size_t)idx >= d->n_stack_table)
        return 0;
    stack_ref *r = &c->stacks[idx];
    if (!r->ids) {
        const Opentelemetry__Proto__Profiles__V1development__Stack *st = d->stack_table[idx];
        size_t nl = st->n_location_indices;
        uint32_t *v;
        if (nl && indices_in_range(st->location_indices, nl, c->nlocs)) {
            v = (uint32_t *)st->location_indices; /* int32_t's unsigned counterpart */
        } else {
            v = sp_arena_alloc(c->a, (nl + 1) * sizeof *v);
            if (!v)
                return SP_ETOOBIG;
            for (size_t k = 0; k < nl; k++) {
                int32_t li = st->location_indices[k];
                v[k] = li > 0 && (uint32_t)li < c->nlocs ? (uint32_t)li : 0;
            }
        }
        if (c->stack_prints) /* before the list is handed on with a sample (stack_prints) */
            c->stack_prints[idx] = sp_stack_print(c->prints, c->nlocs, v, (uint32_t)nl);
        *r = (stack_ref){v, (uint32_t)nl};
    }
    *ids = r->ids;
    *n = r->n;
    *stack = c->stack_prints ? (uint32_t)idx : 0;
    return 0;
}

/* s: zeroed by the caller, just before (a store of the struct's lines while they are written
 * anyway: a memset call per sample was a tenth of the per-sample conversion, and a block zeroed
 * at once is a second pass over a part's 0.6 MB of samples, 1-2 % of the workers' time). */
static int convert_sample(conv *c, const sample_t *in, const type_rule *r, int64_t pid_default,
                          sp_sample *s, sp_err *err)
{
    if (stack_ids(c, in->stack_index, &s->location_ids, &s->nlocations, &s->stack))
        return sp_fail(err, SP_ETOOBIG, "stacks too large for the request budget");
    /* Observations: values[i] at timestamps[i]; timestamps only = 1 each (OTLP Sample docs).
     * Timestamps stay in the decoded message (same arena); values are materialised only when
     * they differ, NULL meaning equal shares (common/profile.h). */
    size_t nobs = in->n_timestamps_unix_nano;
    if (nobs) {
        s->nobs = (uint32_t)nobs;
        s->timestamps = in->timestamps_unix_nano;
        if (in->n_values == nobs) {
            s->values = sp_arena_alloc(c->a, nobs * sizeof *s->values);
            if (!s->values)
                return sp_fail(err, SP_ETOOBIG, "samples too large for the request budget");
            for (size_t k = 0; k < nobs; k++) {
                s->values[k] = sp_sat_mul(in->values[k], r->scale);
                s->value = sp_sat_add(s->value, s->values[k]);
            }
        } else {
            s->value = sp_sat_mul((int64_t)nobs, r->scale);
        }
    } else {
        for (size_t k = 0; k < in->n_values; k++)
            s->value = sp_sat_add(s->value, sp_sat_mul(in->values[k], r->scale));
    }
    s->pid = pid_default;
    link_of(c, in->link_index, s);
    for (size_t k = 0; k < in->n_attribute_indices; k++) {
        const attr_info *ai = attr_classify(c, in->attribute_indices[k]);
        switch (ai->kind) {
        case ATTR_TID:
            s->tid = ai->num;
            break;
        case ATTR_PID:
            s->pid = ai->num;
            break;
        case ATTR_THREAD_NAME:
            s->thread_name = ai->str;
            break;
        case ATTR_LABEL:
            if (!s->labels) {
                s->labels = sp_arena_alloc(c->a, in->n_attribute_indices * sizeof *s->labels);
                if (!s->labels)
                    return sp_fail(err, SP_ETOOBIG, "labels too large for the request budget");
            }
            s->labels[s->nlabels++] = ai->label;
            break;
        default:
            break;
        }
    }
    return 0;
}

/* Whether any attribute of the request's table is keyed service.name: when none is (the eBPF
 * profiler's requests), no sample splits its profile and the per-sample look below is skipped. */
static int request_has_sample_services(conv *c)
{
    if (c->sample_services < 0) {
        c->sample_services = 0;
        for (size_t i = 1; i < c->d->n_attribute_table && !c->sample_services; i++)
            c->sample_services =
                strcmp(str_at(c, c->d->attribute_table[i]->key_strindex), "service.name") == 0;
    }
    return c->sample_services;
}

/* The sample's first service.name attribute's string value (NULL: none, or not a string). By the
 * attributes' classification, not a string compare of each key of each sample. */
static const char *sample_service(conv *c, const sample_t *in)
{
    for (size_t k = 0; k < in->n_attribute_indices; k++) {
        const attr_info *ai = attr_classify(c, in->attribute_indices[k]);
        if (ai->kind == ATTR_SERVICE)
            return ai->svc;
    }
    return NULL;
}

static int
convert_profile(conv *c, const Opentelemetry__Proto__Profiles__V1development__ResourceProfiles *rp,
                const Opentelemetry__Proto__Profiles__V1development__ScopeProfiles *sp,
                const profile_t *in, int64_t now_ns, sp_batch *out, sp_err *err)
{
    Opentelemetry__Proto__Common__V1__KeyValue **rattrs =
        rp->resource ? rp->resource->attributes : NULL;
    size_t nrattrs = rp->resource ? rp->resource->n_attributes : 0;
    type_rule r;
    const char *type_id;
    profile_type(c, in, &r, &type_id);

    /* service_name: sample service.name (splits the profile), else the resource's, else
     * unknown_service:<process.executable.name>, else unknown_service. */
    const char *svc = resource_attr(c, rattrs, nrattrs, "service.name", NULL);
    int svc_unknown = !svc || !*svc;
    if (svc_unknown) {
        const char *exe = resource_attr(c, rattrs, nrattrs, "process.executable.name", NULL);
        if (exe && *exe) {
            size_t n = strlen(exe) + 17;
            char *s = sp_arena_alloc(c->a, n);
            if (s)
                snprintf(s, n, "unknown_service:%s", exe);
            svc = s;
        } else {
            svc = "unknown_service";
        }
    }
    int64_t pid = 0;
    resource_attr(c, rattrs, nrattrs, "process.pid", &pid);
    /* The rest of the process identity, shared by every sample of this resource. */
    sp_proc_ident *ident = NULL;
    for (int k = 0; k < SP_IDENT_KEYS; k++) {
        const char *v = resource_attr(c, rattrs, nrattrs, sp_ident_attrs[k], NULL);
        if (!v || !*v)
            continue;
        if (!ident && !(ident = sp_arena_calloc(c->a, 1, sizeof *ident)))
            return sp_fail(err, SP_ETOOBIG, "profile too large for the request budget");
        ident->key[k] = sp_ident_hash(v, strlen(v));
    }

    /* Distinct sample-level services, in order of first appearance; slot 0 = the default. */
    const char **services = sp_arena_alloc(c->a, (in->n_samples + 1) * sizeof *services);
    uint32_t *which = sp_arena_alloc(c->a, (in->n_samples + 1) * sizeof *which);
    if (!services || !which)
        return sp_fail(err, SP_ETOOBIG, "profile too large for the request budget");
    uint32_t nservices = 1;
    services[0] = svc;
    int split = request_has_sample_services(c);
    if (!split)
        memset(which, 0, in->n_samples * sizeof *which);
    for (size_t i = 0; split && i < in->n_samples; i++) {
        const char *s = sample_service(c, in->samples[i]);
        uint32_t k = 0;
        if (s && *s) {
            for (k = 1; k < nservices && strcmp(services[k], s) != 0; k++)
                ;
            if (k == nservices)
                services[nservices++] = s;
        }
        which[i] = k;
    }

    for (uint32_t k = 0; k < nservices; k++) {
        uint32_t count = 0;
        for (size_t i = 0; i < in->n_samples; i++)
            count += which[i] == k;
        if (k == 0 && count == 0 && nservices > 1)
            continue; /* every sample named its own service */
        sp_profile *p = sp_arena_calloc(c->a, 1, sizeof *p);
        if (!p)
            return sp_fail(err, SP_ETOOBIG, "profile too large for the request budget");
        p->type_id = type_id;
        p->name = r.name;
        p->service_unknown = (uint8_t)(k == 0 && svc_unknown);
        p->sample_type = r.sample_type;
        p->sample_unit = r.sample_unit;
        if (in->period_type) {
            p->period_type = intern(c, str_at(c, in->period_type->type_strindex));
            p->period_unit = intern(c, str_at(c, in->period_type->unit_strindex));
        }
        p->period = in->period;
        p->time_nanos = in->time_unix_nano ? (int64_t)in->time_unix_nano : now_ns;
        p->duration_nanos = in->duration_nano ? (int64_t)in->duration_nano : TEN_SECONDS_NS;
        p->samples = count ? sp_arena_alloc(c->a, (size_t)count * sizeof *p->samples) : NULL;
        if (count && !p->samples)
            return sp_fail(err, SP_ETOOBIG, "profile too large for the request budget");
        uint64_t obs = 0;
        int64_t newest = INT64_MIN;
        for (size_t i = 0; i < in->n_samples; i++) {
            if (which[i] != k)
                continue;
            sp_sample *s = &p->samples[p->nsamples];
            *s = (sp_sample){0};
            int rc = convert_sample(c, in->samples[i], &r, pid, s, err);
            s->ident = ident;
            if (rc) {
                sp_err_prefix(err, "sample %zu: ", i);
                return rc;
            }
            /* the facts (common/profile.h), while the timestamps just unpacked are in cache */
            obs += s->timestamps && s->nobs ? s->nobs : 1;
            for (uint32_t o = 0; s->timestamps && o < s->nobs; o++)
                if ((int64_t)s->timestamps[o] > newest)
                    newest = (int64_t)s->timestamps[o];
            p->nsamples++;
        }
        p->facts_known = 1;
        p->obs_bound = obs;
        p->newest = newest;
        labelset ls = {0};
        int rc = labels_add(c, &ls, "__name__", r.name);
        rc |= labels_add(c, &ls, "service_name", services[k]);
        rc |= add_kv_list(c, &ls, rattrs, nrattrs);
        if (sp->scope)
            rc |= add_kv_list(c, &ls, sp->scope->attributes, sp->scope->n_attributes);
        if (rc)
            return sp_fail(err, SP_ETOOBIG, "labels too large for the request budget");
        qsort(ls.kv, ls.n, sizeof *ls.kv, cmp_kv);
        p->series = ls.kv;
        p->nseries = ls.n;
        if (sp_batch_add_profile(out, p))
            return sp_fail(err, SP_ETOOBIG, "too many profiles for the request budget");
    }
    return 0;
}

/* The conversion of one request in parts (otlp_profiles_conv_*): the dictionary converted once,
 * and where the next part starts. */
struct otlp_profiles_conv {
    conv c;
    const otlp_profiles_req *req;
    const otlp_verdict *v;
    size_t next; /* the next resource_profiles entry to convert */
    size_t item; /* its first profile's index in the verdict's numbering */
};

int otlp_profiles_conv_begin(const otlp_profiles_req *req, const otlp_verdict *v, sp_arena *a,
                             otlp_profiles_conv **out, sp_err *err)
{
    *out = NULL;
    otlp_profiles_conv *pc = sp_arena_calloc(a, 1, sizeof *pc);
    if (!pc)
        return sp_fail(err, SP_ETOOBIG, "request too large for its budget");
    pc->c.a = a;
    pc->c.d = req->dictionary;
    pc->c.sample_services = -1;
    pc->req = req;
    pc->v = v;
    if (req->dictionary) { /* validation already refused profiles without a dictionary */
        int rc = convert_dictionary(&pc->c, err);
        if (rc)
            return rc;
    }
    *out = pc;
    return 0;
}

size_t otlp_profiles_conv_left(const otlp_profiles_conv *pc)
{
    return pc->c.d ? pc->req->n_resource_profiles - pc->next : 0;
}

int otlp_profiles_conv_next(otlp_profiles_conv *pc, size_t nresources, int64_t now_ns,
                            sp_batch *out, sp_err *err)
{
    conv *c = &pc->c;
    const otlp_profiles_req *req = pc->req;
    const otlp_verdict *v = pc->v;
    size_t first = out->nprofiles;
    size_t end =
        pc->next +
        (nresources < otlp_profiles_conv_left(pc) ? nresources : otlp_profiles_conv_left(pc));
    for (size_t i = pc->next; i < end; i++) {
        const Opentelemetry__Proto__Profiles__V1development__ResourceProfiles *rp =
            req->resource_profiles[i];
        for (size_t j = 0; j < rp->n_scope_profiles; j++) {
            const Opentelemetry__Proto__Profiles__V1development__ScopeProfiles *sp =
                rp->scope_profiles[j];
            for (size_t k = 0; k < sp->n_profiles; k++, pc->item++) {
                if (v && v->is_bad && pc->item < v->total && v->is_bad[pc->item])
                    continue;
                int rc = convert_profile(c, rp, sp, sp->profiles[k], now_ns, out, err);
                if (rc) {
                    sp_err_prefix(
                        err, "resource_profiles[%zu].scope_profiles[%zu].profiles[%zu]: ", i, j, k);
                    return rc;
                }
            }
        }
    }
    pc->next = end;
    /* The tables grew while converting: give this part's profiles the tables as they are now.
     * They only grow (arena arrays are copied, never moved or freed), so what an earlier part
     * was given stays valid and means the same. */
    for (size_t i = first; i < out->nprofiles; i++) {
        sp_profile *p = out->profiles[i];
        p->strings = c->st.s;
        p->string_lens = c->st.len;
        p->nstrings = c->st.n;
        p->functions = c->funcs;
        p->nfunctions = c->nfuncs;
        p->locations = c->locs;
        p->nlocations = c->nlocs;
        p->location_prints = c->prints;
        p->stack_prints = c->stack_prints;
        p->nstack_prints = c->stack_prints ? (uint32_t)(c->d->n_stack_table + 1) : 0;
        p->mappings = c->maps;
        p->nmappings = c->nmaps;
    }
    return 0;
}

int otlp_profiles_convert(const otlp_profiles_req *req, const otlp_verdict *v, int64_t now_ns,
                          sp_batch *out, sp_err *err)
{
    otlp_profiles_conv *pc;
    int rc = otlp_profiles_conv_begin(req, v, out->arena, &pc, err);
    return rc ? rc : otlp_profiles_conv_next(pc, SIZE_MAX, now_ns, out, err);
}
