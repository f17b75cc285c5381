package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aegis-edge/aegis/internal/audit"
	"github.com/aegis-edge/aegis/internal/config"
	"github.com/aegis-edge/aegis/internal/executor"
	fleetchange "github.com/aegis-edge/aegis/internal/fleet/change"
	"github.com/aegis-edge/aegis/internal/fleet/follow"
	"github.com/aegis-edge/aegis/internal/functions"
	"github.com/aegis-edge/aegis/internal/gateway"
	"github.com/aegis-edge/aegis/internal/kernelprobe"
	"github.com/aegis-edge/aegis/internal/lists"
	"github.com/aegis-edge/aegis/internal/privilege"
	"github.com/aegis-edge/aegis/internal/sandbox"
	"github.com/aegis-edge/aegis/internal/shield"
	"github.com/aegis-edge/aegis/internal/store"
	"github.com/aegis-edge/aegis/internal/wasm"
	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"
)

// Errors that classify a refused operation; the admin API maps them to
// status codes. They are package lists' own, so a refusal wraps the same
// value at every layer.
var (
	ErrInvalid  = lists.ErrInvalid
	ErrRefused  = lists.ErrRefused
	ErrNotFound = lists.ErrNotFound
)

// Actor names who asked for an operation, for the logs: a local process,
// or the key that signed a fleet change.
type Actor struct {
	UID   int    `json:"uid"`
	PID   int    `json:"pid"`
	Fleet string `json:"fleet,omitempty"` // signer's key id
}

func (a Actor) String() string {
	if a.Fleet != "" {
		return fleetActorPrefix + a.Fleet
	}
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
	// settings are the shield settings as stored: the kernel's copy may
	// lag when a write failed (settingsDirty).
	settings shield.Settings
	// dirty names what the kernel may hold out of date with the store
	// since a sync failed (a list, or settingsCopy); Sweep repairs it.
	// Guarded by mu.
	dirty map[string]bool
	// syncList and syncSettings write to the kernel (the shield's Sync and
	// SetSettings); tests replace them to inject failures.
	syncList     func(lists.List, shield.ListChange) error
	syncSettings func(shield.Settings) error

	eventsMu sync.Mutex
	events   []shield.AutoBlock // most recent automatic blocks, newest last

	executor  *executor.Executor
	functions *functions.Registry
	gateway   *gateway.Server // nil when gateway.listen is empty

	metricsOnce sync.Once
	metrics     *prometheus.Registry

	// edgeName is this node's name in the fleet; follower is set once the
	// node follows a hub (fleet.servers).
	edgeName      string
	follower      atomic.Pointer[follow.Follower]
	verifier      atomic.Pointer[fleetchange.Verifier] // the follower's, for Reload
	fleetRejected *prometheus.CounterVec
	fleetAudit    *audit.Aggregator
	// proposals carries automatic blocks to the fleet reporter
	// (fleet.propose_auto_blocks); nil when the node proposes none.
	proposals        chan shield.AutoBlock
	proposalsDropped atomic.Uint64
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
	n := &Node{cfg: cfg, log: log, store: st, audit: alog, attached: map[string]shield.AttachInfo{}, dirty: map[string]bool{}}
	n.autoBlocks = audit.NewAggregator(alog, audit.OpAutoBlock, 0)
	n.edgeName = EdgeName(cfg)
	if cfg.Fleet.ProposeAutoBlocks {
		n.proposals = make(chan shield.AutoBlock, maxPendingProposals)
	}
	n.fleetAudit = audit.NewAggregator(alog, audit.OpFleetRefused, 0).RecordAs(audit.ResultRefused)
	n.fleetRejected = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aegis_fleet_rejected_total",
		Help: "Fleet changes this edge refused, by reason."}, []string{"reason"})
	for _, r := range fleetReasons {
		n.fleetRejected.WithLabelValues(r)
	}
	if _, err := n.record(audit.Event{Op: audit.OpNodeStart, Details: startDetails{ConfigInterfaces: cfg.Shield.Interfaces}}); err != nil {
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
	n.syncList, n.syncSettings = sh.Sync, sh.SetSettings
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
		Pool: sandbox.Config{Size: workers, Logger: n.log, AllowNoMemoryCap: fc.AllowNoMemoryCap,
			Pipeline: !fc.NoPipeline},
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
		Commit: n.commitFunction,
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
	settings := n.cfg.Shield.Settings()
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
	n.settings = settings
	if err := n.syncSettings(settings); err != nil {
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

// Run sweeps expired entries and collects automatic-block events until ctx
// ends. It does not detach anything: the shield outlives the daemon.
func (n *Node) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() {
		err := n.shield.ReadEvents(ctx, func(ev shield.AutoBlock) {
			n.log.Warn("source blocked automatically", "source", ev.Source, "class", ev.Class,
				"until", ev.Until, "packets_in_window", ev.WindowPkts, "monitor", ev.Monitor)
			n.autoBlocks.Add(ev.Source.String(), ev.WindowPkts, time.Now())
			n.proposeAutoBlock(ev)
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
	waitFleet, err := n.startFleet(ctx)
	if err != nil {
		return fmt.Errorf("following the fleet: %w", err)
	}
	defer waitFleet()
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
	errs = append(errs, n.autoBlocks.Flush(context.Background()), n.fleetAudit.Flush(context.Background()))
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
