/* otlp/validate: dictionary references, sample shapes, links, resource attribute forms, spans. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "otlp/validate.h"

#include <stdlib.h>
#include <string.h>

typedef Opentelemetry__Proto__Profiles__V1development__ProfilesDictionary Dict;
typedef Opentelemetry__Proto__Profiles__V1development__Profile Profile;
typedef Opentelemetry__Proto__Profiles__V1development__Sample Sample;
typedef Opentelemetry__Proto__Profiles__V1development__Stack Stack;
typedef Opentelemetry__Proto__Profiles__V1development__Location Location;
typedef Opentelemetry__Proto__Profiles__V1development__Line Line;
typedef Opentelemetry__Proto__Profiles__V1development__Function Function;
typedef Opentelemetry__Proto__Profiles__V1development__Mapping Mapping;
typedef Opentelemetry__Proto__Profiles__V1development__Link Link;
typedef Opentelemetry__Proto__Profiles__V1development__KeyValueAndUnit Attr;
typedef Opentelemetry__Proto__Profiles__V1development__ValueType ValueType;
typedef Opentelemetry__Proto__Profiles__V1development__ResourceProfiles ResourceProfiles;
typedef Opentelemetry__Proto__Profiles__V1development__ScopeProfiles ScopeProfiles;
typedef Opentelemetry__Proto__Common__V1__AnyValue AnyValue;
typedef Opentelemetry__Proto__Resource__V1__Resource Resource;

#define NSTACKS   41
#define NPROFILES 3
#define NSAMPLES  13

/* A valid CPU-profile request (the eBPF profiler's shape) that tests then break. */
typedef struct world {
    otlp_profiles_req req;
    Dict dict;
    char *strings[12];
    Function fn[2], *fnp[2];
    Mapping map[2], *mapp[2];
    Line line, *linep[1];
    Location loc[2], *locp[2];
    int32_t loc_idx[1];
    Stack stack[NSTACKS], *stackp[NSTACKS];
    AnyValue attr_val;
    Attr attr[2], *attrp[2];
    uint8_t trace_id[16], span_id[8];
    Link link[2], *linkp[2];
    ResourceProfiles rp, *rpp[1];
    Resource res;
    otlp_kv res_kv[2], *res_kvp[2];
    AnyValue res_val[2];
    ScopeProfiles sp, *spp[1];
    Profile prof[NPROFILES], *profp[NPROFILES];
    ValueType sample_type[NPROFILES], period_type[NPROFILES];
    Sample sample[NPROFILES][NSAMPLES], *samplep[NPROFILES][NSAMPLES];
    int32_t sample_attr[1];
    uint64_t ts[NSAMPLES];
    sp_arena *arena;
} world;

