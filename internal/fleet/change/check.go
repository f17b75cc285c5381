package change

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aegis-edge/aegis/internal/keyfile"
)

// Refusal reasons: stable strings, the values of the edge's
// aegis_fleet_rejected_total{reason} label.
const (
	ReasonMalformed    = "malformed"     // does not parse or breaks a field rule
	ReasonUnknownKey   = "unknown_key"   // signer's key is not trusted
	ReasonBadSignature = "bad_signature" // signature does not verify
	ReasonRole         = "role"          // the key may not sign this change
	ReasonKeyMismatch  = "key_mismatch"  // signed key differs from where it is stored
	ReasonExpired      = "expired"       // expired longer ago than the skew
	ReasonFuture       = "future"        // issued further ahead than the skew
	ReasonTooBroad     = "too_broad"     // prefix broader than the edge allows
	ReasonManagement   = "management"    // blocks a management address
	ReasonListFull     = "list_full"     // the node's list is at its limit (the node decides)
	ReasonDigest       = "digest"        // module missing or its digest differs from the signed one
)

// Reasons are all refusal reasons, for registering counter labels.
var Reasons = []string{
	ReasonMalformed, ReasonUnknownKey, ReasonBadSignature, ReasonRole, ReasonKeyMismatch,
	ReasonExpired, ReasonFuture, ReasonTooBroad, ReasonManagement, ReasonListFull, ReasonDigest,
}

// Refusal is why an edge refused a change.
type Refusal struct {
	Reason string
	Err    error
}

func (r *Refusal) Error() string { return "fleet change refused (" + r.Reason + "): " + r.Err.Error() }
func (r *Refusal) Unwrap() error { return r.Err }

// Refuse builds a refusal, for the checks made outside Check (list_full
// by the node, digest by the follower).
func Refuse(reason string, format string, a ...any) *Refusal {
	return &Refusal{Reason: reason, Err: fmt.Errorf(format, a...)}
}

// ReasonOf returns the refusal reason of err, or "" if it is no refusal.
func ReasonOf(err error) string {
	var r *Refusal
	if errors.As(err, &r) {
		return r.Reason
	}
	return ""
}

// Broadest is the broadest prefix (shortest length) a fleet entry may
// carry, per list and family; 0 allows any.
type Broadest struct {
	BlockV4, BlockV6, AllowV4, AllowV6 int
}

// Controller's fixed bounds: it promotes automatic blocks of single
// sources, never ranges broader than these.
const (
	ControllerBroadestV4 = 24
	ControllerBroadestV6 = 48
	// DefaultMaxTTL bounds a controller promotion's lifetime when the
	// policy gives none.
	DefaultMaxTTL = 24 * time.Hour
	// DefaultSkew is the clock difference tolerated when Policy.Skew is 0.
	DefaultSkew = 5 * time.Minute
)

// Policy is what an edge trusts.
type Policy struct {
	// Operators may sign any change.
	Operators []ed25519.PublicKey
	// Controller, if set, may sign automatic-block promotions only.
	Controller ed25519.PublicKey
	// MaxTTL bounds a controller promotion (expires_at - issued_at);
	// DefaultMaxTTL when 0.
	MaxTTL time.Duration
	// Skew is the tolerated clock difference for future-dated and expired
	// changes; DefaultSkew when 0.
	Skew     time.Duration
	Broadest Broadest
	// Management prefixes may not be blocked by the fleet.
	Management []netip.Prefix
}

type role int

const (
	roleOperator role = iota + 1
	roleController
)

// Verifier checks records against a Policy. It is safe for concurrent use.
type Verifier struct {
	p    Policy
	keys map[string]trustedKey
	// mgmt is p.Management, replaced whole by SetManagement while records
	// are checked.
	mgmt atomic.Pointer[[]netip.Prefix]

	mu    sync.Mutex
	roots map[rootKey]struct{}
}

// Session checks records for one goroutine. The records of a batch, taken
// in their batch's order, share the upper nodes of their proofs: a session
// keeps the node hash it last computed at each depth of a proof and reuses
// it when the next record's pair of children there is the same (both
// compared whole), and the batch signature that last verified. A batch's
// records then cost about one node hash each and take no lock. What a
// session reuses is only what gave the same answer before, so whether a
// record verifies never depends on what was checked before it.
type Session struct {
	v        *Verifier
	nodes    [maxProofDepth]pathNode
	lastRoot rootKey
	hasRoot  bool
}

type pathNode struct {
	l, r, h [sha256.Size]byte
	set     bool
}

