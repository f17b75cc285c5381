package controller

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aegis-edge/aegis/internal/fleet/change"
	"github.com/aegis-edge/aegis/internal/fleet/fleettest"
	"github.com/aegis-edge/aegis/internal/fleet/hub"
	"github.com/aegis-edge/aegis/internal/fleet/report"
	"github.com/aegis-edge/aegis/internal/keyfile"
)

const patience = 60 * time.Second

type fixture struct {
	t   *testing.T
	ctx context.Context
	h   *hub.Hub
	key ed25519.PrivateKey
}

func newFixture(t *testing.T) *fixture {
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	t.Cleanup(cancel)
	h, err := hub.Open(ctx, hub.Options{StoreDir: t.TempDir(), Listen: "127.0.0.1:-1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return &fixture{t: t, ctx: ctx, h: h, key: newKey(t)}
}

func newKey(t *testing.T) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// controller starts a controller (MinEdges 2, Window 1m, TTL 10m, MaxTTL
// 1h unless edit says otherwise) until the test ends or stop is called.
func (fx *fixture) controller(edit func(*Options)) (c *Controller, stop func()) {
	o := Options{Conn: fx.h.Conn, Key: fx.key, MinEdges: 2, Window: time.Minute, TTL: 10 * time.Minute, MaxTTL: time.Hour}
	if edit != nil {
		edit(&o)
	}
	c, err := New(o)
	if err != nil {
		fx.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(fx.ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stop = func() {
		cancel()
		if err := <-done; err != nil {
			fx.t.Errorf("controller Run: %v", err)
		}
	}
	fx.t.Cleanup(func() {
		if ctx.Err() == nil {
			stop()
		}
	})
	return c, stop
}

// reporter starts an edge's reporter (on the hub's own connection).
func (fx *fixture) reporter(name string, now func() time.Time) *report.Reporter {
	r, err := report.New(report.Options{Dir: fx.t.TempDir(), Name: name, Conn: fx.h.Conn, Now: now})
	if err != nil {
		fx.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(fx.ctx)
	go r.Run(ctx)
	fx.t.Cleanup(func() { cancel(); r.Close() })
	return r
}

func (fx *fixture) report(r *report.Reporter, prefix string) {
	fx.t.Helper()
	fx.reportUntil(r, prefix, time.Now().Add(time.Hour))
}

// reportUntil is report of a block that ends at until.
func (fx *fixture) reportUntil(r *report.Reporter, prefix string, until time.Time) {
	fx.t.Helper()
	if err := r.Report(netip.MustParsePrefix(prefix), until); err != nil {
		fx.t.Fatal(err)
	}
	for r.Stats().Queued != 0 {
		if fx.ctx.Err() != nil {
			fx.t.Fatalf("report not sent: %+v", r.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// handled waits until c has handled n reports.
func (fx *fixture) handled(c *Controller, n uint64) Stats {
	fx.t.Helper()
	for {
		s := c.Stats()
		if s.Reports >= n {
			return s
		}
		if fx.ctx.Err() != nil {
			fx.t.Fatalf("the controller handled %d reports, want %d: %+v", s.Reports, n, s)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func blockKey(prefix string) string {
	k, err := change.KeyFor(change.Change{Kind: change.KindList, List: change.Blocklist, Prefix: netip.MustParsePrefix(prefix)})
	if err != nil {
		panic(err)
	}
	return k
}

// held returns the record the hub holds for prefix's block, or false.
func (fx *fixture) held(prefix string) (change.Envelope, change.Change, bool) {
	fx.t.Helper()
	e, err := fx.h.KV.Get(fx.ctx, blockKey(prefix))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return change.Envelope{}, change.Change{}, false
	}
	if err != nil {
		fx.t.Fatal(err)
	}
	env, err := change.Decode(e.Value())
	if err != nil {
		fx.t.Fatal(err)
	}
	env.StoredKey = e.Key()
	c, err := change.ParsePayload(env.Payload)
	if err != nil {
		fx.t.Fatal(err)
	}
	return env, c, true
}

// TestPromotesWhenEnoughEdgesReport: three edges report a source, two
// suffice: one block, signed by the controller key, that an edge's
// verifier accepts as a controller promotion, expiring after TTL.
func TestPromotesWhenEnoughEdgesReport(t *testing.T) {
	fx := newFixture(t)
	c, _ := fx.controller(nil)
	const src = "198.51.100.7/32"
	before := time.Now()
	for _, name := range []string{"edge1", "edge2", "edge3"} {
		fx.report(fx.reporter(name, nil), src)
	}
	s := fx.handled(c, 3)
	if s.Promotions != 1 || len(s.Ignored) != 0 || s.Errors != 0 {
		t.Fatalf("stats %+v, want exactly one promotion", s)
	}
	env, ch, ok := fx.held(src)
	if !ok {
		t.Fatal("no block on the hub")
	}
	v, err := change.NewVerifier(change.Policy{Controller: fx.key.Public().(ed25519.PublicKey), MaxTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.Check(env, time.Now())
	if err != nil {
		t.Fatalf("an edge refuses the promotion: %v", err)
	}
	if !got.ByController || got.List != change.Blocklist || got.Op != change.OpPut {
		t.Fatalf("promotion %+v", got)
	}
	if ttl := time.Duration(ch.ExpiresAt - ch.IssuedAt); ttl != 10*time.Minute || ch.IssuedAt < before.UnixNano() {
		t.Fatalf("promotion issued %v expiring %v later, want 10m", time.Unix(0, ch.IssuedAt), ttl)
	}
	if !strings.Contains(ch.Reason, "reported by 2 edges") {
		t.Fatalf("reason %q", ch.Reason)
	}
}

// TestOneEdgeIsNotEnough: one edge reporting a source ten times is one
// edge.
func TestOneEdgeIsNotEnough(t *testing.T) {
	fx := newFixture(t)
	c, _ := fx.controller(nil)
	r := fx.reporter("edge1", nil)
	for range 10 {
		fx.report(r, "198.51.100.7/32")
	}
	if s := fx.handled(c, r.Stats().Sent); s.Promotions != 0 || s.Reports != 10 {
		t.Fatalf("stats %+v, want 10 reports and no promotion", s)
	}
	if _, _, ok := fx.held("198.51.100.7/32"); ok {
		t.Fatal("a block from one edge's reports")
	}
}

// TestReportsWiderThanTheWindow: two edges' reports further apart than the
// window promote nothing; a report dated before the window is stale.
func TestReportsWiderThanTheWindow(t *testing.T) {
	fx := newFixture(t)
	c, _ := fx.controller(func(o *Options) { o.Window = time.Second })
	fx.report(fx.reporter("edge1", nil), "198.51.100.7/32")
	fx.handled(c, 1)
	time.Sleep(1100 * time.Millisecond)
	fx.report(fx.reporter("edge2", nil), "198.51.100.7/32")
	// An edge whose report was queued for a long time (its clock dates it).
	late := func() time.Time { return time.Now().Add(-time.Hour) }
	fx.report(fx.reporter("edge3", late), "198.51.100.7/32")
	s := fx.handled(c, 3)
	if s.Promotions != 0 || s.Ignored[IgnoredStale] != 1 {
		t.Fatalf("stats %+v, want no promotion and one stale report", s)
	}
}

// TestReportsDatedAheadOrOverDoNotCount: an edge whose clock (or whose
// owner) dates its report an hour ahead keeps it in the window only until
// the window has passed its arrival; a report of a block already over is
// stale on arrival, though made within the window. Neither makes a
// promotion with another edge's report.
func TestReportsDatedAheadOrOverDoNotCount(t *testing.T) {
	fx := newFixture(t)
	c, _ := fx.controller(func(o *Options) { o.Window = 2 * time.Second })
	ahead := func() time.Time { return time.Now().Add(time.Hour) }
	fx.reportUntil(fx.reporter("edge1", ahead), "198.51.100.7/32", time.Now().Add(3*time.Hour))
	fx.handled(c, 1)
	time.Sleep(2100 * time.Millisecond) // past the window, counted from its arrival
	fx.report(fx.reporter("edge2", nil), "198.51.100.7/32")
	if s := fx.handled(c, 2); s.Promotions != 0 || len(s.Ignored) != 0 {
		t.Fatalf("stats %+v: want both reports taken and no promotion (a report dated ahead stayed in the window)", s)
	}

	// Made a second ago, about a block that ended since.
	before := func() time.Time { return time.Now().Add(-time.Second) }
	fx.reportUntil(fx.reporter("edge3", before), "203.0.113.9/32", time.Now().Add(-time.Millisecond))
	fx.report(fx.reporter("edge4", nil), "203.0.113.9/32")
	s := fx.handled(c, 4)
	if s.Promotions != 0 || s.Ignored[IgnoredStale] != 1 || len(s.Ignored) != 1 {
		t.Fatalf("stats %+v: want the report of a block already over stale, and no promotion", s)
	}
}

// TestIgnoresBroadAndForgedReports: prefixes broader than /24 or /48 are
// never promoted; a payload naming another edge than its subject is
// ignored.
func TestIgnoresBroadAndForgedReports(t *testing.T) {
	fx := newFixture(t)
	c, _ := fx.controller(nil)
	for _, name := range []string{"edge1", "edge2"} {
		r := fx.reporter(name, nil)
		fx.report(r, "198.51.0.0/16")
		fx.report(r, "2001:db8::/32")
	}
	// edge1's subject, edge2 in the payload, twice (as if from two edges).
	forged := report.Report{Prefix: netip.MustParsePrefix("192.0.2.1/32"), At: time.Now(), Edge: "edge2"}
	for range 2 {
		if _, err := fx.h.JS.Publish(fx.ctx, hub.ReportSubject("edge1"), forged.Encode()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := fx.h.JS.Publish(fx.ctx, hub.ReportSubject("edge1"), []byte("{")); err != nil {
		t.Fatal(err)
	}
	s := fx.handled(c, 7)
	if s.Promotions != 0 || s.Ignored[IgnoredTooBroad] != 4 || s.Ignored[IgnoredEdgeMismatch] != 2 || s.Ignored[IgnoredMalformed] != 1 {
		t.Fatalf("stats %+v", s)
	}
	for _, p := range []string{"198.51.0.0/16", "2001:db8::/32", "192.0.2.1/32"} {
		if _, _, ok := fx.held(p); ok {
			t.Fatalf("%s was promoted", p)
		}
	}
}

// TestOperatorDecisionStands: an operator's live block, and an operator's
// recent removal, are not replaced by a promotion.
func TestOperatorDecisionStands(t *testing.T) {
	fx := newFixture(t)
	pub, err := hub.NewPublisher(fx.ctx, fx.h.Conn)
	if err != nil {
		t.Fatal(err)
	}
	op := newKey(t)
	sign := func(prefix string, o change.Op) change.Envelope {
		env, err := change.Sign(change.Change{Kind: change.KindList, Op: o, List: change.Blocklist,
			Prefix: netip.MustParsePrefix(prefix), Reason: "operator"}, op)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pub.Publish(fx.ctx, env); err != nil {
			t.Fatal(err)
		}
		return env
	}
	blocked := sign("198.51.100.7/32", change.OpPut)
	lifted := sign("198.51.100.8/32", change.OpDelete)
	c, _ := fx.controller(nil)
	r1, r2 := fx.reporter("edge1", nil), fx.reporter("edge2", nil)
	for _, p := range []string{"198.51.100.7/32", "198.51.100.8/32"} {
		fx.report(r1, p)
		fx.report(r2, p)
	}
	s := fx.handled(c, 4)
	if s.Promotions != 0 || s.Ignored[IgnoredOperator] != 2 {
		t.Fatalf("stats %+v, want two promotions withheld for operators", s)
	}
	for _, want := range []change.Envelope{blocked, lifted} {
		e, err := fx.h.KV.Get(fx.ctx, want.StoredKey)
		if err != nil || string(e.Value()) != string(want.Encode()) {
			t.Fatalf("the operator's record %s was replaced: %v", want.StoredKey, err)
		}
	}
}

// TestOnlyOperatorsRecordsStand: with hub.operator_keys given, a record
// that no operator signed does not hold back a promotion — one signed by
// another key, and one that names an operator's key with a payload
// edited to a date a year ahead (which, read unverified, would also
// stand as a live decision) — while an operator's genuine record still
// does. Without operator keys the same forgery stands (the documented
// weaker mode).
func TestOnlyOperatorsRecordsStand(t *testing.T) {
	for _, verified := range []bool{true, false} {
		t.Run(fmt.Sprintf("operator_keys=%v", verified), func(t *testing.T) {
			fx := newFixture(t)
			op, rogue := newKey(t), newKey(t)
			put := func(prefix string, key ed25519.PrivateKey, edit func(*change.Envelope)) change.Envelope {
				env, err := change.Sign(change.Change{Kind: change.KindList, Op: change.OpPut, List: change.Blocklist,
					Prefix: netip.MustParsePrefix(prefix), Reason: "held"}, key)
				if err != nil {
					t.Fatal(err)
				}
				if edit != nil {
					edit(&env)
				}
				if _, err := fx.h.KV.Put(fx.ctx, env.StoredKey, env.Encode()); err != nil {
					t.Fatal(err)
				}
				return env
			}
			genuine := put("198.51.100.8/32", op, nil)
			put("198.51.100.7/32", rogue, nil)
			put("198.51.100.10/32", op, func(env *change.Envelope) {
				c, err := change.ParsePayload(env.Payload)
				if err != nil {
					t.Fatal(err)
				}
				c.IssuedAt = time.Now().AddDate(1, 0, 0).UnixNano()
				if env.Payload, err = json.Marshal(c); err != nil {
					t.Fatal(err)
				}
			})
			c, _ := fx.controller(func(o *Options) {
				if verified {
					o.Operators = []ed25519.PublicKey{op.Public().(ed25519.PublicKey)}
				}
			})
			r1, r2 := fx.reporter("edge1", nil), fx.reporter("edge2", nil)
			prefixes := []string{"198.51.100.7/32", "198.51.100.8/32", "198.51.100.10/32"}
			for _, p := range prefixes {
				fx.report(r1, p)
				fx.report(r2, p)
			}
			s := fx.handled(c, 6)
			wantPromoted := map[string]bool{"198.51.100.7/32": verified, "198.51.100.8/32": false, "198.51.100.10/32": verified}
			if verified && (s.Promotions != 2 || s.Ignored[IgnoredOperator] != 1) ||
				!verified && (s.Promotions != 0 || s.Ignored[IgnoredOperator] != 3) {
				t.Fatalf("stats %+v", s)
			}
			ctlID := keyfile.KeyID(fx.key.Public().(ed25519.PublicKey))
			for _, p := range prefixes {
				env, _, ok := fx.held(p)
				if !ok {
					t.Fatalf("%s: nothing held", p)
				}
				if promoted := env.KeyID == ctlID; promoted != wantPromoted[p] {
					t.Errorf("%s: held record signed by %s, promoted %v, want %v", p, env.KeyID, promoted, wantPromoted[p])
				}
			}
			if env, _, _ := fx.held("198.51.100.8/32"); string(env.Encode()) != string(genuine.Encode()) {
				t.Error("the operator's genuine record was replaced")
			}
		})
	}
}

// TestRestartRereadsTheWindowAndExtendsLate: a controller started after
// the reports rebuilds its counts from the stream and promotes; another
// started later finds its live promotion and republishes only once less
// than half of its TTL is left.
func TestRestartRereadsTheWindowAndExtendsLate(t *testing.T) {
	fx := newFixture(t)
	const src = "2001:db8:1:2::/64"
	fx.report(fx.reporter("edge1", nil), src)
	fx.report(fx.reporter("edge2", nil), src)
	opts := func(skew time.Duration) func(*Options) {
		return func(o *Options) {
			o.Window, o.TTL = time.Hour, time.Minute
			o.Now = func() time.Time { return time.Now().Add(skew) }
		}
	}
	c, stop := fx.controller(opts(0))
	if s := fx.handled(c, 2); s.Promotions != 1 {
		t.Fatalf("after a start: %+v, want one promotion", s)
	}
	stop()
	_, first, _ := fx.held(src)

	// 20 s later: 40 s of 60 left, more than half: nothing.
	c, stop = fx.controller(opts(20 * time.Second))
	if s := fx.handled(c, 2); s.Promotions != 0 {
		t.Fatalf("a restarted controller republished a fresh promotion: %+v", s)
	}
	stop()
	// 40 s later: 20 s left: extended.
	c, _ = fx.controller(opts(40 * time.Second))
	if s := fx.handled(c, 2); s.Promotions != 1 {
		t.Fatalf("a promotion with a third of its TTL left was not extended: %+v", s)
	}
	_, ext, _ := fx.held(src)
	if ext.IssuedAt <= first.IssuedAt || ext.ExpiresAt-ext.IssuedAt != time.Minute.Nanoseconds() {
		t.Fatalf("extension %+v after %+v", ext, first)
	}
}

func TestOptions(t *testing.T) {
	fx := newFixture(t)
	good := Options{Conn: fx.h.Conn, Key: fx.key, MinEdges: 2, Window: time.Minute, TTL: time.Hour}
	if _, err := New(good); err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(*Options){
		"no conn":       func(o *Options) { o.Conn = nil },
		"no key":        func(o *Options) { o.Key = nil },
		"min edges 0":   func(o *Options) { o.MinEdges = 0 },
		"no window":     func(o *Options) { o.Window = 0 },
		"ttl > max_ttl": func(o *Options) { o.TTL, o.MaxTTL = 2*time.Hour, time.Hour },
		"ttl > default": func(o *Options) { o.TTL = 25 * time.Hour },
	} {
		o := good
		edit(&o)
		if _, err := New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestEdgeUsersReport: reporters under edge users' bus permissions get
// their reports through without a permission violation, and the
// controller promotes.
func TestEdgeUsersReport(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	log := &fleettest.Violations{}
	h, err := hub.Open(ctx, hub.Options{StoreDir: t.TempDir(), Listen: "127.0.0.1:-1", Logger: slog.New(log),
		Users: []hub.User{{Name: "edge1", Password: "one", Role: hub.RoleEdge}, {Name: "edge2", Password: "two", Role: hub.RoleEdge}}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	fx := &fixture{t: t, ctx: ctx, h: h, key: newKey(t)}
	c, _ := fx.controller(nil)
	for _, name := range []string{"edge1", "edge2"} {
		nc, err := nats.Connect(h.Server.ClientURL(), nats.UserInfo(name, map[string]string{"edge1": "one", "edge2": "two"}[name]))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		r, err := report.New(report.Options{Dir: t.TempDir(), Name: name, Conn: nc})
		if err != nil {
			t.Fatal(err)
		}
		rctx, stop := context.WithCancel(ctx)
		defer stop()
		go r.Run(rctx)
		fx.report(r, "203.0.113.5/32")
	}
	if s := fx.handled(c, 2); s.Promotions != 1 {
		t.Fatalf("stats %+v, want one promotion", s)
	}
	if v := log.Lines(); len(v) != 0 {
		t.Fatalf("reporting needed subjects an edge may not use: %q", v)
	}
}

// TestMemoryIsBounded: at most MaxSources sources, the least recently
// reported dropped first; a source is forgotten once its reports left the
// window.
func TestMemoryIsBounded(t *testing.T) {
	fx := newFixture(t)
	now := time.Now()
	c, err := New(Options{Conn: fx.h.Conn, Key: fx.key, MinEdges: 2, Window: time.Minute, TTL: time.Hour,
		MaxSources: 3, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	send := func(i int) {
		edge := fmt.Sprintf("edge%d", i) // one edge may hold only a share
		r := report.Report{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 32), At: now, Edge: edge}
		c.handle(fx.ctx, hub.ReportSubject(edge), r.Encode(), now)
	}
	for i := range 5 {
		send(i)
	}
	if s := c.Stats(); s.Sources != 3 || s.Evicted != 2 {
		t.Fatalf("stats %+v, want 3 sources, 2 evicted", s)
	}
	if _, ok := c.sources[netip.MustParsePrefix("192.0.2.0/32")]; ok {
		t.Fatal("the least recently reported source was kept")
	}
	now = now.Add(2 * time.Minute)
	send(9)
	if s := c.Stats(); s.Sources != 1 || s.Evicted != 2 {
		t.Fatalf("after the window: %+v, want only the new source", s)
	}
}

// TestOneEdgeCannotCrowdOutOthers: an edge alone may hold an eighth of the
// table. A compromised edge flooding distinct sources between two honest
// edges' reports of one attacker fills its share and no more: the honest
// source stays tracked, the second report confirms it, and it is promoted.
func TestOneEdgeCannotCrowdOutOthers(t *testing.T) {
	fx := newFixture(t)
	now := time.Now()
	c, err := New(Options{Conn: fx.h.Conn, Key: fx.key, MinEdges: 2, Window: time.Minute, TTL: 10 * time.Minute,
		MaxTTL: time.Hour, MaxSources: 1000, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if c.pub, err = hub.NewPublisher(fx.ctx, fx.h.Conn); err != nil {
		t.Fatal(err)
	}
	send := func(edge, prefix string) {
		r := report.Report{Prefix: netip.MustParsePrefix(prefix), At: now, Until: now.Add(time.Hour), Edge: edge}
		c.handle(fx.ctx, hub.ReportSubject(edge), r.Encode(), now)
	}
	send("honest1", "203.0.113.9/32")
	for i := range 2000 {
		send("evil", fmt.Sprintf("10.0.%d.%d/32", i>>8, i&255))
	}
	st := c.Stats()
	if st.Sources != 126 || st.Ignored[IgnoredEdgeQuota] != 2000-125 || st.Evicted != 0 {
		t.Fatalf("after the flood: %+v; want honest1's source and evil's 125", st)
	}
	send("honest2", "203.0.113.9/32")
	if _, _, ok := fx.held("203.0.113.9/32"); !ok || c.Stats().Promotions != 1 {
		t.Fatalf("two honest edges reported 203.0.113.9, nothing promoted: %+v", c.Stats())
	}
	// Once a second edge reports one of evil's sources it is no longer
	// evil's alone, and evil may report one more.
	send("honest1", "10.0.0.0/32")
	send("evil", "10.9.9.9/32")
	if got := c.Stats().Ignored[IgnoredEdgeQuota]; got != 2000-125 {
		t.Fatalf("edge_quota ignored %d after a confirmation, want no new refusal", got)
	}
}

// TestMinEdgesOneHasNoQuota: with min_edges 1 one edge's report is the
// whole decision: no share caps how many sources one edge gets promoted.
func TestMinEdgesOneHasNoQuota(t *testing.T) {
	fx := newFixture(t)
	now := time.Now()
	c, err := New(Options{Conn: fx.h.Conn, Key: fx.key, MinEdges: 1, Window: time.Minute, TTL: 10 * time.Minute,
		MaxTTL: time.Hour, MaxSources: 80, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if c.pub, err = hub.NewPublisher(fx.ctx, fx.h.Conn); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		r := report.Report{Prefix: netip.MustParsePrefix(fmt.Sprintf("10.0.0.%d/32", i)), At: now, Until: now.Add(time.Hour), Edge: "e1"}
		c.handle(fx.ctx, hub.ReportSubject("e1"), r.Encode(), now)
	}
	if st := c.Stats(); st.Promotions != 20 {
		t.Fatalf("min_edges 1, 20 sources from one edge: %d promoted, ignored %v", st.Promotions, st.Ignored)
	}
}
