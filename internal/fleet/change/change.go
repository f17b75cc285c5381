package change

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Kind names what a change is about.
type Kind string

// The kinds of change.
const (
	KindList     Kind = "list"     // one allow- or blocklist entry
	KindRate     Kind = "rate"     // one rate-limit class's setting
	KindFunction Kind = "function" // one function's module digest, route and limits
)

// Op is what a change does to its key.
type Op string

// The operations. A delete is a signed tombstone.
const (
	OpPut    Op = "put"
	OpDelete Op = "delete"
)

// List names an address list, spelled as the node's store spells it.
type List string

// The address lists.
const (
	Blocklist List = "block"
	Allowlist List = "allow"
)

// Limits of a payload's fields.
const (
	// MaxReasonLen matches the node store's limit on an entry's reason.
	MaxReasonLen = 256
	// MaxSpecLen bounds a function's route and limits (functions.Spec JSON).
	MaxSpecLen = 8 << 10
	// MaxRecordLen bounds an encoded envelope; anything longer is refused
	// before it is parsed.
	MaxRecordLen = 32 << 10
)

// Rate is a rate-limit class's setting, as `aegis rate` takes it.
type Rate struct {
	Class string `json:"class"` // syn, udp or icmp
	PPS   uint32 `json:"pps,omitempty"`
	Burst uint32 `json:"burst,omitempty"`
}

// Function is a deployed function: its module (by digest, in the fleet's
// object store) and its route and limits.
type Function struct {
	Name string `json:"name"`
	// Digest is the hex SHA-256 of the module, as the node's store names
	// modules. Empty in a delete.
	Digest string `json:"digest,omitempty"`
	Size   int64  `json:"size,omitempty"`
	// Spec is the deployer's functions.Spec (route, fuel, timeout, memory,
	// allowed hosts) as JSON, decoded by the node.
	Spec json.RawMessage `json:"spec,omitempty"`
}

// Change is one signed change's payload.
type Change struct {
	Kind Kind `json:"kind"`
	Op   Op   `json:"op"`
	// Key is the storage key the change belongs under: KeyFor(c).
	Key string `json:"key"`

	List   List         `json:"list,omitempty"`
	Prefix netip.Prefix `json:"prefix,omitzero"`
	Rate   *Rate        `json:"rate,omitempty"`
	Func   *Function    `json:"function,omitempty"`

	Reason string `json:"reason,omitempty"`
	// IssuedAt is the signer's clock at signing, Unix ns: the ordering key.
	IssuedAt int64 `json:"issued_at"`
	// ExpiresAt is when a list entry stops applying, Unix ns, absolute; 0
	// is permanent. Only list puts carry one.
	ExpiresAt int64 `json:"expires_at,omitempty"`
	// KeyID names the signer's public key (keyfile.KeyID).
	KeyID string `json:"key_id"`

	// Module is the function's module, set by the follower once it has
	// fetched it and checked its digest. Not part of the signed payload.
	Module []byte `json:"-"`
	// ByController is set by Check when the controller key signed the
	// change (an automatic-block promotion). Not part of the payload.
	ByController bool `json:"-"`
	// Reconciled marks a delete the follower made up during a full
	// reconcile: the hub no longer holds this key. Not signed; IssuedAt is
	// the one last applied.
	Reconciled bool `json:"-"`
}

