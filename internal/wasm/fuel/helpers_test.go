package fuel

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
)

// unlimited is a budget no test program exhausts.
const unlimited = int64(1) << 50

func readModule(t testing.TB, name string) []byte {
	t.Helper()
	bin, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func mustInstrument(t testing.TB, bin []byte) []byte {
	t.Helper()
	out, err := Instrument(bin)
	if err != nil {
		t.Fatalf("Instrument: %v", err)
	}
	return out
}

// instrumentedModules instruments each testdata module once.
type instrumentedModules map[string][]byte

func (c instrumentedModules) get(t testing.TB, name string) []byte {
	t.Helper()
	bin, ok := c[name]
	if !ok {
		bin = mustInstrument(t, readModule(t, name))
		c[name] = bin
	}
	return bin
}

// host is a wazero runtime with WASI and an "env" module whose tick
// function counts calls and records the lowest fuel it saw.
type host struct {
	rt wazero.Runtime
	// inHand, if set, is the part of a budget call puts in GlobalName;
	// the rest goes to ReserveName. Unset: all of it in hand.
	inHand   func(budget int64) int64
	ticks    int
	lowest   int64
	sawFuel  bool
	compiled map[*byte]wazero.CompiledModule
}

func newHost(t testing.TB, cfg wazero.RuntimeConfig) *host {
	t.Helper()
	ctx := context.Background()
	h := &host{rt: wazero.NewRuntimeWithConfig(ctx, cfg), compiled: map[*byte]wazero.CompiledModule{}}
	t.Cleanup(func() { h.rt.Close(ctx) })
	wasi_snapshot_preview1.MustInstantiate(ctx, h.rt)
	_, err := h.rt.NewHostModuleBuilder("env").NewFunctionBuilder().
		WithFunc(func(ctx context.Context, m api.Module) {
			h.ticks++
			if g := m.ExportedGlobal(GlobalName); g != nil {
				v := int64(g.Get())
				if !h.sawFuel || v < h.lowest {
					h.lowest = v
				}
				h.sawFuel = true
			}
		}).Export("tick").Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// outcome is what one call did.
type outcome struct {
	results   []uint64
	err       error // a trap; nil for success or exit code 0
	stdout    string
	remaining int64 // the fuel global afterwards, if instrumented
}

// call instantiates bin afresh (no start functions), sets the fuel global
// to budget if there is one, and calls fn.
func (h *host) call(t testing.TB, bin []byte, budget int64, fn string, args ...uint64) outcome {
	t.Helper()
	ctx := context.Background()
	c, ok := h.compiled[&bin[0]]
	if !ok {
		var err error
		if c, err = h.rt.CompileModule(ctx, bin); err != nil {
			t.Fatalf("compile: %v", err)
		}
		h.compiled[&bin[0]] = c
	}
	var stdout bytes.Buffer
	m, err := h.rt.InstantiateModule(ctx, c, wazero.NewModuleConfig().
		WithName("").WithStartFunctions().WithStdout(&stdout).WithArgs("prog"))
	if err != nil {
		t.Fatalf("instantiate: %v", err)
	}
	defer m.Close(ctx)
	g, _ := m.ExportedGlobal(GlobalName).(api.MutableGlobal)
	reserve, _ := m.ExportedGlobal(ReserveName).(api.MutableGlobal)
	if g != nil {
		inHand := budget
		if h.inHand != nil {
			inHand = h.inHand(budget)
			reserve.Set(uint64(budget - inHand))
		}
		g.Set(uint64(inHand))
	}
	f := m.ExportedFunction(fn)
	if f == nil {
		t.Fatalf("no export %q", fn)
	}
	var o outcome
	o.results, o.err = f.Call(ctx, args...)
	if exit := (*sys.ExitError)(nil); errors.As(o.err, &exit) && exit.ExitCode() == 0 {
		o.err = nil
	}
	o.stdout = stdout.String()
	if g != nil {
		o.remaining = int64(g.Get()) + int64(reserve.Get())
	}
	return o
}

// setBudget gives an instrumented module a budget the way a host should:
// Split between the fuel in hand and the reserve.
func setBudget(m api.Module, budget int64) {
	inHand, reserve := Split(budget)
	m.ExportedGlobal(GlobalName).(api.MutableGlobal).Set(uint64(inHand))
	m.ExportedGlobal(ReserveName).(api.MutableGlobal).Set(uint64(reserve))
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
