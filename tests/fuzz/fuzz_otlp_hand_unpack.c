/* libFuzzer target: otlp/hand_unpack.c against protobuf-c. Byte 0 picks what the rest is: even, a
 * ResourceProfiles; odd, a ProfilesDictionary. When the hand decoder answers, protobuf-c must
 * unpack the same bytes too, and both messages must pack to the same bytes (every field, every
 * entry, in order). For a resource, counts other than a walk of the bytes finds must be declined
 * (S3). The bytes are depth-checked first, as the request is in the server (protobuf-c recurses
 * once per nesting level). A resource is also decoded with the census the layout pass takes of it
 * as a request's only resource, which must agree with the first walk it stands in for. */
#include "otlp/decode.h"
#include "otlp/hand_unpack.h"
#include "otlp/layout.h"
#include "wire/pb.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz_check.h"

static void *arena_alloc(void *data, size_t size)
{
    return sp_arena_alloc(data, size);
}

static void arena_free(void *data, void *p)
{
    (void)data;
    (void)p;
}

/* Field-2 LEN children of a message (-1 when a field does not walk or a field 2 is not LEN),
 * each passed to `each` when given. */
static int64_t children(const uint8_t *p, size_t n, int (*each)(const uint8_t *, size_t, size_t *),
                        size_t *sum)
{
    const uint8_t *end = p + n;
    wire_pb_field f;
    int64_t k = 0;
    while (p < end) {
        if (wire_pb_next(&p, end, p, &f, NULL))
            return -1;
        if (f.num != 2)
            continue;
        if (f.wt != WIRE_WT_LEN || (each && each(f.val, f.vlen, sum)))
            return -1;
        k++;
    }
    return k;
}

static size_t nprofiles;

static int profile(const uint8_t *p, size_t n, size_t *samples)
{
    int64_t k = children(p, n, NULL, NULL);
    if (k < 0)
        return -1;
    *samples += (size_t)k;
    nprofiles++;
    return 0;
}

static int scope(const uint8_t *p, size_t n, size_t *samples)
{
    return children(p, n, profile, samples) < 0;
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(*len ? *len : 1);
    CHECK(b);
    CHECK(protobuf_c_message_pack(m, b) == *len);
    return b;
}

/* Packs both messages and checks they are the same bytes. */
static void same(const ProtobufCMessage *fast, const ProtobufCMessage *ref)
{
    CHECK(ref);
    size_t lf, lr;
    uint8_t *pf = pack(fast, &lf), *pr = pack(ref, &lr);
    CHECK(lf == lr && memcmp(pf, pr, lr) == 0);
    free(pf);
    free(pr);
}

static void resource(const uint8_t *data, size_t size, sp_arena *a, ProtobufCAllocator *alloc,
                     ProtobufCAllocator *ref_alloc)
{
    if (wire_pb_check_depth(
            &opentelemetry__proto__profiles__v1development__resource_profiles__descriptor, data,
            size, WIRE_PB_MAX_DEPTH, NULL))
        return;
    size_t nsamples = 0;
    nprofiles = 0;
    if (children(data, size, scope, &nsamples) < 0)
        return; /* not the shape decode.c's L1 walk hands over */
    CHECK(!otlp_hand_unpack_resource(data, size, nprofiles, nsamples + 1, NULL, alloc, a));
    CHECK(!otlp_hand_unpack_resource(data, size, nprofiles + 1, nsamples, NULL, alloc, a));
    Opentelemetry__Proto__Profiles__V1development__ResourceProfiles *fast =
        otlp_hand_unpack_resource(data, size, nprofiles, nsamples, NULL, alloc, a);
    if (fast)
        same(&fast->base,
             (ProtobufCMessage *)
                 opentelemetry__proto__profiles__v1development__resource_profiles__unpack(
                     ref_alloc, size, data));
    /* The same bytes as the one resource of a request: the layout pass's census of them must say
     * ok only when the first walk would pass, with this walk's counts, and the decoder that
     * trusts it must give what protobuf-c gives (L8 in decode.c). */
    if (size > 1 << 24)
        return;
    uint8_t *req = malloc(size + 8);
    CHECK(req);
    size_t n = 0;
    req[n++] = 1 << 3 | WIRE_WT_LEN;
    n += wire_pb_put_varint(req + n, size);
    memcpy(req + n, data, size);
    n += size;
    otlp_layout_info info;
    const uint8_t *out;
    size_t outlen;
    if (otlp_layout_normalize(req, n, a, &out, &outlen, &info, NULL) == 0 && !info.rewritten &&
        info.census && info.ncensus == 1 && info.census[0].ok) {
        const otlp_resource_census *c = &info.census[0];
        CHECK(c->profiles == nprofiles && c->samples == nsamples);
        CHECK(!otlp_hand_unpack_resource(data, size, nprofiles, nsamples + 1, c, alloc, a));
        Opentelemetry__Proto__Profiles__V1development__ResourceProfiles *trusted =
            otlp_hand_unpack_resource(data, size, nprofiles, nsamples, c, alloc, a);
        CHECK(!trusted == !fast); /* the census checked what the first walk checks */
        if (trusted)
            same(&trusted->base, &fast->base);
    }
    free(req);
}

static void dictionary(const uint8_t *data, size_t size, sp_arena *a, ProtobufCAllocator *alloc,
                       ProtobufCAllocator *ref_alloc)
{
    if (wire_pb_check_depth(
            &opentelemetry__proto__profiles__v1development__profiles_dictionary__descriptor, data,
            size, WIRE_PB_MAX_DEPTH, NULL))
        return;
    Opentelemetry__Proto__Profiles__V1development__ProfilesDictionary *fast =
        otlp_hand_unpack_dictionary(data, size, alloc, a);
    if (fast)
        same(&fast->base,
             (ProtobufCMessage *)
                 opentelemetry__proto__profiles__v1development__profiles_dictionary__unpack(
                     ref_alloc, size, data));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    sp_arena *a = sp_arena_new(otlp_decode_budget(size)),
             *b = sp_arena_new(otlp_decode_budget(size));
    CHECK(a && b);
    ProtobufCAllocator alloc = {arena_alloc, arena_free, a},
                       ref_alloc = {arena_alloc, arena_free, b};
    if (data[0] & 1)
        dictionary(data + 1, size - 1, a, &alloc, &ref_alloc);
    else
        resource(data + 1, size - 1, a, &alloc, &ref_alloc);
    sp_arena_free(a);
    sp_arena_free(b);
    return 0;
}
