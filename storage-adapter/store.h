/* The store: where correlated profiles and the span index are kept, and read back by the query API.
 *
 * Owns: the store interface (this file), its SQLite backend (selected by store_open()), schema
 * migrations and retention. Called by the program (app/main.c: open, close, and store_write on
 * the ingest workers after the correlator) and by query/ (the read functions). Never speaks HTTP,
 * never sees protobuf, never decides which span a sample belongs to; pushing to other engines is
 * delivery/'s, wired by the program after the store commits.
 *
 * Contract:
 * - Every function may be called from several threads at once, except store_close(), which the
 *   caller runs once, after every other call on the store has returned.
 * - store_write() returns 0 only after the batch is durably committed (as durable as the
 *   configured durability: NORMAL survives a crash of the process, FULL also a power loss). A
 *   batch is all or nothing: on failure nothing of it is stored, the caller gets SP_EUNAVAIL
 *   (retryable: disk full, I/O error, locked) or SP_EINVAL (the batch itself is malformed, nothing
 *   else is affected) or SP_EFULL (too many callers already waiting; retry later).
 * - Tenants never see each other's data: every read names its tenant. A NULL or empty tenant is
 *   the tenant "anonymous" (Pyroscope's name for the single tenant when multi-tenancy is off).
 * - Reads answer in memory from the caller's arena (sp_arena); nothing returned needs freeing
 *   and nothing returned points into the store. An arena over its budget turns into SP_ETOOBIG.
 * - Time: all times are UTC nanoseconds. Profile values are kept per time bucket (10 s in the
 *   SQLite backend), so time ranges select whole buckets: a bucket is in [start, end) when it
 *   overlaps it. end_ns 0 means "no upper bound".
 * - Label matchers follow Prometheus: a missing label matches as "", regexes are fully anchored
 *   (POSIX extended syntax: RE2 extras such as \d are not supported). Besides the stored labels a
 *   series has the virtual labels __profile_type__ (the full type id), __type__, __unit__,
 *   __period_type__ and __period_unit__ (its parts), as Pyroscope has.
 */
#ifndef STORE_STORE_H
#define STORE_STORE_H

#include "../common/arena.h"
#include "../common/err.h"
#include "../common/profile.h"

#include <stddef.h>
#include <stdint.h>

typedef struct store store;

enum { STORE_DURABILITY_NORMAL = 0, STORE_DURABILITY_FULL = 1 };

/* ---- naming native frames: the symbolizer seam
 * ---------------------------------------------------------------- */

/* A frame a symbolizer found for an address; strings in the arena given to lookup. */
typedef struct store_sym_frame {
    const char *function; /* never empty */
    const char *file;     /* "" when unknown */
    int64_t line, start_line;
} store_sym_frame;

enum {
    STORE_SYM_FOUND = 0, /* frames given, innermost (inlined callee) first */
    STORE_SYM_NONE = 1,  /* the debug file names nothing at the address: final */
    STORE_SYM_LATER = 2, /* not known yet (no debug file yet, download running): ask again */
};

/* Given by the program (app/ wires symbolizer/ here): reads name a location that arrived
 * without lines, of frame type "native", whose mapping has a build id, by asking lookup() for
 * (build id, address). Found and final answers are kept in the store per (build id, address),
 * so a later query (also after a restart) asks nothing; STORE_SYM_LATER is asked again by the
 * next query. lookup() may be called from several query threads at once; it returns STORE_SYM_*
 * or a negative SP_E* (the frame is then shown unnamed). */
typedef struct store_symbolizer {
    int (*lookup)(void *ctx, const char *build_id, uint64_t address, int64_t deadline_ns,
                  sp_arena *a, store_sym_frame **frames, size_t *n);
    void *ctx;
    /* What one query may wait for debug files (CLOCK_MONOTONIC at its first lookup plus this);
     * 0 = 2 s. */
    int64_t budget_ns;
    /* Reads never wait inside lookup() (deadline_ns 0: a debug file not there yet is asked for
     * and answered STORE_SYM_LATER), so every build id of the answer is asked for at once. When
     * frames were left unresolved, wait() is called with the query's deadline: it returns once
     * no download is pending or at the deadline, > 0 when some debug file arrived after `since`
     * (what arrivals() said before the query's first lookup: a download that ended before the
     * wait began counts) — the store then names the answer's frames again. NULL = never wait. */
    int (*wait)(void *ctx, int64_t deadline_ns, uint64_t since);
    /* How many debug files have arrived so far (a counter that only grows); NULL = 0. */
    uint64_t (*arrivals)(void *ctx);
} store_symbolizer;

