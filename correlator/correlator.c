/* The correlator's entry points (correlator.h), and the invariants its files keep.
 *
 * Invariants (tests in tests/unit/test_corr_correlator.c name the one they guard):
 *
 *  I1. Nothing acknowledged is lost here: corr_attach() only adds span ids to samples and splits
 *      samples; every observation of the batch stays in it, with its value, whatever fails
 *      (splitting_many_observations_keeps_every_one).
 *  I2. A split sample's parts carry exactly the observations inside their spans: the sum of the
 *      parts' values equals the sample's value, and each part lists one set of spans.
 *  I3. Window: a span or observation is in the window from its arrival (server time) for
 *      opt.window_ns; both sides wait for each other that long. Decisions use the spans known at
 *      that moment: later spans add attachments, never retract them.
 *  I4. Retry markers: a registry entry outlives its span by one more window, so a retried span
 *      export finds its spans seen and claims their observations only once. A batch the store
 *      then failed to commit is forgotten with corr_abort() (its spans, observations and links),
 *      so its retry is taken as new (retried_after_failed_commit_*).
 *  I5. Budget: bytes counts the capacity of everything held. Past opt.max_bytes, attached
 *      observations stop waiting first (released), then unattached ones and links, oldest first
 *      (evicted), and spans only when spans alone exceed it (spans_evicted): a sample whose span
 *      is in the window is attached whatever else waits
 *      (budget_keeps_spans_and_lets_attached_observations_go_first).
 *  I6. Every outcome of an observation is counted once, when first decided (F_* bits), and every
 *      drop is counted by reason (corr_stats).
 *  I7. One lock: every public function takes corr->lock; the internals assume it is held, except
 *      the published statistics, which have their own lock and are only copied.
 *  I8. Rule 3 (the threadless spans of the process) judges an observation that no span of its
 *      own thread holds once, settle_ns after it arrived, with every span known by then; a chain
 *      is the thread's only when no other thread of the process ran inside it
 *      (threadless_spans_of_two_threads_take_only_their_own, in late.c chain_is_threads).
 *  I9. Off-CPU observations are intervals [ts - value, ts]: a span takes the part it covers.
 *  I10. Rule 3's pass costs what it decides, not what waits: every observation below a slot's
 *      settle_from is decided for rule 3 (OBS_WAITS_SETTLE is 0), and from its arrival_from on
 *      the observations are in arrival order, so in expiry order unless arrival_unordered says
 *      the clock was set back (cw_clock). Every change of a slot's order keeps the three (a sort
 *      recomputes them, compactions count what stays below each mark and check the order), and
 *      cw_settle starts at settle_from and stops, in an expiry-ordered arrival part, at the first
 *      observation not due yet (settle_pass_decides_each_observation_on_time).
 *  I11. Expiry in slices: a periodic sweep (expire_due) walks an eighth of the slots, so the
 *      lock is held for an eighth of what waits; every slot is still swept once per sixteenth of
 *      the window, and corr_get_stats(now) sweeps everything at once (cw_sweep).
 *  I12. Memory an eviction pass freed goes back to the system: the pass sets trim_due and the
 *      next unlock (cw_unlock, every public function's) runs malloc_trim outside the lock and
 *      counts it in memory_trims (budget_eviction_gives_memory_back).
 *  I13. Processes that have sent no span in the window wait in a sixteenth of the budget:
 *      past it their oldest observations go (unclaimed_evicted), whatever I5 would keep; a span
 *      with a process's pid gives that process the whole budget for a window from its arrival
 *      (test_corr_budget.c: a_process_without_spans_waits_in_its_share,
 *      a_process_with_spans_waits_in_the_whole_budget). unclaimed_bytes, the share's measure
 *      (the records held, not their arrays' room), is exact after every recount and only grows
 *      between them.
 */
#include "internal.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif

/* ---- life cycle ---- */

corr *corr_new(const corr_options *o)
{
    corr *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    if (o)
        c->opt = *o;
    if (!c->opt.min_span_ns)
        c->opt.min_span_ns = 20 * 1000000LL;
    if (!c->opt.window_ns)
        c->opt.window_ns = 120 * 1000000000LL;
    if (!c->opt.max_bytes)
        c->opt.max_bytes = (size_t)512 << 20;
    if (!c->opt.settle_ns)
        c->opt.settle_ns = 10 * 1000000000LL;
    pthread_mutex_init(&c->lock, NULL);
    pthread_mutex_init(&c->pub_lock, NULL);
    cw_recount(c);
    return c;
}

