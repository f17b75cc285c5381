package examples

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/aegis-edge/aegis/internal/wasm"
)

// serveExample compiles one example with the default limits and runs
// requests on it against one store.
func serveExample(t *testing.T, path string) func(req wasm.Request) *wasm.Response {
	t.Helper()
	module, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	e, err := wasm.NewEngine(ctx, wasm.EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(ctx) })
	m, err := e.Compile(ctx, module, wasm.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	host := &wasm.LocalHost{KV: wasm.NewMemoryKV(nil)}
	return func(req wasm.Request) *wasm.Response {
		t.Helper()
		var stderr []string
		resp, err := m.Serve(ctx, wasm.Invocation{Function: "example", Version: "1", Request: req, Host: host,
			Log: func(stream, level, msg string, attrs map[string]string) {
				if stream == wasm.StreamStderr {
					stderr = append(stderr, msg)
				}
			}})
		if err != nil {
			t.Fatalf("%s: %v (stderr %q)", path, err, stderr)
		}
		return resp
	}
}

func request(method, path, query string, body string) wasm.Request {
	return wasm.Request{Method: method, Host: "example.test", ScriptName: "/ex", PathInfo: path, RawQuery: query,
		Header: http.Header{"User-Agent": {"test"}}, Body: []byte(body), RemoteAddr: "127.0.0.1:1", Proto: "HTTP/1.1",
		ServerName: "example.test", ServerPort: "80"}
}

func TestHelloWAT(t *testing.T) {
	resp := serveExample(t, "hello-wat/hello.wasm")(request("GET", "/", "", ""))
	if resp.Status != 200 || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" || string(resp.Body) != "Hello, world!\n" {
		t.Fatalf("%d %v %q", resp.Status, resp.Header, resp.Body)
	}
}

func TestHelloC(t *testing.T) {
	resp := serveExample(t, "hello-c/hello.wasm")(request("GET", "/there", "", ""))
	if resp.Status != 200 || string(resp.Body) != "hello from C, you asked for /there\n" {
		t.Fatalf("%d %v %q", resp.Status, resp.Header, resp.Body)
	}
}

func TestEchoC(t *testing.T) {
	serve := serveExample(t, "echo-c/echo.wasm")
	for visit := 1; visit <= 2; visit++ {
		resp := serve(request("POST", "/a/b", "x=1&y=2", "payload\x00\xff"))
		want := "method: POST\nscript: /ex\npath: /a/b\nquery: x=1&y=2\n"
		if resp.Status != 200 || !strings.HasPrefix(string(resp.Body), want) {
			t.Fatalf("%d %q", resp.Status, resp.Body)
		}
		if !strings.Contains(string(resp.Body), "header: HTTP_USER_AGENT=test\n") || !strings.HasSuffix(string(resp.Body), "body:\npayload\x00\xff") {
			t.Fatalf("body %q", resp.Body)
		}
		if got := resp.Header.Get("X-Visits"); got != string(rune('0'+visit)) {
			t.Fatalf("visit %d: X-Visits %q", visit, got)
		}
	}
}

func TestHelloGo(t *testing.T) {
	serve := serveExample(t, "hello-go/hello.wasm")
	for i, q := range []string{"name=Ada", "name=Ada", "", "name=Bob"} {
		resp := serve(request("GET", "/", q, ""))
		name, count := "Ada", i+1
		switch q {
		case "":
			name, count = "world", 1
		case "name=Bob":
			name, count = "Bob", 1
		}
		if resp.Status != 200 || string(resp.Body) != "Hello, "+name+", from Go!\n" || resp.Header.Get("X-Greetings") != string(rune('0'+count)) {
			t.Fatalf("query %q: %d %v %q", q, resp.Status, resp.Header, resp.Body)
		}
	}
}
