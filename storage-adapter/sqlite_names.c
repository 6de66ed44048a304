/* Stacks turned into frame names for the SQLite backend's stack reads (sqlite_stacks.c calls
 * sqs_build_stacks() with a query's stack → value sums): once per distinct location per query,
 * on the caller's thread, in its arena.
 *
 * A location's frames are looked for in the query's memo, then in the store's location-name
 * cache (name_cache.h, shared by the query threads), and only then read from SQLite (location,
 * function, string and mapping rows, the symbol cache); what was read goes to the name cache.
 *
 * Invariants of the name cache's content:
 *   N1. A payload is what this file's SQLite path pushes for the location in any snapshot of the
 *       same generation (N2): location, function, mapping and string rows never change once
 *       committed (only `seen`, which names do not read) and a final symbol answer (FOUND or
 *       NONE) never changes (Y1 of sqlite_symbols.c). So only what was read whole from the
 *       snapshot is stored: never the placeholder of a location not found, and a native frame
 *       whose symbols are not known yet (STORE_SYM_LATER) only as "pending" -- its unnamed frame
 *       plus its build id, for which every hit asks the symbol cache again (sqs_symbolize), so no
 *       unnamed frame is served once its symbols exist; the first final answer replaces it.
 *   N2. Ids are reused only after a deletion (INTEGER PRIMARY KEY takes max(id) + 1, so deleting
 *       the highest ids frees them). A query uses the cache only when the store's names_gen was
 *       the same even number just before and just after its snapshot was taken (rq_begin), and
 *       then reads and fills that generation alone (the cache's C2).
 *   N3. The writer makes names_gen odd before it commits a deletion of location or function
 *       rows and even again once the commit (or rollback) is over (sqlite_retention.c): every
 *       snapshot of one even generation holds the same deletions, so a reused id never meets a
 *       payload of its previous row. Nothing else deletes or rewrites those rows: `spanprof
 *       admin import` only inserts, through store_write in a process of its own (the server
 *       holds the directory's lock), and vacuum keeps INTEGER PRIMARY KEY ids and refuses while
 *       a server runs; a restart starts with an empty cache.
 *   N4. Detail (pprof) needs each frame's file, lines, mapping and build id: a payload carries
 *       them only when a detail query filled it; a detail query takes a payload without them
 *       for a miss and stores the fuller one.
 */
#include "sqlite_read.h"

#include <stdlib.h>
#include <string.h>

/* ---- stacks -------------------------------------------------------------------------------------
 */

typedef struct frames {
    store_strset names;
    store_sum3 locs; /* loc id → its frames in `v`, as memo_of() packs them */
    store_agg funcs; /* function id → sum = index + 1 into `aux` of its name, 0 = none */
    store_agg texts; /* string id → sum = index + 1 into `aux` */
    store_agg maps;  /* mapping id → sum = string id of its file, aux = of its build id */
    store_strset aux;
    uint32_t *v;
    size_t n, cap;
    /* store_query.detail: what each frame of v was received with (parallel to v) */
    int detail;
    store_frame *d;
    store_agg fdet; /* function id → index + 1 into fd */
    store_agg mdet; /* mapping id → index + 1 into md */
    struct fdetail {
        const char *file;
        int64_t start_line;
    } * fd;
    struct mdetail {
        const char *file, *build_id;
    } * md;
    size_t nfd, capfd, nmd, capmd;
    uint32_t unresolved; /* native locations not named yet */
    /* the location being read: its native frame was not named yet (STORE_SYM_LATER), with the
     * build id asked for (N1) */
    int sym_later;
    int64_t sym_bid;
    const char *sym_bid_s;
    uint8_t *nbuf, *pbuf; /* name cache payloads: read, written */
    size_t ncap, pcap;
} frames;

static void frames_free(frames *f)
{
    store_strset_free(&f->names);
    store_strset_free(&f->aux);
    store_sum3_free(&f->locs);
    store_agg_free(&f->funcs);
    store_agg_free(&f->texts);
    store_agg_free(&f->maps);
    store_agg_free(&f->fdet);
    store_agg_free(&f->mdet);
    free(f->v);
    free(f->d);
    free(f->fd);
    free(f->md);
    free(f->nbuf);
    free(f->pbuf);
}

