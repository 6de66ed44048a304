/* The transport's settings: listeners, TLS, limits, workers, authentication. The program fills
 * them (app/config.c parses the flags); the server only reads them, from any thread, and keeps
 * the pointer it was given for its lifetime. */
#ifndef SRV_OPTIONS_H
#define SRV_OPTIONS_H

#include <stddef.h>
#include <stdint.h>

typedef struct srv_options {
    const char *http_addr;
    const char *grpc_addr;
    const char *tls_cert, *tls_key, *tls_client_ca;
    size_t max_recv_msg_size;
    size_t max_inflight_bytes;
    size_t queue_size;
    int workers;       /* the ingest pool */
    int query_workers; /* the query pool (reads), so queries never wait behind ingest */
    int max_concurrent_streams;
    int64_t shutdown_timeout_ms;
    int64_t idle_timeout_ms;
    int64_t header_timeout_ms; /* TLS handshake + request head; 0 = none */
    /* server/auth.c: credential files per route class (secrets stay off the command line) */
    const char *ingest_auth_token_file, *ingest_basic_auth_file;
    const char *query_auth_token_file, *query_basic_auth_file;
    const char *admin_auth_token_file; /* the admin class (/api/v1/admin/...) */
    int multitenancy_required;         /* refuse requests without X-Scope-OrgID */
} srv_options;

/* The defaults --help shows (app/config.c starts from these). */
static inline void srv_options_defaults(srv_options *o)
{
    *o = (srv_options){
        .http_addr = "0.0.0.0:4040",
        .grpc_addr = "0.0.0.0:4317",
        .max_recv_msg_size = 64u << 20,
        .max_inflight_bytes = 256u << 20,
        .queue_size = 256,
        .workers = 2,
        .query_workers = 2,
        .max_concurrent_streams = 128,
        .shutdown_timeout_ms = 10000,
        .idle_timeout_ms = 300000,
        .header_timeout_ms = 20000,
    };
}

#endif
