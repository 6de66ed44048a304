/* libFuzzer target: gRPC length-prefixed message unframing (wire/grpc.c), including decompression
 * of compressed messages under small size limits.
 * Input: byte 0 picks grpc-encoding, byte 1 the max message size, the rest is the body. */
#include "wire/grpc.h"

#include <stdint.h>
#include <string.h>
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    static const char *encs[] = {NULL, "identity", "gzip", "deflate", "zstd", "snappy", " GZip "};
    const char *enc = encs[data[0] % (sizeof encs / sizeof encs[0])];
    size_t max = (data[1] & 0x80) ? 0 : (size_t)(data[1] & 0x7f) * 257 + 1;
    const uint8_t *body = data + 2;
    size_t len = size - 2;

    sp_buf scratch;
    sp_buf_init(&scratch, 0);
    const uint8_t *msg = NULL;
    size_t msglen = 0;
    sp_err err = {0};
    int rc = wire_grpc_unframe(body, len, enc, max, &scratch, &msg, &msglen, &err);
    size_t limit = max ? max : WIRE_GRPC_DEFAULT_MAX_MSG;
    if (rc == 0) {
        CHECK(msglen <= limit);
        CHECK(len >= WIRE_GRPC_PREFIX_LEN);
        if (body[0] == 0) {
            /* Uncompressed: the message is the body after the prefix, not a copy. */
            CHECK(msg == body + WIRE_GRPC_PREFIX_LEN);
            CHECK(msglen == len - WIRE_GRPC_PREFIX_LEN);
        } else {
            CHECK(scratch.cap <= limit);
        }
        /* Re-framing gives a body that unframes to the same bytes. */
        sp_buf again;
        sp_buf_init(&again, 0);
        CHECK(wire_grpc_frame(&again, msg, msglen) == 0);
        const uint8_t *m2;
        size_t l2;
        sp_buf s2;
        sp_buf_init(&s2, 0);
        CHECK(wire_grpc_unframe(again.data, again.len, NULL, limit, &s2, &m2, &l2, &err) == 0);
        CHECK(l2 == msglen && (msglen == 0 || memcmp(m2, msg, msglen) == 0));
        sp_buf_free(&again);
        sp_buf_free(&s2);
    } else {
        CHECK(rc < 0 && err.code == rc && err.msg[0] != 0);
        CHECK(scratch.cap <= limit);
    }
    sp_buf_free(&scratch);

    return 0;
}
