//go:build linux

package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aegis-edge/aegis/internal/admin"
	"github.com/aegis-edge/aegis/internal/config"
	"github.com/aegis-edge/aegis/internal/netlab"
	"go.yaml.in/yaml/v3"
)

// GatewayPort is where the edge's gateway listens, on EdgeClientAddr.
const GatewayPort = 8080

// Files in Names.Dir.
const (
	configFile = "aegis.yaml"
	socketFile = "admin.sock"
	logFile    = "node.log"
	pidFile    = "node.pid"
)

// Socket returns the admin socket of the single-edge lab's node.
func (n Names) Socket() string { return n.single().Socket() }

// Log returns the file the single-edge lab's node logs to.
func (n Names) Log() string { return n.single().Log() }

// Socket returns the admin socket of the edge's node.
func (e EdgeNames) Socket() string { return filepath.Join(e.Dir, socketFile) }

// Log returns the file the edge's node logs to.
func (e EdgeNames) Log() string { return filepath.Join(e.Dir, logFile) }

func (e EdgeNames) config() string { return filepath.Join(e.Dir, configFile) }

// nodeConfig is the edge node's configuration: private state, socket and
// pins, both edge links shielded, and rate limits low enough that the flood
// trips them at once. fleet, if set, makes it follow the lab's hub.
func nodeConfig(e EdgeNames, addrs clientLink, fleet *config.Fleet) config.Config {
	cfg := config.Default()
	cfg.StateDir = filepath.Join(e.Dir, "state")
	cfg.Admin.Socket = e.Socket()
	// The client (and hub) must never be blocked, not even by mistake.
	cfg.Admin.ManagementAddrs = []string{addrs.Client.String()}
	cfg.Shield.Interfaces = []string{edgeAttackerIf, edgeClientIf}
	cfg.Shield.PinPath = e.PinPath
	rl := &cfg.Shield.RateLimit
	rl.SYN = config.Bucket{PPS: 50, Burst: 100}
	rl.UDP = config.Bucket{PPS: 200, Burst: 400}
	// Short, so a long run shows the block lapse and come back.
	rl.AutoBlockTTL = config.Duration{Duration: 10 * time.Second}
	cfg.Gateway.Listen = netip.AddrPortFrom(addrs.Edge, GatewayPort).String()
	if fleet != nil {
		cfg.Fleet.Servers = fleet.Servers
		cfg.Fleet.Name = fleet.Name
		cfg.Fleet.TrustedKeys = fleet.TrustedKeys
	}
	return cfg
}

// process is a child of the lab (a node or the fleet hub) started inside
// a namespace, with its pid in a file for Clean.
type process struct {
	cmd  *exec.Cmd
	log  string        // its stdout and stderr
	done chan struct{} // closed when the process has been waited for
	err  error         // its exit, valid after done
}

// startProcess starts exe with args inside ns, logging to logPath, and
// writes its pid to pidPath.
func startProcess(ns *netlab.Namespace, exe string, env []string, logPath, pidPath string, args ...string) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own copy

	cmd := exec.Command(exe, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a Ctrl-C at the terminal reaches the lab,
	// which stops its children itself, in order, after the traffic.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A child inherits the network namespace of the thread that forks it.
	if err := ns.Do(cmd.Start); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := os.WriteFile(pidPath, []byte(strconv.Itoa(cmd.Process.Pid)), 0o600); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// nodeProcess is the `aegis node` child running in an edge namespace.
type nodeProcess struct {
	*process
	names EdgeNames
}

// startNode writes the config and starts exe (the aegis binary) as
// `aegis node` inside the edge's namespace, logging to EdgeNames.Log.
func startNode(exe string, env []string, e *edgeLinks, fleet *config.Fleet) (*nodeProcess, error) {
	n := e.names
	if err := os.MkdirAll(n.Dir, 0o700); err != nil {
		return nil, err
	}
	cfg := nodeConfig(n, e.addrs, fleet)
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("lab node config: %w", err)
	}
	raw, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(n.config(), raw, 0o600); err != nil {
		return nil, err
	}
	p, err := startProcess(e.ns, exe, env, n.Log(), filepath.Join(n.Dir, pidFile), "node", "--config", n.config())
	if err != nil {
		return nil, fmt.Errorf("starting the node of %s: %w", n.Name, err)
	}
	return &nodeProcess{process: p, names: n}, nil
}

