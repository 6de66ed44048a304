/* The internal currency: a pprof profile plus the per-sample facts pprof has no field for.
 *
 * Every ingest path (OTLP profiles, Pyroscope /ingest and Push) ends as sp_profile values; the
 * correlator attaches span ids to their samples; the store writes them; the query side reads back
 * the same shapes. The layout mirrors perftools.profiles.Profile (ids are 1-based, 0 = none, index
 * 0 of every table is unused) so conversion to and from pprof is a copy, not a translation.
 *
 * Memory: everything a profile points to lives in the arena of the batch that carries it.
 * Strings are indices into `strings` (pprof's string_table; strings[0] == "").
 */
#ifndef SP_PROFILE_H
#define SP_PROFILE_H

#include "arena.h"

#include <stddef.h>
#include <stdint.h>

typedef struct sp_label {
    uint32_t key; /* string index */
    uint32_t str; /* string index, 0 when numeric */
    int64_t num;
    uint32_t num_unit; /* string index, 0 = none */
} sp_label;

typedef struct sp_function {
    uint32_t name, system_name, filename; /* string indices */
    int64_t start_line;
    /* 1: no sender's symbol; a converter named it with sp_frame_name() from the one location that
     * uses it (the store then need not compare the name to know it says nothing new). Name 0
     * (and system_name 0): the name is left to readers, who make it with sp_location_names()
     * (a bare location's made-up name shorter than SP_FRAME_NAME_MAX; otlp/convert.c). */
    uint8_t made_up;
} sp_function;

typedef struct sp_line {
    uint32_t function_id; /* into functions, 0 = none */
    int64_t line;
    int64_t column;
} sp_line;

typedef struct sp_location {
    uint32_t mapping_id; /* into mappings, 0 = none */
    /* 1: the sender gave no lines; a converter added one, line 0, naming its made-up function
     * (sp_function.made_up), so a reader that knows the rule need not read the line. */
    uint8_t bare;
    uint64_t address;
    sp_line *lines; /* innermost (inlined callee) first, as in pprof */
    uint32_t nlines;
    uint32_t
        frame_type; /* string index: "native", "kernel", "jvm", ... (OTLP profile.frame.type) */
} sp_location;

/* A location's identity as 128 bits, the same for the same content in any request (see
 * sp_location_prints()). */
typedef struct sp_print {
    uint64_t a, b;
} sp_print;

typedef struct sp_mapping {
    uint64_t memory_start, memory_limit, file_offset;
    uint32_t filename, build_id; /* string indices */
    uint8_t has_functions, has_filenames, has_line_numbers, has_inline_frames;
} sp_mapping;

typedef struct sp_span_ref {
    uint8_t trace_id[16];
    uint8_t span_id[8];
} sp_span_ref;

/* Who a process is besides its pid, so equal pids on two hosts never mix: hashes
 * (sp_ident_hash) of its resource's host.id, host.name, k8s.pod.uid and container.id, in that
 * order (sp_ident_attrs); 0 = not given. Two sides are the same process when their pids are equal
 * and every key both sides give is equal. */
#define SP_IDENT_KEYS 4
typedef struct sp_proc_ident {
    uint64_t key[SP_IDENT_KEYS];
} sp_proc_ident;

extern const char *const sp_ident_attrs[SP_IDENT_KEYS];

/* Never 0, so 0 can mean "not given". */
uint64_t sp_ident_hash(const char *s, size_t n);

typedef struct sp_sample {
    /* Eight-byte fields first, then four-byte ones, then the byte-aligned link: 128 bytes, two
     * cache lines, where the order of meaning left 136 (padding after nobs, nspans, nlabels and
     * the link). Every producer initialises by field name, so the order is free. */
    uint32_t *location_ids; /* leaf first */
    int64_t value; /* the sample's total in the profile's sample type (e.g. CPU nanoseconds) */
    /* Per-observation detail when the sender had it: nobs timestamps (UTC ns) and, parallel to
     * them, the value each one contributed (already scaled like `value`). timestamps NULL = no
     * detail; values NULL = every observation contributed an equal share of `value`. */
    uint64_t *timestamps;
    int64_t *values;
    int64_t pid, tid;           /* process.pid / thread.id; 0 = unknown */
    const sp_proc_ident *ident; /* the rest of the process identity; NULL = none given */
    /* Spans this sample was attached to by the correlator (explicit link first). */
    sp_span_ref *spans;
    sp_label *labels; /* the sample's other attributes */
    uint32_t nlocations;
    /* The list's entry in the profile's stack_prints, when the producer made one (0 = none;
     * location lists shared by samples share the entry). */
    uint32_t stack;
    uint32_t nobs;
    uint32_t thread_name; /* string index */
    uint32_t nspans;
    uint32_t nlabels;
    /* Explicit link from the sender (OTLP link_index, pprof span_id/trace_id labels). */
    uint8_t has_link;
    sp_span_ref link;
} sp_sample;
_Static_assert(sizeof(void *) != 8 || sizeof(sp_sample) == 128, "sp_sample: two cache lines");

