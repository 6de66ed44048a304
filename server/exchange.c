#include "exchange.h"
#include "../common/metrics.h"

#include <ctype.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static size_t inflight_budget = (size_t)1 << 30;
static atomic_size_t inflight_bytes;

void srv_inflight_budget_set(size_t bytes)
{
    inflight_budget = bytes;
}

size_t srv_inflight_bytes(void)
{
    return atomic_load(&inflight_bytes);
}

int64_t srv_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

srv_exchange *srv_exchange_new(srv_proto proto, size_t body_limit)
{
    srv_exchange *ex = calloc(1, sizeof *ex);
    if (!ex)
        return NULL;
    ex->req.proto = proto;
    ex->req.tenant = "anonymous";
    sp_buf_init(&ex->req.body, body_limit);
    sp_buf_init(&ex->resp.body, 0);
    ex->start_ns = srv_now_ns();
    return ex;
}

static void free_headers(srv_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(h[i].name);
        free(h[i].value);
    }
    free(h);
}

void srv_exchange_free(srv_exchange *ex)
{
    if (!ex)
        return;
    atomic_fetch_sub(&inflight_bytes, ex->charged);
    if (ex->metered) /* the peer went away before the answer: nginx's 499 */
        sp_metrics_request_done(ex->req.endpoint, 499, 0, 0, ex->req.body.len);
    free_headers(ex->req.headers, ex->req.nheaders);
    free_headers(ex->resp.headers, ex->resp.nheaders);
    free(ex->req.path);
    free(ex->req.query);
    sp_buf_free(&ex->req.body);
    sp_buf_free(&ex->resp.body);
    free(ex);
}

int srv_exchange_add_header(srv_exchange *ex, const char *name, size_t nlen, const char *value,
                            size_t vlen)
{
    srv_request *r = &ex->req;
    r->header_bytes += nlen + vlen + 32; /* RFC 7541 section 4.1 entry overhead */
    if (r->nheaders >= SRV_MAX_HEADERS || r->header_bytes > SRV_MAX_HEADER_BYTES)
        return SP_ETOOBIG;
    if (r->nheaders == r->cap_headers) {
        size_t cap = r->cap_headers ? r->cap_headers * 2 : 16;
        srv_header *h = realloc(r->headers, cap * sizeof *h);
        if (!h)
            return SP_ENOMEM;
        r->headers = h;
        r->cap_headers = cap;
    }
    char *n = malloc(nlen + 1), *v = malloc(vlen + 1);
    if (!n || !v) {
        free(n);
        free(v);
        return SP_ENOMEM;
    }
    for (size_t i = 0; i < nlen; i++)
        n[i] = (char)tolower((unsigned char)name[i]);
    n[nlen] = 0;
    memcpy(v, value, vlen);
    v[vlen] = 0;
    r->headers[r->nheaders].name = n;
    r->headers[r->nheaders].value = v;
    r->nheaders++;
    if (strcmp(n, "x-scope-orgid") == 0 && vlen > 0)
        r->tenant = v;
    if (strcmp(n, "grpc-timeout") == 0) {
        int64_t ns = srv_grpc_timeout_ns(v), now = srv_now_ns();
        if (ns >= 0)
            r->deadline_ns = ns > INT64_MAX - now ? INT64_MAX : now + ns;
    }
    return 0;
}

static int hexv(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int64_t srv_grpc_timeout_ns(const char *v)
{
    /* gRPC over HTTP/2: TimeoutValue is 1-8 ASCII digits, TimeoutUnit one of H M S m u n.
     * 99999999H does not fit in int64 nanoseconds: saturate rather than overflow. */
    int64_t n = 0;
    size_t i = 0;
    for (; v[i] >= '0' && v[i] <= '9'; i++) {
        if (i == 8)
            return -1;
        n = n * 10 + (v[i] - '0');
    }
    if (i == 0 || v[i] == 0 || v[i + 1] != 0)
        return -1;
    int64_t mul;
    switch (v[i]) {
    case 'H':
        mul = 3600 * 1000000000LL;
        break;
    case 'M':
        mul = 60 * 1000000000LL;
        break;
    case 'S':
        mul = 1000000000LL;
        break;
    case 'm':
        mul = 1000000LL;
        break;
    case 'u':
        mul = 1000LL;
        break;
    case 'n':
        mul = 1;
        break;
    default:
        return -1;
    }
    return n > INT64_MAX / mul ? INT64_MAX : n * mul;
}

size_t srv_grpc_message_encode(const char *in, char *out, size_t outsz)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && o + 4 < outsz; p++) {
        if (*p >= 0x20 && *p <= 0x7e && *p != '%') {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = 0;
    return o;
}

int srv_exchange_set_target(srv_exchange *ex, const char *target, size_t len)
{
    const char *q = memchr(target, '?', len);
    size_t plen = q ? (size_t)(q - target) : len;
    free(ex->req.path);
    free(ex->req.query);
    ex->req.query = NULL;
    ex->req.path = malloc(plen + 1);
    if (!ex->req.path)
        return SP_ENOMEM;
    size_t o = 0;
    for (size_t i = 0; i < plen; i++) {
        int h, l;
        if (target[i] == '%' && i + 2 < plen && (h = hexv((unsigned char)target[i + 1])) >= 0 &&
            (l = hexv((unsigned char)target[i + 2])) >= 0) {
            ex->req.path[o++] = (char)(h * 16 + l);
            i += 2;
        } else {
            ex->req.path[o++] = target[i];
        }
    }
    ex->req.path[o] = 0;
    if (q) {
        size_t qlen = len - plen - 1;
        ex->req.query = malloc(qlen + 1);
        if (!ex->req.query)
            return SP_ENOMEM;
        memcpy(ex->req.query, q + 1, qlen);
        ex->req.query[qlen] = 0;
    }
    return 0;
}

int srv_exchange_body(srv_exchange *ex, const void *data, size_t len)
{
    sp_buf *b = &ex->req.body;
    if (ex->req.body_too_big)
        return SP_ETOOBIG;
    if (ex->auth_refused) { /* never buffer what an unauthenticated peer sends */
        if (b->limit && len > b->limit - ex->discarded) {
            ex->req.body_too_big = 1;
            return SP_ETOOBIG;
        }
        ex->discarded += len;
        return 0;
    }
    if (b->limit && len > b->limit - b->len) {
        ex->req.body_too_big = 1;
        return SP_ETOOBIG;
    }
    /* Charge what the buffer will really hold (sp_buf doubles its capacity), not just the bytes
     * received, so the budget bounds memory and not only traffic. */
    size_t grow = 0;
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        if (cap < b->len + len)
            cap = b->len + len;
        if (b->limit && cap > b->limit)
            cap = b->limit;
        grow = cap - b->cap;
    }
    if (grow && atomic_load(&inflight_bytes) + grow > inflight_budget)
        return SP_EFULL;
    size_t before = b->cap;
    int rc = sp_buf_append(b, data, len);
    if (rc)
        return rc;
    if (b->cap > before) {
        atomic_fetch_add(&inflight_bytes, b->cap - before);
        ex->charged += b->cap - before;
    }
    return 0;
}
