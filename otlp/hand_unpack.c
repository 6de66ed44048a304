/* Samples and the dictionary's large tables decoded by hand: see hand_unpack.h.
 *
 * Invariants:
 *   S1. A Sample is decoded here only when each of its fields has a one-byte tag for a number
 *       1-5 with a wire type protobuf-c takes for it, every varint ends within 10 bytes, every
 *       length prefix within 5 (protobuf-c's limit, wire_pb_protobuf_c_bounds()), and a packed
 *       fixed64 array is a multiple of 8 bytes long. Any other shape: NULL (protobuf-c decides,
 *       errors included). The same holds for the tag and length of every field cut out or
 *       written again (Samples, the Profiles and ScopeProfiles around them).
 *   S2. The stripped resource is the original with every Profile.samples field cut out and the
 *       lengths of the ScopeProfiles and Profile around them written again; every other byte is
 *       copied, so protobuf-c decides every other field (merges, unknown fields, errors).
 *   S3. Order is kept: the k-th Profile protobuf-c unpacks from the stripped bytes (scopes in
 *       order, their profiles in order) is the k-th the walk met, and gets that Profile's Samples
 *       in wire order. A walk that met other counts than the caller's L1 walk gives NULL.
 *   S4. Nothing is allocated before the whole resource passed S1 and S3: a first walk checks
 *       and counts, a second records (walk.record), so a shape left to protobuf-c has cost the
 *       request's memory budget nothing. */
#include "hand_unpack.h"
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
    int record; /* 0: the first walk, checking and counting (S4); 1: the second, recording */
    span *samples, *runs;
    prof_rec *profs;
    size_t nsamples, maxsamples, nruns, maxruns, nprofs, maxprofs;
    size_t nvalues, nattrs, ntimes; /* every Sample's array lengths, summed */
} walk;

/* ---- one Sample ------------------------------------------------------------------------------ */

/* Varints in p[0..len) counted eight bytes at a time, *run carried in and out (continuation
 * bytes since the last end): a varint ends at each byte without its top bit, so a word's ends
 * are counted at once, and only the continuation bytes before a word's first end and after its
 * last can join a run of 10 (between two ends of one word there are at most 6). -1 for such a
 * run. Only whole words: the caller counts the tail. */
static __attribute__((noinline)) int64_t packed_varints_words(const uint8_t *p, size_t len,
                                                              unsigned *run)
{
    int64_t n = 0;
    const uint64_t tops = 0x8080808080808080ull;
    for (size_t i = 0; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, sizeof w); /* little-endian: byte i is the word's lowest */
        uint64_t ends = ~w & tops;
        if (!ends) {
            if ((*run += 8) >= 10)
                return -1;
            continue;
        }
        if (*run + (unsigned)__builtin_ctzll(ends) / 8 >= 10)
            return -1;
        /* the ends' count: their bits moved to each byte's bottom and summed into the top byte
         * by one multiply (a popcount is a libgcc call without -mpopcnt) */
        n += (int64_t)((ends >> 7) * 0x0101010101010101ull >> 56);
        *run = 7 - (unsigned)(63 - __builtin_clzll(ends)) / 8;
    }
    return n;
}

/* Varints in a packed array of len bytes, or -1 when one is unterminated or longer than 10
 * bytes (S1; protobuf-c refuses both). A Sample's and a Location's arrays are a byte or two and
 * take the byte loop inline; a Stack's location indices (two or three bytes each, dozens of
 * them) go eight bytes at a time: they were 1.5 % of the server's instructions a byte at a time. */
