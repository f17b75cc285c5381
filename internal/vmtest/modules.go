package vmtest

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"strings"
)

// moduleDeps maps a module's name to its file (relative to
// /lib/modules/<release>) and the files it depends on, as depmod wrote
// them in modules.dep.
type moduleDeps struct {
	file map[string]string   // name -> file
	deps map[string][]string // file -> dependency files
}

// moduleName is the name modprobe uses for a module file: the base name
// without .ko and compression suffix, with dashes as underscores.
func moduleName(file string) string {
	base := path.Base(file)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// parseModulesDep reads a modules.dep file: one "file: dep dep ..." line
// per module.
func parseModulesDep(r io.Reader) (*moduleDeps, error) {
	m := &moduleDeps{file: map[string]string{}, deps: map[string][]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		file, deps, ok := strings.Cut(text, ":")
		if !ok || file == "" {
			return nil, fmt.Errorf("modules.dep line %d: no colon after the module file", line)
		}
		m.file[moduleName(file)] = file
		m.deps[file] = strings.Fields(deps)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading modules.dep: %w", err)
	}
	return m, nil
}

// loadOrder returns the files to load, each after everything it depends
// on, for the named modules. A name that modules.dep does not list is an
// error: the module may be built into the kernel, which callers check
// separately with modules.builtin.
func (m *moduleDeps) loadOrder(names []string) ([]string, error) {
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(file, chain string) error
	visit = func(file, chain string) error {
		switch state[file] {
		case 1:
			return fmt.Errorf("module dependency cycle: %s -> %s", chain, file)
		case 2:
			return nil
		}
		deps, ok := m.deps[file]
		if !ok {
			return fmt.Errorf("module %s (needed by %s) is not in modules.dep", file, chain)
		}
		state[file] = 1
		// depmod lists the dependencies that must be loaded last first, as
		// modprobe loads the list from its end.
		for i := len(deps) - 1; i >= 0; i-- {
			if err := visit(deps[i], file); err != nil {
				return err
			}
		}
		state[file] = 2
		order = append(order, file)
		return nil
	}
	for _, n := range names {
		file, ok := m.file[moduleName(n)]
		if !ok {
			return nil, fmt.Errorf("module %s is not in modules.dep", n)
		}
		if err := visit(file, n); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// parseBuiltin reads modules.builtin (one module file per line) into the
// set of built-in module names.
func parseBuiltin(r io.Reader) (map[string]bool, error) {
	set := map[string]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if f := strings.TrimSpace(sc.Text()); f != "" {
			set[moduleName(f)] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading modules.builtin: %w", err)
	}
	return set, nil
}
