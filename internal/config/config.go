package config

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"strings"
	"time"

	"github.com/aegis-edge/aegis/internal/lists"
	"github.com/aegis-edge/aegis/internal/shield"
	"go.yaml.in/yaml/v3"
)

// Limits on blocklist capacity and other bounds.
const (
	// MaxBlocklistV4Entries is the default capacity of the IPv4 blocklist.
	MaxBlocklistV4Entries = 100_000
	// MaxBlocklistV6Entries is the default capacity of the IPv6 blocklist.
	MaxBlocklistV6Entries = 50_000
	// MaxPPS is the largest accepted rate limit and burst, in packets.
	MaxPPS = shield.MaxRate
	// MaxFileSize is the largest accepted configuration file, in bytes.
	MaxFileSize = 1 << 20
)

// DefaultPath is the configuration file used when --config is not given.
const DefaultPath = "/etc/aegis/aegis.yaml"

// Shield modes and XDP attach modes: the shield's own values, spelled as
// the file spells them.
const (
	ModeEnforce = string(shield.ModeEnforce)
	ModeMonitor = string(shield.ModeMonitor)

	XDPModeAuto    = string(shield.XDPAuto)
	XDPModeNative  = string(shield.XDPNative)
	XDPModeGeneric = string(shield.XDPGeneric)

	// LongChainsDrop and LongChainsCharge are the values of
	// shield.long_header_chains.
	LongChainsDrop   = string(shield.LongChainsDrop)
	LongChainsCharge = string(shield.LongChainsCharge)
)

// MaxManagementAddrs bounds admin.management_addrs: the shield holds at most
// this many management prefixes of each family.
const MaxManagementAddrs = shield.ManagementEntries

// bpffsRoot is the directory pin_path must live under.
const bpffsRoot = "/sys/fs/bpf/"

// maxSocketPath is the longest unix socket path Linux accepts (sun_path
// is 108 bytes including the terminating NUL).
const maxSocketPath = 107

// Config is the complete configuration of an aegis node.
type Config struct {
	// StateDir holds the state store; absolute.
	StateDir  string    `yaml:"state_dir"`
	Admin     Admin     `yaml:"admin"`
	Shield    Shield    `yaml:"shield"`
	Gateway   Gateway   `yaml:"gateway"`
	Functions Functions `yaml:"functions"`
	Audit     Audit     `yaml:"audit"`
	Fleet     Fleet     `yaml:"fleet"`
	// Hub is read by `aegis hub` only.
	Hub Hub `yaml:"hub"`
}

// Admin configures the local admin interface.
type Admin struct {
	// Socket is the path of the admin unix socket; absolute.
	Socket string `yaml:"socket"`
	// ManagementAddrs are IPs or CIDRs that must never be blocked without
	// --force (lockout guard) and that the shield never blocks
	// automatically (they stay rate limited). See [Admin.ManagementPrefixes].
	ManagementAddrs []string `yaml:"management_addrs"`
	// MetricsListen is a TCP address (IP:port) serving Prometheus
	// /metrics; empty (the default) serves them on the admin socket only.
	MetricsListen string `yaml:"metrics_listen"`
}

// Shield configures the XDP packet filter.
type Shield struct {
	// Interfaces are the network interfaces to attach to; may be empty.
	Interfaces []string `yaml:"interfaces"`
	// Mode is ModeEnforce or ModeMonitor.
	Mode string `yaml:"mode"`
	// XDPMode is XDPModeAuto, XDPModeNative or XDPModeGeneric.
	XDPMode string `yaml:"xdp_mode"`
	// PinPath is the bpffs directory maps and links are pinned in.
	PinPath   string    `yaml:"pin_path"`
	Limits    Limits    `yaml:"limits"`
	RateLimit RateLimit `yaml:"rate_limit"`
	// LongHeaderChains is what the shield does with an IPv6 packet whose
	// extension header chain is longer than it walks: LongChainsDrop or
	// LongChainsCharge (to the source's SYN bucket).
	LongHeaderChains string   `yaml:"long_header_chains"`
	SweepInterval    Duration `yaml:"sweep_interval"`
	// DetachOnExit detaches the program from every interface when the
	// daemon stops on SIGTERM or SIGINT. Off by default: the shield keeps
	// enforcing while the daemon is down or restarting.
	DetachOnExit bool `yaml:"detach_on_exit"`
}

// Limits sets the capacity of the blocklist maps.
type Limits struct {
	IPv4 int `yaml:"ipv4"`
	IPv6 int `yaml:"ipv6"`
}

// RateLimit configures per-source rate limiting.
type RateLimit struct {
	SYN  Bucket `yaml:"syn"`
	UDP  Bucket `yaml:"udp"`
	ICMP Bucket `yaml:"icmp"`
	// IPv4PrefixLen and IPv6PrefixLen group sources by prefix.
	IPv4PrefixLen int `yaml:"ipv4_prefix_len"`
	IPv6PrefixLen int `yaml:"ipv6_prefix_len"`
	// AutoBlockFactor: a source sending more than AutoBlockFactor × PPS
	// packets in one second is blocked automatically for AutoBlockTTL.
	AutoBlockFactor int      `yaml:"auto_block_factor"`
	AutoBlockTTL    Duration `yaml:"auto_block_ttl"`
}

