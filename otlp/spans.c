#include "spans.h"
#include "../common/metrics.h"
#include "span_extras.h"

#include <stdlib.h>
#include <string.h>

typedef Opentelemetry__Proto__Common__V1__KeyValue kv_t;

static int int_attr(kv_t **kvs, size_t n, const char *key, int64_t *out)
{
    for (size_t i = 0; i < n; i++) {
        const kv_t *kv = kvs[i];
        if (!kv->key || strcmp(kv->key, key) != 0 || !kv->value)
            continue;
        if (kv->value->value_case == OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE) {
            *out = kv->value->int_value;
            return 1;
        }
        if (kv->value->value_case ==
                OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE &&
            kv->value->string_value) {
            char *end;
            long long v = strtoll(kv->value->string_value, &end, 10);
            if (!*end && end != kv->value->string_value) {
                *out = v;
                return 1;
            }
        }
    }
    return 0;
}

static const char *str_attr(kv_t **kvs, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (kvs[i]->key && strcmp(kvs[i]->key, key) == 0 && kvs[i]->value &&
            kvs[i]->value->value_case ==
                OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE)
            return kvs[i]->value->string_value;
    return NULL;
}

int otlp_traces_convert(const otlp_traces_req *req, const otlp_verdict *v, sp_batch *out,
                        sp_err *err)
{
    size_t total = v ? v->total - v->bad : 0;
    if (!v)
        for (size_t i = 0; i < req->n_resource_spans; i++)
            for (size_t j = 0; j < req->resource_spans[i]->n_scope_spans; j++)
                total += req->resource_spans[i]->scope_spans[j]->n_spans;
    if (!total)
        return 0;
    sp_span *spans = sp_arena_alloc(out->arena, (out->nspans + total) * sizeof *spans);
    if (!spans)
        return sp_fail(err, SP_ETOOBIG, "too many spans for the request budget");
    if (out->nspans)
        memcpy(spans, out->spans, out->nspans * sizeof *spans);
    size_t item = 0, n = out->nspans;
    uint64_t cut = 0; /* attributes, events and links cut to fit the extras cap */
    for (size_t i = 0; i < req->n_resource_spans; i++) {
        const Opentelemetry__Proto__Trace__V1__ResourceSpans *rs = req->resource_spans[i];
        kv_t **rattrs = rs->resource ? rs->resource->attributes : NULL;
        size_t nr = rs->resource ? rs->resource->n_attributes : 0;
        const char *service = str_attr(rattrs, nr, "service.name");
        if (!service || !*service)
            service = "unknown_service";
        int64_t pid = 0, rtid = 0;
        int_attr(rattrs, nr, "process.pid", &pid);
        int_attr(rattrs, nr, "thread.id", &rtid);
        sp_proc_ident ident = {{0}};
        for (int k = 0; k < SP_IDENT_KEYS; k++) {
            const char *iv = str_attr(rattrs, nr, sp_ident_attrs[k]);
            if (iv && *iv)
                ident.key[k] = sp_ident_hash(iv, strlen(iv));
        }
        for (size_t j = 0; j < rs->n_scope_spans; j++) {
            const Opentelemetry__Proto__Trace__V1__ScopeSpans *ss = rs->scope_spans[j];
            otlp_extras_head head;
            /* A spent arena leaves the head empty: spans keep their own extras. */
            otlp_extras_head_make(rs->resource, ss->scope, OTLP_SPAN_EXTRAS_CAP, out->arena, &head);
            cut += ss->n_spans ? head.cut : 0;
            for (size_t k = 0; k < ss->n_spans; k++, item++) {
                if (v && v->is_bad && item < v->total && v->is_bad[item])
                    continue;
                const Opentelemetry__Proto__Trace__V1__Span *s = ss->spans[k];
                if (s->trace_id.len != 16 || s->span_id.len != 8 || n >= out->nspans + total)
                    continue; /* validation rejects these; never trust a length twice */
                sp_span *o = &spans[n++];
                memset(o, 0, sizeof *o);
                memcpy(o->trace_id, s->trace_id.data, 16);
                memcpy(o->span_id, s->span_id.data, 8);
                if (s->parent_span_id.len == 8)
                    memcpy(o->parent_span_id, s->parent_span_id.data, 8);
                o->service = service;
                o->name = s->name ? s->name : "";
                o->start_ns = s->start_time_unix_nano;
                o->end_ns = s->end_time_unix_nano;
                o->pid = pid;
                o->tid = rtid;
                o->ident = ident;
                int_attr(s->attributes, s->n_attributes, "thread.id", &o->tid);
                /* Never fails the span: without room it is indexed without its extras. */
                otlp_span_extras(&head, s, OTLP_SPAN_EXTRAS_CAP, out->arena, &o->extras,
                                 &o->extras_len, &cut);
            }
        }
    }
    out->spans = spans;
    out->nspans = n;
    if (cut)
        sp_metrics_gauge_add("span_attributes_truncated_total", (int64_t)cut);
    return 0;
}
