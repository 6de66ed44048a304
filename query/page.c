/* GET / and GET /ui: the page from page.html, embedded at build time (query/embed.cmake). */
#include "page.h"
#include "params.h"

#include <string.h>

static void handle_page(srv_request *req, srv_response *resp, void *ud)
{
    /* The page talks only to its own origin; nothing is loaded from elsewhere. data: images:
     * its empty icon (<link rel="icon" href="data:,">), so the browser asks for no favicon. */
    srv_response_header(resp, "content-security-policy",
                        "default-src 'self'; script-src 'unsafe-inline'; style-src "
                        "'unsafe-inline'; img-src 'self' blob: data:");
    srv_response_header(resp, "cache-control", "no-cache");
    srv_response_send(resp, 200, "text/html; charset=utf-8", query_page_html,
                      strlen(query_page_html));
}

/* /ui/span/<16 hex>[?type=&tenant=] → the page with the span filled in. The redirect is
 * relative, so it also works behind a proxy that serves spanprof under a path prefix. */
static void handle_span_page(srv_request *req, srv_response *resp, void *ud)
{
    (void)ud;
    const char *hex = req->path + strlen("/ui/span/");
    uint8_t id[8];
    sp_err err = {0};
    size_t n = strlen(hex);
    char text[17] = {0};
    if (n && hex[n - 1] == '/')
        n--;
    if (n >= sizeof text) {
        query_hex_id(hex, 8, "span id", id, &err);
    } else {
        memcpy(text, hex, n);
        query_hex_id(text, 8, "span id", id, &err);
    }
    if (err.code) {
        srv_response_connect_error(resp, &err);
        return;
    }
    sp_buf loc;
    sp_buf_init(&loc, 0);
    int rc = sp_buf_printf(&loc, "%s../ui?span_id=%s", n < strlen(hex) ? "../../" : "../", text);
    if (!rc && req->query && *req->query)
        rc = sp_buf_printf(&loc, "&%.4000s", req->query);
    if (!rc)
        rc = sp_buf_append(&loc, "", 1);
    if (rc) {
        sp_fail(&err, SP_ETOOBIG, "request too large");
        srv_response_connect_error(resp, &err);
    } else {
        srv_response_header(resp, "location", (const char *)loc.data);
        srv_response_send(resp, 302, "text/plain; charset=utf-8", "", 0);
    }
    sp_buf_free(&loc);
}

int query_page_register(srv_router *r)
{
    int rc = srv_router_add(r, "GET", "/", SRV_INLINE, "query_ui", handle_page, NULL);
    if (!rc)
        rc = srv_router_add(r, "GET", "/ui", SRV_INLINE, "query_ui", handle_page, NULL);
    if (!rc)
        rc = srv_router_add(r, "GET", "/ui/span/*", SRV_INLINE, "query_ui", handle_span_page, NULL);
    return rc;
}
