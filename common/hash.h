/* In-memory hashing of byte strings for the hash tables of one process (interning, memos).
 *
 * Eight bytes at a time: names and stacks are hashed on every request, and byte-wise FNV showed
 * in the ingest profile (issue 19). Not for anything persisted or compared across versions (the
 * store keeps its own, storage-adapter/maps.h) and not for untrusted keys an attacker could aim
 * at one chain: tables that take request content bound their probes by their load factor and
 * their size by the request's budget. Pure functions: any thread.
 */
#ifndef SP_HASH_H
#define SP_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint64_t sp_hash64(const void *p, size_t n, uint64_t h)
{
    const uint8_t *b = p;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, b, 8);
        h = (h ^ w) * 0x9e3779b97f4a7c15ull;
        h ^= h >> 29;
        b += 8;
        n -= 8;
    }
    uint64_t w = 0;
    if (n)
        memcpy(&w, b, n);
    h = (h ^ w ^ (uint64_t)n << 56) * 0xbf58476d1ce4e5b9ull;
    return h ^ h >> 31;
}

#endif
