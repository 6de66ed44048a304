/* The writer's hash indexes: every row of a dictionary table as (31-bit content hash, row id),
 * in memory, so a row its cache forgot is found without a key table (I1-I4 of sqlite_dict.c).
 *
 * A multimap: rows of different content may share a hash, and a lookup checks each id it gives
 * against the row. Linear probing over 8-byte slots, at most 3/4 full (11-21 bytes a row); it
 * grows by doubling, moved a few slots per add as the writer's caches are (H1-H3 in
 * hash_index.c), so no add stalls for a whole table. A removal leaves a marker that the next
 * growth drops.
 *
 * Owned by one thread (the store's writer); no locking; nothing here touches SQLite. The one
 * error: an add past max rows, of an id it cannot hold, or out of memory fails (-1) and frees
 * the index, which is then empty (and usable again): its owner stops trusting it.
 */
#ifndef STORE_HASH_INDEX_H
#define STORE_HASH_INDEX_H

#include "../common/prefetch.h"

#include <stddef.h>
#include <stdint.h>

typedef struct store_hindex {
    uint64_t *slots;          /* id << 32 | hash; 0 = empty, STORE_HINDEX_GONE = removed */
    size_t cap, used, n, max; /* used: slots of `slots` not empty; n: rows in both tables */
    uint64_t *old;            /* the table being moved into slots, or NULL */
    size_t old_cap, moved;    /* old's slots below moved are in slots (H2) */
} store_hindex;
#define STORE_HINDEX_GONE UINT64_MAX

typedef struct store_hindex_it {
    size_t i, steps;
    int phase; /* 0 not started, 1 in slots, 2 in old, 3 done */
} store_hindex_it;

void store_hindex_init(store_hindex *x, size_t max_rows);
void store_hindex_free(store_hindex *x); /* empty again, its max kept */
/* Adds (hash, id); id 1 .. 2^32 - 2. 0, or -1 past max or out of memory (x is then freed). */
int store_hindex_add(store_hindex *x, uint32_t hash, uint32_t id);
/* Removes (hash, id): 1, or 0 when it was not there. */
int store_hindex_remove(store_hindex *x, uint32_t hash, uint32_t id);
/* The ids added under hash and not removed, one per call from an iterator zeroed first; 0 when
 * there are no more. No add or remove between the calls. */
uint32_t store_hindex_next(const store_hindex *x, uint32_t hash, store_hindex_it *it);
size_t store_hindex_bytes(const store_hindex *x);
/* Starts loading the slot a lookup or add of hash begins at (a hint: nothing changes). */
SP_PREFETCH_HELPER void store_hindex_prefetch(const store_hindex *x, uint32_t hash)
{
    if (x->cap)
        __builtin_prefetch(&x->slots[hash & (x->cap - 1)]);
}

#endif
