package fuel

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

func sec(id byte, payload ...byte) []byte {
	return append(appendU32([]byte{id}, uint32(len(payload))), payload...)
}

func mod(sections ...[]byte) []byte {
	return slices.Concat(append([][]byte{header}, sections...)...)
}

// funcModule is a module with one function of type [] -> [] whose body
// (after an empty locals vector) is code.
func funcModule(code ...byte) []byte {
	body := append([]byte{0x00}, code...)
	return mod(
		sec(secType, 0x01, 0x60, 0x00, 0x00),
		sec(secFunction, 0x01, 0x00),
		sec(secCode, append(appendU32([]byte{0x01}, uint32(len(body))), body...)...),
	)
}

func TestInstrumentRejects(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"bad magic", []byte("\x00asn\x01\x00\x00\x00"), ErrMalformed},
		{"version 2", []byte("\x00asm\x02\x00\x00\x00"), ErrUnsupported},
		{"truncated section header", append(slices.Clone(header), secType), ErrMalformed},
		{"section beyond the input", append(slices.Clone(header), secType, 0x05, 0x00), ErrMalformed},
		{"over-long LEB128", append(slices.Clone(header), secType, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00), ErrMalformed},
		{"LEB128 above 32 bits", append(slices.Clone(header), secType, 0xff, 0xff, 0xff, 0xff, 0x1f), ErrMalformed},
		{"unknown section", mod(sec(14)), ErrMalformed},
		{"sections out of order", mod(sec(secFunction, 0x00), sec(secType, 0x00)), ErrMalformed},
		{"repeated section", mod(sec(secType, 0x00), sec(secType, 0x00)), ErrMalformed},
		{"data count after code", mod(sec(secCode, 0x00), sec(secDataCount, 0x00)), ErrMalformed},
		{"section size mismatch", mod(sec(secType, 0x00, 0x00)), ErrMalformed},
		{"vector longer than the section", mod(sec(secType, 0x05, 0x60, 0x00, 0x00)), ErrMalformed},
		{"functions without code", mod(sec(secType, 0x01, 0x60, 0x00, 0x00), sec(secFunction, 0x01, 0x00)), ErrMalformed},
		{"unknown value type", mod(sec(secType, 0x01, 0x60, 0x01, 0x55, 0x00)), ErrMalformed},
		{"bad name section", mod(sec(secCustom, 0x04, 'n', 'a', 'm', 'e', 0x01, 0x05, 0x01)), ErrMalformed},
		{"invalid UTF-8 name", mod(sec(secCustom, 0x02, 0xff, 0xfe)), ErrMalformed},
		{"unknown opcode", funcModule(0x27, 0x0b), ErrMalformed},
		{"unknown 0xfc opcode", funcModule(0xfc, 0x12, 0x0b), ErrMalformed},
		{"reserved SIMD opcode", funcModule(0xfd, 0x9a, 0x01, 0x0b), ErrMalformed},
		{"truncated v128.const", funcModule(0xfd, 0x0c, 0x00, 0x00, 0x0b), ErrMalformed},
		{"i32.const sign bits", funcModule(0x41, 0xff, 0xff, 0xff, 0xff, 0x4f, 0x1a, 0x0b), ErrMalformed},
		{"i64.const too long", funcModule(0x42, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x1a, 0x0b), ErrMalformed},
		{"negative block type", funcModule(0x02, 0x71, 0x0b, 0x0b), ErrMalformed},
		{"block type index out of range", funcModule(0x02, 0x05, 0x0b, 0x0b), ErrMalformed},
		{"missing end", funcModule(0x01), ErrMalformed},
		{"code after end", funcModule(0x0b, 0x01), ErrMalformed},
		{"else without if", funcModule(0x02, 0x40, 0x05, 0x0b, 0x0b), ErrMalformed},
		{"branch depth out of range", funcModule(0x0c, 0x01, 0x0b), ErrMalformed},
		{"br_table depth out of range", funcModule(0x41, 0x00, 0x0e, 0x01, 0x00, 0x02, 0x0b), ErrMalformed},
		{"too many locals", mod(
			sec(secType, 0x01, 0x60, 0x00, 0x00), sec(secFunction, 0x01, 0x00),
			sec(secCode, 0x01, 0x06, 0x01, 0xe0, 0xd4, 0x03, typeI32, 0x0b)), ErrUnsupported},
		{"start section", mod(sec(secType, 0x01, 0x60, 0x00, 0x00), sec(secFunction, 0x01, 0x00),
			sec(secStart, 0x00), sec(secCode, 0x01, 0x02, 0x00, 0x0b)), ErrUnsupported},
		{"already instrumented", mustInstrument(t, readModule(t, "programs.wasm")), ErrUnsupported},
		{"threads", funcModule(0xfe, 0x03, 0x00, 0x0b), ErrUnsupported},
		{"shared memory", mod(sec(secMemory, 0x01, 0x03, 0x01, 0x01)), ErrUnsupported},
		{"tail call", funcModule(0x12, 0x00, 0x0b), ErrUnsupported},
		{"exception tag section", mod(sec(13, 0x00)), ErrUnsupported},
		{"relaxed SIMD", funcModule(0xfd, 0x80, 0x02, 0x0b), ErrUnsupported},
		{"exports the reserve's name", mod(sec(secExport, append([]byte{0x01}, exportEntry(ReserveName, 0x02, 0)...)...)), ErrUnsupported},
		{"exports the refuel function's name", mod(sec(secExport, append([]byte{0x01}, exportEntry(RefuelName, 0x02, 0)...)...)), ErrUnsupported},
	}
	tests = append(tests, onePast...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.in)
			out, err := Instrument(in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v (%d bytes), want %v", err, len(out), tt.want)
			}
			t.Log(err)
			if !bytes.Equal(in, tt.in) {
				t.Fatal("Instrument modified its input")
			}
		})
	}
}

