package store

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/lists"
	"github.com/aegis-edge/aegis/internal/testutil"
)

func openTest(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatalf("Open(%s) = %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func pfx(s string) netip.Prefix {
	if !strings.Contains(s, "/") {
		a := netip.MustParseAddr(s)
		return netip.PrefixFrom(a, a.BitLen())
	}
	return netip.MustParsePrefix(s)
}

func block(p string) Entry { return Entry{List: Blocklist, Prefix: pfx(p)} }
func allow(p string) Entry { return Entry{List: Allowlist, Prefix: pfx(p)} }

func mustApply(t testing.TB, s *Store, adds []Entry, removes []Key) []Entry {
	t.Helper()
	out, err := s.Apply(adds, removes)
	if err != nil {
		t.Fatalf("Apply = %v", err)
	}
	return out
}

func TestOpenCreatesDirAndFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	openTest(t, dir)
	for path, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, filepath.Join(dir, FileName): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("mode of %s = %v, want %v", path, fi.Mode(), want)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	s := openTest(t, t.TempDir())
	created := time.Date(2025, 1, 2, 3, 4, 5, 6, time.FixedZone("X", 3600))
	expires := created.Add(time.Hour)
	in := Entry{List: Blocklist, Prefix: pfx("10.1.2.3/8"), Reason: "scanner ✓", Created: created, Expires: expires}
	out := mustApply(t, s, []Entry{in}, nil)

	want := Entry{List: Blocklist, Prefix: pfx("10.0.0.0/8"), Reason: "scanner ✓", Created: created.UTC(), Expires: expires.UTC(), RuleID: 1}
	if !reflect.DeepEqual(out, []Entry{want}) {
		t.Errorf("Apply returned %+v, want %+v", out, want)
	}
	for _, k := range []Key{want.Key(), in.Key()} { // unmasked lookups work too
		got, ok, err := s.Get(k)
		if err != nil || !ok {
			t.Fatalf("Get(%v) = %v, %v", k, ok, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Get(%v) = %+v, want %+v", k, got, want)
		}
	}
	if _, ok, err := s.Get(Key{Allowlist, want.Prefix}); ok || err != nil {
		t.Errorf("Get on other list = %v, %v; want not found", ok, err)
	}
}

func TestCreatedDefaultsToNow(t *testing.T) {
	s := openTest(t, t.TempDir())
	before := time.Now()
	out := mustApply(t, s, []Entry{block("1.2.3.4")}, nil)
	if c := out[0].Created; c.Before(before.Add(-time.Second)) || c.After(time.Now().Add(time.Second)) {
		t.Errorf("Created = %v, want about now", c)
	}
	got, _, _ := s.Get(out[0].Key())
	if !reflect.DeepEqual(got, out[0]) {
		t.Errorf("Get = %+v, want %+v", got, out[0])
	}
}

func TestListOrdering(t *testing.T) {
	s := openTest(t, t.TempDir())
	in := []string{"2001:db8::/32", "10.0.0.0/8", "10.0.0.0/16", "9.255.255.255", "::1", "1.0.0.0/8", "2001:db8::1"}
	var adds []Entry
	for _, p := range in {
		adds = append(adds, block(p))
	}
	adds = append(adds, allow("192.0.2.1"))
	mustApply(t, s, adds, nil)
	got, err := s.List(Blocklist)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"1.0.0.0/8", "9.255.255.255/32", "10.0.0.0/8", "10.0.0.0/16", "::1/128", "2001:db8::/32", "2001:db8::1/128"}
	var gotS []string
	for _, e := range got {
		gotS = append(gotS, e.Prefix.String())
	}
	if !reflect.DeepEqual(gotS, want) {
		t.Errorf("List = %v, want %v", gotS, want)
	}
	all, err := s.All()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(want)+1 || all[len(all)-1].List != Allowlist {
		t.Errorf("All = %+v, want blocklist then allowlist", all)
	}
	if _, err := s.List("nope"); err == nil {
		t.Error("List of unknown list succeeded")
	}
}

