/* The outbox: see outbox.h.
 *
 * One file per item, "<seq as 16 hex digits>.item", written as "<seq>.tmp" and renamed, so a crash
 * leaves either a whole item or a temporary file (deleted at the next open). A file is
 *   "SPOB" | u32 tenant length | tenant | u64 payload length | payload | u32 CRC-32 of all before
 * (little endian); the CRC catches a torn file that a crash without fsync can leave behind.
 * The in-memory queue mirrors the directory; the sender thread takes batches from its head.
 */
#include "outbox.h"

#include "../common/base64.h"

#include "../common/buf.h"
#include "../common/log.h"
#include "../common/metrics.h"

#include <ctype.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define MAGIC      "SPOB"
#define HEAD_FIXED (4 + 4 + 8)
#define MAX_TENANT 1024

typedef struct entry {
    uint64_t seq, size;
    char *tenant;
    int64_t ready_ns; /* monotonic: not sent before (o.hold_ns after it was queued) */
} entry;

struct outbox {
    outbox_options o;
    char *dir, *name;
    char m_queued[80], m_bytes[80], m_sent[80], m_retried[80], m_dropped[80];
    pthread_mutex_t mu;
    pthread_cond_t wake, idle;
    pthread_t thread;
    int started;
    atomic_int stop;
    entry *q; /* ring buffer */
    size_t qcap, qhead, qlen;
    int inflight;
    uint64_t next_seq;
    outbox_stats st;
};

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void path_of(const outbox *ob, uint64_t seq, const char *ext, char *out, size_t n)
{
    snprintf(out, n, "%s/%016" PRIx64 ".%s", ob->dir, seq, ext);
}

static void publish(outbox *ob)
{
    sp_metrics_gauge_set(ob->m_queued, (int64_t)ob->st.queued);
    sp_metrics_gauge_set(ob->m_bytes, (int64_t)ob->st.queued_bytes);
    sp_metrics_gauge_set(ob->m_sent, (int64_t)ob->st.sent);
    sp_metrics_gauge_set(ob->m_retried, (int64_t)ob->st.retried);
    sp_metrics_gauge_set(ob->m_dropped, (int64_t)ob->st.dropped);
}

/* ---- the queue (callers hold mu) ---- */

static entry *q_at(outbox *ob, size_t i)
{
    return &ob->q[(ob->qhead + i) % ob->qcap];
}

static int q_push(outbox *ob, uint64_t seq, uint64_t size, const char *tenant)
{
    if (ob->qlen == ob->qcap) {
        size_t ncap = ob->qcap ? ob->qcap * 2 : 64;
        entry *nq = malloc(ncap * sizeof *nq);
        if (!nq)
            return SP_ENOMEM;
        for (size_t i = 0; i < ob->qlen; i++)
            nq[i] = *q_at(ob, i);
        free(ob->q);
        ob->q = nq;
        ob->qcap = ncap;
        ob->qhead = 0;
    }
    char *t = strdup(tenant);
    if (!t)
        return SP_ENOMEM;
    *q_at(ob, ob->qlen) =
        (entry){.seq = seq, .size = size, .tenant = t, .ready_ns = mono_ns() + ob->o.hold_ns};
    ob->qlen++;
    ob->st.queued++;
    ob->st.queued_bytes += size;
    return 0;
}

/* Removes the head item and its file. */
static void q_pop(outbox *ob)
{
    entry *e = q_at(ob, 0);
    char p[4096];
    path_of(ob, e->seq, "item", p, sizeof p);
    unlink(p);
    ob->st.queued--;
    ob->st.queued_bytes -= e->size;
    free(e->tenant);
    ob->qhead = (ob->qhead + 1) % ob->qcap;
    ob->qlen--;
}

/* ---- files ---- */

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static int write_item(outbox *ob, const char *path, const char *tenant, const void *data,
                      size_t len, sp_err *err)
{
    size_t tl = strlen(tenant);
    uint8_t head[HEAD_FIXED + MAX_TENANT];
    memcpy(head, MAGIC, 4);
    put_le(head + 4, tl, 4);
    memcpy(head + 8, tenant, tl);
    put_le(head + 8 + tl, len, 8);
    size_t hl = HEAD_FIXED + tl;
    uLong crc = crc32(0, head, (uInt)hl);
    const uint8_t *d = data;
    for (size_t off = 0; off < len;) { /* crc32() takes uInt lengths */
        size_t n = len - off > (1u << 30) ? (1u << 30) : len - off;
        crc = crc32(crc, d + off, (uInt)n);
        off += n;
    }
    uint8_t tail[4];
    put_le(tail, crc, 4);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return sp_fail(err, SP_EUNAVAIL, "%s outbox: cannot create %s: %s", ob->name, path,
                       strerror(errno));
    int rc = write_all(fd, head, hl) || write_all(fd, data, len) || write_all(fd, tail, 4);
    if (!rc && ob->o.fsync)
        rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc) {
        unlink(path);
        return sp_fail(err, SP_EUNAVAIL, "%s outbox: cannot write %s: %s", ob->name, path,
                       strerror(e));
    }
    return 0;
}

/* Reads an item: its tenant (into tenant, MAX_TENANT+1 bytes) and, when payload is given, its
 * payload appended to it. -1 when the file is missing, torn or not an item. */
