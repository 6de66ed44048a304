/* Merged stacks → sp_profile → pprof bytes (see pprof_export.h). */
#include "pprof_export.h"
#include "../common/strtab.h"
#include "../wire/pprof_write.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int nomem(sp_err *err)
{
    return sp_fail(err, SP_ETOOBIG, "profile too large for the query budget; narrow the query");
}

/* Grows *arr (heap) to hold n + 1 elements. */
static int more(void **arr, uint32_t n, uint32_t *cap, size_t elem)
{
    if (n + 1 < *cap)
        return 0;
    uint32_t nc = *cap ? *cap * 2 : 64;
    void *p = realloc(*arr, (size_t)nc * elem);
    if (!p)
        return -1;
    memset((char *)p + (size_t)*cap * elem, 0, (size_t)(nc - *cap) * elem);
    *arr = p;
    *cap = nc;
    return 0;
}

typedef struct detailed {
    sp_arena *a;
    sp_strtab strs, fkeys, lkeys, mkeys; /* strings; key → id + 0 for functions etc. */
    sp_function *fn;
    sp_location *loc;
    sp_mapping *map;
    uint32_t nfn, capfn, nloc, caploc, nmap, capmap;
} detailed;

static uint32_t str(detailed *d, const char *s)
{
    return sp_strtab_intern(&d->strs, s ? s : "", s ? strlen(s) : 0);
}

/* The id of a non-empty key in t (1-based: entry 0 is the "" prefill); UINT32_MAX when out of
 * memory. */
static uint32_t key_id(sp_strtab *t, const char *key, size_t n, int *is_new)
{
    uint32_t before = t->n, id = n ? sp_strtab_intern(t, key, n) : 0;
    *is_new = t->n > before;
    return id ? id : UINT32_MAX;
}

static uint32_t function_of(detailed *d, const char *name, const store_frame *f)
{
    char key[1200];
    int n = snprintf(key, sizeof key, "%s\x1f%s\x1f%" PRId64, name, f->file, f->start_line);
    int fresh;
    uint32_t id = key_id(&d->fkeys, key, n > 0 && (size_t)n < sizeof key ? (size_t)n : 0, &fresh);
    if (id == UINT32_MAX)
        return 0;
    if (fresh) {
        if (more((void **)&d->fn, d->nfn, &d->capfn, sizeof *d->fn))
            return 0;
        d->fn[id] = (sp_function){str(d, name), str(d, name), str(d, f->file), f->start_line, 0};
        d->nfn = id + 1;
    }
    return id;
}

static uint32_t mapping_of(detailed *d, const store_frame *f)
{
    if (!*f->mapping && !*f->build_id)
        return 0;
    char key[1200];
    int n = snprintf(key, sizeof key, "%s\x1f%s", f->mapping, f->build_id);
    int fresh;
    uint32_t id = key_id(&d->mkeys, key, n > 0 && (size_t)n < sizeof key ? (size_t)n : 0, &fresh);
    if (id == UINT32_MAX)
        return 0;
    if (fresh) {
        if (more((void **)&d->map, d->nmap, &d->capmap, sizeof *d->map))
            return 0;
        d->map[id] = (sp_mapping){0, 0, 0, str(d, f->mapping), str(d, f->build_id), 1, 1, 1, 1};
        d->nmap = id + 1;
    }
    return id;
}

/* The location of frames[0..n) (one location's inline frames, callee first). 0 when out of
 * memory. */
static uint32_t location_of(detailed *d, const store_stacks *s, const store_stack *st, uint32_t k,
                            uint32_t n)
{
    const store_frame *f = &st->detail[k];
    char key[32];
    int kn = snprintf(key, sizeof key, "%" PRId64, f->loc);
    int fresh;
    uint32_t id = key_id(&d->lkeys, key, (size_t)kn, &fresh);
    if (id == UINT32_MAX || !fresh)
        return id == UINT32_MAX ? 0 : id;
    if (more((void **)&d->loc, d->nloc, &d->caploc, sizeof *d->loc))
        return 0;
    sp_line *lines = sp_arena_calloc(d->a, n, sizeof *lines);
    if (!lines)
        return 0;
    for (uint32_t j = 0; j < n; j++) {
        lines[j].function_id = function_of(d, s->names[st->frames[k + j]], &st->detail[k + j]);
        lines[j].line = st->detail[k + j].line;
    }
    d->loc[id] = (sp_location){
        .mapping_id = mapping_of(d, f), .address = f->address, .lines = lines, .nlines = n};
    d->nloc = id + 1;
    return id;
}

