package wasm

import (
	"context"
	"errors"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// checkStillServing runs hello on the same engine: a failed request must
// leave the node serving.
func checkStillServing(t *testing.T, e *Engine) {
	t.Helper()
	m := compileFixture(t, e, "../../examples/hello-wat/hello.wasm", testLimits())
	resp, _, err := serve(t, m, getRequest("/", ""), nil)
	if err != nil || resp.Status != http.StatusOK || string(resp.Body) != "Hello, world!\n" {
		t.Fatalf("hello after the failure: %v %v", resp, err)
	}
}

func TestLimitFailures(t *testing.T) {
	e := newTestEngine(t)
	tests := []struct {
		name    string
		fixture string
		limits  func(*Limits)
		kind    Kind
		status  int
		reason  string
	}{
		{"infinite loop", "loop", nil, KindFuel, 503, "budget of"},
		{"deep recursion", "recurse", func(l *Limits) { l.Fuel = 200_000 }, KindFuel, 503, "budget of"},
		{"exponential call tree", "fib", nil, KindFuel, 503, "budget of"},
		{"memory.grow bomb", "grow", nil, KindMemory, 503, "64 pages"},
		{"huge output", "spew", nil, KindResponseSize, 503, "byte limit"},
		{"deadline in a loop", "loop", func(l *Limits) { l.Fuel, l.Timeout = 1<<40, 50*time.Millisecond }, KindTimeout, 503, "deadline"},
		{"deadline in a sleep", "sleep", func(l *Limits) { l.Timeout = 50 * time.Millisecond }, KindTimeout, 503, "deadline"},
		{"trap", "trap", nil, KindTrap, 502, "unreachable"},
		{"non-zero exit", "exit", nil, KindTrap, 502, "exited with code 3"},
		{"pointer outside memory", "badptr", nil, KindTrap, 502, "outside memory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := testLimits()
			if tt.limits != nil {
				tt.limits(&l)
			}
			m := compileFixture(t, e, "testdata/"+tt.fixture+".wasm", l)
			resp, rec, err := serve(t, m, getRequest("/", ""), nil)
			var we *Error
			if !errors.As(err, &we) {
				t.Fatalf("got %v, %v; want a %s error", resp, err, tt.kind)
			}
			if we.Kind != tt.kind || we.Status != tt.status || !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("got %s (%d) %q; want %s (%d) saying %q", we.Kind, we.Status, err, tt.kind, tt.status, tt.reason)
			}
			if !strings.HasPrefix(we.Header(), string(tt.kind)) {
				t.Fatalf("aegis-error %q", we.Header())
			}
			if tt.status == 502 && !loggedID(rec, we.ErrorID) {
				t.Fatalf("error id %q not in the log %v", we.ErrorID, rec.all())
			}
			if resp == nil || resp.FuelUsed < 0 || resp.FuelUsed > l.Fuel {
				t.Fatalf("response %+v: want fuel used within the budget", resp)
			}
			if tt.kind == KindFuel && resp.FuelUsed != l.Fuel {
				t.Fatalf("fuel error after %d of %d fuel", resp.FuelUsed, l.Fuel)
			}
			if tt.kind == KindTimeout && tt.fixture == "loop" && (resp.FuelUsed == 0 || resp.FuelUsed == l.Fuel) {
				t.Fatalf("stopped at the deadline after %d of %d fuel, want what it used", resp.FuelUsed, l.Fuel)
			}
			checkStillServing(t, e)
		})
	}
}

