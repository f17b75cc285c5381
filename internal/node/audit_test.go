//go:build linux

package node

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aegis-edge/aegis/internal/audit"
	"github.com/aegis-edge/aegis/internal/functions"
	"github.com/aegis-edge/aegis/internal/shield"
	"github.com/aegis-edge/aegis/internal/store"
	"golang.org/x/sys/unix"
)

// auditRecords reads the node's audit log back, verifying its chain.
func auditRecords(t *testing.T, dir string) []audit.Record {
	t.Helper()
	if _, err := audit.VerifyDir(dir); err != nil {
		t.Fatalf("audit log does not verify: %v", err)
	}
	files, err := audit.Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Record
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(nil, audit.MaxLineBytes)
		for sc.Scan() {
			var r audit.Record
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
		}
		fh.Close()
	}
	return out
}

func opsOf(recs []audit.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Op+":"+r.Result)
	}
	return out
}

func TestAuditOneRecordPerChange(t *testing.T) {
	cfg := testConfig(t)
	cfg.Admin.ManagementAddrs = []string{"192.0.2.250"}
	cfg.Shield.Limits.IPv4 = 3
	n := startNode(t, cfg)
	who := Actor{UID: 1000, PID: 4242}

	if _, err := n.Add(AddRequest{List: store.Blocklist, Targets: prefixes(t, "192.0.2.1"), Actor: who}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Add(AddRequest{List: store.Blocklist, Targets: prefixes(t, "192.0.2.2", "198.51.100.0/24"), Actor: who}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Add(AddRequest{List: store.Blocklist, Targets: prefixes(t, "203.0.113.9"), Actor: who}); !errors.Is(err, ErrRefused) {
		t.Fatalf("add over the limit = %v", err)
	}
	if _, err := n.Add(AddRequest{List: store.Blocklist, Targets: prefixes(t, "192.0.2.0/24"), Actor: who}); !errors.Is(err, ErrRefused) {
		t.Fatalf("lockout add = %v", err)
	}
	if _, err := n.Remove(store.Blocklist, prefixes(t, "192.0.2.1"), who); err != nil {
		t.Fatal(err)
	}
	if _, err := n.SetSettings(func(s *shield.Settings) { s.Mode = shield.ModeMonitor }, who); err != nil {
		t.Fatal(err)
	}
	if _, err := n.SetSettings(func(s *shield.Settings) { s.UDP.PPS = 7 }, who); err != nil {
		t.Fatal(err)
	}
	hello := helloModule(t)
	if _, err := n.Functions().Deploy(context.Background(), "hello", hello, functions.Spec{Route: "/hello"}, who.String()); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Functions().Deploy(context.Background(), "other", hello, functions.Spec{Route: "/hello"}, who.String()); !errors.Is(err, functions.ErrConflict) {
		t.Fatalf("deploy on a taken route = %v", err)
	}
	if _, err := n.Functions().Remove("hello", who.String()); err != nil {
		t.Fatal(err)
	}
	recs := auditRecords(t, cfg.AuditDir())
	got := opsOf(recs)
	// The start: node, verification, rlimit, load, pin; then one record per
	// operation above.
	wantStart := []string{"node.start:ok", "ebpf.verify:ok", "ebpf.rlimit:ok", "ebpf.load:ok", "ebpf.pin:ok"}
	wantOps := []string{"ebpf.map_add:ok", "ebpf.map_bulk:ok", "ebpf.limit_refused:refused", "ebpf.limit_refused:refused",
		"ebpf.map_remove:ok", "shield.mode:ok", "shield.rate:ok", "function.deploy:ok", "function.remove:ok"}
	if !slices.Equal(got, append(wantStart, wantOps...)) {
		t.Fatalf("audit ops:\n%v\nwant\n%v", got, append(wantStart, wantOps...))
	}
	for _, r := range recs[len(wantStart):] {
		if r.Actor != "uid=1000 pid=4242" {
			t.Errorf("record %d (%s) actor %q", r.Seq, r.Op, r.Actor)
		}
	}
	if r := recs[len(wantStart)+2]; !strings.Contains(r.Error, "IPv4 blocklist full (3 entries)") {
		t.Errorf("limit refusal record: %+v", r)
	}
	if r := recs[len(wantStart)]; r.Target != "192.0.2.1/32" {
		t.Errorf("map_add target %q", r.Target)
	}

	// A restart adopts the pinned maps: no pin record, and the chain goes on.
	n.Close()
	n2 := startNode(t, cfg)
	n2.Close()
	recs = auditRecords(t, cfg.AuditDir())
	tail := opsOf(recs[len(wantStart)+len(wantOps):])
	if !slices.Equal(tail, []string{"node.stop:ok", "node.start:ok", "ebpf.verify:ok", "ebpf.rlimit:ok", "ebpf.load:ok", "node.stop:ok"}) {
		t.Errorf("restart records: %v", tail)
	}
}

// TestAuditFailsClosed fills the file system under the audit log: every
// control operation must then fail with a clear error and change nothing,
// and work again once there is room.
func TestAuditFailsClosed(t *testing.T) {
	cfg := testConfig(t)
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=256k"); err != nil {
		t.Fatalf("mounting a small tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	cfg.Audit.Dir = filepath.Join(dir, "audit")
	n := startNode(t, cfg)
	if _, err := n.Add(AddRequest{List: store.Blocklist, Targets: prefixes(t, "192.0.2.1")}); err != nil {
		t.Fatal(err)
	}
	deployHello(t, n)
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Close()

	// The log file's last page may still have room for a few records:
	// add until the disk refuses one.
	listed := 1
	for i := 2; ; i++ {
		_, err := n.Add(AddRequest{List: store.Blocklist, Targets: prefixes(t, fmt.Sprintf("192.0.2.%d", i))})
		if err != nil {
			if !strings.Contains(err.Error(), "audit log") {
				t.Fatalf("add with a full audit disk = %v, want an audit error", err)
			}
			break
		}
		listed++
		if i == 200 {
			t.Fatal("200 adds fitted on a full disk")
		}
	}
	assertConsistent(t, n, store.Blocklist, listed)
	if _, err := n.Remove(store.Blocklist, prefixes(t, "192.0.2.1"), Actor{}); err == nil {
		t.Fatal("remove succeeded with a full audit disk")
	}
	if _, err := n.SetSettings(func(s *shield.Settings) { s.Mode = shield.ModeMonitor }, Actor{}); err == nil {
		t.Fatal("mode change succeeded with a full audit disk")
	}
	assertConsistent(t, n, store.Blocklist, listed)
	if n.shield.Settings().Mode != shield.ModeEnforce {
		t.Fatal("mode changed without an audit record")
	}
	// Function changes take the same path: refused, and version 1 serves.
	if _, err := n.Functions().Deploy(context.Background(), "hello", helloModule(t), functions.Spec{Route: "/hello2"}, ""); err == nil || !strings.Contains(err.Error(), "audit log") {
		t.Fatalf("deploy with a full audit disk = %v, want an audit error", err)
	}
	if _, err := n.Functions().Remove("hello", ""); err == nil {
		t.Fatal("function remove succeeded with a full audit disk")
	}
	if fns := n.Functions().List(); len(fns) != 1 || fns[0].Version != 1 || fns[0].Route != "/hello" {
		t.Fatalf("function changes without an audit record: %+v", fns)
	}
	if stored, err := n.store.Functions(); err != nil || len(stored) != 1 || stored[0].Version != 1 {
		t.Fatalf("stored functions after refused changes: %+v, %v", stored, err)
	}

	os.Remove(filler)
	if _, err := n.Add(AddRequest{List: store.Blocklist, Targets: prefixes(t, "198.51.100.1")}); err != nil {
		t.Fatalf("add after freeing space: %v", err)
	}
	assertConsistent(t, n, store.Blocklist, listed+1)
	if _, err := audit.VerifyDir(cfg.Audit.Dir); err != nil {
		t.Fatalf("audit log after the full disk: %v", err)
	}
}
