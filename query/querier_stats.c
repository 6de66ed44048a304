/* querier.v1.QuerierService/GetProfileStats and /AnalyzeQuery: what the Profiles Drilldown app
 * asks before anything else (whether any data arrived, else it shows its onboarding page) and
 * for its query-cost tooltip. */
#include "querier_internal.h"

#include <stdio.h>
#include <string.h>

#define NS_PER_MS 1000000LL

/* Pyroscope's v2 read path answers an empty message without data, else the first and last
 * profile times in ms. spanprof's times are the starts of its first and last 10 s buckets. */
int qr_get_profile_stats(const query_ctx *c, const srv_request *req, const ProtobufCMessage *in,
                         sp_arena *a, ProtobufCMessage **out, sp_err *err)
{
    (void)in;
    store_profile_stats st;
    int rc = store_get_profile_stats(c->store, req->tenant, &st, err);
    if (rc)
        return rc;
    Types__V1__GetProfileStatsResponse *resp =
        NEW(a, Types__V1__GetProfileStatsResponse, TYPES__V1__GET_PROFILE_STATS_RESPONSE__INIT);
    if (!resp)
        return qr_nomem(err);
    if (st.data_ingested) {
        resp->data_ingested = 1;
        resp->oldest_profile_time = st.oldest_ns / NS_PER_MS;
        resp->newest_profile_time = st.newest_ns / NS_PER_MS;
    }
    *out = &resp->base;
    return 0;
}

/* One scope, "spanprof (SQLite)": the store is one file on one machine. Pyroscope's scopes are
 * its ingesters and store-gateways; its "profiles" are ingested profiles, spanprof's the (series,
 * 10 s bucket) pairs it would read; index and symbol bytes are not counted separately. */
int qr_analyze_query(const query_ctx *c, const srv_request *req, const ProtobufCMessage *in,
                     sp_arena *a, ProtobufCMessage **out, sp_err *err)
{
    const Querier__V1__AnalyzeQueryRequest *r = (const void *)in;
    store_selector sel;
    query_type type;
    int rc = query_selector_parse(r->query, "query", a, &sel, err);
    if (!rc && sel.type_id)
        rc = query_type_parse(sel.type_id, "the profile type of query", 1, a, &type, err);
    if (rc)
        return rc;
    store_query q = {.tenant = req->tenant,
                     .type_id = sel.type_id ? type.id : NULL,
                     .matchers = sel.matchers,
                     .nmatchers = sel.nmatchers,
                     .start_ns = query_start_ns(r->start),
                     .end_ns = query_end_ns(r->end)};
    store_query_impact im;
    if ((rc = store_analyze_query(c->store, &q, &im, err))) {
        if (rc == SP_EINVAL)
            sp_err_prefix(err, "query: ");
        return rc;
    }
    Querier__V1__AnalyzeQueryResponse *resp =
        NEW(a, Querier__V1__AnalyzeQueryResponse, QUERIER__V1__ANALYZE_QUERY_RESPONSE__INIT);
    Querier__V1__QueryScope *scope =
        NEW(a, Querier__V1__QueryScope, QUERIER__V1__QUERY_SCOPE__INIT);
    Querier__V1__QueryImpact *impact =
        NEW(a, Querier__V1__QueryImpact, QUERIER__V1__QUERY_IMPACT__INIT);
    Querier__V1__QueryScope **scopes = sp_arena_alloc(a, sizeof *scopes);
    if (!resp || !scope || !impact || !scopes)
        return qr_nomem(err);
    scope->component_type = "spanprof (SQLite)";
    scope->component_count = 1;
    scope->block_count = im.chunks;
    scope->series_count = im.series;
    scope->profile_count = im.buckets;
    scope->profile_bytes = im.bytes;
    impact->total_bytes_in_time_range = im.bytes;
    impact->total_queried_series = im.series;
    scopes[0] = scope;
    resp->query_scopes = scopes;
    resp->n_query_scopes = 1;
    resp->query_impact = impact;
    *out = &resp->base;
    return 0;
}