static int read_item(const char *path, char *tenant, sp_buf *payload, uint64_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    int rc = -1;
    uint8_t head[HEAD_FIXED + MAX_TENANT];
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || fread(head, 1, 8, f) != 8 || memcmp(head, MAGIC, 4) != 0)
        goto out;
    uint64_t tl = get_le(head + 4, 4);
    if (tl > MAX_TENANT || fread(head + 8, 1, tl + 8, f) != tl + 8)
        goto out;
    uint64_t len = get_le(head + 8 + tl, 8);
    /* Compared without the sum, which a length near 2^64 wraps onto the file's size
     * (fuzz_outbox: a 27-byte file claiming 2^64 - 1 bytes of payload was taken as whole). */
    if (len > (uint64_t)sb.st_size || (uint64_t)sb.st_size - len != HEAD_FIXED + tl + 4)
        goto out;
    memcpy(tenant, head + 8, tl);
    tenant[tl] = 0;
    *size = (uint64_t)sb.st_size;
    if (!payload) {
        rc = 0;
        goto out;
    }
    size_t at = payload->len;
    if (sp_buf_reserve(payload, len) != 0)
        goto out;
    uint8_t tail[4];
    if ((len && fread(payload->data + at, 1, len, f) != len) || fread(tail, 1, 4, f) != 4)
        goto out;
    uLong crc = crc32(0, head, (uInt)(HEAD_FIXED + tl));
    for (size_t off = 0; off < len;) {
        size_t n = len - off > (1u << 30) ? (1u << 30) : len - off;
        crc = crc32(crc, payload->data + at + off, (uInt)n);
        off += n;
    }
    if (get_le(tail, 4) != (crc & 0xffffffffu))
        goto out;
    payload->len = at + len;
    rc = 0;
out:
    fclose(f);
    return rc;
}

static int mkdirs(const char *dir)
{
    char p[4096];
    snprintf(p, sizeof p, "%s", dir);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            if (mkdir(p, 0755) != 0 && errno != EEXIST)
                return -1;
            *s = '/';
        }
    return mkdir(p, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Queues the items an earlier run left, oldest first; deletes temporary and broken files. */
static int load(outbox *ob, sp_err *err)
{
    DIR *d = opendir(ob->dir);
    if (!d)
        return sp_fail(err, SP_EUNAVAIL, "%s outbox: cannot open %s: %s", ob->name, ob->dir,
                       strerror(errno));
    uint64_t *seqs = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    char p[4096];
    while ((de = readdir(d))) {
        char *end;
        uint64_t seq = strtoull(de->d_name, &end, 16);
        if (end - de->d_name != 16)
            continue;
        if (strcmp(end, ".tmp") == 0) {
            path_of(ob, seq, "tmp", p, sizeof p);
            unlink(p);
            continue;
        }
        if (strcmp(end, ".item") != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            uint64_t *ns = realloc(seqs, cap * sizeof *ns);
            if (!ns) {
                free(seqs);
                closedir(d);
                return sp_fail(err, SP_ENOMEM, "%s outbox: out of memory", ob->name);
            }
            seqs = ns;
        }
        seqs[n++] = seq;
    }
    closedir(d);
    if (n)
        qsort(seqs, n, sizeof *seqs, cmp_u64);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        char tenant[MAX_TENANT + 1];
        uint64_t size;
        path_of(ob, seqs[i], "item", p, sizeof p);
        if (read_item(p, tenant, NULL, &size) != 0) {
            sp_warn("msg=\"outbox item is not readable; dropped\" outbox=%s file=\"%s\"", ob->name,
                    p);
            unlink(p);
            ob->st.dropped++;
            continue;
        }
        rc = q_push(ob, seqs[i], size, tenant);
        if (seqs[i] >= ob->next_seq)
            ob->next_seq = seqs[i] + 1;
    }
    free(seqs);
    if (rc)
        return sp_fail(err, rc, "%s outbox: out of memory", ob->name);
    if (n)
        sp_info("msg=\"outbox resumes\" outbox=%s items=%" PRIu64 " bytes=%" PRIu64, ob->name,
                ob->st.queued, ob->st.queued_bytes);
    return 0;
}

/* ---- HTTP ---- */

int outbox_http_verdict(long status, const char *body, size_t len)
{
    if (status >= 200 && status < 300)
        return 0;
    if (status == 408 || status == 429 || status == 502 || status == 503 || status == 504)
        return SP_EUNAVAIL;
    /* Connect error bodies are JSON: {"code":"unavailable",...} (connect protocol, "Error
     * Codes"); a proxy may have changed the status, the code still says what happened. */
    static const char *retry_codes[] = {"\"unavailable\"", "\"resource_exhausted\""};
    for (size_t i = 0; body && i < 2; i++)
        if (memmem(body, len, retry_codes[i], strlen(retry_codes[i])))
            return SP_EUNAVAIL;
    return SP_EINVAL;
}

int64_t outbox_retry_after_ns(const char *value, int64_t now_unix_s)
{
    if (!value)
        return -1;
    while (*value == ' ' || *value == '\t')
        value++;
    size_t n = strcspn(value, "\r\n");
    while (n && (value[n - 1] == ' ' || value[n - 1] == '\t'))
        n--;
    if (!n || n > 64)
        return -1;
    char v[65];
    memcpy(v, value, n);
    v[n] = 0;
    if (strspn(v, "0123456789") == n) {
        /* Anything past a day is as good as "much later"; keeps the arithmetic small. Leading
         * zeros do not make it longer ("0000001" is one second). */
        const char *d = v + strspn(v, "0");
        uint64_t s = strlen(d) > 6 ? 86400 : strtoull(d, NULL, 10);
        return (int64_t)(s > 86400 ? 86400 : s) * 1000000000;
    }
    /* IMF-fixdate and the two obsolete forms RFC 9110 still asks recipients to accept. */
    time_t t = curl_getdate(v, NULL);
    if (t == (time_t)-1)
        return -1;
    int64_t d = (int64_t)t - now_unix_s;
    return d <= 0 ? 0 : (d > 86400 ? 86400 : d) * 1000000000;
}

