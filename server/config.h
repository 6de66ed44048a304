/* Command-line configuration of the one spanprof binary.
 *
 * srv_config_parse() knows every flag, its default and its help line; --help prints them all and an
 * unknown flag is an error naming it. Other modules read their settings from this struct.
 */
#ifndef SRV_CONFIG_H
#define SRV_CONFIG_H

#include "../common/err.h"

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

typedef struct srv_config {
    const char *data_dir;
    const char *http_addr;
    const char *grpc_addr;
    const char *tls_cert, *tls_key, *tls_client_ca;
    size_t max_recv_msg_size;
    size_t max_inflight_bytes;
    size_t queue_size;
    int workers;
    int max_concurrent_streams;
    int64_t shutdown_timeout_ms;
    int64_t idle_timeout_ms;
    int64_t header_timeout_ms; /* TLS handshake + request head; 0 = none */
    const char *log_level;
    const char *durability; /* "normal" or "full" */
    int64_t retention_ms;   /* 0 = keep forever */
    int64_t min_span_ms;    /* spans shorter than this get no inferred samples */
    int64_t correlation_window_ms;
    size_t correlation_max_bytes;
    const char *correlate_threadless; /* "unique" or "off" */
    /* server/auth.c: credential files per route class (secrets stay off the command line) */
    const char *ingest_auth_token_file, *ingest_basic_auth_file;
    const char *query_auth_token_file, *query_basic_auth_file;
    int multitenancy_required; /* refuse requests without X-Scope-OrgID */
    /* Remote write and trace forwarding (storage-adapter/pyroscope.c, otlp/forward.c). */
    const char *store; /* "sqlite", "pyroscope" or "sqlite,pyroscope" */
    const char *pyroscope_url;
    const char *pyroscope_basic_auth_user, *pyroscope_basic_auth_password_file;
    const char *pyroscope_bearer_token_file, *pyroscope_ca_file;
    const char *traces_forward_to;
    const char *traces_forward_protocol; /* "http/protobuf" or "grpc" */
    const char *traces_forward_bearer_token_file, *traces_forward_ca_file;
    size_t outbox_max_bytes;
    int64_t forward_batch_interval_ms;
    int help;
} srv_config;

void srv_config_defaults(srv_config *c);
/* 0, or SP_EINVAL with the offending flag named in err. */
int srv_config_parse(srv_config *c, int argc, char **argv, sp_err *err);
void srv_config_usage(FILE *out);

#endif
