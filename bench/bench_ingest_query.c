#include "bench_ingest_query.h"
#include "../server/sched.h"
#include "bench_util.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SERVICE    "bench-svc"
#define QUERY_PATH "/querier.v1.QuerierService/SelectMergeSpanProfile"
#define CPU_TYPE   "process_cpu:cpu:nanoseconds:cpu:nanoseconds"

static void die(const char *what)
{
    fprintf(stderr, "bench_ingest (queries): %s\n", what);
    exit(1);
}

/* The span id of (process p, thread t): never zero, the same on both sides. */
static uint64_t span_id(int p, int t)
{
    return 0x5a00000000000000ULL | ((uint64_t)(p + 1) << 20) | (uint64_t)(t + 1);
}

/* ---- HTTP/1.1, keep-alive, Content-Length bodies only (what spanprof answers here) ---- */

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        die("cannot connect to the HTTP port");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void send_all(int fd, const void *p, size_t n)
{
    const char *s = p;
    while (n) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            die("send failed");
        s += w;
        n -= (size_t)w;
    }
}

/* One request (POST with a body, GET without: ctype NULL) and its answer; the body is left in
 * *buf (reused), its status returned. */
static int exchange(int fd, int port, const char *path, const char *ctype, const void *body,
                    size_t len, char **buf, size_t *cap, size_t *blen)
{
    char head[512];
    int hn = ctype ? snprintf(head, sizeof head,
                              "POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: %s\r\n"
                              "Content-Length: %zu\r\n\r\n",
                              path, port, ctype, len)
                   : snprintf(head, sizeof head, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n",
                              path, port);
    send_all(fd, head, (size_t)hn);
    if (ctype)
        send_all(fd, body, len);
    size_t have = 0, hdr_end = 0, need = 0;
    int status = 0;
    for (;;) {
        if (*cap - have < 65536) {
            *cap = *cap * 2 + 65536;
            if (!(*buf = realloc(*buf, *cap)))
                die("out of memory");
        }
        ssize_t r = recv(fd, *buf + have, *cap - have - 1, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            die("connection closed before the answer");
        have += (size_t)r;
        (*buf)[have] = 0;
        if (!hdr_end) {
            char *e = strstr(*buf, "\r\n\r\n");
            if (!e)
                continue;
            hdr_end = (size_t)(e - *buf) + 4;
            status = atoi(*buf + 9);
            char *cl = strcasestr(*buf, "\r\ncontent-length:");
            if (!cl || cl > e)
                die("answer without Content-Length");
            need = hdr_end + strtoull(cl + 17, NULL, 10);
        }
        if (have >= need)
            break;
    }
    memmove(*buf, *buf + hdr_end, need - hdr_end);
    *blen = need - hdr_end;
    (*buf)[*blen] = 0;
    return status;
}

double bq_metric(int http_port, const char *name)
{
    int fd = dial(http_port);
    char *buf = NULL;
    size_t cap = 0, blen = 0, nl = strlen(name);
    double v = -1;
    if (exchange(fd, http_port, "/metrics", NULL, NULL, 0, &buf, &cap, &blen) == 200)
        for (const char *l = buf; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
            if (strncmp(l, name, nl) == 0 && (l[nl] == ' ' || l[nl] == '{')) {
                const char *sp = l + nl;
                while (*sp && *sp != '\n' && *sp != ' ')
                    sp++; /* past the labels, to the value */
                v = (v < 0 ? 0 : v) + strtod(sp, NULL);
            }
    close(fd);
    free(buf);
    return v;
}

/* ---- the spans ---- */

static Opentelemetry__Proto__Common__V1__KeyValue *kv(const char *key,
                                                      Opentelemetry__Proto__Common__V1__AnyValue *v)
{
    Opentelemetry__Proto__Common__V1__KeyValue *k = malloc(sizeof *k);
    opentelemetry__proto__common__v1__key_value__init(k);
    k->key = (char *)key;
    k->value = v;
    return k;
}

void bq_send_spans(const bq_config *c)
{
    typedef Opentelemetry__Proto__Trace__V1__ResourceSpans rspans;
    Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest req =
        OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_REQUEST__INIT;
    req.n_resource_spans = (size_t)c->procs;
    req.resource_spans = calloc((size_t)c->procs, sizeof(rspans *));
    for (int p = 0; p < c->procs; p++) {
        rspans *rs = malloc(sizeof *rs);
        opentelemetry__proto__trace__v1__resource_spans__init(rs);
        req.resource_spans[p] = rs;
        rs->resource = malloc(sizeof *rs->resource);
        opentelemetry__proto__resource__v1__resource__init(rs->resource);
        rs->resource->n_attributes = 2;
        rs->resource->attributes = malloc(2 * sizeof *rs->resource->attributes);
        rs->resource->attributes[0] = kv("service.name", bench_any_str(malloc, SERVICE));
        rs->resource->attributes[1] = kv("process.pid", bench_any_int(malloc, 1000 + p));
        Opentelemetry__Proto__Trace__V1__ScopeSpans *ss = malloc(sizeof *ss);
        opentelemetry__proto__trace__v1__scope_spans__init(ss);
        rs->n_scope_spans = 1;
        rs->scope_spans = malloc(sizeof *rs->scope_spans);
        rs->scope_spans[0] = ss;
        ss->n_spans = (size_t)c->threads;
        ss->spans = malloc((size_t)c->threads * sizeof *ss->spans);
        for (int t = 0; t < c->threads; t++) {
            Opentelemetry__Proto__Trace__V1__Span *s = malloc(sizeof *s);
            opentelemetry__proto__trace__v1__span__init(s);
            ss->spans[t] = s;
            uint8_t *ids = calloc(1, 24);
            uint64_t id = span_id(p, t);
            for (int b = 0; b < 8; b++) {
                ids[b] = ids[8 + b] = (uint8_t)(id >> (56 - 8 * b)); /* trace id = span id twice */
                ids[16 + b] = ids[b];
            }
            s->trace_id = (ProtobufCBinaryData){16, ids};
            s->span_id = (ProtobufCBinaryData){8, ids + 16};
            s->name = "GET /work";
            s->kind = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_SERVER;
            s->start_time_unix_nano = (uint64_t)(c->t0_ns - 1000000);
            s->end_time_unix_nano = (uint64_t)(c->t0_ns + 5000000000LL + 1000000);
            s->n_attributes = 1;
            s->attributes = malloc(sizeof *s->attributes);
            s->attributes[0] = kv("thread.id", bench_any_int(malloc, 100000 + p * c->threads + t));
        }
    }
    size_t len = protobuf_c_message_get_packed_size(&req.base);
    uint8_t *body = malloc(len);
    protobuf_c_message_pack(&req.base, body);
    int fd = dial(c->http_port);
    char *buf = NULL;
    size_t cap = 0, blen = 0;
    int st = exchange(fd, c->http_port, "/v1/traces", "application/x-protobuf", body, len, &buf,
                      &cap, &blen);
    if (st != 200) {
        fprintf(stderr, "bench_ingest (queries): traces answered %d: %.200s\n", st, buf);
        exit(1);
    }
    close(fd);
    free(buf);
    free(body); /* the message tree is left to the process's end: benchmark code */
}

/* ---- the queries ---- */

static int64_t answer_total(const char *body)
{
    const char *t = strstr(body, "\"total\":");
    if (!t)
        return 0;
    t += 8;
    while (*t == ' ' || *t == '"')
        t++;
    return strtoll(t, NULL, 10);
}

void bq_run(const bq_config *c, const int *start, const int *stop, bq_result *r)
{
    while (!__atomic_load_n(start, __ATOMIC_ACQUIRE)) {
        if (__atomic_load_n(stop, __ATOMIC_ACQUIRE))
            return;
        usleep(1000);
    }
    /* The client is on the server's machine here, not on Grafana's: a short slice keeps its own
     * wake-up for each answer out of the latency it measures, as the server's loop and query
     * threads have (server/sched.h). */
    srv_sched_latency_slice("bench-query");
    int fd = dial(c->http_port);
    char *buf = NULL, body[512];
    size_t cap = 0, blen = 0;
    uint64_t rng = 0x243f6a8885a308d3ULL;
    int64_t from_ms = c->t0_ns / 1000000 - 30000, to_ms = c->t0_ns / 1000000 + 35000;
    double t_next = bench_mono_s();
    while (!__atomic_load_n(stop, __ATOMIC_ACQUIRE)) {
        double wait = t_next - bench_mono_s();
        if (wait > 0) {
            struct timespec ts = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};
            nanosleep(&ts, NULL);
        }
        t_next += 1.0 / c->rate;
        int p = (int)(bench_xorshift64(&rng) % (uint64_t)c->procs);
        int t = (int)(bench_xorshift64(&rng) % (uint64_t)c->threads);
        int n = snprintf(body, sizeof body,
                         "{\"profileTypeID\":\"" CPU_TYPE "\",\"labelSelector\":"
                         "\"{service_name=\\\"" SERVICE "\\\"}\",\"spanSelector\":[\"%016" PRIx64
                         "\"],\"start\":%" PRId64 ",\"end\":%" PRId64 ",\"maxNodes\":16384}",
                         span_id(p, t), from_ms, to_ms);
        double q0 = bench_mono_s();
        int st = exchange(fd, c->http_port, QUERY_PATH, "application/json", body, (size_t)n, &buf,
                          &cap, &blen);
        double ms = (bench_mono_s() - q0) * 1e3;
        if (r->n == r->cap) {
            r->cap = r->cap * 2 + 1024;
            if (!(r->lat_ms = realloc(r->lat_ms, (size_t)r->cap * sizeof *r->lat_ms)))
                die("out of memory");
        }
        r->lat_ms[r->n++] = ms;
        if (st != 200)
            r->failed++;
        else if (answer_total(buf) <= 0)
            r->empty++;
    }
    close(fd);
    free(buf);
}
