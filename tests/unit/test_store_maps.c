/* The storage adapter's in-memory maps and value chunks (maps.h): no SQLite, no files. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "storage-adapter/hash_index.h"
#include "storage-adapter/chunk.h"
#include "storage-adapter/maps.h"

#include <stdlib.h>
#include <string.h>
#include <zstd.h>

typedef struct collected {
    int64_t k0[4096], k1[4096], v[4096];
    size_t n;
} collected;

static int collect(void *ctx, int64_t k0, int64_t k1, int64_t v)
{
    collected *c = ctx;
    c->k0[c->n] = k0;
    c->k1[c->n] = k1;
    c->v[c->n++] = v;
    return 0;
}

/* A copy of the blob (the caller frees it), after checking that it decodes to e[0..n): keys from
 * k[2] (and k[3] when nk = 2), values from sum. */
static uint8_t *decodes_to(const uint8_t *blob, size_t len, int nk, const store_agg_entry *e,
                           size_t n, store_chunk_decoder *d, collected *got)
{
    uint8_t *copy = malloc(len);
    assert_non_null(copy);
    memcpy(copy, blob, len);
    got->n = 0;
    assert_int_equal(store_chunk_decode(copy, len, nk, d, collect, got), 0);
    assert_int_equal(got->n, n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(got->k0[i], e[i].k[2]);
        assert_int_equal(got->k1[i], nk == 2 ? e[i].k[3] : 0);
        assert_int_equal(got->v[i], e[i].sum);
    }
    return copy;
}

/* Chunks give back exactly what was coded — small and zstd'd ones, negative and extreme values,
 * values with a common factor and without — and refuse cut or corrupted bytes instead of reading
 * past them. */
static void chunks_round_trip_and_refuse_damage(void **state)
{
    (void)state;
    static store_agg_entry e[3000];
    static collected got;
    store_chunk_coder c = {0};
    store_chunk_decoder d = {0};
    const size_t sizes[] = {1, 3, 2999};
    for (int nk = 1; nk <= 2; nk++)
        for (size_t si = 0; si < 3; si++) {
            size_t n = sizes[si];
            memset(e, 0, sizeof e);
            for (size_t i = 0; i < n; i++) {
                e[i].k[2] = nk == 2 ? (int64_t)(i / 7) * 3 + 1 : (int64_t)i * 5 + 2;
                e[i].k[3] = nk == 2 ? (int64_t)((i * 37) % 7) * 100000 + (int64_t)(i % 7) : 0;
                e[i].sum = si == 2 ? (int64_t)(i % 13 + 1) * 50000000 : -7 * (int64_t)(i + 1);
            }
            if (nk == 2) /* keep (k0, k1) sorted */
                for (size_t i = 0; i < n; i++)
                    e[i].k[3] = (int64_t)(i % 7) * 100000 + 5;
            if (si == 1) {
                e[0].sum = INT64_MAX;
                e[1].sum = INT64_MIN + 1;
                e[2].sum = 3;
            }
            const uint8_t *blob;
            size_t len;
            assert_int_equal(store_chunk_encode(&c, e, n, 2, nk, &blob, &len), 0);
            if (si == 2)
                assert_int_equal(blob[0], 1); /* big and regular: zstd'd */
            uint8_t *copy = decodes_to(blob, len, nk, e, n, &d, &got);
            /* Every cut is refused (or, for a plain chunk cut inside its value column, never
             * reads past the end): decode must not crash or invent entries. */
            for (size_t cut = 0; cut < len; cut += len / 50 + 1) {
                got.n = 0;
                int rc = store_chunk_decode(copy, cut, nk, &d, collect, &got);
                assert_true(rc == -1 || (rc == 0 && got.n <= n));
            }
            copy[0] = 9;
            assert_int_equal(store_chunk_decode(copy, len, nk, &d, collect, &got), -1);
            free(copy);
        }
    store_chunk_coder_free(&c);
    store_chunk_decoder_free(&d);
}

/* Off-CPU-like sums: nanoseconds over many octaves (1 us to 17 s, and extremes), no common
 * factor. A large chunk takes the bit-packed coding (format 3), a small one whichever is
 * smaller; all come back exact, for one and two keys, and cut blobs are refused. */
