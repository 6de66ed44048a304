/* wire/pbjson: the protobuf JSON mapping the Connect JSON codec uses, on the querier messages
 * Grafana and curl send: lowerCamelCase and proto names, int64 as strings or numbers, enums by
 * name or number, defaults left out, escaping, base64 bytes. */
#include <stdarg.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

/* tests/CMakeLists.txt links the module libraries up to storage-adapter only, so the unit under
 * test is compiled in here (jansson and the generated protos come with sp_otlp). */
#include "wire/pbjson.c"

#include "google/v1/profile.pb-c.h"
#include "opentelemetry/proto/profiles/v1development/profiles.pb-c.h"
#include "querier/v1/querier.pb-c.h"
#include "types/v1/types.pb-c.h"

static sp_arena *arena;

static ProtobufCMessage *decode_ok(const ProtobufCMessageDescriptor *d, const char *json)
{
    ProtobufCMessage *m = NULL;
    sp_err err = {0};
    if (wire_json_decode(d, (const uint8_t *)json, strlen(json), arena, &m, &err))
        fail_msg("%s: %s", json, err.msg);
    return m;
}

static sp_err decode_fails(const ProtobufCMessageDescriptor *d, const char *json)
{
    ProtobufCMessage *m = NULL;
    sp_err err = {0};
    int rc = wire_json_decode(d, (const uint8_t *)json, strlen(json), arena, &m, &err);
    if (rc != SP_EINVAL)
        fail_msg("%s: want SP_EINVAL, got %d", json, rc);
    return err;
}

static char *encode(const ProtobufCMessage *m)
{
    sp_buf b;
    sp_buf_init(&b, 0);
    assert_int_equal(wire_json_encode(m, &b), 0);
    char *s = sp_arena_strndup(arena, (const char *)b.data, b.len);
    sp_buf_free(&b);
    return s;
}

static void reads_camel_case_and_proto_names(void **state)
{
    (void)state;
    const Querier__V1__SelectMergeStacktracesRequest *r = (const void *)decode_ok(
        &querier__v1__select_merge_stacktraces_request__descriptor,
        "{\"profileTypeID\":\"process_cpu:cpu:nanoseconds:cpu:nanoseconds\","
        "\"labelSelector\":\"{service_name=\\\"api\\\"}\",\"start\":1700000000000,"
        "\"end\":\"1700000060000\",\"maxNodes\":\"16\",\"format\":\"PROFILE_FORMAT_TREE\","
        "\"spanSelector\":[\"0123456789abcdef\",\"fedcba9876543210\"],\"unknownField\":{\"x\":[1]},"
        "\"async\":null}");
    assert_string_equal(r->profile_typeid, "process_cpu:cpu:nanoseconds:cpu:nanoseconds");
    assert_string_equal(r->label_selector, "{service_name=\"api\"}");
    assert_int_equal(r->start, 1700000000000LL);
    assert_int_equal(r->end, 1700000060000LL);
    assert_int_equal(r->max_nodes, 16);
    assert_int_equal(r->format, QUERIER__V1__PROFILE_FORMAT__PROFILE_FORMAT_TREE);
    assert_int_equal(r->n_span_selector, 2);
    assert_string_equal(r->span_selector[1], "fedcba9876543210");
    assert_null(r->async);

    r = (const void *)decode_ok(&querier__v1__select_merge_stacktraces_request__descriptor,
                                "{\"profile_typeID\":\"a:b:c:d:e\",\"max_nodes\":3,\"format\":2,"
                                "\"span_selector\":[]}");
    assert_string_equal(r->profile_typeid, "a:b:c:d:e");
    assert_int_equal(r->max_nodes, 3);
    assert_int_equal(r->format, 2);
    assert_int_equal(r->n_span_selector, 0);
    assert_string_equal(r->label_selector, ""); /* absent = default */
}

