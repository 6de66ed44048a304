// gopdatajson sends eBPF-shaped profiles, and the spans they belong to, over OTLP/HTTP exactly as
// the OpenTelemetry Collector's otlphttp exporter sends them, once per encoding: every request is
// posted with `encoding: proto` to one tenant and with `encoding: json` to another. For spanprof's
// e2e test tests/e2e/test_otlp_json_pdata.py.
//
// What the exporter does (exporter/otlphttpexporter/otlp.go, factory.go, config/confighttp): the
// body is pprofileotlp.NewExportRequestFromProfiles(p).MarshalProto() or .MarshalJSON() (the
// latter is pprofile.JSONMarshaler; both turn resource and scope attributes into string-table
// references, keyStrindex / stringValueStrindex), POSTed to <endpoint>/v1development/profiles
// (traces: /v1/traces, ptraceotlp) with Content-Type application/x-protobuf or application/json,
// gzipped by default (Content-Encoding: gzip), User-Agent "<description>/<version> (os/arch)";
// a 2xx answer is read as an ExportResponse by its Content-Type (proto or JSON) for partial
// success. The tenant is a configured header (X-Scope-OrgID).
//
// The profiles are shaped as the eBPF profiler's reporter writes them: one shared dictionary per
// Export whose tables start with their zero entry, no service.name (process.pid and
// process.executable.* on the resource), a CPU profile (samples/count, period type cpu/nanoseconds,
// 50 ms period) and an off-CPU profile (off_cpu/nanoseconds, no period type, one value per
// timestamp) per process, several timestamps per Sample, thread.id and thread.name per Sample,
// frame types as location attributes, native frames without names (address, mapping with a GNU
// build id), Go / Python / kernel frames with names. Some samples link to a span of another thread
// (OTLP Link), the rest are correlated by thread and time.
//
//	gopdatajson -url http://127.0.0.1:4040 -pb-tenant pb -json-tenant js -t0 UNIXNANO [-seed N]
//
// stdout is the oracle, computed here from what was sent (tab-separated):
//
//	stack <type> <frames root first, ';'-joined> <value>      totals per profile type
//	span <span hex> <type> <frames> <value>                  what each span must hold
//	linked <span hex> <parent hex> <trace hex>               spans that samples link to
//	service <name>                                           services of the processes
//	sent <signal> <encoding> <requests> <items> <samples>    per tenant; items: spans or Profile messages
//
// Partial successes are reported on stderr ("rejected=<signal>:<encoding>:N") and make it exit 1.
package main

