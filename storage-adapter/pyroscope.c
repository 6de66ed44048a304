/* The Pyroscope backend: every correlated profile goes to a Pyroscope cluster's
 * push.v1.PusherService/Push (Connect unary, application/proto) through the outbox.
 *
 * What is sent, per profile of a batch: one RawProfileSeries whose labels are the profile's series
 * labels (__name__, service_name, resource attributes) and whose one RawSample is the profile as
 * gzip'ed pprof (otlp/pprof.c) with a random UUID as ID, so a receiver can recognise a copy that
 * at-least-once delivery sent twice. Attached samples carry the `span_id` and `trace_id` pprof
 * labels of their innermost span (sp_sample.spans[0]): Pyroscope keeps one span per sample.
 * process_pid and thread_id are not sent: Pyroscope turns sample labels into series, and per
 * thread series would multiply its index for nothing a query asks for.
 *
 * attach_only profiles (samples stored earlier that a late span now claims) are not sent: their
 * samples already went out without the span, and Pyroscope has no way to add a label to a sample
 * it holds, so sending them again would count their values twice. They are counted in
 * pyroscope_late_attachments_skipped_total; the embedded store (sqlite,pyroscope) still records
 * the attachment, so spanprof's own span profiles stay complete.
 *
 * Alone, a write returns once the Push request is on disk (fsync'ed): that is the acknowledgement.
 * In front of SQLite (store "sqlite,pyroscope") the request is staged first, SQLite commits (the
 * acknowledgement), then the staged item is queued; if SQLite fails the staged item is deleted,
 * so a client's retry does not reach Pyroscope twice. Reads go to SQLite, or answer UNIMPLEMENTED
 * when Pyroscope is the only store.
 */
#include "outbox.h"
#include "store.h"

#include "../common/buf.h"
#include "../common/log.h"
#include "../otlp/pprof.h"
#include "../server/metrics.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <zlib.h>

typedef struct pyro_store {
    store base;
    store *primary; /* the SQLite store in front of which we run, or NULL */
    outbox *ob;
} pyro_store;

/* ---- the Push request (push/v1/push.proto), written by hand: the generated structs stay in
 * otlp/ and query/ (STYLE.md) ---- */

static int gzip_into(sp_buf *out, const uint8_t *p, size_t n)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return SP_ENOMEM;
    uLong bound = deflateBound(&z, (uLong)n);
    int rc = sp_buf_reserve(out, bound);
    if (!rc) {
        z.next_in = (Bytef *)p;
        z.avail_in = (uInt)n;
        z.next_out = out->data + out->len;
        z.avail_out = (uInt)bound;
        rc = deflate(&z, Z_FINISH) == Z_STREAM_END ? 0 : SP_EINTERNAL;
        if (!rc)
            out->len += z.total_out;
    }
    deflateEnd(&z);
    return rc;
}

static void uuid4(char out[37])
{
    uint8_t r[16];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
        for (size_t i = 0; i < sizeof r; i++)
            r[i] = (uint8_t)rand();
    r[6] = (uint8_t)((r[6] & 0x0f) | 0x40); /* RFC 4122 version 4 */
    r[8] = (uint8_t)((r[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0],
             r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13],
             r[14], r[15]);
}

