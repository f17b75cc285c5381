package fuel

import (
	"fmt"
	"testing"

	"github.com/tetratelabs/wazero"
)

// maxOverrun bounds how far below zero the fuel may go in the test
// programs: a few straight-line blocks.
const maxOverrun = 64

// TestRunawayEndsWithFuelTrap runs programs that never end on their own.
func TestRunawayEndsWithFuelTrap(t *testing.T) {
	bin := mustInstrument(t, readModule(t, "runaway.wasm"))
	tests := []struct {
		name string
		fn   string
		args []uint64
	}{
		{"infinite loop", "spin", nil},
		{"infinite loop calling the host", "host_spin", nil},
		{"unbounded recursion", "recurse", []uint64{0}},
		{"loop-free exponential call tree", "tree", []uint64{40}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHost(t, wazero.NewRuntimeConfig())
			const budget = 20000
			o := h.call(t, bin, budget, tt.fn, tt.args...)
			if o.err == nil {
				t.Fatal("returned without a trap")
			}
			if !Exhausted(o.remaining) {
				t.Fatalf("trap %v with %d fuel remaining", o.err, o.remaining)
			}
			if o.remaining < -maxOverrun {
				t.Fatalf("fuel overran to %d", o.remaining)
			}
			if h.sawFuel && h.lowest < 0 {
				t.Fatalf("a host function ran with fuel %d", h.lowest)
			}
			if h.ticks > budget {
				t.Fatalf("%d host calls on a budget of %d", h.ticks, budget)
			}
		})
	}
}

// TestExactBudget: a call given exactly the fuel it uses returns with
// zero left; with one unit less it ends exhausted, either trapping or, if
// the overdraw came after its last check, returning with the global below
// zero.
func TestExactBudget(t *testing.T) {
	h := newHost(t, wazero.NewRuntimeConfig())
	instrumented := instrumentedModules{}
	for _, v := range corpus {
		if v.module == "program_go.wasm" {
			continue // slow; covered by TestCorpus
		}
		t.Run(fmt.Sprintf("%s/%s%v", v.module, v.fn, v.args), func(t *testing.T) {
			bin := instrumented.get(t, v.module)
			probe := h.call(t, bin, unlimited, v.fn, v.args...)
			if probe.err != nil {
				t.Skipf("traps regardless of fuel: %v", probe.err)
			}
			used := unlimited - probe.remaining
			exact := h.call(t, bin, used, v.fn, v.args...)
			if exact.err != nil || exact.remaining != 0 {
				t.Fatalf("budget %d: error %v, remaining %d", used, exact.err, exact.remaining)
			}
			short := h.call(t, bin, used-1, v.fn, v.args...)
			if !Exhausted(short.remaining) || short.remaining < -maxOverrun {
				t.Fatalf("budget %d: error %v, remaining %d", used-1, short.err, short.remaining)
			}
			if short.err == nil && short.remaining != -1 {
				t.Fatalf("budget %d: returned with %d", used-1, short.remaining)
			}
		})
	}
}

// fuelUsed runs fn of an instrumented module with an unlimited budget.
func fuelUsed(t *testing.T, h *host, bin []byte, fn string, args ...uint64) int64 {
	t.Helper()
	o := h.call(t, bin, unlimited, fn, args...)
	if o.err != nil {
		t.Fatalf("%s%v: %v", fn, args, o.err)
	}
	return unlimited - o.remaining
}

