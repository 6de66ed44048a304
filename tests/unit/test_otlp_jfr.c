/* otlp/jfr: JFR recordings → Pyroscope-named profiles.
 *
 * The recordings in tests/data/jfr/ are real ones (README.md there says how each was made): the
 * JDK's own recorder with the profile settings (profile.jfr) and with TLAB allocation events on
 * (tlab.jfr), and async-profiler as the Pyroscope Java agent embeds it, in itimer mode
 * (ap-cpu.jfr) and wall-clock mode with live objects (ap-wall.jfr). All four record Hot.java:
 * Hot.fib burns CPU on thread "burner", Hot.allocate allocates on "allocator", three "locker"
 * threads fight over a monitor in Hot.contend and park in Hot.park. Tests name the invariant of
 * otlp/jfr*.c they guard (J1..J4, P1..P4, W1..W4).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "otlp/jfr.h"
#include "otlp/jfr_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------- helpers ---------- */

typedef struct blob {
    uint8_t *data;
    size_t len;
} blob;

/* tests/data/jfr/<name>, found from this file's path (or $SPANPROF_JFR_DATA). */
static blob load(const char *name)
{
    char path[4096];
    const char *dir = getenv("SPANPROF_JFR_DATA");
    if (dir) {
        snprintf(path, sizeof path, "%s/%s", dir, name);
    } else {
        const char *self = __FILE__, *cut = strstr(self, "tests/unit/");
        int n = cut ? (int)(cut - self) : 0;
        snprintf(path, sizeof path, "%.*stests/data/jfr/%s", n, self, name);
    }
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s (set SPANPROF_JFR_DATA to tests/data/jfr)", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    blob b = {malloc((size_t)len + 1), (size_t)len};
    assert_int_equal(fread(b.data, 1, b.len, f), b.len);
    fclose(f);
    return b;
}

typedef struct parsed {
    sp_arena *a;
    otlp_jfr_result r;
    sp_err err;
    int rc;
} parsed;

static parsed parse_with(const uint8_t *d, size_t n, const otlp_jfr_options *o)
{
    parsed p = {.a = sp_arena_new(256u << 20)};
    p.rc = otlp_jfr_parse(d, n, o, p.a, &p.r, &p.err);
    return p;
}

static parsed parse_file(const char *name)
{
    blob b = load(name);
    otlp_jfr_options o = {.cpu_interval_ns = 10000000};
    parsed p = parse_with(b.data, b.len, &o);
    free(b.data);
    if (p.rc)
        fail_msg("%s: rc %d: %s", name, p.rc, p.err.msg);
    return p;
}

static void done(parsed *p)
{
    sp_arena_free(p->a);
}

static const otlp_jfr_profile *find(const parsed *p, const char *type_id)
{
    for (uint32_t i = 0; i < p->r.nprofiles; i++)
        if (strcmp(p->r.profiles[i].profile->type_id, type_id) == 0)
            return &p->r.profiles[i];
    return NULL;
}

static const char *frame(const sp_profile *p, uint32_t loc)
{
    return p->strings[p->functions[p->locations[loc].lines[0].function_id].name];
}

static int has_frame(const sp_profile *p, const sp_sample *s, const char *name)
{
    for (uint32_t k = 0; k < s->nlocations; k++)
        if (strcmp(frame(p, s->location_ids[k]), name) == 0)
            return 1;
    return 0;
}

static int64_t total(const sp_profile *p)
{
    int64_t t = 0;
    for (uint32_t i = 0; i < p->nsamples; i++)
        t += p->samples[i].value;
    return t;
}

/* The share (0..1) of p's value in samples whose stack holds name / whose leaf is name. */
static double share(const sp_profile *p, const char *name, int leaf_only)
{
    int64_t in = 0;
    for (uint32_t i = 0; i < p->nsamples; i++) {
        const sp_sample *s = &p->samples[i];
        if (leaf_only ? s->nlocations && strcmp(frame(p, s->location_ids[0]), name) == 0
                      : has_frame(p, s, name))
            in += s->value;
    }
    int64_t t = total(p);
    return t ? (double)in / (double)t : 0;
}

static const char *const recordings[] = {"profile.jfr", "tlab.jfr", "ap-cpu.jfr", "ap-wall.jfr"};
#define NRECORDINGS (sizeof recordings / sizeof recordings[0])

