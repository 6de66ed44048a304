/* libFuzzer target: OTLP/HTTP JSON bodies through otlp_json_to_protobuf() (wire/pbjson.c with
 * OTLP's hex ids, path errors, depth and tree budget) and then otlp_decode_current(), as
 * otlp/service.c runs them. Byte 0 picks the signal (bit 0: traces or profiles); the rest is the
 * body. Errors must be the documented ones with a message; what converts must be protobuf that
 * decodes, and ids that came as hex must have their OTLP length. */
#include "otlp/decode.h"
#include "otlp/json.h"

#include <stdint.h>
#include <string.h>
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (1u << 20))
        return 0;
    int signal = data[0] & 1 ? OTLP_SIGNAL_PROFILES : OTLP_SIGNAL_TRACES;
    sp_buf pb;
    sp_buf_init(&pb, 0);
    sp_err err = {0};
    int rc = otlp_json_to_protobuf(signal, data + 1, size - 1, 4u << 20, &pb, &err);
    if (rc) {
        CHECK(rc == SP_EINVAL || rc == SP_ETOOBIG);
        CHECK(err.code == rc && err.msg[0] != 0);
        sp_buf_free(&pb);
        return 0;
    }
    sp_arena *a = sp_arena_new(otlp_decode_budget(pb.len));
    otlp_decoded dec;
    rc =
        otlp_decode_current(signal, pb.data ? pb.data : (const uint8_t *)"", pb.len, a, &dec, &err);
    /* What the codec packed is protobuf-c's own output: it unpacks (the depth limit is the same;
     * the validation may still reject a profiles request without a dictionary). */
    if (rc)
        CHECK(rc == SP_EINVAL && err.msg[0] != 0 &&
              (signal == OTLP_SIGNAL_PROFILES || strstr(err.msg, "nest") != NULL));
    if (!rc && signal == OTLP_SIGNAL_TRACES) {
        const otlp_traces_req *req = (const otlp_traces_req *)dec.msg;
        for (size_t r = 0; r < req->n_resource_spans; r++)
            for (size_t s = 0; s < req->resource_spans[r]->n_scope_spans; s++) {
                const Opentelemetry__Proto__Trace__V1__ScopeSpans *ss =
                    req->resource_spans[r]->scope_spans[s];
                for (size_t i = 0; i < ss->n_spans; i++) {
                    const Opentelemetry__Proto__Trace__V1__Span *sp = ss->spans[i];
                    CHECK(sp->trace_id.len == 0 || sp->trace_id.len == 16);
                    CHECK(sp->span_id.len == 0 || sp->span_id.len == 8);
                    CHECK(sp->parent_span_id.len == 0 || sp->parent_span_id.len == 8);
                }
            }
    }
    sp_arena_free(a);
    sp_buf_free(&pb);
    return 0;
}
