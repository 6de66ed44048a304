/* Internal to the SQLite backend: the state shared by sqlite.c (open, close, threads, reader
 * pool), sqlite_schema.c (schema, migrations, connection set-up), sqlite_write.c (the writer
 * thread: ingest transactions and retention), sqlite_checkpoint.c (the WAL checkpointer's
 * thread and connection) and sqlite_read.c (queries).
 *
 * Ownership: the writer connection, its prepared statements and its caches belong to the writer
 * thread alone (store_open_sqlite() sets them up before the thread starts, store_close() tears
 * them down after it stopped). Read connections belong to the pool; a query borrows one for its
 * whole duration. The request queue and the counters are guarded by `mu`.
 */
#ifndef STORE_SQLITE_STORE_H
#define STORE_SQLITE_STORE_H

#include "hash_index.h"
#include "chunk.h"
#include "maps.h"
#include "name_cache.h"
#include "store.h"

#include <pthread.h>
#include <sqlite3.h>

/* Width of a time bucket: profile values are summed per (series, stack, bucket). Part of the
 * schema (recorded in the meta table): changing it needs a migration. */
#define SQS_BUCKET_NS ((int64_t)10000000000)
#define SQS_HOUR_NS   ((int64_t)3600000000000)

/* PRAGMA user_version this binary writes; files with a larger one are refused. */
#define SQS_SCHEMA_VERSION 8
/* PRAGMA application_id of a spanprof database ("SPRF"). */
#define SQS_APPLICATION_ID 0x53505246

#define SQS_DB_FILE   "spanprof.db"
#define SQS_LOCK_FILE "spanprof.lock"

enum { SQS_REQ_WRITE, SQS_REQ_RETENTION, SQS_REQ_STREAM };

/* One part of a stream (store_stream_part), in the caller's arena. */
typedef struct sqs_part {
    const sp_batch *batch;
    struct sqs_part *next;
} sqs_part;

/* A caller waiting for the writer; lives on the caller's stack, or in its arena for a stream. */
typedef struct sqs_req {
    int kind;
    const sp_batch *batch;
    int64_t now_ns;
    int rc;
    sp_err *err; /* the caller's; may be NULL */
    int done;
    pthread_cond_t cv;
    struct sqs_req *next;
    /* SQS_REQ_STREAM (S1-S5 in sqlite_write.c). Under the store's mutex: the parts (appended by
     * the caller), closed (no more parts), aborted (the caller gave up), queued (in the write
     * queue since its first part). The writer's own: the last part written in the transaction
     * being built (NULL: none yet) and whether the member is finished in it. */
    sqs_part *parts, *parts_tail;
    int closed, aborted, queued;
    sqs_part *written;
    int finished;
} sqs_req;

