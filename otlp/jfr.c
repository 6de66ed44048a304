/* JFR recordings → sp_profile: the entry point, the chunk loop and the sample events.
 * (The encoding is in jfr_wire.c, the constant pools in jfr_pool.c, the output tables and
 * profiles in jfr_build.c, frame names in jfr_names.c; jfr_impl.h summarises the format.)
 *
 * Each chunk is read on its own (its metadata, pools and keys are its own), in three steps: the
 * metadata event, the checkpoints, then the events twice: first the settings and the JVM's
 * description (async-profiler writes its "event" and "interval" settings as jdk.ActiveSetting
 * events, which decide where an ExecutionSample counts), then the samples, each handed to
 * jfr_build.c, which interns what crosses chunks by value.
 *
 * Where the numbers come from, for each sample event (grafana/jfr-parser pprof/parser.go, the
 * conversion Pyroscope runs on the same upload; the type ids are its pprof/pprof.go names):
 *   jdk.ExecutionSample       cpu += interval unless its thread state is STATE_SLEEPING; when
 *                             the async-profiler event setting is "wall", wall += interval too
 *   profiler.WallClockSample  wall += samples × interval; with event "wall" and state
 *                             STATE_RUNNABLE, cpu += samples × interval
 *   allocation events         objects += 1, bytes += tlabSize / allocationSize / weight
 *   jdk.JavaMonitorEnter,
 *   jdk.ThreadPark            contentions += 1, delay += duration
 *   profiler.LiveObject       live += 1
 *   profiler.Malloc           objects += 1, bytes += size
 * Two deliberate differences from jfr-parser: an ExecutionSample without a thread state counts as
 * CPU (jfr-parser drops it), and durations are converted from ticks to nanoseconds with the
 * chunk's ticks per second (jfr-parser takes the ticks as nanoseconds, which only holds for the
 * JDK's 1 GHz clock).
 *
 * Invariants (tests/unit/test_otlp_jfr.c, tests/fuzz/fuzz_jfr.c):
 *  J1. A chunk is accepted only whole: its size fits the input, its metadata and constant pool
 *      offsets lie inside it after the header, and every event fits inside it. Bytes after the
 *      last chunk that are not a chunk fail the parse: a cut recording is refused, not guessed at.
 *  J2. An event is read inside its own size; what a sample needs that its chunk does not define
 *      (stack trace, method, class) drops the sample or frame and is counted in the result.
 *  J3. At most max_chunks chunks; every table grows in an arena with a budget.
 *  J4. Every sample's location ids, and every location's function id, are inside the shared
 *      tables; every string index inside the shared string table (B1 in jfr_build.c).
 */
#include "jfr_impl.h"

#include <inttypes.h>
#include <stdio.h>

__extension__ typedef __int128 i128;

/* The fields a sample event may have (async-profiler's jfrMetadata.cpp, the JDK's metadata.xml). */
enum {
    S_TIME,
    S_DUR,
    S_THREAD,
    S_THREAD2,
    S_STACK,
    S_STATE,
    S_CTX,
    S_SPAN,
    S_SPANNAME,
    S_TRACE_HI,
    S_TRACE_LO,
    S_SAMPLES,
    S_SIZE,
    S_N
};

/* ---------- time ---------- */

static uint64_t clamp_ns(i128 v)
{
    return v < 0 ? 0 : v > INT64_MAX ? (uint64_t)INT64_MAX : (uint64_t)v;
}

/* TimeConverter.convertTimestamp: start nanos + (ticks - start ticks) / (ticks per ns). */
static uint64_t ticks_to_ns(const jfr_ctx *c, int64_t ticks)
{
    i128 d = (i128)(uint64_t)ticks - (i128)c->start_ticks;
    return clamp_ns((i128)c->start_nanos + d * 1000000000 / (i128)c->ticks_per_sec);
}

