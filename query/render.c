/* GET /pprof and GET /render (see render.h). The flamebearer layout follows Pyroscope's
 * pkg/querier/http.go and pkg/og/structs/flamebearer. */
#include "render.h"
#include "../wire/compress.h"
#include "diff.h"
#include "flamegraph.h"
#include "../wire/pbjson.h"
#include "pprof_export.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOUR_NS      3600000000000LL
#define SEC_NS       1000000000LL
#define PUTS(o, lit) sp_buf_append((o), (lit), sizeof(lit) - 1)

/* The parameters both endpoints share, read and checked. */
typedef struct http_query {
    query_type type;
    store_selector sel;
    int64_t from_ns, until_ns;
    int64_t max_nodes; /* -1 = none given */
} http_query;

/* The names of one side's parameters: /render's, or render-diff's left or right. */
typedef struct param_names {
    const char *query, *from, *until;
} param_names;

static const param_names single = {"query", "from", "until"};

static int read_query_named(const srv_request *req, const param_names *pn, sp_arena *a,
                            http_query *q, sp_err *err)
{
    char *text = sp_arena_alloc(a, 16384);
    char t[64];
    if (!text)
        return sp_fail(err, SP_ENOMEM, "out of memory");
    if (srv_query_get(req, pn->query, text, 16384) < 0 || !*text)
        return sp_fail(err, SP_EINVAL,
                       "query parameter \"%s\" is required: a profile type and a selector, "
                       "e.g. process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name=\"app\"}",
                       pn->query);
    int rc = query_selector_parse(text, pn->query, a, &q->sel, err);
    if (!rc)
        rc = query_type_parse(q->sel.type_id, "the profile type of query", 1, a, &q->type, err);
    if (rc)
        return rc;
    int64_t now = query_now_ns();
    q->from_ns = now - HOUR_NS;
    q->until_ns = now;
    if (srv_query_get(req, pn->from, t, sizeof t) > 0 && query_time_parse(t, now, &q->from_ns))
        return sp_fail(err, SP_EINVAL,
                       "%s=%s is not a time: use now, now-1h, or unix seconds/milliseconds",
                       pn->from, t);
    if (srv_query_get(req, pn->until, t, sizeof t) > 0 && query_time_parse(t, now, &q->until_ns))
        return sp_fail(err, SP_EINVAL,
                       "%s=%s is not a time: use now, now-1h, or unix seconds/milliseconds",
                       pn->until, t);
    if (q->until_ns <= q->from_ns)
        return sp_fail(err, SP_EINVAL, "%s must be after %s", pn->until, pn->from);
    q->max_nodes = -1;
    if (srv_query_get(req, "maxNodes", t, sizeof t) > 0 ||
        srv_query_get(req, "max-nodes", t, sizeof t) > 0) {
        char *end;
        long long v = strtoll(t, &end, 10);
        if (*end || v < 0)
            return sp_fail(err, SP_EINVAL, "maxNodes=%s is not a non-negative integer", t);
        q->max_nodes = v;
    }
    return 0;
}

static int read_query(const srv_request *req, sp_arena *a, http_query *q, sp_err *err)
{
    return read_query_named(req, &single, a, q, err);
}

/* ---- GET /pprof ------------------------------------------------------------------------------ */

static int span_ids(const srv_request *req, sp_arena *a, query_stacks_req *sr, sp_err *err)
{
    char *list = sp_arena_alloc(a, 8192);
    if (!list)
        return sp_fail(err, SP_ENOMEM, "out of memory");
    if (srv_query_get(req, "span_id", list, 8192) < 0 &&
        srv_query_get(req, "spanSelector", list, 8192) < 0)
        return 0;
    size_t n = 1;
    for (const char *p = list; *p; p++)
        n += *p == ',';
    char **hex = sp_arena_alloc(a, n * sizeof *hex);
    if (!hex)
        return sp_fail(err, SP_ENOMEM, "out of memory");
    n = 0;
    for (char *tok = strtok(list, ", "); tok; tok = strtok(NULL, ", "))
        hex[n++] = tok;
    uint8_t(*ids)[8];
    int rc = query_span_ids_parse(hex, n, "span_id", a, &ids, err);
    sr->by_span = 1;
    sr->span_ids = (const uint8_t(*)[8])ids;
    sr->nspan_ids = n;
    return rc;
}

