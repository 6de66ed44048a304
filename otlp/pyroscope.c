#include "pyroscope.h"
#include "jfr.h"
#include "../common/arena.h"
#include "../common/base64.h"
#include "../common/hex.h"
#include "../common/strtab.h"
#include "../common/log.h"
#include "../common/metrics.h"
#include "../wire/compress.h"
#include "convert.h"
#include "../wire/grpc.h"
#include "../wire/pb.h"
#include "pprof.h"

#include "push/v1/push.pb-c.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---------- app{k=v} names ---------- */

static int add_kv(sp_arena *a, sp_kv **kv, uint32_t *n, uint32_t *cap, const char *name,
                  size_t nlen, const char *value, size_t vlen)
{
    if (*n == *cap) {
        uint32_t c = *cap * 2 + 8;
        sp_kv *x = sp_arena_alloc(a, c * sizeof *x);
        if (!x)
            return SP_ETOOBIG;
        if (*n)
            memcpy(x, *kv, *n * sizeof *x);
        *kv = x;
        *cap = c;
    }
    char *nm = sp_arena_strndup(a, name, nlen), *v = sp_arena_strndup(a, value, vlen);
    if (!nm || !v)
        return SP_ETOOBIG;
    for (uint32_t i = 0; i < *n; i++)
        if (strcmp((*kv)[i].name, nm) == 0) {
            (*kv)[i].value = v; /* a later duplicate wins, as in Pyroscope's key parser */
            return 0;
        }
    (*kv)[*n].name = otlp_label_name(a, nm);
    (*kv)[*n].value = v;
    if (!(*kv)[*n].name)
        return SP_ETOOBIG;
    (*n)++;
    return 0;
}

static void trim(const char **s, size_t *n)
{
    while (*n && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*n)--;
    }
    while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
        (*n)--;
}

int otlp_pyroscope_parse_name(const char *name, sp_arena *a, sp_kv **labels, uint32_t *n,
                              sp_err *err)
{
    uint32_t cap = 0;
    *labels = NULL;
    *n = 0;
    const char *brace = strchr(name, '{');
    size_t applen = brace ? (size_t)(brace - name) : strlen(name);
    const char *app = name;
    trim(&app, &applen);
    if (applen == 0)
        return sp_fail(err, SP_EINVAL, "name \"%s\": the application name is empty", name);
    if (add_kv(a, labels, n, &cap, "service_name", 12, app, applen))
        return sp_fail(err, SP_ETOOBIG, "name too large");
    if (!brace)
        return 0;
    const char *end = strrchr(brace, '}');
    if (!end || end[1])
        return sp_fail(err, SP_EINVAL, "name \"%s\": labels must end with '}'", name);
    const char *p = brace + 1;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma ? comma : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        if (!eq) {
            const char *k = p;
            size_t kl = (size_t)(stop - p);
            trim(&k, &kl);
            if (kl)
                return sp_fail(err, SP_EINVAL, "name \"%s\": label \"%.*s\" has no '='", name,
                               (int)kl, k);
        } else {
            const char *k = p, *v = eq + 1;
            size_t kl = (size_t)(eq - p), vl = (size_t)(stop - v);
            trim(&k, &kl);
            trim(&v, &vl);
            if (!kl)
                return sp_fail(err, SP_EINVAL, "name \"%s\": a label has an empty name", name);
            if (add_kv(a, labels, n, &cap, k, kl, v, vl))
                return sp_fail(err, SP_ETOOBIG, "name too large");
        }
        p = stop + 1;
    }
    return 0;
}

/* ---------- collapsed stacks ("folded": `a;b;c 12` per line, root first) ---------- */

typedef struct folded_type {
    const char *suffix, *name, *type, *unit, *ptype, *punit;
} folded_type;

/* Pyroscope's legacy metric suffixes (app.cpu, app.alloc_objects, ...) and its units. */
static const folded_type folded_types[] = {
    {"cpu", "process_cpu", "cpu", "nanoseconds", "cpu", "nanoseconds"},
    {"itimer", "process_cpu", "cpu", "nanoseconds", "cpu", "nanoseconds"},
    {"wall", "wall", "wall", "nanoseconds", "wall", "nanoseconds"},
    {"alloc_objects", "memory", "alloc_objects", "count", "space", "bytes"},
    {"alloc_space", "memory", "alloc_space", "bytes", "space", "bytes"},
    {"inuse_objects", "memory", "inuse_objects", "count", "space", "bytes"},
    {"inuse_space", "memory", "inuse_space", "bytes", "space", "bytes"},
    {"goroutines", "goroutine", "goroutine", "count", "goroutine", "count"},
    {"mutex_count", "mutex", "contentions", "count", "contentions", "count"},
    {"mutex_duration", "mutex", "delay", "nanoseconds", "contentions", "count"},
    {"block_count", "block", "contentions", "count", "contentions", "count"},
    {"block_duration", "block", "delay", "nanoseconds", "contentions", "count"},
};

static const folded_type *folded_type_for(sp_kv *labels, const char *units)
{
    /* service_name is labels[0] from parse_name: strip a known suffix from it. */
    char *svc = (char *)labels[0].value;
    char *dot = strrchr(svc, '.');
    if (dot)
        for (size_t i = 0; i < sizeof folded_types / sizeof folded_types[0]; i++)
            if (strcmp(dot + 1, folded_types[i].suffix) == 0) {
                *dot = 0;
                return &folded_types[i];
            }
    if (units) {
        if (strcmp(units, "objects") == 0)
            return &folded_types[3];
        if (strcmp(units, "bytes") == 0)
            return &folded_types[4];
        if (strcmp(units, "goroutines") == 0)
            return &folded_types[7];
        if (strcmp(units, "lock_samples") == 0)
            return &folded_types[8];
        if (strcmp(units, "lock_nanoseconds") == 0)
            return &folded_types[9];
    }
    return &folded_types[0];
}

/* Collapsed stacks: each distinct frame name becomes one function and one location (ids equal to
 * the function's string order), each line one sample. */
