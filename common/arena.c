#include "arena.h"
#include "hugemem.h"

#include <protobuf-c/protobuf-c.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n)   ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/asan_interface.h>
#define POISON(p, n)   ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#endif
#endif
#ifndef POISON
#define POISON(p, n)   ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* Blocks grow geometrically so a 64 MiB decode costs a few dozen mallocs, not millions. A block's
 * size class counts its header, so the classes of 2 MiB and up are whole huge pages
 * (common/hugemem.h): the arenas hold a request's unpacked messages, read at random. */
#define BLOCK_MIN     (64 * 1024)
#define BLOCK_MAX     (8 * 1024 * 1024)
#define BLOCK_CLASSES 8 /* BLOCK_MIN << 0 .. BLOCK_MIN << 7 = BLOCK_MAX */

typedef struct block {
    struct block *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
} block;

struct sp_arena {
    block *head;
    size_t reserved, budget, next_size;
};

/* ---- the block cache ----------------------------------------------------------------------------
 * Freed blocks of the standard sizes are kept for the next arenas, up to a limit in bytes.
 *
 * Why: a 40,000-sample Export fills a 33 MB arena. Given back to malloc, its 8 MiB blocks went
 * back to the kernel (glibc trims a thread arena's heap, or unmaps a large chunk), and the next
 * Export faulted every page in again: the kernel zeroing pages was 6 % of the server's CPU at full
 * load, and the unmaps serialise every thread's page faults on the process's mmap lock. Kept here,
 * a block is reused with its pages resident.
 *
 * Invariants:
 *   C1. A cached block was allocated (block_new) at exactly its class's size, header included
 *       (BLOCK_MIN << class); blocks of other sizes (one allocation larger than the next block)
 *       are never cached.
 *   C2. cached_bytes (the sum of cached blocks' sizes, headers included) never exceeds cache_limit.
 *   C3. The lists are only touched under cache_mu; a block in the cache belongs to no arena.
 *   C4. Under AddressSanitizer a cached block's data is poisoned, so a pointer kept past its
 *       arena's end still faults as it did when the block was freed.
 * Trade-off: up to cache_limit bytes stay resident while the server is idle (never more than
 * the arenas themselves held at once). */
static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static block *cache[BLOCK_CLASSES];
static size_t cached_bytes, cache_limit = SP_ARENA_CACHE_DEFAULT;

/* A block's size class from its bytes, header included; -1 for none. */
static int block_class(size_t bytes)
{
    for (int c = 0; c < BLOCK_CLASSES; c++)
        if (bytes == (size_t)BLOCK_MIN << c)
            return c;
    return -1;
}

/* A block of `bytes` bytes, header included: huge pages from 2 MiB on, malloc below. */
static block *block_new(size_t bytes)
{
    return bytes >= SP_HUGE_MIN ? sp_huge_calloc(bytes) : malloc(bytes);
}

static void block_release(block *b)
{
    size_t bytes = sizeof *b + b->size;
    if (bytes >= SP_HUGE_MIN)
        sp_huge_free(b, bytes);
    else
        free(b);
}

static block *block_take(size_t bytes)
{
    int c = block_class(bytes);
    if (c < 0)
        return NULL;
    pthread_mutex_lock(&cache_mu);
    block *b = cache[c];
    if (b) {
        cache[c] = b->next;
        cached_bytes -= bytes;
    }
    pthread_mutex_unlock(&cache_mu);
    if (b)
        UNPOISON(b->data, b->size);
    return b;
}

static void block_give(block *b)
{
    int c = block_class(sizeof *b + b->size);
    if (c >= 0) {
        pthread_mutex_lock(&cache_mu);
        int keep = cached_bytes + sizeof *b + b->size <= cache_limit;
        if (keep) {
            POISON(b->data, b->size);
            b->next = cache[c];
            cache[c] = b;
            cached_bytes += sizeof *b + b->size;
        }
        pthread_mutex_unlock(&cache_mu);
        if (keep)
            return;
    }
    block_release(b);
}