static void handle_pprof(srv_request *req, srv_response *resp, void *ud)
{
    uint32_t unresolved;
    query_ctx ctx = query_ctx_for_request(ud, &unresolved);
    const query_ctx *c = &ctx;
    sp_err err = {0};
    sp_arena *a = sp_arena_new(c->budget);
    sp_buf raw, gz;
    sp_buf_init(&raw, 0);
    sp_buf_init(&gz, 0);
    http_query q;
    store_stacks s;
    query_tree t;
    store_stacks cut;
    int rc = a ? read_query(req, a, &q, &err) : sp_fail(&err, SP_ENOMEM, "out of memory");
    query_stacks_req sr = {.tenant = req->tenant, .type = &q.type, .sel = &q.sel, .detail = 1};
    if (!rc) {
        sr.start_ns = q.from_ns;
        sr.end_ns = q.until_ns;
        rc = span_ids(req, a, &sr, &err);
    }
    if (!rc)
        rc = query_stacks_select(c, &sr, a, &s, &err);
    if (!rc)
        rc = query_tree_build(&s, a, &t, &err);
    if (!rc && query_tree_min_value(&t, q.max_nodes, a) == 0)
        cut = s; /* nothing to trim: every frame as received */
    else if (!rc)
        rc = query_tree_stacks(&t, q.max_nodes, a, &cut, &err);
    if (!rc)
        cut.period = s.period; /* trimming to max_nodes keeps the series' period */
    if (!rc)
        rc = query_pprof_encode(&cut, &q.type, q.from_ns, q.until_ns - q.from_ns, a, &raw, &err);
    if (!rc)
        rc = wire_gzip_compress(raw.data, raw.len, 6, &gz, &err);
    if (rc) {
        srv_response_connect_error(resp, &err);
    } else {
        /* The file name is the type's name, kept to characters safe in a header. */
        char disp[160], name[64];
        size_t n = 0;
        for (const char *p = q.type.name; *p && n + 1 < sizeof name; p++)
            name[n++] = isalnum((unsigned char)*p) || *p == '_' || *p == '-' ? *p : '_';
        name[n] = 0;
        snprintf(disp, sizeof disp, "attachment; filename=\"%s-%lld.pb.gz\"", name,
                 (long long)(q.from_ns / SEC_NS));
        srv_response_header(resp, "content-disposition", disp);
        srv_response_send(resp, 200, "application/octet-stream", gz.data, gz.len);
    }
    sp_buf_free(&raw);
    sp_buf_free(&gz);
    sp_arena_free(a);
    query_unresolved_header(resp, unresolved);
}

/* ---- GET /render ----------------------------------------------------------------------------- */

static int put_levels(sp_buf *o, int64_t *const *levels, const size_t *nvalues, uint32_t nlevels)
{
    int rc = sp_buf_append(o, "[", 1);
    for (uint32_t d = 0; d < nlevels && !rc; d++) {
        rc = sp_buf_append(o, d ? ",[" : "[", d ? 2 : 1);
        for (size_t i = 0; i < nvalues[d] && !rc; i++)
            rc = sp_buf_printf(o, "%s%lld", i ? "," : "", (long long)levels[d][i]);
        rc = rc ? rc : sp_buf_append(o, "]", 1);
    }
    return rc ? rc : sp_buf_append(o, "]", 1);
}

static int put_names(sp_buf *o, const char *const *names, uint32_t n)
{
    int rc = 0;
    for (uint32_t i = 0; i < n && !rc; i++)
        rc = (i ? sp_buf_append(o, ",", 1) : 0) | wire_json_string(o, names[i], strlen(names[i]));
    return rc;
}

void query_units_of(const query_type *t, const char **units, long long *rate)
{
    static const char *objects[] = {"inuse_objects", "alloc_objects", "goroutine", "samples"};
    *rate = 100;
    *units = t->sample_unit;
    for (size_t i = 0; i < sizeof objects / sizeof objects[0]; i++)
        if (strcmp(t->sample_type, objects[i]) == 0)
            *units = "objects";
    if (strcmp(t->sample_type, "cpu") == 0) {
        *units = "samples";
        *rate = 1000000000LL;
    }
}

int query_flamebearer_open(sp_buf *o, const query_flamegraph *fg, const query_type *t)
{
    const char *units;
    long long rate;
    query_units_of(t, &units, &rate);
    int rc = PUTS(o, "{\"version\":1,\"flamebearer\":{\"names\":[");
    rc |= put_names(o, fg->names, fg->nnames);
    rc |= PUTS(o, "],\"levels\":") | put_levels(o, fg->levels, fg->nvalues, fg->nlevels);
    rc |= sp_buf_printf(o,
                        ",\"numTicks\":%lld,\"maxSelf\":%lld},\"metadata\":{\"format\":\"single\","
                        "\"spyName\":\"\",\"sampleRate\":%lld,\"units\":",
                        (long long)fg->total, (long long)fg->max_self, rate);
    rc |= wire_json_string(o, units, strlen(units)) | PUTS(o, ",\"name\":") |
          wire_json_string(o, t->sample_type, strlen(t->sample_type)) | PUTS(o, "}");
    return rc;
}