static int push_frame(rq *q, frames *f, uint32_t name, const store_frame *d)
{
    if (f->n == f->cap) {
        size_t nc = f->cap ? f->cap * 2 : 1024;
        uint32_t *nv = realloc(f->v, nc * sizeof *nv);
        if (!nv)
            return rq_nomem(q);
        f->v = nv;
        if (f->detail) {
            store_frame *nd = realloc(f->d, nc * sizeof *nd);
            if (!nd)
                return rq_nomem(q);
            f->d = nd;
        }
        f->cap = nc;
    }
    if (f->detail)
        f->d[f->n] = *d;
    f->v[f->n++] = name;
    return 0;
}

/* A text column as an arena copy ("" for NULL). */
static const char *column_copy(rq *q, sqlite3_stmt *st, int col)
{
    const char *t = (const char *)sqlite3_column_text(st, col);
    return t && *t ? sp_arena_strndup(q->a, t, strlen(t)) : "";
}

/* store_query.detail: a function's file and first line, memoised. */
static int function_detail(rq *q, frames *f, int64_t fn, const char **file, int64_t *start)
{
    *file = "";
    *start = 0;
    if (!fn)
        return 0;
    int created;
    store_agg_entry *e = store_agg_get(&f->fdet, fn, 0, 0, 0, &created);
    if (!e)
        return rq_nomem(q);
    if (created) {
        if (f->nfd == f->capfd) {
            size_t nc = f->capfd ? f->capfd * 2 : 256;
            struct fdetail *nd = realloc(f->fd, nc * sizeof *nd);
            if (!nd)
                return rq_nomem(q);
            f->fd = nd;
            f->capfd = nc;
        }
        sqlite3_stmt *st = rq_stmt(q, R_FUNC_DETAIL);
        if (!st)
            return rq_prep_fail(q, R_FUNC_DETAIL);
        sqlite3_bind_int64(st, 1, fn);
        int rc = sqlite3_step(st);
        struct fdetail d = {"", 0};
        if (rc == SQLITE_ROW) {
            d.file = column_copy(q, st, 0);
            d.start_line = sqlite3_column_int64(st, 1);
        }
        sqlite3_reset(st);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            return rq_dberr(q, rc, R_FUNC_DETAIL);
        if (!d.file)
            return rq_nomem(q);
        f->fd[f->nfd] = d;
        e->sum = (int64_t)++f->nfd;
    }
    *file = f->fd[e->sum - 1].file;
    *start = f->fd[e->sum - 1].start_line;
    return 0;
}

/* store_query.detail: a mapping's file and build id, memoised. */
static int mapping_detail(rq *q, frames *f, int64_t m, const char **file, const char **build_id)
{
    *file = *build_id = "";
    if (!m)
        return 0;
    int created;
    store_agg_entry *e = store_agg_get(&f->mdet, m, 0, 0, 0, &created);
    if (!e)
        return rq_nomem(q);
    if (created) {
        if (f->nmd == f->capmd) {
            size_t nc = f->capmd ? f->capmd * 2 : 64;
            struct mdetail *nd = realloc(f->md, nc * sizeof *nd);
            if (!nd)
                return rq_nomem(q);
            f->md = nd;
            f->capmd = nc;
        }
        sqlite3_stmt *st = rq_stmt(q, R_MAPPING_DETAIL);
        if (!st)
            return rq_prep_fail(q, R_MAPPING_DETAIL);
        sqlite3_bind_int64(st, 1, m);
        int rc = sqlite3_step(st);
        struct mdetail d = {"", ""};
        if (rc == SQLITE_ROW) {
            d.file = column_copy(q, st, 0);
            d.build_id = column_copy(q, st, 1);
        }
        sqlite3_reset(st);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            return rq_dberr(q, rc, R_MAPPING_DETAIL);
        if (!d.file || !d.build_id)
            return rq_nomem(q);
        f->md[f->nmd] = d;
        e->sum = (int64_t)++f->nmd;
    }
    *file = f->md[e->sum - 1].file;
    *build_id = f->md[e->sum - 1].build_id;
    return 0;
}