static void off_cpu_values_take_the_bit_coding_and_round_trip(void **state)
{
    (void)state;
    static store_agg_entry e[3000];
    static collected got;
    store_chunk_coder c = {0};
    store_chunk_decoder d = {0};
    uint64_t x = 0x9e3779b97f4a7c15ull;
    const size_t sizes[] = {1, 5, 2999};
    for (int nk = 1; nk <= 2; nk++)
        for (size_t si = 0; si < 3; si++) {
            size_t n = sizes[si];
            for (size_t i = 0; i < n; i++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                e[i].k[2] = nk == 2 ? (int64_t)(i / 5) * 2 + 1 : (int64_t)i * 3 + 1;
                e[i].k[3] = nk == 2 ? (int64_t)(i % 5) * 7 + 3 : 0;
                int octave = 10 + (int)(x % 24); /* 1 us .. 17 s */
                e[i].sum = (int64_t)((x >> 20) & (((uint64_t)1 << octave) - 1)) + 1;
            }
            if (n >= 5) {
                e[1].sum = INT64_MAX;
                e[2].sum = -1; /* sums never are, but the coding must not care */
                e[3].sum = 0;
                e[4].sum = INT64_MIN;
            }
            const uint8_t *blob;
            size_t len;
            assert_int_equal(store_chunk_encode(&c, e, n, 2, nk, &blob, &len), 0);
            if (si == 2) { /* smaller than the values' varints alone */
                size_t varints = 0;
                uint8_t tmp[STORE_VARINT_MAX];
                for (size_t i = 0; i < n; i++)
                    varints += store_varint_put(tmp, ((uint64_t)e[i].sum << 1) ^
                                                         (uint64_t)(e[i].sum >> 63));
                assert_int_equal(blob[0], 3);
                assert_true(len < varints);
            }
            uint8_t *copy = decodes_to(blob, len, nk, e, n, &d, &got);
            for (size_t cut = 0; cut < len; cut += len / 60 + 1) {
                got.n = 0;
                assert_int_equal(store_chunk_decode(copy, cut, nk, &d, collect, &got), -1);
            }
            free(copy);
        }
    store_chunk_coder_free(&c);
    store_chunk_decoder_free(&d);
}

/* Blobs of the formats written before schema 7 (0: plain, 1: zstd; values as zigzag varints
 * times the unit) still decode: spelled out byte by byte, as a file of that time holds them. */
static void old_format_blobs_still_decode(void **state)
{
    (void)state;
    /* n = 3, unit = 5, stacks 2, 3, 10 (zigzag deltas 4, 2, 14), values 5, -10, 50000 (/5,
     * zigzagged: 2, 3, 20000 = 0xa0 0x9c 0x01) */
    static const uint8_t plain[] = {0, 3, 5, 4, 2, 14, 2, 3, 0xa0, 0x9c, 0x01};
    static collected got;
    store_chunk_decoder d = {0};
    got.n = 0;
    assert_int_equal(store_chunk_decode(plain, sizeof plain, 1, &d, collect, &got), 0);
    assert_int_equal(got.n, 3);
    const int64_t k0[] = {2, 3, 10}, v[] = {5, -10, 50000};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(got.k0[i], k0[i]);
        assert_int_equal(got.v[i], v[i]);
    }
    /* Format 1: 1, the plain coding's length, its zstd frame. */
    uint8_t z[128];
    z[0] = 1;
    z[1] = sizeof plain - 1;
    size_t zn = ZSTD_compress(z + 2, sizeof z - 2, plain + 1, sizeof plain - 1, 1);
    assert_false(ZSTD_isError(zn));
    got.n = 0;
    assert_int_equal(store_chunk_decode(z, zn + 2, 1, &d, collect, &got), 0);
    assert_int_equal(got.n, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(got.k0[i], k0[i]);
        assert_int_equal(got.v[i], v[i]);
    }
    store_chunk_decoder_free(&d);
}

/* A bit-coded blob whose lengths or packed bits do not agree is refused: a length over 64, a
 * byte too many or too few, a format 3 frame size past the end, an unknown format byte. */