/* J4: every id a profile holds points inside its tables. */
static void check_tables(const parsed *p)
{
    for (uint32_t i = 0; i < p->r.nprofiles; i++) {
        const sp_profile *q = p->r.profiles[i].profile;
        assert_non_null(q->type_id);
        assert_true(q->nseries >= 1);
        assert_string_equal(q->series[0].name, "__name__");
        assert_true(q->nstrings >= 1);
        assert_string_equal(q->strings[0], "");
        assert_true(q->nsamples > 0);
        for (uint32_t k = 0; k < q->nsamples; k++) {
            const sp_sample *s = &q->samples[k];
            assert_true(s->value != 0);
            assert_true(s->nobs > 0);
            assert_non_null(s->timestamps);
            assert_true(s->thread_name < q->nstrings);
            int64_t sum = 0;
            for (uint32_t j = 0; s->values && j < s->nobs; j++)
                sum += s->values[j];
            if (s->values)
                assert_int_equal(sum, s->value);
            for (uint32_t j = 0; j < s->nlocations; j++)
                assert_true(s->location_ids[j] > 0 && s->location_ids[j] < q->nlocations);
        }
        for (uint32_t l = 1; l < q->nlocations; l++) {
            assert_int_equal(q->locations[l].nlines, 1);
            assert_true(q->locations[l].lines[0].function_id > 0 &&
                        q->locations[l].lines[0].function_id < q->nfunctions);
            assert_true(q->locations[l].frame_type < q->nstrings);
            assert_true(q->locations[l].mapping_id > 0 &&
                        q->locations[l].mapping_id < q->nmappings);
        }
        for (uint32_t f = 1; f < q->nfunctions; f++)
            assert_true(q->functions[f].name > 0 && q->functions[f].name < q->nstrings);
        for (uint32_t k = 0; k < q->nstrings; k++) /* C strings: no NUL inside */
            assert_int_equal(strlen(q->strings[k]), q->string_lens[k]);
    }
}

/* ---------- what a user sees ---------- */

static const char CPU[] = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
static const char WALL[] = "wall:wall:nanoseconds:wall:nanoseconds";

static void cpu_profile_shows_the_hot_method(void **state)
{
    (void)state;
    const char *files[] = {"profile.jfr", "tlab.jfr", "ap-cpu.jfr", "ap-wall.jfr"};
    for (size_t i = 0; i < 4; i++) {
        parsed p = parse_file(files[i]);
        const otlp_jfr_profile *cpu = find(&p, CPU);
        assert_non_null(cpu);
        double fib = share(cpu->profile, "Hot.fib", 1);
        print_message("%s: Hot.fib is the leaf of %.0f%% of %lld ns CPU\n", files[i], fib * 100,
                      (long long)total(cpu->profile));
        /* wall mode: "CPU" is what was runnable when sampled, a little more than fib */
        double want = strcmp(files[i], "ap-wall.jfr") == 0 ? 0.6 : 0.8;
        assert_true(fib > want);
        assert_true(share(cpu->profile, "Hot.burn", 0) > want); /* the caller is there too */
        done(&p);
    }
}

static void allocation_profiles_name_the_allocating_method(void **state)
{
    (void)state;
    static const struct {
        const char *file, *type_id;
        double share; /* the JVM's own start-up allocates too */
    } cases[] = {
        {"tlab.jfr", "memory:alloc_in_new_tlab_bytes:bytes:space:bytes", 0.8},
        {"tlab.jfr", "memory:alloc_in_new_tlab_objects:count:space:bytes", 0.7},
        {"tlab.jfr", "memory:alloc_outside_tlab_bytes:bytes:space:bytes", 0.9},
        {"profile.jfr", "memory:alloc_sample_bytes:bytes:space:bytes", 0.9},
        {"ap-cpu.jfr", "memory:alloc_in_new_tlab_bytes:bytes:space:bytes", 0.9},
        {"ap-wall.jfr", "memory:live:count:objects:count", 0.9},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        parsed p = parse_file(cases[i].file);
        const otlp_jfr_profile *x = find(&p, cases[i].type_id);
        assert_non_null(x);
        double in = share(x->profile, "Hot.allocate", 0);
        print_message("%s %s: %.0f%% in Hot.allocate\n", cases[i].file, cases[i].type_id, in * 100);
        assert_true(in > cases[i].share);
        done(&p);
    }
    /* Outside-TLAB allocations here are the 1 MiB arrays: 1 MiB and a header each. */
    parsed p = parse_file("tlab.jfr");
    const sp_profile *n = find(&p, "memory:alloc_outside_tlab_objects:count:space:bytes")->profile;
    const sp_profile *b = find(&p, "memory:alloc_outside_tlab_bytes:bytes:space:bytes")->profile;
    assert_true(total(b) >= total(n) * (1 << 20) && total(b) < total(n) * ((1 << 20) + 64));
    done(&p);
}

/* Durations are ticks in the recording; the delay profiles are nanoseconds. */
static void lock_profiles_name_contend_and_park(void **state)
{
    (void)state;
    parsed p = parse_file("profile.jfr");
    const sp_profile *mc = find(&p, "mutex:contentions:count:mutex:count")->profile;
    const sp_profile *md = find(&p, "mutex:delay:nanoseconds:mutex:count")->profile;
    const sp_profile *bc = find(&p, "block:contentions:count:block:count")->profile;
    const sp_profile *bd = find(&p, "block:delay:nanoseconds:block:count")->profile;
    assert_true(share(mc, "Hot.contend", 0) > 0.9);
    assert_true(share(bc, "Hot.park", 0) > 0.9);
    assert_true(share(bd, "jdk/internal/misc/Unsafe.park", 1) > 0.9);
    /* The profile settings record monitor waits and parks over 10 ms; Hot parks 25 ms. */
    assert_true(total(md) / total(mc) >= 10000000);
    assert_true(total(bd) / total(bc) >= 10000000 && total(bd) / total(bc) < 100000000);
    done(&p);
    p = parse_file("ap-cpu.jfr"); /* async-profiler with lock=1ms */
    mc = find(&p, "mutex:contentions:count:mutex:count")->profile;
    md = find(&p, "mutex:delay:nanoseconds:mutex:count")->profile;
    assert_true(share(mc, "Hot.contend", 0) > 0.9);
    assert_true(total(md) / total(mc) >= 1000000 && total(md) / total(mc) < 100000000);
    done(&p);
}

