package shield

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/aegis-edge/aegis/internal/audit"
	"github.com/aegis-edge/aegis/internal/bpfguard"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Shield is the loaded data path. Its methods are safe for concurrent use.
type Shield struct {
	mu      sync.Mutex
	objs    shieldObjects
	sources *sourceTable // objs.Sources, mmapped where the kernel can
	// table4 and table6 are the exact tables, mmapped where the kernel
	// can (unused otherwise: the exact entries go to the hash maps).
	table4, table6 *exactTable
	exactMasks     [4]uint32 // as the program was loaded with
	// prefix4 and prefix6 are the prefix tables, likewise.
	prefix4, prefix6 *exactTable
	prefixMasks      [4]uint32

	pinPath string
	links   map[string]link.Link // unpinned links, by interface
	legacy  map[string]int       // unpinned netlink attachments: ifindex by interface
	netlink bool                 // attach through netlink (Options.NetlinkAttach)
	perf    bool                 // events through perf_events (Options.PerfEvents)
	mono    bool                 // CLOCK_MONOTONIC data path (Options.monotonicClock)
	// clockHZ is the kernel's tick rate once the jiffies clock is
	// calibrated, 0 while the data path reads the precise helper.
	clockHZ       int
	bootOffset    int64           // CLOCK_BOOTTIME - CLOCK_MONOTONIC at calibration
	clockFallback string          // why the jiffies clock is not in use
	jiffiesProg   bool            // the program was loaded to read jiffies (use_jiffies_clock)
	line          shieldClockSync // the calibrated line (zero: precise clock)
	frozen        uint64          // injected time (setClock), 0 when running
	oneByOne      bool            // read maps without batch lookups, as before 5.6: for tests
	audit         func(audit.Event) error
	cfg           shieldShieldConfig
	filters       [numPrefilters]*prefilter
	exact         [numPrefilters]*exactFilter
	long          [2]*prefilter // IPv6 prefixes of /48 and longer: allow, block
	lens          [numPrefilters]*lenMasks
	mgmt          []netip.Prefix // management prefixes (SetManagement)
	mgmtSet       bool           // SetManagement was called: the maps follow mgmt
	// Adopted is true when the maps were already pinned, that is when a
	// previous daemon's state was taken over rather than created.
	Adopted bool
}

