/* Self-observability: per-endpoint counters served as Prometheus text on GET /metrics.
 *
 * Endpoints are registered once at start-up (the router does it per route); counters are atomics,
 * so worker threads and the event loop update them without locks. Nothing here allocates after
 * start-up.
 */
#ifndef SP_METRICS_H
#define SP_METRICS_H

#include "buf.h"

#include <stdint.h>

#define SP_METRICS_MAX_ENDPOINTS 48

/* Returns the endpoint index for name (registering it on first use), or 0 ("other") when full. */
int sp_metrics_endpoint(const char *name);

/* The name an endpoint index was registered with ("other" for an unknown index). */
const char *sp_metrics_endpoint_name(int endpoint);

/* A request refused whole (sp_code < 0: its SP_E* code is the reason) or in part (sp_code 0). */
void sp_metrics_refused(int endpoint, int sp_code);

void sp_metrics_request_start(int endpoint);
/* code: the HTTP status, or the gRPC status for gRPC answers (label `code`, `grpc_code`). */
void sp_metrics_request_done(int endpoint, int http_status, int grpc, int grpc_status,
                             uint64_t received_bytes);
/* Items (profiles, spans, samples) accepted and rejected by a request's handler; endpoint as
 * returned by sp_metrics_endpoint() (the transport puts it in each request). */
void sp_metrics_items(int endpoint, uint64_t accepted, uint64_t rejected);
/* A process-wide gauge or counter outside the endpoint table (queue depth, connections...). */
void sp_metrics_gauge_set(const char *name, int64_t value);
void sp_metrics_gauge_add(const char *name, int64_t delta);

/* fn(ud) runs at the start of every render, to refresh gauges that are cheaper to read on demand
 * than to keep current (the correlator's window). One hook; set it before serving. */
void sp_metrics_on_render(void (*fn)(void *ud), void *ud);

int sp_metrics_render(sp_buf *out);

#endif
