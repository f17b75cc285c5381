package fuel

import "errors"

// GlobalName is the export name of the mutable i64 global holding the
// remaining fuel.
const GlobalName = "aegis_fuel"

// Errors returned by Instrument, matched with errors.Is.
var (
	// ErrMalformed means the input is not a well-formed binary module:
	// truncated, a bad LEB128, sections out of order, an unknown opcode.
	ErrMalformed = errors.New("malformed wasm module")
	// ErrUnsupported means the input may be valid WebAssembly but the pass
	// does not handle it: features beyond Wasm 2.0, a start section, an
	// export already named GlobalName.
	ErrUnsupported = errors.New("unsupported wasm module")
)

// Instrument rewrites a Wasm binary module so that it charges fuel. Every
// basic block subtracts its static cost from the exported mutable i64
// global GlobalName (appended to the global index space; no other index
// changes); function entries and loop headers, and the points before
// indirect calls and calls to imports, execute unreachable once the
// global is negative (see the package documentation for the overdraw
// bound and how to read the global). Bulk memory and table operations are
// charged in proportion to their length as well. The global starts at
// zero: the host sets it to the budget before calling into the module and
// reads it afterwards. Invalid or unsupported input returns an error wrapping
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

// Exhausted reports whether a remaining-fuel value read after a call means
// the fuel ran out: after a trap, the trap was the fuel check (the pass
// traps only once the global is negative, and any other trap after that
// point came from code the budget did not cover); after a normal return,
// the call overdrew its budget in straight-line code after its last check
// and called no host function since.
func Exhausted(remaining int64) bool { return remaining < 0 }