/* Writer statements, prepared once on the writer connection. */
enum {
    W_BEGIN,
    W_COMMIT,
    W_ROLLBACK,
    W_TENANT_FIND,
    W_TENANT_INS,
    W_SERIES_FIND,
    W_SERIES_INS,
    W_STRING_FIND,
    W_STRING_INS,
    W_MAPPING_FIND,
    W_MAPPING_INS,
    W_FUNC_FIND,
    W_FUNC_AT, /* between FIND and INS: bound with them */
    W_FUNC_SEEN,
    W_LOC_FIND,
    W_LOC_AT, /* between FIND and INS: bound with them */
    W_LOC_SEEN,
    W_STACK_FIND,
    W_STACK_AT, /* between FIND and INS: bound with them */
    W_STACK_SEEN,
    W_SAMPLE_CHUNK,
    W_SPAN_CHUNK,
    W_SPAN_UPSERT,
    W_SPAN_HOUR,
    W_RET_NEXT_SERIES,
    W_RET_SAMPLE_BOUND,
    W_RET_SAMPLE_DEL_LE,
    W_RET_SAMPLE_DEL_LT,
    W_RET_SPANSTK_BOUND,
    W_RET_SPANSTK_DEL_LE,
    W_RET_SPANSTK_DEL_LT,
    W_RET_SCHUNK_BOUND,
    W_RET_SCHUNK_DEL_LE,
    W_RET_SCHUNK_DEL_LT,
    W_RET_SPCHUNK_BOUND,
    W_RET_SPCHUNK_DEL_LE,
    W_RET_SPCHUNK_DEL_LT,
    W_RET_SPANHOUR_DEL,
    W_RET_SPAN_BOUND,
    W_RET_SPAN_DEL_LE,
    W_RET_SPAN_DEL_LT,
    W_RET_MAX_STACK,
    W_RET_DEL_STACK,
    W_RET_MAX_LOC,
    W_RET_DEL_LOC,
    W_RET_MAX_FUNC,
    W_RET_DEL_FUNC,
    W_STACK_KEY,
    W_LOC_KEY,
    W_FUNC_KEY,
    W_STACK_KEYS,
    W_LOC_KEYS,
    W_FUNC_KEYS,
    W_META_SET,
    W_META_GET,
    W_RET_DEL_STACK_KEY,
    W_RET_DEL_LOC_KEY,
    W_RET_DEL_FUNC_KEY,
    W_SERIES_PERIOD,
    W_SYMBOL_INS,
    W_XRES_FIND,
    W_XRES_INS,
    W_XRES_SEEN,
    W_XSEQ_MAX,
    W_XINS,
    W_RET_SPEXTRA_BOUND,
    W_RET_SPEXTRA_DEL_LE,
    W_RET_SPEXTRA_DEL_LT,
    W_RET_SPRES_DEL,
    W_COMPACT_READ,
    W_COMPACT_DEL,
    W_COMPACT_INS,
    W_NSTMT
};

/* Retention progress, advanced one small transaction at a time by the writer thread. */
typedef struct sqs_retention {
    sqs_req *req; /* the run in progress, NULL when idle */
    int phase;
    int64_t cut_ns, cut_bucket;
    int32_t cut_hour;
    int64_t cursor, series_cur, max_id;
    uint64_t deleted;
    int32_t last_gc_hour; /* dictionary sweeps run at most once per hour of cut */
    /* This transaction deleted location or function rows: its commit moves the store's
     * names_gen (sqlite_stacks.c, N3); names_odd: names_gen was made odd and not settled yet. */
    int names_stale, names_odd;
} sqs_retention;

/* The writer's cache of span resources (sqlite_extras.c, X4) and next seq per hour (X2). */
#define SQS_XRES_SLOTS 64
#define SQS_XSEQ_HOURS 4
struct sqs_xres {
    uint64_t hash; /* full 64-bit content hash */
    int64_t id;    /* 0 = empty slot */
    int32_t seen;
    size_t n;
    uint8_t *data; /* malloc'ed copy of the head */
};

/* The dictionaries whose lookups go through key tables filled in bulk (see sqlite_schema.c). */
enum { SQS_KEYS_STACK, SQS_KEYS_LOC, SQS_KEYS_FN, SQS_NKEYS };

/* A row of a dictionary with a key table, as its lookups take it: ?1 the hash, then
 *   stack:    ?2 locs (bytes[0]; never NULL)
 *   location: ?2 mapping, ?3 address, ?4 kind (ints), ?5 lines (bytes[0])
 *   function: ?2 name, ?3 system_name (bytes[0..1], text), ?4 file, ?5 start_line (ints)
 * A NULL bytes pointer binds SQL NULL; the bytes are the caller's (SQLITE_STATIC). New rows are
 * inserted by sqlite_newrows.c, which copies them. */
typedef struct sqs_row {
    int k;
    int64_t hash;
    const void *bytes[2];
    int nbytes[2];
    int64_t ints[3];
} sqs_row;

/* New rows of one dictionary waiting for their INSERT (sqlite_newrows.c, A1-A3): their bytes
 * copied into `bytes` (off, nbytes; nbytes -1: NULL). */
