/* Merged stacks as a pprof profile (perftools.profiles.Profile, the same wire format as
 * Pyroscope's google.v1.Profile): one sample per distinct stack, the sample and period types from
 * the profile type id. With the stacks' detail (store_query.detail): functions with their file
 * and first line, one location per received location with its address, mapping (build id) and
 * inline frames with their lines, as go tool pprof -list and -raw want. Without it (trimmed to
 * max_nodes): one function and location per distinct frame name.
 *
 * Serves SelectMergeProfile and the GET /pprof download. Called on worker threads; memory from
 * the caller's arena; the bytes are written by wire_pprof_encode().
 */
#ifndef QUERY_PPROF_EXPORT_H
#define QUERY_PPROF_EXPORT_H

#include "../common/buf.h"
#include "params.h"

/* Appends the serialized (not compressed) pprof of s to out. time_ns / duration_ns describe the
 * queried range (0 = unknown). */
int query_pprof_encode(const store_stacks *s, const query_type *type, int64_t time_ns,
                       int64_t duration_ns, sp_arena *a, sp_buf *out, sp_err *err);

#endif
