//go:build linux

package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/admin"
	"github.com/aegis-edge/aegis/internal/fleet/change"
	"github.com/aegis-edge/aegis/internal/fleet/hub"
	"github.com/aegis-edge/aegis/internal/keyfile"
	"github.com/aegis-edge/aegis/internal/lists"
	"github.com/aegis-edge/aegis/internal/shield"
	"github.com/aegis-edge/aegis/internal/store"
	"github.com/aegis-edge/aegis/internal/testutil"
)

// TestEdgeKilledDuringAStream SIGKILLs an edge at random points while the
// hub takes a stream of adds and removals, and restarts it each time.
// Once the stream ends and the edge has caught up: its store holds exactly
// the hub's live entries, its kernel maps exactly the store's, and its
// audit log verifies.
func TestEdgeKilledDuringAStream(t *testing.T) {
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
	pk, sk, _ := ed25519.GenerateKey(rand.Reader)
	pem, _ := keyfile.MarshalPublicKey(pk)
	keyPath := filepath.Join(t.TempDir(), "ops.pub")
	if err := os.WriteFile(keyPath, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testNodeConfig(t)
	cfg.Fleet.Servers = []string{h.Server.ClientURL()}
	cfg.Fleet.TrustedKeys = []string{keyPath}
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
			env, err := change.Sign(c, sk)
			if err == nil {
				_, err = pub.Publish(streamCtx, env)
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

	// The hub's live entries against the edge's store.
	var hubLive []string
	keys, err := h.KV.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for k := range keys.Keys() {
		e, err := h.KV.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		env, err := change.Decode(e.Value())
		if err != nil {
			t.Fatal(err)
		}
		c, err := change.ParsePayload(env.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if c.Op == change.OpPut {
			hubLive = append(hubLive, c.Prefix.String())
		}
	}
	slices.Sort(hubLive)
	var edge []string
	for _, e := range listJSON(t, sock).Entries {
		if e.Origin != store.OriginFleet {
			t.Errorf("entry %s has origin %q", e.Prefix, e.Origin)
		}
		edge = append(edge, e.Prefix.String())
	}
	slices.Sort(edge)
	if !slices.Equal(edge, hubLive) {
		t.Fatalf("after %d changes and 4 kills the edge holds %d entries, the hub %d live", published, len(edge), len(hubLive))
	}
	if err := d.signal(syscall.SIGTERM); err != nil {
		t.Logf("node exit: %v", err)
	}

	// The kernel maps against the store, read from the pins and the file.
	st, err := store.Open(cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := st.List(lists.Blocklist)
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	sh, err := shield.Load(shield.Options{PinPath: cfg.Shield.PinPath})
	if err != nil {
		t.Fatal(err)
	}
	rules, err := sh.Rules(shield.List(lists.Blocklist))
	sh.Close()
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
	if !slices.Equal(kernel, fromStore) || !slices.Equal(fromStore, hubLive) {
		t.Fatalf("kernel %d entries, store %d, hub %d", len(kernel), len(fromStore), len(hubLive))
	}
	if code, out, stderr := cli("audit", "verify", "--dir", cfg.AuditDir(), "--anchor", cfg.AuditAnchor()); code != 0 {
		t.Fatalf("audit verify after the kills: exit %d\n%s%s", code, out, stderr)
	}
	t.Logf("%d changes published across 4 kills; hub, store and kernel agree on %d entries", published, len(hubLive))
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
