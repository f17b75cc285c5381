package wasm

import (
	"net/http"
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
		want := strings.Join(cgiEnv("fn", "1", r), "\x00") + "\x00"
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
