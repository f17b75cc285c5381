package wasm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/aegis-edge/aegis/internal/wasm/fuel"
)

// The hostile corpus (testdata/hostile) and modules built here for the
// attacks that are a matter of count: each is refused at deploy with an
// error naming the limit, or stopped at run with its aegis-error, while
// the test process's memory stays within a bound set by the limits.

// rssBound is how much the test process may grow while one hostile
// module is compiled and run: generous next to the 4 MiB memory limit of
// testLimits, far below what the attacks took unchecked (a GiB and more).
func rssBound(l Limits) uint64 { return 8*uint64(l.MemoryPages)*PageSize + 128<<20 }

// peakGrowth runs f and returns how far the process grew: the larger of
// the rise of its resident set to its peak (VmHWM, reset first through
// clear_refs, where that works) and the rise of the memory the Go runtime
// obtained from the system, which counts heap that was allocated but not
// yet touched (a table's zeroed array, say) and, as the runtime seldom
// returns memory, stands for the heap's peak.
func peakGrowth(t *testing.T, f func()) uint64 {
	t.Helper()
	runtime.GC()
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	resettable := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	rss := procStatus(t, "VmRSS")
	f()
	runtime.ReadMemStats(&b)
	grew := max(b.Sys, a.Sys) - a.Sys
	if resettable {
		grew = max(grew, max(procStatus(t, "VmHWM"), rss)-rss)
	}
	return grew
}

// procStatus reads a kB field of /proc/self/status, in bytes.
func procStatus(t *testing.T, field string) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return n << 10
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}

func TestHostileModulesRefused(t *testing.T) {
	e := newTestEngine(t)
	hostile := func(name string) []byte { return readFixture(t, "testdata/hostile/"+name+".wasm") }
	tests := []struct {
		name   string
		module []byte
		limits func(*Limits)
		reason string
	}{
		// Tables count against the memory limit at 16 bytes an element.
		{"two tables of 2^27 funcrefs", hostile("tables"), nil, "table 0 brings its tables to 2147483648 bytes"},
		{"externref table over the limit", hostile("tables_externref"), nil, "table 0 brings its tables to 4194320 bytes"},
		{"table.grow without a maximum", hostile("table_grow_nomax"), nil, "table 0 is grown by table.grow but declares no maximum"},
		{"table.grow to a huge maximum", hostile("table_grow_bigmax"), nil, "table 0 brings its tables to 2147483648 bytes"},
		{"tables and memory together over the limit", hostile("table_grow_loop"), func(l *Limits) { l.MemoryPages = 32 }, "needs 1 memory pages and 2097152 bytes of tables at start"},
		// Compile bombs.
		{"2,000 locals × 2,000 br_if", hostile("bomb_locals_brif"), nil, "function 0 has a weight (compile cost) of"},
		{"10,000 br_if", hostile("bomb_brif"), nil, "function 0 has 10000 branch targets, over the limit of 8192"},
		{"br_table of 10,000 labels", hostile("bomb_brtable"), nil, "function 0 has 10001 branch targets, over the limit of 8192"},
		{"5,000 nested blocks", hostile("bomb_nesting"), nil, "function 0 has 5001 levels of nested blocks, over the limit of 2048"},
		{"one function at the weight limit, one over", generated(bombFunctions(969, 64, 1)...).bytes(), nil, ""},
		{"weights over the module limit", generated(bombFunctions(969, 64, MaxModuleWeight/maxWeightFunction+1)...).bytes(), nil, "weights (compile cost) add up to"},
		{"locals over the limit", generated(localsFunction(MaxLocals + 1)).bytes(), nil, "function 0 has 4097 params and locals, over the limit of 4096"},
		{"a body over 1 MiB", generated(nopFunction(MaxFunctionBytes + 1)).bytes(), nil, "function 0 has 1048577 body bytes, over the limit of 1048576"},
		// Counts.
		{"too many functions", generated(emptyFunctions(MaxFunctions + 1)...).bytes(), nil, "defines 50001 functions, over the limit of 50000"},
		{"too many element items", (&genModule{funcs: emptyFunctions(1), elemItems: MaxElementItems + 1}).bytes(), nil, "element segments hold 131073 items"},
		{"too many data segments", (&genModule{funcs: emptyFunctions(1), dataSegments: MaxDataSegments + 1}).bytes(), nil, "has 262145 data segments"},
		{"data over the memory limit", (&genModule{funcs: emptyFunctions(1), passiveData: 64*PageSize + 1}).bytes(), nil, "data segments hold 4194305 bytes, over the memory limit of 4194304 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := testLimits()
			if tt.limits != nil {
				tt.limits(&l)
			}
			if tt.reason == "" { // a pair: the module at the limit compiles
				m := compileBytes(t, e, tt.module, l)
				m.Close()
				tt.module = generated(bombFunctions(970, 64, 1)...).bytes()
				tt.reason = "function 0 has a weight (compile cost) of 524588, over the limit of 524288"
			}
			var err error
			grew := peakGrowth(t, func() {
				var m *Module
				if m, err = e.Compile(context.Background(), tt.module, l); err == nil {
					m.Close()
				}
			})
			t.Logf("the process grew by %d bytes", grew)
			if grew > rssBound(l) {
				t.Errorf("the process grew by %d bytes refusing it, over %d", grew, rssBound(l))
			}
			if !errors.Is(err, ErrInvalidModule) || !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("got %v, want an invalid module saying %q", err, tt.reason)
			}
			checkStillServing(t, e)
		})
	}
}

