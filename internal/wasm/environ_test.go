package wasm

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// The guest reads exactly the CGI environment through environ_sizes_get
// and environ_get, and addresses past the end of memory get EFAULT.
func TestEnvironServedFromTheRequest(t *testing.T) {
	m := compileFixture(t, newTestEngine(t), "testdata/environ.wasm", testLimits())
	req := getRequest("/a/b", "q=1")
	req.Header = http.Header{"X-Trace": {"t1"}, "Cookie": {"a=1", "b=2"}}
	for _, r := range []Request{getRequest("/", ""), req} {
		resp, _, err := serve(t, m, r, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := strings.Join(referenceCGIEnv("fn", "1", r), "\x00") + "\x00"
		if got := string(resp.Body); got != want {
			t.Fatalf("environment:\n got %q\nwant %q", got, want)
		}
	}
	fault := getRequest("/", "")
	fault.Body = []byte("f")
	resp, _, err := serve(t, m, fault, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := string([]byte{'0' + errnoFault, '0' + errnoFault}); string(resp.Body) != want {
		t.Fatalf("calls past the end of memory answered %q, want %q (EFAULT twice)", resp.Body, want)
	}
}

// cgiVars is the environment appendCGIEnviron builds, as strings.
func cgiVars(fn, version string, r Request) []string {
	var e environ
	appendCGIEnviron(&e, fn, version, r)
	return environStrings(&e)
}

// environStrings splits e at its offsets, checking each ends in a NUL.
func environStrings(e *environ) []string {
	out := make([]string, 0, len(e.offsets))
	for i, off := range e.offsets {
		end := len(e.buf)
		if i+1 < len(e.offsets) {
			end = int(e.offsets[i+1])
		}
		if end <= int(off) || e.buf[end-1] != 0 {
			return append(out, "<bad offset>")
		}
		out = append(out, string(e.buf[off:end-1]))
	}
	if len(e.offsets) == 0 && len(e.buf) != 0 {
		out = append(out, "<bytes without offsets>")
	}
	return out
}

// FuzzCGIEnviron holds the environment builder to the map-and-sort
// builder it replaced, on arbitrary requests and one environ reused from
// each request to the next.
func FuzzCGIEnviron(f *testing.F) {
	f.Add("fn", "1", "GET", "fn.example", "/fn", "/a/b", "q=1", "192.0.2.7:4711", "HTTP/1.1", "fn.example", "80", 0,
		"X-Trace: t1\nCookie: a=1\nCookie: b=2\ncontent-type: text/plain\nContent-Length: 3\nProxy: x\nX_Y: 1\nHost: h")
	f.Add("", "", "", "", "", "", "", "", "", "", "", 5, "")
	f.Add("f\x00", "v", "POST", "h\x00", "/", "/\x00", "", "[::1]:80", "", "", "", -1, "a b: c\nX-A: \x00\nX-B: ok\nx-b-: 2")
	f.Add("f", "v", "GET", "", "", "", "", "no-port", "HTTP/2.0", "s", "p", 100, "A: 1\nA1: 2\nA-: 3\n: 4\nÄ: 5")
	var reused environ
	f.Fuzz(func(t *testing.T, fn, version, method, host, script, path, query, remote, proto, serverName, serverPort string, bodyLen int, headers string) {
		r := Request{
			Method: method, Host: host, ScriptName: script, PathInfo: path, RawQuery: query,
			Header: http.Header{}, RemoteAddr: remote, Proto: proto, ServerName: serverName, ServerPort: serverPort,
		}
		if bodyLen > 0 {
			r.Body = make([]byte, bodyLen%5000)
		}
		for _, line := range strings.Split(headers, "\n") {
			if name, value, ok := strings.Cut(line, ":"); ok {
				r.Header.Add(name, strings.TrimSpace(value))
			}
		}
		want := referenceCGIEnv(fn, version, r)
		appendCGIEnviron(&reused, fn, version, r)
		if got := environStrings(&reused); !slices.Equal(got, want) {
			t.Fatalf("environment:\n got %q\nwant %q", got, want)
		}
		if got, want := string(reused.buf), strings.Join(want, "\x00")+"\x00"; len(want) > 1 && got != want {
			t.Fatalf("environ_get bytes:\n got %q\nwant %q", got, want)
		}
	})
}

// Two header names that differ only in case (possible in a Header map
// not built by Add) give one variable, the same one every time.
func TestCGIEnvironHeaderCaseCollision(t *testing.T) {
	r := getRequest("/", "")
	r.Header = http.Header{"x-a": {"2"}, "X-A": {"1"}, "X-a": {"3"}}
	for range 20 {
		got := cgiVars("f", "1", r)
		n := 0
		for _, kv := range got {
			if strings.HasPrefix(kv, "HTTP_X_A=") {
				n++
				if kv != "HTTP_X_A=1" {
					t.Fatalf("got %q, want HTTP_X_A=1", kv)
				}
			}
		}
		if n != 1 {
			t.Fatalf("%d HTTP_X_A variables in %q", n, got)
		}
	}
}

// Building a request's environment into a pooled environ allocates
// nothing once its buffers have grown.
func TestCGIEnvironReuseAllocatesNothing(t *testing.T) {
	r := getRequest("/a/b", "q=1")
	r.Header = http.Header{"X-Trace": {"t1"}, "Cookie": {"a=1", "b=2"}, "Accept": {"*/*"}}
	var e environ
	appendCGIEnviron(&e, "fn", "1", r)
	if n := testing.AllocsPerRun(100, func() { appendCGIEnviron(&e, "fn", "1", r) }); n != 0 {
		t.Fatalf("%v allocations per request", n)
	}
}
