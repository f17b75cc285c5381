package fuel

import "fmt"

// Shape is what a module asks of the runtime that compiles and
// instantiates it, in the dimensions that bound compile time and the
// memory an instance takes besides its linear memory. Inspect measures it;
// the caller decides what is too much.
type Shape struct {
	// Functions are the defined functions, in index order.
	Functions []FunctionShape
	// CodeBytes is the size of the code section.
	CodeBytes int
	// Tables are the imported and the defined tables, in index order.
	Tables []TableShape
	// ElementItems counts the items of all element segments.
	ElementItems uint64
	// DataSegments and DataBytes count the data segments and their bytes.
	DataSegments int
	DataBytes    uint64
}

// FunctionShape is the size of one function body.
type FunctionShape struct {
	// Index is the function's index, imports included.
	Index uint32
	// Locals counts params and declared locals.
	Locals uint32
	// BodyBytes is the size of the body, locals included.
	BodyBytes uint32
	// BranchTargets counts the control-flow edges the body declares:
	// one per br, br_if and if, and one per label of a br_table (its
	// default included).
	BranchTargets uint32
	// Depth is the deepest nesting of block, loop and if.
	Depth uint32
	// FanInSquares adds up, over the labels of the body (the function's
	// own included), the square of the branches that target each: a
	// compiler joining n edges into one block may do n² work.
	FanInSquares uint64
}

// TableShape is one table's type.
type TableShape struct {
	Externref bool
	Min, Max  uint32
	HasMax    bool
	// Grown means some function executes table.grow on the table.
	Grown bool
}

// Inspect decodes a module as Instrument does, without rewriting it, and
// returns its shape. It fails, as Instrument would, on a module the pass
// cannot instrument.
func Inspect(module []byte) (*Shape, error) {
	m, err := parseModule(module)
	if err != nil {
		return nil, err
	}
	if m.code < 0 {
		return &m.shape, nil
	}
	s := m.sections[m.code]
	w := &rewriter{m: m}
	err = m.eachBody(&reader{buf: s.payload, base: s.offset}, func(n uint32) {
		m.shape.Functions = make([]FunctionShape, 0, n)
	}, func(fn uint32, body *reader) error {
		if _, _, _, err := w.analyzeBody(fn, body); err != nil {
			return err
		}
		m.shape.Functions = append(m.shape.Functions, w.fn)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("code section: %w", err)
	}
	return &m.shape, nil
}
