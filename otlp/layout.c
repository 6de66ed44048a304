/* Sample/Profile layout detection and rewrite: see layout.h. Field numbers below are those of
 * opentelemetry-proto profiles/v1development/profiles.proto at v1.8.0, v1.9.0 and v1.10.0. */
#include "layout.h"
#include "../wire/pb.h"
#include "hand_unpack.h"

#include <stdio.h>
#include <string.h>

/* Profile.samples' tag: field 2, wire type LEN. */
#define SAMPLE_TAG (2 << 3 | WIRE_WT_LEN)

/* Message levels walked, and the field that holds the next level's messages. */
enum { L_REQ, L_RP, L_SP, L_PROFILE, L_SAMPLE };
static const uint32_t child_field[] = {1, 2, 2, 2};
static const char *const child_name[] = {"resource_profiles", "scope_profiles", "profiles",
                                         "samples"};

typedef struct ctx {
    otlp_layout_info *info;
    const uint8_t *base;
    sp_arena *a;
    sp_err *err;
    size_t census_cap;         /* entries info->census has room for */
    int census_lost;           /* the arena had no room for it: no census for the request */
    otlp_resource_census *res; /* the census of the resource being walked, or NULL */
    size_t idx[4];             /* position of the message being walked at each level */
    int old;                   /* rewrite Sample numbering */
    int any_v18;               /* some profile uses v1.8 Profile numbering */
    uint64_t nattr;            /* entries of the request's dictionary.attribute_table (field 2.6) */
} ctx;

/* 1 when field 2 of a Sample cannot be v1.10 attribute_indices: a value that is no index into
 * the request's attribute table (v1.9 wrote values there). */
static int f2_misfits(const ctx *c, const wire_pb_field *f)
{
    if (f->wt == WIRE_WT_VARINT)
        return f->varint >= c->nattr;
    if (f->wt != WIRE_WT_LEN)
        return 1;
    const uint8_t *p = f->val, *end = f->val + f->vlen;
    while (p < end) {
        uint64_t v;
        if (wire_pb_varint(&p, end, &v) != 0 || v >= c->nattr)
            return 1;
    }
    return 0;
}

/* The number of attribute_table entries in the request's dictionary (0 when absent). */
static uint64_t count_attributes(const uint8_t *p, size_t len)
{
    const uint8_t *end = p + len;
    wire_pb_field f;
    uint64_t n = 0;
    while (p < end) {
        if (wire_pb_next(&p, end, p, &f, NULL) != 0)
            return n;
        if (f.num != 2 || f.wt != WIRE_WT_LEN)
            continue;
        const uint8_t *q = f.val, *qend = f.val + f.vlen;
        wire_pb_field g;
        while (q < qend) {
            if (wire_pb_next(&q, qend, q, &g, NULL) != 0)
                break;
            n += g.num == 6;
        }
    }
    return n;
}

static void prefix_path(ctx *c, int level)
{
    char path[160];
    size_t n = 0;
    path[0] = 0;
    for (int l = 0; l < level && n < sizeof path; l++) {
        int w = snprintf(path + n, sizeof path - n, "%s%s[%zu]", l ? "." : "", child_name[l],
                         c->idx[l]);
        if (w < 0)
            break;
        n += (size_t)w;
    }
    if (level > 0)
        sp_err_prefix(c->err, "%s: ", path);
}

/* v1.8 Profile: comment_strindices 7, profile_id 8, dropped_attributes_count 9,
 * original_payload_format 10, original_payload 11, attribute_indices 12. Only these wire types
 * cannot come from a v1.9+ writer. */
static int field_is_v18(const wire_pb_field *f)
{
    return f->num == 12 || (f->num == 8 && f->wt == WIRE_WT_LEN) ||
           (f->num == 9 && f->wt == WIRE_WT_VARINT) || (f->num == 7 && f->wt == WIRE_WT_VARINT);
}

