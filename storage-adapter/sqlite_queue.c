/* The callers' side of the SQLite writer (sqlite_write.c has the writer thread): a batch is
 * validated on the caller's thread, queued, and the caller sleeps on its own condition variable
 * until the writer's transaction holding it committed or failed (W1). Streams (S1-S5 in
 * sqlite_write.c) queue with their first part and wait at their end; retention runs queue on a
 * list of their own.
 */
#include "sqlite_store.h"

#include <stdlib.h>
#include <string.h>

/* ---- validation (on the caller's thread)
 * ---------------------------------------------------------- */

#define BAD(...) sp_fail(err, SP_EINVAL, __VA_ARGS__)

static int check_str(const sp_profile *p, uint32_t idx, size_t pi, const char *what, sp_err *err)
{
    if (idx && idx >= p->nstrings)
        return BAD("profile %zu: %s string index %u out of range (string table has %u entries)", pi,
                   what, idx, p->nstrings);
    if (idx && !p->strings)
        return BAD("profile %zu: %s string index %u but no string table", pi, what, idx);
    return 0;
}

/* A location list checked against a location table of this size (validate_batch's memo). */
typedef struct checked_list {
    const uint32_t *ids;
    uint32_t n;
} checked_list;

#define CHECKED_LISTS 4096 /* a power of two: the memo's slot is a hash's top 12 bits */

/* Table entries [1, n) already checked, per table: the previous profile's tables when this one
 * shares them, or a stream's earlier parts' tables, which this one's extend (S5). */
typedef struct table_marks {
    uint32_t functions, mappings, locations;
} table_marks;

/* from: the entries already checked (NULL: none); `seen` remembers location lists checked
 * against these tables. */
static int validate_profile(const sp_profile *p, size_t pi, const table_marks *from,
                            checked_list *seen, sp_err *err)
{
    int rc;
    if (!p)
        return BAD("profile %zu is missing", pi);
    if (!p->type_id || !*p->type_id)
        return BAD("profile %zu has no profile type id", pi);
    if ((p->nfunctions > 1 && !p->functions) || (p->nlocations > 1 && !p->locations) ||
        (p->nmappings > 1 && !p->mappings) || (p->nsamples && !p->samples) ||
        (p->nseries && !p->series))
        return BAD("profile %zu: a table has entries but no storage", pi);
    for (uint32_t i = from && from->functions > 1 ? from->functions : 1; i < p->nfunctions; i++) {
        const sp_function *f = &p->functions[i];
        if ((rc = check_str(p, f->name, pi, "function name", err)) ||
            (rc = check_str(p, f->system_name, pi, "function system name", err)) ||
            (rc = check_str(p, f->filename, pi, "function file name", err)))
            return rc;
    }
    for (uint32_t i = from && from->mappings > 1 ? from->mappings : 1; i < p->nmappings; i++) {
        const sp_mapping *m = &p->mappings[i];
        if ((rc = check_str(p, m->filename, pi, "mapping file name", err)) ||
            (rc = check_str(p, m->build_id, pi, "mapping build id", err)))
            return rc;
    }
    for (uint32_t i = from && from->locations > 1 ? from->locations : 1; i < p->nlocations; i++) {
        const sp_location *l = &p->locations[i];
        if (l->mapping_id >= p->nmappings && l->mapping_id)
            return BAD("profile %zu location %u: mapping_id %u out of range (%u mappings)", pi, i,
                       l->mapping_id, p->nmappings);
        if ((rc = check_str(p, l->frame_type, pi, "frame type", err)))
            return rc;
        if (l->nlines && !l->lines)
            return BAD("profile %zu location %u: %u lines but no storage", pi, i, l->nlines);
        for (uint32_t k = 0; k < l->nlines; k++)
            if (l->lines[k].function_id && l->lines[k].function_id >= p->nfunctions)
                return BAD("profile %zu location %u line %u: function_id %u out of range "
                           "(%u functions)",
                           pi, i, k, l->lines[k].function_id, p->nfunctions);
    }
    for (uint32_t i = 0; i < p->nseries; i++)
        if (!p->series[i].name || !p->series[i].value)
            return BAD("profile %zu: series label %u has no name or value", pi, i);
    for (uint32_t i = 0; i < p->nsamples; i++) {
        const sp_sample *s = &p->samples[i];
        if (s->nlocations && !s->location_ids)
            return BAD("profile %zu sample %u: %u locations but no storage", pi, i, s->nlocations);
        /* Samples of one stack share its list (the converters do): each list is walked once. */
        size_t slot = (size_t)(((uintptr_t)s->location_ids >> 3) * 0x9e3779b97f4a7c15ull >> 52);
        if (s->nlocations &&
            !(seen[slot].ids == s->location_ids && seen[slot].n >= s->nlocations)) {
            for (uint32_t k = 0; k < s->nlocations; k++)
                if (s->location_ids[k] >= p->nlocations)
                    return BAD("profile %zu sample %u: location_id %u out of range (%u locations)",
                               pi, i, s->location_ids[k], p->nlocations);
            seen[slot].ids = s->location_ids;
            seen[slot].n = s->nlocations;
        }
        if (s->nobs && !s->timestamps)
            return BAD("profile %zu sample %u: %u observations but no timestamps", pi, i, s->nobs);
        if (s->nspans && !s->spans)
            return BAD("profile %zu sample %u: %u spans but no storage", pi, i, s->nspans);
        if (s->nlabels && !s->labels)
            return BAD("profile %zu sample %u: %u labels but no storage", pi, i, s->nlabels);
        for (uint32_t k = 0; k < s->nlabels; k++)
            if ((rc = check_str(p, s->labels[k].key, pi, "label key", err)) ||
                (rc = check_str(p, s->labels[k].str, pi, "label value", err)))
                return rc;
    }
    return 0;
}

