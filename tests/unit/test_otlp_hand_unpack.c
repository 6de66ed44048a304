/* otlp/hand_unpack.h: a ResourceProfiles whose Samples are decoded by hand must be the message
 * protobuf-c unpacks from the same bytes. The oracle is protobuf-c itself: both messages are
 * packed again with protobuf_c_message_pack() and the bytes compared, and a few values written
 * by hand below are checked field by field. Shapes the decoder leaves to protobuf-c (S1) must
 * come back NULL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "otlp/decode.h"
#include "otlp/hand_unpack.h"
#include "otlp/layout.h"
#include "wire/pb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef Opentelemetry__Proto__Profiles__V1development__ResourceProfiles ResourceProfiles;
typedef Opentelemetry__Proto__Profiles__V1development__ScopeProfiles ScopeProfiles;
typedef Opentelemetry__Proto__Profiles__V1development__Profile Profile;
typedef Opentelemetry__Proto__Profiles__V1development__Sample Sample;
typedef Opentelemetry__Proto__Profiles__V1development__ValueType ValueType;
typedef Opentelemetry__Proto__Common__V1__KeyValue KeyValue;
typedef Opentelemetry__Proto__Common__V1__AnyValue AnyValue;

static void *arena_alloc(void *data, size_t size)
{
    return sp_arena_alloc(data, size);
}

static void arena_free(void *data, void *p)
{
    (void)data;
    (void)p;
}

/* Packs m into a malloc'd buffer. */
static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(*len ? *len : 1);
    assert_non_null(b);
    assert_int_equal(protobuf_c_message_pack(m, b), *len);
    return b;
}

/* Profiles and Samples a walk of the bytes finds (what decode.c's L1 walk hands the decoder). */
static void count(const uint8_t *p, size_t n, size_t *profiles, size_t *samples)
{
    *profiles = *samples = 0;
    const uint8_t *end = p + n;
    wire_pb_field r, s, q;
    while (p < end) {
        assert_int_equal(wire_pb_next(&p, end, p, &r, NULL), 0);
        for (const uint8_t *sp = r.val; r.num == 2 && sp < r.val + r.vlen;) {
            assert_int_equal(wire_pb_next(&sp, r.val + r.vlen, sp, &s, NULL), 0);
            for (const uint8_t *pp = s.val; s.num == 2 && pp < s.val + s.vlen;) {
                assert_int_equal(wire_pb_next(&pp, s.val + s.vlen, pp, &q, NULL), 0);
                *samples += q.num == 2;
            }
            *profiles += s.num == 2;
        }
    }
}

/* Decodes bytes both ways; returns the hand decoder's message (NULL when it declined) after
 * checking that it packs to exactly what protobuf-c's unpack of the same bytes packs to. */
/* When the hand decoder answered (hand not NULL), protobuf-c's unpack of the same bytes as
 * message desc must pack to exactly what the hand decoder's message packs to. */
static void same_as_protobuf_c(const ProtobufCMessage *hand, const ProtobufCMessageDescriptor *desc,
                               sp_arena *a, const uint8_t *b, size_t n)
{
    if (!hand)
        return;
    ProtobufCAllocator alloc = {arena_alloc, arena_free, a};
    const ProtobufCMessage *ref = protobuf_c_message_unpack(desc, &alloc, n, b);
    assert_non_null(ref);
    size_t lf, lr;
    uint8_t *pf = pack(hand, &lf), *pr = pack(ref, &lr);
    assert_int_equal(lf, lr);
    assert_memory_equal(pf, pr, lr);
    free(pf);
    free(pr);
}

static ResourceProfiles *both_ways(sp_arena *a, const uint8_t *b, size_t n)
{
    ProtobufCAllocator alloc = {arena_alloc, arena_free, a};
    size_t np, ns;
    count(b, n, &np, &ns);
    ResourceProfiles *fast = otlp_hand_unpack_resource(b, n, np, ns, NULL, &alloc, a);
    same_as_protobuf_c(
        fast ? &fast->base : NULL,
        &opentelemetry__proto__profiles__v1development__resource_profiles__descriptor, a, b, n);
    return fast;
}

/* An eBPF-shaped resource: attributes, two scopes, three profiles of many samples with one to
 * four timestamps each, thread attributes, sometimes values and a link. */
