/* Trace forwarding with enrichment: see forward.h. Field numbers from
 * opentelemetry/proto/collector/trace/v1/trace_service.proto and trace/v1/trace.proto:
 * ExportTraceServiceRequest.resource_spans = 1, ResourceSpans.scope_spans = 2,
 * ScopeSpans.spans = 2, Span.span_id = 2, Span.attributes = 9 (KeyValue: key = 1, value = 2;
 * AnyValue.string_value = 1).
 */
#include "forward.h"
#include "../wire/pb.h"

#include "../common/log.h"
#include "../common/metrics.h"

#include <stdlib.h>
#include <string.h>

enum { LVL_REQUEST, LVL_RESOURCE_SPANS, LVL_SCOPE_SPANS, LVL_SPAN };

typedef struct ctx {
    const uint8_t (*ids)[8];
    size_t nids;
    int (*mark)(void *ud, const uint8_t span_id[8]); /* instead of ids when set */
    void *mark_ud;
    size_t added;
    const uint8_t *base;
    sp_err *err;
} ctx;

static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, 8);
}

/* Does this Span (its bytes) need the attribute? */
static int span_wants(ctx *c, const uint8_t *p, size_t len, uint8_t id_hex_src[8], int *wants)
{
    const uint8_t *end = p + len;
    int has_id = 0, has_attr = 0;
    while (p < end) {
        wire_pb_field f;
        if (wire_pb_next(&p, end, c->base, &f, c->err))
            return SP_EINVAL;
        /* A repeated singular field: the last one counts, as in every protobuf decoder (and in
         * the spans the ids were taken from). */
        if (f.num == 2 && f.wt == WIRE_WT_LEN) {
            has_id = f.vlen == 8;
            if (has_id)
                memcpy(id_hex_src, f.val, 8);
        } else if (f.num == 9 && f.wt == WIRE_WT_LEN) {
            /* KeyValue: look for key == the attribute */
            const uint8_t *q = f.val, *qe = f.val + f.vlen;
            int is_attr = 0;
            while (q < qe) {
                wire_pb_field k;
                if (wire_pb_next(&q, qe, c->base, &k, c->err))
                    return SP_EINVAL;
                if (k.num == 1 && k.wt == WIRE_WT_LEN)
                    is_attr =
                        k.vlen == strlen(FORWARD_ATTR) && memcmp(k.val, FORWARD_ATTR, k.vlen) == 0;
            }
            has_attr |= is_attr;
        }
    }
    if (c->mark)
        *wants = has_id && !has_attr && c->mark(c->mark_ud, id_hex_src);
    else
        *wants = has_id && !has_attr && c->nids &&
                 bsearch(id_hex_src, c->ids, c->nids, sizeof *c->ids, cmp_id) != NULL;
    return 0;
}

/* The attributes entry (Span field 9) naming the span's own id. */
static int put_attr(sp_buf *out, const uint8_t id[8])
{
    static const char d[] = "0123456789abcdef";
    char hex[16];
    for (int i = 0; i < 8; i++) {
        hex[2 * i] = d[id[i] >> 4];
        hex[2 * i + 1] = d[id[i] & 15];
    }
    const size_t klen = strlen(FORWARD_ATTR);
    const size_t any = 2 + 16;            /* AnyValue{string_value = 1: 16 bytes} */
    const size_t kv = 2 + klen + 2 + any; /* KeyValue{key = 1, value = 2} */
    uint8_t buf[2 + 2 + sizeof FORWARD_ATTR + 2 + 2 + 16];
    size_t n = 0;
    buf[n++] = 0x4a; /* field 9, LEN */
    buf[n++] = (uint8_t)kv;
    buf[n++] = 0x0a; /* key */
    buf[n++] = (uint8_t)klen;
    memcpy(buf + n, FORWARD_ATTR, klen);
    n += klen;
    buf[n++] = 0x12; /* value */
    buf[n++] = (uint8_t)any;
    buf[n++] = 0x0a; /* string_value */
    buf[n++] = 16;
    memcpy(buf + n, hex, 16);
    n += 16;
    return sp_buf_append(out, buf, n);
}

