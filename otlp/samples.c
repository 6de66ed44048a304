/* One ResourceProfiles unpacked with its Samples decoded by hand: see samples.h.
 *
 * Invariants:
 *   S1. A Sample is decoded here only when each of its fields has a one-byte tag for a number
 *       1-5 with a wire type protobuf-c takes for it, every varint ends within 10 bytes, and a
 *       packed fixed64 array is a multiple of 8 bytes long. Any other shape: NULL (protobuf-c
 *       decides, errors included).
 *   S2. The stripped resource is the original with every Profile.samples field cut out and the
 *       lengths of the ScopeProfiles and Profile around them written again; every other byte is
 *       copied, so protobuf-c decides every other field (merges, unknown fields, errors).
 *   S3. Order is kept: the k-th Profile protobuf-c unpacks from the stripped bytes (scopes in
 *       order, their profiles in order) is the k-th the walk met, and gets that Profile's Samples
 *       in wire order. A walk that met other counts than the caller's L1 walk gives NULL.
 *   S4. Nothing is allocated before every Sample passed S1, so a shape that falls back to
 *       protobuf-c has cost the arena only the walk's bookkeeping (bounded by the counts). */
#include "samples.h"
#include "../wire/pb.h"

#include <string.h>

typedef Opentelemetry__Proto__Profiles__V1development__ResourceProfiles ResourceProfiles;
typedef Opentelemetry__Proto__Profiles__V1development__Profile Profile;
typedef Opentelemetry__Proto__Profiles__V1development__Sample Sample;

/* Tags of Sample's fields (field number << 3 | wire type), all one byte (S1). */
enum {
    TAG_STACK = 1 << 3 | WIRE_WT_VARINT,
    TAG_ATTRS_ONE = 2 << 3 | WIRE_WT_VARINT,
    TAG_ATTRS = 2 << 3 | WIRE_WT_LEN,
    TAG_LINK = 3 << 3 | WIRE_WT_VARINT,
    TAG_VALUES_ONE = 4 << 3 | WIRE_WT_VARINT,
    TAG_VALUES = 4 << 3 | WIRE_WT_LEN,
    TAG_TIMES_ONE = 5 << 3 | WIRE_WT_I64,
    TAG_TIMES = 5 << 3 | WIRE_WT_LEN,
    TAG_LEN_2 = 2 << 3 | WIRE_WT_LEN, /* ResourceProfiles.scope_profiles and the like */
};

typedef struct span {
    const uint8_t *p;
    size_t n;
} span;

/* One Profile as walked: its bytes without the samples are its runs [first_run, +nruns). */
typedef struct prof_rec {
    size_t stripped;
    size_t first_run, nruns;
    size_t first_sample, nsamples;
} prof_rec;

typedef struct walk {
    span *samples, *runs;
    prof_rec *profs;
    size_t nsamples, maxsamples, nruns, maxruns, nprofs, maxprofs;
    size_t nvalues, nattrs, ntimes; /* every Sample's array lengths, summed */
} walk;

/* ---- one Sample ------------------------------------------------------------------------------ */

/* Varints in a packed array of len bytes, or -1 when one is unterminated or longer than 10
 * bytes (S1; protobuf-c refuses both). */
static int64_t packed_varints(const uint8_t *p, size_t len)
{
    int64_t n = 0;
    unsigned run = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] & 0x80) {
            if (++run == 10)
                return -1;
        } else {
            run = 0;
            n++;
        }
    }
    return run ? -1 : n;
}

/* A LEN field's payload at *p: its bounds, checked against end. */
static int len_field(const uint8_t **p, const uint8_t *end, size_t *len)
{
    uint64_t n;
    if (wire_pb_varint(p, end, &n) || n > (uint64_t)(end - *p))
        return -1;
    *len = (size_t)n;
    return 0;
}

/* S1: 0 with the Sample's array lengths added to w's sums, -1 for a shape protobuf-c decides. */
static int scan_sample(walk *w, const uint8_t *p, const uint8_t *end)
{
    uint64_t v;
    size_t len;
    while (p < end) {
        uint8_t tag = *p++;
        switch (tag) {
        case TAG_STACK:
        case TAG_LINK:
        case TAG_ATTRS_ONE:
        case TAG_VALUES_ONE:
            if (wire_pb_varint(&p, end, &v))
                return -1;
            w->nattrs += tag == TAG_ATTRS_ONE;
            w->nvalues += tag == TAG_VALUES_ONE;
            break;
        case TAG_ATTRS:
        case TAG_VALUES: {
            if (len_field(&p, end, &len))
                return -1;
            int64_t k = packed_varints(p, len);
            if (k < 0)
                return -1;
            *(tag == TAG_ATTRS ? &w->nattrs : &w->nvalues) += (size_t)k;
            p += len;
            break;
        }
        case TAG_TIMES_ONE:
            if (end - p < 8)
                return -1;
            p += 8;
            w->ntimes++;
            break;
        case TAG_TIMES:
            if (len_field(&p, end, &len) || len % 8)
                return -1;
            w->ntimes += len / 8;
            p += len;
            break;
        default:
            return -1;
        }
    }
    return 0;
}

