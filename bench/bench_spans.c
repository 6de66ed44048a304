/* bench_spans: span ingest cost, OTLP conversion + SQLite span index, with and without the span
 * extras (attributes, events, links, resource and scope attributes kept per span since schema 6).
 *
 * One request shape, sent as --batches requests of --spans spans (fresh random ids each): a
 * resource like the OpenTelemetry Node SDK's (12 attributes: service, telemetry.sdk.*, process.*,
 * host.*), one scope, spans with 8 attributes of mixed types (HTTP server-like), every other span
 * with one event. Each request is converted by otlp_traces_convert() (which builds the extras
 * blobs) and written with store_write() from one thread. --no-extras drops the blobs after
 * conversion (the span rows as before schema 6): the A/B of what keeping them costs.
 *
 *   bench_spans [--batches 2000] [--spans 100] [--no-extras] [--dir DIR]
 *
 * Prints spans/s, process CPU per span (conversion + write), the mean blob size and the bytes on
 * disk per span after a checkpoint.
 */
#include "../otlp/spans.h"
#include "../storage-adapter/store.h"
#include "bench_util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef Opentelemetry__Proto__Common__V1__KeyValue kv_t;

static kv_t *kv(const char *k, Opentelemetry__Proto__Common__V1__AnyValue *v)
{
    kv_t *p = malloc(sizeof *p);
    opentelemetry__proto__common__v1__key_value__init(p);
    p->key = (char *)k;
    p->value = v;
    return p;
}

static Opentelemetry__Proto__Common__V1__AnyValue *any_bool(int b)
{
    Opentelemetry__Proto__Common__V1__AnyValue *v = malloc(sizeof *v);
    opentelemetry__proto__common__v1__any_value__init(v);
    v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE;
    v->bool_value = b;
    return v;
}

static kv_t **resource_attrs(size_t *n)
{
    static kv_t *a[12];
    int i = 0;
    a[i++] = kv("service.name", bench_any_str(malloc, "checkout"));
    a[i++] = kv("telemetry.sdk.language", bench_any_str(malloc, "nodejs"));
    a[i++] = kv("telemetry.sdk.name", bench_any_str(malloc, "opentelemetry"));
    a[i++] = kv("telemetry.sdk.version", bench_any_str(malloc, "2.0.1"));
    a[i++] = kv("process.pid", bench_any_int(malloc, 48211));
    a[i++] = kv("process.executable.name", bench_any_str(malloc, "node"));
    a[i++] = kv("process.executable.path", bench_any_str(malloc, "/usr/local/bin/node"));
    a[i++] = kv("process.command", bench_any_str(malloc, "/srv/checkout/server.js"));
    a[i++] = kv("process.runtime.version", bench_any_str(malloc, "22.11.0"));
    a[i++] = kv("process.runtime.name", bench_any_str(malloc, "nodejs"));
    a[i++] = kv("host.name", bench_any_str(malloc, "checkout-7d9f8b6c4-x2k9p"));
    a[i++] = kv("host.arch", bench_any_str(malloc, "amd64"));
    *n = (size_t)i;
    return a;
}

static Opentelemetry__Proto__Trace__V1__Span *mkspan(int i)
{
    Opentelemetry__Proto__Trace__V1__Span *s = calloc(1, sizeof *s);
    opentelemetry__proto__trace__v1__span__init(s);
    s->trace_id.data = malloc(16);
    s->trace_id.len = 16;
    s->span_id.data = malloc(8);
    s->span_id.len = 8;
    s->name = "GET /cart/:id";
    s->kind = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_SERVER;
    s->n_attributes = 8;
    s->attributes = malloc(8 * sizeof *s->attributes);
    s->attributes[0] = kv("http.request.method", bench_any_str(malloc, "GET"));
    s->attributes[1] = kv("http.route", bench_any_str(malloc, "/cart/:id"));
    s->attributes[2] = kv("url.path", bench_any_str(malloc, "/cart/8812"));
    s->attributes[3] = kv("http.response.status_code", bench_any_int(malloc, 200));
    s->attributes[4] = kv("server.address", bench_any_str(malloc, "checkout.internal"));
    s->attributes[5] = kv("server.port", bench_any_int(malloc, 8080));
    s->attributes[6] = kv("user_agent.original", bench_any_str(malloc, "okhttp/4.12.0"));
    s->attributes[7] = kv("cache.hit", any_bool(i & 1));
    if (i % 2 == 0) {
        Opentelemetry__Proto__Trace__V1__Span__Event *e = malloc(sizeof *e);
        opentelemetry__proto__trace__v1__span__event__init(e);
        e->name = "cache-miss";
        e->n_attributes = 1;
        e->attributes = malloc(sizeof *e->attributes);
        e->attributes[0] = kv("key", bench_any_str(malloc, "cart:8812"));
        s->n_events = 1;
        s->events = malloc(sizeof *s->events);
        s->events[0] = e;
    }
    return s;
}

