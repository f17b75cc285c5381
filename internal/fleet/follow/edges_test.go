package follow

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/fleet/hub"
)

func TestEdgesReportAndWait(t *testing.T) {
	fx := newFixture(t)
	a := fx.follow(nil, nil, func(o *Options) { o.Name = "edge-a" })
	b := fx.follow(nil, nil, func(o *Options) { o.Name = "edge-b" })
	a.waitCaughtUp(t)
	b.waitCaughtUp(t)

	env := fx.publish(block("198.51.100.0/24"))
	e, err := fx.h.KV.Get(fx.ctx(), env.StoredKey)
	if err != nil {
		t.Fatal(err)
	}
	missing, err := hub.WaitApplied(fx.ctx(), fx.h.JS, e.Revision(), nil, time.Minute)
	if err != nil || missing != nil {
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
	missing, err = hub.WaitApplied(ctx, fx.h.JS, e2.Revision(), nil, time.Minute)
	if err != nil || !slices.Equal(missing, []string{"edge-b"}) {
		t.Fatalf("WaitApplied with edge-b down = %v, %v; want [edge-b]", missing, err)
	}
	missing, err = hub.WaitApplied(fx.ctx(), fx.h.JS, e2.Revision(), []string{"edge-a"}, time.Minute)
	if err != nil || missing != nil {
		t.Fatalf("WaitApplied for edge-a = %v, %v", missing, err)
	}
}