/* Zero-initialised = every default. */
typedef struct store_options {
    const char *data_dir; /* SQLite: the directory holding spanprof.db (created if missing) */
    int durability;       /* STORE_DURABILITY_NORMAL (default) or STORE_DURABILITY_FULL */
    int64_t retention_ns; /* keep data this long; 0 = 168 h; negative = keep forever */
    int64_t retention_interval_ns; /* background retention period; 0 = 1 min; negative = none */
    uint32_t retention_chunk_rows; /* rows deleted per retention transaction; 0 = 2000 */
    uint32_t commit_max_batches;   /* callers' batches grouped into one transaction; 0 = 256 */
    int64_t commit_linger_ns; /* writer waits this long for more callers before a commit; 0 = no */
    uint32_t max_pending;     /* callers queued at the writer before SP_EFULL; 0 = 4096 */
    uint32_t busy_timeout_ms; /* waiting for a lock held by another process; 0 = 5000 */
    uint32_t readers;         /* concurrent read connections; 0 = 4 */
    size_t cache_bytes;       /* writer's dictionary caches (stacks, locations, ...); 0 = 32 MiB */
    size_t index_rows;        /* rows each writer hash index holds before it gives up (I4 of
                                 sqlite_dict.c); 0 = 4 Mi (64 MiB for a table that size) */
    size_t page_cache_bytes;  /* SQLite page cache of the writer connection; 0 = 32 MiB */
    size_t name_cache_bytes;  /* location names kept for later queries (name_cache.h); 0 = 32 MiB */
    uint64_t max_db_bytes;    /* cap on the database file; writes past it fail like a full disk;
                                 0 = none */
    const char *remote_kind;  /* store "none": the name reads are refused under ("pyroscope") */
    const store_symbolizer *symbolizer; /* names native frames at read time; NULL = none */
} store_options;

/* ---- label matchers and selectors
 * ---------------------------------------------------------------- */

enum { STORE_MATCH_EQ, STORE_MATCH_NEQ, STORE_MATCH_RE, STORE_MATCH_NRE };

typedef struct store_matcher {
    const char *name, *value;
    int op; /* STORE_MATCH_* */
} store_matcher;

typedef struct store_selector {
    const char
        *type_id; /* what stood before '{' (render queries: "process_cpu:cpu:..."), or NULL */
    store_matcher *matchers;
    size_t nmatchers;
} store_selector;

/* Parses a Prometheus-style selector: `{a="x", b!="y", c=~"re", d!~"re"}`, `{}`, an optional
 * metric name (type id) before the brace, quoted label names, and — leniently, as Grafana users
 * write custom queries — a list without braces (`a="x", b="y"`). Result in the arena. */
int store_parse_selector(const char *text, sp_arena *a, store_selector *out, sp_err *err);

/* ---- reads: what they select and what they return -----------------------------------------------
 */

typedef struct store_query {
    const char *tenant;
    const char *type_id; /* profile type id; NULL = every type */
    const store_matcher *matchers;
    size_t nmatchers;
    int64_t start_ns, end_ns; /* [start, end); end 0 = unbounded; profile values: the 10 s buckets
                               * that start in it */
    int detail;               /* stack reads: also fill store_stack.detail (pprof downloads) */
} store_query;

typedef struct store_strings {
    const char **v; /* sorted, unique */
    size_t n;
} store_strings;

typedef struct store_labels {
    sp_kv *labels; /* sorted by name */
    size_t n;
} store_labels;

typedef struct store_labelsets {
    store_labels *sets;
    size_t n;
} store_labelsets;

/* What a frame was received with (store_query.detail): the pprof download keeps it. Frames of
 * one location (its inlined callees first) are consecutive and share `loc`. Strings are "" when
 * unknown; the arena owns them. */
