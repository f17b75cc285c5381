//go:build linux

package shield

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/aegis-edge/aegis/internal/audit"
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
	pinOldCounters(t, pin)
	s, err := Load(Options{PinPath: pin})
	if err != nil {
		t.Fatalf("loading over an older counters map: %v", err)
	}
	defer s.Close()
	checkCarriedCounters(t, s)
	m, err := ebpf.LoadPinnedMap(filepath.Join(pin, "maps", "counters"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.MaxEntries() != 2*uint32(numReasons) {
		t.Errorf("pinned counters hold %d entries after the upgrade, want %d", m.MaxEntries(), 2*numReasons)
	}
}

// TestCountersCarryOverKeepsThePinUntilLoaded: a load that fails after it
// has read the older counters map leaves that map pinned with its counts,
// and a retry carries them over.
func TestCountersCarryOverKeepsThePinUntilLoaded(t *testing.T) {
	tu.RequireRoot(t)
	pin := tu.PinPath(t)
	pinOldCounters(t, pin)
	rec := recorder{fail: func(ev audit.Event) bool { return ev.Op == audit.OpLoad && ev.Err == nil }}
	if s, err := Load(Options{PinPath: pin, Audit: rec.record}); err == nil {
		s.Close()
		t.Fatal("Load succeeded although its audit record could not be written")
	}
	m, err := ebpf.LoadPinnedMap(filepath.Join(pin, "maps", "counters"), nil)
	if err != nil {
		t.Fatalf("the old counters pin is gone after a failed load: %v", err)
	}
	defer m.Close()
	if m.MaxEntries() != 2*oldReasons {
		t.Fatalf("pinned counters hold %d entries after a failed load, want the old map's %d", m.MaxEntries(), 2*oldReasons)
	}
	s, err := Load(Options{PinPath: pin})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkCarriedCounters(t, s)
}

// oldReasons is the number of reasons of the shield before
// fragment_dropped and header_chain_dropped.
const oldReasons = 10

// pinOldCounters leaves pin as a shield of oldReasons reasons would: its
// maps, with a counters map of that layout, counts in every entry.
func pinOldCounters(t *testing.T, pin string) {
	t.Helper()
	s, err := Load(Options{PinPath: pin})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
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
}

// checkCarriedCounters: every count of pinOldCounters kept its reason,
// verdicts and would-be drops alike, summed over the CPUs.
func checkCarriedCounters(t *testing.T, s *Shield) {
	t.Helper()
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
