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

/* A profiles request decoded one ResourceProfiles at a time, so that a large one can be
 * converted and stored in parts while the rest is still bytes (otlp/service.c streams them):
 * protobuf-c unpacks the dictionary first and each resource when its part needs it, and the
 * unpacked part is still in the cache when it is converted.
 *
 * otlp_decode_profiles() is otlp_decode(OTLP_SIGNAL_PROFILES) (detect_layout 1) or
 * otlp_decode_current() (0), with the same errors, except that a request of at least two
 * resource_profiles and lazy_min_samples Samples whose bytes have the plain shape (invariant L1
 * in decode.c) comes back with *lazy set: out->msg then has its dictionary and
 * n_resource_profiles, but resource_profiles[i] is NULL until unpacked, and out->verdict has its
 * total but judges only the unpacked resources. *lazy is NULL when the request was decoded whole
 * (then too each resource of a request in the L1 shape went through otlp/hand_unpack.c, L7).
 * Everything lives in the arena a; the caller holds out and *lazy as long as the arena. */
typedef struct otlp_profiles_lazy otlp_profiles_lazy;
/* helper 1 lets a large dictionary be unpacked on a thread of its own beside the layout pass
 * (L4-L6 in decode.c): worth it only when a core would otherwise be idle. */
int otlp_decode_profiles(const uint8_t *msg, size_t len, int detect_layout, size_t lazy_min_samples,
                         int helper, sp_arena *a, otlp_decoded *out, otlp_profiles_lazy **lazy,
                         sp_err *err);
/* The request's resource_profiles entries, and the Samples resource i holds (read from its bytes).
 */
size_t otlp_profiles_lazy_resources(const otlp_profiles_lazy *lz);
size_t otlp_profiles_lazy_samples(const otlp_profiles_lazy *lz, size_t i);
/* Resources unpacked so far (they are unpacked in request order). */
size_t otlp_profiles_lazy_unpacked(const otlp_profiles_lazy *lz);
/* Unpacks and validates the next n resources (fewer at the end; SIZE_MAX: all the rest) into the
 * out->msg and out->verdict given to otlp_decode_profiles(). Fails with SP_EINVAL naming the
 * resource and its offset when its bytes do not decode, SP_ETOOBIG when the arena's budget runs
 * out, SP_EINTERNAL when protobuf-c unpacked other counts than the walk of the bytes found (L2).
 * After a failure the request must be refused whole. */
int otlp_profiles_lazy_unpack(otlp_profiles_lazy *lz, size_t n, sp_err *err);

#endif
