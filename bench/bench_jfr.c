/* bench_jfr: JFR parsing throughput (otlp/jfr*.c), as /ingest?format=jfr runs it: one recording
 * parsed again and again into a fresh arena, profiles built. Prints MB/s of recording per CPU
 * second of the calling thread (a shared machine does not skew it) and what one parse yields.
 *
 *   bench_jfr FILE.jfr [iterations]
 */
#include "bench_util.h"
#include "common/arena.h"
#include "otlp/jfr.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_jfr FILE.jfr [iterations]\n");
        return 2;
    }
    int iters = argc > 2 ? atoi(argv[2]) : 200;
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *data = malloc((size_t)len);
    if (!data || fread(data, 1, (size_t)len, f) != (size_t)len) {
        fprintf(stderr, "bench_jfr: cannot read %s\n", argv[1]);
        return 1;
    }
    fclose(f);
    otlp_jfr_result r = {0};
    double t = bench_thread_cpu_s(), worst = 0;
    for (int i = 0; i < iters; i++) {
        double t1 = bench_thread_cpu_s();
        sp_arena *a = sp_arena_new(0);
        sp_err err = {0};
        if (otlp_jfr_parse(data, (size_t)len, NULL, a, &r, &err)) {
            fprintf(stderr, "bench_jfr: %s\n", err.msg);
            return 1;
        }
        sp_arena_free(a);
        double dt = bench_thread_cpu_s() - t1;
        if (dt > worst)
            worst = dt;
    }
    double secs = bench_thread_cpu_s() - t;
    printf("bench_jfr: %s, %ld bytes, %d parses\n", argv[1], len, iters);
    printf("%.1f MB/s of JFR per CPU second; %.3f ms per parse (worst %.3f ms); %u chunks, "
           "%llu events, %llu samples into %u profiles\n",
           (double)len * iters / secs / 1e6, secs / iters * 1e3, worst * 1e3, r.chunks,
           (unsigned long long)r.events, (unsigned long long)r.samples, r.nprofiles);
    free(data);
    return 0;
}
