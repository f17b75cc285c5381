package change

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"time"

	"github.com/aegis-edge/aegis/internal/keyfile"
)

// BatchContext starts the message a batch signature covers, so a batch
// root can never pass for a single payload's signature or the reverse.
const BatchContext = "aegis-fleet-batch-v1\x00"

// MaxBatch bounds the records one batch signature covers (and so the
// length of a proof: at most 20 hashes).
const MaxBatch = 1 << 20

// maxPathLen is the longest audit path a batch of MaxBatch records needs.
var maxPathLen = bits.Len32(MaxBatch)

// Batch is a record's proof of membership in a signed batch: its index,
// the batch's size and the audit path of its leaf in the batch's Merkle
// tree (RFC 9162 §2.1: leaves are SHA-256(0x00 || payload), nodes
// SHA-256(0x01 || left || right)). The envelope's signature then covers
// BatchContext, the size (8 bytes, big endian) and the tree's root.
//
// One ed25519 verification costs about as much as a hundred SHA-256
// hashes of a record, so a verifier that has checked a root once checks
// the batch's other records with their paths alone: a 100,000-entry
// import costs about a hundred verifications instead of 100,000.
type Batch struct {
	Index uint32
	Size  uint32
	Path  [][sha256.Size]byte
}

type wireBatch struct {
	Index uint32   `json:"index"`
	Size  uint32   `json:"size"`
	Path  [][]byte `json:"path,omitempty"`
	// hashes is Path as decodeCanonical reads it, straight into arrays
	// (and Path nil); encoding/json leaves it alone.
	hashes [][sha256.Size]byte
}