static int64_t span_to_ns(const jfr_ctx *c, int64_t ticks)
{
    return (int64_t)clamp_ns((i128)ticks * 1000000000 / (i128)c->ticks_per_sec);
}

static jfr_str state_of(const jfr_ctx *c, const jfr_val *v)
{
    const jfr_val *s =
        v->kind == JV_INT ? jfr_pool_get(&c->pools.thread_states, (uint64_t)v->i) : NULL;
    return s ? jfr_text(c, s) : (jfr_str){"", 0};
}

static int sample_event(jfr_build *b, int t, jfr_rd *r)
{
    jfr_ctx *c = &b->c;
    const jfr_bind *bind = &b->ev[t];
    if (!bind->cls)
        return 0;
    jfr_val v[S_N];
    memset(v, 0, sizeof v);
    int rc = jfr_object_read(c, r, bind->cls, bind, v, 0);
    if (rc)
        return rc;
    uint32_t sid = 0;
    if (bind->present[S_STACK] && (rc = jfr_stack_of(b, (uint64_t)v[S_STACK].i, &sid)))
        return rc;
    if (!sid) {
        c->res->dropped_samples++;
        return 0;
    }
    jfr_agg k = {.ctx = (uint64_t)v[S_CTX].i,
                 .span = (uint64_t)v[S_SPAN].i,
                 .span_name = (uint64_t)v[S_SPANNAME].i,
                 .trace_hi = (uint64_t)v[S_TRACE_HI].i,
                 .trace_lo = (uint64_t)v[S_TRACE_LO].i,
                 .stack = sid};
    jfr_val *th = bind->present[S_THREAD] ? &v[S_THREAD] : &v[S_THREAD2];
    if (th->kind && (rc = jfr_thread_of(b, (uint64_t)th->i, &k.tid, &k.tname)))
        return rc;
    uint64_t ts = ticks_to_ns(c, v[S_TIME].i);
    int64_t n = bind->present[S_SAMPLES] ? v[S_SAMPLES].i : 1;
    jfr_str state = state_of(c, &v[S_STATE]);
    c->res->samples++;
    switch (t) {
    case T_EXEC:
        if (!jfr_str_is(state, "STATE_SLEEPING") && (rc = jfr_observe(b, &k, K_CPU, ts, 1, 0)))
            return rc;
        return b->event_wall ? jfr_observe(b, &k, K_WALL, ts, 1, 0) : 0;
    case T_WALL:
        if (b->event_wall && jfr_str_is(state, "STATE_RUNNABLE") &&
            (rc = jfr_observe(b, &k, K_CPU, ts, n, 0)))
            return rc;
        return jfr_observe(b, &k, K_WALL, ts, n, 0);
    case T_TLAB_NEW:
        return jfr_observe(b, &k, K_TLAB_NEW, ts, 1, v[S_SIZE].i);
    case T_TLAB_OUT:
        return jfr_observe(b, &k, K_TLAB_OUT, ts, 1, v[S_SIZE].i);
    case T_ALLOC_SAMPLE:
        return jfr_observe(b, &k, K_ALLOC_SAMPLE, ts, 1, v[S_SIZE].i);
    case T_LIVE:
        return jfr_observe(b, &k, K_LIVE, ts, 1, 0);
    case T_MONITOR:
        return jfr_observe(b, &k, K_LOCK, ts, 1, span_to_ns(c, v[S_DUR].i));
    case T_PARK:
        return jfr_observe(b, &k, K_PARK, ts, 1, span_to_ns(c, v[S_DUR].i));
    default:
        return jfr_observe(b, &k, K_MALLOC, ts, 1, v[S_SIZE].i);
    }
}

/* ---------- settings ---------- */

static int64_t parse_int(jfr_str s)
{
    int64_t v = 0;
    for (uint32_t i = 0; i < s.n; i++) {
        if (s.s[i] < '0' || s.s[i] > '9' || v > (INT64_MAX - 9) / 10)
            return 0;
        v = v * 10 + (s.s[i] - '0');
    }
    return v;
}

