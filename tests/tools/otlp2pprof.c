/* otlp2pprof: runs spanprof's OTLP profiles path (decode, layout rewrite, validation, conversion)
 * on a serialized ExportProfilesServiceRequest and writes each resulting profile as a pprof file,
 * so golden tests can read the output with `go tool pprof`. Test tool, not shipped.
 *
 *   otlp2pprof REQUEST.bin OUTDIR   → OUTDIR/0.pb, OUTDIR/1.pb, ... and OUTDIR/index.tsv
 *                                     (file, type id, service_name, samples)
 */
#include "common/arena.h"
#include "common/buf.h"
#include "otlp/convert.h"
#include "otlp/decode.h"
#include "otlp/pprof.h"
#include "wire/pprof_write.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int read_file(const char *path, sp_buf *out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (sp_buf_append(out, chunk, n)) {
            fclose(f);
            return -1;
        }
    fclose(f);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: otlp2pprof REQUEST.bin OUTDIR\n");
        return 2;
    }
    sp_buf in;
    sp_buf_init(&in, 0);
    if (read_file(argv[1], &in)) {
        perror(argv[1]);
        return 1;
    }
    sp_arena *a = sp_arena_new(otlp_decode_budget(in.len) * 2);
    otlp_decoded dec;
    sp_err err = {0};
    sp_batch b = {.tenant = "anonymous", .arena = a};
    if (otlp_decode(OTLP_SIGNAL_PROFILES, in.data, in.len, a, &dec, &err) ||
        otlp_profiles_convert((const otlp_profiles_req *)dec.msg, &dec.verdict, 1, &b, &err)) {
        fprintf(stderr, "otlp2pprof: %s\n", err.msg);
        return 1;
    }
    if (dec.verdict.bad)
        fprintf(stderr, "otlp2pprof: %zu profiles rejected: %s\n", dec.verdict.bad,
                dec.verdict.first.msg);
    char path[4096];
    snprintf(path, sizeof path, "%s/index.tsv", argv[2]);
    FILE *idx = fopen(path, "w");
    if (!idx) {
        perror(path);
        return 1;
    }
    for (size_t i = 0; i < b.nprofiles; i++) {
        sp_buf out;
        sp_buf_init(&out, 0);
        if (wire_pprof_encode(b.profiles[i], &out, &err)) {
            fprintf(stderr, "otlp2pprof: %s\n", err.msg);
            return 1;
        }
        snprintf(path, sizeof path, "%s/%zu.pb", argv[2], i);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(out.data, 1, out.len, f) != out.len || fclose(f)) {
            perror(path);
            return 1;
        }
        const char *svc = "";
        for (uint32_t k = 0; k < b.profiles[i]->nseries; k++)
            if (strcmp(b.profiles[i]->series[k].name, "service_name") == 0)
                svc = b.profiles[i]->series[k].value;
        fprintf(idx, "%zu.pb\t%s\t%s\t%u\n", i, b.profiles[i]->type_id, svc,
                b.profiles[i]->nsamples);
        sp_buf_free(&out);
    }
    fclose(idx);
    sp_arena_free(a);
    sp_buf_free(&in);
    return 0;
}
