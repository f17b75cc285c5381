package node

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/functions"
	"github.com/aegis-edge/aegis/internal/testutil"
)

func get(n *Node, path string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	n.Functions().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://fn.test"+path, nil))
	return rec
}

// compilations sums aegis_functions_compilations_total for one worker
// kind and result, from the node's metrics.
func compilations(t *testing.T, n *Node, worker, result string) float64 {
	t.Helper()
	mfs, err := n.newMetricsRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "aegis_functions_compilations_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["worker"] == worker && labels["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestNodeCompileBomb: on a node, a compile bomb's deploy fails at
// functions.compile_timeout while the admin side (listing, metrics) and
// other functions keep answering; the same bytes are then refused at once;
// a restarted node compiles the stored functions in its compile worker and
// serves them without compiling per request.
func TestNodeCompileBomb(t *testing.T) {
	cfg := testConfig(t)
	cfg.Functions.Workers = 2
	// hello-wat compiles in milliseconds; the bomb, the largest the shape
	// limits accept, in over a second on this 2-core machine, idle.
	// Scaled with the machine's speed, as the bomb's compile time is.
	cfg.Functions.CompileTimeout.Duration = testutil.Scale(150 * time.Millisecond)
	n := startNode(t, cfg)
	hello, err := os.ReadFile("../../examples/hello-wat/hello.wasm")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := n.Functions().Deploy(ctx, "hello", hello, functions.Spec{Route: "/hello"}, ""); err != nil {
		t.Fatal(err)
	}
	bomb := testutil.CompileBomb(8, 300, 300)
	deployed := make(chan error, 1)
	go func() {
		_, err := n.Functions().Deploy(ctx, "bomb", bomb, functions.Spec{Route: "/bomb"}, "")
		deployed <- err
	}()
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		for i := range 3 {
			if l := n.Functions().List(); len(l) != 1 {
				t.Errorf("fn ls during the compile = %+v", l)
			}
			if rec := get(n, "/hello"); rec.Code != 200 {
				t.Errorf("request %d to hello during the compile = %d %s", i, rec.Code, rec.Body)
			}
			compilations(t, n, "compile", "ok")
		}
	}()
	// Whether they answer while the compile holds the compile worker is
	// functions.TestDeployCompilesOutsideTheLock's question, asked there
	// with a compile held for as long as the test wants; here they must
	// answer at all, around a compile that times out.
	select {
	case <-answered:
	case <-time.After(2 * time.Minute):
		t.Fatal("listing and serving did not answer around the bomb's compile")
	}
	err = <-deployed
	if !errors.Is(err, functions.ErrCompileTimeout) || !strings.Contains(err.Error(), "functions.compile_timeout") {
		t.Fatalf("deploy of the bomb = %v", err)
	}
	if _, err := n.Functions().Deploy(ctx, "bomb", bomb, functions.Spec{Route: "/bomb"}, ""); err == nil || !strings.Contains(err.Error(), "failed to compile") {
		t.Fatalf("redeploy of the bomb = %v", err)
	}
	if got := compilations(t, n, "compile", "timeout"); got != 1 {
		t.Fatalf("compile timeouts = %v, want 1", got)
	}

	// Variant: restart. The stored function's code was kept: the new
	// node runs the deploy checks on it in the compile worker, compiles
	// nothing, and its serving workers load the code.
	n.Close()
	m := startNode(t, cfg)
	serves := func(m *Node) {
		t.Helper()
		for i := range 4 {
			if rec := get(m, "/hello"); rec.Code != 200 {
				t.Fatalf("request %d after the restart = %d %s", i, rec.Code, rec.Body)
			}
		}
	}
	serves(m)
	if c, s := compilations(t, m, "compile", "ok"), compilations(t, m, "serve", "ok"); c != 0 || s != 0 {
		t.Fatalf("after the restart: %v compiles in the compile worker, %v in serving workers; want none", c, s)
	}
	// ...and damaged kept code costs one compile, not the function.
	m.Close()
	kept, err := filepath.Glob(filepath.Join(cfg.StateDir, "wasm-code", "*.code"))
	if err != nil || len(kept) != 1 {
		t.Fatalf("kept code: %v, %v; want one file", kept, err)
	}
	b, err := os.ReadFile(kept[0])
	if err != nil {
		t.Fatal(err)
	}
	for i := 32; i < len(b); i++ {
		b[i] ^= 0x5a
	}
	if err := os.WriteFile(kept[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	m = startNode(t, cfg)
	serves(m)
	if c, s := compilations(t, m, "compile", "ok"), compilations(t, m, "serve", "ok"); c != 1 || s != 0 {
		t.Fatalf("after damaging the kept code: %v compiles in the compile worker, %v in serving workers; want 1 and 0", c, s)
	}
}
