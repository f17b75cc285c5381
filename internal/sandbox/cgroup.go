//go:build linux

package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// cgroupRoot is where the host's cgroup hierarchies are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// cgroupParent names the directory that holds the workers' cgroups.
const cgroupParent = "aegis-sandbox"

// Worker cgroups are named w<node pid>-<node start time>-<n>: the pid and
// the start time (clock ticks after boot, /proc/<pid>/stat) name one node
// process for the life of the machine (cgroups do not outlive a boot), and
// n counts the cgroups it made. A leftover of an earlier process whose pid
// has been reused cannot take a new worker's name, and the sweep can tell
// whether a directory's owner still runs. Versions before this one named
// them w<pid>-<n>.
var (
	cgroupName    = regexp.MustCompile(`^w([0-9]+)-([0-9]+)-[0-9]+$`)
	oldCgroupName = regexp.MustCompile(`^w([0-9]+)-[0-9]+$`)
	cgroupSeq     atomic.Uint64
)

// selfStart is this process's start time, read once.
var selfStart = sync.OnceValues(func() (uint64, error) { return procStart(os.Getpid()) })

// nextCgroupName returns a name no cgroup of this process has had.
func nextCgroupName() (string, error) {
	start, err := selfStart()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("w%d-%d-%d", os.Getpid(), start, cgroupSeq.Add(1)), nil
}

// procStart returns a process's start time in clock ticks after boot, or
// an error wrapping os.ErrNotExist when there is no such process.
func procStart(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces and parentheses: fields start
	// after the last ')'; starttime is field 22, the 20th after it.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 20 {
		return 0, fmt.Errorf("reading /proc/%d/stat: unexpected format", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// ownerAlive reports whether the process that made the cgroup named name
// still runs (and so may still be using it).
func ownerAlive(name string) bool {
	if m := cgroupName.FindStringSubmatch(name); m != nil {
		pid, err1 := strconv.Atoi(m[1])
		start, err2 := strconv.ParseUint(m[2], 10, 64)
		if err1 != nil || err2 != nil {
			return false
		}
		got, err := procStart(pid)
		return err == nil && got == start
	}
	if m := oldCgroupName.FindStringSubmatch(name); m != nil {
		// No start time: a live process with that pid may be an older
		// node, unless it is this one, which never used this form.
		pid, err := strconv.Atoi(m[1])
		if err != nil || pid == os.Getpid() {
			return false
		}
		_, err = os.Stat(fmt.Sprintf("/proc/%d", pid))
		return err == nil
	}
	return true // not ours: never touched
}

// cgroupLayout says where a host's worker cgroups go: one parent per v1
// controller (memory, pids), or one v2 parent.
type cgroupLayout struct {
	v2      bool
	parents []string
}

// layout finds the hierarchy under root and makes the parents. It fails
// when the host offers no usable memory and pids controllers.
func layout(root string) (cgroupLayout, error) {
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err == nil {
		parent := filepath.Join(root, cgroupParent)
		// The root's subtree must offer the controllers to its children
		// (a fresh cgroup2 mount offers none); the root itself is exempt
		// from the rule that a cgroup with processes has no controllers.
		if err := enableControllers(root); err != nil {
			return cgroupLayout{}, fmt.Errorf("cgroup v2: %w", err)
		}
		if err := os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return cgroupLayout{}, fmt.Errorf("cgroup v2: %w", err)
		}
		if err := enableControllers(parent); err != nil {
			return cgroupLayout{}, fmt.Errorf("cgroup v2: %w", err)
		}
		return cgroupLayout{v2: true, parents: []string{parent}}, nil
	}
	var l cgroupLayout
	for _, ctl := range []string{"memory", "pids"} {
		if _, err := os.Stat(filepath.Join(root, ctl, "cgroup.procs")); err != nil {
			return cgroupLayout{}, fmt.Errorf("cgroup v1: no %s controller mounted at %s", ctl, filepath.Join(root, ctl))
		}
		parent := filepath.Join(root, ctl, cgroupParent)
		if err := os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return cgroupLayout{}, fmt.Errorf("cgroup v1: %w", err)
		}
		l.parents = append(l.parents, parent)
	}
	return l, nil
}