static void malformed_bit_coded_blobs_are_refused(void **state)
{
    (void)state;
    static collected got;
    store_chunk_decoder d = {0};
    /* n = 2, unit = 1, stacks 1, 2 (deltas 2, 2), lengths 3 and 9 (values zz 5 and 300: mantissa
     * bits 01 then 00101100 = 0x2c 0x01 -> packed 0b10110001 0b00000000... built below). */
    uint8_t ok[] = {2, 2, 1, 2, 2, 3, 9, 0, 0};
    /* pack 5 (0b101, keep 0b01) then 300 (0b100101100, keep 0b00101100) LSB first */
    uint64_t acc = 1u | (0x2cu << 2);
    ok[7] = (uint8_t)acc;
    ok[8] = (uint8_t)(acc >> 8);
    got.n = 0;
    assert_int_equal(store_chunk_decode(ok, sizeof ok, 1, &d, collect, &got), 0);
    assert_int_equal(got.n, 2);
    assert_int_equal(got.v[0], -3); /* zigzag 5 */
    assert_int_equal(got.v[1], 150);
    uint8_t bad[sizeof ok + 1];
    memcpy(bad, ok, sizeof ok);
    bad[5] = 65; /* a length over 64 bits */
    assert_int_equal(store_chunk_decode(bad, sizeof ok, 1, &d, collect, &got), -1);
    memcpy(bad, ok, sizeof ok);
    bad[sizeof ok] = 0; /* a byte left over */
    assert_int_equal(store_chunk_decode(bad, sizeof ok + 1, 1, &d, collect, &got), -1);
    assert_int_equal(store_chunk_decode(ok, sizeof ok - 1, 1, &d, collect, &got), -1);
    bad[0] = 4; /* no such format */
    assert_int_equal(store_chunk_decode(bad, sizeof ok, 1, &d, collect, &got), -1);
    /* Format 3 whose frame size runs past the end, or leaves the lengths short of the bits. */
    uint8_t z[128];
    z[0] = 3;
    z[1] = 7; /* the front: n, unit, 2 stacks, 2 lengths... one short (the front is 6 bytes) */
    size_t zn = ZSTD_compress(z + 3, sizeof z - 5, ok + 1, 6, 1);
    assert_false(ZSTD_isError(zn));
    z[1] = 6;
    z[2] = (uint8_t)zn;
    z[3 + zn] = ok[7];
    z[4 + zn] = ok[8];
    got.n = 0;
    assert_int_equal(store_chunk_decode(z, zn + 5, 1, &d, collect, &got), 0);
    assert_int_equal(got.v[1], 150);
    z[2] = (uint8_t)(zn + 3); /* past the end */
    assert_int_equal(store_chunk_decode(z, zn + 5, 1, &d, collect, &got), -1);
    z[2] = (uint8_t)zn;
    assert_int_equal(store_chunk_decode(z, zn + 4, 1, &d, collect, &got), -1); /* bits short */
    store_chunk_decoder_free(&d);
}

/* ---- sum map ------------------------------------------------------------------------------- */

static uint64_t rng_state = 0x243f6a8885a308d3ull;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static int ref_cmp(const void *a, const void *b)
{
    const store_sum3_entry *x = a, *y = b;
    for (int i = 0; i < 3; i++)
        if (x->k[i] != y->k[i])
            return x->k[i] < y->k[i] ? -1 : 1;
    return 0;
}

/* A bucket's chunks merged (storage-adapter/chunk.c) give, per key, the sum of every value the
 * chunks hold, in signed key order, zero sums left out; checked against a plain table of sums
 * over the keys' small domain, for 1 to 5 runs (odd counts leave a run without a partner in a
 * pass), keys repeated inside a run, negative keys, sums that wrap or cancel, and a run out of
 * order (sorted as a whole instead). A blob that does not decode is refused. */
