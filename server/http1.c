/* HTTP/1.1 (RFC 9112) on top of Debian's http_parser: keep-alive, chunked bodies, Expect:
 * 100-continue, one request at a time per connection (pipelined requests wait in the input buffer
 * until the answer to the previous one is written). */
#include "../common/log.h"
#include "conn.h"
#include "exchange.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <limits.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_URL 8192

typedef struct h1 {
    http_parser parser;
    srv_conn *conn;
    srv_exchange *ex; /* being parsed, then being handled */
    sp_buf url, hname, hval;
    int in_value;
    int busy;        /* dispatched, waiting for the answer */
    int fail_status; /* answer this status and close (set by callbacks) */
    const char *fail_msg;
    int closing;    /* close once the current answer is written */
    int wait_drain; /* answers pile up unread: parse on once the output drains */
} h1;

static h1 *state(srv_conn *c)
{
    return c->proto;
}

static int fail(h1 *h, int status, const char *msg)
{
    h->fail_status = status;
    h->fail_msg = msg;
    return 1; /* a non-zero callback result stops http_parser */
}

static int flush_header(h1 *h)
{
    if (!h->hname.len)
        return 0;
    int rc = srv_exchange_add_header(h->ex, (char *)h->hname.data, h->hname.len,
                                     h->hval.data ? (char *)h->hval.data : "", h->hval.len);
    h->hname.len = h->hval.len = 0;
    h->in_value = 0;
    if (rc == SP_ETOOBIG)
        return fail(h, 431, "request header fields too large");
    return rc ? fail(h, 500, "out of memory") : 0;
}

static void on_answer(srv_exchange *ex);

static int on_message_begin(http_parser *p)
{
    h1 *h = p->data;
    /* +5 leaves room for the gRPC message prefix, so the limit applies to the message itself. */
    h->ex = srv_exchange_new(SRV_HTTP1, h->conn->ctx->cfg->max_recv_msg_size + SRV_FRAME_ALLOWANCE);
    if (!h->ex)
        return fail(h, 500, "out of memory");
    srv_conn_head_deadline(h->conn, 1); /* this request's head: from its first byte */
    h->ex->req.tls = h->conn->tls;
    snprintf(h->ex->req.peer, sizeof h->ex->req.peer, "%s", h->conn->peer);
    h->ex->owner = h->conn;
    h->ex->on_done = on_answer;
    h->url.len = h->hname.len = h->hval.len = 0;
    h->in_value = 0;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    h1 *h = p->data;
    return sp_buf_append(&h->url, at, len) ? fail(h, 414, "URI too long") : 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    h1 *h = p->data;
    if (h->in_value && flush_header(h))
        return 1;
    return sp_buf_append(&h->hname, at, len) ? fail(h, 431, "request header fields too large") : 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    h1 *h = p->data;
    h->in_value = 1;
    return sp_buf_append(&h->hval, at, len) ? fail(h, 431, "request header fields too large") : 0;
}

static int on_headers_complete(http_parser *p)
{
    h1 *h = p->data;
    srv_exchange *ex = h->ex;
    srv_conn_head_deadline(h->conn, 0);
    if (flush_header(h))
        return 1;
    snprintf(ex->req.method, sizeof ex->req.method, "%s", http_method_str(p->method));
    if (srv_exchange_set_target(ex, h->url.data ? (char *)h->url.data : "/", h->url.len))
        return fail(h, 500, "out of memory");
    srv_router_match(h->conn->ctx->router, ex);
    if (p->content_length != ULLONG_MAX && p->content_length > ex->req.body.limit) {
        /* Refuse before reading: the body never arrives, so the connection must close. */
        ex->req.body_too_big = 1;
        return 0;
    }
    const char *expect = srv_header_get(&ex->req, "expect");
    /* A refused request gets no invitation to send its body (it is discarded if it comes). */
    if (expect && strcasecmp(expect, "100-continue") == 0 && !ex->auth_refused)
        evbuffer_add(srv_conn_output(h->conn), "HTTP/1.1 100 Continue\r\n\r\n", 25);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    h1 *h = p->data;
    if (h->ex->req.body_too_big)
        return 1; /* answered from on_read: stop parsing this connection */
    int rc = srv_exchange_body(h->ex, at, len);
    if (rc == SP_ETOOBIG)
        return 1;
    if (rc == SP_EFULL)
        return fail(h, 429, "server is buffering too many request bytes; retry later");
    return rc ? fail(h, 500, "out of memory") : 0;
}

static int on_message_complete(http_parser *p)
{
    h1 *h = p->data;
    h->busy = 1;
    http_parser_pause(p, 1); /* one request at a time: resume after the answer is written */
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static const char *reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Status";
    }
}

static void write_raw_error(h1 *h, int status, const char *msg)
{
    evbuffer_add_printf(srv_conn_output(h->conn),
                        "HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                        "content-length: %zu\r\nconnection: close\r\n\r\n%s\n",
                        status, reason(status), strlen(msg) + 1, msg);
}

