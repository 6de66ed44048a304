/* The export directory's text files (xfer_format.h): jansson both ways. */
#include "xfer_format.h"
#include "../common/hex.h"

#include <jansson.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int xfer_tenant_name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 150 || !strcmp(name, ".") || !strcmp(name, ".."))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("!-_.*'()", c)))
            return 0;
    }
    return 1;
}

static int hex_ok(const char *s, size_t want)
{
    if (strlen(s) != want)
        return 0;
    for (size_t i = 0; i < want; i++)
        if (!strchr("0123456789abcdefABCDEF", s[i]))
            return 0;
    return 1;
}

static int dump_append(json_t *doc, size_t flags, sp_buf *out, int newline)
{
    int rc = SP_ENOMEM;
    char *text = doc ? json_dumps(doc, flags) : NULL;
    if (text) {
        rc = sp_buf_append(out, text, strlen(text));
        if (!rc && newline)
            rc = sp_buf_append(out, "\n", 1);
        free(text);
    }
    json_decref(doc);
    return rc;
}

int xfer_manifest_write(const xfer_manifest *m, sp_buf *out)
{
    json_t *tenants = json_array();
    for (size_t i = 0; tenants && i < m->ntenants; i++) {
        const xfer_tenant *t = &m->tenants[i];
        json_array_append_new(tenants,
                              json_pack("{s:s, s:I, s:I, s:I, s:I}", "name", t->name, "series",
                                        (json_int_t)t->series, "profiles", (json_int_t)t->profiles,
                                        "spans", (json_int_t)t->spans, "span_profiles",
                                        (json_int_t)t->span_profiles));
    }
    json_t *doc = json_pack("{s:s, s:i, s:s, s:s, s:s, s:I, s:I, s:I, s:o}", "format", XFER_FORMAT,
                            "version", m->version, "id", m->id, "spanprof_version",
                            m->spanprof_version, "created", m->created, "from_ns",
                            (json_int_t)m->from_ns, "until_ns", (json_int_t)m->until_ns,
                            "bucket_ns", (json_int_t)m->bucket_ns, "tenants", tenants);
    return dump_append(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER, out, 1);
}

/* A required member of obj of type `type`; SP_EINVAL naming it otherwise. */
static int member(json_t *obj, const char *name, json_type type, json_t **out, sp_err *err)
{
    static const char *const tn[] = {"an object", "an array", "a string", "an integer",
                                     "a number",  "true",     "false",    "null"};
    *out = json_object_get(obj, name);
    if (!*out)
        return sp_fail(err, SP_EINVAL, "%s: missing", name);
    if (json_typeof(*out) != type)
        return sp_fail(err, SP_EINVAL, "%s: not %s", name, tn[type]);
    return 0;
}

static int get_str(json_t *obj, const char *name, sp_arena *a, const char **out, sp_err *err)
{
    json_t *v;
    int rc = member(obj, name, JSON_STRING, &v, err);
    if (rc)
        return rc;
    *out = sp_arena_strndup(a, json_string_value(v), json_string_length(v));
    if (!*out)
        return sp_fail(err, SP_ENOMEM, "%s: out of memory", name);
    if (strlen(*out) != json_string_length(v))
        return sp_fail(err, SP_EINVAL, "%s: contains a NUL character", name);
    return 0;
}

static int get_int(json_t *obj, const char *name, int64_t min, int64_t *out, sp_err *err)
{
    json_t *v;
    int rc = member(obj, name, JSON_INTEGER, &v, err);
    if (rc)
        return rc;
    *out = (int64_t)json_integer_value(v);
    if (*out < min)
        return sp_fail(err, SP_EINVAL, "%s: %lld is below %lld", name, (long long)*out,
                       (long long)min);
    return 0;
}

