/* The store interface's dispatch: argument checks common to every backend, backend selection by
 * URL, and the frame-name rule. */
#include "store.h"

#include <stdlib.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* "none": no local copy. Writes are accepted (another engine keeps the data), everything else is
 * SP_EUNIMPL through the dispatch below, under the name of that engine. */
typedef struct none_store {
    store base;
    store_ops ops;
} none_store;

static int none_write(store *s, const sp_batch *b, sp_err *err)
{
    (void)s;
    (void)b;
    (void)err;
    return 0;
}

static void none_close(store *s)
{
    free(s);
}

static int open_none(store **out, const store_options *o, sp_err *err)
{
    none_store *n = calloc(1, sizeof *n);
    if (!n)
        return sp_fail(err, SP_ENOMEM, "out of memory opening the store");
    n->ops.kind = o && o->remote_kind ? o->remote_kind : "none";
    n->ops.write = none_write;
    n->ops.close = none_close;
    n->base.ops = &n->ops;
    *out = &n->base;
    return 0;
}

int store_open(store **out, const char *url, const store_options *o, sp_err *err)
{
    if (!out)
        return sp_fail(err, SP_EINTERNAL, "store_open: no output pointer");
    *out = NULL;
    if (!url || !*url || strcmp(url, "sqlite") == 0)
        return store_open_sqlite(out, o, err);
    if (strncmp(url, "sqlite:", 7) == 0) {
        const char *dir = url + 7;
        if (strncmp(dir, "//", 2) == 0)
            dir += 2;
        if (!*dir)
            return sp_fail(err, SP_EINVAL, "store URL \"%s\" names no directory", url);
        store_options copy = {0};
        if (o)
            copy = *o;
        copy.data_dir = dir;
        return store_open_sqlite(out, &copy, err);
    }
    if (strcmp(url, "none") == 0)
        return open_none(out, o, err);
    return sp_fail(err, SP_EINVAL, "unknown store \"%s\" (expected sqlite, sqlite:<dir> or none)",
                   url);
}

void store_close(store *s)
{
    if (s && s->ops && s->ops->close)
        s->ops->close(s);
}

static int unimpl(store *s, sp_err *err, const char *what)
{
    return sp_fail(err, SP_EUNIMPL, "the %s store does not support %s",
                   s->ops->kind ? s->ops->kind : "configured", what);
}

#define CHECK_STORE(s, err)                                                                        \
    do {                                                                                           \
        if (!(s) || !(s)->ops)                                                                     \
            return sp_fail(err, SP_EUNAVAIL, "the store is not open");                             \
    } while (0)

#define CHECK_OUT(a, out, err)                                                                     \
    do {                                                                                           \
        if (!(a) || !(out))                                                                        \
            return sp_fail(err, SP_EINTERNAL, "%s: no arena or output", __func__);                 \
    } while (0)

int store_write(store *s, const sp_batch *b, sp_err *err)
{
    CHECK_STORE(s, err);
    if (!b)
        return sp_fail(err, SP_EINTERNAL, "store_write: no batch");
    if (!s->ops->write)
        return unimpl(s, err, "writes");
    return s->ops->write(s, b, err);
}

struct store_stream {
    store *s;
    void *impl;   /* the backend's stream; NULL when the parts are joined here */
    sp_batch all; /* joined parts, for a backend without streams */
};

int store_stream_begin(store *s, sp_arena *a, store_stream **out, sp_err *err)
{
    CHECK_STORE(s, err);
    *out = NULL;
    store_stream *st = a ? sp_arena_calloc(a, 1, sizeof *st) : NULL;
    if (!st)
        return sp_fail(err, SP_ETOOBIG, "store_stream_begin: no arena or out of its budget");
    st->s = s;
    st->all.arena = a;
    if (s->ops->stream_begin) { /* it may leave impl NULL: the parts are joined here */
        int rc = s->ops->stream_begin(s, a, &st->impl, err);
        if (rc)
            return rc;
    }
    *out = st;
    return 0;
}

int store_stream_part(store_stream *st, const sp_batch *part, sp_err *err)
{
    if (!st || !part)
        return sp_fail(err, SP_EINTERNAL, "store_stream_part: no stream or part");
    if (st->impl)
        return st->s->ops->stream_part(st->s, st->impl, part, err);
    return store_join_part(&st->all, part, err);
}

int store_join_part(sp_batch *all, const sp_batch *part, sp_err *err)
{
    if (part->nspans)
        return sp_fail(err, SP_EINTERNAL, "store_stream_part: spans are written by store_write");
    if (!all->nprofiles && !all->nspans)
        all->tenant = part->tenant;
    for (size_t i = 0; i < part->nprofiles; i++)
        if (sp_batch_add_profile(all, part->profiles[i]))
            return sp_fail(err, SP_ETOOBIG, "too many profiles for the request budget");
    return 0;
}

