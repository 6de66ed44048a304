/* Frame names as Pyroscope shows them for a JFR recording.
 *
 * grafana/jfr-parser (parser/symbols.go, mergeJVMGeneratedClasses) rewrites every symbol whose
 * name the JVM or a library makes up at run time, so one flame graph node stays one node across
 * restarts. The same rewrites, each anchored to the whole symbol and applied in this order:
 *
 *   jdk/internal/reflect/GeneratedMethodAccessor<digits>        → ...GeneratedMethodAccessor_
 *   <x>$$Lambda$<n>/0x<hex>, <x>$$Lambda.0x<hex>, <x>$$Lambda<n> → <x>$$Lambda_
 *   [./tmp/|/tmp/]libzstd-jni-<a>.<b>.<c>-<n>.so[ (deleted)]      → libzstd-jni-_.so
 *   [./tmp/|/tmp/][lib]amazonCorrettoCryptoProvider[NativeLibraries.]<16 hex>
 *       [/libcrypto|/libamazonCorrettoCryptoProvider].so[ (deleted)] →
 * libamazonCorrettoCryptoProvider_.so
 *   [./tmp/|/tmp/]libasyncProfiler-<platform>-17b9a1d8...f92.so[ (deleted)] → libasyncProfiler-_.so
 *   <x>$$EnhancerBySpringCGLIB$$<y>                              → <x>$$EnhancerBySpringCGLIB$$_
 *
 * Every rewrite is no longer than its input, so callers size the output like the input.
 */
#include "jfr_impl.h"

typedef struct cur {
    const char *p, *e;
} cur;

static int lit(cur *c, const char *s)
{
    size_t n = strlen(s);
    if ((size_t)(c->e - c->p) < n || memcmp(c->p, s, n) != 0)
        return 0;
    c->p += n;
    return 1;
}

static size_t digits(cur *c)
{
    const char *s = c->p;
    while (c->p < c->e && *c->p >= '0' && *c->p <= '9')
        c->p++;
    return (size_t)(c->p - s);
}

static int is_hex(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f');
}

static size_t hexes(cur *c, size_t max)
{
    const char *s = c->p;
    while (c->p < c->e && (size_t)(c->p - s) < max && is_hex(*c->p))
        c->p++;
    return (size_t)(c->p - s);
}

/* "(\.?/tmp/)?" */
static void opt_tmp(cur *c)
{
    if (!lit(c, "./tmp/"))
        lit(c, "/tmp/");
}

/* "( \(deleted\))?$" */
static int deleted_end(cur *c)
{
    lit(c, " (deleted)");
    return c->p == c->e;
}

static size_t put(char *out, const char *prefix, size_t n, const char *tail)
{
    if (prefix != out && n)
        memmove(out, prefix, n);
    size_t t = strlen(tail);
    memcpy(out + n, tail, t);
    return n + t;
}

static int accessor(char *s, size_t *n)
{
    static const char pre[] = "jdk/internal/reflect/GeneratedMethodAccessor";
    cur c = {s, s + *n};
    if (!lit(&c, pre) || !digits(&c) || c.p != c.e)
        return 0;
    *n = put(s, s, sizeof pre - 1, "_");
    return 1;
}

static int all_hex(const char *p, const char *e)
{
    if (p == e)
        return 0;
    for (; p < e; p++)
        if (!is_hex(*p))
            return 0;
    return 1;
}

/* What may follow "$$Lambda": "\$?\d*[./](0x)?[\da-f]+" or "\d+", to the end. */
static int lambda_tail(const char *p, const char *e)
{
    cur c = {p, e};
    if (digits(&c) && c.p == e)
        return 1;
    c.p = p;
    if (c.p < e && *c.p == '$')
        c.p++;
    digits(&c);
    if (c.p >= e || (*c.p != '.' && *c.p != '/'))
        return 0;
    c.p++;
    if (e - c.p > 2 && c.p[0] == '0' && c.p[1] == 'x' && all_hex(c.p + 2, e))
        return 1;
    return all_hex(c.p, e);
}