/* Minimal protobuf reading for google.rpc.Status (code = 1, message = 2, details = 3: Any),
 * Any (type_url = 1, value = 2), RetryInfo (retry_delay = 1: Duration), Duration (seconds = 1,
 * nanos = 2). */
typedef struct pbf {
    uint32_t num, wt;
    uint64_t v;
    const uint8_t *p;
    size_t len;
} pbf;

static int pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (int s = 0; s < 64 && *p < end; s += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << s;
        if (!(b & 0x80))
            return 0;
    }
    return -1;
}

/* Next field of [*p, end): 1 = got one, 0 = end, -1 = malformed. */
static int pb_next(const uint8_t **p, const uint8_t *end, pbf *f)
{
    if (*p >= end)
        return 0;
    uint64_t key;
    if (pb_varint(p, end, &key))
        return -1;
    f->num = (uint32_t)(key >> 3);
    f->wt = (uint32_t)(key & 7);
    switch (f->wt) {
    case 0:
        return pb_varint(p, end, &f->v) ? -1 : 1;
    case 1:
    case 5: {
        size_t n = f->wt == 1 ? 8 : 4;
        if ((size_t)(end - *p) < n)
            return -1;
        *p += n;
        return 1;
    }
    case 2:
        if (pb_varint(p, end, &f->v) || f->v > (uint64_t)(end - *p))
            return -1;
        f->p = *p;
        f->len = (size_t)f->v;
        *p += f->len;
        return 1;
    default:
        return -1;
    }
}

int64_t outbox_grpc_retry_info_ns(const char *b64, size_t len)
{
    /* gRPC sends -bin values as base64, padded or not. */
    while (len && (b64[len - 1] == ' ' || b64[len - 1] == '\t' || b64[len - 1] == '\r'))
        len--;
    size_t cap = len / 4 * 3 + 3, n = 0;
    uint8_t *raw = malloc(cap);
    if (!raw)
        return -1;
    if (sp_base64_decode_buf(b64, len, raw, cap, &n) != 0) {
        free(raw);
        return -1;
    }
    static const char want[] = "type.googleapis.com/google.rpc.RetryInfo";
    int64_t out = -1;
    const uint8_t *p = raw, *end = raw + n;
    pbf f, a, r, d;
    while (out < 0 && pb_next(&p, end, &f) == 1) {
        if (f.num != 3 || f.wt != 2)
            continue;
        const uint8_t *q = f.p, *qe = f.p + f.len, *val = NULL;
        size_t vlen = 0;
        int is_retry = 0;
        while (pb_next(&q, qe, &a) == 1) {
            if (a.num == 1 && a.wt == 2)
                is_retry = a.len == strlen(want) && memcmp(a.p, want, a.len) == 0;
            else if (a.num == 2 && a.wt == 2)
                val = a.p, vlen = a.len;
        }
        if (!is_retry)
            continue;
        out = 0; /* RetryInfo without a delay: retry, at the usual backoff */
        const uint8_t *rp = val, *re = val ? val + vlen : NULL;
        while (val && pb_next(&rp, re, &r) == 1) {
            if (r.num != 1 || r.wt != 2)
                continue;
            int64_t s = 0, ns = 0;
            const uint8_t *dp = r.p, *de = r.p + r.len;
            while (pb_next(&dp, de, &d) == 1) {
                if (d.num == 1 && d.wt == 0)
                    s = (int64_t)d.v;
                else if (d.num == 2 && d.wt == 0)
                    ns = (int32_t)d.v;
            }
            if (s < 0 || ns < 0)
                s = 0, ns = 0;
            if (s > 86400)
                s = 86400, ns = 0;
            out = s * 1000000000 + ns;
        }
    }
    free(raw);
    return out;
}

int outbox_grpc_verdict(int grpc_status, int has_retry_info)
{
    switch (grpc_status) {
    case 0:
        return 0;
    case 1:  /* CANCELLED */
    case 4:  /* DEADLINE_EXCEEDED */
    case 10: /* ABORTED */
    case 11: /* OUT_OF_RANGE */
    case 14: /* UNAVAILABLE */
    case 15: /* DATA_LOSS */
        return SP_EUNAVAIL;
    case 8: /* RESOURCE_EXHAUSTED: retryable only when the server says recovery is possible */
        return has_retry_info ? SP_EUNAVAIL : SP_EINVAL;
    default:
        return SP_EINVAL;
    }
}

typedef struct response {
    char body[2048];
    size_t len;
    /* From the header callback, which libcurl also calls with HTTP/2 trailers. */
    char retry_after[80];
    int grpc_status; /* -1 = none seen */
    char grpc_message[300];
    char *grpc_details; /* grpc-status-details-bin, malloc'ed */
} response;

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    response *r = ud;
    size_t len = size * n, room = sizeof r->body - 1 - r->len;
    memcpy(r->body + r->len, p, len < room ? len : room);
    r->len += len < room ? len : room;
    r->body[r->len] = 0;
    return len;
}

