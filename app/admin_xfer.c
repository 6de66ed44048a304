/* spanprof admin export / import (admin.h): a time range of a data directory to a directory of
 * gzipped pprof files, span lists and a manifest (layout in xfer_format.h), and back.
 *
 * Export reads one committed state (store_export_range: a read transaction beside a running
 * server) and writes the manifest last, so a directory without one is an export cut short.
 * Import takes the data directory's lock by opening the store (a running server there makes it
 * refuse: stop the server first, as for vacuum), reads and checks every file before writing
 * anything (a damaged export changes nothing), records the export's id in the store's meta table
 * and refuses the same export a second time (its values would be counted twice).
 */
#include "admin.h"
#include "version.h"
#include "xfer_format.h"

#include "../otlp/pprof.h"
#include "../query/params.h"
#include "../storage-adapter/store.h"
#include "../wire/compress.h"
#include "../wire/pb.h"
#include "../wire/pprof_write.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define MAX_TEXT_FILE  (1u << 20)   /* manifest */
#define MAX_PPROF_FILE (256u << 20) /* one bucket's or hour's profile, inflated */
#define BATCH_FILES    64           /* profile files stored per store_write() on import */

/* ---- files ----------------------------------------------------------------------------------- */

/* Grows *p (heap) to hold need elements. */
static int grow_array(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap * 2 : 16;
    while (nc < need)
        nc *= 2;
    void *q = realloc(*p, nc * elem);
    if (!q)
        return -1;
    *p = q;
    *cap = nc;
    return 0;
}

static int write_file(const char *path, const void *data, size_t len, sp_err *err)
{
    FILE *f = fopen(path, "wbx");
    if (!f)
        return sp_fail(err, SP_EUNAVAIL, "cannot create %s: %s", path, strerror(errno));
    int bad = fwrite(data, 1, len, f) != len;
    bad |= fclose(f) != 0;
    return bad ? sp_fail(err, SP_EUNAVAIL, "writing %s: %s", path, strerror(errno)) : 0;
}

/* Reads a whole file of at most max bytes into out. */
static int read_file(const char *path, size_t max, sp_buf *out, sp_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return sp_fail(err, SP_ENOTFOUND, "%s: %s", path, strerror(errno));
    char chunk[65536];
    size_t n;
    int rc = 0;
    while (!rc && (n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (out->len + n > max)
            rc = sp_fail(err, SP_ETOOBIG, "%s: larger than %zu bytes", path, max);
        else if (sp_buf_append(out, chunk, n))
            rc = sp_fail(err, SP_ENOMEM, "%s: out of memory", path);
    }
    if (!rc && ferror(f))
        rc = sp_fail(err, SP_EUNAVAIL, "reading %s: %s", path, strerror(errno));
    fclose(f);
    return rc;
}

static int make_dir(const char *path, sp_err *err)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return sp_fail(err, SP_EUNAVAIL, "cannot create %s: %s", path, strerror(errno));
    return 0;
}

/* ---- export ---------------------------------------------------------------------------------- */

typedef struct exporter {
    const char *dir;
    xfer_manifest m;
    size_t captenants;
    xfer_tenant *t; /* the tenant being written */
    char tdir[4200];
    FILE *series, *spans;
    /* series ids whose line and directories are written (of this tenant) */
    int64_t *seen;
    size_t nseen, capseen;
    sp_buf buf, gz;
} exporter;

static int close_tenant(exporter *x, sp_err *err)
{
    int bad = 0;
    if (x->series)
        bad |= fclose(x->series) != 0;
    if (x->spans)
        bad |= fclose(x->spans) != 0;
    x->series = x->spans = NULL;
    return bad ? sp_fail(err, SP_EUNAVAIL, "writing %s: %s", x->tdir, strerror(errno)) : 0;
}

static FILE *open_list(exporter *x, const char *name, sp_err *err)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/%s", x->tdir, name);
    FILE *f = fopen(path, "wx");
    if (!f)
        sp_fail(err, SP_EUNAVAIL, "cannot create %s: %s", path, strerror(errno));
    return f;
}

