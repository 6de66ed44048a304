/* The SQLite schema, its migrations and connection set-up.
 *
 * Schema (version 7; version 1 below, then what 2, 3, 4, 5, 6 and 7 change). One file,
 * <data_dir>/spanprof.db, in WAL mode; PRAGMA application_id = 0x53505246 ("SPRF") marks it as
 * spanprof's, PRAGMA user_version is the schema version.
 *
 *   meta(key TEXT PRIMARY KEY, value)            schema facts: bucket_ns = 10 s
 *   tenant(id INTEGER PRIMARY KEY, name UNIQUE)  X-Scope-OrgID values ("anonymous" by default)
 *   series(id INTEGER PRIMARY KEY, tenant, hash, type, labels)
 *        One per (tenant, profile type id, label set). labels = the sorted labels as a blob
 *        "name\0value\0name\0value\0"; hash = 31 bits of the content hash, indexed with tenant.
 *   string(id INTEGER PRIMARY KEY, s UNIQUE)     interned text: file names, build ids, frame
 *        types, span service and span names
 *   mapping(id INTEGER PRIMARY KEY, file, build_id)            (string ids; 0 = none)
 *   function(id INTEGER PRIMARY KEY, hash, seen, name, system_name, file, start_line)
 *        system_name NULL when equal to name; file = string id
 *   location(id INTEGER PRIMARY KEY, hash, seen, mapping, address, kind, lines)
 *        kind = string id of the frame type (native, kernel, jvm, ...); lines = varints
 *        (function id, zigzag line) per line, innermost inlined frame first, as in pprof
 *   stack(id INTEGER PRIMARY KEY, hash, seen, locs)
 *        locs = the location ids as varints, leaf first. A stack is stored once, whatever
 *        series, bucket or span uses it.
 *   sample(series, bucket, stack, value) PRIMARY KEY (series, bucket, stack) WITHOUT ROWID
 *        The profile data: the sum of the values of one stack in one series over one 10 s
 *        bucket (bucket = unix ns / 10^10). Range queries read one key range per series.
 *   span(hour, tenant, span_id, trace_id, parent_id, service, name, start_ns, duration_ns,
 *        pid, tid) PRIMARY KEY (hour, tenant, span_id) WITHOUT ROWID; indexed by
 *        (tenant, trace_id). The span index. hour = the hour of start_ns: retention deletes
 *        whole hours from the front of the key; a lookup by span id seeks each hour of
 *        span_hour. span_id/parent_id = the 8 id bytes as a big-endian signed integer (parent 0
 *        = root), trace_id = 16-byte blob, service/name = string ids.
 *   span_stack(hour, span_id, series, stack, value)
 *        PRIMARY KEY (hour, span_id, series, stack) WITHOUT ROWID. What the correlator attached
 *        to a span, summed per stack and per hour of the samples' time (hour = unix ns /
 *        3.6e12). A span's flame graph seeks (hour, span_id) for each hour that has data (or
 *        each hour of the query's time range): it reads only the rows of that span. Retention
 *        deletes whole hours from the front of the key, so no index is needed.
 *   span_hour(hour INTEGER PRIMARY KEY)          the hours span_stack or span have rows for
 *
 * Version 2 adds where values are written since (sample and span_stack keep version 1 rows,
 * which reads still include and retention still ages out):
 *   sample_chunk(series, bucket, seq, total, data) PRIMARY KEY (series, bucket, seq) WITHOUT ROWID
 *        What one transaction added to one series' bucket: data = the (stack, value) list coded
 *        by store_chunk_encode() (sorted by stack, delta and gcd coded, zstd when it pays;
 *        values as varints or, since version 7, as bit lengths and packed bits: maps.h);
 *        total = the sum of its values, so time series never decode. seq = 1, 2, ... per
 *        (series, bucket). Range queries read one key range per series, as before.
 *   span_chunk(hour, span_id, seq, data) PRIMARY KEY (hour, span_id, seq) WITHOUT ROWID
 *        What one transaction attached to one span in one hour: the (series, stack, value)
 *        list, coded the same way. Read and aged out exactly like span_stack.
 *
 * Version 3 replaces the hash indexes of stack and location and adds the period of a series:
 *   stack_key(hash, id), location_key(hash, id) PRIMARY KEY (hash, id) WITHOUT ROWID
 *        The lookup of a stack or location by content hash. Rows with an id above the
 *        watermark in meta ('stack_keyed', 'location_keyed') have no key row yet: the writer
 *        keeps every such row in its in-memory cache (the cache is the index for them) and adds
 *        their key rows in sorted inserts: a slice per transaction once the cache is half full,
 *        the rest when the cache is about to forget them (full, cleared by a rollback or
 *        retention) and at start-up (unless the whole table was loaded into the cache). A row given
 * an id at or below the watermark (ids of deleted rows reused) gets its key row at once. New rows
 * thus append to their table instead of dirtying random index pages in every transaction. While
 * the writer's in-memory hash index holds every row of a table (I1-I4 of sqlite_dict.c) nothing
 * is keyed: the watermark stays, and the rows above it are found through that index.
 *   series.period   the sampling period of the last profile written to the series (in the
 *        period type's unit, e.g. nanoseconds of CPU between samples); 0 = unknown.
 *
 * Version 4 adds the names the symbolizer found for native frames:
 *   symbol(build_id, address, frames) PRIMARY KEY (build_id, address) WITHOUT ROWID
 *        build_id = string id of the mapping's build id, address = the location's address (ELF
 *        virtual address, as a signed integer); frames = store_symbols_encode()'s blob: the
 *        inlined chain, innermost first; no frames = the debug file names nothing there. Only
 *        final answers are kept (a frame not resolved yet has no row). Written by the writer
 *        thread from what queries found (sqlite_symbols.c); kept as long as strings are.
 *
 * Version 5 indexes spans by name: span_by_name(tenant, name, start_ns).
 *
 * Version 6 keeps what a span said besides its row (its attributes, kind, status, events, links,
 * and its resource's and scope's attributes: the extras blob of otlp/span_extras.h), in two
 * parts (sqlite_extras.c, invariants X1-X5):
 *   span_resource(id INTEGER PRIMARY KEY, hash, seen, data)  indexed by hash
 *        The resource and scope fields of blobs, once per distinct content; hash = 63 bits of
 *        the content hash (lookups compare the content); seen = the latest hour of a span that
 *        uses it. Retention deletes rows with seen before the cut hour, after those hours'
 *        span_extra rows.
 *   span_extra(hour, seq, resource, data) PRIMARY KEY (hour, seq) WITHOUT ROWID
 *        The span's own part of its blob (or the whole blob when resource = 0), appended in
 *        arrival order within the span's hour; aged out by whole hours like span.
 *   span.extra INTEGER   seq of the span's span_extra row in its hour; NULL = no extras (rows
 *        written before version 6, or nothing kept).
 *
 * Version 7 stores sample_chunk as a rowid table (same columns, same meaning):
 *   sample_chunk(id INTEGER PRIMARY KEY, series, bucket, seq, total, data)
 *        indexed by sample_chunk_by_series(series, bucket, seq, total), which answers every
 *        lookup by (series, bucket) and every sum of totals without reading the table; the rows
 *        append in the order they are written, so their pages fill (as a WITHOUT ROWID table,
 *        its blobs wasted more than half of its pages: overflow pages, whole rows in interior
 *        pages, leaves split at every series' insertion point). (series, bucket, seq) stays
 *        unique because the writer gives seq = max + 1; the index does not enforce it.
 *
 * Version 8 looks functions up like stacks and locations (version 3):
 *   function_key(hash, id) PRIMARY KEY (hash, id) WITHOUT ROWID, watermark 'function_keyed'
 *        replaces the index function_by_hash, which took one random page per new function in
 *        every transaction: with a few hundred new native functions per eBPF request, a
 *        fifth of all the pages the writer wrote (bench/RESULTS.md, "Functions keyed in bulk").
 *
 * Dictionary rows (function, location, stack) carry `seen`, the hour (unix ns / 3.6e12) they
 * were last used, refreshed at most once an hour; retention deletes those unused for longer
 * than the retention (with a margin), so the file does not grow without bound when code
 * changes. hash columns are 31-bit content hashes: lookups compare the full content as well,
 * so a collision costs a second row read, never a wrong id. mapping, string, tenant and series
 * rows are few and kept.
 */