// Load loads the XDP program and creates or adopts its maps. With a pin path
// the maps are pinned by name, and maps already pinned there by an earlier
// daemon are reused with their contents, so entries and counters survive.
//
// Nothing reaches the kernel before the capabilities are checked and the
// embedded object has passed verification against Policy (its recorded
// digest included); RLIMIT_MEMLOCK is raised only where the kernel charges
// it; the kernel verifier's log is kept for a refusal. Each step is
// recorded through Options.Audit.
func Load(opts Options) (*Shield, error) {
	if err := checkPrivileges(opts); err != nil {
		return nil, err
	}
	if err := verifyObject(opts); err != nil {
		return nil, err
	}
	obj := opts.object
	if obj == nil {
		obj = Object()
	}
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(obj))
	if err != nil {
		return nil, fmt.Errorf("reading embedded shield object: %w", err)
	}
	s := &Shield{pinPath: opts.PinPath, links: map[string]link.Link{}, legacy: map[string]int{}, netlink: opts.NetlinkAttach, audit: opts.audit}
	s.perf = opts.PerfEvents || features.HaveMapType(ebpf.RingBuf) != nil
	if s.perf {
		if err := usePerfEvents(spec); err != nil {
			return nil, err
		}
	}
	s.mono = opts.monotonicClock || features.HaveProgramHelper(ebpf.XDP, asm.FnKtimeGetBootNs) != nil
	if s.mono {
		if err := spec.Variables["use_monotonic_clock"].Set(uint32(1)); err != nil {
			return nil, fmt.Errorf("selecting the monotonic clock: %w", err)
		}
	}
	jiffies := !opts.preciseClock
	if jiffies {
		if err := features.HaveProgramHelper(ebpf.XDP, asm.FnJiffies64); err != nil {
			jiffies = false
			s.clockFallback = fmt.Sprintf("no bpf_jiffies64: %v", err)
		}
	} else {
		s.clockFallback = "precise clock requested"
	}
	if !jiffies {
		if err := spec.Variables["use_jiffies_clock"].Set(uint32(0)); err != nil {
			return nil, fmt.Errorf("selecting the precise clock: %w", err)
		}
	}
	s.jiffiesProg = jiffies
	var collOpts ebpf.CollectionOptions
	if opts.PinPath == "" {
		for _, m := range spec.Maps {
			m.Pinning = ebpf.PinNone
		}
	} else {
		if err := ensureBPFFS(opts.PinPath); err != nil {
			return nil, err
		}
		for _, dir := range []string{s.mapsDir(), s.linksDir()} {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, fmt.Errorf("creating pin directory: %w", err)
			}
		}
		if _, err := os.Stat(filepath.Join(s.mapsDir(), "config")); err == nil {
			s.Adopted = true
		}
		collOpts.Maps.PinPath = s.mapsDir()
	}
	if !sourcesMmapable() || opts.noMmap {
		for _, name := range append([]string{"sources"}, tableMaps...) {
			spec.Maps[name].Flags &^= unix.BPF_F_MMAPABLE
		}
	}
	if runtime.GOARCH != "amd64" {
		// The data path's reads of a way are ordered only by x86's memory
		// model (clang 14 emits no load-acquire for BPF): elsewhere an IPv6
		// address read across two writes could match. The exact addresses
		// and prefixes stay in the hash maps there.
		for _, name := range tableMaps {
			spec.Maps[name].Flags &^= unix.BPF_F_MMAPABLE
		}
	}
	s.exactMasks = [4]uint32{1<<exact4AllowLog - 1, 1<<exact4BlockLog - 1, 1<<exact6AllowLog - 1, 1<<exact6BlockLog - 1}
	if opts.exactMasks != nil {
		s.exactMasks = *opts.exactMasks
		if err := spec.Variables["exact4_mask"].Set([2]uint32{s.exactMasks[0], s.exactMasks[1]}); err != nil {
			return nil, fmt.Errorf("setting the exact tables' masks: %w", err)
		}
		if err := spec.Variables["exact6_mask"].Set([2]uint32{s.exactMasks[2], s.exactMasks[3]}); err != nil {
			return nil, fmt.Errorf("setting the exact tables' masks: %w", err)
		}
	}
	s.prefixMasks = [4]uint32{1<<prefixAllowLog - 1, 1<<prefixBlockLog - 1, 1<<prefixAllowLog - 1, 1<<prefixBlockLog - 1}
	if opts.prefixMasks != nil {
		s.prefixMasks = *opts.prefixMasks
		if err := spec.Variables["prefix_mask"].Set(s.prefixMasks); err != nil {
			return nil, fmt.Errorf("setting the prefix tables' masks: %w", err)
		}
	}
	var oldCounts *oldCounters
	var oldSources []oldSource
	var oldSourcesPinned bool
	var oldPrefixes map[string][]oldPrefix
	if opts.PinPath != "" {
		if oldPrefixes, err = takeOldPrefixes(spec, s.mapsDir()); err != nil {
			return nil, err
		}
		if oldCounts, err = takeOldCounters(spec, s.mapsDir()); err != nil {
			return nil, err
		}
		if oldCounts != nil {
			// The old map keeps the name until the load has succeeded.
			spec.Maps["counters"].Pinning = ebpf.PinNone
		}
		if oldSources, oldSourcesPinned, err = takeOldSources(s.mapsDir()); err != nil {
			return nil, err
		}
		if oldSourcesPinned {
			// The LRU keeps the name until the load has succeeded.
			spec.Maps["sources"].Pinning = ebpf.PinNone
		}
	}
	if err := raiseMemlock(spec, opts); err != nil {
		return nil, err
	}
	if err := s.loadVerified(spec, &collOpts, opts); err != nil {
		var rej *bpfguard.KernelRejection
		if errors.As(err, &rej) {
			return nil, err
		}
		if errors.Is(err, ebpf.ErrMapIncompatible) {
			return nil, fmt.Errorf("maps pinned under %s belong to an incompatible shield version (remove them to start afresh): %w", s.mapsDir(), err)
		}
		return nil, fmt.Errorf("loading shield: %w", err)
	}
	if oldCounts != nil {
		if err := oldCounts.restore(s.objs.Counters); err != nil {
			s.objs.Close()
			return nil, err
		}
	}
	if s.sources, err = openSourceTable(s.objs.Sources); err != nil {
		s.objs.Close()
		return nil, err
	}
	if err := s.openExactTables(); err != nil {
		s.closeObjs()
		return nil, err
	}
	if err := restoreSources(s.sources, oldSources); err != nil {
		s.sources.close()
		s.closeObjs()
		return nil, err
	}
	if err := s.restorePrefixes(oldPrefixes); err != nil {
		s.closeObjs()
		return nil, err
	}
	if err := s.start(); err != nil {
		s.closeObjs()
		return nil, err
	}
	// The last steps: until here a failure leaves an old sources LRU, an
	// old counters map and old prefix tries pinned.
	for name := range oldPrefixes {
		if err := pinOver(s.prefixMap(name), s.mapsDir(), name); err != nil {
			s.closeObjs()
			return nil, err
		}
	}
	if oldSourcesPinned {
		if err := pinOver(s.objs.Sources, s.mapsDir(), "sources"); err != nil {
			s.closeObjs()
			return nil, err
		}
	}
	if oldCounts != nil {
		if err := pinOver(s.objs.Counters, s.mapsDir(), "counters"); err != nil {
			s.closeObjs()
			return nil, err
		}
	}
	return s, nil
}