static void reads_doubles_enums_and_nested_messages(void **state)
{
    (void)state;
    const Querier__V1__SelectSeriesRequest *r = (const void *)decode_ok(
        &querier__v1__select_series_request__descriptor,
        "{\"step\":\"15.5\",\"groupBy\":[\"service_name\"],\"aggregation\":"
        "\"TIME_SERIES_AGGREGATION_TYPE_AVERAGE\",\"stackTraceSelector\":{\"callSite\":[{\"name\":"
        "\"main\"}]},\"limit\":1e2}");
    assert_true(r->step == 15.5);
    assert_int_equal(r->n_group_by, 1);
    assert_int_equal(r->aggregation, 1);
    assert_non_null(r->stack_trace_selector);
    assert_int_equal(r->stack_trace_selector->n_call_site, 1);
    assert_string_equal(r->stack_trace_selector->call_site[0]->name, "main");
    assert_int_equal(r->limit, 100);
}

static void rejects_wrong_types_with_the_field_name(void **state)
{
    (void)state;
    const ProtobufCMessageDescriptor *d =
        &querier__v1__select_merge_stacktraces_request__descriptor;
    sp_err e = decode_fails(d, "{\"start\":\"yesterday\"}");
    assert_non_null(strstr(e.msg, "start"));
    e = decode_fails(d, "{\"maxNodes\":1.5}");
    assert_non_null(strstr(e.msg, "maxNodes"));
    e = decode_fails(d, "{\"format\":\"PROFILE_FORMAT_NOPE\"}");
    assert_non_null(strstr(e.msg, "PROFILE_FORMAT_NOPE"));
    e = decode_fails(d, "{\"spanSelector\":\"0123456789abcdef\"}");
    assert_non_null(strstr(e.msg, "spanSelector"));
    e = decode_fails(d, "{\"spanSelector\":[1]}");
    assert_non_null(strstr(e.msg, "spanSelector"));
    e = decode_fails(d, "{\"start\":\"99999999999999999999\"}");
    assert_non_null(strstr(e.msg, "start"));
    e = decode_fails(d, "[]");
    assert_non_null(strstr(e.msg, "object"));
    e = decode_fails(d, "{\"start\":");
    assert_non_null(strstr(e.msg, "not JSON"));
}

static void writes_int64_as_strings_and_leaves_defaults_out(void **state)
{
    (void)state;
    int64_t v0[] = {0, 60, 0, 0}, v1[] = {0, 20, 20, 4, 0, 40, 10, 2};
    Querier__V1__Level l0 = QUERIER__V1__LEVEL__INIT, l1 = QUERIER__V1__LEVEL__INIT;
    l0.values = v0;
    l0.n_values = 4;
    l1.values = v1;
    l1.n_values = 8;
    Querier__V1__Level *levels[] = {&l0, &l1};
    char *names[] = {"total", "main"};
    Querier__V1__FlameGraph fg = QUERIER__V1__FLAME_GRAPH__INIT;
    fg.names = names;
    fg.n_names = 2;
    fg.levels = levels;
    fg.n_levels = 2;
    fg.total = 60;
    Querier__V1__SelectMergeStacktracesResponse resp =
        QUERIER__V1__SELECT_MERGE_STACKTRACES_RESPONSE__INIT;
    resp.flamegraph = &fg;
    assert_string_equal(encode(&resp.base),
                        "{\"flamegraph\":{\"names\":[\"total\",\"main\"],\"levels\":[{\"values\":"
                        "[\"0\",\"60\",\"0\",\"0\"]},{\"values\":[\"0\",\"20\",\"20\",\"4\",\"0\","
                        "\"40\",\"10\",\"2\"]}],\"total\":\"60\"}}");
    Querier__V1__SelectMergeStacktracesResponse empty =
        QUERIER__V1__SELECT_MERGE_STACKTRACES_RESPONSE__INIT;
    assert_string_equal(encode(&empty.base), "{}");

    /* the extremes, written by hand since issue 19 (no printf) */
    int64_t ext[] = {INT64_MIN, -1, 9, 10, INT64_MAX};
    l0.values = ext;
    l0.n_values = 5;
    assert_string_equal(encode(&l0.base), "{\"values\":[\"-9223372036854775808\",\"-1\",\"9\","
                                          "\"10\",\"9223372036854775807\"]}");

    Types__V1__ProfileType pt = TYPES__V1__PROFILE_TYPE__INIT;
    pt.id = "a:b:c:d:e";
    pt.sample_type = "b";
    assert_string_equal(encode(&pt.base), "{\"ID\":\"a:b:c:d:e\",\"sampleType\":\"b\"}");
}

