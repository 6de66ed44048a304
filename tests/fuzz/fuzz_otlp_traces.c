/* libFuzzer target: ExportTraceServiceRequest bytes through otlp_decode (depth check, protobuf-c
 * unpack, span validation); accepted spans must satisfy the documented id and time rules. */
#include "otlp/decode.h"

#include <stdint.h>
#include <string.h>
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sp_arena *a = sp_arena_new(otlp_decode_budget(size));
    otlp_decoded dec;
    sp_err err = {0};
    int rc = otlp_decode(OTLP_SIGNAL_TRACES, data, size, a, &dec, &err);
    if (rc) {
        CHECK(rc == SP_EINVAL || rc == SP_ETOOBIG);
        CHECK(err.code == rc && err.msg[0] != 0);
        sp_arena_free(a);
        return 0;
    }
    const otlp_traces_req *req = (const otlp_traces_req *)dec.msg;
    size_t k = 0, bad = 0;
    for (size_t r = 0; r < req->n_resource_spans; r++)
        for (size_t s = 0; s < req->resource_spans[r]->n_scope_spans; s++) {
            const Opentelemetry__Proto__Trace__V1__ScopeSpans *ss =
                req->resource_spans[r]->scope_spans[s];
            for (size_t i = 0; i < ss->n_spans; i++, k++) {
                const Opentelemetry__Proto__Trace__V1__Span *sp = ss->spans[i];
                if (dec.verdict.is_bad[k]) {
                    bad++;
                    continue;
                }
                CHECK(sp->trace_id.len == 16 && sp->span_id.len == 8);
                CHECK(sp->parent_span_id.len == 0 || sp->parent_span_id.len == 8);
                CHECK(sp->end_time_unix_nano >= sp->start_time_unix_nano);
                /* Resource attributes in the plain form need no string table. */
            }
        }
    CHECK(k == dec.verdict.total && bad == dec.verdict.bad);
    sp_arena_free(a);
    return 0;
}
