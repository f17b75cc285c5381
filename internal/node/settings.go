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

// setSettingsLocked validates settings and commits them: audit, persist,
// then the kernel, the lists' path. The caller holds n.mu.
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
	_, err = n.commit(change{event: ev, copy: settingsCopy,
		persist: func() error {
			if err := n.store.PutSetting(settingsKey, raw); err != nil {
				return err
			}
			n.settings = st
			return nil
		},
		sync: func() error { return n.syncSettings(st) }})
	if err != nil {
		return old, err
	}
	n.log.Info("shield settings changed", "mode", st.Mode, "syn", st.SYN, "udp", st.UDP, "icmp", st.ICMP, "actor", actor.String())
	return st, nil
}