static int setup(void **state)
{
    world *w = calloc(1, sizeof *w);
    static char *strings[] = {"",     "samples", "count",     "cpu",          "nanoseconds",
                              "main", "app.c",   "thread.id", "/usr/bin/app", "service.name",
                              "svc",  "pid"};
    memcpy(w->strings, strings, sizeof strings);

    Dict *d = &w->dict;
    *d = (Dict)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__PROFILES_DICTIONARY__INIT;
    d->n_string_table = 12;
    d->string_table = w->strings;
    for (int i = 0; i < 2; i++) {
        w->fn[i] = (Function)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__FUNCTION__INIT;
        w->map[i] = (Mapping)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__MAPPING__INIT;
        w->loc[i] = (Location)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__LOCATION__INIT;
        w->attr[i] = (Attr)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__KEY_VALUE_AND_UNIT__INIT;
        w->link[i] = (Link)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__LINK__INIT;
        w->fnp[i] = &w->fn[i];
        w->mapp[i] = &w->map[i];
        w->locp[i] = &w->loc[i];
        w->attrp[i] = &w->attr[i];
        w->linkp[i] = &w->link[i];
    }
    w->fn[1].name_strindex = 5;
    w->fn[1].filename_strindex = 6;
    w->map[1].filename_strindex = 8;
    w->line = (Line)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__LINE__INIT;
    w->line.function_index = 1;
    w->line.line = 10;
    w->linep[0] = &w->line;
    w->loc[1].mapping_index = 1;
    w->loc[1].address = 0x401000;
    w->loc[1].n_lines = 1;
    w->loc[1].lines = w->linep;
    w->loc_idx[0] = 1;
    for (int i = 0; i < NSTACKS; i++) {
        w->stack[i] = (Stack)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__STACK__INIT;
        if (i) {
            w->stack[i].n_location_indices = 1;
            w->stack[i].location_indices = w->loc_idx;
        }
        w->stackp[i] = &w->stack[i];
    }
    w->attr_val = (AnyValue)OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
    w->attr_val.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
    w->attr_val.int_value = 1000;
    w->attr[1].key_strindex = 7;
    w->attr[1].value = &w->attr_val;
    memset(w->trace_id, 0x11, 16);
    memset(w->span_id, 0x22, 8);
    w->link[1].trace_id = (ProtobufCBinaryData){16, w->trace_id};
    w->link[1].span_id = (ProtobufCBinaryData){8, w->span_id};
    d->n_function_table = 2;
    d->function_table = w->fnp;
    d->n_mapping_table = 2;
    d->mapping_table = w->mapp;
    d->n_location_table = 2;
    d->location_table = w->locp;
    d->n_stack_table = NSTACKS;
    d->stack_table = w->stackp;
    d->n_attribute_table = 2;
    d->attribute_table = w->attrp;
    d->n_link_table = 2;
    d->link_table = w->linkp;

    w->sample_attr[0] = 1;
    for (int i = 0; i < NSAMPLES; i++)
        w->ts[i] = 1700000000000000000ull + (uint64_t)i;
    for (int p = 0; p < NPROFILES; p++) {
        Profile *pr = &w->prof[p];
        *pr = (Profile)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__PROFILE__INIT;
        w->sample_type[p] =
            (ValueType)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__VALUE_TYPE__INIT;
        w->period_type[p] = w->sample_type[p];
        w->sample_type[p].type_strindex = 1;
        w->sample_type[p].unit_strindex = 2;
        w->period_type[p].type_strindex = 3;
        w->period_type[p].unit_strindex = 4;
        pr->sample_type = &w->sample_type[p];
        pr->period_type = &w->period_type[p];
        pr->period = 50000000;
        for (int i = 0; i < NSAMPLES; i++) {
            Sample *s = &w->sample[p][i];
            *s = (Sample)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__SAMPLE__INIT;
            s->stack_index = 1 + i % (NSTACKS - 1);
            s->n_attribute_indices = 1;
            s->attribute_indices = w->sample_attr;
            s->n_timestamps_unix_nano = 1;
            s->timestamps_unix_nano = &w->ts[i];
            w->samplep[p][i] = s;
        }
        pr->n_samples = NSAMPLES;
        pr->samples = w->samplep[p];
        w->profp[p] = pr;
    }
    w->sp = (ScopeProfiles)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__SCOPE_PROFILES__INIT;
    w->sp.n_profiles = NPROFILES;
    w->sp.profiles = w->profp;
    w->spp[0] = &w->sp;
    w->res = (Resource)OPENTELEMETRY__PROTO__RESOURCE__V1__RESOURCE__INIT;
    for (int i = 0; i < 2; i++) {
        w->res_kv[i] = (otlp_kv)OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE__INIT;
        w->res_val[i] = (AnyValue)OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
        w->res_kv[i].value = &w->res_val[i];
        w->res_kvp[i] = &w->res_kv[i];
    }
    /* plain form */
    w->res_kv[0].key = "process.executable.name";
    w->res_val[0].value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
    w->res_val[0].string_value = "app";
    /* v1.10 reference form */
    w->res_kv[1].key_strindex = 9;
    w->res_val[1].value_case =
        OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE_STRINDEX;
    w->res_val[1].string_value_strindex = 10;
    w->res.n_attributes = 2;
    w->res.attributes = w->res_kvp;
    w->rp =
        (ResourceProfiles)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__RESOURCE_PROFILES__INIT;
    w->rp.resource = &w->res;
    w->rp.n_scope_profiles = 1;
    w->rp.scope_profiles = w->spp;
    w->rpp[0] = &w->rp;
    w->req = (otlp_profiles_req)
        OPENTELEMETRY__PROTO__COLLECTOR__PROFILES__V1DEVELOPMENT__EXPORT_PROFILES_SERVICE_REQUEST__INIT;
    w->req.n_resource_profiles = 1;
    w->req.resource_profiles = w->rpp;
    w->req.dictionary = d;
    w->arena = sp_arena_new(0);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    world *w = *state;
    sp_arena_free(w->arena);
    free(w);
    return 0;
}

static otlp_verdict run(world *w)
{
    otlp_verdict v;
    sp_err err = {0};
    int rc = otlp_validate_profiles(&w->req, w->arena, &v, &err);
    if (rc)
        fail_msg("request-level failure: %s", err.msg);
    return v;
}

