/* GET /api/v1/services and GET /api/v1/traces?service= (see api_find.h). */
#include "api_find.h"
#include "api_v1.h"
#include "params.h"
#include "../wire/pbjson.h"
#include "render.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OFF_CPU_TYPE  "off_cpu:off_cpu:nanoseconds::"
#define HOUR_NS       3600000000000LL
#define DEFAULT_LIMIT 20
#define MAX_LIMIT     1000
#define PUTS(o, lit)  sp_buf_append((o), (lit), sizeof(lit) - 1)

static int nomem(sp_err *err)
{
    return sp_fail(err, SP_ETOOBIG, "answer too large for the query budget");
}

/* from/until as /render takes them; default the last hour. */
static int read_range(const srv_request *req, int64_t *from, int64_t *until, sp_err *err)
{
    char t[64];
    int64_t now = query_now_ns();
    *until = now;
    *from = now - HOUR_NS;
    if (srv_query_get(req, "from", t, sizeof t) > 0 && query_time_parse(t, now, from))
        return sp_fail(err, SP_EINVAL,
                       "from=%s is not a time: use now-1h style, YYYYMMDD, or "
                       "unix seconds, milliseconds or nanoseconds",
                       t);
    if (srv_query_get(req, "until", t, sizeof t) > 0 && query_time_parse(t, now, until))
        return sp_fail(err, SP_EINVAL,
                       "until=%s is not a time: use now-1h style, YYYYMMDD, "
                       "or unix seconds, milliseconds or nanoseconds",
                       t);
    if (*until <= *from)
        return sp_fail(err, SP_EINVAL, "until must be after from");
    if (*from <= 0)
        *from = 1;
    return 0;
}

static void send_json(srv_response *resp, sp_buf *o, int rc, sp_err *err)
{
    if (!rc) {
        srv_response_send(resp, 200, "application/json", o->data, o->len);
        return;
    }
    if (!err->code)
        nomem(err);
    srv_response_connect_error(resp, err);
}

static void handle_services(srv_request *req, srv_response *resp, void *ud)
{
    const query_ctx *c = ud;
    sp_err err = {0};
    sp_arena *a = sp_arena_new(c->budget);
    sp_buf o;
    sp_buf_init(&o, 0);
    int64_t from = 0, until = 0;
    store_strings names = {0};
    int rc = a ? read_range(req, &from, &until, &err) : nomem(&err);
    if (!rc) {
        store_query q = {.tenant = req->tenant, .start_ns = from, .end_ns = until};
        rc = store_span_services(c->store, &q, a, &names, &err);
    }
    if (!rc) {
        rc = PUTS(&o, "{\"services\":[");
        for (size_t i = 0; i < names.n && !rc; i++)
            rc = (i ? PUTS(&o, ",") : 0) | wire_json_string(&o, names.v[i], strlen(names.v[i]));
        rc = rc ? nomem(&err) : PUTS(&o, "]}") ? nomem(&err) : 0;
    }
    send_json(resp, &o, rc, &err);
    sp_buf_free(&o);
    sp_arena_free(a);
}

/* One application of GET /api/apps: a series' service and profile type. */
static int put_app(sp_buf *o, const store_labels *l, sp_arena *a, sp_err *err)
{
    const char *service = "", *type = NULL;
    for (size_t i = 0; i < l->n; i++) {
        if (!strcmp(l->labels[i].name, "service_name"))
            service = l->labels[i].value;
        else if (!strcmp(l->labels[i].name, "__profile_type__"))
            type = l->labels[i].value;
    }
    query_type t;
    if (!type || query_type_parse(type, "type", 0, a, &t, err))
        return 0; /* not a profile series: nothing to list */
    const char *units;
    long long rate;
    query_units_of(&t, &units, &rate);
    /* Pyroscope's ApplicationMetadata: name is <application>.<profile> ("checkout.cpu"). */
    char name[600];
    snprintf(name, sizeof name, "%.400s.%.150s", service, t.sample_type);
    int rc = PUTS(o, "{\"name\":") | wire_json_string(o, name, strlen(name)) |
             sp_buf_printf(o, ",\"sampleRate\":%lld,\"units\":", rate) |
             wire_json_string(o, units, strlen(units)) | PUTS(o, ",\"serviceName\":") |
             wire_json_string(o, service, strlen(service)) | PUTS(o, ",\"profileType\":") |
             wire_json_string(o, t.id, strlen(t.id)) | PUTS(o, "}");
    return rc ? nomem(err) : 1;
}

