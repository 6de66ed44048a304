/* Protobuf JSON mapping over protobuf-c descriptors (see pbjson.h). The rules followed are those
 * of the protobuf "JSON Mapping" section of the proto3 language guide. */
#include "pbjson.h"
#include "../common/base64.h"
#include "../common/hex.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- names ----------------------------------------------------------------------------------- */

/* protoc's json_name: underscores dropped, the letter after each one upper-cased. */
static void json_name(const char *proto, char *out, size_t outsz)
{
    size_t o = 0;
    int up = 0;
    for (const char *p = proto; *p && o + 1 < outsz; p++) {
        if (*p == '_') {
            up = 1;
            continue;
        }
        out[o++] = up && *p >= 'a' && *p <= 'z' ? (char)(*p - 'a' + 'A') : *p;
        up = 0;
    }
    out[o] = 0;
}

static const ProtobufCFieldDescriptor *field_by_key(const ProtobufCMessageDescriptor *d,
                                                    const char *key)
{
    char jn[128];
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (strcmp(f->name, key) == 0)
            return f;
        json_name(f->name, jn, sizeof jn);
        if (strcmp(jn, key) == 0)
            return f;
    }
    return NULL;
}

static size_t elem_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        return 4;
    case PROTOBUF_C_TYPE_FLOAT:
        return sizeof(float);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    }
    return 8;
}

/* ---- reading --------------------------------------------------------------------------------- */

static const char *kind_of(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "a value";
}

/* An integral number in [lo, hi] (as a double: the bounds are only used for int32 / int64). */
static int int_of(const json_t *v, int64_t lo, int64_t hi, int64_t *out)
{
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        if (x < lo || x > hi)
            return -1;
        *out = x;
        return 0;
    }
    double d;
    if (json_is_real(v)) {
        d = json_real_value(v);
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        if (!*s || (*s != '-' && (*s < '0' || *s > '9')))
            return -1;
        errno = 0;
        long long x = strtoll(s, &end, 10);
        if (!*end && errno == 0) {
            if (x < lo || x > hi)
                return -1;
            *out = x;
            return 0;
        }
        if (errno == ERANGE)
            return -1;
        d = strtod(s, &end); /* "1e3" is an integer in protojson too */
        if (*end)
            return -1;
    } else {
        return -1;
    }
    if (!isfinite(d) || d < (double)lo || d >= -(double)INT64_MIN || d > (double)hi ||
        (double)(int64_t)d != d) /* integral only */
        return -1;
    *out = (int64_t)d;
    return 0;
}

static int uint_of(const json_t *v, uint64_t hi, uint64_t *out)
{
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        if (x < 0 || (uint64_t)x > hi)
            return -1;
        *out = (uint64_t)x;
        return 0;
    }
    double d;
    if (json_is_real(v)) {
        d = json_real_value(v);
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        if (*s < '0' || *s > '9')
            return -1;
        errno = 0;
        unsigned long long x = strtoull(s, &end, 10);
        if (!*end && errno == 0) {
            if (x > hi)
                return -1;
            *out = x;
            return 0;
        }
        if (errno == ERANGE)
            return -1;
        d = strtod(s, &end);
        if (*end)
            return -1;
    } else {
        return -1;
    }
    if (!isfinite(d) || d < 0 || d >= 18446744073709551616.0 || d > (double)hi ||
        (double)(uint64_t)d != d) /* integral only */
        return -1;
    *out = (uint64_t)d;
    return 0;
}

static int double_of(const json_t *v, double *out)
{
    if (json_is_number(v)) {
        *out = json_number_value(v);
        return 0;
    }
    if (!json_is_string(v))
        return -1;
    const char *s = json_string_value(v);
    if (strcmp(s, "NaN") == 0)
        *out = NAN;
    else if (strcmp(s, "Infinity") == 0)
        *out = INFINITY;
    else if (strcmp(s, "-Infinity") == 0)
        *out = -INFINITY;
    else {
        char *end;
        if (!*s)
            return -1;
        *out = strtod(s, &end);
        if (*end)
            return -1;
    }
    return 0;
}