// enableControllers turns on memory and pids for dir's children unless
// they are on already.
func enableControllers(dir string) error {
	on, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if err != nil {
		return fmt.Errorf("reading %s: %w", dir, err)
	}
	have := strings.Fields(string(on))
	var want []string
	for _, c := range []string{"memory", "pids"} {
		if !slices.Contains(have, c) {
			want = append(want, "+"+c)
		}
	}
	if len(want) == 0 {
		return nil
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte(strings.Join(want, " ")), 0); err != nil {
		return fmt.Errorf("enabling memory and pids in %s: %w", dir, err)
	}
	return nil
}

// workerCgroup is one worker's cgroup: a directory per v1 controller
// (memory, pids), or one v2 directory.
type workerCgroup struct {
	dirs []string
}

// newWorkerCgroup creates a cgroup under root with the given limits (0: no
// limit), under a name no other cgroup has. It reports why when the host
// offers no usable cgroup or the memory limit cannot be set.
func newWorkerCgroup(root string, memory, pids int64) (*workerCgroup, string, error) {
	l, err := layout(root)
	if err != nil {
		return nil, "", err
	}
	memFile, pidsFile, kind := "memory.limit_in_bytes", "pids.max", "cgroup v1"
	if l.v2 {
		memFile, kind = "memory.max", "cgroup v2"
	}
	var limits []cgroupLimit
	if memory > 0 {
		limits = append(limits, cgroupLimit{memFile, strconv.FormatInt(memory, 10)})
	}
	if pids > 0 {
		limits = append(limits, cgroupLimit{pidsFile, strconv.FormatInt(pids, 10)})
	}
	// A name is fresh unless someone made the directory in the meantime:
	// then take the next, never share a directory.
	for range 8 {
		name, err := nextCgroupName()
		if err != nil {
			return nil, "", fmt.Errorf("%s: naming: %w", kind, err)
		}
		cg := &workerCgroup{}
		for _, p := range l.parents {
			cg.dirs = append(cg.dirs, filepath.Join(p, name))
		}
		err = cg.create(limits)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", kind, err)
		}
		return cg, fmt.Sprintf("%s %s: memory %s, pids %s", kind, name, limitText(memory), limitText(pids)), nil
	}
	return nil, "", fmt.Errorf("%s: every name taken", kind)
}

func limitText(v int64) string {
	if v <= 0 {
		return "unlimited"
	}
	return strconv.FormatInt(v, 10)
}

type cgroupLimit struct{ file, value string }

// create makes every directory and writes each limit into the directory
// that has its file; on failure it removes what it made. A directory that
// exists already is an error matching os.ErrExist, and is left alone.
func (cg *workerCgroup) create(limits []cgroupLimit) error {
	for i, d := range cg.dirs {
		if err := os.Mkdir(d, 0o755); err != nil {
			(&workerCgroup{dirs: cg.dirs[:i]}).remove()
			return err
		}
	}
	for _, l := range limits {
		written := false
		for _, d := range cg.dirs {
			p := filepath.Join(d, l.file)
			if _, err := os.Stat(p); err != nil {
				continue
			}
			if err := os.WriteFile(p, []byte(l.value), 0); err != nil {
				cg.remove()
				return fmt.Errorf("setting %s: %w", l.file, err)
			}
			written = true
		}
		if !written {
			cg.remove()
			return fmt.Errorf("no %s file", l.file)
		}
	}
	return nil
}

// join moves a process (all its threads) into the cgroup.
func (cg *workerCgroup) join(pid int) error {
	for _, d := range cg.dirs {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("joining %s: %w", d, err)
		}
	}
	return nil
}

