/* OTLP/HTTP JSON -> protobuf bytes: see json.h. Spec: OTLP 1.x "JSON Protobuf Encoding". */
#include "json.h"
#include "decode.h"

#include "../common/arena.h"
#include "../wire/pb.h"
#include "../wire/pbjson.h"

#include "opentelemetry/proto/profiles/v1development/profiles.pb-c.h"
#include "opentelemetry/proto/trace/v1/trace.pb-c.h"

#include <string.h>

/* "traceId and spanId ... MUST be represented as case-insensitive hex-encoded strings; they are
 * not base64-encoded" (OTLP spec, JSON Protobuf Encoding). The Collector's pdata writes
 * Profile.profile_id as hex too; protojson writers would write base64: both are read. */
static wire_json_bytes otlp_bytes_form(const ProtobufCMessageDescriptor *d,
                                       const ProtobufCFieldDescriptor *f, size_t *want)
{
    int span = d == &opentelemetry__proto__trace__v1__span__descriptor;
    if (span || d == &opentelemetry__proto__trace__v1__span__link__descriptor ||
        d == &opentelemetry__proto__profiles__v1development__link__descriptor) {
        if (strcmp(f->name, "trace_id") == 0) {
            *want = 16;
            return WIRE_JSON_BYTES_HEX;
        }
        if (strcmp(f->name, "span_id") == 0 || (span && strcmp(f->name, "parent_span_id") == 0)) {
            *want = 8;
            return WIRE_JSON_BYTES_HEX;
        }
    }
    if (d == &opentelemetry__proto__profiles__v1development__profile__descriptor &&
        strcmp(f->name, "profile_id") == 0) {
        *want = 16;
        return WIRE_JSON_BYTES_HEX_OR_BASE64;
    }
    return WIRE_JSON_BYTES_BASE64;
}

int otlp_json_to_protobuf(int signal, const uint8_t *json, size_t len, size_t max, sp_buf *out,
                          sp_err *err)
{
    const ProtobufCMessageDescriptor *desc;
    if (signal == OTLP_SIGNAL_PROFILES)
        desc =
            &opentelemetry__proto__collector__profiles__v1development__export_profiles_service_request__descriptor;
    else if (signal == OTLP_SIGNAL_TRACES)
        desc =
            &opentelemetry__proto__collector__trace__v1__export_trace_service_request__descriptor;
    else
        return sp_fail(err, SP_EINTERNAL, "otlp_json_to_protobuf: unknown signal %d", signal);
    size_t budget = otlp_decode_budget(len);
    sp_arena *a = sp_arena_new(budget);
    if (!a)
        return sp_fail(err, SP_ENOMEM, "cannot allocate a JSON decode arena");
    wire_json_opts opts = {.bytes_form = otlp_bytes_form,
                           .paths = 1,
                           .max_depth = WIRE_PB_MAX_DEPTH,
                           .max_tree_bytes = budget};
    ProtobufCMessage *m = NULL;
    int rc = wire_json_decode_opts(desc, json ? json : (const uint8_t *)"", len, a, &opts, &m, err);
    if (!rc) {
        size_t n = protobuf_c_message_get_packed_size(m);
        if (n > max)
            rc = sp_fail(err, SP_ETOOBIG,
                         "the JSON body is %zu bytes of protobuf, larger than max (%zu bytes)", n,
                         max);
        else if ((rc = sp_buf_reserve(out, n + 1)) != 0)
            rc = sp_fail(err, rc == SP_ETOOBIG ? SP_ETOOBIG : SP_ENOMEM,
                         "cannot hold the %zu-byte message", n);
        else
            out->len += protobuf_c_message_pack(m, out->data + out->len);
    }
    sp_arena_free(a);
    return rc;
}
