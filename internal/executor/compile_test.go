package executor

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/functions"
	"github.com/aegis-edge/aegis/internal/sandbox"
	"github.com/aegis-edge/aegis/internal/testutil"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
)

// compilations reads aegis_functions_compilations_total.
func (x *Executor) compilationsOf(worker, result string) int {
	return int(promtest.ToFloat64(x.compilations.WithLabelValues(worker, result)))
}

// bomb is a compile bomb that the shape limits still accept (8 functions
// of 300 locals and 300 branches: a weight of 1,983,600 of the 2,097,152 a
// module may have): about 1.1 s of compiling on this 2-core machine, idle,
// against the 100 ms deadline the tests give it. A busier machine only
// compiles it slower.
func bomb() []byte { return testutil.CompileBomb(8, 300, 300) }

// TestCompileBombStopsAtTheDeadline deploys a module that takes long to
// compile: the compile worker is stopped at functions.compile_timeout and
// the deploy fails with that reason, while listing and requests to another
// function go on; the same bytes are then refused without compiling.
func TestCompileBombStopsAtTheDeadline(t *testing.T) {
	x := newTestExecutor(t, Config{Pool: sandbox.Config{Size: 2}})
	g := newGateway(t, x)
	g.deploy(t, "hello", modHello, functions.Spec{Route: "/hello"})
	if n := x.compilationsOf("compile", "ok"); n != 1 {
		t.Fatalf("deploying compiled %d modules, want 1", n)
	}
	// Only the bomb gets the short deadline, so that it is the bomb's
	// compile time, not hello's, that the test relies on.
	x.compile = 100 * time.Millisecond
	module := bomb()
	deployed := make(chan error, 1)
	go func() {
		_, err := g.reg.Deploy(context.Background(), "bomb", module, functions.Spec{Route: "/bomb"}, "")
		deployed <- err
	}()
	for i := range 3 {
		testutil.Returns(t, "List", func() {
			if l := g.reg.List(); len(l) != 1 || l[0].Name != "hello" {
				t.Errorf("List = %+v", l)
			}
		})
		testutil.Returns(t, "a request to another function", func() {
			if a := g.send(t, "GET", "/hello", ""); a.status != 200 {
				t.Errorf("request %d to hello during the compile: %+v", i, a)
			}
		})
	}
	var err error
	testutil.Returns(t, "the deploy", func() { err = <-deployed })
	if !errors.Is(err, functions.ErrInvalid) || !errors.Is(err, functions.ErrCompileTimeout) ||
		!strings.Contains(err.Error(), "functions.compile_timeout") {
		t.Fatalf("deploy of a compile bomb = %v, want a compile timeout", err)
	}
	if n := x.compilationsOf("compile", "timeout"); n != 1 {
		t.Fatalf("compile timeouts counted: %d, want 1", n)
	}
	if s := x.CompilePool().Stats(); s.Replaced != 2 {
		t.Fatalf("compile worker replaced %d times, want 2 (one per compile)", s.Replaced)
	}
	if s := x.Pool().Stats(); s.Replaced != 0 {
		t.Fatalf("serving workers replaced %d times during the compile, want 0", s.Replaced)
	}

	// The same bytes are refused at once, from memory: no compile starts.
	_, err = g.reg.Deploy(context.Background(), "bomb", module, functions.Spec{Route: "/bomb"}, "")
	if !errors.Is(err, functions.ErrInvalid) || !strings.Contains(err.Error(), "failed to compile") {
		t.Fatalf("redeploy of the bomb = %v, want a refusal from the failed digests", err)
	}
	if n := x.compilationsOf("compile", "timeout"); n != 1 {
		t.Fatalf("the redeploy compiled again: %d timeouts", n)
	}
	// The compile worker was replaced and compiles the next module.
	x.compile = 10 * time.Minute
	g.deploy(t, "hello2", modHello, functions.Spec{Route: "/hello2"})
	if a := g.send(t, "GET", "/hello2", ""); a.status != 200 {
		t.Fatalf("after the bomb: %+v", a)
	}
}

// TestServingWorkersNeverCompile: a version is compiled once, at deploy;
// the serving workers, replacements included, load its code.
func TestServingWorkersNeverCompile(t *testing.T) {
	x := newTestExecutor(t, Config{Pool: sandbox.Config{Size: 2}})
	g := newGateway(t, x)
	g.deploy(t, "hello", modHello, functions.Spec{Route: "/hello"})
	g.deploy(t, "echo", "../../examples/echo-c/echo.wasm", functions.Spec{Route: "/echo"})
	for i := range 6 {
		for _, path := range []string{"/hello", "/echo"} {
			if a := g.send(t, "GET", path, ""); a.status != 200 {
				t.Fatalf("request %d to %s: %+v", i, path, a)
			}
		}
		if i == 2 {
			// A fresh worker has nothing cached: it must load too.
			for _, r := range x.Pool().Reports() {
				x.Pool().Recycle(r.PID)
			}
		}
	}
	if n := x.compilationsOf("compile", "ok"); n != 2 {
		t.Fatalf("compiled %d modules for 2 deploys", n)
	}
	if n := x.compilationsOf("serve", "ok"); n != 0 {
		t.Fatalf("serving workers compiled %d times, want 0", n)
	}
	if s := x.Pool().Stats(); s.Replaced < 2 {
		t.Fatalf("replaced %d workers, want 2", s.Replaced)
	}
}

// vmRSS is this process's resident set, from /proc/self/status.
func vmRSS(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// TestHostileTrialRunsStayOutOfTheNode deploys modules whose trial
// instance is hostile (two tables of 2^27 funcrefs, 2 GiB once
// instantiated; a start function that loops) several times: each is
// refused or accepted, but the deploying process (the node) does not
// grow, since nothing of the module runs in it.
func TestHostileTrialRunsStayOutOfTheNode(t *testing.T) {
	x := newTestExecutor(t, Config{Pool: sandbox.Config{Size: 2}})
	g := newGateway(t, x)
	g.deploy(t, "hello", modHello, functions.Spec{Route: "/hello"})
	const bound = 64 << 20 // one deploy used to grow the node by 1 GiB
	before := vmRSS(t)
	for name, module := range map[string][]byte{
		"tables": testutil.HugeTables(2, 1<<27),
		"start":  testutil.StartLoop(),
	} {
		for i := range 3 {
			route := "/" + name + strconv.Itoa(i)
			_, err := g.reg.Deploy(context.Background(), name+strconv.Itoa(i), module, functions.Spec{Route: route}, "")
			t.Logf("deploy %s #%d: %v", name, i, err)
			if err == nil && i == 0 {
				a := g.send(t, "GET", route, "")
				t.Logf("request to %s: %+v", name, a)
			}
			if grown := vmRSS(t) - before; grown > bound {
				t.Fatalf("deploying %s #%d grew this process by %d MiB", name, i, grown>>20)
			}
		}
	}
	if a := g.send(t, "GET", "/hello", ""); a.status != 200 {
		t.Fatalf("hello after the hostile deploys: %+v", a)
	}
}
