//go:build linux

package lab

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aegis-edge/aegis/internal/netlab"
	"golang.org/x/sys/unix"
)

// Rates is how fast the attacker sends each kind of packet, in packets per
// second. The defaults add up to what a 2-core VM sends and filters
// comfortably while also serving the function.
type Rates struct {
	// SYN is a SYN flood from forged sources in SpoofedPrefix, each above
	// the SYN rate limit but below the automatic-block threshold, so the
	// shield keeps rate-limiting it.
	SYN int
	// UDP is a UDP flood from AttackerAddr, far above the automatic-block
	// threshold, so the shield blocks the source outright.
	UDP int
	// Blocked is UDP from BlockedAddr, which the lab puts on the blocklist.
	Blocked int
}

// DefaultRates returns the rates `aegis lab` uses.
func DefaultRates() Rates { return Rates{SYN: 8000, UDP: 8000, Blocked: 2000} }

// Attack stream names, as the view and Summary.Sent show them.
const (
	StreamSYN     = "syn flood"
	StreamUDP     = "udp flood"
	StreamBlocked = "blocklisted"
)

// stream is one paced sequence of packets.
type stream struct {
	name string
	pps  int
	// next appends the stream's next frame to b, from base (addressed to
	// one edge).
	next func(b []byte, base netlab.Packet, rnd *rand.Rand) []byte
	sent atomic.Uint64
	// refused counts packets the attacker's own kernel refused to queue
	// (ENOBUFS and the like): the flood outran its link.
	refused atomic.Uint64
}

// flood sends the attack from the attacker namespace through a packet
// socket, so it can forge sources and needs no routes. With several edges
// each stream goes to them in turn: the rates are the attacker's total.
type flood struct {
	fd      int
	targets []target
	streams []*stream
	wg      sync.WaitGroup
}

// target is one edge as the attacker reaches it.
type target struct {
	to   unix.SockaddrLinklayer
	base netlab.Packet
}

func newFlood(t *topology, r Rates) (*flood, error) {
	f := &flood{fd: -1}
	for _, e := range t.edges {
		tg := target{to: unix.SockaddrLinklayer{Ifindex: e.attackerIndex, Halen: 6},
			base: netlab.Packet{SrcMAC: e.attackerMAC, DstMAC: e.edgeMAC, Dst: EdgeAttackerAddr}}
		copy(tg.to.Addr[:], e.edgeMAC)
		f.targets = append(f.targets, tg)
	}
	// Protocol 0: the socket only sends, it never receives a copy of traffic.
	err := t.attacker.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		f.fd = fd
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("opening a packet socket in %s: %w", t.attacker.Name, err)
	}
	spoofed := SpoofedPrefix.Addr().As4()
	hosts := uint32(1) << (32 - SpoofedPrefix.Bits())
	var zeros [64]byte // UDP payloads, never written
	f.streams = []*stream{
		{name: StreamSYN, pps: r.SYN, next: func(b []byte, base netlab.Packet, rnd *rand.Rand) []byte {
			p := base
			a := spoofed
			binary.BigEndian.PutUint32(a[:], binary.BigEndian.Uint32(a[:])+rnd.Uint32N(hosts))
			p.Src, p.Proto, p.TCPFlags, p.DstPort = netip.AddrFrom4(a), netlab.ProtoTCP, netlab.TCPSyn, 80
			p.SrcPort, p.Seq = uint16(1024+rnd.IntN(64512)), rnd.Uint32()
			return p.AppendTo(b)
		}},
		{name: StreamUDP, pps: r.UDP, next: func(b []byte, base netlab.Packet, rnd *rand.Rand) []byte {
			p := base
			p.Src, p.Proto, p.DstPort, p.Payload = AttackerAddr, netlab.ProtoUDP, 9, zeros[:64]
			p.SrcPort = uint16(1024 + rnd.IntN(64512))
			return p.AppendTo(b)
		}},
		{name: StreamBlocked, pps: r.Blocked, next: func(b []byte, base netlab.Packet, rnd *rand.Rand) []byte {
			p := base
			p.Src, p.Proto, p.DstPort, p.Payload = BlockedAddr, netlab.ProtoUDP, 53, zeros[:32]
			p.SrcPort = uint16(1024 + rnd.IntN(64512))
			return p.AppendTo(b)
		}},
	}
	return f, nil
}

// start sends every stream until ctx ends; wait returns after they stop.
func (f *flood) start(ctx context.Context) {
	for i, s := range f.streams {
		if s.pps <= 0 {
			continue
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.pace(ctx, s, rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(i))))
		}()
	}
}

// pace sends s at its rate: every millisecond or so, as many packets as
// are due by now. After a stall it skips what is more than 100 ms overdue
// rather than bursting.
func (f *flood) pace(ctx context.Context, s *stream, rnd *rand.Rand) {
	buf := make([]byte, 0, 256)
	// Sendto encodes into the sockaddr it is given: one per goroutine.
	targets := slices.Clone(f.targets)
	start, sent := time.Now(), 0
	for ctx.Err() == nil {
		due := int(time.Since(start).Seconds()*float64(s.pps)) - sent
		if limit := s.pps/10 + 1; due > limit {
			sent += due - limit
			due = limit
		}
		for i := range due {
			tg := &targets[(sent+i)%len(targets)]
			if err := unix.Sendto(f.fd, s.next(buf[:0], tg.base, rnd), 0, &tg.to); err != nil {
				s.refused.Add(1)
			} else {
				s.sent.Add(1)
			}
		}
		sent += due
		time.Sleep(time.Millisecond)
	}
}

func (f *flood) wait() { f.wg.Wait() }

// counts returns the packets sent so far per stream.
func (f *flood) counts() map[string]uint64 {
	m := make(map[string]uint64, len(f.streams))
	for _, s := range f.streams {
		m[s.name] = s.sent.Load()
	}
	return m
}

func (f *flood) refused() uint64 {
	var n uint64
	for _, s := range f.streams {
		n += s.refused.Load()
	}
	return n
}

func (f *flood) close() {
	if f.fd >= 0 {
		unix.Close(f.fd)
		f.fd = -1
	}
}
