// gopyro: a Pyroscope stand-in for the spanprof e2e tests. It answers Pyroscope's own generated
// Connect handlers (github.com/grafana/pyroscope/api, Apache-2.0: pushv1connect and
// querierv1connect; proto and JSON codecs, Connect and gRPC) and keeps what a Pyroscope cluster
// keeps of each push, so that a test can ask it what Grafana would show. Nothing of Pyroscope's
// server (AGPL) is built, vendored or copied: the rules below were read in its source and are
// written again here.
//
// What Pyroscope does with a push, and so what this program does (paths are in the Pyroscope
// repository, read at commit 3fe6a457a32004efc46da819cbc114472d07415e, August 2026):
//
//   - Each RawSample of each RawProfileSeries is one pprof (gzip'ed or not), decoded on its own
//     (pkg/distributor/distributor.go Push). A series without service_name gets
//     service_name="unknown_service" (pushSeries, pkg/model/labels.go AttrServiceNameFallback).
//   - Timestamp: the profile's time_nanos; a profile with time_nanos <= 0 gets the time of
//     arrival (pkg/validation/validate.go ValidateProfile: "if prof.TimeNanos > 0 {...} else
//     {prof.TimeNanos = now}"; pkg/pprof/pprof.go Normalize does the same for 0).
//   - Normalisation (pkg/pprof/pprof.go Normalize): labels with no string value (numeric labels)
//     are removed; a sample with any negative value is dropped; a sample whose values are all 0 is
//     dropped; samples with equal stacks and labels are summed.
//   - One series per label set (pkg/model/pprofsplit/pprof_split.go VisitSampleSeries,
//     pkg/pprof/pprof.go GroupSamplesWithoutLabels): the sample label `profile_id` is first
//     renamed `span_id` (RenameLabel); samples are grouped by their string labels other than
//     `span_id` and `trace_id` (those two stay on the sample and never make series); each group's
//     series labels are the RawProfileSeries labels plus the group's sample labels whose name the
//     series does not have yet (addSampleLabelsToLabelsBuilder: the series' own labels win; among
//     a sample's labels of one name, the first in (key, value) string-table order wins). Groups
//     whose label sets are equal are merged back into one (groupsWithFingerprints).
//   - Label names are sanitised (pkg/validation/validate.go ValidateLabels,
//     SanitizeLegacyLabelName): dots become underscores; a clash with an existing label of another
//     value refuses the profile; other invalid names refuse it; duplicate names in a
//     RawProfileSeries refuse it.
//   - Profile type: one series per sample type; the type ID is
//     __name__:sample_type:sample_unit:period_type:period_unit
//     (pkg/phlaredb/labels/labels.go CreateProfileLabels), e.g.
//     process_cpu:cpu:nanoseconds:cpu:nanoseconds. A type's profile with no non-zero value is not
//     stored (pkg/segmentwriter/memdb/head.go Ingest: Samples.Compact, "if Len() == 0 continue").
//   - span_id: one per sample (pkg/pprof/pprof.go Spans / spanIDFromLabels / decodeSpanID,
//     pkg/phlaredb/symdb/dedup_slice.go): the first `span_id` label of the sample whose value is
//     exactly 16 hex digits, decoded to 8 bytes and read as a little-endian uint64; a value that
//     is not 16 hex digits is skipped (the next one is tried); none valid = 0, "no span". A sample
//     with two valid span_id labels keeps only the first (in the sample's label order after
//     grouping: sorted by key then by value's string-table index). trace_id likewise: 32 hex
//     digits, else none.
//   - Span selectors (pkg/model/profile.go NewSpanSelector): each id must be 16 hex digits (any
//     case; else the query fails), decoded the same way; a sample matches when its span id is in
//     the set. An empty selector selects everything (pkg/querybackend/query_tree.go: the span
//     filter applies only when the selector is not empty; SelectMergeSpanProfile is
//     SelectMergeStacktraces with span_selector: pkg/frontend/readpath/queryfrontend/
//     query_select_merge_span_profile.go).
//   - Time range of a query (pkg/querybackend/block_reader.go and query_profile_entry.go, v1:
//     pkg/phlaredb/block_querier.go): a profile counts when start_ms*1e6 <= time_nanos <=
//     end_ms*1e6, both ends inclusive, in nanoseconds (IntBetweenPredicate,
//     pkg/phlaredb/query/predicates.go). So a profile stamped exactly at `end` counts.
//   - Same series, same timestamp: collapsed to one profile. Where:
//     (v2, the current architecture) pkg/block/compaction.go datasetCompaction.merge →
//     pkg/block/section_profiles.go NewMergeRowProfileIterator / DedupeProfileRowIterator: when
//     blocks are compacted, rows are merged in (series labels, time_nanos) order and a row with
//     the same series fingerprint and time_nanos as the previous row is skipped. The query path of
//     v2 does not deduplicate: before compaction both profiles count; after, one. Within one
//     segment the earlier push comes first (pkg/segmentwriter/memdb/profile_index.go Add inserts a
//     profile after those of equal time), so the first pushed survives; across segments the
//     loser tree (pkg/util/loser/tree.go) breaks ties by position, not by arrival (with two
//     blocks the later block's row wins). (v1) pkg/querier/select_merge.go skipDuplicates keeps
//     "the first profile with a given fingerprint for a given timestamp" at query time, with
//     timestamps in milliseconds (model.Time), and pkg/phlaredb/compact.go
//     dedupeProfileRowIterator does the same as v2 at compaction, in nanoseconds.
//     Here: -compact (default true) answers every query as after compaction: per tenant, series
//     and timestamp (-dedup-resolution ns, or ms as v1's querier) one profile is kept, the first
//     pushed (-keep first) or the last (-keep last); -compact=false answers as v2 before
//     compaction (every profile counts). GET /debug/raw shows the collisions.
//   - Tenants: X-Scope-OrgID; none is tenant "anonymous" (multitenancy off).
//   - max_nodes is ignored (Pyroscope truncates flame graphs to max_nodes, default 8192, with an
//     "other" node; tests here stay far below that).
//
// Endpoints: /push.v1.PusherService/Push; /querier.v1.QuerierService/ ProfileTypes, LabelNames,
// LabelValues, SelectMergeStacktraces (span_selector honoured), SelectMergeSpanProfile
// (flame graph format only; others answer Unimplemented); GET /debug/profiles (JSON: every stored
// profile after compaction, samples leaf first with value and span id), GET /debug/raw (JSON: per
// tenant, series and timestamp, how many profiles were pushed, and their RawSample ids).
// Label selectors: {}, and matchers name="v", name!="v", name=~"re", name!~"re" (re anchored).
//
// Flags: -addr (listen address; port 0 picks one), -port-file (written with the bound port once
// listening), -compact, -keep, -dedup-resolution.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"

	"github.com/grafana/pyroscope/api/gen/proto/go/push/v1/pushv1connect"
	"github.com/grafana/pyroscope/api/gen/proto/go/querier/v1/querierv1connect"
)

