/* Protobuf JSON mapping (proto3 "JSON Mapping", as Go's protojson and connect-go apply it), driven
 * by protobuf-c descriptors, so every querier message gets JSON without code per message.
 *
 * Writing: lowerCamelCase field names (protoc's json_name), fields at their default value left
 * out, 64-bit integers as decimal strings, enums by name, bytes as standard base64, NaN and
 * infinities as "NaN" / "Infinity" / "-Infinity", strings escaped (invalid UTF-8 becomes U+FFFD).
 * Reading: the lowerCamelCase or the proto field name, integers as numbers or decimal strings,
 * enums by name or number, bytes as standard or URL-safe base64 with or without padding, null as
 * the default, unknown fields ignored.
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

/* Parses data as a JSON object of message type d. SP_EINVAL names the field and the problem;
 * SP_ETOOBIG when the arena budget runs out. */
int wire_json_decode(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len,
                      sp_arena *a, ProtobufCMessage **out, sp_err *err);

/* Appends m as a JSON object. 0, or the sp_buf error (SP_ETOOBIG past the buffer's limit). */
int wire_json_encode(const ProtobufCMessage *m, sp_buf *out);

/* Appends s[0..n) as a JSON string literal (quotes included). */
int wire_json_string(sp_buf *out, const char *s, size_t n);

#endif
