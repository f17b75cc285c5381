package store

import (
	"encoding/binary"
	"encoding/json"
	"maps"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aegis-edge/aegis/internal/fleet/change"
)

func TestEntryCodecRoundTrip(t *testing.T) {
	created := time.Date(2026, 12, 6, 22, 0, 0, 123456789, time.UTC)
	tests := []struct {
		name string
		e    Entry
	}{
		{"bare IPv4", Entry{List: Blocklist, Prefix: pfx("192.0.2.1"), RuleID: 1}},
		{"IPv4 prefix, every field", Entry{List: Blocklist, Prefix: pfx("198.51.100.0/24"), Reason: "ré ason",
			Created: created, Expires: created.Add(time.Hour), RuleID: 4294967295, Origin: OriginFleet,
			Signer: "139e3940e64b5491"}},
		{"IPv6 allow", Entry{List: Allowlist, Prefix: pfx("2001:db8::/48"), Created: created, RuleID: 7}},
		{"IPv6 host, the epoch as expiry", Entry{List: Blocklist, Prefix: pfx("2001:db8::1"), Expires: time.Unix(0, 0).UTC()}},
		{"longest reason", Entry{List: Blocklist, Prefix: pfx("0.0.0.0/0"), Reason: strings.Repeat("x", 256)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := appendEntry(nil, &tc.e)
			if len(v) > entrySize(&tc.e) {
				t.Errorf("encoded %d bytes, entrySize %d", len(v), entrySize(&tc.e))
			}
			var got Entry
			if err := decodeEntry(v, &got); err != nil {
				t.Fatal(err)
			}
			if got != tc.e {
				t.Errorf("decoded %+v, want %+v", got, tc.e)
			}
		})
	}
}

func TestAppliedCodecRoundTrip(t *testing.T) {
	for _, a := range []change.Applied{{}, {IssuedAt: 1, Deleted: true}, {IssuedAt: -5, ExpiresAt: 1 << 62, ByController: true}} {
		var got change.Applied
		if err := decodeApplied(appendApplied(nil, a), &got); err != nil || got != a {
			t.Errorf("%+v decoded as %+v, %v", a, got, err)
		}
	}
}