static int on_tenant(void *ud, const char *tenant, sp_err *err)
{
    exporter *x = ud;
    int rc = close_tenant(x, err);
    if (rc)
        return rc;
    if (!xfer_tenant_name_ok(tenant))
        return sp_fail(err, SP_EINVAL,
                       "tenant \"%.160s\" is not a valid tenant id: cannot be a directory name",
                       tenant);
    if (grow_array((void **)&x->m.tenants, &x->captenants, x->m.ntenants + 1, sizeof *x->m.tenants))
        return sp_fail(err, SP_ENOMEM, "out of memory");
    x->t = &x->m.tenants[x->m.ntenants++];
    memset(x->t, 0, sizeof *x->t);
    x->t->name = strdup(tenant);
    x->nseen = 0;
    snprintf(x->tdir, sizeof x->tdir, "%s/tenants/%s", x->dir, tenant);
    if (!x->t->name || (rc = make_dir(x->tdir, err)))
        return rc ? rc : sp_fail(err, SP_ENOMEM, "out of memory");
    x->series = open_list(x, "series.jsonl", err);
    x->spans = x->series ? open_list(x, "spans.jsonl", err) : NULL;
    return x->spans ? 0 : SP_EUNAVAIL;
}

static int put_line(FILE *f, sp_buf *b, const char *what, sp_err *err)
{
    if (fwrite(b->data, 1, b->len, f) != b->len)
        return sp_fail(err, SP_EUNAVAIL, "writing %s: %s", what, strerror(errno));
    b->len = 0;
    return 0;
}

static int on_span(void *ud, const sp_span *sp, sp_err *err)
{
    exporter *x = ud;
    x->buf.len = 0;
    if (xfer_span_write(sp, &x->buf))
        return sp_fail(err, SP_ENOMEM, "out of memory");
    x->t->spans++;
    return put_line(x->spans, &x->buf, "spans.jsonl", err);
}

/* The series line and directories, once per series and tenant. */
static int note_series(exporter *x, const store_export_series *s, sp_err *err)
{
    for (size_t i = 0; i < x->nseen; i++)
        if (x->seen[i] == s->id)
            return 0;
    if (grow_array((void **)&x->seen, &x->capseen, x->nseen + 1, sizeof *x->seen))
        return sp_fail(err, SP_ENOMEM, "out of memory");
    x->seen[x->nseen++] = s->id;
    xfer_series xs = {s->id, s->type_id, s->period, (sp_kv *)s->labels, s->nlabels};
    x->buf.len = 0;
    if (xfer_series_write(&xs, &x->buf))
        return sp_fail(err, SP_ENOMEM, "out of memory");
    x->t->series++;
    char path[4400];
    int rc = put_line(x->series, &x->buf, "series.jsonl", err);
    const char *sub[2] = {"profiles", "span-profiles"};
    for (int k = 0; k < 2 && !rc; k++) {
        snprintf(path, sizeof path, "%s/%s", x->tdir, sub[k]);
        rc = make_dir(path, err);
        snprintf(path, sizeof path, "%s/%s/%" PRId64, x->tdir, sub[k], s->id);
        if (!rc)
            rc = make_dir(path, err);
    }
    return rc;
}

static int on_profile(void *ud, const store_export_series *s, int64_t t_ns, int span_values,
                      const sp_profile *p, sp_err *err)
{
    exporter *x = ud;
    int rc = note_series(x, s, err);
    if (rc)
        return rc;
    x->buf.len = x->gz.len = 0;
    if ((rc = wire_pprof_encode_ex(p, WIRE_PPROF_FRAME_TYPES, &x->buf, err)) ||
        (rc = wire_gzip_compress(x->buf.data, x->buf.len, 6, &x->gz, err)))
        return rc;
    char path[4400];
    snprintf(path, sizeof path, "%s/%s/%" PRId64 "/%" PRId64 ".pb.gz", x->tdir,
             span_values ? "span-profiles" : "profiles", s->id, t_ns / 1000000000);
    if (span_values)
        x->t->span_profiles++;
    else
        x->t->profiles++;
    return write_file(path, x->gz.data, x->gz.len, err);
}

