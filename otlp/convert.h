/* OTLP profiles → sp_profile (pprof plus per-sample facts), after validation.
 *
 * Each valid Profile of each ResourceProfiles/ScopeProfiles becomes one sp_profile per distinct
 * sample-level service.name (as Pyroscope splits them), sharing the request's converted
 * dictionary: OTLP index i becomes pprof id i, so no table is remapped. Profile type ids, the CPU
 * rewrite (samples/count with period cpu/nanoseconds → cpu/nanoseconds scaled by the period),
 * service_name and series labels follow Pyroscope's OTLP ingestion so Grafana finds the series
 * (see ../shared/reference/OTLP-PROFILES.md section c). Frames without a symbol get a readable name
 * ("native 0x9a3f0 libc.so.6"), never an empty one.
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

/* Turns an attribute key into a label name: dots and other characters outside [A-Za-z0-9_]
 * become '_', a leading digit gets a '_' in front ("process.pid" → "process_pid"). */
char *otlp_label_name(sp_arena *a, const char *key);

#endif
