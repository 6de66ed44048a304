/* otlp/span_extras (what the span index keeps of a span besides its row) and query/span_extras
 * (that blob as the JSON fields of /api/v1/traces/{id}): every AnyValue type round-trips with
 * its JSON type, the cap cuts whole items in priority order and says so, and a damaged blob
 * answers "nothing kept", counted, never a crash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/metrics.h"
#include "otlp/span_extras.h"
#include "query/span_extras.h"
#include "wire/pb.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef Opentelemetry__Proto__Common__V1__AnyValue anyvalue_t;
typedef Opentelemetry__Proto__Common__V1__KeyValue kv_t;
typedef Opentelemetry__Proto__Trace__V1__Span span_t;

/* ---- building OTLP values in an arena ------------------------------------------------------ */

static sp_arena *A;

static anyvalue_t *val(void)
{
    anyvalue_t *v = sp_arena_calloc(A, 1, sizeof *v);
    opentelemetry__proto__common__v1__any_value__init(v);
    return v;
}

static anyvalue_t *vstr(const char *s)
{
    anyvalue_t *v = val();
    v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
    v->string_value = (char *)s;
    return v;
}

static anyvalue_t *vint(int64_t i)
{
    anyvalue_t *v = val();
    v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
    v->int_value = i;
    return v;
}

static anyvalue_t *vdbl(double d)
{
    anyvalue_t *v = val();
    v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE;
    v->double_value = d;
    return v;
}

static anyvalue_t *vbool(int b)
{
    anyvalue_t *v = val();
    v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE;
    v->bool_value = b;
    return v;
}

static anyvalue_t *vbytes(const uint8_t *p, size_t n)
{
    anyvalue_t *v = val();
    v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BYTES_VALUE;
    v->bytes_value.data = (uint8_t *)p;
    v->bytes_value.len = n;
    return v;
}

static anyvalue_t *varr(size_t n, anyvalue_t **vs)
{
    anyvalue_t *v = val();
    Opentelemetry__Proto__Common__V1__ArrayValue *a = sp_arena_calloc(A, 1, sizeof *a);
    opentelemetry__proto__common__v1__array_value__init(a);
    a->n_values = n;
    a->values = sp_arena_memdup(A, vs, n * sizeof *vs);
    v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE;
    v->array_value = a;
    return v;
}

static kv_t *kv(const char *k, anyvalue_t *v)
{
    kv_t *p = sp_arena_calloc(A, 1, sizeof *p);
    opentelemetry__proto__common__v1__key_value__init(p);
    p->key = (char *)k;
    p->value = v;
    return p;
}

static anyvalue_t *vkvl(size_t n, kv_t **kvs)
{
    anyvalue_t *v = val();
    Opentelemetry__Proto__Common__V1__KeyValueList *l = sp_arena_calloc(A, 1, sizeof *l);
    opentelemetry__proto__common__v1__key_value_list__init(l);
    l->n_values = n;
    l->values = sp_arena_memdup(A, kvs, n * sizeof *kvs);
    v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE;
    v->kvlist_value = l;
    return v;
}

static kv_t **kvs(size_t n, ...)
{
    kv_t **out = sp_arena_alloc(A, (n + 1) * sizeof *out);
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++)
        out[i] = va_arg(ap, kv_t *);
    va_end(ap);
    return out;
}

static span_t *mkspan(void)
{
    span_t *s = sp_arena_calloc(A, 1, sizeof *s);
    opentelemetry__proto__trace__v1__span__init(s);
    static uint8_t tid[16] = {1}, sid[8] = {2};
    s->trace_id.data = tid;
    s->trace_id.len = 16;
    s->span_id.data = sid;
    s->span_id.len = 8;
    s->name = "GET /";
    s->start_time_unix_nano = 1700000000000000000ULL;
    s->end_time_unix_nano = 1700000000500000000ULL;
    return s;
}

/* ---- reading the answer -------------------------------------------------------------------- */

/* The JSON fields query_span_extras_json() appends, as one object; rc gets its return. */
static json_t *answer(const uint8_t *b, size_t n, int *rc)
{
    sp_buf o;
    sp_buf_init(&o, 0);
    sp_buf_append(&o, "{\"x\":0", 6);
    *rc = query_span_extras_json(&o, b, n, A);
    sp_buf_append(&o, "}", 1);
    json_error_t e;
    json_t *j = json_loadb((const char *)o.data, o.len, 0, &e);
    if (!j)
        fail_msg("not JSON (%s): %.*s", e.text, (int)o.len, o.data);
    sp_buf_free(&o);
    return j;
}