// Bucket is a token bucket for one packet class.
type Bucket struct {
	// PPS is packets per second; 0 means the class is not rate limited.
	PPS uint32 `yaml:"pps"`
	// Burst is the bucket size. When a file sets pps but omits burst,
	// Burst defaults to 2×PPS (capped at MaxPPS).
	Burst uint32 `yaml:"burst"`
}

// Duration is a time.Duration written in YAML as a Go duration string
// such as "10s" or "5m".
type Duration struct {
	time.Duration
}

// UnmarshalYAML implements yaml.Unmarshaler. Only string scalars accepted
// by time.ParseDuration are valid; bare numbers are rejected because their
// unit would be ambiguous.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		return fmt.Errorf("must be a duration string such as \"10s\", got %q", n.Value)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("must be a duration string such as \"10s\", got %q", n.Value)
	}
	d.Duration = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) {
	return d.String(), nil
}

// Default returns the built-in configuration.
func Default() Config {
	// The shield's own defaults are the configuration's: one home.
	def := shield.DefaultSettings()
	return Config{
		StateDir: "/var/lib/aegis",
		Admin: Admin{
			Socket: "/run/aegis/admin.sock",
		},
		Shield: Shield{
			Mode:    string(def.Mode),
			XDPMode: XDPModeAuto,
			PinPath: "/sys/fs/bpf/aegis",
			Limits: Limits{
				IPv4: MaxBlocklistV4Entries,
				IPv6: MaxBlocklistV6Entries,
			},
			RateLimit:        rateLimitOf(def),
			LongHeaderChains: string(def.LongChains),
			SweepInterval:    Duration{10 * time.Second},
		},
		Gateway:   defaultGateway(),
		Functions: defaultFunctions(),
		Audit:     defaultAudit(),
		Fleet:     defaultFleet(),
		Hub:       defaultHub(),
	}
}

func rateLimitOf(s shield.Settings) RateLimit {
	return RateLimit{
		SYN:             Bucket(s.SYN),
		UDP:             Bucket(s.UDP),
		ICMP:            Bucket(s.ICMP),
		IPv4PrefixLen:   s.IPv4PrefixLen,
		IPv6PrefixLen:   s.IPv6PrefixLen,
		AutoBlockFactor: s.AutoBlockFactor,
		AutoBlockTTL:    Duration{s.AutoBlockTTL},
	}
}

// Settings are the shield's runtime settings this configuration asks for.
func (s Shield) Settings() shield.Settings {
	rl := s.RateLimit
	return shield.Settings{
		Mode:            shield.Mode(s.Mode),
		SYN:             shield.Bucket(rl.SYN),
		UDP:             shield.Bucket(rl.UDP),
		ICMP:            shield.Bucket(rl.ICMP),
		IPv4PrefixLen:   rl.IPv4PrefixLen,
		IPv6PrefixLen:   rl.IPv6PrefixLen,
		AutoBlockFactor: rl.AutoBlockFactor,
		AutoBlockTTL:    rl.AutoBlockTTL.Duration,
		LongChains:      shield.LongChains(s.LongHeaderChains),
	}
}