#include "sqlite_store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Forward migrations: steps[v - 1] takes a file from version v - 1 to v. Never edit a shipped
 * step; append a new one and raise SQS_SCHEMA_VERSION. */
static const char *const steps[] = {
    /* 0 → 1: the base schema. */
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;"
    "INSERT INTO meta VALUES('bucket_ns', 10000000000);"
    "CREATE TABLE tenant(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);"
    "CREATE TABLE series(id INTEGER PRIMARY KEY, tenant INTEGER NOT NULL, hash INTEGER NOT NULL,"
    "  type TEXT NOT NULL, labels BLOB NOT NULL);"
    "CREATE INDEX series_by_hash ON series(tenant, hash);"
    "CREATE TABLE string(id INTEGER PRIMARY KEY, s TEXT NOT NULL UNIQUE);"
    "CREATE TABLE mapping(id INTEGER PRIMARY KEY, file INTEGER NOT NULL,"
    "  build_id INTEGER NOT NULL, UNIQUE(file, build_id));"
    "CREATE TABLE function(id INTEGER PRIMARY KEY, hash INTEGER NOT NULL, seen INTEGER NOT NULL,"
    "  name TEXT, system_name TEXT, file INTEGER NOT NULL, start_line INTEGER NOT NULL);"
    "CREATE INDEX function_by_hash ON function(hash);"
    "CREATE TABLE location(id INTEGER PRIMARY KEY, hash INTEGER NOT NULL, seen INTEGER NOT NULL,"
    "  mapping INTEGER NOT NULL, address INTEGER NOT NULL, kind INTEGER NOT NULL, lines BLOB);"
    "CREATE INDEX location_by_hash ON location(hash);"
    "CREATE TABLE stack(id INTEGER PRIMARY KEY, hash INTEGER NOT NULL, seen INTEGER NOT NULL,"
    "  locs BLOB NOT NULL);"
    "CREATE INDEX stack_by_hash ON stack(hash);"
    "CREATE TABLE sample(series INTEGER NOT NULL, bucket INTEGER NOT NULL,"
    "  stack INTEGER NOT NULL, value INTEGER NOT NULL,"
    "  PRIMARY KEY(series, bucket, stack)) WITHOUT ROWID;"
    "CREATE TABLE span(hour INTEGER NOT NULL, tenant INTEGER NOT NULL, span_id INTEGER NOT NULL,"
    "  trace_id BLOB NOT NULL, parent_id INTEGER NOT NULL, service INTEGER NOT NULL,"
    "  name INTEGER NOT NULL, start_ns INTEGER NOT NULL, duration_ns INTEGER NOT NULL,"
    "  pid INTEGER NOT NULL, tid INTEGER NOT NULL,"
    "  PRIMARY KEY(hour, tenant, span_id)) WITHOUT ROWID;"
    "CREATE INDEX span_by_trace ON span(tenant, trace_id);"
    "CREATE TABLE span_stack(hour INTEGER NOT NULL, span_id INTEGER NOT NULL,"
    "  series INTEGER NOT NULL, stack INTEGER NOT NULL, value INTEGER NOT NULL,"
    "  PRIMARY KEY(hour, span_id, series, stack)) WITHOUT ROWID;"
    "CREATE TABLE span_hour(hour INTEGER PRIMARY KEY);",
    /* 1 → 2: values in coded chunks, one row per (series, bucket) or (hour, span) and
     * transaction instead of one per stack. Version 1 rows stay where they are and are read (and
     * aged out) beside the chunks. */
    "CREATE TABLE sample_chunk(series INTEGER NOT NULL, bucket INTEGER NOT NULL,"
    "  seq INTEGER NOT NULL, total INTEGER NOT NULL, data BLOB NOT NULL,"
    "  PRIMARY KEY(series, bucket, seq)) WITHOUT ROWID;"
    "CREATE TABLE span_chunk(hour INTEGER NOT NULL, span_id INTEGER NOT NULL,"
    "  seq INTEGER NOT NULL, data BLOB NOT NULL,"
    "  PRIMARY KEY(hour, span_id, seq)) WITHOUT ROWID;"
    "INSERT INTO meta VALUES('chunk_format', 1);",
    /* 2 → 3: stack and location lookups through key tables the writer fills in bulk (an index
     * maintained on every insert rewrote its random pages in every transaction), and the
     * sampling period of each series. */
    "DROP INDEX stack_by_hash; DROP INDEX location_by_hash;"
    "CREATE TABLE stack_key(hash INTEGER NOT NULL, id INTEGER NOT NULL,"
    "  PRIMARY KEY(hash, id)) WITHOUT ROWID;"
    "CREATE TABLE location_key(hash INTEGER NOT NULL, id INTEGER NOT NULL,"
    "  PRIMARY KEY(hash, id)) WITHOUT ROWID;"
    "INSERT INTO stack_key SELECT hash, id FROM stack ORDER BY hash, id;"
    "INSERT INTO location_key SELECT hash, id FROM location ORDER BY hash, id;"
    "INSERT INTO meta VALUES('stack_keyed', (SELECT coalesce(max(id), 0) FROM stack));"
    "INSERT INTO meta VALUES('location_keyed', (SELECT coalesce(max(id), 0) FROM location));"
    "ALTER TABLE series ADD COLUMN period INTEGER NOT NULL DEFAULT 0;",
    /* 3 → 4: what the symbolizer found for native frames, so it is asked once per address. */
    "CREATE TABLE symbol(build_id INTEGER NOT NULL, address INTEGER NOT NULL,"
    "  frames BLOB NOT NULL, PRIMARY KEY(build_id, address)) WITHOUT ROWID;",
    /* 4 → 5: spans by name, so a span_name query (every span of a name in a range) seeks instead
     * of scanning the range's spans. The index covers every column such a query reads (the
     * table's key columns come with it), so it never seeks into the table: with the key's random
     * span ids those seeks were one random page each. One index entry per span written. */
    "CREATE INDEX span_by_name ON span(tenant, name, start_ns, duration_ns, service, parent_id, "
    "pid, tid, trace_id);",
    /* 5 → 6: the span's attributes and the rest of what its sender said: the resource and
     * scope part once per distinct content, the span's own part appended per hour, the span row
     * naming it by seq. */
    "CREATE TABLE span_resource(id INTEGER PRIMARY KEY, hash INTEGER NOT NULL,"
    "  seen INTEGER NOT NULL, data BLOB NOT NULL);"
    "CREATE INDEX span_resource_by_hash ON span_resource(hash);"
    "CREATE TABLE span_extra(hour INTEGER NOT NULL, seq INTEGER NOT NULL,"
    "  resource INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY(hour, seq)) WITHOUT ROWID;"
    "ALTER TABLE span ADD COLUMN extra INTEGER;",
    /* 6 → 7: sample_chunk becomes a rowid table with a covering index on its old key. As a
     * WITHOUT ROWID table its rows (a blob of hundreds of bytes to a few KiB) were B-tree keys:
     * a row over ~1 KB spilled to an overflow page that stayed mostly empty, interior pages held
     * whole rows as dividers, and each transaction inserted into as many leaves as it had
     * series, leaving them part full. Rows now append in time order to full pages and only the
     * small (series, bucket, seq, total) entries are kept in key order. The copy is in the order
     * the writer appends (one pass over the file; a large file takes a while once). */
    "CREATE TABLE sample_chunk7(id INTEGER PRIMARY KEY, series INTEGER NOT NULL,"
    "  bucket INTEGER NOT NULL, seq INTEGER NOT NULL, total INTEGER NOT NULL,"
    "  data BLOB NOT NULL);"
    "INSERT INTO sample_chunk7(series, bucket, seq, total, data)"
    "  SELECT series, bucket, seq, total, data FROM sample_chunk ORDER BY bucket, series, seq;"
    "DROP TABLE sample_chunk;"
    "ALTER TABLE sample_chunk7 RENAME TO sample_chunk;"
    "CREATE INDEX sample_chunk_by_series ON sample_chunk(series, bucket, seq, total);",
    /* 7 → 8: function lookups through a key table filled in bulk, as stacks and locations
     * since version 3. */
    "DROP INDEX function_by_hash;"
    "CREATE TABLE function_key(hash INTEGER NOT NULL, id INTEGER NOT NULL,"
    "  PRIMARY KEY(hash, id)) WITHOUT ROWID;"
    "INSERT INTO function_key SELECT hash, id FROM function ORDER BY hash, id;"
    "INSERT INTO meta VALUES('function_keyed', (SELECT coalesce(max(id), 0) FROM function));",
};

