/* A span's extras blob (otlp/span_extras.h: an OTLP ResourceSpans of one span, read from the
 * span index) as the JSON fields of a span in GET /api/v1/traces/{id}.
 *
 * Called by query/api_v1.c on a worker thread; decodes in the request's arena. The blob comes
 * from disk, so it is checked like a request (nesting depth bounded before protobuf-c unpacks it,
 * the shape checked after): a damaged blob is answered as "nothing kept", counted in
 * spanprof_span_attributes_damaged_total and logged (rate-limited), never trusted.
 */
#ifndef QUERY_SPAN_EXTRAS_H
#define QUERY_SPAN_EXTRAS_H

#include "../common/arena.h"
#include "../common/buf.h"

#include <stddef.h>
#include <stdint.h>

/* Appends `,"kind":...,"status":...,"attributes":{...},"events":[...],"links":[...],
 * "resource":{...},"scope":...,"dropped":{...}` for blob b[0..n) (n == 0: nothing kept; kind,
 * status and scope are null, the rest empty). Attribute values: string, bool, double and bytes
 * (base64) as proto3 JSON writes them; int as a JSON number within ±2^53, else a decimal string;
 * arrays as arrays, kvlists as objects, an unset value as null.
 * Returns 0; SP_EINVAL when the blob is damaged (the "nothing kept" form was appended, the damage
 * counted and logged: not fatal, the caller answers as usual); or the sp_buf error (SP_ETOOBIG,
 * SP_ENOMEM: drop the answer). */
int query_span_extras_json(sp_buf *o, const uint8_t *b, size_t n, sp_arena *a);

#endif
