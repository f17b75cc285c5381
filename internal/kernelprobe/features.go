package kernelprobe

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Names of the features Probe checks, in report order.
const (
	XDP              = "xdp"                // XDP programs
	XDPLink          = "xdp-link"           // bpf_link for XDP
	RingBuf          = "ringbuf"            // BPF ring buffer
	LPMTrie          = "lpm-trie"           // longest-prefix-match maps
	LRUMaps          = "lru-maps"           // LRU hash and LRU per-CPU hash maps
	KtimeBootNs      = "ktime-boot-ns"      // bpf_ktime_get_boot_ns in XDP
	Jiffies64        = "jiffies64"          // bpf_jiffies64 in XDP
	CapBPF           = "cap-bpf"            // CAP_BPF known to the kernel
	MemcgAccounting  = "memcg-bpf"          // BPF memory charged to the memory cgroup
	Landlock         = "landlock"           // Landlock LSM, with its ABI level
	SeccompTSYNC     = "seccomp-tsync"      // seccomp filters synced to all threads
	SeccompUserNotif = "seccomp-user-notif" // seccomp user notification
	CgroupV2         = "cgroup-v2"          // unified cgroup hierarchy
)

// MinimumKernel is the oldest kernel release aegis aims to run on, with the
// fallbacks the report lists (docs/KERNELS.md).
const MinimumKernel = "5.4"

// missingByOption is the detail of a feature that Options.Without hides.
const missingByOption = "assumed missing (forced by option)"

// Feature is one row of the report.
type Feature struct {
	// Name is the feature's stable identifier (the constants above).
	Name string `json:"name"`
	// Title says what it is, for people.
	Title string `json:"title"`
	// Available is true when the probe found the feature.
	Available bool `json:"available"`
	// Detail is what the probe found (an ABI level, a cgroup layout) or
	// why the feature is missing.
	Detail string `json:"detail,omitempty"`
	// ProbeError is set when the probe could not tell (typically for want
	// of privilege); Available is false then.
	ProbeError string `json:"probe_error,omitempty"`
	// MinKernel is the mainline version that brought the feature.
	MinKernel string `json:"min_kernel"`
	// Required features have no fallback: aegis cannot work without them.
	Required bool `json:"required"`
	// Fallback is what aegis does when the feature is missing; for a
	// required feature, what fails.
	Fallback string `json:"fallback"`
}

// Unknown reports whether the probe could not tell.
func (f Feature) Unknown() bool { return f.ProbeError != "" }

// Report is the outcome of Probe.
type Report struct {
	// Kernel is the running kernel's release (uname -r).
	Kernel   string    `json:"kernel"`
	Features []Feature `json:"features"`
}

// Feature returns the row called name.
func (r Report) Feature(name string) (Feature, bool) {
	i := slices.IndexFunc(r.Features, func(f Feature) bool { return f.Name == name })
	if i < 0 {
		return Feature{}, false
	}
	return r.Features[i], true
}

// Has reports whether the feature called name was found.
func (r Report) Has(name string) bool {
	f, ok := r.Feature(name)
	return ok && f.Available
}

// MissingRequired lists the required features that are missing or could
// not be probed: aegis cannot be trusted to work while it is not empty.
func (r Report) MissingRequired() []Feature {
	var out []Feature
	for _, f := range r.Features {
		if f.Required && !f.Available {
			out = append(out, f)
		}
	}
	return out
}

// BelowMinimum reports whether the kernel is older than MinimumKernel.
func (r Report) BelowMinimum() bool {
	ok, known := releaseAtLeast(r.Kernel, MinimumKernel)
	return known && !ok
}

// Options adjust Probe.
type Options struct {
	// Without names features to report as missing whatever the kernel
	// offers, so that fallbacks can be exercised on new kernels.
	Without []string
}

// ErrUnknownFeature is returned for a name Probe does not know.
var ErrUnknownFeature = errors.New("unknown feature")

// spec is the static part of a row plus its probe.
type spec struct {
	name, title, minKernel string
	required               bool
	fallback               string
	// probe returns whether the feature is there and a detail. An error
	// means the probe could not tell; errNotSupported wraps a definite no.
	probe func() (bool, string, error)
}