void corr_free(corr *c)
{
    if (!c)
        return;
    for (size_t b = 0; b < NBUCKETS; b++) {
        for (slot *s = c->buckets[b], *n; s; s = n) {
            n = s->hnext;
            free(s->spans);
            free(s->obs);
            free(s);
        }
        for (proc *p = c->pbuckets[b], *n; p; p = n) {
            n = p->hnext;
            free(p->service);
            free(p);
        }
    }
    cw_itab_free(&c->names);
    cw_itab_free(&c->stacks);
    cw_itab_free(&c->tenants);
    cw_itab_free(&c->idents);
    cw_free_series(c);
    free(c->printed);
    free(c->lnames);
    free(c->reg);
    free(c->reg_h.heads);
    free(c->wait);
    free(c->wait_h.heads);
    free(c->consumed);
    pthread_mutex_destroy(&c->lock);
    pthread_mutex_destroy(&c->pub_lock);
    free(c);
}

/* I12: an eviction pass frees a good part of the budget, but malloc keeps the pages (the
 * observation arrays were grown and shrunk by several ingest threads, so their free space is in
 * the middle of several heaps): at full load the process held about twice the budget. Once an
 * eviction ran, malloc_trim gives whole free pages back, after the lock is released (it walks
 * every heap: 9-18 ms at 1 GB). Evictions are rare (every few seconds at full load), so this
 * is too. */
void cw_unlock(corr *c)
{
    int trim = c->trim_due;
    c->trim_due = 0;
    pthread_mutex_unlock(&c->lock);
#ifdef __GLIBC__
    if (trim)
        malloc_trim(0);
#endif
}

/* Copies the counters for readers (I7); the caller holds c->lock. */
void cw_publish(corr *c)
{
    pthread_mutex_lock(&c->pub_lock);
    c->pub = c->st;
    c->pub.bytes = c->bytes;
    c->pub.unclaimed_bytes = c->unclaimed_bytes;
    pthread_mutex_unlock(&c->pub_lock);
}

void corr_get_stats(corr *c, int64_t now_ns, corr_stats *out)
{
    if (now_ns) {
        pthread_mutex_lock(&c->lock);
        cw_clock(c, now_ns);
        cw_sweep(c, c->now);
        cw_publish(c);
        cw_unlock(c);
    }
    pthread_mutex_lock(&c->pub_lock);
    *out = c->pub;
    pthread_mutex_unlock(&c->pub_lock);
}

/* Expiry is coarse on purpose: every sixteenth of the window (at least a second) each slot is
 * swept, an eighth of them at a time (I11), so a pass over what waits is rare and short; the
 * budget bounds memory meanwhile. Caller holds the lock. */
static void expire_due(corr *c, int64_t now_ns)
{
    cw_clock(c, now_ns);
    int64_t every = c->opt.window_ns / 16 > SWEEP_EVERY_NS ? c->opt.window_ns / 16 : SWEEP_EVERY_NS;
    int64_t since = c->now - c->last_sweep;
    if (since <= every / SWEEP_SLICES)
        ; /* not yet */
    else if (since > every ||
             (c->sweep_next && c->now - c->sweep_cycle > every + every / SWEEP_SLICES))
        cw_sweep(c, c->now); /* calls came rarely: everything at once, as one slice would wait */
    else
        cw_sweep_slice(c, c->now);
    cw_enforce_budget(c);
}

void corr_expire(corr *c, int64_t now_ns)
{
    pthread_mutex_lock(&c->lock);
    expire_due(c, now_ns);
    cw_publish(c);
    cw_unlock(c);
}

int corr_is_offcpu_type(const char *type_id)
{
    /* off_cpu:off_cpu:nanoseconds:: (the eBPF profiler's, named by otlp/convert.c) */
    return type_id && strncmp(type_id, "off_cpu:", 8) == 0;
}

int corr_is_cpu_type(const char *type_id)
{
    if (!type_id)
        return 0;
    /* name:sample_type:sample_unit:period_type:period_unit */
    const char *colon = strchr(type_id, ':');
    size_t nlen = colon ? (size_t)(colon - type_id) : strlen(type_id);
    if ((nlen == 11 && memcmp(type_id, "process_cpu", 11) == 0) ||
        (nlen == 4 && memcmp(type_id, "wall", 4) == 0))
        return 1;
    if (!colon)
        return 0;
    const char *st = colon + 1, *end = strchr(st, ':');
    size_t slen = end ? (size_t)(end - st) : strlen(st);
    return (slen == 3 && memcmp(st, "cpu", 3) == 0) || (slen == 4 && memcmp(st, "wall", 4) == 0);
}

