/* The correlator: decides which spans each CPU profile sample belongs to.
 *
 * Runs on the ingest workers between conversion and the store (app/pipeline.c calls it), once per
 * request, for profiles and spans alike. Only CPU profiles take part (type name process_cpu,
 * sample type cpu, or wall-clock); other types pass through untouched. Per observation (one
 * timestamp t of a sample):
 *   1. an explicit link (OTLP link_index, pprof span_id label) attaches it to that span and to
 *      the span's received, eligible ancestors in the same process (walking parent ids); no
 *      inference for linked samples;
 *   2. else every eligible span of the sample's process on the sample's thread (span attribute
 *      thread.id) whose [start, end) contains t — nested spans all get it;
 *   3. else, for spans without thread.id (mode "unique"): the eligible threadless spans of the
 *      process containing t, when they form exactly one chain (one trace, each containing the
 *      next); several chains make the observation ambiguous and it stays unattached.
 * Eligible = lasted at least min_span_ns. The process key is process.pid plus whichever of
 * host.id, host.name, k8s.pod.uid and container.id both sides carry (sp_proc_ident); spans with
 * no pid match by service.name instead for the ancestor walk of rule 1.
 *
 * Arrival order: spans and observations wait for each other for window_ns of server time.
 * Attachments made when the later side arrives are appended to that request's batch as
 * attach_only profiles, so they are committed with it (and survive a restart like any write).
 * Decisions use the spans known at that moment: later spans add attachments, never retract them.
 * A sample whose observations belong to different spans is split, so every attachment carries
 * exactly the value observed inside the span. sp_sample.spans lists the innermost span first.
 *
 * Memory: everything waiting lives under one byte budget; past it attached observations stop
 * waiting first (`released`), then the oldest unattached ones (`evicted`), spans last
 * (`spans_evicted`). The observations of processes that have sent no span wait in a sixteenth
 * of it, the oldest going first (`unclaimed_evicted`); see the invariants at the top of
 * correlator.c. Owns everything it keeps (copies of what it needs from a batch); the batch stays
 * the caller's. Never touches disk or the network. Thread-safe: one lock for the window, a second
 * one only for the published counters (a metrics scrape never waits for an attach). Errors: only
 * SP_ENOMEM from corr_attach, never fatal (the batch is still whole and fit to store); corr_new
 * returns NULL when out of memory.
 */
#ifndef CORR_CORRELATOR_H
#define CORR_CORRELATOR_H

#include "../common/err.h"
#include "../common/profile.h"

#include <stddef.h>
#include <stdint.h>

enum { CORR_THREADLESS_UNIQUE = 0, CORR_THREADLESS_OFF = 1 };

typedef struct corr_options {
    int64_t min_span_ns; /* spans shorter than this get no inferred samples; 0 = 20 ms */
    int64_t window_ns;   /* how long spans and observations wait for each other; 0 = 2 min */
    size_t max_bytes;    /* budget for everything waiting; 0 = 512 MiB */
    int threadless;      /* CORR_THREADLESS_* */
    int64_t settle_ns;   /* rule 3 decides this long after an observation arrived; 0 = 10 s;
                          * negative = on arrival, with the spans known then */
} corr_options;

/* Observations are counted once per outcome, whenever it happens (at arrival or later). */
typedef struct corr_stats {
    uint64_t spans_indexed;     /* eligible spans in the window now */
    uint64_t spans_known;       /* spans of any length remembered for ancestor walks now */
    uint64_t spans_short;       /* spans received below the minimum duration (with a process) */
    uint64_t obs_waiting;       /* observations in the window now (attached or not) */
    uint64_t obs_unattached;    /* of those, still without a span or a verdict */
    uint64_t bytes;             /* memory held */
    uint64_t by_link;           /* observations attached by a sender's link (and its ancestors) */
    uint64_t by_thread;         /* observations attached by time, process and thread */
    uint64_t by_process_span;   /* observations attached to the one chain of threadless spans */
    uint64_t ambiguous;         /* observations covered by several threadless chains */
    uint64_t unmatched;         /* observations that left the window with nothing */
    uint64_t late;              /* attachments made when the span arrived after the sample */
    uint64_t services_learned;  /* profiles naming no service that took their spans' service */
    uint64_t offcpu_attached;   /* off-CPU observations attached (by thread or link) */
    uint64_t evicted;           /* unattached observations and links dropped before their time to
                                 * stay within budget: correlation lost */
    uint64_t released;          /* attached observations that stopped waiting for more spans early
                                 * (budget); not a loss: stored and attached */
    uint64_t spans_evicted;     /* spans dropped before their time (budget) */
    uint64_t memory_trims;      /* times the memory an eviction freed went back to the system */
    uint64_t unclaimed_bytes;   /* of bytes, observations of processes without spans (I13) */
    uint64_t unclaimed_evicted; /* their observations dropped before their time to stay within
                                 * their share of the budget (1/16): lost only if the process
                                 * sends its first spans later */
    /* Drops, by reason (0 in a healthy run; none of them loses a stored observation): */
    uint64_t not_kept;          /* unattached observations that could not wait for their spans
                                 * (budget full on arrival) */
    uint64_t attach_failed;     /* observations or late attachments not attached: out of memory */
    uint64_t spans_not_indexed; /* spans not indexed: out of memory */
    uint64_t idents_over;       /* profiled pids seen with more identities than are remembered */
} corr_stats;

