//go:build linux

package shield

import (
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
	before, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	ret, err := s.Program().Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		t.Fatalf("test run: %v", err)
	}
	after, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range Reasons() {
		if after.Verdicts[r].Packets != before.Verdicts[r].Packets {
			if got := after.Verdicts[r].Bytes - before.Verdicts[r].Bytes; got != uint64(len(frame)) {
				t.Errorf("reason %s counted %d bytes, frame has %d", r, got, len(frame))
			}
			return ret, r, false
		}
		if after.Monitored[r].Packets != before.Monitored[r].Packets {
			return ret, r, true
		}
	}
	t.Fatalf("no counter moved for frame % x", frame)
	return 0, 0, false
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
