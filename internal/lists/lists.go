package lists

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Errors that classify a refused list change; callers wrap them and the
// admin API maps them to status codes.
var (
	ErrInvalid  = errors.New("invalid request")
	ErrRefused  = errors.New("refused")
	ErrNotFound = errors.New("not found")
)

// List names one of the address lists.
type List string

// The lists. The allowlist always wins over the blocklist in the data path.
const (
	Blocklist List = "block"
	Allowlist List = "allow"
)

// All returns every list, blocklist first.
func All() []List { return []List{Blocklist, Allowlist} }

// Valid reports whether l names a list.
func (l List) Valid() bool { return l == Blocklist || l == Allowlist }

// Noun is the list's name in messages: "blocklist" or "allowlist".
func (l List) Noun() string {
	if l == Allowlist {
		return "allowlist"
	}
	if l == Blocklist {
		return "blocklist"
	}
	return fmt.Sprintf("list %q", string(l))
}

// Check returns an ErrInvalid error unless l names a list.
func Check(l List) error {
	if !l.Valid() {
		return fmt.Errorf("%w: unknown list %q", ErrInvalid, l)
	}
	return nil
}

// Bounds of an entry.
const (
	// MaxTTL is the longest lifetime a list entry may be given.
	MaxTTL = 365 * 24 * time.Hour
	// MaxReasonLen is the longest accepted reason, in bytes.
	MaxReasonLen = 256
)

// Capacities of the lists' kernel maps (bpf/shield.c sizes its maps with
// them; a shield test binds the two): a configured limit may not exceed them.
const (
	CeilingV4    = 1 << 20
	CeilingV6    = 1 << 19
	AllowCeiling = 1 << 16
)

// ParseTarget parses an IPv4/IPv6 address or CIDR prefix as typed by an
// operator or written in the configuration. A prefix with host bits set is
// refused rather than silently widened, since that is usually a typo; an
// IPv4-mapped IPv6 form becomes its IPv4 form.
func ParseTarget(s string) (netip.Prefix, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return netip.Prefix{}, fmt.Errorf("%w: empty target", ErrInvalid)
	}
	if strings.Contains(t, "/") {
		p, err := netip.ParsePrefix(t)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%w: %q is not an IP address or CIDR prefix", ErrInvalid, s)
		}
		if p.Addr().Is4In6() {
			if p.Bits() < 96 {
				return netip.Prefix{}, fmt.Errorf("%w: %q: IPv4-mapped prefix shorter than /96", ErrInvalid, s)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		if m := p.Masked(); m != p {
			return netip.Prefix{}, fmt.Errorf("%w: %q has host bits set (did you mean %s?)", ErrInvalid, s, m)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(t)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%w: %q is not an IP address or CIDR prefix", ErrInvalid, s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// ParseTargets parses every target, fails on the first bad one (naming it)
// and drops repeats, keeping the first occurrence's place.
func ParseTargets(ss []string) ([]netip.Prefix, error) {
	if len(ss) == 0 {
		return nil, fmt.Errorf("%w: no targets given", ErrInvalid)
	}
	out := make([]netip.Prefix, 0, len(ss))
	seen := make(map[netip.Prefix]bool, len(ss))
	for _, s := range ss {
		p, err := ParseTarget(s)
		if err != nil {
			return nil, err
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out, nil
}

// ValidateTTL checks an entry lifetime: zero means permanent.
func ValidateTTL(ttl time.Duration) error {
	if ttl < 0 {
		return fmt.Errorf("%w: ttl %s is negative", ErrInvalid, ttl)
	}
	if ttl > MaxTTL {
		return fmt.Errorf("%w: ttl %s exceeds the maximum of %s", ErrInvalid, ttl, MaxTTL)
	}
	if ttl > 0 && ttl < time.Second {
		return fmt.Errorf("%w: ttl %s is shorter than one second", ErrInvalid, ttl)
	}
	return nil
}

// ValidateReason checks an entry's reason: at most MaxReasonLen bytes of
// UTF-8 without control characters (it is printed in tables and logs).
func ValidateReason(reason string) error {
	if len(reason) > MaxReasonLen {
		return fmt.Errorf("%w: reason is %d bytes, limit is %d", ErrInvalid, len(reason), MaxReasonLen)
	}
	if !utf8.ValidString(reason) {
		return fmt.Errorf("%w: reason is not valid UTF-8", ErrInvalid)
	}
	for _, r := range reason {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: reason contains control character %U", ErrInvalid, r)
		}
	}
	return nil
}

// ValidateEntry checks what an add request asks of each entry.
func ValidateEntry(ttl time.Duration, reason string) error {
	return errors.Join(ValidateTTL(ttl), ValidateReason(reason))
}

// ValidatePrefix checks a prefix as the lists hold it: valid, masked and
// not IPv4-mapped. Targets from ParseTarget always pass.
func ValidatePrefix(p netip.Prefix) error {
	switch {
	case !p.IsValid():
		return fmt.Errorf("%w: invalid prefix %s", ErrInvalid, p)
	case p.Addr().Is4In6():
		return fmt.Errorf("%w: IPv4-mapped IPv6 prefix %s: use the IPv4 form", ErrInvalid, p)
	case p.Masked() != p:
		return fmt.Errorf("%w: %s has host bits set", ErrInvalid, p)
	}
	return nil
}

// LockoutGuard refuses blocking targets that would cover a management
// address or an allowlisted prefix: the operator would lock themselves out
// or contradict the allowlist. --force skips it.
func LockoutGuard(targets, management, allowed []netip.Prefix) error {
	for _, p := range targets {
		for _, m := range management {
			if p.Overlaps(m) {
				return fmt.Errorf("%w: blocking %s would cover management address %s (use --force to override)", ErrRefused, p, m)
			}
		}
		for _, a := range allowed {
			if p.Overlaps(a) {
				return fmt.Errorf("%w: blocking %s would cover allowlisted %s (use --force to override)", ErrRefused, p, a)
			}
		}
	}
	return nil
}

// Count is a number of entries per address family.
type Count struct{ V4, V6 int }

// CountOf counts prefixes by family.
func CountOf(ps []netip.Prefix) Count {
	var c Count
	for _, p := range ps {
		if p.Addr().Is4() {
			c.V4++
		} else {
			c.V6++
		}
	}
	return c
}

// CheckCapacity refuses adding entries to a list holding have when a
// family would exceed its limit.
func CheckCapacity(l List, have, adding, limit Count) error {
	if have.V4+adding.V4 > limit.V4 {
		return fmt.Errorf("%w: IPv4 %s full (%d entries)", ErrRefused, l.Noun(), limit.V4)
	}
	if have.V6+adding.V6 > limit.V6 {
		return fmt.Errorf("%w: IPv6 %s full (%d entries)", ErrRefused, l.Noun(), limit.V6)
	}
	return nil
}
