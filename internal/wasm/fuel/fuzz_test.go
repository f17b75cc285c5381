package fuel

import (
	"context"
	"errors"
	"testing"

	"github.com/tetratelabs/wazero"
)

// FuzzInstrument checks that Instrument never panics, that its errors are
// the documented ones, and that whenever wazero accepts the input it also
// accepts the output.
func FuzzInstrument(f *testing.F) {
	ctx := context.Background()
	// The interpreter validates exactly as the compiler does, at a
	// fraction of the cost.
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	f.Cleanup(func() { rt.Close(ctx) })
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := Instrument(in)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error outside ErrMalformed and ErrUnsupported: %v", err)
			}
			return
		}
		orig, err := rt.CompileModule(ctx, in)
		if err != nil {
			return
		}
		orig.Close(ctx)
		c, err := rt.CompileModule(ctx, out)
		if err != nil {
			t.Fatalf("input compiles, instrumented output does not: %v", err)
		}
		c.Close(ctx)
	})
}