#define SQS_NEWROWS_LG 5 /* up to 32 rows a statement */
typedef struct sqs_newrow {
    int64_t id, hash, ints[3];
    size_t off[2];
    int nbytes[2];
    int32_t seen;
} sqs_newrow;
typedef struct sqs_newrows {
    int64_t next_id; /* 0: read max(id) first */
    int64_t first;   /* the id of rows[0] while n > 0 */
    sqs_newrow *rows;
    uint32_t n;
    size_t rows_cap;
    uint8_t *bytes;
    size_t nbytes, bytes_cap;
    sqlite3_stmt *ins[SQS_NEWROWS_LG + 1]; /* ins[lg]: 2^lg rows */
} sqs_newrows;

typedef struct sqs_writer {
    sqlite3 *db;
    sqlite3_stmt *st[W_NSTMT];
    store_dict tenants, series, strings, mappings, functions, locations, stacks;
    /* A location's print (sp_profile.location_prints) → its id: a location a request brings
     * again is found without keying its content. Not an index of anything (a miss keys the
     * content as before), so it may forget at will; cleared with the location cache and when
     * retention deletes locations (an id it holds could be gone or reused). */
    store_dict loc_prints;
    /* A stack's print (sp_profile.stack_prints) → its id, with the target hour its content was
     * last resolved at (sqs_resolve_stack()). A cache like loc_prints: it may forget, and it is
     * cleared with the others and whenever retention deletes dictionary rows. */
    store_dict stack_prints;
    store_sum3 samples; /* (series, bucket, stack) → value, this transaction */
    store_agg spanstk;  /* (hour, span key, series, stack) → value, this transaction */
    store_agg hours;    /* hours known to be in span_hour */
    /* Per-batch memo: a sample's location list (the converter shares one per stack) → stack id
     * (the sum; key: address, length), so a stack repeated in a batch is hashed and looked up
     * once. */
    store_sum3 stack_memo;
    /* The same memo indexed by sp_sample.stack when the batch's profiles come with stack prints
     * (their entries are dense): stack_idx[k] for entry k of stack_idx_of, 0 = not yet. Valid
     * while stack_memo is (stack_idx_of NULL: empty). */
    int64_t *stack_idx;
    size_t stack_idx_cap;
    const sp_print *stack_idx_of;
    /* Key tables: rows with an id above keyed[k] have no key row and are found through the
     * cache alone, which holds them all unless bit k of keys_dirty is set (the cache forgot
     * some: the writer keys them before its next lookup). */
    int64_t keyed[SQS_NKEYS];
    unsigned keys_dirty;
    /* Bit k: the cache of dictionary k holds every row of its table (loaded at start-up and
     * never cleared since), so a miss means a new row and no lookup is needed. */
    unsigned keys_complete;
    /* Hash indexes (I1-I4 in sqlite_dict.c). Bit k of index_complete: every row of table k
     * (SQS_KEYS_*) is in index[k], which then answers the lookups its cache misses (no key table
     * is read or written). index_skips counts the new rows no row was read for. */
    store_hindex index[SQS_NKEYS];
    unsigned index_complete;
    uint64_t index_skips;
    /* Rows retention deleted in the open transaction, forgotten by the indexes after its commit
     * (I3): index_gone[i] = {table k, hash, id}. */
    int64_t (*index_gone)[3];
    size_t nindex_gone, index_gone_cap;
    sqs_newrows newrows[SQS_NKEYS]; /* new rows not inserted yet (A1-A3, sqlite_newrows.c) */
    store_agg periods; /* series id → period last written (aux), this connection's view */
    store_chunk_coder coder;
    /* Closed buckets' chunks merged into one (sqlite_compact.c, M1-M4): (series, bucket, 1) →
     * chunks this writer wrote there, the newest bucket written, the closed buckets already
     * done; scratch for the entries kept; counters for the stats. */
    store_sum3 compact;
    store_chunk_merge merge; /* one bucket's chunks being merged */
    int64_t compact_newest, compact_done_upto;
    store_sum3_entry *compact_keep;
    size_t compact_keep_cap;
    store_chunk_decoder decoder;
    uint64_t chunks_merged, chunks_moved, compact_untracked, compact_failed;
    /* Per-profile memos: profile table index → database id (0 = not resolved yet). Profiles
     * of one batch that share their tables (the converter shares one request dictionary among
     * the profiles it splits by service) share the memos too: memo_* names those tables. */
    int64_t *fn_ids, *loc_ids, *map_ids, *str_ids;
    size_t fn_cap, loc_cap, map_cap, str_cap;
    const void *memo_locs, *memo_funcs, *memo_maps, *memo_strs;
    uint32_t memo_nlocs, memo_nfuncs, memo_nmaps, memo_nstrs;
    const sqs_req *memo_owner; /* the stream whose parts the memos hold (S5); NULL: one batch */
    /* The lowest target of the profiles since the memos were emptied: a row found through them
     * was refreshed for that one, perhaps not for a later profile's (sqs_resolve_stack()). */
    int32_t memo_target;
    uint8_t *buf; /* scratch for blobs and hash keys */
    size_t buf_cap;
    /* A stack's locations not resolved yet: their keys (kbuf), looked up after all their cache
     * slots were prefetched. */
    uint8_t *kbuf;
    size_t kbuf_cap;
    struct sqs_pending *pend;
    size_t pend_cap;
    struct sqs_kv *kvs; /* scratch for a series' labels */
    size_t kv_cap;
    store_agg_entry *sorted; /* scratch for flushing aggregates in key order */
    size_t sorted_cap;
    store_sum3_entry *sorted3; /* the same for the sample aggregate */
    size_t sorted3_cap;
    int32_t now_hour;
    /* The last bucket an observation fell in: [bucket_t0, bucket_t0 + SQS_BUCKET_NS) is bucket
     * bucket_n (zero-initialised: bucket 0, which starts at 0). */
    int64_t bucket_t0, bucket_n;
    sqs_retention ret;
    struct sqs_xres xres[SQS_XRES_SLOTS];
    struct {
        int64_t hour, next; /* next = 0: empty */
    } xseq[SQS_XSEQ_HOURS];
} sqs_writer;

