package functions

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/audit"
	"github.com/aegis-edge/aegis/internal/config"
	"github.com/aegis-edge/aegis/internal/store"
	"github.com/aegis-edge/aegis/internal/wasm"
)

func module(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name + ".wasm")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type fixture struct {
	store  *store.Store
	engine *wasm.Engine
	reg    *Registry
	srv    *httptest.Server
	audits []audit.Event
	failAt func(audit.Event) bool
	mu     sync.Mutex
}

func newFixture(t testing.TB, st *store.Store) *fixture {
	t.Helper()
	if st == nil {
		var err error
		if st, err = store.Open(t.TempDir()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
	}
	engine, err := wasm.NewEngine(context.Background(), wasm.EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { engine.Close(context.Background()) })
	f := &fixture{store: st, engine: engine}
	defaults := config.Default().Functions.Defaults
	defaults.Fuel = 5_000_000
	f.reg = New(Options{
		Store: st, Executor: InProcess{Engine: engine}, Defaults: defaults, MaxModuleSize: 1 << 20,
		Host: &wasm.LocalHost{KV: StoreKV{Store: st}},
		// The node's committer records, persists, then installs.
		Commit: func(c Change) error {
			f.mu.Lock()
			if f.failAt != nil && f.failAt(c.Event) {
				f.mu.Unlock()
				return errors.New("audit log: disk full")
			}
			f.audits = append(f.audits, c.Event)
			f.mu.Unlock()
			if err := c.Persist(); err != nil {
				return err
			}
			c.Install()
			return nil
		},
	})
	t.Cleanup(f.reg.Close)
	f.srv = httptest.NewServer(f.reg)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) get(t testing.TB, host, path string) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", f.srv.URL+path, nil)
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get(ErrorHeader)
}

func TestDeployServeRedeployRemove(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	info, err := f.reg.Deploy(ctx, "hello", module(t, "hello1"), Spec{Route: "/hello"}, "uid=0 pid=1")
	if err != nil {
		t.Fatal(err)
	}
	if info.Version != 1 || info.Route != "/hello" || info.Fuel != 5_000_000 {
		t.Fatalf("deploy info %+v", info)
	}
	if code, body, _ := f.get(t, "any.example", "/hello/x"); code != 200 || body != "hello v1\n" {
		t.Fatalf("GET = %d %q", code, body)
	}
	if code, _, cause := f.get(t, "any.example", "/other"); code != 404 || cause != "not-found" {
		t.Fatalf("unknown route = %d %q", code, cause)
	}
	fuel := int64(1000)
	if info, err = f.reg.Deploy(ctx, "hello", module(t, "hello2"), Spec{Route: "/hello", Fuel: &fuel}, ""); err != nil || info.Version != 2 || info.Fuel != 1000 {
		t.Fatalf("redeploy = %+v, %v", info, err)
	}
	if code, body, _ := f.get(t, "any.example", "/hello"); code != 200 || body != "hello v2\n" {
		t.Fatalf("after redeploy: %d %q", code, body)
	}

	// A new registry on the same store serves what was deployed.
	g := newFixture(t, f.store)
	if err := g.reg.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	if got := g.reg.List(); len(got) != 1 || got[0].Version != 2 || got[0].Fuel != 1000 {
		t.Fatalf("restored %+v", got)
	}
	if code, body, _ := g.get(t, "any.example", "/hello"); code != 200 || body != "hello v2\n" {
		t.Fatalf("restored registry: %d %q", code, body)
	}

	if _, err := f.reg.Remove("hello", ""); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := f.get(t, "any.example", "/hello"); code != 404 {
		t.Fatalf("after remove: %d", code)
	}
	if _, err := f.reg.Remove("hello", ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second remove = %v", err)
	}
	if fns, _ := f.store.Functions(); len(fns) != 0 {
		t.Fatalf("store still holds %+v", fns)
	}
	var ops []string
	for _, ev := range f.audits {
		ops = append(ops, ev.Op+" "+ev.Target+" "+ev.Actor)
	}
	if want := "function.deploy hello uid=0 pid=1,function.deploy hello ,function.remove hello "; strings.Join(ops, ",") != want {
		t.Errorf("audited %q, want %q", strings.Join(ops, ","), want)
	}
}

