//go:build linux

package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/sandbox/sandboxtest"
	"github.com/aegis-edge/aegis/internal/seccomp"
	"github.com/aegis-edge/aegis/internal/testutil"
	"golang.org/x/sys/unix"
)

// newTestPool starts a pool that is closed, and checked for leaks, when the
// test ends: no descriptor, child process or cgroup may outlive it.
func newTestPool(t *testing.T, cfg Config) *Pool {
	t.Helper()
	testutil.RequireRoot(t)
	checkLeaks := leakCheck(t)
	p, err := NewPool(context.Background(), testScaled(cfg))
	if err != nil {
		t.Fatalf("starting pool: %v", err)
	}
	t.Cleanup(func() { checkLeaks(p, p.Close) })
	return p
}

// testScaled gives the pool's budgets that cfg leaves unset the product's
// defaults scaled to the machine's speed: a worker starts in 0.1 s on the
// host but takes seconds under emulation, past the 5 s default.
func testScaled(cfg Config) Config {
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = testutil.Scale(5 * time.Second)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = testutil.Scale(10 * time.Second)
	}
	return cfg
}

// leakCheck notes the descriptors open now; the function it returns
// closes the pool (with stop) and checks that nothing it had outlives it.
func leakCheck(t *testing.T) func(p *Pool, stop func() error) {
	t.Helper()
	check := sandboxtest.LeakCheck(t)
	return func(p *Pool, stop func() error) {
		pids := []int{}
		for _, r := range p.Reports() {
			pids = append(pids, r.PID)
		}
		check(pids, stop)
	}
}

func echoHost(_ context.Context, function, op string, data []byte) ([]byte, error) {
	if op == "fail" {
		return nil, errors.New("refused by policy")
	}
	return []byte(function + "/" + op + "/" + string(data)), nil
}

func TestWorkerServesRequestsAndHostCalls(t *testing.T) {
	p := newTestPool(t, Config{Size: 2, Handler: HandlerCallHost, Host: HostServerFunc(echoHost)})
	ctx := context.Background()
	for i := range 20 {
		out, err := p.Do(ctx, "fn-a", fmt.Appendf(nil, "kv.get:key%d", i))
		if want := fmt.Sprintf("fn-a/kv.get/key%d", i); err != nil || string(out) != want {
			t.Fatalf("request %d: %q, %v; want %q", i, out, err, want)
		}
	}
	_, err := p.Do(ctx, "fn-a", []byte("fail:x"))
	var he *HandlerError
	if !errors.As(err, &he) || !strings.Contains(err.Error(), "refused by policy") {
		t.Fatalf("host error: %v, want a HandlerError carrying the host's refusal", err)
	}
	if code, name := ErrorStatus(err); code != http.StatusBadGateway || name != "function-error" {
		t.Errorf("status %d %s", code, name)
	}
	if _, err := p.Do(ctx, "fn-a", []byte("kv.get:again")); err != nil {
		t.Fatalf("a handler error must leave the worker serving: %v", err)
	}
	st := p.Stats()
	if st.Started != 2 || st.Replaced != 0 || st.Live != 2 {
		t.Errorf("stats %+v: want 2 started, none replaced", st)
	}
	if len(st.Violations) != 0 {
		t.Errorf("serving requests hit the filter: %v", st.ViolationsBySyscall)
	}
}

// A handler's error is its answer: the one worker serves on, unreplaced.
func TestHandlerErrorKeepsTheWorker(t *testing.T) {
	p := newTestPool(t, Config{Size: 1, Handler: HandlerCallHost, Host: HostServerFunc(echoHost)})
	ctx := context.Background()
	for i := range 3 {
		var he *HandlerError
		if _, err := p.Do(ctx, "fn-a", []byte("fail:x")); !errors.As(err, &he) {
			t.Fatalf("request %d: %v, want a HandlerError", i, err)
		}
		if out, err := p.Do(ctx, "fn-a", []byte("kv.get:k")); err != nil || string(out) != "fn-a/kv.get/k" {
			t.Fatalf("request %d after the error: %q, %v", i, out, err)
		}
	}
	if st := p.Stats(); st.Started != 1 || st.Replaced != 0 {
		t.Errorf("stats %+v: want the one worker, never replaced", st)
	}
}

