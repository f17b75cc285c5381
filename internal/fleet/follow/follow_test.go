package follow

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aegis-edge/aegis/internal/fleet/change"
	"github.com/aegis-edge/aegis/internal/fleet/hub"
)

// Outcome waits are generous: the machine is shared, and a test waits
// for what must happen, not for a time budget.
const patience = 60 * time.Second

type fixture struct {
	t        *testing.T
	hubOpt   func(*hub.Options)
	connOpts []nats.Option
	dir      string
	listen   string
	h        *hub.Hub
	pub      *hub.Publisher
	opKey    ed25519.PrivateKey
	ctlKey   ed25519.PrivateKey
	policy   change.Policy
}

func newKey(t *testing.T) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func newFixture(t *testing.T) *fixture { return newFixtureWith(t, nil) }

// newFixtureWith starts the hub with options edited by tweak.
func newFixtureWith(t *testing.T, tweak func(*hub.Options)) *fixture {
	t.Helper()
	opPub, opKey := newKey(t)
	ctlPub, ctlKey := newKey(t)
	fx := &fixture{t: t, dir: t.TempDir(), opKey: opKey, ctlKey: ctlKey, policy: change.Policy{
		Operators:  []ed25519.PublicKey{opPub},
		Controller: ctlPub,
		MaxTTL:     time.Hour,
		Skew:       time.Minute,
		Broadest:   change.Broadest{BlockV4: 8, BlockV6: 32},
		Management: []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32")},
	}, hubOpt: tweak}
	fx.start("127.0.0.1:-1")
	_, port, _ := net.SplitHostPort(fx.h.Server.Addr().String())
	fx.listen = net.JoinHostPort("127.0.0.1", port) // the same port after a restart
	t.Cleanup(fx.stop)
	return fx
}

func (fx *fixture) start(listen string) {
	fx.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	opts := hub.Options{StoreDir: fx.dir, Listen: listen}
	if fx.hubOpt != nil {
		fx.hubOpt(&opts)
	}
	h, err := hub.Open(ctx, opts)
	if err != nil {
		fx.t.Fatal(err)
	}
	fx.h = h
	fx.pub, err = hub.NewPublisher(ctx, h.Conn)
	if err != nil {
		fx.t.Fatal(err)
	}
}

func (fx *fixture) stop() {
	if fx.h != nil {
		fx.h.Close()
		fx.h = nil
	}
}

func (fx *fixture) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	fx.t.Cleanup(cancel)
	return ctx
}

// sign signs c with key, stamping IssuedAt now unless set.
func (fx *fixture) sign(c change.Change, key ed25519.PrivateKey) change.Envelope {
	fx.t.Helper()
	env, err := change.Sign(c, key)
	if err != nil {
		fx.t.Fatal(err)
	}
	return env
}

func (fx *fixture) publish(c change.Change) change.Envelope {
	fx.t.Helper()
	env := fx.sign(c, fx.opKey)
	if _, err := fx.pub.Publish(fx.ctx(), env); err != nil {
		fx.t.Fatal(err)
	}
	return env
}

// raw writes value under key directly, as anyone with bus access could.
func (fx *fixture) raw(key string, value []byte) {
	fx.t.Helper()
	if _, err := fx.h.KV.Put(fx.ctx(), key, value); err != nil {
		fx.t.Fatal(err)
	}
}

func block(prefix string) change.Change {
	return change.Change{Kind: change.KindList, Op: change.OpPut, List: change.Blocklist, Prefix: netip.MustParsePrefix(prefix)}
}

func unblock(prefix string) change.Change {
	c := block(prefix)
	c.Op = change.OpDelete
	return c
}

