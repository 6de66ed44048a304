/* Names of native frames in the SQLite backend: the `symbol` table (schema version 4) as the
 * cache in front of the symbolizer the program gave (store_options.symbolizer).
 *
 * A query that meets a native location without lines looks, in order: in the symbol table (its
 * read snapshot), in the names other queries found and the writer has not committed yet, then
 * asks the symbolizer, which answers at once (a debug file not there yet is asked for, in the
 * background). sqlite_stacks.c then waits, within the query's budget, for what was asked for
 * and names the answer again when something arrived. Found and final answers go to
 * the writer, which keeps them in a small transaction of its own between ingest batches; a query
 * never writes and never waits for the writer.
 *
 * Invariants:
 *   Y1. Only final answers are kept (STORE_SYM_FOUND, STORE_SYM_NONE): a frame that may be
 *       named later is asked again by the next query.
 *   Y2. Pending names are bounded (SQS_SYM_PENDING_MAX); past it they are not kept (the next
 *       query asks the symbolizer again), never queued without bound.
 *   Y3. A symbol row's blob is only trusted after decoding checks every length (a damaged row
 *       is treated as absent).
 *   Y4. A name the writer committed stays findable in memory until every query whose snapshot
 *       may predate that commit has ended: commits are numbered (sym_seq), a query notes the
 *       number before its snapshot is taken, and a retired generation is freed only when every
 *       reading query noted its number or a later one. (Keeping only the last generation let a
 *       slow query, begun before a commit, miss names that two later flushes had retired.)
 */
#include "sqlite_read.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SQS_SYM_PENDING_MAX 65536

typedef struct sqs_sym_node {
    struct sqs_sym_node *next;
    int64_t build_id, address;
    size_t len;
    uint8_t blob[];
} sqs_sym_node;

static int64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* ---- the blob: varint n, then per frame: varint length + function, varint length + file,
 * zigzag line, zigzag start line ----------------------------------------------------------------
 */

