/* otlp/decode + wire/pb: the shared decode pipeline (depth limit, unpack failures, memory
 * budget), wire-level readers, and the OTLP/HTTP google.rpc.Status error body. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "otlp/decode.h"
#include "otlp/service.h"
#include "wire/pb.h"

#include <stdlib.h>
#include <string.h>

/* ExportTraceServiceRequest whose one span carries an attribute nested `depth` AnyValue arrays
 * deep, built inside out: AnyValue{array_value{values[AnyValue{...}]}}. */
static uint8_t *nested_trace_request(int depth, size_t *len)
{
    size_t cap = (size_t)depth * 16 + 256;
    uint8_t *a = malloc(cap), *b = malloc(cap);
    size_t n = 0;
    a[n++] = 0x18; /* innermost AnyValue: int_value = 1 */
    a[n++] = 0x01;
    for (int i = 0; i < depth; i++) {
        /* b = AnyValue{array_value(5) = ArrayValue{values(1) = a}} */
        size_t m = 0;
        size_t arr = 1 + wire_pb_varint_size(n) + n;
        b[m++] = 0x2a;
        m += wire_pb_put_varint(b + m, arr);
        b[m++] = 0x0a;
        m += wire_pb_put_varint(b + m, n);
        memcpy(b + m, a, n);
        m += n;
        uint8_t *t = a;
        a = b;
        b = t;
        n = m;
    }
    /* KeyValue{key "k", value(2) = a} inside Span.attributes(9), with valid ids. */
    uint8_t *out = malloc(n + 256);
    size_t o = 0;
    uint8_t kv[64];
    size_t k = 0;
    kv[k++] = 0x0a;
    kv[k++] = 1;
    kv[k++] = 'k';
    kv[k++] = 0x12;
    k += wire_pb_put_varint(kv + k, n);
    size_t kvlen = k + n;
    uint8_t span[64];
    size_t s = 0;
    span[s++] = 0x0a; /* trace_id */
    span[s++] = 16;
    memset(span + s, 0x11, 16);
    s += 16;
    span[s++] = 0x12; /* span_id */
    span[s++] = 8;
    memset(span + s, 0x22, 8);
    s += 8;
    span[s++] = 0x4a; /* attributes */
    s += wire_pb_put_varint(span + s, kvlen);
    size_t spanlen = s + kvlen;
    /* ScopeSpans{spans(2)}, ResourceSpans{scope_spans(2)}, Request{resource_spans(1)} */
    size_t sslen = 1 + wire_pb_varint_size(spanlen) + spanlen;
    size_t rslen = 1 + wire_pb_varint_size(sslen) + sslen;
    out[o++] = 0x0a;
    o += wire_pb_put_varint(out + o, rslen);
    out[o++] = 0x12;
    o += wire_pb_put_varint(out + o, sslen);
    out[o++] = 0x12;
    o += wire_pb_put_varint(out + o, spanlen);
    memcpy(out + o, span, s);
    o += s;
    memcpy(out + o, kv, k);
    o += k;
    memcpy(out + o, a, n);
    o += n;
    free(a);
    free(b);
    *len = o;
    return out;
}

/* Request 0 > ResourceSpans 1 > ScopeSpans 2 > Span 3 > KeyValue 4 > AnyValue 5, then each array
 * level adds ArrayValue + AnyValue: the innermost AnyValue is at depth 5 + 2 * levels. */
