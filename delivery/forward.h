/* Trace forwarding with enrichment: every accepted OTLP trace export goes on to a downstream
 * endpoint (Tempo, a Collector), with the span attribute `pyroscope.profile.id` = the span's own
 * id (16 lowercase hex digits) added to every span that can have a span profile, so Grafana
 * offers "Profiles for this span" on it.
 *
 * The export is rewritten on the wire, not re-encoded: every byte of the request is kept as
 * received (unknown fields, field order, non-minimal varints) except that each marked Span gets
 * one more attributes entry (field 9) at its end and the lengths of the messages enclosing it
 * grow accordingly. A span that already carries the attribute is left alone.
 *
 * The program's trace sink (app/pipeline.c) calls forward_traces() with the request's message
 * (sp_batch.raw_traces) after its spans were stored and before the answer; which spans qualify
 * and where the bytes go are callbacks the program wires (the correlator's rule, the durable
 * outbox), so this module knows neither. Pure apart from the callbacks; any thread.
 */
#ifndef DELIVERY_FORWARD_H
#define DELIVERY_FORWARD_H

#include "../common/buf.h"
#include "../common/err.h"
#include "../common/profile.h"

#include <stddef.h>
#include <stdint.h>

#define FORWARD_ATTR "pyroscope.profile.id"

typedef struct forward_hooks {
    /* 1 when sp gets the attribute. */
    int (*profilable)(void *ud, const char *tenant, const sp_span *sp);
    /* Takes the enriched ExportTraceServiceRequest; returns once it is queued durably, or an
     * SP_E* error that goes back to the client (which then retries the export). */
    int (*enqueue)(void *ud, const char *tenant, const uint8_t *msg, size_t len, sp_err *err);
    void *ud;
} forward_hooks;

/* Writes msg (an ExportTraceServiceRequest) to out with the attribute added to every span whose
 * span_id is among ids (nids entries, any order). *added = spans marked. SP_EINVAL when msg is
 * not well-formed protobuf at the levels it walks. */
int forward_enrich(const uint8_t *msg, size_t len, const uint8_t (*ids)[8], size_t nids,
                   sp_buf *out, size_t *added, sp_err *err);

/* forward_enrich() deciding per span when it is sent: mark(ud, span_id) returns 1 for a span
 * that gets the attribute. Used when forwarding is delayed (the outbox's prepare hook): the
 * decision then sees the spans and profiles that arrived meanwhile. */
int forward_enrich_by(const uint8_t *msg, size_t len,
                      int (*mark)(void *ud, const uint8_t span_id[8]), void *ud, sp_buf *out,
                      size_t *added, sp_err *err);

/* Marks the spans of b that f->profilable accepts, enriches msg and hands it to f->enqueue. */
int forward_traces(const forward_hooks *f, const char *tenant, const uint8_t *msg, size_t len,
                   const sp_batch *b, sp_err *err);

#endif