static const uint8_t *encode(const Opentelemetry__Proto__Resource__V1__Resource *res,
                             const Opentelemetry__Proto__Common__V1__InstrumentationScope *sc,
                             const span_t *s, size_t cap, uint32_t *len, uint64_t *cut)
{
    otlp_extras_head h;
    assert_int_equal(otlp_extras_head_make(res, sc, cap, A, &h), 0);
    *cut = h.cut;
    const uint8_t *b;
    int rc = otlp_span_extras(&h, s, cap, A, &b, len, cut);
    assert_int_equal(rc, 0);
    assert_non_null(b);
    assert_true(*len <= cap);
    return b;
}

static int64_t metric(const char *name)
{
    sp_buf o;
    sp_buf_init(&o, 0);
    sp_metrics_render(&o);
    sp_buf_append(&o, "", 1);
    char key[128];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *p = strstr((const char *)o.data, key);
    int64_t v = p ? strtoll(p + strlen(key), NULL, 10) : 0;
    sp_buf_free(&o);
    return v;
}

static int setup(void **state)
{
    A = sp_arena_new(0);
    return 0;
}

static int teardown(void **state)
{
    sp_arena_free(A);
    return 0;
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void every_anyvalue_type_round_trips_with_its_json_type(void **state)
{
    static const uint8_t raw[] = {0, 1, 2, 0xff};
    span_t *s = mkspan();
    s->kind = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_CLIENT;
    anyvalue_t *arr[] = {vint(1), vstr("x"), vbool(1), vdbl(0.5)};
    kv_t *inner[] = {kv("c", vstr("d"))};
    kv_t *kl[] = {kv("a", vint(1)), kv("b", vkvl(1, inner))};
    s->attributes = kvs(14, kv("s", vstr("héllo \"q\"")), kv("t", vbool(1)), kv("f", vbool(0)),
                        kv("i", vint(42)), kv("neg", vint(-(INT64_C(1) << 53))),
                        kv("big", vint((INT64_C(1) << 53) + 1)), kv("min", vint(INT64_MIN)),
                        kv("d", vdbl(0.25)), kv("whole", vdbl(3.0)), kv("nan", vdbl(NAN)),
                        kv("b", vbytes(raw, sizeof raw)), kv("arr", varr(4, arr)),
                        kv("map", vkvl(2, kl)), kv("unset", NULL));
    s->n_attributes = 14;
    Opentelemetry__Proto__Trace__V1__Status st = OPENTELEMETRY__PROTO__TRACE__V1__STATUS__INIT;
    st.code = OPENTELEMETRY__PROTO__TRACE__V1__STATUS__STATUS_CODE__STATUS_CODE_ERROR;
    st.message = "boom";
    s->status = &st;
    Opentelemetry__Proto__Trace__V1__Span__Event ev =
        OPENTELEMETRY__PROTO__TRACE__V1__SPAN__EVENT__INIT;
    ev.name = "retry";
    ev.time_unix_nano = 1700000000100000000ULL;
    ev.attributes = kvs(1, kv("n", vint(2)));
    ev.n_attributes = 1;
    Opentelemetry__Proto__Trace__V1__Span__Event *evs[] = {&ev};
    s->events = evs;
    s->n_events = 1;
    static uint8_t ltid[16] = {0xab}, lsid[8] = {0xcd};
    Opentelemetry__Proto__Trace__V1__Span__Link ln =
        OPENTELEMETRY__PROTO__TRACE__V1__SPAN__LINK__INIT;
    ln.trace_id.data = ltid;
    ln.trace_id.len = 16;
    ln.span_id.data = lsid;
    ln.span_id.len = 8;
    ln.attributes = kvs(1, kv("why", vstr("follows")));
    ln.n_attributes = 1;
    Opentelemetry__Proto__Trace__V1__Span__Link *lns[] = {&ln};
    s->links = lns;
    s->n_links = 1;
    Opentelemetry__Proto__Resource__V1__Resource res =
        OPENTELEMETRY__PROTO__RESOURCE__V1__RESOURCE__INIT;
    res.attributes = kvs(2, kv("service.name", vstr("api")), kv("process.pid", vint(7)));
    res.n_attributes = 2;
    Opentelemetry__Proto__Common__V1__InstrumentationScope sc =
        OPENTELEMETRY__PROTO__COMMON__V1__INSTRUMENTATION_SCOPE__INIT;
    sc.name = "lib";
    sc.version = "1.2";

    uint32_t len;
    uint64_t cut;
    const uint8_t *b = encode(&res, &sc, s, OTLP_SPAN_EXTRAS_CAP, &len, &cut);
    assert_int_equal(cut, 0);
    int rc;
    json_t *j = answer(b, len, &rc);
    assert_int_equal(rc, 0);
    json_t *at = json_object_get(j, "attributes");
    assert_string_equal(json_string_value(json_object_get(at, "s")), "héllo \"q\"");
    assert_true(json_is_true(json_object_get(at, "t")));
    assert_true(json_is_false(json_object_get(at, "f")));
    assert_true(json_is_integer(json_object_get(at, "i")));
    assert_int_equal(json_integer_value(json_object_get(at, "i")), 42);
    assert_int_equal(json_integer_value(json_object_get(at, "neg")), -(INT64_C(1) << 53));
    /* Past ±2^53 an int is a decimal string, so no digit is lost. */
    assert_string_equal(json_string_value(json_object_get(at, "big")), "9007199254740993");
    assert_string_equal(json_string_value(json_object_get(at, "min")), "-9223372036854775808");
    assert_true(json_is_real(json_object_get(at, "d")));
    assert_true(json_real_value(json_object_get(at, "d")) == 0.25);
    assert_true(json_is_real(json_object_get(at, "whole"))); /* 3.0 stays a double */
    assert_string_equal(json_string_value(json_object_get(at, "nan")), "NaN");
    assert_string_equal(json_string_value(json_object_get(at, "b")), "AAEC/w==");
    json_t *a = json_object_get(at, "arr");
    assert_int_equal(json_array_size(a), 4);
    assert_int_equal(json_integer_value(json_array_get(a, 0)), 1);
    assert_string_equal(json_string_value(json_array_get(a, 1)), "x");
    assert_true(json_is_true(json_array_get(a, 2)));
    assert_true(json_real_value(json_array_get(a, 3)) == 0.5);
    json_t *m = json_object_get(at, "map");
    assert_int_equal(json_integer_value(json_object_get(m, "a")), 1);
    assert_string_equal(json_string_value(json_object_get(json_object_get(m, "b"), "c")), "d");
    assert_true(json_is_null(json_object_get(at, "unset")));
    assert_int_equal(json_object_size(at), 14);

    assert_string_equal(json_string_value(json_object_get(j, "kind")), "client");
    json_t *sj = json_object_get(j, "status");
    assert_string_equal(json_string_value(json_object_get(sj, "code")), "error");
    assert_string_equal(json_string_value(json_object_get(sj, "message")), "boom");
    json_t *e = json_array_get(json_object_get(j, "events"), 0);
    assert_string_equal(json_string_value(json_object_get(e, "name")), "retry");
    assert_string_equal(json_string_value(json_object_get(e, "time_unix_nano")),
                        "1700000000100000000");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(e, "attributes"), "n")), 2);
    json_t *l = json_array_get(json_object_get(j, "links"), 0);
    assert_string_equal(json_string_value(json_object_get(l, "trace_id")),
                        "ab000000000000000000000000000000");
    assert_string_equal(json_string_value(json_object_get(l, "span_id")), "cd00000000000000");
    json_t *r = json_object_get(j, "resource");
    assert_string_equal(json_string_value(json_object_get(r, "service.name")), "api");
    assert_int_equal(json_integer_value(json_object_get(r, "process.pid")), 7);
    json_t *scj = json_object_get(j, "scope");
    assert_string_equal(json_string_value(json_object_get(scj, "name")), "lib");
    assert_string_equal(json_string_value(json_object_get(scj, "version")), "1.2");
    json_decref(j);
}

