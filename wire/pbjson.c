/* Protobuf JSON mapping over protobuf-c descriptors (see pbjson.h). The rules followed are those
 * of the protobuf "JSON Mapping" section of the proto3 language guide. */
#include "pbjson.h"
#include "../common/base64.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
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

static int decode_object(const ProtobufCMessageDescriptor *d, const json_t *obj, sp_arena *a,
                         ProtobufCMessage **out, int depth, sp_err *err);

static int bad(sp_err *err, const ProtobufCFieldDescriptor *f, const char *want, const json_t *v)
{
    char jn[128];
    json_name(f->name, jn, sizeof jn);
    return sp_fail(err, SP_EINVAL, "field %s: expected %s, got %s", jn, want, kind_of(v));
}

/* One value of field f from v into dst (an element slot or the field itself). */
static int decode_value(const ProtobufCFieldDescriptor *f, const json_t *v, sp_arena *a, void *dst,
                        int depth, sp_err *err)
{
    int64_t i;
    uint64_t u;
    double dbl;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        if (int_of(v, INT32_MIN, INT32_MAX, &i))
            return bad(err, f, "a 32-bit integer", v);
        *(int32_t *)dst = (int32_t)i;
        return 0;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if (uint_of(v, UINT32_MAX, &u))
            return bad(err, f, "an unsigned 32-bit integer", v);
        *(uint32_t *)dst = (uint32_t)u;
        return 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        if (int_of(v, INT64_MIN, INT64_MAX, &i))
            return bad(err, f, "a 64-bit integer (number or decimal string)", v);
        *(int64_t *)dst = i;
        return 0;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        if (uint_of(v, UINT64_MAX, &u))
            return bad(err, f, "an unsigned 64-bit integer (number or decimal string)", v);
        *(uint64_t *)dst = u;
        return 0;
    case PROTOBUF_C_TYPE_FLOAT:
        if (double_of(v, &dbl))
            return bad(err, f, "a number", v);
        *(float *)dst = (float)dbl;
        return 0;
    case PROTOBUF_C_TYPE_DOUBLE:
        if (double_of(v, &dbl))
            return bad(err, f, "a number", v);
        *(double *)dst = dbl;
        return 0;
    case PROTOBUF_C_TYPE_BOOL:
        if (!json_is_boolean(v))
            return bad(err, f, "true or false", v);
        *(protobuf_c_boolean *)dst = json_is_true(v);
        return 0;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *ed = f->descriptor;
        if (json_is_string(v)) {
            const ProtobufCEnumValue *ev =
                protobuf_c_enum_descriptor_get_value_by_name(ed, json_string_value(v));
            if (!ev) {
                char jn[128];
                json_name(f->name, jn, sizeof jn);
                return sp_fail(err, SP_EINVAL, "field %s: %s is not a value of %s", jn,
                               json_string_value(v), ed->name);
            }
            *(int32_t *)dst = ev->value;
            return 0;
        }
        if (int_of(v, INT32_MIN, INT32_MAX, &i)) /* proto3 enums are open: any number */
            return bad(err, f, "an enum name or number", v);
        *(int32_t *)dst = (int32_t)i;
        return 0;
    }
    case PROTOBUF_C_TYPE_STRING: {
        if (!json_is_string(v))
            return bad(err, f, "a string", v);
        char *s = sp_arena_strndup(a, json_string_value(v), json_string_length(v));
        if (!s)
            return sp_fail(err, SP_ETOOBIG, "request too large for the query budget");
        *(char **)dst = s;
        return 0;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        if (!json_is_string(v))
            return bad(err, f, "a base64 string", v);
        ProtobufCBinaryData *bd = dst;
        int rc =
            sp_base64_decode(json_string_value(v), json_string_length(v), a, &bd->data, &bd->len);
        if (rc == SP_EINVAL)
            return bad(err, f, "base64", v);
        if (rc)
            return sp_fail(err, SP_ETOOBIG, "request too large for the query budget");
        return 0;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        if (!json_is_object(v))
            return bad(err, f, "an object", v);
        int rc = decode_object(f->descriptor, v, a, (ProtobufCMessage **)dst, depth + 1, err);
        if (rc) {
            char jn[128];
            json_name(f->name, jn, sizeof jn);
            sp_err_prefix(err, "%s.", jn);
        }
        return rc;
    }
    }
    return bad(err, f, "a supported type", v);
}