static void type_ids_follow_pyroscope(void **state)
{
    (void)state;
    static const char *const want[NRECORDINGS][8] = {
        {CPU, "memory:alloc_sample_objects:count:space:bytes",
         "memory:alloc_sample_bytes:bytes:space:bytes", "mutex:contentions:count:mutex:count",
         "mutex:delay:nanoseconds:mutex:count", "block:contentions:count:block:count",
         "block:delay:nanoseconds:block:count"},
        {CPU, "memory:alloc_in_new_tlab_objects:count:space:bytes",
         "memory:alloc_in_new_tlab_bytes:bytes:space:bytes",
         "memory:alloc_outside_tlab_objects:count:space:bytes",
         "memory:alloc_outside_tlab_bytes:bytes:space:bytes"},
        {CPU, "memory:alloc_in_new_tlab_objects:count:space:bytes",
         "memory:alloc_in_new_tlab_bytes:bytes:space:bytes", "mutex:contentions:count:mutex:count",
         "mutex:delay:nanoseconds:mutex:count"},
        {CPU, WALL, "memory:alloc_in_new_tlab_objects:count:space:bytes",
         "memory:alloc_in_new_tlab_bytes:bytes:space:bytes", "memory:live:count:objects:count",
         "mutex:contentions:count:mutex:count", "mutex:delay:nanoseconds:mutex:count"},
    };
    static const sp_kv series[] = {{"service_name", "hot"}, {"env", "test"}};
    for (size_t i = 0; i < NRECORDINGS; i++) {
        blob b = load(recordings[i]);
        otlp_jfr_options o = {.series = series, .nseries = 2};
        parsed p = parse_with(b.data, b.len, &o);
        assert_int_equal(p.rc, 0);
        uint32_t n = 0;
        while (n < 8 && want[i][n])
            n++;
        assert_int_equal(p.r.nprofiles, n);
        for (uint32_t k = 0; k < n; k++) {
            const sp_profile *q = p.r.profiles[k].profile;
            assert_string_equal(q->type_id, want[i][k]);
            char id[256];
            snprintf(id, sizeof id, "%s:%s:%s:%s:%s", q->name, q->strings[q->sample_type],
                     q->strings[q->sample_unit], q->strings[q->period_type],
                     q->strings[q->period_unit]);
            assert_string_equal(id, q->type_id);
            assert_int_equal(q->nseries, 3); /* sorted: __name__, env, service_name */
            assert_string_equal(q->series[0].value, q->name);
            assert_string_equal(q->series[1].name, "env");
            assert_string_equal(q->series[2].value, "hot");
        }
        free(b.data);
        done(&p);
    }
}

static int line_of(const char *needle)
{
    blob b = load("Hot.java");
    b.data[b.len] = 0;
    int line = 1;
    const char *at = strstr((const char *)b.data, needle);
    assert_non_null(at);
    for (const char *q = (const char *)b.data; q < at; q++)
        line += *q == '\n';
    free(b.data);
    return line;
}

static void frames_are_named_like_jfr_parser(void **state)
{
    (void)state;
    int fib_line = line_of("return n < 2");
    for (size_t i = 0; i < NRECORDINGS; i++) {
        parsed p = parse_file(recordings[i]);
        const sp_profile *cpu = find(&p, CPU)->profile;
        int fib_at_line = 0, thread_run = 0, lambda = 0;
        for (uint32_t l = 1; l < cpu->nlocations; l++) {
            const char *name = frame(cpu, l);
            if (strcmp(name, "Hot.fib") == 0) {
                fib_at_line |= cpu->locations[l].lines[0].line == fib_line;
                assert_string_equal(cpu->strings[cpu->locations[l].frame_type], "jvm");
            }
            thread_run |= strcmp(name, "java/lang/Thread.run") == 0;
            /* async-profiler's lambda classes are merged; the JDK's "Hot$$Lambda$88+0x.../123"
             * are not, as in jfr-parser */
            lambda |= strcmp(name, "AsyncHot$$Lambda_.run") == 0;
        }
        assert_true(fib_at_line);
        assert_true(thread_run);
        assert_int_equal(lambda, strncmp(recordings[i], "ap-", 3) == 0);
        done(&p);
    }
}

static void timestamps_fall_within_the_recording(void **state)
{
    (void)state;
    for (size_t i = 0; i < NRECORDINGS; i++) {
        parsed p = parse_file(recordings[i]);
        const otlp_jfr_result *r = &p.r;
        assert_true(r->start_ns > 1600000000000000000LL && r->start_ns < 4100000000000000000LL);
        assert_true(r->end_ns > r->start_ns && r->end_ns - r->start_ns < 60000000000LL);
        for (uint32_t k = 0; k < r->nprofiles; k++) {
            const sp_profile *q = r->profiles[k].profile;
            assert_int_equal(q->time_nanos, r->start_ns);
            assert_int_equal(q->duration_nanos, r->end_ns - r->start_ns);
            for (uint32_t j = 0; j < q->nsamples; j++)
                for (uint32_t t = 0; t < q->samples[j].nobs; t++) {
                    int64_t ts = (int64_t)q->samples[j].timestamps[t];
                    if (ts < r->start_ns || ts > r->end_ns)
                        fail_msg("%s %s: timestamp %lld outside [%lld, %lld]", recordings[i],
                                 q->type_id, (long long)ts, (long long)r->start_ns,
                                 (long long)r->end_ns);
                }
        }
        done(&p);
    }
}

