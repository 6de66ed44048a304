/* Validation of decoded OTLP profiles and traces: see validate.h. Rules follow
 * opentelemetry-proto profiles/v1development/profiles.proto (v1.10): ProfilesDictionary tables
 * start with a zero entry, so index 0 means "unset"; Sample values/timestamps_unix_nano shapes;
 * Link ids are 16 and 8 bytes. Spans: trace/v1/trace.proto, Span fields 1, 2, 4, 7, 8. */
#include "validate.h"

#include <stdio.h>
#include <string.h>

typedef Opentelemetry__Proto__Profiles__V1development__ProfilesDictionary Dict;
typedef Opentelemetry__Proto__Profiles__V1development__Profile Profile;
typedef Opentelemetry__Proto__Profiles__V1development__ResourceProfiles ResourceProfiles;
typedef Opentelemetry__Proto__Profiles__V1development__Sample Sample;
typedef Opentelemetry__Proto__Profiles__V1development__ValueType ValueType;
typedef Opentelemetry__Proto__Common__V1__AnyValue AnyValue;
typedef Opentelemetry__Proto__Trace__V1__Span Span;

enum { UNCHECKED = 0, GOOD = 1, BAD = 2 };

/* Per-request state: the dictionary and what is already known about its entries. */
typedef struct dctx {
    const Dict *d;
    uint8_t *stack, *location, *mapping, *function, *attr, *link;
} dctx;

static int check_index(int32_t i, size_t n, const char *what, const char *table, sp_err *err)
{
    if (i < 0)
        return sp_fail(err, SP_EINVAL, "%s %d is negative", what, i);
    if (i != 0 && (size_t)i >= n)
        return sp_fail(err, SP_EINVAL, "%s %d out of range (%s has %zu entries)", what, i, table,
                       n);
    return 0;
}

static int bad_list_index(const char *list, size_t k, int32_t i, const char *table, size_t n,
                          sp_err *err)
{
    if (i < 0)
        return sp_fail(err, SP_EINVAL, "%s[%zu] = %d is negative", list, k, i);
    return sp_fail(err, SP_EINVAL, "%s[%zu] = %d out of range (%s has %zu entries)", list, k, i,
                   table, n);
}

static int check_str(const dctx *c, int32_t i, const char *what, sp_err *err)
{
    return check_index(i, c->d->n_string_table, what, "string_table", err);
}

static int check_anyvalue(const dctx *c, const AnyValue *v, sp_err *err);

static int check_kv(const dctx *c, const otlp_kv *kv, sp_err *err)
{
    int rc = check_str(c, kv->key_strindex, "key_strindex", err);
    if (!rc && kv->value)
        rc = check_anyvalue(c, kv->value, err);
    return rc;
}

/* Recursion depth is bounded: wire_pb_check_depth() ran before the request was unpacked. */
static int check_anyvalue(const dctx *c, const AnyValue *v, sp_err *err)
{
    switch (v->value_case) {
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE_STRINDEX:
        return check_str(c, v->string_value_strindex, "string_value_strindex", err);
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE:
        if (v->array_value)
            for (size_t i = 0; i < v->array_value->n_values; i++) {
                int rc = check_anyvalue(c, v->array_value->values[i], err);
                if (rc) {
                    sp_err_prefix(err, "array_value[%zu]: ", i);
                    return rc;
                }
            }
        return 0;
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE:
        if (v->kvlist_value)
            for (size_t i = 0; i < v->kvlist_value->n_values; i++) {
                int rc = check_kv(c, v->kvlist_value->values[i], err);
                if (rc) {
                    sp_err_prefix(err, "kvlist_value[%zu]: ", i);
                    return rc;
                }
            }
        return 0;
    default:
        return 0;
    }
}

/* Memoised check of table entry i (> 0, in range): GOOD entries return at once, BAD ones too
 * unless a message is wanted, in which case the check runs again to produce it. */
#define MEMO(c, field, i, err, body)                                                               \
    do {                                                                                           \
        if ((c)->field[i] == GOOD || ((c)->field[i] == BAD && !(err)))                             \
            return (c)->field[i] == GOOD ? 0 : SP_EINVAL;                                          \
        int rc_ = (body);                                                                          \
        (c)->field[i] = rc_ ? BAD : GOOD;                                                          \
        return rc_;                                                                                \
    } while (0)

