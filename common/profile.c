#include "profile.h"
#include "err.h"

#include <string.h>

int sp_batch_add_profile(sp_batch *b, sp_profile *p)
{
    /* Capacity is implicit: it doubles whenever the count reaches a power of two. */
    size_t n = b->nprofiles;
    if (n == 0 || (n & (n - 1)) == 0) {
        size_t cap = n ? n * 2 : 4;
        sp_profile **ps = sp_arena_alloc(b->arena, cap * sizeof *ps);
        if (!ps)
            return SP_ETOOBIG;
        if (n)
            memcpy(ps, b->profiles, n * sizeof *ps);
        b->profiles = ps;
    }
    b->profiles[b->nprofiles++] = p;
    return 0;
}
