/* Large tables and arena blocks on transparent huge pages (see hugemem.h). */
#include "hugemem.h"

#include <stdint.h>
#include <stdlib.h>

#if defined(__SANITIZE_ADDRESS__)
#define HUGE_MAPPED 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define HUGE_MAPPED 0
#endif
#endif
#if !defined(HUGE_MAPPED) && defined(__linux__)
#define HUGE_MAPPED 1
#include <sys/mman.h>
#elif !defined(HUGE_MAPPED)
#define HUGE_MAPPED 0
#endif

#if HUGE_MAPPED
static size_t round_up(size_t n)
{
    return (n + SP_HUGE_MIN - 1) & ~(SP_HUGE_MIN - 1);
}

/* A mapping of len + one huge page, trimmed at both ends to len bytes on a huge page boundary
 * (mmap aligns to small pages only; a huge page needs its 2 MiB-aligned range in one mapping). */
static void *map_aligned(size_t len)
{
    size_t over = len + SP_HUGE_MIN;
    if (over < len)
        return NULL;
    uint8_t *m = mmap(NULL, over, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    uint8_t *p = (uint8_t *)(((uintptr_t)m + SP_HUGE_MIN - 1) & ~(uintptr_t)(SP_HUGE_MIN - 1));
    if (p > m)
        munmap(m, (size_t)(p - m));
    if (m + over > p + len)
        munmap(p + len, (size_t)(m + over - (p + len)));
#ifdef MADV_HUGEPAGE
    madvise(p, len, MADV_HUGEPAGE); /* advice: refused (THP off) leaves small pages */
#endif
    return p;
}
#endif

void *sp_huge_calloc(size_t n)
{
    if (n > SIZE_MAX / 2)
        return NULL; /* sp_huge_bytes' overflow, or more than any address space holds */
#if HUGE_MAPPED
    if (n >= SP_HUGE_MIN) {
        size_t len = round_up(n);
        return len < n ? NULL : map_aligned(len); /* fresh anonymous pages are zero */
    }
#endif
    return calloc(1, n ? n : 1);
}

void sp_huge_free(void *p, size_t n)
{
    if (!p)
        return;
#if HUGE_MAPPED
    if (n >= SP_HUGE_MIN) {
        munmap(p, round_up(n));
        return;
    }
#else
    (void)n;
#endif
    free(p);
}

void sp_huge_populate(void *p, size_t n)
{
#if HUGE_MAPPED
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* <linux/mman.h>, Linux 5.14; older kernels refuse it: EINVAL */
#endif
    if (p && n >= SP_HUGE_MIN)
        (void)madvise(p, round_up(n), MADV_POPULATE_WRITE);
#else
    (void)p;
    (void)n;
#endif
}
