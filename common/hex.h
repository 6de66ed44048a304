/* Hex text → bytes (span and trace ids in labels, URLs and JSON). */
#ifndef SP_HEX_H
#define SP_HEX_H

#include <stddef.h>
#include <stdint.h>

/* 2 × outlen hex digits (either case) → outlen bytes. 0 on success, -1 when the length is not
 * 2 × outlen or a character is not a hex digit (out is then partly written). */
int sp_hex_decode(const char *hex, uint8_t *out, size_t outlen);

#endif