static int parse_tenant(json_t *t, size_t i, sp_arena *a, xfer_tenant *out, sp_err *err)
{
    int64_t v[4];
    const char *names[4] = {"series", "profiles", "spans", "span_profiles"};
    int rc = json_is_object(t) ? get_str(t, "name", a, &out->name, err)
                               : sp_fail(err, SP_EINVAL, "not an object");
    for (int k = 0; k < 4 && !rc; k++)
        rc = get_int(t, names[k], 0, &v[k], err);
    if (!rc && !xfer_tenant_name_ok(out->name))
        rc = sp_fail(err, SP_EINVAL,
                     "name: \"%.160s\" is not a tenant id (letters, digits, ! - _ . * ' ( ))",
                     out->name);
    if (rc) {
        sp_err_prefix(err, "tenants[%zu].", i);
        return rc;
    }
    out->series = (uint64_t)v[0];
    out->profiles = (uint64_t)v[1];
    out->spans = (uint64_t)v[2];
    out->span_profiles = (uint64_t)v[3];
    return 0;
}

static int manifest_fields(json_t *doc, sp_arena *a, xfer_manifest *out, sp_err *err)
{
    const char *format;
    int64_t version = 0;
    int rc = get_str(doc, "format", a, &format, err);
    if (!rc && strcmp(format, XFER_FORMAT) != 0)
        return sp_fail(err, SP_EINVAL, "format: \"%.60s\", want \"%s\"", format, XFER_FORMAT);
    if (!rc)
        rc = get_int(doc, "version", 1, &version, err);
    if (!rc && version > XFER_VERSION)
        return sp_fail(err, SP_EINVAL,
                       "version: %lld is newer than this spanprof reads (%d); import with a newer "
                       "spanprof",
                       (long long)version, XFER_VERSION);
    out->version = (int)version;
    if (!rc)
        rc = get_str(doc, "id", a, &out->id, err);
    if (!rc && !hex_ok(out->id, 32))
        return sp_fail(err, SP_EINVAL, "id: not 32 hex digits");
    if (!rc)
        rc = get_str(doc, "spanprof_version", a, &out->spanprof_version, err);
    if (!rc)
        rc = get_str(doc, "created", a, &out->created, err);
    if (!rc)
        rc = get_int(doc, "from_ns", 0, &out->from_ns, err);
    if (!rc)
        rc = get_int(doc, "until_ns", 0, &out->until_ns, err);
    if (!rc && out->until_ns <= out->from_ns)
        return sp_fail(err, SP_EINVAL, "until_ns: not after from_ns (an empty range)");
    if (!rc)
        rc = get_int(doc, "bucket_ns", 1, &out->bucket_ns, err);
    if (!rc && out->bucket_ns != 10000000000LL)
        return sp_fail(err, SP_EINVAL, "bucket_ns: %lld, this spanprof stores 10 s buckets",
                       (long long)out->bucket_ns);
    return rc;
}

int xfer_manifest_parse(const char *text, size_t len, sp_arena *a, xfer_manifest *out, sp_err *err)
{
    memset(out, 0, sizeof out[0]);
    json_error_t je;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!doc)
        return sp_fail(err, SP_EINVAL, "line %d column %d (byte %d): %s", je.line, je.column,
                       je.position, je.text);
    json_t *tenants = NULL;
    int rc = json_is_object(doc) ? manifest_fields(doc, a, out, err)
                                 : sp_fail(err, SP_EINVAL, "not a JSON object");
    if (!rc)
        rc = member(doc, "tenants", JSON_ARRAY, &tenants, err);
    size_t n = tenants ? json_array_size(tenants) : 0;
    if (!rc && n > XFER_MAX_TENANTS)
        rc = sp_fail(err, SP_EINVAL, "tenants: %zu, at most %d", n, XFER_MAX_TENANTS);
    if (!rc && !(out->tenants = sp_arena_calloc(a, n + 1, sizeof *out->tenants)))
        rc = sp_fail(err, SP_ENOMEM, "tenants: out of memory");
    for (size_t i = 0; i < n && !rc; i++) {
        rc = parse_tenant(json_array_get(tenants, i), i, a, &out->tenants[i], err);
        for (size_t k = 0; k < i && !rc; k++)
            if (!strcmp(out->tenants[k].name, out->tenants[i].name))
                rc = sp_fail(err, SP_EINVAL, "tenants[%zu].name: \"%s\" listed twice", i,
                             out->tenants[i].name);
        out->ntenants = i + 1;
    }
    json_decref(doc);
    return rc;
}

