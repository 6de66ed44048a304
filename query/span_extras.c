/* A span's extras blob as JSON fields (see span_extras.h). */
#include "span_extras.h"
#include "../common/err.h"
#include "../common/log.h"
#include "../common/metrics.h"
#include "../wire/pb.h"
#include "../wire/pbjson.h"
#include "opentelemetry/proto/trace/v1/trace.pb-c.h"

#include <inttypes.h>
#include <string.h>

#define PUTS(o, lit) sp_buf_append((o), (lit), sizeof(lit) - 1)

typedef Opentelemetry__Proto__Common__V1__AnyValue anyvalue_t;
typedef Opentelemetry__Proto__Common__V1__KeyValue kv_t;

/* Integers beyond ±2^53 lose digits as JSON numbers in JavaScript (the page) and many parsers. */
#define JSON_SAFE_INT (INT64_C(1) << 53)

static int put_kvs(sp_buf *o, kv_t *const *kvs, size_t n);

static int put_value(sp_buf *o, const anyvalue_t *v)
{
    if (!v)
        return PUTS(o, "null");
    switch (v->value_case) {
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE:
        return v->string_value ? wire_json_string(o, v->string_value, strlen(v->string_value))
                               : PUTS(o, "\"\"");
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE:
        return v->bool_value ? PUTS(o, "true") : PUTS(o, "false");
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE:
        if (v->int_value >= -JSON_SAFE_INT && v->int_value <= JSON_SAFE_INT)
            return sp_buf_printf(o, "%" PRId64, v->int_value);
        return sp_buf_printf(o, "\"%" PRId64 "\"", v->int_value);
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE: {
        size_t at = o->len;
        int rc = wire_json_double(o, v->double_value);
        /* 3.0 is written "3": keep it a double for readers that tell the two apart. */
        if (!rc && o->len > at && !memchr(o->data + at, '.', o->len - at) &&
            !memchr(o->data + at, 'e', o->len - at) && !memchr(o->data + at, '"', o->len - at))
            rc = PUTS(o, ".0");
        return rc;
    }
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BYTES_VALUE:
        return wire_json_base64(o, v->bytes_value.data, v->bytes_value.len);
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE: {
        int rc = PUTS(o, "[");
        const Opentelemetry__Proto__Common__V1__ArrayValue *arr = v->array_value;
        for (size_t i = 0; arr && i < arr->n_values && !rc; i++)
            rc = (i ? PUTS(o, ",") : 0) | put_value(o, arr->values[i]);
        return rc | PUTS(o, "]");
    }
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE:
        return v->kvlist_value ? put_kvs(o, v->kvlist_value->values, v->kvlist_value->n_values)
                               : PUTS(o, "{}");
    default: /* unset, or a profiles-only string_value_strindex */
        return PUTS(o, "null");
    }
}

/* A KeyValue list as one JSON object (a repeated key: the last one wins, as in OTLP readers). */
static int put_kvs(sp_buf *o, kv_t *const *kvs, size_t n)
{
    int rc = PUTS(o, "{");
    for (size_t i = 0; i < n && !rc; i++) {
        const char *k = kvs[i]->key ? kvs[i]->key : "";
        rc = (i ? PUTS(o, ",") : 0) | wire_json_string(o, k, strlen(k)) | PUTS(o, ":") |
             put_value(o, kvs[i]->value);
    }
    return rc | PUTS(o, "}");
}

static int put_str(sp_buf *o, const char *s)
{
    return s ? wire_json_string(o, s, strlen(s)) : PUTS(o, "\"\"");
}

static int put_kind(sp_buf *o, int kind)
{
    /* trace.proto Span.SpanKind, without the SPAN_KIND_ prefix, lower case. */
    static const char *const names[] = {"unspecified", "internal", "server",
                                        "client",      "producer", "consumer"};
    if (kind >= 0 && kind < (int)(sizeof names / sizeof names[0]))
        return sp_buf_printf(o, ",\"kind\":\"%s\"", names[kind]);
    return sp_buf_printf(o, ",\"kind\":%d", kind);
}

static int put_status(sp_buf *o, const Opentelemetry__Proto__Trace__V1__Status *st)
{
    /* trace.proto Status.StatusCode: 0 unset, 1 ok, 2 error. */
    static const char *const names[] = {"unset", "ok", "error"};
    int code = st ? (int)st->code : 0;
    int rc = PUTS(o, ",\"status\":{\"code\":");
    rc |= code >= 0 && code < 3 ? sp_buf_printf(o, "\"%s\"", names[code])
                                : sp_buf_printf(o, "%d", code);
    return rc | PUTS(o, ",\"message\":") | put_str(o, st ? st->message : NULL) | PUTS(o, "}");
}

static int put_events(sp_buf *o, const Opentelemetry__Proto__Trace__V1__Span *s)
{
    int rc = PUTS(o, ",\"events\":[");
    for (size_t i = 0; i < s->n_events && !rc; i++) {
        const Opentelemetry__Proto__Trace__V1__Span__Event *e = s->events[i];
        rc = (i ? PUTS(o, ",") : 0) | PUTS(o, "{\"name\":") | put_str(o, e->name);
        /* Unix nanoseconds exceed 2^53: a string, as OTLP/JSON writes them. */
        rc |= sp_buf_printf(
            o, ",\"time_unix_nano\":\"%" PRIu64 "\",\"attributes\":", e->time_unix_nano);
        rc |= put_kvs(o, e->attributes, e->n_attributes) |
              sp_buf_printf(o, ",\"dropped_attributes_count\":%" PRIu32 "}",
                            e->dropped_attributes_count);
    }
    return rc | PUTS(o, "]");
}

