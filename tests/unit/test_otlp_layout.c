/* otlp/layout: detecting v1.8/v1.9 profiles and rewriting them into the v1.10 layout. Old-layout
 * Samples (and v1.8 Profile fields) are encoded by hand: the generated code only knows v1.10. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "otlp/layout.h"
#include "otlp/validate.h"

#include <stdlib.h>
#include <string.h>

typedef Opentelemetry__Proto__Profiles__V1development__Sample Sample;
typedef Opentelemetry__Proto__Profiles__V1development__Profile Profile;

#define REQ_DESC                                                                                   \
    (&opentelemetry__proto__collector__profiles__v1development__export_profiles_service_request__descriptor)

/* ---- a small protobuf writer ------------------------------------------------------------------
 */

typedef struct bb {
    uint8_t b[16384];
    size_t n;
} bb;

static void put_varint(bb *o, uint64_t v)
{
    while (v >= 0x80) {
        o->b[o->n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    o->b[o->n++] = (uint8_t)v;
}

static void put_tag(bb *o, uint32_t field, int wt)
{
    put_varint(o, (uint64_t)field << 3 | (uint64_t)wt);
}

static void put_bytes(bb *o, const void *p, size_t n)
{
    memcpy(o->b + o->n, p, n);
    o->n += n;
}

static void put_ld(bb *o, uint32_t field, const void *p, size_t n)
{
    put_tag(o, field, 2);
    put_varint(o, n);
    put_bytes(o, p, n);
}

static void put_int(bb *o, uint32_t field, int64_t v) /* int32/int64: negatives are 10 bytes */
{
    put_tag(o, field, 0);
    put_varint(o, (uint64_t)v);
}

static void put_packed(bb *o, uint32_t field, const int64_t *v, size_t n)
{
    bb tmp = {.n = 0};
    for (size_t i = 0; i < n; i++)
        put_varint(&tmp, (uint64_t)v[i]);
    put_ld(o, field, tmp.b, tmp.n);
}

static void put_packed_fixed64(bb *o, uint32_t field, const uint64_t *v, size_t n)
{
    bb tmp = {.n = 0};
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 8; k++)
            tmp.b[tmp.n++] = (uint8_t)(v[i] >> (8 * k));
    put_ld(o, field, tmp.b, tmp.n);
}

/* Sample in the v1.8/v1.9 numbering: stack 1, values 2, attrs 3, link 4, timestamps 5. */
static void old_sample(bb *o, int32_t stack, const int64_t *attrs, size_t nattrs, int32_t link,
                       const int64_t *values, size_t nvalues, const uint64_t *ts, size_t nts)
{
    o->n = 0;
    if (stack)
        put_int(o, 1, stack);
    if (nvalues)
        put_packed(o, 2, values, nvalues);
    if (nattrs)
        put_packed(o, 3, attrs, nattrs);
    if (link)
        put_int(o, 4, link);
    if (nts)
        put_packed_fixed64(o, 5, ts, nts);
}

/* Sample in the v1.10 numbering. */
static void new_sample(bb *o, int32_t stack, const int64_t *attrs, size_t nattrs, int32_t link,
                       const int64_t *values, size_t nvalues, const uint64_t *ts, size_t nts)
{
    o->n = 0;
    if (stack)
        put_int(o, 1, stack);
    if (nattrs)
        put_packed(o, 2, attrs, nattrs);
    if (link)
        put_int(o, 3, link);
    if (nvalues)
        put_packed(o, 4, values, nvalues);
    if (nts)
        put_packed_fixed64(o, 5, ts, nts);
}

/* A dictionary packed by protobuf-c: 3 strings, 2 stacks, 2 locations, 3 attributes, 2 links. */
static void dictionary(bb *o)
{
    Opentelemetry__Proto__Profiles__V1development__ProfilesDictionary d =
        OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__PROFILES_DICTIONARY__INIT;
    char *strings[] = {"", "samples", "count"};
    Opentelemetry__Proto__Profiles__V1development__Stack st[2] = {
        OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__STACK__INIT,
        OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__STACK__INIT};
    int32_t locs[] = {1};
    st[1].n_location_indices = 1;
    st[1].location_indices = locs;
    Opentelemetry__Proto__Profiles__V1development__Stack *stp[] = {&st[0], &st[1]};
    Opentelemetry__Proto__Profiles__V1development__Location lo[2] = {
        OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__LOCATION__INIT,
        OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__LOCATION__INIT};
    lo[1].address = 0x401000;
    Opentelemetry__Proto__Profiles__V1development__Location *lop[] = {&lo[0], &lo[1]};
    Opentelemetry__Proto__Profiles__V1development__KeyValueAndUnit at[3] = {
        OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__KEY_VALUE_AND_UNIT__INIT,
        OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__KEY_VALUE_AND_UNIT__INIT,
        OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__KEY_VALUE_AND_UNIT__INIT};
    at[1].key_strindex = 1;
    at[2].key_strindex = 2;
    Opentelemetry__Proto__Profiles__V1development__KeyValueAndUnit *atp[] = {&at[0], &at[1],
                                                                             &at[2]};
    Opentelemetry__Proto__Profiles__V1development__Link li[2] = {
        OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__LINK__INIT,
        OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__LINK__INIT};
    uint8_t tid[16], sid[8];
    memset(tid, 0x11, sizeof tid);
    memset(sid, 0x22, sizeof sid);
    li[1].trace_id.data = tid;
    li[1].trace_id.len = 16;
    li[1].span_id.data = sid;
    li[1].span_id.len = 8;
    Opentelemetry__Proto__Profiles__V1development__Link *lip[] = {&li[0], &li[1]};
    d.n_string_table = 3;
    d.string_table = strings;
    d.n_stack_table = 2;
    d.stack_table = stp;
    d.n_location_table = 2;
    d.location_table = lop;
    d.n_attribute_table = 3;
    d.attribute_table = atp;
    d.n_link_table = 2;
    d.link_table = lip;
    o->n = protobuf_c_message_pack(&d.base, o->b);
}

/* Profile head fields (sample_type (1, 2), period 1000) packed by protobuf-c. */
static void profile_head(bb *o)
{
    Profile p = OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__PROFILE__INIT;
    Opentelemetry__Proto__Profiles__V1development__ValueType vt =
        OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__VALUE_TYPE__INIT;
    vt.type_strindex = 1;
    vt.unit_strindex = 2;
    p.sample_type = &vt;
    p.period = 1000;
    p.time_unix_nano = 1700000000000000000ull;
    o->n = protobuf_c_message_pack(&p.base, o->b);
}

/* Request with nres resources, each with one scope and one profile (head + extra + samples). */
static void request(bb *out, int nres, const bb *extra, const bb *samples, size_t nsamples)
{
    bb prof, scope, rp, dict;
    profile_head(&prof);
    if (extra)
        put_bytes(&prof, extra->b, extra->n);
    for (size_t i = 0; i < nsamples; i++)
        put_ld(&prof, 2, samples[i].b, samples[i].n);
    scope.n = 0;
    put_ld(&scope, 2, prof.b, prof.n);
    rp.n = 0;
    put_ld(&rp, 2, scope.b, scope.n);
    out->n = 0;
    for (int r = 0; r < nres; r++)
        put_ld(out, 1, rp.b, rp.n);
    dictionary(&dict);
    put_ld(out, 2, dict.b, dict.n);
}

typedef struct decoded {
    sp_arena *arena;
    otlp_layout_info info;
    const uint8_t *out;
    size_t outlen;
    otlp_profiles_req *req;
} decoded;

/* normalize + unpack; asserts both succeed. */
static void decode(decoded *d, const bb *in)
{
    memset(d, 0, sizeof *d);
    d->arena = sp_arena_new(0);
    sp_err err = {0};
    int rc = otlp_layout_normalize(in->b, in->n, d->arena, &d->out, &d->outlen, &d->info, &err);
    if (rc)
        fail_msg("normalize: %s", err.msg);
    d->req = (otlp_profiles_req *)protobuf_c_message_unpack(REQ_DESC, NULL, d->outlen, d->out);
    assert_non_null(d->req);
}

static void decoded_free(decoded *d)
{
    protobuf_c_message_free_unpacked(&d->req->base, NULL);
    sp_arena_free(d->arena);
}

static Profile *profile0(decoded *d)
{
    assert_true(d->req->n_resource_profiles >= 1);
    assert_int_equal(d->req->resource_profiles[0]->n_scope_profiles, 1);
    assert_int_equal(d->req->resource_profiles[0]->scope_profiles[0]->n_profiles, 1);
    return d->req->resource_profiles[0]->scope_profiles[0]->profiles[0];
}

/* ---- tests ------------------------------------------------------------------------------------
 */

static void current_layout_passes_through_without_copy(void **state)
{
    int64_t attrs[] = {1, 2}, values[] = {7, 9};
    uint64_t ts[] = {100, 200};
    bb s[2], req;
    new_sample(&s[0], 1, attrs, 2, 1, values, 2, ts, 2);
    new_sample(&s[1], 1, attrs, 1, 0, NULL, 0, ts, 1);
    request(&req, 1, NULL, s, 2);
    decoded d;
    decode(&d, &req);
    assert_int_equal(d.info.layout, OTLP_LAYOUT_CURRENT);
    assert_int_equal(d.info.rewritten, 0);
    assert_ptr_equal(d.out, req.b);
    assert_int_equal(d.info.samples, 2);
    assert_int_equal(d.info.new_votes, 1);
    /* the census of its one resource: what the samples above hold */
    assert_int_equal(d.info.ncensus, 1);
    assert_int_equal(d.info.census[0].ok, 1);
    assert_int_equal(d.info.census[0].profiles, 1);
    assert_int_equal(d.info.census[0].samples, 2);
    assert_int_equal(d.info.census[0].values, 2);
    assert_int_equal(d.info.census[0].attrs, 3);
    assert_int_equal(d.info.census[0].times, 3);
    Sample *x = profile0(&d)->samples[0];
    assert_int_equal(x->n_values, 2);
    assert_int_equal(x->values[1], 9);
    assert_int_equal(x->link_index, 1);
    assert_string_equal(otlp_layout_name(d.info.layout), "v1.10");
    decoded_free(&d);
}

/* The Pyroscope Java agent's OTLP: one value written unpacked (a plain varint in field 4), with
 * and without attribute_indices that index the dictionary. Valid v1.10 samples are read as any
 * protobuf decoder reads them; a v1.9 sample whose field 2 holds values no attribute index can
 * be (50 ms in nanoseconds, with one varint link in field 4) is still taken as v1.9. */
static void unpacked_single_value_is_current_layout(void **state)
{
    (void)state;
    int64_t attrs[] = {1, 2};
    bb s[3], req;
    for (int i = 0; i < 3; i++) {
        s[i].n = 0;
        put_int(&s[i], 1, 1);
        if (i == 1)
            put_packed(&s[i], 2, attrs, 2);
        if (i == 2)
            put_int(&s[i], 2, 2);        /* one attribute index, unpacked too */
        put_int(&s[i], 4, 10000000 + i); /* one value: 10 ms of CPU */
    }
    request(&req, 1, NULL, s, 3);
    decoded d;
    decode(&d, &req);
    assert_int_equal(d.info.layout, OTLP_LAYOUT_CURRENT);
    for (int i = 0; i < 3; i++) {
        Sample *x = profile0(&d)->samples[i];
        assert_int_equal(x->n_values, 1);
        assert_int_equal(x->values[0], 10000000 + i);
        assert_int_equal(x->link_index, 0);
        assert_int_equal(x->n_attribute_indices, i == 0 ? 0 : i == 1 ? 2 : 1);
    }
    decoded_free(&d);

    /* the eBPF profiler's v1.9 CPU sample with a link: packed attributes in field 3, one link
     * varint in field 4, timestamps, no values: still v1.9 (field 3 cannot be v1.10's scalar
     * link_index as LEN) */
    uint64_t ts[] = {1700000000000000000ull};
    old_sample(&s[0], 1, attrs, 2, 1, NULL, 0, ts, 1);
    request(&req, 1, NULL, s, 1);
    decode(&d, &req);
    assert_int_equal(d.info.layout, OTLP_LAYOUT_V1_9);
    assert_int_equal(profile0(&d)->samples[0]->link_index, 1);
    assert_int_equal(profile0(&d)->samples[0]->n_attribute_indices, 2);
    decoded_free(&d);

    int64_t values[] = {50000000};
    old_sample(&s[0], 1, NULL, 0, 1, values, 1, NULL, 0); /* v1.9: values 2, link 4 */
    request(&req, 1, NULL, s, 1);
    decode(&d, &req);
    assert_int_equal(d.info.layout, OTLP_LAYOUT_V1_9);
    Sample *x = profile0(&d)->samples[0];
    assert_int_equal(x->n_values, 1);
    assert_int_equal(x->values[0], 50000000);
    assert_int_equal(x->link_index, 1);
    decoded_free(&d);
}

static void decodes_v19_layout_values_and_links(void **state)
{
    int64_t attrs[] = {1, 2}, values[] = {50000000, 7};
    uint64_t ts[] = {100, 200};
    bb s[3], req;
    old_sample(&s[0], 1, attrs, 2, 1, values, 2, ts, 2);
    old_sample(&s[1], 1, attrs + 1, 1, 0, NULL, 0, ts, 1);
    old_sample(&s[2], 0, NULL, 0, 1, values + 1, 1, NULL, 0);
    request(&req, 1, NULL, s, 3);
    decoded d;
    decode(&d, &req);
    assert_int_equal(d.info.layout, OTLP_LAYOUT_V1_9);
    assert_string_equal(otlp_layout_name(d.info.layout), "v1.9");
    assert_int_equal(d.info.rewritten, 1);
    assert_int_equal(d.info.old_votes, 3);
    assert_null(d.info.census); /* it counted the input, not the rewritten bytes */
    assert_int_equal(d.info.ncensus, 0);
    Profile *p = profile0(&d);
    assert_int_equal(p->n_samples, 3);
    assert_int_equal(p->period, 1000);
    assert_non_null(p->sample_type);
    assert_int_equal(p->sample_type->unit_strindex, 2);
    Sample *x = p->samples[0];
    assert_int_equal(x->stack_index, 1);
    assert_int_equal(x->n_values, 2);
    assert_int_equal(x->values[0], 50000000);
    assert_int_equal(x->values[1], 7);
    assert_int_equal(x->n_attribute_indices, 2);
    assert_int_equal(x->attribute_indices[0], 1);
    assert_int_equal(x->attribute_indices[1], 2);
    assert_int_equal(x->link_index, 1);
    assert_int_equal(x->n_timestamps_unix_nano, 2);
    assert_int_equal(x->timestamps_unix_nano[1], 200);
    x = p->samples[1];
    assert_int_equal(x->n_values, 0);
    assert_int_equal(x->n_attribute_indices, 1);
    assert_int_equal(x->attribute_indices[0], 2);
    assert_int_equal(x->link_index, 0);
    x = p->samples[2];
    assert_int_equal(x->n_values, 1);
    assert_int_equal(x->values[0], 7);
    assert_int_equal(x->link_index, 1);
    /* The dictionary went through untouched and the whole request validates. */
    otlp_verdict v;
    sp_err err;
    assert_int_equal(otlp_validate_profiles(d.req, d.arena, &v, &err), 0);
    assert_int_equal(v.bad, 0);
    decoded_free(&d);
}

static void decodes_v19_sample_with_values_only(void **state)
{
    /* Field 2 without 4 or 5 cannot be a valid v1.10 sample (it would have no values). */
    int64_t values[] = {3, 4, 5};
    bb s, req;
    old_sample(&s, 1, NULL, 0, 0, values, 3, NULL, 0);
    request(&req, 1, NULL, &s, 1);
    decoded d;
    decode(&d, &req);
    assert_int_equal(d.info.layout, OTLP_LAYOUT_V1_9);
    Sample *x = profile0(&d)->samples[0];
    assert_int_equal(x->n_values, 3);
    assert_int_equal(x->values[2], 5);
    assert_int_equal(x->n_attribute_indices, 0);
    decoded_free(&d);
}

static void v19_layout_keeps_negative_indices_as_10_byte_varints(void **state)
{
    int64_t attrs[] = {-2, 1}, values[] = {-1};
    bb s, req;
    old_sample(&s, -1, attrs, 2, -3, values, 1, NULL, 0);
    assert_true(s.n > 30); /* four 10-byte varints */
    request(&req, 1, NULL, &s, 1);
    decoded d;
    decode(&d, &req);
    assert_int_equal(d.info.layout, OTLP_LAYOUT_V1_9);
    Sample *x = profile0(&d)->samples[0];
    assert_int_equal(x->stack_index, -1);
    assert_int_equal(x->attribute_indices[0], -2);
    assert_int_equal(x->link_index, -3);
    assert_int_equal(x->values[0], -1);
    /* and validation refuses them */
    otlp_verdict v;
    sp_err err;
    assert_int_equal(otlp_validate_profiles(d.req, d.arena, &v, &err), 0);
    assert_int_equal(v.bad, 1);
    assert_non_null(strstr(v.first.msg, "negative"));
    decoded_free(&d);
}

static void v19_unpacked_repeated_fields_are_renumbered(void **state)
{
    bb s, req;
    s.n = 0;
    put_int(&s, 1, 1);
    put_int(&s, 2, 5); /* values, unpacked */
    put_int(&s, 2, 6);
    put_int(&s, 3, 1); /* attribute_indices, unpacked */
    put_int(&s, 3, 2);
    put_int(&s, 4, 1); /* link_index */
    request(&req, 1, NULL, &s, 1);
    decoded d;
    decode(&d, &req);
    assert_int_equal(d.info.layout, OTLP_LAYOUT_V1_9);
    Sample *x = profile0(&d)->samples[0];
    assert_int_equal(x->n_values, 2);
    assert_int_equal(x->values[0], 5);
    assert_int_equal(x->values[1], 6);
    assert_int_equal(x->n_attribute_indices, 2);
    assert_int_equal(x->attribute_indices[1], 2);
    assert_int_equal(x->link_index, 1);
    decoded_free(&d);
}

static void v18_profile_fields_are_renumbered(void **state)
{
    int64_t attrs[] = {1}, comments[] = {1, 2}, values[] = {1};
    uint8_t id[16];
    memset(id, 0xab, sizeof id);
    bb extra, s, req;
    extra.n = 0;
    put_packed(&extra, 7, comments, 2);    /* comment_strindices (gone in v1.9) */
    put_ld(&extra, 8, id, 16);             /* profile_id */
    put_int(&extra, 9, 3);                 /* dropped_attributes_count */
    put_ld(&extra, 10, "pprof", 5);        /* original_payload_format */
    put_ld(&extra, 11, "\xff\xff\xff", 3); /* original_payload: not valid packed varints */
    put_packed(&extra, 12, attrs, 1);      /* attribute_indices */
    old_sample(&s, 1, attrs, 1, 0, values, 1, NULL, 0);
    request(&req, 1, &extra, &s, 1);
    decoded d;
    decode(&d, &req);
    assert_int_equal(d.info.v18_profiles, 1);
    Profile *p = profile0(&d);
    assert_int_equal(p->profile_id.len, 16);
    assert_memory_equal(p->profile_id.data, id, 16);
    assert_int_equal(p->dropped_attributes_count, 3);
    assert_string_equal(p->original_payload_format, "pprof");
    assert_int_equal(p->original_payload.len, 3);
    assert_int_equal(p->n_attribute_indices, 1);
    assert_int_equal(p->attribute_indices[0], 1);
    assert_int_equal(p->samples[0]->values[0], 1);
    decoded_free(&d);
}

static void v18_profile_is_renumbered_even_when_samples_fit_both_layouts(void **state)
{
    uint64_t ts[] = {5};
    uint8_t id[16] = {1};
    bb extra, s, req;
    extra.n = 0;
    put_ld(&extra, 8, id, 16); /* v1.8 profile_id: LEN where v1.10 has a varint */
    new_sample(&s, 1, NULL, 0, 0, NULL, 0, ts, 1);
    request(&req, 1, &extra, &s, 1);
    decoded d;
    decode(&d, &req);
    assert_int_equal(d.info.layout, OTLP_LAYOUT_CURRENT);
    assert_int_equal(d.info.rewritten, 1);
    assert_int_equal(d.info.v18_profiles, 1);
    assert_int_equal(profile0(&d)->profile_id.len, 16);
    decoded_free(&d);
}

static void old_layout_drops_profile_fields_with_wrong_wire_type(void **state)
{
    int64_t attrs[] = {1}, values[] = {4};
    bb extra, s, req;
    extra.n = 0;
    put_ld(&extra, 11, "\xff\xff", 2); /* attribute_indices that are not varints */
    put_ld(&extra, 6, "x", 1);         /* period must be a varint */
    old_sample(&s, 1, attrs, 1, 0, values, 1, NULL, 0);
    request(&req, 1, &extra, &s, 1);
    /* Without the rewrite protobuf-c refuses the whole request. */
    assert_null(protobuf_c_message_unpack(REQ_DESC, NULL, req.n, req.b));
    decoded d;
    decode(&d, &req);
    assert_int_equal(d.info.layout, OTLP_LAYOUT_V1_9);
    assert_int_equal(d.info.dropped_fields, 2);
    Profile *p = profile0(&d);
    assert_int_equal(p->n_attribute_indices, 0);
    assert_int_equal(p->period, 1000); /* the well-typed period from the head survives */
    assert_int_equal(p->samples[0]->values[0], 4);
    decoded_free(&d);
}

static void majority_of_samples_decides_the_layout(void **state)
{
    int64_t attrs[] = {1}, values[] = {4};
    uint64_t ts[] = {9};
    bb s[3], req;
    new_sample(&s[0], 1, attrs, 1, 0, values, 1, ts, 1);
    new_sample(&s[1], 1, attrs, 1, 0, values, 1, ts, 1);
    old_sample(&s[2], 1, attrs, 1, 0, values, 1, NULL, 0);
    request(&req, 1, NULL, s, 3);
    otlp_layout_info info;
    sp_arena *a = sp_arena_new(0);
    const uint8_t *out;
    size_t n;
    sp_err err;
    assert_int_equal(otlp_layout_normalize(req.b, req.n, a, &out, &n, &info, &err), 0);
    assert_int_equal(info.layout, OTLP_LAYOUT_CURRENT);
    assert_int_equal(info.new_votes, 2);
    assert_int_equal(info.old_votes, 1);
    assert_int_equal(info.rewritten, 0);
    sp_arena_free(a);
}

static void samples_that_fit_both_layouts_are_left_alone(void **state)
{
    uint64_t ts[] = {1, 2, 3};
    bb s[2], req;
    new_sample(&s[0], 1, NULL, 0, 0, NULL, 0, ts, 3);
    new_sample(&s[1], 0, NULL, 0, 0, NULL, 0, ts, 1);
    request(&req, 2, NULL, s, 2);
    decoded d;
    decode(&d, &req);
    assert_int_equal(d.info.layout, OTLP_LAYOUT_CURRENT);
    assert_int_equal(d.info.rewritten, 0);
    assert_int_equal(d.info.samples, 4);
    assert_int_equal(d.info.old_votes + d.info.new_votes, 0);
    decoded_free(&d);
}

static void unknown_fields_survive_the_rewrite(void **state)
{
    int64_t attrs[] = {1}, values[] = {4};
    bb s, req, extra;
    old_sample(&s, 1, attrs, 1, 0, values, 1, NULL, 0);
    put_int(&s, 15, 77);     /* unknown Sample field */
    put_ld(&s, 99, "zz", 2); /* unknown, 2-byte tag */
    s.b[s.n++] = 0x35;       /* field 6, fixed32 */
    put_bytes(&s, "\x01\x02\x03\x04", 4);
    extra.n = 0;
    put_int(&extra, 200, 1); /* unknown Profile field */
    request(&req, 1, &extra, &s, 1);
    decoded d;
    decode(&d, &req);
    assert_int_equal(d.info.layout, OTLP_LAYOUT_V1_9);
    Sample *x = profile0(&d)->samples[0];
    assert_int_equal(x->values[0], 4);
    assert_int_equal(x->attribute_indices[0], 1);
    assert_int_equal(x->base.n_unknown_fields, 3);
    decoded_free(&d);
}

/* Appends a varint field whose continuation never comes (a truncated Sample). */
static void truncate_with_a_varint(bb *s)
{
    s->b[s->n++] = 0x08; /* field 1 varint ... */
    s->b[s->n++] = 0x80; /* ... whose continuation never comes */
}

/* req is refused as truncated, naming the path to the broken message. */
static void refused_as_truncated_at(const bb *req, const char *path)
{
    sp_arena *a = sp_arena_new(0);
    const uint8_t *out;
    size_t n;
    sp_err err = {0};
    assert_int_equal(otlp_layout_normalize(req->b, req->n, a, &out, &n, NULL, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "truncated"));
    sp_arena_free(a);
}

static void rejects_truncated_sample_naming_its_path(void **state)
{
    int64_t attrs[] = {1}, values[] = {4};
    bb s, req;
    old_sample(&s, 1, attrs, 1, 0, values, 1, NULL, 0);
    truncate_with_a_varint(&s);
    request(&req, 2, NULL, &s, 1);
    refused_as_truncated_at(&req, "resource_profiles[0].scope_profiles[0].profiles[0].samples[0]");
}

/* Samples with a one-byte length are walked by a shortcut, longer ones by the generic walk: the
 * census and votes count both, and a broken Sample after them is still named by its place. */
static void samples_short_and_long_are_counted_and_a_broken_one_named(void **state)
{
    int64_t attrs[] = {1};
    uint64_t ts[20];
    for (int i = 0; i < 20; i++)
        ts[i] = 1700000000000000000ull + (uint64_t)i;
    bb s[3], req;
    new_sample(&s[0], 1, attrs, 1, 0, NULL, 0, ts, 1);
    new_sample(&s[1], 1, attrs, 1, 0, NULL, 0, ts, 20);
    assert_true(s[1].n >= 128); /* a two-byte length */
    new_sample(&s[2], 1, attrs, 1, 0, NULL, 0, ts, 2);
    request(&req, 1, NULL, s, 3);
    decoded d;
    decode(&d, &req);
    assert_int_equal(d.info.samples, 3);
    assert_int_equal(d.info.new_votes, 0); /* timestamps only: fits both numberings */
    assert_int_equal(d.info.census[0].samples, 3);
    assert_int_equal(d.info.census[0].times, 23);
    assert_int_equal(profile0(&d)->n_samples, 3);
    assert_int_equal(profile0(&d)->samples[1]->n_timestamps_unix_nano, 20);
    decoded_free(&d);

    truncate_with_a_varint(&s[2]);
    request(&req, 1, NULL, s, 3);
    refused_as_truncated_at(&req, "resource_profiles[0].scope_profiles[0].profiles[0].samples[2]");
}

static void rejects_length_past_the_end_of_input(void **state)
{
    bb req;
    req.n = 0;
    put_tag(&req, 1, 2);
    put_varint(&req, 1000);
    put_bytes(&req, "abc", 3);
    sp_arena *a = sp_arena_new(0);
    const uint8_t *out;
    size_t n;
    sp_err err = {0};
    assert_int_equal(otlp_layout_normalize(req.b, req.n, a, &out, &n, NULL, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "length 1000 exceeds the 3 bytes left"));
    /* An 11-byte varint and a group wire type are refused as well. */
    req.n = 0;
    put_tag(&req, 3, 0);
    for (int i = 0; i < 10; i++)
        req.b[req.n++] = 0xff;
    req.b[req.n++] = 0x01;
    assert_int_equal(otlp_layout_normalize(req.b, req.n, a, &out, &n, NULL, &err), SP_EINVAL);
    req.n = 0;
    put_tag(&req, 3, 3);
    assert_int_equal(otlp_layout_normalize(req.b, req.n, a, &out, &n, NULL, &err), SP_EINVAL);
    sp_arena_free(a);
}

static void empty_request_is_current_layout(void **state)
{
    sp_arena *a = sp_arena_new(0);
    const uint8_t *out;
    size_t n;
    otlp_layout_info info;
    sp_err err;
    assert_int_equal(otlp_layout_normalize((const uint8_t *)"", 0, a, &out, &n, &info, &err), 0);
    assert_int_equal(n, 0);
    assert_int_equal(info.layout, OTLP_LAYOUT_CURRENT);
    sp_arena_free(a);
}

static void rewrite_that_does_not_fit_the_arena_budget_is_too_big(void **state)
{
    int64_t values[] = {4};
    bb s, req;
    old_sample(&s, 1, NULL, 0, 0, values, 1, NULL, 0);
    request(&req, 1, NULL, &s, 1);
    sp_arena *a = sp_arena_new(16);
    const uint8_t *out;
    size_t n;
    sp_err err = {0};
    assert_int_equal(otlp_layout_normalize(req.b, req.n, a, &out, &n, NULL, &err), SP_ETOOBIG);
    sp_arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(current_layout_passes_through_without_copy),
        cmocka_unit_test(decodes_v19_layout_values_and_links),
        cmocka_unit_test(decodes_v19_sample_with_values_only),
        cmocka_unit_test(v19_layout_keeps_negative_indices_as_10_byte_varints),
        cmocka_unit_test(v19_unpacked_repeated_fields_are_renumbered),
        cmocka_unit_test(v18_profile_fields_are_renumbered),
        cmocka_unit_test(v18_profile_is_renumbered_even_when_samples_fit_both_layouts),
        cmocka_unit_test(old_layout_drops_profile_fields_with_wrong_wire_type),
        cmocka_unit_test(majority_of_samples_decides_the_layout),
        cmocka_unit_test(samples_that_fit_both_layouts_are_left_alone),
        cmocka_unit_test(unknown_fields_survive_the_rewrite),
        cmocka_unit_test(rejects_truncated_sample_naming_its_path),
        cmocka_unit_test(samples_short_and_long_are_counted_and_a_broken_one_named),
        cmocka_unit_test(rejects_length_past_the_end_of_input),
        cmocka_unit_test(empty_request_is_current_layout),
        cmocka_unit_test(rewrite_that_does_not_fit_the_arena_budget_is_too_big),
        cmocka_unit_test(unpacked_single_value_is_current_layout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
