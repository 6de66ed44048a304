/* libFuzzer target: ExportProfilesServiceRequest bytes through the whole decode pipeline
 * (otlp/decode.c: depth check, v1.9 layout detection and rewrite, protobuf-c unpack, validation),
 * and through the same pipeline one resource at a time (otlp_decode_profiles), which must refuse
 * what the whole decode refuses and judge and convert the rest the same.
 * Then every reference of every profile the validator accepted is followed, so ASan catches any
 * index the validator let through out of bounds. */
#include "otlp/convert.h"
#include "otlp/decode.h"
#include "otlp/pprof.h"

#include <stdint.h>
#include <string.h>
#include "fuzz_check.h"
#include "wire/pprof_write.h"

typedef Opentelemetry__Proto__Profiles__V1development__ProfilesDictionary Dict;
typedef Opentelemetry__Proto__Common__V1__AnyValue AnyValue;

static volatile size_t sink; /* keeps the reads below from being optimised away */

static const char *str(const Dict *d, int32_t i)
{
    CHECK(i >= 0);
    if (i == 0)
        return "";
    return d->string_table[i];
}

static void touch_value(const Dict *d, const AnyValue *v)
{
    if (!v)
        return;
    if (v->value_case == OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE_STRINDEX)
        sink += strlen(str(d, v->string_value_strindex));
    else if (v->value_case == OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE &&
             v->array_value)
        for (size_t i = 0; i < v->array_value->n_values; i++)
            touch_value(d, v->array_value->values[i]);
    else if (v->value_case == OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE &&
             v->kvlist_value)
        for (size_t i = 0; i < v->kvlist_value->n_values; i++) {
            sink += strlen(str(d, v->kvlist_value->values[i]->key_strindex));
            touch_value(d, v->kvlist_value->values[i]->value);
        }
}

static void touch_attrs(const Dict *d, const int32_t *idx, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        CHECK(idx[k] >= 0);
        if (idx[k] == 0)
            continue;
        const Opentelemetry__Proto__Profiles__V1development__KeyValueAndUnit *a =
            d->attribute_table[idx[k]];
        sink += strlen(str(d, a->key_strindex)) + strlen(str(d, a->unit_strindex));
        touch_value(d, a->value);
    }
}

static void touch_profile(const Dict *d,
                          const Opentelemetry__Proto__Profiles__V1development__Profile *p)
{
    if (p->sample_type)
        sink += strlen(str(d, p->sample_type->type_strindex)) +
                strlen(str(d, p->sample_type->unit_strindex));
    if (p->period_type)
        sink += strlen(str(d, p->period_type->type_strindex)) +
                strlen(str(d, p->period_type->unit_strindex));
    touch_attrs(d, p->attribute_indices, p->n_attribute_indices);
    for (size_t i = 0; i < p->n_samples; i++) {
        const Opentelemetry__Proto__Profiles__V1development__Sample *s = p->samples[i];
        CHECK(s->n_values || s->n_timestamps_unix_nano);
        CHECK(!s->n_values || !s->n_timestamps_unix_nano ||
              s->n_values == s->n_timestamps_unix_nano);
        touch_attrs(d, s->attribute_indices, s->n_attribute_indices);
        CHECK(s->link_index >= 0);
        if (s->link_index) {
            const Opentelemetry__Proto__Profiles__V1development__Link *l =
                d->link_table[s->link_index];
            CHECK(l->trace_id.len == 0 || l->trace_id.len == 16);
            CHECK(l->span_id.len == 0 || l->span_id.len == 8);
        }
        CHECK(s->stack_index >= 0);
        if (!s->stack_index)
            continue;
        const Opentelemetry__Proto__Profiles__V1development__Stack *st =
            d->stack_table[s->stack_index];
        for (size_t k = 0; k < st->n_location_indices; k++) {
            int32_t li = st->location_indices[k];
            CHECK(li >= 0);
            if (!li)
                continue;
            const Opentelemetry__Proto__Profiles__V1development__Location *loc =
                d->location_table[li];
            CHECK(loc->mapping_index >= 0);
            if (loc->mapping_index) {
                const Opentelemetry__Proto__Profiles__V1development__Mapping *m =
                    d->mapping_table[loc->mapping_index];
                sink += strlen(str(d, m->filename_strindex));
                touch_attrs(d, m->attribute_indices, m->n_attribute_indices);
            }
            for (size_t j = 0; j < loc->n_lines; j++) {
                int32_t fi = loc->lines[j]->function_index;
                CHECK(fi >= 0);
                if (!fi)
                    continue;
                const Opentelemetry__Proto__Profiles__V1development__Function *f =
                    d->function_table[fi];
                sink += strlen(str(d, f->name_strindex)) + strlen(str(d, f->system_name_strindex)) +
                        strlen(str(d, f->filename_strindex));
            }
            touch_attrs(d, loc->attribute_indices, loc->n_attribute_indices);
        }
    }
}

