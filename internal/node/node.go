package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/aegis-edge/aegis/internal/audit"
	"github.com/aegis-edge/aegis/internal/config"
	"github.com/aegis-edge/aegis/internal/executor"
	"github.com/aegis-edge/aegis/internal/functions"
	"github.com/aegis-edge/aegis/internal/gateway"
	"github.com/aegis-edge/aegis/internal/kernelprobe"
	"github.com/aegis-edge/aegis/internal/privilege"
	"github.com/aegis-edge/aegis/internal/sandbox"
	"github.com/aegis-edge/aegis/internal/shield"
	"github.com/aegis-edge/aegis/internal/store"
	"github.com/aegis-edge/aegis/internal/wasm"
	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"
)

// Errors that classify a refused operation; the admin API maps them to
// status codes.
var (
	ErrInvalid  = errors.New("invalid request")
	ErrRefused  = errors.New("refused")
	ErrNotFound = errors.New("not found")
)

// settingsKey is where runtime changes to the shield settings persist.
const settingsKey = "shield.settings"

// Actor names who asked for an operation, for the logs.
type Actor struct {
	UID int `json:"uid"`
	PID int `json:"pid"`
}

func (a Actor) String() string {
	if a.PID == 0 {
		return "system"
	}
	return fmt.Sprintf("uid=%d pid=%d", a.UID, a.PID)
}

// Node is a running aegis node.
type Node struct {
	cfg    config.Config
	log    *slog.Logger
	store  *store.Store
	shield *shield.Shield
	audit  *audit.Log
	// autoBlocks turns the data path's automatic-block events into at most
	// one audit record per source per period.
	autoBlocks *audit.Aggregator

	mu       sync.Mutex // serializes changes to lists and settings
	attached map[string]shield.AttachInfo

	eventsMu sync.Mutex
	events   []shield.AutoBlock // most recent automatic blocks, newest last

	executor  *executor.Executor
	functions *functions.Registry
	gateway   *gateway.Server // nil when gateway.listen is empty

	metricsOnce sync.Once
	metrics     *prometheus.Registry
}

const maxRecentEvents = 256

// autoBlockAuditPeriod is how often automatic blocks are written to the
// audit log: at most one record per source per period.
const autoBlockAuditPeriod = time.Minute

