package lists

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in, want string // want "" means refused with ErrInvalid
	}{
		{"192.0.2.1", "192.0.2.1/32"},
		{" 192.0.2.1 ", "192.0.2.1/32"},
		{"192.0.2.0/24", "192.0.2.0/24"},
		{"2001:db8::1", "2001:db8::1/128"},
		{"2001:db8::/32", "2001:db8::/32"},
		{"::ffff:192.0.2.1", "192.0.2.1/32"},
		{"::ffff:192.0.2.0/120", "192.0.2.0/24"},
		{"192.0.2.1/24", ""}, // host bits: one rule, refused
		{"2001:db8::1/32", ""},
		{"::ffff:0:0/95", ""},
		{"fe80::1%eth0", ""},
		{"", ""},
		{"example.com", ""},
		{"192.0.2.0/33", ""},
	}
	for _, tt := range tests {
		p, err := ParseTarget(tt.in)
		if tt.want == "" {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("ParseTarget(%q) = %v, %v; want ErrInvalid", tt.in, p, err)
			}
			continue
		}
		if err != nil || p.String() != tt.want {
			t.Errorf("ParseTarget(%q) = %v, %v; want %s", tt.in, p, err, tt.want)
		}
	}
	ps, err := ParseTargets([]string{"192.0.2.1", "192.0.2.1/32", "10.0.0.0/8"})
	if err != nil || len(ps) != 2 {
		t.Errorf("ParseTargets dropping repeats = %v, %v", ps, err)
	}
	if _, err := ParseTargets(nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("ParseTargets(nil) = %v", err)
	}
}

func TestValidateEntry(t *testing.T) {
	tests := []struct {
		name   string
		ttl    time.Duration
		reason string
		want   string // substring of the error; "" means valid
	}{
		{"permanent", 0, "", ""},
		{"a year", MaxTTL, strings.Repeat("x", MaxReasonLen), ""},
		{"negative", -time.Second, "", "negative"},
		{"too long", MaxTTL + time.Second, "", "exceeds"},
		{"sub-second", time.Millisecond, "", "shorter than one second"},
		{"long reason", 0, strings.Repeat("x", MaxReasonLen+1), "reason is 257 bytes"},
		{"control", 0, "a\nb", "control character"},
		{"not utf-8", 0, "\xff", "UTF-8"},
	}
	for _, tt := range tests {
		err := ValidateEntry(tt.ttl, tt.reason)
		if tt.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want ErrInvalid with %q", tt.name, err, tt.want)
		}
	}
}

func TestLockoutGuard(t *testing.T) {
	pp := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	mgmt, allowed := pp("192.0.2.250/32"), pp("198.51.100.0/25")
	if err := LockoutGuard(pp("203.0.113.0/24", "192.0.2.1/32"), mgmt, allowed); err != nil {
		t.Errorf("disjoint targets refused: %v", err)
	}
	for _, target := range []string{"192.0.2.0/24", "198.51.100.7/32", "0.0.0.0/0"} {
		if err := LockoutGuard(pp(target), mgmt, allowed); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "--force") {
			t.Errorf("LockoutGuard(%s) = %v, want ErrRefused naming --force", target, err)
		}
	}
}

func TestCheckCapacity(t *testing.T) {
	limit := Count{V4: 3, V6: 1}
	if err := CheckCapacity(Blocklist, Count{V4: 2}, Count{V4: 1, V6: 1}, limit); err != nil {
		t.Errorf("filling to the limit: %v", err)
	}
	if err := CheckCapacity(Blocklist, Count{V4: 3}, Count{V4: 1}, limit); !errors.Is(err, ErrRefused) || err.Error() != "refused: IPv4 blocklist full (3 entries)" {
		t.Errorf("over the IPv4 limit: %v", err)
	}
	if err := CheckCapacity(Allowlist, Count{V6: 1}, Count{V6: 1}, limit); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "IPv6 allowlist full") {
		t.Errorf("over the IPv6 limit: %v", err)
	}
	if c := CountOf([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}); c != (Count{1, 1}) {
		t.Errorf("CountOf = %+v", c)
	}
}
