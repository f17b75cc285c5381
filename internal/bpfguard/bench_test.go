package bpfguard

import "testing"

// BenchmarkVerifyShield verifies the shield's object against its policy,
// the check every node start pays.
func BenchmarkVerifyShield(b *testing.B) {
	obj, digest := shieldObject(b)
	p := ShieldPolicy(DefaultShieldCaps(), digest)
	b.SetBytes(int64(len(obj)))
	b.ReportAllocs()
	for b.Loop() {
		if r := Verify(obj, p, nil); !r.Passed() {
			b.Fatal(r.Err())
		}
	}
}
