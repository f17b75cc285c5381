//go:build linux

package lab

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/aegis-edge/aegis/internal/netlab"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The lab's addresses, all from the documentation ranges. The attacker and
// each edge share 192.0.2.0/24 (every edge has the same address there, in its
// own namespace); the client and the edge 198.51.100.0/24, or, for the second
// edge of a fleet lab, 203.0.113.0/24 (see clientLinks).
var (
	EdgeAttackerAddr = netip.MustParseAddr("192.0.2.1")
	AttackerAddr     = netip.MustParseAddr("192.0.2.10")
	// BlockedAddr is the attacker's second address, on the blocklist.
	BlockedAddr = netip.MustParseAddr("192.0.2.66")
	// SpoofedPrefix holds the forged sources of the SYN flood.
	SpoofedPrefix  = netip.MustParsePrefix("192.0.2.128/26")
	EdgeClientAddr = netip.MustParseAddr("198.51.100.1")
	ClientAddr     = netip.MustParseAddr("198.51.100.10")
)

const addrBits = 24

// clientLink is the addressing of one edge's link to the client (and, in a
// fleet lab, hub) namespace. Each edge needs a subnet of its own there: the
// client namespace holds all the links.
type clientLink struct {
	Edge, Client netip.Addr
}

// clientLinks are the client links of edge 0, 1, ...; their number bounds
// the edges a lab can have.
var clientLinks = []clientLink{
	{Edge: EdgeClientAddr, Client: ClientAddr},
	{Edge: netip.MustParseAddr("203.0.113.1"), Client: netip.MustParseAddr("203.0.113.10")},
}

// FleetEdges is how many edges `aegis lab --fleet` runs.
const FleetEdges = 2

// Interface names. The edge's own live only in its namespace and the
// attacker's and client's end of edge i are att<i> and cli<i>, so none
// needs a lab-unique suffix.
const (
	edgeAttackerIf = "edge-att"
	edgeClientIf   = "edge-cli"
)

func attackerIf(i int) string { return fmt.Sprintf("att%d", i) }
func clientIf(i int) string   { return fmt.Sprintf("cli%d", i) }

// Names are the names of everything a lab creates, all derived from its ID.
type Names struct {
	ID       string
	Edge     string // network namespaces; Edge is the single-edge lab's
	Attacker string
	Client   string
	Dir      string // config, state, admin socket, node log and pid
	PinPath  string // bpffs directory of the node's pins
	// Fleet are the edges of a fleet lab, each with its namespace and a
	// directory and pin directory under Dir and PinPath.
	Fleet []EdgeNames
}

// EdgeNames are the names of one edge node of a lab.
type EdgeNames struct {
	// Name is the edge's fleet.name ("edge-1", ...), or "edge".
	Name    string
	NS      string
	Dir     string // config, state, admin socket, node log and pid
	PinPath string
}

// namePrefix starts the name of every namespace, directory and pin
// directory of a lab.
const namePrefix = "aegis-lab-"

// NamesFor returns the names of the lab with the given ID.
func NamesFor(id string) Names {
	p := namePrefix + id
	n := Names{
		ID:       id,
		Edge:     p + "-edge",
		Attacker: p + "-attacker",
		Client:   p + "-client",
		Dir:      filepath.Join(os.TempDir(), p),
		PinPath:  "/sys/fs/bpf/" + p,
	}
	for i := range FleetEdges {
		name := fmt.Sprintf("edge-%d", i+1)
		n.Fleet = append(n.Fleet, EdgeNames{Name: name, NS: p + "-" + name,
			Dir: filepath.Join(n.Dir, name), PinPath: n.PinPath + "/" + name})
	}
	return n
}

// single returns the names of the single-edge lab's edge.
func (n Names) single() EdgeNames {
	return EdgeNames{Name: "edge", NS: n.Edge, Dir: n.Dir, PinPath: n.PinPath}
}

// edges returns the names of the edges of a fleet or single-edge lab.
func (n Names) edges(fleet bool) []EdgeNames {
	if fleet {
		return n.Fleet
	}
	return []EdgeNames{n.single()}
}

// Namespaces lists every namespace a lab of this ID may have, fleet or not.
func (n Names) Namespaces() []string {
	ns := []string{n.Edge, n.Attacker, n.Client}
	for _, e := range n.Fleet {
		ns = append(ns, e.NS)
	}
	return ns
}

// ValidID reports whether id could name a lab: hex digits, as NewID makes.
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > 16 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

func newID() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// topology is the attacker and client namespaces and one or more edges,
// each joined to both by a veth pair.
type topology struct {
	names            Names
	attacker, client *netlab.Namespace
	edges            []*edgeLinks
}

// edgeLinks is one edge's namespace and what the flood and the client need
// to reach it.
type edgeLinks struct {
	names EdgeNames
	ns    *netlab.Namespace
	addrs clientLink

	attackerIndex int              // att<i>'s ifindex, in the attacker namespace
	attackerMAC   net.HardwareAddr // att<i>
	edgeMAC       net.HardwareAddr // edge-att
}

