package functions

import (
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/config"
	"github.com/aegis-edge/aegis/internal/store"
	"github.com/aegis-edge/aegis/internal/wasm"
)

// bigModule builds a valid module of about size bytes: a hello function
// plus filler functions with straight-line arithmetic, so that validation,
// the fuel pass and compilation all have a megabyte of code to work on.
func bigModule(b testing.TB, size int) []byte {
	b.Helper()
	var wat strings.Builder
	wat.WriteString(`(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "Content-Type: text/plain\n\nbig\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 30))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
`)
	// Each filler function is about 580 bytes of code.
	for i := range size / 580 {
		fmt.Fprintf(&wat, "  (func $f%d (param $x i32) (result i32)\n    local.get $x\n", i)
		for j := range 160 {
			fmt.Fprintf(&wat, "    i32.const %d\n    i32.add\n", j+1)
		}
		wat.WriteString("  )\n")
	}
	wat.WriteString(")\n")
	return wat2wasm(b, wat.String())
}

// BenchmarkDeployToFirstResponse times a deploy of a 1 MB module (validate,
// instrument, compile, persist, switch the route) and its first answer.
func BenchmarkDeployToFirstResponse(b *testing.B) {
	mod := bigModule(b, 1<<20)
	st, err := store.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	defaults := config.Default().Functions.Defaults
	for i := 0; b.Loop(); i++ {
		// A fresh engine each time: no compiled code cached in memory.
		engine, err := wasm.NewEngine(context.Background(), wasm.EngineOptions{CacheDir: filepath.Join(b.TempDir(), "cache")})
		if err != nil {
			b.Fatal(err)
		}
		reg := New(Options{Store: st, Executor: InProcess{Engine: engine}, Defaults: defaults, MaxModuleSize: 16 << 20})
		start := time.Now()
		if _, err := reg.Deploy(context.Background(), fmt.Sprintf("big%d", i), mod, Spec{Route: fmt.Sprintf("/big%d", i)}, ""); err != nil {
			b.Fatal(err)
		}
		deployed := time.Since(start)
		rec := httptest.NewRecorder()
		reg.ServeHTTP(rec, httptest.NewRequest("GET", fmt.Sprintf("/big%d", i), nil))
		if rec.Code != 200 {
			b.Fatalf("first response %d: %s", rec.Code, rec.Body)
		}
		b.ReportMetric(float64(deployed.Microseconds())/1000, "deploy-ms")
		reg.Close()
		engine.Close(context.Background())
	}
	b.ReportMetric(float64(len(mod)), "module-bytes")
}