/* The blob holds nothing the row has: ids, name and times are not stored twice. */
static void blob_leaves_out_what_the_row_has(void **state)
{
    span_t *s = mkspan();
    otlp_extras_head h;
    assert_int_equal(otlp_extras_head_make(NULL, NULL, OTLP_SPAN_EXTRAS_CAP, A, &h), 0);
    const uint8_t *b;
    uint32_t len;
    uint64_t cut = 0;
    assert_int_equal(otlp_span_extras(&h, s, OTLP_SPAN_EXTRAS_CAP, A, &b, &len, &cut), 0);
    assert_true(len <= 8); /* two empty wrappers around an empty span */
    int rc;
    json_t *j = answer(b, len, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(json_string_value(json_object_get(j, "kind")), "unspecified");
    assert_int_equal(json_object_size(json_object_get(j, "attributes")), 0);
    assert_true(json_is_null(json_object_get(j, "scope")));
    json_decref(j);
}

/* Past the cap whole items are cut, span attributes kept first, then events, then links; the
 * stored dropped counts and the caller's count say how many. */
static void cap_cuts_whole_items_in_priority_order(void **state)
{
    enum { N = 100 };
    char *val100 = sp_arena_alloc(A, 101);
    memset(val100, 'v', 100);
    val100[100] = 0;
    span_t *s = mkspan();
    s->attributes = sp_arena_alloc(A, N * sizeof *s->attributes);
    for (int i = 0; i < N; i++) {
        char *k = sp_arena_alloc(A, 8);
        snprintf(k, 8, "k%03d", i);
        s->attributes[i] = kv(k, vstr(val100));
    }
    s->n_attributes = N;
    Opentelemetry__Proto__Trace__V1__Span__Event ev =
        OPENTELEMETRY__PROTO__TRACE__V1__SPAN__EVENT__INIT;
    char *ename = sp_arena_alloc(A, 201); /* larger than what the attributes leave */
    memset(ename, 'e', 200);
    ename[200] = 0;
    ev.name = ename;
    Opentelemetry__Proto__Trace__V1__Span__Event *evs[] = {&ev, &ev};
    s->events = evs;
    s->n_events = 2;
    s->dropped_attributes_count = 3; /* the sender's own */
    const size_t cap = 4096;
    uint32_t len;
    uint64_t cut;
    const uint8_t *b = encode(NULL, NULL, s, cap, &len, &cut);
    assert_true(cut > 0);
    int rc;
    json_t *j = answer(b, len, &rc);
    assert_int_equal(rc, 0);
    json_t *at = json_object_get(j, "attributes");
    size_t kept = json_object_size(at);
    assert_true(kept > 10 && kept < N);
    assert_non_null(json_object_get(at, "k000")); /* earlier attributes first */
    assert_null(json_object_get(at, "k099"));
    json_t *d = json_object_get(j, "dropped");
    assert_int_equal(json_integer_value(json_object_get(d, "attributes")), 3 + (N - kept));
    /* The attributes took the room: the events were cut after them (a smaller one would have
     * fitted in what is left). */
    assert_int_equal(json_array_size(json_object_get(j, "events")), 0);
    assert_int_equal(json_integer_value(json_object_get(d, "events")), 2);
    assert_int_equal(cut, (N - kept) + 2);
    json_decref(j);

    /* The resource gets at most half the cap, cut the same way and counted by the head. */
    Opentelemetry__Proto__Resource__V1__Resource res =
        OPENTELEMETRY__PROTO__RESOURCE__V1__RESOURCE__INIT;
    res.attributes = s->attributes;
    res.n_attributes = N;
    otlp_extras_head h;
    assert_int_equal(otlp_extras_head_make(&res, NULL, cap, A, &h), 0);
    assert_true(h.cut > 0 && h.nres <= cap / 2);
    s->n_attributes = 1;
    s->n_events = 0;
    uint64_t scut = 0;
    assert_int_equal(otlp_span_extras(&h, s, cap, A, &b, &len, &scut), 0);
    assert_int_equal(scut, 0);
    j = answer(b, len, &rc);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(j, "dropped"), "resource_attributes")),
        h.cut);
    assert_int_equal(json_object_size(json_object_get(j, "resource")), N - h.cut);
    json_decref(j);
}

