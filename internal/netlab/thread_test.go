//go:build linux

package netlab

import (
	"errors"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netns"
)

func TestRunRestoresTheNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("privileged test requires root (CI=true forbids skipping)")
		}
		t.Skip("creating a network namespace needs root")
	}
	before, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	want := errors.New("from fn")
	var inside netns.NsHandle
	err = Run(func() error {
		h, err := netns.New() // needs CAP_SYS_ADMIN
		if err != nil {
			return err
		}
		inside = h
		return want
	})
	if inside == 0 {
		t.Fatalf("creating a namespace: %v", err)
	}
	defer inside.Close()
	if !errors.Is(err, want) {
		t.Fatalf("Run = %v, want fn's error", err)
	}
	// Whatever thread runs this now is in the original namespace.
	now, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer now.Close()
	if !now.Equal(before) {
		t.Fatal("the calling goroutine ended up in another namespace")
	}
}

func TestRunReportsGoexitAndRaisesPanics(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("privileged test requires root (CI=true forbids skipping)")
		}
		t.Skip("restoring the thread's network namespace needs root")
	}
	if err := Run(func() error { runtime.Goexit(); return nil }); !errors.Is(err, ErrGoexit) {
		t.Errorf("Run of a function calling Goexit = %v, want ErrGoexit", err)
	}
	defer func() {
		if r := recover(); r != "boom" {
			t.Errorf("recovered %v, want the function's panic", r)
		}
	}()
	Run(func() error { panic("boom") })
	t.Error("Run returned after a panic")
}
