/* The ingest pipeline (pipeline.h): the program's wiring of correlator, store and delivery. */
#include "pipeline.h"

#include "../common/log.h"
#include "../common/metrics.h"
#include "../delivery/forward.h"
#include "symbols.h"

#include <pthread.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The correlator's figures as it last published them (after its last attach or sweep): a scrape
 * never takes the correlator's lock, so it never waits behind an attach. */
void pipeline_metrics(void *ud)
{
    pipeline *p = ud;
    corr_stats st;
    corr_get_stats(p->corr, 0, &st);
    static const struct {
        const char *name;
        size_t off;
    } m[] = {
        {"correlator_spans_indexed", offsetof(corr_stats, spans_indexed)},
        {"correlator_spans_known", offsetof(corr_stats, spans_known)},
        {"correlator_spans_short_total", offsetof(corr_stats, spans_short)},
        {"correlator_samples_waiting", offsetof(corr_stats, obs_waiting)},
        {"correlator_samples_waiting_unattached", offsetof(corr_stats, obs_unattached)},
        {"correlator_bytes", offsetof(corr_stats, bytes)},
        {"correlator_samples_by_link_total", offsetof(corr_stats, by_link)},
        {"correlator_samples_by_thread_total", offsetof(corr_stats, by_thread)},
        {"correlator_samples_by_process_span_total", offsetof(corr_stats, by_process_span)},
        {"correlator_samples_ambiguous_total", offsetof(corr_stats, ambiguous)},
        {"correlator_samples_unmatched_total", offsetof(corr_stats, unmatched)},
        {"correlator_late_attachments_total", offsetof(corr_stats, late)},
        {"correlator_profiles_service_learned_total", offsetof(corr_stats, services_learned)},
        {"correlator_offcpu_attached_total", offsetof(corr_stats, offcpu_attached)},
        {"correlator_evicted_total", offsetof(corr_stats, evicted)},
        {"correlator_memory_trims_total", offsetof(corr_stats, memory_trims)},
        {"correlator_unclaimed_bytes", offsetof(corr_stats, unclaimed_bytes)},
        {"correlator_unclaimed_evicted_total", offsetof(corr_stats, unclaimed_evicted)},
        {"correlator_released_total", offsetof(corr_stats, released)},
        {"correlator_spans_evicted_total", offsetof(corr_stats, spans_evicted)},
        {"correlator_samples_not_kept_total", offsetof(corr_stats, not_kept)},
        {"correlator_attach_failed_total", offsetof(corr_stats, attach_failed)},
        {"correlator_spans_not_indexed_total", offsetof(corr_stats, spans_not_indexed)},
        {"correlator_process_identities_over_total", offsetof(corr_stats, idents_over)},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        sp_metrics_gauge_set(m[i].name,
                             (int64_t) * (const uint64_t *)((const char *)&st + m[i].off));
    if (p->symbols)
        app_symbols_metrics(p->symbols);
    store_stats ss;
    store_stats_get(p->store, &ss);
    sp_metrics_gauge_set("store_batches_committed_total", (int64_t)ss.batches_committed);
    sp_metrics_gauge_set("store_batches_failed_total", (int64_t)ss.batches_failed);
    sp_metrics_gauge_set("store_transactions_total", (int64_t)ss.transactions);
    sp_metrics_gauge_set("store_samples_written_total", (int64_t)ss.samples_written);
    sp_metrics_gauge_set("store_spans_written_total", (int64_t)ss.spans_written);
    sp_metrics_gauge_set("store_writer_pending", (int64_t)ss.pending);
    sp_metrics_gauge_set("store_last_commit_microseconds", (int64_t)ss.last_commit_us);
    sp_metrics_gauge_set("store_retention_rows_deleted_total", (int64_t)ss.rows_deleted);
    sp_metrics_gauge_set("store_chunks_merged_total", (int64_t)ss.chunks_merged);
    sp_metrics_gauge_set("store_chunks_moved_total", (int64_t)ss.chunks_moved);
    sp_metrics_gauge_set("store_compaction_untracked_total", (int64_t)ss.compact_untracked);
    sp_metrics_gauge_set("store_compaction_failed_total", (int64_t)ss.compact_failed);
    sp_metrics_gauge_set("store_checkpoints_total", (int64_t)ss.checkpoints);
    sp_metrics_gauge_set("store_checkpoints_inline_total", (int64_t)ss.checkpoints_inline);
    sp_metrics_gauge_set("store_checkpoints_failed_total", (int64_t)ss.checkpoints_failed);
    sp_metrics_gauge_set("store_lookups_skipped_total", (int64_t)ss.lookups_skipped);
    sp_metrics_gauge_set("store_hash_index_rows", (int64_t)ss.index_rows);
    sp_metrics_gauge_set("store_hash_index_bytes", (int64_t)ss.index_bytes);
    sp_metrics_gauge_set("store_name_cache_bytes", (int64_t)ss.name_cache_bytes);
    sp_metrics_gauge_set("store_name_cache_entries", (int64_t)ss.name_cache_entries);
    sp_metrics_gauge_set("store_name_cache_hits_total", (int64_t)ss.name_cache_hits);
    sp_metrics_gauge_set("store_name_cache_misses_total", (int64_t)ss.name_cache_misses);
    sp_metrics_gauge_set("store_name_cache_evicted_total", (int64_t)ss.name_cache_evicted);
}

/* What rule 3 decided after the settle time: attach_only profiles, stored like the late
 * attachments of an ingest request (and relabelling what the pusher still holds). */
static int store_settled(void *ud, sp_batch *b)
{
    pipeline *p = ud;
    sp_err err = {0};
    pusher_ticket t = {0};
    int rc = p->pusher ? pusher_stage(p->pusher, b, &t, &err) : 0;
    if (!rc)
        rc = store_write(p->store, b, &err);
    if (p->pusher) {
        /* the attachments relabel samples still held for Pyroscope */
        sp_err perr = {0};
        if (rc)
            pusher_abort(p->pusher, &t);
        else
            pusher_commit(p->pusher, b, &t, &perr);
    }
    if (rc) {
        static sp_ratelimit rl;
        uint64_t held = 0;
        if (sp_ratelimit_ok(&rl, 10000, &held))
            sp_warn("msg=\"settled attachments not stored\" err=\"%s\" held_back=%llu", err.msg,
                    (unsigned long long)held);
    }
    return rc;
}

/* The maintenance thread, once a second: expiry, rule 3 after its settle time, and the counters
 * move even when no ingest comes in. */
static void *maintain(void *ud)
{
    pipeline *p = ud;
    pthread_mutex_lock(&p->tick_mu);
    while (!p->tick_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&p->tick_cv, &p->tick_mu, &ts);
        if (p->tick_stop)
            break;
        pthread_mutex_unlock(&p->tick_mu);
        int64_t now = now_ns();
        corr_expire(p->corr, now);
        corr_settle(p->corr, now, store_settled, p);
        pusher_tick(p->pusher, now);
        pthread_mutex_lock(&p->tick_mu);
    }
    pthread_mutex_unlock(&p->tick_mu);
    return NULL;
}