import (
	"bytes"
	"compress/gzip"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pprofile"
	"go.opentelemetry.io/collector/pdata/pprofile/pprofileotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

const (
	ms        = uint64(time.Millisecond)
	period    = 50 * ms // the eBPF profiler's default 20 Hz
	cpuType   = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
	offType   = "off_cpu:off_cpu:nanoseconds::"
	exports   = 2              // report intervals, one Export each
	interval  = 10 * 1000 * ms // per Export
	rootLen   = 1000 * ms      // spans per thread: back-to-back 1 s roots ...
	childLen  = 250 * ms       // ... each with 3 children of 250 ms, then a 250 ms gap
	userAgent = "OpenTelemetry Collector/0.164.0"
)

type frame struct {
	name    string // "" for a native frame the profiler could not name
	kind    string // profile.frame.type
	mapping int    // index into proc.mappings + 1; 0 = none
	addr    uint64
	file    string
	line    int64
}

type mapping struct {
	file, buildID string
	start, limit  uint64
}

type proc struct {
	pid         int64
	exe, path   string
	service     string
	threads     int
	mappings    []mapping
	cpu, off    [][]frame // stacks, root first
	threadSpans [][]*span // per thread, by start
	linkTargets []*span
	firstTid    int64
}

type span struct {
	id     pcommon.SpanID
	trace  pcommon.TraceID
	parent *span
	p      *proc
	tid    int64
	start  uint64
	end    uint64
	name   string
}

func (s *span) hex() string { return fmt.Sprintf("%x", s.id[:]) }

func (f frame) display(p *proc) string {
	if f.name != "" {
		return f.name
	}
	return fmt.Sprintf("%s 0x%x %s", f.kind, f.addr, path.Base(p.mappings[f.mapping-1].file))
}

// ---- the scenario -----------------------------------------------------------------------------

type scenario struct {
	rng   *rand.Rand
	t0    uint64
	procs []*proc
	ids   map[pcommon.SpanID]bool
}

func (sc *scenario) spanID() pcommon.SpanID {
	for {
		var id pcommon.SpanID
		for i := range id {
			id[i] = byte(sc.rng.IntN(256))
		}
		if id[0] != 0 && !sc.ids[id] {
			sc.ids[id] = true
			return id
		}
	}
}

func (sc *scenario) traceID() pcommon.TraceID {
	var id pcommon.TraceID
	for i := range id {
		id[i] = byte(sc.rng.IntN(256))
	}
	id[0] |= 1
	return id
}

func buildID(rng *rand.Rand) string {
	b := make([]byte, 20)
	for i := range b {
		b[i] = byte(rng.IntN(256))
	}
	return fmt.Sprintf("%x", b)
}

var kernelLeaves = [][]string{
	{"entry_SYSCALL_64_after_hwframe", "do_syscall_64", "__x64_sys_write", "ksys_write"},
	{"entry_SYSCALL_64_after_hwframe", "do_syscall_64", "__x64_sys_recvfrom"},
	{"asm_sysvec_apic_timer_interrupt", "sysvec_apic_timer_interrupt"},
}

var offLeaves = [][]string{
	{"entry_SYSCALL_64_after_hwframe", "do_syscall_64", "__x64_sys_futex", "futex_wait", "schedule", "finish_task_switch.isra.0"},
	{"entry_SYSCALL_64_after_hwframe", "do_syscall_64", "__x64_sys_epoll_wait", "schedule_hrtimeout_range", "schedule", "finish_task_switch.isra.0"},
	{"entry_SYSCALL_64_after_hwframe", "do_syscall_64", "__x64_sys_clock_nanosleep", "do_nanosleep", "schedule", "finish_task_switch.isra.0"},
}

func kernel(names []string) []frame {
	out := make([]frame, len(names))
	for i, n := range names {
		out[i] = frame{name: n, kind: "kernel"}
	}
	return out
}

// goProc: a Go server; the profiler names Go frames itself.
func (sc *scenario) goProc(pid int64, service string, threads int) *proc {
	p := &proc{pid: pid, exe: "checkout-server", path: "/srv/checkout/checkout-server", service: service,
		threads: threads, firstTid: pid + 1}
	p.mappings = []mapping{{p.path, buildID(sc.rng), 0x400000, 0x1200000}}
	gf := func(name string, i int) frame {
		return frame{name: name, kind: "go", mapping: 1, addr: 0x401000 + uint64(len(name))*0x40 + uint64(i)*0x1000,
			file: "/srv/checkout/main.go", line: int64(10 + i)}
	}
	mk := func(k int, leaf []frame) []frame {
		st := []frame{gf("runtime.goexit", 0), gf("net/http.(*conn).serve", 1),
			gf(fmt.Sprintf("main.(*api).handle%d", k%7), 2)}
		for d := 0; d < 1+k%4; d++ {
			st = append(st, gf(fmt.Sprintf("main.step%d_%d", k, d), 3+d))
		}
		return append(st, leaf...)
	}
	for k := 0; k < 36; k++ {
		var leaf []frame
		if k%3 == 0 {
			leaf = kernel(kernelLeaves[k%len(kernelLeaves)])
		}
		p.cpu = append(p.cpu, mk(k, leaf))
	}
	for k := 0; k < 6; k++ {
		p.off = append(p.off, mk(100+k, append([]frame{gf("runtime.futex", 20)}, kernel(offLeaves[k%len(offLeaves)])...)))
	}
	return p
}

// pyProc: CPython; the interpreter's native frames come unnamed (address + build id), Python
// frames named.
func (sc *scenario) pyProc(pid int64, service string, threads int) *proc {
	p := &proc{pid: pid, exe: "python3.12", path: "/usr/bin/python3.12", service: service, threads: threads,
		firstTid: pid + 1}
	p.mappings = []mapping{{p.path, buildID(sc.rng), 0x400000, 0xa00000},
		{"/usr/lib/x86_64-linux-gnu/libc.so.6", buildID(sc.rng), 0x7f3a10000000, 0x7f3a10200000}}
	native := func(m int, addr uint64) frame { return frame{kind: "native", mapping: m, addr: addr} }
	py := func(name string, line int64) frame {
		return frame{name: name, kind: "python", file: "/srv/ledger/app.py", line: line}
	}
	mk := func(k int, leaf []frame) []frame {
		st := []frame{native(1, 0x4a1f0), native(1, 0x52c330), native(1, 0x5d2e10), py("<module>", 1),
			py("serve_forever", 40), py(fmt.Sprintf("handle_%d", k%5), 60+int64(k%5))}
		for d := 0; d < 1+k%3; d++ {
			st = append(st, native(1, 0x5f0000+uint64(d)*0x120), py(fmt.Sprintf("ledger_step_%d_%d", k, d), int64(100+k*10+d)))
		}
		return append(st, leaf...)
	}
	for k := 0; k < 30; k++ {
		var leaf []frame
		switch k % 4 {
		case 0:
			leaf = []frame{native(2, 0x9e2c0+uint64(k%3)*0x10)}
		case 1:
			leaf = append([]frame{native(2, 0x11a7b0)}, kernel(kernelLeaves[k%len(kernelLeaves)])...)
		}
		p.cpu = append(p.cpu, mk(k, leaf))
	}
	for k := 0; k < 6; k++ {
		p.off = append(p.off, mk(200+k, append([]frame{native(2, 0x91b40)}, kernel(offLeaves[k%len(offLeaves)])...)))
	}
	return p
}

// spans: per thread, back-to-back 1 s roots from t0-100ms to past the last observation, each
// with three 250 ms children; the last quarter of every root has no child.
func (sc *scenario) spans(p *proc) {
	from := sc.t0 - 100*ms
	to := sc.t0 + exports*interval + 200*ms
	p.threadSpans = make([][]*span, p.threads)
	for t := 0; t < p.threads; t++ {
		tid := p.firstTid + int64(t)
		for start := from; start < to; start += rootLen {
			root := &span{id: sc.spanID(), trace: sc.traceID(), p: p, tid: tid, start: start,
				end: start + rootLen, name: fmt.Sprintf("GET /api/v%d", t%3)}
			p.threadSpans[t] = append(p.threadSpans[t], root)
			for c := uint64(0); c < 3; c++ {
				p.threadSpans[t] = append(p.threadSpans[t], &span{id: sc.spanID(), trace: root.trace,
					parent: root, p: p, tid: tid, start: start + c*childLen, end: start + (c+1)*childLen,
					name: fmt.Sprintf("db.query.%d", c)})
			}
		}
	}
	// the spans that samples of other threads link to (work handed to a pool thread)
	for i := 0; i < 8; i++ {
		t := sc.rng.IntN(p.threads)
		var children []*span
		for _, s := range p.threadSpans[t] {
			if s.parent != nil {
				children = append(children, s)
			}
		}
		p.linkTargets = append(p.linkTargets, children[sc.rng.IntN(len(children))])
	}
}

// ---- the oracle -------------------------------------------------------------------------------

type oracle struct {
	totals map[[2]string]uint64           // (type, stack) -> value
	spans  map[*span]map[[2]string]uint64 // span -> (type, stack) -> value
}

func (o *oracle) add(s *span, typ, stack string, v uint64) {
	if o.spans[s] == nil {
		o.spans[s] = map[[2]string]uint64{}
	}
	o.spans[s][[2]string{typ, stack}] += v
}

func stackKey(p *proc, st []frame) string {
	names := make([]string, len(st))
	for i, f := range st {
		names[i] = f.display(p)
	}
	return strings.Join(names, ";")
}

// cpuObservation: a linked observation belongs to the linked span and its ancestors (same
// process); the others to every span of their thread that covers the timestamp.
func (o *oracle) cpuObservation(p *proc, t int, ts uint64, link *span, stack string) {
	if link != nil {
		for s := link; s != nil; s = s.parent {
			o.add(s, cpuType, stack, period)
		}
		return
	}
	for _, s := range p.threadSpans[t] {
		if s.start <= ts && ts < s.end {
			o.add(s, cpuType, stack, period)
		}
	}
}

// offObservation: the thread was off CPU during [ts-d, ts]; each span of the thread gets the
// part inside it.
func (o *oracle) offObservation(p *proc, t int, ts, d uint64, stack string) {
	for _, s := range p.threadSpans[t] {
		lo, hi := max(s.start, ts-d), min(s.end, ts)
		if hi > lo {
			o.add(s, offType, stack, hi-lo)
		}
	}
}

// ---- pdata ------------------------------------------------------------------------------------

type dict struct {
	d       pprofile.ProfilesDictionary
	strings map[string]int32
	attrs   map[string]int32
	locs    map[string]int32
	stacks  map[string]int32
	links   map[*span]int32
	maps    map[string]int32
}

func newDict(d pprofile.ProfilesDictionary) *dict {
	x := &dict{d: d, strings: map[string]int32{}, attrs: map[string]int32{}, locs: map[string]int32{},
		stacks: map[string]int32{}, links: map[*span]int32{}, maps: map[string]int32{}}
	x.str("")
	d.MappingTable().AppendEmpty()
	d.LocationTable().AppendEmpty()
	d.FunctionTable().AppendEmpty()
	d.LinkTable().AppendEmpty()
	d.AttributeTable().AppendEmpty()
	d.StackTable().AppendEmpty()
	return x
}

func (x *dict) str(s string) int32 {
	if i, ok := x.strings[s]; ok {
		return i
	}
	i := int32(x.d.StringTable().Len())
	x.d.StringTable().Append(s)
	x.strings[s] = i
	return i
}

func (x *dict) attr(key string, v any) int32 {
	k := fmt.Sprintf("%s=%T:%v", key, v, v)
	if i, ok := x.attrs[k]; ok {
		return i
	}
	kv := x.d.AttributeTable().AppendEmpty()
	kv.SetKeyStrindex(x.str(key))
	switch v := v.(type) {
	case string:
		kv.Value().SetStr(v)
	case int64:
		kv.Value().SetInt(v)
	}
	x.attrs[k] = int32(x.d.AttributeTable().Len() - 1)
	return x.attrs[k]
}

func (x *dict) mapping(m mapping) int32 {
	if i, ok := x.maps[m.file]; ok {
		return i
	}
	mp := x.d.MappingTable().AppendEmpty()
	mp.SetMemoryStart(m.start)
	mp.SetMemoryLimit(m.limit)
	mp.SetFilenameStrindex(x.str(m.file))
	mp.AttributeIndices().Append(x.attr("process.executable.build_id.gnu", m.buildID))
	x.maps[m.file] = int32(x.d.MappingTable().Len() - 1)
	return x.maps[m.file]
}

func (x *dict) location(p *proc, f frame) int32 {
	k := fmt.Sprintf("%d/%+v", p.pid, f)
	if i, ok := x.locs[k]; ok {
		return i
	}
	l := x.d.LocationTable().AppendEmpty()
	if f.mapping > 0 {
		l.SetMappingIndex(x.mapping(p.mappings[f.mapping-1]))
	}
	l.SetAddress(f.addr)
	if f.name != "" {
		fn := x.d.FunctionTable().AppendEmpty()
		fn.SetNameStrindex(x.str(f.name))
		fn.SetSystemNameStrindex(x.str(f.name))
		if f.file != "" {
			fn.SetFilenameStrindex(x.str(f.file))
		}
		ln := l.Lines().AppendEmpty()
		ln.SetFunctionIndex(int32(x.d.FunctionTable().Len() - 1))
		ln.SetLine(f.line)
	}
	l.AttributeIndices().Append(x.attr("profile.frame.type", f.kind))
	x.locs[k] = int32(x.d.LocationTable().Len() - 1)
	return x.locs[k]
}

func (x *dict) stack(p *proc, st []frame) int32 {
	k := fmt.Sprintf("%d/%s", p.pid, stackKey(p, st))
	if i, ok := x.stacks[k]; ok {
		return i
	}
	s := x.d.StackTable().AppendEmpty()
	for i := len(st) - 1; i >= 0; i-- { // leaf first
		s.LocationIndices().Append(x.location(p, st[i]))
	}
	x.stacks[k] = int32(x.d.StackTable().Len() - 1)
	return x.stacks[k]
}

func (x *dict) link(s *span) int32 {
	if i, ok := x.links[s]; ok {
		return i
	}
	l := x.d.LinkTable().AppendEmpty()
	l.SetTraceID(s.trace)
	l.SetSpanID(s.id)
	x.links[s] = int32(x.d.LinkTable().Len() - 1)
	return x.links[s]
}

type obs struct {
	ts, v uint64
}

// runs splits timestamps into Samples of 1..n timestamps.
func runs(rng *rand.Rand, all []obs, n int) [][]obs {
	var out [][]obs
	for i := 0; i < len(all); {
		k := min(1+rng.IntN(n), len(all)-i)
		out = append(out, all[i:i+k])
		i += k
	}
	return out
}

// export builds report interval e: every process's CPU and off-CPU profile.
func (sc *scenario) export(e int, o *oracle) (pprofile.Profiles, int) {
	profiles := pprofile.NewProfiles()
	x := newDict(profiles.Dictionary())
	start := sc.t0 + uint64(e)*interval
	ticks := int(interval / period)
	nsamples := 0
	for _, p := range sc.procs {
		rp := profiles.ResourceProfiles().AppendEmpty()
		rp.Resource().Attributes().PutInt("process.pid", p.pid)
		rp.Resource().Attributes().PutStr("process.executable.name", p.exe)
		rp.Resource().Attributes().PutStr("process.executable.path", p.path)
		rp.Resource().Attributes().PutStr("host.name", "ebpf-node-1")
		sp := rp.ScopeProfiles().AppendEmpty()
		sp.Scope().SetName("go.opentelemetry.io/ebpf-profiler")
		sp.Scope().SetVersion("v0.0.202601")
		rp.SetSchemaUrl("https://opentelemetry.io/schemas/1.34.0")

		cpu := sp.Profiles().AppendEmpty()
		cpu.SampleType().SetTypeStrindex(x.str("samples"))
		cpu.SampleType().SetUnitStrindex(x.str("count"))
		cpu.PeriodType().SetTypeStrindex(x.str("cpu"))
		cpu.PeriodType().SetUnitStrindex(x.str("nanoseconds"))
		cpu.SetPeriod(int64(period))
		cpu.SetTime(pcommon.Timestamp(start))
		cpu.SetDurationNano(interval)
		off := sp.Profiles().AppendEmpty()
		off.SampleType().SetTypeStrindex(x.str("off_cpu"))
		off.SampleType().SetUnitStrindex(x.str("nanoseconds"))
		off.SetTime(pcommon.Timestamp(start))
		off.SetDurationNano(interval)

		for t := 0; t < p.threads; t++ {
			tid := p.firstTid + int64(t)
			attrs := []int32{x.attr("thread.id", tid), x.attr("thread.name", fmt.Sprintf("worker-%d", t%5))}
			// CPU: an observation on most ticks, stacks skewed toward the first ones
			byStack := map[int][]obs{}
			for j := 0; j < ticks; j++ {
				if sc.rng.IntN(10) < 2 {
					continue
				}
				k := min(sc.rng.IntN(len(p.cpu)), sc.rng.IntN(len(p.cpu)))
				byStack[k] = append(byStack[k], obs{ts: start + uint64(j)*period + sc.rng.Uint64N(period/2)})
			}
			for _, k := range sortedKeys(byStack) {
				key := stackKey(p, p.cpu[k])
				for _, run := range runs(sc.rng, byStack[k], 4) {
					s := cpu.Samples().AppendEmpty()
					s.SetStackIndex(x.stack(p, p.cpu[k]))
					s.AttributeIndices().Append(attrs...)
					var link *span
					if sc.rng.IntN(100) < 8 {
						link = p.linkTargets[sc.rng.IntN(len(p.linkTargets))]
						s.SetLinkIndex(x.link(link))
					}
					for _, ob := range run {
						s.TimestampsUnixNano().Append(ob.ts)
						o.totals[[2]string{cpuType, key}] += period
						o.cpuObservation(p, t, ob.ts, link, key)
					}
					nsamples++
				}
			}
			// off-CPU: the switch back in at ts after d ns off CPU
			byStack = map[int][]obs{}
			for j := 0; j < 12; j++ {
				ts := start + 100*ms + sc.rng.Uint64N(interval-100*ms)
				d := ms + sc.rng.Uint64N(90*ms)
				k := sc.rng.IntN(len(p.off))
				byStack[k] = append(byStack[k], obs{ts: ts, v: d})
			}
			for _, k := range sortedKeys(byStack) {
				key := stackKey(p, p.off[k])
				for _, run := range runs(sc.rng, byStack[k], 3) {
					s := off.Samples().AppendEmpty()
					s.SetStackIndex(x.stack(p, p.off[k]))
					s.AttributeIndices().Append(attrs...)
					for _, ob := range run {
						s.TimestampsUnixNano().Append(ob.ts)
						s.Values().Append(int64(ob.v))
						o.totals[[2]string{offType, key}] += ob.v
						o.offObservation(p, t, ob.ts, ob.v, key)
					}
					nsamples++
				}
			}
		}
	}
	return profiles, nsamples
}

func sortedKeys(m map[int][]obs) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	return keys
}