/* "name: value\r\n" -> value (trimmed, NUL-terminated in out) when the name matches. */
static int header_is(const char *line, size_t len, const char *name, char *out, size_t outn)
{
    size_t nl = strlen(name);
    if (len <= nl || line[nl] != ':' || strncasecmp(line, name, nl) != 0)
        return 0;
    const char *v = line + nl + 1, *e = line + len;
    while (v < e && (*v == ' ' || *v == '\t'))
        v++;
    while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' '))
        e--;
    size_t n = (size_t)(e - v) < outn - 1 ? (size_t)(e - v) : outn - 1;
    memcpy(out, v, n);
    out[n] = 0;
    return 1;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    response *r = ud;
    size_t len = size * n;
    char v[16];
    if (len > 5 && strncasecmp(p, "HTTP/", 5) == 0) { /* a new response (after 100, redirect) */
        r->retry_after[0] = r->grpc_message[0] = 0;
        r->grpc_status = -1;
    } else if (header_is(p, len, "retry-after", r->retry_after, sizeof r->retry_after)) {
    } else if (header_is(p, len, "grpc-status", v, sizeof v)) {
        r->grpc_status = strspn(v, "0123456789") == strlen(v) && *v ? atoi(v) : 2 /* UNKNOWN */;
    } else if (header_is(p, len, "grpc-message", r->grpc_message, sizeof r->grpc_message)) {
    } else if (len > 24 && strncasecmp(p, "grpc-status-details-bin:", 24) == 0) {
        free(r->grpc_details);
        r->grpc_details = malloc(len + 1);
        if (r->grpc_details)
            header_is(p, len, "grpc-status-details-bin", r->grpc_details, len + 1);
    }
    return len;
}

static int on_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    return atomic_load(&((outbox *)ud)->stop) ? 1 : 0;
}

/* gRPC's framing: a 5-byte prefix (not compressed, big-endian length), then the message. */
typedef struct upload {
    uint8_t prefix[5];
    const uint8_t *body;
    size_t len, off; /* off counts the prefix too */
} upload;

static size_t on_read(char *dst, size_t size, size_t n, void *ud)
{
    upload *u = ud;
    size_t room = size * n, done = 0;
    while (done < room && u->off < u->len + 5) {
        const uint8_t *src = u->off < 5 ? u->prefix + u->off : u->body + (u->off - 5);
        size_t avail = u->off < 5 ? 5 - u->off : u->len + 5 - u->off;
        size_t k = avail < room - done ? avail : room - done;
        memcpy(dst + done, src, k);
        done += k;
        u->off += k;
    }
    return done;
}