/* One decode: the caller's arena and options, and the JSON path of the value being read (kept
 * only when the options ask for paths in errors). */
typedef struct ctx {
    sp_arena *a;
    const wire_json_opts *o;
    int paths;
    int max_depth;
    size_t plen;
    char path[256];
} ctx;

static size_t path_push(ctx *c, const char *fmt, const char *name, size_t idx)
{
    size_t was = c->plen;
    if (!c->paths || c->plen >= sizeof c->path - 1)
        return was;
    int n =
        name ? snprintf(c->path + c->plen, sizeof c->path - c->plen, fmt, c->plen ? "." : "", name)
             : snprintf(c->path + c->plen, sizeof c->path - c->plen, fmt, idx);
    if (n > 0)
        c->plen += (size_t)n < sizeof c->path - c->plen ? (size_t)n : sizeof c->path - 1 - c->plen;
    return was;
}

static void path_pop(ctx *c, size_t was)
{
    c->plen = was;
    c->path[was] = 0;
}

static int toobig(const ctx *c, sp_err *err)
{
    if (!c->paths) /* the Connect codec's words, kept as they were */
        return sp_fail(err, SP_ETOOBIG, "request too large for the query budget");
    return sp_fail(err, SP_ETOOBIG, "%s: the request needs more memory than its decode budget",
                   c->plen ? c->path : "(top level)");
}

/* "field x: <what>" (Connect codec) or "<json path>: <what>" (paths). */
static int field_fail(const ctx *c, sp_err *err, const ProtobufCFieldDescriptor *f, const char *fmt,
                      ...) __attribute__((format(printf, 4, 5)));

static int field_fail(const ctx *c, sp_err *err, const ProtobufCFieldDescriptor *f, const char *fmt,
                      ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (c->paths)
        return sp_fail(err, SP_EINVAL, "%s: %s", c->path, what);
    char jn[128];
    json_name(f->name, jn, sizeof jn);
    return sp_fail(err, SP_EINVAL, "field %s: %s", jn, what);
}

static int decode_object(ctx *c, const ProtobufCMessageDescriptor *d, const json_t *obj,
                         ProtobufCMessage **out, int depth, sp_err *err);

static int bad(const ctx *c, sp_err *err, const ProtobufCFieldDescriptor *f, const char *want,
               const json_t *v)
{
    char jn[128];
    if (c->paths)
        return sp_fail(err, SP_EINVAL, "%s: expected %s, got %s", c->path, want, kind_of(v));
    json_name(f->name, jn, sizeof jn);
    return sp_fail(err, SP_EINVAL, "field %s: expected %s, got %s", jn, want, kind_of(v));
}

/* A bytes field the options say is hex (OTLP trace and span ids): exactly 2 x want digits, or
 * "" for unset; HEX_OR_BASE64 falls back to base64 when the text is not that. */
static int decode_hex(ctx *c, const ProtobufCFieldDescriptor *f, const json_t *v, size_t want,
                      wire_json_bytes form, ProtobufCBinaryData *bd, sp_err *err)
{
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    bd->data = NULL;
    bd->len = 0;
    if (n == 0)
        return 0;
    size_t k = 0;
    while (k < n && isxdigit((unsigned char)s[k]))
        k++;
    int is_hex = k == n && (want ? n == 2 * want : n % 2 == 0);
    if (!is_hex && form == WIRE_JSON_BYTES_HEX_OR_BASE64) {
        int rc = sp_base64_decode(s, n, c->a, &bd->data, &bd->len);
        if (rc == SP_EINVAL)
            return bad(c, err, f, "hex digits or base64", v);
        return rc ? toobig(c, err) : 0;
    }
    if (k < n) {
        return field_fail(c, err, f, "character %zu is not a hex digit (ids are hex in OTLP JSON)",
                          k + 1);
    }
    if (!is_hex) {
        if (want)
            return field_fail(c, err, f, "%zu hex digits, want %zu", n, 2 * want);
        return field_fail(c, err, f, "%zu hex digits, want an even number", n);
    }
    bd->len = n / 2;
    bd->data = sp_arena_alloc(c->a, bd->len);
    if (!bd->data)
        return toobig(c, err);
    return sp_hex_decode(s, bd->data, bd->len) ? bad(c, err, f, "hex digits", v) : 0;
}

