package wasm

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
)

func TestCompileRefusesInvalidModules(t *testing.T) {
	e := newTestEngine(t)
	hello := readFixture(t, "../../examples/hello-wat/hello.wasm")
	tests := []struct {
		name   string
		module []byte
		limits func(*Limits)
		reason string
	}{
		{"not wasm", []byte("#!/bin/sh\necho hi\n"), nil, "not a WebAssembly"},
		{"empty", nil, nil, "not a WebAssembly"},
		{"truncated", hello[:len(hello)-5], nil, ""},
		{"over the size limit", hello, func(l *Limits) { l.MaxModuleBytes = int64(len(hello) - 1) }, "over the"},
		{"import from env", readFixture(t, "testdata/invalid/import_env.wasm"), nil, "imports env.now"},
		{"import a global", readFixture(t, "testdata/invalid/import_global.wasm"), nil, "imports global aegis.secret"},
		{"import memory", readFixture(t, "testdata/invalid/import_memory.wasm"), nil, "imports memory aegis.memory"},
		{"function not in preview 1", readFixture(t, "testdata/invalid/unknown_wasi.wasm"), nil, "sock_open, which wasi_snapshot_preview1 does not have"},
		{"wrong signature", readFixture(t, "testdata/invalid/bad_signature.wasm"), nil, "fd_write as (i32) -> (i32)"},
		{"no _start", readFixture(t, "testdata/invalid/no_start.wasm"), nil, "does not export _start"},
		{"no memory export", readFixture(t, "testdata/invalid/no_memory.wasm"), nil, "does not export its memory"},
		{"initial memory over the limit", readFixture(t, "testdata/invalid/big_memory.wasm"), nil, "needs 2000 memory pages"},
		{"data segment out of bounds", readFixture(t, "testdata/invalid/data_oob.wasm"), nil, "does not instantiate"},
		// A module naming the index where the fuel pass appends its
		// globals and refuel function: invalid, and would be valid (with
		// its own fuel in hand) once instrumented.
		{"sets the global one past its own", commandModule(0x42, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x24, 0x00), nil, "global index 0 out of range"},
		{"empties the reserve one further", commandModule(0x42, 0x00, 0x24, 0x01), nil, "global index 1 out of range"},
		{"calls the function one past its own", commandModule(0x10, 0x01), nil, "function index 1 out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := testLimits()
			if tt.limits != nil {
				tt.limits(&l)
			}
			m, err := e.Compile(context.Background(), tt.module, l)
			if err == nil {
				m.Close()
				t.Fatal("compiled")
			}
			if !errors.Is(err, ErrInvalidModule) {
				t.Fatalf("error %v does not wrap ErrInvalidModule", err)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("error %q does not say %q", err, tt.reason)
			}
		})
	}
	// A refused deploy leaves the engine serving.
	m := compileFixture(t, e, "../../examples/hello-wat/hello.wasm", testLimits())
	if resp, _, err := serve(t, m, getRequest("/", ""), nil); err != nil || resp.Status != 200 {
		t.Fatalf("hello after refusals: %v, %v", resp, err)
	}
}

// commandModule is a WASI command with one function, _start, whose body
// is code and then an endless loop, and a memory exported as "memory".
func commandModule(code ...byte) []byte {
	section := func(id byte, payload ...byte) []byte {
		return append([]byte{id, byte(len(payload))}, payload...)
	}
	body := append(append([]byte{0x00}, code...), 0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b) // loop br 0 end end
	exports := []byte{0x02, 0x06, '_', 's', 't', 'a', 'r', 't', 0x00, 0x00, 0x06, 'm', 'e', 'm', 'o', 'r', 'y', 0x02, 0x00}
	return bytes.Join([][]byte{
		wasmHeader,
		section(1, 0x01, 0x60, 0x00, 0x00),
		section(3, 0x01, 0x00),
		section(5, 0x01, 0x00, 0x01),
		section(7, exports...),
		section(10, append([]byte{0x01, byte(len(body))}, body...)...),
	}, nil)
}

func TestCompileRefusesBadLimits(t *testing.T) {
	e := newTestEngine(t)
	l := testLimits()
	l.Fuel, l.MemoryPages = 0, 70000
	_, err := e.Compile(context.Background(), readFixture(t, "../../examples/hello-wat/hello.wasm"), l)
	if err == nil || errors.Is(err, ErrInvalidModule) || !strings.Contains(err.Error(), "Fuel") || !strings.Contains(err.Error(), "MemoryPages") {
		t.Fatalf("got %v, want an error naming Fuel and MemoryPages that is not ErrInvalidModule", err)
	}
}

func TestLimitsValidate(t *testing.T) {
	if err := DefaultLimits().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if err := (Limits{}).Validate(); err == nil {
		t.Fatal("zero limits validate")
	}
}

func TestCompilationCacheOnDisk(t *testing.T) {
	dir := t.TempDir()
	module := readFixture(t, "../../examples/echo-c/echo.wasm")
	for i := range 2 {
		e, err := NewEngine(context.Background(), EngineOptions{CacheDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		m, err := e.Compile(context.Background(), module, testLimits())
		if err != nil {
			t.Fatal(err)
		}
		resp, _, err := serve(t, m, getRequest("/x", ""), &LocalHost{KV: NewMemoryKV(nil)})
		if err != nil || !bytes.Contains(resp.Body, []byte("path: /x")) {
			t.Fatalf("engine %d: %v %v", i, resp, err)
		}
		m.Close()
		e.Close(context.Background())
		entries, err := os.ReadDir(dir)
		if err != nil || len(entries) == 0 {
			t.Fatalf("engine %d left no compiled code in %s (%v)", i, dir, err)
		}
	}
}

func TestModuleClose(t *testing.T) {
	e := newTestEngine(t)
	m := compileFixture(t, e, "../../examples/hello-wat/hello.wasm", testLimits())
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := serve(t, m, getRequest("/", ""), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Serve after Close: %v", err)
	}
}
