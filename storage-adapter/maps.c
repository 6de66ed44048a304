#include "maps.h"

#include "../common/hugemem.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* ---- hashing -----------------------------------------------------------------------------------
 */

static inline uint64_t rotl64(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

/* Final avalanche: every input bit affects every output bit. */
static inline uint64_t fmix64(uint64_t h)
{
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ULL;
    h ^= h >> 29;
    h *= 0xa0761d6478bd642fULL;
    h ^= h >> 32;
    return h;
}

static inline uint64_t word_mix(uint64_t w)
{
    w *= 0x9fb21c651e98df25ULL;
    w = rotl64(w, 31);
    return w * 0xe7037ed1a0b428dbULL;
}

uint64_t store_hash64(const void *p, size_t n, uint64_t seed)
{
    const uint8_t *b = p;
    uint64_t h = seed ^ ((uint64_t)n * 0x8ebc6af09c88c6e3ULL);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, b, 8);
        h ^= word_mix(w);
        h = rotl64(h, 27) * 0x589965cc75374cc3ULL + 0x1d8e4e27c47d124fULL;
        b += 8;
        n -= 8;
    }
    if (n) {
        uint64_t w = 0;
        memcpy(&w, b, n);
        h ^= word_mix(w ^ ((uint64_t)n << 56));
        h = rotl64(h, 27) * 0x589965cc75374cc3ULL + 0x1d8e4e27c47d124fULL;
    }
    return fmix64(h);
}

void store_hash64x2(const void *p, size_t n, uint64_t seed1, uint64_t seed2, uint64_t *h1,
                    uint64_t *h2)
{
    const uint8_t *b = p;
    uint64_t len = (uint64_t)n * 0x8ebc6af09c88c6e3ULL;
    uint64_t x = seed1 ^ len, y = seed2 ^ len;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, b, 8);
        uint64_t m = word_mix(w);
        x = rotl64(x ^ m, 27) * 0x589965cc75374cc3ULL + 0x1d8e4e27c47d124fULL;
        y = rotl64(y ^ m, 27) * 0x589965cc75374cc3ULL + 0x1d8e4e27c47d124fULL;
        b += 8;
        n -= 8;
    }
    if (n) {
        uint64_t w = 0;
        memcpy(&w, b, n);
        uint64_t m = word_mix(w ^ ((uint64_t)n << 56));
        x = rotl64(x ^ m, 27) * 0x589965cc75374cc3ULL + 0x1d8e4e27c47d124fULL;
        y = rotl64(y ^ m, 27) * 0x589965cc75374cc3ULL + 0x1d8e4e27c47d124fULL;
    }
    *h1 = fmix64(x);
    *h2 = fmix64(y);
}

static inline uint64_t mix4(int64_t a, int64_t b, int64_t c, int64_t d)
{
    uint64_t h = word_mix((uint64_t)a) ^ rotl64(word_mix((uint64_t)b), 16) ^
                 rotl64(word_mix((uint64_t)c), 32) ^ rotl64(word_mix((uint64_t)d), 48);
    return fmix64(h);
}

/* ---- varints -----------------------------------------------------------------------------------
 */