/* Long because it is one switch over protobuf-c's field types, each a few lines. */
static int decode_value(ctx *c, const ProtobufCMessageDescriptor *d,
                        const ProtobufCFieldDescriptor *f, const json_t *v, void *dst, int depth,
                        sp_err *err)
{
    int64_t i;
    uint64_t u;
    double dbl;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        if (int_of(v, INT32_MIN, INT32_MAX, &i))
            return bad(c, err, f, "a 32-bit integer", v);
        *(int32_t *)dst = (int32_t)i;
        return 0;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if (uint_of(v, UINT32_MAX, &u))
            return bad(c, err, f, "an unsigned 32-bit integer", v);
        *(uint32_t *)dst = (uint32_t)u;
        return 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        if (int_of(v, INT64_MIN, INT64_MAX, &i))
            return bad(c, err, f, "a 64-bit integer (number or decimal string)", v);
        *(int64_t *)dst = i;
        return 0;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        if (uint_of(v, UINT64_MAX, &u))
            return bad(c, err, f, "an unsigned 64-bit integer (number or decimal string)", v);
        *(uint64_t *)dst = u;
        return 0;
    case PROTOBUF_C_TYPE_FLOAT:
        if (double_of(v, &dbl))
            return bad(c, err, f, "a number", v);
        *(float *)dst = (float)dbl;
        return 0;
    case PROTOBUF_C_TYPE_DOUBLE:
        if (double_of(v, &dbl))
            return bad(c, err, f, "a number", v);
        *(double *)dst = dbl;
        return 0;
    case PROTOBUF_C_TYPE_BOOL:
        if (!json_is_boolean(v))
            return bad(c, err, f, "true or false", v);
        *(protobuf_c_boolean *)dst = json_is_true(v);
        return 0;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *ed = f->descriptor;
        if (json_is_string(v)) {
            const ProtobufCEnumValue *ev =
                protobuf_c_enum_descriptor_get_value_by_name(ed, json_string_value(v));
            if (!ev)
                return field_fail(c, err, f, "%s is not a value of %s", json_string_value(v),
                                  ed->name);
            *(int32_t *)dst = ev->value;
            return 0;
        }
        if (int_of(v, INT32_MIN, INT32_MAX, &i)) /* proto3 enums are open: any number */
            return bad(c, err, f, "an enum name or number", v);
        *(int32_t *)dst = (int32_t)i;
        return 0;
    }
    case PROTOBUF_C_TYPE_STRING: {
        if (!json_is_string(v))
            return bad(c, err, f, "a string", v);
        char *s = sp_arena_strndup(c->a, json_string_value(v), json_string_length(v));
        if (!s)
            return toobig(c, err);
        *(char **)dst = s;
        return 0;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        size_t want = 0;
        wire_json_bytes form =
            c->o && c->o->bytes_form ? c->o->bytes_form(d, f, &want) : WIRE_JSON_BYTES_BASE64;
        if (!json_is_string(v))
            return bad(c, err, f,
                       form == WIRE_JSON_BYTES_BASE64 ? "a base64 string" : "a hex string", v);
        ProtobufCBinaryData *bd = dst;
        if (form != WIRE_JSON_BYTES_BASE64)
            return decode_hex(c, f, v, want, form, bd, err);
        int rc = sp_base64_decode(json_string_value(v), json_string_length(v), c->a, &bd->data,
                                  &bd->len);
        if (rc == SP_EINVAL)
            return bad(c, err, f, "base64", v);
        if (rc)
            return toobig(c, err);
        return 0;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        if (!json_is_object(v))
            return bad(c, err, f, "an object", v);
        int rc = decode_object(c, f->descriptor, v, (ProtobufCMessage **)dst, depth + 1, err);
        if (rc && !c->paths) {
            char jn[128];
            json_name(f->name, jn, sizeof jn);
            sp_err_prefix(err, "%s.", jn);
        }
        return rc;
    }
    }
    return bad(c, err, f, "a supported type", v);
}