static int folded_decode(const char *text, size_t len, sp_kv *labels, uint32_t nlabels,
                         const char *units, int64_t sample_rate, int64_t t0, int64_t dur,
                         sp_batch *out, sp_err *err)
{
    sp_arena *a = out->arena;
    const folded_type *ft = folded_type_for(labels, units);
    sp_strtab t;
    if (sp_strtab_init(&t, a, NULL, 0))
        return sp_fail(err, SP_ETOOBIG, "profile too large for the request budget");
    /* function id == location id; name string index -> id */
    uint32_t *fid_of = NULL, cap_fid = 0, nfuncs = 1;
    uint32_t *fname = NULL;
    size_t cap_samples = 64, nsamples = 0;
    sp_sample *samples = sp_arena_alloc(a, cap_samples * sizeof *samples);
    int64_t scale = 1, period = 0;
    if (strcmp(ft->type, "cpu") == 0) {
        if (sample_rate <= 0)
            sample_rate = 100;
        period = 1000000000LL / sample_rate;
        scale = period; /* one collapsed sample is one sampling period of CPU time */
    }
    if (!samples)
        return sp_fail(err, SP_ETOOBIG, "profile too large for the request budget");
    size_t lineno = 0;
    for (size_t pos = 0; pos < len;) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - line) : len - pos;
        pos += ll + 1;
        lineno++;
        if (ll && line[ll - 1] == '\r')
            ll--;
        if (ll == 0)
            continue;
        const char *sp = NULL;
        for (size_t i = ll; i > 0; i--)
            if (line[i - 1] == ' ') {
                sp = line + i - 1;
                break;
            }
        if (!sp)
            return sp_fail(err, SP_EINVAL, "line %zu: expected \"frame;frame;... count\"", lineno);
        char *end;
        char num[32];
        size_t numlen = (size_t)(line + ll - sp - 1);
        if (numlen == 0 || numlen >= sizeof num)
            return sp_fail(err, SP_EINVAL, "line %zu: missing sample count", lineno);
        memcpy(num, sp + 1, numlen);
        num[numlen] = 0;
        long long v = strtoll(num, &end, 10);
        if (*end || v < 0)
            return sp_fail(err, SP_EINVAL, "line %zu: \"%s\" is not a count", lineno, num);
        /* Frames, root first in the text; pprof wants leaf first. */
        size_t nframes = 1;
        for (const char *p = line; p < sp; p++)
            nframes += *p == ';';
        uint32_t *ids = sp_arena_alloc(a, nframes * sizeof *ids);
        if (!ids)
            return sp_fail(err, SP_ETOOBIG, "profile too large for the request budget");
        size_t k = nframes;
        const char *f = line;
        while (f <= sp && k > 0) {
            const char *semi = memchr(f, ';', (size_t)(sp - f));
            const char *fe = semi ? semi : sp;
            uint32_t s = sp_strtab_intern(&t, f, (size_t)(fe - f));
            if (s == 0)
                s = sp_strtab_intern(&t, "?", 1); /* an empty frame name still needs a name */
            if (s >= cap_fid) {
                uint32_t c = cap_fid * 2 + 256;
                while (c <= s)
                    c *= 2;
                uint32_t *x = sp_arena_calloc(a, c, sizeof *x);
                if (!x)
                    return sp_fail(err, SP_ETOOBIG, "profile too large for the request budget");
                if (cap_fid)
                    memcpy(x, fid_of, cap_fid * sizeof *x);
                fid_of = x;
                cap_fid = c;
            }
            if (!fid_of[s]) {
                if ((nfuncs & (nfuncs - 1)) == 0) {
                    uint32_t *x = sp_arena_alloc(a, nfuncs * 2 * sizeof *x);
                    if (!x)
                        return sp_fail(err, SP_ETOOBIG, "profile too large");
                    if (fname)
                        memcpy(x, fname, nfuncs * sizeof *x);
                    fname = x;
                }
                fname[nfuncs] = s;
                fid_of[s] = nfuncs++;
            }
            ids[--k] = fid_of[s];
            f = fe + 1;
        }
        if (nsamples == cap_samples) {
            sp_sample *x = sp_arena_alloc(a, cap_samples * 2 * sizeof *x);
            if (!x)
                return sp_fail(err, SP_ETOOBIG, "profile too large for the request budget");
            memcpy(x, samples, nsamples * sizeof *x);
            samples = x;
            cap_samples *= 2;
        }
        sp_sample *s = &samples[nsamples++];
        memset(s, 0, sizeof *s);
        s->location_ids = ids + k;
        s->nlocations = (uint32_t)(nframes - k);
        s->value = sp_sat_mul(v, scale);
    }
    sp_function *funcs = sp_arena_calloc(a, nfuncs, sizeof *funcs);
    sp_location *locs = sp_arena_calloc(a, nfuncs, sizeof *locs);
    sp_line *lines = sp_arena_calloc(a, nfuncs, sizeof *lines);
    sp_profile *p = sp_arena_calloc(a, 1, sizeof *p);
    if (!funcs || !locs || !lines || !p)
        return sp_fail(err, SP_ETOOBIG, "profile too large for the request budget");
    for (uint32_t i = 1; i < nfuncs; i++) {
        funcs[i].name = funcs[i].system_name = fname[i];
        lines[i].function_id = i;
        locs[i].lines = &lines[i];
        locs[i].nlines = 1;
    }
    p->name = ft->name;
    p->sample_type = sp_strtab_intern(&t, ft->type, strlen(ft->type));
    p->sample_unit = sp_strtab_intern(&t, ft->unit, strlen(ft->unit));
    p->period_type = sp_strtab_intern(&t, ft->ptype, strlen(ft->ptype));
    p->period_unit = sp_strtab_intern(&t, ft->punit, strlen(ft->punit));
    p->period = period;
    char id[256];
    snprintf(id, sizeof id, "%s:%s:%s:%s:%s", ft->name, ft->type, ft->unit, ft->ptype, ft->punit);
    p->type_id = sp_arena_strndup(a, id, strlen(id));
    p->time_nanos = t0;
    p->duration_nanos = dur;
    p->samples = samples;
    p->nsamples = (uint32_t)nsamples;
    p->functions = funcs;
    p->nfunctions = nfuncs;
    p->locations = locs;
    p->nlocations = nfuncs;
    p->mappings = sp_arena_calloc(a, 1, sizeof *p->mappings);
    p->nmappings = 1;
    if (sp_profile_set_series(p, a, ft->name, labels, nlabels))
        return sp_fail(err, SP_ETOOBIG, "profile too large for the request budget");
    p->strings = t.s;
    p->string_lens = t.len;
    p->nstrings = t.n;
    if (sp_batch_add_profile(out, p))
        return sp_fail(err, SP_ETOOBIG, "profile too large for the request budget");
    return 0;
}

