/* The export directory's formats (app/xfer_format.c) and the pprof frame type extension
 * (wire/pprof_write.c, otlp/pprof.c) that keeps unnamed frames' names through export/import. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "app/xfer_format.h"
#include "otlp/pprof.h"
#include "wire/pprof_write.h"

#include <stdio.h>
#include <string.h>

static xfer_manifest sample_manifest(xfer_tenant *t)
{
    t[0] = (xfer_tenant){"anonymous", 3, 120, 40, 6};
    t[1] = (xfer_tenant){"team-b", 1, 2, 0, 0};
    return (xfer_manifest){1,
                           "0123456789abcdef0123456789abcdef",
                           "0.1.0",
                           "2026-01-01T00:00:00Z",
                           1000000000000,
                           2000000000000,
                           10000000000LL,
                           t,
                           2};
}

static void manifest_round_trips(void **state)
{
    (void)state;
    xfer_tenant t[2];
    xfer_manifest m = sample_manifest(t), back;
    sp_buf b;
    sp_buf_init(&b, 0);
    assert_int_equal(xfer_manifest_write(&m, &b), 0);
    sp_arena *a = sp_arena_new(0);
    sp_err err = {0};
    assert_int_equal(xfer_manifest_parse((const char *)b.data, b.len, a, &back, &err), 0);
    assert_string_equal(back.id, m.id);
    assert_int_equal(back.from_ns, m.from_ns);
    assert_int_equal(back.until_ns, m.until_ns);
    assert_int_equal(back.ntenants, 2);
    assert_string_equal(back.tenants[1].name, "team-b");
    assert_int_equal(back.tenants[0].profiles, 120);
    assert_int_equal(back.tenants[0].span_profiles, 6);
    sp_buf_free(&b);
    sp_arena_free(a);
}

static void rejects_manifest_damage_naming_where(void **state)
{
    (void)state;
    sp_arena *a = sp_arena_new(0);
    sp_err err = {0};
    xfer_manifest m;
    const char *cut = "{\n  \"format\": \"spanprof-export\",\n  \"ver";
    assert_int_equal(xfer_manifest_parse(cut, strlen(cut), a, &m, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "line 3"));
    assert_non_null(strstr(err.msg, "byte"));
    const char *newer = "{\"format\":\"spanprof-export\",\"version\":9}";
    assert_int_equal(xfer_manifest_parse(newer, strlen(newer), a, &m, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "version: 9 is newer"));
    const char *tenant = "{\"format\":\"spanprof-export\",\"version\":1,\"id\":"
                         "\"0123456789abcdef0123456789abcdef\",\"spanprof_version\":\"x\","
                         "\"created\":\"x\",\"from_ns\":1,\"until_ns\":2,\"bucket_ns\":"
                         "10000000000,\"tenants\":[{\"name\":\"../etc\",\"series\":0,"
                         "\"profiles\":0,\"spans\":0,\"span_profiles\":0}]}";
    assert_int_equal(xfer_manifest_parse(tenant, strlen(tenant), a, &m, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "tenants[0].name"));
    sp_arena_free(a);
}

static void series_labels_come_back_sorted(void **state)
{
    (void)state;
    sp_kv labels[] = {{"__name__", "process_cpu"}, {"service_name", "svc"}, {"zone", "a\"b"}};
    xfer_series s = {7, "process_cpu:cpu:nanoseconds:cpu:nanoseconds", 10000000, labels, 3}, back;
    sp_buf b;
    sp_buf_init(&b, 0);
    assert_int_equal(xfer_series_write(&s, &b), 0);
    sp_arena *a = sp_arena_new(0);
    sp_err err = {0};
    assert_int_equal(xfer_series_parse((const char *)b.data, b.len - 1, a, &back, &err), 0);
    assert_int_equal(back.id, 7);
    assert_int_equal(back.nlabels, 3);
    assert_string_equal(back.labels[2].value, "a\"b");
    assert_string_equal(back.labels[0].name, "__name__");
    const char *bad = "{\"id\":1,\"type\":\"cpu\",\"period\":0,\"labels\":{}}";
    assert_int_equal(xfer_series_parse(bad, strlen(bad), a, &back, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "type:"));
    sp_buf_free(&b);
    sp_arena_free(a);
}

static void span_round_trips_and_rejects_a_short_id(void **state)
{
    (void)state;
    sp_span sp = {.service = "svc",
                  .name = "GET /x",
                  .start_ns = 1700000000123456789ULL,
                  .end_ns = 1700000000223456789ULL,
                  .pid = 42,
                  .tid = -1};
    memset(sp.trace_id, 0xab, 16);
    memset(sp.span_id, 0x01, 8);
    sp_span back;
    sp_buf b;
    sp_buf_init(&b, 0);
    assert_int_equal(xfer_span_write(&sp, &b), 0);
    sp_arena *a = sp_arena_new(0);
    sp_err err = {0};
    assert_int_equal(xfer_span_parse((const char *)b.data, b.len - 1, a, &back, &err), 0);
    assert_memory_equal(back.trace_id, sp.trace_id, 16);
    assert_memory_equal(back.span_id, sp.span_id, 8);
    assert_int_equal(back.end_ns, sp.end_ns);
    assert_int_equal(back.tid, -1);
    assert_string_equal(back.name, "GET /x");
    static const uint8_t zero[8];
    assert_memory_equal(back.parent_span_id, zero, 8); /* "" = root */
    const char *bad = "{\"trace_id\":\"abababababababababababababababab\",\"span_id\":\"0101\"}";
    assert_int_equal(xfer_span_parse(bad, strlen(bad), a, &back, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "span_id: 4 characters, want 16 hex digits"));
    sp_buf_free(&b);
    sp_arena_free(a);
}

