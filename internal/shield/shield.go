package shield

import (
	"fmt"
	"net/netip"
	"time"
)

// Mode says whether the shield drops or only counts what it would drop.
type Mode string

// Modes of the data path.
const (
	ModeEnforce Mode = "enforce"
	ModeMonitor Mode = "monitor"
)

// XDPMode selects how the program is attached to an interface.
type XDPMode string

// Attach modes. Auto tries the driver (native) hook and falls back to generic.
const (
	XDPAuto    XDPMode = "auto"
	XDPNative  XDPMode = "native"
	XDPGeneric XDPMode = "generic"
)

// List names one of the two address lists the data path consults.
type List string

// The lists. The allowlist always wins over the blocklist.
const (
	Blocklist List = "block"
	Allowlist List = "allow"
)

// Reason is why the data path passed or dropped a packet; the values match
// enum verdict_reason in bpf/shield.c.
type Reason uint32

// Reasons, in the order of the counters map.
const (
	ReasonPassed Reason = iota
	ReasonAllowlisted
	ReasonBlockedExact
	ReasonBlockedPrefix
	ReasonRateSYN
	ReasonRateUDP
	ReasonRateICMP
	ReasonAutoBlocked
	ReasonMalformed
	ReasonNonIP
	// ReasonFragment drops a TCP first fragment too short to hold the
	// flags, a TCP fragment at offset 1, and an IPv6 first fragment whose
	// header chain or L4 header is incomplete.
	ReasonFragment
	// ReasonHeaderChain drops an IPv6 packet whose extension header chain
	// is longer than the data path walks (LongChainsDrop).
	ReasonHeaderChain
	numReasons
)

var reasonNames = [numReasons]string{
	"passed", "allowlisted", "blocked_exact", "blocked_prefix", "rate_syn",
	"rate_udp", "rate_icmp", "auto_blocked", "malformed_passed", "non_ip",
	"fragment_dropped", "header_chain_dropped",
}

// Reasons lists every reason in counter order.
func Reasons() []Reason {
	rs := make([]Reason, numReasons)
	for i := range rs {
		rs[i] = Reason(i)
	}
	return rs
}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint32(r))
}

// Drops reports whether the reason drops the packet in enforce mode.
func (r Reason) Drops() bool {
	return r >= ReasonBlockedExact && r <= ReasonAutoBlocked || r == ReasonFragment || r == ReasonHeaderChain
}

// Class is a rate-limited traffic class.
type Class uint8

// Rate-limited classes; the values match enum rate_class.
const (
	ClassSYN Class = iota
	ClassUDP
	ClassICMP
	numClasses
)

func (c Class) String() string {
	switch c {
	case ClassSYN:
		return "syn"
	case ClassUDP:
		return "udp"
	case ClassICMP:
		return "icmp"
	}
	return fmt.Sprintf("class(%d)", uint8(c))
}

// LongChains says what the data path does with an IPv6 packet whose
// extension header chain is longer than it walks (six headers): its L4
// protocol is unknown, so no bucket of its own applies.
type LongChains string

// Long header chain policies.
const (
	// LongChainsDrop drops the packet (counted header_chain_dropped).
	LongChainsDrop LongChains = "drop"
	// LongChainsCharge charges it to the source's SYN bucket; what passes
	// counts as malformed_passed.
	LongChainsCharge LongChains = "charge"
)

// Bucket is one class's limit: a token bucket refilled at PPS packets per
// second holding at most Burst. PPS 0 leaves the class unlimited.
type Bucket struct {
	PPS   uint32 `json:"pps"`
	Burst uint32 `json:"burst"`
}

// Settings are the data path's runtime settings; changing them takes effect
// on the next packet, without reloading the program.
type Settings struct {
	Mode            Mode          `json:"mode"`
	SYN             Bucket        `json:"syn"`
	UDP             Bucket        `json:"udp"`
	ICMP            Bucket        `json:"icmp"`
	IPv4PrefixLen   int           `json:"ipv4_prefix_len"`
	IPv6PrefixLen   int           `json:"ipv6_prefix_len"`
	AutoBlockFactor int           `json:"auto_block_factor"`
	AutoBlockTTL    time.Duration `json:"auto_block_ttl"`
	LongChains      LongChains    `json:"long_header_chains"`
}

