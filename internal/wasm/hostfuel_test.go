package wasm

import (
	"context"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// TestChargePaysFromHandThenReserve: a host call's charge comes out of the
// fuel in hand, then the reserve; one neither can cover traps and leaves
// the sum negative (what Serve reports as fuel), and so does any charge
// once an interrupt has set the fuel in hand negative.
func TestChargePaysFromHandThenReserve(t *testing.T) {
	tests := []struct {
		name                  string
		inHand, reserve       int64
		units                 int64
		wantHand, wantReserve int64
		traps                 bool
	}{
		{"from the hand", 1000, 5000, 600, 400, 5000, false},
		{"all the hand", 600, 5000, 600, 0, 5000, false},
		{"hand and reserve", 100, 5000, 600, 0, 4500, false},
		{"everything", 100, 500, 600, 0, 0, false},
		{"one short", 100, 499, 600, -1, 0, true},
		{"nothing in hand", 0, 5000, 512, 0, 4488, false},
		{"after an interrupt", -(1 << 62), 0, 512, -(1 << 62), 0, true},
		{"after an interrupt, a reserve rewritten by the guest", -(1 << 62), 5000, 512, -(1 << 62), 5000, true},
	}
	// The fuel globals of an empty module, instrumented.
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	empty, err := instrumentFuel(wasmHeader)
	if err != nil {
		t.Fatal(err)
	}
	mod, err := rt.Instantiate(ctx, empty)
	if err != nil {
		t.Fatal(err)
	}
	st := &instanceState{
		fuel:    mod.ExportedGlobal(fuelGlobalName).(api.MutableGlobal),
		reserve: mod.ExportedGlobal(reserveGlobalName).(api.MutableGlobal),
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st.fuel.Set(api.EncodeI64(tt.inHand))
			st.reserve.Set(api.EncodeI64(tt.reserve))
			trapped := func() (trapped bool) {
				defer func() { trapped = recover() != nil }()
				st.charge("test.call", tt.units)
				return false
			}()
			hand, reserve := int64(st.fuel.Get()), int64(st.reserve.Get())
			if hand != tt.wantHand || reserve != tt.wantReserve || trapped != tt.traps {
				t.Fatalf("%d in hand and %d in reserve, charged %d: %d and %d, trapped %v", tt.inHand, tt.reserve, tt.units, hand, reserve, trapped)
			}
			if sum := hand + reserve; !trapped && sum != tt.inHand+tt.reserve-tt.units {
				t.Fatalf("the charge changed the sum by %d, not %d", tt.inHand+tt.reserve-sum, tt.units)
			}
		})
	}
}