typedef struct corr corr;

corr *corr_new(const corr_options *o);
void corr_free(corr *c);

/* What corr_abort needs to forget one corr_attach call (filled by corr_attach). */
typedef struct corr_ticket {
    uint32_t gen;
    uint16_t tag;
    int64_t expire;
    size_t attached; /* the attachments made (observation × span) */
    void *consumed;  /* waiting links the call took from the queue */
    uint32_t nconsumed;
} corr_ticket;

/* Attaches spans to b's samples (sp_sample.spans, splitting samples where needed), remembers b's
 * spans and observations for later arrivals, and appends attach_only profiles for observations
 * seen earlier that b's spans now claim. New memory comes from b->arena, whose budget is raised
 * by what splitting can need. now_ns: wall clock (UTC), for expiry.
 *
 * Two phases with the store (invariant I4 in correlator.c): with a ticket, the caller ends the
 * call with corr_commit() once b is stored, or corr_abort() when storing failed, so a retried
 * export is taken as new and attaches once. t NULL: committed at once.
 *
 * Every observation of b stays in b, attached or not: the batch is always fit to store.
 * Returns 0, or SP_ENOMEM (not fatal, for the request or the process) when memory ran out for
 * some attachments: those samples are left unattached (counted in attach_failed) and err says
 * how many; store b anyway (and still commit or abort the ticket). */
int corr_attach(corr *c, sp_batch *b, int64_t now_ns, corr_ticket *t, sp_err *err);

/* corr_attach() for the parts of one request handed on one by one (otlp_sink's streams): m
 * (from corr_memo_new, one per request, on its caller's thread) keeps the frame names and
 * stacks resolved for the request's tables from one part to the next, so a part costs what its
 * samples cost, not its whole dictionary. Every part shares one location table (the converter's
 * otlp_profiles_conv_next() keeps it); m is emptied when the correlator renumbered its names
 * since. Each part has its own ticket. corr_memo_new returns NULL when out of memory (then pass
 * NULL: the call is corr_attach). */
typedef struct corr_memo corr_memo;
corr_memo *corr_memo_new(void);
void corr_memo_free(corr_memo *m);
int corr_attach_part(corr *c, sp_batch *b, int64_t now_ns, corr_ticket *t, corr_memo *m,
                     sp_err *err);

/* The batch of t is stored: its effects stay. */
void corr_commit(corr *c, corr_ticket *t);

/* The batch of t (b, as corr_attach left it) was not stored: its spans, kept observations and
 * queued links leave the window, and the links it took are queued again. Late attachments made
 * meanwhile by other requests to its observations stay (they were stored with those requests). */
void corr_abort(corr *c, const sp_batch *b, corr_ticket *t);

/* Rule 3 for the observations that waited the settle time (opt.settle_ns) since they arrived:
 * judged against every threadless span of their process known now, and what is attached handed
 * to emit() as one batch of attach_only profiles per tenant (outside the lock; emit stores it
 * and returns 0, or an error: those attachments are then counted in attach_failed). For the
 * maintenance thread, once a second. Returns 0, or SP_ENOMEM when attachments were lost. */
int corr_settle(corr *c, int64_t now_ns, int (*emit)(void *ud, sp_batch *b), void *ud);

/* Expires what is older than the window when a sweep is due, enforces the budget and publishes
 * the counters; the ingest path does this too. For a timer thread, so counters move (and memory
 * is given back) while no ingest comes in. Takes the lock. */
void corr_expire(corr *c, int64_t now_ns);

/* The counters. now_ns 0: the last published copy, without taking the correlator's lock (what
 * /metrics reads: a scrape never waits behind an attach). Otherwise: expires what is older than
 * the window at now_ns first (takes the lock; for tests). */
void corr_get_stats(corr *c, int64_t now_ns, corr_stats *out);

/* 1 when sp can have a span profile: it lasted at least the minimum duration and its process
 * (same identity rule as matching) sent CPU profiles within the window. The trace forwarder asks
 * this to mark spans for Grafana's "Profiles for this span". */
int corr_span_profilable(corr *c, const char *tenant, const sp_span *sp);

/* 1 when the span (by id, among the spans received within the window) can have a span profile
 * (as corr_span_profilable), and with root_only when no eligible ancestor of its own process is
 * known either: a local root, the span a sample pushed to Pyroscope is labelled with. 0 for a
 * span the window does not hold. */
int corr_span_mark(corr *c, const char *tenant, const uint8_t span_id[8], int root_only);

/* 1 when profiles of this type are correlated as instants (CPU and wall-clock types). */
int corr_is_cpu_type(const char *type_id);

/* 1 for off-CPU profiles (off_cpu:...): correlated as intervals [ts - value, ts] (I9). */
int corr_is_offcpu_type(const char *type_id);

#endif
