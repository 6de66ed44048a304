/* GET /api/v1/traces/{id} and GET /api/v1/spans/{id}/profile (see api_v1.h). */
#include "api_v1.h"
#include "../wire/compress.h"
#include "flamegraph.h"
#include "folded.h"
#include "../wire/pbjson.h"
#include "pprof_export.h"
#include "render.h"
#include "span_extras.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TRACES       "/api/v1/traces/"
#define SPANS        "/api/v1/spans/"
#define PUTS(o, lit) sp_buf_append((o), (lit), sizeof(lit) - 1)

static int nomem(sp_err *err)
{
    return sp_fail(err, SP_ETOOBIG, "answer too large for the query budget");
}

/* ---- parameters -------------------------------------------------------------------------------
 */

typedef struct params {
    query_type type;
    int default_type;          /* profile_type not given */
    int64_t from_ns, until_ns; /* 0/0 = every hour the store has */
} params;

static int read_params(const srv_request *req, sp_arena *a, params *p, sp_err *err)
{
    char buf[512], t[64];
    const char *id = QUERY_CPU_TYPE;
    memset(p, 0, sizeof *p);
    p->default_type = 1;
    if (srv_query_get(req, "profile_type", buf, sizeof buf) > 0) {
        id = buf;
        p->default_type = strcmp(buf, QUERY_CPU_TYPE) == 0;
    }
    int rc = query_type_parse(id, "profile_type", 1, a, &p->type, err);
    if (rc)
        return rc;
    int64_t now = query_now_ns();
    int has_from = srv_query_get(req, "from", t, sizeof t) > 0;
    if (has_from && query_time_parse(t, now, &p->from_ns))
        return sp_fail(err, SP_EINVAL,
                       "from=%s is not a time: use now-1h style, YYYYMMDD, or unix seconds, "
                       "milliseconds or nanoseconds",
                       t);
    int has_until = srv_query_get(req, "until", t, sizeof t) > 0;
    if (has_until && query_time_parse(t, now, &p->until_ns))
        return sp_fail(err, SP_EINVAL,
                       "until=%s is not a time: use now-1h style, YYYYMMDD, or unix seconds, "
                       "milliseconds or nanoseconds",
                       t);
    if (has_from && !has_until)
        p->until_ns = now;
    if ((has_from || has_until) && p->until_ns <= p->from_ns)
        return sp_fail(err, SP_EINVAL, "until must be after from");
    if (p->from_ns <= 0 && has_from)
        p->from_ns = 1; /* 0 would mean "unbounded" to the store; the caller gave a bound */
    return 0;
}

/* Percent-encodes s for a URL query value (RFC 3986 unreserved characters kept). */
static int put_query_value(sp_buf *o, const char *s)
{
    int rc = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && !rc; p++)
        rc = isalnum(*p) || strchr("-._~", *p) ? sp_buf_append(o, p, 1)
                                               : sp_buf_printf(o, "%%%02X", *p);
    return rc;
}

/* ---- GET /api/v1/traces/{trace_id} ----------------------------------------------------------- */

typedef struct figures {
    int64_t value;   /* sum of the attached values in the requested type */
    size_t stacks;   /* distinct stacks attached */
    int64_t samples; /* attached samples; -1 = unknown */
    int64_t off_cpu; /* nanoseconds off CPU inside the span (the eBPF profiler's off_cpu) */
} figures;

/* The off-CPU type the eBPF profiler's profiles get (otlp/convert.c). */
#define OFF_CPU_TYPE "off_cpu:off_cpu:nanoseconds::"

/* The Pyroscope type that counts the samples of t, when the store keeps one (a Go pprof pushed
 * to /ingest or Push gives process_cpu:samples:count:cpu:nanoseconds beside CPU time); NULL when
 * it does not (OTLP CPU samples arrive as CPU time only). */
