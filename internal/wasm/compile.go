package wasm

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aegis-edge/aegis/internal/wasm/fuel"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
)

// wasmHeader is the magic number and version 1 of a binary module.
var wasmHeader = []byte{0, 'a', 's', 'm', 1, 0, 0, 0}

// Compile checks a module for deploy and compiles it. A module is refused,
// with an error wrapping ErrInvalidModule that says why, if it is over
// limits.MaxModuleBytes, not a valid binary module, over a shape limit
// (MaxFunctions and the rest: what bounds compile time), imports anything
// but functions of WASI preview 1 and the host module (with their exact
// signatures), does not export _start (a WASI command) and its memory as
// "memory", needs more initial memory than limits.MemoryPages (tables
// count, at TableElementBytes an element), or cannot be instantiated (an
// out-of-bounds data segment, say). The module is instrumented with the
// fuel pass before compiling.
func (e *Engine) Compile(ctx context.Context, module []byte, limits Limits) (*Module, error) {
	started := time.Now()
	shape, tableBytes, err := precheck(module, limits)
	if err != nil {
		return nil, err
	}
	metered, err := instrumentFuel(module)
	if err != nil {
		return nil, invalidModule("%v", err)
	}
	compiled, err := e.runtime.CompileModule(ctx, metered)
	if err != nil {
		return nil, invalidModule("%v", err)
	}
	m := &Module{engine: e, compiled: compiled, limits: limits, tableBytes: tableBytes, startFuel: instantiationFuel(shape), config: requestConfig}
	if err := e.check(ctx, m); err != nil {
		compiled.Close(ctx)
		return nil, err
	}
	e.log.Debug("compiled a function module", "bytes", len(module), "instrumented_bytes", len(metered), "duration", time.Since(started))
	return m, nil
}

// Precheck applies the deploy rules that only read the module's bytes (its
// size, header, import kinds and shape limits), in time linear in its size:
// the node runs it before it hands an untrusted module to a sandboxed
// worker to compile, so a module over a shape limit never costs a compile
// worker. Compile applies it too.
func Precheck(module []byte, limits Limits) error {
	_, _, err := precheck(module, limits)
	return err
}

// precheck is Precheck, also answering the module's shape and the bytes
// its tables count against the memory limit.
func precheck(module []byte, limits Limits) (*fuel.Shape, uint64, error) {
	if err := limits.Validate(); err != nil {
		return nil, 0, fmt.Errorf("compiling: %w", err)
	}
	if int64(len(module)) > limits.MaxModuleBytes {
		return nil, 0, invalidModule("module is %d bytes, over the %d byte limit", len(module), limits.MaxModuleBytes)
	}
	if !bytes.HasPrefix(module, wasmHeader) {
		return nil, 0, invalidModule("not a WebAssembly 1.0 binary module (no \\0asm version 1 header)")
	}
	imports, err := readImports(module)
	if err != nil {
		return nil, 0, invalidModule("%v", err)
	}
	for _, im := range imports {
		if im.kind != externFunc {
			return nil, 0, invalidModule("imports %s %s.%s: only functions of %s and %s may be imported", im.kind, im.module, im.name, WASIModule, HostModule)
		}
	}
	shape, err := inspect(module)
	if err != nil {
		return nil, 0, invalidModule("%v", err)
	}
	tableBytes, err := checkShape(shape, limits)
	if err != nil {
		return nil, 0, err
	}
	return shape, tableBytes, nil
}

// check applies the deploy rules that need the compiled module.
func (e *Engine) check(ctx context.Context, m *Module) error {
	c := m.compiled
	for _, f := range c.ImportedFunctions() {
		mod, name, _ := f.Import()
		want, ok := e.hostFuncs[mod][name]
		if !ok {
			if _, known := e.hostFuncs[mod]; known {
				return invalidModule("imports %s.%s, which %s does not have", mod, name, mod)
			}
			return invalidModule("imports %s.%s: only %s and %s may be imported", mod, name, WASIModule, HostModule)
		}
		if !slices.Equal(f.ParamTypes(), want.ParamTypes()) || !slices.Equal(f.ResultTypes(), want.ResultTypes()) {
			return invalidModule("imports %s.%s as %s, but it is %s", mod, name, signature(f), signature(want))
		}
	}
	start, ok := c.ExportedFunctions()["_start"]
	if !ok {
		return invalidModule("does not export _start: a function must be a WASI command")
	}
	if len(start.ParamTypes()) != 0 || len(start.ResultTypes()) != 0 {
		return invalidModule("_start is %s, want () -> ()", signature(start))
	}
	mem, ok := c.ExportedMemories()["memory"]
	if !ok {
		return invalidModule("does not export its memory as \"memory\"")
	}
	if uint64(mem.Min())*PageSize > m.memoryLimit() {
		return invalidModule("needs %s at start, over the limit of %d memory pages", describeStart(mem.Min(), m.tableBytes), m.limits.MemoryPages)
	}
	// A trial instance catches what only instantiation checks, such as
	// data segments out of bounds. No code runs: there is no start.
	alloc := &memoryAllocator{limit: m.memoryLimit()}
	inst, err := e.runtime.InstantiateModule(experimental.WithMemoryAllocator(ctx, alloc), c,
		wazero.NewModuleConfig().WithName("").WithStartFunctions())
	if err != nil {
		return invalidModule("does not instantiate: %v", err)
	}
	inst.Close(ctx)
	return nil
}

