package functions

import (
	"context"
	"errors"
	"time"

	"github.com/aegis-edge/aegis/internal/store"
	"github.com/aegis-edge/aegis/internal/wasm"
)

// StoreKV keeps the functions' key-value data in the node's state store,
// so it is durable and survives restarts. Expired values stop counting
// against the quota at once; the node's sweep deletes them.
type StoreKV struct {
	Store *store.Store
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

var _ wasm.KVStore = StoreKV{}

func (k StoreKV) now() time.Time {
	if k.Now != nil {
		return k.Now()
	}
	return time.Now()
}

// Get implements wasm.KVStore.
func (k StoreKV) Get(_ context.Context, fn string, key []byte) ([]byte, bool, error) {
	return k.Store.KVGet(fn, key, k.now())
}

// Put implements wasm.KVStore.
func (k StoreKV) Put(_ context.Context, fn string, key, value []byte, expires time.Time, quota int64) error {
	err := k.Store.KVPut(fn, key, value, expires, quota, k.now())
	if errors.Is(err, store.ErrKVQuota) {
		return errors.Join(wasm.ErrKVQuota, err)
	}
	return err
}

// Delete implements wasm.KVStore.
func (k StoreKV) Delete(_ context.Context, fn string, key []byte) error {
	return k.Store.KVDelete(fn, key)
}

// Usage implements wasm.KVStore.
func (k StoreKV) Usage(_ context.Context, fn string) (int64, error) {
	return k.Store.KVUsage(fn, k.now())
}