static void touch_kvs(const Dict *d, otlp_kv *const *kv, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *key, *s;
        sp_err err;
        CHECK(otlp_resolve_kv(kv[i], d->string_table, d->n_string_table, &key, &s, &err) == 0);
        sink += strlen(key) + (s ? strlen(s) : 0);
    }
}

static void check_converted(const sp_profile *p)
{
    CHECK(p->nstrings >= 1 && p->strings[0][0] == 0);
    CHECK(p->sample_type < p->nstrings && p->sample_unit < p->nstrings);
    uint64_t obs = 0; /* the facts the converter hands on are bounds (common/profile.h) */
    for (uint32_t i = 0; i < p->nsamples; i++) {
        const sp_sample *s = &p->samples[i];
        obs += s->timestamps && s->nobs ? s->nobs : 1;
        for (uint32_t k = 0; p->facts_known && s->timestamps && k < s->nobs; k++)
            CHECK((int64_t)s->timestamps[k] <= p->newest);
        for (uint32_t k = 0; k < s->nlocations; k++)
            CHECK(s->location_ids[k] < p->nlocations);
        for (uint32_t k = 0; k < s->nlabels; k++)
            CHECK(s->labels[k].key < p->nstrings && s->labels[k].str < p->nstrings);
        CHECK(s->thread_name < p->nstrings);
    }
    CHECK(!p->facts_known || p->obs_bound >= obs);
    for (uint32_t i = 1; i < p->nlocations; i++) {
        const sp_location *l = &p->locations[i];
        CHECK(l->mapping_id < p->nmappings && l->frame_type < p->nstrings);
        CHECK(l->nlines >= 1); /* unsymbolized frames get a synthetic function */
        for (uint32_t k = 0; k < l->nlines; k++) {
            CHECK(l->lines[k].function_id < p->nfunctions);
            const sp_function *f = &p->functions[l->lines[k].function_id];
            CHECK(f->name != 0 || (f->made_up && l->bare)); /* a name, or one readers make */
        }
        const char *nm[4];
        uint32_t ln[4];
        char buf[SP_FRAME_NAME_MAX];
        CHECK(sp_location_names(p, i, nm, ln, 4, buf) >= 1 && ln[0] > 0); /* never empty */
    }
    for (uint32_t i = 1; i < p->nfunctions; i++)
        CHECK(p->functions[i].name < p->nstrings && p->functions[i].filename < p->nstrings);
    sp_buf out;
    sp_buf_init(&out, 0);
    CHECK(wire_pprof_encode(p, &out, NULL) == 0);
    sp_buf_free(&out);
}

/* The same bytes decoded one resource at a time (otlp_decode_profiles, L1-L3 in otlp/decode.c):
 * refused when the whole decode refuses them, else the same verdict. Returns the samples the
 * lazy conversion gave (SIZE_MAX when it ran out of budget: no comparison). */
