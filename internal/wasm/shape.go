package wasm

import (
	"fmt"

	"github.com/aegis-edge/aegis/internal/wasm/fuel"
)

// Shape limits: what a module may ask of the compiler and of an instance
// besides its linear memory. wazero's compile time for a function grows
// faster than linearly with the branches into one block and with its
// nesting (Weight models it), so the weight is bounded per function and
// per module, and each dimension on its own too, which gives clearer
// errors. The values leave many times the headroom of the largest real
// modules we build (docs/RATIONALE.md, "Module shape limits", has the
// measurements).
const (
	// MaxFunctions bounds the functions a module defines.
	MaxFunctions = 50_000
	// MaxFunctionBytes bounds one function body.
	MaxFunctionBytes = 1 << 20
	// MaxLocals bounds a function's params and locals.
	MaxLocals = 4096
	// MaxBranchTargets bounds a function's control-flow edges: one per
	// br, br_if and if, one per label of a br_table.
	MaxBranchTargets = 8192
	// MaxDepth bounds the nesting of block, loop and if in a function.
	MaxDepth = 2048
	// MaxFunctionWeight bounds the Weight of one function: about half a
	// second of CPU to compile.
	MaxFunctionWeight = 1 << 19
	// MaxModuleWeight bounds the sum of the Weights of a module's
	// functions: about what compiling the Go example takes.
	MaxModuleWeight = 1 << 21
	// MaxElementItems bounds the items of all element segments.
	MaxElementItems = 1 << 17
	// MaxDataSegments bounds the data segments of a module; their bytes
	// must fit in the memory limit.
	MaxDataSegments = 1 << 18
	// TableElementBytes is what one table element counts against the
	// memory limit: wazero keeps 8 bytes an element, and a growing table
	// briefly holds its old and its new array.
	TableElementBytes = 16
)

// Weight estimates the compile cost of a function, about a microsecond of
// CPU a unit (0.7 to 1.2 measured on the bombs of each kind; the issue's
// bomb weighs 64 million and took about 60 s): wazero's work grows with
// the locals times the square of the branches into one block, with the
// locals times the branches, and with the square of the nesting depth.
// It is ((locals + 4) × (FanInSquares + 48 × branch targets) + depth²) / 128.
func Weight(f fuel.FunctionShape) uint64 {
	d := uint64(f.Depth)
	return ((uint64(f.Locals)+4)*(f.FanInSquares+48*uint64(f.BranchTargets)) + d*d) / 128
}

// checkShape applies the shape limits and returns the bytes the module's
// tables take at most, which count against the memory limit. A table that
// no function grows keeps its initial size; one that table.grow targets
// must declare a maximum, and counts at that maximum.
func checkShape(s *fuel.Shape, limits Limits) (tableBytes uint64, err error) {
	if n := len(s.Functions); n > MaxFunctions {
		return 0, invalidModule("defines %d functions, over the limit of %d", n, MaxFunctions)
	}
	var weight uint64
	for _, f := range s.Functions {
		bad := func(what string, got, limit uint64) error {
			return invalidModule("function %d has %d %s, over the limit of %d", f.Index, got, what, limit)
		}
		w := Weight(f)
		switch {
		case f.BodyBytes > MaxFunctionBytes:
			return 0, bad("body bytes", uint64(f.BodyBytes), MaxFunctionBytes)
		case f.Locals > MaxLocals:
			return 0, bad("params and locals", uint64(f.Locals), MaxLocals)
		case f.Depth > MaxDepth:
			return 0, bad("levels of nested blocks", uint64(f.Depth), MaxDepth)
		case f.BranchTargets > MaxBranchTargets:
			return 0, bad("branch targets", uint64(f.BranchTargets), MaxBranchTargets)
		case w > MaxFunctionWeight:
			return 0, invalidModule("function %d has a weight (compile cost) of %d, over the limit of %d: ((%d locals + 4) × (%d, the branches into each label squared and added up, + 48 × %d branch targets) + %d levels of nesting squared) / 128",
				f.Index, w, MaxFunctionWeight, f.Locals, f.FanInSquares, f.BranchTargets, f.Depth)
		}
		weight += w
	}
	if weight > MaxModuleWeight {
		return 0, invalidModule("its functions' weights (compile cost) add up to %d, over the limit of %d", weight, MaxModuleWeight)
	}
	if s.ElementItems > MaxElementItems {
		return 0, invalidModule("element segments hold %d items, over the limit of %d", s.ElementItems, MaxElementItems)
	}
	if s.DataSegments > MaxDataSegments {
		return 0, invalidModule("has %d data segments, over the limit of %d", s.DataSegments, MaxDataSegments)
	}
	memBytes := uint64(limits.MemoryPages) * PageSize
	if s.DataBytes > memBytes {
		return 0, invalidModule("data segments hold %d bytes, over the memory limit of %d bytes", s.DataBytes, memBytes)
	}
	for i, t := range s.Tables {
		n := uint64(t.Min)
		if t.Grown {
			if !t.HasMax {
				return 0, invalidModule("table %d is grown by table.grow but declares no maximum", i)
			}
			n = uint64(t.Max)
		}
		tableBytes += n * TableElementBytes
		if tableBytes > memBytes {
			return 0, invalidModule("table %d brings its tables to %d bytes (%d an element), over the memory limit of %d bytes", i, tableBytes, TableElementBytes, memBytes)
		}
	}
	return tableBytes, nil
}

// instantiationFuel is what setting up an instance costs a request, which
// wazero does before any fuel check can run: one unit per table element
// and element segment item it allocates or copies, and one per 16 bytes
// of data segments, the bulk-memory rate.
func instantiationFuel(s *fuel.Shape) int64 {
	n := s.ElementItems + s.DataBytes>>4
	for _, t := range s.Tables {
		n += uint64(t.Min)
	}
	return int64(n)
}

// describeStart says what an instance needs at start.
func describeStart(pages uint32, tableBytes uint64) string {
	if tableBytes == 0 {
		return fmt.Sprintf("%d memory pages", pages)
	}
	return fmt.Sprintf("%d memory pages and %d bytes of tables", pages, tableBytes)
}