int xfer_series_write(const xfer_series *s, sp_buf *out)
{
    json_t *labels = json_object();
    for (uint32_t i = 0; labels && i < s->nlabels; i++)
        json_object_set_new(labels, s->labels[i].name, json_string(s->labels[i].value));
    json_t *doc = json_pack("{s:I, s:s, s:I, s:o}", "id", (json_int_t)s->id, "type", s->type_id,
                            "period", (json_int_t)s->period, "labels", labels);
    return dump_append(doc, JSON_COMPACT | JSON_SORT_KEYS, out, 1);
}

static int kv_cmp(const void *a, const void *b)
{
    return strcmp(((const sp_kv *)a)->name, ((const sp_kv *)b)->name);
}

static int series_labels(json_t *labels, sp_arena *a, xfer_series *out, sp_err *err)
{
    size_t n = json_object_size(labels);
    out->labels = sp_arena_calloc(a, n + 1, sizeof *out->labels);
    if (!out->labels)
        return sp_fail(err, SP_ENOMEM, "labels: out of memory");
    const char *key;
    json_t *v;
    json_object_foreach(labels, key, v)
    {
        if (!json_is_string(v))
            return sp_fail(err, SP_EINVAL, "labels.%.100s: not a string", key);
        sp_kv *kv = &out->labels[out->nlabels++];
        kv->name = sp_arena_strndup(a, key, strlen(key));
        kv->value = sp_arena_strndup(a, json_string_value(v), json_string_length(v));
        if (!kv->name || !kv->value)
            return sp_fail(err, SP_ENOMEM, "labels: out of memory");
        if (!*kv->name || strlen(kv->value) != json_string_length(v))
            return sp_fail(err, SP_EINVAL, "labels.%.100s: empty name or NUL in the value", key);
    }
    qsort(out->labels, out->nlabels, sizeof *out->labels, kv_cmp);
    return 0;
}

int xfer_series_parse(const char *line, size_t len, sp_arena *a, xfer_series *out, sp_err *err)
{
    memset(out, 0, sizeof *out);
    json_error_t je;
    json_t *doc = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je), *labels;
    if (!doc)
        return sp_fail(err, SP_EINVAL, "column %d: %s", je.column, je.text);
    int rc = json_is_object(doc) ? get_int(doc, "id", 1, &out->id, err)
                                 : sp_fail(err, SP_EINVAL, "not a JSON object");
    if (!rc)
        rc = get_str(doc, "type", a, &out->type_id, err);
    int colons = 0;
    for (const char *p = rc ? "" : out->type_id; *p; p++)
        colons += *p == ':';
    if (!rc && (colons != 4 || out->type_id[0] == ':'))
        rc = sp_fail(err, SP_EINVAL,
                     "type: \"%.200s\" is not name:sample_type:sample_unit:period_type:period_unit",
                     out->type_id);
    if (!rc)
        rc = get_int(doc, "period", 0, &out->period, err);
    if (!rc)
        rc = member(doc, "labels", JSON_OBJECT, &labels, err);
    if (!rc)
        rc = series_labels(labels, a, out, err);
    json_decref(doc);
    return rc;
}

int xfer_span_write(const sp_span *sp, sp_buf *out)
{
    char trace[33], span[17], parent[17];
    static const char d[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        trace[2 * i] = d[sp->trace_id[i] >> 4];
        trace[2 * i + 1] = d[sp->trace_id[i] & 15];
    }
    for (int i = 0; i < 8; i++) {
        span[2 * i] = d[sp->span_id[i] >> 4];
        span[2 * i + 1] = d[sp->span_id[i] & 15];
        parent[2 * i] = d[sp->parent_span_id[i] >> 4];
        parent[2 * i + 1] = d[sp->parent_span_id[i] & 15];
    }
    trace[32] = span[16] = parent[16] = 0;
    static const uint8_t zero[8];
    json_t *doc =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I}", "trace_id", trace, "span_id",
                  span, "parent_span_id", memcmp(sp->parent_span_id, zero, 8) ? parent : "",
                  "service", sp->service ? sp->service : "", "name", sp->name ? sp->name : "",
                  "start_ns", (json_int_t)sp->start_ns, "duration_ns",
                  (json_int_t)(sp->end_ns > sp->start_ns ? sp->end_ns - sp->start_ns : 0), "pid",
                  (json_int_t)sp->pid, "tid", (json_int_t)sp->tid);
    if (doc && sp->extras && sp->extras_len) { /* optional: the extras blob in hex */
        char *hx = malloc(2 * (size_t)sp->extras_len + 1);
        if (!hx) {
            json_decref(doc);
            return SP_ENOMEM;
        }
        for (uint32_t i = 0; i < sp->extras_len; i++) {
            hx[2 * i] = d[sp->extras[i] >> 4];
            hx[2 * i + 1] = d[sp->extras[i] & 15];
        }
        hx[2 * (size_t)sp->extras_len] = 0;
        json_object_set_new(doc, "extras", json_string(hx));
        free(hx);
    }
    return dump_append(doc, JSON_COMPACT | JSON_PRESERVE_ORDER, out, 1);
}

