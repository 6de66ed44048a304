/* libFuzzer target: Pyroscope /ingest bodies (otlp/pyroscope.c, otlp/pprof.c): app{k=v} names,
 * collapsed stacks, multipart/form-data with sample_type_config JSON, raw and gzip pprof; every
 * profile that decodes is encoded back to pprof.
 * Input: byte 0 picks the format and content type, then a NUL-terminated name, then the body. */
#include "otlp/pprof.h"
#include "otlp/pyroscope.h"

#include <stdint.h>
#include <string.h>
#include "fuzz_check.h"
#include "wire/pprof_write.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    static const char *formats[] = {"", "pprof", "folded", "lines", "jfr", "trie"};
    static const char *types[] = {NULL, "application/octet-stream",
                                  "multipart/form-data; boundary=XyZ",
                                  "multipart/form-data; boundary=\"a b\""};
    otlp_ingest_params p = {
        .format = formats[data[0] % 6],
        .content_type = types[(data[0] >> 3) % 4],
        .units = (data[0] & 0x40) ? "bytes" : "samples",
        .sample_rate = 100,
        .from_ns = 1,
        .max_size = 1 << 20,
    };
    const uint8_t *nul = memchr(data + 1, 0, size - 1);
    if (!nul)
        return 0;
    p.name = (const char *)data + 1;
    const uint8_t *body = nul + 1;
    size_t len = size - (size_t)(body - data);

    sp_arena *a = sp_arena_new(64u << 20);
    sp_batch b = {.tenant = "fuzz", .arena = a};
    otlp_pprof_result res;
    sp_err err = {0};
    int rc = otlp_pyroscope_decode(&p, body, len, &b, &res, &err);
    if (rc) {
        CHECK(err.code == rc && err.msg[0] != 0);
    } else {
        CHECK(res.bad_samples <= res.samples);
        for (size_t i = 0; i < b.nprofiles; i++) {
            const sp_profile *pr = b.profiles[i];
            CHECK(pr->type_id && pr->nseries >= 2); /* __name__ and service_name */
            for (uint32_t k = 0; k < pr->nsamples; k++)
                for (uint32_t j = 0; j < pr->samples[k].nlocations; j++)
                    CHECK(pr->samples[k].location_ids[j] < pr->nlocations);
            sp_buf out;
            sp_buf_init(&out, 0);
            CHECK(wire_pprof_encode(pr, &out, NULL) == 0);
            sp_buf_free(&out);
        }
    }
    sp_arena_free(a);
    return 0;
}