// The kernel's view of a worker: filter, no_new_privs, no capabilities,
// nobody, its own namespaces, one descriptor, no environment.
func TestWorkerProcessState(t *testing.T) {
	p := newTestPool(t, Config{Size: 1, Handler: HandlerEcho})
	if _, err := p.Do(context.Background(), "f", []byte("x")); err != nil {
		t.Fatal(err)
	}
	r := p.Reports()[0]
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", r.PID))
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{}
	for _, line := range strings.Split(string(status), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	for k, want := range map[string]string{
		"Seccomp": "2", "NoNewPrivs": "1", "CapEff": "0000000000000000", "CapPrm": "0000000000000000",
		"CapAmb": "0000000000000000", "Uid": "65534\t65534\t65534\t65534", "Gid": "65534\t65534\t65534\t65534",
	} {
		if fields[k] != want {
			t.Errorf("/proc/%d/status %s: %q, want %q", r.PID, k, fields[k], want)
		}
	}
	if fields["Speculation_Store_Bypass"] == "" {
		t.Errorf("no Speculation_Store_Bypass line")
	}
	t.Logf("worker %d: Speculation_Store_Bypass %q; SSBD report %q", r.PID, fields["Speculation_Store_Bypass"], r.SSBD)
	for _, ns := range []string{"user", "pid", "mnt", "net", "ipc", "uts", "cgroup"} {
		mine, err1 := os.Readlink("/proc/self/ns/" + ns)
		theirs, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", r.PID, ns))
		if err1 != nil || err2 != nil || mine == theirs {
			t.Errorf("%s namespace: node %q, worker %q (%v, %v)", ns, mine, theirs, err1, err2)
		}
	}
	// Besides the IPC socket, only the runtime's netpoller (epoll and its
	// eventfd, created after the host's descriptors were closed).
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", r.PID))
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, fd := range fds {
		target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", r.PID, fd.Name()))
		kinds = append(kinds, fd.Name()+"="+target)
		switch {
		case fd.Name() == "3" && strings.HasPrefix(target, "socket:"):
		case target == "anon_inode:[eventpoll]", target == "anon_inode:[eventfd]":
		default:
			t.Errorf("worker descriptor %s -> %s", fd.Name(), target)
		}
	}
	t.Logf("worker descriptors: %v", kinds)
	if env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", r.PID)); len(env) != 0 {
		t.Errorf("worker environment %q, want empty", env)
	}
	if cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", r.PID)); string(cmd) != "aegis\x00sandbox-worker\x00" {
		t.Errorf("command line %q", cmd)
	}
	if root, err := os.ReadDir(fmt.Sprintf("/proc/%d/root/", r.PID)); err != nil || len(root) != 0 {
		t.Errorf("worker root holds %v (%v), want nothing", root, err)
	}
	if r.Landlock.Error != "" || r.Landlock.FS == 0 {
		t.Errorf("landlock not in force: %+v", r.Landlock)
	}
	if dumpable, _ := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0); dumpable != 1 {
		t.Logf("note: the test process itself is not dumpable (%d)", dumpable)
	}
	t.Logf("report: %+v", r)
}

// runSelftest runs the escape suite in a worker of p against a listener
// on the host's loopback, which must never see a connection.
func runSelftest(t *testing.T, p *Pool) []Attempt {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
			accepted <- struct{}{}
		}
	}()
	req := fmt.Sprintf("escape %d %d", os.Getpid(), ln.Addr().(*net.TCPAddr).Port)
	out, err := p.Do(context.Background(), "selftest", []byte(req))
	if err != nil {
		t.Fatalf("escape suite: %v", err)
	}
	var attempts []Attempt
	if err := json.Unmarshal(out, &attempts); err != nil {
		t.Fatal(err)
	}
	select {
	case <-accepted:
		t.Errorf("the host listener accepted a connection from the worker")
	default:
	}
	return attempts
}

