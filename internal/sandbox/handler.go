//go:build linux

package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aegis-edge/aegis/internal/seccomp"
	"golang.org/x/sys/unix"
)

// Names of the handlers BuiltinHandlers provides.
const (
	HandlerEcho     = "echo"      // answers the request
	HandlerSleep    = "sleep"     // never answers (deadline tests)
	HandlerCrash    = "crash"     // dies mid-request ("panic": panics, "garbage": breaks the protocol)
	HandlerCallHost = "call-host" // request "op:data": one host call, its answer
	HandlerSelftest = "selftest"  // request "escape PID PORT" or "sweep"
	// HandlerHostLoop makes the host calls named in its request ("op op
	// ..."), in turn and forever, whatever their answers: the supervisor
	// must end the request at its deadline.
	HandlerHostLoop = "host-loop"
	// HandlerSyscallBench times N allowed syscalls: request "read N"
	// (a hot call, cached by the kernel) or "prctl N" (an argument-checked
	// call: the whole filter runs); the answer is the total in ns.
	HandlerSyscallBench = "syscall-bench"
	// HandlerIdleGC checks that the world can stop while the serving
	// thread waits for a request: "start" starts two collections on
	// another goroutine 20 ms later, when the worker is idle; "check"
	// answers how long they took in ns, or "pending".
	HandlerIdleGC = "idle-gc"
	// HandlerDelay answers request "MS [TOKEN [exit]]" after MS
	// milliseconds with "TOKEN"; with a token it first makes the host
	// call "count" with it (so the supervisor sees each run), and with
	// "exit" it dies instead of answering (pipelining tests).
	HandlerDelay = "delay"
)

// BuiltinHandlers returns the handlers this package ships: test payloads
// and the self-test (package executor adds the wasm ones). Only the
// supervisor picks a worker's handler; nothing a payload does can reach
// another one.
func BuiltinHandlers() map[string]Handler {
	return map[string]Handler{
		HandlerEcho: HandlerFunc(func(_ context.Context, req []byte, _ HostCaller) ([]byte, error) {
			return req, nil
		}),
		HandlerSleep: HandlerFunc(func(context.Context, []byte, HostCaller) ([]byte, error) {
			select {} // ignores its deadline: the supervisor must kill it
		}),
		HandlerCrash: HandlerFunc(func(_ context.Context, req []byte, _ HostCaller) ([]byte, error) {
			switch string(req) {
			case "panic":
				panic("sandbox: crash handler")
			case "garbage":
				// A frame header no supervisor accepts, then silence.
				unix.Write(ipcFD, []byte{0xff, 0xff, 0xff, 0xff, 0xee, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0})
				select {}
			}
			os.Exit(3)
			return nil, nil
		}),
		HandlerCallHost: HandlerFunc(func(ctx context.Context, req []byte, host HostCaller) ([]byte, error) {
			op, data, ok := strings.Cut(string(req), ":")
			if !ok {
				return nil, errors.New("want op:data")
			}
			return host.Call(ctx, op, []byte(data))
		}),
		HandlerHostLoop: HandlerFunc(func(ctx context.Context, req []byte, host HostCaller) ([]byte, error) {
			ops := strings.Fields(string(req))
			if len(ops) == 0 {
				return nil, errors.New("want at least one op")
			}
			for {
				for _, op := range ops {
					if _, err := host.Call(ctx, op, nil); errors.Is(err, ErrBadFrame) {
						return nil, err
					}
				}
			}
		}),
		HandlerSelftest:     HandlerFunc(selftest),
		HandlerSyscallBench: HandlerFunc(syscallBench),
		HandlerIdleGC:       HandlerFunc(idleGC),
		HandlerDelay:        HandlerFunc(delay),
	}
}

func selftest(_ context.Context, req []byte, _ HostCaller) ([]byte, error) {
	f := strings.Fields(string(req))
	switch {
	case len(f) == 3 && f[0] == "escape":
		var pid, port int
		if _, err := fmt.Sscan(f[1], &pid); err != nil {
			return nil, fmt.Errorf("supervisor pid: %w", err)
		}
		if _, err := fmt.Sscan(f[2], &port); err != nil {
			return nil, fmt.Errorf("port: %w", err)
		}
		return encodeAttempts(escapeAttempts(pid, port)), nil
	case len(f) == 1 && f[0] == "sweep":
		return encodeSweep(seccomp.Sweep(seccomp.Policy())), nil
	}
	return nil, fmt.Errorf("selftest: unknown request %q", req)
}

// idleGCTook is what HandlerIdleGC's collections took, in ns (0: pending).
var idleGCTook atomic.Int64

func idleGC(_ context.Context, req []byte, _ HostCaller) ([]byte, error) {
	switch string(req) {
	case "start":
		idleGCTook.Store(0)
		go func() {
			time.Sleep(20 * time.Millisecond)
			start := time.Now()
			runtime.GC() // stops the world twice
			runtime.GC()
			idleGCTook.Store(max(1, time.Since(start).Nanoseconds()))
		}()
		return []byte("started"), nil
	case "check":
		if ns := idleGCTook.Load(); ns > 0 {
			return fmt.Appendf(nil, "%d", ns), nil
		}
		return []byte("pending"), nil
	}
	return nil, fmt.Errorf("idle-gc: unknown request %q", req)
}

func syscallBench(_ context.Context, req []byte, _ HostCaller) ([]byte, error) {
	var kind string
	var n int
	if _, err := fmt.Sscan(string(req), &kind, &n); err != nil {
		return nil, err
	}
	call, ok := benchCalls[kind]
	if !ok {
		return nil, fmt.Errorf("unknown call %q", kind)
	}
	start := time.Now()
	for range n {
		call()
	}
	return fmt.Appendf(nil, "%d", time.Since(start).Nanoseconds()), nil
}

// benchCalls are allowed calls that fail at once without side effects.
var benchCalls = map[string]func(){
	"read":  func() { unix.RawSyscall(unix.SYS_READ, ^uintptr(0), 0, 0) },         // EBADF
	"prctl": func() { unix.RawSyscall(unix.SYS_PRCTL, unix.PR_SET_VMA, 0xff, 0) }, // EINVAL
}

func delay(ctx context.Context, req []byte, host HostCaller) ([]byte, error) {
	f := strings.Fields(string(req))
	var ms int
	if len(f) == 0 || len(f) > 3 {
		return nil, fmt.Errorf("delay: want MS [TOKEN [exit]], got %q", req)
	}
	if _, err := fmt.Sscan(f[0], &ms); err != nil {
		return nil, fmt.Errorf("delay: %w", err)
	}
	time.Sleep(time.Duration(ms) * time.Millisecond)
	if len(f) == 1 {
		return nil, nil
	}
	if _, err := host.Call(ctx, "count", []byte(f[1])); err != nil {
		return nil, err
	}
	if len(f) == 3 && f[2] == "exit" {
		os.Exit(3)
	}
	return []byte(f[1]), nil
}
