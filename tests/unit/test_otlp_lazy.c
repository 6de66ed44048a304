/* otlp/decode.h otlp_decode_profiles(): a large profiles request decoded one ResourceProfiles at
 * a time must judge and convert exactly as the whole decode does (L1-L3 in otlp/decode.c). The
 * oracle is otlp_decode() of the same bytes, the path every other request takes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "otlp/convert.h"
#include "otlp/decode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef Opentelemetry__Proto__Profiles__V1development__ProfilesDictionary Dict;
typedef Opentelemetry__Proto__Profiles__V1development__Profile Profile;
typedef Opentelemetry__Proto__Profiles__V1development__Sample Sample;
typedef Opentelemetry__Proto__Profiles__V1development__Stack Stack;
typedef Opentelemetry__Proto__Profiles__V1development__Location Location;
typedef Opentelemetry__Proto__Profiles__V1development__Line Line;
typedef Opentelemetry__Proto__Profiles__V1development__Function Function;
typedef Opentelemetry__Proto__Profiles__V1development__ValueType ValueType;
typedef Opentelemetry__Proto__Profiles__V1development__ResourceProfiles ResourceProfiles;
typedef Opentelemetry__Proto__Profiles__V1development__ScopeProfiles ScopeProfiles;

#define NRES     4
#define NPROF    2
#define NSAMPLES 50
#define NLOC     4

/* A request of NRES resources (one scope, NPROF CPU profiles of NSAMPLES samples each) over one
 * dictionary of NLOC one-frame stacks. Resource 1's second profile has a stack_index out of range
 * and resource 3's first a link_index out of range: two bad profiles, judged in request order. */
typedef struct req_world {
    otlp_profiles_req req;
    Dict dict;
    char *strings[5 + NLOC];
    Function fn[NLOC + 1], *fnp[NLOC + 1];
    Line line[NLOC + 1], *linep[NLOC + 1][1];
    Location loc[NLOC + 1], *locp[NLOC + 1];
    int32_t loc_idx[NLOC + 1][1];
    Stack stack[NLOC + 1], *stackp[NLOC + 1];
    ResourceProfiles rp[NRES], *rpp[NRES];
    ScopeProfiles sp[NRES], *spp[NRES][1];
    Profile prof[NRES][NPROF], *profp[NRES][NPROF];
    ValueType st[NRES][NPROF];
    Sample s[NRES][NPROF][NSAMPLES], *sp_[NRES][NPROF][NSAMPLES];
    int64_t val[NRES][NPROF][NSAMPLES][1];
    uint64_t ts[NRES][NPROF][NSAMPLES][1];
} req_world;

static char *fn_names[NLOC] = {"leaf_a", "leaf_b", "leaf_c", "leaf_d"};

/* Unused strings added to the dictionary's table: with enough of them the dictionary is large
 * enough to be unpacked on a helper thread beside the layout pass (L4-L6). */
static size_t pad_strings;

