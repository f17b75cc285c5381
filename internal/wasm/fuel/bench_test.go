package fuel

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// benchCall measures fn(args) of a module in three forms: the original,
// the instrumented one, and the original under wazero's context watchdog
// (WithCloseOnContextDone), the alternative to fuel. Each iteration calls
// a fresh-enough instance: the module is instantiated once, and WASI
// commands (fn "_start") once per iteration since they exit.
func benchCall(b *testing.B, module, fn string, args ...uint64) {
	orig := readModule(b, module)
	forms := []struct {
		name     string
		bin      []byte
		watchdog bool
	}{
		{"original", orig, false},
		{"fuel", mustInstrument(b, orig), false},
		{"watchdog", orig, true},
	}
	for _, form := range forms {
		b.Run(form.name, func(b *testing.B) {
			ctx := context.Background()
			cfg := wazero.NewRuntimeConfig()
			if form.watchdog {
				cfg = cfg.WithCloseOnContextDone(true)
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, time.Hour)
				defer cancel()
			}
			rt := wazero.NewRuntimeWithConfig(ctx, cfg)
			defer rt.Close(ctx)
			wasi_snapshot_preview1.MustInstantiate(ctx, rt)
			c, err := rt.CompileModule(ctx, form.bin)
			if err != nil {
				b.Fatal(err)
			}
			mc := wazero.NewModuleConfig().WithName("").WithStartFunctions().WithStdout(io.Discard)
			instantiate := func() (api.Module, api.Function) {
				m, err := rt.InstantiateModule(ctx, c, mc)
				if err != nil {
					b.Fatal(err)
				}
				if m.ExportedGlobal(GlobalName) != nil {
					setBudget(m, unlimited)
				}
				return m, m.ExportedFunction(fn)
			}
			command := fn == "_start"
			m, f := instantiate()
			b.ResetTimer()
			for b.Loop() {
				if command {
					m.Close(ctx)
					m, f = instantiate()
				} else if m.ExportedGlobal(GlobalName) != nil {
					setBudget(m, unlimited)
				}
				if _, err := f.Call(ctx, args...); err != nil && !command {
					b.Fatal(err)
				}
			}
			m.Close(ctx)
		})
	}
}

// BenchmarkFib: recursive fib(25), 250k calls; per-call overhead.
func BenchmarkFib(b *testing.B) { benchCall(b, "programs.wasm", "fib", 25) }

// BenchmarkCollatz: nested loops with branches, no calls.
func BenchmarkCollatz(b *testing.B) { benchCall(b, "programs.wasm", "collatz", 3000) }

// BenchmarkSort: insertion sort of 1000 numbers in linear memory.
func BenchmarkSort(b *testing.B) { benchCall(b, "programs.wasm", "sort", 1000) }

// BenchmarkSieve: the sieve of Eratosthenes below 100000.
func BenchmarkSieve(b *testing.B) { benchCall(b, "programs.wasm", "primes", 100000) }

// BenchmarkCProgram: the C program's _start, instantiation included.
func BenchmarkCProgram(b *testing.B) { benchCall(b, "program_c.wasm", "_start") }

// BenchmarkInstrumentGo: the pass itself on the Go wasip1 program.
func BenchmarkInstrumentGo(b *testing.B) {
	in := readModule(b, "program_go.wasm")
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Instrument(in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOverhead alternates the original and the instrumented module
// call by call and reports their time ratio ("fuel/orig"), so load from
// other processes on a shared machine affects both alike.
func BenchmarkOverhead(b *testing.B) {
	for _, tt := range []struct {
		name string
		fn   string
		arg  uint64
	}{
		{"fib", "fib", 25},
		{"collatz", "collatz", 3000},
		{"sort", "sort", 1000},
		{"sieve", "primes", 100000},
	} {
		b.Run(tt.name, func(b *testing.B) {
			ctx := context.Background()
			rt := wazero.NewRuntime(ctx)
			defer rt.Close(ctx)
			orig := readModule(b, "programs.wasm")
			var fns [2]api.Function
			var metered api.Module
			for i, bin := range [][]byte{orig, mustInstrument(b, orig)} {
				m, err := rt.InstantiateWithConfig(ctx, bin, wazero.NewModuleConfig().WithName(""))
				if err != nil {
					b.Fatal(err)
				}
				fns[i] = m.ExportedFunction(tt.fn)
				if i == 1 {
					metered = m
				}
			}
			var spent [2]time.Duration
			for b.Loop() {
				for i, f := range fns {
					setBudget(metered, unlimited)
					start := time.Now()
					if _, err := f.Call(ctx, tt.arg); err != nil {
						b.Fatal(err)
					}
					spent[i] += time.Since(start)
				}
			}
			b.ReportMetric(float64(spent[1])/float64(spent[0]), "fuel/orig")
		})
	}
}
