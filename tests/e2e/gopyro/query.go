package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"

	"connectrpc.com/connect"
	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/querier/v1/querierv1connect"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"
)

// ---- label selectors --------------------------------------------------------------------------

type matcher struct {
	name, op, value string
	re              *regexp.Regexp
}

func (m matcher) matches(ls labels) bool {
	v := ls.get(m.name)
	switch m.op {
	case "=":
		return v == m.value
	case "!=":
		return v != m.value
	case "=~":
		return m.re.MatchString(v)
	default: // "!~"
		return !m.re.MatchString(v)
	}
}

// parseSelector reads `{}` or `{name="v", name!="v", name=~"re", name!~"re"}`.
func parseSelector(sel string) ([]matcher, error) {
	s := strings.TrimSpace(sel)
	if s == "" {
		return nil, nil
	}
	if !strings.HasPrefix(s, "{") || !strings.HasSuffix(s, "}") {
		return nil, fmt.Errorf("label selector %q: want {...}", sel)
	}
	s = strings.TrimSpace(s[1 : len(s)-1])
	var out []matcher
	for s != "" {
		i := 0
		for i < len(s) && (s[i] == '_' || s[i] == '.' || s[i] >= 'a' && s[i] <= 'z' || s[i] >= 'A' && s[i] <= 'Z' || s[i] >= '0' && s[i] <= '9') {
			i++
		}
		if i == 0 {
			return nil, fmt.Errorf("label selector %q: label name expected at %q", sel, s)
		}
		m := matcher{name: s[:i]}
		s = strings.TrimSpace(s[i:])
		for _, op := range []string{"!=", "=~", "!~", "="} {
			if strings.HasPrefix(s, op) {
				m.op = op
				break
			}
		}
		if m.op == "" {
			return nil, fmt.Errorf("label selector %q: operator expected at %q", sel, s)
		}
		s = strings.TrimSpace(s[len(m.op):])
		if s == "" || s[0] != '"' {
			return nil, fmt.Errorf("label selector %q: quoted value expected", sel)
		}
		var val strings.Builder
		j := 1
		for ; j < len(s) && s[j] != '"'; j++ {
			if s[j] == '\\' && j+1 < len(s) {
				j++
				switch s[j] {
				case 'n':
					val.WriteByte('\n')
				case 't':
					val.WriteByte('\t')
				default:
					val.WriteByte(s[j])
				}
				continue
			}
			val.WriteByte(s[j])
		}
		if j >= len(s) {
			return nil, fmt.Errorf("label selector %q: unterminated value", sel)
		}
		m.value = val.String()
		if m.op == "=~" || m.op == "!~" {
			re, err := regexp.Compile("^(?:" + m.value + ")$")
			if err != nil {
				return nil, fmt.Errorf("label selector %q: %w", sel, err)
			}
			m.re = re
		}
		out = append(out, m)
		s = strings.TrimSpace(s[j+1:])
		if strings.HasPrefix(s, ",") {
			s = strings.TrimSpace(s[1:])
		} else if s != "" {
			return nil, fmt.Errorf("label selector %q: ',' expected at %q", sel, s)
		}
	}
	return out, nil
}

func matchAll(ms []matcher, ls labels) bool {
	for _, m := range ms {
		if !m.matches(ls) {
			return false
		}
	}
	return true
}

// ---- flame graphs -----------------------------------------------------------------------------

type node struct {
	name     string
	self     int64
	total    int64
	children map[string]*node
}

func (n *node) child(name string) *node {
	if n.children == nil {
		n.children = map[string]*node{}
	}
	c := n.children[name]
	if c == nil {
		c = &node{name: name}
		n.children[name] = c
	}
	return c
}

func (n *node) add(stackLeafFirst []string, v int64) {
	n.total += v
	cur := n
	for i := len(stackLeafFirst) - 1; i >= 0; i-- {
		cur = cur.child(stackLeafFirst[i])
		cur.total += v
	}
	cur.self += v
}