static int hex_field(json_t *doc, const char *name, uint8_t *out, size_t n, int optional,
                     sp_err *err)
{
    json_t *v;
    int rc = member(doc, name, JSON_STRING, &v, err);
    if (rc)
        return rc;
    const char *s = json_string_value(v);
    if (optional && !*s)
        return 0;
    if (!hex_ok(s, 2 * n))
        return sp_fail(err, SP_EINVAL, "%s: %zu characters, want %zu hex digits", name, strlen(s),
                       2 * n);
    for (size_t i = 0; i < n; i++) {
        unsigned v2;
        sscanf(s + 2 * i, "%2x", &v2);
        out[i] = (uint8_t)v2;
    }
    return 0;
}

int xfer_span_parse(const char *line, size_t len, sp_arena *a, sp_span *out, sp_err *err)
{
    memset(out, 0, sizeof *out);
    json_error_t je;
    json_t *doc = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    if (!doc)
        return sp_fail(err, SP_EINVAL, "column %d: %s", je.column, je.text);
    int64_t start = 0, dur = 0;
    static const uint8_t zero[8];
    int rc = json_is_object(doc) ? hex_field(doc, "trace_id", out->trace_id, 16, 0, err)
                                 : sp_fail(err, SP_EINVAL, "not a JSON object");
    if (!rc)
        rc = hex_field(doc, "span_id", out->span_id, 8, 0, err);
    if (!rc && !memcmp(out->span_id, zero, 8))
        rc = sp_fail(err, SP_EINVAL, "span_id: all zero");
    if (!rc)
        rc = hex_field(doc, "parent_span_id", out->parent_span_id, 8, 1, err);
    if (!rc)
        rc = get_str(doc, "service", a, &out->service, err);
    if (!rc)
        rc = get_str(doc, "name", a, &out->name, err);
    if (!rc)
        rc = get_int(doc, "start_ns", 0, &start, err);
    if (!rc)
        rc = get_int(doc, "duration_ns", 0, &dur, err);
    if (!rc && dur > INT64_MAX - start)
        rc = sp_fail(err, SP_EINVAL, "duration_ns: start_ns + duration_ns overflows");
    if (!rc)
        rc = get_int(doc, "pid", INT64_MIN, &out->pid, err);
    if (!rc)
        rc = get_int(doc, "tid", INT64_MIN, &out->tid, err);
    json_t *xv = rc ? NULL : json_object_get(doc, "extras");
    if (xv) { /* optional: the span's extras blob (otlp/span_extras.h) in hex */
        const char *s = json_string_value(xv);
        size_t n = s ? strlen(s) : 0;
        uint8_t *b = NULL;
        if (!s || n % 2 || n / 2 > XFER_MAX_EXTRAS)
            rc = sp_fail(err, SP_EINVAL, "extras: want an even number of hex digits, at most %d",
                         2 * XFER_MAX_EXTRAS);
        else if (n && !(b = sp_arena_alloc(a, n / 2)))
            rc = sp_fail(err, SP_ENOMEM, "extras: out of memory");
        else if (n && sp_hex_decode(s, b, n / 2))
            rc = sp_fail(err, SP_EINVAL, "extras: not hex digits");
        out->extras = n ? b : NULL;
        out->extras_len = (uint32_t)(n / 2);
    }
    out->start_ns = (uint64_t)start;
    out->end_ns = (uint64_t)start + (uint64_t)dur;
    json_decref(doc);
    return rc;
}
