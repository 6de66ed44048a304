/* Decode pipeline for OTLP requests: see decode.h. */
#include "decode.h"
#include "hand_unpack.h"
#include "../common/metrics.h"
#include "../wire/pb.h"

#include <pthread.h>
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

static const ProtobufCMessageDescriptor *signal_desc(int signal, const char **name)
{
    if (signal == OTLP_SIGNAL_PROFILES) {
        *name = "ExportProfilesServiceRequest";
        return &opentelemetry__proto__collector__profiles__v1development__export_profiles_service_request__descriptor;
    }
    if (signal == OTLP_SIGNAL_TRACES) {
        *name = "ExportTraceServiceRequest";
        return &opentelemetry__proto__collector__trace__v1__export_trace_service_request__descriptor;
    }
    *name = "request";
    return NULL;
}

/* The checks every request passes before protobuf-c sees it: the nesting depth, and for profiles
 * the layout (rewritten into the current one when old). *msg and *len become the bytes to unpack.
 */
static int prepare(int signal, const uint8_t **msg, size_t *len, int detect_layout, sp_arena *a,
                   otlp_decoded *out, sp_err *err)
{
    const char *name;
    const ProtobufCMessageDescriptor *desc = signal_desc(signal, &name);
    if (!*msg)
        *msg = (const uint8_t *)"";
    /* protobuf-c recurses once per nesting level without a limit: bound it first. */
    int rc = wire_pb_check_depth(desc, *msg, *len, WIRE_PB_MAX_DEPTH, err);
    if (rc) {
        sp_err_prefix(err, "%s does not decode: ", name);
        return rc;
    }
    if (signal == OTLP_SIGNAL_PROFILES && detect_layout) {
        rc = otlp_layout_normalize(*msg, *len, a, msg, len, &out->layout, err);
        if (rc && rc == SP_EINVAL)
            sp_err_prefix(err, "%s does not decode: ", name);
    }
    return rc;
}

static int unpack_failed(const pb_arena *pa, const char *what, size_t len, sp_err *err)
{
    if (pa->exhausted)
        return sp_fail(err, SP_ETOOBIG,
                       "%s of %zu bytes needs more memory than the decode budget allows "
                       "(%zu bytes reserved)",
                       what, len, sp_arena_used(pa->a));
    return sp_fail(err, SP_EINVAL,
                   "%s does not decode as protobuf (%zu bytes): a field has the wrong wire "
                   "type or the message is corrupt",
                   what, len);
}

/* Unpacks and validates the whole request (the path of every request but a large profiles one). */
static int decode_whole(int signal, const uint8_t *msg, size_t len, sp_arena *a, otlp_decoded *out,
                        sp_err *err)
{
    const char *name;
    const ProtobufCMessageDescriptor *desc = signal_desc(signal, &name);
    pb_arena pa = {a, 0};
    ProtobufCAllocator alloc = {pb_alloc, pb_free, &pa};
    out->msg = protobuf_c_message_unpack(desc, &alloc, len, msg);
    if (!out->msg)
        return unpack_failed(&pa, name, len, err);
    if (signal == OTLP_SIGNAL_PROFILES)
        return otlp_validate_profiles((const otlp_profiles_req *)out->msg, a, &out->verdict, err);
    return otlp_validate_traces((const otlp_traces_req *)out->msg, a, &out->verdict, err);
}