/* ---------- multipart/form-data (RFC 7578), as the Go SDK sends it ---------- */

typedef struct part {
    const uint8_t *data;
    size_t len;
} part;

static const uint8_t *find(const uint8_t *h, size_t hl, const void *n, size_t nl)
{
    return nl <= hl ? memmem(h, hl, n, nl) : NULL;
}

static int boundary_of(const char *ct, char *out, size_t outsz)
{
    const char *b = strcasestr(ct, "boundary=");
    if (!b)
        return -1;
    b += 9;
    size_t n;
    if (*b == '"') {
        b++;
        const char *q = strchr(b, '"');
        if (!q)
            return -1;
        n = (size_t)(q - b);
    } else {
        n = strcspn(b, "; \t");
    }
    if (n == 0 || n + 1 > outsz || n > 70)
        return -1;
    memcpy(out, b, n);
    out[n] = 0;
    return 0;
}

/* Finds the parts named `want` (required) and `also` (optional): "profile" and
 * "sample_type_config" from the Go SDK, "jfr" and "labels" from the Java agent. */
static int multipart_parts(const uint8_t *body, size_t len, const char *ct, const char *want,
                           part *profile, const char *also, part *config, sp_err *err)
{
    char bnd[80], delim[90];
    if (boundary_of(ct, bnd, sizeof bnd))
        return sp_fail(err, SP_EINVAL, "multipart body without a valid boundary parameter");
    int dl = snprintf(delim, sizeof delim, "--%s", bnd);
    const uint8_t *p = find(body, len, delim, (size_t)dl);
    memset(profile, 0, sizeof *profile);
    memset(config, 0, sizeof *config);
    while (p) {
        p += dl;
        size_t left = len - (size_t)(p - body);
        if (left >= 2 && p[0] == '-' && p[1] == '-')
            break; /* closing delimiter */
        const uint8_t *hend = find(p, left, "\r\n\r\n", 4);
        if (!hend)
            return sp_fail(err, SP_EINVAL, "multipart part without a header end");
        const uint8_t *data = hend + 4;
        char nd[94];
        int ndl = snprintf(nd, sizeof nd, "\r\n--%s", bnd);
        const uint8_t *next = find(data, len - (size_t)(data - body), nd, (size_t)ndl);
        if (!next)
            return sp_fail(err, SP_EINVAL, "multipart part is not terminated by its boundary");
        /* the name="..." parameter of Content-Disposition, within this part's headers */
        size_t hl = (size_t)(hend - p);
        part *dst = NULL;
        char n1[48], n2[48];
        int l1 = snprintf(n1, sizeof n1, "name=\"%s\"", want);
        int l2 = snprintf(n2, sizeof n2, "name=\"%s\"", also);
        if (find(p, hl, n1, (size_t)l1))
            dst = profile;
        else if (find(p, hl, n2, (size_t)l2))
            dst = config;
        if (dst) {
            dst->data = data;
            dst->len = (size_t)(next - data);
        }
        p = next + 2; /* at "--boundary" */
    }
    if (!profile->data)
        return sp_fail(err, SP_EINVAL, "multipart body has no \"%s\" part", want);
    return 0;
}

static int multipart_parse(const uint8_t *body, size_t len, const char *ct, part *profile,
                           part *config, sp_err *err)
{
    return multipart_parts(body, len, ct, "profile", profile, "sample_type_config", config, err);
}

/* sample_type_config: {"alloc_space": {"units": "bytes", "display-name": "..."}, ...} */
static int display_names(const part *cfg, sp_arena *a, sp_kv **out, uint32_t *n, sp_err *err)
{
    *out = NULL;
    *n = 0;
    if (!cfg->data || !cfg->len)
        return 0;
    json_error_t je;
    json_t *root = json_loadb((const char *)cfg->data, cfg->len, 0, &je);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return sp_fail(err, SP_EINVAL, "sample_type_config is not a JSON object: %s", je.text);
    }
    size_t cap = json_object_size(root);
    *out = sp_arena_alloc(a, (cap + 1) * sizeof **out);
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        const char *dn = json_string_value(json_object_get(val, "display-name"));
        if (dn && *out) {
            (*out)[*n].name = sp_arena_strndup(a, key, strlen(key));
            (*out)[*n].value = sp_arena_strndup(a, dn, strlen(dn));
            (*n)++;
        }
    }
    json_decref(root);
    return 0;
}

/* ---------- shared: decompress, decode pprof, hand to the sink ---------- */

static int maybe_gunzip(const uint8_t **data, size_t *len, size_t limit, sp_buf *scratch,
                        sp_err *err)
{
    if (*len >= 2 && (*data)[0] == 0x1f && (*data)[1] == 0x8b) {
        scratch->len = 0;
        int rc = wire_decompress(WIRE_ENC_GZIP, *data, *len, limit, scratch, err);
        if (rc)
            return rc;
        *data = scratch->data;
        *len = scratch->len;
    }
    return 0;
}

/* Pyroscope's from/until: unix time in s, ms, µs or ns (told apart by magnitude, as Pyroscope
 * does), or "now" / "now-<n><unit>" with s, m, h, d. def when absent or unreadable. */
