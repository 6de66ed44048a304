#include "profile.h"
#include "err.h"
#include "hash.h"

#include <inttypes.h>
#include <stdio.h>
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

/* Appends s to buf[*at..n-1), truncating as snprintf does (buf stays NUL-terminated). */
static void put(char *buf, size_t n, size_t *at, const char *s, size_t len)
{
    if (*at + 1 >= n)
        return;
    if (len > n - 1 - *at)
        len = n - 1 - *at;
    memcpy(buf + *at, s, len);
    *at += len;
}

const char *sp_frame_basename(const char *mapping_file)
{
    if (!mapping_file || !*mapping_file)
        return NULL;
    const char *slash = strrchr(mapping_file, '/');
    return slash && slash[1] ? slash + 1 : mapping_file;
}

/* Written by hand, not with snprintf: every unsymbolized location of every request is named
 * here (the converter, the correlator, the store and queries), and printf's format parsing was
 * 8 % of an ingest worker's CPU (bench/RESULTS.md, issue 19). Same text as
 * "%s%s0x%" PRIx64 "%s%s". */
size_t sp_frame_name_len(size_t type_len, uint64_t address, size_t base_len)
{
    if (!type_len && !address && !base_len)
        return 7; /* "unknown" */
    size_t digits = address ? (size_t)(67 - __builtin_clzll(address)) / 4 : 1;
    return type_len + !!type_len + 2 + digits + !!base_len + base_len;
}

size_t sp_frame_name_parts(char *buf, size_t n, const char *frame_type, size_t type_len,
                           uint64_t address, const char *base, size_t base_len)
{
    if (!buf || !n)
        return 0;
    size_t at = 0;
    if (!type_len && !address && !base_len) {
        put(buf, n, &at, "unknown", 7);
        buf[at] = 0;
        return at;
    }
    char hex[2 + 16];
    size_t h = sizeof hex;
    do {
        hex[--h] = "0123456789abcdef"[address & 15];
        address >>= 4;
    } while (address);
    hex[--h] = 'x';
    hex[--h] = '0';
    size_t hlen = sizeof hex - h;
    size_t need = type_len + !!type_len + hlen + !!base_len + base_len;
    if (need < n) { /* room for all of it: no truncation to check per part */
        if (type_len) {
            memcpy(buf, frame_type, type_len);
            buf[type_len] = ' ';
            at = type_len + 1;
        }
        memcpy(buf + at, hex + h, hlen);
        at += hlen;
        if (base_len) {
            buf[at++] = ' ';
            memcpy(buf + at, base, base_len);
            at += base_len;
        }
        buf[at] = 0;
        return at;
    }
    if (type_len) {
        put(buf, n, &at, frame_type, type_len);
        put(buf, n, &at, " ", 1);
    }
    put(buf, n, &at, hex + h, hlen);
    if (base_len) {
        put(buf, n, &at, " ", 1);
        put(buf, n, &at, base, base_len);
    }
    buf[at] = 0;
    return at;
}

const char *sp_frame_name(char *buf, size_t n, const char *frame_type, uint64_t address,
                          const char *mapping_file)
{
    if (!buf || !n)
        return "unknown";
    const char *base = sp_frame_basename(mapping_file);
    sp_frame_name_parts(buf, n, frame_type ? frame_type : "", frame_type ? strlen(frame_type) : 0,
                        address, base, base ? strlen(base) : 0);
    return buf;
}

int sp_profile_set_series(sp_profile *p, sp_arena *a, const char *name, const sp_kv *labels,
                          uint32_t nlabels)
{
    sp_kv *kv = sp_arena_alloc(a, (nlabels + 1) * sizeof *kv);
    if (!kv)
        return SP_ETOOBIG;
    uint32_t n = 0;
    kv[n++] = (sp_kv){"__name__", name};
    for (uint32_t i = 0; i < nlabels; i++)
        if (strcmp(labels[i].name, "__name__") != 0)
            kv[n++] = labels[i];
    for (uint32_t x = 1; x < n; x++) /* insertion sort: a handful of labels */
        for (uint32_t y = x; y > 0 && strcmp(kv[y - 1].name, kv[y].name) > 0; y--) {
            sp_kv tmp = kv[y];
            kv[y] = kv[y - 1];
            kv[y - 1] = tmp;
        }
    p->series = kv;
    p->nseries = n;
    return 0;
}

const char *const sp_ident_attrs[SP_IDENT_KEYS] = {"host.id", "host.name", "k8s.pod.uid",
                                                   "container.id"};

uint64_t sp_ident_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h ? h : 1;
}

uint32_t sp_location_names(const sp_profile *p, uint32_t loc, const char **name, uint32_t *len,
                           uint32_t max, char buf[SP_FRAME_NAME_MAX])
{
    uint32_t n = 0;
    if (loc == 0 || loc >= p->nlocations || max == 0)
        return 0;
    const sp_location *l = &p->locations[loc];
    for (uint32_t k = 0; k < l->nlines && n < max; k++) {
        uint32_t f = l->lines[k].function_id;
        const char *s = f && f < p->nfunctions ? p->strings[p->functions[f].name] : "";
        if (!*s)
            continue;
        if (len)
            len[n] = (uint32_t)strlen(s);
        name[n++] = s;
    }
    if (n == 0) {
        const sp_mapping *m =
            l->mapping_id && l->mapping_id < p->nmappings ? &p->mappings[l->mapping_id] : NULL;
        sp_frame_name(buf, SP_FRAME_NAME_MAX, l->frame_type ? p->strings[l->frame_type] : NULL,
                      l->address, m && m->filename ? p->strings[m->filename] : NULL);
        if (len)
            len[n] = (uint32_t)strlen(buf);
        name[n++] = buf;
    }
    return n;
}

