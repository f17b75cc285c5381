package follow

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aegis-edge/aegis/internal/fleet/change"
	"github.com/aegis-edge/aegis/internal/fleet/fleettest"
	"github.com/aegis-edge/aegis/internal/fleet/hub"
)

// TestEdgeUserIsReadOnly runs a follower with an edge's bus credentials:
// it follows lists and functions without a single permission violation,
// and cannot write the bucket.
func TestEdgeUserIsReadOnly(t *testing.T) {
	log := &fleettest.Violations{}
	fx := newFixtureWith(t, func(o *hub.Options) {
		o.Users = []hub.User{{Name: "edge1", Password: "edge-secret", Role: hub.RoleEdge}}
		o.Logger = slog.New(log)
	})
	fx.connOpts = []nats.Option{nats.UserInfo("edge1", "edge-secret"),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})} // the refused writes below are expected
	e := fx.follow(nil, nil, func(o *Options) { o.Name = "edge1" })
	module := []byte("\x00asm\x01\x00\x00\x00 read by an edge")
	digest, err := fx.pub.PutModule(fx.ctx(), module)
	if err != nil {
		t.Fatal(err)
	}
	fn := fx.publish(change.Change{Kind: change.KindFunction, Op: change.OpPut, Func: &change.Function{
		Name: "hello", Digest: digest, Size: int64(len(module)), Spec: json.RawMessage(`{"route":"/"}`)}})
	b := fx.publish(block("198.51.100.0/24"))
	e.waitKeys(t, fn.StoredKey, b.StoredKey)
	if string(e.rec.Entries()[fn.StoredKey].Module) != string(module) {
		t.Fatal("the edge did not get the module")
	}
	// Its report arrives (it may write its own).
	deadline := time.Now().Add(patience)
	for {
		reports, err := hub.Edges(fx.ctx(), fx.h.JS)
		if err == nil && len(reports) == 1 && reports[0].Name == "edge1" && reports[0].Applied == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no report from edge1: %+v, %v", reports, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if v := log.Lines(); len(v) != 0 {
		t.Fatalf("the follower needed subjects an edge may not use: %q", v)
	}

	js, err := jetstream.New(e.conn)
	if err != nil {
		t.Fatal(err)
	}
	// A refused write is never acknowledged: each try gets its own short
	// deadline.
	short := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		t.Cleanup(cancel)
		return ctx
	}
	kv, err := js.KeyValue(fx.ctx(), hub.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(short(), b.StoredKey, []byte("x")); err == nil {
		t.Fatal("an edge user wrote to the bucket")
	}
	if err := kv.Delete(short(), b.StoredKey); err == nil {
		t.Fatal("an edge user deleted from the bucket")
	}
	edges, err := js.KeyValue(fx.ctx(), hub.EdgesBucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := hub.Report(short(), edges, hub.EdgeReport{Name: "edge2"}); err == nil {
		t.Fatal("an edge user wrote another edge's report")
	}
	if err := js.DeleteKeyValue(short(), hub.Bucket); err == nil {
		t.Fatal("an edge user deleted the bucket")
	}
	// Wrong password: no connection at all.
	if nc, err := nats.Connect("nats://"+fx.listen, nats.UserInfo("edge1", "wrong")); err == nil {
		nc.Close()
		t.Fatal("connected with a wrong password")
	}
}
