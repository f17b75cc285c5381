package wasm

import (
	"context"
	"encoding/binary"
	"syscall"
	"testing"
	"time"
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

// BenchmarkCompileAtTheLimits compiles, on a fresh engine each time, the
// modules that come closest to the shape limits in each direction (the
// worst compile times a deploy can ask for) and, for scale, the largest
// real module we build. docs/RATIONALE.md ("Module shape limits") has the
// figures.
func BenchmarkCompileAtTheLimits(b *testing.B) {
	nested := func(depth, n int) [][]byte {
		f := []byte{1, 1, 0x7f, 0x03, 0x40}
		for j := range depth - 1 {
			f = binary.AppendUvarint(append(f, 0x02, 0x40, 0x20, 0, 0x0d), uint64(j+1))
		}
		for range depth {
			f = append(f, 0x0b)
		}
		f = append(f, 0x0b)
		fs := make([][]byte, n)
		for i := range fs {
			fs[i] = f
		}
		return fs
	}
	weightOf := func(fs [][]byte) uint64 {
		s, err := inspect(generated(fs...).bytes())
		if err != nil {
			b.Fatal(err)
		}
		return Weight(s.Functions[0])
	}
	modules := []struct {
		name   string
		module func() []byte
	}{
		{"go-example", func() []byte { return readFixture(b, "../../examples/hello-go/hello.wasm") }},
		{"locals-x-branches", func() []byte {
			return generated(bombFunctions(969, 64, MaxModuleWeight/maxWeightFunction)...).bytes()
		}},
		{"branches", func() []byte {
			n := 1 // the most branches into one loop that one local allows
			for weightOf(bombFunctions(n+1, 1, 1)) <= MaxFunctionWeight {
				n++
			}
			one := bombFunctions(n, 1, 1)
			return generated(bombFunctions(n, 1, int(MaxModuleWeight/weightOf(one)))...).bytes()
		}},
		{"nesting", func() []byte {
			one := nested(MaxDepth, 1)
			return generated(nested(MaxDepth, int(MaxModuleWeight/weightOf(one)))...).bytes()
		}},
		{"locals-x-blocks", func() []byte {
			// MaxLocals locals, all written in a loop around n blocks
			// with a br_if each into its own end: one edge per label.
			f := func(n int) []byte {
				f := append(binary.AppendUvarint([]byte{1}, MaxLocals-1), 0x7f, 0x03, 0x40)
				for j := range n {
					l := binary.AppendUvarint(nil, uint64(j%MaxLocals))
					f = append(f, 0x02, 0x40, 0x20)
					f = append(append(f, l...), 0x41, 1, 0x6a, 0x22)
					f = append(append(f, l...), 0x0d, 0, 0x0b)
				}
				return append(f, 0x20, 0, 0x0d, 0, 0x0b, 0x0b)
			}
			n := 1
			for weightOf([][]byte{f(n + 1)}) <= MaxFunctionWeight {
				n++
			}
			one := [][]byte{f(n)}
			fs := make([][]byte, MaxModuleWeight/weightOf(one))
			for i := range fs {
				fs[i] = one[0]
			}
			return generated(fs...).bytes()
		}},
		{"functions", func() []byte { return generated(emptyFunctions(MaxFunctions)...).bytes() }},
	}
	for _, mod := range modules {
		b.Run(mod.name, func(b *testing.B) {
			module := mod.module()
			cpu := cpuTime()
			for b.Loop() {
				e, err := NewEngine(context.Background(), EngineOptions{})
				if err != nil {
					b.Fatal(err)
				}
				m, err := e.Compile(context.Background(), module, DefaultLimits())
				if err != nil {
					b.Fatal(err)
				}
				m.Close()
				e.Close(context.Background())
			}
			// CPU time too: on a shared machine it varies less than the
			// elapsed time.
			b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/compile")
			b.ReportMetric((cpuTime()-cpu).Seconds()/float64(b.N), "cpu-s/compile")
		})
	}
}

// cpuTime is the process's user and system time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRefuseCompileBomb is what the compile bomb (2,000
// locals, 2,000 br_if: about 60 s to compile) now costs a deploy.
func BenchmarkRefuseCompileBomb(b *testing.B) {
	e := newTestEngine(b)
	module := readFixture(b, "testdata/hostile/bomb_locals_brif.wasm")
	for b.Loop() {
		if _, err := e.Compile(context.Background(), module, DefaultLimits()); err == nil {
			b.Fatal("compiled")
		}
	}
}