_Static_assert(sizeof steps / sizeof steps[0] == SQS_SCHEMA_VERSION,
               "one migration step per schema version");

int sqs_fail(sp_err *err, sqlite3 *db, int rc, const char *fmt, ...)
{
    char ctx[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    int prim = rc & 0xff;
    const char *msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    int code;
    const char *hint = "";
    switch (prim) {
    case SQLITE_FULL:
        code = SP_EUNAVAIL;
        hint = " (the disk is full or the database reached its size cap: free space or raise "
               "the cap; retention frees space for new data)";
        break;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        code = SP_EUNAVAIL;
        hint = " (another process holds a lock on the database)";
        break;
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_IOERR:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_PROTOCOL:
    case SQLITE_AUTH:
        code = SP_EUNAVAIL;
        break;
    case SQLITE_NOMEM:
        code = SP_ENOMEM;
        break;
    default:
        code = SP_EINTERNAL;
        break;
    }
    return sp_fail(err, code, "%s: %s%s", ctx, msg, hint);
}

static int exec(sqlite3 *db, const char *sql, sp_err *err, const char *what)
{
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : sqs_fail(err, db, rc, "%s", what);
}

/* Runs a pragma that answers one integer. */
static int pragma_int(sqlite3 *db, const char *sql, int64_t *out, sp_err *err, const char *path)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *out = sqlite3_column_int64(st, 0);
            rc = SQLITE_OK;
        } else if (rc == SQLITE_DONE) {
            *out = 0;
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_OK)
        return 0;
    if ((rc & 0xff) == SQLITE_NOTADB)
        return sp_fail(err, SP_EUNAVAIL,
                       "%s is not a SQLite database (is --data-dir pointing at the right "
                       "directory?)",
                       path);
    if ((rc & 0xff) == SQLITE_CORRUPT)
        return sp_fail(err, SP_EUNAVAIL,
                       "%s is corrupt: %s; restore it from a backup or move it "
                       "aside to start empty",
                       path, sqlite3_errmsg(db));
    return sqs_fail(err, db, rc, "reading %s", path);
}

