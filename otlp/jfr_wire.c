/* JFR encoding: compressed integers, strings, values read by their metadata, the metadata event.
 *
 * Invariants (tests/unit/test_otlp_jfr.c, tests/fuzz/fuzz_jfr.c):
 *  W1. No read leaves [r->p, r->end): every length and count is checked against the bytes left
 *      before it is used, and a count of elements is at most the bytes left (every encoded value
 *      takes at least one byte, W2), so no loop runs longer than its input.
 *  W2. Every value takes at least one byte: a composite type read inline must have fields
 *      (the JDK treats a field-less type as a primitive and refuses unknown primitives).
 *  W3. Nesting (metadata elements, composites inside composites, arrays) stops at
 *      JFR_MAX_DEPTH, so no input recurses deeper.
 *  W4. Every string index, type id and attribute in the metadata is checked before use; a field
 *      of an undeclared type fails the chunk instead of being guessed at.
 */
#include "jfr_impl.h"

#include <inttypes.h>
#include <stdio.h>
#include <time.h>

/* ---------- maps ---------- */

uint64_t jfr_seed(const void *salt)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t h = jfr_mix((uint64_t)(uintptr_t)salt, (uint64_t)(uintptr_t)&ts);
    return jfr_mix(h, (uint64_t)ts.tv_sec << 30 ^ (uint64_t)ts.tv_nsec);
}

static uint32_t slot_of_key(uint64_t key, uint32_t cap)
{
    return (uint32_t)jfr_fmix(key) & (cap - 1);
}

uint32_t jfr_map_get(const jfr_map *m, uint64_t key)
{
    if (!m->cap)
        return 0;
    for (uint32_t h = slot_of_key(key ^ m->seed, m->cap);; h = (h + 1) & (m->cap - 1)) {
        if (!m->vals[h])
            return 0;
        if (m->keys[h] == key)
            return m->vals[h];
    }
}

static int map_grow(jfr_map *m, sp_arena *a)
{
    uint32_t cap = m->cap ? m->cap * 2 : 64;
    if (cap < m->cap)
        return -1;
    uint64_t *keys = sp_arena_alloc(a, (size_t)cap * sizeof *keys);
    uint32_t *vals = sp_arena_calloc(a, cap, sizeof *vals);
    if (!keys || !vals)
        return -1;
    if (!m->cap)
        m->seed = jfr_seed(m);
    for (uint32_t i = 0; i < m->cap; i++) {
        if (!m->vals[i])
            continue;
        uint32_t h = slot_of_key(m->keys[i] ^ m->seed, cap);
        while (vals[h])
            h = (h + 1) & (cap - 1);
        keys[h] = m->keys[i];
        vals[h] = m->vals[i];
    }
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    return 0;
}

int jfr_map_put(jfr_map *m, sp_arena *a, uint64_t key, uint32_t val)
{
    if ((m->n + 1) * 2 > m->cap && map_grow(m, a))
        return -1;
    uint32_t h = slot_of_key(key ^ m->seed, m->cap);
    while (m->vals[h] && m->keys[h] != key)
        h = (h + 1) & (m->cap - 1);
    if (!m->vals[h])
        m->n++;
    m->keys[h] = key;
    m->vals[h] = val;
    return 0;
}

uint32_t jfr_set_next(const jfr_set *s, uint64_t h, uint32_t *slot)
{
    if (!s->cap)
        return 0;
    uint32_t i =
        *slot == UINT32_MAX ? slot_of_key((uint32_t)h, s->cap) : (*slot + 1) & (s->cap - 1);
    for (;; i = (i + 1) & (s->cap - 1)) {
        if (!s->ids[i])
            return 0;
        if (s->h32[i] == (uint32_t)h) {
            *slot = i;
            return s->ids[i];
        }
    }
}

static int set_grow(jfr_set *s, sp_arena *a)
{
    uint32_t cap = s->cap ? s->cap * 2 : 256;
    if (cap < s->cap)
        return -1;
    uint32_t *ids = sp_arena_calloc(a, cap, sizeof *ids);
    uint32_t *h32 = sp_arena_alloc(a, (size_t)cap * sizeof *h32);
    if (!ids || !h32)
        return -1;
    for (uint32_t i = 0; i < s->cap; i++) {
        if (!s->ids[i])
            continue;
        uint32_t h = slot_of_key(s->h32[i], cap);
        while (ids[h])
            h = (h + 1) & (cap - 1);
        ids[h] = s->ids[i];
        h32[h] = s->h32[i];
    }
    s->ids = ids;
    s->h32 = h32;
    s->cap = cap;
    return 0;
}

