package node

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/aegis-edge/aegis/internal/audit"
	"github.com/aegis-edge/aegis/internal/lists"
	"github.com/aegis-edge/aegis/internal/shield"
	"github.com/aegis-edge/aegis/internal/store"
)

// AddRequest asks for targets to be put on a list.
type AddRequest struct {
	List    lists.List
	Targets []netip.Prefix
	TTL     time.Duration
	Reason  string
	Force   bool // override the lockout guard
	Actor   Actor
}

// capacity is the most entries each family of a list may hold.
func (n *Node) capacity(l lists.List) lists.Count {
	if l == lists.Blocklist {
		return lists.Count{V4: n.cfg.Shield.Limits.IPv4, V6: n.cfg.Shield.Limits.IPv6}
	}
	return lists.Count{V4: lists.AllowCeiling, V6: lists.AllowCeiling}
}

// validateTargets checks what every list change asks: a list and targets
// as the lists hold them.
func validateTargets(l lists.List, targets []netip.Prefix) error {
	if err := lists.Check(l); err != nil {
		return err
	}
	if len(targets) == 0 {
		return fmt.Errorf("%w: no targets given", ErrInvalid)
	}
	for _, p := range targets {
		if err := lists.ValidatePrefix(p); err != nil {
			return err
		}
	}
	return nil
}

// Add puts targets on a list, all or nothing: a bad target or entry, a full
// list or a lockout refuses the whole request and changes nothing. The
// change is durable in the store before Add returns; see commit for the
// kernel.
func (n *Node) Add(req AddRequest) ([]store.Entry, error) {
	if err := validateTargets(req.List, req.Targets); err != nil {
		return nil, err
	}
	if err := lists.ValidateEntry(req.TTL, req.Reason); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()

	if req.List == lists.Blocklist && !req.Force {
		allowed, err := n.store.List(lists.Allowlist)
		if err != nil {
			return nil, err
		}
		ps := make([]netip.Prefix, len(allowed))
		for i, e := range allowed {
			ps[i] = e.Prefix
		}
		if err := lists.LockoutGuard(req.Targets, n.cfg.Admin.ManagementPrefixes(), ps); err != nil {
			return nil, n.refuse("add", req.List, req.Targets, req.Actor, err)
		}
	}
	var have lists.Count
	var err error
	if have.V4, have.V6, err = n.store.Count(req.List); err != nil {
		return nil, err
	}
	keys := make([]store.Key, len(req.Targets))
	for i, p := range req.Targets {
		keys[i] = store.Key{List: req.List, Prefix: p}
	}
	previous, err := n.store.GetMany(keys)
	if err != nil {
		return nil, err
	}
	if err := n.fleetOwns(req.List, previous); err != nil {
		return nil, n.refuse("add", req.List, req.Targets, req.Actor, err)
	}
	var fresh []netip.Prefix // re-adding a listed entry needs no room
	for _, p := range req.Targets {
		if _, ok := previous[p]; !ok {
			fresh = append(fresh, p)
		}
	}
	if err := lists.CheckCapacity(req.List, have, lists.CountOf(fresh), n.capacity(req.List)); err != nil {
		return nil, n.refuse("add", req.List, req.Targets, req.Actor, err)
	}

	now := time.Now()
	adds := make([]store.Entry, len(req.Targets))
	for i, p := range req.Targets {
		adds[i] = store.Entry{List: req.List, Prefix: p, Reason: req.Reason, Created: now}
		if req.TTL > 0 {
			adds[i].Expires = now.Add(req.TTL)
		}
	}
	stored, err := n.commitList(req.List, adds, nil, nil, nil,
		mapEvent(audit.OpMapAdd, req.List, req.Targets, req.Actor, func(ts targetSet) any {
			return addDetails{targetSet: ts, TTL: req.TTL.String(), Reason: req.Reason}
		}))
	if err != nil {
		return nil, err
	}
	n.log.Info("list entries added", "list", req.List, "count", len(stored), "ttl", req.TTL, "reason", req.Reason, "actor", req.Actor.String())
	return stored, nil
}