/* A JDK timespan setting ("10 ms", "20 ms", "1 s"), 0 when it is something else. */
static int64_t parse_timespan(jfr_str s)
{
    static const struct {
        const char *unit;
        int64_t ns;
    } units[] = {{"ns", 1}, {"us", 1000}, {"ms", 1000000}, {"s", 1000000000}};
    uint32_t i = 0;
    while (i < s.n && s.s[i] >= '0' && s.s[i] <= '9')
        i++;
    int64_t v = parse_int((jfr_str){s.s, i});
    while (i < s.n && s.s[i] == ' ')
        i++;
    jfr_str u = {s.s + i, s.n - i};
    for (size_t k = 0; k < sizeof units / sizeof units[0]; k++)
        if (jfr_str_is(u, units[k].unit))
            return sp_sat_mul(v, units[k].ns);
    return 0;
}

static int setting_event(jfr_build *b, int t, jfr_rd *r)
{
    jfr_ctx *c = &b->c;
    const jfr_bind *bind = &b->ev[t];
    if (!bind->cls)
        return 0;
    jfr_val v[3];
    memset(v, 0, sizeof v);
    int rc = jfr_object_read(c, r, bind->cls, bind, v, 0);
    if (rc || t == T_JVMINFO) {
        if (!rc && v[0].kind)
            c->res->pid = v[0].i;
        return rc;
    }
    jfr_str name = jfr_text(c, &v[1]), value = jfr_text(c, &v[2]);
    uint32_t exec = c->meta.known[T_EXEC];
    int for_exec = exec && v[0].kind && (uint64_t)v[0].i == c->meta.classes[exec - 1].id;
    if (jfr_str_is(name, "event")) {
        /* async-profiler: the engine its ExecutionSamples come from */
        char *ev = sp_arena_alloc(c->out, (size_t)value.n + 1);
        if (!ev)
            return jfr_too_big(c);
        ev[jfr_utf8_clean(value, ev)] = 0;
        c->res->event = ev;
        b->event_wall = jfr_str_is(value, "wall");
        b->cpu_event = jfr_str_is(value, "cpu") || jfr_str_is(value, "itimer") ||
                       jfr_str_is(value, "ctimer") || b->event_wall;
    } else if (for_exec && jfr_str_is(name, "interval")) {
        b->set_interval = parse_int(value); /* async-profiler, in ns for time-based events */
    } else if (for_exec && jfr_str_is(name, "wall")) {
        b->set_wall = parse_int(value);
    } else if (for_exec && jfr_str_is(name, "period")) {
        b->jdk_period = parse_timespan(value); /* the JDK's own sampler */
    }
    return 0;
}

/* ---------- chunks ---------- */

static int bind_events(jfr_build *b)
{
    static const char *const size_field[T_NKNOWN] = {[T_TLAB_NEW] = "tlabSize",
                                                     [T_TLAB_OUT] = "allocationSize",
                                                     [T_ALLOC_SAMPLE] = "weight",
                                                     [T_MALLOC] = "size"};
    static const char *const setting[] = {"id", "name", "value"}, *const info[] = {"pid"};
    const char *names[S_N] = {"startTime",  "duration",  "sampledThread", "eventThread",
                              "stackTrace", "state",     "contextId",     "spanId",
                              "spanName",   "traceIdHi", "traceIdLo",     "samples"};
    for (int t = T_EXEC; t <= T_MALLOC; t++) {
        names[S_SIZE] = size_field[t];
        if (jfr_bind_fields(&b->c, &b->ev[t], (enum jfr_known)t, names, "iirrrriiiiiii", S_N))
            return SP_ETOOBIG;
    }
    if (jfr_bind_fields(&b->c, &b->ev[T_SETTING], T_SETTING, setting, "iss", 3) ||
        jfr_bind_fields(&b->c, &b->ev[T_JVMINFO], T_JVMINFO, info, "i", 1))
        return SP_ETOOBIG;
    return 0;
}

