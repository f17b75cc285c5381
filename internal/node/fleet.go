package node

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/aegis-edge/aegis/internal/audit"
	"github.com/aegis-edge/aegis/internal/config"
	fleetchange "github.com/aegis-edge/aegis/internal/fleet/change"
	"github.com/aegis-edge/aegis/internal/fleet/follow"
	"github.com/aegis-edge/aegis/internal/fleet/hub"
	"github.com/aegis-edge/aegis/internal/fleet/report"
	"github.com/aegis-edge/aegis/internal/functions"
	"github.com/aegis-edge/aegis/internal/keyfile"
	"github.com/aegis-edge/aegis/internal/lists"
	"github.com/aegis-edge/aegis/internal/shield"
	"github.com/aegis-edge/aegis/internal/store"
	"github.com/prometheus/client_golang/prometheus"
)

// The store keeps the follower's memory, and the node saves it with the
// entries.
var (
	_ follow.State     = store.FleetState{}
	_ follow.Committer = fleetApplier{}
)

// fleetAuditPeriod is how often refused fleet changes are written to the
// audit log: one record per reason and key per period, so forged records
// on the bus cannot flood the log.
const fleetAuditPeriod = time.Minute

// ReasonInvalid is the refusal of a signed change the node's own checks
// refuse: a module the validator or compiler refuses, a spec or reason
// out of bounds. The previous version of a function keeps serving.
const ReasonInvalid = "invalid"

// fleetReasons are the refusal reasons counted by
// aegis_fleet_rejected_total{reason}.
var fleetReasons = append(append([]string(nil), fleetchange.Reasons...), ReasonInvalid)

// EdgeName is the name this node has in the fleet: fleet.name, or the
// host name made into a valid edge name.
func EdgeName(cfg config.Config) string {
	if cfg.Fleet.Name != "" {
		return cfg.Fleet.Name
	}
	host, _ := os.Hostname()
	host, _, _ = strings.Cut(host, ".")
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '-'
	}, host)
	name = strings.TrimLeft(name, "-_")
	if len(name) > 63 {
		name = name[:63]
	}
	if name == "" {
		name = "edge"
	}
	return name
}

// FleetPolicy is what this node trusts, from fleet.*.
func FleetPolicy(cfg config.Config) (fleetchange.Policy, error) {
	f := cfg.Fleet
	p := fleetchange.Policy{
		Skew: f.MaxClockSkew.Duration,
		Broadest: fleetchange.Broadest{BlockV4: f.Broadest.BlockIPv4, BlockV6: f.Broadest.BlockIPv6,
			AllowV4: f.Broadest.AllowIPv4, AllowV6: f.Broadest.AllowIPv6},
		Management: cfg.Admin.ManagementPrefixes(),
	}
	for _, path := range f.TrustedKeys {
		k, err := keyfile.ReadPublicKey(path)
		if err != nil {
			return p, fmt.Errorf("fleet.trusted_keys: %w", err)
		}
		p.Operators = append(p.Operators, k)
	}
	if f.ControllerKey != "" {
		k, err := keyfile.ReadPublicKey(f.ControllerKey)
		if err != nil {
			return p, fmt.Errorf("fleet.controller_key: %w", err)
		}
		p.Controller = ed25519.PublicKey(k)
	}
	return p, nil
}

