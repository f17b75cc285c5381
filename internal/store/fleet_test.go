package store

import (
	"fmt"
	"maps"
	"math"
	"testing"

	"github.com/aegis-edge/aegis/internal/fleet/change"
)

// TestFleetStateSurvivesReopen: the follower's cursor and per-key memory
// are committed together and read back after the store is reopened; a
// delete takes its key out of Live.
func TestFleetStateSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	f := s.Fleet()
	if cur, err := f.Cursor(); err != nil || cur != (change.Cursor{}) {
		t.Fatalf("fresh cursor = %+v, %v", cur, err)
	}
	put := change.Change{Op: change.OpPut, Key: "list.block.192-0-2-0_24", IssuedAt: 10, ExpiresAt: 99, ByController: true}
	other := change.Change{Op: change.OpPut, Key: "rate.syn", IssuedAt: 11}
	if err := f.Commit([]change.Change{put, other}, change.Cursor{Epoch: "e1", Seq: 7}); err != nil {
		t.Fatal(err)
	}
	del := change.Change{Op: change.OpDelete, Key: "rate.syn", IssuedAt: 12}
	if err := f.Commit([]change.Change{del}, change.Cursor{Epoch: "e1", Seq: 9}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f = s.Fleet()
	if cur, _ := f.Cursor(); cur != (change.Cursor{Epoch: "e1", Seq: 9}) {
		t.Errorf("cursor after reopen = %+v", cur)
	}
	applied, found, err := f.Applied([]string{put.Key, "function.x", "rate.syn"})
	if err != nil || len(applied) != 3 || len(found) != 3 {
		t.Fatalf("Applied = %v, %v, %v", applied, found, err)
	}
	if a, ok := applied[0], found[0]; !ok || a != change.AppliedOf(put) {
		t.Errorf("applied %s = %+v %v", put.Key, a, ok)
	}
	if found[1] {
		t.Error("a key never applied is known")
	}
	if a, ok := applied[2], found[2]; !ok || !a.Deleted || a.IssuedAt != 12 {
		t.Errorf("applied rate.syn = %+v %v", a, ok)
	}
	if live, _ := f.Live(); !maps.Equal(live, map[string]int64{put.Key: 10}) {
		t.Errorf("live = %v", live)
	}
}

// TestApplyFleetIsOneTransaction: the follower's state saved with entries
// is written only if the entries are. A transaction that fails inside
// (rule ids exhausted) or before (an invalid entry) leaves both the
// entries and the follower's cursor and memory as they were.
func TestApplyFleetIsOneTransaction(t *testing.T) {
	s := openTest(t, t.TempDir())
	f := s.Fleet()
	first := change.Change{Op: change.OpPut, Key: "list.block.192-0-2-1_32", IssuedAt: 5}
	// Full: the need for a full reconcile is saved with the cursor.
	cur := change.Cursor{Epoch: "e1", Seq: 3, Full: "tombstones were removed"}
	if _, err := s.ApplyFleet([]Entry{{List: Blocklist, Prefix: pfx("192.0.2.1"), Origin: OriginFleet}}, nil,
		FleetCommit{Applied: []change.Change{first}, Cursor: cur}); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.Cursor(); got != cur {
		t.Fatalf("cursor = %+v, want %+v", got, cur)
	}
	// The next new entry cannot get a rule id: the transaction fails after
	// writing the entries before it.
	mustApply(t, s, []Entry{{List: Blocklist, Prefix: pfx("192.0.2.2"), RuleID: math.MaxUint32}}, nil)
	second := change.Change{Op: change.OpPut, Key: "list.block.192-0-2-4_32", IssuedAt: 6}
	third := change.Change{Op: change.OpPut, Key: "list.block.192-0-2-3_32", IssuedAt: 6}
	for _, tc := range []struct {
		name string
		adds []Entry
	}{
		{"fails inside", []Entry{{List: Blocklist, Prefix: pfx("192.0.2.1"), Reason: "again"},
			{List: Blocklist, Prefix: pfx("192.0.2.3")}}},
		{"invalid entry", []Entry{{List: Blocklist, Prefix: pfx("192.0.2.3")}, {List: "nope", Prefix: pfx("192.0.2.4")}}},
	} {
		if _, err := s.ApplyFleet(tc.adds, nil, FleetCommit{Applied: []change.Change{second, third},
			Cursor: change.Cursor{Epoch: "e1", Seq: 9}}); err == nil {
			t.Fatalf("%s: ApplyFleet succeeded", tc.name)
		}
		if got, _ := f.Cursor(); got != cur {
			t.Errorf("%s: cursor moved to %+v", tc.name, got)
		}
		if _, found, _ := f.Applied([]string{second.Key, third.Key}); found[0] || found[1] {
			t.Errorf("%s: the failed batch's changes are recorded as applied: %v", tc.name, found)
		}
		if e, _, _ := s.Get(Key{List: Blocklist, Prefix: pfx("192.0.2.1")}); e.Reason != "" {
			t.Errorf("%s: an entry of the failed transaction was written: %+v", tc.name, e)
		}
		if _, ok, _ := s.Get(Key{List: Blocklist, Prefix: pfx("192.0.2.3")}); ok {
			t.Errorf("%s: an entry of the failed transaction was written", tc.name)
		}
	}
}

// BenchmarkFleetCommit saves the follower's state for an import of
// 100,000 blocklist entries in the follower's batches of 4,096.
func BenchmarkFleetCommit(b *testing.B) {
	var batches [][]change.Change
	for i := 0; i < 100_000; i += 4096 {
		var batch []change.Change
		for j := i; j < min(i+4096, 100_000); j++ {
			batch = append(batch, change.Change{Op: change.OpPut, IssuedAt: int64(j + 1),
				Key: fmt.Sprintf("list.block.10-%d-%d-%d_32", j>>16, j>>8&255, j&255)})
		}
		batches = append(batches, batch)
	}
	benchFreshStores(b, func(s *Store) error {
		for i, batch := range batches {
			if err := s.Fleet().Commit(batch, change.Cursor{Epoch: "e", Seq: uint64(i)}); err != nil {
				return err
			}
		}
		return nil
	})
}
