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
// the edge share 192.0.2.0/24, the client and the edge 198.51.100.0/24.
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

// Interface names. Each lives only in its own namespace, so they need no
// unique suffix.
const (
	attackerIf     = "att0"
	clientIf       = "cli0"
	edgeAttackerIf = "edge-att"
	edgeClientIf   = "edge-cli"
)

// Names are the names of everything a lab creates, all derived from its ID.
type Names struct {
	ID       string
	Edge     string // network namespaces
	Attacker string
	Client   string
	Dir      string // config, state, admin socket, node log and pid
	PinPath  string // bpffs directory of the node's pins
}

// namePrefix starts the name of every namespace, directory and pin
// directory of a lab.
const namePrefix = "aegis-lab-"

// NamesFor returns the names of the lab with the given ID.
func NamesFor(id string) Names {
	p := namePrefix + id
	return Names{
		ID:       id,
		Edge:     p + "-edge",
		Attacker: p + "-attacker",
		Client:   p + "-client",
		Dir:      filepath.Join(os.TempDir(), p),
		PinPath:  "/sys/fs/bpf/" + p,
	}
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

// topology is the three namespaces and the two veth pairs into the edge.
type topology struct {
	names                  Names
	edge, attacker, client *netlab.Namespace

	attackerIndex int              // att0's ifindex, in the attacker namespace
	attackerMAC   net.HardwareAddr // att0
	edgeMAC       net.HardwareAddr // edge-att
}

// newTopology builds the namespaces and links. On error what was built is
// removed again.
func newTopology(names Names) (_ *topology, err error) {
	t := &topology{names: names}
	defer func() {
		if err != nil {
			t.close()
			removeNamespaces(names)
		}
	}()
	if t.edge, err = netlab.NewNamespace(names.Edge); err != nil {
		return nil, err
	}
	if t.attacker, err = netlab.NewNamespace(names.Attacker); err != nil {
		return nil, err
	}
	if t.client, err = netlab.NewNamespace(names.Client); err != nil {
		return nil, err
	}
	att, edgeAtt, err := t.link(t.attacker, attackerIf, edgeAttackerIf,
		[]netip.Addr{AttackerAddr, BlockedAddr}, EdgeAttackerAddr)
	if err != nil {
		return nil, err
	}
	t.attackerIndex, t.attackerMAC, t.edgeMAC = att.Index, att.HardwareAddr, edgeAtt.HardwareAddr
	if _, _, err := t.link(t.client, clientIf, edgeClientIf, []netip.Addr{ClientAddr}, EdgeClientAddr); err != nil {
		return nil, err
	}
	return t, nil
}

// link joins peer to the edge with a veth pair, addresses both ends, waits
// until both can carry traffic and adds permanent neighbour entries both
// ways, so that the first packets need no ARP.
func (t *topology) link(peer *netlab.Namespace, peerIf, edgeIf string, peerAddrs []netip.Addr, edgeAddr netip.Addr) (p, e *netlink.LinkAttrs, err error) {
	pnl, err := peer.Netlink()
	if err != nil {
		return nil, nil, err
	}
	defer pnl.Close()
	enl, err := t.edge.Netlink()
	if err != nil {
		return nil, nil, err
	}
	defer enl.Close()

	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: peerIf}, PeerName: edgeIf, PeerNamespace: netlink.NsFd(t.edge.Handle)}
	if err := pnl.LinkAdd(veth); err != nil {
		return nil, nil, fmt.Errorf("creating veth %s/%s: %w", peerIf, edgeIf, err)
	}
	// A veth's carrier comes up only when both ends are up: set both up,
	// then wait for each.
	if err := setUp(pnl, peer.Name, peerIf, peerAddrs...); err != nil {
		return nil, nil, err
	}
	if err := setUp(enl, t.edge.Name, edgeIf, edgeAddr); err != nil {
		return nil, nil, err
	}
	if p, err = waitUp(pnl, peer.Name, peerIf); err != nil {
		return nil, nil, err
	}
	if e, err = waitUp(enl, t.edge.Name, edgeIf); err != nil {
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
	for _, n := range []*netlab.Namespace{t.edge, t.attacker, t.client} {
		if n != nil {
			n.Close()
		}
	}
}

// removeNamespaces removes the lab's namespaces. The veth pairs live only in
// them and go with them.
func removeNamespaces(n Names) error {
	return errors.Join(netlab.RemoveNamespace(n.Edge), netlab.RemoveNamespace(n.Attacker), netlab.RemoveNamespace(n.Client))
}
