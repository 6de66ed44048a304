/* Merged stacks → sp_profile → pprof bytes (see pprof_export.h). */
#include "pprof_export.h"
#include "../wire/pprof_write.h"

#include <string.h>

static int nomem(sp_err *err)
{
    return sp_fail(err, SP_ETOOBIG, "profile too large for the query budget; narrow the query");
}

int query_pprof_encode(const store_stacks *s, const query_type *type, int64_t time_ns,
                       int64_t duration_ns, sp_arena *a, sp_buf *out, sp_err *err)
{
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