// Validate checks the settings against what the data path can express.
func (s Settings) Validate() error {
	if s.Mode != ModeEnforce && s.Mode != ModeMonitor {
		return fmt.Errorf("mode: must be enforce or monitor, got %q", s.Mode)
	}
	for _, b := range []struct {
		name string
		b    Bucket
	}{{"syn", s.SYN}, {"udp", s.UDP}, {"icmp", s.ICMP}} {
		if b.b.PPS > maxRate || b.b.Burst > maxRate {
			return fmt.Errorf("%s: pps and burst must be at most %d", b.name, maxRate)
		}
		if b.b.PPS > 0 && b.b.Burst == 0 {
			return fmt.Errorf("%s: burst must be at least 1 when pps is set", b.name)
		}
	}
	if s.IPv4PrefixLen < 8 || s.IPv4PrefixLen > 32 {
		return fmt.Errorf("ipv4_prefix_len: must be between 8 and 32, got %d", s.IPv4PrefixLen)
	}
	if s.IPv6PrefixLen < 16 || s.IPv6PrefixLen > 128 {
		return fmt.Errorf("ipv6_prefix_len: must be between 16 and 128, got %d", s.IPv6PrefixLen)
	}
	if s.AutoBlockFactor < 2 || s.AutoBlockFactor > 1000 {
		return fmt.Errorf("auto_block_factor: must be between 2 and 1000, got %d", s.AutoBlockFactor)
	}
	if s.AutoBlockTTL < time.Second || s.AutoBlockTTL > 24*time.Hour {
		return fmt.Errorf("auto_block_ttl: must be between 1s and 24h, got %s", s.AutoBlockTTL)
	}
	if s.LongChains != LongChainsDrop && s.LongChains != LongChainsCharge {
		return fmt.Errorf("long_header_chains: must be drop or charge, got %q", s.LongChains)
	}
	return nil
}

const maxRate = 100_000_000

// DefaultSettings are the settings of a node without configuration.
func DefaultSettings() Settings {
	return Settings{
		Mode:            ModeEnforce,
		SYN:             Bucket{PPS: 100, Burst: 200},
		UDP:             Bucket{PPS: 1000, Burst: 2000},
		ICMP:            Bucket{PPS: 20, Burst: 50},
		IPv4PrefixLen:   32,
		IPv6PrefixLen:   64,
		AutoBlockFactor: 10,
		AutoBlockTTL:    5 * time.Minute,
		LongChains:      LongChainsDrop,
	}
}

// Rule is one list entry as the kernel holds it.
type Rule struct {
	Prefix  netip.Prefix // masked; a single address is /32 or /128
	RuleID  uint32
	Expires time.Time // zero: permanent
}

// RuleState is a rule read back from the kernel with its hit counter.
type RuleState struct {
	Rule
	Hits uint64
}

// Counter is a packet and byte count.
type Counter struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Counters are the data path's totals over all CPUs: Verdicts holds what the
// program did per reason, Monitored what it would have dropped in monitor mode.
type Counters struct {
	Verdicts  map[Reason]Counter
	Monitored map[Reason]Counter
}

// AutoBlock is a source the data path blocked by itself for flooding.
type AutoBlock struct {
	Source     netip.Prefix `json:"source"`
	Class      string       `json:"class,omitempty"`
	Until      time.Time    `json:"until"`
	WindowPkts uint64       `json:"window_packets,omitempty"`
	Monitor    bool         `json:"monitor,omitempty"`
}

// Ceilings of the list maps in the kernel: configured limits may not exceed them.
const (
	CeilingV4    = 1 << 20
	CeilingV6    = 1 << 19
	AllowCeiling = 1 << 16
	// ManagementEntries bounds the management prefixes of each family.
	ManagementEntries = 1024
)
