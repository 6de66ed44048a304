#include "base64.h"
#include "err.h"

static int b64_val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

int sp_base64_decode_buf(const char *s, size_t n, uint8_t *out, size_t cap, size_t *outlen)
{
    for (int pad = 0; pad < 2 && n && s[n - 1] == '='; pad++)
        n--;
    size_t k = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_val((unsigned char)s[i]);
        if (v < 0)
            return SP_EINVAL;
        acc = (acc << 6 | (uint32_t)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (k == cap)
                return SP_ETOOBIG;
            out[k++] = (uint8_t)(acc >> bits);
        }
    }
    *outlen = k;
    return 0;
}

int sp_base64_decode(const char *s, size_t n, sp_arena *a, uint8_t **out, size_t *outlen)
{
    size_t cap = n / 4 * 3 + 4;
    uint8_t *o = sp_arena_alloc(a, cap);
    if (!o)
        return SP_ETOOBIG;
    int rc = sp_base64_decode_buf(s, n, o, cap, outlen);
    if (rc)
        return rc;
    *out = o;
    return 0;
}
