/* The correlator's internals, shared by its files and nobody else (correlator.h is the interface).
 *
 *   correlator.c  life cycle, corr_attach (the entry), the invariants
 *   window.c      the window's state: interning, the span registry, slots by (process, thread),
 *                 the lookups that decide which spans cover a time
 *   budget.c      expiry, the memory budget and eviction, compaction of the tables
 *   attach.c      profiles: explicit links, inference, splitting (phase 1) and keeping (phase 2)
 *   late.c        spans: indexing them, and the observations they claim when they arrive late
 *
 * Everything here runs under corr->lock (held by the public functions in correlator.c).
 */
#ifndef CORR_INTERNAL_H
#define CORR_INTERNAL_H

#include "correlator.h"
#include "../common/hash.h"
#include "../common/prefetch.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBUCKETS        16384
#define MAX_MATCH       32  /* spans one observation can belong to (nesting depth) */
#define MAX_WALK        256 /* parent hops, so a cycle in bad input ends */
#define SWEEP_EVERY_NS  1000000000LL
#define SWEEP_SLICES    8  /* a periodic sweep's steps (I11); divides NBUCKETS */
#define PROF_IDENTS     8  /* identities (hosts, pods, containers) remembered per profiled pid */
#define UNCLAIMED_SHARE 16 /* processes without spans wait in 1/16 of the budget (I13) */

/* Outcome bits of a retained observation: each is counted once, when first set. */
enum { F_THREAD = 1, F_PROC = 2, F_AMBIG = 4, F_SETTLED = 8 };
/* F_SETTLED: rule 3 was decided for it after the settle time (I8), whatever the outcome. */

/* ---- the state ---- */

/* Whether s's process has sent no span in the window (I13). */
#define SLOT_UNCLAIMED(c, s) ((s)->proc->spans_until <= (c)->now)

/* Whether an observation still waits for rule 3 after the settle time (I8, I10): not attached by
 * its own thread's spans, not decided yet, not an off-CPU interval. Flags are only ever added,
 * so once this is 0 for an observation it stays 0. */
#define OBS_WAITS_SETTLE(o) (!((o)->flags & (F_THREAD | F_SETTLED)) && !(o)->interval)

typedef struct span_ent {
    int64_t start, end, expire;
    sp_span_ref ref;
    uint32_t ident; /* ident id + 1; 0 = none given */
    uint32_t gen;   /* the corr_attach_spans call that indexed it */
} span_ent;

typedef struct obs_ent {
    int64_t ts, value, expire;
    uint32_t stack, series, ident; /* ids into the intern tables (ident: id + 1, 0 = none) */
    uint8_t flags;
    uint8_t interval; /* 1: off-CPU, the interval [ts - value, ts] (I9); 0: the instant ts */
    uint16_t tag;     /* the corr_attach call that kept it (with expire: what corr_abort removes) */
} obs_ent;

struct proc;

/* One thread (tid 0: no thread) of one process: its spans, sorted by start, and the
 * observations taken on it. */
typedef struct slot {
    uint32_t tenant;
    int64_t pid, tid;
    span_ent *spans;
    uint32_t nspans, capspans;
    int64_t maxdur; /* longest span here, bounds the backward scan of a lookup */
    obs_ent *obs;
    uint32_t nobs, capobs;
    uint8_t obs_sorted;
    uint8_t pending;           /* holds observations rule 3 has not decided yet (I8) */
    uint32_t settle_from;      /* I10: no observation below this index waits for rule 3 */
    uint32_t arrival_from;     /* I10: from this index on, observations are in arrival order */
    uint8_t arrival_unordered; /* I10: ... but not in expiry order (the clock was set back) */
    int64_t obs_min_expire;    /* no observation expires before (a lower bound; I11) */
    int64_t max_interval;      /* longest off-CPU interval held: bounds the scan of a late span */
    struct proc *proc;
    struct slot *hnext, *pnext;
} slot;

