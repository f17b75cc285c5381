//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/aegis-edge/aegis/internal/admin"
	"github.com/aegis-edge/aegis/internal/config"
	"github.com/aegis-edge/aegis/internal/functions"
	"github.com/aegis-edge/aegis/internal/store"
)

// Options configure a lab run.
type Options struct {
	// Executable is the aegis binary the edge node runs as, with Env as
	// its environment.
	Executable string
	Env        []string
	// Duration is how long the traffic runs.
	Duration time.Duration
	// Rates paces the attack; a zero rate leaves that stream out
	// (DefaultRates is the demo's).
	Rates Rates
	// Module is the function to deploy; nil deploys the lab's own (function.wat).
	Module []byte
	// Keep leaves the topology and the node running after the traffic
	// stops; Clean removes them later.
	Keep bool
	// Live redraws the view in place (for a terminal); otherwise it
	// appends one line a second. A fleet lab always appends, one line per
	// edge a second.
	Live bool
	Out  io.Writer
	// Fleet runs a hub and FleetEdges edges that follow it instead of one
	// standalone edge; the blocklisted source is blocked on the hub.
	Fleet bool
}

// Run builds the lab, runs the traffic for o.Duration (or until ctx ends),
// prints the live view and the summary to o.Out, and tears everything down
// unless o.Keep. It returns the summary of what ran, and an error if the lab
// could not be built or run or ctx ended early; whether the run showed what
// it should is Summary.Check's to say.
func Run(ctx context.Context, o Options) (sum Summary, err error) {
	if o.Duration <= 0 {
		return sum, fmt.Errorf("duration must be positive")
	}
	if o.Module == nil {
		o.Module = functionModule
	}
	names, err := makeDir()
	if err != nil {
		return sum, err
	}
	sum.ID, sum.Fleet = names.ID, o.Fleet
	kept := false
	defer func() {
		if !kept {
			err = errors.Join(err, removeArtifacts(names))
		}
	}()
	edgeNames := names.edges(o.Fleet)
	nsList := []string{names.Attacker, names.Client}
	for _, e := range edgeNames {
		nsList = append(nsList, e.NS)
	}
	fmt.Fprintf(o.Out, "aegis lab %s: namespaces %s\n", names.ID, strings.Join(nsList, ", "))

	topo, err := newTopology(names, edgeNames)
	if err != nil {
		return sum, err
	}
	defer topo.close()

	var lh *labHub
	if o.Fleet {
		if lh, err = startHub(ctx, o.Executable, o.Env, topo); err != nil {
			return sum, err
		}
		// Registered before the nodes' stop, so it runs after it.
		defer func() { lh.close(!kept) }()
	}

	var nodes []*nodeProcess
	defer func() {
		if !kept {
			stopNodes(nodes)
		}
	}()
	for _, e := range topo.edges {
		var fc *config.Fleet
		if o.Fleet {
			fc = fleetConfig(names, e)
		}
		nd, err := startNode(o.Executable, o.Env, e, fc)
		if err != nil {
			return sum, err
		}
		nodes = append(nodes, nd)
	}
	acs := make([]*admin.Client, len(nodes))
	for i, nd := range nodes {
		acs[i] = admin.NewClient(nd.names.Socket())
		if err := nd.waitReady(ctx, acs[i]); err != nil {
			return sum, err
		}
	}
	if !o.Fleet {
		if err := prepareNode(ctx, acs[0], o.Module, true); err != nil {
			return sum, fmt.Errorf("%w\n%s", err, logTail(names.Log()))
		}
		fmt.Fprintf(o.Out, "node pid %d on %s and %s; blocked %s; deployed %s on http://%s%s\n",
			nodes[0].cmd.Process.Pid, edgeAttackerIf, edgeClientIf, BlockedAddr, FunctionName, gatewayAddr(), FunctionRoute)
	} else {
		if err := prepareFleet(ctx, o, lh, nodes, acs, &sum); err != nil {
			return sum, err
		}
	}

	fl, err := newFlood(topo, o.Rates)
	if err != nil {
		return sum, err
	}
	defer fl.close()
	cl := newClient(topo.client, "http://"+gatewayAddr().String()+FunctionRoute)

	status := func() ([]sample, error) {
		now, sent := time.Now(), fl.counts()
		out := make([]sample, len(acs))
		for i, ac := range acs {
			st, err := ac.Status(ctx)
			if err != nil {
				return nil, fmt.Errorf("reading the shield's counters of %s: %w", nodes[i].names.Name, err)
			}
			out[i] = sample{at: now, counters: st.Counters, autoBlocks: st.AutoBlocks, sent: sent}
		}
		return out, nil
	}
	prev, err := status()
	if err != nil {
		return sum, err
	}
	v := &view{w: o.Out, live: o.Live, id: names.ID, total: o.Duration, start: prev[0].at}

	trafficCtx, stopTraffic := context.WithCancel(ctx)
	cl.start(trafficCtx)
	fl.start(trafficCtx)
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			stopTraffic()
			fl.wait()
			cl.wait()
		}
	}
	defer stop()

	exited := make(chan *nodeProcess, len(nodes))
	for _, nd := range nodes {
		go func() {
			<-nd.done
			exited <- nd
		}()
	}
	end := time.After(o.Duration)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			err = fmt.Errorf("interrupted: %w", context.Cause(ctx))
			break loop
		case nd := <-exited:
			return sum, fmt.Errorf("the node of %s exited during the run (%v):\n%s", nd.names.Name, nd.err, logTail(nd.names.Log()))
		case <-end:
			break loop
		case <-tick.C:
			cur, serr := status()
			if serr != nil {
				return sum, serr
			}
			cur[0].fn = cl.take()
			if o.Fleet {
				v.drawFleet(nodes, prev, cur)
			} else {
				v.draw(prev[0], cur[0])
			}
			prev = cur
		}
	}
	stop()
	sum.Duration = time.Since(v.start)
	// An interrupted run still gets its summary.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if ferr := fillSummary(fctx, &sum, nodes, acs, fl, cl); ferr != nil {
		return sum, errors.Join(err, ferr)
	}
	sum.Write(o.Out)

	if o.Keep && err == nil {
		kept = true
		printKept(o.Out, names, nodes, lh)
	}
	return sum, err
}