static inline int64_t packed_varints(const uint8_t *p, size_t len)
{
    int64_t n = 0;
    unsigned run = 0; /* continuation bytes since the last end */
    size_t i = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (len >= 32) {
        i = len & ~(size_t)7;
        if ((n = packed_varints_words(p, i, &run)) < 0)
            return -1;
    }
#endif
    for (; i < len; i++) {
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
    const uint8_t *at = *p;
    if (wire_pb_varint(p, end, &n) || *p - at > 5 || n > (uint64_t)(end - *p)) /* S1 */
        return -1;
    *len = (size_t)n;
    return 0;
}

/* 1 when a varint of a packed array p[0..len) (checked by packed_varints()) is >= nattr. */
static unsigned any_at_least(const uint8_t *p, size_t len, uint64_t nattr)
{
    const uint8_t *end = p + len;
    uint64_t v;
    while (p < end)
        if (wire_pb_varint(&p, end, &v) || v >= nattr)
            return 1;
    return 0;
}

/* S1, and the facts of the Sample on the way. */
int otlp_sample_facts_of(const uint8_t *p, size_t n, uint64_t nattr, otlp_sample_facts *out)
{
    const uint8_t *end = p + n;
    otlp_sample_facts f = {0};
    uint64_t v;
    size_t len;
    while (p < end) {
        uint8_t tag = *p++;
        switch (tag) {
        case TAG_STACK:
        case TAG_LINK:
            if (wire_pb_varint(&p, end, &v))
                return -1;
            break;
        case TAG_ATTRS_ONE:
            if (wire_pb_varint(&p, end, &v))
                return -1;
            f.f2 = 1;
            f.f2_misfit |= nattr < UINT64_MAX && v >= nattr;
            f.attrs++;
            break;
        case TAG_VALUES_ONE:
            if (wire_pb_varint(&p, end, &v))
                return -1;
            f.f4var++;
            f.values++;
            break;
        case TAG_ATTRS:
        case TAG_VALUES: {
            if (len_field(&p, end, &len))
                return -1;
            int64_t k = packed_varints(p, len);
            if (k < 0)
                return -1;
            if (tag == TAG_ATTRS) {
                f.f2 = 1;
                if (nattr < UINT64_MAX && !f.f2_misfit)
                    f.f2_misfit = any_at_least(p, len, nattr);
                f.attrs += (size_t)k;
            } else {
                f.f4len = 1;
                f.values += (size_t)k;
            }
            p += len;
            break;
        }
        case TAG_TIMES_ONE:
            if (end - p < 8)
                return -1;
            p += 8;
            f.f5 = 1;
            f.times++;
            break;
        case TAG_TIMES:
            if (len_field(&p, end, &len) || len % 8)
                return -1;
            f.f5 = 1;
            f.times += len / 8;
            p += len;
            break;
        default:
            return -1;
        }
    }
    *out = f;
    return 0;
}

/* S1: 0 with the Sample's array lengths added to w's sums, -1 for a shape protobuf-c decides. */
static int scan_sample(walk *w, const uint8_t *p, const uint8_t *end)
{
    otlp_sample_facts f;
    if (otlp_sample_facts_of(p, (size_t)(end - p), UINT64_MAX, &f))
        return -1;
    w->nvalues += f.values;
    w->nattrs += f.attrs;
    w->ntimes += f.times;
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
    /* one and two bytes without the loop: lengths, tags' values and indices into tables of up
     * to 16 k entries (a Stack's location indices are most of the varints read here) */
    if (q[0] < 0x80) {
        *p = q + 1;
        return q[0];
    }
    if (q[1] < 0x80) {
        *p = q + 2;
        return (uint64_t)(q[0] & 0x7f) | (uint64_t)q[1] << 7;
    }
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

/* A Profile: the first walk checks and counts its Samples; the second records them, and the
 * rest of the Profile as runs. */
static int walk_profile(walk *w, const uint8_t *p, size_t n, size_t *stripped)
{
    if (w->nprofs == w->maxprofs)
        return -1;
    prof_rec dummy, *r = w->record ? &w->profs[w->nprofs] : &dummy;
    w->nprofs++;
    *r = (prof_rec){0, w->nruns, 0, w->nsamples, 0};
    const uint8_t *end = p + n, *run = p;
    wire_pb_field f;
    while (p < end) {
        if (end - p >= 2 && p[0] == TAG_LEN_2 && p[1] < 0x80 && p[1] <= end - p - 2) {
            /* Most fields: a Sample with a one-byte length, which wire_pb_next() and
             * protobuf-c's bounds take as they are (S1); taken here without the generic field
             * (about half of this walk's instructions, bench/RESULTS.md). */
            const uint8_t *val = p + 2, *next = val + p[1];
            if (w->nsamples == w->maxsamples || (!w->record && scan_sample(w, val, next)))
                return -1;
            if (w->record) {
                if (add_run(w, run, p, &r->stripped))
                    return -1;
                w->samples[w->nsamples] = (span){val, p[1]};
                run = next;
            }
            w->nsamples++;
            p = next;
            continue;
        }
        if (wire_pb_next(&p, end, p, &f, NULL))
            return -1;
        if (f.num != 2)
            continue;
        if (f.wt != WIRE_WT_LEN || !wire_pb_protobuf_c_bounds(&f) || w->nsamples == w->maxsamples)
            return -1;
        if (!w->record && scan_sample(w, f.val, f.val + f.vlen))
            return -1;
        if (w->record) {
            if (add_run(w, run, f.start, &r->stripped))
                return -1;
            w->samples[w->nsamples] = (span){f.val, f.vlen};
            run = f.end;
        }
        w->nsamples++;
    }
    if (w->record && add_run(w, run, end, &r->stripped))
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
        if (f.wt != WIRE_WT_LEN || !wire_pb_protobuf_c_bounds(&f))
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

ResourceProfiles *otlp_hand_unpack_resource(const uint8_t *bytes, size_t len, size_t nprofiles,
                                            size_t nsamples, const otlp_resource_census *census,
                                            ProtobufCAllocator *alloc, sp_arena *a)
{
    walk w;
    memset(&w, 0, sizeof w);
    w.maxsamples = nsamples;
    w.maxprofs = nprofiles;
    size_t stripped;
    if (nsamples > WIRE_PB_PROTOBUF_C_MAX_FIELDS)
        return NULL;
    if (census && census->ok && census->samples == nsamples && census->profiles == nprofiles) {
        /* The layout pass checked what the first walk would (S1, S3's counts): S4 holds. */
        w.nvalues = census->values;
        w.nattrs = census->attrs;
        w.ntimes = census->times;
    } else if (walk_parent(&w, bytes, len, 0, NULL, &stripped) || w.nsamples != nsamples ||
               w.nprofs != nprofiles) {
        return NULL; /* S1, S3: nothing allocated yet (S4) */
    }
    w.record = 1;
    w.nsamples = w.nprofs = 0;
    w.maxruns = nsamples + nprofiles;
    w.samples = array(a, nsamples, sizeof *w.samples);
    w.runs = array(a, w.maxruns, sizeof *w.runs);
    w.profs = array(a, nprofiles, sizeof *w.profs);
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

/* ---- the dictionary's large tables -----------------------------------------------------------
 *
 *   D1. location_table, function_table, string_table and stack_table entries are decoded here
 *       when every entry passes the same test as a Sample (S1: one-byte tags of known fields
 *       with protobuf-c's wire types, whole varints); mapping_table, link_table and
 *       attribute_table (nested AnyValues) and any unknown field stay protobuf-c's, unpacked from
 *       the dictionary's bytes without the four tables (S2's cut, one level).
 *   D2. Each table keeps its wire order; its structs, pointer arrays, index arrays and strings
 *       are one block each. A string is its bytes and a NUL, as protobuf-c copies it. */

typedef Opentelemetry__Proto__Profiles__V1development__ProfilesDictionary Dict;
typedef Opentelemetry__Proto__Profiles__V1development__Location Location;
typedef Opentelemetry__Proto__Profiles__V1development__Line Line;
typedef Opentelemetry__Proto__Profiles__V1development__Function Function;
typedef Opentelemetry__Proto__Profiles__V1development__Stack Stack;

enum { T_LOC = 0, T_FUNC, T_STR, T_STACK, NTABLES };

/* ProfilesDictionary's field number of each table decoded here. */
static const uint32_t table_field[NTABLES] = {2, 3, 5, 7};

typedef struct dwalk {
    span *e[NTABLES]; /* each table's entries' bytes */
    size_t n[NTABLES];
    span *runs; /* the other fields' bytes, in order */
    size_t nruns, stripped;
    size_t nlines, nattrs, nidx, strbytes;
} dwalk;

static int table_of(uint32_t num)
{
    for (int t = 0; t < NTABLES; t++)
        if (table_field[t] == num)
            return t;
    return -1;
}

/* A message of varint fields 1..nfields only (Line, Function), one-byte tags (S1). */
static int scan_varints(const uint8_t *p, const uint8_t *end, unsigned nfields)
{
    uint64_t v;
    while (p < end) {
        uint8_t tag = *p++;
        if ((tag & 7) != WIRE_WT_VARINT || tag >> 3 < 1 || tag >> 3 > nfields ||
            wire_pb_varint(&p, end, &v))
            return -1;
    }
    return 0;
}

/* A repeated int32 field met at p (its tag just read): one unpacked varint or a packed run. */
static int scan_int32s(const uint8_t **p, const uint8_t *end, int packed, size_t *count)
{
    uint64_t v;
    size_t len;
    if (!packed) {
        (*count)++;
        return wire_pb_varint(p, end, &v);
    }
    if (len_field(p, end, &len))
        return -1;
    int64_t k = packed_varints(*p, len);
    if (k < 0)
        return -1;
    *count += (size_t)k;
    *p += len;
    return 0;
}

static int scan_location(dwalk *w, const uint8_t *p, const uint8_t *end)
{
    uint64_t v;
    size_t len;
    while (p < end) {
        uint8_t tag = *p++;
        switch (tag) {
        case 1 << 3 | WIRE_WT_VARINT: /* mapping_index */
        case 2 << 3 | WIRE_WT_VARINT: /* address */
            if (wire_pb_varint(&p, end, &v))
                return -1;
            break;
        case 3 << 3 | WIRE_WT_LEN: /* lines */
            if (len_field(&p, end, &len) || scan_varints(p, p + len, 3))
                return -1;
            p += len;
            w->nlines++;
            break;
        case 4 << 3 | WIRE_WT_VARINT: /* attribute_indices */
        case 4 << 3 | WIRE_WT_LEN:
            if (scan_int32s(&p, end, (tag & 7) == WIRE_WT_LEN, &w->nattrs))
                return -1;
            break;
        default:
            return -1;
        }
    }
    return 0;
}

static int scan_stack(dwalk *w, const uint8_t *p, const uint8_t *end)
{
    while (p < end) {
        uint8_t tag = *p++;
        if ((tag != (1 << 3 | WIRE_WT_VARINT) && tag != (1 << 3 | WIRE_WT_LEN)) ||
            scan_int32s(&p, end, tag == (1 << 3 | WIRE_WT_LEN), &w->nidx))
            return -1;
    }
    return 0;
}

static int scan_entry(dwalk *w, int t, const span *s)
{
    const uint8_t *end = s->p + s->n;
    switch (t) {
    case T_LOC:
        return scan_location(w, s->p, end);
    case T_FUNC:
        return scan_varints(s->p, end, 4);
    case T_STR:
        w->strbytes += s->n + 1;
        return 0;
    default:
        return scan_stack(w, s->p, end);
    }
}

/* Walks the dictionary's fields twice: checking every entry and counting (nothing allocated
 * yet, so a dictionary left to protobuf-c costs the request's budget nothing), then recording. */
static int dict_walk(dwalk *w, const uint8_t *bytes, size_t len, int record)
{
    const uint8_t *p = bytes, *end = bytes + len, *run = bytes;
    wire_pb_field f;
    size_t n[NTABLES] = {0};
    while (p < end) {
        if (wire_pb_next(&p, end, p, &f, NULL))
            return -1;
        int t = table_of(f.num);
        if (t < 0)
            continue;
        if (f.wt != WIRE_WT_LEN || !wire_pb_protobuf_c_bounds(&f))
            return -1;
        span e = {f.val, f.vlen};
        if (!record && scan_entry(w, t, &e)) /* D1, before anything is allocated */
            return -1;
        if (record) {
            if (run != f.start)
                w->runs[w->nruns++] = (span){run, (size_t)(f.start - run)};
            w->stripped += (size_t)(f.start - run);
            w->e[t][n[t]] = e;
        }
        n[t]++;
        run = f.end;
    }
    if (record && run != end) {
        w->runs[w->nruns++] = (span){run, (size_t)(end - run)};
        w->stripped += (size_t)(end - run);
    }
    if (!record)
        memcpy(w->n, n, sizeof n);
    return 0;
}

static void fill_int32(const uint8_t **p, int packed, int32_t *out, size_t *n)
{
    if (!packed) {
        out[(*n)++] = (int32_t)(uint32_t)take_varint(p);
        return;
    }
    size_t len = (size_t)take_varint(p);
    const uint8_t *stop = *p + len;
    while (*p < stop)
        out[(*n)++] = (int32_t)(uint32_t)take_varint(p);
}

static void fill_line(Line *l, const uint8_t *p, const uint8_t *end)
{
    static const Line init = OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__LINE__INIT;
    *l = init;
    while (p < end) {
        uint8_t tag = *p++;
        uint64_t v = take_varint(&p);
        if (tag >> 3 == 1)
            l->function_index = (int32_t)(uint32_t)v;
        else if (tag >> 3 == 2)
            l->line = (int64_t)v;
        else
            l->column = (int64_t)v;
    }
}

/* Where the dictionary's entries go: each block used front to back (D2). */
typedef struct dblocks {
    Line *lines;
    Line **line_ptrs;
    int32_t *attrs, *idx;
    char *str;
} dblocks;

static void fill_location(Location *l, const uint8_t *p, const uint8_t *end, dblocks *b)
{
    static const Location init = OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__LOCATION__INIT;
    *l = init;
    l->lines = b->line_ptrs;
    l->attribute_indices = b->attrs;
    while (p < end) {
        uint8_t tag = *p++;
        if (tag == (1 << 3 | WIRE_WT_VARINT)) {
            l->mapping_index = (int32_t)(uint32_t)take_varint(&p);
        } else if (tag == (2 << 3 | WIRE_WT_VARINT)) {
            l->address = take_varint(&p);
        } else if (tag == (3 << 3 | WIRE_WT_LEN)) {
            size_t len = (size_t)take_varint(&p);
            fill_line(b->lines, p, p + len);
            l->lines[l->n_lines++] = b->lines++;
            p += len;
        } else {
            fill_int32(&p, tag == (4 << 3 | WIRE_WT_LEN), b->attrs, &l->n_attribute_indices);
        }
    }
    b->line_ptrs += l->n_lines;
    b->attrs += l->n_attribute_indices;
    if (!l->n_lines)
        l->lines = NULL;
    if (!l->n_attribute_indices)
        l->attribute_indices = NULL;
}

static void fill_function(Function *f, const uint8_t *p, const uint8_t *end)
{
    static const Function init = OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__FUNCTION__INIT;
    *f = init;
    while (p < end) {
        uint8_t tag = *p++;
        uint64_t v = take_varint(&p);
        switch (tag >> 3) {
        case 1:
            f->name_strindex = (int32_t)(uint32_t)v;
            break;
        case 2:
            f->system_name_strindex = (int32_t)(uint32_t)v;
            break;
        case 3:
            f->filename_strindex = (int32_t)(uint32_t)v;
            break;
        default:
            f->start_line = (int64_t)v;
            break;
        }
    }
}

static void fill_stack(Stack *s, const uint8_t *p, const uint8_t *end, dblocks *b)
{
    static const Stack init = OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__STACK__INIT;
    *s = init;
    s->location_indices = b->idx;
    while (p < end) {
        uint8_t tag = *p++;
        fill_int32(&p, tag == (1 << 3 | WIRE_WT_LEN), b->idx, &s->n_location_indices);
    }
    b->idx += s->n_location_indices;
    if (!s->n_location_indices)
        s->location_indices = NULL;
}

/* Fills the four tables protobuf-c left empty in d (-1: it did not, or out of memory). */
static int dict_fill(const dwalk *w, Dict *d, dblocks *b, sp_arena *a)
{
    Location *locs = array(a, w->n[T_LOC], sizeof *locs), **locp;
    Function *funcs = array(a, w->n[T_FUNC], sizeof *funcs), **funcp;
    Stack *stacks = array(a, w->n[T_STACK], sizeof *stacks), **stackp;
    char **strp;
    if (!locs || !funcs || !stacks || !(locp = array(a, w->n[T_LOC], sizeof *locp)) ||
        !(funcp = array(a, w->n[T_FUNC], sizeof *funcp)) ||
        !(strp = array(a, w->n[T_STR], sizeof *strp)) ||
        !(stackp = array(a, w->n[T_STACK], sizeof *stackp)) || d->n_location_table ||
        d->n_function_table || d->n_string_table || d->n_stack_table)
        return -1;
    for (size_t i = 0; i < w->n[T_LOC]; i++) {
        fill_location(&locs[i], w->e[T_LOC][i].p, w->e[T_LOC][i].p + w->e[T_LOC][i].n, b);
        locp[i] = &locs[i];
    }
    for (size_t i = 0; i < w->n[T_FUNC]; i++) {
        fill_function(&funcs[i], w->e[T_FUNC][i].p, w->e[T_FUNC][i].p + w->e[T_FUNC][i].n);
        funcp[i] = &funcs[i];
    }
    for (size_t i = 0; i < w->n[T_STR]; i++) {
        memcpy(b->str, w->e[T_STR][i].p, w->e[T_STR][i].n);
        b->str[w->e[T_STR][i].n] = 0;
        strp[i] = b->str;
        b->str += w->e[T_STR][i].n + 1;
    }
    for (size_t i = 0; i < w->n[T_STACK]; i++) {
        fill_stack(&stacks[i], w->e[T_STACK][i].p, w->e[T_STACK][i].p + w->e[T_STACK][i].n, b);
        stackp[i] = &stacks[i];
    }
    /* protobuf-c leaves an empty table NULL */
    d->n_location_table = w->n[T_LOC];
    d->location_table = w->n[T_LOC] ? locp : NULL;
    d->n_function_table = w->n[T_FUNC];
    d->function_table = w->n[T_FUNC] ? funcp : NULL;
    d->n_string_table = w->n[T_STR];
    d->string_table = w->n[T_STR] ? strp : NULL;
    d->n_stack_table = w->n[T_STACK];
    d->stack_table = w->n[T_STACK] ? stackp : NULL;
    return 0;
}

Dict *otlp_hand_unpack_dictionary(const uint8_t *bytes, size_t len, ProtobufCAllocator *alloc,
                                  sp_arena *a)
{
    dwalk w;
    memset(&w, 0, sizeof w);
    if (dict_walk(&w, bytes, len, 0))
        return NULL;
    size_t entries = 0;
    for (int t = 0; t < NTABLES; t++)
        entries += w.n[t];
    if (entries > WIRE_PB_PROTOBUF_C_MAX_FIELDS)
        return NULL;
    for (int t = 0; t < NTABLES; t++) {
        if (!(w.e[t] = array(a, w.n[t], sizeof *w.e[t])))
            return NULL;
    }
    if (!(w.runs = array(a, entries + 1, sizeof *w.runs)) || dict_walk(&w, bytes, len, 1))
        return NULL;
    uint8_t *buf = sp_arena_alloc(a, w.stripped ? w.stripped : 1), *o = buf;
    if (!buf)
        return NULL;
    for (size_t i = 0; i < w.nruns; i++) {
        memcpy(o, w.runs[i].p, w.runs[i].n);
        o += w.runs[i].n;
    }
    Dict *d = opentelemetry__proto__profiles__v1development__profiles_dictionary__unpack(
        alloc, w.stripped, buf);
    dblocks b = {array(a, w.nlines, sizeof *b.lines), array(a, w.nlines, sizeof *b.line_ptrs),
                 array(a, w.nattrs, sizeof *b.attrs), array(a, w.nidx, sizeof *b.idx),
                 array(a, w.strbytes, 1)};
    if (!d || !b.lines || !b.line_ptrs || !b.attrs || !b.idx || !b.str || dict_fill(&w, d, &b, a))
        return NULL;
    return d;
}
