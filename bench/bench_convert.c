/* bench_convert: OTLP profiles ingest cost, phase by phase, on an eBPF-profiler-like request.
 *
 * Builds one ExportProfilesServiceRequest the way the OpenTelemetry eBPF profiler does (one
 * resource per process, CPU samples with timestamps only, thread attributes, deep native stacks
 * drawn from a shared pool, some explicit links), then times on the same bytes:
 *   raw      protobuf-c unpack + free with the default allocator (the floor any decoder pays)
 *   decode   spanprof's otlp_decode: depth check, layout detection, arena unpack, validation
 *   by hand  otlp_decode_profiles, the server's path: the same, each resource's Samples decoded
 *            by otlp/hand_unpack.c and the rest by protobuf-c
 *   convert  otlp_profiles_convert on the decoded message (to sp_profile)
 * and prints samples/s and MB/s of OTLP input for each. Times are the calling thread's CPU time
 * (CLOCK_THREAD_CPUTIME_ID), so other processes on a shared machine do not count.
 *
 *   bench_convert [processes] [threads-per-process] [samples-per-thread] [iterations]
 */
#include "common/arena.h"
#include "otlp/convert.h"
#include "otlp/decode.h"
#include "otlp/hand_unpack.h"
#include "wire/pb.h"
#include "bench_util.h"

#include "opentelemetry/proto/collector/profiles/v1development/profiles_service.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef Opentelemetry__Proto__Profiles__V1development__ProfilesDictionary dict_t;

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(uint32_t n)
{
    return (uint32_t)(bench_xorshift64(&rng) % n);
}

#define NEW(T) calloc(1, sizeof(T))

static void *bench_arena_alloc(void *data, size_t size)
{
    return sp_arena_alloc(data, size);
}

static void bench_arena_free(void *data, void *p)
{
    (void)data;
    (void)p;
}