// startFleet connects to the hub in the background and follows it until
// ctx ends. It returns once the follower is set up: a hub that is away
// never holds the node's start; the store is the edge's offline copy and
// the node enforced it before any network.
func (n *Node) startFleet(ctx context.Context) (wait func(), err error) {
	f := n.cfg.Fleet
	if len(f.Servers) == 0 {
		return func() {}, nil
	}
	// Under the lock a reload takes: a SIGHUP now either comes before the
	// policy is read or finds the verifier to hand its management list.
	n.mu.Lock()
	policy, err := FleetPolicy(n.cfg)
	var v *fleetchange.Verifier
	if err == nil {
		v, err = fleetchange.NewVerifier(policy)
	}
	if err == nil {
		n.verifier.Store(v)
	}
	n.mu.Unlock()
	if err != nil {
		return nil, err
	}
	d := hub.Dial{Servers: f.Servers, Name: "aegis-edge " + n.edgeName, Credentials: f.Credentials, Background: true}
	if f.TLS.Enabled() {
		if d.TLS, err = hub.ClientTLS(f.TLS.CA, f.TLS.Cert, f.TLS.Key); err != nil {
			return nil, fmt.Errorf("fleet.tls: %w", err)
		}
	}
	nc, err := d.Connect()
	if err != nil {
		return nil, err
	}
	fl, err := follow.New(follow.Options{
		Conn: nc, Verifier: v, State: n.store.Fleet(), Applier: fleetApplier{n},
		Recheck: f.ReconcileInterval.Duration, Name: n.edgeName,
		MaxModule: int64(n.cfg.Functions.MaxModuleSize),
		OnRefused: func(key string, err error) { n.countFleetRefusal(key, fleetchange.ReasonOf(err), err) },
		Logger:    n.log.With("fleet", true),
	})
	if err != nil {
		nc.Close()
		return nil, err
	}
	var rep *report.Reporter
	if f.ProposeAutoBlocks {
		rep, err = report.New(report.Options{Dir: filepath.Join(n.cfg.StateDir, "fleet-reports"), Name: n.edgeName,
			Conn: nc, Logger: n.log.With("fleet", true)})
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("fleet.propose_auto_blocks: %w", err)
		}
	}
	n.follower.Store(fl)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { fl.Run(ctx) })
	if rep != nil {
		wg.Go(func() { rep.Run(ctx) })
		wg.Go(func() { n.proposeAutoBlocks(ctx, rep) })
	}
	go func() {
		defer close(done)
		wg.Wait()
		if rep != nil {
			rep.Close()
		}
		nc.Close()
	}()
	go n.fleetAudit.Run(ctx, fleetAuditPeriod, func(err error) {
		n.log.Error("auditing refused fleet changes", "err", err)
	})
	n.log.Info("following the fleet", "servers", f.Servers, "edge", n.edgeName)
	return func() { <-done }, nil
}

// maxPendingProposals bounds the automatic blocks waiting to be queued
// for the hub; under a flood of new sources the excess is dropped (the
// edge blocks them locally all the same).
const maxPendingProposals = 1024

// proposeAutoBlocks queues the shield's automatic blocks for the hub's
// controller. Queuing fsyncs, so it runs apart from the event reader.
// Blocks seen in monitor mode are not proposed: a node that only watches
// must not make the fleet enforce.
func (n *Node) proposeAutoBlocks(ctx context.Context, rep *report.Reporter) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-n.proposals:
			if err := rep.Report(ev.Source, ev.Until); err != nil {
				n.log.Error("queuing an automatic block for the fleet", "source", ev.Source, "err", err)
			}
		}
	}
}

// proposeAutoBlock hands an automatic block to proposeAutoBlocks, if the
// node proposes them, without ever blocking the event reader.
func (n *Node) proposeAutoBlock(ev shield.AutoBlock) {
	if n.proposals == nil || ev.Monitor {
		return
	}
	select {
	case n.proposals <- ev:
	default:
		n.proposalsDropped.Add(1)
	}
}

// fleetRefused is a fleet change the node refused while applying it:
// counted, audited (aggregated) and reported by the follower.
func (n *Node) fleetRefused(key, reason string, err error) {
	if reason == "" {
		reason = ReasonInvalid
	}
	// The follower moves past it as past an applied change: it reports
	// the refusal, so `--wait` does not take it for applied.
	if fl := n.follower.Load(); fl != nil {
		fl.NoteRefused(key, reason)
	}
	n.countFleetRefusal(key, reason, err)
}

// countFleetRefusal counts, audits and logs a refused fleet change.
func (n *Node) countFleetRefusal(key, reason string, err error) {
	n.fleetRejected.WithLabelValues(reason).Inc()
	n.fleetAudit.Add(reason+" "+key, 0, time.Now())
	// Forged records cost their writer nothing: the journal gets them
	// at debug level only; the audit log aggregates them, the metric
	// counts them.
	n.log.Debug("fleet change refused", "key", key, "reason", reason, "err", err)
}

// FleetStatus is `aegis fleet status`.
type FleetStatus struct {
	Enabled bool     `json:"enabled"`
	Edge    string   `json:"edge,omitempty"`
	Servers []string `json:"servers,omitempty"`
	follow.Status
	// Entries counts this node's entries the fleet owns, per list.
	Entries map[lists.List]int `json:"entries,omitempty"`
}

// FleetStatus reports the follower's state.
func (n *Node) FleetStatus() (FleetStatus, error) {
	fl := n.follower.Load()
	if fl == nil {
		return FleetStatus{}, nil
	}
	st := FleetStatus{Enabled: true, Edge: n.edgeName, Servers: n.cfg.Fleet.Servers, Status: fl.Status(),
		Entries: map[lists.List]int{}}
	for _, l := range lists.All() {
		es, err := n.store.List(l)
		if err != nil {
			return st, err
		}
		for _, e := range es {
			if e.Origin == store.OriginFleet {
				st.Entries[l]++
			}
		}
	}
	return st, nil
}