/* Exactly profile 1 of 3 is rejected, and the message contains want. */
static void expect_profile1_rejected(world *w, const char *want)
{
    otlp_verdict v = run(w);
    assert_int_equal(v.total, NPROFILES);
    assert_int_equal(v.bad, 1);
    assert_int_equal(v.is_bad[0], 0);
    assert_int_equal(v.is_bad[1], 1);
    assert_int_equal(v.is_bad[2], 0);
    assert_int_equal(v.first.code, SP_EINVAL);
    if (!strstr(v.first.msg, want))
        fail_msg("message \"%s\" lacks \"%s\"", v.first.msg, want);
}

static void accepts_valid_cpu_profiles(void **state)
{
    world *w = *state;
    otlp_verdict v = run(w);
    assert_int_equal(v.total, NPROFILES);
    assert_int_equal(v.bad, 0);
    assert_int_equal(v.first.code, 0);
}

static void rejects_stack_index_out_of_range(void **state)
{
    world *w = *state;
    w->sample[1][12].stack_index = 900;
    expect_profile1_rejected(w, "resource_profiles[0].scope_profiles[0].profiles[1]: sample 12: "
                                "stack_index 900 out of range (stack_table has 41 entries)");
}

static void rejects_negative_stack_index(void **state)
{
    world *w = *state;
    w->sample[1][0].stack_index = -5;
    expect_profile1_rejected(w, "sample 0: stack_index -5 is negative");
}

static void index_zero_means_none_even_with_empty_tables(void **state)
{
    world *w = *state;
    w->dict.n_stack_table = 0;
    w->dict.n_attribute_table = 0;
    w->dict.n_link_table = 0;
    w->dict.n_string_table = 0;
    for (int p = 0; p < NPROFILES; p++) {
        w->sample_type[p].type_strindex = w->sample_type[p].unit_strindex = 0;
        w->period_type[p].type_strindex = w->period_type[p].unit_strindex = 0;
        for (int i = 0; i < NSAMPLES; i++) {
            w->sample[p][i].stack_index = 0;
            w->sample[p][i].n_attribute_indices = 0;
        }
    }
    w->res.n_attributes = 1; /* plain form needs no string table */
    otlp_verdict v = run(w);
    assert_int_equal(v.bad, 0);
}

static void rejects_location_index_out_of_range_in_stack(void **state)
{
    world *w = *state;
    int32_t locs[] = {1, 77};
    w->stack[40].n_location_indices = 2;
    w->stack[40].location_indices = locs;
    w->sample[1][3].stack_index = 40;
    expect_profile1_rejected(w, "sample 3: stack_table[40]: location_indices[1] = 77 out of range "
                                "(location_table has 2 entries)");
}

static void rejects_mapping_index_out_of_range(void **state)
{
    world *w = *state;
    w->loc[1].mapping_index = 2;
    otlp_verdict v = run(w); /* every stack uses location 1: all profiles are bad */
    assert_int_equal(v.bad, NPROFILES);
    assert_non_null(strstr(v.first.msg, "location_table[1]: mapping_index 2 out of range "
                                        "(mapping_table has 2 entries)"));
    assert_non_null(strstr(v.first.msg, "profiles[0]: sample 0: stack_table[1]"));
}

static void rejects_function_index_out_of_range(void **state)
{
    world *w = *state;
    w->line.function_index = 9;
    otlp_verdict v = run(w);
    assert_int_equal(v.bad, NPROFILES);
    assert_non_null(strstr(v.first.msg, "lines[0]: function_index 9 out of range"));
}

static void rejects_function_name_strindex_out_of_range(void **state)
{
    world *w = *state;
    w->fn[1].system_name_strindex = 12;
    otlp_verdict v = run(w);
    assert_int_equal(v.bad, NPROFILES);
    assert_non_null(strstr(v.first.msg, "function_table[1]: system_name_strindex 12 out of range "
                                        "(string_table has 12 entries)"));
}

static void rejects_mapping_filename_strindex_out_of_range(void **state)
{
    world *w = *state;
    w->map[1].filename_strindex = 100;
    otlp_verdict v = run(w);
    assert_int_equal(v.bad, NPROFILES);
    assert_non_null(strstr(v.first.msg, "mapping_table[1]: filename_strindex 100"));
}

