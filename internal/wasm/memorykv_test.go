package wasm_test

import (
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/wasm"
	"github.com/aegis-edge/aegis/internal/wasm/kvtest"
)

func TestMemoryKV(t *testing.T) {
	kvtest.Run(t, func(_ *testing.T, now func() time.Time) wasm.KVStore { return wasm.NewMemoryKV(now) })
}