func TestRuleIDsNeverReused(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	out := mustApply(t, s, []Entry{block("1.1.1.1"), allow("2.2.2.2"), block("::1")}, nil)
	for i, e := range out {
		if e.RuleID != uint32(i+1) {
			t.Errorf("entry %d RuleID = %d, want %d", i, e.RuleID, i+1)
		}
	}
	mustApply(t, s, nil, []Key{out[2].Key()})
	again := mustApply(t, s, []Entry{block("::1")}, nil)
	if again[0].RuleID != 4 {
		t.Errorf("re-added RuleID = %d, want 4", again[0].RuleID)
	}
	// Remove and add of the same key in one call also gets a new id.
	again = mustApply(t, s, []Entry{block("::1")}, []Key{block("::1").Key()})
	if again[0].RuleID != 5 {
		t.Errorf("remove+add RuleID = %d, want 5", again[0].RuleID)
	}
	// A caller-chosen id raises the counter.
	again = mustApply(t, s, []Entry{{List: Blocklist, Prefix: pfx("3.3.3.3"), RuleID: 100}, block("4.4.4.4")}, nil)
	if again[0].RuleID != 100 || again[1].RuleID != 101 {
		t.Errorf("ids = %d, %d; want 100, 101", again[0].RuleID, again[1].RuleID)
	}
	// The counter persists across reopen.
	s.Close()
	s = openTest(t, dir)
	again = mustApply(t, s, []Entry{block("5.5.5.5")}, nil)
	if again[0].RuleID != 102 {
		t.Errorf("RuleID after reopen = %d, want 102", again[0].RuleID)
	}
}

func TestUpsertKeepsIDAndCreated(t *testing.T) {
	s := openTest(t, t.TempDir())
	created := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	first := mustApply(t, s, []Entry{{List: Blocklist, Prefix: pfx("10.0.0.1"), Reason: "a", Created: created}}, nil)[0]
	exp := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	second := mustApply(t, s, []Entry{{List: Blocklist, Prefix: pfx("10.0.0.1"), Reason: "b", Created: time.Now(), Expires: exp, RuleID: 77}}, nil)[0]
	want := Entry{List: Blocklist, Prefix: pfx("10.0.0.1"), Reason: "b", Created: created, Expires: exp, RuleID: first.RuleID}
	if !reflect.DeepEqual(second, want) {
		t.Errorf("upsert returned %+v, want %+v", second, want)
	}
	got, _, _ := s.Get(want.Key())
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Get = %+v, want %+v", got, want)
	}
	if v4, v6, _ := s.Count(Blocklist); v4 != 1 || v6 != 0 {
		t.Errorf("Count = %d, %d; want 1, 0", v4, v6)
	}
}

func TestCounts(t *testing.T) {
	s := openTest(t, t.TempDir())
	steps := []struct {
		name           string
		adds           []Entry
		removes        []Key
		block4, block6 int
		allow4, allow6 int
	}{
		{"initial", nil, nil, 0, 0, 0, 0},
		{"adds", []Entry{block("1.1.1.1"), block("1.1.1.0/24"), block("::1"), allow("2.2.2.2")}, nil, 2, 1, 1, 0},
		{"upsert does not count", []Entry{block("1.1.1.1"), block("1.1.1.1")}, nil, 2, 1, 1, 0},
		{"remove missing", nil, []Key{block("9.9.9.9").Key(), allow("::2").Key()}, 2, 1, 1, 0},
		{"mixed", []Entry{allow("::2"), allow("2001:db8::/48")}, []Key{block("1.1.1.1").Key(), block("::1").Key(), block("::1").Key()}, 1, 0, 1, 2},
		{"remove same list other family", nil, []Key{allow("2.2.2.2").Key(), allow("2.2.2.2").Key()}, 1, 0, 0, 2},
	}
	for _, st := range steps {
		mustApply(t, s, st.adds, st.removes)
		b4, b6, err := s.Count(Blocklist)
		if err != nil {
			t.Fatal(err)
		}
		a4, a6, err := s.Count(Allowlist)
		if err != nil {
			t.Fatal(err)
		}
		if b4 != st.block4 || b6 != st.block6 || a4 != st.allow4 || a6 != st.allow6 {
			t.Errorf("%s: counts block %d/%d allow %d/%d, want %d/%d %d/%d", st.name, b4, b6, a4, a6, st.block4, st.block6, st.allow4, st.allow6)
		}
		for _, l := range lists.All() {
			entries, _ := s.List(l)
			v4, v6, _ := s.Count(l)
			if len(entries) != v4+v6 {
				t.Errorf("%s: List(%s) has %d entries, Count says %d", st.name, l, len(entries), v4+v6)
			}
		}
	}
	if _, _, err := s.Count("other"); err == nil {
		t.Error("Count of unknown list succeeded")
	}
}