static uint64_t load_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* A varint known to be well formed (scan_sample() passed it). */
static uint64_t take_varint(const uint8_t **p)
{
    const uint8_t *q = *p;
    uint64_t v = 0;
    for (unsigned shift = 0;; shift += 7) {
        uint8_t b = *q++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            break;
    }
    *p = q;
    return v;
}

/* Where fill_sample() puts the arrays: the resource's blocks, used front to back. */
typedef struct blocks {
    int64_t *values;
    int32_t *attrs;
    uint64_t *times;
} blocks;

/* Decodes a Sample scan_sample() accepted into s, its arrays taken from b. protobuf-c's rules:
 * the last of a repeated scalar field wins, repeated fields append in wire order (packed or
 * not), an int32 is the low 32 bits of its varint, and an empty array is NULL. */
static void fill_sample(Sample *s, const uint8_t *p, const uint8_t *end, blocks *b)
{
    static const Sample init = OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__SAMPLE__INIT;
    *s = init;
    s->attribute_indices = b->attrs;
    s->values = b->values;
    s->timestamps_unix_nano = b->times;
    while (p < end) {
        uint8_t tag = *p++;
        size_t len = 0;
        if (tag == TAG_ATTRS || tag == TAG_VALUES || tag == TAG_TIMES)
            len = (size_t)take_varint(&p);
        const uint8_t *stop = p + len;
        switch (tag) {
        case TAG_STACK:
            s->stack_index = (int32_t)(uint32_t)take_varint(&p);
            break;
        case TAG_LINK:
            s->link_index = (int32_t)(uint32_t)take_varint(&p);
            break;
        case TAG_ATTRS_ONE:
            b->attrs[s->n_attribute_indices++] = (int32_t)(uint32_t)take_varint(&p);
            break;
        case TAG_ATTRS:
            while (p < stop)
                b->attrs[s->n_attribute_indices++] = (int32_t)(uint32_t)take_varint(&p);
            break;
        case TAG_VALUES_ONE:
            b->values[s->n_values++] = (int64_t)take_varint(&p);
            break;
        case TAG_VALUES:
            while (p < stop)
                b->values[s->n_values++] = (int64_t)take_varint(&p);
            break;
        case TAG_TIMES_ONE:
            b->times[s->n_timestamps_unix_nano++] = load_le64(p);
            p += 8;
            break;
        default: /* TAG_TIMES */
            for (; p < stop; p += 8)
                b->times[s->n_timestamps_unix_nano++] = load_le64(p);
            break;
        }
    }
    b->attrs += s->n_attribute_indices;
    b->values += s->n_values;
    b->times += s->n_timestamps_unix_nano;
    if (!s->n_attribute_indices)
        s->attribute_indices = NULL;
    if (!s->n_values)
        s->values = NULL;
    if (!s->n_timestamps_unix_nano)
        s->timestamps_unix_nano = NULL;
}

/* ---- the walk (S2, S3) ----------------------------------------------------------------------- */

static int add_run(walk *w, const uint8_t *from, const uint8_t *to, size_t *stripped)
{
    if (from == to)
        return 0;
    if (w->nruns == w->maxruns)
        return -1;
    w->runs[w->nruns++] = (span){from, (size_t)(to - from)};
    *stripped += (size_t)(to - from);
    return 0;
}

/* A Profile: its Samples scanned and recorded, the rest recorded as runs. */
static int walk_profile(walk *w, const uint8_t *p, size_t n, size_t *stripped)
{
    if (w->nprofs == w->maxprofs)
        return -1;
    prof_rec *r = &w->profs[w->nprofs++];
    *r = (prof_rec){0, w->nruns, 0, w->nsamples, 0};
    const uint8_t *end = p + n, *run = p;
    wire_pb_field f;
    while (p < end) {
        if (wire_pb_next(&p, end, p, &f, NULL))
            return -1;
        if (f.num != 2)
            continue;
        if (f.wt != WIRE_WT_LEN || w->nsamples == w->maxsamples ||
            add_run(w, run, f.start, &r->stripped) || scan_sample(w, f.val, f.val + f.vlen))
            return -1;
        w->samples[w->nsamples++] = (span){f.val, f.vlen};
        run = f.end;
    }
    if (add_run(w, run, end, &r->stripped))
        return -1;
    r->nruns = w->nruns - r->first_run;
    r->nsamples = w->nsamples - r->first_sample;
    *stripped = r->stripped;
    return 0;
}

/* A message whose field 2 holds `child` messages (ResourceProfiles: ScopeProfiles; ScopeProfiles:
 * Profiles): its stripped size. The first walk (w->nprofs counting) records the Profiles; later
 * ones (*k: the next Profile's record) only add up what was recorded. */
