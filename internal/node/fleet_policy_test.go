//go:build linux

package node

import (
	"crypto/ed25519"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/config"
	"github.com/aegis-edge/aegis/internal/keyfile"
)

// TestFleetPolicy: every fleet setting the verifier enforces reaches it
// from the configuration (a default standing in for a dropped setting
// would pass every follower test, which build their policies by hand).
func TestFleetPolicy(t *testing.T) {
	dir := t.TempDir()
	op1, err := keyfile.GenerateFiles(filepath.Join(dir, "op1"))
	if err != nil {
		t.Fatal(err)
	}
	op2, err := keyfile.GenerateFiles(filepath.Join(dir, "op2"))
	if err != nil {
		t.Fatal(err)
	}
	ctl, err := keyfile.GenerateFiles(filepath.Join(dir, "ctl"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Fleet.TrustedKeys = []string{filepath.Join(dir, "op1.pub"), filepath.Join(dir, "op2.pub")}
	cfg.Fleet.ControllerKey = filepath.Join(dir, "ctl.pub")
	cfg.Fleet.MaxClockSkew = config.Duration{Duration: 7 * time.Second}
	cfg.Fleet.Broadest = config.FleetBroadest{BlockIPv4: 12, BlockIPv6: 29, AllowIPv4: 20, AllowIPv6: 44}
	cfg.Admin.ManagementAddrs = []string{"192.0.2.10", "2001:db8::/64"}

	p, err := FleetPolicy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p.Skew != 7*time.Second {
		t.Errorf("skew %v, want fleet.max_clock_skew's 7s", p.Skew)
	}
	if p.Broadest.BlockV4 != 12 || p.Broadest.BlockV6 != 29 || p.Broadest.AllowV4 != 20 || p.Broadest.AllowV6 != 44 {
		t.Errorf("broadest %+v, want fleet.broadest's 12, 29, 20, 44", p.Broadest)
	}
	if len(p.Operators) != 2 || !p.Operators[0].Equal(op1) || !p.Operators[1].Equal(op2) {
		t.Errorf("operators %d keys, want fleet.trusted_keys' two", len(p.Operators))
	}
	if !ed25519.PublicKey(p.Controller).Equal(ctl) {
		t.Error("controller key is not fleet.controller_key's")
	}
	want := []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32"), netip.MustParsePrefix("2001:db8::/64")}
	if !slices.Equal(p.Management, want) {
		t.Errorf("management %v, want admin.management_addrs' %v", p.Management, want)
	}

	// A key file that is not there is an error naming the setting.
	cfg.Fleet.TrustedKeys = append(cfg.Fleet.TrustedKeys, filepath.Join(dir, "nobody.pub"))
	if _, err := FleetPolicy(cfg); err == nil {
		t.Error("a missing trusted key file was accepted")
	}
}