// flameGraph writes the tree in Pyroscope's FlameGraph layout: names[0] = "total", one level per
// depth, four numbers per node (x offset relative to the end of the previous node of the level,
// total, self, name index), children ordered by name.
func flameGraph(root *node) *querierv1.FlameGraph {
	fg := &querierv1.FlameGraph{Names: []string{"total"}, Total: root.total}
	if root.total == 0 {
		return fg
	}
	nameIdx := map[string]int64{"total": 0}
	type item struct {
		n *node
		x int64
	}
	level := []item{{root, 0}}
	for len(level) > 0 {
		var vals []int64
		var next []item
		prevEnd := int64(0)
		for _, it := range level {
			idx, ok := nameIdx[it.n.name]
			if it.n == root {
				idx, ok = 0, true
			}
			if !ok {
				idx = int64(len(fg.Names))
				nameIdx[it.n.name] = idx
				fg.Names = append(fg.Names, it.n.name)
			}
			vals = append(vals, it.x-prevEnd, it.n.total, it.n.self, idx)
			prevEnd = it.x + it.n.total
			if it.n.self > fg.MaxSelf {
				fg.MaxSelf = it.n.self
			}
			names := make([]string, 0, len(it.n.children))
			for k := range it.n.children {
				names = append(names, k)
			}
			sort.Strings(names)
			x := it.x + it.n.self
			for _, k := range names {
				c := it.n.children[k]
				next = append(next, item{c, x})
				x += c.total
			}
		}
		fg.Levels = append(fg.Levels, &querierv1.Level{Values: vals})
		level = next
	}
	return fg
}

// ---- querier ----------------------------------------------------------------------------------

type querier struct {
	querierv1connect.UnimplementedQuerierServiceHandler
	st *store
}

type selection struct {
	typeID     string // "" = any
	matchers   []matcher
	start, end int64 // ms, inclusive; 0/0 = everything
	spans      map[uint64]bool
}

func (sel *selection) inRange(ts int64) bool {
	if sel.start == 0 && sel.end == 0 {
		return true
	}
	return sel.start*1_000_000 <= ts && ts <= sel.end*1_000_000
}

func newSelection(typeID, selector string, start, end int64, spans []string) (*selection, error) {
	ms, err := parseSelector(selector)
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	sel := &selection{typeID: typeID, matchers: ms, start: start, end: end}
	if len(spans) > 0 {
		sel.spans = map[uint64]bool{}
		for _, h := range spans {
			id, ok := spanIDOf(h)
			if !ok {
				return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("invalid span id %q", h))
			}
			sel.spans[id] = true
		}
	}
	return sel, nil
}

// each calls f for every selected profile of the tenant (compacted as the store is configured).
func (st *store) each(tenant string, sel *selection, f func(*series, *profile)) {
	for _, s := range st.seriesOf(tenant) {
		if sel.typeID != "" && s.profileType != sel.typeID {
			continue
		}
		if !matchAll(sel.matchers, s.labels) {
			continue
		}
		for _, p := range st.view(s, st.compact) {
			if sel.inRange(p.ts) {
				f(s, p)
			}
		}
	}
}

func (st *store) merge(tenant string, sel *selection) *querierv1.FlameGraph {
	st.mu.Lock()
	defer st.mu.Unlock()
	root := &node{}
	st.each(tenant, sel, func(_ *series, p *profile) {
		for _, smp := range p.sample {
			if sel.spans != nil && !sel.spans[smp.spanID] {
				continue
			}
			root.add(smp.stack, smp.value)
		}
	})
	return flameGraph(root)
}

func wantFlameGraph(f querierv1.ProfileFormat) error {
	if f == querierv1.ProfileFormat_PROFILE_FORMAT_UNSPECIFIED || f == querierv1.ProfileFormat_PROFILE_FORMAT_FLAMEGRAPH {
		return nil
	}
	return connect.NewError(connect.CodeUnimplemented, fmt.Errorf("gopyro answers flame graphs only, not %v", f))
}

