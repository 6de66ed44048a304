/* The location-name cache: what a query found a location's frames to be named, kept for the
 * next query, so that a location seen before costs a hash probe instead of SQLite seeks
 * (location, function, string and mapping rows, the symbol table) and building its names.
 *
 * Owned by the SQLite store (sqs_store.names), created at open and freed at close; filled and
 * read by the stack reads (sqlite_stacks.c) on any query thread at once. It stores opaque
 * payloads keyed by location id and never touches SQLite: what a payload holds, when it may be
 * stored and when the cache's generation moves are the store's rules (sqlite_stacks.c N1-N4).
 *
 * Threading: 16 shards, each under its own mutex, held only to probe and copy one payload in or
 * out (never while SQLite or the symbolizer runs). Errors: none reach the caller; a payload that
 * cannot be stored (no memory, larger than a shard's budget, an older generation) is simply not
 * cached, and counted.
 */
#ifndef STORE_NAME_CACHE_H
#define STORE_NAME_CACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct store_ncache store_ncache;

typedef struct store_ncache_stats {
    uint64_t bytes;   /* held now: entries plus the shards' tables (never above the budget) */
    uint64_t entries; /* locations held now */
    uint64_t hits, misses;
    uint64_t evicted;    /* entries dropped to stay within the budget */
    uint64_t not_stored; /* payloads refused: too large, no memory, or from an older generation */
    uint64_t clears;     /* shards emptied because the generation moved */
} store_ncache_stats;

/* A cache holding at most budget bytes (entries, their bookkeeping and the hash tables; malloc's
 * own overhead is estimated); a budget below STORE_NCACHE_MIN_BYTES is raised to it. NULL when
 * out of memory. */
#define STORE_NCACHE_MIN_BYTES ((size_t)64 << 10)
store_ncache *store_ncache_new(size_t budget);
void store_ncache_free(store_ncache *c);

/* The payload stored for key in generation gen: its length, copied into buf when it fits in cap
 * (a larger length means nothing was copied: grow buf and ask again); -1 when absent.
 * Generations only move forward: a probe of a later generation empties the shard first (lazily,
 * shard by shard); a probe of an earlier one answers absent without touching anything. */
int64_t store_ncache_get(store_ncache *c, uint64_t gen, int64_t key, uint8_t *buf, size_t cap);

/* Stores (or replaces) key's payload in generation gen, evicting the oldest entries first, except
 * that one read since the eviction last passed it over is kept once more (CLOCK).
 * Not stored (counted) when gen is older than the shard's, the entry is larger than a shard's
 * budget or memory runs out. */
void store_ncache_put(store_ncache *c, uint64_t gen, int64_t key, const uint8_t *p, size_t len);

/* Starts loading the bucket a probe of key reads (no lock: a shard's table never moves), so
 * that probes issued after a batch of prefetches overlap their cache misses. */
void store_ncache_prefetch(const store_ncache *c, int64_t key);

void store_ncache_get_stats(store_ncache *c, store_ncache_stats *out);

#endif
