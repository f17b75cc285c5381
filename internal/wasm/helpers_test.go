package wasm

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/testutil"
)

// testLimits are small limits that still fit every fixture.
func testLimits() Limits {
	l := DefaultLimits()
	l.Fuel = 50_000_000
	l.Timeout = testutil.Scale(10 * time.Second)
	l.MemoryPages = 64
	l.MaxRequestBytes = 256 << 10
	l.MaxResponseBytes = 512 << 10
	l.KVQuotaBytes = 4 << 10
	return l
}

var shared struct {
	once   sync.Once
	engine *Engine
	err    error
}

// newTestEngine returns the engine the package's tests share, so each
// fixture is compiled once per test binary.
func newTestEngine(t testing.TB) *Engine {
	t.Helper()
	shared.once.Do(func() { shared.engine, shared.err = NewEngine(context.Background(), EngineOptions{}) })
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.engine
}

func readFixture(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.FromSlash(path))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func compileFixture(t testing.TB, e *Engine, path string, l Limits) *Module {
	t.Helper()
	m, err := e.Compile(context.Background(), readFixture(t, path), l)
	if err != nil {
		t.Fatalf("compiling %s: %v", path, err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// logRecorder collects a function's log lines.
type logRecorder struct {
	mu    sync.Mutex
	lines []logLine
}

type logLine struct {
	stream, level, msg string
	attrs              map[string]string
}

func (r *logRecorder) log(stream, level, msg string, attrs map[string]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, logLine{stream, level, msg, attrs})
}

func (r *logRecorder) all() []logLine {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]logLine(nil), r.lines...)
}

func getRequest(path, query string) Request {
	return Request{
		Method: http.MethodGet, Host: "fn.example", ScriptName: "/fn", PathInfo: path, RawQuery: query,
		Header: http.Header{}, RemoteAddr: "192.0.2.7:4711", Proto: "HTTP/1.1", ServerName: "fn.example", ServerPort: "80",
	}
}

// serve runs one request with a fresh recorder and an in-memory host.
func serve(t testing.TB, m *Module, req Request, host Host) (*Response, *logRecorder, error) {
	t.Helper()
	rec := &logRecorder{}
	ctx, cancel := context.WithTimeout(context.Background(), m.Limits().Timeout)
	defer cancel()
	resp, err := m.Serve(ctx, Invocation{Function: "fn", Version: "1", Request: req, Host: host, Log: rec.log})
	return resp, rec, err
}