static void samples_carry_their_thread_and_the_jvm_pid(void **state)
{
    (void)state;
    for (size_t i = 0; i < NRECORDINGS; i++) {
        parsed p = parse_file(recordings[i]);
        assert_true(p.r.pid > 0);
        const sp_profile *cpu = find(&p, CPU)->profile;
        int seen = 0;
        for (uint32_t k = 0; k < cpu->nsamples; k++) {
            const sp_sample *s = &cpu->samples[k];
            assert_int_equal(s->pid, p.r.pid);
            if (!has_frame(cpu, s, "Hot.fib"))
                continue;
            assert_string_equal(cpu->strings[s->thread_name], "burner");
            assert_true(s->tid > 0); /* the OS thread id */
            seen++;
        }
        assert_true(seen > 0);
        done(&p);
    }
}

/* The Pyroscope agent's contextId / spanId / spanName / trace id fields (AsyncHot.java sets
 * them on the burner thread). */
static void async_profiler_context_and_span_reach_samples(void **state)
{
    (void)state;
    static const uint8_t span[8] = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88};
    static const uint8_t trace[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    const char *files[] = {"ap-cpu.jfr", "ap-wall.jfr"};
    for (size_t i = 0; i < 2; i++) {
        parsed p = parse_file(files[i]);
        const otlp_jfr_profile *cpu = find(&p, CPU);
        assert_non_null(cpu->context_ids);
        assert_non_null(cpu->span_names);
        int64_t burner = 0, tagged = 0;
        for (uint32_t k = 0; k < cpu->profile->nsamples; k++) {
            const sp_sample *s = &cpu->profile->samples[k];
            if (strcmp(cpu->profile->strings[s->thread_name], "burner") != 0) {
                assert_int_equal(cpu->context_ids[k], 0);
                assert_false(s->has_link);
                continue;
            }
            burner += s->value;
            if (!cpu->context_ids[k])
                continue; /* sampled before AsyncHot set the context */
            tagged += s->value;
            assert_int_equal(cpu->context_ids[k], 7);
            assert_int_equal(cpu->span_names[k], 3);
            assert_true(s->has_link);
            assert_memory_equal(s->link.span_id, span, 8);
            assert_memory_equal(s->link.trace_id, trace, 16);
        }
        assert_true(tagged > 0 && tagged > burner * 9 / 10);
        assert_string_equal(p.r.event, i == 0 ? "itimer" : "wall");
        done(&p);
    }
}

/* Without an interval from the caller, the recording's own settings give it. */
static void intervals_come_from_the_recording_settings(void **state)
{
    (void)state;
    static const struct {
        const char *file;
        int64_t cpu;
    } cases[] = {{"profile.jfr", 10000000}, /* jdk.ExecutionSample period "10 ms" */
                 {"tlab.jfr", 10000000},
                 {"ap-cpu.jfr", 10000000}, /* async-profiler interval=10ms */
                 {"ap-wall.jfr", 20000000}};
    for (size_t i = 0; i < 4; i++) {
        blob b = load(cases[i].file);
        parsed p = parse_with(b.data, b.len, NULL);
        assert_int_equal(p.rc, 0);
        assert_int_equal(p.r.cpu_interval_ns, cases[i].cpu);
        const sp_profile *cpu = find(&p, CPU)->profile;
        assert_int_equal(cpu->period, cases[i].cpu);
        for (uint32_t k = 0; k < cpu->nsamples; k++)
            assert_int_equal(cpu->samples[k].value % cases[i].cpu, 0);
        done(&p);
        otlp_jfr_options o = {.cpu_interval_ns = 1000}; /* the caller's interval wins */
        p = parse_with(b.data, b.len, &o);
        assert_int_equal(p.r.cpu_interval_ns, 1000);
        assert_int_equal(p.r.wall_interval_ns, 1000);
        assert_int_equal(find(&p, CPU)->profile->period, 1000);
        done(&p);
        free(b.data);
    }
}

