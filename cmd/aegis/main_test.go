package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/config"
	"github.com/aegis-edge/aegis/internal/testutil"
)

// The test binary doubles as the aegis binary: with AEGIS_TEST_MAIN set it
// runs main, so end-to-end tests exec the real command without a build step.
func TestMain(m *testing.M) {
	// Also the sandbox's workers: the node re-executes this binary as
	// `aegis sandbox-worker` with an empty environment.
	if os.Getenv("AEGIS_TEST_MAIN") == "1" || len(os.Args) > 1 && os.Args[1] == "sandbox-worker" {
		main()
		return
	}
	os.Exit(m.Run())
}

// cli runs the command in-process and returns its exit status and output.
func cli(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut, func(string) string { return "" })
	return code, out.String(), errOut.String()
}

func TestUsageErrorsExitTwo(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	for _, args := range [][]string{
		{},
		{"bogus"},
		{"block"},
		{"block", "frobnicate"},
		{"block", "add"},
		{"block", "add", "--ttl", "soon", "192.0.2.1"},
		{"block", "add", "--no-such-flag", "192.0.2.1"},
		{"block", "import"},
		{"block", "ls", "extra"},
		{"shield", "mode", "off"},
		{"shield", "mode"},
		{"shield", "rate", "tcp", "--pps", "5"},
		{"shield", "rate", "syn"},
		{"shield", "detach"},
		{"node", "extra"},
	} {
		code, _, stderr := cli(append([]string{"--socket", sock}, args...)...)
		if code != 2 {
			t.Errorf("aegis %s: exit %d, want 2 (stderr %q)", strings.Join(args, " "), code, stderr)
		}
	}
}

func TestRefusalsExitOne(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"block", "add", "192.0.2.300"}, `"192.0.2.300" is not an IP address`},
		{[]string{"block", "add", "192.0.2.1", "nonsense"}, `"nonsense"`},
		{[]string{"block", "add", "--ttl", "-5m", "192.0.2.1"}, "negative"},
		{[]string{"block", "add", "--ttl", "87600h", "192.0.2.1"}, "exceeds the maximum"},
		{[]string{"block", "ls"}, "cannot reach the node"},
		{[]string{"node", "--config", "/nonexistent/aegis.yaml"}, "nonexistent"},
	} {
		code, _, stderr := cli(append([]string{"--socket", sock}, tc.args...)...)
		if code != 1 || !strings.Contains(stderr, tc.want) {
			t.Errorf("aegis %s: exit %d stderr %q, want 1 and %q", strings.Join(tc.args, " "), code, stderr, tc.want)
		}
	}
}

// testNodeConfig returns a config with private state, socket and pins.
func testNodeConfig(t testing.TB) config.Config {
	t.Helper()
	testutil.RequireRoot(t)
	dir := t.TempDir()
	cfg := config.Default()
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.Admin.Socket = filepath.Join(dir, "admin.sock")
	cfg.Shield.PinPath = testutil.PinPath(t)
	cfg.Gateway.Listen = "127.0.0.1:0"
	return cfg
}

// startInProcessNode runs a node in this process until the test ends.
func startInProcessNode(t *testing.T, cfg config.Config) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runNode(ctx, cfg, discardLogger(), nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node: %v", err)
		}
	})
	waitForNode(t, cfg.Admin.Socket, done)
}

func waitForNode(t testing.TB, sock string, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(testutil.Scale(20 * time.Second))
	for time.Now().Before(deadline) {
		if code, _, _ := cli("--socket", sock, "shield", "status"); code == 0 {
			return
		}
		select {
		case err := <-done:
			t.Fatalf("node exited while starting: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("node did not answer on %s (%s)", sock, testutil.TimeScale())
}

func TestImport(t *testing.T) {
	cfg := testNodeConfig(t)
	startInProcessNode(t, cfg)
	sock := cfg.Admin.Socket
	dir := t.TempDir()

	bad := filepath.Join(dir, "bad.netset")
	os.WriteFile(bad, []byte("# FireHOL style\n192.0.2.1\n198.51.100.0/24 # comment\n\n10.0.0.1/8\n"), 0o644)
	if code, _, stderr := cli("--socket", sock, "block", "import", bad); code != 1 || !strings.Contains(stderr, "bad.netset:5") {
		t.Fatalf("import of a bad file: exit %d, %q", code, stderr)
	}
	if _, out, _ := cli("--socket", sock, "block", "ls"); strings.Count(out, "\n") != 1 {
		t.Fatalf("a refused import changed the list:\n%s", out)
	}

	var sb strings.Builder
	sb.WriteString("# 100,000 addresses\n")
	for i := range 100_000 {
		fmt.Fprintf(&sb, "10.%d.%d.%d\n", i>>16, (i>>8)&0xff, i&0xff)
	}
	big := filepath.Join(dir, "big.netset")
	os.WriteFile(big, []byte(sb.String()), 0o644)
	start := time.Now()
	code, out, stderr := cli("--socket", sock, "block", "import", big)
	if code != 0 || !strings.Contains(out, "added 100000") {
		t.Fatalf("import: exit %d, %q %q", code, out, stderr)
	}
	t.Logf("imported 100,000 entries in %s", time.Since(start))

	// The list is full now: one more is refused with the documented message.
	code, _, stderr = cli("--socket", sock, "block", "add", "192.0.2.1")
	if code != 1 || !strings.Contains(stderr, "IPv4 blocklist full (100000 entries)") {
		t.Fatalf("add to a full list: exit %d, %q", code, stderr)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