// onePast are modules that name the index one past their own globals,
// functions, locals or types: invalid as they are, but where the pass
// appends its globals, the refuel function, a scratch local or a type, so
// that the instrumented module would be valid and, for the globals, able
// to set its own fuel.
var onePast = []struct {
	name string
	in   []byte
	want error
}{
	{"global.set one past the globals", funcModule(0x42, 0x7f, 0x24, 0x00, 0x0b), ErrMalformed},
	{"global.get one past the globals", funcModule(0x23, 0x00, 0x1a, 0x0b), ErrMalformed},
	{"global.get one past in a constant expression", mod(sec(secGlobal, 0x01, typeI64, 0x00, 0x23, 0x00, 0x0b)), ErrMalformed},
	{"global export one past", mod(sec(secExport, 0x01, 0x01, 'g', 0x03, 0x00)), ErrMalformed},
	{"call one past the functions", funcModule(0x10, 0x01, 0x0b), ErrMalformed},
	{"ref.func one past the functions", funcModule(0xd2, 0x01, 0x1a, 0x0b), ErrMalformed},
	{"function export one past", mod(sec(secType, 0x01, 0x60, 0x00, 0x00), sec(secFunction, 0x01, 0x00),
		sec(secExport, 0x01, 0x01, 'f', 0x00, 0x01), sec(secCode, 0x01, 0x02, 0x00, 0x0b)), ErrMalformed},
	{"element one past the functions", mod(sec(secType, 0x01, 0x60, 0x00, 0x00), sec(secFunction, 0x01, 0x00),
		sec(secElement, 0x01, 0x03, 0x00, 0x01, 0x01), sec(secCode, 0x01, 0x02, 0x00, 0x0b)), ErrMalformed},
	{"local one past the locals", funcModule(0x20, 0x00, 0x1a, 0x0b), ErrMalformed},
	// A SIMD opcode in an over-long encoding: the pass reads a load whose
	// memarg is "$\x01", wazero reads opcode 0x84, unreachable, then
	// global.set 1, the fuel's index once instrumented (found by
	// FuzzInstrumentFunction). Variant: the same over a nop.
	{"over-long SIMD opcode hiding a global.set", funcModule(0x41, 0x00, 0x00, 0xfd, 0x84, 0x00, 0x24, 0x01, 0x0b), ErrUnsupported},
	{"over-long SIMD opcode hiding a nop", funcModule(0xfd, 0x8c, 0x80, 0x00, 0x0b), ErrUnsupported},
	{"call_indirect type one past", mod(sec(secType, 0x01, 0x60, 0x00, 0x00), sec(secFunction, 0x01, 0x00),
		sec(secTable, 0x01, typeFuncref, 0x00, 0x01),
		sec(secCode, 0x01, 0x07, 0x00, 0x41, 0x00, 0x11, 0x01, 0x00, 0x0b)), ErrMalformed},
}

// TestOnePastIsInvalidInput checks that the onePast modules are invalid
// before the pass, so refusing them refuses nothing a runtime would run.
func TestOnePastIsInvalidInput(t *testing.T) {
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	for _, tt := range onePast {
		if _, err := rt.CompileModule(ctx, tt.in); err == nil {
			t.Errorf("%s: wazero compiles the input", tt.name)
		}
	}
}

