/* OTLP/HTTP JSON ("JSON Protobuf Encoding" of the OTLP spec) -> the protobuf bytes the binary path
 * decodes, so JSON requests take exactly the protobuf path's validation, conversion, correlation
 * and forwarding.
 *
 * The body is parsed by the shared descriptor-driven codec (wire/pbjson.c, which also serves
 * Connect JSON) with OTLP's rules: lowerCamelCase or proto field names, trace and span ids
 * (Span.trace_id / span_id / parent_span_id, Span.Link.trace_id / span_id, profiles
 * Link.trace_id / span_id) as hex, Profile.profile_id as hex or base64, other bytes as base64,
 * enums as numbers or names, 64-bit integers as strings or numbers, unknown fields ignored. The
 * decoded message is packed again with protobuf-c, and the caller hands those bytes to
 * otlp_decode_current() (skipping the v1.9 layout detection: JSON names its fields, so it is
 * always the current layout). The re-pack was chosen over validating the JSON-decoded message
 * directly because trace forwarding needs protobuf bytes anyway and the path after it stays one;
 * its cost is in bench/RESULTS.md ("OTLP JSON"): about 12x the protobuf decode per span.
 *
 * Memory: jansson's tree, the decoded message and the packed bytes are each bounded by
 * otlp_decode_budget(len) of the JSON length (and the packed bytes by max), so hostile JSON cannot
 * expand without bound; messages nest at most WIRE_PB_MAX_DEPTH deep. Called by otlp/service.c
 * and the fuzz target; knows nothing of HTTP.
 */
#ifndef OTLP_JSON_H
#define OTLP_JSON_H

#include "../common/buf.h"
#include "../common/err.h"

#include <stddef.h>
#include <stdint.h>

/* Parses json[0..len) as an ExportProfilesServiceRequest (OTLP_SIGNAL_PROFILES) or
 * ExportTraceServiceRequest (OTLP_SIGNAL_TRACES) and appends its protobuf encoding to out.
 * Errors (drop the request; none fatal): SP_EINVAL when the body is not JSON, not an object, or a
 * value does not fit its field, naming the JSON path and the problem
 * ("resourceSpans[0].scopeSpans[1].spans[3].traceId: 31 hex digits, want 32"); SP_ETOOBIG when
 * the parse needs more memory than the budget or the packed message is larger than max bytes;
 * SP_ENOMEM when memory runs out; SP_EINTERNAL for an unknown signal. */
int otlp_json_to_protobuf(int signal, const uint8_t *json, size_t len, size_t max, sp_buf *out,
                          sp_err *err);

#endif