size_t store_varint_put(uint8_t *out, uint64_t v)
{
    size_t i = 0;
    while (v >= 0x80) {
        out[i++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[i++] = (uint8_t)v;
    return i;
}

int store_varint_get(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;
    const uint8_t *q = *p;
    for (int shift = 0; shift < 70; shift += 7) {
        if (q >= end)
            return -1;
        uint8_t c = *q++;
        r |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *p = q;
            *v = r;
            return 0;
        }
    }
    return -1;
}

/* ---- dictionary cache --------------------------------------------------------------------------
 */

/* Growth moves the old table into the new one a few slots per put, as Redis's dict does:
 *   D1. While d->old is set, every key is in d->slots, in d->old, or in both; one in d->slots
 *       is the current one (puts go there or update d->old in place, never both).
 *   D2. old's slots below d->moved have been copied into d->slots unless d->slots already had
 *       their key (D1: the copy there is newer). old is never written by the move, so its probe
 *       chains stay whole and a lookup that misses d->slots can finish there.
 *   D3. The move ends before the next growth: DICT_MOVE_PER_PUT slots per put covers old (half
 *       the new capacity) well within the quarter of it that puts take to fill the new table to
 *       the next growth (nine 32nds when grown early, at 7/16 full); a growth that still
 *       finds old moves the rest first. */
#define DICT_MOVE_PER_PUT 16

void store_dict_init(store_dict *d, size_t max_entries)
{
    memset(d, 0, sizeof *d);
    d->max = max_entries ? max_entries : 1;
}

static void dict_drop_old(store_dict *d)
{
    sp_huge_free(d->old, d->old_cap * sizeof *d->old);
    d->old = NULL;
    d->old_cap = d->moved = 0;
}

void store_dict_free(store_dict *d)
{
    dict_drop_old(d);
    sp_huge_free(d->slots, d->cap * sizeof *d->slots);
    d->slots = NULL;
    d->cap = d->n = 0;
}

void store_dict_clear(store_dict *d)
{
    dict_drop_old(d);
    if (d->slots)
        memset(d->slots, 0, d->cap * sizeof *d->slots);
    d->n = 0;
    d->clears++;
}

static store_dict_entry *dict_probe(store_dict_entry *slots, size_t cap, uint64_t h1, uint64_t h2)
{
    size_t mask = cap - 1;
    for (size_t i = h1 & mask;; i = (i + 1) & mask) {
        store_dict_entry *e = &slots[i];
        if (!e->h1 && !e->h2)
            return NULL;
        if (e->h1 == h1 && e->h2 == h2)
            return e;
    }
}

store_dict_entry *store_dict_find(store_dict *d, uint64_t h1, uint64_t h2)
{
    if (!d->cap)
        return NULL;
    if (!h1 && !h2)
        h2 = 1; /* (0, 0) marks an empty slot */
    store_dict_entry *e = dict_probe(d->slots, d->cap, h1, h2);
    if (!e && d->old)
        e = dict_probe(d->old, d->old_cap, h1, h2); /* D2 */
    return e;
}

/* The slot of a key known to be absent from d->slots. */
static store_dict_entry *dict_empty_slot(store_dict *d, uint64_t h1)
{
    size_t mask = d->cap - 1, i = h1 & mask;
    while (d->slots[i].h1 || d->slots[i].h2)
        i = (i + 1) & mask;
    return &d->slots[i];
}

/* Copies up to k more of old's slots (D2); frees old when all are. */
static void dict_move(store_dict *d, size_t k)
{
    for (; k && d->moved < d->old_cap; k--, d->moved++) {
        const store_dict_entry *e = &d->old[d->moved];
        if ((e->h1 || e->h2) && !dict_probe(d->slots, d->cap, e->h1, e->h2))
            *dict_empty_slot(d, e->h1) = *e;
    }
    if (d->moved == d->old_cap)
        dict_drop_old(d);
}

static int dict_grow(store_dict *d, int populate)
{
    if (d->old)
        dict_move(d, SIZE_MAX); /* D3 */
    size_t ncap = d->cap ? d->cap * 2 : 1024;
    store_dict_entry *ns = sp_huge_calloc(sp_huge_bytes(ncap, sizeof *ns));
    if (!ns)
        return -1;
    if (populate)
        sp_huge_populate(ns, sp_huge_bytes(ncap, sizeof *ns));
    d->old = d->slots;
    d->old_cap = d->cap;
    d->moved = 0;
    d->slots = ns;
    d->cap = ncap;
    if (!d->old_cap)
        dict_drop_old(d);
    return 0;
}

store_dict_entry *store_dict_put(store_dict *d, uint64_t h1, uint64_t h2, int64_t id, int32_t seen)
{
    if (!h1 && !h2)
        h2 = 1;
    store_dict_entry *e = store_dict_find(d, h1, h2); /* D1: updated where it is */
    if (!e) {
        if (d->n >= d->max)
            store_dict_clear(d);
        if ((d->n + 1) * 2 > d->cap && dict_grow(d, 0) != 0) {
            store_dict_clear(d);
            if (!d->cap)
                return NULL;
        }
        e = dict_empty_slot(d, h1);
        e->h1 = h1;
        e->h2 = h2;
        d->n++;
    }
    e->id = id;
    e->seen = seen;
    if (d->old) {
        /* Copy e's values out first: the move may copy or free the slot e points at. */
        store_dict_entry v = *e;
        dict_move(d, DICT_MOVE_PER_PUT);
        e = dict_probe(d->slots, d->cap, v.h1, v.h2);
        if (!e)
            e = dict_probe(d->old, d->old_cap, v.h1, v.h2);
    }
    return e;
}

size_t store_dict_bytes(const store_dict *d)
{
    return (d->cap + d->old_cap) * sizeof *d->slots;
}

int store_dict_room_due(const store_dict *d)
{
    return d->cap && !d->old && d->cap / 2 < d->max && d->n * 16 >= d->cap * 7;
}

int store_dict_grow_now(store_dict *d)
{
    return dict_grow(d, 1);
}

/* ---- aggregation map ---------------------------------------------------------------------------
 */

void store_agg_init(store_agg *m)
{
    memset(m, 0, sizeof *m);
}

void store_agg_free(store_agg *m)
{
    sp_huge_free(m->slots, m->cap * sizeof *m->slots);
    memset(m, 0, sizeof *m);
}

void store_agg_reset(store_agg *m)
{
    if (m->slots && m->n)
        memset(m->slots, 0, m->cap * sizeof *m->slots);
    m->n = 0;
}

store_agg_entry *store_agg_find(const store_agg *m, int64_t k0, int64_t k1, int64_t k2, int64_t k3)
{
    if (!m->cap)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = mix4(k0, k1, k2, k3) & mask;; i = (i + 1) & mask) {
        store_agg_entry *e = &m->slots[i];
        if (!e->used)
            return NULL;
        if (e->k[0] == k0 && e->k[1] == k1 && e->k[2] == k2 && e->k[3] == k3)
            return e;
    }
}