static int check_attr_body(const dctx *c, size_t i, sp_err *err)
{
    const Opentelemetry__Proto__Profiles__V1development__KeyValueAndUnit *kv =
        c->d->attribute_table[i];
    int rc = check_str(c, kv->key_strindex, "key_strindex", err);
    if (!rc)
        rc = check_str(c, kv->unit_strindex, "unit_strindex", err);
    if (!rc && kv->value)
        rc = check_anyvalue(c, kv->value, err);
    if (rc)
        sp_err_prefix(err, "attribute_table[%zu]: ", i);
    return rc;
}

static int check_attr(const dctx *c, size_t i, sp_err *err)
{
    MEMO(c, attr, i, err, check_attr_body(c, i, err));
}

static int check_attr_list(const dctx *c, const int32_t *idx, size_t n, sp_err *err)
{
    size_t nt = c->d->n_attribute_table;
    for (size_t k = 0; k < n; k++) {
        int rc = 0;
        if (idx[k] < 0 || (idx[k] != 0 && (size_t)idx[k] >= nt))
            return bad_list_index("attribute_indices", k, idx[k], "attribute_table", nt, err);
        if (idx[k] > 0 && (rc = check_attr(c, (size_t)idx[k], err)) != 0) {
            sp_err_prefix(err, "attribute_indices[%zu]: ", k);
            return rc;
        }
    }
    return 0;
}

static int check_mapping_body(const dctx *c, size_t i, sp_err *err)
{
    const Opentelemetry__Proto__Profiles__V1development__Mapping *m = c->d->mapping_table[i];
    int rc = check_str(c, m->filename_strindex, "filename_strindex", err);
    if (!rc)
        rc = check_attr_list(c, m->attribute_indices, m->n_attribute_indices, err);
    if (rc)
        sp_err_prefix(err, "mapping_table[%zu]: ", i);
    return rc;
}

static int check_mapping(const dctx *c, size_t i, sp_err *err)
{
    MEMO(c, mapping, i, err, check_mapping_body(c, i, err));
}

static int check_function_body(const dctx *c, size_t i, sp_err *err)
{
    const Opentelemetry__Proto__Profiles__V1development__Function *f = c->d->function_table[i];
    int rc = check_str(c, f->name_strindex, "name_strindex", err);
    if (!rc)
        rc = check_str(c, f->system_name_strindex, "system_name_strindex", err);
    if (!rc)
        rc = check_str(c, f->filename_strindex, "filename_strindex", err);
    if (rc)
        sp_err_prefix(err, "function_table[%zu]: ", i);
    return rc;
}

static int check_function(const dctx *c, size_t i, sp_err *err)
{
    MEMO(c, function, i, err, check_function_body(c, i, err));
}

static int check_location_body(const dctx *c, size_t i, sp_err *err)
{
    const Opentelemetry__Proto__Profiles__V1development__Location *l = c->d->location_table[i];
    int rc =
        check_index(l->mapping_index, c->d->n_mapping_table, "mapping_index", "mapping_table", err);
    if (!rc && l->mapping_index > 0)
        rc = check_mapping(c, (size_t)l->mapping_index, err);
    for (size_t k = 0; !rc && k < l->n_lines; k++) {
        int32_t fi = l->lines[k]->function_index;
        rc = check_index(fi, c->d->n_function_table, "function_index", "function_table", err);
        if (!rc && fi > 0)
            rc = check_function(c, (size_t)fi, err);
        if (rc)
            sp_err_prefix(err, "lines[%zu]: ", k);
    }
    if (!rc)
        rc = check_attr_list(c, l->attribute_indices, l->n_attribute_indices, err);
    if (rc)
        sp_err_prefix(err, "location_table[%zu]: ", i);
    return rc;
}

static int check_location(const dctx *c, size_t i, sp_err *err)
{
    MEMO(c, location, i, err, check_location_body(c, i, err));
}

static int check_stack_body(const dctx *c, size_t i, sp_err *err)
{
    const Opentelemetry__Proto__Profiles__V1development__Stack *s = c->d->stack_table[i];
    size_t nt = c->d->n_location_table;
    for (size_t k = 0; k < s->n_location_indices; k++) {
        int32_t li = s->location_indices[k];
        if ((uint32_t)li < nt && c->location[li] == GOOD)
            continue; /* the usual case in two loads: stacks share most of their locations */
        int rc = 0;
        if (li < 0 || (li != 0 && (size_t)li >= nt)) {
            rc = bad_list_index("location_indices", k, li, "location_table", nt, err);
            sp_err_prefix(err, "stack_table[%zu]: ", i);
            return rc;
        }
        if (li > 0 && (rc = check_location(c, (size_t)li, err)) != 0) {
            sp_err_prefix(err, "stack_table[%zu]: location_indices[%zu]: ", i, k);
            return rc;
        }
    }
    return 0;
}