// stopNodes stops the nodes, all at once: each may take its grace period.
func stopNodes(nodes []*nodeProcess) {
	var wg sync.WaitGroup
	for _, nd := range nodes {
		wg.Go(nd.stop)
	}
	wg.Wait()
}

// propagationTimeout bounds the wait for an edge to list the fleet block;
// an edge that does not is shown in the summary and fails Check.
const propagationTimeout = 10 * time.Second

// prepareFleet waits for the edges to report to the hub, publishes the
// fleet block on the hub and measures how long each edge takes to list it,
// and deploys the function on the first edge.
func prepareFleet(ctx context.Context, o Options, lh *labHub, nodes []*nodeProcess, acs []*admin.Client, sum *Summary) error {
	var edgeNames []string
	for _, nd := range nodes {
		edgeNames = append(edgeNames, nd.names.Name)
		sum.Edges = append(sum.Edges, EdgeSummary{Name: nd.names.Name})
	}
	if err := lh.waitEdges(ctx, edgeNames, nodes); err != nil {
		return err
	}
	var pids []string
	for _, nd := range nodes {
		pids = append(pids, fmt.Sprintf("%s (pid %d)", nd.names.Name, nd.cmd.Process.Pid))
	}
	fmt.Fprintf(o.Out, "hub in %s on %s; %s connected to it\n", lh.ns, hubURLs(len(nodes)), strings.Join(pids, ", "))

	pctx, cancel := context.WithTimeout(ctx, propagationTimeout)
	defer cancel()
	published := time.Now()
	if err := lh.publishBlock(pctx); err != nil {
		return err
	}
	acked := time.Now()
	var wg sync.WaitGroup
	for i, ac := range acs {
		wg.Go(func() {
			if waitListed(pctx, ac) == nil {
				sum.Edges[i].Applied, sum.Edges[i].Propagation = true, time.Since(acked)
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted: %w", context.Cause(ctx))
	}
	var times []string
	for _, e := range sum.Edges {
		if e.Applied {
			times = append(times, fmt.Sprintf("%s after %s", e.Name, fmtLatency(e.Propagation)))
		} else {
			times = append(times, fmt.Sprintf("%s NOT within %s", e.Name, propagationTimeout))
		}
	}
	fmt.Fprintf(o.Out, "fleet block of %s signed and published on the hub (acknowledged in %s); listed by %s\n",
		BlockedAddr, fmtLatency(acked.Sub(published)), strings.Join(times, ", "))

	if err := prepareNode(ctx, acs[0], o.Module, false); err != nil {
		return fmt.Errorf("%w\n%s", err, logTail(nodes[0].names.Log()))
	}
	fmt.Fprintf(o.Out, "deployed %s on %s: http://%s%s\n", FunctionName, nodes[0].names.Name, gatewayAddr(), FunctionRoute)
	return nil
}

// makeDir creates the lab's directory under a fresh ID, which makes the ID
// the lab's own.
func makeDir() (Names, error) {
	for range 10 {
		n := NamesFor(newID())
		err := os.Mkdir(n.Dir, 0o700)
		if err == nil {
			return n, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return n, err
		}
	}
	return Names{}, fmt.Errorf("could not find a free lab ID in %s", os.TempDir())
}

func gatewayAddr() netip.AddrPort { return netip.AddrPortFrom(EdgeClientAddr, GatewayPort) }

// prepareNode blocks the blocklisted source, if block, and deploys the
// function.
func prepareNode(ctx context.Context, ac *admin.Client, module []byte, block bool) error {
	if block {
		add := admin.AddRequest{Targets: []string{BlockedAddr.String()}, Reason: "aegis lab: known bad source"}
		if _, err := ac.Add(ctx, string(store.Blocklist), add); err != nil {
			return fmt.Errorf("blocking %s: %w", BlockedAddr, err)
		}
	}
	dep := admin.DeployRequest{Module: module, Spec: functions.Spec{Route: FunctionRoute}}
	if _, err := ac.Deploy(ctx, FunctionName, dep); err != nil {
		return fmt.Errorf("deploying the function: %w", err)
	}
	return nil
}

func fillSummary(ctx context.Context, sum *Summary, nodes []*nodeProcess, acs []*admin.Client, fl *flood, cl *client) error {
	sum.Shield = map[string]uint64{}
	sum.AutoBlocked = 0
	for i, ac := range acs {
		st, err := ac.Status(ctx)
		if err != nil {
			return fmt.Errorf("reading the shield's counters of %s: %w", nodes[i].names.Name, err)
		}
		for r, c := range st.Counters {
			sum.Shield[r] += c.Packets
		}
		sum.AutoBlocked += st.AutoBlocks
		if i < len(sum.Edges) {
			e := &sum.Edges[i]
			e.Shield = make(map[string]uint64, len(st.Counters))
			for r, c := range st.Counters {
				e.Shield[r] = c.Packets
			}
			e.AutoBlocked = st.AutoBlocks
		}
	}
	sum.Sent, sum.Refused = fl.counts(), fl.refused()
	var lat []time.Duration
	sum.OK, sum.Failed, lat = cl.totals()
	sum.P50, sum.P99 = percentile(lat, 0.5), percentile(lat, 0.99)
	return nil
}

func printKept(w io.Writer, n Names, nodes []*nodeProcess, lh *labHub) {
	if lh == nil {
		fmt.Fprintf(w, `
kept: the node (pid %d) runs on in %s.
  aegis --socket %s stats --watch
  ip netns exec %s curl http://%s%s
  node log: %s
clean up: aegis lab --clean %s
`, nodes[0].cmd.Process.Pid, n.Edge, n.Socket(), n.Client, gatewayAddr(), FunctionRoute, n.Log(), n.ID)
		return
	}
	fmt.Fprintf(w, "\nkept: the hub (pid %d) runs on in %s, on %s; log: %s\n",
		lh.proc.cmd.Process.Pid, lh.ns, hubURLs(len(nodes)), lh.proc.log)
	fmt.Fprintf(w, "  operator key: %s (the edges trust %s)\n", filepath.Join(n.Dir, operatorKey), filepath.Join(n.Dir, operatorPub))
	// The hub is reachable only from inside the client namespace.
	fleet := fmt.Sprintf("ip netns exec %s aegis fleet --server %s", n.Client, serverURL(clientLinks[0]))
	fmt.Fprintf(w, "  %s --key %s block add 192.0.2.77 --wait 5s\n  %s edges\n",
		fleet, filepath.Join(n.Dir, operatorKey), fleet)
	for _, nd := range nodes {
		e := nd.names
		fmt.Fprintf(w, "  %s (pid %d) in %s:\n    aegis --socket %s stats --watch\n    aegis --socket %s block ls\n    node log: %s\n",
			e.Name, nd.cmd.Process.Pid, e.NS, e.Socket(), e.Socket(), e.Log())
	}
	fmt.Fprintf(w, "  ip netns exec %s curl http://%s%s\nclean up: aegis lab --clean %s\n", n.Client, gatewayAddr(), FunctionRoute, n.ID)
}