static void wall_recording_counts_sleeping_threads_in_wall_only(void **state)
{
    (void)state;
    parsed p = parse_file("ap-wall.jfr");
    const sp_profile *wall = find(&p, WALL)->profile, *cpu = find(&p, CPU)->profile;
    assert_true(total(wall) > total(cpu));
    assert_true(share(wall, "Hot.contend", 0) > 0.05); /* asleep holding or waiting the lock */
    assert_true(share(cpu, "Hot.contend", 0) < 0.05);
    /* every thread is sampled, asleep or not, at the same rate: the busy burner and the mostly
     * sleeping locker get the same wall time (async-profiler spreads its samples over all
     * threads, so each gets part of the 2 s run) */
    int64_t by_thread[2] = {0, 0};
    for (uint32_t k = 0; k < wall->nsamples; k++) {
        const char *t = wall->strings[wall->samples[k].thread_name];
        by_thread[0] += strcmp(t, "burner") == 0 ? wall->samples[k].value : 0;
        by_thread[1] += strcmp(t, "locker-1") == 0 ? wall->samples[k].value : 0;
    }
    print_message("wall: burner %lld ns, locker-1 %lld ns\n", (long long)by_thread[0],
                  (long long)by_thread[1]);
    for (int i = 0; i < 2; i++)
        assert_true(by_thread[i] > 250000000 && by_thread[i] < 3000000000);
    assert_true(by_thread[0] < 2 * by_thread[1] && by_thread[1] < 2 * by_thread[0]);
    done(&p);
}

static blob concat(const char *a, const char *b)
{
    blob x = load(a), y = load(b);
    blob c = {malloc(x.len + y.len), x.len + y.len};
    memcpy(c.data, x.data, x.len);
    memcpy(c.data + x.len, y.data, y.len);
    free(x.data);
    free(y.data);
    return c;
}

/* Chunks back to back are one recording: the same stacks in two chunks are one sample. */
static void chunks_back_to_back_add_up(void **state)
{
    (void)state;
    blob two = concat("ap-cpu.jfr", "ap-cpu.jfr");
    otlp_jfr_options o = {.cpu_interval_ns = 10000000};
    parsed p2 = parse_with(two.data, two.len, &o), p1 = parse_file("ap-cpu.jfr");
    assert_int_equal(p2.rc, 0);
    assert_int_equal(p2.r.chunks, 2);
    assert_int_equal(p2.r.nprofiles, p1.r.nprofiles);
    assert_int_equal(p2.r.samples, 2 * p1.r.samples);
    for (uint32_t i = 0; i < p1.r.nprofiles; i++) {
        const sp_profile *a = p1.r.profiles[i].profile, *b = p2.r.profiles[i].profile;
        assert_string_equal(a->type_id, b->type_id);
        assert_int_equal(a->nsamples, b->nsamples);
        assert_int_equal(a->nfunctions, b->nfunctions);
        assert_int_equal(a->nlocations, b->nlocations);
        assert_int_equal(2 * total(a), total(b));
        for (uint32_t k = 0; k < a->nsamples; k++)
            assert_int_equal(2 * a->samples[k].nobs, b->samples[k].nobs);
    }
    check_tables(&p2);
    done(&p1);
    done(&p2);
    free(two.data);

    blob mixed = concat("profile.jfr", "tlab.jfr");
    parsed pm = parse_with(mixed.data, mixed.len, &o);
    assert_int_equal(pm.rc, 0);
    assert_int_equal(pm.r.chunks, 2);
    assert_non_null(find(&pm, "memory:alloc_sample_bytes:bytes:space:bytes"));
    assert_non_null(find(&pm, "memory:alloc_outside_tlab_bytes:bytes:space:bytes"));
    parsed pa = parse_file("profile.jfr"), pb = parse_file("tlab.jfr");
    assert_int_equal(total(find(&pm, CPU)->profile),
                     total(find(&pa, CPU)->profile) + total(find(&pb, CPU)->profile));
    assert_int_equal(pm.r.start_ns, pa.r.start_ns);
    assert_int_equal(pm.r.end_ns, pb.r.end_ns);
    check_tables(&pm);
    done(&pm);
    done(&pa);
    done(&pb);
    free(mixed.data);
}

/* J4 on every recording. */
static void every_id_points_inside_its_tables(void **state)
{
    (void)state;
    for (size_t i = 0; i < NRECORDINGS; i++) {
        parsed p = parse_file(recordings[i]);
        check_tables(&p);
        assert_int_equal(p.r.dropped_samples, 0);
        assert_int_equal(p.r.dropped_frames, 0);
        done(&p);
    }
}

/* ---------- bad input ---------- */

