//go:build linux

package seccomp

import (
	"runtime"
	"slices"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// constAllow reports whether the kernel's seccomp action cache (5.11+)
// would allow syscall nr of the native architecture without running prog:
// it follows the kernel's rule (kernel/seccomp.c, seccomp_is_const_allow)
// of emulating the program with only nr and arch known. Loading anything
// else, or an instruction it does not model, makes the call uncacheable.
func constAllow(prog []unix.SockFilter, nr uint32) bool {
	var reg uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			switch in.K {
			case offNr:
				reg = nr
			case offArch:
				reg = auditArch
			default:
				return false
			}
		case unix.BPF_RET | unix.BPF_K:
			return in.K == unix.SECCOMP_RET_ALLOW
		case unix.BPF_JMP | unix.BPF_JA:
			pc += int(in.K)
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K,
			unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K, unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K:
			var taken bool
			switch in.Code & 0xf0 {
			case unix.BPF_JEQ:
				taken = reg == in.K
			case unix.BPF_JGE:
				taken = reg >= in.K
			case unix.BPF_JGT:
				taken = reg > in.K
			case unix.BPF_JSET:
				taken = reg&in.K != 0
			}
			if taken {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case unix.BPF_ALU | unix.BPF_AND | unix.BPF_K:
			reg &= in.K
		default:
			return false
		}
	}
	return false
}

// The hot calls, and every unconditionally allowed one, must be decided by
// the kernel's cache; argument-checked and denied calls must not be.
func TestFilterCacheableCalls(t *testing.T) {
	for _, deny := range []uint32{ActionErrno, ActionNotify} {
		prog, err := BuildFilter(Policy(), deny)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range Policy() {
			want := r.Errno == 0 && len(r.Args) == 0
			if got := constAllow(prog, uint32(syscallNumbers[r.Syscall])); got != want {
				t.Errorf("deny %#x: %s cacheable = %v, want %v", deny, r.Syscall, got, want)
			}
		}
		for _, name := range []string{"execve", "socket", "ioctl"} {
			if constAllow(prog, uint32(syscallNumbers[name])) {
				t.Errorf("deny %#x: denied call %s is cached as allowed", deny, name)
			}
		}
		if X32Bit != 0 && constAllow(prog, X32Bit|uint32(syscallNumbers["read"])) {
			t.Errorf("x32 read is cached as allowed")
		}
	}
	// The emulator itself: a filter that looks at an argument first is
	// never cacheable.
	var a assembler
	a.load(argLow(0))
	a.ret(unix.SECCOMP_RET_ALLOW)
	if constAllow(a.ins, uint32(syscallNumbers["read"])) {
		t.Errorf("argument load counted as cacheable")
	}
}

// hotCallCost times read(-1) on one locked thread with no filter, then
// installs prog on that thread alone (no TSYNC) and times it again: the
// same thread, the same run. The thread is discarded afterwards (the
// goroutine exits locked), so the filter never reaches another goroutine.
func hotCallCost(prog []unix.SockFilter, flags uintptr, n int) (before, after time.Duration, err error) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		// The same hot call as the workers' syscall-bench handler: EBADF.
		read := func() { unix.RawSyscall(unix.SYS_READ, ^uintptr(0), 0, 0) }
		timeIt := func() time.Duration {
			for range 1000 {
				read()
			}
			start := time.Now()
			for range n {
				read()
			}
			return time.Since(start)
		}
		before = timeIt()
		if _, _, e := unix.RawSyscall(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); e != 0 {
			err = e
			return
		}
		fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
		r, _, e := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&fprog)))
		runtime.KeepAlive(prog)
		if e != 0 {
			err = e
			return
		}
		if flags&unix.SECCOMP_FILTER_FLAG_NEW_LISTENER != 0 {
			unix.Close(int(r))
		}
		after = timeIt()
	}()
	<-done
	return before, after, err
}

// BenchmarkHotSyscallFilter is the like-for-like cost of the filter on a
// hot call: each iteration times read(-1) on a fresh thread before and
// after installing a filter on it, and reports the medians. "policy" is
// the worker's filter; "listener" the same with a notify listener, as
// workers run; "uncached" a filter the kernel cannot cache (it looks at
// an argument first), which shows what the cache saves; "allow-all" a
// one-instruction filter, the least any filter costs.
func BenchmarkHotSyscallFilter(b *testing.B) {
	policy, err := BuildFilter(Policy(), ActionErrno)
	if err != nil {
		b.Fatal(err)
	}
	notify, err := BuildFilter(Policy(), ActionNotify)
	if err != nil {
		b.Fatal(err)
	}
	var a assembler
	a.load(argHigh(0)) // any argument: the kernel's emulator gives up
	a.label("x")
	uncached := append(a.ins, policy...)
	// The floor: a filter that allows everything, cached for every call.
	allowAll := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW}}
	const calls = 20000
	for _, c := range []struct {
		name  string
		prog  []unix.SockFilter
		flags uintptr
	}{
		{"policy", policy, 0},
		{"listener", notify, unix.SECCOMP_FILTER_FLAG_NEW_LISTENER},
		{"uncached", uncached, 0},
		{"allow-all", allowAll, 0},
	} {
		b.Run(c.name, func(b *testing.B) {
			var before, after []float64
			for b.Loop() {
				x, y, err := hotCallCost(c.prog, c.flags, calls)
				if err != nil {
					b.Fatal(err)
				}
				before = append(before, float64(x.Nanoseconds())/calls)
				after = append(after, float64(y.Nanoseconds())/calls)
			}
			slices.Sort(before)
			slices.Sort(after)
			b.ReportMetric(before[len(before)/2], "ns-unfiltered")
			b.ReportMetric(after[len(after)/2], "ns-filtered")
			b.ReportMetric(after[len(after)/2]-before[len(before)/2], "ns-added")
		})
	}
}