static int count_type_of(const query_ctx *c, const srv_request *req, const query_type *t,
                         sp_arena *a, const char **out, sp_err *err)
{
    *out = NULL;
    if (strcmp(t->sample_type, "samples") == 0 && strcmp(t->sample_unit, "count") == 0) {
        *out = t->id;
        return 0;
    }
    char id[1024];
    snprintf(id, sizeof id, "%s:samples:count:%s:%s", t->name, t->period_type, t->period_unit);
    store_query q = {.tenant = req->tenant};
    store_strings types;
    int rc = store_profile_types(c->store, &q, a, &types, err);
    for (size_t i = 0; i < types.n && !rc; i++)
        if (strcmp(types.v[i], id) == 0 && !(*out = sp_arena_strndup(a, id, strlen(id))))
            rc = nomem(err);
    return rc;
}

/* The figures of every span of a trace: one store_span_totals() call for all of them (and one
 * more for the count type), reading only their value chunks. */
static int trace_figures(const query_ctx *c, const srv_request *req, const params *p,
                         const char *count_type, const store_spans *spans, sp_arena *a,
                         figures *out, sp_err *err)
{
    size_t n = spans->n;
    uint8_t(*ids)[8] = sp_arena_alloc(a, (n + 1) * sizeof *ids);
    store_span_total *t = sp_arena_calloc(a, n + 1, sizeof *t);
    store_span_total *cnt = sp_arena_calloc(a, n + 1, sizeof *cnt);
    if (!ids || !t || !cnt)
        return nomem(err);
    for (size_t i = 0; i < n; i++)
        memcpy(ids[i], spans->spans[i].span_id, 8);
    store_query q = {.tenant = req->tenant,
                     .type_id = p->type.id,
                     .start_ns = p->from_ns,
                     .end_ns = p->until_ns};
    int rc = store_span_totals(c->store, &q, (const uint8_t(*)[8])ids, n, t, err);
    store_span_total *off = sp_arena_calloc(a, n + 1, sizeof *off);
    if (!off)
        return nomem(err);
    if (!rc) { /* the time each span spent waiting: its off-CPU intervals' parts inside it */
        q.type_id = OFF_CPU_TYPE;
        rc = store_span_totals(c->store, &q, (const uint8_t(*)[8])ids, n, off, err);
        q.type_id = p->type.id;
    }
    for (size_t i = 0; i < n && !rc; i++)
        out[i].off_cpu = off[i].value;
    int other_count = count_type && count_type != p->type.id;
    if (!rc && other_count) {
        q.type_id = count_type;
        rc = store_span_totals(c->store, &q, (const uint8_t(*)[8])ids, n, cnt, err);
    }
    for (size_t i = 0; i < n && !rc; i++) {
        out[i].value = t[i].value;
        out[i].stacks = t[i].stacks;
        if (!t[i].stacks) /* nothing attached: certainly no samples */
            out[i].samples = 0;
        else if (!count_type)
            out[i].samples = -1;
        else if (!other_count)
            out[i].samples = t[i].value;
        else
            /* A sender with counts gives every stack both values; a stack with a value and no
             * count came from a sender without counts (OTLP), and then the count would fall
             * short: unknown. */
            out[i].samples = cnt[i].stacks == t[i].stacks ? cnt[i].value : -1;
    }
    return rc;
}

/* The page's span view and the span's profile download, relative to the server's root. */
static int put_links(sp_buf *o, const srv_request *req, const params *p, const char *hex)
{
    int rc = sp_buf_printf(o, ",\"flame_graph_url\":\"/ui/span/%s", hex);
    const char *sep = "?";
    if (!p->default_type) {
        rc |= sp_buf_printf(o, "%stype=", sep) | put_query_value(o, p->type.id);
        sep = "&";
    }
    if (req->tenant && strcmp(req->tenant, "anonymous") != 0)
        rc |= sp_buf_printf(o, "%stenant=", sep) | put_query_value(o, req->tenant);
    rc |= sp_buf_printf(o, "\",\"profile_url\":\"/api/v1/spans/%s/profile?format=pprof", hex);
    if (!p->default_type)
        rc |= PUTS(o, "&profile_type=") | put_query_value(o, p->type.id);
    return rc | PUTS(o, "\"");
}