static int decode_any(int signal, const uint8_t *msg, size_t len, int detect_layout, sp_arena *a,
                      otlp_decoded *out, sp_err *err)
{
    memset(out, 0, sizeof *out);
    const char *name;
    if (!signal_desc(signal, &name))
        return sp_fail(err, SP_EINTERNAL, "otlp_decode: unknown signal %d", signal);
    int rc = prepare(signal, &msg, &len, detect_layout, a, out, err);
    return rc ? rc : decode_whole(signal, msg, len, a, out, err);
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

/* ---- profiles one ResourceProfiles at a time -------------------------------------------------
 *
 * Invariants:
 *   L1. A request is decoded lazily only when a walk of its bytes finds exactly what protobuf-c
 *       would unpack into the same structure: field 2 (dictionary) once, and every field 1
 *       (resource_profiles), ScopeProfiles.profiles and Profile.samples with wire type LEN. Any
 *       other shape is unpacked whole, so its errors and merge rules stay protobuf-c's.
 *   L2. The counts the walk finds (profiles, samples) are the counts protobuf-c unpacks: a
 *       difference is SP_EINTERNAL, never a verdict with the wrong total.
 *   L3. resource_profiles[i] is NULL until otlp_profiles_lazy_unpack() reached i; resources are
 *       unpacked and validated in request order, so the verdict's flags, counts and first message
 *       are those of the whole-request validation.
 *   L7. Every request of the L1 shape goes this way, streamed or not (one resource, or fewer
 *       Samples than the caller streams, is unpacked at once before otlp_decode_profiles()
 *       returns): each resource goes to otlp/hand_unpack.c, which decodes its Samples by hand or
 *       leaves the whole resource to protobuf-c.
 *   L8. The layout pass walks every Sample anyway: its census of a resource (otlp_layout_info)
 *       stands in for L1's count walk and for the Sample decoder's first walk, only when it was
 *       taken of these very bytes (the request not rewritten), found one entry per resource and
 *       says ok (it checked all that those walks check). */

struct otlp_profiles_lazy {
    sp_arena *a;
    otlp_decoded *out;
    otlp_profiles_req *req;
    const uint8_t *base;   /* the request's bytes (rewritten into the current layout if old) */
    const uint8_t **bytes; /* each resource_profiles entry's bytes */
    size_t *len;
    size_t *samples;                    /* the Samples each resource holds */
    size_t *profiles;                   /* and its Profiles */
    const otlp_resource_census *census; /* the layout pass's, one per resource; or NULL */
    size_t next;                        /* resources unpacked so far */
    otlp_profiles_check *check;
};

/* Counts the LEN fields number `num` of a message; -1 when one has another wire type or the
 * bytes do not walk (L1: the whole unpack then decides). */
static int64_t count_len_fields(const uint8_t *p, size_t n, uint32_t num,
                                int (*each)(const uint8_t *, size_t, void *), void *ud)
{
    const uint8_t *end = p + n, *base = p;
    int64_t k = 0;
    wire_pb_field f;
    while (p < end) {
        if (wire_pb_next(&p, end, base, &f, NULL))
            return -1;
        if (f.num != num)
            continue;
        if (f.wt != WIRE_WT_LEN || (each && each(f.val, f.vlen, ud)))
            return -1;
        k++;
    }
    return k;
}

typedef struct res_counts {
    size_t profiles, samples;
} res_counts;

static int count_profile(const uint8_t *p, size_t n, void *ud)
{
    res_counts *c = ud;
    int64_t k = count_len_fields(p, n, 2, NULL, NULL); /* Profile.samples */
    if (k < 0)
        return -1;
    c->profiles++;
    c->samples += (size_t)k;
    return 0;
}

static int count_scope(const uint8_t *p, size_t n, void *ud)
{
    return count_len_fields(p, n, 2, count_profile, ud) < 0; /* ScopeProfiles.profiles */
}

/* ---- the dictionary unpacked beside the layout pass ----------------------------------------
 * A large Export's worker spends about 5 ms unpacking the dictionary and 4 ms on the layout pass
 * over every Sample before anything else can start. The dictionary's bytes are the same in every
 * layout (only Profile and Sample numbering changes), so a helper thread unpacks them from the
 * request as received while the worker runs the layout pass:
 *   L4. The helper unpacks only bytes whose nesting it bounded first (wire_pb_check_depth), into
 *       an arena of its own split from the request's budget (sp_arena_split), so the two never
 *       reserve more than the request may.
 *   L5. Its result is used only when the dictionary the worker then finds in the (possibly
 *       rewritten) request is byte for byte the one the helper unpacked; otherwise, and on any
 *       failure of the helper, the worker unpacks as before, so errors and results are those of
 *       the serial path.
 *   L6. Every return of otlp_decode_profiles() after the helper started joins it first, and its
 *       arena is adopted by the request's (what it unpacked lives as long as the request). */
#define DICT_HELPER_MIN_BYTES ((size_t)128 * 1024)

typedef struct dict_helper {
    pthread_t thread;
    int started;
    const uint8_t *bytes;
    size_t len;
    sp_arena *own;
    pb_arena pa;
    Opentelemetry__Proto__Profiles__V1development__ProfilesDictionary *dict;
} dict_helper;

/* The dictionary's large tables decoded by hand when their shape allows (otlp/hand_unpack.h), else
 * the whole dictionary by protobuf-c. */
static Opentelemetry__Proto__Profiles__V1development__ProfilesDictionary *
unpack_dictionary(const uint8_t *bytes, size_t len, ProtobufCAllocator *alloc, sp_arena *a)
{
    Opentelemetry__Proto__Profiles__V1development__ProfilesDictionary *d =
        otlp_hand_unpack_dictionary(bytes, len, alloc, a);
    return d ? d
             : opentelemetry__proto__profiles__v1development__profiles_dictionary__unpack(
                   alloc, len, bytes);
}

static void *dict_helper_main(void *arg)
{
    dict_helper *h = arg;
    if (wire_pb_check_depth(
            &opentelemetry__proto__profiles__v1development__profiles_dictionary__descriptor,
            h->bytes, h->len, WIRE_PB_MAX_DEPTH - 1, NULL))
        return NULL; /* L4; the worker's own check of the whole request reports it */
    h->pa = (pb_arena){h->own, 0};
    ProtobufCAllocator alloc = {pb_alloc, pb_free, &h->pa};
    h->dict = unpack_dictionary(h->bytes, h->len, &alloc, h->own);
    return NULL;
}

static int walk_request(otlp_profiles_lazy *lz, const uint8_t *msg, size_t len,
                        const uint8_t **dict, size_t *dict_len, size_t *nres);

/* Starts the helper when the request holds a dictionary worth it (L4); h->started says so. */
static void dict_helper_start(dict_helper *h, const uint8_t *msg, size_t len, sp_arena *a)
{
    memset(h, 0, sizeof *h);
    size_t nres;
    if (!msg || walk_request(NULL, msg, len, &h->bytes, &h->len, &nres) || nres < 2 ||
        h->len < DICT_HELPER_MIN_BYTES)
        return;
    if (!(h->own = sp_arena_split(a, SIZE_MAX)))
        return;
    if (pthread_create(&h->thread, NULL, dict_helper_main, h) != 0) {
        sp_arena_adopt(a, h->own);
        h->own = NULL;
        return;
    }
    h->started = 1;
}

/* Joins the helper (L6); returns its dictionary when it is the one at dict (L5), else NULL. */
static Opentelemetry__Proto__Profiles__V1development__ProfilesDictionary *
dict_helper_join(dict_helper *h, sp_arena *a, const uint8_t *dict, size_t dict_len)
{
    if (!h->started)
        return NULL;
    pthread_join(h->thread, NULL);
    h->started = 0;
    sp_arena_adopt(a, h->own);
    h->own = NULL;
    if (!h->dict || !dict || dict_len != h->len ||
        (dict != h->bytes && memcmp(dict, h->bytes, dict_len) != 0))
        return NULL;
    sp_metrics_gauge_add("otlp_profiles_dictionaries_unpacked_aside_total", 1);
    return h->dict;
}

/* Finds the resources and the dictionary (L1). 0 when the request can be decoded lazily. */
static int walk_request(otlp_profiles_lazy *lz, const uint8_t *msg, size_t len,
                        const uint8_t **dict, size_t *dict_len, size_t *nres)
{
    const uint8_t *p = msg, *end = msg + len;
    wire_pb_field f;
    size_t n = 0;
    *dict = NULL;
    while (p < end) {
        /* protobuf-c never sees the request's own fields here: what it would refuse in them
         * (a tag or length past 5 bytes) sends the request to the whole unpack (L1) */
        if (wire_pb_next(&p, end, msg, &f, NULL) || !wire_pb_protobuf_c_bounds(&f))
            return -1;
        if (f.num != 1 && f.num != 2)
            continue;
        if (f.wt != WIRE_WT_LEN || (f.num == 2 && *dict))
            return -1; /* protobuf-c fails or merges: the whole unpack decides (L1) */
        if (f.num == 2) {
            *dict = f.val;
            *dict_len = f.vlen;
        } else if (lz) {
            lz->bytes[n] = f.val;
            lz->len[n] = f.vlen;
        }
        n += f.num == 1;
    }
    *nres = n;
    return *dict ? 0 : -1;
}

static int decode_profiles(const uint8_t *msg, size_t len, int detect_layout,
                           size_t lazy_min_samples, sp_arena *a, dict_helper *h, otlp_decoded *out,
                           otlp_profiles_lazy **lazy, sp_err *err);

int otlp_decode_profiles(const uint8_t *msg, size_t len, int detect_layout, size_t lazy_min_samples,
                         int helper, sp_arena *a, otlp_decoded *out, otlp_profiles_lazy **lazy,
                         sp_err *err)
{
    memset(out, 0, sizeof *out);
    *lazy = NULL;
    dict_helper h;
    memset(&h, 0, sizeof h);
    if (helper)
        dict_helper_start(&h, msg, len, a);
    int rc = decode_profiles(msg, len, detect_layout, lazy_min_samples, a, &h, out, lazy, err);
    dict_helper_join(&h, a, NULL, 0); /* L6: a no-op when the decode took its result */
    return rc;
}

static int decode_profiles(const uint8_t *msg, size_t len, int detect_layout,
                           size_t lazy_min_samples, sp_arena *a, dict_helper *h, otlp_decoded *out,
                           otlp_profiles_lazy **lazy, sp_err *err)
{
    int rc = prepare(OTLP_SIGNAL_PROFILES, &msg, &len, detect_layout, a, out, err);
    if (rc)
        return rc;
    const uint8_t *dict;
    size_t dict_len, nres;
    if (walk_request(NULL, msg, len, &dict, &dict_len, &nres) || nres < 1)
        return decode_whole(OTLP_SIGNAL_PROFILES, msg, len, a, out, err);
    otlp_profiles_lazy *lz = sp_arena_calloc(a, 1, sizeof *lz);
    if (lz) {
        lz->bytes = sp_arena_calloc(a, nres, sizeof *lz->bytes);
        lz->len = sp_arena_calloc(a, nres, sizeof *lz->len);
        lz->samples = sp_arena_calloc(a, nres, sizeof *lz->samples);
        lz->profiles = sp_arena_calloc(a, nres, sizeof *lz->profiles);
    }
    if (!lz || !lz->bytes || !lz->len || !lz->samples || !lz->profiles)
        return sp_fail(err, SP_ETOOBIG, "request's decode memory budget exhausted");
    walk_request(lz, msg, len, &dict, &dict_len, &nres);
    /* The layout pass walked these very bytes (not rewritten) and counted what a census says. */
    if (!out->layout.rewritten && out->layout.census && out->layout.ncensus == nres)
        lz->census = out->layout.census;
    size_t profiles = 0, samples = 0;
    for (size_t i = 0; i < nres; i++) {
        res_counts c = {0, 0};
        if (lz->census && lz->census[i].ok)
            c = (res_counts){lz->census[i].profiles, lz->census[i].samples};
        else if (count_len_fields(lz->bytes[i], lz->len[i], 2, count_scope, &c) < 0)
            return decode_whole(OTLP_SIGNAL_PROFILES, msg, len, a, out, err);
        lz->samples[i] = c.samples;
        lz->profiles[i] = c.profiles;
        profiles += c.profiles;
        samples += c.samples;
    }
    /* L7: a request not worth streaming is unpacked here all at once, through the same
     * resource-by-resource path, so its Samples are decoded by otlp/hand_unpack.c too. */
    int stream = nres >= 2 && samples >= lazy_min_samples;

    pb_arena pa = {a, 0};
    ProtobufCAllocator alloc = {pb_alloc, pb_free, &pa};
    otlp_profiles_req *req = sp_arena_calloc(a, 1, sizeof *req);
    void **res = sp_arena_calloc(a, nres, sizeof *res);
    if (!req || !res)
        return sp_fail(err, SP_ETOOBIG, "request's decode memory budget exhausted");
    opentelemetry__proto__collector__profiles__v1development__export_profiles_service_request__init(
        req);
    req->dictionary = dict_helper_join(h, a, dict, dict_len);
    if (!req->dictionary)
        req->dictionary = unpack_dictionary(dict, dict_len, &alloc, a);
    if (!req->dictionary)
        return unpack_failed(&pa, "ExportProfilesServiceRequest.dictionary", dict_len, err);
    req->resource_profiles =
        (Opentelemetry__Proto__Profiles__V1development__ResourceProfiles **)res;
    req->n_resource_profiles = nres;
    lz->a = a;
    lz->out = out;
    lz->req = req;
    lz->base = msg;
    out->msg = (ProtobufCMessage *)req;
    rc = otlp_profiles_check_begin(req->dictionary, profiles, a, &out->verdict, &lz->check, err);
    if (rc || !stream)
        return rc ? rc : otlp_profiles_lazy_unpack(lz, SIZE_MAX, err);
    *lazy = lz;
    return 0;
}

size_t otlp_profiles_lazy_resources(const otlp_profiles_lazy *lz)
{
    return lz->req->n_resource_profiles;
}

size_t otlp_profiles_lazy_samples(const otlp_profiles_lazy *lz, size_t i)
{
    return i < lz->req->n_resource_profiles ? lz->samples[i] : 0;
}

size_t otlp_profiles_lazy_unpacked(const otlp_profiles_lazy *lz)
{
    return lz->next;
}

int otlp_profiles_lazy_unpack(otlp_profiles_lazy *lz, size_t n, sp_err *err)
{
    size_t nres = lz->req->n_resource_profiles;
    size_t end = n < nres - lz->next ? lz->next + n : nres;
    pb_arena pa = {lz->a, 0};
    ProtobufCAllocator alloc = {pb_alloc, pb_free, &pa};
    for (; lz->next < end; lz->next++) {
        size_t i = lz->next;
        Opentelemetry__Proto__Profiles__V1development__ResourceProfiles *rp =
            otlp_hand_unpack_resource(lz->bytes[i], lz->len[i], lz->profiles[i], lz->samples[i],
                                      lz->census ? &lz->census[i] : NULL, &alloc, lz->a);
        if (!rp) /* a shape the Sample decoder leaves to protobuf-c (otlp/hand_unpack.h) */
            rp = opentelemetry__proto__profiles__v1development__resource_profiles__unpack(
                &alloc, lz->len[i], lz->bytes[i]);
        if (!rp) {
            int rc = unpack_failed(&pa, "ExportProfilesServiceRequest", lz->len[i], err);
            sp_err_prefix(err, "resource_profiles[%zu] at offset %zu: ", i,
                          (size_t)(lz->bytes[i] - lz->base));
            return rc;
        }
        size_t samples = 0;
        for (size_t s = 0; s < rp->n_scope_profiles; s++)
            for (size_t p = 0; p < rp->scope_profiles[s]->n_profiles; p++)
                samples += rp->scope_profiles[s]->profiles[p]->n_samples;
        if (samples != lz->samples[i] || otlp_profiles_count(rp) != lz->profiles[i]) /* L2 */
            return sp_fail(err, SP_EINTERNAL,
                           "resource_profiles[%zu]: %zu profiles and %zu samples unpacked, %zu "
                           "and %zu counted on the wire",
                           i, otlp_profiles_count(rp), samples, lz->profiles[i], lz->samples[i]);
        int rc = lz->check ? otlp_profiles_check_resource(lz->check, rp, i, err) : 0;
        if (rc)
            return rc;
        lz->req->resource_profiles[i] = rp; /* L3 */
    }
    return 0;
}