/* Interns a name into the answer's names (arena copy). */
static int intern_name(rq *q, frames *f, const char *s, uint32_t *out)
{
    *out = 0;
    size_t len = strlen(s);
    uint64_t h = store_strset_hash(s, len);
    int64_t k = store_strset_find_hashed(&f->names, s, len, h);
    if (k < 0) {
        char *copy = sp_arena_strndup(q->a, s, len);
        if (!copy)
            return rq_nomem(q);
        k = store_strset_add_absent(&f->names, copy, len, h);
        if (k < 0)
            return rq_nomem(q);
    }
    *out = (uint32_t)k;
    return 0;
}

/* Single-column text lookups by id, memoised in `memo` (value = index + 1 into f->aux). */
static int text_of(rq *q, frames *f, store_agg *memo, int which, int64_t id, const char **out)
{
    *out = "";
    if (!id)
        return 0;
    int created;
    store_agg_entry *e = store_agg_get(memo, id, 0, 0, 0, &created);
    if (!e)
        return rq_nomem(q);
    if (!created) {
        *out = e->sum ? f->aux.strs[e->sum - 1] : "";
        return 0;
    }
    sqlite3_stmt *st = rq_stmt(q, which);
    if (!st)
        return rq_prep_fail(q, which);
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        if (t && *t) {
            size_t len = strlen(t);
            char *copy = sp_arena_strndup(q->a, t, len);
            int64_t k = copy ? store_strset_add(&f->aux, copy, len) : -1;
            if (k < 0) {
                sqlite3_reset(st);
                return rq_nomem(q);
            }
            e->sum = k + 1;
            *out = f->aux.strs[k];
        }
        rc = SQLITE_DONE;
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : rq_dberr(q, rc, which);
}

/* A mapping's file and build id string ids, memoised. */
static int mapping_ids(rq *q, frames *f, int64_t mapping, int64_t *file, int64_t *build_id)
{
    *file = *build_id = 0;
    if (!mapping)
        return 0;
    int created;
    store_agg_entry *e = store_agg_get(&f->maps, mapping, 0, 0, 0, &created);
    if (!e)
        return rq_nomem(q);
    if (created) {
        sqlite3_stmt *st = rq_stmt(q, R_MAPPING);
        if (!st)
            return rq_prep_fail(q, R_MAPPING);
        sqlite3_bind_int64(st, 1, mapping);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            e->sum = sqlite3_column_int64(st, 0);
            e->aux = sqlite3_column_int64(st, 1);
        }
        sqlite3_reset(st);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            return rq_dberr(q, rc, R_MAPPING);
    }
    *file = e->sum;
    *build_id = e->aux;
    return 0;
}

static int mapping_file(rq *q, frames *f, int64_t mapping, const char **out)
{
    int64_t file, build_id;
    int rc = mapping_ids(q, f, mapping, &file, &build_id);
    *out = "";
    return rc ? rc : text_of(q, f, &f->texts, R_STRING, file, out);
}

/* Pushes what the symbolizer named (fd: the location's detail, completed per frame). */
static int push_symbols(rq *q, frames *f, const store_sym_frame *sf, size_t n, store_frame *fd,
                        int *emitted)
{
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        uint32_t idx;
        fd->file = sf[i].file;
        fd->line = sf[i].line;
        fd->start_line = sf[i].start_line;
        fd->inl = (uint32_t)*emitted;
        if (!(rc = intern_name(q, f, sf[i].function, &idx)) && !(rc = push_frame(q, f, idx, fd)))
            (*emitted)++;
    }
    return rc;
}

/* A location that arrived without lines: when it is a native frame of a mapping with a build
 * id, the frames the symbolizer names (through the store's symbol cache, sqlite_symbols.c).
 * *emitted = how many were pushed; a frame not named yet counts in f->unresolved. */
static int symbolized_frames(rq *q, frames *f, int64_t kind, int64_t mapping, uint64_t address,
                             store_frame *fd, int *emitted)
{
    const char *kind_s = "", *bid_s = "";
    int64_t file, bid;
    int rc = text_of(q, f, &f->texts, R_STRING, kind, &kind_s);
    if (rc || strcmp(kind_s, "native") != 0)
        return rc;
    if ((rc = mapping_ids(q, f, mapping, &file, &bid)) ||
        (rc = text_of(q, f, &f->texts, R_STRING, bid, &bid_s)) || !*bid_s)
        return rc;
    store_sym_frame *sf = NULL;
    size_t n = 0;
    int status = STORE_SYM_LATER;
    if ((rc = sqs_symbolize(q, bid, bid_s, address, &sf, &n, &status)))
        return rc;
    if (status == STORE_SYM_LATER) {
        f->unresolved++;
        f->sym_later = 1;
        f->sym_bid = bid;
        f->sym_bid_s = bid_s;
    }
    return push_symbols(q, f, sf, n, fd, emitted);
}

