package change

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/keyfile"
)

func newKey(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func block(prefix string, issued time.Time) Change {
	return Change{Kind: KindList, Op: OpPut, List: Blocklist, Prefix: netip.MustParsePrefix(prefix), IssuedAt: issued.UnixNano()}
}

func TestKeyFor(t *testing.T) {
	tests := []struct {
		c    Change
		want string
	}{
		{Change{Kind: KindList, List: Blocklist, Prefix: netip.MustParsePrefix("198.51.100.0/24")}, "list.block.198-51-100-0_24"},
		{Change{Kind: KindList, List: Allowlist, Prefix: netip.MustParsePrefix("203.0.113.7/32")}, "list.allow.203-0-113-7_32"},
		{Change{Kind: KindList, List: Blocklist, Prefix: netip.MustParsePrefix("2001:db8::/48")}, "list.block.2001-db8--_48"},
		{Change{Kind: KindList, List: Blocklist, Prefix: netip.MustParsePrefix("::/0")}, "list.block.--_0"},
		{Change{Kind: KindRate, Rate: &Rate{Class: "syn"}}, "rate.syn"},
		{Change{Kind: KindFunction, Func: &Function{Name: "hello_1"}}, "fn.hello_1"},
	}
	// NATS KV keys: [-/_=.a-zA-Z0-9], no empty tokens, no leading or trailing dot.
	natsKey := regexp.MustCompile(`^[-/_=a-zA-Z0-9]+(\.[-/_=a-zA-Z0-9]+)*$`)
	for _, tt := range tests {
		got, err := KeyFor(tt.c)
		if err != nil || got != tt.want {
			t.Errorf("KeyFor(%+v) = %q, %v; want %q", tt.c, got, err, tt.want)
		}
		if !natsKey.MatchString(got) {
			t.Errorf("%q is not a valid NATS KV key", got)
		}
		back, err := ParseKey(got)
		if err != nil || back.Kind != tt.c.Kind || back.List != tt.c.List || back.Prefix != tt.c.Prefix {
			t.Errorf("ParseKey(%q) = %+v, %v; want the subject back", got, back, err)
		}
	}
	for _, bad := range []Change{
		{Kind: KindList, List: Blocklist, Prefix: netip.MustParsePrefix("198.51.100.1/24")},    // not canonical
		{Kind: KindList, List: Blocklist, Prefix: netip.MustParsePrefix("::ffff:1.2.3.4/128")}, // 4in6
		{Kind: KindList, List: "deny", Prefix: netip.MustParsePrefix("192.0.2.0/24")},
		{Kind: KindRate, Rate: &Rate{Class: "tcp"}},
		{Kind: KindFunction, Func: &Function{Name: "Bad.Name"}},
		{Kind: "other"},
	} {
		if k, err := KeyFor(bad); err == nil {
			t.Errorf("KeyFor(%+v) = %q, want an error", bad, k)
		}
	}
}

func TestParseKeyRoundTrip(t *testing.T) {
	for _, s := range []string{"0.0.0.0/0", "10.1.2.3/32", "::/0", "::1/128", "2001:db8:1:2:3:4:5:6/128", "fe80::/10", "1:2:3:4::/64", "1::/16"} {
		c := Change{Kind: KindList, List: Blocklist, Prefix: netip.MustParsePrefix(s)}
		k, err := KeyFor(c)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseKey(k)
		if err != nil || back.Prefix != c.Prefix {
			t.Errorf("%s: key %q parsed to %v, %v", s, k, back.Prefix, err)
		}
	}
	for _, bad := range []string{"", "list", "list.block", "list.block.1-2-3-4", "list.block.1-2-3-5_24", "list.deny.1-2-3-0_24", "rate.tcp", "fn.A", "meta.x", "list.block.01-2-3-0_24"} {
		if c, err := ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) = %+v, want an error", bad, c)
		}
	}
}