/* Walks the chunk's events (J1, J2); pass 0 reads settings, pass 1 samples. */
static int events(jfr_build *b, int pass)
{
    jfr_ctx *c = &b->c;
    const uint8_t *chunk = c->data + c->chunk_off;
    for (size_t pos = JFR_HEADER_SIZE; pos < c->chunk_size;) {
        jfr_rd r = {c->data, chunk + pos, chunk + c->chunk_size};
        uint64_t size, type;
        int rc = jfr_varint(c, &r, &size, "event size");
        if (rc || (rc = jfr_varint(c, &r, &type, "event type")))
            return rc;
        size_t head = (size_t)(r.p - (chunk + pos));
        if (size < head || size > c->chunk_size - pos)
            return sp_fail(c->err, SP_EINVAL,
                           "event at %zu: size %" PRIu64 " does not fit (%zu bytes left in the "
                           "chunk)",
                           c->chunk_off + pos, size, c->chunk_size - pos);
        r.end = chunk + pos + size;
        uint32_t t = jfr_map_get(&b->ev_kind, type);
        if (pass == 0) {
            c->res->events++;
            if (t == T_SETTING + 1 || t == T_JVMINFO + 1)
                rc = setting_event(b, (int)t - 1, &r);
        } else if (t && t - 1 <= T_MALLOC) {
            rc = sample_event(b, (int)t - 1, &r);
        }
        if (rc) {
            if (rc == SP_EINVAL)
                sp_err_prefix(c->err, "event at %zu (type %" PRIu64 "): ", c->chunk_off + pos,
                              type);
            return rc;
        }
        pos += (size_t)size;
    }
    return 0;
}

static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* The 68-byte header (ChunkHeader.java); *cp and *meta are offsets inside the chunk (J1). */
static int header(jfr_ctx *c, uint64_t *cp, uint64_t *meta)
{
    const uint8_t *h = c->data + c->chunk_off;
    size_t left = c->len - c->chunk_off;
    if (left < JFR_HEADER_SIZE)
        return sp_fail(c->err, SP_EINVAL, "only %zu bytes left, a chunk header takes %d", left,
                       JFR_HEADER_SIZE);
    if (memcmp(h, "FLR", 4) != 0)
        return sp_fail(c->err, SP_EINVAL, "no \"FLR\\0\" magic: not a JFR chunk");
    unsigned major = (unsigned)h[4] << 8 | h[5], minor = (unsigned)h[6] << 8 | h[7];
    if (major != 1 && major != 2)
        return sp_fail(c->err, SP_EINVAL, "format version %u.%u (only 1.x and 2.x exist)", major,
                       minor);
    uint64_t size = be64(h + 8);
    *cp = be64(h + 16);
    *meta = be64(h + 24);
    c->start_nanos = be64(h + 32);
    uint64_t duration = be64(h + 40);
    c->start_ticks = be64(h + 48);
    c->ticks_per_sec = be64(h + 56);
    if (size < JFR_HEADER_SIZE || size > left)
        return sp_fail(c->err, SP_EINVAL,
                       "chunk size %" PRIu64 " beyond the %zu bytes left (a cut recording?)", size,
                       left);
    c->chunk_size = (size_t)size;
    if (*meta == 0)
        return sp_fail(c->err, SP_EINVAL, "no metadata offset: the recording was not finished");
    if (*meta < JFR_HEADER_SIZE || *meta >= size)
        return sp_fail(c->err, SP_EINVAL, "metadata offset %" PRIu64 " beyond chunk size %" PRIu64,
                       *meta, size);
    if (*cp < JFR_HEADER_SIZE || *cp >= size)
        return sp_fail(c->err, SP_EINVAL,
                       "constant pool offset %" PRIu64 " beyond chunk size %" PRIu64, *cp, size);
    if (c->ticks_per_sec == 0)
        return sp_fail(c->err, SP_EINVAL, "ticks per second is 0");
    int64_t start = (int64_t)clamp_ns(c->start_nanos),
            end = (int64_t)clamp_ns((i128)c->start_nanos + duration);
    if (!c->res->chunks || start < c->res->start_ns)
        c->res->start_ns = start;
    if (end > c->res->end_ns)
        c->res->end_ns = end;
    return 0;
}

