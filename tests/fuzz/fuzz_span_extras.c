/* libFuzzer target: the span extras blob (otlp/span_extras.c writes it, query/span_extras.c reads
 * it back from the span index for every /api/v1/traces/{id} answer). The input is a blob as read
 * from disk: the reader answers 0 or SP_EINVAL (damaged: "nothing kept"), never crashes, and
 * always appends well-formed JSON. When the input is a ResourceSpans with a span, that span is
 * written again under a cap picked by the first byte: the blob fits the cap and reads back
 * without damage. */
#include "common/arena.h"
#include "common/buf.h"
#include "common/err.h"
#include "otlp/span_extras.h"
#include "query/span_extras.h"
#include "wire/pb.h"

#include <jansson.h>
#include <stdint.h>
#include <string.h>
#include "fuzz_check.h"

/* Reads b[0..n) and checks the answer is one JSON object; returns the reader's code. */
static int read_back(const uint8_t *b, size_t n, sp_arena *a)
{
    sp_buf o;
    sp_buf_init(&o, 0);
    CHECK(sp_buf_append(&o, "{\"x\":0", 6) == 0);
    int rc = query_span_extras_json(&o, b, n, a);
    CHECK(rc == 0 || rc == SP_EINVAL || rc == SP_ETOOBIG);
    CHECK(sp_buf_append(&o, "}", 1) == 0);
    if (rc != SP_ETOOBIG) {
        json_t *j = json_loadb((const char *)o.data, o.len, 0, NULL);
        CHECK(j != NULL);
        json_decref(j);
    }
    sp_buf_free(&o);
    return rc;
}

static void rewrite(const uint8_t *data, size_t size, sp_arena *a)
{
    sp_err err = {0};
    const ProtobufCMessageDescriptor *d =
        &opentelemetry__proto__trace__v1__resource_spans__descriptor;
    if (wire_pb_check_depth(d, data, size, WIRE_PB_MAX_DEPTH, &err))
        return;
    ProtobufCAllocator alloc;
    sp_arena_protobuf_allocator(a, &alloc);
    Opentelemetry__Proto__Trace__V1__ResourceSpans *rs =
        opentelemetry__proto__trace__v1__resource_spans__unpack(&alloc, size, data);
    if (!rs || !rs->n_scope_spans || !rs->scope_spans[0]->n_spans)
        return;
    const Opentelemetry__Proto__Trace__V1__ScopeSpans *ss = rs->scope_spans[0];
    size_t cap = 64 + (size_t)data[0] * 64;
    otlp_extras_head h;
    if (otlp_extras_head_make(rs->resource, ss->scope, cap, a, &h))
        return;
    const uint8_t *b;
    uint32_t len;
    uint64_t cut = 0;
    if (otlp_span_extras(&h, ss->spans[0], cap, a, &b, &len, &cut))
        return; /* not even the fixed part fits: nothing kept, and said so by the caller */
    CHECK(b && len <= cap);
    CHECK(read_back(b, len, a) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sp_arena *a = sp_arena_new(64u << 20);
    CHECK(a);
    read_back(data, size, a);
    if (size)
        rewrite(data, size, a);
    sp_arena_free(a);
    return 0;
}
