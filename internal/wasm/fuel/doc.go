// Package fuel is the deploy-time pass that gives a WebAssembly module a
// deterministic instruction budget ("fuel"), which wazero lacks.
//
// Instrument rewrites a Wasm 2.0 binary module: it appends a mutable i64
// global exported as GlobalName, and every basic block of every function
// subtracts its static cost (one unit per instruction; block, loop, else
// and end are free) from it at the block's start. Function entries and
// loop headers trap with unreachable once the global is negative, so
// infinite loops, unbounded recursion and loop-free exponential call trees
// all stop; the points before call_indirect and before calls to imported
// functions check too, so no host function runs on an exhausted budget.
// Bulk operations are O(n) work and pay for their length before they run:
// memory.fill, memory.copy and memory.init one unit per 16 bytes,
// table.fill, table.copy, table.init and table.grow one per element,
// memory.grow one per 16 bytes of added memory (4096 a page).
//
// The host instantiates the rewritten module, sets the global to the
// budget, calls the entry point and reads the global back: the budget
// minus the remaining value is the fuel used, identical on every run of
// the same input. If the call trapped and Exhausted(remaining) holds, the
// cause is fuel. A block is charged before it runs, so the value may go
// below zero by at most the straight-line code between two checks: the
// rest of the current block and, while returning, the tails of the active
// frames up to their next check.
//
// All existing indices are unchanged (the global is appended to the
// global index space; a function that uses a bulk operation gets one
// extra i32 local after its own), so the name section stays valid and is
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
