/* HTTP/2 (RFC 9113) through nghttp2's callback API: one srv_exchange per stream, gRPC trailers,
 * early answers (message too big) with RST_STREAM(NO_ERROR) so the connection keeps working, and
 * output backpressure (nghttp2 is asked for frames only while the socket keeps up). */
#include "../common/log.h"
#include "conn.h"
#include "exchange.h"

#include <event2/buffer.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct h2_stream {
    int32_t id;
    srv_exchange *ex;
    int dispatched; /* handed to the router: the exchange belongs to it until on_answer */
    int answered;   /* response submitted; ex is still ours for the data provider */
    int headers_too_big;
    size_t sent; /* body bytes handed to nghttp2 */
    struct h2 *h;
    struct h2_stream *prev, *next;
} h2_stream;

typedef struct h2 {
    nghttp2_session *session;
    srv_conn *conn;
    h2_stream *streams;
    int goaway_sent;
    int in_recv; /* inside nghttp2_session_mem_recv: nghttp2 forbids sending from its callbacks */
} h2;

static h2 *state(srv_conn *c)
{
    return c->proto;
}

static void stream_free(h2 *h, h2_stream *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        h->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    if (s->ex) {
        if (s->dispatched && !s->answered)
            atomic_store(&s->ex->cancelled, 1); /* a worker holds it; it frees it later */
        else
            srv_exchange_free(s->ex);
    }
    free(s);
}

static int h2_send(srv_conn *c)
{
    h2 *h = state(c);
    struct evbuffer *out = srv_conn_output(c);
    while (evbuffer_get_length(out) < SRV_OUTPUT_HIGH_WATER) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(h->session, &data);
        if (n < 0) {
            sp_debug("msg=\"http/2 send failed\" peer=%s err=\"%s\"", c->peer,
                     nghttp2_strerror((int)n));
            return -1;
        }
        if (n == 0)
            break;
        if (evbuffer_add(out, data, (size_t)n) != 0)
            return -1;
    }
    if (!nghttp2_session_want_read(h->session) && !nghttp2_session_want_write(h->session)) {
        srv_conn_close(c, 0);
        return 0;
    }
    return 0;
}

static ssize_t read_body(nghttp2_session *session, int32_t id, uint8_t *buf, size_t len,
                         uint32_t *flags, nghttp2_data_source *src, void *user_data)
{
    h2_stream *s = src->ptr;
    srv_response *r = &s->ex->resp;
    size_t left = r->body.len - s->sent;
    size_t n = left < len ? left : len;
    if (n)
        memcpy(buf, r->body.data + s->sent, n);
    s->sent += n;
    if (s->sent == r->body.len) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (r->grpc) {
            char msg[3 * sizeof r->grpc_message + 1], status[16];
            snprintf(status, sizeof status, "%d", r->grpc_status);
            size_t mlen = srv_grpc_message_encode(r->grpc_message, msg, sizeof msg);
            nghttp2_nv trailers[] = {
                {(uint8_t *)"grpc-status", (uint8_t *)status, 11, strlen(status),
                 NGHTTP2_NV_FLAG_NONE},
                {(uint8_t *)"grpc-message", (uint8_t *)msg, 12, mlen, NGHTTP2_NV_FLAG_NONE},
            };
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            int rv = nghttp2_submit_trailer(session, id, trailers, mlen ? 2 : 1);
            if (rv != 0)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
    }
    return (ssize_t)n;
}

#define NV(n, v)                                                                                   \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE                 \
    }

