/* wire/compress: gzip / deflate / zstd decoding with an output cap, gzip encoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "wire/compress.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

static uint8_t *pattern(size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)((i * 7) ^ (i >> 5));
    return p;
}

static void gzip_of(const uint8_t *in, size_t len, sp_buf *out)
{
    sp_err err;
    sp_buf_init(out, 0);
    assert_int_equal(wire_gzip_compress(in, len, 6, out, &err), 0);
}

/* zlib (windowBits 15) or raw deflate (-15) of in. */
static void deflate_of(const uint8_t *in, size_t len, int window_bits, sp_buf *out)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY), Z_OK);
    sp_buf_init(out, 0);
    assert_int_equal(sp_buf_reserve(out, deflateBound(&zs, len) + 16), 0);
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)len;
    zs.next_out = out->data;
    zs.avail_out = (uInt)out->cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    out->len = zs.total_out;
    deflateEnd(&zs);
}

static void zstd_of(const uint8_t *in, size_t len, sp_buf *out)
{
    sp_buf_init(out, 0);
    assert_int_equal(sp_buf_reserve(out, ZSTD_compressBound(len)), 0);
    size_t n = ZSTD_compress(out->data, out->cap, in, len, 3);
    assert_false(ZSTD_isError(n));
    out->len = n;
}

static void gzip_roundtrip_restores_the_input(void **state)
{
    size_t n = 300000;
    uint8_t *in = pattern(n);
    sp_buf z, out;
    gzip_of(in, n, &z);
    assert_true(z.len > 18);
    assert_int_equal(z.data[0], 0x1f);
    assert_int_equal(z.data[1], 0x8b);
    sp_buf_init(&out, 0);
    sp_err err;
    assert_int_equal(wire_decompress(WIRE_ENC_GZIP, z.data, z.len, n, &out, &err), 0);
    assert_int_equal(out.len, n);
    assert_memory_equal(out.data, in, n);
    sp_buf_free(&z);
    sp_buf_free(&out);
    free(in);
}

static void gzip_of_empty_input_inflates_to_nothing(void **state)
{
    sp_buf z, out;
    gzip_of((const uint8_t *)"", 0, &z);
    sp_buf_init(&out, 0);
    sp_err err;
    assert_int_equal(wire_decompress(WIRE_ENC_GZIP, z.data, z.len, 100, &out, &err), 0);
    assert_int_equal(out.len, 0);
    sp_buf_free(&z);
    sp_buf_free(&out);
}

static void concatenated_gzip_members_are_joined(void **state)
{
    sp_buf a, b, out;
    gzip_of((const uint8_t *)"hello ", 6, &a);
    gzip_of((const uint8_t *)"world", 5, &b);
    assert_int_equal(sp_buf_append(&a, b.data, b.len), 0);
    sp_buf_init(&out, 0);
    sp_err err;
    assert_int_equal(wire_decompress(WIRE_ENC_GZIP, a.data, a.len, 0, &out, &err), 0);
    assert_int_equal(out.len, 11);
    assert_memory_equal(out.data, "hello world", 11);
    sp_buf_free(&a);
    sp_buf_free(&b);
    sp_buf_free(&out);
}

static void deflate_accepts_zlib_and_raw_streams(void **state)
{
    size_t n = 50000;
    uint8_t *in = pattern(n);
    int bits[] = {15, -15};
    for (int i = 0; i < 2; i++) {
        sp_buf z, out;
        deflate_of(in, n, bits[i], &z);
        sp_buf_init(&out, 0);
        sp_err err;
        assert_int_equal(wire_decompress(WIRE_ENC_DEFLATE, z.data, z.len, n, &out, &err), 0);
        assert_int_equal(out.len, n);
        assert_memory_equal(out.data, in, n);
        sp_buf_free(&z);
        sp_buf_free(&out);
    }
    free(in);
}

static void zstd_roundtrip_restores_the_input(void **state)
{
    size_t n = 200000;
    uint8_t *in = pattern(n);
    sp_buf z, out;
    zstd_of(in, n, &z);
    sp_buf_init(&out, 0);
    sp_err err;
    assert_int_equal(wire_decompress(WIRE_ENC_ZSTD, z.data, z.len, n, &out, &err), 0);
    assert_int_equal(out.len, n);
    assert_memory_equal(out.data, in, n);
    sp_buf_free(&z);
    sp_buf_free(&out);
    free(in);
}

