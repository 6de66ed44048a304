/* What every fuzz target shares: CHECK(c) stops the run at the first broken invariant (a trap,
 * so libFuzzer records the input even without a sanitizer report). */
#ifndef FUZZ_CHECK_H
#define FUZZ_CHECK_H

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            __builtin_trap();                                                                      \
    } while (0)

#endif