/* First line of a secret file, without the newline. */
static int read_secret(const char *path, char *out, size_t n, sp_err *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return sp_fail(err, SP_EUNAVAIL, "cannot read %s: %s", path, strerror(errno));
    if (!fgets(out, (int)n, f))
        out[0] = 0;
    fclose(f);
    out[strcspn(out, "\r\n")] = 0;
    return 0;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* HTTP/2 wants lowercase header names; HTTP/1.1 does not mind either way. */
static struct curl_slist *add_header(struct curl_slist *l, int lower, const char *fmt, ...)
{
    char line[4200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    for (char *s = line; lower && *s && *s != ':'; s++)
        *s = (char)tolower((unsigned char)*s);
    struct curl_slist *n = curl_slist_append(l, line);
    if (!n) {
        curl_slist_free_all(l);
        return NULL;
    }
    return n;
}

static void wipe(void *p, size_t n)
{
    volatile unsigned char *v = p;
    while (n--)
        *v++ = 0;
}

static int http_deliver(outbox *ob, CURL *c, const char *tenant, const uint8_t *body, size_t len,
                        int64_t *retry_after_ns, sp_err *err)
{
    const outbox_http *h = &ob->o.http;
    char secret[4096];
    const int g = h->grpc;
    struct curl_slist *hdr = NULL;
    int rc = 0;
    int64_t tmo = h->timeout_ns > 0 ? h->timeout_ns / 1000000 : 10000;
    response resp = {.len = 0, .grpc_status = -1};
    curl_easy_reset(c);
    hdr = add_header(hdr, g, "Content-Type: %s",
                     h->content_type ? h->content_type
                     : g             ? "application/grpc"
                                     : "application/octet-stream");
    if (g) {
        /* gRPC over HTTP/2: trailers carry the status; a deadline tells the server when to stop. */
        hdr = add_header(hdr, 1, "te: trailers");
        /* At most 8 digits (gRPC over HTTP/2, "Timeout"). */
        hdr = tmo < 100000000 ? add_header(hdr, 1, "grpc-timeout: %" PRId64 "m", tmo)
                              : add_header(hdr, 1, "grpc-timeout: %" PRId64 "S", tmo / 1000);
    } else {
        hdr = add_header(hdr, 0, "Expect:"); /* no 100-continue round trip */
    }
    for (size_t i = 0; h->headers && h->headers[i]; i++)
        hdr = add_header(hdr, g, "%s", h->headers[i]);
    if (h->tenant_header && tenant && *tenant)
        hdr = add_header(hdr, g, "%s: %s", h->tenant_header, tenant);
    if (h->bearer_token_file) {
        if ((rc = read_secret(h->bearer_token_file, secret, sizeof secret, err)) != 0)
            goto out;
        hdr = add_header(hdr, g, "Authorization: Bearer %s", secret);
    }
    if (!hdr) {
        rc = sp_fail(err, SP_EUNAVAIL, "out of memory");
        goto out;
    }
    if (h->basic_user) {
        secret[0] = 0;
        if (h->basic_password_file &&
            (rc = read_secret(h->basic_password_file, secret, sizeof secret, err)) != 0)
            goto out;
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(c, CURLOPT_USERNAME, h->basic_user);
        curl_easy_setopt(c, CURLOPT_PASSWORD, secret);
    }
    if (h->ca_file)
        curl_easy_setopt(c, CURLOPT_CAINFO, h->ca_file);
    if (h->client_cert)
        curl_easy_setopt(c, CURLOPT_SSLCERT, h->client_cert);
    if (h->client_key)
        curl_easy_setopt(c, CURLOPT_SSLKEY, h->client_key);
    upload up = {.body = body, .len = len};
    curl_easy_setopt(c, CURLOPT_URL, h->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    if (g) {
        up.prefix[0] = 0;
        for (int i = 0; i < 4; i++)
            up.prefix[1 + i] = (uint8_t)((uint64_t)len >> (24 - 8 * i));
        /* h2c without an Upgrade round trip; over TLS, ALPN must pick h2. */
        curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
        /* libcurl 7.88 (Debian 12) fails the second request on a reused cleartext
         * prior-knowledge connection ("Error in the HTTP2 framing layer", also with the curl
         * tool against any h2c server): one connection per batch there. TLS reuses fine. */
        if (strncasecmp(h->url, "http://", 7) == 0)
            curl_easy_setopt(c, CURLOPT_FORBID_REUSE, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(c, CURLOPT_READDATA, &up);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len + 5);
    } else {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, (const char *)body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)tmo);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)(tmo < 5000 ? tmo : 5000));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &resp);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, ob);
    CURLcode cc = curl_easy_perform(c);
    if (cc != CURLE_OK) {
        rc = sp_fail(err, SP_EUNAVAIL, "POST %s: %s", h->url, curl_easy_strerror(cc));
        goto out;
    }
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (g && status == 200) {
        int64_t ri = resp.grpc_details
                         ? outbox_grpc_retry_info_ns(resp.grpc_details, strlen(resp.grpc_details))
                         : -1;
        if (resp.grpc_status < 0) {
            /* gRPC status mapping for a missing status: UNKNOWN, not retried. */
            rc = sp_fail(err, SP_EINVAL, "gRPC %s: the answer carries no grpc-status", h->url);
        } else if ((rc = outbox_grpc_verdict(resp.grpc_status, ri >= 0)) != 0) {
            sp_fail(err, rc, "gRPC %s: grpc-status %d: %s", h->url, resp.grpc_status,
                    resp.grpc_message);
            if (rc == SP_EUNAVAIL && ri > 0)
                *retry_after_ns = ri;
        }
    } else {
        /* A gRPC call that failed at the HTTP level (a proxy's 503) follows the HTTP rules. */
        rc = outbox_http_verdict(status, g ? NULL : resp.body, resp.len);
        if (rc)
            sp_fail(err, rc, "POST %s: HTTP %ld: %.300s", h->url, status, g ? "" : resp.body);
        if (rc == SP_EUNAVAIL && (status == 429 || status == 503) && resp.retry_after[0]) {
            int64_t ra = outbox_retry_after_ns(resp.retry_after, (int64_t)time(NULL));
            if (ra > 0)
                *retry_after_ns = ra;
        }
    }
out:
    free(resp.grpc_details);
    /* the token and password leave no copy behind in freed memory */
    for (struct curl_slist *l = hdr; l; l = l->next)
        wipe(l->data, strlen(l->data));
    wipe(secret, sizeof secret);
    curl_slist_free_all(hdr);
    return rc;
}
/* ---- the sender ---- */

/* Sleeps until deadline (monotonic) or stop; returns 1 when stopping. */
static int nap(outbox *ob, int64_t ns)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t t = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + ns;
    ts.tv_sec = t / 1000000000;
    ts.tv_nsec = t % 1000000000;
    pthread_mutex_lock(&ob->mu);
    while (!atomic_load(&ob->stop))
        if (pthread_cond_timedwait(&ob->wake, &ob->mu, &ts) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&ob->mu);
    return atomic_load(&ob->stop);
}

/* The sender thread. Long because it is one loop with its state in locals: take a batch, send
 * it, then delete, keep or back off by the verdict; split, that state would travel in a struct. */