static void rfc3339(int64_t ns, char *out, size_t n)
{
    time_t t = (time_t)(ns / 1000000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int new_id(char out[33], sp_err *err)
{
    uint8_t b[16];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, b, sizeof b) : -1;
    if (fd >= 0)
        close(fd);
    if (n != (ssize_t)sizeof b)
        return sp_fail(err, SP_EINTERNAL, "cannot read /dev/urandom for the export id");
    query_hex_encode(b, 16, out);
    return 0;
}

/* The export directory: created, or an existing empty one. */
static int prepare_out(const char *dir, sp_err *err)
{
    if (mkdir(dir, 0755) != 0) {
        DIR *d = errno == EEXIST ? opendir(dir) : NULL;
        if (!d)
            return sp_fail(err, SP_EINVAL, "cannot create %s: %s", dir, strerror(errno));
        struct dirent *e;
        int empty = 1;
        while ((e = readdir(d)))
            empty &= !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
        closedir(d);
        if (!empty)
            return sp_fail(err, SP_EINVAL,
                           "%s exists and is not empty: export into a new directory", dir);
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/tenants", dir);
    return make_dir(path, err);
}

int admin_export(const char *data_dir, const char *out, const char *tenant, int64_t from_ns,
                 int64_t until_ns, sp_err *err)
{
    exporter x;
    memset(&x, 0, sizeof x);
    x.dir = out;
    char id[33], created[40], path[4200];
    sp_buf_init(&x.buf, 0);
    sp_buf_init(&x.gz, 0);
    rfc3339(query_now_ns(), created, sizeof created);
    x.m = (xfer_manifest){
        XFER_VERSION, id, app_version(), created, from_ns, until_ns, 10000000000LL, NULL, 0};
    int rc = new_id(id, err);
    if (!rc)
        rc = prepare_out(out, err);
    store_export_sink sink = {on_tenant, on_span, on_profile, &x};
    if (!rc)
        rc = store_export_range(data_dir, tenant, from_ns, until_ns, &sink, err);
    int crc = close_tenant(&x, rc ? &(sp_err){0} : err);
    rc = rc ? rc : crc;
    x.buf.len = 0;
    if (!rc && xfer_manifest_write(&x.m, &x.buf))
        rc = sp_fail(err, SP_ENOMEM, "out of memory");
    snprintf(path, sizeof path, "%s/manifest.json", out);
    if (!rc)
        rc = write_file(path, x.buf.data, x.buf.len, err);
    if (!rc) {
        uint64_t t[4] = {0};
        for (size_t i = 0; i < x.m.ntenants; i++) {
            t[0] += x.m.tenants[i].series;
            t[1] += x.m.tenants[i].profiles;
            t[2] += x.m.tenants[i].spans;
            t[3] += x.m.tenants[i].span_profiles;
        }
        printf("%s: exported %zu tenant%s, %" PRIu64 " series, %" PRIu64 " profile files, %" PRIu64
               " spans, %" PRIu64 " span profile files (export %s)\n",
               out, x.m.ntenants, x.m.ntenants == 1 ? "" : "s", t[0], t[1], t[2], t[3], id);
    }
    for (size_t i = 0; i < x.m.ntenants; i++)
        free((char *)x.m.tenants[i].name);
    free(x.m.tenants);
    free(x.seen);
    sp_buf_free(&x.buf);
    sp_buf_free(&x.gz);
    return rc;
}

/* ---- import ---------------------------------------------------------------------------------- */

typedef struct importer {
    const char *dir, *data_dir;
    xfer_manifest m;
    sp_arena *a; /* manifest; the tenant's series (reset per tenant) */
    store *st;   /* NULL in the checking pass */
    sp_arena *ba;
    sp_batch batch;
    size_t nfiles; /* profile files in batch */
    sp_buf file, raw;
    const xfer_tenant *t;
    char tdir[4200];
    xfer_series *series;
    size_t nseries, capseries;
    sp_span *spans; /* waiting for store_write, strings in ba */
    size_t nspans, capspans;
    uint64_t got[3]; /* profiles, span profiles, spans of the tenant */
} importer;

/* gunzip with the offset of what is wrong (zlib's own decoder: wire_decompress names none). */
static int gunzip(const char *path, const uint8_t *in, size_t len, sp_buf *out, sp_err *err)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 15 + 16) != Z_OK)
        return sp_fail(err, SP_ENOMEM, "%s: cannot start gunzip", path);
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)len;
    int zr = Z_OK, rc = 0;
    while (!rc && zr != Z_STREAM_END) {
        if (sp_buf_reserve(out, 65536) || out->len + 65536 > MAX_PPROF_FILE) {
            rc = sp_fail(err, SP_ETOOBIG, "%s: inflates past %u bytes", path, MAX_PPROF_FILE);
            break;
        }
        z.next_out = out->data + out->len;
        z.avail_out = 65536;
        zr = inflate(&z, Z_NO_FLUSH);
        out->len += 65536 - z.avail_out;
        if (zr == Z_BUF_ERROR && z.avail_in == 0)
            rc = sp_fail(err, SP_EINVAL, "%s: gzip data ends early at byte %lu (of %zu)", path,
                         z.total_in, len);
        else if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR)
            rc = sp_fail(err, SP_EINVAL, "%s: not valid gzip at byte %lu: %s", path, z.total_in,
                         z.msg ? z.msg : "corrupt data");
    }
    if (!rc && z.avail_in)
        rc = sp_fail(err, SP_EINVAL,
                     "%s: %u bytes of trailing data after the gzip stream at byte %lu", path,
                     z.avail_in, z.total_in);
    inflateEnd(&z);
    return rc;
}

