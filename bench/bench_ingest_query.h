/* bench_ingest_query: the query side of bench_ingest — span queries while ingest runs.
 *
 * Before the timed run, bq_send_spans() posts one OTLP/HTTP traces request (protobuf) with one
 * span per (process, thread) of bench_ingest's first request, covering its 5 s, so that request's
 * samples attach to them by thread; during the run bq_run() asks
 * querier.v1.QuerierService/SelectMergeSpanProfile (Connect JSON over HTTP/1.1 keep-alive, as
 * Grafana's "Profiles for this span" does) for a random one of those spans at a fixed rate, and
 * records each answer's latency and whether it held samples. Benchmark code: errors end the
 * process.
 */
#ifndef SPANPROF_BENCH_INGEST_QUERY_H
#define SPANPROF_BENCH_INGEST_QUERY_H

#include <stddef.h>
#include <stdint.h>

typedef struct bq_config {
    int http_port;
    int procs, threads; /* bench_ingest's shape: pids 1000 + p, thread ids 100000 + p*threads + t */
    int64_t t0_ns;      /* the first request's start */
    double rate;        /* queries per second */
} bq_config;

typedef struct bq_result {
    double *lat_ms; /* one per query asked */
    int n, cap;
    int empty;  /* answers without samples */
    int failed; /* answers other than 200 */
} bq_result;

/* The value of metric `name` in the server's GET /metrics (summed over its series), -1 when it
 * is not there. */
double bq_metric(int http_port, const char *name);
/* Posts the spans; returns after the server answered 200. */
void bq_send_spans(const bq_config *c);
/* Asks span queries at c->rate from when *start becomes non-zero until *stop does (both read
 * atomically); fills r. */
void bq_run(const bq_config *c, const int *start, const int *stop, bq_result *r);

#endif
