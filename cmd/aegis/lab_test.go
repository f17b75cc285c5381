//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/lab"
	"github.com/aegis-edge/aegis/internal/testutil"
	"github.com/vishvananda/netlink"
)

func TestLabUsage(t *testing.T) {
	for _, a := range [][]string{
		{"lab", "extra"},
		{"lab", "--duration", "0s"},
		{"lab", "--duration", "soon"},
		{"lab", "--clean", "../etc"},
	} {
		if code, _, stderr := cli(a...); code != 2 {
			t.Errorf("aegis %s: exit %d, want 2 (%s)", strings.Join(a, " "), code, stderr)
		}
	}
}

// labCmd is `aegis lab` run as a child: this test binary as the aegis
// binary, so the node it starts is the real command too.
func labCmd(t *testing.T, ctx context.Context, args ...string) *exec.Cmd {
	t.Helper()
	testutil.RequireRoot(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, self, append([]string{"lab"}, args...)...)
	cmd.Env = append(os.Environ(), "AEGIS_TEST_MAIN=1")
	return cmd
}

var labIDLine = regexp.MustCompile(`(?m)^aegis lab ([0-9a-f]+): `)

// labID finds the lab's ID in its output and registers its removal, in case
// the lab itself failed to clean up.
func labID(t *testing.T, out string) string {
	t.Helper()
	m := labIDLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no lab ID in the output:\n%s", out)
	}
	t.Cleanup(func() { lab.Clean(m[1]) })
	return m[1]
}

// summaryCount reads a number from the summary, by the text before it.
func summaryCount(t *testing.T, out, pattern string) int {
	t.Helper()
	m := regexp.MustCompile(pattern).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %q in the output:\n%s", pattern, out)
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// assertNothingLeft checks that no namespace, link, pin, directory or
// process of the lab remains.
func assertNothingLeft(t *testing.T, id string) {
	t.Helper()
	n := lab.NamesFor(id)
	for _, ns := range n.Namespaces() {
		if _, err := os.Stat(filepath.Join("/run/netns", ns)); !os.IsNotExist(err) {
			t.Errorf("namespace %s remains (%v)", ns, err)
		}
	}
	for _, p := range []string{n.PinPath, n.Dir} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s remains (%v)", p, err)
		}
	}
	// The lab's links live only in its namespaces; none may have ended up
	// in this one.
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if name := l.Attrs().Name; slices.Contains([]string{"att0", "att1", "cli0", "cli1", "edge-att", "edge-cli"}, name) {
			t.Errorf("link %s remains", name)
		}
	}
	if pids := processesMentioning(t, n.Dir); len(pids) > 0 {
		t.Errorf("processes of the lab remain: %v", pids)
	}
	if ids, _ := lab.Leftovers(); slices.Contains(ids, id) {
		t.Errorf("lab.Leftovers still lists %s", id)
	}
}

// processesMentioning lists the processes whose command line contains s.
func processesMentioning(t *testing.T, s string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte(s)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestLab runs the demo as a user would and checks that it showed the shield
// dropping the attack while the function answered, and left nothing behind.
func TestLab(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(2*time.Minute))
	defer cancel()
	cmd := labCmd(t, ctx, "--duration", "5s", "--plain")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	raw, err := cmd.Output()
	out := string(raw)
	id := labID(t, out)
	if err != nil {
		t.Fatalf("aegis lab: %v\n%s\n%s", err, out, stderr.String())
	}
	t.Logf("aegis lab output:\n%s", out)

	if n := summaryCount(t, out, `shield dropped: +(\d+) packets`); n == 0 {
		t.Error("the shield dropped nothing")
	}
	if n := summaryCount(t, out, `blocked_exact: +(\d+)`); n == 0 {
		t.Error("the blocklisted source was not dropped")
	}
	if n := summaryCount(t, out, `(\d+) answered 200`); n == 0 {
		t.Error("the function never answered 200")
	}
	if lines := strings.Count(out, " pkt/s "); lines < 3 {
		t.Errorf("the live view printed %d lines in 5 s", lines)
	}
	assertNothingLeft(t, id)
}

// TestLabFleet runs the fleet lab: both edges list the block published on
// the hub and drop the blocked source, and nothing is left behind (the
// hub, which runs inside the lab, included: its listener is in a
// namespace that must be gone).
func TestLabFleet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(2*time.Minute))
	defer cancel()
	cmd := labCmd(t, ctx, "--fleet", "--duration", "3s", "--plain")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	raw, err := cmd.Output()
	out := string(raw)
	id := labID(t, out)
	if err != nil {
		t.Fatalf("aegis lab --fleet: %v\n%s\n%s", err, out, stderr.String())
	}
	t.Logf("aegis lab --fleet (%s):\n%s", time.Since(start).Round(time.Millisecond), out)

	if !regexpLine(out, `^fleet block of 192\.0\.2\.66 .* listed by edge-1 after [0-9.]+ms, edge-2 after [0-9.]+ms$`) {
		t.Error("no propagation times for both edges")
	}
	for _, e := range []string{"edge-1", "edge-2"} {
		if n := summaryCount(t, out, `(?m)^  `+e+`: fleet block listed after [0-9.]+ms; dropped \d+ packets, blocklisted (\d+)`); n == 0 {
			t.Errorf("%s dropped nothing from the blocked source", e)
		}
		if lines := strings.Count(out, "s  "+e+"  dropped "); lines < 1 {
			t.Errorf("the live view showed %s %d times", e, lines)
		}
	}
	assertNothingLeft(t, id)
}

