package testutil

import "encoding/binary"

// Builders of hostile WebAssembly modules for the tests of the function
// pipeline. Each is a valid WASI command (it exports _start and its
// memory), so that what stops it is the rule under test, not a missing
// export.

func uleb(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

func wasmSection(id byte, body []byte) []byte {
	return append(uleb([]byte{id}, uint64(len(body))), body...)
}

func wasmName(b []byte, s string) []byte { return append(uleb(b, uint64(len(s))), s...) }

// wasmModule assembles a module of () -> () functions: bodies[0] is
// _start (bodies are complete function bodies, locals included), with one
// page of memory, the given tables (minimum sizes, funcref) and start
// section.
func wasmModule(bodies [][]byte, tables []uint32, start int) []byte {
	m := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	m = append(m, wasmSection(1, []byte{1, 0x60, 0, 0})...)
	funcs := uleb(nil, uint64(len(bodies)))
	for range bodies {
		funcs = append(funcs, 0)
	}
	m = append(m, wasmSection(3, funcs)...)
	if len(tables) > 0 {
		t := uleb(nil, uint64(len(tables)))
		for _, n := range tables {
			t = append(t, 0x70, 0)
			t = uleb(t, uint64(n))
		}
		m = append(m, wasmSection(4, t)...)
	}
	m = append(m, wasmSection(5, []byte{1, 0, 1})...)
	exp := wasmName([]byte{2}, "_start")
	exp = append(exp, 0, 0)
	exp = wasmName(exp, "memory")
	exp = append(exp, 2, 0)
	m = append(m, wasmSection(7, exp)...)
	if start >= 0 {
		m = append(m, wasmSection(8, uleb(nil, uint64(start)))...)
	}
	code := uleb(nil, uint64(len(bodies)))
	for _, b := range bodies {
		code = uleb(code, uint64(len(b)))
		code = append(code, b...)
	}
	return append(m, wasmSection(10, code)...)
}

var emptyBody = []byte{0, 0x0b}

// CompileBomb is a module that is small and valid but slow to compile:
// funcs functions, each with locals i32 locals that stay live across a
// loop of branches br_if's (the register allocator's worst case; compile
// time grows about with the cube of locals and branches). One function of
// 2,000 and 2,000 (18 KB) took 88 s in wazero's compiler on a busy 2-core
// machine; 400 and 400 takes about 0.5 s, per function.
func CompileBomb(funcs, locals, branches int) []byte {
	var body []byte
	body = uleb(body, 1)
	body = uleb(body, uint64(locals))
	body = append(body, 0x7f)       // i32
	body = append(body, 0x03, 0x40) // loop
	for i := range branches {
		body = append(body, 0x20) // local.get
		body = uleb(body, uint64(i%locals))
		body = append(body, 0x0d, 0) // br_if 0
	}
	body = append(body, 0x41, 0) // i32.const 0
	for i := range locals {
		body = append(body, 0x20)
		body = uleb(body, uint64(i))
		body = append(body, 0x6a) // i32.add
	}
	body = append(body, 0x21, 0, 0x0b, 0x0b) // local.set 0, end, end
	bodies := [][]byte{emptyBody}
	for range funcs {
		bodies = append(bodies, body)
	}
	return wasmModule(bodies, nil, -1)
}

// HugeTables is a module of n tables of elems funcrefs each: 2 tables of
// 2^27 take 2 GiB (8 bytes an element) when instantiated.
func HugeTables(n int, elems uint32) []byte {
	tables := make([]uint32, n)
	for i := range tables {
		tables[i] = elems
	}
	return wasmModule([][]byte{emptyBody}, tables, -1)
}

// StartLoop is a module whose start function (which runs when it is
// instantiated, before _start) loops forever.
func StartLoop() []byte {
	loop := []byte{0, 0x03, 0x40, 0x0c, 0, 0x0b, 0x0b} // loop br 0 end end
	return wasmModule([][]byte{emptyBody, loop}, nil, 1)
}