static int check_stack(const dctx *c, size_t i, sp_err *err)
{
    MEMO(c, stack, i, err, check_stack_body(c, i, err));
}

static int check_link_body(const dctx *c, size_t i, sp_err *err)
{
    const Opentelemetry__Proto__Profiles__V1development__Link *l = c->d->link_table[i];
    if (l->trace_id.len != 0 && l->trace_id.len != 16)
        return sp_fail(err, SP_EINVAL, "link_table[%zu]: trace_id is %zu bytes (must be 16)", i,
                       l->trace_id.len);
    if (l->span_id.len != 0 && l->span_id.len != 8)
        return sp_fail(err, SP_EINVAL, "link_table[%zu]: span_id is %zu bytes (must be 8)", i,
                       l->span_id.len);
    return 0;
}

static int check_link(const dctx *c, size_t i, sp_err *err)
{
    MEMO(c, link, i, err, check_link_body(c, i, err));
}

static int check_value_type(const dctx *c, const ValueType *vt, const char *name, sp_err *err)
{
    if (!vt)
        return 0;
    int rc = check_str(c, vt->type_strindex, "type_strindex", err);
    if (!rc)
        rc = check_str(c, vt->unit_strindex, "unit_strindex", err);
    if (rc)
        sp_err_prefix(err, "%s: ", name);
    return rc;
}

static int check_sample(const dctx *c, const Sample *s, sp_err *err)
{
    const Dict *d = c->d;
    if (s->n_values == 0 && s->n_timestamps_unix_nano == 0)
        return sp_fail(err, SP_EINVAL, "no values and no timestamps (one of them must be set)");
    if (s->n_values && s->n_timestamps_unix_nano && s->n_values != s->n_timestamps_unix_nano)
        return sp_fail(err, SP_EINVAL,
                       "%zu values but %zu timestamps (must be equal when both are set)",
                       s->n_values, s->n_timestamps_unix_nano);
    int rc = check_index(s->stack_index, d->n_stack_table, "stack_index", "stack_table", err);
    if (!rc && s->stack_index > 0)
        rc = check_stack(c, (size_t)s->stack_index, err);
    if (!rc)
        rc = check_attr_list(c, s->attribute_indices, s->n_attribute_indices, err);
    if (!rc)
        rc = check_index(s->link_index, d->n_link_table, "link_index", "link_table", err);
    if (!rc && s->link_index > 0)
        rc = check_link(c, (size_t)s->link_index, err);
    return rc;
}

/* A Sample whose shape is right and whose every index is 0 or names an entry already found GOOD:
 * its check in a few loads and no calls. Every Sample after the first of its stack and threads
 * takes it (an eBPF Export names a few thousand stacks over tens of thousands of Samples); any
 * other goes through check_sample, which finds or names what is wrong. A negative index turns
 * into one past every table's end here. */
static int sample_known_good(const dctx *c, const Sample *s)
{
    const Dict *d = c->d;
    size_t nv = s->n_values, nt = s->n_timestamps_unix_nano;
    if (nv ? nt && nt != nv : !nt)
        return 0;
    uint32_t i = (uint32_t)s->stack_index;
    if (i && (i >= d->n_stack_table || c->stack[i] != GOOD))
        return 0;
    i = (uint32_t)s->link_index;
    if (i && (i >= d->n_link_table || c->link[i] != GOOD))
        return 0;
    for (size_t k = 0; k < s->n_attribute_indices; k++) {
        i = (uint32_t)s->attribute_indices[k];
        if (i && (i >= d->n_attribute_table || c->attr[i] != GOOD))
            return 0;
    }
    return 1;
}

static int check_profile(const dctx *c, const Profile *p, sp_err *err)
{
    int rc = check_value_type(c, p->sample_type, "sample_type", err);
    if (!rc)
        rc = check_value_type(c, p->period_type, "period_type", err);
    if (!rc)
        rc = check_attr_list(c, p->attribute_indices, p->n_attribute_indices, err);
    for (size_t i = 0; !rc && i < p->n_samples; i++) {
        if (sample_known_good(c, p->samples[i]))
            continue;
        rc = check_sample(c, p->samples[i], err);
        if (rc)
            sp_err_prefix(err, "sample %zu: ", i);
    }
    return rc;
}

