package sandbox

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/functions"
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

// benchGateway drives a registry behind an HTTP server in a closed loop:
// concurrency clients, b.N requests in all, each client sending its next
// request when the last is answered (as internal/loadgen does). It
// reports requests per second and the p99 latency.
func benchGateway(b *testing.B, g *gateway, path string) {
	const concurrency = 8
	tr := &http.Transport{MaxIdleConnsPerHost: concurrency, MaxConnsPerHost: concurrency, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	get := func() (time.Duration, error) {
		start := time.Now()
		resp, err := client.Get(g.srv.URL + path)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("status %d", resp.StatusCode)
		}
		return time.Since(start), nil
	}
	for range 2 * concurrency { // connections and every worker warm
		if _, err := get(); err != nil {
			b.Fatal(err)
		}
	}
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range concurrency {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				d, err := get()
				if err != nil {
					failed.Store(&err)
					return
				}
				lat[i] = d
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkGatewayInProcess and BenchmarkGatewaySandboxed serve the same
// module through the same gateway (a functions.Registry behind an HTTP
// server): in the node's process, and in sandboxed workers.
func BenchmarkGatewayInProcess(b *testing.B) {
	g := inProcessGateway(b)
	g.deploy(b, "hello", modHello, functions.Spec{Route: "/hello"})
	benchGateway(b, g, "/hello")
}

func BenchmarkGatewaySandboxed(b *testing.B) {
	testutil.RequireRoot(b)
	x, err := NewExecutor(context.Background(), ExecutorConfig{Pool: Config{Size: benchWorkers()}})
	if err != nil {
		b.Fatal(err)
	}
	defer x.Close()
	g := newGateway(b, x)
	g.deploy(b, "hello", modHello, functions.Spec{Route: "/hello"})
	benchGateway(b, g, "/hello")
}

// benchWorkers is the pool size of the sandboxed gateway benchmark:
// AEGIS_BENCH_WORKERS, or one per CPU. Since workers read their socket on
// the serving thread, more workers add no throughput and only queueing
// (2 vCPUs, 8 clients: 2, 4 and 8 workers all near 14k req/s; p99 2.2,
// 3.0 and 3.2 ms).
func benchWorkers() int {
	if n, err := strconv.Atoi(os.Getenv("AEGIS_BENCH_WORKERS")); err == nil && n > 0 {
		return n
	}
	return runtime.NumCPU()
}
