/* srv_request / srv_response helpers and the one status table of the program. */
#include "request.h"
#include "../common/log.h"
#include "../common/metrics.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The edge's only mapping from error codes to wire statuses (gRPC statuscodes.md, RFC 9110). */
/* Connect (connectrpc.com/docs/protocol, "Error Codes") names its codes and fixes their HTTP
 * statuses itself; `connect_http` is that status, `http` ours for plain HTTP endpoints. */
static const struct {
    int code, grpc, http;
    const char *connect;
    int connect_http;
} status_table[] = {
    {SP_OK, GRPC_OK, 200, "ok", 200},
    {SP_EINVAL, GRPC_INVALID_ARGUMENT, 400, "invalid_argument", 400},
    {SP_ETOOBIG, GRPC_RESOURCE_EXHAUSTED, 413, "resource_exhausted", 429},
    {SP_EFULL, GRPC_RESOURCE_EXHAUSTED, 429, "resource_exhausted", 429},
    {SP_EUNAVAIL, GRPC_UNAVAILABLE, 503, "unavailable", 503},
    {SP_ENOTFOUND, GRPC_NOT_FOUND, 404, "not_found", 404},
    {SP_EUNIMPL, GRPC_UNIMPLEMENTED, 404, "unimplemented", 501},
    {SP_EDEADLINE, GRPC_DEADLINE_EXCEEDED, 504, "deadline_exceeded", 504},
    {SP_EMEDIA, GRPC_INVALID_ARGUMENT, 415, "invalid_argument", 415},
    {SP_EAUTH, GRPC_UNAUTHENTICATED, 401, "unauthenticated", 401},
    {SP_ENOMEM, GRPC_RESOURCE_EXHAUSTED, 503, "resource_exhausted", 429},
    {SP_EINTERNAL, GRPC_INTERNAL, 500, "internal", 500},
};

static size_t status_row(int code)
{
    size_t n = sizeof status_table / sizeof status_table[0];
    for (size_t i = 0; i < n; i++)
        if (status_table[i].code == code)
            return i;
    return n - 1; /* SP_EINTERNAL */
}

/* Length of the well-formed UTF-8 sequence at NUL-terminated p (RFC 3629 table), 0 when there
 * is none. */
