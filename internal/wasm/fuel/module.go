package fuel

import (
	"bytes"
	"fmt"
	"strings"
)

// Section ids of the binary format.
const (
	secCustom    = 0
	secType      = 1
	secImport    = 2
	secFunction  = 3
	secTable     = 4
	secMemory    = 5
	secGlobal    = 6
	secExport    = 7
	secStart     = 8
	secElement   = 9
	secCode      = 10
	secData      = 11
	secDataCount = 12
)

// sectionRank orders the known sections as the spec requires; the data
// count section sits between element and code. Zero means unknown.
var sectionRank = [...]int{
	secType: 1, secImport: 2, secFunction: 3, secTable: 4, secMemory: 5,
	secGlobal: 6, secExport: 7, secStart: 8, secElement: 9, secDataCount: 10,
	secCode: 11, secData: 12,
}

// Value and reference types of Wasm 2.0.
const (
	typeI32       = 0x7f
	typeI64       = 0x7e
	typeF32       = 0x7d
	typeF64       = 0x7c
	typeV128      = 0x7b
	typeFuncref   = 0x70
	typeExternref = 0x6f
)

// maxLocals bounds params plus locals of one function after
// instrumentation, as web engines do (50000); it keeps the added scratch
// local within every runtime's limits.
const maxLocals = 50000

var header = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

// section is one section of the input: its id and payload.
type section struct {
	id      byte
	payload []byte
	name    string // custom sections only
	offset  int    // of the payload in the module
}

// module holds what the pass needs to know about its input.
type module struct {
	sections      []section
	typeParams    []uint32 // param count per type index
	voidType      int      // index of the first type [] -> [], or -1
	funcTypes     []uint32 // type index per function index, imports first
	importedFuncs uint32
	globals       uint32 // imported plus defined
	definedGlobal int    // index in sections of the global section, or -1
	export        int    // index in sections of the export section, or -1
	code          int    // index in sections of the code section, or -1
	shape         Shape  // sizes recorded while parsing (see Inspect)
}

func parseModule(bin []byte) (*module, error) {
	if len(bin) < len(header) || !bytes.Equal(bin[:4], header[:4]) {
		return nil, fmt.Errorf("%w: missing magic number", ErrMalformed)
	}
	if !bytes.Equal(bin[4:8], header[4:]) {
		return nil, fmt.Errorf("%w: unsupported version %x", ErrUnsupported, bin[4:8])
	}
	m := &module{definedGlobal: -1, export: -1, code: -1, voidType: -1}
	r := &reader{buf: bin, pos: len(header)}
	lastRank := 0
	var funcCount uint32
	funcCountSeen := false
	for !r.done() {
		id, err := r.byte()
		if err != nil {
			return nil, err
		}
		size, err := r.u32()
		if err != nil {
			return nil, fmt.Errorf("section %d size: %w", id, err)
		}
		payload, err := r.bytes(size)
		if err != nil {
			return nil, fmt.Errorf("section %d: %w", id, err)
		}
		s := section{id: id, payload: payload, offset: r.pos - len(payload)}
		if id != secCustom {
			if int(id) >= len(sectionRank) || sectionRank[id] == 0 {
				if id == 13 {
					return nil, fmt.Errorf("%w: tag section (exception handling)", ErrUnsupported)
				}
				return nil, fmt.Errorf("%w: unknown section id %d", ErrMalformed, id)
			}
			if sectionRank[id] <= lastRank {
				return nil, fmt.Errorf("%w: section %d out of order or repeated", ErrMalformed, id)
			}
			lastRank = sectionRank[id]
		}
		sr := r.sub(payload)
		switch id {
		case secCustom:
			if s.name, err = sr.name(); err == nil && s.name == "name" {
				err = parseNameSection(sr)
			}
			sr.pos = len(payload) // other contents are opaque
		case secType:
			err = m.parseTypes(sr)
		case secImport:
			err = m.parseImports(sr)
		case secFunction:
			funcCount, err = m.parseFunctions(sr)
			funcCountSeen = true
		case secTable:
			err = parseVector(sr, 3, m.parseTable)
		case secMemory:
			err = parseVector(sr, 2, parseLimits)
		case secGlobal:
			m.definedGlobal = len(m.sections)
			err = m.parseGlobals(sr)
		case secExport:
			m.export = len(m.sections)
			err = parseVector(sr, 3, m.parseExport)
		case secStart:
			err = fmt.Errorf("%w: a start function would run before the host sets the budget", ErrUnsupported)
		case secElement:
			err = parseVector(sr, 2, m.parseElement)
		case secDataCount:
			_, err = sr.u32()
		case secCode:
			m.code = len(m.sections)
			var n uint32
			if n, err = sr.count(1); err == nil && n != funcCount {
				err = fmt.Errorf("%w: %d function bodies for %d functions", ErrMalformed, n, funcCount)
			}
			m.shape.CodeBytes = len(payload)
			sr.pos = len(payload) // bodies are parsed while instrumenting
		case secData:
			err = parseVector(sr, 2, m.parseData)
		}
		if err != nil {
			return nil, fmt.Errorf("section %d: %w", id, err)
		}
		if !sr.done() {
			return nil, fmt.Errorf("section %d: %w", id, sr.errorf("section size mismatch"))
		}
		m.sections = append(m.sections, s)
	}
	if funcCountSeen && funcCount > 0 && m.code < 0 {
		return nil, fmt.Errorf("%w: %d functions without a code section", ErrMalformed, funcCount)
	}
	return m, nil
}

