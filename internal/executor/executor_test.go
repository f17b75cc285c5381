package executor

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/config"
	"github.com/aegis-edge/aegis/internal/functions"
	"github.com/aegis-edge/aegis/internal/sandbox"
	"github.com/aegis-edge/aegis/internal/sandbox/sandboxtest"
	"github.com/aegis-edge/aegis/internal/store"
	"github.com/aegis-edge/aegis/internal/testutil"
	"github.com/aegis-edge/aegis/internal/wasm"
	"golang.org/x/sys/unix"
)

// Fixture modules of other packages: the same functions the functions and
// wasm suites and the examples run in-process.
const (
	modHello     = "../functions/testdata/hello1.wasm"
	modSpin      = "../functions/testdata/spin.wasm"
	modGrow      = "../wasm/testdata/grow.wasm"
	modSpew      = "../wasm/testdata/spew.wasm"
	modSleep     = "../wasm/testdata/sleep.wasm"
	modTrap      = "../wasm/testdata/trap.wasm"
	modHostcalls = "../wasm/testdata/hostcalls.wasm"
)

func readModule(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testDefaults are small limits, so that the failing cases fail fast. The
// timeout is scaled to the machine's speed: the Go example takes seconds to
// start under emulation, and a function that should answer must not meet
// it (the deadline cases set their own).
func testDefaults() config.FunctionLimits {
	d := config.Default().Functions.Defaults
	d.Fuel = 5_000_000
	d.Timeout = config.Duration{Duration: testutil.Scale(2 * time.Second)}
	d.MaxResponseBody = 64 << 10
	d.KVQuota = 2000
	return d
}

// newTestExecutor starts an executor whose workers are checked for leaks
// when the test ends. The budgets the test leaves unset get the product's
// defaults scaled to the machine's speed: a worker starts in 0.1 s on the
// host but takes seconds under emulation, past the 5 s default.
func newTestExecutor(t *testing.T, cfg Config) *Executor {
	t.Helper()
	testutil.RequireRoot(t)
	if cfg.Grace == 0 {
		cfg.Grace = testutil.Scale(250 * time.Millisecond)
	}
	if cfg.CompileTimeout == 0 {
		cfg.CompileTimeout = testutil.Scale(10 * time.Second)
	}
	if cfg.Pool.StartTimeout == 0 {
		cfg.Pool.StartTimeout = testutil.Scale(5 * time.Second)
	}
	if cfg.Pool.Timeout == 0 {
		cfg.Pool.Timeout = testutil.Scale(10 * time.Second)
	}
	// As the node runs it (functions.no_pipeline off).
	cfg.Pool.Pipeline = true
	checkLeaks := sandboxtest.LeakCheck(t)
	if cfg.CompileTimeout == 0 {
		// Compiling a real module (the Go example) takes many times longer
		// under QEMU's emulation or the race detector than the default
		// allows on a real node; a test that wants the deadline sets its
		// own.
		cfg.CompileTimeout = 10 * time.Minute
	}
	x, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("starting executor: %v", err)
	}
	t.Cleanup(func() {
		var pids []int
		for _, r := range x.Pool().Reports() {
			pids = append(pids, r.PID)
		}
		checkLeaks(pids, x.Close)
	})
	return x
}

// gateway is a functions.Registry with its own store behind an HTTP
// server: the node's gateway with a chosen executor.
type gateway struct {
	reg *functions.Registry
	srv *httptest.Server
}

func newGateway(t testing.TB, x functions.Executor) *gateway {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg := functions.New(functions.Options{
		Store: st, Executor: x, Defaults: testDefaults(), MaxModuleSize: 8 << 20,
		Host: &wasm.LocalHost{KV: functions.StoreKV{Store: st}},
	})
	srv := httptest.NewServer(reg)
	t.Cleanup(func() {
		srv.Close()
		reg.Close()
		st.Close()
	})
	return &gateway{reg: reg, srv: srv}
}

func inProcessGateway(t testing.TB) *gateway {
	t.Helper()
	e, err := wasm.NewEngine(context.Background(), wasm.EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	return newGateway(t, functions.InProcess{Engine: e})
}

type answer struct {
	status int
	kind   string // aegis-error up to the error id
	id     bool   // aegis-error carries an error id
	body   string // for 2xx answers
}

func (g *gateway) send(t testing.TB, method, path, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, g.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "gateway.test"
	req.Header.Set("User-Agent", "test")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode}
	a.kind, _, a.id = strings.Cut(resp.Header.Get(functions.ErrorHeader), "; id=")
	if resp.StatusCode/100 == 2 {
		a.body = string(b)
	}
	return a
}