static int put_span(sp_buf *o, const srv_request *req, const params *p, const sp_span *sp,
                    const figures *f, int cpu, sp_arena *a)
{
    char hex[17], parent[17];
    static const uint8_t zero[8];
    query_hex_encode(sp->span_id, 8, hex);
    query_hex_encode(sp->parent_span_id, 8, parent);
    int root = memcmp(sp->parent_span_id, zero, 8) == 0;
    int rc = sp_buf_printf(o, "{\"span_id\":\"%s\",\"parent_span_id\":", hex);
    rc |= root ? PUTS(o, "null") : sp_buf_printf(o, "\"%s\"", parent);
    rc |= PUTS(o, ",\"name\":") | wire_json_string(o, sp->name, strlen(sp->name));
    rc |= PUTS(o, ",\"service\":") | wire_json_string(o, sp->service, strlen(sp->service));
    uint64_t dur = sp->end_ns > sp->start_ns ? sp->end_ns - sp->start_ns : 0;
    /* Unix nanoseconds exceed 2^53: a string, as OTLP/JSON writes them. */
    rc |= sp_buf_printf(o,
                        ",\"start_time_unix_nano\":\"%" PRIu64 "\",\"duration_ns\":%" PRIu64
                        ",\"pid\":%" PRId64 ",\"thread_id\":%" PRId64 ",\"stacks\":%zu",
                        sp->start_ns, dur, sp->pid, sp->tid, f->stacks);
    rc |= f->samples < 0 ? PUTS(o, ",\"samples\":null")
                         : sp_buf_printf(o, ",\"samples\":%" PRId64, f->samples);
    rc |= sp_buf_printf(o, ",\"value\":%" PRId64, f->value);
    if (cpu) {
        /* a span's wall time = CPU + off-CPU + the rest (not sampled: runnable, or threads the
         * profiler did not see) */
        int64_t rest = (int64_t)dur - f->value - f->off_cpu;
        rc |= sp_buf_printf(o,
                            ",\"cpu_time_ns\":%" PRId64 ",\"off_cpu_time_ns\":%" PRId64
                            ",\"other_time_ns\":%" PRId64,
                            f->value, f->off_cpu, rest > 0 ? rest : 0);
    }
    /* attributes, kind, status, events, links, resource: a damaged blob (SP_EINVAL) was answered
     * as nothing kept, counted and logged; the span is still shown. */
    int xrc = query_span_extras_json(o, sp->extras, sp->extras_len, a);
    rc |= xrc == SP_EINVAL ? 0 : xrc;
    return rc | put_links(o, req, p, hex) | PUTS(o, "}");
}

/* Path tail after a prefix: one segment, an optional trailing '/' dropped. NULL when there are
 * more segments. */
static const char *one_segment(const char *rest, sp_arena *a)
{
    size_t n = strlen(rest);
    if (n && rest[n - 1] == '/')
        n--;
    if (memchr(rest, '/', n))
        return NULL;
    return sp_arena_strndup(a, rest, n);
}

