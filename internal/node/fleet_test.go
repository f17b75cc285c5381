//go:build linux

package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/config"
	fleetchange "github.com/aegis-edge/aegis/internal/fleet/change"
	"github.com/aegis-edge/aegis/internal/fleet/hub"
	"github.com/aegis-edge/aegis/internal/keyfile"
	"github.com/aegis-edge/aegis/internal/lists"
	"github.com/aegis-edge/aegis/internal/store"
)

// fleetFixture is an embedded hub, an operator key the edge trusts and a
// publisher.
type fleetFixture struct {
	t     *testing.T
	hub   *hub.Hub
	pub   *hub.Publisher
	key   ed25519.PrivateKey
	keyID string
}

func newFleetFixture(t *testing.T, cfg *config.Config) *fleetFixture {
	t.Helper()
	ctx := context.Background()
	h, err := hub.Open(ctx, hub.Options{StoreDir: t.TempDir(), Listen: "127.0.0.1:-1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	pub, err := hub.NewPublisher(ctx, h.Conn)
	if err != nil {
		t.Fatal(err)
	}
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := keyfile.MarshalPublicKey(pk)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ops.pub")
	if err := os.WriteFile(path, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Fleet.Servers = []string{h.Server.ClientURL()}
	cfg.Fleet.TrustedKeys = []string{path}
	cfg.Fleet.Name = "edge-a"
	return &fleetFixture{t: t, hub: h, pub: pub, key: sk, keyID: keyfile.KeyID(pk)}
}

// publish signs c with key (the operator's when nil) and publishes it.
func (fx *fleetFixture) publish(c fleetchange.Change, key ed25519.PrivateKey) {
	fx.t.Helper()
	if key == nil {
		key = fx.key
	}
	env, err := fleetchange.Sign(c, key)
	if err != nil {
		fx.t.Fatal(err)
	}
	if _, err := fx.pub.Publish(context.Background(), env); err != nil {
		fx.t.Fatal(err)
	}
}

func fleetBlock(prefix string, ttl time.Duration) fleetchange.Change {
	c := fleetchange.Change{Kind: fleetchange.KindList, Op: fleetchange.OpPut, List: fleetchange.Blocklist,
		Prefix: netip.MustParsePrefix(prefix), Reason: "fleet test"}
	if ttl > 0 {
		c.IssuedAt = time.Now().UnixNano()
		c.ExpiresAt = time.Now().Add(ttl).UnixNano()
	}
	return c
}

// eventually polls cond until it holds; the deadline is generous, the
// test asserts the outcome.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEdgeFollowsTheFleet runs a node that follows an embedded hub: a
// signed block reaches the store (origin fleet, absolute expiry) and the
// kernel map; a local change of that entry is refused while the local
// allowlist may still cover it; a record signed by an unknown key, and a
// block over a management address, are refused and counted; a signed rate
// changes the setting; a tombstone removes the entry from store and kernel.
func TestEdgeFollowsTheFleet(t *testing.T) {
	cfg := testConfig(t)
	cfg.Admin.ManagementAddrs = []string{"203.0.113.7"}
	fx := newFleetFixture(t, &cfg)
	n := runNode(t, cfg)
	if _, err := n.Add(AddRequest{List: store.Blocklist, Targets: prefixes(t, "192.0.2.1"), Reason: "local"}); err != nil {
		t.Fatal(err)
	}

	block := fleetBlock("198.51.100.0/24", time.Hour)
	fx.publish(block, nil)
	eventually(t, "the fleet block in store and kernel", func() bool {
		stored, kernel := snapshot(t, n, store.Blocklist)
		return slices.Contains(stored, "198.51.100.0/24") && slices.Equal(stored, kernel)
	})
	e, ok, err := n.store.Get(store.Key{List: store.Blocklist, Prefix: block.Prefix})
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if e.Origin != store.OriginFleet || e.Signer != fx.keyID || e.Expires.UnixNano() != block.ExpiresAt || e.Reason != "fleet test" {
		t.Errorf("stored fleet entry = %+v", e)
	}

	// The fleet owns it: local changes are refused, the allowlist is not.
	if _, err := n.Add(AddRequest{List: store.Blocklist, Targets: []netip.Prefix{block.Prefix}}); !errors.Is(err, ErrRefused) {
		t.Errorf("local add over a fleet entry = %v, want refused", err)
	}
	if _, err := n.Remove(store.Blocklist, []netip.Prefix{block.Prefix}, Actor{}); !errors.Is(err, ErrRefused) {
		t.Errorf("local rm of a fleet entry = %v, want refused", err)
	}
	if _, err := n.Add(AddRequest{List: store.Allowlist, Targets: prefixes(t, "198.51.100.9")}); err != nil {
		t.Errorf("local allow inside a fleet block: %v", err)
	}

	// Refusals: an unknown key, a management address, a too broad prefix.
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	fx.publish(fleetBlock("192.0.2.128/25", time.Hour), stranger)
	fx.publish(fleetBlock("203.0.113.0/24", time.Hour), nil)
	fx.publish(fleetBlock("10.0.0.0/7", time.Hour), nil)
	eventually(t, "three refusals counted", func() bool {
		text := scrape(t, n)
		return metricValue(t, text, `aegis_fleet_rejected_total{reason="unknown_key"}`) == 1 &&
			metricValue(t, text, `aegis_fleet_rejected_total{reason="management"}`) == 1 &&
			metricValue(t, text, `aegis_fleet_rejected_total{reason="too_broad"}`) == 1
	})
	stored, _ := snapshot(t, n, store.Blocklist)
	if want := []string{"192.0.2.1/32", "198.51.100.0/24"}; !slices.Equal(stored, want) {
		t.Errorf("blocklist after refusals = %v, want %v", stored, want)
	}

	// A signed rate.
	fx.publish(fleetchange.Change{Kind: fleetchange.KindRate, Op: fleetchange.OpPut,
		Rate: &fleetchange.Rate{Class: "udp", PPS: 7, Burst: 9}}, nil)
	eventually(t, "the fleet rate", func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.settings.UDP.PPS == 7 && n.settings.UDP.Burst == 9
	})

	// A tombstone removes the fleet's entry, never the local one.
	del := block
	del.Op, del.IssuedAt, del.ExpiresAt, del.Reason = fleetchange.OpDelete, 0, 0, ""
	fx.publish(del, nil)
	eventually(t, "the tombstone applied", func() bool {
		stored, kernel := snapshot(t, n, store.Blocklist)
		return slices.Equal(stored, []string{"192.0.2.1/32"}) && slices.Equal(stored, kernel)
	})
	st, err := n.FleetStatus()
	if err != nil || !st.Enabled || st.Edge != "edge-a" || st.Entries[lists.Blocklist] != 0 || st.Applied < 3 {
		t.Errorf("fleet status = %+v, %v", st, err)
	}
}

// TestEdgeEnforcesWhileTheHubIsAway: the store is the edge's offline copy.
// A node restarted with the hub gone starts, enforces the fleet's entries
// from its store and expires them on their absolute time.
func TestEdgeEnforcesWhileTheHubIsAway(t *testing.T) {
	cfg := testConfig(t)
	cfg.Shield.SweepInterval.Duration = time.Second
	fx := newFleetFixture(t, &cfg)
	n := runNode(t, cfg)
	fx.publish(fleetBlock("198.51.100.0/24", time.Hour), nil)
	fx.publish(fleetBlock("198.51.101.0/24", 3*time.Second), nil)
	eventually(t, "both fleet blocks", func() bool {
		stored, _ := snapshot(t, n, store.Blocklist)
		return len(stored) == 2
	})
	fx.hub.Close()
	n.Close()

	n2 := runNode(t, cfg)
	stored, kernel := snapshot(t, n2, store.Blocklist)
	if !slices.Equal(stored, kernel) || len(stored) == 0 || !slices.Contains(stored, "198.51.100.0/24") {
		t.Fatalf("after a restart without the hub: store %v, kernel %v", stored, kernel)
	}
	eventually(t, "the short fleet block to expire locally", func() bool {
		stored, kernel := snapshot(t, n2, store.Blocklist)
		return slices.Equal(stored, []string{"198.51.100.0/24"}) && slices.Equal(stored, kernel)
	})
}

// TestFleetFunctions: a function deployed through the hub serves on the
// edge; a later version the node refuses (not WebAssembly) is counted and
// leaves the previous version serving; its removal takes it down.
func TestFleetFunctions(t *testing.T) {
	cfg := testConfig(t)
	fx := newFleetFixture(t, &cfg)
	n := runNode(t, cfg)
	deploy := func(module []byte) {
		digest, err := fx.pub.PutModule(context.Background(), module)
		if err != nil {
			t.Fatal(err)
		}
		spec, _ := json.Marshal(map[string]string{"route": "/hello"})
		fx.publish(fleetchange.Change{Kind: fleetchange.KindFunction, Op: fleetchange.OpPut, Func: &fleetchange.Function{
			Name: "hello", Digest: digest, Size: int64(len(module)), Spec: spec}}, nil)
	}
	deploy(helloModule(t))
	eventually(t, "the fleet function serving", func() bool { return get(n, "/hello").Code == 200 })
	if info, err := n.Functions().Get("hello"); err != nil || info.Version != 1 {
		t.Fatalf("function after the fleet deploy: %+v %v", info, err)
	}

	deploy([]byte("\x00asm\x01\x00\x00\x00\x01")) // truncated section: the validator refuses it
	eventually(t, "the bad version refused", func() bool {
		return metricValue(t, scrape(t, n), `aegis_fleet_rejected_total{reason="invalid"}`) == 1
	})
	if info, _ := n.Functions().Get("hello"); info.Version != 1 || get(n, "/hello").Code != 200 {
		t.Errorf("a refused version changed what serves: %+v", info)
	}

	fx.publish(fleetchange.Change{Kind: fleetchange.KindFunction, Op: fleetchange.OpDelete,
		Func: &fleetchange.Function{Name: "hello"}}, nil)
	eventually(t, "the function removed", func() bool {
		_, err := n.Functions().Get("hello")
		return errors.Is(err, ErrNotFound)
	})
}
