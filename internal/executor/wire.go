package executor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/aegis-edge/aegis/internal/wasm"
)

// The wasm handler's messages travel inside request and response frames in
// a compact binary encoding: unsigned varints, and strings and byte slices
// as a varint length then the bytes. It carries no field names and is read
// in one pass with a sticky error, so decoding what a worker sends (which
// the supervisor does not trust) cannot fail halfway into a partial value.

// wireVersion leads every message; a decoder refuses any other.
const wireVersion = 1

// wasmRequest is what the supervisor sends a worker for one invocation.
type wasmRequest struct {
	Function, Version string
	// Digest is the module's SHA-256, hex: the worker fetches the bytes
	// with a "module" host call when it has not compiled them.
	Digest string
	// Timeout is the invocation's deadline, from when it was sent; the
	// supervisor waits a grace period longer before it kills the worker.
	Timeout      time.Duration
	Limits       wasm.Limits
	AllowedHosts []string
	Request      wasm.Request
}

// logLine is one line the function logged.
type logLine struct {
	Stream, Level, Msg string
	Attrs              map[string]string
}

// wasmResponse is what a worker answers: the function's response or its
// *wasm.Error, what it used, and its log lines.
type wasmResponse struct {
	Status   int
	Header   http.Header
	Body     []byte
	FuelUsed int64
	// Failed says Kind, ErrStatus, ErrorID and Message describe a
	// *wasm.Error; Status, Header and Body are then empty.
	Failed    bool
	Kind      string
	ErrStatus int
	ErrorID   string
	Message   string
	Logs      []logLine
	// Compiled says the worker compiled the module rather than load the
	// code it was sent (counted: it should never happen).
	Compiled bool
}

// errWire marks a message that does not decode.
var errWire = errors.New("malformed wasm message")

type encoder struct{ b []byte }

func (e *encoder) uint(v uint64)  { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) int(v int64)    { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) bytes(v []byte) { e.uint(uint64(len(v))); e.b = append(e.b, v...) }
func (e *encoder) str(v string)   { e.uint(uint64(len(v))); e.b = append(e.b, v...) }

func (e *encoder) strs(v []string) {
	e.uint(uint64(len(v)))
	for _, s := range v {
		e.str(s)
	}
}

func (e *encoder) header(h http.Header) {
	e.uint(uint64(len(h)))
	for k, vs := range h {
		e.str(k)
		e.strs(vs)
	}
}

// maxWireItems bounds the list items, header fields, log lines and log
// attributes of one message together. An item costs as little as a byte
// in the message but tens of bytes once decoded (a string header alone is
// 16), so a count that the message's length allows (16 MiB of empty
// header values) would still build hundreds of MiB. No real message comes
// near: the engine keeps 1,024 log lines, and 65,536 header values is
// more than any HTTP server accepts.
const maxWireItems = 1 << 16

// prealloc bounds the room made for a count before its items decode;
// beyond it, collections grow with the items actually read.
const prealloc = 16

type decoder struct {
	b     []byte
	err   error
	items int // items counted so far, against maxWireItems
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", errWire, what)
	}
}

func (d *decoder) uint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) int() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a count of items of at least min bytes each. It refuses a
// count the rest of the message cannot hold, or one that takes the
// message past maxWireItems, before anything is made for the items.
func (d *decoder) count(min int) int {
	n := d.uint()
	if d.err != nil {
		return 0
	}
	if n > uint64(len(d.b)/max(min, 1)) {
		d.fail(fmt.Sprintf("count of %d past the end (%d bytes left)", n, len(d.b)))
		return 0
	}
	if n > uint64(maxWireItems-d.items) {
		d.fail(fmt.Sprintf("count of %d takes the message past %d items", n, maxWireItems))
		return 0
	}
	d.items += int(n)
	return int(n)
}