/* Appends one RawProfileSeries (field 1 of PushRequest) for p. */
static int encode_series(const sp_profile *p, sp_buf *out, sp_err *err)
{
    /* pid and tid would become Pyroscope series (see the top of the file): a copy without them. */
    sp_sample *samples = malloc((p->nsamples ? p->nsamples : 1) * sizeof *samples);
    if (!samples)
        return sp_fail(err, SP_ENOMEM, "pyroscope: out of memory");
    for (uint32_t i = 0; i < p->nsamples; i++) {
        samples[i] = p->samples[i];
        samples[i].pid = samples[i].tid = 0;
    }
    sp_profile copy = *p;
    copy.samples = samples;
    sp_buf pprof, gz, sample, series;
    sp_buf_init(&pprof, 0);
    sp_buf_init(&gz, 0);
    sp_buf_init(&sample, 0);
    sp_buf_init(&series, 0);
    int rc = otlp_pprof_encode(&copy, &pprof, err);
    free(samples);
    if (!rc && gzip_into(&gz, pprof.data, pprof.len) != 0)
        rc = sp_fail(err, SP_ENOMEM, "pyroscope: cannot compress a profile");
    if (!rc) {
        char id[37];
        uuid4(id);
        int e = 0;
        for (uint32_t i = 0; i < p->nseries; i++) {
            sp_buf lp;
            sp_buf_init(&lp, 0);
            e |= sp_buf_put_pb_len(&lp, 1, p->series[i].name, strlen(p->series[i].name));
            e |= sp_buf_put_pb_len(&lp, 2, p->series[i].value, strlen(p->series[i].value));
            e |= sp_buf_put_pb_len(&series, 1, lp.data,
                                   lp.len); /* labels = 1 (types.v1.LabelPair) */
            sp_buf_free(&lp);
        }
        e |= sp_buf_put_pb_len(&sample, 1, gz.data, gz.len);         /* RawSample.raw_profile = 1 */
        e |= sp_buf_put_pb_len(&sample, 2, id, strlen(id));          /* RawSample.ID = 2 */
        e |= sp_buf_put_pb_len(&series, 2, sample.data, sample.len); /* samples = 2 */
        e |= sp_buf_put_pb_len(out, 1, series.data, series.len);     /* PushRequest.series = 1 */
        if (e)
            rc = sp_fail(err, SP_ENOMEM, "pyroscope: out of memory");
    }
    sp_buf_free(&pprof);
    sp_buf_free(&gz);
    sp_buf_free(&sample);
    sp_buf_free(&series);
    return rc;
}

/* The Push request for b (empty when nothing in it is for Pyroscope). */
static int encode_push(const sp_batch *b, sp_buf *out, sp_err *err)
{
    uint64_t late = 0;
    for (size_t i = 0; i < b->nprofiles; i++) {
        const sp_profile *p = b->profiles[i];
        if (p->attach_only) {
            late += p->nsamples;
            continue;
        }
        if (!p->nsamples)
            continue;
        int rc = encode_series(p, out, err);
        if (rc)
            return rc;
    }
    if (late)
        srv_metrics_gauge_add("pyroscope_late_attachments_skipped_total", (int64_t)late);
    return 0;
}

/* ---- store ops ---- */

static int pyro_write(store *s, const sp_batch *b, sp_err *err)
{
    pyro_store *ps = (pyro_store *)s;
    sp_buf push;
    sp_buf_init(&push, 0);
    int rc = encode_push(b, &push, err);
    if (rc) {
        sp_buf_free(&push);
        return rc;
    }
    if (!push.len) {
        sp_buf_free(&push);
        return ps->primary ? store_write(ps->primary, b, err) : 0;
    }
    const char *tenant = b->tenant && *b->tenant ? b->tenant : "anonymous";
    outbox_ticket t;
    rc = outbox_stage(ps->ob, tenant, push.data, push.len, &t, err);
    sp_buf_free(&push);
    if (rc)
        return rc;
    if (ps->primary) {
        rc = store_write(ps->primary, b, err);
        if (rc) {
            outbox_abort(ps->ob, &t);
            return rc;
        }
    }
    sp_err cerr = {0};
    int crc = outbox_commit(ps->ob, &t, &cerr);
    if (!crc)
        return 0;
    if (!ps->primary)
        return sp_fail(err, crc, "%s", cerr.msg);
    /* SQLite acknowledged the batch: the client must not send it again for Pyroscope's sake. */
    sp_error("msg=\"profiles stored but not queued for Pyroscope\" err=\"%s\"", cerr.msg);
    srv_metrics_gauge_add("pyroscope_dropped_total", 1);
    return 0;
}

static void pyro_close(store *s)
{
    pyro_store *ps = (pyro_store *)s;
    outbox_close(ps->ob);
    store_close(ps->primary);
    free(ps);
}

#define P(s) (((pyro_store *)(s))->primary)

