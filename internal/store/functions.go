package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/aegis-edge/aegis/internal/lists"
	bolt "go.etcd.io/bbolt"
)

// ErrNotFound is returned (wrapped) when a named function does not exist;
// it is the one "not found" every package wraps.
var ErrNotFound = lists.ErrNotFound

// ErrKVQuota is returned (wrapped) by KVPut when the write would take the
// function's key-value storage over its quota; nothing was written.
var ErrKVQuota = errors.New("key-value storage quota exceeded")

// Function is a deployed edge function as persisted: its route and settings
// and the digest of its module, stored once in the modules bucket.
type Function struct {
	Name string `json:"name"`
	// Version counts deploys of this name, from 1.
	Version uint64 `json:"version"`
	Route   string `json:"route"`
	// Digest is the hex SHA-256 of the module as uploaded.
	Digest   string    `json:"digest"`
	Size     int64     `json:"size"`
	Deployed time.Time `json:"deployed"`
	// DeployedBy is who deployed this version (the audit's actor): a
	// fleet removal takes only a fleet's deployment. Empty in records
	// from before it was kept.
	DeployedBy string `json:"deployed_by,omitempty"`
	// Settings is the deployer's per-function configuration (limits, allowed
	// hosts), opaque to the store.
	Settings json.RawMessage `json:"settings,omitempty"`
}

var functionName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ValidFunctionName reports whether name may name a function: 1 to 63
// characters of lower-case letters, digits, '-' and '_', starting with a
// letter or digit. Names end up in log lines, URLs and bucket keys, so
// nothing else is accepted.
func ValidFunctionName(name string) error {
	if !functionName.MatchString(name) {
		return fmt.Errorf("invalid function name %q: use 1-63 characters a-z, 0-9, '-', '_', starting with a letter or digit", name)
	}
	return nil
}

var (
	bucketFunctions = []byte("functions")
	bucketModules   = []byte("modules")
	bucketKV        = []byte("kv")
	bucketKVUsage   = []byte("kv_usage")
)

func functionBuckets() [][]byte {
	return [][]byte{bucketFunctions, bucketModules, bucketKV, bucketKVUsage}
}

// ModuleDigest returns the hex SHA-256 under which a module is stored.
func ModuleDigest(module []byte) string {
	sum := sha256.Sum256(module)
	return hex.EncodeToString(sum[:])
}

// PutFunction stores f with module in one transaction: the version is one
// more than the stored one (1 for a new name), the digest and size are
// computed from module, and a module no longer used by any function is
// deleted. It returns the stored record.
func (s *Store) PutFunction(f Function, module []byte) (Function, error) {
	if err := ValidFunctionName(f.Name); err != nil {
		return Function{}, err
	}
	f.Digest = ModuleDigest(module)
	f.Size = int64(len(module))
	if f.Deployed.IsZero() {
		f.Deployed = time.Now()
	}
	f.Deployed = f.Deployed.UTC()
	err := s.db.Update(func(tx *bolt.Tx) error {
		fns := tx.Bucket(bucketFunctions)
		old, found, err := getFunction(fns, f.Name)
		if err != nil {
			return err
		}
		f.Version = 1
		if found {
			f.Version = old.Version + 1
		}
		v, err := json.Marshal(f)
		if err != nil {
			return err
		}
		if err := fns.Put([]byte(f.Name), v); err != nil {
			return err
		}
		if err := tx.Bucket(bucketModules).Put([]byte(f.Digest), module); err != nil {
			return err
		}
		if found && old.Digest != f.Digest {
			return dropModuleIfUnused(tx, old.Digest)
		}
		return nil
	})
	if err != nil {
		return Function{}, fmt.Errorf("storing function %s: %w", f.Name, err)
	}
	return f, nil
}

// DeleteFunction removes the function, its module when no other function
// uses it, and its key-value data. A missing name wraps ErrNotFound.
func (s *Store) DeleteFunction(name string) (Function, error) {
	var old Function
	err := s.db.Update(func(tx *bolt.Tx) error {
		fns := tx.Bucket(bucketFunctions)
		f, found, err := getFunction(fns, name)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("function %q %w", name, ErrNotFound)
		}
		old = f
		if err := fns.Delete([]byte(name)); err != nil {
			return err
		}
		if err := dropModuleIfUnused(tx, f.Digest); err != nil {
			return err
		}
		kv := tx.Bucket(bucketKV)
		if kv.Bucket([]byte(name)) != nil {
			if err := kv.DeleteBucket([]byte(name)); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketKVUsage).Delete([]byte(name))
	})
	if err != nil {
		return Function{}, fmt.Errorf("deleting function: %w", err)
	}
	return old, nil
}

// Functions returns every stored function, sorted by name.
func (s *Store) Functions() ([]Function, error) {
	var out []Function
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketFunctions).ForEach(func(k, v []byte) error {
			var f Function
			if err := json.Unmarshal(v, &f); err != nil {
				return fmt.Errorf("function %q: %w", k, err)
			}
			out = append(out, f)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("listing functions: %w", err)
	}
	return out, nil
}

// Module returns a copy of the module stored under digest.
func (s *Store) Module(digest string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketModules).Get([]byte(digest))
		if v == nil {
			return fmt.Errorf("module %s %w", digest, ErrNotFound)
		}
		out = bytes.Clone(v)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading module: %w", err)
	}
	return out, nil
}

func getFunction(b *bolt.Bucket, name string) (Function, bool, error) {
	v := b.Get([]byte(name))
	if v == nil {
		return Function{}, false, nil
	}
	var f Function
	if err := json.Unmarshal(v, &f); err != nil {
		return Function{}, false, fmt.Errorf("function %q: %w", name, err)
	}
	return f, true, nil
}

