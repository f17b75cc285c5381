package netlab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// RunDir is where named network namespaces are bind-mounted, as by
// `ip netns add`, so that `ip netns exec` and nsenter find them.
const RunDir = "/run/netns"

// Namespace is a named network namespace bind-mounted at Path (under
// RunDir). Handle is an open descriptor for it, valid for
// netlink.NewHandleAt, netlink.NsFd and setns(2) until Close.
type Namespace struct {
	Name   string
	Path   string
	Handle netns.NsHandle
}

var runDirMu sync.Mutex

// NewNamespace creates the named namespace with its loopback up. A name
// that is taken is an error wrapping os.ErrExist. On error nothing is left
// behind.
func NewNamespace(name string) (_ *Namespace, err error) {
	runDirMu.Lock()
	err = shareRunDir(RunDir)
	runDirMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("preparing %s: %w", RunDir, err)
	}
	n := &Namespace{Name: name, Path: filepath.Join(RunDir, name), Handle: netns.None()}
	// O_EXCL: the name is ours alone, even among concurrent processes.
	fd, err := unix.Open(n.Path, unix.O_RDONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", n.Path, err)
	}
	unix.Close(fd)
	defer func() {
		if err != nil {
			n.Remove()
		}
	}()

	// unshare(2) moves the calling thread into the new namespace, so it
	// happens on a thread that is switched back (or discarded) afterwards.
	err = Run(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare: %w", err)
		}
		return unix.Mount("/proc/thread-self/ns/net", n.Path, "none", unix.MS_BIND, "")
	})
	if err != nil {
		return nil, fmt.Errorf("creating network namespace %s: %w", name, err)
	}
	if n.Handle, err = netns.GetFromPath(n.Path); err != nil {
		return nil, fmt.Errorf("opening network namespace %s: %w", name, err)
	}
	nl, err := n.Netlink()
	if err != nil {
		return nil, err
	}
	defer nl.Close()
	lo, err := nl.LinkByName("lo")
	if err == nil {
		err = nl.LinkSetUp(lo)
	}
	if err != nil {
		return nil, fmt.Errorf("network namespace %s: setting lo up: %w", name, err)
	}
	return n, nil
}

// Netlink returns a handle whose sockets live in the namespace, so that
// configuring the namespace through it needs no thread switching.
func (n *Namespace) Netlink() (*netlink.Handle, error) {
	h, err := netlink.NewHandleAt(n.Handle)
	if err != nil {
		return nil, fmt.Errorf("netlink in network namespace %s: %w", n.Name, err)
	}
	return h, nil
}

// Do runs fn on a locked OS thread inside the namespace (see Run). Sockets
// fn opens stay in the namespace; a process fn starts is born in it;
// goroutines fn starts are not in it.
func (n *Namespace) Do(fn func() error) error {
	return Run(func() error {
		if err := netns.Set(n.Handle); err != nil {
			return fmt.Errorf("entering network namespace %s: %w", n.Name, err)
		}
		return fn()
	})
}

// Close releases the handle; the namespace lives on while it is mounted.
func (n *Namespace) Close() error {
	var err error
	if n.Handle.IsOpen() {
		err = n.Handle.Close()
	}
	n.Handle = netns.None()
	return err
}

// Remove closes the handle and removes the namespace (RemoveNamespace).
func (n *Namespace) Remove() error {
	return errors.Join(n.Close(), RemoveNamespace(n.Name))
}

// RemoveNamespace unmounts and removes a named namespace. The kernel frees
// it, and the links in it, once no process or descriptor holds it. A name
// that does not exist, or that was never mounted, is not an error.
func RemoveNamespace(name string) error {
	p := filepath.Join(RunDir, name)
	// EINVAL: the file exists but nothing is mounted on it.
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting %s: %w", p, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
