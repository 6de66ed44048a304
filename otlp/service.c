/* OTLP Export services over gRPC and OTLP/HTTP: see service.h. Specs: OTLP 1.x "OTLP/gRPC" and
 * "OTLP/HTTP" (partial success, failures, google.rpc.Status error bodies), gRPC PROTOCOL-HTTP2.md.
 */
#include "service.h"
#include "../wire/compress.h"
#include "convert.h"
#include "decode.h"
#include "json.h"
#include "../wire/grpc.h"
#include "spans.h"
#include "../wire/pb.h"
#include "../wire/pbjson.h"

#include "../common/arena.h"
#include "../common/log.h"
#include "../common/metrics.h"

#include <protobuf-c/protobuf-c.h>
#include <stdatomic.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Profile Exports being handled by this process's workers. The dictionary's helper thread
 * (otlp/decode.c) only pays when a core would otherwise be idle: with another Export being
 * converted beside this one, both cores have work, and the helper's extra thread, arena blocks
 * and cross-core reads cost throughput (bench/RESULTS.md). */
static atomic_int profile_exports;

typedef struct signal_def {
    int signal;
    const char *items; /* "profiles" / "spans" */
} signal_def;

static const signal_def profiles_def = {OTLP_SIGNAL_PROFILES, "profiles"};
static const signal_def traces_def = {OTLP_SIGNAL_TRACES, "spans"};

/* One request's decode state; everything is released by work_free(). */
/* A request with at least twice this many samples over more than one resource_profiles entry
 * is handed on in parts of about this many (whole resources: the eBPF profiler sends one per
 * process), so the store writes the first parts while the rest are decoded, converted and
 * correlated. Smaller parts start the writer sooner but cost a correlator and queue round each. */
#define STREAM_PART_SAMPLES 4096

typedef struct work {
    const otlp_config *cfg;
    const signal_def *sig;
    int grpc;
    int json; /* OTLP/HTTP with Content-Type application/json: JSON in, JSON out */
    size_t max;
    sp_buf scratch; /* decompressed message */
    sp_buf packed;  /* a JSON body packed as protobuf (otlp/json.h) */
    sp_arena *arena;
    const uint8_t *msg;
    size_t msglen;
    otlp_decoded dec;
    otlp_profiles_lazy *lazy; /* a large profiles request, unpacked resource by resource */
} work;

static void work_free(work *w)
{
    sp_buf_free(&w->scratch);
    sp_buf_free(&w->packed);
    sp_arena_free(w->arena);
}

