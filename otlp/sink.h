/* The next stage, as the ingest services see it: one call per request with everything the request
 * carried, converted (sp_batch). Implemented by main (correlate, then store); called on a worker
 * thread; returns only when the batch is durable, or an SP_E* error (SP_EUNAVAIL, SP_EFULL) that
 * goes back to the client as a retryable status. */
#ifndef OTLP_SINK_H
#define OTLP_SINK_H

#include "../common/profile.h"
#include "../server/request.h"

typedef struct otlp_sink {
    int (*write)(void *ud, const srv_request *req, sp_batch *batch, sp_err *err);
    void *ud;
} otlp_sink;

#endif
