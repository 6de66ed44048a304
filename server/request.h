/* The one request and response type that both HTTP/1.1 and HTTP/2 produce.
 *
 * A connection (server/conn.c) turns wire bytes into an srv_request and hands it to the router; a
 * handler fills the srv_response; the connection writes it back in its own framing. Handlers never
 * see which protocol carried the request except through `proto`, and never touch sockets.
 *
 * Ownership: the connection owns both structs until the response is written. Handlers may run on a
 * worker thread (see router.h) and then must touch nothing but the request, the response and the
 * thread-safe module APIs.
 */
#ifndef SRV_REQUEST_H
#define SRV_REQUEST_H

#include "../common/buf.h"
#include "../common/err.h"

#include <stdint.h>

typedef enum { SRV_HTTP1 = 1, SRV_HTTP2 = 2 } srv_proto;

typedef struct srv_header {
    char *name; /* lower-case */
    char *value;
} srv_header;

typedef struct srv_request {
    srv_proto proto;
    int tls;
    char method[16];
    char *path;  /* decoded path without the query string */
    char *query; /* raw query string after '?', or NULL */
    srv_header *headers;
    size_t nheaders, cap_headers;
    size_t header_bytes;
    sp_buf body;               /* limited to the configured maximum message size (+ framing) */
    int body_too_big;          /* the peer sent more than body.limit; the rest was discarded */
    const char *tenant;        /* X-Scope-OrgID, or "anonymous" */
    int64_t deadline_ns;       /* CLOCK_MONOTONIC deadline from grpc-timeout, 0 = none */
    int endpoint;              /* metrics endpoint index, set by the router */
    const char *endpoint_name; /* its name, set by the router */
    char peer[64];             /* the client's address (host:port), set by the transport */
} srv_request;

typedef struct srv_response {
    int status; /* HTTP status; 200 for every gRPC answer */
    srv_header *headers;
    size_t nheaders, cap_headers;
    sp_buf body;
    /* gRPC answers: body is the framed message (or empty), and grpc-status / grpc-message go in
     * trailers (HTTP/2). */
    int grpc;
    int grpc_status;
    char grpc_message[512];
} srv_response;

/* gRPC status codes (grpc/doc/statuscodes.md). */
enum {
    GRPC_OK = 0,
    GRPC_CANCELLED = 1,
    GRPC_UNKNOWN = 2,
    GRPC_INVALID_ARGUMENT = 3,
    GRPC_DEADLINE_EXCEEDED = 4,
    GRPC_NOT_FOUND = 5,
    GRPC_RESOURCE_EXHAUSTED = 8,
    GRPC_UNIMPLEMENTED = 12,
    GRPC_INTERNAL = 13,
    GRPC_UNAVAILABLE = 14,
    GRPC_UNAUTHENTICATED = 16,
};

/* Case-insensitive lookup; NULL when absent. */
const char *srv_header_get(const srv_request *req, const char *name);
/* Looks up one query parameter (percent-decoded into out); returns length or -1 when absent. */
int srv_query_get(const srv_request *req, const char *name, char *out, size_t outsz);

int srv_response_header(srv_response *resp, const char *name, const char *value);
/* Sets status, content-type and body. */
int srv_response_send(srv_response *resp, int status, const char *content_type, const void *body,
                      size_t len);
/* Maps an error to the caller's protocol: gRPC status + grpc-message for gRPC requests, else the
 * HTTP status with a text/plain body (and Retry-After for SP_EFULL / SP_EUNAVAIL). */
void srv_response_error(srv_response *resp, const srv_request *req, const sp_err *err);

/* A request refused whole (code != 0) or in part (rejected items of a request answered OK):
 * logged at warn, at most one line per 10 s per reason (with how many were held back), with the
 * endpoint, tenant, client address and the message; and counted by endpoint and reason in
 * /metrics (spanprof_requests_refused_total, spanprof_items_refused_total). An operator whose
 * sender "works" but stores nothing sees why. */
void srv_report_refusal(const srv_request *req, int sp_code, uint64_t rejected_items,
                        const char *message);
/* Connect unary error: JSON {"code","message"} with Connect's HTTP status for the code. */
void srv_response_connect_error(srv_response *resp, const sp_err *err);
/* A gRPC answer: message (already framed by the caller, may be NULL) plus status in trailers. */
void srv_response_grpc(srv_response *resp, int grpc_status, const char *message, const void *framed,
                       size_t len);

int srv_request_is_grpc(const srv_request *req);

/* The one table from SP_E* codes to protocol statuses. */
int srv_status_grpc(int sp_code);
int srv_status_http(int sp_code);

#endif