static int check_attrs(const dctx *c, otlp_kv *const *kv, size_t n, const char *owner, sp_err *err)
{
    for (size_t i = 0; i < n; i++) {
        int rc = check_kv(c, kv[i], err);
        if (rc) {
            sp_err_prefix(err, "%s.attributes[%zu]: ", owner, i);
            return rc;
        }
    }
    return 0;
}

static int alloc_flags(sp_arena *a, size_t n, uint8_t **out, sp_err *err)
{
    *out = NULL;
    if (n == 0)
        return 0;
    *out = sp_arena_calloc(a, n, 1);
    if (!*out)
        return sp_fail(err, SP_ETOOBIG,
                       "request's decode memory budget exhausted while validating %zu entries", n);
    return 0;
}

/* The state of one request's validation: the dictionary's entry flags, and the verdict the
 * resources are judged into. */
struct otlp_profiles_check {
    dctx c;
    otlp_verdict *v;
    size_t item; /* the next profile's index in the verdict's numbering */
};

int otlp_profiles_check_begin(const Dict *d, size_t total, sp_arena *a, otlp_verdict *v,
                              otlp_profiles_check **out, sp_err *err)
{
    memset(v, 0, sizeof *v);
    *out = NULL;
    v->total = total;
    if (total == 0)
        return 0;
    if (!d)
        return sp_fail(err, SP_EINVAL,
                       "request has %zu profiles but no dictionary (ExportProfilesServiceRequest "
                       "field 2); every index in a profile points into it",
                       total);
    otlp_profiles_check *k = sp_arena_calloc(a, 1, sizeof *k);
    if (!k)
        return sp_fail(err, SP_ETOOBIG, "request's decode memory budget exhausted");
    k->c.d = d;
    k->v = v;
    int rc = alloc_flags(a, total, &v->is_bad, err);
    if (!rc)
        rc = alloc_flags(a, d->n_stack_table, &k->c.stack, err);
    if (!rc)
        rc = alloc_flags(a, d->n_location_table, &k->c.location, err);
    if (!rc)
        rc = alloc_flags(a, d->n_mapping_table, &k->c.mapping, err);
    if (!rc)
        rc = alloc_flags(a, d->n_function_table, &k->c.function, err);
    if (!rc)
        rc = alloc_flags(a, d->n_attribute_table, &k->c.attr, err);
    if (!rc)
        rc = alloc_flags(a, d->n_link_table, &k->c.link, err);
    if (!rc)
        *out = k;
    return rc;
}

size_t otlp_profiles_count(const ResourceProfiles *rp)
{
    size_t n = 0;
    for (size_t s = 0; s < rp->n_scope_profiles; s++)
        n += rp->scope_profiles[s]->n_profiles;
    return n;
}

int otlp_profiles_check_resource(otlp_profiles_check *k, const ResourceProfiles *rp, size_t r,
                                 sp_err *err)
{
    otlp_verdict *v = k->v;
    if (k->item + otlp_profiles_count(rp) > v->total)
        return sp_fail(err, SP_EINTERNAL,
                       "resource_profiles[%zu] has more profiles than the request was counted with "
                       "(%zu)",
                       r, v->total);
    const dctx *c = &k->c;
    sp_err rerr = {0};
    int rbad = rp->resource ? check_attrs(c, rp->resource->attributes, rp->resource->n_attributes,
                                          "resource", &rerr)
                            : 0;
    for (size_t s = 0; s < rp->n_scope_profiles; s++) {
        const Opentelemetry__Proto__Profiles__V1development__ScopeProfiles *sp =
            rp->scope_profiles[s];
        sp_err serr = rerr;
        int sbad = rbad;
        if (!sbad && sp->scope)
            sbad = check_attrs(c, sp->scope->attributes, sp->scope->n_attributes, "scope", &serr);
        for (size_t p = 0; p < sp->n_profiles; p++, k->item++) {
            sp_err perr = serr;
            int want_msg = v->bad == 0;
            int bad = sbad ? sbad : check_profile(c, sp->profiles[p], want_msg ? &perr : NULL);
            if (!bad)
                continue;
            v->is_bad[k->item] = 1;
            if (v->bad++ == 0) {
                v->first = perr;
                v->first.code = SP_EINVAL;
                sp_err_prefix(&v->first,
                              "resource_profiles[%zu].scope_profiles[%zu].profiles[%zu]: ", r, s,
                              p);
            }
        }
    }
    return 0;
}