static int decode_repeated(ctx *c, const ProtobufCMessageDescriptor *d,
                           const ProtobufCFieldDescriptor *f, const json_t *v, char *base,
                           int depth, sp_err *err)
{
    if (!json_is_array(v))
        return bad(c, err, f, "an array", v);
    size_t n = json_array_size(v), es = elem_size(f->type);
    char *arr = n ? sp_arena_calloc(c->a, n, es) : NULL;
    if (n && !arr)
        return toobig(c, err);
    for (size_t k = 0; k < n; k++) {
        size_t was = path_push(c, "[%zu]", NULL, k);
        int rc = decode_value(c, d, f, json_array_get(v, k), arr + k * es, depth, err);
        path_pop(c, was);
        if (rc) {
            if (!c->paths)
                sp_err_prefix(err, "[%zu] ", k);
            return rc;
        }
    }
    *(size_t *)(base + f->quantifier_offset) = n;
    *(void **)(base + f->offset) = arr;
    return 0;
}

static int decode_object(ctx *c, const ProtobufCMessageDescriptor *d, const json_t *obj,
                         ProtobufCMessage **out, int depth, sp_err *err)
{
    if (depth > c->max_depth) {
        if (c->paths)
            return sp_fail(err, SP_EINVAL, "%s: message nested more than %d levels deep",
                           c->plen ? c->path : "(top level)", c->max_depth);
        return sp_fail(err, SP_EINVAL, "message nested more than 64 levels deep");
    }
    ProtobufCMessage *m = sp_arena_alloc(c->a, d->sizeof_message);
    if (!m)
        return toobig(c, err);
    d->message_init(m);
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        const ProtobufCFieldDescriptor *f = field_by_key(d, key);
        if (!f || json_is_null(v))
            continue; /* unknown fields are ignored; null is the default */
        char *base = (char *)m;
        char jn[128];
        json_name(f->name, jn, sizeof jn);
        size_t was = path_push(c, "%s%s", jn, 0);
        int rc;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            rc = decode_repeated(c, d, f, v, base, depth, err);
            path_pop(c, was);
            if (rc)
                return rc;
            continue;
        }
        rc = decode_value(c, d, f, v, base + f->offset, depth, err);
        path_pop(c, was);
        if (rc)
            return rc;
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
            *(uint32_t *)(base + f->quantifier_offset) = f->id;
        else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
                 f->type != PROTOBUF_C_TYPE_MESSAGE)
            *(protobuf_c_boolean *)(base + f->quantifier_offset) = 1;
    }
    *out = m;
    return 0;
}

/* jansson's tree is allocated outside the arena; with opts->max_tree_bytes its allocations on
 * this thread are counted against that budget while json_loadb() runs. Only allocations are
 * counted (frees during the parse are not given back): a bound, not an exact figure. */
static _Thread_local size_t tree_left;
static _Thread_local int tree_limited, tree_exhausted;
static pthread_once_t tree_once = PTHREAD_ONCE_INIT;

static void *tree_malloc(size_t n)
{
    if (tree_limited) {
        if (n > tree_left) {
            tree_exhausted = 1;
            return NULL;
        }
        tree_left -= n;
    }
    return malloc(n);
}

static void tree_free(void *p)
{
    free(p);
}

/* Installed once, before this module's first parse. The functions are malloc and free
 * underneath, so a tree another jansson user allocated before the switch is freed correctly. */
static void tree_install(void)
{
    json_set_alloc_funcs(tree_malloc, tree_free);
}

