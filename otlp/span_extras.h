/* What the span index keeps of an OTLP span besides its row: attributes, kind, status, events,
 * links, and the attributes of its resource and scope, as one blob per span (sp_span.extras).
 *
 * The blob is an OTLP ResourceSpans message (opentelemetry/proto/trace/v1/trace.proto) holding
 * one resource, one scope and one span, without what the row already has (ids, name, times):
 * the format is OTLP's own, so nothing new has to be specified, any protobuf reader can read a
 * row, and query/span_extras.c reads it back with the same generated code that decodes
 * requests. The store keeps the resource and scope part once per distinct content and the span's
 * part apart (storage-adapter/sqlite_extras.c), and gives back the same bytes.
 *
 * Bounded: a blob never exceeds its cap (OTLP_SPAN_EXTRAS_CAP). Whole items are cut to fit, in
 * this order of priority: the span's attributes, the resource's, the scope's, then events, then
 * links (earlier items first). What is cut is added to the stored dropped_*_count fields and
 * counted by the caller (spanprof_span_attributes_truncated_total).
 *
 * Called by otlp/spans.c on the worker thread converting a request; memory from the batch's
 * arena. Never fails the request: when the arena is spent a span is stored without extras.
 */
#ifndef OTLP_SPAN_EXTRAS_H
#define OTLP_SPAN_EXTRAS_H

#include "../common/arena.h"
#include "opentelemetry/proto/trace/v1/trace.pb-c.h"

#include <stddef.h>
#include <stdint.h>

#define OTLP_SPAN_EXTRAS_CAP (64 * 1024)

/* The resource and scope part of the blobs of one ScopeSpans, made once for all its spans. */
typedef struct otlp_extras_head {
    uint8_t *res, *scope; /* packed Resource and InstrumentationScope; NULL = none */
    size_t nres, nscope;
    uint64_t cut; /* resource and scope attributes cut to fit */
} otlp_extras_head;

/* Packs the resource and scope of a ScopeSpans (either may be NULL) within half of cap, cutting
 * attributes past it. 0, or SP_ETOOBIG when the arena is spent (then *h says "none"). */
int otlp_extras_head_make(const Opentelemetry__Proto__Resource__V1__Resource *res,
                          const Opentelemetry__Proto__Common__V1__InstrumentationScope *scope,
                          size_t cap, sp_arena *a, otlp_extras_head *h);

/* The blob of span s under head h, at most cap bytes, in arena memory; *cut += the items cut
 * (the head's own cuts are not added here). 0, or SP_ETOOBIG when the arena is spent or not
 * even the fixed part (status message, trace state, head) fits in cap: then *out = NULL. */
int otlp_span_extras(const otlp_extras_head *h, const Opentelemetry__Proto__Trace__V1__Span *s,
                     size_t cap, sp_arena *a, const uint8_t **out, uint32_t *len, uint64_t *cut);

#endif
