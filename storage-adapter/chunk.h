/* Value chunks: a (series, bucket)'s sums per stack coded for the disk, and a bucket's chunks
 * merged into one.
 *
 * Used by the SQLite backend's writer (coding what a transaction wrote, closing buckets) and its
 * readers (decoding what a query reads). No SQLite, no disk, no locking: a coder, decoder or merge
 * is owned by one thread at a time (the writer, or the thread running one query).
 * Errors: -1 malformed blob (decode, merge add), -2 or -1 out of memory as each function says. */
#ifndef STORE_CHUNK_H
#define STORE_CHUNK_H

#include "maps.h"

#include <stddef.h>
#include <stdint.h>

/* ---- value chunks: sorted (key, key, value) lists coded for the disk ----------------------------
 * A chunk holds n entries sorted by (k0, k1) (nk = 1: k0 only). Coded column by column so that
 * zstd finds the repetition: varint n, varint unit (the gcd of the values: CPU samples are
 * multiples of the period), then k0 as zigzag deltas, then (nk = 2) k1 as zigzag deltas from the
 * previous entry's k1 when k0 repeats and as itself when it changes, then the values v / unit
 * zigzagged, in one of two ways. Blob = one format byte, then:
 *   0  that coding with the values as varints;
 *   1  varint length of format 0's bytes, their zstd frame;
 *   2  that coding with the values as bit lengths (one byte each, 0..64), then the values
 *      without their leading 1 bit packed least significant bit first, exactly as many bytes
 *      as the lengths need;
 *   3  varint length of format 2's bytes up to the bit lengths, varint size of their zstd frame,
 *      the frame, then the packed bits (noise that zstd would only flatten its tables with).
 * The encoder picks by the values' mean bit length (varints under 8, bits from 16, between both
 * and the smaller blob): counts and periods take 0/1, off-CPU nanoseconds 2/3. Formats 0 and 1
 * are what files written before schema 7 hold. */
typedef struct store_chunk_coder {
    void *zc;     /* ZSTD_CCtx, made on first use */
    uint8_t *raw; /* scratch */
    size_t raw_cap;
    uint8_t *out; /* the varint candidate */
    size_t out_cap;
    uint8_t *bits; /* format 2's packed values */
    size_t bits_cap;
    uint8_t *alt; /* the bit-packed candidate */
    size_t alt_cap;
} store_chunk_coder;

void store_chunk_coder_free(store_chunk_coder *c);
/* Codes entries e[0..n) taking keys from e[i].k[key0] (and k[key0 + 1] when nk = 2) and values
 * from e[i].sum. *blob points into the coder (valid until its next use). -1 on allocation
 * failure. */
int store_chunk_encode(store_chunk_coder *c, const store_agg_entry *e, size_t n, int key0, int nk,
                       const uint8_t **blob, size_t *len);
/* The same coding of sum-map entries: key e[i].k[2], value e[i].sum (nk = 1). compress 0: no
 * zstd (formats 0 and 2 only), for a chunk that will be merged and coded again soon. */
int store_chunk_encode_sum3(store_chunk_coder *c, const store_sum3_entry *e, size_t n, int compress,
                            const uint8_t **blob, size_t *len);
/* Whether a chunk of at least `len` bytes went through zstd (formats 1 and 3), or was too small
 * for zstd to pay: 0 for a plain chunk that compression might shrink. */
int store_chunk_packed(const uint8_t *blob, size_t len);
/* Decoding state reused across chunks (a zstd context and scratch); zero-initialised. */
typedef struct store_chunk_decoder {
    void *zd; /* ZSTD_DCtx, made on first use */
    uint8_t *scratch;
    size_t cap;
} store_chunk_decoder;

void store_chunk_decoder_free(store_chunk_decoder *d);
/* Decodes a blob and calls fn for every entry (k1 = 0 when nk = 1). 0, -1 when the blob is
 * malformed, -2 on allocation failure, or the first non-zero answer of fn. */
int store_chunk_decode(const uint8_t *blob, size_t len, int nk, store_chunk_decoder *d,
                       int (*fn)(void *ctx, int64_t k0, int64_t k1, int64_t v), void *ctx);

/* ---- chunk merge: one bucket's chunks summed per key
 * --------------------------------------------- Each chunk a writer codes is sorted by key (nk =
 * 1), so a bucket's chunks are sorted runs: they are merged run by run (no hashing, no sort) into
 * one sorted list with one sum per key. A run that is not sorted (a chunk no writer of ours made,
 * still decodable) makes the whole list be sorted instead: the answer is the same, only slower. */
typedef struct store_kv_run {
    int64_t k, v;
} store_kv_run;

typedef struct store_chunk_merge {
    store_kv_run *e, *tmp; /* entries of every run added, in order; merge scratch */
    size_t n, cap, tmp_cap;
    size_t *at; /* where each run starts in e */
    size_t nruns, at_cap;
    int unsorted; /* a run's keys went down */
} store_chunk_merge;

void store_chunk_merge_free(store_chunk_merge *m);
void store_chunk_merge_reset(store_chunk_merge *m); /* empties, keeps the memory */
/* Decodes a chunk (nk = 1) as one more run. 0, -1 when it is malformed (what it added stays:
 * the caller drops the whole merge), -2 on allocation failure. */
int store_chunk_merge_add(store_chunk_merge *m, const uint8_t *blob, size_t len,
                          store_chunk_decoder *d);
/* Sums the runs per key into out (room for m->n entries) as (k0, k1, key) → sum, in key order
 * (signed, as store_sum3_sorted orders k[2]), keys whose sum is 0 left out (sums wrap, as the
 * writer's do); returns how many. -1 on allocation failure. The runs are consumed: reset before
 * adding again. */
int64_t store_chunk_merge_sum(store_chunk_merge *m, int64_t k0, int64_t k1, store_sum3_entry *out);

#endif