static void handle_render(srv_request *req, srv_response *resp, void *ud)
{
    uint32_t unresolved;
    query_ctx ctx = query_ctx_for_request(ud, &unresolved);
    const query_ctx *c = &ctx;
    sp_err err = {0};
    sp_arena *a = sp_arena_new(c->budget);
    sp_buf o;
    sp_buf_init(&o, 0);
    http_query q;
    store_stacks s;
    query_tree t;
    query_flamegraph fg;
    store_timeseries_set ts = {0};
    char fmt[16] = "json";
    int64_t max_nodes = 0;
    int rc = a ? read_query(req, a, &q, &err) : sp_fail(&err, SP_ENOMEM, "out of memory");
    srv_query_get(req, "format", fmt, sizeof fmt);
    if (!rc && strcmp(fmt, "json") != 0)
        rc = sp_fail(&err, strcmp(fmt, "dot") == 0 ? SP_EUNIMPL : SP_EINVAL,
                     "format=%s is not supported: use format=json", fmt);
    if (!rc)
        rc = query_max_nodes(c, q.max_nodes < 0 ? 0 : q.max_nodes, &max_nodes, &err);
    query_stacks_req sr = {.tenant = req->tenant,
                           .type = &q.type,
                           .sel = &q.sel,
                           .start_ns = rc ? 0 : q.from_ns,
                           .end_ns = rc ? 0 : q.until_ns};
    if (!rc)
        rc = query_stacks_select(c, &sr, a, &s, &err);
    if (!rc)
        rc = query_tree_build(&s, a, &t, &err);
    if (!rc)
        rc = query_flamegraph_build(&t, max_nodes, a, &fg, &err);
    /* Timeline: ~1500 points over the range, at least 15 s apart, start snapped to the step. */
    int64_t step_s = 0, start_s = 0, npoints = 0;
    if (!rc) {
        step_s = (q.until_ns - q.from_ns) / SEC_NS / 1500;
        if (step_s < 15)
            step_s = 15;
        start_s = q.from_ns / SEC_NS / step_s * step_s;
        npoints = (q.until_ns / SEC_NS - start_s + step_s - 1) / step_s;
        if (npoints < 1)
            npoints = 1;
        store_query sq = {.tenant = req->tenant,
                          .type_id = q.type.id,
                          .matchers = q.sel.matchers,
                          .nmatchers = q.sel.nmatchers,
                          .start_ns = start_s * SEC_NS,
                          .end_ns = q.until_ns};
        rc = store_select_series(c->store, &sq, step_s * SEC_NS, NULL, 0, a, &ts, &err);
    }
    if (rc) {
        srv_response_connect_error(resp, &err);
        goto out;
    }
    rc = query_flamebearer_open(&o, &fg, &q.type);
    rc |= sp_buf_printf(&o, ",\"timeline\":{\"startTime\":%lld,\"samples\":[", (long long)start_s);
    const store_timeseries *series = ts.n ? &ts.series[0] : NULL;
    size_t k = 0;
    for (int64_t i = 0; i < npoints && !rc; i++) {
        int64_t at = (start_s + i * step_s) * SEC_NS, v = 0;
        while (series && k < series->npoints && series->points[k].t_ns < at)
            k++;
        if (series && k < series->npoints && series->points[k].t_ns == at)
            v = series->points[k].value;
        rc = sp_buf_printf(&o, "%s%lld", i ? "," : "", (long long)v);
    }
    rc |= sp_buf_printf(&o,
                        "],\"durationDelta\":%lld,\"watermarks\":null},\"groups\":null,"
                        "\"heatmap\":null}",
                        (long long)step_s);
    if (rc) {
        sp_fail(&err, SP_ETOOBIG, "answer too large; narrow the query");
        srv_response_connect_error(resp, &err);
    } else {
        srv_response_send(resp, 200, "application/json", o.data, o.len);
    }
out:
    sp_buf_free(&o);
    sp_arena_free(a);
    query_unresolved_header(resp, unresolved);
}

/* ---- GET /pyroscope/render-diff ------------------------------------------------------------- */

static const param_names left_names = {"leftQuery", "leftFrom", "leftUntil"};
static const param_names right_names = {"rightQuery", "rightFrom", "rightUntil"};

