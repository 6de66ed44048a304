/* libFuzzer target: the server's request-head handling shared by HTTP/1.1 and HTTP/2
 * (server/exchange.c, server/request.c): request targets split into a percent-decoded path and a
 * query string, query parameters looked up (and truncated to small buffers), header budgets,
 * X-Scope-OrgID tenants, grpc-timeout deadlines, and the error answers that quote the path.
 * Input: lines separated by '\n'. The first is the request target; a line starting with '?' names
 * a query parameter to look up; every other line is a header "name: value" (or a bare name). */
#include "server/exchange.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz_check.h"

/* The grpc-timeout grammar (gRPC over HTTP/2, "Requests"): 1-8 digits and a unit; -1 otherwise. */
static int64_t timeout_spec(const char *v)
{
    size_t n = strspn(v, "0123456789");
    if (n < 1 || n > 8 || !v[n] || v[n + 1] || !strchr("HMSmun", v[n]))
        return -1;
    int64_t x = strtoll(v, NULL, 10);
    int64_t mul = v[n] == 'H'   ? 3600000000000LL
                  : v[n] == 'M' ? 60000000000LL
                  : v[n] == 'S' ? 1000000000LL
                  : v[n] == 'm' ? 1000000LL
                  : v[n] == 'u' ? 1000LL
                                : 1;
    return x > INT64_MAX / mul ? INT64_MAX : x * mul;
}

static void check_target(srv_exchange *ex, const char *t, size_t len)
{
    CHECK(srv_exchange_set_target(ex, t, len) == 0);
    const srv_request *r = &ex->req;
    const char *q = memchr(t, '?', len);
    size_t plen = q ? (size_t)(q - t) : len;
    CHECK(r->path && strlen(r->path) <= plen);
    if (!memchr(t, '%', plen)) /* nothing to decode: the path is the target's, byte for byte */
        CHECK(memcmp(r->path, t, plen) == 0 && r->path[plen] == 0);
    if (!q) {
        CHECK(r->query == NULL);
    } else {
        size_t qlen = len - plen - 1;
        CHECK(r->query && memcmp(r->query, q + 1, qlen) == 0 && r->query[qlen] == 0);
    }
}

static void check_query_get(const srv_request *r, const char *key)
{
    static const size_t sizes[] = {0, 1, 2, 5, 64, 4096};
    char big[4096];
    int full = srv_query_get(r, key, big, sizeof big);
    if (!r->query)
        CHECK(full == -1);
    CHECK(full >= -1 && full < (int)sizeof big);
    if (full >= 0)
        CHECK(big[full] == 0);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char out[4096];
        memset(out, 'X', sizeof out);
        int n = srv_query_get(r, key, out, sizes[i]);
        if (full < 0) {
            CHECK(n == -1);
            continue;
        }
        if (sizes[i] == 0) {
            CHECK(n == 0 && out[0] == 'X'); /* nothing written */
            continue;
        }
        /* Truncated to the buffer, NUL-terminated, a prefix of the whole value. */
        CHECK(n >= 0 && (size_t)n < sizes[i] && out[n] == 0);
        CHECK(n <= full && memcmp(out, big, (size_t)n) == 0);
        if (sizes[i] < sizeof out)
            CHECK(out[sizes[i]] == 'X');
    }
}

