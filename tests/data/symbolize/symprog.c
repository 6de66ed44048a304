/* A small C program for tests/e2e/test_symbolize.py: only its machine code and debug info matter
 * (the test never runs it). Built with gcc -g -O1: c_leaf_hash and c_checksum stay out of line,
 * mix_bits is inlined into c_checksum, so the call to c_leaf_hash sits in mix_bits' inlined
 * code and addr2line -i names two frames there. */
#include <stdio.h>

__attribute__((noinline, noipa)) unsigned c_leaf_hash(unsigned x)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    return x;
}

static inline __attribute__((always_inline)) unsigned mix_bits(unsigned a, unsigned b)
{
    unsigned h = c_leaf_hash(a ^ (b << 3));
    return h + (b >> 1);
}

__attribute__((noinline, noipa)) unsigned c_checksum(const unsigned char *p, int n)
{
    unsigned acc = 17;
    for (int i = 0; i < n; i++)
        acc = mix_bits(acc, p[i]);
    return acc;
}

int main(int argc, char **argv)
{
    unsigned sum = c_checksum((const unsigned char *)argv[0], argc + 3);
    printf("%u\n", sum);
    return 0;
}