func (d *decoder) bytes() []byte {
	n := d.uint()
	if d.err == nil && n > uint64(len(d.b)) {
		d.fail(fmt.Sprintf("length of %d past the end (%d bytes left)", n, len(d.b)))
	}
	if d.err != nil {
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string { return string(d.bytes()) }

func (d *decoder) strs() []string {
	n := d.count(1)
	if n == 0 {
		return nil
	}
	v := make([]string, 0, min(n, prealloc))
	for i := 0; i < n && d.err == nil; i++ {
		v = append(v, d.str())
	}
	return v
}

func (d *decoder) header() http.Header {
	n := d.count(2)
	h := make(http.Header, min(n, prealloc))
	for i := 0; i < n && d.err == nil; i++ {
		k := d.str()
		h[k] = d.strs()
	}
	return h
}

// bounded reads an int that must lie in [lo, hi].
func (d *decoder) bounded(lo, hi int64, what string) int64 {
	v := d.int()
	if d.err == nil && (v < lo || v > hi) {
		d.fail(what + " out of range")
	}
	return v
}

func (d *decoder) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	return d.err
}

func encodeLimits(e *encoder, l wasm.Limits) {
	for _, v := range []int64{l.Fuel, int64(l.Timeout), int64(l.MemoryPages), l.MaxRequestBytes, l.MaxResponseBytes,
		int64(l.FetchCount), l.FetchMaxBytes, int64(l.FetchTimeout), int64(l.KVMaxKeyBytes), int64(l.KVMaxValueBytes),
		l.KVQuotaBytes, l.MaxModuleBytes} {
		e.int(v)
	}
}

func decodeLimits(d *decoder) wasm.Limits {
	var l wasm.Limits
	l.Fuel = d.int()
	l.Timeout = time.Duration(d.int())
	l.MemoryPages = uint32(d.bounded(0, math.MaxUint32, "memory pages"))
	l.MaxRequestBytes = d.int()
	l.MaxResponseBytes = d.int()
	l.FetchCount = int(d.bounded(math.MinInt32, math.MaxInt32, "fetch count"))
	l.FetchMaxBytes = d.int()
	l.FetchTimeout = time.Duration(d.int())
	l.KVMaxKeyBytes = int(d.bounded(math.MinInt32, math.MaxInt32, "key size"))
	l.KVMaxValueBytes = int(d.bounded(math.MinInt32, math.MaxInt32, "value size"))
	l.KVQuotaBytes = d.int()
	l.MaxModuleBytes = d.int()
	return l
}

func (r *wasmRequest) encode() []byte {
	e := &encoder{b: make([]byte, 0, 256+len(r.Request.Body))}
	e.uint(wireVersion)
	e.str(r.Function)
	e.str(r.Version)
	e.str(r.Digest)
	e.int(int64(r.Timeout))
	encodeLimits(e, r.Limits)
	e.strs(r.AllowedHosts)
	q := r.Request
	for _, s := range []string{q.Method, q.Host, q.ScriptName, q.PathInfo, q.RawQuery, q.RemoteAddr, q.Proto, q.ServerName, q.ServerPort} {
		e.str(s)
	}
	e.header(q.Header)
	e.bytes(q.Body)
	return e.b
}

func decodeWasmRequest(b []byte) (wasmRequest, error) {
	d := &decoder{b: b}
	var r wasmRequest
	if v := d.uint(); d.err == nil && v != wireVersion {
		d.fail(fmt.Sprintf("version %d", v))
	}
	r.Function, r.Version, r.Digest = d.str(), d.str(), d.str()
	r.Timeout = time.Duration(d.int())
	r.Limits = decodeLimits(d)
	r.AllowedHosts = d.strs()
	q := &r.Request
	for _, s := range []*string{&q.Method, &q.Host, &q.ScriptName, &q.PathInfo, &q.RawQuery, &q.RemoteAddr, &q.Proto, &q.ServerName, &q.ServerPort} {
		*s = d.str()
	}
	q.Header = d.header()
	q.Body = d.bytes()
	return r, d.end()
}

func (r *wasmResponse) encode() []byte {
	e := &encoder{b: make([]byte, 0, 128+len(r.Body))}
	e.uint(wireVersion)
	e.int(r.FuelUsed)
	if r.Failed {
		e.uint(1)
		e.str(r.Kind)
		e.int(int64(r.ErrStatus))
		e.str(r.ErrorID)
		e.str(r.Message)
	} else {
		e.uint(0)
		e.int(int64(r.Status))
		e.header(r.Header)
		e.bytes(r.Body)
	}
	e.uint(uint64(len(r.Logs)))
	for _, l := range r.Logs {
		e.str(l.Stream)
		e.str(l.Level)
		e.str(l.Msg)
		e.uint(uint64(len(l.Attrs)))
		for k, v := range l.Attrs {
			e.str(k)
			e.str(v)
		}
	}
	e.uint(boolFlag(r.Compiled))
	return e.b
}

// decodeWasmResponse reads a worker's answer. It checks the encoding only;
// the executor checks the content against the function's limits.
func decodeWasmResponse(b []byte) (wasmResponse, error) {
	d := &decoder{b: b}
	var r wasmResponse
	if v := d.uint(); d.err == nil && v != wireVersion {
		d.fail(fmt.Sprintf("version %d", v))
	}
	r.FuelUsed = d.int()
	switch d.uint() {
	case 0:
		r.Status = int(d.bounded(0, 999, "status"))
		r.Header = d.header()
		r.Body = d.bytes()
	case 1:
		r.Failed = true
		r.Kind = d.str()
		r.ErrStatus = int(d.bounded(0, 999, "error status"))
		r.ErrorID = d.str()
		r.Message = d.str()
	default:
		d.fail("outcome")
	}
	n := d.count(4)
	if n > 0 {
		r.Logs = make([]logLine, 0, min(n, prealloc))
	}
	for i := 0; i < n && d.err == nil; i++ {
		l := logLine{Stream: d.str(), Level: d.str(), Msg: d.str()}
		if m := d.count(2); m > 0 {
			l.Attrs = make(map[string]string, min(m, prealloc))
			for j := 0; j < m && d.err == nil; j++ {
				k := d.str()
				l.Attrs[k] = d.str()
			}
		}
		r.Logs = append(r.Logs, l)
	}
	r.Compiled = d.uint() == 1
	return r, d.end()
}
