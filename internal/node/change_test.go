//go:build linux

package node

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/audit"
	"github.com/aegis-edge/aegis/internal/config"
	"github.com/aegis-edge/aegis/internal/functions"
	"github.com/aegis-edge/aegis/internal/lists"
	"github.com/aegis-edge/aegis/internal/shield"
	"github.com/aegis-edge/aegis/internal/store"
	"github.com/aegis-edge/aegis/internal/wasm"
)

// failKernel makes the node's kernel syncs fail until the returned func is
// called.
func failKernel(n *Node) (restore func()) {
	syncList, syncSettings := n.syncList, n.syncSettings
	n.syncList = func(lists.List, shield.ListChange) error { return errors.New("injected kernel failure") }
	n.syncSettings = func(shield.Settings) error { return errors.New("injected kernel failure") }
	return func() { n.syncList, n.syncSettings = syncList, syncSettings }
}

// TestFailedSyncIsRepairedBySweep fails the kernel under an add and a
// remove: each request still succeeds (the store keeps the change and the
// audit log says ok), the list is marked dirty, and the next sweep makes
// the kernel hold the store's entries again.
func TestFailedSyncIsRepairedBySweep(t *testing.T) {
	cfg := testConfig(t)
	n := startNode(t, cfg)
	if _, err := n.Add(AddRequest{List: store.Blocklist, Targets: prefixes(t, "192.0.2.1")}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		change func() error
		stored []string
	}{
		{"add", func() error {
			_, err := n.Add(AddRequest{List: store.Blocklist, Targets: prefixes(t, "192.0.2.2", "2001:db8::/32")})
			return err
		}, []string{"192.0.2.1/32", "192.0.2.2/32", "2001:db8::/32"}},
		{"remove", func() error {
			_, err := n.Remove(store.Blocklist, prefixes(t, "192.0.2.1", "2001:db8::/32"), Actor{})
			return err
		}, []string{"192.0.2.2/32"}},
	} {
		before, _ := snapshot(t, n, store.Blocklist)
		restore := failKernel(n)
		if err := tc.change(); err != nil {
			t.Fatalf("%s with a failing kernel: %v, want success (stored, repaired later)", tc.name, err)
		}
		stored, kernel := snapshot(t, n, store.Blocklist)
		if !slices.Equal(stored, tc.stored) || !slices.Equal(kernel, before) {
			t.Fatalf("%s: store %v (want %v), kernel %v (want unchanged %v)", tc.name, stored, tc.stored, kernel, before)
		}
		st, err := n.Status()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(st.Dirty, []string{"block"}) {
			t.Errorf("%s: status dirty %v, want [block]", tc.name, st.Dirty)
		}
		recs := auditRecords(t, cfg.AuditDir())
		if last := recs[len(recs)-1]; last.Op != audit.OpMapBulk || last.Result != audit.ResultOK {
			t.Errorf("%s: last record %s:%s, want the change ok", tc.name, last.Op, last.Result)
		}
		// A sweep while the kernel still fails keeps the list dirty.
		if _, err := n.Sweep(time.Now()); err != nil {
			t.Fatal(err)
		}
		if got := n.dirtyCopies(); !slices.Equal(got, []string{"block"}) {
			t.Errorf("%s: dirty after a failed repair: %v", tc.name, got)
		}
		restore()
		if _, err := n.Sweep(time.Now()); err != nil {
			t.Fatal(err)
		}
		assertConsistent(t, n, store.Blocklist, len(tc.stored))
		if st, _ := n.Status(); len(st.Dirty) != 0 {
			t.Errorf("%s: still dirty after the repair: %v", tc.name, st.Dirty)
		}
	}
}

// TestFailedSettingsSyncIsRepairedBySweep is the same for the shield
// settings.
func TestFailedSettingsSyncIsRepairedBySweep(t *testing.T) {
	n := startNode(t, testConfig(t))
	restore := failKernel(n)
	if _, err := n.SetSettings(func(s *shield.Settings) { s.Mode = shield.ModeMonitor }, Actor{}); err != nil {
		t.Fatalf("settings change with a failing kernel: %v", err)
	}
	if st, _ := n.Status(); !slices.Equal(st.Dirty, []string{"settings"}) || st.Settings.Mode != shield.ModeEnforce {
		t.Errorf("status after a failed write: dirty %v, kernel mode %s", st.Dirty, st.Settings.Mode)
	}
	restore()
	if _, err := n.Sweep(time.Now()); err != nil {
		t.Fatal(err)
	}
	if st, _ := n.Status(); len(st.Dirty) != 0 || st.Settings.Mode != shield.ModeMonitor {
		t.Errorf("status after the repair: dirty %v, kernel mode %s", st.Dirty, st.Settings.Mode)
	}
}

// TestInvalidReasonWritesNoRecord checks a request that fails validation
// is refused before the audit log: no ok record is followed by a failed one.
func TestInvalidReasonWritesNoRecord(t *testing.T) {
	cfg := testConfig(t)
	n := startNode(t, cfg)
	before := len(auditRecords(t, cfg.AuditDir()))
	for _, reason := range []string{"a\x1b[2Jb", strings.Repeat("x", lists.MaxReasonLen+1), "\xff"} {
		if _, err := n.Add(AddRequest{List: store.Blocklist, Targets: prefixes(t, "192.0.2.2"), Reason: reason}); !errors.Is(err, ErrInvalid) {
			t.Errorf("reason %q: %v, want ErrInvalid", reason, err)
		}
	}
	if recs := auditRecords(t, cfg.AuditDir()); len(recs) != before {
		t.Errorf("invalid requests wrote records: %v", opsOf(recs[before:]))
	}
}

// TestDefaultsAreThePackagesOwn checks the configuration's defaults are
// the defaults of the packages that use them.
func TestDefaultsAreThePackagesOwn(t *testing.T) {
	def := config.Default()
	if got, want := def.Shield.Settings(), shield.DefaultSettings(); got != want {
		t.Errorf("config's shield settings %+v, shield's %+v", got, want)
	}
	fc := def.Functions
	if got, want := functions.WasmLimits(fc.Defaults, fc.MaxModuleSize), wasm.DefaultLimits(); got != want {
		t.Errorf("config's function limits %+v, wasm's %+v", got, want)
	}
	for _, l := range []struct {
		name       string
		limit, max int
	}{{"ipv4", def.Shield.Limits.IPv4, lists.CeilingV4}, {"ipv6", def.Shield.Limits.IPv6, lists.CeilingV6}} {
		if l.limit < 1 || l.limit > l.max {
			t.Errorf("default %s limit %d is beyond the map's ceiling %d", l.name, l.limit, l.max)
		}
	}
	if err := def.Validate(); err != nil {
		t.Errorf("the defaults do not validate: %v", err)
	}
}
