package wasm

import (
	"bytes"
	"errors"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestCGIEnvironment(t *testing.T) {
	req := Request{
		Method: "POST", Host: "api.example:8080", ScriptName: "/api", PathInfo: "/users/7", RawQuery: "a=1&b=%20x",
		Header: http.Header{
			"Content-Type":    {"application/json"},
			"Content-Length":  {"2"},
			"X-Trace":         {"t1", "t2"},
			"Cookie":          {"a=1", "b=2"},
			"Proxy":           {"http://evil"},
			"X_Smuggled":      {"1"},
			"Accept-Encoding": {"gzip"},
		},
		Body: []byte("{}"), RemoteAddr: "198.51.100.4:5555", Proto: "HTTP/2.0", ServerName: "api.example", ServerPort: "8080",
	}
	got := cgiVars("users", "3", req)
	want := []string{
		"AEGIS_FUNCTION=users",
		"AEGIS_VERSION=3",
		"CONTENT_LENGTH=2",
		"CONTENT_TYPE=application/json",
		"GATEWAY_INTERFACE=CGI/1.1",
		"HTTP_ACCEPT_ENCODING=gzip",
		"HTTP_COOKIE=a=1; b=2",
		"HTTP_HOST=api.example:8080",
		"HTTP_X_TRACE=t1, t2",
		"PATH_INFO=/users/7",
		"QUERY_STRING=a=1&b=%20x",
		"REMOTE_ADDR=198.51.100.4",
		"REMOTE_PORT=5555",
		"REQUEST_METHOD=POST",
		"REQUEST_URI=/api/users/7?a=1&b=%20x",
		"SCRIPT_NAME=/api",
		"SERVER_NAME=api.example",
		"SERVER_PORT=8080",
		"SERVER_PROTOCOL=HTTP/2.0",
		"SERVER_SOFTWARE=aegis",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("environment:\n got %q\nwant %q", got, want)
	}
	get := cgiVars("f", "1", getRequest("/", ""))
	for _, kv := range get {
		if strings.HasPrefix(kv, "CONTENT_LENGTH=") {
			t.Fatalf("a GET without a body has %s", kv)
		}
	}
}

// echoed runs the C echo example and returns its body's lines.
func echoed(t *testing.T, m *Module, req Request) (*Response, []string) {
	t.Helper()
	resp, _, err := serve(t, m, req, &LocalHost{KV: NewMemoryKV(nil)})
	if err != nil {
		t.Fatal(err)
	}
	head, _, _ := bytes.Cut(resp.Body, []byte("body:\n"))
	return resp, strings.Split(strings.TrimSpace(string(head)), "\n")
}

func TestCGIMethodsAndQueries(t *testing.T) {
	e := newTestEngine(t)
	m := compileFixture(t, e, "../../examples/echo-c/echo.wasm", testLimits())
	for _, method := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PURGE"} {
		req := getRequest("/p", "")
		req.Method = method
		_, lines := echoed(t, m, req)
		if lines[0] != "method: "+method {
			t.Errorf("%s: first line %q", method, lines[0])
		}
	}
	for _, tt := range []struct{ path, query string }{
		{"", ""}, {"/", "x=1"}, {"/a/b c", "q=%E2%9C%93&q=2&empty="}, {"/%2F", "a=b=c;d&&"}, {"/unicode/✓", "✓"},
	} {
		_, lines := echoed(t, m, getRequest(tt.path, tt.query))
		if lines[1] != "script: /fn" || lines[2] != "path: "+tt.path || lines[3] != "query: "+tt.query {
			t.Errorf("path %q query %q: echoed %q", tt.path, tt.query, lines[1:4])
		}
	}
}

