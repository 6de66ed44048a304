/* The Pyroscope pusher: every correlated profile goes to a Pyroscope cluster's
 * push.v1.PusherService/Push (Connect unary, application/proto) through the outbox.
 *
 * What is sent: one RawProfileSeries per (tenant, series, 10 s bucket) whose labels are the
 * series labels (__name__, service_name, resource attributes) and whose one RawSample is the
 * bucket's profile as gzip'ed pprof (wire/pprof_write.c), time_nanos = the bucket's start (plus
 * an offset under 1 ms per instance, hold.h), with a
 * random UUID as ID. Samples carry the `span_id` and `trace_id` pprof labels of the outermost span
 * attached to them (Pyroscope keeps one span per sample; the outermost one makes a local root span
 * answer with everything inside it). process_pid and thread_id are not sent: Pyroscope turns
 * sample labels into series, and per thread series would multiply its index for nothing a query
 * asks for.
 *
 * When: samples wait in the hold (hold.h) until their bucket ended and delay_ns passed, so a span
 * that arrives after its samples (the normal order: SDKs export a span when it ends) still labels
 * them; then the bucket's profiles of one series leave as one, so Pyroscope's compaction (which
 * keeps one of several same-series same-timestamp profiles) drops nothing. The delay is the price:
 * a sample reaches Pyroscope between delay and delay + 10 s after it was taken. delay_ns < 0
 * pushes every batch at arrival (the samples carry the spans known then).
 *
 * Durability: a batch's samples are also written, per group, to a journal file in
 * <data_dir>/outbox/pyroscope-hold (staged before the store commits, renamed after: the same
 * two-phase as the queue), as ready Push requests with the labels known at arrival. A group that
 * leaves first queues its merged profiles, then writes "<group>.done", then deletes its journal
 * files. At open, journal files of groups without a done mark are queued as they are (stamped
 * bucket start + hold_recovered_offset(), so they never collapse with what left before the
 * crash): nothing acknowledged is lost, only span labels that arrived after the crash are missing.
 *
 * The program (app/pipeline.c) stages each batch before the store commits, then commits the staged
 * part after it or aborts it when the store failed, so a client's retry does not reach Pyroscope
 * twice; with no local store the journal (fsync'ed) is the acknowledgement. pusher_tick() from the
 * maintenance thread lets due groups leave.
 */
#include "pusher.h"
#include "hold.h"

#include "../common/buf.h"
#include "../common/log.h"
#include "../common/metrics.h"
#include "../wire/pprof_write.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

/* ---- the Push request (push/v1/push.proto), written by hand: the generated structs stay in
 * otlp/ and query/ (STYLE.md) ---- */

static int gzip_into(sp_buf *out, const uint8_t *p, size_t n)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
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

/* Appends one RawProfileSeries (field 1 of PushRequest) for p, its pprof gzip'ed (gz) or not:
 * Pyroscope takes both (it looks for gzip's magic). The journal keeps pprof as it is: it is
 * written for every Export and read only after a crash, and gzip was 60 % of its CPU. */
static int encode_series_gz(const sp_profile *p, int gz_on, sp_buf *out, sp_err *err)
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
    if (!rc && gz_on && gzip_into(&gz, pprof.data, pprof.len) != 0)
        rc = sp_fail(err, SP_ENOMEM, "pyroscope: cannot compress a profile");
    if (!rc && !gz_on) {
        sp_buf t = gz;
        gz = pprof;
        pprof = t;
    }
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

