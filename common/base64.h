/* base64 decoding as protobuf's JSON mapping and HTTP Basic credentials (RFC 7617) accept it:
 * standard or URL-safe alphabet, with or without trailing padding. Used by the JSON codecs of
 * otlp/ (Pyroscope Push) and query/ (Connect), and by server/auth.c. */
#ifndef SP_BASE64_H
#define SP_BASE64_H

#include "arena.h"

#include <stddef.h>
#include <stdint.h>

/* Decodes s[0..n) into arena memory. 0, SP_EINVAL on a character outside the alphabet, or
 * SP_ETOOBIG when the arena's budget is spent. */
int sp_base64_decode(const char *s, size_t n, sp_arena *a, uint8_t **out, size_t *outlen);

/* The same into out[0..cap) (secrets stay on the caller's stack, where it can wipe them).
 * SP_ETOOBIG when cap is too small. */
int sp_base64_decode_buf(const char *s, size_t n, uint8_t *out, size_t cap, size_t *outlen);

#endif