// waitReady waits until the node answers on its admin socket.
func (p *nodeProcess) waitReady(ctx context.Context, c *admin.Client) error {
	n := p.names
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		_, err := c.Status(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("the node exited while starting (%v):\n%s", p.err, logTail(n.Log()))
		case <-ctx.Done():
			return fmt.Errorf("the node did not answer on %s: %w\n%s", n.Socket(), err, logTail(n.Log()))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stopGrace is how long a node gets to stop after SIGTERM before SIGKILL.
const stopGrace = 10 * time.Second

// stop terminates the process and waits for it.
func (p *process) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// logTail returns the end of a log file, for error messages.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	const keep = 2000
	if len(b) > keep {
		b = b[len(b)-keep:]
	}
	return string(bytes.TrimSpace(b))
}

// Clean removes everything the lab with this ID left behind, a fleet lab's
// too: it stops its nodes (found by their pid files, and only if that
// process is still the lab's node), removes its pins (which detaches the
// shield), its namespaces (and the links in them) and its directory. What
// is already gone is skipped.
func Clean(id string) error {
	if !ValidID(id) {
		return fmt.Errorf("%q is not a lab ID", id)
	}
	n := NamesFor(id)
	var errs []error
	for _, e := range append(n.edges(false), n.edges(true)...) {
		if err := stopLeftover(filepath.Join(e.Dir, pidFile), e.config()); err != nil {
			errs = append(errs, err)
		}
	}
	// The hub after the nodes, as the lab stops them.
	if err := stopLeftover(filepath.Join(n.Dir, hubPid), filepath.Join(n.Dir, hubConfigFile)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(append(errs, removeArtifacts(n))...)
}

// removeArtifacts removes a lab's pins, namespaces and directory, once its
// node is gone.
func removeArtifacts(n Names) error {
	var errs []error
	// Unpinning the links detaches the programs; unpinning the maps frees
	// them once nothing holds them.
	if err := os.RemoveAll(n.PinPath); err != nil {
		errs = append(errs, fmt.Errorf("removing pins: %w", err))
	}
	if err := removeNamespaces(n); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(n.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// stopLeftover stops a node or hub that is not this process's child, by
// the pid in pidPath, if its command line still contains mark.
func stopLeftover(pidPath, mark string) error {
	raw, err := os.ReadFile(pidPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 1 {
		return fmt.Errorf("%s: bad pid %q", pidPath, raw)
	}
	// The pid may have been reused since: only a process started with this
	// lab's config or directory is the lab's node or hub.
	isNode := func() bool {
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		return err == nil && bytes.Contains(cmdline, []byte(mark))
	}
	if !isNode() {
		return nil
	}
	syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(stopGrace)
	for isNode() {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			deadline = time.Now().Add(stopGrace)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// Leftovers lists the IDs of labs that left something behind: a namespace,
// a pin directory or a lab directory.
func Leftovers() ([]string, error) {
	ids := map[string]bool{}
	scan := func(dir string, trim func(string) string) error {
		entries, err := os.ReadDir(dir)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		for _, e := range entries {
			if name, ok := strings.CutPrefix(e.Name(), namePrefix); ok {
				if id := trim(name); ValidID(id) {
					ids[id] = true
				}
			}
		}
		return err
	}
	untilDash := func(s string) string { id, _, _ := strings.Cut(s, "-"); return id }
	same := func(s string) string { return s }
	err := errors.Join(scan(netlab.RunDir, untilDash), scan("/sys/fs/bpf", same), scan(os.TempDir(), same))
	return slices.Sorted(maps.Keys(ids)), err
}
