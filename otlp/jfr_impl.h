/* Internals of the JFR parser (otlp/jfr.c, jfr_wire.c, jfr_pool.c, jfr_build.c, jfr_names.c);
 * callers include otlp/jfr.h.
 *
 * The format, as the JDK writes and reads it (src/jdk.jfr: ChunkHeader.java, ChunkParser.java,
 * MetadataReader.java, ParserFactory.java, RecordingInput.java) and async-profiler writes it
 * (src/flightRecorder.cpp, src/jfrMetadata.cpp):
 *
 *   chunk    68-byte header (big-endian): "FLR\0", u16 major (1 or 2), u16 minor, u64 chunk
 *            size, u64 constant pool offset, u64 metadata offset, u64 start nanos (UTC),
 *            u64 duration nanos, u64 start ticks, u64 ticks per second, u8 file state
 *            (0 = finished), u16 reserved, u8 flags.
 *            Then events up to the chunk size; offsets are from the chunk's start.
 *   event    varint size (of the whole event, this field included), varint type id, then the
 *            type's fields in metadata order. Type 0 is the metadata event, type 1 a checkpoint.
 *   varint   the JDK's "compressed integer": LEB128, 7 bits a byte, low first; the 9th byte
 *            carries 8 full bits. int, long, short and char use it (an int of -1 is 5 bytes);
 *            boolean and byte are one raw byte; float and double raw big-endian 4 and 8 bytes.
 *   string   u8 encoding: 0 null, 1 "", 2 varint key into the java.lang.String pool, 3 varint
 *            length + UTF-8 bytes, 4 varint length + that many varint UTF-16 code units,
 *            5 varint length + Latin-1 bytes.
 *   metadata size, type 0, start, duration, metadata id, then varint n and n strings, then an
 *            element tree: varint name (string index), varint n + n (key, value) string index
 *            pairs, varint n children. root > metadata > class (id, name, superType) > field
 *            (name, class = type id, constantPool = "true", dimension = "1" for arrays);
 *            annotations, settings and root > region are skipped.
 *   field    constantPool: a varint key into that type's pool. Otherwise the value inline:
 *            a primitive, or each field of the composite type in order (jdk.types.StackFrame in
 *            a stack trace). Arrays: varint count, then the elements.
 *   checkpoint  size, type 1, start, duration, varint delta to the previous checkpoint (0 for
 *            the first; the header points at the last), u8 flags, varint pool count, then per
 *            pool: varint type id, varint count, count × (varint key, value of that type).
 */
#ifndef OTLP_JFR_IMPL_H
#define OTLP_JFR_IMPL_H

#include "jfr.h"
#include "../common/arena.h"
#include "../common/strtab.h"

#include <stdint.h>
#include <string.h>

#define JFR_HEADER_SIZE 68
#define JFR_MAX_DEPTH   16 /* nesting of metadata elements and of inline composite values */

/* ---------- bytes ---------- */

typedef struct jfr_rd {
    const uint8_t *base; /* data[0]: messages give offsets from the start of the input */
    const uint8_t *p, *end;
} jfr_rd;

static inline size_t jfr_off(const jfr_rd *r)
{
    return (size_t)(r->p - r->base);
}

static inline size_t jfr_left(const jfr_rd *r)
{
    return (size_t)(r->end - r->p);
}

/* UTF-8 text, not NUL-terminated; points into the input or a scratch arena. */
typedef struct jfr_str {
    const char *s;
    uint32_t n;
} jfr_str;

static inline int jfr_str_is(jfr_str a, const char *lit)
{
    size_t n = strlen(lit);
    return a.n == n && memcmp(a.s, lit, n) == 0;
}

/* ---------- maps ---------- */

/* Every hash here is keyed with a seed the sender cannot know (jfr_seed: addresses and the
 * clock), because keys and fields come from the input: with a fixed hash a crafted recording could
 * put every pool key or sample in one probe chain and turn the parse quadratic. */
static inline uint64_t jfr_fmix(uint64_t x) /* MurmurHash3's 64-bit finalizer */
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

/* Folds v into hash h (start from a seed). */
static inline uint64_t jfr_mix(uint64_t h, uint64_t v)
{
    return jfr_fmix(h ^ v) + 0x9E3779B97F4A7C15ull;
}