static int64_t parse_time(const char *s, int64_t now, int64_t def)
{
    if (!s || !*s)
        return def;
    char *end;
    if (strncmp(s, "now", 3) == 0) {
        if (!s[3])
            return now;
        if (s[3] != '-')
            return def;
        long long n = strtoll(s + 4, &end, 10);
        int64_t unit = *end == 's'   ? 1
                       : *end == 'm' ? 60
                       : *end == 'h' ? 3600
                       : *end == 'd' ? 86400
                                     : 0;
        if (end == s + 4 || !unit || end[1] || n < 0)
            return def;
        return now - sp_sat_mul(sp_sat_mul(n, unit), 1000000000LL);
    }
    long long v = strtoll(s, &end, 10);
    if (*end || end == s || v < 0)
        return def;
    if (v >= 100000000000000000LL) /* ns */
        return v;
    if (v >= 100000000000000LL) /* µs */
        return v * 1000LL;
    if (v >= 100000000000LL) /* ms */
        return v * 1000000LL;
    return v * 1000000000LL;
}

static void finish(const otlp_pyroscope_config *cfg, const srv_request *req, srv_response *resp,
                   sp_batch *b, const otlp_pprof_result *res, int connect)
{
    sp_err err = {0};
    int rc = 0;
    if (res && res->bad_samples && res->bad_samples == res->samples)
        rc = sp_fail(&err, SP_EINVAL, "every sample was rejected; first: %s", res->first.msg);
    if (!rc && cfg->sink.write && b->nprofiles)
        rc = cfg->sink.write(cfg->sink.ud, req, b, &err);
    uint64_t n = 0;
    for (size_t i = 0; i < b->nprofiles; i++)
        n += b->profiles[i]->nsamples;
    sp_metrics_items(req->endpoint, rc ? 0 : n, res ? res->bad_samples : 0);
    if (rc) {
        srv_report_refusal(req, err.code ? err.code : rc, n, err.msg);
        if (connect)
            srv_response_connect_error(resp, &err);
        else
            srv_response_error(resp, req, &err);
        return;
    }
    if (res && res->bad_samples) /* stored what was good; say what was not */
        srv_report_refusal(req, 0, res->bad_samples, res->first.msg);
    if (connect) {
        const char *ct = srv_header_get(req, "content-type");
        int json = ct && strncasecmp(ct, "application/json", 16) == 0;
        /* PushResponse{}: empty in proto, {} in JSON */
        srv_response_send(resp, 200, json ? "application/json" : "application/proto",
                          json ? "{}" : "", json ? 2 : 0);
    } else if (res && res->bad_samples) {
        char msg[700];
        int k = snprintf(msg, sizeof msg, "rejected %zu of %zu samples; first: %s\n",
                         res->bad_samples, res->samples, res->first.msg);
        srv_response_send(resp, 200, "text/plain; charset=utf-8", msg,
                          k > 0 && (size_t)k < sizeof msg ? (size_t)k : strlen(msg));
    } else
        srv_response_send(resp, 200, NULL, NULL, 0);
}

/* ---------- JFR, as the Pyroscope Java agent sends it ---------- */

/* The agent's `labels` part: LabelsSnapshot{map<int64, Context> contexts = 1;
 * map<int64, string> strings = 2}, Context{map<int64, int64> labels = 1} (ids into strings):
 * what Pyroscope.LabelsWrapper (dynamic labels) and io.pyroscope:otel (span_id / profile_id,
 * span_name) set per async-profiler context. */
typedef struct ctx_label {
    uint64_t context;
    const char *key, *value;
    size_t klen, vlen;
} ctx_label;

static int cmp_ctx(const void *x, const void *y)
{
    const ctx_label *a = x, *b = y;
    return a->context < b->context ? -1 : a->context > b->context;
}

/* The string of id in the strings map (field 2), or NULL. */
static const char *label_string(const uint8_t *p, size_t len, uint64_t id, size_t *n)
{
    const uint8_t *end = p + len;
    wire_pb_field f, g;
    while (p < end) {
        if (wire_pb_next(&p, end, p, &f, NULL) != 0)
            return NULL;
        if (f.num != 2 || f.wt != WIRE_WT_LEN)
            continue;
        uint64_t key = 0;
        const uint8_t *q = f.val, *qe = f.val + f.vlen, *val = NULL;
        size_t vlen = 0;
        while (q < qe && wire_pb_next(&q, qe, q, &g, NULL) == 0) {
            if (g.num == 1 && g.wt == WIRE_WT_VARINT)
                key = g.varint;
            else if (g.num == 2 && g.wt == WIRE_WT_LEN) {
                val = g.val;
                vlen = g.vlen;
            }
        }
        if (key == id && val) {
            *n = vlen;
            return (const char *)val;
        }
    }
    return NULL;
}

/* Every (context, key, value) of the part, sorted by context. SP_EINVAL when the part is not a
 * LabelsSnapshot. Strings point into the part. */
