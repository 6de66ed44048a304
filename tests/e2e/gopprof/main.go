// gopprof writes real profiles with Go's runtime/pprof, for spanprof's Pyroscope /ingest
// round-trip tests: cpu.pb.gz (CPU, samples/count + cpu/nanoseconds) and heap.pb.gz (four
// sample types: alloc_objects, alloc_space, inuse_objects, inuse_space).
//
//	go run gopprof.go OUTDIR
package main

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"time"
)

var sink [][]byte

//go:noinline
func hashLoop(d time.Duration) {
	buf := make([]byte, 4096)
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		s := sha256.Sum256(buf)
		buf[0] = s[0]
	}
}

//go:noinline
func allocate(n int) {
	for i := 0; i < n; i++ {
		sink = append(sink, make([]byte, 1024+i%512))
	}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gopprof OUTDIR")
		os.Exit(2)
	}
	dir := os.Args[1]
	cpu, err := os.Create(filepath.Join(dir, "cpu.pb.gz"))
	if err != nil {
		panic(err)
	}
	if err := pprof.StartCPUProfile(cpu); err != nil {
		panic(err)
	}
	hashLoop(700 * time.Millisecond)
	pprof.StopCPUProfile()
	cpu.Close()

	runtime.MemProfileRate = 512
	allocate(20000)
	runtime.GC()
	heap, err := os.Create(filepath.Join(dir, "heap.pb.gz"))
	if err != nil {
		panic(err)
	}
	if err := pprof.Lookup("heap").WriteTo(heap, 0); err != nil {
		panic(err)
	}
	heap.Close()
}