typedef struct proc {
    uint32_t tenant;
    int64_t pid;
    slot *slots;
    int64_t profiled_until; /* CPU profiles seen from it: until when that counts */
    int64_t spans_until; /* spans with its pid seen: until then its observations wait in the whole
                          * budget, not in the share of processes without spans (I13) */
    uint32_t prof_ident[PROF_IDENTS]; /* the identities those profiles had (ident id + 1); more
                                       * are counted in idents_over and not remembered */
    uint32_t nprof_ident;
    /* The service its spans carry (learned for profiles that name none): the latest span's, with
     * that span's identity, kept until service_until. malloc'ed. */
    char *service;
    uint32_t service_ident;
    int64_t service_until;
    struct proc *hnext;
} proc;

/* Every received span, of any length, by id: the parent walk of explicit links. */
typedef struct reg_ent {
    uint8_t span_id[8], parent[8], trace_id[16];
    uint32_t tenant, ident;
    int64_t pid;
    uint64_t service; /* hash of service.name: the process key when there is no pid */
    int64_t expire;
    uint8_t eligible, live;
    uint16_t tag;  /* the corr_attach call that added it (with expire) */
    uint32_t next; /* index + 1 of the next entry in the bucket */
} reg_ent;

/* A linked observation waiting for the ancestor `gap` of its span to arrive. */
typedef struct wait_ent {
    uint8_t gap[8];
    uint32_t tenant;
    uint8_t ref_known, live;
    uint32_t gen; /* the corr_attach call that queued it (corr_abort removes it) */
    int64_t ref_pid;
    uint64_t ref_service;
    uint32_t ref_ident;
    int64_t ts, value, expire;
    uint32_t stack, series;
    uint32_t next;
} wait_ent;

/* Interned keys: frame names, stacks (name ids, leaf first), series, tenants, identities. */
typedef struct itab {
    char **keys;
    uint32_t *lens;
    uint32_t n, cap;
    uint64_t *slots; /* hash << 32 | id + 1; 0 = empty */
    uint32_t nslots;
    size_t key_bytes; /* the keys' bytes (len + 1 each), kept as they come and go */
    uint64_t *old;    /* the probe table being moved into slots (T1-T2 in window.c), or NULL */
    uint32_t old_nslots, moved;
} itab;

/* What cw_itab_compact() needs, allocated before anything changes, so renumbering several
 * tables that refer to each other is all or nothing. */
typedef struct itab_plan {
    uint32_t *map;   /* old id → new id; UINT32_MAX: released */
    uint64_t *slots; /* the new probe table */
    uint32_t nslots, n;
} itab_plan;

typedef struct series_rec {
    const char *type_id;
    sp_kv *kv;
    uint32_t nkv;
} series_rec;

/* A hash of entries keyed by (tenant, 8-byte id), entries in one array, chained by index. */
typedef struct idhash {
    uint32_t *heads, nheads;
} idhash;

