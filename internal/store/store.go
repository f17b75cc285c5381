package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/aegis-edge/aegis/internal/lists"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// FileName is the name of the database file inside the state directory.
const FileName = "state.db"

// schemaVersion is the on-disk layout version recorded in the meta bucket.
// Version 2 stores entries and the fleet follower's memory in a binary
// form (codec.go) where version 1 stored JSON; Open raises a version 1
// store to 2, whose values it still reads, and an older aegis refuses a
// version 2 store instead of misreading it.
const schemaVersion = 2

// ErrLocked is returned (wrapped) by Open when another process holds the
// database.
var ErrLocked = errors.New("locked by another process")

// ErrInvalidEntry is returned (wrapped) by Apply when an entry or key fails
// validation; nothing was changed.
var ErrInvalidEntry = errors.New("invalid entry")

// List names one of the address lists; package lists owns the names.
type List = lists.List

// The address lists.
const (
	Blocklist = lists.Blocklist
	Allowlist = lists.Allowlist
)

// listID is the one-byte list tag used in expiry index keys; it orders
// ties the same way All does.
func listID(l List) byte {
	if l == Blocklist {
		return 0
	}
	return 1
}

func listByID(b byte) (List, bool) {
	switch b {
	case 0:
		return Blocklist, true
	case 1:
		return Allowlist, true
	}
	return "", false
}

// Entry is one prefix on a list.
type Entry struct {
	List List `json:"list"`
	// Prefix is always masked; a single address is a /32 or /128.
	Prefix  netip.Prefix `json:"prefix"`
	Reason  string       `json:"reason,omitempty"`
	Created time.Time    `json:"created"`
	// Expires is when the entry should be removed; zero means permanent.
	Expires time.Time `json:"expires,omitzero"`
	// RuleID identifies the entry; unique, never reused.
	RuleID uint32 `json:"rule_id"`
	// Origin is OriginFleet for an entry a signed fleet change put here;
	// empty (OriginLocal) for one an operator of this node added. A
	// fleet entry's Signer is the key id that signed it.
	Origin string `json:"origin,omitempty"`
	Signer string `json:"signer,omitempty"`
}

// Key returns the identity of e.
func (e Entry) Key() Key { return Key{List: e.List, Prefix: e.Prefix} }

// Key identifies an entry: a prefix on a list.
type Key struct {
	List   List
	Prefix netip.Prefix
}

// Bucket names and meta keys.
var (
	bucketMeta     = []byte("meta")
	bucketSettings = []byte("settings")
	bucketExpiry   = []byte("expiry")

	metaSchema = []byte("schema")
	metaRuleID = []byte("last_rule_id")
)

func countKey(l List, v6 bool) []byte {
	if v6 {
		return []byte("count." + string(l) + ".v6")
	}
	return []byte("count." + string(l) + ".v4")
}

// Store is the durable state store. It is safe for concurrent use.
type Store struct {
	db   *bolt.DB
	path string
}

// Open opens (creating if needed) the store in dir. The directory is
// created with mode 0700 and the database with 0600. If another process
// has the database open, Open fails after about a second with an error
// wrapping ErrLocked.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("opening store: %w", err)
	}
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("state store %s is %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		names := append([][]byte{bucketMeta, bucketSettings, bucketExpiry, []byte(Blocklist), []byte(Allowlist),
			bucketFleet, bucketFleetApplied}, functionBuckets()...)
		for _, name := range names {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch v := meta.Get(metaSchema); {
		case v == nil, len(v) == 8 && binary.BigEndian.Uint64(v) == 1:
			return meta.Put(metaSchema, u64(schemaVersion))
		case len(v) != 8 || binary.BigEndian.Uint64(v) != schemaVersion:
			return fmt.Errorf("unsupported schema version %x (this aegis reads 1 and %d)", v, schemaVersion)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	return &Store{db: db, path: path}, nil
}

// Close closes the database.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("closing store: %w", err)
	}
	return nil
}

// Apply atomically deletes removes and then upserts adds, in one
// transaction. Because removes are applied first, a key in both ends up
// present (with a new rule id).
//
// Adds are normalized: the prefix is masked and times are converted to
// UTC. A new entry whose RuleID is 0 gets a fresh id from a persistent,
// monotonically increasing counter that starts at 1; a new entry with a
// non-zero RuleID keeps it and the counter is raised past it (uniqueness
// of caller-chosen ids is the caller's responsibility). A new entry with a
// zero Created gets the current time. An upsert of an existing key keeps
// the existing RuleID and Created and replaces Reason and Expires.
//
// Removing a key that does not exist is not an error. Any invalid entry or
// key fails the whole call and nothing changes. Apply returns the stored
// form of adds, in order.
func (s *Store) Apply(adds []Entry, removes []Key) ([]Entry, error) {
	return s.apply(adds, removes, nil)
}

