/* The SQLite reads' shared query context (sqlite_read.c), used by the stack reads
 * (sqlite_stacks.c). Internal to storage-adapter/: one query on one borrowed read connection,
 * on the caller's thread; answers in the caller's arena. */
#ifndef STORE_SQLITE_READ_H
#define STORE_SQLITE_READ_H

#include "match.h"
#include "sqlite_store.h"

typedef struct rq {
    sqs_store *s;
    sqs_reader *r;
    sp_arena *a;
    sp_err *err;
    int64_t tenant; /* 0 = the tenant has never written: every answer is empty */
    int64_t b0, b1; /* bucket range, inclusive */
    store_match match;
    int in_txn;
    int64_t sym_deadline; /* naming native frames: until when to wait (set at the first lookup) */
    uint64_t sym_since;   /* the symbolizer's arrivals() just before that first lookup */
    /* The location-name cache's generation the snapshot belongs to; names_ok = 0 when no single
     * one does (a deletion was being committed around the snapshot): the query bypasses the
     * cache (sqlite_stacks.c, N2). */
    uint64_t names_gen;
    int names_ok;
} rq;

typedef struct rseries {
    int64_t id;
    const char *type;
    const char *parts[5]; /* the type id's parts: name, sample type/unit, period type/unit */
    sp_kv *labels;        /* sorted by name */
    uint32_t n;
    int64_t period;
} rseries;

/* SP_ETOOBIG: the answer outgrew the request's arena. */
int rq_nomem(rq *q);
/* The prepared statement `which` (R_*), prepared on first use; NULL when preparing failed. */
sqlite3_stmt *rq_stmt(rq *q, int which);
/* SP_EUNAVAIL naming the statement and SQLite's message. */
int rq_dberr(rq *q, int rc, int which);
int rq_prep_fail(rq *q, int which);
/* Borrows a reader, opens the read transaction and resolves the tenant and time range. */
int rq_begin(rq *q, store *st, const char *tenant, const store_query *query, sp_arena *a,
             sp_err *err);
void rq_end(rq *q);
/* One row of the span statements (span_id, trace_id, parent_id, service, name, start_ns,
 * duration_ns, pid, tid, and the extras' span_extra data and resource and span_resource data
 * when the statement has those 3 more columns) into sp, strings and extras in the query's
 * arena. */
int rq_span_row(rq *q, sqlite3_stmt *st, sp_span *sp);
/* The tenant's series matching query (with data in range when in_range). */
int rq_select_series(rq *q, const store_query *query, int in_range, rseries **out, size_t *n);
/* sqlite_names.c: turns stack id → value sums into named stacks in the query's arena (detail:
 * store_stack.detail too), through the location-name cache; when native frames were left for
 * debug files being downloaded, waits for them within the query's budget and names the stacks
 * again. SP_ETOOBIG (the arena), SP_EUNAVAIL (SQLite). */
int sqs_build_stacks(rq *q, store_agg *vals, int detail, store_stacks *out);

#endif