static int context_labels(const part *lab, sp_arena *a, ctx_label **out, size_t *nout, sp_err *err)
{
    *out = NULL;
    *nout = 0;
    const uint8_t *p = lab->data, *end = lab->data + lab->len;
    size_t cap = 0;
    wire_pb_field f, g, h, k;
    while (p < end) {
        if (wire_pb_next(&p, end, lab->data, &f, err) != 0) {
            sp_err_prefix(err, "labels part: ");
            return SP_EINVAL;
        }
        if (f.num != 1 || f.wt != WIRE_WT_LEN)
            continue;
        uint64_t context = 0;
        const uint8_t *q = f.val, *qe = f.val + f.vlen;
        const uint8_t *cv = NULL;
        size_t cvl = 0;
        while (q < qe && wire_pb_next(&q, qe, q, &g, NULL) == 0) {
            if (g.num == 1 && g.wt == WIRE_WT_VARINT)
                context = g.varint;
            else if (g.num == 2 && g.wt == WIRE_WT_LEN) {
                cv = g.val;
                cvl = g.vlen;
            }
        }
        const uint8_t *r = cv, *re = cv ? cv + cvl : NULL;
        while (r && r < re && wire_pb_next(&r, re, r, &h, NULL) == 0) {
            if (h.num != 1 || h.wt != WIRE_WT_LEN)
                continue;
            uint64_t kid = 0, vid = 0;
            const uint8_t *s = h.val, *se = h.val + h.vlen;
            while (s < se && wire_pb_next(&s, se, s, &k, NULL) == 0) {
                if (k.num == 1 && k.wt == WIRE_WT_VARINT)
                    kid = k.varint;
                else if (k.num == 2 && k.wt == WIRE_WT_VARINT)
                    vid = k.varint;
            }
            ctx_label l = {context, NULL, NULL, 0, 0};
            l.key = label_string(lab->data, lab->len, kid, &l.klen);
            l.value = l.key ? label_string(lab->data, lab->len, vid, &l.vlen) : NULL;
            if (!l.value || !l.klen || !l.vlen || memchr(l.key, 0, l.klen) ||
                memchr(l.value, 0, l.vlen))
                continue;
            if (*nout == cap) {
                size_t nc = cap ? cap * 2 : 16;
                ctx_label *v = sp_arena_alloc(a, nc * sizeof *v);
                if (!v)
                    return sp_fail(err, SP_ETOOBIG, "labels part too large for the request budget");
                if (*nout)
                    memcpy(v, *out, *nout * sizeof *v);
                *out = v;
                cap = nc;
            }
            (*out)[(*nout)++] = l;
        }
    }
    if (*nout)
        qsort(*out, *nout, sizeof **out, cmp_ctx);
    return 0;
}

static int is_span_label(const ctx_label *l)
{
    return (l->klen == 7 && memcmp(l->key, "span_id", 7) == 0) ||
           (l->klen == 10 && memcmp(l->key, "profile_id", 10) == 0);
}

/* The string table every JFR profile shares, extended with the labels' keys and values (index
 * of s, added when new; 0 when out of memory). */
typedef struct strtab_ext {
    const char **s;
    uint32_t *len;
    uint32_t n, cap;
} strtab_ext;

static uint32_t ext_intern(strtab_ext *t, sp_arena *a, uint32_t first_new, const char *s, size_t n)
{
    for (uint32_t i = first_new; i < t->n; i++)
        if (t->len[i] == n && memcmp(t->s[i], s, n) == 0)
            return i;
    if (t->n == t->cap) {
        uint32_t nc = t->cap * 2;
        const char **ns = sp_arena_alloc(a, nc * sizeof *ns);
        uint32_t *nl = sp_arena_alloc(a, nc * sizeof *nl);
        if (!ns || !nl)
            return 0;
        memcpy(ns, t->s, t->n * sizeof *ns);
        memcpy(nl, t->len, t->n * sizeof *nl);
        t->s = ns;
        t->len = nl;
        t->cap = nc;
    }
    char *copy = sp_arena_strndup(a, s, n);
    if (!copy)
        return 0;
    t->s[t->n] = copy;
    t->len[t->n] = (uint32_t)n;
    return t->n++;
}

/* Applies the agent's labels to r's samples: a context's span id becomes the samples' explicit
 * link (over async-profiler's own spanId), its other labels (span_name, the app's dynamic
 * labels) become sample labels, which the store turns into series labels as Pyroscope does. */
static int apply_context_labels(const otlp_jfr_result *r, const ctx_label *cl, size_t ncl,
                                sp_arena *a, sp_err *err)
{
    if (!r->nprofiles || !ncl)
        return 0;
    sp_profile *p0 = r->profiles[0].profile;
    strtab_ext t = {NULL, NULL, p0->nstrings, p0->nstrings + 16};
    t.s = sp_arena_alloc(a, t.cap * sizeof *t.s);
    t.len = sp_arena_alloc(a, t.cap * sizeof *t.len);
    if (!t.s || !t.len)
        return sp_fail(err, SP_ETOOBIG, "labels too large for the request budget");
    memcpy(t.s, p0->strings, p0->nstrings * sizeof *t.s);
    for (uint32_t i = 0; i < p0->nstrings; i++)
        t.len[i] = p0->string_lens ? p0->string_lens[i] : (uint32_t)strlen(p0->strings[i]);
    uint32_t first_new = p0->nstrings;
    for (uint32_t i = 0; i < r->nprofiles; i++) {
        const otlp_jfr_profile *jp = &r->profiles[i];
        for (uint32_t k = 0; jp->context_ids && k < jp->profile->nsamples; k++) {
            ctx_label key = {jp->context_ids[k], NULL, NULL, 0, 0};
            if (!key.context)
                continue;
            const ctx_label *hit = bsearch(&key, cl, ncl, sizeof *cl, cmp_ctx);
            if (!hit)
                continue;
            while (hit > cl && hit[-1].context == key.context)
                hit--;
            size_t n = 0;
            while (hit + n < cl + ncl && hit[n].context == key.context)
                n++;
            sp_sample *s = &jp->profile->samples[k];
            sp_label *labels = sp_arena_calloc(a, n + s->nlabels + 1, sizeof *labels);
            if (!labels)
                return sp_fail(err, SP_ETOOBIG, "labels too large for the request budget");
            if (s->nlabels)
                memcpy(labels, s->labels, s->nlabels * sizeof *labels);
            uint32_t nl = s->nlabels;
            for (size_t j = 0; j < n; j++) {
                const ctx_label *l = &hit[j];
                char hex[17];
                if (is_span_label(l)) {
                    if (l->vlen == 16) {
                        memcpy(hex, l->value, 16);
                        hex[16] = 0;
                        if (sp_hex_decode(hex, s->link.span_id, 8) == 0) {
                            s->has_link = 1; /* what the user set wins */
                            memset(s->link.trace_id, 0, sizeof s->link.trace_id);
                        }
                    }
                    continue;
                }
                uint32_t ki = ext_intern(&t, a, first_new, l->key, l->klen);
                uint32_t vi = ki ? ext_intern(&t, a, first_new, l->value, l->vlen) : 0;
                if (!ki || !vi)
                    return sp_fail(err, SP_ETOOBIG, "labels too large for the request budget");
                labels[nl++] = (sp_label){ki, vi, 0, 0};
            }
            s->labels = labels;
            s->nlabels = nl;
        }
    }
    for (uint32_t i = 0; i < r->nprofiles; i++) {
        r->profiles[i].profile->strings = t.s;
        r->profiles[i].profile->string_lens = t.len;
        r->profiles[i].profile->nstrings = t.n;
    }
    return 0;
}