/* Long integer arrays go straight into the buffer in runs (put_int_array): across the runs'
 * seams, for every integer type width, and at the buffer's limit exactly where the one-by-one
 * writer met it. The oracle is printf. */
static void writes_long_integer_arrays_as_before_at_any_limit(void **state)
{
    (void)state;
    enum { N = 1000 };
    uint64_t ids[N];
    int64_t values[N];
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (size_t i = 0; i < N; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        ids[i] = i == 3 ? UINT64_MAX : x >> (i % 64);
        values[i] = i == 5 ? INT64_MIN : (int64_t)(x >> (i % 61)) * (i % 3 ? 1 : -1);
    }
    Google__V1__Sample smp = GOOGLE__V1__SAMPLE__INIT;
    smp.location_id = ids;
    smp.n_location_id = N;
    smp.value = values;
    smp.n_value = N;
    sp_buf want;
    sp_buf_init(&want, 0);
    sp_buf_printf(&want, "{\"locationId\":[");
    for (size_t i = 0; i < N; i++)
        sp_buf_printf(&want, "%s\"%" PRIu64 "\"", i ? "," : "", ids[i]);
    sp_buf_printf(&want, "],\"value\":[");
    for (size_t i = 0; i < N; i++)
        sp_buf_printf(&want, "%s\"%" PRId64 "\"", i ? "," : "", values[i]);
    sp_buf_printf(&want, "]}");
    assert_string_equal(encode(&smp.base), (const char *)want.data);

    /* the limit: the whole answer fits in exactly its length, and not in one byte less */
    for (size_t limit = want.len - 1; limit <= want.len; limit++) {
        sp_buf b;
        sp_buf_init(&b, limit);
        int rc = wire_json_encode(&smp.base, &b);
        if (limit < want.len) {
            assert_int_equal(rc, SP_ETOOBIG);
        } else {
            assert_int_equal(rc, 0);
            assert_memory_equal(b.data, want.data, want.len);
        }
        sp_buf_free(&b);
    }
    sp_buf_free(&want);

    /* 32 bits, signed: numbers, not strings */
    int32_t idx[N];
    for (size_t i = 0; i < N; i++)
        idx[i] = i == 7 ? INT32_MIN : (int32_t)(ids[i] >> 33) * (i % 2 ? -1 : 1);
    Opentelemetry__Proto__Profiles__V1development__Stack st =
        OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__STACK__INIT;
    st.location_indices = idx;
    st.n_location_indices = N;
    sp_buf_init(&want, 0);
    sp_buf_printf(&want, "{\"locationIndices\":[");
    for (size_t i = 0; i < N; i++)
        sp_buf_printf(&want, "%s%" PRId32, i ? "," : "", idx[i]);
    sp_buf_printf(&want, "]}");
    assert_string_equal(encode(&st.base), (const char *)want.data);
    sp_buf_free(&want);
}

