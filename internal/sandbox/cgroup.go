package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// cgroupRoot is where the host's cgroup hierarchies are mounted.
var cgroupRoot = "/sys/fs/cgroup"

// cgroupParent names the directory that holds the workers' cgroups.
const cgroupParent = "aegis-sandbox"

// workerCgroup is one worker's cgroup: a directory per v1 controller
// (memory, pids), or one v2 directory.
type workerCgroup struct {
	dirs []string
}

// newWorkerCgroup creates name under the memory and pids controllers with
// the given limits (0: no limit). It reports why when the host offers no
// usable cgroup; the worker then runs without one.
func newWorkerCgroup(name string, memory, pids int64) (*workerCgroup, string, error) {
	limits := func(memFile, pidsFile string) []struct{ file, value string } {
		var l []struct{ file, value string }
		if memory > 0 {
			l = append(l, struct{ file, value string }{memFile, strconv.FormatInt(memory, 10)})
		}
		if pids > 0 {
			l = append(l, struct{ file, value string }{pidsFile, strconv.FormatInt(pids, 10)})
		}
		return l
	}
	desc := fmt.Sprintf("memory %s, pids %s", limitText(memory), limitText(pids))
	if _, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
		parent := filepath.Join(cgroupRoot, cgroupParent)
		if err := os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, "", fmt.Errorf("cgroup v2: %w", err)
		}
		if err := os.WriteFile(filepath.Join(parent, "cgroup.subtree_control"), []byte("+memory +pids"), 0); err != nil {
			return nil, "", fmt.Errorf("cgroup v2: enabling memory and pids: %w", err)
		}
		cg := &workerCgroup{dirs: []string{filepath.Join(parent, name)}}
		if err := cg.create(limits("memory.max", "pids.max")); err != nil {
			return nil, "", fmt.Errorf("cgroup v2: %w", err)
		}
		return cg, "cgroup v2: " + desc, nil
	}
	cg := &workerCgroup{}
	for _, ctl := range []string{"memory", "pids"} {
		if _, err := os.Stat(filepath.Join(cgroupRoot, ctl, "cgroup.procs")); err != nil {
			return nil, "", fmt.Errorf("cgroup v1: no %s controller mounted", ctl)
		}
		parent := filepath.Join(cgroupRoot, ctl, cgroupParent)
		if err := os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, "", fmt.Errorf("cgroup v1: %w", err)
		}
		cg.dirs = append(cg.dirs, filepath.Join(parent, name))
	}
	l := limits("memory.limit_in_bytes", "pids.max")
	if err := cg.create(l); err != nil {
		return nil, "", fmt.Errorf("cgroup v1: %w", err)
	}
	return cg, "cgroup v1: " + desc, nil
}

func limitText(v int64) string {
	if v <= 0 {
		return "unlimited"
	}
	return strconv.FormatInt(v, 10)
}

// create makes every directory and writes each limit into the directory
// that has its file; on failure it removes what it made.
func (cg *workerCgroup) create(limits []struct{ file, value string }) error {
	for _, d := range cg.dirs {
		if err := os.Mkdir(d, 0o755); err != nil {
			cg.remove()
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