uint64_t jfr_seed(const void *salt);

/* uint64 key → nonzero uint32 value, open addressing, growing in an arena. */
typedef struct jfr_map {
    uint64_t *keys;
    uint32_t *vals; /* 0 = empty slot */
    uint32_t cap, n;
    uint64_t seed; /* taken when the map first grows */
} jfr_map;

uint32_t jfr_map_get(const jfr_map *m, uint64_t key);
/* Sets key → val (val != 0), replacing an existing value. -1 when the arena is exhausted. */
int jfr_map_put(jfr_map *m, sp_arena *a, uint64_t key, uint32_t val);

/* Ids (nonzero) indexed by a keyed 64-bit hash of what they stand for; the caller compares. */
typedef struct jfr_set {
    uint32_t *ids; /* 0 = empty */
    uint32_t *h32; /* hash of each slot's id, for growing and quick rejects */
    uint32_t cap, n;
} jfr_set;

/* Walks the ids stored under hash h: start with *slot = UINT32_MAX, call until it returns 0. */
uint32_t jfr_set_next(const jfr_set *s, uint64_t h, uint32_t *slot);
int jfr_set_add(jfr_set *s, sp_arena *a, uint64_t h, uint32_t id);

/* ---------- metadata ---------- */

enum jfr_kind {
    JK_COMPOSITE,
    JK_BOOLEAN,
    JK_BYTE,
    JK_CHAR,
    JK_SHORT,
    JK_INT,
    JK_LONG,
    JK_FLOAT,
    JK_DOUBLE,
    JK_STRING,
};

typedef struct jfr_field {
    jfr_str name;
    uint64_t type_id;
    uint32_t type; /* index into jfr_meta.classes */
    uint8_t cp, array;
} jfr_field;

typedef struct jfr_class {
    uint64_t id;
    jfr_str name;
    uint8_t kind;
    jfr_field *fields;
    uint32_t nfields;
} jfr_class;

/* The types a parse looks for, by name. */
enum jfr_known {
    T_STRING,
    T_SYMBOL,
    T_CLASS,
    T_METHOD,
    T_STACKTRACE,
    T_STACKFRAME,
    T_THREAD,
    T_FRAMETYPE,
    T_THREADSTATE,
    T_EXEC,
    T_WALL,
    T_TLAB_NEW,
    T_TLAB_OUT,
    T_ALLOC_SAMPLE,
    T_LIVE,
    T_MONITOR,
    T_PARK,
    T_MALLOC,
    T_SETTING,
    T_JVMINFO,
    T_NKNOWN
};

extern const char *const jfr_known_names[T_NKNOWN];

typedef struct jfr_meta {
    jfr_class *classes;
    uint32_t nclasses;
    jfr_map by_id;            /* type id → index + 1 */
    uint32_t known[T_NKNOWN]; /* class index + 1, 0 = absent */
} jfr_meta;

/* ---------- values ---------- */

enum { JV_NONE, JV_INT, JV_STR, JV_STRREF };

/* One decoded field: integers (and constant pool keys) in i, strings in s; JV_STRREF is a key
 * (in i) into the java.lang.String pool. */
typedef struct jfr_val {
    int64_t i;
    jfr_str s;
    uint8_t kind;
} jfr_val;

#define JFR_NOSLOT 0xff
#define JFR_SLOTS  16

/* Which fields of a class a caller wants, and where: slot_of[field] is a slot index or
 * JFR_NOSLOT. Built per chunk from the metadata; a field whose shape is not the expected one is
 * left unbound (read and skipped), so a changed field never feeds garbage into a slot. */
typedef struct jfr_bind {
    const jfr_class *cls; /* NULL when the type is absent */
    uint8_t *slot_of;
    uint8_t present[JFR_SLOTS];
} jfr_bind;

/* ---------- pools ---------- */

typedef struct jfr_frame {
    uint64_t method, type;
    int32_t line;
} jfr_frame;

typedef struct jfr_stack {
    uint32_t first, n; /* into jfr_pools.frames */
    uint8_t truncated;
} jfr_stack;

typedef struct jfr_method {
    uint64_t cls, name;
} jfr_method;

