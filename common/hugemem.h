/* Large tables and arena blocks on transparent huge pages.
 *
 * Why: the store writer's maps (hundreds of thousands of slots) and a request's arena blocks
 * are read at random, over more memory than 4 KiB pages' TLB entries cover, and under a
 * hypervisor each TLB miss walks two page tables. Backed by 2 MiB pages, the writer spends 5-10 %
 * less CPU per stored sample at full load (bench/RESULTS.md, "Huge pages for the writer's maps
 * and the arenas"). Debian's kernels give huge pages only where they are asked for
 * (transparent_hugepage=madvise), so they are asked for here, per allocation.
 *
 * sp_huge_calloc(n) returns n zeroed bytes, 16-byte aligned, or NULL when the system has no
 * memory for them (as calloc does). From SP_HUGE_MIN bytes on, the memory is its own mapping,
 * aligned to and rounded up to 2 MiB, and advised MADV_HUGEPAGE: the kernel backs it with huge
 * pages when it has them, with small pages otherwise (nothing fails for want of them). Smaller
 * requests, other systems and sanitizer builds (so AddressSanitizer still sees every access)
 * get calloc.
 *
 * Trade-offs: a large allocation's last huge page is resident whole once touched, so up to
 * 2 MiB - 1 byte per allocation more than small pages would hold. The callers' allocations are
 * powers of two of 2 MiB or more (tables, arena block classes), which waste nothing. Where the
 * host's memory is fragmented, the kernel may compact memory at the first touch of an advised
 * range (Debian's transparent_hugepage/defrag is madvise too); tables grow rarely and arena
 * blocks are kept in the arenas' cache, so that is paid seldom.
 *
 * Ownership: the caller frees with sp_huge_free(p, n), n the size it asked for.
 * Threading: any thread; no state of its own.
 */
#ifndef SP_HUGEMEM_H
#define SP_HUGEMEM_H

#include <stddef.h>
#include <stdint.h>

#define SP_HUGE_MIN ((size_t)2 << 20) /* one x86-64 / arm64 (4 KiB granule) huge page */

void *sp_huge_calloc(size_t n);
void sp_huge_free(void *p, size_t n); /* p may be NULL */
/* Faults in the pages of p (n bytes from sp_huge_calloc) now, writable, so that the first writes
 * to them later cost no page fault: for a caller with time to spare before they come. Zeroing a
 * fresh 2 MiB page on first write took about a millisecond each in a KVM guest, and a table's
 * inserts touch all its pages within their first few dozen. Best effort: a no-op below
 * SP_HUGE_MIN, without MADV_POPULATE_WRITE (Linux 5.14) or in sanitizer builds. */
void sp_huge_populate(void *p, size_t n);

/* nmemb * size, or SIZE_MAX when that overflows: an allocation sp_huge_calloc refuses (calloc's
 * check). */
static inline size_t sp_huge_bytes(size_t nmemb, size_t size)
{
    return size && nmemb > SIZE_MAX / size ? SIZE_MAX : nmemb * size;
}

#endif
