/* Per-request arena.
 *
 * One arena is created for each request (decode, convert, answer) and freed as a whole at the end,
 * so the hot paths never free individually. The arena has a byte budget: once the total reserved
 * memory would exceed it, allocation fails (returns NULL) instead of growing without bound, and
 * callers turn that into SP_ETOOBIG / SP_ENOMEM for that request alone.
 *
 * Threading: one arena is used by one thread at a time; the block cache behind them all is
 * shared and locked.
 *
 * sp_arena_protobuf_allocator() adapts it to protobuf-c's ProtobufCAllocator (free is a no-op).
 */
#ifndef SP_ARENA_H
#define SP_ARENA_H

#include <stddef.h>

typedef struct sp_arena sp_arena;

/* budget 0 = unlimited. */
sp_arena *sp_arena_new(size_t budget);
void sp_arena_free(sp_arena *a);
void sp_arena_reset(sp_arena *a);

void *sp_arena_alloc(sp_arena *a, size_t n);               /* 16-byte aligned, uninitialised */
void *sp_arena_calloc(sp_arena *a, size_t n, size_t size); /* zeroed; NULL on overflow */
char *sp_arena_strndup(sp_arena *a, const char *s, size_t n);
void *sp_arena_memdup(sp_arena *a, const void *p, size_t n);

size_t sp_arena_used(const sp_arena *a); /* bytes reserved from the system */

/* Raises the budget by `more` bytes (saturating; no-op for an unlimited arena). For a stage whose
 * output is bounded by what an earlier stage already accepted: the correlator splitting samples
 * of a decoded request needs room the decode budget (sized from the message) did not foresee. */
void sp_arena_raise_budget(sp_arena *a, size_t more);

/* A second arena for another thread's share of a request's work, given `want` bytes of a's
 * remaining budget (at most half of what remains), which a cannot use until the child is adopted
 * back: the two together never reserve more than a's budget. An unlimited a gives an unlimited
 * child. NULL when a has no room to spare or memory runs out. */
sp_arena *sp_arena_split(sp_arena *a, size_t want);
/* Takes child's blocks into a (they live until a is freed or reset, so what was allocated from
 * child stays valid) and gives a back the budget child was given. child is freed; call it after
 * the thread using child is done with it. */
void sp_arena_adopt(sp_arena *a, sp_arena *child);

/* Freed blocks of the standard sizes are kept, process-wide, for the next arenas (their pages
 * stay resident: see arena.c, C1-C4), up to this many bytes; sp_arena_cache_limit(0) keeps none
 * and frees what is kept. Thread-safe. */
#define SP_ARENA_CACHE_DEFAULT ((size_t)64 << 20)
void sp_arena_cache_limit(size_t bytes);
size_t sp_arena_cached(void); /* bytes kept now */

struct ProtobufCAllocator;
/* Fills *out so protobuf_c_message_unpack() allocates from a. */
void sp_arena_protobuf_allocator(sp_arena *a, struct ProtobufCAllocator *out);

#endif
