package change

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

func batchOf(n int, now time.Time) []Change {
	out := make([]Change, n)
	for i := range out {
		out[i] = block(fmt.Sprintf("10.%d.%d.0/24", i/256, i%256), now)
	}
	return out
}

func TestSignBatch(t *testing.T) {
	pub, priv := newKey(t)
	now := time.Now()
	for _, n := range []int{1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 33, 100, 1000} {
		envs, err := SignBatch(batchOf(n, now), priv)
		if err != nil {
			t.Fatal(err)
		}
		v, _ := NewVerifier(Policy{Operators: []ed25519.PublicKey{pub}})
		for i, env := range envs {
			dec, err := Decode(env.Encode())
			if err != nil {
				t.Fatalf("n=%d record %d: %v", n, i, err)
			}
			dec.StoredKey = env.StoredKey
			if _, err := v.Check(dec, now); err != nil {
				t.Fatalf("n=%d record %d: %v", n, i, err)
			}
			// A fresh verifier (nothing cached) accepts it too.
			fresh, _ := NewVerifier(Policy{Operators: []ed25519.PublicKey{pub}})
			if _, err := fresh.Check(dec, now); err != nil {
				t.Fatalf("n=%d record %d on a fresh verifier: %v", n, i, err)
			}
		}
	}
}

func TestSignBatchForgeries(t *testing.T) {
	pub, priv := newKey(t)
	now := time.Now()
	envs, err := SignBatch(batchOf(10, now), priv)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := NewVerifier(Policy{Operators: []ed25519.PublicKey{pub}})
	// Verify the genuine batch first, so its root is cached: forgeries
	// must fail against a warm cache too.
	for _, env := range envs {
		if _, err := v.Check(env, now); err != nil {
			t.Fatal(err)
		}
	}
	clone := func(e Envelope) Envelope {
		b := *e.Batch
		b.Path = append([][32]byte(nil), b.Path...)
		e.Batch = &b
		return e
	}
	tests := []struct {
		name string
		env  Envelope
	}{
		{"path hash flipped", func() Envelope { e := clone(envs[3]); e.Batch.Path[1][0] ^= 1; return e }()},
		{"index moved", func() Envelope { e := clone(envs[3]); e.Batch.Index = 2; return e }()},
		{"size changed", func() Envelope { e := clone(envs[3]); e.Batch.Size = 11; return e }()},
		{"another record's path", func() Envelope { e := clone(envs[3]); e.Batch = clone(envs[4]).Batch; return e }()},
		{"path cut short", func() Envelope { e := clone(envs[3]); e.Batch.Path = e.Batch.Path[:2]; return e }()},
		{"payload edited", func() Envelope {
			e := clone(envs[3])
			e.Payload = []byte(string(e.Payload[:len(e.Payload)-1]) + " ")
			return e
		}()},
		{"batch signature as a single one", func() Envelope { e := envs[3]; e.Batch = nil; return e }()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := v.Check(tt.env, now); ReasonOf(err) != ReasonBadSignature {
				t.Fatalf("Check = %v, want bad_signature", err)
			}
		})
	}
	// A single record's signature is no batch signature.
	single, _ := Sign(batchOf(1, now)[0], priv)
	single.Batch = &Batch{Index: 0, Size: 1}
	if _, err := v.Check(single, now); ReasonOf(err) != ReasonBadSignature {
		t.Fatalf("single signature presented as a batch of one: %v", err)
	}
	if _, err := SignBatch(append(batchOf(2, now), batchOf(1, now)...), priv); err == nil {
		t.Fatal("SignBatch accepted two changes for one key")
	}
}