int sqs_migrate(sqlite3 *db, const char *path, sp_err *err)
{
    int64_t version = 0, app = 0, tables = 0;
    int rc;
    if ((rc = pragma_int(db, "PRAGMA application_id", &app, err, path)) ||
        (rc = pragma_int(db, "PRAGMA user_version", &version, err, path)) ||
        (rc = pragma_int(db, "SELECT count(*) FROM sqlite_master", &tables, err, path)))
        return rc;
    if (app != 0 && app != SQS_APPLICATION_ID)
        return sp_fail(err, SP_EUNAVAIL,
                       "%s is not a spanprof database (application_id 0x%08" PRIx64
                       "); point --data-dir at another directory",
                       path, (uint64_t)app);
    if (app == 0 && tables > 0 && version == 0)
        return sp_fail(err, SP_EUNAVAIL,
                       "%s is a SQLite database of another program (it has tables but no spanprof "
                       "mark); point --data-dir at another directory",
                       path);
    if (version > SQS_SCHEMA_VERSION)
        return sp_fail(err, SP_EUNAVAIL,
                       "database schema version %" PRId64 " is newer than this spanprof (%d); "
                       "upgrade spanprof (file %s)",
                       version, SQS_SCHEMA_VERSION, path);

    /* Take the write lock even when nothing needs migrating: a database another process keeps
     * locked is reported now, at start-up, rather than at the first Export. */
    rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
            return sp_fail(err, SP_EUNAVAIL,
                           "database %s is locked by another process; stop it (another spanprof, "
                           "a sqlite3 shell, a backup tool) or use another --data-dir",
                           path);
        return sqs_fail(err, db, rc, "locking %s", path);
    }
    /* Re-read under the lock: another process may have migrated in between. */
    if ((rc = pragma_int(db, "PRAGMA user_version", &version, err, path)))
        goto rollback;
    if (version > SQS_SCHEMA_VERSION) {
        rc = sp_fail(err, SP_EUNAVAIL,
                     "database schema version %" PRId64 " is newer than this spanprof (%d); "
                     "upgrade spanprof (file %s)",
                     version, SQS_SCHEMA_VERSION, path);
        goto rollback;
    }
    for (int64_t v = version; v < SQS_SCHEMA_VERSION; v++) {
        char what[96];
        snprintf(what, sizeof what, "migrating schema %" PRId64 " → %" PRId64, v, v + 1);
        if ((rc = exec(db, steps[v], err, what)))
            goto rollback;
    }
    if (version < SQS_SCHEMA_VERSION) {
        char sql[96];
        snprintf(sql, sizeof sql, "PRAGMA user_version=%d; PRAGMA application_id=%d",
                 SQS_SCHEMA_VERSION, SQS_APPLICATION_ID);
        if ((rc = exec(db, sql, err, "recording the schema version")))
            goto rollback;
    }
    rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        rc = sqs_fail(err, db, rc, "committing the schema of %s", path);
        goto rollback;
    }
    return 0;
