//go:build linux

package sandbox

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// msgType says what a frame carries.
type msgType uint8

// Frame types. The supervisor sends init, ack, request and host replies;
// the worker sends ready, responses, errors and host calls. Anything else,
// or a type in the wrong direction or order, is a protocol violation.
const (
	msgInit      msgType = iota + 1 // supervisor → worker: workerConfig (JSON)
	msgReady                        // worker → supervisor: Report (JSON)
	msgAck                          // supervisor → worker: listener taken, serve
	msgRequest                      // supervisor → worker: timeout (8 bytes) + payload
	msgResponse                     // worker → supervisor: payload
	msgError                        // worker → supervisor: the handler's error text
	msgHostCall                     // worker → supervisor: op length (1 byte) + op + data
	msgHostReply                    // supervisor → worker: data
	msgHostError                    // supervisor → worker: error text
	msgLast      = msgHostError
)

func (t msgType) String() string {
	names := [...]string{"invalid", "init", "ready", "ack", "request", "response", "error", "host-call", "host-reply", "host-error"}
	if int(t) < len(names) {
		return names[t]
	}
	return fmt.Sprintf("type-%d", uint8(t))
}

// frameHeaderSize is the fixed header: payload length (uint32), type
// (uint8), three zero bytes, and the id (uint64) of the request or host
// call, all little-endian.
const frameHeaderSize = 16

// Protocol errors, matched with errors.Is.
var (
	ErrFrameTooLarge = errors.New("frame exceeds the size limit")
	ErrBadFrame      = errors.New("malformed frame")
)

type frame struct {
	typ     msgType
	id      uint64
	payload []byte
}

// frameConn reads and writes frames on a stream. Reads use read(2) only,
// never recvmsg, so the kernel discards any file descriptors a peer tries
// to pass (SCM_RIGHTS) instead of installing them.
//
// Reads go through a small buffer, so that a frame's header and a short
// payload arrive in one read(2), not two: on the request path each read is
// a wake-up of the reading thread as well as a syscall.
type frameConn struct {
	rw  io.ReadWriter
	r   *bufio.Reader
	max int
	hdr [frameHeaderSize]byte
}

// frameReadBuffer is what one read(2) may take in: more than a typical
// request or response, so that most frames take one read.
const frameReadBuffer = 16 << 10

func newFrameConn(rw io.ReadWriter, max int) *frameConn {
	if max <= 0 {
		max = DefaultMaxFrame
	}
	return &frameConn{rw: rw, r: bufio.NewReaderSize(rw, frameReadBuffer), max: max}
}

func (c *frameConn) write(f frame) error {
	if len(f.payload) > c.max {
		return fmt.Errorf("writing %s frame of %d bytes: %w", f.typ, len(f.payload), ErrFrameTooLarge)
	}
	buf := make([]byte, frameHeaderSize+len(f.payload))
	putHeader(buf, f)
	copy(buf[frameHeaderSize:], f.payload)
	_, err := c.rw.Write(buf)
	return err
}

func putHeader(b []byte, f frame) {
	binary.LittleEndian.PutUint32(b[0:], uint32(len(f.payload)))
	b[4] = byte(f.typ)
	b[5], b[6], b[7] = 0, 0, 0
	binary.LittleEndian.PutUint64(b[8:], f.id)
}

func (c *frameConn) read() (frame, error) {
	if _, err := io.ReadFull(c.r, c.hdr[:]); err != nil {
		return frame{}, err
	}
	f, n, err := parseHeader(c.hdr[:], c.max)
	if err != nil {
		return frame{}, err
	}
	if f.payload, err = readPayload(c.r, n); err != nil {
		return frame{}, fmt.Errorf("reading %s frame body (%d of %d bytes): %w", f.typ, len(f.payload), n, noEOF(err))
	}
	return f, nil
}

// firstChunk is the room made for a payload before any of it is read.
const firstChunk = 64 << 10

// readPayload reads n bytes into a buffer that grows (doubling) with the
// bytes that arrive, not with the length the header declares: a peer that
// declares a large frame and sends little costs little. On error it
// returns what it read.
func readPayload(r io.Reader, n int) ([]byte, error) {
	buf := make([]byte, 0, min(n, firstChunk))
	for len(buf) < n {
		if len(buf) == cap(buf) {
			buf = append(make([]byte, 0, min(n, 2*cap(buf))), buf...)
		}
		m, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err != nil && len(buf) < n {
			return buf, err
		}
	}
	return buf, nil
}

// parseHeader validates a header and returns the frame (without payload)
// and the payload length.
func parseHeader(b []byte, max int) (frame, int, error) {
	n := binary.LittleEndian.Uint32(b[0:])
	f := frame{typ: msgType(b[4]), id: binary.LittleEndian.Uint64(b[8:])}
	if f.typ == 0 || f.typ > msgLast || b[5]|b[6]|b[7] != 0 {
		return frame{}, 0, fmt.Errorf("header % x: %w", b[:8], ErrBadFrame)
	}
	if uint64(n) > uint64(max) {
		return frame{}, 0, fmt.Errorf("%s frame of %d bytes (limit %d): %w", f.typ, n, max, ErrFrameTooLarge)
	}
	return f, int(n), nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Payload encodings of the structured frames.

func encodeRequest(timeoutNS int64, payload []byte) []byte {
	b := make([]byte, 8+len(payload))
	binary.LittleEndian.PutUint64(b, uint64(timeoutNS))
	copy(b[8:], payload)
	return b
}

func decodeRequest(b []byte) (int64, []byte, error) {
	if len(b) < 8 {
		return 0, nil, fmt.Errorf("request of %d bytes: %w", len(b), ErrBadFrame)
	}
	return int64(binary.LittleEndian.Uint64(b)), b[8:], nil
}

// maxOpLen bounds a host call's operation name.
const maxOpLen = 64

func encodeHostCall(op string, data []byte) ([]byte, error) {
	if op == "" || len(op) > maxOpLen {
		return nil, fmt.Errorf("host call operation %q: %w", op, ErrBadFrame)
	}
	b := make([]byte, 1+len(op)+len(data))
	b[0] = byte(len(op))
	copy(b[1:], op)
	copy(b[1+len(op):], data)
	return b, nil
}

func decodeHostCall(b []byte) (string, []byte, error) {
	if len(b) < 1 || b[0] == 0 || int(b[0]) > maxOpLen || len(b) < 1+int(b[0]) {
		return "", nil, fmt.Errorf("host call of %d bytes: %w", len(b), ErrBadFrame)
	}
	n := int(b[0])
	return string(b[1 : 1+n]), b[1+n:], nil
}
