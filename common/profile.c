#include "profile.h"
#include "err.h"

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

/* Written by hand, not with snprintf: every unsymbolized location of every request is named
 * here (the converter, the correlator, the store and queries), and printf's format parsing was
 * 8 % of an ingest worker's CPU (bench/RESULTS.md, issue 19). Same text as
 * "%s%s0x%" PRIx64 "%s%s". */
const char *sp_frame_name(char *buf, size_t n, const char *frame_type, uint64_t address,
                          const char *mapping_file)
{
    if (!buf || !n)
        return "unknown";
    const char *base = NULL;
    if (mapping_file && *mapping_file) {
        const char *slash = strrchr(mapping_file, '/');
        base = slash && slash[1] ? slash + 1 : mapping_file;
    }
    int has_type = frame_type && *frame_type;
    size_t at = 0;
    if (!has_type && !address && !base) {
        put(buf, n, &at, "unknown", 7);
        buf[at] = 0;
        return buf;
    }
    if (has_type) {
        put(buf, n, &at, frame_type, strlen(frame_type));
        put(buf, n, &at, " ", 1);
    }
    char hex[2 + 16];
    size_t h = sizeof hex;
    do {
        hex[--h] = "0123456789abcdef"[address & 15];
        address >>= 4;
    } while (address);
    hex[--h] = 'x';
    hex[--h] = '0';
    put(buf, n, &at, hex + h, sizeof hex - h);
    if (base) {
        put(buf, n, &at, " ", 1);
        put(buf, n, &at, base, strlen(base));
    }
    buf[at] = 0;
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