/* Reader statements, prepared lazily per read connection. */
enum {
    R_BEGIN,
    R_COMMIT,
    R_TENANT,
    R_SERIES,
    R_SERIES_HAS,
    R_STACK_SUMS,
    R_BUCKET_SUMS,
    R_STACK,
    R_LOC,
    R_FUNC,
    R_STRING,
    R_MAPPING,
    R_SPANSTK,
    R_CHUNKS,
    R_SPANCHUNKS,
    R_TRACE,
    R_SPAN,
    R_FUNC_DETAIL,
    R_MAPPING_DETAIL,
    R_SYMBOL,
    R_SERVICES,
    R_STRING_ID,
    R_SERVICE_TRACES,
    R_SPAN_HOURS_DESC,
    R_FIND_SPANS,
    R_FIND_SPANS_BY_NAME,
    R_SPANSTK_ANY,
    R_SPANCHUNK_AT,
    R_SERIES_SPAN,
    R_SERIES_IMPACT,
    R_NSTMT
};

typedef struct sqs_reader {
    sqlite3 *db;
    sqlite3_stmt *st[R_NSTMT];
    struct sqs_reader *next;
    /* Under the store's `mu`: reading = inside a query; sym_seq = the store's sym_seq when the
     * query began (its snapshot holds every symbol commit up to that one, Y4). */
    int reading;
    uint64_t sym_seq;
} sqs_reader;

