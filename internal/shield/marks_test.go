//go:build linux

package shield

import (
	"net/netip"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/netlab"
	tu "github.com/aegis-edge/aegis/internal/testutil"
)

// tcpAck4 is an established-connection TCP segment: no rate limit applies.
func tcpAck4(src string) []byte {
	p := netlab.TCPSyn4(src, dst4)
	p.TCPFlags = netlab.TCPAck
	return p.Bytes()
}

func tcpAck6(src string) []byte {
	p := netlab.TCPSyn6(src, dst6)
	p.TCPFlags = netlab.TCPAck
	return p.Bytes()
}

// sourceKey is the sources-map key of a source address under the default
// prefix lengths (/32, /64).
func sourceKey(t *testing.T, s *Shield, src string) shieldAddr6 {
	t.Helper()
	a := netip.MustParseAddr(src)
	bits := s.Settings().IPv6PrefixLen
	if a.Is4() {
		bits = s.Settings().IPv4PrefixLen
	}
	p := netip.PrefixFrom(a, bits).Masked().Addr()
	if p.Is4() {
		p = netip.AddrFrom16(p.As16())
	}
	return shieldAddr6{Addr: addr6Words(p)}
}

func markSet(t *testing.T, s *Shield, key shieldAddr6) bool {
	t.Helper()
	m := markOf(key.Addr)
	var v uint32
	if err := s.objs.AutoblockMarks.Lookup(&m, &v); err != nil {
		t.Fatal(err)
	}
	return v != 0
}

func autoBlockSettings() Settings {
	st := noLimits()
	st.UDP = Bucket{PPS: 5, Burst: 5}
	st.AutoBlockFactor = 4 // more than 20 UDP packets in a second
	st.AutoBlockTTL = time.Minute
	return st
}

// TestAutoBlockMarks: traffic without a rate limit (established TCP) skips
// the per-source lookup unless its source is marked; an automatic block
// marks its source (the Go and C hashes agree), so such traffic from a
// blocked source is still dropped; a refresh keeps the marks of blocks that
// last and clears those of ended blocks.
func TestAutoBlockMarks(t *testing.T) {
	s := newTestShield(t, autoBlockSettings())
	for _, c := range []struct{ flooder, clean string }{
		{"192.0.2.40", "192.0.2.41"},
		{"2001:db8:40::1", "2001:db8:41::1"},
	} {
		t.Run(c.flooder, func(t *testing.T) {
			var flood, ack, cleanAck []byte
			if netip.MustParseAddr(c.flooder).Is4() {
				flood, ack, cleanAck = netlab.UDP4(c.flooder, dst4).Bytes(), tcpAck4(c.flooder), tcpAck4(c.clean)
			} else {
				flood, ack, cleanAck = netlab.UDP6(c.flooder, dst6).Bytes(), tcpAck6(c.flooder), tcpAck6(c.clean)
			}
			key := sourceKey(t, s, c.flooder)
			if markSet(t, s, key) {
				t.Fatal("mark set before any block")
			}
			if ret, _, _ := run(t, s, ack); ret != xdpPass {
				t.Fatal("established TCP from a clean source is not passed")
			}
			for range 21 {
				run(t, s, flood)
			}
			if !markSet(t, s, key) {
				t.Fatal("the automatic block did not mark its source")
			}
			if ret, reason, _ := run(t, s, ack); ret != xdpDrop || reason != ReasonAutoBlocked {
				t.Errorf("established TCP from the blocked source: %d %s, want an auto-block drop", ret, reason)
			}
			if ret, reason, _ := run(t, s, cleanAck); ret != xdpPass {
				t.Errorf("established TCP from a clean source: %d %s", ret, reason)
			}
			if cleared, err := s.refreshMarks(false); err != nil || cleared != 0 || !markSet(t, s, key) {
				t.Fatalf("refresh during the block: cleared %d (%v), mark %v", cleared, err, markSet(t, s, key))
			}
		})
	}
	// Both blocks end with the TTL; the refresh clears both marks.
	if err := s.setClock(testNow + uint64(61*time.Second)); err != nil {
		t.Fatal(err)
	}
	if cleared, err := s.refreshMarks(false); err != nil || cleared != 2 {
		t.Fatalf("refresh after the blocks: cleared %d, %v", cleared, err)
	}
	if set, err := s.setMarks(); err != nil || len(set) != 0 {
		t.Errorf("marks left: %v %v", set, err)
	}
	if ret, reason, _ := run(t, s, tcpAck4("192.0.2.40")); ret != xdpPass {
		t.Errorf("after the block: %d %s", ret, reason)
	}
}

