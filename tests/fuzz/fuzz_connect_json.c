/* libFuzzer target: the querier's Connect/gRPC JSON codec (wire/pbjson.c, query/connect.c) on the
 * querier.v1 request types Grafana sends, and a few response types (doubles, bytes, enums, nested
 * messages) the encoder writes.
 * Input: byte 0 picks the message type (low 4 bits) and how the body arrives (bits 4-5): straight
 * to wire_json_decode(), as a Connect unary application/json request, as gRPC+JSON (framed here)
 * or as a Connect request accepting gzip answers; the rest is the body.
 * What decodes is encoded again: the JSON must be valid, must decode to a message that encodes to
 * the same bytes, must survive a binary protobuf round trip, and query_rpc_reply() must answer it
 * with exactly those bytes. */
#include "wire/compress.h"
#include "query/connect.h"
#include "wire/pbjson.h"
#include "server/exchange.h"

#include "google/v1/profile.pb-c.h"
#include "querier/v1/querier.pb-c.h"
#include "types/v1/types.pb-c.h"

#include <jansson.h>
#include <stdint.h>
#include <string.h>
#include "fuzz_check.h"

static const ProtobufCMessageDescriptor *const types[16] = {
    &querier__v1__select_merge_stacktraces_request__descriptor,
    &querier__v1__select_series_request__descriptor,
    &types__v1__label_values_request__descriptor,
    &types__v1__label_names_request__descriptor,
    &querier__v1__series_request__descriptor,
    &querier__v1__profile_types_request__descriptor,
    &querier__v1__select_merge_span_profile_request__descriptor,
    &querier__v1__select_merge_profile_request__descriptor,
    &querier__v1__select_heatmap_request__descriptor,
    &querier__v1__diff_request__descriptor,
    &querier__v1__analyze_query_request__descriptor,
    &types__v1__get_profile_stats_request__descriptor,
    &querier__v1__select_series_response__descriptor,
    &querier__v1__select_merge_stacktraces_response__descriptor,
    &querier__v1__select_heatmap_response__descriptor,
    &google__v1__profile__descriptor,
};

static void encode(const ProtobufCMessage *m, sp_buf *out)
{
    sp_buf_init(out, 0);
    CHECK(wire_json_encode(m, out) == 0);
    /* What we write is JSON a client can read. */
    json_error_t je;
    json_t *doc = json_loadb((const char *)out->data, out->len, 0, &je);
    CHECK(doc && json_is_object(doc));
    json_decref(doc);
}

static const char *resp_header(const srv_response *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

static srv_exchange *request(const char *content_type, const char *accept_encoding,
                             const uint8_t *body, size_t len, int grpc)
{
    srv_exchange *ex = srv_exchange_new(SRV_HTTP2, 0);
    CHECK(ex);
    CHECK(srv_exchange_set_target(ex, "/querier.v1.QuerierService/Call", 31) == 0);
    CHECK(srv_exchange_add_header(ex, "Content-Type", 12, content_type, strlen(content_type)) == 0);
    if (accept_encoding)
        CHECK(srv_exchange_add_header(ex, "Accept-Encoding", 15, accept_encoding,
                                      strlen(accept_encoding)) == 0);
    if (grpc) {
        uint8_t prefix[5] = {0, (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                             (uint8_t)len};
        CHECK(sp_buf_append(&ex->req.body, prefix, 5) == 0);
    }
    CHECK(sp_buf_append(&ex->req.body, body, len) == 0);
    return ex;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (1u << 20))
        return 0;
    const ProtobufCMessageDescriptor *d = types[data[0] & 15];
    int mode = (data[0] >> 4) & 3;
    const uint8_t *body = data + 1;
    size_t len = size - 1;

    sp_arena *a = sp_arena_new(64u << 20);
    ProtobufCMessage *m = NULL;
    sp_err err = {0};
    srv_exchange *ex = NULL;
    query_rpc rpc = {0};
    int rc;
    if (mode == 0) {
        rc = wire_json_decode(d, body, len, a, &m, &err);
    } else {
        static const char *cts[] = {NULL, "application/json", "application/grpc+json",
                                    "application/json; charset=utf-8"};
        ex = request(cts[mode], mode == 3 ? "gzip, deflate, br" : NULL, body, len, mode == 2);
        rc = query_rpc_read(&ex->req, d, 4u << 20, a, &rpc, &m, &err);
        CHECK(rpc.json && rpc.grpc == (mode == 2));
    }
    if (rc) {
        CHECK(rc == SP_EINVAL || rc == SP_ETOOBIG);
        CHECK(err.code == rc && err.msg[0] != 0);
        if (ex) { /* the error answer is well-formed too */
            query_rpc_fail(&ex->resp, &rpc, &err);
            if (!rpc.grpc) {
                json_error_t je;
                json_t *doc =
                    json_loadb((const char *)ex->resp.body.data, ex->resp.body.len, 0, &je);
                CHECK(doc && json_is_string(json_object_get(doc, "message")));
                json_decref(doc);
            }
            srv_exchange_free(ex);
        }
        sp_arena_free(a);
        return 0;
    }
    CHECK(m && m->descriptor == d);

    /* JSON round trip: encode, decode, encode gives the same bytes. */
    sp_buf j1, j2;
    encode(m, &j1);
    ProtobufCMessage *m2 = NULL;
    CHECK(wire_json_decode(d, j1.data, j1.len, a, &m2, &err) == 0);
    encode(m2, &j2);
    CHECK(j1.len == j2.len && memcmp(j1.data, j2.data, j1.len) == 0);

    /* Binary round trip of what JSON decoded: the same message. */
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *bin = sp_arena_alloc(a, n + 1);
    CHECK(bin && protobuf_c_message_pack(m, bin) == n);
    ProtobufCAllocator alloc;
    sp_arena_protobuf_allocator(a, &alloc);
    ProtobufCMessage *m3 = protobuf_c_message_unpack(d, &alloc, n, bin);
    CHECK(m3);
    sp_buf j3;
    encode(m3, &j3);
    CHECK(j1.len == j3.len && memcmp(j1.data, j3.data, j1.len) == 0);

    /* The Connect / gRPC answer carries exactly the encoded JSON. */
    if (ex) {
        query_rpc_reply(&ex->resp, &rpc, m);
        const sp_buf *rb = &ex->resp.body;
        if (rpc.grpc) {
            CHECK(ex->resp.grpc && ex->resp.grpc_status == GRPC_OK);
            CHECK(rb->len == j1.len + 5 && rb->data[0] == 0);
            CHECK(((size_t)rb->data[1] << 24 | (size_t)rb->data[2] << 16 |
                   (size_t)rb->data[3] << 8 | rb->data[4]) == j1.len);
            CHECK(memcmp(rb->data + 5, j1.data, j1.len) == 0);
        } else {
            CHECK(ex->resp.status == 200);
            const char *ce = resp_header(&ex->resp, "content-encoding");
            sp_buf plain;
            sp_buf_init(&plain, 0);
            if (ce) { /* gzip only for a client that accepts it */
                CHECK(mode == 3 && strcmp(ce, "gzip") == 0);
                CHECK(wire_decompress(WIRE_ENC_GZIP, rb->data, rb->len, 0, &plain, &err) == 0);
                rb = &plain;
            }
            CHECK(rb->len == j1.len && memcmp(rb->data, j1.data, j1.len) == 0);
            sp_buf_free(&plain);
        }
        srv_exchange_free(ex);
    }
    sp_buf_free(&j1);
    sp_buf_free(&j2);
    sp_buf_free(&j3);
    sp_arena_free(a);
    return 0;
}