static void on_answer(srv_exchange *ex)
{
    h2_stream *s = ex->owner;
    h2 *h = s->h;
    srv_response *r = &ex->resp;
    s->answered = 1;
    char status[8];
    snprintf(status, sizeof status, "%d", r->status ? r->status : 200);
    nghttp2_nv nva[40];
    size_t n = 0;
    nva[n++] = (nghttp2_nv)NV(":status", status);
    int has_ct = 0;
    for (size_t i = 0; i < r->nheaders && n < 38; i++) {
        nva[n++] = (nghttp2_nv)NV(r->headers[i].name, r->headers[i].value);
        has_ct |= strcmp(r->headers[i].name, "content-type") == 0;
    }
    if (r->grpc && !has_ct)
        nva[n++] = (nghttp2_nv)NV("content-type", "application/grpc");
    nghttp2_data_provider dp = {.source.ptr = s, .read_callback = read_body};
    int head = strcmp(ex->req.method, "HEAD") == 0;
    int rv = nghttp2_submit_response(h->session, s->id, nva, n,
                                     (r->body.len && !head) || r->grpc ? &dp : NULL);
    if (rv != 0)
        sp_warn("msg=\"http/2 submit failed\" err=\"%s\"", nghttp2_strerror(rv));
    if (!h->in_recv && h2_send(h->conn) < 0)
        srv_conn_close(h->conn, 1);
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *ud)
{
    srv_conn *c = ud;
    h2 *h = state(c);
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    h2_stream *s = calloc(1, sizeof *s);
    /* +5 leaves room for the gRPC message prefix, so the limit applies to the message itself. */
    srv_exchange *ex =
        s ? srv_exchange_new(SRV_HTTP2, c->ctx->cfg->max_recv_msg_size + SRV_FRAME_ALLOWANCE)
          : NULL;
    if (!ex) {
        free(s);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST_STREAM(INTERNAL_ERROR) */
    }
    ex->req.tls = c->tls;
    snprintf(ex->req.peer, sizeof ex->req.peer, "%s", c->peer);
    ex->owner = s;
    ex->on_done = on_answer;
    s->id = frame->hd.stream_id;
    s->ex = ex;
    s->h = h;
    s->next = h->streams;
    if (h->streams)
        h->streams->prev = s;
    h->streams = s;
    nghttp2_session_set_stream_user_data(session, s->id, s);
    return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    h2_stream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (!s || s->dispatched)
        return 0; /* trailers from the client carry nothing we use */
    srv_exchange *ex = s->ex;
    if (nlen == 7 && memcmp(name, ":method", 7) == 0) {
        snprintf(ex->req.method, sizeof ex->req.method, "%.*s", (int)vlen, (const char *)value);
        return 0;
    }
    if (nlen == 5 && memcmp(name, ":path", 5) == 0)
        return srv_exchange_set_target(ex, (const char *)value, vlen)
                   ? NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE
                   : 0;
    if (nlen && name[0] == ':')
        return 0; /* :scheme, :authority: nothing to route on */
    int rc = srv_exchange_add_header(ex, (const char *)name, nlen, (const char *)value, vlen);
    if (rc == SP_ETOOBIG)
        s->headers_too_big = 1;
    else if (rc)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
}

static void dispatch(srv_conn *c, h2_stream *s)
{
    if (s->dispatched)
        return;
    s->dispatched = 1;
    srv_router_dispatch(c->ctx->router, s->ex);
}

static void fail_stream(srv_conn *c, h2_stream *s, int code, const char *msg)
{
    if (s->dispatched)
        return;
    s->dispatched = 1;
    sp_err err;
    sp_fail(&err, code, "%s", msg);
    srv_router_fail(s->ex, &err);
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *ud)
{
    srv_conn *c = ud;
    if (frame->hd.type == NGHTTP2_SETTINGS && !(frame->hd.flags & NGHTTP2_FLAG_ACK))
        srv_conn_head_deadline(c, 0); /* preface and SETTINGS are in: a live HTTP/2 client */
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
        return 0;
    h2_stream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (!s)
        return 0;
    if (frame->hd.type == NGHTTP2_HEADERS && !s->ex->route) {
        if (!s->ex->req.path)
            srv_exchange_set_target(s->ex, "/", 1);
        srv_router_match(c->ctx->router, s->ex);
        if (s->headers_too_big) {
            fail_stream(c, s, SP_ETOOBIG, "request header fields too large");
            return 0;
        }
        if (s->ex->auth_refused) {
            dispatch(c, s); /* answered now: the client need not upload a body we would drop */
            return 0;
        }
    }
    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
        dispatch(c, s);
    return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    srv_conn *c = ud;
    h2_stream *s = nghttp2_session_get_stream_user_data(session, id);
    if (!s || s->dispatched)
        return 0; /* already answered (e.g. too big): discard; nghttp2 still credits the window */
    int rc = srv_exchange_body(s->ex, data, len);
    if (rc == SP_ETOOBIG)
        dispatch(c, s); /* the router answers RESOURCE_EXHAUSTED / 413 naming the limit */
    else if (rc == SP_EFULL)
        fail_stream(c, s, SP_EFULL, "server is buffering too many request bytes; retry later");
    else if (rc)
        fail_stream(c, s, SP_ENOMEM, "out of memory");
    return 0;
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *ud)
{
    /* We answered before the client finished sending (RFC 9113 section 8.1): tell it to stop. */
    if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
        !nghttp2_session_get_stream_remote_close(session, frame->hd.stream_id))
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                  NGHTTP2_NO_ERROR);
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t id, uint32_t error_code, void *ud)
{
    srv_conn *c = ud;
    h2_stream *s = nghttp2_session_get_stream_user_data(session, id);
    if (s) {
        nghttp2_session_set_stream_user_data(session, id, NULL);
        stream_free(state(c), s);
    }
    return 0;
}