func parseVector(r *reader, minSize int, parse func(*reader) error) error {
	n, err := r.count(minSize)
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		if err := parse(r); err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
	}
	return nil
}

func (m *module) parseTypes(r *reader) error {
	n, err := r.count(3)
	if err != nil {
		return err
	}
	m.typeParams = make([]uint32, 0, n)
	for i := uint32(0); i < n; i++ {
		form, err := r.byte()
		if err != nil {
			return err
		}
		if form != 0x60 {
			return fmt.Errorf("%w: type %d: form 0x%x (only function types are supported)", ErrUnsupported, i, form)
		}
		params, err := parseValueTypes(r)
		if err != nil {
			return fmt.Errorf("type %d params: %w", i, err)
		}
		results, err := parseValueTypes(r)
		if err != nil {
			return fmt.Errorf("type %d results: %w", i, err)
		}
		if params == 0 && results == 0 && m.voidType < 0 {
			m.voidType = len(m.typeParams)
		}
		m.typeParams = append(m.typeParams, params)
	}
	return nil
}

func parseValueTypes(r *reader) (uint32, error) {
	n, err := r.count(1)
	if err != nil {
		return 0, err
	}
	for i := uint32(0); i < n; i++ {
		if err := parseValueType(r); err != nil {
			return 0, err
		}
	}
	return n, nil
}

func isValueType(b byte) bool {
	switch b {
	case typeI32, typeI64, typeF32, typeF64, typeV128, typeFuncref, typeExternref:
		return true
	}
	return false
}

func parseValueType(r *reader) error {
	b, err := r.byte()
	if err != nil {
		return err
	}
	if !isValueType(b) {
		r.pos--
		return r.errorf("unknown value type 0x%x", b)
	}
	return nil
}

func parseRefType(r *reader) error {
	b, err := r.byte()
	if err != nil {
		return err
	}
	if b != typeFuncref && b != typeExternref {
		r.pos--
		return r.errorf("unknown reference type 0x%x", b)
	}
	return nil
}

func (m *module) parseImports(r *reader) error {
	n, err := r.count(4)
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		if _, err := r.name(); err != nil {
			return err
		}
		if _, err := r.name(); err != nil {
			return err
		}
		kind, err := r.byte()
		if err != nil {
			return err
		}
		switch kind {
		case 0x00: // function
			t, err := r.u32()
			if err != nil {
				return err
			}
			if int(t) >= len(m.typeParams) {
				return fmt.Errorf("%w: import %d: type index %d out of range", ErrMalformed, i, t)
			}
			m.funcTypes = append(m.funcTypes, t)
			m.importedFuncs++
		case 0x01:
			err = m.parseTable(r)
		case 0x02:
			err = parseLimits(r)
		case 0x03:
			if err = parseValueType(r); err == nil {
				err = parseMutability(r)
			}
			m.globals++
		case 0x04:
			err = fmt.Errorf("%w: tag import (exception handling)", ErrUnsupported)
		default:
			err = r.errorf("unknown import kind 0x%x", kind)
		}
		if err != nil {
			return fmt.Errorf("import %d: %w", i, err)
		}
	}
	return nil
}

