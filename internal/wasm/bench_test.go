package wasm

import (
	"context"
	"testing"
)

// benchServe measures one request end to end on a compiled module: a
// fresh instance, CGI environment, _start, stdout parsed, instance closed.
// Published anchors for instantiate-and-run: Lucet under 50 µs, Spin with
// pooling about 50 µs for a no-op.
func benchServe(b *testing.B, path string, host Host) {
	e := newTestEngine(b)
	l := DefaultLimits()
	m := compileFixture(b, e, path, l)
	inv := Invocation{Function: "bench", Version: "1", Request: getRequest("/bench", "a=1"), Host: host}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := m.Serve(ctx, inv); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/req")
}

func BenchmarkServeHelloWAT(b *testing.B) { benchServe(b, "../../examples/hello-wat/hello.wasm", nil) }

// BenchmarkServeHelloC runs the C echo example: wasi-libc start-up, the
// environment walk, two KV calls and a log call.
func BenchmarkServeHelloC(b *testing.B) {
	benchServe(b, "../../examples/echo-c/echo.wasm", &LocalHost{KV: NewMemoryKV(nil)})
}

// BenchmarkServeHelloGo runs the Go example: the Go runtime starts in
// every instance.
func BenchmarkServeHelloGo(b *testing.B) {
	benchServe(b, "../../examples/hello-go/hello.wasm", &LocalHost{KV: NewMemoryKV(nil)})
}

// BenchmarkServeHelloWATParallel serves hello from every core at once.
func BenchmarkServeHelloWATParallel(b *testing.B) {
	m := compileFixture(b, newTestEngine(b), "../../examples/hello-wat/hello.wasm", DefaultLimits())
	inv := Invocation{Function: "bench", Request: getRequest("/", "")}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := m.Serve(context.Background(), inv); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
