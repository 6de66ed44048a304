#include "pprof.h"
#include "convert.h"

#include "pprof/profile.pb-c.h"
#include "../common/hex.h"
#include "../wire/pb.h"
#include "../wire/pprof_write.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* ---------- decoding ---------- */

/* Pyroscope's names for pprof profiles: CPU → process_cpu, allocations and heap → memory,
 * goroutines → goroutine, lock contention → mutex or block (told apart by the SDK's display
 * name); anything else is named after its period type, else its sample type. */
const char *otlp_pprof_profile_name(const char *st, const char *pt, const char *display)
{
    if (display && strncmp(display, "mutex_", 6) == 0)
        return "mutex";
    if (display && strncmp(display, "block_", 6) == 0)
        return "block";
    if (strcmp(pt, "cpu") == 0 || strcmp(st, "cpu") == 0)
        return "process_cpu";
    if (strcmp(pt, "space") == 0 || strncmp(st, "alloc_", 6) == 0 || strncmp(st, "inuse_", 6) == 0)
        return "memory";
    if (strcmp(st, "goroutine") == 0 || strcmp(st, "goroutines") == 0)
        return "goroutine";
    if (strcmp(pt, "contentions") == 0 || strcmp(st, "contentions") == 0 ||
        strcmp(st, "delay") == 0)
        return "block";
    if (*pt)
        return pt;
    return *st ? st : "unknown";
}

/* Maps pprof's arbitrary uint64 ids to dense 1-based indices. Go and most writers use 1..n in
 * order, which needs no table at all. */
typedef struct idmap {
    int dense;
    uint64_t *keys;
    uint32_t *vals;
    uint32_t cap;
} idmap;

static int idmap_build(sp_arena *a, idmap *m, size_t n, uint64_t (*id_at)(void *, size_t),
                       void *tbl)
{
    m->dense = 1;
    for (size_t i = 0; i < n; i++)
        if (id_at(tbl, i) != i + 1) {
            m->dense = 0;
            break;
        }
    if (m->dense)
        return 0;
    uint32_t cap = 16;
    while (cap < n * 2)
        cap *= 2;
    m->cap = cap;
    m->keys = sp_arena_calloc(a, cap, sizeof *m->keys);
    m->vals = sp_arena_calloc(a, cap, sizeof *m->vals);
    if (!m->keys || !m->vals)
        return -1;
    for (size_t i = 0; i < n; i++) {
        uint64_t id = id_at(tbl, i);
        if (id == 0)
            return -2;
        uint32_t h = (uint32_t)(id * 0x9E3779B97F4A7C15ull >> 32) & (cap - 1);
        while (m->keys[h] && m->keys[h] != id)
            h = (h + 1) & (cap - 1);
        if (m->keys[h] == id)
            return -3; /* duplicate id */
        m->keys[h] = id;
        m->vals[h] = (uint32_t)(i + 1);
    }
    return 0;
}

/* Dense index for id, 0 when unknown (or id 0). */
static uint32_t idmap_get(const idmap *m, uint64_t id, size_t n)
{
    if (!id)
        return 0;
    if (m->dense)
        return id <= n ? (uint32_t)id : 0;
    uint32_t h = (uint32_t)(id * 0x9E3779B97F4A7C15ull >> 32) & (m->cap - 1);
    while (m->keys[h]) {
        if (m->keys[h] == id)
            return m->vals[h];
        h = (h + 1) & (m->cap - 1);
    }
    return 0;
}

static uint64_t fn_id(void *t, size_t i)
{
    return ((Perftools__Profiles__Function **)t)[i]->id;
}
static uint64_t loc_id(void *t, size_t i)
{
    return ((Perftools__Profiles__Location **)t)[i]->id;
}
static uint64_t map_id(void *t, size_t i)
{
    return ((Perftools__Profiles__Mapping **)t)[i]->id;
}

static uint32_t str_ok(int64_t i, size_t n)
{
    return i > 0 && (uint64_t)i < n ? (uint32_t)i : 0;
}

/* spanprof's extension (wire/pprof_write.h): Location field 100 names the frame type by string
 * index; protobuf-c keeps it among the location's unknown fields. 0 when absent or out of range. */