static int put_hex(sp_buf *o, const ProtobufCBinaryData *b)
{
    static const char hex[] = "0123456789abcdef";
    int rc = PUTS(o, "\"");
    for (size_t i = 0; i < b->len && !rc; i++) {
        char two[2] = {hex[b->data[i] >> 4], hex[b->data[i] & 15]};
        rc = sp_buf_append(o, two, 2);
    }
    return rc | PUTS(o, "\"");
}

static int put_links(sp_buf *o, const Opentelemetry__Proto__Trace__V1__Span *s)
{
    int rc = PUTS(o, ",\"links\":[");
    for (size_t i = 0; i < s->n_links && !rc; i++) {
        const Opentelemetry__Proto__Trace__V1__Span__Link *l = s->links[i];
        rc = (i ? PUTS(o, ",") : 0) | PUTS(o, "{\"trace_id\":") | put_hex(o, &l->trace_id) |
             PUTS(o, ",\"span_id\":") | put_hex(o, &l->span_id) | PUTS(o, ",\"trace_state\":") |
             put_str(o, l->trace_state) | PUTS(o, ",\"attributes\":") |
             put_kvs(o, l->attributes, l->n_attributes) |
             sp_buf_printf(o, ",\"dropped_attributes_count\":%" PRIu32 "}",
                           l->dropped_attributes_count);
    }
    return rc | PUTS(o, "]");
}

static int put_none(sp_buf *o)
{
    return PUTS(o, ",\"kind\":null,\"status\":null,\"attributes\":{},\"events\":[],\"links\":[],"
                   "\"resource\":{},\"scope\":null,\"dropped\":{\"attributes\":0,\"events\":0,"
                   "\"links\":0,\"resource_attributes\":0}");
}

static int put_all(sp_buf *o, const Opentelemetry__Proto__Trace__V1__ResourceSpans *rs)
{
    const Opentelemetry__Proto__Trace__V1__ScopeSpans *ss = rs->scope_spans[0];
    const Opentelemetry__Proto__Trace__V1__Span *s = ss->spans[0];
    const Opentelemetry__Proto__Resource__V1__Resource *r = rs->resource;
    const Opentelemetry__Proto__Common__V1__InstrumentationScope *sc = ss->scope;
    int rc = put_kind(o, (int)s->kind) | put_status(o, s->status) | PUTS(o, ",\"attributes\":") |
             put_kvs(o, s->attributes, s->n_attributes) | put_events(o, s) | put_links(o, s);
    rc |= PUTS(o, ",\"resource\":") |
          (r ? put_kvs(o, r->attributes, r->n_attributes) : PUTS(o, "{}"));
    if (sc)
        rc |= PUTS(o, ",\"scope\":{\"name\":") | put_str(o, sc->name) | PUTS(o, ",\"version\":") |
              put_str(o, sc->version) | PUTS(o, ",\"attributes\":") |
              put_kvs(o, sc->attributes, sc->n_attributes) | PUTS(o, "}");
    else
        rc |= PUTS(o, ",\"scope\":null");
    return rc | sp_buf_printf(o,
                              ",\"dropped\":{\"attributes\":%" PRIu32 ",\"events\":%" PRIu32
                              ",\"links\":%" PRIu32 ",\"resource_attributes\":%" PRIu32 "}",
                              s->dropped_attributes_count, s->dropped_events_count,
                              s->dropped_links_count, r ? r->dropped_attributes_count : 0);
}

typedef struct pb_arena {
    sp_arena *a;
    int exhausted;
} pb_arena;

static void *pb_alloc(void *data, size_t size)
{
    pb_arena *p = data;
    void *r = sp_arena_alloc(p->a, size);
    if (!r)
        p->exhausted = 1;
    return r;
}

static void pb_free(void *data, void *ptr)
{
    (void)data;
    (void)ptr;
}

static int damaged(sp_buf *o, size_t n, const char *why)
{
    sp_metrics_gauge_add("span_attributes_damaged_total", 1);
    static sp_ratelimit rl;
    uint64_t held = 0;
    if (sp_ratelimit_ok(&rl, 10000, &held))
        sp_warn("msg=\"span extras damaged: answered without attributes\" bytes=%zu why=\"%s\" "
                "held_back=%llu",
                n, why, (unsigned long long)held);
    int rc = put_none(o);
    return rc ? rc : SP_EINVAL;
}

int query_span_extras_json(sp_buf *o, const uint8_t *b, size_t n, sp_arena *a)
{
    if (!b || !n)
        return put_none(o);
    const ProtobufCMessageDescriptor *d =
        &opentelemetry__proto__trace__v1__resource_spans__descriptor;
    sp_err err = {0};
    /* protobuf-c recurses once per nesting level: bound it first, as for requests. */
    if (wire_pb_check_depth(d, b, n, WIRE_PB_MAX_DEPTH, &err))
        return damaged(o, n, "not protobuf, or nested too deep");
    pb_arena pa = {a, 0};
    ProtobufCAllocator alloc = {pb_alloc, pb_free, &pa};
    Opentelemetry__Proto__Trace__V1__ResourceSpans *rs =
        opentelemetry__proto__trace__v1__resource_spans__unpack(&alloc, n, b);
    if (!rs && pa.exhausted)
        return SP_ETOOBIG;
    if (!rs)
        return damaged(o, n, "not a ResourceSpans");
    /* What otlp/span_extras.c writes: exactly one scope with exactly one span. */
    if (rs->n_scope_spans != 1 || rs->scope_spans[0]->n_spans != 1)
        return damaged(o, n, "not one scope with one span");
    return put_all(o, rs);
}