/* GET /api/apps: every (service, profile type) the tenant has series of, whatever their time. */
static void handle_apps(srv_request *req, srv_response *resp, void *ud)
{
    const query_ctx *c = ud;
    sp_err err = {0};
    sp_arena *a = sp_arena_new(c->budget);
    sp_buf o;
    sp_buf_init(&o, 0);
    static const char *const names[] = {"service_name", "__profile_type__"};
    store_labelsets sets = {0};
    store_query q = {.tenant = req->tenant};
    int rc = a ? store_series(c->store, &q, names, 2, a, &sets, &err) : nomem(&err);
    if (!rc)
        rc = PUTS(&o, "[") ? nomem(&err) : 0;
    for (size_t i = 0, n = 0; i < sets.n && !rc; i++) {
        if (n && PUTS(&o, ","))
            rc = nomem(&err);
        int put = rc ? rc : put_app(&o, &sets.sets[i], a, &err);
        rc = put < 0 ? put : 0;
        if (put > 0)
            n++;
        else if (!rc && n) /* nothing was written: take the comma back */
            o.len--;
    }
    if (!rc && PUTS(&o, "]"))
        rc = nomem(&err);
    send_json(resp, &o, rc, &err);
    sp_buf_free(&o);
    sp_arena_free(a);
}

/* What the list shows of one trace. */
typedef struct summary {
    const sp_span *root;
    uint64_t start, end;
    size_t nspans;
    int64_t cpu, off_cpu;
} summary;

static int has_parent_in(const store_spans *sp, const sp_span *s, int same_process)
{
    static const uint8_t zero[8];
    if (memcmp(s->parent_span_id, zero, 8) == 0)
        return 0;
    for (size_t i = 0; i < sp->n; i++)
        if (memcmp(sp->spans[i].span_id, s->parent_span_id, 8) == 0)
            return !same_process || sp->spans[i].pid == s->pid;
    return 0;
}

static int summarise(const query_ctx *c, const srv_request *req, const uint8_t id[16], int64_t from,
                     int64_t until, sp_arena *a, summary *out, sp_err *err)
{
    memset(out, 0, sizeof *out);
    store_spans sp;
    int rc = store_trace_spans(c->store, req->tenant, id, a, &sp, err);
    if (rc || !sp.n)
        return rc;
    out->nspans = sp.n;
    out->start = UINT64_MAX;
    uint8_t(*tops)[8] = sp_arena_alloc(a, sp.n * sizeof *tops);
    store_span_total *t = sp_arena_calloc(a, sp.n, sizeof *t);
    if (!tops || !t)
        return nomem(err);
    size_t ntops = 0;
    for (size_t i = 0; i < sp.n; i++) { /* ascending start: the first parentless is the root */
        const sp_span *s = &sp.spans[i];
        out->start = s->start_ns < out->start ? s->start_ns : out->start;
        out->end = s->end_ns > out->end ? s->end_ns : out->end;
        if (!out->root && !has_parent_in(&sp, s, 0))
            out->root = s;
        if (!has_parent_in(&sp, s, 1))
            memcpy(tops[ntops++], s->span_id, 8);
    }
    if (!out->root)
        out->root = &sp.spans[0];
    (void)from, (void)until; /* the samples of a span are found whenever they were taken */
    store_query q = {.tenant = req->tenant, .type_id = QUERY_CPU_TYPE};
    const char *types[2] = {QUERY_CPU_TYPE, OFF_CPU_TYPE};
    int64_t *sums[2] = {&out->cpu, &out->off_cpu};
    for (int k = 0; k < 2 && !rc; k++) {
        q.type_id = types[k];
        rc = store_span_totals(c->store, &q, (const uint8_t(*)[8])tops, ntops, t, err);
        for (size_t i = 0; i < ntops && !rc; i++)
            *sums[k] = sp_sat_add(*sums[k], t[i].value);
    }
    return rc;
}