static int agg_grow(store_agg *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 256;
    store_agg_entry *ns = sp_huge_calloc(sp_huge_bytes(ncap, sizeof *ns));
    if (!ns)
        return -1;
    size_t mask = ncap - 1;
    for (size_t j = 0; j < m->cap; j++) {
        store_agg_entry *e = &m->slots[j];
        if (!e->used)
            continue;
        size_t i = mix4(e->k[0], e->k[1], e->k[2], e->k[3]) & mask;
        while (ns[i].used)
            i = (i + 1) & mask;
        ns[i] = *e;
    }
    sp_huge_free(m->slots, m->cap * sizeof *m->slots);
    m->slots = ns;
    m->cap = ncap;
    return 0;
}

store_agg_entry *store_agg_get(store_agg *m, int64_t k0, int64_t k1, int64_t k2, int64_t k3,
                               int *created)
{
    store_agg_entry *e = store_agg_find(m, k0, k1, k2, k3);
    if (created)
        *created = 0;
    if (e)
        return e;
    if ((m->n + 1) * 4 > m->cap * 3 && agg_grow(m) != 0)
        return NULL;
    size_t mask = m->cap - 1, i = mix4(k0, k1, k2, k3) & mask;
    while (m->slots[i].used)
        i = (i + 1) & mask;
    e = &m->slots[i];
    e->k[0] = k0;
    e->k[1] = k1;
    e->k[2] = k2;
    e->k[3] = k3;
    e->sum = e->aux = 0;
    e->used = 1;
    e->ord = (uint32_t)m->n++;
    if (created)
        *created = 1;
    return e;
}

/* ---- sum map ------------------------------------------------------------------------------------
 */

/* Cheaper than mix4: three words, one avalanche (keys are ids and addresses, not adversarial
 * input; a bad spread costs probes, never correctness). */
static inline size_t sum3_hash(int64_t a, int64_t b, int64_t c)
{
    uint64_t h = (uint64_t)a * 0x9e3779b97f4a7c15ULL ^
                 rotl64((uint64_t)b * 0xc2b2ae3d27d4eb4fULL, 21) ^
                 rotl64((uint64_t)c * 0x165667b19e3779f9ULL, 42);
    h ^= h >> 31;
    h *= 0xd6e8feb86659fd93ULL;
    return (size_t)(h ^ h >> 32);
}

void store_sum3_free(store_sum3 *m)
{
    sp_huge_free(m->slots, m->cap * sizeof *m->slots);
    free(m->sort_scratch);
    memset(m, 0, sizeof *m);
}

