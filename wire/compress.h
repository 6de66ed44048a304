/* Body and message compression: gzip, zlib/deflate and zstd, with an output cap.
 *
 * Used for gRPC `grpc-encoding` (wire/grpc.c) and OTLP/HTTP `Content-Encoding` (otlp/service.c),
 * and by any module that needs to inflate a peer's bytes. Decompression writes into a caller's
 * sp_buf and stops with SP_ETOOBIG as soon as the output would pass the limit, so a compression
 * bomb costs at most `limit` bytes of memory. Nothing here reads headers or knows about HTTP.
 */
#ifndef WIRE_COMPRESS_H
#define WIRE_COMPRESS_H

#include "../common/buf.h"
#include "../common/err.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
    WIRE_ENC_IDENTITY = 0,
    WIRE_ENC_GZIP,    /* RFC 1952, concatenated members allowed */
    WIRE_ENC_DEFLATE, /* RFC 1950 zlib stream; raw RFC 1951 deflate is accepted too */
    WIRE_ENC_ZSTD,    /* RFC 8878 */
} wire_encoding;

/* Parses a grpc-encoding / Content-Encoding value (case-insensitive, surrounding blanks ignored;
 * NULL or "" = identity; "x-gzip" = gzip). Returns 0, or SP_EUNIMPL naming the encoding. */
int wire_encoding_parse(const char *name, wire_encoding *out, sp_err *err);
const char *wire_encoding_name(wire_encoding enc);

/* Decompresses in[0..len) into out, appending. Fails with SP_ETOOBIG ("... decompresses to more
 * than <limit> bytes") when the result would exceed limit bytes (0 = no limit besides out's own),
 * SP_EINVAL when the data is corrupt or truncated. On failure out may hold a partial result. */
int wire_decompress(wire_encoding enc, const uint8_t *in, size_t len, size_t limit, sp_buf *out,
                    sp_err *err);

/* gzip-compresses in[0..len) into out (appending) at zlib level (1..9, or -1 for the default). */
int wire_gzip_compress(const uint8_t *in, size_t len, int level, sp_buf *out, sp_err *err);

#endif
