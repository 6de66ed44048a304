/* The hot parts of an OTLP profiles request decoded by hand: every Sample of a ResourceProfiles,
 * and the location, function, string and stack tables of the ProfilesDictionary.
 *
 * protobuf-c's unpack is generic: a scan of each message's fields, then a parse with a
 * descriptor lookup per field, an allocation per message and per array, and an init copy. On
 * eBPF-shaped Exports that was a third of an ingest worker's time (bench/RESULTS.md, "Samples and
 * dictionaries decoded by hand"). Here the hot fields' bytes are cut out of their message,
 * protobuf-c unpacks what is left (resource, scopes, profile headers, mappings, links,
 * attributes), and decoders that know the few scalar fields of a Sample, Location, Line,
 * Function and Stack fill the structs protobuf-c would have, each kind in one block.
 *
 * The result is the message protobuf-c's unpack of the same bytes gives, field for field
 * (tests/fuzz/fuzz_otlp_hand_unpack.c packs both and compares the bytes). Anything these decoders
 * do not take in exactly protobuf-c's way (an unknown field in a hand-decoded message, a wire
 * type protobuf-c refuses, a tag of more than one byte, a truncated or overlong varint, a packed
 * fixed64 of a length not a multiple of 8) makes them answer NULL, and the caller unpacks with
 * protobuf-c, so errors and merge rules stay protobuf-c's. Threading: none of its own; memory:
 * from the arena given, which alloc must allocate from too. */
#ifndef OTLP_HAND_UNPACK_H
#define OTLP_HAND_UNPACK_H

#include "../common/arena.h"
#include "layout.h"
#include "opentelemetry/proto/profiles/v1development/profiles.pb-c.h"

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* What one walk of a Sample's bytes tells both the layout vote (otlp/layout.c) and the decoder
 * here, so that the layout pass over every Sample of a request also does the decoder's first
 * walk (otlp_resource_census). Field numbers are the current layout's. */
typedef struct otlp_sample_facts {
    unsigned f2;                 /* field 2 met (attribute_indices) */
    unsigned f2_misfit;          /* a field-2 value >= the nattr given */
    unsigned f4var;              /* field-4 VARINTs met (unpacked values) */
    unsigned f4len;              /* field 4 met as LEN (packed values) */
    unsigned f5;                 /* field 5 met (timestamps) */
    size_t values, attrs, times; /* the Sample's array lengths */
} otlp_sample_facts;

/* Walks Sample bytes p[0..len) when they have the shape decoded here (S1 in hand_unpack.c: one-byte
 * tags of fields 1-5 with the wire types protobuf-c takes, whole varints): 0 with *out filled, -1
 * for any other shape (no facts: the caller walks it its own way). f2_misfit is looked for only
 * when nattr < UINT64_MAX. */
int otlp_sample_facts_of(const uint8_t *p, size_t len, uint64_t nattr, otlp_sample_facts *out);

/* Unpacks bytes[0..len) (a ResourceProfiles in the current layout) like
 * opentelemetry__proto__profiles__v1development__resource_profiles__unpack(alloc, len, bytes).
 * nprofiles and nsamples are the Profiles and Samples a walk of the bytes counted (the caller's
 * L1 walk in decode.c); a resource holding others, or any shape described above, gives NULL.
 * NULL also when alloc or a runs out (the caller's protobuf-c unpack then reports it). alloc
 * allocates from a. census, when not NULL, is what the layout pass saw of these very bytes: when
 * it is ok and counted nprofiles and nsamples, the first walk (S4) is skipped. */
Opentelemetry__Proto__Profiles__V1development__ResourceProfiles *
otlp_hand_unpack_resource(const uint8_t *bytes, size_t len, size_t nprofiles, size_t nsamples,
                          const otlp_resource_census *census, ProtobufCAllocator *alloc,
                          sp_arena *a);

/* Unpacks bytes[0..len) (a ProfilesDictionary) like
 * opentelemetry__proto__profiles__v1development__profiles_dictionary__unpack(alloc, len, bytes),
 * with its location, function, string and stack tables decoded by hand (D1-D2 in hand_unpack.c) and
 * the rest by protobuf-c. NULL for a shape it leaves to protobuf-c, or out of memory. */
Opentelemetry__Proto__Profiles__V1development__ProfilesDictionary *
otlp_hand_unpack_dictionary(const uint8_t *bytes, size_t len, ProtobufCAllocator *alloc,
                            sp_arena *a);

#endif