/* Reads one location's frames from SQLite (inlined callees first) onto f; *address = its
 * address, *cacheable = 0 when what was pushed must not go to the name cache (N1). */
static int from_db(rq *q, frames *f, int64_t loc, uint64_t *address_out, int *cacheable)
{
    *cacheable = 0;
    *address_out = 0;
    sqlite3_stmt *st = rq_stmt(q, R_LOC);
    if (!st)
        return rq_prep_fail(q, R_LOC);
    sqlite3_bind_int64(st, 1, loc);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(st);
        if (rc != SQLITE_DONE)
            return rq_dberr(q, rc, R_LOC);
        /* A location retention removed under a still-referenced stack cannot happen (margins);
         * should it anyway, show an honest placeholder rather than fail the query. */
        uint32_t name;
        store_frame none = {loc, 0, "", "", "", 0, 0, 0};
        if ((rc = intern_name(q, f, "unknown", &name)))
            return rc;
        return push_frame(q, f, name, &none);
    }
    int64_t mapping = sqlite3_column_int64(st, 0);
    uint64_t address = (uint64_t)sqlite3_column_int64(st, 1);
    int64_t kind = sqlite3_column_int64(st, 2);
    int blen = sqlite3_column_bytes(st, 3);
    const void *bp = sqlite3_column_blob(st, 3);
    uint8_t small[256];
    uint8_t *lines = (size_t)blen <= sizeof small ? small : malloc((size_t)blen);
    if (!lines) {
        sqlite3_reset(st);
        return rq_nomem(q);
    }
    if (blen)
        memcpy(lines, bp, (size_t)blen);
    sqlite3_reset(st);

    const char *kind_s = NULL, *file_s = NULL;
    const uint8_t *p = lines, *end = lines + blen;
    int emitted = 0;
    rc = 0;
    store_frame fd = {loc, address, "", "", "", 0, 0, 0};
    if (f->detail)
        rc = mapping_detail(q, f, mapping, &fd.mapping, &fd.build_id);
    while (p < end && !rc) {
        uint64_t fn, line;
        if (store_varint_get(&p, end, &fn) || store_varint_get(&p, end, &line))
            break;
        const char *name = "";
        if (fn && (rc = text_of(q, f, &f->funcs, R_FUNC, (int64_t)fn, &name)))
            break;
        fd.line = (int64_t)(line >> 1) ^ -(int64_t)(line & 1); /* zigzag (sqlite_dict.c) */
        fd.file = "";
        fd.start_line = 0;
        if (f->detail && (rc = function_detail(q, f, (int64_t)fn, &fd.file, &fd.start_line)))
            break;
        char buf[512];
        if (!*name) {
            if (!kind_s && ((rc = text_of(q, f, &f->texts, R_STRING, kind, &kind_s)) ||
                            (rc = mapping_file(q, f, mapping, &file_s))))
                break;
            name = store_frame_name(buf, sizeof buf, NULL, kind_s, address, file_s);
        }
        uint32_t idx;
        fd.inl = (uint32_t)emitted;
        if ((rc = intern_name(q, f, name, &idx)) || (rc = push_frame(q, f, idx, &fd)))
            break;
        emitted++;
    }
    if (!rc && !emitted && mapping && q->s->opt.symbolizer)
        rc = symbolized_frames(q, f, kind, mapping, address, &fd, &emitted);
    if (!rc && !emitted) {
        char buf[512];
        if (!(rc = text_of(q, f, &f->texts, R_STRING, kind, &kind_s)) &&
            !(rc = mapping_file(q, f, mapping, &file_s))) {
            uint32_t idx;
            const char *name = store_frame_name(buf, sizeof buf, NULL, kind_s, address, file_s);
            fd.line = fd.start_line = 0;
            fd.inl = 0;
            fd.file = "";
            if (!(rc = intern_name(q, f, name, &idx)))
                rc = push_frame(q, f, idx, &fd);
        }
    }
    if (lines != small)
        free(lines);
    *address_out = address;
    *cacheable = !rc;
    return rc;
}

