//go:build linux

package shield

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/netlab"
	tu "github.com/aegis-edge/aegis/internal/testutil"
)

// stackCounters reads the SNMP counters of ns (/proc/net/snmp and snmp6) as
// "Tcp.InSegs", "Ip.ReasmOKs", "Ip6ReasmOKs"...
func stackCounters(t *testing.T, ns *tu.NetNS) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	err := ns.Do(t, func() error {
		// thread-self: the namespace of the thread Do runs fn on.
		f, err := os.Open("/proc/thread-self/net/snmp")
		if err != nil {
			return err
		}
		defer f.Close()
		var names []string
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 2 {
				continue
			}
			if _, err := strconv.ParseInt(fields[1], 10, 64); err != nil {
				names = fields
				continue
			}
			for i := 1; i < len(fields) && i < len(names); i++ {
				v, _ := strconv.ParseUint(fields[i], 10, 64)
				out[strings.TrimSuffix(fields[0], ":")+"."+names[i]] = v
			}
		}
		if err := sc.Err(); err != nil {
			return err
		}
		raw, err := os.ReadFile("/proc/thread-self/net/snmp6")
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(raw), "\n") {
			if fields := strings.Fields(line); len(fields) == 2 {
				v, _ := strconv.ParseUint(fields[1], 10, 64)
				out[fields[0]] = v
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("reading SNMP counters: %v", err)
	}
	return out
}