static int on_read(srv_conn *c)
{
    h2 *h = state(c);
    struct evbuffer *in = srv_conn_input(c);
    while (evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        h->in_recv = 1;
        ssize_t n = nghttp2_session_mem_recv(h->session, v.iov_base, v.iov_len);
        h->in_recv = 0;
        if (n < 0) {
            sp_debug("msg=\"http/2 protocol error\" peer=%s err=\"%s\"", c->peer,
                     nghttp2_strerror((int)n));
            /* nghttp2 queued a GOAWAY for most errors: try to send it, then close. */
            h2_send(c);
            srv_conn_close(c, 0);
            return 0;
        }
        evbuffer_drain(in, (size_t)n);
        if (c->closed)
            return 0;
    }
    return h2_send(c);
}

static int on_drain(srv_conn *c)
{
    return h2_send(c);
}

static void on_shutdown(srv_conn *c)
{
    h2 *h = state(c);
    if (!h->goaway_sent) {
        h->goaway_sent = 1;
        nghttp2_submit_goaway(h->session, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(h->session), NGHTTP2_NO_ERROR,
                              NULL, 0);
    }
    if (h2_send(c) < 0)
        srv_conn_close(c, 1);
    else if (!c->closed && !h->streams)
        srv_conn_close(c, 0);
}

static int idle(srv_conn *c)
{
    return state(c)->streams == NULL;
}

static void h2_free(srv_conn *c)
{
    h2 *h = state(c);
    if (!h)
        return;
    while (h->streams)
        stream_free(h, h->streams);
    nghttp2_session_del(h->session);
    free(h);
    c->proto = NULL;
}

const srv_proto_ops srv_http2_ops = {on_read, on_drain, on_shutdown, idle, h2_free};

int srv_http2_start(srv_conn *c)
{
    h2 *h = calloc(1, sizeof *h);
    if (!h)
        return -1;
    h->conn = c;
    nghttp2_session_callbacks *cbs;
    if (nghttp2_session_callbacks_new(&cbs) != 0) { /* NGHTTP2_ERR_NOMEM only */
        free(h);
        return -1;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_option *opt;
    if (nghttp2_option_new(&opt) != 0) {
        nghttp2_session_callbacks_del(cbs);
        free(h);
        return -1;
    }
    /* Cap HPACK state a peer can make us keep. */
    nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
    /* Floods, with nghttp2's defaults spelled out so they are not lost to a library change:
     * RST_STREAM right after HEADERS (CVE-2023-44487) costs us a stream each time, so past a
     * burst of 1000 at 33/s the connection gets GOAWAY; a header block may not run over 8
     * CONTINUATION frames (CVE-2024-27316); PING and SETTINGS ACKs a client does not read stop at
     * 1000 queued; a SETTINGS frame carries at most 32 entries. */
    nghttp2_option_set_stream_reset_rate_limit(opt, 1000, 33);
    nghttp2_option_set_max_continuations(opt, 8);
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    nghttp2_option_set_max_settings(opt, 32);
    int rv = nghttp2_session_server_new2(&h->session, cbs, c, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0) {
        free(h);
        return -1;
    }
    c->proto = h;
    c->ops = &srv_http2_ops;
    /* Large windows let a 64 MiB export stream without waiting for WINDOW_UPDATE round trips;
     * the per-message limit and the in-flight budget bound what we buffer. */
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, (uint32_t)c->ctx->cfg->max_concurrent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 4u << 20},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, SRV_MAX_HEADER_BYTES},
    };
    /* Both fail only with NGHTTP2_ERR_NOMEM (or a bad argument, a bug): the connection cannot
     * go on without its SETTINGS, so it is closed. */
    if (nghttp2_submit_settings(h->session, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) != 0 ||
        nghttp2_session_set_local_window_size(h->session, NGHTTP2_FLAG_NONE, 0, 32 << 20) != 0)
        return -1;
    return on_read(c);
}
