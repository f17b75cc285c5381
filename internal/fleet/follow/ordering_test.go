package follow

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/aegis-edge/aegis/internal/fleet/change"
	"github.com/aegis-edge/aegis/internal/fleet/hub"
)

// TestExpiredPutSupersedesOlderRecords: an operator turns a permanent allow
// into a one-hour one; an edge away for longer gets only the newer record,
// expired by then. It must end with no entry, as the edges that were
// online did when it expired, not keep the permanent one.
func TestExpiredPutSupersedesOlderRecords(t *testing.T) {
	fx := newFixture(t)
	state, rec := NewMemState(), NewRecorder()
	e := fx.follow(state, rec, nil)
	allow := block("203.0.113.0/24")
	allow.List = change.Allowlist
	t0 := time.Now().Add(-3 * time.Hour)
	allow.IssuedAt = t0.UnixNano()
	env := fx.publish(allow)
	e.waitKeys(t, env.StoredKey)
	e.stop()

	shorter := allow
	shorter.IssuedAt = t0.Add(time.Minute).UnixNano()
	shorter.ExpiresAt = t0.Add(time.Hour).UnixNano()
	fx.publish(shorter)
	// An expired put older than what the edge holds changes nothing.
	other := block("198.51.100.0/24")
	held := fx.publish(other)
	e2 := fx.follow(state, rec, nil)
	e2.waitKeys(t, held.StoredKey)
	before := e2.f.Status()
	if before.Refused[change.ReasonExpired] != 1 {
		t.Fatalf("refused %v, want the newer expired record counted", before.Refused)
	}
	// An older record, since expired, replayed onto the bus: a no-op, not
	// a refusal (no count, no OnRefused, so no audit record).
	refusals := len(e2.refused())
	stale := other
	stale.IssuedAt, stale.ExpiresAt = t0.UnixNano(), t0.Add(time.Hour).UnixNano()
	fx.raw(held.StoredKey, fx.sign(stale, fx.opKey).Encode())
	s := fx.sentinel(e2, 1)
	e2.waitKeys(t, held.StoredKey, s)
	e2.waitCounts(t, 0, before.Ignored+1)
	if st := e2.f.Status(); st.Refused[change.ReasonExpired] != 1 {
		t.Errorf("after an older expired record: refused %v; want it ignored, not refused", st.Refused)
	}
	if got := e2.refused(); len(got) != refusals {
		t.Errorf("the older expired record reached OnRefused: %v", got[refusals:])
	}
}

// kvEntry is a bucket put as the watch delivers it.
type kvEntry struct {
	key   string
	value []byte
	rev   uint64
}

func (e kvEntry) Bucket() string                  { return hub.Bucket }
func (e kvEntry) Key() string                     { return e.key }
func (e kvEntry) Value() []byte                   { return e.value }
func (e kvEntry) Revision() uint64                { return e.rev }
func (e kvEntry) Created() time.Time              { return time.Now() }
func (e kvEntry) Delta() uint64                   { return 0 }
func (e kvEntry) Operation() jetstream.KeyValueOp { return jetstream.KeyValuePut }

// TestBatchingDoesNotChangeTheOutcome: the same records give the same
// entries whether they arrive in one batch or in several. An operator's
// permanent block and then the controller's one-minute block of the same
// key: the controller's is refused either way (in one batch it used to
// replace the operator's).
func TestBatchingDoesNotChangeTheOutcome(t *testing.T) {
	opPub, opKey := newKey(t)
	ctlPub, ctlKey := newKey(t)
	now := time.Now()
	sign := func(c change.Change, k ed25519.PrivateKey, rev uint64) kvEntry {
		env, err := change.Sign(c, k)
		if err != nil {
			t.Fatal(err)
		}
		return kvEntry{key: env.StoredKey, value: env.Encode(), rev: rev}
	}
	op := block("198.51.100.7/32")
	op.IssuedAt = now.UnixNano()
	ctl := op
	ctl.IssuedAt, ctl.ExpiresAt = now.Add(time.Second).UnixNano(), now.Add(time.Minute).UnixNano()
	opDel := op
	opDel.Op, opDel.IssuedAt = change.OpDelete, now.Add(2*time.Second).UnixNano()
	ctl2 := ctl
	ctl2.IssuedAt = now.Add(3 * time.Second).UnixNano()
	a, b, c, d := sign(op, opKey, 1), sign(ctl, ctlKey, 2), sign(opDel, opKey, 3), sign(ctl2, ctlKey, 4)

	feed := func(batches ...[]jetstream.KeyValueEntry) (change.Change, bool) {
		v, err := change.NewVerifier(change.Policy{Operators: []ed25519.PublicKey{opPub}, Controller: ctlPub})
		if err != nil {
			t.Fatal(err)
		}
		rec := NewRecorder()
		f := &Follower{o: Options{Verifier: v, State: NewMemState(), Applier: rec, Now: func() time.Time { return now }, MaxBatch: 4096},
			log: slog.New(slog.DiscardHandler), st: Status{Refused: map[string]uint64{}}, fnRetry: map[string]*fnRetry{}}
		s := &run{f: f, ctx: context.Background(), epoch: "1"}
		for _, batch := range batches {
			if err := s.process(batch); err != nil {
				t.Fatal(err)
			}
		}
		got, ok := rec.Entries()[a.key]
		return got, ok
	}
	for _, tc := range []struct {
		name      string
		records   []jetstream.KeyValueEntry
		wantCtl   bool // the controller's block is what the edge holds
		wantEntry bool
	}{
		{"operator then controller", []jetstream.KeyValueEntry{a, b}, false, true},
		// After the operator's removal the controller may block again.
		{"operator, controller, removal, controller", []jetstream.KeyValueEntry{a, b, c, d}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var each [][]jetstream.KeyValueEntry
			for _, r := range tc.records {
				each = append(each, []jetstream.KeyValueEntry{r})
			}
			for _, batches := range [][][]jetstream.KeyValueEntry{each, {tc.records}} {
				got, ok := feed(batches...)
				if ok != tc.wantEntry || ok && got.ByController != tc.wantCtl {
					t.Errorf("%d batches: entry %v (controller's: %v), want %v (controller's: %v)", len(batches), ok, got.ByController, tc.wantEntry, tc.wantCtl)
				}
			}
		})
	}
}

