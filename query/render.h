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

#include "flamegraph.h"
#include "stacks.h"

int query_render_register(srv_router *r, const query_ctx *c);

/* Appends the start of a flamebearer document: {"version":1,"flamebearer":{names, levels,
 * numTicks, maxSelf},"metadata":{format, spyName, sampleRate, units, name} -- without the closing
 * brace, so the caller adds "timeline" and the rest. 0, or the sp_buf error. */
/* Pyroscope's units and sample rate for a sample type, as its ExportToFlamebearer and render
 * handler give them ("samples" at 1e9 for cpu, "objects" for object counts, else the unit). */
void query_units_of(const query_type *t, const char **units, long long *rate);

int query_flamebearer_open(sp_buf *o, const query_flamegraph *fg, const query_type *t);

#endif