static void handle_trace(srv_request *req, srv_response *resp, void *ud)
{
    const query_ctx *c = ud;
    sp_err err = {0};
    sp_arena *a = sp_arena_new(c->budget), *scratch = sp_arena_new(c->budget);
    sp_buf o;
    sp_buf_init(&o, 0);
    params p;
    uint8_t id[16];
    store_spans spans = {0};
    const char *count_type = NULL, *text = a ? one_segment(req->path + strlen(TRACES), a) : NULL;
    int rc = !a || !scratch ? sp_fail(&err, SP_ENOMEM, "out of memory")
             : !text        ? sp_fail(&err, SP_ENOTFOUND,
                                      "no such endpoint: %.200s (the trace API is "
                                             "/api/v1/traces/{trace_id})",
                                      req->path)
                            : query_hex_id(text, 16, "trace id", id, &err);
    if (!rc)
        rc = read_params(req, a, &p, &err);
    if (!rc)
        rc = store_trace_spans(c->store, req->tenant, id, a, &spans, &err);
    if (!rc && !spans.n)
        rc = sp_fail(&err, SP_ENOTFOUND,
                     "trace %s is not in the span index of tenant %s (spans are kept for the "
                     "retention period, and only those sent to spanprof)",
                     text, req->tenant ? req->tenant : "anonymous");
    if (!rc)
        rc = count_type_of(c, req, &p.type, a, &count_type, &err);
    if (rc) {
        srv_response_connect_error(resp, &err);
        goto out;
    }
    int cpu =
        strcmp(p.type.sample_type, "cpu") == 0 && strcmp(p.type.sample_unit, "nanoseconds") == 0;
    char hex[33];
    query_hex_encode(id, 16, hex);
    rc = sp_buf_printf(&o, "{\"trace_id\":\"%s\",\"profile_type\":", hex);
    rc |= wire_json_string(&o, p.type.id, strlen(p.type.id)) | PUTS(&o, ",\"unit\":") |
          wire_json_string(&o, p.type.sample_unit, strlen(p.type.sample_unit));
    if (c->span_min_duration_ns > 0)
        rc |= sp_buf_printf(&o, ",\"span_min_duration_ns\":%" PRId64, c->span_min_duration_ns);
    rc |= sp_buf_printf(&o, ",\"span_count\":%zu,\"spans\":[", spans.n);
    figures *figs = sp_arena_calloc(scratch, spans.n + 1, sizeof *figs);
    int frc =
        figs ? trace_figures(c, req, &p, count_type, &spans, scratch, figs, &err) : nomem(&err);
    if (frc) {
        srv_response_connect_error(resp, &err);
        goto out;
    }
    for (size_t i = 0; i < spans.n && !rc; i++)
        rc = (i ? PUTS(&o, ",") : 0) |
             put_span(&o, req, &p, &spans.spans[i], &figs[i], cpu, scratch);
    rc |= PUTS(&o, "]}");
    if (rc) {
        sp_fail(&err, SP_ETOOBIG, "answer too large");
        srv_response_connect_error(resp, &err);
    } else {
        srv_response_send(resp, 200, "application/json", o.data, o.len);
    }
out:
    sp_buf_free(&o);
    sp_arena_free(scratch);
    sp_arena_free(a);
}

/* ---- GET /api/v1/spans/{span_id}/profile ----------------------------------------------------- */

enum { FMT_PPROF, FMT_FOLDED, FMT_JSON };

static int span_path(const srv_request *req, sp_arena *a, uint8_t id[8], sp_err *err)
{
    const char *rest = req->path + strlen(SPANS), *slash = strchr(rest, '/');
    if (!slash || (strcmp(slash, "/profile") != 0 && strcmp(slash, "/profile/") != 0))
        return sp_fail(err, SP_ENOTFOUND,
                       "no such endpoint: %.200s (the span API is "
                       "/api/v1/spans/{span_id}/profile)",
                       req->path);
    const char *text = sp_arena_strndup(a, rest, (size_t)(slash - rest));
    if (!text)
        return nomem(err);
    return query_hex_id(text, 8, "span id", id, err);
}

static int read_format(const srv_request *req, int *fmt, int64_t *max_nodes, sp_err *err)
{
    char f[32] = "pprof", t[32];
    srv_query_get(req, "format", f, sizeof f);
    if (strcmp(f, "pprof") == 0 || !*f)
        *fmt = FMT_PPROF;
    else if (strcmp(f, "folded") == 0)
        *fmt = FMT_FOLDED;
    else if (strcmp(f, "json") == 0)
        *fmt = FMT_JSON;
    else
        return sp_fail(err, SP_EINVAL, "format=%s is not supported: use pprof, folded or json", f);
    *max_nodes = 0;
    if (srv_query_get(req, "maxNodes", t, sizeof t) > 0 ||
        srv_query_get(req, "max-nodes", t, sizeof t) > 0) {
        char *end;
        long long v = strtoll(t, &end, 10);
        if (*end || v < 0)
            return sp_fail(err, SP_EINVAL, "maxNodes=%s is not a non-negative integer", t);
        *max_nodes = v;
    }
    return 0;
}

static void send_pprof(srv_response *resp, const store_stacks *s, const params *p,
                       const sp_span *sp, const char *hex, sp_arena *a, sp_err *err)
{
    sp_buf raw, gz;
    sp_buf_init(&raw, 0);
    sp_buf_init(&gz, 0);
    int64_t t0 = sp ? (int64_t)sp->start_ns : p->from_ns;
    int64_t dur = sp && sp->end_ns > sp->start_ns ? (int64_t)(sp->end_ns - sp->start_ns) : 0;
    int rc = query_pprof_encode(s, &p->type, t0, dur, a, &raw, err);
    if (!rc)
        rc = wire_gzip_compress(raw.data, raw.len, 6, &gz, err);
    if (rc) {
        srv_response_connect_error(resp, err);
    } else {
        char disp[96];
        snprintf(disp, sizeof disp, "attachment; filename=\"span-%s.pb.gz\"", hex);
        srv_response_header(resp, "content-disposition", disp);
        srv_response_send(resp, 200, "application/octet-stream", gz.data, gz.len);
    }
    sp_buf_free(&raw);
    sp_buf_free(&gz);
}

