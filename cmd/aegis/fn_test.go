package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// freeAddr returns a loopback address no one listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestFnCommands(t *testing.T) {
	cfg := testNodeConfig(t)
	cfg.Gateway.Listen = freeAddr(t)
	startInProcessNode(t, cfg)
	sock := cfg.Admin.Socket
	hello := filepath.Join("..", "..", "internal", "functions", "testdata", "hello1.wasm")
	get := func(path string) (int, string, string) {
		resp, err := http.Get("http://" + cfg.Gateway.Listen + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header.Get("aegis-error")
	}

	usage := [][]string{
		{"fn", "deploy", "hello", hello},                                      // no --route
		{"fn", "deploy", "Hello!", hello, "--route", "/h"},                    // bad name
		{"fn", "deploy", "hello", hello, "--route", "nope"},                   // bad route
		{"fn", "deploy", "hello", hello, "--route", "/h", "--memory", "lots"}, // bad size
		{"fn", "deploy", "hello", hello, "--route", "/h", "--fuel", "0"},      // bad fuel
		{"fn", "deploy", "hello", hello, "--route", "/h", "--timeout", "-1s"}, // bad timeout
		{"fn", "logs", "hello", "-n", "-1"},                                   // bad count
		{"fn", "bogus"},
	}
	for _, a := range usage {
		if code, _, stderr := cli(append([]string{"--socket", sock}, a...)...); code != 2 {
			t.Errorf("%v: exit %d (%s), want 2", a, code, stderr)
		}
	}
	// Garbage is refused by the command itself; a module with the right
	// header but a bad body by the node's validator.
	notWasm := filepath.Join(t.TempDir(), "x.wasm")
	os.WriteFile(notWasm, []byte("not a module"), 0o644)
	if code, _, stderr := cli("--socket", sock, "fn", "deploy", "hello", notWasm, "--route", "/hello"); code != 1 || !strings.Contains(stderr, "not a WebAssembly module") {
		t.Fatalf("deploying garbage: exit %d, %q", code, stderr)
	}
	truncated := filepath.Join(t.TempDir(), "t.wasm")
	os.WriteFile(truncated, []byte("\x00asm\x01\x00\x00\x00\x01"), 0o644) // a section cut short
	if code, _, stderr := cli("--socket", sock, "fn", "deploy", "hello", truncated, "--route", "/hello"); code != 1 || !strings.Contains(stderr, "invalid module") {
		t.Fatalf("deploying a truncated module: exit %d, %q", code, stderr)
	}

	code, out, stderr := cli("--socket", sock, "fn", "deploy", "hello", hello, "--route", "/hello", "--fuel", "100000", "--memory", "1MiB", "--timeout", "2s")
	if code != 0 || !strings.Contains(out, "deployed hello version 1 on /hello") {
		t.Fatalf("deploy: exit %d, %q %q", code, out, stderr)
	}
	if code, body, _ := get("/hello/world"); code != 200 || body != "hello v1\n" {
		t.Fatalf("GET through the gateway: %d %q", code, body)
	}
	if code, _, cause := get("/nothing"); code != 404 || cause != "not-found" {
		t.Fatalf("unknown route: %d %q", code, cause)
	}
	_, out, _ = cli("--socket", sock, "fn", "ls", "--json")
	var fns []map[string]any
	if err := json.Unmarshal([]byte(out), &fns); err != nil || len(fns) != 1 || fns[0]["fuel"] != float64(100000) || fns[0]["memory"] != "1MiB" || fns[0]["requests"] != float64(1) {
		t.Fatalf("fn ls --json: %v %s", err, out)
	}
	if _, out, _ = cli("--socket", sock, "fn", "logs", "hello"); !strings.Contains(out, "GET /hello/world 200") || !strings.Contains(out, "fuel=") {
		t.Fatalf("fn logs lacks the access line:\n%s", out)
	}
	if code, _, stderr := cli("--socket", sock, "fn", "rm", "nope"); code != 1 || !strings.Contains(stderr, `no function "nope"`) {
		t.Fatalf("rm of a missing function: exit %d, %q", code, stderr)
	}
	if code, out, _ := cli("--socket", sock, "fn", "rm", "hello"); code != 0 || !strings.Contains(out, "removed hello") {
		t.Fatalf("rm: exit %d, %q", code, out)
	}
	if code, _, _ := get("/hello"); code != 404 {
		t.Fatalf("after rm: %d", code)
	}
}
