/* Span extras in the SQLite store (schema 6): each span's extras blob (otlp/span_extras.h) is
 * kept as two parts, so that what every span of a resource repeats is stored once and the
 * per-span rest is appended in arrival order instead of widening the random-keyed span row.
 *
 *   span_resource(id, hash, seen, data)   the head of a blob: its resource and scope fields
 *   span_extra(hour, seq, resource, data) the span's own fields (or the whole blob, resource 0)
 *   span.extra                            seq of the span's span_extra row in the span's hour
 *
 * Invariants (tests in tests/unit/test_store_sqlite.c):
 *
 *  X1. Byte for byte: a blob read back (sqs_extras_join) is the blob written. A blob is split
 *      only when it has exactly the shape otlp_span_extras() writes, ResourceSpans{1: resource?,
 *      2: ScopeSpans{1: scope?, 2: span}} in that order with minimal length varints; any other
 *      blob, and a blob with neither resource nor scope, is stored whole with resource 0.
 *  X2. A span_extra row has the hour of its span row, and seq numbers grow in arrival order
 *      within an hour (the writer keeps the next seq of the last few hours it wrote; a miss asks
 *      max(seq) of the hour), so new rows append to the end of their hour's key range.
 *      Retention deletes span_extra by whole hours from the front of the key, like span.
 *  X3. span_resource.seen is at least the hour of every span_extra row naming the resource:
 *      the writer raises it, in the transaction that writes the row, whenever a span of a later
 *      hour uses it. Retention deletes span_resource rows with seen before the cut hour after
 *      the span_extra rows of those hours, so a resource never goes before a row naming it.
 *      A span of an hour far in the future keeps its resource that long (it keeps its spans
 *      too); the table stays as small as the number of distinct resources of the retention.
 *  X4. The writer's resource cache (SQS_XRES_SLOTS slots, direct-mapped by content hash, full
 *      content compared on a hit) is cleared by a rollback (it may name rows or `seen` values
 *      the rollback undid) and whenever retention deletes span_resource rows.
 *  X5. A span written again (same hour, tenant and id) replaces its row; its earlier span_extra
 *      row is left unreferenced until retention deletes its hour. Readers join from the span
 *      row, so they never see it; a missing row or resource reads as no extras or no head.
 */
#include "sqlite_store.h"

#include <stdlib.h>
#include <string.h>

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* A length-delimited field with key `key` at b[*pos] ending at or before end, with a minimal
 * length varint: its payload, and *pos moves past it. NULL when b[*pos] is something else. */
static const uint8_t *field(const uint8_t *b, size_t *pos, size_t end, uint8_t key, size_t *len)
{
    size_t p = *pos;
    if (p >= end || b[p] != key)
        return NULL;
    p++;
    uint64_t v = 0;
    size_t start = p;
    for (int shift = 0;; shift += 7) {
        if (p >= end || shift > 28)
            return NULL;
        uint8_t c = b[p++];
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80))
            break;
    }
    if (p - start != varint_len(v) || v > end - p)
        return NULL;
    *len = (size_t)v;
    *pos = p + (size_t)v;
    return b + p;
}

int sqs_extras_split(const uint8_t *b, size_t n, sqs_extras_parts *out)
{
    memset(out, 0, sizeof *out);
    size_t pos = 0, nss = 0;
    out->res = field(b, &pos, n, 0x0a, &out->nres);    /* ResourceSpans.resource = 1 */
    const uint8_t *ss = field(b, &pos, n, 0x12, &nss); /* ResourceSpans.scope_spans = 2 */
    if (!ss || pos != n)
        return 0;
    size_t sp = (size_t)(ss - b), ssend = sp + nss;
    out->scope = field(b, &sp, ssend, 0x0a, &out->nscope); /* ScopeSpans.scope = 1 */
    out->span = field(b, &sp, ssend, 0x12, &out->nspan);   /* ScopeSpans.spans = 2 */
    if (!out->span || sp != ssend || (!out->res && !out->scope)) {
        memset(out, 0, sizeof *out);
        return 0;
    }
    return 1;
}

size_t sqs_extras_head(const sqs_extras_parts *p, uint8_t *out)
{
    size_t n = (p->res ? 1 + varint_len(p->nres) + p->nres : 0) +
               (p->scope ? 1 + varint_len(p->nscope) + p->nscope : 0);
    if (!out)
        return n;
    uint8_t *o = out;
    if (p->res) {
        *o++ = 0x0a;
        o = put_varint(o, p->nres);
        memcpy(o, p->res, p->nres);
        o += p->nres;
    }
    if (p->scope) {
        *o++ = 0x12;
        o = put_varint(o, p->nscope);
        memcpy(o, p->scope, p->nscope);
    }
    return n;
}

uint8_t *sqs_extras_join(const uint8_t *head, size_t nhead, const uint8_t *span, size_t nspan,
                         sp_arena *a, size_t *len)
{
    sqs_extras_parts p = {0};
    size_t pos = 0;
    p.res = field(head, &pos, nhead, 0x0a, &p.nres);
    p.scope = field(head, &pos, nhead, 0x12, &p.nscope);
    if (pos != nhead) /* a damaged head: the span's own fields still read */
        p.res = p.scope = NULL;
    size_t nss =
        (p.scope ? 1 + varint_len(p.nscope) + p.nscope : 0) + 1 + varint_len(nspan) + nspan;
    size_t total = (p.res ? 1 + varint_len(p.nres) + p.nres : 0) + 1 + varint_len(nss) + nss;
    uint8_t *b = sp_arena_alloc(a, total), *o = b;
    if (!b)
        return NULL;
    if (p.res) {
        *o++ = 0x0a;
        o = put_varint(o, p.nres);
        memcpy(o, p.res, p.nres);
        o += p.nres;
    }
    *o++ = 0x12;
    o = put_varint(o, nss);
    if (p.scope) {
        *o++ = 0x0a;
        o = put_varint(o, p.nscope);
        memcpy(o, p.scope, p.nscope);
        o += p.nscope;
    }
    *o++ = 0x12;
    o = put_varint(o, nspan);
    if (nspan)
        memcpy(o, span, nspan);
    *len = total;
    return b;
}