static int profile_is_v18(const uint8_t *p, size_t len)
{
    const uint8_t *end = p + len;
    wire_pb_field f;
    while (p < end) {
        if (wire_pb_next(&p, end, p, &f, NULL) != 0)
            return 0;
        if (field_is_v18(&f))
            return 1;
    }
    return 0;
}

/* Counts one Sample's vote from what its fields were. */
static void cast(ctx *c, unsigned f2, unsigned f2_misfit, unsigned f3len, unsigned f4var,
                 unsigned f4len, unsigned f5)
{
    /* One varint in field 4 is v1.10's values written unpacked (the Pyroscope Java agent does)
     * as much as v1.9's link_index: it counts as old only when field 2 cannot be v1.10's
     * attribute_indices, and as new when there is no field 2 (v1.9 kept values there) and no
     * packed field 3 (v1.9's attribute_indices: v1.10's link_index is a scalar). */
    int old = f3len || (f4var == 1 && f2 && f2_misfit) || (f2 && !f4var && !f4len && !f5);
    int cur = f4len || f4var >= 2 || (f4var == 1 && !f2 && !f3len);
    c->info->samples++;
    if (old && !cur)
        c->info->old_votes++;
    else if (cur && !old)
        c->info->new_votes++;
}

/* Votes on one Sample's numbering; -1 (no vote) when its framing is broken. A Sample of the shape
 * otlp/hand_unpack.c decodes (most) is walked once for both: its facts vote, and go to the
 * resource's census. Flattened: the walk inlined here (under link-time optimization) rather
 * than called once per Sample, 0.8 % of bench_convert's instructions. */
static __attribute__((flatten)) int vote(ctx *c, const uint8_t *p, size_t len)
{
    otlp_sample_facts sf;
    if (otlp_sample_facts_of(p, len, c->nattr, &sf) == 0) {
        cast(c, sf.f2, sf.f2_misfit, 0, sf.f4var, sf.f4len, sf.f5);
        if (c->res) {
            c->res->values += sf.values;
            c->res->attrs += sf.attrs;
            c->res->times += sf.times;
        }
        return 0;
    }
    if (c->res)
        c->res->ok = 0;
    const uint8_t *end = p + len;
    wire_pb_field f;
    unsigned f2 = 0, f2_misfit = 0, f3len = 0, f4var = 0, f4len = 0, f5 = 0;
    while (p < end) {
        if (wire_pb_next(&p, end, p, &f, NULL) != 0)
            return -1;
        switch (f.num) {
        case 2:
            f2 = 1;
            f2_misfit |= (unsigned)f2_misfits(c, &f);
            break;
        case 3:
            f3len |= f.wt == WIRE_WT_LEN;
            break;
        case 4:
            if (f.wt == WIRE_WT_VARINT)
                f4var++;
            else if (f.wt == WIRE_WT_LEN)
                f4len = 1;
            break;
        case 5:
            f5 = 1;
            break;
        }
    }
    cast(c, f2, f2_misfit, f3len, f4var, f4len, f5);
    return 0;
}

/* The census of the next resource_profiles entry (c->res; NULL, and no census for the request,
 * when the arena has no room for it). */
static void census_next(ctx *c)
{
    otlp_layout_info *in = c->info;
    c->res = NULL;
    if (c->census_lost)
        return;
    if (in->ncensus == c->census_cap) {
        size_t cap = c->census_cap ? 2 * c->census_cap : 8;
        otlp_resource_census *n = sp_arena_alloc(c->a, cap * sizeof *n);
        if (!n) {
            c->census_lost = 1;
            return;
        }
        if (in->ncensus)
            memcpy(n, in->census, in->ncensus * sizeof *n);
        in->census = n;
        c->census_cap = cap;
    }
    c->res = &in->census[in->ncensus++];
    *c->res = (otlp_resource_census){.ok = 1};
}