/* The answers that quote the request (unknown path, bad parameter) stay well-formed. */
static void check_errors(srv_exchange *ex)
{
    sp_err err;
    sp_fail(&err, SP_ENOTFOUND, "no such path: %s", ex->req.path);

    srv_response resp = {0};
    sp_buf_init(&resp.body, 0);
    srv_response_connect_error(&resp, &err);
    CHECK(resp.status == 404);
    json_error_t je;
    json_t *doc = json_loadb((const char *)resp.body.data, resp.body.len, 0, &je);
    CHECK(doc); /* Connect error bodies are JSON, hence UTF-8 (RFC 8259 section 8.1) */
    CHECK(strcmp(json_string_value(json_object_get(doc, "code")), "not_found") == 0);
    const char *msg = json_string_value(json_object_get(doc, "message"));
    CHECK(msg && strncmp(msg, "no such path: ", 14) == 0);
    json_decref(doc);
    for (size_t i = 0; i < resp.nheaders; i++) {
        free(resp.headers[i].name);
        free(resp.headers[i].value);
    }
    free(resp.headers);
    sp_buf_free(&resp.body);

    srv_response_error(&ex->resp, &ex->req, &err);
    if (srv_request_is_grpc(&ex->req)) {
        CHECK(ex->resp.grpc && ex->resp.grpc_status == GRPC_NOT_FOUND);
        CHECK(strlen(ex->resp.grpc_message) < sizeof ex->resp.grpc_message);
    } else {
        CHECK(ex->resp.status == 404 && ex->resp.body.len > 0 &&
              ex->resp.body.data[ex->resp.body.len - 1] == '\n');
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1u << 17)
        return 0;
    const char *p = (const char *)data, *end = p + size;
    const char *nl = memchr(p, '\n', size);
    size_t tlen = nl ? (size_t)(nl - p) : size;

    srv_exchange *ex = srv_exchange_new(size & 1 ? SRV_HTTP2 : SRV_HTTP1, 1024);
    CHECK(ex);
    check_target(ex, "/", 1); /* set twice: the second replaces the first */
    check_target(ex, p, tlen);

    static const char *fixed[] = {"query", "from", "until", "name", "", "max-nodes"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        check_query_get(&ex->req, fixed[i]);

    const char *tenant = "anonymous";
    int64_t deadline_min = 0, before = srv_now_ns();
    int deadline_set = 0;
    size_t accepted = 0;
    for (p = nl ? nl + 1 : end; p < end;) {
        nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        const char *line = p;
        p = nl ? nl + 1 : end;
        if (len && line[0] == '?') {
            char key[256];
            size_t k = len - 1 < sizeof key - 1 ? len - 1 : sizeof key - 1;
            memcpy(key, line + 1, k);
            key[k] = 0;
            check_query_get(&ex->req, key);
            continue;
        }
        const char *colon = memchr(line, ':', len);
        size_t nlen = colon ? (size_t)(colon - line) : len;
        const char *v = colon ? colon + 1 : line + len;
        size_t vlen = (size_t)(line + len - v);
        while (vlen && *v == ' ')
            v++, vlen--;
        size_t nh = ex->req.nheaders;
        int rc = srv_exchange_add_header(ex, line, nlen, v, vlen);
        if (rc) {
            CHECK(rc == SP_ETOOBIG && ex->req.nheaders == nh);
            CHECK(nh == SRV_MAX_HEADERS || ex->req.header_bytes > SRV_MAX_HEADER_BYTES);
            continue;
        }
        accepted++;
        const srv_header *h = &ex->req.headers[nh];
        CHECK(ex->req.nheaders == nh + 1 && memcmp(h->value, v, vlen) == 0 && !h->value[vlen]);
        for (size_t i = 0; i < nlen; i++)
            CHECK(!(h->name[i] >= 'A' && h->name[i] <= 'Z'));
        if (strcmp(h->name, "x-scope-orgid") == 0 && vlen)
            tenant = h->value;
        if (strcmp(h->name, "grpc-timeout") == 0) {
            int64_t ns = srv_grpc_timeout_ns(h->value);
            CHECK(ns == timeout_spec(h->value));
            if (ns >= 0) {
                deadline_set = 1;
                deadline_min = ns > INT64_MAX - before ? INT64_MAX : before + ns;
                CHECK(ex->req.deadline_ns >= deadline_min);
            }
        }
    }
    CHECK(ex->req.nheaders == accepted && accepted <= SRV_MAX_HEADERS);
    CHECK(strcmp(ex->req.tenant, tenant) == 0);
    CHECK(deadline_set ? ex->req.deadline_ns >= deadline_min : ex->req.deadline_ns == 0);
    /* Lookups are case-insensitive and find the first header of a name. */
    for (size_t i = 0; i < ex->req.nheaders; i++) {
        const char *v = srv_header_get(&ex->req, ex->req.headers[i].name);
        size_t first = 0;
        while (strcmp(ex->req.headers[first].name, ex->req.headers[i].name) != 0)
            first++;
        CHECK(v == ex->req.headers[first].value);
    }
    check_errors(ex);
    srv_exchange_free(ex);
    return 0;
}