struct corr {
    corr_options opt;
    pthread_mutex_t lock;
    slot *buckets[NBUCKETS];
    proc *pbuckets[NBUCKETS];
    itab names, stacks, series, tenants, idents;
    series_rec *srec;
    uint32_t capsrec;
    reg_ent *reg;
    uint32_t nreg, capreg;
    idhash reg_h;
    wait_ent *wait;
    uint32_t nwait, capwait;
    idhash wait_h;
    size_t bytes;
    size_t unclaimed_bytes;   /* the observations of processes without spans, as records held
                               * (I13): exact after cw_recount, only added to between */
    size_t interns_compacted; /* names + stacks + series bytes after the last rebuild (budget.c) */
    uint8_t trim_due;         /* an eviction freed memory: cw_unlock gives it back (I12) */
    uint64_t interns_gen;     /* rebuilds so far: a corr_memo from before one is stale */
    /* Stacks by their print (sp_profile.stack_prints) → stack intern id, direct-mapped (a slot
     * holds the last print that fell in it): a known stack of a later request is interned
     * without naming its frames. nprinted slots (a power of two, sized from the budget), made
     * on first use; emptied with every rebuild, which renumbers the ids (printed_gen: the
     * rebuild its ids are of). */
    struct stack_by_print *printed;
    uint32_t nprinted;
    uint64_t printed_gen;
    /* Locations of one name by their print (sp_profile.location_prints) → name intern id + 1:
     * a known location of a later request is named by one probe, not by hashing and comparing
     * its name (cw_names_prefill). nlnames slots (a power of two, sized like printed), linear
     * probing, emptied when three quarters full and with every rebuild (lnames_gen). */
    struct name_by_print *lnames;
    uint32_t nlnames, lnames_used;
    uint64_t lnames_gen;
    int64_t last_sweep, now;
    uint32_t sweep_next; /* the slice of the slot buckets the next periodic sweep walks (I11) */
    int64_t sweep_cycle; /* when the current round of slices began */
    uint32_t gen;        /* corr_attach calls so far; the current one's */
    uint16_t tag;        /* gen's low bits, stamped on what the current call adds */
    wait_ent *consumed; /* links the current call took from the queue (corr_abort puts them back) */
    uint32_t nconsumed, capconsumed;
    corr_stats st;
    /* What corr_get_stats(c, 0) and the metrics read: copied under pub_lock at the end of every
     * call that changes st, so a reader never waits for the main lock (I7). */
    pthread_mutex_t pub_lock;
    corr_stats pub;
};

/* Compacting a slot's observations in place, order kept (expiry, corr_abort): what stays is
 * copied down with obs_keep_add(), and obs_keep_done() sets the slot's count and the marks I10 and
 * I11 rely on from what stayed. */
typedef struct obs_keep {
    uint32_t n, below, arrival;
    int64_t last, min_expire, max_interval;
    uint8_t unordered;
} obs_keep;

#define OBS_KEEP_INIT                                                                              \
    {                                                                                              \
        0, 0, 0, INT64_MIN, INT64_MAX, 0, 0                                                        \
    }

static inline void obs_keep_add(obs_keep *x, slot *s, uint32_t i)
{
    const obs_ent *o = &s->obs[i];
    x->below += i < s->settle_from;
    x->arrival += i < s->arrival_from;
    if (i >= s->arrival_from) {
        x->unordered |= o->expire < x->last;
        x->last = o->expire;
    }
    if (o->expire < x->min_expire)
        x->min_expire = o->expire;
    if (o->interval && o->value > x->max_interval)
        x->max_interval = o->value;
    s->obs[x->n++] = *o;
}

static inline void obs_keep_done(const obs_keep *x, slot *s)
{
    s->nobs = x->n;
    s->settle_from = x->below;
    s->arrival_from = x->arrival;
    s->arrival_unordered = x->unordered;
    s->obs_min_expire = x->min_expire;
    s->max_interval = x->max_interval;
}

/* The correlator's clock. Callers read the time before they wait for the lock, so two workers
 * arrive a little out of order: a step back shorter than CW_CLOCK_JITTER_NS is that, and the clock
 * keeps its time, so observations appended to a slot expire in arrival order (I10). A longer step
 * back (the wall clock was set back, or a test's time) is taken as given; the slot notes the
 * disorder it makes (arrival_unordered). */
#define CW_CLOCK_JITTER_NS 1000000000LL
static inline void cw_clock(corr *c, int64_t now_ns)
{
    if (now_ns > c->now || c->now - now_ns > CW_CLOCK_JITTER_NS)
        c->now = now_ns;
}

/* Stacks (up to 2 KiB of frame ids) and names are hashed on every retained sample. */
static inline uint64_t hash64(const void *p, size_t n, uint64_t h)
{
    return sp_hash64(p, n, h);
}

#define FNV 1469598103934665603ull

