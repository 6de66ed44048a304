/* The correlator's unit-test fixture (test_corr_correlator.c, test_corr_parts.c): a CPU profile
 * of one sample on main→handle→parse, spans on a thread, corr_attach that must succeed, and the
 * value late attach_only profiles give a span. */
#ifndef SPANPROF_TEST_CORR_FIXTURE_H
#define SPANPROF_TEST_CORR_FIXTURE_H

#include "correlator/correlator.h"

#define MS  1000000LL
#define PID 4242
#define TID 101

/* corr_attach, which must succeed here: the attachments it made. */
static inline size_t attach(corr *c, sp_batch *b, int64_t now)
{
    corr_ticket t;
    sp_err err = {0};
    int rc = corr_attach(c, b, now, &t, &err);
    if (rc)
        fail_msg("corr_attach: %s", err.msg);
    corr_commit(c, &t);
    return t.attached;
}

typedef struct fixture {
    sp_arena *a;
    sp_batch b;
} fixture;

__attribute__((unused)) static const char *strs[] = {"",      "main", "handle",
                                                     "parse", "cpu",  "nanoseconds"};

/* A CPU profile with one sample per entry of ts[] groups: stack main→handle→parse. */
static inline sp_profile *profile(sp_arena *a, const uint64_t *ts, uint32_t nts, int64_t pid,
                                  int64_t tid)
{
    sp_profile *p = sp_arena_calloc(a, 1, sizeof *p);
    p->type_id = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
    p->name = "process_cpu";
    p->strings = strs;
    p->nstrings = 6;
    p->sample_type = p->period_type = 4;
    p->sample_unit = p->period_unit = 5;
    p->nfunctions = p->nlocations = 4;
    p->functions = sp_arena_calloc(a, 4, sizeof *p->functions);
    p->locations = sp_arena_calloc(a, 4, sizeof *p->locations);
    for (uint32_t i = 1; i < 4; i++) {
        p->functions[i].name = i;
        sp_line *l = sp_arena_calloc(a, 1, sizeof *l);
        l->function_id = i;
        p->locations[i].lines = l;
        p->locations[i].nlines = 1;
    }
    p->mappings = sp_arena_calloc(a, 1, sizeof *p->mappings);
    p->nmappings = 1;
    static sp_kv series[] = {{"__name__", "process_cpu"}, {"service_name", "shop"}};
    p->series = series;
    p->nseries = 2;
    p->samples = sp_arena_calloc(a, 1, sizeof *p->samples);
    p->nsamples = 1;
    sp_sample *s = &p->samples[0];
    static uint32_t stack[] = {3, 2, 1};
    s->location_ids = stack;
    s->nlocations = 3;
    s->timestamps = sp_arena_memdup(a, ts, nts * sizeof *ts);
    s->nobs = nts;
    s->value = (int64_t)nts * 10 * MS;
    s->pid = pid;
    s->tid = tid;
    return p;
}

static inline sp_span span(uint8_t id, int64_t start_ms, int64_t end_ms, int64_t pid, int64_t tid)
{
    sp_span s = {0};
    s.trace_id[0] = 0xaa;
    s.span_id[7] = id;
    s.service = "shop";
    s.name = "GET /cart";
    s.start_ns = (uint64_t)(start_ms * MS);
    s.end_ns = (uint64_t)(end_ms * MS);
    s.pid = pid;
    s.tid = tid;
    return s;
}

static inline int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->a = sp_arena_new(0);
    f->b.arena = f->a;
    f->b.tenant = "t1";
    *state = f;
    return 0;
}

static inline int teardown(void **state)
{
    fixture *f = *state;
    sp_arena_free(f->a);
    free(f);
    return 0;
}

static inline sp_batch batch(fixture *f, const char *tenant)
{
    sp_batch b = {.tenant = tenant, .arena = f->a};
    return b;
}

static inline sp_span child(uint8_t id, uint8_t parent, int64_t start_ms, int64_t end_ms,
                            int64_t pid, int64_t tid)
{
    sp_span s = span(id, start_ms, end_ms, pid, tid);
    s.parent_span_id[7] = parent;
    return s;
}

static inline int has_span(const sp_sample *s, uint8_t id)
{
    for (uint32_t i = 0; i < s->nspans; i++)
        if (s->spans[i].span_id[7] == id)
            return 1;
    return 0;
}

static inline void send_spans(corr *c, fixture *f, sp_span *v, size_t n, sp_batch *out)
{
    sp_batch tb = batch(f, "t1");
    tb.spans = v;
    tb.nspans = n;
    attach(c, &tb, 0);
    if (out)
        *out = tb;
}

/* pid becomes a process that sends spans (I13), with one span too short to take samples: its
 * observations wait in the whole budget from `now` on, not in the share of processes without
 * spans. */
__attribute__((unused)) static void sends_spans(corr *c, fixture *f, int64_t pid, int64_t now)
{
    sp_span s = span(0xfe, 0, 1, pid, 0);
    sp_batch tb = batch(f, "t1");
    tb.spans = &s;
    tb.nspans = 1;
    attach(c, &tb, now);
}

/* The value each late attach_only profile of b gives to span id. */
static inline int64_t late_value(const sp_batch *b, uint8_t id)
{
    int64_t v = 0;
    for (size_t i = 0; i < b->nprofiles; i++)
        for (uint32_t k = 0; k < b->profiles[i]->nsamples; k++)
            if (b->profiles[i]->attach_only && has_span(&b->profiles[i]->samples[k], id))
                v += b->profiles[i]->samples[k].value;
    return v;
}

/* corr_settle's emit: what the pipeline would store (the attach_only profiles), copied into the
 * batch ud for the test to read. */
static inline int settled_store(void *ud, sp_batch *b)
{
    /* what the pipeline would store: the attach_only profiles, kept for the test to read */
    sp_batch *into = ud;
    for (size_t i = 0; i < b->nprofiles; i++) {
        sp_profile *copy = sp_arena_memdup(into->arena, b->profiles[i], sizeof *copy);
        copy->samples = sp_arena_memdup(into->arena, b->profiles[i]->samples,
                                        b->profiles[i]->nsamples * sizeof *copy->samples);
        for (uint32_t k = 0; k < copy->nsamples; k++)
            copy->samples[k].spans = sp_arena_memdup(into->arena, copy->samples[k].spans,
                                                     copy->samples[k].nspans * sizeof(sp_span_ref));
        sp_batch_add_profile(into, copy);
    }
    return 0;
}

#endif