// fleetApplier takes verified fleet changes into the node: every one goes
// through the pipeline an operator's change takes (validate, audit, store,
// kernel, or for a function the registry's deploy), with the signer as
// the actor.
type fleetApplier struct{ n *Node }

// listBatch groups the list changes of one signer on one list, so a
// batch of the follower is one store transaction, one audit record and
// one kernel sync per group.
type listBatch struct {
	list   lists.List
	signer string
}

// Apply implements follow.Applier. A change the node refuses is counted
// and audited and not retried (the follower records it as decided); an
// error (the audit log or the store failing) makes the follower resend
// the whole batch, which is idempotent.
func (a fleetApplier) Apply(ctx context.Context, changes []fleetchange.Change) error {
	return a.apply(ctx, changes, nil)
}

// ApplyCommit implements follow.Committer: the follower's state is saved
// in the store transaction of the batch's last list change, after every
// rate and function change of the batch is stored, or on its own when no
// list change reaches the store.
func (a fleetApplier) ApplyCommit(ctx context.Context, changes []fleetchange.Change, cur follow.Cursor) error {
	return a.apply(ctx, changes, &store.FleetCommit{Applied: changes, Cursor: cur})
}

func (a fleetApplier) apply(ctx context.Context, changes []fleetchange.Change, fc *store.FleetCommit) error {
	n := a.n
	// Group the list changes, sizing each group's slices first: an import
	// is a hundred thousand of them.
	type group struct {
		nPuts, nDels int
		puts, dels   []fleetchange.Change
	}
	groups := map[listBatch]*group{}
	var order []listBatch
	for _, c := range changes {
		if c.Kind != fleetchange.KindList {
			continue
		}
		b := listBatch{lists.List(c.List), signerOf(c)}
		g := groups[b]
		if g == nil {
			g = &group{}
			groups[b] = g
			order = append(order, b)
		}
		if c.Op == fleetchange.OpDelete {
			g.nDels++
		} else {
			g.nPuts++
		}
	}
	// One group holding the whole batch (an import): its puts, or its
	// deletes, are the batch itself.
	whole := false
	if len(order) == 1 {
		switch g := groups[order[0]]; len(changes) {
		case g.nPuts:
			g.puts, whole = changes, true
		case g.nDels:
			g.dels, whole = changes, true
		}
	}
	if !whole {
		for _, g := range groups {
			g.puts = make([]fleetchange.Change, 0, g.nPuts)
			g.dels = make([]fleetchange.Change, 0, g.nDels)
		}
		for _, c := range changes {
			switch c.Kind {
			case fleetchange.KindList:
				g := groups[listBatch{lists.List(c.List), signerOf(c)}]
				if c.Op == fleetchange.OpDelete {
					g.dels = append(g.dels, c)
				} else {
					g.puts = append(g.puts, c)
				}
			case fleetchange.KindRate:
				if err := n.applyFleetRate(c); err != nil {
					return err
				}
			case fleetchange.KindFunction:
				if err := n.applyFleetFunction(ctx, c); err != nil {
					return err
				}
			}
		}
	}
	for i, b := range order {
		var last *store.FleetCommit
		if i == len(order)-1 {
			last = fc
		}
		saved, err := n.applyFleetList(b, groups[b].puts, groups[b].dels, last)
		if err != nil {
			return err
		}
		if saved {
			fc = nil
		}
	}
	if fc != nil {
		return n.store.Fleet().Commit(fc.Applied, fc.Cursor)
	}
	return nil
}

func fleetActor(keyID string) Actor { return Actor{Fleet: keyID} }

// fleetActorPrefix begins a fleet actor's String.
const fleetActorPrefix = "fleet key="

// signerOf names who decided c: its signer, or for a delete a full
// reconcile made up (the hub no longer holds the key) the reconcile.
func signerOf(c fleetchange.Change) string {
	if c.Reconciled || c.KeyID == "" {
		return "reconcile"
	}
	return c.KeyID
}

