package privilege

import (
	"errors"
	"fmt"
	"strings"
)

// Capability is a Linux capability by its kernel number (linux/capability.h).
type Capability int

// The capabilities aegis asks for or reasons about.
const (
	CapSetgid      Capability = 6
	CapSetuid      Capability = 7
	CapNetAdmin    Capability = 12
	CapSysAdmin    Capability = 21
	CapSysResource Capability = 24
	CapPerfmon     Capability = 38
	CapBPF         Capability = 39
)

var capNames = map[Capability]string{
	CapSetgid:      "CAP_SETGID",
	CapSetuid:      "CAP_SETUID",
	CapNetAdmin:    "CAP_NET_ADMIN",
	CapSysAdmin:    "CAP_SYS_ADMIN",
	CapSysResource: "CAP_SYS_RESOURCE",
	CapPerfmon:     "CAP_PERFMON",
	CapBPF:         "CAP_BPF",
}

// String returns the kernel's name, such as "CAP_BPF".
func (c Capability) String() string {
	if n, ok := capNames[c]; ok {
		return n
	}
	return fmt.Sprintf("CAP_%d", int(c))
}

// CapSet is a set of capabilities as the kernel's 64-bit masks hold them.
type CapSet uint64

// Has reports whether c is in the set.
func (s CapSet) Has(c Capability) bool { return c >= 0 && c < 64 && s&(1<<uint(c)) != 0 }

// With returns the set with c added.
func (s CapSet) With(c Capability) CapSet { return s | 1<<uint(c) }

// Need is one capability aegis requires and why. Any of AlsoGrantedBy
// satisfies it as well, the way the kernel accepts CAP_SYS_ADMIN wherever it
// asks for CAP_BPF or CAP_PERFMON.
type Need struct {
	Cap           Capability   `json:"capability"`
	Why           string       `json:"why"`
	AlsoGrantedBy []Capability `json:"also_granted_by,omitempty"`
}

// SatisfiedBy reports whether a process holding eff meets the need.
func (n Need) SatisfiedBy(eff CapSet) bool {
	if eff.Has(n.Cap) {
		return true
	}
	for _, c := range n.AlsoGrantedBy {
		if eff.Has(c) {
			return true
		}
	}
	return false
}

func (n Need) String() string { return n.Cap.String() + " (" + n.Why + ")" }

// Kernel holds the facts about the running system that change which
// capabilities the shield needs.
type Kernel struct {
	// LastCap is /proc/sys/kernel/cap_last_cap, the highest capability the
	// kernel knows: CAP_BPF (39) and CAP_PERFMON (38) exist from 5.8.
	LastCap Capability `json:"cap_last_cap"`
	// BPFFSMounted is true when bpffs is mounted at BPFFSRoot, where the
	// shield pins its maps and links; otherwise aegis mounts it itself.
	BPFFSMounted bool `json:"bpffs_mounted"`
}

// BPFFSRoot is where the shield expects bpffs.
const BPFFSRoot = "/sys/fs/bpf"

// HasCapBPF reports whether the kernel splits CAP_BPF and CAP_PERFMON out
// of CAP_SYS_ADMIN.
func (k Kernel) HasCapBPF() bool { return k.LastCap >= CapBPF }

// Why each capability is needed: what the kernel refuses without it. Measured
// on 6.18 by loading and attaching the shield with each one removed (see
// TestShieldNeedsExactlyTheDocumentedCapabilities).
const (
	whyBPF      = "create BPF maps and load BPF programs"
	whyNetAdmin = "load XDP programs and attach them to interfaces"
	whyPerfmon  = "let the verifier accept the shield's packet-pointer arithmetic"
	whyBPFOld   = "create BPF maps and load BPF programs on kernels without CAP_BPF (before 5.8)"
	whyMount    = "mount bpffs at " + BPFFSRoot + ", which is not mounted"
)

// Required returns the capabilities the shield needs on kernel k, in the
// order they are documented.
//
// From 5.8: CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (CAP_SYS_ADMIN also
// grants CAP_BPF and CAP_PERFMON). Before 5.8: CAP_SYS_ADMIN and
// CAP_NET_ADMIN. Either way CAP_SYS_ADMIN is added when bpffs has to be
// mounted first.
func (k Kernel) Required() []Need {
	var needs []Need
	if k.HasCapBPF() {
		needs = []Need{
			{Cap: CapBPF, Why: whyBPF, AlsoGrantedBy: []Capability{CapSysAdmin}},
			{Cap: CapNetAdmin, Why: whyNetAdmin},
			{Cap: CapPerfmon, Why: whyPerfmon, AlsoGrantedBy: []Capability{CapSysAdmin}},
		}
	} else {
		needs = []Need{
			{Cap: CapSysAdmin, Why: whyBPFOld},
			{Cap: CapNetAdmin, Why: whyNetAdmin},
		}
	}
	if !k.BPFFSMounted {
		if !k.HasCapBPF() {
			needs[0].Why += "; " + whyMount
		} else {
			needs = append(needs, Need{Cap: CapSysAdmin, Why: whyMount})
		}
	}
	return needs
}

// whyWorkerIDs is why the node needs CAP_SETUID and CAP_SETGID: each
// function worker starts in a new user namespace in which nobody (65534) is
// mapped to nobody, and writing that uid/gid map is refused without them.
const whyWorkerIDs = "map nobody into the edge-function workers' user namespaces"

// WorkerNeeds returns the capabilities the node needs, besides the shield's,
// to start sandboxed edge-function workers.
func WorkerNeeds() []Need {
	return []Need{
		{Cap: CapSetuid, Why: whyWorkerIDs},
		{Cap: CapSetgid, Why: whyWorkerIDs},
	}
}

// Missing returns the needs in req that a process holding eff does not meet.
func Missing(req []Need, eff CapSet) []Need {
	var out []Need
	for _, n := range req {
		if !n.SatisfiedBy(eff) {
			out = append(out, n)
		}
	}
	return out
}

// Report is the outcome of Check.
type Report struct {
	Kernel    Kernel `json:"kernel"`
	Effective CapSet `json:"effective"`
	Required  []Need `json:"required"`
	Missing   []Need `json:"missing,omitempty"`
}

// Err returns nil when nothing is missing and a *MissingError otherwise.
func (r Report) Err() error {
	if len(r.Missing) == 0 {
		return nil
	}
	return &MissingError{Missing: r.Missing}
}

// ErrMissingCapabilities is matched (errors.Is) by every *MissingError.
var ErrMissingCapabilities = errors.New("missing capabilities")

// MissingError names the capabilities the process lacks and why each is
// needed.
type MissingError struct {
	Missing []Need
}

func (e *MissingError) Error() string {
	parts := make([]string, len(e.Missing))
	for i, n := range e.Missing {
		parts[i] = n.String()
	}
	return "missing capabilities: " + strings.Join(parts, ", ")
}

// Is makes errors.Is(err, ErrMissingCapabilities) hold.
func (e *MissingError) Is(target error) bool { return target == ErrMissingCapabilities }
