//go:build linux

package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/admin"
	"github.com/aegis-edge/aegis/internal/fleet/change"
	"github.com/aegis-edge/aegis/internal/fleet/fleettest"
	"github.com/aegis-edge/aegis/internal/fleet/hub"
	"github.com/aegis-edge/aegis/internal/lists"
	"github.com/aegis-edge/aegis/internal/shield"
	"github.com/aegis-edge/aegis/internal/store"
	"github.com/aegis-edge/aegis/internal/testutil"
)

// TestEdgeKilledDuringAStream SIGKILLs an edge at random points while the
// hub takes a stream of adds and removals, and restarts it each time.
// Once the stream ends and the edge has caught up: its store holds exactly
// the hub's live entries, list by list, its kernel maps exactly the
// store's, the follower's own record of what it applied names exactly the
// entries it holds, and its audit log verifies. The stream mixes single
// records with batch-signed imports over both lists (applied in one store
// transaction per list, the cursor in the last) and rate changes, so a
// kill can land between the transactions of one batch.
func TestEdgeKilledDuringAStream(t *testing.T) {
	ctx := context.Background()
	h := fleettest.NewHub(t)
	pub := h.Pub
	key := fleettest.NewKey(t)
	sk := key.Private
	cfg := testNodeConfig(t)
	cfg.Fleet.Servers = []string{h.URL()}
	cfg.Fleet.TrustedKeys = []string{key.PubFile}
	cfg.Fleet.Name = "edge-k"
	cfgPath := writeConfig(t, cfg)
	sock := cfg.Admin.Socket

	// The stream: puts of new /24s, every fourth change a removal of an
	// earlier one, until stopped.
	streamCtx, stopStream := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var published int
	wg.Go(func() {
		for i := 0; streamCtx.Err() == nil; i++ {
			c := change.Change{Kind: change.KindList, Op: change.OpPut, List: change.Blocklist,
				Prefix: netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", i/256, i%256))}
			if i%4 == 3 {
				c.Prefix = netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", (i-2)/256, (i-2)%256))
				c.Op = change.OpDelete
			}
			envs := []change.Envelope{}
			env, err := change.Sign(c, sk)
			envs = append(envs, env)
			switch {
			case err != nil:
			case i%16 == 5: // an import over both lists, one signature
				var batch []change.Change
				for j := range 3 {
					for _, l := range []change.List{change.Blocklist, change.Allowlist} {
						octet := 16
						if l == change.Allowlist {
							octet = 17
						}
						batch = append(batch, change.Change{Kind: change.KindList, Op: change.OpPut, List: l,
							Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{172, byte(octet), byte(i / 16), byte(j)}), 32)})
					}
				}
				var more []change.Envelope
				more, err = change.SignImport(batch, sk)
				envs = append(envs, more...)
			case i%50 == 7:
				var rate change.Envelope
				rate, err = change.Sign(change.Change{Kind: change.KindRate, Op: change.OpPut,
					Rate: &change.Rate{Class: "udp", PPS: uint32(1000 + i), Burst: 2000}}, sk)
				envs = append(envs, rate)
			}
			for _, env := range envs {
				if err == nil {
					_, err = pub.Publish(streamCtx, env)
				}
			}
			if err != nil && streamCtx.Err() == nil {
				t.Errorf("publishing: %v", err)
				return
			}
			published = i + 1
			time.Sleep(time.Millisecond)
		}
	})

	for round := range 4 {
		d := startHostDaemon(t, cfgPath, sock)
		n, _ := rand.Int(rand.Reader, big.NewInt(400))
		time.Sleep(time.Duration(50+n.Int64()) * time.Millisecond)
		d.kill()
		t.Logf("round %d: edge killed %dms after it answered", round, 50+n.Int64())
	}
	stopStream()
	wg.Wait()

	d := startHostDaemon(t, cfgPath, sock)
	stream, err := h.JS.Stream(ctx, hub.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ac := admin.NewClient(sock)
	testutil.WaitFor(t, "the edge to catch up with the hub", func() bool {
		st, err := ac.FleetStatus(ctx)
		return err == nil && st.CaughtUp && st.Cursor.Seq >= info.State.LastSeq
	})

	// The hub's live entries, by list, against the edge's store.
	hubLive := map[lists.List][]string{}
	var hubKeys []string
	keys, err := h.KV.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for k := range keys.Keys() {
		e, err := h.KV.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		c, ok := change.Peek(e.Value())
		if !ok {
			t.Fatalf("record %s does not decode", k)
		}
		if c.Op != change.OpPut {
			continue
		}
		hubKeys = append(hubKeys, k)
		if c.Kind == change.KindList {
			l := lists.Blocklist
			if c.List == change.Allowlist {
				l = lists.Allowlist
			}
			hubLive[l] = append(hubLive[l], c.Prefix.String())
		}
	}
	var edge []string
	for _, e := range listJSON(t, sock).Entries {
		if e.Origin != store.OriginFleet {
			t.Errorf("entry %s has origin %q", e.Prefix, e.Origin)
		}
		edge = append(edge, e.Prefix.String())
	}
	slices.Sort(edge)
	slices.Sort(hubLive[lists.Blocklist])
	if !slices.Equal(edge, hubLive[lists.Blocklist]) {
		t.Fatalf("after %d changes and 4 kills the edge holds %d entries, the hub %d live", published, len(edge), len(hubLive[lists.Blocklist]))
	}
	if len(hubLive[lists.Allowlist]) == 0 {
		t.Error("the stream published no import: the test did not cover batches")
	}
	if err := d.signal(syscall.SIGTERM); err != nil {
		t.Logf("node exit: %v", err)
	}

	// Each list's kernel map against the store, read from the pins and
	// the file, and the follower's record against both.
	st, err := store.Open(cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	live, err := st.Fleet().Live()
	if err != nil {
		t.Fatal(err)
	}
	sh, err := shield.Load(shield.Options{PinPath: cfg.Shield.PinPath})
	if err != nil {
		t.Fatal(err)
	}
	defer sh.Close()
	total := 0
	for _, l := range []lists.List{lists.Blocklist, lists.Allowlist} {
		stored, err := st.List(l)
		if err != nil {
			t.Fatal(err)
		}
		rules, err := sh.Rules(shield.List(l))
		if err != nil {
			t.Fatal(err)
		}
		var kernel, fromStore []string
		for _, r := range rules {
			kernel = append(kernel, r.Prefix.String())
		}
		for _, e := range stored {
			fromStore = append(fromStore, e.Prefix.String())
		}
		slices.Sort(kernel)
		slices.Sort(fromStore)
		slices.Sort(hubLive[l])
		if !slices.Equal(kernel, fromStore) || !slices.Equal(fromStore, hubLive[l]) {
			t.Fatalf("%s: kernel %d entries, store %d, hub %d", l, len(kernel), len(fromStore), len(hubLive[l]))
		}
		total += len(fromStore)
	}
	var liveKeys []string
	for k := range live {
		liveKeys = append(liveKeys, k)
	}
	slices.Sort(liveKeys)
	slices.Sort(hubKeys)
	if !slices.Equal(liveKeys, hubKeys) {
		t.Fatalf("the follower records %d keys as applied puts, the hub holds %d", len(liveKeys), len(hubKeys))
	}
	if code, out, stderr := cli("audit", "verify", "--dir", cfg.AuditDir(), "--anchor", cfg.AuditAnchor()); code != 0 {
		t.Fatalf("audit verify after the kills: exit %d\n%s%s", code, out, stderr)
	}
	t.Logf("%d changes published across 4 kills; hub, store and kernel agree on %d entries", published, total)
}

// startHostDaemon execs this test binary as `aegis node` in the test's own
// network namespace (the fleet hub listens on its loopback).
func startHostDaemon(t *testing.T, cfgPath, sock string) *daemon {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return startDaemonCmd(t, exec.Command(self, "node", "--config", cfgPath), sock)
}