int pipeline_start(pipeline *p)
{
    sp_metrics_gauge_add("ingest_stage_cpu_microseconds_total", 0);
    sp_metrics_gauge_add("ingest_stage_drain_microseconds_total", 0);
    sp_metrics_gauge_add("ingest_commit_wait_microseconds_total", 0);
    if (p->forward) /* counters are exported from start, 0 until something happens */
        sp_metrics_gauge_add("traces_forward_spans_marked_total", 0);
    if (p->pusher)
        sp_metrics_gauge_add("pyroscope_dropped_total", 0);
    pthread_mutex_init(&p->tick_mu, NULL);
    pthread_cond_init(&p->tick_cv, NULL);
    p->tick_stop = 0;
    if (pthread_create(&p->tick, NULL, maintain, p) != 0)
        return -1;
    p->ticking = 1;
    return 0;
}

void pipeline_stop(pipeline *p)
{
    if (!p->ticking)
        return;
    pthread_mutex_lock(&p->tick_mu);
    p->tick_stop = 1;
    pthread_cond_signal(&p->tick_cv);
    pthread_mutex_unlock(&p->tick_mu);
    pthread_join(p->tick, NULL);
    p->ticking = 0;
}

int pipeline_span_profilable(void *ud, const char *tenant, const sp_span *sp)
{
    return corr_span_profilable(((pipeline *)ud)->corr, tenant, sp);
}

