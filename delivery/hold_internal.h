/* The hold's inside, shared by hold.c (taking batches: groups, records, spans, claims) and
 * hold_emit.c (leaving: building one profile per series and bucket). Not a module interface:
 * only those two files include it. Layout and trade-offs: see the top of hold.c. */
#ifndef DELIVERY_HOLD_INTERNAL_H
#define DELIVERY_HOLD_INTERNAL_H

#include "hold.h"

#include <stddef.h>
#include <stdint.h>

/* ---- byte-key intern table ---- */

typedef struct bt {
    uint8_t *blob;
    size_t nblob, capblob;
    uint64_t *off; /* off[id] = start << 24 | len (keys < 16 MiB) */
    uint32_t n, cap;
    uint32_t *slots, nslots; /* id + 1 */
} bt;

const uint8_t *hold_bt_key(const bt *t, uint32_t id, uint32_t *len);
/* Id of key, added when add; UINT32_MAX when absent or out of memory. */
uint32_t hold_bt_get(bt *t, const void *key, size_t len, int add);
size_t hold_bt_bytes(const bt *t);
void hold_bt_free(bt *t);

/* ---- records ---- */

#define NO_SPAN         UINT32_MAX
#define PUSH_GROUPS_MAX 16 /* groups one profile can touch (a ticket holds as many) */

typedef struct rec {
    uint32_t entry, stack, lset, span; /* span: index into group.refs, NO_SPAN = none */
    uint32_t next;                     /* next record of (entry, stack), UINT32_MAX = end */
    int64_t value;
} rec;

/* Two open-addressing tables of record indices (+ 1; 0 = empty) whose keys are read from the
 * records themselves: 4 bytes a slot. At 1 M samples/s a table of full keys was half the hold. */
typedef struct imap {
    uint32_t *slot;
    uint32_t n; /* a power of two, or 0 */
    uint32_t used;
} imap;

typedef struct entry {
    uint32_t tenant;   /* into hold.tenants */
    uint32_t shape;    /* into group.shapes */
    uint32_t nrecords; /* for the stats */
    int64_t period;    /* the first sender's (attach_only profiles carry none) */
} entry;

typedef struct group {
    hold_group_id id;
    int64_t release_at, first_arrival;
    double arrival_ms_sum; /* Σ arrival time (ms) over the observations held: the mean delay */
    uint64_t nobs;
    int pins;
    bt names, stacks, lsets, shapes, ekeys;
    entry *e;
    uint32_t ne, cape;
    sp_span_ref *refs;
    uint32_t nrefs, caprefs;
    bt refkeys;
    rec *r;
    uint32_t nr, capr;
    imap byrec;   /* (entry, stack, lset, span) → record */
    imap bystack; /* (entry, stack) → the newest record of that stack (chain by rec.next) */
    size_t bytes;
} group;

typedef struct span_info {
    uint32_t tenant; /* + 1; 0 = empty slot */
    uint8_t id[8], parent[8], trace[16];
    uint64_t start, end;
    int64_t seen;
    uint8_t known, incomplete;
} span_info;

/* A group id that left, remembered while arrivals could still compute it (H1: no group leaves
 * twice; a second profile with its timestamp would collapse with the first in Pyroscope). */
typedef struct left_id {
    hold_group_id id;
    int64_t until_ns;
} left_id;

#define HOLD_LEFT_MAX 256

struct hold {
    hold_options o;
    group **g;
    uint32_t ng, capg;
    left_id left[HOLD_LEFT_MAX]; /* ring */
    uint32_t nleft, leftpos;
    bt tenants;
    span_info *sp;
    uint32_t nsp, capsp; /* open addressing, capsp a power of two */
    int64_t now;
    hold_stats st;
};

size_t hold_group_bytes(const group *g);
void hold_group_free(group *g);
size_t hold_total_bytes(hold *h);
void hold_note_left(hold *h, hold_group_id id);

#endif
