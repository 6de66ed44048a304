/* libFuzzer target: the parsers of delivery/outbox.c. Byte 0 % 4 picks one, the rest is
 * its input:
 * 0 - an on-disk item file. It is written as the only item of an outbox directory (one temporary
 *     directory per process, emptied each run) that is then opened with a recording sender.
 *     Checked against the format in outbox.c's header ("SPOB" | u32 tenant length <= 1024 |
 *     tenant | u64 payload length | payload | u32 CRC-32, little endian): open never fails; the
 *     item is queued iff its lengths add up to the file size, otherwise dropped and deleted; after
 *     draining, the payload was delivered once, with its tenant, iff the CRC matches too; either
 *     way the file is gone.
 * 1 - a Retry-After value: -1 or a delay in [0, 1 day]; all digits = that many seconds (capped);
 *     and, from the first bytes, a time written as IMF-fixdate, RFC 850 and asctime must give
 *     back its distance from now.
 * 2 - grpc-status-details-bin (base64 google.rpc.Status): -1 or a delay >= 0; and a Status with a
 *     RetryInfo built from the first bytes (with the input's own bytes as a preceding detail)
 *     must give back its delay (capped at a day).
 * 3 - outbox_http_verdict / outbox_grpc_verdict on a status and a body: 2xx / OK are accepted,
 *     the OTLP retry table holds.
 */
#include "delivery/outbox.h"
#include "common/log.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include "fuzz_check.h"

#define DAY_NS (86400LL * 1000000000LL)

static char dir[64];
static char item[128];

static struct {
    int calls;
    char tenant[1100];
    uint8_t *body;
    size_t len;
} got;

static int record(void *ud, const char *tenant, const uint8_t *body, size_t len,
                  int64_t *retry_after_ns, sp_err *err)
{
    (void)ud, (void)retry_after_ns, (void)err;
    got.calls++;
    snprintf(got.tenant, sizeof got.tenant, "%s", tenant);
    free(got.body);
    got.body = malloc(len ? len : 1);
    memcpy(got.body, body, len);
    got.len = len;
    return 0;
}

static void remove_dir(void)
{
    unlink(item);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    sp_log_set_level(SP_LOG_ERROR + 1); /* a dropped item is logged: not news here */
    snprintf(dir, sizeof dir, "/tmp/fuzz_outbox.XXXXXX");
    CHECK(mkdtemp(dir));
    snprintf(item, sizeof item, "%s/%016x.item", dir, 0x1234);
    atexit(remove_dir);
    return 0;
}

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int dir_is_empty(void)
{
    DIR *d = opendir(dir);
    CHECK(d);
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(d);
    return n == 0;
}

static void item_file(const uint8_t *p, size_t n)
{
    FILE *f = fopen(item, "wb");
    CHECK(f);
    CHECK(fwrite(p, 1, n, f) == n);
    CHECK(fclose(f) == 0);

    /* What the format says about these bytes. */
    int whole = 0, intact = 0;
    uint64_t tl = 0, len = 0;
    if (n >= 8 && memcmp(p, "SPOB", 4) == 0) {
        tl = le(p + 4, 4);
        if (tl <= 1024 && n >= 16 + tl) {
            len = le(p + 8 + tl, 8);
            whole = n - 16 - tl >= 4 && len == n - 16 - tl - 4;
        }
    }
    if (whole) {
        uLong crc = crc32(0, p, (uInt)(n - 4));
        intact = le(p + n - 4, 4) == (crc & 0xffffffffu);
    }

    got.calls = 0;
    outbox_options o = {.dir = dir, .name = "fuzz", .deliver = record};
    outbox *ob;
    sp_err err = {0};
    CHECK(outbox_open(&ob, &o, &err) == 0);
    outbox_stats st;
    outbox_stats_get(ob, &st);
    /* The sender may already have taken the item: count it wherever it is. */
    CHECK(st.queued + st.sent + st.dropped == 1);
    CHECK(st.dropped <= !intact);
    if (!whole)
        CHECK(st.dropped == 1 && st.queued == 0);
    CHECK(outbox_drain(ob, 10LL * 1000000000) == 0);
    outbox_stats_get(ob, &st);
    outbox_close(ob);
    CHECK(st.queued == 0 && st.queued_bytes == 0);
    if (intact) {
        CHECK(st.sent == 1 && st.dropped == 0);
        char tenant[1025];
        memcpy(tenant, p + 8, tl);
        tenant[tl] = 0;
        /* An empty payload has nothing to send. */
        CHECK(got.calls == (len > 0));
        if (len)
            CHECK(strcmp(got.tenant, tenant) == 0 && got.len == len &&
                  memcmp(got.body, p + 16 + tl, len) == 0);
    } else {
        CHECK(st.dropped == 1 && st.sent == 0 && got.calls == 0);
    }
    CHECK(dir_is_empty());
    unlink(item);
}

