/* Growable byte buffer with a hard cap.
 *
 * Bodies, decompressed messages and encoded answers are built in sp_buf. Every append checks the
 * cap first, so a peer cannot make the buffer grow past the limit it was created with.
 */
#ifndef SP_BUF_H
#define SP_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct sp_buf {
    uint8_t *data;
    size_t len, cap, limit; /* limit 0 = unlimited */
} sp_buf;

void sp_buf_init(sp_buf *b, size_t limit);
void sp_buf_free(sp_buf *b);
/* 0, or SP_ETOOBIG when len would exceed limit, SP_ENOMEM on allocation failure. */
int sp_buf_reserve(sp_buf *b, size_t extra);
int sp_buf_append(sp_buf *b, const void *p, size_t n);
int sp_buf_printf(sp_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the bytes to the caller (who frees them) and leaves b empty. */
uint8_t *sp_buf_take(sp_buf *b, size_t *len);

/* Protobuf wire pieces for the hand-written encoders (pprof, Push requests, forwarded spans,
 * flame graphs): a base-128 varint, and a length-delimited field (key, length, bytes). */
int sp_buf_put_varint(sp_buf *b, uint64_t v);
int sp_buf_put_pb_len(sp_buf *b, uint32_t field, const void *p, size_t n);

#endif
