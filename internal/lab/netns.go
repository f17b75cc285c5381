package lab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/aegis-edge/aegis/internal/nsthread"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where named network namespaces are bind-mounted, as by
// `ip netns add`, so that `ip netns exec` and nsenter find the lab's.
const netnsDir = "/run/netns"

// namespace is a named network namespace bind-mounted under netnsDir, with
// an open handle for netlink and setns.
type namespace struct {
	name   string
	path   string
	handle netns.NsHandle
}

// createNamespace creates the named namespace with its loopback up. The
// name must be free. On error nothing is left behind.
func createNamespace(name string) (_ *namespace, err error) {
	if err := prepareNetnsDir(); err != nil {
		return nil, fmt.Errorf("preparing %s: %w", netnsDir, err)
	}
	n := &namespace{name: name, path: filepath.Join(netnsDir, name), handle: netns.None()}
	fd, err := unix.Open(n.path, unix.O_RDONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", n.path, err)
	}
	unix.Close(fd)
	defer func() {
		if err != nil {
			n.close()
			removeNamespace(name)
		}
	}()

	// unshare(2) moves the calling thread into the new namespace, so it
	// happens on a thread that is switched back (or discarded) afterwards.
	err = onLockedThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare: %w", err)
		}
		return unix.Mount("/proc/thread-self/ns/net", n.path, "none", unix.MS_BIND, "")
	})
	if err != nil {
		return nil, fmt.Errorf("creating network namespace %s: %w", name, err)
	}
	if n.handle, err = netns.GetFromPath(n.path); err != nil {
		return nil, fmt.Errorf("opening network namespace %s: %w", name, err)
	}
	nl, err := n.netlink()
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

// netlink returns a handle whose sockets live in the namespace.
func (n *namespace) netlink() (*netlink.Handle, error) {
	h, err := netlink.NewHandleAt(n.handle)
	if err != nil {
		return nil, fmt.Errorf("netlink in network namespace %s: %w", n.name, err)
	}
	return h, nil
}

// do runs fn on a locked OS thread inside the namespace. Sockets fn opens
// stay in the namespace; a process fn starts is born in it.
func (n *namespace) do(fn func() error) error {
	return onLockedThread(func() error {
		if err := netns.Set(n.handle); err != nil {
			return fmt.Errorf("entering network namespace %s: %w", n.name, err)
		}
		return fn()
	})
}

// close releases the handle; the namespace lives on while it is mounted.
func (n *namespace) close() {
	if n.handle.IsOpen() {
		n.handle.Close()
	}
	n.handle = netns.None()
}

// removeNamespace unmounts and removes a named namespace. The kernel frees
// it, and the links in it, once no process or descriptor holds it. A name
// that does not exist is not an error.
func removeNamespace(name string) error {
	p := filepath.Join(netnsDir, name)
	// EINVAL: the file exists but nothing is mounted on it.
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting %s: %w", p, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// onLockedThread runs fn on an OS thread of its own (see package nsthread).
func onLockedThread(fn func() error) error { return nsthread.Run(fn) }

// prepareNetnsDir makes netnsDir a shared mount point (see nsthread.ShareRunDir).
func prepareNetnsDir() error { return nsthread.ShareRunDir(netnsDir) }
