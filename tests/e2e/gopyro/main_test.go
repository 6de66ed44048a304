package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	profilev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/push/v1/pushv1connect"
	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/querier/v1/querierv1connect"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"
	"google.golang.org/protobuf/proto"
)

const cpu = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"

// tsample: one hand-made sample: stack root first, values, string labels as name, value pairs.
type tsample struct {
	stack  []string
	values []int64
	labels [][2]string
}

// pprof builds a CPU-shaped profile (one sample type per entry of types, "type:unit").
func pprof(ts int64, types []string, samples ...tsample) []byte {
	p := &profilev1.Profile{StringTable: []string{""}, TimeNanos: ts}
	strs := map[string]int64{"": 0}
	s := func(v string) int64 {
		if i, ok := strs[v]; ok {
			return i
		}
		strs[v] = int64(len(p.StringTable))
		p.StringTable = append(p.StringTable, v)
		return strs[v]
	}
	for _, t := range types {
		ty, unit, _ := strings.Cut(t, ":")
		p.SampleType = append(p.SampleType, &profilev1.ValueType{Type: s(ty), Unit: s(unit)})
	}
	p.PeriodType = &profilev1.ValueType{Type: s("cpu"), Unit: s("nanoseconds")}
	p.Period = 10_000_000
	locs := map[string]uint64{}
	loc := func(name string) uint64 {
		if id, ok := locs[name]; ok {
			return id
		}
		id := uint64(len(locs) + 1)
		locs[name] = id
		p.Function = append(p.Function, &profilev1.Function{Id: id, Name: s(name)})
		p.Location = append(p.Location, &profilev1.Location{Id: id, Line: []*profilev1.Line{{FunctionId: id}}})
		return id
	}
	for _, smp := range samples {
		ps := &profilev1.Sample{Value: smp.values}
		for i := len(smp.stack) - 1; i >= 0; i-- {
			ps.LocationId = append(ps.LocationId, loc(smp.stack[i]))
		}
		for _, l := range smp.labels {
			ps.Label = append(ps.Label, &profilev1.Label{Key: s(l[0]), Str: s(l[1])})
		}
		p.Sample = append(p.Sample, ps)
	}
	b, err := proto.Marshal(p)
	if err != nil {
		panic(err)
	}
	return b
}

type env struct {
	t    *testing.T
	srv  *httptest.Server
	push pushv1connect.PusherServiceClient
	q    querierv1connect.QuerierServiceClient
}

func newEnv(t *testing.T, compact bool, keep, res string, opts ...connect.ClientOption) *env {
	st, err := newStore(compact, keep, res)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(newMux(st))
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv,
		push: pushv1connect.NewPusherServiceClient(srv.Client(), srv.URL, opts...),
		q:    querierv1connect.NewQuerierServiceClient(srv.Client(), srv.URL, opts...)}
}

func lp(kv ...string) []*typesv1.LabelPair {
	var out []*typesv1.LabelPair
	for i := 0; i < len(kv); i += 2 {
		out = append(out, &typesv1.LabelPair{Name: kv[i], Value: kv[i+1]})
	}
	return out
}

func (e *env) pushTenant(tenant string, ls []*typesv1.LabelPair, raws ...[]byte) error {
	rs := &pushv1.RawProfileSeries{Labels: ls}
	for i, r := range raws {
		rs.Samples = append(rs.Samples, &pushv1.RawSample{RawProfile: r, ID: strings.Repeat("x", i+1)})
	}
	req := connect.NewRequest(&pushv1.PushRequest{Series: []*pushv1.RawProfileSeries{rs}})
	if tenant != "" {
		req.Header().Set("X-Scope-OrgID", tenant)
	}
	_, err := e.push.Push(context.Background(), req)
	return err
}

func (e *env) mustPush(ls []*typesv1.LabelPair, raws ...[]byte) {
	e.t.Helper()
	if err := e.pushTenant("", ls, raws...); err != nil {
		e.t.Fatal(err)
	}
}

