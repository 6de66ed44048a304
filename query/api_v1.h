/* spanprof's own HTTP API, beyond Pyroscope's: from a trace to its spans' profiles.
 *
 *   GET /api/v1/traces/{trace_id}[?profile_type=&from=&until=]
 *       200 JSON: the trace's indexed spans (ascending start) with id, parent, name, service,
 *       start, duration, pid, thread id, the number of distinct stacks attached to each span,
 *       the sum of their values in the profile type (default CPU time,
 *       process_cpu:cpu:nanoseconds:cpu:nanoseconds), the attached sample count where the store
 *       keeps a samples:count type beside it (else null), and links to the span's flame graph
 *       page and profile download, and span_min_duration_ns (the correlator's minimum span
 *       duration: shorter spans get no inferred samples). 404 for a trace the span index does
 *       not hold.
 *   GET /api/v1/spans/{span_id}/profile?format=pprof|folded|json[&profile_type=&from=&until=
 *       &maxNodes=]
 *       the samples attached to the span: gzipped pprof (default; opens in `go tool pprof`),
 *       folded text (`root;...;leaf value` lines), or flamebearer JSON like /render's without the
 *       timeline (maxNodes as /render, default 8192). An empty profile when the span is indexed
 *       but nothing was attached; 404 when the span is neither indexed nor has samples.
 *
 * Ids are hex (32 digits for traces, 16 for spans); a malformed one is 400 naming the problem.
 * from/until (any form /render accepts) narrow the hours searched; by default a span's samples
 * are found whenever they were taken. Errors are JSON {"code","message"}. Every answer is scoped
 * to the request's tenant (X-Scope-OrgID). Registered by query/query.c; handlers run on worker
 * threads and read the store only.
 */
#ifndef QUERY_API_V1_H
#define QUERY_API_V1_H

#include "stacks.h"

#define QUERY_CPU_TYPE "process_cpu:cpu:nanoseconds:cpu:nanoseconds"

int query_api_v1_register(srv_router *r, const query_ctx *c);

#endif