typedef struct jfr_thread {
    int64_t os_tid;
    jfr_val java_name, os_name;
} jfr_thread;

/* A growable array of fixed-size items in the chunk arena, with a key index. */
typedef struct jfr_pool {
    jfr_map index; /* key → item + 1 */
    void *items;
    uint32_t n, cap, size;
} jfr_pool;

typedef struct jfr_pools {
    jfr_pool strings, symbols; /* jfr_val */
    jfr_pool classes;          /* uint64_t: the name's symbol key */
    jfr_pool methods;          /* jfr_method */
    jfr_pool stacks;           /* jfr_stack */
    jfr_pool threads;          /* jfr_thread */
    jfr_pool frame_types;      /* jfr_val */
    jfr_pool thread_states;    /* jfr_val */
    jfr_frame *frames;
    uint32_t nframes, capframes;
    uint32_t entries; /* all entries read in this chunk, for max_pool_entries */
} jfr_pools;

/* ---------- the parse ---------- */

typedef struct jfr_ctx {
    const uint8_t *data;
    size_t len;
    sp_err *err;
    sp_arena *out;      /* the caller's: everything in the result */
    sp_arena *work;     /* lives for the whole parse: indices across chunks */
    sp_arena *chunk;    /* reset after each chunk: metadata, pools, caches */
    otlp_jfr_options o; /* defaults filled in */
    /* the current chunk */
    size_t chunk_off, chunk_size;
    uint64_t start_nanos, start_ticks, ticks_per_sec;
    jfr_meta meta;
    jfr_pools pools;
    otlp_jfr_result *res; /* counters */
} jfr_ctx;

/* jfr_wire.c */
int jfr_varint_slow(jfr_ctx *c, jfr_rd *r, uint64_t *v, const char *what);

/* A compressed integer (RecordingInput.readLong): what names it in the error message. */
static inline int jfr_varint(jfr_ctx *c, jfr_rd *r, uint64_t *v, const char *what)
{
    const uint8_t *p = r->p;
    if (r->end - p < 9)
        return jfr_varint_slow(c, r, v, what);
    uint64_t x = 0;
    for (int i = 0; i < 8; i++) {
        uint8_t b = p[i];
        x |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            r->p = p + i + 1;
            *v = x;
            return 0;
        }
    }
    *v = x | (uint64_t)p[8] << 56;
    r->p = p + 9;
    return 0;
}

/* Reads a string; with out != NULL keeps it (Latin-1 and UTF-16 turned into UTF-8 in the chunk
 * arena), else skips it. */
int jfr_string(jfr_ctx *c, jfr_rd *r, jfr_val *out);
/* Reads one value of field f (an array in full); with out != NULL keeps an integer, key or
 * string (arrays and composites are skipped either way). */
int jfr_field_read(jfr_ctx *c, jfr_rd *r, const jfr_field *f, jfr_val *out, int depth);
/* Reads every field of an object of class k, storing the bound ones in vals[slot]. */
int jfr_object_read(jfr_ctx *c, jfr_rd *r, const jfr_class *k, const jfr_bind *b, jfr_val *vals,
                    int depth);
int jfr_metadata_read(jfr_ctx *c, size_t meta_off);
/* Binds the named fields of known type t to slots 0..n-1 (NULL names are skipped); want[i] is
 * the field's expected shape: 'i' an integer, 'r' a constant pool key, 's' a string, 'a' an
 * array of composites. An absent type leaves b->cls NULL. SP_ETOOBIG past the budget. */
int jfr_bind_fields(jfr_ctx *c, jfr_bind *b, enum jfr_known t, const char *const *names,
                    const char *want, int n);

/* jfr_pool.c */
int jfr_pools_read(jfr_ctx *c, size_t cp_off);
/* The item for key in pool p, or NULL. */
const void *jfr_pool_get(const jfr_pool *p, uint64_t key);
/* The text of a string value, following a JV_STRREF into the String pool; "" when unknown. */
jfr_str jfr_text(const jfr_ctx *c, const jfr_val *v);

/* jfr_names.c */
/* Writes s to out (room for s.n bytes) as Pyroscope shows it: JVM-generated class names merged
 * as jfr-parser's mergeJVMGeneratedClasses does; returns the length written. */
