/* common/hugemem: large tables and arena blocks on transparent huge pages. The oracle is what a
 * caller and the kernel see: every byte asked for is zero and writable, a large allocation
 * starts on a 2 MiB boundary, and the kernel's own account of the mapping (/proc/self/smaps,
 * "THPeligible") says huge pages may back it. Without the advice that line reads 0 on a kernel
 * that gives huge pages only where asked (transparent_hugepage=madvise, Debian's default). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/hugemem.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

#define MIB ((size_t)1 << 20)

static void all_zero_then_written(unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i]) {
            fail_msg("byte %zu of %zu is %u, not 0", i, n, p[i]);
        }
    memset(p, 0xa5, n);
}

static void every_size_is_zeroed_and_writable(void **state)
{
    (void)state;
    const size_t sizes[] = {1, 100, 4096, 2 * MIB - 1, 2 * MIB, 2 * MIB + 1, 3 * MIB, 8 * MIB};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        /* twice each: the second may reuse the first's memory, written 0xa5 */
        for (int round = 0; round < 2; round++) {
            unsigned char *p = sp_huge_calloc(sizes[k]);
            assert_non_null(p);
            assert_int_equal((uintptr_t)p % 16, 0);
            all_zero_then_written(p, sizes[k]);
            sp_huge_free(p, sizes[k]);
        }
    }
    sp_huge_free(NULL, 4 * MIB); /* as free(NULL) */
}

static void large_allocations_start_on_a_huge_page(void **state)
{
    (void)state;
#ifdef UNDER_ASAN
    skip(); /* sanitizer builds take calloc, so AddressSanitizer sees every access */
#else
    void *p[4];
    for (int i = 0; i < 4; i++) {
        p[i] = sp_huge_calloc(2 * MIB << (i & 1));
        assert_non_null(p[i]);
        assert_int_equal((uintptr_t)p[i] % (2 * MIB), 0);
    }
    for (int i = 0; i < 4; i++)
        sp_huge_free(p[i], 2 * MIB << (i & 1));
#endif
}

static void an_overflowing_size_is_refused(void **state)
{
    (void)state;
    assert_int_equal(sp_huge_bytes(SIZE_MAX / 8 + 1, 8), SIZE_MAX);
    assert_int_equal(sp_huge_bytes(1024, 32), 32768);
    assert_int_equal(sp_huge_bytes(0, 32), 0);
    assert_null(sp_huge_calloc(SIZE_MAX));
    assert_null(sp_huge_calloc(SIZE_MAX / 2 + 1));
}

#ifndef UNDER_ASAN
/* THP's mode from sysfs: the bracketed word, or "" when the kernel has no THP. */
static void thp_mode(char *out, size_t n)
{
    out[0] = 0;
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    char line[128];
    if (!f)
        return;
    if (fgets(line, sizeof line, f)) {
        char *a = strchr(line, '['), *b = a ? strchr(a, ']') : NULL;
        if (a && b && (size_t)(b - a) < n) {
            memcpy(out, a + 1, (size_t)(b - a - 1));
            out[b - a - 1] = 0;
        }
    }
    fclose(f);
}

/* The THPeligible value of the smaps entry holding addr; -1 when none says. */
static int thp_eligible(const void *addr)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return -1;
    char line[512];
    int inside = 0, v = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            inside = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
            continue;
        }
        if (inside && sscanf(line, "THPeligible: %d", &v) == 1)
            break;
    }
    fclose(f);
    return v;
}
#endif

static void the_kernel_may_back_a_large_table_with_huge_pages(void **state)
{
    (void)state;
#ifdef UNDER_ASAN
    skip();
#else
    char mode[32];
    thp_mode(mode, sizeof mode);
    if (!mode[0] || strcmp(mode, "never") == 0)
        skip(); /* no THP here: small pages, as documented */
    unsigned char *big = sp_huge_calloc(4 * MIB);
    assert_non_null(big);
    memset(big, 1, 4 * MIB);
    int v = thp_eligible(big);
    if (v < 0)
        skip(); /* a kernel without the THPeligible line (before 5.0) */
    assert_int_equal(v, 1);
    sp_huge_free(big, 4 * MIB);
#endif
}

#ifndef UNDER_ASAN
/* Whether this kernel knows MADV_POPULATE_WRITE (asked on a page of the test's own). */
static int kernel_populates(void)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void *m = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    int ok = madvise(m, page, 23 /* MADV_POPULATE_WRITE */) == 0;
    munmap(m, page);
    return ok;
}
#endif

/* sp_huge_populate faults a large allocation's pages in: mincore() says none is resident before
 * and all are after, and the bytes are still zero and writable. (A kernel before 5.14 refuses
 * MADV_POPULATE_WRITE: the test then skips, as documented.) */
static void populate_makes_every_page_resident(void **state)
{
    (void)state;
#ifdef UNDER_ASAN
    skip();
#else
    size_t n = 4 * MIB, page = (size_t)sysconf(_SC_PAGESIZE), np = n / page;
    unsigned char *big = sp_huge_calloc(n);
    assert_non_null(big);
    unsigned char *vec = calloc(np, 1);
    assert_non_null(vec);
    assert_int_equal(mincore(big, n, vec), 0);
    size_t before = 0, after = 0;
    for (size_t i = 0; i < np; i++)
        before += vec[i] & 1;
    sp_huge_populate(big, n);
    assert_int_equal(mincore(big, n, vec), 0);
    for (size_t i = 0; i < np; i++)
        after += vec[i] & 1;
    if (after == 0 && !kernel_populates()) {
        free(vec);
        sp_huge_free(big, n);
        skip();
    }
    assert_int_equal(before, 0);
    assert_int_equal(after, np);
    all_zero_then_written(big, n);
    free(vec);
    sp_huge_free(big, n);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_size_is_zeroed_and_writable),
        cmocka_unit_test(large_allocations_start_on_a_huge_page),
        cmocka_unit_test(an_overflowing_size_is_refused),
        cmocka_unit_test(the_kernel_may_back_a_large_table_with_huge_pages),
        cmocka_unit_test(populate_makes_every_page_resident),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
