package wasm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
)

// TestHammer serves many requests at once on several modules, failing
// ones among them, and checks every answer: instances share nothing.
func TestHammer(t *testing.T) {
	e := newTestEngine(t)
	l := testLimits()
	l.Fuel = 2_000_000
	hello := compileFixture(t, e, "../../examples/hello-wat/hello.wasm", l)
	echo := compileFixture(t, e, "../../examples/echo-c/echo.wasm", l)
	cat := compileFixture(t, e, "testdata/cat.wasm", l)
	loop := compileFixture(t, e, "testdata/loop.wasm", l)
	kv := NewMemoryKV(nil)

	const workers, perWorker = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				ctx := context.Background()
				var err error
				switch i % 4 {
				case 0:
					var resp *Response
					resp, err = hello.Serve(ctx, Invocation{Function: "hello", Request: getRequest("/", "")})
					if err == nil && string(resp.Body) != "Hello, world!\n" {
						err = fmt.Errorf("hello answered %q", resp.Body)
					}
				case 1:
					body := fmt.Sprintf("Content-Type: text/plain\n\nworker %d request %d", w, i)
					var resp *Response
					resp, err = cat.Serve(ctx, Invocation{Function: "cat", Request: catRequest([]byte(body))})
					if err == nil && string(resp.Body) != fmt.Sprintf("worker %d request %d", w, i) {
						err = fmt.Errorf("cat answered %q to worker %d request %d", resp.Body, w, i)
					}
				case 2:
					fn := fmt.Sprintf("echo-%d", w)
					var resp *Response
					resp, err = echo.Serve(ctx, Invocation{Function: fn, Request: getRequest(fmt.Sprintf("/%d/%d", w, i), ""), Host: &LocalHost{KV: kv}})
					if err == nil && (!bytes.Contains(resp.Body, []byte(fmt.Sprintf("path: /%d/%d\n", w, i))) || resp.Header.Get("X-Visits") != fmt.Sprint(i/4+1)) {
						err = fmt.Errorf("echo for worker %d request %d answered %v %q", w, i, resp.Header, resp.Body)
					}
				case 3:
					_, err = loop.Serve(ctx, Invocation{Function: "loop", Request: getRequest("/", "")})
					var we *Error
					if errors.As(err, &we) && we.Kind == KindFuel {
						err = nil
					} else {
						err = fmt.Errorf("loop: %v, want a fuel error", err)
					}
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