// traceRequests: the spans as an SDK's batch processor exports them, 512 per request in the order
// they end; each request has one resource per process.
func (sc *scenario) traceRequests() ([]ptrace.Traces, int) {
	var all []*span
	for _, p := range sc.procs {
		for _, ts := range p.threadSpans {
			all = append(all, ts...)
		}
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].end < all[j].end })
	var out []ptrace.Traces
	for i := 0; i < len(all); i += 512 {
		td := ptrace.NewTraces()
		scopes := map[*proc]ptrace.SpanSlice{}
		for _, s := range all[i:min(i+512, len(all))] {
			ss, ok := scopes[s.p]
			if !ok {
				rs := td.ResourceSpans().AppendEmpty()
				rs.Resource().Attributes().PutStr("service.name", s.p.service)
				rs.Resource().Attributes().PutInt("process.pid", s.p.pid)
				rs.Resource().Attributes().PutStr("host.name", "ebpf-node-1")
				scope := rs.ScopeSpans().AppendEmpty()
				scope.Scope().SetName("io.opentelemetry.sdk")
				ss = scope.Spans()
				scopes[s.p] = ss
			}
			out := ss.AppendEmpty()
			out.SetTraceID(s.trace)
			out.SetSpanID(s.id)
			out.SetName(s.name)
			if s.parent != nil {
				out.SetParentSpanID(s.parent.id)
				out.SetKind(ptrace.SpanKindClient)
			} else {
				out.SetKind(ptrace.SpanKindServer)
			}
			out.SetStartTimestamp(pcommon.Timestamp(s.start))
			out.SetEndTimestamp(pcommon.Timestamp(s.end))
			out.Attributes().PutInt("thread.id", s.tid)
		}
		out = append(out, td)
	}
	return out, len(all)
}

