//go:build linux

package sandbox

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The serving thread waits for a request in a syscall the Go runtime does
// not see (serveReader). Nothing the runtime needs from that thread may
// wait for the next request: a collection started while the worker is
// idle finishes at once, and an idle worker costs no CPU.
func TestIdleWorkerLetsTheWorldStop(t *testing.T) {
	p := newTestPool(t, Config{Size: 1, Handler: HandlerIdleGC})
	ctx := context.Background()
	if out, err := p.Do(ctx, "gc", []byte("start")); err != nil || string(out) != "started" {
		t.Fatalf("start: %q, %v", out, err)
	}
	time.Sleep(500 * time.Millisecond)
	out, err := p.Do(ctx, "gc", []byte("check"))
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	ns, err := strconv.ParseInt(string(out), 10, 64)
	if err != nil {
		t.Fatalf("the collections had not finished after 500 ms of idleness: %q", out)
	}
	// Without a way for the runtime to stop the waiting thread, the
	// collections would have waited for the check request (480 ms).
	if took := time.Duration(ns); took > 250*time.Millisecond {
		t.Errorf("two collections in an idle worker took %v: they waited for a request", took)
	}

	pid := p.Reports()[0].PID
	before := cpuTicks(t, pid)
	time.Sleep(time.Second)
	if used := cpuTicks(t, pid) - before; used > 10 {
		t.Errorf("an idle worker used %d ticks of CPU in a second", used)
	}
}

// cpuTicks is the user and system time of a process, in clock ticks.
func cpuTicks(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command, which is in parentheses: state is the
	// 3rd field, utime the 14th, stime the 15th.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.Atoi(f[11])
	s, _ := strconv.Atoi(f[12])
	return u + s
}