static void chunk_merge_sums_runs_like_a_table(void **state)
{
    (void)state;
    enum { DOMAIN = 101, OFFSET = 50, PER_RUN = 300 };
    store_chunk_coder coder = {0};
    store_chunk_decoder dec = {0};
    store_chunk_merge m = {0};
    static store_agg_entry e[PER_RUN];
    static store_sum3_entry out[5 * PER_RUN];
    uint64_t seed = 42;
    for (int unsorted = 0; unsorted < 2; unsorted++)
        for (int runs = 1; runs <= 5; runs++) {
            uint64_t want[DOMAIN] = {0};
            store_chunk_merge_reset(&m);
            for (int r = 0; r < runs; r++) {
                size_t n = 1 + (size_t)(seed % PER_RUN);
                for (size_t i = 0; i < n; i++) {
                    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                    memset(&e[i], 0, sizeof e[i]);
                    e[i].k[2] = (int64_t)(seed >> 33) % DOMAIN - OFFSET;
                    e[i].sum = seed % 7 == 0   ? INT64_MAX - 3
                               : seed % 5 == 0 ? -(int64_t)(seed >> 40)
                                               : (int64_t)(seed >> 50);
                    want[e[i].k[2] + OFFSET] += (uint64_t)e[i].sum;
                }
                if (!(unsorted && r == runs / 2)) /* insertion sort: keys ascending, repeats kept */
                    for (size_t i = 1; i < n; i++)
                        for (size_t j = i; j > 0 && e[j].k[2] < e[j - 1].k[2]; j--) {
                            store_agg_entry t = e[j];
                            e[j] = e[j - 1];
                            e[j - 1] = t;
                        }
                const uint8_t *blob;
                size_t len;
                assert_int_equal(store_chunk_encode(&coder, e, n, 2, 1, &blob, &len), 0);
                assert_int_equal(store_chunk_merge_add(&m, blob, len, &dec), 0);
            }
            int64_t got = store_chunk_merge_sum(&m, 7, 9, out);
            size_t at = 0;
            for (int k = 0; k < DOMAIN; k++) {
                if (!want[k])
                    continue;
                assert_true(at < (size_t)got);
                assert_int_equal(out[at].k[0], 7);
                assert_int_equal(out[at].k[1], 9);
                assert_int_equal(out[at].k[2], k - OFFSET);
                assert_int_equal(out[at].sum, (int64_t)want[k]);
                at++;
            }
            assert_int_equal(got, (int64_t)at);
        }
    static const uint8_t broken[] = {2, 5, 1, 2}; /* five entries announced, one key there */
    store_chunk_merge_reset(&m);
    assert_int_equal(store_chunk_merge_add(&m, broken, sizeof broken, &dec), -1);
    store_chunk_merge_free(&m);
    store_chunk_decoder_free(&dec);
    store_chunk_coder_free(&coder);
}

/* Adds n observations drawn by `shape` to a sum map and to a plain array, then checks that the
 * sorted entries equal the array aggregated independently (qsort, then runs summed): every key
 * once, in key order, with its exact total; zero totals left out. */
static void sum3_against_reference(int shape, size_t n)
{
    store_sum3 m = {0};
    store_sum3_entry *raw = calloc(n, sizeof *raw);
    assert_non_null(raw);
    for (size_t i = 0; i < n; i++) {
        int64_t k0, k1, k2, v;
        switch (shape) {
        case 0: /* random, many duplicates */
            k0 = 1 + (int64_t)(rnd() % 7);
            k1 = (int64_t)(rnd() % 3) - 1;
            k2 = (int64_t)(rnd() % 500) - 250;
            if (i % 97 == 0) /* the radix sort's sign flip and widest spread */
                k2 = i % 2 ? INT64_MIN : INT64_MAX;
            break;
        case 1: /* ascending */
            k0 = 1 + (int64_t)(i / 1000);
            k1 = 5;
            k2 = (int64_t)i;
            break;
        case 2: /* descending */
            k0 = 1 + (int64_t)((n - i) / 1000);
            k1 = 5;
            k2 = (int64_t)(n - i);
            break;
        case 3: /* one key */
            k0 = 42;
            k1 = 42;
            k2 = 42;
            break;
        default: /* organ pipe, extreme values */
            k0 = i < n / 2 ? INT64_MAX - (int64_t)i : INT64_MIN + 1 + (int64_t)i;
            k1 = INT64_MIN;
            k2 = (int64_t)(i < n / 2 ? i : n - i);
            break;
        }
        v = (int64_t)(rnd() % 5) - 2; /* zero, negative: some totals cancel out */
        int64_t *sum = store_sum3_at(&m, k0, k1, k2);
        assert_non_null(sum);
        *sum += v;
        raw[i] = (store_sum3_entry){{k0, k1, k2}, v};
    }
    qsort(raw, n, sizeof *raw, ref_cmp);
    size_t nref = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        int64_t total = 0;
        while (j < n && ref_cmp(&raw[i], &raw[j]) == 0)
            total += raw[j++].sum;
        if (total)
            raw[nref++] = (store_sum3_entry){{raw[i].k[0], raw[i].k[1], raw[i].k[2]}, total};
        i = j;
    }
    store_sum3_entry *out = calloc(m.n ? m.n : 1, sizeof *out);
    assert_non_null(out);
    size_t got = store_sum3_sorted(&m, out);
    assert_int_equal(got, nref);
    for (size_t i = 0; i < got; i++) {
        assert_int_equal(out[i].k[0], raw[i].k[0]);
        assert_int_equal(out[i].k[1], raw[i].k[1]);
        assert_int_equal(out[i].k[2], raw[i].k[2]);
        assert_int_equal(out[i].sum, raw[i].sum);
    }
    store_sum3_reset(&m);
    assert_int_equal(m.n, 0);
    assert_int_equal(store_sum3_sorted(&m, out), 0);
    free(out);
    free(raw);
    store_sum3_free(&m);
}