// newTopology builds the namespaces and links for the given edges (at most
// len(clientLinks)). On error what was built is removed again.
func newTopology(names Names, edges []EdgeNames) (_ *topology, err error) {
	if len(edges) == 0 || len(edges) > len(clientLinks) {
		return nil, fmt.Errorf("a lab has 1 to %d edges, not %d", len(clientLinks), len(edges))
	}
	t := &topology{names: names}
	defer func() {
		if err != nil {
			t.close()
			removeNamespaces(names)
		}
	}()
	if t.attacker, err = netlab.NewNamespace(names.Attacker); err != nil {
		return nil, err
	}
	if t.client, err = netlab.NewNamespace(names.Client); err != nil {
		return nil, err
	}
	for i, en := range edges {
		e := &edgeLinks{names: en, addrs: clientLinks[i]}
		t.edges = append(t.edges, e)
		if e.ns, err = netlab.NewNamespace(en.NS); err != nil {
			return nil, err
		}
		att, edgeAtt, err := e.link(t.attacker, attackerIf(i), edgeAttackerIf,
			[]netip.Addr{AttackerAddr, BlockedAddr}, EdgeAttackerAddr)
		if err != nil {
			return nil, err
		}
		e.attackerIndex, e.attackerMAC, e.edgeMAC = att.Index, att.HardwareAddr, edgeAtt.HardwareAddr
		if _, _, err := e.link(t.client, clientIf(i), edgeClientIf, []netip.Addr{e.addrs.Client}, e.addrs.Edge); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// link joins peer to the edge with a veth pair, addresses both ends, waits
// until both can carry traffic and adds permanent neighbour entries both
// ways, so that the first packets need no ARP.
func (t *edgeLinks) link(peer *netlab.Namespace, peerIf, edgeIf string, peerAddrs []netip.Addr, edgeAddr netip.Addr) (p, e *netlink.LinkAttrs, err error) {
	pnl, err := peer.Netlink()
	if err != nil {
		return nil, nil, err
	}
	defer pnl.Close()
	enl, err := t.ns.Netlink()
	if err != nil {
		return nil, nil, err
	}
	defer enl.Close()

	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: peerIf}, PeerName: edgeIf, PeerNamespace: netlink.NsFd(t.ns.Handle)}
	if err := pnl.LinkAdd(veth); err != nil {
		return nil, nil, fmt.Errorf("creating veth %s/%s: %w", peerIf, edgeIf, err)
	}
	// A veth's carrier comes up only when both ends are up: set both up,
	// then wait for each.
	if err := setUp(pnl, peer.Name, peerIf, peerAddrs...); err != nil {
		return nil, nil, err
	}
	if err := setUp(enl, t.ns.Name, edgeIf, edgeAddr); err != nil {
		return nil, nil, err
	}
	if p, err = waitUp(pnl, peer.Name, peerIf); err != nil {
		return nil, nil, err
	}
	if e, err = waitUp(enl, t.ns.Name, edgeIf); err != nil {
		return nil, nil, err
	}
	for _, a := range peerAddrs {
		if err := addNeighbour(enl, e.Index, a, p.HardwareAddr); err != nil {
			return nil, nil, err
		}
	}
	if err := addNeighbour(pnl, p.Index, edgeAddr, e.HardwareAddr); err != nil {
		return nil, nil, err
	}
	return p, e, nil
}

// setUp addresses a link and sets it up.
func setUp(h *netlink.Handle, ns, ifname string, addrs ...netip.Addr) error {
	l, err := h.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("%s: finding %s: %w", ns, ifname, err)
	}
	for _, a := range addrs {
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(addrBits, 32)}}
		if err := h.AddrAdd(l, addr); err != nil {
			return fmt.Errorf("%s: adding %v to %s: %w", ns, a, ifname, err)
		}
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("%s: setting %s up: %w", ns, ifname, err)
	}
	return nil
}

// waitUp waits until a link's carrier is up and it has a real root qdisc:
// until then the kernel drops what is sent on it.
func waitUp(h *netlink.Handle, ns, ifname string) (*netlink.LinkAttrs, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, err := h.LinkByName(ifname)
		if err != nil {
			return nil, fmt.Errorf("%s: finding %s: %w", ns, ifname, err)
		}
		if l.Attrs().OperState == netlink.OperUp && hasRootQdisc(h, l) {
			return l.Attrs(), nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s: %s did not come up (operstate %s)", ns, ifname, l.Attrs().OperState)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func hasRootQdisc(h *netlink.Handle, l netlink.Link) bool {
	qs, err := h.QdiscList(l)
	if err != nil {
		return false
	}
	for _, q := range qs {
		if q.Attrs().Parent == netlink.HANDLE_ROOT && q.Type() != "noop" {
			return true
		}
	}
	return false
}

func addNeighbour(h *netlink.Handle, index int, ip netip.Addr, mac net.HardwareAddr) error {
	n := &netlink.Neigh{LinkIndex: index, Family: unix.AF_INET, State: netlink.NUD_PERMANENT, IP: ip.AsSlice(), HardwareAddr: mac}
	if err := h.NeighSet(n); err != nil {
		return fmt.Errorf("neighbour %v lladdr %v: %w", ip, mac, err)
	}
	return nil
}

// close releases the namespace handles; removeNamespaces removes them.
func (t *topology) close() {
	ns := []*netlab.Namespace{t.attacker, t.client}
	for _, e := range t.edges {
		ns = append(ns, e.ns)
	}
	for _, n := range ns {
		if n != nil {
			n.Close()
		}
	}
}

// removeNamespaces removes the lab's namespaces, those of a fleet lab
// included. The veth pairs live only in them and go with them.
func removeNamespaces(n Names) error {
	var errs []error
	for _, ns := range n.Namespaces() {
		errs = append(errs, netlab.RemoveNamespace(ns))
	}
	return errors.Join(errs...)
}
