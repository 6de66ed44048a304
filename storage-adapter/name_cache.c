/* The location-name cache (name_cache.h): sharded hash tables of copied payloads.
 *
 * Invariants:
 *   C1. A shard's `bytes` (its bucket table plus every entry's charge) never exceeds its budget
 *       (the cache's budget / NSHARDS): room is made by eviction before an entry is linked, and
 *       an entry that cannot fit an empty shard is not stored.
 *   C2. Every entry of a shard belongs to the shard's generation: the shard is emptied when a
 *       later generation probes it, and nothing of an earlier generation is stored or returned.
 *   C3. Each entry is in exactly one bucket chain and in the shard's eviction ring, and is freed
 *       only under the shard's lock after leaving both; callers only ever see copies.
 */
#include "name_cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define NSHARDS       16
#define MALLOC_EXTRA  16  /* malloc's bookkeeping per block, estimated */
#define BYTES_PER_BKT 128 /* one bucket per this many bytes of budget: short chains */

typedef struct nc_entry {
    struct nc_entry *hnext;         /* bucket chain */
    struct nc_entry *older, *newer; /* eviction ring, oldest at the shard's `ring` */
    int64_t key;
    uint32_t len;
    uint8_t ref; /* read since the clock hand last passed it */
    uint8_t data[];
} nc_entry;

typedef struct nc_shard {
    pthread_mutex_t mu;
    nc_entry **bkt;
    size_t nbkt; /* a power of two */
    nc_entry *ring;
    size_t bytes, budget, entries;
    uint64_t gen;
    uint64_t hits, misses, evicted, not_stored, clears;
} __attribute__((aligned(64))) nc_shard;

struct store_ncache {
    nc_shard sh[NSHARDS];
};

