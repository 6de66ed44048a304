/* Protobuf JSON mapping (proto3 "JSON Mapping", as Go's protojson and connect-go apply it), driven
 * by protobuf-c descriptors, so every querier message gets JSON without code per message.
 *
 * Writing: lowerCamelCase field names (protoc's json_name), fields at their default value left
 * out, 64-bit integers as decimal strings, enums by name, bytes as standard base64, NaN and
 * infinities as "NaN" / "Infinity" / "-Infinity", strings escaped (invalid UTF-8 becomes U+FFFD).
 * Reading: the lowerCamelCase or the proto field name, integers as numbers or decimal strings,
 * enums by name or number, bytes as standard or URL-safe base64 with or without padding (or hex,
 * for the fields the caller's bytes_form hook names: OTLP's ids), null as the default, unknown
 * fields ignored. jansson parses the body into a tree first; the tree's memory can be bounded
 * (max_tree_bytes) by a counting allocator this module installs into jansson once, process-wide
 * (plain malloc/free underneath, counting only while a bounded parse runs on that thread).
 *
 * Called by query/connect.c (Connect JSON), query/api_*.c and query/render.c (string literals), and
 * otlp/json.c (OTLP/HTTP JSON). Decoded messages live in the caller's arena; nothing
 * here knows about HTTP or about any particular message.
 */
#ifndef WIRE_PBJSON_H
#define WIRE_PBJSON_H

#include "../common/arena.h"
#include "../common/buf.h"
#include "../common/err.h"

#include <protobuf-c/protobuf-c.h>

/* How a bytes field is spelled in JSON. proto3 says base64; OTLP JSON ("JSON Protobuf Encoding")
 * writes trace and span ids as hex instead. */
typedef enum {
    WIRE_JSON_BYTES_BASE64 = 0,
    WIRE_JSON_BYTES_HEX,           /* hex digits only (either case); "" = empty */
    WIRE_JSON_BYTES_HEX_OR_BASE64, /* hex when it is exactly 2 x want hex digits, else base64 */
} wire_json_bytes;

typedef struct wire_json_opts {
    /* The form of bytes field f of message d; for the hex forms *want gets the byte length the
     * value must have (0 = any). NULL: every bytes field is base64. */
    wire_json_bytes (*bytes_form)(const ProtobufCMessageDescriptor *d,
                                  const ProtobufCFieldDescriptor *f, size_t *want);
    /* Errors name the value by its JSON path ("resourceSpans[0].scopeSpans[1].spans[3].traceId:
     * 31 hex digits, want 32") instead of the Connect codec's "field traceId: ...". */
    int paths;
    int max_depth;         /* message nesting limit; 0 = 64 */
    size_t max_tree_bytes; /* what jansson may allocate for the parsed tree; 0 = no limit */
} wire_json_opts;

/* Parses data as a JSON object of message type d into a. Errors (all "drop this request", none
 * fatal): SP_EINVAL when the body is not JSON or a value does not fit its field (the message names
 * the field and the problem), or messages nest deeper than the limit; SP_ETOOBIG when the arena's
 * budget or max_tree_bytes runs out. opts may be NULL (the Connect behaviour: base64 bytes, field
 * names in errors, depth 64, no tree budget). */
int wire_json_decode_opts(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len,
                          sp_arena *a, const wire_json_opts *opts, ProtobufCMessage **out,
                          sp_err *err);

/* wire_json_decode_opts() with opts NULL: SP_EINVAL names the field and the problem; SP_ETOOBIG
 * when the arena budget runs out. */
int wire_json_decode(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len,
                     sp_arena *a, ProtobufCMessage **out, sp_err *err);

/* Appends m as a JSON object. 0, or the sp_buf error (SP_ETOOBIG past the buffer's limit). */
int wire_json_encode(const ProtobufCMessage *m, sp_buf *out);

/* Appends s[0..n) as a JSON string literal (quotes included). */
int wire_json_string(sp_buf *out, const char *s, size_t n);

/* Appends a double as proto3 JSON writes it: the shortest decimal that reads back as v, or the
 * strings "NaN", "Infinity", "-Infinity". */
int wire_json_double(sp_buf *out, double v);

/* Appends p[0..n) as a JSON string of standard base64 with padding (proto3 JSON's bytes). */
int wire_json_base64(sp_buf *out, const uint8_t *p, size_t n);

#endif