func (q *querier) SelectMergeStacktraces(_ context.Context, req *connect.Request[querierv1.SelectMergeStacktracesRequest]) (*connect.Response[querierv1.SelectMergeStacktracesResponse], error) {
	m := req.Msg
	if err := wantFlameGraph(m.Format); err != nil {
		return nil, err
	}
	if len(m.ProfileIdSelector) > 0 || len(m.TraceIdSelector) > 0 || m.StackTraceSelector != nil {
		return nil, connect.NewError(connect.CodeUnimplemented, errors.New("gopyro: only span_selector is supported"))
	}
	sel, err := newSelection(m.ProfileTypeID, m.LabelSelector, m.Start, m.End, m.SpanSelector)
	if err != nil {
		return nil, err
	}
	fg := q.st.merge(tenantOf(req.Header()), sel)
	return connect.NewResponse(&querierv1.SelectMergeStacktracesResponse{Flamegraph: fg}), nil
}

func (q *querier) SelectMergeSpanProfile(_ context.Context, req *connect.Request[querierv1.SelectMergeSpanProfileRequest]) (*connect.Response[querierv1.SelectMergeSpanProfileResponse], error) {
	m := req.Msg
	if err := wantFlameGraph(m.Format); err != nil {
		return nil, err
	}
	sel, err := newSelection(m.ProfileTypeID, m.LabelSelector, m.Start, m.End, m.SpanSelector)
	if err != nil {
		return nil, err
	}
	fg := q.st.merge(tenantOf(req.Header()), sel)
	return connect.NewResponse(&querierv1.SelectMergeSpanProfileResponse{Flamegraph: fg}), nil
}

func (q *querier) ProfileTypes(_ context.Context, req *connect.Request[querierv1.ProfileTypesRequest]) (*connect.Response[querierv1.ProfileTypesResponse], error) {
	sel := &selection{start: req.Msg.Start, end: req.Msg.End}
	q.st.mu.Lock()
	defer q.st.mu.Unlock()
	seen := map[string]*typesv1.ProfileType{}
	q.st.each(tenantOf(req.Header()), sel, func(s *series, _ *profile) {
		seen[s.profileType] = &typesv1.ProfileType{ID: s.profileType, Name: s.name, SampleType: s.sampleType,
			SampleUnit: s.sampleUnit, PeriodType: s.periodType, PeriodUnit: s.periodUnit}
	})
	out := &querierv1.ProfileTypesResponse{}
	for _, t := range seen {
		out.ProfileTypes = append(out.ProfileTypes, t)
	}
	sort.Slice(out.ProfileTypes, func(i, j int) bool { return out.ProfileTypes[i].ID < out.ProfileTypes[j].ID })
	return connect.NewResponse(out), nil
}

// labelsWithType: a series' labels plus the private ones Pyroscope adds (__profile_type__ ...).
func labelsWithType(s *series) labels {
	m := s.labels.asMap()
	m["__profile_type__"] = s.profileType
	m["__type__"] = s.sampleType
	m["__unit__"] = s.sampleUnit
	if s.periodType != "" {
		m["__period_type__"] = s.periodType
		m["__period_unit__"] = s.periodUnit
	}
	return sortedLabels(m)
}

// matching: the label sets of the tenant's series with a profile in range matching any of the
// selectors (none = all).
func (st *store) matching(tenant string, selectors []string, start, end int64) ([]labels, error) {
	var sels [][]matcher
	for _, s := range selectors {
		ms, err := parseSelector(s)
		if err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, err)
		}
		sels = append(sels, ms)
	}
	if len(sels) == 0 {
		sels = [][]matcher{nil}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []labels
	for _, s := range st.seriesOf(tenant) {
		ls := labelsWithType(s)
		ok := false
		for _, ms := range sels {
			ok = ok || matchAll(ms, ls)
		}
		if !ok {
			continue
		}
		r := selection{start: start, end: end}
		for _, p := range st.view(s, st.compact) {
			if r.inRange(p.ts) {
				out = append(out, ls)
				break
			}
		}
	}
	return out, nil
}

