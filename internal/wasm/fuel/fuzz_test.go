package fuel

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// FuzzInstrument checks that Instrument never panics, that its errors are
// the documented ones, that Inspect accepts exactly what it accepts, that
// whenever wazero accepts the input it also accepts the output, and that
// it never turns an input wazero refuses into an output wazero accepts:
// what the pass appends (globals, a function, a local, a type) must not
// lend meaning to an index the input had no right to name.
func FuzzInstrument(f *testing.F) {
	ctx := context.Background()
	// The interpreter validates exactly as the compiler does, at a
	// fraction of the cost.
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	f.Cleanup(func() { rt.Close(ctx) })
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := Instrument(in)
		shape, inspectErr := Inspect(in)
		if (err == nil) != (inspectErr == nil) {
			t.Fatalf("Instrument: %v; Inspect: %v", err, inspectErr)
		}
		if err == nil && shape.CodeBytes > len(in) {
			t.Fatalf("code section of %d bytes in a module of %d", shape.CodeBytes, len(in))
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error outside ErrMalformed and ErrUnsupported: %v", err)
			}
			return
		}
		orig, origErr := rt.CompileModule(ctx, in)
		c, err := rt.CompileModule(ctx, out)
		switch {
		case origErr == nil && err != nil:
			t.Fatalf("input compiles, instrumented output does not: %v", err)
		case origErr != nil && err == nil && !strings.Contains(origErr.Error(), "custom section"):
			// wazero refuses a module that ends in a custom section
			// with an empty name (valid Wasm) but not one that ends in
			// a section the pass appends: custom sections carry no
			// meaning, so that difference is not one.
			t.Fatalf("input refused (%v), instrumented output compiles", origErr)
		}
		if origErr == nil {
			orig.Close(ctx)
			c.Close(ctx)
		}
	})
}

// functionModule wraps an instruction sequence as the body of the exported
// function "run" (type [] -> []) of a module that gives it something to
// work on: an imported host function, a memory, two tables, a global,
// element and data segments, locals of every value type and three
// function types (the last one multi-value).
func functionModule(code []byte) []byte {
	body := []byte{0x05, 0x02, typeI32, 0x01, typeI64, 0x01, typeF32, 0x01, typeF64, 0x01, typeV128}
	body = append(append(body, code...), 0x0b)
	helper := []byte{0x00, 0x41, 0x07, 0x0b} // (i32) -> i32 { 7 }
	code = appendU32([]byte{0x02}, uint32(len(body)))
	code = append(code, body...)
	code = appendU32(code, uint32(len(helper)))
	code = append(code, helper...)
	return mod(
		sec(secType, 0x03,
			0x60, 0x00, 0x00,
			0x60, 0x01, typeI32, 0x01, typeI32,
			0x60, 0x02, typeI32, typeI32, 0x02, typeI32, typeI32),
		sec(secImport, 0x01, 0x03, 'e', 'n', 'v', 0x04, 't', 'i', 'c', 'k', 0x00, 0x00),
		sec(secFunction, 0x02, 0x00, 0x01),
		sec(secTable, 0x02, typeFuncref, 0x00, 0x02, typeExternref, 0x01, 0x01, 0x04),
		sec(secMemory, 0x01, 0x01, 0x01, 0x02),
		sec(secGlobal, 0x01, typeI32, 0x01, 0x41, 0x00, 0x0b),
		sec(secExport, 0x01, 0x03, 'r', 'u', 'n', 0x00, 0x01),
		sec(secElement, 0x02, 0x00, 0x41, 0x00, 0x0b, 0x02, 0x01, 0x02, 0x01, 0x00, 0x01, 0x02),
		sec(secDataCount, 0x01),
		sec(secCode, code...),
		sec(secData, 0x01, 0x01, 0x03, 'a', 'b', 'c'),
	)
}

// functionSeeds are bodies for functionModule.

// FuzzInstrumentFunction fuzzes function bodies inside a valid module, so
// far more inputs compile than with FuzzInstrument. Whenever the input
// compiles, the output must compile, and running it on a small budget must
// end, overdrawn by no more than its straight-line code if it returns.
func FuzzInstrumentFunction(f *testing.F) {
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	f.Cleanup(func() { rt.Close(ctx) })
	if _, err := rt.NewHostModuleBuilder("env").NewFunctionBuilder().
		WithFunc(func() {}).Export("tick").Instantiate(ctx); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, code []byte) {
		in := functionModule(code)
		out, err := Instrument(in)
		shape, inspectErr := Inspect(in)
		if (err == nil) != (inspectErr == nil) {
			t.Fatalf("Instrument: %v; Inspect: %v", err, inspectErr)
		}
		if err == nil && shape.CodeBytes > len(in) {
			t.Fatalf("code section of %d bytes in a module of %d", shape.CodeBytes, len(in))
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error outside ErrMalformed and ErrUnsupported: %v", err)
			}
			return
		}
		orig, origErr := rt.CompileModule(ctx, in)
		c, err := rt.CompileModule(ctx, out)
		switch {
		case origErr != nil && err == nil:
			c.Close(ctx)
			t.Fatalf("input refused (%v), instrumented output compiles", origErr)
		case origErr != nil:
			return
		case err != nil:
			t.Fatalf("input compiles, instrumented output does not: %v", err)
		}
		orig.Close(ctx)
		defer c.Close(ctx)
		m, err := rt.InstantiateModule(ctx, c, wazero.NewModuleConfig().WithName(""))
		if err != nil {
			t.Fatalf("instantiate: %v", err)
		}
		defer m.Close(ctx)
		// A budget of 10,000 with 3 in hand: the call refuels at once.
		g := m.ExportedGlobal(GlobalName).(api.MutableGlobal)
		reserve := m.ExportedGlobal(ReserveName).(api.MutableGlobal)
		g.Set(3)
		reserve.Set(9997)
		_, err = m.ExportedFunction("run").Call(ctx)
		// Returning overdrawn is allowed only by the static cost of the
		// straight-line code after the last check: at most one unit per
		// instruction of run and of the helper it may call.
		if remaining := int64(g.Get()) + int64(reserve.Get()); err == nil && remaining < -int64(2*len(code)+2) {
			t.Fatalf("returned with fuel %d", remaining)
		}
	})
}

// TestFunctionModule keeps FuzzInstrumentFunction honest: its wrapper
// compiles with each committed seed body.
func TestFunctionModule(t *testing.T) {
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	if _, err := rt.NewHostModuleBuilder("env").NewFunctionBuilder().
		WithFunc(func() {}).Export("tick").Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	seeds, _ := filepath.Glob("testdata/fuzz/FuzzInstrumentFunction/*")
	if len(seeds) == 0 {
		t.Fatal("no seeds")
	}
	for _, seed := range seeds {
		b, err := os.ReadFile(seed)
		if err != nil {
			t.Fatal(err)
		}
		_, lit, _ := strings.Cut(string(b), "[]byte(")
		code, err := strconv.Unquote(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(lit), ")")))
		if err != nil {
			t.Fatalf("%s: %v", seed, err)
		}
		if _, err := rt.CompileModule(ctx, functionModule([]byte(code))); err != nil {
			t.Errorf("%s: %v", seed, err)
		}
	}
}
