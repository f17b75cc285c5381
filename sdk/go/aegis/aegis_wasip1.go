//go:build wasip1

package aegis

import (
	"bytes"
	"errors"
	"sort"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// Error is a negative result code of a host call.
type Error int32

// Result codes of the host module (docs/ABI.md).
const (
	ErrNotFound    Error = -1 // no such key
	ErrInvalid     Error = -2 // malformed argument
	ErrTooLarge    Error = -3 // key, value, body or response over its limit
	ErrQuota       Error = -4 // storage quota would be exceeded
	ErrDenied      Error = -5 // host not allowed
	ErrLimit       Error = -6 // fetch count used up
	ErrTimeout     Error = -7 // fetch timed out
	ErrUnavailable Error = -8 // store or network failure
)

var errorNames = map[Error]string{
	ErrNotFound: "not found", ErrInvalid: "invalid argument", ErrTooLarge: "too large",
	ErrQuota: "quota exceeded", ErrDenied: "host not allowed", ErrLimit: "fetch limit reached",
	ErrTimeout: "timed out", ErrUnavailable: "unavailable",
}

func (e Error) Error() string {
	if s, ok := errorNames[e]; ok {
		return "aegis: " + s
	}
	return "aegis: error " + strconv.Itoa(int(e))
}

//go:wasmimport aegis kv_get
func kvGet(key unsafe.Pointer, keyLen uint32, buf unsafe.Pointer, bufCap uint32) int32

//go:wasmimport aegis kv_set
func kvSet(key unsafe.Pointer, keyLen uint32, val unsafe.Pointer, valLen uint32, ttlMS int64) int32

//go:wasmimport aegis kv_delete
func kvDelete(key unsafe.Pointer, keyLen uint32) int32

//go:wasmimport aegis http_fetch
func httpFetch(req unsafe.Pointer, reqLen uint32, resp unsafe.Pointer, respCap uint32) int32

//go:wasmimport aegis http_fetch_result
func httpFetchResult(buf unsafe.Pointer, bufCap uint32) int32

//go:wasmimport aegis log
func logCall(level int32, msg unsafe.Pointer, msgLen uint32, attrs unsafe.Pointer, attrsLen uint32) int32

func ptr(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

func sptr(s string) unsafe.Pointer { return unsafe.Pointer(unsafe.StringData(s)) }

// KVGet returns the value stored under key, or ErrNotFound.
func KVGet(key string) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n := kvGet(sptr(key), uint32(len(key)), ptr(buf), uint32(len(buf)))
		if n < 0 {
			return nil, Error(n)
		}
		if int(n) <= len(buf) {
			return buf[:n], nil
		}
		buf = make([]byte, n) // it grew between the calls, or was larger
	}
}

// KVSet stores value under key for ttl (0: no expiry).
func KVSet(key string, value []byte, ttl time.Duration) error {
	if rc := kvSet(sptr(key), uint32(len(key)), ptr(value), uint32(len(value)), ttl.Milliseconds()); rc != 0 {
		return Error(rc)
	}
	return nil
}

// KVDelete removes key; a missing key is not an error.
func KVDelete(key string) error {
	if rc := kvDelete(sptr(key), uint32(len(key))); rc != 0 {
		return Error(rc)
	}
	return nil
}

// Request is an outbound HTTP request.
type Request struct {
	Method string // "" means GET
	URL    string
	Header map[string][]string
	Body   []byte
}

// Response is the answer to a Request.
type Response struct {
	Status int
	Header map[string][]string
	Body   []byte
}

// Fetch sends req to one of the function's allowed hosts.
func Fetch(req Request) (Response, error) {
	method := req.Method
	if method == "" {
		method = "GET"
	}
	var enc bytes.Buffer
	enc.WriteString(method + " " + req.URL + "\n")
	writeHeader(&enc, req.Header)
	enc.Write(req.Body)
	raw := enc.Bytes()
	buf := make([]byte, 4096)
	n := httpFetch(ptr(raw), uint32(len(raw)), ptr(buf), uint32(len(buf)))
	if n < 0 {
		return Response{}, Error(n)
	}
	if int(n) > len(buf) {
		buf = make([]byte, n)
		if n = httpFetchResult(ptr(buf), uint32(len(buf))); n < 0 {
			return Response{}, Error(n)
		}
	}
	return parseResponse(buf[:n])
}

func writeHeader(b *bytes.Buffer, h map[string][]string) {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range h[k] {
			b.WriteString(k + ": " + v + "\n")
		}
	}
	b.WriteString("\n")
}

var errMalformed = errors.New("aegis: malformed fetch response")

func parseResponse(b []byte) (Response, error) {
	head, body, ok := bytes.Cut(b, []byte("\n\n"))
	if !ok {
		return Response{}, errMalformed
	}
	lines := strings.Split(string(head), "\n")
	status, err := strconv.Atoi(lines[0])
	if err != nil {
		return Response{}, errMalformed
	}
	resp := Response{Status: status, Header: map[string][]string{}, Body: body}
	for _, l := range lines[1:] {
		k, v, ok := strings.Cut(l, ": ")
		if !ok {
			return Response{}, errMalformed
		}
		resp.Header[k] = append(resp.Header[k], v)
	}
	return resp, nil
}

// Level is a log level.
type Level int32

// Log levels.
const (
	LevelDebug Level = 0
	LevelInfo  Level = 1
	LevelWarn  Level = 2
	LevelError Level = 3
)

// Log writes a structured line to the function's log. Keys may not
// contain '=' or newlines, values may not contain newlines.
func Log(level Level, msg string, attrs map[string]string) error {
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var enc strings.Builder
	for _, k := range keys {
		enc.WriteString(k + "=" + attrs[k] + "\n")
	}
	a := enc.String()
	if rc := logCall(int32(level), sptr(msg), uint32(len(msg)), sptr(a), uint32(len(a))); rc != 0 {
		return Error(rc)
	}
	return nil
}
