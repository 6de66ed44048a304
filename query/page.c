/* GET / and GET /ui: the page from page.html, embedded at build time (query/embed.cmake). */
#include "page.h"

#include <string.h>

static void handle_page(srv_request *req, srv_response *resp, void *ud)
{
    /* The page talks only to its own origin; nothing is loaded from elsewhere. */
    srv_response_header(resp, "content-security-policy",
                        "default-src 'self'; script-src 'unsafe-inline'; style-src "
                        "'unsafe-inline'; img-src 'self' blob:");
    srv_response_header(resp, "cache-control", "no-cache");
    srv_response_send(resp, 200, "text/html; charset=utf-8", query_page_html,
                      strlen(query_page_html));
}

int query_page_register(srv_router *r)
{
    int rc = srv_router_add(r, "GET", "/", SRV_INLINE, "query_ui", handle_page, NULL);
    if (!rc)
        rc = srv_router_add(r, "GET", "/ui", SRV_INLINE, "query_ui", handle_page, NULL);
    return rc;
}
