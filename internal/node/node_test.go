package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/config"
	"github.com/aegis-edge/aegis/internal/lists"
	"github.com/aegis-edge/aegis/internal/netlab"
	"github.com/aegis-edge/aegis/internal/shield"
	"github.com/aegis-edge/aegis/internal/store"
	"github.com/aegis-edge/aegis/internal/testutil"
	"github.com/cilium/ebpf"
)

// testConfig is a node config with a private state dir and bpffs pin path.
func testConfig(t testing.TB) config.Config {
	t.Helper()
	testutil.RequireRoot(t)
	cfg := config.Default()
	cfg.StateDir = t.TempDir()
	cfg.Shield.PinPath = testutil.PinPath(t)
	cfg.Gateway.Listen = "127.0.0.1:0"
	return cfg
}

func startNode(t testing.TB, cfg config.Config) *Node {
	t.Helper()
	n, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("starting node: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func prefixes(t testing.TB, ss ...string) []netip.Prefix {
	t.Helper()
	ps, err := lists.ParseTargets(ss)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// snapshot is a list as the store and the kernel hold it.
func snapshot(t testing.TB, n *Node, l store.List) (stored, kernel []string) {
	t.Helper()
	entries, err := n.store.List(l)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		stored = append(stored, e.Prefix.String())
	}
	rules, err := n.shield.Rules(shield.List(l))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		kernel = append(kernel, r.Prefix.String())
	}
	slices.Sort(stored)
	slices.Sort(kernel)
	return stored, kernel
}

func assertConsistent(t testing.TB, n *Node, l store.List, want int) {
	t.Helper()
	stored, kernel := snapshot(t, n, l)
	if len(stored) != want || !slices.Equal(stored, kernel) {
		t.Fatalf("%s: store has %d entries, kernel %d, want %d in both and equal", l, len(stored), len(kernel), want)
	}
}

// seq returns count consecutive single-address prefixes from base.
func seq(base netip.Addr, count int) []netip.Prefix {
	out := make([]netip.Prefix, count)
	a := base
	for i := range out {
		out[i] = netip.PrefixFrom(a, a.BitLen())
		a = a.Next()
	}
	return out
}

func TestBlocklistLimitsAtDefaultCapacity(t *testing.T) {
	cfg := testConfig(t)
	n := startNode(t, cfg)

	v4 := seq(netip.MustParseAddr("10.0.0.0"), config.MaxBlocklistV4Entries-1)
	v4 = append(v4, netip.MustParsePrefix("172.16.0.0/12")) // prefixes count with exact entries
	if _, err := n.Add(AddRequest{List: store.Blocklist, Targets: v4}); err != nil {
		t.Fatalf("filling the IPv4 blocklist: %v", err)
	}
	v6 := seq(netip.MustParseAddr("2001:db8::"), config.MaxBlocklistV6Entries-1)
	v6 = append(v6, netip.MustParsePrefix("2001:db8:ffff::/48"))
	if _, err := n.Add(AddRequest{List: store.Blocklist, Targets: v6}); err != nil {
		t.Fatalf("filling the IPv6 blocklist: %v", err)
	}
	total := config.MaxBlocklistV4Entries + config.MaxBlocklistV6Entries
	assertConsistent(t, n, store.Blocklist, total)

	for _, tc := range []struct {
		target, want string
	}{
		{"192.0.2.1", "IPv4 blocklist full (100000 entries)"},
		{"192.0.2.0/24", "IPv4 blocklist full (100000 entries)"},
		{"2001:db8:1::1", "IPv6 blocklist full (50000 entries)"},
	} {
		_, err := n.Add(AddRequest{List: store.Blocklist, Targets: prefixes(t, tc.target)})
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("adding %s to a full list: got %v, want %q", tc.target, err, tc.want)
		}
	}
	assertConsistent(t, n, store.Blocklist, total)

	// Re-adding an entry that is already listed does not need room.
	if _, err := n.Add(AddRequest{List: store.Blocklist, Targets: v4[:1], Reason: "refresh"}); err != nil {
		t.Errorf("updating a listed entry of a full list: %v", err)
	}
	// Removing one makes room for exactly one.
	if _, err := n.Remove(store.Blocklist, v4[:1], Actor{}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Add(AddRequest{List: store.Blocklist, Targets: prefixes(t, "192.0.2.1")}); err != nil {
		t.Errorf("adding after a removal: %v", err)
	}
}

