/* The built-in web page (GET / and GET /ui): one self-contained HTML document (no external
 * scripts, styles, fonts or CDNs; query/page.html, embedded at build time) that talks only to its
 * own origin:
 *   - Traces: a service's recent traces (GET /api/v1/services, /api/v1/traces?service=) or a
 *     trace by id; the trace as a waterfall (GET /api/v1/traces/{id}) with each span's CPU,
 *     off-CPU and the rest drawn in its bar, spans under span_min_duration_ns marked;
 *   - a span's CPU or off-CPU flame graph (GET /api/v1/spans/{id}/profile?format=json) on a
 *     canvas, with zoom, search, self/total tooltips and the pprof download; "Compare with peers":
 *     the span against every span of its service and name (Diff) as a diff flame graph;
 *   - the service flame graph for a range (SelectMergeStacktraces, Connect JSON).
 * Links: /ui?span_id=... and #trace=<id>&span=<id>&type=<type id>; /ui/span/<16 hex> redirects
 * there (the trace API links to it). The browser test is tests/e2e/test_page_browser.py.
 *
 * Registered by query/query.c; the handler only copies a constant string.
 */
#ifndef QUERY_PAGE_H
#define QUERY_PAGE_H

#include "../server/router.h"

int query_page_register(srv_router *r);

/* The page itself (for tests). */
extern const char query_page_html[];

#endif