/* ---- the location-name cache's payloads (N1-N4) ------------------------------------------------
 * flags byte (NC_*), varint address, varint frame count; when pending: varint build id string
 * id, build id; with detail: mapping file, build id; then per frame: name and, with detail, file,
 * zigzag line, zigzag start line. Strings: varint length, bytes, NUL. */

enum { NC_DETAIL = 1, NC_PENDING = 2 };
#define NC_MAX_FRAMES 64 /* locations inlining more frames are not cached */

static uint64_t zig64(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static size_t put_str(uint8_t *o, const char *s)
{
    size_t n = strlen(s), k = store_varint_put(o, n);
    memcpy(o + k, s, n + 1);
    return k + n + 1;
}

static int get_str(const uint8_t **p, const uint8_t *end, const char **s)
{
    uint64_t n;
    if (store_varint_get(p, end, &n) || n >= (uint64_t)(end - *p) || (*p)[n] != 0)
        return -1;
    *s = (const char *)*p;
    *p += n + 1;
    return 0;
}

static int grow(uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap : 256;
    while (nc < need)
        nc *= 2;
    uint8_t *nb = realloc(*buf, nc);
    if (!nb)
        return -1;
    *buf = nb;
    *cap = nc;
    return 0;
}

/* Stores the frames pushed for loc since `first` (caching only saves work: a failure to store
 * is not an error). */
static void to_cache(rq *q, frames *f, int64_t loc, uint64_t address, size_t first)
{
    size_t n = f->n - first, need = 1 + 4 * STORE_VARINT_MAX;
    if (!n || n > NC_MAX_FRAMES)
        return;
    const store_frame *d = f->detail ? &f->d[first] : NULL;
    if (f->sym_later)
        need += STORE_VARINT_MAX + strlen(f->sym_bid_s) + 1;
    if (d)
        need += 2 * STORE_VARINT_MAX + strlen(d->mapping) + strlen(d->build_id) + 2;
    for (size_t i = 0; i < n; i++)
        need += STORE_VARINT_MAX + strlen(f->names.strs[f->v[first + i]]) + 1 +
                (d ? 3 * STORE_VARINT_MAX + strlen(d[i].file) + 1 : 0);
    if (grow(&f->pbuf, &f->pcap, need))
        return;
    uint8_t *o = f->pbuf;
    *o++ = (uint8_t)((d ? NC_DETAIL : 0) | (f->sym_later ? NC_PENDING : 0));
    o += store_varint_put(o, address);
    o += store_varint_put(o, n);
    if (f->sym_later) {
        o += store_varint_put(o, (uint64_t)f->sym_bid);
        o += put_str(o, f->sym_bid_s);
    }
    if (d) {
        o += put_str(o, d->mapping);
        o += put_str(o, d->build_id);
    }
    for (size_t i = 0; i < n; i++) {
        o += put_str(o, f->names.strs[f->v[first + i]]);
        if (d) {
            o += put_str(o, d[i].file);
            o += store_varint_put(o, zig64(d[i].line));
            o += store_varint_put(o, zig64(d[i].start_line));
        }
    }
    store_ncache_put(q->s->names, q->names_gen, loc, f->pbuf, (size_t)(o - f->pbuf));
}

/* A string of the answer's detail: an arena copy, once per query. */
static int aux_str(rq *q, frames *f, const char *s, const char **out)
{
    size_t len = strlen(s);
    *out = "";
    if (!len)
        return 0;
    int64_t k = store_strset_find(&f->aux, s, len);
    if (k < 0) {
        char *copy = sp_arena_strndup(q->a, s, len);
        if (!copy || (k = store_strset_add(&f->aux, copy, len)) < 0)
            return rq_nomem(q);
    }
    *out = f->aux.strs[k];
    return 0;
}

typedef struct nc_frame {
    const char *name, *file;
    int64_t line, start_line;
} nc_frame;

/* A payload read back: 0, or -1 when it is not usable (malformed, or without the detail the
 * query needs: N4). Strings point into the payload. */
static int parse_payload(const frames *f, const uint8_t *p, const uint8_t *end, int *flags,
                         uint64_t *address, int64_t *bid, const char **bid_s, store_frame *fd,
                         nc_frame *fr, size_t *n)
{
    uint64_t nf, v = 0, line, start;
    if (p >= end)
        return -1;
    *flags = *p++;
    if ((f->detail && !(*flags & NC_DETAIL)) || store_varint_get(&p, end, address) ||
        store_varint_get(&p, end, &nf) || !nf || nf > NC_MAX_FRAMES)
        return -1;
    if ((*flags & NC_PENDING) && (store_varint_get(&p, end, &v) || get_str(&p, end, bid_s)))
        return -1;
    *bid = (int64_t)v;
    if ((*flags & NC_DETAIL) && (get_str(&p, end, &fd->mapping) || get_str(&p, end, &fd->build_id)))
        return -1;
    for (size_t i = 0; i < nf; i++) {
        fr[i].file = "";
        fr[i].line = fr[i].start_line = 0;
        if (get_str(&p, end, &fr[i].name))
            return -1;
        if (!(*flags & NC_DETAIL))
            continue;
        if (get_str(&p, end, &fr[i].file) || store_varint_get(&p, end, &line) ||
            store_varint_get(&p, end, &start))
            return -1;
        fr[i].line = (int64_t)(line >> 1) ^ -(int64_t)(line & 1);
        fr[i].start_line = (int64_t)(start >> 1) ^ -(int64_t)(start & 1);
    }
    *n = (size_t)nf;
    return p == end ? 0 : -1;
}

/* Pushes a payload's frames (fd: the location's detail, its strings already the answer's). */
static int push_cached(rq *q, frames *f, const nc_frame *fr, size_t n, store_frame *fd)
{
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        uint32_t idx;
        fd->line = fr[i].line;
        fd->start_line = fr[i].start_line;
        fd->inl = (uint32_t)i;
        if (!(rc = f->detail ? aux_str(q, f, fr[i].file, &fd->file) : 0) &&
            !(rc = intern_name(q, f, fr[i].name, &idx)))
            rc = push_frame(q, f, idx, fd);
    }
    return rc;
}