// ApplyFleet is Apply that also saves the fleet follower's state, fc, in
// the same transaction: the follower's cursor is never durable without
// the entries it covers, and a batch of the follower costs one write to
// disk instead of two.
func (s *Store) ApplyFleet(adds []Entry, removes []Key, fc FleetCommit) ([]Entry, error) {
	return s.apply(adds, removes, &fc)
}

func (s *Store) apply(adds []Entry, removes []Key, fc *FleetCommit) ([]Entry, error) {
	out := make([]Entry, len(adds))
	for i, e := range adds {
		n, err := normalize(e)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidEntry, err)
		}
		out[i] = n
	}
	rm := make([]Key, len(removes))
	for i, k := range removes {
		n, err := normalizeKey(k)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidEntry, err)
		}
		rm[i] = n
	}
	now := time.Now().UTC()

	err := s.db.Update(func(tx *bolt.Tx) error {
		w := newWriter(tx)
		for _, k := range rm {
			if err := w.remove(k); err != nil {
				return err
			}
		}
		for i := range out {
			if err := w.put(&out[i], now); err != nil {
				return err
			}
		}
		if err := w.flush(); err != nil {
			return err
		}
		if fc != nil {
			return putFleetCommit(tx, *fc)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("applying changes: %w", err)
	}
	return out, nil
}

// Get returns the entry for k, if any.
func (s *Store) Get(k Key) (Entry, bool, error) {
	found, err := s.GetMany([]Key{k})
	if err != nil {
		return Entry{}, false, err
	}
	e, ok := found[k.Prefix.Masked()]
	return e, ok, nil
}

// GetMany returns the entries that exist for keys, by masked prefix, read in
// one transaction. All keys must name the same list.
func (s *Store) GetMany(keys []Key) (map[netip.Prefix]Entry, error) {
	norm := make([]Key, len(keys))
	for i, k := range keys {
		n, err := normalizeKey(k)
		if err != nil {
			return nil, fmt.Errorf("getting entry: %w", err)
		}
		if i > 0 && n.List != norm[0].List {
			return nil, fmt.Errorf("getting entries: keys name more than one list")
		}
		norm[i] = n
	}
	out := map[netip.Prefix]Entry{}
	if len(norm) == 0 {
		return out, nil
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		lw := listBucket{b: tx.Bucket([]byte(norm[0].List))}
		lw.c = lw.b.Cursor()
		for _, k := range norm {
			v := lw.get(encodeKey(k.Prefix))
			if v == nil {
				continue
			}
			var e Entry
			if err := decodeEntry(v, &e); err != nil {
				return fmt.Errorf("%s %s: %w", k.List, k.Prefix, err)
			}
			out[k.Prefix] = e
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("getting entries: %w", err)
	}
	return out, nil
}

// List returns the entries of l sorted by prefix (address, then length),
// IPv4 before IPv6.
func (s *Store) List(l List) ([]Entry, error) {
	if !l.Valid() {
		return nil, fmt.Errorf("listing entries: unknown list %q", l)
	}
	var out []Entry
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = appendList(out, tx, l)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing %s entries: %w", l, err)
	}
	return out, nil
}

// All returns the entries of every list: the blocklist, then the
// allowlist, each sorted as by List.
func (s *Store) All() ([]Entry, error) {
	var out []Entry
	err := s.db.View(func(tx *bolt.Tx) error {
		for _, l := range lists.All() {
			var err error
			if out, err = appendList(out, tx, l); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing entries: %w", err)
	}
	return out, nil
}

func appendList(out []Entry, tx *bolt.Tx, l List) ([]Entry, error) {
	b := tx.Bucket([]byte(l))
	meta := tx.Bucket(bucketMeta)
	n := int(getU64(meta, countKey(l, false)) + getU64(meta, countKey(l, true)))
	if cap(out)-len(out) < n {
		out = append(make([]Entry, 0, len(out)+n), out...)
	}
	err := b.ForEach(func(_, v []byte) error {
		var e Entry
		if err := decodeEntry(v, &e); err != nil {
			return err
		}
		out = append(out, e)
		return nil
	})
	return out, err
}

// Count returns the number of IPv4 and IPv6 entries on l, from counters
// maintained by Apply.
func (s *Store) Count(l List) (v4, v6 int, err error) {
	if !l.Valid() {
		return 0, 0, fmt.Errorf("counting entries: unknown list %q", l)
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		v4 = int(getU64(meta, countKey(l, false)))
		v6 = int(getU64(meta, countKey(l, true)))
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("counting entries: %w", err)
	}
	return v4, v6, nil
}

// Expired returns the entries of all lists whose Expires is not zero and
// not after now, earliest first (ties: blocklist first, then by prefix). It reads an expiry index, so its cost is
// proportional to the number of expired entries.
func (s *Store) Expired(now time.Time) ([]Entry, error) {
	var out []Entry
	limit := expiryStamp(now)
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketExpiry).Cursor()
		for k, _ := c.First(); k != nil && bytes.Compare(k[:8], limit[:]) <= 0; k, _ = c.Next() {
			l, ok := listByID(k[8])
			if !ok || len(k) != 9+keyLen {
				return fmt.Errorf("corrupt expiry index key %x", k)
			}
			v := tx.Bucket([]byte(l)).Get(k[9:])
			if v == nil {
				return fmt.Errorf("expiry index key %x has no entry", k)
			}
			var e Entry
			if err := decodeEntry(v, &e); err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing expired entries: %w", err)
	}
	return out, nil
}

// PutSetting stores a runtime setting.
func (s *Store) PutSetting(name string, value []byte) error {
	if name == "" || len(name) > bolt.MaxKeySize {
		return fmt.Errorf("storing setting: invalid name %q", name)
	}
	if value == nil {
		value = []byte{}
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSettings).Put([]byte(name), value)
	})
	if err != nil {
		return fmt.Errorf("storing setting %s: %w", name, err)
	}
	return nil
}