static uint8_t *build(size_t *len)
{
    req_world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    char *base[5] = {"", "cpu", "nanoseconds", "samples", "count"};
    memcpy(w->strings, base, sizeof base);
    for (int i = 0; i < NLOC; i++)
        w->strings[5 + i] = fn_names[i];
    Dict *d = &w->dict;
    *d = (Dict)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__PROFILES_DICTIONARY__INIT;
    d->string_table = w->strings;
    d->n_string_table = 5 + NLOC;
    char **padded = NULL;
    if (pad_strings) {
        padded = calloc(5 + NLOC + pad_strings, sizeof *padded);
        assert_non_null(padded);
        memcpy(padded, w->strings, sizeof w->strings);
        for (size_t i = 0; i < pad_strings; i++) {
            padded[5 + NLOC + i] = malloc(128);
            assert_non_null(padded[5 + NLOC + i]);
            snprintf(padded[5 + NLOC + i], 128, "github.com/example/pkg%zu.(*Server).handle%064zu",
                     i % 97, i);
        }
        d->string_table = padded;
        d->n_string_table = 5 + NLOC + pad_strings;
    }
    for (int i = 0; i <= NLOC; i++) {
        w->fn[i] = (Function)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__FUNCTION__INIT;
        w->line[i] = (Line)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__LINE__INIT;
        w->loc[i] = (Location)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__LOCATION__INIT;
        w->stack[i] = (Stack)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__STACK__INIT;
        w->fnp[i] = &w->fn[i];
        w->locp[i] = &w->loc[i];
        w->stackp[i] = &w->stack[i];
        if (!i)
            continue; /* entry 0 of every table is the zero entry */
        w->fn[i].name_strindex = 4 + i;
        w->line[i].function_index = i;
        w->linep[i][0] = &w->line[i];
        w->loc[i].lines = w->linep[i];
        w->loc[i].n_lines = 1;
        w->loc[i].address = 0x1000 * (uint64_t)i;
        w->loc_idx[i][0] = i;
        w->stack[i].location_indices = w->loc_idx[i];
        w->stack[i].n_location_indices = 1;
    }
    d->function_table = w->fnp;
    d->n_function_table = NLOC + 1;
    d->location_table = w->locp;
    d->n_location_table = NLOC + 1;
    d->stack_table = w->stackp;
    d->n_stack_table = NLOC + 1;
    for (int r = 0; r < NRES; r++) {
        w->rp[r] = (ResourceProfiles)
            OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__RESOURCE_PROFILES__INIT;
        w->sp[r] =
            (ScopeProfiles)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__SCOPE_PROFILES__INIT;
        w->rpp[r] = &w->rp[r];
        w->spp[r][0] = &w->sp[r];
        w->rp[r].scope_profiles = w->spp[r];
        w->rp[r].n_scope_profiles = 1;
        for (int p = 0; p < NPROF; p++) {
            Profile *pr = &w->prof[r][p];
            *pr = (Profile)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__PROFILE__INIT;
            w->st[r][p] =
                (ValueType)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__VALUE_TYPE__INIT;
            w->st[r][p].type_strindex = 1;
            w->st[r][p].unit_strindex = 2;
            pr->sample_type = &w->st[r][p];
            pr->time_unix_nano = 1700000000000000000ull;
            for (int k = 0; k < NSAMPLES; k++) {
                Sample *s = &w->s[r][p][k];
                *s = (Sample)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__SAMPLE__INIT;
                s->stack_index = 1 + (r + p + k) % NLOC;
                w->val[r][p][k][0] = 1000 * (r + 1) + k;
                w->ts[r][p][k][0] = 1700000000000000000ull + 1000000ull * (uint64_t)k;
                s->values = w->val[r][p][k];
                s->n_values = 1;
                s->timestamps_unix_nano = w->ts[r][p][k];
                s->n_timestamps_unix_nano = 1;
                w->sp_[r][p][k] = s;
            }
            pr->samples = w->sp_[r][p];
            pr->n_samples = NSAMPLES;
            w->profp[r][p] = pr;
        }
        w->sp[r].profiles = w->profp[r];
        w->sp[r].n_profiles = NPROF;
    }
    w->s[1][1][7].stack_index = 99;
    w->s[3][0][3].link_index = 5;
    otlp_profiles_req *q = &w->req;
    *q = (otlp_profiles_req)
        OPENTELEMETRY__PROTO__COLLECTOR__PROFILES__V1DEVELOPMENT__EXPORT_PROFILES_SERVICE_REQUEST__INIT;
    q->resource_profiles = w->rpp;
    q->n_resource_profiles = NRES;
    q->dictionary = d;
    *len = protobuf_c_message_get_packed_size(&q->base);
    uint8_t *buf = malloc(*len + 64); /* room for the tests' appended fields */
    assert_non_null(buf);
    protobuf_c_message_pack(&q->base, buf);
    for (size_t i = 0; padded && i < pad_strings; i++)
        free(padded[5 + NLOC + i]);
    free(padded);
    free(w);
    return buf;
}

/* Sums of what a conversion gives: profiles, samples, and the value of each stack's frame name. */
typedef struct tally {
    size_t profiles, samples;
    int64_t by_leaf[NLOC];
} tally;

