/* The OTLP profiles Sample layout problem: which proto revision wrote this request?
 *
 * proto v1.10 renumbered Sample (attribute_indices 2, link_index 3, values 4; v1.8/v1.9 had values
 * 2, attribute_indices 3, link_index 4), and v1.9 renumbered Profile fields profile_id ..
 * attribute_indices from 8..12 to 7..11. Requests carry no version, and senders of every
 * revision are in the field. otlp_layout_normalize() runs on the raw ExportProfilesServiceRequest
 * bytes before protobuf-c: it detects the layout from wire types (per request), and when the
 * request is old, rewrites it into the current layout so the generated v1.10 code reads it
 * correctly. Called by otlp/service.c; it never interprets values or indices (otlp/validate.c
 * does).
 *
 * Detection, per Sample (v1.8/v1.9 writers pack repeated fields, proto3's default):
 *   old  = field 3 with wire type LEN (packed attribute_indices), or field 4 once with wire type
 *          VARINT (link_index) beside a field 2 that cannot be v1.10 attribute_indices (a value
 *          that is no index into the dictionary's attribute_table), or field 2 present with
 *          neither 4 nor 5 (values only);
 *   new  = field 4 with wire type LEN (packed values), field 4 repeated as VARINT (unpacked
 *          values), or field 4 once as VARINT without field 2 (one unpacked value: a valid
 *          v1.10 sample is read as protobuf decoders read it);
 * the request is old when more samples say old than new. A Profile uses v1.8 numbering when it
 * has field 12, field 8 as LEN, field 9 as VARINT or field 7 as VARINT; such a profile is
 * renumbered whatever its samples say. In a rewritten request, Profile fields whose wire type
 * does not fit the current schema are dropped instead of failing the whole request.
 */
#ifndef OTLP_LAYOUT_H
#define OTLP_LAYOUT_H

#include "../common/arena.h"
#include "../common/err.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
    OTLP_LAYOUT_CURRENT = 0, /* proto v1.10/v1.11, or nothing that tells the layouts apart */
    OTLP_LAYOUT_V1_9 = 1,    /* v1.8/v1.9 Sample numbering */
} otlp_layout;

/* One ResourceProfiles as the layout pass walked it (in the request as received). ok when every
 * field 2 of it, of its ScopeProfiles and of their Profiles is LEN within protobuf-c's bounds
 * (wire_pb_protobuf_c_bounds) and every Sample has the shape otlp/hand_unpack.c decodes (its S1):
 * the sums are then what that decoder's first walk of the resource would find
 * (otlp_hand_unpack_resource() skips it). */
typedef struct otlp_resource_census {
    int ok;
    size_t profiles, samples;    /* Profiles (field 2 of its ScopeProfiles) and their Samples */
    size_t values, attrs, times; /* the Samples' array lengths, summed */
} otlp_resource_census;

typedef struct otlp_layout_info {
    otlp_layout layout;      /* the decision for the request */
    int rewritten;           /* 1 when *out is a rewritten copy, 0 when it is the input */
    uint64_t samples;        /* Sample messages seen */
    uint64_t old_votes;      /* samples that only fit the v1.8/v1.9 layout */
    uint64_t new_votes;      /* samples that only fit the current layout */
    uint64_t v18_profiles;   /* profiles renumbered from v1.8 numbering */
    uint64_t dropped_fields; /* Profile fields dropped for a wire type that fits no layout */
    /* resource_profiles[i]'s census, from the request's arena; NULL when there was no memory
     * for it, and only for the input's bytes (of no use when rewritten) */
    otlp_resource_census *census;
    size_t ncensus;
} otlp_layout_info;

/* Detects the layout of the ExportProfilesServiceRequest (or ProfilesData) in[0..len) and, when
 * needed, rewrites it into the current layout in memory from a. *out and *outlen receive the bytes
 * to unpack (the input itself when nothing needed rewriting). Fails with SP_EINVAL, naming the
 * message path ("resource_profiles[0].scope_profiles[1].profiles[0].samples[7]: offset 12:
 * truncated varint"), when the framing of the walked messages is broken, SP_ETOOBIG when the
 * arena's budget cannot hold the copy. */
int otlp_layout_normalize(const uint8_t *in, size_t len, sp_arena *a, const uint8_t **out,
                          size_t *outlen, otlp_layout_info *info, sp_err *err);

/* "v1.10" or "v1.9" (for logs and metrics). */
const char *otlp_layout_name(otlp_layout layout);

#endif