static size_t utf8_len(const unsigned char *p)
{
    unsigned lo = 0x80, hi = 0xBF;
    size_t n;
    if (p[0] >= 0xC2 && p[0] <= 0xDF) {
        n = 2;
    } else if (p[0] >= 0xE0 && p[0] <= 0xEF) {
        n = 3;
        if (p[0] == 0xE0)
            lo = 0xA0;
        else if (p[0] == 0xED)
            hi = 0x9F; /* no surrogates */
    } else if (p[0] >= 0xF0 && p[0] <= 0xF4) {
        n = 4;
        if (p[0] == 0xF0)
            lo = 0x90;
        else if (p[0] == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return n;
}

void srv_response_connect_error(srv_response *resp, const sp_err *err)
{
    int code = err ? err->code : SP_EINTERNAL;
    size_t row = status_row(code);
    const char *msg = err && err->msg[0] ? err->msg : sp_code_name(code);
    sp_buf body;
    sp_buf_init(&body, 0);
    sp_buf_printf(&body, "{\"code\":\"%s\",\"message\":\"", status_table[row].connect);
    size_t k;
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
        if (*p == '"' || *p == '\\')
            sp_buf_printf(&body, "\\%c", *p);
        else if (*p < 0x20)
            sp_buf_printf(&body, "\\u%04x", *p);
        else if (*p < 0x80)
            sp_buf_append(&body, p, 1);
        else if ((k = utf8_len(p)) != 0) {
            sp_buf_append(&body, p, k);
            p += k - 1;
        } else /* JSON is UTF-8 (RFC 8259 section 8.1): paths and selectors need not be */
            sp_buf_append(&body, "\\ufffd", 6);
    }
    sp_buf_append(&body, "\"}", 2);
    if (code == SP_EFULL || code == SP_EUNAVAIL)
        srv_response_header(resp, "retry-after", "1");
    srv_response_send(resp, status_table[row].connect_http, "application/json", body.data,
                      body.len);
    sp_buf_free(&body);
}

int srv_status_grpc(int code)
{
    return status_table[status_row(code)].grpc;
}

int srv_status_http(int code)
{
    return status_table[status_row(code)].http;
}

const char *srv_header_get(const srv_request *req, const char *name)
{
    for (size_t i = 0; i < req->nheaders; i++)
        if (strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

int srv_request_is_grpc(const srv_request *req)
{
    const char *ct = srv_header_get(req, "content-type");
    return ct && strncasecmp(ct, "application/grpc", 16) == 0 &&
           (ct[16] == 0 || ct[16] == '+' || ct[16] == ';');
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Percent-decodes src[0..n) into out (NUL-terminated, truncated to outsz); '+' is a space. */
static int url_decode(const char *src, size_t n, char *out, size_t outsz)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < outsz; i++) {
        int h, l;
        if (src[i] == '%' && i + 2 < n && (h = hexval((unsigned char)src[i + 1])) >= 0 &&
            (l = hexval((unsigned char)src[i + 2])) >= 0) {
            out[o++] = (char)(h * 16 + l);
            i += 2;
        } else if (src[i] == '+') {
            out[o++] = ' ';
        } else {
            out[o++] = src[i];
        }
    }
    if (outsz)
        out[o] = 0;
    return (int)o;
}

int srv_query_get(const srv_request *req, const char *name, char *out, size_t outsz)
{
    if (!req->query)
        return -1;
    size_t nl = strlen(name);
    const char *p = req->query;
    while (*p) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t klen = eq ? (size_t)(eq - p) : len;
        char key[128];
        url_decode(p, klen, key, sizeof key);
        if (strlen(key) == nl && memcmp(key, name, nl) == 0) {
            if (!eq)
                return outsz ? (out[0] = 0, 0) : 0;
            return url_decode(eq + 1, len - klen - 1, out, outsz);
        }
        if (!amp)
            break;
        p = amp + 1;
    }
    return -1;
}

int srv_response_header(srv_response *resp, const char *name, const char *value)
{
    if (resp->nheaders == resp->cap_headers) {
        size_t cap = resp->cap_headers ? resp->cap_headers * 2 : 8;
        srv_header *h = realloc(resp->headers, cap * sizeof *h);
        if (!h)
            return SP_ENOMEM;
        resp->headers = h;
        resp->cap_headers = cap;
    }
    char *n = strdup(name), *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        return SP_ENOMEM;
    }
    for (char *c = n; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    resp->headers[resp->nheaders].name = n;
    resp->headers[resp->nheaders].value = v;
    resp->nheaders++;
    return 0;
}

int srv_response_send(srv_response *resp, int status, const char *content_type, const void *body,
                      size_t len)
{
    resp->status = status;
    resp->body.len = 0;
    if (content_type)
        srv_response_header(resp, "content-type", content_type);
    return sp_buf_append(&resp->body, body, len);
}

void srv_response_grpc(srv_response *resp, int grpc_status, const char *message, const void *framed,
                       size_t len)
{
    resp->status = 200;
    resp->grpc = 1;
    resp->grpc_status = grpc_status;
    snprintf(resp->grpc_message, sizeof resp->grpc_message, "%s", message ? message : "");
    resp->body.len = 0;
    if (framed && len)
        sp_buf_append(&resp->body, framed, len);
}

void srv_response_error(srv_response *resp, const srv_request *req, const sp_err *err)
{
    int code = err ? err->code : SP_EINTERNAL;
    const char *msg = err && err->msg[0] ? err->msg : sp_code_name(code);
    if (srv_request_is_grpc(req)) {
        srv_response_grpc(resp, srv_status_grpc(code), msg, NULL, 0);
        return;
    }
    if (code == SP_EFULL || code == SP_EUNAVAIL)
        srv_response_header(resp, "retry-after", "1"); /* OTLP/HTTP retry contract */
    char line[600];
    int n = snprintf(line, sizeof line, "%s\n", msg);
    srv_response_send(resp, srv_status_http(code), "text/plain; charset=utf-8", line,
                      n > 0 ? (size_t)(n < (int)sizeof line ? n : (int)sizeof line - 1) : 0);
}

void srv_report_refusal(const srv_request *req, int sp_code, uint64_t rejected_items,
                        const char *message)
{
    int endpoint = req ? req->endpoint : 0;
    sp_metrics_refused(endpoint, sp_code);
    /* one rate limit per reason, so a flood of one kind does not hide another */
    static sp_ratelimit rl[13];
    int r = sp_code < 0 && sp_code > -13 ? -sp_code : 0;
    uint64_t held = 0;
    if (!sp_ratelimit_ok(&rl[r], 10000, &held))
        return;
    sp_warn("msg=\"request refused%s\" endpoint=%s tenant=\"%s\" client=%s reason=\"%s\" "
            "rejected_items=%llu error=\"%.300s\" held_back=%llu",
            sp_code ? "" : " in part", req && req->endpoint_name ? req->endpoint_name : "other",
            req && req->tenant ? req->tenant : "anonymous", req && req->peer[0] ? req->peer : "-",
            sp_code ? sp_code_name(sp_code) : "partial", (unsigned long long)rejected_items,
            message ? message : "", (unsigned long long)held);
}