static tally convert_all(const otlp_decoded *dec, sp_arena *a)
{
    sp_batch b = {.tenant = "t", .arena = a};
    sp_err err = {0};
    assert_int_equal(
        otlp_profiles_convert((const otlp_profiles_req *)dec->msg, &dec->verdict, 1, &b, &err), 0);
    tally t = {0};
    t.profiles = b.nprofiles;
    for (size_t i = 0; i < b.nprofiles; i++) {
        const sp_profile *p = b.profiles[i];
        uint64_t obs = 0;
        int64_t newest = INT64_MIN;
        for (uint32_t k = 0; k < p->nsamples; k++) {
            const sp_sample *s = &p->samples[k];
            obs += s->timestamps && s->nobs ? s->nobs : 1;
            for (uint32_t o = 0; s->timestamps && o < s->nobs; o++)
                if ((int64_t)s->timestamps[o] > newest)
                    newest = (int64_t)s->timestamps[o];
            t.samples++;
            assert_int_equal(s->nlocations, 1);
            const sp_location *l = &p->locations[s->location_ids[0]];
            const char *name = p->strings[p->functions[l->lines[0].function_id].name];
            for (int f = 0; f < NLOC; f++)
                if (strcmp(name, fn_names[f]) == 0)
                    t.by_leaf[f] += s->value;
        }
        /* the facts the converter hands on (common/profile.h), against a count of its output */
        assert_int_equal(p->facts_known, 1);
        assert_int_equal(p->obs_bound, obs);
        assert_int_equal(p->newest, newest);
        assert_true(newest >= 1700000000000000000ll); /* every sample here has a timestamp */
    }
    return t;
}

static void verdicts_equal(const otlp_verdict *a, const otlp_verdict *b)
{
    assert_int_equal(a->total, b->total);
    assert_int_equal(a->bad, b->bad);
    assert_memory_equal(a->is_bad, b->is_bad, a->total);
    assert_string_equal(a->first.msg, b->first.msg);
}

static void lazy_decode_judges_and_converts_as_the_whole_decode(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = build(&len);
    sp_arena *a1 = sp_arena_new(otlp_decode_budget(len)),
             *a2 = sp_arena_new(otlp_decode_budget(len));
    otlp_decoded whole, lazy;
    otlp_profiles_lazy *lz = NULL;
    sp_err err = {0};
    assert_int_equal(otlp_decode(OTLP_SIGNAL_PROFILES, buf, len, a1, &whole, &err), 0);
    assert_int_equal(otlp_decode_profiles(buf, len, 1, 1, 1, a2, &lazy, &lz, &err), 0);
    assert_non_null(lz);
    const otlp_profiles_req *q = (const otlp_profiles_req *)lazy.msg;
    /* nothing unpacked yet (L3), but the counts are known from the bytes */
    assert_int_equal(otlp_profiles_lazy_resources(lz), NRES);
    for (size_t i = 0; i < NRES; i++) {
        assert_null(q->resource_profiles[i]);
        assert_int_equal(otlp_profiles_lazy_samples(lz, i), NPROF * NSAMPLES);
    }
    assert_int_equal(lazy.verdict.total, NRES * NPROF);
    assert_int_equal(lazy.verdict.bad, 0);
    /* resource 0 is good; resource 1 holds the first bad profile */
    assert_int_equal(otlp_profiles_lazy_unpack(lz, 1, &err), 0);
    assert_int_equal(lazy.verdict.bad, 0);
    assert_int_equal(otlp_profiles_lazy_unpack(lz, 1, &err), 0);
    assert_int_equal(lazy.verdict.bad, 1);
    assert_non_null(
        strstr(lazy.verdict.first.msg, "resource_profiles[1].scope_profiles[0].profiles[1]"));
    assert_non_null(strstr(lazy.verdict.first.msg, "stack_index 99"));
    assert_int_equal(otlp_profiles_lazy_unpack(lz, SIZE_MAX, &err), 0);
    assert_int_equal(otlp_profiles_lazy_unpacked(lz), NRES);
    verdicts_equal(&lazy.verdict, &whole.verdict);
    assert_int_equal(whole.verdict.bad, 2);

    tally tw = convert_all(&whole, a1), tl = convert_all(&lazy, a2);
    assert_int_equal(tl.profiles, tw.profiles);
    assert_int_equal(tl.samples, (NRES * NPROF - 2) * NSAMPLES);
    assert_int_equal(tl.samples, tw.samples);
    assert_memory_equal(tl.by_leaf, tw.by_leaf, sizeof tl.by_leaf);
    sp_arena_free(a1);
    sp_arena_free(a2);
    free(buf);
}

