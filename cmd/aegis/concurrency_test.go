//go:build linux

package main

import (
	"context"
	"errors"
	"maps"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/admin"
	"github.com/aegis-edge/aegis/internal/audit"
	"github.com/aegis-edge/aegis/internal/netlab"
	"github.com/aegis-edge/aegis/internal/testutil"
)

// TestConcurrentClientsMatchModel: 8 clients each make 1,000 mixed
// block/allow add/remove calls through the admin API while a UDP flood hits
// the protected interface. The final lists equal a model of the calls that
// succeeded, and the audit log verifies and holds exactly one record per
// accepted change.
func TestConcurrentClientsMatchModel(t *testing.T) {
	const clients, opsPerClient = 8, 1000
	cfg := testNodeConfig(t)
	v := testutil.NewVethPair(t)
	cfg.Shield.Interfaces = []string{v.IfB}
	cfgPath := writeConfig(t, cfg)
	sock := cfg.Admin.Socket
	startDaemon(t, v.B, cfgPath, sock)
	c := admin.NewClient(sock)
	ctx := context.Background()
	// The flood comes from a blocked source, so the data path drops it
	// while the lists churn.
	if _, err := c.Add(ctx, "block", admin.AddRequest{Targets: []string{v.IPv4A.String()}}); err != nil {
		t.Fatal(err)
	}
	auditBefore := auditOK(t, cfg.AuditDir())

	stop := make(chan struct{})
	var flood sync.WaitGroup
	var sent atomic.Int64
	send := testutil.RawSender(t, v.A, v.IndexA)
	flood.Go(func() {
		frame := netlab.UDP4(v.IPv4A.String(), v.IPv4B.String()).Bytes()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if send(frame) == nil {
				sent.Add(1)
			}
			if sent.Load()%64 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	})

	// Each client owns its addresses: 10.<client>.0.x on the blocklist and
	// 10.<client>.1.x on the allowlist, so the model is per client.
	models := make([]map[string]bool, clients)
	accepted := make([]int, clients)
	var wg sync.WaitGroup
	for i := range clients {
		models[i] = map[string]bool{}
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 42))
			for range opsPerClient {
				list := []string{"block", "allow"}[rng.IntN(2)]
				third := map[string]int{"block": 0, "allow": 1}[list]
				target := netip.AddrFrom4([4]byte{10, byte(i), byte(third), byte(rng.IntN(32))}).String()
				key := list + " " + target
				var err error
				if rng.IntN(3) < 2 {
					_, err = c.Add(ctx, list, admin.AddRequest{Targets: []string{target}})
					if err == nil {
						models[i][key] = true
					}
				} else {
					_, err = c.Remove(ctx, list, []string{target})
					var ae *admin.APIError
					switch {
					case err == nil:
						delete(models[i], key)
					case errors.As(err, &ae) && ae.Status == 404 && !models[i][key]:
						continue // removing what is not listed: refused, not a change
					}
				}
				if err != nil {
					t.Errorf("client %d: %s: %v", i, key, err)
					return
				}
				accepted[i]++
			}
		})
	}
	wg.Wait()
	close(stop)
	flood.Wait()

	want := map[string]bool{"block " + v.IPv4A.String(): true}
	total := 0
	for i := range clients {
		for k := range models[i] {
			want[k] = true
		}
		total += accepted[i]
	}
	got := map[string]bool{}
	for _, list := range []string{"block", "allow"} {
		resp, err := c.List(ctx, list)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range resp.Entries {
			got[list+" "+e.Prefix.Addr().String()] = true
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("final lists (%d entries) differ from the model (%d entries)", len(got), len(want))
	}
	changes := auditOK(t, cfg.AuditDir()) - auditBefore
	if changes != total {
		t.Errorf("audit log has %d accepted list changes, the clients made %d", changes, total)
	}
	st := statusJSON(t, sock)
	t.Logf("%d accepted changes by %d clients; %d flood packets sent, %d dropped as blocked", total, clients, sent.Load(),
		st.Counters["blocked_exact"].Packets)
}

// auditOK verifies the audit log and counts its accepted list changes.
func auditOK(t *testing.T, dir string) int {
	t.Helper()
	if _, err := audit.VerifyDir(dir); err != nil {
		t.Fatalf("audit log: %v", err)
	}
	recs, _, err := audit.Tail(dir, 1<<30, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range recs {
		if (r.Op == audit.OpMapAdd || r.Op == audit.OpMapRemove) && r.Result == audit.ResultOK {
			n++
		}
	}
	return n
}