func (m *module) parseFunctions(r *reader) (uint32, error) {
	n, err := r.count(1)
	if err != nil {
		return 0, err
	}
	for i := uint32(0); i < n; i++ {
		t, err := r.u32()
		if err != nil {
			return 0, err
		}
		if int(t) >= len(m.typeParams) {
			return 0, fmt.Errorf("%w: function %d: type index %d out of range", ErrMalformed, i, t)
		}
		m.funcTypes = append(m.funcTypes, t)
	}
	return n, nil
}

func (m *module) parseTable(r *reader) error {
	if err := parseRefType(r); err != nil {
		return err
	}
	t := TableShape{Externref: r.buf[r.pos-1] == typeExternref}
	var err error
	t.Min, t.Max, t.HasMax, err = readLimits(r)
	m.shape.Tables = append(m.shape.Tables, t)
	return err
}

func parseLimits(r *reader) error {
	_, _, _, err := readLimits(r)
	return err
}

// readLimits reads the limits of a table or memory type.
func readLimits(r *reader) (lo, hi uint32, hasMax bool, err error) {
	flags, err := r.byte()
	if err != nil {
		return 0, 0, false, err
	}
	switch flags {
	case 0x00:
		lo, err = r.u32()
	case 0x01:
		hasMax = true
		if lo, err = r.u32(); err == nil {
			hi, err = r.u32()
		}
	case 0x02, 0x03:
		err = fmt.Errorf("%w: shared memory (threads)", ErrUnsupported)
	default:
		err = r.errorf("unknown limits flags 0x%x", flags)
	}
	return lo, hi, hasMax, err
}

func parseMutability(r *reader) error {
	b, err := r.byte()
	if err != nil {
		return err
	}
	if b > 1 {
		r.pos--
		return r.errorf("invalid mutability 0x%x", b)
	}
	return nil
}

func (m *module) parseGlobals(r *reader) error {
	n, err := r.count(4)
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		if err := parseValueType(r); err != nil {
			return err
		}
		if err := parseMutability(r); err != nil {
			return err
		}
		if err := m.parseConstExpr(r); err != nil {
			return fmt.Errorf("global %d: %w", i, err)
		}
		m.globals++
	}
	return nil
}

// funcIndex reads a function index and refuses one past the module's
// functions: the pass appends a function there, and an out-of-range
// reference to it would turn an invalid module into a valid one with a
// handle on its own meter.
func (m *module) funcIndex(r *reader) (uint32, error) {
	f, err := r.u32()
	if err == nil && int64(f) >= int64(len(m.funcTypes)) {
		err = r.errorf("function index %d out of range", f)
	}
	return f, err
}

// globalIndex reads a global index and refuses one past the module's
// globals, where the pass appends the fuel: a module that sets the global
// one past its own would otherwise set its fuel.
func (m *module) globalIndex(r *reader) (uint32, error) {
	g, err := r.u32()
	if err == nil && g >= m.globals {
		err = r.errorf("global index %d out of range", g)
	}
	return g, err
}

// parseConstExpr reads a Wasm 2.0 constant expression up to its end.
func (m *module) parseConstExpr(r *reader) error {
	for {
		op, err := r.byte()
		if err != nil {
			return err
		}
		switch op {
		case 0x0b: // end
			return nil
		case 0x41:
			_, err = r.s32()
		case 0x42:
			_, err = r.s64()
		case 0x43:
			err = r.skip(4)
		case 0x44:
			err = r.skip(8)
		case 0x23: // global.get
			_, err = m.globalIndex(r)
		case 0xd2: // ref.func
			_, err = m.funcIndex(r)
		case 0xd0: // ref.null
			err = parseRefType(r)
		case 0xfd: // v128.const
			var sub uint32
			if sub, err = r.u32(); err == nil {
				if sub != 12 {
					return r.errorf("opcode 0xfd %d in a constant expression", sub)
				}
				err = r.skip(16)
			}
		default:
			r.pos--
			return r.errorf("opcode 0x%x in a constant expression", op)
		}
		if err != nil {
			return err
		}
	}
}