typedef struct store_frame {
    int64_t loc;              /* the location it belongs to (an id of the answer) */
    uint64_t address;         /* the location's address */
    const char *mapping;      /* the location's mapping file */
    const char *build_id;     /* and its build id */
    const char *file;         /* the function's file */
    int64_t start_line, line; /* the function's first line, and this frame's line */
    uint32_t inl; /* its place among its location's frames: 0 = the first (innermost); a 0
                     after frames of the same loc starts a new occurrence (recursion) */
} store_frame;

typedef struct store_stack {
    const uint32_t *frames; /* indices into store_stacks.names, leaf first */
    uint32_t nframes;
    int64_t value;
    const store_frame *detail; /* parallel to frames with store_query.detail, else NULL */
} store_stack;

/* Merged stacks: each distinct stack once with its summed value. Frame names are never empty
 * (see store_frame_name()); names are unique within one answer. */
typedef struct store_stacks {
    const char **names;
    uint32_t nnames;
    store_stack *stacks;
    size_t nstacks;
    int64_t total;
    /* The sampling period (pprof Profile.period, in the type's period unit) of the series the
     * values came from: of the one contributing the most when they differ; 0 = unknown. */
    int64_t period;
    /* Distinct native locations of the answer that could not be named yet (no debug file yet,
     * its download still running or past the query's budget): they show as
     * "native 0x<address> <file>" and may be named by a later query. */
    uint32_t unresolved;
} store_stacks;

/* What is attached to one span, without the stacks themselves. */
typedef struct store_span_total {
    int64_t value;   /* sum of the attached values */
    uint32_t stacks; /* distinct stacks with a non-zero value */
} store_span_total;

typedef struct store_point {
    int64_t t_ns; /* start of the step */
    int64_t value;
} store_point;

typedef struct store_timeseries {
    store_labels labels; /* the group_by labels present (name order); none without group_by */
    store_point *points; /* ascending time; steps without data are absent */
    size_t npoints;
} store_timeseries;

typedef struct store_timeseries_set {
    store_timeseries *series;
    size_t n;
} store_timeseries_set;

typedef struct store_spans {
    sp_span *spans; /* strings in the caller's arena; ascending start */
    size_t n;
    int truncated; /* store_find_spans: more spans matched than the limit */
} store_spans;

/* Which spans store_find_spans() selects, beside the query's tenant and time range (the span
 * starts in [start, end)). */
typedef struct store_span_filter {
    const char *service;     /* exactly this service; NULL = any */
    const char *name;        /* exactly this span name; NULL = any */
    int64_t min_duration_ns; /* at least this long */
    size_t limit;            /* at most this many (out->truncated when more matched); 0 = none */
} store_span_filter;

/* What is stored for a tenant overall (GetProfileStats). */
typedef struct store_profile_stats {
    int data_ingested;            /* any profile value is stored */
    int64_t oldest_ns, newest_ns; /* the earliest and latest time bucket's start */
} store_profile_stats;

/* What a query would read (AnalyzeQuery): the matching series and their stored values in range. */
typedef struct store_query_impact {
    uint64_t series;  /* series matching the selector with values in range */
    uint64_t buckets; /* (series, time bucket) pairs: Pyroscope's "profiles" */
    uint64_t chunks;  /* stored value chunks read */
    uint64_t bytes;   /* their bytes */
} store_query_impact;

/* A service's traces (store_service_traces), newest first. */
typedef struct store_trace_ids {
    uint8_t (*ids)[16];
    int64_t *last_start_ns; /* parallel: the latest start of the service's spans in the trace */
    size_t n;
    int truncated; /* more traces matched than the limit */
} store_trace_ids;