// leaves decodes a flame graph into {stack root first joined by ";": self}.
func leaves(t *testing.T, fg *querierv1.FlameGraph) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	if fg == nil {
		return out
	}
	type nd struct {
		x, total, self int64
		path           string
	}
	var prev []nd
	for d, lv := range fg.Levels {
		var cur []nd
		end := int64(0)
		for i := 0; i < len(lv.Values); i += 4 {
			x := end + lv.Values[i]
			n := nd{x: x, total: lv.Values[i+1], self: lv.Values[i+2]}
			end = x + n.total
			name := fg.Names[lv.Values[i+3]]
			if d == 0 {
				if name != "total" {
					t.Fatalf("root is %q", name)
				}
			} else {
				var parent *nd
				for j := range prev {
					if prev[j].x <= x && x < prev[j].x+prev[j].total {
						parent = &prev[j]
					}
				}
				if parent == nil {
					t.Fatalf("node %s at level %d has no parent", name, d)
				}
				n.path = strings.TrimPrefix(parent.path+";"+name, ";")
				if n.self > 0 {
					out[n.path] += n.self
				}
			}
			cur = append(cur, n)
		}
		prev = cur
	}
	var sum int64
	for _, v := range out {
		sum += v
	}
	if sum != fg.Total {
		t.Fatalf("leaves sum to %d, total %d", sum, fg.Total)
	}
	return out
}

func (e *env) spanQuery(sel string, start, end int64, spans ...string) map[string]int64 {
	e.t.Helper()
	r, err := e.q.SelectMergeSpanProfile(context.Background(), connect.NewRequest(&querierv1.SelectMergeSpanProfileRequest{
		ProfileTypeID: cpu, LabelSelector: sel, Start: start, End: end, SpanSelector: spans}))
	if err != nil {
		e.t.Fatal(err)
	}
	return leaves(e.t, r.Msg.Flamegraph)
}

func (e *env) merge(sel string, start, end int64) map[string]int64 {
	e.t.Helper()
	r, err := e.q.SelectMergeStacktraces(context.Background(), connect.NewRequest(&querierv1.SelectMergeStacktracesRequest{
		ProfileTypeID: cpu, LabelSelector: sel, Start: start, End: end}))
	if err != nil {
		e.t.Fatal(err)
	}
	return leaves(e.t, r.Msg.Flamegraph)
}

func (e *env) getJSON(path string, v any) {
	e.t.Helper()
	resp, err := http.Get(e.srv.URL + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		e.t.Fatal(err)
	}
}

func eq(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
}

var (
	t0   = time.Date(2026, 9, 1, 12, 0, 0, 0, time.UTC).UnixNano()
	ms0  = t0 / 1_000_000
	svc  = lp("__name__", "process_cpu", "service_name", "svc")
	cpuT = []string{"cpu:nanoseconds"}
)

func TestCollapseKeepsFirstByDefault(t *testing.T) {
	for _, c := range []struct {
		compact bool
		keep    string
		want    int64
	}{{true, "first", 10}, {true, "last", 20}, {false, "first", 30}} {
		e := newEnv(t, c.compact, c.keep, "ns")
		e.mustPush(svc, pprof(t0, cpuT, tsample{[]string{"main", "a"}, []int64{10}, nil}))
		e.mustPush(svc, pprof(t0, cpuT, tsample{[]string{"main", "a"}, []int64{20}, nil}))
		// another timestamp of the same series does not collide
		e.mustPush(svc, pprof(t0+1, cpuT, tsample{[]string{"main", "b"}, []int64{5}, nil}))
		eq(t, "merge "+c.keep, e.merge(`{service_name="svc"}`, ms0, ms0+1000), map[string]int64{"main;a": c.want, "main;b": 5})
		var raw []debugRaw
		e.getJSON("/debug/raw", &raw)
		if len(raw) != 2 || raw[0].Count != 2 || raw[0].Total != 30 || raw[1].Count != 1 {
			t.Fatalf("raw: %+v", raw)
		}
		var profs []debugProfile
		e.getJSON("/debug/profiles", &profs)
		n := 2
		if !c.compact {
			n = 3
		}
		if len(profs) != n {
			t.Fatalf("profiles: %+v", profs)
		}
	}
	// milliseconds: 1 ns apart collide as in v1's querier
	e := newEnv(t, true, "first", "ms")
	e.mustPush(svc, pprof(t0, cpuT, tsample{[]string{"main", "a"}, []int64{10}, nil}))
	e.mustPush(svc, pprof(t0+1, cpuT, tsample{[]string{"main", "a"}, []int64{20}, nil}))
	eq(t, "ms", e.merge(`{}`, ms0, ms0+1000), map[string]int64{"main;a": 10})
}

