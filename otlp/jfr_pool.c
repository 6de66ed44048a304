/* JFR constant pools: the checkpoint events of one chunk, read into per-chunk tables.
 *
 * A chunk's header points at its last checkpoint; each checkpoint holds the delta back to the one
 * before (0 for the first), as ChunkParser.fillConstantPools walks them. Entries refer to each
 * other by key (a method to its class and name symbol, a stack frame to its method) in any order
 * and across checkpoints, so entries are stored with their keys unresolved and looked up when a
 * sample needs them (jfr.c).
 *
 * Invariants (tests/unit/test_otlp_jfr.c, tests/fuzz/fuzz_jfr.c):
 *  P1. The walk only goes backwards, and each checkpoint must end before the one read after it
 *      starts, so no byte of the chunk is read twice and the walk ends.
 *  P2. A checkpoint's content must fill exactly its size (ChunkParser: "Size of check point event
 *      doesn't match content").
 *  P3. At most max_pool_entries entries per chunk (SP_ETOOBIG) and max_stack_depth frames per
 *      stack (the leaf-most frames are kept, the cut counted in truncated_stacks).
 *  P4. All tables live in the chunk arena and die with the chunk: keys are per chunk.
 */
#include "jfr_impl.h"

#include <inttypes.h>

/* Field bindings of the pooled types (field names from the JDK's metadata.xml and
 * async-profiler's jfrMetadata.cpp). */
typedef struct pool_binds {
    jfr_bind symbol, cls, method, stack, frame, thread, frame_type, thread_state;
} pool_binds;

enum { ST_TRUNCATED, ST_FRAMES };
enum { SF_METHOD, SF_LINE, SF_TYPE };
enum { TH_OSTID, TH_JAVANAME, TH_OSNAME };

static int bind_all(jfr_ctx *c, pool_binds *b)
{
    static const char *const str[] = {"string"}, *const desc[] = {"description"},
                             *const name[] = {"name"}, *const method[] = {"type", "name"},
                             *const stack[] = {"truncated", "frames"},
                             *const frame[] = {"method", "lineNumber", "type"},
                             *const thread[] = {"osThreadId", "javaName", "osName"};
    return jfr_bind_fields(c, &b->symbol, T_SYMBOL, str, "s", 1) ||
           jfr_bind_fields(c, &b->cls, T_CLASS, name, "r", 1) ||
           jfr_bind_fields(c, &b->method, T_METHOD, method, "rr", 2) ||
           jfr_bind_fields(c, &b->stack, T_STACKTRACE, stack, "ia", 2) ||
           jfr_bind_fields(c, &b->frame, T_STACKFRAME, frame, "rir", 3) ||
           jfr_bind_fields(c, &b->thread, T_THREAD, thread, "iss", 3) ||
           jfr_bind_fields(c, &b->frame_type, T_FRAMETYPE, desc, "s", 1) ||
           jfr_bind_fields(c, &b->thread_state, T_THREADSTATE, name, "s", 1);
}

static void *pool_add(jfr_ctx *c, jfr_pool *p, uint64_t key)
{
    if (p->n == p->cap) {
        uint32_t cap = p->cap ? p->cap * 2 : 64;
        void *x = sp_arena_alloc(c->chunk, (size_t)cap * p->size);
        if (!x)
            return NULL;
        if (p->n)
            memcpy(x, p->items, (size_t)p->n * p->size);
        p->items = x;
        p->cap = cap;
    }
    if (jfr_map_put(&p->index, c->chunk, key, p->n + 1))
        return NULL;
    return (char *)p->items + (size_t)p->n++ * p->size;
}

const void *jfr_pool_get(const jfr_pool *p, uint64_t key)
{
    uint32_t i = jfr_map_get(&p->index, key);
    return i ? (const char *)p->items + (size_t)(i - 1) * p->size : NULL;
}

jfr_str jfr_text(const jfr_ctx *c, const jfr_val *v)
{
    if (v->kind == JV_STR)
        return v->s;
    if (v->kind == JV_STRREF) { /* one level: a pooled string is never itself a reference */
        const jfr_val *s = jfr_pool_get(&c->pools.strings, (uint64_t)v->i);
        if (s && s->kind == JV_STR)
            return s->s;
    }
    return (jfr_str){"", 0};
}

static int full(jfr_ctx *c)
{
    return sp_fail(c->err, SP_ETOOBIG, "constant pools exceed the scratch budget");
}

static int add_frame(jfr_ctx *c, const jfr_val *fv)
{
    jfr_pools *ps = &c->pools;
    if (ps->nframes == ps->capframes) {
        uint32_t cap = ps->capframes ? ps->capframes * 2 : 1024;
        jfr_frame *x =
            cap > ps->capframes ? sp_arena_alloc(c->chunk, (size_t)cap * sizeof *x) : NULL;
        if (!x)
            return full(c);
        if (ps->nframes)
            memcpy(x, ps->frames, (size_t)ps->nframes * sizeof *x);
        ps->frames = x;
        ps->capframes = cap;
    }
    ps->frames[ps->nframes++] =
        (jfr_frame){(uint64_t)fv[SF_METHOD].i, (uint64_t)fv[SF_TYPE].i, (int32_t)fv[SF_LINE].i};
    return 0;
}

