package executor

import (
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/wasm"
)

func TestWasmRequestRoundTrip(t *testing.T) {
	r := wasmRequest{
		Function: "fn", Version: "3", Digest: "ab12", Timeout: 1500 * time.Millisecond,
		Limits: wasm.DefaultLimits(), AllowedHosts: []string{"a.test", "b.test:8080"},
		Request: wasm.Request{Method: "POST", Host: "h.test", ScriptName: "/s", PathInfo: "/p", RawQuery: "q=1",
			Header: http.Header{"X-A": {"1", "2"}}, Body: []byte("body\x00"), RemoteAddr: "127.0.0.1:9",
			Proto: "HTTP/1.1", ServerName: "h.test", ServerPort: "80"},
	}
	got, err := decodeWasmRequest(r.encode())
	if err != nil || !reflect.DeepEqual(got, r) {
		t.Fatalf("round trip: %+v, %v; want %+v", got, err, r)
	}
	b := r.encode()
	for _, bad := range [][]byte{b[:len(b)-1], append(append([]byte{}, b...), 0), append([]byte{2}, b[1:]...)} {
		if _, err := decodeWasmRequest(bad); err == nil {
			t.Errorf("decoded a truncated, extended or foreign-version message (%d bytes)", len(bad))
		}
	}
}

// A worker's answer is checked, not trusted: an unknown kind, a status
// that does not go with its kind, an id that is not hex, a header that
// does not pass the CGI rules or a body over the limit are protocol errors.
func TestCheckResponse(t *testing.T) {
	lim := wasm.DefaultLimits()
	lim.MaxResponseBytes = 10
	tests := []struct {
		name string
		r    wasmResponse
		ok   bool
	}{
		{"response", wasmResponse{Status: 201, Header: http.Header{"X-A": {"1"}}, Body: []byte("ok")}, true},
		{"fuel", wasmResponse{Failed: true, Kind: "fuel", ErrStatus: 503}, true},
		{"trap with id", wasmResponse{Failed: true, Kind: "trap", ErrStatus: 502, ErrorID: "0123abcd"}, true},
		{"unknown kind", wasmResponse{Failed: true, Kind: "worker-crashed", ErrStatus: 502}, false},
		{"status not the kind's", wasmResponse{Failed: true, Kind: "fuel", ErrStatus: 200}, false},
		{"id not hex", wasmResponse{Failed: true, Kind: "trap", ErrStatus: 502, ErrorID: "x\r\nSet-Cookie: a"}, false},
		{"body over the limit", wasmResponse{Status: 200, Body: make([]byte, 11)}, false},
		{"status out of range", wasmResponse{Status: 99}, false},
		{"header name not a token", wasmResponse{Status: 200, Header: http.Header{"X A": {"1"}}}, false},
		{"line break in a value", wasmResponse{Status: 200, Header: http.Header{"X-A": {"1\nStatus: 500"}}}, false},
	}
	for _, tt := range tests {
		r := tt.r
		if err := checkResponse(&r, lim); (err == nil) != tt.ok {
			t.Errorf("%s: checkResponse = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
	r := wasmResponse{Status: 200, Header: http.Header{"Aegis-Error": {"forged"}, "X-B": {"2"}}}
	if err := checkResponse(&r, lim); err != nil || r.Header.Get("Aegis-Error") != "" || r.Header.Get("X-B") != "2" {
		t.Errorf("aegis-error from a worker: %v, header %v; want it dropped", err, r.Header)
	}
}

// FuzzWasmResponse decodes what a worker may send: decoding never panics,
// and what decodes re-encodes to a message that decodes the same.
func FuzzWasmResponse(f *testing.F) {
	for _, r := range seedResponses() {
		f.Add(r.encode())
	}
	lim := wasm.DefaultLimits()
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeWasmResponse(b)
		if err != nil {
			return
		}
		again, err := decodeWasmResponse(r.encode())
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if !reflect.DeepEqual(normalize(again), normalize(r)) {
			t.Fatalf("round trip changed %+v into %+v", r, again)
		}
		checkResponse(&r, lim)
	})
}

// FuzzWasmRequest decodes what a worker is sent (the supervisor encodes
// it, but from a client's request): decoding never panics, and what
// decodes re-encodes to the same bytes' meaning.
func FuzzWasmRequest(f *testing.F) {
	seed := wasmRequest{Function: "fn", Digest: "ab", Limits: wasm.DefaultLimits(), AllowedHosts: []string{"a.test"},
		Request: wasm.Request{Method: "GET", Header: http.Header{"X-A": {"1", ""}}, Body: []byte("b")}}
	f.Add(seed.encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeWasmRequest(b)
		if err != nil {
			return
		}
		again, err := decodeWasmRequest(r.encode())
		if err != nil {
			t.Fatalf("re-encoded request does not decode: %v", err)
		}
		if !reflect.DeepEqual(normalizeRequest(again), normalizeRequest(r)) {
			t.Fatalf("round trip changed %+v into %+v", r, again)
		}
	})
}

func normalizeRequest(r wasmRequest) wasmRequest {
	if len(r.AllowedHosts) == 0 {
		r.AllowedHosts = nil
	}
	if len(r.Request.Header) == 0 {
		r.Request.Header = nil
	}
	for k, vs := range r.Request.Header {
		if len(vs) == 0 {
			r.Request.Header[k] = nil
		}
	}
	if len(r.Request.Body) == 0 {
		r.Request.Body = nil
	}
	return r
}

// normalize maps empty collections to nil, which the encoding does not
// tell apart.
func normalize(r wasmResponse) wasmResponse {
	if len(r.Header) == 0 {
		r.Header = nil
	}
	for k, vs := range r.Header {
		if len(vs) == 0 {
			r.Header[k] = nil
		}
	}
	if len(r.Body) == 0 {
		r.Body = nil
	}
	if len(r.Logs) == 0 {
		r.Logs = nil
	}
	for i := range r.Logs {
		if len(r.Logs[i].Attrs) == 0 {
			r.Logs[i].Attrs = nil
		}
	}
	return r
}

func seedResponses() []wasmResponse {
	return []wasmResponse{
		{Status: 200, Header: http.Header{"Content-Type": {"text/plain"}}, Body: []byte("hello\n"), FuelUsed: 1234},
		{Failed: true, Kind: "trap", ErrStatus: 502, ErrorID: "4f0c0a1b2c3d4e5f", Message: "wasm error: unreachable", FuelUsed: 7,
			Logs: []logLine{{Stream: "stderr", Level: "info", Msg: "about to go"}, {Stream: "error", Level: "error", Msg: "request failed", Attrs: map[string]string{"kind": "trap"}}}},
		{Failed: true, Kind: "fuel", ErrStatus: 503, Message: "used its budget"},
	}
}
