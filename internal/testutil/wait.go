package testutil

import (
	"os"
	"testing"
	"time"
)

// WaitTimeout is how long WaitFor waits before it fails the test: a guard
// against a hang, not the measure of anything.
const WaitTimeout = time.Minute

// WaitFor polls cond until it holds, and fails the test naming what it
// waited for if it does not within WaitTimeout.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s after %v", what, WaitTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Returns fails the test if fn does not return within WaitTimeout: the
// assertion is that it returns at all (while something else holds a
// resource, say), not how fast.
func Returns(t testing.TB, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(WaitTimeout):
		t.Fatalf("%s did not return within %v", what, WaitTimeout)
	}
}

// OpenFDs counts the test process's open file descriptors.
func OpenFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