// TestRealTrafficFragmentFloods sends the floods of issue 12 as real frames
// over a veth into a namespace whose TCP listener counts what reaches TCP
// (Tcp.InSegs): SYNs cut into 8-byte fragments, SYNs behind seven
// Destination Options headers, and their variants. Monitor mode first shows
// the frames are good: the namespace's stack reassembles them and TCP takes
// them; enforce mode then keeps them from TCP, or limits them to the bucket.
func TestRealTrafficFragmentFloods(t *testing.T) {
	v := tu.NewVethPair(t)
	st := noLimits()
	st.Mode = ModeMonitor
	st.SYN = Bucket{PPS: 10, Burst: 10}
	st.UDP = Bucket{PPS: 10, Burst: 10}
	st.AutoBlockFactor = 1000 // the limiter, not the automatic block
	s := attachInB(t, v, st)
	tcp4 := tu.TCPListen(t, v.B, netip.AddrPortFrom(v.IPv4B, 0))
	tcp6 := tu.TCPListen(t, v.B, netip.AddrPortFrom(v.IPv6B, 0))
	send := tu.RawSender(t, v.A, v.IndexA)

	// Sources are spoofed, a fresh one per flood so that each starts with
	// a full bucket: IPv4 from the veth's /24 (on-link, so reverse path
	// filtering cannot interfere), IPv6 from a /64 of its own each, as
	// IPv6 sources are limited by /64.
	next4, next6 := 100, 100
	fresh := func(six bool) string {
		if six {
			next6++
			return fmt.Sprintf("2001:db8:%x::1", next6)
		}
		next4++
		return fmt.Sprintf("192.0.2.%d", next4)
	}
	id := uint32(0)
	syn := func(src string, exts []netlab.ExtHeader) netlab.Packet {
		id++
		var p netlab.Packet
		if strings.Contains(src, ":") {
			p = netlab.TCPSyn6(src, v.IPv6B.String())
			p.DstPort = tcp6.Port()
		} else {
			p = netlab.TCPSyn4(src, v.IPv4B.String())
			p.DstPort = tcp4.Port()
		}
		p.IPv6ExtHeaders = exts
		p.SrcPort = uint16(10000 + id%50000)
		p.ID = id
		return p
	}
	udp := tu.UDPListen(t, v.B, netip.AddrPortFrom(v.IPv4B, 0))
	total := func(t testing.TB) uint64 {
		c, err := s.Counters()
		if err != nil {
			t.Fatal(err)
		}
		var n uint64
		for _, r := range Reasons() {
			n += c.Verdicts[r].Packets + c.Monitored[r].Packets
		}
		return n
	}
	// settle waits until the program has counted at least want packets in
	// all: frames go out in batches smaller than the veth's ring, so none
	// is lost before the program sees it.
	settle := func(t testing.TB, want uint64) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); total(t) < want; {
			if time.Now().After(deadline) {
				t.Fatalf("the program counted %d packets, %d were sent", total(t), want)
			}
			time.Sleep(time.Millisecond)
		}
	}

	type result struct {
		tcp, reasm uint64 // segments TCP took; fragments handed to reassembly
		verdicts   map[Reason]uint64
		monitored  map[Reason]uint64
	}
	// flood sends count packets made by mk, each as its list of frames,
	// and returns what reached the stack and how the program counted them.
	flood := func(t *testing.T, count int, mk func() [][]byte) result {
		t.Helper()
		before, beforeStack := s.mustCounters(t), stackCounters(t, v.B)
		sent := total(t)
		for i := range count {
			for _, f := range mk() {
				if err := send(f); err != nil {
					t.Fatalf("sending: %v", err)
				}
				sent++
			}
			if i%32 == 31 {
				settle(t, sent)
			}
		}
		settle(t, sent)
		// A datagram sent after the flood arrives after it: the stack has
		// then handled every frame before it.
		// A lost marker is sent again (seen once on a busy machine); no
		// assertion counts passed packets, so a second marker changes none.
		for try := 1; !tu.UDPDelivered(t, v.A, v.IPv4A, udp, 10*time.Second); try++ {
			if try == 3 {
				t.Fatalf("the marker datagram after the flood did not arrive in 3 tries; the program counted %+v", s.mustCounters(t))
			}
		}
		after, afterStack := s.mustCounters(t), stackCounters(t, v.B)
		r := result{
			tcp:       afterStack["Tcp.InSegs"] - beforeStack["Tcp.InSegs"],
			reasm:     afterStack["Ip.ReasmReqds"] + afterStack["Ip6ReasmReqds"] - beforeStack["Ip.ReasmReqds"] - beforeStack["Ip6ReasmReqds"],
			verdicts:  map[Reason]uint64{},
			monitored: map[Reason]uint64{},
		}
		for _, rs := range Reasons() {
			r.verdicts[rs] = after.Verdicts[rs].Packets - before.Verdicts[rs].Packets
			r.monitored[rs] = after.Monitored[rs].Packets - before.Monitored[rs].Packets
		}
		t.Logf("%d packets: %d segments reached TCP, %d fragments reassembly; program %v, monitored %v", count, r.tcp, r.reasm, nonzero(r.verdicts), nonzero(r.monitored))
		return r
	}

	// The attacks, each as a function of a fresh source.
	const attack = 2000
	tiny4 := func(src string) func() [][]byte {
		return func() [][]byte { return syn(src, nil).Fragments(8) }
	}
	longChain6 := func(src string) func() [][]byte {
		return func() [][]byte { return [][]byte{syn(src, dstOptsChain(7)).Bytes()} }
	}

	// Monitor mode: the frames are good, and without the rules they reach TCP.
	t.Run("monitor: 8-byte fragments reach TCP", func(t *testing.T) {
		r := flood(t, 200, tiny4(fresh(false)))
		if r.tcp < 200 || r.monitored[ReasonFragment] < 400 {
			t.Errorf("%d SYNs reached TCP, %d fragments counted as would-be drops; want 200 and 400", r.tcp, r.monitored[ReasonFragment])
		}
	})
	t.Run("monitor: 7 destination options reach TCP", func(t *testing.T) {
		r := flood(t, 200, longChain6(fresh(true)))
		if r.tcp < 200 || r.monitored[ReasonHeaderChain] != 200 {
			t.Errorf("%d SYNs reached TCP, %d counted as would-be drops; want 200 of each", r.tcp, r.monitored[ReasonHeaderChain])
		}
	})

	st.Mode = ModeEnforce
	if err := s.SetSettings(st); err != nil {
		t.Fatal(err)
	}
	t.Run("syn flood as 8-byte first fragments", func(t *testing.T) {
		r := flood(t, attack, tiny4(fresh(false)))
		// Each SYN is 8 + 8 + 4 bytes: the first two fragments are
		// dropped, the last is charged to the SYN bucket and never
		// completes a datagram.
		if r.tcp != 0 || r.verdicts[ReasonFragment] != 2*attack {
			t.Errorf("%d SYNs reached TCP (want 0), %d fragments dropped (want %d)", r.tcp, r.verdicts[ReasonFragment], 2*attack)
		}
	})
	t.Run("syn flood as 8-byte first fragments, padded to 60 bytes", func(t *testing.T) {
		src := fresh(false)
		r := flood(t, attack, func() [][]byte {
			fs := syn(src, nil).Fragments(8)
			fs[0] = padded(fs[0])
			return fs
		})
		if r.tcp != 0 || r.verdicts[ReasonFragment] != 2*attack {
			t.Errorf("%d SYNs reached TCP (want 0), %d fragments dropped (want %d)", r.tcp, r.verdicts[ReasonFragment], 2*attack)
		}
	})
	t.Run("syn flood as 16-byte first fragments is limited as SYNs", func(t *testing.T) {
		src := fresh(false)
		unlimited := st
		unlimited.SYN = Bucket{}
		if err := s.SetSettings(unlimited); err != nil {
			t.Fatal(err)
		}
		r := flood(t, attack, func() [][]byte { return syn(src, nil).Fragments(16) })
		if err := s.SetSettings(st); err != nil {
			t.Fatal(err)
		}
		if r.tcp < attack {
			t.Fatalf("control without a SYN limit: %d of %d SYNs reached TCP", r.tcp, attack)
		}
		src = fresh(false)
		r = flood(t, attack, func() [][]byte { return syn(src, nil).Fragments(16) })
		// First and last fragments are both charged to the SYN bucket
		// (burst 10, 10/s): a handful of SYNs complete.
		if r.tcp == 0 || r.tcp > attack/10 || r.verdicts[ReasonRateSYN] < attack {
			t.Errorf("%d SYNs reached TCP, %d fragments limited; want a few and most", r.tcp, r.verdicts[ReasonRateSYN])
		}
	})
	t.Run("syn flood behind 7 destination options", func(t *testing.T) {
		r := flood(t, attack, longChain6(fresh(true)))
		if r.tcp != 0 || r.verdicts[ReasonHeaderChain] != attack {
			t.Errorf("%d SYNs reached TCP (want 0), %d dropped (want %d)", r.tcp, r.verdicts[ReasonHeaderChain], attack)
		}
	})
	t.Run("syn flood behind 7 destination options, charged", func(t *testing.T) {
		charge := st
		charge.LongChains = LongChainsCharge
		if err := s.SetSettings(charge); err != nil {
			t.Fatal(err)
		}
		defer s.SetSettings(st)
		r := flood(t, attack, longChain6(fresh(true)))
		if r.tcp == 0 || r.tcp > attack/10 || r.verdicts[ReasonRateSYN] < attack/2 {
			t.Errorf("%d SYNs reached TCP, %d limited; want a few and most", r.tcp, r.verdicts[ReasonRateSYN])
		}
	})
	t.Run("ipv6 syn flood as 8-byte fragments behind two headers", func(t *testing.T) {
		src := fresh(true)
		r := flood(t, attack, func() [][]byte { return syn(src, []netlab.ExtHeader{hopByHop, dstOpts}).Fragments(8) })
		if r.tcp != 0 || r.verdicts[ReasonFragment] != 2*attack {
			t.Errorf("%d SYNs reached TCP (want 0), %d fragments dropped (want %d)", r.tcp, r.verdicts[ReasonFragment], 2*attack)
		}
	})
	t.Run("non-first fragment floods are charged to their bucket", func(t *testing.T) {
		for _, p := range []netlab.Packet{
			netlab.UDP4(fresh(false), v.IPv4B.String()),
			netlab.TCPSyn4(fresh(false), v.IPv4B.String()),
			netlab.UDP6(fresh(true), v.IPv6B.String()),
			netlab.TCPSyn6(fresh(true), v.IPv6B.String()),
		} {
			limit := ReasonRateUDP
			if p.Proto == netlab.ProtoTCP {
				limit = ReasonRateSYN
			}
			r := flood(t, attack, func() [][]byte {
				id++
				q := p
				q.ID = id
				return [][]byte{laterFragment(q, 100)}
			})
			if r.reasm > attack/10 || r.verdicts[limit] < attack*9/10 {
				t.Errorf("%v: %d fragments reached reassembly, %d limited (%s)", p.Src, r.reasm, r.verdicts[limit], limit)
			}
		}
	})
}

func (s *Shield) mustCounters(t *testing.T) Counters {
	t.Helper()
	c, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func nonzero(m map[Reason]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for r, n := range m {
		if n != 0 {
			out[r.String()] = n
		}
	}
	return out
}