static void gzip_bomb_stops_at_limit(void **state)
{
    size_t n = 64u << 20, limit = 1u << 20;
    uint8_t *zeros = calloc(1, n);
    sp_buf z, out;
    gzip_of(zeros, n, &z);
    free(zeros);
    assert_true(z.len < 200000); /* 64 MiB of zeros: ~64 KB of gzip */
    sp_buf_init(&out, 0);
    sp_err err = {0};
    assert_int_equal(wire_decompress(WIRE_ENC_GZIP, z.data, z.len, limit, &out, &err), SP_ETOOBIG);
    assert_int_equal(err.code, SP_ETOOBIG);
    assert_non_null(strstr(err.msg, "1048576"));
    /* Never reserved more than the limit. */
    assert_true(out.cap <= limit);
    assert_true(out.len <= limit);
    sp_buf_free(&z);
    sp_buf_free(&out);
}

static void zstd_bomb_stops_at_limit(void **state)
{
    size_t n = 32u << 20, limit = 100000;
    uint8_t *zeros = calloc(1, n);
    sp_buf z, out;
    zstd_of(zeros, n, &z);
    free(zeros);
    sp_buf_init(&out, 0);
    sp_err err = {0};
    assert_int_equal(wire_decompress(WIRE_ENC_ZSTD, z.data, z.len, limit, &out, &err), SP_ETOOBIG);
    assert_non_null(strstr(err.msg, "100000"));
    assert_true(out.cap <= limit);
    sp_buf_free(&z);
    sp_buf_free(&out);
}

static void output_of_exactly_the_limit_is_accepted(void **state)
{
    size_t n = 4096 * 3 + 17;
    uint8_t *in = pattern(n);
    wire_encoding encs[] = {WIRE_ENC_GZIP, WIRE_ENC_ZSTD};
    for (int i = 0; i < 2; i++) {
        sp_buf z, out;
        if (encs[i] == WIRE_ENC_GZIP)
            gzip_of(in, n, &z);
        else
            zstd_of(in, n, &z);
        sp_err err;
        sp_buf_init(&out, 0);
        assert_int_equal(wire_decompress(encs[i], z.data, z.len, n, &out, &err), 0);
        assert_int_equal(out.len, n);
        sp_buf_free(&out);
        sp_buf_init(&out, 0);
        assert_int_equal(wire_decompress(encs[i], z.data, z.len, n - 1, &out, &err), SP_ETOOBIG);
        sp_buf_free(&out);
        sp_buf_free(&z);
    }
    free(in);
}

static void identity_over_limit_is_too_big(void **state)
{
    sp_buf out;
    sp_buf_init(&out, 0);
    sp_err err;
    assert_int_equal(
        wire_decompress(WIRE_ENC_IDENTITY, (const uint8_t *)"abcdef", 6, 5, &out, &err),
        SP_ETOOBIG);
    assert_int_equal(
        wire_decompress(WIRE_ENC_IDENTITY, (const uint8_t *)"abcdef", 6, 6, &out, &err), 0);
    assert_int_equal(out.len, 6);
    sp_buf_free(&out);
}

static void rejects_truncated_gzip(void **state)
{
    size_t n = 100000;
    uint8_t *in = pattern(n);
    sp_buf z, out;
    gzip_of(in, n, &z);
    size_t cuts[] = {1, 5, 10, z.len / 2, z.len - 4, z.len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        sp_buf_init(&out, 0);
        sp_err err = {0};
        assert_int_equal(wire_decompress(WIRE_ENC_GZIP, z.data, cuts[i], n, &out, &err), SP_EINVAL);
        assert_true(err.msg[0] != 0);
        sp_buf_free(&out);
    }
    sp_buf_free(&z);
    free(in);
}

static void rejects_gzip_with_trailing_garbage(void **state)
{
    sp_buf z, out;
    gzip_of((const uint8_t *)"payload", 7, &z);
    sp_buf_append(&z, "junk", 4);
    sp_buf_init(&out, 0);
    sp_err err = {0};
    assert_int_equal(wire_decompress(WIRE_ENC_GZIP, z.data, z.len, 100, &out, &err), SP_EINVAL);
    sp_buf_free(&z);
    sp_buf_free(&out);
}

static void rejects_corrupt_data(void **state)
{
    const uint8_t junk[] = "definitely not compressed data at all";
    wire_encoding encs[] = {WIRE_ENC_GZIP, WIRE_ENC_DEFLATE, WIRE_ENC_ZSTD};
    for (int i = 0; i < 3; i++) {
        sp_buf out;
        sp_buf_init(&out, 0);
        sp_err err = {0};
        assert_int_equal(wire_decompress(encs[i], junk, sizeof junk - 1, 1000, &out, &err),
                         SP_EINVAL);
        assert_non_null(strstr(err.msg, wire_encoding_name(encs[i])));
        sp_buf_free(&out);
        /* Empty input is not a valid stream either. */
        sp_buf_init(&out, 0);
        assert_int_equal(wire_decompress(encs[i], junk, 0, 1000, &out, &err), SP_EINVAL);
        sp_buf_free(&out);
    }
}