// sectionEnds lists the offsets at which the sections of a module end, and
// the names of its custom sections.
func sectionEnds(t *testing.T, bin []byte) (ends map[int]bool, custom []string) {
	t.Helper()
	r := &reader{buf: bin, pos: len(header)}
	ends = map[int]bool{len(header): true}
	for !r.done() {
		id, err := r.byte()
		if err != nil {
			t.Fatal(err)
		}
		size, err := r.u32()
		if err != nil {
			t.Fatal(err)
		}
		payload, err := r.bytes(size)
		if err != nil {
			t.Fatal(err)
		}
		if id == secCustom {
			name, err := (&reader{buf: payload}).name()
			if err != nil {
				t.Fatal(err)
			}
			custom = append(custom, name)
		}
		ends[r.pos] = true
	}
	return ends, custom
}

// TestTruncation cuts a module at every length: unless the cut falls
// between sections, the result is malformed.
func TestTruncation(t *testing.T) {
	for _, name := range []string{"control.wasm", "simd.wasm", "bulk.wasm"} {
		bin := readModule(t, name)
		ends, _ := sectionEnds(t, bin)
		for n := 0; n < len(bin); n++ {
			_, err := Instrument(bin[:n])
			if ends[n] {
				continue // a shorter module; valid or not, it does not matter here
			}
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("%s cut at %d of %d: %v", name, n, len(bin), err)
			}
		}
	}
}

// TestCustomSections: DWARF goes, the name and producers sections stay.
func TestCustomSections(t *testing.T) {
	in := readModule(t, "program_c.wasm")
	_, before := sectionEnds(t, in)
	if !slices.Contains(before, ".debug_info") || !slices.Contains(before, "name") {
		t.Fatalf("corpus module lacks DWARF or names: %v", before)
	}
	_, after := sectionEnds(t, mustInstrument(t, in))
	for _, name := range before {
		if kept := slices.Contains(after, name); kept == strings.HasPrefix(name, ".debug_") {
			t.Errorf("custom section %q kept: %v", name, kept)
		}
	}
}

// TestEmptyModule: the type, function, global, export and code sections
// are created when absent, and refuel moves fuel from the reserve without
// creating any: back to Slice in hand, or all the reserve, or a trap when
// the reserve cannot cover what is overdrawn.
func TestEmptyModule(t *testing.T) {
	out := mustInstrument(t, slices.Clone(header))
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	m, err := rt.Instantiate(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	g, ok1 := m.ExportedGlobal(GlobalName).(api.MutableGlobal)
	reserve, ok2 := m.ExportedGlobal(ReserveName).(api.MutableGlobal)
	refuel := m.ExportedFunction(RefuelName)
	if !ok1 || !ok2 || refuel == nil || g.Get() != 0 || reserve.Get() != 0 {
		t.Fatalf("globals %v %v, refuel %v", g, reserve, refuel)
	}
	tests := []struct {
		inHand, reserve       int64
		wantHand, wantReserve int64
		traps                 bool
	}{
		{-5, 100, 95, 0, false},
		{-2 * Slice, 3 * Slice, Slice, 0, false}, // a bulk charge overdrew by more than a slice
		{-2 * Slice, 2*Slice - 1, -1, 0, true},
		{-5, 3 * Slice, Slice, 2*Slice - 5, false},
		{10, 2 * Slice, Slice, Slice + 10, false},
		{-5, 5, 0, 0, false},
		{-5, 4, -1, 0, true},
		{-1, 0, -1, 0, true},
		{-(1 << 62), Slice, -(1 << 62) + Slice, 0, true}, // what an interrupt leaves
	}
	for _, tt := range tests {
		g.Set(uint64(tt.inHand))
		reserve.Set(uint64(tt.reserve))
		_, err := refuel.Call(ctx)
		if got, gotReserve := int64(g.Get()), int64(reserve.Get()); got != tt.wantHand || gotReserve != tt.wantReserve || (err != nil) != tt.traps {
			t.Errorf("refuel with %d in hand and %d in reserve: %d and %d, error %v", tt.inHand, tt.reserve, got, gotReserve, err)
		}
	}
}

// TestDeterministic: the same input gives the same bytes.
func TestDeterministic(t *testing.T) {
	in := readModule(t, "program_go.wasm")
	if !bytes.Equal(mustInstrument(t, in), mustInstrument(t, in)) {
		t.Fatal("two runs differ")
	}
}