// applyFleetList puts and removes one signer's entries on one list. With
// fc, it saves the follower's state in its last store transaction and
// reports whether it did (not when nothing reached the store).
func (n *Node) applyFleetList(b listBatch, puts, dels []fleetchange.Change, fc *store.FleetCommit) (saved bool, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	actor := fleetActor(b.signer)
	if len(dels) > 0 {
		keys := make([]store.Key, len(dels))
		for i, c := range dels {
			keys[i] = store.Key{List: b.list, Prefix: c.Prefix}
		}
		have, err := n.store.GetMany(keys)
		if err != nil {
			return false, err
		}
		// Only the fleet's own entries are the fleet's to remove.
		var remove []store.Key
		var targets []netip.Prefix
		for _, k := range keys {
			if e, ok := have[k.Prefix]; ok && e.Origin == store.OriginFleet {
				remove = append(remove, k)
				targets = append(targets, k.Prefix)
			}
		}
		if len(remove) > 0 {
			ev := mapEvent(audit.OpMapRemove, b.list, targets, actor, func(ts targetSet) any {
				return removeDetails{targetSet: ts}
			})
			var with *store.FleetCommit
			if len(puts) == 0 {
				with = fc
			}
			if _, err := n.commitList(b.list, nil, remove, nil, with, ev); err != nil {
				return false, err
			}
			saved = with != nil
		}
	}
	if len(puts) == 0 {
		return saved, nil
	}
	adds := make([]store.Entry, 0, len(puts))
	targets := make([]netip.Prefix, 0, len(puts))
	var have lists.Count
	if have.V4, have.V6, err = n.store.Count(b.list); err != nil {
		return false, err
	}
	keys := make([]store.Key, len(puts))
	for i, c := range puts {
		keys[i] = store.Key{List: b.list, Prefix: c.Prefix}
	}
	previous, err := n.store.GetMany(keys)
	if err != nil {
		return false, err
	}
	limit := n.capacity(b.list)
	now := time.Now()
	for _, c := range puts {
		if err := lists.ValidatePrefix(c.Prefix); err != nil {
			n.fleetRefused(c.Key, ReasonInvalid, err)
			continue
		}
		if prev, ok := previous[c.Prefix]; ok && c.ByController && prev.Origin != store.OriginFleet &&
			(prev.Expires.IsZero() || prev.Expires.After(now)) {
			// The controller adds blocks; replacing this node's own
			// entry would let it shorten it, and so lift it.
			n.fleetRefused(c.Key, fleetchange.ReasonRole, fmt.Errorf("the controller key may not replace %s, a local entry", c.Prefix))
			continue
		}
		if err := lists.ValidateReason(c.Reason); err != nil {
			n.fleetRefused(c.Key, ReasonInvalid, err)
			continue
		}
		if _, ok := previous[c.Prefix]; !ok {
			if err := lists.CheckCapacity(b.list, have, lists.CountOf([]netip.Prefix{c.Prefix}), limit); err != nil {
				n.fleetRefused(c.Key, fleetchange.ReasonListFull, err)
				continue
			}
			if c.Prefix.Addr().Is4() {
				have.V4++
			} else {
				have.V6++
			}
		}
		e := store.Entry{List: b.list, Prefix: c.Prefix, Reason: c.Reason, Created: now,
			Origin: store.OriginFleet, Signer: c.KeyID}
		if c.ExpiresAt != 0 {
			e.Expires = time.Unix(0, c.ExpiresAt)
		}
		adds = append(adds, e)
		targets = append(targets, c.Prefix)
	}
	if len(adds) == 0 {
		return false, nil
	}
	ttl := "absolute"
	ev := mapEvent(audit.OpMapAdd, b.list, targets, actor, func(ts targetSet) any {
		return addDetails{targetSet: ts, TTL: ttl}
	})
	if _, err = n.commitList(b.list, adds, nil, nil, fc, ev); err != nil {
		return false, err
	}
	return fc != nil, nil
}

