/* Compression codecs with an output cap: see compress.h. */
#include "compress.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

/* Largest zstd window accepted (2^24 = 16 MiB): enough for every standard compression level;
 * frames asking for more (long-distance mode) are refused rather than allowed to make the decoder
 * allocate up to the format's 2^31. */
#define ZSTD_WINDOWLOG_LIMIT 24

/* Output is grown in steps of at most this much, so a small bomb never reserves a big block. */
#define GROW_STEP (1u << 20)

int wire_encoding_parse(const char *name, wire_encoding *out, sp_err *err)
{
    *out = WIRE_ENC_IDENTITY;
    if (!name)
        return 0;
    while (*name == ' ' || *name == '\t')
        name++;
    size_t n = strlen(name);
    while (n && (name[n - 1] == ' ' || name[n - 1] == '\t'))
        n--;
    static const struct {
        const char *name;
        wire_encoding enc;
    } names[] = {
        {"identity", WIRE_ENC_IDENTITY}, {"gzip", WIRE_ENC_GZIP}, {"x-gzip", WIRE_ENC_GZIP},
        {"deflate", WIRE_ENC_DEFLATE},   {"zstd", WIRE_ENC_ZSTD},
    };
    if (n == 0)
        return 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strlen(names[i].name) == n && strncasecmp(name, names[i].name, n) == 0) {
            *out = names[i].enc;
            return 0;
        }
    }
    return sp_fail(err, SP_EUNIMPL,
                   "unsupported compression \"%.*s\" (supported: identity, gzip, deflate, zstd)",
                   (int)(n > 64 ? 64 : n), name);
}

const char *wire_encoding_name(wire_encoding enc)
{
    switch (enc) {
    case WIRE_ENC_GZIP:
        return "gzip";
    case WIRE_ENC_DEFLATE:
        return "deflate";
    case WIRE_ENC_ZSTD:
        return "zstd";
    default:
        return "identity";
    }
}

static int too_big(sp_err *err, wire_encoding enc, size_t limit)
{
    if (limit == 0)
        return sp_fail(err, SP_ETOOBIG, "%s data decompresses past the output buffer's limit",
                       wire_encoding_name(enc));
    return sp_fail(err, SP_ETOOBIG, "%s data decompresses to more than the %zu byte limit",
                   wire_encoding_name(enc), limit);
}

/* Makes room for more output: at least one byte, at most GROW_STEP. out->limit has been lowered
 * to the call's limit, so sp_buf never reserves past it. Returns the number of bytes available at
 * out->data + out->len, or 0 (with *rc = 0) when at the limit. */
static size_t grow(sp_buf *out, size_t hint, int *rc)
{
    *rc = 0;
    size_t room = out->cap - out->len;
    if (room > 0)
        return room;
    size_t want = hint < 4096 ? 4096 : hint;
    if (want > GROW_STEP)
        want = GROW_STEP;
    if (out->limit) {
        if (out->len >= out->limit)
            return 0;
        if (want > out->limit - out->len)
            want = out->limit - out->len;
    }
    *rc = sp_buf_reserve(out, want);
    if (*rc)
        return 0;
    return out->cap - out->len;
}