static uint8_t *ebpf_resource(size_t nsamples, size_t *len)
{
    AnyValue av = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
    av.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
    av.string_value = "4242";
    KeyValue kv = OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE__INIT, *kvp = &kv;
    kv.key = "process.pid";
    kv.value = &av;
    Opentelemetry__Proto__Resource__V1__Resource res =
        OPENTELEMETRY__PROTO__RESOURCE__V1__RESOURCE__INIT;
    res.attributes = &kvp;
    res.n_attributes = 1;
    ResourceProfiles rp = OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__RESOURCE_PROFILES__INIT;
    rp.resource = &res;
    rp.schema_url = "https://opentelemetry.io/schemas/1.30.0";
    ScopeProfiles sc[2], *scp[2];
    Profile pr[3], *prp[3];
    ValueType vt = OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__VALUE_TYPE__INIT;
    vt.type_strindex = 1;
    vt.unit_strindex = 2;
    Sample *s = calloc(nsamples, sizeof *s);
    Sample **sp = calloc(nsamples, sizeof *sp);
    int64_t *vals = calloc(nsamples * 4, sizeof *vals);
    uint64_t *ts = calloc(nsamples * 4, sizeof *ts);
    int32_t *attrs = calloc(nsamples * 3, sizeof *attrs);
    assert_true(s && sp && vals && ts && attrs);
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < nsamples; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        s[i] = (Sample)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__SAMPLE__INIT;
        sp[i] = &s[i];
        s[i].stack_index = (int32_t)(x % 5000);
        s[i].n_timestamps_unix_nano = 1 + x % 4;
        s[i].timestamps_unix_nano = ts + 4 * i;
        for (size_t k = 0; k < s[i].n_timestamps_unix_nano; k++)
            ts[4 * i + k] = 1764900000000000000ull + i * 1000003 + k * 10000000;
        if (x % 3 == 0) { /* off-CPU: a value per timestamp, some of them huge or negative */
            s[i].n_values = s[i].n_timestamps_unix_nano;
            s[i].values = vals + 4 * i;
            for (size_t k = 0; k < s[i].n_values; k++)
                vals[4 * i + k] = k == 2 ? -(int64_t)(x >> 8) : (int64_t)(x >> (k * 9));
        }
        s[i].n_attribute_indices = 1 + (x >> 20) % 3;
        s[i].attribute_indices = attrs + 3 * i;
        for (size_t k = 0; k < s[i].n_attribute_indices; k++)
            attrs[3 * i + k] = (int32_t)((x >> (24 + 4 * k)) % 300000);
        s[i].link_index = x % 7 == 0 ? (int32_t)(x >> 40) % 90 : 0;
    }
    size_t at = 0;
    for (int k = 0; k < 3; k++) {
        pr[k] = (Profile)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__PROFILE__INIT;
        prp[k] = &pr[k];
        pr[k].sample_type = &vt;
        pr[k].period_type = &vt;
        pr[k].period = 50000000;
        pr[k].time_unix_nano = 1764900000000000000ull;
        pr[k].duration_nano = 5000000000ull;
        size_t n = k == 2 ? nsamples - at : nsamples / 3;
        pr[k].samples = sp + at;
        pr[k].n_samples = n;
        at += n;
    }
    for (int k = 0; k < 2; k++) {
        sc[k] = (ScopeProfiles)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__SCOPE_PROFILES__INIT;
        scp[k] = &sc[k];
    }
    sc[0].profiles = prp; /* scope 0: profiles 0 and 1; scope 1: profile 2 */
    sc[0].n_profiles = 2;
    sc[1].profiles = prp + 2;
    sc[1].n_profiles = 1;
    rp.scope_profiles = scp;
    rp.n_scope_profiles = 2;
    uint8_t *b = pack(&rp.base, len);
    free(s);
    free(sp);
    free(vals);
    free(ts);
    free(attrs);
    return b;
}

static void decodes_an_ebpf_shaped_resource_as_protobuf_c_does(void **state)
{
    (void)state;
    sp_arena *a = sp_arena_new(64 << 20);
    size_t n;
    uint8_t *b = ebpf_resource(6000, &n);
    ResourceProfiles *rp = both_ways(a, b, n);
    assert_non_null(rp); /* this shape is the decoder's: protobuf-c is not what answered */
    assert_int_equal(rp->n_scope_profiles, 2);
    assert_int_equal(rp->scope_profiles[1]->profiles[0]->n_samples, 6000 - 2 * 2000);
    assert_string_equal(rp->resource->attributes[0]->key, "process.pid");
    free(b);
    sp_arena_free(a);
}

/* Appends a LEN field. */
static size_t put_len(uint8_t *o, uint8_t tag, const uint8_t *v, size_t n)
{
    size_t k = 0;
    o[k++] = tag;
    k += wire_pb_put_varint(o + k, n);
    memcpy(o + k, v, n);
    return k + n;
}

/* ResourceProfiles{scope_profiles{profiles{fields}}} around one Profile's bytes. */
static size_t wrap(uint8_t *o, const uint8_t *profile, size_t n)
{
    uint8_t scope[4096], res[4096];
    size_t s = put_len(scope, 0x12, profile, n);
    size_t r = put_len(res, 0x12, scope, s);
    memcpy(o, res, r);
    return r;
}