// remove deletes the directories once their process is reaped; the kernel
// may need a moment to let go of an exited process (EBUSY).
func (cg *workerCgroup) remove() error {
	var errs []error
	for _, d := range cg.dirs {
		var err error
		for range 50 {
			err = os.Remove(d)
			if err == nil || errors.Is(err, os.ErrNotExist) {
				err = nil
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// sweepCgroups removes the worker cgroups that earlier node processes left
// under root: directories named as ours whose owner no longer runs and that
// hold no task (in them or below). A directory with a live task is kept
// and reported, whoever made it; so is one whose owner still runs.
func sweepCgroups(root string) (removed, kept []string, err error) {
	l, err := layout(root)
	if err != nil {
		return nil, nil, nil // no cgroups here, none left behind
	}
	var errs []error
	for _, parent := range l.parents {
		entries, err := os.ReadDir(parent)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, e := range entries {
			name := e.Name()
			if !e.IsDir() || !(cgroupName.MatchString(name) || oldCgroupName.MatchString(name)) || ownerAlive(name) {
				continue
			}
			dir := filepath.Join(parent, name)
			busy, err := hasTasks(dir)
			switch {
			case err != nil:
				errs = append(errs, err)
			case busy:
				kept = append(kept, dir)
			default:
				if err := removeTree(dir); err != nil {
					errs = append(errs, err)
					continue
				}
				removed = append(removed, dir)
			}
		}
	}
	return removed, kept, errors.Join(errs...)
}

// hasTasks reports whether a cgroup or one below it holds a process.
func hasTasks(dir string) (bool, error) {
	procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	if len(bytes.TrimSpace(procs)) > 0 {
		return true, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if e.IsDir() {
			if busy, err := hasTasks(filepath.Join(dir, e.Name())); busy || err != nil {
				return busy, err
			}
		}
	}
	return false, nil
}

// removeTree removes an idle cgroup and the cgroups below it, deepest
// first. A cgroup directory's control files go with it (rmdir); plain
// files mean it is not a cgroup, and the removal fails.
func removeTree(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeTree(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	if err := os.Remove(dir); err != nil {
		return fmt.Errorf("removing stale worker cgroup: %w", err)
	}
	return nil
}

// ProbeMemoryCap creates a cgroup as a worker's would be made, with a
// memory limit, checks the limit reads back, and removes it. It returns
// what was found (as a worker's report would say) or why the cap is not
// available here.
func ProbeMemoryCap() (string, error) {
	return probeMemoryCap(cgroupRoot)
}

func probeMemoryCap(root string) (string, error) {
	const limit = 256 << 20
	cg, _, err := newWorkerCgroup(root, limit, 64)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoMemoryCap, err)
	}
	defer cg.remove()
	desc := fmt.Sprintf("cgroup v1 %s: a memory limit set and read back", filepath.Dir(cg.dirs[0]))
	if len(cg.dirs) == 1 {
		desc = fmt.Sprintf("cgroup v2 %s: a memory limit set and read back", filepath.Dir(cg.dirs[0]))
	}
	for _, d := range cg.dirs {
		for _, f := range []string{"memory.limit_in_bytes", "memory.max"} {
			b, err := os.ReadFile(filepath.Join(d, f))
			if err != nil {
				continue
			}
			if got := strings.TrimSpace(string(b)); got != strconv.Itoa(limit) {
				return "", fmt.Errorf("%w: %s reads %s after writing %d", ErrNoMemoryCap, f, got, limit)
			}
			return desc, nil
		}
	}
	return "", fmt.Errorf("%w: no memory limit file in %v", ErrNoMemoryCap, cg.dirs)
}

// sweepStaleCgroups removes the worker cgroups earlier node processes
// left behind and logs what it removed and what it had to keep.
func sweepStaleCgroups(cfg Config) {
	removed, kept, err := sweepCgroups(cfg.cgroupRoot)
	if len(removed) > 0 {
		cfg.Logger.Info("sandbox: removed stale worker cgroups", "dirs", removed)
	}
	if len(kept) > 0 {
		cfg.Logger.Warn("sandbox: stale worker cgroups still hold processes; left in place", "dirs", kept)
	}
	if err != nil {
		cfg.Logger.Warn("sandbox: sweeping stale worker cgroups", "err", err)
	}
}