int main(int argc, char **argv)
{
    long batches = 2000, nspans = 100;
    int no_extras = 0;
    const char *dir_arg = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--no-extras") == 0)
            no_extras = 1;
        else if (i + 1 < argc && strcmp(argv[i], "--batches") == 0)
            batches = atol(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--spans") == 0)
            nspans = atol(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--dir") == 0)
            dir_arg = argv[++i];
        else {
            fprintf(stderr, "usage: bench_spans [--batches N] [--spans N] [--no-extras] "
                            "[--dir DIR]\n");
            return 2;
        }
    }
    char dir[64];
    snprintf(dir, sizeof dir, "%s", dir_arg ? dir_arg : "/tmp/bench_spans_XXXXXX");
    if (!dir_arg && !mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    Opentelemetry__Proto__Resource__V1__Resource res;
    opentelemetry__proto__resource__v1__resource__init(&res);
    res.attributes = resource_attrs(&res.n_attributes);
    Opentelemetry__Proto__Common__V1__InstrumentationScope scope;
    opentelemetry__proto__common__v1__instrumentation_scope__init(&scope);
    scope.name = "@opentelemetry/instrumentation-http";
    scope.version = "0.57.0";
    Opentelemetry__Proto__Trace__V1__ScopeSpans ss;
    opentelemetry__proto__trace__v1__scope_spans__init(&ss);
    ss.scope = &scope;
    ss.n_spans = (size_t)nspans;
    ss.spans = malloc((size_t)nspans * sizeof *ss.spans);
    for (long i = 0; i < nspans; i++)
        ss.spans[i] = mkspan((int)i);
    Opentelemetry__Proto__Trace__V1__ResourceSpans rs;
    opentelemetry__proto__trace__v1__resource_spans__init(&rs);
    rs.resource = &res;
    rs.n_scope_spans = 1;
    Opentelemetry__Proto__Trace__V1__ScopeSpans *ssp = &ss;
    rs.scope_spans = &ssp;
    otlp_traces_req req;
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__init(&req);
    Opentelemetry__Proto__Trace__V1__ResourceSpans *rsp = &rs;
    req.n_resource_spans = 1;
    req.resource_spans = &rsp;

    store_options o = {0};
    o.data_dir = dir;
    o.retention_ns = -1;
    o.retention_interval_ns = -1;
    store *st;
    sp_err err = {0};
    if (store_open_sqlite(&st, &o, &err)) {
        fprintf(stderr, "open: %s\n", err.msg);
        return 1;
    }
    uint64_t seed = 0x9e3779b97f4a7c15ULL, extras_bytes = 0, written = 0;
    int64_t now = (int64_t)time(NULL) * 1000000000LL;
    double c0 = bench_proc_cpu_s(), w0 = bench_mono_s();
    for (long b = 0; b < batches; b++) {
        for (long i = 0; i < nspans; i++) {
            Opentelemetry__Proto__Trace__V1__Span *s = ss.spans[i];
            for (int k = 0; k < 16; k += 8) {
                uint64_t r = bench_xorshift64star(&seed);
                memcpy(s->trace_id.data + k, &r, 8);
            }
            uint64_t r = bench_xorshift64star(&seed) | 1;
            memcpy(s->span_id.data, &r, 8);
            s->start_time_unix_nano = (uint64_t)(now - 3600LL * 1000000000LL + b * 1000000LL + i);
            s->end_time_unix_nano = s->start_time_unix_nano + 20000000ULL;
            if (s->n_events)
                s->events[0]->time_unix_nano = s->start_time_unix_nano + 1000;
        }
        sp_arena *a = sp_arena_new(0);
        sp_batch batch = {.tenant = "bench", .arena = a};
        if (otlp_traces_convert(&req, NULL, &batch, &err)) {
            fprintf(stderr, "convert: %s\n", err.msg);
            return 1;
        }
        for (size_t i = 0; i < batch.nspans; i++) {
            extras_bytes += batch.spans[i].extras_len;
            if (no_extras) {
                batch.spans[i].extras = NULL;
                batch.spans[i].extras_len = 0;
            }
        }
        if (store_write(st, &batch, &err)) {
            fprintf(stderr, "write: %s\n", err.msg);
            return 1;
        }
        written += batch.nspans;
        sp_arena_free(a);
    }
    double wall = bench_mono_s() - w0, cpu = bench_proc_cpu_s() - c0;
    store_close(st);
    int64_t db = bench_file_size(dir, "spanprof.db"), wal = bench_file_size(dir, "spanprof.db-wal");
    printf("%s: %" PRIu64 " spans in %ld requests: %.2f s, %.0f spans/s, %.2f us CPU per span "
           "(convert + write); blob %.0f B per span (%s); disk %.0f B per span\n",
           no_extras ? "without extras" : "with extras", written, batches, wall,
           (double)written / wall, cpu * 1e6 / (double)written,
           (double)extras_bytes / (double)written, no_extras ? "built, then dropped" : "stored",
           (double)(db + wal) / (double)written);
    if (!dir_arg)
        bench_rm_tree(dir);
    return 0;
}