func newMux(st *store) *http.ServeMux {
	mux := http.NewServeMux()
	path, h := pushv1connect.NewPusherServiceHandler(&pusher{st: st})
	mux.Handle(path, h)
	path, h = querierv1connect.NewQuerierServiceHandler(&querier{st: st})
	mux.Handle(path, h)
	mux.HandleFunc("GET /debug/profiles", st.serveProfiles)
	mux.HandleFunc("GET /debug/raw", st.serveRaw)
	return mux
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	portFile := flag.String("port-file", "", "write the bound port here once listening")
	compact := flag.Bool("compact", true, "answer queries as after compaction (one profile per series and timestamp)")
	keep := flag.String("keep", "first", "which of colliding profiles compaction keeps: first or last pushed")
	res := flag.String("dedup-resolution", "ns", "timestamp resolution of the collision: ns (compaction) or ms (v1 querier)")
	flag.Parse()

	st, err := newStore(*compact, *keep, *res)
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if *portFile != "" {
		tmp := *portFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(fmt.Sprint(port)), 0o644); err != nil {
			log.Fatal(err)
		}
		if err := os.Rename(tmp, *portFile); err != nil {
			log.Fatal(err)
		}
	}
	log.Printf("gopyro listening on %s (compact=%v keep=%s dedup-resolution=%s)", ln.Addr(), *compact, *keep, *res)
	srv := &http.Server{Handler: newMux(st)}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true) // gRPC clients
	err = srv.Serve(ln)
	if !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