int otlp_validate_profiles(const otlp_profiles_req *req, sp_arena *a, otlp_verdict *v, sp_err *err)
{
    size_t total = 0;
    for (size_t r = 0; r < req->n_resource_profiles; r++)
        total += otlp_profiles_count(req->resource_profiles[r]);
    otlp_profiles_check *k;
    int rc = otlp_profiles_check_begin(req->dictionary, total, a, v, &k, err);
    for (size_t r = 0; !rc && k && r < req->n_resource_profiles; r++)
        rc = otlp_profiles_check_resource(k, req->resource_profiles[r], r, err);
    return rc;
}

static int all_zero(const ProtobufCBinaryData *b)
{
    for (size_t i = 0; i < b->len; i++)
        if (b->data[i])
            return 0;
    return 1;
}

static int check_span(const Span *s, sp_err *err)
{
    if (s->trace_id.len != 16)
        return sp_fail(err, SP_EINVAL, "trace_id is %zu bytes (must be 16)", s->trace_id.len);
    if (all_zero(&s->trace_id))
        return sp_fail(err, SP_EINVAL, "trace_id is all zeros");
    if (s->span_id.len != 8)
        return sp_fail(err, SP_EINVAL, "span_id is %zu bytes (must be 8)", s->span_id.len);
    if (all_zero(&s->span_id))
        return sp_fail(err, SP_EINVAL, "span_id is all zeros");
    if (s->parent_span_id.len != 0 && s->parent_span_id.len != 8)
        return sp_fail(err, SP_EINVAL, "parent_span_id is %zu bytes (must be empty or 8)",
                       s->parent_span_id.len);
    if (s->end_time_unix_nano < s->start_time_unix_nano)
        return sp_fail(
            err, SP_EINVAL, "end_time_unix_nano %llu is before start_time_unix_nano %llu",
            (unsigned long long)s->end_time_unix_nano, (unsigned long long)s->start_time_unix_nano);
    return 0;
}

int otlp_validate_traces(const otlp_traces_req *req, sp_arena *a, otlp_verdict *v, sp_err *err)
{
    memset(v, 0, sizeof *v);
    for (size_t r = 0; r < req->n_resource_spans; r++)
        for (size_t s = 0; s < req->resource_spans[r]->n_scope_spans; s++)
            v->total += req->resource_spans[r]->scope_spans[s]->n_spans;
    int rc = alloc_flags(a, v->total, &v->is_bad, err);
    if (rc)
        return rc;
    size_t k = 0;
    for (size_t r = 0; r < req->n_resource_spans; r++) {
        const Opentelemetry__Proto__Trace__V1__ResourceSpans *rs = req->resource_spans[r];
        for (size_t s = 0; s < rs->n_scope_spans; s++) {
            const Opentelemetry__Proto__Trace__V1__ScopeSpans *ss = rs->scope_spans[s];
            for (size_t i = 0; i < ss->n_spans; i++, k++) {
                sp_err serr;
                if (!check_span(ss->spans[i], &serr))
                    continue;
                v->is_bad[k] = 1;
                if (v->bad++ == 0) {
                    v->first = serr;
                    sp_err_prefix(&v->first, "resource_spans[%zu].scope_spans[%zu].spans[%zu]: ", r,
                                  s, i);
                }
            }
        }
    }
    return 0;
}

static int resolve(int32_t i, char *const *strings, size_t n, const char *what, const char **out,
                   sp_err *err)
{
    int rc = check_index(i, n, what, "string_table", err);
    if (rc)
        return rc;
    *out = i == 0 ? "" : strings[i];
    return 0;
}

int otlp_resolve_kv(const otlp_kv *kv, char *const *strings, size_t nstrings, const char **key,
                    const char **str, sp_err *err)
{
    *key = "";
    *str = NULL;
    int rc = 0;
    if (kv->key && kv->key[0])
        *key = kv->key;
    else
        rc = resolve(kv->key_strindex, strings, nstrings, "key_strindex", key, err);
    if (rc || !kv->value)
        return rc;
    switch (kv->value->value_case) {
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE:
        *str = kv->value->string_value ? kv->value->string_value : "";
        return 0;
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE_STRINDEX:
        return resolve(kv->value->string_value_strindex, strings, nstrings, "string_value_strindex",
                       str, err);
    default:
        return 0;
    }
}