/* A top-level walk of the pprof message: a broken field is reported with its offset (protobuf-c
 * only says that decoding failed). */
static int pprof_structure(const char *path, const uint8_t *p, size_t len, sp_err *err)
{
    const uint8_t *at = p, *end = p + len;
    wire_pb_field f;
    while (at < end)
        if (wire_pb_next(&at, end, p, &f, err)) {
            sp_err_prefix(err, "%s: pprof (after gunzip, %zu bytes): ", path, len);
            return SP_EINVAL;
        }
    return 0;
}

/* The profile's samples checked against what the export writes: no labels; in span files each
 * names its span (span_id), which becomes the span the value is attached to. */
static int check_samples(const char *path, sp_profile *p, int span_values, sp_err *err)
{
    for (uint32_t i = 0; i < p->nsamples; i++) {
        sp_sample *s = &p->samples[i];
        if (s->nlabels)
            return sp_fail(err, SP_EINVAL,
                           "%s: sample %u has a label other than span_id/trace_id: an export's "
                           "profiles carry none",
                           path, i);
        if (span_values && !s->has_link)
            return sp_fail(err, SP_EINVAL, "%s: sample %u has no span_id label", path, i);
        if (span_values) {
            s->spans = &s->link;
            s->nspans = 1;
        } else {
            s->has_link = 0;
        }
    }
    p->attach_only = (uint8_t)span_values;
    return 0;
}

static int decode_file(importer *im, const char *path, const xfer_series *xs, int64_t t_s,
                       int span_values, sp_err *err)
{
    im->file.len = im->raw.len = 0;
    int rc = read_file(path, MAX_PPROF_FILE, &im->file, err);
    if (!rc)
        rc = gunzip(path, im->file.data, im->file.len, &im->raw, err);
    if (!rc)
        rc = pprof_structure(path, im->raw.data, im->raw.len, err);
    if (rc)
        return rc;
    char name[200];
    const char *colon = strchr(xs->type_id, ':');
    snprintf(name, sizeof name, "%.*s", (int)(colon - xs->type_id), xs->type_id);
    otlp_pprof_opts o = {.name_hint = name, .now_ns = t_s * 1000000000};
    otlp_pprof_result res;
    size_t before = im->batch.nprofiles;
    rc = otlp_pprof_decode(im->raw.data, im->raw.len, &o, &im->batch, &res, err);
    if (rc) {
        sp_err_prefix(err, "%s: pprof (after gunzip, %zu bytes): ", path, im->raw.len);
        return rc;
    }
    if (res.bad_samples)
        return sp_fail(err, SP_EINVAL, "%s: %s", path, res.first.msg);
    if (im->batch.nprofiles != before + 1)
        return sp_fail(err, SP_EINVAL, "%s: %zu sample types, an export's profile has 1", path,
                       im->batch.nprofiles - before);
    sp_profile *p = im->batch.profiles[before];
    if (strcmp(p->type_id, xs->type_id) != 0)
        return sp_fail(err, SP_EINVAL, "%s: profile type %.200s, series.jsonl says %.200s", path,
                       p->type_id, xs->type_id);
    p->series = xs->labels;
    p->nseries = xs->nlabels;
    p->time_nanos = t_s * 1000000000;
    p->duration_nanos = span_values ? 3600000000000LL : 10000000000LL;
    return check_samples(path, p, span_values, err);
}

