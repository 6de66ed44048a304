/* query_register(): fills the one context every query handler reads, then adds each concern's
 * routes (see query.h). */
#include "query.h"
#include "../common/metrics.h"
#include "api_find.h"
#include "api_v1.h"
#include "flamegraph.h"
#include "page.h"
#include "querier.h"
#include "render.h"

#define DEFAULT_MAX_MSG (4u << 20)
#define DEFAULT_BUDGET  ((size_t)1 << 30)

/* One registration per process: the handlers' ud points here. */
static query_ctx ctx;

int query_register(srv_router *r, store *s, const query_config *cfg)
{
    query_config none = {0};
    if (!cfg)
        cfg = &none;
    sp_metrics_gauge_add("span_attributes_damaged_total", 0); /* exported from start */
    ctx.store = s;
    ctx.max_msg = cfg->max_recv_msg_size ? cfg->max_recv_msg_size : DEFAULT_MAX_MSG;
    ctx.budget = cfg->query_budget ? cfg->query_budget : DEFAULT_BUDGET;
    ctx.max_nodes_default =
        cfg->max_nodes_default > 0 ? cfg->max_nodes_default : QUERY_MAX_NODES_DEFAULT;
    ctx.max_nodes_max = cfg->max_nodes_max > 0 ? cfg->max_nodes_max : QUERY_MAX_NODES_MAX;
    ctx.span_min_duration_ns = cfg->span_min_duration_ns;
    int rc = query_querier_register(r, &ctx);
    if (!rc)
        rc = query_render_register(r, &ctx);
    if (!rc)
        rc = query_api_v1_register(r, &ctx);
    if (!rc)
        rc = query_api_find_register(r, &ctx);
    if (!rc)
        rc = query_page_register(r);
    return rc;
}