static int forward_enqueue(void *ud, const char *tenant, const uint8_t *msg, size_t len,
                           sp_err *err)
{
    return outbox_put(((pipeline *)ud)->forward, tenant, msg, len, err);
}

typedef struct mark_ctx {
    pipeline *p;
    const char *tenant;
} mark_ctx;

/* With a Pyroscope pusher, only local roots are marked (a pushed sample names its outermost
 * span, so Pyroscope answers those exactly) and never a span whose samples left before it came. */
static int forward_mark(void *ud, const uint8_t span_id[8])
{
    const mark_ctx *m = ud;
    return corr_span_mark(m->p->corr, m->tenant, span_id, m->p->pusher != NULL) &&
           !pusher_span_incomplete(m->p->pusher, m->tenant, span_id);
}

int pipeline_forward_prepare(void *ud, const char *tenant, const uint8_t *body, size_t len,
                             sp_buf *out, sp_err *err)
{
    mark_ctx m = {ud, tenant};
    size_t added = 0;
    int rc = forward_enrich_by(body, len, forward_mark, &m, out, &added, err);
    if (!rc && added)
        sp_metrics_gauge_add("traces_forward_spans_marked_total", (int64_t)added);
    return rc;
}

/* Correlation never refuses a batch: what it could not attach stays in it, unattached. */
static void correlate(pipeline *p, sp_batch *b, corr_ticket *t, corr_memo *m)
{
    sp_err cerr = {0};
    if (corr_attach_part(p->corr, b, now_ns(), t, m, &cerr)) {
        static sp_ratelimit rl;
        uint64_t held = 0;
        if (sp_ratelimit_ok(&rl, 10000, &held))
            sp_warn("msg=\"%s\" tenant=\"%s\" held_back=%llu", cerr.msg,
                    b->tenant ? b->tenant : "anonymous", (unsigned long long)held);
    }
}

/* The store's commit is the acknowledgement when it keeps a copy: the Push request is staged
 * before it and queued after it (or dropped with it), so a client's retry never reaches
 * Pyroscope twice. Alone, the pusher's queue is the acknowledgement. */
int pipeline_ingest(void *ud, const srv_request *req, sp_batch *b, sp_err *err)
{
    (void)req;
    pipeline *p = ud;
    corr_ticket ct;
    correlate(p, b, &ct, NULL);
    pusher_ticket t = {0};
    int rc = p->pusher ? pusher_stage(p->pusher, b, &t, err) : 0;
    if (!rc)
        rc = store_write(p->store, b, err);
    if (rc) {
        /* not stored: the client retries, and the retry must be taken as new (I4) */
        corr_abort(p->corr, b, &ct);
        if (p->pusher)
            pusher_abort(p->pusher, &t);
        return rc;
    }
    corr_commit(p->corr, &ct);
    if (p->pusher) {
        sp_err perr = {0};
        int prc = pusher_commit(p->pusher, b, &t, &perr);
        if (prc && !p->store_local)
            return sp_fail(err, prc, "%s", perr.msg);
        if (prc) {
            /* SQLite acknowledged the batch: the client must not send it again for Pyroscope */
            static sp_ratelimit rl;
            uint64_t held = 0;
            if (sp_ratelimit_ok(&rl, 10000, &held))
                sp_error("msg=\"profiles stored but not queued for Pyroscope\" err=\"%s\" "
                         "held_back=%llu",
                         perr.msg, (unsigned long long)held);
            sp_metrics_gauge_add("pyroscope_dropped_total", 1);
        }
    }
    if (p->forward && b->raw_traces && b->nspans) {
        /* Queued as received: the spans to mark are chosen when it is sent, after the forward
         * delay (pipeline_forward_prepare), when their profiles and parents have arrived. */
        const char *tenant = b->tenant && *b->tenant ? b->tenant : "anonymous";
        rc = forward_enqueue(p, tenant, b->raw_traces, b->raw_traces_len, err);
    }
    return rc;
}

