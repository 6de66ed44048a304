/* querier.v1.QuerierService: the methods Grafana's Pyroscope data source, Tempo's
 * traces-to-profiles link and the Profiles Drilldown app call (ProfileTypes, LabelNames,
 * LabelValues, Series, SelectMergeStacktraces, SelectMergeSpanProfile, SelectMergeProfile,
 * SelectSeries, SelectHeatmap, Diff, GetProfileStats, AnalyzeQuery), with Pyroscope's semantics
 * plus span sets (trace_id_selector, span_name: spanset.h); every other method of the service
 * answers unimplemented. Times in requests are ms since epoch.
 *
 * Registered by query/query.c; handlers run on worker threads and read the store only.
 */
#ifndef QUERY_QUERIER_H
#define QUERY_QUERIER_H

#include "stacks.h"

int query_querier_register(srv_router *r, const query_ctx *c);

#endif