static void sum_map_aggregates_and_sorts_like_qsort(void **state)
{
    (void)state;
    const size_t sizes[] = {1, 2, 17, 1000, 200000};
    for (int shape = 0; shape < 5; shape++)
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
            sum3_against_reference(shape, sizes[i]);
}

static void sum_map_refuses_key_zero(void **state)
{
    (void)state;
    store_sum3 m = {0};
    assert_null(store_sum3_at(&m, 0, 1, 2));
    int64_t *s = store_sum3_at(&m, -1, 0, 0); /* negative keys are fine */
    assert_non_null(s);
    *s = 7;
    assert_int_equal(*store_sum3_at(&m, -1, 0, 0), 7);
    assert_int_equal(m.n, 1);
    store_sum3_free(&m);
}

/* Sum-map entries code to the same chunk as the store_agg entries with the same keys and values. */
static void sum_map_chunks_equal_agg_chunks(void **state)
{
    (void)state;
    enum { N = 700 };
    static store_agg_entry a[N];
    static store_sum3_entry s[N];
    static collected got;
    store_chunk_coder c1 = {0}, c2 = {0};
    store_chunk_decoder d = {0};
    for (size_t i = 0; i < N; i++) {
        a[i].k[2] = s[i].k[2] = (int64_t)(i * 3 + (i % 5));
        a[i].sum = s[i].sum = (int64_t)(i % 9 + 1) * 10000000;
    }
    const uint8_t *b1, *b2;
    size_t l1, l2;
    assert_int_equal(store_chunk_encode(&c1, a, N, 2, 1, &b1, &l1), 0);
    assert_int_equal(store_chunk_encode_sum3(&c2, s, N, 1, &b2, &l2), 0);
    assert_int_equal(l1, l2);
    assert_memory_equal(b1, b2, l1);
    got.n = 0;
    assert_int_equal(store_chunk_decode(b2, l2, 1, &d, collect, &got), 0);
    assert_int_equal(got.n, N);
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(got.k0[i], s[i].k[2]);
        assert_int_equal(got.v[i], s[i].sum);
    }
    store_chunk_coder_free(&c1);
    store_chunk_coder_free(&c2);
    store_chunk_decoder_free(&d);
}

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The dictionary's fingerprints are stored (hash31(h1) is a column of every dictionary table):
 * the fused pair must give exactly the two single hashes, and those must not change. */