static void writes_doubles_enums_bytes_and_escapes(void **state)
{
    (void)state;
    Types__V1__Point p = TYPES__V1__POINT__INIT;
    p.value = 1.5;
    p.timestamp = 1700000000000LL;
    assert_string_equal(encode(&p.base), "{\"value\":1.5,\"timestamp\":\"1700000000000\"}");
    p.value = 0.1;
    p.timestamp = 0;
    assert_string_equal(encode(&p.base), "{\"value\":0.1}");
    p.value = NAN;
    assert_string_equal(encode(&p.base), "{\"value\":\"NaN\"}");
    p.value = -INFINITY;
    assert_string_equal(encode(&p.base), "{\"value\":\"-Infinity\"}");

    Querier__V1__SelectMergeStacktracesRequest r =
        QUERIER__V1__SELECT_MERGE_STACKTRACES_REQUEST__INIT;
    r.format = QUERIER__V1__PROFILE_FORMAT__PROFILE_FORMAT_FLAMEGRAPH;
    r.label_selector = "q\"\\\n\x01\xc3\xa9\xff";
    assert_string_equal(encode(&r.base),
                        "{\"labelSelector\":\"q\\\"\\\\\\n\\u0001\xc3\xa9\\ufffd\","
                        "\"format\":\"PROFILE_FORMAT_FLAMEGRAPH\"}");

    Querier__V1__SelectMergeSpanProfileResponse t =
        QUERIER__V1__SELECT_MERGE_SPAN_PROFILE_RESPONSE__INIT;
    uint8_t bytes[] = {0, 0, 1, 4, 'm', 'a', 'i', 'n', 0xff};
    t.tree.data = bytes;
    t.tree.len = sizeof bytes;
    char *json = encode(&t.base);
    assert_string_equal(json, "{\"tree\":\"AAABBG1haW7/\"}");
    const Querier__V1__SelectMergeSpanProfileResponse *back =
        (const void *)decode_ok(&querier__v1__select_merge_span_profile_response__descriptor, json);
    assert_int_equal(back->tree.len, sizeof bytes);
    assert_memory_equal(back->tree.data, bytes, sizeof bytes);
    back = (const void *)decode_ok(&querier__v1__select_merge_span_profile_response__descriptor,
                                   "{\"tree\":\"AAABBG1haW7_\"}"); /* URL-safe, unpadded */
    assert_memory_equal(back->tree.data, bytes, sizeof bytes);
}

static void round_trips_through_json(void **state)
{
    (void)state;
    const char *in = "{\"profileTypeID\":\"x:y:z:u:v\",\"labelSelector\":\"{}\",\"start\":\"-5\","
                     "\"end\":\"9223372036854775807\",\"maxNodes\":\"8192\",\"spanSelector\":"
                     "[\"a\",\"\"]}";
    const ProtobufCMessage *m =
        decode_ok(&querier__v1__select_merge_stacktraces_request__descriptor, in);
    char *out = encode(m);
    const ProtobufCMessage *m2 =
        decode_ok(&querier__v1__select_merge_stacktraces_request__descriptor, out);
    size_t n1 = protobuf_c_message_get_packed_size(m), n2 = protobuf_c_message_get_packed_size(m2);
    assert_int_equal(n1, n2);
    uint8_t *b1 = sp_arena_alloc(arena, n1 + 1), *b2 = sp_arena_alloc(arena, n2 + 1);
    protobuf_c_message_pack(m, b1);
    protobuf_c_message_pack(m2, b2);
    assert_memory_equal(b1, b2, n1);
    assert_string_equal(out, in);
}

static int setup(void **state)
{
    (void)state;
    arena = sp_arena_new(0);
    return arena ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    sp_arena_free(arena);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(reads_camel_case_and_proto_names, setup, teardown),
        cmocka_unit_test_setup_teardown(reads_doubles_enums_and_nested_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(rejects_wrong_types_with_the_field_name, setup, teardown),
        cmocka_unit_test_setup_teardown(writes_int64_as_strings_and_leaves_defaults_out, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(writes_long_integer_arrays_as_before_at_any_limit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(writes_doubles_enums_bytes_and_escapes, setup, teardown),
        cmocka_unit_test_setup_teardown(round_trips_through_json, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
