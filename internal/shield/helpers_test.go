//go:build linux

package shield

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/testutil"
	"github.com/cilium/ebpf"
)

// XDP return codes.
const (
	xdpDrop = 1
	xdpPass = 2
)

// testNow is the injected CLOCK_BOOTTIME every packet test starts at.
const testNow = uint64(1000 * time.Second)

// newTestShield loads an unpinned, unattached shield with the clock frozen at
// testNow and the given settings.
func newTestShield(t testing.TB, st Settings) *Shield {
	t.Helper()
	return newTestShieldWith(t, Options{}, st)
}

// newTestShieldWith is newTestShield with load options. With the default
// options a test gets a shield an earlier test used, reset to what Load
// leaves (reuse_test.go), where there is one.
func newTestShieldWith(t testing.TB, opts Options, st Settings) *Shield {
	t.Helper()
	testutil.RequireRoot(t)
	var s *Shield
	reuse := reuseOK(t, opts)
	if reuse {
		s = reusedShield()
	}
	if s == nil {
		var err error
		if s, err = Load(opts); err != nil {
			t.Fatalf("loading shield: %v", err)
		}
	}
	if reuse {
		t.Cleanup(func() { releaseShield(t, s) })
	} else {
		t.Cleanup(func() { s.Close() })
	}
	if err := s.setClock(testNow); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSettings(st); err != nil {
		t.Fatal(err)
	}
	return s
}

// run sends one frame through BPF_PROG_TEST_RUN and returns the XDP verdict
// and the reason the program counted, found from the counter that moved.
func run(t testing.TB, s *Shield, frame []byte) (uint32, Reason, bool) {
	t.Helper()
	before := counterSums(t, s)
	ret, err := s.Program().Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		t.Fatalf("test run: %v", err)
	}
	after := counterSums(t, s)
	for _, r := range Reasons() {
		if after[r].Packets != before[r].Packets {
			if got := after[r].Bytes - before[r].Bytes; got != uint64(len(frame)) {
				t.Errorf("reason %s counted %d bytes, frame has %d", r, got, len(frame))
			}
			return ret, r, false
		}
		if m := numReasons + r; after[m].Packets != before[m].Packets {
			return ret, r, true
		}
	}
	t.Fatalf("no counter moved for frame % x", frame)
	return 0, 0, false
}

// counterSums reads the counters map as Counters does, summed over the
// CPUs, verdicts by reason and then what monitor mode counted, but in one
// batch lookup: run reads it twice a packet, and 48 lookups one by one cost
// more than the packet under emulation. Without batch lookups (before 5.6)
// it asks Counters.
func counterSums(t testing.TB, s *Shield) []Counter {
	t.Helper()
	m := s.objs.Counters
	n := int(m.MaxEntries())
	keys := make([]uint32, n)
	values := make([]shieldCounter, n*mustPossibleCPUs())
	var cursor ebpf.MapBatchCursor
	got, err := m.BatchLookup(&cursor, keys, values, nil)
	out := make([]Counter, n)
	if errors.Is(err, ebpf.ErrNotSupported) {
		c, err := s.Counters()
		if err != nil {
			t.Fatal(err)
		}
		for r := range numReasons {
			out[r], out[numReasons+r] = c.Verdicts[r], c.Monitored[r]
		}
		return out
	}
	if (err != nil && !errors.Is(err, ebpf.ErrKeyNotExist)) || got != n {
		t.Fatalf("reading counters: %d of %d, %v", got, n, err)
	}
	ncpu := len(values) / n
	for i, k := range keys {
		for _, c := range values[i*ncpu : (i+1)*ncpu] {
			out[k].Packets += c.Packets
			out[k].Bytes += c.Bytes
		}
	}
	return out
}

func put(t testing.TB, s *Shield, l List, expires time.Time, prefixes ...string) {
	t.Helper()
	var rules []Rule
	for i, p := range prefixes {
		rules = append(rules, Rule{Prefix: mustPrefix(p), RuleID: uint32(100 + i), Expires: expires})
	}
	if err := s.PutRules(l, rules); err != nil {
		t.Fatal(err)
	}
}

func mustPrefix(s string) netip.Prefix {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked()
	}
	a := netip.MustParseAddr(s)
	return netip.PrefixFrom(a, a.BitLen())
}

// noLimits are settings with every rate limit off, for list tests.
func noLimits() Settings {
	st := DefaultSettings()
	st.SYN, st.UDP, st.ICMP = Bucket{}, Bucket{}, Bucket{}
	return st
}

// attachB attaches s to the veth's B end from inside B's namespace.
func attachB(t testing.TB, v *testutil.VethPair, s *Shield, mode XDPMode) (AttachInfo, error) {
	t.Helper()
	var info AttachInfo
	err := v.B.Do(t, func() (err error) {
		info, err = s.Attach(v.IfB, mode)
		return err
	})
	return info, err
}

// detachB detaches s from the veth's B end from inside B's namespace.
func detachB(t testing.TB, v *testutil.VethPair, s *Shield) error {
	t.Helper()
	return v.B.Do(t, func() error { return s.Detach(v.IfB) })
}

// attachErr is attachB for a caller that wants only the error.
func attachErr(t testing.TB, v *testutil.VethPair, s *Shield, mode XDPMode) error {
	t.Helper()
	_, err := attachB(t, v, s, mode)
	return err
}