func (g *gateway) deploy(t testing.TB, name, module string, spec functions.Spec) {
	t.Helper()
	if _, err := g.reg.Deploy(context.Background(), name, readModule(t, module), spec, ""); err != nil {
		t.Fatalf("deploy %s: %v", name, err)
	}
}

// TestSandboxedMatchesInProcess runs the functions suite's behaviours and
// every example through workers and in-process, and wants the same status,
// aegis-error and body from both.
func TestSandboxedMatchesInProcess(t *testing.T) {
	x := newTestExecutor(t, Config{Pool: sandbox.Config{Size: 2}})
	sandboxed, local := newGateway(t, x), inProcessGateway(t)
	mem := config.Size(1 << 20)
	// Not scaled: the function sleeps an hour, so this deadline fires
	// whatever the machine's speed; the grace to report it is scaled.
	short := config.Duration{Duration: 300 * time.Millisecond}
	deploys := []struct {
		name, module string
		spec         functions.Spec
	}{
		{"hello", modHello, functions.Spec{Route: "/hello"}},
		{"spin", modSpin, functions.Spec{Route: "/spin"}},
		{"grow", modGrow, functions.Spec{Route: "/grow", Memory: &mem}},
		{"spew", modSpew, functions.Spec{Route: "/spew"}},
		{"sleep", modSleep, functions.Spec{Route: "/sleep", Timeout: &short}},
		{"trap", modTrap, functions.Spec{Route: "/trap"}},
		{"hostcalls", modHostcalls, functions.Spec{Route: "/host", AllowHosts: []string{"allowed.test"}}},
		{"hello-wat", "../../examples/hello-wat/hello.wasm", functions.Spec{Route: "/ex/wat"}},
		{"echo-c", "../../examples/echo-c/echo.wasm", functions.Spec{Route: "/ex/echo"}},
		{"hello-go", "../../examples/hello-go/hello.wasm", functions.Spec{Route: "/ex/go"}},
	}
	for _, d := range deploys {
		sandboxed.deploy(t, d.name, d.module, d.spec)
		local.deploy(t, d.name, d.module, d.spec)
	}
	tests := []struct {
		name, method, path, body string
		want                     answer // status and kind; the rest must match in-process
	}{
		{"hello", "GET", "/hello/x", "", answer{status: 200}},
		{"fuel exhaustion", "GET", "/spin", "", answer{status: 503, kind: "fuel"}},
		{"memory.grow bomb", "GET", "/grow", "", answer{status: 503, kind: "memory"}},
		{"huge output", "GET", "/spew", "", answer{status: 503, kind: "response-size"}},
		{"deadline", "GET", "/sleep", "", answer{status: 503, kind: "timeout"}},
		{"trap", "GET", "/trap", "", answer{status: 502, kind: "trap", id: true}},
		{"kv over quota", "POST", "/host", "set a 900 0\nset b 900 0\nset c 900 0\nget a\ndel a\nget a\nget b\n", answer{status: 200}},
		{"fetch not allowed", "POST", "/host", "fetch GET http://denied.test/\nfetch GET http://allowed.test/\n", answer{status: 200}},
		{"log and stderr", "POST", "/host", "log 2 careful\nstderr 3\n", answer{status: 200}},
		{"example hello-wat", "GET", "/ex/wat", "", answer{status: 200}},
		{"example echo-c", "POST", "/ex/echo/a/b?x=1", "payload\x00\xff", answer{status: 200}},
		{"example echo-c again", "POST", "/ex/echo/a/b?x=1", "payload", answer{status: 200}},
		{"example hello-go", "GET", "/ex/go?name=Ada", "", answer{status: 200}},
		{"example hello-go again", "GET", "/ex/go?name=Ada", "", answer{status: 200}},
	}
	for _, tt := range tests {
		got, ref := sandboxed.send(t, tt.method, tt.path, tt.body), local.send(t, tt.method, tt.path, tt.body)
		if got.status != tt.want.status || got.kind != tt.want.kind || got.id != tt.want.id {
			t.Errorf("%s: sandboxed %+v, want status %d, aegis-error %q (id %v)", tt.name, got, tt.want.status, tt.want.kind, tt.want.id)
		}
		if got != ref {
			t.Errorf("%s: sandboxed %+v, in-process %+v", tt.name, got, ref)
		}
	}
	// The quota and the allowed hosts were applied (in both, as compared).
	if a := sandboxed.send(t, "POST", "/host", "set d 1200 0\nfetch GET http://denied.test/\n"); !strings.Contains(a.body, "set d -4\n") || !strings.Contains(a.body, "fetch -5\n") {
		t.Errorf("quota and allowed hosts through workers: %q", a.body)
	}
	// The function's log lines reach the registry.
	var logged []string
	sandboxed.reg.Logs(context.Background(), "hostcalls", 100, false, func(l functions.LogLine) error {
		logged = append(logged, l.Stream+" "+l.Level+" "+l.Message)
		return nil
	})
	for _, want := range []string{"log warn careful", "stderr info " + strings.Repeat("0", 99)} {
		if !strings.Contains(strings.Join(logged, "\n"), want) {
			t.Errorf("log lines %q lack %q", logged, want)
		}
	}
	if st := x.Pool().Stats(); len(st.Violations) != 0 || st.Replaced != 0 {
		t.Errorf("serving hit the filter or lost workers: %+v", st)
	}
}