// Setting returns a copy of the setting stored under name, if any.
func (s *Store) Setting(name string) ([]byte, bool, error) {
	var (
		out   []byte
		found bool
	)
	if name == "" {
		return nil, false, nil
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		// A cursor distinguishes an empty value from a missing key.
		k, v := tx.Bucket(bucketSettings).Cursor().Seek([]byte(name))
		if k != nil && string(k) == name {
			found = true
			out = append([]byte{}, v...)
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("reading setting %s: %w", name, err)
	}
	return out, found, nil
}

// normalizeKey validates k and masks its prefix.
func normalizeKey(k Key) (Key, error) {
	if err := lists.Check(k.List); err != nil {
		return Key{}, err
	}
	// The store masks what it is given; package lists says what else a
	// listed prefix must be.
	k.Prefix = k.Prefix.Masked()
	if err := lists.ValidatePrefix(k.Prefix); err != nil {
		return Key{}, err
	}
	return k, nil
}

// Bounds of times the store accepts (UnixNano must not overflow).
var (
	minTime = time.Unix(0, 0)
	maxTime = time.Unix(0, math.MaxInt64)
)

// normalize validates e and returns its stored form (masked prefix, UTC
// times without monotonic readings).
func normalize(e Entry) (Entry, error) {
	k, err := normalizeKey(e.Key())
	if err != nil {
		return Entry{}, err
	}
	e.Prefix = k.Prefix
	if err := lists.ValidateReason(e.Reason); err != nil {
		return Entry{}, fmt.Errorf("%s: %w", e.Prefix, err)
	}
	for _, t := range []struct {
		name string
		v    *time.Time
	}{{"created", &e.Created}, {"expires", &e.Expires}} {
		if t.v.IsZero() {
			continue
		}
		if t.v.Before(minTime) || t.v.After(maxTime) {
			return Entry{}, fmt.Errorf("%s: %s time %s out of range", e.Prefix, t.name, *t.v)
		}
		*t.v = t.v.UTC().Round(0)
	}
	return e, nil
}

// writer applies changes inside one write transaction, buffering the
// counters and writing them once.
type writer struct {
	tx     *bolt.Tx
	expiry *bolt.Bucket
	lastID uint64
	counts map[string]int64
	lists  [2]listBucket // by listID
	arena  []byte
}

// alloc returns an empty slice with room for n bytes, carved from a
// larger buffer: bbolt keeps the keys and values it is given until the
// transaction ends, so they cannot share a reused buffer, but they can
// share a few large allocations.
func (w *writer) alloc(n int) []byte {
	if cap(w.arena)-len(w.arena) < n {
		w.arena = make([]byte, 0, max(n, 64<<10))
	}
	b := w.arena[len(w.arena) : len(w.arena) : len(w.arena)+n]
	w.arena = w.arena[:len(w.arena)+n]
	return b
}

// listBucket is a list's bucket in a transaction, with one cursor for
// every lookup (its search stack is allocated once).
type listBucket struct {
	b *bolt.Bucket
	c *bolt.Cursor
}

// list returns l's bucket in the transaction.
func (w *writer) list(l List) *listBucket {
	lw := &w.lists[listID(l)]
	if lw.b == nil {
		lw.b = w.tx.Bucket([]byte(l))
		lw.c = lw.b.Cursor()
	}
	return lw
}

// get returns the value under key, or nil. The cursor is positioned anew
// for every lookup, so writes between lookups do not invalidate it.
func (lw *listBucket) get(key []byte) []byte {
	k, v := lw.c.Seek(key)
	if !bytes.Equal(k, key) {
		return nil
	}
	return v
}

func newWriter(tx *bolt.Tx) *writer {
	return &writer{
		tx:     tx,
		expiry: tx.Bucket(bucketExpiry),
		lastID: getU64(tx.Bucket(bucketMeta), metaRuleID),
		counts: make(map[string]int64),
	}
}

func (w *writer) remove(k Key) error {
	lw := w.list(k.List)
	b := lw.b
	key := encodeKey(k.Prefix)
	v := lw.get(key)
	if v == nil {
		return nil
	}
	var old Entry
	if err := decodeEntry(v, &old); err != nil {
		return fmt.Errorf("decoding %s %s: %w", k.List, k.Prefix, err)
	}
	if !old.Expires.IsZero() {
		if err := w.expiry.Delete(expiryKey(old.Expires, k.List, key)); err != nil {
			return err
		}
	}
	if err := b.Delete(key); err != nil {
		return err
	}
	w.counts[string(countKey(k.List, k.Prefix.Addr().Is6()))]--
	return nil
}

func (w *writer) put(e *Entry, now time.Time) error {
	lw := w.list(e.List)
	b := lw.b
	key := appendKey(w.alloc(keyLen), e.Prefix)
	if v := lw.get(key); v != nil {
		var old Entry
		if err := decodeEntry(v, &old); err != nil {
			return fmt.Errorf("decoding %s %s: %w", e.List, e.Prefix, err)
		}
		e.RuleID, e.Created = old.RuleID, old.Created
		if !old.Expires.IsZero() {
			if err := w.expiry.Delete(expiryKey(old.Expires, e.List, key)); err != nil {
				return err
			}
		}
	} else {
		switch {
		case e.RuleID == 0:
			if w.lastID >= math.MaxUint32 {
				return errors.New("rule ids exhausted")
			}
			w.lastID++
			e.RuleID = uint32(w.lastID)
		case uint64(e.RuleID) > w.lastID:
			w.lastID = uint64(e.RuleID)
		}
		if e.Created.IsZero() {
			e.Created = now
		}
		w.counts[string(countKey(e.List, e.Prefix.Addr().Is6()))]++
	}
	if !e.Expires.IsZero() {
		if err := w.expiry.Put(expiryKey(e.Expires, e.List, key), nil); err != nil {
			return err
		}
	}
	return b.Put(key, appendEntry(w.alloc(entrySize(e)), e))
}

func (w *writer) flush() error {
	meta := w.tx.Bucket(bucketMeta)
	if err := meta.Put(metaRuleID, u64(w.lastID)); err != nil {
		return err
	}
	for k, d := range w.counts {
		n := int64(getU64(meta, []byte(k))) + d
		if n < 0 {
			return fmt.Errorf("counter %s would become negative", k)
		}
		if err := meta.Put([]byte(k), u64(uint64(n))); err != nil {
			return err
		}
	}
	return nil
}

// keyLen is the length of an encoded prefix: family byte, 16 address
// bytes (IPv4 in the first 4, zero padded), prefix length.
const keyLen = 18

// encodeKey encodes a masked prefix so that byte order is IPv4 before
// IPv6, then address, then prefix length.
func encodeKey(p netip.Prefix) []byte {
	return appendKey(make([]byte, 0, keyLen), p)
}

// expiryStamp encodes t as 8 bytes that sort in time order.
func expiryStamp(t time.Time) [8]byte {
	var b [8]byte
	var ns int64
	switch {
	case t.Before(minTime):
		ns = 0
	case t.After(maxTime):
		ns = math.MaxInt64
	default:
		ns = t.UnixNano()
	}
	binary.BigEndian.PutUint64(b[:], uint64(ns))
	return b
}

// expiryKey is the expiry index key: stamp, list id, entry key.
func expiryKey(t time.Time, l List, key []byte) []byte {
	stamp := expiryStamp(t)
	k := make([]byte, 0, 9+keyLen)
	k = append(k, stamp[:]...)
	k = append(k, listID(l))
	return append(k, key...)
}

func u64(v uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, v)
}

func getU64(b *bolt.Bucket, key []byte) uint64 {
	v := b.Get(key)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}