static inline int grow(void **arr, uint32_t *cap, size_t elem, size_t *bytes)
{
    uint32_t ncap = *cap ? *cap * 2 : 8;
    void *p = realloc(*arr, (size_t)ncap * elem);
    if (!p)
        return -1;
    *bytes += (size_t)(ncap - *cap) * elem;
    *arr = p;
    *cap = ncap;
    return 0;
}

/* ---- shared by attach.c, late.c and correlator.c ---- */

/* Phase 1's verdict on one received sample, for phase 2. */
typedef struct sample_plan {
    uint8_t how;   /* every observation's outcome when they agree (hows NULL) */
    uint8_t *hows; /* per observation otherwise */
    uint8_t linked, has_gap, ref_known;
    uint8_t gap[8]; /* rule 1: the first ancestor not received yet */
    int64_t ref_pid;
    uint64_t ref_svc;
    uint32_t ref_ident, ident;
} sample_plan;

typedef struct prof_plan {
    sp_profile *p;
    const sp_sample *orig; /* the samples as received: phase 2 keeps these */
    uint32_t norig;
    sample_plan *plans; /* one per received sample */
    uint8_t interval;   /* off-CPU: observations are intervals (I9) */
} prof_plan;

/* Scratch of phase 1, on the heap and reused across samples: the distinct span sets of one
 * sample's observations (groups), and the profile's output samples before their final copy. */
typedef struct group {
    uint64_t hash;
    uint32_t ref_at, nref; /* in split_scratch.refs */
    uint32_t count, fill;
    uint8_t how;
} group;

typedef struct split_scratch {
    uint32_t *grp; /* per observation: its group */
    uint32_t capgrp;
    group *g;
    uint32_t ng, capg;
    sp_span_ref *refs;
    uint32_t nref, capref;
    uint32_t *tab, captab; /* open addressing on group hashes: group + 1 */
    sp_sample *out;
    uint32_t nout, capout;
    uint8_t spans_only; /* out[] holds only the spans of samples not split (out_same()) */
    /* off-CPU: the parts of intervals that spans cover only partly (I9), one attach_only sample
     * each */
    struct partial *part;
    uint32_t npart, cappart;
} split_scratch;

typedef struct partial {
    uint32_t sample; /* index of the received sample */
    uint64_t ts;     /* the interval's end, clamped into the span (the store files it there) */
    int64_t value;   /* the nanoseconds of the interval inside the span */
    sp_span_ref ref;
} partial;

/* What one request's profiles share: the converter gives every profile of a request the same
 * location table and every sample of a stack the same location list, so frame names are resolved
 * once per location and stacks interned once per list, not once per sample. */
typedef struct batch_memo {
    const sp_location *locs; /* the table loc_cache belongs to */
    uint32_t *loc_cache;     /* per location: name id, and 1 when cached */
    uint32_t nloc;
    const uint32_t **keys; /* stack memo: location list → stack id */
    uint32_t *vals, cap, n;
    /* The same by sp_sample.stack for a table whose stacks come printed: by_stack[k] = stack
     * id + 1 for entry k of by_stack_of (0: not yet); emptied with the memo above. */
    uint32_t *by_stack, nby_stack;
    const sp_print *by_stack_of;
    uint64_t interns_gen; /* c->interns_gen when filled: ids from before a rebuild are stale */
} batch_memo;

/* The public memo of a streamed request's parts (correlator.h). */
struct corr_memo {
    batch_memo m;
    split_scratch x; /* phase 1's arrays, kept from part to part instead of grown for each */
};

/* window.c */
uint32_t cw_spans_over(const corr *c, const slot *s, int64_t from, int64_t to, uint32_t ident,
                       sp_span_ref *out, int64_t *overlap, int64_t *ends, uint32_t max);
uint32_t cw_chain_at(const corr *c, const slot *s, int64_t ts, uint32_t ident, sp_span_ref *out,
                     int *ambiguous, const span_ent **ents_out);