/* The packed bytes of a decoded request's dictionary. */
static uint8_t *packed_dictionary(const otlp_decoded *dec, size_t *n)
{
    const Dict *d = ((const otlp_profiles_req *)dec->msg)->dictionary;
    assert_non_null(d);
    *n = protobuf_c_message_get_packed_size(&d->base);
    uint8_t *b = malloc(*n ? *n : 1);
    assert_non_null(b);
    protobuf_c_message_pack(&d->base, b);
    return b;
}

static void a_large_dictionary_unpacked_beside_the_layout_pass_is_the_one_sent(void **state)
{
    (void)state;
    pad_strings = 3000; /* about 240 KB of strings: past DICT_HELPER_MIN_BYTES */
    size_t len;
    uint8_t *buf = build(&len);
    pad_strings = 0;
    assert_true(len > 200 * 1024);
    for (int round = 0; round < 20; round++) { /* the helper and the worker race differently */
        sp_arena *a1 = sp_arena_new(otlp_decode_budget(len)),
                 *a2 = sp_arena_new(otlp_decode_budget(len));
        otlp_decoded whole, lazy;
        otlp_profiles_lazy *lz = NULL;
        sp_err err = {0};
        assert_int_equal(otlp_decode(OTLP_SIGNAL_PROFILES, buf, len, a1, &whole, &err), 0);
        assert_int_equal(otlp_decode_profiles(buf, len, 1, 1, 1, a2, &lazy, &lz, &err), 0);
        assert_non_null(lz);
        size_t n1, n2;
        uint8_t *d1 = packed_dictionary(&whole, &n1), *d2 = packed_dictionary(&lazy, &n2);
        assert_int_equal(n1, n2);
        assert_memory_equal(d1, d2, n1);
        assert_int_equal(otlp_profiles_lazy_unpack(lz, SIZE_MAX, &err), 0);
        verdicts_equal(&lazy.verdict, &whole.verdict);
        tally tw = convert_all(&whole, a1), tl = convert_all(&lazy, a2);
        assert_int_equal(tl.samples, tw.samples);
        assert_memory_equal(tl.by_leaf, tw.by_leaf, sizeof tl.by_leaf);
        free(d1);
        free(d2);
        sp_arena_free(a1);
        sp_arena_free(a2);
    }
    /* A budget with room for the request but not for a helper's half of it: the worker unpacks
     * the dictionary itself, with the same answer. */
    sp_arena *a = sp_arena_new(len * 4), *ref = sp_arena_new(0);
    otlp_decoded small, whole;
    otlp_profiles_lazy *lz = NULL;
    sp_err e1 = {0}, e2 = {0};
    int rc = otlp_decode_profiles(buf, len, 1, 1, 1, a, &small, &lz, &e1);
    assert_int_equal(otlp_decode(OTLP_SIGNAL_PROFILES, buf, len, ref, &whole, &e2), 0);
    if (rc == 0) {
        size_t n1, n2;
        uint8_t *d1 = packed_dictionary(&whole, &n1), *d2 = packed_dictionary(&small, &n2);
        assert_int_equal(n1, n2);
        assert_memory_equal(d1, d2, n1);
        free(d1);
        free(d2);
    } else {
        assert_int_equal(rc, SP_ETOOBIG);
    }
    sp_arena_free(a);
    sp_arena_free(ref);
    free(buf);
}

