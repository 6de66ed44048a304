/* libFuzzer target: the export directory's text files (app/xfer_format.c), which spanprof admin
 * import reads from disk: manifest.json, series.jsonl lines and spans.jsonl lines.
 * Input: the first byte picks the parser, the rest is the text. Whatever parses is written back
 * and must parse again to the same values (what import stores is what export wrote). */
#include "app/xfer_format.h"

#include <stdint.h>
#include <string.h>
#include "fuzz_check.h"

static void manifest(const char *p, size_t n, sp_arena *a)
{
    xfer_manifest m, back;
    sp_err err = {0};
    if (xfer_manifest_parse(p, n, a, &m, &err) != 0) {
        CHECK(err.msg[0]);
        return;
    }
    sp_buf b;
    sp_buf_init(&b, 0);
    CHECK(xfer_manifest_write(&m, &b) == 0);
    CHECK(xfer_manifest_parse((const char *)b.data, b.len, a, &back, &err) == 0);
    CHECK(back.ntenants == m.ntenants && back.from_ns == m.from_ns && back.until_ns == m.until_ns &&
          !strcmp(back.id, m.id));
    for (size_t i = 0; i < m.ntenants; i++)
        CHECK(!strcmp(back.tenants[i].name, m.tenants[i].name) &&
              back.tenants[i].spans == m.tenants[i].spans);
    sp_buf_free(&b);
}

static void series(const char *p, size_t n, sp_arena *a)
{
    xfer_series s, back;
    sp_err err = {0};
    if (xfer_series_parse(p, n, a, &s, &err) != 0)
        return;
    sp_buf b;
    sp_buf_init(&b, 0);
    CHECK(xfer_series_write(&s, &b) == 0 && b.len && b.data[b.len - 1] == '\n');
    CHECK(xfer_series_parse((const char *)b.data, b.len - 1, a, &back, &err) == 0);
    CHECK(back.id == s.id && back.nlabels == s.nlabels && !strcmp(back.type_id, s.type_id));
    for (uint32_t i = 0; i < s.nlabels; i++) {
        CHECK(!strcmp(back.labels[i].name, s.labels[i].name));
        CHECK(!strcmp(back.labels[i].value, s.labels[i].value));
        CHECK(i == 0 || strcmp(s.labels[i - 1].name, s.labels[i].name) < 0);
    }
    sp_buf_free(&b);
}

static void span(const char *p, size_t n, sp_arena *a)
{
    sp_span s, back;
    sp_err err = {0};
    if (xfer_span_parse(p, n, a, &s, &err) != 0)
        return;
    CHECK(s.end_ns >= s.start_ns);
    sp_buf b;
    sp_buf_init(&b, 0);
    CHECK(xfer_span_write(&s, &b) == 0 && b.len);
    CHECK(xfer_span_parse((const char *)b.data, b.len - 1, a, &back, &err) == 0);
    CHECK(!memcmp(back.span_id, s.span_id, 8) && !memcmp(back.trace_id, s.trace_id, 16) &&
          !memcmp(back.parent_span_id, s.parent_span_id, 8) && back.start_ns == s.start_ns &&
          back.end_ns == s.end_ns && back.pid == s.pid && back.tid == s.tid &&
          !strcmp(back.name, s.name) && !strcmp(back.service, s.service));
    sp_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    sp_arena *a = sp_arena_new(64u << 20);
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] % 3) {
    case 0:
        manifest(p, n, a);
        break;
    case 1:
        series(p, n, a);
        break;
    default:
        span(p, n, a);
        break;
    }
    sp_arena_free(a);
    return 0;
}