func TestBulkAddOverflowRefusedWhole(t *testing.T) {
	cfg := testConfig(t)
	cfg.Shield.Limits.IPv4 = 10
	n := startNode(t, cfg)
	if _, err := n.Add(AddRequest{List: store.Blocklist, Targets: seq(netip.MustParseAddr("192.0.2.0"), 8)}); err != nil {
		t.Fatal(err)
	}
	_, err := n.Add(AddRequest{List: store.Blocklist, Targets: seq(netip.MustParseAddr("198.51.100.0"), 3)})
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "IPv4 blocklist full (10 entries)") {
		t.Fatalf("overflowing bulk add: %v", err)
	}
	assertConsistent(t, n, store.Blocklist, 8)
}

func TestLockoutGuard(t *testing.T) {
	cfg := testConfig(t)
	cfg.Admin.ManagementAddrs = []string{"198.51.100.7"}
	n := startNode(t, cfg)
	if _, err := n.Add(AddRequest{List: store.Allowlist, Targets: prefixes(t, "192.0.2.77")}); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"192.0.2.0/24", "198.51.100.0/24", "0.0.0.0/0", "198.51.100.7"} {
		_, err := n.Add(AddRequest{List: store.Blocklist, Targets: prefixes(t, "203.0.113.1", target)})
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "--force") {
			t.Errorf("blocking %s: got %v, want a lockout refusal", target, err)
		}
	}
	assertConsistent(t, n, store.Blocklist, 0)
	if _, err := n.Add(AddRequest{List: store.Blocklist, Targets: prefixes(t, "192.0.2.0/24"), Force: true}); err != nil {
		t.Errorf("forced block: %v", err)
	}
	assertConsistent(t, n, store.Blocklist, 1)
}

func TestBadInputChangesNothing(t *testing.T) {
	n := startNode(t, testConfig(t))
	if _, err := n.Add(AddRequest{List: store.Blocklist, Targets: prefixes(t, "192.0.2.1")}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		req  AddRequest
	}{
		{"negative ttl", AddRequest{List: store.Blocklist, Targets: prefixes(t, "192.0.2.2"), TTL: -time.Minute}},
		{"absurd ttl", AddRequest{List: store.Blocklist, Targets: prefixes(t, "192.0.2.2"), TTL: 100 * 365 * 24 * time.Hour}},
		{"sub-second ttl", AddRequest{List: store.Blocklist, Targets: prefixes(t, "192.0.2.2"), TTL: time.Millisecond}},
		{"control characters in reason", AddRequest{List: store.Blocklist, Targets: prefixes(t, "192.0.2.2"), Reason: "a\x1b[2Jb"}},
		{"oversized reason", AddRequest{List: store.Blocklist, Targets: prefixes(t, "192.0.2.2"), Reason: strings.Repeat("x", 1000)}},
		{"unknown list", AddRequest{List: "deny", Targets: prefixes(t, "192.0.2.2")}},
		{"no targets", AddRequest{List: store.Blocklist}},
	} {
		if _, err := n.Add(tc.req); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", tc.name, err)
		}
	}
	for _, bad := range []string{"", "192.0.2.300", "192.0.2.1/33", "10.0.0.1/8", "fe80::1%eth0", "::ffff:1.2.3.4/64", "example.com", "1.2.3.4/-1"} {
		if _, err := lists.ParseTarget(bad); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), fmt.Sprintf("%q", bad)) && bad != "" {
			t.Errorf("ParseTarget(%q) = %v, want ErrInvalid naming it", bad, err)
		}
	}
	if _, err := n.Remove(store.Blocklist, prefixes(t, "192.0.2.1", "192.0.2.99"), Actor{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("removing an unlisted target: %v", err)
	}
	assertConsistent(t, n, store.Blocklist, 1)
}

func TestReconcileRepairsKernelMaps(t *testing.T) {
	n := startNode(t, testConfig(t))
	if _, err := n.Add(AddRequest{List: store.Blocklist, Targets: prefixes(t, "192.0.2.1", "2001:db8::/32")}); err != nil {
		t.Fatal(err)
	}
	// Drift: an entry lost from the kernel and one the store never had.
	if err := n.shield.DeleteRules(shield.Blocklist, prefixes(t, "192.0.2.1")); err != nil {
		t.Fatal(err)
	}
	if err := n.shield.PutRules(shield.Blocklist, []shield.Rule{{Prefix: netip.MustParsePrefix("203.0.113.0/24"), RuleID: 999}}); err != nil {
		t.Fatal(err)
	}
	if err := n.Reconcile(); err != nil {
		t.Fatal(err)
	}
	assertConsistent(t, n, store.Blocklist, 2)
}

