package netlab

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// shareRunDir makes dir (where named network namespaces are bind-mounted,
// /run/netns) exist and be a shared mount point, as iproute2 does before
// `ip netns add`, so that namespace mounts made there propagate into mount
// namespaces created later (as by `ip netns exec`) instead of being hidden.
// Other processes doing the same are serialised with a lock on dir.
func shareRunDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Flock(int(d.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("locking %s: %w", dir, err)
	}
	defer unix.Flock(int(d.Fd()), unix.LOCK_UN)
	err = unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if !errors.Is(err, unix.EINVAL) {
		return err
	}
	// EINVAL: not a mount point yet. Bind-mount it onto itself first.
	if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind-mounting %s onto itself: %w", dir, err)
	}
	if err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("making %s a shared mount: %w", dir, err)
	}
	return nil
}
