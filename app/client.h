/* The terminal client: `spanprof query <command>` asks a running spanprof server, over HTTP with
 * libcurl, for the services that sent spans, a service's recent traces, one trace's spans with the
 * CPU and off-CPU time profiled in each, a span's top functions, or a span's profile (pprof or
 * folded), and prints them for a person (tables, a span tree) or for a script (--output json).
 *
 * main() hands it the arguments from "query" on, before it parses any server flag; the client
 * never opens the store, binds a port or reads the server's configuration. It only reads what
 * the server's query API answers (GET /api/v1/services, /api/v1/traces, /api/v1/traces/{id},
 * /api/v1/spans/{id}/profile). It never prints a credential: not a token, a password, nor the
 * userinfo of a URL.
 *
 * The exit status tells a script what happened (the help text documents it too); client_main()
 * maps the SP_E* code of what failed to one of these in one table. */
#ifndef APP_CLIENT_H
#define APP_CLIENT_H

enum {
    CLIENT_EXIT_OK = 0,
    CLIENT_EXIT_NOT_FOUND = 1, /* HTTP 404: no such trace or span */
    CLIENT_EXIT_USAGE = 2,     /* bad flags or arguments, or HTTP 400 */
    CLIENT_EXIT_SERVER = 3,    /* the server failed, was unreachable or slow; a write failed */
    CLIENT_EXIT_AUTH = 4,      /* HTTP 401 or 403: credentials or tenant refused */
};

/* argv[0] is "query"; returns the process exit status (CLIENT_EXIT_*). */
int client_main(int argc, char **argv);

#endif
