package shield

// Types and values other packages name on every system. The data path, the
// loader and the map access run on Linux only (the _linux files); elsewhere
// Load fails (shield_other.go), so that the packages above still build.

import (
	"errors"
	"time"

	"github.com/aegis-edge/aegis/internal/audit"
	"github.com/aegis-edge/aegis/internal/bpfguard"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// DefaultPinPath is where the shield pins its maps and links.
const DefaultPinPath = "/sys/fs/bpf/aegis"

// Options configure Load.
type Options struct {
	// PinPath is the bpffs directory holding the maps (PinPath/maps) and the
	// links (PinPath/links). Empty keeps everything unpinned, so the program
	// detaches when the Shield is closed: for tests and benchmarks.
	PinPath string
	// NetlinkAttach attaches through netlink instead of bpf_link, the path
	// kernels before 5.9 need (it is also taken automatically when the
	// kernel has no bpf_link for XDP). For testing that fallback.
	NetlinkAttach bool
	// PerfEvents reports automatic blocks through a perf event array
	// instead of the ring buffer, the path kernels before 5.8 need (it is
	// also taken automatically when the kernel has no ring buffer).
	PerfEvents bool
	// Audit receives one event per eBPF operation; nil records nothing.
	Audit AuditFunc
	// Policy replaces the shield's verification policy (Policy()).
	Policy *bpfguard.Policy

	// Switches that force a fallback the kernel under test does not need,
	// so that one kernel tests every path; set by this package's tests
	// only (the node takes each fallback when the kernel lacks the feature).
	monotonicClock bool   // CLOCK_MONOTONIC in the data path, as before 5.8
	preciseClock   bool   // the precise clock helper on every packet, as before 5.5
	forceMemlock   bool   // raise RLIMIT_MEMLOCK even where memcg charges BPF memory
	object         []byte // replaces the embedded object
	noMmap         bool   // no BPF_F_MMAPABLE arrays, as before 5.5: the exact tables unused
	// exactMasks narrow the exact tables' buckets (allow v4, block v4,
	// allow v6, block v6): 0 leaves each list one bucket, so its fifth
	// address goes to the hash map.
	exactMasks *[4]uint32
	// prefixMasks narrow the prefix tables' buckets likewise.
	prefixMasks *[4]uint32
}

// AttachInfo reports how the program is attached to an interface.
type AttachInfo struct {
	Interface string         `json:"interface"`
	Ifindex   int            `json:"ifindex"`
	Mode      XDPMode        `json:"xdp_mode"`
	ProgramID ebpf.ProgramID `json:"program_id"`
	LinkID    link.ID        `json:"link_id,omitempty"`
	// Via is ViaLink or ViaNetlink.
	Via     string `json:"via"`
	Adopted bool   `json:"adopted,omitempty"`
}

// ErrNotAttached is returned when detaching an interface the shield is not on.
var ErrNotAttached = errors.New("shield is not attached")

// Attachment methods reported in AttachInfo.Via.
const (
	ViaLink    = "bpf_link"
	ViaNetlink = "netlink"
)

// ClockInfo says how the data path tells time.
type ClockInfo struct {
	// Source is "jiffies" (the kernel's tick counter on the precise
	// clock's scale), "boottime" or "monotonic" (the precise helpers).
	Source string `json:"source"`
	// HZ is the kernel's tick rate when Source is "jiffies".
	HZ int `json:"hz,omitempty"`
	// Resolution is how far the data path's clock may trail the precise
	// clock: one tick with jiffies.
	Resolution time.Duration `json:"resolution"`
	// Fallback says why the precise helper is read on every packet, when
	// jiffies would have been used but could not be.
	Fallback string `json:"fallback,omitempty"`
}

// The clock sources ClockInfo names.
const (
	ClockJiffies   = "jiffies"
	ClockBoottime  = "boottime"
	ClockMonotonic = "monotonic"
)

// AuditFunc receives one event per eBPF operation of the shield. An error
// from it fails the operation: what cannot be audited is not done (or, for
// an operation already done when its outcome is recorded, is reported as
// failed).
type AuditFunc func(audit.Event) error

// Policy is the verification policy of the shield's embedded object: the
// shield's own map ceilings and the digest recorded when the object was
// generated.
func Policy() bpfguard.Policy {
	return bpfguard.ShieldPolicy(bpfguard.DefaultShieldCaps(), ObjectDigest())
}