// New opens the state store, loads (or adopts) the shield, reconciles the
// kernel maps with the store and attaches to the configured interfaces.
func New(cfg config.Config, log *slog.Logger) (*Node, error) {
	alog, err := audit.Open(cfg.AuditDir(), audit.Options{MaxFileBytes: int64(cfg.Audit.MaxFileBytes), Logger: log.With("audit", true),
		Anchor: cfg.AuditAnchor()})
	if err != nil {
		return nil, fmt.Errorf("opening the audit log: %w", err)
	}
	// Open checks the chain from the head back to the last file; the whole
	// log is checked here too, and a break is reported loudly (the node
	// still starts: `aegis audit verify` names the record).
	if _, err := audit.VerifyDirAnchored(cfg.AuditDir(), cfg.AuditAnchor()); err != nil {
		log.Error("the audit log does not verify", "dir", cfg.AuditDir(), "err", err)
	}
	st, err := store.Open(cfg.StateDir)
	if err != nil {
		alog.Close()
		return nil, err
	}
	n := &Node{cfg: cfg, log: log, store: st, audit: alog, attached: map[string]shield.AttachInfo{}}
	n.autoBlocks = audit.NewAggregator(alog, audit.OpAutoBlock, 0)
	if _, err := n.record(audit.Event{Op: audit.OpNodeStart, Details: map[string]any{"config_interfaces": cfg.Shield.Interfaces}}); err != nil {
		st.Close()
		alog.Close()
		return nil, err
	}
	// Kernels 5.7 and 5.8 answer a bpf_link XDP attach with EINVAL rather
	// than "not supported": ask first, and attach through netlink there. A
	// probe that cannot run (it needs CAP_SYS_ADMIN) leaves the default.
	netlinkAttach := errors.Is(kernelprobe.HaveXDPLink(), ebpf.ErrNotSupported)
	sh, err := shield.Load(shield.Options{PinPath: cfg.Shield.PinPath, NetlinkAttach: netlinkAttach, Audit: func(ev audit.Event) error {
		_, err := n.record(ev)
		return err
	}})
	if err != nil {
		st.Close()
		alog.Close()
		return nil, err
	}
	n.shield = sh
	if err := n.start(); err != nil {
		n.Close()
		return nil, err
	}
	if err := n.startFunctions(); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// startFunctions restores the deployed functions and opens the gateway's
// listener, so a port in use fails the start rather than the first request.
func (n *Node) startFunctions() error {
	fc := n.cfg.Functions
	workers := fc.Workers
	if workers == 0 {
		// Measured: with blocking worker reads, more workers than CPUs add
		// no throughput and lengthen the tail (docs/SANDBOX.md).
		workers = runtime.NumCPU()
	}
	if eff, err := privilege.Effective(); err == nil {
		if missing := privilege.Missing(privilege.WorkerNeeds(), eff); len(missing) > 0 {
			return fmt.Errorf("starting the function workers: %w", &privilege.MissingError{Missing: missing})
		}
	}
	// Functions are compiled (once per version, at deploy and here at
	// start) and run only in sandboxed workers: the node never compiles or
	// instantiates a tenant's module itself.
	x, err := executor.New(context.Background(), executor.Config{
		Pool:             sandbox.Config{Size: workers, Logger: n.log, AllowNoMemoryCap: fc.AllowNoMemoryCap},
		MaxModuleBytes:   int64(fc.MaxModuleSize),
		MaxResponseBytes: int64(fc.Defaults.MaxResponseBody),
		CompileTimeout:   fc.CompileTimeout.Duration,
		CodeDir:          filepath.Join(n.cfg.StateDir, "wasm-code"),
	})
	if err != nil {
		return fmt.Errorf("starting the function workers: %w", err)
	}
	n.executor = x
	n.functions = functions.New(functions.Options{
		Store:         n.store,
		Executor:      x,
		Defaults:      fc.Defaults,
		MaxModuleSize: fc.MaxModuleSize,
		Log:           n.log,
		Host: &wasm.LocalHost{
			KV:      functions.StoreKV{Store: n.store},
			Fetcher: wasm.NewHTTPFetcher(wasm.FetcherOptions{AllowPrivateAddrs: fc.FetchPrivateAddrs}),
		},
		Audit: func(ev audit.Event) error {
			_, err := n.record(ev)
			return err
		},
	})
	if err := n.functions.Restore(context.Background()); err != nil {
		// The others serve; the broken ones are named in the log.
		n.log.Error("some functions could not be restored", "err", err)
	}
	var deployed []string
	for _, fn := range n.functions.List() {
		deployed = append(deployed, fn.Digest)
	}
	if err := x.PruneCode(deployed); err != nil {
		n.log.Warn("removing compiled code of removed functions", "err", err)
	}
	// Earlier versions kept wazero's own cache here, compiled in the node.
	os.RemoveAll(filepath.Join(n.cfg.StateDir, "wasm-cache"))
	return n.openGateway()
}

// Functions is the node's registry of edge functions.
func (n *Node) Functions() *functions.Registry { return n.functions }

// Config is the configuration the node runs with.
func (n *Node) Config() config.Config { return n.cfg }

// GatewayAddr is the address the gateway listens on, or nil.
func (n *Node) GatewayAddr() net.Addr {
	if n.gateway == nil {
		return nil
	}
	return n.gateway.Addr()
}

func (n *Node) start() error {
	if n.shield.Adopted {
		n.log.Info("adopted pinned shield state", "pin_path", n.cfg.Shield.PinPath)
	}
	// Management addresses go in first: they must never be blocked
	// automatically, and blocks left by an earlier run are lifted.
	if err := n.shield.SetManagement(n.cfg.Admin.ManagementPrefixes()); err != nil {
		return fmt.Errorf("applying admin.management_addrs: %w", err)
	}
	settings := settingsFromConfig(n.cfg)
	if raw, ok, err := n.store.Setting(settingsKey); err != nil {
		return err
	} else if ok {
		saved := settings // a setting saved before it existed keeps the config's value
		if err := json.Unmarshal(raw, &saved); err == nil && saved.Validate() == nil {
			if saved != settings {
				n.log.Info("runtime shield settings from the state store override the config", "mode", saved.Mode)
			}
			settings = saved
		}
	}
	if err := n.shield.SetSettings(settings); err != nil {
		return fmt.Errorf("applying shield settings: %w", err)
	}
	if err := n.Reconcile(); err != nil {
		return err
	}
	for _, ifname := range n.cfg.Shield.Interfaces {
		info, err := n.shield.Attach(ifname, shield.XDPMode(n.cfg.Shield.XDPMode))
		if err != nil {
			return err
		}
		n.attached[ifname] = info
		n.log.Info("shield attached", "interface", ifname, "xdp_mode", info.Mode, "program_id", info.ProgramID, "replaced_in_place", info.Adopted)
	}
	return nil
}

func settingsFromConfig(c config.Config) shield.Settings {
	rl := c.Shield.RateLimit
	return shield.Settings{
		Mode:            shield.Mode(c.Shield.Mode),
		SYN:             shield.Bucket{PPS: rl.SYN.PPS, Burst: rl.SYN.Burst},
		UDP:             shield.Bucket{PPS: rl.UDP.PPS, Burst: rl.UDP.Burst},
		ICMP:            shield.Bucket{PPS: rl.ICMP.PPS, Burst: rl.ICMP.Burst},
		IPv4PrefixLen:   rl.IPv4PrefixLen,
		IPv6PrefixLen:   rl.IPv6PrefixLen,
		AutoBlockFactor: rl.AutoBlockFactor,
		AutoBlockTTL:    rl.AutoBlockTTL.Duration,
		LongChains:      shield.LongChains(c.Shield.LongHeaderChains),
	}
}

// Run sweeps expired entries and collects automatic-block events until ctx
// ends. It does not detach anything: the shield outlives the daemon.
func (n *Node) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() {
		err := n.shield.ReadEvents(ctx, func(ev shield.AutoBlock) {
			n.log.Warn("source blocked automatically", "source", ev.Source, "class", ev.Class,
				"until", ev.Until, "packets_in_window", ev.WindowPkts, "monitor", ev.Monitor)
			n.autoBlocks.Add(ev.Source.String(), ev.WindowPkts, time.Now())
			n.eventsMu.Lock()
			n.events = append(n.events, ev)
			if len(n.events) > maxRecentEvents {
				n.events = slices.Delete(n.events, 0, len(n.events)-maxRecentEvents)
			}
			n.eventsMu.Unlock()
		})
		if err != nil {
			n.log.Error("automatic-block events stopped", "err", err)
		}
	})
	wg.Go(func() {
		n.autoBlocks.Run(ctx, autoBlockAuditPeriod, func(err error) {
			n.log.Error("auditing automatic blocks", "err", err)
		})
	})
	n.serveGateway(ctx, &wg)
	n.serveMetrics(ctx, &wg)
	tick := time.NewTicker(n.cfg.Shield.SweepInterval.Duration)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-tick.C:
			if err := n.shield.Maintain(); err != nil {
				n.log.Error("shield upkeep", "err", err)
			}
			if removed, err := n.Sweep(time.Now()); err != nil {
				n.log.Error("sweeping expired entries", "err", err)
			} else if removed > 0 {
				n.log.Info("swept expired entries", "removed", removed)
			}
			if removed, err := n.store.SweepKV(time.Now()); err != nil {
				n.log.Error("sweeping expired function data", "err", err)
			} else if removed > 0 {
				n.log.Info("swept expired function data", "removed", removed)
			}
		}
	}
}