func TestHostileModulesStopped(t *testing.T) {
	e := newTestEngine(t)
	tests := []struct {
		name    string
		fixture string
		kind    Kind
	}{
		{"table.grow loop", "table_grow_loop", KindFuel},
		{"externref table grown whole, then table.fill loop", "table_grow_fill", KindFuel},
		{"memory grown after the table took half the limit", "table_then_memory", KindMemory},
		{"memory.fill of all memory in a loop", "memory_fill", KindFuel},
		{"memory.copy of half of memory in a loop", "memory_copy", KindFuel},
		{"random_get of all memory in a loop", "random_flood", KindFuel},
		{"fd_write of all memory to stderr in a loop", "write_flood", KindFuel},
		{"aegis.log of 64 KiB in a loop", "log_flood", KindFuel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := testLimits()
			var resp *Response
			var err error
			grew := peakGrowth(t, func() {
				m := compileFixture(t, e, "testdata/hostile/"+tt.fixture+".wasm", l)
				resp, _, err = serve(t, m, getRequest("/", ""), nil)
			})
			var we *Error
			if !errors.As(err, &we) || we.Kind != tt.kind || we.Header() != string(tt.kind) || we.Status != 503 {
				t.Fatalf("got %v, %v; want a %s error", resp, err, tt.kind)
			}
			if tt.kind == KindFuel && resp.FuelUsed != l.Fuel {
				t.Fatalf("fuel error after %d of %d fuel", resp.FuelUsed, l.Fuel)
			}
			t.Logf("the process grew by %d bytes", grew)
			if grew > rssBound(l) {
				t.Fatalf("the process grew by %d bytes running it, over %d", grew, rssBound(l))
			}
			checkStillServing(t, e)
		})
	}
}

// TestHostCallsPayForBytes runs one host call at two sizes: the fuel
// used differs by exactly the bytes' price.
func TestHostCallsPayForBytes(t *testing.T) {
	m := compileFixture(t, newTestEngine(t), "testdata/hostile/hostcall_once.wasm", testLimits())
	used := func(selector, n uint32) int64 {
		t.Helper()
		req := getRequest("/", "")
		req.Method, req.Body = "POST", binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, selector), n)
		resp, _, _ := serve(t, m, req, nil) // no CGI answer: it only calls
		if resp == nil {
			t.Fatal("no response")
		}
		return resp.FuelUsed
	}
	const n = 1 << 20
	if got, want := used(0, n)-used(0, 0), int64(n*randomUnitsPerByte); got != want {
		t.Errorf("random_get of %d bytes cost %d fuel more than of none, want %d", n, got, want)
	}
	if got, want := used(1, n)-used(1, 0), int64(n>>hostBytesShift); got != want {
		t.Errorf("fd_write of %d bytes cost %d fuel more than of none, want %d", n, got, want)
	}
	// A call the budget cannot pay for fails the request for fuel.
	l := testLimits()
	l.Fuel = n * randomUnitsPerByte
	m = compileFixture(t, newTestEngine(t), "testdata/hostile/hostcall_once.wasm", l)
	req := getRequest("/", "")
	req.Method, req.Body = "POST", binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, 0), n)
	_, _, err := serve(t, m, req, nil)
	var we *Error
	if !errors.As(err, &we) || we.Kind != KindFuel {
		t.Fatalf("random_get of %d bytes on %d fuel: %v, want a fuel error", n, l.Fuel, err)
	}
}

// TestShapeOfRealModules holds the limits to the modules we build: every
// example and fixture passes with room to spare.
func TestShapeOfRealModules(t *testing.T) {
	for _, path := range []string{
		"../../examples/hello-go/hello.wasm", "../../examples/hello-c/hello.wasm", "../../examples/echo-c/echo.wasm",
		"../../examples/hello-wat/hello.wasm", "fuel/testdata/program_go.wasm", "fuel/testdata/program_c.wasm", "testdata/hostcalls.wasm",
	} {
		s, err := fuel.Inspect(readFixture(t, path))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := checkShape(s, DefaultLimits()); err != nil {
			t.Errorf("%s: %v", path, err)
		}
		var weight uint64
		for _, f := range s.Functions {
			weight += Weight(f)
			if Weight(f) > MaxFunctionWeight/2 || f.BranchTargets > MaxBranchTargets/2 || f.Depth > MaxDepth/2 || f.Locals > MaxLocals/2 {
				t.Errorf("%s: function %d (%+v) is within 2x of a limit", path, f.Index, f)
			}
		}
		if weight > MaxModuleWeight/2 {
			t.Errorf("%s: weight %d is within 2x of the module limit", path, weight)
		}
	}
}

