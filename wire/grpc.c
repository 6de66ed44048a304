/* gRPC message framing: see grpc.h. Spec: grpc/doc/PROTOCOL-HTTP2.md ("Length-Prefixed-Message",
 * "Timeout") and grpc/doc/compression.md. */
#include "grpc.h"
#include "compress.h"

#include <string.h>

int wire_grpc_unframe(const uint8_t *body, size_t len, const char *grpc_encoding,
                      size_t max_msg_size, sp_buf *scratch, const uint8_t **msg, size_t *msglen,
                      sp_err *err)
{
    wire_encoding enc;
    /* An unsupported grpc-encoding is UNIMPLEMENTED whatever the flag says (compression.md). */
    int rc = wire_encoding_parse(grpc_encoding, &enc, err);
    if (rc)
        return rc;
    if (max_msg_size == 0)
        max_msg_size = WIRE_GRPC_DEFAULT_MAX_MSG;
    if (len == 0)
        return sp_fail(err, SP_EINVAL,
                       "request body holds no gRPC message (unary call expects "
                       "exactly one)");
    if (len < WIRE_GRPC_PREFIX_LEN)
        return sp_fail(err, SP_EINVAL,
                       "truncated gRPC message prefix: %zu of 5 bytes (1 flag + 4 length)", len);
    uint8_t flag = body[0];
    uint32_t n = (uint32_t)body[1] << 24 | (uint32_t)body[2] << 16 | (uint32_t)body[3] << 8 |
                 (uint32_t)body[4];
    if (flag > 1)
        return sp_fail(err, SP_EINVAL, "invalid gRPC compressed flag %u (must be 0 or 1)", flag);
    if (n > max_msg_size)
        return sp_fail(err, SP_ETOOBIG, "received message larger than max (%u vs. %zu)", n,
                       max_msg_size);
    size_t have = len - WIRE_GRPC_PREFIX_LEN;
    if (n > have)
        return sp_fail(err, SP_EINVAL,
                       "gRPC message length %u exceeds the %zu bytes that follow the prefix", n,
                       have);
    if (n < have)
        return sp_fail(err, SP_EINVAL,
                       "%zu bytes after the gRPC message (unary call expects exactly one message)",
                       have - n);
    const uint8_t *payload = body + WIRE_GRPC_PREFIX_LEN;
    if (flag == 0) {
        *msg = payload;
        *msglen = n;
        return 0;
    }
    if (enc == WIRE_ENC_IDENTITY)
        return sp_fail(err, SP_EINVAL, "compressed flag set but grpc-encoding is identity");
    scratch->len = 0;
    rc = wire_decompress(enc, payload, n, max_msg_size, scratch, err);
    if (rc == SP_ETOOBIG)
        return sp_fail(err, SP_ETOOBIG,
                       "received message after decompression larger than max (%u compressed "
                       "bytes inflate past %zu)",
                       n, max_msg_size);
    if (rc) {
        sp_err_prefix(err, "gRPC message (grpc-encoding %s): ", wire_encoding_name(enc));
        return rc;
    }
    *msg = scratch->data;
    *msglen = scratch->len;
    return 0;
}

int wire_grpc_frame(sp_buf *out, const uint8_t *msg, size_t len)
{
    if (len > UINT32_MAX)
        return SP_ETOOBIG;
    uint8_t prefix[WIRE_GRPC_PREFIX_LEN] = {0, (uint8_t)(len >> 24), (uint8_t)(len >> 16),
                                            (uint8_t)(len >> 8), (uint8_t)len};
    int rc = sp_buf_append(out, prefix, sizeof prefix);
    if (!rc && len)
        rc = sp_buf_append(out, msg, len);
    return rc;
}
