package shield

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
)

// The netlink attach path is the fallback for kernels without bpf_link for
// XDP (before 5.9). Such an attachment is not tied to a file descriptor: it
// outlives the daemon by itself. The program is pinned under PIN/netlink/IFACE
// so that a restarted daemon recognises its own program (by id) and swaps in
// the new one atomically with a single netlink request.

func (s *Shield) netlinkDir() string { return filepath.Join(s.pinPath, "netlink") }

// attachNetlink attaches (or replaces in place) through netlink. The caller
// holds s.mu.
func (s *Shield) attachNetlink(iface string, ifindex int, mode XDPMode, info *AttachInfo) error {
	nlink, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return fmt.Errorf("interface %s: %w", iface, err)
	}
	prog := s.objs.AegisXdp
	current := uint32(0)
	if x := nlink.Attrs().Xdp; x != nil && x.Attached {
		current = x.ProgId
	}
	ours := false
	if s.pinPath != "" {
		pin := filepath.Join(s.netlinkDir(), iface)
		if old, err := ebpf.LoadPinnedProgram(pin, nil); err == nil {
			if oi, err := old.Info(); err == nil {
				if id, ok := oi.ID(); ok && uint32(id) == current && current != 0 {
					ours = true
				}
			}
			old.Close()
			if !ours {
				os.Remove(pin) // a stale pin: the interface lost our program
			}
		}
	} else if _, ok := s.legacy[iface]; ok && current != 0 {
		ours = true
	}

	if ours {
		// Without UPDATE_IF_NOEXIST the kernel swaps the program atomically in
		// the mode it is attached in: no window without protection.
		flags := netlinkModeFlags(attachedMode(ifindex))
		if err := netlink.LinkSetXdpFdWithFlags(nlink, prog.FD(), flags); err != nil {
			return fmt.Errorf("replacing program on %s through netlink: %w", iface, err)
		}
		info.Adopted = true
	} else {
		if current != 0 {
			return fmt.Errorf("attaching to %s: another XDP program (id %d) is attached", iface, current)
		}
		if err := netlinkAttach(nlink, prog, mode); err != nil {
			return fmt.Errorf("attaching to %s through netlink: %w", iface, err)
		}
	}
	if s.pinPath != "" {
		if err := os.MkdirAll(s.netlinkDir(), 0o700); err != nil {
			return fmt.Errorf("creating pin directory: %w", err)
		}
		pin := filepath.Join(s.netlinkDir(), iface)
		os.Remove(pin)
		// Pin a clone: the program fd itself is pinned at most once.
		clone, err := prog.Clone()
		if err != nil {
			return fmt.Errorf("pinning program for %s: %w", iface, err)
		}
		defer clone.Close()
		if err := clone.Pin(pin); err != nil {
			return fmt.Errorf("pinning program for %s: %w", iface, err)
		}
	} else {
		s.legacy[iface] = ifindex
	}
	info.Via = ViaNetlink
	if pi, err := prog.Info(); err == nil {
		if id, ok := pi.ID(); ok {
			info.ProgramID = id
		}
	}
	info.Mode = attachedMode(ifindex)
	return nil
}

func netlinkAttach(nlink netlink.Link, prog *ebpf.Program, mode XDPMode) error {
	try := func(m XDPMode) error {
		return netlink.LinkSetXdpFdWithFlags(nlink, prog.FD(), nl.XDP_FLAGS_UPDATE_IF_NOEXIST|netlinkModeFlags(m))
	}
	switch mode {
	case XDPNative, XDPGeneric:
		return try(mode)
	case XDPAuto, "":
		err := try(XDPNative)
		if err == nil {
			return nil
		}
		if gerr := try(XDPGeneric); gerr != nil {
			return fmt.Errorf("native: %w; generic: %w", err, gerr)
		}
		return nil
	}
	return fmt.Errorf("unknown xdp mode %q", mode)
}

func netlinkModeFlags(m XDPMode) int {
	switch m {
	case XDPNative:
		return nl.XDP_FLAGS_DRV_MODE
	case XDPGeneric:
		return nl.XDP_FLAGS_SKB_MODE
	}
	return 0
}

// detachNetlink removes a netlink attachment made by this shield; found is
// false when there is none. The caller holds s.mu.
func (s *Shield) detachNetlink(iface string) (found bool, err error) {
	ifindex, held := s.legacy[iface]
	pin := ""
	if s.pinPath != "" {
		pin = filepath.Join(s.netlinkDir(), iface)
		if _, err := os.Stat(pin); err != nil {
			return false, nil
		}
		nlink, err := netlink.LinkByName(iface)
		if err != nil {
			// The interface is gone, and its program with it.
			return true, os.Remove(pin)
		}
		ifindex, held = nlink.Attrs().Index, true
	}
	if !held {
		return false, nil
	}
	delete(s.legacy, iface)
	nlink, err := netlink.LinkByIndex(ifindex)
	if err == nil {
		err = netlink.LinkSetXdpFdWithFlags(nlink, -1, netlinkModeFlags(attachedMode(ifindex)))
	}
	if err != nil {
		return true, fmt.Errorf("detaching from %s through netlink: %w", iface, err)
	}
	if pin != "" {
		if err := os.Remove(pin); err != nil && !errors.Is(err, os.ErrNotExist) {
			return true, fmt.Errorf("unpinning program for %s: %w", iface, err)
		}
	}
	return true, nil
}

// netlinkAttached describes netlink attachments for Attached.
func (s *Shield) netlinkAttached() []AttachInfo {
	var names []string
	if s.pinPath == "" {
		for name := range s.legacy {
			names = append(names, name)
		}
	} else if ents, err := os.ReadDir(s.netlinkDir()); err == nil {
		for _, e := range ents {
			names = append(names, e.Name())
		}
	}
	var out []AttachInfo
	for _, name := range names {
		ai := AttachInfo{Interface: name, Via: ViaNetlink}
		if l, err := netlink.LinkByName(name); err == nil {
			ai.Ifindex = l.Attrs().Index
			if x := l.Attrs().Xdp; x != nil {
				ai.ProgramID = ebpf.ProgramID(x.ProgId)
			}
			ai.Mode = attachedMode(ai.Ifindex)
		}
		out = append(out, ai)
	}
	return out
}