void store_sum3_reset(store_sum3 *m)
{
    if (m->slots && m->n)
        memset(m->slots, 0, m->cap * sizeof *m->slots);
    m->n = 0;
}

static int sum3_grow(store_sum3 *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 1024;
    store_sum3_entry *ns = sp_huge_calloc(sp_huge_bytes(ncap, sizeof *ns));
    if (!ns)
        return -1;
    size_t mask = ncap - 1;
    for (size_t j = 0; j < m->cap; j++) {
        const store_sum3_entry *e = &m->slots[j];
        if (!e->k[0])
            continue;
        size_t i = sum3_hash(e->k[0], e->k[1], e->k[2]) & mask;
        while (ns[i].k[0])
            i = (i + 1) & mask;
        ns[i] = *e;
    }
    sp_huge_free(m->slots, m->cap * sizeof *m->slots);
    m->slots = ns;
    m->cap = ncap;
    return 0;
}

int64_t *store_sum3_at(store_sum3 *m, int64_t k0, int64_t k1, int64_t k2)
{
    if (!k0)
        return NULL;
    if ((m->n + 1) * 4 > m->cap * 3 && sum3_grow(m) != 0)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = sum3_hash(k0, k1, k2) & mask;; i = (i + 1) & mask) {
        store_sum3_entry *e = &m->slots[i];
        if (e->k[0] == k0 && e->k[1] == k1 && e->k[2] == k2)
            return &e->sum;
        if (!e->k[0]) {
            e->k[0] = k0;
            e->k[1] = k1;
            e->k[2] = k2;
            m->n++;
            return &e->sum;
        }
    }
}

static inline int sum3_less(const store_sum3_entry *x, const store_sum3_entry *y)
{
    if (x->k[0] != y->k[0])
        return x->k[0] < y->k[0];
    if (x->k[1] != y->k[1])
        return x->k[1] < y->k[1];
    return x->k[2] < y->k[2];
}

static int sum3_cmp(const void *a, const void *b)
{
    return sum3_less(a, b) ? -1 : sum3_less(b, a);
}

static inline void sum3_swap(store_sum3_entry *a, store_sum3_entry *b)
{
    store_sum3_entry t = *a;
    *a = *b;
    *b = t;
}

/* Quicksort with the comparison inlined (glibc's qsort calls back per comparison and copies
 * through a temporary buffer: 2 % of the server's CPU at full ingest). Median of three, insertion
 * sort below 16, and qsort() for a range that recursed too deep, so no input is quadratic. */
static void sum3_sort(store_sum3_entry *v, size_t n, int depth)
{
    while (n > 16) {
        if (depth-- == 0) {
            qsort(v, n, sizeof *v, sum3_cmp);
            return;
        }
        store_sum3_entry *a = v, *b = v + n / 2, *c = v + n - 1;
        if (sum3_less(b, a))
            sum3_swap(a, b);
        if (sum3_less(c, b)) {
            sum3_swap(b, c);
            if (sum3_less(b, a))
                sum3_swap(a, b);
        }
        store_sum3_entry pivot = *b;
        size_t i = 0, j = n - 1;
        for (;;) {
            while (sum3_less(&v[i], &pivot))
                i++;
            while (sum3_less(&pivot, &v[j]))
                j--;
            if (i >= j)
                break;
            sum3_swap(&v[i++], &v[j--]);
        }
        /* [0, j] <= pivot <= [j + 1, n): recurse into the smaller side, loop on the larger */
        size_t left = j + 1;
        if (left < n - left) {
            sum3_sort(v, left, depth);
            v += left;
            n -= left;
        } else {
            sum3_sort(v + left, n - left, depth);
            n = left;
        }
    }
    for (size_t i = 1; i < n; i++) {
        store_sum3_entry x = v[i];
        size_t j = i;
        for (; j > 0 && sum3_less(&x, &v[j - 1]); j--)
            v[j] = v[j - 1];
        v[j] = x;
    }
}

/* The rank of each distinct (k0, k1) in key order, by open addressing on the pair: a
 * transaction's entries fall in a few hundred (series, bucket) groups. */
typedef struct sum3_group {
    int64_t k0, k1;
    size_t count, at;
} sum3_group;