// TestDeadlineHoldsWhileCollectionsWait runs a loop and a loop-free call
// tree against a deadline while another goroutine collects garbage without
// pause. Go cannot preempt a module's native code, so a collection that
// must stop the world waits for the module to leave it, and everything
// else waits with it, the timer that interrupts the module included: the
// module would run until its whole budget was gone. It leaves at every
// refuel, so the deadline stops it with most of the budget unused. The
// budget is ~30 s of CPU: if the deadline failed, the test would fail, not
// hang.
func TestDeadlineHoldsWhileCollectionsWait(t *testing.T) {
	e := newTestEngine(t)
	for _, fixture := range []string{"loop", "fib"} {
		t.Run(fixture, func(t *testing.T) {
			l := testLimits()
			l.Fuel, l.Timeout = 1<<36, 50*time.Millisecond
			m := compileFixture(t, e, "testdata/"+fixture+".wasm", l)
			done := make(chan struct{})
			collected := make(chan int)
			go func() {
				n := 0
				for {
					select {
					case <-done:
						collected <- n
						return
					default:
						runtime.GC()
						n++
					}
				}
			}()
			resp, _, err := serve(t, m, getRequest("/", ""), nil)
			close(done)
			n := <-collected
			var we *Error
			if !errors.As(err, &we) || we.Kind != KindTimeout {
				t.Fatalf("got %v, %v; want a timeout", resp, err)
			}
			if resp.FuelUsed <= 0 || resp.FuelUsed >= l.Fuel/2 {
				t.Fatalf("stopped after %d of %d fuel (%d collections meanwhile), want the deadline to stop it early", resp.FuelUsed, l.Fuel, n)
			}
			t.Logf("stopped at %s after %d fuel, %d collections meanwhile", resp.Duration, resp.FuelUsed, n)
		})
	}
}

func TestRefusedGrowIsNotAnError(t *testing.T) {
	m := compileFixture(t, newTestEngine(t), "testdata/growok.wasm", testLimits())
	resp, _, err := serve(t, m, getRequest("/", ""), nil)
	if err != nil || string(resp.Body) != "grow\n" {
		t.Fatalf("%v %v", resp, err)
	}
}

func TestTrapLogsStderrAndID(t *testing.T) {
	m := compileFixture(t, newTestEngine(t), "testdata/trap.wasm", testLimits())
	_, rec, err := serve(t, m, getRequest("/", ""), nil)
	var we *Error
	if !errors.As(err, &we) {
		t.Fatal(err)
	}
	lines := rec.all()
	if len(lines) != 2 || lines[0].stream != StreamStderr || lines[0].msg != "about to go" || lines[1].attrs["error_id"] != we.ErrorID {
		t.Fatalf("log %v", lines)
	}
}

// TestFuelIsDeterministic runs the same request twice: fuel used is a
// property of the code path, not of the machine.
func TestFuelIsDeterministic(t *testing.T) {
	m := compileFixture(t, newTestEngine(t), "../../examples/echo-c/echo.wasm", testLimits())
	var used []int64
	for range 2 {
		resp, _, err := serve(t, m, getRequest("/same", "q=1"), &LocalHost{KV: NewMemoryKV(nil)})
		if err != nil {
			t.Fatal(err)
		}
		used = append(used, resp.FuelUsed)
	}
	if used[0] <= 0 || used[0] != used[1] {
		t.Fatalf("fuel used %v", used)
	}
	// With half of what it needs, the same request fails for fuel.
	l := testLimits()
	l.Fuel = used[0] / 2
	m = compileFixture(t, newTestEngine(t), "../../examples/echo-c/echo.wasm", l)
	_, _, err := serve(t, m, getRequest("/same", "q=1"), &LocalHost{KV: NewMemoryKV(nil)})
	var we *Error
	if !errors.As(err, &we) || we.Kind != KindFuel {
		t.Fatalf("with %d fuel: %v", l.Fuel, err)
	}
}

func TestInvocationLimitsOverride(t *testing.T) {
	m := compileFixture(t, newTestEngine(t), "testdata/loop.wasm", testLimits())
	l := testLimits()
	l.Fuel = 1000
	resp, err := m.Serve(context.Background(), Invocation{Function: "fn", Limits: l, Request: getRequest("/", "")})
	var we *Error
	if !errors.As(err, &we) || we.Kind != KindFuel || resp.FuelUsed != 1000 {
		t.Fatalf("%v %v", resp, err)
	}
}