// Close releases the node's resources; the pinned shield stays in force.
func (n *Node) Close() error {
	var errs []error
	if n.gateway != nil {
		n.gateway.Close()
	}
	if n.functions != nil {
		n.functions.Close()
	}
	if n.executor != nil {
		errs = append(errs, n.executor.Close())
	}
	errs = append(errs, n.autoBlocks.Flush(context.Background()))
	_, stopErr := n.record(audit.Event{Op: audit.OpNodeStop})
	errs = append(errs, stopErr, n.shield.Close(), n.store.Close(), n.audit.Close())
	return errors.Join(errs...)
}

// record appends an event to the audit log and returns its sequence
// number. The caller must not go on with the operation when it fails.
func (n *Node) record(ev audit.Event) (uint64, error) {
	rec, err := n.audit.Append(context.Background(), ev)
	if err != nil {
		return 0, fmt.Errorf("audit log: %w (nothing was changed)", err)
	}
	return rec.Seq, nil
}

// recordFailure completes the record of an accepted operation whose apply
// then failed.
func (n *Node) recordFailure(ref uint64, ev audit.Event, err error) {
	ev.Ref, ev.Err, ev.Result = ref, err, audit.ResultFailed
	if _, aerr := n.record(ev); aerr != nil {
		n.log.Error("recording a failed operation", "op", ev.Op, "err", aerr)
	}
}

