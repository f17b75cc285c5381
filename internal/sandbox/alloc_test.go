//go:build linux

package sandbox

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/aegis-edge/aegis/internal/sandbox/sandboxtest"
)

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
			n := sandboxtest.Allocated(func() { _, err = newFrameConn(bytes.NewBuffer(in), declared).read() })
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
	n := sandboxtest.Allocated(func() { f, err = newFrameConn(bytes.NewBuffer(in), declared).read() })
	if err != nil || !bytes.Equal(f.payload, payload) {
		t.Fatalf("full frame: %d bytes, %v", len(f.payload), err)
	}
	if n > 2*declared+firstChunk {
		t.Errorf("a full frame of %d bytes allocated %d", declared, n)
	}
}