static void rejects_attribute_index_out_of_range(void **state)
{
    world *w = *state;
    int32_t attrs[] = {1, 5};
    w->sample[1][2].n_attribute_indices = 2;
    w->sample[1][2].attribute_indices = attrs;
    expect_profile1_rejected(w, "sample 2: attribute_indices[1] = 5 out of range (attribute_table "
                                "has 2 entries)");
}

static void rejects_attribute_key_strindex_out_of_range(void **state)
{
    world *w = *state;
    w->attr[1].key_strindex = 40;
    otlp_verdict v = run(w);
    assert_int_equal(v.bad, NPROFILES);
    assert_non_null(strstr(v.first.msg, "attribute_table[1]: key_strindex 40 out of range"));
}

static void rejects_attribute_string_value_strindex_out_of_range(void **state)
{
    world *w = *state;
    w->attr_val.value_case =
        OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE_STRINDEX;
    w->attr_val.string_value_strindex = -1;
    otlp_verdict v = run(w);
    assert_int_equal(v.bad, NPROFILES);
    assert_non_null(strstr(v.first.msg, "string_value_strindex -1 is negative"));
}

static void rejects_link_index_out_of_range(void **state)
{
    world *w = *state;
    w->sample[1][4].link_index = 3;
    expect_profile1_rejected(w, "sample 4: link_index 3 out of range (link_table has 2 entries)");
}

static void accepts_link_index_to_a_full_link(void **state)
{
    world *w = *state;
    w->sample[1][4].link_index = 1;
    assert_int_equal(run(w).bad, 0);
}

static void rejects_link_with_short_trace_id(void **state)
{
    world *w = *state;
    w->link[1].trace_id.len = 15;
    w->sample[1][4].link_index = 1;
    expect_profile1_rejected(w, "link_table[1]: trace_id is 15 bytes (must be 16)");
}

static void rejects_link_with_long_span_id(void **state)
{
    world *w = *state;
    uint8_t sid[9] = {1};
    w->link[1].span_id = (ProtobufCBinaryData){9, sid};
    w->sample[1][0].link_index = 1;
    expect_profile1_rejected(w, "span_id is 9 bytes (must be 8)");
}

static void unreferenced_bad_entries_are_not_judged(void **state)
{
    world *w = *state;
    w->link[1].trace_id.len = 3; /* no sample uses link 1 */
    w->stack[0].n_location_indices = 1;
    int32_t bad[] = {999};
    w->stack[0].location_indices = bad; /* entry 0 is never dereferenced */
    assert_int_equal(run(w).bad, 0);
}

static void rejects_sample_without_values_or_timestamps(void **state)
{
    world *w = *state;
    w->sample[1][5].n_timestamps_unix_nano = 0;
    expect_profile1_rejected(w, "sample 5: no values and no timestamps");
}

static void rejects_values_and_timestamps_of_different_length(void **state)
{
    world *w = *state;
    int64_t values[] = {1, 2};
    w->sample[1][6].n_values = 2;
    w->sample[1][6].values = values;
    expect_profile1_rejected(w, "sample 6: 2 values but 1 timestamps");
}

static void accepts_values_only_and_parallel_arrays(void **state)
{
    world *w = *state;
    int64_t values[] = {5, 6};
    w->sample[0][0].n_timestamps_unix_nano = 0;
    w->sample[0][0].n_values = 2;
    w->sample[0][0].values = values;
    w->sample[0][1].n_values = 1;
    w->sample[0][1].values = values;
    assert_int_equal(run(w).bad, 0);
}

static void rejects_sample_type_strindex_out_of_range(void **state)
{
    world *w = *state;
    w->sample_type[1].type_strindex = 62;
    expect_profile1_rejected(w, "sample_type: type_strindex 62 out of range (string_table has "
                                "12 entries)");
}

static void rejects_period_type_strindex_negative(void **state)
{
    world *w = *state;
    w->period_type[1].unit_strindex = -7;
    expect_profile1_rejected(w, "period_type: unit_strindex -7 is negative");
}

static void rejects_profile_attribute_index_out_of_range(void **state)
{
    world *w = *state;
    int32_t attrs[] = {2};
    w->prof[1].n_attribute_indices = 1;
    w->prof[1].attribute_indices = attrs;
    expect_profile1_rejected(w, "profiles[1]: attribute_indices[0] = 2 out of range");
}

static void request_without_dictionary_is_invalid(void **state)
{
    world *w = *state;
    w->req.dictionary = NULL;
    otlp_verdict v;
    sp_err err = {0};
    assert_int_equal(otlp_validate_profiles(&w->req, w->arena, &v, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "no dictionary"));
    /* ... unless it has no profiles at all */
    w->sp.n_profiles = 0;
    assert_int_equal(otlp_validate_profiles(&w->req, w->arena, &v, &err), 0);
    assert_int_equal(v.total, 0);
}

