//go:build linux

package lab

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/netlab"
	"github.com/aegis-edge/aegis/internal/testutil"
)

// TestTopologyCarriesTraffic builds the topology without a node and shows
// that the client reaches the edge over TCP and that the attacker's forged
// frames arrive at the edge's stack (which checks their checksums), then
// that removal leaves no namespace behind.
func TestTopologyCarriesTraffic(t *testing.T) {
	testutil.RequireRoot(t)
	names := NamesFor(newID())
	topo, err := newTopology(names)
	if err != nil {
		t.Fatal(err)
	}
	removed := false
	t.Cleanup(func() {
		if !removed {
			topo.close()
			removeNamespaces(names)
		}
	})
	for _, ns := range []string{names.Edge, names.Attacker, names.Client} {
		if _, err := os.Stat(filepath.Join(netlab.RunDir, ns)); err != nil {
			t.Fatalf("namespace %s: %v", ns, err)
		}
	}

	// A TCP listener on the edge's client-side address, reached through
	// the client's dialler.
	var ln net.Listener
	if err := topo.edge.Do(func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(EdgeClientAddr, 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan netip.Addr, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
			c.Close()
		}
	}()
	cl := newClient(topo.client, "")
	c, err := cl.tr.DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("client to edge: %v", err)
	}
	c.Close()
	if from := <-accepted; from != ClientAddr {
		t.Errorf("the edge saw the client as %v, want %v", from, ClientAddr)
	}

	// The blocklisted stream's UDP, forged through the packet socket, is
	// delivered to a socket on the edge: its checksums are right.
	var udp *net.UDPConn
	if err := topo.edge.Do(func() (err error) {
		udp, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(EdgeAttackerAddr, 53)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	fl, err := newFlood(topo, Rates{Blocked: 200})
	if err != nil {
		t.Fatal(err)
	}
	defer fl.close()
	ctx, cancel := context.WithCancel(context.Background())
	fl.start(ctx)
	udp.SetReadDeadline(time.Now().Add(testutil.Scale(5 * time.Second)))
	buf := make([]byte, 256)
	n, from, err := udp.ReadFromUDPAddrPort(buf)
	cancel()
	fl.wait()
	if err != nil {
		t.Fatalf("no forged packet reached the edge (sent %v): %v", fl.counts(), err)
	}
	if from.Addr() != BlockedAddr || n != 32 {
		t.Errorf("received %d bytes from %v, want 32 from %v", n, from, BlockedAddr)
	}
	if c := fl.counts(); c[StreamBlocked] == 0 || c[StreamSYN] != 0 || c[StreamUDP] != 0 {
		t.Errorf("sent %v: only the blocklisted stream had a rate", c)
	}

	udp.Close()
	ln.Close()
	fl.close()
	topo.close()
	if err := removeNamespaces(names); err != nil {
		t.Fatal(err)
	}
	removed = true
	for _, ns := range []string{names.Edge, names.Attacker, names.Client} {
		if _, err := os.Stat(filepath.Join(netlab.RunDir, ns)); !os.IsNotExist(err) {
			t.Errorf("namespace %s remains: %v", ns, err)
		}
	}
}
