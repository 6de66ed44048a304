/* spanprof query: the connection to the server (see client_internal.h): the credentials, the
 * libcurl requests and their answers. Invariant 1 of client.c lives here: a credential goes to
 * libcurl and nowhere else, and messages show the URL without its userinfo. */
#include "client_internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_ANSWER (512u << 20) /* a span's pprof is a few MiB; refuse a runaway answer */

static void wipe(void *p, size_t n)
{
    volatile unsigned char *v = p;
    while (n--)
        *v++ = 0;
}

/* The first credential line of a file, as the server reads its own files (server/auth.c): blank
 * lines and lines starting with '#' skipped, a token trimmed, a user:password line losing only
 * its CR. Messages name the file, never what is in it. */
static int read_secret(const char *path, int basic, char *out, size_t cap, sp_err *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return sp_fail(err, SP_EINVAL, "cannot read %s: %s", path, strerror(errno));
    int rc = SP_ENOTFOUND;
    char line[MAX_SECRET];
    while (rc == SP_ENOTFOUND && fgets(line, sizeof line, f)) {
        size_t n = strcspn(line, "\n");
        if (!line[n] && !feof(f)) {
            rc = sp_fail(err, SP_EINVAL, "%s: a line longer than %d bytes", path, MAX_SECRET - 2);
            break;
        }
        line[n] = 0;
        if (n && line[n - 1] == '\r')
            line[--n] = 0;
        char *s = line;
        if (!basic) {
            while (*s == ' ' || *s == '\t')
                s++;
            while (n && (line[n - 1] == ' ' || line[n - 1] == '\t'))
                line[--n] = 0;
        }
        if (!*s || *s == '#')
            continue;
        rc = 0;
        char *colon = strchr(s, ':');
        if (basic && (!colon || colon == s || !colon[1]))
            rc = sp_fail(err, SP_EINVAL, "%s: expected user:password on its first line", path);
        for (const unsigned char *p = (const unsigned char *)s; !rc && *p; p++)
            if (basic ? *p < 0x20 || *p == 0x7f : *p <= 0x20 || *p >= 0x7f)
                rc = sp_fail(err, SP_EINVAL, "%s: %s", path,
                             basic ? "control character in the credentials"
                                   : "a bearer token is visible ASCII without spaces");
        if (!rc)
            snprintf(out, cap, "%s", s);
    }
    if (rc == SP_ENOTFOUND)
        rc = sp_fail(err, SP_EINVAL, "%s holds no credential line", path);
    wipe(line, sizeof line);
    fclose(f);
    return rc;
}

/* The URL with "user:password@" left out, for messages. */
static void redact_url(const char *url, char *out, size_t cap)
{
    const char *host = strstr(url, "://");
    host = host ? host + 3 : url;
    const char *end = host + strcspn(host, "/?#");
    const char *at = memchr(host, '@', (size_t)(end - host));
    for (const char *p = host; at && p < end; p++) /* the last '@' of the authority */
        if (*p == '@')
            at = p;
    if (at)
        snprintf(out, cap, "%.*s%s", (int)(host - url), url, at + 1);
    else
        snprintf(out, cap, "%s", url);
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    answer *ans = ud;
    if (sp_buf_append(&ans->body, p, size * n) != 0) {
        ans->too_big = 1;
        return 0;
    }
    return size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    answer *ans = ud;
    size_t len = size * n;
    char line[256];
    if (len >= sizeof line)
        return len;
    memcpy(line, p, len);
    line[len] = 0;
    line[strcspn(line, "\r\n")] = 0;
    if (strncasecmp(line, "x-spanprof-unresolved-frames:", 29) == 0)
        ans->unresolved = strtol(line + 29, NULL, 10);
    return len;
}

