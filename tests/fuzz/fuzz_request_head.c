/* libFuzzer target: the server's request-head handling shared by HTTP/1.1 and HTTP/2
 * (server/exchange.c, server/request.c): request targets split into a percent-decoded path and a
 * query string, query parameters looked up (and truncated to small buffers), header budgets,
 * X-Scope-OrgID tenants, grpc-timeout deadlines, and the error answers that quote the path.
 * Input: lines separated by '\n'. The first is the request target; a line starting with '?' names
 * a query parameter to look up; every other line is a header "name: value" (or a bare name).
 * Each head also goes through server/auth.c with an ingest bearer token and query basic
 * credentials configured: only the exact credentials pass, and every refusal is a well-formed
 * 401 / UNAUTHENTICATED. */
#include "common/base64.h"
#include "server/auth.h"
#include "server/exchange.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
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

#define TOKEN "tok-ingest-1"
#define BASIC "dXNlcjpwdw==" /* user:pw */

static srv_auth *fuzz_auth(void)
{
    static srv_auth *a;
    if (a)
        return a;
    char tok[] = "/tmp/fuzz-auth-tok-XXXXXX", basic[] = "/tmp/fuzz-auth-basic-XXXXXX";
    int ft = mkstemp(tok), fb = mkstemp(basic);
    CHECK(ft >= 0 && fb >= 0);
    CHECK(write(ft, TOKEN "\n", sizeof TOKEN) == (ssize_t)sizeof TOKEN);
    CHECK(write(fb, "user:pw\n", 8) == 8);
    close(ft);
    close(fb);
    srv_options cfg;
    srv_options_defaults(&cfg);
    cfg.ingest_auth_token_file = tok;
    cfg.query_basic_auth_file = basic;
    sp_err err;
    CHECK(srv_auth_new(&a, &cfg, &err) == 0);
    unlink(tok);
    unlink(basic);
    return a;
}

/* The credential part of an Authorization value: the scheme (case-insensitive) and the rest with
 * surrounding blanks removed must be exactly the configured token, or decode to exactly the
 * configured user:password. */
static int exact(const char *h, const char *scheme, const char *cred)
{
    if (!h)
        return 0;
    while (*h == ' ' || *h == '\t')
        h++;
    size_t sl = strlen(scheme), cl = strlen(cred);
    if (strncasecmp(h, scheme, sl) != 0 || (h[sl] != ' ' && h[sl] != '\t'))
        return 0;
    h += sl;
    while (*h == ' ' || *h == '\t')
        h++;
    size_t n = strlen(h);
    while (n && (h[n - 1] == ' ' || h[n - 1] == '\t'))
        n--;
    if (strcmp(scheme, "basic") == 0) {
        /* compare what the credentials decode to: padding and unused bits may vary */
        uint8_t raw[64], want[64];
        size_t rn, wn;
        return sp_base64_decode_buf(h, n, raw, sizeof raw, &rn) == 0 &&
               sp_base64_decode_buf(cred, cl, want, sizeof want, &wn) == 0 && rn == wn &&
               memcmp(raw, want, rn) == 0;
    }
    return n == cl && memcmp(h, cred, cl) == 0;
}

static void check_auth(srv_exchange *ex)
{
    srv_auth *a = fuzz_auth();
    sp_err err = {0};
    int rc = srv_auth_check(a, &ex->req, &err);
    CHECK(rc == 0 || rc == SP_EAUTH);
    srv_auth_class cls = srv_auth_classify(ex->req.path);
    const char *h = srv_header_get(&ex->req, "authorization");
    if (rc == 0 && cls == SRV_AUTH_INGEST)
        CHECK(exact(h, "bearer", TOKEN));
    if (rc == 0 && cls == SRV_AUTH_QUERY)
        CHECK(exact(h, "basic", BASIC));
    if (rc == 0)
        return;
    CHECK(cls != SRV_AUTH_OPEN && err.msg[0]);
    CHECK(!strstr(err.msg, TOKEN) && !strstr(err.msg, "user:pw")); /* never echoed */
    srv_response resp = {0};
    sp_buf_init(&resp.body, 0);
    srv_auth_refuse(a, &ex->req, &resp, &err);
    if (srv_request_is_grpc(&ex->req))
        CHECK(resp.grpc && resp.grpc_status == 16);
    else
        CHECK(resp.status == 401);
    for (size_t i = 0; i < resp.nheaders; i++) {
        free(resp.headers[i].name);
        free(resp.headers[i].value);
    }
    free(resp.headers);
    sp_buf_free(&resp.body);
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
    check_auth(ex);
    check_errors(ex);
    srv_exchange_free(ex);
    return 0;
}
