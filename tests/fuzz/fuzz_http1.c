/* libFuzzer target: the HTTP/1.1 request parser on its own (server/http1.c over http_parser),
 * driven through server/conn.c's srv_server_adopt() seam like fuzz_http_conn, but only with
 * HTTP/1.1 byte streams and with the split into reads under the fuzzer's control.
 * Input: byte 0 picks the read size (1..32 bytes, or 0 = everything at once); the rest is what
 * the client writes on one connection (a stream that could be the HTTP/2 preface is skipped).
 * Invariants:
 *  - the answers do not depend on how the bytes were split into reads: the stream delivered at
 *    once and delivered in pieces gets byte-identical answers (but for which of two nearby errors
 *    the final 4xx answer names);
 *  - the answers parse as HTTP/1.1 responses, with only header lines the server wrote, and
 *    nothing follows an answer that says "connection: close";
 *  - a body the echo route sees has the length its Content-Length announced;
 *  - every body buffer is given back when the client hangs up. */
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

static void echo(srv_request *req, srv_response *resp, void *ud)
{
    const char *cl = srv_header_get(req, "content-length");
    if (cl && !srv_header_get(req, "transfer-encoding"))
        CHECK(strtoull(cl, NULL, 10) == req->body.len);
    srv_response_send(resp, 200, "application/octet-stream", req->body.data, req->body.len);
}

static void target(srv_request *req, srv_response *resp, void *ud)
{
    char v[64];
    int n = srv_query_get(req, "x", v, sizeof v);
    if (n < 0) {
        const char *p = req->path ? req->path : "";
        srv_response_send(resp, 200, "text/plain; charset=utf-8", p, strlen(p));
        return;
    }
    srv_response_send(resp, 200, "text/plain; charset=utf-8", v, (size_t)n);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    srv_options_defaults(&cfg);
    cfg.http_addr = cfg.grpc_addr = "127.0.0.1:0";
    cfg.workers = 1;
    cfg.queue_size = 4;
    cfg.max_recv_msg_size = 4096;
    cfg.max_inflight_bytes = 1u << 20;
    srv_router *r = srv_router_new();
    CHECK(r);
    CHECK(srv_router_add(r, "POST", "/echo", SRV_INLINE, "echo", echo, NULL) == 0);
    CHECK(srv_router_add(r, NULL, "/t*", SRV_INLINE, "target", target, NULL) == 0);
    sp_err err;
    CHECK(srv_server_new(&server, &cfg, r, &err) == 0);
    return 0;
}

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

/* Writes data on a fresh connection in reads of `chunk` bytes and collects the answers. */
static void converse(const uint8_t *data, size_t size, size_t chunk, sp_buf *out)
{
    struct event_base *base = srv_server_base(server);
    struct bufferevent *pair[2];
    CHECK(bufferevent_pair_new(base, BEV_OPT_DEFER_CALLBACKS, pair) == 0);
    struct bufferevent *client = pair[1];
    bufferevent_enable(client, EV_READ | EV_WRITE);
    CHECK(srv_server_adopt(server, pair[0], "fuzz:1") == 0);
    for (size_t off = 0; off < size; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        bufferevent_write(client, data + off, n);
        pump(base, client, out);
    }
    pump(base, client, out);
    bufferevent_flush(client, EV_WRITE, BEV_FINISHED);
    pump(base, client, out);
    CHECK(bufferevent_pair_get_partner(client) == NULL); /* the server let go */
    bufferevent_free(client);
    pump(base, NULL, out);
    CHECK(srv_inflight_bytes() == 0);
}

typedef struct answers {
    int in_field, close_seen, after_close;
    sp_buf field, value;
} answers;

static void field_done(answers *c)
{
    if (!c->in_field)
        return;
    c->in_field = 0;
    static const char *known[] = {"content-type", "content-length", "connection",
                                  "grpc-status",  "grpc-message",   "retry-after"};
    int ok = 0;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        ok |=
            c->field.len == strlen(known[i]) && memcmp(c->field.data, known[i], c->field.len) == 0;
    CHECK(ok);
}