static int encode_series(const sp_profile *p, sp_buf *out, sp_err *err)
{
    return encode_series_gz(p, 1, out, err);
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

/* ---- the journal (see the top of the file) ---- */

#define JMAGIC "SPHJ"

int pusher_journal_parse(const uint8_t *d, size_t n, const char **tenant, size_t *tlen,
                         const uint8_t **payload, size_t *plen)
{
    if (n < 4 + 4 + 8 + 4 || memcmp(d, JMAGIC, 4) != 0)
        return SP_EINVAL;
    uint32_t tl =
        (uint32_t)d[4] | (uint32_t)d[5] << 8 | (uint32_t)d[6] << 16 | (uint32_t)d[7] << 24;
    if (tl > 1024 || 8 + (size_t)tl + 8 + 4 > n)
        return SP_EINVAL;
    uint64_t pl = 0;
    for (int i = 7; i >= 0; i--)
        pl = pl << 8 | d[8 + tl + (size_t)i];
    if (pl != n - (8 + (size_t)tl + 8 + 4))
        return SP_EINVAL;
    uint32_t crc = (uint32_t)crc32(0L, d, (uInt)(n - 4));
    const uint8_t *c = d + n - 4;
    if (crc != ((uint32_t)c[0] | (uint32_t)c[1] << 8 | (uint32_t)c[2] << 16 | (uint32_t)c[3] << 24))
        return SP_EINVAL;
    *tenant = (const char *)d + 8;
    *tlen = tl;
    *payload = d + 8 + tl + 8;
    *plen = (size_t)pl;
    return 0;
}

static int journal_encode(const char *tenant, const sp_buf *payload, sp_buf *out)
{
    size_t tl = strlen(tenant);
    uint8_t h[8];
    memcpy(h, JMAGIC, 4);
    for (int i = 0; i < 4; i++)
        h[4 + i] = (uint8_t)(tl >> (8 * i));
    uint8_t pl[8];
    for (int i = 0; i < 8; i++)
        pl[i] = (uint8_t)((uint64_t)payload->len >> (8 * i));
    if (sp_buf_append(out, h, 8) || sp_buf_append(out, tenant, tl) || sp_buf_append(out, pl, 8) ||
        sp_buf_append(out, payload->data, payload->len))
        return SP_ENOMEM;
    uint32_t crc = (uint32_t)crc32(0L, out->data, (uInt)out->len);
    uint8_t c[4] = {(uint8_t)crc, (uint8_t)(crc >> 8), (uint8_t)(crc >> 16), (uint8_t)(crc >> 24)};
    return sp_buf_append(out, c, 4) ? SP_ENOMEM : 0;
}

typedef struct jfile {
    hold_group_id g;
    uint64_t seq, size;
} jfile;

struct pusher {
    outbox *ob;
    hold *h; /* NULL: push at arrival */
    pthread_mutex_t mu;
    char dir[4096]; /* the journal */
    int fsync;
    atomic_uint_fast64_t seq;
    int64_t (*clock_ns)(void);
    uint32_t slot; /* hold_bucket_offset() */
    jfile *files;  /* committed journal files, by group */
    size_t nfiles, capfiles;
    uint64_t unheld, recovered;
    uint64_t journal_bytes, journal_max; /* past the max the oldest groups leave early */
};

static void jpath(const pusher *p, hold_group_id g, uint64_t seq, const char *ext, char *out,
                  size_t n)
{
    if (seq == UINT64_MAX)
        snprintf(out, n, "%s/%" PRId64 "_%" PRId64 ".%s", p->dir, g.bucket_s, g.gen, ext);
    else
        snprintf(out, n, "%s/%" PRId64 "_%" PRId64 "_%016" PRIx64 ".%s", p->dir, g.bucket_s, g.gen,
                 seq, ext);
}

static int write_file(const char *path, const void *d, size_t n, int sync)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    const uint8_t *q = d;
    while (n) {
        ssize_t w = write(fd, q, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            close(fd);
            unlink(path);
            return -1;
        }
        q += w;
        n -= (size_t)w;
    }
    if (sync && fsync(fd) != 0) {
        close(fd);
        unlink(path);
        return -1;
    }
    return close(fd);
}

static int sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* The Push request of b's observations that go to group g (planned at plan_ns), with the labels
 * known now: what the journal keeps for a crash. */
