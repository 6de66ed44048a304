/* Software prefetch helpers for the hash tables' probes.
 *
 * A helper whose body is only a __builtin_prefetch must be inlined where it is called: GCC counts
 * a prefetch as no side effect, so a helper it did not inline early (one that hashes first) is
 * found to be const by its interprocedural analysis and every call to it is deleted as dead code.
 * That happened to the writer's aggregate prefetch (store_sum3_prefetch): the binary held none
 * of its prefetches (issue 19). Forced inline, the prefetch lands in the caller and stays.
 */
#ifndef SP_PREFETCH_H
#define SP_PREFETCH_H

#define SP_PREFETCH_HELPER static inline __attribute__((always_inline))

#endif
