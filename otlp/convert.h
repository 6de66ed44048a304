/* OTLP profiles → sp_profile (pprof plus per-sample facts), after validation.
 *
 * Each valid Profile of each ResourceProfiles/ScopeProfiles becomes one sp_profile per distinct
 * sample-level service.name (as Pyroscope splits them), sharing the request's converted
 * dictionary: OTLP index i becomes pprof id i, so no table is remapped. Profile type ids, the CPU
 * rewrite (samples/count with period cpu/nanoseconds → cpu/nanoseconds scaled by the period),
 * service_name and series labels follow Pyroscope's OTLP ingestion so Grafana finds the series
 * (see ../shared/reference/OTLP-PROFILES.md section c). Frames without a symbol get a readable name
 * ("native 0x9a3f0 libc.so.6"), never an empty one: a bare location's is left to readers, who
 * make it with sp_location_names() (sp_function.made_up, name 0).
 *
 * Called by otlp/service.c on a worker thread; everything it makes lives in the arena. It trusts
 * otlp_validate_profiles() for the references of the profiles it converts, and skips the ones the
 * verdict marks bad.
 */
#ifndef OTLP_CONVERT_H
#define OTLP_CONVERT_H

#include "../common/profile.h"
#include "validate.h"

/* Appends the converted profiles to out->profiles (out->arena must be set). now_ns (UTC) stands
 * in for a missing time_unix_nano; a missing duration becomes 10 s. */
int otlp_profiles_convert(const otlp_profiles_req *req, const otlp_verdict *v, int64_t now_ns,
                          sp_batch *out, sp_err *err);

/* The same conversion in parts, for a caller that hands each part on while the next is
 * converted (otlp/service.c streams a large request to the store). begin converts the
 * dictionary; each next() appends the profiles of the next nresources resource_profiles entries
 * (fewer at the end) to out. Every part's profiles get the request's tables as they are after
 * that part: tables only grow, so an index names the same string, function, location or mapping
 * in every part, and a later part's tables extend an earlier one's (store_stream_part() relies
 * on this). otlp_profiles_convert() is begin and one next() of everything. Everything lives in
 * the arena; errors are those of otlp_profiles_convert(). */
typedef struct otlp_profiles_conv otlp_profiles_conv;
int otlp_profiles_conv_begin(const otlp_profiles_req *req, const otlp_verdict *v, sp_arena *a,
                             otlp_profiles_conv **out, sp_err *err);
int otlp_profiles_conv_next(otlp_profiles_conv *pc, size_t nresources, int64_t now_ns,
                            sp_batch *out, sp_err *err);
/* resource_profiles entries not converted yet. */
size_t otlp_profiles_conv_left(const otlp_profiles_conv *pc);

/* Turns an attribute key into a label name: dots and other characters outside [A-Za-z0-9_]
 * become '_', a leading digit gets a '_' in front ("process.pid" → "process_pid"). */
char *otlp_label_name(sp_arena *a, const char *key);

#endif