// TestUnmarkedBlockIsFound: a block without its mark (written by a daemon
// that kept no marks, or begun while a refresh cleared the mark) is marked
// again by the data path at the source's next rate-limited packet and by
// userspace at the next full refresh, so it does not stay open to
// unlimited traffic.
func TestUnmarkedBlockIsFound(t *testing.T) {
	s := newTestShield(t, autoBlockSettings())
	block := func(src string) shieldAddr6 {
		key := sourceKey(t, s, src)
		st := shieldSourceState{BlockedUntil: testNow + uint64(time.Minute)}
		if err := s.sources.put(key, st); err != nil {
			t.Fatal(err)
		}
		return key
	}
	// Userspace: a full refresh marks it.
	k1 := block("192.0.2.50")
	if markSet(t, s, k1) {
		t.Fatal("marked before any refresh")
	}
	if _, err := s.refreshMarks(true); err != nil {
		t.Fatal(err)
	}
	if ret, reason, _ := run(t, s, tcpAck4("192.0.2.50")); ret != xdpDrop || reason != ReasonAutoBlocked {
		t.Errorf("after the full refresh: %d %s", ret, reason)
	}
	// The data path: a UDP packet of the blocked source marks it.
	k2 := block("192.0.2.51")
	if run(t, s, netlab.UDP4("192.0.2.51", dst4).Bytes()); !markSet(t, s, k2) {
		t.Fatal("a packet of the blocked source did not mark it")
	}
	if ret, reason, _ := run(t, s, tcpAck4("192.0.2.51")); ret != xdpDrop || reason != ReasonAutoBlocked {
		t.Errorf("after the data path marked it: %d %s", ret, reason)
	}
}

// TestAdoptionMarksBlocks: a daemon adopting pinned maps marks the blocks
// it finds, whatever the marks map holds.
func TestAdoptionMarksBlocks(t *testing.T) {
	tu.RequireRoot(t)
	pin := tu.PinPath(t)
	s1, err := Load(Options{PinPath: pin})
	if err != nil {
		t.Fatal(err)
	}
	key := sourceKey(t, s1, "192.0.2.60")
	until := s1.clock().boot + uint64(time.Hour)
	err = s1.sources.put(key, shieldSourceState{BlockedUntil: until})
	s1.Close()
	if err != nil {
		t.Fatal(err)
	}
	s2, err := Load(Options{PinPath: pin})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if !markSet(t, s2, key) {
		t.Error("the adopted block is not marked")
	}
	if ret, reason, _ := run(t, s2, tcpAck4("192.0.2.60")); ret != xdpDrop || reason != ReasonAutoBlocked {
		t.Errorf("established TCP from the adopted block: %d %s", ret, reason)
	}
}

// TestMapReadsOneByOne: the readings of the sources map and of the marks
// give the same answers in batches and one entry at a time (kernels before
// 5.6 have no batch lookups).
func TestMapReadsOneByOne(t *testing.T) {
	s := newTestShield(t, autoBlockSettings())
	var keys []shieldAddr6
	for i := range 3000 {
		src := netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1}).String()
		key := sourceKey(t, s, src)
		st := shieldSourceState{}
		if i%3 == 0 {
			st.BlockedUntil = testNow + uint64(time.Minute)
			keys = append(keys, key)
		}
		if err := s.sources.put(key, st); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.refreshMarks(true); err != nil {
		t.Fatal(err)
	}
	var blocks [2][]AutoBlock
	var marks, need [2]map[uint32]bool
	for i, one := range []bool{false, true} {
		s.oneByOne = one
		var err error
		if blocks[i], err = s.AutoBlocks(); err != nil {
			t.Fatal(err)
		}
		if marks[i], err = s.setMarks(); err != nil {
			t.Fatal(err)
		}
		if need[i], err = s.neededMarks(); err != nil {
			t.Fatal(err)
		}
	}
	if len(blocks[0]) != len(keys) || len(blocks[1]) != len(keys) {
		t.Errorf("auto blocks: %d in batches, %d one by one, want %d", len(blocks[0]), len(blocks[1]), len(keys))
	}
	for i := range 2 {
		if len(marks[i]) != len(need[i]) || len(marks[i]) == 0 {
			t.Errorf("reading %d: %d marks set, %d needed", i, len(marks[i]), len(need[i]))
		}
		for m := range need[i] {
			if !marks[i][m] || !need[1-i][m] {
				t.Errorf("mark %d: needed but not set, or not needed by the other reading", m)
			}
		}
	}
}