/* One streamed request. The ingest worker converts part after part; a stage thread of the
 * stream's own correlates each and hands it to the store, so the next part's conversion and this
 * part's correlation run at once (at half load an Export of 40,000 samples spent 14 of its 41 ms
 * correlating on the worker while the other core idled; issue 19).
 *
 *  P1. The stage thread is the only one that touches parts, tickets, memo, the store stream and
 *      `own` from its start until pipeline_stream_end() joined it; the worker only queues parts
 *      (under mu) and reads rc. So the correlator's and the store's allocations go to `own`, not
 *      to the request's arena, which the worker keeps allocating from.
 *  P2. A part is queued, correlated and handed to the store in the order the worker made it (the
 *      memo and the store's tables extend from part to part).
 *  P3. The first failure stops the stage: later parts are not handed on, the worker's next part
 *      and end report it, and end makes the store forget every part (failed), whatever the
 *      caller said. */
typedef struct stage_item {
    sp_batch *part;
    struct stage_item *next;
} stage_item;

typedef struct pipeline_stream {
    pipeline *p;
    sp_arena *a;   /* the request's: the stream and the queue's items (worker thread) */
    sp_arena *own; /* the stage thread's (P1) */
    store_stream *ss;
    sp_batch **parts;
    corr_ticket *tickets;
    size_t n, cap;
    corr_memo *memo; /* names and stacks of the request's tables, from part to part */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    stage_item *head, *tail; /* queued, not yet taken by the stage */
    int closed;              /* end was called: the stage drains the queue and returns */
    int rc;                  /* P3: the first failure, err its message */
    sp_err err;
} pipeline_stream;

/* The arena of a stage thread starts small: the correlator raises its budget by what a part's
 * splitting can need (corr_attach_part), and the rest is a pointer or two per part. */
#define STAGE_ARENA_BUDGET ((size_t)1 << 20)

/* Correlates one part and hands it to the store (stage thread). */
static int stage_part(pipeline_stream *st, sp_batch *part, sp_err *err)
{
    if (st->n == st->cap) {
        size_t cap = st->cap * 2 + 8;
        sp_batch **parts = sp_arena_alloc(st->own, cap * sizeof *parts);
        corr_ticket *tickets = sp_arena_alloc(st->own, cap * sizeof *tickets);
        if (!parts || !tickets)
            return sp_fail(err, SP_ETOOBIG, "too many parts for the request budget");
        if (st->n) {
            memcpy(parts, st->parts, st->n * sizeof *parts);
            memcpy(tickets, st->tickets, st->n * sizeof *tickets);
        }
        st->parts = parts;
        st->tickets = tickets;
        st->cap = cap;
    }
    part->arena = st->own; /* P1: what correlating allocates */
    correlate(st->p, part, &st->tickets[st->n], st->memo);
    st->parts[st->n++] = part;
    return store_stream_part(st->ss, part, err);
}

static void *stage_main(void *arg)
{
    pipeline_stream *st = arg;
    pthread_mutex_lock(&st->mu);
    for (;;) {
        while (!st->head && !st->closed)
            pthread_cond_wait(&st->cv, &st->mu);
        stage_item *it = st->head;
        if (!it)
            break; /* closed and drained */
        st->head = it->next;
        if (!st->head)
            st->tail = NULL;
        if (st->rc) /* P3 */
            continue;
        pthread_mutex_unlock(&st->mu);
        sp_err err = {0};
        int rc = stage_part(st, it->part, &err);
        pthread_mutex_lock(&st->mu);
        if (rc) {
            st->rc = rc;
            st->err = err;
        }
    }
    pthread_mutex_unlock(&st->mu);
    /* A stage thread lives for one Export, so a look at the process's threads at the end of a
     * run misses what the finished ones spent: they count it here (bench_ingest reads it). */
    struct timespec cpu;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu) == 0)
        sp_metrics_gauge_add("ingest_stage_cpu_microseconds_total",
                             (int64_t)cpu.tv_sec * 1000000 + cpu.tv_nsec / 1000);
    return NULL;
}