static void *sender(void *arg)
{
    outbox *ob = arg;
    CURL *c = ob->o.deliver ? NULL : curl_easy_init();
    unsigned seed = (unsigned)mono_ns() ^ (unsigned)(uintptr_t)ob;
    int attempt = 0;
    sp_buf body, prepared;
    sp_buf_init(&body, 0);
    sp_buf_init(&prepared, 0);
    uint64_t *seqs = NULL;
    size_t seqcap = 0;
    while (!atomic_load(&ob->stop)) {
        pthread_mutex_lock(&ob->mu);
        while (!atomic_load(&ob->stop) && ob->qlen == 0) {
            pthread_cond_broadcast(&ob->idle);
            pthread_cond_wait(&ob->wake, &ob->mu);
        }
        pthread_mutex_unlock(&ob->mu);
        if (atomic_load(&ob->stop))
            break;
        if (attempt == 0 && ob->o.linger_ns > 0 && nap(ob, ob->o.linger_ns))
            break;
        /* Held items wait their time (trace forwarding waits for the spans' profiles). */
        pthread_mutex_lock(&ob->mu);
        int64_t wait = ob->qlen ? q_at(ob, 0)->ready_ns - mono_ns() : 0;
        pthread_mutex_unlock(&ob->mu);
        if (wait > 0) {
            if (nap(ob, wait))
                break;
            continue;
        }
        /* A batch: the head item and the ones after it of the same tenant, within the size. */
        char tenant[MAX_TENANT + 1];
        size_t n = 0;
        uint64_t total = 0;
        pthread_mutex_lock(&ob->mu);
        snprintf(tenant, sizeof tenant, "%s", q_at(ob, 0)->tenant);
        while (n < ob->qlen) {
            const entry *e = q_at(ob, n);
            if (strcmp(e->tenant, tenant) != 0 || (n && total + e->size > ob->o.batch_max_bytes) ||
                (n && e->ready_ns > mono_ns()))
                break;
            if (n == seqcap) {
                size_t ncap = seqcap ? seqcap * 2 : 64;
                uint64_t *ns = realloc(seqs, ncap * sizeof *ns);
                if (!ns)
                    break;
                seqs = ns;
                seqcap = ncap;
            }
            seqs[n++] = e->seq;
            total += e->size;
        }
        ob->inflight = 1;
        pthread_mutex_unlock(&ob->mu);
        if (!n) { /* out of memory for the list: try again later */
            if (nap(ob, 1000000000))
                break;
            continue;
        }
        body.len = 0;
        uint64_t *bad = calloc(n, sizeof *bad);
        size_t nbad = 0;
        for (size_t i = 0; i < n; i++) {
            char p[4096], t[MAX_TENANT + 1];
            uint64_t size;
            path_of(ob, seqs[i], "item", p, sizeof p);
            size_t before = body.len;
            if (read_item(p, t, &body, &size) != 0) {
                body.len = before;
                sp_warn("msg=\"outbox item is not readable; dropped\" outbox=%s file=\"%s\"",
                        ob->name, p);
                if (bad)
                    bad[nbad++] = seqs[i];
            }
        }
        sp_err err = {0};
        int rc = 0;
        int64_t asked = -1;
        const uint8_t *send = body.data;
        size_t sendlen = body.len;
        if (body.len && ob->o.prepare) {
            /* decided now, with what is known now; on failure the batch goes as it was queued */
            sp_err perr = {0};
            prepared.len = 0;
            if (ob->o.prepare(ob->o.prepare_ud, tenant, body.data, body.len, &prepared, &perr) ==
                0) {
                send = prepared.data;
                sendlen = prepared.len;
            } else {
                sp_warn("msg=\"outbox batch not prepared; sent as queued\" outbox=%s err=\"%s\"",
                        ob->name, perr.msg);
            }
        }
        if (sendlen)
            rc = ob->o.deliver
                     ? ob->o.deliver(ob->o.deliver_ud, tenant, send, sendlen, &asked, &err)
                 : c ? http_deliver(ob, c, tenant, send, sendlen, &asked, &err)
                     : sp_fail(&err, SP_EUNAVAIL, "libcurl did not initialise");
        if (atomic_load(&ob->stop) && rc == SP_EUNAVAIL) {
            free(bad);
            break; /* abandoned by close: the items stay on disk */
        }
        pthread_mutex_lock(&ob->mu);
        ob->inflight = 0;
        if (rc == SP_EUNAVAIL) {
            ob->st.retried++;
            publish(ob);
            pthread_mutex_unlock(&ob->mu);
            free(bad);
            int64_t cap = ob->o.backoff_min_ns << (attempt < 20 ? attempt : 20);
            if (cap > ob->o.backoff_max_ns || cap <= 0)
                cap = ob->o.backoff_max_ns;
            /* Full jitter: uniform in [cap/2, cap], so many instances do not retry in step. */
            int64_t d = cap / 2 + (int64_t)((double)rand_r(&seed) / RAND_MAX * (double)(cap / 2));
            /* The destination's own estimate (Retry-After, RetryInfo) is a floor: coming back
             * sooner only earns another refusal. Capped, so a wild value cannot park the queue. */
            if (asked > 0 &&
                d < (asked < ob->o.retry_after_max_ns ? asked : ob->o.retry_after_max_ns))
                d = asked < ob->o.retry_after_max_ns ? asked : ob->o.retry_after_max_ns;
            if (attempt == 0 || attempt % 10 == 0 || asked > 0)
                sp_warn(
                    "msg=\"delivery failed; will retry\" outbox=%s items=%zu retry_in_ms=%" PRId64
                    " asked_ms=%" PRId64 " err=\"%s\"",
                    ob->name, n, d / 1000000, asked > 0 ? asked / 1000000 : 0, err.msg);
            attempt++;
            if (nap(ob, d))
                break;
            continue;
        }
        if (rc)
            sp_error("msg=\"destination rejected a batch; dropped\" outbox=%s items=%zu err=\"%s\"",
                     ob->name, n, err.msg);
        else if (attempt)
            sp_info("msg=\"delivery recovered\" outbox=%s after_retries=%d", ob->name, attempt);
        attempt = 0;
        /* Remove the batch's items that are still at the head (overflow may have dropped some
         * while the request was in flight). */
        for (size_t i = 0; i < n; i++) {
            if (!ob->qlen || q_at(ob, 0)->seq != seqs[i])
                continue;
            int broken = 0;
            for (size_t k = 0; k < nbad; k++)
                broken |= bad[k] == seqs[i];
            q_pop(ob);
            if (rc || broken)
                ob->st.dropped++;
            else
                ob->st.sent++;
        }
        if (!rc)
            ob->st.batches_sent++;
        publish(ob);
        if (!ob->qlen)
            pthread_cond_broadcast(&ob->idle);
        pthread_mutex_unlock(&ob->mu);
        free(bad);
    }
    pthread_mutex_lock(&ob->mu);
    ob->inflight = 0;
    pthread_cond_broadcast(&ob->idle);
    pthread_mutex_unlock(&ob->mu);
    sp_buf_free(&body);
    sp_buf_free(&prepared);
    free(seqs);
    if (c)
        curl_easy_cleanup(c);
    return NULL;
}

