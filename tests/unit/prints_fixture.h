/* Prints as the OTLP converter makes them (otlp/convert.c): one per location, and one per
 * sample's location list, each sample naming its own entry. For the tests of the stores and the
 * correlator that find stacks by print. */
#ifndef SPANPROF_TEST_PRINTS_FIXTURE_H
#define SPANPROF_TEST_PRINTS_FIXTURE_H

#include "common/profile.h"

static inline void give_prints(sp_arena *a, sp_profile *p)
{
    sp_print *lp;
    assert_int_equal(sp_location_prints(p, a, &lp), 0);
    p->location_prints = lp;
    sp_print *sp = sp_arena_calloc(a, p->nsamples + 1, sizeof *sp);
    assert_non_null(sp);
    for (uint32_t i = 0; i < p->nsamples; i++) {
        sp_sample *s = &p->samples[i];
        sp[i + 1] = sp_stack_print(lp, p->nlocations, s->location_ids, s->nlocations);
        s->stack = i + 1;
    }
    p->stack_prints = sp;
    p->nstack_prints = p->nsamples + 1;
}

#endif