proc *cw_find_proc(corr *c, uint32_t tenant, int64_t pid, int create);
slot *cw_find_slot(corr *c, uint32_t tenant, int64_t pid, int64_t tid, int create);
void cw_free_series(corr *c);
uint32_t cw_id_bucket(const idhash *h, uint32_t tenant, const uint8_t id[8]);
int cw_ident_compat(const corr *c, uint32_t a, uint32_t b);
uint32_t cw_ident_id(corr *c, const sp_proc_ident *id);
size_t cw_itab_bytes(const itab *t);
void cw_itab_free(itab *t);
uint32_t cw_itab_get(itab *t, const void *key, uint32_t len, int create);
/* The same with the key's hash given: (uint32_t)hash64(key, len, FNV). */
uint32_t cw_itab_get_hashed(itab *t, const void *key, uint32_t len, uint32_t hash, int create);
/* Plans renumbering t to the ids whose bit in `live` (one bit per id) is set, in their order;
 * 0, or -1 out of memory (nothing to undo but cw_itab_plan_free). */
int cw_itab_plan(const itab *t, const uint64_t *live, itab_plan *pl);
/* Carries a plan out: frees the released keys, moves the rest down to their new ids and files
 * them in the new probe table (pl->slots is taken). rekey, when given, rewrites a key in place
 * (same length) and returns its new hash. Cannot fail. */
void cw_itab_compact(itab *t, itab_plan *pl, uint32_t (*rekey)(char *key, uint32_t len, void *ud),
                     void *ud);
void cw_itab_plan_free(itab_plan *pl);
#define CW_NAME_BUF SP_FRAME_NAME_MAX /* a made-up frame name (sp_frame_name) */
/* Names the locations ids[0..nids) that cache (per location of p: name id, 1 when cached) does
 * not hold yet, in batches whose cache misses overlap; ids out of p's table are skipped. */
void cw_names_prefill(corr *c, const sp_profile *p, uint32_t *cache, const uint32_t *ids,
                      uint32_t nids);
uint32_t cw_obs_lower(slot *s, int64_t t);
uint32_t cw_proc_bucket(uint32_t tenant, int64_t pid);
reg_ent *cw_reg_add(corr *c, uint32_t tenant, const sp_span *sp, uint32_t ident, int eligible);
reg_ent *cw_reg_find(corr *c, uint32_t tenant, const uint8_t id[8]);
reg_ent *cw_reg_find_live(corr *c, uint32_t tenant, const uint8_t id[8]);
uint32_t cw_series_id(corr *c, const sp_profile *p);
int cw_series_record(corr *c, uint32_t id);
uint32_t cw_slot_bucket(uint32_t tenant, int64_t pid, int64_t tid);
uint32_t cw_spans_at(const corr *c, const slot *s, int64_t ts, uint32_t ident, sp_span_ref *out,
                     uint32_t max, const span_ent **ents);
uint32_t cw_stack_id(corr *c, const sp_profile *p, const sp_sample *s, uint32_t *cache);
/* cw_stack_id() through the stacks-by-print cache when the sample's producer printed its stack
 * (equal prints name locations of equal content in the same order, so the same frame names). */
uint32_t cw_stack_id_printed(corr *c, const sp_profile *p, const sp_sample *s, uint32_t *cache);
/* The id the stacks-by-print cache holds for the sample's printed stack; UINT32_MAX when it has
 * none (not printed, not cached, or no cache). Names nothing and adds nothing. */
uint32_t cw_stack_by_print(corr *c, const sp_profile *p, const sp_sample *s);
/* A slot of corr.lnames: a location print's first lane, 32 bits of its second, and the name id
 * + 1 (0: an empty slot). */