int wire_json_decode_opts(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len,
                          sp_arena *a, const wire_json_opts *opts, ProtobufCMessage **out,
                          sp_err *err)
{
    pthread_once(&tree_once, tree_install);
    wire_json_opts o = opts ? *opts : (wire_json_opts){0};
    ctx c = {.a = a, .o = &o, .paths = o.paths, .max_depth = o.max_depth ? o.max_depth : 64};
    json_error_t je;
    tree_limited = o.max_tree_bytes != 0;
    tree_left = o.max_tree_bytes;
    tree_exhausted = 0;
    json_t *root = json_loadb((const char *)data, len, JSON_ALLOW_NUL, &je);
    tree_limited = 0;
    if (!root && tree_exhausted)
        return sp_fail(err, SP_ETOOBIG,
                       "a JSON body of %zu bytes needs more memory than its budget allows (%zu "
                       "bytes)",
                       len, o.max_tree_bytes);
    if (!root)
        return sp_fail(err, SP_EINVAL, "body is not JSON: %s (line %d, column %d)", je.text,
                       je.line, je.column);
    int rc;
    if (!json_is_object(root))
        rc = sp_fail(err, SP_EINVAL, "body is not a JSON object (%s)", d->name);
    else
        rc = decode_object(&c, d, root, out, 0, err);
    json_decref(root);
    return rc;
}

int wire_json_decode(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len,
                     sp_arena *a, ProtobufCMessage **out, sp_err *err)
{
    return wire_json_decode_opts(d, data, len, a, NULL, out, err);
}

/* ---- writing --------------------------------------------------------------------------------- */

/* Length of the well-formed UTF-8 sequence at p (RFC 3629 table), 0 when it is not one. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (n < len || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return len;
}

int wire_json_string(sp_buf *out, const char *s, size_t n)
{
    int rc = sp_buf_append(out, "\"", 1);
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end && !rc) {
        const unsigned char *run = p;
        while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
            p++;
        if (p > run)
            rc = sp_buf_append(out, run, (size_t)(p - run));
        if (p == end || rc)
            break;
        if (*p == '"' || *p == '\\') {
            char esc[2] = {'\\', (char)*p};
            rc = sp_buf_append(out, esc, 2);
            p++;
        } else if (*p < 0x20) {
            static const char short_esc[] = "btn\0fr"; /* \b \t \n, \f \r */
            if (*p >= 8 && *p <= 13 && *p != 11)
                rc = sp_buf_printf(out, "\\%c", short_esc[*p - 8]);
            else
                rc = sp_buf_printf(out, "\\u%04x", *p);
            p++;
        } else {
            size_t k = utf8_len(p, (size_t)(end - p));
            if (k) {
                rc = sp_buf_append(out, p, k);
                p += k;
            } else {
                rc = sp_buf_append(out, "\\ufffd", 6);
                p++;
            }
        }
    }
    return rc ? rc : sp_buf_append(out, "\"", 1);
}

static int put_double(sp_buf *o, double v, int is_float)
{
    if (isnan(v))
        return sp_buf_append(o, "\"NaN\"", 5);
    if (isinf(v))
        return v > 0 ? sp_buf_append(o, "\"Infinity\"", 10) : sp_buf_append(o, "\"-Infinity\"", 11);
    char buf[40];
    /* The shortest of a few precisions that reads back as the same value. */
    for (int prec = is_float ? 6 : 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        double back = strtod(buf, NULL);
        if (is_float ? (float)back == (float)v : back == v)
            break;
    }
    return sp_buf_append(o, buf, strlen(buf));
}

int wire_json_double(sp_buf *o, double v)
{
    return put_double(o, v, 0);
}

int wire_json_base64(sp_buf *o, const uint8_t *p, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    int rc = sp_buf_append(o, "\"", 1);
    for (size_t i = 0; i < n && !rc; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        char q[4] = {tab[v >> 18 & 63], tab[v >> 12 & 63], i + 1 < n ? tab[v >> 6 & 63] : '=',
                     i + 2 < n ? tab[v & 63] : '='};
        rc = sp_buf_append(o, q, 4);
    }
    return rc ? rc : sp_buf_append(o, "\"", 1);
}

