/* A span's extras blob (see span_extras.h). */
#include "span_extras.h"
#include "../common/err.h"

#include <string.h>

typedef Opentelemetry__Proto__Trace__V1__Span span_t;

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* Bytes a length-delimited field of n bytes takes (field numbers below 16: a one-byte key). */
static size_t field_len(size_t n)
{
    return 1 + varint_len(n) + n;
}

static uint8_t *put_field(uint8_t *p, uint8_t key, const void *data, size_t n)
{
    *p++ = key;
    p = put_varint(p, n);
    if (n)
        memcpy(p, data, n);
    return p + n;
}

/* Keeps the first items (protobuf-c messages) that fit in budget bytes as repeated fields,
 * skipping any that does not (a later, smaller one may still fit). The array and its count
 * become the kept ones (a new array in a when something was cut); returns how many were cut, or -1
 * when the arena is spent. *budget shrinks by what the kept ones take. */
static int64_t fit(void ***items, size_t *n, size_t *budget, sp_arena *a)
{
    size_t need = 0, cnt = *n;
    for (size_t i = 0; i < cnt; i++)
        need += field_len(protobuf_c_message_get_packed_size((*items)[i]));
    if (need <= *budget) {
        *budget -= need;
        return 0;
    }
    void **kept = cnt ? sp_arena_alloc(a, cnt * sizeof *kept) : NULL;
    if (cnt && !kept)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < cnt; i++) {
        size_t sz = field_len(protobuf_c_message_get_packed_size((*items)[i]));
        if (sz <= *budget) {
            *budget -= sz;
            kept[k++] = (*items)[i];
        }
    }
    *items = kept;
    *n = k;
    return (int64_t)(cnt - k);
}

/* fit() on a typed array (the pointer goes through a void ** of its own, never aliased). */
#define FIT(arr, n, budget, a)                                                                     \
    __extension__({                                                                                \
        void **v_ = (void **)(arr);                                                                \
        int64_t c_ = fit(&v_, (n), (budget), (a));                                                 \
        (arr) = (__typeof__(arr))v_;                                                               \
        c_;                                                                                        \
    })

/* Room for the dropped_*_count fields that cutting may add or grow (key + 5-byte varint). */
#define DROPPED_ROOM 18

static int pack_into(const ProtobufCMessage *m, sp_arena *a, uint8_t **out, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    *out = sp_arena_alloc(a, *len ? *len : 1);
    if (!*out)
        return SP_ETOOBIG;
    protobuf_c_message_pack(m, *out);
    return 0;
}

int otlp_extras_head_make(const Opentelemetry__Proto__Resource__V1__Resource *res,
                          const Opentelemetry__Proto__Common__V1__InstrumentationScope *scope,
                          size_t cap, sp_arena *a, otlp_extras_head *h)
{
    memset(h, 0, sizeof *h);
    size_t budget = cap / 2;
    int rc = 0;
    if (res) {
        Opentelemetry__Proto__Resource__V1__Resource r = *res;
        r.n_attributes = 0;
        size_t fixed = protobuf_c_message_get_packed_size(&r.base) + DROPPED_ROOM;
        budget = budget > fixed ? budget - fixed : 0;
        r.attributes = res->attributes;
        r.n_attributes = res->n_attributes;
        int64_t cut = FIT(r.attributes, &r.n_attributes, &budget, a);
        if (cut < 0)
            return SP_ETOOBIG;
        r.dropped_attributes_count += (uint32_t)cut;
        h->cut += (uint64_t)cut;
        rc = pack_into(&r.base, a, &h->res, &h->nres);
    }
    if (scope && !rc) {
        Opentelemetry__Proto__Common__V1__InstrumentationScope s = *scope;
        s.n_attributes = 0;
        size_t fixed = protobuf_c_message_get_packed_size(&s.base) + DROPPED_ROOM;
        if (fixed > budget) { /* a scope name or version past the cap: keep neither */
            h->cut += scope->n_attributes;
            return 0;
        }
        budget -= fixed;
        s.attributes = scope->attributes;
        s.n_attributes = scope->n_attributes;
        int64_t cut = FIT(s.attributes, &s.n_attributes, &budget, a);
        if (cut < 0)
            return SP_ETOOBIG;
        s.dropped_attributes_count += (uint32_t)cut;
        h->cut += (uint64_t)cut;
        rc = pack_into(&s.base, a, &h->scope, &h->nscope);
    }
    if (rc)
        memset(h, 0, sizeof *h);
    return rc;
}

