/* libFuzzer target: gzip / deflate / zstd decoding with an output cap (wire/compress.c).
 * Input: byte 0 picks the codec, byte 1 the output limit, the rest is the compressed data. The
 * same bytes are also gzip-compressed and must come back unchanged. */
#include "wire/compress.h"

#include <stdint.h>
#include <string.h>
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    static const wire_encoding encs[] = {WIRE_ENC_GZIP, WIRE_ENC_DEFLATE, WIRE_ENC_ZSTD,
                                         WIRE_ENC_IDENTITY};
    wire_encoding enc = encs[data[0] % 4];
    /* 0 = only out's own limit (1 MiB here); else 1 .. ~32 KiB. */
    size_t limit = data[1] == 0 ? 0 : (size_t)data[1] * 128 + (data[0] >> 2);
    const uint8_t *in = data + 2;
    size_t len = size - 2;

    sp_buf out;
    sp_buf_init(&out, 1 << 20);
    sp_err err = {0};
    int rc = wire_decompress(enc, in, len, limit, &out, &err);
    size_t cap = limit ? limit : (size_t)1 << 20;
    CHECK(out.len <= cap);
    CHECK(out.cap <= cap);
    CHECK(out.limit == (size_t)1 << 20); /* restored after the call */
    if (rc)
        CHECK(rc < 0 && err.code == rc && err.msg[0] != 0);
    if (rc == 0 && enc == WIRE_ENC_IDENTITY)
        CHECK(out.len == len && (len == 0 || memcmp(out.data, in, len) == 0));
    sp_buf_free(&out);

    /* Round trip through the encoder. */
    sp_buf z, back;
    sp_buf_init(&z, 0);
    sp_buf_init(&back, 0);
    CHECK(wire_gzip_compress(in, len, (data[0] % 9) + 1, &z, &err) == 0);
    CHECK(wire_decompress(WIRE_ENC_GZIP, z.data, z.len, len, &back, &err) == 0);
    CHECK(back.len == len && (len == 0 || memcmp(back.data, in, len) == 0));
    sp_buf_free(&z);
    sp_buf_free(&back);
    return 0;
}
