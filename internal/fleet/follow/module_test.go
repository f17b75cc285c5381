package follow

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aegis-edge/aegis/internal/fleet/change"
	"github.com/aegis-edge/aegis/internal/fleet/hub"
)

// The module store is the bus's: anyone who may write to it can replace a
// module's meta or chunks without any key. These tests do so and check
// that the edge refuses the function, goes on with what follows it, reads
// no more than the signed size, and deploys the function once the hub
// holds it whole.

// writeMeta replaces name's object meta in the module store.
func (fx *fixture) writeMeta(name string, meta []byte) {
	fx.t.Helper()
	m := nats.NewMsg("$O." + hub.ModuleBucket + ".M." + base64.URLEncoding.EncodeToString([]byte(name)))
	m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	m.Data = meta
	if _, err := fx.h.JS.PublishMsg(fx.ctx(), m); err != nil {
		fx.t.Fatal(err)
	}
}

func deploy(name, digest string, size int64) change.Change {
	return change.Change{Kind: change.KindFunction, Op: change.OpPut, Func: &change.Function{
		Name: name, Digest: digest, Size: size, Spec: json.RawMessage(`{"route":"/` + name + `"}`)}}
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// TestForgedModuleMetaIsRefused: each way of spoiling a signed module's
// meta makes the edge refuse that function (digest) and apply the block
// published after it; none stops the follower (each used to end the
// session on the same record for ever).
func TestForgedModuleMetaIsRefused(t *testing.T) {
	module := []byte("\x00asm\x01\x00\x00\x00 a module")
	cases := []struct {
		name string
		meta func(info jetstream.ObjectInfo) []byte
	}{
		{"not json", func(jetstream.ObjectInfo) []byte { return []byte("not json") }},
		{"no nuid", func(info jetstream.ObjectInfo) []byte { info.NUID = ""; b, _ := json.Marshal(info); return b }},
		{"a link to itself", func(info jetstream.ObjectInfo) []byte {
			info.Opts = &jetstream.ObjectMetaOptions{Link: &jetstream.ObjectLink{Bucket: hub.ModuleBucket, Name: info.Name}}
			b, _ := json.Marshal(info)
			return b
		}},
		{"chunks that are not there", func(info jetstream.ObjectInfo) []byte {
			info.NUID = "NoSuchChunksXXXXXXXXXX"
			b, _ := json.Marshal(info)
			return b
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t)
			digest, err := fx.pub.PutModule(fx.ctx(), module)
			if err != nil {
				t.Fatal(err)
			}
			info, err := fx.h.Modules.GetInfo(fx.ctx(), digest)
			if err != nil {
				t.Fatal(err)
			}
			fx.writeMeta(digest, tc.meta(*info)) // the attacker
			fn := fx.publish(deploy("hello", digest, int64(len(module))))
			later := fx.publish(block("198.51.100.0/24"))
			e := fx.follow(nil, nil, func(o *Options) { o.FetchTimeout = time.Second })
			e.waitKeys(t, later.StoredKey)
			e.mu.Lock()
			refused := slices.Clone(e.refusals)
			e.mu.Unlock()
			if !slices.Contains(refused, change.ReasonDigest) {
				t.Errorf("refusals %v, want one for the module (digest)", refused)
			}
			if _, ok := e.rec.Entries()[fn.StoredKey]; ok {
				t.Error("the function was deployed from a forged meta")
			}
		})
	}
}

// TestModuleReadIsBounded: an object behind a signed digest, stored much
// larger than signed under a meta that claims the signed size, is read
// only up to the signed size before it is refused.
func TestModuleReadIsBounded(t *testing.T) {
	fx := newFixture(t)
	real := bytes.Repeat([]byte{'m'}, 100)
	digest := digestOf(real)
	info, err := fx.h.Modules.PutBytes(fx.ctx(), digest, bytes.Repeat([]byte{'x'}, 48<<20))
	if err != nil {
		t.Fatal(err)
	}
	info.Size = uint64(len(real))
	meta, _ := json.Marshal(info)
	fx.writeMeta(digest, meta)
	fn := fx.publish(deploy("hello", digest, int64(len(real))))
	later := fx.publish(block("198.51.100.0/24"))

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	e := fx.follow(nil, nil, nil)
	e.waitKeys(t, later.StoredKey)
	runtime.ReadMemStats(&after)
	if _, ok := e.rec.Entries()[fn.StoredKey]; ok {
		t.Fatal("a 48 MiB object was deployed as a 100-byte module")
	}
	// The hub runs in this process too; before the bound the edge alone
	// read all 48 MiB.
	if read := after.TotalAlloc - before.TotalAlloc; read > 24<<20 {
		t.Errorf("following one deploy of a 100-byte module allocated %d MiB", read>>20)
	}
}