func dropModuleIfUnused(tx *bolt.Tx, digest string) error {
	used := false
	err := tx.Bucket(bucketFunctions).ForEach(func(_, v []byte) error {
		var f Function
		if err := json.Unmarshal(v, &f); err != nil {
			return err
		}
		used = used || f.Digest == digest
		return nil
	})
	if err != nil || used {
		return err
	}
	return tx.Bucket(bucketModules).Delete([]byte(digest))
}

// KV values are stored as an 8-byte big-endian expiry (Unix ns, 0 = never)
// followed by the value. A function's usage counts key and value bytes.
const kvHeader = 8

// KVGet returns a copy of the value under key in fn's key-value space.
// An expired value is reported missing (the sweep deletes it later).
func (s *Store) KVGet(fn string, key []byte, now time.Time) ([]byte, bool, error) {
	var (
		out   []byte
		found bool
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKV).Bucket([]byte(fn))
		if b == nil {
			return nil
		}
		v := b.Get(key)
		if v == nil || kvExpired(v, now) {
			return nil
		}
		out, found = bytes.Clone(v[kvHeader:]), true
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("kv get: %w", err)
	}
	return out, found, nil
}

// KVPut stores value under key in fn's space, expiring at expires (zero:
// never). When quota is positive and the function's usage after the write
// would exceed it — after the values expired by now are deleted — nothing
// is written and the error wraps ErrKVQuota.
func (s *Store) KVPut(fn string, key, value []byte, expires time.Time, quota int64, now time.Time) error {
	if len(key) == 0 || len(key) > bolt.MaxKeySize {
		return fmt.Errorf("kv put: key must be 1 to %d bytes", bolt.MaxKeySize)
	}
	var exp uint64
	if !expires.IsZero() {
		exp = uint64(expires.UnixNano())
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketKV).CreateBucketIfNotExists([]byte(fn))
		if err != nil {
			return err
		}
		projected := func() uint64 {
			usage := getU64(tx.Bucket(bucketKVUsage), []byte(fn))
			if old := b.Get(key); old != nil {
				usage -= uint64(len(key) + len(old) - kvHeader)
			}
			return usage + uint64(len(key)+len(value))
		}
		usage := projected()
		if quota > 0 && usage > uint64(quota) {
			// Expired values no longer count: delete them and look again.
			if _, err := purgeExpired(tx, b, fn, now); err != nil {
				return err
			}
			if usage = projected(); usage > uint64(quota) {
				return fmt.Errorf("%w: %d of %d bytes", ErrKVQuota, usage, quota)
			}
		}
		v := make([]byte, kvHeader+len(value))
		binary.BigEndian.PutUint64(v, exp)
		copy(v[kvHeader:], value)
		if err := b.Put(key, v); err != nil {
			return err
		}
		return tx.Bucket(bucketKVUsage).Put([]byte(fn), u64(usage))
	})
	if err != nil {
		return fmt.Errorf("kv put: %w", err)
	}
	return nil
}

// KVDelete removes key from fn's space; a missing key is not an error.
func (s *Store) KVDelete(fn string, key []byte) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKV).Bucket([]byte(fn))
		if b == nil {
			return nil
		}
		return kvDelete(tx, b, fn, key)
	})
	if err != nil {
		return fmt.Errorf("kv delete: %w", err)
	}
	return nil
}

// KVUsage returns the bytes (keys plus values) fn stores in values that
// have not expired by now.
func (s *Store) KVUsage(fn string, now time.Time) (int64, error) {
	var n uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		n = getU64(tx.Bucket(bucketKVUsage), []byte(fn))
		b := tx.Bucket(bucketKV).Bucket([]byte(fn))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if kvExpired(v, now) {
				n -= min(n, uint64(len(k)+len(v)-kvHeader))
			}
			return nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("kv usage: %w", err)
	}
	return int64(n), nil
}

// SweepKV deletes every expired value and returns how many it deleted.
func (s *Store) SweepKV(now time.Time) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketKV).ForEachBucket(func(fn []byte) error {
			removed, err := purgeExpired(tx, tx.Bucket(bucketKV).Bucket(fn), string(fn), now)
			n += removed
			return err
		})
	})
	if err != nil {
		return 0, fmt.Errorf("sweeping kv: %w", err)
	}
	return n, nil
}

// purgeExpired deletes fn's values expired by now.
func purgeExpired(tx *bolt.Tx, b *bolt.Bucket, fn string, now time.Time) (int, error) {
	var dead [][]byte
	err := b.ForEach(func(k, v []byte) error {
		if kvExpired(v, now) {
			dead = append(dead, bytes.Clone(k))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, k := range dead {
		if err := kvDelete(tx, b, fn, k); err != nil {
			return 0, err
		}
	}
	return len(dead), nil
}

func kvDelete(tx *bolt.Tx, b *bolt.Bucket, fn string, key []byte) error {
	old := b.Get(key)
	if old == nil {
		return nil
	}
	usage := getU64(tx.Bucket(bucketKVUsage), []byte(fn))
	usage -= min(usage, uint64(len(key)+len(old)-kvHeader))
	if err := b.Delete(key); err != nil {
		return err
	}
	return tx.Bucket(bucketKVUsage).Put([]byte(fn), u64(usage))
}

func kvExpired(v []byte, now time.Time) bool {
	if len(v) < kvHeader {
		return true
	}
	exp := binary.BigEndian.Uint64(v)
	return exp != 0 && uint64(now.UnixNano()) >= exp
}
