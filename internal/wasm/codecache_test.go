package wasm

import (
	"context"
	"testing"
)

// TestCodeCacheCompilesOnce: code compiled by one engine serves in another
// engine (another process in the sandbox) without being compiled again.
func TestCodeCacheCompilesOnce(t *testing.T) {
	ctx := context.Background()
	module := readFixture(t, "../../examples/hello-wat/hello.wasm")
	newEngine := func() (*Engine, *CodeCache) {
		c := NewCodeCache()
		e, err := NewEngine(ctx, EngineOptions{Code: c})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close(ctx) })
		return e, c
	}
	compiler, cc := newEngine()
	m, err := compiler.Compile(ctx, module, testLimits())
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	code := cc.Take()
	if len(code) != 1 || len(code[0].Bytes) == 0 || cc.Compiled() != 1 {
		t.Fatalf("compiling recorded %d codes, compiled %d; want 1 and 1", len(code), cc.Compiled())
	}
	if again := cc.Take(); len(again) != 0 {
		t.Fatalf("a second Take returned %d codes", len(again))
	}

	server, sc := newEngine()
	sc.Put(code[0])
	m, err = server.Compile(ctx, module, testLimits())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if n := sc.Compiled(); n != 0 {
		t.Fatalf("the engine given the code compiled %d modules, want 0", n)
	}
	resp, _, err := serve(t, m, getRequest("/", ""), nil)
	if err != nil || resp.Status != 200 {
		t.Fatalf("serving loaded code: %v, %+v", err, resp)
	}

	// Variant: without the code, the same engine kind compiles.
	other, oc := newEngine()
	m2, err := other.Compile(ctx, module, testLimits())
	if err != nil {
		t.Fatal(err)
	}
	m2.Close()
	if oc.Compiled() != 1 {
		t.Fatalf("an engine without the code compiled %d modules, want 1", oc.Compiled())
	}
}

func TestEngineCodeAndDirExclusive(t *testing.T) {
	if _, err := NewEngine(context.Background(), EngineOptions{Code: NewCodeCache(), CacheDir: t.TempDir()}); err == nil {
		t.Fatal("an engine with both a CodeCache and a CacheDir started")
	}
}