// maxProofDepth bounds a proof's length: a batch's size is a uint32.
const maxProofDepth = 32

// Session starts a session on v.
func (v *Verifier) Session() *Session { return &Session{v: v} }

// Check is Verifier.Check, reusing what the session computed before.
func (s *Session) Check(env Envelope, now time.Time) (Change, error) {
	return s.v.check(env, now, s)
}

func (s *Session) nodeHash(depth int, l, r [sha256.Size]byte) [sha256.Size]byte {
	if depth >= maxProofDepth { // rootFromPath refuses such a path first
		return nodeHash(l, r)
	}
	n := &s.nodes[depth]
	if !n.set || n.l != l || n.r != r {
		n.l, n.r, n.h, n.set = l, r, nodeHash(l, r), true
	}
	return n.h
}

// verify checks env's signature: over the payload, or over the root its
// batch proof leads to. Roots that verified are remembered (a bounded
// set), so a batch's other records cost hashes, not signatures; a session
// s, if given, also spares most of those hashes (Session). Both only save
// recomputing what gave the same answer before (a remembered root holds
// the exact signature bytes that verified).
func (v *Verifier) verify(key ed25519.PublicKey, env Envelope, s *Session) error {
	if env.Batch == nil {
		if !ed25519.Verify(key, signedMessage(env.Payload), env.Sig) {
			return fmt.Errorf("signature does not verify with key %s", env.KeyID)
		}
		return nil
	}
	hash := func(_ int, l, r [sha256.Size]byte) [sha256.Size]byte { return nodeHash(l, r) }
	if s != nil {
		hash = s.nodeHash
	}
	root, err := rootFromPath(leafHash(env.Payload), env.Batch, hash)
	if err != nil {
		return err
	}
	if len(env.Sig) != ed25519.SignatureSize {
		return fmt.Errorf("batch signature of %d bytes", len(env.Sig))
	}
	rk := rootKey{keyID: env.KeyID, size: env.Batch.Size, root: root, sig: [ed25519.SignatureSize]byte(env.Sig)}
	if s != nil && s.hasRoot && s.lastRoot == rk {
		return nil
	}
	v.mu.Lock()
	_, ok := v.roots[rk]
	v.mu.Unlock()
	if !ok {
		if !ed25519.Verify(key, batchMessage(env.Batch.Size, root), env.Sig) {
			return fmt.Errorf("batch signature does not verify with key %s", env.KeyID)
		}
		v.mu.Lock()
		if len(v.roots) >= maxRoots {
			clear(v.roots) // batches arrive together; an old root costs one verification again
		}
		v.roots[rk] = struct{}{}
		v.mu.Unlock()
	}
	if s != nil {
		s.lastRoot, s.hasRoot = rk, true
	}
	return nil
}

// maxRoots bounds the verified batch roots a Verifier remembers.
const maxRoots = 4096

// rootKey is a verified batch signature: the signature is part of it, so
// a record carrying a verified root with other signature bytes is checked
// (and refused) as it would be by an edge that never saw the batch.
type rootKey struct {
	keyID string
	size  uint32
	root  [32]byte
	sig   [ed25519.SignatureSize]byte
}

type trustedKey struct {
	key  ed25519.PublicKey
	role role
}

// NewVerifier returns a verifier for p. A key may not be both an
// operator's and the controller's: the controller's role would be lost.
func NewVerifier(p Policy) (*Verifier, error) {
	v := &Verifier{p: p, keys: map[string]trustedKey{}, roots: map[rootKey]struct{}{}}
	v.SetManagement(p.Management)
	if v.p.MaxTTL <= 0 {
		v.p.MaxTTL = DefaultMaxTTL
	}
	if v.p.Skew <= 0 {
		v.p.Skew = DefaultSkew
	}
	if p.Controller != nil {
		if len(p.Controller) != ed25519.PublicKeySize {
			return nil, errors.New("controller key is not an ed25519 public key")
		}
		v.keys[keyfile.KeyID(p.Controller)] = trustedKey{p.Controller, roleController}
	}
	for _, k := range p.Operators {
		if len(k) != ed25519.PublicKeySize {
			return nil, errors.New("operator key is not an ed25519 public key")
		}
		if p.Controller != nil && k.Equal(p.Controller) {
			return nil, errors.New("the controller key is also listed as an operator's: it would sign anything")
		}
		v.keys[keyfile.KeyID(k)] = trustedKey{k, roleOperator}
	}
	return v, nil
}

// SetManagement replaces the management prefixes (a reloaded
// admin.management_addrs): records checked from then on may not block
// them.
func (v *Verifier) SetManagement(prefixes []netip.Prefix) {
	m := slices.Clone(prefixes)
	v.mgmt.Store(&m)
}

