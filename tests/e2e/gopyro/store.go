package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	profilev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"
	"google.golang.org/protobuf/proto"
)

const (
	labelName        = "__name__"
	labelServiceName = "service_name"
	serviceFallback  = "unknown_service"
	anonymousTenant  = "anonymous"
)

// label is one series label.
type label struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type labels []label // sorted by name, names unique

func (ls labels) get(name string) string {
	for _, l := range ls {
		if l.Name == name {
			return l.Value
		}
	}
	return ""
}

func (ls labels) key() string {
	var b strings.Builder
	for _, l := range ls {
		fmt.Fprintf(&b, "%q=%q,", l.Name, l.Value)
	}
	return b.String()
}

func (ls labels) asMap() map[string]string {
	m := make(map[string]string, len(ls))
	for _, l := range ls {
		m[l.Name] = l.Value
	}
	return m
}

// sample is one stored sample of one profile type.
type sample struct {
	stack  []string // leaf first
	value  int64
	spanID uint64 // 0 = none
}

// profile is what one push left in one series.
type profile struct {
	seq    int64 // push order, over the whole program
	id     string
	ts     int64 // ns
	sample []sample
}

type series struct {
	labels      labels // as Pyroscope keeps them, without the __profile_type__ family
	profileType string
	name        string
	sampleType  string
	sampleUnit  string
	periodType  string
	periodUnit  string
	profiles    []*profile // push order
}

type store struct {
	compact  bool
	keepLast bool
	dedupMs  bool

	mu      sync.Mutex
	seq     int64
	tenants map[string]map[string]*series // tenant → series key → series
}

func newStore(compact bool, keep, res string) (*store, error) {
	s := &store{compact: compact, tenants: map[string]map[string]*series{}}
	switch keep {
	case "first":
	case "last":
		s.keepLast = true
	default:
		return nil, fmt.Errorf("-keep must be first or last, not %q", keep)
	}
	switch res {
	case "ns":
	case "ms":
		s.dedupMs = true
	default:
		return nil, fmt.Errorf("-dedup-resolution must be ns or ms, not %q", res)
	}
	return s, nil
}

func tenantOf(h interface{ Get(string) string }) string {
	if t := h.Get("X-Scope-OrgID"); t != "" {
		return t
	}
	return anonymousTenant
}

// ---- push -------------------------------------------------------------------------------------

type pusher struct{ st *store }

func (p *pusher) Push(_ context.Context, req *connect.Request[pushv1.PushRequest]) (*connect.Response[pushv1.PushResponse], error) {
	tenant := tenantOf(req.Header())
	now := time.Now().UnixNano()
	var errs []error
	var parsed []parsedSeries
	n := 0
	for i, rs := range req.Msg.Series {
		base, err := baseLabels(rs.Labels)
		if err != nil {
			errs = append(errs, fmt.Errorf("series %d: %w", i, err))
			continue
		}
		for j, raw := range rs.Samples {
			n++
			out, err := splitProfile(raw.RawProfile, base, now)
			if err != nil {
				errs = append(errs, fmt.Errorf("series %d sample %d: %w", i, j, err))
				continue
			}
			for k := range out {
				out[k].id = raw.ID
			}
			parsed = append(parsed, out...)
		}
	}
	if n == 0 {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("no profiles received"))
	}
	p.st.add(tenant, parsed)
	if len(errs) > 0 {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.Join(errs...))
	}
	return connect.NewResponse(&pushv1.PushResponse{}), nil
}

// parsedSeries is one profile type of one label group of one pushed profile.
type parsedSeries struct {
	labels                                         labels
	name, sampleType, sampleUnit, ptype, punit, id string
	ts                                             int64
	samples                                        []sample
}

func (ps *parsedSeries) typeID() string {
	return ps.name + ":" + ps.sampleType + ":" + ps.sampleUnit + ":" + ps.ptype + ":" + ps.punit
}

// sanitizeName: Pyroscope's legacy label name rule, dots turned into underscores.
func sanitizeName(n string) (string, bool) {
	if n == "" {
		return "", false
	}
	b := []byte(n)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case c >= '0' && c <= '9' && i > 0:
		case c == '.':
			b[i] = '_'
		default:
			return n, false
		}
	}
	return string(b), true
}

// setLabel adds name=value to m (sanitised); an existing name keeps its value when equal.
func setLabel(m map[string]string, name, value string) error {
	s, ok := sanitizeName(name)
	if !ok {
		return fmt.Errorf("invalid label name %q", name)
	}
	if old, dup := m[s]; dup && old != value {
		return fmt.Errorf("duplicate label name %q (from %q)", s, name)
	}
	m[s] = value
	return nil
}