static void takes_every_encoding_protobuf_c_takes(void **state)
{
    (void)state;
    sp_arena *a = sp_arena_new(1 << 20);
    /* Sample 1: stack_index twice (the last wins), attributes unpacked then packed (they
     * append), a negative int32 as a 10-byte varint, values unpacked, one timestamp unpacked
     * and two packed, a link. */
    static const uint8_t s1[] = {
        0x08, 0x05, 0x08, 0x07, /* stack_index 5, then 7 */
        0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, /* attribute -1 */
        0x12, 0x02, 0x05, 0x06,                                           /* attributes 5, 6 */
        0x18, 0x03,                                                       /* link_index 3 */
        0x20, 0x80, 0x01,                                                 /* value 128 */
        0x29, 1,    0,    0,    0,    0,    0,    0,    0,                /* timestamp 1 */
        0x2a, 0x10, 2,    0,    0,    0,    0,    0,    0,    0,    3,
        0,    0,    0,    0,    0,    0,    0, /* timestamps 2, 3 */
        0x22, 0x01, 0x09,                      /* value 9 */
    };
    uint8_t prof[512];
    size_t n = 0;
    prof[n++] = 0x19; /* time_unix_nano (fixed64) before the samples */
    memset(prof + n, 0x11, 8);
    n += 8;
    n += put_len(prof + n, 0x12, s1, sizeof s1);
    prof[n++] = 0x30; /* period between them */
    prof[n++] = 0x64;
    n += put_len(prof + n, 0x12, s1, 0); /* an empty Sample */
    n += put_len(prof + n, 0x12, (const uint8_t[]){0x08, 0x02}, 2);
    prof[n++] = 0x5a; /* attribute_indices after them */
    prof[n++] = 0x01;
    prof[n++] = 0x04;
    uint8_t buf[1024];
    size_t len = wrap(buf, prof, n);
    ResourceProfiles *rp = both_ways(a, buf, len);
    assert_non_null(rp);
    const Profile *p = rp->scope_profiles[0]->profiles[0];
    assert_int_equal(p->period, 100);
    assert_int_equal(p->n_attribute_indices, 1);
    assert_int_equal(p->n_samples, 3);
    const Sample *s = p->samples[0];
    assert_int_equal(s->stack_index, 7);
    assert_int_equal(s->link_index, 3);
    assert_int_equal(s->n_attribute_indices, 3);
    assert_int_equal(s->attribute_indices[0], -1);
    assert_int_equal(s->attribute_indices[2], 6);
    assert_int_equal(s->n_values, 2);
    assert_int_equal(s->values[0], 128);
    assert_int_equal(s->values[1], 9);
    assert_int_equal(s->n_timestamps_unix_nano, 3);
    assert_int_equal(s->timestamps_unix_nano[2], 3);
    assert_int_equal(p->samples[1]->n_values, 0);
    assert_null(p->samples[1]->values);
    assert_int_equal(p->samples[2]->stack_index, 2);
    sp_arena_free(a);
}

