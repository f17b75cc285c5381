package shield

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
)

// oldCounters are the per-CPU counters of a pinned counters map laid out
// for another number of reasons, kept to be carried into the new map.
type oldCounters struct {
	reasons int               // reasons of the old layout
	values  [][]shieldCounter // per index, per CPU
}

// takeOldCounters handles a pinned counters map from a shield with another
// number of reasons (reasons are only ever appended): its values are read,
// and the load creates a map of the new size instead of refusing the pinned
// one as incompatible. The old map keeps its pin until the load has
// succeeded (pinOver, Load's last step), and lives on as long as the old
// program that counts into it.
func takeOldCounters(spec *ebpf.CollectionSpec, mapsDir string) (*oldCounters, error) {
	pin := filepath.Join(mapsDir, "counters")
	m, err := ebpf.LoadPinnedMap(pin, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("opening pinned counters: %w", err)
	}
	defer m.Close()
	want := spec.Maps["counters"]
	if m.MaxEntries() == want.MaxEntries || m.Type() != want.Type || m.ValueSize() != want.ValueSize ||
		m.MaxEntries()%2 != 0 {
		return nil, nil // the same layout, or not one we know: the load decides
	}
	old := &oldCounters{reasons: int(m.MaxEntries() / 2)}
	for i := uint32(0); i < m.MaxEntries(); i++ {
		var percpu []shieldCounter
		if err := m.Lookup(&i, &percpu); err != nil {
			return nil, fmt.Errorf("reading pinned counters: %w", err)
		}
		old.values = append(old.values, percpu)
	}
	return old, nil
}

// restore writes the old counters into the new map: verdicts to their
// reason, would-be drops to their reason past numReasons.
func (old *oldCounters) restore(m *ebpf.Map) error {
	for i, percpu := range old.values {
		r, monitored := i, false
		if i >= old.reasons {
			r, monitored = i-old.reasons, true
		}
		if r >= int(numReasons) {
			continue // a reason this shield does not have
		}
		idx := uint32(r)
		if monitored {
			idx += uint32(numReasons)
		}
		if err := m.Update(&idx, percpu, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("carrying counters over: %w", err)
		}
	}
	return nil
}