typedef struct sqs_store {
    store base;
    store_options opt; /* defaults resolved */
    char *dir, *db_path;
    int lock_fd;

    sqs_writer w;
    pthread_t writer_thread, retention_thread;
    int writer_started, retention_started;

    pthread_mutex_t mu;
    pthread_cond_t wake;          /* the writer waits here for work */
    sqs_req *head, *tail;         /* pending writes, FIFO */
    sqs_req *ret_head, *ret_tail; /* pending retention runs, FIFO */
    size_t npending;
    int writing; /* the writer is building a transaction (under mu): streams begin only when not */
    int house_due;    /* H1 (sqlite_write.c): keying ahead waits for a moment with nothing queued */
    int housekeeping; /* ... and is running now */
    int stopping;
    int closing; /* set (atomically) first thing in store_close(): cancels retention runs */
    store_stats stats;

    pthread_mutex_t ret_mu; /* the retention thread's sleep */
    pthread_cond_t ret_cv;
    int ret_stop;

    /* The checkpointer (sqlite_checkpoint.c): a connection and thread of its own copy the WAL
     * into the database, so no commit waits for a checkpoint. Under ckpt_mu. */
    sqlite3 *ckpt_db;
    pthread_t ckpt_thread;
    int ckpt_started;
    pthread_mutex_t ckpt_mu;
    pthread_cond_t ckpt_cv;
    int ckpt_due, ckpt_stop;
    uint64_t ckpt_runs, ckpt_inline, ckpt_failed; /* also under ckpt_mu */

    /* Names the symbolizer found during queries, waiting for the writer (sqlite_symbols.c):
     * queries add to sym_new; the writer takes it as sym_flushing, writes it in a transaction
     * of its own, numbers that commit (sym_seq) and keeps the generation in sym_retired until
     * no running query's snapshot predates the commit (Y4). Queries look in all of them.
     * Under `mu`. */
    struct sqs_sym_gen {
        store_agg map; /* (build id string id, address) → sum = (intptr_t) node */
        struct sqs_sym_node *head;
        size_t n;
        uint64_t seq;              /* retired: the commit that wrote it */
        struct sqs_sym_gen *older; /* retired: the next older generation */
    } sym_new, sym_flushing;
    struct sqs_sym_gen *sym_retired; /* newest first */
    uint64_t sym_seq;                /* symbol commits so far */
    sqs_reader **readers;            /* every open read connection (under pool_mu) */

    /* Location names kept across queries (sqlite_stacks.c, N1-N4). names_gen is odd while the
     * writer commits a deletion of location or function rows (its ids may then be reused) and
     * moves to the next even number once the commit is done; read and written with __atomic. */
    store_ncache *names;
    uint64_t names_gen;
    size_t nreaders_open;

    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv;
    sqs_reader *idle;
    uint32_t nreaders;
} sqs_store;