int corr_span_profilable(corr *c, const char *tenant, const sp_span *sp)
{
    if ((int64_t)(sp->end_ns - sp->start_ns) < c->opt.min_span_ns || !sp->pid)
        return 0;
    int yes = 0;
    pthread_mutex_lock(&c->lock);
    uint32_t t = cw_tenant_id(c, tenant, 0);
    proc *p = t == UINT32_MAX ? NULL : cw_find_proc(c, t, sp->pid, 0);
    if (p && p->profiled_until > c->now) {
        uint32_t id = cw_ident_id(c, &sp->ident);
        for (uint32_t i = 0; i < p->nprof_ident && !yes; i++)
            yes = cw_ident_compat(c, p->prof_ident[i], id);
    }
    cw_unlock(c);
    return yes;
}

/* The trace forwarder's decision when it sends (after its delay): the span is in the window,
 * eligible, its process sent CPU profiles, and with root_only no eligible ancestor of its own
 * process is known (the outermost span is the one a pushed sample names). */
int corr_span_mark(corr *c, const char *tenant, const uint8_t span_id[8], int root_only)
{
    int yes = 0;
    pthread_mutex_lock(&c->lock);
    uint32_t t = cw_tenant_id(c, tenant, 0);
    const reg_ent *e = t == UINT32_MAX ? NULL : cw_reg_find_live(c, t, span_id);
    if (e && e->eligible && e->pid) {
        proc *p = cw_find_proc(c, t, e->pid, 0);
        if (p && p->profiled_until > c->now)
            for (uint32_t i = 0; i < p->nprof_ident && !yes; i++)
                yes = cw_ident_compat(c, p->prof_ident[i], e->ident);
    }
    /* Walk up while the ancestors are of the same process; a bounded walk (cycles). */
    const reg_ent *a = e;
    for (int depth = 0; yes && root_only && a && depth < 256; depth++) {
        static const uint8_t zero[8];
        if (memcmp(a->parent, zero, 8) == 0)
            break;
        const reg_ent *up = cw_reg_find_live(c, t, a->parent);
        if (!up ||
            !cw_same_process(c, e->pid, e->service, e->ident, up->pid, up->service, up->ident))
            break;
        if (up->eligible)
            yes = 0;
        a = up;
    }
    cw_unlock(c);
    return yes;
}

/* A profile whose sender named no service takes the one its process's spans carry, when a span
 * of that process (same pid and compatible identity) arrived within the window: Grafana's
 * default "Profiles for this span" query asks for {service_name="<the span's service>"}. The
 * sender's own labels (process_executable_name, process_pid) stay. Returns -1 when out of
 * memory (the profile keeps its label). */
static int learn_label(corr *c, sp_arena *a, uint32_t tenant, sp_profile *p)
{
    if (!p->service_unknown || !p->nsamples || !p->samples[0].pid)
        return 0;
    const proc *pr = cw_find_proc(c, tenant, p->samples[0].pid, 0);
    if (!pr || !pr->service || pr->service_until <= c->now ||
        !cw_ident_compat(c, pr->service_ident, cw_ident_id(c, p->samples[0].ident)))
        return 0;
    sp_kv *kv = sp_arena_alloc(a, (p->nseries + 1) * sizeof *kv);
    char *svc = sp_arena_strndup(a, pr->service, strlen(pr->service));
    if (!kv || !svc)
        return -1;
    memcpy(kv, p->series, p->nseries * sizeof *kv);
    for (uint32_t i = 0; i < p->nseries; i++)
        if (strcmp(kv[i].name, "service_name") == 0)
            kv[i].value = svc; /* the labels stay sorted by name */
    p->series = kv;
    p->service_unknown = 0;
    c->st.services_learned++;
    return 0;
}

/* Room phase 1 may need in the request's arena beyond what decoding took: per observation a
 * split sample, its time and value and its verdict, and eight nested spans; per sample its plan.
 * Deeper nesting in every observation can still run out: then that profile is stored unattached
 * and counted (attach_failed). */