func TestDeployRefusalsChangeNothing(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	if _, err := f.reg.Deploy(ctx, "a", module(t, "hello1"), Spec{Route: "/a"}, ""); err != nil {
		t.Fatal(err)
	}
	huge := int64(1 << 50)
	tests := []struct {
		name   string
		fn     string
		module []byte
		spec   Spec
		want   error
	}{
		{"bad name", "../a", module(t, "hello2"), Spec{Route: "/b"}, ErrInvalid},
		{"bad route", "b", module(t, "hello2"), Spec{Route: "b"}, ErrInvalid},
		{"route taken", "b", module(t, "hello2"), Spec{Route: "/a/"}, ErrConflict},
		{"not wasm", "a", []byte("\x00asm garbage"), Spec{Route: "/a"}, ErrInvalid},
		{"imports outside WASI", "a", wat2wasm(t, `(module (import "env" "evil" (func)) (memory (export "memory") 1) (func (export "_start")))`), Spec{Route: "/a"}, ErrInvalid},
		{"too big", "a", make([]byte, 2<<20), Spec{Route: "/a"}, ErrInvalid},
		{"fuel out of range", "a", module(t, "hello2"), Spec{Route: "/a", Fuel: &huge}, ErrInvalid},
		{"bad allowed host", "a", module(t, "hello2"), Spec{Route: "/a", AllowHosts: []string{"http://x/"}}, ErrInvalid},
	}
	for _, tt := range tests {
		_, err := f.reg.Deploy(ctx, tt.fn, tt.module, tt.spec, "")
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: Deploy = %v, want %v", tt.name, err, tt.want)
		}
	}
	f.failAt = func(ev audit.Event) bool { return true }
	if _, err := f.reg.Deploy(ctx, "a", module(t, "hello2"), Spec{Route: "/a"}, ""); err == nil || !strings.Contains(err.Error(), "audit log") {
		t.Errorf("deploy without an audit record = %v", err)
	}
	if _, err := f.reg.Remove("a", ""); err == nil {
		t.Error("remove without an audit record succeeded")
	}
	if got := f.reg.List(); len(got) != 1 || got[0].Version != 1 {
		t.Fatalf("refusals changed the registry: %+v", got)
	}
	if code, body, _ := f.get(t, "x", "/a"); code != 200 || body != "hello v1\n" {
		t.Fatalf("refusals changed what is served: %d %q", code, body)
	}
}

func wat2wasm(t testing.TB, src string) []byte {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/m.wat", []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runCmd("wat2wasm", dir+"/m.wat", "-o", dir+"/m.wasm")
	if err != nil {
		t.Fatalf("wat2wasm: %v\n%s", err, out)
	}
	b, err := os.ReadFile(dir + "/m.wasm")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFuelExhaustionIsolated: a function that never returns ends with the
// fuel error, and another function keeps answering meanwhile.
func TestFuelExhaustionIsolated(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	if _, err := f.reg.Deploy(ctx, "spin", module(t, "spin"), Spec{Route: "/spin"}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := f.reg.Deploy(ctx, "hello", module(t, "hello1"), Spec{Route: "/hello"}, ""); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if code, _, cause := f.get(t, "x", "/spin"); code != 503 || cause != "fuel" {
				t.Errorf("spin = %d %q, want 503 fuel", code, cause)
			}
		})
	}
	for range 20 {
		if code, body, _ := f.get(t, "x", "/hello"); code != 200 || body != "hello v1\n" {
			t.Errorf("hello during the spin: %d %q", code, body)
		}
	}
	wg.Wait()
	var lines []LogLine
	f.reg.Logs(ctx, "spin", 10, false, func(l LogLine) error { lines = append(lines, l); return nil })
	found := false
	for _, l := range lines {
		found = found || (l.Stream == "access" && l.Attrs["error"] == "fuel" && l.Attrs["fuel"] != "0")
	}
	if !found {
		t.Errorf("no access log line with the fuel error and fuel used: %+v", lines)
	}
}