typedef struct sp_kv {
    const char *name, *value;
} sp_kv;

typedef struct sp_profile {
    /* Pyroscope profile type id: name:sample_type:sample_unit:period_type:period_unit,
     * e.g. "process_cpu:cpu:nanoseconds:cpu:nanoseconds". */
    const char *type_id;
    const char *name;                                            /* __name__, e.g. "process_cpu" */
    uint32_t sample_type, sample_unit, period_type, period_unit; /* string indices */
    int64_t period;
    int64_t time_nanos, duration_nanos;
    const char **strings;
    uint32_t *string_lens;
    uint32_t nstrings;
    sp_function *functions; /* [0] unused */
    uint32_t nfunctions;
    sp_location *locations; /* [0] unused */
    uint32_t nlocations;
    /* [nlocations] the locations' prints (sp_location_prints()), or NULL when the producer made
     * none: a store may find a location by its print instead of resolving its content. */
    const sp_print *location_prints;
    /* [nstack_prints] the prints of the samples' location lists (sp_stack_print() over
     * location_prints), indexed by sp_sample.stack, or NULL: a store may find a whole stack by
     * its print instead of resolving each of its locations. Entry k is valid once a sample
     * names it; a producer may still be filling others (never one a sample handed on names). */
    const sp_print *stack_prints;
    uint32_t nstack_prints;
    sp_mapping *mappings; /* [0] unused */
    uint32_t nmappings;
    sp_sample *samples;
    uint32_t nsamples;
    /* Series labels, sorted by name, unique: __name__, service_name, resource and scope
     * attributes (dots turned into underscores). */
    sp_kv *series;
    uint32_t nseries;
    /* Set by the correlator for samples that were stored earlier and only now found their span
     * (the span arrived after the profile): the store records their span attachments and adds
     * nothing to the profile's own totals. */
    uint8_t attach_only;
    /* The sender named no service (no service.name: the eBPF profiler): service_name is
     * unknown_service[:<executable>] and the correlator may replace it with the service the
     * process's spans carry (a sender's own service.name is never replaced). */
    uint8_t service_unknown;
    /* What the producer learnt of its samples while making them, so that later stages need no
     * pass of their own over tens of thousands of samples (each such pass is cache misses):
     * obs_bound >= the sum over samples of (timestamps && nobs ? nobs : 1), newest >= every
     * timestamp read as int64_t (INT64_MIN when none). Valid only while facts_known; a stage
     * that changes samples keeps both bounds true (splitting a sample's observations does) or
     * clears it. 0 (the zeroed profile of a producer that does not fill them): passes count. */
    uint8_t facts_known;
    uint64_t obs_bound;
    int64_t newest;
} sp_profile;

typedef struct sp_span {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t parent_span_id[8]; /* zero = root */
    const char *service, *name;
    uint64_t start_ns, end_ns;
    int64_t pid, tid; /* process.pid (resource) and thread.id (span attribute); 0 = unknown */
    sp_proc_ident ident;
    /* Everything else the sender said of the span (attributes, kind, status, events, links,
     * resource and scope attributes) as otlp/span_extras.h codes it; the store splits it only
     * along its ResourceSpans framing (sqlite_extras.c) and reads it back byte for byte. NULL =
     * nothing kept (spans stored before schema 6). */
    const uint8_t *extras;
    uint32_t extras_len;
} sp_span;

/* What one request carries to the next stage; everything lives in `arena`. */
typedef struct sp_batch {
    const char *tenant;
    sp_arena *arena;
    sp_profile **profiles;
    size_t nprofiles;
    sp_span *spans;
    size_t nspans;
    /* The request's message as received (an OTLP ExportTraceServiceRequest, decompressed), for a
     * delivery that forwards it unchanged; NULL when the batch did not come from OTLP traces. */
    const uint8_t *raw_traces;
    size_t raw_traces_len;
} sp_batch;

