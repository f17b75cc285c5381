package change

import (
	"crypto/ed25519"
	"fmt"
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
		if _, err := v.Check(e, now); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