static int put_summary(sp_buf *o, const uint8_t id[16], const summary *s)
{
    char tid[33], sid[17];
    query_hex_encode(id, 16, tid);
    query_hex_encode(s->root->span_id, 8, sid);
    int rc =
        sp_buf_printf(o, "{\"trace_id\":\"%s\",\"root_span_id\":\"%s\",\"root_name\":", tid, sid);
    rc |= wire_json_string(o, s->root->name, strlen(s->root->name));
    rc |= PUTS(o, ",\"root_service\":") |
          wire_json_string(o, s->root->service, strlen(s->root->service));
    rc |= sp_buf_printf(
        o,
        ",\"start_ns\":%" PRIu64 ",\"duration_ns\":%" PRIu64
        ",\"span_count\":%zu,\"cpu_time_ns\":%" PRId64 ",\"off_cpu_time_ns\":%" PRId64 "}",
        s->start, s->end > s->start ? s->end - s->start : 0, s->nspans, s->cpu, s->off_cpu);
    return rc;
}

static void handle_traces(srv_request *req, srv_response *resp, void *ud)
{
    const query_ctx *c = ud;
    sp_err err = {0};
    sp_arena *a = sp_arena_new(c->budget);
    sp_buf o;
    sp_buf_init(&o, 0);
    char service[512], lim[32];
    int64_t from = 0, until = 0;
    long limit = DEFAULT_LIMIT;
    int rc = a ? 0 : nomem(&err);
    if (!rc && srv_query_get(req, "service", service, sizeof service) <= 0)
        rc = sp_fail(&err, SP_EINVAL,
                     "service= is required (GET /api/v1/services lists them; a trace by id is "
                     "/api/v1/traces/{trace_id})");
    if (!rc && srv_query_get(req, "limit", lim, sizeof lim) > 0) {
        char *end;
        limit = strtol(lim, &end, 10);
        if (*end || limit < 1 || limit > MAX_LIMIT)
            rc = sp_fail(&err, SP_EINVAL, "limit=%s: give a number from 1 to %d", lim, MAX_LIMIT);
    }
    if (!rc)
        rc = read_range(req, &from, &until, &err);
    store_trace_ids ids = {0};
    if (!rc) {
        store_query q = {.tenant = req->tenant, .start_ns = from, .end_ns = until};
        rc = store_service_traces(c->store, &q, service, (size_t)limit, a, &ids, &err);
    }
    if (!rc) {
        rc = PUTS(&o, "{\"service\":") | wire_json_string(&o, service, strlen(service)) |
             PUTS(&o, ",\"traces\":[");
        size_t shown = 0;
        for (size_t i = 0; i < ids.n && !rc; i++) {
            summary s;
            if ((rc = summarise(c, req, ids.ids[i], from, until, a, &s, &err)))
                break;
            if (!s.nspans)
                continue; /* aged out between the two reads */
            rc = (shown++ ? PUTS(&o, ",") : 0) | put_summary(&o, ids.ids[i], &s);
            if (rc)
                rc = nomem(&err);
        }
        if (!rc && sp_buf_printf(&o, "],\"truncated\":%s}", ids.truncated ? "true" : "false"))
            rc = nomem(&err);
    }
    send_json(resp, &o, rc, &err);
    sp_buf_free(&o);
    sp_arena_free(a);
}

int query_api_find_register(srv_router *r, const query_ctx *c)
{
    int rc = srv_router_add(r, "GET", "/api/v1/services", SRV_QUERY, "query_api_services",
                            handle_services, (void *)c);
    if (!rc)
        rc = srv_router_add(r, "GET", "/api/v1/traces", SRV_QUERY, "query_api_traces",
                            handle_traces, (void *)c);
    if (!rc)
        rc = srv_router_add(r, "GET", "/api/apps", SRV_QUERY, "query_api_apps", handle_apps,
                            (void *)c);
    return rc;
}