/* zlib: windowBits 15+16 = gzip only, 15 = zlib, -15 = raw deflate. */
static int inflate_all(wire_encoding enc, int window_bits, const uint8_t *in, size_t len,
                       size_t limit, sp_buf *out, sp_err *err)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, window_bits) != Z_OK)
        return sp_fail(err, SP_ENOMEM, "cannot initialise %s decoder", wire_encoding_name(enc));
    size_t start = out->len;
    const uint8_t *p = in, *end = in + len;
    int rc = 0;
    for (;;) {
        size_t chunk = (size_t)(end - p) > UINT32_MAX ? UINT32_MAX : (size_t)(end - p);
        zs.next_in = (Bytef *)p;
        zs.avail_in = (uInt)chunk;
        size_t room = grow(out, (out->len - start) + chunk * 2, &rc);
        if (rc == SP_ETOOBIG || (!rc && room == 0)) {
            /* At the limit: the stream may still end here without more output. Probe with a
             * one-byte buffer on the stack. */
            uint8_t probe;
            zs.next_out = &probe;
            zs.avail_out = 1;
            int zr = inflate(&zs, Z_NO_FLUSH);
            if (zs.avail_out == 0 || (zr != Z_STREAM_END && zr != Z_OK && zr != Z_BUF_ERROR)) {
                rc = zs.avail_out == 0
                         ? too_big(err, enc, limit)
                         : sp_fail(err, SP_EINVAL, "corrupt %s data: %s", wire_encoding_name(enc),
                                   zs.msg ? zs.msg : "inflate failed");
                goto done;
            }
            p = zs.next_in;
            if (zr == Z_STREAM_END)
                goto member_end;
            if (zr == Z_BUF_ERROR || p == end) {
                rc = sp_fail(err, SP_EINVAL, "truncated %s data", wire_encoding_name(enc));
                goto done;
            }
            continue;
        }
        if (rc) {
            rc = sp_fail(err, rc, "cannot allocate %s output", wire_encoding_name(enc));
            goto done;
        }
        if (room > UINT32_MAX)
            room = UINT32_MAX;
        zs.next_out = out->data + out->len;
        zs.avail_out = (uInt)room;
        int zr = inflate(&zs, Z_NO_FLUSH);
        out->len += room - zs.avail_out;
        p = zs.next_in;
        if (zr == Z_STREAM_END)
            goto member_end;
        if (zr == Z_OK)
            continue;
        if (zr == Z_BUF_ERROR && zs.avail_out != 0) {
            /* No progress possible with output room left: input ran out mid-stream. */
            rc = sp_fail(err, SP_EINVAL, "truncated %s data", wire_encoding_name(enc));
            goto done;
        }
        if (zr == Z_BUF_ERROR)
            continue;
        rc = sp_fail(err, SP_EINVAL, "corrupt %s data: %s", wire_encoding_name(enc),
                     zs.msg ? zs.msg : "inflate failed");
        goto done;
    member_end:
        /* gzip allows several members back to back (RFC 1952 section 2.2). */
        if (p == end || enc != WIRE_ENC_GZIP)
            break;
        if (inflateReset(&zs) != Z_OK) {
            rc = sp_fail(err, SP_EINTERNAL, "inflateReset failed");
            goto done;
        }
    }
    if (p != end)
        rc = sp_fail(err, SP_EINVAL, "%zu bytes of trailing data after the %s stream",
                     (size_t)(end - p), wire_encoding_name(enc));
done:
    inflateEnd(&zs);
    if (out->data)
        out->data[out->len] = 0;
    return rc;
}

/* RFC 1950 section 2.2: CM = 8 and the 16-bit header is a multiple of 31. */
static int looks_like_zlib(const uint8_t *in, size_t len)
{
    return len >= 2 && (in[0] & 0x0f) == 8 && (in[0] >> 4) <= 7 &&
           ((unsigned)in[0] << 8 | in[1]) % 31 == 0;
}

static int zstd_all(const uint8_t *in, size_t len, size_t limit, sp_buf *out, sp_err *err)
{
    ZSTD_DCtx *dc = ZSTD_createDCtx();
    if (!dc)
        return sp_fail(err, SP_ENOMEM, "cannot initialise zstd decoder");
    ZSTD_DCtx_setParameter(dc, ZSTD_d_windowLogMax, ZSTD_WINDOWLOG_LIMIT);
    ZSTD_inBuffer ib = {in, len, 0};
    size_t start = out->len;
    size_t last = 1; /* ZSTD_decompressStream's last return: 0 = a frame just ended */
    int rc = 0;
    while (ib.pos < ib.size || last != 0) {
        size_t room = grow(out, (out->len - start) + (len - ib.pos) * 2, &rc);
        if (rc == SP_ETOOBIG || (!rc && room == 0)) {
            uint8_t probe;
            ZSTD_outBuffer ob = {&probe, 1, 0};
            size_t before = ib.pos;
            size_t zr = ZSTD_decompressStream(dc, &ob, &ib);
            if (ZSTD_isError(zr)) {
                rc = sp_fail(err, SP_EINVAL, "corrupt zstd data: %s", ZSTD_getErrorName(zr));
                goto done;
            }
            if (ob.pos) {
                rc = too_big(err, WIRE_ENC_ZSTD, limit);
                goto done;
            }
            last = zr;
            if (ib.pos == before && zr != 0) {
                rc = sp_fail(err, SP_EINVAL, "truncated zstd data");
                goto done;
            }
            continue;
        }
        if (rc) {
            rc = sp_fail(err, rc, "cannot allocate zstd output");
            goto done;
        }
        ZSTD_outBuffer ob = {out->data + out->len, room, 0};
        size_t before = ib.pos;
        size_t zr = ZSTD_decompressStream(dc, &ob, &ib);
        if (ZSTD_isError(zr)) {
            if (ZSTD_getErrorCode(zr) == ZSTD_error_frameParameter_windowTooLarge)
                rc = sp_fail(err, SP_ETOOBIG, "zstd window larger than %u KiB is not accepted",
                             (1u << ZSTD_WINDOWLOG_LIMIT) / 1024);
            else
                rc = sp_fail(err, SP_EINVAL, "corrupt zstd data: %s", ZSTD_getErrorName(zr));
            goto done;
        }
        out->len += ob.pos;
        last = zr;
        if (ob.pos == 0 && ib.pos == before && zr != 0) {
            rc = sp_fail(err, SP_EINVAL, "truncated zstd data");
            goto done;
        }
    }
done:
    ZSTD_freeDCtx(dc);
    if (out->data)
        out->data[out->len] = 0;
    return rc;
}