/* Stores the batch (import pass) or drops it (checking pass). */
static int flush(importer *im, sp_err *err)
{
    int rc = 0;
    if (im->st && (im->batch.nprofiles || im->batch.nspans))
        rc = store_write(im->st, &im->batch, err);
    if (rc)
        sp_err_prefix(err, "storing into %s: ", im->data_dir);
    sp_arena_reset(im->ba);
    im->batch = (sp_batch){.tenant = im->t->name, .arena = im->ba};
    im->nfiles = 0;
    return rc;
}

/* "<digits>.pb.gz" → *t_s; 0 when the name is not one. */
static int file_time(const char *name, int64_t *t_s)
{
    char *end;
    errno = 0;
    long long v = strtoll(name, &end, 10);
    if (errno || end == name || *name < '0' || *name > '9' || strcmp(end, ".pb.gz") != 0)
        return 0;
    *t_s = v;
    return 1;
}

static const xfer_series *series_of(importer *im, const char *dirname)
{
    char *end;
    long long id = strtoll(dirname, &end, 10);
    for (size_t i = 0; *dirname >= '0' && *dirname <= '9' && !*end && i < im->nseries; i++)
        if (im->series[i].id == id)
            return &im->series[i];
    return NULL;
}

/* One file's time checked against the range: buckets start in it, hours are near it. */
static int check_time(importer *im, const char *path, int64_t t_s, int span_values, sp_err *err)
{
    int64_t step = span_values ? 3600 : 10, t = t_s * 1000000000;
    int64_t lo = im->m.from_ns, hi = im->m.until_ns;
    if (span_values) { /* sqlite_export.c invariant 4: the hour before to the hour after */
        lo = (lo / 3600000000000LL - 1) * 3600000000000LL;
        hi = (hi / 3600000000000LL + 2) * 3600000000000LL;
    }
    if (t_s % step || t_s > INT64_MAX / 1000000000 || t < lo || t >= hi)
        return sp_fail(err, SP_EINVAL,
                       "%s: the file name is not a %s start inside the manifest's range", path,
                       span_values ? "hour" : "10 s bucket");
    return 0;
}

static int import_series_dir(importer *im, const char *sub, const xfer_series *xs, sp_err *err)
{
    char dir[4400], path[4700];
    snprintf(dir, sizeof dir, "%s/%s/%" PRId64, im->tdir, sub, xs->id);
    DIR *d = opendir(dir);
    if (!d)
        return sp_fail(err, SP_EINVAL, "%s: %s", dir, strerror(errno));
    int span_values = !strcmp(sub, "span-profiles"), rc = 0;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        int64_t t_s = 0;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (!file_time(e->d_name, &t_s))
            rc =
                sp_fail(err, SP_EINVAL, "%s: not a file of an export (<unix seconds>.pb.gz)", path);
        if (!rc)
            rc = check_time(im, path, t_s, span_values, err);
        if (!rc)
            rc = decode_file(im, path, xs, t_s, span_values, err);
        im->got[span_values]++;
        if (!rc && ++im->nfiles >= BATCH_FILES)
            rc = flush(im, err);
    }
    closedir(d);
    return rc;
}

static int import_profiles(importer *im, const char *sub, sp_err *err)
{
    char dir[4400];
    snprintf(dir, sizeof dir, "%s/%s", im->tdir, sub);
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : sp_fail(err, SP_EINVAL, "%s: %s", dir, strerror(errno));
    int rc = 0;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        const xfer_series *xs = series_of(im, e->d_name);
        rc = xs ? import_series_dir(im, sub, xs, err)
                : sp_fail(err, SP_EINVAL, "%s/%s: no series %s in series.jsonl", dir, e->d_name,
                          e->d_name);
    }
    closedir(d);
    return rc ? rc : flush(im, err);
}

