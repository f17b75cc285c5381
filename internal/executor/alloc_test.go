package executor

import (
	"errors"
	"strings"
	"testing"

	"github.com/aegis-edge/aegis/internal/sandbox/sandboxtest"
)

// Counts in a worker's answer are checked before anything is made for
// them: against the bytes left and against maxWireItems for the whole
// message, however they are split (one huge count, many counts adding
// up, counts nested in log lines).
func TestForgedCountsAllocateLittle(t *testing.T) {
	const size = 16 << 20
	response := func(body func(e *encoder)) []byte {
		e := &encoder{}
		e.uint(wireVersion)
		e.int(0) // fuel
		e.uint(0)
		e.int(200)
		body(e)
		return e.b
	}
	zeros := func(e *encoder, n int) { e.b = append(e.b, make([]byte, n)...) }
	tests := []struct {
		name  string
		msg   []byte
		want  string
		limit uint64
	}{
		// The review's case: 256 MiB of string headers for a 16 MiB frame.
		{"16M empty values of one header", response(func(e *encoder) {
			e.uint(1)
			e.str("A")
			e.uint(size)
			zeros(e, size)
		}), "past 65536 items", 64 << 10},
		{"8M empty header names", response(func(e *encoder) {
			e.uint(size / 2)
			zeros(e, size)
		}), "past 65536 items", 64 << 10},
		{"4M empty log lines", response(func(e *encoder) {
			e.uint(0) // header
			e.uint(0) // body
			e.uint(size / 4)
			zeros(e, size)
		}), "past 65536 items", 64 << 10},
		{"huge count, few bytes", response(func(e *encoder) {
			e.uint(1 << 40)
			zeros(e, 10)
		}), "past the end", 64 << 10},
		{"many header values adding up", response(func(e *encoder) {
			e.uint(1000)
			for i := range 1000 {
				e.str(string(rune('a'+i%26)) + strings.Repeat("x", i/26))
				e.uint(1000)
				zeros(e, 1000)
			}
		}), "past 65536 items", 8 << 20},
		{"attributes nested in log lines adding up", response(func(e *encoder) {
			e.uint(0)
			e.uint(0)
			e.uint(100)
			for range 100 {
				e.str("log")
				e.str("info")
				e.str("m")
				e.uint(1000)
				for j := range 1000 {
					e.str(strings.Repeat("k", j%40+1))
					e.str("")
				}
			}
		}), "past 65536 items", 8 << 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			n := sandboxtest.Allocated(func() { _, err = decodeWasmResponse(tc.msg) })
			if !errors.Is(err, errWire) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("decoded %d bytes: %v, want an error saying %q", len(tc.msg), err, tc.want)
			}
			if n > tc.limit {
				t.Errorf("decoding %d bytes allocated %d, over %d", len(tc.msg), n, tc.limit)
			}
			t.Logf("%d bytes: allocated %d: %v", len(tc.msg), n, err)
		})
	}
	// Below the bound, a message of many small items still decodes.
	ok := response(func(e *encoder) {
		e.uint(1)
		e.str("X-Many")
		e.uint(maxWireItems - 1)
		zeros(e, maxWireItems-1)
		e.bytes(make([]byte, 8<<20))
		e.uint(0) // no log lines
		e.uint(0) // not compiled
	})
	r, err := decodeWasmResponse(ok)
	if err != nil || len(r.Header["X-Many"]) != maxWireItems-1 || len(r.Body) != 8<<20 {
		t.Fatalf("a message at the bound: %v", err)
	}
}