func TestSignRoundTrip(t *testing.T) {
	pub, priv := newKey(t)
	now := time.Now()
	c := block("198.51.100.0/24", now)
	c.ExpiresAt = now.Add(time.Hour).UnixNano()
	c.Reason = "scanner"
	env, err := Sign(c, priv)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := Decode(env.Encode())
	if err != nil {
		t.Fatal(err)
	}
	dec.StoredKey = "list.block.198-51-100-0_24"
	v, err := NewVerifier(Policy{Operators: []ed25519.PublicKey{pub}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.Check(dec, now)
	if err != nil {
		t.Fatal(err)
	}
	if got.Key != dec.StoredKey || got.KeyID != keyfile.KeyID(pub) || got.Prefix != c.Prefix || got.ExpiresAt != c.ExpiresAt || got.Reason != "scanner" {
		t.Fatalf("checked change %+v does not match the signed one", got)
	}
}

func TestSignatureContext(t *testing.T) {
	// A signature over the bare payload (no context), or under the eBPF
	// object context, must not verify as a fleet change.
	pub, priv := newKey(t)
	env, err := Sign(block("192.0.2.0/24", time.Now()), priv)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := NewVerifier(Policy{Operators: []ed25519.PublicKey{pub}})
	for _, msg := range [][]byte{env.Payload, append([]byte("aegis-ebpf-object-v1\x00"), env.Payload...)} {
		e := env
		e.Sig = ed25519.Sign(priv, msg)
		if _, err := v.Check(e, time.Now()); ReasonOf(err) != ReasonBadSignature {
			t.Errorf("signature without the fleet context: %v, want bad_signature", err)
		}
	}
}

// resign re-signs a payload edited by f, for records a valid signer made
// wrong on purpose.
func resign(t *testing.T, env Envelope, priv ed25519.PrivateKey, f func(m map[string]any)) Envelope {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(env.Payload, &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	p, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	env.Payload = p
	env.Sig = ed25519.Sign(priv, signedMessage(p))
	return env
}

func TestCheckRefusals(t *testing.T) {
	opPub, opKey := newKey(t)
	ctlPub, ctlKey := newKey(t)
	_, strangerKey := newKey(t)
	now := time.Now()
	v, err := NewVerifier(Policy{
		Operators:  []ed25519.PublicKey{opPub},
		Controller: ctlPub,
		MaxTTL:     time.Hour,
		Skew:       time.Minute,
		Broadest:   Broadest{BlockV4: 16, BlockV6: 32, AllowV4: 24, AllowV6: 48},
		Management: []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32")},
	})
	if err != nil {
		t.Fatal(err)
	}
	sign := func(c Change, k ed25519.PrivateKey) Envelope {
		t.Helper()
		env, err := Sign(c, k)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	withTTL := func(c Change, d time.Duration) Change { c.ExpiresAt = c.IssuedAt + d.Nanoseconds(); return c }
	good := sign(block("198.51.100.0/24", now), opKey)

	tests := []struct {
		name string
		env  Envelope
		want string // "" = accepted
	}{
		{"operator block", good, ""},
		{"operator rate", sign(Change{Kind: KindRate, Op: OpPut, Rate: &Rate{Class: "udp", PPS: 100, Burst: 200}, IssuedAt: now.UnixNano()}, opKey), ""},
		{"operator delete", sign(Change{Kind: KindList, Op: OpDelete, List: Allowlist, Prefix: netip.MustParsePrefix("10.0.0.0/8"), IssuedAt: now.UnixNano()}, opKey), ""},
		{"controller promotion", sign(withTTL(block("203.0.113.7/32", now), 30*time.Minute), ctlKey), ""},
		{"unknown key", sign(block("198.51.100.0/24", now), strangerKey), ReasonUnknownKey},
		{"bad signature", func() Envelope { e := good; e.Sig = append([]byte(nil), e.Sig...); e.Sig[0] ^= 1; return e }(), ReasonBadSignature},
		{"payload edited", func() Envelope {
			e := good
			e.Payload = []byte(strings.Replace(string(e.Payload), "198.51.100.0/24", "198.51.101.0/24", 1))
			return e
		}(), ReasonBadSignature},
		{"envelope names another key", func() Envelope {
			e := sign(block("198.51.100.0/24", now), opKey)
			e.KeyID = keyfile.KeyID(ctlPub)
			return e
		}(), ReasonBadSignature},
		{"stored under another key", func() Envelope { e := good; e.StoredKey = "list.block.198-51-101-0_24"; return e }(), ReasonKeyMismatch},
		{"signed key not the subject's", resign(t, good, opKey, func(m map[string]any) { m["key"] = "list.block.198-51-101-0_24" }), ReasonKeyMismatch},
		{"controller rate", sign(Change{Kind: KindRate, Op: OpPut, Rate: &Rate{Class: "syn", PPS: 1}, IssuedAt: now.UnixNano()}, ctlKey), ReasonRole},
		{"controller allow", sign(Change{Kind: KindList, Op: OpPut, List: Allowlist, Prefix: netip.MustParsePrefix("203.0.113.7/32"), IssuedAt: now.UnixNano(), ExpiresAt: now.Add(time.Minute).UnixNano()}, ctlKey), ReasonRole},
		{"controller delete", sign(Change{Kind: KindList, Op: OpDelete, List: Blocklist, Prefix: netip.MustParsePrefix("203.0.113.7/32"), IssuedAt: now.UnixNano()}, ctlKey), ReasonRole},
		{"controller permanent", sign(block("203.0.113.7/32", now), ctlKey), ReasonRole},
		{"controller ttl too long", sign(withTTL(block("203.0.113.7/32", now), 2*time.Hour), ctlKey), ReasonRole},
		{"controller /16", sign(withTTL(block("203.0.0.0/16", now), time.Minute), ctlKey), ReasonRole},
		{"controller /32 v6", sign(withTTL(block("2001:db8::/32", now), time.Minute), ctlKey), ReasonRole},
		{"future", sign(block("198.51.100.0/24", now.Add(2*time.Minute)), opKey), ReasonFuture},
		{"future within skew", sign(block("198.51.100.0/24", now.Add(30*time.Second)), opKey), ""},
		{"expired", sign(withTTL(block("198.51.100.0/24", now.Add(-time.Hour)), 30*time.Minute), opKey), ReasonExpired},
		{"expired within skew", sign(withTTL(block("198.51.100.0/24", now.Add(-time.Hour)), time.Hour-30*time.Second), opKey), ""},
		// The edges of the skew: at it is inside, a nanosecond past it out.
		{"issued at the skew", sign(block("198.51.100.0/24", now.Add(time.Minute)), opKey), ""},
		{"issued a nanosecond past the skew", sign(block("198.51.100.0/24", now.Add(time.Minute+time.Nanosecond)), opKey), ReasonFuture},
		{"expired at the skew", sign(withTTL(block("198.51.100.0/24", now.Add(-time.Hour)), time.Hour-time.Minute), opKey), ""},
		{"expired a nanosecond past the skew", sign(withTTL(block("198.51.100.0/24", now.Add(-time.Hour)), time.Hour-time.Minute-time.Nanosecond), opKey), ReasonExpired},
		{"too broad v4", sign(block("198.0.0.0/8", now), opKey), ReasonTooBroad},
		{"too broad v6", sign(block("2001::/16", now), opKey), ReasonTooBroad},
		{"too broad allow", sign(Change{Kind: KindList, Op: OpPut, List: Allowlist, Prefix: netip.MustParsePrefix("10.0.0.0/16"), IssuedAt: now.UnixNano()}, opKey), ReasonTooBroad},
		{"management", sign(block("192.0.2.0/24", now), opKey), ReasonManagement},
		{"management allowlisted", sign(Change{Kind: KindList, Op: OpPut, List: Allowlist, Prefix: netip.MustParsePrefix("192.0.2.0/24"), IssuedAt: now.UnixNano()}, opKey), ""},
		{"malformed payload", resign(t, good, opKey, func(m map[string]any) { m["op"] = "upsert" }), ReasonMalformed},
		{"unknown field", resign(t, good, opKey, func(m map[string]any) { m["ttl"] = 5 }), ReasonMalformed},
	}
	// The management list as a reload replaces it.
	v.SetManagement([]netip.Prefix{netip.MustParsePrefix("198.51.100.200/32")})
	if _, err := v.Check(good, now); ReasonOf(err) != ReasonManagement {
		t.Errorf("after SetManagement: %v, want a management refusal", err)
	}
	v.SetManagement([]netip.Prefix{netip.MustParsePrefix("192.0.2.10/32")})
	// One key in both roles would sign anything.
	if _, err := NewVerifier(Policy{Operators: []ed25519.PublicKey{opPub, ctlPub}, Controller: ctlPub}); err == nil {
		t.Error("NewVerifier took the controller key as an operator's too")
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := tt.env
			if env.StoredKey == "" {
				var c struct{ Key string }
				json.Unmarshal(env.Payload, &c)
				env.StoredKey = c.Key
			}
			c, err := v.Check(env, now)
			if got := ReasonOf(err); got != tt.want {
				t.Fatalf("Check: reason %q (%v), want %q", got, err, tt.want)
			}
			if err != nil && ReasonOf(err) == "" {
				t.Fatalf("Check returned a non-refusal error: %v", err)
			}
			// An authentic record comes with its change, refused or not,
			// for the follower to order before it judges (others with none).
			if Authentic(err) != (c.Key == env.StoredKey && c.IssuedAt != 0) {
				t.Errorf("Check returned change %q issued %d with %v (authentic %v)", c.Key, c.IssuedAt, err, Authentic(err))
			}
		})
	}
}

func TestNewer(t *testing.T) {
	now := time.Now()
	a, b := block("192.0.2.0/24", now), block("192.0.2.0/24", now.Add(time.Nanosecond))
	if !Newer(b, a) || Newer(a, b) || Newer(a, a) {
		t.Fatal("Newer must order by issued_at, strictly")
	}
}

func TestValidate(t *testing.T) {
	now := time.Now().UnixNano()
	fn := func(f Function) Change { return Change{Kind: KindFunction, Op: OpPut, Func: &f, IssuedAt: now} }
	digest := strings.Repeat("ab", 32)
	tests := []struct {
		name string
		c    Change
		ok   bool
	}{
		{"function", fn(Function{Name: "hello", Digest: digest, Size: 10, Spec: json.RawMessage(`{"route":"/hello"}`)}), true},
		{"function upper-case digest", fn(Function{Name: "hello", Digest: strings.ToUpper(digest), Size: 10}), false},
		{"function no size", fn(Function{Name: "hello", Digest: digest}), false},
		{"function spec not object", fn(Function{Name: "hello", Digest: digest, Size: 1, Spec: json.RawMessage(`[1]`)}), false},
		{"function delete with digest", Change{Kind: KindFunction, Op: OpDelete, Func: &Function{Name: "hello", Digest: digest}, IssuedAt: now}, false},
		{"rate with prefix", Change{Kind: KindRate, Op: OpPut, Rate: &Rate{Class: "syn"}, Prefix: netip.MustParsePrefix("192.0.2.0/24"), IssuedAt: now}, false},
		{"list with rate", Change{Kind: KindList, Op: OpPut, List: Blocklist, Prefix: netip.MustParsePrefix("192.0.2.0/24"), Rate: &Rate{Class: "syn"}, IssuedAt: now}, false},
		{"expiring delete", Change{Kind: KindList, Op: OpDelete, List: Blocklist, Prefix: netip.MustParsePrefix("192.0.2.0/24"), IssuedAt: now, ExpiresAt: now + 1}, false},
		{"expiry before issue", Change{Kind: KindList, Op: OpPut, List: Blocklist, Prefix: netip.MustParsePrefix("192.0.2.0/24"), IssuedAt: now, ExpiresAt: now - 1}, false},
		{"reason control char", Change{Kind: KindList, Op: OpPut, List: Blocklist, Prefix: netip.MustParsePrefix("192.0.2.0/24"), IssuedAt: now, Reason: "a\nb"}, false},
		{"reason too long", Change{Kind: KindList, Op: OpPut, List: Blocklist, Prefix: netip.MustParsePrefix("192.0.2.0/24"), IssuedAt: now, Reason: strings.Repeat("x", MaxReasonLen+1)}, false},
		{"no issue time", Change{Kind: KindList, Op: OpPut, List: Blocklist, Prefix: netip.MustParsePrefix("192.0.2.0/24")}, false},
	}
	_, priv := newKey(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.c
			c.Key, _ = KeyFor(c)
			c.KeyID = strings.Repeat("0", 16)
			if err := c.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate = %v, want ok=%v", err, tt.ok)
			}
			if tt.c.IssuedAt == 0 {
				return // Sign stamps the time itself
			}
			if _, err := Sign(tt.c, priv); (err == nil) != tt.ok {
				t.Fatalf("Sign = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}