/* format=jfr: a recording, raw or as the `jfr` part of a multipart form with the `labels` part
 * (gzip'ed or not). Samples in a context whose labels name a span get it as their explicit link
 * (over async-profiler's own spanId), so the correlator attaches them to that span and its
 * ancestors; the context's other labels become series labels. */
static int jfr_decode(const otlp_ingest_params *p, const uint8_t *body, size_t len,
                      const sp_kv *series, uint32_t nseries, sp_batch *b, sp_err *err)
{
    part jfr = {body, len}, lab = {NULL, 0};
    const char *ct = p->content_type;
    int rc = 0;
    if (ct && strncasecmp(ct, "multipart/form-data", 19) == 0)
        rc = multipart_parts(body, len, ct, "jfr", &jfr, "labels", &lab, err);
    sp_buf jbuf, lbuf;
    sp_buf_init(&jbuf, 0);
    sp_buf_init(&lbuf, 0);
    if (!rc)
        rc = maybe_gunzip(&jfr.data, &jfr.len, p->max_size, &jbuf, err);
    if (!rc && lab.data)
        rc = maybe_gunzip(&lab.data, &lab.len, p->max_size, &lbuf, err);
    otlp_jfr_options o = {.cpu_interval_ns = p->sample_rate > 0 ? 1000000000LL / p->sample_rate : 0,
                          .from_ns = p->from_ns,
                          .until_ns = p->until_ns,
                          .series = series,
                          .nseries = nseries};
    otlp_jfr_result r;
    if (!rc)
        rc = otlp_jfr_parse(jfr.data, jfr.len, &o, b->arena, &r, err);
    ctx_label *cl = NULL;
    size_t ncl = 0;
    if (!rc && lab.data)
        rc = context_labels(&lab, b->arena, &cl, &ncl, err);
    if (!rc)
        rc = apply_context_labels(&r, cl, ncl, b->arena, err);
    if (!rc)
        rc = otlp_jfr_add_to_batch(&r, b, err);
    sp_buf_free(&jbuf);
    sp_buf_free(&lbuf);
    return rc;
}

int otlp_pyroscope_decode(const otlp_ingest_params *p, const uint8_t *body, size_t len, sp_batch *b,
                          otlp_pprof_result *res, sp_err *err)
{
    sp_arena *a = b->arena;
    sp_buf inner;
    sp_buf_init(&inner, 0);
    memset(res, 0, sizeof *res);
    const char *fmt = p->format ? p->format : "";
    int64_t t0 = p->from_ns,
            dur = p->until_ns > p->from_ns ? p->until_ns - p->from_ns : 10000000000LL;
    sp_kv *labels;
    uint32_t nlabels;
    int rc = otlp_pyroscope_parse_name(p->name ? p->name : "", a, &labels, &nlabels, err);
    if (rc)
        return rc;
    const char *ct = p->content_type;
    /* the format first: a multipart form is the Go SDK's pprof form unless format=jfr */
    if (strcmp(fmt, "jfr") == 0) {
        rc = jfr_decode(p, body, len, labels, nlabels, b, err);
    } else if (ct && strncasecmp(ct, "multipart/form-data", 19) == 0) {
        part prof, conf;
        otlp_pprof_opts o = {.series = labels, .nseries = nlabels, .now_ns = t0};
        const uint8_t *pd;
        size_t pl;
        if (!(rc = multipart_parse(body, len, ct, &prof, &conf, err)) &&
            !(rc = display_names(&conf, a, (sp_kv **)&o.display_names, &o.ndisplay_names, err))) {
            pd = prof.data;
            pl = prof.len;
            if (!(rc = maybe_gunzip(&pd, &pl, p->max_size, &inner, err)))
                rc = otlp_pprof_decode(pd, pl, &o, b, res, err);
        }
    } else if (strcmp(fmt, "folded") == 0 || strcmp(fmt, "lines") == 0 ||
               (!*fmt && len > 0 && body[0] != 0x1f && body[0] != 0x0a)) {
        /* Pyroscope's default format is folded; a pprof starts with field 1 (0x0a) or gzip. */
        rc = folded_decode((const char *)body, len, labels, nlabels, p->units, p->sample_rate, t0,
                           dur, b, err);
    } else if (!*fmt || strcmp(fmt, "pprof") == 0) {
        otlp_pprof_opts o = {.series = labels, .nseries = nlabels, .now_ns = t0};
        const uint8_t *pd = body;
        size_t pl = len;
        if (!(rc = maybe_gunzip(&pd, &pl, p->max_size, &inner, err)))
            rc = otlp_pprof_decode(pd, pl, &o, b, res, err);
    } else {
        rc = sp_fail(err, SP_EMEDIA, "format=%s is not supported (pprof, jfr, folded, lines)", fmt);
    }
    sp_buf_free(&inner);
    return rc;
}