static int walk_parent(walk *w, const uint8_t *p, size_t n, int depth, size_t *k, size_t *stripped)
{
    const uint8_t *end = p + n;
    wire_pb_field f;
    *stripped = 0;
    while (p < end) {
        if (wire_pb_next(&p, end, p, &f, NULL))
            return -1;
        if (f.num != 2) {
            *stripped += (size_t)(f.end - f.start);
            continue;
        }
        if (f.wt != WIRE_WT_LEN)
            return -1;
        size_t child = 0;
        if (depth == 0 && walk_parent(w, f.val, f.vlen, 1, k, &child))
            return -1;
        if (depth == 1) {
            if (!k && walk_profile(w, f.val, f.vlen, &child))
                return -1;
            if (k)
                child = w->profs[(*k)++].stripped;
        }
        *stripped += 1 + wire_pb_varint_size(child) + child;
    }
    return 0;
}

/* Writes what walk_parent() measured: fields copied, field 2 written again around its stripped
 * child. */
static uint8_t *write_parent(const walk *w, const uint8_t *p, size_t n, int depth, size_t *k,
                             uint8_t *o)
{
    const uint8_t *end = p + n;
    wire_pb_field f;
    while (p < end) {
        wire_pb_next(&p, end, p, &f, NULL); /* walked before: cannot fail */
        if (f.num != 2) {
            memcpy(o, f.start, (size_t)(f.end - f.start));
            o += f.end - f.start;
            continue;
        }
        *o++ = TAG_LEN_2;
        if (depth == 0) {
            size_t at = *k, child;
            walk_parent((walk *)w, f.val, f.vlen, 1, &at, &child);
            o += wire_pb_put_varint(o, child);
            o = write_parent(w, f.val, f.vlen, 1, k, o);
            continue;
        }
        const prof_rec *r = &w->profs[(*k)++];
        o += wire_pb_put_varint(o, r->stripped);
        for (size_t i = 0; i < r->nruns; i++) {
            memcpy(o, w->runs[r->first_run + i].p, w->runs[r->first_run + i].n);
            o += w->runs[r->first_run + i].n;
        }
    }
    return o;
}

/* ---- the resource ---------------------------------------------------------------------------- */

static void *array(sp_arena *a, size_t n, size_t size)
{
    return n > SIZE_MAX / size ? NULL : sp_arena_alloc(a, n ? n * size : 1);
}

/* Gives protobuf-c's Profiles (S3) their Samples; -1 when it unpacked other counts. */
static int attach(const walk *w, ResourceProfiles *rp, sp_arena *a)
{
    Sample *structs = array(a, w->nsamples, sizeof *structs);
    Sample **ptrs = array(a, w->nsamples, sizeof *ptrs);
    blocks b = {array(a, w->nvalues, sizeof *b.values), array(a, w->nattrs, sizeof *b.attrs),
                array(a, w->ntimes, sizeof *b.times)};
    if (!structs || !ptrs || !b.values || !b.attrs || !b.times)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < rp->n_scope_profiles; i++)
        for (size_t j = 0; j < rp->scope_profiles[i]->n_profiles; j++) {
            Profile *pr = rp->scope_profiles[i]->profiles[j];
            if (k == w->nprofs || pr->n_samples)
                return -1;
            const prof_rec *r = &w->profs[k++];
            for (size_t s = r->first_sample; s < r->first_sample + r->nsamples; s++) {
                fill_sample(&structs[s], w->samples[s].p, w->samples[s].p + w->samples[s].n, &b);
                ptrs[s] = &structs[s];
            }
            pr->n_samples = r->nsamples;
            pr->samples = r->nsamples ? ptrs + r->first_sample : NULL;
        }
    return k == w->nprofs ? 0 : -1;
}

ResourceProfiles *otlp_samples_unpack_resource(const uint8_t *bytes, size_t len, size_t nprofiles,
                                               size_t nsamples, ProtobufCAllocator *alloc,
                                               sp_arena *a)
{
    walk w = {0};
    w.maxsamples = nsamples;
    w.maxprofs = nprofiles;
    w.maxruns = nsamples + nprofiles;
    w.samples = array(a, nsamples, sizeof *w.samples);
    w.runs = array(a, w.maxruns, sizeof *w.runs);
    w.profs = array(a, nprofiles, sizeof *w.profs);
    size_t stripped;
    if (!w.samples || !w.runs || !w.profs || walk_parent(&w, bytes, len, 0, NULL, &stripped) ||
        w.nsamples != nsamples || w.nprofs != nprofiles)
        return NULL;
    uint8_t *buf = sp_arena_alloc(a, stripped ? stripped : 1);
    if (!buf)
        return NULL;
    size_t k = 0;
    if (write_parent(&w, bytes, len, 0, &k, buf) != buf + stripped)
        return NULL;
    ResourceProfiles *rp = opentelemetry__proto__profiles__v1development__resource_profiles__unpack(
        alloc, stripped, buf);
    return rp && attach(&w, rp, a) == 0 ? rp : NULL;
}