func keyOf(t *testing.T, c change.Change) string {
	t.Helper()
	k, err := change.KeyFor(c)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

type edge struct {
	f        *Follower
	state    *MemState
	rec      *Recorder
	conn     *nats.Conn
	cancel   context.CancelFunc
	done     chan struct{}
	mu       sync.Mutex
	refusals []string
}

// follow starts a follower on a new connection, with state and rec (new
// ones when nil).
func (fx *fixture) follow(state *MemState, rec *Recorder, tweak func(*Options)) *edge {
	fx.t.Helper()
	return fx.followPrepared(state, rec, tweak, nil)
}

// followPrepared is follow with prep run on the Follower before Run.
func (fx *fixture) followPrepared(state *MemState, rec *Recorder, tweak func(*Options), prep func(*Follower)) *edge {
	fx.t.Helper()
	if state == nil {
		state = NewMemState()
	}
	if rec == nil {
		rec = NewRecorder()
	}
	nc, err := nats.Connect("nats://"+fx.listen, append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond), nats.RetryOnFailedConnect(true)}, fx.connOpts...)...)
	if err != nil {
		fx.t.Fatal(err)
	}
	v, err := change.NewVerifier(fx.policy)
	if err != nil {
		fx.t.Fatal(err)
	}
	e := &edge{state: state, rec: rec, conn: nc, done: make(chan struct{})}
	opts := Options{Conn: nc, Verifier: v, State: state, Applier: rec, Retry: 50 * time.Millisecond,
		OnRefused: func(key string, err error) {
			e.mu.Lock()
			e.refusals = append(e.refusals, change.ReasonOf(err))
			e.mu.Unlock()
		}}
	if tweak != nil {
		tweak(&opts)
	}
	e.f, err = New(opts)
	if err != nil {
		fx.t.Fatal(err)
	}
	if prep != nil {
		prep(e.f)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	go func() {
		defer close(e.done)
		e.f.Run(ctx)
	}()
	fx.t.Cleanup(e.stop)
	return e
}

// refused is what OnRefused was told so far, by reason.
func (e *edge) refused() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.refusals)
}

func (e *edge) stop() {
	e.cancel()
	<-e.done
	e.conn.Close()
}

// waitKeys waits until the recorder holds exactly the keys given.
func (e *edge) waitKeys(t *testing.T, keys ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	ok := e.rec.Wait(ctx, func(m map[string]change.Change) bool {
		if len(m) != len(keys) {
			return false
		}
		for _, k := range keys {
			if _, ok := m[k]; !ok {
				return false
			}
		}
		return true
	})
	if !ok {
		got := keysOf(e.rec.Entries())
		t.Fatalf("edge holds %d keys %v, want exactly %d: %v (status %+v)", len(got), cut(got), len(keys), cut(keys), e.f.Status())
	}
}

func cut(s []string) []string {
	if len(s) > 10 {
		return append(s[:10:10], "…")
	}
	return s
}