// start brings the loaded program and maps into service: it reads the
// settings, builds the prefilters from the lists, sets the data path's
// clock, marks the active automatic blocks and writes the default settings
// into fresh maps. Load's last steps, before any pin is replaced.
func (s *Shield) start() error {
	var zero uint32
	if err := s.objs.Config.Lookup(&zero, &s.cfg); err != nil {
		return fmt.Errorf("reading shield config: %w", err)
	}
	if err := s.dropHashCopiesLocked(); err != nil {
		return err
	}
	if err := s.initPrefilters(); err != nil {
		return err
	}
	if err := s.exactPresenceLocked(); err != nil {
		return err
	}
	jiffies := s.jiffiesProg
	if jiffies {
		// Until the line is written the data path reads the precise
		// helper (base_ns is 0), so a failure here costs speed only.
		if err := s.calibrateClock(); err != nil {
			s.clockFallback = fmt.Sprintf("calibrating the jiffies clock: %v", err)
			jiffies = false
		}
	}
	if !jiffies {
		// A line left in pinned maps by an earlier daemon would read as a
		// frozen clock here, or go unmaintained: the precise helper it is.
		if err := s.writeLine(shieldClockSync{}); err != nil {
			return err
		}
	}
	// Maps adopted from a daemon that kept no marks may hold active
	// automatic blocks: mark them all before traffic can skip them.
	if _, err := s.refreshMarks(true); err != nil {
		return err
	}
	if s.cfg.V4Mask == 0 { // a fresh map: valid settings never have an empty mask
		if err := s.setSettingsLocked(DefaultSettings()); err != nil {
			return err
		}
	}
	return nil
}