/* Calls fn for each line of a JSON-lines file, naming the line and its byte offset on errors. */
static int each_line(importer *im, const char *name,
                     int (*fn)(importer *im, const char *line, size_t len, sp_err *err),
                     sp_err *err)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", im->tdir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return sp_fail(err, SP_EINVAL, "%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    long offset = 0;
    ssize_t n;
    int rc = 0;
    while (!rc && (n = getline(&line, &cap, f)) > 0) {
        lineno++;
        size_t len = (size_t)n - (line[n - 1] == '\n');
        if (line[n - 1] != '\n')
            rc = sp_fail(err, SP_EINVAL,
                         "%s: line %zu (byte %ld): no newline at the end (a file "
                         "cut short?)",
                         path, lineno, offset);
        if (!rc && (rc = fn(im, line, len, err)))
            sp_err_prefix(err, "%s: line %zu (byte %ld): ", path, lineno, offset);
        offset += (long)n;
    }
    if (!rc && ferror(f))
        rc = sp_fail(err, SP_EUNAVAIL, "reading %s: %s", path, strerror(errno));
    free(line);
    fclose(f);
    return rc;
}

static int series_line(importer *im, const char *line, size_t len, sp_err *err)
{
    xfer_series xs;
    int rc = xfer_series_parse(line, len, im->a, &xs, err);
    for (size_t i = 0; !rc && i < im->nseries; i++)
        if (im->series[i].id == xs.id)
            rc = sp_fail(err, SP_EINVAL, "id: series %" PRId64 " listed twice", xs.id);
    if (!rc &&
        grow_array((void **)&im->series, &im->capseries, im->nseries + 1, sizeof *im->series))
        rc = sp_fail(err, SP_ENOMEM, "out of memory");
    if (!rc)
        im->series[im->nseries++] = xs;
    return rc;
}

static int flush_spans(importer *im, sp_err *err)
{
    sp_batch b = {.tenant = im->t->name, .arena = im->ba, .spans = im->spans, .nspans = im->nspans};
    int rc = im->st && im->nspans ? store_write(im->st, &b, err) : 0;
    if (rc)
        sp_err_prefix(err, "storing into %s: ", im->data_dir);
    im->nspans = 0;
    sp_arena_reset(im->ba);
    return rc;
}

static int span_line(importer *im, const char *line, size_t len, sp_err *err)
{
    sp_span sp;
    int rc = xfer_span_parse(line, len, im->ba, &sp, err);
    if (!rc && (sp.start_ns < (uint64_t)im->m.from_ns || sp.start_ns >= (uint64_t)im->m.until_ns))
        rc = sp_fail(err, SP_EINVAL, "start_ns: outside the manifest's range");
    if (!rc && grow_array((void **)&im->spans, &im->capspans, im->nspans + 1, sizeof sp))
        rc = sp_fail(err, SP_ENOMEM, "out of memory");
    if (!rc) {
        im->spans[im->nspans++] = sp;
        im->got[2]++;
    }
    if (!rc && im->nspans >= 4096)
        rc = flush_spans(im, err);
    return rc;
}

static int import_tenant(importer *im, const xfer_tenant *t, sp_err *err)
{
    im->t = t;
    im->nseries = im->nspans = 0;
    memset(im->got, 0, sizeof im->got);
    sp_arena_reset(im->a);
    sp_arena_reset(im->ba);
    im->batch = (sp_batch){.tenant = t->name, .arena = im->ba};
    snprintf(im->tdir, sizeof im->tdir, "%s/tenants/%s", im->dir, t->name);
    int rc = each_line(im, "series.jsonl", series_line, err);
    if (!rc)
        rc = each_line(im, "spans.jsonl", span_line, err);
    if (!rc)
        rc = flush_spans(im, err);
    if (!rc)
        rc = import_profiles(im, "profiles", err);
    if (!rc)
        rc = import_profiles(im, "span-profiles", err);
    uint64_t want[4] = {t->profiles, t->span_profiles, t->spans, t->series};
    uint64_t got[4] = {im->got[0], im->got[1], im->got[2], im->nseries};
    static const char *const what[4] = {"profile files", "span profile files", "spans", "series"};
    for (int k = 0; k < 4 && !rc; k++)
        if (want[k] != got[k])
            rc = sp_fail(err, SP_EINVAL,
                         "%s: the manifest says %" PRIu64 " %s for tenant %s, the directory has "
                         "%" PRIu64 " (an export cut short or changed since?)",
                         im->tdir, want[k], what[k], t->name, got[k]);
    return rc;
}

