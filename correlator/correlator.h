/* The correlator: decides which spans each profile sample belongs to.
 *
 * Runs on the ingest workers between conversion and the store (server/main.c wires it). Today it
 * applies the explicit rule only: a sample that carries a link (OTLP link_index, pprof span_id
 * label) is attached to that span. Inference by time, process and thread against a window of
 * recent spans, for spans of at least `min_span_ns`, is the next step of this module; nothing
 * outside it changes when it lands. Never touches disk or the network.
 */
#ifndef CORR_CORRELATOR_H
#define CORR_CORRELATOR_H

#include "../common/profile.h"

typedef struct corr_options {
    int64_t min_span_ns; /* spans shorter than this get no inferred samples; 0 = 20 ms */
} corr_options;

typedef struct corr corr;

corr *corr_new(const corr_options *o);
void corr_free(corr *c);

/* Fills sp_sample.spans for every sample of b's profiles (memory from b->arena). Returns the
 * number of samples attached to at least one span. */
size_t corr_attach_spans(corr *c, sp_batch *b);

#endif