/* Rewrites one message of the given level into out; *changed when anything was added. */
static int rewrite(ctx *c, int level, const uint8_t *p, size_t len, sp_buf *out, int *changed)
{
    *changed = 0;
    if (level == LVL_SPAN) {
        uint8_t id[8];
        int wants;
        if (span_wants(c, p, len, id, &wants))
            return SP_EINVAL;
        if (sp_buf_append(out, p, len))
            return SP_ENOMEM;
        if (wants) {
            if (put_attr(out, id))
                return SP_ENOMEM;
            c->added++;
            *changed = 1;
        }
        return 0;
    }
    /* The one repeated child field of each level (see the top of the file). */
    uint32_t child = level == LVL_REQUEST ? 1 : 2;
    const uint8_t *end = p + len;
    sp_buf inner;
    sp_buf_init(&inner, 0);
    int rc = 0;
    while (p < end && !rc) {
        wire_pb_field f;
        if (wire_pb_next(&p, end, c->base, &f, c->err)) {
            rc = SP_EINVAL;
            break;
        }
        int ch = 0;
        if (f.num == child && f.wt == WIRE_WT_LEN) {
            inner.len = 0;
            rc = rewrite(c, level + 1, f.val, f.vlen, &inner, &ch);
        }
        if (rc)
            break;
        if (!ch) {
            if (sp_buf_append(out, f.start, (size_t)(f.end - f.start)))
                rc = SP_ENOMEM;
            continue;
        }
        *changed = 1;
        /* The tag as received, then the new length. */
        if (sp_buf_append(out, f.start, (size_t)(f.body - f.start)) ||
            sp_buf_put_varint(out, inner.len) || sp_buf_append(out, inner.data, inner.len))
            rc = SP_ENOMEM;
    }
    sp_buf_free(&inner);
    return rc;
}

int forward_enrich(const uint8_t *msg, size_t len, const uint8_t (*ids)[8], size_t nids,
                   sp_buf *out, size_t *added, sp_err *err)
{
    uint8_t(*sorted)[8] = NULL;
    if (nids) {
        sorted = malloc(nids * sizeof *sorted);
        if (!sorted)
            return sp_fail(err, SP_ENOMEM, "forward: out of memory");
        memcpy(sorted, ids, nids * sizeof *sorted);
        qsort(sorted, nids, sizeof *sorted, cmp_id);
    }
    ctx c = {.ids = (const uint8_t(*)[8])sorted, .nids = nids, .base = msg, .err = err};
    int changed;
    int rc = rewrite(&c, LVL_REQUEST, msg, len, out, &changed);
    free(sorted);
    if (added)
        *added = c.added;
    if (rc == SP_ENOMEM)
        return sp_fail(err, SP_ENOMEM, "forward: out of memory");
    if (rc) {
        err->code = SP_EINVAL;
        sp_err_prefix(err, "forward: ");
        return SP_EINVAL;
    }
    return 0;
}

int forward_enrich_by(const uint8_t *msg, size_t len,
                      int (*mark)(void *ud, const uint8_t span_id[8]), void *ud, sp_buf *out,
                      size_t *added, sp_err *err)
{
    ctx c = {.mark = mark, .mark_ud = ud, .base = msg, .err = err};
    int changed;
    int rc = rewrite(&c, LVL_REQUEST, msg, len, out, &changed);
    if (added)
        *added = c.added;
    if (rc == SP_ENOMEM)
        return sp_fail(err, SP_ENOMEM, "forward: out of memory");
    if (rc) {
        err->code = SP_EINVAL;
        sp_err_prefix(err, "forward: ");
        return SP_EINVAL;
    }
    return 0;
}

int forward_traces(const forward_hooks *f, const char *tenant, const uint8_t *msg, size_t len,
                   const sp_batch *b, sp_err *err)
{
    if (!f || !f->enqueue)
        return 0;
    uint8_t(*ids)[8] = NULL;
    size_t n = 0;
    if (b->nspans && f->profilable) {
        ids = malloc(b->nspans * sizeof *ids);
        if (!ids)
            return sp_fail(err, SP_ENOMEM, "forward: out of memory");
        for (size_t i = 0; i < b->nspans; i++)
            if (f->profilable(f->ud, tenant, &b->spans[i]))
                memcpy(ids[n++], b->spans[i].span_id, 8);
    }
    sp_buf out;
    sp_buf_init(&out, 0);
    size_t added = 0;
    int rc = forward_enrich(msg, len, (const uint8_t(*)[8])ids, n, &out, &added, err);
    free(ids);
    if (!rc)
        rc = f->enqueue(f->ud, tenant, out.data ? out.data : (const uint8_t *)"", out.len, err);
    sp_buf_free(&out);
    if (!rc && added)
        sp_metrics_gauge_add("traces_forward_spans_marked_total", (int64_t)added);
    return rc;
}
