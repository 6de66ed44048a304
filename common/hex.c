#include "hex.h"

#include <string.h>

int sp_hex_decode(const char *h, uint8_t *out, size_t outlen)
{
    if (strlen(h) != 2 * outlen)
        return -1;
    for (size_t i = 0; i < outlen; i++) {
        int v = 0;
        for (int k = 0; k < 2; k++) {
            char c = h[2 * i + k];
            int d = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1;
            if (d < 0)
                return -1;
            v = v * 16 + d;
        }
        out[i] = (uint8_t)v;
    }
    return 0;
}