static uint64_t mix(int64_t key)
{
    uint64_t x = (uint64_t)key + 0x9e3779b97f4a7c15ull; /* splitmix64's finaliser */
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static size_t charge(size_t len)
{
    return sizeof(nc_entry) + len + MALLOC_EXTRA;
}

static size_t table_bytes(const nc_shard *s)
{
    return s->nbkt * sizeof *s->bkt + MALLOC_EXTRA;
}

store_ncache *store_ncache_new(size_t budget)
{
    store_ncache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    if (budget < STORE_NCACHE_MIN_BYTES)
        budget = STORE_NCACHE_MIN_BYTES;
    size_t per = budget / NSHARDS, nb = 16;
    while (nb * 2 * BYTES_PER_BKT <= per)
        nb *= 2;
    for (int i = 0; i < NSHARDS; i++)
        pthread_mutex_init(&c->sh[i].mu, NULL);
    for (int i = 0; i < NSHARDS; i++) {
        nc_shard *s = &c->sh[i];
        s->budget = per;
        s->nbkt = nb;
        s->bkt = calloc(nb, sizeof *s->bkt);
        s->bytes = table_bytes(s);
        if (!s->bkt) {
            s->nbkt = 0;
            store_ncache_free(c);
            return NULL;
        }
    }
    return c;
}

static void ring_unlink(nc_shard *s, nc_entry *e)
{
    if (e->newer == e) {
        s->ring = NULL;
    } else {
        e->older->newer = e->newer;
        e->newer->older = e->older;
        if (s->ring == e)
            s->ring = e->newer;
    }
}

static void ring_push_newest(nc_shard *s, nc_entry *e)
{
    if (!s->ring) {
        e->older = e->newer = e;
        s->ring = e;
        return;
    }
    e->newer = s->ring; /* the ring's oldest follows its newest */
    e->older = s->ring->older;
    s->ring->older->newer = e;
    s->ring->older = e;
}

/* Unlinks e from its chain and the ring and frees it (C3). */
static void drop(nc_shard *s, nc_entry *e)
{
    nc_entry **link = &s->bkt[mix(e->key) & (s->nbkt - 1)];
    while (*link != e)
        link = &(*link)->hnext;
    *link = e->hnext;
    ring_unlink(s, e);
    s->bytes -= charge(e->len);
    s->entries--;
    free(e);
}

static void clear_shard(nc_shard *s)
{
    while (s->ring)
        drop(s, s->ring);
}

/* Under the shard's lock: 1 when gen may use the shard (emptying it first for a later one). */
static int same_gen(nc_shard *s, uint64_t gen)
{
    if (gen < s->gen)
        return 0;
    if (gen > s->gen) {
        if (s->entries)
            s->clears++;
        clear_shard(s);
        s->gen = gen;
    }
    return 1;
}

static nc_entry *find(nc_shard *s, uint64_t h, int64_t key)
{
    nc_entry *e = s->bkt[h & (s->nbkt - 1)];
    while (e && e->key != key)
        e = e->hnext;
    return e;
}

void store_ncache_prefetch(const store_ncache *c, int64_t key)
{
    uint64_t h = mix(key);
    const nc_shard *s = &c->sh[h >> 60];
    __builtin_prefetch(&s->bkt[h & (s->nbkt - 1)]);
}

int64_t store_ncache_get(store_ncache *c, uint64_t gen, int64_t key, uint8_t *buf, size_t cap)
{
    uint64_t h = mix(key);
    nc_shard *s = &c->sh[h >> 60];
    int64_t len = -1;
    pthread_mutex_lock(&s->mu);
    nc_entry *e = same_gen(s, gen) ? find(s, h, key) : NULL;
    if (e) {
        len = e->len;
        if (e->len <= cap) { /* else the caller asks again with room: one hit */
            memcpy(buf, e->data, e->len);
            e->ref = 1;
            s->hits++;
        }
    } else {
        s->misses++;
    }
    pthread_mutex_unlock(&s->mu);
    return len;
}

/* Evicts until `need` more bytes fit (C1): the oldest entry goes unless it was read since the
 * hand last passed it; then it becomes the newest with its mark cleared (CLOCK, second chance).
 * Each entry is passed over at most once, so this ends. */
static void make_room(nc_shard *s, size_t need)
{
    while (s->ring && s->bytes + need > s->budget) {
        nc_entry *old = s->ring;
        if (old->ref) {
            old->ref = 0;
            s->ring = old->newer;
            continue;
        }
        drop(s, old);
        s->evicted++;
    }
}

void store_ncache_put(store_ncache *c, uint64_t gen, int64_t key, const uint8_t *p, size_t len)
{
    uint64_t h = mix(key);
    nc_shard *s = &c->sh[h >> 60];
    size_t need = charge(len);
    nc_entry *e = len <= UINT32_MAX ? malloc(sizeof *e + len) : NULL;
    if (e) {
        e->key = key;
        e->len = (uint32_t)len;
        e->ref = 0;
        memcpy(e->data, p, len);
    }
    pthread_mutex_lock(&s->mu);
    if (!e || !same_gen(s, gen) || table_bytes(s) + need > s->budget) {
        s->not_stored++;
        pthread_mutex_unlock(&s->mu);
        free(e);
        return;
    }
    nc_entry *old = find(s, h, key);
    if (old)
        drop(s, old);
    make_room(s, need);
    nc_entry **b = &s->bkt[h & (s->nbkt - 1)];
    e->hnext = *b;
    *b = e;
    ring_push_newest(s, e);
    s->bytes += need;
    s->entries++;
    pthread_mutex_unlock(&s->mu);
}

void store_ncache_get_stats(store_ncache *c, store_ncache_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!c)
        return;
    for (int i = 0; i < NSHARDS; i++) {
        nc_shard *s = &c->sh[i];
        pthread_mutex_lock(&s->mu);
        out->bytes += s->bytes;
        out->entries += s->entries;
        out->hits += s->hits;
        out->misses += s->misses;
        out->evicted += s->evicted;
        out->not_stored += s->not_stored;
        out->clears += s->clears;
        pthread_mutex_unlock(&s->mu);
    }
}

void store_ncache_free(store_ncache *c)
{
    if (!c)
        return;
    for (int i = 0; i < NSHARDS; i++) {
        nc_shard *s = &c->sh[i];
        if (s->bkt)
            clear_shard(s);
        free(s->bkt);
        pthread_mutex_destroy(&s->mu);
    }
    free(c);
}
