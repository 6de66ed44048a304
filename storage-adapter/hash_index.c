#include "hash_index.h"

#include "../common/hugemem.h"

#include <stdint.h>
#include <string.h>

/* Growth moves the old table into the new one a few slots per add, as the cache's does:
 *   H1. Every row is in exactly one of slots and old (a row is added to slots only; a row is
 *       moved out of old only by passing its slot).
 *   H2. old's slots below x->moved have been copied into slots (live ones; removed ones are
 *       dropped). old keeps them, so its probe chains stay whole: a lookup walks old's chain
 *       and skips what lies below moved.
 *   H3. The move ends before the next growth: old holds at most 3/8 of the new capacity and
 *       HINDEX_MOVE_PER_ADD slots per add cover it long before the 3/8 of adds that fill the
 *       new table to 3/4; a growth that still finds old moves the rest first. */
#define HINDEX_MOVE_PER_ADD 16
#define HINDEX_FIRST_CAP    1024

void store_hindex_init(store_hindex *x, size_t max_rows)
{
    memset(x, 0, sizeof *x);
    x->max = max_rows;
}

static void hindex_drop_old(store_hindex *x)
{
    sp_huge_free(x->old, x->old_cap * sizeof *x->old);
    x->old = NULL;
    x->old_cap = x->moved = 0;
}

void store_hindex_free(store_hindex *x)
{
    size_t max = x->max;
    hindex_drop_old(x);
    sp_huge_free(x->slots, x->cap * sizeof *x->slots);
    store_hindex_init(x, max);
}

static void hindex_place(uint64_t *slots, size_t cap, uint64_t v)
{
    size_t mask = cap - 1, i = (uint32_t)v & mask;
    while (slots[i])
        i = (i + 1) & mask;
    slots[i] = v;
}

/* Copies up to k more of old's slots (H2); frees old when all are. */
static void hindex_move(store_hindex *x, size_t k)
{
    for (; k && x->moved < x->old_cap; k--, x->moved++) {
        uint64_t v = x->old[x->moved];
        if (v && v != STORE_HINDEX_GONE) {
            hindex_place(x->slots, x->cap, v);
            x->used++;
        }
    }
    if (x->moved == x->old_cap)
        hindex_drop_old(x);
}

/* A new table twice the rows' need (the removed markers are left behind), or as large as
 * the one it replaces. */
static int hindex_grow(store_hindex *x)
{
    if (x->old)
        hindex_move(x, SIZE_MAX); /* H3 */
    size_t ncap = x->cap ? x->cap : HINDEX_FIRST_CAP;
    while (ncap * 3 / 8 < x->n) /* n is 3/4 of cap without removals: doubled */
        ncap *= 2;
    uint64_t *ns = sp_huge_calloc(sp_huge_bytes(ncap, sizeof *ns));
    if (!ns)
        return -1;
    x->old = x->slots;
    x->old_cap = x->cap;
    x->moved = 0;
    x->slots = ns;
    x->cap = ncap;
    x->used = 0;
    if (!x->old_cap)
        hindex_drop_old(x);
    return 0;
}

int store_hindex_add(store_hindex *x, uint32_t hash, uint32_t id)
{
    if (x->n >= x->max || !id || id == UINT32_MAX ||
        ((x->used + 1) * 4 > x->cap * 3 && hindex_grow(x) != 0)) {
        store_hindex_free(x);
        return -1;
    }
    hindex_place(x->slots, x->cap, (uint64_t)id << 32 | hash);
    x->used++;
    x->n++;
    if (x->old)
        hindex_move(x, HINDEX_MOVE_PER_ADD);
    return 0;
}

/* The slot holding v in one table's chain, from `from` on (old: below moved is a copy). */
static uint64_t *hindex_slot(uint64_t *slots, size_t cap, size_t from, uint64_t v)
{
    size_t mask = cap - 1;
    for (size_t i = (uint32_t)v & mask; slots[i]; i = (i + 1) & mask)
        if (slots[i] == v && i >= from)
            return &slots[i];
    return NULL;
}

int store_hindex_remove(store_hindex *x, uint32_t hash, uint32_t id)
{
    if (!x->cap)
        return 0;
    uint64_t v = (uint64_t)id << 32 | hash, *e = hindex_slot(x->slots, x->cap, 0, v);
    if (!e && x->old)
        e = hindex_slot(x->old, x->old_cap, x->moved, v); /* H1 */
    if (!e)
        return 0;
    *e = STORE_HINDEX_GONE;
    x->n--;
    return 1;
}

uint32_t store_hindex_next(const store_hindex *x, uint32_t hash, store_hindex_it *it)
{
    if (it->phase == 0) {
        it->phase = x->cap ? 1 : 3;
        it->i = x->cap ? hash & (x->cap - 1) : 0;
        it->steps = 0;
    }
    while (it->phase < 3) {
        int in_old = it->phase == 2;
        const uint64_t *slots = in_old ? x->old : x->slots;
        size_t cap = in_old ? x->old_cap : x->cap;
        while (it->steps < cap && slots[it->i]) {
            uint64_t v = slots[it->i];
            size_t at = it->i;
            it->i = (it->i + 1) & (cap - 1);
            it->steps++;
            if (v != STORE_HINDEX_GONE && (uint32_t)v == hash && (!in_old || at >= x->moved))
                return (uint32_t)(v >> 32); /* H2: old's slots below moved are copies */
        }
        if (!in_old && x->old) {
            it->phase = 2;
            it->i = hash & (x->old_cap - 1);
            it->steps = 0;
        } else {
            it->phase = 3;
        }
    }
    return 0;
}

size_t store_hindex_bytes(const store_hindex *x)
{
    return (x->cap + x->old_cap) * sizeof *x->slots;
}