// Check verifies env and returns its change, or a *Refusal. The order is
// fixed so one record always gets the same reason: key, signature,
// payload, storage key, role, time, breadth, management. A record refused
// for its content (Authentic: role, time, breadth, management) comes with
// its change as well: a follower first orders it among its key's records,
// so that an older one is a no-op rather than a refusal (nothing counted
// or audited), and an expired put still supersedes the records of its key
// before it.
func (v *Verifier) Check(env Envelope, now time.Time) (Change, error) {
	return v.check(env, now, nil)
}

func (v *Verifier) check(env Envelope, now time.Time, s *Session) (Change, error) {
	tk, ok := v.keys[env.KeyID]
	if !ok {
		return Change{}, Refuse(ReasonUnknownKey, "key %s is not trusted", env.KeyID)
	}
	if err := v.verify(tk.key, env, s); err != nil {
		return Change{}, &Refusal{Reason: ReasonBadSignature, Err: err}
	}
	c, err := ParsePayload(env.Payload)
	if errors.Is(err, errKeyMismatch) {
		return Change{}, &Refusal{Reason: ReasonKeyMismatch, Err: err}
	}
	if err != nil {
		return Change{}, &Refusal{Reason: ReasonMalformed, Err: err}
	}
	if c.KeyID != env.KeyID {
		return Change{}, Refuse(ReasonBadSignature, "payload names key %s, envelope %s", c.KeyID, env.KeyID)
	}
	if c.Key != env.StoredKey {
		return Change{}, Refuse(ReasonKeyMismatch, "signed for key %q, stored under %q", c.Key, env.StoredKey)
	}
	if tk.role == roleController {
		c.ByController = true
		if err := v.controllerMay(c); err != nil {
			return c, &Refusal{Reason: ReasonRole, Err: err}
		}
	}
	skew := v.p.Skew.Nanoseconds()
	if c.IssuedAt > now.UnixNano()+skew {
		return c, Refuse(ReasonFuture, "issued %s, beyond the skew of %s", time.Unix(0, c.IssuedAt).UTC().Format(time.RFC3339Nano), v.p.Skew)
	}
	if c.ExpiresAt != 0 && c.ExpiresAt < now.UnixNano()-skew {
		return c, Refuse(ReasonExpired, "expired %s", time.Unix(0, c.ExpiresAt).UTC().Format(time.RFC3339Nano))
	}
	if c.Kind == KindList && c.Op == OpPut {
		if min := v.broadest(c.List, c.Prefix.Addr().Is4()); c.Prefix.Bits() < min {
			return c, Refuse(ReasonTooBroad, "%s is broader than /%d", c.Prefix, min)
		}
		if c.List == Blocklist {
			for _, m := range *v.mgmt.Load() {
				if m.Overlaps(c.Prefix) {
					return c, Refuse(ReasonManagement, "%s covers management address %s", c.Prefix, m)
				}
			}
		}
	}
	return c, nil
}

// Authentic reports whether a record Check refused with err was still
// signed by a trusted key for where it is stored: refused only by the
// rules on what it says (role, time, breadth, management).
func Authentic(err error) bool {
	switch ReasonOf(err) {
	case ReasonMalformed, ReasonUnknownKey, ReasonBadSignature, ReasonKeyMismatch:
		return false
	}
	return true
}

func (v *Verifier) broadest(l List, is4 bool) int {
	b := v.p.Broadest
	switch {
	case l == Blocklist && is4:
		return b.BlockV4
	case l == Blocklist:
		return b.BlockV6
	case is4:
		return b.AllowV4
	}
	return b.AllowV6
}

// controllerMay enforces the controller's role: blocklist puts that
// expire within MaxTTL, for prefixes no broader than /24 or /48.
func (v *Verifier) controllerMay(c Change) error {
	if c.Kind != KindList || c.List != Blocklist || c.Op != OpPut {
		return fmt.Errorf("the controller key may only add blocklist entries, not %s %s", c.Kind, c.Op)
	}
	if c.ExpiresAt == 0 || time.Duration(c.ExpiresAt-c.IssuedAt) > v.p.MaxTTL {
		return fmt.Errorf("a controller block must expire within %s", v.p.MaxTTL)
	}
	min := ControllerBroadestV6
	if c.Prefix.Addr().Is4() {
		min = ControllerBroadestV4
	}
	if c.Prefix.Bits() < min {
		return fmt.Errorf("a controller block may not be broader than /%d", min)
	}
	return nil
}
