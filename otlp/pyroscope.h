/* Pyroscope's ingest API, as Pyroscope SDKs and Grafana Alloy send it:
 *
 *   POST /ingest?name=app{k=v,...}&from=&until=&format=&sampleRate=&spyName=&units=&aggregationType=
 *        body: pprof (raw or gzip), multipart/form-data with `profile` (+ `sample_type_config`),
 *        or collapsed stacks text (format=folded / lines)
 *   POST /push.v1.PusherService/Push   Connect (application/proto or application/json) or gRPC
 *
 * Every body ends as sp_profile values handed to the sink, like OTLP profiles. Called by
 * server/main.c to register the routes; the handlers run on worker threads.
 */
#ifndef OTLP_PYROSCOPE_H
#define OTLP_PYROSCOPE_H

#include "../server/router.h"
#include "sink.h"

typedef struct otlp_pyroscope_config {
    size_t max_recv_msg_size; /* also caps what a gzip body may inflate to */
    otlp_sink sink;
} otlp_pyroscope_config;

int otlp_pyroscope_register(srv_router *r, const otlp_pyroscope_config *cfg);

/* Parses Pyroscope's "app.name{k=v,k2=v2}" into service_name plus labels (arena memory). */
int otlp_pyroscope_parse_name(const char *name, sp_arena *a, sp_kv **labels, uint32_t *n,
                              sp_err *err);

#endif