/* ---- location prints ---- */

static inline uint64_t fold(uint64_t h, uint64_t v)
{
    h = (h ^ v) * 0x9e3779b97f4a7c15ull;
    return h ^ h >> 29;
}

static inline uint64_t finish(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    return h ^ h >> 33;
}

/* Folds string idx of p (as a store reads it: "" when 0 or out of range) into both lanes. Each
 * lane hashes the bytes with its own seed and the length, so concatenations never meet. */
static void fold_str(const sp_profile *p, uint32_t idx, sp_print *h)
{
    const char *s = "";
    size_t n = 0;
    if (idx && idx < p->nstrings && p->strings && p->strings[idx]) {
        s = p->strings[idx];
        n = p->string_lens ? p->string_lens[idx] : strlen(s);
    }
    h->a = fold(h->a, sp_hash64(s, n, 0x243f6a8885a308d3ull));
    h->b = fold(h->b, sp_hash64(s, n, 0x13198a2e03707344ull));
}

static void fold_int(sp_print *h, uint64_t v)
{
    h->a = fold(h->a, v);
    h->b = fold(h->b, v ^ 0xa4093822299f31d0ull);
}

int sp_location_prints(const sp_profile *p, sp_arena *a, sp_print **out)
{
    *out = NULL;
    uint32_t nl = p->nlocations, nf = p->nfunctions, nm = p->nmappings;
    sp_print *lp = sp_arena_calloc(a, nl ? nl : 1, sizeof *lp);
    sp_print *fp = sp_arena_alloc(a, (nf ? nf : 1) * sizeof *fp);
    sp_print *mp = sp_arena_alloc(a, (nm ? nm : 1) * sizeof *mp);
    if (!lp || !fp || !mp)
        return SP_ETOOBIG;
    /* Functions and mappings once each: an eBPF request's locations share a few hundred. */
    for (uint32_t i = 1; i < nf; i++) {
        const sp_function *f = &p->functions[i];
        sp_print h = {0x3f84d5b5b5470917ull, 0x9216d5d98979fb1bull};
        fold_int(&h, f->made_up);
        if (!f->made_up) {
            fold_str(p, f->name, &h);
            fold_str(p, f->system_name, &h);
            fold_str(p, f->filename, &h);
            fold_int(&h, (uint64_t)f->start_line);
        }
        fp[i] = h;
    }
    for (uint32_t i = 1; i < nm; i++) {
        sp_print h = {0xd1310ba698dfb5acull, 0x2ffd72dbd01adfb7ull};
        fold_str(p, p->mappings[i].filename, &h);
        fold_str(p, p->mappings[i].build_id, &h);
        mp[i] = h;
    }
    uint32_t last_type = UINT32_MAX;
    sp_print type = {0, 0};
    for (uint32_t i = 1; i < nl; i++) {
        const sp_location *l = &p->locations[i];
        if (l->frame_type != last_type) { /* runs of one frame type: hashed once a run */
            type = (sp_print){0xb8e1afed6a267e96ull, 0xba7c9045f12c7f99ull};
            fold_str(p, l->frame_type, &type);
            last_type = l->frame_type;
        }
        sp_print h = {0x24a19947b3916cf7ull, 0x0801f2e2858efc16ull};
        if (l->mapping_id && l->mapping_id < nm) {
            fold_int(&h, 1);
            h.a = fold(h.a, mp[l->mapping_id].a);
            h.b = fold(h.b, mp[l->mapping_id].b);
        } else {
            fold_int(&h, 0);
        }
        fold_int(&h, l->address);
        h.a = fold(h.a, type.a);
        h.b = fold(h.b, type.b);
        fold_int(&h, (uint64_t)l->bare << 32 | l->nlines);
        for (uint32_t k = 0; k < l->nlines; k++) {
            uint32_t f = l->lines[k].function_id;
            if (f && f < nf) {
                h.a = fold(h.a, fp[f].a);
                h.b = fold(h.b, fp[f].b);
            } else {
                fold_int(&h, 0);
            }
            fold_int(&h, (uint64_t)l->lines[k].line);
        }
        lp[i] = (sp_print){finish(h.a), finish(h.b)};
    }
    *out = lp;
    return 0;
}

sp_print sp_stack_print(const sp_print *lp, uint32_t nlp, const uint32_t *ids, uint32_t n)
{
    sp_print h = {0x452821e638d01377ull, 0xbe5466cf34e90c6cull};
    uint64_t folded = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t lid = ids[i];
        /* the prints of a request's locations outgrow the caches: the one eight ahead is loaded
         * while this one folds (its load was most of the time of this loop at full ingest) */
        if (i + 8 < n && ids[i + 8] < nlp)
            __builtin_prefetch(&lp[ids[i + 8]]);
        if (!lid || lid >= nlp)
            continue;
        h.a = fold(h.a, lp[lid].a);
        h.b = fold(h.b, lp[lid].b);
        folded++;
    }
    fold_int(&h, folded);
    return (sp_print){finish(h.a), finish(h.b)};
}