static void handle_span_profile(srv_request *req, srv_response *resp, void *ud)
{
    uint32_t unresolved;
    query_ctx ctx = query_ctx_for_request(ud, &unresolved);
    const query_ctx *c = &ctx;
    sp_err err = {0};
    sp_arena *a = sp_arena_new(c->budget);
    sp_buf o;
    sp_buf_init(&o, 0);
    params p;
    uint8_t id[8];
    int fmt = FMT_PPROF;
    int64_t max_nodes = 0;
    store_stacks s;
    sp_span span;
    int indexed = 0;
    int rc = a ? span_path(req, a, id, &err) : sp_fail(&err, SP_ENOMEM, "out of memory");
    if (!rc)
        rc = read_params(req, a, &p, &err);
    if (!rc)
        rc = read_format(req, &fmt, &max_nodes, &err);
    if (!rc)
        rc = query_max_nodes(c, max_nodes, &max_nodes, &err);
    if (!rc) {
        query_stacks_req sr = {.tenant = req->tenant,
                               .type = &p.type,
                               .start_ns = p.from_ns,
                               .end_ns = p.until_ns,
                               .by_span = 1,
                               .span_ids = (const uint8_t(*)[8])id,
                               .nspan_ids = 1,
                               .detail = fmt == FMT_PPROF};
        rc = query_stacks_select(c, &sr, a, &s, &err);
    }
    if (!rc) {
        rc = store_span_get(c->store, req->tenant, id, a, &span, &err);
        indexed = rc == 0;
        if (rc == SP_ENOTFOUND)
            rc = 0;
    }
    char hex[17];
    query_hex_encode(id, 8, hex);
    int any = 0;
    for (size_t i = 0; !rc && i < s.nstacks && !any; i++)
        any = s.stacks[i].value != 0;
    if (!rc && !indexed && !any)
        rc = sp_fail(&err, SP_ENOTFOUND,
                     "span %s has no %s samples and is not in the span index of tenant %s", hex,
                     p.type.id, req->tenant ? req->tenant : "anonymous");
    if (rc) {
        srv_response_connect_error(resp, &err);
        goto out;
    }
    if (fmt == FMT_PPROF) {
        send_pprof(resp, &s, &p, indexed ? &span : NULL, hex, a, &err);
        goto out;
    }
    if (fmt == FMT_FOLDED) {
        rc = query_folded_encode(&s, a, &o, &err);
        if (!rc)
            srv_response_send(resp, 200, "text/plain; charset=utf-8", o.data, o.len);
    } else {
        query_tree t;
        query_flamegraph fg;
        rc = query_tree_build(&s, a, &t, &err);
        if (!rc)
            rc = query_flamegraph_build(&t, max_nodes, a, &fg, &err);
        if (!rc && (query_flamebearer_open(&o, &fg, &p.type) ||
                    PUTS(&o, ",\"timeline\":null,\"groups\":null,\"heatmap\":null}")))
            rc = nomem(&err);
        if (!rc)
            srv_response_send(resp, 200, "application/json", o.data, o.len);
    }
    if (rc)
        srv_response_connect_error(resp, &err);
out:
    sp_buf_free(&o);
    sp_arena_free(a);
    query_unresolved_header(resp, unresolved);
}

int query_api_v1_register(srv_router *r, const query_ctx *c)
{
    int rc =
        srv_router_add(r, "GET", TRACES "*", SRV_QUERY, "query_api_trace", handle_trace, (void *)c);
    if (!rc)
        rc = srv_router_add(r, "GET", SPANS "*", SRV_QUERY, "query_api_span_profile",
                            handle_span_profile, (void *)c);
    return rc;
}