void sp_arena_cache_limit(size_t bytes)
{
    block *drop = NULL;
    pthread_mutex_lock(&cache_mu);
    cache_limit = bytes;
    for (int c = BLOCK_CLASSES - 1; c >= 0 && cached_bytes > cache_limit; c--)
        while (cache[c] && cached_bytes > cache_limit) {
            block *b = cache[c];
            cache[c] = b->next;
            cached_bytes -= sizeof *b + b->size;
            b->next = drop;
            drop = b;
        }
    pthread_mutex_unlock(&cache_mu);
    while (drop) {
        block *n = drop->next;
        UNPOISON(drop->data, drop->size);
        block_release(drop);
        drop = n;
    }
}

size_t sp_arena_cached(void)
{
    pthread_mutex_lock(&cache_mu);
    size_t n = cached_bytes;
    pthread_mutex_unlock(&cache_mu);
    return n;
}

sp_arena *sp_arena_new(size_t budget)
{
    sp_arena *a = calloc(1, sizeof *a);
    if (a) {
        a->budget = budget;
        a->next_size = BLOCK_MIN;
    }
    return a;
}

void sp_arena_reset(sp_arena *a)
{
    block *b = a->head;
    while (b) {
        block *n = b->next;
        block_give(b);
        b = n;
    }
    a->head = NULL;
    a->reserved = 0;
    a->next_size = BLOCK_MIN;
}

void sp_arena_free(sp_arena *a)
{
    if (!a)
        return;
    sp_arena_reset(a);
    free(a);
}

void *sp_arena_alloc(sp_arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (n == 0)
        n = 16;
    block *b = a->head;
    if (!b || b->size - b->used < n) {
        /* next_size and the budget count the block's header: bytes held from the system */
        if (n > SIZE_MAX - sizeof *b)
            return NULL;
        size_t bytes = a->next_size < sizeof *b + n ? sizeof *b + n : a->next_size;
        if (a->budget && (a->reserved + bytes > a->budget || bytes > a->budget))
            return NULL;
        b = block_take(bytes);
        if (!b && !(b = block_new(bytes)))
            return NULL;
        b->size = bytes - sizeof *b;
        b->used = 0;
        b->next = a->head;
        a->head = b;
        a->reserved += bytes;
        if (a->next_size < BLOCK_MAX)
            a->next_size *= 2;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

void *sp_arena_calloc(sp_arena *a, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p = sp_arena_alloc(a, n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

char *sp_arena_strndup(sp_arena *a, const char *s, size_t n)
{
    char *p = sp_arena_alloc(a, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

void *sp_arena_memdup(sp_arena *a, const void *src, size_t n)
{
    void *p = sp_arena_alloc(a, n);
    if (p && n)
        memcpy(p, src, n);
    return p;
}

sp_arena *sp_arena_split(sp_arena *a, size_t want)
{
    size_t give = 0;
    if (a->budget) {
        size_t left = a->budget > a->reserved ? a->budget - a->reserved : 0;
        give = want < left / 2 ? want : left / 2;
        if (give < BLOCK_MIN)
            return NULL;
    }
    sp_arena *c = sp_arena_new(give);
    if (c)
        a->budget -= give;
    return c;
}

void sp_arena_adopt(sp_arena *a, sp_arena *child)
{
    if (!child)
        return;
    if (a->budget)
        a->budget += child->budget;
    if (child->head) {
        block *tail = child->head;
        while (tail->next)
            tail = tail->next;
        /* behind a's current block, which keeps taking a's allocations */
        if (a->head) {
            tail->next = a->head->next;
            a->head->next = child->head;
        } else {
            a->head = child->head;
        }
        a->reserved += child->reserved;
    }
    free(child);
}

void sp_arena_raise_budget(sp_arena *a, size_t more)
{
    if (!a->budget)
        return;
    a->budget = a->budget > SIZE_MAX - more ? SIZE_MAX : a->budget + more;
}

size_t sp_arena_used(const sp_arena *a)
{
    return a->reserved;
}

static void *pb_alloc(void *data, size_t size)
{
    return sp_arena_alloc(data, size);
}

static void pb_free(void *data, void *p)
{
    (void)data;
    (void)p;
}

void sp_arena_protobuf_allocator(sp_arena *a, ProtobufCAllocator *out)
{
    out->alloc = pb_alloc;
    out->free = pb_free;
    out->allocator_data = a;
}