size_t jfr_name_merge(jfr_str s, char *out);
/* Copies s to out (room for s.n bytes) with every byte that is not part of valid UTF-8, and every
 * NUL, replaced by '?', so names are safe as C strings, JSON and protobuf strings; returns s.n. */
size_t jfr_utf8_clean(jfr_str s, char *out);
int jfr_utf8_valid(jfr_str s);

/* ---------- the output (jfr_build.c) ---------- */

/* What a sample event adds to; the profiles of a kind are its value columns. */
enum jfr_sample_kind {
    K_CPU,
    K_WALL,
    K_TLAB_NEW,
    K_TLAB_OUT,
    K_ALLOC_SAMPLE,
    K_LIVE,
    K_LOCK,
    K_PARK,
    K_MALLOC,
    K_N
};

typedef struct jfr_loc {
    uint32_t func;
    int32_t line;
    uint32_t ft;
} jfr_loc;

typedef struct jfr_stackrec {
    uint32_t *ids; /* in the output arena: sp_sample.location_ids */
    uint32_t n;
} jfr_stackrec;

/* A sample being summed: its key (kind down to trace_lo), then its totals. */
typedef struct jfr_agg {
    uint64_t ctx, span, span_name, trace_hi, trace_lo;
    int64_t tid;
    uint32_t stack, tname, kind;
    uint32_t nobs;
    int64_t sum[2], first[2];
    uint8_t differ[2];
} jfr_agg;

typedef struct jfr_obs {
    uint32_t agg;
    uint64_t ts;
    int64_t v[2];
} jfr_obs;

#define JFR_OBS_BLOCK 16384u
#define JFR_MISSING   UINT32_MAX /* cached "not in this chunk's pools" */

typedef struct jfr_build {
    jfr_ctx c;
    sp_strtab st;
    uint32_t *fname; /* function id → name string index; [0] unused */
    uint32_t nfuncs, capfuncs;
    jfr_map func_by_name;
    jfr_loc *locs;
    uint32_t nlocs, caplocs;
    jfr_set loc_set;
    jfr_stackrec *stacks;
    uint32_t nstacks, capstacks;
    jfr_set stack_set;
    jfr_agg *aggs;
    uint32_t naggs, capaggs;
    jfr_set agg_set;
    jfr_obs **blocks;
    uint32_t nblocks, capblocks, inlast;
    uint32_t *ids; /* max_stack_depth location ids, while a stack is resolved */
    char *name;    /* frame name scratch */
    size_t capname;
    uint32_t ft[3]; /* "jvm", "native", "kernel" */
    uint64_t seed;  /* of the location, stack and sample hashes */
    /* recording-wide settings (jfr.c) */
    uint8_t event_wall, cpu_event;
    int64_t set_interval, set_wall, jdk_period;
    /* per chunk: reset by jfr_build_chunk() */
    jfr_map stack_cache, func_cache, thread_cache, ev_kind;
    struct jfr_thread_id {
        int64_t tid;
        uint32_t name;
    } * threads;
    uint32_t nthreads, capthreads;
    jfr_bind ev[T_NKNOWN];
} jfr_build;

int jfr_too_big(jfr_ctx *c); /* SP_ETOOBIG with the message for an exhausted budget */
/* Room for item n at p (capacity *cap), doubling in a; NULL past the budget. */
void *jfr_grow(sp_arena *a, void *p, uint32_t n, uint32_t *cap, size_t sz);
int jfr_build_start(jfr_build *b);
void jfr_build_chunk(jfr_build *b);
/* The stack id (1-based) of a stack trace key of this chunk; 0 when its pools lack it. */
int jfr_stack_of(jfr_build *b, uint64_t key, uint32_t *sid);
/* The OS thread id and name string of a thread key of this chunk (0, 0 when unknown). */
int jfr_thread_of(jfr_build *b, uint64_t key, int64_t *tid, uint32_t *name);
/* Adds one observation (values v0, v1) of kind to the sample keyed like k. */
int jfr_observe(jfr_build *b, jfr_agg *k, uint32_t kind, uint64_t ts, int64_t v0, int64_t v1);
/* Turns everything observed into c.res->profiles. */
int jfr_build_finish(jfr_build *b);

#endif