static void expect_einval(const uint8_t *d, size_t n, const char *needle)
{
    parsed p = parse_with(d, n, NULL);
    if (p.rc != SP_EINVAL)
        fail_msg("rc %d (want SP_EINVAL) for %zu bytes: %s", p.rc, n, p.err.msg);
    assert_int_equal(p.err.code, SP_EINVAL);
    if (needle && !strstr(p.err.msg, needle))
        fail_msg("message \"%s\" does not say \"%s\"", p.err.msg, needle);
    assert_int_equal(p.r.nprofiles, 0);
    done(&p);
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

/* J1: a recording cut anywhere is refused, naming the chunk. */
static void rejects_cut_recordings(void **state)
{
    (void)state;
    for (size_t i = 0; i < NRECORDINGS; i++) {
        blob b = load(recordings[i]);
        for (size_t n = 1; n < b.len; n += n < 512 ? 1 : 97)
            expect_einval(b.data, n, "chunk at 0: ");
        free(b.data);
    }
    blob two = concat("ap-wall.jfr", "ap-cpu.jfr"), one = load("ap-wall.jfr");
    size_t first = one.len;
    free(one.data);
    char where[64];
    snprintf(where, sizeof where, "chunk at %zu: ", first);
    for (size_t n = first + 1; n < two.len; n += 61)
        expect_einval(two.data, n, where);
    free(two.data);
}

/* Parses data cut to n bytes with the header patched to say so (size n, constant pool offset cp):
 * 1 when refused past the header checks, 0 when refused by them, -1 when read. */
static int cut_patched(const blob *b, size_t n, uint64_t cp)
{
    uint8_t *c = malloc(n);
    memcpy(c, b->data, n);
    put_be64(c + 8, n);
    put_be64(c + 16, cp);
    parsed p = parse_with(c, n, NULL);
    int deep = -1;
    if (p.rc) {
        assert_int_equal(p.rc, SP_EINVAL);
        assert_true(strncmp(p.err.msg, "chunk at 0: ", 12) == 0);
        deep = strstr(p.err.msg, "beyond chunk size") == NULL;
    } else {
        check_tables(&p);
    }
    done(&p);
    free(c);
    return deep;
}

/* J1, J2, P1, P2, W1: cuts whose header is patched to the cut length get past the header into
 * the metadata (read first, so the constant pool offset may point anywhere before the cut), the
 * checkpoints and the events: each is refused or read, never out of bounds (run under ASan). */
static void cut_and_patched_recordings_fail_cleanly(void **state)
{
    (void)state;
    for (size_t i = 0; i < NRECORDINGS; i++) {
        blob b = load(recordings[i]);
        uint64_t cp = get_be64(b.data + 16), meta = get_be64(b.data + 24);
        size_t deep = 0, tries = 0;
        /* inside the metadata event */
        for (size_t n = (size_t)meta + 1; n < b.len && n < meta + 120000; n += 17, tries++)
            deep += cut_patched(&b, n, meta) == 1;
        /* inside the last checkpoint (async-profiler) or the events before the final one (JDK) */
        size_t tail = (size_t)(cp > meta ? cp : meta);
        for (size_t n = tail + 1; n < b.len; n += 7, tries++)
            deep += cut_patched(&b, n, cp) == 1;
        print_message("%s: %zu of %zu cuts refused past the header checks\n", recordings[i], deep,
                      tries);
        assert_true(deep > tries / 2);
        free(b.data);
    }
}

/* Any single corrupted byte: a clean refusal or a profile that holds together. */
static void survives_corrupted_bytes(void **state)
{
    (void)state;
    uint64_t rng = 88172645463325252ull;
    for (size_t i = 0; i < NRECORDINGS; i++) {
        blob b = load(recordings[i]);
        uint8_t *c = malloc(b.len);
        int refused = 0;
        for (int round = 0; round < 300; round++) {
            memcpy(c, b.data, b.len);
            for (int k = 0; k < 1 + round % 4; k++) {
                rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
                size_t at = (size_t)(rng >> 16) % b.len;
                c[at] = (uint8_t)(rng >> 8) ^ (uint8_t)(1 + (rng & 0x7f));
            }
            parsed p = parse_with(c, b.len, NULL);
            if (p.rc) {
                assert_true(p.rc == SP_EINVAL || p.rc == SP_ETOOBIG);
                assert_int_equal(p.err.code, p.rc);
                assert_true(p.err.msg[0] != 0);
                refused++;
            } else {
                check_tables(&p);
            }
            done(&p);
        }
        print_message("%s: %d of 300 corruptions refused\n", recordings[i], refused);
        free(c);
        free(b.data);
    }
}

static void names_what_is_wrong(void **state)
{
    (void)state;
    blob b = load("ap-cpu.jfr");
    uint8_t *c = malloc(b.len + 16);
    expect_einval(b.data, 0, "empty input");
    memcpy(c, b.data, b.len);
    c[0] = 'X';
    expect_einval(c, b.len, "chunk at 0: no \"FLR\\0\" magic");
    memcpy(c, b.data, b.len);
    c[5] = 3;
    expect_einval(c, b.len, "chunk at 0: format version 3.0");
    memcpy(c, b.data, b.len);
    put_be64(c + 24, 99999999);
    char msg[128];
    snprintf(msg, sizeof msg, "chunk at 0: metadata offset 99999999 beyond chunk size %zu", b.len);
    expect_einval(c, b.len, msg);
    memcpy(c, b.data, b.len);
    put_be64(c + 24, 0);
    expect_einval(c, b.len, "was not finished");
    memcpy(c, b.data, b.len);
    put_be64(c + 16, 12);
    expect_einval(c, b.len, "constant pool offset 12");
    memcpy(c, b.data, b.len);
    put_be64(c + 56, 0);
    expect_einval(c, b.len, "ticks per second is 0");
    memcpy(c, b.data, b.len);
    memset(c + b.len, 0, 16); /* padding after the last chunk is not a chunk */
    snprintf(msg, sizeof msg, "chunk at %zu: only 16 bytes left", b.len);
    expect_einval(c, b.len + 16, msg);
    free(c);
    free(b.data);
}

/* A symbol with a NUL or a byte that is not UTF-8 still names its frame, with '?' there
 * (tests/fuzz/corpus/fuzz_jfr/regression-nul-in-symbol). */
static void frame_names_are_clean_c_strings(void **state)
{
    (void)state;
    blob b = load("ap-cpu.jfr");
    uint8_t *sym = memmem(b.data, b.len,
                          "\x03\x03"
                          "fib",
                          5); /* UTF-8, 3 bytes: "fib" */
    assert_non_null(sym);
    sym[3] = 0;
    parsed p = parse_with(b.data, b.len, NULL);
    assert_int_equal(p.rc, 0);
    assert_true(share(find(&p, CPU)->profile, "Hot.f?b", 1) > 0.8);
    check_tables(&p);
    done(&p);
    sym[3] = 0xff;
    p = parse_with(b.data, b.len, NULL);
    assert_true(share(find(&p, CPU)->profile, "Hot.f?b", 1) > 0.8);
    done(&p);
    free(b.data);
}

static void limits_are_refused_or_counted(void **state)
{
    (void)state;
    blob two = concat("ap-cpu.jfr", "ap-cpu.jfr");
    otlp_jfr_options o = {.max_chunks = 1};
    parsed p = parse_with(two.data, two.len, &o);
    assert_int_equal(p.rc, SP_ETOOBIG);
    assert_non_null(strstr(p.err.msg, "max_chunks"));
    done(&p);

    o = (otlp_jfr_options){.max_stack_depth = 3};
    p = parse_with(two.data, two.len, &o);
    assert_int_equal(p.rc, 0);
    assert_true(p.r.truncated_stacks > 0);
    const sp_profile *cpu = find(&p, CPU)->profile;
    for (uint32_t k = 0; k < cpu->nsamples; k++)
        assert_true(cpu->samples[k].nlocations <= 3);
    assert_true(share(cpu, "Hot.fib", 1) > 0.8); /* the leaf-most frames are the ones kept */
    done(&p);

    o = (otlp_jfr_options){.max_pool_entries = 10};
    p = parse_with(two.data, two.len, &o);
    assert_int_equal(p.rc, SP_ETOOBIG);
    assert_non_null(strstr(p.err.msg, "max_pool_entries"));
    done(&p);

    o = (otlp_jfr_options){.max_types = 10};
    p = parse_with(two.data, two.len, &o);
    assert_int_equal(p.rc, SP_ETOOBIG);
    done(&p);

    o = (otlp_jfr_options){.work_budget = 64 << 10};
    p = parse_with(two.data, two.len, &o);
    assert_int_equal(p.rc, SP_ETOOBIG);
    done(&p);

    sp_arena *small = sp_arena_new(16 << 10); /* the caller's arena: output past its budget */
    otlp_jfr_result r;
    sp_err err;
    assert_int_equal(otlp_jfr_parse(two.data, two.len, NULL, small, &r, &err), SP_ETOOBIG);
    assert_int_equal(r.nprofiles, 0);
    sp_arena_free(small);
    free(two.data);
}

static void profiles_go_into_a_batch(void **state)
{
    (void)state;
    parsed p = parse_file("profile.jfr");
    sp_batch b = {.tenant = "t", .arena = p.a};
    sp_err err;
    assert_int_equal(otlp_jfr_add_to_batch(&p.r, &b, &err), 0);
    assert_int_equal(b.nprofiles, p.r.nprofiles);
    assert_ptr_equal(b.profiles[0], p.r.profiles[0].profile);
    done(&p);
}

/* ---------- the pieces ---------- */

static void frame_names_merge_generated_classes(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"jdk/internal/reflect/GeneratedMethodAccessor31",
         "jdk/internal/reflect/GeneratedMethodAccessor_"},
        {"org/example/rideshare/OrderService$$Lambda$669.0x0000000800fd7318",
         "org/example/rideshare/OrderService$$Lambda_"},
        {"Fib$$Lambda.0x00007ffa600c4da0", "Fib$$Lambda_"},
        {"Foo$$Lambda$12/0x0000000800c02000", "Foo$$Lambda_"},
        {"Foo$$Lambda123", "Foo$$Lambda_"},
        {"Foo$$Lambda$x", "Foo$$Lambda$x"},
        {"$$Lambda$1", "$$Lambda$1"}, /* ".+" needs a byte before */
        {"libzstd-jni-1.5.1-16931311898282279136.so", "libzstd-jni-_.so"},
        {"./tmp/libzstd-jni-1.5.1-1693.so (deleted)", "libzstd-jni-_.so"},
        {"./tmp/libamazonCorrettoCryptoProvider109b39cf33c563eb.so",
         "libamazonCorrettoCryptoProvider_.so"},
        {"./tmp/amazonCorrettoCryptoProviderNativeLibraries.7382c2f79097f415/libcrypto.so "
         "(deleted)",
         "libamazonCorrettoCryptoProvider_.so"},
        {"libasyncProfiler-linux-x64-17b9a1d8156277a98ccc871afa9a8f69215f92.so",
         "libasyncProfiler-_.so"},
        {"com/example/Foo$$EnhancerBySpringCGLIB$$8f2a1b",
         "com/example/Foo$$EnhancerBySpringCGLIB$$_"},
        {"java/lang/Thread", "java/lang/Thread"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[256];
        jfr_str in = {cases[i][0], (uint32_t)strlen(cases[i][0])};
        size_t n = jfr_name_merge(in, out);
        assert_true(n <= in.n);
        out[n] = 0;
        assert_string_equal(out, cases[i][1]);
    }
    char bad[] = "ok\xff\xc3(\xe2\x82\xac";
    jfr_str s = {bad, (uint32_t)strlen(bad)};
    assert_false(jfr_utf8_valid(s));
    char out[16];
    jfr_utf8_clean(s, out);
    assert_memory_equal(out,
                        "ok?"
                        "?(\xe2\x82\xac",
                        s.n); /* split: no trigraph */
}