static uint64_t zig(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static int64_t zag(uint64_t v)
{
    return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

static size_t encoded_size(const store_sym_frame *f, size_t n)
{
    size_t len = 10;
    for (size_t i = 0; i < n; i++)
        len += 40 + strlen(f[i].function) + strlen(f[i].file);
    return len;
}

static size_t encode(uint8_t *out, const store_sym_frame *f, size_t n)
{
    size_t o = store_varint_put(out, n);
    for (size_t i = 0; i < n; i++) {
        size_t fl = strlen(f[i].function), il = strlen(f[i].file);
        o += store_varint_put(out + o, fl);
        memcpy(out + o, f[i].function, fl);
        o += fl;
        o += store_varint_put(out + o, il);
        memcpy(out + o, f[i].file, il);
        o += il;
        o += store_varint_put(out + o, zig(f[i].line));
        o += store_varint_put(out + o, zig(f[i].start_line));
    }
    return o;
}

static const char *take_str(const uint8_t **p, const uint8_t *end, sp_arena *a, int *bad)
{
    uint64_t len;
    if (store_varint_get(p, end, &len) || len > (uint64_t)(end - *p)) {
        *bad = 1;
        return "";
    }
    const char *s = sp_arena_strndup(a, (const char *)*p, (size_t)len);
    *p += len;
    if (!s)
        *bad = 2;
    return s ? s : "";
}

/* Y3: 0, 1 (damaged: treat as absent) or SP_ENOMEM. */
static int decode(const uint8_t *p, size_t len, sp_arena *a, store_sym_frame **out, size_t *n)
{
    const uint8_t *end = p + len;
    uint64_t count;
    *out = NULL;
    *n = 0;
    if (store_varint_get(&p, end, &count) || count > len)
        return 1;
    if (!count)
        return 0;
    store_sym_frame *f = sp_arena_calloc(a, (size_t)count, sizeof *f);
    if (!f)
        return SP_ENOMEM;
    int bad = 0;
    for (uint64_t i = 0; i < count && !bad; i++) {
        f[i].function = take_str(&p, end, a, &bad);
        f[i].file = take_str(&p, end, a, &bad);
        uint64_t line = 0, start = 0;
        if (!bad && (store_varint_get(&p, end, &line) || store_varint_get(&p, end, &start)))
            bad = 1;
        f[i].line = zag(line);
        f[i].start_line = zag(start);
        if (!bad && !*f[i].function)
            bad = 1;
    }
    if (bad)
        return bad == 2 ? SP_ENOMEM : 1;
    *out = f;
    *n = (size_t)count;
    return 0;
}

/* ---- pending names ------------------------------------------------------------------------------
 */

void sqs_sym_gen_free(struct sqs_sym_gen *g)
{
    sqs_sym_node *e = g->head;
    while (e) {
        sqs_sym_node *next = e->next;
        free(e);
        e = next;
    }
    store_agg_free(&g->map);
    memset(g, 0, sizeof *g);
}

static const sqs_sym_node *gen_find(const struct sqs_sym_gen *g, int64_t bid, int64_t addr)
{
    store_agg_entry *e = g->n ? store_agg_find((store_agg *)&g->map, bid, addr, 0, 0) : NULL;
    return e ? (const sqs_sym_node *)(intptr_t)e->sum : NULL;
}

/* Under mu: the pending node of (build id, address), or NULL. */
static const sqs_sym_node *pending_find(sqs_store *s, int64_t bid, int64_t addr)
{
    const sqs_sym_node *n = gen_find(&s->sym_new, bid, addr);
    if (!n)
        n = gen_find(&s->sym_flushing, bid, addr);
    for (const struct sqs_sym_gen *g = s->sym_retired; g && !n; g = g->older)
        n = gen_find(g, bid, addr);
    return n;
}

void sqs_symbols_reader(sqs_store *s, sqs_reader *r, int reading)
{
    pthread_mutex_lock(&s->mu);
    r->reading = reading;
    r->sym_seq = s->sym_seq;
    pthread_mutex_unlock(&s->mu);
}

void sqs_symbols_retire(sqs_store *s)
{
    struct sqs_sym_gen *g = malloc(sizeof *g);
    if (g) {
        *g = s->sym_flushing;
        g->seq = ++s->sym_seq;
        g->older = s->sym_retired;
        s->sym_retired = g;
    } else {
        sqs_sym_gen_free(&s->sym_flushing); /* only the in-memory copy is lost */
    }
    memset(&s->sym_flushing, 0, sizeof s->sym_flushing);
    uint64_t oldest = UINT64_MAX; /* the earliest commit number a reading query noted */
    pthread_mutex_lock(&s->pool_mu);
    for (size_t i = 0; i < s->nreaders_open; i++)
        if (s->readers[i]->reading && s->readers[i]->sym_seq < oldest)
            oldest = s->readers[i]->sym_seq;
    pthread_mutex_unlock(&s->pool_mu);
    /* Generations committed at or before `oldest` are in every running query's snapshot. */
    struct sqs_sym_gen **link = &s->sym_retired;
    while (*link && (*link)->seq > oldest)
        link = &(*link)->older;
    while (*link) {
        struct sqs_sym_gen *old = *link;
        *link = old->older;
        sqs_sym_gen_free(old);
        free(old);
    }
}

/* Hands a final answer to the writer (Y1, Y2). Failures only lose the cache row. */
static void pending_add(sqs_store *s, int64_t bid, int64_t addr, const store_sym_frame *f, size_t n)
{
    size_t cap = encoded_size(f, n);
    sqs_sym_node *node = malloc(sizeof *node + cap);
    if (!node)
        return;
    node->build_id = bid;
    node->address = addr;
    node->len = encode(node->blob, f, n);
    pthread_mutex_lock(&s->mu);
    int created = 0;
    store_agg_entry *e = s->sym_new.n < SQS_SYM_PENDING_MAX
                             ? store_agg_get(&s->sym_new.map, bid, addr, 0, 0, &created)
                             : NULL;
    if (e && created) {
        e->sum = (int64_t)(intptr_t)node;
        node->next = s->sym_new.head;
        s->sym_new.head = node;
        s->sym_new.n++;
        node = NULL;
        pthread_cond_signal(&s->wake);
    }
    pthread_mutex_unlock(&s->mu);
    free(node);
}

void sqs_symbols_write(sqs_store *s)
{
    sqs_writer *w = &s->w;
    sp_err err = {0};
    if (sqs_run(w, W_BEGIN, &err))
        return;
    sqlite3_stmt *st = w->st[W_SYMBOL_INS];
    for (const sqs_sym_node *e = s->sym_flushing.head; e; e = e->next) {
        sqlite3_bind_int64(st, 1, e->build_id);
        sqlite3_bind_int64(st, 2, e->address);
        sqlite3_bind_blob(st, 3, e->blob, (int)e->len, SQLITE_STATIC);
        int rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc != SQLITE_DONE) {
            sqs_rollback(w);
            return;
        }
    }
    if (sqs_run(w, W_COMMIT, &err))
        sqs_rollback(w);
}

/* ---- lookups ------------------------------------------------------------------------------------
 */

static int from_table(rq *q, int64_t bid, int64_t addr, store_sym_frame **f, size_t *n, int *found)
{
    *found = 0;
    sqlite3_stmt *st = rq_stmt(q, R_SYMBOL);
    if (!st)
        return rq_prep_fail(q, R_SYMBOL);
    sqlite3_bind_int64(st, 1, bid);
    sqlite3_bind_int64(st, 2, addr);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        int d = decode(sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0), q->a, f, n);
        sqlite3_reset(st);
        if (d < 0)
            return rq_nomem(q);
        *found = d == 0;
        return 0;
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : rq_dberr(q, rc, R_SYMBOL);
}