func keysOf(m map[string]change.Change) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// waitLooks waits until the follower has read the stream n more times.
func (e *edge) waitLooks(t *testing.T, n uint64) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for start := e.f.looks.Load(); e.f.looks.Load() < start+n; {
		if time.Now().After(deadline) {
			t.Fatalf("the follower stopped looking at the stream: %+v", e.f.Status())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *edge) waitCaughtUp(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !e.f.Status().CaughtUp {
		if time.Now().After(deadline) {
			t.Fatalf("follower never caught up: %+v", e.f.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// heldThenStopped runs a follower until it holds a block of
// 198.51.100.0/24 and one of second, and stops it: an edge gone away with
// its state and recorder, for a test of what it finds when it comes back.
func (fx *fixture) heldThenStopped(second string) (*MemState, *Recorder, change.Envelope, change.Envelope) {
	fx.t.Helper()
	state, rec := NewMemState(), NewRecorder()
	e := fx.follow(state, rec, nil)
	a, b := fx.publish(block("198.51.100.0/24")), fx.publish(block(second))
	e.waitKeys(fx.t, a.StoredKey, b.StoredKey)
	e.stop()
	return state, rec, a, b
}

// waitCounts waits until the follower has counted at least applied
// changes and ignored records, and returns its status: it counts a
// batch's once the batch is applied, after the recorder holds its
// changes, so a status read as soon as a sentinel arrives may lag.
func (e *edge) waitCounts(t *testing.T, applied, ignored uint64) Status {
	t.Helper()
	deadline := time.Now().Add(patience)
	for {
		st := e.f.Status()
		if st.Applied >= applied && st.Ignored >= ignored {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("the follower counted %d applied and %d ignored, want at least %d and %d: %+v", st.Applied, st.Ignored, applied, ignored, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFollowerAppliesPublishedChanges(t *testing.T) {
	fx := newFixture(t)
	e := fx.follow(nil, nil, nil)
	a, b := block("198.51.100.0/24"), block("2001:db8::/48")
	fx.publish(a)
	fx.publish(b)
	e.waitKeys(t, keyOf(t, a), keyOf(t, b))
	got := e.rec.Entries()[keyOf(t, a)]
	if got.Prefix != a.Prefix || got.List != change.Blocklist {
		t.Fatalf("applied %+v, want %v on the blocklist", got, a.Prefix)
	}
	fx.publish(unblock("198.51.100.0/24"))
	e.waitKeys(t, keyOf(t, b))
	if st := e.waitCounts(t, 3, 0); st.Applied != 3 || st.FullReconciles != 1 || !st.Connected {
		t.Fatalf("status %+v, want 3 applied after one (first-start) reconcile", st)
	}
}

// sentinel publishes a good change and waits for it: everything written
// before it has been processed.
func (fx *fixture) sentinel(e *edge, n int) string {
	fx.t.Helper()
	c := block(fmt.Sprintf("203.0.113.%d/32", n))
	fx.publish(c)
	k := keyOf(fx.t, c)
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	if !e.rec.Wait(ctx, func(m map[string]change.Change) bool { _, ok := m[k]; return ok }) {
		fx.t.Fatalf("sentinel %s never applied: %+v", k, e.f.Status())
	}
	return k
}

func TestFollowerRefuses(t *testing.T) {
	fx := newFixture(t)
	_, stranger := newKey(t)
	now := time.Now()
	target := block("198.51.100.0/24")
	targetKey := keyOf(t, target)
	withTTL := func(c change.Change, issued time.Time, ttl time.Duration) change.Change {
		c.IssuedAt, c.ExpiresAt = issued.UnixNano(), issued.Add(ttl).UnixNano()
		return c
	}
	tests := []struct {
		reason string
		write  func() string // writes the bad record, returns the key it used
	}{
		{change.ReasonUnknownKey, func() string {
			env := fx.sign(target, stranger)
			fx.raw(targetKey, env.Encode())
			return targetKey
		}},
		{change.ReasonBadSignature, func() string {
			env := fx.sign(target, fx.opKey)
			env.Sig[5] ^= 0x40
			fx.raw(targetKey, env.Encode())
			return targetKey
		}},
		{change.ReasonRole, func() string {
			env := fx.sign(change.Change{Kind: change.KindRate, Op: change.OpPut, Rate: &change.Rate{Class: "syn", PPS: 1, Burst: 1}}, fx.ctlKey)
			fx.raw(env.StoredKey, env.Encode())
			return env.StoredKey
		}},
		{change.ReasonKeyMismatch, func() string {
			env := fx.sign(target, fx.opKey)
			other := keyOf(t, block("198.51.101.0/24"))
			fx.raw(other, env.Encode())
			return other
		}},
		{change.ReasonExpired, func() string {
			env := fx.sign(withTTL(target, now.Add(-2*time.Hour), time.Hour), fx.opKey)
			fx.raw(targetKey, env.Encode())
			return targetKey
		}},
		{change.ReasonFuture, func() string {
			c := target
			c.IssuedAt = now.Add(time.Hour).UnixNano()
			env := fx.sign(c, fx.opKey)
			fx.raw(targetKey, env.Encode())
			return targetKey
		}},
		{change.ReasonTooBroad, func() string {
			env := fx.sign(block("10.0.0.0/7"), fx.opKey)
			fx.raw(env.StoredKey, env.Encode())
			return env.StoredKey
		}},
		{change.ReasonManagement, func() string {
			env := fx.sign(block("192.0.2.0/24"), fx.opKey)
			fx.raw(env.StoredKey, env.Encode())
			return env.StoredKey
		}},
		{change.ReasonMalformed, func() string {
			fx.raw(targetKey, []byte(`{"v":1,"key_id":"zz"}`))
			return targetKey
		}},
		{change.ReasonDigest, func() string {
			module := []byte("\x00asm\x01\x00\x00\x00")
			sum := sha256.Sum256(module)
			env := fx.sign(change.Change{Kind: change.KindFunction, Op: change.OpPut, Func: &change.Function{
				Name: "hello", Digest: hex.EncodeToString(sum[:]), Size: int64(len(module)), Spec: json.RawMessage(`{"route":"/hello"}`),
			}}, fx.opKey)
			fx.raw(env.StoredKey, env.Encode()) // the module was never stored
			return env.StoredKey
		}},
	}
	e := fx.follow(nil, nil, nil)
	e.waitCaughtUp(t)
	var sentinels []string
	for i, tt := range tests {
		t.Run(tt.reason, func(t *testing.T) {
			before := e.f.Status().Refused[tt.reason]
			key := tt.write()
			sentinels = append(sentinels, fx.sentinel(e, i+1))
			if _, ok := e.rec.Entries()[key]; ok {
				t.Fatalf("the refused record under %s was applied", key)
			}
			if got := e.f.Status().Refused[tt.reason]; got != before+1 {
				t.Fatalf("refused[%s] = %d, want %d (status %+v)", tt.reason, got, before+1, e.f.Status())
			}
			e.mu.Lock()
			last := e.refusals[len(e.refusals)-1]
			e.mu.Unlock()
			if last != tt.reason {
				t.Fatalf("OnRefused got %q, want %q", last, tt.reason)
			}
		})
	}
	e.waitKeys(t, sentinels...)
}

func TestFollowerIgnoresReplaysOlderChangesAndUnsignedDeletes(t *testing.T) {
	fx := newFixture(t)
	e := fx.follow(nil, nil, nil)
	now := time.Now()
	c := block("198.51.100.0/24")
	c.IssuedAt = now.UnixNano()
	env := fx.publish(c)
	key := env.StoredKey
	other := fx.publish(block("198.51.101.0/24"))
	e.waitKeys(t, key, other.StoredKey)
	e.waitCounts(t, 2, 0)

	older := c
	older.IssuedAt = now.Add(-time.Minute).UnixNano()
	older.Op = change.OpDelete
	steps := []struct {
		name  string
		write func() error
	}{
		{"replay", func() error { _, err := fx.h.KV.Put(fx.ctx(), key, env.Encode()); return err }},
		{"older signed delete", func() error { _, err := fx.h.KV.Put(fx.ctx(), key, fx.sign(older, fx.opKey).Encode()); return err }},
		{"unsigned delete", func() error { return fx.h.KV.Delete(fx.ctx(), key) }},
		{"unsigned purge", func() error { return fx.h.KV.Purge(fx.ctx(), other.StoredKey) }},
	}
	want := []string{key, other.StoredKey}
	for i, step := range steps {
		// Each step is followed by a sentinel, so it is its key's last
		// revision when the follower reads it.
		before := e.f.Status()
		if err := step.write(); err != nil {
			t.Fatal(err)
		}
		want = append(want, fx.sentinel(e, i+1))
		e.waitKeys(t, want...)
		st := e.waitCounts(t, before.Applied+1, before.Ignored+1)
		if st.Applied != before.Applied+1 || st.Ignored != before.Ignored+1 || len(st.Refused) != 0 {
			t.Fatalf("%s: status %+v after %+v: want it ignored and only the sentinel applied", step.name, st, before)
		}
	}
	for _, b := range e.rec.Batches() {
		for _, ch := range b {
			if ch.Key == key && ch.Op == change.OpDelete {
				t.Fatalf("a delete reached the applier: %+v", ch)
			}
		}
	}
}

func TestFollowerCatchesUpAfterRestart(t *testing.T) {
	fx := newFixture(t)
	state, rec := NewMemState(), NewRecorder()
	e := fx.follow(state, rec, nil)
	a, b, c := fx.publish(block("198.51.100.0/24")), fx.publish(block("198.51.101.0/24")), fx.publish(block("198.51.102.0/24"))
	e.waitKeys(t, a.StoredKey, b.StoredKey, c.StoredKey)
	e.stop()

	d := fx.publish(block("198.51.103.0/24"))
	fx.publish(unblock("198.51.100.0/24"))
	b2 := block("198.51.101.0/24")
	b2.Reason = "renewed"
	fx.publish(b2)

	rec2 := NewRecorder()
	e2 := fx.follow(state, rec2, nil)
	e2.waitCaughtUp(t)
	// Only what changed while the edge was away comes back: three
	// changes, nothing ignored, no reconcile.
	st := e2.f.Status()
	if st.Applied != 3 || st.Ignored != 0 || st.FullReconciles != 0 {
		t.Fatalf("after restart: status %+v, want 3 applied, 0 ignored, no full reconcile", st)
	}
	got := rec2.Entries()
	if len(got) != 2 || got[d.StoredKey].Op != change.OpPut || got[b.StoredKey].Reason != "renewed" {
		t.Fatalf("after restart the edge got %+v", got)
	}
}

func TestFollowerCatchesUpAfterHubRestart(t *testing.T) {
	fx := newFixture(t)
	e := fx.follow(nil, nil, nil)
	a := fx.publish(block("198.51.100.0/24"))
	e.waitKeys(t, a.StoredKey)

	fx.stop()
	deadline := time.Now().Add(patience)
	for e.f.Status().Connected {
		if time.Now().After(deadline) {
			t.Fatal("the follower never noticed the hub was gone")
		}
		time.Sleep(10 * time.Millisecond)
	}
	fx.start(fx.listen)
	b := fx.publish(block("198.51.101.0/24"))
	fx.publish(unblock("198.51.100.0/24"))
	e.waitKeys(t, b.StoredKey)
	if st := e.f.Status(); st.FullReconciles != 1 {
		t.Fatalf("status %+v: a hub restart must not force a full reconcile", st)
	}
}

func TestFollowerReconcilesAfterTombstonesAreCompacted(t *testing.T) {
	fx := newFixture(t)
	state, rec, a, b := fx.heldThenStopped("2001:db8::/48")

	fx.publish(unblock("198.51.100.0/24"))
	c := fx.publish(block("198.51.102.0/24"))
	n, err := hub.CompactTombstones(fx.ctx(), fx.h.JS, time.Now().Add(time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("CompactTombstones = %d, %v; want 1 removed", n, err)
	}
	if _, err := fx.h.KV.Get(fx.ctx(), a.StoredKey); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("the tombstone is still there: %v", err)
	}

	e2 := fx.follow(state, rec, nil)
	e2.waitKeys(t, b.StoredKey, c.StoredKey)
	st := e2.f.Status()
	if st.FullReconciles != 1 {
		t.Fatalf("status %+v: want one full reconcile", st)
	}
	var reconciled bool
	for _, batch := range rec.Batches() {
		for _, ch := range batch {
			if ch.Key == a.StoredKey && ch.Op == change.OpDelete && ch.Reconciled {
				reconciled = true
			}
		}
	}
	if !reconciled {
		t.Fatal("the entry gone on the hub was not removed by a reconciled delete")
	}
	// A replay of the old put after the reconcile is still a no-op.
	fx.raw(a.StoredKey, a.Encode())
	s := fx.sentinel(e2, 1)
	e2.waitKeys(t, b.StoredKey, c.StoredKey, s)
}

func TestFollowerReconcilesRecreatedBucket(t *testing.T) {
	fx := newFixture(t)
	e := fx.follow(nil, nil, func(o *Options) { o.Recheck = 50 * time.Millisecond })
	a, b := fx.publish(block("198.51.100.0/24")), fx.publish(block("198.51.101.0/24"))
	e.waitKeys(t, a.StoredKey, b.StoredKey)

	if err := fx.h.JS.DeleteKeyValue(fx.ctx(), hub.Bucket); err != nil {
		t.Fatal(err)
	}
	var err error
	if fx.h.KV, fx.h.Modules, err = hub.EnsureBuckets(fx.ctx(), fx.h.JS, 1); err != nil {
		t.Fatal(err)
	}
	if fx.pub, err = hub.NewPublisher(fx.ctx(), fx.h.Conn); err != nil {
		t.Fatal(err)
	}
	b2 := block("198.51.101.0/24")
	b2.Reason = "again"
	fx.publish(b2)
	c := fx.publish(block("198.51.102.0/24"))
	// The running edge notices the new bucket, removes a and takes b2, c.
	e.waitKeys(t, b.StoredKey, c.StoredKey)
	deadline := time.Now().Add(patience)
	for e.rec.Entries()[b.StoredKey].Reason != "again" {
		if time.Now().After(deadline) {
			t.Fatalf("b was not updated: %+v", e.f.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := e.f.Status(); st.FullReconciles != 2 {
		t.Fatalf("status %+v: want the first-start reconcile and one more", st)
	}
}

func TestFollowerFetchesModules(t *testing.T) {
	fx := newFixture(t)
	e := fx.follow(nil, nil, nil)
	module := []byte("\x00asm\x01\x00\x00\x00 a module")
	digest, err := fx.pub.PutModule(fx.ctx(), module)
	if err != nil {
		t.Fatal(err)
	}
	env := fx.publish(change.Change{Kind: change.KindFunction, Op: change.OpPut, Func: &change.Function{
		Name: "hello", Digest: digest, Size: int64(len(module)), Spec: json.RawMessage(`{"route":"/hello"}`),
	}})
	e.waitKeys(t, env.StoredKey)
	got := e.rec.Entries()[env.StoredKey]
	if string(got.Module) != string(module) || string(got.Func.Spec) != `{"route":"/hello"}` {
		t.Fatalf("applied %+v, want the module and spec", got)
	}
}

func TestApplierFailureResends(t *testing.T) {
	fx := newFixture(t)
	rec := NewRecorder()
	var fails sync.Mutex
	failing := true
	rec.Fail = func([]change.Change) error {
		fails.Lock()
		defer fails.Unlock()
		if failing {
			return errors.New("store is busy")
		}
		return nil
	}
	e := fx.follow(nil, rec, nil)
	a := fx.publish(block("198.51.100.0/24"))
	deadline := time.Now().Add(patience)
	for e.f.Status().LastError == "" {
		if time.Now().After(deadline) {
			t.Fatal("the applier's failure was never reported")
		}
		time.Sleep(10 * time.Millisecond)
	}
	fails.Lock()
	failing = false
	fails.Unlock()
	e.waitKeys(t, a.StoredKey)
}

func TestControllerMayNotReplaceAnOperatorsEntry(t *testing.T) {
	fx := newFixture(t)
	var mu sync.Mutex
	clock := time.Now()
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	e := fx.follow(nil, nil, func(o *Options) { o.Now = now })
	at := func(c change.Change, issued time.Time, ttl time.Duration) change.Change {
		c.IssuedAt, c.ExpiresAt = issued.UnixNano(), issued.Add(ttl).UnixNano()
		return c
	}
	publishAs := func(c change.Change, key ed25519.PrivateKey) string {
		t.Helper()
		env := fx.sign(c, key)
		if _, err := fx.pub.Publish(fx.ctx(), env); err != nil {
			t.Fatal(err)
		}
		return env.StoredKey
	}
	t0 := now()
	// A promotion of a source nobody listed is applied, marked as the controller's.
	promo := publishAs(at(block("203.0.113.50/32"), t0, 10*time.Minute), fx.ctlKey)
	e.waitKeys(t, promo)
	if !e.rec.Entries()[promo].ByController {
		t.Fatal("a controller promotion is not marked ByController")
	}
	// Over an operator's live block, the controller's shorter block is refused.
	opKey := publishAs(at(block("198.51.100.7/32"), t0, 10*time.Minute), fx.opKey)
	e.waitKeys(t, promo, opKey)
	publishAs(at(block("198.51.100.7/32"), t0.Add(time.Second), time.Minute), fx.ctlKey)
	fx.sentinel(e, 1)
	if got := e.rec.Entries()[opKey]; got.ByController || e.f.Status().Refused[change.ReasonRole] != 1 {
		t.Fatalf("the controller replaced an operator's entry: %+v, status %+v", got, e.f.Status())
	}
	// Once the operator's entry has expired, the controller may block the source again.
	mu.Lock()
	clock = t0.Add(11 * time.Minute)
	mu.Unlock()
	publishAs(at(block("198.51.100.7/32"), t0.Add(11*time.Minute), 5*time.Minute), fx.ctlKey)
	deadline := time.Now().Add(patience)
	for !e.rec.Entries()[opKey].ByController {
		if time.Now().After(deadline) {
			t.Fatalf("the controller's later promotion was not applied: %+v", e.f.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMissedCompaction(t *testing.T) {
	tests := []struct {
		prevCursor, prevWM, wm uint64
		want                   bool
	}{
		{100, 0, 0, false},     // nothing removed
		{100, 50, 50, false},   // no new removal
		{100, 50, 80, false},   // removed tombstones the edge had read
		{100, 50, 150, true},   // removed tombstones beyond where the edge was
		{100, 0, 100, false},   // up to the edge's own cursor
		{100, 200, 200, false}, // an old watermark (the session started below it and reconciled)
	}
	for _, tt := range tests {
		if got := missedCompaction(tt.prevCursor, tt.prevWM, tt.wm); got != tt.want {
			t.Errorf("missedCompaction(%d, %d, %d) = %v, want %v", tt.prevCursor, tt.prevWM, tt.wm, got, tt.want)
		}
	}
}

// TestCompactionDoesNotDisturbALiveEdge checks that removing tombstones a
// running edge has already applied triggers no reconcile.
func TestCompactionDoesNotDisturbALiveEdge(t *testing.T) {
	fx := newFixture(t)
	e := fx.follow(nil, nil, func(o *Options) { o.Recheck = 20 * time.Millisecond })
	a := fx.publish(block("198.51.100.0/24"))
	fx.publish(unblock("198.51.100.0/24"))
	b := fx.publish(block("198.51.101.0/24"))
	e.waitKeys(t, b.StoredKey)
	// Compaction removes old tombstones, ones an edge that keeps up had
	// applied several looks at the stream ago. Let it look twice first,
	// or the tombstone is as new as the follower's last look and a
	// reconcile is the safe answer.
	e.waitLooks(t, 2)
	if n, err := hub.CompactTombstones(fx.ctx(), fx.h.JS, time.Now().Add(time.Minute)); err != nil || n != 1 {
		t.Fatalf("CompactTombstones = %d, %v", n, err)
	}
	// Let the follower look at the stream again, twice.
	e.waitLooks(t, 2)
	s := fx.sentinel(e, 1)
	e.waitKeys(t, b.StoredKey, s)
	if st := e.f.Status(); st.FullReconciles != 1 {
		t.Fatalf("status %+v: compaction of applied tombstones caused a reconcile", st)
	}
	if _, ok := e.rec.Entries()[a.StoredKey]; ok {
		t.Fatal("the deleted entry came back")
	}
}

// TestFollowerReconcilesOnceAfterUpgrade: an edge built before the binary
// form passed over batch records as malformed and moved its cursor past
// them. Its cursor says so (no Forms), so the first start of a build that
// reads them reconciles fully and applies them; the next start does not
// reconcile again.
func TestFollowerReconcilesOnceAfterUpgrade(t *testing.T) {
	fx := newFixture(t)
	state, rec := NewMemState(), NewRecorder()
	e := fx.follow(state, rec, nil)
	single := fx.publish(block("198.51.100.0/24"))
	envs, err := change.SignImport([]change.Change{block("203.0.113.1/32"), block("203.0.113.2/32"), block("203.0.113.3/32")}, fx.opKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, env := range envs {
		if env.Encode()[0] == '{' {
			t.Fatal("a batch record was written as JSON")
		}
		if _, err := fx.pub.Publish(fx.ctx(), env); err != nil {
			t.Fatal(err)
		}
	}
	e.waitKeys(t, single.StoredKey, envs[0].StoredKey, envs[1].StoredKey, envs[2].StoredKey)
	e.stop()

	// What the older build left: the batch records never applied, the
	// cursor past them and without Forms.
	state.mu.Lock()
	for _, env := range envs {
		delete(state.applied, env.StoredKey)
	}
	state.cur.Forms = 0
	state.mu.Unlock()

	rec2 := NewRecorder()
	e2 := fx.follow(state, rec2, nil)
	e2.waitKeys(t, envs[0].StoredKey, envs[1].StoredKey, envs[2].StoredKey)
	e2.waitCaughtUp(t)
	if st := e2.f.Status(); st.FullReconciles != 1 {
		t.Fatalf("after the upgrade: status %+v, want one full reconcile", st)
	}
	if _, again := rec2.Entries()[single.StoredKey]; again {
		t.Error("the reconcile applied again a record the edge held")
	}
	e2.stop()
	if cur, _ := state.Cursor(); cur.Forms != change.RecordForms {
		t.Fatalf("cursor after the reconcile: %+v, want Forms %d", cur, change.RecordForms)
	}
	e3 := fx.follow(state, NewRecorder(), nil)
	e3.waitCaughtUp(t)
	if st := e3.f.Status(); st.FullReconciles != 0 {
		t.Fatalf("second start after the upgrade: status %+v, want no full reconcile", st)
	}
}

// TestReconcileCutShortIsDoneAgain: an edge whose cursor is past the
// watermark but which never read a tombstone compaction removed must
// reconcile fully, and a reconcile cut short (here by the applier's error;
// a crash leaves the saved cursor just so) must be done again until it
// completes: else the entry the hub deleted stays on the edge for good.
// The need is held in memory (forceFull, after a look at the stream) and
// in the saved cursor (Cursor.Full, across a restart).
func TestReconcileCutShortIsDoneAgain(t *testing.T) {
	for _, saved := range []bool{false, true} {
		t.Run(fmt.Sprintf("saved=%v", saved), func(t *testing.T) {
			fx := newFixture(t)
			state, rec, _, b := fx.heldThenStopped("198.51.101.0/24")
			fx.publish(unblock("198.51.100.0/24"))
			if n, err := hub.CompactTombstones(fx.ctx(), fx.h.JS, time.Now().Add(time.Minute)); err != nil || n != 1 {
				t.Fatalf("CompactTombstones = %d, %v", n, err)
			}
			// The edge moved past the tombstone without reading it: its
			// cursor alone asks for no reconcile.
			st, err := fx.h.JS.Stream(fx.ctx(), hub.Stream)
			if err != nil {
				t.Fatal(err)
			}
			info, err := st.Info(fx.ctx())
			if err != nil {
				t.Fatal(err)
			}
			state.mu.Lock()
			state.cur.Seq = info.State.LastSeq
			if saved {
				state.cur.Full = "tombstones were removed while the edge was behind them"
			}
			state.mu.Unlock()

			// The first apply of the reconcile fails; the session ends and
			// the next one must reconcile fully again.
			var calls atomic.Int32
			rec.Fail = func([]change.Change) error {
				if calls.Add(1) == 1 {
					return errors.New("the store is busy")
				}
				return nil
			}
			e2 := fx.followPrepared(state, rec, func(o *Options) { o.Retry = 20 * time.Millisecond }, func(f *Follower) {
				if !saved {
					// What the look at the stream that found the missed
					// compaction leaves in memory.
					f.forceFull = "tombstones were removed while the edge was behind them"
				}
			})
			e2.waitKeys(t, b.StoredKey)
			e2.waitCaughtUp(t)
			if st := e2.f.Status(); calls.Load() < 2 || st.FullReconciles != 1 {
				t.Errorf("applies %d, status %+v: want the reconcile failed once, then done", calls.Load(), st)
			}
			e2.stop()
			if cur, _ := state.Cursor(); cur.Full != "" || e2.f.forceFull != "" {
				t.Errorf("after the reconcile: cursor %+v, forceFull %q; want both cleared", cur, e2.f.forceFull)
			}
		})
	}
}