typedef struct store_stats {
    uint64_t batches_committed, batches_failed, transactions, samples_written, spans_written;
    uint64_t retention_runs, rows_deleted;
    uint64_t pending; /* callers waiting for the writer now */
    /* 1 while the SQLite writer has keying ahead of need due or running (a transaction of its
     * own after callers were answered, H1 in sqlite_write.c): a test that reads the key tables
     * after a write waits for 0 */
    uint64_t housekeeping;
    uint64_t cache_bytes, cache_clears;
    /* the location-name cache shared by queries (name_cache.h): held now, and counters */
    uint64_t name_cache_bytes, name_cache_entries, name_cache_hits, name_cache_misses,
        name_cache_evicted;
    uint64_t last_commit_us; /* duration of the last commit (SQLite: COMMIT alone) */
    /* closed buckets' value chunks (sqlite_compact.c): chunks merged into one per bucket, lone
     * chunks moved as they are, and writes not remembered for closing (past the writer's cap:
     * they stay as they are); closings rolled back because they failed (the batches were stored) */
    uint64_t chunks_merged, chunks_moved, compact_untracked, compact_failed;
    /* WAL checkpoints (SQLite): by the checkpointer's thread, by the writer itself because the
     * checkpointer fell behind (the WAL passed 64 MiB), and failed (logged) */
    uint64_t checkpoints, checkpoints_inline, checkpoints_failed;
    /* new stacks, locations and functions inserted without reading a row: their hash index
     * knew they were new (I2 in sqlite_dict.c); and the indexes' rows and size */
    uint64_t lookups_skipped, index_rows, index_bytes;
} store_stats;

/* ---- the backend seam -------------------------------------------------------------------------
 */

/* A backend fills one of these; `struct store` is the first member of its own state. NULL entries
 * answer SP_EUNIMPL. */
typedef struct store_ops {
    const char *kind; /* "sqlite", "pyroscope" */
    void (*close)(store *s);
    int (*write)(store *s, const sp_batch *b, sp_err *err);
    /* A write in parts (store_stream_*); NULL: store.c joins the parts and calls write. */
    int (*stream_begin)(store *s, sp_arena *a, void **impl, sp_err *err);
    int (*stream_part)(store *s, void *impl, const sp_batch *part, sp_err *err);
    int (*stream_end)(store *s, void *impl, int failed, sp_err *err);
    int (*profile_types)(store *s, const store_query *q, sp_arena *a, store_strings *out,
                         sp_err *err);
    int (*label_names)(store *s, const store_query *q, sp_arena *a, store_strings *out,
                       sp_err *err);
    int (*label_values)(store *s, const store_query *q, const char *name, sp_arena *a,
                        store_strings *out, sp_err *err);
    int (*series)(store *s, const store_query *q, const char *const *names, size_t nnames,
                  sp_arena *a, store_labelsets *out, sp_err *err);
    int (*select_stacks)(store *s, const store_query *q, sp_arena *a, store_stacks *out,
                         sp_err *err);
    int (*select_series)(store *s, const store_query *q, int64_t step_ns,
                         const char *const *group_by, size_t ngroup_by, sp_arena *a,
                         store_timeseries_set *out, sp_err *err);
    int (*span_stacks)(store *s, const store_query *q, const uint8_t (*span_ids)[8],
                       size_t nspan_ids, sp_arena *a, store_stacks *out, sp_err *err);
    int (*trace_spans)(store *s, const char *tenant, const uint8_t trace_id[16], sp_arena *a,
                       store_spans *out, sp_err *err);
    int (*span_totals)(store *s, const store_query *q, const uint8_t (*span_ids)[8],
                       size_t nspan_ids, store_span_total *out, sp_err *err);
    int (*span_get)(store *s, const char *tenant, const uint8_t span_id[8], sp_arena *a,
                    sp_span *out, sp_err *err);
    int (*span_services)(store *s, const store_query *q, sp_arena *a, store_strings *out,
                         sp_err *err);
    int (*service_traces)(store *s, const store_query *q, const char *service, size_t limit,
                          sp_arena *a, store_trace_ids *out, sp_err *err);
    int (*find_spans)(store *s, const store_query *q, const store_span_filter *f, sp_arena *a,
                      store_spans *out, sp_err *err);
    int (*profile_stats)(store *s, const char *tenant, store_profile_stats *out, sp_err *err);
    int (*query_impact)(store *s, const store_query *q, store_query_impact *out, sp_err *err);
    int (*retention_run)(store *s, int64_t now_ns, sp_err *err);
    void (*stats)(store *s, store_stats *out);
} store_ops;

struct store {
    const store_ops *ops;
};

/* For a backend that joins a stream's parts into one batch (store.c does for one without
 * streams): appends part's profiles to all, whose tenant the first part names. SP_ETOOBIG past
 * all's arena budget; SP_EINTERNAL for a part with spans (written by store_write). */
int store_join_part(sp_batch *all, const sp_batch *part, sp_err *err);

