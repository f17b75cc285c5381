package shield

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/aegis-edge/aegis/internal/lists"
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

// List names one of the two address lists the data path consults; package
// lists owns the names.
type List = lists.List

// The lists. The allowlist always wins over the blocklist.
const (
	Blocklist = lists.Blocklist
	Allowlist = lists.Allowlist
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

// Validate checks a rate limit against what the data path can express.
func (b Bucket) Validate() error {
	if b.PPS > MaxRate || b.Burst > MaxRate {
		return fmt.Errorf("pps and burst must be at most %d", MaxRate)
	}
	if b.PPS > 0 && b.Burst == 0 {
		return errors.New("burst must be at least 1 when pps is set")
	}
	return nil
}

// DefaultBurst is the burst of a rate limit given without one: two
// seconds' worth, at most MaxRate.
func DefaultBurst(pps uint32) uint32 { return uint32(min(2*uint64(pps), MaxRate)) }

// Validate checks the settings against what the data path can express.
func (s Settings) Validate() error {
	if s.Mode != ModeEnforce && s.Mode != ModeMonitor {
		return fmt.Errorf("mode: must be enforce or monitor, got %q", s.Mode)
	}
	for _, b := range []struct {
		name string
		b    Bucket
	}{{"syn", s.SYN}, {"udp", s.UDP}, {"icmp", s.ICMP}} {
		if err := b.b.Validate(); err != nil {
			return fmt.Errorf("%s: %w", b.name, err)
		}
	}
	if s.IPv4PrefixLen < MinIPv4PrefixLen || s.IPv4PrefixLen > MaxIPv4PrefixLen {
		return fmt.Errorf("ipv4_prefix_len: must be between %d and %d, got %d", MinIPv4PrefixLen, MaxIPv4PrefixLen, s.IPv4PrefixLen)
	}
	if s.IPv6PrefixLen < MinIPv6PrefixLen || s.IPv6PrefixLen > MaxIPv6PrefixLen {
		return fmt.Errorf("ipv6_prefix_len: must be between %d and %d, got %d", MinIPv6PrefixLen, MaxIPv6PrefixLen, s.IPv6PrefixLen)
	}
	if s.AutoBlockFactor < MinAutoBlockFactor || s.AutoBlockFactor > MaxAutoBlockFactor {
		return fmt.Errorf("auto_block_factor: must be between %d and %d, got %d", MinAutoBlockFactor, MaxAutoBlockFactor, s.AutoBlockFactor)
	}
	if s.AutoBlockTTL < MinAutoBlockTTL || s.AutoBlockTTL > MaxAutoBlockTTL {
		return fmt.Errorf("auto_block_ttl: must be between %s and %s, got %s", MinAutoBlockTTL, MaxAutoBlockTTL, s.AutoBlockTTL)
	}
	if s.LongChains != LongChainsDrop && s.LongChains != LongChainsCharge {
		return fmt.Errorf("long_header_chains: must be drop or charge, got %q", s.LongChains)
	}
	return nil
}

// Bounds of the settings; the configuration checks its keys against them.
const (
	// MaxRate is the largest rate limit and burst the data path takes, in
	// packets.
	MaxRate = 100_000_000

	MinIPv4PrefixLen, MaxIPv4PrefixLen     = 8, 32
	MinIPv6PrefixLen, MaxIPv6PrefixLen     = 16, 128
	MinAutoBlockFactor, MaxAutoBlockFactor = 2, 1000
	MinAutoBlockTTL, MaxAutoBlockTTL       = time.Second, 24 * time.Hour
)

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

// ListChange is one batch of changes to a list by exact key, as
// [Shield.Sync] applies it: the prefixes to delete, then the rules to put.
// A trie deletes by exact key: a covering prefix stays.
type ListChange struct {
	Put    []Rule
	Delete []netip.Prefix
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

// Sizes of the kernel's other maps; the lists' ceilings are package lists'.
const (
	// ManagementEntries bounds the management prefixes of each family.
	ManagementEntries = 1024
)
