/* The hold: correlated samples wait here until their span attachments settle, then leave as one
 * profile per series and 10 s bucket — what the Pyroscope pusher (pusher.c) sends.
 *
 * Why: SDKs export a span when it ends, so the samples inside it normally arrive first. Pushed
 * on arrival they would reach Pyroscope without their span and Pyroscope cannot relabel a sample
 * it holds. Held, they take the span that claims them later (the correlator's attach_only
 * profiles), and each sample is pushed with one `span_id`: the outermost span attached to it, so
 * Pyroscope's one-span-per-sample model answers a local root span with everything inside it.
 *
 * Groups (the release unit): observations are filed by the 10 s bucket holding their timestamp.
 * Group (bucket, 0) takes what arrives before the bucket's release time (bucket end + delay);
 * it leaves as one profile per (tenant, series) stamped with the bucket's start (plus the
 * instance's offset, under 1 µs × 997). What arrives for a bucket after that time forms a late
 * group (bucket, R): R is the whole second it leaves, and its profiles are stamped within the
 * bucket's first millisecond too (hold_late_offset), so every millisecond range counts them with
 * their bucket, and two groups of one series never share a timestamp: Pyroscope collapses
 * same-series same-timestamp profiles when it compacts.
 *
 * Invariants:
 *   H1. A group leaves at most once, and only when no staged batch still pins it (hold_plan →
 *       hold_add or hold_unpin): whatever a journal file names for the group is in it.
 *   H2. Values move, never appear: an amendment moves value from a portion whose span is inside
 *       the claiming span (or from no span) to the claiming span; totals per (series, bucket,
 *       stack) are what arrived.
 *   H3. A span Pyroscope cannot answer whole is remembered as incomplete (for the span
 *       window): its claimed samples had already left (their group released, or never held),
 *       or one of its observations went out under a span of another chain (two spans of one
 *       observation, neither an ancestor of the other: a sample names one). "Outer" is
 *       ancestry by parent ids, and time containment within one trace while a chain is not
 *       all known. Incomplete spans are never marked for Grafana (app/pipeline.c).
 *
 * Memory: everything lives under max_bytes; past it the oldest unpinned groups leave early
 * (counted). Owns all it keeps (copies of names and labels). Not thread-safe: the pusher's lock.
 * Errors: SP_ENOMEM from hold_add (observations not held: err says how many; the journal
 * still has them, so a crash pushes them; the live push lacks them — logged, rate-limited).
 */
#ifndef DELIVERY_HOLD_H
#define DELIVERY_HOLD_H

#include "../common/err.h"
#include "../common/profile.h"

#include <stddef.h>
#include <stdint.h>

#define HOLD_BUCKET_NS 10000000000LL

typedef struct hold hold;

typedef struct hold_options {
    int64_t delay_ns;       /* a bucket leaves this long after it ends */
    size_t max_bytes;       /* 0 = 256 MiB */
    uint32_t instance_slot; /* hold_bucket_offset(): this instance's place in a bucket's 1st ms */
    int64_t span_ttl_ns;    /* spans remembered for nesting and incompleteness; 0 = 2 × (delay +
                             * a bucket) */
} hold_options;

typedef struct hold_stats {
    uint64_t groups, entries, records, bytes; /* now */
    uint64_t held_total;                      /* observations taken */
    uint64_t moved_total;       /* observations (portions) moved to an outer span by a late span */
    uint64_t early_total;       /* groups that left before their time (memory budget, shutdown) */
    uint64_t late_groups_total; /* late groups (arrivals after their bucket left) */
    uint64_t incomplete_total;  /* spans that claimed samples already pushed */
    double delay_obs_ms_sum;    /* Σ over released observations of (release - arrival) */
    uint64_t delay_obs_count;
    int64_t last_delay_ms; /* the last released group's age: release - first arrival */
    int64_t max_delay_ms;
} hold_stats;

