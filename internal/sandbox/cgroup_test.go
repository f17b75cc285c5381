//go:build linux

package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/aegis-edge/aegis/internal/sandbox/sandboxtest"
	"github.com/aegis-edge/aegis/internal/testutil"
)

// staleCgroup makes a cgroup named name in every parent of the host's
// layout, as a node that died would have left it, and removes it when the
// test ends unless the sweep did.
func staleCgroup(t *testing.T, name string) *workerCgroup {
	t.Helper()
	l, err := layout(cgroupRoot)
	if err != nil {
		t.Fatalf("no usable cgroup hierarchy: %v", err)
	}
	cg := &workerCgroup{}
	for _, p := range l.parents {
		cg.dirs = append(cg.dirs, filepath.Join(p, name))
	}
	if err := cg.create(nil); err != nil {
		t.Fatalf("making %s: %v", name, err)
	}
	t.Cleanup(func() { cg.remove() })
	return cg
}

// occupy moves a new sleeping process into cg, killed when the test ends.
func occupy(t *testing.T, cg *workerCgroup) {
	t.Helper()
	cmd := exec.Command("sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Cleanups run last-in first-out: the process goes before its cgroup.
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	if err := cg.join(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
}

// deadPID returns a pid no process has now.
func deadPID(t *testing.T) int {
	t.Helper()
	for pid := 4_000_000; pid > 1000; pid-- {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); errors.Is(err, os.ErrNotExist) {
			return pid
		}
	}
	t.Fatal("no free pid")
	return 0
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// checkMemoryCap asserts that every worker of p is in a memory cgroup of
// ours, other than the ones named in not, whose limit is p's.
func checkMemoryCap(t *testing.T, p *Pool, not ...string) {
	t.Helper()
	l, err := layout(cgroupRoot)
	if err != nil {
		t.Fatal(err)
	}
	memParent, limitFile := l.parents[0], "memory.limit_in_bytes"
	if l.v2 {
		limitFile = "memory.max"
	}
	reports := p.Reports()
	if len(reports) == 0 {
		t.Fatal("no workers")
	}
	for _, r := range reports {
		if strings.HasPrefix(r.Cgroup, "unavailable") {
			t.Errorf("worker %d: cgroup %s", r.PID, r.Cgroup)
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", r.PID))
		if err != nil {
			t.Fatal(err)
		}
		var name string
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			f := strings.SplitN(line, ":", 3)
			if len(f) == 3 && (l.v2 && f[0] == "0" || slices.Contains(strings.Split(f[1], ","), "memory")) {
				name = filepath.Base(f[2])
				if filepath.Base(filepath.Dir(f[2])) != cgroupParent {
					t.Errorf("worker %d: memory cgroup %s, not under %s", r.PID, f[2], cgroupParent)
				}
			}
		}
		if !cgroupName.MatchString(name) || slices.Contains(not, name) {
			t.Errorf("worker %d: memory cgroup %q (in %q)", r.PID, name, b)
			continue
		}
		if dir := filepath.Join(memParent, name); !l.v2 && !slices.Contains(sandboxtest.Cgroups(), dir) {
			t.Errorf("worker %d: memory cgroup %s is not one the tests' leak check looks for: %v", r.PID, dir, sandboxtest.Cgroups())
		}
		limit, err := os.ReadFile(filepath.Join(memParent, name, limitFile))
		if got := strings.TrimSpace(string(limit)); err != nil || got != strconv.FormatInt(p.cfg.Memory, 10) {
			t.Errorf("worker %d: %s %q (%v), want %d", r.PID, limitFile, got, err, p.cfg.Memory)
		}
	}
}

// A directory left by an earlier node whose pid this process now has used
// to take the name of the next worker's cgroup, and the worker ran without
// one. Names now carry the node's start time, the sweep removes what dead
// nodes left, and a name that is taken anyway is skipped.
func TestStaleCgroupsDoNotCostTheMemoryCap(t *testing.T) {
	testutil.RequireRoot(t)
	t.Run("old names of this pid", func(t *testing.T) {
		var stale []*workerCgroup
		for n := 1; n <= 4; n++ {
			stale = append(stale, staleCgroup(t, fmt.Sprintf("w%d-%d", os.Getpid(), n)))
		}
		p := newTestPool(t, Config{Size: 2, Handler: HandlerEcho})
		checkMemoryCap(t, p)
		for _, cg := range stale {
			for _, d := range cg.dirs {
				if exists(d) {
					t.Errorf("stale %s not swept", d)
				}
			}
		}
	})
	t.Run("next name taken by a live task", func(t *testing.T) {
		start, err := selfStart()
		if err != nil {
			t.Fatal(err)
		}
		var taken []string
		for i := uint64(1); i <= 2; i++ {
			name := fmt.Sprintf("w%d-%d-%d", os.Getpid(), start, cgroupSeq.Load()+i)
			occupy(t, staleCgroup(t, name))
			taken = append(taken, name)
		}
		// Not newTestPool: its leak check would count the taken names.
		p, err := NewPool(context.Background(), Config{Size: 1, Handler: HandlerEcho})
		if err != nil {
			t.Fatal(err)
		}
		checkMemoryCap(t, p, taken...)
		if _, err := p.Do(context.Background(), "f", []byte("x")); err != nil {
			t.Error(err)
		}
		p.Close()
		left, _ := filepath.Glob(filepath.Join(cgroupRoot, "*", cgroupParent, fmt.Sprintf("w%d-*", os.Getpid())))
		left2, _ := filepath.Glob(filepath.Join(cgroupRoot, cgroupParent, fmt.Sprintf("w%d-*", os.Getpid())))
		for _, d := range append(left, left2...) {
			if !slices.Contains(taken, filepath.Base(d)) {
				t.Errorf("cgroup left behind: %s", d)
			}
		}
	})
	t.Run("dead node's leftovers with settings and tasks", func(t *testing.T) {
		pid := deadPID(t)
		idle := staleCgroup(t, fmt.Sprintf("w%d-777-1", pid))
		// Leftover settings and a cgroup below: still removed.
		if err := os.Mkdir(filepath.Join(idle.dirs[0], "below"), 0o755); err != nil {
			t.Fatal(err)
		}
		limitFile := "memory.limit_in_bytes"
		if len(idle.dirs) == 1 {
			limitFile = "memory.max" // cgroup v2
		}
		if err := os.WriteFile(filepath.Join(idle.dirs[0], limitFile), []byte("16777216"), 0); err != nil {
			t.Fatal(err)
		}
		busy := staleCgroup(t, fmt.Sprintf("w%d-777-2", pid))
		occupy(t, busy)
		p := newTestPool(t, Config{Size: 1, Handler: HandlerEcho})
		checkMemoryCap(t, p)
		for _, d := range idle.dirs {
			if exists(d) {
				t.Errorf("idle stale %s not swept", d)
			}
		}
		for _, d := range busy.dirs {
			if !exists(d) {
				t.Errorf("%s, which holds a live process, was removed", d)
			}
		}
	})
}

// The sweep removes only what is ours and idle: a directory named as ours
// whose owner is gone and that holds no task. It leaves the cgroups of
// live owners (this process), cgroups with tasks, and other names.
func TestSweepRemovesOnlyIdleStaleCgroups(t *testing.T) {
	testutil.RequireRoot(t)
	dead := deadPID(t)
	start, err := selfStart()
	if err != nil {
		t.Fatal(err)
	}
	idleNew := staleCgroup(t, fmt.Sprintf("w%d-123-9", dead))
	idleOld := staleCgroup(t, fmt.Sprintf("w%d-9", dead))
	busyOld := staleCgroup(t, fmt.Sprintf("w%d-10", dead))
	occupy(t, busyOld)
	mine := staleCgroup(t, fmt.Sprintf("w%d-%d-999999", os.Getpid(), start))
	// This pid, another start time: a process that had our pid before.
	reused := staleCgroup(t, fmt.Sprintf("w%d-%d-9", os.Getpid(), start-1))
	other := staleCgroup(t, "not-a-worker")
	removed, kept, err := sweepCgroups(cgroupRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cg   *workerCgroup
		gone bool
	}{{idleNew, true}, {idleOld, true}, {reused, true}, {busyOld, false}, {mine, false}, {other, false}} {
		for _, d := range tc.cg.dirs {
			if exists(d) == tc.gone {
				t.Errorf("%s: exists %v after the sweep, want %v", d, exists(d), !tc.gone)
			}
			if slices.Contains(removed, d) != tc.gone {
				t.Errorf("%s: reported removed %v, want %v", d, slices.Contains(removed, d), tc.gone)
			}
		}
	}
	for _, d := range busyOld.dirs {
		if !slices.Contains(kept, d) {
			t.Errorf("%s holds a process but is not reported kept (%v)", d, kept)
		}
	}
}

// Without a memory cgroup the pool starts no worker, unless allowed.
func TestNoMemoryCapIsRefused(t *testing.T) {
	testutil.RequireRoot(t)
	noHierarchy := t.TempDir()
	// Looks like v1 controllers, but no limit can be set.
	noLimits := t.TempDir()
	for _, ctl := range []string{"memory", "pids"} {
		os.Mkdir(filepath.Join(noLimits, ctl), 0o755)
		os.WriteFile(filepath.Join(noLimits, ctl, "cgroup.procs"), nil, 0o644)
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		why  string
	}{
		{"no hierarchy", Config{cgroupRoot: noHierarchy}, "no memory controller"},
		{"no limit file", Config{cgroupRoot: noLimits}, "no memory.limit_in_bytes file"},
		{"no limit asked", Config{Memory: -1}, "without a memory limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Size, cfg.Handler = 1, HandlerEcho
			checkLeaks := leakCheck(t)
			p, err := NewPool(context.Background(), cfg)
			if err == nil {
				checkLeaks(p, p.Close)
				t.Fatalf("pool started without a memory cap: %v", p.Reports())
			}
			if !errors.Is(err, ErrNoMemoryCap) || !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("NewPool: %v, want %v saying %q", err, ErrNoMemoryCap, tc.why)
			}
			cfg.AllowNoMemoryCap = true
			p = newTestPool(t, cfg)
			if out, err := p.Do(context.Background(), "f", []byte("x")); err != nil || string(out) != "x" {
				t.Fatalf("allowed without a cap: %q, %v", out, err)
			}
			t.Logf("refused: %v; allowed: cgroup %q", err, p.Reports()[0].Cgroup)
		})
	}
	if _, err := probeMemoryCap(noHierarchy); !errors.Is(err, ErrNoMemoryCap) {
		t.Errorf("probe of a root without cgroups: %v", err)
	}
	desc, err := ProbeMemoryCap()
	if err != nil {
		t.Fatalf("probe of the host: %v", err)
	}
	t.Logf("probe: %s", desc)
}