/* checked: for a stream's part, the tables its earlier parts validated (updated here); NULL for
 * a batch. lists: for a stream's part, the stream's memo of location lists checked against those
 * tables (S5: a later part's tables extend them, and the converters hand every part the lists
 * they made for the first, so each list is walked once a stream, not once a part); NULL for a
 * batch, which takes a memo of its own. */
static int validate_batch(const sp_batch *b, table_marks *checked, checked_list *lists, sp_err *err)
{
    if (b->nprofiles && !b->profiles)
        return BAD("batch has %zu profiles but no storage", b->nprofiles);
    if (b->nspans && !b->spans)
        return BAD("batch has %zu spans but no storage", b->nspans);
    const sp_profile *prev = NULL;
    checked_list *seen = lists;
    if (b->nprofiles && !seen && !(seen = calloc(CHECKED_LISTS, sizeof *seen)))
        return sp_fail(err, SP_ENOMEM, "out of memory validating a batch");
    int rc = 0;
    for (size_t i = 0; i < b->nprofiles && !rc; i++) {
        const sp_profile *p = b->profiles[i];
        int shared = p && prev && p->functions == prev->functions &&
                     p->nfunctions == prev->nfunctions && p->locations == prev->locations &&
                     p->nlocations == prev->nlocations && p->mappings == prev->mappings &&
                     p->nmappings == prev->nmappings && p->strings == prev->strings &&
                     p->nstrings == prev->nstrings;
        table_marks all, *from = NULL;
        if (shared) {
            all = (table_marks){p->nfunctions, p->nmappings, p->nlocations};
            from = &all;
        } else if (p && checked && p->nfunctions >= checked->functions &&
                   p->nmappings >= checked->mappings && p->nlocations >= checked->locations) {
            from = checked; /* S5: the lists checked so far hold against these tables too */
        } else {
            /* lists checked against other tables prove nothing here */
            memset(seen, 0, CHECKED_LISTS * sizeof *seen);
        }
        rc = validate_profile(p, i, from, seen, err);
        if (!rc && p && checked)
            *checked = (table_marks){p->nfunctions, p->nmappings, p->nlocations};
        prev = p;
    }
    if (rc && seen == lists) /* lists this refused part checked hold only against its tables,
                                which `checked` never took: forget them all */
        memset(seen, 0, CHECKED_LISTS * sizeof *seen);
    if (seen != lists)
        free(seen);
    return rc;
}

/* ---- entry points ------------------------------------------------------------------------------
 */

/* Appends a write (a batch, or a stream at its first part) to the write queue, under s->mu:
 * SP_EUNAVAIL while the store closes, SP_EFULL past max_pending (the caller retries later). */
static int queue_write(sqs_store *s, sqs_req *req, sp_err *err)
{
    if (s->stopping)
        return sp_fail(err, SP_EUNAVAIL, "the store is closing");
    if (s->npending >= s->opt.max_pending)
        return sp_fail(err, SP_EFULL,
                       "the store's write queue is full (%zu batches waiting); retry later",
                       s->npending);
    if (s->tail)
        s->tail->next = req;
    else
        s->head = req;
    s->tail = req;
    s->npending++;
    return 0;
}

static int enqueue_and_wait(sqs_store *s, sqs_req *req, sp_err *err)
{
    pthread_cond_init(&req->cv, NULL);
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        pthread_cond_destroy(&req->cv);
        return sp_fail(err, SP_EUNAVAIL, "the store is closing");
    }
    if (req->kind == SQS_REQ_WRITE) {
        int rc = queue_write(s, req, err);
        if (rc) {
            pthread_mutex_unlock(&s->mu);
            pthread_cond_destroy(&req->cv);
            return rc;
        }
    } else {
        if (s->ret_tail)
            s->ret_tail->next = req;
        else
            s->ret_head = req;
        s->ret_tail = req;
    }
    pthread_cond_signal(&s->wake);
    while (!req->done)
        pthread_cond_wait(&req->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    pthread_cond_destroy(&req->cv);
    return req->rc;
}