static int on_begin(http_parser *p)
{
    answers *c = p->data;
    if (c->close_seen)
        c->after_close = 1;
    return 0;
}

static int on_field(http_parser *p, const char *at, size_t len)
{
    answers *c = p->data;
    if (!c->in_field) {
        c->field.len = 0;
        c->value.len = 0;
    }
    c->in_field = 1;
    CHECK(sp_buf_append(&c->field, at, len) == 0);
    return 0;
}

static int on_value(http_parser *p, const char *at, size_t len)
{
    answers *c = p->data;
    field_done(c);
    CHECK(sp_buf_append(&c->value, at, len) == 0);
    if (c->field.len == 10 && memcmp(c->field.data, "connection", 10) == 0 && c->value.len == 5 &&
        memcmp(c->value.data, "close", 5) == 0)
        c->close_seen = 1;
    return 0;
}

static int on_headers_done(http_parser *p)
{
    field_done(p->data);
    return 0;
}

/* A HEAD answer announces a body it does not carry, which a parser that did not see the request
 * cannot know: with HEAD in the stream only the first answer's head is checked. */
static void check_answers(const sp_buf *out, int has_head)
{
    answers c = {0};
    sp_buf_init(&c.field, 0);
    sp_buf_init(&c.value, 0);
    http_parser p;
    http_parser_init(&p, HTTP_RESPONSE);
    p.data = &c;
    http_parser_settings s = {.on_message_begin = on_begin,
                              .on_header_field = on_field,
                              .on_header_value = on_value,
                              .on_headers_complete = on_headers_done};
    if (out->len) {
        size_t n = http_parser_execute(&p, &s, (const char *)out->data, out->len);
        if (!has_head) {
            CHECK(HTTP_PARSER_ERRNO(&p) == HPE_OK && n == out->len);
            CHECK(!c.after_close);
        }
    }
    sp_buf_free(&c.field);
    sp_buf_free(&c.value);
}

/* The last error answer of a stream: where a stream breaks two rules a few bytes apart (a header
 * too many, then an invalid character), which one is reported first depends on where a read
 * ended, since http_parser reports a token at a read's end early. Anything before it must match. */
static int final_error_at(const sp_buf *b, size_t at)
{
    static const char close[] = "\r\nconnection: close\r\n";
    if (b->len - at < 10 || memcmp(b->data + at, "HTTP/1.1 4", 10) != 0)
        return 0;
    const uint8_t *end = memmem(b->data + at, b->len - at, "\r\n\r\n", 4);
    return end && memmem(b->data + at, (size_t)(end + 2 - (b->data + at)), close, sizeof close - 1);
}

static void check_same_answers(const sp_buf *whole, const sp_buf *pieces)
{
    size_t n = whole->len < pieces->len ? whole->len : pieces->len, same = 0;
    while (same < n && whole->data[same] == pieces->data[same])
        same++;
    if (same == whole->len && same == pieces->len)
        return;
    /* back to the start of the answer where they part */
    size_t at = same;
    while (at > 0 && !(at + 9 <= n && memcmp(whole->data + at, "HTTP/1.1 ", 9) == 0))
        at--;
    CHECK(final_error_at(whole, at) && final_error_at(pieces, at));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 1u << 16)
        return 0;
    size_t chunk = data[0] % 33;
    const uint8_t *stream = data + 1;
    size_t len = size - 1;
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    if (len && memcmp(stream, preface, len < 24 ? len : 24) == 0)
        return 0;
    sp_buf whole, pieces;
    sp_buf_init(&whole, 0);
    sp_buf_init(&pieces, 0);
    converse(stream, len, len ? len : 1, &whole);
    check_answers(&whole, memmem(stream, len, "HEAD", 4) != NULL);
    if (chunk) {
        converse(stream, len, chunk, &pieces);
        check_same_answers(&whole, &pieces);
    }
    sp_buf_free(&whole);
    sp_buf_free(&pieces);
    return 0;
}