static int chunk(jfr_build *b)
{
    jfr_ctx *c = &b->c;
    uint64_t cp = 0, meta = 0;
    int rc = header(c, &cp, &meta);
    if (rc || (rc = jfr_metadata_read(c, (size_t)meta)) || (rc = jfr_pools_read(c, (size_t)cp)))
        return rc;
    jfr_build_chunk(b);
    if ((rc = bind_events(b)))
        return rc;
    for (int t = T_EXEC; t < T_NKNOWN; t++)
        if (b->ev[t].cls && jfr_map_put(&b->ev_kind, c->chunk, b->ev[t].cls->id, (uint32_t)t + 1))
            return jfr_too_big(c);
    if ((rc = events(b, 0)) || (rc = events(b, 1)))
        return rc;
    return 0;
}

/* ---------- entry points ---------- */

static void defaults(otlp_jfr_options *o)
{
    if (!o->max_chunks)
        o->max_chunks = 1024;
    if (!o->max_stack_depth)
        o->max_stack_depth = 2048;
    if (!o->max_types)
        o->max_types = 65536;
    if (!o->max_pool_entries)
        o->max_pool_entries = 1u << 22;
    if (!o->work_budget)
        o->work_budget = (size_t)256 << 20;
}

static int run(jfr_build *b)
{
    jfr_ctx *c = &b->c;
    if (c->len == 0)
        return sp_fail(c->err, SP_EINVAL, "empty input: not a JFR recording");
    int rc = jfr_build_start(b);
    for (size_t off = 0; !rc && off < c->len; off += c->chunk_size) {
        if (c->res->chunks >= c->o.max_chunks)
            return sp_fail(c->err, SP_ETOOBIG, "more than %u chunks (max_chunks)", c->o.max_chunks);
        c->chunk_off = off;
        c->chunk_size = 0;
        rc = chunk(b);
        if (rc)
            sp_err_prefix(c->err, "chunk at %zu: ", off);
        c->res->chunks++;
        sp_arena_reset(c->chunk);
    }
    return rc ? rc : jfr_build_finish(b);
}

int otlp_jfr_parse(const uint8_t *data, size_t len, const otlp_jfr_options *o, sp_arena *a,
                   otlp_jfr_result *out, sp_err *err)
{
    memset(out, 0, sizeof *out);
    jfr_build bb, *b = &bb; /* under 2 KiB; everything that grows is in the arenas */
    memset(b, 0, sizeof *b);
    if (o)
        b->c.o = *o;
    defaults(&b->c.o);
    b->c.data = data;
    b->c.len = data ? len : 0;
    b->c.err = err;
    b->c.out = a;
    b->c.res = out;
    b->c.work = sp_arena_new(b->c.o.work_budget);
    b->c.chunk = sp_arena_new(b->c.o.work_budget);
    int rc = b->c.work && b->c.chunk
                 ? run(b)
                 : sp_fail(err, SP_ENOMEM, "out of memory for the JFR parser's scratch arenas");
    sp_arena_free(b->c.work);
    sp_arena_free(b->c.chunk);
    if (rc)
        memset(out, 0, sizeof *out);
    return rc;
}

int otlp_jfr_add_to_batch(const otlp_jfr_result *r, sp_batch *b, sp_err *err)
{
    for (uint32_t i = 0; i < r->nprofiles; i++)
        if (sp_batch_add_profile(b, r->profiles[i].profile))
            return sp_fail(err, SP_ETOOBIG, "profiles exceed the request budget");
    return 0;
}