// TestCostModel checks the documented costs: one unit per instruction,
// a constant per loop iteration, bulk operations by length.
func TestCostModel(t *testing.T) {
	h := newHost(t, wazero.NewRuntimeConfig())
	programs := mustInstrument(t, readModule(t, "programs.wasm"))
	bulk := mustInstrument(t, readModule(t, "bulk.wasm"))

	// i32.const 1; i32.const 2; i32.add
	if got := fuelUsed(t, h, programs, "three"); got != 3 {
		t.Errorf("three instructions cost %d", got)
	}
	perIteration := fuelUsed(t, h, programs, "count", 2) - fuelUsed(t, h, programs, "count", 1)
	if perIteration <= 0 {
		t.Fatalf("a loop iteration costs %d", perIteration)
	}
	if got := fuelUsed(t, h, programs, "count", 101) - fuelUsed(t, h, programs, "count", 1); got != 100*perIteration {
		t.Errorf("100 iterations cost %d, one costs %d", got, perIteration)
	}

	const k = 100
	if got := fuelUsed(t, h, bulk, "fill", 16*k) - fuelUsed(t, h, bulk, "fill", 0); got != k {
		t.Errorf("memory.fill of %d bytes costs %d more than of none", 16*k, got)
	}
	if got := fuelUsed(t, h, bulk, "fill", 16*k+15) - fuelUsed(t, h, bulk, "fill", 16*k); got != 0 {
		t.Errorf("memory.fill of 15 more bytes costs %d more", got)
	}
	if got := fuelUsed(t, h, bulk, "table_fill", 2) - fuelUsed(t, h, bulk, "table_fill", 0); got != 2 {
		t.Errorf("table.fill of 2 elements costs %d more than of none", got)
	}
	if got := fuelUsed(t, h, bulk, "table_grow", 3) - fuelUsed(t, h, bulk, "table_grow", 0); got != 3*TableGrowUnitsPerElement {
		t.Errorf("table.grow by 3 elements costs %d more than by none", got)
	}
	if got := fuelUsed(t, h, bulk, "grow", 2) - fuelUsed(t, h, bulk, "grow", 0); got != 2*65536/16 {
		t.Errorf("memory.grow by 2 pages costs %d more than by none", got)
	}
}

// TestBulkOverBudgetDoesNotRun: a memory.fill whose length the budget
// cannot pay for traps before filling.
func TestBulkOverBudgetDoesNotRun(t *testing.T) {
	h := newHost(t, wazero.NewRuntimeConfig())
	bin := mustInstrument(t, readModule(t, "bulk.wasm"))
	small := fuelUsed(t, h, bin, "fill", 0)
	o := h.call(t, bin, small+10, "fill", 65536)
	if o.err == nil || !Exhausted(o.remaining) {
		t.Fatalf("error %v, remaining %d", o.err, o.remaining)
	}
}

// TestDividedBudgetMatchesWhole: a budget divided between the fuel in hand
// and the reserve, however it is divided, gives what the whole budget in
// hand gives: the same results, output, trap or return, and fuel left, and
// no host function runs with the fuel in hand negative. The budgets are
// what the call uses, one less and a half, so that the division is tried
// where the fuel runs out as well as where it does not; a division with
// little in hand makes the call refuel many times.
func TestDividedBudgetMatchesWhole(t *testing.T) {
	whole := newHost(t, wazero.NewRuntimeConfig())
	instrumented := instrumentedModules{}
	for _, v := range corpus {
		if v.module == "program_go.wasm" {
			continue // slow; covered by TestCorpus
		}
		bin := instrumented.get(t, v.module)
		probe := whole.call(t, bin, unlimited, v.fn, v.args...)
		used := unlimited - probe.remaining
		for _, budget := range []int64{used, used - 1, used / 2} {
			want := whole.call(t, bin, budget, v.fn, v.args...)
			for _, inHand := range []func(int64) int64{
				func(int64) int64 { return 0 },
				func(int64) int64 { return 1 },
				func(b int64) int64 { return min(b, 7) },
				func(b int64) int64 { return b / 3 },
			} {
				divided := newHost(t, wazero.NewRuntimeConfig())
				divided.inHand = inHand
				got := divided.call(t, bin, budget, v.fn, v.args...)
				if (got.err == nil) != (want.err == nil) || got.remaining != want.remaining ||
					got.stdout != want.stdout || fmt.Sprint(got.results) != fmt.Sprint(want.results) {
					t.Fatalf("%s %s%v, budget %d with %d in hand: got %+v, whole budget %+v",
						v.module, v.fn, v.args, budget, inHand(budget), got, want)
				}
				if divided.sawFuel && divided.lowest < 0 {
					t.Fatalf("%s %s%v: a host function ran with %d fuel in hand", v.module, v.fn, v.args, divided.lowest)
				}
			}
		}
	}
}
