/* The server: listeners, the event loop, TLS, and the lifecycle of connections.
 *
 * main() builds a router, registers the modules' routes on it, and hands both to srv_server_new().
 * srv_server_run() serves until srv_server_stop() or SIGTERM/SIGINT, then shuts down gracefully:
 * stops accepting, sends HTTP/2 GOAWAY, lets in-flight requests finish (bounded by
 * --shutdown-timeout) and returns.
 */
#ifndef SRV_SERVER_H
#define SRV_SERVER_H

#include "options.h"
#include "router.h"

typedef struct srv_server srv_server;

/* Binds both listeners and starts the workers; a clear error (address in use, bad certificate). */
int srv_server_new(srv_server **out, const srv_options *cfg, srv_router *router, sp_err *err);
int srv_server_run(srv_server *s);
/* Async-signal-safe request to stop (also wired to SIGTERM/SIGINT by srv_server_run). */
void srv_server_stop(srv_server *s);
void srv_server_free(srv_server *s);
/* The port actually bound (useful with port 0). which: 0 = http, 1 = grpc. */
int srv_server_port(const srv_server *s, int which);

#endif