// BenchmarkCheckBatch is BenchmarkCheck for records of 1,000-change
// batches: one signature verification per batch.
func BenchmarkCheckBatch(b *testing.B) {
	pub, priv := newKey(b)
	v, _ := NewVerifier(Policy{Operators: []ed25519.PublicKey{pub}})
	s := v.Session() // as the follower checks a delivery
	now := time.Now()
	envs, err := SignBatch(batchOf(1000, now), priv)
	if err != nil {
		b.Fatal(err)
	}
	var data [][]byte
	for _, e := range envs {
		data = append(data, e.Encode())
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		e, err := Decode(data[i%len(data)])
		if err != nil {
			b.Fatal(err)
		}
		e.StoredKey = envs[i%len(envs)].StoredKey
		if _, err := s.Check(e, now); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// TestSignImport signs an import in batches of ImportBatch: every record
// verifies on its own, each batch has its own signature and size, and a key
// given twice is refused whether its two changes fall in one batch or two.
func TestSignImport(t *testing.T) {
	pub, priv := newKey(t)
	now := time.Now()
	n := 2*ImportBatch + 88
	envs, err := SignImport(batchOf(n, now), priv)
	if err != nil {
		t.Fatal(err)
	}
	if len(envs) != n {
		t.Fatalf("%d envelopes for %d changes", len(envs), n)
	}
	v, _ := NewVerifier(Policy{Operators: []ed25519.PublicKey{pub}})
	for i, env := range envs {
		wantSize := uint32(ImportBatch)
		if i >= 2*ImportBatch {
			wantSize = 88
		}
		if env.Batch == nil || env.Batch.Size != wantSize || env.Batch.Index != uint32(i%ImportBatch) {
			t.Fatalf("record %d: batch %+v, want index %d of %d", i, env.Batch, i%ImportBatch, wantSize)
		}
		dec, err := Decode(env.Encode())
		if err != nil {
			t.Fatal(err)
		}
		dec.StoredKey = env.StoredKey
		if _, err := v.Check(dec, now); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	if string(envs[0].Sig) == string(envs[ImportBatch].Sig) {
		t.Error("two batches share a signature")
	}
	for _, second := range []int{3, ImportBatch + 3} {
		cs := batchOf(n, now)
		cs[second] = cs[1]
		if _, err := SignImport(cs, priv); err == nil {
			t.Errorf("a key given at 1 and %d was signed", second)
		}
	}
}

// TestPrepareImportChecksEverythingFirst: the importer publishes each
// batch as it is signed, so a bad change or a repeated key late in the
// import must be found before the first batch is signed. Sign hands out
// batches in order, stops at emit's error, and refuses another key or a
// source that no longer gives the changes it was prepared with.
func TestPrepareImportChecksEverythingFirst(t *testing.T) {
	_, priv := newKey(t)
	now := time.Now()
	n := 3 * ImportBatch
	source := func(cs []Change) func(int) Change { return func(i int) Change { return cs[i] } }
	bad := map[string]func([]Change){
		"a reason with a control character": func(cs []Change) { cs[n-2].Reason = "bad\x00reason" },
		"a key given twice":                 func(cs []Change) { cs[n-1] = cs[0] },
		"a list that is not one":            func(cs []Change) { cs[2*ImportBatch+5].List = "greylist" },
	}
	for name, spoil := range bad {
		cs := batchOf(n, now)
		spoil(cs)
		if im, err := PrepareImport(n, source(cs), priv); err == nil {
			t.Errorf("%s: prepared (%d keys)", name, len(im.Keys()))
		}
	}

	cs := batchOf(n+1, now)
	im, err := PrepareImport(n+1, source(cs), priv)
	if err != nil {
		t.Fatal(err)
	}
	var got []Envelope
	if err := im.Sign(priv, func(b []Envelope) error {
		if len(b) > ImportBatch {
			t.Fatalf("a batch of %d", len(b))
		}
		got = append(got, b...)
		return nil
	}); err != nil || len(got) != n+1 {
		t.Fatalf("%d records emitted, err %v; want %d", len(got), err, n+1)
	}
	for i, e := range got {
		if e.StoredKey != im.Keys()[i] {
			t.Fatalf("record %d is %s, want %s: out of order", i, e.StoredKey, im.Keys()[i])
		}
	}

	stop := errors.New("the hub went away")
	calls := 0
	if err := im.Sign(priv, func([]Envelope) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("emit failing: %d calls, err %v; want one call and its error", calls, err)
	}
	_, other := newKey(t)
	if err := im.Sign(other, func([]Envelope) error { return nil }); err == nil {
		t.Error("signed with another key than it was prepared for")
	}
	// Changes without a time of issue get one, the same in every batch:
	// the one they were checked with.
	undated := batchOf(n, now)
	for i := range undated {
		undated[i].IssuedAt = 0
	}
	im2, err := PrepareImport(n, source(undated), priv)
	if err != nil {
		t.Fatal(err)
	}
	issued := map[int64]bool{}
	if err := im2.Sign(priv, func(b []Envelope) error {
		for _, e := range b {
			c, err := ParsePayload(e.Payload)
			if err != nil {
				return err
			}
			issued[c.IssuedAt] = true
		}
		return nil
	}); err != nil || len(issued) != 1 || issued[0] {
		t.Fatalf("undated changes signed with times %v (%v), want one time for all", issued, err)
	}
	cs[ImportBatch+3] = block("192.0.2.0/24", now) // the source changed since
	emitted := 0
	if err := im.Sign(priv, func(b []Envelope) error { emitted += len(b); return nil }); err == nil || emitted != ImportBatch {
		t.Errorf("a source that changed after preparing: err %v after %d records; want an error after the first batch", err, emitted)
	}
}

// TestBinaryRecords: batch records are stored in the binary form, about
// two thirds of the JSON form's size; both forms decode and verify, and a
// binary record cut short, with a path longer than its bytes or than any
// batch needs, with no payload, or with its index or size out of range is
// refused as malformed. A changed byte anywhere fails the check.
func TestBinaryRecords(t *testing.T) {
	pub, priv := newKey(t)
	now := time.Now()
	envs, err := SignImport(batchOf(ImportBatch, now), priv)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := NewVerifier(Policy{Operators: []ed25519.PublicKey{pub}})
	check := func(b []byte, key string) error {
		env, err := Decode(b)
		if err != nil {
			return err
		}
		env.StoredKey = key
		_, err = v.Check(env, now)
		return err
	}
	e := envs[5]
	bin, text := e.Encode(), e.encodeText()
	if bin[0] != binaryFormat || len(bin) != binaryHead+8*sha256.Size+len(e.Payload) || 3*len(bin) > 2*len(text) {
		t.Fatalf("binary record of %d bytes (JSON %d): want the binary form, at most two thirds", len(bin), len(text))
	}
	for name, b := range map[string][]byte{"binary": bin, "JSON": text} {
		if err := check(b, e.StoredKey); err != nil {
			t.Errorf("%s form: %v", name, err)
		}
	}
	if !SameRecord(bin, text) || !SameRecord(text, bin) || !SameRecord(bin, bin) || SameRecord(bin, envs[6].encodeText()) || SameRecord(bin, envs[6].Encode()) {
		t.Error("SameRecord does not tell the two forms of one record from another record")
	}
	spoil := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), bin...)) }
	for name, b := range map[string][]byte{
		"empty":              {binaryFormat},
		"cut in the head":    bin[:binaryHead-1],
		"cut in the path":    bin[:binaryHead+3*sha256.Size],
		"no payload":         bin[:binaryHead+8*sha256.Size],
		"path of 22 hashes":  spoil(func(b []byte) []byte { b[binaryHead-1] = 22; return append(b, make([]byte, 14*sha256.Size)...) }),
		"index = size":       spoil(func(b []byte) []byte { copy(b[73:], []byte{0, 0, 1, 0}); return b }),
		"size 0":             spoil(func(b []byte) []byte { copy(b[77:], []byte{0, 0, 0, 0}); return b }),
		"size over MaxBatch": spoil(func(b []byte) []byte { copy(b[77:], []byte{0xff, 0, 0, 0}); return b }),
	} {
		_, err := Decode(b)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Decode = %v, want malformed", name, err)
		}
	}
	for i := range bin {
		b := spoil(func(b []byte) []byte { b[i] ^= 0x20; return b })
		if check(b, e.StoredKey) == nil {
			t.Fatalf("byte %d changed: the record still checks", i)
		}
	}
}

