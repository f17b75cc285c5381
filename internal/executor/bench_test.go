package executor

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/functions"
	"github.com/aegis-edge/aegis/internal/sandbox"
	"github.com/aegis-edge/aegis/internal/testutil"
)

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
	x, err := New(context.Background(), Config{Pool: sandbox.Config{Size: benchWorkers()}})
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
