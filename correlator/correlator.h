/* The correlator: decides which spans each profile sample belongs to.
 *
 * Runs on the ingest workers between conversion and the store (server/main.c wires it), once per
 * request, for profiles and spans alike. Rules (DESIGN.md, "Correlation is server-side"):
 *   1. a sample's explicit link (OTLP link_index, pprof span_id label) wins;
 *   2. otherwise each observation (timestamp) of a sample with a known process and thread is
 *      attached to every span of at least `min_span_ns` on that process and thread whose
 *      [start, end) contains it — nested spans all get it, so a parent's flame graph contains
 *      its children's samples;
 *   3. profiles and spans arrive in any order within `window_ns`: spans are kept in a window so
 *      later samples find them, and recent observations are kept so a span that arrives later
 *      still gets them. Such late attachments are appended to the span's batch as attach_only
 *      profiles, so they are committed with the spans that caused them.
 * A sample whose observations belong to different spans is split, so every attachment carries
 * exactly the value observed inside the span.
 *
 * Memory: both windows live under one byte budget; past it the oldest entries go first, and the
 * `corr_stats` say how much was dropped. Never touches disk or the network. Thread-safe.
 */
#ifndef CORR_CORRELATOR_H
#define CORR_CORRELATOR_H

#include "../common/profile.h"

#include <stddef.h>
#include <stdint.h>

typedef struct corr_options {
    int64_t min_span_ns; /* spans shorter than this get no inferred samples; 0 = 20 ms */
    int64_t window_ns;   /* how long spans and observations wait for each other; 0 = 5 min */
    size_t max_bytes;    /* budget for both windows; 0 = 128 MiB */
} corr_options;

typedef struct corr_stats {
    uint64_t spans_indexed;         /* spans in the window now */
    uint64_t observations_retained; /* observations in the window now */
    uint64_t bytes;                 /* memory held by the windows */
    uint64_t attached_explicit;     /* observations attached by a sender's link */
    uint64_t attached_inferred;     /* observations attached by time, process and thread */
    uint64_t attached_late;         /* observations attached when their span arrived later */
    uint64_t evicted;               /* entries dropped before their time to stay within budget */
} corr_stats;

typedef struct corr corr;

corr *corr_new(const corr_options *o);
void corr_free(corr *c);

/* Attaches spans to b's samples (sp_sample.spans, splitting samples where needed), remembers b's
 * spans and observations for later arrivals, and appends attach_only profiles for observations
 * seen earlier that b's spans now claim. All new memory comes from b->arena. Returns the number
 * of observations attached. now_ns: wall clock (UTC), for expiry. */
size_t corr_attach_spans(corr *c, sp_batch *b, int64_t now_ns);

void corr_get_stats(corr *c, corr_stats *out);

/* 1 when sp can have a span profile: it lasted at least the minimum duration and its process
 * (same identity rule as matching) sent CPU profiles within the window. The trace forwarder asks
 * this to mark spans for Grafana's "Profiles for this span". */
int corr_span_profilable(corr *c, const char *tenant, const sp_span *sp);

#endif