func TestSpanIDs(t *testing.T) {
	e := newEnv(t, true, "first", "ns")
	e.mustPush(svc, pprof(t0, cpuT,
		tsample{[]string{"main", "a"}, []int64{1}, [][2]string{{"span_id", "00000000000000aa"}, {"trace_id", "0102030405060708090a0b0c0d0e0f10"}}},
		tsample{[]string{"main", "b"}, []int64{2}, [][2]string{{"span_id", "00000000000000AA"}}},                    // any case
		tsample{[]string{"main", "c"}, []int64{4}, [][2]string{{"span_id", "bad"}}},                                 // not 16 hex: none
		tsample{[]string{"main", "d"}, []int64{8}, [][2]string{{"span_id", "zz"}, {"span_id", "00000000000000bb"}}}, // bad skipped
		tsample{[]string{"main", "e"}, []int64{16}, [][2]string{{"profile_id", "00000000000000cc"}}},                // renamed
		tsample{[]string{"main", "f"}, []int64{0}, [][2]string{{"span_id", "00000000000000aa"}}},                    // zero: dropped
		tsample{[]string{"main", "g"}, []int64{-1}, [][2]string{{"span_id", "00000000000000aa"}}},                   // negative: dropped
	))
	win := func(spans ...string) map[string]int64 { return e.spanQuery(`{service_name="svc"}`, ms0, ms0, spans...) }
	eq(t, "aa", win("00000000000000aa"), map[string]int64{"main;a": 1, "main;b": 2})
	eq(t, "AA", win("00000000000000AA"), map[string]int64{"main;a": 1, "main;b": 2})
	eq(t, "bb", win("00000000000000bb"), map[string]int64{"main;d": 8})
	eq(t, "cc", win("00000000000000cc"), map[string]int64{"main;e": 16})
	eq(t, "aa,cc", win("00000000000000aa", "00000000000000cc"), map[string]int64{"main;a": 1, "main;b": 2, "main;e": 16})
	eq(t, "none", win("00000000000000dd"), map[string]int64{})
	eq(t, "empty selector = all", win(), map[string]int64{"main;a": 1, "main;b": 2, "main;c": 4, "main;d": 8, "main;e": 16})
	// span_id and trace_id never make series
	var profs []debugProfile
	e.getJSON("/debug/profiles", &profs)
	if len(profs) != 1 || len(profs[0].Samples) != 5 {
		t.Fatalf("profiles: %+v", profs)
	}
	if _, err := e.q.SelectMergeSpanProfile(context.Background(), connect.NewRequest(&querierv1.SelectMergeSpanProfileRequest{
		ProfileTypeID: cpu, LabelSelector: "{}", Start: ms0, End: ms0, SpanSelector: []string{"abc"}})); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("bad span selector: %v", err)
	}
}