// TestRefusedFunctionIsFetchedAgain: a deploy whose module is not (yet, or
// any more) whole on the hub is refused, then deployed once the module is
// there: while the follower runs (Recheck), and by a follower restarted
// after the refusal, whose cursor is past the record.
func TestRefusedFunctionIsFetchedAgain(t *testing.T) {
	fx := newFixture(t)
	module := []byte("\x00asm\x01\x00\x00\x00 a module")
	digest := digestOf(module)
	fn := fx.publish(deploy("hello", digest, int64(len(module)))) // the module is not there
	state := NewMemState()
	e := fx.follow(state, nil, func(o *Options) { o.Recheck = 50 * time.Millisecond })
	e.waitCaughtUp(t)
	e.mu.Lock()
	refused := slices.Clone(e.refusals)
	e.mu.Unlock()
	if !slices.Contains(refused, change.ReasonDigest) {
		t.Fatalf("refusals %v, want the missing module's (digest)", refused)
	}
	if _, err := fx.pub.PutModule(fx.ctx(), module); err != nil {
		t.Fatal(err)
	}
	e.waitKeys(t, fn.StoredKey)
	if got := e.rec.Entries()[fn.StoredKey]; !bytes.Equal(got.Module, module) {
		t.Fatalf("deployed %q, want the module", got.Module)
	}
	e.stop()

	// A second function refused, then the edge restarts: the record is
	// behind its cursor, and it is fetched at the next session's start.
	second := []byte("\x00asm\x01\x00\x00\x00 another")
	fn2 := fx.publish(deploy("second", digestOf(second), int64(len(second))))
	e2 := fx.follow(state, nil, nil)
	e2.waitCaughtUp(t)
	e2.stop()
	cur, _ := state.Cursor()
	if _, err := fx.pub.PutModule(fx.ctx(), second); err != nil {
		t.Fatal(err)
	}
	e3 := fx.follow(state, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	if !e3.rec.Wait(ctx, func(m map[string]change.Change) bool { _, ok := m[fn2.StoredKey]; return ok }) {
		t.Fatalf("the function refused before the restart was never deployed (cursor %d): %+v", cur.Seq, e3.f.Status())
	}
	if st := e3.f.Status(); st.Ignored != 0 {
		t.Errorf("the retry counted %d records as ignored", st.Ignored)
	}
}

// TestRefusedFunctionsAreRetriedSparingly: a function refused for its
// module is counted once, however often it is fetched again; and spoiled
// modules (a meta naming chunks that are not there, each fetch waiting
// until FetchTimeout on the session's goroutine) are fetched again one a
// round, each less and less often, so changes behind them are not held up
// round after round.
func TestRefusedFunctionsAreRetriedSparingly(t *testing.T) {
	fx := newFixture(t)
	missing := []byte("\x00asm\x01\x00\x00\x00 never stored")
	fx.publish(deploy("missing", digestOf(missing), int64(len(missing))))
	const spoiled = 3
	for i := range spoiled {
		module := []byte(fmt.Sprintf("\x00asm\x01\x00\x00\x00 module %d", i))
		digest, err := fx.pub.PutModule(fx.ctx(), module)
		if err != nil {
			t.Fatal(err)
		}
		info, err := fx.h.Modules.GetInfo(fx.ctx(), digest)
		if err != nil {
			t.Fatal(err)
		}
		info.NUID = "NoSuchChunksXXXXXXXXXX"
		meta, _ := json.Marshal(info)
		fx.writeMeta(digest, meta)
		fx.publish(deploy(fmt.Sprintf("f%d", i), digest, int64(len(module))))
	}
	recheck := 50 * time.Millisecond
	e := fx.follow(nil, nil, func(o *Options) { o.Recheck = recheck; o.FetchTimeout = 200 * time.Millisecond })
	e.waitCaughtUp(t)
	start, looks0 := time.Now(), e.f.looks.Load()
	e.waitLooks(t, 40)
	elapsed, rounds := time.Since(start), e.f.looks.Load()-looks0
	fetched := e.f.fetches.Load()
	// Without the backoff each round fetched all four again. With it a key
	// waits recheck, then twice as long each time: over the elapsed time
	// at most 2 + log2(elapsed/recheck) fetches each.
	bound := uint64(4 * (2 + math.Log2(float64(elapsed)/float64(recheck))))
	t.Logf("%d fetches in %d rounds over %s (bound %d)", fetched, rounds, elapsed.Round(time.Millisecond), bound)
	if fetched > bound || fetched > 4+rounds {
		t.Errorf("%d fetches in %d rounds over %s: want at most one a round and %d in all", fetched, rounds, elapsed, bound)
	}
	st := e.f.Status()
	e.mu.Lock()
	n := len(e.refusals)
	e.mu.Unlock()
	if st.Refused[change.ReasonDigest] != 4 || n != 4 {
		t.Errorf("four refused deploys counted %d times (OnRefused %d)", st.Refused[change.ReasonDigest], n)
	}
}

// TestSwappedModuleIsRefused: a bus writer puts other bytes of the module's
// exact size under its digest's name, with a meta that reads whole: only
// the hash can tell, and the deploy is refused (digest) while what follows
// is applied. Its variant, one byte changed at the end, as well.
func TestSwappedModuleIsRefused(t *testing.T) {
	module := []byte("\x00asm\x01\x00\x00\x00 the module the operator signed")
	for name, swapped := range map[string][]byte{
		"other bytes":   bytes.Repeat([]byte{'x'}, len(module)),
		"one byte last": append(slices.Clone(module[:len(module)-1]), module[len(module)-1]^1),
	} {
		t.Run(name, func(t *testing.T) {
			fx := newFixture(t)
			digest := digestOf(module)
			if _, err := fx.h.Modules.PutBytes(fx.ctx(), digest, swapped); err != nil {
				t.Fatal(err)
			}
			fn := fx.publish(deploy("hello", digest, int64(len(module))))
			later := fx.publish(block("198.51.100.0/24"))
			e := fx.follow(nil, nil, nil)
			e.waitKeys(t, later.StoredKey)
			if _, ok := e.rec.Entries()[fn.StoredKey]; ok {
				t.Fatal("a module that does not hash to the signed digest was deployed")
			}
			if got := e.refused(); !slices.Contains(got, change.ReasonDigest) {
				t.Errorf("refusals %v, want %s", got, change.ReasonDigest)
			}
		})
	}
}