// TestExecutorLoadRefusesAtDeploy: a module that cannot run is refused by
// Load, in the supervisor, before any worker sees it.
func TestExecutorLoadRefusesAtDeploy(t *testing.T) {
	x := newTestExecutor(t, Config{Pool: sandbox.Config{Size: 1}})
	g := newGateway(t, x)
	_, err := g.reg.Deploy(context.Background(), "bad", []byte("\x00asm garbage"), functions.Spec{Route: "/bad"}, "")
	if err == nil || !strings.Contains(err.Error(), "invalid") {
		t.Fatalf("deploy of garbage = %v, want an invalid-module refusal", err)
	}
}

// TestWorkerKilledMidRequest: SIGKILL of the worker serving a request
// answers it with 502 worker-crashed (not its deadline: the function would
// sleep an hour), the pool starts a replacement and the next request is
// served.
func TestWorkerKilledMidRequest(t *testing.T) {
	x := newTestExecutor(t, Config{Pool: sandbox.Config{Size: 1}})
	g := newGateway(t, x)
	// Scaled, up to the longest timeout a spec may have: the kill must come
	// first however slow the worker is to start the function.
	long := config.Duration{Duration: min(testutil.Scale(time.Minute), 10*time.Minute)}
	g.deploy(t, "sleep", modSleep, functions.Spec{Route: "/sleep", Timeout: &long})
	g.deploy(t, "hello", modHello, functions.Spec{Route: "/hello"})
	pid := x.Pool().Reports()[0].PID
	var wg sync.WaitGroup
	var got answer
	wg.Go(func() { got = g.send(t, "GET", "/sleep", "") })
	// The pool has one worker: running means the request started in it (a
	// request killed before it starts goes to the replacement instead).
	for give := time.Now().Add(testutil.Scale(30 * time.Second)); x.Pool().Stats().Running == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(give) {
			t.Fatalf("the request never reached the worker (%s)", testutil.TimeScale())
		}
	}
	if err := unix.Kill(pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if got.status != http.StatusBadGateway || got.kind != "worker-crashed" {
		t.Fatalf("killed mid-request: %+v, want 502 worker-crashed", got)
	}
	if a := g.send(t, "GET", "/hello", ""); a.status != 200 || a.body != "hello v1\n" {
		t.Fatalf("after the kill: %+v", a)
	}
	if st := x.Pool().Stats(); st.Replaced != 1 || st.Live != 1 {
		t.Errorf("stats %+v: want one worker replaced", st)
	}
}

// TestHostCallsServeOnlyTheInvocationInFlight: the supervisor answers a
// module call only for the digest of the function in flight, and no call
// at all outside an invocation.
func TestHostCallsServeOnlyTheInvocationInFlight(t *testing.T) {
	x := &Executor{}
	p := &program{x: x, prog: functions.Program{Name: "a", Module: []byte("module a")}, digest: "aa"}
	ctx := context.WithValue(context.Background(), invocationKey{}, &invocation{program: p, deadline: time.Now().Add(time.Minute)})
	if b, err := x.serveHost(ctx, "a", opModule, []byte("aa")); err != nil || string(b) != "module a" {
		t.Errorf("module in flight: %q, %v", b, err)
	}
	if _, err := x.serveHost(ctx, "a", opModule, []byte("bb")); err == nil {
		t.Error("another function's module was served")
	}
	if _, err := x.serveHost(context.Background(), "a", opKVGet, []byte("k")); err == nil {
		t.Error("a host call outside an invocation was served")
	}
	if b, err := x.serveHost(ctx, "a", opKVGet, []byte("k")); err != nil || hostStatus(b[0]) != hostUnavailable {
		t.Errorf("kv without host services: %q, %v", b, err)
	}
}