/* Builds and packs the request; returns the bytes and the sample count. */
static uint8_t *build(int procs, int threads, int per_thread, size_t *len, size_t *nsamples)
{
    enum { NFUNCS = 4000, NLOCS = 6000, NSTACKS = 3000, NSTR = NFUNCS + 64 };
    dict_t d = OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__PROFILES_DICTIONARY__INIT;
    d.n_string_table = NSTR;
    d.string_table = calloc(NSTR, sizeof(char *));
    d.string_table[0] = "";
    for (int i = 1; i < NFUNCS; i++) {
        char b[64];
        snprintf(b, sizeof b, "pkg%d.(*Type%d).Method%d", i % 37, i % 101, i);
        d.string_table[i] = strdup(b);
    }
    const char *fixed[] = {"samples",
                           "count",
                           "cpu",
                           "nanoseconds",
                           "thread.id",
                           "thread.name",
                           "profile.frame.type",
                           "native",
                           "kernel",
                           "/usr/bin/app",
                           "process.executable.build_id.gnu",
                           "cpu.logical_number"};
    int S = NFUNCS;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        d.string_table[S + i] = (char *)fixed[i];
    for (int i = S + 12; i < NSTR; i++)
        d.string_table[i] = "";
    /* attribute table: [0] zero, frame types, thread ids/names per (proc, thread), cpu numbers */
    size_t natt = 3 + (size_t)procs * threads * 2 + 8;
    d.attribute_table = calloc(natt, sizeof(void *));
    for (size_t i = 0; i < natt; i++) {
        d.attribute_table[i] = NEW(*d.attribute_table[i]);
        opentelemetry__proto__profiles__v1development__key_value_and_unit__init(
            d.attribute_table[i]);
    }
    d.attribute_table[1]->key_strindex = S + 6;
    d.attribute_table[1]->value = bench_any_str(malloc, "native");
    d.attribute_table[2]->key_strindex = S + 6;
    d.attribute_table[2]->value = bench_any_str(malloc, "kernel");
    size_t a = 3;
    for (int p = 0; p < procs; p++)
        for (int t = 0; t < threads; t++) {
            d.attribute_table[a]->key_strindex = S + 4;
            d.attribute_table[a++]->value = bench_any_int(malloc, 100000 + p * 1000 + t);
            d.attribute_table[a]->key_strindex = S + 5;
            d.attribute_table[a++]->value = bench_any_str(malloc, t % 2 ? "worker" : "io");
        }
    size_t cpu0 = a;
    for (int c = 0; c < 8; c++, a++) {
        d.attribute_table[a]->key_strindex = S + 11;
        d.attribute_table[a]->value = bench_any_int(malloc, c);
    }
    d.n_attribute_table = a;
    d.n_mapping_table = 2;
    d.mapping_table = calloc(2, sizeof(void *));
    for (int i = 0; i < 2; i++) {
        d.mapping_table[i] = NEW(*d.mapping_table[i]);
        opentelemetry__proto__profiles__v1development__mapping__init(d.mapping_table[i]);
    }
    d.mapping_table[1]->filename_strindex = S + 9;
    d.mapping_table[1]->memory_limit = 1 << 30;
    d.n_function_table = NFUNCS;
    d.function_table = calloc(NFUNCS, sizeof(void *));
    for (int i = 0; i < NFUNCS; i++) {
        d.function_table[i] = NEW(*d.function_table[i]);
        opentelemetry__proto__profiles__v1development__function__init(d.function_table[i]);
        d.function_table[i]->name_strindex = i;
    }
    d.n_location_table = NLOCS;
    d.location_table = calloc(NLOCS, sizeof(void *));
    for (int i = 0; i < NLOCS; i++) {
        Opentelemetry__Proto__Profiles__V1development__Location *l = NEW(*l);
        opentelemetry__proto__profiles__v1development__location__init(l);
        d.location_table[i] = l;
        if (!i)
            continue;
        l->mapping_index = 1;
        l->address = 0x400000 + (uint64_t)i * 64;
        l->n_attribute_indices = 1;
        l->attribute_indices = malloc(sizeof(int32_t));
        l->attribute_indices[0] = i % 10 == 0 ? 2 : 1;
        if (i % 3) { /* two thirds symbolized (kernel, interpreters); native ones are bare */
            l->n_lines = 1;
            l->lines = malloc(sizeof(void *));
            l->lines[0] = NEW(*l->lines[0]);
            opentelemetry__proto__profiles__v1development__line__init(l->lines[0]);
            l->lines[0]->function_index = 1 + rnd(NFUNCS - 1);
            l->lines[0]->line = rnd(2000);
        }
    }
    d.n_stack_table = NSTACKS;
    d.stack_table = calloc(NSTACKS, sizeof(void *));
    for (int i = 0; i < NSTACKS; i++) {
        Opentelemetry__Proto__Profiles__V1development__Stack *s = NEW(*s);
        opentelemetry__proto__profiles__v1development__stack__init(s);
        d.stack_table[i] = s;
        if (!i)
            continue;
        s->n_location_indices = 20 + rnd(40); /* deep native stacks */
        s->location_indices = malloc(s->n_location_indices * sizeof(int32_t));
        for (size_t k = 0; k < s->n_location_indices; k++)
            s->location_indices[k] = 1 + (int32_t)rnd(NLOCS - 1);
    }
    d.n_link_table = 2;
    d.link_table = calloc(2, sizeof(void *));
    for (int i = 0; i < 2; i++) {
        d.link_table[i] = NEW(*d.link_table[i]);
        opentelemetry__proto__profiles__v1development__link__init(d.link_table[i]);
    }
    static uint8_t tid[16] = {1}, sid[8] = {2};
    d.link_table[1]->trace_id = (ProtobufCBinaryData){16, tid};
    d.link_table[1]->span_id = (ProtobufCBinaryData){8, sid};

    Opentelemetry__Proto__Collector__Profiles__V1development__ExportProfilesServiceRequest req =
        OPENTELEMETRY__PROTO__COLLECTOR__PROFILES__V1DEVELOPMENT__EXPORT_PROFILES_SERVICE_REQUEST__INIT;
    req.dictionary = &d;
    req.n_resource_profiles = (size_t)procs;
    req.resource_profiles = calloc((size_t)procs, sizeof(void *));
    *nsamples = 0;
    uint64_t t0 = 1700000000000000000ull;
    size_t ta = 3;
    for (int p = 0; p < procs; p++) {
        Opentelemetry__Proto__Profiles__V1development__ResourceProfiles *rp = NEW(*rp);
        opentelemetry__proto__profiles__v1development__resource_profiles__init(rp);
        req.resource_profiles[p] = rp;
        rp->resource = NEW(*rp->resource);
        opentelemetry__proto__resource__v1__resource__init(rp->resource);
        rp->resource->n_attributes = 2;
        rp->resource->attributes = calloc(2, sizeof(void *));
        for (int k = 0; k < 2; k++) {
            rp->resource->attributes[k] = NEW(*rp->resource->attributes[k]);
            opentelemetry__proto__common__v1__key_value__init(rp->resource->attributes[k]);
        }
        rp->resource->attributes[0]->key = "process.pid";
        rp->resource->attributes[0]->value = bench_any_int(malloc, 1000 + p);
        rp->resource->attributes[1]->key = "process.executable.name";
        rp->resource->attributes[1]->value = bench_any_str(malloc, "app");
        rp->n_scope_profiles = 1;
        rp->scope_profiles = calloc(1, sizeof(void *));
        rp->scope_profiles[0] = NEW(*rp->scope_profiles[0]);
        opentelemetry__proto__profiles__v1development__scope_profiles__init(rp->scope_profiles[0]);
        Opentelemetry__Proto__Profiles__V1development__Profile *pr = NEW(*pr);
        opentelemetry__proto__profiles__v1development__profile__init(pr);
        rp->scope_profiles[0]->n_profiles = 1;
        rp->scope_profiles[0]->profiles = calloc(1, sizeof(void *));
        rp->scope_profiles[0]->profiles[0] = pr;
        pr->sample_type = NEW(*pr->sample_type);
        opentelemetry__proto__profiles__v1development__value_type__init(pr->sample_type);
        pr->sample_type->type_strindex = S;
        pr->sample_type->unit_strindex = S + 1;
        pr->period_type = NEW(*pr->period_type);
        opentelemetry__proto__profiles__v1development__value_type__init(pr->period_type);
        pr->period_type->type_strindex = S + 2;
        pr->period_type->unit_strindex = S + 3;
        pr->period = 50000000;
        pr->time_unix_nano = t0;
        pr->duration_nano = 5000000000ull;
        pr->n_samples = (size_t)threads * per_thread;
        pr->samples = calloc(pr->n_samples, sizeof(void *));
        for (size_t i = 0; i < pr->n_samples; i++) {
            Opentelemetry__Proto__Profiles__V1development__Sample *s = NEW(*s);
            opentelemetry__proto__profiles__v1development__sample__init(s);
            pr->samples[i] = s;
            int t = (int)(i / (size_t)per_thread);
            s->stack_index = 1 + (int32_t)rnd(NSTACKS - 1);
            s->n_attribute_indices = 3;
            s->attribute_indices = malloc(3 * sizeof(int32_t));
            s->attribute_indices[0] = (int32_t)(ta + 2 * t);
            s->attribute_indices[1] = (int32_t)(ta + 2 * t + 1);
            s->attribute_indices[2] = (int32_t)(cpu0 + rnd(8));
            s->link_index = rnd(10) == 0;
            s->n_timestamps_unix_nano = 1 + rnd(3); /* merged observations of one identity */
            s->timestamps_unix_nano = malloc(s->n_timestamps_unix_nano * sizeof(uint64_t));
            for (size_t k = 0; k < s->n_timestamps_unix_nano; k++)
                s->timestamps_unix_nano[k] = t0 + (uint64_t)rnd(5000) * 1000000;
            *nsamples += s->n_timestamps_unix_nano;
        }
        ta += 2 * (size_t)threads;
    }
    *len = protobuf_c_message_get_packed_size(&req.base);
    uint8_t *buf = malloc(*len);
    protobuf_c_message_pack(&req.base, buf);
    return buf; /* the builder's heap is left for exit: this is a benchmark */
}