static void rejects_truncated_zstd(void **state)
{
    size_t n = 100000;
    uint8_t *in = pattern(n);
    sp_buf z, out;
    zstd_of(in, n, &z);
    sp_buf_init(&out, 0);
    sp_err err = {0};
    assert_int_equal(wire_decompress(WIRE_ENC_ZSTD, z.data, z.len - 3, n, &out, &err), SP_EINVAL);
    sp_buf_free(&out);
    sp_buf_free(&z);
    free(in);
}

static void zstd_window_larger_than_accepted_is_refused(void **state)
{
    /* A streamed frame (no content size) declaring a 2^27-byte window. */
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cc, ZSTD_c_windowLog, 27);
    ZSTD_CCtx_setParameter(cc, ZSTD_c_enableLongDistanceMatching, 1);
    uint8_t *in = pattern(1000);
    uint8_t outb[4096];
    ZSTD_inBuffer ib = {in, 1000, 0};
    ZSTD_outBuffer ob = {outb, sizeof outb, 0};
    /* Feeding the input before ending keeps the content size out of the frame header, so the
     * header declares the full window. */
    assert_false(ZSTD_isError(ZSTD_compressStream2(cc, &ob, &ib, ZSTD_e_continue)));
    ZSTD_inBuffer none = {NULL, 0, 0};
    assert_int_equal(ZSTD_compressStream2(cc, &ob, &none, ZSTD_e_end), 0);
    ZSTD_freeCCtx(cc);
    sp_buf out;
    sp_buf_init(&out, 0);
    sp_err err = {0};
    assert_int_equal(wire_decompress(WIRE_ENC_ZSTD, outb, ob.pos, 1 << 20, &out, &err), SP_ETOOBIG);
    assert_non_null(strstr(err.msg, "window"));
    sp_buf_free(&out);
    free(in);
}

static void existing_output_is_appended_to(void **state)
{
    sp_buf z, out;
    gzip_of((const uint8_t *)"tail", 4, &z);
    sp_buf_init(&out, 0);
    sp_buf_append(&out, "head-", 5);
    sp_err err;
    assert_int_equal(wire_decompress(WIRE_ENC_GZIP, z.data, z.len, 4, &out, &err), 0);
    assert_int_equal(out.len, 9);
    assert_memory_equal(out.data, "head-tail", 9);
    sp_buf_free(&z);
    sp_buf_free(&out);
}

static void parses_encoding_names(void **state)
{
    wire_encoding e;
    sp_err err = {0};
    assert_int_equal(wire_encoding_parse(NULL, &e, &err), 0);
    assert_int_equal(e, WIRE_ENC_IDENTITY);
    assert_int_equal(wire_encoding_parse("", &e, &err), 0);
    assert_int_equal(e, WIRE_ENC_IDENTITY);
    assert_int_equal(wire_encoding_parse("identity", &e, &err), 0);
    assert_int_equal(e, WIRE_ENC_IDENTITY);
    assert_int_equal(wire_encoding_parse("GZip", &e, &err), 0);
    assert_int_equal(e, WIRE_ENC_GZIP);
    assert_int_equal(wire_encoding_parse("x-gzip", &e, &err), 0);
    assert_int_equal(e, WIRE_ENC_GZIP);
    assert_int_equal(wire_encoding_parse(" zstd ", &e, &err), 0);
    assert_int_equal(e, WIRE_ENC_ZSTD);
    assert_int_equal(wire_encoding_parse("deflate", &e, &err), 0);
    assert_int_equal(e, WIRE_ENC_DEFLATE);
    assert_int_equal(wire_encoding_parse("snappy", &e, &err), SP_EUNIMPL);
    assert_non_null(strstr(err.msg, "snappy"));
    assert_int_equal(wire_encoding_parse("gzip, br", &e, &err), SP_EUNIMPL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gzip_roundtrip_restores_the_input),
        cmocka_unit_test(gzip_of_empty_input_inflates_to_nothing),
        cmocka_unit_test(concatenated_gzip_members_are_joined),
        cmocka_unit_test(deflate_accepts_zlib_and_raw_streams),
        cmocka_unit_test(zstd_roundtrip_restores_the_input),
        cmocka_unit_test(gzip_bomb_stops_at_limit),
        cmocka_unit_test(zstd_bomb_stops_at_limit),
        cmocka_unit_test(output_of_exactly_the_limit_is_accepted),
        cmocka_unit_test(identity_over_limit_is_too_big),
        cmocka_unit_test(rejects_truncated_gzip),
        cmocka_unit_test(rejects_gzip_with_trailing_garbage),
        cmocka_unit_test(rejects_corrupt_data),
        cmocka_unit_test(rejects_truncated_zstd),
        cmocka_unit_test(zstd_window_larger_than_accepted_is_refused),
        cmocka_unit_test(existing_output_is_appended_to),
        cmocka_unit_test(parses_encoding_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