int store_stream_end(store_stream *st, int failed, sp_err *err)
{
    if (!st)
        return failed ? 0 : sp_fail(err, SP_EINTERNAL, "store_stream_end: no stream");
    if (st->impl)
        return st->s->ops->stream_end(st->s, st->impl, failed, err);
    return failed || (!st->all.nprofiles && !st->all.nspans) ? 0
                                                             : store_write(st->s, &st->all, err);
}

int store_profile_types(store *s, const store_query *q, sp_arena *a, store_strings *out,
                        sp_err *err)
{
    CHECK_STORE(s, err);
    CHECK_OUT(a, out, err);
    memset(out, 0, sizeof *out);
    if (!s->ops->profile_types)
        return unimpl(s, err, "listing profile types");
    return s->ops->profile_types(s, q, a, out, err);
}

int store_label_names(store *s, const store_query *q, sp_arena *a, store_strings *out, sp_err *err)
{
    CHECK_STORE(s, err);
    CHECK_OUT(a, out, err);
    memset(out, 0, sizeof *out);
    if (!s->ops->label_names)
        return unimpl(s, err, "listing label names");
    return s->ops->label_names(s, q, a, out, err);
}

int store_label_values(store *s, const store_query *q, const char *name, sp_arena *a,
                       store_strings *out, sp_err *err)
{
    CHECK_STORE(s, err);
    CHECK_OUT(a, out, err);
    memset(out, 0, sizeof *out);
    if (!name || !*name)
        return sp_fail(err, SP_EINVAL, "label values: no label name given");
    if (!s->ops->label_values)
        return unimpl(s, err, "listing label values");
    return s->ops->label_values(s, q, name, a, out, err);
}

int store_series(store *s, const store_query *q, const char *const *names, size_t nnames,
                 sp_arena *a, store_labelsets *out, sp_err *err)
{
    CHECK_STORE(s, err);
    CHECK_OUT(a, out, err);
    memset(out, 0, sizeof *out);
    if (nnames && !names)
        return sp_fail(err, SP_EINTERNAL, "store_series: nnames without names");
    if (!s->ops->series)
        return unimpl(s, err, "listing series");
    return s->ops->series(s, q, names, nnames, a, out, err);
}

int store_select_stacks(store *s, const store_query *q, sp_arena *a, store_stacks *out, sp_err *err)
{
    CHECK_STORE(s, err);
    CHECK_OUT(a, out, err);
    memset(out, 0, sizeof *out);
    if (!q)
        return sp_fail(err, SP_EINTERNAL, "store_select_stacks: no query");
    if (!s->ops->select_stacks)
        return unimpl(s, err, "selecting stacks");
    return s->ops->select_stacks(s, q, a, out, err);
}

int store_select_series(store *s, const store_query *q, int64_t step_ns,
                        const char *const *group_by, size_t ngroup_by, sp_arena *a,
                        store_timeseries_set *out, sp_err *err)
{
    CHECK_STORE(s, err);
    CHECK_OUT(a, out, err);
    memset(out, 0, sizeof *out);
    if (!q)
        return sp_fail(err, SP_EINTERNAL, "store_select_series: no query");
    if (step_ns <= 0)
        return sp_fail(err, SP_EINVAL, "select series: step must be positive (got %" PRId64 ")",
                       step_ns);
    if (ngroup_by && !group_by)
        return sp_fail(err, SP_EINTERNAL, "store_select_series: ngroup_by without group_by");
    if (!s->ops->select_series)
        return unimpl(s, err, "selecting time series");
    return s->ops->select_series(s, q, step_ns, group_by, ngroup_by, a, out, err);
}

int store_span_stacks(store *s, const store_query *q, const uint8_t (*span_ids)[8],
                      size_t nspan_ids, sp_arena *a, store_stacks *out, sp_err *err)
{
    CHECK_STORE(s, err);
    CHECK_OUT(a, out, err);
    memset(out, 0, sizeof *out);
    if (!q)
        return sp_fail(err, SP_EINTERNAL, "store_span_stacks: no query");
    if (nspan_ids && !span_ids)
        return sp_fail(err, SP_EINTERNAL, "store_span_stacks: nspan_ids without span_ids");
    if (!s->ops->span_stacks)
        return unimpl(s, err, "span profiles");
    return s->ops->span_stacks(s, q, span_ids, nspan_ids, a, out, err);
}

