package follow

import (
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/aegis-edge/aegis/internal/fleet/change"
)

// fleetFull runs the full forms (100 edges, 10,000 changes, a
// 100,000-entry import, a 60 s outage); scripts/bench-fleet.sh sets it.
var fleetFull = os.Getenv("AEGIS_FLEET_FULL") == "1"

// TestManyEdgesReconnectAfterOutage stops the hub under many connected
// edges, restarts it after an outage and publishes a burst of changes at
// once: every edge must reconnect and hold them. It logs the time from the
// hub's restart to the last edge holding all of them.
func TestManyEdgesReconnectAfterOutage(t *testing.T) {
	edges, outage, changes := 20, 2*time.Second, 200
	if fleetFull {
		edges, outage, changes = 100, 60*time.Second, 1000
	}
	fx := newFixture(t)
	// The edges' reconnect pace is the node's (hub.Dial).
	fx.connOpts = []nats.Option{nats.ReconnectWait(250 * time.Millisecond)}
	var es []*edge
	for range edges {
		es = append(es, fx.follow(nil, nil, nil))
	}
	for _, e := range es {
		e.waitCaughtUp(t)
	}
	fx.stop()
	time.Sleep(outage)
	restarted := time.Now()
	fx.start(fx.listen)
	var keys []string
	for i := range changes {
		keys = append(keys, fx.publish(block(fmt.Sprintf("10.%d.%d.0/24", i/250, i%250))).StoredKey)
	}
	for _, e := range es {
		e.waitKeys(t, keys...)
	}
	t.Logf("%d edges after a %v outage: all held %d changes published at the restart %v after it",
		edges, outage, changes, time.Since(restarted).Round(time.Millisecond))
}

// TestManyEdgesConverge is the short form of the "100 lightweight edges"
// benchmark: several followers with recorders in one process, a stream
// of changes, and every edge must end with the hub's set. It logs the
// propagation delay from the hub's acknowledgement to each edge's Apply.
func TestManyEdgesConverge(t *testing.T) {
	edges, changes := 20, 400
	switch {
	case fleetFull:
		edges, changes = 100, 10_000
	case testing.Short():
		edges, changes = 5, 100
	}
	fx := newFixture(t)
	var mu sync.Mutex
	acked := map[string]time.Time{}
	var delays []time.Duration
	var es []*edge
	for range edges {
		rec := NewRecorder()
		rec.Fail = func(batch []change.Change) error {
			now := time.Now()
			mu.Lock()
			for _, c := range batch {
				if at, ok := acked[c.Key+string(c.Op)+fmt.Sprint(c.IssuedAt)]; ok {
					delays = append(delays, now.Sub(at))
				}
			}
			mu.Unlock()
			return nil
		}
		es = append(es, fx.follow(nil, rec, nil))
	}
	for _, e := range es {
		e.waitCaughtUp(t)
	}
	want := map[string]bool{}
	for i := range changes {
		c := block(fmt.Sprintf("10.%d.%d.0/24", i/250, i%250))
		if i%5 == 4 { // every fifth change removes an earlier entry
			c = unblock(fmt.Sprintf("10.%d.%d.0/24", (i-2)/250, (i-2)%250))
		}
		c.IssuedAt = time.Now().UnixNano()
		env := fx.sign(c, fx.opKey)
		// Record the time before publishing: an edge may apply before the
		// ack returns. This overstates the delay by the ack's return trip.
		mu.Lock()
		acked[env.StoredKey+string(c.Op)+fmt.Sprint(c.IssuedAt)] = time.Now()
		mu.Unlock()
		if _, err := fx.pub.Publish(fx.ctx(), env); err != nil {
			t.Fatal(err)
		}
		want[env.StoredKey] = c.Op == change.OpPut
	}
	var keys []string
	for k, live := range want {
		if live {
			keys = append(keys, k)
		}
	}
	for _, e := range es {
		e.waitKeys(t, keys...)
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(delays)
	if len(delays) != edges*changes {
		t.Logf("%d applies recorded for %d changes to %d edges (some batched behind a superseding change)", len(delays), changes, edges)
	}
	t.Logf("%d edges, %d changes: hub publish to edge Apply p50 %v, p99 %v, max %v", edges, changes,
		delays[len(delays)/2], delays[len(delays)*99/100], delays[len(delays)-1])
}

// TestFullReconcileInBatches reconciles a set larger than one batch, with
// removals, and checks the cursor moves only once it is complete.
func TestFullReconcileInBatches(t *testing.T) {
	fx := newFixture(t)
	state, rec := NewMemState(), NewRecorder()
	e := fx.follow(state, rec, func(o *Options) { o.MaxBatch = 64 })
	var first []string
	for i := range 300 {
		first = append(first, fx.publish(block(fmt.Sprintf("10.%d.%d.0/24", i/200, i%200))).StoredKey)
	}
	e.waitKeys(t, first...)
	e.stop()

	// Recreate the bucket holding only every third entry and some new ones.
	if err := fx.h.JS.DeleteKeyValue(fx.ctx(), "aegis_fleet"); err != nil {
		t.Fatal(err)
	}
	fx.stop()
	fx.start(fx.listen)
	var want []string
	for i := 0; i < 300; i += 3 {
		c := block(fmt.Sprintf("10.%d.%d.0/24", i/200, i%200))
		c.Reason = "kept"
		want = append(want, fx.publish(c).StoredKey)
	}
	for i := range 100 {
		want = append(want, fx.publish(block(fmt.Sprintf("10.2.%d.0/24", i))).StoredKey)
	}
	before, _ := state.Cursor()
	e2 := fx.follow(state, rec, func(o *Options) { o.MaxBatch = 64 })
	e2.waitKeys(t, want...)
	e2.waitCaughtUp(t)
	after, _ := state.Cursor()
	if after.Epoch == before.Epoch || after.Seq != 200 {
		t.Fatalf("cursor %+v after reconcile (was %+v), want the new epoch at revision 200", after, before)
	}
	for _, b := range rec.Batches() {
		if len(b) > 64 {
			t.Fatalf("a batch of %d changes, limit 64", len(b))
		}
	}
}

// TestImportReachesEdges is the short form of the 100,000-entry import
// benchmark: a batch-signed import published with PublishMany reaches
// three edges. It logs the time from the start of the publish to the
// last edge holding every entry.
func TestImportReachesEdges(t *testing.T) {
	n := 10000
	switch {
	case fleetFull:
		n = 100_000
	case testing.Short():
		n = 2000
	}
	fx := newFixture(t)
	var es []*edge
	for range 3 {
		e := fx.follow(nil, nil, nil)
		e.waitCaughtUp(t)
		es = append(es, e)
	}
	var cs []change.Change
	var keys []string
	now := time.Now().UnixNano()
	for i := range n {
		c := block(fmt.Sprintf("10.%d.%d.%d/32", i/65536, i/256%256, i%256))
		c.IssuedAt = now
		cs = append(cs, c)
		keys = append(keys, keyOf(t, c))
	}
	envs, err := change.SignImport(cs, fx.opKey) // as aegis fleet block import signs
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := fx.pub.PublishMany(fx.ctx(), envs)
	if err != nil || res.Published != n {
		t.Fatalf("PublishMany = %+v, %v", res, err)
	}
	acked := time.Since(start)
	for _, e := range es {
		e.waitKeys(t, keys...)
	}
	t.Logf("%d entries: hub acknowledged all in %v, all 3 edges held all in %v", n, acked.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}