/* ---- sqlite_schema.c ---- */
/* Maps a SQLite result code to an SP_E* code and a message naming the database and the cause. */
int sqs_fail(sp_err *err, sqlite3 *db, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Opens the writer connection, applies pragmas and runs migrations (start-up errors explained). */
int sqs_open_writer(sqs_store *s, sp_err *err);
/* Opens one read connection. */
int sqs_open_reader(sqs_store *s, sqlite3 **out, sp_err *err);
/* A connection for the checkpointer: synchronous as the writer's, so a checkpoint syncs as the
 * writer's own would have. */
int sqs_open_checkpointer(sqs_store *s, sqlite3 **out, sp_err *err);

/* sqlite_checkpoint.c: starts the checkpointer and takes checkpoints off the writer's commits.
 * Failing to start leaves SQLite's own automatic checkpoint in place (logged, not fatal). */
void sqs_checkpointer_start(sqs_store *s);
/* Stops it (after the writer thread stopped); the caller's closing checkpoint follows. */
void sqs_checkpointer_stop(sqs_store *s);
/* Runs forward migrations from the file's user_version to SQS_SCHEMA_VERSION. */
int sqs_migrate(sqlite3 *db, const char *path, sp_err *err);

/* ---- sqlite_write.c ---- */
int sqs_writer_init(sqs_store *s, sp_err *err);
void sqs_writer_free(sqs_store *s);
void *sqs_writer_main(void *arg);
int sqs_write(store *st, const sp_batch *b, sp_err *err);
int sqs_stream_begin(store *st, sp_arena *a, void **impl, sp_err *err);
int sqs_stream_part(store *st, void *impl, const sp_batch *part, sp_err *err);
int sqs_stream_end(store *st, void *impl, int failed, sp_err *err);
int sqs_retention_run(store *st, int64_t now_ns, sp_err *err);

/* ---- sqlite_read.c ---- */
void sqs_reader_close(sqs_reader *r);
int sqs_profile_types(store *st, const store_query *q, sp_arena *a, store_strings *out,
                      sp_err *err);
int sqs_label_names(store *st, const store_query *q, sp_arena *a, store_strings *out, sp_err *err);
int sqs_label_values(store *st, const store_query *q, const char *name, sp_arena *a,
                     store_strings *out, sp_err *err);
int sqs_series(store *st, const store_query *q, const char *const *names, size_t nnames,
               sp_arena *a, store_labelsets *out, sp_err *err);
int sqs_select_stacks(store *st, const store_query *q, sp_arena *a, store_stacks *out, sp_err *err);
int sqs_select_series(store *st, const store_query *q, int64_t step_ns, const char *const *group_by,
                      size_t ngroup_by, sp_arena *a, store_timeseries_set *out, sp_err *err);
int sqs_span_stacks(store *st, const store_query *q, const uint8_t (*span_ids)[8], size_t n,
                    sp_arena *a, store_stacks *out, sp_err *err);
int sqs_span_totals(store *st, const store_query *q, const uint8_t (*span_ids)[8], size_t n,
                    store_span_total *out, sp_err *err);
int sqs_trace_spans(store *st, const char *tenant, const uint8_t trace_id[16], sp_arena *a,
                    store_spans *out, sp_err *err);
int sqs_span_get(store *st, const char *tenant, const uint8_t span_id[8], sp_arena *a, sp_span *out,
                 sp_err *err);
/* sqlite_traces.c */
int sqs_span_services(store *st, const store_query *q, sp_arena *a, store_strings *out,
                      sp_err *err);
int sqs_service_traces(store *st, const store_query *q, const char *service, size_t limit,
                       sp_arena *a, store_trace_ids *out, sp_err *err);
int sqs_find_spans(store *st, const store_query *q, const store_span_filter *f, sp_arena *a,
                   store_spans *out, sp_err *err);
/* sqlite_stats.c */
int sqs_profile_stats(store *st, const char *tenant, store_profile_stats *out, sp_err *err);
int sqs_query_impact(store *st, const store_query *q, store_query_impact *out, sp_err *err);

/* ---- sqlite.c ---- */
int sqs_reader_acquire(sqs_store *s, sqs_reader **out, sp_err *err);
void sqs_reader_release(sqs_store *s, sqs_reader *r);

/* ---- shared helpers ---- */
static inline const char *sqs_tenant_name(const char *t)
{
    return t && *t ? t : "anonymous";
}

/* Span ids are stored as the signed 64-bit integer of their 8 bytes read big-endian. */
static inline int64_t sqs_span_key(const uint8_t id[8])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | id[i];
    return (int64_t)v;
}

static inline void sqs_span_bytes(int64_t key, uint8_t id[8])
{
    uint64_t v = (uint64_t)key;
    for (int i = 7; i >= 0; i--) {
        id[i] = (uint8_t)v;
        v >>= 8;
    }
}

/* floor(t / w) for any sign. */
static inline int64_t sqs_floor_div(int64_t t, int64_t w)
{
    int64_t q = t / w;
    return (t % w != 0 && ((t < 0) != (w < 0))) ? q - 1 : q;
}

/* The bucket of time t > 0 on the writer: a division only when t leaves the last one (a
 * request's observations fall in a few buckets; dividing each was 1 % of the server at full
 * ingest). */
static inline int64_t sqs_bucket_of(sqs_writer *w, int64_t t)
{
    if ((uint64_t)(t - w->bucket_t0) >= (uint64_t)SQS_BUCKET_NS) { /* both >= 0: no overflow */
        w->bucket_n = sqs_floor_div(t, SQS_BUCKET_NS);
        w->bucket_t0 = w->bucket_n * SQS_BUCKET_NS;
    }
    return w->bucket_n;
}

