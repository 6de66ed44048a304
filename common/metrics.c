#include "metrics.h"
#include "err.h"

#include <pthread.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define MAX_CODES  16
#define MAX_GAUGES 128 /* past it a new name is counted in metrics_gauges_over_total */

typedef struct {
    _Atomic int code; /* -1 = free slot; codes < 1000 are HTTP, >= 1000 are 1000 + gRPC status */
    _Atomic uint64_t count;
} code_count;

/* Refusal reasons: the SP_E* codes (index -code), and 0 for "partial" (some items rejected in a
 * request answered OK). */
#define NREASONS 12
static const char *const reason_names[NREASONS] = {
    "partial",     "invalid_argument", "too_big",       "resource_exhausted",
    "unavailable", "not_found",        "unimplemented", "deadline_exceeded",
    "media_type",  "unauthenticated",  "out_of_memory", "internal"};

typedef struct {
    char name[64];
    code_count codes[MAX_CODES];
    _Atomic uint64_t bytes, accepted, rejected;
    _Atomic int64_t inflight;
    _Atomic uint64_t refused[NREASONS];
} endpoint;

static endpoint endpoints[SP_METRICS_MAX_ENDPOINTS];
static _Atomic int nendpoints;
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;

static struct {
    char name[256]; /* with labels: spanprof_build_info{version=...,commit=...,...} */
    _Atomic int64_t value;
} gauges[MAX_GAUGES];
static _Atomic int ngauges;

static void init_endpoint(endpoint *e, const char *name)
{
    snprintf(e->name, sizeof e->name, "%s", name);
    for (int i = 0; i < MAX_CODES; i++)
        atomic_store(&e->codes[i].code, -1);
}

int sp_metrics_endpoint(const char *name)
{
    pthread_mutex_lock(&reg_lock);
    int n = atomic_load(&nendpoints);
    if (n == 0) {
        init_endpoint(&endpoints[0], "other");
        n = 1;
    }
    int found = 0;
    for (int i = 0; i < n; i++)
        if (strcmp(endpoints[i].name, name) == 0)
            found = i + 1;
    if (!found && n < SP_METRICS_MAX_ENDPOINTS) {
        init_endpoint(&endpoints[n], name);
        found = ++n;
    }
    atomic_store(&nendpoints, n);
    pthread_mutex_unlock(&reg_lock);
    return found ? found - 1 : 0;
}

static endpoint *ep(int i)
{
    if (i < 0 || i >= atomic_load(&nendpoints))
        i = 0;
    if (atomic_load(&nendpoints) == 0)
        sp_metrics_endpoint("other");
    return &endpoints[i];
}

const char *sp_metrics_endpoint_name(int e)
{
    return ep(e)->name;
}

void sp_metrics_refused(int e, int sp_code)
{
    int r = sp_code < 0 && -sp_code < NREASONS ? -sp_code : 0;
    if (sp_code < 0 && r == 0)
        r = NREASONS - 1;
    atomic_fetch_add(&ep(e)->refused[r], 1);
}

void sp_metrics_request_start(int e)
{
    atomic_fetch_add(&ep(e)->inflight, 1);
}

void sp_metrics_request_done(int e, int http_status, int grpc, int grpc_status, uint64_t bytes)
{
    endpoint *p = ep(e);
    atomic_fetch_sub(&p->inflight, 1);
    atomic_fetch_add(&p->bytes, bytes);
    int code = grpc ? 1000 + grpc_status : http_status;
    for (int i = 0; i < MAX_CODES; i++) {
        int cur = atomic_load(&p->codes[i].code);
        if (cur == -1) {
            int expect = -1;
            if (atomic_compare_exchange_strong(&p->codes[i].code, &expect, code))
                cur = code;
            else
                cur = expect;
        }
        if (cur == code) {
            atomic_fetch_add(&p->codes[i].count, 1);
            return;
        }
    }
}

void sp_metrics_items(int endpoint_index, uint64_t accepted, uint64_t rejected)
{
    endpoint *p = ep(endpoint_index);
    atomic_fetch_add(&p->accepted, accepted);
    atomic_fetch_add(&p->rejected, rejected);
}

static _Atomic uint64_t gauges_over; /* updates of names the full table could not take */

static _Atomic int64_t *gauge(const char *name)
{
    int n = atomic_load(&ngauges);
    for (int i = 0; i < n; i++)
        if (strcmp(gauges[i].name, name) == 0)
            return &gauges[i].value;
    pthread_mutex_lock(&reg_lock);
    n = atomic_load(&ngauges);
    _Atomic int64_t *v = NULL;
    for (int i = 0; i < n && !v; i++)
        if (strcmp(gauges[i].name, name) == 0)
            v = &gauges[i].value;
    if (!v && n < MAX_GAUGES) {
        snprintf(gauges[n].name, sizeof gauges[n].name, "%s", name);
        v = &gauges[n].value;
        atomic_store(&ngauges, n + 1);
    } else if (!v) {
        atomic_fetch_add(&gauges_over, 1);
    }
    pthread_mutex_unlock(&reg_lock);
    return v;
}

void sp_metrics_gauge_set(const char *name, int64_t value)
{
    _Atomic int64_t *g = gauge(name);
    if (g)
        atomic_store(g, value);
}

void sp_metrics_gauge_add(const char *name, int64_t delta)
{
    _Atomic int64_t *g = gauge(name);
    if (g)
        atomic_fetch_add(g, delta);
}