static void handle_ingest(srv_request *req, srv_response *resp, void *ud)
{
    const otlp_pyroscope_config *cfg = ud;
    sp_err err = {0};
    sp_arena *a = sp_arena_new(cfg->max_recv_msg_size * 8 + (64u << 20));
    sp_buf plain;
    sp_buf_init(&plain, 0);
    sp_batch b = {.tenant = req->tenant, .arena = a};
    char name[4096], fmt[32] = "", rate[32], units[64] = "", from[32], until[32];
    otlp_pprof_result res = {0};
    int rc = 0;
    if (!a) {
        rc = sp_fail(&err, SP_ENOMEM, "out of memory");
        goto out;
    }
    if (srv_query_get(req, "name", name, sizeof name) < 0) {
        rc = sp_fail(&err, SP_EINVAL, "query parameter \"name\" is required (app{k=v,...})");
        goto out;
    }
    srv_query_get(req, "format", fmt, sizeof fmt);
    srv_query_get(req, "units", units, sizeof units);
    int64_t now = now_ns();
    otlp_ingest_params p = {
        .name = name,
        .format = fmt,
        .units = units,
        .content_type = srv_header_get(req, "content-type"),
        .sample_rate =
            srv_query_get(req, "sampleRate", rate, sizeof rate) > 0 ? strtoll(rate, NULL, 10) : 100,
        .from_ns =
            srv_query_get(req, "from", from, sizeof from) > 0 ? parse_time(from, now, now) : now,
        .until_ns =
            srv_query_get(req, "until", until, sizeof until) > 0 ? parse_time(until, now, 0) : 0,
        .max_size = cfg->max_recv_msg_size,
    };
    const uint8_t *body = req->body.data;
    size_t len = req->body.len;
    const char *ce = srv_header_get(req, "content-encoding");
    if (ce && *ce) {
        wire_encoding enc;
        if ((rc = wire_encoding_parse(ce, &enc, &err)) ||
            (rc = wire_decompress(enc, body, len, cfg->max_recv_msg_size, &plain, &err)))
            goto out;
        body = plain.data;
        len = plain.len;
    }
    if ((rc = otlp_pyroscope_decode(&p, body, len, &b, &res, &err)))
        goto out;
    finish(cfg, req, resp, &b, &res, 0);
    goto cleanup;
out:
    sp_metrics_items(req->endpoint, 0, 1);
    srv_report_refusal(req, err.code ? err.code : rc, 1, err.msg);
    srv_response_error(resp, req, &err);
cleanup:
    sp_buf_free(&plain);
    sp_arena_free(a);
}

/* ---------- push.v1.PusherService/Push ---------- */

static int push_series(const otlp_pyroscope_config *cfg, sp_arena *a, sp_kv *labels, uint32_t n,
                       const uint8_t *raw, size_t len, sp_batch *b, otlp_pprof_result *total,
                       sp_err *err)
{
    sp_buf inner;
    sp_buf_init(&inner, 0);
    otlp_pprof_opts o = {.series = labels, .nseries = n, .now_ns = now_ns()};
    int has_service = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (strcmp(labels[i].name, "__name__") == 0)
            o.name_hint = labels[i].value;
        has_service |= strcmp(labels[i].name, "service_name") == 0 && *labels[i].value;
    }
    if (!has_service) /* as Pyroscope: a series without a service cannot be found again */
        return sp_fail(err, SP_EINVAL, "labels must include service_name");
    otlp_pprof_result res;
    int rc = maybe_gunzip(&raw, &len, cfg->max_recv_msg_size, &inner, err);
    if (!rc)
        rc = otlp_pprof_decode(raw, len, &o, b, &res, err);
    if (!rc) {
        total->samples += res.samples;
        if (res.bad_samples && !total->bad_samples)
            total->first = res.first;
        total->bad_samples += res.bad_samples;
    }
    sp_buf_free(&inner); /* protobuf-c copied what the profile keeps into the arena */
    return rc;
}

static int labels_from_pairs(sp_arena *a, Types__V1__LabelPair **pairs, size_t np, sp_kv **out,
                             uint32_t *n)
{
    *out = sp_arena_alloc(a, (np + 1) * sizeof **out);
    *n = 0;
    if (!*out)
        return SP_ETOOBIG;
    for (size_t i = 0; i < np; i++) {
        if (!pairs[i]->name || !pairs[i]->value)
            continue;
        /* Copies: JSON bodies free their strings before the batch is stored. */
        const char *nm = otlp_label_name(a, pairs[i]->name);
        const char *v = sp_arena_strndup(a, pairs[i]->value, strlen(pairs[i]->value));
        if (!nm || !v)
            return SP_ETOOBIG;
        (*out)[(*n)++] = (sp_kv){nm, v};
    }
    return 0;
}

/* push.v1.PusherService/Push. Long because it reads the request in its three encodings (Connect
 * proto, Connect JSON, gRPC) and answers in the matching one, with one cleanup path. */
