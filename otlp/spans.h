/* OTLP spans → sp_span, after validation: what the correlator and the span index need of a span
 * (ids, service, name, start/end, and the process and thread it ran on).
 *
 * The process is the resource's `process.pid`; the thread is the span's `thread.id` attribute
 * (semantic conventions; set by SDKs that record it), falling back to the resource's. Called by
 * otlp/service.c on a worker thread; memory from the batch's arena; bad spans (per the verdict)
 * are skipped.
 */
#ifndef OTLP_SPANS_H
#define OTLP_SPANS_H

#include "../common/profile.h"
#include "validate.h"

int otlp_traces_convert(const otlp_traces_req *req, const otlp_verdict *v, sp_batch *out,
                        sp_err *err);

#endif