/* frames: an array of inline jdk.types.StackFrame values, leaf first. */
static int frames_read(jfr_ctx *c, jfr_rd *r, const jfr_class *fc, const pool_binds *b, uint32_t *n,
                       uint8_t *cut)
{
    uint64_t count;
    int rc = jfr_varint(c, r, &count, "stack frame count");
    if (rc)
        return rc;
    if (count > jfr_left(r))
        return sp_fail(c->err, SP_EINVAL,
                       "offset %zu: stack trace claims %" PRIu64 " frames in %zu bytes", jfr_off(r),
                       count, jfr_left(r));
    for (uint64_t j = 0; j < count; j++) {
        jfr_val fv[3] = {{0}};
        if ((rc = jfr_object_read(c, r, fc, &b->frame, fv, 1)))
            return rc;
        if (*n >= c->o.max_stack_depth) { /* P3 */
            *cut = 1;
            continue;
        }
        if ((rc = add_frame(c, fv)))
            return rc;
        (*n)++;
    }
    return 0;
}

static int stack_read(jfr_ctx *c, jfr_rd *r, const jfr_class *k, const pool_binds *b, uint64_t key)
{
    jfr_val vals[2] = {{0}};
    uint32_t first = c->pools.nframes, n = 0;
    uint8_t cut = 0;
    for (uint32_t i = 0; i < k->nfields; i++) {
        const jfr_field *f = &k->fields[i];
        uint8_t s = b->stack.slot_of[i];
        const jfr_class *fc = &c->meta.classes[f->type];
        int rc = s == ST_FRAMES && fc == b->frame.cls
                     ? frames_read(c, r, fc, b, &n, &cut)
                     : jfr_field_read(c, r, f, s == JFR_NOSLOT ? NULL : &vals[s], 1);
        if (rc)
            return rc;
    }
    jfr_stack *st = pool_add(c, &c->pools.stacks, key);
    if (!st)
        return full(c);
    *st = (jfr_stack){first, n, (uint8_t)(vals[ST_TRUNCATED].i != 0 || cut)};
    if (cut)
        c->res->truncated_stacks++;
    return 0;
}

/* A pooled object of a bound type: vals → the table's item. */
static int object_entry(jfr_ctx *c, jfr_rd *r, enum jfr_known t, const jfr_bind *bind, uint64_t key)
{
    jfr_val v[3] = {{0}};
    int rc = jfr_object_read(c, r, bind->cls, bind, v, 0);
    if (rc)
        return rc;
    jfr_pools *ps = &c->pools;
    void *item = pool_add(c,
                          t == T_SYMBOL      ? &ps->symbols
                          : t == T_CLASS     ? &ps->classes
                          : t == T_METHOD    ? &ps->methods
                          : t == T_THREAD    ? &ps->threads
                          : t == T_FRAMETYPE ? &ps->frame_types
                                             : &ps->thread_states,
                          key);
    if (!item)
        return full(c);
    if (t == T_CLASS) {
        *(uint64_t *)item = (uint64_t)v[0].i;
    } else if (t == T_METHOD) {
        *(jfr_method *)item = (jfr_method){(uint64_t)v[0].i, (uint64_t)v[1].i};
    } else if (t == T_THREAD) {
        *(jfr_thread *)item = (jfr_thread){v[TH_OSTID].i, v[TH_JAVANAME], v[TH_OSNAME]};
    } else {
        *(jfr_val *)item = v[0];
    }
    return 0;
}

static int entry_read(jfr_ctx *c, jfr_rd *r, int t, uint32_t cls, const pool_binds *b, uint64_t key)
{
    const jfr_bind *bind = t == T_SYMBOL        ? &b->symbol
                           : t == T_CLASS       ? &b->cls
                           : t == T_METHOD      ? &b->method
                           : t == T_THREAD      ? &b->thread
                           : t == T_FRAMETYPE   ? &b->frame_type
                           : t == T_THREADSTATE ? &b->thread_state
                                                : NULL;
    if (t == T_STRING) {
        jfr_val v = {0};
        int rc = jfr_string(c, r, &v);
        if (rc)
            return rc;
        jfr_val *item = pool_add(c, &c->pools.strings, key);
        if (!item)
            return full(c);
        *item = v;
        return 0;
    }
    if (t == T_STACKTRACE && b->stack.cls)
        return stack_read(c, r, b->stack.cls, b, key);
    if (bind && bind->cls)
        return object_entry(c, r, (enum jfr_known)t, bind, key);
    jfr_field any = {.type = cls}; /* a type nobody reads: skipped by its metadata */
    return jfr_field_read(c, r, &any, NULL, 0);
}

