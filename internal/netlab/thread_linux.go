package netlab

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// ErrGoexit is what Run returns when fn called runtime.Goexit, as
// t.FailNow and t.SkipNow do.
var ErrGoexit = errors.New("netlab: the function called runtime.Goexit")

// Run runs fn on a fresh goroutine locked to its OS thread and returns its
// error, after restoring the thread's network namespace; if that fails, the
// thread stays locked and is discarded with the goroutine, so no other
// goroutine ever runs in a namespace it did not ask for. A panic in fn is
// raised again in the caller.
func Run(fn func() error) error {
	type result struct {
		err      error
		panicked bool
		value    any
	}
	done := make(chan result, 1)
	go func() {
		res := result{err: ErrGoexit} // unless fn returns or panics
		defer func() { done <- res }()
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			res.err = fmt.Errorf("getting the current network namespace: %w", err)
			return
		}
		defer orig.Close()
		defer func() {
			if err := netns.Set(orig); err != nil {
				res.err = errors.Join(res.err, fmt.Errorf("restoring the network namespace: %w", err))
				return
			}
			runtime.UnlockOSThread()
		}()
		defer func() {
			if r := recover(); r != nil {
				res = result{panicked: true, value: r}
			}
		}()
		res.err = fn()
	}()
	res := <-done
	if res.panicked {
		panic(res.value)
	}
	return res.err
}