int wire_decompress(wire_encoding enc, const uint8_t *in, size_t len, size_t limit, sp_buf *out,
                    sp_err *err)
{
    if (enc == WIRE_ENC_IDENTITY && limit && len > limit)
        return too_big(err, enc, limit);
    if (enc != WIRE_ENC_IDENTITY && len == 0)
        return sp_fail(err, SP_EINVAL, "empty %s data", wire_encoding_name(enc));
    /* The limit is on this call's output (out may already hold bytes). Lower out's own limit for
     * the duration of the call so that sp_buf's growth cannot reserve past it either. */
    size_t saved = out->limit;
    if (limit && (!out->limit || out->limit - out->len > limit))
        out->limit = out->len + limit;
    int rc;
    switch (enc) {
    case WIRE_ENC_IDENTITY:
        /* 0 bytes: no append (sp_buf_append of nothing to an unallocated buffer writes via NULL).
         */
        rc = len && sp_buf_append(out, in, len) ? too_big(err, enc, limit) : 0;
        break;
    case WIRE_ENC_GZIP:
        rc = inflate_all(enc, 15 + 16, in, len, limit, out, err);
        break;
    case WIRE_ENC_DEFLATE:
        rc = inflate_all(enc, looks_like_zlib(in, len) ? 15 : -15, in, len, limit, out, err);
        break;
    case WIRE_ENC_ZSTD:
        rc = zstd_all(in, len, limit, out, err);
        break;
    default:
        rc = sp_fail(err, SP_EUNIMPL, "unknown encoding %d", (int)enc);
        break;
    }
    out->limit = saved;
    return rc;
}

int wire_gzip_compress(const uint8_t *in, size_t len, int level, sp_buf *out, sp_err *err)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return sp_fail(err, SP_EINVAL, "cannot initialise gzip encoder (level %d)", level);
    int rc = 0;
    const uint8_t *p = in, *end = in + len;
    int zr;
    do {
        size_t chunk = (size_t)(end - p) > UINT32_MAX ? UINT32_MAX : (size_t)(end - p);
        zs.next_in = (Bytef *)p;
        zs.avail_in = (uInt)chunk;
        int flush = p + chunk == end ? Z_FINISH : Z_NO_FLUSH;
        do {
            size_t want = deflateBound(&zs, zs.avail_in) + 64;
            if ((rc = sp_buf_reserve(out, want)) != 0) {
                rc = sp_fail(err, rc, "cannot grow gzip output past %zu bytes", out->len);
                goto done;
            }
            size_t room = out->cap - out->len;
            if (room > UINT32_MAX)
                room = UINT32_MAX;
            zs.next_out = out->data + out->len;
            zs.avail_out = (uInt)room;
            zr = deflate(&zs, flush);
            out->len += room - zs.avail_out;
            if (zr == Z_STREAM_ERROR) {
                rc = sp_fail(err, SP_EINTERNAL, "deflate failed");
                goto done;
            }
        } while (zs.avail_out == 0);
        p += chunk - zs.avail_in;
    } while (zr != Z_STREAM_END);
done:
    deflateEnd(&zs);
    if (out->data && out->cap > out->len)
        out->data[out->len] = 0;
    return rc;
}