static int encode_message(sp_buf *o, const ProtobufCMessage *m, int depth);

/* An integer in decimal, quoted for the 64-bit types (proto3 JSON mapping). Written by hand: a
 * flame graph answer is mostly integers, and printf was a quarter of a span query's CPU. */
#define INT_TEXT_MAX 23 /* '"' '-' 20 digits '"' */

/* Writes the integer's text backwards from end; returns where it starts. */
static char *int_text(char *end, uint64_t magnitude, int negative, int quoted)
{
    char *b = end;
    if (quoted)
        *--b = '"';
    do {
        *--b = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude);
    if (negative)
        *--b = '-';
    if (quoted)
        *--b = '"';
    return b;
}

static int put_int(sp_buf *o, uint64_t magnitude, int negative, int quoted)
{
    char b[INT_TEXT_MAX];
    char *start = int_text(b + sizeof b, magnitude, negative, quoted);
    return sp_buf_append(o, start, (size_t)(b + sizeof b - start));
}

/* The integers of a repeated field, comma-separated, written straight into the buffer's room
 * (a flame graph answer is tens of thousands of them: appending each one, and its comma, on its
 * own was a fifth of a span query's CPU). Room is taken for RUN elements' worst case at a
 * time; where the buffer's limit refuses that much, *done says how far this got and the caller
 * writes the rest one by one, so the limit is met exactly where it was. *done = 0 for a type
 * that is not an integer one. */
#define RUN 256
static int put_int_array(sp_buf *o, ProtobufCType t, const char *arr, size_t n, size_t *done)
{
    *done = 0;
    int is64, is_signed, quoted;
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        is64 = 0, is_signed = 1;
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        is64 = 0, is_signed = 0;
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        is64 = 1, is_signed = 1;
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        is64 = 1, is_signed = 0;
        break;
    default:
        return 0;
    }
    quoted = is64; /* proto3 JSON: 64-bit integers are strings */
    for (size_t k = 0; k < n;) {
        size_t run = n - k < RUN ? n - k : RUN;
        int rc = sp_buf_reserve(o, run * (INT_TEXT_MAX + 1));
        if (rc == SP_ETOOBIG)
            break;
        if (rc)
            return rc;
        char *w = (char *)o->data + o->len;
        for (size_t end = k + run; k < end; k++) {
            int64_t v;
            if (is64) {
                memcpy(&v, arr + k * 8, 8);
            } else {
                int32_t v32;
                memcpy(&v32, arr + k * 4, 4);
                v = is_signed ? (int64_t)v32 : (int64_t)(uint32_t)v32;
            }
            int neg = is_signed && v < 0;
            uint64_t mag = neg ? 0 - (uint64_t)v : (uint64_t)v;
            char b[INT_TEXT_MAX];
            char *start = int_text(b + sizeof b, mag, neg, quoted);
            size_t len = (size_t)(b + sizeof b - start);
            if (k)
                *w++ = ',';
            memcpy(w, start, len);
            w += len;
        }
        o->len = (size_t)((uint8_t *)w - o->data);
        *done = k;
    }
    if (o->data)
        o->data[o->len] = 0;
    return 0;
}

static int put_signed(sp_buf *o, int64_t v, int quoted)
{
    return put_int(o, v < 0 ? 0 - (uint64_t)v : (uint64_t)v, v < 0, quoted);
}

