package store

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/aegis-edge/aegis/internal/fleet/change"
)

// The fleet follower's memory lives in its own buckets, beside the
// entries, so both survive a restart together.
var (
	bucketFleet        = []byte("fleet")         // meta: the cursor
	bucketFleetApplied = []byte("fleet.applied") // storage key → change.Applied
	fleetCursorKey     = []byte("cursor")
)

// Origins of an entry.
const (
	OriginLocal = "local" // an operator on this node (the default)
	OriginFleet = "fleet" // a signed change from the fleet hub
)

// FleetState is the follower's State kept in the store.
type FleetState struct{ s *Store }

// Fleet returns the store's fleet state.
func (s *Store) Fleet() FleetState { return FleetState{s} }

// Cursor returns the saved cursor (zero if none).
func (f FleetState) Cursor() (change.Cursor, error) {
	var cur change.Cursor
	err := f.s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketFleet).Get(fleetCursorKey); v != nil {
			return json.Unmarshal(v, &cur)
		}
		return nil
	})
	return cur, err
}

// Applied returns what was last applied for each of keys, in order, read
// in one transaction; found[i] is false for a key never applied.
func (f FleetState) Applied(keys []string) (applied []change.Applied, found []bool, err error) {
	applied, found = make([]change.Applied, len(keys)), make([]bool, len(keys))
	err = f.s.db.View(func(tx *bolt.Tx) error {
		// One cursor for every key: its stack is allocated once.
		c := tx.Bucket(bucketFleetApplied).Cursor()
		for i, key := range keys {
			k, v := c.Seek([]byte(key))
			if k == nil || string(k) != key {
				continue
			}
			if err := decodeApplied(v, &applied[i]); err != nil {
				return fmt.Errorf("fleet state %q: %w", key, err)
			}
			found[i] = true
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return applied, found, nil
}

// Live returns the keys whose last applied change is a put, with its
// issue time.
func (f FleetState) Live() (map[string]int64, error) {
	out := map[string]int64{}
	err := f.s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketFleetApplied).ForEach(func(k, v []byte) error {
			var a change.Applied
			if err := decodeApplied(v, &a); err != nil {
				return fmt.Errorf("fleet state %q: %w", k, err)
			}
			if !a.Deleted {
				out[string(k)] = a.IssuedAt
			}
			return nil
		})
	})
	return out, err
}

// Commit records each change's Applied and the new cursor in one
// transaction.
func (f FleetState) Commit(applied []change.Change, cur change.Cursor) error {
	return f.s.db.Update(func(tx *bolt.Tx) error {
		return putFleetCommit(tx, FleetCommit{Applied: applied, Cursor: cur})
	})
}

// FleetCommit is what the follower saves after a batch (FleetState.Commit's
// arguments): the changes it decided and its new cursor.
type FleetCommit struct {
	Applied []change.Change
	Cursor  change.Cursor
}

func putFleetCommit(tx *bolt.Tx, fc FleetCommit) error {
	b := tx.Bucket(bucketFleetApplied)
	// bbolt keeps keys and values until the transaction ends: they share
	// one buffer, never reused.
	size := 0
	for _, c := range fc.Applied {
		size += len(c.Key) + appliedLen
	}
	buf := make([]byte, 0, size)
	for _, c := range fc.Applied {
		at := len(buf)
		buf = append(buf, c.Key...)
		key := buf[at:len(buf):len(buf)]
		buf = appendApplied(buf, change.AppliedOf(c))
		if err := b.Put(key, buf[at+len(key):len(buf):len(buf)]); err != nil {
			return err
		}
	}
	v, err := json.Marshal(fc.Cursor)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketFleet).Put(fleetCursorKey, v)
}
