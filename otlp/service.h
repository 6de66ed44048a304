/* The OTLP Export services: profiles and traces, over gRPC and OTLP/HTTP (binary protobuf or
 * JSON).
 *
 * otlp_register() puts four WORKER routes on the server's router:
 *   gRPC  POST /opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export
 *   gRPC  POST /opentelemetry.proto.collector.trace.v1.TraceService/Export
 *   HTTP  POST /v1development/profiles     HTTP  POST /v1/traces
 * Each request is unframed / decompressed (wire/grpc.c, wire/compress.c), checked for nesting
 * depth, put into the current profiles layout (otlp/layout.c), unpacked by protobuf-c into a
 * per-request arena, validated item by item (otlp/validate.c) and handed to the next stage
 * through cfg->sink. OTLP/HTTP bodies with Content-Type application/json are first turned into
 * the same protobuf bytes (otlp/json.h), and answered in JSON (the Export response, or the
 * google.rpc.Status of an error, with the same HTTP status as the protobuf path). Bad items are
 * rejected with partial_success (status OK); a request that cannot be decoded at all is
 * INVALID_ARGUMENT / HTTP 400 with a google.rpc.Status body. Registered by the program
 * (app/main.c); it never touches sockets and never stores anything itself. A trace batch carries
 * its message as received (sp_batch.raw_traces) for forwarding.
 */
#ifndef OTLP_SERVICE_H
#define OTLP_SERVICE_H

#include "decode.h"

#include "../common/err.h"
#include "../server/request.h"
#include "../server/router.h"
#include "sink.h"

#include <stddef.h>
#include <stdint.h>

#define OTLP_PATH_GRPC_PROFILES                                                                    \
    "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export"
#define OTLP_PATH_GRPC_TRACES   "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
#define OTLP_PATH_HTTP_PROFILES "/v1development/profiles"
#define OTLP_PATH_HTTP_TRACES   "/v1/traces"

typedef struct otlp_config {
    /* Largest accepted message after decompression (0 = 64 MiB). Also bounds each request's
     * decode arena (a multiple of the message size). */
    size_t max_recv_msg_size;
    /* The next stage: the request's valid items converted (sp_profile / sp_span), once per
     * request on a worker thread. An error (e.g. SP_EUNAVAIL, SP_EFULL) goes back to the client
     * instead of the Export response. No write function = count and drop. */
    otlp_sink sink;
} otlp_config;

/* Registers the four routes. cfg is not copied: it must outlive the router. */
int otlp_register(srv_router *r, const otlp_config *cfg);

/* Encodes google.rpc.Status{code = 1, message = 2} (the OTLP/HTTP error body) into out. */
int otlp_rpc_status_encode(sp_buf *out, int32_t grpc_code, const char *message);

/* The same Status as OTLP/HTTP JSON writes it: {"code":3,"message":"..."}. Errors: the sp_buf's
 * (SP_ETOOBIG past its limit, SP_ENOMEM). */
int otlp_rpc_status_json(sp_buf *out, int32_t grpc_code, const char *message);

#endif