func TestApplyInvalidChangesNothing(t *testing.T) {
	tests := []struct {
		name    string
		adds    []Entry
		removes []Key
		want    string
	}{
		{"unknown list", []Entry{{List: "deny", Prefix: pfx("1.2.3.4")}}, nil, "unknown list"},
		{"empty list", []Entry{{Prefix: pfx("1.2.3.4")}}, nil, "unknown list"},
		{"invalid prefix", []Entry{{List: Blocklist}}, nil, "invalid prefix"},
		{"4in6 prefix", []Entry{block("::ffff:1.2.3.4")}, nil, "IPv4-mapped"},
		{"reason too long", []Entry{{List: Blocklist, Prefix: pfx("1.2.3.4"), Reason: strings.Repeat("x", 257)}}, nil, "reason is 257 bytes"},
		{"reason invalid utf8", []Entry{{List: Blocklist, Prefix: pfx("1.2.3.4"), Reason: "a\xffb"}}, nil, "not valid UTF-8"},
		{"reason newline", []Entry{{List: Blocklist, Prefix: pfx("1.2.3.4"), Reason: "a\nb"}}, nil, "control character"},
		{"reason C1 control", []Entry{{List: Blocklist, Prefix: pfx("1.2.3.4"), Reason: "a\u0085b"}}, nil, "control character"},
		{"expires out of range", []Entry{{List: Blocklist, Prefix: pfx("1.2.3.4"), Expires: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)}}, nil, "out of range"},
		{"bad remove", nil, []Key{{List: "x", Prefix: pfx("1.1.1.1")}}, "unknown list \"x\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTest(t, t.TempDir())
			mustApply(t, s, []Entry{block("1.1.1.1"), allow("::1")}, nil)
			before, _ := s.All()

			adds := append([]Entry{block("5.5.5.5"), block("1.1.1.1")}, tt.adds...)
			removes := append([]Key{allow("::1").Key()}, tt.removes...)
			_, err := s.Apply(adds, removes)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Apply error = %v, want it to contain %q", err, tt.want)
			}
			after, _ := s.All()
			if !reflect.DeepEqual(before, after) {
				t.Errorf("entries changed:\nbefore %+v\nafter  %+v", before, after)
			}
			if v4, v6, _ := s.Count(Blocklist); v4 != 1 || v6 != 0 {
				t.Errorf("block counts = %d, %d; want 1, 0", v4, v6)
			}
			if out := mustApply(t, s, []Entry{block("7.7.7.7")}, nil); out[0].RuleID != 3 {
				t.Errorf("next RuleID = %d, want 3 (failed Apply must not consume ids)", out[0].RuleID)
			}
		})
	}
}

func TestReasonLimitsAccepted(t *testing.T) {
	s := openTest(t, t.TempDir())
	for _, r := range []string{"", strings.Repeat("x", 256), "日本語 tab-free", strings.Repeat("é", 128)} {
		if _, err := s.Apply([]Entry{{List: Blocklist, Prefix: pfx("1.2.3.4"), Reason: r}}, nil); err != nil {
			t.Errorf("Apply with reason %q = %v", r, err)
		}
	}
}

func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	want := mustApply(t, s, []Entry{block("1.2.3.4"), allow("2001:db8::/64"), block("10.0.0.0/8")}, nil)
	if err := s.PutSetting("mode", []byte("monitor")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	all, err := s.All()
	if err != nil {
		t.Fatal(err)
	}
	wantAll := []Entry{want[0], want[2], want[1]}
	if !reflect.DeepEqual(all, wantAll) {
		t.Errorf("All after reopen = %+v, want %+v", all, wantAll)
	}
	if v4, v6, _ := s.Count(Allowlist); v4 != 0 || v6 != 1 {
		t.Errorf("allow counts after reopen = %d, %d", v4, v6)
	}
	if v, ok, err := s.Setting("mode"); err != nil || !ok || string(v) != "monitor" {
		t.Errorf("Setting after reopen = %q, %v, %v", v, ok, err)
	}
}

func TestSecondOpenFailsLocked(t *testing.T) {
	dir := t.TempDir()
	openTest(t, dir)
	start := time.Now()
	s2, err := Open(dir)
	if err == nil {
		s2.Close()
		t.Fatal("second Open succeeded")
	}
	if d := time.Since(start); d > testutil.Scale(5*time.Second) {
		t.Errorf("second Open took %v (%s)", d, testutil.TimeScale())
	}
	if !errors.Is(err, ErrLocked) {
		t.Errorf("error %v does not wrap ErrLocked", err)
	}
	want := fmt.Sprintf("state store %s is locked by another process", filepath.Join(dir, FileName))
	if err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
}