// refuse records a change (op "add" or "remove") that a limit, the
// lockout guard or the fleet's ownership refused, and returns the refusal
// (joined with the audit error, if recording failed).
func (n *Node) refuse(op string, l lists.List, targets []netip.Prefix, actor Actor, refusal error) error {
	ev := mapEvent(audit.OpMapAdd, l, targets, actor, func(ts targetSet) any {
		ts.Change = op
		return refusedDetails{ts}
	})
	ev.Op, ev.Result, ev.Err = audit.OpLimitRefused, audit.ResultRefused, refusal
	if _, err := n.record(ev); err != nil {
		return errors.Join(refusal, err)
	}
	return refusal
}

// Remove takes targets off a list, all or nothing. On the blocklist, a
// target that is not listed but blocked automatically has its block lifted.
func (n *Node) Remove(l lists.List, targets []netip.Prefix, actor Actor) (int, error) {
	if err := validateTargets(l, targets); err != nil {
		return 0, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	auto := map[netip.Prefix]bool{}
	if l == lists.Blocklist {
		blocks, err := n.shield.AutoBlocks()
		if err != nil {
			return 0, err
		}
		for _, b := range blocks {
			auto[b.Source] = true
		}
	}
	keys := make([]store.Key, len(targets))
	for i, p := range targets {
		keys[i] = store.Key{List: l, Prefix: p}
	}
	listed, err := n.store.GetMany(keys)
	if err != nil {
		return 0, err
	}
	if err := n.fleetOwns(l, listed); err != nil {
		return 0, n.refuse("remove", l, targets, actor, err)
	}
	var remove []store.Key
	var lift []netip.Prefix
	for _, k := range keys {
		_, ok := listed[k.Prefix]
		switch {
		case ok:
			remove = append(remove, k)
		case auto[k.Prefix]:
			lift = append(lift, k.Prefix)
		default:
			return 0, fmt.Errorf("%w: %s is not on the %s", ErrNotFound, k.Prefix, l.Noun())
		}
	}
	lifted := len(lift)
	ev := mapEvent(audit.OpMapRemove, l, targets, actor, func(ts targetSet) any {
		return removeDetails{targetSet: ts, AutoBlocksLifted: &lifted}
	})
	if _, err := n.commitList(l, nil, remove, lift, nil, ev); err != nil {
		return 0, err
	}
	n.log.Info("list entries removed", "list", l, "count", len(remove), "auto_blocks_lifted", len(lift), "actor", actor.String())
	return len(remove) + len(lift), nil
}

// fleetOwns refuses a local change to entries the fleet put on this node
// while it follows the fleet: the hub would put them back, so the change
// goes to the hub (aegis fleet block|allow). The local allowlist still
// wins over a fleet block in the data path, the escape hatch in an
// incident. A node that no longer follows a fleet may change them.
func (n *Node) fleetOwns(l lists.List, entries map[netip.Prefix]store.Entry) error {
	if n.follower.Load() == nil {
		return nil
	}
	for p, e := range entries {
		if e.Origin == store.OriginFleet {
			return fmt.Errorf("%w: %s is on the %s by the fleet (signed by key %s); change it on the hub with aegis fleet %s",
				ErrRefused, p, l.Noun(), e.Signer, l)
		}
	}
	return nil
}

// ListedEntry is a list entry with its kernel hit counter.
type ListedEntry struct {
	store.Entry
	Hits uint64 `json:"hits"`
}

// List returns a list's entries with hit counters, and for the blocklist the
// sources blocked automatically.
func (n *Node) List(l lists.List) ([]ListedEntry, []shield.AutoBlock, error) {
	if err := lists.Check(l); err != nil {
		return nil, nil, err
	}
	entries, err := n.store.List(l)
	if err != nil {
		return nil, nil, err
	}
	rules, err := n.shield.Rules(l)
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
	if l == lists.Blocklist {
		if auto, err = n.shield.AutoBlocks(); err != nil {
			return nil, nil, err
		}
	}
	return out, auto, nil
}