static size_t lazy_decode(const uint8_t *data, size_t size, int whole_rc, const otlp_verdict *wv)
{
    sp_arena *a = sp_arena_new(otlp_decode_budget(size));
    otlp_decoded dec;
    otlp_profiles_lazy *lz = NULL;
    sp_err err = {0};
    int rc = otlp_decode_profiles(data, size, 1, 0, 1, a, &dec, &lz, &err);
    if (!rc && lz) {
        CHECK(otlp_profiles_lazy_unpacked(lz) == 0);
        while (!rc && otlp_profiles_lazy_unpacked(lz) < otlp_profiles_lazy_resources(lz))
            rc = otlp_profiles_lazy_unpack(lz, 1, &err);
        CHECK(rc != SP_EINTERNAL); /* L2: the walk's counts are protobuf-c's */
    }
    size_t samples = SIZE_MAX;
    if (rc == SP_ETOOBIG || whole_rc == SP_ETOOBIG) {
        /* the two paths spend the budget differently */
    } else if (whole_rc) {
        CHECK(rc == whole_rc);
    } else {
        CHECK(rc == 0);
        CHECK(dec.verdict.total == wv->total && dec.verdict.bad == wv->bad);
        CHECK(!wv->total || memcmp(dec.verdict.is_bad, wv->is_bad, wv->total) == 0);
        CHECK(strcmp(dec.verdict.first.msg, wv->first.msg) == 0);
        sp_batch b = {.tenant = "fuzz", .arena = a};
        if (otlp_profiles_convert((const otlp_profiles_req *)dec.msg, &dec.verdict, 1, &b, &err) ==
            0) {
            samples = 0;
            for (size_t i = 0; i < b.nprofiles; i++)
                samples += b.profiles[i]->nsamples;
        }
    }
    sp_arena_free(a);
    return samples;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sp_arena *a = sp_arena_new(otlp_decode_budget(size));
    otlp_decoded dec;
    sp_err err = {0};
    int rc = otlp_decode(OTLP_SIGNAL_PROFILES, data, size, a, &dec, &err);
    if (rc) {
        CHECK(rc == SP_EINVAL || rc == SP_ETOOBIG);
        CHECK(err.code == rc && err.msg[0] != 0);
        lazy_decode(data, size, rc, NULL);
        sp_arena_free(a);
        return 0;
    }
    size_t lazy_samples = lazy_decode(data, size, 0, &dec.verdict);
    const otlp_profiles_req *req = (const otlp_profiles_req *)dec.msg;
    const otlp_verdict *v = &dec.verdict;
    CHECK(v->bad <= v->total);
    CHECK((v->bad == 0) == (v->first.code == 0));
    size_t k = 0, bad = 0;
    for (size_t r = 0; r < req->n_resource_profiles; r++) {
        const Opentelemetry__Proto__Profiles__V1development__ResourceProfiles *rp =
            req->resource_profiles[r];
        for (size_t s = 0; s < rp->n_scope_profiles; s++) {
            const Opentelemetry__Proto__Profiles__V1development__ScopeProfiles *sp =
                rp->scope_profiles[s];
            for (size_t p = 0; p < sp->n_profiles; p++, k++) {
                CHECK(k < v->total);
                if (v->is_bad[k]) {
                    bad++;
                    continue;
                }
                /* Accepted: every reference must be safe to follow. */
                touch_profile(req->dictionary, sp->profiles[p]);
                if (rp->resource)
                    touch_kvs(req->dictionary, rp->resource->attributes,
                              rp->resource->n_attributes);
                if (sp->scope)
                    touch_kvs(req->dictionary, sp->scope->attributes, sp->scope->n_attributes);
            }
        }
    }
    CHECK(k == v->total && bad == v->bad);
    CHECK(dec.layout.old_votes + dec.layout.new_votes <= dec.layout.samples);
    /* What validation accepted must convert, and every converted reference must be in range. */
    sp_batch b = {.tenant = "fuzz", .arena = a};
    if (otlp_profiles_convert(req, v, 1, &b, &err) == 0) {
        size_t whole_samples = 0;
        for (size_t i = 0; i < b.nprofiles; i++) {
            check_converted(b.profiles[i]);
            whole_samples += b.profiles[i]->nsamples;
        }
        CHECK(lazy_samples == SIZE_MAX || lazy_samples == whole_samples);
        /* In parts (the streamed path), one resource at a time: the same profiles and samples,
         * each part's references in range of the tables it was given, and those tables only
         * grow from part to part. */
        otlp_profiles_conv *pc = NULL;
        size_t nprof = 0, nsamples = 0, all = 0;
        uint32_t nloc = 0, nfn = 0, nstr = 0;
        for (size_t i = 0; i < b.nprofiles; i++)
            all += b.profiles[i]->nsamples;
        int whole = otlp_profiles_conv_begin(req, v, a, &pc, &err) == 0;
        if (whole) { /* a second conversion may find the arena's budget spent: then stop */
            while (whole && otlp_profiles_conv_left(pc)) {
                sp_batch part = {.tenant = "fuzz", .arena = a};
                if (otlp_profiles_conv_next(pc, 1, 1, &part, &err) != 0) {
                    whole = 0;
                    break;
                }
                for (size_t i = 0; i < part.nprofiles; i++) {
                    const sp_profile *p = part.profiles[i];
                    check_converted(p);
                    CHECK(p->nlocations >= nloc && p->nfunctions >= nfn && p->nstrings >= nstr);
                    nloc = p->nlocations;
                    nfn = p->nfunctions;
                    nstr = p->nstrings;
                    nsamples += p->nsamples;
                }
                nprof += part.nprofiles;
            }
            CHECK(!whole || (nprof == b.nprofiles && nsamples == all));
        }
    }
    sp_arena_free(a);
    return 0;
}
