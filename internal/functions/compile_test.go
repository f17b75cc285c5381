package functions

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/testutil"
)

// slowExecutor is an executor whose Load of one module (slow) blocks until
// released and then fails like a compile that ran out of time; it loads
// every other module with next.
type slowExecutor struct {
	next    Executor
	slow    []byte
	entered chan struct{}
	release chan error
	loads   atomic.Int32 // Loads of slow
}

func (x *slowExecutor) Load(ctx context.Context, p Program) (Loaded, error) {
	if string(p.Module) != string(x.slow) {
		return x.next.Load(ctx, p)
	}
	x.loads.Add(1)
	x.entered <- struct{}{}
	if err := <-x.release; err != nil {
		return nil, err
	}
	return x.next.Load(ctx, p)
}

// TestDeployCompilesOutsideTheLock: while one deploy's module compiles,
// listing, describing and serving functions and deploying another go on;
// the compile's timeout fails the deploy and the digest is then refused at
// once, while other bytes are compiled.
func TestDeployCompilesOutsideTheLock(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	if _, err := f.reg.Deploy(ctx, "hello", module(t, "hello1"), Spec{Route: "/hello"}, ""); err != nil {
		t.Fatal(err)
	}
	bomb := module(t, "spin")
	x := &slowExecutor{next: f.reg.opts.Executor, slow: bomb, entered: make(chan struct{}), release: make(chan error)}
	f.reg.opts.Executor = x

	deployed := make(chan error, 1)
	go func() {
		_, err := f.reg.Deploy(ctx, "bomb", bomb, Spec{Route: "/bomb"}, "")
		deployed <- err
	}()
	<-x.entered
	testutil.Returns(t, "List", func() {
		if l := f.reg.List(); len(l) != 1 || l[0].Name != "hello" {
			t.Errorf("List during a compile = %+v", l)
		}
	})
	testutil.Returns(t, "Get", func() {
		if _, err := f.reg.Get("hello"); err != nil {
			t.Error(err)
		}
	})
	testutil.Returns(t, "a request to another function", func() {
		if code, body, _ := f.get(t, "any.example", "/hello"); code != 200 || body != "hello v1\n" {
			t.Errorf("GET /hello during a compile = %d %q", code, body)
		}
	})
	testutil.Returns(t, "another deploy", func() {
		if info, err := f.reg.Deploy(ctx, "hello", module(t, "hello2"), Spec{Route: "/hello"}, ""); err != nil || info.Version != 2 {
			t.Errorf("deploy during a compile = %+v, %v", info, err)
		}
	})

	x.release <- fmt.Errorf("%w: not compiled within 1s", ErrCompileTimeout)
	err := <-deployed
	if !errors.Is(err, ErrInvalid) || !errors.Is(err, ErrCompileTimeout) || !strings.Contains(err.Error(), "compile timed out") {
		t.Fatalf("deploy of a module that timed out = %v, want ErrInvalid wrapping ErrCompileTimeout", err)
	}
	if _, err := f.reg.Get("bomb"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a failed deploy left a function: %v", err)
	}

	// The same bytes, under another name, are refused without a compile.
	_, err = f.reg.Deploy(ctx, "bomb2", bomb, Spec{Route: "/bomb2"}, "")
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "failed to compile") || !strings.Contains(err.Error(), "compile timed out") {
		t.Fatalf("redeploy of a digest that failed = %v", err)
	}
	if n := x.loads.Load(); n != 1 {
		t.Fatalf("the failed digest was loaded %d times, want 1", n)
	}

	// Variant: other bytes (a custom section appended) are compiled.
	other := append(append([]byte(nil), bomb...), 0, 3, 1, 'x', 0)
	x.slow = other
	go func() {
		_, err := f.reg.Deploy(ctx, "bomb", other, Spec{Route: "/bomb"}, "")
		deployed <- err
	}()
	<-x.entered
	x.release <- errors.New("worker pool closed")
	if err := <-deployed; err == nil || errors.Is(err, ErrInvalid) {
		t.Fatalf("deploy whose compile failed for the node's reasons = %v", err)
	}
	// ...and a failure that is not the module's is not remembered.
	go func() {
		_, err := f.reg.Deploy(ctx, "bomb", other, Spec{Route: "/bomb"}, "")
		deployed <- err
	}()
	<-x.entered
	x.release <- nil
	if err := <-deployed; err != nil {
		t.Fatalf("deploy of other bytes after a failure of the node's: %v", err)
	}
	if n := x.loads.Load(); n != 3 {
		t.Fatalf("slow modules were loaded %d times, want 3 (the failed digest once, other bytes per deploy)", n)
	}
}

func TestFailedDigestsBounded(t *testing.T) {
	now := time.Unix(1e9, 0)
	f := newFailedDigests(3)
	fail := fmt.Errorf("%w: no", ErrUncompilable)
	f.remember("limits", errors.New("needs 2000 memory pages"), now)
	if err := f.check("limits", now); err != nil {
		t.Fatalf("a refusal that is not ErrUncompilable was remembered: %v", err)
	}
	for i := range 4 {
		f.remember(fmt.Sprint(i), fail, now)
	}
	if err := f.check("0", now); err != nil {
		t.Fatalf("the oldest of 4 digests in a memory of 3 is still refused: %v", err)
	}
	for _, d := range []string{"1", "2", "3"} {
		if err := f.check(d, now.Add(time.Minute)); err == nil || !strings.Contains(err.Error(), "1m0s ago") {
			t.Fatalf("digest %s: %v", d, err)
		}
	}
}
