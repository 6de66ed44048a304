/* libFuzzer target: multipart/form-data /ingest bodies on their own (otlp/pyroscope.c), as the
 * Pyroscope Go SDK sends them: a "profile" part (pprof, raw or gzip) and a "sample_type_config"
 * JSON part, found by a boundary taken from the Content-Type parameter.
 * Input: the Content-Type parameters after "multipart/form-data; " up to the first '\n' (so the
 * fuzzer plays with quoting, case and length of boundary=), then the body.
 * A body that decodes yields at least one profile; a refusal names its reason. The same body is
 * also decoded cut short at two points (one within 64 bytes of the end, one anywhere): a
 * truncated form must be refused or decoded, never read past its end (ASan watches the copy). */
#include "otlp/pprof.h"
#include "otlp/pyroscope.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz_check.h"

static int decode(const char *ct, const uint8_t *body, size_t len, int check_ok)
{
    /* A heap copy of exactly len bytes, so reading one past the end is an ASan report. */
    uint8_t *copy = malloc(len ? len : 1);
    CHECK(copy);
    if (len)
        memcpy(copy, body, len);
    otlp_ingest_params p = {
        .name = "fuzz.app{env=x}",
        .format = "",
        .content_type = ct,
        .units = "samples",
        .sample_rate = 100,
        .from_ns = 1,
        .max_size = 1 << 20,
    };
    sp_arena *a = sp_arena_new(64u << 20);
    sp_batch b = {.tenant = "fuzz", .arena = a};
    otlp_pprof_result res;
    sp_err err = {0};
    int rc = otlp_pyroscope_decode(&p, copy, len, &b, &res, &err);
    if (rc) {
        CHECK(rc < 0 && err.code == rc && err.msg[0] != 0);
    } else if (check_ok) {
        CHECK(b.nprofiles >= 1);
        CHECK(res.bad_samples <= res.samples);
        for (size_t i = 0; i < b.nprofiles; i++)
            CHECK(b.profiles[i]->type_id && b.profiles[i]->nseries >= 2);
    }
    sp_arena_free(a);
    free(copy);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size < 256 ? size : 256);
    if (!nl)
        return 0;
    size_t plen = (size_t)(nl - data);
    if (memchr(data, 0, plen))
        return 0; /* a header value cannot carry NUL */
    char ct[300];
    memcpy(ct, "multipart/form-data; ", 21);
    memcpy(ct + 21, data, plen);
    ct[21 + plen] = 0;
    const uint8_t *body = nl + 1;
    size_t len = size - plen - 1;

    decode(ct, body, len, 1);
    if (len > 1) {
        decode(ct, body, len - 1 - data[0] % (len - 1 < 64 ? len - 1 : 64), 0);
        decode(ct, body, data[plen / 2] * len / 256, 0);
    }
    return 0;
}