func (q *querier) LabelNames(_ context.Context, req *connect.Request[typesv1.LabelNamesRequest]) (*connect.Response[typesv1.LabelNamesResponse], error) {
	sets, err := q.st.matching(tenantOf(req.Header()), req.Msg.Matchers, req.Msg.Start, req.Msg.End)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	out := &typesv1.LabelNamesResponse{}
	for _, ls := range sets {
		for _, l := range ls {
			if !seen[l.Name] {
				seen[l.Name] = true
				out.Names = append(out.Names, l.Name)
			}
		}
	}
	sort.Strings(out.Names)
	return connect.NewResponse(out), nil
}

func (q *querier) LabelValues(_ context.Context, req *connect.Request[typesv1.LabelValuesRequest]) (*connect.Response[typesv1.LabelValuesResponse], error) {
	sets, err := q.st.matching(tenantOf(req.Header()), req.Msg.Matchers, req.Msg.Start, req.Msg.End)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	out := &typesv1.LabelValuesResponse{}
	for _, ls := range sets {
		if v := ls.get(req.Msg.Name); v != "" && !seen[v] {
			seen[v] = true
			out.Names = append(out.Names, v)
		}
	}
	sort.Strings(out.Names)
	return connect.NewResponse(out), nil
}

// ---- debug ------------------------------------------------------------------------------------

type debugSample struct {
	Stack  []string `json:"stack"` // leaf first
	Value  int64    `json:"value"`
	SpanID string   `json:"span_id,omitempty"`
}

type debugProfile struct {
	Tenant      string            `json:"tenant"`
	Labels      map[string]string `json:"labels"`
	ProfileType string            `json:"profile_type"`
	TimeNanos   int64             `json:"time_nanos"`
	ID          string            `json:"id"`
	Seq         int64             `json:"seq"`
	Samples     []debugSample     `json:"samples"`
}

type debugRaw struct {
	Tenant      string            `json:"tenant"`
	Labels      map[string]string `json:"labels"`
	ProfileType string            `json:"profile_type"`
	TimeNanos   int64             `json:"time_nanos"`
	Count       int               `json:"count"`
	IDs         []string          `json:"ids"`
	Total       int64             `json:"total"` // over every pushed copy
}

func (st *store) tenantsSorted() []string {
	var out []string
	for t := range st.tenants {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	_ = enc.Encode(v)
}

// serveProfiles: every profile as queries see it (after compaction unless -compact=false).
func (st *store) serveProfiles(w http.ResponseWriter, _ *http.Request) {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := []debugProfile{}
	for _, t := range st.tenantsSorted() {
		for _, s := range st.seriesOf(t) {
			for _, p := range st.view(s, st.compact) {
				dp := debugProfile{Tenant: t, Labels: s.labels.asMap(), ProfileType: s.profileType,
					TimeNanos: p.ts, ID: p.id, Seq: p.seq, Samples: []debugSample{}}
				for _, smp := range p.sample {
					ds := debugSample{Stack: smp.stack, Value: smp.value}
					if smp.spanID != 0 {
						ds.SpanID = spanHex(smp.spanID)
					}
					dp.Samples = append(dp.Samples, ds)
				}
				out = append(out, dp)
			}
		}
	}
	writeJSON(w, out)
}

// serveRaw: per tenant, series and timestamp (at the collision resolution), what was pushed.
func (st *store) serveRaw(w http.ResponseWriter, _ *http.Request) {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := []debugRaw{}
	for _, t := range st.tenantsSorted() {
		for _, s := range st.seriesOf(t) {
			by := map[int64]*debugRaw{}
			var order []int64
			for _, p := range s.profiles {
				k := st.collisionKey(p.ts)
				r := by[k]
				if r == nil {
					r = &debugRaw{Tenant: t, Labels: s.labels.asMap(), ProfileType: s.profileType, TimeNanos: p.ts}
					by[k] = r
					order = append(order, k)
				}
				r.Count++
				r.IDs = append(r.IDs, p.id)
				for _, smp := range p.sample {
					r.Total += smp.value
				}
			}
			sort.Slice(order, func(i, j int) bool { return order[i] < order[j] })
			for _, k := range order {
				out = append(out, *by[k])
			}
		}
	}
	writeJSON(w, out)
}