/* "^(.+MARK)(tail)$" → "$1_": the last MARK after at least one byte whose tail matches. */
static int marker(char *s, size_t *n, const char *mark, int (*tail)(const char *, const char *))
{
    size_t m = strlen(mark);
    if (*n < m + 1)
        return 0;
    for (size_t i = *n - m; i >= 1; i--)
        if (memcmp(s + i, mark, m) == 0 && (!tail || tail(s + i + m, s + *n))) {
            *n = put(s, s, i + m, "_");
            return 1;
        }
    return 0;
}

static int zstd(char *s, size_t *n)
{
    cur c = {s, s + *n};
    opt_tmp(&c);
    if (!lit(&c, "libzstd-jni-") || !digits(&c) || !lit(&c, ".") || !digits(&c) || !lit(&c, ".") ||
        !digits(&c) || !lit(&c, "-") || !digits(&c) || !lit(&c, ".so") || !deleted_end(&c))
        return 0;
    *n = put(s, s, 0, "libzstd-jni-_.so");
    return 1;
}

static int corretto(char *s, size_t *n)
{
    cur c = {s, s + *n};
    opt_tmp(&c);
    lit(&c, "lib");
    if (!lit(&c, "amazonCorrettoCryptoProvider"))
        return 0;
    lit(&c, "NativeLibraries.");
    if (hexes(&c, 16) != 16)
        return 0;
    if (!lit(&c, "/libcrypto"))
        lit(&c, "/libamazonCorrettoCryptoProvider");
    if (!lit(&c, ".so") || !deleted_end(&c))
        return 0;
    *n = put(s, s, 0, "libamazonCorrettoCryptoProvider_.so");
    return 1;
}

static int async_profiler(char *s, size_t *n)
{
    static const char *const platforms[] = {"linux-arm64", "linux-musl-x64", "linux-x64", "macos"};
    cur c = {s, s + *n};
    opt_tmp(&c);
    if (!lit(&c, "libasyncProfiler-"))
        return 0;
    int ok = 0;
    for (size_t i = 0; i < sizeof platforms / sizeof platforms[0] && !ok; i++)
        ok = lit(&c, platforms[i]);
    if (!ok || !lit(&c, "-17b9a1d8156277a98ccc871afa9a8f69215f92") || !lit(&c, ".so") ||
        !deleted_end(&c))
        return 0;
    *n = put(s, s, 0, "libasyncProfiler-_.so");
    return 1;
}

size_t jfr_name_merge(jfr_str in, char *out)
{
    size_t n = in.n;
    if (n)
        memcpy(out, in.s, n);
    accessor(out, &n);
    marker(out, &n, "$$Lambda", lambda_tail);
    zstd(out, &n);
    corretto(out, &n);
    async_profiler(out, &n);
    marker(out, &n, "$$EnhancerBySpringCGLIB$$", NULL);
    return n;
}

/* Length of the valid UTF-8 sequence at p (RFC 3629: no overlongs, surrogates or > U+10FFFF),
 * 0 when there is none. NUL counts as invalid too: names are C strings downstream (Java's own
 * modified UTF-8 writes U+0000 as C0 80, itself an overlong). */
static size_t utf8_seq(const uint8_t *p, size_t left)
{
    uint8_t b = p[0];
    if (b < 0x80)
        return b ? 1 : 0;
    size_t n = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC2 ? 2 : 0;
    if (!n || n > left || b > 0xF4)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    if ((b == 0xE0 && p[1] < 0xA0) || (b == 0xED && p[1] > 0x9F) || (b == 0xF0 && p[1] < 0x90) ||
        (b == 0xF4 && p[1] > 0x8F))
        return 0;
    return n;
}

int jfr_utf8_valid(jfr_str s)
{
    const uint8_t *p = (const uint8_t *)s.s;
    for (size_t i = 0; i < s.n;) {
        size_t k = utf8_seq(p + i, s.n - i);
        if (!k)
            return 0;
        i += k;
    }
    return 1;
}

size_t jfr_utf8_clean(jfr_str s, char *out)
{
    const uint8_t *p = (const uint8_t *)s.s;
    for (size_t i = 0; i < s.n;) {
        size_t k = utf8_seq(p + i, s.n - i);
        if (!k) {
            out[i++] = '?';
            continue;
        }
        memcpy(out + i, p + i, k);
        i += k;
    }
    return s.n;
}