// specs lists every feature in report order. The probes are in the
// OS-specific files.
var specs = []spec{
	{XDP, "XDP programs", "4.8", true,
		"the shield cannot run", probeXDP},
	{XDPLink, "bpf_link for XDP", "5.9", false,
		"the shield attaches through netlink and pins the program, so the attachment still outlives the daemon", probeXDPLink},
	{RingBuf, "BPF ring buffer", "5.8", false,
		"auto-block events travel through a perf event buffer", probeRingBuf},
	{LPMTrie, "LPM trie maps", "4.11", true,
		"the shield cannot hold prefix rules", probeLPMTrie},
	{LRUMaps, "LRU hash and LRU per-CPU hash maps", "4.10", true,
		"the shield cannot bound its rate-limit state", probeLRUMaps},
	{KtimeBootNs, "bpf_ktime_get_boot_ns helper in XDP", "5.8", false,
		"the shield reads bpf_ktime_get_ns (CLOCK_MONOTONIC, which stops during suspend) for expiry times", probeKtimeBootNs},
	{Jiffies64, "bpf_jiffies64 helper in XDP", "5.5", false,
		"the shield reads the precise clock helper on every packet instead of the jiffies counter (about 45 ns a packet more on a 2-vCPU VM)", probeJiffies64},
	{CapBPF, "CAP_BPF capability", "5.8", false,
		"loading eBPF needs CAP_SYS_ADMIN with CAP_NET_ADMIN instead of CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON", probeCapBPF},
	{MemcgAccounting, "memcg accounting of BPF memory", "5.11", false,
		"the loader raises RLIMIT_MEMLOCK to a bound computed from the map sizes", probeMemcg},
	{Landlock, "Landlock LSM", "5.13", false,
		"workers run without Landlock (namespaces, seccomp and rlimits remain); the ABI level used is reported", probeLandlock},
	{SeccompTSYNC, "seccomp filter with thread sync (TSYNC)", "3.17", true,
		"workers cannot be confined: edge functions do not run", probeSeccompTSYNC},
	{SeccompUserNotif, "seccomp user notification", "5.0", false,
		"best effort: calls the supervisor would mediate are refused with EPERM", probeSeccompUserNotif},
	{CgroupV2, "cgroup v2 (unified hierarchy)", "4.5", false,
		"workers' memory and pids are capped through the v1 memory and pids controllers where writable; with neither, the node refuses to start its workers unless functions.allow_no_memory_cap", probeCgroupV2},
}

// Names lists every feature Probe checks, in report order.
func Names() []string {
	out := make([]string, len(specs))
	for i, s := range specs {
		out[i] = s.name
	}
	return out
}

// Probe checks every feature on the running kernel.
func Probe(opts Options) (Report, error) {
	without := map[string]bool{}
	for _, n := range opts.Without {
		if !slices.Contains(Names(), n) {
			return Report{}, fmt.Errorf("%w %q (known: %s)", ErrUnknownFeature, n, strings.Join(Names(), ", "))
		}
		without[n] = true
	}
	r := Report{Kernel: kernelRelease()}
	for _, s := range specs {
		f := Feature{Name: s.name, Title: s.title, MinKernel: s.minKernel, Required: s.required, Fallback: s.fallback}
		if without[s.name] {
			f.Detail = missingByOption
		} else {
			ok, detail, err := s.probe()
			switch {
			case err != nil && !errors.Is(err, errNotSupported):
				f.ProbeError = err.Error()
			case err != nil:
				f.Detail = strings.TrimPrefix(err.Error(), errNotSupported.Error()+": ")
			default:
				f.Available, f.Detail = ok, detail
			}
		}
		r.Features = append(r.Features, f)
	}
	return r, nil
}

// errNotSupported marks a probe's definite "missing" answer, as opposed to
// a probe that failed.
var errNotSupported = errors.New("not supported")

// notSupported returns a definite "missing" with a reason.
func notSupported(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errNotSupported}, a...)...)
}

// parseVersion reads "major.minor" from the start of a kernel release
// such as "6.1.0-56-cloud-amd64".
func parseVersion(release string) (major, minor int, ok bool) {
	a, rest, ok1 := strings.Cut(release, ".")
	end := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
	if end < 0 {
		end = len(rest)
	}
	maj, err1 := strconv.Atoi(a)
	min, err2 := strconv.Atoi(rest[:end])
	if !ok1 || err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return maj, min, true
}

// releaseAtLeast compares a kernel release with a "major.minor" version;
// known is false when either does not parse.
func releaseAtLeast(release, version string) (ok, known bool) {
	rmaj, rmin, ok1 := parseVersion(release)
	vmaj, vmin, ok2 := parseVersion(version)
	if !ok1 || !ok2 {
		return false, false
	}
	return rmaj > vmaj || rmaj == vmaj && rmin >= vmin, true
}