static uint32_t location_frame_type(const Perftools__Profiles__Location *l, size_t ns)
{
    for (unsigned k = 0; k < l->base.n_unknown_fields; k++) {
        const ProtobufCMessageUnknownField *u = &l->base.unknown_fields[k];
        uint64_t v;
        const uint8_t *p = u->data;
        if (u->tag == WIRE_PPROF_LOCATION_FRAME_TYPE &&
            u->wire_type == PROTOBUF_C_WIRE_TYPE_VARINT &&
            wire_pb_varint(&p, u->data + u->len, &v) == 0 && v < ns)
            return (uint32_t)v;
    }
    return 0;
}

int otlp_pprof_decode(const uint8_t *data, size_t len, const otlp_pprof_opts *o, sp_batch *out,
                      otlp_pprof_result *res, sp_err *err)
{
    sp_arena *a = out->arena;
    ProtobufCAllocator alloc;
    sp_arena_protobuf_allocator(a, &alloc);
    memset(res, 0, sizeof *res);
    Perftools__Profiles__Profile *pp = perftools__profiles__profile__unpack(&alloc, len, data);
    if (!pp)
        return sp_fail(err, SP_EINVAL, "body is not a pprof profile (protobuf decoding failed)");
    size_t ns = pp->n_string_table;
    if (ns == 0 || pp->string_table[0][0] != 0)
        return sp_fail(err, SP_EINVAL, "pprof string_table must start with \"\"");
    if (pp->n_sample_type == 0)
        return sp_fail(err, SP_EINVAL, "pprof has no sample_type");

    /* Shared tables, re-indexed densely: id i of each table becomes index i. */
    idmap fm = {0}, lm = {0}, mm = {0};
    if (idmap_build(a, &fm, pp->n_function, fn_id, pp->function) ||
        idmap_build(a, &lm, pp->n_location, loc_id, pp->location) ||
        idmap_build(a, &mm, pp->n_mapping, map_id, pp->mapping))
        return sp_fail(err, SP_EINVAL,
                       "pprof has a zero or duplicate function, location or "
                       "mapping id");
    /* The string table can grow (labels, names), so it is copied with room to spare. */
    uint32_t cap = (uint32_t)ns + 16 + 4 * (uint32_t)pp->n_sample_type;
    const char **strs = sp_arena_alloc(a, cap * sizeof *strs);
    uint32_t *lens = sp_arena_alloc(a, cap * sizeof *lens);
    sp_function *funcs = sp_arena_calloc(a, pp->n_function + 1, sizeof *funcs);
    sp_location *locs = sp_arena_calloc(a, pp->n_location + 1, sizeof *locs);
    sp_mapping *maps = sp_arena_calloc(a, pp->n_mapping + 1, sizeof *maps);
    if (!strs || !lens || !funcs || !locs || !maps)
        return sp_fail(err, SP_ETOOBIG, "pprof too large for the request budget");
    for (size_t i = 0; i < ns; i++) {
        strs[i] = pp->string_table[i];
        lens[i] = (uint32_t)strlen(strs[i]);
    }
    uint32_t nstr = (uint32_t)ns;
    for (size_t i = 0; i < pp->n_function; i++) {
        const Perftools__Profiles__Function *f = pp->function[i];
        funcs[i + 1] = (sp_function){str_ok(f->name, ns), str_ok(f->system_name, ns),
                                     str_ok(f->filename, ns), f->start_line, 0};
    }
    for (size_t i = 0; i < pp->n_mapping; i++) {
        const Perftools__Profiles__Mapping *m = pp->mapping[i];
        maps[i + 1] = (sp_mapping){m->memory_start,
                                   m->memory_limit,
                                   m->file_offset,
                                   str_ok(m->filename, ns),
                                   str_ok(m->build_id, ns),
                                   (uint8_t)m->has_functions,
                                   (uint8_t)m->has_filenames,
                                   (uint8_t)m->has_line_numbers,
                                   (uint8_t)m->has_inline_frames};
    }
    for (size_t i = 0; i < pp->n_location; i++) {
        const Perftools__Profiles__Location *l = pp->location[i];
        sp_location *lo = &locs[i + 1];
        lo->mapping_id = idmap_get(&mm, l->mapping_id, pp->n_mapping);
        lo->address = l->address;
        lo->nlines = (uint32_t)l->n_line;
        lo->lines = lo->nlines ? sp_arena_alloc(a, lo->nlines * sizeof *lo->lines) : NULL;
        if (lo->nlines && !lo->lines)
            return sp_fail(err, SP_ETOOBIG, "pprof too large for the request budget");
        for (uint32_t k = 0; k < lo->nlines; k++) {
            lo->lines[k].function_id = idmap_get(&fm, l->line[k]->function_id, pp->n_function);
            lo->lines[k].line = l->line[k]->line;
            lo->lines[k].column = l->line[k]->column;
        }
        lo->frame_type = location_frame_type(l, ns);
    }

    /* Samples are shared by every sample type; only the value column differs. */
    /* Label keys are told apart by their text, not by the first index holding it: a string table
     * may repeat a string (our own encoder appends "span_id" after the profile's strings). */
    enum { K_NONE, K_SPAN, K_TRACE, K_TID, K_PID, K_TNAME };
    uint8_t *kind = sp_arena_calloc(a, ns, 1);
    if (!kind)
        return sp_fail(err, SP_ETOOBIG, "pprof too large for the request budget");
    for (uint32_t i = 1; i < ns; i++) {
        const char *s = strs[i];
        if (strcmp(s, "span_id") == 0 || strcmp(s, "profile_id") == 0)
            kind[i] = K_SPAN;
        else if (strcmp(s, "trace_id") == 0)
            kind[i] = K_TRACE;
        else if (strcmp(s, "thread_id") == 0 || strcmp(s, "thread.id") == 0)
            kind[i] = K_TID;
        else if (strcmp(s, "process_pid") == 0 || strcmp(s, "process.pid") == 0)
            kind[i] = K_PID;
        else if (strcmp(s, "thread_name") == 0 || strcmp(s, "thread.name") == 0)
            kind[i] = K_TNAME;
    }
    size_t nsamp = pp->n_sample;
    sp_sample *base = sp_arena_calloc(a, nsamp + 1, sizeof *base);
    uint8_t *bad = sp_arena_calloc(a, nsamp + 1, 1);
    if (!base || !bad)
        return sp_fail(err, SP_ETOOBIG, "pprof too large for the request budget");
    res->samples = nsamp;
    for (size_t i = 0; i < nsamp; i++) {
        const Perftools__Profiles__Sample *in = pp->sample[i];
        sp_sample *s = &base[i];
        if (in->n_value != pp->n_sample_type) {
            return sp_fail(err, SP_EINVAL, "sample %zu has %zu values for %zu sample types", i,
                           in->n_value, pp->n_sample_type);
        }
        s->nlocations = (uint32_t)in->n_location_id;
        s->location_ids = sp_arena_alloc(a, (s->nlocations + 1) * sizeof *s->location_ids);
        if (!s->location_ids)
            return sp_fail(err, SP_ETOOBIG, "pprof too large for the request budget");
        for (uint32_t k = 0; k < s->nlocations; k++) {
            s->location_ids[k] = idmap_get(&lm, in->location_id[k], pp->n_location);
            if (!s->location_ids[k])
                return sp_fail(err, SP_EINVAL, "sample %zu: location id %" PRIu64 " not found", i,
                               in->location_id[k]);
        }
        s->labels = in->n_label ? sp_arena_alloc(a, in->n_label * sizeof *s->labels) : NULL;
        if (in->n_label && !s->labels)
            return sp_fail(err, SP_ETOOBIG, "pprof too large for the request budget");
        for (size_t k = 0; k < in->n_label; k++) {
            const Perftools__Profiles__Label *lb = in->label[k];
            uint32_t key = str_ok(lb->key, ns), str = str_ok(lb->str, ns);
            if (!key)
                continue;
            if (kind[key] == K_SPAN && !bad[i]) {
                if (sp_hex_decode(strs[str], s->link.span_id, 8) != 0) {
                    bad[i] = 1;
                    if (!res->bad_samples++)
                        sp_fail(&res->first, SP_EINVAL,
                                "sample %zu: label %s=\"%.40s\" is not a span id (16 hex digits)",
                                i, strs[key], strs[str]);
                    continue;
                }
                s->has_link = 1;
            } else if (kind[key] == K_TRACE && !bad[i]) {
                if (sp_hex_decode(strs[str], s->link.trace_id, 16) != 0) {
                    bad[i] = 1;
                    if (!res->bad_samples++)
                        sp_fail(&res->first, SP_EINVAL,
                                "sample %zu: label trace_id=\"%.40s\" is not a trace id (32 hex "
                                "digits)",
                                i, strs[str]);
                }
            } else if (kind[key] == K_TID && !str) {
                s->tid = lb->num;
            } else if (kind[key] == K_PID && !str) {
                s->pid = lb->num;
            } else if (kind[key] == K_TNAME) {
                s->thread_name = str;
            } else {
                s->labels[s->nlabels++] = (sp_label){key, str, lb->num, str_ok(lb->num_unit, ns)};
            }
        }
    }

    for (size_t t = 0; t < pp->n_sample_type; t++) {
        const char *st = strs[str_ok(pp->sample_type[t]->type, ns)];
        const char *su = strs[str_ok(pp->sample_type[t]->unit, ns)];
        const char *pt = pp->period_type ? strs[str_ok(pp->period_type->type, ns)] : "";
        const char *pu = pp->period_type ? strs[str_ok(pp->period_type->unit, ns)] : "";
        const char *display = NULL;
        for (uint32_t k = 0; k < o->ndisplay_names; k++)
            if (strcmp(o->display_names[k].name, st) == 0)
                display = o->display_names[k].value;
        const char *name = o->name_hint ? o->name_hint : otlp_pprof_profile_name(st, pt, display);
        sp_profile *p = sp_arena_calloc(a, 1, sizeof *p);
        sp_sample *samples = sp_arena_alloc(a, (nsamp + 1) * sizeof *samples);
        char id[512];
        snprintf(id, sizeof id, "%s:%s:%s:%s:%s", name, st, su, pt, pu);
        if (!p || !samples)
            return sp_fail(err, SP_ETOOBIG, "pprof too large for the request budget");
        p->type_id = sp_arena_strndup(a, id, strlen(id));
        p->name = name;
        p->sample_type = str_ok(pp->sample_type[t]->type, ns);
        p->sample_unit = str_ok(pp->sample_type[t]->unit, ns);
        if (pp->period_type) {
            p->period_type = str_ok(pp->period_type->type, ns);
            p->period_unit = str_ok(pp->period_type->unit, ns);
        }
        p->period = pp->period;
        p->time_nanos = pp->time_nanos ? pp->time_nanos : o->now_ns;
        p->duration_nanos = pp->duration_nanos ? pp->duration_nanos : 10000000000LL;
        for (size_t i = 0; i < nsamp; i++) {
            int64_t v = pp->sample[i]->value[t];
            if (bad[i] || v == 0)
                continue; /* zero rows add nothing to a flame graph */
            samples[p->nsamples] = base[i];
            samples[p->nsamples].value = v;
            p->nsamples++;
        }
        p->samples = samples;
        if (sp_profile_set_series(p, a, name, o->series, o->nseries))
            return sp_fail(err, SP_ETOOBIG, "pprof too large for the request budget");
        p->strings = strs;
        p->string_lens = lens;
        p->functions = funcs;
        p->nfunctions = (uint32_t)pp->n_function + 1;
        p->locations = locs;
        p->nlocations = (uint32_t)pp->n_location + 1;
        p->mappings = maps;
        p->nmappings = (uint32_t)pp->n_mapping + 1;
        if (sp_batch_add_profile(out, p))
            return sp_fail(err, SP_ETOOBIG, "pprof too large for the request budget");
    }
    /* The locations' prints (common/profile.h), from the tables as they end: the string table
     * is complete only now. Their room is added to the budget (derived from tables it took). */
    sp_profile tables = {.strings = strs,
                         .string_lens = lens,
                         .nstrings = nstr,
                         .functions = funcs,
                         .nfunctions = (uint32_t)pp->n_function + 1,
                         .locations = locs,
                         .nlocations = (uint32_t)pp->n_location + 1,
                         .mappings = maps,
                         .nmappings = (uint32_t)pp->n_mapping + 1};
    sp_print *prints = NULL;
    sp_arena_raise_budget(
        a, (pp->n_location + pp->n_function + pp->n_mapping + 6) * sizeof *prints + 256);
    (void)sp_location_prints(&tables, a, &prints); /* none: the store keys the locations */
    for (size_t i = out->nprofiles - pp->n_sample_type; i < out->nprofiles; i++) {
        out->profiles[i]->nstrings = nstr;
        out->profiles[i]->location_prints = prints;
    }
    return 0;
}
