/* Protobuf wire-format reading: see wire.h. */
#include "pb.h"

#include <protobuf-c/protobuf-c.h>

int wire_pb_varint_any(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    const uint8_t *q = *p;
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (q >= end)
            return -1;
        uint8_t b = *q++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *p = q;
            *out = v;
            return 0;
        }
    }
    return -1; /* an 11th byte would be needed: not a valid varint */
}

int wire_pb_next_any(const uint8_t **p, const uint8_t *end, const uint8_t *base, wire_pb_field *f,
                     sp_err *err)
{
    const uint8_t *q = *p;
    uint64_t tag, v;
    f->start = q;
    size_t off = (size_t)(q - base);
    if (wire_pb_varint(&q, end, &tag) != 0)
        return sp_fail(err, SP_EINVAL, "offset %zu: truncated field tag", off);
    if ((tag >> 3) == 0 || (tag >> 3) > 0x1fffffff)
        return sp_fail(err, SP_EINVAL, "offset %zu: invalid field number %llu", off,
                       (unsigned long long)(tag >> 3));
    f->body = q;
    f->num = (uint32_t)(tag >> 3);
    f->wt = (int)(tag & 7);
    f->val = NULL;
    f->vlen = 0;
    f->varint = 0;
    switch (f->wt) {
    case WIRE_WT_VARINT:
        if (wire_pb_varint(&q, end, &f->varint) != 0)
            return sp_fail(err, SP_EINVAL, "offset %zu: field %u: truncated varint", off, f->num);
        break;
    case WIRE_WT_I64:
        if (end - q < 8)
            return sp_fail(err, SP_EINVAL, "offset %zu: field %u: truncated fixed64", off, f->num);
        v = 0;
        for (int i = 7; i >= 0; i--)
            v = (v << 8) | q[i];
        f->varint = v;
        q += 8;
        break;
    case WIRE_WT_I32:
        if (end - q < 4)
            return sp_fail(err, SP_EINVAL, "offset %zu: field %u: truncated fixed32", off, f->num);
        f->varint =
            (uint64_t)q[0] | (uint64_t)q[1] << 8 | (uint64_t)q[2] << 16 | (uint64_t)q[3] << 24;
        q += 4;
        break;
    case WIRE_WT_LEN:
        if (wire_pb_varint(&q, end, &v) != 0)
            return sp_fail(err, SP_EINVAL, "offset %zu: field %u: truncated length", off, f->num);
        if (v > (uint64_t)(end - q))
            return sp_fail(err, SP_EINVAL,
                           "offset %zu: field %u: length %llu exceeds the %zu bytes left", off,
                           f->num, (unsigned long long)v, (size_t)(end - q));
        f->val = q;
        f->vlen = (size_t)v;
        q += v;
        break;
    default:
        return sp_fail(err, SP_EINVAL, "offset %zu: field %u: unsupported wire type %d", off,
                       f->num, f->wt);
    }
    f->end = q;
    *p = q;
    return 0;
}

size_t wire_pb_varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

size_t wire_pb_put_varint(uint8_t *out, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t)v;
    return n;
}

int wire_pb_is_packed_varints(const uint8_t *data, size_t len)
{
    const uint8_t *p = data, *end = data + len;
    uint64_t v;
    while (p < end)
        if (wire_pb_varint(&p, end, &v) != 0)
            return 0;
    return 1;
}

/* The most levels of sub-messages a message type can hold below itself, from its descriptor
 * alone: 0 for a type without message fields, NEST_UNBOUNDED for a type on or above a cycle
 * (AnyValue). Computed once per call for the types reachable from the root. */
#define NEST_UNBOUNDED (1 << 20)
#define NEST_TYPES     128

typedef struct nest_memo {
    const ProtobufCMessageDescriptor *desc[NEST_TYPES];
    int height[NEST_TYPES];
    uint8_t done[NEST_TYPES];
    int n;
} nest_memo;

static int nest_height(nest_memo *m, const ProtobufCMessageDescriptor *d)
{
    int i = 0;
    while (i < m->n && m->desc[i] != d)
        i++;
    if (i < m->n) /* seen: its height, or a cycle when it is still being walked */
        return m->done[i] ? m->height[i] : NEST_UNBOUNDED;
    if (m->n == NEST_TYPES)
        return NEST_UNBOUNDED; /* too many types to remember: walk, as without the memo */
    m->desc[m->n] = d;
    m->done[m->n++] = 0;
    int h = 0;
    for (unsigned f = 0; f < d->n_fields && h < NEST_UNBOUNDED; f++) {
        const ProtobufCFieldDescriptor *fd = &d->fields[f];
        if (fd->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        int c = nest_height(m, fd->descriptor);
        h = c >= NEST_UNBOUNDED ? NEST_UNBOUNDED : c + 1 > h ? c + 1 : h;
    }
    m->height[i] = h;
    m->done[i] = 1;
    return h;
}

/* A sub-message whose type cannot nest past max_depth from where it is is not walked: most of
 * an OTLP profiles request is samples, locations and stacks, which hold no messages (walking them
 * was 8 % of an ingest worker's CPU, issue 19). protobuf-c's unpack reads their bytes anyway and
 * refuses them when malformed; its recursion is what the limit protects. */
static int check(nest_memo *m, const ProtobufCMessageDescriptor *desc, const uint8_t *base,
                 const uint8_t *data, size_t len, int depth, int max_depth, sp_err *err)
{
    if (depth > max_depth)
        return sp_fail(err, SP_EINVAL, "offset %zu: %s nested deeper than %d messages",
                       (size_t)(data - base), desc->name, max_depth);
    if (depth + nest_height(m, desc) <= max_depth)
        return 0;
    const uint8_t *p = data, *end = data + len;
    wire_pb_field f;
    /* The last field number met and whether its entries need a walk: a repeated field's entries
     * come one after another (a dictionary's tables are tens of thousands of them), and each
     * needed a descriptor search and a height lookup to find it does not. */
    uint32_t last = 0;
    const ProtobufCMessageDescriptor *walk = NULL;
    while (p < end) {
        int rc = wire_pb_next(&p, end, base, &f, err);
        if (rc)
            return rc;
        if (f.wt != WIRE_WT_LEN)
            continue;
        if (f.num != last) {
            const ProtobufCFieldDescriptor *fd =
                protobuf_c_message_descriptor_get_field(desc, f.num);
            last = f.num;
            walk = fd && fd->type == PROTOBUF_C_TYPE_MESSAGE ? fd->descriptor : NULL;
            if (walk && depth + 1 <= max_depth && depth + 1 + nest_height(m, walk) <= max_depth)
                walk = NULL; /* what check() would answer for each at once */
        }
        if (!walk)
            continue;
        rc = check(m, walk, base, f.val, f.vlen, depth + 1, max_depth, err);
        if (rc)
            return rc;
    }
    return 0;
}

int wire_pb_check_depth(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                        int max_depth, sp_err *err)
{
    nest_memo m;
    m.n = 0;
    return check(&m, desc, data, data, len, 0, max_depth, err);
}