/* A group: a bucket start (seconds) and 0 or its late release second. */
typedef struct hold_group_id {
    int64_t bucket_s;
    int64_t gen;
} hold_group_id;

hold *hold_new(const hold_options *o);
void hold_free(hold *h);

/* The groups b's observations go to at now_ns, each pinned until hold_add() or hold_unpin() is
 * called with the same list (H1). out gets at most max ids; returns how many, or -1 when more
 * than max groups would be needed (the caller then pushes the batch unheld). */
int hold_plan(hold *h, const sp_batch *b, int64_t now_ns, hold_group_id *out, int max);

/* The group of an observation at ts for a batch planned at now_ns (what hold_plan decided). */
hold_group_id hold_group_of(const hold *h, int64_t ts_ns, int64_t now_ns);

/* Takes b (planned at plan_ns with ids/n): its spans into the span table, its observations into
 * their groups (with the outermost attached span as label), its attach_only samples as moves (H2).
 * Unpins the groups. SP_ENOMEM: some observations were not held (err says how many); the
 * groups stay consistent. */
int hold_add(hold *h, const sp_batch *b, int64_t plan_ns, const hold_group_id *ids, int n,
             sp_err *err);
void hold_unpin(hold *h, const hold_group_id *ids, int n);

/* One released profile. The profile and its strings live until emit returns. */
typedef int (*hold_emit_fn)(void *ud, const char *tenant, hold_group_id g, const sp_profile *p);

/* Releases every unpinned group due at now_ns (all = 1: every unpinned group, e.g. at shutdown;
 * all = 2: the oldest unpinned group, due or not, and the due ones after it — a caller's budget).
 * For each group: emit() per (tenant, series) profile, then done() once with the group (after
 * which the group is gone). An emit error keeps the group for the next call. Returns the number
 * of groups released. */
int hold_release(hold *h, int64_t now_ns, int all, hold_emit_fn emit,
                 void (*done)(void *ud, hold_group_id g), void *ud);

/* The same in steps, so a caller can emit without its lock: hold_detach() takes the next group
 * to leave at now_ns (all as above) out of the hold (NULL: none); hold_detached_emit() needs
 * nothing of the hold (any thread, no lock); then hold_detached_done() (the group is gone,
 * counted) or, when emit failed, hold_detached_return() (it leaves at a later call). The id of
 * a detached group is never made again (H1). */
typedef struct hold_detached hold_detached;
hold_detached *hold_detach(hold *h, int64_t now_ns, int all);
hold_group_id hold_detached_id(const hold_detached *d);
int hold_detached_emit(const hold_detached *d, hold_emit_fn emit, void *ud);
void hold_detached_done(hold *h, hold_detached *d, int64_t now_ns);
void hold_detached_return(hold *h, hold_detached *d);

/* 1 when the span claimed samples that had already been pushed (H3). */
int hold_span_incomplete(hold *h, const char *tenant, const uint8_t span_id[8]);

/* Timestamp offsets (ns) within a bucket's first millisecond: the instance's slot (so two
 * spanprof instances pushing one series rarely share a timestamp: 1 in 997), then the bucket's
 * own group, late groups and recovered journal files never share one with each other. */
int64_t hold_bucket_offset(uint32_t slot);
int64_t hold_late_offset(uint32_t slot, int64_t bucket_s, int64_t gen);
int64_t hold_recovered_offset(uint32_t slot, uint64_t seq);

/* Observation k of s (k < max(nobs, 1)): its time (the store's rule: none = the profile's time,
 * or now_ns when that is unset too) and its value (equal shares of value, the rest on the first,
 * when the sender gave no per-observation values). */
int64_t hold_obs_ts(const sp_profile *p, const sp_sample *s, uint32_t k, int64_t now_ns);
int64_t hold_obs_value(const sp_sample *s, uint32_t k);

void hold_get_stats(hold *h, hold_stats *out);

#endif