func TestSampleLabelsSplitSeries(t *testing.T) {
	e := newEnv(t, true, "first", "ns")
	ls := lp("__name__", "process_cpu", "service_name", "svc", "env", "prod")
	e.mustPush(ls, pprof(t0, cpuT,
		tsample{[]string{"main", "a"}, []int64{1}, [][2]string{{"thread.name", "A"}, {"span_id", "00000000000000aa"}}},
		tsample{[]string{"main", "b"}, []int64{2}, [][2]string{{"thread.name", "B"}, {"span_id", "00000000000000aa"}}},
		tsample{[]string{"main", "c"}, []int64{4}, [][2]string{{"env", "dev"}}}, // the series' label wins
		tsample{[]string{"main", "d"}, []int64{8}, nil},
	))
	// the same push again: every series collides with itself
	e.mustPush(ls, pprof(t0, cpuT, tsample{[]string{"main", "a"}, []int64{100}, [][2]string{{"thread.name", "A"}}}))
	eq(t, "A", e.merge(`{thread_name="A"}`, ms0, ms0), map[string]int64{"main;a": 1})
	eq(t, "not A", e.merge(`{service_name="svc", thread_name!="A"}`, ms0, ms0), map[string]int64{"main;b": 2, "main;c": 4, "main;d": 8})
	eq(t, "re", e.merge(`{thread_name=~"A|B"}`, ms0, ms0), map[string]int64{"main;a": 1, "main;b": 2})
	eq(t, "span across series", e.spanQuery(`{service_name="svc"}`, ms0, ms0, "00000000000000aa"), map[string]int64{"main;a": 1, "main;b": 2})
	eq(t, "other service", e.merge(`{service_name="other"}`, ms0, ms0), map[string]int64{})
	var raw []debugRaw
	e.getJSON("/debug/raw", &raw)
	var counts []int
	for _, r := range raw {
		counts = append(counts, r.Count)
	}
	sort.Ints(counts)
	eq(t, "series", counts, []int{1, 1, 2}) // {} + thread_name=A (twice) + thread_name=B
	v, err := e.q.LabelValues(context.Background(), connect.NewRequest(&typesv1.LabelValuesRequest{Name: "thread_name", Start: ms0, End: ms0}))
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "values", v.Msg.Names, []string{"A", "B"})
	n, err := e.q.LabelNames(context.Background(), connect.NewRequest(&typesv1.LabelNamesRequest{Matchers: []string{`{thread_name="A"}`}, Start: ms0, End: ms0}))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"__name__", "__profile_type__", "env", "service_name", "thread_name"} {
		found := false
		for _, got := range n.Msg.Names {
			found = found || got == want
		}
		if !found {
			t.Fatalf("label names %v lack %s", n.Msg.Names, want)
		}
	}
}

func TestTimeRangeAndTypes(t *testing.T) {
	e := newEnv(t, true, "first", "ns")
	for i, ts := range []int64{t0 - 1, t0, t0 + 999_999, t0 + 1_000_000, t0 + 1_000_001} {
		e.mustPush(svc, pprof(ts, cpuT, tsample{[]string{"main", string(rune('a' + i))}, []int64{1}, nil}))
	}
	// [start, end] inclusive, in ms compared with ns: t0 and t0+1ms count, t0+1ms+1ns does not
	eq(t, "[ms0, ms0+1]", e.merge(`{}`, ms0, ms0+1), map[string]int64{"main;b": 1, "main;c": 1, "main;d": 1})
	eq(t, "[ms0, ms0]", e.merge(`{}`, ms0, ms0), map[string]int64{"main;b": 1})
	// time_nanos 0: the time of arrival
	before := time.Now().UnixMilli()
	e.mustPush(svc, pprof(0, cpuT, tsample{[]string{"main", "now"}, []int64{1}, nil}))
	eq(t, "now", e.merge(`{}`, before, time.Now().UnixMilli()+1), map[string]int64{"main;now": 1})
	// two sample types: two series, two profile types
	e.mustPush(lp("__name__", "memory", "service_name", "svc"), pprof(t0, []string{"alloc_objects:count", "alloc_space:bytes"},
		tsample{[]string{"main", "m"}, []int64{3, 300}, nil}, tsample{[]string{"main", "n"}, []int64{0, 7}, nil}))
	pt, err := e.q.ProfileTypes(context.Background(), connect.NewRequest(&querierv1.ProfileTypesRequest{Start: ms0, End: ms0}))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range pt.Msg.ProfileTypes {
		ids = append(ids, p.ID)
	}
	eq(t, "types", ids, []string{"memory:alloc_objects:count:cpu:nanoseconds", "memory:alloc_space:bytes:cpu:nanoseconds", cpu})
	r, err := e.q.SelectMergeStacktraces(context.Background(), connect.NewRequest(&querierv1.SelectMergeStacktracesRequest{
		ProfileTypeID: "memory:alloc_objects:count:cpu:nanoseconds", LabelSelector: "{}", Start: ms0, End: ms0}))
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "objects", leaves(t, r.Msg.Flamegraph), map[string]int64{"main;m": 3})
}