/* A span's extras blob travels as hex in "extras"; a line without it has none; damage is named. */
static void span_extras_round_trip(void **state)
{
    (void)state;
    static const uint8_t blob[] = {0x0a, 0x02, 0x52, 0x33, 0x12, 0x02, 0x12, 0x00, 0xff};
    sp_span sp = {.service = "svc", .name = "n", .start_ns = 1, .end_ns = 2};
    sp.span_id[7] = 1;
    sp.extras = blob;
    sp.extras_len = sizeof blob;
    sp_buf b;
    sp_buf_init(&b, 0);
    assert_int_equal(xfer_span_write(&sp, &b), 0);
    char line[512];
    snprintf(line, sizeof line, "%.*s", (int)b.len, (const char *)b.data);
    assert_non_null(strstr(line, "\"extras\":\"0a02523312021200ff\""));
    sp_arena *a = sp_arena_new(0);
    sp_err err = {0};
    sp_span back;
    assert_int_equal(xfer_span_parse((const char *)b.data, b.len - 1, a, &back, &err), 0);
    assert_int_equal(back.extras_len, sizeof blob);
    assert_memory_equal(back.extras, blob, sizeof blob);
    sp.extras = NULL;
    sp.extras_len = 0;
    sp_buf_free(&b);
    sp_buf_init(&b, 0);
    assert_int_equal(xfer_span_write(&sp, &b), 0);
    snprintf(line, sizeof line, "%.*s", (int)b.len, (const char *)b.data);
    assert_null(strstr(line, "extras"));
    assert_int_equal(xfer_span_parse((const char *)b.data, b.len - 1, a, &back, &err), 0);
    assert_null(back.extras);
    const char *bad =
        "{\"trace_id\":\"abababababababababababababababab\",\"span_id\":"
        "\"0101010101010101\",\"parent_span_id\":\"\",\"service\":\"s\",\"name\":"
        "\"n\",\"start_ns\":1,\"duration_ns\":1,\"pid\":0,\"tid\":0,\"extras\":\"0g\"}";
    assert_int_equal(xfer_span_parse(bad, strlen(bad), a, &back, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "extras: not hex digits"));
    sp_buf_free(&b);
    sp_arena_free(a);
}

/* An unnamed native frame: no lines, its name is made of frame type, address and mapping. The
 * frame type has no pprof field; the extension carries it. */
static void pprof_keeps_the_frame_type_of_an_unnamed_frame(void **state)
{
    (void)state;
    const char *strs[] = {"", "cpu", "nanoseconds", "native", "libc.so.6"};
    sp_mapping maps[2] = {{0}, {.filename = 4}};
    sp_location locs[2] = {{0}, {.mapping_id = 1, .address = 0x9a3f0, .frame_type = 3}};
    uint32_t ids[1] = {1};
    sp_sample smp = {.location_ids = ids, .nlocations = 1, .value = 5};
    sp_function fn0 = {0};
    sp_profile p = {.type_id = "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
                    .sample_type = 1,
                    .sample_unit = 2,
                    .period_type = 1,
                    .period_unit = 2,
                    .strings = strs,
                    .nstrings = 5,
                    .functions = &fn0,
                    .nfunctions = 1,
                    .locations = locs,
                    .nlocations = 2,
                    .mappings = maps,
                    .nmappings = 2,
                    .samples = &smp,
                    .nsamples = 1};
    sp_buf b;
    sp_buf_init(&b, 0);
    sp_err err = {0};
    assert_int_equal(wire_pprof_encode_ex(&p, WIRE_PPROF_FRAME_TYPES, &b, &err), 0);
    sp_arena *a = sp_arena_new(0);
    sp_batch batch = {.arena = a};
    otlp_pprof_opts o = {0};
    otlp_pprof_result res;
    assert_int_equal(otlp_pprof_decode(b.data, b.len, &o, &batch, &res, &err), 0);
    assert_int_equal(batch.nprofiles, 1);
    const sp_profile *q = batch.profiles[0];
    assert_int_equal(q->nlocations, 2);
    assert_int_equal(q->locations[1].address, 0x9a3f0);
    assert_string_equal(q->strings[q->locations[1].frame_type], "native");
    /* its print made from the final tables (the frame type string included) */
    assert_non_null(q->location_prints);
    sp_print *again;
    assert_int_equal(sp_location_prints(q, a, &again), 0);
    assert_memory_equal(&q->location_prints[1], &again[1], sizeof again[1]);
    /* without the flag nothing is added: a plain pprof reads as before */
    sp_buf plain;
    sp_buf_init(&plain, 0);
    assert_int_equal(wire_pprof_encode(&p, &plain, &err), 0);
    assert_true(plain.len < b.len);
    sp_buf_free(&plain);
    sp_buf_free(&b);
    sp_arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(manifest_round_trips),
        cmocka_unit_test(rejects_manifest_damage_naming_where),
        cmocka_unit_test(series_labels_come_back_sorted),
        cmocka_unit_test(span_round_trips_and_rejects_a_short_id),
        cmocka_unit_test(span_extras_round_trip),
        cmocka_unit_test(pprof_keeps_the_frame_type_of_an_unnamed_frame),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
