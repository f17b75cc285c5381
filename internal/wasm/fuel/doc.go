// Package fuel is the deploy-time pass that gives a WebAssembly module a
// deterministic instruction budget ("fuel"), which wazero lacks.
//
// Instrument rewrites a Wasm 2.0 binary module: it appends a mutable i64
// global exported as GlobalName, and every basic block of every function
// subtracts its static cost (one unit per instruction; block, loop, else
// and end are free) from it at the block's start. Function entries and
// loop headers check the global and, once it is negative, call an
// appended function (RefuelName) that refills it from a second global,
// the reserve (ReserveName), or traps with unreachable when the reserve
// cannot cover the overdraw, so infinite loops, unbounded recursion and
// loop-free exponential call trees all stop; the points before
// call_indirect and before calls to imported functions check too, so no
// host function runs on an exhausted budget.
//
// The reserve exists so that a module leaves its native code now and then:
// the host puts at most Slice in hand (Split), and refuel, once a slice,
// executes a ref.func, which wazero compiles to a call into Go. The Go
// runtime cannot preempt native code, so without it a garbage collection
// that stops the world would wait for the module's whole budget, and the
// timer that enforces a deadline with it. How the budget is divided does
// not change what a call does or the fuel it uses: their sum is what the
// single global was.
//
// The appended globals and function take the indices one past the
// module's own, so the pass refuses a module that names such an index
// (in code, a constant expression, an export or an element segment):
// invalid as it stands, it would become valid, and able to set its own
// fuel, once instrumented.
// Bulk operations are O(n) work and pay for their length before they run:
// memory.fill, memory.copy and memory.init one unit per 16 bytes,
// table.fill, table.copy and table.init one per element, table.grow four
// per element (what wazero allocates growing a table, at the memory
// rate), memory.grow one per 16 bytes of added memory (4096 a page).
//
// Inspect decodes a module the same way without rewriting it and reports
// its Shape: per function the locals, body size, branch targets and
// nesting depth, and per module the tables (and whether table.grow
// targets each), element items and data segments. The runtime bounds
// these to bound compile time and instance memory.
//
// The host instantiates the rewritten module, sets the globals to
// Split(budget), calls the entry point and reads their sum back: the
// budget minus the remaining value is the fuel used, identical on every run of
// the same input. A block is charged before it runs, and checks sit only
// where work can repeat (loop headers, function entries) or leave the
// module (host calls), so the value may go below zero by the straight-line
// code run since the last check. Hence two outcomes mean the budget ran
// out, and Exhausted(remaining) covers both: the call trapped at a check,
// or it returned after overdrawing in its last straight-line stretch.
// Nothing observable happens after an overdraw, since no host function is
// called with negative fuel, so the host can treat both alike. A budget of
// exactly the fuel a call uses leaves zero; one unit less leaves it
// exhausted.
//
// Checks before function exits would make the trap the only outcome, but
// they cost fib(25) 1.63x instead of 1.22x its uninstrumented time; see
// docs/RATIONALE.md (the fuel pass) for this and the other measured choices.
//
// All existing indices are unchanged (the globals, the refuel function
// and, if the module has no [] -> [] type, its type are appended to their
// index spaces; a function that uses a bulk operation gets one extra i32
// local after its own), so the name section stays valid and is
// kept. Custom sections that address code by byte offset (DWARF .debug_*,
// reloc.*, linking, sourceMappingURL, external_debug_info,
// metadata.code.*) are dropped. Modules with a start section are refused:
// it would run at instantiation, before the host can set the budget.
//
// The pass is not a validator: it decodes strictly (LEB128 limits,
// section order and sizes, known opcodes and immediates) and tracks
// control structure, but type checking is left to the runtime, which
// must compile the output anyway. It does not handle proposals beyond
// Wasm 2.0 (threads, tail calls, exceptions, GC, memory64, relaxed SIMD)
// and returns ErrUnsupported for them.
package fuel