/* What a field of a resource, scope or profile means to the resource's census. */
static void census_field(ctx *c, int level, const wire_pb_field *f)
{
    if (!c->res || level < L_RP || level > L_PROFILE || f->num != 2)
        return;
    if (f->wt != WIRE_WT_LEN || !wire_pb_protobuf_c_bounds(f))
        c->res->ok = 0;
    else if (level == L_SP)
        c->res->profiles++;
    else if (level == L_PROFILE)
        c->res->samples++;
}

/* Pass 1: checks the framing of every walked message and counts votes. A Profile's v1.8 fields
 * are looked for in the same walk (what profile_is_v18() answers when the framing is whole, and
 * when it is not the request is refused anyway): its samples are most of its fields. */
static int detect(ctx *c, int level, const uint8_t *p, size_t len)
{
    if (level == L_SAMPLE) {
        /* The vote walked the Sample's fields: when they were whole there is nothing to check
         * (a Sample holds no walked child). Otherwise the walk below reports where it breaks. */
        if (vote(c, p, len) == 0)
            return 0;
    }
    const uint8_t *end = p + len;
    wire_pb_field f;
    size_t child = 0;
    while (p < end) {
        if (level == L_PROFILE && end - p >= 2 && p[0] == SAMPLE_TAG && p[1] < 0x80 &&
            p[1] <= end - p - 2 && vote(c, p + 2, p[1]) == 0) {
            /* Most of a Profile: a Sample with a one-byte length whose framing holds. What the
             * walk below does for it (no v1.8 field; the census counts it; its vote is cast),
             * without the generic field and a call a level down per Sample. */
            if (c->res)
                c->res->samples++;
            c->idx[level] = child++;
            p += 2 + p[1];
            continue;
        }
        int rc = wire_pb_next(&p, end, c->base, &f, c->err);
        if (rc) {
            prefix_path(c, level);
            return rc;
        }
        if (level == L_PROFILE && field_is_v18(&f))
            c->any_v18 = 1;
        census_field(c, level, &f);
        if (level < L_SAMPLE && f.num == child_field[level] && f.wt == WIRE_WT_LEN) {
            c->idx[level] = child++;
            if (level == L_REQ)
                census_next(c);
            rc = detect(c, level + 1, f.val, f.vlen);
            if (rc)
                return rc;
        }
    }
    return 0;
}

static size_t put_varint(uint8_t *out, uint64_t v)
{
    return out ? wire_pb_put_varint(out, v) : wire_pb_varint_size(v);
}

static size_t put_bytes(uint8_t *out, const uint8_t *p, size_t n)
{
    if (out && n)
        memcpy(out, p, n);
    return n;
}

/* A field under a new number: new tag, original value bytes. */
static size_t put_renumbered(uint8_t *out, const wire_pb_field *f, uint32_t num)
{
    size_t n = put_varint(out, (uint64_t)num << 3 | (uint64_t)f->wt);
    return n + put_bytes(out ? out + n : NULL, f->body, (size_t)(f->end - f->body));
}

/* Current (v1.10) Profile schema: does wire type wt fit field num? Unknown fields fit. */
static int profile_field_fits(const wire_pb_field *f)
{
    switch (f->num) {
    case 1:  /* sample_type */
    case 2:  /* samples */
    case 5:  /* period_type */
    case 7:  /* profile_id */
    case 9:  /* original_payload_format */
    case 10: /* original_payload */
        return f->wt == WIRE_WT_LEN;
    case 3: /* time_unix_nano */
        return f->wt == WIRE_WT_I64;
    case 4: /* duration_nano */
    case 6: /* period */
    case 8: /* dropped_attributes_count */
        return f->wt == WIRE_WT_VARINT;
    case 11: /* attribute_indices, packed or not */
        return f->wt == WIRE_WT_VARINT ||
               (f->wt == WIRE_WT_LEN && wire_pb_is_packed_varints(f->val, f->vlen));
    default:
        return 1;
    }
}

