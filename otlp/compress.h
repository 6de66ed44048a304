/* Body and message compression: gzip, zlib/deflate and zstd, with an output cap.
 *
 * Used for gRPC `grpc-encoding` (otlp/grpc.c) and OTLP/HTTP `Content-Encoding` (otlp/service.c),
 * and by any module that needs to inflate a peer's bytes. Decompression writes into a caller's
 * sp_buf and stops with SP_ETOOBIG as soon as the output would pass the limit, so a compression
 * bomb costs at most `limit` bytes of memory. Nothing here reads headers or knows about HTTP.
 */
#ifndef OTLP_COMPRESS_H
#define OTLP_COMPRESS_H

#include "../common/buf.h"
#include "../common/err.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
    OTLP_ENC_IDENTITY = 0,
    OTLP_ENC_GZIP,    /* RFC 1952, concatenated members allowed */
    OTLP_ENC_DEFLATE, /* RFC 1950 zlib stream; raw RFC 1951 deflate is accepted too */
    OTLP_ENC_ZSTD,    /* RFC 8878 */
} otlp_encoding;

/* Parses a grpc-encoding / Content-Encoding value (case-insensitive, surrounding blanks ignored;
 * NULL or "" = identity; "x-gzip" = gzip). Returns 0, or SP_EUNIMPL naming the encoding. */
int otlp_encoding_parse(const char *name, otlp_encoding *out, sp_err *err);
const char *otlp_encoding_name(otlp_encoding enc);

/* Decompresses in[0..len) into out, appending. Fails with SP_ETOOBIG ("... decompresses to more
 * than <limit> bytes") when the result would exceed limit bytes (0 = no limit besides out's own),
 * SP_EINVAL when the data is corrupt or truncated. On failure out may hold a partial result. */
int otlp_decompress(otlp_encoding enc, const uint8_t *in, size_t len, size_t limit, sp_buf *out,
                    sp_err *err);

/* gzip-compresses in[0..len) into out (appending) at zlib level (1..9, or -1 for the default). */
int otlp_gzip_compress(const uint8_t *in, size_t len, int level, sp_buf *out, sp_err *err);

#endif