static void fingerprint_pairs_equal_two_single_hashes_and_stay_stable(void **state)
{
    (void)state;
    assert_true(store_hash64("", 0, 51) == 12731968558023856068ull);
    assert_true(store_hash64("abcdefghij", 10, 61) == 8123980337014243076ull);
    assert_true(store_hash64("0123456789abcdef", 16, 12) == 11403987983361711865ull);
    uint8_t buf[130];
    uint64_t x = 0x2545f4914f6cdd1dull;
    for (size_t i = 0; i < sizeof buf; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        buf[i] = (uint8_t)x;
    }
    for (size_t off = 0; off < 3; off++)
        for (size_t n = 0; n + off <= sizeof buf; n++)
            for (uint64_t seed = 11; seed <= 71; seed += 10) {
                uint64_t h1, h2;
                store_hash64x2(buf + off, n, seed, seed + 1, &h1, &h2);
                assert_true(h1 == store_hash64(buf + off, n, seed));
                assert_true(h2 == store_hash64(buf + off, n, seed + 1));
            }
}

/* The dictionary cache grows a few slots per put (D1-D3 in maps.c): after the put that doubles
 * it the old table is still there, it is gone before the next doubling, and through every step
 * each key ever put (and not cleared) finds its latest value. The oracle is a plain array of
 * every key and value put, checked after each put for a stride of keys and in full at each
 * growth. Keys 0..N-1 have h1 drawn from a small range so probe chains cross the old table's
 * moved and unmoved parts; a quarter of the puts update a key put before. */
static uint64_t dict_h1(uint64_t k)
{
    return (k * 0x9e3779b97f4a7c15ull) >> 44; /* 20 bits: collisions in every table size */
}

static void dict_check(store_dict *d, const int64_t *ids, uint64_t from, uint64_t to, uint64_t step)
{
    for (uint64_t k = from; k < to; k += step) {
        store_dict_entry *e = store_dict_find(d, dict_h1(k), k);
        if (!e)
            fail_msg("key %llu lost (%zu entries, capacity %zu, old %zu moved %zu)",
                     (unsigned long long)k, d->n, d->cap, d->old_cap, d->moved);
        assert_int_equal(e->id, ids[k]);
        assert_int_equal(e->seen, (int32_t)ids[k]);
    }
}

static void dict_grows_a_little_per_put_and_forgets_nothing(void **state)
{
    (void)state;
    enum { N = 300000 };
    int64_t *ids = calloc(N, sizeof *ids);
    assert_non_null(ids);
    store_dict d;
    store_dict_init(&d, N);
    uint64_t x = 88172645463325252ull, nkeys = 0, growths = 0;
    size_t cap = 0;
    for (int64_t put = 1; nkeys < N; put++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint64_t k = (nkeys && x % 4 == 0) ? (x >> 8) % nkeys : nkeys++;
        ids[k] = put;
        assert_non_null(store_dict_put(&d, dict_h1(k), k, put, (int32_t)put));
        if (d.cap != cap) {
            /* The put that doubled it left the old table to move; the last move ended. */
            if (cap >= 1024)
                assert_non_null(d.old);
            assert_true(d.cap == (cap ? cap * 2 : 1024));
            cap = d.cap;
            growths++;
            dict_check(&d, ids, 0, nkeys, 1);
        }
        dict_check(&d, ids, (uint64_t)put % 97, nkeys, 997);
    }
    assert_null(d.old);
    assert_true(growths >= 9);
    assert_int_equal(d.n, N);
    assert_int_equal(d.clears, 0);
    dict_check(&d, ids, 0, N, 1);
    /* One more key clears it (max N), in the middle of nothing; then it is empty and usable. */
    assert_non_null(store_dict_put(&d, dict_h1(N), N, 1, 1));
    assert_int_equal(d.clears, 1);
    assert_int_equal(d.n, 1);
    assert_null(store_dict_find(&d, dict_h1(5), 5));
    /* A clear while the old table is still being moved drops it with everything else. */
    store_dict_free(&d);
    store_dict_init(&d, N);
    for (uint64_t k = 0; k < 1025; k++)
        store_dict_put(&d, dict_h1(k), k, 7, 7);
    assert_non_null(d.old);
    store_dict_clear(&d);
    assert_null(d.old);
    assert_null(store_dict_find(&d, dict_h1(3), 3));
    assert_non_null(store_dict_put(&d, dict_h1(3), 3, 9, 9));
    assert_int_equal(store_dict_find(&d, dict_h1(3), 3)->id, 9);
    store_dict_free(&d);
    free(ids);
}

