/* libFuzzer target: the Pyroscope pusher's hold (delivery/hold.c) and its journal files
 * (delivery/pusher.c). Byte 0 % 2 picks one, the rest is its input:
 * 0 - a journal file: pusher_journal_parse() either refuses it or returns a tenant (<= 1024
 *     bytes) and a payload inside the input whose lengths add up to the file ("SPHJ" | u32 tenant
 *     length | tenant | u64 payload length | payload | u32 CRC-32 of all before), with the CRC
 *     recomputed equal.
 * 1 - a sequence of operations on one hold, 6 bytes each: take a batch of one observation
 *     (stack, time, value, span) or one span (id, parent, extent) or a claim (attach_only) of an
 *     observation by a span; let groups leave at a moving clock; at the end everything leaves.
 *     Checked: H2 — what leaves sums to exactly what was taken (claims move value, never make
 *     any), per stack; no profile carries a zero value; every profile is stamped inside its
 *     bucket's first millisecond.
 */
#include "common/arena.h"
#include "common/profile.h"
#include "delivery/hold.h"
#include "delivery/pusher.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "fuzz_check.h"

#define S 1000000000LL

static void journal(const uint8_t *d, size_t n)
{
    const char *tenant;
    const uint8_t *payload;
    size_t tl, pl;
    if (pusher_journal_parse(d, n, &tenant, &tl, &payload, &pl) != 0)
        return;
    CHECK(tl <= 1024);
    CHECK((const uint8_t *)tenant == d + 8);
    CHECK(payload == d + 8 + tl + 8);
    CHECK(8 + tl + 8 + pl + 4 == n);
    uint32_t crc = (uint32_t)crc32(0L, d, (uInt)(n - 4));
    CHECK(memcmp(&crc, d + n - 4, 4) == 0); /* little endian machines only, as the format */
}

static const char *const STACKS[] = {"a;main", "b;main", "c;b;main", "d;c;b;main"};
static int64_t taken[4], left[4];

static int on_emit(void *ud, const char *tenant, hold_group_id g, const sp_profile *p)
{
    (void)ud;
    (void)tenant;
    CHECK(p->time_nanos >= g.bucket_s * S && p->time_nanos < g.bucket_s * S + 1000000);
    for (uint32_t i = 0; i < p->nsamples; i++) {
        const sp_sample *s = &p->samples[i];
        CHECK(s->value != 0);
        char name[64] = "";
        for (uint32_t k = 0; k < s->nlocations; k++) {
            const sp_location *l = &p->locations[s->location_ids[k]];
            size_t o = strlen(name);
            snprintf(name + o, sizeof name - o, "%s%s", k ? ";" : "",
                     p->strings[p->functions[l->lines[0].function_id].name]);
        }
        int which = -1;
        for (int k = 0; k < 4; k++)
            if (strcmp(name, STACKS[k]) == 0)
                which = k;
        CHECK(which >= 0);
        left[which] += s->value;
    }
    return 0;
}

/* One profile with one observation (or a claim: attach_only with the span). */
static sp_profile *one(sp_arena *a, int stack, int64_t ts, int64_t value, int span, int claim)
{
    sp_profile *p = sp_arena_calloc(a, 1, sizeof *p);
    p->type_id = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
    p->name = "process_cpu";
    p->period = 1;
    static const char *names[] = {"", "a", "b", "c", "d", "main"};
    p->strings = names;
    p->nstrings = 6;
    sp_function *fn = sp_arena_calloc(a, 6, sizeof *fn);
    sp_location *loc = sp_arena_calloc(a, 6, sizeof *loc);
    sp_line *ln = sp_arena_calloc(a, 6, sizeof *ln);
    for (uint32_t i = 1; i < 6; i++) {
        fn[i].name = i;
        ln[i].function_id = i;
        loc[i].lines = &ln[i];
        loc[i].nlines = 1;
    }
    p->functions = fn;
    p->nfunctions = 6;
    p->locations = loc;
    p->nlocations = 6;
    p->mappings = sp_arena_calloc(a, 1, sizeof *p->mappings);
    p->nmappings = 1;
    static uint32_t frames[4][4] = {{1, 5}, {2, 5}, {3, 2, 5}, {4, 3, 2, 5}};
    static uint32_t nframes[4] = {2, 2, 3, 4};
    sp_sample *s = sp_arena_calloc(a, 1, sizeof *s);
    s->location_ids = frames[stack];
    s->nlocations = nframes[stack];
    s->value = value;
    uint64_t *t = sp_arena_alloc(a, sizeof *t);
    *t = (uint64_t)ts;
    s->timestamps = t;
    s->nobs = 1;
    if (span) {
        s->spans = sp_arena_calloc(a, 1, sizeof *s->spans);
        memset(s->spans->span_id, 'A' + span, 8);
        s->nspans = 1;
    }
    p->samples = s;
    p->nsamples = 1;
    sp_kv kv[1] = {{"service_name", "svc"}};
    sp_profile_set_series(p, a, "process_cpu", kv, 1);
    p->attach_only = (uint8_t)claim;
    return p;
}

