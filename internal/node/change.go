package node

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/aegis-edge/aegis/internal/audit"
	"github.com/aegis-edge/aegis/internal/lists"
	"github.com/aegis-edge/aegis/internal/shield"
	"github.com/aegis-edge/aegis/internal/store"
)

// listChange is one validated change to a list, whatever asked for it: an
// operator (Add, Remove), expiry (Sweep), start-up (Reconcile) and, later,
// a fleet hub. commit is the one path every one of them takes.
type listChange struct {
	list   lists.List
	put    []store.Entry // upserted in the store, then put in the kernel
	remove []store.Key   // removed from the store, then from the kernel
	// lift are automatic blocks to lift: they live in the kernel alone,
	// so lifting one is no store change, and a failure is the request's.
	lift  []netip.Prefix
	event audit.Event // recorded before the store changes
}

// commit carries out a validated change: audit, one store transaction,
// then the kernel. The store is the truth and the kernel maps its copy: a
// kernel sync that fails does not undo the change (it is durable and
// audited ok) but marks the list dirty, and the sweeper repairs it. There
// is no rollback and no second failure policy. The caller holds n.mu.
func (n *Node) commit(c listChange) ([]store.Entry, error) {
	seq, err := n.record(c.event)
	if err != nil {
		return nil, err
	}
	stored, err := n.store.Apply(c.put, c.remove)
	if err != nil {
		n.recordFailure(seq, c.event, err)
		return nil, fmt.Errorf("persisting the change: %w", err)
	}
	ch := shield.ListChange{Put: rulesOf(stored)}
	for _, k := range c.remove {
		ch.Delete = append(ch.Delete, k.Prefix)
	}
	n.sync(c.list, ch)
	for _, p := range c.lift {
		if err := n.shield.Unblock(p); err != nil {
			n.recordFailure(seq, c.event, err)
			return nil, fmt.Errorf("lifting the automatic block of %s: %w", p, err)
		}
	}
	return stored, nil
}

// sync applies a change to a list's kernel maps; on failure the list is
// marked dirty for the sweeper to repair from the store. The caller holds
// n.mu.
func (n *Node) sync(l lists.List, ch shield.ListChange) {
	if len(ch.Put)+len(ch.Delete) == 0 {
		return
	}
	if err := n.syncList(l, ch); err != nil {
		n.log.Error("updating the kernel maps failed; the store keeps the change and the sweeper repairs the list",
			"list", l, "err", err)
		n.markDirty(l)
	}
}

// markDirty records that a list's kernel maps may differ from the store.
// The caller holds n.mu.
func (n *Node) markDirty(l lists.List) { n.dirty[l] = true }

// dirtyLists are the lists waiting for repair, in lists.All order.
func (n *Node) dirtyLists() []lists.List {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []lists.List
	for _, l := range lists.All() {
		if n.dirty[l] {
			out = append(out, l)
		}
	}
	return out
}

func rulesOf(es []store.Entry) []shield.Rule {
	out := make([]shield.Rule, len(es))
	for i, e := range es {
		out[i] = shield.Rule{Prefix: e.Prefix, RuleID: e.RuleID, Expires: e.Expires}
	}
	return out
}

// Audit details: one type per kind of record, so a record's fields are
// decided where it is built, never patched after.

// maxAuditedTargets is how many targets a map change's record lists; a
// bulk change beyond it is recorded by count and first and last target.
const maxAuditedTargets = 64

// targetSet names the targets of a list change.
type targetSet struct {
	List  lists.List `json:"list"`
	Count int        `json:"count"`
	// Change says what a bulk record (more than one target) does: add,
	// remove.
	Change  string         `json:"change,omitempty"`
	Targets []netip.Prefix `json:"targets,omitempty"`
	First   netip.Prefix   `json:"first,omitzero"`
	Last    netip.Prefix   `json:"last,omitzero"`
}

// addDetails are the details of a map_add (or bulk add) record.
type addDetails struct {
	targetSet
	TTL    string `json:"ttl"`
	Reason string `json:"reason,omitempty"`
}

// removeDetails are the details of a map_remove (or bulk remove) record,
// by an operator or by expiry.
type removeDetails struct {
	targetSet
	AutoBlocksLifted *int `json:"auto_blocks_lifted,omitempty"`
	Expired          bool `json:"expired,omitempty"`
}

// refusedDetails are the details of a limit_refused record.
type refusedDetails struct {
	targetSet
}

// reconcileDetails are the details of the record of a repair: the kernel
// maps made to hold the store's live entries again.
type reconcileDetails struct {
	Change       string `json:"change"` // "reconcile"
	Written      int    `json:"written"`
	RemovedStale int    `json:"removed_stale"`
}

// rateDetails and modeDetails are the details of a settings change.
type rateDetails struct {
	Old shield.Settings `json:"old"`
	New shield.Settings `json:"new"`
}

type modeDetails struct {
	Old shield.Mode `json:"old"`
	New shield.Mode `json:"new"`
}

// startDetails are the details of the node.start record.
type startDetails struct {
	ConfigInterfaces []string `json:"config_interfaces"`
}

// mapEvent is the audit event of a change to a list: one target is op (a
// map_add or map_remove), more are a map_bulk whose change is named.
// details gets the target set filled in.
func mapEvent(op string, l lists.List, targets []netip.Prefix, actor Actor, set func(targetSet) any) audit.Event {
	ts := targetSet{List: l, Count: len(targets)}
	target := string(l)
	switch len(targets) {
	case 1:
		target = targets[0].String()
	default:
		ts.Change = map[string]string{audit.OpMapAdd: "add", audit.OpMapRemove: "remove"}[op]
		op = audit.OpMapBulk
	}
	if len(targets) <= maxAuditedTargets {
		ts.Targets = slices.Clone(targets)
	} else {
		ts.First, ts.Last = targets[0], targets[len(targets)-1]
	}
	return audit.Event{Op: op, Target: target, Details: set(ts), Actor: actor.String()}
}
