package fuel_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/aegis-edge/aegis/internal/wasm/fuel"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// The host's side of the protocol: instrument once at deploy time, then
// per call set the budget, call, and read what is left.
func Example() {
	ctx := context.Background()
	orig, err := os.ReadFile("testdata/programs.wasm")
	if err != nil {
		log.Fatal(err)
	}
	bin, err := fuel.Instrument(orig)
	if err != nil {
		log.Fatal(err)
	}
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	compiled, err := rt.CompileModule(ctx, bin)
	if err != nil {
		log.Fatal(err)
	}
	run := func(budget int64, fn string, args ...uint64) {
		m, err := rt.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName("").WithStartFunctions())
		if err != nil {
			log.Fatal(err)
		}
		defer m.Close(ctx)
		g := m.ExportedGlobal(fuel.GlobalName).(api.MutableGlobal)
		g.Set(uint64(budget))
		results, callErr := m.ExportedFunction(fn).Call(ctx, args...)
		remaining := int64(g.Get())
		switch {
		case fuel.Exhausted(remaining):
			fmt.Printf("%s%v: out of fuel (trapped: %t)\n", fn, args, callErr != nil)
		case callErr != nil:
			fmt.Printf("%s%v: %v\n", fn, args, callErr)
		default: // budget-remaining is the fuel the call used
			fmt.Printf("%s%v = %v\n", fn, args, results)
		}
	}
	run(1_000_000, "fib", 20)
	run(1_000, "fib", 30)
	// Output:
	// fib[20] = [6765]
	// fib[30]: out of fuel (trapped: true)
}
