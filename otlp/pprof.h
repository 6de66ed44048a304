/* pprof (perftools.profiles.Profile) → sp_profile (writing is wire/pprof_write.h).
 *
 * Decoding serves the Pyroscope ingest paths (/ingest with a pprof body, Push): one sp_profile per
 * sample type, with Pyroscope's names (process_cpu, memory, goroutine, mutex, block) so Grafana
 * finds the series, and pprof `span_id` (or legacy `profile_id`) / `trace_id` labels turned into
 * the sample's explicit link.
 *
 * Called on worker threads; all memory comes from the batch's arena.
 */
#ifndef OTLP_PPROF_H
#define OTLP_PPROF_H

#include "../common/buf.h"
#include "../common/err.h"
#include "../common/profile.h"

typedef struct otlp_pprof_opts {
    const sp_kv *series; /* labels for every profile (service_name, tags); copied */
    uint32_t nseries;
    const char *name_hint; /* __name__ override for every sample type (e.g. "mutex"), or NULL */
    /* Pyroscope SDK sample_type_config: per sample type a display name, e.g. "mutex_count". */
    const sp_kv *display_names;
    uint32_t ndisplay_names;
    int64_t now_ns; /* stands in for time_nanos 0 */
} otlp_pprof_opts;

typedef struct otlp_pprof_result {
    size_t samples;     /* samples read */
    size_t bad_samples; /* rejected (a malformed span_id / trace_id label) */
    sp_err first;       /* the first rejection */
} otlp_pprof_result;

/* Decodes data (a serialized pprof, not compressed) into out->profiles. Fails with SP_EINVAL when
 * the protobuf or its references are broken. */
int otlp_pprof_decode(const uint8_t *data, size_t len, const otlp_pprof_opts *o, sp_batch *out,
                      otlp_pprof_result *res, sp_err *err);

/* Pyroscope's __name__ for a sample/period type pair (see the rules in pprof.c). */
const char *otlp_pprof_profile_name(const char *sample_type, const char *period_type,
                                    const char *display_name);

#endif
