package change

import (
	"crypto/ed25519"
	"testing"
	"time"
)

// BenchmarkCheck measures one record's decode and verification, the
// follower's cost per change (ed25519 verification dominates).
func BenchmarkCheck(b *testing.B) {
	pub, priv := newKey(b)
	v, err := NewVerifier(Policy{Operators: []ed25519.PublicKey{pub}})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	env, err := Sign(block("198.51.100.0/24", now), priv)
	if err != nil {
		b.Fatal(err)
	}
	data := env.Encode()
	b.ReportAllocs()
	for b.Loop() {
		e, err := Decode(data)
		if err != nil {
			b.Fatal(err)
		}
		e.StoredKey = env.StoredKey
		if _, err := v.Check(e, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncode measures writing a batch-signed record, the publisher's
// cost per record of an import, by hand and through encoding/json.
func BenchmarkEncode(b *testing.B) {
	_, priv := newKey(b)
	envs, err := SignBatch(batchOf(1000, time.Now()), priv)
	if err != nil {
		b.Fatal(err)
	}
	env := envs[500]
	for _, bc := range []struct {
		name   string
		encode func() []byte
	}{{"canonical", env.Encode}, {"json", env.encodeJSON}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				bc.encode()
			}
		})
	}
}