static int encode_group_part(pusher *p, const sp_batch *b, int64_t plan_ns, hold_group_id g,
                             uint64_t seq, sp_buf *out, sp_err *err)
{
    for (size_t i = 0; i < b->nprofiles; i++) {
        const sp_profile *pr = b->profiles[i];
        if (pr->attach_only || !pr->nsamples)
            continue;
        sp_sample *smp = malloc(pr->nsamples * sizeof *smp);
        if (!smp)
            return sp_fail(err, SP_ENOMEM, "pyroscope: out of memory");
        uint32_t n = 0;
        for (uint32_t j = 0; j < pr->nsamples; j++) {
            const sp_sample *s = &pr->samples[j];
            int64_t v = 0;
            for (uint32_t k = 0; k < (s->nobs ? s->nobs : 1); k++) {
                hold_group_id x = hold_group_of(p->h, hold_obs_ts(pr, s, k, plan_ns), plan_ns);
                if (x.bucket_s == g.bucket_s && x.gen == g.gen)
                    v = sp_sat_add(v, hold_obs_value(s, k));
            }
            if (!v)
                continue;
            smp[n] = *s;
            smp[n].value = v;
            smp[n].timestamps = NULL;
            smp[n].values = NULL;
            smp[n].nobs = 0;
            n++;
        }
        int rc = 0;
        if (n) {
            sp_profile part = *pr;
            part.samples = smp;
            part.nsamples = n;
            part.time_nanos = g.bucket_s * 1000000000LL + hold_recovered_offset(p->slot, seq);
            part.duration_nanos = HOLD_BUCKET_NS;
            rc = encode_series_gz(&part, 0, out, err);
        }
        free(smp);
        if (rc)
            return rc;
    }
    return 0;
}

static void count_unheld(pusher *p)
{
    pthread_mutex_lock(&p->mu);
    p->unheld++;
    pthread_mutex_unlock(&p->mu);
}

