/* Pyroscope's ingest API, as Pyroscope SDKs and Grafana Alloy send it:
 *
 *   POST
 * /ingest?name=app{k=v,...}&from=&until=&format=&sampleRate=&spyName=&units=&aggregationType= body:
 * pprof (raw or gzip), multipart/form-data with `profile` (+ `sample_type_config`), or collapsed
 * stacks text (format=folded / lines) POST /push.v1.PusherService/Push   Connect (application/proto
 * or application/json) or gRPC
 *
 * Every body ends as sp_profile values handed to the sink, like OTLP profiles. Called by
 * app/main.c to register the routes; the handlers run on worker threads.
 */
#ifndef OTLP_PYROSCOPE_H
#define OTLP_PYROSCOPE_H

#include "../server/router.h"
#include "pprof.h"
#include "sink.h"

typedef struct otlp_pyroscope_config {
    size_t max_recv_msg_size; /* also caps what a gzip body may inflate to */
    otlp_sink sink;
} otlp_pyroscope_config;

int otlp_pyroscope_register(srv_router *r, const otlp_pyroscope_config *cfg);

/* What /ingest's query string and headers say about its body. */
typedef struct otlp_ingest_params {
    const char *name;         /* app{k=v,...} (required) */
    const char *format;       /* pprof, folded, lines, or "" to detect */
    const char *content_type; /* multipart/form-data selects the Go SDK's form body */
    const char *units;        /* folded: samples, objects, bytes, goroutines, lock_... */
    int64_t sample_rate;      /* folded CPU: samples per second */
    int64_t from_ns, until_ns;
    size_t max_size; /* cap on what a gzip part may inflate to */
} otlp_ingest_params;

/* Decodes one /ingest body (after Content-Encoding) into b->profiles: no I/O, no HTTP, so tests
 * and fuzz targets drive it directly. */
int otlp_pyroscope_decode(const otlp_ingest_params *p, const uint8_t *body, size_t len, sp_batch *b,
                          otlp_pprof_result *res, sp_err *err);

/* Parses Pyroscope's "app.name{k=v,k2=v2}" into service_name plus labels (arena memory). */
int otlp_pyroscope_parse_name(const char *name, sp_arena *a, sp_kv **labels, uint32_t *n,
                              sp_err *err);

#endif
