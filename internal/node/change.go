package node

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/aegis-edge/aegis/internal/audit"
	"github.com/aegis-edge/aegis/internal/functions"
	"github.com/aegis-edge/aegis/internal/lists"
	"github.com/aegis-edge/aegis/internal/shield"
	"github.com/aegis-edge/aegis/internal/store"
)

// settingsCopy names the shield settings among what the kernel may hold
// out of date (the lists are named by their own names).
const settingsCopy = "settings"

// change is one validated change to the node's state, whatever asked for
// it: an operator (Add, Remove, SetSettings, Reload, a function deploy or
// removal), expiry (Sweep), start-up (Reconcile) and, later, a fleet hub.
// commit is the one path every one of them takes.
type change struct {
	event audit.Event // recorded before the store changes
	// persist is the change's one store transaction.
	persist func() error
	// sync copies the stored change to the kernel.
	sync func() error
	// copy names what sync writes: a list, or settingsCopy.
	copy string
}

// commit carries out a validated change: audit, one store transaction,
// then the kernel. The store is the truth and the kernel its copy: a sync
// that fails does not undo the change (it is durable and audited ok) but
// marks the copy dirty, and the sweeper repairs it. There is no rollback
// and no second failure policy. commit returns the change's audit
// sequence number. The caller holds n.mu.
func (n *Node) commit(c change) (uint64, error) {
	seq, err := n.record(c.event)
	if err != nil {
		return 0, err
	}
	if err := c.persist(); err != nil {
		n.recordFailure(seq, c.event, err)
		return 0, fmt.Errorf("persisting the change: %w", err)
	}
	if err := c.sync(); err != nil {
		n.log.Error("updating the kernel failed; the store keeps the change and the sweeper repairs the kernel's copy",
			"copy", c.copy, "err", err)
		n.dirty[c.copy] = true
	}
	return seq, nil
}

// commitList is commit for a change to a list: put and remove are the
// store's upserts and removals, and the kernel gets the same by exact key.
// lift are automatic blocks to lift: they live in the kernel alone, so
// lifting one is no store change, and a failure is the request's. fleet,
// if set, is the fleet follower's state, saved in the same transaction.
func (n *Node) commitList(l lists.List, put []store.Entry, remove []store.Key, lift []netip.Prefix,
	fleet *store.FleetCommit, ev audit.Event) ([]store.Entry, error) {
	var stored []store.Entry
	seq, err := n.commit(change{event: ev, copy: string(l),
		persist: func() (err error) {
			if fleet != nil {
				stored, err = n.store.ApplyFleet(put, remove, *fleet)
			} else {
				stored, err = n.store.Apply(put, remove)
			}
			return err
		},
		sync: func() error {
			ch := shield.ListChange{Put: rulesOf(stored)}
			for _, k := range remove {
				ch.Delete = append(ch.Delete, k.Prefix)
			}
			if len(ch.Put)+len(ch.Delete) == 0 {
				return nil
			}
			return n.syncList(l, ch)
		}})
	if err != nil {
		return nil, err
	}
	for _, p := range lift {
		if err := n.shield.Unblock(p); err != nil {
			n.recordFailure(seq, ev, err)
			return nil, fmt.Errorf("lifting the automatic block of %s: %w", p, err)
		}
	}
	return stored, nil
}

// functionsCopy names the routing table among what commit syncs. Swapping
// it cannot fail, so it is never dirty.
const functionsCopy = "functions"

// commitFunction is the functions registry's committer: a deploy or
// removal takes the same path as every other change, the route swap
// standing where a list's kernel sync does. Lock order: the registry's
// lock, then n.mu; the node never calls the registry holding n.mu.
func (n *Node) commitFunction(c functions.Change) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, err := n.commit(change{event: c.Event, persist: c.Persist, copy: functionsCopy,
		sync: func() error {
			c.Install()
			return nil
		}})
	return err
}

// dirtyCopies names what the kernel holds out of date, lists first.
func (n *Node) dirtyCopies() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for _, l := range lists.All() {
		if n.dirty[string(l)] {
			out = append(out, string(l))
		}
	}
	if n.dirty[settingsCopy] {
		out = append(out, settingsCopy)
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