/* Every tenant of the manifest: checked (im->st NULL) or stored. */
static int import_all(importer *im, sp_err *err)
{
    int rc = 0;
    for (size_t i = 0; i < im->m.ntenants && !rc; i++)
        rc = import_tenant(im, &im->m.tenants[i], err);
    return rc;
}

static int read_manifest(importer *im, sp_err *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/manifest.json", im->dir);
    im->file.len = 0;
    int rc = read_file(path, MAX_TEXT_FILE, &im->file, err);
    if (rc == SP_ENOTFOUND)
        sp_err_prefix(err, "not an export directory (or an export cut short): ");
    if (!rc &&
        (rc = xfer_manifest_parse((const char *)im->file.data, im->file.len, im->a, &im->m, err)))
        sp_err_prefix(err, "%s: ", path);
    return rc;
}

/* Opens the store (taking the data directory's lock) and records the import, refusing an export
 * imported before. */
static int begin_import(importer *im, sp_err *err)
{
    store_options so = {.data_dir = im->data_dir, .retention_ns = -1, .retention_interval_ns = -1};
    int rc = store_open_sqlite(&im->st, &so, err);
    if (rc) {
        sp_err_prefix(err, "import needs the data directory to itself (stop the server first): ");
        return rc;
    }
    char state[200], now[40], set[120];
    rfc3339(query_now_ns(), now, sizeof now);
    snprintf(set, sizeof set, "started %s", now);
    rc = store_import_mark_begin(im->data_dir, im->m.id, set, state, sizeof state, err);
    if (!rc && !strncmp(state, "done", 4))
        rc = sp_fail(err, SP_EINVAL,
                     "export %s (%s) was imported into %s already (%s): importing it again would "
                     "count its values twice; nothing was written",
                     im->m.id, im->dir, im->data_dir, state);
    else if (!rc && state[0])
        rc = sp_fail(err, SP_EINVAL,
                     "an import of export %s into %s was interrupted (%s): part of it is stored; "
                     "import into a new --data-dir instead; nothing was written",
                     im->m.id, im->data_dir, state);
    return rc;
}

int admin_import(const char *data_dir, const char *dir, sp_err *err)
{
    importer im;
    memset(&im, 0, sizeof im);
    im.dir = dir;
    im.data_dir = data_dir;
    im.a = sp_arena_new(0);
    sp_arena *ma = sp_arena_new(0);
    im.ba = sp_arena_new(0);
    sp_buf_init(&im.file, 0);
    sp_buf_init(&im.raw, 0);
    int rc = im.a && ma && im.ba ? 0 : sp_fail(err, SP_ENOMEM, "out of memory");
    if (!rc) { /* the manifest lives in its own arena: tenants reset im.a */
        sp_arena *keep = im.a;
        im.a = ma;
        rc = read_manifest(&im, err);
        im.a = keep;
    }
    if (!rc)
        rc = import_all(&im, err); /* pass 1: check everything, write nothing */
    if (!rc)
        rc = begin_import(&im, err);
    if (!rc)
        rc = import_all(&im, err);
    if (!rc) {
        char now[40], state[120];
        rfc3339(query_now_ns(), now, sizeof now);
        snprintf(state, sizeof state, "done %s by spanprof %s", now, app_version());
        rc = store_import_mark_set(data_dir, im.m.id, state, err);
    }
    store_close(im.st);
    if (!rc) {
        uint64_t t[4] = {0};
        for (size_t i = 0; i < im.m.ntenants; i++) {
            t[0] += im.m.tenants[i].series;
            t[1] += im.m.tenants[i].profiles;
            t[2] += im.m.tenants[i].spans;
            t[3] += im.m.tenants[i].span_profiles;
        }
        printf("%s: imported export %s into %s: %zu tenant%s, %" PRIu64 " series, %" PRIu64
               " profile files, %" PRIu64 " spans, %" PRIu64 " span profile files\n",
               dir, im.m.id, data_dir, im.m.ntenants, im.m.ntenants == 1 ? "" : "s", t[0], t[1],
               t[2], t[3]);
    }
    free(im.series);
    free(im.spans);
    sp_buf_free(&im.file);
    sp_buf_free(&im.raw);
    sp_arena_free(im.a);
    sp_arena_free(ma);
    sp_arena_free(im.ba);
    return rc;
}