/* ---- the API ---- */

static char *dup_or_null(const char *s)
{
    return s && *s ? strdup(s) : NULL;
}

int outbox_open(outbox **out, const outbox_options *o, sp_err *err)
{
    *out = NULL;
    if (!o || !o->dir || !*o->dir)
        return sp_fail(err, SP_EINVAL, "outbox: no directory");
    if (!o->deliver && (!o->http.url || !*o->http.url))
        return sp_fail(err, SP_EINVAL, "outbox: no destination URL");
    outbox *ob = calloc(1, sizeof *ob);
    if (!ob)
        return sp_fail(err, SP_ENOMEM, "outbox: out of memory");
    ob->o = *o;
    ob->dir = strdup(o->dir);
    ob->name = strdup(o->name && *o->name ? o->name : "outbox");
    if (!ob->o.max_bytes)
        ob->o.max_bytes = 256u << 20;
    if (!ob->o.batch_max_bytes)
        ob->o.batch_max_bytes = 4u << 20;
    if (ob->o.backoff_min_ns <= 0)
        ob->o.backoff_min_ns = 200000000;
    if (ob->o.backoff_max_ns <= 0)
        ob->o.backoff_max_ns = 30000000000LL;
    if (ob->o.retry_after_max_ns <= 0)
        ob->o.retry_after_max_ns = 300000000000LL;
    if (ob->o.backoff_max_ns < ob->o.backoff_min_ns)
        ob->o.backoff_max_ns = ob->o.backoff_min_ns;
    /* The caller's strings need not outlive this call. */
    outbox_http *h = &ob->o.http;
    h->url = dup_or_null(o->http.url);
    h->content_type = dup_or_null(o->http.content_type);
    h->tenant_header = dup_or_null(o->http.tenant_header);
    h->basic_user = dup_or_null(o->http.basic_user);
    h->basic_password_file = dup_or_null(o->http.basic_password_file);
    h->bearer_token_file = dup_or_null(o->http.bearer_token_file);
    h->ca_file = dup_or_null(o->http.ca_file);
    h->client_cert = dup_or_null(o->http.client_cert);
    h->client_key = dup_or_null(o->http.client_key);
    size_t nh = 0;
    while (o->http.headers && o->http.headers[nh])
        nh++;
    char **hs = calloc(nh + 1, sizeof *hs);
    for (size_t i = 0; hs && i < nh; i++)
        hs[i] = strdup(o->http.headers[i]);
    h->headers = (const char *const *)hs;
    /* the name may have failed to copy (refused below): never print NULL */
    const char *nm = ob->name ? ob->name : "outbox";
    snprintf(ob->m_queued, sizeof ob->m_queued, "%s_queued", nm);
    snprintf(ob->m_bytes, sizeof ob->m_bytes, "%s_queued_bytes", nm);
    snprintf(ob->m_sent, sizeof ob->m_sent, "%s_sent_total", nm);
    snprintf(ob->m_retried, sizeof ob->m_retried, "%s_retried_total", nm);
    snprintf(ob->m_dropped, sizeof ob->m_dropped, "%s_dropped_total", nm);
    pthread_mutex_init(&ob->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ob->wake, &ca);
    pthread_cond_init(&ob->idle, &ca);
    pthread_condattr_destroy(&ca);
    int rc = 0;
    if (!ob->dir || !ob->name || !hs)
        rc = sp_fail(err, SP_ENOMEM, "outbox: out of memory");
    else if (mkdirs(ob->dir) != 0)
        rc = sp_fail(err, SP_EUNAVAIL, "%s outbox: cannot create directory %s: %s", ob->name,
                     ob->dir, strerror(errno));
    else if (access(ob->dir, W_OK) != 0)
        rc =
            sp_fail(err, SP_EUNAVAIL, "%s outbox: directory %s is not writable", ob->name, ob->dir);
    if (!rc)
        rc = load(ob, err);
    if (!rc && !o->deliver)
        pthread_once(&curl_once, curl_init);
    if (!rc && pthread_create(&ob->thread, NULL, sender, ob) != 0)
        rc = sp_fail(err, SP_EINTERNAL, "%s outbox: cannot start the sender thread", ob->name);
    if (rc) {
        outbox_close(ob);
        return rc;
    }
    ob->started = 1;
    publish(ob);
    *out = ob;
    return 0;
}

