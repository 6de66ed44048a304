/* The built-in web page (GET / and GET /ui): one self-contained HTML document (no external
 * scripts, styles, fonts or CDNs) that lists the profile types and services, draws the flame
 * graph of SelectMergeStacktraces (Connect JSON, from the page's own origin) on a canvas, and
 * switches to a span's flame graph (SelectMergeSpanProfile) when a span id is entered. Query
 * string parameters prefill it: type, service, query, span_id, range, tenant (e.g.
 * /ui?span_id=...); /ui/span/<16 hex> redirects there (the trace API links to it). A span's
 * flame graph is asked for without a time range: its samples whenever they were taken.
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
