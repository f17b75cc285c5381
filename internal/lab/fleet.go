//go:build linux

package lab

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aegis-edge/aegis/internal/admin"
	"github.com/aegis-edge/aegis/internal/config"
	"github.com/aegis-edge/aegis/internal/fleet/change"
	"github.com/aegis-edge/aegis/internal/fleet/hub"
	"github.com/aegis-edge/aegis/internal/keyfile"
	"github.com/aegis-edge/aegis/internal/node"
	"github.com/aegis-edge/aegis/internal/store"
)

// HubPort is where the fleet lab's hub takes the edges' connections, on
// each client address.
const HubPort = 4222

// Files in Names.Dir of a fleet lab.
const (
	hubDir      = "hub"          // the hub's JetStream store
	operatorPub = "operator.pub" // the key the edges trust
)

// labHub is the fleet lab's hub: an embedded JetStream server in this
// process, reached by the edges through a listener in the client
// namespace, and the operator key that signs what the lab publishes.
type labHub struct {
	h   *hub.Hub
	pub *hub.Publisher
	key ed25519.PrivateKey
	ln  net.Listener
	ns  string // the client namespace, where ln is

	mu     sync.Mutex
	conns  []net.Conn
	closed bool
	wg     sync.WaitGroup
}

// startHub starts the hub and writes the operator's public key to the
// lab's directory.
//
// The embedded server listens from goroutines of its own, which run in
// this process's namespace whatever thread started them, so it cannot be
// told to listen in the client namespace. Instead the lab listens there
// itself (a socket opened on a thread inside a namespace stays in it) and
// hands each connection to the server as an in-process one; the server's
// own listener is on a random loopback port of the host, which nothing
// uses.
func startHub(ctx context.Context, t *topology) (_ *labHub, err error) {
	pk, sk, err := keyfile.Generate()
	if err != nil {
		return nil, err
	}
	pem, err := keyfile.MarshalPublicKey(pk)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(t.names.Dir, operatorPub), pem, 0o600); err != nil {
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	h, err := hub.Open(hctx, hub.Options{StoreDir: filepath.Join(t.names.Dir, hubDir), Listen: "127.0.0.1:-1"})
	if err != nil {
		return nil, fmt.Errorf("starting the hub: %w", err)
	}
	lh := &labHub{h: h, key: sk, ns: t.client.Name}
	defer func() {
		if err != nil {
			lh.close()
		}
	}()
	if lh.pub, err = hub.NewPublisher(hctx, h.Conn); err != nil {
		return nil, err
	}
	// One listener for every client link: the client namespace holds
	// nothing but the lab's links.
	if err := t.client.Do(func() (err error) {
		lh.ln, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", HubPort))
		return err
	}); err != nil {
		return nil, fmt.Errorf("listening for the edges in %s: %w", t.client.Name, err)
	}
	lh.wg.Add(1)
	go lh.serve()
	return lh, nil
}

// serve hands each edge's connection to the embedded server.
func (lh *labHub) serve() {
	defer lh.wg.Done()
	for {
		c, err := lh.ln.Accept()
		if err != nil {
			return // closed
		}
		s, err := lh.h.Server.InProcessConn()
		if err != nil {
			c.Close()
			continue
		}
		lh.mu.Lock()
		if lh.closed {
			lh.mu.Unlock()
			c.Close()
			s.Close()
			return
		}
		lh.conns = append(lh.conns, c, s)
		lh.wg.Add(2)
		lh.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			defer lh.wg.Done()
			io.Copy(dst, src)
			// Either side ending ends both.
			dst.Close()
			src.Close()
		}
		go pipe(c, s)
		go pipe(s, c)
	}
}

// serverURL is the hub's URL as the edge on this client link reaches it.
func serverURL(l clientLink) string {
	return "nats://" + netip.AddrPortFrom(l.Client, HubPort).String()
}

// hubURLs lists the hub's URLs as the first n edges reach it.
func hubURLs(n int) string {
	var urls []string
	for _, l := range clientLinks[:n] {
		urls = append(urls, serverURL(l))
	}
	return strings.Join(urls, " and ")
}

// fleetConfig is the fleet.* of edge e.
func fleetConfig(names Names, e *edgeLinks) *config.Fleet {
	return &config.Fleet{
		Servers:     []string{serverURL(e.addrs)},
		Name:        e.names.Name,
		TrustedKeys: []string{filepath.Join(names.Dir, operatorPub)},
	}
}

// waitEdges waits until every named edge has reported to the hub: it is
// connected and has caught up.
func (lh *labHub) waitEdges(ctx context.Context, names []string, nodes []*nodeProcess) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		reps, err := hub.Edges(ctx, lh.h.JS)
		var missing []string
		for _, n := range names {
			if !slices.ContainsFunc(reps, func(r hub.EdgeReport) bool { return r.Name == n }) {
				missing = append(missing, n)
			}
		}
		if err == nil && len(missing) == 0 {
			return nil
		}
		for _, nd := range nodes {
			select {
			case <-nd.done:
				return fmt.Errorf("the node of %s exited (%v):\n%s", nd.names.Name, nd.err, logTail(nd.names.Log()))
			default:
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("edges %v did not report to the hub: %w", missing, errors.Join(err, ctx.Err()))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// blockReason is the reason of the fleet block the lab publishes.
const blockReason = "aegis lab: known bad source (fleet)"

// publishBlock signs a block of BlockedAddr with the operator key and
// publishes it; it returns once the hub acknowledged it.
func (lh *labHub) publishBlock(ctx context.Context) error {
	c := change.Change{Kind: change.KindList, Op: change.OpPut, List: change.Blocklist,
		Prefix: netip.PrefixFrom(BlockedAddr, BlockedAddr.BitLen()), Reason: blockReason}
	env, err := change.Sign(c, lh.key)
	if err != nil {
		return err
	}
	if _, err := lh.pub.Publish(ctx, env); err != nil {
		return fmt.Errorf("publishing the fleet block: %w", err)
	}
	return nil
}

// waitListed waits until the edge's admin API lists the fleet's block of
// BlockedAddr, polling fast so that the time measured is the propagation's.
func waitListed(ctx context.Context, ac *admin.Client) error {
	want := netip.PrefixFrom(BlockedAddr, BlockedAddr.BitLen())
	for {
		l, err := ac.List(ctx, string(store.Blocklist))
		if err == nil && slices.ContainsFunc(l.Entries, func(e node.ListedEntry) bool {
			return e.Prefix == want && e.Origin == store.OriginFleet
		}) {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
}

// close stops taking connections, cuts those taken and stops the hub.
func (lh *labHub) close() {
	if lh.ln != nil {
		lh.ln.Close()
	}
	lh.mu.Lock()
	lh.closed = true
	for _, c := range lh.conns {
		c.Close()
	}
	lh.mu.Unlock()
	lh.wg.Wait()
	lh.h.Close()
}