/* Each Sample here is one protobuf-c decides: the decoder must answer NULL. */
static void leaves_other_shapes_to_protobuf_c(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        uint8_t bytes[16];
        size_t n;
        int protobuf_c_takes_it;
    } cases[] = {
        {"unknown field 6", {0x08, 0x01, 0x30, 0x01}, 4, 1},
        {"overlong tag of stack_index", {0x88, 0x00, 0x01}, 3, 1},
        {"stack_index as LEN", {0x0a, 0x01, 0x01}, 3, 0},
        {"packed fixed64 of 7 bytes", {0x2a, 0x07, 1, 2, 3, 4, 5, 6, 7}, 9, 0},
        {"packed varint cut in the middle", {0x22, 0x02, 0x01, 0x80}, 4, 0},
        {"11-byte varint",
         {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
         12,
         0},
        {"timestamp cut short", {0x29, 1, 2, 3}, 4, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        sp_arena *a = sp_arena_new(1 << 20);
        uint8_t prof[64], buf[128];
        size_t n = put_len(prof, 0x12, cases[i].bytes, cases[i].n);
        size_t len = wrap(buf, prof, n);
        ProtobufCAllocator alloc = {arena_alloc, arena_free, a};
        if (otlp_hand_unpack_resource(buf, len, 1, 1, NULL, &alloc, a) != NULL)
            fail_msg("%s: decoded by hand", cases[i].what);
        ResourceProfiles *ref =
            opentelemetry__proto__profiles__v1development__resource_profiles__unpack(&alloc, len,
                                                                                     buf);
        if ((ref != NULL) != cases[i].protobuf_c_takes_it)
            fail_msg("%s: protobuf-c %s it", cases[i].what, ref ? "takes" : "refuses");
        sp_arena_free(a);
    }
}

static void other_counts_than_the_walk_found_are_declined(void **state)
{
    (void)state;
    sp_arena *a = sp_arena_new(64 << 20);
    ProtobufCAllocator alloc = {arena_alloc, arena_free, a};
    size_t n, np, ns;
    uint8_t *b = ebpf_resource(300, &n);
    count(b, n, &np, &ns);
    assert_int_equal(np, 3);
    assert_int_equal(ns, 300);
    assert_null(otlp_hand_unpack_resource(b, n, np, ns - 1, NULL, &alloc, a));
    assert_null(otlp_hand_unpack_resource(b, n, np, ns + 1, NULL, &alloc, a));
    assert_null(otlp_hand_unpack_resource(b, n, np + 1, ns, NULL, &alloc, a));
    assert_non_null(otlp_hand_unpack_resource(b, n, np, ns, NULL, &alloc, a));
    free(b);
    sp_arena_free(a);
}

/* The decode pipeline sends a one-resource request (not streamed) through the decoder too (L7 in
 * otlp/decode.c): its Samples are the decoder's one block of structs, where protobuf-c would
 * have allocated each on its own. */
static void a_request_of_one_resource_is_decoded_by_hand(void **state)
{
    (void)state;
    size_t rn;
    uint8_t *res = ebpf_resource(900, &rn);
    /* ExportProfilesServiceRequest{resource_profiles = res, dictionary = {string_table: "",
     * "cpu", "nanoseconds"}} */
    static const uint8_t dict[] = {0x2a, 0x00, 0x2a, 0x03, 'c', 'p', 'u', 0x2a, 0x0b, 'n',
                                   'a',  'n',  'o',  's',  'e', 'c', 'o', 'n',  'd',  's'};
    uint8_t *req = malloc(rn + 64);
    size_t n = put_len(req, 0x0a, res, rn);
    n += put_len(req + n, 0x12, dict, sizeof dict);
    sp_arena *a = sp_arena_new(otlp_decode_budget(n));
    otlp_decoded out;
    otlp_profiles_lazy *lazy;
    sp_err err = {0};
    assert_int_equal(otlp_decode_profiles(req, n, 0, 8192, 0, a, &out, &lazy, &err), 0);
    assert_null(lazy);
    const otlp_profiles_req *r = (const otlp_profiles_req *)out.msg;
    assert_int_equal(r->n_resource_profiles, 1);
    const Profile *p = r->resource_profiles[0]->scope_profiles[0]->profiles[0];
    assert_int_equal(p->n_samples, 300);
    for (size_t i = 1; i < p->n_samples; i++)
        assert_ptr_equal(p->samples[i], p->samples[0] + i);
    free(req);
    free(res);
    sp_arena_free(a);
}

/* ---- the layout pass's census (L8 in otlp/decode.c) ----------------------------------------- */

/* A request of the resources given (and an empty dictionary): its length. */
static size_t request_of(uint8_t *o, uint8_t *const *res, const size_t *len, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += put_len(o + k, 0x0a, res[i], len[i]);
    static const uint8_t none[1];
    return k + put_len(o + k, 0x12, none, 0);
}

/* The layout pass over req[0..n) in a fresh arena (*a, the caller's to free), asserted to pass. */
static otlp_layout_info layout_of(const uint8_t *req, size_t n, sp_arena **a)
{
    *a = sp_arena_new(otlp_decode_budget(n));
    otlp_layout_info info;
    const uint8_t *out;
    size_t outlen;
    sp_err err = {0};
    assert_int_equal(otlp_layout_normalize(req, n, *a, &out, &outlen, &info, &err), 0);
    return info;
}

/* What protobuf-c unpacks from a resource's bytes, summed as a census counts it. */
static otlp_resource_census census_by_protobuf_c(const uint8_t *b, size_t n)
{
    ResourceProfiles *rp =
        opentelemetry__proto__profiles__v1development__resource_profiles__unpack(NULL, n, b);
    assert_non_null(rp);
    otlp_resource_census c = {.ok = 1};
    for (size_t i = 0; i < rp->n_scope_profiles; i++)
        for (size_t j = 0; j < rp->scope_profiles[i]->n_profiles; j++) {
            const Profile *pr = rp->scope_profiles[i]->profiles[j];
            c.profiles++;
            c.samples += pr->n_samples;
            for (size_t k = 0; k < pr->n_samples; k++) {
                c.values += pr->samples[k]->n_values;
                c.attrs += pr->samples[k]->n_attribute_indices;
                c.times += pr->samples[k]->n_timestamps_unix_nano;
            }
        }
    opentelemetry__proto__profiles__v1development__resource_profiles__free_unpacked(rp, NULL);
    return c;
}

/* Ten resources (the census outgrows its first eight entries): each counted as protobuf-c
 * unpacks it. */
static void the_layout_census_counts_what_protobuf_c_unpacks(void **state)
{
    (void)state;
    uint8_t *res[10];
    size_t len[10], total = 64;
    for (size_t i = 0; i < 10; i++) {
        res[i] = ebpf_resource(i % 2 ? 301 : 900, &len[i]);
        total += len[i] + 8;
    }
    uint8_t *req = malloc(total);
    size_t n = request_of(req, res, len, 10);
    sp_arena *a;
    otlp_layout_info info = layout_of(req, n, &a);
    assert_int_equal(info.rewritten, 0);
    assert_non_null(info.census);
    assert_int_equal(info.ncensus, 10);
    for (size_t i = 0; i < 10; i++) {
        otlp_resource_census want = census_by_protobuf_c(res[i], len[i]);
        const otlp_resource_census *got = &info.census[i];
        assert_int_equal(got->ok, 1);
        assert_int_equal(got->profiles, want.profiles);
        assert_int_equal(got->samples, want.samples);
        assert_int_equal(got->values, want.values);
        assert_int_equal(got->attrs, want.attrs);
        assert_int_equal(got->times, want.times);
        free(res[i]);
    }
    free(req);
    sp_arena_free(a);
}

/* A resource with a Sample the decoder leaves to protobuf-c (an unknown field), or a Profile
 * whose samples field has a length prefix protobuf-c refuses (six bytes), is not ok in the
 * census; the resource beside them is. */
static void the_census_says_which_resources_the_decoder_must_walk(void **state)
{
    (void)state;
    static const uint8_t unknown_field[] = {0x12, 0x04, 0x08, 0x01, 0x48, 0x01}; /* 9: varint */
    static const uint8_t long_prefix[] = {0x12, 0x82, 0x80, 0x80, 0x80, 0x80, 0x00, 0x08, 0x01};
    uint8_t r1[64], r2[64];
    size_t n0, len[3] = {0, wrap(r1, unknown_field, sizeof unknown_field),
                         wrap(r2, long_prefix, sizeof long_prefix)};
    uint8_t *res[3] = {ebpf_resource(90, &n0), r1, r2};
    len[0] = n0;
    uint8_t *req = malloc(n0 + 256);
    size_t n = request_of(req, res, len, 3);
    sp_arena *a;
    otlp_layout_info info = layout_of(req, n, &a);
    assert_int_equal(info.ncensus, 3);
    assert_int_equal(info.census[0].ok, 1);
    assert_int_equal(info.census[1].ok, 0);
    assert_int_equal(info.census[2].ok, 0);
    free(res[0]);
    free(req);
    sp_arena_free(a);
}

/* Through the decode pipeline with layout detection: resources the census vouches for (and one it
 * does not) come back as protobuf-c unpacks the whole request. */
static void a_request_decoded_with_its_census_is_protobuf_c_s(void **state)
{
    (void)state;
    static const uint8_t unknown_field[] = {0x12, 0x04, 0x08, 0x01, 0x48, 0x01};
    uint8_t r2[64];
    size_t len[3];
    uint8_t *res[3] = {ebpf_resource(900, &len[0]), ebpf_resource(301, &len[1]), r2};
    len[2] = wrap(r2, unknown_field, sizeof unknown_field);
    uint8_t *req = malloc(len[0] + len[1] + 256);
    size_t n = request_of(req, res, len, 3);
    sp_arena *a = sp_arena_new(otlp_decode_budget(n));
    otlp_decoded out;
    otlp_profiles_lazy *lazy;
    sp_err err = {0};
    assert_int_equal(otlp_decode_profiles(req, n, 1, SIZE_MAX, 0, a, &out, &lazy, &err), 0);
    assert_null(lazy);
    assert_int_equal(out.layout.ncensus, 3);
    assert_true(out.layout.census[0].ok && out.layout.census[1].ok && !out.layout.census[2].ok);
    same_as_protobuf_c(
        out.msg,
        &opentelemetry__proto__collector__profiles__v1development__export_profiles_service_request__descriptor,
        a, req, n);
    free(res[0]);
    free(res[1]);
    free(req);
    sp_arena_free(a);
}

typedef Opentelemetry__Proto__Profiles__V1development__ProfilesDictionary Dict;
typedef Opentelemetry__Proto__Profiles__V1development__Location Location;
typedef Opentelemetry__Proto__Profiles__V1development__Line Line;
typedef Opentelemetry__Proto__Profiles__V1development__Function Function;
typedef Opentelemetry__Proto__Profiles__V1development__Mapping Mapping;
typedef Opentelemetry__Proto__Profiles__V1development__Stack Stack;
typedef Opentelemetry__Proto__Profiles__V1development__Link Link;
typedef Opentelemetry__Proto__Profiles__V1development__KeyValueAndUnit KeyValueAndUnit;

/* The dictionary both ways, as both_ways() does for a resource. */
static Dict *dict_both_ways(sp_arena *a, const uint8_t *b, size_t n)
{
    ProtobufCAllocator alloc = {arena_alloc, arena_free, a};
    Dict *fast = otlp_hand_unpack_dictionary(b, n, &alloc, a);
    same_as_protobuf_c(
        fast ? &fast->base : NULL,
        &opentelemetry__proto__profiles__v1development__profiles_dictionary__descriptor, a, b, n);
    return fast;
}

/* An eBPF-shaped dictionary: mappings, native and interpreted locations (zero to three lines),
 * functions, strings (the empty one first), stacks (one empty), a link and a thread attribute. */
static uint8_t *ebpf_dictionary(size_t nloc, size_t *len)
{
    Dict d = OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__PROFILES_DICTIONARY__INIT;
    Mapping m[2], *mp[2];
    for (int i = 0; i < 2; i++) {
        m[i] = (Mapping)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__MAPPING__INIT;
        mp[i] = &m[i];
        m[i].memory_start = 0x400000u * (uint64_t)(i + 1);
        m[i].memory_limit = m[i].memory_start + 0x100000;
        m[i].filename_strindex = 1 + i;
    }
    d.mapping_table = mp;
    d.n_mapping_table = 2;
    size_t nfn = nloc / 2 + 1, nstr = nfn + 3, nstack = nloc / 3 + 2;
    Location *l = calloc(nloc, sizeof *l), **lp = calloc(nloc, sizeof *lp);
    Line *ln = calloc(nloc * 3, sizeof *ln), **lnp = calloc(nloc * 3, sizeof *lnp);
    int32_t *lattr = calloc(nloc, sizeof *lattr);
    Function *f = calloc(nfn, sizeof *f), **fp = calloc(nfn, sizeof *fp);
    char **str = calloc(nstr, sizeof *str);
    Stack *st = calloc(nstack, sizeof *st), **stp = calloc(nstack, sizeof *stp);
    int32_t *idx = calloc(nstack * 40, sizeof *idx);
    assert_true(l && lp && ln && lnp && lattr && f && fp && str && st && stp && idx);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < nloc; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        l[i] = (Location)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__LOCATION__INIT;
        lp[i] = &l[i];
        l[i].mapping_index = (int32_t)(x % 3);
        l[i].address = x >> 12;
        l[i].n_lines = x % 4;
        l[i].lines = lnp + 3 * i;
        for (size_t k = 0; k < l[i].n_lines; k++) {
            Line *one = &ln[3 * i + k];
            *one = (Line)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__LINE__INIT;
            one->function_index = (int32_t)((x >> (8 * k)) % nfn);
            one->line = k == 1 ? -1 : (int64_t)(x >> 50);
            one->column = (int64_t)k;
            lnp[3 * i + k] = one;
        }
        if (x % 5 == 0) {
            lattr[i] = (int32_t)(x % 3);
            l[i].attribute_indices = &lattr[i];
            l[i].n_attribute_indices = 1;
        }
    }
    d.location_table = lp;
    d.n_location_table = nloc;
    for (size_t i = 0; i < nfn; i++) {
        f[i] = (Function)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__FUNCTION__INIT;
        fp[i] = &f[i];
        f[i].name_strindex = (int32_t)(3 + i);
        f[i].system_name_strindex = i % 2 ? (int32_t)(3 + i) : 0;
        f[i].filename_strindex = (int32_t)(i % 3);
        f[i].start_line = (int64_t)i - 5;
    }
    d.function_table = fp;
    d.n_function_table = nfn;
    str[0] = "";
    str[1] = "/usr/lib/x86_64-linux-gnu/libc.so.6";
    str[2] = "thread.id";
    for (size_t i = 3; i < nstr; i++) {
        str[i] = malloc(64);
        snprintf(str[i], 64, "github.com/example/pkg.(*T).handle%zu", i);
    }
    d.string_table = str;
    d.n_string_table = nstr;
    for (size_t i = 0; i < nstack; i++) {
        st[i] = (Stack)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__STACK__INIT;
        stp[i] = &st[i];
        st[i].n_location_indices = i == 0 ? 0 : 1 + i % 40;
        st[i].location_indices = i == 0 ? NULL : idx + 40 * i;
        for (size_t k = 0; k < st[i].n_location_indices; k++)
            idx[40 * i + k] = (int32_t)((i * 7 + k * 13) % nloc);
    }
    d.stack_table = stp;
    d.n_stack_table = nstack;
    Link lk = OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__LINK__INIT, *lkp[2] = {&lk, &lk};
    uint8_t tid[16] = {1, 2, 3}, sid[8] = {4, 5, 6};
    lk.trace_id = (ProtobufCBinaryData){16, tid};
    lk.span_id = (ProtobufCBinaryData){8, sid};
    d.link_table = lkp;
    d.n_link_table = 2;
    AnyValue av = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
    av.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
    av.int_value = 4243;
    KeyValueAndUnit kv = OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__KEY_VALUE_AND_UNIT__INIT;
    KeyValueAndUnit *kvp[2] = {&kv, &kv};
    kv.key_strindex = 2;
    kv.value = &av;
    d.attribute_table = kvp;
    d.n_attribute_table = 2;
    uint8_t *b = pack(&d.base, len);
    for (size_t i = 3; i < nstr; i++)
        free(str[i]);
    free(l), free(lp), free(ln), free(lnp), free(lattr), free(f), free(fp), free(str);
    free(st), free(stp), free(idx);
    return b;
}