/* pprof with every frame as it was received: functions with their file and first line, one
 * location per received location (address, mapping with build id, its inline frames with their
 * lines). Flame graphs still merge by function name; this is for go tool pprof -list / -raw. */
static int encode_detailed(const store_stacks *s, const query_type *type, int64_t time_ns,
                           int64_t duration_ns, sp_arena *a, sp_buf *out, sp_err *err)
{
    detailed d;
    memset(&d, 0, sizeof d);
    d.a = a;
    char *empty[] = {""};
    int rc = 0;
    if (sp_strtab_init(&d.strs, a, empty, 1) || sp_strtab_init(&d.fkeys, a, empty, 1) ||
        sp_strtab_init(&d.lkeys, a, empty, 1) || sp_strtab_init(&d.mkeys, a, empty, 1))
        return nomem(err);
    sp_profile p;
    memset(&p, 0, sizeof p);
    p.samples = sp_arena_calloc(a, s->nstacks + 1, sizeof *p.samples);
    if (!p.samples)
        return nomem(err);
    for (size_t i = 0; i < s->nstacks && !rc; i++) {
        const store_stack *st = &s->stacks[i];
        if (st->value == 0)
            continue;
        sp_sample *smp = &p.samples[p.nsamples++];
        smp->value = st->value;
        smp->location_ids = sp_arena_alloc(a, (st->nframes + 1) * sizeof *smp->location_ids);
        if (!smp->location_ids)
            rc = nomem(err);
        for (uint32_t k = 0; k < st->nframes && !rc;) {
            if (st->frames[k] >= s->nnames)
                return sp_fail(err, SP_EINTERNAL, "stack %zu: frame name out of range", i);
            uint32_t n = 1;
            /* one location's inline frames; the same location again (direct recursion)
             * starts over at inl 0 */
            while (k + n < st->nframes && st->detail[k + n].loc == st->detail[k].loc &&
                   st->detail[k + n].inl != 0)
                n++;
            uint32_t id = location_of(&d, s, st, k, n);
            if (!id)
                rc = nomem(err);
            smp->location_ids[smp->nlocations++] = id;
            k += n;
        }
    }
    if (!rc) {
        const char *words[4] = {type->sample_type, type->sample_unit, type->period_type,
                                type->period_unit};
        uint32_t *idx[4] = {&p.sample_type, &p.sample_unit, &p.period_type, &p.period_unit};
        for (int i = 0; i < 4; i++)
            *idx[i] = str(&d, words[i]);
        p.strings = d.strs.s;
        p.nstrings = d.strs.n;
        p.functions = d.fn;
        p.nfunctions = d.nfn ? d.nfn : 1;
        p.locations = d.loc;
        p.nlocations = d.nloc ? d.nloc : 1;
        p.mappings = d.map;
        p.nmappings = d.nmap ? d.nmap : 1;
        p.type_id = type->id;
        p.name = type->name;
        p.time_nanos = time_ns;
        p.duration_nanos = duration_ns;
        p.period = s->period;
        if (!p.functions || !p.locations || (d.nmap && !p.mappings))
            rc = d.nfn || d.nloc ? nomem(err) : 0;
    }
    if (!rc) {
        sp_function nofn = {0};
        sp_location noloc = {0};
        sp_mapping nomap = {0};
        if (!p.functions)
            p.functions = &nofn;
        if (!p.locations)
            p.locations = &noloc;
        if (!p.mappings)
            p.mappings = &nomap;
        rc = wire_pprof_encode(&p, out, err);
        if (rc == SP_ETOOBIG || rc == SP_ENOMEM)
            rc = nomem(err);
    }
    free(d.fn);
    free(d.loc);
    free(d.map);
    return rc;
}

