/* Connect unary and gRPC codec for the querier API (see connect.h). Protocol references:
 * connectrpc.com/docs/protocol ("Unary-Request", "Unary-Response", "Error Codes") and
 * grpc/doc/PROTOCOL-HTTP2.md ("Length-Prefixed-Message"). */
#include "connect.h"
#include "../wire/compress.h"
#include "../wire/grpc.h"
#include "../wire/pbjson.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Connect answers bigger than this are gzipped for clients that accept it (connect-go's own
 * default compress-min-bytes is 0; small bodies do not gain anything). */
#define GZIP_MIN_BYTES 1024

static int media_is(const char *ct, const char *want)
{
    size_t n = strlen(want);
    return strncasecmp(ct, want, n) == 0 && (ct[n] == 0 || ct[n] == ';' || ct[n] == ' ');
}

/* Whether a comma-separated Accept-Encoding list names gzip (q=0 excluded). */
static int accepts_gzip(const char *ae)
{
    for (const char *p = ae; p && *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *semi = memchr(p, ';', len);
        size_t tok = semi ? (size_t)(semi - p) : len;
        while (tok && p[tok - 1] == ' ')
            tok--;
        if (tok == 4 && strncasecmp(p, "gzip", 4) == 0) {
            const char *q = semi ? strstr(semi, "q=") : NULL;
            if (!q || q > p + len || strtod(q + 2, NULL) > 0)
                return 1;
        }
        p += len;
    }
    return 0;
}

void query_rpc_detect(const srv_request *req, query_rpc *rpc)
{
    memset(rpc, 0, sizeof *rpc);
    const char *ct = srv_header_get(req, "content-type");
    rpc->grpc = srv_request_is_grpc(req);
    if (rpc->grpc)
        rpc->json = ct && media_is(ct, "application/grpc+json");
    else
        rpc->json = ct && media_is(ct, "application/json");
    rpc->gzip_ok = !rpc->grpc && accepts_gzip(srv_header_get(req, "accept-encoding"));
    const char *echo =
        rpc->grpc ? (rpc->json                                      ? "application/grpc+json"
                     : ct && media_is(ct, "application/grpc+proto") ? "application/grpc+proto"
                                                                    : "application/grpc")
                  : (rpc->json ? "application/json" : "application/proto");
    snprintf(rpc->content_type, sizeof rpc->content_type, "%s", echo);
}

int query_rpc_read(const srv_request *req, const ProtobufCMessageDescriptor *d, size_t max_msg,
                   sp_arena *a, query_rpc *rpc, ProtobufCMessage **msg, sp_err *err)
{
    query_rpc_detect(req, rpc);
    const char *ct = srv_header_get(req, "content-type");
    if (!rpc->grpc && !rpc->json &&
        !(ct && (media_is(ct, "application/proto") || media_is(ct, "application/x-protobuf") ||
                 media_is(ct, "application/protobuf"))))
        return sp_fail(err, SP_EMEDIA,
                       "content-type %s is not supported: use application/proto or "
                       "application/json (Connect), or application/grpc",
                       ct ? ct : "(none)");
    if (rpc->grpc && !rpc->json && !media_is(ct, "application/grpc") &&
        !media_is(ct, "application/grpc+proto"))
        return sp_fail(err, SP_EMEDIA,
                       "content-type %s is not supported: use application/grpc, "
                       "application/grpc+proto or application/grpc+json",
                       ct);
    sp_buf scratch;
    sp_buf_init(&scratch, 0);
    const uint8_t *body = req->body.data;
    size_t len = req->body.len;
    int rc = 0;
    if (rpc->grpc) {
        rc = wire_grpc_unframe(req->body.data, req->body.len, srv_header_get(req, "grpc-encoding"),
                               max_msg, &scratch, &body, &len, err);
    } else {
        const char *ce = srv_header_get(req, "content-encoding");
        wire_encoding enc = WIRE_ENC_IDENTITY;
        if (ce && *ce && !(rc = wire_encoding_parse(ce, &enc, err)) && enc != WIRE_ENC_IDENTITY &&
            !(rc = wire_decompress(enc, body, len, max_msg, &scratch, err))) {
            body = scratch.data;
            len = scratch.len;
        }
    }
    if (!rc && rpc->json) {
        rc = wire_json_decode(d, body ? body : (const uint8_t *)"", len, a, msg, err);
        if (rc == SP_EINVAL)
            sp_err_prefix(err, "%s: ", d->name);
    } else if (!rc) {
        ProtobufCAllocator alloc;
        sp_arena_protobuf_allocator(a, &alloc);
        static const uint8_t empty[1];
        *msg = protobuf_c_message_unpack(d, &alloc, len, body ? body : empty);
        if (!*msg)
            rc = sp_fail(err, SP_EINVAL, "body is not a %s (protobuf decoding failed)", d->name);
    }
    sp_buf_free(&scratch);
    return rc;
}

void query_rpc_reply(srv_response *resp, const query_rpc *rpc, const ProtobufCMessage *msg)
{
    sp_buf body;
    sp_buf_init(&body, 0);
    int rc = 0;
    if (rpc->grpc) /* room for the 5-byte prefix, filled in below */
        rc = sp_buf_append(&body, "\0\0\0\0\0", WIRE_GRPC_PREFIX_LEN);
    if (!rc && rpc->json) {
        rc = wire_json_encode(msg, &body);
    } else if (!rc) {
        size_t n = protobuf_c_message_get_packed_size(msg);
        if (!(rc = sp_buf_reserve(&body, n + 1))) {
            protobuf_c_message_pack(msg, body.data + body.len);
            body.len += n;
        }
    }
    if (rc) {
        sp_err err;
        sp_fail(&err, rc == SP_ETOOBIG ? SP_ETOOBIG : SP_ENOMEM,
                "the answer is too large to encode; narrow the query (time range, labels, "
                "max_nodes)");
        query_rpc_fail(resp, rpc, &err);
        sp_buf_free(&body);
        return;
    }
    if (rpc->grpc) {
        size_t n = body.len - WIRE_GRPC_PREFIX_LEN;
        body.data[0] = 0;
        body.data[1] = (uint8_t)(n >> 24);
        body.data[2] = (uint8_t)(n >> 16);
        body.data[3] = (uint8_t)(n >> 8);
        body.data[4] = (uint8_t)n;
        srv_response_header(resp, "content-type", rpc->content_type);
        srv_response_grpc(resp, GRPC_OK, NULL, body.data, body.len);
        sp_buf_free(&body);
        return;
    }
    if (rpc->gzip_ok && body.len >= GZIP_MIN_BYTES) {
        sp_buf gz;
        sp_buf_init(&gz, 0);
        sp_err err;
        if (wire_gzip_compress(body.data, body.len, 6, &gz, &err) == 0 && gz.len < body.len) {
            srv_response_header(resp, "content-encoding", "gzip");
            srv_response_send(resp, 200, rpc->content_type, gz.data, gz.len);
            sp_buf_free(&gz);
            sp_buf_free(&body);
            return;
        }
        sp_buf_free(&gz);
    }
    srv_response_send(resp, 200, rpc->content_type, body.data, body.len);
    sp_buf_free(&body);
}

void query_rpc_fail(srv_response *resp, const query_rpc *rpc, const sp_err *err)
{
    if (rpc->grpc) {
        int code = err ? err->code : SP_EINTERNAL;
        srv_response_grpc(resp, srv_status_grpc(code),
                          err && err->msg[0] ? err->msg : sp_code_name(code), NULL, 0);
        return;
    }
    srv_response_connect_error(resp, err);
}
