/* The Pyroscope pusher: every correlated profile goes to a Pyroscope cluster's
 * push.v1.PusherService/Push (Connect unary, application/proto) through the outbox.
 *
 * What is sent, per profile of a batch: one RawProfileSeries whose labels are the profile's series
 * labels (__name__, service_name, resource attributes) and whose one RawSample is the profile as
 * gzip'ed pprof (wire/pprof_write.c) with a random UUID as ID, so a receiver can recognise a copy
 * that at-least-once delivery sent twice. Attached samples carry the `span_id` and `trace_id` pprof
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
 * The program (app/pipeline.c) stages each batch's Push request, lets the store commit, then
 * commits the staged item to the queue, or aborts it when the store failed, so a client's retry
 * does not reach Pyroscope twice. With no local store the queue (fsync'ed) is the acknowledgement.
 */
#include "pusher.h"

#include "../common/buf.h"
#include "../common/log.h"
#include "../common/metrics.h"
#include "../wire/pprof_write.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <zlib.h>

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
    int rc = wire_pprof_encode(&copy, &pprof, err);
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
        sp_metrics_gauge_add("pyroscope_late_attachments_skipped_total", (int64_t)late);
    return 0;
}

/* ---- the pusher ---- */

struct pusher {
    outbox *ob;
};

int pusher_stage(pusher *p, const sp_batch *b, pusher_ticket *t, sp_err *err)
{
    memset(t, 0, sizeof *t);
    sp_buf push;
    sp_buf_init(&push, 0);
    int rc = encode_push(b, &push, err);
    if (!rc && push.len) {
        const char *tenant = b->tenant && *b->tenant ? b->tenant : "anonymous";
        rc = outbox_stage(p->ob, tenant, push.data, push.len, &t->ob, err);
        t->staged = rc == 0;
    }
    sp_buf_free(&push);
    return rc;
}

int pusher_commit(pusher *p, pusher_ticket *t, sp_err *err)
{
    if (!t->staged)
        return 0;
    t->staged = 0;
    return outbox_commit(p->ob, &t->ob, err);
}

void pusher_abort(pusher *p, pusher_ticket *t)
{
    if (t->staged)
        outbox_abort(p->ob, &t->ob);
    t->staged = 0;
}

void pusher_close(pusher *p)
{
    if (!p)
        return;
    outbox_close(p->ob);
    free(p);
}

int pusher_open(pusher **out, const pusher_options *o, sp_err *err)
{
    *out = NULL;
    if (!o || !o->http.url || !*o->http.url)
        return sp_fail(err, SP_EINVAL, "pushing to Pyroscope needs a URL (--pyroscope-url)");
    pusher *p = calloc(1, sizeof *p);
    if (!p)
        return sp_fail(err, SP_ENOMEM, "pyroscope: out of memory");
    const char *base = o->http.url;
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
        .max_bytes = o->max_bytes,
        .linger_ns = o->linger_ns,
        .fsync = o->fsync,
        .http = o->http,
    };
    oo.http.url = url;
    oo.http.content_type = "application/proto";
    oo.http.headers = headers;
    oo.http.tenant_header = "X-Scope-OrgID";
    int rc = outbox_open(&p->ob, &oo, err);
    if (rc) {
        sp_err_prefix(err, "pyroscope: ");
        free(p);
        return rc;
    }
    sp_metrics_gauge_add("pyroscope_late_attachments_skipped_total", 0);
    sp_info("msg=\"pushing to pyroscope\" url=\"%s\" queue=\"%s\"", url, dir);
    *out = p;
    return 0;
}
