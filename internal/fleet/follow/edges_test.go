package follow

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aegis-edge/aegis/internal/fleet/hub"
)

func TestEdgesReportAndWait(t *testing.T) {
	fx := newFixture(t)
	a := fx.follow(nil, nil, func(o *Options) { o.Name = "edge-a" })
	b := fx.follow(nil, nil, func(o *Options) { o.Name = "edge-b" })
	a.waitCaughtUp(t)
	b.waitCaughtUp(t)
	// WaitApplied waits for the edges that have reported: both must have
	// before the change, or it may not wait for the one that had not.
	waitReports(t, fx, 2)

	env := fx.publish(block("198.51.100.0/24"))
	e, err := fx.h.KV.Get(fx.ctx(), env.StoredKey)
	if err != nil {
		t.Fatal(err)
	}
	missing, refused, err := hub.WaitApplied(fx.ctx(), fx.h.JS, hub.Published{From: e.Revision(), To: e.Revision()}, nil, time.Minute)
	if err != nil || missing != nil || refused != nil {
		t.Fatalf("WaitApplied = %v, %v; want every edge done", missing, err)
	}
	reports, err := hub.Edges(fx.ctx(), fx.h.JS)
	if err != nil || len(reports) != 2 || reports[0].Name != "edge-a" || reports[1].Name != "edge-b" {
		t.Fatalf("Edges = %+v, %v", reports, err)
	}
	for _, r := range reports {
		if r.Seq < e.Revision() || !r.CaughtUp || r.Applied != 1 {
			t.Fatalf("report %+v: want the change applied", r)
		}
	}

	// An edge that is down is named.
	b.stop()
	env2 := fx.publish(block("198.51.101.0/24"))
	e2, err := fx.h.KV.Get(fx.ctx(), env2.StoredKey)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	missing, _, err = hub.WaitApplied(ctx, fx.h.JS, hub.Published{From: e2.Revision(), To: e2.Revision()}, nil, time.Minute)
	if err != nil || !slices.Equal(missing, []string{"edge-b"}) {
		t.Fatalf("WaitApplied with edge-b down = %v, %v; want [edge-b]", missing, err)
	}
	missing, _, err = hub.WaitApplied(fx.ctx(), fx.h.JS, hub.Published{From: e2.Revision(), To: e2.Revision()}, []string{"edge-a"}, time.Minute)
	if err != nil || missing != nil {
		t.Fatalf("WaitApplied for edge-a = %v, %v", missing, err)
	}

	// A refused change is not an applied one: a block over a management
	// address moves edge-a's cursor past it all the same.
	env3 := fx.publish(block("192.0.2.0/24"))
	e3, err := fx.h.KV.Get(fx.ctx(), env3.StoredKey)
	if err != nil {
		t.Fatal(err)
	}
	missing, refused, err = hub.WaitApplied(fx.ctx(), fx.h.JS, hub.Published{From: e3.Revision(), To: e3.Revision(), Keys: map[string]bool{env3.StoredKey: true}}, []string{"edge-a"}, time.Minute)
	if err != nil || missing != nil || !slices.Equal(refused, []string{"edge-a (management)"}) {
		t.Fatalf("WaitApplied for a refused change = %v, %v, %v; want edge-a refused", missing, refused, err)
	}
	// A refusal of another record in the same revisions (the controller's,
	// another operator's) is not this command's.
	missing, refused, err = hub.WaitApplied(fx.ctx(), fx.h.JS, hub.Published{From: e3.Revision(), To: e3.Revision(),
		Keys: map[string]bool{"list.block.203-0-113-0_24": true}}, []string{"edge-a"}, time.Minute)
	if err != nil || missing != nil || refused != nil {
		t.Fatalf("WaitApplied for other keys = %v, %v, %v; want edge-a done", missing, refused, err)
	}
}

// TestEdgeReportsCannotSpeakForOthers: an edge may write only its own
// report, but what it writes there is its word: a report naming another
// edge is no report, and the rollup that would purge every other edge's
// report is refused.
func TestEdgeReportsCannotSpeakForOthers(t *testing.T) {
	fx := newFixture(t)
	victim := fx.follow(nil, nil, func(o *Options) { o.Name = "victim" })
	victim.waitCaughtUp(t)
	// Its report is written after it caught up, not with it: waited for
	// here, so the stop below cannot come first.
	waitReports(t, fx, 1)
	victim.stop() // its last report stays, behind
	env := fx.publish(block("198.51.100.0/24"))
	e, err := fx.h.KV.Get(fx.ctx(), env.StoredKey)
	if err != nil {
		t.Fatal(err)
	}
	epoch := strconv.FormatUint(0, 10)
	if st, err := fx.h.JS.Stream(fx.ctx(), hub.Stream); err == nil {
		epoch = strconv.FormatInt(st.CachedInfo().Created.UnixNano(), 10)
	}
	lie, _ := json.Marshal(hub.EdgeReport{Name: "victim", Epoch: epoch, Seq: e.Revision() + 1000, CaughtUp: true, Reported: time.Now()})
	edges, err := fx.h.JS.KeyValue(fx.ctx(), hub.EdgesBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := edges.Put(fx.ctx(), "evil", lie); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	missing, _, err := hub.WaitApplied(ctx, fx.h.JS, hub.Published{From: e.Revision(), To: e.Revision()}, []string{"victim"}, time.Minute)
	if err != nil || !slices.Equal(missing, []string{"victim"}) {
		t.Fatalf("WaitApplied = %v, %v; want victim still missing", missing, err)
	}
	reports, err := hub.Edges(fx.ctx(), fx.h.JS)
	if err != nil || len(reports) != 1 || reports[0].Name != "victim" || reports[0].Seq >= e.Revision() {
		t.Fatalf("Edges = %+v, %v; want victim's own report only", reports, err)
	}

	m := nats.NewMsg("$KV." + hub.EdgesBucket + ".evil")
	m.Data = []byte(`{"name":"evil"}`)
	m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupAll)
	if _, err := fx.h.JS.PublishMsg(fx.ctx(), m); err == nil {
		t.Error("a rollup of the edges bucket was accepted")
	}
	if reports, err := hub.Edges(fx.ctx(), fx.h.JS); err != nil || len(reports) != 1 {
		t.Fatalf("after the rollup: Edges = %+v, %v; want victim's report kept", reports, err)
	}
}

// waitReports waits until n edges have reported to the hub. An edge writes
// its report after it caught up, not at the same moment.
func waitReports(t *testing.T, fx *fixture, n int) {
	t.Helper()
	for deadline := time.Now().Add(patience); ; time.Sleep(10 * time.Millisecond) {
		if reports, err := hub.Edges(fx.ctx(), fx.h.JS); err == nil && len(reports) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d edges never reported", n)
		}
	}
}
