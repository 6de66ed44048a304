/* Internal helpers of the storage adapter: content hashing, varints and open-addressing maps.
 *
 * Used by the SQLite backend (writer caches, per-transaction aggregation, per-query memos). None of
 * these touch SQLite or the disk; none are part of the store interface. A map is owned by one
 * thread at a time (the writer thread, or the thread running one query): no locking here.
 */
#ifndef STORE_MAPS_H
#define STORE_MAPS_H

#include "../common/prefetch.h"

#include <stddef.h>
#include <stdint.h>

/* 64-bit hash of n bytes; different seeds give independent hashes, so a (seed 1, seed 2) pair is
 * used as a 128-bit content fingerprint by the dictionary caches. */
uint64_t store_hash64(const void *p, size_t n, uint64_t seed);
/* store_hash64(p, n, seed1) and store_hash64(p, n, seed2) in one pass: the same two values (they
 * are stored, hash31(h1) is a column), at about half the cost of two calls, since the per-word
 * mixing does not depend on the seed and the two chains run side by side. */
void store_hash64x2(const void *p, size_t n, uint64_t seed1, uint64_t seed2, uint64_t *h1,
                    uint64_t *h2);

#define STORE_VARINT_MAX 10
/* LEB128: 7 bits a byte, low group first. Returns the bytes written (1..10). */
size_t store_varint_put(uint8_t *out, uint64_t v);
/* Reads one varint from *p (not past end) and advances *p. 0, or -1 if truncated or too long. */
int store_varint_get(const uint8_t **p, const uint8_t *end, uint64_t *v);

/* ---- dictionary cache: content fingerprint (h1, h2) → database row id -------------------------
 * Bounded by max entries; when a put would exceed it, the cache clears itself (the eviction
 * rule: the cache only saves lookups, the database stays the truth, so forgetting is always safe).
 *
 * It grows by doubling, moved a few slots per put (invariants D1-D3 in maps.c): growing a table
 * of 262 k entries in one go stalled the writer for 20-40 ms, one Export's whole budget.
 * An entry pointer is valid until the next put or clear. */
typedef struct store_dict_entry {
    uint64_t h1, h2; /* (0, 0) = empty slot */
    int64_t id;
    int32_t seen; /* the `seen` hour last written to the row, for retention */
} store_dict_entry;

typedef struct store_dict {
    store_dict_entry *slots;
    size_t cap, n, max; /* n: distinct keys, in slots and the part of old not moved yet */
    uint64_t clears;
    store_dict_entry *old; /* the table being moved into slots, or NULL */
    size_t old_cap, moved; /* old's slots below moved are in slots (D2) */
} store_dict;

void store_dict_init(store_dict *d, size_t max_entries);
void store_dict_free(store_dict *d);
void store_dict_clear(store_dict *d);
store_dict_entry *store_dict_find(store_dict *d, uint64_t h1, uint64_t h2);
/* Inserts or overwrites; returns the entry or NULL on allocation failure (the cache is then
 * empty but usable). */
store_dict_entry *store_dict_put(store_dict *d, uint64_t h1, uint64_t h2, int64_t id, int32_t seen);
size_t store_dict_bytes(const store_dict *d);
/* Whether d will double within its next few puts' worth: past 7/16 full (puts double it at 1/2),
 * below the size its max needs and not moving a growth already. A caller with time to spare
 * (the writer, idle) may then grow it with store_dict_grow_now(). */
int store_dict_room_due(const store_dict *d);
/* Doubles d now as a put would (D1-D3 in maps.c), and faults in the new table's pages here
 * (sp_huge_populate) rather than in the puts that follow. 0, or -1 out of memory (d as it was). */
int store_dict_grow_now(store_dict *d);
/* Starts loading the slot a lookup of h1 begins at: lookups issued after a batch of prefetches
 * overlap their cache misses instead of waiting for each in turn. */
SP_PREFETCH_HELPER void store_dict_prefetch(const store_dict *d, uint64_t h1)
{
    if (d->cap)
        __builtin_prefetch(&d->slots[h1 & (d->cap - 1)]);
}

/* ---- aggregation map: (k0, k1, k2, k3) → (sum, aux) --------------------------------------------
 * Grows without a cap of its own: its users bound what goes in (one transaction, one query). */
typedef struct store_agg_entry {
    int64_t k[4];
    int64_t sum, aux;
    uint32_t used;
    uint32_t ord; /* insertion order, for stable iteration where callers want it */
} store_agg_entry;