static void accepts_nesting_at_the_limit(void **state)
{
    size_t len;
    uint8_t *req = nested_trace_request((WIRE_PB_MAX_DEPTH - 5) / 2, &len);
    sp_arena *a = sp_arena_new(otlp_decode_budget(len));
    otlp_decoded dec;
    sp_err err = {0};
    if (otlp_decode(OTLP_SIGNAL_TRACES, req, len, a, &dec, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(dec.verdict.total, 1);
    assert_int_equal(dec.verdict.bad, 0);
    sp_arena_free(a);
    free(req);
}

static void rejects_nesting_one_past_the_limit(void **state)
{
    size_t len;
    uint8_t *req = nested_trace_request((WIRE_PB_MAX_DEPTH - 5) / 2 + 1, &len);
    sp_arena *a = sp_arena_new(otlp_decode_budget(len));
    otlp_decoded dec;
    sp_err err = {0};
    assert_int_equal(otlp_decode(OTLP_SIGNAL_TRACES, req, len, a, &dec, &err), SP_EINVAL);
    sp_arena_free(a);
    free(req);
}

static void rejects_nesting_deeper_than_the_limit_without_recursing(void **state)
{
    /* 200k levels would overflow the stack inside protobuf-c's recursive unpack. */
    size_t len;
    uint8_t *req = nested_trace_request(200000, &len);
    sp_arena *a = sp_arena_new(otlp_decode_budget(len));
    otlp_decoded dec;
    sp_err err = {0};
    assert_int_equal(otlp_decode(OTLP_SIGNAL_TRACES, req, len, a, &dec, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "ExportTraceServiceRequest does not decode"));
    assert_non_null(strstr(err.msg, "nested deeper than 100"));
    sp_arena_free(a);
    free(req);
}

static void malformed_message_the_depth_check_skips_is_still_refused(void **state)
{
    /* request.resource_profiles[0].scope_profiles[0].profiles[0] = field 1, LEN 100, 1 byte:
     * a Profile holds no cycle of messages, so the depth check does not walk it; protobuf-c's
     * unpack refuses it. */
    const uint8_t req[] = {0x0a, 0x07, 0x12, 0x05, 0x12, 0x03, 0x0a, 0x64, 0x61};
    sp_err err = {0};
    assert_int_equal(
        wire_pb_check_depth(
            &opentelemetry__proto__collector__profiles__v1development__export_profiles_service_request__descriptor,
            req, sizeof req, WIRE_PB_MAX_DEPTH, &err),
        0);
    sp_arena *a = sp_arena_new(0);
    otlp_decoded dec;
    assert_int_equal(otlp_decode(OTLP_SIGNAL_PROFILES, req, sizeof req, a, &dec, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "ExportProfilesServiceRequest"));
    sp_arena_free(a);
}

static void undecodable_request_names_the_message(void **state)
{
    /* field 1, LEN 100, but 3 bytes follow */
    const uint8_t garbage[] = {0x0a, 0x64, 'a', 'b', 'c'};
    int signals[] = {OTLP_SIGNAL_PROFILES, OTLP_SIGNAL_TRACES};
    const char *names[] = {"ExportProfilesServiceRequest", "ExportTraceServiceRequest"};
    for (int i = 0; i < 2; i++) {
        sp_arena *a = sp_arena_new(0);
        otlp_decoded dec;
        sp_err err = {0};
        assert_int_equal(otlp_decode(signals[i], garbage, sizeof garbage, a, &dec, &err),
                         SP_EINVAL);
        assert_non_null(strstr(err.msg, names[i]));
        assert_non_null(strstr(err.msg, "length 100 exceeds the 3 bytes left"));
        sp_arena_free(a);
    }
}

static void wrong_wire_type_for_a_known_field_is_invalid(void **state)
{
    /* ExportTraceServiceRequest.resource_spans (1) as a varint: well framed, wrong type. */
    const uint8_t req[] = {0x08, 0x01};
    sp_arena *a = sp_arena_new(0);
    otlp_decoded dec;
    sp_err err = {0};
    assert_int_equal(otlp_decode(OTLP_SIGNAL_TRACES, req, sizeof req, a, &dec, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "does not decode as protobuf"));
    sp_arena_free(a);
}

static void empty_request_decodes_to_nothing(void **state)
{
    sp_arena *a = sp_arena_new(0);
    otlp_decoded dec;
    sp_err err = {0};
    assert_int_equal(otlp_decode(OTLP_SIGNAL_PROFILES, NULL, 0, a, &dec, &err), 0);
    assert_non_null(dec.msg);
    assert_int_equal(dec.verdict.total, 0);
    assert_int_equal(otlp_decode(OTLP_SIGNAL_TRACES, (const uint8_t *)"", 0, a, &dec, &err), 0);
    assert_int_equal(dec.verdict.total, 0);
    sp_arena_free(a);
}

static void profiles_without_dictionary_are_invalid(void **state)
{
    /* resource_profiles { scope_profiles { profiles {} } } and no field 2 */
    const uint8_t req[] = {0x0a, 0x04, 0x12, 0x02, 0x12, 0x00};
    sp_arena *a = sp_arena_new(0);
    otlp_decoded dec;
    sp_err err = {0};
    assert_int_equal(otlp_decode(OTLP_SIGNAL_PROFILES, req, sizeof req, a, &dec, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "1 profiles but no dictionary"));
    sp_arena_free(a);
}

static void exhausted_memory_budget_is_too_big_not_invalid(void **state)
{
    /* 2000 empty spans: 4 KB on the wire, ~100x that as structs. */
    size_t nspans = 2000, len = 0;
    size_t sslen = nspans * 2;
    uint8_t *req = malloc(sslen + 32);
    req[len++] = 0x0a;
    len += wire_pb_put_varint(req + len, 1 + wire_pb_varint_size(sslen) + sslen);
    req[len++] = 0x12;
    len += wire_pb_put_varint(req + len, sslen);
    for (size_t i = 0; i < nspans; i++) {
        req[len++] = 0x12;
        req[len++] = 0x00;
    }
    sp_arena *a = sp_arena_new(64 * 1024);
    otlp_decoded dec;
    sp_err err = {0};
    assert_int_equal(otlp_decode(OTLP_SIGNAL_TRACES, req, len, a, &dec, &err), SP_ETOOBIG);
    assert_non_null(strstr(err.msg, "decode budget"));
    sp_arena_free(a);
    /* With the default budget it decodes, and every span is bad (no ids). */
    a = sp_arena_new(otlp_decode_budget(len));
    assert_int_equal(otlp_decode(OTLP_SIGNAL_TRACES, req, len, a, &dec, &err), 0);
    assert_int_equal(dec.verdict.total, nspans);
    assert_int_equal(dec.verdict.bad, nspans);
    sp_arena_free(a);
    free(req);
}

static void decode_budget_is_a_multiple_of_the_size(void **state)
{
    assert_true(otlp_decode_budget(0) >= 1024 * 1024);
    assert_true(otlp_decode_budget(1 << 20) >= 16u << 20);
    assert_true(otlp_decode_budget(SIZE_MAX / 2) == SIZE_MAX);
}

static void reads_varints_up_to_ten_bytes(void **state)
{
    const uint8_t minus_one[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    const uint8_t *p = minus_one;
    uint64_t v;
    assert_int_equal(wire_pb_varint(&p, minus_one + 10, &v), 0);
    assert_true(v == UINT64_MAX);
    assert_ptr_equal(p, minus_one + 10);
    p = minus_one;
    assert_int_equal(wire_pb_varint(&p, minus_one + 9, &v), -1); /* truncated */
    const uint8_t eleven[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    p = eleven;
    assert_int_equal(wire_pb_varint(&p, eleven + 11, &v), -1);
    uint8_t buf[10];
    assert_int_equal(wire_pb_put_varint(buf, (uint64_t)(int64_t)-1), 10);
    assert_memory_equal(buf, minus_one, 10);
    assert_int_equal(wire_pb_varint_size(127), 1);
    assert_int_equal(wire_pb_varint_size(128), 2);
    assert_true(wire_pb_is_packed_varints(minus_one, 10));
    assert_false(wire_pb_is_packed_varints(minus_one, 9));
    assert_true(wire_pb_is_packed_varints(minus_one, 0));
}

/* wire_pb_next()'s inline path must read every input as wire_pb_next_any() does: every two- and
 * three-byte input, and random fields of every wire type cut at every length. */
static void inline_field_reader_agrees_with_the_full_one(void **state)
{
    (void)state;
    uint8_t buf[16];
    uint64_t x = 0x243f6a8885a308d3ull;
    for (uint32_t i = 0; i < (1u << 24) + 4096; i++) {
        size_t n;
        if (i < (1u << 24)) { /* every three bytes, and their two-byte prefixes */
            buf[0] = (uint8_t)i, buf[1] = (uint8_t)(i >> 8), buf[2] = (uint8_t)(i >> 16);
            n = i & 1 ? 3 : 2;
        } else {
            for (size_t k = 0; k < sizeof buf; k++)
                x ^= x << 13, x ^= x >> 7, x ^= x << 17, buf[k] = (uint8_t)(x >> 32);
            buf[0] = (uint8_t)((buf[0] & 0x78) | (x & 7)); /* one-byte tag, any wire type */
            n = 1 + x % sizeof buf;
        }
        const uint8_t *pa = buf, *pb = buf;
        wire_pb_field fa, fb;
        memset(&fa, 0xaa, sizeof fa);
        memset(&fb, 0xaa, sizeof fb);
        int ra = wire_pb_next(&pa, buf + n, buf, &fa, NULL);
        int rb = wire_pb_next_any(&pb, buf + n, buf, &fb, NULL);
        assert_int_equal(ra, rb);
        if (ra)
            continue;
        assert_ptr_equal(pa, pb);
        assert_int_equal(fa.num, fb.num);
        assert_int_equal(fa.wt, fb.wt);
        assert_true(fa.varint == fb.varint);
        assert_ptr_equal(fa.val, fb.val);
        assert_int_equal(fa.vlen, fb.vlen);
        assert_ptr_equal(fa.start, fb.start);
        assert_ptr_equal(fa.body, fb.body);
        assert_ptr_equal(fa.end, fb.end);
        uint64_t va, vb;
        pa = pb = buf;
        ra = wire_pb_varint(&pa, buf + n, &va);
        assert_int_equal(ra, wire_pb_varint_any(&pb, buf + n, &vb));
        assert_true(ra || (va == vb && pa == pb));
    }
}

static void reads_fields_of_every_accepted_wire_type(void **state)
{
    const uint8_t msg[] = {
        0x08, 0x96, 0x01,                         /* 1: varint 150 */
        0x11, 1,    2,    3,    4,    5, 6, 7, 8, /* 2: fixed64 */
        0x1a, 0x02, 'h',  'i',                    /* 3: "hi" */
        0x25, 0x01, 0x00, 0x00, 0x00,             /* 4: fixed32 1 */
        0xa2, 0x06, 0x00,                         /* 100: empty LEN (2-byte tag) */
    };
    const uint8_t *p = msg, *end = msg + sizeof msg;
    wire_pb_field f;
    sp_err err;
    assert_int_equal(wire_pb_next(&p, end, msg, &f, &err), 0);
    assert_int_equal(f.num, 1);
    assert_int_equal(f.wt, WIRE_WT_VARINT);
    assert_int_equal(f.varint, 150);
    assert_int_equal(wire_pb_next(&p, end, msg, &f, &err), 0);
    assert_int_equal(f.wt, WIRE_WT_I64);
    assert_true(f.varint == 0x0807060504030201ull);
    assert_int_equal(wire_pb_next(&p, end, msg, &f, &err), 0);
    assert_int_equal(f.wt, WIRE_WT_LEN);
    assert_int_equal(f.vlen, 2);
    assert_memory_equal(f.val, "hi", 2);
    assert_int_equal(wire_pb_next(&p, end, msg, &f, &err), 0);
    assert_int_equal(f.wt, WIRE_WT_I32);
    assert_int_equal(f.varint, 1);
    assert_int_equal(wire_pb_next(&p, end, msg, &f, &err), 0);
    assert_int_equal(f.num, 100);
    assert_int_equal(f.vlen, 0);
    assert_ptr_equal(f.start, msg + sizeof msg - 3);
    assert_ptr_equal(f.body, msg + sizeof msg - 1);
    assert_ptr_equal(p, end);
}

static void rejects_bad_wire_fields(void **state)
{
    const struct {
        uint8_t b[4];
        size_t n;
        const char *msg;
    } cases[] = {
        {{0x00, 0x00}, 2, "invalid field number 0"},
        {{0x0b}, 1, "unsupported wire type 3"},
        {{0x0f}, 1, "unsupported wire type 7"},
        {{0x09, 0x01}, 2, "truncated fixed64"},
        {{0x0d, 0x01}, 2, "truncated fixed32"},
        {{0x0a}, 1, "truncated length"},
        {{0x08}, 1, "truncated varint"},
        {{0x80}, 1, "truncated field tag"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const uint8_t *p = cases[i].b;
        wire_pb_field f;
        sp_err err = {0};
        assert_int_equal(wire_pb_next(&p, cases[i].b + cases[i].n, cases[i].b, &f, &err),
                         SP_EINVAL);
        if (!strstr(err.msg, cases[i].msg))
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err.msg, cases[i].msg);
    }
}

static void encodes_google_rpc_status(void **state)
{
    sp_buf b;
    sp_buf_init(&b, 0);
    assert_int_equal(otlp_rpc_status_encode(&b, 3, "bad"), 0);
    assert_int_equal(b.len, 7);
    assert_memory_equal(b.data,
                        "\x08\x03\x12\x03"
                        "bad",
                        7);
    sp_buf_free(&b);
    sp_buf_init(&b, 0);
    assert_int_equal(otlp_rpc_status_encode(&b, 0, NULL), 0); /* OK, no message: empty */
    assert_int_equal(b.len, 0);
    sp_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accepts_nesting_at_the_limit),
        cmocka_unit_test(rejects_nesting_one_past_the_limit),
        cmocka_unit_test(rejects_nesting_deeper_than_the_limit_without_recursing),
        cmocka_unit_test(undecodable_request_names_the_message),
        cmocka_unit_test(malformed_message_the_depth_check_skips_is_still_refused),
        cmocka_unit_test(wrong_wire_type_for_a_known_field_is_invalid),
        cmocka_unit_test(empty_request_decodes_to_nothing),
        cmocka_unit_test(profiles_without_dictionary_are_invalid),
        cmocka_unit_test(exhausted_memory_budget_is_too_big_not_invalid),
        cmocka_unit_test(decode_budget_is_a_multiple_of_the_size),
        cmocka_unit_test(reads_varints_up_to_ten_bytes),
        cmocka_unit_test(inline_field_reader_agrees_with_the_full_one),
        cmocka_unit_test(reads_fields_of_every_accepted_wire_type),
        cmocka_unit_test(rejects_bad_wire_fields),
        cmocka_unit_test(encodes_google_rpc_status),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
