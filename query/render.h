/* Pyroscope's HTTP query endpoints:
 *
 *   GET /pprof?query=<type id>{<selector>}&from=&until=[&span_id=<hex>[,<hex>...]][&maxNodes=]
 *       the merged stacks as a gzipped pprof download (Content-Disposition: attachment);
 *       with span_id, only the samples attached to those spans (the time range then does not
 *       apply); no truncation unless maxNodes is given
 *   GET /render, /pyroscope/render ?query=&from=&until=&format=json&maxNodes=
 *       Pyroscope's "flamebearer" JSON (flame graph + timeline), as the legacy UI and the
 *       Profiles Drilldown app read it
 *
 * Times: "now", "now-1h" (s m h d w y, ms), or unix seconds / ms / µs / ns; defaults now-1h..now.
 * Errors are Pyroscope's JSON {"code","message"} with the matching HTTP status.
 * Registered by query/query.c; handlers run on worker threads.
 */
#ifndef QUERY_RENDER_H
#define QUERY_RENDER_H

#include "stacks.h"

int query_render_register(srv_router *r, const query_ctx *c);

#endif