typedef struct mini {
    jfr_ctx c;
    sp_err err;
} mini;

static void mini_init(mini *m)
{
    memset(m, 0, sizeof *m);
    m->c.err = &m->err;
    m->c.chunk = sp_arena_new(1 << 20);
}

/* W1: strings in the six encodings, and integers of every width. */
static void strings_and_integers_decode(void **state)
{
    (void)state;
    mini m;
    mini_init(&m);
    static const uint8_t in[] = {
        0,                            /* null */
        1,                            /* "" */
        2,    0x81, 0x01,             /* key 129 of the String pool */
        3,    3,    'a',  'b',  'c',  /* UTF-8 */
        4,    2,    'h',  0xE9, 0x01, /* UTF-16 code units: h, U+00E9 */
        5,    2,    'e',  0xE9,       /* Latin-1 */
        4,    3,    0xBD, 0xB0, 0x03, /* U+D83D, */
        0x80, 0xBC, 0x03, 'x',        /* U+DE00: a pair, U+1F600; then x */
        4,    1,    0x80, 0xB0, 0x03, /* a lone high surrogate, U+D800 */
    };
    jfr_rd r = {in, in, in + sizeof in};
    jfr_val v;
    const char *want[] = {
        "", "", NULL, "abc", "h\xc3\xa9", "e\xc3\xa9", "\xf0\x9f\x98\x80x", "\xef\xbf\xbd"};
    for (int i = 0; i < 8; i++) {
        memset(&v, 0, sizeof v);
        assert_int_equal(jfr_string(&m.c, &r, &v), 0);
        if (i == 2) {
            assert_int_equal(v.kind, JV_STRREF);
            assert_int_equal(v.i, 129);
            continue;
        }
        assert_int_equal(v.kind, JV_STR);
        assert_int_equal(v.s.n, strlen(want[i]));
        assert_memory_equal(v.s.s, want[i], v.s.n);
    }
    assert_ptr_equal(r.p, r.end);
    static const uint8_t bad[] = {6, 0};
    jfr_rd rb = {bad, bad, bad + 2};
    assert_int_equal(jfr_string(&m.c, &rb, &v), SP_EINVAL);
    assert_non_null(strstr(m.err.msg, "unknown string encoding 6"));
    static const uint8_t long_str[] = {3, 10, 'a'};
    jfr_rd rl = {long_str, long_str, long_str + 3};
    assert_int_equal(jfr_string(&m.c, &rl, &v), SP_EINVAL);
    assert_non_null(strstr(m.err.msg, "runs past the end"));

    /* 9 bytes carry 64 bits: the last byte is taken whole (RecordingInput.readLong). */
    static const uint8_t nine[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x05};
    for (size_t end = 9; end <= 10; end++) { /* the fast path and the careful one */
        jfr_rd rn = {nine, nine, nine + end};
        uint64_t x;
        assert_int_equal(jfr_varint(&m.c, &rn, &x, "n"), 0);
        assert_true(x == UINT64_MAX);
        assert_ptr_equal(rn.p, nine + 9);
    }
    jfr_rd cut = {nine, nine, nine + 4};
    uint64_t x;
    assert_int_equal(jfr_varint(&m.c, &cut, &x, "event size"), SP_EINVAL);
    assert_non_null(strstr(m.err.msg, "event size is cut off"));
    sp_arena_free(m.c.chunk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cpu_profile_shows_the_hot_method),
        cmocka_unit_test(allocation_profiles_name_the_allocating_method),
        cmocka_unit_test(lock_profiles_name_contend_and_park),
        cmocka_unit_test(type_ids_follow_pyroscope),
        cmocka_unit_test(frames_are_named_like_jfr_parser),
        cmocka_unit_test(timestamps_fall_within_the_recording),
        cmocka_unit_test(samples_carry_their_thread_and_the_jvm_pid),
        cmocka_unit_test(async_profiler_context_and_span_reach_samples),
        cmocka_unit_test(intervals_come_from_the_recording_settings),
        cmocka_unit_test(wall_recording_counts_sleeping_threads_in_wall_only),
        cmocka_unit_test(chunks_back_to_back_add_up),
        cmocka_unit_test(every_id_points_inside_its_tables),
        cmocka_unit_test(rejects_cut_recordings),
        cmocka_unit_test(cut_and_patched_recordings_fail_cleanly),
        cmocka_unit_test(survives_corrupted_bytes),
        cmocka_unit_test(names_what_is_wrong),
        cmocka_unit_test(frame_names_are_clean_c_strings),
        cmocka_unit_test(limits_are_refused_or_counted),
        cmocka_unit_test(profiles_go_into_a_batch),
        cmocka_unit_test(frame_names_merge_generated_classes),
        cmocka_unit_test(strings_and_integers_decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
