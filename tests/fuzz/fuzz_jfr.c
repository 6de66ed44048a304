/* libFuzzer target: JFR recordings (otlp/jfr.c, jfr_wire.c, jfr_pool.c, jfr_names.c), as the
 * Pyroscope Java agent uploads them and the JDK writes them.
 * Input: byte 0 picks the options (bit 0: stacks cut to 3 frames; bit 1: the caller's intervals,
 * time range and series; bit 2: tight limits: 2 chunks, 64 types, 256 pool entries; bit 3: a
 * 1 MiB scratch budget), the rest is the recording.
 * A refusal must carry its code and a message and leave the result empty. A recording that
 * parses must give profiles that hold together: every id inside its table (J4), every sample with
 * a positive value, observations and timestamps whose values add up to it (B3), series and type
 * ids set, the per-sample context arrays as long as the samples, stacks within the depth limit. */
#include "otlp/jfr.h"

#include <stdint.h>
#include <string.h>
#include "fuzz_check.h"

static void check_profile(const otlp_jfr_profile *jp, const otlp_jfr_options *o)
{
    const sp_profile *p = jp->profile;
    CHECK(p && p->type_id && p->name && p->nseries >= 1);
    CHECK(strncmp(p->type_id, p->name, strlen(p->name)) == 0);
    CHECK(p->nstrings >= 1 && p->strings[0][0] == 0 && p->string_lens[0] == 0);
    CHECK(p->sample_type < p->nstrings && p->period_type < p->nstrings);
    CHECK(p->nsamples > 0 && p->nmappings == 2);
    for (uint32_t k = 0; k < p->nsamples; k++) {
        const sp_sample *s = &p->samples[k];
        CHECK(s->value > 0 && s->nobs > 0 && s->timestamps);
        CHECK(s->thread_name < p->nstrings);
        CHECK(!o->max_stack_depth || s->nlocations <= o->max_stack_depth);
        if (s->values) {
            int64_t sum = 0;
            for (uint32_t j = 0; j < s->nobs; j++) {
                CHECK(s->values[j] >= 0); /* B3: in any order, the saturated sum is the value */
                sum = sp_sat_add(sum, s->values[j]);
            }
            CHECK(sum == s->value);
        }
        for (uint32_t j = 0; j < s->nlocations; j++)
            CHECK(s->location_ids[j] > 0 && s->location_ids[j] < p->nlocations);
        if (jp->context_ids)
            (void)jp->context_ids[k]; /* as long as the samples (ASan checks) */
        if (jp->span_names)
            (void)jp->span_names[k];
    }
    for (uint32_t i = 1; i < p->nlocations; i++) {
        const sp_location *l = &p->locations[i];
        CHECK(l->nlines == 1 && l->mapping_id == 1 && l->frame_type < p->nstrings);
        CHECK(l->lines[0].function_id > 0 && l->lines[0].function_id < p->nfunctions);
    }
    for (uint32_t i = 1; i < p->nfunctions; i++)
        CHECK(p->functions[i].name > 0 && p->functions[i].name < p->nstrings);
    for (uint32_t i = 1; i < p->nstrings; i++)
        CHECK(p->strings[i] && strlen(p->strings[i]) == p->string_lens[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t opt = data[0];
    static const sp_kv series[] = {{"service_name", "fuzz"}, {"env", "x"}};
    otlp_jfr_options o = {0};
    if (opt & 1)
        o.max_stack_depth = 3;
    if (opt & 2) {
        o.cpu_interval_ns = 10000000;
        o.wall_interval_ns = 20000000;
        o.from_ns = 1700000000000000000;
        o.until_ns = 1700000010000000000;
        o.series = series;
        o.nseries = 2;
    }
    if (opt & 4) {
        o.max_chunks = 2;
        o.max_types = 64;
        o.max_pool_entries = 256;
    }
    if (opt & 8)
        o.work_budget = 1u << 20;

    sp_arena *a = sp_arena_new(64u << 20);
    otlp_jfr_result r;
    sp_err err = {0};
    int rc = otlp_jfr_parse(data + 1, size - 1, &o, a, &r, &err);
    if (rc) {
        CHECK(rc < 0 && err.code == rc && err.msg[0] != 0);
        CHECK(r.nprofiles == 0 && r.profiles == NULL);
    } else {
        CHECK(r.chunks >= 1 && r.chunks <= (o.max_chunks ? o.max_chunks : 1024));
        CHECK(r.cpu_interval_ns > 0 && r.wall_interval_ns > 0);
        for (uint32_t i = 0; i < r.nprofiles; i++) {
            check_profile(&r.profiles[i], &o);
            if (opt & 2)
                CHECK(r.profiles[i].profile->time_nanos == o.from_ns &&
                      r.profiles[i].profile->duration_nanos == o.until_ns - o.from_ns);
        }
        sp_batch b = {.tenant = "fuzz", .arena = a};
        CHECK(otlp_jfr_add_to_batch(&r, &b, &err) == 0 && b.nprofiles == r.nprofiles);
    }
    sp_arena_free(a);
    return 0;
}