/* sqlite_write.c helpers shared with sqlite_retention.c (writer thread only). */
int sqs_run(sqs_writer *w, int which, sp_err *err);
int sqs_find(sqs_writer *w, int which, int64_t *id, int32_t *seen, sp_err *err);
void sqs_rollback(sqs_writer *w);
/* Adds the missing key rows of dictionary k (rows above the watermark), inside the caller's
 * transaction, and raises the watermark. */
int sqs_keys_flush(sqs_writer *w, int k, sp_err *err);

/* sqlite_extras.c: span extras as a shared head (span_resource) and a per-span part
 * (span_extra). split: 1 and the parts when the blob has the shape otlp_span_extras() writes
 * (X1), else 0. head: the head's bytes (to out when not NULL), its length returned. join: the
 * blob of a head and a span part, in a. write: stores a blob for a span of hour, *seq its row. */
typedef struct sqs_extras_parts {
    const uint8_t *res, *scope, *span; /* field payloads; NULL = absent */
    size_t nres, nscope, nspan;
} sqs_extras_parts;
int sqs_extras_split(const uint8_t *b, size_t n, sqs_extras_parts *out);
size_t sqs_extras_head(const sqs_extras_parts *p, uint8_t *out);
uint8_t *sqs_extras_join(const uint8_t *head, size_t nhead, const uint8_t *span, size_t nspan,
                         sp_arena *a, size_t *len);
int sqs_write_extras(sqs_writer *w, int64_t hour, const uint8_t *blob, size_t n, int64_t *seq,
                     sp_err *err);
void sqs_extras_cache_clear(sqs_writer *w);

/* sqlite_compact.c: closed buckets' chunks merged into one, on the writer thread inside a
 * transaction (the callers' or its own, H1 in sqlite_write.c; invariants M1-M6 there).
 * sqs_compact_note records a chunk about to be written (1: remembered, M2); sqs_compact_due says
 * whether a bucket is due to close; sqs_compact merges what closed: 0, SP_EUNAVAIL (SQLite failed;
 * roll back) or SP_ENOMEM. */
#define SQS_COMPACT_LAG     3         /* buckets: closed once one 3 buckets later is written */
#define SQS_COMPACT_BATCH   1024      /* buckets merged per transaction at most */
#define SQS_COMPACT_MAX     (1 << 20) /* (series, bucket) pairs remembered at most */
#define SQS_CHUNK_MERGED_ID ((int64_t)1 << 62) /* sample_chunk ids from here: closed buckets */
int sqs_compact_note(sqs_writer *w, int64_t series, int64_t bucket);
/* M7: the writer stopping closes what it remembers, for at most SQS_COMPACT_STOP_NS. */
#define SQS_COMPACT_STOP_NS (2 * 1000000000LL)
void sqs_compact_all(sqs_writer *w);
int sqs_compact_due(const sqs_writer *w, int64_t now_ns);
int sqs_compact(sqs_writer *w, int64_t now_ns, sp_err *err);

/* sqlite_dict.c: the dictionaries, on the writer thread inside its transaction. Each returns 0,
 * SP_EUNAVAIL (SQLite failed; roll back) or SP_ENOMEM. */
typedef struct sqs_kv {
    const char *name, *value;
    size_t nlen, vlen;
    uint32_t ord;
} sqs_kv;
extern const char *const sqs_wwhat[]; /* what each W_* statement does, for error messages */
int sqs_load_watermarks(sqs_writer *w, sp_err *err);
void sqs_load_dictionaries(sqs_writer *w);
/* I3 of sqlite_dict.c: never fails (an index not built is not used). */
void sqs_index_build(sqs_writer *w);
int sqs_index_complete(const sqs_writer *w, int k);
/* I3: a row of table k that retention deleted in the open transaction; the indexes forget the
 * rows noted once it commits (sqs_index_commit_deletes), not if it rolls back. */
