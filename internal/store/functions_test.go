package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func TestFunctionLifecycle(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	modA, modB := []byte("\x00asm-a"), []byte("\x00asm-b")

	f1, err := s.PutFunction(Function{Name: "hello", Route: "/hello", Settings: json.RawMessage(`{"fuel":5}`)}, modA)
	if err != nil {
		t.Fatal(err)
	}
	if f1.Version != 1 || f1.Digest != ModuleDigest(modA) || f1.Size != int64(len(modA)) {
		t.Fatalf("first deploy = %+v", f1)
	}
	// A second function sharing the module keeps it alive when the first moves on.
	if _, err := s.PutFunction(Function{Name: "twin", Route: "/twin"}, modA); err != nil {
		t.Fatal(err)
	}
	f2, err := s.PutFunction(Function{Name: "hello", Route: "/hello"}, modB)
	if err != nil {
		t.Fatal(err)
	}
	if f2.Version != 2 {
		t.Fatalf("redeploy version = %d, want 2", f2.Version)
	}
	if got, err := s.Module(f1.Digest); err != nil || !bytes.Equal(got, modA) {
		t.Fatalf("shared module = %q, %v", got, err)
	}
	if _, err := s.DeleteFunction("twin"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Module(f1.Digest); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unused module still stored: %v", err)
	}

	// Everything survives a reopen.
	s.Close()
	s = openTest(t, dir)
	fns, err := s.Functions()
	if err != nil || len(fns) != 1 || fns[0].Name != "hello" || fns[0].Version != 2 || fns[0].Digest != ModuleDigest(modB) {
		t.Fatalf("after reopen: %+v, %v", fns, err)
	}
	if got, err := s.Module(fns[0].Digest); err != nil || !bytes.Equal(got, modB) {
		t.Fatalf("module after reopen = %q, %v", got, err)
	}
	if _, err := s.DeleteFunction("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleting a missing function = %v, want ErrNotFound", err)
	}
}

func TestFunctionNames(t *testing.T) {
	s := openTest(t, t.TempDir())
	for _, bad := range []string{"", "../etc", "Hello", "a/b", "-x", "x y", string(make([]byte, 64))} {
		if _, err := s.PutFunction(Function{Name: bad}, []byte("m")); err == nil {
			t.Errorf("name %q accepted", bad)
		}
	}
	if fns, _ := s.Functions(); len(fns) != 0 {
		t.Fatalf("bad names stored: %+v", fns)
	}
}

func TestKV(t *testing.T) {
	s := openTest(t, t.TempDir())
	now := time.Now()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.KVPut("a", []byte("k"), []byte("v1"), time.Time{}, 0, now))
	must(s.KVPut("b", []byte("k"), []byte("other"), time.Time{}, 0, now))
	if v, ok, err := s.KVGet("a", []byte("k"), now); err != nil || !ok || string(v) != "v1" {
		t.Fatalf("get = %q %v %v", v, ok, err)
	}
	// Overwrite adjusts usage by the difference.
	must(s.KVPut("a", []byte("k"), []byte("value2"), time.Time{}, 0, now))
	if u, _ := s.KVUsage("a", now); u != 7 {
		t.Fatalf("usage = %d, want 7", u)
	}
	// Over quota: refused, nothing changes.
	err := s.KVPut("a", []byte("big"), make([]byte, 10), time.Time{}, 16, now)
	if !errors.Is(err, ErrKVQuota) {
		t.Fatalf("over-quota put = %v", err)
	}
	if _, ok, _ := s.KVGet("a", []byte("big"), now); ok {
		t.Fatal("over-quota value was stored")
	}
	if u, _ := s.KVUsage("a", now); u != 7 {
		t.Fatalf("usage after refusal = %d, want 7", u)
	}
	// Expiry: invisible once due, swept later, usage returned.
	must(s.KVPut("a", []byte("tmp"), []byte("x"), now.Add(time.Second), 0, now))
	if _, ok, _ := s.KVGet("a", []byte("tmp"), now); !ok {
		t.Fatal("value missing before expiry")
	}
	later := now.Add(2 * time.Second)
	if _, ok, _ := s.KVGet("a", []byte("tmp"), later); ok {
		t.Fatal("expired value returned")
	}
	if n, err := s.SweepKV(later); err != nil || n != 1 {
		t.Fatalf("sweep = %d, %v", n, err)
	}
	if u, _ := s.KVUsage("a", now); u != 7 {
		t.Fatalf("usage after sweep = %d, want 7", u)
	}
	must(s.KVDelete("a", []byte("k")))
	must(s.KVDelete("a", []byte("missing")))
	if u, _ := s.KVUsage("a", now); u != 0 {
		t.Fatalf("usage after delete = %d", u)
	}
	// Spaces are separate, and deleting a function drops its data.
	if v, ok, _ := s.KVGet("b", []byte("k"), now); !ok || string(v) != "other" {
		t.Fatalf("b's value = %q %v", v, ok)
	}
	if _, err := s.PutFunction(Function{Name: "b"}, []byte("m")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteFunction("b"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.KVGet("b", []byte("k"), now); ok {
		t.Fatal("KV data outlived its function")
	}
	if err := s.KVPut("a", nil, []byte("x"), time.Time{}, 0, now); err == nil {
		t.Fatal("empty key accepted")
	}
}