// TestLabFleetKeep keeps a fleet lab: the hub and both edges run on, the
// edges hold the fleet block, and --clean removes all of it.
func TestLabFleetKeep(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(2*time.Minute))
	defer cancel()
	cmd := labCmd(t, ctx, "--fleet", "--duration", "1s", "--plain", "--keep")
	raw, err := cmd.Output()
	out := string(raw)
	id := labID(t, out)
	if err != nil {
		t.Fatalf("aegis lab --fleet --keep: %v\n%s", err, out)
	}
	n := lab.NamesFor(id)
	if !regexpLine(out, `^kept: the hub \(pid \d+\) runs on`) || !strings.Contains(out, "aegis lab --clean "+id) {
		t.Errorf("no kept hub or clean-up instructions:\n%s", out)
	}
	for _, e := range n.Fleet {
		code, stdout, stderr := cli("--socket", filepath.Join(e.Dir, "admin.sock"), "block", "ls")
		if code != 0 || !regexpLine(stdout, `^192\.0\.2\.66/32 .* fleet `) {
			t.Errorf("the kept %s: block ls exit %d: %s %s", e.Name, code, stdout, stderr)
		}
	}
	if pids := processesMentioning(t, filepath.Join(n.Dir, "hub.yaml")); len(pids) == 0 {
		t.Error("the kept hub is not running")
	}
	code, stdout, stderr := cli("lab", "--clean", id)
	if code != 0 || !strings.Contains(stdout, "removed lab "+id) {
		t.Fatalf("aegis lab --clean: exit %d: %s %s", code, stdout, stderr)
	}
	assertNothingLeft(t, id)
}

func regexpLine(s, pattern string) bool {
	return regexp.MustCompile(`(?m)` + pattern).MatchString(s)
}

// TestLabInterrupted stops a long lab with SIGINT, as Ctrl-C would: it
// prints its summary, exits 1 and still removes everything.
func TestLabInterrupted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(2*time.Minute))
	defer cancel()
	cmd := labCmd(t, ctx, "--duration", "10m", "--plain")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		fmt.Fprintln(&out, sc.Text())
		if strings.Contains(sc.Text(), " pkt/s ") { // the first line of the live view
			break
		}
	}
	id := labID(t, out.String())
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(stdout)
	out.Write(rest)
	err = cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(stderr.String(), "interrupted") {
		t.Fatalf("interrupted lab: exit %d (%v), want 1 and \"interrupted\"\n%s\n%s", code, err, out.String(), stderr.String())
	}
	if !strings.Contains(out.String(), "summary of lab "+id) {
		t.Errorf("no summary after the interrupt:\n%s", out.String())
	}
	assertNothingLeft(t, id)
}

// TestLabKeep keeps the lab, reaches the node in it, then cleans it up.
func TestLabKeep(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(2*time.Minute))
	defer cancel()
	cmd := labCmd(t, ctx, "--duration", "2s", "--plain", "--keep")
	raw, err := cmd.Output()
	out := string(raw)
	id := labID(t, out)
	if err != nil {
		t.Fatalf("aegis lab --keep: %v\n%s", err, out)
	}
	n := lab.NamesFor(id)
	if !strings.Contains(out, "aegis lab --clean "+id) {
		t.Errorf("no clean-up instructions:\n%s", out)
	}
	for _, ns := range []string{n.Edge, n.Attacker, n.Client} {
		if _, err := os.Stat(filepath.Join("/run/netns", ns)); err != nil {
			t.Errorf("kept namespace %s: %v", ns, err)
		}
	}
	if code, stdout, stderr := cli("--socket", n.Socket(), "fn", "ls"); code != 0 || !strings.Contains(stdout, lab.FunctionName) {
		t.Errorf("the kept node: fn ls exit %d: %s %s", code, stdout, stderr)
	}
	if ids, err := lab.Leftovers(); err != nil || !slices.Contains(ids, id) {
		t.Errorf("lab.Leftovers = %v, %v; want it to list %s", ids, err, id)
	}

	code, stdout, stderr := cli("lab", "--clean", id)
	if code != 0 || !strings.Contains(stdout, "removed lab "+id) {
		t.Fatalf("aegis lab --clean: exit %d: %s %s", code, stdout, stderr)
	}
	assertNothingLeft(t, id)
}

// TestLabClosedStdout closes the lab's stdout after its first line, as
// `aegis lab | head -1` does: the lab must not die of SIGPIPE before its
// teardown.
func TestLabClosedStdout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(2*time.Minute))
	defer cancel()
	cmd := labCmd(t, ctx, "--duration", "2s", "--plain")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	first, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	id := labID(t, first)
	stdout.Close()
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		t.Fatalf("the lab died of %v", ws.Signal())
	}
	t.Logf("lab with a closed stdout: %v", err)
	assertNothingLeft(t, id)
}
