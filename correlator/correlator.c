#include "correlator.h"

#include <stdlib.h>

struct corr {
    corr_options opt;
};

corr *corr_new(const corr_options *o)
{
    corr *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    if (o)
        c->opt = *o;
    if (!c->opt.min_span_ns)
        c->opt.min_span_ns = 20 * 1000000LL;
    return c;
}

void corr_free(corr *c)
{
    free(c);
}

size_t corr_attach_spans(corr *c, sp_batch *b)
{
    (void)c;
    size_t attached = 0;
    for (size_t i = 0; i < b->nprofiles; i++) {
        sp_profile *p = b->profiles[i];
        for (uint32_t k = 0; k < p->nsamples; k++) {
            sp_sample *s = &p->samples[k];
            if (!s->has_link || s->nspans)
                continue;
            /* The sender knew the span: that beats any inference (DESIGN.md, Decisions). */
            s->spans = &s->link;
            s->nspans = 1;
            attached++;
        }
    }
    return attached;
}
