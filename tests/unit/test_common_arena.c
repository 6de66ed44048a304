/* common/arena: the block cache (C1-C4 in arena.c). The oracle is the arena's own contract seen
 * from outside: where an allocation lands (a block given back is the next one handed out), how
 * many bytes the cache says it keeps against the blocks this test made, and that no two live
 * arenas ever share a block (each thread's bytes survive the other threads' arenas). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/arena.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/asan_interface.h>
#define UNDER_ASAN 1
#endif
#endif

#define KIB ((size_t)1024)
#define MIB ((size_t)1024 * 1024)

static int setup(void **state)
{
    (void)state;
    sp_arena_cache_limit(0); /* start empty */
    sp_arena_cache_limit(SP_ARENA_CACHE_DEFAULT);
    return 0;
}

static void given_back_block_is_the_next_one_handed_out(void **state)
{
    (void)state;
    sp_arena *a = sp_arena_new(0);
    char *p = sp_arena_alloc(a, 100);
    assert_non_null(p);
    memset(p, 'a', 100);
    sp_arena_free(a);
    assert_int_equal(sp_arena_cached(), 64 * KIB); /* the first block is 64 KiB */
#ifdef UNDER_ASAN
    assert_true(__asan_address_is_poisoned(p)); /* C4: a stale pointer still faults */
#endif
    sp_arena *b = sp_arena_new(0);
    char *q = sp_arena_alloc(b, 100);
    assert_ptr_equal(q, p);
    assert_int_equal(sp_arena_cached(), 0);
    memset(q, 'b', 100); /* writable again (unpoisoned) */
    sp_arena_free(b);
}

static void a_whole_request_arena_comes_back_block_for_block(void **state)
{
    (void)state;
    /* 64 KiB, 128 KiB, ... 8 MiB, then 8 MiB blocks: 30 MiB in 16 KiB pieces (each block's own
     * header takes room from its data, so a piece of a block's size would get a block of its own
     * that no class keeps). */
    sp_arena *a = sp_arena_new(0);
    for (int i = 0; i < 1920; i++)
        assert_non_null(sp_arena_alloc(a, 16 * KIB));
    size_t reserved = sp_arena_used(a);
    sp_arena_free(a);
    assert_int_equal(sp_arena_cached(), reserved);
    /* The same request again takes every block from the cache. */
    a = sp_arena_new(0);
    for (int i = 0; i < 1920; i++)
        assert_non_null(sp_arena_alloc(a, 16 * KIB));
    assert_int_equal(sp_arena_cached(), 0);
    sp_arena_free(a);
}

static void cache_stays_within_its_limit(void **state)
{
    (void)state;
    sp_arena_cache_limit(256 * KIB);
    sp_arena *a = sp_arena_new(0);
    for (int i = 0; i < 128; i++) /* 2 MiB: blocks of 64 KiB .. 1 MiB */
        assert_non_null(sp_arena_alloc(a, 16 * KIB));
    sp_arena_free(a);
    size_t kept = sp_arena_cached();
    assert_true(kept > 0);
    assert_true(kept <= 256 * KIB); /* C2 */
    sp_arena_cache_limit(0);        /* keeps none, frees what it kept */
    assert_int_equal(sp_arena_cached(), 0);
    a = sp_arena_new(0);
    assert_non_null(sp_arena_alloc(a, 100));
    sp_arena_free(a);
    assert_int_equal(sp_arena_cached(), 0);
}

static void odd_sized_blocks_are_not_kept(void **state)
{
    (void)state;
    sp_arena *a = sp_arena_new(0);
    assert_non_null(sp_arena_alloc(a, 3 * MIB)); /* larger than the next block: its own size */
    assert_in_range(sp_arena_used(a), 3 * MIB + 1, 3 * MIB + 64); /* and its header's */
    sp_arena_free(a);
    assert_int_equal(sp_arena_cached(), 0); /* C1 */
}

static void budget_counts_a_cached_block_like_a_new_one(void **state)
{
    (void)state;
    sp_arena *a = sp_arena_new(0);
    assert_non_null(sp_arena_alloc(a, 100));
    sp_arena_free(a);
    sp_arena *b = sp_arena_new(100 * KIB); /* room for the 64 KiB block, not the 128 KiB one */
    assert_non_null(sp_arena_alloc(b, 60 * KIB));
    assert_null(sp_arena_alloc(b, 60 * KIB));
    assert_int_equal(sp_arena_used(b), 64 * KIB);
    sp_arena_free(b);
}