/* The location's frames from the name cache, *hit = 1 when they were pushed. A pending entry
 * asks the symbol cache again (N1) and is replaced once the answer is final. */
static int from_cache(rq *q, frames *f, int64_t loc, int *hit)
{
    *hit = 0;
    int64_t len = store_ncache_get(q->s->names, q->names_gen, loc, f->nbuf, f->ncap);
    if (len > (int64_t)f->ncap) {
        if (grow(&f->nbuf, &f->ncap, (size_t)len))
            return 0;
        len = store_ncache_get(q->s->names, q->names_gen, loc, f->nbuf, f->ncap);
    }
    if (len < 0 || len > (int64_t)f->ncap)
        return 0;
    nc_frame fr[NC_MAX_FRAMES];
    size_t n = 0;
    int flags = 0;
    uint64_t address = 0;
    int64_t bid = 0;
    const char *bid_s = "";
    store_frame fd = {loc, 0, "", "", "", 0, 0, 0};
    if (parse_payload(f, f->nbuf, f->nbuf + len, &flags, &address, &bid, &bid_s, &fd, fr, &n))
        return 0;
    fd.address = address;
    int rc = 0;
    if (f->detail && ((rc = aux_str(q, f, fd.mapping, &fd.mapping)) ||
                      (rc = aux_str(q, f, fd.build_id, &fd.build_id))))
        return rc;
    *hit = 1;
    if (!(flags & NC_PENDING))
        return push_cached(q, f, fr, n, &fd);
    size_t first = f->n;
    store_sym_frame *sf = NULL;
    size_t sn = 0;
    int status = STORE_SYM_LATER, emitted = 0;
    if ((rc = sqs_symbolize(q, bid, bid_s, address, &sf, &sn, &status)))
        return rc;
    if (status == STORE_SYM_LATER)
        f->unresolved++;
    if (sn)
        rc = push_symbols(q, f, sf, sn, &fd, &emitted);
    if (!rc && !emitted)
        rc = push_cached(q, f, fr, n, &fd); /* the unnamed frame */
    if (!rc && status != STORE_SYM_LATER)
        to_cache(q, f, loc, address, first); /* final now: no longer pending */
    return rc;
}

