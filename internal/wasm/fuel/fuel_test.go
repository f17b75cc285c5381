package fuel

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/tetratelabs/wazero"
)

// vector is one call of a corpus module.
type vector struct {
	module string
	fn     string
	args   []uint64
}

func neg(v int32) uint64 { return uint64(uint32(v)) }

var corpus = []vector{
	{"control.wasm", "dispatch", []uint64{0, 7, 5}},
	{"control.wasm", "dispatch", []uint64{1, 7, 5}},
	{"control.wasm", "dispatch", []uint64{2, 7, 5}},
	{"control.wasm", "dispatch", []uint64{3, 7, 5}},
	{"control.wasm", "dispatch", []uint64{4, 7, 5}}, // traps: out of table bounds
	{"control.wasm", "multivalue", []uint64{10}},
	{"control.wasm", "ifelse", []uint64{3}},
	{"control.wasm", "ifelse", []uint64{9}},
	{"control.wasm", "classify", []uint64{0}},
	{"control.wasm", "classify", []uint64{neg(-5)}},
	{"control.wasm", "classify", []uint64{5}},
	{"control.wasm", "classify", []uint64{5000}},
	{"control.wasm", "switch", []uint64{50}},
	{"control.wasm", "table_value", []uint64{0}},
	{"control.wasm", "table_value", []uint64{1}},
	{"control.wasm", "table_value", []uint64{9}},
	{"control.wasm", "nested", []uint64{20}},
	{"control.wasm", "deadcode", []uint64{0}},
	{"control.wasm", "deadcode", []uint64{5}},
	{"control.wasm", "is_even", []uint64{31}},
	{"control.wasm", "is_even", []uint64{100}},
	{"control.wasm", "find_first_multiple", []uint64{100, 17}},
	{"simd.wasm", "lanes", nil},
	{"simd.wasm", "arith", []uint64{100}},
	{"simd.wasm", "float", nil},
	{"simd.wasm", "memory_lanes", nil},
	{"simd.wasm", "convert", nil},
	{"bulk.wasm", "memory", []uint64{20}},
	{"bulk.wasm", "fill", []uint64{1000}},
	{"bulk.wasm", "fill", []uint64{70000}}, // traps: out of bounds
	{"bulk.wasm", "table_fill", []uint64{2}},
	{"bulk.wasm", "grow", []uint64{1}},
	{"bulk.wasm", "grow", []uint64{100}}, // fails: above the maximum
	{"bulk.wasm", "tables", []uint64{7}},
	{"bulk.wasm", "numeric", []uint64{neg(-3)}},
	{"bulk.wasm", "numeric", []uint64{0x12345}},
	{"programs.wasm", "fib", []uint64{20}},
	{"programs.wasm", "primes", []uint64{10000}},
	{"programs.wasm", "collatz", []uint64{3000}},
	{"programs.wasm", "sort", []uint64{300}},
	{"programs.wasm", "three", nil},
	{"programs.wasm", "count", []uint64{100}},
	{"program_c.wasm", "_start", nil},
	{"program_go.wasm", "_start", nil},
}

// TestCorpus runs every corpus call on the original and the instrumented
// module: same results, same trap, same output, and the same fuel on two
// runs.
func TestCorpus(t *testing.T) {
	h := newHost(t, wazero.NewRuntimeConfig())
	modules := map[string][2][]byte{}
	for _, v := range corpus {
		t.Run(fmt.Sprintf("%s/%s%v", v.module, v.fn, v.args), func(t *testing.T) {
			pair, ok := modules[v.module]
			if !ok {
				orig := readModule(t, v.module)
				pair = [2][]byte{orig, mustInstrument(t, orig)}
				modules[v.module] = pair
			}
			want := h.call(t, pair[0], 0, v.fn, v.args...)
			first := h.call(t, pair[1], unlimited, v.fn, v.args...)
			second := h.call(t, pair[1], unlimited, v.fn, v.args...)
			for _, got := range []outcome{first, second} {
				if !reflect.DeepEqual(got.results, want.results) || got.stdout != want.stdout {
					t.Fatalf("instrumented: %v %q, original: %v %q", got.results, got.stdout, want.results, want.stdout)
				}
				if (got.err == nil) != (want.err == nil) {
					t.Fatalf("instrumented error %v, original error %v", got.err, want.err)
				}
				if Exhausted(got.remaining) {
					t.Fatalf("remaining fuel %d with an unlimited budget", got.remaining)
				}
			}
			used := unlimited - first.remaining
			if used <= 0 {
				t.Fatalf("used %d fuel", used)
			}
			if again := unlimited - second.remaining; again != used {
				t.Fatalf("fuel used %d then %d", used, again)
			}
			t.Logf("fuel used %d", used)
		})
	}
}

// TestWasmValidate checks every instrumented corpus module with wabt's
// validator, an implementation independent of wazero.
func TestWasmValidate(t *testing.T) {
	validate, err := exec.LookPath("wasm-validate")
	if err != nil {
		t.Skip("wasm-validate not installed")
	}
	files, _ := filepath.Glob("testdata/*.wasm")
	if len(files) == 0 {
		t.Fatal("no corpus")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			out := mustInstrument(t, readModule(t, filepath.Base(file)))
			path := filepath.Join(t.TempDir(), "out.wasm")
			writeFile(t, path, out)
			if msg, err := exec.Command(validate, path).CombinedOutput(); err != nil {
				t.Fatalf("wasm-validate: %v\n%s", err, msg)
			}
		})
	}
}

func TestInspect(t *testing.T) {
	s, err := Inspect(readModule(t, "bulk.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	// $funcs 2..10 grown by "tables", $ext 4.. grown by "table_grow".
	want := []TableShape{{Min: 2, Max: 10, HasMax: true, Grown: true}, {Externref: true, Min: 4, Grown: true}}
	if !slices.Equal(s.Tables, want) {
		t.Errorf("tables %+v, want %+v", s.Tables, want)
	}
	if s.DataSegments != 1 || s.DataBytes != uint64(len("hello, fuel")) || s.ElementItems != 4 {
		t.Errorf("data %d/%d, element items %d", s.DataSegments, s.DataBytes, s.ElementItems)
	}
	// "memory" (function 5): locals $fill $i $sum, one loop with one br_if.
	f := s.Functions[4]
	if f.Index != 4 || f.Locals != 3 || f.BranchTargets != 1 || f.Depth != 1 || f.FanInSquares != 1 {
		t.Errorf("function 4 %+v", f)
	}
	c, err := Inspect(readModule(t, "control.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	var targets, depth uint32
	for _, f := range c.Functions {
		targets, depth = max(targets, f.BranchTargets), max(depth, f.Depth)
		// Each branch targets one label: the squares add up to at least
		// the branches, at most their square.
		if b := uint64(f.BranchTargets); f.FanInSquares < b || f.FanInSquares > b*b {
			t.Errorf("control.wasm function %d: %+v", f.Index, f)
		}
	}
	if targets < 3 || depth < 2 {
		t.Errorf("control.wasm: at most %d branch targets and %d levels of nesting", targets, depth)
	}
}