var edgeName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_-]{0,62}$`)

// ValidEdgeName reports whether name may name an edge or a bus user: 1 to
// 63 letters, digits, '-' and '_', starting with a letter or digit (it is
// a KV key, a subject token and a bus user name).
func ValidEdgeName(name string) error {
	if !edgeName.MatchString(name) {
		return fmt.Errorf("invalid edge name %q: use 1-63 characters a-z, A-Z, 0-9, '-', '_', starting with a letter or digit", name)
	}
	return nil
}

// ErrMalformed is returned (wrapped) for a record or payload that does not
// parse or breaks a field rule.
var ErrMalformed = errors.New("malformed fleet change")

func malformed(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, a...))
}

// Classes are the rate-limit classes.
var Classes = []string{"syn", "udp", "icmp"}

var functionName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// KeyFor returns the storage key of the change's subject:
//
//	list.<block|allow>.<address>_<bits>   (198-51-100-0_24, 2001-db8--_48)
//	rate.<class>
//	fn.<name>
//
// NATS KV keys allow only [-/_=.a-zA-Z0-9] and '.' separates tokens, so
// an address's '.' and ':' become '-'. The key is a function of the
// subject alone, so every signer writes a subject under the same key.
func KeyFor(c Change) (string, error) {
	var buf [80]byte
	key, err := appendKey(buf[:0], &c)
	if err != nil {
		return "", err
	}
	return string(key), nil
}

// appendKey appends KeyFor's key to dst; Validate compares it without
// allocating a string per record.
func appendKey(dst []byte, c *Change) ([]byte, error) {
	switch c.Kind {
	case KindList:
		if c.List != Blocklist && c.List != Allowlist {
			return nil, malformed("unknown list %q", c.List)
		}
		if err := validPrefix(c.Prefix); err != nil {
			return nil, err
		}
		dst = append(append(append(dst, "list."...), c.List...), '.')
		addr := len(dst)
		dst = c.Prefix.Addr().AppendTo(dst)
		for i := addr; i < len(dst); i++ {
			if dst[i] == '.' || dst[i] == ':' {
				dst[i] = '-'
			}
		}
		return strconv.AppendInt(append(dst, '_'), int64(c.Prefix.Bits()), 10), nil
	case KindRate:
		if c.Rate == nil || !validClass(c.Rate.Class) {
			return nil, malformed("rate change needs a class of syn, udp or icmp")
		}
		return append(append(dst, "rate."...), c.Rate.Class...), nil
	case KindFunction:
		if c.Func == nil || !functionName.MatchString(c.Func.Name) {
			return nil, malformed("function change needs a name of 1-63 characters a-z, 0-9, '-', '_'")
		}
		return append(append(dst, "fn."...), c.Func.Name...), nil
	}
	return nil, malformed("unknown kind %q", c.Kind)
}

func validPrefix(p netip.Prefix) error {
	if !p.IsValid() {
		return malformed("invalid prefix")
	}
	if p.Addr().Is4In6() {
		return malformed("IPv4-mapped IPv6 prefix %s: use the IPv4 form", p)
	}
	if p.Addr().Zone() != "" {
		return malformed("prefix %s has a zone", p)
	}
	if p.Masked() != p {
		return malformed("prefix %s is not canonical (%s)", p, p.Masked())
	}
	return nil
}

func validClass(c string) bool {
	for _, k := range Classes {
		if c == k {
			return true
		}
	}
	return false
}

// Validate checks the payload's field rules: known kind and op, the fields
// the kind needs and no others, a canonical prefix, the key KeyFor gives,
// a bounded printable reason, a key id and sane times.
func (c *Change) Validate() error {
	if c.Op != OpPut && c.Op != OpDelete {
		return malformed("unknown op %q", c.Op)
	}
	var buf [80]byte
	key, err := appendKey(buf[:0], c)
	if err != nil {
		return err
	}
	if c.Key != string(key) {
		return fmt.Errorf("%w: signed key %q, the change's subject is %q", errKeyMismatch, c.Key, key)
	}
	switch c.Kind {
	case KindList:
		if c.Rate != nil || c.Func != nil {
			return malformed("list change carries a rate or function")
		}
	case KindRate:
		if c.List != "" || c.Prefix.IsValid() || c.Func != nil {
			return malformed("rate change carries a list, prefix or function")
		}
	case KindFunction:
		if c.List != "" || c.Prefix.IsValid() || c.Rate != nil {
			return malformed("function change carries a list, prefix or rate")
		}
		if c.Op == OpPut {
			if len(c.Func.Digest) != 64 || strings.ToLower(c.Func.Digest) != c.Func.Digest {
				return malformed("function digest must be 64 lower-case hex digits")
			}
			if _, err := hex.DecodeString(c.Func.Digest); err != nil {
				return malformed("function digest must be 64 lower-case hex digits")
			}
			if c.Func.Size <= 0 {
				return malformed("function module size must be positive")
			}
			if len(c.Func.Spec) > MaxSpecLen {
				return malformed("function spec is %d bytes, limit %d", len(c.Func.Spec), MaxSpecLen)
			}
			if len(c.Func.Spec) > 0 && !bytes.HasPrefix(bytes.TrimSpace(c.Func.Spec), []byte("{")) {
				return malformed("function spec must be a JSON object")
			}
		} else if c.Func.Digest != "" || c.Func.Size != 0 || len(c.Func.Spec) != 0 {
			return malformed("function delete carries a module or spec")
		}
	}
	if len(c.Reason) > MaxReasonLen {
		return malformed("reason is %d bytes, limit %d", len(c.Reason), MaxReasonLen)
	}
	if !utf8.ValidString(c.Reason) {
		return malformed("reason is not valid UTF-8")
	}
	for _, r := range c.Reason {
		if unicode.IsControl(r) {
			return malformed("reason contains control character %U", r)
		}
	}
	if c.IssuedAt <= 0 {
		return malformed("issued_at must be positive")
	}
	if c.ExpiresAt != 0 {
		if c.Kind != KindList || c.Op != OpPut {
			return malformed("only a list put may expire")
		}
		if c.ExpiresAt <= c.IssuedAt {
			return malformed("expires_at is not after issued_at")
		}
	}
	if !validKeyID(c.KeyID) {
		return malformed("key_id must be 16 lower-case hex digits")
	}
	return nil
}

// errKeyMismatch marks Validate's failure that Check reports as
// ReasonKeyMismatch rather than ReasonMalformed.
var errKeyMismatch = errors.New("key mismatch")

func validKeyID(id string) bool {
	if len(id) != 16 || strings.ToLower(id) != id {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// ParsePayload decodes and validates a change's payload: strict JSON (no
// unknown fields, nothing after the object).
func ParsePayload(data []byte) (Change, error) {
	if len(data) > MaxRecordLen {
		return Change{}, malformed("%d bytes, limit %d", len(data), MaxRecordLen)
	}
	c, ok := parseCanonicalList(data)
	if !ok {
		c = Change{}
		if err := strictJSON(data, &c); err != nil {
			return Change{}, err
		}
	}
	if err := c.Validate(); err != nil {
		return Change{}, err
	}
	return c, nil
}

func strictJSON(data []byte, v any) error {
	if len(data) > MaxRecordLen {
		return malformed("%d bytes, limit %d", len(data), MaxRecordLen)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return malformed("%v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return malformed("data after the JSON object")
	}
	return nil
}

// Newer reports whether a supersedes b for the same key: it was issued
// later. Equal times do not supersede, so a replay is a no-op.
func Newer(a, b Change) bool { return a.IssuedAt > b.IssuedAt }

// ParseKey returns the subject a storage key names: a Change with Kind,
// Key and List and Prefix, Rate.Class or Func.Name set, and no op or
// times. The follower uses it to delete what a full reconcile found gone.
func ParseKey(key string) (Change, error) {
	c := Change{Key: key}
	kind, rest, _ := strings.Cut(key, ".")
	switch kind {
	case "list":
		list, enc, _ := strings.Cut(rest, ".")
		addr, bits, ok := strings.Cut(enc, "_")
		if !ok {
			return Change{}, malformed("key %q: no prefix length", key)
		}
		// An IPv4 address has exactly three separators and no "::"; an
		// IPv6 one has seven or a "::" (4-in-6 forms are refused).
		sep := ":"
		if strings.Count(addr, "-") == 3 && !strings.Contains(addr, "--") {
			sep = "."
		}
		p, err := netip.ParsePrefix(strings.ReplaceAll(addr, "-", sep) + "/" + bits)
		if err != nil {
			return Change{}, malformed("key %q: %v", key, err)
		}
		c.Kind, c.List, c.Prefix = KindList, List(list), p
	case "rate":
		c.Kind, c.Rate = KindRate, &Rate{Class: rest}
	case "fn":
		c.Kind, c.Func = KindFunction, &Function{Name: rest}
	default:
		return Change{}, malformed("key %q: unknown kind", key)
	}
	if k, err := KeyFor(c); err != nil || k != key {
		return Change{}, malformed("%q is not a storage key", key)
	}
	return c, nil
}
