/* The RPC codec of the querier API: Connect unary (application/proto and application/json) and
 * gRPC (application/grpc, +proto, +json), both as connect-go serves them for Pyroscope.
 *
 * query_rpc_read() turns a request body into a protobuf-c message of the method's input type
 * (unframing gRPC, inflating Content-Encoding, parsing binary or JSON); query_rpc_reply() writes a
 * message back in the caller's codec (Content-Type echoed; gzip when a Connect client accepts it
 * and the body is large); query_rpc_fail() answers an sp_err as a Connect error (JSON
 * {"code","message"} with Connect's HTTP status) or as gRPC status trailers.
 * Called by query/querier.c on worker threads; knows nothing about what the messages mean.
 */
#ifndef QUERY_CONNECT_H
#define QUERY_CONNECT_H

#include "../common/arena.h"
#include "../server/request.h"

#include <protobuf-c/protobuf-c.h>

typedef struct query_rpc {
    int grpc;    /* gRPC framing and status trailers */
    int json;    /* JSON codec (application/json, application/grpc+json) */
    int gzip_ok; /* Connect client sent Accept-Encoding with gzip */
    char content_type[40];
} query_rpc;

/* Reads the caller's codec from the request headers into *rpc (always, so that errors can be
 * answered in the right shape), then decodes the body. max_msg caps the body after inflation.
 * SP_EMEDIA for an unsupported Content-Type, SP_EUNIMPL for an unsupported encoding, SP_EINVAL
 * when the body is not a message of type d. */
int query_rpc_read(const srv_request *req, const ProtobufCMessageDescriptor *d, size_t max_msg,
                   sp_arena *a, query_rpc *rpc, ProtobufCMessage **msg, sp_err *err);

/* Fills rpc from the request headers only (for answering before or without a body). */
void query_rpc_detect(const srv_request *req, query_rpc *rpc);

void query_rpc_reply(srv_response *resp, const query_rpc *rpc, const ProtobufCMessage *msg);
void query_rpc_fail(srv_response *resp, const query_rpc *rpc, const sp_err *err);

#endif
