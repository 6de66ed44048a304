/* wire/grpc: length-prefixed message framing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "wire/compress.h"
#include "wire/grpc.h"

#include <string.h>

/* body = prefix(flag, len) + payload */
static size_t frame(uint8_t *out, uint8_t flag, uint32_t len, const void *payload, size_t n)
{
    out[0] = flag;
    out[1] = (uint8_t)(len >> 24);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
    memcpy(out + 5, payload, n);
    return 5 + n;
}

typedef struct res {
    int rc;
    sp_err err;
    const uint8_t *msg;
    size_t len;
    sp_buf scratch;
} res;

static res unframe(const uint8_t *body, size_t len, const char *enc, size_t max)
{
    res r;
    memset(&r, 0, sizeof r);
    sp_buf_init(&r.scratch, 0);
    r.rc = wire_grpc_unframe(body, len, enc, max, &r.scratch, &r.msg, &r.len, &r.err);
    return r;
}

static void unframes_one_identity_message(void **state)
{
    uint8_t body[64];
    size_t n = frame(body, 0, 5, "hello", 5);
    res r = unframe(body, n, NULL, 0);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.len, 5);
    assert_memory_equal(r.msg, "hello", 5);
    assert_ptr_equal(r.msg, body + 5); /* no copy */
    sp_buf_free(&r.scratch);
}

static void unframes_empty_message(void **state)
{
    uint8_t body[8];
    size_t n = frame(body, 0, 0, "", 0);
    res r = unframe(body, n, "identity", 0);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.len, 0);
    sp_buf_free(&r.scratch);
}

static void unframes_gzip_compressed_message(void **state)
{
    sp_buf z;
    sp_buf_init(&z, 0);
    sp_err err;
    assert_int_equal(wire_gzip_compress((const uint8_t *)"compressed payload", 18, -1, &z, &err),
                     0);
    uint8_t body[256];
    size_t n = frame(body, 1, (uint32_t)z.len, z.data, z.len);
    res r = unframe(body, n, "gzip", 0);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.len, 18);
    assert_memory_equal(r.msg, "compressed payload", 18);
    sp_buf_free(&r.scratch);
    sp_buf_free(&z);
}

static void uncompressed_flag_ignores_grpc_encoding(void **state)
{
    /* grpc-encoding names what the client may use; flag 0 says this message is plain. */
    uint8_t body[64];
    size_t n = frame(body, 0, 3, "abc", 3);
    res r = unframe(body, n, "gzip", 0);
    assert_int_equal(r.rc, 0);
    assert_memory_equal(r.msg, "abc", 3);
    sp_buf_free(&r.scratch);
}

static void rejects_empty_body(void **state)
{
    res r = unframe((const uint8_t *)"", 0, NULL, 0);
    assert_int_equal(r.rc, SP_EINVAL);
    assert_non_null(strstr(r.err.msg, "exactly one"));
}

static void rejects_truncated_prefix(void **state)
{
    const uint8_t body[] = {0, 0, 0};
    res r = unframe(body, sizeof body, NULL, 0);
    assert_int_equal(r.rc, SP_EINVAL);
    assert_non_null(strstr(r.err.msg, "prefix"));
}

static void rejects_length_larger_than_body(void **state)
{
    uint8_t body[64];
    size_t n = frame(body, 0, 105, "hello", 5);
    res r = unframe(body, n, NULL, 0);
    assert_int_equal(r.rc, SP_EINVAL);
    assert_non_null(strstr(r.err.msg, "105"));
}

static void rejects_trailing_bytes_after_the_message(void **state)
{
    uint8_t body[64];
    size_t n = frame(body, 0, 2, "hi", 2);
    n += frame(body + n, 0, 2, "hi", 2); /* a second message in a unary call */
    res r = unframe(body, n, NULL, 0);
    assert_int_equal(r.rc, SP_EINVAL);
    assert_non_null(strstr(r.err.msg, "7 bytes after"));
}

static void rejects_compressed_flag_with_identity_encoding(void **state)
{
    uint8_t body[64];
    size_t n = frame(body, 1, 3, "abc", 3);
    const char *encs[] = {NULL, "identity"};
    for (int i = 0; i < 2; i++) {
        res r = unframe(body, n, encs[i], 0);
        assert_int_equal(r.rc, SP_EINVAL);
        assert_string_equal(r.err.msg, "compressed flag set but grpc-encoding is identity");
    }
}

static void rejects_compressed_flag_other_than_0_or_1(void **state)
{
    uint8_t body[64];
    size_t n = frame(body, 2, 3, "abc", 3);
    res r = unframe(body, n, NULL, 0);
    assert_int_equal(r.rc, SP_EINVAL);
}