static int encode_value(sp_buf *o, const ProtobufCFieldDescriptor *f, const void *p, int depth)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return put_signed(o, *(const int32_t *)p, 0);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return put_int(o, *(const uint32_t *)p, 0, 0);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return put_signed(o, *(const int64_t *)p, 1);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return put_int(o, *(const uint64_t *)p, 0, 1);
    case PROTOBUF_C_TYPE_FLOAT:
        return put_double(o, *(const float *)p, 1);
    case PROTOBUF_C_TYPE_DOUBLE:
        return put_double(o, *(const double *)p, 0);
    case PROTOBUF_C_TYPE_BOOL:
        return *(const protobuf_c_boolean *)p ? sp_buf_append(o, "true", 4)
                                              : sp_buf_append(o, "false", 5);
    case PROTOBUF_C_TYPE_ENUM: {
        int32_t v = *(const int32_t *)p;
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, v);
        if (ev)
            return wire_json_string(o, ev->name, strlen(ev->name));
        return put_signed(o, v, 0);
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return s ? wire_json_string(o, s, strlen(s)) : sp_buf_append(o, "\"\"", 2);
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = p;
        return wire_json_base64(o, b->data, b->len);
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(ProtobufCMessage *const *)p;
        return sub ? encode_message(o, sub, depth + 1) : sp_buf_append(o, "{}", 2);
    }
    }
    return SP_EINTERNAL;
}

/* Whether a singular field is set (proto3 implicit presence: not at its zero value). */
static int present(const ProtobufCFieldDescriptor *f, const char *base)
{
    const void *p = base + f->offset;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        return *(const uint32_t *)(base + f->quantifier_offset) == f->id;
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
        f->type != PROTOBUF_C_TYPE_MESSAGE)
        return *(const protobuf_c_boolean *)(base + f->quantifier_offset) != 0;
    int req = f->label == PROTOBUF_C_LABEL_REQUIRED;
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return s && (*s || req);
    }
    case PROTOBUF_C_TYPE_MESSAGE:
        return *(ProtobufCMessage *const *)p != NULL;
    case PROTOBUF_C_TYPE_BYTES:
        return req || ((const ProtobufCBinaryData *)p)->len > 0;
    case PROTOBUF_C_TYPE_FLOAT:
        return req || *(const float *)p != 0;
    case PROTOBUF_C_TYPE_DOUBLE:
        return req || *(const double *)p != 0;
    default: {
        size_t n = elem_size(f->type);
        uint64_t v = 0;
        memcpy(&v, p, n);
        return req || v != 0;
    }
    }
}

static int encode_message(sp_buf *o, const ProtobufCMessage *m, int depth)
{
    if (depth > 64)
        return SP_EINVAL;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const char *base = (const char *)m;
    int rc = sp_buf_append(o, "{", 1), first = 1;
    char jn[128];
    for (unsigned i = 0; i < d->n_fields && !rc; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        size_t n = 1;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            n = *(const size_t *)(base + f->quantifier_offset);
            if (!n)
                continue;
        } else if (!present(f, base)) {
            continue;
        }
        json_name(f->name, jn, sizeof jn);
        size_t jl = strlen(jn);
        rc = first ? 0 : sp_buf_append(o, ",", 1);
        rc = rc ? rc : sp_buf_append(o, "\"", 1);
        rc = rc ? rc : sp_buf_append(o, jn, jl);
        rc = rc ? rc : sp_buf_append(o, "\":", 2);
        first = 0;
        if (f->label != PROTOBUF_C_LABEL_REPEATED) {
            if (!rc)
                rc = encode_value(o, f, base + f->offset, depth);
            continue;
        }
        const char *arr = *(char *const *)(base + f->offset);
        size_t es = elem_size(f->type);
        rc = rc ? rc : sp_buf_append(o, "[", 1);
        size_t k = 0;
        if (!rc)
            rc = put_int_array(o, f->type, arr, n, &k);
        for (; k < n && !rc; k++) {
            if (k)
                rc = sp_buf_append(o, ",", 1);
            if (!rc)
                rc = encode_value(o, f, arr + k * es, depth);
        }
        if (!rc)
            rc = sp_buf_append(o, "]", 1);
    }
    return rc ? rc : sp_buf_append(o, "}", 1);
}

int wire_json_encode(const ProtobufCMessage *m, sp_buf *out)
{
    return encode_message(out, m, 0);
}
