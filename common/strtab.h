/* A pprof-style string table being built: index 0 is "", every other string is interned once.
 *
 * The conversions (otlp/convert.c, otlp/pyroscope.c) start from the sender's own table (prefill,
 * not copied) and add the names they make up; the hash index is built on the first lookup, so a
 * table nobody adds to costs nothing. All memory comes from the arena.
 */
#ifndef SP_STRTAB_H
#define SP_STRTAB_H

#include "arena.h"

#include <stddef.h>
#include <stdint.h>

typedef struct sp_strtab {
    sp_arena *a;
    const char **s;
    uint32_t *len;
    uint32_t n, cap;
    uint32_t *slots, nslots; /* open addressing: index + 1, 0 = empty */
    uint32_t nindexed;       /* strings in slots: all but those sp_strtab_add() added since */
} sp_strtab;

/* Starts the table with prefill[0..n) (prefill[0] is taken as ""; NULL entries as ""), or with ""
 * alone when prefill is NULL. SP_ETOOBIG past the arena budget. */
int sp_strtab_init(sp_strtab *t, sp_arena *a, char *const *prefill, size_t n);

/* Makes room in one step for `interned` more strings through sp_strtab_intern() and `added` more
 * through sp_strtab_add() (the arrays, and the hash index for the interned, which is built now if
 * it was not): a caller about to add thousands of names (a request's unsymbolized frames) would
 * otherwise regrow the table about log2(n) times. SP_ETOOBIG past the arena budget, leaving the
 * table as it was (interning and adding still work, growing as before). */
int sp_strtab_reserve(sp_strtab *t, uint32_t interned, uint32_t added);

/* Index of s[0..n), added when new; 0 for the empty string, and on allocation failure (which
 * leaves a valid table: the caller's name just shows as empty). */
uint32_t sp_strtab_intern(sp_strtab *t, const char *s, size_t n);
/* Index of a new copy of s[0..n), without looking for an equal string or entering it in the
 * index (so a later sp_strtab_intern() of the same bytes may add another): for names the caller
 * makes that are nearly always new, where a duplicate costs a few bytes and a lookup would cost a
 * hash and a cache miss each (an eBPF request's made-up frame names: tens of thousands). 0 for the
 * empty string and on allocation failure, as sp_strtab_intern(). */
uint32_t sp_strtab_add(sp_strtab *t, const char *s, size_t n);
/* sp_strtab_add() of n bytes the caller writes itself at *room (then exactly n bytes; the NUL
 * after them is written here): a name made up in place instead of made, then copied. 0 with
 * *room NULL for n == 0 and on allocation failure. */
uint32_t sp_strtab_add_room(sp_strtab *t, size_t n, char **room);

#endif