func compileBytes(t *testing.T, e *Engine, module []byte, l Limits) *Module {
	t.Helper()
	m, err := e.Compile(context.Background(), module, l)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// genModule builds a binary module that exports memory (one page) and
// _start (function 0, of type () -> ()), with the given function bodies
// (locals and code, without the size prefix), a passive element segment
// of elemItems references to function 0, dataSegments empty active data
// segments and one passive data segment of passiveData bytes.
type genModule struct {
	funcs        [][]byte
	elemItems    int
	dataSegments int
	passiveData  int
}

func generated(funcs ...[]byte) *genModule { return &genModule{funcs: funcs} }

func (g *genModule) bytes() []byte {
	u := func(b []byte, v int) []byte { return binary.AppendUvarint(b, uint64(v)) }
	var out bytes.Buffer
	out.Write(wasmHeader)
	section := func(id byte, payload []byte) {
		out.WriteByte(id)
		out.Write(u(nil, len(payload)))
		out.Write(payload)
	}
	section(1, []byte{1, 0x60, 0, 0})
	funcs := u(nil, len(g.funcs))
	funcs = append(funcs, make([]byte, len(g.funcs))...)
	section(3, funcs)
	section(5, []byte{1, 0, 1})
	section(7, append([]byte{2, 6}, append([]byte("memory\x02\x00\x06_start"), 0, 0)...))
	if g.elemItems > 0 {
		elem := append([]byte{1, 1, 0}, u(nil, g.elemItems)...)
		section(9, append(elem, make([]byte, g.elemItems)...))
	}
	code := u(nil, len(g.funcs))
	for _, f := range g.funcs {
		code = append(u(code, len(f)), f...)
	}
	section(10, code)
	if n := g.dataSegments + min(g.passiveData, 1); n > 0 {
		data := u(nil, n)
		for range g.dataSegments {
			data = append(data, 0, 0x41, 0, 0x0b, 0)
		}
		if g.passiveData > 0 {
			data = append(u(append(data, 1), g.passiveData), make([]byte, g.passiveData)...)
		}
		section(11, data)
	}
	return out.Bytes()
}

func emptyFunctions(n int) [][]byte {
	fs := make([][]byte, n)
	for i := range fs {
		fs[i] = []byte{0, 0x0b}
	}
	return fs
}

func localsFunction(n int) []byte {
	return append(binary.AppendUvarint([]byte{1}, uint64(n)), 0x7f, 0x0b)
}

func nopFunction(size int) []byte {
	f := make([]byte, size)
	f[0], f[size-1] = 0, 0x0b
	for i := 1; i < size-1; i++ {
		f[i] = 0x01
	}
	return f
}

// maxWeightFunction is the weight of bombFunctions(969, 64, n)'s
// functions, 969 branches into one loop: (68 × (969² + 48 × 969) + 1²) /
// 128, just under MaxFunctionWeight; with 970 branches it is over.
const maxWeightFunction = (68*(969*969+48*969) + 1) / 128

// bombFunctions returns n functions of the compile-bomb kind: locals i32
// locals and a loop closed by branches br_if, each reading a local.
func bombFunctions(branches, locals, n int) [][]byte {
	f := append(binary.AppendUvarint([]byte{1}, uint64(locals)), 0x7f, 0x03, 0x40)
	for j := range branches {
		f = append(binary.AppendUvarint(append(f, 0x20), uint64(j%locals)), 0x0d, 0)
	}
	f = append(f, 0x0b, 0x0b)
	fs := make([][]byte, n)
	for i := range fs {
		fs[i] = f
	}
	return fs
}

// TestInstanceSetUpPaysFuel: setting up an instance, which wazero does
// before any fuel check, comes out of the budget: one unit per table
// element, one per 16 bytes of data.
func TestInstanceSetUpPaysFuel(t *testing.T) {
	e := newTestEngine(t)
	tests := []struct {
		name   string
		module []byte
		cost   int64
	}{
		{"an externref table of 262,145 elements", readFixture(t, "testdata/hostile/tables_externref.wasm"), 262145},
		{"a data segment of 16,000 bytes", (&genModule{funcs: emptyFunctions(1), passiveData: 16_000}).bytes(), 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := testLimits()
			l.MemoryPages = 128 // room for the table
			for _, budget := range []int64{tt.cost - 1, tt.cost + 100} {
				l.Fuel = budget
				m := compileBytes(t, e, tt.module, l)
				resp, _, err := serve(t, m, getRequest("/", ""), nil)
				m.Close()
				var we *Error
				if !errors.As(err, &we) {
					t.Fatalf("budget %d: %v", budget, err)
				}
				switch {
				case budget < tt.cost && (we.Kind != KindFuel || resp.FuelUsed != budget):
					t.Errorf("budget %d under the set-up cost %d: %v, fuel used %d; want a fuel error", budget, tt.cost, err, resp.FuelUsed)
				case budget >= tt.cost && (we.Kind != KindCGI || resp.FuelUsed < tt.cost || resp.FuelUsed > tt.cost+10):
					// _start runs and answers nothing: a CGI error.
					t.Errorf("budget %d over the set-up cost %d: %v, fuel used %d", budget, tt.cost, err, resp.FuelUsed)
				}
			}
		})
	}
}
