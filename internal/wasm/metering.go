package wasm

import "github.com/aegis-edge/aegis/internal/wasm/fuel"

// The fuel pass, as Compile and Serve use it.
const (
	fuelGlobalName    = fuel.GlobalName
	reserveGlobalName = fuel.ReserveName
)

// splitFuel divides a budget between the two globals (see fuel.Slice).
func splitFuel(budget int64) (inHand, reserve int64) { return fuel.Split(budget) }

func instrumentFuel(module []byte) ([]byte, error) { return fuel.Instrument(module) }

func inspect(module []byte) (*fuel.Shape, error) { return fuel.Inspect(module) }

func fuelExhausted(remaining int64) bool { return fuel.Exhausted(remaining) }
