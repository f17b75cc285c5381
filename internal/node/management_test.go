package node

import (
	"encoding/json"
	"testing"

	"github.com/aegis-edge/aegis/internal/config"
	"github.com/aegis-edge/aegis/internal/netlab"
	"github.com/aegis-edge/aegis/internal/shield"
	"github.com/cilium/ebpf"
)

// flood runs n copies of a frame through the node's data path.
func flood(t *testing.T, n *Node, frame []byte, count int) {
	t.Helper()
	for range count {
		if _, err := n.shield.Program().Run(&ebpf.RunOptions{Data: frame}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestManagementAddrsNeverAutoBlocked checks the node gives the shield its
// management addresses at start and on reload: a spoofed flood from one is
// rate limited but never blocks it automatically, for an IPv4 address and an
// IPv6 CIDR; once an address leaves the list the same flood blocks it, and
// putting it back lifts the block.
func TestManagementAddrsNeverAutoBlocked(t *testing.T) {
	cfg := testConfig(t)
	cfg.Admin.ManagementAddrs = []string{"192.0.2.40", "2001:db8:40::/48"}
	cfg.Shield.RateLimit.UDP = config.Bucket{PPS: 5, Burst: 5}
	cfg.Shield.RateLimit.AutoBlockFactor = 2
	n := startNode(t, cfg)

	from4 := netlab.UDP4("192.0.2.40", "198.51.100.1").Bytes()
	from6 := netlab.UDP6("2001:db8:40:1::7", "2001:db8:ffff::1").Bytes()
	before, err := n.shield.Counters()
	if err != nil {
		t.Fatal(err)
	}
	flood(t, n, from4, 100)
	flood(t, n, from6, 100)
	after, err := n.shield.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if d := after.Verdicts[shield.ReasonRateUDP].Packets - before.Verdicts[shield.ReasonRateUDP].Packets; d != 190 {
		t.Errorf("rate_udp counted %d of the floods, want 190 (still rate limited)", d)
	}
	if blocks, err := n.shield.AutoBlocks(); err != nil || len(blocks) != 0 {
		t.Fatalf("management sources blocked automatically: %v %v", blocks, err)
	}

	next := n.Config()
	next.Admin.ManagementAddrs = []string{"2001:db8:40::/48"}
	if err := n.Reload(next); err != nil {
		t.Fatal(err)
	}
	flood(t, n, from4, 100)
	blocks, err := n.shield.AutoBlocks()
	if err != nil || len(blocks) != 1 || blocks[0].Source.String() != "192.0.2.40/32" {
		t.Fatalf("after leaving the management list: %v %v", blocks, err)
	}
	next.Admin.ManagementAddrs = []string{"192.0.2.0/24", "2001:db8:40::/48"}
	if err := n.Reload(next); err != nil {
		t.Fatal(err)
	}
	if blocks, err := n.shield.AutoBlocks(); err != nil || len(blocks) != 0 {
		t.Fatalf("reload kept a block on a management source: %v %v", blocks, err)
	}
	if got := n.shield.Management(); len(got) != 2 {
		t.Errorf("shield management prefixes %v", got)
	}
}

// TestLongHeaderChainsSetting checks shield.long_header_chains reaches the
// data path at start and on reload, without reloading the program.
func TestLongHeaderChainsSetting(t *testing.T) {
	cfg := testConfig(t)
	cfg.Shield.LongHeaderChains = config.LongChainsCharge
	n := startNode(t, cfg)
	if got := n.shield.Settings().LongChains; got != shield.LongChainsCharge {
		t.Fatalf("long_header_chains at start: %q", got)
	}
	prog := n.shield.Program()
	next := n.Config()
	next.Shield.LongHeaderChains = config.LongChainsDrop
	if err := n.Reload(next); err != nil {
		t.Fatal(err)
	}
	if got := n.shield.Settings().LongChains; got != shield.LongChainsDrop {
		t.Errorf("long_header_chains after reload: %q", got)
	}
	if n.shield.Program() != prog {
		t.Error("the program was replaced")
	}
}

// TestSettingsSavedBeforeLongChains starts a node whose state store holds
// runtime settings saved before long_header_chains existed: they still
// apply, and the new setting comes from the configuration.
func TestSettingsSavedBeforeLongChains(t *testing.T) {
	cfg := testConfig(t)
	cfg.Shield.LongHeaderChains = config.LongChainsCharge
	n := startNode(t, cfg)
	if _, err := n.SetSettings(func(s *shield.Settings) { s.Mode = shield.ModeMonitor }, Actor{}); err != nil {
		t.Fatal(err)
	}
	raw, ok, err := n.store.Setting(settingsKey)
	if err != nil || !ok {
		t.Fatalf("saved settings: %v %v", ok, err)
	}
	var saved map[string]any
	if err := json.Unmarshal(raw, &saved); err != nil {
		t.Fatal(err)
	}
	delete(saved, "long_header_chains")
	if raw, err = json.Marshal(saved); err != nil {
		t.Fatal(err)
	}
	if err := n.store.PutSetting(settingsKey, raw); err != nil {
		t.Fatal(err)
	}
	n.Close()

	n = startNode(t, cfg)
	st := n.shield.Settings()
	if st.Mode != shield.ModeMonitor || st.LongChains != shield.LongChainsCharge {
		t.Errorf("after restart: mode %s, long_header_chains %q; want the saved monitor and the config's charge", st.Mode, st.LongChains)
	}
}
