#include "auth.h"

#include "../common/base64.h"

#include "../common/log.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define DIGEST_LEN       32        /* SHA-256 */
#define MAX_CRED_FILE    (1 << 20) /* a credential file is a few lines; refuse anything huge */
#define MAX_BASIC_DECODE 4096
#define REALM            "spanprof"

typedef struct {
    unsigned char (*d)[DIGEST_LEN];
    size_t n;
} digest_set;

typedef struct {
    digest_set bearer, basic;
} class_creds;

struct srv_auth {
    class_creds ingest, query, admin;
    int multitenancy_required;
};

/* How a refusal is written when the request is not gRPC: in the format the route's clients parse
 * errors in. */
typedef enum { STYLE_TEXT, STYLE_CONNECT, STYLE_OTLP_HTTP } reply_style;

static const struct rule {
    const char *path;
    int prefix;
    srv_auth_class cls;
    reply_style style;
} rules[] = {
    {"/ready", 0, SRV_AUTH_OPEN, STYLE_TEXT},
    {"/metrics", 0, SRV_AUTH_OPEN, STYLE_TEXT},
    {"/healthz", 0, SRV_AUTH_OPEN, STYLE_TEXT},
    {"/config", 0, SRV_AUTH_QUERY, STYLE_TEXT},   /* paths only, no secrets: still not public */
    {"/api/apps", 0, SRV_AUTH_QUERY, STYLE_TEXT}, /* Pyroscope's legacy application list */
    {"/opentelemetry.proto.collector.", 1, SRV_AUTH_INGEST, STYLE_TEXT},
    {"/v1development/profiles", 0, SRV_AUTH_INGEST, STYLE_OTLP_HTTP},
    {"/v1/traces", 0, SRV_AUTH_INGEST, STYLE_OTLP_HTTP},
    {"/ingest", 0, SRV_AUTH_INGEST, STYLE_TEXT},
    {"/pyroscope/ingest", 0, SRV_AUTH_INGEST, STYLE_TEXT},
    {"/push.v1.PusherService/", 1, SRV_AUTH_INGEST, STYLE_CONNECT},
    {"/api/v1/debuginfo/", 1, SRV_AUTH_INGEST, STYLE_TEXT},
    {"/querier.v1.QuerierService/", 1, SRV_AUTH_QUERY, STYLE_CONNECT},
    {"/render", 0, SRV_AUTH_QUERY, STYLE_CONNECT},
    {"/pyroscope/render", 0, SRV_AUTH_QUERY, STYLE_CONNECT},
    {"/pyroscope/render-diff", 0, SRV_AUTH_QUERY, STYLE_CONNECT},
    {"/settings.v1.SettingsService/", 1, SRV_AUTH_QUERY, STYLE_CONNECT},
    {"/pprof", 0, SRV_AUTH_QUERY, STYLE_CONNECT},
    {"/api/v1/admin/", 1, SRV_AUTH_ADMIN, STYLE_TEXT}, /* before /api/v1/: first match wins */
    {"/api/v1/", 1, SRV_AUTH_QUERY, STYLE_CONNECT},
};

/* Anything not in the table is a query path: fail closed for routes added later. */
static const struct rule default_rule = {"", 0, SRV_AUTH_QUERY, STYLE_TEXT};

static const struct rule *find_rule(const char *path)
{
    if (!path)
        return &default_rule;
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        const struct rule *r = &rules[i];
        if (r->prefix ? strncmp(path, r->path, strlen(r->path)) == 0 : strcmp(path, r->path) == 0)
            return r;
    }
    return &default_rule;
}

srv_auth_class srv_auth_classify(const char *path)
{
    return find_rule(path)->cls;
}

static const char *class_name(srv_auth_class c)
{
    return c == SRV_AUTH_INGEST  ? "ingest"
           : c == SRV_AUTH_QUERY ? "query"
           : c == SRV_AUTH_ADMIN ? "admin"
                                 : "open";
}

static int sha256(const void *p, size_t n, unsigned char out[DIGEST_LEN])
{
    unsigned int len = 0;
    return EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) == 1 && len == DIGEST_LEN ? 0 : -1;
}