/* Pushes b at arrival (no hold, or a batch over more groups than a ticket holds). */
static int stage_direct(pusher *p, const sp_batch *b, pusher_ticket *t, sp_err *err)
{
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

static void unlink_staged(pusher *p, pusher_ticket *t, int n)
{
    for (int i = 0; i < n; i++) {
        char path[4200];
        jpath(p, t->groups[i], t->seqs[i], "tmp", path, sizeof path);
        unlink(path);
    }
}

int pusher_stage(pusher *p, const sp_batch *b, pusher_ticket *t, sp_err *err)
{
    memset(t, 0, sizeof *t);
    if (!p->h)
        return stage_direct(p, b, t, err);
    t->plan_ns = p->clock_ns();
    pthread_mutex_lock(&p->mu);
    int n = hold_plan(p->h, b, t->plan_ns, t->groups, PUSHER_MAX_GROUPS);
    pthread_mutex_unlock(&p->mu);
    if (n < 0) {
        count_unheld(p);
        return stage_direct(p, b, t, err);
    }
    t->ngroups = n;
    t->held = 1;
    const char *tenant = b->tenant && *b->tenant ? b->tenant : "anonymous";
    int rc = 0, i = 0;
    sp_buf part, file;
    sp_buf_init(&part, 0);
    sp_buf_init(&file, 0);
    for (; i < n && !rc; i++) {
        t->seqs[i] = atomic_fetch_add(&p->seq, 1);
        part.len = file.len = 0;
        rc = encode_group_part(p, b, t->plan_ns, t->groups[i], t->seqs[i], &part, err);
        if (!rc && journal_encode(tenant, &part, &file))
            rc = sp_fail(err, SP_ENOMEM, "pyroscope: out of memory");
        char path[4200];
        jpath(p, t->groups[i], t->seqs[i], "tmp", path, sizeof path);
        t->sizes[i] = file.len;
        if (!rc && write_file(path, file.data, file.len, p->fsync) != 0)
            rc = sp_fail(err, SP_EUNAVAIL, "pyroscope: cannot write %s: %s", path, strerror(errno));
    }
    sp_buf_free(&part);
    sp_buf_free(&file);
    if (rc) {
        unlink_staged(p, t, i);
        pthread_mutex_lock(&p->mu);
        hold_unpin(p->h, t->groups, n);
        pthread_mutex_unlock(&p->mu);
        t->held = 0;
    }
    return rc;
}

int pusher_commit(pusher *p, const sp_batch *b, pusher_ticket *t, sp_err *err)
{
    if (t->staged) {
        t->staged = 0;
        return outbox_commit(p->ob, &t->ob, err);
    }
    if (!t->held)
        return 0;
    t->held = 0;
    int rc = 0;
    for (int i = 0; i < t->ngroups && !rc; i++) {
        char from[4200], to[4200];
        jpath(p, t->groups[i], t->seqs[i], "tmp", from, sizeof from);
        jpath(p, t->groups[i], t->seqs[i], "hold", to, sizeof to);
        if (rename(from, to) != 0)
            rc = sp_fail(err, SP_EUNAVAIL, "pyroscope: cannot commit %s: %s", to, strerror(errno));
    }
    if (!rc && p->fsync && t->ngroups && sync_dir(p->dir) != 0)
        rc = sp_fail(err, SP_EUNAVAIL, "pyroscope: cannot sync %s: %s", p->dir, strerror(errno));
    pthread_mutex_lock(&p->mu);
    if (rc) {
        hold_unpin(p->h, t->groups, t->ngroups);
        pthread_mutex_unlock(&p->mu);
        for (int i = 0; i < t->ngroups; i++) {
            char path[4200];
            jpath(p, t->groups[i], t->seqs[i], "tmp", path, sizeof path);
            unlink(path);
            jpath(p, t->groups[i], t->seqs[i], "hold", path, sizeof path);
            unlink(path);
        }
        return rc;
    }
    for (int i = 0; i < t->ngroups; i++) {
        if (p->nfiles == p->capfiles) {
            size_t nc = p->capfiles ? p->capfiles * 2 : 256;
            jfile *f = realloc(p->files, nc * sizeof *f);
            if (!f)
                break; /* the file stays: queued again at the next open (at least once) */
            p->files = f;
            p->capfiles = nc;
        }
        p->files[p->nfiles++] = (jfile){t->groups[i], t->seqs[i], t->sizes[i]};
        p->journal_bytes += t->sizes[i];
    }
    sp_err herr = {0};
    if (hold_add(p->h, b, t->plan_ns, t->groups, t->ngroups, &herr)) {
        static sp_ratelimit rl;
        uint64_t held = 0;
        if (sp_ratelimit_ok(&rl, 10000, &held))
            sp_warn("msg=\"pyroscope hold: %s; their labels may be incomplete\" held_back=%llu",
                    herr.msg, (unsigned long long)held);
    }
    pthread_mutex_unlock(&p->mu);
    return 0;
}

void pusher_abort(pusher *p, pusher_ticket *t)
{
    if (t->staged)
        outbox_abort(p->ob, &t->ob);
    t->staged = 0;
    if (t->held) {
        unlink_staged(p, t, t->ngroups);
        pthread_mutex_lock(&p->mu);
        hold_unpin(p->h, t->groups, t->ngroups);
        pthread_mutex_unlock(&p->mu);
    }
    t->held = 0;
}

/* ---- leaving the hold ---- */

static int emit_profile(void *ud, const char *tenant, hold_group_id g, const sp_profile *pr)
{
    (void)g;
    pusher *p = ud;
    sp_buf push;
    sp_buf_init(&push, 0);
    sp_err err = {0};
    int rc = encode_series(pr, &push, &err);
    if (!rc)
        rc = outbox_put(p->ob, tenant, push.data, push.len, &err);
    sp_buf_free(&push);
    if (rc) {
        static sp_ratelimit rl;
        uint64_t held = 0;
        if (sp_ratelimit_ok(&rl, 10000, &held))
            sp_warn("msg=\"pyroscope: a settled bucket was not queued; retrying\" err=\"%s\" "
                    "held_back=%llu",
                    err.msg, (unsigned long long)held);
    }
    return rc;
}

/* The group left (its profiles are queued): mark it, delete its journal files, unmark. */
static void group_done(void *ud, hold_group_id g)
{
    pusher *p = ud;
    char mark[4200];
    jpath(p, g, UINT64_MAX, "done", mark, sizeof mark);
    int marked = write_file(mark, "", 0, p->fsync) == 0 && (!p->fsync || sync_dir(p->dir) == 0);
    size_t w = 0;
    for (size_t i = 0; i < p->nfiles; i++) {
        if (p->files[i].g.bucket_s == g.bucket_s && p->files[i].g.gen == g.gen) {
            if (marked) {
                char path[4200];
                jpath(p, g, p->files[i].seq, "hold", path, sizeof path);
                unlink(path);
            }
            p->journal_bytes -= p->files[i].size;
            continue;
        }
        p->files[w++] = p->files[i];
    }
    p->nfiles = w;
    if (marked)
        unlink(mark);
    /* Not marked: the files stay and the next open queues them again (at least once). */
}

static void publish(pusher *p)
{
    if (!p->h)
        return;
    hold_stats st;
    hold_get_stats(p->h, &st);
    sp_metrics_gauge_set("pyroscope_hold_groups", (int64_t)st.groups);
    sp_metrics_gauge_set("pyroscope_hold_records", (int64_t)st.records);
    sp_metrics_gauge_set("pyroscope_hold_bytes", (int64_t)st.bytes);
    sp_metrics_gauge_set("pyroscope_hold_observations_total", (int64_t)st.held_total);
    sp_metrics_gauge_set("pyroscope_hold_moved_to_outer_span_total", (int64_t)st.moved_total);
    sp_metrics_gauge_set("pyroscope_hold_released_early_total", (int64_t)st.early_total);
    sp_metrics_gauge_set("pyroscope_hold_late_groups_total", (int64_t)st.late_groups_total);
    sp_metrics_gauge_set("pyroscope_spans_incomplete_total", (int64_t)st.incomplete_total);
    sp_metrics_gauge_set("pyroscope_hold_delay_last_milliseconds", st.last_delay_ms);
    sp_metrics_gauge_set("pyroscope_hold_delay_milliseconds_sum", (int64_t)st.delay_obs_ms_sum);
    sp_metrics_gauge_set("pyroscope_hold_delay_milliseconds_count", (int64_t)st.delay_obs_count);
    sp_metrics_gauge_set("pyroscope_hold_delay_max_milliseconds", st.max_delay_ms);
    sp_metrics_gauge_set("pyroscope_hold_unheld_batches_total", (int64_t)p->unheld);
    sp_metrics_gauge_set("pyroscope_hold_journal_bytes", (int64_t)p->journal_bytes);
    sp_metrics_gauge_set("pyroscope_hold_recovered_files_total", (int64_t)p->recovered);
}

/* Lets groups leave: taken out of the hold under the lock, encoded and queued without it (a
 * bucket of a busy service is seconds of CPU: ingest workers must not wait behind it), then
 * marked done under the lock. all: as hold_release() (2: the oldest group, then the due ones). */
static void release(pusher *p, int64_t now_ns, int all)
{
    for (int first = 1;; first = 0) {
        pthread_mutex_lock(&p->mu);
        hold_detached *d = hold_detach(p->h, now_ns, first || all != 2 ? all : 0);
        pthread_mutex_unlock(&p->mu);
        if (!d)
            return;
        int rc = hold_detached_emit(d, emit_profile, p);
        pthread_mutex_lock(&p->mu);
        hold_group_id id = hold_detached_id(d);
        if (rc) {
            hold_detached_return(p->h, d);
        } else {
            hold_detached_done(p->h, d, now_ns);
            group_done(p, id);
        }
        pthread_mutex_unlock(&p->mu);
        if (rc)
            return;
    }
}

void pusher_tick(pusher *p, int64_t now_ns)
{
    if (!p || !p->h)
        return;
    release(p, now_ns, 0);
    /* The journal is on disk what the hold is in memory: the queue's byte cap bounds it too. */
    for (;;) {
        pthread_mutex_lock(&p->mu);
        uint64_t before = p->journal_bytes;
        int over = before > p->journal_max;
        pthread_mutex_unlock(&p->mu);
        if (!over)
            break;
        release(p, now_ns, 2);
        pthread_mutex_lock(&p->mu);
        int shrank = p->journal_bytes < before;
        pthread_mutex_unlock(&p->mu);
        if (!shrank)
            break;
    }
    pthread_mutex_lock(&p->mu);
    publish(p);
    pthread_mutex_unlock(&p->mu);
}

void pusher_hold_stats(pusher *p, hold_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!p || !p->h)
        return;
    pthread_mutex_lock(&p->mu);
    hold_get_stats(p->h, out);
    pthread_mutex_unlock(&p->mu);
}