/* ---- opening and closing ------------------------------------------------------------------------
 */

/* Opens the store a URL names: NULL, "" or "sqlite" = SQLite in o->data_dir; "sqlite:<dir>" or
 * "sqlite://<dir>" = SQLite in <dir>; "none" = no local copy (another engine, wired by the
 * program, keeps the data): writes succeed without storing, reads answer SP_EUNIMPL naming
 * o->remote_kind. SP_EINVAL for any other URL. */
int store_open(store **out, const char *url, const store_options *o, sp_err *err);

/* Opens (creating if needed) the SQLite store in o->data_dir, runs forward migrations, and starts
 * the writer and retention threads. Start-up errors name the cause and what to do: the directory
 * is not writable, another spanprof holds it, another process holds a lock on the database, the
 * file is not a spanprof database, its schema is newer than this binary, the disk is full
 * (SP_EUNAVAIL). */
int store_open_sqlite(store **out, const store_options *o, sp_err *err);

/* Stops the threads (pending writes are committed first), checkpoints and frees. NULL is a no-op.
 */
void store_close(store *s);

/* ---- writing ----------------------------------------------------------------------------------
 */

/* Stores the batch's profiles (values per series, stack and time bucket, plus per-span stack
 * values for every span in sp_sample.spans) and its spans (the span index; a span written again
 * replaces the earlier row). Blocks until committed; see the contract above. */
int store_write(store *s, const sp_batch *b, sp_err *err);

/* A write in parts: one request's batch handed over part by part, so the store writes the first
 * parts while the caller still converts the rest. All parts are one batch for the contract above:
 * one transaction, all or nothing, and store_stream_end() returns 0 only after its commit.
 *
 * - begin allocates the stream in a (the request's arena, which must outlive end); nothing is
 *   queued until the first part. A backend may decline to write parts as they come (SQLite does
 *   while its writer is busy, S6): the parts are then joined and written whole by end, with the
 *   same contract.
 * - part validates the part (SP_EINVAL names what is wrong) and hands it over; the part and its
 *   tables must stay unchanged until end returns. Every part of a stream shares one set of
 *   tables that only grow: an index names the same string, function, location or mapping in
 *   every part (otlp_profiles_conv_next() keeps this), and a later part's tables extend an
 *   earlier one's. SP_EFULL when the write queue is full at the first part, SP_EUNAVAIL when the
 *   store is closing. After an error the caller still calls end, with failed set.
 * - end(failed = 0) waits for the commit of every part: 0, or the store's SP_EUNAVAIL. With
 *   failed set, nothing of the stream is stored (parts already written are rolled back; other
 *   callers' batches in the same transaction are written again without them) and end returns 0
 *   once the store no longer reads the parts.
 * Threads: one thread at a time per stream (begin, the parts and end may each come from another
 * thread when one hands over to the next, as the pipeline's stage thread does); streams and
 * store_write() may run at once. */
typedef struct store_stream store_stream;
int store_stream_begin(store *s, sp_arena *a, store_stream **out, sp_err *err);
int store_stream_part(store_stream *st, const sp_batch *part, sp_err *err);
int store_stream_end(store_stream *st, int failed, sp_err *err);

/* ---- reading (Pyroscope querier.v1 semantics)
 * ----------------------------------------------------- */

/* Profile type ids with data in the time range (matchers apply). */
int store_profile_types(store *s, const store_query *q, sp_arena *a, store_strings *out,
                        sp_err *err);
/* Label names of the matching series (virtual __ labels included). */
int store_label_names(store *s, const store_query *q, sp_arena *a, store_strings *out, sp_err *err);
int store_label_values(store *s, const store_query *q, const char *name, sp_arena *a,
                       store_strings *out, sp_err *err);
/* Distinct label sets of the matching series, reduced to `names` (all labels when nnames 0). */
int store_series(store *s, const store_query *q, const char *const *names, size_t nnames,
                 sp_arena *a, store_labelsets *out, sp_err *err);
/* Merged stacks of the matching series in the time range (SelectMergeStacktraces). */
int store_select_stacks(store *s, const store_query *q, sp_arena *a, store_stacks *out,
                        sp_err *err);
/* Totals per step (SelectSeries, aggregation sum), one series per distinct value combination of
 * group_by (a single unlabelled series without group_by). Steps start at q->start_ns. */