func TestSweepRemovesExpired(t *testing.T) {
	n := startNode(t, testConfig(t))
	if _, err := n.Add(AddRequest{List: store.Blocklist, Targets: prefixes(t, "192.0.2.1", "2001:db8::1"), TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Add(AddRequest{List: store.Blocklist, Targets: prefixes(t, "192.0.2.2")}); err != nil {
		t.Fatal(err)
	}
	if removed, err := n.Sweep(time.Now()); err != nil || removed != 0 {
		t.Fatalf("early sweep removed %d (%v)", removed, err)
	}
	if removed, err := n.Sweep(time.Now().Add(2 * time.Minute)); err != nil || removed != 2 {
		t.Fatalf("sweep removed %d (%v), want 2", removed, err)
	}
	assertConsistent(t, n, store.Blocklist, 1)
}

func TestRestartAdoptsPinnedState(t *testing.T) {
	cfg := testConfig(t)
	n, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Add(AddRequest{List: store.Blocklist, Targets: prefixes(t, "192.0.2.1", "2001:db8::/32")}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.SetSettings(func(s *shield.Settings) { s.Mode = shield.ModeMonitor }, Actor{}); err != nil {
		t.Fatal(err)
	}
	frame := make([]byte, 64) // not IP: counted as non_ip
	if _, err := n.shield.Program().Run(&ebpf.RunOptions{Data: frame}); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	n2 := startNode(t, cfg)
	if !n2.shield.Adopted {
		t.Error("restarted node did not adopt the pinned maps")
	}
	assertConsistent(t, n2, store.Blocklist, 2)
	if n2.shield.Settings().Mode != shield.ModeMonitor {
		t.Error("runtime mode change lost across restart")
	}
	st, err := n2.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Counters["non_ip"].Packets != 1 {
		t.Errorf("counters did not survive the restart: %+v", st.Counters["non_ip"])
	}
}

// TestAutoBlockEventReachesNode floods the program through BPF_PROG_TEST_RUN
// until it blocks the source by itself, and checks the ring-buffer event
// reaches the node's status and its log.
func TestAutoBlockEventReachesNode(t *testing.T) {
	cfg := testConfig(t)
	var logs strings.Builder
	var mu sync.Mutex
	n, err := New(cfg, slog.New(slog.NewJSONHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if _, err := n.SetSettings(func(s *shield.Settings) {
		s.UDP = shield.Bucket{PPS: 5, Burst: 5}
		s.AutoBlockFactor = 2
	}, Actor{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	defer func() { cancel(); <-done }()

	frame := netlab.UDP4("192.0.2.40", "198.51.100.1").Bytes()
	for range 20 {
		if _, err := n.shield.Program().Run(&ebpf.RunOptions{Data: frame}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(testutil.Scale(10 * time.Second))
	for {
		st, err := n.Status()
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Recent) > 0 {
			if ev := st.Recent[0]; ev.Source.String() != "192.0.2.40/32" || ev.Class != "udp" {
				t.Errorf("event %+v", ev)
			}
			if st.AutoBlocks != 1 {
				t.Errorf("status counts %d automatic blocks", st.AutoBlocks)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no automatic-block event reached the node (%s)", testutil.TimeScale())
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	logged := logs.String()
	mu.Unlock()
	if !strings.Contains(logged, `"msg":"source blocked automatically","source":"192.0.2.40/32"`) {
		t.Errorf("event not logged:\n%s", logged)
	}
	// The operator can lift it through the blocklist.
	entries, auto, err := n.List(store.Blocklist)
	if err != nil || len(entries) != 0 || len(auto) != 1 {
		t.Fatalf("list: %v %v %v", entries, auto, err)
	}
	if _, err := n.Remove(store.Blocklist, []netip.Prefix{auto[0].Source}, Actor{}); err != nil {
		t.Fatal(err)
	}
	if _, auto, _ := n.List(store.Blocklist); len(auto) != 0 {
		t.Errorf("automatic block not lifted: %v", auto)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