typedef struct store_agg {
    store_agg_entry *slots;
    size_t cap, n;
} store_agg;

void store_agg_init(store_agg *m);
void store_agg_free(store_agg *m);
void store_agg_reset(store_agg *m); /* empties, keeps the memory */
/* Finds or inserts the key (new entries start with sum = aux = 0, *created = 1). NULL on
 * allocation failure. */
store_agg_entry *store_agg_get(store_agg *m, int64_t k0, int64_t k1, int64_t k2, int64_t k3,
                               int *created);
store_agg_entry *store_agg_find(const store_agg *m, int64_t k0, int64_t k1, int64_t k2, int64_t k3);

/* ---- sum map: (k0, k1, k2) → sum in 32-byte slots
 * ------------------------------------------------ The writer's per-transaction sample aggregate
 * and its per-batch stack memo, probed once per observation: half the bytes of a store_agg slot, so
 * twice the entries per cache line, and no 64-byte copies when the entries are sorted for the disk.
 * k0 = 0 marks an empty slot, so k0 must not be 0 (row ids and addresses never are); store_sum3_at
 * refuses it. */
typedef struct store_sum3_entry {
    int64_t k[3];
    int64_t sum;
} store_sum3_entry;

typedef struct store_sum3 {
    store_sum3_entry *slots;
    size_t cap, n;
    /* store_sum3_sorted's working memory, kept for the next sort: allocated afresh per sort, its
     * pages were faulted in again every transaction (1 % of the server's CPU at full ingest) */
    void *sort_scratch;
    size_t sort_scratch_bytes;
} store_sum3;

void store_sum3_free(store_sum3 *m);
void store_sum3_reset(store_sum3 *m); /* empties, keeps the memory */
/* The sum of a key, inserted at 0 when new. NULL on allocation failure or k0 = 0. */
int64_t *store_sum3_at(store_sum3 *m, int64_t k0, int64_t k1, int64_t k2);
static inline size_t store_sum3_hash(int64_t a, int64_t b, int64_t c)
{
    uint64_t h =
        (uint64_t)a * 0x9e3779b97f4a7c15ULL ^
        (((uint64_t)b * 0xc2b2ae3d27d4eb4fULL) << 21 |
         ((uint64_t)b * 0xc2b2ae3d27d4eb4fULL) >> 43) ^
        (((uint64_t)c * 0x165667b19e3779f9ULL) << 42 | ((uint64_t)c * 0x165667b19e3779f9ULL) >> 22);
    h ^= h >> 31;
    h *= 0xd6e8feb86659fd93ULL;
    return (size_t)(h ^ h >> 32);
}
/* Starts loading the slot a lookup of the key begins at (a hint: nothing changes). */
SP_PREFETCH_HELPER void store_sum3_prefetch(const store_sum3 *m, int64_t k0, int64_t k1, int64_t k2)
{
    if (m->cap)
        __builtin_prefetch(&m->slots[store_sum3_hash(k0, k1, k2) & (m->cap - 1)]);
}
/* Copies the entries whose sum is not 0 to out (room for m->n), sorted by (k0, k1, k2); returns
 * how many. The map's entries are unchanged (it keeps the sort's working memory). */
size_t store_sum3_sorted(store_sum3 *m, store_sum3_entry *out);

/* ---- string set: interns strings to dense indices 0..n-1 ---------------------------------------
 * The strings are not copied: what is added must outlive the set (typically an arena copy). */
typedef struct store_strset {
    uint32_t *slots; /* index + 1, 0 = empty */
    size_t cap;
    const char **strs;
    uint32_t *lens;
    uint64_t *hashes;
    size_t n, strcap;
} store_strset;

void store_strset_init(store_strset *s);
void store_strset_free(store_strset *s);
/* Returns the index of s (len bytes) or -1 when not present. */
int64_t store_strset_find(const store_strset *set, const char *s, size_t len);
/* Adds s unless an equal string is present; returns its index, -1 on allocation failure. */
int64_t store_strset_add(store_strset *set, const char *s, size_t len);
/* The same with the string hashed once by the caller: find, then (when it was not found, and
 * only then) add, where find and add above would hash it three times. */
uint64_t store_strset_hash(const char *s, size_t len);
int64_t store_strset_find_hashed(const store_strset *set, const char *s, size_t len, uint64_t h);
int64_t store_strset_add_absent(store_strset *set, const char *s, size_t len, uint64_t h);

#endif