int sqs_write(store *st, const sp_batch *b, sp_err *err)
{
    sqs_store *s = (sqs_store *)st;
    if (!b->nprofiles && !b->nspans)
        return 0;
    int rc = validate_batch(b, NULL, NULL, err);
    if (rc)
        return rc;
    sqs_req req = {.kind = SQS_REQ_WRITE, .batch = b, .err = err};
    return enqueue_and_wait(s, &req, err);
}

/* ---- streams (store_stream_*, S1-S5) ----------------------------------------------------------
 */

typedef struct sqs_stream {
    sqs_req req;
    sp_arena *a;
    sp_err err;          /* the writer's message for the whole stream */
    table_marks checked; /* what the parts so far validated of the tables (S5) */
    checked_list *lists; /* the location lists checked against them (validate_batch's memo) */
    /* S6: begun while the writer was busy, the parts are validated as they come (while the
     * caller's caches still hold them; validating the whole batch at its end read 5 MB of
     * samples back from memory on the thread the Export's answer waits for) and joined in
     * `all`, which end queues as one batch. */
    int joined;
    sp_batch all;
} sqs_stream;

int sqs_stream_begin(store *st, sp_arena *a, void **impl, sp_err *err)
{
    sqs_store *s = (sqs_store *)st;
    pthread_mutex_lock(&s->mu);
    int busy = s->writing || s->npending;
    pthread_mutex_unlock(&s->mu);
    *impl = NULL;
    sqs_stream *ss = sp_arena_calloc(a, 1, sizeof *ss);
    if (!ss)
        return sp_fail(err, SP_ETOOBIG, "no room for a store stream in the request's budget");
    ss->a = a;
    if (busy) { /* S6 */
        ss->joined = 1;
        ss->all.arena = a;
        *impl = ss;
        return 0;
    }
    ss->req.kind = SQS_REQ_STREAM;
    ss->req.err = &ss->err;
    pthread_cond_init(&ss->req.cv, NULL);
    *impl = ss;
    return 0;
}

int sqs_stream_part(store *st, void *impl, const sp_batch *part, sp_err *err)
{
    sqs_store *s = (sqs_store *)st;
    sqs_stream *ss = impl;
    sqs_req *req = &ss->req;
    if (!part->nprofiles && !part->nspans)
        return 0;
    if (!ss->lists && !(ss->lists = sp_arena_calloc(ss->a, CHECKED_LISTS, sizeof *ss->lists)))
        return sp_fail(err, SP_ETOOBIG,
                       "no room for the store stream's validation memo in the request's budget");
    int rc = validate_batch(part, &ss->checked, ss->lists, err);
    if (rc)
        return rc;
    if (ss->joined) /* S6: a validated part joins the batch that end writes */
        return store_join_part(&ss->all, part, err);
    sqs_part *pt = sp_arena_calloc(ss->a, 1, sizeof *pt);
    if (!pt)
        return sp_fail(err, SP_ETOOBIG, "no room for a store stream part in the request's budget");
    pt->batch = part;
    pthread_mutex_lock(&s->mu);
    if (req->done) { /* the transaction holding the earlier parts failed */
        pthread_mutex_unlock(&s->mu);
        return sp_fail(err, req->rc ? req->rc : SP_EUNAVAIL, "%s", ss->err.msg);
    }
    if (!req->queued) { /* S1 */
        if ((rc = queue_write(s, req, err))) {
            pthread_mutex_unlock(&s->mu);
            return rc;
        }
        req->queued = 1;
    }
    if (req->parts_tail)
        req->parts_tail->next = pt;
    else
        req->parts = pt;
    req->parts_tail = pt;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

int sqs_stream_end(store *st, void *impl, int failed, sp_err *err)
{
    sqs_store *s = (sqs_store *)st;
    sqs_stream *ss = impl;
    if (ss->joined) { /* S6: the parts were validated as they came */
        if (failed || !ss->all.nprofiles)
            return 0;
        sqs_req one = {.kind = SQS_REQ_WRITE, .batch = &ss->all, .err = err};
        return enqueue_and_wait(s, &one, err);
    }
    sqs_req *req = &ss->req;
    pthread_mutex_lock(&s->mu);
    if (req->queued) {
        req->closed = 1;
        req->aborted = failed;
        pthread_cond_signal(&s->wake);
        /* Waits even when failed: the writer may be reading the parts (S4). */
        while (!req->done)
            pthread_cond_wait(&req->cv, &s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    pthread_cond_destroy(&req->cv);
    if (failed || !req->queued)
        return 0;
    return req->rc ? sp_fail(err, req->rc, "%s", ss->err.msg) : 0;
}

int sqs_retention_run(store *st, int64_t now, sp_err *err)
{
    sqs_store *s = (sqs_store *)st;
    sqs_req req = {.kind = SQS_REQ_RETENTION, .now_ns = now, .err = err};
    return enqueue_and_wait(s, &req, err);
}