static int group_cmp(const void *a, const void *b)
{
    const sum3_group *x = a, *y = b;
    if (x->k0 != y->k0)
        return x->k0 < y->k0 ? -1 : 1;
    return x->k1 < y->k1 ? -1 : x->k1 > y->k1;
}

/* Sorts v[0..n) by (k0, k1, k2) without comparisons: a byte-wise LSD radix sort on k2 (as many
 * passes as its values' spread needs: stack ids take two or three), then a stable counting sort
 * by the (k0, k1) group's rank. -1 when it cannot (out of memory, or so many groups that the
 * counting would cost more than it saves): the caller sorts by comparison instead. */
static int sum3_radix(store_sum3 *m, store_sum3_entry *v, size_t n)
{
    size_t ncap = 64;
    while (ncap < n / 4)
        ncap *= 2;
    /* tmp, gi and g in the map's scratch: entries first, so each part stays aligned */
    size_t need = n * sizeof(store_sum3_entry) + (ncap / 2 + 1) * sizeof(sum3_group) +
                  ncap * sizeof(uint32_t);
    if (m->sort_scratch_bytes < need) {
        free(m->sort_scratch);
        m->sort_scratch_bytes = 0;
        if (!(m->sort_scratch = malloc(need)))
            return -1;
        m->sort_scratch_bytes = need;
    }
    store_sum3_entry *tmp = m->sort_scratch;
    sum3_group *g = (sum3_group *)(tmp + n);
    uint32_t *gi = (uint32_t *)(g + ncap / 2 + 1); /* group index + 1, 0 = empty */
    size_t ng = 0;
    int rc = 0;
    memset(gi, 0, ncap * sizeof *gi);
    for (size_t i = 0; i < n && !rc; i++) {
        size_t h = sum3_hash(v[i].k[0], v[i].k[1], 0) & (ncap - 1);
        while (gi[h] && (g[gi[h] - 1].k0 != v[i].k[0] || g[gi[h] - 1].k1 != v[i].k[1]))
            h = (h + 1) & (ncap - 1);
        if (!gi[h]) {
            if (ng == ncap / 2) {
                rc = -1; /* too many groups for this table */
                break;
            }
            g[ng] = (sum3_group){v[i].k[0], v[i].k[1], 0, 0};
            gi[h] = (uint32_t)++ng;
        }
        g[gi[h] - 1].count++;
    }
    if (!rc) {
        /* k2 with its sign bit flipped orders as unsigned; only the bytes that differ are sorted */
        uint64_t first = (uint64_t)v[0].k[2] ^ (1ull << 63), diff = 0;
        for (size_t i = 1; i < n; i++)
            diff |= ((uint64_t)v[i].k[2] ^ (1ull << 63)) ^ first;
        store_sum3_entry *src = v, *dst = tmp;
        for (int shift = 0; shift < 64 && (diff >> shift); shift += 8) {
            size_t count[257] = {0};
            for (size_t i = 0; i < n; i++)
                count[(((uint64_t)src[i].k[2] ^ (1ull << 63)) >> shift & 255) + 1]++;
            for (int b = 0; b < 256; b++)
                count[b + 1] += count[b];
            for (size_t i = 0; i < n; i++)
                dst[count[((uint64_t)src[i].k[2] ^ (1ull << 63)) >> shift & 255]++] = src[i];
            store_sum3_entry *t = src;
            src = dst;
            dst = t;
        }
        /* groups in key order, then each entry to its group's next place (stable) */
        uint32_t *rank = malloc(ng * sizeof *rank);
        sum3_group *sorted = malloc(ng * sizeof *sorted);
        if (rank && sorted) {
            memcpy(sorted, g, ng * sizeof *g);
            qsort(sorted, ng, sizeof *sorted, group_cmp);
            size_t at = 0;
            for (size_t r = 0; r < ng; r++) {
                sorted[r].at = at;
                at += sorted[r].count;
            }
            for (size_t i = 0; i < ncap; i++)
                if (gi[i]) {
                    const sum3_group *x = &g[gi[i] - 1];
                    sum3_group key = {x->k0, x->k1, 0, 0};
                    const sum3_group *y = bsearch(&key, sorted, ng, sizeof *sorted, group_cmp);
                    rank[gi[i] - 1] = (uint32_t)(y - sorted);
                }
            for (size_t i = 0; i < n; i++) {
                size_t h = sum3_hash(src[i].k[0], src[i].k[1], 0) & (ncap - 1);
                while (g[gi[h] - 1].k0 != src[i].k[0] || g[gi[h] - 1].k1 != src[i].k[1])
                    h = (h + 1) & (ncap - 1);
                dst[sorted[rank[gi[h] - 1]].at++] = src[i];
            }
            if (dst != v)
                memcpy(v, dst, n * sizeof *v);
        } else {
            rc = -1;
        }
        free(rank);
        free(sorted);
    }
    return rc;
}

