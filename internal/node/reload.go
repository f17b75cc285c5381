package node

import (
	"errors"
	"fmt"
	"net"
	"reflect"
	"slices"

	"github.com/aegis-edge/aegis/internal/config"
	"github.com/aegis-edge/aegis/internal/shield"
	"github.com/aegis-edge/aegis/internal/store"
)

// restartKeys are the settings a running node cannot change: Reload refuses
// a configuration that changes one of them.
var restartKeys = []struct {
	key string
	get func(config.Config) any
}{
	{"state_dir", func(c config.Config) any { return c.StateDir }},
	{"admin.socket", func(c config.Config) any { return c.Admin.Socket }},
	{"admin.metrics_listen", func(c config.Config) any { return c.Admin.MetricsListen }},
	{"shield.pin_path", func(c config.Config) any { return c.Shield.PinPath }},
	{"shield.sweep_interval", func(c config.Config) any { return c.Shield.SweepInterval }},
	{"shield.detach_on_exit", func(c config.Config) any { return c.Shield.DetachOnExit }},
	{"gateway.listen", func(c config.Config) any { return c.Gateway.Listen }},
	{"functions", func(c config.Config) any { return c.Functions }},
	{"audit", func(c config.Config) any { return c.Audit }},
	// The keys, servers and credentials the follower was started with.
	{"fleet", func(c config.Config) any { return c.Fleet }},
}

// Reload applies a new configuration (SIGHUP): the management addresses
// (also in the shield, which never blocks them automatically), the shield's
// interfaces, XDP mode, list limits, mode, rate limits and
// long_header_chains, and the gateway's timeouts and connection caps (for
// connections accepted from then on).
// Everything is checked before anything changes; a configuration that
// changes a key only a restart can, or that could not be applied whole,
// is refused with the reason and nothing changes. The file's shield
// settings replace ones changed at runtime through the API.
func (n *Node) Reload(cfg config.Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, k := range restartKeys {
		if !reflect.DeepEqual(k.get(n.cfg), k.get(cfg)) {
			return fmt.Errorf("%w: %s changed: restart the node to apply it", ErrRefused, k.key)
		}
	}
	// Limits may not fall below what the lists hold.
	v4, v6, err := n.store.Count(store.Blocklist)
	if err != nil {
		return err
	}
	if cfg.Shield.Limits.IPv4 < v4 {
		return fmt.Errorf("%w: shield.limits.ipv4: %d is below the %d IPv4 entries listed", ErrRefused, cfg.Shield.Limits.IPv4, v4)
	}
	if cfg.Shield.Limits.IPv6 < v6 {
		return fmt.Errorf("%w: shield.limits.ipv6: %d is below the %d IPv6 entries listed", ErrRefused, cfg.Shield.Limits.IPv6, v6)
	}
	// Interfaces to attach must exist; a changed XDP mode re-attaches all.
	var attach, detach []string
	for _, ifname := range cfg.Shield.Interfaces {
		if _, err := net.InterfaceByName(ifname); err != nil {
			return fmt.Errorf("%w: shield.interfaces: %s: %w", ErrRefused, ifname, err)
		}
		if _, ok := n.attached[ifname]; !ok || cfg.Shield.XDPMode != n.cfg.Shield.XDPMode {
			attach = append(attach, ifname)
		}
	}
	for ifname := range n.attached {
		if !slices.Contains(cfg.Shield.Interfaces, ifname) {
			detach = append(detach, ifname)
		}
	}

	applyGateway, err := n.reloadGateway(cfg)
	if err != nil {
		return err
	}

	if err := n.shield.SetManagement(cfg.Admin.ManagementPrefixes()); err != nil {
		return fmt.Errorf("%w: admin.management_addrs: %w", ErrRefused, err)
	}
	if v := n.verifier.Load(); v != nil {
		v.SetManagement(cfg.Admin.ManagementPrefixes())
	}
	settings := cfg.Shield.Settings()
	if settings != n.settings {
		if _, err := n.setSettingsLocked(settings, Actor{}); err != nil {
			return err
		}
	}
	var errs []error
	for _, ifname := range detach {
		if err := n.shield.Detach(ifname); err != nil && !errors.Is(err, shield.ErrNotAttached) {
			errs = append(errs, err)
			continue
		}
		delete(n.attached, ifname)
	}
	for _, ifname := range attach {
		info, err := n.shield.Attach(ifname, shield.XDPMode(cfg.Shield.XDPMode))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		n.attached[ifname] = info
	}
	n.cfg.Admin.ManagementAddrs = cfg.Admin.ManagementAddrs
	n.cfg.Shield.Interfaces = cfg.Shield.Interfaces
	n.cfg.Shield.XDPMode = cfg.Shield.XDPMode
	n.cfg.Shield.Limits = cfg.Shield.Limits
	n.cfg.Shield.Mode = cfg.Shield.Mode
	n.cfg.Shield.RateLimit = cfg.Shield.RateLimit
	n.cfg.Shield.LongHeaderChains = cfg.Shield.LongHeaderChains
	applyGateway()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("reload applied the settings, but: %w", err)
	}
	n.log.Info("configuration reloaded", "interfaces", cfg.Shield.Interfaces, "mode", settings.Mode, "attached", attach, "detached", detach)
	return nil
}