void sqs_index_note_delete(sqs_writer *w, int k, int64_t hash, int64_t id);
void sqs_index_commit_deletes(sqs_writer *w);
int sqs_keys_ahead(sqs_writer *w, int k, const store_dict *d, sp_err *err);
int sqs_grow(void **p, size_t *cap, size_t need, size_t elem);
int sqs_oom(sp_err *err);
const char *sqs_pstr(const sp_profile *p, uint32_t idx, size_t *len);
int sqs_resolve_tenant(sqs_writer *w, const char *name, int64_t *out, sp_err *err);
int sqs_resolve_string(sqs_writer *w, const char *s, size_t n, int64_t *out, sp_err *err);
int sqs_stack_idx_ready(sqs_writer *w, const sp_profile *p);
int sqs_resolve_stack(sqs_writer *w, const sp_profile *p, const sp_sample *s, int32_t target,
                      int64_t *out, sp_err *err);
/* Starts loading what the writer reads first for s's stack (a hint): its memo's slot (by list
 * address, or by print index when by_index), or its print's cache slot when the memo by index
 * lacks it. */
void sqs_stack_prefetch(const sqs_writer *w, const sp_profile *p, const sp_sample *s, int by_index);
int sqs_is_link_label(const char *n, size_t len);
int sqs_resolve_series(sqs_writer *w, int64_t tenant, const sp_profile *p, const sp_sample *s,
                       int64_t *out, sp_err *err);
int32_t sqs_hour_of(int64_t t);

/* sqlite_newrows.c: new dictionary rows inserted many to a statement (A1-A3 there), writer
 * thread. add gives row r its id (*id) and keeps it (r's bytes copied), inserting the waiting
 * rows once 2^SQS_NEWROWS_LG are; flush inserts the rows of table k waiting (k < 0: all);
 * waits: whether row id of table k is still waiting; drop forgets them (a rollback); free. add
 * and flush return 0, SP_EUNAVAIL (SQLite failed; roll back) or SP_ENOMEM. */
int sqs_newrow_add(sqs_writer *w, const sqs_row *r, int32_t seen, int64_t *id, sp_err *err);
int sqs_newrows_flush(sqs_writer *w, int k, sp_err *err);
int sqs_newrow_waits(const sqs_writer *w, int k, int64_t id);
void sqs_newrows_drop(sqs_writer *w);
void sqs_newrows_free(sqs_writer *w);

/* sqlite_symbols.c: the names of native frames (see store_symbolizer). */
struct rq;
/* What is known for (build id, address): from the symbol table, the pending names, or the
 * symbolizer (never waiting; the query's deadline is set at its first call). *status =
 * STORE_SYM_*; frames in the query's arena. SP_ETOOBIG/SP_EUNAVAIL as reads. */
int sqs_symbolize(struct rq *q, int64_t build_id_sid, const char *build_id, uint64_t address,
                  store_sym_frame **frames, size_t *n, int *status);
/* Writer thread: writes the taken names in a transaction of their own (a failure only loses
 * cache rows: the next query asks again). */
void sqs_symbols_write(sqs_store *s);
void sqs_sym_gen_free(struct sqs_sym_gen *g);
/* Writer, under mu, after a flush: numbers it, retires sym_flushing, frees what no query needs
 * any more (Y4). */
void sqs_symbols_retire(sqs_store *s);
/* rq_begin/rq_end: a query's reader starts or stops reading (Y4). */
void sqs_symbols_reader(sqs_store *s, sqs_reader *r, int reading);

/* sqlite_retention.c: one run, started by a caller's request, advanced one small transaction at
 * a time; sqs_retention_step() returns 1 when the run is complete, 0 when more is left, <0 on
 * error (the transaction is rolled back). */
void sqs_retention_start(sqs_store *s, sqs_req *req);
int sqs_retention_step(sqs_store *s, sp_err *err);

#endif
