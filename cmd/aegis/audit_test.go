//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/audit"
)

// writeAuditLog creates a log in dir with n records alternating between
// ebpf.attach and ebpf.map_add, targets t1..tn.
func writeAuditLog(t *testing.T, dir string, n int, opts audit.Options) {
	t.Helper()
	l, err := audit.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range n {
		op := audit.OpMapAdd
		if i%2 == 0 {
			op = audit.OpAttach
		}
		if _, err := l.Append(context.Background(), audit.Event{Op: op, Target: fmt.Sprintf("t%d", i+1), Actor: "uid=0 pid=7"}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAuditVerify(t *testing.T) {
	dir := t.TempDir()
	writeAuditLog(t, dir, 5, audit.Options{})
	code, out, stderr := cli("audit", "verify", "--dir", dir)
	if code != 0 || out != "ok: 5 records, seq 1..5, 1 file\n" {
		t.Fatalf("verify: exit %d, %q %q", code, out, stderr)
	}

	files, _ := audit.Files(dir)
	data, _ := os.ReadFile(files[0])
	os.WriteFile(files[0], bytes.Replace(data, []byte(`"t3"`), []byte(`"t4"`), 1), 0o640)
	code, out, stderr = cli("audit", "verify", "--dir", dir)
	if code != 1 || !strings.HasPrefix(stderr, "aegis: record 3: edited") || out != "" {
		t.Errorf("verify of an edited log: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	code, _, stderr = cli("audit", "verify", files[0])
	if code != 1 || !strings.Contains(stderr, "record 3:") {
		t.Errorf("verify FILE of an edited log: exit %d, %q", code, stderr)
	}
}

func TestAuditVerifyFindsTheNodesLog(t *testing.T) {
	base := t.TempDir()
	moved := filepath.Join(base, "elsewhere")
	writeAuditLog(t, moved, 3, audit.Options{})
	writeAuditLog(t, filepath.Join(base, "state", "audit"), 2, audit.Options{})

	cfg := writeConfig(t, map[string]any{"state_dir": filepath.Join(base, "state"), "audit": map[string]any{"dir": moved}})
	if code, out, stderr := cli("audit", "verify", "--config", cfg); code != 0 || !strings.HasPrefix(out, "ok: 3 records") {
		t.Errorf("verify with audit.dir: exit %d, %q %q", code, out, stderr)
	}
	cfg = writeConfig(t, map[string]any{"state_dir": filepath.Join(base, "state")})
	if code, out, stderr := cli("audit", "verify", "--config", cfg); code != 0 || !strings.HasPrefix(out, "ok: 2 records") {
		t.Errorf("verify under state_dir: exit %d, %q %q", code, out, stderr)
	}
	if code, _, stderr := cli("audit", "verify", "--dir", filepath.Join(base, "none")); code != 1 || !strings.Contains(stderr, "no such file") {
		t.Errorf("verify of a missing log: exit %d, %q", code, stderr)
	}
}

// verify holds the node's log to the anchor in its state directory: a log
// directory emptied, or replaced by a valid shorter chain, fails and the
// error names the record the anchor expects.
func TestAuditVerifyHoldsTheLogToTheAnchor(t *testing.T) {
	for _, tc := range []struct {
		name   string
		attack func(t *testing.T, dir string)
		want   string
	}{
		{"emptied", func(t *testing.T, dir string) {
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				os.Remove(filepath.Join(dir, e.Name()))
			}
		}, "record 1: missing: the log ends at record 0"},
		{"replaced by a shorter chain", func(t *testing.T, dir string) {
			os.RemoveAll(dir)
			writeAuditLog(t, dir, 3, audit.Options{})
		}, "record 4: missing: the log ends at record 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state := filepath.Join(t.TempDir(), "state")
			cfg := writeConfig(t, map[string]any{"state_dir": state})
			dir, anchor := filepath.Join(state, "audit"), filepath.Join(state, "audit.anchor")
			writeAuditLog(t, dir, 5, audit.Options{Anchor: anchor})
			_, hash, _ := audit.ReadHead(dir)
			code, out, stderr := cli("audit", "verify", "--config", cfg)
			if want := "ok: 5 records, seq 1..5, 1 file; reaches the anchor's record 5 (" + anchor + ")\n"; code != 0 || out != want {
				t.Fatalf("verify: exit %d, %q %q; want %q", code, out, stderr, want)
			}
			tc.attack(t, dir)
			code, out, stderr = cli("audit", "verify", "--config", cfg)
			if code != 1 || out != "" || !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "records record 5 with hash "+hash) {
				t.Errorf("verify after the attack: exit %d, stdout %q, stderr %q; want %q and the anchor's record", code, out, stderr, tc.want)
			}
			// --dir names some log: no anchor unless given.
			if code, out, _ := cli("audit", "verify", "--dir", dir); code != 0 || strings.Contains(out, "anchor") {
				t.Errorf("verify --dir: exit %d, %q", code, out)
			}
			if code, _, stderr := cli("audit", "verify", "--dir", dir, "--anchor", anchor); code != 1 || !strings.Contains(stderr, tc.want) {
				t.Errorf("verify --dir --anchor: exit %d, %q", code, stderr)
			}
		})
	}
}

func TestAuditUsageErrors(t *testing.T) {
	for _, a := range [][]string{
		{"audit"},
		{"audit", "bogus"},
		{"audit", "verify", "--dir", "/tmp", "file.jsonl"},
		{"audit", "verify", "--anchor", "/tmp/a", "file.jsonl"},
		{"audit", "tail", "extra"},
		{"audit", "tail", "-n", "-1"},
		{"audit", "tail", "--op", "["},
		{"audit", "tail", "--no-such-flag"},
	} {
		if code, _, stderr := cli(a...); code != 2 {
			t.Errorf("aegis %s: exit %d, want 2 (%q)", strings.Join(a, " "), code, stderr)
		}
	}
}

func TestAuditTail(t *testing.T) {
	dir := t.TempDir()
	writeAuditLog(t, dir, 9, audit.Options{MaxFileBytes: 4096})

	code, out, _ := cli("audit", "tail", "--dir", dir, "-n", "2")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || !strings.Contains(lines[0], "#8 ebpf.map_add t8 by uid=0 pid=7: ok") || !strings.Contains(lines[1], "#9 ebpf.attach t9") {
		t.Errorf("tail -n 2: exit %d\n%s", code, out)
	}

	_, out, _ = cli("audit", "tail", "--dir", dir, "--op", "ebpf.attach")
	if got := strings.Count(out, "ebpf.attach"); got != 5 || strings.Contains(out, "map_add") {
		t.Errorf("tail --op ebpf.attach printed %d attach records:\n%s", got, out)
	}
	_, out, _ = cli("audit", "tail", "--dir", dir, "--op", "ebpf.*", "-n", "100")
	if got := strings.Count(out, "\n"); got != 9 {
		t.Errorf("tail --op 'ebpf.*' printed %d records, want 9", got)
	}

	// --json prints the lines exactly as in the log.
	_, out, _ = cli("audit", "tail", "--dir", dir, "--json", "-n", "100")
	var want strings.Builder
	files, _ := audit.Files(dir)
	for _, f := range files {
		b, _ := os.ReadFile(f)
		want.Write(b)
	}
	if out != want.String() {
		t.Errorf("tail --json differs from the log:\n%s\nwant\n%s", out, want.String())
	}
}

func TestAuditTailFollow(t *testing.T) {
	dir := t.TempDir()
	writeAuditLog(t, dir, 3, audit.Options{MaxFileBytes: 4096})
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "audit", "tail", "-f", "-n", "100", "--op", "ebpf.detach", "--dir", dir)
	cmd.Env = append(os.Environ(), "AEGIS_TEST_MAIN=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		// Give the follower time to start, so that most records reach it
		// by following; any written before it started come from tail's
		// first read, in the same order.
		time.Sleep(300 * time.Millisecond)
		l, err := audit.Open(dir, audit.Options{MaxFileBytes: 4096})
		if err != nil {
			done <- err
			return
		}
		defer l.Close()
		for i := range 40 {
			op := audit.OpMapAdd
			if i%4 == 0 {
				op = audit.OpDetach
			}
			if _, err := l.Append(context.Background(), audit.Event{Op: op, Target: fmt.Sprintf("f%d", i)}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})

	sc := bufio.NewScanner(stdout)
	for i := 0; i < 40; i += 4 {
		if !sc.Scan() {
			t.Fatalf("tail -f stopped before f%d: %v %s", i, sc.Err(), stderr.String())
		}
		if want := fmt.Sprintf(" ebpf.detach f%d ", i); !strings.Contains(sc.Text(), want) {
			t.Fatalf("tail -f printed %q, want %q", sc.Text(), want)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if files, _ := audit.Files(dir); len(files) < 2 {
		t.Fatalf("the log did not rotate: %d files", len(files))
	}
	// SIGTERM ends a follow cleanly.
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("tail -f after SIGTERM: %v %s", err, stderr.String())
	}
}