static void unknown_encoding_is_unimplemented(void **state)
{
    uint8_t body[64];
    size_t n = frame(body, 1, 3, "abc", 3);
    res r = unframe(body, n, "snappy", 0);
    assert_int_equal(r.rc, SP_EUNIMPL);
    assert_non_null(strstr(r.err.msg, "snappy"));
}

static void corrupt_compressed_message_is_invalid(void **state)
{
    uint8_t body[64];
    size_t n = frame(body, 1, 9, "not gzip!", 9);
    res r = unframe(body, n, "gzip", 0);
    assert_int_equal(r.rc, SP_EINVAL);
    assert_non_null(strstr(r.err.msg, "gzip"));
    sp_buf_free(&r.scratch);
}

static void message_larger_than_max_is_too_big(void **state)
{
    uint8_t body[256];
    uint8_t payload[101] = {0};
    size_t n = frame(body, 0, 101, payload, 101);
    res r = unframe(body, n, NULL, 100);
    assert_int_equal(r.rc, SP_ETOOBIG);
    assert_string_equal(r.err.msg, "received message larger than max (101 vs. 100)");
    r = unframe(body, n, NULL, 101); /* exactly at the limit */
    assert_int_equal(r.rc, 0);
}

static void prefix_claiming_more_than_max_is_too_big_before_the_body_arrives(void **state)
{
    /* Only the prefix: the declared size alone decides. */
    const uint8_t body[] = {0, 0x10, 0, 0, 0}; /* 256 MiB */
    res r = unframe(body, sizeof body, NULL, 0);
    assert_int_equal(r.rc, SP_ETOOBIG);
    assert_non_null(strstr(r.err.msg, "67108864"));
}

static void gzip_message_inflating_past_max_is_too_big(void **state)
{
    static uint8_t zeros[1 << 20];
    sp_buf z, body;
    sp_buf_init(&z, 0);
    sp_buf_init(&body, 0);
    sp_err err;
    assert_int_equal(wire_gzip_compress(zeros, sizeof zeros, 9, &z, &err), 0);
    uint8_t prefix[5] = {1, (uint8_t)(z.len >> 24), (uint8_t)(z.len >> 16), (uint8_t)(z.len >> 8),
                         (uint8_t)z.len};
    sp_buf_append(&body, prefix, 5);
    sp_buf_append(&body, z.data, z.len);
    res r = unframe(body.data, body.len, "gzip", 65536);
    assert_int_equal(r.rc, SP_ETOOBIG);
    assert_non_null(strstr(r.err.msg, "65536"));
    assert_true(r.scratch.cap <= 65536);
    sp_buf_free(&r.scratch);
    sp_buf_free(&z);
    sp_buf_free(&body);
}

static void frame_then_unframe_roundtrips(void **state)
{
    sp_buf out;
    sp_buf_init(&out, 0);
    assert_int_equal(wire_grpc_frame(&out, (const uint8_t *)"\x0a\x02hi", 4), 0);
    assert_int_equal(out.len, 9);
    assert_memory_equal(out.data, "\x00\x00\x00\x00\x04\x0a\x02hi", 9);
    res r = unframe(out.data, out.len, NULL, 0);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.len, 4);
    sp_buf_free(&out);
    sp_buf_init(&out, 0);
    assert_int_equal(wire_grpc_frame(&out, NULL, 0), 0);
    assert_int_equal(out.len, 5);
    sp_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(unframes_one_identity_message),
        cmocka_unit_test(unframes_empty_message),
        cmocka_unit_test(unframes_gzip_compressed_message),
        cmocka_unit_test(uncompressed_flag_ignores_grpc_encoding),
        cmocka_unit_test(rejects_empty_body),
        cmocka_unit_test(rejects_truncated_prefix),
        cmocka_unit_test(rejects_length_larger_than_body),
        cmocka_unit_test(rejects_trailing_bytes_after_the_message),
        cmocka_unit_test(rejects_compressed_flag_with_identity_encoding),
        cmocka_unit_test(rejects_compressed_flag_other_than_0_or_1),
        cmocka_unit_test(unknown_encoding_is_unimplemented),
        cmocka_unit_test(corrupt_compressed_message_is_invalid),
        cmocka_unit_test(message_larger_than_max_is_too_big),
        cmocka_unit_test(prefix_claiming_more_than_max_is_too_big_before_the_body_arrives),
        cmocka_unit_test(gzip_message_inflating_past_max_is_too_big),
        cmocka_unit_test(frame_then_unframe_roundtrips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
