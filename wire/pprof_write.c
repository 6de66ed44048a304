/* pprof writing: sp_profile → a serialized perftools.profiles.Profile (profile.proto), for pprof
 * downloads (query/) and the Pyroscope pusher (delivery/). */
#include "pprof_write.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------- encoding: a small protobuf writer, no intermediate structs ---------- */

static int put_key(sp_buf *b, uint32_t field, uint32_t wt)
{
    return sp_buf_put_varint(b, (uint64_t)field << 3 | wt);
}

static int put_uint(sp_buf *b, uint32_t field, uint64_t v)
{
    if (!v)
        return 0; /* proto3 default: omitted */
    return put_key(b, field, 0) || sp_buf_put_varint(b, v);
}

/* Nested messages are written into a scratch buffer, then length-prefixed into the parent. */
static int put_msg(sp_buf *b, uint32_t field, sp_buf *inner)
{
    int rc = sp_buf_put_pb_len(b, field, inner->data, inner->len);
    inner->len = 0;
    return rc;
}

static void hex(const uint8_t *p, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[p[i] >> 4];
        out[2 * i + 1] = d[p[i] & 15];
    }
    out[2 * n] = 0;
}

typedef struct extra_strings {
    sp_buf *out;
    uint32_t next; /* index the next added string gets */
    sp_buf table;  /* field-6 entries, appended after the profile's own strings */
} extra_strings;

static uint32_t add_string(extra_strings *x, const char *s)
{
    if (sp_buf_put_pb_len(&x->table, 6, s, strlen(s)))
        return 0;
    return x->next++;
}

int wire_pprof_encode(const sp_profile *p, sp_buf *out, sp_err *err)
{
    return wire_pprof_encode_ex(p, 0, out, err);
}