func TestTenantsAndJSON(t *testing.T) {
	e := newEnv(t, true, "first", "ns", connect.WithProtoJSON())
	if err := e.pushTenant("t1", svc, pprof(t0, cpuT, tsample{[]string{"main", "one"}, []int64{1}, nil})); err != nil {
		t.Fatal(err)
	}
	if err := e.pushTenant("t2", svc, pprof(t0, cpuT, tsample{[]string{"main", "two"}, []int64{2}, nil})); err != nil {
		t.Fatal(err)
	}
	req := connect.NewRequest(&querierv1.SelectMergeStacktracesRequest{ProfileTypeID: cpu, LabelSelector: `{service_name="svc"}`, Start: ms0, End: ms0})
	req.Header().Set("X-Scope-OrgID", "t2")
	r, err := e.q.SelectMergeStacktraces(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "t2", leaves(t, r.Msg.Flamegraph), map[string]int64{"main;two": 2})
	eq(t, "anonymous", e.merge(`{}`, ms0, ms0), map[string]int64{})
	// a series without service_name is unknown_service's; a bad profile is refused
	e.mustPush(lp("__name__", "process_cpu"), pprof(t0, cpuT, tsample{[]string{"main", "x"}, []int64{1}, nil}))
	eq(t, "fallback", e.merge(`{service_name="unknown_service"}`, ms0, ms0), map[string]int64{"main;x": 1})
	if err := e.pushTenant("", svc, []byte("not a profile")); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("garbage: %v", err)
	}
}

func TestFlameGraphLayout(t *testing.T) {
	root := &node{}
	root.add([]string{"c", "b", "a"}, 3) // leaf first
	root.add([]string{"b", "a"}, 2)
	root.add([]string{"d", "a"}, 1)
	root.add([]string{"e"}, 4)
	fg := flameGraph(root)
	eq(t, "names", fg.Names, []string{"total", "a", "e", "b", "d", "c"})
	eq(t, "level 0", fg.Levels[0].Values, []int64{0, 10, 0, 0})
	eq(t, "level 1", fg.Levels[1].Values, []int64{0, 6, 0, 1, 0, 4, 4, 2})
	eq(t, "level 2", fg.Levels[2].Values, []int64{0, 5, 2, 3, 0, 1, 1, 4})
	eq(t, "level 3", fg.Levels[3].Values, []int64{2, 3, 3, 5}) // children after the self part
	eq(t, "max self", fg.MaxSelf, int64(4))
	eq(t, "leaves", leaves(t, fg), map[string]int64{"a;b;c": 3, "a;b": 2, "a;d": 1, "e": 4})
}

func TestSelectorParse(t *testing.T) {
	for _, bad := range []string{`{a}`, `{a="b"`, `service_name="x"`, `{a=~"("}`, `{="x"}`} {
		if _, err := parseSelector(bad); err == nil {
			t.Fatalf("%s parsed", bad)
		}
	}
	ms, err := parseSelector(`{ a = "x\"y" , b!~"z.*", }`)
	if err != nil || len(ms) != 2 || ms[0].value != `x"y` || ms[1].op != "!~" {
		t.Fatalf("%v %+v", err, ms)
	}
}