static void decodes_an_ebpf_shaped_dictionary_as_protobuf_c_does(void **state)
{
    (void)state;
    sp_arena *a = sp_arena_new(64 << 20);
    size_t n;
    uint8_t *b = ebpf_dictionary(5000, &n);
    Dict *d = dict_both_ways(a, b, n);
    assert_non_null(d); /* the decoder's shape: protobuf-c is not what answered */
    assert_int_equal(d->n_location_table, 5000);
    assert_int_equal(d->n_mapping_table, 2);
    assert_string_equal(d->string_table[1], "/usr/lib/x86_64-linux-gnu/libc.so.6");
    assert_null(d->stack_table[0]->location_indices);
    assert_int_equal(d->attribute_table[1]->value->int_value, 4243);
    free(b);
    sp_arena_free(a);
}

static void takes_every_dictionary_encoding_protobuf_c_takes(void **state)
{
    (void)state;
    sp_arena *a = sp_arena_new(1 << 20);
    /* Tables interleaved with a mapping; a Location with a repeated mapping_index (the last
     * wins), attributes unpacked then packed, a Line out of field order; a Stack with indices
     * unpacked, packed and unpacked again; a Function with a negative start_line; a string with
     * a NUL inside. */
    static const uint8_t loc[] = {0x08, 0x01, 0x08, 0x02, 0x10, 0xab, 0x02, 0x20, 0x05, 0x22,
                                  0x02, 0x06, 0x07, 0x1a, 0x04, 0x10, 0x09, 0x08, 0x03};
    static const uint8_t stack[] = {0x08, 0x04, 0x0a, 0x02, 0x01, 0x02, 0x08, 0x03};
    static const uint8_t fn[] = {0x08, 0x01, 0x20, 0xff, 0xff, 0xff, 0xff,
                                 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    static const uint8_t mapping[] = {0x08, 0x10, 0x20, 0x01};
    uint8_t buf[256];
    size_t n = 0;
    n += put_len(buf + n, 0x2a, (const uint8_t *)"", 0);
    n += put_len(buf + n, 0x12, loc, sizeof loc);
    n += put_len(buf + n, 0x0a, mapping, sizeof mapping);
    n += put_len(buf + n, 0x3a, stack, sizeof stack);
    n += put_len(buf + n, 0x2a, (const uint8_t *)"a\0b", 3);
    n += put_len(buf + n, 0x1a, fn, sizeof fn);
    n += put_len(buf + n, 0x12, (const uint8_t *)"", 0); /* an empty Location */
    Dict *d = dict_both_ways(a, buf, n);
    assert_non_null(d);
    const Location *l = d->location_table[0];
    assert_int_equal(l->mapping_index, 2);
    assert_int_equal(l->address, 0x12b);
    assert_int_equal(l->n_attribute_indices, 3);
    assert_int_equal(l->attribute_indices[2], 7);
    assert_int_equal(l->n_lines, 1);
    assert_int_equal(l->lines[0]->function_index, 3);
    assert_int_equal(l->lines[0]->line, 9);
    assert_int_equal(d->n_location_table, 2);
    assert_null(d->location_table[1]->lines);
    assert_int_equal(d->stack_table[0]->n_location_indices, 4);
    assert_int_equal(d->stack_table[0]->location_indices[3], 3);
    assert_int_equal(d->function_table[0]->start_line, -1);
    assert_int_equal(d->n_string_table, 2);
    assert_memory_equal(d->string_table[1], "a\0b", 4);
    assert_int_equal(d->n_mapping_table, 1);
    sp_arena_free(a);
}

/* A Stack's packed location indices are counted eight bytes at a time where they can be: a
 * varint of every length from 1 to 11 bytes (11 is one protobuf-c refuses), after 0 to 40
 * one-byte varints so that it starts at every place of a word and crosses into the next, must be
 * taken exactly when protobuf-c takes it, with the same indices; the hand decoder refuses what
 * protobuf-c refuses. */
static void packed_indices_of_every_length_and_place_as_protobuf_c(void **state)
{
    (void)state;
    for (size_t pre = 0; pre <= 40; pre++)
        for (size_t len = 1; len <= 11; len++)
            for (size_t post = 0; post <= 9; post += 3) {
                uint8_t payload[64], stack[80], dict[96];
                size_t n = 0;
                for (size_t i = 0; i < pre; i++)
                    payload[n++] = 0x01;
                for (size_t i = 0; i + 1 < len; i++)
                    payload[n++] = 0x80 | (uint8_t)i;
                payload[n++] = len >= 10 ? 0x01 : 0x02; /* 10 bytes: a negative int32 */
                for (size_t i = 0; i < post; i++)
                    payload[n++] = 0x03;
                size_t sn = put_len(stack, 0x0a, payload, n);
                size_t dn = put_len(dict, 0x3a, stack, sn);
                sp_arena *a = sp_arena_new(1 << 20);
                ProtobufCAllocator alloc = {arena_alloc, arena_free, a};
                Dict *ref =
                    opentelemetry__proto__profiles__v1development__profiles_dictionary__unpack(
                        &alloc, dn, dict);
                Dict *hand = dict_both_ways(a, dict, dn);
                if ((hand != NULL) != (ref != NULL))
                    fail_msg("%zu + %zu-byte varint + %zu: hand %s, protobuf-c %s", pre, len, post,
                             hand ? "takes" : "refuses", ref ? "takes" : "refuses");
                if (hand)
                    assert_int_equal(hand->stack_table[0]->n_location_indices, pre + 1 + post);
                assert_int_equal(ref != NULL, len <= 10);
                sp_arena_free(a);
            }
}

/* Each dictionary here is one protobuf-c decides: the decoder must answer NULL. */
static void leaves_other_dictionaries_to_protobuf_c(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        uint8_t bytes[16];
        size_t n;
        int protobuf_c_takes_it;
    } cases[] = {
        {"Location with field 5", {0x12, 0x02, 0x28, 0x01}, 4, 1},
        {"Line with field 4", {0x12, 0x04, 0x1a, 0x02, 0x20, 0x01}, 6, 1},
        {"Function with a LEN field", {0x1a, 0x03, 0x0a, 0x01, 0x00}, 5, 0},
        {"Stack with field 2", {0x3a, 0x02, 0x10, 0x01}, 4, 1},
        {"string as a varint", {0x28, 0x01}, 2, 0},
        {"Stack cut in a packed varint", {0x3a, 0x03, 0x0a, 0x01, 0x80}, 5, 0},
        {"Line cut short", {0x12, 0x03, 0x1a, 0x02, 0x08}, 5, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        sp_arena *a = sp_arena_new(1 << 20);
        ProtobufCAllocator alloc = {arena_alloc, arena_free, a};
        if (otlp_hand_unpack_dictionary(cases[i].bytes, cases[i].n, &alloc, a) != NULL)
            fail_msg("%s: decoded by hand", cases[i].what);
        Dict *ref = opentelemetry__proto__profiles__v1development__profiles_dictionary__unpack(
            &alloc, cases[i].n, cases[i].bytes);
        if ((ref != NULL) != cases[i].protobuf_c_takes_it)
            fail_msg("%s: protobuf-c %s it", cases[i].what, ref ? "takes" : "refuses");
        sp_arena_free(a);
    }
}

/* protobuf-c reads at most 5 bytes of a tag or a length prefix: where the decoders cut a field
 * out or write it again, they must refuse what protobuf-c would have (found by review: each of
 * these was decoded by hand while protobuf-c refuses it). */
static void refuses_tags_and_lengths_protobuf_c_refuses(void **state)
{
    (void)state;
    static const struct {
        int dict;
        uint8_t bytes[16];
        size_t n;
    } cases[] = {
        /* a Sample's length in 6 bytes */
        {0, {0x12, 0x0b, 0x12, 0x09, 0x12, 0x82, 0x80, 0x80, 0x80, 0x80, 0x00, 0x08, 0x05}, 13},
        /* a Sample's tag in 6 bytes */
        {0, {0x12, 0x0b, 0x12, 0x09, 0x92, 0x80, 0x80, 0x80, 0x80, 0x00, 0x02, 0x08, 0x05}, 13},
        /* scope_profiles' tag in 6 bytes */
        {0, {0x92, 0x80, 0x80, 0x80, 0x80, 0x00, 0x06, 0x12, 0x04, 0x12, 0x02, 0x08, 0x05}, 13},
        /* packed values' length in 6 bytes */
        {0,
         {0x12, 0x0c, 0x12, 0x0a, 0x12, 0x08, 0x22, 0x81, 0x80, 0x80, 0x80, 0x80, 0x00, 0x05},
         14},
        {1, {0x2a, 0x81, 0x80, 0x80, 0x80, 0x80, 0x00, 0x41}, 8}, /* a string's length */
        {1, {0xaa, 0x80, 0x80, 0x80, 0x80, 0x00, 0x01, 0x41}, 8}, /* a string's tag */
        {1, {0x12, 0x09, 0x1a, 0x82, 0x80, 0x80, 0x80, 0x80, 0x00, 0x08, 0x01}, 11}, /* a Line */
        {1, {0x3a, 0x08, 0x0a, 0x81, 0x80, 0x80, 0x80, 0x80, 0x00, 0x05}, 10}, /* packed indices */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        sp_arena *a = sp_arena_new(1 << 20);
        ProtobufCAllocator alloc = {arena_alloc, arena_free, a};
        const uint8_t *b = cases[i].bytes;
        size_t n = cases[i].n;
        void *hand = cases[i].dict ? (void *)otlp_hand_unpack_dictionary(b, n, &alloc, a)
                                   : (void *)otlp_hand_unpack_resource(b, n, 1, 1, NULL, &alloc, a);
        void *ref =
            cases[i].dict
                ? (void *)
                      opentelemetry__proto__profiles__v1development__profiles_dictionary__unpack(
                          &alloc, n, b)
                : (void *)opentelemetry__proto__profiles__v1development__resource_profiles__unpack(
                      &alloc, n, b);
        if (hand || ref)
            fail_msg("case %zu: hand %p, protobuf-c %p (both must refuse)", i, hand, ref);
        sp_arena_free(a);
    }
}

/* A shape left to protobuf-c is found before anything is allocated (S4, D1), so the fallback has
 * the request's whole budget: the last Sample, or the last Location, is the one that is not the
 * decoder's. */
static void a_late_refusal_costs_the_budget_nothing(void **state)
{
    (void)state;
    sp_arena *a = sp_arena_new(64 << 20);
    ProtobufCAllocator alloc = {arena_alloc, arena_free, a};
    size_t rn, dn;
    uint8_t *res = ebpf_resource(3000, &rn), *dict = ebpf_dictionary(3000, &dn);
    uint8_t *r2 = malloc(rn + 16), *d2 = malloc(dn + 16);
    /* resource + a ScopeProfiles{profiles{samples{unknown field 6}}} at its end */
    memcpy(r2, res, rn);
    static const uint8_t bad_scope[] = {0x12, 0x06, 0x12, 0x04, 0x12, 0x02, 0x30, 0x01};
    memcpy(r2 + rn, bad_scope, sizeof bad_scope);
    /* dictionary + a Location with unknown field 5 at its end */
    memcpy(d2, dict, dn);
    static const uint8_t bad_loc[] = {0x12, 0x02, 0x28, 0x00};
    memcpy(d2 + dn, bad_loc, sizeof bad_loc);
    size_t before = sp_arena_used(a);
    assert_null(otlp_hand_unpack_resource(r2, rn + sizeof bad_scope, 4, 3001, NULL, &alloc, a));
    assert_null(otlp_hand_unpack_dictionary(d2, dn + sizeof bad_loc, &alloc, a));
    assert_int_equal(sp_arena_used(a), before);
    free(res), free(dict), free(r2), free(d2);
    sp_arena_free(a);
}

/* The request's own fields never reach protobuf-c on the resource-by-resource path: one that
 * protobuf-c refuses (a 6-byte tag) must make that path refuse the request as the whole unpack
 * does. */
static void a_request_protobuf_c_refuses_is_refused(void **state)
{
    (void)state;
    size_t rn;
    uint8_t *res = ebpf_resource(90, &rn);
    static const uint8_t dict[] = {0x2a, 0x00, 0x2a, 0x03, 'c', 'p', 'u'};
    static const uint8_t overlong[] = {0x98, 0x80, 0x80, 0x80, 0x80, 0x00, 0x01}; /* field 3 */
    uint8_t *req = malloc(rn + 64);
    size_t n = put_len(req, 0x0a, res, rn);
    n += put_len(req + n, 0x12, dict, sizeof dict);
    memcpy(req + n, overlong, sizeof overlong);
    n += sizeof overlong;
    sp_arena *a = sp_arena_new(otlp_decode_budget(n));
    otlp_decoded whole, out;
    otlp_profiles_lazy *lazy;
    sp_err err = {0};
    assert_int_equal(otlp_decode(OTLP_SIGNAL_PROFILES, req, n, a, &whole, &err), SP_EINVAL);
    assert_int_equal(otlp_decode_profiles(req, n, 1, 8192, 0, a, &out, &lazy, &err), SP_EINVAL);
    free(req);
    free(res);
    sp_arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(decodes_an_ebpf_shaped_resource_as_protobuf_c_does),
        cmocka_unit_test(takes_every_encoding_protobuf_c_takes),
        cmocka_unit_test(leaves_other_shapes_to_protobuf_c),
        cmocka_unit_test(other_counts_than_the_walk_found_are_declined),
        cmocka_unit_test(a_request_of_one_resource_is_decoded_by_hand),
        cmocka_unit_test(the_layout_census_counts_what_protobuf_c_unpacks),
        cmocka_unit_test(the_census_says_which_resources_the_decoder_must_walk),
        cmocka_unit_test(a_request_decoded_with_its_census_is_protobuf_c_s),
        cmocka_unit_test(decodes_an_ebpf_shaped_dictionary_as_protobuf_c_does),
        cmocka_unit_test(takes_every_dictionary_encoding_protobuf_c_takes),
        cmocka_unit_test(packed_indices_of_every_length_and_place_as_protobuf_c),
        cmocka_unit_test(leaves_other_dictionaries_to_protobuf_c),
        cmocka_unit_test(refuses_tags_and_lengths_protobuf_c_refuses),
        cmocka_unit_test(a_late_refusal_costs_the_budget_nothing),
        cmocka_unit_test(a_request_protobuf_c_refuses_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
