//go:build linux

package shield

import (
	"os"
	"path/filepath"
	"testing"

	tu "github.com/aegis-edge/aegis/internal/testutil"
	"github.com/cilium/ebpf"
)

// TestUpgradeKeepsCounters pins a counters map laid out for the ten reasons
// of the shield before fragment_dropped and header_chain_dropped, as an
// earlier daemon leaves it, and checks a load takes it over: the map grows
// and every count keeps its reason, verdicts and would-be drops alike.
func TestUpgradeKeepsCounters(t *testing.T) {
	tu.RequireRoot(t)
	pin := tu.PinPath(t)
	s, err := Load(Options{PinPath: pin})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	const oldReasons = 10
	path := filepath.Join(pin, "maps", "counters")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	old, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 16, MaxEntries: 2 * oldReasons})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	for i := uint32(0); i < 2*oldReasons; i++ {
		v := make([]shieldCounter, cpus)
		v[0] = shieldCounter{Packets: uint64(100 + i), Bytes: uint64(1000 + i)}
		v[cpus-1].Packets++ // the sum over CPUs carries over
		if err := old.Update(&i, v, ebpf.UpdateAny); err != nil {
			t.Fatal(err)
		}
	}
	if err := old.Pin(path); err != nil {
		t.Fatal(err)
	}

	s, err = Load(Options{PinPath: pin})
	if err != nil {
		t.Fatalf("loading over an older counters map: %v", err)
	}
	defer s.Close()
	c, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	for r := Reason(0); r < numReasons; r++ {
		var wantV, wantM uint64
		if r < oldReasons {
			wantV, wantM = 100+uint64(r)+1, 100+oldReasons+uint64(r)+1
		}
		if c.Verdicts[r].Packets != wantV || c.Monitored[r].Packets != wantM {
			t.Errorf("%s: %d and %d monitored, want %d and %d", r, c.Verdicts[r].Packets, c.Monitored[r].Packets, wantV, wantM)
		}
	}
	if c.Verdicts[ReasonNonIP].Bytes != 1000+uint64(ReasonNonIP) {
		t.Errorf("non_ip bytes %d", c.Verdicts[ReasonNonIP].Bytes)
	}
}
