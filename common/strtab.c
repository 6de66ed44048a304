#include "strtab.h"
#include "err.h"
#include "hash.h"

#include <string.h>

static uint64_t hash_bytes(const char *s, size_t n)
{
    return sp_hash64(s, n, 1469598103934665603ull);
}

int sp_strtab_init(sp_strtab *t, sp_arena *a, char *const *prefill, size_t n)
{
    memset(t, 0, sizeof *t);
    t->a = a;
    if (n == 0)
        n = 1;
    t->cap = (uint32_t)n + 64;
    t->s = sp_arena_alloc(a, t->cap * sizeof *t->s);
    t->len = sp_arena_alloc(a, t->cap * sizeof *t->len);
    if (!t->s || !t->len)
        return SP_ETOOBIG;
    t->s[0] = ""; /* pprof requires it; OTLP says so too */
    t->len[0] = 0;
    for (size_t i = 1; i < n; i++) {
        t->s[i] = prefill && prefill[i] ? prefill[i] : "";
        t->len[i] = (uint32_t)strlen(t->s[i]);
    }
    t->n = (uint32_t)n;
    return 0;
}

static void index_put(uint32_t *slots, uint32_t nslots, const sp_strtab *t, uint32_t i)
{
    uint32_t h = (uint32_t)hash_bytes(t->s[i], t->len[i]) & (nslots - 1);
    while (slots[h])
        h = (h + 1) & (nslots - 1);
    slots[h] = i + 1;
}

/* Rebuilds the index with room for `want` strings at half load: the first time from every string,
 * then from the strings the old index held (those sp_strtab_add() added stay out). */
static int grow_slots_for(sp_strtab *t, uint32_t want)
{
    uint32_t nslots = t->nslots ? t->nslots * 2 : 1024;
    while (nslots < want * 2u)
        nslots *= 2;
    uint32_t *slots = sp_arena_calloc(t->a, nslots, sizeof *slots);
    if (!slots)
        return SP_ETOOBIG;
    uint32_t n = 0;
    if (t->slots) {
        for (uint32_t j = 0; j < t->nslots; j++)
            if (t->slots[j]) {
                index_put(slots, nslots, t, t->slots[j] - 1);
                n++;
            }
    } else {
        for (uint32_t i = 1; i < t->n; i++, n++)
            index_put(slots, nslots, t, i);
    }
    t->slots = slots;
    t->nslots = nslots;
    t->nindexed = n;
    return 0;
}

static int grow_slots(sp_strtab *t)
{
    return grow_slots_for(t, (t->slots ? t->nindexed : t->n) + 1);
}

static int grow_strings(sp_strtab *t, uint32_t cap)
{
    const char **strs = sp_arena_alloc(t->a, cap * sizeof *strs);
    uint32_t *lens = sp_arena_alloc(t->a, cap * sizeof *lens);
    if (!strs || !lens)
        return SP_ETOOBIG;
    memcpy(strs, t->s, t->n * sizeof *strs);
    memcpy(lens, t->len, t->n * sizeof *lens);
    t->s = strs;
    t->len = lens;
    t->cap = cap;
    return 0;
}

int sp_strtab_reserve(sp_strtab *t, uint32_t interned, uint32_t added)
{
    if (t->n > UINT32_MAX / 8 || interned > UINT32_MAX / 8 - t->n ||
        added > UINT32_MAX / 8 - t->n - interned)
        return SP_ETOOBIG;
    uint32_t want = t->n + interned + added;
    if (want > t->cap && grow_strings(t, want + 64))
        return SP_ETOOBIG;
    uint32_t indexed = (t->slots ? t->nindexed : t->n) + interned + 1;
    if (indexed * 2u > t->nslots && grow_slots_for(t, indexed))
        return SP_ETOOBIG;
    return 0;
}

/* A copy of s[0..len) as the next string: its index, 0 on allocation failure. */
static uint32_t append(sp_strtab *t, const char *s, size_t len)
{
    if (t->n == t->cap && grow_strings(t, t->cap * 2 + 64))
        return 0;
    char *copy = sp_arena_strndup(t->a, s, len);
    if (!copy)
        return 0;
    t->s[t->n] = copy;
    t->len[t->n] = (uint32_t)len;
    return t->n++;
}

uint32_t sp_strtab_intern(sp_strtab *t, const char *s, size_t len)
{
    if (len == 0)
        return 0;
    if (((t->slots ? t->nindexed : t->n) + 1) * 2u > t->nslots && grow_slots(t))
        return 0;
    uint32_t h = (uint32_t)hash_bytes(s, len) & (t->nslots - 1);
    while (t->slots[h]) {
        uint32_t i = t->slots[h] - 1;
        if (t->len[i] == len && memcmp(t->s[i], s, len) == 0)
            return i;
        h = (h + 1) & (t->nslots - 1);
    }
    uint32_t i = append(t, s, len);
    if (i) {
        t->slots[h] = i + 1;
        t->nindexed++;
    }
    return i;
}

uint32_t sp_strtab_add(sp_strtab *t, const char *s, size_t len)
{
    return len == 0 || len > UINT32_MAX ? 0 : append(t, s, len);
}

uint32_t sp_strtab_add_room(sp_strtab *t, size_t len, char **room)
{
    *room = NULL;
    if (len == 0 || len > UINT32_MAX || (t->n == t->cap && grow_strings(t, t->cap * 2 + 64)))
        return 0;
    char *p = sp_arena_alloc(t->a, len + 1);
    if (!p)
        return 0;
    p[len] = 0;
    t->s[t->n] = p;
    t->len[t->n] = (uint32_t)len;
    *room = p;
    return t->n++;
}