func sortedLabels(m map[string]string) labels {
	out := make(labels, 0, len(m))
	for k, v := range m {
		out = append(out, label{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// baseLabels: a RawProfileSeries' labels, names unique, service_name defaulted, the ingester's
// private labels removed.
func baseLabels(in []*typesv1.LabelPair) (map[string]string, error) {
	raw := map[string]bool{}
	m := map[string]string{}
	for _, l := range in {
		if raw[l.Name] {
			return nil, fmt.Errorf("duplicate label %q", l.Name)
		}
		raw[l.Name] = true
		if l.Name == "__delta__" || l.Name == "__order__" || l.Name == "__otel__" {
			continue
		}
		if err := setLabel(m, l.Name, l.Value); err != nil {
			return nil, err
		}
	}
	if m[labelServiceName] == "" {
		m[labelServiceName] = serviceFallback
	}
	return m, nil
}

func decodeProfile(raw []byte) (*profilev1.Profile, error) {
	if len(raw) >= 2 && raw[0] == 0x1f && raw[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, err
		}
		if raw, err = io.ReadAll(zr); err != nil {
			return nil, err
		}
	}
	p := &profilev1.Profile{}
	if err := proto.Unmarshal(raw, p); err != nil {
		return nil, err
	}
	if len(p.StringTable) == 0 || p.StringTable[0] != "" {
		return nil, errors.New("string 0 should be empty string")
	}
	if len(p.SampleType) == 0 {
		return nil, errors.New("empty profile")
	}
	str := func(i int64) (string, error) {
		if i < 0 || i >= int64(len(p.StringTable)) {
			return "", fmt.Errorf("string index %d out of range", i)
		}
		return p.StringTable[i], nil
	}
	for _, st := range p.SampleType {
		if _, err := str(st.Type); err != nil {
			return nil, err
		}
		if _, err := str(st.Unit); err != nil {
			return nil, err
		}
		if strings.Contains(p.StringTable[st.Type], "-") {
			return nil, errors.New("sample type contains -")
		}
	}
	for _, s := range p.Sample {
		if len(s.Value) != len(p.SampleType) {
			return nil, errors.New("sample value length mismatch")
		}
		for _, l := range s.Label {
			if _, err := str(l.Key); err != nil {
				return nil, err
			}
			if _, err := str(l.Str); err != nil {
				return nil, err
			}
		}
	}
	return p, nil
}

// stacks resolves every location to its frames, leaf first (a location's lines are innermost
// first, as pprof writes inlined frames).
func stacker(p *profilev1.Profile) (func([]uint64) ([]string, error), error) {
	funcs := map[uint64]string{}
	for _, f := range p.Function {
		if f.Name < 0 || f.Name >= int64(len(p.StringTable)) {
			return nil, errors.New("function name out of range")
		}
		funcs[f.Id] = p.StringTable[f.Name]
	}
	locs := map[uint64][]string{}
	for _, l := range p.Location {
		if l.Id == 0 {
			return nil, errors.New("location id is 0")
		}
		var frames []string
		for _, ln := range l.Line {
			frames = append(frames, funcs[ln.FunctionId])
		}
		if len(l.Line) == 0 {
			frames = append(frames, fmt.Sprintf("0x%x", l.Address))
		}
		locs[l.Id] = frames
	}
	return func(ids []uint64) ([]string, error) {
		var out []string
		for _, id := range ids {
			f, ok := locs[id]
			if !ok {
				return nil, fmt.Errorf("unknown location %d", id)
			}
			out = append(out, f...)
		}
		return out, nil
	}, nil
}

func spanIDOf(s string) (uint64, bool) {
	if len(s) != 16 {
		return 0, false
	}
	var b [8]byte
	if _, err := hex.Decode(b[:], []byte(s)); err != nil {
		return 0, false
	}
	return binary.LittleEndian.Uint64(b[:]), true
}

func spanHex(id uint64) string {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], id)
	return hex.EncodeToString(b[:])
}

// splitProfile turns one pushed pprof into its series (one per label group and sample type).
func splitProfile(raw []byte, base map[string]string, now int64) ([]parsedSeries, error) {
	p, err := decodeProfile(raw)
	if err != nil {
		return nil, err
	}
	stackOf, err := stacker(p)
	if err != nil {
		return nil, err
	}
	ts := p.TimeNanos
	if ts <= 0 {
		ts = now
	}
	name := base[labelName]
	var ptype, punit string
	if p.PeriodType != nil {
		ptype, punit = p.StringTable[p.PeriodType.Type], p.StringTable[p.PeriodType.Unit]
	}
	type group struct {
		labels  labels
		samples []sample // one per (sample, type): values per type kept below
		values  [][]int64
	}
	groups := map[string]*group{}
	var order []string
	for _, s := range p.Sample {
		neg, pos := false, false
		for _, v := range s.Value {
			neg = neg || v < 0
			pos = pos || v > 0
		}
		if neg || !pos {
			continue // Normalize drops them
		}
		// string labels only, sorted by (key, value) string index, profile_id read as span_id
		ls := make([]*profilev1.Label, 0, len(s.Label))
		for _, l := range s.Label {
			if l.Str != 0 {
				ls = append(ls, l)
			}
		}
		sort.SliceStable(ls, func(i, j int) bool {
			ki, kj := labelKey(p, ls[i]), labelKey(p, ls[j])
			if ki != kj {
				return ki < kj
			}
			return ls[i].Str < ls[j].Str
		})
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		var span uint64
		spanSet := false
		for _, l := range ls {
			key, val := p.StringTable[l.Key], p.StringTable[l.Str]
			switch key {
			case "span_id", "profile_id":
				if id, ok := spanIDOf(val); ok && !spanSet {
					span, spanSet = id, true
				}
				continue
			case "trace_id":
				continue
			}
			sk, ok := sanitizeName(key)
			if !ok {
				return nil, fmt.Errorf("invalid label name %q", key)
			}
			if _, have := m[sk]; have {
				continue // the series' own labels win, then the first of a name
			}
			m[sk] = val
		}
		stack, err := stackOf(s.LocationId)
		if err != nil {
			return nil, err
		}
		lbls := sortedLabels(m)
		k := lbls.key()
		g := groups[k]
		if g == nil {
			g = &group{labels: lbls}
			groups[k] = g
			order = append(order, k)
		}
		g.samples = append(g.samples, sample{stack: stack, spanID: span})
		g.values = append(g.values, s.Value)
	}
	var out []parsedSeries
	for _, k := range order {
		g := groups[k]
		for t, st := range p.SampleType {
			ps := parsedSeries{labels: g.labels, name: name, ts: ts, ptype: ptype, punit: punit,
				sampleType: p.StringTable[st.Type], sampleUnit: p.StringTable[st.Unit]}
			for i, smp := range g.samples {
				if v := g.values[i][t]; v != 0 {
					smp.value = v
					ps.samples = append(ps.samples, smp)
				}
			}
			if len(ps.samples) > 0 {
				out = append(out, ps)
			}
		}
	}
	return out, nil
}

func labelKey(p *profilev1.Profile, l *profilev1.Label) int64 {
	// Pyroscope renames profile_id to span_id before sorting: both sort as span_id's index.
	if p.StringTable[l.Key] == "profile_id" {
		for i, s := range p.StringTable {
			if s == "span_id" {
				return int64(i)
			}
		}
		return int64(len(p.StringTable))
	}
	return l.Key
}

func (st *store) add(tenant string, parsed []parsedSeries) {
	st.mu.Lock()
	defer st.mu.Unlock()
	t := st.tenants[tenant]
	if t == nil {
		t = map[string]*series{}
		st.tenants[tenant] = t
	}
	for _, ps := range parsed {
		k := ps.typeID() + "|" + ps.labels.key()
		s := t[k]
		if s == nil {
			s = &series{labels: ps.labels, profileType: ps.typeID(), name: ps.name, sampleType: ps.sampleType,
				sampleUnit: ps.sampleUnit, periodType: ps.ptype, periodUnit: ps.punit}
			t[k] = s
		}
		st.seq++
		s.profiles = append(s.profiles, &profile{seq: st.seq, id: ps.id, ts: ps.ts, sample: ps.samples})
	}
}

// ---- compaction -------------------------------------------------------------------------------

func (st *store) collisionKey(ts int64) int64 {
	if st.dedupMs {
		return ts / 1_000_000
	}
	return ts
}

// view is what queries see of a series: after compaction (one profile per timestamp) or all.
func (st *store) view(s *series, compacted bool) []*profile {
	if !compacted {
		return s.profiles
	}
	keep := map[int64]*profile{}
	var order []int64
	for _, p := range s.profiles {
		k := st.collisionKey(p.ts)
		if _, seen := keep[k]; !seen {
			order = append(order, k)
			keep[k] = p
		} else if st.keepLast {
			keep[k] = p
		}
	}
	out := make([]*profile, 0, len(order))
	for _, k := range order {
		out = append(out, keep[k])
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].ts < out[j].ts })
	return out
}

// seriesOf: the tenant's series, in a stable order.
func (st *store) seriesOf(tenant string) []*series {
	t := st.tenants[tenant]
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]*series, 0, len(keys))
	for _, k := range keys {
		out = append(out, t[k])
	}
	return out
}