// TestForgedRecordDoesNotKeepAnEntry: during a full reconcile, a key the
// hub holds only a forgery for counts as gone: the edge removes the entry
// the hub dropped, instead of keeping it because bytes sit under its key.
func TestForgedRecordDoesNotKeepAnEntry(t *testing.T) {
	fx := newFixture(t)
	state, rec, a, b := fx.heldThenStopped("198.51.101.0/24")

	_, stranger := newKey(t)
	forged := block("198.51.100.0/24")
	fx.raw(a.StoredKey, fx.sign(forged, stranger).Encode())
	fx.raw(b.StoredKey, []byte("not a record"))
	state.mu.Lock()
	state.cur.Epoch = "" // as at a first start: a full reconcile
	state.mu.Unlock()
	e2 := fx.follow(state, rec, nil)
	e2.waitCaughtUp(t)
	e2.waitKeys(t)
	if st := e2.f.Status(); st.FullReconciles != 1 || st.Refused[change.ReasonUnknownKey] != 1 || st.Refused[change.ReasonMalformed] != 1 {
		t.Fatalf("status %+v: want one full reconcile refusing both records", st)
	}
}

// TestBatchesAreBoundedInBytes: a backlog is applied in batches of at most
// MaxBatchBytes of records (and one more record), not MaxBatch records of
// any size.
func TestBatchesAreBoundedInBytes(t *testing.T) {
	fx := newFixture(t)
	var keys []string
	for i := range 60 {
		keys = append(keys, fx.publish(block(fmt.Sprintf("198.51.100.%d/32", i))).StoredKey)
	}
	var smallest int
	for _, k := range keys {
		e, err := fx.h.KV.Get(fx.ctx(), k)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(e.Value()); smallest == 0 || n < smallest {
			smallest = n
		}
	}
	const limit = 2000
	e := fx.follow(nil, nil, func(o *Options) { o.MaxBatchBytes = limit })
	e.waitKeys(t, keys...)
	most := limit/smallest + 1
	batches := e.rec.Batches()
	for _, b := range batches {
		if len(b) > most {
			t.Fatalf("a batch of %d records of at least %d bytes, limit %d bytes", len(b), smallest, limit)
		}
	}
	if len(batches) < len(keys)/most {
		t.Fatalf("%d batches for %d records", len(batches), len(keys))
	}
}

// TestOlderRecordsAreNoOpsWhateverTheirContent: a record older than what
// the edge applied for its key is a no-op even when Check would refuse its
// content. Replayed onto the bus under a second operator's key, an old
// block over a management address and one broader than the edge allows
// change nothing and are neither counted nor reported; the same content
// dated after what the edge applied is refused as before.
func TestOlderRecordsAreNoOpsWhateverTheirContent(t *testing.T) {
	fx := newFixture(t)
	pub2, key2 := newKey(t)
	fx.policy.Operators = append(fx.policy.Operators, pub2)
	e := fx.follow(nil, nil, nil)
	t0 := time.Now().Add(-time.Minute)

	// What the edge holds for the two keys: signed deletes, which Check
	// passes whatever their prefix.
	overMgmt := block("192.0.2.0/24") // covers the fixture's 192.0.2.10
	tooBroad := block("10.0.0.0/7")   // the fixture allows /8 at most
	for _, c := range []change.Change{overMgmt, tooBroad} {
		c.Op, c.IssuedAt = change.OpDelete, t0.UnixNano()
		fx.publish(c)
	}
	fx.sentinel(e, 1)
	before, refused := e.f.Status(), len(e.refused())

	for _, c := range []change.Change{overMgmt, tooBroad} {
		c.IssuedAt = t0.Add(-time.Hour).UnixNano()
		fx.raw(keyOf(t, c), fx.sign(c, key2).Encode())
	}
	fx.sentinel(e, 2)
	e.waitCounts(t, 0, before.Ignored+2)
	if got := e.refused(); len(got) != refused {
		t.Errorf("older records reached OnRefused: %v", got[refused:])
	}
	if after := e.f.Status(); len(after.Refused) != len(before.Refused) {
		t.Errorf("refused %v → %v; want the two older records ignored, not refused", before.Refused, after.Refused)
	}

	for _, c := range []change.Change{overMgmt, tooBroad} {
		c.IssuedAt = time.Now().UnixNano()
		fx.raw(keyOf(t, c), fx.sign(c, key2).Encode())
	}
	fx.sentinel(e, 3)
	got := e.refused()
	if want := []string{change.ReasonManagement, change.ReasonTooBroad}; !slices.Equal(got[refused:], want) {
		t.Errorf("the same records dated later: refusals %v, want %v", got[refused:], want)
	}
	if held := e.rec.Entries(); len(held) != 3 {
		t.Errorf("edge holds %v, want the three sentinels only", keysOf(held))
	}
}