/* A status message larger than the cap: no blob (the span is still indexed), all counted. */
static void fixed_part_past_the_cap_keeps_nothing(void **state)
{
    span_t *s = mkspan();
    char *msg = sp_arena_alloc(A, 5001);
    memset(msg, 'm', 5000);
    msg[5000] = 0;
    Opentelemetry__Proto__Trace__V1__Status st = OPENTELEMETRY__PROTO__TRACE__V1__STATUS__INIT;
    st.message = msg;
    s->status = &st;
    s->attributes = kvs(2, kv("a", vint(1)), kv("b", vint(2)));
    s->n_attributes = 2;
    otlp_extras_head h;
    assert_int_equal(otlp_extras_head_make(NULL, NULL, 1024, A, &h), 0);
    const uint8_t *b = (const uint8_t *)"x";
    uint32_t len = 9;
    uint64_t cut = 0;
    assert_int_equal(otlp_span_extras(&h, s, 1024, A, &b, &len, &cut), SP_ETOOBIG);
    assert_null(b);
    assert_int_equal(len, 0);
    assert_int_equal(cut, 2);
}

static void assert_nothing_kept(json_t *j)
{
    assert_true(json_is_null(json_object_get(j, "kind")));
    assert_true(json_is_null(json_object_get(j, "status")));
    assert_int_equal(json_object_size(json_object_get(j, "attributes")), 0);
    assert_int_equal(json_object_size(json_object_get(j, "resource")), 0);
    assert_int_equal(json_array_size(json_object_get(j, "events")), 0);
    assert_int_equal(json_array_size(json_object_get(j, "links")), 0);
}

