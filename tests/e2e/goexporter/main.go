// goexporter exports CPU profiles to spanprof the way the OpenTelemetry eBPF profiler does: built
// with the Collector's pdata/pprofile (shared dictionary with zero entries first, a stack table,
// frame types as location attributes, thread.id per sample, timestamps only) and sent by
// pprofileotlp's gRPC client with gzip compression. For spanprof's e2e tests.
//
//	goexporter -addr 127.0.0.1:4317 -service NAME -span HEX16 -trace HEX32 -t0 UNIXNANO
//
// It prints the partial-success count ("rejected=N") and, on stdout, one line per sent stack:
// "root;...;leaf<TAB>observations<TAB>linked(0|1)".
package main

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pprofile"
	"go.opentelemetry.io/collector/pdata/pprofile/pprofileotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/encoding/gzip"
)

type dict struct {
	d       pprofile.ProfilesDictionary
	strings map[string]int32
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

func main() {
	addr := flag.String("addr", "127.0.0.1:4317", "spanprof OTLP/gRPC address")
	service := flag.String("service", "go-ebpf-like", "resource service.name")
	spanHex := flag.String("span", "", "span id (16 hex) to link the first stack's samples to")
	traceHex := flag.String("trace", "", "trace id (32 hex) of that span")
	t0 := flag.Int64("t0", time.Now().Add(-20*time.Second).UnixNano(), "profile start, unix ns")
	flag.Parse()

	profiles := pprofile.NewProfiles()
	x := &dict{d: profiles.Dictionary(), strings: map[string]int32{}}
	// Every table starts with its zero value: index 0 means "not set" (OTLP profiles spec).
	x.str("")
	x.d.MappingTable().AppendEmpty()
	x.d.LocationTable().AppendEmpty()
	x.d.FunctionTable().AppendEmpty()
	x.d.LinkTable().AppendEmpty()
	x.d.AttributeTable().AppendEmpty()
	x.d.StackTable().AppendEmpty()

	attr := func(key string, set func(pcommon.Value)) int32 {
		kv := x.d.AttributeTable().AppendEmpty()
		kv.SetKeyStrindex(x.str(key))
		set(kv.Value())
		return int32(x.d.AttributeTable().Len() - 1)
	}
	native := attr("profile.frame.type", func(v pcommon.Value) { v.SetStr("native") })
	tid := attr("thread.id", func(v pcommon.Value) { v.SetInt(4711) })
	tname := attr("thread.name", func(v pcommon.Value) { v.SetStr("worker") })

	m := x.d.MappingTable().AppendEmpty()
	m.SetMemoryStart(0x400000)
	m.SetMemoryLimit(0x800000)
	m.SetFilenameStrindex(x.str("/usr/bin/go-ebpf-like"))
	locs := map[string]int32{}
	loc := func(name string) int32 {
		if i, ok := locs[name]; ok {
			return i
		}
		f := x.d.FunctionTable().AppendEmpty()
		f.SetNameStrindex(x.str(name))
		f.SetFilenameStrindex(x.str("main.go"))
		l := x.d.LocationTable().AppendEmpty()
		l.SetMappingIndex(1)
		l.SetAddress(0x401000 + uint64(16*len(locs)))
		l.Lines().AppendEmpty().SetFunctionIndex(int32(x.d.FunctionTable().Len() - 1))
		l.AttributeIndices().Append(native)
		locs[name] = int32(x.d.LocationTable().Len() - 1)
		return locs[name]
	}
	link := int32(0)
	if *spanHex != "" {
		var sid pcommon.SpanID
		var trid pcommon.TraceID
		b, err := hex.DecodeString(*spanHex)
		if err != nil || len(b) != 8 {
			fmt.Fprintln(os.Stderr, "bad -span")
			os.Exit(2)
		}
		copy(sid[:], b)
		if b, err = hex.DecodeString(*traceHex); err == nil && len(b) == 16 {
			copy(trid[:], b)
		}
		l := x.d.LinkTable().AppendEmpty()
		l.SetSpanID(sid)
		l.SetTraceID(trid)
		link = int32(x.d.LinkTable().Len() - 1)
	}

	rp := profiles.ResourceProfiles().AppendEmpty()
	rp.Resource().Attributes().PutStr("service.name", *service)
	rp.Resource().Attributes().PutInt("process.pid", 31337)
	sp := rp.ScopeProfiles().AppendEmpty()
	sp.Scope().SetName("go.opentelemetry.io/ebpf-profiler")
	prof := sp.Profiles().AppendEmpty()
	prof.SampleType().SetTypeStrindex(x.str("samples"))
	prof.SampleType().SetUnitStrindex(x.str("count"))
	prof.PeriodType().SetTypeStrindex(x.str("cpu"))
	prof.PeriodType().SetUnitStrindex(x.str("nanoseconds"))
	prof.SetPeriod(50_000_000)
	prof.SetTime(pcommon.Timestamp(*t0))
	prof.SetDurationNano(uint64(5 * time.Second))

	stacks := []struct {
		frames []string // root first
		obs    int
		linked bool
	}{
		{[]string{"main.main", "main.serve", "main.handle"}, 5, true},
		{[]string{"main.main", "runtime.gcBgMarkWorker"}, 3, false},
		{[]string{"main.main", "main.serve", "encoding/json.Marshal"}, 2, false},
	}
	for _, s := range stacks {
		st := x.d.StackTable().AppendEmpty()
		for i := len(s.frames) - 1; i >= 0; i-- { // leaf first
			st.LocationIndices().Append(loc(s.frames[i]))
		}
		smp := prof.Samples().AppendEmpty()
		smp.SetStackIndex(int32(x.d.StackTable().Len() - 1))
		smp.AttributeIndices().Append(tid, tname)
		if s.linked {
			smp.SetLinkIndex(link)
		}
		for k := 0; k < s.obs; k++ {
			smp.TimestampsUnixNano().Append(uint64(*t0) + uint64(k)*50_000_000)
		}
		linked := 0
		if s.linked && link != 0 {
			linked = 1
		}
		fmt.Printf("%s\t%d\t%d\n", strings.Join(s.frames, ";"), s.obs, linked)
	}

	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := pprofileotlp.NewGRPCClient(conn).Export(ctx, pprofileotlp.NewExportRequestFromProfiles(profiles),
		grpc.UseCompressor("gzip"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "export:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "rejected=%d %s\n", resp.PartialSuccess().RejectedProfiles(), resp.PartialSuccess().ErrorMessage())
}
