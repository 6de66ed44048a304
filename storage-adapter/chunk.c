#include "chunk.h"

#include <stdlib.h>
#include <string.h>
#include <zstd.h>

/* ---- value chunks ------------------------------------------------------------------------------
 */

/* Chunks this small stay plain: zstd's frame header would eat what it saves. */
#define CHUNK_ZSTD_MIN 96
/* The format byte. 0 and 1 (values as zigzag varints; written until schema 7) are still read. */
enum { CHUNK_VARINT = 0, CHUNK_VARINT_ZSTD = 1, CHUNK_BITS = 2, CHUNK_BITS_ZSTD = 3 };
/* Mean bit length of a chunk's values (after the unit) below which only varints are tried, and
 * from which only bit packing: counts are a few bits, off-CPU nanoseconds about 20. */
#define CHUNK_VARINT_ONLY 8
#define CHUNK_BITS_ONLY   16
/* A decoded chunk larger than this is malformed (a writer never makes one). */
#define CHUNK_RAW_MAX ((uint64_t)1 << 30)

static uint64_t zz(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static int64_t unzz(uint64_t v)
{
    return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

static uint64_t gcd64(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static int reserve(uint8_t **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 4096;
    while (n < need)
        n *= 2;
    uint8_t *q = realloc(*p, n);
    if (!q)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

void store_chunk_coder_free(store_chunk_coder *c)
{
    ZSTD_freeCCtx(c->zc);
    free(c->raw);
    free(c->out);
    free(c->bits);
    free(c->alt);
    memset(c, 0, sizeof *c);
}

/* The entries are read through a stride, so store_agg and sum-map entries share one coder:
 * entry i's keys at base + i * stride + key_off (and the next int64 when nk = 2), its value at
 * base + i * stride + sum_off. */
typedef struct chunk_src {
    const char *base;
    size_t stride, key_off, sum_off;
} chunk_src;

static inline int64_t src_key(const chunk_src *s, size_t i, int which)
{
    int64_t v;
    memcpy(&v, s->base + i * s->stride + s->key_off + (size_t)which * sizeof v, sizeof v);
    return v;
}

static inline int64_t src_sum(const chunk_src *s, size_t i)
{
    int64_t v;
    memcpy(&v, s->base + i * s->stride + s->sum_off, sizeof v);
    return v;
}

/* Bits appended least significant first; at most 32 at a time on top of fewer than 8 pending. */
typedef struct bitw {
    uint8_t *out;
    size_t k;
    uint64_t acc;
    int nacc;
} bitw;

static void bits_put(bitw *w, uint64_t v, int nbits)
{
    while (nbits > 0) {
        int take = nbits > 32 ? 32 : nbits;
        w->acc |= (v & (((uint64_t)1 << take) - 1)) << w->nacc;
        w->nacc += take;
        v >>= take;
        nbits -= take;
        while (w->nacc >= 8) {
            w->out[w->k++] = (uint8_t)w->acc;
            w->acc >>= 8;
            w->nacc -= 8;
        }
    }
}

static int bit_length(uint64_t u)
{
    return u ? 64 - __builtin_clzll(u) : 0;
}

/* Format 2's value column: each value's bit length, one byte per entry, at r + k (returns the
 * new k), and every value without its leading 1 bit, packed into bits (*nbits bytes). */
static size_t put_values_bits(uint8_t *r, size_t k, uint8_t *bits, size_t *nbits,
                              const chunk_src *e, size_t n, uint64_t unit)
{
    bitw w = {bits, 0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        uint64_t u = zz(src_sum(e, i) / (int64_t)unit);
        int len = bit_length(u);
        r[k++] = (uint8_t)len;
        if (len > 1)
            bits_put(&w, u, len - 1);
    }
    if (w.nacc)
        w.out[w.k++] = (uint8_t)w.acc;
    *nbits = w.k;
    return k;
}

/* One candidate blob into *buf: the format byte, then front (plain), or front zstd'd when it is
 * large enough and that pays (format + 1: the varint length of front, for format 3 also the
 * zstd frame's size, the frame), then tail as it is. */
static int emit(store_chunk_coder *c, int format, const uint8_t *front, size_t nfront,
                const uint8_t *tail, size_t ntail, int compress, uint8_t **buf, size_t *cap,
                size_t *len)
{
    size_t plain = 1 + nfront + ntail;
    if (reserve(buf, cap, plain))
        return -1;
    if (compress && nfront >= CHUNK_ZSTD_MIN) {
        size_t bound = 1 + 2 * STORE_VARINT_MAX + ZSTD_compressBound(nfront) + ntail;
        if (!c->zc && !(c->zc = ZSTD_createCCtx()))
            return -1;
        if (reserve(buf, cap, bound))
            return -1;
        uint8_t *o = *buf;
        o[0] = (uint8_t)(format + 1);
        size_t h = 1 + store_varint_put(o + 1, nfront);
        /* format 3 says where the frame ends (its tail follows); format 1 has no tail */
        size_t room = h + (format == CHUNK_BITS ? STORE_VARINT_MAX : 0);
        size_t z = ZSTD_compressCCtx(c->zc, o + room, *cap - room, front, nfront, 1);
        if (!ZSTD_isError(z)) {
            size_t zh = format == CHUNK_BITS ? store_varint_put(o + h, z) : 0;
            if (h + zh + z + ntail < plain) {
                memmove(o + h + zh, o + room, z);
                if (ntail)
                    memcpy(o + h + zh + z, tail, ntail);
                *len = h + zh + z + ntail;
                return 0;
            }
        }
    }
    (*buf)[0] = (uint8_t)format;
    memcpy(*buf + 1, front, nfront);
    if (ntail) /* tail is NULL when there is none */
        memcpy(*buf + 1 + nfront, tail, ntail);
    *len = plain;
    return 0;
}

/* Long because both candidate codings share the key columns written here. The values are coded
 * one or two ways (by their mean bit length) and the smaller blob is kept: as zigzag varints
 * (format 0/1: counts and multiples of a period, which zstd shrinks further), and as bit lengths
 * plus packed bits (format 2/3: off-CPU nanoseconds spread over many octaves, whose low bits are
 * noise; zstd then codes only the keys and the lengths, so the noise does not flatten its entropy
 * tables). */
static int chunk_encode(store_chunk_coder *c, const chunk_src *e, size_t n, int nk, int compress,
                        const uint8_t **blob, size_t *len)
{
    if (reserve(&c->raw, &c->raw_cap, (size_t)(nk + 1) * n * STORE_VARINT_MAX + 32) ||
        reserve(&c->bits, &c->bits_cap, n * 8 + 8))
        return -1;
    uint64_t unit = 0;
    for (size_t i = 0; i < n && unit != 1; i++) {
        int64_t s = src_sum(e, i);
        unit = gcd64(unit, s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s);
    }
    if (!unit)
        unit = 1;
    uint8_t *r = c->raw;
    size_t k = store_varint_put(r, n);
    k += store_varint_put(r + k, unit);
    int64_t prev = 0;
    for (size_t i = 0; i < n; i++) {
        /* deltas wrap (decode adds them back the same way): no signed overflow on any key */
        int64_t k0 = src_key(e, i, 0);
        k += store_varint_put(r + k, zz((int64_t)((uint64_t)k0 - (uint64_t)prev)));
        prev = k0;
    }
    if (nk == 2) {
        int64_t prev1 = 0;
        for (size_t i = 0; i < n; i++) {
            int same = i > 0 && src_key(e, i, 0) == src_key(e, i - 1, 0);
            int64_t k1 = src_key(e, i, 1);
            k +=
                store_varint_put(r + k, zz((int64_t)((uint64_t)k1 - (uint64_t)(same ? prev1 : 0))));
            prev1 = k1;
        }
    }
    /* Only values of middling size are coded both ways (zstd twice costs the writer): small
     * ones (counts, periods) take varints, large ones (nanoseconds) bits. */
    uint64_t bits = 0;
    for (size_t i = 0; i < n; i++)
        bits += (uint64_t)bit_length(zz(src_sum(e, i) / (int64_t)unit));
    int try_varint = bits < (uint64_t)CHUNK_BITS_ONLY * n;
    int try_bits = bits >= (uint64_t)CHUNK_VARINT_ONLY * n;
    size_t keys = k, nbits, lv = SIZE_MAX, lb = SIZE_MAX;
    if (try_varint) {
        for (size_t i = 0; i < n; i++)
            k += store_varint_put(r + k, zz(src_sum(e, i) / (int64_t)unit));
        if (emit(c, CHUNK_VARINT, r, k, NULL, 0, compress, &c->out, &c->out_cap, &lv))
            return -1;
    }
    if (try_bits) {
        k = put_values_bits(r, keys, c->bits, &nbits, e, n, unit);
        if (emit(c, CHUNK_BITS, r, k, c->bits, nbits, compress, &c->alt, &c->alt_cap, &lb))
            return -1;
    }
    *blob = lb < lv ? c->alt : c->out;
    *len = lb < lv ? lb : lv;
    return 0;
}

int store_chunk_encode(store_chunk_coder *c, const store_agg_entry *e, size_t n, int key0, int nk,
                       const uint8_t **blob, size_t *len)
{
    chunk_src s = {(const char *)e, sizeof *e,
                   offsetof(store_agg_entry, k) + (size_t)key0 * sizeof(int64_t),
                   offsetof(store_agg_entry, sum)};
    return chunk_encode(c, &s, n, nk, 1, blob, len);
}

int store_chunk_encode_sum3(store_chunk_coder *c, const store_sum3_entry *e, size_t n, int compress,
                            const uint8_t **blob, size_t *len)
{
    chunk_src s = {(const char *)e, sizeof *e, offsetof(store_sum3_entry, k) + 2 * sizeof(int64_t),
                   offsetof(store_sum3_entry, sum)};
    return chunk_encode(c, &s, n, 1, compress, blob, len);
}

int store_chunk_packed(const uint8_t *blob, size_t len)
{
    return !len || blob[0] == CHUNK_VARINT_ZSTD || blob[0] == CHUNK_BITS_ZSTD ||
           len < 1 + CHUNK_ZSTD_MIN;
}

void store_chunk_decoder_free(store_chunk_decoder *d)
{
    ZSTD_freeDCtx(d->zd);
    free(d->scratch);
    memset(d, 0, sizeof *d);
}

/* Format 2's value column: n bit lengths, then the packed values, read in entry order. */
typedef struct bitr {
    const uint8_t *len, *bits;
    uint64_t acc;
    int nacc;
} bitr;

/* Checks the column: n lengths of at most 64 bits at p, then (bits, from where the lengths end
 * in format 2, after the zstd frame in format 3) exactly the bytes their values take up to end,
 * so nothing is read past it and nothing is left over. */
static int values_open(bitr *r, const uint8_t *p, const uint8_t *bits, const uint8_t *end,
                       uint64_t n)
{
    uint64_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (p[i] > 64)
            return -1;
        total += p[i] > 1 ? p[i] - 1u : 0;
    }
    if ((total + 7) / 8 != (uint64_t)(end - bits))
        return -1;
    *r = (bitr){p, bits, 0, 0};
    return 0;
}

/* The next zigzagged value (values_open checked that its bits are there). */
static uint64_t values_next(bitr *r)
{
    int len = *r->len++, need = len > 1 ? len - 1 : 0;
    uint64_t v = 0;
    for (int got = 0; got < need;) {
        if (!r->nacc) {
            r->acc = *r->bits++;
            r->nacc = 8;
        }
        int take = need - got < r->nacc ? need - got : r->nacc;
        v |= (r->acc & (((uint64_t)1 << take) - 1)) << got;
        r->acc >>= take;
        r->nacc -= take;
        got += take;
    }
    return len ? v | (uint64_t)1 << (len - 1) : 0;
}

/* Long because it reads the four formats' framings and walks the columns in one pass. */
int store_chunk_decode(const uint8_t *blob, size_t len, int nk, store_chunk_decoder *d,
                       int (*fn)(void *ctx, int64_t k0, int64_t k1, int64_t v), void *ctx)
{
    if (!len || blob[0] > CHUNK_BITS_ZSTD)
        return -1;
    const uint8_t *p = blob + 1, *end = blob + len;
    const uint8_t *tail = NULL, *tail_end = end; /* format 3: the packed values after the frame */
    int bits = blob[0] >= CHUNK_BITS;
    if (blob[0] & 1) { /* formats 1 and 3: zstd of the plain coding, after its length */
        uint64_t raw, zlen = 0;
        if (store_varint_get(&p, end, &raw) || raw > CHUNK_RAW_MAX)
            return -1;
        if (bits) {
            if (store_varint_get(&p, end, &zlen) || zlen > (uint64_t)(end - p))
                return -1;
            tail = p + zlen;
        } else {
            zlen = (uint64_t)(end - p);
        }
        if (reserve(&d->scratch, &d->cap, raw ? raw : 1))
            return -2;
        if (!d->zd && !(d->zd = ZSTD_createDCtx()))
            return -2;
        size_t got = ZSTD_decompressDCtx(d->zd, d->scratch, raw, p, (size_t)zlen);
        if (ZSTD_isError(got) || got != raw)
            return -1;
        p = d->scratch;
        end = p + raw;
    }
    uint64_t n, unit;
    if (store_varint_get(&p, end, &n) || store_varint_get(&p, end, &unit) ||
        n > (uint64_t)(end - p))
        return -1;
    /* Column cursors over the same bytes: find where each column starts. */
    const uint8_t *col[3];
    col[0] = p;
    for (int c = 0; c < nk; c++) {
        const uint8_t *q = col[c];
        for (uint64_t i = 0; i < n; i++) {
            uint64_t v;
            if (store_varint_get(&q, end, &v))
                return -1;
        }
        col[c + 1] = q;
    }
    const uint8_t *vals = col[nk];
    bitr br = {0};
    if (bits) {
        if (n > (uint64_t)(end - vals) || (tail && vals + n != end))
            return -1;
        if (values_open(&br, vals, tail ? tail : vals + n, tail_end, n))
            return -1;
    }
    int64_t k0 = 0, k1 = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t d0, d1 = 0, v;
        if (store_varint_get(&col[0], end, &d0) || (nk == 2 && store_varint_get(&col[1], end, &d1)))
            return -1;
        if (bits)
            v = values_next(&br);
        else if (store_varint_get(&vals, end, &v))
            return -1;
        k0 = (int64_t)((uint64_t)k0 + (uint64_t)unzz(d0));
        if (nk == 2)
            k1 = (int64_t)((uint64_t)(i > 0 && d0 == 0 ? k1 : 0) + (uint64_t)unzz(d1));
        int rc = fn(ctx, k0, k1, (int64_t)((uint64_t)unzz(v) * unit));
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- chunk merge -------------------------------------------------------------------------------
 * Invariants:
 *   R1. e[at[r]] .. e[at[r + 1] - 1] (the last run: up to e[n - 1]) is run r, the entries of one
 *       chunk in the order it holds them; unsorted is set when some run's keys go down anywhere.
 *   R2. The sum keeps every entry's value: equal keys (across runs, or within a run) are summed
 *       once all runs are in key order, never dropped or counted twice.
 * Trade-off: a bucket's chunks are few (2-3 at full ingest), so merging neighbouring runs pass
 * by pass (log2 of the runs' count passes over the entries) beats a heap of cursors. */

void store_chunk_merge_free(store_chunk_merge *m)
{
    free(m->e);
    free(m->tmp);
    free(m->at);
    memset(m, 0, sizeof *m);
}

void store_chunk_merge_reset(store_chunk_merge *m)
{
    m->n = m->nruns = 0;
    m->unsorted = 0;
}

/* Room for `need` items of `size` bytes in *p (capacity *cap items), doubling. */
static int grow_items(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 1024;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * size);
    if (!q)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

static int merge_take(void *ctx, int64_t k0, int64_t k1, int64_t v)
{
    (void)k1;
    store_chunk_merge *m = ctx;
    if (m->n == m->cap && grow_items((void **)&m->e, &m->cap, m->n + 1, sizeof *m->e))
        return -2;
    if (m->n > m->at[m->nruns - 1] && k0 < m->e[m->n - 1].k)
        m->unsorted = 1; /* R1 */
    m->e[m->n++] = (store_kv_run){k0, v};
    return 0;
}

int store_chunk_merge_add(store_chunk_merge *m, const uint8_t *blob, size_t len,
                          store_chunk_decoder *d)
{
    if (grow_items((void **)&m->at, &m->at_cap, m->nruns + 1, sizeof *m->at))
        return -2;
    m->at[m->nruns++] = m->n;
    return store_chunk_decode(blob, len, 1, d, merge_take, m);
}

static int kv_run_cmp(const void *a, const void *b)
{
    int64_t x = ((const store_kv_run *)a)->k, y = ((const store_kv_run *)b)->k;
    return (x > y) - (x < y);
}

/* Merges runs r and r + 1 of src (bounds in at[], total n) into dst at the same offsets. */
static void merge_two(const store_kv_run *src, store_kv_run *dst, size_t from, size_t mid,
                      size_t to)
{
    size_t i = from, j = mid, o = from;
    while (i < mid && j < to)
        dst[o++] = src[j].k < src[i].k ? src[j++] : src[i++];
    while (i < mid)
        dst[o++] = src[i++];
    while (j < to)
        dst[o++] = src[j++];
}

int64_t store_chunk_merge_sum(store_chunk_merge *m, int64_t k0, int64_t k1, store_sum3_entry *out)
{
    store_kv_run *v = m->e;
    if (m->unsorted) {
        qsort(v, m->n, sizeof *v, kv_run_cmp);
    } else if (m->nruns > 1) {
        if (grow_items((void **)&m->tmp, &m->tmp_cap, m->n, sizeof *m->tmp))
            return -1;
        store_kv_run *src = m->e, *dst = m->tmp;
        size_t nr = m->nruns;
        while (nr > 1) { /* runs 2i and 2i + 1 become run i (R1 kept for the new runs) */
            size_t w = 0;
            for (size_t r = 0; r < nr; r += 2) {
                size_t from = m->at[r], mid = r + 1 < nr ? m->at[r + 1] : m->n;
                size_t to = r + 2 < nr ? m->at[r + 2] : m->n;
                merge_two(src, dst, from, mid, to);
                m->at[w++] = from;
            }
            nr = w;
            store_kv_run *t = src;
            src = dst;
            dst = t;
        }
        v = src;
    }
    size_t n = 0;
    for (size_t i = 0; i < m->n;) { /* R2: equal keys are neighbours now */
        int64_t k = v[i].k;
        uint64_t sum = 0;
        for (; i < m->n && v[i].k == k; i++)
            sum += (uint64_t)v[i].v;
        if (sum)
            out[n++] = (store_sum3_entry){{k0, k1, k}, (int64_t)sum};
    }
    m->nruns = 0;
    return (int64_t)n;
}
