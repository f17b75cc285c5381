//go:build linux

package seccomp

import (
	"fmt"
	"sort"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Offsets into struct seccomp_data: the 32-bit syscall number, the audit
// architecture, the instruction pointer and six 64-bit arguments.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

// Default actions for calls the policy does not allow.
const (
	// ActionErrno denies with EPERM in the kernel; nothing is observable.
	ActionErrno = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	// ActionNotify hands the call to the supervisor's listener, which
	// counts it, attributes it to the function being served and answers
	// EPERM. Without a listener the kernel answers ENOSYS.
	ActionNotify = unix.SECCOMP_RET_USER_NOTIF
)

// BuildFilter compiles rules into a classic BPF seccomp program for this
// architecture. Calls that no rule allows get deny; a foreign architecture
// kills the process; x32 numbers on x86-64 get EPERM. Hot rules come first
// and every rule costs one comparison before its own checks, so all jumps
// stay short.
func BuildFilter(rules []Rule, deny uint32) ([]unix.SockFilter, error) {
	var a assembler
	a.load(offArch)
	a.jeq(auditArch, "", "kill")
	a.load(offNr)
	if X32Bit != 0 {
		// Refused in the kernel, never handed to the supervisor: a signal
		// arriving while an x32-numbered call waits for its answer would
		// get an x32 signal frame, which kills a 64-bit process.
		a.jge(X32Bit, "", "native")
		a.ret(ActionErrno)
		a.label("native")
	}
	seen := map[uintptr]bool{}
	ordered := append([]Rule(nil), rules...)
	sort.SliceStable(ordered, func(i, j int) bool { return ordered[i].Hot && !ordered[j].Hot })
	for i, r := range ordered {
		nr, ok := syscallNumbers[r.Syscall]
		if !ok {
			return nil, fmt.Errorf("policy: unknown syscall %q on this architecture", r.Syscall)
		}
		if seen[nr] {
			return nil, fmt.Errorf("policy: %s listed twice", r.Syscall)
		}
		seen[nr] = true
		if r.Hot && len(r.Args) > 0 {
			return nil, fmt.Errorf("policy: hot syscall %s has argument checks", r.Syscall)
		}
		next := fmt.Sprintf("rule%d", i+1)
		a.jeq(uint32(nr), "", next)
		switch {
		case r.Errno != 0:
			a.ret(unix.SECCOMP_RET_ERRNO | uint32(r.Errno))
		case len(r.Args) == 0:
			a.ret(unix.SECCOMP_RET_ALLOW)
		default:
			for j, c := range r.Args {
				if c.Index < 0 || c.Index > 5 || len(c.OneOf) == 0 {
					return nil, fmt.Errorf("policy: %s: bad argument check %+v", r.Syscall, c)
				}
				ok := fmt.Sprintf("rule%d.arg%d", i, j)
				for k, v := range c.OneOf {
					other := fmt.Sprintf("rule%d.arg%d.v%d", i, j, k+1)
					if k == len(c.OneOf)-1 {
						other = "deny"
					}
					a.load(argHigh(c.Index))
					a.jeq(uint32(v>>32), "", other)
					a.load(argLow(c.Index))
					a.jeq(uint32(v), ok, other)
					if other != "deny" {
						a.label(other)
					}
				}
				a.label(ok)
			}
			a.ret(unix.SECCOMP_RET_ALLOW)
		}
		a.label(next)
	}
	a.label("deny")
	a.ret(deny)
	a.label("kill")
	a.ret(unix.SECCOMP_RET_KILL_PROCESS)
	return a.assemble()
}

// argLow and argHigh are the offsets of an argument's 32-bit halves.
func argLow(i int) uint32 {
	if littleEndian {
		return offArgs + 8*uint32(i)
	}
	return offArgs + 8*uint32(i) + 4
}

func argHigh(i int) uint32 { return argLow(i) ^ 4 }

var littleEndian = func() bool { x := uint16(1); return *(*byte)(unsafe.Pointer(&x)) == 1 }()

// assembler builds a classic BPF program with symbolic forward jump
// targets, resolved (and range-checked: 8-bit offsets) by assemble.
type assembler struct {
	ins    []unix.SockFilter
	jumps  []jump
	labels map[string]int
}

type jump struct {
	at     int
	jt, jf string
}

func (a *assembler) emit(code uint16, k uint32) int {
	a.ins = append(a.ins, unix.SockFilter{Code: code, K: k})
	return len(a.ins) - 1
}

func (a *assembler) load(off uint32) { a.emit(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, off) }
func (a *assembler) ret(v uint32)    { a.emit(unix.BPF_RET|unix.BPF_K, v) }

// jeq and jge fall through when a target is "".
func (a *assembler) jeq(k uint32, jt, jf string) {
	a.jumps = append(a.jumps, jump{a.emit(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, k), jt, jf})
}

func (a *assembler) jge(k uint32, jt, jf string) {
	a.jumps = append(a.jumps, jump{a.emit(unix.BPF_JMP|unix.BPF_JGE|unix.BPF_K, k), jt, jf})
}

func (a *assembler) label(name string) {
	if a.labels == nil {
		a.labels = map[string]int{}
	}
	if _, dup := a.labels[name]; dup {
		panic("seccomp: label defined twice: " + name)
	}
	a.labels[name] = len(a.ins)
}

func (a *assembler) assemble() ([]unix.SockFilter, error) {
	for _, j := range a.jumps {
		for _, t := range []struct {
			name string
			dst  *uint8
		}{{j.jt, &a.ins[j.at].Jt}, {j.jf, &a.ins[j.at].Jf}} {
			if t.name == "" {
				continue
			}
			to, ok := a.labels[t.name]
			if !ok {
				return nil, fmt.Errorf("filter: undefined label %q", t.name)
			}
			off := to - j.at - 1
			if off < 0 || off > 255 {
				return nil, fmt.Errorf("filter: jump to %q out of range (%d)", t.name, off)
			}
			*t.dst = uint8(off)
		}
	}
	if len(a.ins) > unix.BPF_MAXINSNS {
		return nil, fmt.Errorf("filter: %d instructions, the kernel takes %d", len(a.ins), unix.BPF_MAXINSNS)
	}
	return a.ins, nil
}