/* The query's memo of a location: where its frames start in `v` and how many, packed into one
 * word of a 32-byte slot (a stack names tens of locations, each probed here: half the bytes of a
 * store_agg slot was a tenth less of a span query's CPU). 0 = not read yet. A location whose
 * frames do not fit the packing is read again each time it is named (none does: a location has
 * tens of frames at most, and a query's frames are far fewer than 2^43). */
#define MEMO_COUNT_BITS 20
static int64_t memo_of(size_t first, size_t count)
{
    if (count >> MEMO_COUNT_BITS || first >> (62 - MEMO_COUNT_BITS))
        return 0;
    return (int64_t)((first << MEMO_COUNT_BITS | count) + 1);
}

/* Appends the frames of one location (inlined callees first) and memoises them: from the
 * query's memo, the name cache or SQLite (which then fills the cache). */
static int location_frames(rq *q, frames *f, int64_t loc, size_t *start, size_t *count)
{
    int64_t *m = store_sum3_at(&f->locs, loc, 0, 0); /* NULL for location 0: never memoised */
    if (!m && loc)
        return rq_nomem(q);
    if (m && *m) {
        uint64_t v = (uint64_t)*m - 1;
        *start = (size_t)(v >> MEMO_COUNT_BITS);
        *count = (size_t)(v & ((1u << MEMO_COUNT_BITS) - 1));
        return 0;
    }
    size_t first = f->n;
    int hit = 0, cacheable = 0, rc = 0;
    uint64_t address = 0;
    f->sym_later = 0;
    if (q->names_ok)
        rc = from_cache(q, f, loc, &hit);
    if (!rc && !hit) {
        f->n = first; /* nothing of a payload that could not be used stays */
        rc = from_db(q, f, loc, &address, &cacheable);
        if (!rc && cacheable && q->names_ok)
            to_cache(q, f, loc, address, first);
    }
    if (rc)
        return rc;
    if (m) /* still the slot: nothing was added to the memo since */
        *m = memo_of(first, f->n - first);
    *start = first;
    *count = f->n - first;
    return 0;
}

static int ord_cmp(const void *a, const void *b)
{
    const store_agg_entry *x = *(store_agg_entry *const *)a, *y = *(store_agg_entry *const *)b;
    if (x->sum != y->sum)
        return x->sum > y->sum ? -1 : 1; /* heaviest first */
    return x->k[0] < y->k[0] ? -1 : x->k[0] > y->k[0];
}

/* One stack's frames, leaf first, gathered while the answer is built. */
typedef struct stack_scratch {
    uint32_t *names;
    store_frame *detail;
    size_t cap;
} stack_scratch;

/* The frames of the stack blob (its location ids) into sc, *nf of them. */
static int stack_frames(rq *q, frames *f, const uint8_t *blob, size_t blen, stack_scratch *sc,
                        size_t *nf_out)
{
    int rc = 0;
    size_t nf = 0;
    const uint8_t *p = blob, *end = blob + blen;
    uint64_t loc;
    /* The name cache's probes wait for memory, mostly its bucket: asking for every bucket of
     * the stack first overlaps those misses (the memo's hits cost a wasted prefetch); the
     * memo's own slots, likewise. */
    while (p < end && !store_varint_get(&p, end, &loc)) {
        store_sum3_prefetch(&f->locs, (int64_t)loc, 0, 0);
        if (q->names_ok)
            store_ncache_prefetch(q->s->names, (int64_t)loc);
    }
    p = blob;
    while (p < end) {
        if (store_varint_get(&p, end, &loc))
            break;
        size_t start = 0, count = 0;
        if ((rc = location_frames(q, f, (int64_t)loc, &start, &count)))
            break;
        if (nf + count > sc->cap) {
            size_t nc = sc->cap ? sc->cap * 2 : 256;
            while (nc < nf + count)
                nc *= 2;
            uint32_t *nt = realloc(sc->names, nc * sizeof *nt);
            if (!nt)
                return rq_nomem(q);
            sc->names = nt;
            if (f->detail) {
                store_frame *nd = realloc(sc->detail, nc * sizeof *nd);
                if (!nd)
                    return rq_nomem(q);
                sc->detail = nd;
            }
            sc->cap = nc;
        }
        memcpy(sc->names + nf, f->v + start, count * sizeof *sc->names);
        if (f->detail)
            memcpy(sc->detail + nf, f->d + start, count * sizeof *sc->detail);
        nf += count;
    }
    *nf_out = nf;
    return rc;
}

