//go:build linux

package privilege

import (
	"testing"

	"github.com/aegis-edge/aegis/internal/testutil"
)

// BenchmarkCheck is the cost of the up-front capability check: two procfs
// reads, a statfs and a capget.
func BenchmarkCheck(b *testing.B) {
	for b.Loop() {
		if _, err := Check(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMemcgProbe is the cost of one uncached accounting probe: three
// prlimit calls and the creation of a one-entry map.
func BenchmarkMemcgProbe(b *testing.B) {
	testutil.RequireRoot(b)
	for b.Loop() {
		memlockMu.Lock()
		_, err := probeMemcg()
		memlockMu.Unlock()
		if err != nil {
			b.Fatal(err)
		}
	}
}
