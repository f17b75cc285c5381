package follow

import (
	"context"
	"maps"
	"slices"
	"sync"

	"github.com/aegis-edge/aegis/internal/fleet/change"
)

// Cursor and Applied are the follower's memory; they live in package
// change so that the node's store can keep them without importing NATS.
type (
	Cursor  = change.Cursor
	Applied = change.Applied
)

// State is the follower's memory, kept by the node in its store next to
// the entries so both survive a restart together.
type State interface {
	// Cursor returns the saved cursor (zero if none).
	Cursor() (Cursor, error)
	// Applied returns what was last applied for each of keys, in order;
	// found[i] is false for a key never applied.
	Applied(keys []string) (applied []Applied, found []bool, err error)
	// Live returns the keys whose last applied change is a put, with its
	// issue time; a full reconcile deletes those the hub no longer holds.
	Live() (map[string]int64, error)
	// Commit records, after the Applier accepted them, each change's
	// Applied (AppliedOf) and the new cursor, atomically.
	Commit(applied []change.Change, cur Cursor) error
}

// Applier takes accepted changes into the node: validate, audit, store,
// kernel. Changes arrive in stream order, at most one per key per call,
// each newer than what State says was applied. An error makes the
// follower resend the batch later (from the saved cursor), so applying
// must be idempotent.
type Applier interface {
	Apply(ctx context.Context, changes []change.Change) error
}

// Committer is an Applier that saves the follower's State itself, with the
// changes: ApplyCommit(changes, cur) leaves State as Apply(changes) then
// State.Commit(changes, cur) would, and writes the cursor and the
// changes' Applied only in the same transaction as the last store write
// of the batch or after it, so a crash never finds them ahead of what
// the store holds. The node does so to write its store once per batch
// instead of twice. Like Apply, an error makes the follower resend the
// batch.
type Committer interface {
	Applier
	ApplyCommit(ctx context.Context, changes []change.Change, cur Cursor) error
}

// AppliedOf is what State keeps of an applied change.
func AppliedOf(c change.Change) Applied { return change.AppliedOf(c) }

// MemState is an in-memory State, for tests and lightweight edges.
type MemState struct {
	mu      sync.Mutex
	cur     Cursor
	applied map[string]Applied
}

// NewMemState returns an empty MemState.
func NewMemState() *MemState { return &MemState{applied: map[string]Applied{}} }

// Cursor implements State.
func (s *MemState) Cursor() (Cursor, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur, nil
}

// Applied implements State.
func (s *MemState) Applied(keys []string) ([]Applied, []bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	applied, found := make([]Applied, len(keys)), make([]bool, len(keys))
	for i, k := range keys {
		applied[i], found[i] = s.applied[k]
	}
	return applied, found, nil
}

// Live implements State.
func (s *MemState) Live() (map[string]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int64{}
	for k, a := range s.applied {
		if !a.Deleted {
			out[k] = a.IssuedAt
		}
	}
	return out, nil
}

// Commit implements State.
func (s *MemState) Commit(applied []change.Change, cur Cursor) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range applied {
		s.applied[c.Key] = AppliedOf(c)
	}
	s.cur = cur
	return nil
}

// Recorder is an Applier that keeps what it was given: the current
// entries per key and every batch. Tests and the lightweight edges of
// the fleet benchmarks use it in place of the node.
type Recorder struct {
	mu      sync.Mutex
	entries map[string]change.Change
	batches [][]change.Change
	notify  chan struct{}
	// Fail, if set, is returned by Apply (the batch is not recorded).
	Fail func([]change.Change) error
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder {
	return &Recorder{entries: map[string]change.Change{}, notify: make(chan struct{})}
}

// Apply implements Applier.
func (r *Recorder) Apply(_ context.Context, changes []change.Change) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Fail != nil {
		if err := r.Fail(changes); err != nil {
			return err
		}
	}
	r.batches = append(r.batches, slices.Clone(changes))
	for _, c := range changes {
		if c.Op == change.OpDelete {
			delete(r.entries, c.Key)
		} else {
			r.entries[c.Key] = c
		}
	}
	close(r.notify)
	r.notify = make(chan struct{})
	return nil
}

// Entries returns a copy of the current entries by key.
func (r *Recorder) Entries() map[string]change.Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.entries)
}

// Batches returns a copy of every batch applied, in order.
func (r *Recorder) Batches() [][]change.Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.batches)
}

// Changed returns a channel closed at the next Apply.
func (r *Recorder) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.notify
}

// Wait blocks until cond holds on the entries or ctx is done, and reports
// whether it held. cond runs under the recorder's lock, on its own map:
// it must not keep or change it.
func (r *Recorder) Wait(ctx context.Context, cond func(map[string]change.Change) bool) bool {
	for {
		r.mu.Lock()
		ch, ok := r.notify, cond(r.entries)
		r.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}
