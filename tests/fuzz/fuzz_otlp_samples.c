/* libFuzzer target: otlp/samples.c against protobuf-c. The input is one ResourceProfiles; when
 * the hand decoder answers, protobuf-c must unpack the same bytes too, and both messages must pack
 * to the same bytes (every field, every Sample, in order). Counts other than a walk of the bytes
 * finds must be declined (S3). The bytes are depth-checked first, as the request is in the server
 * (protobuf-c recurses once per nesting level). */
#include "otlp/decode.h"
#include "otlp/samples.h"
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (wire_pb_check_depth(
            &opentelemetry__proto__profiles__v1development__resource_profiles__descriptor, data,
            size, WIRE_PB_MAX_DEPTH, NULL))
        return 0;
    size_t nsamples = 0;
    nprofiles = 0;
    if (children(data, size, scope, &nsamples) < 0)
        return 0; /* not the shape decode.c's L1 walk hands over */
    sp_arena *a = sp_arena_new(otlp_decode_budget(size));
    CHECK(a);
    ProtobufCAllocator alloc = {arena_alloc, arena_free, a};
    CHECK(!otlp_samples_unpack_resource(data, size, nprofiles, nsamples + 1, &alloc, a));
    CHECK(!otlp_samples_unpack_resource(data, size, nprofiles + 1, nsamples, &alloc, a));
    Opentelemetry__Proto__Profiles__V1development__ResourceProfiles *fast =
        otlp_samples_unpack_resource(data, size, nprofiles, nsamples, &alloc, a);
    if (fast) {
        sp_arena *b = sp_arena_new(otlp_decode_budget(size));
        CHECK(b);
        ProtobufCAllocator balloc = {arena_alloc, arena_free, b};
        Opentelemetry__Proto__Profiles__V1development__ResourceProfiles *ref =
            opentelemetry__proto__profiles__v1development__resource_profiles__unpack(&balloc, size,
                                                                                     data);
        CHECK(ref);
        size_t lf, lr;
        uint8_t *pf = pack(&fast->base, &lf), *pr = pack(&ref->base, &lr);
        CHECK(lf == lr && memcmp(pf, pr, lr) == 0);
        free(pf);
        free(pr);
        sp_arena_free(b);
    }
    sp_arena_free(a);
    return 0;
}