static int digest_add(digest_set *s, const void *secret, size_t n)
{
    unsigned char(*d)[DIGEST_LEN] = realloc(s->d, (s->n + 1) * sizeof *d);
    if (!d)
        return SP_ENOMEM;
    s->d = d;
    return sha256(secret, n, s->d[s->n++]) ? SP_EINTERNAL : 0;
}

/* Compares against every entry, never stopping at a match, so the time taken depends on the
 * number of configured credentials only. */
static int digest_match(const digest_set *s, const void *secret, size_t n)
{
    unsigned char d[DIGEST_LEN];
    if (sha256(secret, n, d))
        return 0;
    int found = 0;
    for (size_t i = 0; i < s->n; i++)
        found |= CRYPTO_memcmp(s->d[i], d, DIGEST_LEN) == 0;
    OPENSSL_cleanse(d, sizeof d);
    return found;
}

static int read_secret_file(const char *path, char **out, size_t *len, sp_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return sp_fail(err, SP_EINVAL, "cannot read credential file %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077))
        sp_warn("msg=\"credential file is readable by other users; chmod 600 it\" file=\"%s\" "
                "mode=%03o",
                path, (unsigned)(st.st_mode & 0777));
    char *buf = malloc(MAX_CRED_FILE + 1);
    if (!buf) {
        fclose(f);
        return sp_fail(err, SP_ENOMEM, "out of memory reading %s", path);
    }
    size_t n = fread(buf, 1, MAX_CRED_FILE + 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || n > MAX_CRED_FILE) {
        OPENSSL_cleanse(buf, n);
        free(buf);
        return sp_fail(err, SP_EINVAL, "credential file %s: %s", path,
                       bad ? "read error" : "larger than 1 MiB");
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return 0;
}

/* One credential per line; empty lines and lines starting with '#' are skipped. Token lines are
 * trimmed of surrounding blanks; basic lines lose only a trailing CR (a password may end in a
 * space). Errors name the line, never its content. */
static int load_file(const char *path, int basic, digest_set *set, sp_err *err)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = read_secret_file(path, &buf, &len, err);
    if (rc)
        return rc;
    size_t added = 0, lineno = 0;
    for (char *line = buf; !rc && line < buf + len;) {
        char *nl = memchr(line, '\n', (size_t)(buf + len - line));
        char *end = nl ? nl : buf + len;
        char *next = nl ? nl + 1 : buf + len;
        lineno++;
        if (end > line && end[-1] == '\r')
            end--;
        if (!basic) {
            while (line < end && (*line == ' ' || *line == '\t'))
                line++;
            while (end > line && (end[-1] == ' ' || end[-1] == '\t'))
                end--;
        }
        if (end == line || *line == '#') {
            line = next;
            continue;
        }
        if (basic) {
            char *colon = memchr(line, ':', (size_t)(end - line));
            if (!colon || colon == line || colon + 1 == end)
                rc = sp_fail(err, SP_EINVAL,
                             "credential file %s line %zu: expected user:password with a "
                             "non-empty user and password",
                             path, lineno);
            for (char *p = line; !rc && p < end; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7f)
                    rc = sp_fail(err, SP_EINVAL,
                                 "credential file %s line %zu: control character in the line", path,
                                 lineno);
        } else {
            /* RFC 6750 section 2.1: a token is visible ASCII without spaces. */
            for (char *p = line; !rc && p < end; p++)
                if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
                    rc = sp_fail(err, SP_EINVAL,
                                 "credential file %s line %zu: a bearer token is visible ASCII "
                                 "without spaces",
                                 path, lineno);
        }
        if (!rc && (rc = digest_add(set, line, (size_t)(end - line))) != 0)
            sp_fail(err, rc, "cannot store the credentials of %s", path);
        added++;
        line = next;
    }
    OPENSSL_cleanse(buf, len);
    free(buf);
    if (!rc && added == 0)
        rc = sp_fail(err, SP_EINVAL, "credential file %s has no %s", path,
                     basic ? "user:password line" : "token");
    return rc;
}

static int load_env_token(const char *name, digest_set *set, sp_err *err)
{
    const char *v = getenv(name);
    if (!v)
        return 0;
    size_t b = 0, e = strlen(v);
    while (b < e && (v[b] == ' ' || v[b] == '\t' || v[b] == '\n' || v[b] == '\r'))
        b++;
    while (e > b && (v[e - 1] == ' ' || v[e - 1] == '\t' || v[e - 1] == '\n' || v[e - 1] == '\r'))
        e--;
    if (b == e)
        return 0;
    for (size_t i = b; i < e; i++)
        if ((unsigned char)v[i] <= 0x20 || (unsigned char)v[i] >= 0x7f)
            return sp_fail(err, SP_EINVAL, "%s: a bearer token is visible ASCII without spaces",
                           name);
    return digest_add(set, v + b, e - b) ? sp_fail(err, SP_ENOMEM, "out of memory") : 0;
}

static void creds_free(class_creds *c)
{
    free(c->bearer.d);
    free(c->basic.d);
}

static const char *nonempty(const char *s)
{
    return s && *s ? s : NULL;
}

int srv_auth_new(srv_auth **out, const srv_options *cfg, sp_err *err)
{
    *out = NULL;
    srv_auth *a = calloc(1, sizeof *a);
    if (!a)
        return sp_fail(err, SP_ENOMEM, "out of memory");
    a->multitenancy_required = cfg->multitenancy_required;
    const struct {
        const char *path;
        int basic;
        digest_set *set;
    } files[] = {
        {nonempty(cfg->ingest_auth_token_file), 0, &a->ingest.bearer},
        {nonempty(cfg->ingest_basic_auth_file), 1, &a->ingest.basic},
        {nonempty(cfg->query_auth_token_file), 0, &a->query.bearer},
        {nonempty(cfg->query_basic_auth_file), 1, &a->query.basic},
        {nonempty(cfg->admin_auth_token_file), 0, &a->admin.bearer},
    };
    int rc = 0;
    for (size_t i = 0; !rc && i < sizeof files / sizeof files[0]; i++)
        if (files[i].path)
            rc = load_file(files[i].path, files[i].basic, files[i].set, err);
    if (!rc)
        rc = load_env_token("SPANPROF_INGEST_AUTH_TOKEN", &a->ingest.bearer, err);
    if (!rc)
        rc = load_env_token("SPANPROF_QUERY_AUTH_TOKEN", &a->query.bearer, err);
    if (!rc)
        rc = load_env_token("SPANPROF_ADMIN_AUTH_TOKEN", &a->admin.bearer, err);
    if (rc) {
        srv_auth_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

void srv_auth_free(srv_auth *a)
{
    if (!a)
        return;
    creds_free(&a->ingest);
    creds_free(&a->query);
    creds_free(&a->admin);
    free(a);
}

/* The admin class without a credential of its own: refused once anything else is protected
 * (fail closed), open only on a server that is open altogether. */
static int admin_closed(const srv_auth *a)
{
    return a->ingest.bearer.n || a->ingest.basic.n || a->query.bearer.n || a->query.basic.n ||
           a->multitenancy_required;
}

static const char *schemes(const class_creds *c)
{
    if (c->bearer.n && c->basic.n)
        return "bearer,basic";
    return c->bearer.n ? "bearer" : c->basic.n ? "basic" : "none";
}

void srv_auth_describe(const srv_auth *a, char *out, size_t outsz)
{
    static const class_creds none;
    snprintf(out, outsz, "ingest=%s query=%s admin=%s multitenancy_required=%d",
             schemes(a ? &a->ingest : &none), schemes(a ? &a->query : &none),
             a && !a->admin.bearer.n && admin_closed(a) ? "refused"
                                                        : schemes(a ? &a->admin : &none),
             a ? a->multitenancy_required : 0);
}

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static int check_credentials(const class_creds *c, srv_auth_class cls, const char *h, sp_err *err)
{
    const char *accepted = c->bearer.n && c->basic.n ? "a Bearer token or Basic credentials"
                           : c->bearer.n             ? "a Bearer token"
                                                     : "Basic credentials";
    if (!h)
        return sp_fail(err, SP_EAUTH,
                       "authentication required: %s requests need an Authorization header with %s",
                       class_name(cls), accepted);
    while (is_ows(*h))
        h++;
    size_t slen = 0;
    while (h[slen] && !is_ows(h[slen]))
        slen++;
    const char *cred = h + slen;
    while (is_ows(*cred))
        cred++;
    size_t clen = strlen(cred);
    while (clen && is_ows(cred[clen - 1]))
        clen--;
    /* Auth schemes are case-insensitive (RFC 9110 section 11.1). */
    if (slen == 6 && strncasecmp(h, "bearer", 6) == 0 && c->bearer.n) {
        if (clen && digest_match(&c->bearer, cred, clen))
            return 0;
        return sp_fail(err, SP_EAUTH, "invalid bearer token for %s requests", class_name(cls));
    }
    if (slen == 5 && strncasecmp(h, "basic", 5) == 0 && c->basic.n) {
        uint8_t raw[MAX_BASIC_DECODE];
        size_t rlen = 0;
        int ok = clen && sp_base64_decode_buf(cred, clen, raw, sizeof raw, &rlen) == 0 &&
                 digest_match(&c->basic, raw, rlen);
        OPENSSL_cleanse(raw, sizeof raw);
        if (ok)
            return 0;
        return sp_fail(err, SP_EAUTH, "invalid username or password for %s requests",
                       class_name(cls));
    }
    return sp_fail(err, SP_EAUTH, "unsupported Authorization scheme: %s requests need %s",
                   class_name(cls), accepted);
}

static int is_tenant_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '!' ||
           c == '-' || c == '_' || c == '.' || c == '*' || c == '\'' || c == '(' || c == ')';
}

int srv_tenant_validate(const char *id, sp_err *err)
{
    size_t n = strlen(id);
    if (n == 0)
        return sp_fail(err, SP_EAUTH, "no org id: X-Scope-OrgID is empty");
    /* The id is not quoted back: it may be anything a client put in a header. */
    for (size_t i = 0; i < n; i++)
        if (!is_tenant_char((unsigned char)id[i]))
            return sp_fail(err, SP_EAUTH,
                           "X-Scope-OrgID has an unsupported character (byte 0x%02x at offset "
                           "%zu); tenant ids are letters, digits and ! - _ . * ' ( )",
                           (unsigned char)id[i], i);
    if (n > SRV_TENANT_MAX_LENGTH)
        return sp_fail(err, SP_EAUTH, "X-Scope-OrgID is too long: %zu characters, at most %d", n,
                       SRV_TENANT_MAX_LENGTH);
    if (strcmp(id, ".") == 0 || strcmp(id, "..") == 0)
        return sp_fail(err, SP_EAUTH, "X-Scope-OrgID must not be \".\" or \"..\"");
    return 0;
}

static int check_tenant(const srv_auth *a, const srv_request *req, sp_err *err)
{
    const char *first = NULL;
    for (size_t i = 0; i < req->nheaders; i++) {
        const char *v = req->headers[i].value;
        if (strcmp(req->headers[i].name, "x-scope-orgid") != 0 || !v[0])
            continue;
        int rc = srv_tenant_validate(v, err);
        if (rc)
            return rc;
        /* A proxy that adds its own header in front of the client's must not be overridden. */
        if (first && strcmp(first, v) != 0)
            return sp_fail(err, SP_EAUTH,
                           "X-Scope-OrgID is given more than once with "
                           "different values");
        first = v;
    }
    if (!first && a && a->multitenancy_required)
        return sp_fail(err, SP_EAUTH,
                       "no org id: this server requires the X-Scope-OrgID header "
                       "(--multitenancy-required)");
    return 0;
}

static const class_creds *creds_of(const srv_auth *a, srv_auth_class cls)
{
    return cls == SRV_AUTH_INGEST ? &a->ingest : cls == SRV_AUTH_ADMIN ? &a->admin : &a->query;
}

int srv_auth_check(const srv_auth *a, const srv_request *req, sp_err *err)
{
    srv_auth_class cls = srv_auth_classify(req->path);
    if (cls == SRV_AUTH_OPEN)
        return 0;
    if (a) {
        const class_creds *c = creds_of(a, cls);
        if (cls == SRV_AUTH_ADMIN && !c->bearer.n && admin_closed(a))
            return sp_fail(err, SP_EAUTH,
                           "admin requests are refused: this server has no admin credential "
                           "(--admin-auth-token-file) while others are configured");
        if (c->bearer.n || c->basic.n) {
            int rc = check_credentials(c, cls, srv_header_get(req, "authorization"), err);
            if (rc)
                return rc;
        }
    }
    if (cls == SRV_AUTH_ADMIN)
        return 0; /* store-wide operations: no tenant to name */
    return check_tenant(a, req, err);
}

/* google.rpc.Status{code = 1, message = 2}, the OTLP/HTTP error body. */
static void rpc_status(sp_buf *b, int code, const char *msg)
{
    size_t n = strlen(msg);
    uint8_t head[2] = {0x08, (uint8_t)code};
    sp_buf_append(b, head, 2);
    uint8_t tag = 0x12, len[10];
    size_t k = 0;
    for (size_t v = n; k == 0 || v; v >>= 7)
        len[k++] = (uint8_t)((v & 0x7f) | (v >> 7 ? 0x80 : 0));
    sp_buf_append(b, &tag, 1);
    sp_buf_append(b, len, k);
    sp_buf_append(b, msg, n);
}

/* The same Status as OTLP/HTTP JSON writes it, for requests that came as application/json. */
static void rpc_status_json(sp_buf *b, int code, const char *msg)
{
    sp_buf_printf(b, "{\"code\":%d,\"message\":\"", code);
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
        if (*p == '"' || *p == '\\')
            sp_buf_printf(b, "\\%c", *p);
        else if (*p < 0x20)
            sp_buf_printf(b, "\\u%04x", *p);
        else
            sp_buf_append(b, p, 1);
    }
    sp_buf_append(b, "\"}", 2);
}

static int is_json(const srv_request *req)
{
    const char *ct = srv_header_get(req, "content-type");
    if (!ct)
        return 0;
    while (*ct == ' ')
        ct++;
    return strncasecmp(ct, "application/json", 16) == 0 &&
           (ct[16] == 0 || ct[16] == ';' || ct[16] == ' ');
}

void srv_auth_refuse(const srv_auth *a, const srv_request *req, srv_response *resp,
                     const sp_err *err)
{
    const struct rule *r = find_rule(req->path);
    const char *msg = err && err->msg[0] ? err->msg : "unauthenticated";
    if (srv_request_is_grpc(req)) {
        srv_response_grpc(resp, GRPC_UNAUTHENTICATED, msg, NULL, 0);
        return;
    }
    /* RFC 9110 section 15.5.2: a 401 carries a challenge for each scheme that would work. */
    if (a && r->cls != SRV_AUTH_OPEN) {
        const class_creds *c = creds_of(a, r->cls);
        if (c->bearer.n)
            srv_response_header(resp, "www-authenticate", "Bearer realm=\"" REALM "\"");
        if (c->basic.n)
            srv_response_header(resp, "www-authenticate",
                                "Basic realm=\"" REALM "\", charset=\"UTF-8\"");
    }
    sp_err e;
    sp_fail(&e, SP_EAUTH, "%s", msg);
    if (r->style == STYLE_CONNECT) {
        srv_response_connect_error(resp, &e);
    } else if (r->style == STYLE_OTLP_HTTP) {
        sp_buf b;
        sp_buf_init(&b, 0);
        int json = is_json(req);
        if (json)
            rpc_status_json(&b, GRPC_UNAUTHENTICATED, msg);
        else
            rpc_status(&b, GRPC_UNAUTHENTICATED, msg);
        srv_response_send(resp, 401, json ? "application/json" : "application/x-protobuf", b.data,
                          b.len);
        sp_buf_free(&b);
    } else {
        srv_response_error(resp, req, &e);
    }
}