int store_select_series(store *s, const store_query *q, int64_t step_ns,
                        const char *const *group_by, size_t ngroup_by, sp_arena *a,
                        store_timeseries_set *out, sp_err *err);
/* Merged stacks of the samples attached to any of the spans (SelectMergeSpanProfile): tenant,
 * type and matchers apply. The time range is optional (0/0 = the span's samples whenever they
 * were taken); when given it selects by the hour (the samples taken in the hours it overlaps),
 * which makes the lookup a single seek: Grafana's range around a span covers its samples. Reads
 * only those spans' rows. */
int store_span_stacks(store *s, const store_query *q, const uint8_t (*span_ids)[8],
                      size_t nspan_ids, sp_arena *a, store_stacks *out, sp_err *err);
/* Per span, what store_span_stacks() would answer for that span alone, summed: out[i] for
 * span_ids[i] (the same filter and time range; zeros for a span with nothing attached).
 * Reads only the spans' value chunks, never the dictionary, so a trace's spans cost little
 * each. A backend without it answers through store_span_stacks(). */
int store_span_totals(store *s, const store_query *q, const uint8_t (*span_ids)[8],
                      size_t nspan_ids, store_span_total *out, sp_err *err);
/* Every indexed span of a trace, ascending start. */
int store_trace_spans(store *s, const char *tenant, const uint8_t trace_id[16], sp_arena *a,
                      store_spans *out, sp_err *err);
/* One span by id; SP_ENOTFOUND when it is not indexed. */
int store_span_get(store *s, const char *tenant, const uint8_t span_id[8], sp_arena *a,
                   sp_span *out, sp_err *err);

/* Services with spans starting in the time range (q: tenant, start_ns, end_ns; end 0 = no
 * bound), sorted. Reads the span index of the hours the range covers. */
int store_span_services(store *s, const store_query *q, sp_arena *a, store_strings *out,
                        sp_err *err);
/* The traces with a span of `service` starting in the time range, the most recent first (by
 * the latest such span), at most `limit` (out->truncated when there were more). Reads the span
 * index of the hours the range covers, newest hour first, and stops once `limit` traces are
 * found in whole hours. */
int store_service_traces(store *s, const store_query *q, const char *service, size_t limit,
                         sp_arena *a, store_trace_ids *out, sp_err *err);

/* Spans starting in the query's time range (tenant, start_ns, end_ns; end 0 = no bound) that
 * pass the filter, ascending start. Reads the span index of the hours the range covers (a scan
 * of those hours' spans, like store_span_services). */
int store_find_spans(store *s, const store_query *q, const store_span_filter *f, sp_arena *a,
                     store_spans *out, sp_err *err);
/* Whether the tenant has profile values stored, and the first and last time bucket's start. */
int store_get_profile_stats(store *s, const char *tenant, store_profile_stats *out, sp_err *err);
/* What store_select_stacks() would read for q: series, buckets, chunks and bytes. */
int store_analyze_query(store *s, const store_query *q, store_query_impact *out, sp_err *err);

/* ---- retention and metrics ----------------------------------------------------------------------
 */

/* Deletes what is older than now_ns minus the retention: profile buckets, per-span stack values,
 * spans, and stacks/locations/functions no longer used; in small transactions that ingest
 * interleaves with. The background thread calls it every retention interval; tests and admin
 * endpoints may call it directly. Returns after the run completed. */
int store_retention_run(store *s, int64_t now_ns, sp_err *err);

void store_stats_get(store *s, store_stats *out);

/* ---- maintenance of a SQLite store from outside the server (spanprof admin)
 * ----------------------
 */

/* Called once per problem found, with a line saying what is wrong. */
typedef void (*store_check_fn)(void *ud, const char *problem);

/* Checks <data_dir>/spanprof.db: PRAGMA integrity_check plus the invariants listed in
 * sqlite_admin.c; *problems counts what report() was told. Takes no lock: runs beside a
 * running server. Returns 0 when the check ran (problems or not); SP_EINVAL (no directory),
 * SP_ENOTFOUND (no database there), SP_EUNAVAIL (cannot open it). */
int store_check(const char *data_dir, store_check_fn report, void *ud, uint64_t *problems,
                sp_err *err);