/* Spans stored before schema 5 have no blob: no attributes, not counted as damage. */
static void no_blob_reads_as_nothing_kept(void **state)
{
    int64_t before = metric("spanprof_span_attributes_damaged_total");
    int rc;
    json_t *j = answer(NULL, 0, &rc);
    assert_int_equal(rc, 0);
    assert_nothing_kept(j);
    json_decref(j);
    assert_int_equal(metric("spanprof_span_attributes_damaged_total"), before);
}

/* Bytes from disk that are not what the writer wrote: every prefix of a good blob, garbage, a
 * nesting bomb, and well-formed protobuf of the wrong shape. Each answers "nothing kept" with
 * SP_EINVAL and is counted; none crashes. */
static void damaged_blobs_answer_nothing_kept_and_are_counted(void **state)
{
    span_t *s = mkspan();
    s->attributes = kvs(2, kv("a", vstr("some text")), kv("b", vint(5)));
    s->n_attributes = 2;
    Opentelemetry__Proto__Resource__V1__Resource res =
        OPENTELEMETRY__PROTO__RESOURCE__V1__RESOURCE__INIT;
    res.attributes = kvs(1, kv("service.name", vstr("api")));
    res.n_attributes = 1;
    uint32_t len;
    uint64_t cut;
    const uint8_t *good = encode(&res, NULL, s, OTLP_SPAN_EXTRAS_CAP, &len, &cut);
    int64_t before = metric("spanprof_span_attributes_damaged_total");
    int64_t damaged = 0;
    for (uint32_t n = 1; n < len; n++) {
        int rc;
        json_t *j = answer(good, n, &rc);
        assert_true(rc == 0 || rc == SP_EINVAL);
        if (rc == SP_EINVAL) {
            assert_nothing_kept(j);
            damaged++;
        }
        json_decref(j);
    }
    assert_true(damaged > 0);
    static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x80};
    /* A nesting bomb: ResourceSpans.resource(1) { Resource.attributes(1) { KeyValue.value(2)
     * { AnyValue.array_value(5) { ArrayValue.values(1) { ... } } } } } far past the limit. */
    enum { DEPTH = 2000 };
    uint8_t *bomb = sp_arena_alloc(A, DEPTH * 2 + 16);
    size_t bn = 0;
    for (int i = 0; i < DEPTH; i++) { /* lengths lie (0x7f): the depth check fails first */
        bomb[bn++] = i % 2 ? 0x0a : 0x2a;
        bomb[bn++] = 0x7f;
    }
    /* Two spans in one scope: well-formed protobuf, not what the writer writes. */
    static const uint8_t two[] = {0x12, 0x04, 0x12, 0x00, 0x12, 0x00};
    struct {
        const uint8_t *b;
        size_t n;
    } bad[] = {{garbage, sizeof garbage}, {bomb, bn}, {two, sizeof two}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc;
        json_t *j = answer(bad[i].b, bad[i].n, &rc);
        assert_int_equal(rc, SP_EINVAL);
        assert_nothing_kept(j);
        json_decref(j);
        damaged++;
    }
    assert_int_equal(metric("spanprof_span_attributes_damaged_total"), before + damaged);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(every_anyvalue_type_round_trips_with_its_json_type, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(blob_leaves_out_what_the_row_has, setup, teardown),
        cmocka_unit_test_setup_teardown(cap_cuts_whole_items_in_priority_order, setup, teardown),
        cmocka_unit_test_setup_teardown(fixed_part_past_the_cap_keeps_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(no_blob_reads_as_nothing_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(damaged_blobs_answer_nothing_kept_and_are_counted, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
