//go:build linux

package lab

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/aegis-edge/aegis/internal/admin"
	"github.com/aegis-edge/aegis/internal/config"
	"github.com/aegis-edge/aegis/internal/fleet/change"
	"github.com/aegis-edge/aegis/internal/fleet/hub"
	"github.com/aegis-edge/aegis/internal/keyfile"
	"github.com/aegis-edge/aegis/internal/netlab"
	"github.com/aegis-edge/aegis/internal/node"
	"github.com/aegis-edge/aegis/internal/store"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.yaml.in/yaml/v3"
)

// HubPort is where the fleet lab's hub listens, on each client address.
const HubPort = 4222

// Files in Names.Dir of a fleet lab.
const (
	hubConfigFile = "hub.yaml"
	hubDir        = "hub"          // the hub's state_dir
	hubLog        = "hub.log"      // its log
	hubPid        = "hub.pid"      // its pid, for Clean
	operatorPub   = "operator.pub" // the key the edges trust
	operatorKey   = "operator.key" // its private half, for a kept lab
)

// hubConfig is the hub's configuration: its state in the lab directory,
// listening on HubPort of every address of the namespace it runs in (the
// client namespace, which holds nothing but the lab's links), the lab's
// operator key.
func hubConfig(n Names) config.Config {
	cfg := config.Default()
	cfg.StateDir = filepath.Join(n.Dir, hubDir)
	cfg.Hub.Listen = fmt.Sprintf("0.0.0.0:%d", HubPort)
	cfg.Hub.OperatorKeys = []string{filepath.Join(n.Dir, operatorPub)}
	return cfg
}

// labHub is the fleet lab's hub, `aegis hub` as a child process in the
// client namespace (so that it outlives the lab with --keep), the lab's
// connection to it and the operator key that signs what the lab publishes.
type labHub struct {
	proc *process
	nc   *nats.Conn
	js   jetstream.JetStream
	pub  *hub.Publisher
	key  ed25519.PrivateKey
	ns   string // the client namespace
}

// nsDialer dials from a thread inside a namespace: the lab itself stays in
// the host's.
type nsDialer struct{ ns *netlab.Namespace }

func (d nsDialer) Dial(network, addr string) (c net.Conn, err error) {
	err = d.ns.Do(func() error {
		c, err = (&net.Dialer{Timeout: 2 * time.Second}).Dial(network, addr)
		return err
	})
	return c, err
}

// startHub writes the operator's key and the hub's config to the lab's
// directory, starts `aegis hub` in the client namespace and connects to it.
func startHub(ctx context.Context, exe string, env []string, t *topology) (_ *labHub, err error) {
	pk, sk, err := keyfile.Generate()
	if err != nil {
		return nil, err
	}
	pem, err := keyfile.MarshalPublicKey(pk)
	if err != nil {
		return nil, err
	}
	priv, err := keyfile.MarshalPrivateKey(sk)
	if err != nil {
		return nil, err
	}
	dir := t.names.Dir
	if err := os.WriteFile(filepath.Join(dir, operatorPub), pem, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, operatorKey), priv, 0o600); err != nil {
		return nil, err
	}
	cfg := hubConfig(t.names)
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("lab hub config: %w", err)
	}
	raw, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, hubConfigFile), raw, 0o600); err != nil {
		return nil, err
	}
	proc, err := startProcess(t.client, exe, env, filepath.Join(dir, hubLog), filepath.Join(dir, hubPid), "hub", "--config", filepath.Join(dir, hubConfigFile))
	if err != nil {
		return nil, fmt.Errorf("starting the hub: %w", err)
	}
	lh := &labHub{proc: proc, key: sk, ns: t.client.Name}
	defer func() {
		if err != nil {
			lh.close(true)
		}
	}()
	// The hub accepts connections before it has made its buckets: retry
	// until the publisher finds them.
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		err = lh.connect(cctx, t.client)
		if err == nil {
			return lh, nil
		}
		select {
		case <-proc.done:
			return nil, fmt.Errorf("the hub exited while starting (%v):\n%s", proc.err, logTail(proc.log))
		case <-cctx.Done():
			return nil, fmt.Errorf("the hub did not answer: %w\n%s", err, logTail(proc.log))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (lh *labHub) connect(ctx context.Context, client *netlab.Namespace) error {
	if lh.nc == nil {
		nc, err := nats.Connect(serverURL(clientLinks[0]), nats.Name("aegis lab"), nats.SetCustomDialer(nsDialer{client}),
			nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
		if err != nil {
			return err
		}
		lh.nc = nc
	}
	js, err := jetstream.New(lh.nc)
	if err != nil {
		return err
	}
	pub, err := hub.NewPublisher(ctx, lh.nc)
	if err != nil {
		return err
	}
	lh.js, lh.pub = js, pub
	return nil
}

// close disconnects from the hub and, if stop, stops it.
func (lh *labHub) close(stop bool) {
	if lh.nc != nil {
		lh.nc.Close()
	}
	if stop {
		lh.proc.stop()
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
		reps, err := hub.Edges(ctx, lh.js)
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
			case <-lh.proc.done:
				return fmt.Errorf("the hub exited (%v):\n%s", lh.proc.err, logTail(lh.proc.log))
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
