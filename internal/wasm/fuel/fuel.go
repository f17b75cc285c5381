package fuel

import "errors"

// Names of what Instrument adds to a module's exports.
const (
	// GlobalName is the mutable i64 global holding the fuel in hand: what
	// the module's code charges and checks.
	GlobalName = "aegis_fuel"
	// ReserveName is the mutable i64 global holding the rest of the
	// budget, which the refuel function moves into GlobalName a slice at
	// a time. It starts at zero: a host that sets only GlobalName gets
	// one undivided budget.
	ReserveName = "aegis_fuel_reserve"
	// RefuelName is the function the checks call once GlobalName is
	// negative. It takes the next slice from the reserve (enough to bring
	// GlobalName back to Slice, or all there is) and then leaves the
	// module's native code for the runtime's own, or traps with
	// unreachable when the reserve cannot cover the overdraw.
	RefuelName = "aegis_fuel_refuel"
)

// Slice is how much fuel Split puts in hand at a time. A runtime cannot
// preempt a module's native code (wazero cannot), so a Go process whose
// garbage collector stops the world waits for every running module to
// leave it, and so do the timers that would interrupt the module: the
// refuel call every Slice units is where it leaves. About a millisecond of
// a tight loop here, against the 0.3 to 0.5 µs a refuel costs (the trip
// into Go and back, measured on this project's 2-core VM).
const Slice = int64(1) << 20

// Split divides a budget between the two globals: at most Slice in hand,
// the rest in reserve. What remains after a call is their sum.
func Split(budget int64) (inHand, reserve int64) {
	inHand = min(budget, Slice)
	return inHand, budget - inHand
}

// Errors returned by Instrument, matched with errors.Is.
var (
	// ErrMalformed means the input is not a well-formed binary module:
	// truncated, a bad LEB128, sections out of order, an unknown opcode.
	ErrMalformed = errors.New("malformed wasm module")
	// ErrUnsupported means the input may be valid WebAssembly but the pass
	// does not handle it: features beyond Wasm 2.0, a start section, an
	// export already named GlobalName, ReserveName or RefuelName.
	ErrUnsupported = errors.New("unsupported wasm module")
)

// Instrument rewrites a Wasm binary module so that it charges fuel. Every
// basic block subtracts its static cost from the exported mutable i64
// global GlobalName; function entries and loop headers, and the points
// before indirect calls and calls to imports, call RefuelName once the
// global is negative, which refills it from ReserveName or traps (see the
// package documentation for the overdraw bound and how to read the
// globals). Both globals are appended to the global index space and the
// refuel function to the function index space, so no existing index
// changes. Bulk memory and table operations are charged in proportion to
// their length as well. The globals start at zero: the host sets them to
// Split(budget) before calling into the module and reads their sum
// afterwards. Invalid or unsupported input returns an error wrapping
// ErrMalformed or ErrUnsupported; the input slice is not modified.
//
// DWARF (.debug_*) and other custom sections that hold code offsets are
// dropped; the name section and other custom sections are kept.
func Instrument(module []byte) ([]byte, error) {
	m, err := parseModule(module)
	if err != nil {
		return nil, err
	}
	return m.instrument()
}

// Exhausted reports whether a remaining-fuel value read after a call (the
// sum of the two globals) means the fuel ran out: after a trap, the trap
// was the fuel check (the pass traps only once in hand and reserve
// together are negative, and any other trap after that
// point came from code the budget did not cover); after a normal return,
// the call overdrew its budget in straight-line code after its last check
// and called no host function since.
func Exhausted(remaining int64) bool { return remaining < 0 }
