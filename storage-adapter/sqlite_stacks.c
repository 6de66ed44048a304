/* Stack reads of the SQLite backend: a selection's or a span's values per stack, read from the
 * chunks (and version-1 rows) of only the selected series or spans, and the stacks turned into
 * frame names once per distinct location per query. On the caller's thread, in its arena. */
#include "sqlite_read.h"

#include <stdlib.h>
#include <string.h>

/* ---- stacks -------------------------------------------------------------------------------------
 */

typedef struct frames {
    store_strset names;
    store_agg locs;  /* loc id → sum = offset into `v`, aux = frame count */
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
} frames;

static void frames_free(frames *f)
{
    store_strset_free(&f->names);
    store_strset_free(&f->aux);
    store_agg_free(&f->locs);
    store_agg_free(&f->funcs);
    store_agg_free(&f->texts);
    store_agg_free(&f->maps);
    store_agg_free(&f->fdet);
    store_agg_free(&f->mdet);
    free(f->v);
    free(f->d);
    free(f->fd);
    free(f->md);
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
    size_t len = strlen(s);
    int64_t k = store_strset_find(&f->names, s, len);
    if (k < 0) {
        char *copy = sp_arena_strndup(q->a, s, len);
        if (!copy)
            return rq_nomem(q);
        k = store_strset_add(&f->names, copy, len);
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
    if (status == STORE_SYM_LATER)
        f->unresolved++;
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

/* Appends the frames of one location (inlined callees first) and memoises them. */
static int location_frames(rq *q, frames *f, int64_t loc, size_t *start, size_t *count)
{
    int created;
    store_agg_entry *e = store_agg_get(&f->locs, loc, 0, 0, 0, &created);
    if (!e)
        return rq_nomem(q);
    if (!created) {
        *start = (size_t)e->sum;
        *count = (size_t)e->aux;
        return 0;
    }
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
        if ((rc = intern_name(q, f, "unknown", &name)))
            return rc;
        e = store_agg_find(&f->locs, loc, 0, 0, 0);
        e->sum = (int64_t)f->n;
        e->aux = 1;
        *start = f->n;
        *count = 1;
        store_frame none = {loc, 0, "", "", "", 0, 0, 0};
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

    size_t first = f->n;
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
    if (rc)
        return rc;
    e = store_agg_find(&f->locs, loc, 0, 0, 0);
    e->sum = (int64_t)first;
    e->aux = (int64_t)(f->n - first);
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
    while (p < end) {
        uint64_t loc;
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
    store_agg_init(&f.locs);
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
static int build_stacks(rq *q, store_agg *vals, int detail, store_stacks *out)
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

/* Summing decoded chunks into a query's stack → value map. */
typedef struct chunk_ctx {
    rq *q;
    store_agg *vals;
    /* span chunks: the series the query selects (aux = the series' period), and what each
     * added (for the answer's period) */
    store_agg *allowed;
    int64_t added; /* sum of what went into vals */
    store_chunk_decoder dec;
} chunk_ctx;

static int chunk_add(void *ctx, int64_t k0, int64_t k1, int64_t v)
{
    chunk_ctx *c = ctx;
    int64_t stack = k0;
    if (c->allowed) { /* (series, stack) */
        store_agg_entry *s = store_agg_find(c->allowed, k0, 0, 0, 0);
        if (!s)
            return 0;
        s->sum += v;
        stack = k1;
    }
    store_agg_entry *e = store_agg_get(c->vals, stack, 0, 0, 0, NULL);
    if (!e)
        return -2;
    e->sum += v;
    c->added += v;
    return 0;
}

/* The period of the series that contributed the most among those that know theirs (ties: the
 * first); 0 when none does. */
static int64_t pick_period(const int64_t *contrib, const rseries *v, size_t n)
{
    size_t best = n;
    for (size_t i = 0; i < n; i++)
        if (v[i].period && (best == n || contrib[i] > contrib[best]))
            best = i;
    return best < n ? v[best].period : 0;
}

/* Steps a bound chunk statement and sums every chunk it returns. */
static int read_chunks(rq *q, sqlite3_stmt *st, int which, int nk, chunk_ctx *c)
{
    int src, rc = 0;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        const uint8_t *blob = sqlite3_column_blob(st, 0);
        size_t len = (size_t)sqlite3_column_bytes(st, 0);
        int d = store_chunk_decode(blob, len, nk, &c->dec, chunk_add, c);
        if (d == -2) {
            rc = rq_nomem(q);
            break;
        }
        if (d) {
            rc = sp_fail(q->err, SP_EINTERNAL,
                         "reading %s: a stored value chunk is malformed (the database is "
                         "damaged; restore it from a backup)",
                         which == R_CHUNKS ? "sample_chunk" : "span_chunk");
            break;
        }
    }
    sqlite3_reset(st);
    if (!rc && src != SQLITE_DONE)
        rc = rq_dberr(q, src, which);
    return rc;
}

int sqs_select_stacks(store *st, const store_query *query, sp_arena *a, store_stacks *out,
                      sp_err *err)
{
    rq q;
    int rc = rq_begin(&q, st, NULL, query, a, err);
    if (rc)
        return rc;
    rseries *v;
    size_t n;
    store_agg vals;
    store_agg_init(&vals);
    rc = rq_select_series(&q, query, 0, &v, &n);
    sqlite3_stmt *sums = rc ? NULL : rq_stmt(&q, R_STACK_SUMS);
    if (!rc && !sums)
        rc = rq_prep_fail(&q, R_STACK_SUMS);
    sqlite3_stmt *chunks = rc ? NULL : rq_stmt(&q, R_CHUNKS);
    if (!rc && !chunks)
        rc = rq_prep_fail(&q, R_CHUNKS);
    chunk_ctx ck = {.q = &q, .vals = &vals};
    int64_t *contrib = n ? sp_arena_calloc(a, n, sizeof *contrib) : NULL;
    if (!rc && n && !contrib)
        rc = rq_nomem(&q);
    for (size_t i = 0; i < n && !rc; i++) {
        int64_t before = ck.added;
        sqlite3_bind_int64(sums, 1, v[i].id);
        sqlite3_bind_int64(sums, 2, q.b0);
        sqlite3_bind_int64(sums, 3, q.b1);
        int src;
        while ((src = sqlite3_step(sums)) == SQLITE_ROW) {
            store_agg_entry *e = store_agg_get(&vals, sqlite3_column_int64(sums, 0), 0, 0, 0, NULL);
            if (!e) {
                rc = rq_nomem(&q);
                break;
            }
            e->sum += sqlite3_column_int64(sums, 1);
            ck.added += sqlite3_column_int64(sums, 1);
        }
        sqlite3_reset(sums);
        if (!rc && src != SQLITE_DONE)
            rc = rq_dberr(&q, src, R_STACK_SUMS);
        if (!rc) {
            sqlite3_bind_int64(chunks, 1, v[i].id);
            sqlite3_bind_int64(chunks, 2, q.b0);
            sqlite3_bind_int64(chunks, 3, q.b1);
            rc = read_chunks(&q, chunks, R_CHUNKS, 1, &ck);
        }
        contrib[i] = ck.added - before;
    }
    if (!rc)
        rc = build_stacks(&q, &vals, query->detail, out);
    if (!rc)
        out->period = pick_period(contrib, v, n);
    store_chunk_decoder_free(&ck.dec);
    store_agg_free(&vals);
    rq_end(&q);
    return rc;
}

/* What the query's series attached to one span (version 1 rows and chunks) into ck->vals; the
 * series' contributions into ck->allowed. */
static int span_values(rq *q, int64_t key, int64_t h0, int64_t h1, sqlite3_stmt *rows,
                       sqlite3_stmt *chunks, chunk_ctx *ck)
{
    int rc = 0, src = SQLITE_DONE;
    if (rows) {
        sqlite3_bind_int64(rows, 1, key);
        sqlite3_bind_int64(rows, 2, h0);
        sqlite3_bind_int64(rows, 3, h1);
    }
    while (rows && (src = sqlite3_step(rows)) == SQLITE_ROW) {
        int64_t v = sqlite3_column_int64(rows, 2);
        store_agg_entry *s = store_agg_find(ck->allowed, sqlite3_column_int64(rows, 0), 0, 0, 0);
        if (!s)
            continue;
        store_agg_entry *e = store_agg_get(ck->vals, sqlite3_column_int64(rows, 1), 0, 0, 0, NULL);
        if (!e) {
            rc = rq_nomem(q);
            break;
        }
        s->sum += v;
        e->sum += v;
        ck->added += v;
    }
    if (rows)
        sqlite3_reset(rows);
    if (!rc && src != SQLITE_DONE)
        rc = rq_dberr(q, src, R_SPANSTK);
    if (!rc) {
        sqlite3_bind_int64(chunks, 1, key);
        sqlite3_bind_int64(chunks, 2, h0);
        sqlite3_bind_int64(chunks, 3, h1);
        rc = read_chunks(q, chunks, R_SPANCHUNKS, 2, ck);
    }
    return rc;
}

/* Shared by span stacks and span totals: the query's series (the filter) and statements. */
typedef struct span_read {
    rseries *v;
    size_t n;
    store_agg allowed; /* series id → what it contributed */
    int64_t h0, h1;
    sqlite3_stmt *rows, *chunks;
} span_read;

static int span_read_begin(rq *q, const store_query *query, span_read *sr)
{
    memset(sr, 0, sizeof *sr);
    store_agg_init(&sr->allowed);
    /* The series filter (tenant, type, labels) applies; the time range only narrows which
     * hours are searched. */
    sr->h0 = INT64_MIN;
    sr->h1 = INT64_MAX;
    if (query->start_ns > 0)
        sr->h0 = sqs_floor_div(query->start_ns, SQS_HOUR_NS);
    if (query->end_ns > 0)
        sr->h1 = sqs_floor_div(query->end_ns - 1, SQS_HOUR_NS);
    int rc = rq_select_series(q, query, 0, &sr->v, &sr->n);
    for (size_t i = 0; i < sr->n && !rc; i++)
        if (!store_agg_get(&sr->allowed, sr->v[i].id, 0, 0, 0, NULL))
            rc = rq_nomem(q);
    if (rc || !sr->n)
        return rc;
    /* Version 1 rows (files written before value chunks): looked up only when the table has
     * any, which saves a seek per span and hour on every file made since. */
    sqlite3_stmt *any = rq_stmt(q, R_SPANSTK_ANY);
    if (!any)
        return rq_prep_fail(q, R_SPANSTK_ANY);
    int has_v1 = sqlite3_step(any) == SQLITE_ROW;
    sqlite3_reset(any);
    if (has_v1 && !(sr->rows = rq_stmt(q, R_SPANSTK)))
        return rq_prep_fail(q, R_SPANSTK);
    if (!(sr->chunks = rq_stmt(q, R_SPANCHUNKS)))
        return rq_prep_fail(q, R_SPANCHUNKS);
    return 0;
}

/* Whether span i of the list is worth reading: a valid id not seen earlier in the list. */
static int span_wanted(const uint8_t (*ids)[8], size_t i)
{
    for (size_t j = 0; j < i; j++)
        if (memcmp(ids[j], ids[i], 8) == 0)
            return 0;
    return sqs_span_key(ids[i]) != 0;
}

static int key_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* The distinct valid span keys of a list, ascending (the order of span_chunk's key, so a large
 * set -- a trace, every span of a name -- is read in index order and duplicates cost nothing). */
static int64_t *span_keys(rq *q, const uint8_t (*ids)[8], size_t nids, size_t *n)
{
    int64_t *k = sp_arena_alloc(q->a, (nids + 1) * sizeof *k);
    *n = 0;
    if (!k)
        return NULL;
    for (size_t i = 0; i < nids; i++)
        if ((k[*n] = sqs_span_key(ids[i])) != 0)
            (*n)++;
    qsort(k, *n, sizeof *k, key_cmp);
    size_t u = 0;
    for (size_t i = 0; i < *n; i++)
        if (!u || k[i] != k[u - 1])
            k[u++] = k[i];
    *n = u;
    return k;
}

/* Large sets (a trace of many spans, every span of a name) are read hour by hour, each hour's
 * keys ascending: the lookups then walk span_chunk's (hour, span_id) key forward, so each page
 * is fetched once per hour instead of once per span and hour as per-span reads do (those jump
 * between the hours' key ranges). Small sets keep the per-span read (one statement). */
#define SPAN_SET_MIN 16

static int span_set_values(rq *q, const int64_t *keys, size_t nkeys, const span_read *sr,
                           chunk_ctx *ck)
{
    sqlite3_stmt *hs = rq_stmt(q, R_SPAN_HOURS_DESC), *at = rq_stmt(q, R_SPANCHUNK_AT);
    if (!hs || !at)
        return rq_prep_fail(q, !hs ? R_SPAN_HOURS_DESC : R_SPANCHUNK_AT);
    int64_t hours[64];
    size_t nh = 0;
    int rc = 0, src;
    sqlite3_bind_int64(hs, 1, sr->h0);
    sqlite3_bind_int64(hs, 2, sr->h1);
    while ((src = sqlite3_step(hs)) == SQLITE_ROW && nh < sizeof hours / sizeof hours[0])
        hours[nh++] = sqlite3_column_int64(hs, 0);
    sqlite3_reset(hs);
    if (src == SQLITE_ROW) { /* a range of more hours than that: per span, as before */
        for (size_t i = 0; i < nkeys && !rc; i++)
            rc = span_values(q, keys[i], sr->h0, sr->h1, NULL, sr->chunks, ck);
        return rc;
    }
    if (src != SQLITE_DONE)
        return rq_dberr(q, src, R_SPAN_HOURS_DESC);
    for (size_t h = nh; h-- > 0 && !rc;) /* ascending */
        for (size_t i = 0; i < nkeys && !rc; i++) {
            sqlite3_bind_int64(at, 1, hours[h]);
            sqlite3_bind_int64(at, 2, keys[i]);
            rc = read_chunks(q, at, R_SPANCHUNKS, 2, ck);
        }
    return rc;
}

int sqs_span_stacks(store *st, const store_query *query, const uint8_t (*span_ids)[8], size_t nids,
                    sp_arena *a, store_stacks *out, sp_err *err)
{
    rq q;
    int rc = rq_begin(&q, st, NULL, query, a, err);
    if (rc)
        return rc;
    store_agg vals;
    store_agg_init(&vals);
    span_read sr;
    rc = span_read_begin(&q, query, &sr);
    chunk_ctx ck = {.q = &q, .vals = &vals, .allowed = &sr.allowed};
    size_t nkeys = 0;
    int64_t *keys = rc ? NULL : span_keys(&q, span_ids, nids, &nkeys);
    if (!rc && !keys)
        rc = rq_nomem(&q);
    if (!rc && sr.n && !sr.rows && nkeys > SPAN_SET_MIN)
        rc = span_set_values(&q, keys, nkeys, &sr, &ck);
    else
        for (size_t i = 0; i < nkeys && sr.n && !rc; i++)
            rc = span_values(&q, keys[i], sr.h0, sr.h1, sr.rows, sr.chunks, &ck);
    if (!rc)
        rc = build_stacks(&q, &vals, query->detail, out);
    if (!rc && sr.n) {
        int64_t *contrib = sp_arena_calloc(a, sr.n, sizeof *contrib);
        for (size_t i = 0; contrib && i < sr.n; i++)
            contrib[i] = store_agg_find(&sr.allowed, sr.v[i].id, 0, 0, 0)->sum;
        out->period = contrib ? pick_period(contrib, sr.v, sr.n) : 0;
    }
    store_chunk_decoder_free(&ck.dec);
    store_agg_free(&vals);
    store_agg_free(&sr.allowed);
    rq_end(&q);
    return rc;
}

int sqs_span_totals(store *st, const store_query *query, const uint8_t (*span_ids)[8], size_t nids,
                    store_span_total *out, sp_err *err)
{
    rq q;
    /* No answer is built in an arena: the query's own bookkeeping goes in a small one. */
    sp_arena *a = sp_arena_new(0);
    if (!a)
        return sp_fail(err, SP_ENOMEM, "out of memory");
    int rc = rq_begin(&q, st, NULL, query, a, err);
    if (rc) {
        sp_arena_free(a);
        return rc;
    }
    store_agg vals;
    store_agg_init(&vals);
    span_read sr;
    rc = span_read_begin(&q, query, &sr);
    chunk_ctx ck = {.q = &q, .vals = &vals, .allowed = &sr.allowed};
    for (size_t i = 0; i < nids && sr.n && !rc; i++) {
        /* A repeated id answers what its first occurrence does (a trace's spans are few; long
         * lists -- span heatmaps -- come without repeats and skip the look-back). */
        if (nids <= 4096 && !span_wanted(span_ids, i)) {
            for (size_t j = 0; j < i; j++)
                if (memcmp(span_ids[j], span_ids[i], 8) == 0) {
                    out[i] = out[j];
                    break;
                }
            continue;
        }
        if (sqs_span_key(span_ids[i]) == 0)
            continue;
        store_agg_reset(&vals);
        rc = span_values(&q, sqs_span_key(span_ids[i]), sr.h0, sr.h1, sr.rows, sr.chunks, &ck);
        for (size_t k = 0; !rc && k < vals.cap; k++)
            if (vals.slots[k].used && vals.slots[k].sum) {
                out[i].value = sp_sat_add(out[i].value, vals.slots[k].sum);
                out[i].stacks++;
            }
    }
    store_chunk_decoder_free(&ck.dec);
    store_agg_free(&vals);
    store_agg_free(&sr.allowed);
    rq_end(&q);
    sp_arena_free(a);
    return rc;
}