func TestExpired(t *testing.T) {
	s := openTest(t, t.TempDir())
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return base.Add(d) }
	mustApply(t, s, []Entry{
		{List: Blocklist, Prefix: pfx("1.1.1.1"), Expires: at(2 * time.Minute)},
		{List: Blocklist, Prefix: pfx("2.2.2.2"), Expires: at(time.Minute)},
		{List: Allowlist, Prefix: pfx("::1"), Expires: at(time.Minute)},
		{List: Blocklist, Prefix: pfx("3.3.3.3")},
		{List: Blocklist, Prefix: pfx("4.4.4.4"), Expires: at(time.Hour)},
		{List: Blocklist, Prefix: pfx("5.5.5.5"), Expires: at(time.Minute)},
	}, nil)
	// 5.5.5.5 is extended, 1.1.1.1 made permanent: both leave the index.
	mustApply(t, s, []Entry{
		{List: Blocklist, Prefix: pfx("5.5.5.5"), Expires: at(2 * time.Hour)},
		{List: Blocklist, Prefix: pfx("1.1.1.1")},
	}, nil)

	tests := []struct {
		now  time.Time
		want []string
	}{
		{at(0), nil},
		{at(time.Minute - 1), nil},
		{at(time.Minute), []string{"block 2.2.2.2/32", "allow ::1/128"}},
		{at(90 * time.Minute), []string{"block 2.2.2.2/32", "allow ::1/128", "block 4.4.4.4/32"}},
		{at(1000 * time.Hour), []string{"block 2.2.2.2/32", "allow ::1/128", "block 4.4.4.4/32", "block 5.5.5.5/32"}},
	}
	for _, tt := range tests {
		got, err := s.Expired(tt.now)
		if err != nil {
			t.Fatal(err)
		}
		var gotS []string
		for _, e := range got {
			gotS = append(gotS, string(e.List)+" "+e.Prefix.String())
		}
		if !reflect.DeepEqual(gotS, tt.want) {
			t.Errorf("Expired(%v) = %v, want %v", tt.now, gotS, tt.want)
		}
	}
	// Removing expired entries removes them from the index.
	mustApply(t, s, nil, []Key{block("2.2.2.2").Key(), allow("::1").Key()})
	if got, _ := s.Expired(at(time.Minute)); len(got) != 0 {
		t.Errorf("Expired after removal = %+v", got)
	}
}

func TestSettings(t *testing.T) {
	s := openTest(t, t.TempDir())
	if v, ok, err := s.Setting("missing"); v != nil || ok || err != nil {
		t.Errorf("Setting(missing) = %q, %v, %v", v, ok, err)
	}
	tests := []struct {
		name  string
		value []byte
	}{
		{"mode", []byte("enforce")},
		{"mode", []byte("monitor")}, // overwrite
		{"rate_limit", []byte(`{"syn":{"pps":100}}`)},
		{"empty", []byte{}},
		{"nil", nil},
	}
	for _, tt := range tests {
		if err := s.PutSetting(tt.name, tt.value); err != nil {
			t.Fatalf("PutSetting(%s) = %v", tt.name, err)
		}
		v, ok, err := s.Setting(tt.name)
		if err != nil || !ok || string(v) != string(tt.value) || v == nil {
			t.Errorf("Setting(%s) = %q, %v, %v; want %q, true", tt.name, v, ok, err, tt.value)
		}
	}
	if err := s.PutSetting("", []byte("x")); err == nil {
		t.Error("PutSetting with empty name succeeded")
	}
}

func entries100k() []Entry {
	adds := make([]Entry, 0, 100_000)
	for i := range 80_000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		adds = append(adds, Entry{List: Blocklist, Prefix: netip.PrefixFrom(a, 32), Reason: "bulk"})
	}
	for i := range 20_000 {
		a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
		adds = append(adds, Entry{List: Blocklist, Prefix: netip.PrefixFrom(a, 128), Expires: time.Now().Add(time.Hour)})
	}
	return adds
}

func TestApply100k(t *testing.T) {
	if testing.Short() {
		t.Skip("large test")
	}
	s := openTest(t, t.TempDir())
	out := mustApply(t, s, entries100k(), nil)
	if len(out) != 100_000 || out[len(out)-1].RuleID != 100_000 {
		t.Fatalf("Apply returned %d entries, last id %d", len(out), out[len(out)-1].RuleID)
	}
	if v4, v6, err := s.Count(Blocklist); err != nil || v4 != 80_000 || v6 != 20_000 {
		t.Errorf("Count = %d, %d, %v; want 80000, 20000", v4, v6, err)
	}
	all, err := s.List(Blocklist)
	if err != nil || len(all) != 100_000 {
		t.Errorf("List = %d entries, %v", len(all), err)
	}
}

func BenchmarkApply100k(b *testing.B) {
	adds := entries100k()
	benchFreshStores(b, func(s *Store) error {
		_, err := s.Apply(adds, nil)
		return err
	})
}

// benchFreshStores runs f on a new store in every iteration, timing f
// alone.
func benchFreshStores(b *testing.B, f func(*Store) error) {
	for b.Loop() {
		b.StopTimer()
		s, err := Open(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := f(s); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
}