// usePerfEvents switches the program to the perf event array. The ring
// buffer map becomes a one-slot array: the program still refers to it, but
// only from the branch the constant rules out, which the verifier skips.
func usePerfEvents(spec *ebpf.CollectionSpec) error {
	v, ok := spec.Variables["use_perf_events"]
	if !ok {
		return fmt.Errorf("shield object has no use_perf_events constant")
	}
	if err := v.Set(uint32(1)); err != nil {
		return fmt.Errorf("selecting perf events: %w", err)
	}
	ev := spec.Maps["events"]
	ev.Type, ev.KeySize, ev.ValueSize, ev.MaxEntries = ebpf.Array, 4, 4, 1
	ev.Pinning = ebpf.PinNone
	return nil
}

func (s *Shield) mapsDir() string { return filepath.Join(s.pinPath, "maps") }

// netlinkPinned reports whether an earlier daemon attached to iface through
// netlink; such an attachment is adopted the same way.
func (s *Shield) netlinkPinned(iface string) bool {
	if s.pinPath == "" {
		return false
	}
	_, err := os.Stat(filepath.Join(s.netlinkDir(), iface))
	return err == nil
}
func (s *Shield) linksDir() string { return filepath.Join(s.pinPath, "links") }

// Program is the loaded XDP program.
func (s *Shield) Program() *ebpf.Program { return s.objs.AegisXdp }

// Close releases the shield's file descriptors. Pinned links stay attached
// and pinned maps keep their contents; unpinned links are detached.
func (s *Shield) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for name, l := range s.links {
		errs = append(errs, l.Close())
		delete(s.links, name)
	}
	for name := range s.legacy {
		_, err := s.detachNetlink(name)
		errs = append(errs, err)
	}
	errs = append(errs, s.closeObjs())
	return errors.Join(errs...)
}

// closeObjs unmaps the source and exact tables and closes the maps and
// programs.
func (s *Shield) closeObjs() error {
	return errors.Join(s.sources.close(), s.table4.close(), s.table6.close(), s.prefix4.close(), s.prefix6.close(), s.objs.Close())
}

// tableMaps are the arrays the exact and prefix tables live in: created
// without BPF_F_MMAPABLE where they must stay unused.
var tableMaps = []string{"exact_table_v4", "exact_table_v6", "exact_slots", "prefix_table_v4", "prefix_table_v6", "prefix_slots"}

// openExactTables maps the exact and prefix tables and reads back what
// they hold.
func (s *Shield) openExactTables() error {
	var err error
	m, p := s.exactMasks, s.prefixMasks
	if s.table4, err = openExactTable(s.objs.ExactTableV4, s.objs.ExactSlots, geomExact4, [2]uint32{m[0], m[1]}); err != nil {
		return err
	}
	if s.table6, err = openExactTable(s.objs.ExactTableV6, s.objs.ExactSlots, geomExact6, [2]uint32{m[2], m[3]}); err != nil {
		return err
	}
	if s.prefix4, err = openExactTable(s.objs.PrefixTableV4, s.objs.PrefixSlots, geomPrefix4, [2]uint32{p[0], p[1]}); err != nil {
		return err
	}
	s.prefix6, err = openExactTable(s.objs.PrefixTableV6, s.objs.PrefixSlots, geomPrefix6, [2]uint32{p[2], p[3]})
	return err
}

// Attach attaches the program to the interface. A link pinned by an earlier
// daemon is adopted and its program replaced in place, so the interface is
// never unprotected during an upgrade. The outcome is audited; when that
// record cannot be written a fresh attachment is undone (a replacement
// cannot be: the old program is gone) and the error returned.
func (s *Shield) Attach(iface string, mode XDPMode) (AttachInfo, error) {
	info, err := s.attachAudited(iface, mode)
	if err == nil && info.Adopted {
		// The replaced program kept no marks until this moment: mark the
		// blocks it may have made since Load marked the adopted ones.
		if _, merr := s.refreshMarks(true); merr != nil {
			return info, merr
		}
	}
	return info, err
}

