/* Finding traces: the way into spanprof's own API for the page and the terminal client.
 *
 *   GET /api/v1/services[?from=&until=]
 *       200 {"services":[...]}: the services that sent spans starting in the range (default: the
 *       last hour), sorted.
 *   GET /api/v1/traces?service=<name>[&from=&until=][&limit=20]
 *       200 {"service","traces":[{"trace_id","root_span_id","root_name","root_service",
 *       "start_ns","duration_ns","span_count","cpu_time_ns","off_cpu_time_ns"}],"truncated"}:
 *       the traces with a span of the service starting in the range (default: the last hour),
 *       the most recent first, at most limit (1..1000). start/duration cover the trace's indexed
 *       spans; the root is its first span without a parent in the trace. CPU and off-CPU time
 *       are what was attached to the trace's outermost span in each process (a sample is
 *       attached to a span and its ancestors in its process, so this counts it once).
 *       400 without service or with a bad range or limit.
 *   GET /api/apps
 *       200 [{"name","sampleRate","units","serviceName","profileType"}]: Pyroscope's legacy
 *       application list (its ApplicationMetadata: name = "<service_name>.<sample type>", e.g.
 *       "checkout.cpu", with the units and sample rate /render gives), one entry per service and
 *       profile type the tenant has series of, whatever their time; serviceName and profileType
 *       are spanprof's additions (the series' service_name and full profile type id).
 *
 * Registered by query/query.c; handlers run on worker threads and read the store only; every
 * answer is scoped to the request's tenant.
 */
#ifndef QUERY_API_FIND_H
#define QUERY_API_FIND_H

#include "stacks.h"

int query_api_find_register(srv_router *r, const query_ctx *c);

#endif