rollback:
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static int open_conn(sqs_store *s, sqlite3 **out, sp_err *err)
{
    *out = NULL;
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(
        s->db_path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        if (!db)
            return sp_fail(err, SP_ENOMEM, "opening %s: out of memory", s->db_path);
        if ((rc & 0xff) == SQLITE_CANTOPEN || (rc & 0xff) == SQLITE_READONLY ||
            (rc & 0xff) == SQLITE_PERM)
            rc = sp_fail(err, SP_EUNAVAIL,
                         "cannot open %s for writing: %s (%s); make the data directory and the "
                         "file writable by spanprof",
                         s->db_path, sqlite3_errmsg(db), strerror(sqlite3_system_errno(db)));
        else
            rc = sqs_fail(err, db, rc, "opening %s", s->db_path);
        sqlite3_close(db);
        return rc;
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, (int)s->opt.busy_timeout_ms);
    *out = db;
    return 0;
}

int sqs_open_writer(sqs_store *s, sp_err *err)
{
    sqlite3 *db;
    int rc = open_conn(s, &db, err);
    if (rc)
        return rc;
    int64_t dummy;
    /* Reading the header first tells "not a database" apart from everything else. */
    if ((rc = pragma_int(db, "PRAGMA user_version", &dummy, err, s->db_path)))
        goto fail;
    char sql[256];
    int64_t mode_ok = 0;
    {
        sqlite3_stmt *st = NULL;
        int src = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
        if (src == SQLITE_OK && (src = sqlite3_step(st)) == SQLITE_ROW) {
            const unsigned char *m = sqlite3_column_text(st, 0);
            mode_ok = m && strcmp((const char *)m, "wal") == 0;
            src = SQLITE_OK;
        }
        sqlite3_finalize(st);
        if (src != SQLITE_OK) {
            if ((src & 0xff) == SQLITE_BUSY || (src & 0xff) == SQLITE_LOCKED)
                rc = sp_fail(err, SP_EUNAVAIL,
                             "database %s is locked by another process; stop it (another "
                             "spanprof, a sqlite3 shell, a backup tool) or use another "
                             "--data-dir",
                             s->db_path);
            else
                rc = sqs_fail(err, db, src, "switching %s to WAL mode", s->db_path);
            goto fail;
        }
        if (!mode_ok) {
            rc = sp_fail(err, SP_EUNAVAIL,
                         "%s cannot use WAL mode (is the data directory on a network file "
                         "system?); use a local directory",
                         s->db_path);
            goto fail;
        }
    }
    snprintf(sql, sizeof sql,
             "PRAGMA synchronous=%s; PRAGMA temp_store=MEMORY; PRAGMA cache_size=-%zu;"
             "PRAGMA journal_size_limit=67108864; PRAGMA wal_autocheckpoint=0;",
             s->opt.durability == STORE_DURABILITY_FULL ? "FULL" : "NORMAL",
             s->opt.page_cache_bytes / 1024);
    if ((rc = exec(db, sql, err, "configuring the writer connection")))
        goto fail;
    if ((rc = sqs_migrate(db, s->db_path, err)))
        goto fail;
    if (s->opt.max_db_bytes) {
        int64_t page = 4096;
        if ((rc = pragma_int(db, "PRAGMA page_size", &page, err, s->db_path)))
            goto fail;
        uint64_t pages = s->opt.max_db_bytes / (uint64_t)(page > 0 ? page : 4096);
        snprintf(sql, sizeof sql, "PRAGMA max_page_count=%" PRIu64, pages ? pages : 1);
        if ((rc = exec(db, sql, err, "setting the database size cap")))
            goto fail;
    }
    s->w.db = db;
    return 0;
fail:
    sqlite3_close(db);
    return rc;
}

int sqs_open_checkpointer(sqs_store *s, sqlite3 **out, sp_err *err)
{
    sqlite3 *db;
    int rc = open_conn(s, &db, err);
    if (rc)
        return rc;
    if ((rc = exec(db,
                   s->opt.durability == STORE_DURABILITY_FULL ? "PRAGMA synchronous=FULL;"
                                                              : "PRAGMA synchronous=NORMAL;",
                   err, "configuring the checkpoint connection"))) {
        sqlite3_close(db);
        return rc;
    }
    *out = db;
    return 0;
}

int sqs_open_reader(sqs_store *s, sqlite3 **out, sp_err *err)
{
    sqlite3 *db;
    int rc = open_conn(s, &db, err);
    if (rc)
        return rc;
    if ((rc = exec(db, "PRAGMA query_only=1; PRAGMA temp_store=MEMORY; PRAGMA cache_size=-16384;",
                   err, "configuring a read connection"))) {
        sqlite3_close(db);
        return rc;
    }
    *out = db;
    return 0;
}