func TestCGIHeaders(t *testing.T) {
	e := newTestEngine(t)
	m := compileFixture(t, e, "../../examples/echo-c/echo.wasm", testLimits())
	req := getRequest("/", "")
	req.Method = "POST"
	req.Header = http.Header{"Content-Type": {"text/csv"}, "X-Multi": {"a", "b"}, "Authorization": {"Bearer t"}, "Proxy": {"x"}}
	req.Body = []byte("1,2\n")
	_, lines := echoed(t, m, req)
	for _, want := range []string{"content-type: text/csv", "header: HTTP_X_MULTI=a, b", "header: HTTP_AUTHORIZATION=Bearer t", "header: HTTP_HOST=fn.example"} {
		if !slices.Contains(lines, want) {
			t.Errorf("no %q in %q", want, lines)
		}
	}
	for _, l := range lines {
		if strings.Contains(l, "PROXY") || strings.Contains(l, "CONTENT_TYPE") {
			t.Errorf("echoed %q", l)
		}
	}
}

func TestCGIBinaryBody(t *testing.T) {
	e := newTestEngine(t)
	m := compileFixture(t, e, "../../examples/echo-c/echo.wasm", testLimits())
	body := make([]byte, 3*256)
	for i := range body {
		body[i] = byte(i)
	}
	req := getRequest("/", "")
	req.Method, req.Body = "PUT", body
	resp, _ := echoed(t, m, req)
	_, got, ok := bytes.Cut(resp.Body, []byte("body:\n"))
	if !ok || !bytes.Equal(got, body) {
		t.Fatalf("body came back as %d bytes %x…", len(got), got[:min(len(got), 16)])
	}
}

// catRequest asks the cat fixture to print out as its CGI response.
func catRequest(out []byte) Request {
	r := getRequest("/", "")
	r.Method, r.Body = "POST", out
	return r
}

func TestCGIResponses(t *testing.T) {
	e := newTestEngine(t)
	m := compileFixture(t, e, "testdata/cat.wasm", testLimits())
	tests := []struct {
		name   string
		out    string
		status int
		header http.Header
		body   string
	}{
		{"document", "Content-Type: text/html\n\n<p>hi</p>", 200, http.Header{"Content-Type": {"text/html"}}, "<p>hi</p>"},
		{"crlf", "Content-Type: text/plain\r\nX-A: 1\r\n\r\nbody\r\n", 200, http.Header{"Content-Type": {"text/plain"}, "X-A": {"1"}}, "body\r\n"},
		{"status", "Status: 404 Not Found\nContent-Type: text/plain\n\nnope", 404, http.Header{"Content-Type": {"text/plain"}}, "nope"},
		{"status without reason", "Status: 201\n\n", 201, http.Header{}, ""},
		{"location redirects", "Location: https://example.com/x\n\n", 302, http.Header{"Location": {"https://example.com/x"}}, ""},
		{"status and location", "Status: 301 Moved Permanently\nLocation: /new\n\n", 301, http.Header{"Location": {"/new"}}, ""},
		{"repeated header", "Content-Type: a/b\nSet-Cookie: a=1\nSet-Cookie: b=2\n\n", 200, http.Header{"Content-Type": {"a/b"}, "Set-Cookie": {"a=1", "b=2"}}, ""},
		{"framing and aegis-error dropped", "Content-Type: a/b\nContent-Length: 99\nTransfer-Encoding: chunked\nAegis-Error: fuel\nConnection: close\n\nx", 200, http.Header{"Content-Type": {"a/b"}}, "x"},
		{"body keeps blank lines", "Content-Type: a/b\n\n\n\nx\n\n", 200, http.Header{"Content-Type": {"a/b"}}, "\n\nx\n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, _, err := serve(t, m, catRequest([]byte(tt.out)), nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != tt.status || !reflect.DeepEqual(resp.Header, tt.header) || string(resp.Body) != tt.body {
				t.Fatalf("got %d %v %q, want %d %v %q", resp.Status, resp.Header, resp.Body, tt.status, tt.header, tt.body)
			}
		})
	}
}