func leafHash(payload []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(payload)
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

func nodeHash(l, r [sha256.Size]byte) [sha256.Size]byte {
	var buf [1 + 2*sha256.Size]byte
	buf[0] = 1
	copy(buf[1:], l[:])
	copy(buf[1+sha256.Size:], r[:])
	return sha256.Sum256(buf[:])
}

// tree computes RFC 9162 subtree hashes, memoised by range, so every
// leaf's path costs O(log n) after the first.
type tree struct {
	leaves [][sha256.Size]byte
	memo   map[[2]int][sha256.Size]byte
}

// split is the largest power of two smaller than n (n > 1).
func split(n int) int { return 1 << (bits.Len(uint(n-1)) - 1) }

func (t *tree) hash(lo, hi int) [sha256.Size]byte {
	if hi-lo == 1 {
		return t.leaves[lo]
	}
	if h, ok := t.memo[[2]int{lo, hi}]; ok {
		return h
	}
	k := split(hi - lo)
	h := nodeHash(t.hash(lo, lo+k), t.hash(lo+k, hi))
	t.memo[[2]int{lo, hi}] = h
	return h
}

func (t *tree) path(m, lo, hi int) [][sha256.Size]byte {
	if hi-lo == 1 {
		return nil
	}
	k := split(hi - lo)
	if m < lo+k {
		return append(t.path(m, lo, lo+k), t.hash(lo+k, hi))
	}
	return append(t.path(m, lo+k, hi), t.hash(lo, lo+k))
}

// rootFromPath recomputes the root from a leaf and its audit path (RFC
// 9162 §2.1.3.2), failing on a path that does not fit index and size.
// hash computes an interior node from its children, given the node's
// depth in the path (nodeHash, or a session's memo of it).
func rootFromPath(leaf [sha256.Size]byte, b *Batch, hash func(depth int, l, r [sha256.Size]byte) [sha256.Size]byte) ([sha256.Size]byte, error) {
	if b.Size == 0 || b.Index >= b.Size {
		return leaf, errors.New("batch index out of range")
	}
	fn, sn := uint64(b.Index), uint64(b.Size-1)
	r := leaf
	for depth, p := range b.Path {
		if sn == 0 {
			return leaf, errors.New("batch proof too long")
		}
		if fn&1 == 1 || fn == sn {
			r = hash(depth, p, r)
			if fn&1 == 0 {
				for fn&1 == 0 && fn != 0 {
					fn >>= 1
					sn >>= 1
				}
			}
		} else {
			r = hash(depth, r, p)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 {
		return leaf, errors.New("batch proof too short")
	}
	return r, nil
}

func batchMessage(size uint32, root [sha256.Size]byte) []byte {
	msg := make([]byte, 0, len(BatchContext)+8+sha256.Size)
	msg = append(msg, BatchContext...)
	msg = binary.BigEndian.AppendUint64(msg, uint64(size))
	return append(msg, root[:]...)
}

// SignBatch signs changes with one signature and returns one envelope
// per change, in order, each verifiable on its own. Each change is
// completed and validated as Sign does; two changes for one key are
// refused (only one could be stored).
func SignBatch(changes []Change, key ed25519.PrivateKey) ([]Envelope, error) {
	return signBatch(changes, key, time.Now().UnixNano())
}

// signBatch is SignBatch with the clock's reading given: now completes
// changes without a time of issue.
func signBatch(changes []Change, key ed25519.PrivateKey, now int64) ([]Envelope, error) {
	if len(changes) == 0 || len(changes) > MaxBatch {
		return nil, fmt.Errorf("a batch holds 1 to %d changes, not %d", MaxBatch, len(changes))
	}
	id, err := signerID(key)
	if err != nil {
		return nil, err
	}
	t := &tree{memo: map[[2]int][sha256.Size]byte{}}
	envs := make([]Envelope, len(changes))
	seen := make(map[string]bool, len(changes))
	for i, c := range changes {
		if err := c.complete(id, now); err != nil {
			return nil, fmt.Errorf("change %d: %w", i, err)
		}
		if seen[c.Key] {
			return nil, fmt.Errorf("change %d: a second change for %s in one batch", i, c.Key)
		}
		seen[c.Key] = true
		payload, err := json.Marshal(c)
		if err != nil {
			return nil, fmt.Errorf("encoding change %d: %w", i, err)
		}
		envs[i] = Envelope{KeyID: id, Payload: payload, StoredKey: c.Key}
		t.leaves = append(t.leaves, leafHash(payload))
	}
	n := len(changes)
	root := t.hash(0, n)
	sig := ed25519.Sign(key, batchMessage(uint32(n), root))
	for i := range envs {
		envs[i].Sig = sig
		envs[i].Batch = &Batch{Index: uint32(i), Size: uint32(n), Path: t.path(i, 0, n)}
	}
	return envs, nil
}

// ImportBatch is how many changes SignImport signs with one signature.
// Each record carries its audit path, one hash per doubling of the batch,
// and each batch costs an edge one signature check: 256 makes a record of
// a /32 about 750 bytes (a single batch of 100,000 would make it about
// 1,200, and every edge would hash 17 nodes a record instead of 8) and an
// import of 100,000 about 400 signature checks an edge (some 25 ms).
const ImportBatch = 256

// SignImport signs changes for an import: in batches of ImportBatch, each
// with its own signature (SignBatch), the envelopes in order. Two changes
// for one key are refused, in one batch or two.
func SignImport(changes []Change, key ed25519.PrivateKey) ([]Envelope, error) {
	im, err := PrepareImport(len(changes), func(i int) Change { return changes[i] }, key)
	if err != nil {
		return nil, err
	}
	envs := make([]Envelope, 0, len(changes))
	err = im.Sign(key, func(b []Envelope) error {
		envs = append(envs, b...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return envs, nil
}

// An Import is an import's changes, every one checked, with the storage
// keys they go under, ready to be signed batch by batch. The changes are
// built on demand (at) instead of held: an import of a netset needs its
// prefixes, not 100,000 Change values of 200 bytes each, which cost the
// command a quarter of a second in page faults alone before it could
// publish anything.
type Import struct {
	n    int
	at   func(int) Change
	keys []string
	id   string
	now  int64 // the time of issue of changes without one, checked and signed alike
}

// PrepareImport checks the n changes at returns (completed as Sign
// completes them) and that no two go under one key, so that a bad line is
// found before the first batch is published. at must return the same
// change for an index every time.
func PrepareImport(n int, at func(int) Change, key ed25519.PrivateKey) (*Import, error) {
	id, err := signerID(key)
	if err != nil {
		return nil, err
	}
	now := time.Now().UnixNano()
	im := &Import{n: n, at: at, keys: make([]string, n), id: id, now: now}
	seen := make(map[string]bool, n)
	for i := range n {
		c := at(i)
		if err := c.complete(id, now); err != nil {
			return nil, fmt.Errorf("change %d: %w", i, err)
		}
		if seen[c.Key] {
			return nil, fmt.Errorf("change %d: a second change for %s in one import", i, c.Key)
		}
		seen[c.Key] = true
		im.keys[i] = c.Key
	}
	return im, nil
}

// Keys is the storage key of each change, in order.
func (im *Import) Keys() []string { return im.keys }

// Sign signs the import in batches of ImportBatch and hands each batch
// to emit as soon as it is signed, so that an importer publishes the
// first batches while it signs the rest. It stops at emit's first error.
// key must be the one PrepareImport was given.
func (im *Import) Sign(key ed25519.PrivateKey, emit func([]Envelope) error) error {
	if id, err := signerID(key); err != nil || id != im.id {
		return errors.New("signing an import with another key than it was prepared for")
	}
	batch := make([]Change, 0, ImportBatch)
	for done := 0; done < im.n; {
		m := min(im.n-done, ImportBatch)
		batch = batch[:0]
		for i := done; i < done+m; i++ {
			batch = append(batch, im.at(i))
		}
		b, err := signBatch(batch, key, im.now)
		if err != nil {
			return fmt.Errorf("batch from change %d: %w", done, err)
		}
		for i, e := range b {
			if e.StoredKey != im.keys[done+i] {
				return fmt.Errorf("change %d: signed for %s, prepared for %s", done+i, e.StoredKey, im.keys[done+i])
			}
		}
		if err := emit(b); err != nil {
			return err
		}
		done += m
	}
	return nil
}

// complete fills in what a signer adds to a change (its key id, the time
// of issue if unset, the storage key) and validates the result.
func (c *Change) complete(keyID string, now int64) error {
	c.KeyID = keyID
	if c.IssuedAt == 0 {
		c.IssuedAt = now
	}
	if c.Key == "" {
		k, err := KeyFor(*c)
		if err != nil {
			return err
		}
		c.Key = k
	}
	return c.Validate()
}

// signerID is the key id of a signing key, checked to be one.
func signerID(key ed25519.PrivateKey) (string, error) {
	pub, ok := key.Public().(ed25519.PublicKey)
	if !ok || len(key) != ed25519.PrivateKeySize {
		return "", errors.New("signing key is not an ed25519 private key")
	}
	return keyfile.KeyID(pub), nil
}
