/* query/: the Pyroscope-compatible read side of spanprof.
 *
 * Owns the querier API that Grafana's Pyroscope data source and Tempo's traces-to-profiles link
 * call (querier.v1.QuerierService over Connect and gRPC), flame graph building, pprof export, the
 * Pyroscope HTTP endpoints (/pprof, /render) and the built-in web page (/, /ui). Everything it
 * answers comes from the store's read functions; it never ingests, never writes the store, and
 * never sees a socket (handlers run on the server's worker threads).
 *
 * Called once by app/main.c after the store is open. The router, the store and cfg must
 * outlive the server; query_register() keeps pointers to them (one registration per process).
 */
#ifndef QUERY_QUERY_H
#define QUERY_QUERY_H

#include "../server/router.h"
#include "../storage-adapter/store.h"

#include <stddef.h>
#include <stdint.h>

/* Zero-initialised = every default. */
typedef struct query_config {
    size_t max_recv_msg_size;  /* request body cap, compressed and inflated; 0 = 4 MiB */
    size_t query_budget;       /* memory one query may use for its answer; 0 = 1 GiB */
    int64_t max_nodes_default; /* flame graph nodes when a request says 0; 0 = 8192 */
    int64_t max_nodes_max;     /* largest max_nodes a request may ask for; 0 = 1 << 20 */
    int64_t span_min_duration_ns; /* the correlator's minimum span duration, told in trace
                                     answers so the page marks shorter spans; 0 = not told */
} query_config;

/* Adds the routes:
 *   POST /querier.v1.QuerierService/{ProfileTypes, LabelNames, LabelValues, Series,
 *        SelectMergeStacktraces, SelectMergeSpanProfile, SelectMergeProfile, SelectSeries,
 *        SelectHeatmap, Diff, GetProfileStats, AnalyzeQuery}
 *        (Connect unary proto/JSON and gRPC; other methods of the service: unimplemented)
 *   POST /settings.v1.SettingsService/Get     (no stored settings)
 *   GET  /pprof, /render, /pyroscope/render, /pyroscope/render-diff (Pyroscope's HTTP endpoints)
 *   GET  /api/v1/traces/{trace_id}, /api/v1/spans/{span_id}/profile  (spanprof's own, api_v1.h)
 *   GET  /, /ui, /ui/span/{span_id}          (the flame graph page)
 * Returns 0, or the router's error. */
int query_register(srv_router *r, store *s, const query_config *cfg);

#endif