/* A writer with time to spare doubles a cache before a put must (H2 of sqlite_write.c): due from
 * 7/16 full, never while a growth is still moving and never past the size its max needs; grown
 * early, it still finds every key and the puts that follow do not double it again. */
static void dict_grows_early_when_asked(void **state)
{
    (void)state;
    store_dict d;
    store_dict_init(&d, 4096);
    uint64_t k = 0;
    for (; k < 448 - 1; k++)
        store_dict_put(&d, dict_h1(k), k, (int64_t)k, 0);
    assert_int_equal(d.cap, 1024);
    assert_false(store_dict_room_due(&d)); /* 447 of 1024 */
    store_dict_put(&d, dict_h1(k), k, (int64_t)k, 0);
    k++;
    assert_true(store_dict_room_due(&d)); /* 448: 7/16 */
    assert_int_equal(store_dict_grow_now(&d), 0);
    assert_int_equal(d.cap, 2048);
    assert_non_null(d.old);
    assert_false(store_dict_room_due(&d)); /* moving */
    for (; k < 1024; k++)
        store_dict_put(&d, dict_h1(k), k, (int64_t)k, 0);
    assert_int_equal(d.cap, 2048); /* no doubling at 512: it had room */
    assert_null(d.old);
    for (uint64_t i = 0; i < k; i++)
        assert_int_equal(store_dict_find(&d, dict_h1(i), i)->id, (int64_t)i);
    /* max 4096 needs 8192 slots at most: from there on, never due. */
    for (; k < 4096; k++)
        store_dict_put(&d, dict_h1(k), k, (int64_t)k, 0);
    assert_int_equal(d.cap, 8192);
    assert_false(store_dict_room_due(&d));
    store_dict_free(&d);
}

/* The hash index: every (hash, id) added and not removed is given back for its hash, once, and
 * nothing else is; through growths moved a few slots per add (checked while a move is under
 * way), removals of pairs before and after they moved, and hashes shared by hundreds of ids.
 * The oracle is a sorted list of the pairs. */
typedef struct hpair {
    uint32_t hash, id;
    int live;
} hpair;

