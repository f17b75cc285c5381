package node

import (
	"net/netip"
	"time"

	"github.com/aegis-edge/aegis/internal/audit"
	"github.com/aegis-edge/aegis/internal/lists"
	"github.com/aegis-edge/aegis/internal/shield"
	"github.com/aegis-edge/aegis/internal/store"
)

// Reconcile makes the kernel maps hold exactly the store's live entries:
// the store is the truth, the maps are its copy. Entries that expired while
// the node was down are removed through commit first; then every list is
// repaired as a dirty list would be.
func (n *Node) Reconcile() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, err := n.expireLocked(time.Now()); err != nil {
		return err
	}
	for _, l := range lists.All() {
		n.dirty[string(l)] = true
	}
	return n.repairLocked()
}

// Sweep removes entries that expired by now, through commit, and repairs
// the lists whose kernel sync failed since the last sweep.
func (n *Node) Sweep(now time.Time) (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	removed, err := n.expireLocked(now)
	if err != nil {
		return removed, err
	}
	return removed, n.repairLocked()
}

// expireLocked commits the removal of the entries expired by now, one
// change per list. The caller holds n.mu.
func (n *Node) expireLocked(now time.Time) (int, error) {
	expired, err := n.store.Expired(now)
	if err != nil || len(expired) == 0 {
		return 0, err
	}
	byList := map[lists.List][]store.Key{}
	for _, e := range expired {
		byList[e.List] = append(byList[e.List], e.Key())
	}
	removed := 0
	for _, l := range lists.All() {
		keys := byList[l]
		if len(keys) == 0 {
			continue
		}
		ps := make([]netip.Prefix, len(keys))
		for i, k := range keys {
			ps[i] = k.Prefix
		}
		ev := mapEvent(audit.OpMapRemove, l, ps, Actor{}, func(ts targetSet) any {
			return removeDetails{targetSet: ts, Expired: true}
		})
		if _, err := n.commitList(l, nil, keys, nil, nil, ev); err != nil {
			return removed, err
		}
		removed += len(keys)
	}
	return removed, nil
}

// repairLocked writes the stored settings again if they are dirty, and
// syncs every dirty list's kernel maps with the store's live entries; a
// list is clean again once its sync succeeds. The caller holds
// n.mu.
func (n *Node) repairLocked() error {
	if n.dirty[settingsCopy] {
		if err := n.syncSettings(n.settings); err != nil {
			n.log.Error("repairing the shield settings failed; the next sweep tries again", "err", err)
		} else {
			delete(n.dirty, settingsCopy)
		}
	}
	for _, l := range lists.All() {
		if !n.dirty[string(l)] {
			continue
		}
		ch, err := n.drift(l, time.Now())
		if err != nil {
			return err
		}
		if len(ch.Put)+len(ch.Delete) > 0 {
			_, err := n.record(audit.Event{Op: audit.OpMapBulk, Target: string(l), Details: reconcileDetails{
				Change: "reconcile", Written: len(ch.Put), RemovedStale: len(ch.Delete)}})
			if err != nil {
				return err
			}
			if err := n.syncList(l, ch); err != nil {
				n.log.Error("repairing the kernel maps failed; the next sweep tries again", "list", l, "err", err)
				continue
			}
			n.log.Info("repaired kernel maps from the store", "list", l, "written", len(ch.Put), "removed_stale", len(ch.Delete))
		}
		delete(n.dirty, string(l))
	}
	return nil
}

// drift is the change that makes a list's kernel maps hold the store's
// entries live at now: the rules missing or different, and the prefixes
// the store does not hold.
func (n *Node) drift(l lists.List, now time.Time) (shield.ListChange, error) {
	var ch shield.ListChange
	entries, err := n.store.List(l)
	if err != nil {
		return ch, err
	}
	rules, err := n.shield.Rules(l)
	if err != nil {
		return ch, err
	}
	inKernel := make(map[netip.Prefix]shield.RuleState, len(rules))
	for _, r := range rules {
		inKernel[r.Prefix] = r
	}
	want := make(map[netip.Prefix]bool, len(entries))
	var put []store.Entry
	for _, e := range entries {
		if !e.Expires.IsZero() && !e.Expires.After(now) {
			continue // the next sweep removes it
		}
		want[e.Prefix] = true
		k, ok := inKernel[e.Prefix]
		if !ok || k.RuleID != e.RuleID || k.Expires.IsZero() != e.Expires.IsZero() ||
			(k.Expires.Sub(e.Expires)).Abs() > time.Second {
			put = append(put, e)
		}
	}
	ch.Put = rulesOf(put)
	for p := range inKernel {
		if !want[p] {
			ch.Delete = append(ch.Delete, p)
		}
	}
	return ch, nil
}
