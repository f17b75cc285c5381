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
// that removal leaves no namespace behind; for a fleet lab's two edges too.
func TestTopologyCarriesTraffic(t *testing.T) {
	testutil.RequireRoot(t)
	t.Run("single", func(t *testing.T) { testTopology(t, false) })
	t.Run("fleet", func(t *testing.T) { testTopology(t, true) })
}

func testTopology(t *testing.T, fleet bool) {
	names := NamesFor(newID())
	topo, err := newTopology(names, names.edges(fleet))
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
	for _, e := range topo.edges {
		if _, err := os.Stat(filepath.Join(netlab.RunDir, e.names.NS)); err != nil {
			t.Fatalf("namespace %s: %v", e.names.NS, err)
		}
		testEdgeLinks(t, topo, e)
	}

	topo.close()
	if err := removeNamespaces(names); err != nil {
		t.Fatal(err)
	}
	removed = true
	for _, ns := range names.Namespaces() {
		if _, err := os.Stat(filepath.Join(netlab.RunDir, ns)); !os.IsNotExist(err) {
			t.Errorf("namespace %s remains: %v", ns, err)
		}
	}
}

// testEdgeLinks checks that the client and the attacker reach edge e.
func testEdgeLinks(t *testing.T, topo *topology, e *edgeLinks) {

	// A TCP listener on the edge's client-side address, reached through
	// the client's dialler.
	var ln net.Listener
	if err := e.ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(e.addrs.Edge, 0).String())
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
	if from := <-accepted; from != e.addrs.Client {
		t.Errorf("%s saw the client as %v, want %v", e.names.Name, from, e.addrs.Client)
	}

	// The blocklisted stream's UDP, forged through the packet socket, is
	// delivered to a socket on the edge: its checksums are right.
	var udp *net.UDPConn
	if err := e.ns.Do(func() (err error) {
		udp, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(EdgeAttackerAddr, 53)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	// The flood goes to every edge in turn.
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

}
