package wasm

import (
	"bytes"
	"net/http"
	"reflect"
	"sort"
	"strconv"
	"testing"
)

// FuzzCGIResponse checks that the parser never panics and that what it
// accepts survives a round trip through a canonical encoding.
func FuzzCGIResponse(f *testing.F) {
	for _, s := range []string{
		"Content-Type: text/plain\n\nhi",
		"Status: 404 Not Found\r\nContent-Type: text/html\r\n\r\n<p>x</p>",
		"Location: /x\n\n",
		"X: 1\n  2\n\n",
		"\n",
		"Status: 99\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, out []byte) {
		status, header, body, err := ParseCGIResponse(out)
		if err != nil {
			return
		}
		if status < 200 || status > 599 {
			t.Fatalf("status %d accepted", status)
		}
		for _, k := range []string{"Content-Length", "Transfer-Encoding", "Aegis-Error", "Status"} {
			if _, ok := header[k]; ok {
				t.Fatalf("header %s kept", k)
			}
		}
		var enc bytes.Buffer
		enc.WriteString("Status: " + strconv.Itoa(status) + "\n")
		keys := make([]string, 0, len(header))
		for k := range header {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			for _, v := range header[k] {
				enc.WriteString(k + ": " + v + "\n")
			}
		}
		enc.WriteString("\n")
		enc.Write(body)
		status2, header2, body2, err := ParseCGIResponse(enc.Bytes())
		if err != nil || status2 != status || !reflect.DeepEqual(header, header2) || !bytes.Equal(body, body2) {
			t.Fatalf("round trip of %q: %d %v %q %v", out, status2, header2, body2, err)
		}
	})
}

// FuzzFetchRequest checks the http_fetch request decoder: no panics, and
// a decoded request encodes back to one that decodes the same.
func FuzzFetchRequest(f *testing.F) {
	for _, s := range []string{
		"GET https://a.example/\n\n",
		"POST http://a.example:8080/x?y\nContent-Type: text/plain\nX-A: 1\n\nbody\n\n",
		"GET x\r\nA: b\r\n\r\n",
		"GET\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := DecodeFetchRequest(b)
		if err != nil {
			return
		}
		again, err := DecodeFetchRequest(EncodeFetchRequest(req))
		if err != nil || again.Method != req.Method || again.URL != req.URL || !reflect.DeepEqual(canon(again.Header), canon(req.Header)) || !bytes.Equal(again.Body, req.Body) {
			t.Fatalf("round trip of %q: %+v %v", b, again, err)
		}
	})
}

func canon(h http.Header) http.Header {
	out := http.Header{}
	for k, vs := range h {
		for _, v := range vs {
			out.Add(k, v)
		}
	}
	return out
}
