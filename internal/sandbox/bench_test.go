//go:build linux

package sandbox

import (
	"context"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/testutil"
)

// BenchmarkAllowedSyscall compares an allowed call without a filter (this
// process) and inside a worker: "read" is hot (the kernel's cache allows it
// without running the filter), "prctl" is argument-checked (the filter runs).
func BenchmarkAllowedSyscall(b *testing.B) {
	for _, kind := range []string{"read", "prctl"} {
		b.Run(kind+"/unfiltered", func(b *testing.B) {
			call := benchCalls[kind]
			for b.Loop() {
				call()
			}
		})
		b.Run(kind+"/filtered", func(b *testing.B) {
			testutil.RequireRoot(b)
			p, err := NewPool(context.Background(), Config{Size: 1, Handler: HandlerSyscallBench})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			out, err := p.Do(context.Background(), "bench", []byte(kind+" "+strconv.Itoa(b.N)))
			if err != nil {
				b.Fatal(err)
			}
			ns, _ := strconv.ParseFloat(string(out), 64)
			b.ReportMetric(ns/float64(b.N), "ns/call")
		})
	}
}

// BenchmarkWorkerStart measures a worker from exec to ready (set-up,
// filter, listener handed over), one pool of one at a time.
func BenchmarkWorkerStart(b *testing.B) {
	testutil.RequireRoot(b)
	for b.Loop() {
		p, err := NewPool(context.Background(), Config{Size: 1, Handler: HandlerEcho})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		p.Close()
		b.StartTimer()
	}
}

// BenchmarkPeerBwrap is bubblewrap starting `true` with every namespace
// unshared, the peer of BenchmarkWorkerStart (Debian package bubblewrap).
// It binds the host root read-only: without a root bwrap cannot find true.
func BenchmarkPeerBwrap(b *testing.B) {
	testutil.RequireRoot(b)
	bwrap, err := exec.LookPath("bwrap")
	if err != nil {
		b.Skip("bwrap not installed (Debian package bubblewrap)")
	}
	for b.Loop() {
		if out, err := exec.Command(bwrap, "--unshare-all", "--ro-bind", "/", "/", "true").CombinedOutput(); err != nil {
			b.Fatalf("bwrap: %v: %s", err, out)
		}
	}
}

// BenchmarkRequest is one echo request through a worker against the same
// handler called in-process (the executor kept for tests and benchmarks),
// with the p99 latency of each.
func BenchmarkRequest(b *testing.B) {
	req := make([]byte, 1024)
	run := func(b *testing.B, do func() error) {
		lat := make([]time.Duration, 0, b.N)
		for b.Loop() {
			start := time.Now()
			if err := do(); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
	}
	b.Run("in-process", func(b *testing.B) {
		h := BuiltinHandlers()[HandlerEcho]
		run(b, func() error { _, err := h.Handle(context.Background(), req, nil); return err })
	})
	b.Run("sandboxed", func(b *testing.B) {
		testutil.RequireRoot(b)
		p, err := NewPool(context.Background(), Config{Size: 2, Handler: HandlerEcho})
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		run(b, func() error { _, err := p.Do(context.Background(), "bench", req); return err })
	})
}
