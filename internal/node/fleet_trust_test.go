//go:build linux

package node

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	fleetchange "github.com/aegis-edge/aegis/internal/fleet/change"
	"github.com/aegis-edge/aegis/internal/fleet/fleettest"
	"github.com/aegis-edge/aegis/internal/store"
	"github.com/aegis-edge/aegis/internal/testutil"
)

// TestControllerMayNotReplaceALocalEntry: the controller key adds blocks.
// Its records over this node's own live entries are refused (role): one
// already expired would otherwise have been swept away with the local,
// permanent block it replaced; a later one would have shortened it. A
// local entry that has expired is the controller's to replace.
func TestControllerMayNotReplaceALocalEntry(t *testing.T) {
	cfg := testConfig(t)
	fx := newFleetFixture(t, &cfg)
	ctl := fleettest.NewKey(t)
	cfg.Fleet.ControllerKey = ctl.PubFile
	n := runNode(t, cfg)
	permanent := netip.MustParsePrefix("198.51.100.7/32")
	if _, err := n.Add(AddRequest{List: store.Blocklist, Targets: []netip.Prefix{permanent}, Reason: "local, permanent"}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	expired := fleetBlock(permanent.String(), 0)
	expired.IssuedAt, expired.ExpiresAt = now.Add(-2*time.Minute).UnixNano(), now.Add(-time.Minute).UnixNano()
	fx.publish(expired, ctl.Private)
	shorter := fleetBlock(permanent.String(), time.Minute)
	shorter.IssuedAt = now.Add(time.Second).UnixNano()
	fx.publish(shorter, ctl.Private)
	testutil.WaitFor(t, "the controller's records refused", func() bool {
		return metricValue(t, scrape(t, n), `aegis_fleet_rejected_total{reason="role"}`) == 1
	})
	if _, err := n.Sweep(time.Now()); err != nil {
		t.Fatal(err)
	}
	e, ok, err := n.store.Get(store.Key{List: store.Blocklist, Prefix: permanent})
	if err != nil || !ok || e.Origin == store.OriginFleet || !e.Expires.IsZero() {
		t.Fatalf("the local permanent block after the controller's records: %+v, %v, %v", e, ok, err)
	}

	// A local block that has run out is not the node's any more.
	brief := netip.MustParsePrefix("198.51.100.8/32")
	if _, err := n.Add(AddRequest{List: store.Blocklist, Targets: []netip.Prefix{brief}, TTL: time.Second}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	fx.publish(fleetBlock(brief.String(), time.Minute), ctl.Private)
	testutil.WaitFor(t, "the controller's block over an expired local one", func() bool {
		e, ok, _ := n.store.Get(store.Key{List: store.Blocklist, Prefix: brief})
		return ok && e.Origin == store.OriginFleet
	})
}

// TestReloadReachesTheFleet: a management address added by SIGHUP is one
// the fleet may not block from then on, and a changed fleet section (a key
// revoked) is refused with the need to restart rather than reported as
// applied while the follower still trusts the key.
func TestReloadReachesTheFleet(t *testing.T) {
	cfg := testConfig(t)
	fx := newFleetFixture(t, &cfg)
	n := runNode(t, cfg)
	next := cfg
	next.Admin.ManagementAddrs = append(append([]string(nil), cfg.Admin.ManagementAddrs...), "203.0.113.7")
	if err := n.Reload(next); err != nil {
		t.Fatal(err)
	}
	fx.publish(fleetBlock("203.0.113.0/24", time.Hour), nil)
	testutil.WaitFor(t, "the block over the new management address refused", func() bool {
		st, _ := n.FleetStatus()
		return st.Refused[fleetchange.ReasonManagement] == 1
	})
	if _, ok, _ := n.store.Get(store.Key{List: store.Blocklist, Prefix: netip.MustParsePrefix("203.0.113.0/24")}); ok {
		t.Fatal("a fleet block over a management address added by SIGHUP was applied")
	}

	revoked := next
	revoked.Fleet.TrustedKeys = []string{fleettest.NewKey(t).PubFile}
	if err := n.Reload(revoked); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "fleet") {
		t.Fatalf("reload revoking the fleet key = %v, want refused naming fleet", err)
	}
}