struct name_by_print {
    uint64_t a;
    uint32_t b, id1;
};
/* A slot of corr.printed: the stack id of the print (a, b) when used. */
struct stack_by_print {
    uint64_t a, b;
    uint32_t id, used;
};
/* Starts loading the stacks-by-print slot of print pr (a cache miss in a table of up to 32 Ki
 * entries: 80 % of cw_stack_id_printed's time at full ingest), for a sample a few ahead. */
SP_PREFETCH_HELPER void cw_stack_prefetch(const corr *c, const sp_print *pr)
{
    if (c->printed && c->printed_gen == c->interns_gen)
        __builtin_prefetch(&c->printed[pr->a & (c->nprinted - 1)]);
}
uint32_t cw_tenant_id(corr *c, const char *t, int create);
wait_ent *cw_wait_add(corr *c, uint32_t tenant, const uint8_t gap[8]);

/* budget.c */
void cw_enforce_budget(corr *c);
void cw_recount(corr *c);
void cw_sweep(corr *c, int64_t now);       /* everything */
void cw_sweep_slice(corr *c, int64_t now); /* the next of SWEEP_SLICES (I11) */

/* attach.c */
void cw_count_outcome(corr *c, uint8_t how, uint64_t nobs);
void cw_keep_profile(corr *c, const prof_plan *pp, uint32_t tenant, batch_memo *memo);
void cw_memo_free(batch_memo *m);
int cw_plan_profile(corr *c, split_scratch *x, prof_plan *pp, sp_profile *p, sp_arena *a,
                    uint32_t tenant, sp_batch *b, size_t *attached);
sp_span_ref cw_reg_ref(const reg_ent *e);
int cw_same_process(const corr *c, int64_t pid_a, uint64_t svc_a, uint32_t id_a, int64_t pid_b,
                    uint64_t svc_b, uint32_t id_b);
void cw_scratch_free(split_scratch *x);
uint32_t cw_walk_up(corr *c, uint32_t tenant, const reg_ent *e, int64_t pid, uint64_t svc,
                    uint32_t ident, sp_span_ref *out, uint32_t n, uint8_t gap[8], int *has_gap);

/* late.c */
size_t cw_index_spans(corr *c, sp_batch *b, uint32_t tenant, uint64_t *failed);

/* Rebuilds the chains of `live` entries after a grow or a compaction. next_of/id_of/... are the
 * entry layout: both users keep `next`, the id and the tenant at fixed places, so a macro keeps
 * them honest. */
#define IDHASH_REBUILD(h, arr, n, idfield, bytes)                                                  \
    do {                                                                                           \
        uint32_t want_ = 1024;                                                                     \
        while (want_ < (n)*2)                                                                      \
            want_ *= 2;                                                                            \
        if (want_ != (h)->nheads) {                                                                \
            uint32_t *nh_ = calloc(want_, sizeof *nh_);                                            \
            if (nh_) {                                                                             \
                (bytes) += (size_t)want_ * sizeof *nh_;                                            \
                (bytes) -= (size_t)(h)->nheads * sizeof *nh_;                                      \
                free((h)->heads);                                                                  \
                (h)->heads = nh_;                                                                  \
                (h)->nheads = want_;                                                               \
            }                                                                                      \
        }                                                                                          \
        if ((h)->heads) {                                                                          \
            memset((h)->heads, 0, (size_t)(h)->nheads * sizeof *(h)->heads);                       \
            for (uint32_t i_ = 0; i_ < (n); i_++) {                                                \
                uint32_t b_ = cw_id_bucket((h), (arr)[i_].tenant, (arr)[i_].idfield);              \
                (arr)[i_].next = (h)->heads[b_];                                                   \
                (h)->heads[b_] = i_ + 1;                                                           \
            }                                                                                      \
        }                                                                                          \
    } while (0)

/* correlator.c, late.c: the published counters, rule 3 after the settle time */
void cw_publish(corr *c);
/* Releases corr->lock, then returns freed memory to the system when an eviction is due (I12). */
void cw_unlock(corr *c);

#endif
