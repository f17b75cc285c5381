package wasm

import (
	"sync"
	"testing"
)

// An instance never sees what an earlier instance of the same module left
// in its memory, whether that one answered or trapped, in its initial
// pages or in pages it grew, one request at a time or many at once.
func TestMemoryIsNeverLeftDirty(t *testing.T) {
	m := compileFixture(t, newTestEngine(t), "testdata/leak.wasm", testLimits())
	ask := func(body string) (string, error) {
		req := getRequest("/", "")
		req.Body = []byte(body)
		resp, _, err := serve(t, m, req, nil)
		if err != nil {
			return "", err
		}
		return string(resp.Body), nil
	}
	for i := range 20 {
		body := ""
		if i%2 == 1 {
			body = "t" // trap after leaving marks
		}
		got, err := ask(body)
		switch {
		case body == "t" && err == nil:
			t.Fatalf("request %d: answered %q, want a trap", i, got)
		case body == "" && err != nil:
			t.Fatalf("request %d: %v", i, err)
		case body == "" && got != "00":
			t.Fatalf("request %d: the instance found an earlier one's marks: %q (want \"00\")", i, got)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for range 16 {
		wg.Go(func() {
			for range 4 {
				if got, err := ask(""); err != nil || got != "00" {
					errs <- got
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for got := range errs {
		t.Errorf("concurrent request: got %q, want \"00\"", got)
	}
}

// The pool hands out only zeroed buffers of the size asked, and keeps
// neither oversized buffers nor more than its bound.
func TestMemPool(t *testing.T) {
	var p memPool
	if b := p.get(PageSize); b != nil {
		t.Fatalf("empty pool gave a buffer of %d", cap(b))
	}
	b := make([]byte, 2*PageSize, 4*PageSize)
	for i := range b {
		b[i] = 0xaa
	}
	p.put(b)
	if got := p.get(8 * PageSize); got != nil {
		t.Fatalf("pool gave a buffer of %d bytes for 8 pages", cap(got))
	}
	got := p.get(3 * PageSize)
	if got == nil || len(got) != 0 || cap(got) != 4*PageSize {
		t.Fatalf("got len %d cap %d, want len 0 cap %d", len(got), cap(got), 4*PageSize)
	}
	for i, c := range got[:cap(got)] {
		if c != 0 {
			t.Fatalf("byte %d of a pooled buffer is %#x", i, c)
		}
	}
	p.put(make([]byte, 0, memPoolMaxBytes+1))
	for range memPoolBuffers + 3 {
		p.put(make([]byte, PageSize))
	}
	if n := len(p.free); n != memPoolBuffers {
		t.Fatalf("pool keeps %d buffers, bound %d", n, memPoolBuffers)
	}
	for _, b := range p.free {
		if cap(b) > memPoolMaxBytes {
			t.Fatalf("pool kept a buffer of %d bytes", cap(b))
		}
	}
}