/* VACUUM of <data_dir>/spanprof.db (file sizes before and after, bytes). Takes the data
 * directory's lock: SP_EUNAVAIL while a spanprof runs there, or on an SQLite error (disk full:
 * VACUUM needs room for a second copy); SP_ENOTFOUND without a database. */
int store_vacuum(const char *data_dir, uint64_t *before, uint64_t *after, sp_err *err);

/* What a backup wrote: the file's size and its database pages. */
typedef struct store_backup_info {
    uint64_t bytes, pages;
} store_backup_info;

/* Online backup of <data_dir>/spanprof.db to the new file out (sqlite3_backup in one step: a
 * consistent committed state, written to out.tmp-<pid> and renamed; ingest goes on meanwhile).
 * info (may be NULL) gets the copy's size. SP_EINVAL when out exists or is not given,
 * SP_ENOTFOUND without a database, SP_EUNAVAIL on an I/O error or a lock held too long. All
 * concern this backup only (none is fatal to a running server). */
int store_backup(const char *data_dir, const char *out, store_backup_info *info, sp_err *err);

/* ---- moving a time range between stores (spanprof admin export / import) ---------------------
 */

/* A series as store_export_range() hands it out; valid during the callback. */
typedef struct store_export_series {
    int64_t id; /* the store's series id: stable within one export */
    const char *tenant;
    const char *type_id;
    const sp_kv *labels; /* sorted by name, __name__ included, as stored */
    uint32_t nlabels;
    int64_t period;
} store_export_series;

/* Called in this order per tenant: tenant(), span() for each span starting in the range,
 * profile() for each (series, 10 s bucket starting in the range) with span_values 0 and t_ns the
 * bucket's start, then profile() for each (series, hour) of what was attached to those spans
 * with span_values 1, t_ns the hour's start and every sample's spans[0] its span. Profiles carry
 * the stored dictionary (frame types included) and no sample labels; store_write() of them
 * (span values with attach_only) stores the same rows. A non-zero return stops the walk. */
typedef struct store_export_sink {
    int (*tenant)(void *ud, const char *tenant, sp_err *err);
    int (*span)(void *ud, const sp_span *sp, sp_err *err);
    int (*profile)(void *ud, const store_export_series *s, int64_t t_ns, int span_values,
                   const sp_profile *p, sp_err *err);
    void *ud;
} store_export_sink;

/* Walks one committed state of <data_dir>/spanprof.db (a read transaction of its own: runs
 * beside a running server) for [from_ns, until_ns), every tenant or only `tenant`
 * (sqlite_export.c says what belongs to the range). Returns 0, the sink's code, SP_EINVAL (empty
 * range, no directory), SP_ENOTFOUND (no database; no such tenant), SP_EUNAVAIL (cannot read:
 * not a spanprof database, damaged rows, I/O) or SP_ENOMEM. */
int store_export_range(const char *data_dir, const char *tenant, int64_t from_ns, int64_t until_ns,
                       const store_export_sink *sink, sp_err *err);

/* Import bookkeeping in the store's meta table, key "import:<id>" (an export's id): reads the
 * recorded state into state (empty when the id was never imported) and, when it was not,
 * records `set` (e.g. "started <time>"). store_import_mark_set() overwrites the state (e.g.
 * "done <time>"). Both open <data_dir>/spanprof.db with a connection of their own (the caller
 * holds the store open: the data directory's lock). SP_ENOTFOUND without a database,
 * SP_EUNAVAIL on SQLite errors, SP_EINVAL for an id over 100 bytes. */
int store_import_mark_begin(const char *data_dir, const char *id, const char *set, char *state,
                            size_t statesz, sp_err *err);
int store_import_mark_set(const char *data_dir, const char *id, const char *state, sp_err *err);

/* ---- helpers ------------------------------------------------------------------------------------
 */

/* The display name of a frame, written to buf (always NUL-terminated, never empty) and returned:
 * the function name when there is one, else "<frame_type> 0x<address> <mapping basename>" with
 * the parts that are known ("native 0x7f3a21 libc.so.6", "0x4010a0", "unknown"). */
const char *store_frame_name(char *buf, size_t n, const char *function, const char *frame_type,
                             uint64_t address, const char *mapping_file);

#endif