int main(int argc, char **argv)
{
    int procs = argc > 1 ? atoi(argv[1]) : 50;
    int threads = argc > 2 ? atoi(argv[2]) : 8;
    int per_thread = argc > 3 ? atoi(argv[3]) : 200;
    int iters = argc > 4 ? atoi(argv[4]) : 20;
    size_t len, nsamples;
    uint8_t *buf = build(procs, threads, per_thread, &len, &nsamples);
    double mb = len / 1e6;
    printf("request: %d processes x %d threads x %d samples = %zu observations, %.2f MB OTLP\n",
           procs, threads, per_thread, nsamples, mb);

    double t = bench_thread_cpu_s();
    for (int i = 0; i < iters; i++) {
        ProtobufCMessage *m = protobuf_c_message_unpack(
            &opentelemetry__proto__collector__profiles__v1development__export_profiles_service_request__descriptor,
            NULL, len, buf);
        if (!m)
            return 1;
        protobuf_c_message_free_unpacked(m, NULL);
    }
    double raw = (bench_thread_cpu_s() - t) / iters;

    double dec = 0, conv = 0;
    for (int i = 0; i < iters; i++) {
        sp_arena *a = sp_arena_new(otlp_decode_budget(len) * 2);
        otlp_decoded d;
        sp_err err;
        double t1 = bench_thread_cpu_s();
        if (otlp_decode(OTLP_SIGNAL_PROFILES, buf, len, a, &d, &err)) {
            fprintf(stderr, "decode: %s\n", err.msg);
            return 1;
        }
        double t2 = bench_thread_cpu_s();
        sp_batch b = {.tenant = "bench", .arena = a};
        if (otlp_profiles_convert((const otlp_profiles_req *)d.msg, &d.verdict, 1, &b, &err)) {
            fprintf(stderr, "convert: %s\n", err.msg);
            return 1;
        }
        double t3 = bench_thread_cpu_s();
        dec += t2 - t1;
        conv += t3 - t2;
        sp_arena_free(a);
    }
    /* The path the server takes (otlp_decode_profiles: each resource through otlp/hand_unpack.c,
     * Samples decoded by hand), on the same bytes, not streamed. */
    double hand = 0;
    for (int i = 0; i < iters; i++) {
        sp_arena *a = sp_arena_new(otlp_decode_budget(len) * 2);
        otlp_decoded d;
        otlp_profiles_lazy *lazy;
        sp_err err;
        double t1 = bench_thread_cpu_s();
        if (otlp_decode_profiles(buf, len, 1, SIZE_MAX, 0, a, &d, &lazy, &err)) {
            fprintf(stderr, "decode: %s\n", err.msg);
            return 1;
        }
        hand += bench_thread_cpu_s() - t1;
        sp_arena_free(a);
    }
    hand /= iters;

    /* The dictionary alone (ExportProfilesServiceRequest field 2), both ways. */
    const uint8_t *p = buf, *end = buf + len, *dict = NULL;
    size_t dict_len = 0;
    wire_pb_field f;
    while (p < end && !wire_pb_next(&p, end, buf, &f, NULL))
        if (f.num == 2 && f.wt == WIRE_WT_LEN)
            dict = f.val, dict_len = f.vlen;
    double dict_pbc = 0, dict_hand = 0;
    for (int i = 0; dict && i < iters; i++) {
        sp_arena *a = sp_arena_new(otlp_decode_budget(len) * 2);
        ProtobufCAllocator alloc = {bench_arena_alloc, bench_arena_free, a};
        double t1 = bench_thread_cpu_s();
        if (!opentelemetry__proto__profiles__v1development__profiles_dictionary__unpack(
                &alloc, dict_len, dict))
            return 1;
        double t2 = bench_thread_cpu_s();
        if (!otlp_hand_unpack_dictionary(dict, dict_len, &alloc, a))
            return 1;
        dict_hand += bench_thread_cpu_s() - t2;
        dict_pbc += t2 - t1;
        sp_arena_free(a);
    }
    dict_pbc /= iters;
    dict_hand /= iters;
    dec /= iters;
    conv /= iters;
    printf("%-34s %10.2f ms %12.0f samples/s %8.1f MB/s\n", "raw protobuf-c unpack+free", raw * 1e3,
           nsamples / raw, mb / raw);
    printf("%-34s %10.2f ms %12.0f samples/s %8.1f MB/s\n", "otlp_decode (layout+unpack+validate)",
           dec * 1e3, nsamples / dec, mb / dec);
    printf("%-34s %10.2f ms %12.0f samples/s %8.1f MB/s\n", "otlp_decode_profiles (by hand)",
           hand * 1e3, nsamples / hand, mb / hand);
    printf("%-34s %10.2f ms %12.0f samples/s %8.1f MB/s\n", "otlp_profiles_convert", conv * 1e3,
           nsamples / conv, mb / conv);
    printf("convert / raw decode = %.2f\n", conv / raw);
    printf("dictionary (%.2f MB): protobuf-c %.2f ms, by hand %.2f ms\n", dict_len / 1e6,
           dict_pbc * 1e3, dict_hand * 1e3);
    return 0;
}