#define THREADS 4
#define ROUNDS  300

static void *churn(void *arg)
{
    unsigned char mark = (unsigned char)(uintptr_t)arg;
    for (int r = 0; r < ROUNDS; r++) {
        sp_arena *a = sp_arena_new(0);
        unsigned char *p[40];
        size_t n = (size_t)(r % 40) + 1;
        for (size_t i = 0; i < n; i++) {
            p[i] = sp_arena_alloc(a, 20 * KIB);
            if (!p[i])
                return (void *)1;
            memset(p[i], mark, 20 * KIB);
        }
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; k < 20 * KIB; k += 997)
                if (p[i][k] != mark)
                    return (void *)1; /* another arena wrote into this one's block */
        sp_arena_free(a);
    }
    return NULL;
}

static void threads_never_share_a_block(void **state)
{
    (void)state;
    sp_arena_cache_limit(2 * MIB);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, churn, (void *)(uintptr_t)(i + 1)), 0);
    for (int i = 0; i < THREADS; i++) {
        void *ret;
        assert_int_equal(pthread_join(th[i], &ret), 0);
        assert_null(ret);
    }
    assert_true(sp_arena_cached() > 0);
    assert_true(sp_arena_cached() <= 2 * MIB);
}

/* sp_arena_split / sp_arena_adopt: a helper thread's arena takes part of the request's budget and
 * comes back with its memory, so the two never reserve more than the request may. */
static void a_split_arena_shares_the_budget_and_comes_back_whole(void **state)
{
    (void)state;
    sp_arena *a = sp_arena_new(4 * MIB);
    assert_non_null(sp_arena_alloc(a, 1 * MIB)); /* about 1 MiB reserved, 3 left */
    size_t before = sp_arena_used(a);
    sp_arena *c = sp_arena_split(a, SIZE_MAX);
    assert_non_null(c);
    /* the child got at most half of what was left, and a cannot use it meanwhile */
    char *p = sp_arena_alloc(c, 1 * MIB);
    assert_non_null(p);
    memset(p, 0x5a, 1 * MIB);
    assert_null(sp_arena_alloc(c, 1 * MIB)); /* past its half */
    assert_null(sp_arena_alloc(a, 2 * MIB)); /* a's share is what the child does not hold */
    size_t child_used = sp_arena_used(c);
    sp_arena_adopt(a, c);
    assert_int_equal(sp_arena_used(a), before + child_used);
    for (size_t i = 0; i < 1 * MIB; i += 4096)
        assert_int_equal(p[i], 0x5a); /* what the child allocated lives on in a */
    /* the lent budget is back: what is left is the budget less what both reserved */
    assert_non_null(sp_arena_alloc(a, 4 * MIB - sp_arena_used(a) - 64 * KIB));
    /* an arena with no room to spare lends nothing */
    sp_arena *full = sp_arena_new(64 * KIB);
    assert_non_null(sp_arena_alloc(full, 60 * KIB));
    assert_null(sp_arena_split(full, SIZE_MAX));
    sp_arena_free(full);
    sp_arena_free(a); /* frees the adopted blocks too: ASan and the leak check see to it */
    sp_arena *u = sp_arena_new(0), *uc = sp_arena_split(u, 123);
    assert_non_null(uc); /* unlimited gives unlimited */
    assert_non_null(sp_arena_alloc(uc, 3 * MIB));
    sp_arena_adopt(u, uc);
    sp_arena_free(u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(given_back_block_is_the_next_one_handed_out, setup),
        cmocka_unit_test_setup(a_whole_request_arena_comes_back_block_for_block, setup),
        cmocka_unit_test_setup(cache_stays_within_its_limit, setup),
        cmocka_unit_test_setup(odd_sized_blocks_are_not_kept, setup),
        cmocka_unit_test_setup(budget_counts_a_cached_block_like_a_new_one, setup),
        cmocka_unit_test_setup(threads_never_share_a_block, setup),
        cmocka_unit_test_setup(a_split_arena_shares_the_budget_and_comes_back_whole, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
