/* Authentication and tenancy at the edge.
 *
 * Every path belongs to one class: OPEN (/ready, /healthz, /metrics: probes and scrapers, no
 * tenant data),
 * INGEST (OTLP gRPC and HTTP, Pyroscope /ingest and Push) or QUERY (everything else: the querier
 * API, /render, /pprof, the page, and any path not listed, so a new route is protected by default)
 * or ADMIN (/api/v1/admin/...: operations on the whole store, such as backups). ADMIN accepts
 * only the tokens of --admin-auth-token-file ($SPANPROF_ADMIN_AUTH_TOKEN); with none configured
 * it fails closed whenever any other credential or --multitenancy-required is configured (an
 * otherwise open server leaves it open, like every other path).
 * INGEST and QUERY each optionally require a bearer token or HTTP basic credentials, loaded once at
 * start-up from files named by flags (secrets never appear on the command line) or from the
 * SPANPROF_{INGEST,QUERY}_AUTH_TOKEN environment variables. Mutual TLS (--tls-client-ca) happens
 * before any of this, in the handshake, and composes with it.
 *
 * The router calls srv_auth_check() as soon as a request's head is known, so a refused request's
 * body is never buffered, and srv_auth_refuse() to answer it in the caller's protocol. Credentials
 * are compared as SHA-256 digests with CRYPTO_memcmp against every configured entry, so neither the
 * position of the first wrong byte nor the secret's length shows in the timing. Nothing here logs
 * or echoes a credential.
 *
 * Tenancy: X-Scope-OrgID selects the tenant; without it the request is tenant "anonymous"
 * (Pyroscope's default), or is refused when --multitenancy-required is set. Tenant ids follow
 * Cortex/Pyroscope's rules. Tenant refusals are UNAUTHENTICATED / 401, as Pyroscope answers them.
 */
#ifndef SRV_AUTH_H
#define SRV_AUTH_H

#include "options.h"
#include "request.h"

typedef enum { SRV_AUTH_OPEN, SRV_AUTH_INGEST, SRV_AUTH_QUERY, SRV_AUTH_ADMIN } srv_auth_class;

typedef struct srv_auth srv_auth;

#define SRV_TENANT_DEFAULT    "anonymous"
#define SRV_TENANT_MAX_LENGTH 150

/* Reads the credential files named in cfg (and the environment). A file that cannot be read, is
 * empty or has a malformed line is an error naming the file and line, never its content. */
int srv_auth_new(srv_auth **out, const srv_options *cfg, sp_err *err);
void srv_auth_free(srv_auth *a);
/* One line for the start-up log: what each class requires ("ingest=bearer query=basic,bearer"). */
void srv_auth_describe(const srv_auth *a, char *out, size_t outsz);

srv_auth_class srv_auth_classify(const char *path);

/* 0 when req may proceed; SP_EAUTH with a message for the client otherwise. a NULL = nothing
 * configured (tenant ids are still validated). */
int srv_auth_check(const srv_auth *a, const srv_request *req, sp_err *err);
/* Answers a refusal: gRPC UNAUTHENTICATED with grpc-message, a Connect `unauthenticated` error
 * (querier, render, pprof, Push), a google.rpc.Status (OTLP/HTTP: JSON for application/json
 * requests, protobuf otherwise) or text; HTTP answers
 * are 401 with a WWW-Authenticate challenge for each scheme the route's class accepts. */
void srv_auth_refuse(const srv_auth *a, const srv_request *req, srv_response *resp,
                     const sp_err *err);

/* Cortex/Pyroscope tenant id rules: 1 to 150 bytes, each a letter, a digit or one of ! - _ . * ' (
 * ), and not "." or ".." (they would be path segments). */
int srv_tenant_validate(const char *id, sp_err *err);

#endif