int query_pprof_encode(const store_stacks *s, const query_type *type, int64_t time_ns,
                       int64_t duration_ns, sp_arena *a, sp_buf *out, sp_err *err)
{
    int detail = s->nstacks > 0;
    for (size_t i = 0; i < s->nstacks && detail; i++)
        detail = s->stacks[i].detail || !s->stacks[i].nframes || !s->stacks[i].value;
    if (detail)
        return encode_detailed(s, type, time_ns, duration_ns, a, out, err);
    /* Only the names some stack uses become functions: ids 1..nused, in first-use order. */
    uint32_t *fid = sp_arena_calloc(a, s->nnames + 1, sizeof *fid);
    if (!fid)
        return nomem(err);
    uint32_t nused = 0;
    size_t nsamples = 0;
    for (size_t i = 0; i < s->nstacks; i++) {
        const store_stack *st = &s->stacks[i];
        if (st->value == 0)
            continue;
        nsamples++;
        for (uint32_t k = 0; k < st->nframes; k++) {
            if (st->frames[k] >= s->nnames)
                return sp_fail(err, SP_EINTERNAL, "stack %zu: frame name out of range", i);
            if (!fid[st->frames[k]])
                fid[st->frames[k]] = ++nused;
        }
    }
    sp_profile p;
    memset(&p, 0, sizeof p);
    /* strings: "", the frame names (function i has name string i), then the type's words */
    uint32_t nstr = nused + 5;
    p.strings = sp_arena_calloc(a, nstr, sizeof *p.strings);
    p.functions = sp_arena_calloc(a, nused + 1, sizeof *p.functions);
    p.locations = sp_arena_calloc(a, nused + 1, sizeof *p.locations);
    sp_line *lines = sp_arena_calloc(a, nused + 1, sizeof *lines);
    p.samples = sp_arena_calloc(a, nsamples + 1, sizeof *p.samples);
    if (!p.strings || !p.functions || !p.locations || !lines || !p.samples)
        return nomem(err);
    p.strings[0] = "";
    for (uint32_t i = 0; i < s->nnames; i++)
        if (fid[i])
            p.strings[fid[i]] = s->names[i];
    for (uint32_t f = 1; f <= nused; f++) {
        p.functions[f].name = f;
        p.functions[f].system_name = f;
        lines[f].function_id = f;
        p.locations[f].lines = &lines[f];
        p.locations[f].nlines = 1;
    }
    const char *words[4] = {type->sample_type, type->sample_unit, type->period_type,
                            type->period_unit};
    uint32_t *idx[4] = {&p.sample_type, &p.sample_unit, &p.period_type, &p.period_unit};
    for (int i = 0; i < 4; i++) {
        p.strings[nused + 1 + i] = words[i] ? words[i] : "";
        *idx[i] = nused + 1 + (uint32_t)i;
    }
    p.nstrings = nused + 5;
    p.nfunctions = p.nlocations = nused + 1;
    p.type_id = type->id;
    p.name = type->name;
    p.time_nanos = time_ns;
    p.duration_nanos = duration_ns;
    p.period = s->period;
    for (size_t i = 0; i < s->nstacks; i++) {
        const store_stack *st = &s->stacks[i];
        if (st->value == 0)
            continue;
        sp_sample *smp = &p.samples[p.nsamples++];
        smp->value = st->value;
        smp->nlocations = st->nframes;
        smp->location_ids = sp_arena_alloc(a, (st->nframes + 1) * sizeof *smp->location_ids);
        if (!smp->location_ids)
            return nomem(err);
        for (uint32_t k = 0; k < st->nframes; k++) /* leaf first, as pprof wants */
            smp->location_ids[k] = fid[st->frames[k]];
    }
    int rc = wire_pprof_encode(&p, out, err);
    if (rc == SP_ETOOBIG || rc == SP_ENOMEM)
        return nomem(err);
    return rc;
}