/* Turns stack id → value sums into named stacks in the arena. */
static int build_once(rq *q, store_agg *vals, int detail, store_stacks *out)
{
    frames f;
    memset(&f, 0, sizeof f);
    f.detail = detail;
    store_agg_init(&f.fdet);
    store_agg_init(&f.mdet);
    stack_scratch sc = {0};
    store_strset_init(&f.names);
    store_strset_init(&f.aux);
    store_agg_init(&f.funcs);
    store_agg_init(&f.texts);
    store_agg_init(&f.maps);
    int rc = 0;
    store_agg_entry **order = vals->n ? malloc(vals->n * sizeof *order) : NULL;
    size_t n = 0;
    if (vals->n && !order) {
        rc = rq_nomem(q);
        goto done;
    }
    for (size_t i = 0; i < vals->cap; i++)
        if (vals->slots[i].used && vals->slots[i].sum)
            order[n++] = &vals->slots[i];
    if (n)
        qsort(order, n, sizeof *order, ord_cmp);
    out->stacks = n ? sp_arena_alloc(q->a, n * sizeof *out->stacks) : NULL;
    if (n && !out->stacks) {
        rc = rq_nomem(q);
        goto done;
    }
    sqlite3_stmt *st = rq_stmt(q, R_STACK);
    if (!st) {
        rc = rq_prep_fail(q, R_STACK);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        sqlite3_bind_int64(st, 1, order[i]->k[0]);
        int src = sqlite3_step(st);
        if (src != SQLITE_ROW) {
            sqlite3_reset(st);
            if (src == SQLITE_DONE)
                continue; /* removed by retention meanwhile: skip */
            rc = rq_dberr(q, src, R_STACK);
            goto done;
        }
        int blen = sqlite3_column_bytes(st, 0);
        const uint8_t *bp = sqlite3_column_blob(st, 0);
        uint8_t small[512];
        uint8_t *blob = (size_t)blen <= sizeof small ? small : malloc((size_t)blen);
        if (!blob) {
            sqlite3_reset(st);
            rc = rq_nomem(q);
            goto done;
        }
        if (blen)
            memcpy(blob, bp, (size_t)blen);
        sqlite3_reset(st);
        size_t nf = 0;
        rc = stack_frames(q, &f, blob, (size_t)blen, &sc, &nf);
        if (blob != small)
            free(blob);
        if (rc)
            goto done;
        store_stack *s = &out->stacks[out->nstacks];
        s->nframes = (uint32_t)nf;
        s->value = order[i]->sum;
        s->frames = nf ? sp_arena_memdup(q->a, sc.names, nf * sizeof *sc.names) : NULL;
        s->detail = detail && nf ? sp_arena_memdup(q->a, sc.detail, nf * sizeof *sc.detail) : NULL;
        if (nf && (!s->frames || (detail && !s->detail))) {
            rc = rq_nomem(q);
            goto done;
        }
        out->total += s->value;
        out->nstacks++;
    }
    out->nnames = (uint32_t)f.names.n;
    out->unresolved = f.unresolved;
    if (f.names.n) {
        out->names = sp_arena_alloc(q->a, f.names.n * sizeof *out->names);
        if (!out->names) {
            rc = rq_nomem(q);
            goto done;
        }
        memcpy(out->names, f.names.strs, f.names.n * sizeof *out->names);
    }
done:
    free(order);
    free(sc.names);
    free(sc.detail);
    frames_free(&f);
    if (rc)
        memset(out, 0, sizeof *out);
    return rc;
}

/* Names the stacks; when native frames were left for debug files being downloaded, waits for
 * them within the query's budget and, if any arrived, names the stacks again (lookups never
 * wait, so every build id of the answer was asked for before the first wait). */
int sqs_build_stacks(rq *q, store_agg *vals, int detail, store_stacks *out)
{
    int rc = build_once(q, vals, detail, out);
    const store_symbolizer *sy = q->s->opt.symbolizer;
    if (rc || !out->unresolved || !sy || !sy->wait || !q->sym_deadline)
        return rc;
    if (sy->wait(sy->ctx, q->sym_deadline, q->sym_since) <= 0)
        return 0;
    memset(out, 0, sizeof *out);
    return build_once(q, vals, detail, out);
}