int jfr_set_add(jfr_set *s, sp_arena *a, uint64_t h, uint32_t id)
{
    if ((s->n + 1) * 2 > s->cap && set_grow(s, a))
        return -1;
    uint32_t i = slot_of_key((uint32_t)h, s->cap);
    while (s->ids[i])
        i = (i + 1) & (s->cap - 1);
    s->ids[i] = id;
    s->h32[i] = (uint32_t)h;
    s->n++;
    return 0;
}

/* ---------- integers and strings ---------- */

int jfr_varint_slow(jfr_ctx *c, jfr_rd *r, uint64_t *v, const char *what)
{
    *v = 0; /* on every path: -O3 cannot tell that an error means the caller reads nothing */
    uint64_t x = 0;
    const uint8_t *p = r->p;
    for (int i = 0; i < 9; i++) {
        if (p >= r->end)
            return sp_fail(c->err, SP_EINVAL, "offset %zu: %s is cut off (its data ends at %zu)",
                           jfr_off(r), what, (size_t)(r->end - r->base));
        uint8_t b = *p++;
        if (i == 8) {
            x |= (uint64_t)b << 56; /* the 9th byte carries 8 bits (RecordingInput.readLong) */
            break;
        }
        x |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80))
            break;
    }
    r->p = p;
    *v = x;
    return 0;
}

static int need(jfr_ctx *c, const jfr_rd *r, uint64_t n, const char *what)
{
    if (n > jfr_left(r))
        return sp_fail(c->err, SP_EINVAL,
                       "offset %zu: %s of %" PRIu64 " bytes runs past the end of its data "
                       "(%zu bytes left)",
                       jfr_off(r), what, n, jfr_left(r));
    return 0;
}