// TestRememberedRootHoldsItsSignature: once a batch's root has verified,
// a record of that batch with other signature bytes is still refused, as
// an edge that never saw the batch would refuse it; edges must not differ
// on a record by what they saw before.
func TestRememberedRootHoldsItsSignature(t *testing.T) {
	pub, priv := newKey(t)
	now := time.Now()
	envs, err := SignBatch(batchOf(8, now), priv)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := NewVerifier(Policy{Operators: []ed25519.PublicKey{pub}})
	for _, e := range envs[:4] {
		if _, err := v.Check(e, now); err != nil {
			t.Fatal(err)
		}
	}
	forged := envs[5]
	forged.Sig = append([]byte(nil), forged.Sig...)
	forged.Sig[17] ^= 1
	if _, err := v.Check(forged, now); err == nil {
		t.Fatal("a record of a verified batch passed with a changed signature")
	}
	if _, err := v.Check(envs[5], now); err != nil {
		t.Fatalf("the genuine record: %v", err)
	}
}

// TestSessionAnswersAsAFreshVerifier: a session reuses the proof nodes and
// the batch signature of the records before, so the attack is a forged
// record right after the genuine ones whose nodes it shares. Every record
// of a stream mixing two batches (one of an unbalanced size) with forgeries
// of each kind, in order and shuffled, gets from one session the answer a
// verifier that never saw anything gives it, and every forgery is refused.
func TestSessionAnswersAsAFreshVerifier(t *testing.T) {
	pub, priv := newKey(t)
	now := time.Now()
	policy := Policy{Operators: []ed25519.PublicKey{pub}}
	var genuine []Envelope
	for _, n := range []int{300, 64} {
		changes := batchOf(n, now)
		for i := range changes {
			changes[i] = block(fmt.Sprintf("10.%d.%d.%d/32", n%256, i/256, i%256), now)
		}
		envs, err := SignBatch(changes, priv)
		if err != nil {
			t.Fatal(err)
		}
		genuine = append(genuine, envs...)
	}
	clone := func(e Envelope) Envelope {
		b := *e.Batch
		b.Path = append([][32]byte(nil), b.Path...)
		e.Batch = &b
		e.Sig = append([]byte(nil), e.Sig...)
		return e
	}
	type record struct {
		env    Envelope
		forged string
	}
	var stream []record
	for i, g := range genuine {
		stream = append(stream, record{env: g})
		if i%7 != 3 {
			continue
		}
		depth := i % len(g.Batch.Path)
		next := genuine[(i+1)%len(genuine)]
		for name, f := range map[string]func(e *Envelope){
			"a path node flipped":   func(e *Envelope) { e.Batch.Path[depth][i%32] ^= 1 },
			"the last node flipped": func(e *Envelope) { e.Batch.Path[len(e.Batch.Path)-1][0] ^= 0x80 },
			"payload edited":        func(e *Envelope) { e.Payload = append(e.Payload[:len(e.Payload)-1:len(e.Payload)-1], ' ') },
			"signature edited":      func(e *Envelope) { e.Sig[i%len(e.Sig)] ^= 1 },
			"the next record's path": func(e *Envelope) {
				e.Batch = clone(next).Batch
			},
			"index moved": func(e *Envelope) { e.Batch.Index ^= 1 },
		} {
			e := clone(g)
			f(&e)
			stream = append(stream, record{env: e, forged: name})
		}
	}
	check := func(t *testing.T, stream []record) {
		v, _ := NewVerifier(policy)
		s := v.Session()
		for i, r := range stream {
			fresh, _ := NewVerifier(policy)
			_, want := fresh.Check(r.env, now)
			_, got := s.Check(r.env, now)
			if ReasonOf(got) != ReasonOf(want) || (got == nil) != (want == nil) {
				t.Fatalf("record %d (%q): session says %v, a fresh verifier %v", i, r.forged, got, want)
			}
			if r.forged != "" && got == nil {
				t.Fatalf("record %d, forged (%s), passed", i, r.forged)
			}
			if r.forged == "" && got != nil {
				t.Fatalf("record %d, genuine: %v", i, got)
			}
		}
	}
	t.Run("in order", func(t *testing.T) { check(t, stream) })
	shuffled := append([]record(nil), stream...)
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	t.Run("shuffled", func(t *testing.T) { check(t, shuffled) })
}
