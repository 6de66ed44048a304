/* libFuzzer target: the store's value chunks (storage-adapter/maps.c), the blobs the SQLite backend
 * reads back from disk for every range and span query. Byte 0 picks the mode:
 *   even  the rest is a blob (byte 0 bit 1: two keys per entry): decoding answers 0 or -1, never
 *         crashes, and what decodes re-encodes and decodes to the same entries;
 *   odd   the rest is a list of (k0, k1, value) int64 triples: encode, decode, same entries;
 *         with byte 0 bit 2 the entries are cut into chunks instead (a new one where k1 is
 *         odd), each coded sorted by k0 unless bit 3 says as they come, and a bucket's merge
 *         of them (store_chunk_merge) must equal a plain sum per k0 of every value.
 * Chunks carry their own lengths (entry count, zstd size, format 3's frame size, format 2/3's
 * bit lengths): a lying length must be refused, not trusted. Blobs of every format (0-3) are
 * reachable from the even mode; seeds bits_* hold formats 2 and 3. */
#include "storage-adapter/chunk.h"
#include "storage-adapter/maps.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz_check.h"

typedef struct got {
    store_agg_entry *v;
    size_t n, cap;
} got;

static int collect(void *ctx, int64_t k0, int64_t k1, int64_t v)
{
    got *g = ctx;
    if (g->n == g->cap) {
        size_t ncap = g->cap ? g->cap * 2 : 64;
        store_agg_entry *p = realloc(g->v, ncap * sizeof *p);
        CHECK(p);
        g->v = p;
        g->cap = ncap;
    }
    store_agg_entry *e = &g->v[g->n++];
    memset(e, 0, sizeof *e);
    e->k[0] = k0;
    e->k[1] = k1;
    e->sum = v;
    return 0;
}

static int same(const got *a, const got *b, int nk)
{
    if (a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i].k[0] != b->v[i].k[0] || (nk == 2 && a->v[i].k[1] != b->v[i].k[1]) ||
            a->v[i].sum != b->v[i].sum)
            return 0;
    return 1;
}

/* Encodes g and checks the blob decodes back to g. */
static void round_trip(store_chunk_coder *enc, store_chunk_decoder *dec, const got *g, int nk)
{
    const uint8_t *blob;
    size_t len;
    CHECK(store_chunk_encode(enc, g->v, g->n, 0, nk, &blob, &len) == 0);
    CHECK(len >= 1 && blob[0] <= 3);
    got back = {0};
    CHECK(store_chunk_decode(blob, len, nk, dec, collect, &back) == 0);
    CHECK(same(g, &back, nk));
    free(back.v);
}

static int by_k0(const void *a, const void *b)
{
    int64_t x = ((const store_agg_entry *)a)->k[0], y = ((const store_agg_entry *)b)->k[0];
    return (x > y) - (x < y);
}

/* g cut into chunks, merged; checked against g sorted and summed per k0 (zero sums left out). */
static void merge_matches_plain_sums(store_chunk_coder *enc, store_chunk_decoder *dec, got *g,
                                     int sorted)
{
    static store_chunk_merge m;
    store_chunk_merge_reset(&m);
    for (size_t from = 0; from < g->n;) {
        size_t to = from + 1;
        while (to < g->n && !(g->v[to].k[1] & 1))
            to++;
        if (sorted)
            qsort(g->v + from, to - from, sizeof *g->v, by_k0);
        const uint8_t *blob;
        size_t len;
        CHECK(store_chunk_encode(enc, g->v + from, to - from, 0, 1, &blob, &len) == 0);
        CHECK(store_chunk_merge_add(&m, blob, len, dec) == 0);
        from = to;
    }
    store_sum3_entry *out = malloc((m.n ? m.n : 1) * sizeof *out);
    CHECK(out);
    int64_t n = store_chunk_merge_sum(&m, 1, 2, out);
    CHECK(n >= 0);
    if (g->n)
        qsort(g->v, g->n, sizeof *g->v, by_k0);
    size_t at = 0;
    for (size_t i = 0; i < g->n;) {
        uint64_t sum = 0;
        size_t j = i;
        for (; j < g->n && g->v[j].k[0] == g->v[i].k[0]; j++)
            sum += (uint64_t)g->v[j].sum;
        if (sum) {
            CHECK(at < (size_t)n);
            CHECK(out[at].k[0] == 1 && out[at].k[1] == 2 && out[at].k[2] == g->v[i].k[0]);
            CHECK(out[at].sum == (int64_t)sum);
            at++;
        }
        i = j;
    }
    CHECK(at == (size_t)n);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 1 << 16)
        return 0;
    static store_chunk_coder enc;
    static store_chunk_decoder dec;
    int nk = data[0] & 2 ? 2 : 1;
    got g = {0};
    if (!(data[0] & 1)) {
        int rc = store_chunk_decode(data + 1, size - 1, nk, &dec, collect, &g);
        CHECK(rc == 0 || rc == -1);
        if (rc == 0)
            round_trip(&enc, &dec, &g, nk);
    } else {
        for (size_t off = 1; off + 24 <= size; off += 24) {
            int64_t t[3];
            memcpy(t, data + off, sizeof t);
            collect(&g, t[0], data[0] & 4 ? t[1] : nk == 2 ? t[1] : 0, t[2]);
        }
        if (data[0] & 4)
            merge_matches_plain_sums(&enc, &dec, &g, !(data[0] & 8));
        else
            round_trip(&enc, &dec, &g, nk);
    }
    free(g.v);
    return 0;
}
