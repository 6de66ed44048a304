/* libFuzzer target: the store's value chunks (storage-adapter/maps.c), the blobs the SQLite backend
 * reads back from disk for every range and span query. Byte 0 picks the mode:
 *   even  the rest is a blob (byte 0 bit 1: two keys per entry): decoding answers 0 or -1, never
 *         crashes, and what decodes re-encodes and decodes to the same entries;
 *   odd   the rest is a list of (k0, k1, value) int64 triples: encode, decode, same entries.
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
            collect(&g, t[0], nk == 2 ? t[1] : 0, t[2]);
        }
        round_trip(&enc, &dec, &g, nk);
    }
    free(g.v);
    return 0;
}
