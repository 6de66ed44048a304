/* One ResourceProfiles unpacked with its Samples decoded by hand.
 *
 * protobuf-c's generic unpack costs about 40 ns a Sample (a scan of the fields, then a parse
 * with a descriptor lookup per field, four allocations and an init copy): a fifth of an ingest
 * worker's time on eBPF-shaped Exports (bench/RESULTS.md, "Samples decoded by hand"). Here the
 * Samples' bytes are cut out of their Profiles, protobuf-c unpacks what is left (resource,
 * scopes, profile headers: a few hundred bytes), and a decoder that knows the five fields of a
 * Sample fills the structs protobuf-c would have, with every array of the resource in one block.
 *
 * The result is the message protobuf-c's unpack of the same bytes gives, field for field
 * (tests/fuzz/fuzz_otlp_samples.c packs both and compares the bytes). Anything this decoder
 * does not take in exactly protobuf-c's way (an unknown or repeated-unpacked field in a Sample, a
 * wrong wire type, an overlong tag, a truncated or overlong varint, a packed fixed64 of a length
 * not a multiple of 8) makes it answer NULL, and the caller unpacks with protobuf-c, so errors and
 * merge rules stay protobuf-c's. Threading: none of its own; memory: from the arena given. */
#ifndef OTLP_SAMPLES_H
#define OTLP_SAMPLES_H

#include "../common/arena.h"
#include "opentelemetry/proto/profiles/v1development/profiles.pb-c.h"

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* Unpacks bytes[0..len) (a ResourceProfiles in the current layout) like
 * opentelemetry__proto__profiles__v1development__resource_profiles__unpack(alloc, len, bytes).
 * nprofiles and nsamples are the Profiles and Samples a walk of the bytes counted (the caller's
 * L1 walk in decode.c); a resource holding others, or any shape described above, gives NULL.
 * NULL also when alloc or a runs out (the caller's protobuf-c unpack then reports it). alloc
 * allocates from a. */
Opentelemetry__Proto__Profiles__V1development__ResourceProfiles *
otlp_samples_unpack_resource(const uint8_t *bytes, size_t len, size_t nprofiles, size_t nsamples,
                             ProtobufCAllocator *alloc, sp_arena *a);

#endif
