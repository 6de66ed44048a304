/* libFuzzer target: pprof decoding on its own (otlp/pprof.c), plain or gzip-compressed as
 * /ingest and Push receive it, with Pyroscope name hints and SDK display names.
 * Input: byte 0 picks the options (bit 0: the rest is gzip, inflated with a 1 MiB cap first;
 * bit 1: name hint "mutex"; bit 2: display names), the rest is the body.
 * Every profile that decodes must hold together (sample locations inside the table, series set)
 * and survive a round trip: encoded back to pprof and decoded again, it has the same samples with
 * the same values. */
#include "wire/compress.h"
#include "otlp/pprof.h"

#include <stdint.h>
#include <string.h>
#include "fuzz_check.h"
#include "wire/pprof_write.h"

static void check_profile(const sp_profile *p)
{
    CHECK(p->type_id && p->name && p->nseries >= 1);
    CHECK(p->nstrings >= 1 && p->strings[0][0] == 0);
    for (uint32_t k = 0; k < p->nsamples; k++) {
        const sp_sample *s = &p->samples[k];
        CHECK(s->value != 0); /* zero rows are dropped */
        for (uint32_t j = 0; j < s->nlocations; j++)
            CHECK(s->location_ids[j] > 0 && s->location_ids[j] < p->nlocations);
        for (uint32_t j = 0; j < s->nlabels; j++)
            CHECK(s->labels[j].key > 0 && s->labels[j].key < p->nstrings &&
                  s->labels[j].str < p->nstrings);
    }
    for (uint32_t i = 1; i < p->nlocations; i++) {
        CHECK(p->locations[i].mapping_id < p->nmappings);
        for (uint32_t j = 0; j < p->locations[i].nlines; j++)
            CHECK(p->locations[i].lines[j].function_id < p->nfunctions);
    }
    for (uint32_t i = 1; i < p->nfunctions; i++)
        CHECK(p->functions[i].name < p->nstrings && p->functions[i].filename < p->nstrings);
}

static void round_trip(const sp_profile *p, const otlp_pprof_opts *o)
{
    sp_buf enc;
    sp_buf_init(&enc, 0);
    CHECK(wire_pprof_encode(p, &enc, NULL) == 0);
    sp_arena *a = sp_arena_new(64u << 20);
    sp_batch b = {.tenant = "fuzz", .arena = a};
    otlp_pprof_result res;
    sp_err err = {0};
    int rc = otlp_pprof_decode(enc.data, enc.len, o, &b, &res, &err);
    CHECK(rc == 0);
    CHECK(res.bad_samples == 0); /* the encoder writes span ids as 16 hex digits */
    CHECK(b.nprofiles == 1);
    const sp_profile *q = b.profiles[0];
    CHECK(q->nsamples == p->nsamples);
    CHECK(strcmp(q->type_id, p->type_id) == 0);
    for (uint32_t k = 0; k < p->nsamples; k++) {
        CHECK(q->samples[k].value == p->samples[k].value);
        CHECK(q->samples[k].nlocations == p->samples[k].nlocations);
        CHECK(q->samples[k].has_link == (p->samples[k].has_link || p->samples[k].nspans));
    }
    sp_arena_free(a);
    sp_buf_free(&enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t opt = data[0];
    const uint8_t *body = data + 1;
    size_t len = size - 1;
    sp_err err = {0};
    sp_buf inflated;
    sp_buf_init(&inflated, 0);
    if (opt & 1) {
        int rc = wire_decompress(WIRE_ENC_GZIP, body, len, 1u << 20, &inflated, &err);
        if (rc) {
            CHECK(rc < 0 && err.code == rc && err.msg[0] != 0);
            sp_buf_free(&inflated);
            return 0;
        }
        CHECK(inflated.len <= 1u << 20);
        body = inflated.data;
        len = inflated.len;
    }
    static const sp_kv series[] = {{"service_name", "fuzz"}, {"env", "x"}};
    static const sp_kv display[] = {
        {"alloc_space", "alloc_in_new_tlab_bytes"}, {"contentions", "mutex_count"}, {"", "empty"}};
    otlp_pprof_opts o = {.series = series,
                         .nseries = 2,
                         .name_hint = (opt & 2) ? "mutex" : NULL,
                         .display_names = (opt & 4) ? display : NULL,
                         .ndisplay_names = (opt & 4) ? 3 : 0,
                         .now_ns = 1700000000000000000};

    sp_arena *a = sp_arena_new(64u << 20);
    sp_batch b = {.tenant = "fuzz", .arena = a};
    otlp_pprof_result res;
    int rc = otlp_pprof_decode(body ? body : (const uint8_t *)"", len, &o, &b, &res, &err);
    if (rc) {
        CHECK(rc < 0 && err.code == rc && err.msg[0] != 0);
    } else {
        CHECK(res.bad_samples <= res.samples);
        if (res.bad_samples)
            CHECK(res.first.msg[0] != 0);
        CHECK(b.nprofiles >= 1);
        for (size_t i = 0; i < b.nprofiles; i++) {
            check_profile(b.profiles[i]);
            round_trip(b.profiles[i], &o);
        }
    }
    sp_arena_free(a);
    sp_buf_free(&inflated);
    return 0;
}
