//go:build linux

package sandbox

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/aegis-edge/aegis/internal/sandbox/sandboxtest"
	"golang.org/x/sys/unix"
)

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	c := newFrameConn(&buf, 64)
	in := []frame{
		{typ: msgRequest, id: 7, payload: encodeRequest(123, []byte("body"))},
		{typ: msgResponse, id: 7},
		{typ: msgHostError, id: 1<<63 + 5, payload: bytes.Repeat([]byte{0xaa}, 64)},
	}
	for _, f := range in {
		if err := c.write(f); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range in {
		got, err := c.read()
		if err != nil {
			t.Fatal(err)
		}
		if got.typ != want.typ || got.id != want.id || !bytes.Equal(got.payload, want.payload) {
			t.Fatalf("read %+v, want %+v", got, want)
		}
	}
	if _, err := c.read(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last frame: %v, want EOF", err)
	}
	if err := c.write(frame{typ: msgResponse, payload: make([]byte, 65)}); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversized write: %v", err)
	}
}

func TestFrameRejects(t *testing.T) {
	// header builds a frame header claiming n payload bytes without
	// allocating them (the kernel-matrix guests have 1 GiB).
	header := func(n uint32, typ byte, pad byte) []byte {
		b := make([]byte, frameHeaderSize)
		putHeader(b, frame{typ: msgType(typ)})
		binary.LittleEndian.PutUint32(b[0:], n)
		b[5] = pad
		return b
	}
	for name, tc := range map[string]struct {
		in   []byte
		want error
	}{
		"type zero":        {header(0, 0, 0), ErrBadFrame},
		"unknown type":     {header(0, byte(msgLast)+1, 0), ErrBadFrame},
		"reserved bits":    {header(0, byte(msgResponse), 1), ErrBadFrame},
		"over the limit":   {header(65, byte(msgResponse), 0), ErrFrameTooLarge},
		"huge length":      {header(0xffffffff, byte(msgResponse), 0)[:frameHeaderSize], ErrFrameTooLarge},
		"truncated body":   {append(header(10, byte(msgResponse), 0), 1, 2), io.ErrUnexpectedEOF},
		"truncated header": {header(0, byte(msgResponse), 0)[:9], io.ErrUnexpectedEOF},
	} {
		_, err := newFrameConn(bytes.NewBuffer(tc.in), 64).read()
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	for _, b := range [][]byte{nil, {0}, {65, 'x'}, {3, 'a', 'b'}} {
		if _, _, err := decodeHostCall(b); !errors.Is(err, ErrBadFrame) {
			t.Errorf("host call % x accepted", b)
		}
	}
}

// A peer that passes a descriptor with SCM_RIGHTS gets its bytes read and
// its descriptor dropped by the kernel: nothing new appears in our table.
func TestDescriptorsFromThePeerAreDropped(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours := os.NewFile(uintptr(fds[0]), "ours")
	defer ours.Close()
	defer unix.Close(fds[1])
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()

	var msg bytes.Buffer
	newFrameConn(&msg, 64).write(frame{typ: msgResponse, id: 1, payload: []byte("hi")})
	before := sandboxtest.OpenFDs(t)
	rights := unix.UnixRights(int(devnull.Fd()), int(devnull.Fd()))
	if err := unix.Sendmsg(fds[1], msg.Bytes(), rights, nil, 0); err != nil {
		t.Fatal(err)
	}
	f, err := newFrameConn(ours, 64).read()
	if err != nil || string(f.payload) != "hi" {
		t.Fatalf("read %+v, %v", f, err)
	}
	if after := sandboxtest.OpenFDs(t); after != before {
		t.Fatalf("descriptors: %d before, %d after reading a message carrying two", before, after)
	}
}

func FuzzReadFrame(f *testing.F) {
	var buf bytes.Buffer
	c := newFrameConn(&buf, 256)
	c.write(frame{typ: msgHostCall, id: 3, payload: []byte("\x06kv.getkey")})
	f.Add(buf.Bytes())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		fr, err := newFrameConn(bytes.NewBuffer(append([]byte(nil), in...)), 256).read()
		if err != nil {
			return
		}
		if fr.typ == 0 || fr.typ > msgLast || len(fr.payload) > 256 || len(in) < frameHeaderSize+len(fr.payload) {
			t.Fatalf("accepted a bad frame: %+v from %d bytes", fr, len(in))
		}
		// What was accepted re-encodes to the bytes it came from.
		var out bytes.Buffer
		if err := newFrameConn(&out, 256).write(fr); err != nil || !bytes.Equal(out.Bytes(), in[:out.Len()]) {
			t.Fatalf("re-encoding differs: % x vs % x (%v)", out.Bytes(), in, err)
		}
		if fr.typ == msgHostCall {
			if op, _, err := decodeHostCall(fr.payload); err == nil && (op == "" || len(op) > maxOpLen) {
				t.Fatalf("bad op %q accepted", op)
			}
		}
	})
}