// blockingExecutor serves from fakes whose Serve waits for release, to
// watch requests in flight across a deploy.
type blockingExecutor struct {
	release chan struct{}
	closed  atomic.Int32
}

type blockingModule struct {
	x       *blockingExecutor
	version uint64
}

func (x *blockingExecutor) Load(_ context.Context, p Program) (Loaded, error) {
	return &blockingModule{x, p.Version}, nil
}

func (m *blockingModule) Serve(ctx context.Context, _ wasm.Invocation) (*wasm.Response, error) {
	select {
	case <-m.x.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &wasm.Response{Status: 200, Body: fmt.Appendf(nil, "v%d", m.version)}, nil
}

func (m *blockingModule) Close() error { m.x.closed.Add(1); return nil }

func TestInFlightRequestsFinishOnTheOldVersion(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	x := &blockingExecutor{release: make(chan struct{})}
	reg := New(Options{Store: st, Executor: x, Defaults: config.Default().Functions.Defaults})
	srv := httptest.NewServer(reg)
	defer srv.Close()
	ctx := context.Background()
	if _, err := reg.Deploy(ctx, "f", []byte("v1"), Spec{Route: "/"}, ""); err != nil {
		t.Fatal(err)
	}
	first := make(chan string, 1)
	go func() {
		resp, err := http.Get(srv.URL + "/")
		if err != nil {
			first <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		first <- string(b)
	}()
	// Wait until the request is running on version 1.
	for reg.byFn["f"].requests.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	if _, err := reg.Deploy(ctx, "f", []byte("v2"), Spec{Route: "/"}, ""); err != nil {
		t.Fatal(err)
	}
	if n := x.closed.Load(); n != 0 {
		t.Fatalf("version 1 closed while a request runs on it (%d closes)", n)
	}
	close(x.release)
	if got := <-first; got != "v1" {
		t.Fatalf("in-flight request answered %q, want v1", got)
	}
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "v2" {
		t.Fatalf("new request answered %q, want v2", b)
	}
	if n := x.closed.Load(); n != 1 {
		t.Fatalf("version 1 closed %d times after its last request, want 1", n)
	}
}

// TestHammer sends many concurrent requests across several functions while
// they are redeployed and removed: every answer is a whole version's, or a
// 404 while removed; nothing else.
func TestHammer(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	names := []string{"a", "b", "c"}
	for _, n := range names {
		if _, err := f.reg.Deploy(ctx, n, module(t, "hello1"), Spec{Route: "/" + n}, ""); err != nil {
			t.Fatal(err)
		}
	}
	stop := make(chan struct{})
	var served, missing atomic.Int64
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				code, body, cause := f.get(t, "x", "/"+names[(i+j)%len(names)])
				switch {
				case code == 200 && (body == "hello v1\n" || body == "hello v2\n"):
					served.Add(1)
				case code == 404 && cause == "not-found":
					missing.Add(1)
				default:
					t.Errorf("unexpected answer %d %q %q", code, body, cause)
					return
				}
			}
		})
	}
	mods := [][]byte{module(t, "hello1"), module(t, "hello2")}
	for i := range 30 {
		n := names[i%len(names)]
		if i%5 == 4 {
			if _, err := f.reg.Remove(n, ""); err != nil {
				t.Error(err)
			}
		}
		if _, err := f.reg.Deploy(ctx, n, mods[i%2], Spec{Route: "/" + n}, ""); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
	if served.Load() == 0 {
		t.Fatal("no request was served")
	}
	t.Logf("%d served, %d answered 404 while removed", served.Load(), missing.Load())
}

func runCmd(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}