func TestCGIMalformedOutput(t *testing.T) {
	e := newTestEngine(t)
	m := compileFixture(t, e, "testdata/cat.wasm", testLimits())
	for _, tt := range []struct{ name, out, reason string }{
		{"nothing", "", "no empty line"},
		{"no blank line", "Content-Type: text/plain\nhello", "no empty line"},
		{"body only", "\nhello", "no header"},
		{"no colon", "Content-Type text/plain\n\n", "header line"},
		{"bad name", "Content Type: x\n\n", "header line"},
		{"continuation", "X-A: 1\n  more\n\n", "continuation"},
		{"status not a number", "Status: OK\n\n", "Status"},
		{"status 1xx", "Status: 101 Switching Protocols\n\n", "Status"},
		{"status 600", "Status: 600\n\n", "Status"},
		{"two statuses", "Status: 200\nStatus: 404\n\n", "two Status"},
		{"control character", "X-A: a\x00b\n\n", "control character"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, rec, err := serve(t, m, catRequest([]byte(tt.out)), nil)
			var we *Error
			if !errors.As(err, &we) || we.Kind != KindCGI || we.Status != http.StatusBadGateway {
				t.Fatalf("got %v, want a cgi error", err)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("error %q does not say %q", err, tt.reason)
			}
			if we.ErrorID == "" || we.Header() != "cgi; id="+we.ErrorID {
				t.Fatalf("error id %q, header %q", we.ErrorID, we.Header())
			}
			if !loggedID(rec, we.ErrorID) {
				t.Fatalf("error id %s is not in the function's log %v", we.ErrorID, rec.all())
			}
		})
	}
}

func loggedID(rec *logRecorder, id string) bool {
	for _, l := range rec.all() {
		if l.stream == StreamError && l.attrs["error_id"] == id && strings.Contains(l.msg, id) {
			return true
		}
	}
	return false
}

func TestCGIBodyLimits(t *testing.T) {
	e := newTestEngine(t)
	l := testLimits()
	m := compileFixture(t, e, "testdata/cat.wasm", l)
	header := []byte("Content-Type: application/octet-stream\n\n")
	fill := func(n int64) []byte {
		b := bytes.Repeat([]byte{0xa5}, int(n))
		copy(b, header)
		return b
	}

	// Request body exactly at the limit: served, and back whole (the
	// response limit is larger).
	resp, _, err := serve(t, m, catRequest(fill(l.MaxRequestBytes)), nil)
	if err != nil || int64(len(resp.Body)) != l.MaxRequestBytes-int64(len(header)) {
		t.Fatalf("body at the request limit: %v, %d bytes", err, len(resp.Body))
	}
	// One byte over: refused before anything runs.
	resp, rec, err := serve(t, m, catRequest(fill(l.MaxRequestBytes+1)), nil)
	var we *Error
	if !errors.As(err, &we) || we.Kind != KindRequestSize || we.Status != http.StatusRequestEntityTooLarge || resp != nil {
		t.Fatalf("body over the request limit: %v %v", resp, err)
	}
	if len(rec.all()) != 0 {
		t.Fatalf("a refused request logged %v", rec.all())
	}

	// Response exactly at the limit, then one byte over.
	l.MaxRequestBytes = l.MaxResponseBytes + 1
	m = compileFixture(t, e, "testdata/cat.wasm", l)
	resp, _, err = serve(t, m, catRequest(fill(l.MaxResponseBytes)), nil)
	if err != nil || int64(len(resp.Body)+len(header)) != l.MaxResponseBytes {
		t.Fatalf("output at the response limit: %v", err)
	}
	_, _, err = serve(t, m, catRequest(fill(l.MaxResponseBytes+1)), nil)
	if !errors.As(err, &we) || we.Kind != KindResponseSize || we.Status != http.StatusServiceUnavailable || we.Header() != "response-size" {
		t.Fatalf("output over the response limit: %v", err)
	}
}