func (m *module) parseExport(r *reader) error {
	name, err := r.name()
	if err != nil {
		return err
	}
	switch name {
	case GlobalName, ReserveName, RefuelName:
		return fmt.Errorf("%w: the module already exports %q", ErrUnsupported, name)
	}
	kind, err := r.byte()
	if err != nil {
		return err
	}
	switch kind {
	case 0x00:
		_, err = m.funcIndex(r)
	case 0x03:
		_, err = m.globalIndex(r)
	case 0x01, 0x02:
		_, err = r.u32()
	default:
		r.pos--
		return r.errorf("unknown export kind 0x%x", kind)
	}
	return err
}

func (m *module) parseElement(r *reader) error {
	flags, err := r.u32()
	if err != nil {
		return err
	}
	if flags > 7 {
		return r.errorf("unknown element segment flags %d", flags)
	}
	// Bit 0: passive or declarative; bit 1: explicit table (active) or
	// declarative (passive); bit 2: expressions instead of indices.
	active := flags&1 == 0
	if active && flags&2 != 0 {
		if _, err := r.u32(); err != nil { // table index
			return err
		}
	}
	if active {
		if err := m.parseConstExpr(r); err != nil {
			return err
		}
	}
	if flags&3 != 0 { // an element kind or reference type follows
		if flags&4 == 0 {
			kind, err := r.byte()
			if err != nil {
				return err
			}
			if kind != 0x00 {
				r.pos--
				return r.errorf("unknown element kind 0x%x", kind)
			}
		} else if err := parseRefType(r); err != nil {
			return err
		}
	}
	item := m.parseConstExpr
	if flags&4 == 0 {
		item = func(r *reader) error { _, err := m.funcIndex(r); return err }
	}
	return parseVector(r, 1, func(r *reader) error {
		m.shape.ElementItems++
		return item(r)
	})
}

func (m *module) parseData(r *reader) error {
	flags, err := r.u32()
	if err != nil {
		return err
	}
	switch flags {
	case 0:
		err = m.parseConstExpr(r)
	case 1:
	case 2:
		if _, err = r.u32(); err == nil {
			err = m.parseConstExpr(r)
		}
	default:
		return r.errorf("unknown data segment flags %d", flags)
	}
	if err != nil {
		return err
	}
	n, err := r.u32()
	if err != nil {
		return err
	}
	m.shape.DataSegments++
	m.shape.DataBytes += uint64(n)
	_, err = r.bytes(n)
	return err
}

// droppedCustom reports whether a custom section refers to code by byte
// offset, which instrumentation invalidates.
func droppedCustom(name string) bool {
	return strings.HasPrefix(name, ".debug_") || // DWARF
		strings.HasPrefix(name, "reloc.") || name == "linking" || // object files
		name == "sourceMappingURL" || name == "external_debug_info" ||
		strings.HasPrefix(name, "metadata.code.") // branch hints
}

// parseNameSection checks the framing of the name section and the contents
// of its module, function and local subsections. The section is kept in
// the output, and runtimes decode it without regard to the section's end,
// so it must be well formed for the output to decode as the input did.
func parseNameSection(r *reader) error {
	nameMap := func(r *reader) error {
		return parseVector(r, 2, func(r *reader) error {
			if _, err := r.u32(); err != nil {
				return err
			}
			_, err := r.name()
			return err
		})
	}
	for !r.done() {
		id, err := r.byte()
		if err != nil {
			return err
		}
		size, err := r.u32()
		if err != nil {
			return err
		}
		content, err := r.bytes(size)
		if err != nil {
			return err
		}
		sr := r.sub(content)
		switch id {
		case 0: // module name
			_, err = sr.name()
		case 1: // function names
			err = nameMap(sr)
		case 2: // local names
			err = parseVector(sr, 2, func(r *reader) error {
				if _, err := r.u32(); err != nil {
					return err
				}
				return nameMap(r)
			})
		default:
			sr.pos = len(content)
		}
		if err == nil && !sr.done() {
			err = sr.errorf("subsection size mismatch")
		}
		if err != nil {
			return fmt.Errorf("name subsection %d: %w", id, err)
		}
	}
	return nil
}