// TestCorruptValuesRefused: a damaged value is an error, never a panic or
// an entry made up from the damage.
func TestCorruptValuesRefused(t *testing.T) {
	good := appendEntry(nil, &Entry{List: Blocklist, Prefix: pfx("192.0.2.0/24"), Reason: "r",
		Created: time.Unix(5, 0).UTC(), RuleID: 3, Origin: OriginFleet})
	edit := func(f func(v []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	tests := map[string][]byte{
		"empty":          {},
		"unknown format": edit(func(v []byte) []byte { v[0] = 9; return v }),
		"list id":        edit(func(v []byte) []byte { v[1] = 2; return v }),
		"flags":          edit(func(v []byte) []byte { v[2] |= 0x80; return v }),
		"family":         edit(func(v []byte) []byte { v[3] = 5; return v }),
		"IPv4 padding":   edit(func(v []byte) []byte { v[3+6] = 1; return v }),
		"bits":           edit(func(v []byte) []byte { v[3+17] = 33; return v }),
		"not masked":     edit(func(v []byte) []byte { v[3+4] = 1; return v }),
		"cut in a time":  good[:entryFixedLen+4],
		"cut in reason":  good[:len(good)-len(OriginFleet)-3],
		"trailing byte":  append(append([]byte(nil), good...), 0),
		"time overflow":  edit(func(v []byte) []byte { v[entryFixedLen] = 0x80; return v }),
		"string length": edit(func(v []byte) []byte {
			return binary.AppendUvarint(v[:entryFixedLen+8], 1<<40)
		}),
		"JSON": []byte(`{"list":`),
	}
	for name, v := range tests {
		var e Entry
		if err := decodeEntry(v, &e); err == nil {
			t.Errorf("%s: decoded as %+v", name, e)
		}
	}
	for name, v := range map[string][]byte{"short": {appliedFormat, 0, 1}, "flags": append([]byte{appliedFormat, 4}, make([]byte, 16)...),
		"format": make([]byte, appliedLen)} {
		var a change.Applied
		if err := decodeApplied(v, &a); err == nil {
			t.Errorf("applied %s: decoded as %+v", name, a)
		}
	}
}

// TestReadsSchema1Store: a store written by schema 1 (JSON values) opens
// as schema 2, and its entries and fleet state are read, updated and
// removed like new ones.
func TestReadsSchema1Store(t *testing.T) {
	dir := t.TempDir()
	created := time.Unix(1_700_000_000, 0).UTC()
	expires := time.Now().Add(time.Hour).UTC().Round(0)
	old := []Entry{
		{List: Blocklist, Prefix: pfx("192.0.2.0/24"), Reason: "old", Created: created, Expires: expires, RuleID: 7,
			Origin: OriginFleet, Signer: "139e3940e64b5491"},
		{List: Allowlist, Prefix: pfx("2001:db8::1"), Created: created, RuleID: 8},
	}
	applied := change.Applied{IssuedAt: 42, ExpiresAt: expires.UnixNano()}
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, _ := tx.CreateBucket(bucketMeta)
		exp, _ := tx.CreateBucket(bucketExpiry)
		meta.Put(metaSchema, u64(1))
		meta.Put(metaRuleID, u64(8))
		meta.Put(countKey(Blocklist, false), u64(1))
		meta.Put(countKey(Allowlist, true), u64(1))
		for _, e := range old {
			b, _ := tx.CreateBucketIfNotExists([]byte(e.List))
			v, _ := json.Marshal(e)
			b.Put(encodeKey(e.Prefix), v)
			if !e.Expires.IsZero() {
				exp.Put(expiryKey(e.Expires, e.List, encodeKey(e.Prefix)), nil)
			}
		}
		fa, _ := tx.CreateBucket(bucketFleetApplied)
		v, _ := json.Marshal(applied)
		return fa.Put([]byte("list.block.192-0-2-0_24"), v)
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	s := openTest(t, dir)
	if err := s.db.View(func(tx *bolt.Tx) error {
		if v := getU64(tx.Bucket(bucketMeta), metaSchema); v != schemaVersion {
			t.Errorf("schema after open = %d, want %d", v, schemaVersion)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	all, err := s.All()
	if err != nil || len(all) != 2 || all[0] != old[0] || all[1] != old[1] {
		t.Fatalf("All = %+v, %v; want %+v", all, err, old)
	}
	got, found, err := s.Fleet().Applied([]string{"list.block.192-0-2-0_24"})
	if err != nil || !found[0] || got[0] != applied {
		t.Errorf("Applied = %+v %v %v", got, found, err)
	}
	if live, _ := s.Fleet().Live(); !maps.Equal(live, map[string]int64{"list.block.192-0-2-0_24": 42}) {
		t.Errorf("Live = %v", live)
	}
	// An upsert keeps the old entry's id and creation; a removal takes its
	// expiry with it.
	up := mustApply(t, s, []Entry{{List: Allowlist, Prefix: pfx("2001:db8::1"), Reason: "new"}}, nil)
	if up[0].RuleID != 8 || !up[0].Created.Equal(created) {
		t.Errorf("upsert over a schema 1 entry = %+v", up[0])
	}
	mustApply(t, s, nil, []Key{old[0].Key()})
	if ex, err := s.Expired(expires.Add(time.Hour)); err != nil || len(ex) != 0 {
		t.Errorf("Expired after removing the schema 1 entry = %+v, %v", ex, err)
	}
	if v4, v6, _ := s.Count(Blocklist); v4 != 0 || v6 != 0 {
		t.Errorf("blocklist count = %d, %d", v4, v6)
	}
}

// TestOpenRefusesNewerSchema: a store from a newer aegis is refused with
// the versions named, and left as it was.
func TestOpenRefusesNewerSchema(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(metaSchema, u64(schemaVersion+1)) })
	s.Close()
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "unsupported schema version") {
		t.Fatalf("Open of a schema %d store = %v", schemaVersion+1, err)
	}
}

// FuzzDecodeEntry: decoding never panics, and what it accepts encodes to
// a value that decodes to the same entry.
func FuzzDecodeEntry(f *testing.F) {
	f.Add(appendEntry(nil, &Entry{List: Blocklist, Prefix: pfx("192.0.2.0/24"), Reason: "r",
		Created: time.Unix(5, 0).UTC(), Expires: time.Unix(9, 0).UTC(), RuleID: 3, Origin: OriginFleet, Signer: "s"}))
	f.Add(appendEntry(nil, &Entry{List: Allowlist, Prefix: pfx("2001:db8::/32")}))
	f.Fuzz(func(t *testing.T, v []byte) {
		if len(v) > 0 && v[0] == '{' {
			return // JSON: encoding/json's
		}
		var e Entry
		if decodeEntry(v, &e) != nil {
			return
		}
		var again Entry
		if err := decodeEntry(appendEntry(nil, &e), &again); err != nil || again != e {
			t.Fatalf("%+v re-encoded decodes as %+v, %v", e, again, err)
		}
	})
}