// AuditLog is the node's audit log.
func (n *Node) AuditLog() *audit.Log { return n.audit }

// Shield exposes the loaded shield (for status and tests).
func (n *Node) Shield() *shield.Shield { return n.shield }

// AddRequest asks for targets to be put on a list.
type AddRequest struct {
	List    store.List
	Targets []netip.Prefix
	TTL     time.Duration
	Reason  string
	Force   bool // override the lockout guard
	Actor   Actor
}

// capacity is the most entries one family of a list may hold.
func (n *Node) capacity(l store.List) (v4, v6 int) {
	if l == store.Blocklist {
		return n.cfg.Shield.Limits.IPv4, n.cfg.Shield.Limits.IPv6
	}
	return shield.AllowCeiling, shield.AllowCeiling
}

func listName(l store.List) string {
	if l == store.Allowlist {
		return "allowlist"
	}
	return "blocklist"
}

// Add puts targets on a list, all or nothing: a bad target, a full list or a
// lockout refuses the whole request and changes nothing. The change is
// durable in the store before it reaches the kernel and before Add returns.
func (n *Node) Add(req AddRequest) ([]store.Entry, error) {
	if req.List != store.Blocklist && req.List != store.Allowlist {
		return nil, fmt.Errorf("%w: unknown list %q", ErrInvalid, req.List)
	}
	if len(req.Targets) == 0 {
		return nil, fmt.Errorf("%w: no targets given", ErrInvalid)
	}
	if err := ValidateTTL(req.TTL); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()

	if req.List == store.Blocklist && !req.Force {
		if err := n.lockoutGuard(req.Targets); err != nil {
			return nil, n.refuse(req.List, req.Targets, req.Actor, err)
		}
	}
	v4, v6, err := n.store.Count(req.List)
	if err != nil {
		return nil, err
	}
	var new4, new6 int
	keys := make([]store.Key, len(req.Targets))
	for i, p := range req.Targets {
		keys[i] = store.Key{List: req.List, Prefix: p}
	}
	previous, err := n.store.GetMany(keys)
	if err != nil {
		return nil, err
	}
	for _, p := range req.Targets {
		if _, ok := previous[p]; ok {
			continue
		}
		if p.Addr().Is4() {
			new4++
		} else {
			new6++
		}
	}
	max4, max6 := n.capacity(req.List)
	if v4+new4 > max4 {
		return nil, n.refuse(req.List, req.Targets, req.Actor, fmt.Errorf("%w: IPv4 %s full (%d entries)", ErrRefused, listName(req.List), max4))
	}
	if v6+new6 > max6 {
		return nil, n.refuse(req.List, req.Targets, req.Actor, fmt.Errorf("%w: IPv6 %s full (%d entries)", ErrRefused, listName(req.List), max6))
	}
	ev := mapEvent(audit.OpMapAdd, req.List, req.Targets, req.Actor)
	ev.Details.(map[string]any)["ttl"] = req.TTL.String()
	if req.Reason != "" {
		ev.Details.(map[string]any)["reason"] = req.Reason
	}
	seq, err := n.record(ev)
	if err != nil {
		return nil, err
	}

	now := time.Now()
	adds := make([]store.Entry, len(req.Targets))
	for i, p := range req.Targets {
		adds[i] = store.Entry{List: req.List, Prefix: p, Reason: req.Reason, Created: now}
		if req.TTL > 0 {
			adds[i].Expires = now.Add(req.TTL)
		}
	}
	stored, err := n.store.Apply(adds, nil)
	if err != nil {
		n.recordFailure(seq, ev, err)
		if errors.Is(err, store.ErrInvalidEntry) {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		return nil, fmt.Errorf("persisting entries: %w", err)
	}
	if err := n.shield.PutRules(shield.List(req.List), rulesOf(stored)); err != nil {
		n.rollbackAdd(req.List, stored, previous)
		n.recordFailure(seq, ev, err)
		return nil, fmt.Errorf("updating kernel maps: %w", err)
	}
	n.log.Info("list entries added", "list", req.List, "count", len(stored), "ttl", req.TTL, "reason", req.Reason, "actor", req.Actor.String())
	return stored, nil
}

// rollbackAdd undoes a stored add whose kernel update failed, restoring
// entries that existed before.
func (n *Node) rollbackAdd(l store.List, stored []store.Entry, previous map[netip.Prefix]store.Entry) {
	var removes []store.Key
	var restore []store.Entry
	var drop []netip.Prefix
	for _, e := range stored {
		if old, ok := previous[e.Prefix]; ok {
			restore = append(restore, old)
		} else {
			removes = append(removes, e.Key())
			drop = append(drop, e.Prefix)
		}
	}
	if _, err := n.store.Apply(restore, removes); err != nil {
		n.log.Error("rolling back store after kernel failure; reconciled on next start", "err", err)
	}
	n.shield.DeleteRules(shield.List(l), drop)
	n.shield.PutRules(shield.List(l), rulesOf(restore))
}

// maxAuditedTargets is how many targets a map change's record lists; a
// bulk change beyond it is recorded by count and first and last target.
const maxAuditedTargets = 64

// mapEvent is the audit event of a change to a list: one target is a
// map_add or map_remove, more are a map_bulk.
func mapEvent(op string, l store.List, targets []netip.Prefix, actor Actor) audit.Event {
	details := map[string]any{"list": string(l), "count": len(targets)}
	if len(targets) > 1 {
		details["change"] = map[string]string{audit.OpMapAdd: "add", audit.OpMapRemove: "remove"}[op]
		op = audit.OpMapBulk
	}
	if len(targets) <= maxAuditedTargets {
		details["targets"] = targets
	} else {
		details["first"], details["last"] = targets[0], targets[len(targets)-1]
	}
	target := string(l)
	if len(targets) == 1 {
		target = targets[0].String()
	}
	return audit.Event{Op: op, Target: target, Details: details, Actor: actor.String()}
}

// refuse records a change a limit or the lockout guard refused and returns
// the refusal (joined with the audit error, if recording failed).
func (n *Node) refuse(l store.List, targets []netip.Prefix, actor Actor, refusal error) error {
	ev := mapEvent(audit.OpLimitRefused, l, targets, actor)
	ev.Op, ev.Result, ev.Err = audit.OpLimitRefused, audit.ResultRefused, refusal
	ev.Details.(map[string]any)["change"] = "add"
	if _, err := n.record(ev); err != nil {
		return errors.Join(refusal, err)
	}
	return refusal
}

func rulesOf(es []store.Entry) []shield.Rule {
	out := make([]shield.Rule, len(es))
	for i, e := range es {
		out[i] = shield.Rule{Prefix: e.Prefix, RuleID: e.RuleID, Expires: e.Expires}
	}
	return out
}

// lockoutGuard refuses blocks that would cover an allowlisted or a
// management address.
func (n *Node) lockoutGuard(targets []netip.Prefix) error {
	allowed, err := n.store.List(store.Allowlist)
	if err != nil {
		return err
	}
	mgmt := n.cfg.Admin.ManagementPrefixes()
	for _, p := range targets {
		for _, m := range mgmt {
			if p.Overlaps(m) {
				return fmt.Errorf("%w: blocking %s would cover management address %s (use --force to override)", ErrRefused, p, m)
			}
		}
		for _, a := range allowed {
			if p.Overlaps(a.Prefix) {
				return fmt.Errorf("%w: blocking %s would cover allowlisted %s (use --force to override)", ErrRefused, p, a.Prefix)
			}
		}
	}
	return nil
}

// Remove takes targets off a list, all or nothing. On the blocklist, a
// target that is not listed but blocked automatically has its block lifted.
func (n *Node) Remove(l store.List, targets []netip.Prefix, actor Actor) (int, error) {
	if l != store.Blocklist && l != store.Allowlist {
		return 0, fmt.Errorf("%w: unknown list %q", ErrInvalid, l)
	}
	if len(targets) == 0 {
		return 0, fmt.Errorf("%w: no targets given", ErrInvalid)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	var auto map[netip.Prefix]bool
	if l == store.Blocklist {
		blocks, err := n.shield.AutoBlocks()
		if err != nil {
			return 0, err
		}
		auto = map[netip.Prefix]bool{}
		for _, b := range blocks {
			auto[b.Source] = true
		}
	}
	var keys []store.Key
	var prefixes, lift []netip.Prefix
	for _, p := range targets {
		_, ok, err := n.store.Get(store.Key{List: l, Prefix: p})
		if err != nil {
			return 0, err
		}
		switch {
		case ok:
			keys = append(keys, store.Key{List: l, Prefix: p})
			prefixes = append(prefixes, p)
		case auto[p]:
			lift = append(lift, p)
		default:
			return 0, fmt.Errorf("%w: %s is not on the %s", ErrNotFound, p, listName(l))
		}
	}
	ev := mapEvent(audit.OpMapRemove, l, targets, actor)
	ev.Details.(map[string]any)["auto_blocks_lifted"] = len(lift)
	seq, err := n.record(ev)
	if err != nil {
		return 0, err
	}
	if len(keys) > 0 {
		if _, err := n.store.Apply(nil, keys); err != nil {
			n.recordFailure(seq, ev, err)
			return 0, fmt.Errorf("persisting removal: %w", err)
		}
		if err := n.shield.DeleteRules(shield.List(l), prefixes); err != nil {
			n.recordFailure(seq, ev, err)
			return 0, fmt.Errorf("updating kernel maps (the store is updated; reconciled on next start): %w", err)
		}
	}
	for _, p := range lift {
		if err := n.shield.Unblock(p); err != nil {
			n.recordFailure(seq, ev, err)
			return 0, err
		}
	}
	n.log.Info("list entries removed", "list", l, "count", len(keys), "auto_blocks_lifted", len(lift), "actor", actor.String())
	return len(keys) + len(lift), nil
}

// ListedEntry is a list entry with its kernel hit counter.
type ListedEntry struct {
	store.Entry
	Hits uint64 `json:"hits"`
}

// List returns a list's entries with hit counters, and for the blocklist the
// sources blocked automatically.
func (n *Node) List(l store.List) ([]ListedEntry, []shield.AutoBlock, error) {
	if l != store.Blocklist && l != store.Allowlist {
		return nil, nil, fmt.Errorf("%w: unknown list %q", ErrInvalid, l)
	}
	entries, err := n.store.List(l)
	if err != nil {
		return nil, nil, err
	}
	rules, err := n.shield.Rules(shield.List(l))
	if err != nil {
		return nil, nil, err
	}
	hits := make(map[netip.Prefix]uint64, len(rules))
	for _, r := range rules {
		hits[r.Prefix] = r.Hits
	}
	out := make([]ListedEntry, len(entries))
	for i, e := range entries {
		out[i] = ListedEntry{Entry: e, Hits: hits[e.Prefix]}
	}
	var auto []shield.AutoBlock
	if l == store.Blocklist {
		if auto, err = n.shield.AutoBlocks(); err != nil {
			return nil, nil, err
		}
	}
	return out, auto, nil
}

// Reconcile makes the kernel maps hold exactly the store's live entries: the
// store is the truth, the maps are its projection.
func (n *Node) Reconcile() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := time.Now()
	for _, l := range store.Lists {
		entries, err := n.store.List(l)
		if err != nil {
			return err
		}
		rules, err := n.shield.Rules(shield.List(l))
		if err != nil {
			return err
		}
		inKernel := make(map[netip.Prefix]shield.RuleState, len(rules))
		for _, r := range rules {
			inKernel[r.Prefix] = r
		}
		var put []store.Entry
		var expired []store.Key
		want := make(map[netip.Prefix]bool, len(entries))
		for _, e := range entries {
			if !e.Expires.IsZero() && !e.Expires.After(now) {
				expired = append(expired, e.Key())
				continue
			}
			want[e.Prefix] = true
			k, ok := inKernel[e.Prefix]
			if !ok || k.RuleID != e.RuleID || k.Expires.IsZero() != e.Expires.IsZero() ||
				absDuration(k.Expires.Sub(e.Expires)) > time.Second {
				put = append(put, e)
			}
		}
		var stale []netip.Prefix
		for p := range inKernel {
			if !want[p] {
				stale = append(stale, p)
			}
		}
		if len(put)+len(stale)+len(expired) > 0 {
			_, err := n.record(audit.Event{Op: audit.OpMapBulk, Target: string(l), Details: map[string]any{
				"change": "reconcile", "written": len(put), "removed_stale": len(stale), "expired": len(expired)}})
			if err != nil {
				return err
			}
		}
		if len(expired) > 0 {
			if _, err := n.store.Apply(nil, expired); err != nil {
				return err
			}
		}
		if err := n.shield.DeleteRules(shield.List(l), stale); err != nil {
			return err
		}
		if err := n.shield.PutRules(shield.List(l), rulesOf(put)); err != nil {
			return err
		}
		if len(put)+len(stale)+len(expired) > 0 {
			n.log.Info("reconciled kernel maps with the store", "list", l, "written", len(put), "removed_stale", len(stale), "expired", len(expired))
		}
	}
	return nil
}

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// Sweep removes entries that expired by now from the store and the maps.
func (n *Node) Sweep(now time.Time) (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	expired, err := n.store.Expired(now)
	if err != nil || len(expired) == 0 {
		return 0, err
	}
	keys := make([]store.Key, len(expired))
	byList := map[store.List][]netip.Prefix{}
	for i, e := range expired {
		keys[i] = e.Key()
		byList[e.List] = append(byList[e.List], e.Prefix)
	}
	for _, l := range store.Lists {
		if ps := byList[l]; len(ps) > 0 {
			ev := mapEvent(audit.OpMapRemove, l, ps, Actor{})
			ev.Details.(map[string]any)["expired"] = true
			if _, err := n.record(ev); err != nil {
				return 0, err
			}
		}
	}
	if _, err := n.store.Apply(nil, keys); err != nil {
		return 0, err
	}
	for l, ps := range byList {
		if err := n.shield.DeleteRules(shield.List(l), ps); err != nil {
			return 0, err
		}
	}
	return len(expired), nil
}

// SetSettings changes the shield's runtime settings and persists them so a
// restarted node keeps them.
func (n *Node) SetSettings(change func(*shield.Settings), actor Actor) (shield.Settings, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.shield.Settings()
	change(&st)
	return n.setSettingsLocked(st, actor)
}

// setSettingsLocked validates, audits, persists and applies st. The caller
// holds n.mu.
func (n *Node) setSettingsLocked(st shield.Settings, actor Actor) (shield.Settings, error) {
	if err := st.Validate(); err != nil {
		return st, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	raw, err := json.Marshal(st)
	if err != nil {
		return st, err
	}
	old := n.shield.Settings()
	ev := audit.Event{Op: audit.OpRate, Target: "shield", Actor: actor.String(), Details: map[string]any{"old": old, "new": st}}
	if st.Mode != old.Mode {
		ev.Op, ev.Details = audit.OpMode, map[string]any{"old": old.Mode, "new": st.Mode}
	}
	seq, err := n.record(ev)
	if err != nil {
		return old, err
	}
	if err := n.store.PutSetting(settingsKey, raw); err != nil {
		n.recordFailure(seq, ev, err)
		return old, fmt.Errorf("persisting settings: %w", err)
	}
	if err := n.shield.SetSettings(st); err != nil {
		n.recordFailure(seq, ev, err)
		return old, err
	}
	n.log.Info("shield settings changed", "mode", st.Mode, "syn", st.SYN, "udp", st.UDP, "icmp", st.ICMP, "actor", actor.String())
	return st, nil
}

// Detach removes the shield from an interface.
func (n *Node) Detach(iface string, actor Actor) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.shield.DetachBy(iface, actor.String()); err != nil {
		if errors.Is(err, shield.ErrNotAttached) {
			return fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		return err
	}
	delete(n.attached, iface)
	n.log.Info("shield detached", "interface", iface, "actor", actor.String())
	return nil
}

// DetachAll removes the shield from every interface it is attached to.
func (n *Node) DetachAll(actor Actor) error {
	infos, err := n.shield.Attached()
	if err != nil {
		return err
	}
	var errs []error
	for _, ai := range infos {
		if err := n.Detach(ai.Interface, actor); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// MapFill is one list family's use against its limit.
type MapFill struct {
	List    store.List `json:"list"`
	Family  string     `json:"family"`
	Entries int        `json:"entries"`
	Limit   int        `json:"limit"`
}

// Status is what `aegis shield status` shows.
type Status struct {
	Interfaces []shield.AttachInfo `json:"interfaces"`
	Settings   shield.Settings     `json:"settings"`
	Clock      shield.ClockInfo    `json:"clock"`
	Maps       []MapFill           `json:"maps"`
	AutoBlocks int                 `json:"auto_blocks"`
	Counters   map[string]Counter  `json:"counters"`
	Recent     []shield.AutoBlock  `json:"recent_auto_blocks,omitempty"`
}

// Counter is a reason's traffic: what was done and, in monitor mode, what
// would have been dropped.
type Counter struct {
	Packets          uint64 `json:"packets"`
	Bytes            uint64 `json:"bytes"`
	MonitoredPackets uint64 `json:"monitored_packets,omitempty"`
	MonitoredBytes   uint64 `json:"monitored_bytes,omitempty"`
}

// Status reports interfaces, settings, map fill and counters.
func (n *Node) Status() (Status, error) {
	st := Status{Settings: n.shield.Settings(), Clock: n.shield.Clock(), Counters: map[string]Counter{}}
	ifs, err := n.shield.Attached()
	if err != nil {
		return st, err
	}
	st.Interfaces = ifs
	for _, l := range store.Lists {
		v4, v6, err := n.store.Count(l)
		if err != nil {
			return st, err
		}
		max4, max6 := n.capacity(l)
		st.Maps = append(st.Maps, MapFill{l, "ipv4", v4, max4}, MapFill{l, "ipv6", v6, max6})
	}
	auto, err := n.shield.AutoBlocks()
	if err != nil {
		return st, err
	}
	st.AutoBlocks = len(auto)
	c, err := n.shield.Counters()
	if err != nil {
		return st, err
	}
	for _, r := range shield.Reasons() {
		v, m := c.Verdicts[r], c.Monitored[r]
		st.Counters[r.String()] = Counter{v.Packets, v.Bytes, m.Packets, m.Bytes}
	}
	n.eventsMu.Lock()
	st.Recent = slices.Clone(n.events)
	n.eventsMu.Unlock()
	return st, nil
}