static int hpair_cmp(const void *a, const void *b)
{
    const hpair *x = a, *y = b;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void index_matches(const store_hindex *x, const hpair *ps, size_t n)
{
    hpair *live = malloc((n ? n : 1) * sizeof *live);
    uint32_t *got = malloc(1024 * sizeof *got);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (ps[i].live)
            live[m++] = ps[i];
    qsort(live, m, sizeof *live, hpair_cmp);
    assert_int_equal(x->n, m);
    for (size_t i = 0; i < m;) {
        size_t j = i, ng = 0;
        while (j < m && live[j].hash == live[i].hash)
            j++;
        store_hindex_it it = {0};
        uint32_t id;
        while ((id = store_hindex_next(x, live[i].hash, &it))) {
            assert_true(ng < 1024);
            got[ng++] = id;
        }
        qsort(got, ng, sizeof *got, u32_cmp);
        assert_int_equal(ng, j - i);
        for (size_t k = 0; k < ng; k++)
            assert_int_equal(got[k], live[i + k].id);
        i = j;
    }
    /* hashes never added (the top bit set: the pairs' hashes have 31 bits) */
    uint64_t y = 777;
    for (int k = 0; k < 10000; k++) {
        store_hindex_it it = {0};
        assert_int_equal(store_hindex_next(x, (uint32_t)(splitmix(&y) >> 32) | 0x80000000u, &it),
                         0);
    }
    free(got);
    free(live);
}

static void hash_index_gives_back_every_row_of_a_hash_once(void **state)
{
    (void)state;
    enum { N = 300000 };
    hpair *ps = calloc(N, sizeof *ps);
    store_hindex x;
    store_hindex_init(&x, N);
    uint64_t r = 42;
    int checked_moving = 0;
    for (uint32_t i = 0; i < N; i++) {
        uint64_t v = splitmix(&r);
        /* a tenth of the rows share one of 64 hashes */
        uint32_t hash = v % 10 == 0 ? (uint32_t)(v >> 40) % 64 * 7919 : (uint32_t)(v >> 33);
        ps[i] = (hpair){hash, i + 1, 1};
        assert_int_equal(store_hindex_add(&x, hash, i + 1), 0);
        if (i % 3 == 1) { /* the pair before this one, maybe moved since */
            assert_int_equal(store_hindex_remove(&x, ps[i - 1].hash, ps[i - 1].id), 1);
            ps[i - 1].live = 0;
        }
        if (x.old && x.moved > 0 && x.cap >= 65536 && checked_moving < 3) {
            index_matches(&x, ps, i + 1); /* H1, H2 mid-move */
            checked_moving++;
        }
        if (x.old && i % 1000 == 0 &&
            ps[i / 2].live) { /* a pair removed mid-move, maybe not moved yet */
            assert_int_equal(store_hindex_remove(&x, ps[i / 2].hash, ps[i / 2].id), 1);
            ps[i / 2].live = 0;
        }
    }
    assert_int_equal(checked_moving, 3);
    index_matches(&x, ps, N);
    assert_int_equal(store_hindex_remove(&x, ps[0].hash, ps[0].id), 0); /* removed before */
    print_message("hash index: %zu rows in %zu bytes\n", x.n, store_hindex_bytes(&x));
    assert_true(store_hindex_bytes(&x) <= x.n * 24 + (1u << 20));

    /* The limit: the row past it is refused and the index freed; it is empty and usable again. */
    store_hindex_free(&x);
    store_hindex_init(&x, 1000);
    for (uint32_t k = 1; k <= 1000; k++)
        assert_int_equal(store_hindex_add(&x, k * 31, k), 0);
    assert_int_equal(store_hindex_add(&x, 5, 1001), -1);
    assert_int_equal(store_hindex_bytes(&x), 0);
    store_hindex_it it = {0};
    assert_int_equal(store_hindex_next(&x, 31, &it), 0);
    assert_int_equal(store_hindex_add(&x, 31, 1), 0);
    it = (store_hindex_it){0};
    assert_int_equal(store_hindex_next(&x, 31, &it), 1);
    assert_int_equal(store_hindex_next(&x, 31, &it), 0);
    /* ids 0 and 2^32 - 1 are what empty and removed slots hold: refused */
    assert_int_equal(store_hindex_add(&x, 9, 0), -1);
    assert_int_equal(store_hindex_add(&x, 31, 1), 0);
    assert_int_equal(store_hindex_add(&x, 9, UINT32_MAX), -1);
    assert_int_equal(store_hindex_bytes(&x), 0);
    store_hindex_free(&x);

    /* Rows only added (the store's usual case): each growth doubles, so a row costs at most
     * 8 bytes / (3/8) = 21.3 bytes, and 32 while a move is under way. */
    store_hindex_init(&x, SIZE_MAX);
    for (uint32_t k = 1; k <= 1000000; k++) {
        assert_int_equal(store_hindex_add(&x, (uint32_t)(splitmix(&r) >> 33), k), 0);
        assert_true(store_hindex_bytes(&x) <= (size_t)(k < 1024 ? 1024 : k) * 32);
        if (!x.old)
            assert_true(store_hindex_bytes(&x) * 3 <= (size_t)(k < 1024 ? 1024 : k) * 64);
    }
    store_hindex_free(&x);
    free(ps);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(chunks_round_trip_and_refuse_damage),
        cmocka_unit_test(off_cpu_values_take_the_bit_coding_and_round_trip),
        cmocka_unit_test(old_format_blobs_still_decode),
        cmocka_unit_test(malformed_bit_coded_blobs_are_refused),
        cmocka_unit_test(chunk_merge_sums_runs_like_a_table),
        cmocka_unit_test(sum_map_aggregates_and_sorts_like_qsort),
        cmocka_unit_test(sum_map_refuses_key_zero),
        cmocka_unit_test(sum_map_chunks_equal_agg_chunks),
        cmocka_unit_test(hash_index_gives_back_every_row_of_a_hash_once),
        cmocka_unit_test(dict_grows_a_little_per_put_and_forgets_nothing),
        cmocka_unit_test(dict_grows_early_when_asked),
        cmocka_unit_test(fingerprint_pairs_equal_two_single_hashes_and_stay_stable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
