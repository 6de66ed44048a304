/* libFuzzer target: the whole connection layer (server/conn.c, http1.c, http2.c, router.c) driven
 * in-process. One server (listening on an ephemeral loopback port it never accepts on) serves a
 * few inline routes; each input is the byte stream a client writes on one connection, delivered
 * through a libevent bufferevent pair: protocol sniffing, HTTP/1.1 keep-alive, pipelining, chunked
 * bodies, 100-continue, HTTP/2 frames and HPACK, gRPC trailers, early answers to bodies over the
 * limit. The event loop runs without blocking until the connection is idle; then the client hangs
 * up and the connection must be gone.
 * Input: the client's bytes. An odd-sized input is written in small chunks with the loop run in
 * between (a slow client), an even-sized one at once.
 * HTTP/1.1 answers are parsed back: every header line must be one the server or a route wrote
 * (request bytes must never turn into response headers). */
#include "server/conn.h"
#include "server/exchange.h"
#include "server/server.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <http_parser.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz_check.h"

static srv_options cfg;
static srv_server *server;

/* ---- routes ---------------------------------------------------------------------------------- */

static void echo(srv_request *req, srv_response *resp, void *ud)
{
    srv_response_send(resp, 200, "application/octet-stream", req->body.data, req->body.len);
}

static void ready(srv_request *req, srv_response *resp, void *ud)
{
    srv_response_send(resp, 200, "text/plain; charset=utf-8", "ready\n", 6);
}

static void query(srv_request *req, srv_response *resp, void *ud)
{
    char v[64];
    int n = srv_query_get(req, "x", v, sizeof v);
    if (n < 0) {
        sp_err err;
        sp_fail(&err, SP_EINVAL, "parameter x is missing in %s", req->query ? req->query : "");
        srv_response_error(resp, req, &err);
        return;
    }
    srv_response_send(resp, 200, "text/plain; charset=utf-8", v, (size_t)n);
}

static void grpc_echo(srv_request *req, srv_response *resp, void *ud)
{
    if (req->body.len < 5) {
        sp_err err;
        sp_fail(&err, SP_EINVAL, "message of %zu bytes at %s has no gRPC prefix", req->body.len,
                req->path);
        srv_response_error(resp, req, &err);
        return;
    }
    srv_response_header(resp, "content-type", "application/grpc");
    srv_response_grpc(resp, GRPC_OK, NULL, req->body.data, req->body.len);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    srv_options_defaults(&cfg);
    cfg.http_addr = cfg.grpc_addr = "127.0.0.1:0";
    cfg.workers = 1;
    cfg.queue_size = 4;
    cfg.max_recv_msg_size = 4096;
    cfg.max_inflight_bytes = 1u << 20;
    cfg.max_concurrent_streams = 16;
    srv_router *r = srv_router_new();
    CHECK(r);
    CHECK(srv_router_add(r, "POST", "/echo", SRV_INLINE, "echo", echo, NULL) == 0);
    CHECK(srv_router_add(r, "GET", "/ready", SRV_INLINE, "ready", ready, NULL) == 0);
    CHECK(srv_router_add(r, NULL, "/q*", SRV_INLINE, "query", query, NULL) == 0);
    CHECK(srv_router_add(r, "POST", "/svc.Echo/Call", SRV_INLINE, "grpc", grpc_echo, NULL) == 0);
    sp_err err;
    CHECK(srv_server_new(&server, &cfg, r, &err) == 0);
    return 0;
}

/* ---- the client side ------------------------------------------------------------------------- */

/* Runs the loop until nothing moves for a few rounds (deferred callbacks, deferred frees and
 * pipelined requests each take a round), collecting what the server wrote (client may be NULL
 * once it is gone). */
static void pump(struct event_base *base, struct bufferevent *client, sp_buf *out)
{
    int quiet = 0;
    for (int round = 0; round < 100000 && quiet < 4; round++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        struct evbuffer *in = client ? bufferevent_get_input(client) : NULL;
        size_t n = in ? evbuffer_get_length(in) : 0;
        if (n) {
            CHECK(sp_buf_reserve(out, n) == 0);
            evbuffer_remove(in, out->data + out->len, n);
            out->len += n;
        }
        int active = event_base_get_num_events(base, EVENT_BASE_COUNT_ACTIVE);
        quiet = n || active ? 0 : quiet + 1;
    }
}

typedef struct h1_check {
    int in_field;
    sp_buf field;
} h1_check;

static int on_field(http_parser *p, const char *at, size_t len)
{
    h1_check *c = p->data;
    if (!c->in_field)
        c->field.len = 0;
    c->in_field = 1;
    CHECK(sp_buf_append(&c->field, at, len) == 0);
    return 0;
}

static void field_done(h1_check *c)
{
    if (!c->in_field)
        return;
    c->in_field = 0;
    static const char *known[] = {"content-type", "content-length", "connection",
                                  "grpc-status",  "grpc-message",   "retry-after"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (c->field.len == strlen(known[i]) && memcmp(c->field.data, known[i], c->field.len) == 0)
            return;
    CHECK(!"a response header the server did not write");
}

static int on_value(http_parser *p, const char *at, size_t len)
{
    field_done(p->data);
    return 0;
}

static int on_headers_done(http_parser *p)
{
    field_done(p->data);
    return 0;
}

/* Parses the server's HTTP/1.1 answers. A HEAD answer announces a body it does not carry, which
 * a parser that did not see the request cannot know: checking stops at the first parse error. */
static void check_h1_answers(const sp_buf *out)
{
    h1_check c = {0};
    sp_buf_init(&c.field, 0);
    http_parser p;
    http_parser_init(&p, HTTP_RESPONSE);
    p.data = &c;
    http_parser_settings s = {.on_header_field = on_field,
                              .on_header_value = on_value,
                              .on_headers_complete = on_headers_done};
    if (out->len)
        http_parser_execute(&p, &s, (const char *)out->data, out->len);
    sp_buf_free(&c.field);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1u << 16)
        return 0;
    struct event_base *base = srv_server_base(server);
    struct bufferevent *pair[2];
    CHECK(bufferevent_pair_new(base, BEV_OPT_DEFER_CALLBACKS, pair) == 0);
    struct bufferevent *client = pair[1];
    bufferevent_enable(client, EV_READ | EV_WRITE);
    CHECK(srv_server_adopt(server, pair[0], "fuzz:1") == 0);

    sp_buf out;
    sp_buf_init(&out, 0);
    size_t chunk = size & 1 ? size % 13 + 1 : size;
    for (size_t off = 0; off < size; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        bufferevent_write(client, data + off, n);
        pump(base, client, &out);
    }
    pump(base, client, &out);

    /* The client hangs up; the server must let go of the connection. */
    bufferevent_flush(client, EV_WRITE, BEV_FINISHED);
    pump(base, client, &out);
    CHECK(bufferevent_pair_get_partner(client) == NULL);
    bufferevent_free(client);
    pump(base, NULL, &out);

    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    if (size < 24 || memcmp(data, preface, 24) != 0)
        check_h1_answers(&out);
    CHECK(srv_inflight_bytes() == 0); /* every body buffer was given back */
    sp_buf_free(&out);
    return 0;
}