static int64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int pusher_span_incomplete(pusher *p, const char *tenant, const uint8_t span_id[8])
{
    if (!p || !p->h)
        return 0;
    pthread_mutex_lock(&p->mu);
    int r = hold_span_incomplete(p->h, tenant, span_id);
    pthread_mutex_unlock(&p->mu);
    return r;
}

void pusher_close(pusher *p)
{
    if (!p)
        return;
    if (p->h) {
        /* Everything held leaves now (counted early); what cannot be queued stays in the
         * journal for the next start. */
        release(p, p->clock_ns(), 1);
        pthread_mutex_lock(&p->mu);
        publish(p);
        pthread_mutex_unlock(&p->mu);
        hold_free(p->h);
    }
    outbox_close(p->ob);
    pthread_mutex_destroy(&p->mu);
    free(p->files);
    free(p);
}

/* ---- opening: queue what a crash left in the journal ---- */

static int read_whole(const char *path, sp_buf *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    uint8_t buf[65536];
    ssize_t r;
    while ((r = read(fd, buf, sizeof buf)) > 0)
        if (sp_buf_append(out, buf, (size_t)r)) {
            close(fd);
            return -1;
        }
    close(fd);
    return r < 0 ? -1 : 0;
}

static void recover(pusher *p)
{
    DIR *d = opendir(p->dir);
    if (!d)
        return;
    hold_group_id *done = NULL;
    size_t ndone = 0, capdone = 0;
    struct dirent *de;
    /* first pass: the done marks and the temporary files */
    while ((de = readdir(d))) {
        int64_t b, g;
        char ext[8];
        if (sscanf(de->d_name, "%" SCNd64 "_%" SCNd64 ".%7s", &b, &g, ext) == 3 &&
            strcmp(ext, "done") == 0) {
            if (ndone == capdone) {
                size_t nc = capdone ? capdone * 2 : 16;
                hold_group_id *x = realloc(done, nc * sizeof *x);
                if (!x)
                    continue;
                done = x;
                capdone = nc;
            }
            done[ndone++] = (hold_group_id){b, g};
        }
    }
    rewinddir(d);
    sp_buf file;
    sp_buf_init(&file, 0);
    while ((de = readdir(d))) {
        int64_t b, g;
        uint64_t seq;
        char ext[8], path[4400];
        if (sscanf(de->d_name, "%" SCNd64 "_%" SCNd64 "_%" SCNx64 ".%7s", &b, &g, &seq, ext) != 4 ||
            strlen(de->d_name) > 200)
            continue;
        snprintf(path, sizeof path, "%s/%.200s", p->dir, de->d_name);
        if (strcmp(ext, "tmp") == 0) { /* never committed: never acknowledged */
            unlink(path);
            continue;
        }
        if (strcmp(ext, "hold") != 0)
            continue;
        int was_done = 0;
        for (size_t i = 0; i < ndone; i++)
            was_done |= done[i].bucket_s == b && done[i].gen == g;
        if (was_done) {
            unlink(path);
            continue;
        }
        file.len = 0;
        const char *tenant;
        const uint8_t *payload;
        size_t tl, pl;
        sp_err err = {0};
        if (read_whole(path, &file) != 0 ||
            pusher_journal_parse(file.data, file.len, &tenant, &tl, &payload, &pl) != 0) {
            sp_warn("msg=\"pyroscope journal file is not readable; dropped\" file=\"%s\"", path);
            unlink(path);
            continue;
        }
        char tn[1025];
        snprintf(tn, sizeof tn, "%.*s", (int)tl, tenant);
        if (pl && outbox_put(p->ob, tn, payload, pl, &err) != 0) {
            sp_warn("msg=\"pyroscope journal file not queued; kept for the next start\" "
                    "file=\"%s\" err=\"%s\"",
                    path, err.msg);
            continue;
        }
        unlink(path);
        p->recovered++;
    }
    sp_buf_free(&file);
    closedir(d);
    for (size_t i = 0; i < ndone; i++) {
        char mark[4200];
        jpath(p, done[i], UINT64_MAX, "done", mark, sizeof mark);
        unlink(mark);
    }
    free(done);
    if (p->recovered)
        sp_info("msg=\"pyroscope: queued what the last run held\" files=%llu",
                (unsigned long long)p->recovered);
}

