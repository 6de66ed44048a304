/* What the querier.v1.QuerierService handlers share (querier.c, querier_diff.c,
 * querier_heatmap.c, querier_stats.c). Internal to query/. */
#ifndef QUERY_QUERIER_INTERNAL_H
#define QUERY_QUERIER_INTERNAL_H

#include "querier.h"

#include "google/v1/profile.pb-c.h"
#include "querier/v1/querier.pb-c.h"
#include "types/v1/types.pb-c.h"

/* A method: the decoded request in, the answer out (both in the request's arena). */
typedef int (*method_fn)(const query_ctx *c, const srv_request *req, const ProtobufCMessage *in,
                         sp_arena *a, ProtobufCMessage **out, sp_err *err);

/* A message of type T in the arena, initialised with its protobuf-c INIT value. */
#define NEW(a, T, init) ((T *)sp_arena_memdup((a), &(T)init, sizeof(T)))

/* SP_ETOOBIG: the answer outgrew the query's budget. */
int qr_nomem(sp_err *err);

Types__V1__LabelPair **qr_label_pairs(sp_arena *a, const store_labels *l);

/* What the merge methods (and each side of Diff) share once their requests are read. */
typedef struct qr_merge_req {
    const char *type_id, *label_selector;
    int64_t start, end, max_nodes;
    char **span_ids;
    size_t nspan_ids;
    int by_span;
    int detail; /* pprof answers: frames as received (file, line, address, mapping) */
    char **trace_ids;
    size_t ntrace_ids;
} qr_merge_req;

/* Reads a merge request's type, selector and max_nodes and selects its stacks. SP_EINVAL names
 * the field at fault; the store's errors. */
int qr_merge_stacks(const query_ctx *c, const srv_request *req, const qr_merge_req *m, sp_arena *a,
                    query_type *type, int64_t *max_nodes, store_stacks *out, sp_err *err);

/* Methods beyond querier.c. */
int qr_diff(const query_ctx *c, const srv_request *req, const ProtobufCMessage *in, sp_arena *a,
            ProtobufCMessage **out, sp_err *err);
int qr_select_heatmap(const query_ctx *c, const srv_request *req, const ProtobufCMessage *in,
                      sp_arena *a, ProtobufCMessage **out, sp_err *err);
int qr_get_profile_stats(const query_ctx *c, const srv_request *req, const ProtobufCMessage *in,
                         sp_arena *a, ProtobufCMessage **out, sp_err *err);
int qr_analyze_query(const query_ctx *c, const srv_request *req, const ProtobufCMessage *in,
                     sp_arena *a, ProtobufCMessage **out, sp_err *err);

/* Adds to each point of a SelectSeries answer (series[0..nseries), stepped by step_ns from
 * start_ns) its largest exemplar: with EXEMPLAR_TYPE_SPAN the span of the service's spans
 * starting in that step with the largest value (span and trace ids), with
 * EXEMPLAR_TYPE_INDIVIDUAL the largest (series, 10 s bucket) total (a profile id). Other types:
 * nothing. The store's errors. */
int qr_series_exemplars(const query_ctx *c, const srv_request *req, const char *type_id,
                        const store_selector *sel, int64_t start_ns, int64_t end_ns,
                        int64_t step_ns, char **group_by, size_t ngb, int exemplar_type,
                        sp_arena *a, Types__V1__Series **series, size_t nseries, sp_err *err);

#endif