static void other_shapes_are_decoded_whole(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = build(&len);
    sp_err err = {0};
    otlp_decoded dec, ref;
    otlp_profiles_lazy *lz = (otlp_profiles_lazy *)1;
    sp_arena *a = sp_arena_new(otlp_decode_budget(len + 64));
    /* fewer Samples than asked for */
    assert_int_equal(
        otlp_decode_profiles(buf, len, 1, NRES * NPROF * NSAMPLES + 1, 1, a, &dec, &lz, &err), 0);
    assert_null(lz);
    assert_non_null(((const otlp_profiles_req *)dec.msg)->resource_profiles[NRES - 1]);
    assert_int_equal(dec.verdict.bad, 2);
    /* a second dictionary field: protobuf-c merges the two, so the whole unpack decides (L1) */
    uint8_t dup[] = {0x12, 0x00};
    memcpy(buf + len, dup, sizeof dup);
    lz = (otlp_profiles_lazy *)1;
    assert_int_equal(otlp_decode_profiles(buf, len + sizeof dup, 1, 1, 1, a, &dec, &lz, &err), 0);
    assert_null(lz);
    assert_int_equal(otlp_decode(OTLP_SIGNAL_PROFILES, buf, len + sizeof dup, a, &ref, &err), 0);
    verdicts_equal(&dec.verdict, &ref.verdict);
    /* field 1 with another wire type: refused as the whole decode refuses it */
    uint8_t varint1[] = {0x08, 0x01};
    memcpy(buf + len, varint1, sizeof varint1);
    sp_err e1 = {0}, e2 = {0};
    int rc1 = otlp_decode_profiles(buf, len + sizeof varint1, 1, 1, 1, a, &dec, &lz, &e1);
    int rc2 = otlp_decode(OTLP_SIGNAL_PROFILES, buf, len + sizeof varint1, a, &ref, &e2);
    assert_int_equal(rc1, SP_EINVAL);
    assert_int_equal(rc1, rc2);
    assert_string_equal(e1.msg, e2.msg);
    sp_arena_free(a);
    free(buf);
}

static void resource_that_does_not_decode_fails_when_reached(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = build(&len);
    /* A fifth resource whose one Sample has stack_index (field 1, an int32) as a LEN field: the
     * depth check and the walk of the bytes leave a Sample's inside to protobuf-c, which refuses
     * it. resource{scope_profiles{profiles{samples{0a 01 00}}}} */
    uint8_t bad[] = {0x0a, 0x09, 0x12, 0x07, 0x12, 0x05, 0x12, 0x03, 0x0a, 0x01, 0x00};
    memcpy(buf + len, bad, sizeof bad);
    len += sizeof bad;
    sp_err err = {0};
    otlp_decoded dec;
    otlp_profiles_lazy *lz = NULL;
    sp_arena *a = sp_arena_new(otlp_decode_budget(len));
    assert_int_equal(otlp_decode(OTLP_SIGNAL_PROFILES, buf, len, a, &dec, &err), SP_EINVAL);
    assert_int_equal(otlp_decode_profiles(buf, len, 1, 1, 1, a, &dec, &lz, &err), 0);
    assert_non_null(lz);
    assert_int_equal(otlp_profiles_lazy_resources(lz), NRES + 1);
    assert_int_equal(otlp_profiles_lazy_samples(lz, NRES), 1);
    assert_int_equal(otlp_profiles_lazy_unpack(lz, NRES, &err), 0);
    assert_int_equal(otlp_profiles_lazy_unpack(lz, 1, &err), SP_EINVAL);
    assert_int_equal(err.code, SP_EINVAL);
    assert_non_null(strstr(err.msg, "resource_profiles[4] at offset"));
    assert_non_null(strstr(err.msg, "does not decode as protobuf"));
    sp_arena_free(a);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lazy_decode_judges_and_converts_as_the_whole_decode),
        cmocka_unit_test(a_large_dictionary_unpacked_beside_the_layout_pass_is_the_one_sent),
        cmocka_unit_test(other_shapes_are_decoded_whole),
        cmocka_unit_test(resource_that_does_not_decode_fails_when_reached),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
