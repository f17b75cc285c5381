package node

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// MaxTTL is the longest expiry a list entry may be given.
const MaxTTL = 365 * 24 * time.Hour

// ParseTarget parses an IPv4/IPv6 address or CIDR prefix as typed by an
// operator. A prefix with host bits set is refused rather than silently
// widened, since that is usually a typo.
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

// ParseTargets parses every target and fails on the first bad one, naming it.
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
