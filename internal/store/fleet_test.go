package store

import (
	"maps"
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
	if a, ok, _ := f.Applied(put.Key); !ok || a != change.AppliedOf(put) {
		t.Errorf("applied %s = %+v %v", put.Key, a, ok)
	}
	if a, ok, _ := f.Applied("rate.syn"); !ok || !a.Deleted || a.IssuedAt != 12 {
		t.Errorf("applied rate.syn = %+v %v", a, ok)
	}
	if _, ok, _ := f.Applied("function.x"); ok {
		t.Error("a key never applied is known")
	}
	if live, _ := f.Live(); !maps.Equal(live, map[string]int64{put.Key: 10}) {
		t.Errorf("live = %v", live)
	}
}
