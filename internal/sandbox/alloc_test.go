package sandbox

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
)

// allocated returns the bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// A worker's frame header declares the payload's length; the supervisor
// makes room as the bytes arrive, so a frame that declares 16 MiB and
// carries little costs little.
func TestFrameAllocatesByBytesRead(t *testing.T) {
	const declared = 16 << 20
	header := func() []byte {
		h := make([]byte, frameHeaderSize)
		putHeader(h, frame{typ: msgResponse, id: 1})
		binary.LittleEndian.PutUint32(h, declared)
		return h
	}
	for _, tc := range []struct {
		name  string
		sent  int    // payload bytes that arrive before the stream ends
		limit uint64 // bytes reading may allocate
	}{
		{"declares 16 MiB, sends 100 bytes", 100, 256 << 10},
		{"declares 16 MiB, sends 1 MiB", 1 << 20, 4 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := append(header(), make([]byte, tc.sent)...)
			var err error
			n := allocated(func() { _, err = newFrameConn(bytes.NewBuffer(in), declared).read() })
			if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), "of 16777216 bytes") {
				t.Fatalf("read: %v, want an unexpected EOF naming the declared length", err)
			}
			if n > tc.limit {
				t.Errorf("allocated %d bytes for %d received, over %d", n, tc.sent, tc.limit)
			}
			t.Logf("allocated %d bytes for %d received: %v", n, tc.sent, err)
		})
	}
	// A frame that is all there reads whole, in a bounded number of
	// steps: at most twice its size.
	payload := bytes.Repeat([]byte("0123456789abcdef"), declared/16)
	in := append(header(), payload...)
	var f frame
	var err error
	n := allocated(func() { f, err = newFrameConn(bytes.NewBuffer(in), declared).read() })
	if err != nil || !bytes.Equal(f.payload, payload) {
		t.Fatalf("full frame: %d bytes, %v", len(f.payload), err)
	}
	if n > 2*declared+firstChunk {
		t.Errorf("a full frame of %d bytes allocated %d", declared, n)
	}
}

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
			n := allocated(func() { _, err = decodeWasmResponse(tc.msg) })
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
