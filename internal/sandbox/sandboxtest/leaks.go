package sandboxtest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Allocated returns the bytes f allocates.
func Allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// LeakCheck notes the descriptors the test process has open now. The
// function it returns calls stop, which must end the pool, and fails t if
// a descriptor opened since, one of workers (their pids, read before
// stop), a zombie child of the test or a worker cgroup of this process
// outlives it.
func LeakCheck(t testing.TB) func(workers []int, stop func() error) {
	t.Helper()
	fdsBefore := OpenFDs(t)
	return func(workers []int, stop func() error) {
		stop()
		if got := OpenFDs(t); got != fdsBefore {
			t.Errorf("descriptors: %d before the pool, %d after Close", fdsBefore, got)
		}
		for _, pid := range workers {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
				t.Errorf("worker %d still exists (zombie or alive) after Close", pid)
			}
		}
		if z := zombieChildren(); len(z) > 0 {
			t.Errorf("zombie children: %v", z)
		}
		if leftover := Cgroups(); len(leftover) > 0 {
			t.Errorf("cgroups left behind: %v", leftover)
		}
	}
}

// Cgroups lists the worker cgroups of this process that exist, in the v1
// hierarchies: /sys/fs/cgroup/<controller>/aegis-sandbox/w<pid>-…
func Cgroups() []string {
	m, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", "aegis-sandbox", fmt.Sprintf("w%d-*", os.Getpid())))
	return m
}

// OpenFDs counts the test process's open descriptors.
func OpenFDs(t testing.TB) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

func zombieChildren() []string {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []string
	for _, s := range stats {
		b, err := os.ReadFile(s)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 1 && f[0] == "Z" && f[1] == fmt.Sprint(os.Getpid()) {
			out = append(out, s)
		}
	}
	return out
}