// applyFleetRate sets (or, deleted, returns to the configured value) one
// rate-limit class.
func (n *Node) applyFleetRate(c fleetchange.Change) error {
	class := ""
	if c.Rate != nil {
		class = c.Rate.Class
	}
	if class == "" { // a reconciled or signed delete names the class by key
		if k, err := fleetchange.ParseKey(c.Key); err == nil && k.Rate != nil {
			class = k.Rate.Class
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.settings
	def := n.cfg.Shield.Settings()
	var b *shield.Bucket
	var d shield.Bucket
	switch class {
	case "syn":
		b, d = &st.SYN, def.SYN
	case "udp":
		b, d = &st.UDP, def.UDP
	case "icmp":
		b, d = &st.ICMP, def.ICMP
	default:
		n.fleetRefused(c.Key, ReasonInvalid, fmt.Errorf("unknown rate class %q", class))
		return nil
	}
	if c.Op == fleetchange.OpDelete {
		*b = d
	} else {
		*b = shield.Bucket{PPS: c.Rate.PPS, Burst: c.Rate.Burst}
	}
	if st == n.settings {
		return nil
	}
	if _, err := n.setSettingsLocked(st, fleetActor(signerOf(c))); err != nil {
		if errors.Is(err, ErrInvalid) {
			n.fleetRefused(c.Key, ReasonInvalid, err)
			return nil
		}
		return err
	}
	return nil
}

// applyFleetFunction deploys or removes a function through the registry's
// own path. A version the registry refuses leaves the previous one
// serving.
func (n *Node) applyFleetFunction(ctx context.Context, c fleetchange.Change) error {
	if n.functions == nil {
		n.fleetRefused(c.Key, ReasonInvalid, errors.New("functions are not enabled on this node"))
		return nil
	}
	name := ""
	if c.Func != nil {
		name = c.Func.Name
	}
	if name == "" {
		if k, err := fleetchange.ParseKey(c.Key); err == nil && k.Func != nil {
			name = k.Func.Name
		}
	}
	actor := fleetActor(signerOf(c)).String()
	if c.Op == fleetchange.OpDelete {
		// Only the fleet's own deployment is the fleet's to remove, as
		// with list entries: one this node's operator made stays.
		info, err := n.functions.Get(name)
		if errors.Is(err, functions.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if info.DeployedBy == "" {
			// Deployed before deployers were kept: the fleet's if its
			// last record of the function is a put this node took.
			prev, found, err := n.store.Fleet().Applied([]string{c.Key})
			if err != nil {
				return err
			}
			if !found[0] || prev[0].Deleted {
				return nil
			}
		} else if !strings.HasPrefix(info.DeployedBy, fleetActorPrefix) {
			return nil
		}
		_, err = n.functions.Remove(name, actor)
		if errors.Is(err, functions.ErrNotFound) {
			return nil
		}
		return err
	}
	var spec functions.Spec
	if err := json.Unmarshal(c.Func.Spec, &spec); err != nil {
		n.fleetRefused(c.Key, ReasonInvalid, fmt.Errorf("function spec: %w", err))
		return nil
	}
	_, err := n.functions.Deploy(ctx, name, c.Module, spec, actor)
	if errors.Is(err, functions.ErrInvalid) || errors.Is(err, functions.ErrConflict) {
		n.fleetRefused(c.Key, ReasonInvalid, err)
		return nil
	}
	return err
}

// fleetDescs are the follower's series, read from its Status on scrape.
type fleetDescs struct {
	connected, applied, ignored, reconciles, lag, dropped *prometheus.Desc
}

func newFleetDescs() fleetDescs {
	return fleetDescs{
		connected: prometheus.NewDesc("aegis_fleet_connected", "1 while this edge is connected to the fleet hub.", nil, nil),
		applied:   prometheus.NewDesc("aegis_fleet_applied_total", "Fleet changes this edge applied.", nil, nil),
		ignored: prometheus.NewDesc("aegis_fleet_ignored_total",
			"Fleet records that changed nothing: replays, older changes, unsigned deletes.", nil, nil),
		reconciles: prometheus.NewDesc("aegis_fleet_full_reconciles_total",
			"Full reconciles with the hub (first start, recreated bucket, missed tombstones).", nil, nil),
		lag: prometheus.NewDesc("aegis_fleet_last_applied_timestamp_seconds",
			"When this edge last applied a fleet change.", nil, nil),
		dropped: prometheus.NewDesc("aegis_fleet_proposals_dropped_total",
			"Automatic blocks not proposed to the hub because too many waited to be queued.", nil, nil),
	}
}

// fleetCollector exports the follower's state; nothing while the node
// follows no fleet.
type fleetCollector struct {
	n *Node
	d fleetDescs
}

func (c fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.d.connected, c.d.applied, c.d.ignored, c.d.reconciles, c.d.lag, c.d.dropped} {
		ch <- d
	}
}

func (c fleetCollector) Collect(ch chan<- prometheus.Metric) {
	fl := c.n.follower.Load()
	if fl == nil {
		return
	}
	st := fl.Status()
	ch <- prometheus.MustNewConstMetric(c.d.connected, prometheus.GaugeValue, boolGauge(st.Connected))
	ch <- prometheus.MustNewConstMetric(c.d.applied, prometheus.CounterValue, float64(st.Applied))
	ch <- prometheus.MustNewConstMetric(c.d.ignored, prometheus.CounterValue, float64(st.Ignored))
	ch <- prometheus.MustNewConstMetric(c.d.reconciles, prometheus.CounterValue, float64(st.FullReconciles))
	ch <- prometheus.MustNewConstMetric(c.d.dropped, prometheus.CounterValue, float64(c.n.proposalsDropped.Load()))
	if !st.LastApplied.IsZero() {
		ch <- prometheus.MustNewConstMetric(c.d.lag, prometheus.GaugeValue, float64(st.LastApplied.UnixNano())/1e9)
	}
}