/* One side's merged stacks. */
static int diff_side(const query_ctx *c, const srv_request *req, const param_names *pn, sp_arena *a,
                     http_query *q, store_stacks *s, sp_err *err)
{
    int rc = read_query_named(req, pn, a, q, err);
    query_stacks_req sr = {.tenant = req->tenant,
                           .type = &q->type,
                           .sel = &q->sel,
                           .start_ns = q->from_ns,
                           .end_ns = q->until_ns};
    return rc ? rc : query_stacks_select(c, &sr, a, s, err);
}

/* Pyroscope's "double" flamebearer (ExportDiffToFlamebearer): 7 numbers per node. */
static int put_diff(sp_buf *o, const query_flamegraph_diff *d, const query_type *t)
{
    const char *units;
    long long rate;
    query_units_of(t, &units, &rate);
    int rc = PUTS(o, "{\"version\":1,\"flamebearer\":{\"names\":[");
    rc |= put_names(o, d->names, d->nnames);
    rc |= PUTS(o, "],\"levels\":") | put_levels(o, d->levels, d->nvalues, d->nlevels);
    rc |= sp_buf_printf(o,
                        ",\"numTicks\":%lld,\"maxSelf\":%lld},\"metadata\":{\"format\":\"double\","
                        "\"spyName\":\"\",\"sampleRate\":%lld,\"units\":",
                        (long long)d->total, (long long)d->max_self, rate);
    rc |= wire_json_string(o, units, strlen(units)) | PUTS(o, ",\"name\":") |
          wire_json_string(o, t->sample_type, strlen(t->sample_type));
    rc |= PUTS(o, "},\"timeline\":null,\"groups\":null,\"heatmap\":null");
    if (d->left_ticks)
        rc |= sp_buf_printf(o, ",\"leftTicks\":%lld", (long long)d->left_ticks);
    if (d->right_ticks)
        rc |= sp_buf_printf(o, ",\"rightTicks\":%lld", (long long)d->right_ticks);
    return rc | PUTS(o, "}");
}

static void handle_render_diff(srv_request *req, srv_response *resp, void *ud)
{
    uint32_t unresolved;
    query_ctx ctx = query_ctx_for_request(ud, &unresolved);
    sp_err err = {0};
    sp_arena *a = sp_arena_new(ctx.budget);
    sp_buf o;
    sp_buf_init(&o, 0);
    http_query l, r;
    store_stacks ls, rs;
    query_flamegraph_diff d;
    int64_t max_nodes = 0;
    int rc = a ? diff_side(&ctx, req, &left_names, a, &l, &ls, &err)
               : sp_fail(&err, SP_ENOMEM, "out of memory");
    if (!rc)
        rc = diff_side(&ctx, req, &right_names, a, &r, &rs, &err);
    if (!rc && strcmp(l.type.id, r.type.id) != 0)
        rc = sp_fail(&err, SP_EINVAL,
                     "leftQuery and rightQuery must ask for the same profile type (%s, %s)",
                     l.type.id, r.type.id);
    if (!rc) {
        int64_t want = l.max_nodes > r.max_nodes ? l.max_nodes : r.max_nodes;
        rc = query_max_nodes(&ctx, want < 0 ? 0 : want, &max_nodes, &err);
    }
    if (!rc)
        rc = query_flamegraph_diff_build(&ls, &rs, max_nodes, a, &d, &err);
    if (!rc && put_diff(&o, &d, &l.type))
        rc = sp_fail(&err, SP_ETOOBIG, "answer too large; narrow the query");
    if (rc)
        srv_response_connect_error(resp, &err);
    else
        srv_response_send(resp, 200, "application/json", o.data, o.len);
    sp_buf_free(&o);
    sp_arena_free(a);
    query_unresolved_header(resp, unresolved);
}

int query_render_register(srv_router *r, const query_ctx *c)
{
    int rc = srv_router_add(r, "GET", "/pprof", SRV_QUERY, "query_pprof", handle_pprof, (void *)c);
    if (!rc)
        rc = srv_router_add(r, "GET", "/render", SRV_QUERY, "query_render", handle_render,
                            (void *)c);
    if (!rc)
        rc = srv_router_add(r, "GET", "/pyroscope/render", SRV_QUERY, "query_render", handle_render,
                            (void *)c);
    if (!rc)
        rc = srv_router_add(r, "GET", "/pyroscope/render-diff", SRV_QUERY, "query_render_diff",
                            handle_render_diff, (void *)c);
    return rc;
}
