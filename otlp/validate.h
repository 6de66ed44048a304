/* Semantic validation of decoded OTLP requests, after protobuf-c has unpacked them.
 *
 * Profiles: every reference into the request's ProfilesDictionary is bounds-checked (sample
 * stack_index, attribute_indices and link_index; stack location_indices; location mapping_index
 * and line function_index; every *_strindex; sample_type / period_type), index 0 means "none"
 * (valid whatever the table holds), negative indices are invalid, a sample needs values or
 * timestamps (equal in length when both are set), and a referenced link has a 16-byte trace_id
 * and an 8-byte span_id when set. Dictionary entries are checked once, when first referenced;
 * unreferenced entries are not judged. Traces: ids of the right length and non-zero, end >= start.
 *
 * Validation judges each item (Profile or Span) on its own, so one bad profile does not cost the
 * others: the caller answers with partial_success. Called by otlp/service.c; it never changes
 * the request and never converts anything.
 */
#ifndef OTLP_VALIDATE_H
#define OTLP_VALIDATE_H

#include "../common/arena.h"
#include "../common/err.h"

#include "opentelemetry/proto/collector/profiles/v1development/profiles_service.pb-c.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"

#include <stddef.h>
#include <stdint.h>

typedef Opentelemetry__Proto__Collector__Profiles__V1development__ExportProfilesServiceRequest
    otlp_profiles_req;
typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest otlp_traces_req;
typedef Opentelemetry__Proto__Common__V1__KeyValue otlp_kv;

/* Result of validating one request. */
typedef struct otlp_verdict {
    size_t total;    /* items (profiles or spans) in the request */
    size_t bad;      /* items rejected */
    uint8_t *is_bad; /* `total` flags in request order (resource, scope, item); arena memory;
                      * NULL when total is 0 */
    sp_err first;    /* the first problem, prefixed with the item's path, e.g.
                      * "resource_profiles[0].scope_profiles[0].profiles[2]: sample 12: stack_index
                      * 900 out of range (stack_table has 41 entries)"; code 0 when bad == 0 */
} otlp_verdict;

/* Validates every Profile of req. Returns 0 with the verdict filled, or fails for the whole
 * request: SP_EINVAL when profiles arrive without a dictionary, SP_ETOOBIG when the arena budget
 * cannot hold the bookkeeping. */
int otlp_validate_profiles(const otlp_profiles_req *req, sp_arena *a, otlp_verdict *v, sp_err *err);

/* The same validation one ResourceProfiles at a time, for a request decoded resource by resource
 * (otlp/decode.h, otlp_profiles_lazy). begin takes the dictionary and the request's number of
 * profiles (v->total), allocates the verdict's flags and fails as otlp_validate_profiles() does
 * (*out stays NULL when total is 0: there is nothing to check). check_resource judges the
 * profiles of resource_profiles[r], which must come in request order, into v: the same flags,
 * counts and first message as the whole-request call gives. It fails only with SP_EINTERNAL,
 * when the resources hold more profiles than begin was told. */
typedef struct otlp_profiles_check otlp_profiles_check;
int otlp_profiles_check_begin(
    const Opentelemetry__Proto__Profiles__V1development__ProfilesDictionary *d, size_t total,
    sp_arena *a, otlp_verdict *v, otlp_profiles_check **out, sp_err *err);
int otlp_profiles_check_resource(
    otlp_profiles_check *k,
    const Opentelemetry__Proto__Profiles__V1development__ResourceProfiles *rp, size_t r,
    sp_err *err);
/* The profiles of one ResourceProfiles (over its scopes). */
size_t
otlp_profiles_count(const Opentelemetry__Proto__Profiles__V1development__ResourceProfiles *rp);

/* Validates every Span of req: trace_id 16 bytes and span_id 8 bytes, both not all zero;
 * parent_span_id empty or 8 bytes; end_time_unix_nano >= start_time_unix_nano. */
int otlp_validate_traces(const otlp_traces_req *req, sp_arena *a, otlp_verdict *v, sp_err *err);

/* Resolves a resource or scope attribute that may use either form: plain `key`/`string_value`, or
 * (proto v1.10+) `key_strindex`/`string_value_strindex` into strings[0..nstrings) (the request's
 * dictionary string_table). *key gets the key ("" when neither form sets it); *str the string
 * value, or NULL when the value is not a string. Fails with SP_EINVAL when an index is negative
 * or out of range. */
int otlp_resolve_kv(const otlp_kv *kv, char *const *strings, size_t nstrings, const char **key,
                    const char **str, sp_err *err);

#endif