static void operations(const uint8_t *d, size_t n)
{
    memset(taken, 0, sizeof taken);
    memset(left, 0, sizeof left);
    hold_options o = {.delay_ns = (int64_t)(n ? d[0] % 4 : 0) * S, .max_bytes = 1u << 20};
    hold *h = hold_new(&o);
    CHECK(h != NULL);
    int64_t base = 1700000000LL * S, now = base;
    for (size_t i = 1; i + 6 <= n; i += 6) {
        const uint8_t *x = d + i;
        sp_arena *a = sp_arena_new(0);
        sp_batch b = {.tenant = (x[0] & 0x40) ? "t2" : "t1", .arena = a};
        sp_profile *p = NULL;
        sp_span sp;
        int stack = x[1] % 4;
        int64_t ts = base + (int64_t)(x[2] % 64) * S / 2 + x[3];
        int64_t value = (int64_t)x[4] + 1;
        int span = x[5] % 6;
        switch (x[0] % 4) {
        case 0: /* an observation, perhaps attached on arrival */
            p = one(a, stack, ts, value, span, 0);
            taken[stack] += value;
            break;
        case 1: /* a claim */
            p = one(a, stack, ts, value, span ? span : 1, 1);
            break;
        case 2: /* a span: nested by id (A outermost), extents from the bytes */
            memset(&sp, 0, sizeof sp);
            memset(sp.span_id, 'A' + (span ? span : 1), 8);
            if (span > 1)
                memset(sp.parent_span_id, 'A' + span - 1, 8);
            sp.start_ns = (uint64_t)(base + (int64_t)(x[2] % 8) * S);
            sp.end_ns = sp.start_ns + (uint64_t)(x[3] + 1) * (uint64_t)S / 8;
            b.spans = &sp;
            b.nspans = 1;
            break;
        default: /* time passes; due groups leave */
            now += (int64_t)(x[1] % 16) * S / 2;
            hold_release(h, now, 0, on_emit, NULL, NULL);
            sp_arena_free(a);
            continue;
        }
        if (p) {
            b.profiles = &p;
            b.nprofiles = 1;
        }
        hold_group_id ids[4];
        int ng = hold_plan(h, &b, now, ids, 4);
        if (ng >= 0) {
            sp_err err = {0};
            if (x[5] & 0x80) {
                hold_unpin(h, ids, ng); /* the store failed: nothing of it was taken */
                if (p && !p->attach_only)
                    taken[stack] -= value;
            } else {
                hold_add(h, &b, now, ids, ng, &err);
            }
        }
        sp_arena_free(a);
    }
    hold_release(h, now + 3600 * S, 1, on_emit, NULL, NULL);
    hold_stats st;
    hold_get_stats(h, &st);
    CHECK(st.groups == 0);
    for (int k = 0; k < 4; k++)
        CHECK(left[k] == taken[k]);
    hold_free(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] % 2 == 0)
        journal(data + 1, size - 1);
    else
        operations(data + 1, size - 1);
    return 0;
}