static void bad_resource_attribute_rejects_its_profiles(void **state)
{
    world *w = *state;
    w->res_kv[1].key_strindex = 30;
    otlp_verdict v = run(w);
    assert_int_equal(v.bad, NPROFILES);
    assert_non_null(strstr(v.first.msg, "profiles[0]: resource.attributes[1]: key_strindex 30 out "
                                        "of range"));
}

static void resolves_both_attribute_forms(void **state)
{
    world *w = *state;
    const char *key, *str;
    sp_err err = {0};
    assert_int_equal(otlp_resolve_kv(&w->res_kv[0], w->strings, 12, &key, &str, &err), 0);
    assert_string_equal(key, "process.executable.name");
    assert_string_equal(str, "app");
    assert_int_equal(otlp_resolve_kv(&w->res_kv[1], w->strings, 12, &key, &str, &err), 0);
    assert_string_equal(key, "service.name");
    assert_string_equal(str, "svc");
    /* a non-string value: key only */
    w->res_val[1].value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
    w->res_val[1].int_value = 4242;
    w->res_kv[1].key_strindex = 11;
    assert_int_equal(otlp_resolve_kv(&w->res_kv[1], w->strings, 12, &key, &str, &err), 0);
    assert_string_equal(key, "pid");
    assert_null(str);
    /* neither key form set */
    otlp_kv empty = OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE__INIT;
    assert_int_equal(otlp_resolve_kv(&empty, w->strings, 12, &key, &str, &err), 0);
    assert_string_equal(key, "");
    assert_null(str);
}

static void resolve_kv_bounds_checks_both_indices(void **state)
{
    world *w = *state;
    const char *key, *str;
    sp_err err = {0};
    w->res_kv[1].key_strindex = 12;
    assert_int_equal(otlp_resolve_kv(&w->res_kv[1], w->strings, 12, &key, &str, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "key_strindex 12 out of range (string_table has 12 entries)"));
    w->res_kv[1].key_strindex = 9;
    w->res_val[1].string_value_strindex = -3;
    assert_int_equal(otlp_resolve_kv(&w->res_kv[1], w->strings, 12, &key, &str, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "string_value_strindex -3 is negative"));
    /* No string table (trace payloads): an index is out of range, the plain form still works. */
    assert_int_equal(otlp_resolve_kv(&w->res_kv[1], NULL, 0, &key, &str, &err), SP_EINVAL);
    assert_int_equal(otlp_resolve_kv(&w->res_kv[0], NULL, 0, &key, &str, &err), 0);
}

/* ---- traces -----------------------------------------------------------------------------------
 */

typedef Opentelemetry__Proto__Trace__V1__Span Span;

typedef struct tworld {
    otlp_traces_req req;
    Opentelemetry__Proto__Trace__V1__ResourceSpans rs, *rsp[1];
    Opentelemetry__Proto__Trace__V1__ScopeSpans ss, *ssp[1];
    Span span[4], *spanp[4];
    uint8_t tid[16], sid[4][8], parent[8];
} tworld;

static void tworld_init(tworld *t)
{
    memset(t, 0, sizeof *t);
    memset(t->tid, 0xab, 16);
    memset(t->parent, 0x01, 8);
    for (int i = 0; i < 4; i++) {
        Span *s = &t->span[i];
        *s = (Span)OPENTELEMETRY__PROTO__TRACE__V1__SPAN__INIT;
        memset(t->sid[i], i + 1, 8);
        s->trace_id = (ProtobufCBinaryData){16, t->tid};
        s->span_id = (ProtobufCBinaryData){8, t->sid[i]};
        s->parent_span_id = (ProtobufCBinaryData){i ? 8 : 0, t->parent};
        s->start_time_unix_nano = 1000;
        s->end_time_unix_nano = 1000 + 25000000ull * (uint64_t)i;
        t->spanp[i] = s;
    }
    t->ss = (Opentelemetry__Proto__Trace__V1__ScopeSpans)
        OPENTELEMETRY__PROTO__TRACE__V1__SCOPE_SPANS__INIT;
    t->ss.n_spans = 4;
    t->ss.spans = t->spanp;
    t->ssp[0] = &t->ss;
    t->rs = (Opentelemetry__Proto__Trace__V1__ResourceSpans)
        OPENTELEMETRY__PROTO__TRACE__V1__RESOURCE_SPANS__INIT;
    t->rs.n_scope_spans = 1;
    t->rs.scope_spans = t->ssp;
    t->rsp[0] = &t->rs;
    t->req = (otlp_traces_req)
        OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_REQUEST__INIT;
    t->req.n_resource_spans = 1;
    t->req.resource_spans = t->rsp;
}

