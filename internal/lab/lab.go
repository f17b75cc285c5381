//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"

	"github.com/aegis-edge/aegis/internal/admin"
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
	// appends one line a second.
	Live bool
	Out  io.Writer
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
	sum.ID = names.ID
	kept := false
	defer func() {
		if !kept {
			err = errors.Join(err, removeArtifacts(names))
		}
	}()
	fmt.Fprintf(o.Out, "aegis lab %s: namespaces %s, %s, %s\n", names.ID, names.Attacker, names.Client, names.Edge)

	topo, err := newTopology(names)
	if err != nil {
		return sum, err
	}
	defer topo.close()

	nd, err := startNode(o.Executable, o.Env, topo.edge, names)
	if err != nil {
		return sum, err
	}
	defer func() {
		if !kept {
			nd.stop()
		}
	}()
	ac := admin.NewClient(names.Socket())
	if err := nd.waitReady(ctx, ac, names); err != nil {
		return sum, err
	}
	if err := prepareNode(ctx, ac, o.Module); err != nil {
		return sum, fmt.Errorf("%w\n%s", err, logTail(names.Log()))
	}
	fmt.Fprintf(o.Out, "node pid %d on %s and %s; blocked %s; deployed %s on http://%s%s\n",
		nd.cmd.Process.Pid, edgeAttackerIf, edgeClientIf, BlockedAddr, FunctionName, gatewayAddr(), FunctionRoute)

	fl, err := newFlood(topo, o.Rates)
	if err != nil {
		return sum, err
	}
	defer fl.close()
	cl := newClient(topo.client, "http://"+gatewayAddr().String()+FunctionRoute)

	status := func() (sample, error) {
		st, err := ac.Status(ctx)
		if err != nil {
			return sample{}, fmt.Errorf("reading the shield's counters: %w", err)
		}
		return sample{at: time.Now(), counters: st.Counters, autoBlocks: st.AutoBlocks, sent: fl.counts()}, nil
	}
	prev, err := status()
	if err != nil {
		return sum, err
	}
	v := &view{w: o.Out, live: o.Live, id: names.ID, total: o.Duration, start: prev.at}

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

	end := time.After(o.Duration)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			err = fmt.Errorf("interrupted: %w", context.Cause(ctx))
			break loop
		case <-nd.done:
			return sum, fmt.Errorf("the node exited during the run (%v):\n%s", nd.err, logTail(names.Log()))
		case <-end:
			break loop
		case <-tick.C:
			cur, serr := status()
			if serr != nil {
				return sum, serr
			}
			cur.fn = cl.take()
			v.draw(prev, cur)
			prev = cur
		}
	}
	stop()
	sum.Duration = time.Since(v.start)
	// An interrupted run still gets its summary.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if ferr := fillSummary(fctx, &sum, ac, fl, cl); ferr != nil {
		return sum, errors.Join(err, ferr)
	}
	sum.Write(o.Out)

	if o.Keep && err == nil {
		kept = true
		printKept(o.Out, names, nd.cmd.Process.Pid)
	}
	return sum, err
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

// prepareNode blocks the blocklisted source and deploys the function.
func prepareNode(ctx context.Context, ac *admin.Client, module []byte) error {
	add := admin.AddRequest{Targets: []string{BlockedAddr.String()}, Reason: "aegis lab: known bad source"}
	if _, err := ac.Add(ctx, string(store.Blocklist), add); err != nil {
		return fmt.Errorf("blocking %s: %w", BlockedAddr, err)
	}
	dep := admin.DeployRequest{Module: module, Spec: functions.Spec{Route: FunctionRoute}}
	if _, err := ac.Deploy(ctx, FunctionName, dep); err != nil {
		return fmt.Errorf("deploying the function: %w", err)
	}
	return nil
}

func fillSummary(ctx context.Context, sum *Summary, ac *admin.Client, fl *flood, cl *client) error {
	st, err := ac.Status(ctx)
	if err != nil {
		return fmt.Errorf("reading the shield's counters: %w", err)
	}
	sum.Shield = make(map[string]uint64, len(st.Counters))
	for r, c := range st.Counters {
		sum.Shield[r] = c.Packets
	}
	sum.AutoBlocked = st.AutoBlocks
	sum.Sent, sum.Refused = fl.counts(), fl.refused()
	var lat []time.Duration
	sum.OK, sum.Failed, lat = cl.totals()
	sum.P50, sum.P99 = percentile(lat, 0.5), percentile(lat, 0.99)
	return nil
}

func printKept(w io.Writer, n Names, pid int) {
	fmt.Fprintf(w, `
kept: the node (pid %d) runs on in %s.
  aegis --socket %s stats --watch
  ip netns exec %s curl http://%s%s
  node log: %s
clean up: aegis lab --clean %s
`, pid, n.Edge, n.Socket(), n.Client, gatewayAddr(), FunctionRoute, n.Log(), n.ID)
}
