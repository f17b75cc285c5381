package node

import (
	"encoding/json"
	"fmt"

	"github.com/aegis-edge/aegis/internal/audit"
	"github.com/aegis-edge/aegis/internal/shield"
)

// settingsKey is where runtime changes to the shield settings persist.
const settingsKey = "shield.settings"

// SetSettings changes the shield's runtime settings and persists them so a
// restarted node keeps them.
func (n *Node) SetSettings(change func(*shield.Settings), actor Actor) (shield.Settings, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.settings
	change(&st)
	return n.setSettingsLocked(st, actor)
}

// setSettingsLocked is the settings' one path, as commit is the lists':
// validate, audit, persist, then the kernel. A kernel write that fails
// keeps the change (stored and audited ok) and marks the settings dirty
// for the sweeper to repair. The caller holds n.mu.
func (n *Node) setSettingsLocked(st shield.Settings, actor Actor) (shield.Settings, error) {
	old := n.settings
	if err := st.Validate(); err != nil {
		return old, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	raw, err := json.Marshal(st)
	if err != nil {
		return old, err
	}
	ev := audit.Event{Op: audit.OpRate, Target: "shield", Actor: actor.String(), Details: rateDetails{Old: old, New: st}}
	if st.Mode != old.Mode {
		ev.Op, ev.Details = audit.OpMode, modeDetails{Old: old.Mode, New: st.Mode}
	}
	seq, err := n.record(ev)
	if err != nil {
		return old, err
	}
	if err := n.store.PutSetting(settingsKey, raw); err != nil {
		n.recordFailure(seq, ev, err)
		return old, fmt.Errorf("persisting settings: %w", err)
	}
	n.settings = st
	n.applySettingsLocked()
	n.log.Info("shield settings changed", "mode", st.Mode, "syn", st.SYN, "udp", st.UDP, "icmp", st.ICMP, "actor", actor.String())
	return st, nil
}

// applySettingsLocked writes the stored settings to the kernel, marking
// them dirty when that fails and clean when it works. The caller holds
// n.mu.
func (n *Node) applySettingsLocked() {
	if err := n.syncSettings(n.settings); err != nil {
		n.log.Error("applying shield settings to the kernel failed; the sweeper tries again", "err", err)
		n.settingsDirty = true
		return
	}
	n.settingsDirty = false
}