func TestEscapeSuite(t *testing.T) {
	for _, plain := range []bool{false, true} {
		t.Run(fmt.Sprintf("plain-deny=%v", plain), func(t *testing.T) {
			p := newTestPool(t, Config{Size: 1, Handler: HandlerSelftest, PlainDeny: plain})
			attempts := runSelftest(t, p)
			if len(attempts) < 40 {
				t.Errorf("only %d attempts", len(attempts))
			}
			eperm := uint64(0)
			for _, a := range attempts {
				t.Log(a)
				if !a.Refused() {
					t.Errorf("not refused as intended: %s", a)
				}
				if a.Errno == "EPERM" && !strings.HasPrefix(a.Name, "x32") { // x32: refused in the kernel
					eperm++
				}
			}
			got := p.Stats().Violations["selftest"]
			if want := eperm; plain {
				if got != 0 {
					t.Errorf("plain deny counted %d violations", got)
				}
			} else if got < want {
				t.Errorf("supervisor counted %d violations for the function, the worker saw %d EPERMs", got, want)
			}
			if st := p.Stats(); st.Replaced != 0 {
				t.Errorf("the escape suite killed its worker: %+v", st)
			}
		})
	}
}

func TestSyscallSweep(t *testing.T) {
	p := newTestPool(t, Config{Size: 1, Handler: HandlerSelftest})
	out, err := p.Do(context.Background(), "sweep-fn", []byte("sweep"))
	if err != nil {
		t.Fatal(err)
	}
	var res seccomp.SweepResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatal(err)
	}
	t.Logf("sweep: %d numbers denied with EPERM (0..%d, table ends at %d, x32 bit %#x), clone3 %s",
		res.Denied, res.Max, res.ArchMax, seccomp.X32Bit, res.Clone3)
	for _, f := range res.Failures {
		t.Errorf("not denied: %s", f)
	}
	if res.Clone3 != "ENOSYS" {
		t.Errorf("clone3: %s, want ENOSYS", res.Clone3)
	}
	t.Logf("skipped: %v", res.Skipped)
	want := seccomp.SweepMax + 1 - len(seccomp.Policy()) - len(seccomp.Bypass())
	if seccomp.X32Bit != 0 {
		want += seccomp.SweepMax + 1
	}
	if res.Denied != want {
		t.Errorf("%d denied, want %d", res.Denied, want)
	}
	// x32 numbers are refused in the kernel, uncounted; a native call
	// interrupted by a signal while waiting for the supervisor is restarted
	// and counted again.
	native := uint64(seccomp.SweepMax + 1 - len(seccomp.Policy()) - len(seccomp.Bypass()))
	if got := p.Stats().Violations["sweep-fn"]; got < native {
		t.Errorf("supervisor attributed %d violations to the function, want at least %d", got, native)
	}
}

// waitLive waits until the pool is back to size (replacement is
// asynchronous); it fails the test after a generous bound.
func waitLive(t *testing.T, p *Pool, n int) {
	t.Helper()
	for deadline := time.Now().Add(testutil.Scale(10 * time.Second)); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if st := p.Stats(); st.Live == n && len(p.idle) == n {
			return
		}
	}
	t.Fatalf("pool not back to %d workers: %+v (%s)", n, p.Stats(), testutil.TimeScale())
}

