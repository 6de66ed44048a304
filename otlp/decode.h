/* OTLP request bytes -> validated protobuf-c message, in one call.
 *
 * The pipeline every OTLP ingest path shares (otlp/service.c; the fuzz targets): nesting-depth
 * check (wire/pb.c), for profiles the v1.9 -> v1.10 layout rewrite (otlp/layout.c), protobuf-c
 * unpack into the request's arena, and item-by-item validation (otlp/validate.c). It knows nothing
 * of HTTP, gRPC framing or compression, and never converts or stores anything.
 */
#ifndef OTLP_DECODE_H
#define OTLP_DECODE_H

#include "layout.h"
#include "validate.h"

#include "../common/arena.h"
#include "../common/err.h"

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

enum { OTLP_SIGNAL_PROFILES = 1, OTLP_SIGNAL_TRACES = 2 };

typedef struct otlp_decoded {
    /* An otlp_profiles_req or otlp_traces_req (by signal), allocated in the arena. */
    ProtobufCMessage *msg;
    otlp_layout_info layout; /* profiles only */
    otlp_verdict verdict;    /* which items are bad, and the first problem */
} otlp_decoded;

/* Arena budget for decoding a message of len bytes: protobuf-c structs are larger than their wire
 * form (a packed int32 index grows from ~2 to 4 bytes, a 20-byte Sample to ~140 bytes with its
 * arrays); real OTLP payloads expand 5-12x, so 32x + 4 MiB leaves room while bounding hostile
 * input (a message of empty Samples would expand ~50x). */
size_t otlp_decode_budget(size_t len);

/* Decodes and validates msg[0..len) as ExportProfilesServiceRequest (OTLP_SIGNAL_PROFILES) or
 * ExportTraceServiceRequest (OTLP_SIGNAL_TRACES), allocating from a. Returns 0 with *out filled
 * (bad items are reported in out->verdict, not as an error); SP_EINVAL when the bytes do not
 * decode (message names what is wrong) or profiles come without a dictionary; SP_ETOOBIG when
 * the arena's budget runs out. */
int otlp_decode(int signal, const uint8_t *msg, size_t len, sp_arena *a, otlp_decoded *out,
                sp_err *err);

/* otlp_decode() for bytes known to be in the current profiles layout (packed by this program from
 * OTLP JSON, whose fields are named, not numbered): the v1.9 layout detection is skipped, the
 * rest is the same, with the same errors. */
int otlp_decode_current(int signal, const uint8_t *msg, size_t len, sp_arena *a, otlp_decoded *out,
                        sp_err *err);

#endif