static int mkdir_p(const char *dir)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *q = tmp + 1; *q; q++)
        if (*q == '/') {
            *q = 0;
            if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
                return -1;
            *q = '/';
        }
    return mkdir(tmp, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

int pusher_open(pusher **out, const pusher_options *o, sp_err *err)
{
    *out = NULL;
    if (!o || !o->http.url || !*o->http.url)
        return sp_fail(err, SP_EINVAL, "pushing to Pyroscope needs a URL (--pyroscope-url)");
    pusher *p = calloc(1, sizeof *p);
    if (!p)
        return sp_fail(err, SP_ENOMEM, "pyroscope: out of memory");
    pthread_mutex_init(&p->mu, NULL);
    const char *base = o->http.url;
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/')
        bl--;
    char url[4096], dir[4096];
    snprintf(url, sizeof url, "%.*s/push.v1.PusherService/Push", (int)bl, base);
    const char *dd = o->data_dir && *o->data_dir ? o->data_dir : ".";
    snprintf(dir, sizeof dir, "%s/outbox/pyroscope", dd);
    snprintf(p->dir, sizeof p->dir, "%s/outbox/pyroscope-hold", dd);
    p->fsync = o->fsync;
    p->journal_max = o->max_bytes ? o->max_bytes : (uint64_t)256 << 20;
    p->clock_ns = o->clock_ns ? o->clock_ns : realtime_ns;
    static const char *const headers[] = {"Connect-Protocol-Version: 1", NULL};
    outbox_options oo = {
        .dir = dir,
        .name = "pyroscope",
        .max_bytes = o->max_bytes,
        .linger_ns = o->linger_ns,
        .fsync = o->fsync,
        .http = o->http,
        .deliver = o->deliver,
        .deliver_ud = o->deliver_ud,
    };
    oo.http.url = url;
    oo.http.content_type = "application/proto";
    oo.http.headers = headers;
    oo.http.tenant_header = "X-Scope-OrgID";
    int rc = outbox_open(&p->ob, &oo, err);
    if (rc) {
        sp_err_prefix(err, "pyroscope: ");
        pthread_mutex_destroy(&p->mu);
        free(p);
        return rc;
    }
    if (mkdir_p(p->dir) != 0) {
        rc = sp_fail(err, SP_EUNAVAIL, "pyroscope: cannot create %s: %s", p->dir, strerror(errno));
        outbox_close(p->ob);
        pthread_mutex_destroy(&p->mu);
        free(p);
        return rc;
    }
    recover(p); /* before any hold: what a crash left goes out as it was */
    atomic_init(&p->seq, (uint64_t)(p->clock_ns() / 1000000000LL) << 20);
    /* The instance's slot: from the host and the data directory, stable across restarts. */
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    uint32_t hsh = 2166136261u;
    for (const char *c = host; *c; c++)
        hsh = (hsh ^ (uint8_t)*c) * 16777619u;
    for (const char *c = p->dir; *c; c++)
        hsh = (hsh ^ (uint8_t)*c) * 16777619u;
    p->slot = hsh % 997;
    if (o->delay_ns >= 0) {
        hold_options ho = {
            .delay_ns = o->delay_ns, .max_bytes = o->hold_max_bytes, .instance_slot = p->slot};
        p->h = hold_new(&ho);
        if (!p->h) {
            outbox_close(p->ob);
            pthread_mutex_destroy(&p->mu);
            free(p);
            return sp_fail(err, SP_ENOMEM, "pyroscope: out of memory");
        }
    }
    sp_metrics_gauge_add("pyroscope_late_attachments_skipped_total", 0);
    publish(p);
    sp_info("msg=\"pushing to pyroscope\" url=\"%s\" queue=\"%s\" %s=%lld", url, dir,
            p->h ? "delay_ms" : "at_arrival", (long long)(p->h ? o->delay_ns / 1000000 : 1));
    *out = p;
    return 0;
}