func TestKilledWorkerMidRequest(t *testing.T) {
	inHost := make(chan struct{})
	release := make(chan struct{})
	host := HostServerFunc(func(ctx context.Context, fn, op string, data []byte) ([]byte, error) {
		if op == "block" {
			inHost <- struct{}{}
			<-release
		}
		return data, nil
	})
	p := newTestPool(t, Config{Size: 2, Handler: HandlerCallHost, Host: host})
	errc := make(chan error, 1)
	go func() {
		_, err := p.Do(context.Background(), "victim", []byte("block:x"))
		errc <- err
	}()
	<-inHost
	if st := p.Stats(); st.Busy != 1 {
		t.Errorf("stats %+v during one request: want one worker busy", st)
	}
	var victim int
	for _, r := range p.Reports() {
		w := p.workerByPID(r.PID)
		if f := w.function.Load(); f != nil && *f == "victim" {
			victim = r.PID
		}
	}
	if victim == 0 {
		t.Fatal("no worker serves the request")
	}
	if err := unix.Kill(victim, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	close(release)
	err := <-errc
	if !errors.Is(err, ErrWorkerCrashed) {
		t.Fatalf("request on a killed worker: %v, want ErrWorkerCrashed", err)
	}
	if code, name := ErrorStatus(err); code != http.StatusBadGateway || name != "worker-crashed" {
		t.Errorf("status %d %q", code, name)
	}
	waitLive(t, p, 2)
	for i := range 10 {
		if out, err := p.Do(context.Background(), "after", []byte("get:ok")); err != nil || string(out) != "ok" {
			t.Fatalf("request %d after the kill: %q %v", i, out, err)
		}
	}
	if st := p.Stats(); st.Replaced != 1 || st.Started != 3 || st.Busy != 0 {
		t.Errorf("stats %+v: want one replacement, no worker busy", st)
	}
}

// Recycle replaces the worker it names, and only a worker of the pool.
func TestRecycleReplacesTheWorker(t *testing.T) {
	p := newTestPool(t, Config{Size: 1, Handler: HandlerEcho})
	old := p.Reports()[0].PID
	if p.Recycle(os.Getpid()) {
		t.Fatal("Recycle accepted a pid that is no worker of the pool")
	}
	if !p.Recycle(old) {
		t.Fatalf("Recycle refused worker %d", old)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", old)); err == nil {
		t.Errorf("recycled worker %d still exists", old)
	}
	if out, err := p.Do(context.Background(), "f", []byte("x")); err != nil || string(out) != "x" {
		t.Fatalf("after Recycle: %q %v", out, err)
	}
	waitLive(t, p, 1)
	if r := p.Reports(); len(r) != 1 || r[0].PID == old {
		t.Errorf("workers after Recycle: %+v, want one other than %d", r, old)
	}
	if st := p.Stats(); st.Replaced != 1 || st.Started != 2 {
		t.Errorf("stats %+v: want one replacement", st)
	}
}

func TestFailingWorkersAreReplaced(t *testing.T) {
	for _, tc := range []struct {
		name, handler, req string
		timeout            time.Duration
		want               error
		status             int
	}{
		{"exit", HandlerCrash, "exit", 0, ErrWorkerCrashed, http.StatusBadGateway},
		{"panic", HandlerCrash, "panic", 0, ErrWorkerCrashed, http.StatusBadGateway},
		{"protocol", HandlerCrash, "garbage", 0, ErrProtocol, http.StatusBadGateway},
		{"deadline", HandlerSleep, "", 300 * time.Millisecond, ErrDeadline, http.StatusServiceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestPool(t, Config{Size: 1, Handler: tc.handler})
			for i := range 2 {
				ctx := context.Background()
				if tc.timeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tc.timeout)
					defer cancel()
				}
				_, err := p.Do(ctx, "f", []byte(tc.req))
				if !errors.Is(err, tc.want) {
					t.Fatalf("attempt %d: %v, want %v", i, err, tc.want)
				}
				if code, _ := ErrorStatus(err); code != tc.status {
					t.Errorf("status %d, want %d", code, tc.status)
				}
				waitLive(t, p, 1)
			}
			if st := p.Stats(); st.Replaced != 2 {
				t.Errorf("stats %+v: want 2 replacements", st)
			}
		})
	}
}

func TestRequestTooLarge(t *testing.T) {
	p := newTestPool(t, Config{Size: 1, Handler: HandlerEcho, MaxFrame: 1024})
	if _, err := p.Do(context.Background(), "f", make([]byte, 2048)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversized request: %v", err)
	}
	if out, err := p.Do(context.Background(), "f", []byte("small")); err != nil || string(out) != "small" {
		t.Fatalf("after an oversized request: %q %v", out, err)
	}
	if st := p.Stats(); st.Replaced != 0 {
		t.Errorf("an oversized request cost a worker: %+v", st)
	}
}