static int64_t wall_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Media type without parameters equals want (case-insensitive)? */
static int media_type_is(const char *ct, const char *want)
{
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = strcspn(ct, ";");
    while (n && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    return strlen(want) == n && strncasecmp(ct, want, n) == 0;
}

/* gRPC: the message from the length-prefixed body. */
static int grpc_message(const srv_request *req, work *w, sp_err *err)
{
    const uint8_t *body = req->body.data;
    size_t len = req->body.len;
    const char *ct = srv_header_get(req, "content-type");
    if (!srv_request_is_grpc(req))
        return sp_fail(err, SP_EMEDIA, "content-type \"%.64s\" is not application/grpc",
                       ct ? ct : "");
    if (ct[16] == '+' && !media_type_is(ct, "application/grpc+proto"))
        return sp_fail(err, SP_EMEDIA,
                       "content-type \"%.64s\" is not supported (use application/grpc or "
                       "application/grpc+proto)",
                       ct);
    if (req->body_too_big) {
        /* The server stopped buffering; the prefix, if it arrived, still says how big. */
        if (len >= WIRE_GRPC_PREFIX_LEN) {
            uint32_t n = (uint32_t)body[1] << 24 | (uint32_t)body[2] << 16 |
                         (uint32_t)body[3] << 8 | (uint32_t)body[4];
            if (n > w->max)
                return sp_fail(err, SP_ETOOBIG, "received message larger than max (%u vs. %zu)", n,
                               w->max);
        }
        return sp_fail(err, SP_ETOOBIG, "request body larger than max (more than %zu bytes)",
                       w->max);
    }
    return wire_grpc_unframe(body, len, srv_header_get(req, "grpc-encoding"), w->max, &w->scratch,
                             &w->msg, &w->msglen, err);
}

/* OTLP/HTTP: the message from the (possibly compressed) body. */
static int http_message(const srv_request *req, work *w, sp_err *err)
{
    const char *ct = srv_header_get(req, "content-type");
    if (!ct || !*ct)
        return sp_fail(err, SP_EMEDIA,
                       "missing Content-Type (OTLP/HTTP takes application/x-protobuf or "
                       "application/json)");
    if (!w->json && !media_type_is(ct, "application/x-protobuf") &&
        !media_type_is(ct, "application/protobuf"))
        return sp_fail(err, SP_EMEDIA,
                       "Content-Type \"%.64s\" is not supported (OTLP/HTTP takes "
                       "application/x-protobuf or application/json)",
                       ct);
    if (req->body_too_big)
        return sp_fail(err, SP_ETOOBIG, "request body larger than max (more than %zu bytes)",
                       w->max);
    wire_encoding enc;
    int rc = wire_encoding_parse(srv_header_get(req, "content-encoding"), &enc, err);
    if (rc)
        return sp_fail(err, SP_EMEDIA, "%s", err->msg); /* HTTP says 415 for an encoding */
    if (enc == WIRE_ENC_IDENTITY) {
        if (req->body.len > w->max)
            return sp_fail(err, SP_ETOOBIG, "received message larger than max (%zu vs. %zu)",
                           req->body.len, w->max);
        w->msg = req->body.data;
        w->msglen = req->body.len;
        return 0;
    }
    rc = wire_decompress(enc, req->body.data, req->body.len, w->max, &w->scratch, err);
    if (rc) {
        sp_err_prefix(err, "request body (Content-Encoding %s): ", wire_encoding_name(enc));
        return rc;
    }
    w->msg = w->scratch.data;
    w->msglen = w->scratch.len;
    return 0;
}

/* OTLP/HTTP JSON: the body becomes the protobuf bytes the rest of the path (and forwarding)
 * reads. */
static int json_message(work *w, sp_err *err)
{
    sp_buf_init(&w->packed, 0);
    int rc = otlp_json_to_protobuf(w->sig->signal, w->msg, w->msglen, w->max, &w->packed, err);
    if (rc)
        return rc;
    w->msg = w->packed.data ? w->packed.data : (const uint8_t *)"";
    w->msglen = w->packed.len;
    return 0;
}

static int decode(work *w, sp_err *err)
{
    w->arena = sp_arena_new(otlp_decode_budget(w->msglen));
    if (!w->arena)
        return sp_fail(err, SP_ENOMEM, "cannot allocate a decode arena");
    int rc;
    if (w->sig->signal == OTLP_SIGNAL_PROFILES && w->cfg && w->cfg->sink.write &&
        w->cfg->sink.stream_begin)
        rc = otlp_decode_profiles(w->msg, w->msglen, !w->json, 2 * STREAM_PART_SAMPLES,
                                  atomic_load(&profile_exports) <= 1, w->arena, &w->dec, &w->lazy,
                                  err);
    else if (w->json)
        rc = otlp_decode_current(w->sig->signal, w->msg, w->msglen, w->arena, &w->dec, err);
    else
        rc = otlp_decode(w->sig->signal, w->msg, w->msglen, w->arena, &w->dec, err);
    if (!rc && w->dec.layout.layout == OTLP_LAYOUT_V1_9)
        sp_metrics_gauge_add("otlp_profiles_v1_9_layout_requests_total", 1);
    if (!rc && w->dec.layout.rewritten)
        sp_debug("msg=\"profiles rewritten to the current layout\" layout=%s samples=%llu "
                 "old_votes=%llu new_votes=%llu v18_profiles=%llu dropped_fields=%llu",
                 otlp_layout_name(w->dec.layout.layout), (unsigned long long)w->dec.layout.samples,
                 (unsigned long long)w->dec.layout.old_votes,
                 (unsigned long long)w->dec.layout.new_votes,
                 (unsigned long long)w->dec.layout.v18_profiles,
                 (unsigned long long)w->dec.layout.dropped_fields);
    return rc;
}

int otlp_rpc_status_encode(sp_buf *out, int32_t grpc_code, const char *message)
{
    uint8_t head[16];
    size_t n = 0;
    if (grpc_code != 0) {
        head[n++] = 0x08; /* field 1 code, varint; negative int32 = 10-byte varint */
        n += wire_pb_put_varint(head + n, (uint64_t)(int64_t)grpc_code);
    }
    size_t mlen = message ? strlen(message) : 0;
    int rc = n ? sp_buf_append(out, head, n) : 0;
    if (!rc && mlen) {
        n = 0;
        head[n++] = 0x12; /* field 2 message, length-delimited */
        n += wire_pb_put_varint(head + n, mlen);
        rc = sp_buf_append(out, head, n);
        if (!rc)
            rc = sp_buf_append(out, message, mlen);
    }
    return rc;
}

static void answer_error(srv_response *resp, const srv_request *req, const work *w,
                         const sp_err *err)
{
    int code = err->code ? err->code : SP_EINTERNAL;
    if (w->grpc) {
        if (code == SP_EUNIMPL) /* compression.md: tell the client what we do accept */
            srv_response_header(resp, "grpc-accept-encoding", "identity,gzip,deflate,zstd");
        srv_response_error(resp, req, err);
        return;
    }
    /* OTLP/HTTP: 4xx/5xx bodies are a google.rpc.Status in the request's encoding. */
    if (code == SP_EFULL || code == SP_EUNAVAIL)
        srv_response_header(resp, "retry-after", "1");
    sp_buf b;
    sp_buf_init(&b, 0);
    const char *msg = err->msg[0] ? err->msg : sp_code_name(code);
    if (w->json)
        otlp_rpc_status_json(&b, srv_status_grpc(code), msg);
    else
        otlp_rpc_status_encode(&b, srv_status_grpc(code), msg);
    srv_response_send(resp, srv_status_http(code),
                      w->json ? "application/json" : "application/x-protobuf", b.data, b.len);
    sp_buf_free(&b);
}

/* Packs the Export*ServiceResponse (with partial_success when items were rejected). */
static size_t pack_response(const work *w, uint8_t *buf, size_t cap)
{
    const otlp_verdict *v = &w->dec.verdict;
    if (w->sig->signal == OTLP_SIGNAL_PROFILES) {
        Opentelemetry__Proto__Collector__Profiles__V1development__ExportProfilesServiceResponse r =
            OPENTELEMETRY__PROTO__COLLECTOR__PROFILES__V1DEVELOPMENT__EXPORT_PROFILES_SERVICE_RESPONSE__INIT;
        Opentelemetry__Proto__Collector__Profiles__V1development__ExportProfilesPartialSuccess ps =
            OPENTELEMETRY__PROTO__COLLECTOR__PROFILES__V1DEVELOPMENT__EXPORT_PROFILES_PARTIAL_SUCCESS__INIT;
        if (v->bad) {
            ps.rejected_profiles = (int64_t)v->bad;
            ps.error_message = (char *)v->first.msg;
            r.partial_success = &ps;
        }
        if (protobuf_c_message_get_packed_size(&r.base) > cap)
            return 0;
        return protobuf_c_message_pack(&r.base, buf);
    }
    Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceResponse r =
        OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_RESPONSE__INIT;
    Opentelemetry__Proto__Collector__Trace__V1__ExportTracePartialSuccess ps =
        OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_PARTIAL_SUCCESS__INIT;
    if (v->bad) {
        ps.rejected_spans = (int64_t)v->bad;
        ps.error_message = (char *)v->first.msg;
        r.partial_success = &ps;
    }
    if (protobuf_c_message_get_packed_size(&r.base) > cap)
        return 0;
    return protobuf_c_message_pack(&r.base, buf);
}

int otlp_rpc_status_json(sp_buf *out, int32_t grpc_code, const char *message)
{
    int rc = sp_buf_printf(out, "{\"code\":%d", (int)grpc_code);
    if (!rc && message && *message) {
        rc = sp_buf_append(out, ",\"message\":", 11);
        if (!rc)
            rc = wire_json_string(out, message, strlen(message));
    }
    return rc ? rc : sp_buf_append(out, "}", 1);
}

/* protojson of the Export response: "{}" on full success (an empty body would not parse as the
 * JSON the exporters read), partialSuccess with rejectedSpans / rejectedProfiles (int64, so a
 * string) and errorMessage otherwise. */
static void answer_ok_json(srv_response *resp, const work *w, const uint8_t *pb, size_t n)
{
    const ProtobufCMessageDescriptor *d =
        w->sig->signal == OTLP_SIGNAL_PROFILES
            ? &opentelemetry__proto__collector__profiles__v1development__export_profiles_service_response__descriptor
            : &opentelemetry__proto__collector__trace__v1__export_trace_service_response__descriptor;
    sp_buf b;
    sp_buf_init(&b, 0);
    ProtobufCAllocator alloc;
    sp_arena_protobuf_allocator(w->arena, &alloc);
    ProtobufCMessage *m = protobuf_c_message_unpack(d, &alloc, n, pb);
    if (!m || wire_json_encode(m, &b)) {
        b.len = 0;
        sp_buf_append(&b, "{}", 2);
    }
    srv_response_send(resp, 200, "application/json", b.data, b.len);
    sp_buf_free(&b);
}

static void answer_ok(srv_response *resp, const work *w)
{
    /* error_message is at most sizeof(sp_err.msg): the response fits easily. */
    uint8_t buf[WIRE_GRPC_PREFIX_LEN + 1024];
    size_t n = pack_response(w, buf + WIRE_GRPC_PREFIX_LEN, sizeof buf - WIRE_GRPC_PREFIX_LEN);
    if (w->json) {
        answer_ok_json(resp, w, buf + WIRE_GRPC_PREFIX_LEN, n);
    } else if (w->grpc) {
        buf[0] = 0;
        buf[1] = (uint8_t)(n >> 24);
        buf[2] = (uint8_t)(n >> 16);
        buf[3] = (uint8_t)(n >> 8);
        buf[4] = (uint8_t)n;
        srv_response_grpc(resp, GRPC_OK, NULL, buf, WIRE_GRPC_PREFIX_LEN + n);
    } else if (n == 0) {
        /* Empty Export response (full success). Not through srv_response_send: sp_buf_append of
         * 0 bytes to a never-allocated buffer writes through NULL (common/buf.c). */
        resp->status = 200;
        resp->body.len = 0;
        srv_response_header(resp, "content-type", "application/x-protobuf");
    } else {
        srv_response_send(resp, 200, "application/x-protobuf", buf + WIRE_GRPC_PREFIX_LEN, n);
    }
}

/* The Samples of resource i: counted on its bytes when the request is decoded lazily. */
static size_t resource_samples(const work *w, size_t i)
{
    if (w->lazy)
        return otlp_profiles_lazy_samples(w->lazy, i);
    const Opentelemetry__Proto__Profiles__V1development__ResourceProfiles *rp =
        ((const otlp_profiles_req *)w->dec.msg)->resource_profiles[i];
    size_t n = 0;
    for (size_t j = 0; j < rp->n_scope_profiles; j++)
        for (size_t k = 0; k < rp->scope_profiles[j]->n_profiles; k++)
            n += rp->scope_profiles[j]->profiles[k]->n_samples;
    return n;
}

/* Converts and hands on the request's profiles in parts (otlp_sink's streams), unpacking each
 * part's resources first when the request was decoded lazily. *streamed = 0 when the request is
 * small or the sink declines: the caller converts it as one batch (all of it unpacked). */
static int stream_profiles(const otlp_sink *sink, srv_request *req, work *w, int *streamed,
                           sp_err *err)
{
    const otlp_profiles_req *pr = (const otlp_profiles_req *)w->dec.msg;
    *streamed = 0;
    size_t total = 0, nres = pr->n_resource_profiles;
    for (size_t i = 0; i < nres; i++)
        total += resource_samples(w, i);
    void *st = NULL;
    if (sink->stream_begin && pr->dictionary && nres >= 2 && total >= 2 * STREAM_PART_SAMPLES)
        st = sink->stream_begin(sink->ud, req, w->arena);
    if (!st)
        return w->lazy ? otlp_profiles_lazy_unpack(w->lazy, SIZE_MAX, err) : 0;
    *streamed = 1;
    sp_metrics_gauge_add("otlp_profiles_streamed_requests_total", 1);
    otlp_profiles_conv *pc = NULL;
    int rc = otlp_profiles_conv_begin(pr, &w->dec.verdict, w->arena, &pc, err);
    int64_t now = wall_now_ns();
    for (size_t i = 0; !rc && i < nres;) {
        size_t k = 0, n = 0;
        while (i + k < nres && (k == 0 || n < STREAM_PART_SAMPLES))
            n += resource_samples(w, i + k++);
        if (w->lazy && (rc = otlp_profiles_lazy_unpack(w->lazy, k, err)))
            break;
        sp_batch *part = sp_arena_calloc(w->arena, 1, sizeof *part);
        if (!part) {
            rc = sp_fail(err, SP_ETOOBIG, "request too large for its budget");
            break;
        }
        part->tenant = req->tenant;
        part->arena = w->arena;
        rc = otlp_profiles_conv_next(pc, k, now, part, err);
        i += k;
        if (!rc && part->nprofiles)
            rc = sink->stream_part(st, part, err);
    }
    int end = sink->stream_end(st, rc != 0, err);
    return rc ? rc : end;
}

static void handle_export(srv_request *req, srv_response *resp, const otlp_config *cfg,
                          const signal_def *sig, int grpc)
{
    work w;
    memset(&w, 0, sizeof w);
    w.cfg = cfg;
    w.sig = sig;
    w.grpc = grpc;
    const char *ct = grpc ? NULL : srv_header_get(req, "content-type");
    w.json = ct && media_type_is(ct, "application/json");
    w.max = cfg && cfg->max_recv_msg_size ? cfg->max_recv_msg_size : WIRE_GRPC_DEFAULT_MAX_MSG;
    sp_buf_init(&w.scratch, w.max);
    sp_err err = {0};
    int rc = 0;
    if (req->deadline_ns && now_ns() >= req->deadline_ns)
        rc = sp_fail(&err, SP_EDEADLINE,
                     "the client's deadline passed before the request could be processed");
    if (!rc)
        rc = grpc ? grpc_message(req, &w, &err) : http_message(req, &w, &err);
    if (!rc && w.json) {
        /* Counted on arrival: refusals are counted by reason as for protobuf (requests_refused). */
        sp_metrics_gauge_add(sig->signal == OTLP_SIGNAL_PROFILES
                                 ? "otlp_http_json_profiles_requests_total"
                                 : "otlp_http_json_traces_requests_total",
                             1);
        rc = json_message(&w, &err);
    }
    if (!rc)
        rc = decode(&w, &err);
    if (rc) {
        srv_report_refusal(req, err.code ? err.code : rc, 0, err.msg);
        answer_error(resp, req, &w, &err);
        work_free(&w);
        return;
    }
    if (cfg && cfg->sink.write) {
        /* Convert what validated, hand it to the next stage, answer only once it is stored. */
        sp_err serr = {0};
        sp_batch batch = {.tenant = req->tenant, .arena = w.arena};
        int streamed = 0;
        if (sig->signal == OTLP_SIGNAL_PROFILES) {
            rc = stream_profiles(&cfg->sink, req, &w, &streamed, &serr);
            if (!rc && !streamed)
                rc = otlp_profiles_convert((const otlp_profiles_req *)w.dec.msg, &w.dec.verdict,
                                           wall_now_ns(), &batch, &serr);
        } else {
            rc = otlp_traces_convert((const otlp_traces_req *)w.dec.msg, &w.dec.verdict, &batch,
                                     &serr);
            batch.raw_traces = w.msg; /* for forwarding (delivery/forward.h) */
            batch.raw_traces_len = w.msglen;
        }
        if (!rc && !streamed && (batch.nprofiles || batch.nspans))
            rc = cfg->sink.write(cfg->sink.ud, req, &batch, &serr);
        if (rc) {
            if (!serr.code)
                serr.code = rc;
            sp_metrics_items(req->endpoint, 0, w.dec.verdict.total);
            srv_report_refusal(req, serr.code, w.dec.verdict.total, serr.msg);
            answer_error(resp, req, &w, &serr);
            work_free(&w);
            return;
        }
    }
    /* The verdict is whole only now: a lazily decoded request is validated part by part. */
    if (w.dec.verdict.bad) /* partial_success: stored what was good, say what was not */
        srv_report_refusal(req, 0, w.dec.verdict.bad, w.dec.verdict.first.msg);
    sp_metrics_items(req->endpoint, w.dec.verdict.total - w.dec.verdict.bad, w.dec.verdict.bad);
    answer_ok(resp, &w);
    work_free(&w);
}

static void handle(srv_request *req, srv_response *resp, const otlp_config *cfg,
                   const signal_def *sig, int grpc)
{
    int profiles = sig->signal == OTLP_SIGNAL_PROFILES;
    if (profiles)
        atomic_fetch_add(&profile_exports, 1);
    handle_export(req, resp, cfg, sig, grpc);
    if (profiles)
        atomic_fetch_sub(&profile_exports, 1);
}

static void grpc_profiles(srv_request *req, srv_response *resp, void *ud)
{
    handle(req, resp, ud, &profiles_def, 1);
}

static void grpc_traces(srv_request *req, srv_response *resp, void *ud)
{
    handle(req, resp, ud, &traces_def, 1);
}

static void http_profiles(srv_request *req, srv_response *resp, void *ud)
{
    handle(req, resp, ud, &profiles_def, 0);
}

static void http_traces(srv_request *req, srv_response *resp, void *ud)
{
    handle(req, resp, ud, &traces_def, 0);
}

int otlp_register(srv_router *r, const otlp_config *cfg)
{
    void *ud = (void *)cfg;
    /* Counters are exported from start, 0 until something happens. */
    static const char *const counters[] = {
        "otlp_profiles_v1_9_layout_requests_total",        "otlp_profiles_streamed_requests_total",
        "otlp_profiles_dictionaries_unpacked_aside_total", "otlp_http_json_traces_requests_total",
        "otlp_http_json_profiles_requests_total",          "span_attributes_truncated_total"};
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++)
        sp_metrics_gauge_add(counters[i], 0);
    int rc = srv_router_add(r, "POST", OTLP_PATH_GRPC_PROFILES, SRV_WORKER, "otlp_grpc_profiles",
                            grpc_profiles, ud);
    if (!rc)
        rc = srv_router_add(r, "POST", OTLP_PATH_GRPC_TRACES, SRV_WORKER, "otlp_grpc_traces",
                            grpc_traces, ud);
    if (!rc)
        rc = srv_router_add(r, "POST", OTLP_PATH_HTTP_PROFILES, SRV_WORKER, "otlp_http_profiles",
                            http_profiles, ud);
    if (!rc)
        rc = srv_router_add(r, "POST", OTLP_PATH_HTTP_TRACES, SRV_WORKER, "otlp_http_traces",
                            http_traces, ud);
    return rc;
}
