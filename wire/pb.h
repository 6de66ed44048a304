/* Protobuf wire-format reading, below protobuf-c.
 *
 * otlp/layout.c rewrites old-layout profile requests field by field, and every request goes
 * through wire_pb_check_depth() before protobuf-c unpacks it (protobuf-c recurses once per
 * nesting level with no limit, so a few MiB of nested AnyValue arrays would overflow a worker's
 * stack). Readers here never trust a length: every one is checked against the remaining input.
 * Nothing here allocates.
 */
#ifndef WIRE_PB_H
#define WIRE_PB_H

#include "../common/err.h"

#include <stddef.h>
#include <stdint.h>

/* Wire types (protobuf encoding spec). Groups (3, 4) are not accepted by spanprof. */
enum { WIRE_WT_VARINT = 0, WIRE_WT_I64 = 1, WIRE_WT_LEN = 2, WIRE_WT_I32 = 5 };

/* Default nesting limit, the same as the reference protobuf implementations use. */
#define WIRE_PB_MAX_DEPTH 100

/* One field as read from the wire. */
typedef struct wire_pb_field {
    uint32_t num;         /* field number, 1..2^29-1 */
    int wt;               /* wire type */
    uint64_t varint;      /* value for WIRE_WT_VARINT, I64, I32 */
    const uint8_t *val;   /* payload of WIRE_WT_LEN */
    size_t vlen;          /* payload length */
    const uint8_t *start; /* first byte of the tag */
    const uint8_t *body;  /* first byte after the tag (the value, or the length of a LEN field) */
    const uint8_t *end;   /* one past the last byte of the field */
} wire_pb_field;

/* The readers below in full: every length, every error (call wire_pb_varint/wire_pb_next). */
int wire_pb_varint_any(const uint8_t **p, const uint8_t *end, uint64_t *out);
int wire_pb_next_any(const uint8_t **p, const uint8_t *end, const uint8_t *base, wire_pb_field *f,
                     sp_err *err);

/* Reads a varint of at most 10 bytes. Returns 0, or -1 when truncated or too long. Inline for a
 * one-byte varint (most tags, lengths and indices): the walks over every Sample of a large Export
 * call these a few times per Sample (bench/RESULTS.md, "Samples and dictionaries decoded by
 * hand"). */
static inline int wire_pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    if (*p < end && **p < 0x80) {
        *out = *(*p)++;
        return 0;
    }
    return wire_pb_varint_any(p, end, out);
}

/* Reads one field at *p and advances past it. Returns 0, or SP_EINVAL with a message naming the
 * offset (relative to base) when the field is truncated, has a zero field number or a wire type
 * spanprof does not accept. Inline for a one-byte tag with a one-byte value (VARINT) or length
 * (LEN) that fits; anything else, and every error, is wire_pb_next_any()'s. */
static inline int wire_pb_next(const uint8_t **p, const uint8_t *end, const uint8_t *base,
                               wire_pb_field *f, sp_err *err)
{
    const uint8_t *q = *p;
    if (end - q >= 2 && q[0] >= 8 && q[0] < 0x80 && q[1] < 0x80) {
        int wt = q[0] & 7;
        if (wt == WIRE_WT_VARINT || (wt == WIRE_WT_LEN && q[1] <= end - q - 2)) {
            f->start = q;
            f->body = q + 1;
            f->num = q[0] >> 3;
            f->wt = wt;
            f->varint = wt == WIRE_WT_VARINT ? q[1] : 0;
            f->val = wt == WIRE_WT_LEN ? q + 2 : NULL;
            f->vlen = wt == WIRE_WT_LEN ? q[1] : 0;
            f->end = q + 2 + f->vlen;
            *p = f->end;
            return 0;
        }
    }
    return wire_pb_next_any(p, end, base, f, err);
}

/* protobuf-c (1.4) reads at most 5 bytes of a tag or of a length prefix, refuses a length past
 * INT_MAX, and a message of more than WIRE_PB_PROTOBUF_C_MAX_FIELDS fields: code that takes a
 * field out of a message before protobuf-c sees the rest must check what protobuf-c would have
 * (otlp/hand_unpack.c, the lazy decode's walk in otlp/decode.c). 1 when f passes. */
#define WIRE_PB_PROTOBUF_C_MAX_FIELDS (16 * ((1u << 23) - 1))
static inline int wire_pb_protobuf_c_bounds(const wire_pb_field *f)
{
    return f->body - f->start <= 5 &&
           (f->wt != WIRE_WT_LEN || (f->val - f->body <= 5 && f->vlen <= 0x7fffffff));
}

/* Bytes needed to encode v as a varint (1..10). */
size_t wire_pb_varint_size(uint64_t v);
/* Encodes v at out (which has room for wire_pb_varint_size(v) bytes); returns bytes written. */
size_t wire_pb_put_varint(uint8_t *out, uint64_t v);

/* 1 when data[0..len) is a well-formed sequence of varints (a packed repeated varint field). */
int wire_pb_is_packed_varints(const uint8_t *data, size_t len);

struct ProtobufCMessageDescriptor;
/* Walks data as message desc and fails with SP_EINVAL when sub-messages nest deeper than
 * max_depth or the walked bytes are not well-formed protobuf. Only fields the descriptor declares
 * as messages are descended into; unknown fields are skipped by wire type. A sub-message whose
 * type cannot hold enough levels below it to pass max_depth (its descriptors have no cycle, e.g.
 * an OTLP Sample or Location) is not walked at all: protobuf-c's unpack checks those bytes. */
int wire_pb_check_depth(const struct ProtobufCMessageDescriptor *desc, const uint8_t *data,
                        size_t len, int max_depth, sp_err *err);

#endif