size_t store_sum3_sorted(store_sum3 *m, store_sum3_entry *out)
{
    size_t n = 0;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].k[0] && m->slots[i].sum)
            out[n++] = m->slots[i];
    if (n > 64 && sum3_radix(m, out, n) == 0)
        return n;
    int depth = 0;
    for (size_t k = n; k > 1; k >>= 1)
        depth += 2;
    sum3_sort(out, n, depth);
    return n;
}

/* ---- string set --------------------------------------------------------------------------------
 */

void store_strset_init(store_strset *s)
{
    memset(s, 0, sizeof *s);
}

void store_strset_free(store_strset *s)
{
    free(s->slots);
    free(s->strs);
    free(s->lens);
    free(s->hashes);
    memset(s, 0, sizeof *s);
}

uint64_t store_strset_hash(const char *s, size_t len)
{
    return store_hash64(s, len, 0x5eed);
}

int64_t store_strset_find_hashed(const store_strset *set, const char *s, size_t len, uint64_t h)
{
    if (!set->cap)
        return -1;
    size_t mask = set->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        uint32_t v = set->slots[i];
        if (!v)
            return -1;
        size_t k = v - 1;
        if (set->hashes[k] == h && set->lens[k] == len && memcmp(set->strs[k], s, len) == 0)
            return (int64_t)k;
    }
}

int64_t store_strset_find(const store_strset *set, const char *s, size_t len)
{
    return store_strset_find_hashed(set, s, len, store_strset_hash(s, len));
}

static int strset_rehash(store_strset *set, size_t ncap)
{
    uint32_t *ns = calloc(ncap, sizeof *ns);
    if (!ns)
        return -1;
    size_t mask = ncap - 1;
    for (size_t k = 0; k < set->n; k++) {
        size_t i = set->hashes[k] & mask;
        while (ns[i])
            i = (i + 1) & mask;
        ns[i] = (uint32_t)(k + 1);
    }
    free(set->slots);
    set->slots = ns;
    set->cap = ncap;
    return 0;
}

int64_t store_strset_add(store_strset *set, const char *s, size_t len)
{
    uint64_t h = store_strset_hash(s, len);
    int64_t k = store_strset_find_hashed(set, s, len, h);
    return k >= 0 ? k : store_strset_add_absent(set, s, len, h);
}

int64_t store_strset_add_absent(store_strset *set, const char *s, size_t len, uint64_t h)
{
    int64_t k;
    if (set->n >= UINT32_MAX - 1)
        return -1;
    if (set->n == set->strcap) {
        size_t nc = set->strcap ? set->strcap * 2 : 64;
        const char **ns = realloc(set->strs, nc * sizeof *ns);
        if (!ns)
            return -1;
        set->strs = ns;
        uint32_t *nl = realloc(set->lens, nc * sizeof *nl);
        if (!nl)
            return -1;
        set->lens = nl;
        uint64_t *nh = realloc(set->hashes, nc * sizeof *nh);
        if (!nh)
            return -1;
        set->hashes = nh;
        set->strcap = nc;
    }
    if ((set->n + 1) * 2 > set->cap && strset_rehash(set, set->cap ? set->cap * 2 : 128) != 0)
        return -1;
    k = (int64_t)set->n++;
    set->strs[k] = s;
    set->lens[k] = (uint32_t)len;
    set->hashes[k] = h;
    size_t mask = set->cap - 1, i = h & mask;
    while (set->slots[i])
        i = (i + 1) & mask;
    set->slots[i] = (uint32_t)(k + 1);
    return k;
}
