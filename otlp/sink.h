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
    /* Optional (NULL: not offered): one request's profiles in parts, written while the rest are
     * converted, acknowledged as one. stream_begin returns the stream (allocated in arena), or
     * NULL when the sink takes this request through write() only; stream_part correlates and
     * hands on one part (it and its tables stay unchanged until stream_end; later parts' tables
     * extend earlier ones', as otlp_profiles_conv_next() makes them); stream_end(failed = 0)
     * returns only when every part is durable, or the error write() would have returned; with
     * failed set nothing of the request is kept. After a part fails, the caller ends with failed
     * set. */
    void *(*stream_begin)(void *ud, const srv_request *req, sp_arena *arena);
    int (*stream_part)(void *stream, sp_batch *part, sp_err *err);
    int (*stream_end)(void *stream, int failed, sp_err *err);
    void *ud;
} otlp_sink;

#endif