static int decode_object(const ProtobufCMessageDescriptor *d, const json_t *obj, sp_arena *a,
                         ProtobufCMessage **out, int depth, sp_err *err)
{
    if (depth > 64)
        return sp_fail(err, SP_EINVAL, "message nested more than 64 levels deep");
    ProtobufCMessage *m = sp_arena_alloc(a, d->sizeof_message);
    if (!m)
        return sp_fail(err, SP_ETOOBIG, "request too large for the query budget");
    d->message_init(m);
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        const ProtobufCFieldDescriptor *f = field_by_key(d, key);
        if (!f || json_is_null(v))
            continue; /* unknown fields are ignored; null is the default */
        char *base = (char *)m;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            if (!json_is_array(v))
                return bad(err, f, "an array", v);
            size_t n = json_array_size(v), es = elem_size(f->type);
            char *arr = n ? sp_arena_calloc(a, n, es) : NULL;
            if (n && !arr)
                return sp_fail(err, SP_ETOOBIG, "request too large for the query budget");
            for (size_t k = 0; k < n; k++) {
                int rc = decode_value(f, json_array_get(v, k), a, arr + k * es, depth, err);
                if (rc) {
                    sp_err_prefix(err, "[%zu] ", k);
                    return rc;
                }
            }
            *(size_t *)(base + f->quantifier_offset) = n;
            *(void **)(base + f->offset) = arr;
            continue;
        }
        int rc = decode_value(f, v, a, base + f->offset, depth, err);
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

int wire_json_decode(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len,
                      sp_arena *a, ProtobufCMessage **out, sp_err *err)
{
    json_error_t je;
    json_t *root = json_loadb((const char *)data, len, JSON_ALLOW_NUL, &je);
    if (!root)
        return sp_fail(err, SP_EINVAL, "body is not JSON: %s (line %d, column %d)", je.text,
                       je.line, je.column);
    int rc;
    if (!json_is_object(root))
        rc = sp_fail(err, SP_EINVAL, "body is not a JSON object (%s)", d->name);
    else
        rc = decode_object(d, root, a, out, 0, err);
    json_decref(root);
    return rc;
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

static int put_base64(sp_buf *o, const uint8_t *p, size_t n)
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

static int encode_value(sp_buf *o, const ProtobufCFieldDescriptor *f, const void *p, int depth)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return sp_buf_printf(o, "%" PRId32, *(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return sp_buf_printf(o, "%" PRIu32, *(const uint32_t *)p);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return sp_buf_printf(o, "\"%" PRId64 "\"", *(const int64_t *)p);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return sp_buf_printf(o, "\"%" PRIu64 "\"", *(const uint64_t *)p);
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
        return sp_buf_printf(o, "%" PRId32, v);
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return s ? wire_json_string(o, s, strlen(s)) : sp_buf_append(o, "\"\"", 2);
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = p;
        return put_base64(o, b->data, b->len);
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
        rc = sp_buf_printf(o, "%s\"%s\":", first ? "" : ",", jn);
        first = 0;
        if (f->label != PROTOBUF_C_LABEL_REPEATED) {
            if (!rc)
                rc = encode_value(o, f, base + f->offset, depth);
            continue;
        }
        const char *arr = *(char *const *)(base + f->offset);
        size_t es = elem_size(f->type);
        rc = rc ? rc : sp_buf_append(o, "[", 1);
        for (size_t k = 0; k < n && !rc; k++) {
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