static int pool_read(jfr_ctx *c, jfr_rd *r, const pool_binds *b)
{
    uint64_t type, count;
    int rc = jfr_varint(c, r, &type, "pool type");
    if (rc)
        return rc;
    uint32_t cls = jfr_map_get(&c->meta.by_id, type);
    if (!cls)
        return sp_fail(c->err, SP_EINVAL, "offset %zu: constant pool of undeclared type %" PRIu64,
                       jfr_off(r), type);
    cls--;
    if ((rc = jfr_varint(c, r, &count, "pool size")))
        return rc;
    if (count > jfr_left(r) / 2) /* a key and a value: two bytes at least (W1) */
        return sp_fail(c->err, SP_EINVAL,
                       "offset %zu: constant pool %.*s claims %" PRIu64 " entries in %zu bytes",
                       jfr_off(r), (int)c->meta.classes[cls].name.n, c->meta.classes[cls].name.s,
                       count, jfr_left(r));
    c->pools.entries += (uint32_t)count;
    if (c->pools.entries > c->o.max_pool_entries || count > c->o.max_pool_entries) /* P3 */
        return sp_fail(c->err, SP_ETOOBIG,
                       "constant pools hold more than %u entries in one chunk (max_pool_entries)",
                       c->o.max_pool_entries);
    int t = -1;
    for (int k = T_STRING; k <= T_THREADSTATE; k++)
        if (c->meta.known[k] == cls + 1)
            t = k;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t key;
        if ((rc = jfr_varint(c, r, &key, "pool key")) || (rc = entry_read(c, r, t, cls, b, key)))
            return rc;
    }
    return 0;
}

/* One checkpoint event at chunk offset pos, ending at or before limit (P1). */
static int checkpoint(jfr_ctx *c, size_t pos, size_t limit, const pool_binds *b, int64_t *delta)
{
    const uint8_t *chunk = c->data + c->chunk_off;
    jfr_rd r = {c->data, chunk + pos, chunk + limit};
    uint64_t size, type, v, npools;
    int rc = jfr_varint(c, &r, &size, "checkpoint size");
    if (rc)
        return rc;
    if (size == 0 || size > limit - pos)
        return sp_fail(c->err, SP_EINVAL,
                       "checkpoint at %zu: size %" PRIu64 " runs past its end (%zu bytes left)",
                       c->chunk_off + pos, size, limit - pos);
    r.end = chunk + pos + size;
    if ((rc = jfr_varint(c, &r, &type, "checkpoint type")))
        return rc;
    if (type != 1) /* ChunkParser.CONSTANT_POOL_TYPE_ID */
        return sp_fail(c->err, SP_EINVAL,
                       "checkpoint at %zu: expected a checkpoint (type 1), found type %" PRIu64,
                       c->chunk_off + pos, type);
    if ((rc = jfr_varint(c, &r, &v, "checkpoint start")) ||
        (rc = jfr_varint(c, &r, &v, "checkpoint duration")) ||
        (rc = jfr_varint(c, &r, &v, "checkpoint delta")))
        return rc;
    *delta = (int64_t)v;
    if (r.p >= r.end)
        return sp_fail(c->err, SP_EINVAL, "checkpoint at %zu: cut off before its flags",
                       c->chunk_off + pos);
    r.p++; /* flags: flush, chunk header, statics, thread */
    if ((rc = jfr_varint(c, &r, &npools, "checkpoint pool count")))
        return rc;
    if (npools > jfr_left(&r))
        return sp_fail(c->err, SP_EINVAL,
                       "checkpoint at %zu: claims %" PRIu64 " pools in %zu bytes",
                       c->chunk_off + pos, npools, jfr_left(&r));
    for (uint64_t i = 0; i < npools; i++)
        if ((rc = pool_read(c, &r, b)))
            return rc;
    if (r.p != r.end) /* P2 */
        return sp_fail(c->err, SP_EINVAL,
                       "checkpoint at %zu: content ends at %zu, its size says %zu",
                       c->chunk_off + pos, jfr_off(&r), (size_t)(r.end - c->data));
    return 0;
}

int jfr_pools_read(jfr_ctx *c, size_t cp_off)
{
    pool_binds b;
    if (bind_all(c, &b))
        return SP_ETOOBIG;
    jfr_pools *ps = &c->pools;
    memset(ps, 0, sizeof *ps);
    ps->strings.size = ps->symbols.size = ps->frame_types.size = ps->thread_states.size =
        sizeof(jfr_val);
    ps->classes.size = sizeof(uint64_t);
    ps->methods.size = sizeof(jfr_method);
    ps->stacks.size = sizeof(jfr_stack);
    ps->threads.size = sizeof(jfr_thread);
    size_t pos = cp_off, limit = c->chunk_size;
    for (;;) {
        int64_t delta = 0;
        int rc = checkpoint(c, pos, limit, &b, &delta);
        if (rc)
            return rc;
        if (delta == 0)
            return 0;
        if (delta > 0 || (uint64_t) - (delta + 1) >= pos - JFR_HEADER_SIZE) /* P1 */
            return sp_fail(c->err, SP_EINVAL,
                           "checkpoint at %zu: delta %" PRId64
                           " does not lead back to an earlier checkpoint of the chunk",
                           c->chunk_off + pos, delta);
        limit = pos;
        pos = (size_t)((int64_t)pos + delta);
    }
}
