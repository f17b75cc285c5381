//go:build linux

package seccomp

import (
	"bytes"
	"encoding/binary"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

var update = flag.Bool("update", false, "rewrite golden files")

// runFilter executes prog on a seccomp_data with x/net/bpf's interpreter,
// an implementation independent of the assembler under test. Its loads are
// big-endian, so every 32-bit word is stored big-endian at the offset the
// kernel would read it from.
func runFilter(t *testing.T, prog []unix.SockFilter, arch uint32, nr uint32, args [6]uint64) uint32 {
	t.Helper()
	raw := make([]bpf.RawInstruction, len(prog))
	for i, in := range prog {
		raw[i] = bpf.RawInstruction{Op: in.Code, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	insns, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatalf("filter does not disassemble")
	}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatalf("filter rejected by the interpreter: %v", err)
	}
	data := make([]byte, 64)
	binary.BigEndian.PutUint32(data[offNr:], nr)
	binary.BigEndian.PutUint32(data[offArch:], arch)
	for i, v := range args {
		binary.BigEndian.PutUint32(data[argLow(i):], uint32(v))
		binary.BigEndian.PutUint32(data[argHigh(i):], uint32(v>>32))
	}
	out, err := vm.Run(data)
	if err != nil {
		t.Fatalf("running filter: %v", err)
	}
	return uint32(out)
}

func TestFilterVerdicts(t *testing.T) {
	for _, deny := range []uint32{ActionErrno, ActionNotify} {
		prog, err := BuildFilter(Policy(), deny)
		if err != nil {
			t.Fatal(err)
		}
		nr := func(name string) uint32 { return uint32(syscallNumbers[name]) }
		tests := []struct {
			name string
			arch uint32
			nr   uint32
			args [6]uint64
			want uint32
		}{
			{"read", auditArch, nr("read"), [6]uint64{3, 0, 10}, unix.SECCOMP_RET_ALLOW},
			{"mmap", auditArch, nr("mmap"), [6]uint64{}, unix.SECCOMP_RET_ALLOW},
			{"clone3 answers ENOSYS", auditArch, nr("clone3"), [6]uint64{}, unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
			{"clone Go thread", auditArch, nr("clone"), [6]uint64{GoThreadFlags}, unix.SECCOMP_RET_ALLOW},
			{"clone glibc thread", auditArch, nr("clone"), [6]uint64{glibcThreadFlags}, unix.SECCOMP_RET_ALLOW},
			{"clone Go thread with its TLS", auditArch, nr("clone"), [6]uint64{goTLSThreadFlags}, unix.SECCOMP_RET_ALLOW},
			{"clone fork", auditArch, nr("clone"), [6]uint64{uint64(unix.SIGCHLD)}, deny},
			{"clone thread with new user ns", auditArch, nr("clone"), [6]uint64{GoThreadFlags | unix.CLONE_NEWUSER}, deny},
			{"clone thread flags in high bits", auditArch, nr("clone"), [6]uint64{GoThreadFlags | 1<<32}, deny},
			{"prctl PR_SET_VMA", auditArch, nr("prctl"), [6]uint64{unix.PR_SET_VMA}, unix.SECCOMP_RET_ALLOW},
			{"prctl PR_SET_VMA high bits", auditArch, nr("prctl"), [6]uint64{unix.PR_SET_VMA | 1<<40}, deny},
			{"prctl PR_SET_DUMPABLE", auditArch, nr("prctl"), [6]uint64{unix.PR_SET_DUMPABLE, 1}, deny},
			{"tgkill own process", auditArch, nr("tgkill"), [6]uint64{1, 7, uint64(unix.SIGURG)}, unix.SECCOMP_RET_ALLOW},
			{"tgkill another process", auditArch, nr("tgkill"), [6]uint64{2, 2, uint64(unix.SIGKILL)}, deny},
			{"socket", auditArch, nr("socket"), [6]uint64{unix.AF_INET}, deny},
			{"execve", auditArch, nr("execve"), [6]uint64{}, deny},
			{"ioctl TIOCSTI", auditArch, nr("ioctl"), [6]uint64{0, unix.TIOCSTI}, deny},
			{"foreign architecture", unix.AUDIT_ARCH_I386, nr("read"), [6]uint64{}, unix.SECCOMP_RET_KILL_PROCESS},
			{"number beyond the table", auditArch, maxSyscall + 1, [6]uint64{}, deny},
			{"negative number", auditArch, 0xffffffff, [6]uint64{}, map[bool]uint32{true: deny, false: ActionErrno}[X32Bit == 0]},
		}
		if X32Bit != 0 {
			tests = append(tests, struct {
				name string
				arch uint32
				nr   uint32
				args [6]uint64
				want uint32
			}{"x32 read", auditArch, X32Bit | nr("read"), [6]uint64{}, ActionErrno})
		}
		for _, tc := range tests {
			if got := runFilter(t, prog, tc.arch, tc.nr, tc.args); got != tc.want {
				t.Errorf("deny=%#x %s: verdict %#x, want %#x", deny, tc.name, got, tc.want)
			}
		}
	}
}

// Every number the policy does not name is denied, whatever the arguments.
func TestFilterDeniesEverythingElse(t *testing.T) {
	prog, err := BuildFilter(Policy(), ActionErrno)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[uint32]bool{}
	for _, r := range Policy() {
		listed[uint32(syscallNumbers[r.Syscall])] = true
	}
	denied := 0
	for nr := uint32(0); nr <= 1024; nr++ {
		if listed[nr] {
			continue
		}
		if got := runFilter(t, prog, auditArch, nr, [6]uint64{GoThreadFlags, 1, 2, 3, 4, 5}); got != ActionErrno {
			t.Errorf("syscall %d: verdict %#x, want EPERM", nr, got)
		}
		denied++
	}
	if denied < 1024-len(Policy()) {
		t.Fatalf("only %d numbers checked", denied)
	}
}

func TestBuildFilterRejectsBadPolicies(t *testing.T) {
	for name, rules := range map[string][]Rule{
		"unknown syscall":   {{Syscall: "no_such_call"}},
		"duplicate":         {{Syscall: "read"}, {Syscall: "read"}},
		"hot with argument": {{Syscall: "read", Hot: true, Args: []ArgCheck{{Index: 0, OneOf: []uint64{1}}}}},
		"argument index":    {{Syscall: "prctl", Args: []ArgCheck{{Index: 6, OneOf: []uint64{1}}}}},
		"empty set":         {{Syscall: "prctl", Args: []ArgCheck{{Index: 0}}}},
	} {
		if _, err := BuildFilter(rules, ActionErrno); err == nil {
			t.Errorf("%s: policy accepted", name)
		}
	}
}

func TestHotSyscallsLeadThePolicy(t *testing.T) {
	for _, name := range []string{"futex", "read", "write", "epoll_pwait", "nanosleep", "sched_yield", "madvise"} {
		found := false
		for _, r := range Policy() {
			if r.Syscall == name {
				found = r.Hot && len(r.Args) == 0 && r.Errno == 0
			}
		}
		if !found {
			t.Errorf("%s is not an unconditional hot rule", name)
		}
	}
}

// The policy is reviewed through this golden file: any change fails the
// test until testdata/policy.golden is updated (go test -run Golden -update).
func TestPolicyGolden(t *testing.T) {
	var buf bytes.Buffer
	if err := FormatPolicy(&buf, Policy()); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "policy.golden")
	if *update {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run Golden -update to create it)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("policy changed; review and run go test -run Golden -update\n--- got\n%s--- want\n%s", buf.Bytes(), want)
	}
}

// Policy hands out a copy: a caller that changes it changes neither the
// filter workers install nor what the next caller gets.
func TestPolicyIsACopy(t *testing.T) {
	var before bytes.Buffer
	FormatPolicy(&before, Policy())
	p := Policy()
	for i := range p {
		p[i].Syscall, p[i].Hot = "execve", false
		for j := range p[i].Args {
			p[i].Args[j].OneOf[0] = ^uint64(0)
			p[i].Args[j].Names[0] = "changed"
		}
	}
	var after bytes.Buffer
	FormatPolicy(&after, Policy())
	if !bytes.Equal(before.Bytes(), after.Bytes()) {
		t.Fatalf("changing a copy changed the policy:\n%s", after.Bytes())
	}
}