static size_t plan_room(const sp_batch *b)
{
    size_t obs = 0, samples = 0;
    for (size_t i = 0; i < b->nprofiles; i++) {
        const sp_profile *p = b->profiles[i];
        if (p->attach_only || !corr_is_cpu_type(p->type_id))
            continue;
        samples += p->nsamples;
        if (p->facts_known) /* the producer's bound (common/profile.h) */
            obs += p->obs_bound;
        else
            for (uint32_t k = 0; k < p->nsamples; k++)
                obs += p->samples[k].timestamps && p->samples[k].nobs ? p->samples[k].nobs : 1;
    }
    size_t per_obs = 2 * sizeof(sp_sample) + 2 * sizeof(int64_t) + 1 + 8 * sizeof(sp_span_ref);
    return obs * per_obs + samples * (sizeof(sample_plan) + 16) + ((size_t)1 << 20);
}

corr_memo *corr_memo_new(void)
{
    return calloc(1, sizeof(corr_memo));
}

void corr_memo_free(corr_memo *m)
{
    if (m) {
        cw_memo_free(&m->m);
        cw_scratch_free(&m->x);
    }
    free(m);
}

int corr_attach(corr *c, sp_batch *b, int64_t now_ns, corr_ticket *t, sp_err *err)
{
    return corr_attach_part(c, b, now_ns, t, NULL, err);
}

int corr_attach_part(corr *c, sp_batch *b, int64_t now_ns, corr_ticket *t, corr_memo *cm,
                     sp_err *err)
{
    size_t attached = 0;
    uint64_t failed = 0;
    /* the batch is the caller's: its room is counted before the lock, not under it */
    sp_arena_raise_budget(b->arena, plan_room(b));
    pthread_mutex_lock(&c->lock);
    expire_due(c, now_ns);
    /* this call's stamp on what it adds (I4) */
    c->gen++;
    c->tag = (uint16_t)c->gen;
    c->nconsumed = 0;
    if (t) {
        memset(t, 0, sizeof *t);
        t->gen = c->gen;
        t->tag = c->tag;
        t->expire = c->now + c->opt.window_ns;
    }
    /* after the sweep: it may renumber tenants */
    uint32_t tenant = cw_tenant_id(c, b->tenant, 1);
    if (tenant == UINT32_MAX) {
        cw_publish(c);
        cw_unlock(c);
        for (size_t i = 0; i < b->nprofiles; i++)
            for (uint32_t k = 0; k < b->profiles[i]->nsamples; k++)
                b->profiles[i]->samples[k].nspans = 0;
        return sp_fail(err, SP_ENOMEM, "correlator: out of memory naming tenant \"%s\"",
                       b->tenant ? b->tenant : "anonymous");
    }
    /* Spans first, so a request carrying both finds its own spans. */
    attached += cw_index_spans(c, b, tenant, &failed);
    size_t nprof = b->nprofiles;
    batch_memo local = {0}, *memo = cm ? &cm->m : &local;
    if (memo->interns_gen != c->interns_gen) /* names and stacks were renumbered since */
        cw_memo_free(memo);
    memo->interns_gen = c->interns_gen;
    split_scratch local_x = {0}, *x = cm ? &cm->x : &local_x;
    const char *failed_type = NULL;
    for (size_t i = 0; i < nprof; i++) {
        sp_profile *p = b->profiles[i];
        if (p->attach_only)
            continue;
        (void)learn_label(c, b->arena, tenant, p); /* out of memory: keeps the sender's label */
        if (!corr_is_cpu_type(p->type_id) && !corr_is_offcpu_type(p->type_id)) {
            for (uint32_t k = 0; k < p->nsamples; k++) {
                p->samples[k].spans = NULL;
                p->samples[k].nspans = 0;
            }
            continue;
        }
        prof_plan pp;
        size_t got = 0;
        if (cw_plan_profile(c, x, &pp, p, b->arena, tenant, b, &got)) {
            /* stored as received, unattached: the samples are what the client was promised */
            p->samples = (sp_sample *)pp.orig;
            p->nsamples = pp.norig;
            for (uint32_t k = 0; k < p->nsamples; k++) {
                p->samples[k].spans = NULL;
                p->samples[k].nspans = 0;
                failed += p->samples[k].timestamps && p->samples[k].nobs ? p->samples[k].nobs : 1;
            }
            failed_type = p->type_id;
            continue;
        }
        attached += got;
        cw_keep_profile(c, &pp, tenant, memo);
    }
    cw_scratch_free(&local_x);
    cw_memo_free(&local);
    c->st.attach_failed += failed;
    if (t && c->nconsumed) {
        /* the links this call took, for corr_abort */
        t->consumed = malloc(c->nconsumed * sizeof(wait_ent));
        if (t->consumed) {
            memcpy(t->consumed, c->consumed, c->nconsumed * sizeof(wait_ent));
            t->nconsumed = c->nconsumed;
        }
    }
    c->nconsumed = 0;
    cw_publish(c);
    cw_unlock(c);
    if (t)
        t->attached = attached;
    if (failed)
        return sp_fail(err, SP_ENOMEM,
                       "correlator: out of memory attaching %llu observations%s%s (stored "
                       "without their spans)",
                       (unsigned long long)failed, failed_type ? " of " : "",
                       failed_type ? failed_type : "");
    return 0;
}