int wire_pprof_encode_ex(const sp_profile *p, int flags, sp_buf *out, sp_err *err)
{
    sp_buf m, l;
    sp_buf_init(&m, 0);
    sp_buf_init(&l, 0);
    extra_strings x = {.out = out, .next = p->nstrings ? p->nstrings : 1};
    sp_buf_init(&x.table, 0);
    uint32_t k_span = add_string(&x, "span_id"), k_trace = add_string(&x, "trace_id"),
             k_pid = add_string(&x, "process_pid"), k_tid = add_string(&x, "thread_id"),
             k_tname = add_string(&x, "thread_name");
    int rc = 0;

    /* sample_type = 1 */
    rc |= put_uint(&m, 1, p->sample_type) | put_uint(&m, 2, p->sample_unit);
    rc |= put_msg(out, 1, &m);
    /* sample = 2 */
    for (uint32_t i = 0; i < p->nsamples && !rc; i++) {
        const sp_sample *s = &p->samples[i];
        if (s->nlocations) {
            for (uint32_t k = 0; k < s->nlocations; k++)
                rc |= sp_buf_put_varint(&l, s->location_ids[k]);
            rc |= put_msg(&m, 1, &l);
        }
        rc |= sp_buf_put_varint(&l, (uint64_t)s->value) | put_msg(&m, 2, &l);
        for (uint32_t k = 0; k < s->nlabels; k++) {
            const sp_label *lb = &s->labels[k];
            rc |= put_uint(&l, 1, lb->key) | put_uint(&l, 2, lb->str) |
                  put_uint(&l, 3, (uint64_t)lb->num) | put_uint(&l, 4, lb->num_unit);
            rc |= put_msg(&m, 3, &l);
        }
        const sp_span_ref *span = s->nspans ? &s->spans[0] : s->has_link ? &s->link : NULL;
        static const uint8_t zero[16];
        if (span) {
            char h[33];
            hex(span->span_id, 8, h);
            rc |= put_uint(&l, 1, k_span) | put_uint(&l, 2, add_string(&x, h)) | put_msg(&m, 3, &l);
            if (memcmp(span->trace_id, zero, 16) != 0) {
                hex(span->trace_id, 16, h);
                rc |= put_uint(&l, 1, k_trace) | put_uint(&l, 2, add_string(&x, h)) |
                      put_msg(&m, 3, &l);
            }
        }
        if (s->pid)
            rc |= put_uint(&l, 1, k_pid) | put_uint(&l, 3, (uint64_t)s->pid) | put_msg(&m, 3, &l);
        if (s->tid)
            rc |= put_uint(&l, 1, k_tid) | put_uint(&l, 3, (uint64_t)s->tid) | put_msg(&m, 3, &l);
        if (s->thread_name)
            rc |= put_uint(&l, 1, k_tname) | put_uint(&l, 2, s->thread_name) | put_msg(&m, 3, &l);
        rc |= put_msg(out, 2, &m);
    }
    /* mapping = 3 */
    for (uint32_t i = 1; i < p->nmappings && !rc; i++) {
        const sp_mapping *mp = &p->mappings[i];
        rc |= put_uint(&m, 1, i) | put_uint(&m, 2, mp->memory_start) |
              put_uint(&m, 3, mp->memory_limit) | put_uint(&m, 4, mp->file_offset) |
              put_uint(&m, 5, mp->filename) | put_uint(&m, 6, mp->build_id) |
              put_uint(&m, 7, mp->has_functions) | put_uint(&m, 8, mp->has_filenames) |
              put_uint(&m, 9, mp->has_line_numbers) | put_uint(&m, 10, mp->has_inline_frames);
        rc |= put_msg(out, 3, &m);
    }
    /* location = 4; made_of[f]: the location whose made-up name function f leaves to readers */
    uint32_t *made_of = NULL;
    for (uint32_t i = 1; i < p->nlocations && !rc; i++) {
        const sp_location *lc = &p->locations[i];
        uint32_t fid = lc->nlines == 1 ? lc->lines[0].function_id : 0;
        if (fid && fid < p->nfunctions && p->functions[fid].made_up && !p->functions[fid].name) {
            if (!made_of && !(made_of = calloc(p->nfunctions, sizeof *made_of)))
                rc = 1;
            else
                made_of[fid] = i;
        }
        rc |= put_uint(&m, 1, i) | put_uint(&m, 2, lc->mapping_id) | put_uint(&m, 3, lc->address);
        for (uint32_t k = 0; k < lc->nlines; k++) {
            rc |= put_uint(&l, 1, lc->lines[k].function_id) |
                  put_uint(&l, 2, (uint64_t)lc->lines[k].line) |
                  put_uint(&l, 3, (uint64_t)lc->lines[k].column);
            rc |= put_msg(&m, 4, &l);
        }
        if ((flags & WIRE_PPROF_FRAME_TYPES) && lc->frame_type)
            rc |= put_uint(&m, WIRE_PPROF_LOCATION_FRAME_TYPE, lc->frame_type);
        rc |= put_msg(out, 4, &m);
    }
    /* function = 5 */
    for (uint32_t i = 1; i < p->nfunctions && !rc; i++) {
        const sp_function *f = &p->functions[i];
        uint32_t name = f->name, sys = f->system_name;
        if (made_of && made_of[i]) { /* the name sp_location_names() makes (common/profile.h) */
            const char *nm[1];
            char buf[SP_FRAME_NAME_MAX];
            if (sp_location_names(p, made_of[i], nm, NULL, 1, buf) == 1)
                name = sys = add_string(&x, nm[0]);
        }
        rc |= put_uint(&m, 1, i) | put_uint(&m, 2, name) | put_uint(&m, 3, sys) |
              put_uint(&m, 4, f->filename) | put_uint(&m, 5, (uint64_t)f->start_line);
        rc |= put_msg(out, 5, &m);
    }
    free(made_of);
    /* string_table = 6: the profile's strings, then the ones added above */
    if (!rc)
        rc |= sp_buf_put_pb_len(out, 6, "", 0);
    for (uint32_t i = 1; i < p->nstrings && !rc; i++)
        rc |= sp_buf_put_pb_len(out, 6, p->strings[i],
                                p->string_lens ? p->string_lens[i] : strlen(p->strings[i]));
    if (!rc)
        rc |= sp_buf_append(out, x.table.data, x.table.len);
    rc |=
        put_uint(out, 9, (uint64_t)p->time_nanos) | put_uint(out, 10, (uint64_t)p->duration_nanos);
    if (p->period_type || p->period_unit) {
        rc |= put_uint(&m, 1, p->period_type) | put_uint(&m, 2, p->period_unit);
        rc |= put_msg(out, 11, &m);
    }
    rc |= put_uint(out, 12, (uint64_t)p->period);
    sp_buf_free(&m);
    sp_buf_free(&l);
    sp_buf_free(&x.table);
    return rc ? sp_fail(err, SP_ETOOBIG, "pprof output exceeds its limit") : 0;
}