static int d_profile_types(store *s, const store_query *q, sp_arena *a, store_strings *out,
                           sp_err *err)
{
    return store_profile_types(P(s), q, a, out, err);
}
static int d_label_names(store *s, const store_query *q, sp_arena *a, store_strings *out,
                         sp_err *err)
{
    return store_label_names(P(s), q, a, out, err);
}
static int d_label_values(store *s, const store_query *q, const char *name, sp_arena *a,
                          store_strings *out, sp_err *err)
{
    return store_label_values(P(s), q, name, a, out, err);
}
static int d_series(store *s, const store_query *q, const char *const *names, size_t nnames,
                    sp_arena *a, store_labelsets *out, sp_err *err)
{
    return store_series(P(s), q, names, nnames, a, out, err);
}
static int d_select_stacks(store *s, const store_query *q, sp_arena *a, store_stacks *out,
                           sp_err *err)
{
    return store_select_stacks(P(s), q, a, out, err);
}
static int d_select_series(store *s, const store_query *q, int64_t step_ns,
                           const char *const *group_by, size_t ngroup_by, sp_arena *a,
                           store_timeseries_set *out, sp_err *err)
{
    return store_select_series(P(s), q, step_ns, group_by, ngroup_by, a, out, err);
}
static int d_span_stacks(store *s, const store_query *q, const uint8_t (*span_ids)[8],
                         size_t nspan_ids, sp_arena *a, store_stacks *out, sp_err *err)
{
    return store_span_stacks(P(s), q, span_ids, nspan_ids, a, out, err);
}
static int d_trace_spans(store *s, const char *tenant, const uint8_t trace_id[16], sp_arena *a,
                         store_spans *out, sp_err *err)
{
    return store_trace_spans(P(s), tenant, trace_id, a, out, err);
}
static int d_span_get(store *s, const char *tenant, const uint8_t span_id[8], sp_arena *a,
                      sp_span *out, sp_err *err)
{
    return store_span_get(P(s), tenant, span_id, a, out, err);
}
static int d_retention_run(store *s, int64_t now_ns, sp_err *err)
{
    return store_retention_run(P(s), now_ns, err);
}
static void d_stats(store *s, store_stats *out)
{
    store_stats_get(P(s), out);
}

static const store_ops alone_ops = {
    .kind = "pyroscope",
    .close = pyro_close,
    .write = pyro_write,
};

static const store_ops composed_ops = {
    .kind = "sqlite,pyroscope",
    .close = pyro_close,
    .write = pyro_write,
    .profile_types = d_profile_types,
    .label_names = d_label_names,
    .label_values = d_label_values,
    .series = d_series,
    .select_stacks = d_select_stacks,
    .select_series = d_select_series,
    .span_stacks = d_span_stacks,
    .trace_spans = d_trace_spans,
    .span_get = d_span_get,
    .retention_run = d_retention_run,
    .stats = d_stats,
};

int store_open_pyroscope(store **out, store *primary, const store_options *o, sp_err *err)
{
    *out = NULL;
    if (!o || !o->pyroscope || !o->pyroscope->url || !*o->pyroscope->url) {
        store_close(primary);
        return sp_fail(err, SP_EINVAL, "the Pyroscope store needs a URL (--pyroscope-url)");
    }
    pyro_store *ps = calloc(1, sizeof *ps);
    if (!ps) {
        store_close(primary);
        return sp_fail(err, SP_ENOMEM, "pyroscope: out of memory");
    }
    ps->base.ops = primary ? &composed_ops : &alone_ops;
    ps->primary = primary;
    const char *base = o->pyroscope->url;
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/')
        bl--;
    char url[4096], dir[4096];
    snprintf(url, sizeof url, "%.*s/push.v1.PusherService/Push", (int)bl, base);
    snprintf(dir, sizeof dir, "%s/outbox/pyroscope",
             o->data_dir && *o->data_dir ? o->data_dir : ".");
    static const char *const headers[] = {"Connect-Protocol-Version: 1", NULL};
    outbox_options oo = {
        .dir = dir,
        .name = "pyroscope",
        .max_bytes = o->outbox_max_bytes,
        .linger_ns = o->outbox_linger_ns,
        /* Alone, the queue is the acknowledgement; behind SQLite it follows its durability. */
        .fsync = !primary || o->durability == STORE_DURABILITY_FULL,
        .http = *o->pyroscope,
    };
    oo.http.url = url;
    oo.http.content_type = "application/proto";
    oo.http.headers = headers;
    oo.http.tenant_header = "X-Scope-OrgID";
    int rc = outbox_open(&ps->ob, &oo, err);
    if (rc) {
        sp_err_prefix(err, "pyroscope store: ");
        pyro_close(&ps->base);
        return rc;
    }
    srv_metrics_gauge_add("pyroscope_late_attachments_skipped_total", 0);
    sp_info("msg=\"pyroscope store open\" url=\"%s\" queue=\"%s\" composed=%d", url, dir,
            primary != NULL);
    *out = &ps->base;
    return 0;
}