void corr_commit(corr *c, corr_ticket *t)
{
    (void)c;
    if (!t)
        return;
    free(t->consumed);
    t->consumed = NULL;
    t->nconsumed = 0;
}

/* corr_abort, for one thread of one process: the observations the call kept there. */
static void forget_observations(corr *c, slot *s, const corr_ticket *t)
{
    obs_keep x = OBS_KEEP_INIT;
    for (uint32_t i = 0; i < s->nobs; i++) {
        const obs_ent *o = &s->obs[i];
        if (o->tag == t->tag && o->expire == t->expire) {
            c->st.obs_waiting--;
            if (!o->flags)
                c->st.obs_unattached--;
        } else {
            obs_keep_add(&x, s, i);
        }
    }
    obs_keep_done(&x, s);
}

/* corr_abort, for one span of the batch: its registry entry and its place in its slot. */
static void forget_span(corr *c, uint32_t tenant, const sp_span *sp, const corr_ticket *t)
{
    reg_ent *e = cw_reg_find(c, tenant, sp->span_id);
    if (!e || e->tag != t->tag || e->expire != t->expire)
        return; /* not added by this call (a retry of a span seen before) */
    e->live = 0;
    c->st.spans_known--;
    slot *s = sp->pid ? cw_find_slot(c, tenant, sp->pid, sp->tid, 0) : NULL;
    for (uint32_t i = 0; s && i < s->nspans; i++)
        if (s->spans[i].gen == t->gen && memcmp(s->spans[i].ref.span_id, sp->span_id, 8) == 0) {
            memmove(&s->spans[i], &s->spans[i + 1], (s->nspans - i - 1) * sizeof *s->spans);
            s->nspans--;
            c->st.spans_indexed--;
            break;
        }
}

void corr_abort(corr *c, const sp_batch *b, corr_ticket *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&c->lock);
    uint32_t tenant = cw_tenant_id(c, b->tenant, 0); /* by name: ids may have been renumbered */
    if (tenant != UINT32_MAX) {
        for (size_t i = 0; i < b->nspans; i++)
            forget_span(c, tenant, &b->spans[i], t);
        /* every thread of every process the batch's samples came from, once each */
        for (size_t i = 0; i < b->nprofiles; i++) {
            const sp_profile *p = b->profiles[i];
            int64_t last_pid = 0;
            for (uint32_t k = 0; !p->attach_only && k < p->nsamples; k++) {
                int64_t pid = p->samples[k].pid;
                if (!pid || pid == last_pid)
                    continue;
                last_pid = pid;
                proc *pr = cw_find_proc(c, tenant, pid, 0);
                for (slot *s = pr ? pr->slots : NULL; s; s = s->pnext)
                    forget_observations(c, s, t);
            }
        }
        /* links it queued leave; links it took come back */
        for (uint32_t i = 0; i < c->nwait; i++)
            if (c->wait[i].live && c->wait[i].gen == t->gen)
                c->wait[i].live = 0;
        const wait_ent *back = t->consumed;
        for (uint32_t i = 0; i < t->nconsumed; i++) {
            wait_ent *q = cw_wait_add(c, tenant, back[i].gap);
            if (q) {
                uint32_t keep_next = q->next;
                *q = back[i];
                q->tenant = tenant;
                q->live = 1;
                q->next = keep_next;
            }
        }
    }
    cw_publish(c);
    cw_unlock(c);
    corr_commit(c, t); /* frees the ticket */
}