/* Cuts c's attributes, then events, then links to fit budget bytes; *cut += what was cut.
 * 0, or SP_ETOOBIG (arena spent, or the fixed part alone is past budget). */
static int trim_span(span_t *c, size_t budget, sp_arena *a, uint64_t *cut)
{
    size_t na = c->n_attributes, ne = c->n_events, nl = c->n_links;
    c->n_attributes = c->n_events = c->n_links = 0;
    size_t fixed = protobuf_c_message_get_packed_size(&c->base) + 3 * DROPPED_ROOM;
    c->n_attributes = na;
    c->n_events = ne;
    c->n_links = nl;
    if (fixed > budget) {
        *cut += na + ne + nl;
        return SP_ETOOBIG;
    }
    budget -= fixed;
    int64_t ca = FIT(c->attributes, &c->n_attributes, &budget, a);
    int64_t ce = ca < 0 ? -1 : FIT(c->events, &c->n_events, &budget, a);
    int64_t cl = ce < 0 ? -1 : FIT(c->links, &c->n_links, &budget, a);
    if (cl < 0)
        return SP_ETOOBIG;
    c->dropped_attributes_count += (uint32_t)ca;
    c->dropped_events_count += (uint32_t)ce;
    c->dropped_links_count += (uint32_t)cl;
    *cut += (uint64_t)(ca + ce + cl);
    return 0;
}

int otlp_span_extras(const otlp_extras_head *h, const span_t *s, size_t cap, sp_arena *a,
                     const uint8_t **out, uint32_t *len, uint64_t *cut)
{
    *out = NULL;
    *len = 0;
    span_t c = *s;
    /* The row has these (span table columns): not stored twice. */
    memset(&c.trace_id, 0, sizeof c.trace_id);
    memset(&c.span_id, 0, sizeof c.span_id);
    memset(&c.parent_span_id, 0, sizeof c.parent_span_id);
    c.name = (char *)protobuf_c_empty_string;
    c.start_time_unix_nano = c.end_time_unix_nano = 0;
    size_t head = (h->res ? field_len(h->nres) : 0) + (h->scope ? field_len(h->nscope) : 0);
    /* ResourceSpans{1: resource, 2: ScopeSpans{1: scope, 2: span}}: two keys and two lengths
     * (under 2^21: three bytes each) besides the parts. */
    size_t overhead = head + 2 * (1 + 3);
    if (overhead >= cap) {
        *cut += s->n_attributes + s->n_events + s->n_links;
        return SP_ETOOBIG;
    }
    size_t budget = cap - overhead;
    size_t nspan = protobuf_c_message_get_packed_size(&c.base);
    if (nspan + 1 + 3 > budget) {
        int rc = trim_span(&c, budget - 1 - 3, a, cut);
        if (rc)
            return rc;
        nspan = protobuf_c_message_get_packed_size(&c.base);
    }
    size_t nss = (h->scope ? field_len(h->nscope) : 0) + field_len(nspan);
    size_t total = (h->res ? field_len(h->nres) : 0) + field_len(nss);
    uint8_t *b = sp_arena_alloc(a, total), *p = b;
    if (!b)
        return SP_ETOOBIG;
    if (h->res)
        p = put_field(p, 0x0a, h->res, h->nres); /* ResourceSpans.resource = 1 */
    *p++ = 0x12;                                 /* ResourceSpans.scope_spans = 2 */
    p = put_varint(p, nss);
    if (h->scope)
        p = put_field(p, 0x0a, h->scope, h->nscope); /* ScopeSpans.scope = 1 */
    *p++ = 0x12;                                     /* ScopeSpans.spans = 2 */
    p = put_varint(p, nspan);
    protobuf_c_message_pack(&c.base, p);
    *out = b;
    *len = (uint32_t)total;
    return 0;
}