void *pipeline_stream_begin(void *ud, const srv_request *req, sp_arena *arena)
{
    (void)req;
    pipeline *p = ud;
    if (p->pusher || !p->store_local)
        return NULL; /* pusher_stage() takes the whole batch */
    pipeline_stream *st = sp_arena_calloc(arena, 1, sizeof *st);
    sp_arena *own = st ? sp_arena_new(STAGE_ARENA_BUDGET) : NULL;
    sp_err err = {0};
    if (!own || store_stream_begin(p->store, own, &st->ss, &err)) {
        sp_arena_free(own);
        return NULL; /* out of memory or budget: the whole batch will say so */
    }
    st->p = p;
    st->a = arena;
    st->own = own;
    st->memo = corr_memo_new(); /* NULL: each part resolves its names afresh */
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);
    if (pthread_create(&st->thread, NULL, stage_main, st) != 0) {
        /* nothing was queued to the store yet (store_stream_begin): ending it failed is free */
        (void)store_stream_end(st->ss, 1, &err);
        corr_memo_free(st->memo);
        pthread_mutex_destroy(&st->mu);
        pthread_cond_destroy(&st->cv);
        sp_arena_free(own);
        return NULL;
    }
    pthread_setname_np(st->thread, "ingest-stage"); /* counted with the ingest workers */
    return st;
}

int pipeline_stream_part(void *stream, sp_batch *part, sp_err *err)
{
    pipeline_stream *st = stream;
    stage_item *it = sp_arena_calloc(st->a, 1, sizeof *it);
    if (!it)
        return sp_fail(err, SP_ETOOBIG, "too many parts for the request budget");
    it->part = part;
    pthread_mutex_lock(&st->mu);
    int rc = st->rc;
    if (rc) {
        sp_fail(err, rc, "%s", st->err.msg);
    } else {
        if (st->tail)
            st->tail->next = it;
        else
            st->head = it;
        st->tail = it;
        pthread_cond_signal(&st->cv);
    }
    pthread_mutex_unlock(&st->mu);
    return rc;
}

int pipeline_stream_end(void *stream, int failed, sp_err *err)
{
    pipeline_stream *st = stream;
    pthread_mutex_lock(&st->mu);
    st->closed = 1;
    pthread_cond_signal(&st->cv);
    pthread_mutex_unlock(&st->mu);
    int64_t t0 = mono_us();
    pthread_join(st->thread, NULL); /* P1: from here on, everything is this thread's again */
    int64_t t1 = mono_us();
    int stage_rc = st->rc;
    int rc = store_stream_end(st->ss, failed || stage_rc, err);
    /* Where an Export's worker waits once it converted the last part: for its stage thread to
     * correlate the parts still queued, then for the store's commit (bench_ingest prints both). */
    sp_metrics_gauge_add("ingest_stage_drain_microseconds_total", t1 - t0);
    sp_metrics_gauge_add("ingest_commit_wait_microseconds_total", mono_us() - t1);
    if (stage_rc && !failed)
        rc = sp_fail(err, stage_rc, "%s", st->err.msg);
    corr_memo_free(st->memo);
    for (size_t i = st->n; i-- > 0;) { /* undone newest first */
        if (failed || rc)              /* not stored: a retry must be taken as new (I4) */
            corr_abort(st->p->corr, st->parts[i], &st->tickets[i]);
        else
            corr_commit(st->p->corr, &st->tickets[i]);
    }
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cv);
    sp_arena_free(st->own);
    return rc;
}
