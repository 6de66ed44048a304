/* A client connection and the protocol state behind it. Internal to server/.
 *
 * conn.c accepts, wraps the socket in a bufferevent (plain or OpenSSL), and sniffs the first bytes:
 * ALPN "h2" or the HTTP/2 client preface selects http2.c, anything else http1.c. The protocol layer
 * owns everything above the byte stream; it asks conn.c to close through srv_conn_close().
 */
#ifndef SRV_CONN_H
#define SRV_CONN_H

#include "options.h"
#include "router.h"

#include <event2/bufferevent.h>

typedef struct srv_conn srv_conn;
typedef struct srv_ctx srv_ctx;

/* What every connection shares: settings, router, loop. */
struct srv_ctx {
    const srv_options *cfg;
    srv_router *router;
    struct event_base *base;
    int draining; /* graceful shutdown started */
};

typedef struct srv_proto_ops {
    int (*on_read)(srv_conn *c);      /* new bytes in srv_conn_input(); <0 = close now */
    int (*on_drain)(srv_conn *c);     /* output drained below the low watermark */
    void (*on_shutdown)(srv_conn *c); /* graceful shutdown: GOAWAY / close when idle */
    int (*idle)(srv_conn *c);         /* no request in progress */
    void (*free)(srv_conn *c);        /* cancels outstanding exchanges */
} srv_proto_ops;

struct srv_conn {
    srv_ctx *ctx;
    struct bufferevent *bev;
    int tls;
    char peer[64];
    const srv_proto_ops *ops;
    void *proto;
    int close_after_write;
    int closed;
    struct event *head_timer; /* --header-timeout, while armed */
    srv_conn *prev, *next;
};

struct evbuffer *srv_conn_input(srv_conn *c);
struct evbuffer *srv_conn_output(srv_conn *c);
/* Closes once pending output is written (graceful) or at once (abort). */
void srv_conn_close(srv_conn *c, int abort);
/* The head deadline (--header-timeout) bounds slow clients that trickle bytes, which the idle
 * timeout cannot (every byte resets it). conn.c arms it at accept, covering the TLS handshake and
 * the first request head or HTTP/2 preface; http1.c re-arms it when a request begins and disarms
 * it once the head is complete, http2.c disarms it at the client's first SETTINGS. On expiry the
 * connection is closed. */
void srv_conn_head_deadline(srv_conn *c, int armed);

extern const srv_proto_ops srv_http1_ops;
extern const srv_proto_ops srv_http2_ops;
int srv_http1_start(srv_conn *c);
/* alpn: 1 when h2 was negotiated by ALPN (the preface is still expected from the client). */
int srv_http2_start(srv_conn *c);

#define SRV_OUTPUT_HIGH_WATER (1u << 20)

/* Test seam for tests/fuzz/fuzz_http_conn.c, which drives the protocol layers in-process through
 * a bufferevent pair instead of a socket: serves bev (plain text, on srv_server_base(s)) as if the
 * listener had just accepted it; s owns it from then on. The server itself never calls these. */
struct srv_server;
int srv_server_adopt(struct srv_server *s, struct bufferevent *bev, const char *peer);
struct event_base *srv_server_base(struct srv_server *s);

/* tls.c */
struct ssl_ctx_st;
int srv_tls_ctx_new(struct ssl_ctx_st **out, const srv_options *cfg, sp_err *err);
/* ALPN protocol the handshake selected: "h2", "http/1.1" or "" */
const char *srv_tls_alpn(struct bufferevent *bev);

#endif
