/* gRPC message framing (gRPC over HTTP/2, "Length-Prefixed-Message"); grpc-timeout is the
 * server's (server/exchange.c), which turns it into the request deadline.
 *
 * A gRPC body is a sequence of messages, each prefixed by 1 byte Compressed-Flag and a 4-byte
 * big-endian Message-Length. spanprof's services are unary, so wire_grpc_unframe() accepts
 * exactly one message. Called by otlp/service.c (and by query/ for its gRPC routes); this file
 * never looks at what the message contains and never builds a response.
 */
#ifndef WIRE_GRPC_H
#define WIRE_GRPC_H

#include "../common/buf.h"
#include "../common/err.h"

#include <stddef.h>
#include <stdint.h>

/* Default limit on a received message, compressed and after decompression (spanprof's
 * --max-recv-msg-size default; eBPF profiler requests of a busy host stay well below it). */
#define WIRE_GRPC_DEFAULT_MAX_MSG (64u * 1024 * 1024)

#define WIRE_GRPC_PREFIX_LEN 5

/* Extracts the single message of a unary request body.
 *   body/len        the HTTP/2 DATA bytes of the request
 *   grpc_encoding   the request's grpc-encoding header (NULL = identity)
 *   max_msg_size    limit on the message, compressed and after decompression (0 = default)
 *   scratch         an sp_buf owned by the caller (sp_buf_init'ed, freed by the caller); used only
 *                   when the message is compressed
 *   msg/msglen      the message: points into body, or into scratch when it was compressed
 * Errors: SP_EINVAL for a truncated prefix, a length that disagrees with the body, trailing bytes,
 * a compressed flag other than 0/1, or a compressed flag with identity encoding; SP_EUNIMPL for an
 * unsupported grpc-encoding; SP_ETOOBIG ("received message larger than max (N vs. M)") past the
 * size limit. */
int wire_grpc_unframe(const uint8_t *body, size_t len, const char *grpc_encoding,
                      size_t max_msg_size, sp_buf *scratch, const uint8_t **msg, size_t *msglen,
                      sp_err *err);

/* Appends one uncompressed length-prefixed message to out. */
int wire_grpc_frame(sp_buf *out, const uint8_t *msg, size_t len);

#endif
