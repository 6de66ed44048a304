#include "arena.h"

#include <protobuf-c/protobuf-c.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Blocks grow geometrically so a 64 MiB decode costs a few dozen mallocs, not millions. */
#define BLOCK_MIN (64 * 1024)
#define BLOCK_MAX (8 * 1024 * 1024)

typedef struct block {
    struct block *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
} block;

struct sp_arena {
    block *head;
    size_t reserved, budget, next_size;
};

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
        free(b);
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
        size_t size = a->next_size;
        if (size < n)
            size = n;
        if (a->budget && (a->reserved + size > a->budget || size > a->budget))
            return NULL;
        b = malloc(sizeof *b + size);
        if (!b)
            return NULL;
        b->size = size;
        b->used = 0;
        b->next = a->head;
        a->head = b;
        a->reserved += size;
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