/* ---- writer (writer thread, inside its transaction) ------------------------------------------ */

static uint64_t fnv1a(const uint8_t *b, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

void sqs_extras_cache_clear(sqs_writer *w)
{
    for (size_t i = 0; i < SQS_XRES_SLOTS; i++) {
        free(w->xres[i].data);
        memset(&w->xres[i], 0, sizeof w->xres[i]);
    }
    memset(w->xseq, 0, sizeof w->xseq);
}

/* The id of resource head h (n bytes) with seen raised to at least hour, found or inserted. */
static int resolve_resource(sqs_writer *w, const uint8_t *h, size_t n, int32_t hour, int64_t *id,
                            sp_err *err)
{
    uint64_t hash = fnv1a(h, n);
    int64_t key = (int64_t)(hash >> 1);
    struct sqs_xres *slot = &w->xres[hash % SQS_XRES_SLOTS];
    int32_t seen = 0;
    int rc;
    if (slot->id && slot->hash == hash && slot->n == n && memcmp(slot->data, h, n) == 0) {
        *id = slot->id;
        seen = slot->seen;
    } else {
        sqlite3_bind_int64(w->st[W_XRES_FIND], 1, key);
        sqlite3_bind_blob(w->st[W_XRES_FIND], 2, h, (int)n, SQLITE_STATIC);
        rc = sqs_find(w, W_XRES_FIND, id, &seen, err);
        sqlite3_clear_bindings(w->st[W_XRES_FIND]);
        if (rc < 0)
            return rc;
        if (rc == 0) {
            sqlite3_stmt *st = w->st[W_XRES_INS];
            sqlite3_bind_int64(st, 1, key);
            sqlite3_bind_blob(st, 2, h, (int)n, SQLITE_STATIC);
            sqlite3_bind_int(st, 3, hour);
            rc = sqs_run(w, W_XRES_INS, err);
            sqlite3_clear_bindings(st);
            if (rc)
                return rc;
            *id = sqlite3_last_insert_rowid(w->db);
            seen = hour;
        }
        uint8_t *copy = malloc(n ? n : 1);
        free(slot->data);
        memset(slot, 0, sizeof *slot);
        if (copy) { /* out of memory: just not cached */
            memcpy(copy, h, n);
            *slot = (struct sqs_xres){.hash = hash, .id = *id, .seen = seen, .n = n, .data = copy};
        }
    }
    if (seen < hour) { /* X3 */
        sqlite3_bind_int64(w->st[W_XRES_SEEN], 1, *id);
        sqlite3_bind_int(w->st[W_XRES_SEEN], 2, hour);
        if ((rc = sqs_run(w, W_XRES_SEEN, err)))
            return rc;
        if (slot->id == *id)
            slot->seen = hour;
    }
    return 0;
}

/* The next seq of hour (X2). */
static int next_seq(sqs_writer *w, int64_t hour, int64_t *seq, sp_err *err)
{
    for (size_t i = 0; i < SQS_XSEQ_HOURS; i++)
        if (w->xseq[i].next && w->xseq[i].hour == hour) {
            *seq = w->xseq[i].next++;
            return 0;
        }
    int64_t max = 0;
    sqlite3_bind_int64(w->st[W_XSEQ_MAX], 1, hour);
    int rc = sqs_find(w, W_XSEQ_MAX, &max, NULL, err);
    if (rc < 0)
        return rc;
    /* Replace the slot of the oldest hour (or an empty one). */
    size_t victim = 0;
    for (size_t i = 1; i < SQS_XSEQ_HOURS; i++)
        if (!w->xseq[i].next || (w->xseq[victim].next && w->xseq[i].hour < w->xseq[victim].hour))
            victim = i;
    *seq = max + 1;
    w->xseq[victim].hour = hour;
    w->xseq[victim].next = max + 2;
    return 0;
}

int sqs_write_extras(sqs_writer *w, int64_t hour, const uint8_t *blob, size_t n, int64_t *seq,
                     sp_err *err)
{
    sqs_extras_parts p;
    int64_t res = 0;
    const uint8_t *data = blob;
    size_t ndata = n;
    int rc;
    if (sqs_extras_split(blob, n, &p)) {
        size_t nh = sqs_extras_head(&p, NULL);
        if (sqs_grow((void **)&w->buf, &w->buf_cap, nh ? nh : 1, 1))
            return sqs_oom(err);
        sqs_extras_head(&p, w->buf);
        if ((rc = resolve_resource(w, w->buf, nh, (int32_t)hour, &res, err)))
            return rc;
        data = p.span;
        ndata = p.nspan;
    }
    if ((rc = next_seq(w, hour, seq, err)))
        return rc;
    sqlite3_stmt *st = w->st[W_XINS];
    sqlite3_bind_int64(st, 1, hour);
    sqlite3_bind_int64(st, 2, *seq);
    sqlite3_bind_int64(st, 3, res);
    sqlite3_bind_blob(st, 4, ndata ? data : (const void *)"", (int)ndata, SQLITE_STATIC);
    rc = sqs_run(w, W_XINS, err);
    sqlite3_clear_bindings(st);
    return rc;
}