/* Pass 2: writes the rewritten message at out (or only measures it when out is NULL). */
static size_t emit(ctx *c, int level, const uint8_t *p, size_t len, uint8_t *out)
{
    const uint8_t *end = p + len;
    wire_pb_field f;
    size_t n = 0;
    int v18 = level == L_PROFILE && profile_is_v18(p, len);
    if (out && v18)
        c->info->v18_profiles++;
    while (p < end) {
        if (wire_pb_next(&p, end, p, &f, NULL) != 0)
            break; /* cannot happen: pass 1 checked the framing */
        uint8_t *o = out ? out + n : NULL;
        if (level < L_SAMPLE && f.num == child_field[level] && f.wt == WIRE_WT_LEN) {
            size_t sz = emit(c, level + 1, f.val, f.vlen, NULL);
            n += put_varint(o, (uint64_t)f.num << 3 | WIRE_WT_LEN);
            n += put_varint(out ? out + n : NULL, sz);
            if (out)
                emit(c, level + 1, f.val, f.vlen, out + n);
            n += sz;
            continue;
        }
        if (level == L_PROFILE) {
            wire_pb_field g = f;
            if (v18) {
                if (f.num == 7) { /* comment_strindices: gone since v1.9 */
                    if (out)
                        c->info->dropped_fields++;
                    continue;
                }
                if (f.num >= 8 && f.num <= 12)
                    g.num = f.num - 1;
            }
            if (!profile_field_fits(&g)) {
                if (out)
                    c->info->dropped_fields++;
                continue;
            }
            n += put_renumbered(o, &g, g.num);
            continue;
        }
        if (level == L_SAMPLE && c->old && f.num >= 2 && f.num <= 4) {
            /* v1.9 values 2 -> 4, attribute_indices 3 -> 2, link_index 4 -> 3. */
            static const uint32_t renum[] = {0, 0, 4, 2, 3};
            n += put_renumbered(o, &f, renum[f.num]);
            continue;
        }
        n += put_bytes(o, f.start, (size_t)(f.end - f.start));
    }
    return n;
}

int otlp_layout_normalize(const uint8_t *in, size_t len, sp_arena *a, const uint8_t **out,
                          size_t *outlen, otlp_layout_info *info, sp_err *err)
{
    otlp_layout_info scratch;
    if (!info)
        info = &scratch;
    memset(info, 0, sizeof *info);
    ctx c = {.info = info, .base = in, .a = a, .err = err, .nattr = count_attributes(in, len)};
    *out = in;
    *outlen = len;
    int rc = detect(&c, L_REQ, in, len);
    if (rc)
        return rc;
    if (c.census_lost) {
        info->census = NULL;
        info->ncensus = 0;
    }
    c.old = info->old_votes > info->new_votes;
    info->layout = c.old ? OTLP_LAYOUT_V1_9 : OTLP_LAYOUT_CURRENT;
    if (!c.old && !c.any_v18)
        return 0;
    size_t n = emit(&c, L_REQ, in, len, NULL);
    uint8_t *buf = sp_arena_alloc(a, n ? n : 1);
    if (!buf)
        return sp_fail(err, SP_ETOOBIG,
                       "no memory left in the request's decode budget to rewrite %zu bytes of "
                       "v1.9-layout profiles",
                       n);
    size_t w = emit(&c, L_REQ, in, len, buf);
    if (w != n)
        return sp_fail(err, SP_EINTERNAL, "layout rewrite wrote %zu of %zu bytes", w, n);
    info->rewritten = 1;
    info->census = NULL; /* of the input's bytes, not these */
    info->ncensus = 0;
    *out = buf;
    *outlen = n;
    return 0;
}

const char *otlp_layout_name(otlp_layout layout)
{
    return layout == OTLP_LAYOUT_V1_9 ? "v1.9" : "v1.10";
}
