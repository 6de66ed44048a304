/* Decode pipeline for OTLP requests: see decode.h. */
#include "decode.h"
#include "../wire/pb.h"

#include <string.h>

#define ARENA_FACTOR 32
#define ARENA_BASE   ((size_t)4 * 1024 * 1024)

/* protobuf-c allocator over the request arena that remembers whether the budget ran out, so an
 * unpack failure can be told apart from malformed input. */
typedef struct pb_arena {
    sp_arena *a;
    int exhausted;
} pb_arena;

static void *pb_alloc(void *data, size_t size)
{
    pb_arena *p = data;
    void *r = sp_arena_alloc(p->a, size);
    if (!r)
        p->exhausted = 1;
    return r;
}

static void pb_free(void *data, void *ptr)
{
    (void)data;
    (void)ptr;
}

size_t otlp_decode_budget(size_t len)
{
    if (len > (SIZE_MAX - ARENA_BASE) / ARENA_FACTOR)
        return SIZE_MAX;
    return len * ARENA_FACTOR + ARENA_BASE;
}

static int decode_any(int signal, const uint8_t *msg, size_t len, int detect_layout, sp_arena *a,
                      otlp_decoded *out, sp_err *err)
{
    memset(out, 0, sizeof *out);
    const ProtobufCMessageDescriptor *desc;
    const char *name;
    if (signal == OTLP_SIGNAL_PROFILES) {
        desc =
            &opentelemetry__proto__collector__profiles__v1development__export_profiles_service_request__descriptor;
        name = "ExportProfilesServiceRequest";
    } else if (signal == OTLP_SIGNAL_TRACES) {
        desc =
            &opentelemetry__proto__collector__trace__v1__export_trace_service_request__descriptor;
        name = "ExportTraceServiceRequest";
    } else {
        return sp_fail(err, SP_EINTERNAL, "otlp_decode: unknown signal %d", signal);
    }
    if (!msg)
        msg = (const uint8_t *)"";
    /* protobuf-c recurses once per nesting level without a limit: bound it first. */
    int rc = wire_pb_check_depth(desc, msg, len, WIRE_PB_MAX_DEPTH, err);
    if (rc) {
        sp_err_prefix(err, "%s does not decode: ", name);
        return rc;
    }
    if (signal == OTLP_SIGNAL_PROFILES && detect_layout) {
        rc = otlp_layout_normalize(msg, len, a, &msg, &len, &out->layout, err);
        if (rc) {
            if (rc == SP_EINVAL)
                sp_err_prefix(err, "%s does not decode: ", name);
            return rc;
        }
    }
    pb_arena pa = {a, 0};
    ProtobufCAllocator alloc = {pb_alloc, pb_free, &pa};
    out->msg = protobuf_c_message_unpack(desc, &alloc, len, msg);
    if (!out->msg) {
        if (pa.exhausted)
            return sp_fail(err, SP_ETOOBIG,
                           "%s of %zu bytes needs more memory than the decode budget allows "
                           "(%zu bytes reserved)",
                           name, len, sp_arena_used(a));
        return sp_fail(err, SP_EINVAL,
                       "%s does not decode as protobuf (%zu bytes): a field has the wrong wire "
                       "type or the message is corrupt",
                       name, len);
    }
    if (signal == OTLP_SIGNAL_PROFILES)
        return otlp_validate_profiles((const otlp_profiles_req *)out->msg, a, &out->verdict, err);
    return otlp_validate_traces((const otlp_traces_req *)out->msg, a, &out->verdict, err);
}

int otlp_decode(int signal, const uint8_t *msg, size_t len, sp_arena *a, otlp_decoded *out,
                sp_err *err)
{
    return decode_any(signal, msg, len, 1, a, out, err);
}

int otlp_decode_current(int signal, const uint8_t *msg, size_t len, sp_arena *a, otlp_decoded *out,
                        sp_err *err)
{
    return decode_any(signal, msg, len, 0, a, out, err);
}