int outbox_stage(outbox *ob, const char *tenant, const void *data, size_t len, outbox_ticket *t,
                 sp_err *err)
{
    if (!tenant)
        tenant = "";
    if (strlen(tenant) > MAX_TENANT)
        return sp_fail(err, SP_EINVAL, "tenant name longer than %d bytes", MAX_TENANT);
    uint64_t size = HEAD_FIXED + strlen(tenant) + len + 4;
    if (size > ob->o.max_bytes)
        return sp_fail(err, SP_ETOOBIG,
                       "%s outbox: an item of %" PRIu64 " bytes exceeds the whole queue (%" PRIu64
                       " bytes)",
                       ob->name, size, ob->o.max_bytes);
    pthread_mutex_lock(&ob->mu);
    t->seq = ob->next_seq++;
    pthread_mutex_unlock(&ob->mu);
    t->size = size;
    char p[4096];
    path_of(ob, t->seq, "tmp", p, sizeof p);
    return write_item(ob, p, tenant, data, len, err);
}

int outbox_commit(outbox *ob, const outbox_ticket *t, sp_err *err)
{
    char from[4096], to[4096], tenant[MAX_TENANT + 1];
    path_of(ob, t->seq, "tmp", from, sizeof from);
    path_of(ob, t->seq, "item", to, sizeof to);
    uint64_t size;
    /* The tenant is in the file; reading 16 + n header bytes back is cheaper than keeping it. */
    if (read_item(from, tenant, NULL, &size) != 0 || rename(from, to) != 0) {
        int e = errno;
        unlink(from);
        return sp_fail(err, SP_EUNAVAIL, "%s outbox: cannot queue %s: %s", ob->name, from,
                       strerror(e));
    }
    if (ob->o.fsync && fsync_dir(ob->dir) != 0) {
        int e = errno;
        unlink(to);
        return sp_fail(err, SP_EUNAVAIL, "%s outbox: cannot sync %s: %s", ob->name, ob->dir,
                       strerror(e));
    }
    pthread_mutex_lock(&ob->mu);
    ob->st.enqueued++;
    /* Oldest first out when the bound is hit. The head may be in flight: the sender then finds
     * it gone and counts nothing for it. */
    uint64_t dropped = 0;
    while (ob->qlen && ob->st.queued_bytes + size > ob->o.max_bytes) {
        q_pop(ob);
        ob->st.dropped++;
        dropped++;
    }
    int rc = q_push(ob, t->seq, size, tenant);
    publish(ob);
    pthread_cond_broadcast(&ob->wake);
    pthread_mutex_unlock(&ob->mu);
    if (dropped)
        sp_warn("msg=\"outbox full; oldest items dropped\" outbox=%s dropped=%" PRIu64
                " max_bytes=%" PRIu64,
                ob->name, dropped, ob->o.max_bytes);
    if (rc) {
        unlink(to);
        return sp_fail(err, rc, "%s outbox: out of memory", ob->name);
    }
    return 0;
}

void outbox_abort(outbox *ob, const outbox_ticket *t)
{
    char p[4096];
    path_of(ob, t->seq, "tmp", p, sizeof p);
    unlink(p);
}

int outbox_put(outbox *ob, const char *tenant, const void *data, size_t len, sp_err *err)
{
    outbox_ticket t;
    int rc = outbox_stage(ob, tenant, data, len, &t, err);
    return rc ? rc : outbox_commit(ob, &t, err);
}

int outbox_drain(outbox *ob, int64_t timeout_ns)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t t = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + timeout_ns;
    ts.tv_sec = t / 1000000000;
    ts.tv_nsec = t % 1000000000;
    pthread_mutex_lock(&ob->mu);
    int rc = 0;
    while (ob->qlen || ob->inflight)
        if (pthread_cond_timedwait(&ob->idle, &ob->mu, &ts) == ETIMEDOUT) {
            rc = ob->qlen || ob->inflight ? SP_EDEADLINE : 0;
            break;
        }
    pthread_mutex_unlock(&ob->mu);
    return rc;
}

void outbox_stats_get(outbox *ob, outbox_stats *out)
{
    pthread_mutex_lock(&ob->mu);
    *out = ob->st;
    pthread_mutex_unlock(&ob->mu);
}

void outbox_close(outbox *ob)
{
    if (!ob)
        return;
    if (ob->started) {
        pthread_mutex_lock(&ob->mu);
        atomic_store(&ob->stop, 1);
        pthread_cond_broadcast(&ob->wake);
        pthread_mutex_unlock(&ob->mu);
        pthread_join(ob->thread, NULL);
    }
    while (ob->qlen) { /* forget, keep the files */
        free(q_at(ob, 0)->tenant);
        ob->qhead = (ob->qhead + 1) % ob->qcap;
        ob->qlen--;
    }
    free(ob->q);
    outbox_http *h = &ob->o.http;
    free((char *)h->url);
    free((char *)h->content_type);
    free((char *)h->tenant_header);
    free((char *)h->basic_user);
    free((char *)h->basic_password_file);
    free((char *)h->bearer_token_file);
    free((char *)h->ca_file);
    free((char *)h->client_cert);
    free((char *)h->client_key);
    for (size_t i = 0; h->headers && h->headers[i]; i++)
        free((char *)h->headers[i]);
    free((void *)h->headers);
    pthread_cond_destroy(&ob->wake);
    pthread_cond_destroy(&ob->idle);
    pthread_mutex_destroy(&ob->mu);
    free(ob->dir);
    free(ob->name);
    free(ob);
}
