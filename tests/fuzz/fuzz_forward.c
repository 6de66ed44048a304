/* libFuzzer target: the wire-level splice of delivery/forward.c that adds pyroscope.profile.id to
 * marked spans of an ExportTraceServiceRequest.
 *
 * Input: byte 0 picks which spans are marked (span i of the decoded request when bit i % 8 is
 * set; for bytes protobuf-c refuses, the 8-byte chunks of the start of the message), the rest is
 * the request. Invariants:
 * - forward_enrich() either refuses with SP_EINVAL and a message, or succeeds; it never
 *   refuses a request that protobuf-c (the generated trace_service.pb-c.h) decodes;
 * - with nothing added, the output is the input, byte for byte;
 * - the output decodes to the input's message except that every marked span (8-byte span_id among
 *   the ids, no pyroscope.profile.id attribute yet) got exactly one more attribute, last, with the
 *   span id in lower-case hex as its string value; unknown fields are kept (compared by packing
 *   both messages again, which writes protobuf-c's unknown fields back);
 * - enriching the output again with the same ids adds nothing and changes no byte.
 */
#include "delivery/forward.h"
#include "wire/pb.h"

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz_check.h"

typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest req_t;
typedef Opentelemetry__Proto__Trace__V1__Span span_t;
#define REQ_DESC                                                                                   \
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__descriptor

enum { MAX_IDS = 4096 };

static req_t *decode(const uint8_t *p, size_t n)
{
    sp_err err = {0};
    /* protobuf-c recurses once per nesting level: the depth check keeps it off deep inputs. */
    if (wire_pb_check_depth(&REQ_DESC, p, n, WIRE_PB_MAX_DEPTH, &err))
        return NULL;
    return (req_t *)protobuf_c_message_unpack(&REQ_DESC, NULL, n, p);
}

/* Calls fn on every span, in order. */
#define FOR_SPANS(r, sp, body)                                                                     \
    for (size_t ri_ = 0; ri_ < (r)->n_resource_spans; ri_++)                                       \
        for (size_t si_ = 0; si_ < (r)->resource_spans[ri_]->n_scope_spans; si_++)                 \
            for (size_t k_ = 0; k_ < (r)->resource_spans[ri_]->scope_spans[si_]->n_spans; k_++) {  \
                span_t *sp = (r)->resource_spans[ri_]->scope_spans[si_]->spans[k_];                \
                body                                                                               \
            }

static int has_id(const uint8_t (*ids)[8], size_t n, const uint8_t *id)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(ids[i], id, 8) == 0)
            return 1;
    return 0;
}

static int has_attr(const span_t *sp)
{
    for (size_t i = 0; i < sp->n_attributes; i++)
        if (sp->attributes[i]->key && strcmp(sp->attributes[i]->key, FORWARD_ATTR) == 0)
            return 1;
    return 0;
}

static int wants(const span_t *sp, const uint8_t (*ids)[8], size_t n)
{
    return sp->span_id.len == 8 && has_id(ids, n, sp->span_id.data) && !has_attr(sp);
}

static void packed(const req_t *r, uint8_t **out, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(&r->base);
    *out = malloc(*len ? *len : 1);
    CHECK(*out);
    CHECK(protobuf_c_message_pack(&r->base, *out) == *len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t sel = data[0];
    const uint8_t *msg = data + 1;
    size_t len = size - 1;

    static uint8_t ids[MAX_IDS][8];
    size_t nids = 0;
    req_t *in = decode(msg, len);
    if (in) {
        size_t i = 0;
        FOR_SPANS(in, sp, {
            if (sp->span_id.len == 8 && ((sel >> (i % 8)) & 1) && nids < MAX_IDS)
                memcpy(ids[nids++], sp->span_id.data, 8);
            i++;
        })
    } else {
        for (size_t off = 0; off + 8 <= len && off < 64; off += 8)
            if ((sel >> (off / 8)) & 1)
                memcpy(ids[nids++], msg + off, 8);
    }

    sp_buf out;
    sp_buf_init(&out, 0);
    size_t added = 0;
    sp_err err = {0};
    int rc = forward_enrich(msg, len, (const uint8_t(*)[8])ids, nids, &out, &added, &err);
    if (rc) {
        CHECK(rc == SP_EINVAL && err.code == SP_EINVAL && err.msg[0]);
        CHECK(!in); /* a request protobuf-c reads is never refused */
        sp_buf_free(&out);
        return 0;
    }
    if (!added)
        CHECK(out.len == len && (!len || memcmp(out.data, msg, len) == 0));
    else
        CHECK(out.len > len);

    /* Idempotent: a marked span has the attribute now, so a second pass adds nothing. */
    sp_buf again;
    sp_buf_init(&again, 0);
    size_t added2 = 1;
    CHECK(forward_enrich(out.data ? out.data : msg, out.len, (const uint8_t(*)[8])ids, nids, &again,
                         &added2, &err) == 0);
    CHECK(added2 == 0 && again.len == out.len &&
          (!out.len || memcmp(again.data, out.data, out.len) == 0));
    sp_buf_free(&again);

    if (in) {
        req_t *o = decode(out.data ? out.data : msg, out.len);
        CHECK(o);
        /* Same shape (only attributes grow); strip each expected attribute after checking it. */
        CHECK(o->n_resource_spans == in->n_resource_spans);
        size_t expected = 0, total = 0;
        for (size_t r = 0; r < in->n_resource_spans; r++) {
            CHECK(o->resource_spans[r]->n_scope_spans == in->resource_spans[r]->n_scope_spans);
            for (size_t s = 0; s < in->resource_spans[r]->n_scope_spans; s++)
                CHECK(o->resource_spans[r]->scope_spans[s]->n_spans ==
                      in->resource_spans[r]->scope_spans[s]->n_spans);
        }
        FOR_SPANS(in, sp, {
            span_t *os = o->resource_spans[ri_]->scope_spans[si_]->spans[k_];
            total++;
            if (!wants(sp, (const uint8_t(*)[8])ids, nids)) {
                CHECK(os->n_attributes == sp->n_attributes);
                continue;
            }
            expected++;
            CHECK(os->n_attributes == sp->n_attributes + 1);
            const Opentelemetry__Proto__Common__V1__KeyValue *kv =
                os->attributes[os->n_attributes - 1];
            CHECK(strcmp(kv->key, FORWARD_ATTR) == 0);
            CHECK(kv->value && kv->value->value_case ==
                                   OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE);
            char hex[17];
            static const char d[] = "0123456789abcdef";
            for (int b = 0; b < 8; b++) {
                hex[2 * b] = d[sp->span_id.data[b] >> 4];
                hex[2 * b + 1] = d[sp->span_id.data[b] & 15];
            }
            hex[16] = 0;
            CHECK(strcmp(kv->value->string_value, hex) == 0);
            os->n_attributes--; /* restored below so free_unpacked frees it */
        })
        CHECK(added == expected);
        uint8_t *a, *b;
        size_t alen, blen;
        packed(in, &a, &alen);
        packed(o, &b, &blen);
        CHECK(alen == blen && memcmp(a, b, alen) == 0);
        free(a);
        free(b);
        FOR_SPANS(in, sp, {
            span_t *os = o->resource_spans[ri_]->scope_spans[si_]->spans[k_];
            if (wants(sp, (const uint8_t(*)[8])ids, nids))
                os->n_attributes++;
        })
        (void)total;
        protobuf_c_message_free_unpacked(&o->base, NULL);
        protobuf_c_message_free_unpacked(&in->base, NULL);
    }
    sp_buf_free(&out);
    return 0;
}