static char *put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        *o++ = (char)cp;
    } else if (cp < 0x800) {
        *o++ = (char)(0xC0 | cp >> 6);
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *o++ = (char)(0xE0 | cp >> 12);
        *o++ = (char)(0x80 | (cp >> 6 & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *o++ = (char)(0xF0 | cp >> 18);
        *o++ = (char)(0x80 | (cp >> 12 & 0x3F));
        *o++ = (char)(0x80 | (cp >> 6 & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    }
    return o;
}

/* Encoding 5: Latin-1 bytes are the code points U+0000..U+00FF. */
static int latin1(jfr_ctx *c, const uint8_t *p, uint32_t n, jfr_val *out)
{
    uint32_t high = 0;
    for (uint32_t i = 0; i < n; i++)
        high += p[i] >> 7;
    out->kind = JV_STR;
    if (!high) {
        out->s = (jfr_str){(const char *)p, n};
        return 0;
    }
    char *s = sp_arena_alloc(c->chunk, (size_t)n + high), *o = s;
    if (!s)
        return sp_fail(c->err, SP_ETOOBIG, "strings exceed the scratch budget");
    for (uint32_t i = 0; i < n; i++)
        o = put_utf8(o, p[i]);
    out->s = (jfr_str){s, (uint32_t)(o - s)};
    return 0;
}

/* Encoding 4: UTF-16 code units, each a compressed integer; a lone surrogate becomes U+FFFD. */
static int utf16(jfr_ctx *c, jfr_rd *r, uint32_t n, jfr_val *out)
{
    char *s = out ? sp_arena_alloc(c->chunk, (size_t)n * 3 + 1) : NULL, *o = s;
    if (out && !s)
        return sp_fail(c->err, SP_ETOOBIG, "strings exceed the scratch budget");
    uint32_t pending = 0; /* a high surrogate waiting for its low half */
    for (uint32_t i = 0; i < n; i++) {
        uint64_t u;
        int rc = jfr_varint(c, r, &u, "string character");
        if (rc)
            return rc;
        if (!out)
            continue;
        uint32_t cu = (uint16_t)u;
        if (pending && cu >= 0xDC00 && cu <= 0xDFFF) {
            o = put_utf8(o, 0x10000 + ((pending - 0xD800) << 10) + (cu - 0xDC00));
            pending = 0;
            continue;
        }
        if (pending)
            o = put_utf8(o, 0xFFFD);
        pending = 0;
        if (cu >= 0xD800 && cu <= 0xDBFF)
            pending = cu;
        else
            o = put_utf8(o, cu >= 0xDC00 && cu <= 0xDFFF ? 0xFFFD : cu);
    }
    if (!out)
        return 0;
    if (pending)
        o = put_utf8(o, 0xFFFD);
    out->kind = JV_STR;
    out->s = (jfr_str){s, (uint32_t)(o - s)};
    return 0;
}

int jfr_string(jfr_ctx *c, jfr_rd *r, jfr_val *out)
{
    if (r->p >= r->end)
        return sp_fail(c->err, SP_EINVAL, "offset %zu: string is cut off (its data ends there)",
                       jfr_off(r));
    size_t at = jfr_off(r);
    uint8_t enc = *r->p++;
    uint64_t n;
    int rc;
    switch (enc) {
    case 0: /* null */
    case 1: /* "" */
        if (out) {
            out->kind = JV_STR;
            out->s = (jfr_str){"", 0};
        }
        return 0;
    case 2: /* key into the java.lang.String pool */
        if ((rc = jfr_varint(c, r, &n, "string pool key")))
            return rc;
        if (out) {
            out->kind = JV_STRREF;
            out->i = (int64_t)n;
        }
        return 0;
    case 3: /* UTF-8 */
    case 5: /* Latin-1 */
        if ((rc = jfr_varint(c, r, &n, "string length")) || (rc = need(c, r, n, "string")))
            return rc;
        {
            const uint8_t *p = r->p;
            r->p += n;
            if (!out)
                return 0;
            if (enc == 5)
                return latin1(c, p, (uint32_t)n, out);
            out->kind = JV_STR;
            out->s = (jfr_str){(const char *)p, (uint32_t)n};
        }
        return 0;
    case 4: /* UTF-16 code units, one compressed integer each (W1: at least a byte each) */
        if ((rc = jfr_varint(c, r, &n, "string length")) ||
            (rc = need(c, r, n, "string of UTF-16 characters")))
            return rc;
        return utf16(c, r, (uint32_t)n, out);
    default:
        return sp_fail(c->err, SP_EINVAL, "offset %zu: unknown string encoding %u (0..5)", at, enc);
    }
}

/* ---------- values by metadata ---------- */

static int raw_skip(jfr_ctx *c, jfr_rd *r, size_t n, const char *what)
{
    int rc = need(c, r, n, what);
    if (!rc)
        r->p += n;
    return rc;
}

static int array_read(jfr_ctx *c, jfr_rd *r, const jfr_field *f, int depth)
{
    uint64_t n;
    int rc = jfr_varint(c, r, &n, "array length");
    if (rc)
        return rc;
    if (n > jfr_left(r)) /* W1: each element takes a byte at least */
        return sp_fail(c->err, SP_EINVAL,
                       "offset %zu: array %.*s claims %" PRIu64 " elements in %zu bytes",
                       jfr_off(r), (int)f->name.n, f->name.s, n, jfr_left(r));
    jfr_field el = *f;
    el.array = 0;
    for (uint64_t i = 0; i < n; i++)
        if ((rc = jfr_field_read(c, r, &el, NULL, depth + 1)))
            return rc;
    return 0;
}

static int composite_read(jfr_ctx *c, jfr_rd *r, const jfr_class *t, int depth)
{
    if (!t->nfields) /* W2 */
        return sp_fail(c->err, SP_EINVAL,
                       "offset %zu: type %.*s has no fields and is not a primitive", jfr_off(r),
                       (int)t->name.n, t->name.s);
    for (uint32_t i = 0; i < t->nfields; i++) {
        int rc = jfr_field_read(c, r, &t->fields[i], NULL, depth + 1);
        if (rc)
            return rc;
    }
    return 0;
}

int jfr_field_read(jfr_ctx *c, jfr_rd *r, const jfr_field *f, jfr_val *out, int depth)
{
    if (depth > JFR_MAX_DEPTH) /* W3 */
        return sp_fail(c->err, SP_EINVAL, "offset %zu: values nest deeper than %d levels",
                       jfr_off(r), JFR_MAX_DEPTH);
    if (f->array)
        return array_read(c, r, f, depth);
    const jfr_class *t = &c->meta.classes[f->type];
    uint64_t v = 0;
    int rc;
    if (f->cp) {
        if ((rc = jfr_varint(c, r, &v, "constant pool key")))
            return rc;
        if (out) {
            out->kind = t->kind == JK_STRING ? JV_STRREF : JV_INT;
            out->i = (int64_t)v;
        }
        return 0;
    }
    switch (t->kind) {
    case JK_BOOLEAN:
    case JK_BYTE:
        if ((rc = need(c, r, 1, "byte")))
            return rc;
        v = t->kind == JK_BOOLEAN ? *r->p != 0 : (uint64_t)(int64_t)(int8_t)*r->p;
        r->p++;
        break;
    case JK_CHAR:
    case JK_SHORT:
    case JK_INT:
    case JK_LONG:
        if ((rc = jfr_varint(c, r, &v, "integer")))
            return rc;
        /* The writer compresses the value's own width: an int of -1 is 0xffffffff. */
        v = t->kind == JK_CHAR    ? (uint16_t)v
            : t->kind == JK_SHORT ? (uint64_t)(int64_t)(int16_t)v
            : t->kind == JK_INT   ? (uint64_t)(int64_t)(int32_t)v
                                  : v;
        break;
    case JK_FLOAT:
        return raw_skip(c, r, 4, "float");
    case JK_DOUBLE:
        return raw_skip(c, r, 8, "double");
    case JK_STRING:
        return jfr_string(c, r, out);
    default:
        return composite_read(c, r, t, depth);
    }
    if (out) {
        out->kind = JV_INT;
        out->i = (int64_t)v;
    }
    return 0;
}

int jfr_object_read(jfr_ctx *c, jfr_rd *r, const jfr_class *k, const jfr_bind *b, jfr_val *vals,
                    int depth)
{
    if (!k->nfields && k->kind == JK_COMPOSITE)
        return composite_read(c, r, k, depth);
    for (uint32_t i = 0; i < k->nfields; i++) {
        uint8_t s = b && b->slot_of ? b->slot_of[i] : JFR_NOSLOT;
        int rc = jfr_field_read(c, r, &k->fields[i], s == JFR_NOSLOT ? NULL : &vals[s], depth + 1);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---------- bindings ---------- */

static int shape_ok(const jfr_ctx *c, const jfr_field *f, char want)
{
    const jfr_class *t = &c->meta.classes[f->type];
    switch (want) {
    case 'i':
        return !f->array && !f->cp && t->kind >= JK_BOOLEAN && t->kind <= JK_LONG;
    case 'r':
        return !f->array && f->cp;
    case 's':
        return !f->array && t->kind == JK_STRING;
    case 'a':
        return f->array && !f->cp && t->kind == JK_COMPOSITE;
    default:
        return 0;
    }
}

int jfr_bind_fields(jfr_ctx *c, jfr_bind *b, enum jfr_known t, const char *const *names,
                    const char *want, int n)
{
    memset(b, 0, sizeof *b);
    uint32_t k = c->meta.known[t];
    if (!k)
        return 0;
    const jfr_class *cls = &c->meta.classes[k - 1];
    b->slot_of = sp_arena_alloc(c->chunk, cls->nfields + 1);
    if (!b->slot_of)
        return sp_fail(c->err, SP_ETOOBIG, "metadata exceeds the scratch budget");
    memset(b->slot_of, JFR_NOSLOT, cls->nfields + 1);
    b->cls = cls;
    for (int s = 0; s < n && s < JFR_SLOTS; s++) {
        if (!names[s])
            continue;
        for (uint32_t i = 0; i < cls->nfields; i++)
            if (jfr_str_is(cls->fields[i].name, names[s]) && b->slot_of[i] == JFR_NOSLOT &&
                shape_ok(c, &cls->fields[i], want[s])) {
                b->slot_of[i] = (uint8_t)s;
                b->present[s] = 1;
                break;
            }
    }
    return 0;
}

/* ---------- the metadata event ---------- */

const char *const jfr_known_names[T_NKNOWN] = {
    [T_STRING] = "java.lang.String",
    [T_SYMBOL] = "jdk.types.Symbol",
    [T_CLASS] = "java.lang.Class",
    [T_METHOD] = "jdk.types.Method",
    [T_STACKTRACE] = "jdk.types.StackTrace",
    [T_STACKFRAME] = "jdk.types.StackFrame",
    [T_THREAD] = "java.lang.Thread",
    [T_FRAMETYPE] = "jdk.types.FrameType",
    [T_THREADSTATE] = "jdk.types.ThreadState",
    [T_EXEC] = "jdk.ExecutionSample",
    [T_WALL] = "profiler.WallClockSample",
    [T_TLAB_NEW] = "jdk.ObjectAllocationInNewTLAB",
    [T_TLAB_OUT] = "jdk.ObjectAllocationOutsideTLAB",
    [T_ALLOC_SAMPLE] = "jdk.ObjectAllocationSample",
    [T_LIVE] = "profiler.LiveObject",
    [T_MONITOR] = "jdk.JavaMonitorEnter",
    [T_PARK] = "jdk.ThreadPark",
    [T_MALLOC] = "profiler.Malloc",
    [T_SETTING] = "jdk.ActiveSetting",
    [T_JVMINFO] = "jdk.JVMInformation",
};

enum { R_SKIP, R_ROOT, R_META, R_CLASS, R_FIELD };

typedef struct mreader {
    jfr_ctx *c;
    jfr_rd r;
    jfr_str *strs;
    uint32_t nstr;
    uint32_t cap_classes;
} mreader;

static int mindex(mreader *m, const char *what, jfr_str *out)
{
    *out = (jfr_str){"", 0};
    uint64_t v;
    int rc = jfr_varint(m->c, &m->r, &v, what);
    if (rc)
        return rc;
    if (v >= m->nstr) /* W4 */
        return sp_fail(m->c->err, SP_EINVAL,
                       "offset %zu: metadata %s %" PRIu64 " out of range (%u strings)",
                       jfr_off(&m->r), what, v, m->nstr);
    *out = m->strs[v];
    return 0;
}

static int parse_u64(jfr_str s, uint64_t *v)
{
    uint64_t x = 0;
    if (!s.n || s.n > 20)
        return -1;
    for (uint32_t i = 0; i < s.n; i++) {
        if (s.s[i] < '0' || s.s[i] > '9')
            return -1;
        uint64_t d = (uint64_t)(s.s[i] - '0');
        if (x > (UINT64_MAX - d) / 10)
            return -1;
        x = x * 10 + d;
    }
    *v = x;
    return 0;
}

/* Applies one attribute to the class or field being read. */
static int mattr(mreader *m, int role, jfr_str k, jfr_str v, jfr_class *cls, jfr_field *fld)
{
    const char *bad = NULL;
    if (role == R_CLASS) {
        if (jfr_str_is(k, "id") && parse_u64(v, &cls->id))
            bad = "class id";
        else if (jfr_str_is(k, "name"))
            cls->name = v;
    } else if (role == R_FIELD) {
        if (jfr_str_is(k, "class") && parse_u64(v, &fld->type_id))
            bad = "field class";
        else if (jfr_str_is(k, "name"))
            fld->name = v;
        else if (jfr_str_is(k, "constantPool"))
            fld->cp = jfr_str_is(v, "true");
        else if (jfr_str_is(k, "dimension")) {
            uint64_t d;
            if (parse_u64(v, &d) || d > 1) /* MetadataReader: only 0 and 1 exist */
                bad = "field dimension";
            else
                fld->array = (uint8_t)d;
        }
    }
    if (bad)
        return sp_fail(m->c->err, SP_EINVAL, "offset %zu: metadata %s \"%.*s\" is not valid",
                       jfr_off(&m->r), bad, (int)(v.n > 40 ? 40 : v.n), v.s);
    return 0;
}

static int melement(mreader *m, int parent, int depth, jfr_class *owner);

/* Children of an element: n of them, each at least 3 bytes (W1). */
static int mchildren(mreader *m, int role, int depth, jfr_class *cls)
{
    uint64_t n;
    int rc = jfr_varint(m->c, &m->r, &n, "metadata child count");
    if (rc)
        return rc;
    if (n > jfr_left(&m->r) / 3)
        return sp_fail(m->c->err, SP_EINVAL,
                       "offset %zu: metadata element claims %" PRIu64 " children in %zu bytes",
                       jfr_off(&m->r), n, jfr_left(&m->r));
    if (role == R_META) {
        if (m->c->meta.nclasses + n > m->c->o.max_types)
            return sp_fail(m->c->err, SP_ETOOBIG,
                           "metadata declares more than %u types (max_types)", m->c->o.max_types);
        uint32_t cap = m->c->meta.nclasses + (uint32_t)n;
        jfr_class *x = sp_arena_calloc(m->c->chunk, cap + 1, sizeof *x);
        if (!x)
            return sp_fail(m->c->err, SP_ETOOBIG, "metadata exceeds the scratch budget");
        if (m->c->meta.nclasses)
            memcpy(x, m->c->meta.classes, m->c->meta.nclasses * sizeof *x);
        m->c->meta.classes = x;
        m->cap_classes = cap;
    } else if (role == R_CLASS) {
        cls->fields = sp_arena_calloc(m->c->chunk, n + 1, sizeof *cls->fields);
        if (!cls->fields)
            return sp_fail(m->c->err, SP_ETOOBIG, "metadata exceeds the scratch budget");
    }
    for (uint64_t i = 0; i < n; i++)
        if ((rc = melement(m, role, depth + 1, cls)))
            return rc;
    return 0;
}

static int melement(mreader *m, int parent, int depth, jfr_class *owner)
{
    if (depth > JFR_MAX_DEPTH) /* W3 */
        return sp_fail(m->c->err, SP_EINVAL, "offset %zu: metadata nests deeper than %d levels",
                       jfr_off(&m->r), JFR_MAX_DEPTH);
    jfr_str name;
    int rc = mindex(m, "element name", &name);
    if (rc)
        return rc;
    int role = R_SKIP;
    if (depth == 0)
        role = R_ROOT;
    else if (parent == R_ROOT && jfr_str_is(name, "metadata"))
        role = R_META;
    else if (parent == R_META && jfr_str_is(name, "class"))
        role = R_CLASS;
    else if (parent == R_CLASS && jfr_str_is(name, "field"))
        role = R_FIELD;
    jfr_class *cls = owner;
    jfr_field *fld = NULL;
    if (role == R_CLASS) {
        if (m->c->meta.nclasses >= m->cap_classes)
            return sp_fail(m->c->err, SP_EINVAL, "metadata class count mismatch");
        cls = &m->c->meta.classes[m->c->meta.nclasses++];
        cls->id = UINT64_MAX;
    } else if (role == R_FIELD) {
        fld = &owner->fields[owner->nfields++];
        fld->type_id = UINT64_MAX;
    }
    size_t at = jfr_off(&m->r);
    uint64_t nattr;
    if ((rc = jfr_varint(m->c, &m->r, &nattr, "metadata attribute count")))
        return rc;
    if (nattr > jfr_left(&m->r) / 2)
        return sp_fail(m->c->err, SP_EINVAL,
                       "offset %zu: metadata element claims %" PRIu64 " attributes in %zu bytes",
                       at, nattr, jfr_left(&m->r));
    for (uint64_t i = 0; i < nattr; i++) {
        jfr_str k, v;
        if ((rc = mindex(m, "attribute name", &k)) || (rc = mindex(m, "attribute value", &v)) ||
            (rc = mattr(m, role, k, v, cls, fld)))
            return rc;
    }
    if (role == R_CLASS && (cls->id == UINT64_MAX || !cls->name.n))
        return sp_fail(m->c->err, SP_EINVAL, "offset %zu: metadata class without id or name", at);
    if (role == R_FIELD && (fld->type_id == UINT64_MAX || !fld->name.n))
        return sp_fail(m->c->err, SP_EINVAL,
                       "offset %zu: field of class %.*s without name or class", at,
                       (int)owner->name.n, owner->name.s);
    return mchildren(m, role, depth, cls);
}

static uint8_t kind_of(jfr_str name)
{
    static const struct {
        const char *name;
        uint8_t kind;
    } prim[] = {{"boolean", JK_BOOLEAN}, {"byte", JK_BYTE},     {"char", JK_CHAR},
                {"short", JK_SHORT},     {"int", JK_INT},       {"long", JK_LONG},
                {"float", JK_FLOAT},     {"double", JK_DOUBLE}, {"java.lang.String", JK_STRING}};
    for (size_t i = 0; i < sizeof prim / sizeof prim[0]; i++)
        if (jfr_str_is(name, prim[i].name))
            return prim[i].kind;
    return JK_COMPOSITE;
}

/* Indexes the classes by id, resolves field types (W4) and finds the known types. */
static int mresolve(jfr_ctx *c)
{
    jfr_meta *mt = &c->meta;
    for (uint32_t i = 0; i < mt->nclasses; i++) {
        mt->classes[i].kind = kind_of(mt->classes[i].name);
        if (jfr_map_put(&mt->by_id, c->chunk, mt->classes[i].id, i + 1))
            return sp_fail(c->err, SP_ETOOBIG, "metadata exceeds the scratch budget");
    }
    for (uint32_t i = 0; i < mt->nclasses; i++) {
        jfr_class *k = &mt->classes[i];
        for (uint32_t j = 0; j < k->nfields; j++) {
            uint32_t t = jfr_map_get(&mt->by_id, k->fields[j].type_id);
            if (!t)
                return sp_fail(c->err, SP_EINVAL,
                               "metadata: field %.*s of %.*s has undeclared type %" PRIu64,
                               (int)k->fields[j].name.n, k->fields[j].name.s, (int)k->name.n,
                               k->name.s, k->fields[j].type_id);
            k->fields[j].type = t - 1;
        }
        for (int t = 0; t < T_NKNOWN; t++)
            if (jfr_str_is(k->name, jfr_known_names[t]))
                mt->known[t] = i + 1;
    }
    return 0;
}

int jfr_metadata_read(jfr_ctx *c, size_t meta_off)
{
    const uint8_t *chunk = c->data + c->chunk_off;
    mreader m = {.c = c, .r = {c->data, chunk + meta_off, chunk + c->chunk_size}};
    memset(&c->meta, 0, sizeof c->meta);
    uint64_t size, type, skip, nstr;
    int rc = jfr_varint(c, &m.r, &size, "metadata size");
    if (rc)
        return rc;
    if (size < 2 || size > c->chunk_size - meta_off)
        return sp_fail(c->err, SP_EINVAL,
                       "metadata at %zu: size %" PRIu64 " runs past the chunk's end (%zu bytes)",
                       c->chunk_off + meta_off, size, c->chunk_size - meta_off);
    m.r.end = chunk + meta_off + size;
    if ((rc = jfr_varint(c, &m.r, &type, "metadata type")))
        return rc;
    if (type != 0) /* ChunkHeader.readMetadata: METADATA_TYPE_ID */
        return sp_fail(c->err, SP_EINVAL,
                       "metadata at %zu: expected the metadata event (type 0), found type %" PRIu64,
                       c->chunk_off + meta_off, type);
    for (int i = 0; i < 3; i++) /* start time, duration, metadata id */
        if ((rc = jfr_varint(c, &m.r, &skip, "metadata header")))
            return rc;
    if ((rc = jfr_varint(c, &m.r, &nstr, "metadata string count")))
        return rc;
    if (nstr > jfr_left(&m.r))
        return sp_fail(c->err, SP_EINVAL,
                       "offset %zu: metadata claims %" PRIu64 " strings in %zu bytes",
                       jfr_off(&m.r), nstr, jfr_left(&m.r));
    m.nstr = (uint32_t)nstr;
    m.strs = sp_arena_alloc(c->chunk, (nstr + 1) * sizeof *m.strs);
    if (!m.strs)
        return sp_fail(c->err, SP_ETOOBIG, "metadata exceeds the scratch budget");
    for (uint32_t i = 0; i < m.nstr; i++) {
        jfr_val v = {0};
        if ((rc = jfr_string(c, &m.r, &v)))
            return rc;
        if (v.kind != JV_STR)
            return sp_fail(c->err, SP_EINVAL,
                           "offset %zu: metadata string %u refers to the string pool",
                           jfr_off(&m.r), i);
        m.strs[i] = v.s;
    }
    if ((rc = melement(&m, R_SKIP, 0, NULL)))
        return rc;
    return mresolve(c);
}
