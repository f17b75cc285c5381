//go:build linux

package node

import (
	"errors"
	"strings"
	"testing"

	"github.com/aegis-edge/aegis/internal/config"
	"github.com/aegis-edge/aegis/internal/shield"
	"github.com/aegis-edge/aegis/internal/store"
	"github.com/aegis-edge/aegis/internal/testutil"
)

func TestReload(t *testing.T) {
	cfg := testConfig(t)
	n := startNode(t, cfg)
	if _, err := n.Add(AddRequest{List: store.Blocklist, Targets: prefixes(t, "192.0.2.1", "192.0.2.2")}); err != nil {
		t.Fatal(err)
	}

	refused := []struct {
		name   string
		change func(c *config.Config)
		want   string
	}{
		{"state dir", func(c *config.Config) { c.StateDir = "/elsewhere" }, "state_dir changed: restart"},
		{"gateway listen", func(c *config.Config) { c.Gateway.Listen = "127.0.0.1:1" }, "gateway.listen changed: restart"},
		{"limit below the entries", func(c *config.Config) { c.Shield.Limits.IPv4 = 1 }, "shield.limits.ipv4: 1 is below the 2"},
		{"missing interface", func(c *config.Config) { c.Shield.Interfaces = []string{"nope0"} }, "shield.interfaces: nope0"},
		{"invalid", func(c *config.Config) { c.Shield.Mode = "chaos" }, "shield.mode"},
	}
	for _, tt := range refused {
		next := n.Config()
		tt.change(&next)
		next.Shield.RateLimit.UDP.PPS = 7 // would change too, if anything did
		err := n.Reload(next)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Reload = %v, want %q", tt.name, err, tt.want)
		}
		if n.shield.Settings().UDP.PPS == 7 {
			t.Fatalf("%s: a refused reload changed the rate limits", tt.name)
		}
	}

	v := testutil.NewVethPair(t)
	next := n.Config()
	next.Shield.Mode = "monitor"
	next.Shield.RateLimit.UDP.PPS, next.Shield.RateLimit.UDP.Burst = 7, 14
	next.Shield.Interfaces = []string{v.IfB}
	next.Admin.ManagementAddrs = []string{"198.51.100.0/24"}
	if err := v.B.Do(t, func() error { return n.Reload(next) }); err != nil {
		t.Fatal(err)
	}
	st := n.shield.Settings()
	if st.Mode != shield.ModeMonitor || st.UDP.PPS != 7 || st.UDP.Burst != 14 {
		t.Errorf("settings after reload: %+v", st)
	}
	if _, ok := n.attached[v.IfB]; !ok {
		t.Errorf("%s not attached after reload", v.IfB)
	}
	if _, err := n.Add(AddRequest{List: store.Blocklist, Targets: prefixes(t, "198.51.100.7")}); !errors.Is(err, ErrRefused) {
		t.Errorf("new management address not guarded: %v", err)
	}
	// Removing the interface from the file detaches it.
	next.Shield.Interfaces = nil
	if err := v.B.Do(t, func() error { return n.Reload(next) }); err != nil {
		t.Fatal(err)
	}
	if len(n.attached) != 0 {
		t.Errorf("still attached after removal from the config: %v", n.attached)
	}
	// The reloaded settings are what a restarted node starts with.
	n.Close()
	n2 := startNode(t, cfg)
	if st := n2.shield.Settings(); st.Mode != shield.ModeMonitor || st.UDP.PPS != 7 {
		t.Errorf("restarted node settings %+v", st)
	}
}
