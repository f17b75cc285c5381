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

// Applied returns what was last applied for key.
func (f FleetState) Applied(key string) (change.Applied, bool, error) {
	var a change.Applied
	var ok bool
	err := f.s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketFleetApplied).Get([]byte(key))
		if v == nil {
			return nil
		}
		ok = true
		return json.Unmarshal(v, &a)
	})
	return a, ok, err
}

// Live returns the keys whose last applied change is a put, with its
// issue time.
func (f FleetState) Live() (map[string]int64, error) {
	out := map[string]int64{}
	err := f.s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketFleetApplied).ForEach(func(k, v []byte) error {
			var a change.Applied
			if err := json.Unmarshal(v, &a); err != nil {
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
		b := tx.Bucket(bucketFleetApplied)
		for _, c := range applied {
			v, err := json.Marshal(change.AppliedOf(c))
			if err != nil {
				return err
			}
			if err := b.Put([]byte(c.Key), v); err != nil {
				return err
			}
		}
		v, err := json.Marshal(cur)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketFleet).Put(fleetCursorKey, v)
	})
}