static void resume(srv_conn *c)
{
    bufferevent_enable(c->bev, EV_READ);
    /* Pipelined requests already buffered: parse them from the loop, not by recursion, so a
     * client cannot grow the stack with thousands of requests in one packet. */
    if (evbuffer_get_length(srv_conn_input(c)) > 0)
        bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

static void on_answer(srv_exchange *ex)
{
    srv_conn *c = ex->owner;
    h1 *h = state(c);
    srv_response *r = &ex->resp;
    struct evbuffer *out = srv_conn_output(c);
    int keep = !h->closing && !ex->req.body_too_big && !h->conn->ctx->draining &&
               http_should_keep_alive(&h->parser);
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n", r->status, reason(r->status));
    for (size_t i = 0; i < r->nheaders; i++)
        evbuffer_add_printf(out, "%s: %s\r\n", r->headers[i].name, r->headers[i].value);
    if (r->grpc) { /* gRPC has no HTTP/1.1 mapping; say what happened the trailers-only way */
        evbuffer_add_printf(out, "content-type: application/grpc\r\ngrpc-status: %d\r\n",
                            r->grpc_status);
        if (r->grpc_message[0]) {
            char msg[3 * sizeof r->grpc_message + 1];
            srv_grpc_message_encode(r->grpc_message, msg, sizeof msg);
            evbuffer_add_printf(out, "grpc-message: %s\r\n", msg);
        }
    }
    evbuffer_add_printf(out, "content-length: %zu\r\n%s\r\n", r->body.len,
                        keep ? "" : "connection: close\r\n");
    if (strcmp(ex->req.method, "HEAD") != 0 && r->body.len)
        evbuffer_add(out, r->body.data, r->body.len);
    srv_exchange_free(ex);
    h->ex = NULL;
    h->busy = 0;
    if (!keep) {
        h->closing = 1;
        srv_conn_close(c, 0);
        return;
    }
    http_parser_pause(&h->parser, 0);
    /* A client that pipelines requests but does not read the answers would make us buffer
     * answers without bound: stop reading requests until it has taken what is written. */
    if (evbuffer_get_length(out) >= SRV_OUTPUT_HIGH_WATER) {
        h->wait_drain = 1;
        return;
    }
    resume(c);
}

static int parse(srv_conn *c)
{
    h1 *h = state(c);
    struct evbuffer *in = srv_conn_input(c);
    while (!h->busy && !h->closing && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        size_t n = http_parser_execute(&h->parser, &settings, v.iov_base, v.iov_len);
        evbuffer_drain(in, n);
        enum http_errno e = HTTP_PARSER_ERRNO(&h->parser);
        if (e == HPE_PAUSED || h->busy) {
            h->busy = 1;
            bufferevent_disable(c->bev, EV_READ);       /* backpressure while the handler runs */
            srv_router_dispatch(c->ctx->router, h->ex); /* may answer (and re-enter) at once */
            return 0;
        }
        if (h->ex && h->ex->req.body_too_big) {
            h->busy = 1;
            h->closing = 1;
            srv_router_dispatch(c->ctx->router, h->ex);
            return 0;
        }
        if (e != HPE_OK) {
            int status = h->fail_status             ? h->fail_status
                         : e == HPE_HEADER_OVERFLOW ? 431
                         : e == HPE_INVALID_METHOD  ? 501
                                                    : 400;
            char msg[160];
            snprintf(msg, sizeof msg, "%s", h->fail_msg ? h->fail_msg : http_errno_description(e));
            sp_debug("msg=\"http/1.1 parse error\" peer=%s err=\"%s\"", c->peer, msg);
            write_raw_error(h, status, msg);
            if (h->ex) {
                srv_exchange_free(h->ex);
                h->ex = NULL;
            }
            h->closing = 1;
            srv_conn_close(c, 0);
            return 0;
        }
        if (n == 0)
            break;
    }
    return 0;
}

static int on_read(srv_conn *c)
{
    return parse(c);
}

static int on_drain(srv_conn *c)
{
    h1 *h = state(c);
    if (h->wait_drain && !h->busy && !h->closing) {
        h->wait_drain = 0;
        resume(c);
    }
    return 0;
}

static void on_shutdown(srv_conn *c)
{
    h1 *h = state(c);
    if (!h->busy && !h->ex)
        srv_conn_close(c, 0);
    else
        h->closing = 0; /* on_answer sees ctx->draining and closes after the answer */
}

static int idle(srv_conn *c)
{
    h1 *h = state(c);
    return !h->busy;
}

static void h1_free(srv_conn *c)
{
    h1 *h = state(c);
    if (!h)
        return;
    if (h->ex) {
        if (h->busy) /* a worker or the completion queue still holds it */
            atomic_store(&h->ex->cancelled, 1);
        else
            srv_exchange_free(h->ex);
    }
    sp_buf_free(&h->url);
    sp_buf_free(&h->hname);
    sp_buf_free(&h->hval);
    free(h);
    c->proto = NULL;
}

const srv_proto_ops srv_http1_ops = {on_read, on_drain, on_shutdown, idle, h1_free};

int srv_http1_start(srv_conn *c)
{
    h1 *h = calloc(1, sizeof *h);
    if (!h)
        return -1;
    http_parser_init(&h->parser, HTTP_REQUEST);
    h->parser.data = h;
    h->conn = c;
    sp_buf_init(&h->url, MAX_URL);
    sp_buf_init(&h->hname, SRV_MAX_HEADER_BYTES);
    sp_buf_init(&h->hval, SRV_MAX_HEADER_BYTES);
    c->proto = h;
    c->ops = &srv_http1_ops;
    return parse(c);
}
