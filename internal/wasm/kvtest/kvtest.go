package kvtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/wasm"
)

// Clock is a settable time source for the store under test.
type Clock struct{ ns atomic.Int64 }

// NewClock starts at t.
func NewClock(t time.Time) *Clock {
	c := &Clock{}
	c.ns.Store(t.UnixNano())
	return c
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time { return time.Unix(0, c.ns.Load()) }

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// Run runs the contract tests; newStore returns an empty store that reads
// time from now.
func Run(t *testing.T, newStore func(t *testing.T, now func() time.Time) wasm.KVStore) {
	ctx := context.Background()
	start := time.Unix(1_700_000_000, 0)
	const unlimited = 1 << 40

	t.Run("get put delete", func(t *testing.T) {
		s := newStore(t, NewClock(start).Now)
		if _, ok, err := s.Get(ctx, "f", []byte("k")); ok || err != nil {
			t.Fatalf("empty store: %v %v", ok, err)
		}
		must(t, s.Put(ctx, "f", []byte("k"), []byte("v1"), time.Time{}, unlimited))
		must(t, s.Put(ctx, "f", []byte("k"), []byte("v2"), time.Time{}, unlimited))
		wantValue(t, s, "f", "k", "v2")
		must(t, s.Delete(ctx, "f", []byte("k")))
		must(t, s.Delete(ctx, "f", []byte("k")))
		if _, ok, _ := s.Get(ctx, "f", []byte("k")); ok {
			t.Fatal("deleted key still there")
		}
	})

	t.Run("binary keys and values", func(t *testing.T) {
		s := newStore(t, NewClock(start).Now)
		key, value := []byte{0, 0xff, '/', 0}, []byte{0, 1, 2, 0xff}
		must(t, s.Put(ctx, "f", key, value, time.Time{}, unlimited))
		got, ok, err := s.Get(ctx, "f", key)
		if !ok || err != nil || !bytes.Equal(got, value) {
			t.Fatalf("got %x %v %v", got, ok, err)
		}
		if _, ok, _ := s.Get(ctx, "f", key[:3]); ok {
			t.Fatal("a key prefix matched")
		}
	})

	t.Run("functions are scoped", func(t *testing.T) {
		s := newStore(t, NewClock(start).Now)
		must(t, s.Put(ctx, "a", []byte("k"), []byte("from a"), time.Time{}, unlimited))
		must(t, s.Put(ctx, "ab", []byte("k"), []byte("from ab"), time.Time{}, unlimited))
		wantValue(t, s, "a", "k", "from a")
		wantValue(t, s, "ab", "k", "from ab")
		must(t, s.Delete(ctx, "a", []byte("k")))
		wantValue(t, s, "ab", "k", "from ab")
		if u, _ := s.Usage(ctx, "a"); u != 0 {
			t.Fatalf("usage of a after delete: %d", u)
		}
	})

	t.Run("expiry", func(t *testing.T) {
		clock := NewClock(start)
		s := newStore(t, clock.Now)
		must(t, s.Put(ctx, "f", []byte("t"), []byte("vv"), start.Add(time.Second), unlimited))
		wantValue(t, s, "f", "t", "vv")
		clock.Advance(time.Second)
		if _, ok, _ := s.Get(ctx, "f", []byte("t")); ok {
			t.Fatal("expired key still there")
		}
		if u, _ := s.Usage(ctx, "f"); u != 0 {
			t.Fatalf("expired key still counts: %d", u)
		}
	})

	t.Run("quota", func(t *testing.T) {
		clock := NewClock(start)
		s := newStore(t, clock.Now)
		must(t, s.Put(ctx, "f", []byte("a"), make([]byte, 9), time.Time{}, 20)) // 10
		must(t, s.Put(ctx, "f", []byte("b"), make([]byte, 9), time.Time{}, 20)) // 20
		if err := s.Put(ctx, "f", []byte("c"), nil, time.Time{}, 20); !errors.Is(err, wasm.ErrKVQuota) {
			t.Fatalf("put over the quota: %v", err)
		}
		if _, ok, _ := s.Get(ctx, "f", []byte("c")); ok {
			t.Fatal("a refused put was stored")
		}
		// Replacing counts the difference only.
		must(t, s.Put(ctx, "f", []byte("a"), make([]byte, 9), time.Time{}, 20))
		if err := s.Put(ctx, "f", []byte("a"), make([]byte, 10), time.Time{}, 20); !errors.Is(err, wasm.ErrKVQuota) {
			t.Fatalf("growing a value over the quota: %v", err)
		}
		must(t, s.Put(ctx, "f", []byte("a"), make([]byte, 4), time.Time{}, 20))
		if u, _ := s.Usage(ctx, "f"); u != 15 {
			t.Fatalf("usage %d, want 15", u)
		}
		// Another function's data does not count.
		must(t, s.Put(ctx, "g", []byte("a"), make([]byte, 19), time.Time{}, 20))
		// Expired entries free their bytes.
		must(t, s.Put(ctx, "h", []byte("x"), make([]byte, 19), start.Add(time.Second), 20))
		clock.Advance(time.Second)
		must(t, s.Put(ctx, "h", []byte("y"), make([]byte, 19), time.Time{}, 20))
	})

	t.Run("quota is atomic", func(t *testing.T) {
		s := newStore(t, NewClock(start).Now)
		const writers, quota = 8, 100 // each put is 10 bytes: at most 10 fit
		var wg sync.WaitGroup
		var stored atomic.Int64
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 5 {
					err := s.Put(ctx, "f", fmt.Appendf(nil, "k%d-%d", w, i), make([]byte, 10-len(fmt.Sprintf("k%d-%d", w, i))), time.Time{}, quota)
					if err == nil {
						stored.Add(1)
					} else if !errors.Is(err, wasm.ErrKVQuota) {
						t.Error(err)
					}
				}
			}()
		}
		wg.Wait()
		if u, _ := s.Usage(ctx, "f"); u > quota || stored.Load() != quota/10 || u != stored.Load()*10 {
			t.Fatalf("usage %d with %d puts stored, quota %d", u, stored.Load(), quota)
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantValue(t *testing.T, s wasm.KVStore, fn, key, want string) {
	t.Helper()
	got, ok, err := s.Get(context.Background(), fn, []byte(key))
	if err != nil || !ok || string(got) != want {
		t.Fatalf("%s/%s = %q %v %v, want %q", fn, key, got, ok, err, want)
	}
}