static int from_pending(rq *q, int64_t bid, int64_t addr, store_sym_frame **f, size_t *n,
                        int *found)
{
    *found = 0;
    pthread_mutex_lock(&q->s->mu);
    const sqs_sym_node *node = pending_find(q->s, bid, addr);
    int d = node ? decode(node->blob, node->len, q->a, f, n) : 1;
    pthread_mutex_unlock(&q->s->mu);
    if (d < 0)
        return rq_nomem(q);
    *found = d == 0;
    return 0;
}

int sqs_symbolize(rq *q, int64_t bid, const char *build_id, uint64_t address, store_sym_frame **f,
                  size_t *n, int *status)
{
    *f = NULL;
    *n = 0;
    *status = STORE_SYM_LATER;
    const store_symbolizer *sy = q->s->opt.symbolizer;
    if (!sy || !sy->lookup)
        return 0;
    int64_t addr = (int64_t)address;
    int found = 0;
    int rc = from_table(q, bid, addr, f, n, &found);
    if (!rc && !found)
        rc = from_pending(q, bid, addr, f, n, &found);
    if (rc)
        return rc;
    if (found) {
        *status = *n ? STORE_SYM_FOUND : STORE_SYM_NONE;
        return 0;
    }
    if (!q->sym_deadline) {
        q->sym_deadline = mono_ns() + (sy->budget_ns > 0 ? sy->budget_ns : 2000000000LL);
        q->sym_since = sy->arrivals ? sy->arrivals(sy->ctx) : 0;
    }
    int st = sy->lookup(sy->ctx, build_id, address, 0, q->a, f, n);
    if (st == STORE_SYM_FOUND && *n) {
        *status = STORE_SYM_FOUND;
        pending_add(q->s, bid, addr, *f, *n);
    } else if (st == STORE_SYM_NONE || st == STORE_SYM_FOUND) {
        *status = STORE_SYM_NONE;
        *f = NULL;
        *n = 0;
        pending_add(q->s, bid, addr, NULL, 0);
    } else {
        *f = NULL;
        *n = 0;
    }
    return 0;
}