static void handle_push(srv_request *req, srv_response *resp, void *ud)
{
    const otlp_pyroscope_config *cfg = ud;
    sp_err err = {0};
    sp_arena *a = sp_arena_new(cfg->max_recv_msg_size * 8 + (64u << 20));
    sp_buf scratch;
    sp_buf_init(&scratch, 0);
    sp_batch b = {.tenant = req->tenant, .arena = a};
    otlp_pprof_result total = {0};
    const char *ct = srv_header_get(req, "content-type");
    int grpc = srv_request_is_grpc(req);
    int json = !grpc && ct && strncasecmp(ct, "application/json", 16) == 0;
    int rc = 0;
    const uint8_t *msg = req->body.data;
    size_t len = req->body.len;
    if (!a) {
        rc = sp_fail(&err, SP_ENOMEM, "out of memory");
        goto out;
    }
    if (!grpc && !json &&
        !(ct && (strncasecmp(ct, "application/proto", 17) == 0 ||
                 strncasecmp(ct, "application/x-protobuf", 22) == 0))) {
        rc = sp_fail(&err, SP_EMEDIA,
                     "content-type %s is not supported: use application/proto, application/json "
                     "or application/grpc",
                     ct ? ct : "(none)");
        goto out;
    }
    if (grpc &&
        (rc = wire_grpc_unframe(req->body.data, req->body.len, srv_header_get(req, "grpc-encoding"),
                                cfg->max_recv_msg_size, &scratch, &msg, &len, &err)))
        goto out;
    const char *ce = srv_header_get(req, "content-encoding");
    if (!grpc && ce && *ce) {
        wire_encoding enc;
        if ((rc = wire_encoding_parse(ce, &enc, &err)) ||
            (rc = wire_decompress(enc, msg, len, cfg->max_recv_msg_size, &scratch, &err)))
            goto out;
        msg = scratch.data;
        len = scratch.len;
    }
    if (json) {
        json_error_t je;
        json_t *root = json_loadb((const char *)msg, len, 0, &je);
        json_t *series = root ? json_object_get(root, "series") : NULL;
        if (!root || (series && !json_is_array(series))) {
            json_decref(root);
            rc = sp_fail(&err, SP_EINVAL, "body is not a PushRequest in JSON: %s",
                         root ? "series must be an array" : je.text);
            goto out;
        }
        size_t i;
        json_t *s;
        json_array_foreach(series, i, s)
        {
            json_t *jl = json_object_get(s, "labels"), *js = json_object_get(s, "samples");
            size_t nl = json_array_size(jl);
            Types__V1__LabelPair **pairs = sp_arena_alloc(a, (nl + 1) * sizeof *pairs);
            Types__V1__LabelPair *pv = sp_arena_alloc(a, (nl + 1) * sizeof *pv);
            if (!pairs || !pv) {
                rc = sp_fail(&err, SP_ETOOBIG, "request too large");
                break;
            }
            for (size_t k = 0; k < nl; k++) {
                json_t *l = json_array_get(jl, k);
                pv[k].name = (char *)json_string_value(json_object_get(l, "name"));
                pv[k].value = (char *)json_string_value(json_object_get(l, "value"));
                pairs[k] = &pv[k];
            }
            sp_kv *labels;
            uint32_t n;
            if (labels_from_pairs(a, pairs, nl, &labels, &n)) {
                rc = sp_fail(&err, SP_ETOOBIG, "request too large");
                break;
            }
            size_t k;
            json_t *smp;
            json_array_foreach(js, k, smp)
            {
                const char *raw = json_string_value(json_object_get(smp, "rawProfile"));
                if (!raw)
                    raw = json_string_value(json_object_get(smp, "raw_profile"));
                uint8_t *bytes;
                size_t bl;
                if (!raw || sp_base64_decode(raw, strlen(raw), a, &bytes, &bl)) {
                    rc = sp_fail(&err, SP_EINVAL,
                                 "series[%zu].samples[%zu].rawProfile is not base64", i, k);
                    break;
                }
                rc = push_series(cfg, a, labels, n, bytes, bl, &b, &total, &err);
                if (rc) {
                    sp_err_prefix(&err, "series[%zu].samples[%zu]: ", i, k);
                    break;
                }
            }
            if (rc)
                break;
        }
        json_decref(root);
        if (rc)
            goto out;
    } else {
        ProtobufCAllocator alloc;
        sp_arena_protobuf_allocator(a, &alloc);
        Push__V1__PushRequest *pr = push__v1__push_request__unpack(&alloc, len, msg);
        if (!pr) {
            rc = sp_fail(&err, SP_EINVAL,
                         "body is not a push.v1.PushRequest (protobuf decoding "
                         "failed)");
            goto out;
        }
        for (size_t i = 0; i < pr->n_series && !rc; i++) {
            sp_kv *labels;
            uint32_t n;
            if (labels_from_pairs(a, pr->series[i]->labels, pr->series[i]->n_labels, &labels, &n)) {
                rc = sp_fail(&err, SP_ETOOBIG, "request too large");
                break;
            }
            for (size_t k = 0; k < pr->series[i]->n_samples && !rc; k++) {
                const Push__V1__RawSample *rs = pr->series[i]->samples[k];
                rc = push_series(cfg, a, labels, n, rs->raw_profile.data, rs->raw_profile.len, &b,
                                 &total, &err);
                if (rc)
                    sp_err_prefix(&err, "series[%zu].samples[%zu]: ", i, k);
            }
        }
        if (rc)
            goto out;
    }
    if (grpc) {
        sp_err ferr = {0};
        int frc = 0;
        if (total.bad_samples && total.bad_samples == total.samples)
            frc =
                sp_fail(&ferr, SP_EINVAL, "every sample was rejected; first: %s", total.first.msg);
        if (!frc && cfg->sink.write && b.nprofiles)
            frc = cfg->sink.write(cfg->sink.ud, req, &b, &ferr);
        if (frc) {
            srv_report_refusal(req, ferr.code ? ferr.code : frc, total.samples, ferr.msg);
            srv_response_error(resp, req, &ferr);
        } else {
            if (total.bad_samples)
                srv_report_refusal(req, 0, total.bad_samples, total.first.msg);
            sp_buf framed;
            sp_buf_init(&framed, 0);
            wire_grpc_frame(&framed, NULL, 0); /* PushResponse{} */
            srv_response_grpc(resp, GRPC_OK, NULL, framed.data, framed.len);
            sp_buf_free(&framed);
        }
        goto cleanup;
    }
    finish(cfg, req, resp, &b, &total, 1);
    goto cleanup;
out:
    sp_metrics_items(req->endpoint, 0, 1);
    srv_report_refusal(req, err.code ? err.code : rc, 1, err.msg);
    if (grpc)
        srv_response_error(resp, req, &err);
    else
        srv_response_connect_error(resp, &err);
cleanup:
    sp_buf_free(&scratch);
    sp_arena_free(a);
}

int otlp_pyroscope_register(srv_router *r, const otlp_pyroscope_config *cfg)
{
    int rc = srv_router_add(r, "POST", "/ingest", SRV_WORKER, "pyroscope_ingest", handle_ingest,
                            (void *)cfg);
    if (!rc) /* Pyroscope serves both */
        rc = srv_router_add(r, "POST", "/pyroscope/ingest", SRV_WORKER, "pyroscope_ingest",
                            handle_ingest, (void *)cfg);
    if (!rc)
        rc = srv_router_add(r, "POST", "/push.v1.PusherService/Push", SRV_WORKER, "pyroscope_push",
                            handle_push, (void *)cfg);
    return rc;
}