static otlp_verdict trun(tworld *t, sp_arena *a)
{
    otlp_verdict v;
    sp_err err;
    assert_int_equal(otlp_validate_traces(&t->req, a, &v, &err), 0);
    return v;
}

static void accepts_valid_spans(void **state)
{
    world *w = *state;
    tworld t;
    tworld_init(&t);
    otlp_verdict v = trun(&t, w->arena);
    assert_int_equal(v.total, 4);
    assert_int_equal(v.bad, 0);
}

static void rejects_spans_with_bad_ids_or_times(void **state)
{
    world *w = *state;
    static const struct {
        int what;
        const char *msg;
    } cases[] = {
        {0, "trace_id is 15 bytes (must be 16)"},
        {1, "trace_id is all zeros"},
        {2, "span_id is 4 bytes (must be 8)"},
        {3, "span_id is all zeros"},
        {4, "parent_span_id is 3 bytes (must be empty or 8)"},
        {5, "end_time_unix_nano 999 is before start_time_unix_nano 1000"},
        {6, "span_id is 0 bytes (must be 8)"},
    };
    static const uint8_t zeros[16];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tworld t;
        tworld_init(&t);
        Span *s = &t.span[2];
        switch (cases[i].what) {
        case 0:
            s->trace_id.len = 15;
            break;
        case 1:
            s->trace_id.data = (uint8_t *)zeros;
            break;
        case 2:
            s->span_id.len = 4;
            break;
        case 3:
            s->span_id.data = (uint8_t *)zeros;
            break;
        case 4:
            s->parent_span_id.len = 3;
            break;
        case 5:
            s->end_time_unix_nano = 999;
            break;
        case 6:
            s->span_id.len = 0;
            break;
        }
        otlp_verdict v = trun(&t, w->arena);
        assert_int_equal(v.bad, 1);
        assert_int_equal(v.is_bad[2], 1);
        assert_int_equal(v.is_bad[1], 0);
        assert_non_null(strstr(v.first.msg, "resource_spans[0].scope_spans[0].spans[2]: "));
        if (!strstr(v.first.msg, cases[i].msg))
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, v.first.msg, cases[i].msg);
    }
}

static void counts_every_bad_span_but_reports_the_first(void **state)
{
    world *w = *state;
    tworld t;
    tworld_init(&t);
    t.span[1].span_id.len = 2;
    t.span[3].trace_id.len = 0;
    otlp_verdict v = trun(&t, w->arena);
    assert_int_equal(v.bad, 2);
    assert_non_null(strstr(v.first.msg, "spans[1]: span_id is 2 bytes"));
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(accepts_valid_cpu_profiles),
        T(rejects_stack_index_out_of_range),
        T(rejects_negative_stack_index),
        T(index_zero_means_none_even_with_empty_tables),
        T(rejects_location_index_out_of_range_in_stack),
        T(rejects_mapping_index_out_of_range),
        T(rejects_function_index_out_of_range),
        T(rejects_function_name_strindex_out_of_range),
        T(rejects_mapping_filename_strindex_out_of_range),
        T(rejects_attribute_index_out_of_range),
        T(rejects_attribute_key_strindex_out_of_range),
        T(rejects_attribute_string_value_strindex_out_of_range),
        T(rejects_link_index_out_of_range),
        T(accepts_link_index_to_a_full_link),
        T(rejects_link_with_short_trace_id),
        T(rejects_link_with_long_span_id),
        T(unreferenced_bad_entries_are_not_judged),
        T(rejects_sample_without_values_or_timestamps),
        T(rejects_values_and_timestamps_of_different_length),
        T(accepts_values_only_and_parallel_arrays),
        T(rejects_sample_type_strindex_out_of_range),
        T(rejects_period_type_strindex_negative),
        T(rejects_profile_attribute_index_out_of_range),
        T(request_without_dictionary_is_invalid),
        T(bad_resource_attribute_rejects_its_profiles),
        T(resolves_both_attribute_forms),
        T(resolve_kv_bounds_checks_both_indices),
        T(accepts_valid_spans),
        T(rejects_spans_with_bad_ids_or_times),
        T(counts_every_bad_span_but_reports_the_first),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