func (s *Shield) attachAudited(iface string, mode XDPMode) (AttachInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	info, err := s.attach(iface, mode)
	op := audit.OpAttach
	if info.Adopted {
		op = audit.OpReplace
	}
	details := map[string]any{"requested_mode": mode, "xdp_mode": info.Mode, "via": info.Via, "program_id": info.ProgramID}
	if info.LinkID != 0 {
		details["link_id"] = info.LinkID
	}
	if aerr := s.audit(audit.Event{Op: op, Target: iface, Details: details, Err: err}); aerr != nil {
		if err == nil && !info.Adopted {
			s.detach(iface)
		}
		return info, errors.Join(err, aerr)
	}
	return info, err
}

func (s *Shield) attach(iface string, mode XDPMode) (AttachInfo, error) {
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return AttachInfo{}, fmt.Errorf("interface %q: %w", iface, err)
	}
	info := AttachInfo{Interface: iface, Ifindex: ifc.Index, Via: ViaLink}
	if s.netlink || s.netlinkPinned(iface) {
		return info, s.attachNetlink(iface, ifc.Index, mode, &info)
	}
	pin := filepath.Join(s.linksDir(), iface)

	var l link.Link
	if s.pinPath != "" {
		if old, err := link.LoadPinnedLink(pin, nil); err == nil {
			li, err := old.Info()
			if err == nil && li.XDP() != nil && int(li.XDP().Ifindex) == ifc.Index {
				if err := old.Update(s.objs.AegisXdp); err != nil {
					old.Close()
					return info, fmt.Errorf("replacing program on %s: %w", iface, err)
				}
				l = old
				info.Adopted = true
			} else {
				// The interface the link belonged to is gone or renumbered.
				old.Unpin()
				old.Close()
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return info, fmt.Errorf("loading pinned link %s: %w", pin, err)
		}
	} else if old, ok := s.links[iface]; ok {
		if err := old.Update(s.objs.AegisXdp); err != nil {
			return info, fmt.Errorf("replacing program on %s: %w", iface, err)
		}
		l = old
		info.Adopted = true
	}

	if l == nil {
		l, err = attachXDP(s.objs.AegisXdp, ifc.Index, mode)
		if errors.Is(err, ebpf.ErrNotSupported) {
			// No bpf_link for XDP on this kernel: fall back to netlink.
			return info, s.attachNetlink(iface, ifc.Index, mode, &info)
		}
		if err != nil {
			return info, fmt.Errorf("attaching to %s: %w", iface, err)
		}
		if s.pinPath != "" {
			if err := l.Pin(pin); err != nil {
				l.Close()
				return info, fmt.Errorf("pinning link for %s: %w", iface, err)
			}
		}
	}
	if s.pinPath == "" {
		s.links[iface] = l
	} else {
		defer l.Close() // the pin keeps it attached
	}
	li, err := l.Info()
	if err == nil {
		info.LinkID = li.ID
		info.ProgramID = li.Program
	}
	info.Mode = attachedMode(ifc.Index)
	return info, nil
}

func attachXDP(prog *ebpf.Program, ifindex int, mode XDPMode) (link.Link, error) {
	switch mode {
	case XDPNative:
		return link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPDriverMode})
	case XDPGeneric:
		return link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPGenericMode})
	case XDPAuto, "":
		l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPDriverMode})
		if err == nil {
			return l, nil
		}
		l, gerr := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPGenericMode})
		if gerr != nil {
			return nil, fmt.Errorf("native: %w; generic: %w", err, gerr)
		}
		return l, nil
	}
	return nil, fmt.Errorf("unknown xdp mode %q", mode)
}

// attachedMode asks the kernel in which mode an XDP program sits on the
// interface: a pinned link does not record it.
func attachedMode(ifindex int) XDPMode {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil || l.Attrs().Xdp == nil {
		return ""
	}
	// Values of IFLA_XDP_ATTACHED (linux/if_link.h).
	const attachedDrv, attachedSKB, attachedHW, attachedMulti = 1, 2, 3, 4
	switch l.Attrs().Xdp.AttachMode {
	case attachedDrv, attachedHW:
		return XDPNative
	case attachedSKB:
		return XDPGeneric
	case attachedMulti:
		return XDPAuto
	}
	return ""
}