static int add_header(conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int add_header(conn *c, const char *fmt, ...)
{
    char line[MAX_SECRET + 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    struct curl_slist *n = curl_slist_append(c->hdr, line);
    wipe(line, sizeof line);
    if (!n)
        return -1;
    c->hdr = n;
    return 0;
}

int conn_open(conn *c, const cmdline *cl, sp_err *err)
{
    const char *url = cl->val[F_URL];
    const char *env = getenv("SPANPROF_URL");
    if (!url)
        url = env && *env ? env : DEFAULT_URL;
    size_t n = strlen(url);
    while (n && url[n - 1] == '/')
        n--;
    if (n >= sizeof c->base)
        return sp_fail(err, SP_EINVAL, "the URL is longer than %zu bytes", sizeof c->base - 1);
    snprintf(c->base, sizeof c->base, "%.*s", (int)n, url);
    redact_url(c->base, c->shown, sizeof c->shown);
    if (strncasecmp(c->base, "http://", 7) != 0 && strncasecmp(c->base, "https://", 8) != 0)
        return sp_fail(err, SP_EINVAL, "--url must start with http:// or https://, not \"%.200s\"",
                       c->shown);
    c->timeout_ms = cl->timeout_ms;
    const char *tenant = cl->val[F_TENANT];
    for (const unsigned char *p = (const unsigned char *)tenant; p && *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return sp_fail(err, SP_EINVAL, "--tenant holds a control character");
    if (tenant && !*tenant)
        return sp_fail(err, SP_EINVAL, "--tenant is empty");
    int rc = 0;
    const char *env_token = getenv("SPANPROF_QUERY_TOKEN");
    if (cl->val[F_TOKEN_FILE] || cl->val[F_BASIC_FILE])
        rc = read_secret(cl->val[F_TOKEN_FILE] ? cl->val[F_TOKEN_FILE] : cl->val[F_BASIC_FILE],
                         !cl->val[F_TOKEN_FILE], c->secret, sizeof c->secret, err);
    else if (env_token && *env_token) {
        size_t b = strspn(env_token, " \t\r\n"), e = strlen(env_token);
        while (e > b && strchr(" \t\r\n", env_token[e - 1]))
            e--;
        for (size_t i = b; i < e && !rc; i++)
            if ((unsigned char)env_token[i] <= 0x20 || (unsigned char)env_token[i] >= 0x7f)
                rc = sp_fail(err, SP_EINVAL,
                             "$SPANPROF_QUERY_TOKEN: a bearer token is visible ASCII without "
                             "spaces");
        if (e - b >= sizeof c->secret)
            rc = sp_fail(err, SP_EINVAL, "$SPANPROF_QUERY_TOKEN is too long");
        if (!rc)
            snprintf(c->secret, sizeof c->secret, "%.*s", (int)(e - b), env_token + b);
    }
    if (rc)
        return rc;
    c->has_creds = c->secret[0] != 0 || strcmp(c->base, c->shown) != 0; /* or user:pw@ */
    c->curl = curl_easy_init();
    if (!c->curl)
        return sp_fail(err, SP_EINTERNAL, "libcurl did not initialise");
    int hrc = 0;
    if (tenant)
        hrc |= add_header(c, "X-Scope-OrgID: %s", tenant);
    if (c->secret[0] && !cl->val[F_BASIC_FILE])
        hrc |= add_header(c, "Authorization: Bearer %s", c->secret);
    if (hrc)
        return sp_fail(err, SP_ENOMEM, "out of memory");
    if (c->secret[0] && cl->val[F_BASIC_FILE]) {
        char *colon = strchr(c->secret, ':');
        *colon = 0;
        curl_easy_setopt(c->curl, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(c->curl, CURLOPT_USERNAME, c->secret);
        curl_easy_setopt(c->curl, CURLOPT_PASSWORD, colon + 1);
    }
    wipe(c->secret, sizeof c->secret);
    if (cl->val[F_CA_FILE])
        curl_easy_setopt(c->curl, CURLOPT_CAINFO, cl->val[F_CA_FILE]);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, c->hdr);
    curl_easy_setopt(c->curl, CURLOPT_USERAGENT, "spanprof-query/1");
    curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS,
                     c->timeout_ms < 10000 ? c->timeout_ms : 10000L);
    curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, on_header);
    return 0;
}

void conn_close(conn *c)
{
    for (struct curl_slist *l = c->hdr; l; l = l->next)
        wipe(l->data, strlen(l->data));
    curl_slist_free_all(c->hdr);
    if (c->curl)
        curl_easy_cleanup(c->curl);
    wipe(c->secret, sizeof c->secret);
}

/* The message of an error answer: Connect JSON's "message", else the first line of the body. */
static void server_message(const answer *ans, char *out, size_t cap)
{
    const char *body = (const char *)ans->body.data;
    size_t len = ans->body.len;
    snprintf(out, cap, "no message");
    json_t *doc = len ? json_loadb(body, len, 0, NULL) : NULL;
    const char *m = json_string_value(json_object_get(doc, "message"));
    if (m) {
        len = strlen(m);
        body = m;
    } else {
        while (len && isspace((unsigned char)*body))
            body++, len--;
        len = strcspn(body, "\r\n") < len ? strcspn(body, "\r\n") : len;
    }
    if (len) {
        size_t k = len < cap - 1 ? len : cap - 1;
        for (size_t i = 0; i < k; i++)
            out[i] = (unsigned char)body[i] < 0x20 || body[i] == 0x7f ? '?' : body[i];
        out[k] = 0;
    }
    json_decref(doc);
}

/* GET base+path. 0 for a 200, else the failure as an SP_E* code (exit_status() maps them) with
 * the server's message: SP_ENOTFOUND (404), SP_EINVAL (400), SP_EAUTH (401, 403), SP_EDEADLINE
 * (no answer within --timeout), SP_EUNAVAIL (unreachable, or any other status), SP_ETOOBIG. */
int http_get(conn *c, const char *path, answer *ans, sp_err *err)
{
    sp_buf url;
    sp_buf_init(&url, 0);
    memset(ans, 0, sizeof *ans);
    sp_buf_init(&ans->body, MAX_ANSWER);
    if (sp_buf_printf(&url, "%s%s", c->base, path) || sp_buf_append(&url, "", 1)) {
        sp_buf_free(&url);
        return sp_fail(err, SP_ENOMEM, "out of memory");
    }
    c->errbuf[0] = 0;
    curl_easy_setopt(c->curl, CURLOPT_URL, (const char *)url.data);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, ans);
    curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, ans);
    CURLcode cc = curl_easy_perform(c->curl);
    wipe(url.data, url.len); /* a URL with userinfo */
    sp_buf_free(&url);
    if (ans->too_big)
        return sp_fail(err, SP_ETOOBIG, "the answer from %s is larger than %u MiB", c->shown,
                       MAX_ANSWER >> 20);
    if (cc == CURLE_OPERATION_TIMEDOUT)
        return sp_fail(err, SP_EDEADLINE, "%s did not answer within %ld ms (--timeout)", c->shown,
                       c->timeout_ms);
    if (cc != CURLE_OK)
        return sp_fail(err, SP_EUNAVAIL, "cannot reach %s: %s", c->shown,
                       c->errbuf[0] ? c->errbuf : curl_easy_strerror(cc));
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &ans->status);
    if (sp_buf_append(&ans->body, "", 1))
        return sp_fail(err, SP_ETOOBIG, "the answer is too large");
    ans->body.len--; /* the NUL stays behind the bytes */
    if (ans->status == 200)
        return 0;
    char msg[400];
    server_message(ans, msg, sizeof msg);
    switch (ans->status) {
    case 404:
        return sp_fail(err, SP_ENOTFOUND, "%s", msg);
    case 400:
        return sp_fail(err, SP_EINVAL, "the server refused the request: %s", msg);
    case 401:
    case 403:
        return sp_fail(err, SP_EAUTH, "%s refused the request (HTTP %ld): %s%s", c->shown,
                       ans->status, msg,
                       c->has_creds ? ""
                                    : " (give --token-file, --basic-auth-file or "
                                      "$SPANPROF_QUERY_TOKEN)");
    default:
        return sp_fail(err, SP_EUNAVAIL, "%s answered HTTP %ld: %s", c->shown, ans->status, msg);
    }
}

int get_json(conn *c, const char *path, answer *ans, json_t **doc, sp_err *err)
{
    *doc = NULL;
    int rc = http_get(c, path, ans, err);
    if (rc)
        return rc;
    json_error_t je;
    *doc = json_loadb((const char *)ans->body.data, ans->body.len, 0, &je);
    if (!*doc || !json_is_object(*doc))
        return sp_fail(err, SP_EUNAVAIL,
                       "the answer of %s%.200s is not a JSON object (%s); is --url a spanprof "
                       "server?",
                       c->shown, path, *doc ? "another JSON value" : je.text);
    return 0;
}
