package wasm

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// KVStore persists functions' key-value data. Keys are scoped by function
// name. A function's usage is the sum of len(key)+len(value) over its
// entries that have not expired.
type KVStore interface {
	// Get returns the value under key unless it is missing or expired.
	Get(ctx context.Context, fn string, key []byte) ([]byte, bool, error)
	// Put stores value under key until expires (zero: forever). It must
	// check the quota and write atomically, failing with an error wrapping
	// ErrKVQuota if usage would exceed quota bytes; replacing a value
	// counts only the difference.
	Put(ctx context.Context, fn string, key, value []byte, expires time.Time, quota int64) error
	// Delete removes key; a missing key is not an error.
	Delete(ctx context.Context, fn string, key []byte) error
	// Usage returns the function's usage in bytes.
	Usage(ctx context.Context, fn string) (int64, error)
}

// MemoryKV is a KVStore in memory, for tests and single-process demos.
type MemoryKV struct {
	now func() time.Time

	mu  sync.Mutex
	fns map[string]map[string]kvEntry
}

type kvEntry struct {
	value   []byte
	expires time.Time
}

func (e kvEntry) live(now time.Time) bool { return e.expires.IsZero() || now.Before(e.expires) }

// NewMemoryKV returns an empty store; now is its clock (nil: time.Now).
func NewMemoryKV(now func() time.Time) *MemoryKV {
	if now == nil {
		now = time.Now
	}
	return &MemoryKV{now: now, fns: map[string]map[string]kvEntry{}}
}

// Get implements KVStore.
func (m *MemoryKV) Get(_ context.Context, fn string, key []byte) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.fns[fn][string(key)]
	if !ok || !e.live(m.now()) {
		return nil, false, nil
	}
	return append([]byte(nil), e.value...), true, nil
}

// Put implements KVStore.
func (m *MemoryKV) Put(_ context.Context, fn string, key, value []byte, expires time.Time, quota int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	entries := m.fns[fn]
	if entries == nil {
		entries = map[string]kvEntry{}
		m.fns[fn] = entries
	}
	now := m.now()
	for k, e := range entries {
		if !e.live(now) {
			delete(entries, k)
		}
	}
	used := usage(entries)
	if old, ok := entries[string(key)]; ok {
		used -= int64(len(key) + len(old.value))
	}
	if need := used + int64(len(key)+len(value)); need > quota {
		return fmt.Errorf("storing %d bytes would use %d of the %d byte quota: %w", len(key)+len(value), need, quota, ErrKVQuota)
	}
	entries[string(key)] = kvEntry{value: append([]byte(nil), value...), expires: expires}
	return nil
}

// Delete implements KVStore.
func (m *MemoryKV) Delete(_ context.Context, fn string, key []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.fns[fn], string(key))
	return nil
}

// Usage implements KVStore.
func (m *MemoryKV) Usage(_ context.Context, fn string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	var n int64
	for k, e := range m.fns[fn] {
		if e.live(now) {
			n += int64(len(k) + len(e.value))
		}
	}
	return n, nil
}

func usage(entries map[string]kvEntry) int64 {
	var n int64
	for k, e := range entries {
		n += int64(len(k) + len(e.value))
	}
	return n
}

// Fetcher makes outbound HTTP requests for LocalHost.
type Fetcher interface {
	Fetch(ctx context.Context, req FetchRequest) (FetchResponse, error)
}

// LocalHost is the in-process Host: key-value data in a KVStore, fetches
// through a Fetcher. A nil Fetcher refuses every fetch.
type LocalHost struct {
	KV      KVStore
	Fetcher Fetcher
	// Now is the clock that turns a TTL into an expiry (nil: time.Now).
	Now func() time.Time
}

// KVGet implements Host.
func (h *LocalHost) KVGet(ctx context.Context, fn string, key []byte) ([]byte, bool, error) {
	return h.KV.Get(ctx, fn, key)
}

// KVSet implements Host.
func (h *LocalHost) KVSet(ctx context.Context, fn string, key, value []byte, ttl time.Duration, quota int64) error {
	var expires time.Time
	if ttl > 0 {
		now := time.Now
		if h.Now != nil {
			now = h.Now
		}
		expires = now().Add(ttl)
	}
	return h.KV.Put(ctx, fn, key, value, expires, quota)
}

// KVDelete implements Host.
func (h *LocalHost) KVDelete(ctx context.Context, fn string, key []byte) error {
	return h.KV.Delete(ctx, fn, key)
}

// Fetch implements Host.
func (h *LocalHost) Fetch(ctx context.Context, _ string, req FetchRequest) (FetchResponse, error) {
	if h.Fetcher == nil {
		return FetchResponse{}, fmt.Errorf("fetch: this node has no fetcher")
	}
	return h.Fetcher.Fetch(ctx, req)
}