// Detach removes the program from the interface and forgets its link. The
// decision is audited first: when it cannot be recorded nothing is detached.
func (s *Shield) Detach(iface string) error { return s.DetachBy(iface, "") }

// DetachBy is Detach on behalf of actor, as the audit record names it.
func (s *Shield) DetachBy(iface, actor string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.isAttached(iface) {
		return fmt.Errorf("%s: %w", iface, ErrNotAttached)
	}
	if err := s.audit(audit.Event{Op: audit.OpDetach, Target: iface, Actor: actor}); err != nil {
		return err
	}
	if err := s.detach(iface); err != nil {
		s.audit(audit.Event{Op: audit.OpDetach, Target: iface, Actor: actor, Err: err})
		return err
	}
	return nil
}

// isAttached reports whether the shield holds or pinned an attachment to
// iface.
func (s *Shield) isAttached(iface string) bool {
	if _, ok := s.links[iface]; ok {
		return true
	}
	if _, ok := s.legacy[iface]; ok {
		return true
	}
	if s.pinPath == "" {
		return false
	}
	if s.netlinkPinned(iface) {
		return true
	}
	_, err := os.Stat(filepath.Join(s.linksDir(), iface))
	return err == nil
}

func (s *Shield) detach(iface string) error {
	if found, err := s.detachNetlink(iface); found {
		return err
	}
	if l, ok := s.links[iface]; ok {
		delete(s.links, iface)
		return l.Close()
	}
	if s.pinPath == "" {
		return fmt.Errorf("%s: %w", iface, ErrNotAttached)
	}
	pin := filepath.Join(s.linksDir(), iface)
	l, err := link.LoadPinnedLink(pin, nil)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: %w", iface, ErrNotAttached)
	}
	if err != nil {
		return fmt.Errorf("loading pinned link %s: %w", pin, err)
	}
	defer l.Close()
	if err := l.Unpin(); err != nil {
		return fmt.Errorf("unpinning link for %s: %w", iface, err)
	}
	return nil
}

// Attached lists the interfaces with a pinned (or, unpinned, a held) link.
func (s *Shield) Attached() ([]AttachInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []AttachInfo
	describe := func(name string, l link.Link) {
		ai := AttachInfo{Interface: name, Via: ViaLink}
		if li, err := l.Info(); err == nil {
			ai.LinkID, ai.ProgramID = li.ID, li.Program
			if x := li.XDP(); x != nil {
				ai.Ifindex = int(x.Ifindex)
				ai.Mode = attachedMode(ai.Ifindex)
			}
		}
		out = append(out, ai)
	}
	out = append(out, s.netlinkAttached()...)
	if s.pinPath == "" {
		for name, l := range s.links {
			describe(name, l)
		}
		return out, nil
	}
	ents, err := os.ReadDir(s.linksDir())
	if err != nil {
		return nil, fmt.Errorf("listing pinned links: %w", err)
	}
	for _, e := range ents {
		l, err := link.LoadPinnedLink(filepath.Join(s.linksDir(), e.Name()), nil)
		if err != nil {
			continue
		}
		describe(e.Name(), l)
		l.Close()
	}
	return out, nil
}

// ensureBPFFS mounts bpffs at /sys/fs/bpf when the pin path lies there and
// nothing is mounted yet.
func ensureBPFFS(pinPath string) error {
	const root = "/sys/fs/bpf"
	if pinPath != root && !strings.HasPrefix(pinPath, root+"/") {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err == nil && st.Type == unix.BPF_FS_MAGIC {
		return nil
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", root, err)
	}
	if err := unix.Mount("bpf", root, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mounting bpffs at %s: %w", root, err)
	}
	return nil
}
