package functions

import (
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/store"
	"github.com/aegis-edge/aegis/internal/wasm"
	"github.com/aegis-edge/aegis/internal/wasm/kvtest"
)

// TestStoreKVContract runs the runtime's KVStore contract on the bbolt
// store the node uses.
func TestStoreKVContract(t *testing.T) {
	kvtest.Run(t, func(t *testing.T, now func() time.Time) wasm.KVStore {
		st, err := store.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return StoreKV{Store: st, Now: now}
	})
}