// ManagementPrefixes returns Admin.ManagementAddrs parsed as prefixes, by
// the lists' one rule ([lists.ParseTarget]): a bare address becomes a
// single-address prefix (/32 or /128); a CIDR with host bits set is
// refused. Entries that do not parse are skipped; [Config.Validate] reports
// them.
func (a Admin) ManagementPrefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(a.ManagementAddrs))
	for _, s := range a.ManagementAddrs {
		if p, err := lists.ParseTarget(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// Validate checks every value and returns all problems joined with
// errors.Join, each prefixed by its dotted key.
func (c Config) Validate() error {
	var v validator
	v.absPath("state_dir", c.StateDir)

	v.absPath("admin.socket", c.Admin.Socket)
	if len(c.Admin.Socket) > maxSocketPath {
		v.addf("admin.socket", "must be at most %d bytes, got %d", maxSocketPath, len(c.Admin.Socket))
	}
	if c.Admin.MetricsListen != "" {
		if _, err := netip.ParseAddrPort(c.Admin.MetricsListen); err != nil {
			v.addf("admin.metrics_listen", "must be IP:port such as 127.0.0.1:9400, got %q", c.Admin.MetricsListen)
		}
	}
	for i, s := range c.Admin.ManagementAddrs {
		if _, err := lists.ParseTarget(s); err != nil {
			v.addf(fmt.Sprintf("admin.management_addrs[%d]", i), "must be an IP address or CIDR, got %q", s)
		}
	}
	if n := len(c.Admin.ManagementAddrs); n > MaxManagementAddrs {
		v.addf("admin.management_addrs", "must hold at most %d entries, got %d", MaxManagementAddrs, n)
	}

	seen := make(map[string]int, len(c.Shield.Interfaces))
	for i, name := range c.Shield.Interfaces {
		key := fmt.Sprintf("shield.interfaces[%d]", i)
		if err := checkIfname(name); err != nil {
			v.addf(key, "%v", err)
			continue
		}
		if j, dup := seen[name]; dup {
			v.addf(key, "duplicate interface %q (also shield.interfaces[%d])", name, j)
			continue
		}
		seen[name] = i
	}
	v.oneOf("shield.mode", c.Shield.Mode, ModeEnforce, ModeMonitor)
	v.oneOf("shield.xdp_mode", c.Shield.XDPMode, XDPModeAuto, XDPModeNative, XDPModeGeneric)
	v.oneOf("shield.long_header_chains", c.Shield.LongHeaderChains, LongChainsDrop, LongChainsCharge)
	if v.absPath("shield.pin_path", c.Shield.PinPath) {
		if p := path.Clean(c.Shield.PinPath); !strings.HasPrefix(p, bpffsRoot) {
			v.addf("shield.pin_path", "must be under %s, got %q", bpffsRoot, c.Shield.PinPath)
		}
	}
	v.intRange("shield.limits.ipv4", c.Shield.Limits.IPv4, 1, lists.CeilingV4)
	v.intRange("shield.limits.ipv6", c.Shield.Limits.IPv6, 1, lists.CeilingV6)

	rl := c.Shield.RateLimit
	v.bucket("shield.rate_limit.syn", rl.SYN)
	v.bucket("shield.rate_limit.udp", rl.UDP)
	v.bucket("shield.rate_limit.icmp", rl.ICMP)
	v.intRange("shield.rate_limit.ipv4_prefix_len", rl.IPv4PrefixLen, shield.MinIPv4PrefixLen, shield.MaxIPv4PrefixLen)
	v.intRange("shield.rate_limit.ipv6_prefix_len", rl.IPv6PrefixLen, shield.MinIPv6PrefixLen, shield.MaxIPv6PrefixLen)
	v.intRange("shield.rate_limit.auto_block_factor", rl.AutoBlockFactor, shield.MinAutoBlockFactor, shield.MaxAutoBlockFactor)
	v.durRange("shield.rate_limit.auto_block_ttl", rl.AutoBlockTTL, shield.MinAutoBlockTTL, shield.MaxAutoBlockTTL)
	v.durRange("shield.sweep_interval", c.Shield.SweepInterval, time.Second, time.Hour)
	v.gateway(c.Gateway)
	v.functions(c.Functions)
	v.audit(c.Audit, c.StateDir)
	v.fleet(c.Fleet)
	v.hub(c.Hub)
	return joinErrs(v.errs)
}

// checkIfname applies the kernel's dev_valid_name rules.
func checkIfname(name string) error {
	switch {
	case name == "":
		return errors.New("must not be empty")
	case len(name) > 15:
		return fmt.Errorf("must be at most 15 bytes, got %q", name)
	case name == "." || name == "..":
		return fmt.Errorf("invalid interface name %q", name)
	case strings.ContainsAny(name, "/:\x00 \t\n\v\f\r"):
		return fmt.Errorf("must not contain '/', ':', NUL or whitespace, got %q", name)
	}
	return nil
}

type validator struct {
	errs []error
}

func joinErrs(errs []error) error { return errors.Join(errs...) }

func (v *validator) addf(key, format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
}

// absPath reports whether p is a non-empty absolute path, recording an
// error otherwise.
func (v *validator) absPath(key, p string) bool {
	if !path.IsAbs(p) {
		v.addf(key, "must be an absolute path, got %q", p)
		return false
	}
	return true
}

func (v *validator) oneOf(key, got string, allowed ...string) {
	for _, a := range allowed {
		if got == a {
			return
		}
	}
	quoted := make([]string, len(allowed))
	for i, a := range allowed {
		quoted[i] = fmt.Sprintf("%q", a)
	}
	v.addf(key, "must be one of %s, got %q", strings.Join(quoted, ", "), got)
}

func (v *validator) intRange(key string, got, lo, hi int) {
	if got < lo || got > hi {
		v.addf(key, "must be between %d and %d, got %d", lo, hi, got)
	}
}

func (v *validator) durRange(key string, got Duration, lo, hi time.Duration) {
	if got.Duration < lo || got.Duration > hi {
		v.addf(key, "must be between %s and %s, got %s", lo, hi, got.Duration)
	}
}

func (v *validator) bucket(key string, b Bucket) {
	if b.PPS > MaxPPS {
		v.addf(key+".pps", "must be at most %d, got %d", MaxPPS, b.PPS)
	}
	if b.Burst > MaxPPS {
		v.addf(key+".burst", "must be at most %d, got %d", MaxPPS, b.Burst)
	}
	if b.PPS > 0 && b.Burst == 0 {
		v.addf(key+".burst", "must be at least 1 when pps is set, got 0")
	}
}