/* Sample values come from the wire: scaling and summing them saturates instead of overflowing. */
static inline int64_t sp_sat_mul(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_mul_overflow(a, b, &r))
        return (a < 0) != (b < 0) ? INT64_MIN : INT64_MAX;
    return r;
}

static inline int64_t sp_sat_add(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b < 0 ? INT64_MIN : INT64_MAX;
    return r;
}

/* The one name of a frame without a symbol, everywhere it is shown (flame graphs, pprof):
 * "<frame type> 0x<address> <mapping file basename>", e.g. "native 0x9a3f0 libc.so.6"; unknown
 * parts are left out, and with nothing known it is "unknown". Never empty. Returns buf. */
const char *sp_frame_name(char *buf, size_t n, const char *frame_type, uint64_t address,
                          const char *mapping_file);

/* sp_frame_name() from its parts measured: frame_type[0..type_len) and the mapping file's
 * basename[0..base_len) (what sp_frame_name() takes from a path: after its last '/', unless that
 * ends it; both as strlen() measures). Writes what sp_frame_name() writes and returns its length.
 * For a caller that names many frames of few types and mappings (the OTLP converter). */
size_t sp_frame_name_parts(char *buf, size_t n, const char *frame_type, size_t type_len,
                           uint64_t address, const char *base, size_t base_len);

/* The length of what sp_frame_name_parts() writes given room for it. */
size_t sp_frame_name_len(size_t type_len, uint64_t address, size_t base_len);

/* The basename sp_frame_name() shows of mapping_file (NULL for none or ""). */
const char *sp_frame_basename(const char *mapping_file);

#define SP_FRAME_NAME_MAX 160 /* room for sp_frame_name() wherever a location is named */

/* The names location loc of p shows as, innermost first: each line's function name, and when no
 * line has one, the made-up name sp_frame_name() writes to buf. Every reader of held or waiting
 * stacks (the correlator, the Pyroscope hold) names frames by this one rule, so the stacks they
 * compare agree. Fills name[0..) and, when len is not NULL, len[0..); returns how many (at most
 * max; 0 for location 0 or out of range). */
uint32_t sp_location_names(const sp_profile *p, uint32_t loc, const char **name, uint32_t *len,
                           uint32_t max, char buf[SP_FRAME_NAME_MAX]);

/* Prints of p's locations: out[i] for location i (out[0] zero), in arena memory. A print covers
 * everything a location is stored by: its mapping's file and build id, its address, frame type
 * and bare flag, and per line the line number and its function's name, system name, file, start
 * line and made_up flag (a made-up function's name is by its contract the location's own
 * content, so it is not read); not the column, which no store keeps, nor mapping ranges. Two
 * locations with equal prints thus have equal stored content, in any request: the store trusts
 * the print as it trusts its own 128-bit content hashes (two 64-bit lanes of a non-keyed hash;
 * a collision of both is as unlikely as one of those). Computed once per request in the worker
 * (about 15 ns a location), so the single store writer skips keying each location again.
 * Reads p's tables only; returns 0, or SP_ETOOBIG when the arena's budget is spent (*out NULL). */
int sp_location_prints(const sp_profile *p, sp_arena *a, sp_print **out);

/* The print of a location list: its locations' prints (lp, indexed by location id) folded in
 * order, skipping ids 0 and ids at or past nlp (the entries a store skips too), and the count
 * of those folded. Equal prints mean lists of locations with equal prints in the same order,
 * so equal stored stacks, in any request; the order matters (leaf first). Pure; no allocation. */
sp_print sp_stack_print(const sp_print *lp, uint32_t nlp, const uint32_t *ids, uint32_t n);

/* Sets p's series labels: __name__ = name plus labels (any __name__ among them is replaced),
 * sorted by name, in arena memory (the strings are not copied). SP_ETOOBIG past the budget. */
int sp_profile_set_series(sp_profile *p, sp_arena *a, const char *name, const sp_kv *labels,
                          uint32_t nlabels);

/* Appends p to b->profiles (growing the array in b->arena); SP_ETOOBIG past the arena budget. */
int sp_batch_add_profile(sp_batch *b, sp_profile *p);

#endif