int store_span_totals(store *s, const store_query *q, const uint8_t (*span_ids)[8],
                      size_t nspan_ids, store_span_total *out, sp_err *err)
{
    CHECK_STORE(s, err);
    if (!q || (nspan_ids && (!span_ids || !out)))
        return sp_fail(err, SP_EINTERNAL, "store_span_totals: no query, span ids or answer");
    memset(out, 0, nspan_ids * sizeof *out);
    if (s->ops->span_totals)
        return s->ops->span_totals(s, q, span_ids, nspan_ids, out, err);
    if (!s->ops->span_stacks)
        return unimpl(s, err, "span profiles");
    /* The backend has no cheap form: each span's stacks, counted. */
    int rc = 0;
    for (size_t i = 0; i < nspan_ids && !rc; i++) {
        sp_arena *a = sp_arena_new(0);
        store_stacks st;
        if (!a)
            return sp_fail(err, SP_ENOMEM, "out of memory");
        rc = store_span_stacks(s, q, span_ids + i, 1, a, &st, err);
        for (size_t k = 0; !rc && k < st.nstacks; k++)
            if (st.stacks[k].value) {
                out[i].value = sp_sat_add(out[i].value, st.stacks[k].value);
                out[i].stacks++;
            }
        sp_arena_free(a);
    }
    return rc;
}

int store_trace_spans(store *s, const char *tenant, const uint8_t trace_id[16], sp_arena *a,
                      store_spans *out, sp_err *err)
{
    CHECK_STORE(s, err);
    CHECK_OUT(a, out, err);
    memset(out, 0, sizeof *out);
    if (!trace_id)
        return sp_fail(err, SP_EINTERNAL, "store_trace_spans: no trace id");
    if (!s->ops->trace_spans)
        return unimpl(s, err, "trace lookups");
    return s->ops->trace_spans(s, tenant, trace_id, a, out, err);
}

int store_span_services(store *s, const store_query *q, sp_arena *a, store_strings *out,
                        sp_err *err)
{
    CHECK_STORE(s, err);
    CHECK_OUT(a, out, err);
    memset(out, 0, sizeof *out);
    if (!s->ops->span_services)
        return unimpl(s, err, "listing services");
    return s->ops->span_services(s, q, a, out, err);
}

int store_find_spans(store *s, const store_query *q, const store_span_filter *f, sp_arena *a,
                     store_spans *out, sp_err *err)
{
    CHECK_STORE(s, err);
    CHECK_OUT(a, out, err);
    memset(out, 0, sizeof *out);
    if (!q || !f)
        return sp_fail(err, SP_EINTERNAL, "store_find_spans: no query or filter");
    if (!s->ops->find_spans)
        return unimpl(s, err, "finding spans");
    return s->ops->find_spans(s, q, f, a, out, err);
}

int store_get_profile_stats(store *s, const char *tenant, store_profile_stats *out, sp_err *err)
{
    CHECK_STORE(s, err);
    if (!out)
        return sp_fail(err, SP_EINTERNAL, "store_get_profile_stats: no output");
    memset(out, 0, sizeof *out);
    if (!s->ops->profile_stats)
        return unimpl(s, err, "profile statistics");
    return s->ops->profile_stats(s, tenant, out, err);
}

int store_analyze_query(store *s, const store_query *q, store_query_impact *out, sp_err *err)
{
    CHECK_STORE(s, err);
    if (!q || !out)
        return sp_fail(err, SP_EINTERNAL, "store_analyze_query: no query or output");
    memset(out, 0, sizeof *out);
    if (!s->ops->query_impact)
        return unimpl(s, err, "query analysis");
    return s->ops->query_impact(s, q, out, err);
}

int store_service_traces(store *s, const store_query *q, const char *service, size_t limit,
                         sp_arena *a, store_trace_ids *out, sp_err *err)
{
    CHECK_STORE(s, err);
    CHECK_OUT(a, out, err);
    memset(out, 0, sizeof *out);
    if (!service)
        return sp_fail(err, SP_EINTERNAL, "store_service_traces: no service");
    if (!s->ops->service_traces)
        return unimpl(s, err, "listing traces");
    return s->ops->service_traces(s, q, service, limit, a, out, err);
}

int store_span_get(store *s, const char *tenant, const uint8_t span_id[8], sp_arena *a,
                   sp_span *out, sp_err *err)
{
    CHECK_STORE(s, err);
    CHECK_OUT(a, out, err);
    memset(out, 0, sizeof *out);
    if (!span_id)
        return sp_fail(err, SP_EINTERNAL, "store_span_get: no span id");
    if (!s->ops->span_get)
        return unimpl(s, err, "span lookups");
    return s->ops->span_get(s, tenant, span_id, a, out, err);
}

int store_retention_run(store *s, int64_t now_ns, sp_err *err)
{
    CHECK_STORE(s, err);
    if (!s->ops->retention_run)
        return unimpl(s, err, "retention");
    return s->ops->retention_run(s, now_ns, err);
}

void store_stats_get(store *s, store_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (s && s->ops && s->ops->stats)
        s->ops->stats(s, out);
}

const char *store_frame_name(char *buf, size_t n, const char *function, const char *frame_type,
                             uint64_t address, const char *mapping_file)
{
    if (buf && n && function && *function) {
        snprintf(buf, n, "%s", function);
        return buf;
    }
    return sp_frame_name(buf, n, frame_type, address, mapping_file);
}