static const char *grpc_code_name(int c)
{
    static const char *names[] = {"OK",
                                  "CANCELLED",
                                  "UNKNOWN",
                                  "INVALID_ARGUMENT",
                                  "DEADLINE_EXCEEDED",
                                  "NOT_FOUND",
                                  "ALREADY_EXISTS",
                                  "PERMISSION_DENIED",
                                  "RESOURCE_EXHAUSTED",
                                  "FAILED_PRECONDITION",
                                  "ABORTED",
                                  "OUT_OF_RANGE",
                                  "UNIMPLEMENTED",
                                  "INTERNAL",
                                  "UNAVAILABLE",
                                  "DATA_LOSS",
                                  "UNAUTHENTICATED"};
    return c >= 0 && c <= 16 ? names[c] : "UNKNOWN";
}

static void (*render_hook)(void *);
static void *render_hook_ud;

void sp_metrics_on_render(void (*fn)(void *ud), void *ud)
{
    render_hook = fn;
    render_hook_ud = ud;
}

int sp_metrics_render(sp_buf *o)
{
    if (render_hook)
        render_hook(render_hook_ud);
    int n = atomic_load(&nendpoints), rc = 0;
    rc |= sp_buf_printf(o, "# HELP spanprof_requests_total Requests answered, by endpoint and "
                           "status (HTTP status, or gRPC status name).\n"
                           "# TYPE spanprof_requests_total counter\n");
    for (int i = 0; i < n; i++)
        for (int j = 0; j < MAX_CODES; j++) {
            int c = atomic_load(&endpoints[i].codes[j].code);
            if (c < 0)
                break;
            uint64_t v = atomic_load(&endpoints[i].codes[j].count);
            if (c >= 1000)
                rc |= sp_buf_printf(
                    o, "spanprof_requests_total{endpoint=\"%s\",code=\"%s\"} %llu\n",
                    endpoints[i].name, grpc_code_name(c - 1000), (unsigned long long)v);
            else
                rc |=
                    sp_buf_printf(o, "spanprof_requests_total{endpoint=\"%s\",code=\"%d\"} %llu\n",
                                  endpoints[i].name, c, (unsigned long long)v);
        }
    static const struct {
        const char *name, *help, *type;
        size_t off;
    } series[] = {
        {"spanprof_received_bytes_total", "Request body bytes received.", "counter",
         offsetof(endpoint, bytes)},
        {"spanprof_accepted_items_total", "Items (profiles, spans) accepted.", "counter",
         offsetof(endpoint, accepted)},
        {"spanprof_rejected_items_total", "Items (profiles, spans) rejected as invalid.", "counter",
         offsetof(endpoint, rejected)},
        {"spanprof_inflight_requests", "Requests or streams being received or handled.", "gauge",
         offsetof(endpoint, inflight)},
    };
    for (size_t s = 0; s < sizeof series / sizeof series[0]; s++) {
        rc |= sp_buf_printf(o, "# HELP %s %s\n# TYPE %s %s\n", series[s].name, series[s].help,
                            series[s].name, series[s].type);
        for (int i = 0; i < n; i++) {
            const char *base = (const char *)&endpoints[i];
            long long v;
            if (series[s].off == offsetof(endpoint, inflight))
                v = (long long)atomic_load((_Atomic int64_t *)(base + series[s].off));
            else
                v = (long long)atomic_load((_Atomic uint64_t *)(base + series[s].off));
            rc |= sp_buf_printf(o, "%s{endpoint=\"%s\"} %lld\n", series[s].name, endpoints[i].name,
                                v);
        }
    }
    int ng = atomic_load(&ngauges);
    for (int i = 0; i < ng; i++) {
        /* Prometheus naming: a *_total series is a counter, the rest are gauges. A name may
         * carry labels (`x_total{result="found"}`): one TYPE line per family, before its first
         * series. */
        size_t nl = strcspn(gauges[i].name, "{");
        int counter = nl > 6 && strncmp(gauges[i].name + nl - 6, "_total", 6) == 0;
        int seen = 0;
        for (int j = 0; j < i && !seen; j++)
            seen = strncmp(gauges[j].name, gauges[i].name, nl) == 0 &&
                   (gauges[j].name[nl] == 0 || gauges[j].name[nl] == '{');
        if (!seen)
            rc |= sp_buf_printf(o, "# TYPE spanprof_%.*s %s\n", (int)nl, gauges[i].name,
                                counter ? "counter" : "gauge");
        rc |= sp_buf_printf(o, "spanprof_%s %lld\n", gauges[i].name,
                            (long long)atomic_load(&gauges[i].value));
    }
    rc |= sp_buf_printf(o, "# HELP spanprof_requests_refused_total Requests refused whole, by "
                           "endpoint and reason; reason=\"partial\": answered OK with some items "
                           "rejected.\n# TYPE spanprof_requests_refused_total counter\n");
    for (int i = 0; i < atomic_load(&nendpoints); i++)
        for (int r = 0; r < NREASONS; r++) {
            uint64_t v = atomic_load(&endpoints[i].refused[r]);
            if (v)
                rc |=
                    sp_buf_printf(o,
                                  "spanprof_requests_refused_total{endpoint=\"%s\",reason=\"%s\"} "
                                  "%llu\n",
                                  endpoints[i].name, reason_names[r], (unsigned long long)v);
        }
    rc |= sp_buf_printf(o,
                        "# TYPE spanprof_metrics_gauges_over_total counter\n"
                        "spanprof_metrics_gauges_over_total %llu\n",
                        (unsigned long long)atomic_load(&gauges_over));
    return rc ? SP_ENOMEM : 0;
}