func signature(f api.FunctionDefinition) string {
	names := func(ts []api.ValueType) string {
		s := make([]string, len(ts))
		for i, t := range ts {
			s[i] = api.ValueTypeName(t)
		}
		return strings.Join(s, ", ")
	}
	return "(" + names(f.ParamTypes()) + ") -> (" + names(f.ResultTypes()) + ")"
}

// Extern kinds of the import section.
type externKind byte

const (
	externFunc externKind = iota
	externTable
	externMemory
	externGlobal
)

func (k externKind) String() string {
	switch k {
	case externFunc:
		return "function"
	case externTable:
		return "table"
	case externMemory:
		return "memory"
	case externGlobal:
		return "global"
	}
	return fmt.Sprintf("extern kind %d", byte(k))
}

type importEntry struct {
	module, name string
	kind         externKind
}

// readImports lists the import section of a binary module. It reads only
// what it needs; wazero validates the rest.
func readImports(b []byte) ([]importEntry, error) {
	r := &byteReader{b: b, pos: len(wasmHeader)}
	for !r.done() {
		id := r.byte()
		size := r.u32()
		if r.err != nil || uint64(size) > uint64(len(r.b)-r.pos) {
			return nil, fmt.Errorf("section %d at offset %d: truncated", id, r.pos)
		}
		if id != 2 {
			r.pos += int(size)
			continue
		}
		sec := &byteReader{b: r.b[:r.pos+int(size)], pos: r.pos}
		n := sec.u32()
		var out []importEntry
		for i := uint32(0); i < n && sec.err == nil; i++ {
			var im importEntry
			im.module, im.name, im.kind = sec.name(), sec.name(), externKind(sec.byte())
			switch im.kind {
			case externFunc:
				sec.u32()
			case externTable:
				sec.byte()
				sec.limits()
			case externMemory:
				sec.limits()
			case externGlobal:
				sec.byte()
				sec.byte()
			default:
				return nil, fmt.Errorf("import %d: unknown kind %d", i, im.kind)
			}
			out = append(out, im)
		}
		if sec.err != nil {
			return nil, fmt.Errorf("import section: %w", sec.err)
		}
		return out, nil
	}
	return nil, r.err
}

// byteReader reads LEB128 and names; the first error sticks.
type byteReader struct {
	b   []byte
	pos int
	err error
}

func (r *byteReader) done() bool { return r.err != nil || r.pos >= len(r.b) }

func (r *byteReader) byte() byte {
	if r.err != nil {
		return 0
	}
	if r.pos >= len(r.b) {
		r.err = fmt.Errorf("unexpected end at offset %d", r.pos)
		return 0
	}
	c := r.b[r.pos]
	r.pos++
	return c
}

func (r *byteReader) u32() uint32 {
	var v uint64
	for shift := 0; shift < 35; shift += 7 {
		c := r.byte()
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			if v > 0xffffffff {
				r.fail("u32 overflows")
			}
			return uint32(v)
		}
	}
	r.fail("u32 too long")
	return 0
}

func (r *byteReader) fail(msg string) {
	if r.err == nil {
		r.err = fmt.Errorf("%s at offset %d", msg, r.pos)
	}
}

func (r *byteReader) name() string {
	n := r.u32()
	if r.err != nil {
		return ""
	}
	if uint64(n) > uint64(len(r.b)-r.pos) {
		r.fail("name runs past the end")
		return ""
	}
	s := string(r.b[r.pos : r.pos+int(n)])
	r.pos += int(n)
	return s
}

func (r *byteReader) limits() {
	flags := r.byte()
	r.u32()
	if flags&1 != 0 {
		r.u32()
	}
}