static void retry_after(const uint8_t *p, size_t n)
{
    const int64_t now = 1700000000;
    char *v = malloc(n + 1);
    memcpy(v, p, n);
    v[n] = 0;
    int64_t r = outbox_retry_after_ns(v, now);
    CHECK(r == -1 || (r >= 0 && r <= DAY_NS));
    size_t digits = strspn(v, "0123456789");
    if (digits && digits == n && n <= 18) {
        unsigned long long s = strtoull(v, NULL, 10);
        CHECK(r == (int64_t)(s > 86400 ? 86400 : s) * 1000000000);
    }
    free(v);

    /* A date written in each form RFC 9110 asks a recipient to read gives its distance back
     * (two-digit RFC 850 years only within 50 years, as the RFC reads them). */
    if (n < 4)
        return;
    int64_t off = (int64_t)(int32_t)le(p, 4) % (30LL * 365 * 86400);
    time_t t = (time_t)(now + off);
    struct tm tm;
    CHECK(gmtime_r(&t, &tm));
    static const char *fmts[] = {"%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT",
                                 "%a %b %e %H:%M:%S %Y"};
    for (size_t i = 0; i < 3; i++) {
        char s[80];
        CHECK(strftime(s, sizeof s, fmts[i], &tm) > 0);
        int64_t want = off <= 0 ? 0 : (off > 86400 ? 86400 : off) * 1000000000;
        CHECK(outbox_retry_after_ns(s, now) == want);
    }
}

static size_t b64(const uint8_t *p, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        out[o++] = i + 1 < n ? a[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? a[v & 63] : '=';
    }
    return o;
}

static size_t put_varint(uint8_t *o, uint64_t v)
{
    size_t n = 0;
    do {
        o[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    return n;
}

/* tag + length + bytes */
static size_t put_ld(uint8_t *o, int field, const void *p, size_t n)
{
    size_t k = put_varint(o, (uint64_t)field << 3 | 2);
    k += put_varint(o + k, n);
    memcpy(o + k, p, n);
    return k + n;
}

static void retry_info(const uint8_t *p, size_t n)
{
    int64_t r = outbox_grpc_retry_info_ns((const char *)p, n);
    CHECK(r == -1 || r >= 0);

    /* Status{code 8, details: [Any{junk type, the input}, Any{RetryInfo{Duration{s, ns}}}]} */
    if (n < 8)
        return;
    int64_t s = (int64_t)(le(p, 4) & 0x7fffffff) % 200000;
    int32_t ns = (int32_t)(le(p + 4, 4) % 1000000000u);
    size_t cap = 2 * n + 256;
    uint8_t *dur = malloc(32), *ri = malloc(48), *any1 = malloc(n + 64), *any2 = malloc(128),
            *st = malloc(cap);
    char *enc = malloc(cap * 2);
    size_t dl = 0;
    dur[dl++] = 0x08;
    dl += put_varint(dur + dl, (uint64_t)s);
    dur[dl++] = 0x10;
    dl += put_varint(dur + dl, (uint64_t)ns);
    size_t rl = put_ld(ri, 1, dur, dl);
    static const char want[] = "type.googleapis.com/google.rpc.RetryInfo";
    static const char other[] = "type.googleapis.com/google.rpc.DebugInfo";
    size_t a1 = put_ld(any1, 1, other, strlen(other));
    a1 += put_ld(any1 + a1, 2, p, n);
    size_t a2 = put_ld(any2, 1, want, strlen(want));
    a2 += put_ld(any2 + a2, 2, ri, rl);
    size_t sl = 0;
    st[sl++] = 0x08;
    st[sl++] = 8;
    sl += put_ld(st + sl, 3, any1, a1);
    sl += put_ld(st + sl, 3, any2, a2);
    size_t el = b64(st, sl, enc);
    int64_t expect = s > 86400 ? DAY_NS : s * 1000000000 + ns;
    CHECK(outbox_grpc_retry_info_ns(enc, el) == expect);
    /* gRPC may send it unpadded */
    while (el && enc[el - 1] == '=')
        el--;
    CHECK(outbox_grpc_retry_info_ns(enc, el) == expect);
    free(dur), free(ri), free(any1), free(any2), free(st), free(enc);
}

static void verdicts(const uint8_t *p, size_t n)
{
    if (n < 3)
        return;
    long status = (long)(int16_t)le(p, 2);
    int v = outbox_http_verdict(status, (const char *)p + 2, n - 2);
    CHECK(v == 0 || v == SP_EUNAVAIL || v == SP_EINVAL);
    CHECK((v == 0) == (status >= 200 && status < 300));
    if (status == 408 || status == 429 || status == 502 || status == 503 || status == 504)
        CHECK(v == SP_EUNAVAIL);
    CHECK(outbox_http_verdict(status, NULL, 0) != 0 || v == 0);

    int g = (int)(int8_t)p[2];
    for (int ri = 0; ri < 2; ri++) {
        int gv = outbox_grpc_verdict(g, ri);
        switch (g) {
        case 0:
            CHECK(gv == 0);
            break;
        case 1:
        case 4:
        case 10:
        case 11:
        case 14:
        case 15:
            CHECK(gv == SP_EUNAVAIL);
            break;
        case 8:
            CHECK(gv == (ri ? SP_EUNAVAIL : SP_EINVAL));
            break;
        default:
            CHECK(gv == SP_EINVAL);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    switch (data[0] % 4) {
    case 0:
        item_file(p, n);
        break;
    case 1:
        retry_after(p, n);
        break;
    case 2:
        retry_info(p, n);
        break;
    default:
        verdicts(p, n);
    }
    return 0;
}