// ---- the otlphttp exporter's request ----------------------------------------------------------

type sender struct {
	client  *http.Client
	base    string
	tenants map[string]string // encoding -> tenant
}

// post sends one body as the exporter does and reads the answer's partial success the same way;
// returns the rejected count.
func (sd *sender) post(signal, encoding string, body []byte) int64 {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	_, _ = zw.Write(body)
	_ = zw.Close()
	urlPath := "/v1/traces"
	if signal == "profiles" {
		urlPath = "/v1development/profiles"
	}
	req, err := http.NewRequest(http.MethodPost, sd.base+urlPath, &b)
	if err != nil {
		fail("%v", err)
	}
	ct := "application/x-protobuf"
	if encoding == "json" {
		ct = "application/json"
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set("User-Agent", fmt.Sprintf("%s (%s/%s)", userAgent, runtime.GOOS, runtime.GOARCH))
	req.Header.Set("Content-Encoding", "gzip")
	req.Header.Set("X-Scope-OrgID", sd.tenants[encoding])
	resp, err := sd.client.Do(req)
	if err != nil {
		fail("%s %s: %v", signal, encoding, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		fail("%s %s: HTTP %d %s", signal, encoding, resp.StatusCode, data)
	}
	rct := resp.Header.Get("Content-Type")
	if len(data) == 0 || (rct != "application/x-protobuf" && rct != "application/json") {
		return 0 // what the exporter does: no partial success to read
	}
	if rct != ct {
		fail("%s %s: answered with Content-Type %s", signal, encoding, rct)
	}
	var rejected int64
	var msg string
	if signal == "profiles" {
		r := pprofileotlp.NewExportResponse()
		if encoding == "json" {
			err = r.UnmarshalJSON(data)
		} else {
			err = r.UnmarshalProto(data)
		}
		rejected, msg = r.PartialSuccess().RejectedProfiles(), r.PartialSuccess().ErrorMessage()
	} else {
		r := ptraceotlp.NewExportResponse()
		if encoding == "json" {
			err = r.UnmarshalJSON(data)
		} else {
			err = r.UnmarshalProto(data)
		}
		rejected, msg = r.PartialSuccess().RejectedSpans(), r.PartialSuccess().ErrorMessage()
	}
	if err != nil {
		fail("%s %s: answer does not parse: %v", signal, encoding, err)
	}
	if rejected != 0 || msg != "" {
		fmt.Fprintf(os.Stderr, "rejected=%s:%s:%d %s\n", signal, encoding, rejected, msg)
	}
	return rejected
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func main() {
	base := flag.String("url", "http://127.0.0.1:4040", "spanprof OTLP/HTTP base URL")
	pbTenant := flag.String("pb-tenant", "pb", "X-Scope-OrgID of the encoding: proto requests")
	jsTenant := flag.String("json-tenant", "js", "X-Scope-OrgID of the encoding: json requests")
	t0 := flag.Uint64("t0", uint64(time.Now().Add(-60*time.Second).UnixNano()), "first observation, unix ns")
	seed := flag.Uint64("seed", 1, "random seed")
	flag.Parse()

	sc := &scenario{rng: rand.New(rand.NewPCG(*seed, 22)), t0: *t0, ids: map[pcommon.SpanID]bool{}}
	sc.procs = []*proc{sc.goProc(4100, "checkout", 16), sc.pyProc(4200, "ledger", 14)}
	for _, p := range sc.procs {
		sc.spans(p)
	}
	o := &oracle{totals: map[[2]string]uint64{}, spans: map[*span]map[[2]string]uint64{}}
	var profiles []pprofile.Profiles
	var perExport []int
	samples := 0
	for e := 0; e < exports; e++ {
		p, n := sc.export(e, o)
		profiles = append(profiles, p)
		perExport = append(perExport, n)
		samples += n
	}
	traces, nspans := sc.traceRequests()

	sd := &sender{client: &http.Client{Timeout: 30 * time.Second}, base: strings.TrimRight(*base, "/"),
		tenants: map[string]string{"proto": *pbTenant, "json": *jsTenant}}
	rejected := int64(0)
	// spans first: the processes learn their services before their profiles arrive
	for _, td := range traces {
		req := ptraceotlp.NewExportRequestFromTraces(td)
		pb, err := req.MarshalProto()
		if err != nil {
			fail("%v", err)
		}
		js, err := req.MarshalJSON()
		if err != nil {
			fail("%v", err)
		}
		rejected += sd.post("traces", "proto", pb) + sd.post("traces", "json", js)
	}
	for i, pd := range profiles {
		// the same pdata, marshalled as the exporter does for each encoding
		req := pprofileotlp.NewExportRequestFromProfiles(pd)
		pb, err := req.MarshalProto()
		if err != nil {
			fail("%v", err)
		}
		js, err := req.MarshalJSON()
		if err != nil {
			fail("%v", err)
		}
		fmt.Fprintf(os.Stderr, "profiles export %d: %d samples, %d bytes protobuf, %d bytes JSON\n",
			i, perExport[i], len(pb), len(js))
		rejected += sd.post("profiles", "proto", pb) + sd.post("profiles", "json", js)
	}

	for k, v := range o.totals {
		fmt.Printf("stack\t%s\t%s\t%d\n", k[0], k[1], v)
	}
	for s, m := range o.spans {
		for k, v := range m {
			fmt.Printf("span\t%s\t%s\t%s\t%d\n", s.hex(), k[0], k[1], v)
		}
	}
	for _, p := range sc.procs {
		fmt.Printf("service\t%s\n", p.service)
		for _, s := range p.linkTargets {
			fmt.Printf("linked\t%s\t%s\t%x\n", s.hex(), s.parent.hex(), s.trace[:])
		}
	}
	nprof := 0
	for _, pd := range profiles {
		nprof += pd.ProfileCount()
	}
	for _, enc := range []string{"proto", "json"} {
		fmt.Printf("sent\ttraces\t%s\t%d\t%d\t0\n", enc, len(traces), nspans)
		fmt.Printf("sent\tprofiles\t%s\t%d\t%d\t%d\n", enc, len(profiles), nprof, samples)
	}
	if rejected != 0 {
		os.Exit(1)
	}
}
